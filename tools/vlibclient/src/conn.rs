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
//! **Transports.** Every byte goes through the private `Tx` and `Rx` enums, which today have
//! one variant each, `Socket`. The shared-memory transport plugs in as a second variant of each;
//! [`Connection::pivot_to_shm`] and [`Connection::attach_shm`] are its entry points and return
//! [`PivotError::NotAvailable`] / [`AttachError::NotAvailable`] until then.
//!
//! ```no_run
//! use std::time::Duration;
//! use vlibclient::conn::{ConnectOptions, Connection, Wait};
//!
//! let conn = Connection::connect("/run/vpp/api.sock", &ConnectOptions::new("example"))?;
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

use std::collections::HashMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{self as nixsock, MsgFlags, Shutdown};
use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vlibsocket::client::{SOCKCLNT_CREATE_ID, SOCKCLNT_CREATE_REPLY_ID};
use vlibsocket::frame::{self, FrameError, FrameReader, ReadOutcome};
use vppinfra::socket::SocketConnectError;
use vppinfra::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

/// The `context` of `sockclnt_create`, as VPP's clients send it.
const CREATE_CONTEXT: u32 = 0xfeed_face;
/// Buffered outgoing bytes past which [`Connection::queue`] writes without waiting for a flush.
const AUTO_FLUSH_BYTES: usize = 256 << 10;

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
}

impl ConnectOptions {
    /// Defaults: a 5 s timeout (as vpp_papi) and 64 MiB messages.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            timeout: Duration::from_secs(5),
            max_message_len: 64 << 20,
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
    /// The server closed the connection.
    ServerGone,
    /// The server did not take the bytes within the timeout; nothing was written.
    Timeout,
    /// An earlier send was cut mid-frame, so the byte stream is unusable.
    Broken,
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

/// Why receiving failed. Every variant but [`RecvError::Keepalive`] is final for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The server closed the connection.
    ServerGone,
    /// The server broke the framing rules.
    Framing(FrameError),
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

/// The message shown for every shared-memory entry point until the transport exists.
pub const SHM_NOT_AVAILABLE: &str =
    "the shared-memory transport is not available yet (the vlibmemory client is not written)";

/// Why [`Connection::pivot_to_shm`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PivotError {
    /// This build has no shared-memory transport; the connection is unchanged.
    NotAvailable,
}

impl fmt::Display for PivotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAvailable => f.write_str(SHM_NOT_AVAILABLE),
        }
    }
}

impl std::error::Error for PivotError {}

/// Why [`Connection::attach_shm`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// This build has no shared-memory transport.
    NotAvailable,
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAvailable => f.write_str(SHM_NOT_AVAILABLE),
        }
    }
}

impl std::error::Error for AttachError {}

/// The send half of a transport.
#[derive(Debug)]
enum Tx {
    Socket(SocketTx),
    // Integration point: `Shm(vlibmemory client's send side)`, allocating from the segment's
    // rings and enqueueing to the server's input queue.
}

/// The receive half of a transport.
#[derive(Debug)]
enum Rx {
    Socket(SocketRx),
    // Integration point: `Shm(vlibmemory client's receive side)`, waiting on the client's input
    // queue with a deadline and checking `Connection::wake` between waits.
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
}

#[derive(Debug)]
struct SocketRx {
    fd: Arc<OwnedFd>,
    reader: FrameReader,
}

impl Rx {
    /// The next whole message, waiting until `deadline` (`None`: no limit). `Ok(None)` when the
    /// deadline passed or `wake` was signalled.
    fn next(
        &mut self,
        deadline: Option<Instant>,
        wake: &EventFd,
    ) -> Result<Option<&[u8]>, RecvError> {
        match self {
            Rx::Socket(s) => loop {
                if s.reader.frame_ready() {
                    return s.reader.next_frame().map_err(RecvError::Framing);
                }
                let timeout = match deadline {
                    None => PollTimeout::NONE,
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        // Round up so that a wait never ends just short of its deadline.
                        let ms = left.as_nanos().div_ceil(1_000_000);
                        PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                            .unwrap_or(PollTimeout::MAX)
                    }
                };
                let mut fds = [
                    PollFd::new(s.fd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(wake.as_fd(), PollFlags::POLLIN),
                ];
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(RecvError::Os(e)),
                }
                let sock_ready = fds[0].any().unwrap_or(false);
                let woken = fds[1].any().unwrap_or(false);
                if woken {
                    // Reset the eventfd; a concurrent interrupt re-arms it, which at worst
                    // makes a later wait return early once.
                    let _ = wake.read();
                    return Ok(None);
                }
                if !sock_ready {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                    continue;
                }
                match s.reader.read_from(&*s.fd) {
                    Ok(ReadOutcome::Data(_)) | Ok(ReadOutcome::WouldBlock) => {}
                    Ok(ReadOutcome::Eof) => return Err(RecvError::ServerGone),
                    Err(Errno::ECONNRESET) => return Err(RecvError::ServerGone),
                    Err(e) => return Err(RecvError::Os(e)),
                }
            },
        }
    }
}

/// One registered connection to the API server.
#[derive(Debug)]
pub struct Connection {
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
    /// Wakes a receiver waiting in [`Rx::next`].
    wake: EventFd,
    table: MsgTable,
    index: u32,
    /// IDs of `memclnt_keepalive` and its reply, when the server's table has them.
    keepalive: Option<(u16, u16)>,
    pings_answered: AtomicU64,
    /// The socket, for `shutdown`.
    socket: Arc<OwnedFd>,
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
        let mut rx = Rx::Socket(SocketRx {
            fd: fd.clone(),
            reader: FrameReader::new(opts.max_message_len),
        });
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(ConnectError::Os)?;
        tx.out.extend_from_slice(&frame::header(msg.len() as u32));
        tx.out.extend_from_slice(&msg);
        tx.flush().map_err(|e| match e {
            SendError::Timeout => ConnectError::Timeout,
            SendError::Os(e) => ConnectError::Os(e),
            _ => ConnectError::ServerGone,
        })?;
        let deadline = Instant::now() + opts.timeout;
        let reply = match rx.next(Some(deadline), &wake) {
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
        let mut table = MsgTable::default();
        for e in reply.message_table {
            table.insert(e.name, e.index);
        }
        let keepalive = table
            .id_of::<memclnt::MemclntKeepalive>()
            .zip(table.id_of::<memclnt::MemclntKeepaliveReply>());
        Ok(Self {
            tx: Mutex::new(Tx::Socket(tx)),
            rx: Mutex::new(rx),
            wake,
            table,
            index: reply.index,
            keepalive,
            pings_answered: AtomicU64::new(0),
            socket: fd,
            max_message_len: opts.max_message_len,
            path,
        })
    }

    /// Pivots this connection from the socket to a private shared-memory segment.
    ///
    /// Not available yet: returns [`PivotError::NotAvailable`] and leaves the connection as it
    /// was (nothing is sent to the server).
    #[doc(alias = "vl_socket_client_init_shm")]
    pub fn pivot_to_shm(&self, segment_size: u64) -> Result<(), PivotError> {
        // Integration point for the shared-memory transport: lock `rx` then `tx` (the lock
        // order used everywhere), run vlibsocket's pivot on this socket (sock_init_shm, receive
        // the memfd, memclnt_create in the segment) and replace both halves with their `Shm`
        // variants. The table and client index may change; update them with the halves.
        let _ = segment_size;
        Err(PivotError::NotAvailable)
    }

    /// Connects to the server's named shared-memory API segment, without a socket:
    /// `/dev/shm/vpe-api`, or `/dev/shm/<prefix>-vpe-api` (the server's `--shm-prefix`).
    ///
    /// Not available yet: returns [`AttachError::NotAvailable`].
    #[doc(alias = "vl_client_connect_to_vlib")]
    pub fn attach_shm(prefix: Option<&str>, opts: &ConnectOptions) -> Result<Self, AttachError> {
        // Integration point: attach by name with the vlibmemory client and build a
        // `Connection` whose halves are the `Shm` variants.
        let _ = (prefix, opts);
        Err(AttachError::NotAvailable)
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        match &*lock(&self.tx) {
            Tx::Socket(_) => TransportKind::Socket,
        }
    }

    /// The server's message table.
    pub fn table(&self) -> &MsgTable {
        &self.table
    }

    /// The index the server gave this client; requests carry it as `client_index`.
    pub fn client_index(&self) -> u32 {
        self.index
    }

    /// The socket path.
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
    /// much is buffered).
    pub fn queue(&self, msg: &[u8]) -> Result<(), SendError> {
        check_len(msg.len())?;
        let mut tx = lock(&self.tx);
        match &mut *tx {
            Tx::Socket(s) => {
                if s.broken {
                    return Err(SendError::Broken);
                }
                s.out.extend_from_slice(&frame::header(msg.len() as u32));
                s.out.extend_from_slice(msg);
                if s.out.len() >= AUTO_FLUSH_BYTES {
                    s.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Writes everything buffered.
    pub fn flush(&self) -> Result<(), SendError> {
        match &mut *lock(&self.tx) {
            Tx::Socket(s) => s.flush(),
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
        }
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
    /// one, if nobody waits).
    pub fn interrupt(&self) {
        let _ = self.wake.write(1);
    }

    /// Says goodbye with `sockclnt_delete`, waits up to `timeout` for the reply (answering
    /// pings, discarding anything else), then shuts the socket down. Returns whether the
    /// server confirmed. Call it once nobody else receives (it takes the receive lock).
    #[doc(alias = "vl_socket_client_disconnect")]
    pub fn close(&self, timeout: Duration) -> bool {
        let confirmed = self.say_goodbye(timeout);
        self.shutdown();
        confirmed
    }

    fn say_goodbye(&self, timeout: Duration) -> bool {
        let (Some(delete), Some(reply)) = (
            self.table.id_of::<memclnt::SockclntDelete>(),
            self.table.id_of::<memclnt::SockclntDeleteReply>(),
        ) else {
            return false;
        };
        let context = 0x0dea_dbee;
        let req = memclnt::SockclntDelete {
            client_index: self.index,
            context,
            index: self.index,
        };
        let Ok(msg) = wire::to_vec(&req, delete) else {
            return false;
        };
        if self.send(&msg).is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let mut rx = self.lock_rx();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match rx.recv_with(Wait::For(left), |m| wire::msg_id(m) == Some(reply)) {
                Ok(Some(true)) => return true,
                Ok(Some(false)) | Ok(None) => {}
                Err(RecvError::ServerGone) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Shuts the socket down in both directions: waiting receivers see the server gone and
    /// sends fail. The descriptors close when the connection drops.
    pub fn shutdown(&self) {
        let _ = nixsock::shutdown(self.socket.as_raw_fd(), Shutdown::Both);
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
    fn answer_keepalive(&self, context: u32) -> Result<(), SendError> {
        let Some((_, reply_id)) = self.keepalive else {
            return Ok(());
        };
        let reply = memclnt::MemclntKeepaliveReply { context, retval: 0 };
        let mut msg = [0u8; 10];
        msg[..2].copy_from_slice(&reply_id.to_be_bytes());
        msg[2..6].copy_from_slice(&reply.context.to_be_bytes());
        msg[6..10].copy_from_slice(&reply.retval.to_be_bytes());
        debug_assert_eq!(reply.encoded_len(), msg.len());
        self.send(&msg)?;
        self.pings_answered.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
        loop {
            let Some(msg) = self.rx.next(deadline, &self.conn.wake)? else {
                return Ok(None);
            };
            match self.conn.keepalive_context(msg) {
                None => return Ok(Some(f(msg))),
                Some(None) => continue,
                Some(Some(context)) => self
                    .conn
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
    use crate::testing::FakeServer;

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

    #[test]
    fn shm_entry_points_say_not_available() {
        let server = FakeServer::start("conn_shm");
        let conn = Connection::connect(server.path(), &ConnectOptions::new("s")).unwrap();
        assert_eq!(conn.pivot_to_shm(64 << 20), Err(PivotError::NotAvailable));
        assert_eq!(conn.transport(), TransportKind::Socket);
        assert!(matches!(
            Connection::attach_shm(None, &ConnectOptions::new("s")),
            Err(AttachError::NotAvailable)
        ));
        assert!(
            PivotError::NotAvailable
                .to_string()
                .contains("not available")
        );
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
