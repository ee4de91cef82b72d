//! Where a queue's header and slots live, and how element bytes are copied in and out.
//!
//! Element bytes are copied with relaxed **atomic 64-bit word** accesses, not volatile ones. A
//! peer may write a slot while this process reads it (a hostile or buggy peer, or a torn write
//! by a peer killed mid-copy). Under the Rust memory model a racing non-atomic or volatile access
//! is still a data race, whereas atomic accesses never race; on x86-64 and AArch64 a relaxed
//! 64-bit atomic load or store compiles to a plain `mov`/`ldr`/`str`, so the choice costs
//! nothing. The price is that element sizes are multiples of 8 bytes and slots 8-byte aligned.
//! The copy lands in the caller's private buffer before anyone looks at it, so whatever the peer
//! does afterwards cannot change what the caller validates.
//!
//! # Safety
//!
//! Outside loom, `QueueMem` holds pointers into a [`SharedRegion`] it keeps alive (it owns a
//! clone). [`QueueMem::new`] forms them only from [`SharedRegion::view`]/[`SharedRegion::words`]
//! results, which checked bounds and alignment for the header and for all
//! `capacity * elem_words` slot words. `capacity` is a power of two and every slot index is
//! masked with `capacity - 1`, so every slot pointer formed later stays inside that checked
//! range. The bytes are only reached through atomics (`QueueHeader` is all atomics).
//!
//! Under loom the header and the slots are process-local (an `Arc`), and each slot word is a loom
//! `UnsafeCell`, so the model checks that a slot's write happens before its read and the read
//! before its reuse: the index publication protocol, not the copying, is what loom verifies.
#![allow(unsafe_code)]

#[cfg(not(loom))]
use std::ptr::NonNull;

#[cfg(not(loom))]
use vppinfra::sync::AtomicU64;
#[cfg(not(loom))]
use vppinfra::sync::Ordering;

use super::QueueGeometry;
use super::layout::QueueHeader;
#[cfg(not(loom))]
use crate::region::SharedRegion;

// SAFETY: `QueueHeader` is `#[repr(C)]` and made only of `AtomicU32`s (a `ParkWord` is one
// `AtomicU32` outside loom) plus padding, so every bit pattern is valid and all mutation is
// interior; its alignment (128) is below the page size.
#[cfg(not(loom))]
unsafe impl crate::region::AtomicLayout for QueueHeader {}

/// The memory of one queue, as seen by one handle, with the geometry that handle trusts.
pub(crate) struct QueueMem {
    #[cfg(not(loom))]
    _region: SharedRegion,
    #[cfg(not(loom))]
    header: NonNull<QueueHeader>,
    #[cfg(not(loom))]
    slots: NonNull<AtomicU64>,
    #[cfg(loom)]
    local: vppinfra::sync::Arc<LocalQueue>,
    mask: u32,
    elem_words: usize,
}

// SAFETY: the pointers refer to shared memory kept alive by the owned `SharedRegion` clone and
// reached only atomically (module docs), so moving the handle to another thread is sound.
#[cfg(not(loom))]
unsafe impl Send for QueueMem {}

/// A process-local queue for loom models.
#[cfg(loom)]
pub(crate) struct LocalQueue {
    header: QueueHeader,
    slots: Box<[vppinfra::sync::UnsafeCell<u64>]>,
}

impl QueueMem {
    /// The queue at `offset` in `region`, or `None` if its footprint does not fit or the offset
    /// is misaligned.
    #[cfg(not(loom))]
    pub(crate) fn new(
        region: &SharedRegion,
        offset: usize,
        geometry: QueueGeometry,
    ) -> Option<Self> {
        let header: &QueueHeader = region.view(offset)?;
        let slots_offset = offset.checked_add(QueueHeader::SIZE)?;
        let n_words = geometry
            .slot_words()
            .checked_mul(geometry.capacity() as usize)?;
        let slots = region.words(slots_offset, n_words)?;
        Some(Self {
            _region: region.clone(),
            header: NonNull::from(header),
            slots: NonNull::from(slots).cast(),
            mask: geometry.capacity() - 1,
            elem_words: geometry.slot_words(),
        })
    }

    /// A fresh process-local queue (loom models only).
    #[cfg(loom)]
    pub(crate) fn local(geometry: QueueGeometry) -> Self {
        let n_words = geometry.slot_words() * geometry.capacity() as usize;
        let slots = (0..n_words)
            .map(|_| vppinfra::sync::UnsafeCell::new(0))
            .collect();
        Self {
            local: vppinfra::sync::Arc::new(LocalQueue {
                header: QueueHeader::new(),
                slots,
            }),
            mask: geometry.capacity() - 1,
            elem_words: geometry.slot_words(),
        }
    }

    /// A second handle on the same process-local queue (loom models only).
    #[cfg(loom)]
    pub(crate) fn share(&self) -> Self {
        Self {
            local: vppinfra::sync::Arc::clone(&self.local),
            mask: self.mask,
            elem_words: self.elem_words,
        }
    }

    /// The shared header.
    #[inline]
    pub(crate) fn header(&self) -> &QueueHeader {
        #[cfg(not(loom))]
        {
            // SAFETY: `header` came from a checked `SharedRegion::view` of a region we keep
            // alive, and `QueueHeader` is all atomics (module docs).
            unsafe { self.header.as_ref() }
        }
        #[cfg(loom)]
        {
            &self.local.header
        }
    }

    /// The words of the slot that queue index `index` maps to.
    #[cfg(not(loom))]
    #[inline]
    fn slot(&self, index: u32) -> &[AtomicU64] {
        let first = (index & self.mask) as usize * self.elem_words;
        // SAFETY: `index & mask < capacity`, so `first + elem_words <= capacity * elem_words`,
        // the word count `QueueMem::new` checked against the region; the pointer stays in the
        // checked, live, aligned range (module docs).
        let ptr = unsafe { self.slots.add(first) };
        // SAFETY: `ptr..ptr + elem_words` lies in that range; `AtomicU64` accepts any bits and the
        // slice is only read and written atomically.
        unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.elem_words) }
    }

    /// Reads (and discards) the first word of the slot of `index`: a prefetch for a consumer
    /// that polls for that element. Compiled out under loom, where it would be a read racing
    /// with the producer's write, which outside loom is harmless (both are atomic).
    #[inline]
    pub(crate) fn touch_slot(&self, index: u32) {
        #[cfg(not(loom))]
        std::hint::black_box(self.slot(index)[0].load(Ordering::Relaxed));
        #[cfg(loom)]
        let _ = index;
    }

    /// Copies `src` (exactly one element) into the slot of `index`.
    #[inline]
    pub(crate) fn write_slot(&self, index: u32, src: &[u8]) {
        debug_assert_eq!(src.len(), self.elem_words * 8);
        #[cfg(not(loom))]
        {
            let words = self.slot(index);
            // Common element sizes get a fully unrolled copy.
            match words.len() {
                1 => copy_in::<1>(words, src),
                2 => copy_in::<2>(words, src),
                4 => copy_in::<4>(words, src),
                8 => copy_in::<8>(words, src),
                _ => {
                    for (word, bytes) in words.iter().zip(src.chunks_exact(8)) {
                        word.store(u64::from_ne_bytes(to_array(bytes)), Ordering::Relaxed);
                    }
                }
            }
        }
        #[cfg(loom)]
        {
            let first = (index & self.mask) as usize * self.elem_words;
            let cells = &self.local.slots[first..first + self.elem_words];
            for (cell, bytes) in cells.iter().zip(src.chunks_exact(8)) {
                let value = u64::from_ne_bytes(to_array(bytes));
                // SAFETY: the pointer is to a live `u64` in `LocalQueue`; loom checks that no
                // other thread accesses it concurrently, which is what the model verifies.
                cell.with_mut(|p| unsafe { p.write(value) });
            }
        }
    }

    /// Copies the slot of `index` into `dst` (exactly one element).
    #[inline]
    pub(crate) fn read_slot(&self, index: u32, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), self.elem_words * 8);
        #[cfg(not(loom))]
        {
            let words = self.slot(index);
            match words.len() {
                1 => copy_out::<1>(words, dst),
                2 => copy_out::<2>(words, dst),
                4 => copy_out::<4>(words, dst),
                8 => copy_out::<8>(words, dst),
                _ => {
                    for (word, bytes) in words.iter().zip(dst.chunks_exact_mut(8)) {
                        bytes.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
                    }
                }
            }
        }
        #[cfg(loom)]
        {
            let first = (index & self.mask) as usize * self.elem_words;
            let cells = &self.local.slots[first..first + self.elem_words];
            for (cell, bytes) in cells.iter().zip(dst.chunks_exact_mut(8)) {
                // SAFETY: as in `write_slot`; loom checks the access is not concurrent with a write.
                let value = cell.with(|p| unsafe { p.read() });
                bytes.copy_from_slice(&value.to_ne_bytes());
            }
        }
    }
}

impl std::fmt::Debug for QueueMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueMem")
            .field("capacity", &(self.mask as u64 + 1))
            .field("elem_words", &self.elem_words)
            .finish_non_exhaustive()
    }
}

/// Copies `N` words from `src` into the slot `words` (both exactly `N` words long); a
/// compile-time `N` lets the copy unroll into plain moves.
#[cfg(not(loom))]
#[inline(always)]
fn copy_in<const N: usize>(words: &[AtomicU64], src: &[u8]) {
    let (Ok(words), true) = (<&[AtomicU64; N]>::try_from(words), src.len() >= N * 8) else {
        return;
    };
    for (i, word) in words.iter().enumerate() {
        word.store(
            u64::from_ne_bytes(to_array(&src[i * 8..i * 8 + 8])),
            Ordering::Relaxed,
        );
    }
}

/// Copies the `N` words of the slot `words` into `dst` (both exactly `N` words long).
#[cfg(not(loom))]
#[inline(always)]
fn copy_out<const N: usize>(words: &[AtomicU64], dst: &mut [u8]) {
    let (Ok(words), true) = (<&[AtomicU64; N]>::try_from(words), dst.len() >= N * 8) else {
        return;
    };
    for (i, word) in words.iter().enumerate() {
        dst[i * 8..i * 8 + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
}

#[inline(always)]
fn to_array(bytes: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(bytes);
    a
}
