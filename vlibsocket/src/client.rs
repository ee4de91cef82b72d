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
use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vppinfra::socket::{self, SocketConnectError};

use crate::frame::{self, FrameError, FrameReader, ReadOutcome};

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
}

impl ClientOptions {
    /// Defaults: 5 s timeout (as vpp_papi), 64 MiB messages.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            timeout: Duration::from_secs(5),
            max_message_len: 64 << 20,
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

/// A synchronous socket connection to the API server.
#[derive(Debug)]
pub struct SocketClient {
    fd: OwnedFd,
    reader: FrameReader,
    out: Vec<u8>,
    scratch: Vec<u8>,
    ids: HashMap<String, u16>,
    names: Vec<Option<String>>,
    index: u32,
    next_context: u32,
    timeout: Duration,
    /// Replies that arrived for a context someone may still wait for.
    parked: HashMap<u32, VecDeque<Vec<u8>>>,
    /// Contexts sent and not yet completed.
    in_flight: HashMap<u32, ()>,
    events: VecDeque<Event>,
    ping_id: Option<u16>,
    ping_reply_id: Option<u16>,
    keepalive_id: Option<u16>,
    keepalive_reply_id: Option<u16>,
    pings_answered: u64,
    path: PathBuf,
}

impl SocketClient {
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
        let mut c = Self {
            fd,
            reader: FrameReader::new(opts.max_message_len),
            out: Vec::with_capacity(4096),
            scratch: Vec::with_capacity(256),
            ids: HashMap::new(),
            names: Vec::new(),
            index: 0,
            next_context: 1,
            timeout: opts.timeout,
            parked: HashMap::new(),
            in_flight: HashMap::new(),
            events: VecDeque::new(),
            ping_id: None,
            ping_reply_id: None,
            keepalive_id: None,
            keepalive_reply_id: None,
            pings_answered: 0,
            path,
        };
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
        for e in reply.message_table {
            let id = e.index;
            if usize::from(id) >= c.names.len() {
                c.names.resize(usize::from(id) + 1, None);
            }
            c.names[usize::from(id)] = Some(e.name.clone());
            c.ids.insert(e.name, id);
        }
        c.ping_id = c.msg_id(memclnt::ControlPing::NAME_CRC);
        c.ping_reply_id = c.msg_id(memclnt::ControlPingReply::NAME_CRC);
        c.keepalive_id = c.msg_id(memclnt::MemclntKeepalive::NAME_CRC);
        c.keepalive_reply_id = c.msg_id(memclnt::MemclntKeepaliveReply::NAME_CRC);
        Ok(c)
    }

    /// Changes how long a reply is awaited.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.timeout = timeout;
        // Reads wake at least this often to check their deadline.
        let tv = nix::sys::time::TimeVal::new(0, 50_000);
        nix::sys::socket::setsockopt(&self.fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
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

    /// The socket's fd (for the pivot to shared memory, which receives an fd over it).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
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
        self.msg_id(M::NAME_CRC)
            .ok_or_else(|| ClientError::UnknownMessage(M::NAME_CRC.to_owned()))
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
        Ok(())
    }

    /// Queues raw message bytes as they are.
    pub fn send_raw(&mut self, msg: &[u8]) {
        self.out.extend_from_slice(&frame::header(msg.len() as u32));
        self.out.extend_from_slice(msg);
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let mut written = 0;
        while written < self.out.len() {
            match nix::sys::socket::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                &self.out[written..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // The server is not reading; give it the reply timeout to catch up.
                    nix::poll::poll(
                        &mut [nix::poll::PollFd::new(
                            self.fd.as_fd(),
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

    /// Reads until one whole frame is here, answering keepalives on the way.
    fn read_frame(&mut self, deadline: Instant, what: &str) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(f) = self.reader.next_frame().map_err(ClientError::Framing)? {
                let f = f.to_vec();
                if self.keepalive_id.is_some() && wire::msg_id(&f) == self.keepalive_id {
                    self.answer_keepalive(&f)?;
                    continue;
                }
                return Ok(f);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    waiting_for: what.to_owned(),
                });
            }
            match self.reader.read_from(&self.fd) {
                Ok(ReadOutcome::Data(_)) | Ok(ReadOutcome::WouldBlock) => {}
                Ok(ReadOutcome::Eof) => return Err(ClientError::ServerGone),
                Err(e) => return Err(e.into()),
            }
        }
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
        // Replies carry context right after the ID.
        let context = msg
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
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
            let m = self.read_frame(deadline, what)?;
            self.file(m);
        }
    }

    /// Waits for the reply `Rep` to `context` and decodes it (a non-zero retval is returned as
    /// it is; see [`SocketClient::request`] for the checked form).
    pub fn wait_reply<Rep: Message>(&mut self, context: u32) -> Result<Rep, ClientError> {
        let rep_id = self.id_of::<Rep>()?;
        loop {
            let m = self.wait_message(context, Rep::NAME)?;
            if wire::msg_id(&m) == Some(rep_id) {
                self.in_flight.remove(&context);
                return Rep::decode(&m).map_err(ClientError::Decode);
            }
            // Same context, another message: hand it to the events queue.
            let id = wire::msg_id(&m).unwrap_or(0);
            self.events.push_back(Event {
                id,
                name_crc: self.msg_name(id).map(str::to_owned),
                bytes: m,
            });
        }
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

    /// Says goodbye with `sockclnt_delete` and closes the connection.
    #[doc(alias = "vl_socket_client_disconnect")]
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        let req = memclnt::SockclntDelete {
            index: self.index,
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
