//! Named segments in `/dev/shm`, for the classic "attach by name" connection.
//!
//! The creator makes `/dev/shm/<prefix>-<name>` with `shm_open(O_CREAT | O_EXCL)`, sets its mode
//! (and owner) explicitly so the umask does not matter, sizes and maps it, and fills the same
//! header as a memfd segment. An attacher opens it by name and waits (bounded) for the creator to
//! finish. The prefix lets several servers run side by side (VPP's `chroot prefix`).
//!
//! A name left behind by a server that died is *stale*: its header names a creator pid that is
//! gone (or a zombie, or recycled by another process: the header also records the creator's start
//! time). [`Segment::create_named`] removes a stale segment in its way; [`remove_stale`] sweeps
//! all of a prefix's. The creator unlinks the name when its [`Segment`] drops.
//!
//! Unlike a memfd, a `/dev/shm` object cannot be sealed, so anyone allowed to open it for
//! writing can truncate it under a live mapping and make its users fault (SIGBUS). Access is
//! governed by the mode and owner only: use named segments for trusted peers, and memfd segments
//! passed over a socket for untrusted ones.
//!
//! # References
//!
//! VPP's `svm_map_region`/`region_name_from_args` (`src/svm/svm.c`); `shm_open(3)`,
//! `shm_overview(7)`.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::{
    AttachOptions, HeaderPreview, SEGMENT_LAYOUT_VERSION, SEGMENT_MAGIC, Segment,
    SegmentAttachError, SegmentCreateError, SegmentKind, SegmentOptions, attach_fd, checked_size,
    os, preview_header, process,
};
use crate::region::{Mapping, Placement, page_size};

/// Where the kernel exposes POSIX shared-memory objects.
const SHM_DIR: &str = "/dev/shm";
/// Longest file name in `/dev/shm`.
const NAME_MAX: usize = 255;

/// A validated shared-memory object name: `/<prefix>-<name>` or `/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShmName(String);

impl ShmName {
    /// `name` (one leading `/` allowed), optionally under `prefix`.
    pub fn new(prefix: Option<&str>, name: &str) -> Result<Self, ShmNameError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        check_component(name)?;
        let full = match prefix {
            Some(prefix) => {
                check_component(prefix)?;
                format!("/{prefix}-{name}")
            }
            None => format!("/{name}"),
        };
        if full.len() - 1 > NAME_MAX {
            return Err(ShmNameError::TooLong {
                len: full.len() - 1,
            });
        }
        Ok(Self(full))
    }

    /// The name as `shm_open` takes it (with the leading `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object's path under `/dev/shm`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(SHM_DIR).join(&self.0[1..])
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_component(s: &str) -> Result<(), ShmNameError> {
    if s.is_empty() || s == "." || s == ".." {
        return Err(ShmNameError::Empty);
    }
    if let Some(c) = s.chars().find(|&c| c == '/' || c == '\0') {
        return Err(ShmNameError::BadChar { c });
    }
    Ok(())
}

/// Why a shared-memory name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShmNameError {
    /// The name or prefix is empty, `.` or `..`.
    Empty,
    /// It contains `/` (other than one leading) or NUL.
    BadChar {
        /// The character.
        c: char,
    },
    /// Longer than a file name may be.
    TooLong {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for ShmNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("shared-memory name or prefix is empty"),
            Self::BadChar { c } => write!(f, "shared-memory name contains {c:?}"),
            Self::TooLong { len } => {
                write!(f, "shared-memory name of {len} bytes exceeds {NAME_MAX}")
            }
        }
    }
}

impl std::error::Error for ShmNameError {}

/// Mode and owner the creator gives a named segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedPermissions {
    mode: Mode,
    owner: Option<Uid>,
    group: Option<Gid>,
}

impl NamedPermissions {
    /// Permission bits (for example `0o660`), applied exactly (the umask does not apply).
    pub fn new(mode: u32) -> Self {
        Self {
            mode: Mode::from_bits_truncate(mode & 0o777),
            owner: None,
            group: None,
        }
    }

    /// Owner and group to give the object (`None` keeps the creator's). Changing the owner
    /// needs privilege; a group the creator belongs to does not.
    pub fn owner(mut self, owner: Option<u32>, group: Option<u32>) -> Self {
        self.owner = owner.map(Uid::from_raw);
        self.group = group.map(Gid::from_raw);
        self
    }
}

impl Default for NamedPermissions {
    /// Owner read-write only.
    fn default() -> Self {
        Self::new(0o600)
    }
}

/// What occupies a name.
enum Occupant {
    /// Nothing any more.
    Gone,
    /// Our segment, whose creator is dead.
    Stale,
    /// Our segment, whose creator is alive.
    Live(u32),
    /// Not one of our segments (or not finished).
    Foreign,
}

/// Looks at the object `name` without mapping it.
fn inspect(name: &ShmName) -> Result<(Occupant, Option<OwnedFd>), Errno> {
    // Non-blocking: opening a FIFO (another program's, or a doorbell) for reading would wait
    // for a writer forever.
    let fd = match shm_open(
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok((Occupant::Gone, None)),
        Err(e) => return Err(e),
    };
    let regular = nix::sys::stat::fstat(fd.as_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    if !regular {
        return Ok((Occupant::Foreign, Some(fd)));
    }
    let occupant = match preview_header(fd.as_fd()) {
        Ok(Some(HeaderPreview {
            magic: SEGMENT_MAGIC,
            version: SEGMENT_LAYOUT_VERSION,
            creator_pid,
            creator_start_time,
            ..
        })) => {
            if process::is_alive(creator_pid, creator_start_time) {
                Occupant::Live(creator_pid)
            } else {
                Occupant::Stale
            }
        }
        _ => Occupant::Foreign,
    };
    Ok((occupant, Some(fd)))
}

/// Unlinks `name` if it still is the object `fd` refers to (not one re-created meanwhile).
fn unlink_if_same(name: &ShmName, fd: &OwnedFd) -> Result<(), Errno> {
    let ours = nix::sys::stat::fstat(fd.as_fd())?;
    match std::fs::metadata(name.path()) {
        Ok(meta) if meta.ino() == ours.st_ino && meta.dev() == ours.st_dev => {
            match shm_unlink(name.as_str()) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    }
}

/// Removes `name` (for example a foreign object known to be garbage).
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &ShmName) -> Result<(), Errno> {
    shm_unlink(name.as_str())
}

/// Removes every segment under `prefix` (every one of ours in `/dev/shm` when `None`) whose
/// creator is dead; returns the names removed. Objects that are not our segments, or that this
/// process may not open, are left alone.
pub fn remove_stale(prefix: Option<&str>) -> Result<Vec<ShmName>, Errno> {
    let lead = prefix.map(|p| format!("{p}-"));
    let entries = std::fs::read_dir(SHM_DIR)
        .map_err(|e| e.raw_os_error().map_or(Errno::EIO, Errno::from_raw))?;
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        // Only regular files can be our segments; never open FIFOs, sockets or devices.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        if lead.as_deref().is_some_and(|l| !file_name.starts_with(l)) {
            continue;
        }
        let Ok(name) = ShmName::new(None, file_name) else {
            continue;
        };
        if let Ok((Occupant::Stale, Some(fd))) = inspect(&name) {
            if unlink_if_same(&name, &fd).is_ok() {
                removed.push(name);
            }
        }
    }
    Ok(removed)
}

/// Unlinks a freshly created name unless disarmed (creation failed half-way).
struct UnlinkGuard<'a>(Option<&'a ShmName>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            let _ = shm_unlink(name.as_str());
        }
    }
}

impl Segment {
    /// Creates a named segment in `/dev/shm`, first removing a stale one of the same name.
    /// The name is unlinked when the returned segment drops.
    pub fn create_named(
        name: &ShmName,
        options: &SegmentOptions,
        permissions: &NamedPermissions,
    ) -> Result<Self, SegmentCreateError> {
        let size = checked_size(options.size, page_size())?;
        let fd = open_exclusive(name)?;
        let mut guard = UnlinkGuard(Some(name));
        nix::sys::stat::fchmod(&fd, permissions.mode).map_err(os("fchmod"))?;
        if permissions.owner.is_some() || permissions.group.is_some() {
            nix::unistd::fchown(&fd, permissions.owner, permissions.group).map_err(os("fchown"))?;
        }
        let len = i64::try_from(size.get())
            .map_err(|_| SegmentCreateError::InvalidSize { size: options.size })?;
        nix::unistd::ftruncate(&fd, len).map_err(os("ftruncate"))?;
        let mapping = Mapping::map_shared(&fd, size, Placement::Anywhere).map_err(os("mmap"))?;
        let mut segment = Segment::from_creation(fd, mapping, options, SegmentKind::Named, false)?;
        segment.unlink_on_drop = Some(name.clone());
        guard.0 = None;
        Ok(segment)
    }

    /// Attaches to the named segment `name`, waiting (up to the ready timeout) for its creator
    /// to finish creating it and to publish `ready`.
    pub fn attach_named(
        name: &ShmName,
        options: &AttachOptions,
    ) -> Result<Self, SegmentAttachError> {
        let deadline = Instant::now().checked_add(options.ready_timeout);
        loop {
            let fd = shm_open(
                name.as_str(),
                OFlag::O_RDWR | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| SegmentAttachError::Os {
                call: "shm_open",
                errno,
            })?;
            match attach_fd(fd, options, deadline, SegmentKind::Named, false) {
                // The creator may be between shm_open and filling the header.
                Err(
                    SegmentAttachError::TooSmall { .. } | SegmentAttachError::BadMagic { found: 0 },
                ) if deadline.is_none_or(|d| Instant::now() < d) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }
}

/// `shm_open(O_CREAT | O_EXCL)`, removing a stale occupant of the name first.
fn open_exclusive(name: &ShmName) -> Result<OwnedFd, SegmentCreateError> {
    // A few rounds: each clears one stale occupant, or finds a live/foreign one and stops.
    for _ in 0..8 {
        match shm_open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
            Mode::S_IRUSR | Mode::S_IWUSR,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EEXIST) => {}
            Err(errno) => {
                return Err(SegmentCreateError::Os {
                    call: "shm_open",
                    errno,
                });
            }
        }
        match inspect(name).map_err(os("shm_open"))? {
            (Occupant::Gone, _) => {}
            (Occupant::Stale, Some(fd)) => unlink_if_same(name, &fd).map_err(os("shm_unlink"))?,
            (Occupant::Stale, None) => {}
            (Occupant::Live(pid), _) => {
                return Err(SegmentCreateError::Exists {
                    creator_pid: Some(pid),
                });
            }
            (Occupant::Foreign, _) => {
                return Err(SegmentCreateError::Exists { creator_pid: None });
            }
        }
    }
    Err(SegmentCreateError::Os {
        call: "shm_open",
        errno: Errno::EEXIST,
    })
}
