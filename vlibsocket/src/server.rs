//! The server side of the socket transport: the listener and its connections.
//!
//! [`SocketServer`] owns the listening socket and every accepted connection, kept as parallel
//! arrays (frame readers, session metadata, output buffers) so that a frame can be handled while
//! it still sits in its reader's buffer and replies are queued to any connection's output at the
//! same time: no copy on the way in. The server's event loop drives it: it calls
//! [`SocketServer::accept`] when the listener is readable, [`SocketServer::read`] and
//! [`SocketServer::process`] when a connection is, and [`SocketServer::flush`] once per turn.
//!
//! A connection's identity is the connection itself: its [`ClientIndex`] has bit 31 set, a
//! 7-bit generation, and the slot number, so an index kept after a client left never reaches the
//! client that reuses the slot. The `client_index` a client writes into its messages is not
//! trusted for routing.
//!
//! The transport logs nothing; it reports what happened through return values, and the server
//! decides what to log.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use vlibapi::ClientIndex;
use vppinfra::socket::{
    self, ListenOptions, Listener, PeerCred, SocketAcceptError, SocketListenError,
};

use crate::frame::{FlushOutcome, FrameError, FrameReader, OutputBuffer, ReadOutcome};

/// Bit 31 marks a socket client's index, as in VPP.
#[doc(alias = "SOCK_API_REG_HANDLE_BIT")]
pub const SOCKET_HANDLE_BIT: u32 = 0x8000_0000;
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
const GEN_MASK: u32 = 0x7f;

/// True when `index` has the socket-client bit set.
pub fn is_socket_index(index: ClientIndex) -> bool {
    index.0 & SOCKET_HANDLE_BIT != 0
}

fn make_index(slot: usize, generation: u8) -> ClientIndex {
    ClientIndex(SOCKET_HANDLE_BIT | (u32::from(generation) & GEN_MASK) << SLOT_BITS | slot as u32)
}

/// Settings of the socket transport.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Where to listen.
    pub path: PathBuf,
    /// Socket file mode (default 0o600: only the server's user may connect).
    pub mode: u32,
    /// Group to give the socket file, if any (use with mode 0o660).
    pub group: Option<u32>,
    /// Create missing parent directories (mode 0o755).
    pub create_parent: bool,
    /// Longest message accepted; a longer frame closes the connection.
    pub max_message_len: u32,
    /// Bytes queued for one client beyond which it is disconnected as stuck.
    pub max_output_bytes: usize,
    /// Peers whose uid is listed may connect (empty: anyone the file mode lets in).
    pub allow_uids: Vec<u32>,
    /// Peers whose gid is listed may connect, in addition to `allow_uids`.
    pub allow_gids: Vec<u32>,
    /// Most connections at once; more are refused.
    pub max_clients: usize,
    /// A client whose queued output makes no progress for this long is disconnected as stuck.
    pub stall_timeout: std::time::Duration,
}

impl SocketConfig {
    /// Defaults for a socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            mode: 0o600,
            group: None,
            create_parent: true,
            max_message_len: crate::frame::DEFAULT_MAX_MESSAGE_LEN,
            max_output_bytes: 64 << 20,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            max_clients: 4096,
            stall_timeout: std::time::Duration::from_secs(5),
        }
    }

    fn admits(&self, peer: &PeerCred) -> bool {
        if self.allow_uids.is_empty() && self.allow_gids.is_empty() {
            return true;
        }
        self.allow_uids.contains(&peer.uid) || self.allow_gids.contains(&peer.gid)
    }
}

/// The default socket path: `$XDG_RUNTIME_DIR/vpp/api.sock`, `/run/vpp/api.sock` for root,
/// else `/tmp/vpp-<uid>/api.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("vpp/api.sock");
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        PathBuf::from("/run/vpp/api.sock")
    } else {
        PathBuf::from(format!("/tmp/vpp-{uid}/api.sock"))
    }
}

/// Per-connection facts the server keeps beside the byte streams.
#[derive(Debug)]
pub struct Session {
    fd: OwnedFd,
    index: ClientIndex,
    /// The peer's credentials at connect time.
    pub peer: PeerCred,
    /// The name given in `sockclnt_create` (empty until then).
    pub name: String,
    /// True once `sockclnt_create` was answered.
    pub registered: bool,
    /// Close once the output has drained (after `sockclnt_delete`).
    pub close_after_flush: bool,
    /// Input is not read while the output is above the high watermark.
    pub paused: bool,
    /// Messages from this client that failed validation.
    pub bad_messages: u64,
    /// Messages received.
    pub rx_messages: u64,
    /// While output is queued: when it last moved.
    pub stalled_since: Option<std::time::Instant>,
}

impl Session {
    /// The client's index.
    pub fn index(&self) -> ClientIndex {
        self.index
    }

    /// The connection's fd (for epoll, fd passing and `show api clients`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Counters of the socket transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SocketStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused by the uid/gid allow-list.
    pub refused_credentials: u64,
    /// Connections refused because `max_clients` were connected.
    pub refused_full: u64,
    /// Connections closed for a framing violation.
    pub framing_errors: u64,
    /// Connections closed because their output passed `max_output_bytes`.
    pub stuck_disconnects: u64,
    /// Connections that ended (any reason).
    pub closed: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Frames queued for sending.
    pub tx_frames: u64,
}

/// Why [`SocketServer::bind`] failed.
pub type SocketBindError = SocketListenError;

/// A newly accepted connection, or why one was turned away.
#[derive(Debug)]
pub enum Accepted {
    /// A new client; register its fd with the poller.
    Client(ClientIndex),
    /// The peer's credentials are not on the allow-list; it was closed.
    RefusedCredentials(PeerCred),
    /// Too many clients; it was closed.
    RefusedFull,
}

/// What reading from a connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadStatus {
    /// Bytes arrived (frames may be ready).
    Data,
    /// Nothing to read.
    Idle,
    /// The peer closed the connection (or it failed with this errno).
    Closed(Option<Errno>),
}

/// How a frame handler wants processing to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Carry on with the next frame.
    Continue,
    /// Stop reading this connection and close it after its output drains.
    CloseAfterFlush,
    /// End this burst after the current frame (the caller has work to do before the next one,
    /// which keeps each connection's requests answered in order).
    Yield,
}

/// Why a connection has to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it.
    PeerClosed,
    /// A read or write failed.
    Io(Errno),
    /// Its byte stream broke the framing rules.
    Framing(FrameError),
    /// It stopped reading and its output passed the bound.
    Stuck {
        /// Bytes queued.
        queued: usize,
    },
    /// The client asked to leave (`sockclnt_delete`).
    Deleted,
    /// The server closed it (shutdown or a policy decision).
    Server,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Framing(e) => write!(f, "framing error: {e}"),
            Self::Stuck { queued } => {
                write!(f, "stopped reading with {queued} bytes queued for it")
            }
            Self::Deleted => f.write_str("client deleted its registration"),
            Self::Server => f.write_str("closed by the server"),
        }
    }
}

impl std::error::Error for CloseReason {}

/// Output buffers of every connection, reachable while a frame of one of them is handled.
#[derive(Debug)]
pub struct Outputs<'a> {
    outputs: &'a mut [OutputBuffer],
    sessions: &'a [Option<Session>],
    /// The connection being processed: its session is lent to the handler, not in `sessions`.
    current: (ClientIndex, bool),
    tx_frames: &'a mut u64,
    dirty: &'a mut Dirty,
}

/// Connections with output queued since their last flush.
#[derive(Debug, Default)]
struct Dirty {
    slots: Vec<usize>,
    marked: Vec<bool>,
}

impl Dirty {
    fn mark(&mut self, slot: usize) {
        if self.marked.len() <= slot {
            self.marked.resize(slot + 1, false);
        }
        if !self.marked[slot] {
            self.marked[slot] = true;
            self.slots.push(slot);
        }
    }

    fn take(&mut self) -> Vec<usize> {
        for &s in &self.slots {
            self.marked[s] = false;
        }
        std::mem::take(&mut self.slots)
    }
}

impl Outputs<'_> {
    /// Queues `msg` for socket client `to`. False if there is no such client.
    pub fn send(&mut self, to: ClientIndex, msg: &[u8]) -> bool {
        match self.slot_of(to) {
            Some(slot) => {
                self.outputs[slot].push_frame(msg);
                *self.tx_frames += 1;
                self.dirty.mark(slot);
                true
            }
            None => false,
        }
    }

    /// Calls `f` for every registered socket client.
    pub fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        let (current, current_registered) = self.current;
        if current_registered {
            f(current);
        }
        for s in self.sessions.iter().flatten() {
            if s.registered {
                f(s.index);
            }
        }
    }

    /// The slot of a live session with exactly this index.
    fn slot_of(&self, to: ClientIndex) -> Option<usize> {
        let slot = (to.0 & SLOT_MASK) as usize;
        if to == self.current.0 {
            return Some(slot);
        }
        match self.sessions.get(slot) {
            Some(Some(s)) if s.index == to && is_socket_index(to) => Some(slot),
            _ => None,
        }
    }

    /// Bytes queued for `to`.
    pub fn queued(&self, to: ClientIndex) -> usize {
        self.slot_of(to).map_or(0, |s| self.outputs[s].len())
    }
}

/// The listener and all connections.
#[derive(Debug)]
pub struct SocketServer {
    listener: Listener,
    config: SocketConfig,
    readers: Vec<FrameReader>,
    sessions: Vec<Option<Session>>,
    outputs: Vec<OutputBuffer>,
    generations: Vec<u8>,
    free: Vec<usize>,
    n_sessions: usize,
    stats: SocketStats,
    dirty: Dirty,
}

impl SocketServer {
    /// Listens on `config.path`, replacing a stale socket file and refusing to start when a live
    /// server is already there.
    pub fn bind(config: SocketConfig) -> Result<Self, SocketBindError> {
        let mut opts = ListenOptions::new()
            .nonblocking(true)
            .backlog(1024)
            .mode(config.mode);
        if let Some(g) = config.group {
            opts = opts.group(g);
        }
        if config.create_parent {
            opts = opts.create_parent(0o755);
        }
        let listener = socket::listen(&config.path, &opts)?;
        Ok(Self {
            listener,
            config,
            readers: Vec::new(),
            sessions: Vec::new(),
            outputs: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            n_sessions: 0,
            stats: SocketStats::default(),
            dirty: Dirty::default(),
        })
    }

    /// The listening socket's fd.
    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        self.listener.path()
    }

    /// The settings.
    pub fn config(&self) -> &SocketConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> SocketStats {
        self.stats
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.n_sessions
    }

    /// True when no client is connected.
    pub fn is_empty(&self) -> bool {
        self.n_sessions == 0
    }

    /// The session of `c`, if it is a live socket client.
    pub fn session(&self, c: ClientIndex) -> Option<&Session> {
        self.slot(c).and_then(|s| self.sessions[s].as_ref())
    }

    /// The session of `c`, mutable.
    pub fn session_mut(&mut self, c: ClientIndex) -> Option<&mut Session> {
        self.slot(c).and_then(|s| self.sessions[s].as_mut())
    }

    /// Every live session.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().flatten()
    }

    fn slot(&self, c: ClientIndex) -> Option<usize> {
        if !is_socket_index(c) {
            return None;
        }
        let slot = (c.0 & SLOT_MASK) as usize;
        match self.sessions.get(slot) {
            Some(Some(s)) if s.index == c => Some(slot),
            _ => None,
        }
    }

    /// Accepts one pending connection; `None` when none is pending.
    pub fn accept(&mut self) -> Result<Option<Accepted>, SocketAcceptError> {
        let fd = match self.listener.accept_with(true) {
            Ok(fd) => fd,
            Err(SocketAcceptError::WouldBlock) => return Ok(None),
            Err(e) => return Err(e),
        };
        // A peer that vanished before we asked has no credentials; treat it as nobody.
        let peer = socket::peer_credentials(&fd).unwrap_or(PeerCred {
            pid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
        });
        if !self.config.admits(&peer) {
            self.stats.refused_credentials += 1;
            return Ok(Some(Accepted::RefusedCredentials(peer)));
        }
        if self.n_sessions >= self.config.max_clients {
            self.stats.refused_full += 1;
            return Ok(Some(Accepted::RefusedFull));
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = self.sessions.len();
                if s > SLOT_MASK as usize {
                    self.stats.refused_full += 1;
                    return Ok(Some(Accepted::RefusedFull));
                }
                self.sessions.push(None);
                self.readers
                    .push(FrameReader::new(self.config.max_message_len));
                self.outputs.push(OutputBuffer::new());
                self.generations.push(0);
                s
            }
        };
        self.generations[slot] = self.generations[slot].wrapping_add(1) & GEN_MASK as u8;
        let index = make_index(slot, self.generations[slot]);
        self.readers[slot] = FrameReader::new(self.config.max_message_len);
        self.outputs[slot] = OutputBuffer::new();
        self.sessions[slot] = Some(Session {
            fd,
            index,
            peer,
            name: String::new(),
            registered: false,
            close_after_flush: false,
            paused: false,
            bad_messages: 0,
            rx_messages: 0,
            stalled_since: None,
        });
        self.n_sessions += 1;
        self.stats.accepted += 1;
        Ok(Some(Accepted::Client(index)))
    }

    /// Reads once from `c`'s socket into its frame buffer.
    pub fn read(&mut self, c: ClientIndex) -> ReadStatus {
        let Some(slot) = self.slot(c) else {
            return ReadStatus::Closed(None);
        };
        let Some(session) = self.sessions[slot].as_ref() else {
            return ReadStatus::Closed(None);
        };
        match self.readers[slot].read_from(session.fd.as_fd()) {
            Ok(ReadOutcome::Data(_)) => ReadStatus::Data,
            Ok(ReadOutcome::WouldBlock) => ReadStatus::Idle,
            Ok(ReadOutcome::Eof) => ReadStatus::Closed(None),
            Err(e) => ReadStatus::Closed(Some(e)),
        }
    }

    /// True when `c` has a whole frame (or a framing error) waiting in its buffer.
    pub fn frame_ready(&self, c: ClientIndex) -> bool {
        self.slot(c).is_some_and(|s| self.readers[s].frame_ready())
    }

    /// Hands up to `burst` complete frames of `c` to `handle`, together with every connection's
    /// output and `c`'s session. Returns the number handled, or why `c` must be closed.
    pub fn process(
        &mut self,
        c: ClientIndex,
        burst: usize,
        mut handle: impl FnMut(&[u8], &mut Session, &mut Outputs<'_>) -> Flow,
    ) -> Result<usize, CloseReason> {
        let Some(slot) = self.slot(c) else {
            return Ok(0);
        };
        let mut n = 0;
        // The session is taken out for the duration, so `Outputs` can see all the others
        // without aliasing it; it is always put back.
        let Some(mut session) = self.sessions[slot].take() else {
            return Ok(0);
        };
        let mut result = Ok(());
        while n < burst && !session.close_after_flush && !session.paused {
            let frame = match self.readers[slot].next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.stats.framing_errors += 1;
                    result = Err(CloseReason::Framing(e));
                    break;
                }
            };
            n += 1;
            session.rx_messages += 1;
            self.stats.rx_frames += 1;
            let mut outputs = Outputs {
                outputs: &mut self.outputs,
                sessions: &self.sessions,
                current: (c, session.registered),
                tx_frames: &mut self.stats.tx_frames,
                dirty: &mut self.dirty,
            };
            match handle(frame, &mut session, &mut outputs) {
                Flow::Continue => {}
                Flow::CloseAfterFlush => session.close_after_flush = true,
                Flow::Yield => break,
            }
        }
        self.readers[slot].shrink_if_idle();
        self.sessions[slot] = Some(session);
        result.map(|()| n)
    }

    /// Queues `msg` for `c` (outside of [`SocketServer::process`]). False if `c` is gone.
    pub fn send(&mut self, c: ClientIndex, msg: &[u8]) -> bool {
        self.outputs().send(c, msg)
    }

    /// Every connection's output, for sending outside of [`SocketServer::process`] (replies to
    /// shared-memory clients' broadcasts, keepalives, events).
    pub fn outputs(&mut self) -> Outputs<'_> {
        Outputs {
            outputs: &mut self.outputs,
            sessions: &self.sessions,
            current: (ClientIndex(0), false),
            tx_frames: &mut self.stats.tx_frames,
            dirty: &mut self.dirty,
        }
    }

    /// Connections with output queued since the last call; the caller flushes each.
    pub fn take_dirty(&mut self) -> Vec<ClientIndex> {
        let slots = self.dirty.take();
        slots
            .into_iter()
            .filter_map(|s| self.sessions.get(s)?.as_ref().map(|x| x.index))
            .collect()
    }

    /// Bytes queued for `c`.
    pub fn queued(&self, c: ClientIndex) -> usize {
        self.slot(c).map_or(0, |s| self.outputs[s].len())
    }

    /// Writes what `c` has queued. `Ok(true)` when its output is empty, `Ok(false)` when the
    /// socket is full (wait for writability). Applies the output bound and the pause watermark.
    pub fn flush(&mut self, c: ClientIndex) -> Result<bool, CloseReason> {
        let Some(slot) = self.slot(c) else {
            return Ok(true);
        };
        let Some(session) = self.sessions[slot].as_mut() else {
            return Ok(true);
        };
        let out = &mut self.outputs[slot];
        if out.is_empty() {
            session.paused = false;
            session.stalled_since = None;
            return Ok(true);
        }
        let before = out.len();
        let done = match out.flush(session.fd.as_fd()) {
            Ok(FlushOutcome::Done) => true,
            Ok(FlushOutcome::WouldBlock) => false,
            Err(e) => return Err(CloseReason::Io(e)),
        };
        let queued = out.len();
        // The clock measures time since the output last moved, while any is queued.
        if queued == 0 {
            session.stalled_since = None;
        } else if queued < before || session.stalled_since.is_none() {
            session.stalled_since = Some(std::time::Instant::now());
        }
        if queued > self.config.max_output_bytes {
            self.stats.stuck_disconnects += 1;
            return Err(CloseReason::Stuck { queued });
        }
        // Stop taking requests from a client that does not read its replies, so it cannot grow
        // its output without bound; resume once it has drained to half.
        if queued > self.config.max_output_bytes / 2 {
            session.paused = true;
        } else if session.paused && queued <= self.config.max_output_bytes / 4 {
            session.paused = false;
        }
        Ok(done)
    }

    /// Clients whose output has not moved for longer than the stall timeout.
    pub fn stalled(&self, now: std::time::Instant) -> Vec<ClientIndex> {
        self.sessions
            .iter()
            .flatten()
            .filter(|s| {
                s.stalled_since
                    .is_some_and(|t| now.duration_since(t) > self.config.stall_timeout)
            })
            .map(|s| s.index)
            .collect()
    }

    /// Counts a client dropped for stalling (see [`SocketServer::stalled`]).
    pub fn note_stuck(&mut self) {
        self.stats.stuck_disconnects += 1;
    }

    /// True when `c` is paused or must close, so its input should not be processed.
    pub fn input_blocked(&self, c: ClientIndex) -> bool {
        self.session(c)
            .is_none_or(|s| s.paused || s.close_after_flush)
    }

    /// Closes `c`: its fd is closed and its slot freed. Returns the session for reaping.
    /// The caller removes the fd from its poller first.
    pub fn close(&mut self, c: ClientIndex) -> Option<Session> {
        let slot = self.slot(c)?;
        let session = self.sessions[slot].take()?;
        self.readers[slot] = FrameReader::new(self.config.max_message_len);
        self.outputs[slot] = OutputBuffer::new();
        self.free.push(slot);
        self.n_sessions -= 1;
        self.stats.closed += 1;
        Some(session)
    }

    /// Memory held for `c`'s buffers (input capacity + queued output).
    pub fn buffer_bytes(&self, c: ClientIndex) -> usize {
        self.slot(c)
            .map_or(0, |s| self.readers[s].capacity() + self.outputs[s].len())
    }

    /// Every live client index.
    pub fn clients(&self) -> Vec<ClientIndex> {
        self.sessions.iter().flatten().map(|s| s.index).collect()
    }

    /// The raw fd number of `c` (for display).
    pub fn raw_fd(&self, c: ClientIndex) -> Option<i32> {
        self.session(c).map(|s| s.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{HEADER_LEN, header};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn server(dir: &Path) -> SocketServer {
        SocketServer::bind(SocketConfig::new(dir.join("api.sock"))).unwrap()
    }

    fn accept_one(s: &mut SocketServer) -> ClientIndex {
        for _ in 0..1000 {
            if let Some(Accepted::Client(c)) = s.accept().unwrap() {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("no connection accepted");
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vlibsocket-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn indexes_carry_the_socket_bit_and_a_generation() {
        let i = make_index(5, 3);
        assert!(is_socket_index(i));
        assert_eq!(i.0 & SLOT_MASK, 5);
        assert_ne!(make_index(5, 4), i);
        assert!(!is_socket_index(ClientIndex(5 << 8)));
    }

    #[test]
    fn echo_frames_between_client_and_server() {
        let dir = tmpdir("echo");
        let mut s = server(&dir);
        let mut client = UnixStream::connect(dir.join("api.sock")).unwrap();
        let c = accept_one(&mut s);
        assert_eq!(s.session(c).unwrap().peer.pid, std::process::id() as i32);
        let mut bytes = header(3).to_vec();
        bytes.extend_from_slice(&[0, 9, 1]);
        bytes.extend_from_slice(&header(2));
        bytes.extend_from_slice(&[0, 9]);
        client.write_all(&bytes).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            s.read(c);
            s.process(c, 64, |f, session, out| {
                seen.push(f.to_vec());
                assert!(out.send(session.index(), f));
                Flow::Continue
            })
            .unwrap();
        }
        assert_eq!(seen, vec![vec![0, 9, 1], vec![0, 9]]);
        assert!(s.flush(c).unwrap());
        let mut back = vec![0u8; bytes.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, bytes);
        drop(client);
        assert_eq!(s.read(c), ReadStatus::Closed(None));
        assert!(s.close(c).is_some());
        assert!(s.session(c).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stale_index_does_not_reach_the_slot_reuser() {
        let dir = tmpdir("stale");
        let mut s = server(&dir);
        let _a = UnixStream::connect(dir.join("api.sock")).unwrap();
        let first = accept_one(&mut s);
        s.close(first);
        let _b = UnixStream::connect(dir.join("api.sock")).unwrap();
        let second = accept_one(&mut s);
        assert_eq!(first.0 & SLOT_MASK, second.0 & SLOT_MASK, "slot reused");
        assert!(!s.send(first, &[0, 1]));
        assert!(s.send(second, &[0, 1]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn oversized_frame_closes_with_framing_error() {
        let dir = tmpdir("big");
        let mut cfg = SocketConfig::new(dir.join("api.sock"));
        cfg.max_message_len = 100;
        let mut s = SocketServer::bind(cfg).unwrap();
        let mut client = UnixStream::connect(dir.join("api.sock")).unwrap();
        let c = accept_one(&mut s);
        client.write_all(&header(0xffff_ffff)).unwrap();
        let mut r = Ok(0);
        for _ in 0..100 {
            s.read(c);
            r = s.process(c, 8, |_, _, _| Flow::Continue);
            if r.is_err() {
                break;
            }
        }
        assert!(matches!(
            r,
            Err(CloseReason::Framing(FrameError::TooLarge { .. }))
        ));
        assert_eq!(s.stats().framing_errors, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_client_that_never_reads_is_paused_then_disconnected() {
        let dir = tmpdir("stuck");
        let mut cfg = SocketConfig::new(dir.join("api.sock"));
        cfg.max_output_bytes = 1 << 20;
        let mut s = SocketServer::bind(cfg).unwrap();
        let _client = UnixStream::connect(dir.join("api.sock")).unwrap();
        let c = accept_one(&mut s);
        let msg = vec![7u8; 64 << 10];
        let mut paused_seen = false;
        let mut outcome = Ok(true);
        for _ in 0..200 {
            s.send(c, &msg);
            outcome = s.flush(c);
            if outcome.is_err() {
                break;
            }
            paused_seen |= s.input_blocked(c);
        }
        assert!(paused_seen, "input paused before the bound");
        assert!(matches!(outcome, Err(CloseReason::Stuck { queued }) if queued > (1 << 20)));
        assert!(s.queued(c) > HEADER_LEN);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn allow_list_refuses_other_uids() {
        let dir = tmpdir("allow");
        let mut cfg = SocketConfig::new(dir.join("api.sock"));
        cfg.allow_uids = vec![u32::MAX - 1];
        let mut s = SocketServer::bind(cfg).unwrap();
        let _client = UnixStream::connect(dir.join("api.sock")).unwrap();
        let mut got = None;
        for _ in 0..1000 {
            if let Some(a) = s.accept().unwrap() {
                got = Some(a);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(matches!(got, Some(Accepted::RefusedCredentials(_))));
        assert_eq!(s.len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_live_server_is_not_replaced() {
        let dir = tmpdir("live");
        let _s = server(&dir);
        let e = SocketServer::bind(SocketConfig::new(dir.join("api.sock"))).unwrap_err();
        assert!(matches!(e, SocketListenError::AddrInUse { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
