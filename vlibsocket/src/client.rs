//! The Rust socket client: connect, look up message IDs, request/reply, dumps, events.
//!
//! [`SocketClient`] speaks exactly what `vpp_papi` speaks: `sockclnt_create` (id 15) first, the
//! message table from its reply, then requests carrying `client_index` and a fresh `context`,
//! replies matched by `context`. A dump is the request followed by a `control_ping` with the same
//! context; the `control_ping_reply` ends it. Messages nobody waits for are events: they queue up
//! for [`SocketClient::next_event`]. Keepalive pings are answered inside the receive path and
//! never surface.
//!
//! Several requests may be in flight: [`SocketClient::send`] queues without waiting and returns
//! the context; [`SocketClient::flush`] writes; [`SocketClient::wait_reply`] collects a reply by
//! context, keeping others that arrive first.
//!
//! ```no_run
//! use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
//! let mut c = vlibsocket::client::SocketClient::connect("/run/vpp/api.sock", "example")?;
//! let reply: ControlPingReply = c.request(&ControlPing::default())?;
//! println!("server pid {}", reply.vpe_pid);
//! c.disconnect()?;
//! # Ok::<(), vlibsocket::client::ClientError>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use svm::notify::WaitPolicy;
use vlibapi::msgs::{memclnt, memfd};
use vlibapi::wire::{self, Message};
use vlibmemory::client::{ShmConnectError, ShmLink};
use vlibmemory::config::ChannelConfig;
use vppinfra::socket::{self, SocketConnectError};

use crate::frame::{self, FrameError, FrameReader, ReadOutcome};

/// A multiply-rotate hasher for the client's small, trusted keys (contexts, `name_crc`
/// strings): SipHash's protection against crafted keys buys nothing here and costs more than the
/// rest of a shared-memory round trip.
#[derive(Debug, Clone, Copy, Default)]
struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_ne_bytes(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Message ID of `sockclnt_create`, fixed by VPP (clients hard-code it).
pub const SOCKCLNT_CREATE_ID: u16 = 15;
/// Message ID of `sockclnt_create_reply`.
pub const SOCKCLNT_CREATE_REPLY_ID: u16 = 16;

/// Why a client operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached (no server, refused, no permission).
    Connect {
        /// The path tried.
        path: PathBuf,
        /// Why.
        error: SocketConnectError,
    },
    /// The server closed the connection.
    ServerGone,
    /// No reply within the timeout.
    Timeout {
        /// What was awaited.
        waiting_for: String,
    },
    /// The server's table has no message with this name and CRC (the server's API differs).
    UnknownMessage(String),
    /// The server answered with a non-zero `retval`.
    Retval {
        /// The reply's name.
        message: &'static str,
        /// Its retval.
        retval: i32,
    },
    /// A reply could not be decoded.
    Decode(wire::DecodeError),
    /// A request could not be encoded.
    Encode(wire::EncodeError),
    /// The server broke the framing rules.
    Framing(FrameError),
    /// The server's first answer was not `sockclnt_create_reply`, or said no.
    Handshake(String),
    /// A system call failed.
    Os(Errno),
    /// The shared-memory channel could not be set up.
    Shm(ShmConnectError),
    /// The shared-memory channel failed (the server scribbled on it, or it is full for longer
    /// than the timeout).
    ShmIo(String),
    /// The operation needs the socket, and this client attached by name.
    NoSocket,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { path, error } => {
                write!(f, "cannot connect to {}: {error}", path.display())
            }
            Self::ServerGone => f.write_str("the server closed the connection"),
            Self::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Self::UnknownMessage(m) => write!(f, "the server does not know message {m}"),
            Self::Retval { message, retval } => write!(f, "{message} returned retval {retval}"),
            Self::Decode(e) => write!(f, "bad reply: {e}"),
            Self::Encode(e) => write!(f, "cannot encode request: {e}"),
            Self::Framing(e) => write!(f, "bad frame from server: {e}"),
            Self::Handshake(m) => write!(f, "connection handshake failed: {m}"),
            Self::Os(e) => write!(f, "socket error: {e}"),
            Self::Shm(e) => write!(f, "shared memory: {e}"),
            Self::ShmIo(e) => write!(f, "shared-memory channel: {e}"),
            Self::NoSocket => f.write_str("this client has no socket (it attached by name)"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { error, .. } => Some(error),
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Framing(e) => Some(e),
            Self::Os(e) => Some(e),
            Self::Shm(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for ClientError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::EPIPE | Errno::ECONNRESET => Self::ServerGone,
            e => Self::Os(e),
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The name the server shows for this client.
    pub name: String,
    /// How long to wait for any one reply.
    pub timeout: Duration,
    /// Longest message accepted from the server.
    pub max_message_len: u32,
    /// How a receive waits on shared memory: poll, or spin then sleep.
    pub shm_wait: WaitPolicy,
}

impl ClientOptions {
    /// Defaults: 5 s timeout (as vpp_papi), 64 MiB messages.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            timeout: Duration::from_secs(5),
            max_message_len: 64 << 20,
            shm_wait: WaitPolicy::default(),
        }
    }
}

/// A message that arrived without anyone waiting for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its ID.
    pub id: u16,
    /// Its `name_crc`, if the table has it.
    pub name_crc: Option<String>,
    /// The whole message.
    pub bytes: Vec<u8>,
}

/// How messages travel.
#[derive(Debug)]
enum Link {
    /// Frames on the socket.
    Socket,
    /// A shared-memory channel (the socket, if any, stays open as the liveness channel).
    Shm(Box<ShmLink>),
}

/// Which transport a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The socket.
    Socket,
    /// Shared memory, reached through the socket (pivot).
    SocketShm,
    /// Shared memory, attached by name.
    NamedShm,
}

/// A synchronous connection to the API server, over the socket or (after
/// [`SocketClient::pivot`], or from [`SocketClient::attach_by_name`]) over shared memory.
#[derive(Debug)]
pub struct SocketClient {
    fd: Option<OwnedFd>,
    link: Link,
    name: String,
    shm_wait: WaitPolicy,
    reader: FrameReader,
    out: Vec<u8>,
    scratch: Vec<u8>,
    ids: HashMap<String, u16>,
    /// `id_of` answers for message types, by their static `name_crc`.
    type_ids: std::cell::RefCell<FastMap<&'static str, u16>>,
    /// Per message ID: a reply or a dump's details (`*_reply`, `*_details`).
    reply_ids: Vec<bool>,
    /// Reused for every received message.
    rx_buf: Vec<u8>,
    /// A pivot request is out: the socket is read a frame at a time, never into the fds that
    /// follow the reply.
    pivoting: bool,
    names: Vec<Option<String>>,
    index: u32,
    next_context: u32,
    timeout: Duration,
    /// Replies that arrived for a context someone may still wait for.
    parked: FastMap<u32, VecDeque<Vec<u8>>>,
    /// Contexts sent and not yet completed.
    in_flight: FastMap<u32, ()>,
    events: VecDeque<Event>,
    ping_id: Option<u16>,
    ping_reply_id: Option<u16>,
    keepalive_id: Option<u16>,
    keepalive_reply_id: Option<u16>,
    pings_answered: u64,
    path: PathBuf,
    /// A shared-memory send failure from `send_raw`, reported by the next flush.
    pending_error: Option<String>,
    /// The socket registration's index, once the client moved to shared memory.
    socket_index: Option<u32>,
}

/// A private segment's fds, as the server sends them after a pivot reply.
#[derive(Debug)]
pub struct SegmentFds {
    /// The segment.
    pub memfd: OwnedFd,
    /// Its doorbell (an eventfd the client rings for the server).
    pub doorbell: OwnedFd,
}

impl SocketClient {
    /// A client on `link` (and the socket `fd`, if any), nothing registered yet.
    fn new(fd: Option<OwnedFd>, link: Link, path: PathBuf, opts: &ClientOptions) -> Self {
        Self {
            fd,
            link,
            name: opts.name.clone(),
            shm_wait: opts.shm_wait,
            reader: FrameReader::new(opts.max_message_len),
            out: Vec::with_capacity(4096),
            scratch: Vec::with_capacity(256),
            ids: HashMap::new(),
            type_ids: std::cell::RefCell::default(),
            reply_ids: Vec::new(),
            rx_buf: Vec::with_capacity(256),
            pivoting: false,
            names: Vec::new(),
            index: 0,
            next_context: 1,
            timeout: opts.timeout,
            parked: FastMap::default(),
            in_flight: FastMap::default(),
            events: VecDeque::new(),
            ping_id: None,
            ping_reply_id: None,
            keepalive_id: None,
            keepalive_reply_id: None,
            pings_answered: 0,
            path,
            pending_error: None,
            socket_index: None,
        }
    }

    /// Connects with default options.
    pub fn connect(path: impl AsRef<Path>, name: &str) -> Result<Self, ClientError> {
        Self::connect_with(path, &ClientOptions::new(name))
    }

    /// Connects, registers with `sockclnt_create` and loads the message table.
    #[doc(alias = "vl_socket_client_connect")]
    pub fn connect_with(path: impl AsRef<Path>, opts: &ClientOptions) -> Result<Self, ClientError> {
        let path = path.as_ref().to_path_buf();
        let fd = socket::connect(&path).map_err(|error| ClientError::Connect {
            path: path.clone(),
            error,
        })?;
        let mut c = Self::new(Some(fd), Link::Socket, path, opts);
        c.set_timeout(opts.timeout)?;
        let create = memclnt::SockclntCreate {
            context: 0xfeed_face,
            name: opts.name.clone(),
        };
        c.scratch.clear();
        create
            .encode(SOCKCLNT_CREATE_ID, &mut c.scratch)
            .map_err(ClientError::Encode)?;
        c.out
            .extend_from_slice(&frame::header(c.scratch.len() as u32));
        c.out.extend_from_slice(&c.scratch);
        c.flush()?;
        let deadline = Instant::now() + opts.timeout;
        let msg = c.read_frame(deadline, "sockclnt_create_reply")?;
        if wire::msg_id(&msg) != Some(SOCKCLNT_CREATE_REPLY_ID) {
            return Err(ClientError::Handshake(format!(
                "expected sockclnt_create_reply (id 16), got id {:?}",
                wire::msg_id(&msg)
            )));
        }
        let reply = memclnt::SockclntCreateReply::decode(&msg).map_err(ClientError::Decode)?;
        if reply.response != 0 {
            return Err(ClientError::Handshake(format!(
                "server refused registration (response {})",
                reply.response
            )));
        }
        c.index = reply.index;
        c.load_table(reply.message_table);
        Ok(c)
    }

    fn load_table(&mut self, entries: Vec<memclnt::MessageTableEntry>) {
        for e in entries {
            let id = e.index;
            if usize::from(id) >= self.names.len() {
                self.names.resize(usize::from(id) + 1, None);
                self.reply_ids.resize(usize::from(id) + 1, false);
            }
            let name = e
                .name
                .rsplit_once('_')
                .map_or(e.name.as_str(), |(name, _crc)| name);
            self.reply_ids[usize::from(id)] =
                name.ends_with("_reply") || name.ends_with("_details");
            self.names[usize::from(id)] = Some(e.name.clone());
            self.ids.insert(e.name, id);
        }
        self.ping_id = self.msg_id(memclnt::ControlPing::NAME_CRC);
        self.ping_reply_id = self.msg_id(memclnt::ControlPingReply::NAME_CRC);
        self.keepalive_id = self.msg_id(memclnt::MemclntKeepalive::NAME_CRC);
        self.keepalive_reply_id = self.msg_id(memclnt::MemclntKeepaliveReply::NAME_CRC);
    }

    /// Attaches to the server's named shared-memory segment (`prefix` as the server was given)
    /// and registers with `memclnt_create_v2`; no socket is involved.
    pub fn attach_by_name(prefix: Option<&str>, opts: &ClientOptions) -> Result<Self, ClientError> {
        let link = ShmLink::attach_named(prefix, opts.shm_wait).map_err(ClientError::Shm)?;
        let table = link
            .published_table()
            .map(|t| memclnt::SockclntCreateReply::decode(t).map_err(ClientError::Decode))
            .transpose()?
            .map(|r| r.message_table)
            .unwrap_or_default();
        let path = PathBuf::from(format!(
            "/dev/shm/{}",
            prefix.map_or("vpe-api".to_owned(), |p| format!("{p}-vpe-api"))
        ));
        let mut c = Self::new(None, Link::Shm(Box::new(link)), path, opts);
        c.load_table(table);
        c.register_shm()?;
        Ok(c)
    }

    /// Registers over the shared-memory link with `memclnt_create_v2` (keepalive pings on; the
    /// receive path answers them).
    fn register_shm(&mut self) -> Result<(), ClientError> {
        let create = memclnt::MemclntCreateV2 {
            name: self.name.clone(),
            keepalive: true,
            ..Default::default()
        };
        let reply: memclnt::MemclntCreateV2Reply = self.request_unchecked(&create)?;
        if reply.response != 0 {
            return Err(ClientError::Handshake(format!(
                "server refused the shared-memory registration (response {})",
                reply.response
            )));
        }
        self.index = reply.index;
        Ok(())
    }

    /// Moves this connection to a private shared-memory segment: asks with `sock_init_shm`
    /// (VPP @master; `ring_config` as VPP's ring configuration items, `None` for the server's
    /// default), receives the segment's memfd and doorbell over the socket, attaches, and
    /// registers over shared memory. The socket stays open as the liveness channel.
    #[doc(alias = "vl_socket_client_init_shm")]
    pub fn pivot(
        &mut self,
        segment_size: u32,
        ring_config: Option<&ChannelConfig>,
    ) -> Result<(), ClientError> {
        self.check_can_pivot()?;
        let configs = ring_config
            .map(ChannelConfig::to_vpp_items)
            .unwrap_or_default();
        let req = memclnt::SockInitShm {
            requested_size: segment_size,
            nitems: configs.len() as u8,
            configs,
            ..Default::default()
        };
        let fds = self.segment_fds::<_, memclnt::SockInitShmReply>(&req)?;
        self.attach_pivot(fds)
    }

    /// The same pivot through the originating change's `memfd_segment_create`.
    pub fn pivot_memfd_segment_create(&mut self, segment_size: u64) -> Result<(), ClientError> {
        self.check_can_pivot()?;
        let req = memfd::MemfdSegmentCreate {
            requested_size: segment_size,
            ..Default::default()
        };
        let fds = self.segment_fds::<_, memfd::MemfdSegmentCreateReply>(&req)?;
        self.attach_pivot(fds)
    }

    /// The first half of [`SocketClient::pivot`], for tools and tests that attach by hand:
    /// asks for a private segment of `segment_size` bytes (0: the server's default) and
    /// returns its memfd and doorbell; the connection stays on the socket, unregistered on
    /// shared memory.
    pub fn request_segment(&mut self, segment_size: u32) -> Result<SegmentFds, ClientError> {
        self.check_can_pivot()?;
        let req = memclnt::SockInitShm {
            requested_size: segment_size,
            ..Default::default()
        };
        self.segment_fds::<_, memclnt::SockInitShmReply>(&req)
    }

    /// Sends a pivot request and receives the fds that follow its reply.
    fn segment_fds<Req: Message, Rep: Message>(
        &mut self,
        req: &Req,
    ) -> Result<SegmentFds, ClientError> {
        // A frame at a time until the reply: a read past it would take the fd message.
        self.pivoting = true;
        let reply = self.request::<Req, Rep>(req);
        self.pivoting = false;
        reply?;
        let fd = self.fd.as_ref().ok_or(ClientError::NoSocket)?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 5];
        let fds = loop {
            match socket::recv_with_fds(fd, &mut buf, 2) {
                Ok((0, _)) => return Err(ClientError::ServerGone),
                Ok((_, fds)) => break fds,
                Err(socket::FdRecvError::WouldBlock) if Instant::now() < deadline => {}
                Err(socket::FdRecvError::WouldBlock) => {
                    return Err(ClientError::Timeout {
                        waiting_for: "the shared-memory segment's fds".into(),
                    });
                }
                Err(e) => return Err(ClientError::Handshake(format!("fd message: {e}"))),
            }
        };
        let mut fds = fds.into_iter();
        match (fds.next(), fds.next()) {
            (Some(memfd), Some(doorbell)) => Ok(SegmentFds { memfd, doorbell }),
            _ => Err(ClientError::Handshake(
                "expected a memfd and a doorbell".into(),
            )),
        }
    }

    /// A connection pivots once, from the socket.
    fn check_can_pivot(&self) -> Result<(), ClientError> {
        match (&self.link, &self.fd) {
            (Link::Socket, Some(_)) => Ok(()),
            (Link::Socket, None) => Err(ClientError::NoSocket),
            (Link::Shm(_), _) => Err(ClientError::Handshake(
                "already on shared memory: a connection pivots once".into(),
            )),
        }
    }

    /// The second half of a pivot: attaches to the segment and registers over it.
    fn attach_pivot(&mut self, fds: SegmentFds) -> Result<(), ClientError> {
        let SegmentFds { memfd, doorbell } = fds;
        let link = ShmLink::from_pivot(memfd, doorbell, self.shm_wait).map_err(ClientError::Shm)?;
        let socket_index = self.index;
        self.link = Link::Shm(Box::new(link));
        if let Err(e) = self.register_shm() {
            self.link = Link::Socket;
            self.index = socket_index;
            return Err(e);
        }
        self.socket_index = Some(socket_index);
        Ok(())
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        match (&self.link, &self.fd) {
            (Link::Socket, _) => TransportKind::Socket,
            (Link::Shm(_), Some(_)) => TransportKind::SocketShm,
            (Link::Shm(_), None) => TransportKind::NamedShm,
        }
    }

    /// Statistics of the client-to-server rings, when on shared memory.
    pub fn shm_stats(&self) -> Option<vlibmemory::channel::SenderStats> {
        match &self.link {
            Link::Shm(l) => Some(l.stats()),
            Link::Socket => None,
        }
    }

    /// Changes how long a reply is awaited.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.timeout = timeout;
        // Reads wake at least this often to check their deadline.
        let tv = nix::sys::time::TimeVal::new(0, 50_000);
        if let Some(fd) = &self.fd {
            nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
        }
        Ok(())
    }

    /// The index the server gave this client (bit 31 set).
    pub fn client_index(&self) -> u32 {
        self.index
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket's fd, if this client has a socket.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// Number of keepalive pings answered on the caller's behalf.
    pub fn pings_answered(&self) -> u64 {
        self.pings_answered
    }

    /// The ID of `name_crc` in the server's table.
    pub fn msg_id(&self, name_crc: &str) -> Option<u16> {
        self.ids.get(name_crc).copied()
    }

    /// The ID of message type `M`, or an error naming it.
    pub fn id_of<M: Message>(&self) -> Result<u16, ClientError> {
        if let Some(&id) = self.type_ids.borrow().get(M::NAME_CRC) {
            return Ok(id);
        }
        let id = self
            .msg_id(M::NAME_CRC)
            .ok_or_else(|| ClientError::UnknownMessage(M::NAME_CRC.to_owned()))?;
        self.type_ids.borrow_mut().insert(M::NAME_CRC, id);
        Ok(id)
    }

    /// The `name_crc` of `id`.
    pub fn msg_name(&self, id: u16) -> Option<&str> {
        self.names.get(usize::from(id)).and_then(|n| n.as_deref())
    }

    /// The whole table: `name_crc` to ID.
    pub fn table(&self) -> &HashMap<String, u16> {
        &self.ids
    }

    fn fresh_context(&mut self) -> u32 {
        let c = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(1);
        c
    }

    /// Queues `msg` with this client's index and a fresh context (returned); call
    /// [`SocketClient::flush`] to write.
    pub fn send<M: Message>(&mut self, msg: &M) -> Result<u32, ClientError> {
        let id = self.id_of::<M>()?;
        let context = self.fresh_context();
        self.queue_with(id, msg, context)?;
        Ok(context)
    }

    fn queue_with<M: Message>(
        &mut self,
        id: u16,
        msg: &M,
        context: u32,
    ) -> Result<(), ClientError> {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; frame::HEADER_LEN]);
        msg.encode(id, &mut self.out).map_err(|e| {
            self.out.truncate(start);
            ClientError::Encode(e)
        })?;
        let body = start + frame::HEADER_LEN;
        // Set client_index and context in place: the generated type says where they are.
        if let Some(off) = M::CONTEXT_OFFSET {
            self.out[body + off..body + off + 4].copy_from_slice(&context.to_be_bytes());
        }
        if msg.client_index().is_some() {
            // Requests put client_index right after the ID.
            self.out[body + 2..body + 6].copy_from_slice(&self.index.to_be_bytes());
        }
        let len = (self.out.len() - body) as u32;
        self.out[start..body].copy_from_slice(&frame::header(len));
        self.in_flight.insert(context, ());
        if let Link::Shm(link) = &mut self.link {
            // Shared memory needs no batching: hand the message over now.
            let r = link.send(&self.out[body..], self.timeout);
            self.out.truncate(start);
            r.map_err(|e| ClientError::ShmIo(e.to_string()))?;
        }
        Ok(())
    }

    /// Queues raw message bytes as they are (sent at once on shared memory; failures there
    /// surface at the next [`SocketClient::flush`]).
    pub fn send_raw(&mut self, msg: &[u8]) {
        match &mut self.link {
            Link::Socket => {
                self.out.extend_from_slice(&frame::header(msg.len() as u32));
                self.out.extend_from_slice(msg);
            }
            Link::Shm(link) => {
                if let Err(e) = link.send(msg, self.timeout) {
                    self.pending_error = Some(e.to_string());
                }
            }
        }
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if let Some(e) = self.pending_error.take() {
            return Err(ClientError::ShmIo(e));
        }
        let Some(fd) = self
            .fd
            .as_ref()
            .filter(|_| matches!(self.link, Link::Socket))
        else {
            self.out.clear();
            return Ok(());
        };
        let fd = fd
            .try_clone()
            .map_err(|e| ClientError::Os(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let mut written = 0;
        while written < self.out.len() {
            match nix::sys::socket::send(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &self.out[written..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // The server is not reading; give it the reply timeout to catch up.
                    nix::poll::poll(
                        &mut [nix::poll::PollFd::new(
                            fd.as_fd(),
                            nix::poll::PollFlags::POLLOUT,
                        )],
                        nix::poll::PollTimeout::from(100u16),
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Reads until one whole message is here, answering keepalives on the way. A deadline
    /// already past still looks once, without blocking.
    fn read_frame(&mut self, deadline: Instant, what: &str) -> Result<Vec<u8>, ClientError> {
        let mut buf = Vec::new();
        self.read_into(deadline, what, &mut buf)?;
        Ok(buf)
    }

    /// [`SocketClient::read_frame`] into a buffer the caller reuses.
    fn read_into(
        &mut self,
        deadline: Instant,
        what: &str,
        buf: &mut Vec<u8>,
    ) -> Result<(), ClientError> {
        loop {
            let got = match &mut self.link {
                Link::Socket => self.read_socket(deadline, buf)?,
                Link::Shm(link) => {
                    let now = Instant::now();
                    let got = if now >= deadline {
                        link.try_recv(buf)
                    } else {
                        // Wake now and then to notice a server that went away.
                        match link.recv(buf, (deadline - now).min(Duration::from_millis(100))) {
                            Ok(()) => Ok(true),
                            Err(vlibmemory::channel::RecvError::Timeout) => Ok(false),
                            Err(e) => Err(e),
                        }
                    };
                    match got {
                        Ok(true) => true,
                        Ok(false) => {
                            self.check_socket_alive()?;
                            false
                        }
                        Err(e) => return Err(ClientError::ShmIo(e.to_string())),
                    }
                }
            };
            if got {
                if self.keepalive_id.is_some() && wire::msg_id(buf) == self.keepalive_id {
                    let ping = std::mem::take(buf);
                    self.answer_keepalive(&ping)?;
                    *buf = ping;
                    continue;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    waiting_for: what.to_owned(),
                });
            }
        }
    }

    /// One step of reading the socket: true when a whole frame is (or became) available, copied
    /// into `buf`.
    fn read_socket(&mut self, deadline: Instant, buf: &mut Vec<u8>) -> Result<bool, ClientError> {
        if let Some(f) = self.reader.next_frame().map_err(ClientError::Framing)? {
            buf.clear();
            buf.extend_from_slice(f);
            return Ok(true);
        }
        let fd = self.fd.as_ref().ok_or(ClientError::NoSocket)?;
        if Instant::now() >= deadline {
            let mut p = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO)? == 0 {
                return Ok(false);
            }
        }
        let read = if self.pivoting {
            self.reader.read_from_exact(fd)
        } else {
            self.reader.read_from(fd)
        };
        match read {
            Ok(ReadOutcome::Data(_)) | Ok(ReadOutcome::WouldBlock) => {}
            Ok(ReadOutcome::Eof) => return Err(ClientError::ServerGone),
            Err(e) => return Err(e.into()),
        }
        match self.reader.next_frame().map_err(ClientError::Framing)? {
            Some(f) => {
                buf.clear();
                buf.extend_from_slice(f);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// On shared memory: the server closing the socket (or, attached by name, dropping its
    /// doorbell) means it is gone.
    fn check_socket_alive(&self) -> Result<(), ClientError> {
        let Some(fd) = &self.fd else {
            return match &self.link {
                Link::Shm(link) if link.peer_gone() => Err(ClientError::ServerGone),
                _ => Ok(()),
            };
        };
        let mut p = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO)? > 0 {
            let hup = p[0].revents().is_some_and(|r| {
                r.intersects(nix::poll::PollFlags::POLLHUP | nix::poll::PollFlags::POLLERR)
            });
            let mut b = [0u8; 1];
            let eof = matches!(
                nix::sys::socket::recv(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    &mut b,
                    nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT
                ),
                Ok(0)
            );
            if hup || eof {
                return Err(ClientError::ServerGone);
            }
        }
        Ok(())
    }

    fn answer_keepalive(&mut self, ping: &[u8]) -> Result<(), ClientError> {
        let Some(reply_id) = self.keepalive_reply_id else {
            return Ok(());
        };
        let ping = memclnt::MemclntKeepalive::decode(ping).map_err(ClientError::Decode)?;
        let reply = memclnt::MemclntKeepaliveReply {
            context: ping.context,
            retval: 0,
        };
        self.scratch.clear();
        reply
            .encode(reply_id, &mut self.scratch)
            .map_err(ClientError::Encode)?;
        let scratch = std::mem::take(&mut self.scratch);
        self.send_raw(&scratch);
        self.scratch = scratch;
        self.flush()?;
        self.pings_answered += 1;
        Ok(())
    }

    /// Files a received message: a reply to an in-flight context is parked for its waiter,
    /// anything else is an event.
    fn file(&mut self, msg: Vec<u8>) {
        let id = wire::msg_id(&msg).unwrap_or(0);
        // Replies and details carry context right after the ID; events carry a client index
        // there, which must not be mistaken for a context (VPP's naming tells them apart).
        let context = if self.is_reply(id) {
            msg.get(2..6)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .unwrap_or(0)
        } else {
            0
        };
        if context != 0 && self.in_flight.contains_key(&context) {
            self.parked.entry(context).or_default().push_back(msg);
        } else {
            self.events.push_back(Event {
                id,
                name_crc: self.msg_name(id).map(str::to_owned),
                bytes: msg,
            });
        }
    }

    /// True when message `id` is a reply or a dump's details (`*_reply`, `*_details`).
    fn is_reply(&self, id: u16) -> bool {
        self.reply_ids
            .get(usize::from(id))
            .copied()
            .unwrap_or(false)
    }

    /// The next message for `context`, waiting up to the timeout.
    pub fn wait_message(&mut self, context: u32, what: &str) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(q) = self.parked.get_mut(&context) {
                if let Some(m) = q.pop_front() {
                    if q.is_empty() {
                        self.parked.remove(&context);
                    }
                    return Ok(m);
                }
            }
            let m = match self.read_frame(deadline, what) {
                Ok(m) => m,
                Err(e) => {
                    // Gone or given up on: a late reply with this context is an event, not a
                    // reply held back from a future request that reuses the number.
                    self.in_flight.remove(&context);
                    self.parked.remove(&context);
                    return Err(e);
                }
            };
            self.file(m);
        }
    }

    /// Waits for the reply `Rep` to `context` and decodes it (a non-zero retval is returned as
    /// it is; see [`SocketClient::request`] for the checked form).
    pub fn wait_reply<Rep: Message>(&mut self, context: u32) -> Result<Rep, ClientError> {
        let rep_id = self.id_of::<Rep>()?;
        // Replies that arrived while another was awaited first.
        while let Some(m) = self.take_parked(context) {
            if let Some(r) = self.accept_reply::<Rep>(context, rep_id, m)? {
                return Ok(r);
            }
        }
        // The common case decodes straight from the receive buffer, with no copy kept.
        let deadline = Instant::now() + self.timeout;
        let mut buf = std::mem::take(&mut self.rx_buf);
        let result = loop {
            if let Err(e) = self.read_into(deadline, Rep::NAME, &mut buf) {
                self.in_flight.remove(&context);
                self.parked.remove(&context);
                break Err(e);
            }
            let id = wire::msg_id(&buf).unwrap_or(0);
            let ctx = if self.is_reply(id) {
                buf.get(2..6)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            } else {
                0
            };
            if ctx == context && id == rep_id {
                self.in_flight.remove(&context);
                break Rep::decode(&buf).map_err(ClientError::Decode);
            }
            if ctx == context {
                self.push_event(buf.clone());
            } else {
                self.file(buf.clone());
            }
        };
        self.rx_buf = buf;
        result
    }

    /// The next parked message for `context`.
    fn take_parked(&mut self, context: u32) -> Option<Vec<u8>> {
        let q = self.parked.get_mut(&context)?;
        let m = q.pop_front();
        if q.is_empty() {
            self.parked.remove(&context);
        }
        m
    }

    /// The reply to `context`, or `None` (and the message kept as an event) when it is some
    /// other message sharing the context.
    fn accept_reply<Rep: Message>(
        &mut self,
        context: u32,
        rep_id: u16,
        m: Vec<u8>,
    ) -> Result<Option<Rep>, ClientError> {
        if wire::msg_id(&m) == Some(rep_id) {
            self.in_flight.remove(&context);
            return Rep::decode(&m).map(Some).map_err(ClientError::Decode);
        }
        self.push_event(m);
        Ok(None)
    }

    fn push_event(&mut self, bytes: Vec<u8>) {
        let id = wire::msg_id(&bytes).unwrap_or(0);
        self.events.push_back(Event {
            id,
            name_crc: self.msg_name(id).map(str::to_owned),
            bytes,
        });
    }

    /// Sends `req`, waits for its reply, and turns a non-zero `retval` into an error.
    pub fn request<Req: Message, Rep: Message>(&mut self, req: &Req) -> Result<Rep, ClientError> {
        let rep = self.request_unchecked::<Req, Rep>(req)?;
        match rep.retval() {
            Some(r) if r != 0 => Err(ClientError::Retval {
                message: Rep::NAME,
                retval: r,
            }),
            _ => Ok(rep),
        }
    }

    /// Sends `req` and returns its reply whatever its `retval`.
    pub fn request_unchecked<Req: Message, Rep: Message>(
        &mut self,
        req: &Req,
    ) -> Result<Rep, ClientError> {
        let ctx = self.send(req)?;
        self.flush()?;
        self.wait_reply(ctx)
    }

    /// A dump: sends `req` and a `control_ping` with the same context, and collects every
    /// `Det` until the ping's reply.
    pub fn dump<Req: Message, Det: Message>(&mut self, req: &Req) -> Result<Vec<Det>, ClientError> {
        let det_id = self.id_of::<Det>()?;
        let req_id = self.id_of::<Req>()?;
        let ping_id = self
            .ping_id
            .ok_or_else(|| ClientError::UnknownMessage(memclnt::ControlPing::NAME_CRC.into()))?;
        let reply_id = self.ping_reply_id;
        let ctx = self.fresh_context();
        self.queue_with(req_id, req, ctx)?;
        self.queue_with(ping_id, &memclnt::ControlPing::default(), ctx)?;
        self.flush()?;
        let mut out = Vec::new();
        loop {
            let m = self.wait_message(ctx, Det::NAME)?;
            let id = wire::msg_id(&m);
            if id == reply_id {
                self.in_flight.remove(&ctx);
                return Ok(out);
            }
            if id == Some(det_id) {
                out.push(Det::decode(&m).map_err(ClientError::Decode)?);
            } else {
                let id = id.unwrap_or(0);
                self.events.push_back(Event {
                    id,
                    name_crc: self.msg_name(id).map(str::to_owned),
                    bytes: m,
                });
            }
        }
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            match self.read_frame(deadline, "an event") {
                Ok(m) => self.file(m),
                Err(ClientError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one raw message, whatever it is, waiting up to the timeout.
    pub fn recv_raw(&mut self) -> Result<Vec<u8>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e.bytes);
        }
        let deadline = Instant::now() + self.timeout;
        self.read_frame(deadline, "a message")
    }

    /// Says goodbye (`memclnt_delete` on shared memory, then `sockclnt_delete` on the socket)
    /// and closes the connection.
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        if matches!(self.link, Link::Shm(_)) {
            let req = memclnt::MemclntDelete {
                index: self.index,
                ..Default::default()
            };
            let ctx = self.fresh_context();
            // memclnt_delete carries no context: the reply is matched by its ID alone.
            let id = self.id_of::<memclnt::MemclntDelete>()?;
            self.scratch.clear();
            req.encode(id, &mut self.scratch)
                .map_err(ClientError::Encode)?;
            let msg = std::mem::take(&mut self.scratch);
            self.send_raw(&msg);
            self.flush()?;
            let reply_id = self.id_of::<memclnt::MemclntDeleteReply>()?;
            let deadline = Instant::now() + self.timeout;
            let _ = ctx;
            loop {
                match self.read_frame(deadline, "memclnt_delete_reply") {
                    Ok(m) if wire::msg_id(&m) == Some(reply_id) => break,
                    Ok(_) => {}
                    Err(ClientError::ServerGone) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            self.link = Link::Socket;
        }
        if self.fd.is_none() {
            return Ok(());
        }
        let req = memclnt::SockclntDelete {
            index: self.socket_index.unwrap_or(self.index),
            ..Default::default()
        };
        let ctx = self.send(&req)?;
        self.flush()?;
        match self.wait_reply::<memclnt::SockclntDeleteReply>(ctx) {
            Ok(_) | Err(ClientError::ServerGone) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = frame::header(msg.len() as u32).to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn read_frame(s: &mut std::os::unix::net::UnixStream) -> Vec<u8> {
        let mut h = [0u8; 16];
        s.read_exact(&mut h).unwrap();
        let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let mut m = vec![0u8; len];
        s.read_exact(&mut m).unwrap();
        m
    }

    /// A fake server: answers the registration with a three-entry table, then plays `script`.
    fn fake_server(
        path: &Path,
        script: impl FnOnce(&mut std::os::unix::net::UnixStream) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let create = read_frame(&mut s);
            let req = memclnt::SockclntCreate::decode(&create).unwrap();
            let table = [
                (23, memclnt::ControlPing::NAME_CRC),
                (24, memclnt::ControlPingReply::NAME_CRC),
                (50, "sw_thing_event_0badcafe"),
            ];
            let reply = memclnt::SockclntCreateReply {
                context: req.context,
                index: 0x8100_0000,
                count: table.len() as u16,
                message_table: table
                    .iter()
                    .map(|(i, n)| memclnt::MessageTableEntry {
                        index: *i,
                        name: (*n).to_owned(),
                    })
                    .collect(),
                ..Default::default()
            };
            s.write_all(&frame(&wire::to_vec(&reply, 16).unwrap()))
                .unwrap();
            script(&mut s);
        })
    }

    #[test]
    fn an_event_whose_client_index_equals_a_pending_context_stays_an_event() {
        let dir = std::env::temp_dir().join(format!("vlibsocket-client-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let server = fake_server(&path, |s| {
            let a = memclnt::ControlPing::decode(&read_frame(s))
                .unwrap()
                .context;
            let b = memclnt::ControlPing::decode(&read_frame(s))
                .unwrap()
                .context;
            // An event whose first word (a client index) equals request b's context...
            let mut event = vec![0u8, 50];
            event.extend_from_slice(&b.to_be_bytes());
            event.extend_from_slice(&[0; 8]);
            s.write_all(&frame(&event)).unwrap();
            // ...then the replies.
            for (context, pid) in [(a, 1), (b, 2)] {
                let reply = memclnt::ControlPingReply {
                    context,
                    vpe_pid: pid,
                    ..Default::default()
                };
                s.write_all(&frame(&wire::to_vec(&reply, 24).unwrap()))
                    .unwrap();
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let mut c = SocketClient::connect(&path, "t").unwrap();
        let a = c.send(&memclnt::ControlPing::default()).unwrap();
        let b = c.send(&memclnt::ControlPing::default()).unwrap();
        c.flush().unwrap();
        let r: memclnt::ControlPingReply = c.wait_reply(a).unwrap();
        assert_eq!(r.vpe_pid, 1);
        // The event is an event now, not a message parked for b.
        let e = c
            .next_event(Duration::from_secs(1))
            .unwrap()
            .expect("the event");
        assert_eq!(e.id, 50);
        assert_eq!(e.name_crc.as_deref(), Some("sw_thing_event_0badcafe"));
        let r: memclnt::ControlPingReply = c.wait_reply(b).unwrap();
        assert_eq!(r.vpe_pid, 2);
        drop(c);
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
