//! Shared-memory segments: a sealed memfd (or a named object in `/dev/shm`) with a header page,
//! mapped by a creator and by one or more attachers.
//!
//! ```
//! use std::os::fd::AsFd;
//! use svm::segment::{AttachOptions, Segment, SegmentOptions};
//!
//! let creator = Segment::create(&SegmentOptions::new(1 << 20).name("api").index(7)).unwrap();
//! creator.set_ready();
//! // Normally the fd travels to another process over a Unix socket (SCM_RIGHTS).
//! let fd = creator.fd().try_clone_to_owned().unwrap();
//! let attacher = Segment::attach(fd, &AttachOptions::default()).unwrap();
//! assert_eq!(attacher.name(), "api");
//! assert_eq!(attacher.index(), 7);
//! ```
//!
//! # Creating
//!
//! [`Segment::create`] makes a memfd (close-on-exec, sealing allowed, optionally huge pages),
//! sizes it, seals it with `F_SEAL_SHRINK | F_SEAL_GROW` and then `F_SEAL_SEAL` (so a peer can
//! neither truncate it under a live mapping, which would SIGBUS us, nor add seals such as
//! `F_SEAL_FUTURE_WRITE`), maps it shared and fills the header (see [`header`]'s table). The rest
//! of the segment, from the second page on, is the in-segment heap's. The creator calls
//! [`Segment::set_ready`] once the contents are complete.
//!
//! # Attaching
//!
//! [`Segment::attach`] takes a received fd and checks, before mapping anything, that it carries
//! `F_SEAL_SHRINK` and that the header (read with `pread`) has our magic, version and a size
//! equal to the file's. Only then does it map the whole segment, wait (bounded) for `ready`, and
//! check the heap bounds. Every failure is a [`SegmentAttachError`]; afterwards the segment's
//! geometry is held privately and the shared header is only read for display.
//!
//! Segments are position-independent: everything inside refers to offsets. Attaching at the
//! creator's address, as VPP does, is available with [`AttachPlacement::CreatorAddress`]; it
//! uses `MAP_FIXED_NOREPLACE` and fails with [`SegmentAttachError::AddressInUse`] rather than
//! replacing a mapping.
//!
//! # References
//!
//! Replaces VPP's `ssvm_server_init_memfd`/`ssvm_client_init_memfd` (`src/svm/ssvm.c`), formerly
//! `memfd_master_init`/`memfd_slave_init` (`src/svm/memfd.c`); `memfd_create(2)`, `fcntl(2)`
//! (file sealing), `mmap(2)`.

pub mod header;
mod named;
mod process;

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use vppinfra::sync::Ordering;

use vppinfra::heap::{
    Heap, HeapAllocError, HeapAttachError, HeapFreeError, HeapInitError, HeapStats,
};

use crate::region::{Mapping, Placement, RegionHeap, SharedRegion, page_size, round_up};
use header::{FLAG_HUGE_PAGES, SEGMENT_LAYOUT_VERSION, SEGMENT_MAGIC, SegmentHeader, offsets};
pub use header::{SEGMENT_N_OPAQUE, SEGMENT_NAME_MAX};
pub use named::{NamedPermissions, ShmName, ShmNameError, remove_stale, unlink};

/// What backs a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentKind {
    /// An anonymous memfd, shared by passing its fd.
    Memfd,
    /// A named object in `/dev/shm`, shared by name.
    Named,
}

impl SegmentKind {
    fn to_raw(self) -> u32 {
        match self {
            Self::Memfd => 1,
            Self::Named => 2,
        }
    }
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memfd => "memfd",
            Self::Named => "shm",
        })
    }
}

/// Which side of a segment this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// Made the segment (VPP's "server", formerly "master").
    Creator,
    /// Mapped a segment made elsewhere (VPP's "client", formerly "slave").
    Attacher,
}

/// Whether to back a memfd segment with huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Normal pages.
    #[default]
    Off,
    /// Huge pages if the system has them; otherwise normal pages, with a warning on stderr and
    /// the reason kept in [`Segment::huge_page_fallback`].
    Prefer,
    /// Huge pages or fail.
    Require,
}

/// How to create a segment.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    size: usize,
    name: String,
    index: u32,
    huge_pages: HugePages,
}

impl SegmentOptions {
    /// A segment of (at least) `size` bytes, including the header page; rounded up to the page
    /// size.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            name: String::from("svm segment"),
            index: 0,
            huge_pages: HugePages::Off,
        }
    }

    /// The name recorded in the header and given to the memfd (for `/proc/<pid>/fd` and
    /// `show` output); at most [`SEGMENT_NAME_MAX`] bytes are kept.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// A tag recorded in the header (VPP records the index of the client a segment serves).
    pub fn index(mut self, index: u32) -> Self {
        self.index = index;
        self
    }

    /// Huge pages (memfd segments only).
    pub fn huge_pages(mut self, huge_pages: HugePages) -> Self {
        self.huge_pages = huge_pages;
        self
    }
}

/// Where to map a segment when attaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachPlacement {
    /// Wherever the kernel likes (segments are position-independent).
    #[default]
    Anywhere,
    /// At the address the creator mapped it at, or fail with
    /// [`SegmentAttachError::AddressInUse`]; never replaces an existing mapping.
    CreatorAddress,
}

/// How to attach to a segment.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    ready_timeout: Duration,
    placement: AttachPlacement,
}

impl AttachOptions {
    /// How long to wait for the creator's `ready` by default.
    pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5);

    /// How long to wait for the creator to publish `ready` (and, for a named segment, to
    /// finish creating it).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Where to map the segment.
    pub fn placement(mut self, placement: AttachPlacement) -> Self {
        self.placement = placement;
        self
    }
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            ready_timeout: Self::DEFAULT_READY_TIMEOUT,
            placement: AttachPlacement::Anywhere,
        }
    }
}

/// A mapped segment. Dropping it unmaps it (once every queue handle made on its region is gone
/// too), closes the fd and, for the creator of a named segment, unlinks the name.
pub struct Segment {
    // Declared first: dropped before the region handle below.
    heap: RegionHeap,
    region: SharedRegion,
    fd: OwnedFd,
    role: SegmentRole,
    kind: SegmentKind,
    size: usize,
    heap_range: Range<usize>,
    name: String,
    index: u32,
    huge_pages: bool,
    huge_page_fallback: Option<Errno>,
    /// Set for the creator of a named segment: unlinked on drop.
    unlink_on_drop: Option<ShmName>,
}

/// The header page: the header struct plus reserved space; the heap starts after it.
fn header_page() -> usize {
    page_size().max(4096)
}

/// The smallest segment: the header page plus one page of heap.
fn min_size() -> usize {
    2 * header_page()
}

impl Segment {
    /// Creates, seals and maps a memfd segment. The caller fills it and then calls
    /// [`Segment::set_ready`].
    #[doc(alias = "ssvm_server_init_memfd")]
    #[doc(alias = "memfd_master_init")]
    pub fn create(options: &SegmentOptions) -> Result<Self, SegmentCreateError> {
        match options.huge_pages {
            HugePages::Off => create_memfd(options, false),
            HugePages::Require => create_memfd(options, true).map_err(|e| match e {
                SegmentCreateError::Os { errno, .. } => SegmentCreateError::HugePages(errno),
                other => other,
            }),
            HugePages::Prefer => match create_memfd(options, true) {
                Ok(segment) => Ok(segment),
                Err(SegmentCreateError::Os { call, errno }) => {
                    eprintln!(
                        "svm: warning: segment {:?}: no huge pages ({call}: {errno}), using normal pages",
                        options.name
                    );
                    let mut segment = create_memfd(options, false)?;
                    segment.huge_page_fallback = Some(errno);
                    Ok(segment)
                }
                Err(other) => Err(other),
            },
        }
    }

    /// Attaches to a segment from a received fd (taking ownership of it).
    #[doc(alias = "ssvm_client_init_memfd")]
    #[doc(alias = "memfd_slave_init")]
    pub fn attach(fd: OwnedFd, options: &AttachOptions) -> Result<Self, SegmentAttachError> {
        let deadline = Instant::now().checked_add(options.ready_timeout);
        attach_fd(fd, options, deadline, SegmentKind::Memfd, true)
    }

    fn from_creation(
        fd: OwnedFd,
        mapping: Mapping,
        options: &SegmentOptions,
        kind: SegmentKind,
        huge_pages: bool,
    ) -> Result<Self, SegmentCreateError> {
        let region = SharedRegion::from_mapping(mapping);
        let size = region.len();
        let heap_range = header_page()..size;
        let heap = region
            .format_heap(heap_range.start, heap_range.len())
            .map_err(SegmentCreateError::Heap)?;
        let name: String = truncate_utf8(&options.name, SEGMENT_NAME_MAX).to_owned();
        let header = region_header(&region);
        header.magic.store(0, Ordering::Relaxed);
        header
            .version
            .store(SEGMENT_LAYOUT_VERSION, Ordering::Relaxed);
        header.size.store(size as u64, Ordering::Relaxed);
        header
            .creator_pid
            .store(std::process::id(), Ordering::Relaxed);
        header.attacher_pid.store(0, Ordering::Relaxed);
        header.ready.store_release(0);
        header.index.store(options.index, Ordering::Relaxed);
        header
            .heap_offset
            .store(heap_range.start as u64, Ordering::Relaxed);
        header
            .heap_size
            .store(heap_range.len() as u64, Ordering::Relaxed);
        header
            .creator_va
            .store(region.base_addr() as u64, Ordering::Relaxed);
        header
            .creator_start_time
            .store(process::own_start_time(), Ordering::Relaxed);
        header.kind.store(kind.to_raw(), Ordering::Relaxed);
        header.set_name(&name);
        for word in &header.opaque {
            word.store(0, Ordering::Relaxed);
        }
        header.flags.store(
            if huge_pages { FLAG_HUGE_PAGES } else { 0 },
            Ordering::Relaxed,
        );
        header.magic.store(SEGMENT_MAGIC, Ordering::Release);
        Ok(Self {
            heap,
            region,
            fd,
            role: SegmentRole::Creator,
            kind,
            size,
            heap_range,
            name,
            index: options.index,
            huge_pages,
            huge_page_fallback: None,
            unlink_on_drop: None,
        })
    }

    fn header(&self) -> &SegmentHeader {
        region_header(&self.region)
    }

    /// Publishes `ready`: the contents are complete. Attachers waiting in
    /// [`Segment::attach`] proceed.
    pub fn set_ready(&self) {
        self.header().publish_ready();
    }

    /// True once `ready` is published (read from shared memory).
    pub fn is_ready(&self) -> bool {
        self.header().is_ready()
    }

    /// The mapped memory, for placing queues and other structures at offsets. Clones keep the
    /// mapping alive.
    pub fn region(&self) -> &SharedRegion {
        &self.region
    }

    /// The segment's file descriptor, to pass to a peer (SCM_RIGHTS).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Creator or attacher.
    pub fn role(&self) -> SegmentRole {
        self.role
    }

    /// Memfd or named.
    pub fn kind(&self) -> SegmentKind {
        self.kind
    }

    /// Size in bytes (private copy, validated at attach).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Byte range of the in-segment heap (private copy, validated at attach).
    pub fn heap_range(&self) -> Range<usize> {
        self.heap_range.clone()
    }

    /// The in-segment heap. Its offsets are relative to `heap_range().start`; prefer
    /// [`Segment::alloc`] and [`Segment::free`], which speak segment offsets.
    pub fn heap(&self) -> &Heap {
        self.heap.heap()
    }

    /// How long heap operations wait for a heap lock held by a live peer before failing (the
    /// heap's default is 10 s; a peer that holds it and dies is detected much sooner).
    pub fn set_heap_lock_timeout(&mut self, timeout: Duration) {
        self.heap.heap_mut().set_lock_timeout(timeout);
    }

    /// Whether this handle repairs the segment heap after a peer died holding its lock (see
    /// [`Heap::set_repair`]): off for a process that does not trust the segment's other users
    /// and can do without the heap once they are gone.
    pub fn set_heap_repair(&mut self, repair: bool) {
        self.heap.heap_mut().set_repair(repair);
    }

    /// Allocates `size` bytes aligned to `align` (a power of two up to 4096) from the
    /// in-segment heap; returns the offset from the segment's start.
    #[doc(alias = "ssvm_mem_alloc")]
    pub fn alloc(&self, size: usize, align: usize) -> Result<usize, HeapAllocError> {
        let offset = self.heap().alloc(size, align)?;
        // The heap returns offsets inside its region, which is inside the segment.
        Ok(self.heap_range.start + offset as usize)
    }

    /// Frees an allocation made by [`Segment::alloc`] (in any process), given its segment offset.
    pub fn free(&self, offset: usize) -> Result<(), HeapFreeError> {
        let heap_offset =
            offset
                .checked_sub(self.heap_range.start)
                .ok_or(HeapFreeError::OutOfRange {
                    offset: offset as u64,
                })?;
        self.heap().free(heap_offset as u64)
    }

    /// The name (private copy taken at create/attach).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The creator's index tag (private copy taken at create/attach).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// True when the segment is backed by huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// Why huge pages were not used, when [`HugePages::Prefer`] fell back to normal pages.
    pub fn huge_page_fallback(&self) -> Option<Errno> {
        self.huge_page_fallback
    }

    /// Opaque word `i` of the header, for the layer above (untrusted: whatever the peer wrote).
    pub fn opaque(&self, i: usize) -> Option<u64> {
        self.header()
            .opaque
            .get(i)
            .map(|w| w.load(Ordering::Acquire))
    }

    /// Sets opaque word `i`; false if `i >= SEGMENT_N_OPAQUE`.
    pub fn set_opaque(&self, i: usize, value: u64) -> bool {
        match self.header().opaque.get(i) {
            Some(word) => {
                word.store(value, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Figures for `show` commands. Pids come from shared memory and are informational only.
    pub fn stats(&self) -> SegmentStats {
        let header = self.header();
        SegmentStats {
            name: self.name.clone(),
            kind: self.kind,
            role: self.role,
            size: self.size,
            heap_size: self.heap_range.len(),
            heap: self.heap().stats().ok(),
            creator_pid: header.creator_pid.load(Ordering::Relaxed),
            attacher_pid: header.attacher_pid.load(Ordering::Relaxed),
            index: self.index,
            ready: header.is_ready(),
            huge_pages: self.huge_pages,
            base: self.region.base_addr(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if let Some(name) = &self.unlink_on_drop {
            let _ = unlink(name);
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("role", &self.role)
            .field("size", &self.size)
            .field("heap", &self.heap_range)
            .field("index", &self.index)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Figures about one segment, for `show` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentStats {
    /// Name.
    pub name: String,
    /// Memfd or named.
    pub kind: SegmentKind,
    /// Whether this process created or attached it.
    pub role: SegmentRole,
    /// Size in bytes.
    pub size: usize,
    /// Bytes given to the in-segment heap.
    pub heap_size: usize,
    /// The heap's own figures (used, free, allocations), or `None` if it could not be read
    /// (corrupt, or its lock held past the timeout).
    pub heap: Option<HeapStats>,
    /// Creator's pid, as recorded in the header.
    pub creator_pid: u32,
    /// Last attacher's pid, as recorded in the header.
    pub attacher_pid: u32,
    /// Index tag.
    pub index: u32,
    /// Whether `ready` is published.
    pub ready: bool,
    /// Backed by huge pages.
    pub huge_pages: bool,
    /// Mapping address in this process.
    pub base: usize,
}

impl fmt::Display for SegmentStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (used, free) = match &self.heap {
            Some(h) => (h.bytes_used.to_string(), h.bytes_free.to_string()),
            None => ("?".to_owned(), "?".to_owned()),
        };
        write!(
            f,
            "{:<24} {:<5} {:>10} heap used {:>10} free {:>10} creator {:>7} attacher {:>7} index {:>5}{}{}",
            self.name,
            self.kind,
            self.size,
            used,
            free,
            self.creator_pid,
            self.attacher_pid,
            self.index,
            if self.ready { "" } else { " not-ready" },
            if self.huge_pages { " hugepages" } else { "" },
        )
    }
}

fn region_header(region: &SharedRegion) -> &SegmentHeader {
    // Every `Segment` region is at least `min_size()` bytes and page-aligned, so the header at
    // offset 0 always fits; the fallback can only be reached if that invariant is broken.
    region
        .view::<SegmentHeader>(0)
        .expect("segment region holds its header")
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn os(call: &'static str) -> impl FnOnce(Errno) -> SegmentCreateError {
    move |errno| SegmentCreateError::Os { call, errno }
}

/// Checks a requested size and rounds it up to `page`.
fn checked_size(size: usize, page: usize) -> Result<NonZeroUsize, SegmentCreateError> {
    let max = usize::try_from(i64::MAX).unwrap_or(usize::MAX);
    let rounded = round_up(size, page)
        .filter(|&s| s >= min_size() && s <= max)
        .and_then(NonZeroUsize::new);
    rounded.ok_or(SegmentCreateError::InvalidSize { size })
}

fn create_memfd(options: &SegmentOptions, huge: bool) -> Result<Segment, SegmentCreateError> {
    // memfd names are limited to 249 bytes and may not contain NUL.
    let name: String = truncate_utf8(&options.name, 249).replace('\0', " ");
    let mut flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    if huge {
        flags |= MFdFlags::MFD_HUGETLB;
    }
    let fd = memfd_create(name.as_str(), flags).map_err(os("memfd_create"))?;
    // For a hugetlb memfd, st_blksize is the huge page size.
    let page = if huge {
        let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(os("fstat"))?;
        usize::try_from(stat.st_blksize)
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(2 << 20)
    } else {
        page_size()
    };
    let size = checked_size(options.size, page)?;
    let len = i64::try_from(size.get())
        .map_err(|_| SegmentCreateError::InvalidSize { size: options.size })?;
    nix::unistd::ftruncate(&fd, len).map_err(os("ftruncate"))?;
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
    )
    .map_err(os("F_ADD_SEALS"))?;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SEAL)).map_err(os("F_ADD_SEALS"))?;
    let mapping = Mapping::map_shared(&fd, size, Placement::Anywhere).map_err(os("mmap"))?;
    Segment::from_creation(fd, mapping, options, SegmentKind::Memfd, huge)
}

/// What `pread` found at the start of a segment file.
struct HeaderPreview {
    magic: u32,
    version: u32,
    size: u64,
    creator_pid: u32,
    creator_va: u64,
    creator_start_time: u64,
}

/// Reads the header's fixed fields with `pread`, without mapping anything.
fn preview_header(fd: BorrowedFd<'_>) -> Result<Option<HeaderPreview>, Errno> {
    let mut buf = [0u8; size_of::<SegmentHeader>()];
    let mut filled = 0;
    while filled < buf.len() {
        match nix::sys::uio::pread(fd, &mut buf[filled..], filled as i64) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    let u32_at = |off: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&buf[off..off + 4]);
        u32::from_ne_bytes(a)
    };
    let u64_at = |off: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&buf[off..off + 8]);
        u64::from_ne_bytes(a)
    };
    Ok(Some(HeaderPreview {
        magic: u32_at(offsets::MAGIC),
        version: u32_at(offsets::VERSION),
        size: u64_at(offsets::SIZE),
        creator_pid: u32_at(offsets::CREATOR_PID),
        creator_va: u64_at(offsets::CREATOR_VA),
        creator_start_time: u64_at(offsets::CREATOR_START_TIME),
    }))
}

fn attach_os(call: &'static str) -> impl FnOnce(Errno) -> SegmentAttachError {
    move |errno| SegmentAttachError::Os { call, errno }
}

/// Validates and maps a segment file. `require_seals` is false only for named segments, which
/// cannot be sealed (see [`named`]).
fn attach_fd(
    fd: OwnedFd,
    options: &AttachOptions,
    deadline: Option<Instant>,
    kind: SegmentKind,
    require_seals: bool,
) -> Result<Segment, SegmentAttachError> {
    if require_seals {
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).map_err(attach_os("F_GET_SEALS"))?;
        let seals = SealFlag::from_bits_retain(seals);
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(SegmentAttachError::NotSealed { seals });
        }
    }
    let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(attach_os("fstat"))?;
    let file_size = u64::try_from(stat.st_size).unwrap_or(0);
    if file_size < min_size() as u64 {
        return Err(SegmentAttachError::TooSmall { size: file_size });
    }
    let size = usize::try_from(file_size)
        .ok()
        .filter(|&s| s % page_size() == 0)
        .ok_or(SegmentAttachError::BadSize { size: file_size })?;
    let preview = preview_header(fd.as_fd())
        .map_err(attach_os("pread"))?
        .ok_or(SegmentAttachError::TooSmall { size: file_size })?;
    if preview.magic != SEGMENT_MAGIC {
        return Err(SegmentAttachError::BadMagic {
            found: preview.magic,
        });
    }
    if preview.version != SEGMENT_LAYOUT_VERSION {
        return Err(SegmentAttachError::BadVersion {
            found: preview.version,
        });
    }
    if preview.size != file_size {
        return Err(SegmentAttachError::SizeMismatch {
            header: preview.size,
            file: file_size,
        });
    }
    let placement = match options.placement {
        AttachPlacement::Anywhere => Placement::Anywhere,
        AttachPlacement::CreatorAddress => {
            let addr = usize::try_from(preview.creator_va)
                .ok()
                .filter(|a| a % page_size() == 0)
                .and_then(NonZeroUsize::new)
                .ok_or(SegmentAttachError::BadAddress {
                    addr: preview.creator_va,
                })?;
            Placement::FixedNoReplace(addr)
        }
    };
    let len = NonZeroUsize::new(size).ok_or(SegmentAttachError::TooSmall { size: file_size })?;
    let mapping =
        Mapping::map_shared(&fd, len, placement).map_err(|errno| match (errno, placement) {
            (Errno::EEXIST, Placement::FixedNoReplace(addr)) => {
                SegmentAttachError::AddressInUse { addr: addr.get() }
            }
            (errno, _) => SegmentAttachError::Os {
                call: "mmap",
                errno,
            },
        })?;
    let region = SharedRegion::from_mapping(mapping);
    let header = region_header(&region);
    if !header.wait_ready(deadline) {
        return Err(SegmentAttachError::ReadyTimeout {
            waited: options.ready_timeout,
        });
    }
    // After `ready` (Acquire), read the rest once into private copies and validate it.
    let heap_offset = header.heap_offset.load(Ordering::Relaxed);
    let heap_size = header.heap_size.load(Ordering::Relaxed);
    let heap_range = usize::try_from(heap_offset)
        .ok()
        .zip(usize::try_from(heap_size).ok())
        .filter(|&(off, _)| off >= header_page() && off % 64 == 0)
        .and_then(|(off, len)| Some(off..off.checked_add(len)?))
        .filter(|r| r.end <= size)
        .ok_or(SegmentAttachError::BadHeap {
            offset: heap_offset,
            size: heap_size,
        })?;
    let heap = region
        .attach_heap(heap_range.start, heap_range.len())
        .map_err(SegmentAttachError::Heap)?;
    header
        .attacher_pid
        .store(std::process::id(), Ordering::Relaxed);
    let huge_pages = header.flags.load(Ordering::Relaxed) & FLAG_HUGE_PAGES != 0;
    Ok(Segment {
        name: header.name(),
        index: header.index.load(Ordering::Relaxed),
        region,
        fd,
        role: SegmentRole::Attacher,
        kind,
        size,
        heap,
        heap_range,
        huge_pages,
        huge_page_fallback: None,
        unlink_on_drop: None,
    })
}

/// Why creating a segment failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentCreateError {
    /// The size is below two pages or above `i64::MAX` once rounded.
    #[doc(alias = "SSVM_API_ERROR_NO_SIZE")]
    InvalidSize {
        /// The size asked for.
        size: usize,
    },
    /// [`HugePages::Require`] could not be met.
    HugePages(Errno),
    /// A named segment exists and is not stale: its creator is alive (`Some(pid)`), or its
    /// header is not ours (`None`; remove it with [`unlink`] if it is known to be garbage).
    Exists {
        /// The live creator's pid, if the header is ours.
        creator_pid: Option<u32>,
    },
    /// The in-segment heap could not be formatted.
    Heap(HeapInitError),
    /// A system call failed.
    #[doc(alias = "SSVM_API_ERROR_CREATE_FAILURE")]
    #[doc(alias = "SSVM_API_ERROR_SET_SIZE")]
    #[doc(alias = "SSVM_API_ERROR_MMAP")]
    Os {
        /// Which call.
        call: &'static str,
        /// Its errno.
        errno: Errno,
    },
}

impl fmt::Display for SegmentCreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSize { size } => write!(
                f,
                "segment size {size} is not between two pages and i64::MAX"
            ),
            Self::HugePages(e) => write!(f, "huge pages unavailable: {e}"),
            Self::Heap(e) => write!(f, "cannot format the segment heap: {e}"),
            Self::Exists {
                creator_pid: Some(pid),
            } => write!(f, "segment exists and its creator (pid {pid}) is alive"),
            Self::Exists { creator_pid: None } => {
                f.write_str("a shared-memory object of that name exists and is not a segment")
            }
            Self::Os { call, errno } => write!(f, "{call} failed: {errno}"),
        }
    }
}

impl std::error::Error for SegmentCreateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::HugePages(e) | Self::Os { errno: e, .. } => Some(e),
            Self::Heap(e) => Some(e),
            _ => None,
        }
    }
}

/// Why attaching to a segment failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentAttachError {
    /// The fd lacks `F_SEAL_SHRINK`, so a peer could truncate it under our mapping.
    NotSealed {
        /// The seals it has.
        seals: SealFlag,
    },
    /// The file is smaller than a header page plus one page.
    TooSmall {
        /// The file size.
        size: u64,
    },
    /// The file size is not a whole number of pages or does not fit in memory.
    BadSize {
        /// The file size.
        size: u64,
    },
    /// No segment header (or not initialised yet).
    BadMagic {
        /// The word found instead of the magic.
        found: u32,
    },
    /// A segment of another layout version.
    BadVersion {
        /// The version found.
        found: u32,
    },
    /// The header's size disagrees with the file's.
    SizeMismatch {
        /// Size in the header.
        header: u64,
        /// Size of the file.
        file: u64,
    },
    /// The creator's address is unusable for [`AttachPlacement::CreatorAddress`].
    BadAddress {
        /// The recorded address.
        addr: u64,
    },
    /// Something is already mapped at the creator's address.
    AddressInUse {
        /// The address.
        addr: usize,
    },
    /// The creator did not publish `ready` in time.
    #[doc(alias = "SSVM_API_ERROR_CLIENT_TIMEOUT")]
    ReadyTimeout {
        /// How long we waited.
        waited: Duration,
    },
    /// The recorded heap does not lie inside the segment after the header page.
    BadHeap {
        /// Recorded heap offset.
        offset: u64,
        /// Recorded heap size.
        size: u64,
    },
    /// The in-segment heap is not a heap this process can use.
    Heap(HeapAttachError),
    /// A system call failed.
    #[doc(alias = "SSVM_API_ERROR_MMAP")]
    Os {
        /// Which call.
        call: &'static str,
        /// Its errno.
        errno: Errno,
    },
}

impl fmt::Display for SegmentAttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSealed { seals } => write!(
                f,
                "segment fd is not sealed against shrinking (seals {:#x})",
                seals.bits()
            ),
            Self::TooSmall { size } => write!(f, "segment file of {size} bytes is too small"),
            Self::BadSize { size } => {
                write!(f, "segment file size {size} is not a whole number of pages")
            }
            Self::BadMagic { found } => write!(f, "not a segment (magic {found:#010x})"),
            Self::BadVersion { found } => write!(
                f,
                "segment layout version {found} is not the supported version {SEGMENT_LAYOUT_VERSION}"
            ),
            Self::SizeMismatch { header, file } => write!(
                f,
                "segment header says {header} bytes but the file has {file}"
            ),
            Self::BadAddress { addr } => {
                write!(
                    f,
                    "creator address {addr:#x} is not a usable mapping address"
                )
            }
            Self::AddressInUse { addr } => {
                write!(f, "address {addr:#x} is already mapped in this process")
            }
            Self::ReadyTimeout { waited } => {
                write!(f, "segment not ready after {waited:?}")
            }
            Self::BadHeap { offset, size } => write!(
                f,
                "segment heap at {offset:#x} of {size} bytes is outside the segment"
            ),
            Self::Heap(e) => write!(f, "segment heap unusable: {e}"),
            Self::Os { call, errno } => write!(f, "{call} failed: {errno}"),
        }
    }
}

impl std::error::Error for SegmentAttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os { errno, .. } => Some(errno),
            Self::Heap(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
