//! The connection core shared by the C library and the async client: one registered connection
//! to the API server, whatever its transport, with keepalive pings answered in its receive path.
//!
//! A [`Connection`] has a send half and a receive half, each behind its own lock, so one thread
//! may wait for messages while others send. Sending is [`Connection::queue`] (buffer one whole
//! message) and [`Connection::flush`] (write everything buffered), or [`Connection::send`] for
//! both. Receiving goes through an [`RxGuard`] (from [`Connection::lock_rx`] or
//! [`Connection::try_lock_rx`]), whose [`RxGuard::recv_with`] hands each message to a closure
//! without copying it. A waiting receiver can be woken from any thread with
//! [`Connection::interrupt`].
//!
//! **Keepalive.** The server pings shared-memory clients that have been silent for a while with
//! `memclnt_keepalive` and reaps those that do not answer. The receive path answers every ping
//! with `memclnt_keepalive_reply` carrying the ping's `context` and never hands pings to the
//! caller, so programs on top of this (C, Python, async Rust) need not know pings exist. The
//! handling is transport-agnostic: it sits in [`RxGuard::recv_with`], above the transport.
//!
//! **Transports.** Every byte goes through the private `Tx` and `Rx` enums: the socket, or a
//! shared-memory channel (vlibmemory's [`ShmLink`], split into a
//! send half and a receive half). Two ways onto shared memory, as `vlibsocket::client` does
//! them:
//!
//! - [`Connection::pivot_to_shm`]: from the socket to a private segment (`sock_init_shm`, the
//!   segment's memfd and doorbell received over the socket, `memclnt_create_v2` over the
//!   segment). The client index changes. The socket stays open: the server closing it means the
//!   server is gone, and messages the server still sends to the socket registration are
//!   received as well.
//! - [`Connection::attach_shm`]: a slot of the server's named segment, no socket. The server's
//!   departure shows as its doorbell FIFO losing its reader (see the `liveness` module).
//!
//! Either way a receive waits on the shared-memory queue in slices of at most 20 ms, looking
//! at [`Connection::interrupt`] and at the server's liveness between slices, so the server's
//! death surfaces as [`RecvError::ServerGone`] within a slice or so, and request timeouts
//! above this layer keep working.
//!
//! ```no_run
//! use std::time::Duration;
//! use vlibclient::conn::{ConnectOptions, Connection, Wait};
//!
//! let conn = Connection::connect("/run/vpp/api.sock", &ConnectOptions::new("example"))?;
//! conn.pivot_to_shm(0)?; // optional: from here on, shared memory
//! let ping = conn.table().id("control_ping_51077d14").expect("in every table");
//! let mut msg = ping.to_be_bytes().to_vec();
//! msg.extend_from_slice(&conn.client_index().to_be_bytes());
//! msg.extend_from_slice(&7u32.to_be_bytes()); // context
//! conn.send(&msg)?;
//! let reply = conn.lock_rx().recv_with(Wait::For(Duration::from_secs(5)), |m| m.to_vec())?;
//! println!("{reply:?}");
//! conn.close(Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self as nixsock, MsgFlags, Shutdown};
pub use svm::notify::WaitPolicy;
use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vlibmemory::channel::{RecvError as ChannelRecvError, SendError as ChannelSendError};
use vlibmemory::client::{ShmConnectError, ShmLink, ShmReceiver, ShmSender};
use vlibsocket::client::{SOCKCLNT_CREATE_ID, SOCKCLNT_CREATE_REPLY_ID};
use vlibsocket::frame::{self, FrameError, FrameReader, ReadOutcome};
use vppinfra::socket::{FdRecvError, SocketConnectError};
use vppinfra::sync::{Arc, AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering};

use crate::liveness::{DoorbellWatch, SigpipeShield};

/// The `context` of `sockclnt_create`, as VPP's clients send it.
const CREATE_CONTEXT: u32 = 0xfeed_face;
/// The `context` of `sock_init_shm` ("PIVO").
const PIVOT_CONTEXT: u32 = 0x5049_564f;
/// The `context` of `memclnt_create_v2` ("MEMC").
const REGISTER_CONTEXT: u32 = 0x4d45_4d43;
/// Buffered outgoing bytes past which [`Connection::queue`] writes without waiting for a flush.
const AUTO_FLUSH_BYTES: usize = 256 << 10;
/// The longest single wait on the shared-memory queue: between two, a receiver looks at
/// [`Connection::interrupt`] and at the server's liveness.
const SHM_SLICE: Duration = Duration::from_millis(20);
/// The data bytes the server sends with the segment's fds after `sock_init_shm_reply`.
const FD_MESSAGE_LEN: usize = 5;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The name the server shows for this client (at most 63 bytes).
    pub name: String,
    /// How long the registration handshake may take, and how long a send may stay blocked by a
    /// server that does not read.
    pub timeout: Duration,
    /// Longest message accepted from the server.
    pub max_message_len: u32,
    /// How a receive waits on shared memory (spin, then sleep on a futex, by default).
    pub shm_wait: WaitPolicy,
}

impl ConnectOptions {
    /// Defaults: a 5 s timeout (as vpp_papi), 64 MiB messages, vlibmemory's default wait.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            timeout: Duration::from_secs(5),
            max_message_len: 64 << 20,
            shm_wait: WaitPolicy::default(),
        }
    }
}

/// Which transport a connection uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The API socket.
    Socket,
    /// A shared-memory segment (after a pivot or an attach by name).
    SharedMemory,
}

/// How long a receive may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not at all: only what has already arrived.
    No,
    /// Up to this long.
    For(Duration),
    /// Until a message arrives, the connection fails, or [`Connection::interrupt`] is called.
    Forever,
}

impl Wait {
    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::For(d) => Some(Instant::now() + d),
            Wait::Forever => None,
        }
    }
}

/// The server's message table as the registration reply gave it: `name_crc` to ID.
#[derive(Debug, Clone, Default)]
pub struct MsgTable {
    ids: HashMap<String, u16>,
    names: Vec<Option<String>>,
}

impl MsgTable {
    fn from_entries(entries: Vec<memclnt::MessageTableEntry>) -> Self {
        let mut table = Self::default();
        for e in entries {
            table.insert(e.name, e.index);
        }
        table
    }

    fn insert(&mut self, name_crc: String, id: u16) {
        let slot = usize::from(id);
        if slot >= self.names.len() {
            self.names.resize(slot + 1, None);
        }
        self.names[slot] = Some(name_crc.clone());
        self.ids.insert(name_crc, id);
    }

    /// The ID of `name_crc` (`control_ping_51077d14`).
    #[doc(alias = "vl_msg_api_get_msg_index")]
    pub fn id(&self, name_crc: &str) -> Option<u16> {
        self.ids.get(name_crc).copied()
    }

    /// The ID of message `name` with CRC `crc`.
    pub fn id_by_name_crc(&self, name: &str, crc: u32) -> Option<u16> {
        self.id(&format!("{name}_{crc:08x}"))
    }

    /// The ID of message type `M`.
    pub fn id_of<M: Message>(&self) -> Option<u16> {
        self.id(M::NAME_CRC)
    }

    /// The `name_crc` of `id`.
    pub fn name(&self, id: u16) -> Option<&str> {
        self.names.get(usize::from(id)).and_then(|n| n.as_deref())
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the table is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every `(name_crc, id)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.ids.iter().map(|(n, &id)| (n.as_str(), id))
    }
}

/// The ID of `M` in `table`, or the error naming it.
fn need<M: Message>(table: &MsgTable) -> Result<u16, &'static str> {
    table.id_of::<M>().ok_or(M::NAME_CRC)
}

/// Why [`Connection::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket could not be reached (no server, refused, no permission).
    Socket {
        /// The path tried.
        path: PathBuf,
        /// Why.
        error: SocketConnectError,
    },
    /// The client name does not fit `sockclnt_create` (63 bytes at most, UTF-8).
    InvalidName(String),
    /// The server's answer was not a valid `sockclnt_create_reply`.
    Handshake(String),
    /// The server refused the registration.
    Refused {
        /// The reply's `response`.
        response: i32,
    },
    /// No registration reply within the timeout.
    Timeout,
    /// The server closed the connection during the handshake.
    ServerGone,
    /// The server broke the framing rules.
    Framing(FrameError),
    /// A system call failed.
    Os(Errno),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket { path, error } => {
                write!(f, "cannot connect to {}: {error}", path.display())
            }
            Self::InvalidName(why) => write!(f, "invalid client name: {why}"),
            Self::Handshake(why) => write!(f, "registration handshake failed: {why}"),
            Self::Refused { response } => {
                write!(
                    f,
                    "the server refused the registration (response {response})"
                )
            }
            Self::Timeout => f.write_str("timed out waiting for sockclnt_create_reply"),
            Self::ServerGone => {
                f.write_str("the server closed the connection during the handshake")
            }
            Self::Framing(e) => write!(f, "bad frame from server: {e}"),
            Self::Os(e) => write!(f, "system call failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Socket { error, .. } => Some(error),
            Self::Framing(e) => Some(e),
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The message is shorter than a message ID or longer than a frame can say.
    BadLength {
        /// Its length.
        len: usize,
    },
    /// The server closed the connection (or is known to be gone).
    ServerGone,
    /// The server did not take the bytes within the timeout; nothing was written.
    Timeout,
    /// An earlier send was cut mid-frame, so the byte stream is unusable.
    Broken,
    /// The shared-memory channel is corrupt (the server's side wrote nonsense into it).
    Corrupt,
    /// A system call failed.
    Os(Errno),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength { len } => write!(f, "cannot send a message of {len} bytes"),
            Self::ServerGone => f.write_str("the server closed the connection"),
            Self::Timeout => f.write_str("timed out: the server is not reading"),
            Self::Broken => f.write_str("the connection is broken by an earlier partial write"),
            Self::Corrupt => f.write_str("the shared-memory channel is corrupt"),
            Self::Os(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// A vlibmemory send failure as this layer reports it. A shared-memory send either goes
/// through whole or not at all, so none of these breaks the stream.
fn shm_send_error(e: ChannelSendError) -> SendError {
    match e {
        ChannelSendError::TooLarge(len) => SendError::BadLength { len },
        ChannelSendError::Corrupt(_) => SendError::Corrupt,
        _ => SendError::Timeout,
    }
}

/// Why receiving failed. Every variant but [`RecvError::Keepalive`] is final for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The server closed the connection (or is gone, or the connection was shut down).
    ServerGone,
    /// The server broke the framing rules.
    Framing(FrameError),
    /// The server broke the shared-memory channel: a corrupt queue, or a message buffer that
    /// is not one (what was wrong, briefly).
    Channel(&'static str),
    /// The answer to a keepalive ping could not be sent.
    Keepalive(SendError),
    /// A system call failed.
    Os(Errno),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerGone => f.write_str("the server closed the connection"),
            Self::Framing(e) => write!(f, "bad frame from server: {e}"),
            Self::Channel(what) => write!(f, "bad shared-memory channel: {what}"),
            Self::Keepalive(e) => write!(f, "cannot answer a keepalive ping: {e}"),
            Self::Os(e) => write!(f, "receive failed: {e}"),
        }
    }
}

impl std::error::Error for RecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Framing(e) => Some(e),
            Self::Keepalive(e) => Some(e),
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// A vlibmemory receive failure (other than a timeout) as this layer reports it.
fn shm_recv_error(e: &ChannelRecvError) -> RecvError {
    RecvError::Channel(match e {
        ChannelRecvError::Corrupt(_) => "corrupt queue",
        ChannelRecvError::BadOffset(_) => "a message offset that is no buffer",
        ChannelRecvError::BadLength { .. } => "a message longer than its buffer",
        ChannelRecvError::TooShort(_) => "a message shorter than a message id",
        ChannelRecvError::Heap(_) => "a heap block the heap refused",
        _ => "an unexpected receive failure",
    })
}

/// Why registering over shared memory (`memclnt_create_v2`) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShmRegisterError {
    /// The client name does not fit `memclnt_create_v2`.
    InvalidName(String),
    /// The server's table lacks `memclnt_create_v2` or its reply (this `name_crc`).
    UnknownMessage(&'static str),
    /// The request could not be sent.
    Send(SendError),
    /// The channel failed while waiting for the reply.
    Recv(RecvError),
    /// No reply within the timeout.
    Timeout,
    /// The reply could not be decoded.
    BadReply(String),
    /// The server said no.
    Refused {
        /// The reply's `response`.
        response: i32,
    },
}

impl fmt::Display for ShmRegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(why) => write!(f, "invalid client name: {why}"),
            Self::UnknownMessage(m) => write!(f, "the server does not know {m}"),
            Self::Send(e) => write!(f, "cannot send memclnt_create_v2: {e}"),
            Self::Recv(e) => write!(f, "waiting for memclnt_create_v2_reply: {e}"),
            Self::Timeout => f.write_str("timed out waiting for memclnt_create_v2_reply"),
            Self::BadReply(why) => write!(f, "bad memclnt_create_v2_reply: {why}"),
            Self::Refused { response } => write!(
                f,
                "the server refused the shared-memory registration (response {response})"
            ),
        }
    }
}

impl std::error::Error for ShmRegisterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Send(e) => Some(e),
            Self::Recv(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Connection::pivot_to_shm`] failed. The connection stays on the socket, usable,
/// unless the error says the server has gone.
#[derive(Debug)]
#[non_exhaustive]
pub enum PivotError {
    /// The connection is on shared memory already (pivoted, or attached by name).
    AlreadyShm,
    /// Asked from inside a receive callback, which would wait for itself.
    InsideCallback,
    /// `sock_init_shm` asks for at most 4 GiB - 1 bytes.
    BadSize(u64),
    /// The server's table lacks a message the pivot needs (this `name_crc`): it offers no
    /// shared memory.
    UnknownMessage(&'static str),
    /// `sock_init_shm` could not be sent.
    Send(SendError),
    /// The socket failed while waiting for the reply or the fds.
    Recv(RecvError),
    /// No `sock_init_shm_reply`, or no fds, within the timeout.
    Timeout {
        /// What was awaited.
        waiting_for: &'static str,
    },
    /// The server refused (`sock_init_shm_reply.retval`, e.g. -70 for a bad size).
    Refused {
        /// The reply's retval.
        retval: i32,
    },
    /// The server did not send what a pivot sends (a decodable reply, a memfd and a doorbell).
    Handshake(String),
    /// The segment could not be attached.
    Shm(ShmConnectError),
    /// The registration over the segment failed.
    Register(ShmRegisterError),
}

impl fmt::Display for PivotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyShm => f.write_str("the connection is on shared memory already"),
            Self::InsideCallback => {
                f.write_str("cannot move to shared memory from inside the receive callback")
            }
            Self::BadSize(n) => write!(f, "a segment of {n} bytes cannot be asked for"),
            Self::UnknownMessage(m) => write!(
                f,
                "the server offers no shared memory (its table has no {m})"
            ),
            Self::Send(e) => write!(f, "cannot send sock_init_shm: {e}"),
            Self::Recv(e) => write!(f, "pivot: {e}"),
            Self::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Self::Refused { retval } => {
                write!(f, "the server refused the pivot (retval {retval})")
            }
            Self::Handshake(why) => write!(f, "pivot handshake failed: {why}"),
            Self::Shm(e) => write!(f, "shared memory: {e}"),
            Self::Register(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PivotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Send(e) => Some(e),
            Self::Recv(e) => Some(e),
            Self::Shm(e) => Some(e),
            Self::Register(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Connection::attach_shm`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// No named segment to attach to (no server with this prefix publishes one), no free
    /// slot, or a segment that is not valid.
    Shm(ShmConnectError),
    /// The segment's doorbell has no reader: the server that made the segment is gone.
    ServerGone,
    /// The doorbell could not be opened.
    Os(Errno),
    /// The segment publishes no usable message table.
    Table(String),
    /// The registration failed.
    Register(ShmRegisterError),
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shm(e) => write!(f, "cannot attach to the named segment: {e}"),
            Self::ServerGone => f.write_str("the server of the named segment is gone"),
            Self::Os(e) => write!(f, "cannot open the segment's doorbell: {e}"),
            Self::Table(why) => write!(f, "bad message table in the named segment: {why}"),
            Self::Register(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Shm(e) => Some(e),
            Self::Os(e) => Some(e),
            Self::Register(e) => Some(e),
            _ => None,
        }
    }
}

/// The send half of a transport.
// One per connection, behind its lock: boxing the shared-memory variant would only add a
// pointer chase to every message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Tx {
    Socket(SocketTx),
    Shm(ShmTx),
    /// After [`Connection::close`] of a connection without a socket: nothing left to send on.
    Closed,
}

/// The receive half of a transport.
#[allow(clippy::large_enum_variant)] // as `Tx`
#[derive(Debug)]
enum Rx {
    Socket(SocketRx),
    Shm(ShmRx),
    /// See [`Tx::Closed`].
    Closed,
}

#[derive(Debug)]
struct SocketTx {
    fd: Arc<OwnedFd>,
    out: Vec<u8>,
    broken: bool,
}

impl SocketTx {
    /// Writes all of `bytes`. A timeout before the first byte leaves the stream intact; after
    /// it, the stream is cut mid-frame and the connection is marked broken.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        if self.broken {
            return Err(SendError::Broken);
        }
        let mut written = 0;
        while written < bytes.len() {
            match nixsock::send(
                self.fd.as_raw_fd(),
                &bytes[written..],
                MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                // SO_SNDTIMEO expired: the server has not been reading for the whole timeout.
                Err(Errno::EAGAIN) => {
                    if written > 0 {
                        self.broken = true;
                    }
                    return Err(SendError::Timeout);
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Err(SendError::ServerGone),
                Err(e) => return Err(SendError::Os(e)),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SendError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = self.write_all(&out);
        // Keep the allocation; the bytes are gone either way (sent, or dropped on error).
        self.out = out;
        self.out.clear();
        r
    }

    /// Buffers one framed message.
    fn queue(&mut self, msg: &[u8]) {
        self.out.extend_from_slice(&frame::header(msg.len() as u32));
        self.out.extend_from_slice(msg);
    }
}

/// The send half on shared memory: every message goes into the segment at once.
#[derive(Debug)]
struct ShmTx {
    sender: ShmSender,
    /// How long a send may wait for room in the rings and the queue.
    timeout: Duration,
    /// After a pivot: the socket, for the socket registration's goodbye.
    socket: Option<SocketTx>,
    /// Attached by name, in a process that would die of `SIGPIPE`.
    sigpipe: Option<SigpipeShield>,
}

impl ShmTx {
    fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_within(msg, self.timeout)
    }

    fn send_within(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let sender = &mut self.sender;
        let r = match &self.sigpipe {
            Some(shield) => shield.run(|| sender.send(msg, timeout)),
            None => sender.send(msg, timeout),
        };
        r.map_err(shm_send_error)
    }
}

#[derive(Debug)]
struct SocketRx {
    fd: Arc<OwnedFd>,
    reader: FrameReader,
    /// Whole messages taken from the reader during a pivot (they arrived before the pivot's
    /// reply), handed out before anything else.
    held: VecDeque<Vec<u8>>,
    /// The held message being handed out.
    current: Vec<u8>,
}

impl SocketRx {
    fn new(fd: Arc<OwnedFd>, max_message_len: u32) -> Self {
        Self {
            fd,
            reader: FrameReader::new(max_message_len),
            held: VecDeque::new(),
            current: Vec::new(),
        }
    }

    /// True when [`SocketRx::next`] has a message (or a framing error) without reading.
    fn ready(&self) -> bool {
        !self.held.is_empty() || self.reader.frame_ready()
    }

    /// The next whole message, waiting until `deadline` (`None`: no limit). `Ok(None)` when the
    /// deadline passed or `wake` was signalled.
    fn next(
        &mut self,
        deadline: Option<Instant>,
        wake: Option<&EventFd>,
    ) -> Result<Option<&[u8]>, RecvError> {
        if let Some(m) = self.held.pop_front() {
            self.current = m;
            return Ok(Some(&self.current));
        }
        loop {
            if self.reader.frame_ready() {
                return self.reader.next_frame().map_err(RecvError::Framing);
            }
            let mut fds = vec![PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = wake {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, poll_timeout(deadline)) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(RecvError::Os(e)),
            }
            let sock_ready = fds[0].any().unwrap_or(false);
            let woken = fds.get(1).is_some_and(|f| f.any().unwrap_or(false));
            drop(fds);
            if let (true, Some(w)) = (woken, wake) {
                // Reset the eventfd; a concurrent interrupt re-arms it, which at worst makes a
                // later wait return early once.
                let _ = w.read();
                return Ok(None);
            }
            if !sock_ready {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                continue;
            }
            self.read_once()?;
        }
    }

    /// One read of whatever the socket has (it was reported readable).
    fn read_once(&mut self) -> Result<(), RecvError> {
        match self.reader.read_from(&*self.fd) {
            Ok(ReadOutcome::Data(_)) | Ok(ReadOutcome::WouldBlock) => Ok(()),
            Ok(ReadOutcome::Eof) => Err(RecvError::ServerGone),
            Err(Errno::ECONNRESET) => Err(RecvError::ServerGone),
            Err(e) => Err(RecvError::Os(e)),
        }
    }
}

/// A poll timeout that ends at `deadline` (rounded up, so that a wait never ends just short of
/// it); `None` waits without limit.
fn poll_timeout(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// How a shared-memory receiver learns that the server has gone.
#[derive(Debug)]
enum Liveness {
    /// After a pivot: the socket, whose EOF means the server is gone. It is read too, since
    /// the server may still send to the socket registration (and messages that arrived before
    /// the pivot's reply wait there).
    Socket(SocketRx),
    /// Attached by name: the doorbell FIFO, which loses its reader when the server dies.
    Doorbell(DoorbellWatch),
}

/// The receive half on shared memory.
#[derive(Debug)]
struct ShmRx {
    receiver: ShmReceiver,
    /// The message being handed out.
    buf: Vec<u8>,
    liveness: Liveness,
}

/// What a look at the wake and liveness descriptors found.
enum Look {
    /// [`Connection::interrupt`] was called.
    Woken,
    /// A whole message arrived on the socket.
    SocketMessage,
    /// Nothing.
    Quiet,
}

impl ShmRx {
    /// Waits until `deadline` for the next message and leaves it in `self.buf` (`Ok(true)`).
    /// `Ok(false)`: the deadline passed or `wake` was signalled.
    fn next(
        &mut self,
        deadline: Option<Instant>,
        wake: &EventFd,
        closed: &AtomicBool,
    ) -> Result<bool, RecvError> {
        loop {
            if closed.load(Ordering::Acquire) {
                return Err(RecvError::ServerGone);
            }
            if let Liveness::Socket(s) = &mut self.liveness {
                if s.ready() {
                    if let Some(m) = s.next(Some(Instant::now()), None)? {
                        self.buf.clear();
                        self.buf.extend_from_slice(m);
                        return Ok(true);
                    }
                }
            }
            match self.receiver.try_recv(&mut self.buf) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => return Err(shm_recv_error(&e)),
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                // Nothing now: one look at the wake and the server before giving up.
                match self.look(wake)? {
                    Look::SocketMessage => continue,
                    Look::Woken | Look::Quiet => return Ok(false),
                }
            }
            let slice = left.map_or(SHM_SLICE, |l| l.min(SHM_SLICE));
            match self.receiver.recv(&mut self.buf, slice) {
                Ok(()) => return Ok(true),
                Err(ChannelRecvError::Timeout) => {}
                Err(e) => return Err(shm_recv_error(&e)),
            }
            if let Look::Woken = self.look(wake)? {
                return Ok(false);
            }
        }
    }

    /// Looks, without waiting, at `wake` and at the server's liveness.
    fn look(&mut self, wake: &EventFd) -> Result<Look, RecvError> {
        let (woken, other) = {
            let mut fds = [
                PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                match &self.liveness {
                    Liveness::Socket(s) => PollFd::new(s.fd.as_fd(), PollFlags::POLLIN),
                    Liveness::Doorbell(d) => PollFd::new(d.fd(), PollFlags::POLLOUT),
                },
            ];
            match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(RecvError::Os(e)),
            }
            (fds[0].any().unwrap_or(false), fds[1].revents())
        };
        if woken {
            let _ = wake.read();
            return Ok(Look::Woken);
        }
        match &mut self.liveness {
            Liveness::Socket(s) => {
                let readable = other.is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                });
                if readable {
                    s.read_once()?;
                    if s.ready() {
                        return Ok(Look::SocketMessage);
                    }
                }
            }
            Liveness::Doorbell(_) => {
                if crate::liveness::gone_in(other) {
                    return Err(RecvError::ServerGone);
                }
            }
        }
        Ok(Look::Quiet)
    }
}

impl Rx {
    /// The next whole message, waiting until `deadline` (`None`: no limit). `Ok(None)` when the
    /// deadline passed or `wake` was signalled.
    fn next(
        &mut self,
        deadline: Option<Instant>,
        wake: &EventFd,
        closed: &AtomicBool,
    ) -> Result<Option<&[u8]>, RecvError> {
        match self {
            Rx::Socket(s) => s.next(deadline, Some(wake)),
            Rx::Shm(s) => {
                let got = s.next(deadline, wake, closed)?;
                // Shut down while waiting: what arrived meanwhile (the answer to the goodbye
                // that shutdown sent, say) is not for the caller.
                if closed.load(Ordering::Acquire) {
                    return Err(RecvError::ServerGone);
                }
                Ok(got.then_some(&s.buf[..]))
            }
            Rx::Closed => Err(RecvError::ServerGone),
        }
    }
}

/// Sends `msg` on the shared-memory half and waits until `deadline` for the message with ID
/// `reply_id` and context `context` (others are dropped: nothing else can come before a
/// registration). Used for the registration, before the halves are in a connection.
fn shm_request(
    tx: &mut ShmTx,
    rx: &mut ShmReceiver,
    msg: &[u8],
    reply_id: u16,
    context: u32,
    deadline: Instant,
) -> Result<Vec<u8>, ShmRegisterError> {
    tx.send(msg).map_err(ShmRegisterError::Send)?;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ShmRegisterError::Timeout);
        }
        match rx.recv(&mut buf, left.min(SHM_SLICE)) {
            Ok(()) => {}
            Err(ChannelRecvError::Timeout) => continue,
            Err(e) => return Err(ShmRegisterError::Recv(shm_recv_error(&e))),
        }
        let ctx = buf
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if wire::msg_id(&buf) == Some(reply_id) && ctx == Some(context) {
            return Ok(buf);
        }
    }
}

/// Registers over a fresh shared-memory link with `memclnt_create_v2 { keepalive: true }`, as
/// `vlibsocket::client` does; returns the new client index.
#[doc(alias = "vl_client_connect")]
fn register_shm(
    tx: &mut ShmTx,
    rx: &mut ShmReceiver,
    table: &MsgTable,
    name: &str,
    timeout: Duration,
) -> Result<u32, ShmRegisterError> {
    let create_id =
        need::<memclnt::MemclntCreateV2>(table).map_err(ShmRegisterError::UnknownMessage)?;
    let reply_id =
        need::<memclnt::MemclntCreateV2Reply>(table).map_err(ShmRegisterError::UnknownMessage)?;
    let create = memclnt::MemclntCreateV2 {
        context: REGISTER_CONTEXT,
        name: name.to_owned(),
        keepalive: true,
        ..Default::default()
    };
    let msg = wire::to_vec(&create, create_id)
        .map_err(|e| ShmRegisterError::InvalidName(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let reply = shm_request(tx, rx, &msg, reply_id, REGISTER_CONTEXT, deadline)?;
    let reply = memclnt::MemclntCreateV2Reply::decode(&reply)
        .map_err(|e| ShmRegisterError::BadReply(e.to_string()))?;
    if reply.response != 0 {
        return Err(ShmRegisterError::Refused {
            response: reply.response,
        });
    }
    Ok(reply.index)
}

/// Splits a fresh link into the two halves of a connection (the receive half's liveness and
/// the send half's shield are the caller's to add).
fn shm_halves(
    link: ShmLink,
    timeout: Duration,
    sigpipe: Option<SigpipeShield>,
) -> (ShmTx, ShmReceiver) {
    let (sender, receiver) = link.split();
    (
        ShmTx {
            sender,
            timeout,
            socket: None,
            sigpipe,
        },
        receiver,
    )
}

/// One registered connection to the API server.
#[derive(Debug)]
pub struct Connection {
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
    /// Wakes a receiver waiting in [`Rx::next`].
    wake: EventFd,
    table: MsgTable,
    /// The current registration's index (it changes with a pivot).
    index: AtomicU32,
    /// The socket registration's index; `None` when attached by name.
    socket_index: Option<u32>,
    /// IDs of `memclnt_keepalive` and its reply, when the server's table has them.
    keepalive: Option<(u16, u16)>,
    pings_answered: AtomicU64,
    /// Contexts of keepalive pings whose replies found no room yet, in order: a receive never
    /// blocks on a server that waits for it to take messages before it reads again.
    pongs: Mutex<VecDeque<u32>>,
    /// `pongs` is not empty (checked without the lock on every receive).
    pongs_waiting: AtomicBool,
    /// The socket, for `shutdown`; `None` when attached by name.
    socket: Option<Arc<OwnedFd>>,
    /// Set by [`Connection::shutdown`] and once the server is known to be gone: shared-memory
    /// receives and sends fail at once from then on.
    closed: AtomicBool,
    name: String,
    timeout: Duration,
    shm_wait: WaitPolicy,
    max_message_len: u32,
    path: PathBuf,
}

impl Connection {
    /// Connects to the socket at `path`, registers with `sockclnt_create` and loads the
    /// message table from the reply.
    #[doc(alias = "vl_socket_client_connect")]
    pub fn connect(path: impl AsRef<Path>, opts: &ConnectOptions) -> Result<Self, ConnectError> {
        let path = path.as_ref().to_path_buf();
        let create = memclnt::SockclntCreate {
            context: CREATE_CONTEXT,
            name: opts.name.clone(),
        };
        let mut msg = Vec::with_capacity(create.encoded_len());
        create
            .encode(SOCKCLNT_CREATE_ID, &mut msg)
            .map_err(|e| ConnectError::InvalidName(e.to_string()))?;
        let fd = vppinfra::socket::connect(&path).map_err(|error| ConnectError::Socket {
            path: path.clone(),
            error,
        })?;
        let tv = nix::sys::time::TimeVal::new(
            opts.timeout.as_secs() as i64,
            opts.timeout.subsec_micros() as i64,
        );
        nixsock::setsockopt(&fd, nixsock::sockopt::SendTimeout, &tv).map_err(ConnectError::Os)?;
        let fd = Arc::new(fd);
        let mut tx = SocketTx {
            fd: fd.clone(),
            out: Vec::with_capacity(4096),
            broken: false,
        };
        let mut rx = SocketRx::new(fd.clone(), opts.max_message_len);
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(ConnectError::Os)?;
        tx.queue(&msg);
        tx.flush().map_err(|e| match e {
            SendError::Timeout => ConnectError::Timeout,
            SendError::Os(e) => ConnectError::Os(e),
            _ => ConnectError::ServerGone,
        })?;
        let deadline = Instant::now() + opts.timeout;
        let reply = match rx.next(Some(deadline), None) {
            Ok(Some(m)) => m.to_vec(),
            Ok(None) => return Err(ConnectError::Timeout),
            Err(RecvError::Framing(e)) => return Err(ConnectError::Framing(e)),
            Err(RecvError::Os(e)) => return Err(ConnectError::Os(e)),
            Err(_) => return Err(ConnectError::ServerGone),
        };
        if wire::msg_id(&reply) != Some(SOCKCLNT_CREATE_REPLY_ID) {
            return Err(ConnectError::Handshake(format!(
                "expected sockclnt_create_reply (id {SOCKCLNT_CREATE_REPLY_ID}), got id {:?}",
                wire::msg_id(&reply)
            )));
        }
        let reply = memclnt::SockclntCreateReply::decode(&reply)
            .map_err(|e| ConnectError::Handshake(e.to_string()))?;
        if reply.response != 0 {
            return Err(ConnectError::Refused {
                response: reply.response,
            });
        }
        let table = MsgTable::from_entries(reply.message_table);
        Ok(Self::assemble(
            Tx::Socket(tx),
            Rx::Socket(rx),
            wake,
            table,
            reply.index,
            Some(fd),
            opts,
            path,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        tx: Tx,
        rx: Rx,
        wake: EventFd,
        table: MsgTable,
        index: u32,
        socket: Option<Arc<OwnedFd>>,
        opts: &ConnectOptions,
        path: PathBuf,
    ) -> Self {
        let keepalive = table
            .id_of::<memclnt::MemclntKeepalive>()
            .zip(table.id_of::<memclnt::MemclntKeepaliveReply>());
        Self {
            tx: Mutex::new(tx),
            rx: Mutex::new(rx),
            wake,
            table,
            index: AtomicU32::new(index),
            socket_index: socket.is_some().then_some(index),
            keepalive,
            pings_answered: AtomicU64::new(0),
            pongs: Mutex::new(VecDeque::new()),
            pongs_waiting: AtomicBool::new(false),
            socket,
            closed: AtomicBool::new(false),
            name: opts.name.clone(),
            timeout: opts.timeout,
            shm_wait: opts.shm_wait,
            max_message_len: opts.max_message_len,
            path,
        }
    }

    /// Moves this connection from the socket to a private shared-memory segment of
    /// `segment_size` bytes (0: the server's default), as `vlibsocket::client` does: asks with
    /// `sock_init_shm`, reads the reply (and nothing more) from the socket, receives the
    /// segment's memfd and doorbell, attaches, and registers over the segment with
    /// `memclnt_create_v2 { keepalive: true }`. From then on every message travels through the
    /// segment, and requests carry the new [`Connection::client_index`].
    ///
    /// A receiver waiting in another thread is interrupted so that it gives the receive half
    /// up; one that takes it again at once delays the pivot until its wait ends. Messages that
    /// arrive on the socket meanwhile are kept and received as usual. On failure the connection
    /// stays on the socket (a server that created the segment before the failure keeps it until
    /// the socket closes, and refuses a second pivot).
    #[doc(alias = "vl_socket_client_init_shm")]
    pub fn pivot_to_shm(&self, segment_size: u64) -> Result<(), PivotError> {
        let requested_size =
            u32::try_from(segment_size).map_err(|_| PivotError::BadSize(segment_size))?;
        let init_id =
            need::<memclnt::SockInitShm>(&self.table).map_err(PivotError::UnknownMessage)?;
        let reply_id =
            need::<memclnt::SockInitShmReply>(&self.table).map_err(PivotError::UnknownMessage)?;
        // Checked before anything is sent: a server that cannot register us is left alone.
        need::<memclnt::MemclntCreateV2>(&self.table).map_err(PivotError::UnknownMessage)?;
        need::<memclnt::MemclntCreateV2Reply>(&self.table).map_err(PivotError::UnknownMessage)?;
        self.interrupt();
        let mut rx = lock(&self.rx);
        // The interrupt has done its work (whoever waited gave the receive half up); left
        // armed, it would cut the next wait short.
        let _ = self.wake.read();
        let mut tx = lock(&self.tx);
        let (Tx::Socket(stx), Rx::Socket(srx)) = (&mut *tx, &mut *rx) else {
            return Err(PivotError::AlreadyShm);
        };
        let req = memclnt::SockInitShm {
            client_index: self.client_index(),
            context: PIVOT_CONTEXT,
            requested_size,
            ..Default::default()
        };
        let msg = wire::to_vec(&req, init_id).map_err(|e| PivotError::Handshake(e.to_string()))?;
        stx.queue(&msg);
        stx.flush().map_err(PivotError::Send)?;
        let deadline = Instant::now() + self.timeout;
        let reply = read_pivot_reply(srx, reply_id, deadline)?;
        if reply.retval != 0 {
            return Err(PivotError::Refused {
                retval: reply.retval,
            });
        }
        let (memfd, doorbell) = receive_segment_fds(srx, deadline)?;
        let link = ShmLink::from_pivot(memfd, doorbell, self.shm_wait).map_err(PivotError::Shm)?;
        let (mut shm_tx, mut receiver) = shm_halves(link, self.timeout, None);
        let index = register_shm(
            &mut shm_tx,
            &mut receiver,
            &self.table,
            &self.name,
            self.timeout,
        )
        .map_err(PivotError::Register)?;
        let old_tx = std::mem::replace(&mut *tx, Tx::Closed);
        let old_rx = std::mem::replace(&mut *rx, Rx::Closed);
        match (old_tx, old_rx) {
            (Tx::Socket(stx), Rx::Socket(srx)) => {
                shm_tx.socket = Some(stx);
                *tx = Tx::Shm(shm_tx);
                *rx = Rx::Shm(ShmRx {
                    receiver,
                    buf: Vec::new(),
                    liveness: Liveness::Socket(srx),
                });
            }
            (t, r) => {
                // Not reachable: both halves were checked under the same locks.
                *tx = t;
                *rx = r;
                return Err(PivotError::AlreadyShm);
            }
        }
        self.index.store(index, Ordering::Release);
        Ok(())
    }

    /// Connects to the server's named shared-memory API segment, without a socket:
    /// `/dev/shm/vpe-api`, or `/dev/shm/<prefix>-vpe-api` (the server's `--shm-prefix`).
    /// Claims a free slot, loads the message table the segment publishes, and registers with
    /// `memclnt_create_v2 { keepalive: true }`.
    ///
    /// With no socket, the server's departure is seen through the segment's doorbell FIFO
    /// (see the `liveness` module), and in a process that leaves `SIGPIPE` at its default
    /// action, sends block `SIGPIPE` for their duration, so that writing to the doorbell of a
    /// dead server does not kill the program.
    #[doc(alias = "vl_client_connect_to_vlib")]
    pub fn attach_shm(prefix: Option<&str>, opts: &ConnectOptions) -> Result<Self, AttachError> {
        let sigpipe = SigpipeShield::if_needed();
        let attach = || ShmLink::attach_named(prefix, opts.shm_wait);
        let link = match &sigpipe {
            Some(shield) => shield.run(attach),
            None => attach(),
        }
        .map_err(AttachError::Shm)?;
        let doorbell = DoorbellWatch::open(prefix).map_err(|e| match e {
            Errno::ENXIO => AttachError::ServerGone,
            e => AttachError::Os(e),
        })?;
        let published = link
            .published_table()
            .ok_or_else(|| AttachError::Table("the segment publishes none".into()))?;
        let entries = memclnt::SockclntCreateReply::decode(published)
            .map_err(|e| AttachError::Table(e.to_string()))?
            .message_table;
        let table = MsgTable::from_entries(entries);
        let path = vlibmemory::server::named_segment_name(prefix)
            .map(|n| n.path())
            .unwrap_or_default();
        let (mut tx, mut receiver) = shm_halves(link, opts.timeout, sigpipe);
        let index = register_shm(&mut tx, &mut receiver, &table, &opts.name, opts.timeout)
            .map_err(AttachError::Register)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(AttachError::Os)?;
        let rx = ShmRx {
            receiver,
            buf: Vec::new(),
            liveness: Liveness::Doorbell(doorbell),
        };
        Ok(Self::assemble(
            Tx::Shm(tx),
            Rx::Shm(rx),
            wake,
            table,
            index,
            None,
            opts,
            path,
        ))
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        match &*lock(&self.tx) {
            Tx::Socket(_) => TransportKind::Socket,
            Tx::Shm(_) | Tx::Closed => TransportKind::SharedMemory,
        }
    }

    /// The server's message table.
    pub fn table(&self) -> &MsgTable {
        &self.table
    }

    /// The index the server gave this client's current registration; requests carry it as
    /// `client_index`. It changes with [`Connection::pivot_to_shm`].
    pub fn client_index(&self) -> u32 {
        self.index.load(Ordering::Acquire)
    }

    /// The socket path (the named segment's path when attached by name).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The longest message accepted from the server.
    pub fn max_message_len(&self) -> u32 {
        self.max_message_len
    }

    /// Keepalive pings answered so far.
    pub fn pings_answered(&self) -> u64 {
        self.pings_answered.load(Ordering::Relaxed)
    }

    /// Buffers one whole message; written by the next [`Connection::flush`] (or at once when
    /// much is buffered). On shared memory every message goes into the segment at once.
    pub fn queue(&self, msg: &[u8]) -> Result<(), SendError> {
        check_len(msg.len())?;
        let mut tx = lock(&self.tx);
        match &mut *tx {
            Tx::Socket(s) => {
                if s.broken {
                    return Err(SendError::Broken);
                }
                s.queue(msg);
                if s.out.len() >= AUTO_FLUSH_BYTES {
                    s.flush()?;
                }
                Ok(())
            }
            Tx::Shm(s) => {
                self.check_open()?;
                s.send(msg)
            }
            Tx::Closed => Err(SendError::ServerGone),
        }
    }

    /// Writes everything buffered (nothing is, on shared memory).
    pub fn flush(&self) -> Result<(), SendError> {
        match &mut *lock(&self.tx) {
            Tx::Socket(s) => s.flush(),
            Tx::Shm(_) => Ok(()),
            Tx::Closed => Err(SendError::ServerGone),
        }
    }

    /// Sends one message now (and anything buffered before it).
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.queue(msg)?;
        self.flush()
    }

    /// Sends a message that sits in `frame` after [`frame::HEADER_LEN`] bytes of room, writing
    /// the header into that room so the message goes out without a copy.
    pub fn send_framed(&self, frame: &mut [u8]) -> Result<(), SendError> {
        let Some(len) = frame.len().checked_sub(frame::HEADER_LEN) else {
            return Err(SendError::BadLength { len: 0 });
        };
        check_len(len)?;
        let mut tx = lock(&self.tx);
        match &mut *tx {
            Tx::Socket(s) => {
                s.flush()?;
                frame[..frame::HEADER_LEN].copy_from_slice(&frame::header(len as u32));
                s.write_all(frame)
            }
            Tx::Shm(s) => {
                self.check_open()?;
                s.send(&frame[frame::HEADER_LEN..])
            }
            Tx::Closed => Err(SendError::ServerGone),
        }
    }

    /// `Err(ServerGone)` once the connection is shut down or the server is known to be gone,
    /// so that nothing is written into a dead server's segment (or its doorbell).
    fn check_open(&self) -> Result<(), SendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SendError::ServerGone);
        }
        Ok(())
    }

    /// Locks the receive half, waiting for another receiver to finish.
    pub fn lock_rx(&self) -> RxGuard<'_> {
        RxGuard {
            conn: self,
            rx: lock(&self.rx),
        }
    }

    /// Locks the receive half if nobody else holds it.
    pub fn try_lock_rx(&self) -> Option<RxGuard<'_>> {
        let rx = match self.rx.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(RxGuard { conn: self, rx })
    }

    /// Makes a receiver waiting in [`RxGuard::recv_with`] return `Ok(None)` now (or the next
    /// one, if nobody waits). On shared memory the receiver notices within one wait slice
    /// (20 ms).
    pub fn interrupt(&self) {
        let _ = self.wake.write(1);
    }

    /// Says goodbye and waits up to `timeout` for the server to confirm (answering pings,
    /// discarding anything else), then shuts the connection down. On shared memory that is
    /// `memclnt_delete`, then, after a pivot, `sockclnt_delete` for the socket registration, as
    /// `vlibsocket::client` does. Returns whether the server confirmed. Call it once nobody
    /// else receives (it takes the receive lock).
    #[doc(alias = "vl_socket_client_disconnect")]
    #[doc(alias = "vl_client_disconnect")]
    pub fn close(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        // Replies to the server's pings go before the goodbye.
        let _ = self.flush_pongs(true);
        let on_shm = matches!(&*lock(&self.tx), Tx::Shm(_));
        let mut confirmed = true;
        if on_shm {
            confirmed = self.delete_shm_registration(deadline);
            if !self.back_to_socket() {
                self.shutdown();
                return confirmed;
            }
        }
        let confirmed = self.delete_socket_registration(deadline) && confirmed;
        self.shutdown();
        confirmed
    }

    /// Waits for the reply with ID `reply_id` until `deadline`; true when it came or the
    /// server closed the connection (a goodbye's answer either way).
    fn await_goodbye(&self, reply_id: u16, deadline: Instant) -> bool {
        let mut rx = self.lock_rx();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match rx.recv_with(Wait::For(left), |m| wire::msg_id(m) == Some(reply_id)) {
                Ok(Some(true)) => return true,
                Ok(Some(false)) | Ok(None) => {}
                Err(RecvError::ServerGone) => return true,
                Err(_) => return false,
            }
        }
    }

    #[doc(alias = "vl_client_api_unmap")]
    fn delete_shm_registration(&self, deadline: Instant) -> bool {
        let (Some(delete), Some(reply)) = (
            self.table.id_of::<memclnt::MemclntDelete>(),
            self.table.id_of::<memclnt::MemclntDeleteReply>(),
        ) else {
            return false;
        };
        // memclnt_delete carries no context: the reply is matched by its ID alone.
        let req = memclnt::MemclntDelete {
            index: self.client_index(),
            ..Default::default()
        };
        let Ok(msg) = wire::to_vec(&req, delete) else {
            return false;
        };
        if self.send(&msg).is_err() {
            return false;
        }
        self.await_goodbye(reply, deadline)
    }

    /// After the shared-memory goodbye: puts a pivoted connection back on its socket (true),
    /// or, attached by name, drops both halves (false), which unmaps the segment.
    fn back_to_socket(&self) -> bool {
        let mut rx = lock(&self.rx);
        let mut tx = lock(&self.tx);
        let old_rx = std::mem::replace(&mut *rx, Rx::Closed);
        let old_tx = std::mem::replace(&mut *tx, Tx::Closed);
        match (old_rx, old_tx) {
            (
                Rx::Shm(ShmRx {
                    liveness: Liveness::Socket(srx),
                    ..
                }),
                Tx::Shm(ShmTx {
                    socket: Some(stx), ..
                }),
            ) => {
                *rx = Rx::Socket(srx);
                *tx = Tx::Socket(stx);
                self.index.store(
                    self.socket_index.unwrap_or_else(|| self.client_index()),
                    Ordering::Release,
                );
                true
            }
            (Rx::Socket(srx), Tx::Socket(stx)) => {
                *rx = Rx::Socket(srx);
                *tx = Tx::Socket(stx);
                true
            }
            _ => false,
        }
    }

    fn delete_socket_registration(&self, deadline: Instant) -> bool {
        let (Some(delete), Some(reply)) = (
            self.table.id_of::<memclnt::SockclntDelete>(),
            self.table.id_of::<memclnt::SockclntDeleteReply>(),
        ) else {
            return false;
        };
        let index = self.client_index();
        let req = memclnt::SockclntDelete {
            client_index: index,
            context: 0x0dea_dbee,
            index,
        };
        let Ok(msg) = wire::to_vec(&req, delete) else {
            return false;
        };
        if self.send(&msg).is_err() {
            return false;
        }
        self.await_goodbye(reply, deadline)
    }

    /// Shuts the connection down: waiting receivers see the server gone (on shared memory
    /// within one wait slice) and sends fail. The server learns that the client left: the
    /// socket's shutdown tells it, and attached by name (no socket) a `memclnt_delete` goes
    /// out, without waiting for room or for the reply, so that the slot is recycled rather
    /// than kept for a silent client whose pid lives. The descriptors close and the segment is
    /// unmapped when the connection drops (which shuts it down too).
    pub fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        match &self.socket {
            Some(s) => {
                let _ = nixsock::shutdown(s.as_raw_fd(), Shutdown::Both);
            }
            None => self.leave_named_segment(),
        }
    }

    /// The best-effort goodbye of [`Connection::shutdown`] on the named segment.
    fn leave_named_segment(&self) {
        let Some(delete) = self.table.id_of::<memclnt::MemclntDelete>() else {
            return;
        };
        let req = memclnt::MemclntDelete {
            index: self.client_index(),
            ..Default::default()
        };
        let Ok(msg) = wire::to_vec(&req, delete) else {
            return;
        };
        // A sender blocked on a full ring holds the lock: then there is no room anyway.
        let Ok(mut tx) = self.tx.try_lock() else {
            return;
        };
        if let Tx::Shm(tx) = &mut *tx {
            tx.timeout = Duration::ZERO;
            let _ = tx.send(&msg);
        }
    }

    /// The ping's context, if `msg` is a keepalive ping to answer.
    fn keepalive_context(&self, msg: &[u8]) -> Option<Option<u32>> {
        let (ping_id, _) = self.keepalive?;
        if wire::msg_id(msg) != Some(ping_id) {
            return None;
        }
        // A malformed ping is dropped unanswered rather than handed to the caller.
        Some(
            memclnt::MemclntKeepalive::decode(msg)
                .ok()
                .map(|p| p.context),
        )
    }

    #[doc(alias = "vl_api_memclnt_keepalive_t_handler")]
    /// Answers a keepalive ping without blocking: a reply that finds the server's queue full
    /// waits, in order, for the next receive to send it (the server may be waiting for this
    /// client to take its messages before it reads again).
    fn answer_keepalive(&self, context: u32) -> Result<(), SendError> {
        if self.keepalive.is_none() {
            return Ok(());
        }
        let mut pongs = lock(&self.pongs);
        pongs.push_back(context);
        self.send_pongs(&mut pongs, false)
    }

    /// Sends the keepalive replies that wait, if any (`block`: each may wait for room up to
    /// the send timeout).
    fn flush_pongs(&self, block: bool) -> Result<(), SendError> {
        if !self.pongs_waiting.load(Ordering::Acquire) {
            return Ok(());
        }
        self.send_pongs(&mut lock(&self.pongs), block)
    }

    fn send_pongs(&self, pongs: &mut VecDeque<u32>, block: bool) -> Result<(), SendError> {
        let Some((_, reply_id)) = self.keepalive else {
            pongs.clear();
            return Ok(());
        };
        let mut result = Ok(());
        while let Some(&context) = pongs.front() {
            let reply = memclnt::MemclntKeepaliveReply { context, retval: 0 };
            let mut msg = [0u8; 10];
            msg[..2].copy_from_slice(&reply_id.to_be_bytes());
            msg[2..6].copy_from_slice(&reply.context.to_be_bytes());
            msg[6..10].copy_from_slice(&reply.retval.to_be_bytes());
            debug_assert_eq!(reply.encoded_len(), msg.len());
            let sent = if block {
                self.send(&msg).map(|()| true)
            } else {
                self.try_send(&msg)
            };
            match sent {
                Ok(true) => {
                    pongs.pop_front();
                    self.pings_answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.pongs_waiting
            .store(!pongs.is_empty(), Ordering::Release);
        result
    }

    /// Sends `msg` if there is room now: false (nothing sent) when the shared-memory rings or
    /// queue are full. On the socket, as [`Connection::send`].
    fn try_send(&self, msg: &[u8]) -> Result<bool, SendError> {
        check_len(msg.len())?;
        let mut tx = lock(&self.tx);
        if let Tx::Shm(s) = &mut *tx {
            self.check_open()?;
            return match s.send_within(msg, Duration::ZERO) {
                Ok(()) => Ok(true),
                Err(SendError::Timeout) => Ok(false),
                Err(e) => Err(e),
            };
        }
        drop(tx);
        self.send(msg).map(|()| true)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads `sock_init_shm_reply` through the frame reader, and nothing after it: the server sends
/// the segment's fds once the reply has left its socket, and a plain read of the fd message
/// would lose them. Messages before the reply are kept for the receivers.
fn read_pivot_reply(
    srx: &mut SocketRx,
    reply_id: u16,
    deadline: Instant,
) -> Result<memclnt::SockInitShmReply, PivotError> {
    let mut early = VecDeque::new();
    let reply = loop {
        let m = match srx.next(Some(deadline), None) {
            Ok(Some(m)) => m.to_vec(),
            Ok(None) => {
                break Err(PivotError::Timeout {
                    waiting_for: "sock_init_shm_reply",
                });
            }
            Err(e) => break Err(PivotError::Recv(e)),
        };
        let context = m
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        if wire::msg_id(&m) == Some(reply_id) && context == Some(PIVOT_CONTEXT) {
            break memclnt::SockInitShmReply::decode(&m)
                .map_err(|e| PivotError::Handshake(format!("sock_init_shm_reply: {e}")));
        }
        early.push_back(m);
    };
    // Whatever happened, what arrived first is received first.
    early.extend(srx.held.drain(..));
    srx.held = early;
    reply
}

/// Receives the segment's memfd and doorbell: the message the server sends with them (its
/// bytes are `fdmsg`) is read with a buffer of exactly its length, so nothing after it is
/// consumed. Bytes that arrive without fds first are ordinary frames and go to the reader.
fn receive_segment_fds(
    srx: &mut SocketRx,
    deadline: Instant,
) -> Result<(OwnedFd, OwnedFd), PivotError> {
    let timeout = PivotError::Timeout {
        waiting_for: "the segment's fds",
    };
    let mut buf = [0u8; FD_MESSAGE_LEN];
    loop {
        let readable = {
            let mut fds = [PollFd::new(srx.fd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, poll_timeout(Some(deadline))) {
                Ok(_) | Err(Errno::EINTR) => fds[0].any().unwrap_or(false),
                Err(e) => return Err(PivotError::Recv(RecvError::Os(e))),
            }
        };
        if !readable {
            if Instant::now() >= deadline {
                return Err(timeout);
            }
            continue;
        }
        match vppinfra::socket::recv_with_fds(&*srx.fd, &mut buf, 2) {
            Ok((0, _)) => return Err(PivotError::Recv(RecvError::ServerGone)),
            Ok((n, fds)) if fds.is_empty() => srx.reader.push(&buf[..n]),
            Ok((n, fds)) => {
                let mut fds = fds.into_iter();
                return match (fds.next(), fds.next(), &buf[..n]) {
                    (Some(memfd), Some(doorbell), b"fdmsg") => Ok((memfd, doorbell)),
                    _ => Err(PivotError::Handshake(
                        "expected a memfd and a doorbell with the fd message".into(),
                    )),
                };
            }
            Err(FdRecvError::WouldBlock) => {}
            Err(e) => return Err(PivotError::Handshake(format!("fd message: {e}"))),
        }
    }
}

fn check_len(len: usize) -> Result<(), SendError> {
    if len < frame::MIN_MESSAGE_LEN || u32::try_from(len).is_err() {
        return Err(SendError::BadLength { len });
    }
    Ok(())
}

/// Locks `m`, taking over a lock whose holder panicked: the protected state is plain buffers
/// that stay consistent at every await-free step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The receive half, locked.
#[derive(Debug)]
pub struct RxGuard<'a> {
    conn: &'a Connection,
    rx: MutexGuard<'a, Rx>,
}

impl RxGuard<'_> {
    /// Waits for the next message that is not a keepalive ping and hands it to `f` (the slice
    /// is only valid inside `f`). Pings met on the way are answered. `Ok(None)`: the wait ended
    /// (timeout or [`Connection::interrupt`]) without a message.
    pub fn recv_with<R>(
        &mut self,
        wait: Wait,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, RecvError> {
        let deadline = wait.deadline();
        let conn = self.conn;
        loop {
            conn.flush_pongs(false).map_err(RecvError::Keepalive)?;
            // Replies still waiting are retried every millisecond, messages or not.
            let retry = conn
                .pongs_waiting
                .load(Ordering::Acquire)
                .then(|| Instant::now() + Duration::from_millis(1));
            let slice = match (deadline, retry) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            let next = self.rx.next(slice, &conn.wake, &conn.closed);
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) if slice != deadline && deadline.is_none_or(|d| Instant::now() < d) => {
                    continue;
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    if e == RecvError::ServerGone {
                        conn.closed.store(true, Ordering::Release);
                    }
                    return Err(e);
                }
            };
            match conn.keepalive_context(msg) {
                None => return Ok(Some(f(msg))),
                Some(None) => continue,
                Some(Some(context)) => conn
                    .answer_keepalive(context)
                    .map_err(RecvError::Keepalive)?,
            }
        }
    }

    /// The connection this guard belongs to.
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeServer, FakeShmServer};

    #[test]
    fn keepalive_pings_are_answered_and_never_surface() {
        let server = FakeServer::start("conn_keepalive");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("ka")).unwrap();
        assert_eq!(conn.client_index(), server.client_index());
        let contexts: Vec<u32> = (0..50u32).map(|i| 0x1000 + i).collect();
        // Pings first, then one ordinary message, then more pings.
        for &c in &contexts[..25] {
            server.send_keepalive(c);
        }
        server.send_raw(&[0, 99, 1, 2, 3]);
        for &c in &contexts[25..] {
            server.send_keepalive(c);
        }
        let mut rx = conn.lock_rx();
        let got = rx
            .recv_with(Wait::For(Duration::from_secs(5)), |m| m.to_vec())
            .unwrap();
        assert_eq!(got.as_deref(), Some(&[0u8, 99, 1, 2, 3][..]));
        // Nothing else surfaces, yet the receive path answers the remaining pings.
        let more = rx
            .recv_with(Wait::For(Duration::from_millis(300)), |m| m.to_vec())
            .unwrap();
        assert_eq!(more, None);
        drop(rx);
        assert_eq!(conn.pings_answered(), 50);
        assert_eq!(
            server.wait_keepalive_replies(50, Duration::from_secs(5)),
            contexts
        );
    }

    #[test]
    fn interrupt_wakes_a_waiting_receiver() {
        let server = FakeServer::start("conn_interrupt");
        let conn = Arc::new(Connection::connect(server.path(), &ConnectOptions::new("i")).unwrap());
        let c2 = conn.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let r = c2.lock_rx().recv_with(Wait::Forever, |m| m.to_vec());
            (r, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        conn.interrupt();
        let (r, waited) = t.join().unwrap();
        assert_eq!(r, Ok(None));
        assert!(waited < Duration::from_secs(5));
    }

    #[test]
    fn server_gone_and_bad_frames_are_errors() {
        let server = FakeServer::start("conn_gone");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("g")).unwrap();
        server.send_raw_frame(&frame::header(0));
        let r = conn
            .lock_rx()
            .recv_with(Wait::For(Duration::from_secs(5)), |_| ());
        assert_eq!(r, Err(RecvError::Framing(FrameError::TooShort { len: 0 })));

        let server = FakeServer::start("conn_gone2");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("g")).unwrap();
        server.close_client();
        let r = conn
            .lock_rx()
            .recv_with(Wait::For(Duration::from_secs(5)), |_| ());
        assert_eq!(r, Err(RecvError::ServerGone));
    }

    #[test]
    fn bad_names_and_missing_servers_fail_to_connect() {
        let long = "x".repeat(64);
        let dir = vppinfra::testing::TempDir::new("conn_noserver");
        let e =
            Connection::connect(dir.join("none.sock"), &ConnectOptions::new(&long)).unwrap_err();
        assert!(matches!(e, ConnectError::InvalidName(_)), "{e}");
        let e = Connection::connect(dir.join("none.sock"), &ConnectOptions::new("n")).unwrap_err();
        assert!(matches!(e, ConnectError::Socket { .. }), "{e}");
    }

    fn ping_bytes(conn: &Connection, context: u32) -> Vec<u8> {
        let req = memclnt::ControlPing {
            client_index: conn.client_index(),
            context,
        };
        wire::to_vec(&req, conn.table().id_of::<memclnt::ControlPing>().unwrap()).unwrap()
    }

    fn attach(server: &FakeShmServer, name: &str) -> Connection {
        let c = Connection::attach_shm(Some(server.prefix()), &ConnectOptions::new(name)).unwrap();
        assert!(server.wait_registrations(1, Duration::from_secs(5)));
        c
    }

    #[test]
    fn attached_by_name_requests_work_and_a_storm_of_pings_never_surfaces() {
        let server = FakeShmServer::start("conn_attach");
        let conn = attach(&server, "by-name");
        assert_eq!(conn.transport(), TransportKind::SharedMemory);
        assert_eq!(conn.client_index() & 0x8000_0000, 0, "no socket bit");
        assert!(conn.table().id_of::<memclnt::ControlPing>().is_some());
        // A request and its reply.
        conn.send(&ping_bytes(&conn, 77)).unwrap();
        let reply = conn
            .lock_rx()
            .recv_with(Wait::For(Duration::from_secs(5)), |m| {
                memclnt::ControlPingReply::decode(m).unwrap()
            })
            .unwrap()
            .unwrap();
        assert_eq!(
            (reply.context, reply.client_index),
            (77, conn.client_index())
        );
        // Pings around one ordinary message: only the message surfaces; every ping is
        // answered, in order, with its context.
        let contexts: Vec<u32> = (0..500u32).map(|i| 0x2000 + i).collect();
        for &c in &contexts[..250] {
            server.send_keepalive(c);
        }
        server.send_raw(&[0, 99, 1, 2, 3]);
        for &c in &contexts[250..] {
            server.send_keepalive(c);
        }
        let mut rx = conn.lock_rx();
        let got = rx
            .recv_with(Wait::For(Duration::from_secs(5)), |m| m.to_vec())
            .unwrap();
        assert_eq!(got.as_deref(), Some(&[0u8, 99, 1, 2, 3][..]));
        let more = rx
            .recv_with(Wait::For(Duration::from_millis(300)), |m| m.to_vec())
            .unwrap();
        assert_eq!(more, None);
        drop(rx);
        assert_eq!(conn.pings_answered(), 500);
        assert_eq!(
            server.wait_keepalive_replies(500, Duration::from_secs(5)),
            contexts
        );
        // Goodbye is memclnt_delete, confirmed.
        assert!(conn.close(Duration::from_secs(5)));
        assert!(server.saw_delete());
        assert_eq!(conn.send(&ping_bytes(&conn, 1)), Err(SendError::ServerGone));
    }

    #[test]
    fn shut_down_or_dropped_without_close_an_attached_connection_still_says_goodbye() {
        let server = FakeShmServer::start("conn_drop");
        let conn = attach(&server, "dropped");
        drop(conn);
        let deleted = vppinfra::testing::wait_until(Duration::from_secs(5), || server.saw_delete());
        assert!(deleted, "no memclnt_delete from a dropped connection");
        let server = FakeShmServer::start("conn_shutdown");
        let conn = attach(&server, "shut");
        conn.shutdown();
        let deleted = vppinfra::testing::wait_until(Duration::from_secs(5), || server.saw_delete());
        assert!(deleted, "no memclnt_delete from a shut down connection");
        assert_eq!(conn.send(&ping_bytes(&conn, 1)), Err(SendError::ServerGone));
    }

    #[test]
    fn a_dead_server_on_the_named_segment_is_seen_and_sends_stop() {
        let mut server = FakeShmServer::start("conn_dead");
        let conn = attach(&server, "orphan");
        server.kill();
        let started = Instant::now();
        let r = conn
            .lock_rx()
            .recv_with(Wait::For(Duration::from_secs(10)), |m| m.to_vec());
        assert_eq!(r, Err(RecvError::ServerGone));
        eprintln!("named server death seen after {:?}", started.elapsed());
        assert_eq!(conn.send(&ping_bytes(&conn, 1)), Err(SendError::ServerGone));
        // The goodbye cannot be confirmed, and closing does not hang.
        assert!(!conn.close(Duration::from_secs(1)));
    }

    #[test]
    fn interrupt_wakes_a_receiver_waiting_on_shared_memory() {
        let server = FakeShmServer::start("conn_shm_interrupt");
        let conn = Arc::new(attach(&server, "waiter"));
        let c2 = conn.clone();
        let t = std::thread::spawn(move || c2.lock_rx().recv_with(Wait::Forever, |m| m.to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        conn.interrupt();
        assert_eq!(t.join().unwrap(), Ok(None));
        // Shut down, a waiting receiver sees the connection gone.
        let c3 = conn.clone();
        let t = std::thread::spawn(move || c3.lock_rx().recv_with(Wait::Forever, |m| m.to_vec()));
        std::thread::sleep(Duration::from_millis(50));
        conn.shutdown();
        assert_eq!(t.join().unwrap(), Err(RecvError::ServerGone));
    }

    #[test]
    fn attach_without_a_server_fails() {
        let prefix = format!("vlc{}-nobody", std::process::id());
        let e = Connection::attach_shm(Some(&prefix), &ConnectOptions::new("n")).unwrap_err();
        assert!(matches!(e, AttachError::Shm(_)), "{e}");
    }

    #[test]
    fn a_pivot_that_fails_leaves_the_socket_connection_working() {
        // The fake socket server never answers sock_init_shm.
        let server = FakeServer::start("conn_pivot_fail");
        let mut opts = ConnectOptions::new("p");
        opts.timeout = Duration::from_millis(300);
        let conn = Connection::connect(server.path(), &opts).unwrap();
        assert!(matches!(
            conn.pivot_to_shm(1 << 40),
            Err(PivotError::BadSize(_))
        ));
        // A message that arrives while the pivot waits for its reply is kept.
        server.send_raw(&[0, 98, 7]);
        let e = conn.pivot_to_shm(1 << 20).unwrap_err();
        assert!(matches!(e, PivotError::Timeout { .. }), "{e}");
        assert_eq!(conn.transport(), TransportKind::Socket);
        let mut rx = conn.lock_rx();
        let kept = rx
            .recv_with(Wait::For(Duration::from_secs(5)), |m| m.to_vec())
            .unwrap();
        assert_eq!(kept.as_deref(), Some(&[0u8, 98, 7][..]));
        drop(rx);
        conn.send(&ping_bytes(&conn, 5)).unwrap();
        let ctx = conn
            .lock_rx()
            .recv_with(Wait::For(Duration::from_secs(5)), |m| {
                memclnt::ControlPingReply::decode(m).unwrap().context
            })
            .unwrap();
        assert_eq!(ctx, Some(5));
    }

    #[test]
    fn queued_messages_go_out_in_order_on_flush() {
        let server = FakeServer::start("conn_queue");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("q")).unwrap();
        conn.queue(&[0, 50, 1]).unwrap();
        conn.queue(&[0, 50, 2]).unwrap();
        let mut framed = vec![0u8; frame::HEADER_LEN];
        framed.extend_from_slice(&[0, 50, 3]);
        conn.send_framed(&mut framed).unwrap();
        assert_eq!(conn.send(&[1]), Err(SendError::BadLength { len: 1 }));
        let got = server.wait_messages_with_id(50, 3, Duration::from_secs(5));
        assert_eq!(got, vec![vec![0, 50, 1], vec![0, 50, 2], vec![0, 50, 3]]);
    }

    #[test]
    fn close_sends_sockclnt_delete() {
        let server = FakeServer::start("conn_close");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("c")).unwrap();
        assert!(conn.close(Duration::from_secs(5)));
        assert!(server.saw_delete());
    }
}
