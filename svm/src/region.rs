//! Memory shared with other processes: [`SharedRegion`], a mapped range kept alive by whoever
//! uses it, and the private `Mapping` that owns an `mmap`.
//!
//! # Safety
//!
//! Invariants this module keeps, on which the rest of the crate relies:
//!
//! 1. A `SharedRegion` describes `len` bytes at `base` that stay mapped readable and writable for
//!    as long as the region or any clone of it lives. For regions made here that holds because the
//!    region holds an `Arc` of the `Mapping`, which unmaps only on its last drop; for
//!    [`SharedRegion::from_raw_parts`] the caller promises it.
//! 2. Those bytes may be written by another process at any time. This crate therefore never
//!    creates a `&`/`&mut` to plain bytes of a region: it only hands out references to types made
//!    entirely of atomics (the `AtomicLayout` types, for which every bit pattern is a valid
//!    value and all mutation is interior), and it copies data with atomic word accesses.
//! 3. Views handed out by `SharedRegion::view` and [`SharedRegion::words`] are bounds- and
//!    alignment-checked against `len` before the pointer is formed.
//!
//! `mmap`/`munmap` are called through nix. Every mapping is made with a `NULL` address hint or
//! with `MAP_FIXED_NOREPLACE`, never `MAP_FIXED`, so no mapping of the process is ever replaced.
#![allow(unsafe_code)]

use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, ProtFlags};
use vppinfra::heap::{Heap, HeapAttachError, HeapInitError};
use vppinfra::sync::{Arc, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Marks a `#[repr(C)]` type that may be viewed in place in shared memory.
///
/// # Safety
///
/// Implementors must be made only of atomics (and padding), so that every bit pattern is a valid
/// value and every mutation goes through interior mutability; their alignment must be at most
/// the page size.
pub(crate) unsafe trait AtomicLayout {}

// SAFETY: `SegmentHeader` is `#[repr(C)]` and made only of `AtomicU32`/`AtomicU64` (a `ParkWord`
// is one `AtomicU32` outside loom), so every bit pattern is valid and all mutation is interior;
// its alignment is 8.
unsafe impl AtomicLayout for crate::segment::header::SegmentHeader {}

/// An owned `mmap` of a file (or anonymous memory), unmapped on drop.
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range, not data; the bytes behind it are only accessed through
// `SharedRegion` views, which are atomic (module invariant 2). Unmapping from another thread is
// as valid as from this one.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives out nothing but the address and length.
unsafe impl Sync for Mapping {}

/// Where a shared mapping should be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Wherever the kernel likes.
    Anywhere,
    /// Exactly this address, failing with `EEXIST` if anything is mapped there already.
    FixedNoReplace(NonZeroUsize),
}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and read-write.
    pub(crate) fn map_shared(
        fd: impl AsFd,
        len: NonZeroUsize,
        placement: Placement,
    ) -> Result<Self, Errno> {
        let (addr, flags) = match placement {
            Placement::Anywhere => (None, MapFlags::MAP_SHARED),
            Placement::FixedNoReplace(addr) => (
                Some(addr),
                MapFlags::MAP_SHARED | MapFlags::MAP_FIXED_NOREPLACE,
            ),
        };
        // SAFETY: mmap(2) with a NULL hint or MAP_FIXED_NOREPLACE never replaces an existing
        // mapping, so no live Rust object can be unmapped or aliased by this call. The result is a
        // fresh MAP_SHARED range owned by the returned `Mapping`.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                addr,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                flags,
                fd,
                0,
            )
        }?;
        let mapping = Self {
            base: ptr.cast(),
            len: len.get(),
        };
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        if let Placement::FixedNoReplace(addr) = placement {
            if mapping.base.as_ptr() as usize != addr.get() {
                return Err(Errno::EEXIST);
            }
        }
        Ok(mapping)
    }

    /// Maps `len` bytes of zeroed anonymous memory, shared (inherited across `fork`).
    pub(crate) fn anonymous(len: NonZeroUsize) -> Result<Self, Errno> {
        // SAFETY: mmap(2) with a NULL hint creates a new mapping and replaces nothing; the result
        // is owned by the returned `Mapping`.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_ANONYMOUS,
            )
        }?;
        Ok(Self {
            base: ptr.cast(),
            len: len.get(),
        })
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the range this `Mapping` mapped and still owns; every
        // view into it borrows a `SharedRegion` holding this `Mapping`'s `Arc`, so none outlives
        // it (module invariant 1).
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

/// A range of memory that may be shared with other processes, and the handle that keeps it
/// mapped. Cheap to clone; queues hold a clone so their memory outlives the segment handle.
///
/// Every value read from a region may have been written by a hostile peer.
#[derive(Clone)]
pub struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
    _keep: Option<Arc<Mapping>>,
}

// SAFETY: the region's bytes are only reached through atomic views (module invariant 2), so
// sharing the pointer between threads cannot cause a data race; the keep-alive `Arc` is Send.
unsafe impl Send for SharedRegion {}
// SAFETY: as above; all access through `&SharedRegion` is atomic.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// A region over memory the caller manages (another allocator, a mapping made elsewhere).
    ///
    /// # Safety
    ///
    /// - `base..base + len` must be mapped readable and writable for as long as the returned
    ///   region or any clone of it (including the queue handles built on it) lives.
    /// - Nothing in this process may access those bytes other than through `svm` views or other
    ///   atomic accesses (another process may write them freely).
    pub unsafe fn from_raw_parts(base: NonNull<u8>, len: usize) -> Self {
        Self {
            base,
            len,
            _keep: None,
        }
    }

    /// A fresh zeroed anonymous shared mapping of `len` bytes (rounded up to the page size),
    /// for queues between threads or between a process and the children it forks.
    pub fn anonymous(len: usize) -> Result<Self, Errno> {
        let len =
            NonZeroUsize::new(page_round_up(len).ok_or(Errno::ENOMEM)?).ok_or(Errno::EINVAL)?;
        Ok(Self::from_mapping(Mapping::anonymous(len)?))
    }

    pub(crate) fn from_mapping(mapping: Mapping) -> Self {
        Self {
            base: mapping.base(),
            len: mapping.len(),
            _keep: Some(Arc::new(mapping)),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address the region is mapped at in this process (for display and placement only;
    /// shared structures use offsets).
    pub fn base_addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// True when `offset..offset + size` lies inside the region.
    pub fn contains(&self, offset: usize, size: usize) -> bool {
        offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// A view of the all-atomic `T` at `offset`, or `None` if it does not fit or is misaligned.
    pub(crate) fn view<T: AtomicLayout>(&self, offset: usize) -> Option<&T> {
        let ptr = self.checked_ptr(offset, size_of::<T>(), align_of::<T>())?;
        // SAFETY: `checked_ptr` proved `offset..offset + size_of::<T>()` lies in the region and is
        // aligned for `T`; the region stays mapped while `&self` lives (invariant 1); `T` is made
        // of atomics only, so any bytes a peer wrote form a valid `T` and concurrent writes are
        // interior mutation (invariant 2).
        Some(unsafe { ptr.cast::<T>().as_ref() })
    }

    /// A view of `n_words` 64-bit atomic words at `offset` (8-byte aligned), or `None` if out of
    /// range or misaligned. Atomics are the only sound way to touch memory a peer may write at
    /// any time; whatever they hold is untrusted.
    pub fn words(&self, offset: usize, n_words: usize) -> Option<&[AtomicU64]> {
        let size = n_words.checked_mul(8)?;
        let ptr = self.checked_ptr(offset, size, align_of::<AtomicU64>())?;
        // SAFETY: as in `view`: in bounds, aligned, mapped while `&self` lives, and `AtomicU64`
        // has the size and alignment of `u64` and accepts any bit pattern.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>().as_ptr(), n_words) })
    }

    /// A view of `n_words` 32-bit atomic words at `offset` (4-byte aligned), or `None` if out of
    /// range or misaligned.
    pub fn words32(&self, offset: usize, n_words: usize) -> Option<&[AtomicU32]> {
        let size = n_words.checked_mul(4)?;
        let ptr = self.checked_ptr(offset, size, align_of::<AtomicU32>())?;
        // SAFETY: as in `words`, for `AtomicU32`.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU32>().as_ptr(), n_words) })
    }

    /// A view of `len` bytes at `offset` as atomic bytes, or `None` if out of range.
    fn bytes(&self, offset: usize, len: usize) -> Option<&[AtomicU8]> {
        let ptr = self.checked_ptr(offset, len, 1)?;
        // SAFETY: as in `words`, for `AtomicU8` (alignment 1).
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU8>().as_ptr(), len) })
    }

    /// Copies `dst.len()` bytes at `offset` out of the region (relaxed atomic accesses: 8 bytes
    /// at a time where aligned). The copy is a snapshot a peer may have been changing; validate
    /// it after copying, never before.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), RegionAccessError> {
        let bytes = self.bytes(offset, dst.len()).ok_or(RegionAccessError {
            offset,
            len: dst.len(),
            region_len: self.len,
        })?;
        let (head, words, tail) = split_aligned(self.base_addr() + offset, dst.len());
        for (d, b) in dst[..head].iter_mut().zip(&bytes[..head]) {
            *d = b.load(Ordering::Relaxed);
        }
        if let Some(ws) = self.words(offset + head, words) {
            for (d, w) in dst[head..head + words * 8].chunks_exact_mut(8).zip(ws) {
                d.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
            }
        }
        let rest = head + words * 8;
        for (d, b) in dst[rest..rest + tail].iter_mut().zip(&bytes[rest..]) {
            *d = b.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies `src` into the region at `offset` (relaxed atomic accesses, 8 bytes at a time
    /// where aligned). Publish it to a peer with a `Release` store of some index or flag.
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<(), RegionAccessError> {
        let bytes = self.bytes(offset, src.len()).ok_or(RegionAccessError {
            offset,
            len: src.len(),
            region_len: self.len,
        })?;
        let (head, words, tail) = split_aligned(self.base_addr() + offset, src.len());
        for (s, b) in src[..head].iter().zip(&bytes[..head]) {
            b.store(*s, Ordering::Relaxed);
        }
        if let Some(ws) = self.words(offset + head, words) {
            for (s, w) in src[head..head + words * 8].chunks_exact(8).zip(ws) {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                w.store(u64::from_ne_bytes(a), Ordering::Relaxed);
            }
        }
        let rest = head + words * 8;
        for (s, b) in src[rest..rest + tail].iter().zip(&bytes[rest..]) {
            b.store(*s, Ordering::Relaxed);
        }
        Ok(())
    }

    fn checked_ptr(&self, offset: usize, size: usize, align: usize) -> Option<NonNull<u8>> {
        if !self.contains(offset, size) {
            return None;
        }
        let addr = self.base_addr().checked_add(offset)?;
        if addr % align != 0 {
            return None;
        }
        // SAFETY: `offset <= len` (checked by `contains`), so the result stays inside (or one past)
        // the mapped range that `base` starts, as `NonNull::add` requires.
        Some(unsafe { self.base.add(offset) })
    }
}

/// A [`Heap`] over a range of a region, which it keeps mapped.
pub(crate) struct RegionHeap {
    // Declared first so it drops before the region's keep-alive handle.
    heap: Heap,
    _region: SharedRegion,
}

impl RegionHeap {
    pub(crate) fn heap(&self) -> &Heap {
        &self.heap
    }

    pub(crate) fn heap_mut(&mut self) -> &mut Heap {
        &mut self.heap
    }
}

impl fmt::Debug for RegionHeap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.heap.fmt(f)
    }
}

impl SharedRegion {
    /// Formats a fresh heap over `offset..offset + len` of the region.
    pub(crate) fn format_heap(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<RegionHeap, HeapInitError> {
        let base = self
            .checked_ptr(offset, len, vppinfra::heap::REGION_ALIGN)
            .ok_or(HeapInitError::TooLarge { len })?;
        // SAFETY: `checked_ptr` proved the range lies in the region and is aligned; the returned
        // `RegionHeap` holds a clone of this region, so the range stays mapped for the heap's
        // life (invariant 1). This process reaches those bytes only through the heap and through
        // atomic views of allocations it handed out (invariant 2). The creator formats the heap
        // before any peer can see the segment (it is not `ready` yet).
        let heap = unsafe { Heap::init(base.as_ptr(), len) }?;
        Ok(RegionHeap {
            heap,
            _region: self.clone(),
        })
    }

    /// Attaches to the heap a peer formatted over `offset..offset + len` of the region.
    pub(crate) fn attach_heap(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<RegionHeap, HeapAttachError> {
        let base = self
            .checked_ptr(offset, len, vppinfra::heap::REGION_ALIGN)
            .ok_or(HeapAttachError::Region(HeapInitError::TooLarge { len }))?;
        // SAFETY: as in `format_heap`: in bounds, aligned, kept mapped by the clone held in the
        // result, and reached in this process only through heap handles and atomic views.
        let heap = unsafe { Heap::attach(base.as_ptr(), len) }?;
        Ok(RegionHeap {
            heap,
            _region: self.clone(),
        })
    }
}

impl fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRegion")
            .field("base", &format_args!("{:#x}", self.base_addr()))
            .field("len", &self.len)
            .finish()
    }
}

/// Splits `len` bytes starting at address `addr` into a byte-wise head up to 8-byte alignment,
/// whole 8-byte words, and a byte-wise tail.
fn split_aligned(addr: usize, len: usize) -> (usize, usize, usize) {
    let head = ((8 - addr % 8) % 8).min(len);
    let words = (len - head) / 8;
    (head, words, len - head - words * 8)
}

/// A byte range does not lie inside the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionAccessError {
    /// Start of the range.
    pub offset: usize,
    /// Its length.
    pub len: usize,
    /// The region's length.
    pub region_len: usize,
}

impl fmt::Display for RegionAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {:#x} do not fit in a region of {} bytes",
            self.len, self.offset, self.region_len
        )
    }
}

impl std::error::Error for RegionAccessError {}

/// The system page size.
pub(crate) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096)
}

/// `len` rounded up to a multiple of the page size, or `None` on overflow.
pub(crate) fn page_round_up(len: usize) -> Option<usize> {
    round_up(len, page_size())
}

/// `len` rounded up to a multiple of `to` (a power of two), or `None` on overflow.
pub(crate) fn round_up(len: usize, to: usize) -> Option<usize> {
    debug_assert!(to.is_power_of_two());
    Some(len.checked_add(to - 1)? & !(to - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    struct Pair {
        a: AtomicU32,
        b: AtomicU32,
    }
    // SAFETY: two atomics, no padding.
    unsafe impl AtomicLayout for Pair {}

    #[test]
    fn views_are_bounds_and_alignment_checked() {
        let region = SharedRegion::anonymous(100).unwrap();
        assert_eq!(region.len(), page_size());
        assert!(region.view::<Pair>(0).is_some());
        assert!(region.view::<Pair>(2).is_none(), "misaligned");
        assert!(region.view::<Pair>(region.len() - 8).is_some());
        assert!(
            region.view::<Pair>(region.len() - 4).is_none(),
            "past the end"
        );
        assert!(region.view::<Pair>(usize::MAX - 2).is_none(), "overflow");
        assert!(region.words(8, region.len() / 8 - 1).is_some());
        assert!(region.words(8, region.len() / 8).is_none());
        assert!(region.words(4, 1).is_none());
        assert!(region.words(0, usize::MAX).is_none());
    }

    #[test]
    fn clones_keep_the_mapping_alive() {
        let region = SharedRegion::anonymous(4096).unwrap();
        let clone = region.clone();
        region
            .view::<Pair>(0)
            .unwrap()
            .a
            .store(7, Ordering::Relaxed);
        drop(region);
        assert_eq!(clone.view::<Pair>(0).unwrap().a.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn byte_copies_handle_any_alignment() {
        let region = SharedRegion::anonymous(4096).unwrap();
        let data: Vec<u8> = (0..=255u8).collect();
        for offset in 0..9 {
            for len in [0, 1, 7, 8, 9, 17, 64, 255] {
                region.write(offset, &data[..len]).unwrap();
                let mut back = vec![0u8; len];
                region.read(offset, &mut back).unwrap();
                assert_eq!(back, &data[..len], "offset {offset} len {len}");
            }
        }
        assert_eq!(
            region.write(4090, &[0; 7]),
            Err(RegionAccessError {
                offset: 4090,
                len: 7,
                region_len: 4096
            })
        );
        assert!(region.read(usize::MAX, &mut [0; 2]).is_err());
        assert!(region.write(4096, &[]).is_ok());
        let words = region.words32(8, 2).unwrap();
        words[1].store(0xdead_beef, Ordering::Relaxed);
        let mut four = [0u8; 4];
        region.read(12, &mut four).unwrap();
        assert_eq!(u32::from_ne_bytes(four), 0xdead_beef);
        assert!(region.words32(2, 1).is_none());
    }

    #[test]
    fn round_up_rounds() {
        assert_eq!(round_up(0, 64), Some(0));
        assert_eq!(round_up(1, 64), Some(64));
        assert_eq!(round_up(64, 64), Some(64));
        assert_eq!(round_up(usize::MAX, 64), None);
    }
}
