//! Error types of the heap: one enum per fallible operation, plus [`HeapCorruption`], the
//! description of an inconsistency that several of them carry.

use std::fmt;

/// What kind of inconsistency was found in a heap region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The header's magic word is wrong.
    HeaderMagic,
    /// The header's layout version is not ours.
    HeaderVersion,
    /// The header's region length or arena bounds disagree with the mapping.
    HeaderLayout,
    /// A block header's tag fails its check bits or has an impossible state.
    BlockTag,
    /// A block's size is too small, unaligned, or runs past the arena.
    BlockSize,
    /// A block offset is outside the arena or unaligned.
    BlockBounds,
    /// A block's boundary tag (previous block's size) disagrees with the previous block.
    PrevSize,
    /// Two coalesced free blocks are neighbours.
    AdjacentFree,
    /// The end fence is damaged.
    Fence,
    /// A free-list link is out of range or its back link disagrees.
    FreeLink,
    /// A free list is longer than the number of free blocks: a cycle or a duplicate.
    FreeListCycle,
    /// A listed block is not free, or is in the wrong list for its size.
    FreeListMember,
    /// A free block is in no list.
    FreeBlockUnlisted,
    /// A bin's non-empty bit disagrees with its list head.
    BinMap,
    /// The recorded bytes in use or free disagree with the blocks.
    StatsBytes,
    /// The recorded live count or alloc/free counters disagree with the blocks.
    StatsCounts,
    /// The region recorded corruption of a kind this version does not know.
    Unknown,
    /// The heap needed a repair (its lock owner died, or the repair flag was set) and this
    /// handle does not repair ([`Heap::set_repair`](super::Heap::set_repair)).
    RepairRefused,
}

impl CorruptionKind {
    // New kinds go at the end: a kind's code is its position, and codes are recorded in regions.
    const ALL: [CorruptionKind; 18] = [
        CorruptionKind::HeaderMagic,
        CorruptionKind::HeaderVersion,
        CorruptionKind::HeaderLayout,
        CorruptionKind::BlockTag,
        CorruptionKind::BlockSize,
        CorruptionKind::BlockBounds,
        CorruptionKind::PrevSize,
        CorruptionKind::AdjacentFree,
        CorruptionKind::Fence,
        CorruptionKind::FreeLink,
        CorruptionKind::FreeListCycle,
        CorruptionKind::FreeListMember,
        CorruptionKind::FreeBlockUnlisted,
        CorruptionKind::BinMap,
        CorruptionKind::StatsBytes,
        CorruptionKind::StatsCounts,
        CorruptionKind::Unknown,
        CorruptionKind::RepairRefused,
    ];

    /// A stable non-zero code, for recording in the region.
    pub(super) fn code(self) -> u64 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .map_or(0, |i| i as u64 + 1)
    }

    /// The kind for a recorded code; unknown codes (a newer peer, or scribbles) map to `Unknown`.
    pub(super) fn from_code(code: u64) -> CorruptionKind {
        usize::try_from(code)
            .ok()
            .and_then(|c| c.checked_sub(1))
            .and_then(|i| Self::ALL.get(i).copied())
            .unwrap_or(CorruptionKind::Unknown)
    }

    fn describe(self) -> &'static str {
        match self {
            CorruptionKind::HeaderMagic => "bad header magic",
            CorruptionKind::HeaderVersion => "unsupported header version",
            CorruptionKind::HeaderLayout => "header layout disagrees with the region",
            CorruptionKind::BlockTag => "bad block tag",
            CorruptionKind::BlockSize => "bad block size",
            CorruptionKind::BlockBounds => "block offset out of bounds",
            CorruptionKind::PrevSize => "boundary tag disagrees with previous block",
            CorruptionKind::AdjacentFree => "adjacent free blocks not coalesced",
            CorruptionKind::Fence => "damaged end fence",
            CorruptionKind::FreeLink => "bad free-list link",
            CorruptionKind::FreeListCycle => "free list has a cycle or duplicate",
            CorruptionKind::FreeListMember => "free list holds a block that does not belong",
            CorruptionKind::FreeBlockUnlisted => "free block missing from its list",
            CorruptionKind::BinMap => "bin bitmap disagrees with bin heads",
            CorruptionKind::StatsBytes => "byte statistics disagree with blocks",
            CorruptionKind::StatsCounts => "allocation counters disagree with blocks",
            CorruptionKind::Unknown => "corruption of an unknown kind",
            CorruptionKind::RepairRefused => "a repair was needed and this handle does not repair",
        }
    }
}

/// An inconsistency found in a heap region: where (a byte offset from the region base) and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeapCorruption {
    /// Offset from the region base of the word or block found inconsistent.
    pub offset: u64,
    /// What is wrong there.
    pub kind: CorruptionKind,
}

impl fmt::Display for HeapCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "heap corrupt at offset {:#x}: {}",
            self.offset,
            self.kind.describe()
        )
    }
}

impl std::error::Error for HeapCorruption {}

/// Why the heap lock could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapLockError {
    /// A live process held the lock for longer than the handle's lock timeout.
    Timeout {
        /// The pid recorded in the lock word when waiting gave up.
        owner: u32,
    },
    /// The futex call failed in a way that is not part of normal waiting.
    Os(nix::errno::Errno),
}

impl fmt::Display for HeapLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapLockError::Timeout { owner } => {
                write!(f, "timed out waiting for the heap lock held by pid {owner}")
            }
            HeapLockError::Os(e) => write!(f, "futex wait on the heap lock failed: {e}"),
        }
    }
}

impl std::error::Error for HeapLockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapLockError::Os(e) => Some(e),
            HeapLockError::Timeout { .. } => None,
        }
    }
}

/// Why a region could not be formatted as a heap ([`Heap::init`](super::Heap::init),
/// [`Heap::new_local`](super::Heap::new_local)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapInitError {
    /// The region base is not aligned to [`REGION_ALIGN`](super::REGION_ALIGN).
    Misaligned {
        /// The base address.
        addr: usize,
    },
    /// The region is shorter than [`MIN_REGION_LEN`](super::MIN_REGION_LEN).
    TooSmall {
        /// The length given.
        len: usize,
    },
    /// The region is longer than [`MAX_REGION_LEN`](super::MAX_REGION_LEN).
    TooLarge {
        /// The length given.
        len: usize,
    },
}

impl fmt::Display for HeapInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapInitError::Misaligned { addr } => write!(
                f,
                "heap region base {addr:#x} is not aligned to {} bytes",
                super::REGION_ALIGN
            ),
            HeapInitError::TooSmall { len } => write!(
                f,
                "heap region of {len} bytes is smaller than the minimum {}",
                super::MIN_REGION_LEN
            ),
            HeapInitError::TooLarge { len } => write!(
                f,
                "heap region of {len} bytes is larger than the maximum {}",
                super::MAX_REGION_LEN
            ),
        }
    }
}

impl std::error::Error for HeapInitError {}

/// Why an existing heap region could not be attached ([`Heap::attach`](super::Heap::attach)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapAttachError {
    /// The region's base or length is unusable, for the same reasons `init` would reject it.
    Region(HeapInitError),
    /// The region does not start with a heap header.
    BadMagic {
        /// The word found where the magic belongs.
        found: u64,
    },
    /// The header has a layout version this code does not speak.
    BadVersion {
        /// The version found.
        found: u64,
    },
    /// The header records a different region length than the mapping has.
    SizeMismatch {
        /// The length recorded in the header.
        header: u64,
        /// The length of this mapping.
        len: u64,
    },
    /// The header's arena bounds are not the ones this length implies.
    BadLayout {
        /// The recorded arena start.
        arena_start: u64,
        /// The recorded arena end.
        arena_end: u64,
    },
}

impl fmt::Display for HeapAttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapAttachError::Region(e) => write!(f, "cannot attach heap: {e}"),
            HeapAttachError::BadMagic { found } => {
                write!(f, "region holds no heap (magic {found:#018x})")
            }
            HeapAttachError::BadVersion { found } => {
                write!(f, "heap layout version {found} is not supported")
            }
            HeapAttachError::SizeMismatch { header, len } => write!(
                f,
                "heap header records {header} bytes but the mapping has {len}"
            ),
            HeapAttachError::BadLayout {
                arena_start,
                arena_end,
            } => write!(
                f,
                "heap header records arena {arena_start:#x}..{arena_end:#x}, which this length does not imply"
            ),
        }
    }
}

impl std::error::Error for HeapAttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapAttachError::Region(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Heap::alloc`](super::Heap::alloc) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapAllocError {
    /// Zero bytes were requested.
    ZeroSize,
    /// The alignment is not a power of two or exceeds [`MAX_ALIGN`](super::MAX_ALIGN).
    BadAlign {
        /// The alignment requested.
        align: usize,
    },
    /// The request can never fit in this heap's arena.
    TooLarge {
        /// The size requested.
        size: usize,
    },
    /// No free block is large enough right now.
    OutOfMemory {
        /// The size requested.
        size: usize,
        /// The alignment requested.
        align: usize,
    },
    /// The heap is corrupt.
    Corrupt(HeapCorruption),
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why [`Heap::free`](super::Heap::free) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapFreeError {
    /// The offset lies outside the arena.
    OutOfRange {
        /// The offset given.
        offset: u64,
    },
    /// The offset is not the start of an allocation (an interior or foreign offset).
    NotAllocated {
        /// The offset given.
        offset: u64,
    },
    /// The offset was an allocation that has already been freed.
    DoubleFree {
        /// The offset given.
        offset: u64,
    },
    /// The heap is corrupt.
    Corrupt(HeapCorruption),
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why [`Heap::realloc`](super::Heap::realloc) failed. The original allocation is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapReallocError {
    /// Zero bytes were requested.
    ZeroSize,
    /// The alignment is not a power of two or exceeds [`MAX_ALIGN`](super::MAX_ALIGN).
    BadAlign {
        /// The alignment requested.
        align: usize,
    },
    /// The request can never fit in this heap's arena.
    TooLarge {
        /// The size requested.
        size: usize,
    },
    /// The block cannot grow and no free block is large enough to move it to.
    OutOfMemory {
        /// The size requested.
        size: usize,
        /// The alignment requested.
        align: usize,
    },
    /// The offset lies outside the arena.
    OutOfRange {
        /// The offset given.
        offset: u64,
    },
    /// The offset is not the start of an allocation.
    NotAllocated {
        /// The offset given.
        offset: u64,
    },
    /// The offset was an allocation that has already been freed.
    AlreadyFree {
        /// The offset given.
        offset: u64,
    },
    /// The heap is corrupt.
    Corrupt(HeapCorruption),
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why [`Heap::usable_size`](super::Heap::usable_size) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapLookupError {
    /// The offset lies outside the arena.
    OutOfRange {
        /// The offset given.
        offset: u64,
    },
    /// The offset is not the start of an allocation.
    NotAllocated {
        /// The offset given.
        offset: u64,
    },
    /// The offset was an allocation that has since been freed.
    AlreadyFree {
        /// The offset given.
        offset: u64,
    },
    /// The heap is corrupt.
    Corrupt(HeapCorruption),
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why [`Heap::validate`](super::Heap::validate) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapValidateError {
    /// The first inconsistency found.
    Corrupt(HeapCorruption),
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why [`Heap::stats`](super::Heap::stats) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapStatsError {
    /// The heap lock could not be taken.
    Lock(HeapLockError),
}

/// Why a byte range of the heap could not be accessed ([`Heap::read`](super::Heap::read),
/// [`Heap::write`](super::Heap::write) and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapAccessError {
    /// The range does not lie inside the arena.
    OutOfRange {
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
}

impl fmt::Display for HeapAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapAccessError::OutOfRange { offset, len } => {
                write!(f, "range {offset:#x}+{len} lies outside the heap arena")
            }
        }
    }
}

impl std::error::Error for HeapAccessError {}

/// `Error::source` for the enums whose only wrapped errors are `Corrupt` and `Lock`.
macro_rules! corrupt_or_lock_source {
    ($ty:ident) => {
        impl std::error::Error for $ty {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $ty::Corrupt(c) => Some(c),
                    $ty::Lock(e) => Some(e),
                    #[allow(unreachable_patterns)] // `HeapValidateError` has no other variants.
                    _ => None,
                }
            }
        }
    };
}

impl fmt::Display for HeapAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapAllocError::ZeroSize => write!(f, "heap alloc: zero-byte request"),
            HeapAllocError::BadAlign { align } => write!(
                f,
                "heap alloc: alignment {align} is not a power of two up to {}",
                super::MAX_ALIGN
            ),
            HeapAllocError::TooLarge { size } => {
                write!(f, "heap alloc: {size} bytes can never fit in this heap")
            }
            HeapAllocError::OutOfMemory { size, align } => {
                write!(
                    f,
                    "heap alloc: out of memory for {size} bytes aligned to {align}"
                )
            }
            HeapAllocError::Corrupt(c) => write!(f, "heap alloc: {c}"),
            HeapAllocError::Lock(e) => write!(f, "heap alloc: {e}"),
        }
    }
}
corrupt_or_lock_source!(HeapAllocError);

impl fmt::Display for HeapFreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapFreeError::OutOfRange { offset } => {
                write!(f, "heap free: offset {offset:#x} is outside the arena")
            }
            HeapFreeError::NotAllocated { offset } => {
                write!(
                    f,
                    "heap free: offset {offset:#x} is not the start of an allocation"
                )
            }
            HeapFreeError::DoubleFree { offset } => {
                write!(f, "heap free: offset {offset:#x} was already freed")
            }
            HeapFreeError::Corrupt(c) => write!(f, "heap free: {c}"),
            HeapFreeError::Lock(e) => write!(f, "heap free: {e}"),
        }
    }
}
corrupt_or_lock_source!(HeapFreeError);

impl fmt::Display for HeapReallocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapReallocError::ZeroSize => write!(f, "heap realloc: zero-byte request"),
            HeapReallocError::BadAlign { align } => write!(
                f,
                "heap realloc: alignment {align} is not a power of two up to {}",
                super::MAX_ALIGN
            ),
            HeapReallocError::TooLarge { size } => {
                write!(f, "heap realloc: {size} bytes can never fit in this heap")
            }
            HeapReallocError::OutOfMemory { size, align } => write!(
                f,
                "heap realloc: out of memory for {size} bytes aligned to {align}"
            ),
            HeapReallocError::OutOfRange { offset } => {
                write!(f, "heap realloc: offset {offset:#x} is outside the arena")
            }
            HeapReallocError::NotAllocated { offset } => write!(
                f,
                "heap realloc: offset {offset:#x} is not the start of an allocation"
            ),
            HeapReallocError::AlreadyFree { offset } => {
                write!(f, "heap realloc: offset {offset:#x} was already freed")
            }
            HeapReallocError::Corrupt(c) => write!(f, "heap realloc: {c}"),
            HeapReallocError::Lock(e) => write!(f, "heap realloc: {e}"),
        }
    }
}
corrupt_or_lock_source!(HeapReallocError);

impl fmt::Display for HeapLookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapLookupError::OutOfRange { offset } => {
                write!(f, "heap lookup: offset {offset:#x} is outside the arena")
            }
            HeapLookupError::NotAllocated { offset } => write!(
                f,
                "heap lookup: offset {offset:#x} is not the start of an allocation"
            ),
            HeapLookupError::AlreadyFree { offset } => {
                write!(f, "heap lookup: offset {offset:#x} was already freed")
            }
            HeapLookupError::Corrupt(c) => write!(f, "heap lookup: {c}"),
            HeapLookupError::Lock(e) => write!(f, "heap lookup: {e}"),
        }
    }
}
corrupt_or_lock_source!(HeapLookupError);

impl fmt::Display for HeapValidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapValidateError::Corrupt(c) => write!(f, "heap validate: {c}"),
            HeapValidateError::Lock(e) => write!(f, "heap validate: {e}"),
        }
    }
}
corrupt_or_lock_source!(HeapValidateError);

impl fmt::Display for HeapStatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapStatsError::Lock(e) => write!(f, "heap stats: {e}"),
        }
    }
}

impl std::error::Error for HeapStatsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapStatsError::Lock(e) => Some(e),
        }
    }
}

/// The internal failure of a locked operation, mapped to each public enum at the boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fail {
    Corrupt(HeapCorruption),
    Lock(HeapLockError),
    OutOfMemory,
    OutOfRange,
    NotAllocated,
    NotLive,
}

impl Fail {
    pub(super) fn corrupt(offset: u64, kind: CorruptionKind) -> Fail {
        Fail::Corrupt(HeapCorruption { offset, kind })
    }
}

impl From<HeapLockError> for Fail {
    fn from(e: HeapLockError) -> Fail {
        Fail::Lock(e)
    }
}

impl From<HeapCorruption> for Fail {
    fn from(c: HeapCorruption) -> Fail {
        Fail::Corrupt(c)
    }
}
