//! Where everything lives inside a heap region: header words, block headers, tags and bins.
//!
//! The code addresses in-region fields by the byte offsets defined here rather than through
//! struct references, so that the same code runs over raw shared memory and over loom's
//! word-array backend (loom atomics neither fit in a `const` nor match the C layout). The
//! `#[repr(C)]` structs below are the authoritative description of the layout; under
//! `cfg(not(loom))` static assertions tie every offset constant to them.
//!
//! All sizes and offsets are in bytes from the region base. Every header field is a 64-bit word
//! except the lock word, which is 32 bits because the kernel's futex operates on 32-bit words.

/// Allocation granule: block sizes and block offsets are multiples of this.
pub(super) const GRANULE: u64 = 16;
/// Bytes of header in front of every block's payload.
pub(super) const BLOCK_HEADER: u64 = 16;
/// The smallest block: a header plus the two free-list links.
pub(super) const MIN_BLOCK: u64 = 32;
/// The end fence: a header-only block that closes the arena.
pub(super) const FENCE_SIZE: u64 = 16;
/// Number of exact-size quick lists (block sizes 32, 48, ..., `QUICK_MAX_BLOCK`).
pub(super) const N_QUICK: usize = 64;
/// The largest block size served by a quick list (payload 1024 bytes).
pub(super) const QUICK_MAX_BLOCK: u64 = MIN_BLOCK + GRANULE * (N_QUICK as u64 - 1);
/// Number of segregated bins of coalesced free blocks.
pub(super) const N_BINS: usize = 128;
/// How many blocks of a bin a first-fit scan examines before it falls back to a larger bin.
pub(super) const SCAN_LIMIT: u64 = 16;

/// `"vppHEAP"` plus a format byte.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"vppHEAP\x01");
/// Layout version; bump on any change to this file.
pub(super) const VERSION: u64 = 1;

// Header field offsets.
pub(super) const H_MAGIC: u64 = 0;
pub(super) const H_VERSION: u64 = 8;
pub(super) const H_REGION_LEN: u64 = 16;
pub(super) const H_LOCK: u64 = 24;
pub(super) const H_FLAGS: u64 = 32;
pub(super) const H_ARENA_START: u64 = 40;
pub(super) const H_ARENA_END: u64 = 48;
pub(super) const H_BYTES_USED: u64 = 56;
pub(super) const H_BYTES_FREE: u64 = 64;
pub(super) const H_N_ALLOCS: u64 = 72;
pub(super) const H_N_FREES: u64 = 80;
pub(super) const H_N_LIVE: u64 = 88;
pub(super) const H_N_FAILURES: u64 = 96;
pub(super) const H_N_REALLOCS: u64 = 104;
pub(super) const H_N_RECOVERIES: u64 = 112;
pub(super) const H_CORRUPT_OFFSET: u64 = 120;
pub(super) const H_CORRUPT_KIND: u64 = 128;
pub(super) const H_BIN_MAP: u64 = 136;
pub(super) const H_QUICK_HEADS: u64 = 192;
pub(super) const H_BIN_HEADS: u64 = H_QUICK_HEADS + 8 * N_QUICK as u64;
pub(super) const HEADER_END: u64 = H_BIN_HEADS + 8 * N_BINS as u64;
/// The first block starts here (the header rounded up to a cache line).
pub(super) const ARENA_START: u64 = (HEADER_END + 63) & !63;

/// `H_FLAGS`: a lock owner died; the next lock holder must rebuild and validate.
pub(super) const FLAG_NEEDS_RECOVERY: u64 = 1;
/// `H_FLAGS`: corruption was found; `H_CORRUPT_*` say where and what.
pub(super) const FLAG_CORRUPT: u64 = 2;

/// The 32-bit lock word: low bits hold the owner's pid (0 = unlocked), the top bit says that
/// someone may be parked on the word.
pub(super) const LOCK_WAITERS: u32 = 1 << 31;
/// Owner pid bits of the lock word. Linux pids are below 2^22.
pub(super) const LOCK_PID_MASK: u32 = (1 << 30) - 1;

// Block header words, relative to the block offset.
pub(super) const B_PREV_SIZE: u64 = 0;
pub(super) const B_TAG: u64 = 8;
// Free-list links in a free block's payload.
pub(super) const B_NEXT: u64 = 16;
pub(super) const B_PREV: u64 = 24;

// Tag word: [63:48] check bits, [47:4] size, [3:0] state.
const TAG_STATE_MASK: u64 = 0xF;
const TAG_BODY_MASK: u64 = (1 << 48) - 1;
const TAG_SIZE_MASK: u64 = TAG_BODY_MASK & !TAG_STATE_MASK;
/// Largest block (and so region) size a tag can express.
pub(super) const MAX_BLOCK_SIZE: u64 = TAG_SIZE_MASK;

const STATE_FREE: u64 = 0;
const STATE_IN_USE: u64 = 1;
const STATE_QUICK: u64 = 2;
const STATE_FENCE: u64 = 5;
const STATE_ABSORBED: u64 = 8;

/// What a block tag says about its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Coalesced and linked into a bin.
    Free,
    /// Allocated.
    InUse,
    /// Freed into an exact-size quick list; not coalesced.
    Quick,
    /// The end fence.
    Fence,
    /// The header of a block that was merged into its neighbour; kept so that a second free of
    /// it is recognised as a double free.
    Absorbed,
}

impl State {
    fn bits(self) -> u64 {
        match self {
            State::Free => STATE_FREE,
            State::InUse => STATE_IN_USE,
            State::Quick => STATE_QUICK,
            State::Fence => STATE_FENCE,
            State::Absorbed => STATE_ABSORBED,
        }
    }

    fn from_bits(bits: u64) -> Option<State> {
        Some(match bits {
            STATE_FREE => State::Free,
            STATE_IN_USE => State::InUse,
            STATE_QUICK => State::Quick,
            STATE_FENCE => State::Fence,
            STATE_ABSORBED => State::Absorbed,
            _ => return None,
        })
    }

    /// Free in either of the two ways.
    pub(super) fn is_free(self) -> bool {
        matches!(self, State::Free | State::Quick)
    }
}

/// Check bits bind a tag to its block offset, so that a header copied elsewhere, a stray value
/// in user data or a flipped bit does not pass for a block header.
#[inline]
fn check_bits(block: u64, body: u64) -> u64 {
    // One multiply by an odd constant without long runs of zero bits carries every input bit
    // into the top 16, and is cheap enough for the allocation fast path.
    (block.rotate_left(23) ^ body ^ 0x5bd1_e995_7f4a_7c15).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48
}

/// The tag word for a block at `block` of `size` bytes in `state`.
#[inline]
pub(super) fn make_tag(block: u64, size: u64, state: State) -> u64 {
    let body = (size & TAG_SIZE_MASK) | state.bits();
    body | (check_bits(block, body) << 48)
}

/// Decodes the tag word read at `block`: `(size, state)`, or `None` when the check bits or the
/// state do not match.
#[inline]
pub(super) fn decode_tag(block: u64, tag: u64) -> Option<(u64, State)> {
    let body = tag & TAG_BODY_MASK;
    if tag >> 48 != check_bits(block, body) {
        return None;
    }
    Some((
        body & TAG_SIZE_MASK,
        State::from_bits(body & TAG_STATE_MASK)?,
    ))
}

/// The block size that holds a `size`-byte payload.
#[inline]
pub(super) fn block_size_for(size: u64) -> u64 {
    ((size + BLOCK_HEADER + GRANULE - 1) & !(GRANULE - 1)).max(MIN_BLOCK)
}

/// The quick list for blocks of exactly `size` bytes, if `size` has one.
#[inline]
pub(super) fn quick_index(size: u64) -> Option<usize> {
    if (MIN_BLOCK..=QUICK_MAX_BLOCK).contains(&size) && size % GRANULE == 0 {
        Some(((size - MIN_BLOCK) / GRANULE) as usize)
    } else {
        None
    }
}

/// The block size of quick list `q`.
pub(super) fn quick_class_size(q: usize) -> u64 {
    MIN_BLOCK + GRANULE * q as u64
}

/// The bin of a coalesced free block of `size` bytes (`size >= MIN_BLOCK`): four bins per power
/// of two, so the blocks in a bin differ by less than 25 %, and every block of a higher bin is
/// larger than every block of a lower one.
pub(super) fn bin_index(size: u64) -> usize {
    let size = size.max(MIN_BLOCK);
    let log2 = 63 - u64::from(size.leading_zeros());
    let sub = (size >> (log2 - 2)) & 3;
    (((log2 - 5) * 4 + sub) as usize).min(N_BINS - 1)
}

/// Offset of the head word of quick list `q`.
pub(super) fn quick_head(q: usize) -> u64 {
    H_QUICK_HEADS + 8 * q as u64
}

/// Offset of the head word of bin `k`.
pub(super) fn bin_head(k: usize) -> u64 {
    H_BIN_HEADS + 8 * k as u64
}

/// Offset of the bitmap word that holds bin `k`'s non-empty bit, and the bit.
pub(super) fn bin_map_bit(k: usize) -> (u64, u64) {
    (H_BIN_MAP + 8 * (k / 64) as u64, 1 << (k % 64))
}

#[cfg(not(loom))]
mod c_layout {
    //! The layout as `#[repr(C)]` structs of facade atomics, checked against the offsets.
    #![allow(dead_code)] // The structs exist to be measured, not constructed.

    use super::*;
    use crate::sync::{AtomicU32, AtomicU64};
    use memoffset::offset_of;
    use static_assertions::{assert_eq_size, const_assert, const_assert_eq};

    /// The region header.
    #[repr(C)]
    pub(crate) struct HeapHeader {
        magic: AtomicU64,
        version: AtomicU64,
        region_len: AtomicU64,
        lock: AtomicU32,
        lock_spare: AtomicU32,
        flags: AtomicU64,
        arena_start: AtomicU64,
        arena_end: AtomicU64,
        bytes_used: AtomicU64,
        bytes_free: AtomicU64,
        n_allocs: AtomicU64,
        n_frees: AtomicU64,
        n_live: AtomicU64,
        n_failures: AtomicU64,
        n_reallocs: AtomicU64,
        n_recoveries: AtomicU64,
        corrupt_offset: AtomicU64,
        corrupt_kind: AtomicU64,
        bin_map: [AtomicU64; 2],
        reserved: [AtomicU64; 5],
        quick_heads: [AtomicU64; N_QUICK],
        bin_heads: [AtomicU64; N_BINS],
    }

    /// The header in front of every block.
    #[repr(C)]
    pub(crate) struct BlockHeader {
        prev_size: AtomicU64,
        tag: AtomicU64,
    }

    /// The links in the payload of a free block.
    #[repr(C)]
    pub(crate) struct FreeLinks {
        next: AtomicU64,
        prev: AtomicU64,
    }

    const_assert_eq!(offset_of!(HeapHeader, magic), H_MAGIC as usize);
    const_assert_eq!(offset_of!(HeapHeader, version), H_VERSION as usize);
    const_assert_eq!(offset_of!(HeapHeader, region_len), H_REGION_LEN as usize);
    const_assert_eq!(offset_of!(HeapHeader, lock), H_LOCK as usize);
    const_assert_eq!(offset_of!(HeapHeader, flags), H_FLAGS as usize);
    const_assert_eq!(offset_of!(HeapHeader, arena_start), H_ARENA_START as usize);
    const_assert_eq!(offset_of!(HeapHeader, arena_end), H_ARENA_END as usize);
    const_assert_eq!(offset_of!(HeapHeader, bytes_used), H_BYTES_USED as usize);
    const_assert_eq!(offset_of!(HeapHeader, bytes_free), H_BYTES_FREE as usize);
    const_assert_eq!(offset_of!(HeapHeader, n_allocs), H_N_ALLOCS as usize);
    const_assert_eq!(offset_of!(HeapHeader, n_frees), H_N_FREES as usize);
    const_assert_eq!(offset_of!(HeapHeader, n_live), H_N_LIVE as usize);
    const_assert_eq!(offset_of!(HeapHeader, n_failures), H_N_FAILURES as usize);
    const_assert_eq!(offset_of!(HeapHeader, n_reallocs), H_N_REALLOCS as usize);
    const_assert_eq!(
        offset_of!(HeapHeader, n_recoveries),
        H_N_RECOVERIES as usize
    );
    const_assert_eq!(
        offset_of!(HeapHeader, corrupt_offset),
        H_CORRUPT_OFFSET as usize
    );
    const_assert_eq!(
        offset_of!(HeapHeader, corrupt_kind),
        H_CORRUPT_KIND as usize
    );
    const_assert_eq!(offset_of!(HeapHeader, bin_map), H_BIN_MAP as usize);
    const_assert_eq!(offset_of!(HeapHeader, quick_heads), H_QUICK_HEADS as usize);
    const_assert_eq!(offset_of!(HeapHeader, bin_heads), H_BIN_HEADS as usize);
    const_assert_eq!(core::mem::size_of::<HeapHeader>(), HEADER_END as usize);
    const_assert!(HEADER_END <= ARENA_START);
    const_assert_eq!(ARENA_START % GRANULE, 0);

    assert_eq_size!(BlockHeader, [u64; 2]);
    const_assert_eq!(core::mem::size_of::<BlockHeader>(), BLOCK_HEADER as usize);
    const_assert_eq!(offset_of!(BlockHeader, prev_size), B_PREV_SIZE as usize);
    const_assert_eq!(offset_of!(BlockHeader, tag), B_TAG as usize);
    const_assert_eq!(
        BLOCK_HEADER as usize + offset_of!(FreeLinks, next),
        B_NEXT as usize
    );
    const_assert_eq!(
        BLOCK_HEADER as usize + offset_of!(FreeLinks, prev),
        B_PREV as usize
    );
    const_assert_eq!(
        BLOCK_HEADER as usize + core::mem::size_of::<FreeLinks>(),
        MIN_BLOCK as usize
    );
    const_assert_eq!(QUICK_MAX_BLOCK, 1040);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_reject_other_offsets() {
        for (off, size, state) in [
            (ARENA_START, 32, State::Free),
            (4096, 1040, State::Quick),
            (8192, 1 << 40, State::InUse),
            (64, 16, State::Fence),
            (128, 48, State::Absorbed),
        ] {
            let tag = make_tag(off, size, state);
            assert_eq!(decode_tag(off, tag), Some((size, state)));
            assert_eq!(
                decode_tag(off + 16, tag),
                None,
                "tag must not validate elsewhere"
            );
            for bit in 0..64 {
                assert_eq!(
                    decode_tag(off, tag ^ (1 << bit)),
                    None,
                    "bit {bit} flip undetected"
                );
            }
        }
        assert_eq!(decode_tag(64, 0), None);
    }

    #[test]
    fn bins_are_monotonic_and_quick_classes_exact() {
        let mut last = 0;
        for size in (MIN_BLOCK..1 << 20).step_by(16) {
            let k = bin_index(size);
            assert!(k >= last, "bin of {size} went down");
            last = k;
        }
        assert_eq!(bin_index(32), 0);
        assert_eq!(bin_index(u64::MAX >> 8), N_BINS - 1);
        assert_eq!(quick_index(32), Some(0));
        assert_eq!(quick_index(1040), Some(63));
        assert_eq!(quick_index(1056), None);
        assert_eq!(quick_class_size(63), 1040);
        assert_eq!(block_size_for(1), 32);
        assert_eq!(block_size_for(16), 32);
        assert_eq!(block_size_for(17), 48);
        assert_eq!(block_size_for(1024), 1040);
    }
}
