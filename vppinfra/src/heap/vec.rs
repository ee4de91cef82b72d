//! [`HeapVec`]: a growable vector whose storage lives in a [`Heap`], named by an offset so that
//! another process mapping the same heap can open it.
//!
//! Storage is one heap allocation: a 16-byte header `{len: u64, capacity: u64}` followed by the
//! elements (at offset 16, or at the element alignment if that is larger). Elements are copied in
//! and out; nothing hands out references into the region, because a peer may change it at any
//! time. For the same reason every operation re-reads `len` and `capacity` from the region and
//! checks them (`len <= capacity <= what the allocation holds`) before touching an element.
//!
//! Element types implement [`Pod`]: plain `Copy` data that is valid for every bit pattern and
//! has no padding, so bytes written by anyone decode to *some* valid value.
//!
//! A `HeapVec` is a view, not an owner: dropping it leaves the storage in the heap (other
//! processes may be using it); [`HeapVec::free`] releases it. Growth may move the storage, so the
//! [`offset`](HeapVec::offset) changes; other handles must re-open from the new offset. The heap
//! serialises allocation, not the vector: concurrent writers of one vector must agree on their own
//! protocol.
//!
//! ```
//! use vppinfra::heap::{Heap, vec::HeapVec};
//! let heap = Heap::new_local(64 << 10)?;
//! let mut v: HeapVec<'_, u32> = HeapVec::new(&heap)?;
//! v.extend_from_slice(&[1, 2, 3])?;
//! v.push(4)?;
//! let again: HeapVec<'_, u32> = HeapVec::open(&heap, v.offset())?;
//! assert_eq!(again.to_vec()?, [1, 2, 3, 4]);
//! assert_eq!(again.get(9)?, None);
//! v.free()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Safety
//!
//! The only unsafe code views a [`Pod`] value (or slice) as bytes and builds a `Pod` value from
//! zeroed bytes. Both rest on the `Pod` contract: no padding (every byte of the value is
//! initialised, so reading it as `u8` is defined) and every bit pattern valid (so zeroed or
//! arbitrary bytes form a valid value).
#![allow(unsafe_code)]

use super::error::{
    HeapAccessError, HeapAllocError, HeapFreeError, HeapLookupError, HeapReallocError,
};
use super::{Heap, MAX_ALIGN};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};

/// Plain data that may live in a heap region and be read back from bytes anyone wrote.
///
/// # Safety
///
/// Implementors guarantee that:
/// - every bit pattern of `size_of::<Self>()` bytes is a valid value of `Self` (no `bool`,
///   `char`, enums, references or pointers with validity requirements), and
/// - `Self` has no padding bytes, so all its bytes are initialised.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! impl_pod {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: a primitive integer or float: no padding, every bit pattern valid.
            unsafe impl Pod for $t {}
        )*
    };
}

impl_pod!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

// SAFETY: an array has no padding between elements and is valid for every bit pattern when its
// element type is.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of a `Pod` slice.
fn bytes_of<T: Pod>(values: &[T]) -> &[u8] {
    // SAFETY: `values` is a live slice of `size_of_val(values)` bytes; `T: Pod` has no padding,
    // so every byte is initialised; the result borrows `values`.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), size_of_val(values)) }
}

/// Reads one `T` from the heap at `offset`.
fn read_pod<T: Pod>(heap: &Heap, offset: u64) -> Result<T, HeapAccessError> {
    let mut value = [zeroed::<T>()];
    let ptr = value.as_mut_ptr().cast::<u8>();
    // SAFETY: `ptr` points at a live one-element array of `size_of::<T>()` bytes that is only
    // reached through this slice while it lives; any bytes written through it form a valid `T`
    // (`Pod`).
    let bytes = unsafe { std::slice::from_raw_parts_mut(ptr, size_of::<T>()) };
    heap.read(offset, bytes)?;
    Ok(value[0])
}

fn zeroed<T: Pod>() -> T {
    // SAFETY: `T: Pod` is valid for every bit pattern, all zeroes included.
    unsafe { std::mem::MaybeUninit::<T>::zeroed().assume_init() }
}

/// Bytes of header in front of the elements.
const HEADER: u64 = 16;

/// Where the elements start in the allocation, and the allocation's alignment.
fn data_offset<T>() -> u64 {
    (align_of::<T>() as u64).max(HEADER)
}

/// A vector of `T` stored in a [`Heap`]. See the [module documentation](self).
pub struct HeapVec<'h, T: Pod> {
    heap: &'h Heap,
    offset: u64,
    /// How many elements the allocation holds, as this handle established it.
    slots: u64,
    _marker: PhantomData<fn() -> T>,
}

impl<T: Pod> fmt::Debug for HeapVec<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeapVec")
            .field("offset", &self.offset)
            .field("slots", &self.slots)
            .finish()
    }
}

impl<'h, T: Pod> HeapVec<'h, T> {
    /// An empty vector with a small initial allocation.
    ///
    /// # Errors
    ///
    /// [`HeapVecCreateError`] if `T` is zero-sized or over-aligned, or the heap cannot allocate.
    #[doc(alias = "vec_new")]
    pub fn new(heap: &'h Heap) -> Result<Self, HeapVecCreateError> {
        Self::with_capacity(heap, 4)
    }

    /// An empty vector with room for `capacity` elements.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::new`], plus [`HeapVecCreateError::CapacityOverflow`].
    pub fn with_capacity(heap: &'h Heap, capacity: usize) -> Result<Self, HeapVecCreateError> {
        check_element::<T>().map_err(|e| match e {
            ElementError::ZeroSized => HeapVecCreateError::ZeroSizedElement,
            ElementError::OverAligned => HeapVecCreateError::OverAlignedElement,
        })?;
        let bytes =
            storage_bytes::<T>(capacity as u64).ok_or(HeapVecCreateError::CapacityOverflow)?;
        let offset = heap
            .alloc(bytes, data_offset::<T>() as usize)
            .map_err(HeapVecCreateError::Alloc)?;
        let v = HeapVec {
            heap,
            offset,
            slots: capacity as u64,
            _marker: PhantomData,
        };
        v.store_header(0, capacity as u64);
        Ok(v)
    }

    /// Opens the vector whose storage starts at `offset` (as returned by
    /// [`offset`](HeapVec::offset), possibly in another process).
    ///
    /// The offset is untrusted: it must be a live allocation of the heap, and the header must
    /// satisfy `len <= capacity` with `capacity` elements fitting in the allocation.
    ///
    /// # Errors
    ///
    /// [`HeapVecOpenError`] naming which check failed.
    pub fn open(heap: &'h Heap, offset: u64) -> Result<Self, HeapVecOpenError> {
        check_element::<T>().map_err(|e| match e {
            ElementError::ZeroSized => HeapVecOpenError::ZeroSizedElement,
            ElementError::OverAligned => HeapVecOpenError::OverAlignedElement,
        })?;
        let usable = heap.usable_size(offset).map_err(HeapVecOpenError::Lookup)? as u64;
        let slots = usable.saturating_sub(data_offset::<T>()) / size_of::<T>() as u64;
        let v = HeapVec {
            heap,
            offset,
            slots,
            _marker: PhantomData,
        };
        v.header().map_err(|e| match e {
            HeapVecAccessError::BadHeader { len, capacity } => {
                HeapVecOpenError::BadHeader { len, capacity }
            }
            HeapVecAccessError::IndexOutOfBounds { .. } => HeapVecOpenError::BadHeader {
                len: u64::MAX,
                capacity: u64::MAX,
            },
        })?;
        Ok(v)
    }

    /// The offset of the vector's storage in the heap; pass it to [`HeapVec::open`].
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The number of elements.
    ///
    /// # Errors
    ///
    /// [`HeapVecAccessError::BadHeader`] if the header in the region is inconsistent.
    #[doc(alias = "vec_len")]
    pub fn len(&self) -> Result<usize, HeapVecAccessError> {
        self.header().map(|(len, _)| len as usize)
    }

    /// True when there are no elements.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    pub fn is_empty(&self) -> Result<bool, HeapVecAccessError> {
        self.len().map(|n| n == 0)
    }

    /// The number of elements the storage holds before it must grow.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    pub fn capacity(&self) -> Result<usize, HeapVecAccessError> {
        self.header().map(|(_, cap)| cap as usize)
    }

    /// A copy of element `index`, or `None` past the end.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    #[doc(alias = "vec_elt")]
    pub fn get(&self, index: usize) -> Result<Option<T>, HeapVecAccessError> {
        let (len, cap) = self.header()?;
        if index as u64 >= len {
            return Ok(None);
        }
        self.read_element(index as u64, len, cap).map(Some)
    }

    /// Overwrites element `index`.
    ///
    /// # Errors
    ///
    /// [`HeapVecAccessError::IndexOutOfBounds`] past the end, or a bad header.
    pub fn set(&mut self, index: usize, value: T) -> Result<(), HeapVecAccessError> {
        let (len, cap) = self.header()?;
        if index as u64 >= len {
            return Err(HeapVecAccessError::IndexOutOfBounds { index, len });
        }
        self.write_elements(index as u64, std::slice::from_ref(&value), len, cap)
    }

    /// Appends `value`, growing the storage if needed.
    ///
    /// # Errors
    ///
    /// [`HeapVecPushError`] if the header is bad or the storage cannot grow.
    #[doc(alias = "vec_add1")]
    pub fn push(&mut self, value: T) -> Result<(), HeapVecPushError> {
        self.extend_from_slice(std::slice::from_ref(&value))
    }

    /// Appends all of `values`, growing the storage once if needed.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::push`].
    #[doc(alias = "vec_add")]
    pub fn extend_from_slice(&mut self, values: &[T]) -> Result<(), HeapVecPushError> {
        self.reserve(values.len())?;
        let (len, cap) = self.header().map_err(HeapVecPushError::from_access)?;
        // `reserve` made room, unless a peer rewrote the header since; then write nothing.
        if cap - len < values.len() as u64 {
            return Err(HeapVecPushError::BadHeader { len, capacity: cap });
        }
        self.write_elements(len, values, len, cap)
            .map_err(HeapVecPushError::from_access)?;
        self.store_header(len + values.len() as u64, cap);
        Ok(())
    }

    /// Makes room for at least `additional` more elements (at least doubling when it grows).
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::push`].
    #[doc(alias = "vec_validate")]
    pub fn reserve(&mut self, additional: usize) -> Result<(), HeapVecPushError> {
        let (len, cap) = self.header().map_err(HeapVecPushError::from_access)?;
        let need = len
            .checked_add(additional as u64)
            .ok_or(HeapVecPushError::CapacityOverflow)?;
        if need <= cap {
            return Ok(());
        }
        let new_cap = need.max(cap.saturating_mul(2)).max(4);
        let bytes = storage_bytes::<T>(new_cap).ok_or(HeapVecPushError::CapacityOverflow)?;
        let offset = self
            .heap
            .realloc(self.offset, bytes, data_offset::<T>() as usize)
            .map_err(HeapVecPushError::Realloc)?;
        self.offset = offset;
        self.slots = new_cap;
        self.store_header(len, new_cap);
        Ok(())
    }

    /// Removes and returns the last element.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    pub fn pop(&mut self) -> Result<Option<T>, HeapVecAccessError> {
        let (len, cap) = self.header()?;
        if len == 0 {
            return Ok(None);
        }
        let value = self.read_element(len - 1, len, cap)?;
        self.store_header(len - 1, cap);
        Ok(Some(value))
    }

    /// Removes all elements, keeping the storage.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    #[doc(alias = "vec_reset_length")]
    pub fn clear(&mut self) -> Result<(), HeapVecAccessError> {
        let (_, cap) = self.header()?;
        self.store_header(0, cap);
        Ok(())
    }

    /// An iterator over copies of the elements present when it was created.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    pub fn iter(&self) -> Result<Iter<'_, 'h, T>, HeapVecAccessError> {
        let (len, cap) = self.header()?;
        Ok(Iter {
            vec: self,
            next: 0,
            len,
            cap,
        })
    }

    /// Copies the elements into a `Vec`.
    ///
    /// # Errors
    ///
    /// As for [`HeapVec::len`].
    pub fn to_vec(&self) -> Result<Vec<T>, HeapVecAccessError> {
        Ok(self.iter()?.collect())
    }

    /// Frees the storage.
    ///
    /// # Errors
    ///
    /// [`HeapFreeError`] if the heap refuses (for example because another handle freed it).
    #[doc(alias = "vec_free")]
    pub fn free(self) -> Result<(), HeapFreeError> {
        self.heap.free(self.offset)
    }

    /// Reads and checks `(len, capacity)`.
    fn header(&self) -> Result<(u64, u64), HeapVecAccessError> {
        let len = self.heap.load_user(self.offset);
        let cap = self.heap.load_user(self.offset + 8);
        match (len, cap) {
            (Some(len), Some(cap)) if len <= cap && cap <= self.slots => Ok((len, cap)),
            (len, cap) => Err(HeapVecAccessError::BadHeader {
                len: len.unwrap_or(u64::MAX),
                capacity: cap.unwrap_or(u64::MAX),
            }),
        }
    }

    fn store_header(&self, len: u64, cap: u64) {
        self.heap.store_user(self.offset, len);
        self.heap.store_user(self.offset + 8, cap);
    }

    fn element_offset(&self, index: u64) -> u64 {
        self.offset + data_offset::<T>() + index * size_of::<T>() as u64
    }

    fn read_element(&self, index: u64, len: u64, cap: u64) -> Result<T, HeapVecAccessError> {
        read_pod(self.heap, self.element_offset(index))
            .map_err(|_| HeapVecAccessError::BadHeader { len, capacity: cap })
    }

    fn write_elements(
        &self,
        index: u64,
        values: &[T],
        len: u64,
        cap: u64,
    ) -> Result<(), HeapVecAccessError> {
        self.heap
            .write(self.element_offset(index), bytes_of(values))
            .map_err(|_| HeapVecAccessError::BadHeader { len, capacity: cap })
    }
}

/// Iterator over copies of a [`HeapVec`]'s elements (see [`HeapVec::iter`]).
#[derive(Debug)]
pub struct Iter<'v, 'h, T: Pod> {
    vec: &'v HeapVec<'h, T>,
    next: u64,
    len: u64,
    cap: u64,
}

impl<T: Pod> Iterator for Iter<'_, '_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next >= self.len {
            return None;
        }
        let value = self.vec.read_element(self.next, self.len, self.cap).ok()?;
        self.next += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.len - self.next) as usize;
        (left, Some(left))
    }
}

enum ElementError {
    ZeroSized,
    OverAligned,
}

fn check_element<T>() -> Result<(), ElementError> {
    if size_of::<T>() == 0 {
        return Err(ElementError::ZeroSized);
    }
    if align_of::<T>() > MAX_ALIGN {
        return Err(ElementError::OverAligned);
    }
    Ok(())
}

/// Allocation bytes for `capacity` elements, if that fits in `usize`.
fn storage_bytes<T>(capacity: u64) -> Option<usize> {
    let bytes = capacity
        .checked_mul(size_of::<T>() as u64)?
        .checked_add(data_offset::<T>())?;
    usize::try_from(bytes).ok()
}

/// Why a [`HeapVec`] could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapVecCreateError {
    /// The element type has size zero.
    ZeroSizedElement,
    /// The element type needs more alignment than the heap offers.
    OverAlignedElement,
    /// The requested capacity overflows.
    CapacityOverflow,
    /// The heap could not allocate the storage.
    Alloc(HeapAllocError),
}

/// Why a [`HeapVec`] could not be opened from an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapVecOpenError {
    /// The element type has size zero.
    ZeroSizedElement,
    /// The element type needs more alignment than the heap offers.
    OverAlignedElement,
    /// The offset is not a live allocation of the heap.
    Lookup(HeapLookupError),
    /// The header does not describe storage that fits in the allocation.
    BadHeader {
        /// The recorded length.
        len: u64,
        /// The recorded capacity.
        capacity: u64,
    },
}

/// Why an element of a [`HeapVec`] could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapVecAccessError {
    /// The index is past the end.
    IndexOutOfBounds {
        /// The index given.
        index: usize,
        /// The length at the time.
        len: u64,
    },
    /// The header in the region is inconsistent (`len > capacity`, or a capacity larger than
    /// the allocation).
    BadHeader {
        /// The recorded length.
        len: u64,
        /// The recorded capacity.
        capacity: u64,
    },
}

/// Why a [`HeapVec`] could not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapVecPushError {
    /// The new length overflows.
    CapacityOverflow,
    /// The heap could not grow the storage.
    Realloc(HeapReallocError),
    /// The header in the region is inconsistent.
    BadHeader {
        /// The recorded length.
        len: u64,
        /// The recorded capacity.
        capacity: u64,
    },
}

impl HeapVecPushError {
    fn from_access(e: HeapVecAccessError) -> Self {
        match e {
            HeapVecAccessError::BadHeader { len, capacity } => {
                HeapVecPushError::BadHeader { len, capacity }
            }
            HeapVecAccessError::IndexOutOfBounds { len, .. } => HeapVecPushError::BadHeader {
                len,
                capacity: u64::MAX,
            },
        }
    }
}

impl fmt::Display for HeapVecCreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapVecCreateError::ZeroSizedElement => {
                write!(f, "heap vec: zero-sized element types are not supported")
            }
            HeapVecCreateError::OverAlignedElement => {
                write!(f, "heap vec: element alignment exceeds {MAX_ALIGN}")
            }
            HeapVecCreateError::CapacityOverflow => write!(f, "heap vec: capacity overflow"),
            HeapVecCreateError::Alloc(e) => write!(f, "heap vec: {e}"),
        }
    }
}

impl std::error::Error for HeapVecCreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapVecCreateError::Alloc(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for HeapVecOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapVecOpenError::ZeroSizedElement => {
                write!(
                    f,
                    "heap vec open: zero-sized element types are not supported"
                )
            }
            HeapVecOpenError::OverAlignedElement => {
                write!(f, "heap vec open: element alignment exceeds {MAX_ALIGN}")
            }
            HeapVecOpenError::Lookup(e) => write!(f, "heap vec open: {e}"),
            HeapVecOpenError::BadHeader { len, capacity } => write!(
                f,
                "heap vec open: header len {len} capacity {capacity} does not fit the allocation"
            ),
        }
    }
}

impl std::error::Error for HeapVecOpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapVecOpenError::Lookup(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for HeapVecAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapVecAccessError::IndexOutOfBounds { index, len } => {
                write!(f, "heap vec: index {index} out of bounds for length {len}")
            }
            HeapVecAccessError::BadHeader { len, capacity } => write!(
                f,
                "heap vec: header len {len} capacity {capacity} does not fit the allocation"
            ),
        }
    }
}

impl std::error::Error for HeapVecAccessError {}

impl fmt::Display for HeapVecPushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapVecPushError::CapacityOverflow => write!(f, "heap vec push: capacity overflow"),
            HeapVecPushError::Realloc(e) => write!(f, "heap vec push: {e}"),
            HeapVecPushError::BadHeader { len, capacity } => write!(
                f,
                "heap vec push: header len {len} capacity {capacity} does not fit the allocation"
            ),
        }
    }
}

impl std::error::Error for HeapVecPushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HeapVecPushError::Realloc(e) => Some(e),
            _ => None,
        }
    }
}
