//! An mheap-like allocator that lives entirely inside a caller-provided region, for shared-memory
//! segments that several processes map at different addresses and that a hostile peer may
//! scribble on at any time.
//!
//! # Model
//!
//! A [`Heap`] is a handle onto a region: `len` bytes that start with a header and continue with
//! the *arena*, which blocks tile exactly up to an end fence. Everything the allocator knows (the
//! lock word, statistics, free lists, block headers) is stored in the region and refers to other
//! places by byte offset from the region base, never by pointer, so any process that maps the
//! bytes anywhere can [`attach`](Heap::attach) and use them. The API speaks offsets too:
//! [`alloc`](Heap::alloc) returns the offset of the payload, [`free`](Heap::free) and
//! [`realloc`](Heap::realloc) take one, and [`read`](Heap::read)/[`write`](Heap::write) (or, in
//! unsafe code, [`ptr`](Heap::ptr) and [`slice_mut`](Heap::slice_mut)) reach the bytes through the
//! current mapping.
//!
//! ```
//! use vppinfra::heap::Heap;
//! let heap = Heap::new_local(64 << 10)?;
//! let off = heap.alloc(100, 16)?;
//! heap.write(off, b"hello")?;
//! let mut buf = [0u8; 5];
//! heap.read(off, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! heap.free(off)?;
//! heap.validate()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Blocks
//!
//! Every block starts with a 16-byte header: the size of the physically previous block (the
//! boundary tag that lets a free find its left neighbour) and a *tag* word holding the block's
//! size, its state and 16 check bits computed from the block's offset, size and state. So a tag
//! copied to another offset or with a flipped bit is rejected, and arbitrary garbage passes for a
//! header with a probability of about 2^-16 (and must then also agree with its right neighbour's
//! boundary tag before a free accepts it).
//! Block offsets and sizes are multiples of 16; the smallest block is 32 bytes, so a free block
//! can hold its two list links.
//!
//! States: *in use*; *quick* (freed into an exact-size list and not coalesced); *free*
//! (coalesced and linked into a segregated bin); *absorbed* (the stale header of a block that was
//! merged into a neighbour, kept so a repeated free is reported as a double free); and the fence.
//!
//! # Allocation policy
//!
//! - **Small requests** (payload up to 1024 bytes, alignment up to 16) have 64 exact size classes
//!   (block sizes 32, 48, ..., 1040). A free of such a block pushes it onto its class's LIFO list
//!   and an allocation pops from the list: both O(1) with no search and no coalescing.
//! - **Everything else** comes from 128 segregated bins of coalesced free blocks, four per power
//!   of two. An allocation looks at up to 16 blocks of the request's own bin (first fit), then
//!   takes the head of the next non-empty larger bin, found in O(1) through a bitmap, and splits
//!   off the tail as a new free block. (Only when no larger bin has anything is the own bin
//!   scanned to its end.) A free of a large block merges it with free neighbours on both sides
//!   (boundary tags make that O(1)), so no two coalesced free blocks are ever adjacent.
//! - **Quick lists give memory back** when it is needed: before an allocation reports
//!   out-of-memory, every quick block is coalesced into the bins and the search repeats. So an
//!   allocation fails only if no free block can satisfy it even after coalescing.
//! - **Alignment** up to [`MAX_ALIGN`] (4096): the search asks for `size + align + 32` bytes and
//!   splits off the misaligned lead as a free block of at least 32 bytes. Alignment is relative to
//!   the region base, which [`REGION_ALIGN`] (4096) makes it an absolute alignment as well.
//!
//! # Fragmentation bound
//!
//! Internal waste of any allocation (block size minus requested bytes) is at most 47 bytes:
//! 16 bytes of header, up to 15 bytes of rounding to the 16-byte granule, and at most 16 bytes of
//! tail that was too small (under 32 bytes) to split off. For small requests it is exactly
//! `16 + round-up` when the class list is hit (a 16-byte request uses a 32-byte block, 50 %; a
//! 1024-byte one a 1040-byte block, 1.5 %). An aligned request wastes nothing more: its lead is
//! returned as a free block. External fragmentation is limited by coalescing (no two coalesced
//! free blocks are neighbours) and by returning quick blocks before failing; the unavoidable case
//! is free space split by live blocks, which [`HeapStats::largest_free`] shows.
//!
//! # Concurrency and crashes
//!
//! All operations run under a lock whose word lives in the header: a futex (shared, not
//! private) that records the owner's pid, so it serialises threads and processes alike. A waiter
//! that has waited past [`DEFAULT_OWNER_CHECK_AFTER`] asks whether the owner is still alive and,
//! if it died, takes the lock over. The heap is then repaired before the waiter's operation:
//! blocks are re-walked from the arena start (each tag change is a single atomic store, ordered
//! so that the walk always finds an exact tiling), neighbouring free blocks are merged, the free
//! lists, bitmap, boundary tags and statistics are rebuilt, and the result is validated. A dead
//! process's allocations are leaked (nobody owns them any more); anything that cannot be repaired
//! is reported as [`CorruptionKind`] from that operation and every later one. A live owner that
//! holds the lock longer than the handle's lock timeout makes waiters fail with
//! [`HeapLockError::Timeout`] rather than hang.
//!
//! # Hostile regions
//!
//! Every offset, size and link read from the region is bounds-checked before it is used, every
//! list walk is bounded by the number of blocks the arena can hold, and in-region memory is only
//! ever accessed through atomics (see `region.rs`), so a region that another process overwrites
//! with anything, at any time, makes operations return errors but never makes them read or write
//! outside the region, loop forever or panic. An inconsistency found in the heap's own structures
//! marks the heap corrupt in the region and in this handle; a bad argument (a foreign offset, a
//! double free) is only an error for that call.
//!
//! # Differences from VPP
//!
//! VPP's mheap (and its dlmalloc-based successor) stores pointers, so every process must map a
//! segment at the same address, and trusts its clients not to write the heap. This heap is
//! position-independent and validates instead; it does not grow, and it does not return pages
//! to the kernel.

mod error;
#[cfg(not(loom))]
mod futex;
mod layout;
mod lock;
mod ops;
mod region;
mod repair;
pub mod vec;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use error::{
    CorruptionKind, HeapAccessError, HeapAllocError, HeapAttachError, HeapCorruption,
    HeapFreeError, HeapInitError, HeapLockError, HeapLookupError, HeapReallocError, HeapStatsError,
    HeapValidateError,
};

use crate::sync::{AtomicU64, Ordering};
use error::Fail;
use layout::*;
use lock::{Acquired, LockConfig, LockWord};
use region::Region;
use std::time::Duration;

/// Required alignment of a region's base address (one page).
pub const REGION_ALIGN: usize = 4096;
/// The largest alignment [`Heap::alloc`] accepts.
pub const MAX_ALIGN: usize = 4096;
/// The smallest region a heap can be built in (header plus a few small blocks).
pub const MIN_REGION_LEN: usize = 2048;
/// The largest region a heap can be built in (block sizes are 48-bit).
pub const MAX_REGION_LEN: usize = 1 << 47;
/// How long a handle waits for a live lock owner before failing with
/// [`HeapLockError::Timeout`], unless changed with [`Heap::set_lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a waiter waits before it starts checking whether the lock owner is alive, unless
/// changed with [`Heap::set_owner_check_after`].
pub const DEFAULT_OWNER_CHECK_AFTER: Duration = Duration::from_millis(20);

// Every region length we accept must be expressible as a block size.
const _: () = assert!(MAX_REGION_LEN as u64 <= MAX_BLOCK_SIZE);

/// A snapshot of a heap's statistics.
///
/// In a consistent heap `bytes_used + bytes_free == arena_len` and
/// `n_allocs - n_frees == n_live`. Bytes count whole blocks, headers included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HeapStats {
    /// Bytes of the region.
    pub region_len: u64,
    /// Bytes that blocks tile (the arena, without the header and the end fence).
    pub arena_len: u64,
    /// Bytes in allocated blocks.
    pub bytes_used: u64,
    /// Bytes in free blocks (coalesced or in quick lists).
    pub bytes_free: u64,
    /// The largest payload a single allocation with alignment 16 could get right now without
    /// coalescing quick blocks first.
    pub largest_free: u64,
    /// Successful allocations since the heap was formatted.
    pub n_allocs: u64,
    /// Successful frees since the heap was formatted.
    pub n_frees: u64,
    /// Successful reallocations.
    pub n_reallocs: u64,
    /// Allocations currently live.
    pub n_live: u64,
    /// Allocations and reallocations that failed for lack of memory.
    pub n_failures: u64,
    /// Times the heap was repaired after a lock owner died.
    pub n_recoveries: u64,
}

/// A handle onto a heap region. Cheap operations take `&self`; share it between threads by
/// reference or in an `Arc`.
///
/// See the [module documentation](self) for the layout, policy and failure model.
pub struct Heap {
    region: Region,
    /// Offset of the end fence; blocks tile `ARENA_START..fence`.
    fence: u64,
    lock_cfg: LockConfig,
    /// Whether this handle repairs the heap (see [`Heap::set_repair`]).
    repair: bool,
    /// This handle's record of corruption: a `CorruptionKind` code, 0 while none was seen.
    /// Kept locally as well as in the region, so that a peer clearing the region's flag does not
    /// make this process trust the heap again.
    corrupt_kind: AtomicU64,
    corrupt_offset: AtomicU64,
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("region", &self.region)
            .field("arena", &self.arena())
            .field("corruption", &self.corruption())
            .finish()
    }
}

/// Releases the lock when a locked operation ends, however it ends.
struct Unlock<'a>(LockWord<'a>);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// A block as read from its header.
#[derive(Debug, Clone, Copy)]
struct Block {
    size: u64,
    state: State,
}

impl Heap {
    /// Formats a zeroed, process-local region of `len` bytes as a heap. For tests, loom models
    /// and single-process use; the memory is freed when the handle drops.
    ///
    /// # Errors
    ///
    /// [`HeapInitError::TooSmall`] or [`HeapInitError::TooLarge`] for a bad `len`.
    pub fn new_local(len: usize) -> Result<Heap, HeapInitError> {
        region::check_region(REGION_ALIGN, len)?;
        let heap = Heap::from_region(Region::owned(len));
        heap.format();
        Ok(heap)
    }

    fn from_region(region: Region) -> Heap {
        let arena_end = region.len() & !(GRANULE - 1);
        Heap {
            region,
            fence: arena_end - FENCE_SIZE,
            lock_cfg: LockConfig {
                pid: std::process::id() & LOCK_PID_MASK,
                timeout: DEFAULT_LOCK_TIMEOUT,
                owner_check_after: DEFAULT_OWNER_CHECK_AFTER,
            },
            repair: true,
            corrupt_kind: AtomicU64::new(0),
            corrupt_offset: AtomicU64::new(0),
        }
    }

    /// Writes an empty heap into the region. The magic goes last, with release ordering, so an
    /// attacher that sees it sees the rest.
    fn format(&self) {
        let word = |off: u64, v: u64| {
            if let Some(w) = self.region.word(off) {
                w.store(v, Ordering::Relaxed);
            }
        };
        let mut off = 0;
        while off < ARENA_START {
            // The lock word is 32-bit and only ever accessed as such.
            if off != H_LOCK {
                word(off, 0);
            }
            off += 8;
        }
        self.region.lock_word().unlock();
        let first = self.fence - ARENA_START;
        word(H_VERSION, VERSION);
        word(H_REGION_LEN, self.region.len());
        word(H_ARENA_START, ARENA_START);
        word(H_ARENA_END, self.fence + FENCE_SIZE);
        word(H_BYTES_FREE, first);
        word(ARENA_START + B_PREV_SIZE, 0);
        word(
            ARENA_START + B_TAG,
            make_tag(ARENA_START, first, State::Free),
        );
        word(ARENA_START + B_NEXT, 0);
        word(ARENA_START + B_PREV, 0);
        word(self.fence + B_PREV_SIZE, first);
        word(
            self.fence + B_TAG,
            make_tag(self.fence, FENCE_SIZE, State::Fence),
        );
        let k = bin_index(first);
        word(bin_head(k), ARENA_START);
        let (map, bit) = bin_map_bit(k);
        word(map, bit);
        if let Some(w) = self.region.word(H_MAGIC) {
            w.store(MAGIC, Ordering::Release);
        }
    }

    /// Checks the header of an existing heap against this mapping.
    #[cfg_attr(loom, allow(dead_code))]
    fn check_header(&self) -> Result<(), HeapAttachError> {
        let read = |off: u64, order: Ordering| self.region.word(off).map_or(0, |w| w.load(order));
        let magic = read(H_MAGIC, Ordering::Acquire);
        if magic != MAGIC {
            return Err(HeapAttachError::BadMagic { found: magic });
        }
        let version = read(H_VERSION, Ordering::Relaxed);
        if version != VERSION {
            return Err(HeapAttachError::BadVersion { found: version });
        }
        let recorded = read(H_REGION_LEN, Ordering::Relaxed);
        if recorded != self.region.len() {
            return Err(HeapAttachError::SizeMismatch {
                header: recorded,
                len: self.region.len(),
            });
        }
        let arena_start = read(H_ARENA_START, Ordering::Relaxed);
        let arena_end = read(H_ARENA_END, Ordering::Relaxed);
        if arena_start != ARENA_START || arena_end != self.fence + FENCE_SIZE {
            return Err(HeapAttachError::BadLayout {
                arena_start,
                arena_end,
            });
        }
        Ok(())
    }

    /// Changes how long this handle waits for a live lock owner before giving up.
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_cfg.timeout = timeout;
    }

    /// Changes how long this handle waits before checking whether the lock owner is alive.
    pub fn set_owner_check_after(&mut self, after: Duration) {
        self.lock_cfg.owner_check_after = after;
    }

    /// Whether this handle repairs the heap when a lock owner died, or when it finds the repair
    /// flag a dead owner leaves behind (on by default).
    ///
    /// A repair walks the whole arena, and anyone who can write the region can set the flag
    /// before every operation of ours. A handle that does not trust the region's other users,
    /// and can do without the heap once they are gone (a server on a client's own segment),
    /// turns repair off: the heap is then reported corrupt to this handle
    /// ([`CorruptionKind::RepairRefused`]) instead of repaired, in constant time.
    pub fn set_repair(&mut self, repair: bool) {
        self.repair = repair;
    }

    /// The region's length in bytes.
    pub fn region_len(&self) -> usize {
        self.region.len() as usize
    }

    /// The offsets that blocks tile. Payload offsets always lie inside.
    pub fn arena(&self) -> std::ops::Range<u64> {
        ARENA_START..self.fence
    }

    /// The pid recorded in the lock word, if the lock is held (a diagnostic: it may change at
    /// any moment).
    pub fn lock_owner(&self) -> Option<u32> {
        Some(self.region.lock_word().raw() & LOCK_PID_MASK).filter(|pid| *pid != 0)
    }

    /// The corruption this handle has seen, or that the region records, if any.
    pub fn corruption(&self) -> Option<HeapCorruption> {
        if let Some(c) = self.local_corruption() {
            return Some(c);
        }
        let read = |off: u64| {
            self.region
                .word(off)
                .map_or(0, |w| w.load(Ordering::Relaxed))
        };
        (read(H_FLAGS) & FLAG_CORRUPT != 0).then(|| HeapCorruption {
            offset: read(H_CORRUPT_OFFSET),
            kind: CorruptionKind::from_code(read(H_CORRUPT_KIND)),
        })
    }

    /// Allocates `size` bytes aligned to `align` (a power of two up to [`MAX_ALIGN`]; values
    /// below 16 give 16) and returns the payload's offset from the region base.
    ///
    /// # Errors
    ///
    /// [`HeapAllocError`]: bad arguments, no memory, a corrupt heap or a lock that could not be
    /// taken.
    ///
    /// # References
    ///
    /// VPP: `src/vppinfra/mem_dlmalloc.c` (`clib_mem_heap_alloc_aligned`).
    #[doc(alias = "clib_mem_alloc_aligned")]
    #[doc(alias = "mheap_get_aligned")]
    pub fn alloc(&self, size: usize, align: usize) -> Result<u64, HeapAllocError> {
        let (size64, align64) = self.check_request(size, align).map_err(|e| match e {
            RequestError::ZeroSize => HeapAllocError::ZeroSize,
            RequestError::BadAlign => HeapAllocError::BadAlign { align },
            RequestError::TooLarge => HeapAllocError::TooLarge { size },
        })?;
        self.locked(|h| match h.alloc_block(size64, align64) {
            Ok(off) => {
                h.add(H_N_ALLOCS, 1)?;
                h.add(H_N_LIVE, 1)?;
                Ok(off)
            }
            Err(Fail::OutOfMemory) => {
                h.add(H_N_FAILURES, 1)?;
                Err(Fail::OutOfMemory)
            }
            Err(e) => Err(e),
        })
        .map_err(|f| match f {
            Fail::OutOfMemory => HeapAllocError::OutOfMemory { size, align },
            Fail::Corrupt(c) => HeapAllocError::Corrupt(c),
            Fail::Lock(e) => HeapAllocError::Lock(e),
            Fail::OutOfRange | Fail::NotAllocated | Fail::NotLive => {
                HeapAllocError::Corrupt(unexpected())
            }
        })
    }

    /// Frees the allocation whose payload starts at `offset`.
    ///
    /// # Errors
    ///
    /// [`HeapFreeError`]: an offset outside the arena, one that is not an allocation's start
    /// (interior, foreign or stale), a double free, a corrupt heap or a lock that could not be
    /// taken.
    ///
    /// # References
    ///
    /// VPP: `src/vppinfra/mem_dlmalloc.c` (`clib_mem_heap_free`).
    #[doc(alias = "clib_mem_free")]
    #[doc(alias = "mheap_put")]
    pub fn free(&self, offset: u64) -> Result<(), HeapFreeError> {
        if !self.payload_in_range(offset) {
            return Err(HeapFreeError::OutOfRange { offset });
        }
        self.locked(|h| {
            let (block, size) = h.live_block(offset)?;
            h.release_block(block, size)?;
            h.add(H_N_FREES, 1)?;
            h.sub(H_N_LIVE, 1)
        })
        .map_err(|f| match f {
            Fail::OutOfRange => HeapFreeError::OutOfRange { offset },
            Fail::NotAllocated => HeapFreeError::NotAllocated { offset },
            Fail::NotLive => HeapFreeError::DoubleFree { offset },
            Fail::Corrupt(c) => HeapFreeError::Corrupt(c),
            Fail::Lock(e) => HeapFreeError::Lock(e),
            Fail::OutOfMemory => HeapFreeError::Corrupt(unexpected()),
        })
    }

    /// Resizes the allocation at `offset` to `new_size` bytes aligned to `align`, in place when
    /// it can (shrinking, or growing into a free right neighbour), otherwise by moving it; the
    /// first `min(old, new)` bytes are preserved. Returns the (possibly new) payload offset. On
    /// error the original allocation is untouched.
    ///
    /// # Errors
    ///
    /// [`HeapReallocError`]: the argument errors of both [`alloc`](Heap::alloc) and
    /// [`free`](Heap::free).
    ///
    /// # References
    ///
    /// VPP: `src/vppinfra/mem_dlmalloc.c` (`clib_mem_heap_realloc_aligned`).
    #[doc(alias = "clib_mem_realloc")]
    pub fn realloc(
        &self,
        offset: u64,
        new_size: usize,
        align: usize,
    ) -> Result<u64, HeapReallocError> {
        let (size64, align64) = self.check_request(new_size, align).map_err(|e| match e {
            RequestError::ZeroSize => HeapReallocError::ZeroSize,
            RequestError::BadAlign => HeapReallocError::BadAlign { align },
            RequestError::TooLarge => HeapReallocError::TooLarge { size: new_size },
        })?;
        if !self.payload_in_range(offset) {
            return Err(HeapReallocError::OutOfRange { offset });
        }
        self.locked(|h| match h.realloc_block(offset, size64, align64) {
            Ok(off) => {
                h.add(H_N_REALLOCS, 1)?;
                Ok(off)
            }
            Err(Fail::OutOfMemory) => {
                h.add(H_N_FAILURES, 1)?;
                Err(Fail::OutOfMemory)
            }
            Err(e) => Err(e),
        })
        .map_err(|f| match f {
            Fail::OutOfMemory => HeapReallocError::OutOfMemory {
                size: new_size,
                align,
            },
            Fail::OutOfRange => HeapReallocError::OutOfRange { offset },
            Fail::NotAllocated => HeapReallocError::NotAllocated { offset },
            Fail::NotLive => HeapReallocError::AlreadyFree { offset },
            Fail::Corrupt(c) => HeapReallocError::Corrupt(c),
            Fail::Lock(e) => HeapReallocError::Lock(e),
        })
    }

    /// The number of payload bytes the allocation at `offset` can hold (at least what was
    /// requested, at most 31 bytes more).
    ///
    /// # Errors
    ///
    /// [`HeapLookupError`] if `offset` is not a live allocation's start, the heap is corrupt or
    /// the lock could not be taken.
    #[doc(alias = "clib_mem_size")]
    pub fn usable_size(&self, offset: u64) -> Result<usize, HeapLookupError> {
        if !self.payload_in_range(offset) {
            return Err(HeapLookupError::OutOfRange { offset });
        }
        self.locked(|h| h.live_block(offset))
            .map(|(_, size)| (size - BLOCK_HEADER) as usize)
            .map_err(|f| match f {
                Fail::OutOfRange => HeapLookupError::OutOfRange { offset },
                Fail::NotAllocated => HeapLookupError::NotAllocated { offset },
                Fail::NotLive => HeapLookupError::AlreadyFree { offset },
                Fail::Corrupt(c) => HeapLookupError::Corrupt(c),
                Fail::Lock(e) => HeapLookupError::Lock(e),
                Fail::OutOfMemory => HeapLookupError::Corrupt(unexpected()),
            })
    }

    /// Checks the whole heap: the header; that blocks tile the arena exactly with agreeing
    /// boundary tags and no two coalesced free blocks adjacent; that every free block is in
    /// exactly the right list and every listed block is free, with consistent back links and
    /// bitmap; and that the statistics match the blocks.
    ///
    /// # Errors
    ///
    /// [`HeapValidateError::Corrupt`] describing the first inconsistency found (after which the
    /// heap is marked corrupt), or a lock error.
    ///
    /// # References
    ///
    /// VPP: `src/vppinfra/mheap.c` (`mheap_validate`).
    #[doc(alias = "mheap_validate")]
    pub fn validate(&self) -> Result<(), HeapValidateError> {
        self.locked(|h| h.validate_locked()).map_err(|f| match f {
            Fail::Corrupt(c) => HeapValidateError::Corrupt(c),
            Fail::Lock(e) => HeapValidateError::Lock(e),
            Fail::OutOfMemory | Fail::OutOfRange | Fail::NotAllocated | Fail::NotLive => {
                HeapValidateError::Corrupt(unexpected())
            }
        })
    }

    /// A snapshot of the statistics. Works on a corrupt heap too (the figures are then only as
    /// good as the region).
    ///
    /// # Errors
    ///
    /// [`HeapStatsError::Lock`] if the lock could not be taken.
    #[doc(alias = "clib_mem_get_heap_usage")]
    pub fn stats(&self) -> Result<HeapStats, HeapStatsError> {
        let word = self.region.lock_word();
        let acquired = word.lock(&self.lock_cfg).map_err(HeapStatsError::Lock)?;
        let _unlock = Unlock(word);
        if matches!(acquired, Acquired::TookOver { .. }) {
            // Leave the repair to the next operation that can report its outcome.
            let _ = self.set_flags(FLAG_NEEDS_RECOVERY);
        }
        let read = |off: u64| self.ld(off).unwrap_or(0);
        Ok(HeapStats {
            region_len: self.region.len(),
            arena_len: self.fence - ARENA_START,
            bytes_used: read(H_BYTES_USED),
            bytes_free: read(H_BYTES_FREE),
            largest_free: self.largest_free().saturating_sub(BLOCK_HEADER),
            n_allocs: read(H_N_ALLOCS),
            n_frees: read(H_N_FREES),
            n_reallocs: read(H_N_REALLOCS),
            n_live: read(H_N_LIVE),
            n_failures: read(H_N_FAILURES),
            n_recoveries: read(H_N_RECOVERIES),
        })
    }

    /// Copies `dst.len()` bytes at `offset` out of the arena.
    ///
    /// This and the other byte accessors only check that the range lies inside the arena, not
    /// that it belongs to one allocation; writing outside your allocations damages the heap (the
    /// heap then reports corruption, nothing worse).
    ///
    /// # Errors
    ///
    /// [`HeapAccessError::OutOfRange`] if the range leaves the arena.
    pub fn read(&self, offset: u64, dst: &mut [u8]) -> Result<(), HeapAccessError> {
        self.check_range(offset, dst.len() as u64)?;
        let mut done = 0;
        while done < dst.len() {
            let at = offset + done as u64;
            let word_off = at & !7;
            let skip = (at - word_off) as usize;
            let n = (8 - skip).min(dst.len() - done);
            let bytes = self.word_or_zero(word_off).to_ne_bytes();
            dst[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `src` into the arena at `offset`.
    ///
    /// # Errors
    ///
    /// [`HeapAccessError::OutOfRange`] if the range leaves the arena.
    pub fn write(&self, offset: u64, src: &[u8]) -> Result<(), HeapAccessError> {
        self.check_range(offset, src.len() as u64)?;
        let mut done = 0;
        while done < src.len() {
            let at = offset + done as u64;
            let word_off = at & !7;
            let skip = (at - word_off) as usize;
            let n = (8 - skip).min(src.len() - done);
            self.store_bytes(word_off, skip, &src[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    ///
    /// # Errors
    ///
    /// [`HeapAccessError::OutOfRange`] if the range leaves the arena.
    pub fn fill(&self, offset: u64, len: usize, byte: u8) -> Result<(), HeapAccessError> {
        self.check_range(offset, len as u64)?;
        let pattern = [byte; 8];
        let mut done = 0;
        while done < len {
            let at = offset + done as u64;
            let word_off = at & !7;
            let skip = (at - word_off) as usize;
            let n = (8 - skip).min(len - done);
            self.store_bytes(word_off, skip, &pattern[..n]);
            done += n;
        }
        Ok(())
    }

    /// Stores `bytes` at byte `skip` of the word at `word_off`, leaving its other bytes alone.
    fn store_bytes(&self, word_off: u64, skip: usize, bytes: &[u8]) {
        let Some(word) = self.region.word(word_off) else {
            return;
        };
        if bytes.len() == 8 {
            let mut v = [0u8; 8];
            v.copy_from_slice(bytes);
            word.store(u64::from_ne_bytes(v), Ordering::Relaxed);
            return;
        }
        let mut value = [0u8; 8];
        let mut mask = [0u8; 8];
        value[skip..skip + bytes.len()].copy_from_slice(bytes);
        mask[skip..skip + bytes.len()].fill(0xff);
        let mask = u64::from_ne_bytes(mask);
        // Two read-modify-writes keep the word's other bytes intact even if another thread
        // writes them meanwhile.
        word.fetch_and(!mask, Ordering::Relaxed);
        word.fetch_or(u64::from_ne_bytes(value), Ordering::Relaxed);
    }

    /// Loads an 8-aligned word of user data (for [`vec`](mod@vec)); `None` outside the arena.
    fn load_user(&self, off: u64) -> Option<u64> {
        self.check_range(off, 8).ok()?;
        Some(self.region.word(off)?.load(Ordering::Relaxed))
    }

    /// Stores an 8-aligned word of user data (for [`vec`](mod@vec)); ignored outside the arena.
    fn store_user(&self, off: u64, value: u64) {
        if self.check_range(off, 8).is_ok() {
            if let Some(w) = self.region.word(off) {
                w.store(value, Ordering::Relaxed);
            }
        }
    }

    fn word_or_zero(&self, off: u64) -> u64 {
        self.region
            .word(off)
            .map_or(0, |w| w.load(Ordering::Relaxed))
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), HeapAccessError> {
        match offset.checked_add(len) {
            Some(end) if offset >= ARENA_START && end <= self.fence => Ok(()),
            _ => Err(HeapAccessError::OutOfRange { offset, len }),
        }
    }

    /// True when `offset` could be a payload offset at all.
    fn payload_in_range(&self, offset: u64) -> bool {
        offset >= ARENA_START + BLOCK_HEADER && offset < self.fence
    }

    fn check_request(&self, size: usize, align: usize) -> Result<(u64, u64), RequestError> {
        if size == 0 {
            return Err(RequestError::ZeroSize);
        }
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(RequestError::BadAlign);
        }
        let size = size as u64;
        if size > self.fence - ARENA_START - BLOCK_HEADER {
            return Err(RequestError::TooLarge);
        }
        Ok((size, (align as u64).max(GRANULE)))
    }

    /// Runs `op` under the heap lock, after repairing the heap if a lock owner died, and
    /// records any corruption it reports.
    fn locked<T>(&self, op: impl FnOnce(&Heap) -> Result<T, Fail>) -> Result<T, Fail> {
        if let Some(c) = self.local_corruption() {
            return Err(Fail::Corrupt(c));
        }
        let word = self.region.lock_word();
        let acquired = word.lock(&self.lock_cfg)?;
        let unlock = Unlock(word);
        let result = self.locked_body(acquired, op);
        if let Err(Fail::Corrupt(c)) = result {
            self.mark_corrupt(c);
        }
        drop(unlock);
        result
    }

    fn locked_body<T>(
        &self,
        acquired: Acquired,
        op: impl FnOnce(&Heap) -> Result<T, Fail>,
    ) -> Result<T, Fail> {
        if let Acquired::TookOver { .. } = acquired {
            if !self.repair {
                return Err(Fail::corrupt(H_LOCK, CorruptionKind::RepairRefused));
            }
            // Recorded before repairing, so that if we die too the next owner repairs.
            self.set_flags(FLAG_NEEDS_RECOVERY)?;
        }
        let flags = self.ld(H_FLAGS)?;
        if flags & FLAG_CORRUPT != 0 {
            return Err(Fail::Corrupt(HeapCorruption {
                offset: self.ld(H_CORRUPT_OFFSET)?,
                kind: CorruptionKind::from_code(self.ld(H_CORRUPT_KIND)?),
            }));
        }
        if flags & FLAG_NEEDS_RECOVERY != 0 {
            if !self.repair {
                return Err(Fail::corrupt(H_FLAGS, CorruptionKind::RepairRefused));
            }
            self.recover()?;
        }
        op(self)
    }

    fn local_corruption(&self) -> Option<HeapCorruption> {
        let code = self.corrupt_kind.load(Ordering::Acquire);
        (code != 0).then(|| HeapCorruption {
            offset: self.corrupt_offset.load(Ordering::Relaxed),
            kind: CorruptionKind::from_code(code),
        })
    }

    fn mark_corrupt(&self, c: HeapCorruption) {
        let code = c.kind.code();
        self.corrupt_offset.store(c.offset, Ordering::Relaxed);
        self.corrupt_kind.store(code, Ordering::Release);
        if self.ld(H_FLAGS).is_ok_and(|f| f & FLAG_CORRUPT == 0) {
            let _ = self.st(H_CORRUPT_OFFSET, c.offset);
            let _ = self.st(H_CORRUPT_KIND, code);
            let _ = self.set_flags(FLAG_CORRUPT);
        }
    }

    fn set_flags(&self, bits: u64) -> Result<(), Fail> {
        let flags = self.ld(H_FLAGS)?;
        self.st(H_FLAGS, flags | bits)
    }

    /// Loads the word at `off`; an offset outside the region is corruption (callers check
    /// offsets first, so this is the last line of defence).
    #[inline]
    fn ld(&self, off: u64) -> Result<u64, Fail> {
        match self.region.word(off) {
            Some(w) => Ok(w.load(Ordering::Relaxed)),
            None => Err(Fail::corrupt(off, CorruptionKind::BlockBounds)),
        }
    }

    /// Stores the word at `off`, with the same check as [`Heap::ld`].
    #[inline]
    fn st(&self, off: u64, value: u64) -> Result<(), Fail> {
        match self.region.word(off) {
            Some(w) => {
                w.store(value, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Fail::corrupt(off, CorruptionKind::BlockBounds)),
        }
    }

    #[inline]
    fn add(&self, off: u64, delta: u64) -> Result<(), Fail> {
        let v = self.ld(off)?;
        self.st(off, v.wrapping_add(delta))
    }

    #[inline]
    fn sub(&self, off: u64, delta: u64) -> Result<(), Fail> {
        let v = self.ld(off)?;
        self.st(off, v.wrapping_sub(delta))
    }

    /// The most blocks the arena can hold: the bound for every walk.
    fn max_blocks(&self) -> u64 {
        (self.fence - ARENA_START) / MIN_BLOCK + 1
    }
}

/// Argument errors shared by `alloc` and `realloc`.
enum RequestError {
    ZeroSize,
    BadAlign,
    TooLarge,
}

/// The corruption reported when an internal step fails in a way its operation cannot produce.
/// Reaching it means the region changed under us in a way no check anticipated.
fn unexpected() -> HeapCorruption {
    HeapCorruption {
        offset: 0,
        kind: CorruptionKind::Unknown,
    }
}
