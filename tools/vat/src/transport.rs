//! The one connection type all of vat's I/O goes through, and how it is opened.
//!
//! [`Transport`] is what a session needs from a connection: the server's message table, the
//! client index, queueing raw messages, flushing them, receiving whatever arrives next, and
//! moving onto shared memory. [`ClientTransport`] implements it over
//! [`vlibsocket::client::SocketClient`], which carries messages in one of three ways (its
//! [`TransportKind`]):
//!
//! - **socket** ([`Target::Socket`]): framed messages on the API socket.
//! - **socket+shm** ([`Target::SocketThenShm`], `--pivot`, or the `sock_init_shm` and
//!   `memfd_segment_create` commands): the connection asks the server for a private
//!   shared-memory segment over the socket, receives its memfd, attaches, and registers again
//!   over shared memory (the client index changes). From then on every message travels through
//!   the segment's rings; the socket stays open only so that each side notices the other's
//!   death at once. A connection moves once: a second pivot is refused before anything is sent.
//! - **shm by name** ([`Target::Shm`], `--shm [PREFIX]`): no socket at all; vat claims a slot
//!   of the segment the server publishes as `/dev/shm/[PREFIX-]vpe-api` and registers there.
//!   Such a connection has no liveness channel: a server that dies is noticed by nothing but a
//!   reply that never comes (see [`SessionError::Timeout`](crate::session::SessionError)).
//!
//! Receiving with a zero timeout looks once, without blocking, on whichever of these carries
//! the connection; that is how a session collects events between commands.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use vlibmemory::client::ShmConnectError;
use vlibsocket::client::{ClientError, ClientOptions, SocketClient, TransportKind};
use vppinfra::format::format_memory_size;
use vppinfra::socket::SocketConnectError;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The API socket at this path.
    Socket(PathBuf),
    /// The server's named shared-memory segment (`--shm [PREFIX]`).
    Shm {
        /// The segment name prefix (the server's `--shm-prefix`), if not the default.
        prefix: Option<String>,
    },
    /// The socket, then a pivot to a private shared-memory segment (`--pivot`).
    SocketThenShm {
        /// The socket path.
        path: PathBuf,
        /// The segment size asked for (0: the server's default).
        size: u64,
    },
}

/// The short name of a transport, as the server's `show api clients` prints it.
pub fn kind_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Socket => "socket",
        TransportKind::SocketShm => "socket+shm",
        TransportKind::NamedShm => "shm",
    }
}

/// How a connection moves to shared memory: the request that asks for the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PivotRequest {
    /// `sock_init_shm` (VPP's current request; the size is a `u32`).
    SockInitShm,
    /// `memfd_segment_create` (the older request; the size is a `u64`).
    MemfdSegmentCreate,
}

impl PivotRequest {
    /// The message's name, which is also vat's command for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::SockInitShm => "sock_init_shm",
            Self::MemfdSegmentCreate => "memfd_segment_create",
        }
    }
}

/// Why a connection operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransportError {
    /// The client failed (no server, server gone, timeout, ...).
    Client(ClientError),
    /// `--shm`: no server publishes the named segment.
    NoNamedServer {
        /// The segment's path under `/dev/shm`.
        segment: PathBuf,
        /// The prefix asked for.
        prefix: Option<String>,
        /// The segment exists but nobody serves it (left over from a server that died).
        stale: bool,
    },
    /// A pivot that cannot be asked for on this connection: it is already on shared memory,
    /// the size does not fit the request, or the connection has no shared memory at all. The
    /// connection is unchanged.
    CannotPivot {
        /// The request (`sock_init_shm`, `memfd_segment_create`).
        how: &'static str,
        /// Why, in words.
        why: String,
    },
    /// The pivot was asked for and failed.
    Pivot {
        /// The request.
        how: &'static str,
        /// What the client reported.
        error: ClientError,
        /// The connection is still usable (the server refused cleanly, or nothing was sent).
        usable: bool,
    },
}

impl TransportError {
    /// True if the connection is unusable from now on.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Client(ClientError::Timeout { .. }) => false,
            Self::Client(_) | Self::NoNamedServer { .. } => true,
            Self::CannotPivot { .. } => false,
            Self::Pivot { usable, .. } => !usable,
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
            Self::NoNamedServer {
                segment,
                prefix,
                stale,
            } => {
                let segment = segment.display();
                if *stale {
                    write!(
                        f,
                        "no server at {segment} (the named shared-memory segment is left over \
                         from a server that is gone: nothing reads its doorbell)"
                    )
                } else {
                    let flag = match prefix {
                        Some(p) => format!("--shm-prefix {p}"),
                        None => "--shm-named".to_owned(),
                    };
                    write!(
                        f,
                        "no server at {segment} (the named shared-memory segment does not \
                         exist; is api-server running with {flag}?)"
                    )
                }
            }
            Self::CannotPivot { how, why } => {
                write!(f, "{how}: cannot move to shared memory: {why}")
            }
            Self::Pivot {
                how,
                error: ClientError::Retval { retval, .. },
                ..
            } => {
                let name = crate::runner::retval_name(*retval)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                write!(
                    f,
                    "{how}: the server refused the segment with retval {retval}{name}; \
                     still on the socket"
                )
            }
            Self::Pivot {
                how,
                error: ClientError::ServerGone,
                ..
            } => write!(f, "{how}: the server closed the connection (server gone)"),
            Self::Pivot { how, error, usable } => {
                write!(f, "{how} failed: {error}")?;
                if *usable {
                    f.write_str("; still on the socket")
                } else {
                    f.write_str("; the connection is in an unknown state")
                }
            }
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(e) | Self::Pivot { error: e, .. } => Some(e),
            Self::NoNamedServer { .. } | Self::CannotPivot { .. } => None,
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
    /// How messages travel now.
    fn kind(&self) -> TransportKind;
    /// Where this connection goes, for messages (`socket /run/vpp/api.sock`).
    fn describe(&self) -> String;
    /// The index the server gave this client (it changes when the connection pivots).
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
    /// Moves this connection onto a private shared-memory segment of `size` bytes (0: the
    /// server's default), asking with `how`.
    fn pivot_to_shm(&mut self, size: u64, how: PivotRequest) -> Result<(), TransportError>;
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
        Target::Socket(path) => Ok(Box::new(ClientTransport::connect(path, name, timeout)?)),
        Target::Shm { prefix } => Ok(Box::new(ClientTransport::attach_by_name(
            prefix.as_deref(),
            name,
            timeout,
        )?)),
        Target::SocketThenShm { path, size } => {
            let mut t = ClientTransport::connect(path, name, timeout)?;
            t.pivot_to_shm(*size, PivotRequest::SockInitShm)?;
            Ok(Box::new(t))
        }
    }
}

/// A connection over [`SocketClient`]: the socket, socket+shm, or shm by name.
#[derive(Debug)]
pub struct ClientTransport {
    client: SocketClient,
}

impl ClientTransport {
    /// Connects to the socket at `path` and registers.
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

    /// Attaches to the server's named segment (`prefix` as the server was given) and
    /// registers there.
    pub fn attach_by_name(
        prefix: Option<&str>,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let mut opts = ClientOptions::new(name);
        opts.timeout = timeout;
        match SocketClient::attach_by_name(prefix, &opts) {
            Ok(client) => Ok(Self { client }),
            Err(e) => Err(named_attach_error(prefix, e)),
        }
    }
}

/// Says "no server" in words when that is what a failed attach by name means: the segment
/// does not exist, or it exists and nobody holds its doorbell open (opening a FIFO for writing
/// without blocking fails with ENXIO when it has no reader).
fn named_attach_error(prefix: Option<&str>, e: ClientError) -> TransportError {
    let Ok(name) = vlibmemory::server::named_segment_name(prefix) else {
        return e.into();
    };
    let segment = name.path();
    let stale = matches!(e, ClientError::Shm(ShmConnectError::Doorbell(Errno::ENXIO)));
    let missing = matches!(e, ClientError::Shm(ShmConnectError::NoServer(_)));
    if stale || missing {
        TransportError::NoNamedServer {
            segment,
            prefix: prefix.map(str::to_owned),
            stale,
        }
    } else {
        e.into()
    }
}

/// Whether the connection is still usable after a failed pivot. The server refused cleanly
/// (a retval) or nothing was sent (no such message, nothing to encode): nothing changed. An
/// attach of the received segment that failed leaves the client on its socket with the stream
/// intact. Anything else (a timeout, a broken fd message, a lost server) leaves the socket in
/// an unknown state: the segment's fds may still be on their way.
fn usable_after_failed_pivot(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Retval { .. }
            | ClientError::UnknownMessage(_)
            | ClientError::Encode(_)
            | ClientError::Shm(_)
    )
}

impl Transport for ClientTransport {
    fn kind(&self) -> TransportKind {
        self.client.transport()
    }

    fn describe(&self) -> String {
        let path = self.client.path().display();
        match self.kind() {
            TransportKind::Socket => format!("socket {path}"),
            TransportKind::SocketShm => format!("socket+shm {path}"),
            TransportKind::NamedShm => format!("shm by name {path}"),
        }
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
        Ok(self.client.next_event(timeout)?.map(|e| e.bytes))
    }

    fn pivot_to_shm(&mut self, size: u64, how: PivotRequest) -> Result<(), TransportError> {
        let kind = self.kind();
        if kind != TransportKind::Socket {
            // Asked for over shared memory, the request would reach a server that only serves
            // it on the socket, and the answer would never come; refuse before sending.
            return Err(TransportError::CannotPivot {
                how: how.name(),
                why: format!(
                    "the connection is already there ({}); a connection moves once",
                    kind_name(kind)
                ),
            });
        }
        let result = match how {
            PivotRequest::MemfdSegmentCreate => self.client.pivot_memfd_segment_create(size),
            PivotRequest::SockInitShm => {
                let Ok(size) = u32::try_from(size) else {
                    return Err(TransportError::CannotPivot {
                        how: how.name(),
                        why: format!(
                            "its size is 32 bits and {} does not fit \
                             (memfd_segment_create takes 64-bit sizes)",
                            format_memory_size(size)
                        ),
                    });
                };
                self.client.pivot(size, None)
            }
        };
        result.map_err(|error| TransportError::Pivot {
            how: how.name(),
            usable: usable_after_failed_pivot(&error)
                && self.client.transport() == TransportKind::Socket,
            error,
        })
    }

    fn close(self: Box<Self>) -> Result<(), TransportError> {
        Ok(self.client.disconnect()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_the_server_lists_them() {
        assert_eq!(kind_name(TransportKind::Socket), "socket");
        assert_eq!(kind_name(TransportKind::SocketShm), "socket+shm");
        assert_eq!(kind_name(TransportKind::NamedShm), "shm");
    }

    #[test]
    fn errors_say_what_happened_and_whether_the_session_goes_on() {
        let refused = TransportError::Pivot {
            how: "sock_init_shm",
            error: ClientError::Retval {
                message: "sock_init_shm_reply",
                retval: -70,
            },
            usable: true,
        };
        assert_eq!(
            refused.to_string(),
            "sock_init_shm: the server refused the segment with retval -70 \
             (INVALID_MEMORY_SIZE); still on the socket"
        );
        assert!(!refused.is_fatal());
        let lost = TransportError::Pivot {
            how: "memfd_segment_create",
            error: ClientError::Timeout {
                waiting_for: "memfd_segment_create_reply".into(),
            },
            usable: false,
        };
        assert_eq!(
            lost.to_string(),
            "memfd_segment_create failed: timed out waiting for memfd_segment_create_reply; \
             the connection is in an unknown state"
        );
        assert!(lost.is_fatal());
        let twice = TransportError::CannotPivot {
            how: "sock_init_shm",
            why: "already".into(),
        };
        assert!(!twice.is_fatal());
        let missing = TransportError::NoNamedServer {
            segment: "/dev/shm/p-vpe-api".into(),
            prefix: Some("p".into()),
            stale: false,
        };
        assert_eq!(
            missing.to_string(),
            "no server at /dev/shm/p-vpe-api (the named shared-memory segment does not exist; \
             is api-server running with --shm-prefix p?)"
        );
        assert!(missing.is_fatal());
        let default = TransportError::NoNamedServer {
            segment: "/dev/shm/vpe-api".into(),
            prefix: None,
            stale: false,
        };
        assert!(default.to_string().ends_with("running with --shm-named?)"));
    }

    #[test]
    fn which_failed_pivots_leave_the_socket_usable() {
        assert!(usable_after_failed_pivot(&ClientError::Retval {
            message: "sock_init_shm_reply",
            retval: -70
        }));
        assert!(usable_after_failed_pivot(&ClientError::UnknownMessage(
            "memfd_segment_create_x".into()
        )));
        assert!(!usable_after_failed_pivot(&ClientError::ServerGone));
        assert!(!usable_after_failed_pivot(&ClientError::Timeout {
            waiting_for: "sock_init_shm_reply".into()
        }));
        assert!(!usable_after_failed_pivot(&ClientError::Handshake(
            "expected a memfd and a doorbell".into()
        )));
    }

    #[test]
    fn a_missing_named_segment_is_no_server() {
        let prefix = format!("vat-unit-{}-absent", std::process::id());
        let e = ClientTransport::attach_by_name(Some(&prefix), "t", Duration::from_millis(100))
            .unwrap_err();
        assert!(
            matches!(&e, TransportError::NoNamedServer { stale: false, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(&format!(
                "no server at /dev/shm/{prefix}-vpe-api (the named shared-memory segment does \
                 not exist"
            )),
            "{e}"
        );
        // A prefix that cannot name a segment is the client's own error, as it is.
        let e = ClientTransport::attach_by_name(Some("a/b"), "t", Duration::from_millis(100))
            .unwrap_err();
        assert!(matches!(e, TransportError::Client(_)), "{e:?}");
    }
}
