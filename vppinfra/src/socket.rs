//! `AF_UNIX` stream helpers: a listener that handles stale socket files, connect with typed
//! errors, file-descriptor passing (`SCM_RIGHTS`), peer credentials and the send-queue length.
//!
//! Every socket is created close-on-exec, and every received descriptor arrives close-on-exec
//! (`MSG_CMSG_CLOEXEC`), so none leak into programs the process starts.
//!
//! - [`listen`] with [`ListenOptions`]: binds a path, replacing a *stale* socket file (one nobody
//!   listens on) but refusing a live one or anything that is not a socket; sets the file's mode
//!   and group between `bind` and `listen`, so no client can connect under the wrong permissions.
//!   The [`Listener`] removes its socket file when dropped, if the file is still its own.
//! - [`connect`] / [`connect_with`]: errors tell "no such socket", "nobody listening" and
//!   "permission denied" apart; an optional timeout bounds the wait for a full backlog.
//! - [`send_with_fds`] / [`recv_with_fds`]: bytes plus up to [`SCM_MAX_FD`] descriptors per
//!   message. Receiving more descriptors than asked for, or a truncated control message, closes
//!   every descriptor that arrived and returns an error, so a hostile peer cannot leak
//!   descriptors into the process.
//! - [`peer_credentials`]: `SO_PEERCRED` (pid, uid, gid of the peer at connect time).
//! - [`outq_len`] / [`wait_outq_drained`]: `SIOCOUTQ`, to know when the peer has read everything.
//!
//! ```
//! use std::os::fd::AsFd;
//! use vppinfra::socket::{self, ListenOptions};
//! # let dir = std::env::temp_dir().join(format!("vppinfra-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("api.sock");
//! let listener = socket::listen(&path, &ListenOptions::new().mode(0o600)).unwrap();
//! let client = socket::connect(&path).unwrap();
//! let server_side = listener.accept().unwrap();
//! socket::send_with_fds(&client, b"hi", &[client.as_fd()]).unwrap();
//! let mut buf = [0u8; 16];
//! let (n, fds) = socket::recv_with_fds(&server_side, &mut buf, 4).unwrap();
//! assert_eq!((&buf[..n], fds.len()), (&b"hi"[..], 1));
//! assert_eq!(socket::peer_credentials(&server_side).unwrap().pid, std::process::id() as i32);
//! drop(listener); // removes api.sock
//! assert!(!path.exists());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! # References
//! VPP `src/vppinfra/socket.c` (`clib_socket_init`, `clib_socket_accept`, `clib_socket_sendmsg`,
//! `clib_socket_recvmsg`); man pages unix(7), socket(7), cmsg(3), recvmsg(2), sendmsg(2).
//!
//! # Safety
//! Two operations have no safe wrapper in nix and live in the private `sys` module:
//! adopting a descriptor the kernel installed for us during `recvmsg` (each number is taken from
//! an `SCM_RIGHTS` control message in a buffer we zeroed and the kernel filled, and is adopted
//! exactly once), and the `TIOCOUTQ` ioctl (which writes one `c_int` to a live local).

use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    self as nixsock, AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr, sockopt,
};

/// The most descriptors Linux passes in one message (`SCM_MAX_FD`).
pub const SCM_MAX_FD: usize = 253;

/// Default mode of a listener's socket file: owner only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Default mode of parent directories that [`ListenOptions::create_parent`] creates.
pub const DEFAULT_PARENT_MODE: u32 = 0o755;

mod sys {
    //! The unsafe operations of the socket module.
    //!
    //! # Safety
    //! `adopt_received_fd` must only be given a descriptor number that the kernel installed in
    //! this process's table during the current `recvmsg` call, taken from an `SCM_RIGHTS` control
    //! message, and each such number exactly once. Nothing else in the process knows that number
    //! yet, so the returned `OwnedFd` is its sole owner.
    #![allow(unsafe_code)]

    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

    use nix::errno::Errno;

    /// Takes ownership of a descriptor received through `SCM_RIGHTS`.
    ///
    /// Callers uphold the module invariant: `raw` came from the control buffer of the
    /// `recvmsg` that just returned, and is adopted once.
    pub(super) fn adopt_received_fd(raw: RawFd) -> OwnedFd {
        debug_assert!(raw >= 0);
        // SAFETY: per the module invariant, `raw` is an open descriptor the kernel installed for
        // this call ("the kernel installs the file descriptors in the receiving process", unix(7),
        // SCM_RIGHTS) and no other object owns it.
        unsafe { OwnedFd::from_raw_fd(raw) }
    }

    /// Bytes queued in the socket's send buffer and not yet consumed by the peer (`SIOCOUTQ`).
    pub(super) fn tiocoutq(fd: BorrowedFd<'_>) -> Result<usize, Errno> {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ for sockets, unix(7)) stores one int through its argument,
        // which points to `queued`, a live local of that type; `fd` is a valid borrowed fd.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        Errno::result(rc)?;
        Ok(usize::try_from(queued).unwrap_or(0))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why [`listen`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketListenError {
    /// The path is empty or contains a NUL byte.
    InvalidPath,
    /// The path does not fit `sockaddr_un` (107 bytes plus the terminating NUL).
    PathTooLong {
        /// The path's length in bytes.
        len: usize,
    },
    /// A server is already listening on the path.
    AddrInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket (a file, directory, symlink...) exists at the path; it is
    /// never removed.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The path (or the socket found there) is not accessible to this process.
    PermissionDenied {
        /// The path.
        path: PathBuf,
    },
    /// The parent directory could not be created.
    CreateParent {
        /// The directory.
        dir: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// A system call failed.
    Os {
        /// The step that failed: "socket", "bind", "chmod", "chown", "listen"...
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl SocketListenError {
    /// The underlying errno, where there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Os { errno, .. } | Self::CreateParent { errno, .. } => Some(*errno),
            Self::AddrInUse { .. } => Some(Errno::EADDRINUSE),
            Self::PermissionDenied { .. } => Some(Errno::EACCES),
            Self::PathTooLong { .. } => Some(Errno::ENAMETOOLONG),
            Self::InvalidPath | Self::NotASocket { .. } => None,
        }
    }
}

impl fmt::Display for SocketListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPath => f.write_str("socket path is empty or contains a nul byte"),
            Self::PathTooLong { len } => write!(
                f,
                "socket path is {len} bytes, longer than sockaddr_un allows"
            ),
            Self::AddrInUse { path } => {
                write!(f, "a server is already listening on {}", path.display())
            }
            Self::NotASocket { path } => write!(
                f,
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
            Self::PermissionDenied { path } => {
                write!(f, "permission denied on {}", path.display())
            }
            Self::CreateParent { dir, errno } => {
                write!(f, "cannot create directory {}: {errno}", dir.display())
            }
            Self::Os { op, errno } => write!(f, "{op} failed: {errno}"),
        }
    }
}

impl std::error::Error for SocketListenError {}

impl From<SocketListenError> for std::io::Error {
    fn from(e: SocketListenError) -> Self {
        match e.errno() {
            Some(errno) => std::io::Error::new(std::io::Error::from(errno).kind(), e),
            None => std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        }
    }
}

/// Why [`Listener::accept`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketAcceptError {
    /// The listener is non-blocking and no connection is pending.
    WouldBlock,
    /// `accept4` failed (for example `EMFILE`).
    Os(Errno),
}

impl fmt::Display for SocketAcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("no connection pending"),
            Self::Os(errno) => write!(f, "accept failed: {errno}"),
        }
    }
}

impl std::error::Error for SocketAcceptError {}

impl From<SocketAcceptError> for std::io::Error {
    fn from(e: SocketAcceptError) -> Self {
        match e {
            SocketAcceptError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            SocketAcceptError::Os(errno) => errno.into(),
        }
    }
}

/// Why [`connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketConnectError {
    /// The path is empty or contains a NUL byte.
    InvalidPath,
    /// The path does not fit `sockaddr_un`.
    PathTooLong {
        /// The path's length in bytes.
        len: usize,
    },
    /// Nothing exists at the path (`ENOENT`).
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The socket file exists but nobody listens on it (`ECONNREFUSED`: a stale socket).
    Refused {
        /// The path.
        path: PathBuf,
    },
    /// The socket file or a directory on the way denies access (`EACCES`/`EPERM`).
    PermissionDenied {
        /// The path.
        path: PathBuf,
    },
    /// The server's backlog stayed full until the timeout.
    TimedOut {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    Os {
        /// The step that failed: "socket", "connect", "fcntl".
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl SocketConnectError {
    /// The underlying errno, where there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Os { errno, .. } => Some(*errno),
            Self::NotFound { .. } => Some(Errno::ENOENT),
            Self::Refused { .. } => Some(Errno::ECONNREFUSED),
            Self::PermissionDenied { .. } => Some(Errno::EACCES),
            Self::TimedOut { .. } => Some(Errno::ETIMEDOUT),
            Self::PathTooLong { .. } => Some(Errno::ENAMETOOLONG),
            Self::InvalidPath => None,
        }
    }
}

impl fmt::Display for SocketConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPath => f.write_str("socket path is empty or contains a nul byte"),
            Self::PathTooLong { len } => write!(
                f,
                "socket path is {len} bytes, longer than sockaddr_un allows"
            ),
            Self::NotFound { path } => write!(f, "no socket at {}", path.display()),
            Self::Refused { path } => write!(
                f,
                "connection refused on {} (no server listening)",
                path.display()
            ),
            Self::PermissionDenied { path } => {
                write!(f, "permission denied connecting to {}", path.display())
            }
            Self::TimedOut { path } => write!(
                f,
                "timed out waiting for the server on {} to accept",
                path.display()
            ),
            Self::Os { op, errno } => write!(f, "{op} failed: {errno}"),
        }
    }
}

impl std::error::Error for SocketConnectError {}

impl From<SocketConnectError> for std::io::Error {
    fn from(e: SocketConnectError) -> Self {
        match e.errno() {
            Some(errno) => std::io::Error::new(std::io::Error::from(errno).kind(), e),
            None => std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        }
    }
}

/// Why [`send_with_fds`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdSendError {
    /// Descriptors need at least one byte of data to travel with on a stream socket; the kernel
    /// would otherwise drop them silently.
    EmptyPayload,
    /// More than [`SCM_MAX_FD`] descriptors in one message.
    TooManyFds {
        /// The number given.
        count: usize,
    },
    /// The socket is non-blocking and its send buffer is full (`EAGAIN`); nothing was sent.
    WouldBlock,
    /// `sendmsg` failed (`EPIPE` when the peer is gone, for example).
    Os(Errno),
}

impl fmt::Display for FdSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyPayload => f.write_str("descriptors need at least one byte of payload"),
            Self::TooManyFds { count } => write!(
                f,
                "{count} descriptors in one message, at most {SCM_MAX_FD} allowed"
            ),
            Self::WouldBlock => f.write_str("send would block"),
            Self::Os(errno) => write!(f, "sendmsg failed: {errno}"),
        }
    }
}

impl std::error::Error for FdSendError {}

impl From<FdSendError> for std::io::Error {
    fn from(e: FdSendError) -> Self {
        match e {
            FdSendError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            FdSendError::Os(errno) => errno.into(),
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other),
        }
    }
}

/// Why [`recv_with_fds`] failed. Whatever the reason, no received descriptor stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdRecvError {
    /// The receive buffer has no room for data.
    EmptyBuffer,
    /// The peer sent more descriptors than the caller accepts; all of them were closed. The
    /// data bytes of that message were consumed.
    TooManyFds {
        /// Descriptors that arrived.
        received: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The kernel truncated the control data (`MSG_CTRUNC`: too little room, or the process ran
    /// out of descriptors); the descriptors that did arrive were closed.
    ControlTruncated {
        /// Descriptors that arrived and were closed.
        closed: usize,
    },
    /// The socket is non-blocking and nothing is queued (`EAGAIN`).
    WouldBlock,
    /// `recvmsg` failed.
    Os(Errno),
}

impl fmt::Display for FdRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBuffer => f.write_str("receive buffer is empty"),
            Self::TooManyFds { received, max } => write!(
                f,
                "peer sent {received} descriptors, at most {max} expected; all closed"
            ),
            Self::ControlTruncated { closed } => write!(
                f,
                "control message truncated; {closed} received descriptors closed"
            ),
            Self::WouldBlock => f.write_str("receive would block"),
            Self::Os(errno) => write!(f, "recvmsg failed: {errno}"),
        }
    }
}

impl std::error::Error for FdRecvError {}

impl From<FdRecvError> for std::io::Error {
    fn from(e: FdRecvError) -> Self {
        match e {
            FdRecvError::WouldBlock => std::io::ErrorKind::WouldBlock.into(),
            FdRecvError::Os(errno) => errno.into(),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// Why [`peer_credentials`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerCredError {
    /// `getsockopt(SO_PEERCRED)` failed (`ENOTSOCK`, `ENOPROTOOPT`...).
    Os(Errno),
}

impl fmt::Display for PeerCredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os(errno) => write!(f, "getsockopt(SO_PEERCRED) failed: {errno}"),
        }
    }
}

impl std::error::Error for PeerCredError {}

/// Why [`outq_len`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutqLenError {
    /// `ioctl(SIOCOUTQ)` failed (`ENOTTY` on a descriptor that is not a socket, for example).
    Os(Errno),
}

impl fmt::Display for OutqLenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Os(errno) => write!(f, "ioctl(SIOCOUTQ) failed: {errno}"),
        }
    }
}

impl std::error::Error for OutqLenError {}

// ---------------------------------------------------------------------------------------------
// Listening

/// Settings for [`listen`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    nonblocking: bool,
    backlog: i32,
    mode: u32,
    group: Option<u32>,
    create_parent: Option<u32>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ListenOptions {
    /// Blocking listener, backlog `SOMAXCONN`, mode [`DEFAULT_SOCKET_MODE`], group unchanged,
    /// parent directory must exist.
    pub fn new() -> Self {
        Self {
            nonblocking: false,
            backlog: libc::SOMAXCONN,
            mode: DEFAULT_SOCKET_MODE,
            group: None,
            create_parent: None,
        }
    }

    /// Makes the listening socket non-blocking (for an event loop).
    pub fn nonblocking(mut self, nonblocking: bool) -> Self {
        self.nonblocking = nonblocking;
        self
    }

    /// The `listen` backlog (clamped to `0..=SOMAXCONN`).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog.clamp(0, libc::SOMAXCONN);
        self
    }

    /// Permission bits of the socket file (connecting needs write permission). Only the lower
    /// twelve bits are used.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// Gives the socket file to this group (for `mode(0o660)` access by a group of clients).
    pub fn group(mut self, gid: u32) -> Self {
        self.group = Some(gid);
        self
    }

    /// Creates missing parent directories with this mode (subject to the umask).
    pub fn create_parent(mut self, mode: u32) -> Self {
        self.create_parent = Some(mode & 0o7777);
        self
    }
}

/// A listening `AF_UNIX` stream socket bound to a path.
///
/// Dropping it closes the socket and removes the socket file, unless the file has been replaced
/// in the meantime (its device and inode no longer match) or [`Listener::keep_path`] was called.
#[doc(alias = "clib_socket_t")]
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    file_id: Option<(u64, u64)>,
    unlink_on_drop: bool,
}

impl Listener {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts a connection; the new socket is close-on-exec and blocking.
    #[doc(alias = "clib_socket_accept")]
    pub fn accept(&self) -> Result<OwnedFd, SocketAcceptError> {
        self.accept_with(false)
    }

    /// Accepts a connection, making the new socket non-blocking if asked. Retries on `EINTR` and
    /// on connections aborted before they were accepted.
    pub fn accept_with(&self, nonblocking: bool) -> Result<OwnedFd, SocketAcceptError> {
        let mut flags = SockFlag::SOCK_CLOEXEC;
        if nonblocking {
            flags |= SockFlag::SOCK_NONBLOCK;
        }
        loop {
            match nixsock::accept4(self.fd.as_fd(), flags) {
                Ok(fd) => return Ok(fd),
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                Err(Errno::EAGAIN) => return Err(SocketAcceptError::WouldBlock),
                Err(errno) => return Err(SocketAcceptError::Os(errno)),
            }
        }
    }

    /// Leaves the socket file in place when the listener drops (for handing the path over).
    pub fn keep_path(&mut self) {
        self.unlink_on_drop = false;
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.unlink_on_drop {
            return;
        }
        if let (Some(id), Ok(meta)) = (self.file_id, std::fs::symlink_metadata(&self.path)) {
            if (meta.dev(), meta.ino()) == id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn unix_addr(path: &Path) -> Result<UnixAddr, Errno> {
    if path.as_os_str().is_empty() {
        return Err(Errno::EINVAL);
    }
    UnixAddr::new(path)
}

/// What [`listen`] found at the path before binding.
enum Existing {
    Nothing,
    Stale,
}

/// Looks at what exists at `path`: nothing, a stale socket (removed here), or an error.
fn clear_stale(path: &Path, addr: &UnixAddr) -> Result<Existing, SocketListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => {
            let errno = io_errno(&e);
            if matches!(errno, Errno::EACCES | Errno::EPERM) {
                return Err(SocketListenError::PermissionDenied { path: path.into() });
            }
            return Err(SocketListenError::Os { op: "stat", errno });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketListenError::NotASocket { path: path.into() });
    }
    // A socket file: find out whether anyone listens on it. A non-blocking probe cannot hang on
    // a live server with a full backlog (that gives EAGAIN, which also means "live").
    let probe = nixsock::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|errno| SocketListenError::Os {
        op: "socket",
        errno,
    })?;
    match nixsock::connect(probe.as_raw_fd(), addr) {
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => {
            Err(SocketListenError::AddrInUse { path: path.into() })
        }
        Err(Errno::ECONNREFUSED) => match nix::unistd::unlink(path) {
            Ok(()) | Err(Errno::ENOENT) => Ok(Existing::Stale),
            Err(Errno::EACCES | Errno::EPERM) => {
                Err(SocketListenError::PermissionDenied { path: path.into() })
            }
            Err(errno) => Err(SocketListenError::Os {
                op: "unlink stale socket",
                errno,
            }),
        },
        Err(Errno::ENOENT) => Ok(Existing::Nothing),
        Err(Errno::EACCES | Errno::EPERM) => {
            Err(SocketListenError::PermissionDenied { path: path.into() })
        }
        Err(errno) => Err(SocketListenError::Os {
            op: "probe connect",
            errno,
        }),
    }
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error()
        .map_or(Errno::UnknownErrno, Errno::from_raw)
}

/// Creates a listening `AF_UNIX` stream socket at `path` (close-on-exec, optionally
/// non-blocking).
///
/// If a socket file already exists there, a probe connection decides: refused means stale, so
/// the file is removed and replaced; accepted means a live server, and the result is
/// [`SocketListenError::AddrInUse`]. A path that exists and is not a socket (a symlink included)
/// is never touched: [`SocketListenError::NotASocket`]. After `bind` and before `listen`, the
/// file's mode and optionally its group are set, so nobody can connect under the default
/// permissions. The probe briefly connects to a live server, which sees a connection that closes
/// at once.
#[doc(alias = "clib_socket_init")]
pub fn listen(path: impl AsRef<Path>, opts: &ListenOptions) -> Result<Listener, SocketListenError> {
    let path = path.as_ref();
    let addr = unix_addr(path).map_err(|errno| match errno {
        Errno::ENAMETOOLONG => SocketListenError::PathTooLong {
            len: path.as_os_str().len(),
        },
        _ => SocketListenError::InvalidPath,
    })?;
    if let Some(dir_mode) = opts.create_parent {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(|e| SocketListenError::CreateParent {
                    dir: dir.into(),
                    errno: io_errno(&e),
                })?;
        }
    }
    clear_stale(path, &addr)?;

    let mut flags = SockFlag::SOCK_CLOEXEC;
    if opts.nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    let fd =
        nixsock::socket(AddressFamily::Unix, SockType::Stream, flags, None).map_err(|errno| {
            SocketListenError::Os {
                op: "socket",
                errno,
            }
        })?;
    match nixsock::bind(fd.as_raw_fd(), &addr) {
        Ok(()) => {}
        // Another server bound the path between our probe and our bind.
        Err(Errno::EADDRINUSE) => return Err(SocketListenError::AddrInUse { path: path.into() }),
        Err(Errno::EACCES | Errno::EPERM) => {
            return Err(SocketListenError::PermissionDenied { path: path.into() });
        }
        Err(errno) => return Err(SocketListenError::Os { op: "bind", errno }),
    }
    // From here on the file is ours: remove it again if a later step fails.
    let mut listener = Listener {
        fd,
        path: path.to_path_buf(),
        file_id: None,
        unlink_on_drop: true,
    };
    let meta = std::fs::symlink_metadata(path).map_err(|e| SocketListenError::Os {
        op: "stat",
        errno: io_errno(&e),
    })?;
    listener.file_id = Some((meta.dev(), meta.ino()));
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        nix::sys::stat::Mode::from_bits_truncate(opts.mode as libc::mode_t),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|errno| SocketListenError::Os { op: "chmod", errno })?;
    if let Some(gid) = opts.group {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            None,
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| SocketListenError::Os { op: "chown", errno })?;
    }
    let backlog = Backlog::new(opts.backlog).unwrap_or(Backlog::MAXCONN);
    nixsock::listen(&listener.fd, backlog).map_err(|errno| SocketListenError::Os {
        op: "listen",
        errno,
    })?;
    Ok(listener)
}

// ---------------------------------------------------------------------------------------------
// Connecting

/// Settings for [`connect_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectOptions {
    nonblocking: bool,
    timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Blocking result, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the connected socket non-blocking.
    pub fn nonblocking(mut self, nonblocking: bool) -> Self {
        self.nonblocking = nonblocking;
        self
    }

    /// Gives up after `timeout` if the server's backlog stays full (without a timeout, connect
    /// waits for as long as the server takes to make room).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Connects to the `AF_UNIX` stream socket at `path`; the socket is close-on-exec and blocking.
#[doc(alias = "clib_socket_init")]
pub fn connect(path: impl AsRef<Path>) -> Result<OwnedFd, SocketConnectError> {
    connect_with(path, &ConnectOptions::new())
}

/// Connects with options: a non-blocking result, a bound on the wait for a full backlog.
pub fn connect_with(
    path: impl AsRef<Path>,
    opts: &ConnectOptions,
) -> Result<OwnedFd, SocketConnectError> {
    let path = path.as_ref();
    let addr = unix_addr(path).map_err(|errno| match errno {
        Errno::ENAMETOOLONG => SocketConnectError::PathTooLong {
            len: path.as_os_str().len(),
        },
        _ => SocketConnectError::InvalidPath,
    })?;
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if opts.timeout.is_some() {
        // Unix sockets report a full backlog as EAGAIN when non-blocking; poll by retrying.
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    let fd =
        nixsock::socket(AddressFamily::Unix, SockType::Stream, flags, None).map_err(|errno| {
            SocketConnectError::Os {
                op: "socket",
                errno,
            }
        })?;
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let mut pause = Duration::from_micros(50);
    loop {
        match nixsock::connect(fd.as_raw_fd(), &addr) {
            Ok(()) => break,
            // An AF_UNIX connect interrupted while waiting for backlog room is not connected
            // yet, so it can simply be retried.
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) if deadline.is_some() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(SocketConnectError::TimedOut { path: path.into() });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(Errno::ENOENT) => return Err(SocketConnectError::NotFound { path: path.into() }),
            Err(Errno::ECONNREFUSED) => {
                return Err(SocketConnectError::Refused { path: path.into() });
            }
            Err(Errno::EACCES | Errno::EPERM) => {
                return Err(SocketConnectError::PermissionDenied { path: path.into() });
            }
            Err(errno) => {
                return Err(SocketConnectError::Os {
                    op: "connect",
                    errno,
                });
            }
        }
    }
    if opts.nonblocking != opts.timeout.is_some() {
        set_nonblocking(&fd, opts.nonblocking)
            .map_err(|errno| SocketConnectError::Os { op: "fcntl", errno })?;
    }
    Ok(fd)
}

/// Sets or clears `O_NONBLOCK` on a descriptor.
pub fn set_nonblocking(fd: impl AsFd, nonblocking: bool) -> Result<(), Errno> {
    let fd = fd.as_fd();
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let wanted = if nonblocking {
        flags | OFlag::O_NONBLOCK
    } else {
        flags - OFlag::O_NONBLOCK
    };
    if wanted != flags {
        fcntl(fd, FcntlArg::F_SETFL(wanted))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Descriptor passing

/// Sends `bytes` with `fds` attached as one `SCM_RIGHTS` message (`MSG_NOSIGNAL`: a vanished
/// peer is `EPIPE`, not a signal). Returns the number of bytes sent.
///
/// The descriptors travel with the first byte. On a non-blocking socket fewer bytes than given
/// may be sent; send the rest without descriptors. `EINTR` is retried.
#[doc(alias = "clib_socket_sendmsg")]
pub fn send_with_fds(
    fd: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, FdSendError> {
    if fds.len() > SCM_MAX_FD {
        return Err(FdSendError::TooManyFds { count: fds.len() });
    }
    if bytes.is_empty() {
        if fds.is_empty() {
            return Ok(0);
        }
        return Err(FdSendError::EmptyPayload);
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    loop {
        match nixsock::sendmsg::<()>(
            fd.as_fd().as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(FdSendError::WouldBlock),
            Err(errno) => return Err(FdSendError::Os(errno)),
        }
    }
}

/// Size of `struct cmsghdr` as the kernel lays it out: `size_t` length, `int` level, `int` type.
const CMSG_HEADER_LEN: usize = cmsg_align(size_of::<usize>() + 2 * size_of::<libc::c_int>());

/// `CMSG_ALIGN`: control data is aligned to `size_t` on Linux (glibc and musl alike).
const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// `CMSG_SPACE(data_len)`.
const fn cmsg_space(data_len: usize) -> usize {
    CMSG_HEADER_LEN + cmsg_align(data_len)
}

/// Room for the largest `SCM_RIGHTS` message the kernel sends, so that the kernel never has to
/// truncate rights for lack of space and every descriptor that arrives can be accounted for.
const CMSG_BUFFER_LEN: usize = cmsg_space(SCM_MAX_FD * size_of::<RawFd>());

/// The control buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuffer([u8; CMSG_BUFFER_LEN]);

/// Reads the descriptors out of the `SCM_RIGHTS` messages in a control buffer the kernel filled
/// (the buffer was zeroed first, so a zero length marks the end). Bounds-checked throughout.
fn scm_rights_fds(control: &[u8]) -> Vec<RawFd> {
    const LEN_SIZE: usize = size_of::<usize>();
    const INT_SIZE: usize = size_of::<libc::c_int>();
    let read_int = |at: usize| {
        control
            .get(at..at + INT_SIZE)
            .and_then(|b| b.try_into().ok())
            .map(libc::c_int::from_ne_bytes)
    };
    let mut fds = Vec::new();
    let mut offset = 0;
    while offset + CMSG_HEADER_LEN <= control.len() {
        let Some(len) = control
            .get(offset..offset + LEN_SIZE)
            .and_then(|b| b.try_into().ok())
            .map(usize::from_ne_bytes)
        else {
            break;
        };
        if len < CMSG_HEADER_LEN {
            break;
        }
        let level = read_int(offset + LEN_SIZE);
        let kind = read_int(offset + LEN_SIZE + INT_SIZE);
        let data_end = offset.saturating_add(len).min(control.len());
        if level == Some(libc::SOL_SOCKET) && kind == Some(libc::SCM_RIGHTS) {
            fds.extend(
                control[offset + CMSG_HEADER_LEN..data_end]
                    .chunks_exact(INT_SIZE)
                    .filter_map(|b| b.try_into().ok().map(RawFd::from_ne_bytes))
                    .filter(|&fd| fd >= 0),
            );
        }
        if len >= control.len() - offset {
            break;
        }
        offset += cmsg_align(len);
    }
    fds
}

/// Receives bytes and up to `max_fds` descriptors (`MSG_CMSG_CLOEXEC`, so they are
/// close-on-exec). Returns the byte count and the descriptors, now owned by the caller.
///
/// `(0, [])` means the peer closed the connection. If more than `max_fds` descriptors arrive, or
/// the control data was truncated, every descriptor that arrived is closed and an error is
/// returned. `EINTR` is retried; `EAGAIN` is [`FdRecvError::WouldBlock`].
#[doc(alias = "clib_socket_recvmsg")]
pub fn recv_with_fds(
    fd: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
) -> Result<(usize, Vec<OwnedFd>), FdRecvError> {
    if buf.is_empty() {
        return Err(FdRecvError::EmptyBuffer);
    }
    let mut control = CmsgBuffer([0; CMSG_BUFFER_LEN]);
    let (n_bytes, flags) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match nixsock::recvmsg::<()>(
            fd.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut control.0),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => break (msg.bytes, msg.flags),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Err(FdRecvError::WouldBlock),
            Err(errno) => return Err(FdRecvError::Os(errno)),
        }
    };
    // Adopt every descriptor first: from here on dropping the vector closes them all.
    let fds: Vec<OwnedFd> = scm_rights_fds(&control.0)
        .into_iter()
        .map(sys::adopt_received_fd)
        .collect();
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(FdRecvError::ControlTruncated { closed: fds.len() });
    }
    if fds.len() > max_fds {
        return Err(FdRecvError::TooManyFds {
            received: fds.len(),
            max: max_fds,
        });
    }
    Ok((n_bytes, fds))
}

// ---------------------------------------------------------------------------------------------
// Peer credentials and the send queue

/// The credentials of the process at the other end of a connected `AF_UNIX` socket, as they were
/// when it called `connect` (or `socketpair`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id (0 if the peer is in a pid namespace this process cannot see).
    pub pid: libc::pid_t,
    /// Effective user id.
    pub uid: libc::uid_t,
    /// Effective group id.
    pub gid: libc::gid_t,
}

/// Reads the peer's credentials (`SO_PEERCRED`).
pub fn peer_credentials(fd: impl AsFd) -> Result<PeerCred, PeerCredError> {
    let cred =
        nixsock::getsockopt(&fd.as_fd(), sockopt::PeerCredentials).map_err(PeerCredError::Os)?;
    Ok(PeerCred {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// Bytes sent on this socket that the peer has not read yet (`SIOCOUTQ`).
///
/// For `AF_UNIX` the kernel counts the memory of queued messages, not just their payload, so the
/// value is only meaningful compared with zero: zero means the peer has consumed everything.
pub fn outq_len(fd: impl AsFd) -> Result<usize, OutqLenError> {
    sys::tiocoutq(fd.as_fd()).map_err(OutqLenError::Os)
}

/// Polls [`outq_len`] until it is zero or `timeout` passes; returns whether the queue drained.
///
/// Used before an action that must follow the peer's reading of earlier data (for example
/// sending a descriptor only once a reply has left the socket).
pub fn wait_outq_drained(fd: impl AsFd, timeout: Duration) -> Result<bool, OutqLenError> {
    let fd = fd.as_fd();
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(10);
    loop {
        if outq_len(fd)? == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use nix::unistd::{pipe, read, write};

    fn pair() -> (OwnedFd, OwnedFd) {
        nixsock::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn is_cloexec(fd: impl AsFd) -> bool {
        let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_retain(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    fn is_nonblocking(fd: impl AsFd) -> bool {
        let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).unwrap();
        OFlag::from_bits_retain(flags).contains(OFlag::O_NONBLOCK)
    }

    /// True when every write end of the pipe is closed: a non-blocking read sees EOF rather than
    /// EAGAIN. This is how the tests prove that no copy of a passed descriptor leaked.
    fn all_writers_closed(read_end: &OwnedFd) -> bool {
        set_nonblocking(read_end, true).unwrap();
        let mut b = [0u8; 1];
        match read(read_end, &mut b) {
            Ok(0) => true,
            Err(Errno::EAGAIN) => false,
            other => panic!("unexpected read result {other:?}"),
        }
    }

    #[test]
    fn cmsg_layout_matches_libc() {
        let hdr = size_of::<libc::cmsghdr>();
        assert_eq!(CMSG_HEADER_LEN, cmsg_align(hdr));
        assert_eq!(cmsg_space(4), nixsock::cmsg_space::<RawFd>());
        assert_eq!(
            CMSG_BUFFER_LEN,
            nixsock::cmsg_space::<[RawFd; SCM_MAX_FD]>()
        );
    }

    #[test]
    fn control_parser_is_bounded() {
        assert!(scm_rights_fds(&[]).is_empty());
        assert!(scm_rights_fds(&[0u8; 64]).is_empty());
        // A header claiming more data than the buffer holds yields only what is there.
        let mut buf = vec![0u8; CMSG_HEADER_LEN + 8];
        buf[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        let at = size_of::<usize>();
        buf[at..at + 4].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        buf[at + 4..at + 8].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        buf[CMSG_HEADER_LEN..CMSG_HEADER_LEN + 4].copy_from_slice(&7i32.to_ne_bytes());
        buf[CMSG_HEADER_LEN + 4..].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(scm_rights_fds(&buf), vec![7]);
    }

    #[test]
    fn passed_pipe_is_usable_and_cloexec() {
        let (a, b) = pair();
        let (r, w) = pipe().unwrap();
        assert_eq!(send_with_fds(&a, b"pipe", &[w.as_fd()]).unwrap(), 4);
        drop(w);
        let mut buf = [0u8; 16];
        let (n, mut fds) = recv_with_fds(&b, &mut buf, 1).unwrap();
        assert_eq!(&buf[..n], b"pipe");
        assert_eq!(fds.len(), 1);
        let received = fds.pop().unwrap();
        assert!(is_cloexec(&received), "MSG_CMSG_CLOEXEC not applied");
        write(&received, b"through the passed fd").unwrap();
        let mut out = [0u8; 64];
        let n = read(&r, &mut out).unwrap();
        assert_eq!(&out[..n], b"through the passed fd");
        drop(received);
        assert!(all_writers_closed(&r));
    }

    #[test]
    fn several_fds_in_one_message_keep_their_order() {
        let (a, b) = pair();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe().unwrap()).collect();
        let memfd =
            nix::sys::memfd::memfd_create(c"vppinfra-test", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .unwrap();
        write(&memfd, b"memfd contents").unwrap();
        let mut send: Vec<BorrowedFd<'_>> = pipes.iter().map(|(_, w)| w.as_fd()).collect();
        send.push(memfd.as_fd());
        send_with_fds(&a, b"x", &send).unwrap();
        let mut buf = [0u8; 4];
        let (n, fds) = recv_with_fds(&b, &mut buf, 8).unwrap();
        assert_eq!((n, fds.len()), (1, 4));
        for (i, (r, _)) in pipes.iter().enumerate() {
            write(&fds[i], &[b'0' + i as u8]).unwrap();
            let mut c = [0u8; 1];
            read(r, &mut c).unwrap();
            assert_eq!(c[0], b'0' + i as u8, "descriptor order");
        }
        let mut contents = [0u8; 32];
        let n = nix::sys::uio::pread(&fds[3], &mut contents, 0).unwrap();
        assert_eq!(&contents[..n], b"memfd contents");
    }

    /// On a stream socket one receive never returns the descriptors of two messages: the kernel
    /// stops at the first message that carries any, so framing code can rely on it.
    #[test]
    fn descriptors_of_two_messages_arrive_separately() {
        let (a, b) = pair();
        let (r1, w1) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        send_with_fds(&a, b"one", &[w1.as_fd()]).unwrap();
        send_with_fds(&a, b"two", &[w2.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (n, first) = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!((&buf[..n], first.len()), (&b"one"[..], 1));
        let (n, second) = recv_with_fds(&b, &mut buf, 4).unwrap();
        assert_eq!((&buf[..n], second.len()), (&b"two"[..], 1));
        write(&first[0], b"1").unwrap();
        write(&second[0], b"2").unwrap();
        let mut c = [0u8; 1];
        read(&r1, &mut c).unwrap();
        assert_eq!(&c, b"1");
        read(&r2, &mut c).unwrap();
        assert_eq!(&c, b"2");
    }

    #[test]
    fn too_many_fds_are_all_closed() {
        let (a, b) = pair();
        let (r, w) = pipe().unwrap();
        send_with_fds(&a, b"abc", &[w.as_fd(), w.as_fd(), w.as_fd()]).unwrap();
        drop(w);
        let mut buf = [0u8; 8];
        let err = recv_with_fds(&b, &mut buf, 2).unwrap_err();
        assert_eq!(
            err,
            FdRecvError::TooManyFds {
                received: 3,
                max: 2
            }
        );
        assert!(all_writers_closed(&r), "a received descriptor leaked");
        // Zero allowed: any descriptor is an error.
        let (r, w) = pipe().unwrap();
        send_with_fds(&a, b"d", &[w.as_fd()]).unwrap();
        drop(w);
        let err = recv_with_fds(&b, &mut buf, 0).unwrap_err();
        assert_eq!(
            err,
            FdRecvError::TooManyFds {
                received: 1,
                max: 0
            }
        );
        assert!(all_writers_closed(&r));
    }

    #[test]
    fn truncated_control_data_closes_what_arrived() {
        // With SO_PASSCRED the kernel adds a credentials message in front of the rights, so a
        // full SCM_MAX_FD set no longer fits and arrives truncated.
        let (a, b) = pair();
        nixsock::setsockopt(&b, sockopt::PassCred, &true).unwrap();
        let (r, w) = pipe().unwrap();
        let many = vec![w.as_fd(); SCM_MAX_FD];
        send_with_fds(&a, b"many", &many).unwrap();
        drop(many);
        drop(w);
        let mut buf = [0u8; 8];
        match recv_with_fds(&b, &mut buf, SCM_MAX_FD).unwrap_err() {
            FdRecvError::ControlTruncated { closed } => {
                assert!(closed > 0 && closed < SCM_MAX_FD, "{closed}")
            }
            other => panic!("expected truncation, got {other:?}"),
        }
        assert!(all_writers_closed(&r), "a received descriptor leaked");
    }

    #[test]
    fn send_argument_errors() {
        let (a, b) = pair();
        let (_r, w) = pipe().unwrap();
        assert_eq!(
            send_with_fds(&a, b"", &[w.as_fd()]),
            Err(FdSendError::EmptyPayload)
        );
        assert_eq!(send_with_fds(&a, b"", &[]), Ok(0));
        let too_many = vec![w.as_fd(); SCM_MAX_FD + 1];
        assert_eq!(
            send_with_fds(&a, b"x", &too_many),
            Err(FdSendError::TooManyFds {
                count: SCM_MAX_FD + 1
            })
        );
        assert_eq!(
            recv_with_fds(&b, &mut [], 1).unwrap_err(),
            FdRecvError::EmptyBuffer
        );
    }

    #[test]
    fn would_block_and_eof_and_epipe() {
        let (a, b) = pair();
        set_nonblocking(&b, true).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            recv_with_fds(&b, &mut buf, 1).unwrap_err(),
            FdRecvError::WouldBlock
        );
        let io: std::io::Error = FdRecvError::WouldBlock.into();
        assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
        // Fill a's send buffer until the kernel pushes back.
        set_nonblocking(&a, true).unwrap();
        let chunk = vec![0u8; 65536];
        let mut sent = 0usize;
        loop {
            match send_with_fds(&a, &chunk, &[]) {
                Ok(n) => sent += n,
                Err(FdSendError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(sent < 1 << 30, "send buffer never filled");
        }
        drop(b);
        assert_eq!(
            send_with_fds(&a, b"x", &[]),
            Err(FdSendError::Os(Errno::EPIPE)),
            "MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE"
        );
        let (c, d) = pair();
        drop(c);
        assert_eq!(recv_with_fds(&d, &mut buf, 1).unwrap().0, 0, "EOF");
    }

    #[test]
    fn peer_credentials_are_our_own_on_a_socketpair() {
        let (a, _b) = pair();
        let cred = peer_credentials(&a).unwrap();
        assert_eq!(cred.pid, std::process::id() as libc::pid_t);
        assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(cred.gid, nix::unistd::getegid().as_raw());
        let (r, _w) = pipe().unwrap();
        assert_eq!(
            peer_credentials(&r),
            Err(PeerCredError::Os(Errno::ENOTSOCK))
        );
    }

    #[test]
    fn outq_drains_when_the_peer_reads() {
        let (a, b) = pair();
        assert_eq!(outq_len(&a).unwrap(), 0);
        write(&a, &[7u8; 1000]).unwrap();
        assert!(outq_len(&a).unwrap() > 0);
        assert!(!wait_outq_drained(&a, Duration::from_millis(5)).unwrap());
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1000];
            let mut got = 0;
            while got < buf.len() {
                got += read(&b, &mut buf[got..]).unwrap();
            }
            b
        });
        assert!(wait_outq_drained(&a, Duration::from_secs(10)).unwrap());
        assert_eq!(outq_len(&a).unwrap(), 0);
        drop(reader.join().unwrap());
        let (r, _w) = pipe().unwrap();
        assert!(outq_len(&r).is_err());
    }

    #[test]
    fn listen_accept_connect_round_trip() {
        let dir = TempDir::new("socket-listen");
        let path = dir.join("api.sock");
        let listener = listen(&path, &ListenOptions::new()).unwrap();
        assert!(is_cloexec(&listener));
        assert!(!is_nonblocking(&listener));
        assert_eq!(listener.path(), path);
        let client = connect(&path).unwrap();
        assert!(is_cloexec(&client) && !is_nonblocking(&client));
        let server = listener.accept().unwrap();
        assert!(is_cloexec(&server) && !is_nonblocking(&server));
        write(&client, b"ping").unwrap();
        let mut buf = [0u8; 4];
        read(&server, &mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, DEFAULT_SOCKET_MODE);
        drop(listener);
        assert!(!path.exists(), "listener removes its socket file");
    }

    #[test]
    fn nonblocking_listener_and_accept() {
        let dir = TempDir::new("socket-nonblock");
        let path = dir.join("s");
        let listener = listen(&path, &ListenOptions::new().nonblocking(true)).unwrap();
        assert!(is_nonblocking(&listener));
        assert_eq!(
            listener.accept().unwrap_err(),
            SocketAcceptError::WouldBlock
        );
        let client = connect_with(&path, &ConnectOptions::new().nonblocking(true)).unwrap();
        assert!(is_nonblocking(&client));
        let server = listener.accept_with(true).unwrap();
        assert!(is_nonblocking(&server));
        let blocking_client = connect_with(
            &path,
            &ConnectOptions::new().timeout(Duration::from_secs(5)),
        )
        .unwrap();
        assert!(!is_nonblocking(&blocking_client));
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new("socket-stale");
        let path = dir.join("api.sock");
        let mut first = listen(&path, &ListenOptions::new()).unwrap();
        first.keep_path();
        drop(first);
        assert!(path.exists(), "keep_path leaves the file");
        assert_eq!(
            connect(&path).unwrap_err(),
            SocketConnectError::Refused { path: path.clone() }
        );
        let second = listen(&path, &ListenOptions::new()).unwrap();
        let _client = connect(&path).unwrap();
        let _server = second.accept().unwrap();
    }

    #[test]
    fn live_socket_is_refused_and_left_working() {
        let dir = TempDir::new("socket-live");
        let path = dir.join("api.sock");
        let live = listen(&path, &ListenOptions::new()).unwrap();
        let err = listen(&path, &ListenOptions::new()).unwrap_err();
        assert_eq!(err, SocketListenError::AddrInUse { path: path.clone() });
        assert_eq!(
            err.to_string(),
            format!("a server is already listening on {}", path.display())
        );
        assert_eq!(err.errno(), Some(Errno::EADDRINUSE));
        // The probe's connection is visible to the live server; real clients still get through.
        let _probe = live.accept().unwrap();
        let _client = connect(&path).unwrap();
        let _server = live.accept().unwrap();
    }

    #[test]
    fn live_socket_with_full_backlog_is_still_live() {
        let dir = TempDir::new("socket-backlog");
        let path = dir.join("s");
        let live = listen(&path, &ListenOptions::new().backlog(0)).unwrap();
        // Fill the backlog with connections nobody accepts.
        let mut pending = Vec::new();
        loop {
            match connect_with(
                &path,
                &ConnectOptions::new().timeout(Duration::from_millis(20)),
            ) {
                Ok(fd) => pending.push(fd),
                Err(SocketConnectError::TimedOut { .. }) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(pending.len() < 64, "backlog never filled");
        }
        assert!(matches!(
            listen(&path, &ListenOptions::new()),
            Err(SocketListenError::AddrInUse { .. })
        ));
        drop(live);
    }

    #[test]
    fn non_socket_paths_are_never_removed() {
        let dir = TempDir::new("socket-notsock");
        let file = dir.join("regular");
        std::fs::write(&file, b"precious").unwrap();
        let err = listen(&file, &ListenOptions::new()).unwrap_err();
        assert_eq!(err, SocketListenError::NotASocket { path: file.clone() });
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        // A symlink, even to a stale socket, is not a socket.
        let target = dir.join("target.sock");
        let mut l = listen(&target, &ListenOptions::new()).unwrap();
        l.keep_path();
        drop(l);
        let link = dir.join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            listen(&link, &ListenOptions::new()),
            Err(SocketListenError::NotASocket { .. })
        ));
        assert!(std::fs::symlink_metadata(&link).is_ok());
        let sub = dir.join("a-directory");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            listen(&sub, &ListenOptions::new()),
            Err(SocketListenError::NotASocket { .. })
        ));
    }

    #[test]
    fn mode_group_and_parent_are_applied() {
        let dir = TempDir::new("socket-mode");
        let path = dir.join("run/vpp/api.sock");
        assert!(matches!(
            listen(&path, &ListenOptions::new()),
            Err(SocketListenError::Os {
                op: "bind",
                errno: Errno::ENOENT
            })
        ));
        let gid = nix::unistd::getegid().as_raw();
        let opts = ListenOptions::new()
            .mode(0o660)
            .group(gid)
            .create_parent(0o750);
        let listener = listen(&path, &opts).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(meta.gid(), gid);
        let parent = std::fs::metadata(dir.join("run/vpp")).unwrap();
        assert!(parent.is_dir());
        assert_eq!(parent.mode() & 0o700, 0o700);
        drop(listener);
    }

    #[test]
    fn drop_leaves_a_replaced_file_alone() {
        let dir = TempDir::new("socket-replaced");
        let path = dir.join("s");
        let listener = listen(&path, &ListenOptions::new()).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"someone else's").unwrap();
        drop(listener);
        assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
    }

    #[test]
    fn path_errors_are_typed() {
        let long = "x".repeat(200);
        assert_eq!(
            listen(&long, &ListenOptions::new()).unwrap_err(),
            SocketListenError::PathTooLong { len: 200 }
        );
        assert_eq!(
            connect(&long).unwrap_err(),
            SocketConnectError::PathTooLong { len: 200 }
        );
        assert_eq!(
            listen("", &ListenOptions::new()).unwrap_err(),
            SocketListenError::InvalidPath
        );
        assert_eq!(connect("").unwrap_err(), SocketConnectError::InvalidPath);
        assert_eq!(
            connect("a\0b").unwrap_err(),
            SocketConnectError::InvalidPath
        );
        let dir = TempDir::new("socket-missing");
        let missing = dir.join("nobody");
        let err = connect(&missing).unwrap_err();
        assert_eq!(
            err,
            SocketConnectError::NotFound {
                path: missing.clone()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("no socket at {}", missing.display())
        );
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
