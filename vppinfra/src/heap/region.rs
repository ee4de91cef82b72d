//! The memory a heap lives in, seen as 64-bit atomic words, and the constructors that take raw
//! memory from the caller.
//!
//! # Safety
//!
//! Invariants of [`Region`] outside loom:
//!
//! 1. `base` is aligned to [`REGION_ALIGN`] and valid for reads and writes of `len` bytes for as
//!    long as the `Region` exists: either we allocated it (`owned`), or the caller of
//!    [`Heap::init`]/[`Heap::attach`] promised it.
//! 2. Within this process every access to those bytes goes through atomics of one size per
//!    location: the 32-bit lock word at `H_LOCK` (and its spare half)
//!    through `AtomicU32`, everything else through `AtomicU64` at 8-aligned offsets (header
//!    words, block headers, free-list links and, through [`Heap::read`]/[`Heap::write`], user
//!    data). So concurrent access by our own threads never races in the Rust sense. Other
//!    processes may write the bytes at any time and in any way; that is outside the Rust memory
//!    model, and every value read is validated before use, so it can only produce wrong answers or
//!    `Corrupt` errors, never out-of-bounds access.
//! 3. The unsafe accessors [`Heap::slice`] and [`Heap::slice_mut`] hand out plain references; their
//!    callers take over invariant 2 for the range and the lifetime of the reference.
//!
//! Under loom the region is a boxed array of loom atomics and contains no unsafe code.
#![allow(unsafe_code)]

#[cfg(not(loom))]
use super::layout::H_LOCK;
use super::lock::LockWord;
#[cfg(not(loom))]
use super::{Heap, HeapAccessError};
use super::{HeapInitError, MAX_REGION_LEN, MIN_REGION_LEN, REGION_ALIGN};
use crate::sync::{AtomicU32, AtomicU64};

/// The bytes of one heap, addressed by offset.
pub(super) struct Region {
    #[cfg(not(loom))]
    base: core::ptr::NonNull<u8>,
    #[cfg(not(loom))]
    owned: bool,
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
    #[cfg(loom)]
    lock: AtomicU32,
    #[cfg(loom)]
    futex: super::lock::FutexSim,
    len: usize,
}

/// Checks a region's base and length against the heap's requirements.
pub(super) fn check_region(addr: usize, len: usize) -> Result<(), HeapInitError> {
    if addr == 0 || addr % REGION_ALIGN != 0 {
        return Err(HeapInitError::Misaligned { addr });
    }
    if len < MIN_REGION_LEN {
        return Err(HeapInitError::TooSmall { len });
    }
    if len > MAX_REGION_LEN {
        return Err(HeapInitError::TooLarge { len });
    }
    Ok(())
}

impl Region {
    /// Length of the region in bytes.
    #[inline]
    pub(super) fn len(&self) -> u64 {
        self.len as u64
    }
}

#[cfg(not(loom))]
impl Region {
    /// Zeroed process-local memory of `len` bytes (already checked against the limits).
    pub(super) fn owned(len: usize) -> Region {
        let layout = Self::owned_layout(len);
        // SAFETY: `layout` has a non-zero size (len >= MIN_REGION_LEN) and a power-of-two
        // alignment, as `alloc_zeroed` requires.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = core::ptr::NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        Region {
            base,
            owned: true,
            len,
        }
    }

    fn owned_layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len, REGION_ALIGN)
            .expect("region length was checked against MAX_REGION_LEN")
    }

    /// Wraps caller-provided memory.
    ///
    /// # Safety
    ///
    /// `base` is non-null, aligned to `REGION_ALIGN` and valid for reads and writes of `len`
    /// bytes for the lifetime of the returned value (module invariant 1).
    unsafe fn borrowed(base: *mut u8, len: usize) -> Region {
        Region {
            base: core::ptr::NonNull::new(base).expect("checked non-null by check_region"),
            owned: false,
            len,
        }
    }

    /// The 64-bit word at `off`, if it is 8-aligned and inside the region.
    #[inline]
    pub(super) fn word(&self, off: u64) -> Option<&AtomicU64> {
        if off % 8 != 0 || off.checked_add(8)? > self.len as u64 {
            return None;
        }
        let ptr = self.base.as_ptr().wrapping_add(off as usize).cast::<u64>();
        // SAFETY: off + 8 <= len and base is valid for len bytes for the lifetime of `self`
        // (invariant 1); base is REGION_ALIGN-aligned and off a multiple of 8, so `ptr` is
        // aligned for a u64; every access to these bytes in this process is a 64-bit atomic
        // (invariant 2). The returned reference borrows `self`, so it cannot outlive the memory.
        Some(unsafe { AtomicU64::from_ptr(ptr) })
    }

    /// The futex word that serialises heap operations.
    #[inline]
    pub(super) fn lock_word(&self) -> LockWord<'_> {
        let ptr = self
            .base
            .as_ptr()
            .wrapping_add(H_LOCK as usize)
            .cast::<u32>();
        // SAFETY: H_LOCK + 4 <= ARENA_START <= len (check_region); the offset is 4-aligned and
        // base REGION_ALIGN-aligned; the lock word is only ever accessed as an AtomicU32
        // (invariant 2); the reference borrows `self`.
        LockWord::new(unsafe { AtomicU32::from_ptr(ptr) })
    }

    /// The base address of this mapping.
    pub(super) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

#[cfg(not(loom))]
impl Drop for Region {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: `base` came from `alloc_zeroed` with exactly this layout in `owned`, and
            // is freed only here, once.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), Self::owned_layout(self.len)) };
        }
    }
}

// SAFETY: The region is plain memory that is only accessed through atomics (invariant 2); the
// raw base pointer is not tied to any thread.
#[cfg(not(loom))]
unsafe impl Send for Region {}
// SAFETY: As for `Send`: shared access only ever performs atomic operations.
#[cfg(not(loom))]
unsafe impl Sync for Region {}

#[cfg(loom)]
impl Region {
    /// Zeroed words standing in for `len` bytes of memory.
    pub(super) fn owned(len: usize) -> Region {
        Region {
            words: (0..len / 8).map(|_| AtomicU64::new(0)).collect(),
            lock: AtomicU32::new(0),
            futex: super::lock::FutexSim::new(),
            len,
        }
    }

    /// The 64-bit word at `off`, if it is 8-aligned and inside the region.
    #[inline]
    pub(super) fn word(&self, off: u64) -> Option<&AtomicU64> {
        if off % 8 != 0 {
            return None;
        }
        self.words.get(usize::try_from(off / 8).ok()?)
    }

    /// The lock word (kept outside the word array: loom cannot view one atomic as two).
    #[inline]
    pub(super) fn lock_word(&self) -> LockWord<'_> {
        LockWord::new(&self.lock, &self.futex)
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Region");
        #[cfg(not(loom))]
        d.field("base", &self.base).field("owned", &self.owned);
        d.field("len", &self.len).finish()
    }
}

#[cfg(not(loom))]
impl Heap {
    /// Formats `len` bytes at `base` as an empty heap and returns a handle to it.
    ///
    /// Any previous contents are overwritten. Other processes can then [`attach`](Heap::attach)
    /// to the same bytes through their own mappings.
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes, and stays mapped for as long as the
    ///   returned `Heap` (and anything borrowed from it) exists.
    /// - No code in this process accesses those bytes except through this handle or other heap
    ///   handles on the same region (other processes may do anything; that is survived).
    /// - No other process is using a heap in the region while it is being formatted.
    ///
    /// # Errors
    ///
    /// [`HeapInitError`] if `base` is not aligned to [`REGION_ALIGN`] or `len` is outside
    /// [`MIN_REGION_LEN`]`..=`[`MAX_REGION_LEN`].
    ///
    /// # References
    ///
    /// VPP: `src/vppinfra/mem_dlmalloc.c` (`clib_mem_create_heap`).
    #[doc(alias = "clib_mem_create_heap")]
    #[doc(alias = "mheap_alloc_with_flags")]
    pub unsafe fn init(base: *mut u8, len: usize) -> Result<Heap, HeapInitError> {
        check_region(base as usize, len)?;
        // SAFETY: check_region proved the base non-null and REGION_ALIGN-aligned; the caller
        // promised validity for `len` bytes for the heap's lifetime.
        let region = unsafe { Region::borrowed(base, len) };
        let heap = Heap::from_region(region);
        heap.format();
        Ok(heap)
    }

    /// Attaches to a heap that another process (or an earlier handle) formatted in these bytes.
    ///
    /// Only the header is checked here (magic, version, recorded length equal to `len`, arena
    /// bounds); the blocks are validated lazily by every operation and in full by
    /// [`validate`](Heap::validate).
    ///
    /// # Safety
    ///
    /// - `base` is valid for reads and writes of `len` bytes, and stays mapped for as long as the
    ///   returned `Heap` (and anything borrowed from it) exists.
    /// - No code in this process accesses those bytes except through heap handles.
    ///
    /// # Errors
    ///
    /// [`HeapAttachError`](super::HeapAttachError) if the base or length is unusable or the
    /// header is not a compatible heap header for a region of `len` bytes.
    #[doc(alias = "ssvm_client_init_memfd")]
    pub unsafe fn attach(base: *mut u8, len: usize) -> Result<Heap, super::HeapAttachError> {
        check_region(base as usize, len).map_err(super::HeapAttachError::Region)?;
        // SAFETY: as in `init`: aligned, non-null and valid for `len` bytes per the caller.
        let region = unsafe { Region::borrowed(base, len) };
        let heap = Heap::from_region(region);
        heap.check_header()?;
        Ok(heap)
    }

    /// The base address of this process's mapping of the region.
    pub fn base(&self) -> *mut u8 {
        self.region.base()
    }

    /// A pointer to `len` bytes at `offset` in this process's mapping, after checking that the
    /// range lies inside the arena.
    ///
    /// Getting the pointer is safe; using it is up to the caller, who must respect the module's
    /// rule that the bytes are shared with other threads and processes.
    pub fn ptr(&self, offset: u64, len: usize) -> Result<core::ptr::NonNull<u8>, HeapAccessError> {
        self.check_range(offset, len as u64)?;
        let ptr = self.region.base().wrapping_add(offset as usize);
        Ok(core::ptr::NonNull::new(ptr).expect("inside a non-null mapping"))
    }

    /// Borrows `len` bytes at `offset` as a shared slice, after a bounds check.
    ///
    /// # Safety
    ///
    /// For the lifetime of the slice nothing in this process writes the range (no other thread,
    /// no heap operation that could reuse it: it must lie inside a live allocation the caller
    /// owns). Other processes writing it make the contents unreliable, not the access unsound
    /// in this process's terms, so treat the bytes as untrusted input.
    pub unsafe fn slice(&self, offset: u64, len: usize) -> Result<&[u8], HeapAccessError> {
        let ptr = self.ptr(offset, len)?;
        // SAFETY: the range is inside the mapping (checked by `ptr`), valid for the lifetime of
        // `self`, and the caller guarantees no writer in this process for the borrow's lifetime.
        Ok(unsafe { core::slice::from_raw_parts(ptr.as_ptr(), len) })
    }

    /// Borrows `len` bytes at `offset` as a mutable slice, after a bounds check.
    ///
    /// # Safety
    ///
    /// For the lifetime of the slice nothing else in this process reads or writes the range (it
    /// must lie inside a live allocation the caller owns exclusively, and the caller must not
    /// free or reallocate it meanwhile).
    #[allow(clippy::mut_from_ref)] // The heap hands out disjoint allocations by offset.
    pub unsafe fn slice_mut(&self, offset: u64, len: usize) -> Result<&mut [u8], HeapAccessError> {
        let ptr = self.ptr(offset, len)?;
        // SAFETY: the range is inside the mapping (checked by `ptr`) and valid for the lifetime
        // of `self`; the caller guarantees exclusive access for the borrow's lifetime.
        Ok(unsafe { core::slice::from_raw_parts_mut(ptr.as_ptr(), len) })
    }
}
