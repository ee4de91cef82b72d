//! An async client of the API server, for any executor.
//!
//! Futures here are plain `std::future::Future`s completed through `Waker`s by one background
//! I/O thread per connection, so they work under tokio, async-std, smol or a ten-line
//! `block_on` alike, and the crate depends on no runtime. Requests are written from the
//! calling thread; the I/O thread receives, routes replies to their futures by `context`,
//! answers keepalive pings (in [`vlibclient::conn`]), runs the health check and reconnects.
//!
//! - [`Client::request`]: one request, one reply (`client.request::<_, Reply>(&req).await`).
//!   Any number may be in flight; each has its own `context`.
//! - [`Client::dump`]: a [`Dump`] stream of details, ended by the `control_ping_reply` that
//!   follows them (what vpp_papi does).
//! - [`Client::events`]: an [`Events`] stream of messages nobody asked for.
//! - [`Client::status_events`]: connection changes ([`StatusEvent`]) as a stream.
//! - [`Options::health_check`]: a `control_ping` probe every [`HealthCheck::interval`], failed
//!   after [`HealthCheck::timeout`] unless any message arrived meanwhile; after
//!   [`HealthCheck::max_misses`] failures in a row the connection is unhealthy (GoVPP's
//!   defaults: 1 s, 250 ms, 3).
//! - [`Options::reconnect`]: on loss (or unhealthiness) reconnect with exponential backoff.
//!   Requests in flight then fail with [`RequestError::Disconnected`]; message IDs are looked
//!   up in the new connection's table, so a server with a different table is handled.
//!
//! **Cancellation.** Dropping a request future or a dump stream is always fine: its reply (or
//! remaining details) is discarded when it arrives and never shows up as an event.
//!
//! **When bytes go out.** [`Client::request`] and [`Client::dump`] encode and buffer the
//! message at once; the buffer is written when a future is first polled (so requests created
//! together and then awaited together leave in one write), by [`Client::flush`], or at the
//! latest by the I/O thread's next turn.
//!
//! **Transports.** [`Transport::Socket`]; [`Transport::ShmPivot`] (the socket, then a private
//! shared-memory segment: [`vlibclient::conn::Connection::pivot_to_shm`]); and
//! [`Transport::ShmByName`] (the server's named segment, no socket:
//! [`vlibclient::conn::Connection::attach_shm`]). Everything above works the same on each:
//! keepalive pings are answered by the I/O thread's receive path, the server's death is a loss
//! (after a pivot the socket's EOF says so, attached by name the segment's doorbell losing its
//! reader; either within about 20 ms), and request timeouts, the health check and reconnection
//! do not depend on the transport. On shared memory a request is in the segment as soon as it
//! is made; there is nothing to flush.
//!
//! ```no_run
//! use async_client::{Client, Options};
//! use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output { unimplemented!() }
//! let client = Client::connect(Options::socket("/run/vpp/api.sock", "example"))?;
//! let reply: ControlPingReply = block_on(client.request(&ControlPing::default()))?;
//! println!("server pid {}", reply.vpe_pid);
//! client.close();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod io;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, DecodeError, EncodeError, Message};
use vlibclient::conn::{self, ConnectOptions, Connection, SendError, WaitPolicy};
use vppinfra::sync::{Arc, AtomicBool, AtomicU32, Mutex, MutexGuard, Ordering};

/// How to reach the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// The API socket at this path.
    Socket(PathBuf),
    /// The API socket, then a pivot to a private shared-memory segment of `segment_size` bytes.
    ShmPivot {
        /// The socket path.
        socket: PathBuf,
        /// The segment's size.
        segment_size: u64,
    },
    /// The server's named shared-memory segment, without a socket: `/dev/shm/vpe-api`, or
    /// `/dev/shm/<prefix>-vpe-api` with a prefix.
    ShmByName {
        /// The server's `--shm-prefix`, if any.
        prefix: Option<String>,
    },
}

/// The health check's settings (GoVPP's defaults from [`HealthCheck::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between probes.
    pub interval: Duration,
    /// How long a probe may go unanswered.
    pub timeout: Duration,
    /// Failed probes in a row that make the connection unhealthy.
    pub max_misses: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(250),
            max_misses: 3,
        }
    }
}

/// The reconnect policy: exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    /// Attempts before giving up (`None`: never give up).
    pub max_attempts: Option<u32>,
    /// Pause before the first attempt.
    pub initial_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
    /// Each pause is the previous one times this.
    pub multiplier: f64,
}

impl Default for Reconnect {
    /// 3 attempts, 0.5 s, 1 s, 2 s apart (GoVPP tries 3 times, 0.5 s apart).
    fn default() -> Self {
        Self {
            max_attempts: Some(3),
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the server is.
    pub transport: Transport,
    /// Name, handshake timeout, largest message, and how the I/O thread waits on shared
    /// memory (the constructors park it at once rather than spin: see [`Options::socket`]).
    pub connect: ConnectOptions,
    /// How long a request or dump may wait for its reply (`None`: forever).
    pub request_timeout: Option<Duration>,
    /// Probe the server periodically (off by default).
    pub health_check: Option<HealthCheck>,
    /// Reconnect after a loss (off by default).
    pub reconnect: Option<Reconnect>,
    /// Events kept for [`Client::events`] before new ones are dropped (and counted).
    pub event_queue_len: usize,
}

impl Options {
    /// A socket connection with defaults: 5 s request timeout, no health check, no reconnect.
    /// (Every constructor also sets `connect.shm_wait` to park at once: the I/O thread relays
    /// replies to the tasks, so spinning for them only competes with those tasks for a core.)
    pub fn socket(path: impl Into<PathBuf>, name: &str) -> Self {
        Self::with_transport(Transport::Socket(path.into()), name)
    }

    /// The socket, then a pivot to a private segment of the server's default size; otherwise
    /// as [`Options::socket`].
    pub fn shm_pivot(path: impl Into<PathBuf>, name: &str) -> Self {
        Self::with_transport(
            Transport::ShmPivot {
                socket: path.into(),
                segment_size: 0,
            },
            name,
        )
    }

    /// The server's named segment under `prefix` (its `--shm-prefix`; `None`: `vpe-api`);
    /// otherwise as [`Options::socket`].
    pub fn shm_by_name(prefix: Option<&str>, name: &str) -> Self {
        Self::with_transport(
            Transport::ShmByName {
                prefix: prefix.map(str::to_owned),
            },
            name,
        )
    }

    fn with_transport(transport: Transport, name: &str) -> Self {
        let mut connect = ConnectOptions::new(name);
        // The I/O thread only relays: a reply it takes must still wake the task that waits for
        // it. Spinning for the reply first buys little, and where cores are few it takes one
        // from that task and from the server (measured on 2 cores: a sync round trip over
        // shared memory took about twice as long with vlibmemory's default spin).
        connect.shm_wait = WaitPolicy::SpinThenPark { spins: 0 };
        Self {
            transport,
            connect,
            request_timeout: Some(Duration::from_secs(5)),
            health_check: None,
            reconnect: None,
            event_queue_len: 4096,
        }
    }
}

/// Why [`Client::connect`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection or registration failed.
    Connect(conn::ConnectError),
    /// Connected, but the pivot to shared memory failed (the socket connection was dropped).
    Pivot(conn::PivotError),
    /// Attaching to the named segment failed.
    Attach(conn::AttachError),
    /// The I/O thread could not be started.
    Thread(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => e.fmt(f),
            Self::Pivot(e) => e.fmt(f),
            Self::Attach(e) => e.fmt(f),
            Self::Thread(e) => write!(f, "cannot start the i/o thread: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect(e) => Some(e),
            Self::Pivot(e) => Some(e),
            Self::Attach(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a request (or a dump) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// There is no connection now (reconnecting, or closed).
    NotConnected,
    /// The connection was lost while the request was in flight; it may or may not have run.
    Disconnected,
    /// No reply within the request timeout.
    Timeout,
    /// The server's table has no such message (its API differs).
    UnknownMessage(&'static str),
    /// The reply's `retval` was not zero.
    Retval {
        /// The reply's name.
        message: &'static str,
        /// Its retval.
        retval: i32,
    },
    /// The reply could not be decoded.
    Decode(DecodeError),
    /// The request could not be encoded.
    Encode(EncodeError),
    /// The request could not be written.
    Send(SendError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotConnected => f.write_str("not connected"),
            Self::Disconnected => f.write_str("the connection was lost before the reply came"),
            Self::Timeout => f.write_str("timed out waiting for the reply"),
            Self::UnknownMessage(m) => write!(f, "the server does not know message {m}"),
            Self::Retval { message, retval } => write!(f, "{message} returned retval {retval}"),
            Self::Decode(e) => write!(f, "bad reply: {e}"),
            Self::Encode(e) => write!(f, "cannot encode request: {e}"),
            Self::Send(e) => write!(f, "cannot send: {e}"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Send(e) => Some(e),
            _ => None,
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

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Connected (and healthy, as far as the health check knows).
    Connected,
    /// Connected, but the health check failed `max_misses` times in a row (no reconnect).
    Unhealthy,
    /// Lost; reconnecting.
    Reconnecting,
    /// Closed for good (by [`Client::close`], a loss without reconnect, or failed reconnects).
    Closed,
}

/// A change of the connection's state, as [`Client::status_events`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusEvent {
    /// The health check failed `max_misses` probes in a row.
    Unhealthy,
    /// A probe succeeded after the connection was unhealthy.
    Healthy,
    /// The connection was lost (why).
    Disconnected(String),
    /// Reconnected after this many attempts; the new client index.
    Reconnected {
        /// Attempts it took.
        attempts: u32,
        /// The index the server gave the new registration.
        client_index: u32,
    },
    /// Reconnecting gave up after this many attempts.
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
    },
}

/// What a context waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// One reply with this ID.
    Reply(u16),
    /// Details with the first ID, ended by the second (`control_ping_reply`).
    Dump(u16, u16),
}

impl Expect {
    /// Whether `id` belongs to this context, and whether it is the last message.
    fn accepts(self, id: u16) -> Option<bool> {
        match self {
            Expect::Reply(r) => (id == r).then_some(true),
            Expect::Dump(d, end) => {
                if id == end {
                    Some(true)
                } else if id == d {
                    Some(false)
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Debug)]
struct Pending {
    expect: Expect,
    msgs: VecDeque<Vec<u8>>,
    done: bool,
    error: Option<RequestError>,
    waker: Option<Waker>,
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct State {
    pending: HashMap<u32, Pending>,
    /// Contexts whose futures were dropped before the end: their messages are discarded.
    cancelled: HashMap<u32, (Expect, Instant)>,
    events: VecDeque<Event>,
    events_dropped: u64,
    event_wakers: HashMap<u64, Waker>,
    status: Status,
    status_events: VecDeque<StatusEvent>,
    status_wakers: HashMap<u64, Waker>,
    next_stream: u64,
}

/// What the I/O thread and the handles share.
#[derive(Debug)]
struct Inner {
    opts: Options,
    /// The current connection; `None` while reconnecting or after close.
    conn: Mutex<Option<Arc<Connection>>>,
    state: Mutex<State>,
    next_context: AtomicU32,
    stop: AtomicBool,
    /// Reconnections so far.
    reconnects: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn current(&self) -> Result<Arc<Connection>, RequestError> {
        lock(&self.conn).clone().ok_or(RequestError::NotConnected)
    }

    fn fresh_context(&self) -> u32 {
        loop {
            let c = self.next_context.fetch_add(1, Ordering::Relaxed);
            if c != 0 {
                return c;
            }
        }
    }

    /// Encodes `msg` with `id`, this client's index and `context`, and appends it to `out`.
    fn encode<M: Message>(
        conn: &Connection,
        msg: &M,
        id: u16,
        context: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), RequestError> {
        let start = out.len();
        msg.encode(id, out).map_err(RequestError::Encode)?;
        let body = &mut out[start..];
        if let Some(off) = M::CONTEXT_OFFSET {
            body[off..off + 4].copy_from_slice(&context.to_be_bytes());
        }
        if msg.client_index().is_some() {
            // Requests put client_index right after the ID.
            body[2..6].copy_from_slice(&conn.client_index().to_be_bytes());
        }
        Ok(())
    }

    /// Registers `context` and buffers `msgs` (one or more whole messages, concatenated with
    /// their lengths) for sending.
    fn start(
        &self,
        conn: &Connection,
        context: u32,
        expect: Expect,
        msgs: &[&[u8]],
    ) -> Result<(), RequestError> {
        let deadline = self.opts.request_timeout.map(|t| Instant::now() + t);
        self.state().pending.insert(
            context,
            Pending {
                expect,
                msgs: VecDeque::new(),
                done: false,
                error: None,
                waker: None,
                deadline,
            },
        );
        for m in msgs {
            if let Err(e) = conn.queue(m) {
                self.state().pending.remove(&context);
                return Err(RequestError::Send(e));
            }
        }
        Ok(())
    }

    /// Forgets `context`; if it is not finished, its late messages will be discarded.
    fn forget(&self, context: u32) {
        let mut st = self.state();
        if let Some(p) = st.pending.remove(&context) {
            if !p.done && p.error != Some(RequestError::Disconnected) {
                st.cancelled.insert(context, (p.expect, Instant::now()));
            }
        }
    }

    fn set_status(&self, status: Status, event: Option<StatusEvent>) {
        let wakers: Vec<Waker> = {
            let mut st = self.state();
            st.status = status;
            if let Some(e) = event {
                st.status_events.push_back(e);
            }
            st.status_wakers.drain().map(|(_, w)| w).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Owns the I/O thread: the last [`Client`] clone to go stops it.
#[derive(Debug)]
struct Owner {
    inner: Arc<Inner>,
    io: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Owner {
    fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let conn = lock(&self.inner.conn).clone();
        if let Some(c) = &conn {
            c.interrupt();
        }
        let io = lock(&self.io).take();
        if let Some(t) = io {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Some(c) = lock(&self.inner.conn).take() {
            c.close(Duration::from_secs(1));
        }
        io::fail_all(&self.inner, RequestError::NotConnected);
        if self.inner.state().status != Status::Closed {
            self.inner.set_status(Status::Closed, None);
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A connection to the server. Cheap to clone; the last clone's drop (or [`Client::close`])
/// disconnects.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    owner: Arc<Owner>,
}

impl Client {
    /// Connects (blocking for at most the handshake timeout) and starts the I/O thread.
    pub fn connect(opts: Options) -> Result<Self, ConnectError> {
        let conn = connect_transport(&opts)?;
        let inner = Arc::new(Inner {
            opts,
            conn: Mutex::new(Some(Arc::new(conn))),
            state: Mutex::new(State {
                pending: HashMap::new(),
                cancelled: HashMap::new(),
                events: VecDeque::new(),
                events_dropped: 0,
                event_wakers: HashMap::new(),
                status: Status::Connected,
                status_events: VecDeque::new(),
                status_wakers: HashMap::new(),
                next_stream: 0,
            }),
            next_context: AtomicU32::new(1),
            stop: AtomicBool::new(false),
            reconnects: AtomicU32::new(0),
        });
        let i = inner.clone();
        let io = std::thread::Builder::new()
            .name("async-client-io".into())
            .spawn(move || io::run(&i))
            .map_err(|e| ConnectError::Thread(e.to_string()))?;
        let owner = Arc::new(Owner {
            inner: inner.clone(),
            io: Mutex::new(Some(io)),
        });
        Ok(Self { inner, owner })
    }

    /// Connects on a helper thread; the future completes with the client.
    pub fn connect_async(opts: Options) -> ConnectFuture {
        let slot: Arc<Mutex<ConnectSlot>> = Arc::new(Mutex::new(ConnectSlot::default()));
        let s = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("async-client-connect".into())
            .spawn(move || {
                let r = Client::connect(opts);
                let waker = {
                    let mut g = lock(&s);
                    g.result = Some(r);
                    g.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            });
        if let Err(e) = spawned {
            lock(&slot).result = Some(Err(ConnectError::Thread(e.to_string())));
        }
        ConnectFuture { slot }
    }

    /// Sends `req` and waits for its reply `Rep`; a non-zero `retval` is an error.
    pub fn request<Req: Message, Rep: Message>(&self, req: &Req) -> Request<Rep> {
        let mut r = self.request_unchecked::<Req, Rep>(req);
        r.check_retval = true;
        r
    }

    /// Sends `req` and waits for its reply `Rep`, whatever its `retval`.
    pub fn request_unchecked<Req: Message, Rep: Message>(&self, req: &Req) -> Request<Rep> {
        let context = self.inner.fresh_context();
        let started = (|| {
            let conn = self.inner.current()?;
            let t = conn.table();
            let req_id = t
                .id_of::<Req>()
                .ok_or(RequestError::UnknownMessage(Req::NAME_CRC))?;
            let rep_id = t
                .id_of::<Rep>()
                .ok_or(RequestError::UnknownMessage(Rep::NAME_CRC))?;
            let mut buf = Vec::with_capacity(req.encoded_len());
            Inner::encode(&conn, req, req_id, context, &mut buf)?;
            self.inner
                .start(&conn, context, Expect::Reply(rep_id), &[&buf])?;
            Ok(conn)
        })();
        Request {
            inner: self.inner.clone(),
            context,
            started,
            flushed: false,
            finished: false,
            check_retval: false,
            _reply: PhantomData,
        }
    }

    /// Sends `req` followed by a `control_ping` with the same context, and streams every `Det`
    /// until the ping's reply.
    pub fn dump<Req: Message, Det: Message>(&self, req: &Req) -> Dump<Det> {
        let context = self.inner.fresh_context();
        let started = (|| {
            let conn = self.inner.current()?;
            let t = conn.table();
            let req_id = t
                .id_of::<Req>()
                .ok_or(RequestError::UnknownMessage(Req::NAME_CRC))?;
            let det_id = t
                .id_of::<Det>()
                .ok_or(RequestError::UnknownMessage(Det::NAME_CRC))?;
            let ping_id = t
                .id_of::<memclnt::ControlPing>()
                .ok_or(RequestError::UnknownMessage(memclnt::ControlPing::NAME_CRC))?;
            let end_id =
                t.id_of::<memclnt::ControlPingReply>()
                    .ok_or(RequestError::UnknownMessage(
                        memclnt::ControlPingReply::NAME_CRC,
                    ))?;
            let mut a = Vec::with_capacity(req.encoded_len());
            Inner::encode(&conn, req, req_id, context, &mut a)?;
            let mut b = Vec::with_capacity(10);
            Inner::encode(
                &conn,
                &memclnt::ControlPing::default(),
                ping_id,
                context,
                &mut b,
            )?;
            self.inner
                .start(&conn, context, Expect::Dump(det_id, end_id), &[&a, &b])?;
            Ok(conn)
        })();
        Dump {
            inner: self.inner.clone(),
            context,
            started,
            flushed: false,
            finished: false,
            _detail: PhantomData,
        }
    }

    /// Writes every buffered request now.
    pub fn flush(&self) -> Result<(), RequestError> {
        self.inner.current()?.flush().map_err(RequestError::Send)
    }

    /// A stream of events (messages nobody waits for). Several streams share one queue: each
    /// event goes to one of them.
    pub fn events(&self) -> Events {
        let id = {
            let mut st = self.inner.state();
            st.next_stream += 1;
            st.next_stream
        };
        Events {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Events dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.inner.state().events_dropped
    }

    /// A stream of connection changes.
    pub fn status_events(&self) -> StatusEvents {
        let id = {
            let mut st = self.inner.state();
            st.next_stream += 1;
            st.next_stream
        };
        StatusEvents {
            inner: self.inner.clone(),
            id,
        }
    }

    /// The connection's state now.
    pub fn status(&self) -> Status {
        self.inner.state().status
    }

    /// The current registration's client index (`None` while not connected).
    pub fn client_index(&self) -> Option<u32> {
        lock(&self.inner.conn).as_ref().map(|c| c.client_index())
    }

    /// The current connection's `name_crc` to ID lookup.
    pub fn msg_id(&self, name_crc: &str) -> Option<u16> {
        lock(&self.inner.conn).as_ref()?.table().id(name_crc)
    }

    /// Requests and dumps waiting for replies (for tests and monitoring).
    pub fn in_flight(&self) -> usize {
        self.inner.state().pending.len()
    }

    /// Keepalive pings answered by the current connection.
    pub fn pings_answered(&self) -> u64 {
        lock(&self.inner.conn)
            .as_ref()
            .map_or(0, |c| c.pings_answered())
    }

    /// Successful reconnections so far.
    pub fn reconnects(&self) -> u32 {
        self.inner.reconnects.load(Ordering::Relaxed)
    }

    /// Disconnects (saying goodbye to the server) and stops the I/O thread. Requests still in
    /// flight fail with [`RequestError::NotConnected`]; other clones see a closed client.
    pub fn close(self) {
        self.owner.shutdown();
    }
}

/// Opens a connection over the configured transport.
fn connect_transport(opts: &Options) -> Result<Connection, ConnectError> {
    match &opts.transport {
        Transport::Socket(path) => {
            Connection::connect(path, &opts.connect).map_err(ConnectError::Connect)
        }
        Transport::ShmPivot {
            socket,
            segment_size,
        } => {
            let c = Connection::connect(socket, &opts.connect).map_err(ConnectError::Connect)?;
            if let Err(e) = c.pivot_to_shm(*segment_size) {
                c.close(opts.connect.timeout.min(Duration::from_secs(1)));
                return Err(ConnectError::Pivot(e));
            }
            Ok(c)
        }
        Transport::ShmByName { prefix } => {
            Connection::attach_shm(prefix.as_deref(), &opts.connect).map_err(ConnectError::Attach)
        }
    }
}

#[derive(Default)]
struct ConnectSlot {
    result: Option<Result<Client, ConnectError>>,
    waker: Option<Waker>,
}

/// The future of [`Client::connect_async`].
pub struct ConnectFuture {
    slot: Arc<Mutex<ConnectSlot>>,
}

impl fmt::Debug for ConnectFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectFuture").finish_non_exhaustive()
    }
}

impl Future for ConnectFuture {
    type Output = Result<Client, ConnectError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut g = lock(&self.slot);
        match g.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                g.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The future of one request; see [`Client::request`]. Dropping it cancels the wait.
#[derive(Debug)]
pub struct Request<Rep> {
    inner: Arc<Inner>,
    context: u32,
    /// The connection the request went to, or why it could not be sent.
    started: Result<Arc<Connection>, RequestError>,
    flushed: bool,
    finished: bool,
    check_retval: bool,
    _reply: PhantomData<fn() -> Rep>,
}

impl<Rep> Request<Rep> {
    /// The request's context.
    pub fn context(&self) -> u32 {
        self.context
    }
}

/// Writes what is buffered the first time a future is polled.
fn flush_once(
    started: &Result<Arc<Connection>, RequestError>,
    flushed: &mut bool,
) -> Result<(), RequestError> {
    let conn = started.as_ref().map_err(Clone::clone)?;
    if !*flushed {
        *flushed = true;
        conn.flush().map_err(RequestError::Send)?;
    }
    Ok(())
}

impl<Rep: Message> Future for Request<Rep> {
    type Output = Result<Rep, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(RequestError::NotConnected));
        }
        if let Err(e) = flush_once(&this.started, &mut this.flushed) {
            this.finished = true;
            this.inner.forget(this.context);
            return Poll::Ready(Err(e));
        }
        let mut st = this.inner.state();
        let Some(p) = st.pending.get_mut(&this.context) else {
            this.finished = true;
            return Poll::Ready(Err(RequestError::NotConnected));
        };
        let outcome = if let Some(m) = p.msgs.pop_front() {
            Ok(m)
        } else if let Some(e) = p.error.take() {
            Err(e)
        } else {
            p.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        st.pending.remove(&this.context);
        drop(st);
        this.finished = true;
        let m = outcome?;
        let rep = Rep::decode(&m).map_err(RequestError::Decode)?;
        if this.check_retval {
            if let Some(r) = rep.retval().filter(|&r| r != 0) {
                return Poll::Ready(Err(RequestError::Retval {
                    message: Rep::NAME,
                    retval: r,
                }));
            }
        }
        Poll::Ready(Ok(rep))
    }
}

impl<Rep> Drop for Request<Rep> {
    fn drop(&mut self) {
        if !self.finished && self.started.is_ok() {
            self.inner.forget(self.context);
        }
    }
}

/// The details of a dump, as a stream; see [`Client::dump`]. Dropping it cancels the dump.
///
/// [`Dump::poll_next`] has the signature of `futures::Stream::poll_next`, so a one-line
/// adapter makes it a `Stream`; [`Dump::next`] and [`Dump::collect`] need no adapter.
#[derive(Debug)]
pub struct Dump<Det> {
    inner: Arc<Inner>,
    context: u32,
    started: Result<Arc<Connection>, RequestError>,
    flushed: bool,
    finished: bool,
    _detail: PhantomData<fn() -> Det>,
}

impl<Det: Message> Dump<Det> {
    /// The next detail; `None` at the end (the stream is then finished).
    pub fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Det, RequestError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Err(e) = flush_once(&this.started, &mut this.flushed) {
            this.finished = true;
            this.inner.forget(this.context);
            return Poll::Ready(Some(Err(e)));
        }
        let mut st = this.inner.state();
        let Some(p) = st.pending.get_mut(&this.context) else {
            this.finished = true;
            return Poll::Ready(Some(Err(RequestError::NotConnected)));
        };
        if let Some(m) = p.msgs.pop_front() {
            let last = p.expect.accepts(wire::msg_id(&m).unwrap_or(0));
            if last == Some(false) {
                drop(st);
                return Poll::Ready(Some(Det::decode(&m).map_err(RequestError::Decode)));
            }
            // The control_ping_reply: the end.
            st.pending.remove(&this.context);
            this.finished = true;
            return Poll::Ready(None);
        }
        if let Some(e) = p.error.take() {
            st.pending.remove(&this.context);
            this.finished = true;
            return Poll::Ready(Some(Err(e)));
        }
        p.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// A future of the next detail.
    // Named as `futures::StreamExt::next`, so `stream.next().await` reads the same.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next<'_, Self> {
        Next { stream: self }
    }

    /// A future of every detail, in order.
    pub async fn collect(mut self) -> Result<Vec<Det>, RequestError> {
        let mut out = Vec::new();
        while let Some(d) = self.next().await {
            out.push(d?);
        }
        Ok(out)
    }
}

impl<Det> Drop for Dump<Det> {
    fn drop(&mut self) {
        if !self.finished && self.started.is_ok() {
            self.inner.forget(self.context);
        }
    }
}

/// Something with a `poll_next`: [`Dump`], [`Events`], [`StatusEvents`].
pub trait PollNext: Unpin {
    /// The items.
    type Item;
    /// As `futures::Stream::poll_next`.
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Item>>;
}

impl<Det: Message> PollNext for Dump<Det> {
    type Item = Result<Det, RequestError>;
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(self).poll_next(cx)
    }
}

/// The future of the next item of a stream.
#[derive(Debug)]
pub struct Next<'a, S> {
    stream: &'a mut S,
}

impl<S: PollNext> Future for Next<'_, S> {
    type Output = Option<S::Item>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.stream.poll_next_item(cx)
    }
}

/// The stream of events; see [`Client::events`]. It ends when the client is closed.
#[derive(Debug)]
pub struct Events {
    inner: Arc<Inner>,
    id: u64,
}

impl Events {
    /// The next event; `None` once the client is closed and the queue is empty.
    pub fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let mut st = self.inner.state();
        if let Some(e) = st.events.pop_front() {
            return Poll::Ready(Some(e));
        }
        if st.status == Status::Closed {
            return Poll::Ready(None);
        }
        st.event_wakers.insert(self.id, cx.waker().clone());
        Poll::Pending
    }

    /// A future of the next event.
    // Named as `futures::StreamExt::next`, so `stream.next().await` reads the same.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next<'_, Self> {
        Next { stream: self }
    }
}

impl PollNext for Events {
    type Item = Event;
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(self).poll_next(cx)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.inner.state().event_wakers.remove(&self.id);
    }
}

/// The stream of connection changes; see [`Client::status_events`]. It ends when the client is
/// closed.
#[derive(Debug)]
pub struct StatusEvents {
    inner: Arc<Inner>,
    id: u64,
}

impl StatusEvents {
    /// The next change; `None` once the client is closed and every change was seen.
    pub fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<StatusEvent>> {
        let mut st = self.inner.state();
        if let Some(e) = st.status_events.pop_front() {
            return Poll::Ready(Some(e));
        }
        if st.status == Status::Closed {
            return Poll::Ready(None);
        }
        st.status_wakers.insert(self.id, cx.waker().clone());
        Poll::Pending
    }

    /// A future of the next change.
    // Named as `futures::StreamExt::next`, so `stream.next().await` reads the same.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Next<'_, Self> {
        Next { stream: self }
    }
}

impl PollNext for StatusEvents {
    type Item = StatusEvent;
    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<StatusEvent>> {
        Pin::new(self).poll_next(cx)
    }
}

impl Drop for StatusEvents {
    fn drop(&mut self) {
        self.inner.state().status_wakers.remove(&self.id);
    }
}
