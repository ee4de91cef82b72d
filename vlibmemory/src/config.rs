//! Channel geometry: message rings per direction and queue depths, including VPP's
//! `sock_init_shm` ring configuration items.

use std::fmt;

/// Most rings per direction.
pub const MAX_RINGS: usize = 8;
/// Bytes of the `msgbuf_t` header at the start of every message buffer.
pub const MSGBUF_HEADER: usize = 16;
/// Largest payload a ring slot may hold.
pub const MAX_SLOT_PAYLOAD: u32 = 1 << 20;
/// Most slots in one ring.
pub const MAX_RING_SLOTS: u32 = 1 << 16;

/// One ring: `count` slots of `payload` bytes each (plus the 16-byte header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpec {
    /// Largest message a slot holds.
    pub payload: u32,
    /// Number of slots.
    pub count: u32,
}

impl RingSpec {
    /// Bytes per slot: header plus payload, rounded up to 64 so slots never share a cache line.
    pub fn slot_size(&self) -> usize {
        (MSGBUF_HEADER + self.payload as usize).next_multiple_of(64)
    }
}

/// The shape of one client's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Rings the client allocates requests from, smallest slots first.
    pub client_rings: Vec<RingSpec>,
    /// Rings the server allocates replies from, smallest slots first.
    pub server_rings: Vec<RingSpec>,
    /// Depth of the client-to-server queue.
    pub request_queue: u32,
    /// Depth of the server-to-client queue.
    pub reply_queue: u32,
}

impl Default for ChannelConfig {
    /// Our default: deep enough for a few thousand small requests in flight.
    fn default() -> Self {
        let rings = vec![
            RingSpec {
                payload: 64,
                count: 1024,
            },
            RingSpec {
                payload: 256,
                count: 256,
            },
            RingSpec {
                payload: 1024,
                count: 64,
            },
            RingSpec {
                payload: 4096,
                count: 8,
            },
        ];
        Self {
            client_rings: rings.clone(),
            server_rings: rings,
            request_queue: 1024,
            reply_queue: 1024,
        }
    }
}

/// Why a channel configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelConfigError {
    /// A direction has no ring, or more than [`MAX_RINGS`].
    RingCount(usize),
    /// A ring's slot count or payload is zero or too large.
    BadRing(RingSpec),
    /// A queue depth is zero or too large.
    BadQueue(u32),
    /// A `sock_init_shm` item has an unknown type.
    UnknownItemType(u8),
    /// Everything together does not fit the segment.
    TooBig {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

impl fmt::Display for ChannelConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RingCount(n) => {
                write!(f, "{n} rings in one direction (1 to {MAX_RINGS} allowed)")
            }
            Self::BadRing(r) => write!(
                f,
                "ring of {} slots of {} bytes is out of range",
                r.count, r.payload
            ),
            Self::BadQueue(n) => write!(f, "queue depth {n} is out of range"),
            Self::UnknownItemType(t) => write!(f, "unknown ring config item type {t}"),
            Self::TooBig { need, have } => {
                write!(f, "channel needs {need} bytes, the segment has {have}")
            }
        }
    }
}

impl std::error::Error for ChannelConfigError {}

/// `sock_init_shm` item types (VPP's `vl_api_shm_elem_config_t.type`).
const ITEM_VLIB_RING: u8 = 0;
const ITEM_CLIENT_RING: u8 = 1;
const ITEM_QUEUE: u8 = 2;

impl ChannelConfig {
    /// Checks ring counts, sizes and queue depths.
    pub fn validate(&self) -> Result<(), ChannelConfigError> {
        for rings in [&self.client_rings, &self.server_rings] {
            if rings.is_empty() || rings.len() > MAX_RINGS {
                return Err(ChannelConfigError::RingCount(rings.len()));
            }
            for r in rings {
                if r.count == 0
                    || r.count > MAX_RING_SLOTS
                    || r.payload == 0
                    || r.payload > MAX_SLOT_PAYLOAD
                {
                    return Err(ChannelConfigError::BadRing(*r));
                }
            }
        }
        for q in [self.request_queue, self.reply_queue] {
            if q == 0 || q > 1 << 16 {
                return Err(ChannelConfigError::BadQueue(q));
            }
        }
        Ok(())
    }

    /// Bytes of ring slots in both directions.
    pub fn ring_bytes(&self) -> usize {
        self.client_rings
            .iter()
            .chain(&self.server_rings)
            .map(|r| r.slot_size() * r.count as usize)
            .sum()
    }

    /// Builds a configuration from `sock_init_shm` items, each a host-order
    /// `{u8 type; u8 pad; u16 count; u32 size}` packed in a `u64`. Missing kinds keep their
    /// defaults; rings of a kind replace the default rings of that kind.
    #[doc(alias = "vl_api_shm_elem_config_t")]
    pub fn from_vpp_items(items: &[u64]) -> Result<Self, ChannelConfigError> {
        let mut cfg = Self::default();
        let mut client = Vec::new();
        let mut server = Vec::new();
        for &item in items {
            let b = item.to_ne_bytes();
            let kind = b[0];
            let count = u16::from_ne_bytes([b[2], b[3]]);
            let size = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let spec = RingSpec {
                payload: size,
                count: u32::from(count),
            };
            match kind {
                ITEM_VLIB_RING => server.push(spec),
                ITEM_CLIENT_RING => client.push(spec),
                // VPP sizes its input queue in elements of `size` bytes; ours carry offsets, so
                // only the depth is taken.
                ITEM_QUEUE => {
                    cfg.request_queue = u32::from(count);
                    cfg.reply_queue = u32::from(count).max(cfg.reply_queue);
                }
                other => return Err(ChannelConfigError::UnknownItemType(other)),
            }
        }
        if !client.is_empty() {
            client.sort_by_key(|r| r.payload);
            cfg.client_rings = client;
        }
        if !server.is_empty() {
            server.sort_by_key(|r| r.payload);
            cfg.server_rings = server;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The items [`ChannelConfig::from_vpp_items`] reads back as this configuration.
    pub fn to_vpp_items(&self) -> Vec<u64> {
        let item = |kind: u8, r: &RingSpec| {
            let mut b = [0u8; 8];
            b[0] = kind;
            b[2..4].copy_from_slice(&(r.count.min(u32::from(u16::MAX)) as u16).to_ne_bytes());
            b[4..8].copy_from_slice(&r.payload.to_ne_bytes());
            u64::from_ne_bytes(b)
        };
        let mut v: Vec<u64> = self
            .server_rings
            .iter()
            .map(|r| item(ITEM_VLIB_RING, r))
            .chain(self.client_rings.iter().map(|r| item(ITEM_CLIENT_RING, r)))
            .collect();
        v.push(item(
            ITEM_QUEUE,
            &RingSpec {
                payload: 8,
                count: self.request_queue,
            },
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_items_round_trip() {
        let d = ChannelConfig::default();
        d.validate().unwrap();
        let back = ChannelConfig::from_vpp_items(&d.to_vpp_items()).unwrap();
        assert_eq!(back.client_rings, d.client_rings);
        assert_eq!(back.server_rings, d.server_rings);
        assert_eq!(back.request_queue, d.request_queue);
    }

    #[test]
    fn vpp_items_are_read_in_host_order() {
        // VPP's canned private config: vlib rings 256x32, 1024x16, 4096x2, same for the client,
        // and a 128-deep queue of 8-byte elements.
        let mut items = Vec::new();
        for kind in [0u8, 1] {
            for (size, count) in [(256u32, 32u16), (1024, 16), (4096, 2)] {
                let mut b = [0u8; 8];
                b[0] = kind;
                b[2..4].copy_from_slice(&count.to_ne_bytes());
                b[4..].copy_from_slice(&size.to_ne_bytes());
                items.push(u64::from_ne_bytes(b));
            }
        }
        let mut q = [0u8; 8];
        q[0] = 2;
        q[2..4].copy_from_slice(&128u16.to_ne_bytes());
        q[4..].copy_from_slice(&8u32.to_ne_bytes());
        items.push(u64::from_ne_bytes(q));
        let c = ChannelConfig::from_vpp_items(&items).unwrap();
        assert_eq!(c.server_rings.len(), 3);
        assert_eq!(
            c.client_rings[2],
            RingSpec {
                payload: 4096,
                count: 2
            }
        );
        assert_eq!(c.request_queue, 128);
    }

    #[test]
    fn bad_items_are_refused() {
        let mut b = [0u8; 8];
        b[0] = 9;
        assert_eq!(
            ChannelConfig::from_vpp_items(&[u64::from_ne_bytes(b)]),
            Err(ChannelConfigError::UnknownItemType(9))
        );
        b[0] = 1; // client ring with zero slots
        assert!(matches!(
            ChannelConfig::from_vpp_items(&[u64::from_ne_bytes(b)]),
            Err(ChannelConfigError::BadRing(_))
        ));
        let too_many = ChannelConfig {
            client_rings: vec![
                RingSpec {
                    payload: 64,
                    count: 1
                };
                MAX_RINGS + 1
            ],
            ..ChannelConfig::default()
        };
        assert_eq!(
            too_many.validate(),
            Err(ChannelConfigError::RingCount(MAX_RINGS + 1))
        );
    }

    #[test]
    fn slots_are_cache_line_multiples() {
        assert_eq!(
            RingSpec {
                payload: 64,
                count: 1
            }
            .slot_size(),
            128
        );
        assert_eq!(
            RingSpec {
                payload: 48,
                count: 1
            }
            .slot_size(),
            64
        );
    }
}
