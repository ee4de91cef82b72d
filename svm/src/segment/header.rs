//! The segment header (the start of the first page) and the `ready` handshake.
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 4 | magic "SVMS" |
//! | 4 | 4 | layout version |
//! | 8 | 8 | segment size in bytes (equals the file size) |
//! | 16 | 4 | creator pid |
//! | 20 | 4 | attacher pid (last to attach) |
//! | 24 | 4 | `ready`: 0 until the creator has filled the segment, then 1 (also a futex word) |
//! | 28 | 4 | index (the creator's tag, for example the client index it serves) |
//! | 32 | 8 | heap offset |
//! | 40 | 8 | heap size |
//! | 48 | 8 | the creator's mapping address (for attaching at the same address) |
//! | 56 | 8 | the creator's start time (clock ticks after boot; tells a recycled pid apart) |
//! | 64 | 4 | kind (1 memfd, 2 named) |
//! | 68 | 4 | name length |
//! | 72 | 64 | name bytes |
//! | 136 | 64 | eight opaque words for the layer above (offsets of its root structures) |
//! | 200 | 4 | flags (bit 0: huge pages) |
//!
//! All fields are host byte order; a segment never leaves its host. The rest of the page is
//! reserved, and the in-segment heap starts at the next page.
//!
//! **Ready handshake.** The creator fills the header and whatever the layer above puts in the
//! segment, then stores `ready = 1` with `Release` and wakes futex sleepers on the word. An
//! attacher waits for `ready != 0` with `Acquire` (polling briefly, then sleeping on the futex),
//! for at most its deadline: the word is controlled by the peer.

// Under loom only the handshake is compiled and modelled; the rest of the header is unused.
#![cfg_attr(loom, allow(dead_code, unreachable_pub))]

use std::time::{Duration, Instant};

use vppinfra::sync::{AtomicU32, AtomicU64, Ordering};

use crate::notify::ParkWord;

/// "SVMS" in memory order on a little-endian host.
pub(crate) const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"SVMS");
/// Bumped whenever the header layout changes.
pub(crate) const SEGMENT_LAYOUT_VERSION: u32 = 1;
/// Bytes of the segment name kept in the header.
pub const SEGMENT_NAME_MAX: usize = 64;
/// Opaque words in the header for the layer above.
pub const SEGMENT_N_OPAQUE: usize = 8;
/// Header flag: the segment is backed by huge pages.
pub(crate) const FLAG_HUGE_PAGES: u32 = 1;

/// The shared segment header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SegmentHeader {
    pub(crate) magic: AtomicU32,
    pub(crate) version: AtomicU32,
    pub(crate) size: AtomicU64,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) attacher_pid: AtomicU32,
    pub(crate) ready: ParkWord,
    pub(crate) index: AtomicU32,
    pub(crate) heap_offset: AtomicU64,
    pub(crate) heap_size: AtomicU64,
    pub(crate) creator_va: AtomicU64,
    pub(crate) creator_start_time: AtomicU64,
    pub(crate) kind: AtomicU32,
    pub(crate) name_len: AtomicU32,
    pub(crate) name: [AtomicU64; SEGMENT_NAME_MAX / 8],
    pub(crate) opaque: [AtomicU64; SEGMENT_N_OPAQUE],
    pub(crate) flags: AtomicU32,
}

impl SegmentHeader {
    /// A zeroed header (process-local, for loom models).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            magic: AtomicU32::new(0),
            version: AtomicU32::new(0),
            size: AtomicU64::new(0),
            creator_pid: AtomicU32::new(0),
            attacher_pid: AtomicU32::new(0),
            ready: ParkWord::new(),
            index: AtomicU32::new(0),
            heap_offset: AtomicU64::new(0),
            heap_size: AtomicU64::new(0),
            creator_va: AtomicU64::new(0),
            creator_start_time: AtomicU64::new(0),
            kind: AtomicU32::new(0),
            name_len: AtomicU32::new(0),
            name: std::array::from_fn(|_| AtomicU64::new(0)),
            opaque: std::array::from_fn(|_| AtomicU64::new(0)),
            flags: AtomicU32::new(0),
        }
    }

    /// Stores `name` (truncated to [`SEGMENT_NAME_MAX`] bytes).
    pub(crate) fn set_name(&self, name: &str) {
        let bytes = &name.as_bytes()[..name.len().min(SEGMENT_NAME_MAX)];
        let mut padded = [0u8; SEGMENT_NAME_MAX];
        padded[..bytes.len()].copy_from_slice(bytes);
        for (word, chunk) in self.name.iter().zip(padded.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            word.store(u64::from_ne_bytes(a), Ordering::Relaxed);
        }
        self.name_len.store(bytes.len() as u32, Ordering::Relaxed);
    }

    /// Copies the name out (bounded; invalid UTF-8 replaced), whatever a peer wrote.
    pub(crate) fn name(&self) -> String {
        let mut bytes = [0u8; SEGMENT_NAME_MAX];
        for (word, chunk) in self.name.iter().zip(bytes.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let len = (self.name_len.load(Ordering::Relaxed) as usize).min(SEGMENT_NAME_MAX);
        String::from_utf8_lossy(&bytes[..len]).into_owned()
    }

    /// Creator side: the segment's contents are complete; wake attachers waiting for them.
    pub(crate) fn publish_ready(&self) {
        self.ready.store_release(1);
        self.ready.wake_all();
    }

    /// True once the creator published `ready` (with `Acquire`: its writes before are visible).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load_acquire() != 0
    }

    /// Attacher side: waits until `ready` is published, at most until `deadline` (`None`:
    /// forever). Returns false on timeout.
    pub(crate) fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        // A short poll first: in the usual flow the creator published long before.
        for _ in 0..READY_POLLS {
            if self.is_ready() {
                return true;
            }
            vppinfra::sync::spin_loop();
        }
        loop {
            if self.is_ready() {
                return true;
            }
            let timeout = match deadline {
                None => None,
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    // Re-check now and then in case a wake was lost to a peer that rewrote
                    // the word (only a hostile peer would).
                    Some(left.min(READY_RECHECK))
                }
            };
            // Any outcome means "look again"; an unexpected errno cannot come from a valid
            // reference, and the loop is bounded by the deadline anyway.
            let _ = self.ready.wait(0, timeout);
        }
    }
}

/// Polls of `ready` before sleeping on it (one under loom, where each poll is a branch).
const READY_POLLS: u32 = if cfg!(loom) { 1 } else { 64 };
const READY_RECHECK: Duration = Duration::from_millis(100);

#[cfg(not(loom))]
mod layout_checks {
    use super::*;
    use memoffset::offset_of;
    use static_assertions::const_assert_eq;

    const_assert_eq!(size_of::<SegmentHeader>(), 208);
    const_assert_eq!(align_of::<SegmentHeader>(), 8);
    const_assert_eq!(offset_of!(SegmentHeader, magic), 0);
    const_assert_eq!(offset_of!(SegmentHeader, version), 4);
    const_assert_eq!(offset_of!(SegmentHeader, size), 8);
    const_assert_eq!(offset_of!(SegmentHeader, creator_pid), 16);
    const_assert_eq!(offset_of!(SegmentHeader, attacher_pid), 20);
    const_assert_eq!(offset_of!(SegmentHeader, ready), 24);
    const_assert_eq!(offset_of!(SegmentHeader, index), 28);
    const_assert_eq!(offset_of!(SegmentHeader, heap_offset), 32);
    const_assert_eq!(offset_of!(SegmentHeader, heap_size), 40);
    const_assert_eq!(offset_of!(SegmentHeader, creator_va), 48);
    const_assert_eq!(offset_of!(SegmentHeader, creator_start_time), 56);
    const_assert_eq!(offset_of!(SegmentHeader, kind), 64);
    const_assert_eq!(offset_of!(SegmentHeader, name_len), 68);
    const_assert_eq!(offset_of!(SegmentHeader, name), 72);
    const_assert_eq!(offset_of!(SegmentHeader, opaque), 136);
    const_assert_eq!(offset_of!(SegmentHeader, flags), 200);
}

/// Field offsets for parsing a header copied out with `pread` (before anything is mapped).
#[cfg(not(loom))]
pub(crate) mod offsets {
    use super::SegmentHeader;
    use memoffset::offset_of;

    pub(crate) const MAGIC: usize = offset_of!(SegmentHeader, magic);
    pub(crate) const VERSION: usize = offset_of!(SegmentHeader, version);
    pub(crate) const SIZE: usize = offset_of!(SegmentHeader, size);
    pub(crate) const CREATOR_PID: usize = offset_of!(SegmentHeader, creator_pid);
    pub(crate) const CREATOR_VA: usize = offset_of!(SegmentHeader, creator_va);
    pub(crate) const CREATOR_START_TIME: usize = offset_of!(SegmentHeader, creator_start_time);
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use vppinfra::sync::{Arc, thread};

    /// The creator fills the header and the contents, then publishes `ready`; an attacher that
    /// sees `ready` must see everything written before it (loom lets a relaxed load return any
    /// store not ordered before it, so a missing `Release`/`Acquire` pair fails the asserts). An
    /// attacher that sleeps on the word and misses the wake deadlocks, which loom reports.
    #[test]
    fn loom_segment_ready_handshake() {
        loom::model(|| {
            let shared = Arc::new((SegmentHeader::new(), AtomicU64::new(0)));
            let creator = {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let (header, contents) = &*shared;
                    header.heap_offset.store(4096, Ordering::Relaxed);
                    contents.store(42, Ordering::Relaxed);
                    header.publish_ready();
                })
            };
            let (header, contents) = &*shared;
            assert!(header.wait_ready(None));
            assert_eq!(header.heap_offset.load(Ordering::Relaxed), 4096);
            assert_eq!(contents.load(Ordering::Relaxed), 42);
            creator.join().unwrap();
        });
    }
}
