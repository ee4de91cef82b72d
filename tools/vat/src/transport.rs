//! The one connection type all of vat's I/O goes through, and how it is opened.
//!
//! [`Transport`] is what a session needs from a connection: the server's message table, the
//! client index, queueing raw messages, flushing them, and receiving whatever arrives next.
//! [`SocketTransport`] implements it over [`vlibsocket::client::SocketClient`].
//!
//! # Shared memory (not in this build yet)
//!
//! The shared-memory transport is being written (vlibmemory), and the socket client will gain
//! the pivot and attach-by-name. Until then, [`connect`] answers [`Target::Shm`] and
//! [`SocketTransport::pivot_to_shm`] answers every pivot with
//! [`TransportError::Unavailable`], and vat says so and exits non-zero. The places to plug the
//! shared-memory client in are exactly:
//!
//! 1. [`connect`], the `Target::Shm` arm: attach by name and return a new `Transport` impl
//!    over the shared-memory client (`impl Transport for ShmTransport`, in this module).
//! 2. [`SocketTransport::pivot_to_shm`]: ask the server for a private segment over the socket
//!    (`sock_init_shm` or `memfd_segment_create`), then switch this connection's `send`, `flush`
//!    and `recv` to the segment's queues. If the pivot yields a different client type, replace
//!    `*self`'s inner client or return the new transport from `pivot_to_shm` instead (the
//!    session swaps its `Box<dyn Transport>`; see `Session::pivot`).
//! 3. [`Target::SocketThenShm`] (`--pivot`) needs nothing more: [`connect`] opens the socket and
//!    calls `pivot_to_shm`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use vlibsocket::client::{ClientError, ClientOptions, SocketClient};
use vppinfra::socket::SocketConnectError;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The API socket at this path.
    Socket(PathBuf),
    /// A named shared-memory segment (`--shm [PREFIX]`).
    Shm {
        /// The segment name prefix (VPP's `chroot prefix`), if not the default.
        prefix: Option<String>,
    },
    /// The socket, then a pivot to a private shared-memory segment (`--pivot`).
    SocketThenShm {
        /// The socket path.
        path: PathBuf,
        /// The segment size asked for.
        size: u64,
    },
}

/// Why a connection operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The socket client failed (no server, server gone, timeout, ...).
    Client(ClientError),
    /// A feature of the shared-memory transport, which this build does not have yet.
    Unavailable {
        /// What was asked for (`--shm`, `sock_init_shm`, ...).
        what: String,
    },
}

impl TransportError {
    /// True if the connection is unusable from now on.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Client(ClientError::Timeout { .. }) => false,
            Self::Client(_) => true,
            Self::Unavailable { .. } => false,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Client(ClientError::Connect { path, error }) => {
                let path = path.display();
                match error {
                    SocketConnectError::NotFound { .. } => write!(
                        f,
                        "no server at {path} (the socket file does not exist; \
                         is api-server running? choose the socket with --socket PATH)"
                    ),
                    SocketConnectError::Refused { .. } => write!(
                        f,
                        "no server at {path} (the socket file exists but nothing listens on it)"
                    ),
                    e => write!(f, "cannot connect to {path}: {e}"),
                }
            }
            Self::Client(ClientError::ServerGone) => {
                f.write_str("the server closed the connection (server gone)")
            }
            Self::Client(e) => write!(f, "{e}"),
            Self::Unavailable { what } => write!(
                f,
                "{what}: shared memory is not available in this build yet \
                 (only the socket transport is implemented)"
            ),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(e) => Some(e),
            Self::Unavailable { .. } => None,
        }
    }
}

impl From<ClientError> for TransportError {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

/// A connection to the server, whatever carries it.
pub trait Transport: fmt::Debug {
    /// Where this connection goes, for messages (`socket /run/vpp/api.sock`).
    fn describe(&self) -> String;
    /// The index the server gave this client.
    fn client_index(&self) -> u32;
    /// The server's message table: `(id, name_crc)`.
    fn message_table(&self) -> Vec<(u16, String)>;
    /// Queues one whole message (ID first), as it is.
    fn queue(&mut self, msg: &[u8]);
    /// Writes everything queued.
    fn flush(&mut self) -> Result<(), TransportError>;
    /// The next message from the server, waiting up to `timeout`; `Ok(None)` if none came.
    /// A zero timeout returns only what has already arrived.
    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError>;
    /// Moves this connection onto a private shared-memory segment of `size` bytes.
    fn pivot_to_shm(&mut self, size: u64, how: &str) -> Result<(), TransportError>;
    /// Says goodbye to the server.
    fn close(self: Box<Self>) -> Result<(), TransportError>;
}

/// Opens a connection to `target`, registering as `name`.
pub fn connect(
    target: &Target,
    name: &str,
    timeout: Duration,
) -> Result<Box<dyn Transport>, TransportError> {
    match target {
        Target::Socket(path) => Ok(Box::new(SocketTransport::connect(path, name, timeout)?)),
        // Integration point 1: attach to the named segment here once vlibmemory's client exists.
        Target::Shm { prefix } => Err(TransportError::Unavailable {
            what: match prefix {
                Some(p) => format!("--shm {p}"),
                None => "--shm".to_owned(),
            },
        }),
        Target::SocketThenShm { path, size } => {
            let mut t = SocketTransport::connect(path, name, timeout)?;
            t.pivot_to_shm(*size, "--pivot")?;
            Ok(Box::new(t))
        }
    }
}

/// The socket transport.
#[derive(Debug)]
pub struct SocketTransport {
    client: SocketClient,
}

impl SocketTransport {
    /// Connects and registers.
    pub fn connect(
        path: &std::path::Path,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let mut opts = ClientOptions::new(name);
        opts.timeout = timeout;
        let client = SocketClient::connect_with(path, &opts)?;
        Ok(Self { client })
    }

    /// True if the socket has bytes (or an end of file) waiting.
    fn readable(&self) -> Result<bool, TransportError> {
        // Attached by name there is no socket; the client's own zero-timeout receive looks.
        let Some(fd) = self.client.fd() else {
            return Ok(true);
        };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) => Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(ClientError::Os(e).into()),
        }
    }
}

impl Transport for SocketTransport {
    fn describe(&self) -> String {
        format!("socket {}", self.client.path().display())
    }

    fn client_index(&self) -> u32 {
        self.client.client_index()
    }

    fn message_table(&self) -> Vec<(u16, String)> {
        self.client
            .table()
            .iter()
            .map(|(n, &id)| (id, n.clone()))
            .collect()
    }

    fn queue(&mut self, msg: &[u8]) {
        self.client.send_raw(msg);
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(self.client.flush()?)
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
        // Nothing vat sends is registered with the client as in flight, so everything the
        // server sends (keepalives apart, which the client answers) comes out as an "event".
        if timeout.is_zero() {
            // Already buffered, then whatever the socket has without blocking.
            if let Some(e) = self.client.next_event(Duration::ZERO)? {
                return Ok(Some(e.bytes));
            }
            if !self.readable()? {
                return Ok(None);
            }
            return Ok(self
                .client
                .next_event(Duration::from_millis(1))?
                .map(|e| e.bytes));
        }
        Ok(self.client.next_event(timeout)?.map(|e| e.bytes))
    }

    fn pivot_to_shm(&mut self, _size: u64, how: &str) -> Result<(), TransportError> {
        // Integration point 2: the socket client's pivot goes here.
        Err(TransportError::Unavailable {
            what: how.to_owned(),
        })
    }

    fn close(self: Box<Self>) -> Result<(), TransportError> {
        Ok(self.client.disconnect()?)
    }
}
