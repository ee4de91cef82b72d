//! The shared layout of a queue: a header of five cache-line-sized blocks, then the slots.
//!
//! | Offset | Block | Written by |
//! |---|---|---|
//! | 0 | identity: magic, version, capacity, element size, data offset, pids | the creator (pids: each side) |
//! | 128 | `tail`, the next index the producer will fill | producer |
//! | 256 | `head`, the next index the consumer will read | consumer |
//! | 384 | the producer's [`ParkWord`] | producer (set), consumer (clear on wake) |
//! | 512 | the consumer's [`ParkWord`] | consumer (set), producer (clear on wake) |
//! | 640 | `capacity` slots of `elem_size` bytes | producer |
//!
//! Blocks are 128 bytes apart, not 64, because x86 fetches cache lines in adjacent pairs; each
//! index and each parked word then bounces between the cores only when its owner writes it. In
//! particular the parked words stay in the peer's cache while nobody parks, so the "is the peer
//! parked?" check after every publish is a cache hit.
//!
//! Indices are free-running `u32`s: slot = index & (capacity - 1), occupancy =
//! `tail.wrapping_sub(head)`, which a valid queue keeps within `0..=capacity`.

use vppinfra::sync::AtomicU32;

use crate::notify::ParkWord;

/// "SVMQ" in memory order on a little-endian host.
pub(crate) const QUEUE_MAGIC: u32 = u32::from_le_bytes(*b"SVMQ");
/// Bumped whenever the shared layout changes.
pub(crate) const QUEUE_LAYOUT_VERSION: u32 = 1;

/// One 128-byte block of the header.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Block<T>(pub(crate) T);

/// Identity and geometry, written once by the creator; read by attachers for validation only.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) magic: AtomicU32,
    pub(crate) version: AtomicU32,
    pub(crate) capacity: AtomicU32,
    pub(crate) elem_size: AtomicU32,
    pub(crate) data_offset: AtomicU32,
    /// Informational: the last producer to attach.
    pub(crate) producer_pid: AtomicU32,
    /// Informational: the last consumer to attach.
    pub(crate) consumer_pid: AtomicU32,
}

/// The shared queue header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QueueHeader {
    pub(crate) identity: Block<Identity>,
    pub(crate) tail: Block<AtomicU32>,
    pub(crate) head: Block<AtomicU32>,
    pub(crate) producer_parked: Block<ParkWord>,
    pub(crate) consumer_parked: Block<ParkWord>,
}

impl QueueHeader {
    /// Bytes from the queue's start to its first slot.
    pub(crate) const SIZE: usize = 640;

    /// A zeroed header (process-local queues under loom).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            identity: Block(Identity {
                magic: AtomicU32::new(0),
                version: AtomicU32::new(0),
                capacity: AtomicU32::new(0),
                elem_size: AtomicU32::new(0),
                data_offset: AtomicU32::new(0),
                producer_pid: AtomicU32::new(0),
                consumer_pid: AtomicU32::new(0),
            }),
            tail: Block(AtomicU32::new(0)),
            head: Block(AtomicU32::new(0)),
            producer_parked: Block(ParkWord::new()),
            consumer_parked: Block(ParkWord::new()),
        }
    }
}

#[cfg(not(loom))]
mod layout_checks {
    use super::*;
    use memoffset::offset_of;
    use static_assertions::{assert_eq_align, assert_eq_size, const_assert_eq};

    assert_eq_size!(ParkWord, u32);
    assert_eq_size!(QueueHeader, [u8; QueueHeader::SIZE]);
    assert_eq_align!(QueueHeader, Block<u8>);
    const_assert_eq!(align_of::<QueueHeader>(), 128);
    const_assert_eq!(offset_of!(QueueHeader, identity), 0);
    const_assert_eq!(offset_of!(QueueHeader, tail), 128);
    const_assert_eq!(offset_of!(QueueHeader, head), 256);
    const_assert_eq!(offset_of!(QueueHeader, producer_parked), 384);
    const_assert_eq!(offset_of!(QueueHeader, consumer_parked), 512);
    const_assert_eq!(offset_of!(Identity, magic), 0);
    const_assert_eq!(offset_of!(Identity, version), 4);
    const_assert_eq!(offset_of!(Identity, capacity), 8);
    const_assert_eq!(offset_of!(Identity, elem_size), 12);
    const_assert_eq!(offset_of!(Identity, data_offset), 16);
    const_assert_eq!(offset_of!(Identity, producer_pid), 20);
    const_assert_eq!(offset_of!(Identity, consumer_pid), 24);
}
