//! The server: one event-loop thread over the socket listener, every client connection, and the
//! other event sources, dispatching each message to its handler.
//!
//! Per turn: wait in epoll (or not at all when work is pending), read each ready connection once
//! and handle a bounded burst of its frames, revisit connections that still have whole frames
//! buffered, write every output that changed (one `sendmsg` per connection), then run due timers.
//! A connection whose output passes half the bound stops being read until it drains; past the
//! bound it is dropped as stuck, so a client that never reads cannot grow the server's memory.
//!
//! Messages that change registrations or need the whole server (`sockclnt_create`,
//! `sockclnt_delete`, the pivot requests, `cli_inband`) are handled here; everything else goes to
//! the [`Dispatcher`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vlibapi::dispatch::{DispatchError, Outbox, SendError};
use vlibapi::msgs::{memclnt, memfd, vlib_api, vpe};
use vlibapi::schema::Module as SchemaModule;
use vlibapi::wire::{self, Message};
use vlibapi::{ApiBuilder, ApiError, ClientIndex, Dispatcher, MessageTable};
use vlibmemory::server::{ShmConfig, ShmServer};
use vlibsocket::server::{
    Accepted, CloseReason, Flow, Outputs, ReadStatus, Session, SocketConfig, SocketServer,
};
use vppinfra::sync::Arc;
use vppinfra::unformat::Input;

use crate::cli::{Cli, CliResult, Lookup};
use crate::evloop::{Interest, Poller, Readiness, Timers};
use crate::log::{Level, Log};

const TOKEN_LISTENER: u64 = 0;
const TOKEN_SHUTDOWN: u64 = 1;
const TOKEN_SIGNAL: u64 = 2;
pub(crate) const TOKEN_NAMED_DOORBELL: u64 = 3;
const TOKEN_SOCKET: u64 = 1 << 32;
pub(crate) const TOKEN_SHM: u64 = 2 << 32;
const TOKEN_SOURCE: u64 = 4 << 32;

/// Frames handled per connection per turn, so one busy client cannot starve the others.
pub(crate) const BURST: usize = 64;
/// How often clients with unmoving output are looked for.
const STALL_CHECK: Duration = Duration::from_millis(500);
/// Malformed messages tolerated from one client before it is disconnected.
pub(crate) const MAX_BAD_MESSAGES: u64 = 100;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The socket transport's settings.
    pub socket: SocketConfig,
    /// How much to log.
    pub log_level: Level,
    /// Name reported by `show_version`.
    pub program: String,
    /// The shared-memory transport's settings.
    pub shm: ShmConfig,
    /// How the loop waits for shared-memory clients.
    pub shm_wait: ShmWait,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: SocketConfig::new(vlibsocket::server::default_socket_path()),
            log_level: Level::Info,
            program: "api-server".to_owned(),
            shm: ShmConfig::default(),
            shm_wait: ShmWait::default(),
        }
    }
}

/// How the event loop waits when shared-memory clients are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmWait {
    /// Sleep in epoll at once when idle; clients ring a doorbell to wake it.
    Park,
    /// Keep polling the channels for this long after the last message, then sleep.
    Spin(Duration),
    /// Never sleep: poll the channels continuously (a busy core, the lowest latency).
    Poll,
}

impl Default for ShmWait {
    fn default() -> Self {
        Self::Spin(Duration::from_micros(50))
    }
}

impl std::str::FromStr for ShmWait {
    type Err = String;

    /// `park`, `poll`, or `spin:<microseconds>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "park" => Ok(Self::Park),
            "poll" => Ok(Self::Poll),
            _ => s
                .strip_prefix("spin:")
                .and_then(|us| us.parse::<u64>().ok())
                .map(|us| Self::Spin(Duration::from_micros(us)))
                .ok_or_else(|| format!("`{s}`: expected park, poll or spin:<microseconds>")),
        }
    }
}

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The API socket.
    Socket,
    /// A slot of the named shared-memory segment.
    SharedMemory,
    /// A private shared-memory segment reached through the socket (the pivot).
    SocketSharedMemory,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Socket => "socket",
            Self::SharedMemory => "shm",
            Self::SocketSharedMemory => "socket+shm",
        })
    }
}

/// What the server knows about a client, for handlers and `show` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// Its index.
    pub index: ClientIndex,
    /// The name it registered with.
    pub name: String,
    /// Its transport.
    pub transport: Transport,
    /// Its pid (from SO_PEERCRED).
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
}

/// The registered clients, shared with handlers (for dumps and events).
#[derive(Debug, Default)]
pub struct Directory {
    pub(crate) clients: BTreeMap<ClientIndex, ClientInfo>,
}

impl Directory {
    /// Every registered client, in index order.
    pub fn clients(&self) -> impl Iterator<Item = &ClientInfo> {
        self.clients.values()
    }

    /// One client.
    pub fn get(&self, c: ClientIndex) -> Option<&ClientInfo> {
        self.clients.get(&c)
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// A shared handle to the [`Directory`].
pub type DirectoryHandle = Rc<RefCell<Directory>>;

/// Called when a client leaves or is reaped.
pub type ReaperFn = Box<dyn FnMut(ClientIndex)>;

/// What a plugin gets to register itself.
pub struct PluginRegistrar<'a> {
    api: &'a mut ApiBuilder,
    cli: &'a mut Cli,
    reapers: &'a mut Vec<ReaperFn>,
    sources: &'a mut Vec<crate::source::EventSource>,
    directory: DirectoryHandle,
}

impl fmt::Debug for PluginRegistrar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRegistrar").finish_non_exhaustive()
    }
}

impl PluginRegistrar<'_> {
    /// Adds a module's messages to the table; returns its first message ID.
    pub fn add_module(&mut self, module: SchemaModule) -> Result<u16, ServerBuildError> {
        self.api
            .add_module(module)
            .map_err(|e| ServerBuildError::Module(e.to_string()))
    }

    /// The API builder, to register handlers.
    pub fn api(&mut self) -> &mut ApiBuilder {
        self.api
    }

    /// Adds a CLI command (`path` is space-separated words).
    pub fn cli_command(
        &mut self,
        path: &str,
        help: &str,
        run: impl FnMut(&mut Input<'_>) -> CliResult + 'static,
    ) {
        self.cli.add(path, help, Box::new(run));
    }

    /// Registers a callback run for every client that leaves or is reaped.
    pub fn on_client_gone(&mut self, f: impl FnMut(ClientIndex) + 'static) {
        self.reapers.push(Box::new(f));
    }

    /// The client directory.
    pub fn directory(&self) -> DirectoryHandle {
        self.directory.clone()
    }

    /// Watches `fd` in the server's loop: `on_ready` runs whenever it is readable (it must
    /// drain it) and may send events to clients. `name` appears in logs.
    pub fn watch_fd(
        &mut self,
        name: &str,
        fd: std::os::fd::OwnedFd,
        on_ready: impl FnMut(&std::os::fd::OwnedFd, &mut crate::source::SourceCtx<'_, '_, '_>) + 'static,
    ) {
        self.sources.push(crate::source::EventSource {
            fd,
            name: name.to_owned(),
            on_ready: Box::new(on_ready),
        });
    }
}

/// A module that adds messages, handlers and commands to the server.
pub trait Plugin {
    /// The plugin's name (for logs).
    fn name(&self) -> &str;
    /// Registers the plugin's module(s), handlers, CLI commands and reaper callbacks.
    fn install(self: Box<Self>, r: &mut PluginRegistrar<'_>) -> Result<(), ServerBuildError>;
}

/// Why a server could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerBuildError {
    /// The socket could not be set up.
    Socket(vlibsocket::server::SocketBindError),
    /// A module could not be added to the table.
    Module(String),
    /// A handler could not be registered.
    Handler(String),
    /// epoll, eventfd or signalfd failed.
    Os(Errno),
    /// The shared-memory transport could not start (the named segment).
    Shm(String),
}

impl fmt::Display for ServerBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(e) => write!(f, "cannot listen: {e}"),
            Self::Module(e) => write!(f, "cannot add module: {e}"),
            Self::Handler(e) => write!(f, "cannot register handler: {e}"),
            Self::Os(e) => write!(f, "system call failed: {e}"),
            Self::Shm(e) => write!(f, "shared memory: {e}"),
        }
    }
}

impl std::error::Error for ServerBuildError {}

impl From<Errno> for ServerBuildError {
    fn from(e: Errno) -> Self {
        Self::Os(e)
    }
}

impl From<vlibapi::dispatch::RegisterError> for ServerBuildError {
    fn from(e: vlibapi::dispatch::RegisterError) -> Self {
        Self::Handler(e.to_string())
    }
}

/// Why the running server stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerRunError {
    /// epoll itself failed.
    Poll(Errno),
}

impl fmt::Display for ServerRunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Poll(e) => write!(f, "epoll failed: {e}"),
        }
    }
}

impl std::error::Error for ServerRunError {}

/// Asks a running server to stop, from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    fd: Arc<EventFd>,
}

impl ShutdownHandle {
    /// Makes the server stop at its next turn.
    pub fn shutdown(&self) {
        let _ = self.fd.write(1);
    }
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: ServerConfig,
    plugins: Vec<Box<dyn Plugin>>,
    handle_signals: bool,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ServerBuilder {
    /// The whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The socket path.
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.socket.path = path.into();
        self
    }

    /// The log level.
    pub fn log_level(mut self, level: Level) -> Self {
        self.config.log_level = level;
        self
    }

    /// Adds a plugin (modules register in the order added, after the core modules).
    pub fn plugin(mut self, plugin: impl Plugin + 'static) -> Self {
        self.plugins.push(Box::new(plugin));
        self
    }

    /// Stops on SIGINT and SIGTERM (blocks them in the calling thread and reads a signalfd).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Builds the table and handlers, and starts listening.
    pub fn build(self) -> Result<Server, ServerBuildError> {
        Server::build(self)
    }
}

/// Message IDs the server handles itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) memclnt_delete: u16,
    pub(crate) memclnt_delete_reply: u16,
    pub(crate) memclnt_keepalive: u16,
    pub(crate) memclnt_keepalive_reply: u16,
    sockclnt_create: u16,
    sockclnt_delete: u16,
    sockclnt_delete_reply: u16,
    pub(crate) sock_init_shm: u16,
    pub(crate) sock_init_shm_reply: u16,
    pub(crate) memfd_segment_create: u16,
    pub(crate) memfd_segment_create_reply: u16,
    pub(crate) memclnt_create: u16,
    pub(crate) memclnt_create_v2: u16,
    pub(crate) memclnt_create_reply: u16,
    pub(crate) memclnt_create_v2_reply: u16,
    pub(crate) cli_inband: u16,
    pub(crate) cli_inband_reply: u16,
}

impl Ids {
    fn resolve(t: &MessageTable) -> Self {
        let id = |n: &str| t.id(n).expect("core messages are always in the table");
        Self {
            memclnt_delete: id(memclnt::MemclntDelete::NAME_CRC),
            memclnt_delete_reply: id(memclnt::MemclntDeleteReply::NAME_CRC),
            memclnt_keepalive: id(memclnt::MemclntKeepalive::NAME_CRC),
            memclnt_keepalive_reply: id(memclnt::MemclntKeepaliveReply::NAME_CRC),
            sockclnt_create: id(memclnt::SockclntCreate::NAME_CRC),
            sockclnt_delete: id(memclnt::SockclntDelete::NAME_CRC),
            sockclnt_delete_reply: id(memclnt::SockclntDeleteReply::NAME_CRC),
            sock_init_shm: id(memclnt::SockInitShm::NAME_CRC),
            sock_init_shm_reply: id(memclnt::SockInitShmReply::NAME_CRC),
            memfd_segment_create: id(memfd::MemfdSegmentCreate::NAME_CRC),
            memfd_segment_create_reply: id(memfd::MemfdSegmentCreateReply::NAME_CRC),
            memclnt_create: id(memclnt::MemclntCreate::NAME_CRC),
            memclnt_create_v2: id(memclnt::MemclntCreateV2::NAME_CRC),
            memclnt_create_reply: id(memclnt::MemclntCreateReply::NAME_CRC),
            memclnt_create_v2_reply: id(memclnt::MemclntCreateV2Reply::NAME_CRC),
            cli_inband: id(vpe::CliInband::NAME_CRC),
            cli_inband_reply: id(vpe::CliInbandReply::NAME_CRC),
        }
    }
}

/// Server-wide counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerStats {
    /// Messages rejected by validation (too short, bad length, bad string).
    pub malformed: u64,
    /// Messages with an ID the table does not have.
    pub unknown_id: u64,
    /// Messages with no handler.
    pub no_handler: u64,
    /// Clients disconnected for sending garbage.
    pub garbage_disconnects: u64,
    /// Loop turns.
    pub turns: u64,
    /// Shared-memory messages whose `client_index` was not the sender's registration.
    pub wrong_client_index: u64,
    /// Shared-memory clients reaped after unanswered pings.
    pub reaped_by_keepalive: u64,
    /// Pivots to shared memory completed (fds sent).
    pub pivots: u64,
    /// Shared-memory clients dropped for keeping the server waiting past the stall timeout.
    pub shm_stalled: u64,
}

/// Time spent asleep in epoll per turn, in buckets (`show api histogram`).
#[derive(Debug, Default, Clone)]
pub struct SleepHistogram {
    /// Upper bounds in microseconds of each bucket but the last.
    bounds_us: [u64; 6],
    counts: [u64; 7],
}

impl SleepHistogram {
    fn new() -> Self {
        Self {
            bounds_us: [10, 100, 1_000, 10_000, 100_000, 1_000_000],
            counts: [0; 7],
        }
    }

    fn record(&mut self, slept: Duration) {
        let us = slept.as_micros() as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|&b| us < b)
            .unwrap_or(self.bounds_us.len());
        self.counts[i] += 1;
    }

    fn render(&self) -> String {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return "No control-plane activity.\n".to_owned();
        }
        let mut out = String::new();
        let mut lo = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            let label = match self.bounds_us.get(i) {
                Some(&hi) => format!("{lo:>7} - {hi:<7} us"),
                None => format!("{lo:>7}+{:<9} us", ""),
            };
            out.push_str(&format!(
                "Sleep {label}: {n:>10} {:6.2}%\n",
                n as f64 * 100.0 / total as f64
            ));
            lo = self.bounds_us.get(i).copied().unwrap_or(lo);
        }
        out
    }
}

/// Work that needs the whole server, deferred until the current burst has ended.
#[derive(Debug)]
pub(crate) enum Deferred {
    Cli {
        client: ClientIndex,
        context: u32,
        cmd: String,
    },
    /// `sock_init_shm` or `memfd_segment_create`.
    Pivot {
        client: ClientIndex,
        reply_id: u16,
        context: u32,
        size: u64,
        configs: Vec<u64>,
    },
}

/// The running server.
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) log: Log,
    pub(crate) poller: Poller,
    pub(crate) timers: Timers<Timer>,
    pub(crate) socket: SocketServer,
    pub(crate) shm: ShmServer,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) directory: DirectoryHandle,
    cli: Cli,
    pub(crate) reapers: Vec<ReaperFn>,
    shutdown: ShutdownHandle,
    signals: Option<SignalFd>,
    pub(crate) ids: Ids,
    create_reply: Vec<u8>,
    interest: BTreeMap<ClientIndex, Interest>,
    pending: Vec<ClientIndex>,
    pub(crate) deferred: Vec<Deferred>,
    stopping: bool,
    pub(crate) stats: ServerStats,
    histogram: SleepHistogram,
    started: Instant,
    pub(crate) pid: u32,
    /// Pivots whose fds wait for the reply to leave the socket.
    pub(crate) pending_fds: Vec<crate::shm::PendingFds>,
    /// Plugins' fds and callbacks.
    sources: Vec<crate::source::EventSource>,
    /// Per message ID: whether the message has a `client_index` right after its ID.
    pub(crate) has_client_index: Vec<bool>,
    /// Buffer the shared-memory messages are copied into.
    pub(crate) shm_buf: Vec<u8>,
    /// When the loop last saw a shared-memory message (for the spin budget).
    pub(crate) last_shm_activity: Instant,
    /// Channels still to visit in the current poll (kept to reuse its allocation).
    pub(crate) shm_active: Vec<vlibmemory::server::ChannelId>,
    /// Where the next poll starts, one channel further each time.
    pub(crate) shm_cursor: usize,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("socket", &self.socket.path())
            .field("clients", &self.directory.borrow().len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Retry accepting after the process ran out of fds.
    ResumeAccept,
    /// Look for clients whose output stopped moving.
    StallCheck,
    /// The keepalive scan of shared-memory clients.
    Keepalive,
    /// Look again at pivots waiting for their reply to leave the socket.
    PendingFds,
}

/// Routes handlers' sends to each client's transport.
pub(crate) struct Routes<'a, 'b> {
    pub(crate) sock: &'a mut Outputs<'b>,
    pub(crate) shm: &'a mut ShmServer,
}

impl Outbox for Routes<'_, '_> {
    fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        if vlibsocket::server::is_socket_index(to) {
            return if self.sock.send(to, msg) {
                Ok(())
            } else {
                Err(SendError::UnknownClient(to))
            };
        }
        self.shm.send(to, msg).map_err(|e| match e {
            vlibmemory::server::ShmSendError::UnknownClient => SendError::UnknownClient(to),
            vlibmemory::server::ShmSendError::Stuck { .. } => SendError::QueueFull,
            _ => SendError::Disconnected,
        })
    }

    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        self.sock.for_each_client(f);
        self.shm.for_each_client(f);
    }
}

impl Server {
    /// A builder with default settings.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::default(),
            plugins: Vec::new(),
            handle_signals: false,
        }
    }

    fn build(b: ServerBuilder) -> Result<Server, ServerBuildError> {
        let log = Log::new(b.config.log_level);
        let pid = std::process::id();
        let directory: DirectoryHandle = Rc::default();
        let mut api = ApiBuilder::with_table(MessageTable::with_core());
        let mut cli = Cli::new();
        let mut reapers: Vec<ReaperFn> = Vec::new();
        let mut sources: Vec<crate::source::EventSource> = Vec::new();
        for p in b.plugins {
            let name = p.name().to_owned();
            let mut r = PluginRegistrar {
                api: &mut api,
                cli: &mut cli,
                reapers: &mut reapers,
                sources: &mut sources,
                directory: directory.clone(),
            };
            p.install(&mut r)?;
            log.debug(format_args!("plugin {name} installed"));
        }
        api.add_memclnt_handlers(pid)?;
        let program = b.config.program.clone();
        api.handle(move |_ctx, _req: vpe::ShowVersion| {
            Ok(vpe::ShowVersionReply {
                program: program.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                build_date: String::new(),
                build_directory: env!("CARGO_MANIFEST_DIR").to_owned(),
                ..Default::default()
            })
        })?;
        let dir = directory.clone();
        api.handle_stream(move |ctx, _req: vlib_api::ApiClientDump| {
            let clients: Vec<ClientInfo> = dir.borrow().clients().cloned().collect();
            for c in clients {
                let details = vlib_api::ApiClientDetails {
                    index: c.index.0,
                    name: c.name,
                    transport: match c.transport {
                        Transport::Socket => {
                            vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET
                        }
                        Transport::SharedMemory => {
                            vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SHM
                        }
                        Transport::SocketSharedMemory => {
                            vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET_SHM
                        }
                    },
                    pid: c.pid as u32,
                    uid: c.uid,
                    ..Default::default()
                };
                ctx.reply(&details).map_err(|_| ApiError::Unspecified)?;
            }
            Ok(())
        })?;
        for (path, help) in [
            ("show version", "server name, version and uptime"),
            ("show api clients", "connected API clients"),
            (
                "show api ring",
                "message rings of every shared-memory segment",
            ),
            (
                "show api message-table",
                "every message ID and its name_crc",
            ),
            ("show api plugins", "modules and their message ID ranges"),
            (
                "show api histogram",
                "how long the server slept between turns",
            ),
            (
                "show api counters",
                "dispatch, validation and transport counters",
            ),
            ("api trace", "api trace on|off|clear|dump [rx|tx]"),
            ("help", "this list"),
        ] {
            cli.add_builtin(path, help);
        }
        let dispatcher = api.build();
        let ids = Ids::resolve(dispatcher.table());
        let create_reply = create_reply_template(dispatcher.table(), ids.sockclnt_create + 1)?;

        // The named segment exists before the socket accepts: a client that sees the server up
        // can attach by name at once.
        let shm = ShmServer::new(b.config.shm.clone(), create_reply.clone())
            .map_err(|e| ServerBuildError::Shm(e.to_string()))?;
        let socket =
            SocketServer::bind(b.config.socket.clone()).map_err(ServerBuildError::Socket)?;
        let poller = Poller::new(256)?;
        poller.add(socket.listener_fd(), TOKEN_LISTENER, Interest::Read)?;
        let shutdown = ShutdownHandle {
            fd: Arc::new(EventFd::from_flags(
                EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
            )?),
        };
        poller.add(shutdown.fd.as_fd(), TOKEN_SHUTDOWN, Interest::Read)?;
        let signals = if b.handle_signals {
            let mut mask = SigSet::empty();
            mask.add(Signal::SIGINT);
            mask.add(Signal::SIGTERM);
            mask.thread_block()?;
            let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
            poller.add(sfd.as_fd(), TOKEN_SIGNAL, Interest::Read)?;
            Some(sfd)
        } else {
            None
        };
        if let Some(fd) = shm.named_doorbell_fd() {
            poller.add(fd, TOKEN_NAMED_DOORBELL, Interest::Read)?;
        }
        for (i, source) in sources.iter().enumerate() {
            poller.add(&source.fd, TOKEN_SOURCE | i as u64, Interest::Read)?;
        }
        let mut timers = Timers::default();
        let now = Instant::now();
        timers.schedule(now + STALL_CHECK, Timer::StallCheck);
        timers.schedule(now + b.config.shm.keepalive_interval, Timer::Keepalive);
        let has_client_index = (0..=dispatcher.table().len() as u16)
            .map(|id| {
                dispatcher
                    .table()
                    .info(id)
                    .and_then(|m| m.def.fields.first())
                    .is_some_and(|f| f.name == "client_index")
            })
            .collect();
        log.info(format_args!(
            "listening on {} (pid {pid}, {} messages in the table)",
            socket.path().display(),
            dispatcher.table().len()
        ));
        if let Some(named) = &b.config.shm.named {
            log.info(format_args!(
                "named shared-memory segment {} with {} client slots",
                vlibmemory::server::named_segment_name(named.prefix.as_deref())
                    .map(|n| n.path().display().to_string())
                    .unwrap_or_default(),
                named.slots
            ));
        }
        Ok(Server {
            config: b.config,
            log,
            poller,
            timers,
            socket,
            shm,
            dispatcher,
            directory,
            cli,
            reapers,
            shutdown,
            signals,
            ids,
            create_reply,
            interest: BTreeMap::new(),
            pending: Vec::new(),
            deferred: Vec::new(),
            stopping: false,
            stats: ServerStats::default(),
            histogram: SleepHistogram::new(),
            started: Instant::now(),
            pid,
            pending_fds: Vec::new(),
            sources,
            has_client_index,
            shm_buf: Vec::with_capacity(4096),
            last_shm_activity: Instant::now(),
            shm_active: Vec::new(),
            shm_cursor: 0,
        })
    }

    /// A handle that stops the server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The socket path.
    pub fn socket_path(&self) -> &std::path::Path {
        self.socket.path()
    }

    /// The message table.
    pub fn table(&self) -> &MessageTable {
        self.dispatcher.table()
    }

    /// The client directory.
    pub fn directory(&self) -> DirectoryHandle {
        self.directory.clone()
    }

    /// Counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Runs until shut down (a [`ShutdownHandle`] or, if enabled, SIGINT/SIGTERM). Closes every
    /// client and removes the socket file on the way out.
    pub fn run(&mut self) -> Result<(), ServerRunError> {
        let mut ready: Vec<(u64, Readiness)> = Vec::with_capacity(256);
        while !self.stopping {
            self.turn(&mut ready, None)?;
        }
        self.stop();
        Ok(())
    }

    /// Runs one turn of the loop, waiting at most `max_wait` for events; false once the server
    /// has been asked to stop. For harnesses that drive an in-process server from their own
    /// thread, one deterministic step at a time (the fuzz targets and their regression tests);
    /// a server driven this way is not stopped for them: drop it, or call [`Server::run`].
    #[doc(hidden)]
    pub fn run_turn(&mut self, max_wait: Duration) -> Result<bool, ServerRunError> {
        let mut ready = Vec::new();
        self.turn(&mut ready, Some(max_wait))?;
        Ok(!self.stopping)
    }

    /// One turn: wait (at most `max_wait`, if given), handle what is ready, flush, run timers.
    fn turn(
        &mut self,
        ready: &mut Vec<(u64, Readiness)>,
        max_wait: Option<Duration>,
    ) -> Result<(), ServerRunError> {
        self.stats.turns += 1;
        let now = Instant::now();
        // Replies waiting for a client that drained none of them since the last try, and
        // clients not read from for now (their backlog is too large, or their heap lock is
        // held), are looked at again in a millisecond, not at once: nothing tells the loop when
        // such a client reads or lets go, and looking at once would spin.
        let backlog = self.shm.has_backlog();
        let busy = !self.pending.is_empty()
            || !self.deferred.is_empty()
            || (backlog && self.shm.backlog_moved())
            || self.pivot_eager();
        let mut timeout = if busy {
            Some(Duration::ZERO)
        } else {
            self.timers.next_timeout(now)
        };
        if !busy && (backlog || self.shm.any_held()) {
            let retry = Duration::from_millis(1);
            timeout = Some(timeout.map_or(retry, |t| t.min(retry)));
        }
        if let Some(cap) = max_wait {
            timeout = Some(timeout.map_or(cap, |t| t.min(cap)));
        }
        let mut parked = false;
        if timeout != Some(Duration::ZERO) && !self.shm.is_empty() {
            let spinning = match self.config.shm_wait {
                ShmWait::Poll => true,
                ShmWait::Spin(budget) => now.duration_since(self.last_shm_activity) < budget,
                ShmWait::Park => false,
            };
            if spinning {
                // Poll the channels a while before looking at epoll again.
                self.spin_shm();
                timeout = Some(Duration::ZERO);
            } else {
                match self.shm.prepare_park() {
                    Some(reliable) => {
                        parked = true;
                        if !reliable {
                            // A wake could be missed: look again soon.
                            let nap = Duration::from_millis(1);
                            timeout = Some(timeout.map_or(nap, |t| t.min(nap)));
                        }
                    }
                    None => timeout = Some(Duration::ZERO),
                }
            }
        }
        ready.clear();
        let waited = self.poller.wait(timeout, |t, r| ready.push((t, r)));
        if parked {
            self.shm.finish_park();
        }
        waited.map_err(ServerRunError::Poll)?;
        if timeout != Some(Duration::ZERO) {
            self.histogram.record(now.elapsed());
        }
        // Shared-memory clients are polled between socket events too, once the events have
        // taken longer than a poll's budget: a turn with much socket work (accepts, pivots,
        // large dumps) must not keep them waiting for all of it.
        let mut polled = Instant::now();
        for &(token, r) in ready.iter() {
            self.on_ready(token, r);
            if polled.elapsed() > crate::shm::SHM_POLL_BUDGET && !self.shm.is_empty() {
                self.flush_outputs();
                self.poll_shm();
                polled = Instant::now();
            }
        }
        // Socket replies leave before the loop turns to shared memory, whose polling may use
        // the rest of its time budget.
        self.flush_outputs();
        self.poll_shm();
        self.process_pending();
        self.flush_outputs();
        self.flush_shm_backlogs();
        if self.shm.has_closing() {
            self.shm.reap_drained();
        }
        self.send_pending_fds();
        self.run_timers();
        Ok(())
    }

    fn on_ready(&mut self, token: u64, r: Readiness) {
        match token {
            TOKEN_LISTENER => self.accept_all(),
            TOKEN_SHUTDOWN => {
                let _ = self.shutdown.fd.read();
                self.log.info(format_args!("shutdown requested"));
                self.stopping = true;
            }
            TOKEN_SIGNAL => {
                if let Some(sfd) = self.signals.as_mut() {
                    if let Ok(Some(info)) = sfd.read_signal() {
                        self.log
                            .info(format_args!("signal {} received, stopping", info.ssi_signo));
                        self.stopping = true;
                    }
                }
            }
            TOKEN_NAMED_DOORBELL => self.on_named_doorbell(),
            t if t & TOKEN_SOURCE == TOKEN_SOURCE => self.run_source((t & 0xffff_ffff) as usize),
            t if t & TOKEN_SHM == TOKEN_SHM => {
                // The doorbell only wakes the loop; the channel is polled every turn.
                self.shm.drain_doorbell((t & 0xffff_ffff) as usize);
            }
            t if t & TOKEN_SOCKET != 0 => {
                let c = ClientIndex(t as u32);
                self.on_socket_ready(c, r);
            }
            _ => {}
        }
    }

    fn run_source(&mut self, i: usize) {
        let Some(source) = self.sources.get_mut(i) else {
            return;
        };
        let mut outputs = self.socket.outputs();
        let mut routes = Routes {
            sock: &mut outputs,
            shm: &mut self.shm,
        };
        let mut ctx = crate::source::SourceCtx {
            dispatcher: &mut self.dispatcher,
            routes: &mut routes,
            directory: &self.directory,
        };
        (source.on_ready)(&source.fd, &mut ctx);
    }

    fn accept_all(&mut self) {
        loop {
            match self.socket.accept() {
                Ok(None) => return,
                Ok(Some(Accepted::Client(c))) => {
                    let fd = self.socket.session(c).map(|s| s.fd().as_raw_fd());
                    let added = self.socket.session(c).map(|s| {
                        self.poller
                            .add(s.fd(), TOKEN_SOCKET | u64::from(c.0), Interest::Read)
                    });
                    if let Some(Err(e)) = added {
                        self.log
                            .error(format_args!("cannot watch new client fd {fd:?}: {e}"));
                        self.socket.close(c);
                        continue;
                    }
                    self.interest.insert(c, Interest::Read);
                    if let Some(s) = self.socket.session(c) {
                        self.log.debug(format_args!(
                            "client {:#010x} connected (pid {}, uid {})",
                            c.0, s.peer.pid, s.peer.uid
                        ));
                    }
                }
                Ok(Some(Accepted::RefusedCredentials(p))) => self.log.warn(format_args!(
                    "refused connection from pid {} uid {} gid {}: not on the allow-list",
                    p.pid, p.uid, p.gid
                )),
                Ok(Some(Accepted::RefusedFull)) => self.log.warn(format_args!(
                    "refused connection: {} clients connected",
                    self.socket.len()
                )),
                Err(e) => {
                    // Out of fds (or similar): stop accepting for a moment rather than spin on a
                    // listener that stays readable.
                    self.log.error(format_args!(
                        "accept failed: {e}; pausing accepts for 100 ms"
                    ));
                    let _ = self.poller.delete(self.socket.listener_fd());
                    self.timers.schedule(
                        Instant::now() + Duration::from_millis(100),
                        Timer::ResumeAccept,
                    );
                    return;
                }
            }
        }
    }

    fn on_socket_ready(&mut self, c: ClientIndex, r: Readiness) {
        if self.socket.session(c).is_none() {
            return;
        }
        if r.writable {
            if let Err(reason) = self.socket.flush(c) {
                self.close_client(c, reason);
                return;
            }
            // Drained (or not): the interest follows. New output from the requests below is
            // flushed, and its interest set, at the end of the turn.
            self.update_interest(c);
        }
        if (r.readable || r.closed) && !self.socket.input_blocked(c) {
            match self.socket.read(c) {
                ReadStatus::Closed(errno) => {
                    // Handle what it sent before leaving (a delete, for instance), then close.
                    self.process_client(c);
                    self.flush_one(c);
                    let reason = errno.map_or(CloseReason::PeerClosed, CloseReason::Io);
                    self.close_client(c, reason);
                    return;
                }
                ReadStatus::Data | ReadStatus::Idle => {}
            }
        }
        self.process_client(c);
    }

    /// Handles up to a burst of `c`'s frames; remembers it if more remain.
    fn process_client(&mut self, c: ClientIndex) {
        if self.socket.input_blocked(c) {
            return;
        }
        let Server {
            socket,
            dispatcher,
            directory,
            ids,
            create_reply,
            deferred,
            stats,
            log,
            shm,
            ..
        } = self;
        let result = socket.process(c, BURST, |frame, session, outputs| {
            handle_socket_frame(
                frame,
                session,
                outputs,
                dispatcher,
                directory,
                ids,
                create_reply,
                deferred,
                stats,
                log,
                shm,
            )
        });
        match result {
            Ok(_) => {}
            Err(reason) => {
                self.close_client(c, reason);
                return;
            }
        }
        self.run_deferred();
        if self
            .socket
            .session(c)
            .is_some_and(|s| s.bad_messages > MAX_BAD_MESSAGES)
        {
            self.stats.garbage_disconnects += 1;
            self.close_client(c, CloseReason::Server);
            return;
        }
        if self.socket.frame_ready(c) && !self.socket.input_blocked(c) && !self.pending.contains(&c)
        {
            self.pending.push(c);
        }
    }

    fn process_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for c in pending {
            if self.socket.session(c).is_some() {
                self.process_client(c);
            }
        }
    }

    fn flush_outputs(&mut self) {
        for c in self.socket.take_dirty() {
            self.flush_one(c);
            self.update_interest(c);
        }
    }

    fn flush_one(&mut self, c: ClientIndex) {
        match self.socket.flush(c) {
            Ok(_) => {
                let done = self.socket.session(c).is_some_and(|s| s.close_after_flush)
                    && self.socket.queued(c) == 0;
                if done {
                    self.close_client(c, CloseReason::Deleted);
                }
            }
            Err(reason) => self.close_client(c, reason),
        }
    }

    /// Keeps the epoll interest of `c` in line with its state: writability while output is
    /// queued, no readability while paused.
    fn update_interest(&mut self, c: ClientIndex) {
        let Some(s) = self.socket.session(c) else {
            return;
        };
        let queued = self.socket.queued(c) > 0;
        let want = match (s.paused || s.close_after_flush, queued) {
            (true, _) => Interest::Write,
            (false, true) => Interest::ReadWrite,
            (false, false) => Interest::Read,
        };
        if self.interest.get(&c) != Some(&want) {
            if let Err(e) = self
                .poller
                .modify(s.fd(), TOKEN_SOCKET | u64::from(c.0), want)
            {
                self.log
                    .error(format_args!("epoll modify for client {:#x}: {e}", c.0));
            }
            self.interest.insert(c, want);
        }
        if s.paused && !self.pending.contains(&c) {
            // Resumes through writability; nothing to do until then.
        }
    }

    fn close_client(&mut self, c: ClientIndex, reason: CloseReason) {
        let Some(session) = self.socket.session(c) else {
            return;
        };
        let _ = self.poller.delete(session.fd());
        let name = if session.name.is_empty() {
            "(unnamed)".to_owned()
        } else {
            session.name.clone()
        };
        let pid = session.peer.pid;
        self.socket.close(c);
        self.interest.remove(&c);
        self.pending.retain(|&p| p != c);
        self.directory.borrow_mut().clients.remove(&c);
        for reaper in &mut self.reapers {
            reaper(c);
        }
        self.reap_socket_channels(c);
        let level = match reason {
            CloseReason::PeerClosed | CloseReason::Deleted | CloseReason::Server => Level::Debug,
            _ => Level::Warn,
        };
        self.log.log(
            level,
            format_args!(
                "client '{name}' (pid {pid}, index {:#010x}) disconnected: {reason}",
                c.0
            ),
        );
    }

    fn run_deferred(&mut self) {
        for d in std::mem::take(&mut self.deferred) {
            match d {
                Deferred::Cli {
                    client,
                    context,
                    cmd,
                } => {
                    let (retval, reply) = match self.run_cli(&cmd) {
                        Ok(text) => (0, text),
                        Err(text) => (-1, text),
                    };
                    let msg = vpe::CliInbandReply {
                        context,
                        retval,
                        reply,
                    };
                    self.send_to(client, self.ids.cli_inband_reply, &msg);
                }
                pivot @ Deferred::Pivot { .. } => self.run_deferred_pivot(pivot),
            }
        }
    }

    fn send_to<M: Message>(&mut self, to: ClientIndex, id: u16, msg: &M) {
        let mut buf = Vec::with_capacity(msg.encoded_len());
        if msg.encode(id, &mut buf).is_ok() {
            self.dispatcher
                .trace_mut()
                .record(vlibapi::trace::Direction::Tx, to, &buf);
            self.socket.send(to, &buf);
        }
    }

    /// Runs one CLI command line.
    pub fn run_cli(&mut self, line: &str) -> CliResult {
        let mut input = Input::new(line);
        if input.eof() {
            return Ok(String::new());
        }
        let i = match self.cli.lookup(&mut input) {
            Lookup::Found(i) => i,
            Lookup::Unknown => {
                return Err(format!("unknown input `{}`\n", line.trim()));
            }
            Lookup::Ambiguous(v) => return Err(format!("ambiguous command: {}\n", v.join(", "))),
        };
        if let Some(r) = self.cli.run(i, &mut input) {
            return r;
        }
        let words = self.cli.commands()[i].words.join(" ");
        match words.as_str() {
            "show version" => Ok(format!(
                "{} {} (pid {}), up {}\n",
                self.config.program,
                env!("CARGO_PKG_VERSION"),
                self.pid,
                vppinfra::format::format_duration(self.started.elapsed())
            )),
            "show api clients" => Ok(format!(
                "{}{}",
                self.show_clients(),
                self.show_shm_clients()
            )),
            "show api ring" => Ok(self.show_api_ring()),
            "show api message-table" => Ok(self.show_message_table()),
            "show api plugins" => Ok(self.show_plugins()),
            "show api histogram" => Ok(self.histogram.render()),
            "show api counters" => Ok(self.show_counters()),
            "api trace" => self.api_trace(&mut input),
            "help" => Ok(self.cli.help()),
            other => Err(format!("command `{other}` has no handler\n")),
        }
    }

    fn show_clients(&self) -> String {
        use vppinfra::format::{Align, Table};
        let mut out = String::from("Socket clients\n");
        let mut t = Table::new()
            .column("Name", Align::Right)
            .column("Index", Align::Right)
            .column("Fd", Align::Right)
            .column("Pid", Align::Right)
            .column("Uid", Align::Right)
            .column("Rx msgs", Align::Right)
            .column("Queued", Align::Right);
        for s in self.socket.sessions() {
            let c = s.index();
            t.row([
                if s.name.is_empty() {
                    "(unnamed)".to_owned()
                } else {
                    s.name.clone()
                },
                format!("{:#010x}", c.0),
                s.fd().as_raw_fd().to_string(),
                s.peer.pid.to_string(),
                s.peer.uid.to_string(),
                s.rx_messages.to_string(),
                self.socket.queued(c).to_string(),
            ]);
        }
        if t.is_empty() {
            out.push_str("  (none)\n");
        } else {
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out
    }

    fn show_message_table(&self) -> String {
        let mut out = format!("{:>6}  {}\n", "ID", "Name");
        for m in self.dispatcher.table().iter() {
            out.push_str(&format!("{:>6}  {}\n", m.id, m.name_crc));
        }
        out
    }

    fn show_plugins(&self) -> String {
        let mut out = format!(
            "{:<24} {:>8} {:>6}  {}\n",
            "Module", "First ID", "Count", "Version"
        );
        for m in self.dispatcher.table().modules() {
            out.push_str(&format!(
                "{:<24} {:>8} {:>6}  {}.{}.{}\n",
                m.name, m.first_id, m.count, m.version.major, m.version.minor, m.version.patch
            ));
        }
        out
    }

    fn show_counters(&self) -> String {
        let mut out = String::new();
        for (name, n) in self.dispatcher.counters().named() {
            out.push_str(&format!("{name:>24} {n}\n"));
        }
        let s = self.socket.stats();
        for (name, n) in [
            ("socket accepted", s.accepted),
            ("socket refused (creds)", s.refused_credentials),
            ("socket refused (full)", s.refused_full),
            ("socket framing errors", s.framing_errors),
            ("socket stuck clients", s.stuck_disconnects),
            ("socket closed", s.closed),
            ("socket rx frames", s.rx_frames),
            ("socket tx frames", s.tx_frames),
            ("garbage disconnects", self.stats.garbage_disconnects),
            ("shm wrong client index", self.stats.wrong_client_index),
            ("shm reaped by keepalive", self.stats.reaped_by_keepalive),
            ("shm stalled clients", self.stats.shm_stalled),
            ("shm pivots", self.stats.pivots),
            ("loop turns", self.stats.turns),
        ] {
            out.push_str(&format!("{name:>24} {n}\n"));
        }
        out
    }

    fn api_trace(&mut self, input: &mut Input<'_>) -> CliResult {
        use vlibapi::trace::Direction;
        let dir = if input.keyword("tx") {
            Direction::Tx
        } else {
            input.keyword("rx");
            Direction::Rx
        };
        if input.keyword("on") {
            self.dispatcher.trace_mut().set_enabled(true);
            Ok("api trace on\n".to_owned())
        } else if input.keyword("off") {
            self.dispatcher.trace_mut().set_enabled(false);
            Ok("api trace off\n".to_owned())
        } else if input.keyword("clear") {
            self.dispatcher.trace_mut().ring_mut(Direction::Rx).clear();
            self.dispatcher.trace_mut().ring_mut(Direction::Tx).clear();
            Ok("api trace cleared\n".to_owned())
        } else if input.keyword("dump") {
            let dir = if input.keyword("tx") {
                Direction::Tx
            } else {
                dir
            };
            Ok(self.dispatcher.trace().dump(dir, self.dispatcher.table()))
        } else {
            Err("usage: api trace [rx|tx] on|off|clear|dump\n".to_owned())
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::ResumeAccept => {
                    if let Err(e) =
                        self.poller
                            .add(self.socket.listener_fd(), TOKEN_LISTENER, Interest::Read)
                    {
                        self.log.error(format_args!("cannot resume accepting: {e}"));
                    }
                }
                Timer::Keepalive => {
                    self.keepalive_scan();
                    let every = self
                        .config
                        .shm
                        .keepalive_interval
                        .max(Duration::from_millis(10));
                    self.timers.schedule(now + every, Timer::Keepalive);
                }
                Timer::PendingFds => {}
                Timer::StallCheck => {
                    for c in self.socket.stalled(now) {
                        let queued = self.socket.queued(c);
                        self.socket.note_stuck();
                        self.close_client(c, CloseReason::Stuck { queued });
                    }
                    for (id, stall) in self.shm.stalled(now) {
                        self.stats.shm_stalled += 1;
                        let timeout = self.config.shm.stall_timeout;
                        self.reap_shm(
                            id,
                            &format!("it kept the server waiting for over {timeout:?}: {stall}"),
                        );
                    }
                    self.timers.schedule(now + STALL_CHECK, Timer::StallCheck);
                }
            }
        }
    }

    fn stop(&mut self) {
        self.shm.begin_shutdown();
        for id in self.shm.channel_ids() {
            self.reap_shm(id, "the server stopped");
        }
        let clients = self.socket.clients();
        for c in clients {
            self.flush_one(c);
            self.close_client(c, CloseReason::Server);
        }
        self.log.info(format_args!(
            "stopped; removing {}",
            self.socket.path().display()
        ));
    }
}

/// The `sockclnt_create_reply` for every client: the table is the same for all, so it is
/// encoded once and only `context` and `index` are patched per connection.
fn create_reply_template(table: &MessageTable, reply_id: u16) -> Result<Vec<u8>, ServerBuildError> {
    let entries = table.sockclnt_entries();
    let reply = memclnt::SockclntCreateReply {
        client_index: 0,
        context: 0,
        response: 0,
        index: 0,
        count: entries.len() as u16,
        message_table: entries,
    };
    wire::to_vec(&reply, reply_id).map_err(|e| ServerBuildError::Module(e.to_string()))
}

/// Offsets patched in the `sockclnt_create_reply` template.
const CREATE_REPLY_CONTEXT: usize = 6;
const CREATE_REPLY_INDEX: usize = 14;

#[allow(clippy::too_many_arguments)]
fn handle_socket_frame(
    frame: &[u8],
    session: &mut Session,
    outputs: &mut Outputs<'_>,
    dispatcher: &mut Dispatcher,
    directory: &DirectoryHandle,
    ids: &Ids,
    create_reply: &mut [u8],
    deferred: &mut Vec<Deferred>,
    stats: &mut ServerStats,
    log: &Log,
    shm: &mut ShmServer,
) -> Flow {
    let Some(id) = wire::msg_id(frame) else {
        return Flow::Continue;
    };
    let me = session.index();
    if id == ids.sockclnt_create {
        let Ok(req) = memclnt::SockclntCreate::decode(frame) else {
            return reject(session, stats, log, frame, "malformed sockclnt_create");
        };
        session.name = req.name.clone();
        session.registered = true;
        directory.borrow_mut().clients.insert(
            me,
            ClientInfo {
                index: me,
                name: req.name,
                transport: Transport::Socket,
                pid: session.peer.pid,
                uid: session.peer.uid,
                gid: session.peer.gid,
            },
        );
        create_reply[CREATE_REPLY_CONTEXT..CREATE_REPLY_CONTEXT + 4]
            .copy_from_slice(&req.context.to_be_bytes());
        create_reply[CREATE_REPLY_INDEX..CREATE_REPLY_INDEX + 4]
            .copy_from_slice(&me.0.to_be_bytes());
        dispatcher
            .trace_mut()
            .record(vlibapi::trace::Direction::Rx, me, frame);
        outputs.send(me, create_reply);
        log.debug(format_args!(
            "client '{}' registered as {:#010x}",
            session.name, me.0
        ));
        return Flow::Continue;
    }
    if id == ids.sockclnt_delete {
        let Ok(req) = memclnt::SockclntDelete::decode(frame) else {
            return reject(session, stats, log, frame, "malformed sockclnt_delete");
        };
        let ok = req.index == me.0;
        let reply = memclnt::SockclntDeleteReply {
            context: req.context,
            response: if ok { 1 } else { -1 },
        };
        if let Ok(bytes) = wire::to_vec(&reply, ids.sockclnt_delete_reply) {
            outputs.send(me, &bytes);
        }
        return if ok {
            Flow::CloseAfterFlush
        } else {
            Flow::Continue
        };
    }
    if id == ids.cli_inband {
        let Ok(req) = vpe::CliInband::decode(frame) else {
            return reject(session, stats, log, frame, "malformed cli_inband");
        };
        dispatcher
            .trace_mut()
            .record(vlibapi::trace::Direction::Rx, me, frame);
        deferred.push(Deferred::Cli {
            client: me,
            context: req.context,
            cmd: req.cmd,
        });
        return Flow::Yield;
    }
    if id == ids.sock_init_shm || id == ids.memfd_segment_create {
        let request = if id == ids.sock_init_shm {
            memclnt::SockInitShm::decode(frame).map(|m| {
                (
                    ids.sock_init_shm_reply,
                    m.context,
                    u64::from(m.requested_size),
                    m.configs,
                )
            })
        } else {
            memfd::MemfdSegmentCreate::decode(frame).map(|m| {
                (
                    ids.memfd_segment_create_reply,
                    m.context,
                    m.requested_size,
                    Vec::new(),
                )
            })
        };
        let Ok((reply_id, context, size, configs)) = request else {
            return reject(
                session,
                stats,
                log,
                frame,
                "malformed shared-memory request",
            );
        };
        dispatcher
            .trace_mut()
            .record(vlibapi::trace::Direction::Rx, me, frame);
        deferred.push(Deferred::Pivot {
            client: me,
            reply_id,
            context,
            size,
            configs,
        });
        return Flow::Yield;
    }
    if id == ids.memclnt_create || id == ids.memclnt_create_v2 {
        // Shared-memory registrations have no meaning on the socket.
        let context = frame
            .get(2..6)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let reply = memclnt::MemclntCreateReply {
            context,
            response: ApiError::InvalidRegistration.retval(),
            ..Default::default()
        };
        let rid = if id == ids.memclnt_create {
            ids.memclnt_create_reply
        } else {
            ids.memclnt_create_v2_reply
        };
        if let Ok(bytes) = wire::to_vec(&reply, rid) {
            outputs.send(me, &bytes);
        }
        return Flow::Continue;
    }
    let mut routes = Routes { sock: outputs, shm };
    match dispatcher.dispatch(me, frame, &mut routes) {
        Ok(()) => Flow::Continue,
        Err(DispatchError::UnknownId(id)) => {
            stats.unknown_id += 1;
            session.bad_messages += 1;
            note_bad(session, log, format_args!("unknown message id {id}"));
            Flow::Continue
        }
        Err(DispatchError::NoHandler(id)) => {
            stats.no_handler += 1;
            log.debug(format_args!(
                "client '{}' sent message {id}, which has no handler",
                session.name
            ));
            Flow::Continue
        }
        Err(DispatchError::Invalid { id, error }) => {
            stats.malformed += 1;
            session.bad_messages += 1;
            note_bad(session, log, format_args!("invalid message {id}: {error}"));
            Flow::Continue
        }
        Err(e) => {
            log.debug(format_args!("client '{}': {e}", session.name));
            Flow::Continue
        }
    }
}

fn reject(
    session: &mut Session,
    stats: &mut ServerStats,
    log: &Log,
    frame: &[u8],
    what: &str,
) -> Flow {
    stats.malformed += 1;
    session.bad_messages += 1;
    note_bad(session, log, format_args!("{what} ({} bytes)", frame.len()));
    Flow::Continue
}

/// Logs a client's bad message: the first ten, then every thousandth, so a flood cannot flood
/// the log too.
fn note_bad(session: &Session, log: &Log, what: fmt::Arguments<'_>) {
    let n = session.bad_messages;
    if n <= 10 || n % 1000 == 0 {
        log.warn(format_args!(
            "client '{}' (pid {}, index {:#010x}): {what} [{n} so far]",
            session.name,
            session.peer.pid,
            session.index().0
        ));
    }
}
