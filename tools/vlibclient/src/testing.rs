//! Test support (feature `testing`, for dev-dependencies): fake API servers that do what the
//! real one does not, on demand: send keepalive pings to socket clients, storm shared-memory
//! clients with pings, stop answering, send garbage, drop a client, die.
//!
//! [`FakeServer`] speaks just enough of the socket protocol: the `sockclnt_create` handshake
//! (with the core message table, so IDs match the real server), `control_ping` answered with the
//! client's context (unless turned off), `sockclnt_delete` answered and the connection closed.
//! [`FakeShmServer`] does the same over a named shared-memory segment (vlibmemory's server
//! side): `memclnt_create_v2`, `control_ping`, `memclnt_delete`. Both record every message a
//! client sends, and the context of every `memclnt_keepalive_reply`.
#![allow(missing_docs)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vlibapi::{ClientIndex, MessageTable};
use vlibmemory::server::{NamedConfig, ShmConfig, ShmServer};
use vlibsocket::client::{SOCKCLNT_CREATE_ID, SOCKCLNT_CREATE_REPLY_ID};
use vlibsocket::frame::{self, FrameReader};
use vppinfra::sync::{Arc, AtomicBool, AtomicU32, Mutex, Ordering};
use vppinfra::testing::TempDir;

/// Settings of a [`FakeServer`].
#[derive(Debug, Clone, Default)]
pub struct FakeOptions {
    /// Send `memclnt_keepalive` to the current client this often.
    pub ping_every: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    /// Every message received from any client, in order.
    received: Vec<Vec<u8>>,
    /// Contexts of keepalive replies, in order.
    keepalive_replies: Vec<u32>,
    /// Contexts of keepalive pings sent.
    pings_sent: Vec<u32>,
    saw_delete: bool,
    clients_accepted: u32,
}

impl State {
    fn wait_until<T>(
        state: &Mutex<State>,
        timeout: Duration,
        mut f: impl FnMut(&State) -> Option<T>,
        last: impl FnOnce(&State) -> T,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let st = state.lock().unwrap();
                if let Some(v) = f(&st) {
                    return v;
                }
                if Instant::now() >= deadline {
                    return last(&st);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Write side of the current client, under its own lock so that a blocked write never
    /// stops the reader from recording what arrives.
    client: Mutex<Option<UnixStream>>,
    answer_pings: AtomicBool,
    stop: AtomicBool,
    next_ping: AtomicU32,
    ids: Ids,
}

#[derive(Debug, Clone, Copy)]
struct Ids {
    ping: u16,
    ping_reply: u16,
    keepalive: u16,
    keepalive_reply: u16,
    delete: u16,
    delete_reply: u16,
}

/// A scripted server on a socket in its own temporary directory.
#[derive(Debug)]
pub struct FakeServer {
    shared: Arc<Shared>,
    path: PathBuf,
    _dir: TempDir,
    table: Arc<MessageTable>,
}

/// The index the fake server gives its `n`th client (socket handles have bit 31 set).
pub fn fake_client_index(n: u32) -> u32 {
    0x8000_0000 | (n + 1)
}

impl FakeServer {
    /// Starts a server that only answers.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, FakeOptions::default())
    }

    /// Starts a server with options.
    pub fn start_with(tag: &str, opts: FakeOptions) -> Self {
        let dir = TempDir::new(tag);
        let path = dir.join("fake.sock");
        let listener = UnixListener::bind(&path).expect("bind fake server");
        let table = Arc::new(MessageTable::with_core());
        let id = |n: &str| table.id(n).expect("core message");
        let ids = Ids {
            ping: id(memclnt::ControlPing::NAME_CRC),
            ping_reply: id(memclnt::ControlPingReply::NAME_CRC),
            keepalive: id(memclnt::MemclntKeepalive::NAME_CRC),
            keepalive_reply: id(memclnt::MemclntKeepaliveReply::NAME_CRC),
            delete: id(memclnt::SockclntDelete::NAME_CRC),
            delete_reply: id(memclnt::SockclntDeleteReply::NAME_CRC),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            client: Mutex::new(None),
            answer_pings: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            next_ping: AtomicU32::new(1),
            ids,
        });
        let s = shared.clone();
        let t = table.clone();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        std::thread::spawn(move || accept_loop(listener, s, t));
        if let Some(every) = opts.ping_every {
            let s = shared.clone();
            std::thread::spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    let c = s.next_ping.fetch_add(1, Ordering::Relaxed);
                    send_keepalive(&s, c);
                }
            });
        }
        Self {
            shared,
            path,
            _dir: dir,
            table,
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The message table the server announces.
    pub fn table(&self) -> &MessageTable {
        &self.table
    }

    /// The index given to the first client.
    pub fn client_index(&self) -> u32 {
        fake_client_index(0)
    }

    /// Clients accepted so far.
    pub fn clients_accepted(&self) -> u32 {
        self.shared.state.lock().unwrap().clients_accepted
    }

    /// Sends one `memclnt_keepalive` with `context` to the current client.
    pub fn send_keepalive(&self, context: u32) {
        send_keepalive(&self.shared, context);
    }

    /// Sends one message (framed here) to the current client.
    pub fn send_raw(&self, msg: &[u8]) {
        let mut f = frame::header(msg.len() as u32).to_vec();
        f.extend_from_slice(msg);
        self.send_raw_frame(&f);
    }

    /// Sends bytes as they are to the current client.
    pub fn send_raw_frame(&self, bytes: &[u8]) {
        if let Some(c) = self.shared.client.lock().unwrap().as_mut() {
            let _ = c.write_all(bytes);
        }
    }

    /// Closes the current client's connection.
    pub fn close_client(&self) {
        if let Some(c) = self.shared.client.lock().unwrap().take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Answer `control_ping` (the default) or ignore it.
    pub fn set_answer_pings(&self, on: bool) {
        self.shared.answer_pings.store(on, Ordering::Relaxed);
    }

    /// Contexts of the keepalive replies received so far.
    pub fn keepalive_replies(&self) -> Vec<u32> {
        self.shared.state.lock().unwrap().keepalive_replies.clone()
    }

    /// Contexts of the keepalive pings sent so far.
    pub fn pings_sent(&self) -> Vec<u32> {
        self.shared.state.lock().unwrap().pings_sent.clone()
    }

    /// Waits until `n` keepalive replies have arrived (or `timeout` passed); returns them.
    pub fn wait_keepalive_replies(&self, n: usize, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.keepalive_replies();
            if r.len() >= n || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until `n` messages with ID `id` have arrived (or `timeout` passed); returns them.
    pub fn wait_messages_with_id(&self, id: u16, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got: Vec<Vec<u8>> = self
                .shared
                .state
                .lock()
                .unwrap()
                .received
                .iter()
                .filter(|m| wire::msg_id(m) == Some(id))
                .cloned()
                .collect();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// True once a client said `sockclnt_delete`.
    pub fn saw_delete(&self) -> bool {
        self.shared.state.lock().unwrap().saw_delete
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.close_client();
    }
}

fn send_keepalive(s: &Shared, context: u32) {
    let ping = memclnt::MemclntKeepalive {
        client_index: context,
        context,
    };
    let msg = wire::to_vec(&ping, s.ids.keepalive).expect("encode keepalive");
    let mut f = frame::header(msg.len() as u32).to_vec();
    f.extend_from_slice(&msg);
    let mut client = s.client.lock().unwrap();
    if let Some(c) = client.as_mut() {
        // Recorded before the write, so a reply can never be seen before its ping.
        s.state.lock().unwrap().pings_sent.push(context);
        if c.write_all(&f).is_err() {
            s.state.lock().unwrap().pings_sent.pop();
        }
    }
}

fn accept_loop(listener: UnixListener, s: Arc<Shared>, table: Arc<MessageTable>) {
    let mut n = 0;
    while !s.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = s.clone();
                let t = table.clone();
                let index = fake_client_index(n);
                n += 1;
                std::thread::spawn(move || serve(stream, s, t, index));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn serve(mut stream: UnixStream, s: Arc<Shared>, table: Arc<MessageTable>, index: u32) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut reader = FrameReader::new(1 << 20);
    let mut buf = vec![0u8; 64 << 10];
    let mut registered = false;
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        while let Ok(Some(m)) = reader.next_frame() {
            let m = m.to_vec();
            if !registered {
                if wire::msg_id(&m) != Some(SOCKCLNT_CREATE_ID) {
                    return;
                }
                let create = memclnt::SockclntCreate::decode(&m).unwrap_or_default();
                let reply = memclnt::SockclntCreateReply {
                    client_index: index,
                    context: create.context,
                    response: 0,
                    index,
                    count: table.sockclnt_entries().len() as u16,
                    message_table: table.sockclnt_entries(),
                };
                let msg = wire::to_vec(&reply, SOCKCLNT_CREATE_REPLY_ID).expect("encode");
                let mut f = frame::header(msg.len() as u32).to_vec();
                f.extend_from_slice(&msg);
                let Ok(mut w) = stream.try_clone() else {
                    return;
                };
                // A client that stops reading must not wedge the test's sends forever.
                let _ = w.set_write_timeout(Some(Duration::from_secs(5)));
                // Under the lock, so that nothing the test sends can overtake the reply.
                let mut client = s.client.lock().unwrap();
                if w.write_all(&f).is_err() {
                    return;
                }
                *client = Some(w);
                s.state.lock().unwrap().clients_accepted += 1;
                drop(client);
                registered = true;
                continue;
            }
            handle(&s, &m);
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => reader.push(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn handle(s: &Shared, m: &[u8]) {
    let id = wire::msg_id(m);
    let mut st = s.state.lock().unwrap();
    st.received.push(m.to_vec());
    let reply = if id == Some(s.ids.keepalive_reply) {
        if let Ok(r) = memclnt::MemclntKeepaliveReply::decode(m) {
            st.keepalive_replies.push(r.context);
        }
        None
    } else if id == Some(s.ids.ping) && s.answer_pings.load(Ordering::Relaxed) {
        let req = memclnt::ControlPing::decode(m).unwrap_or_default();
        let rep = memclnt::ControlPingReply {
            context: req.context,
            retval: 0,
            client_index: req.client_index,
            vpe_pid: std::process::id(),
        };
        Some(wire::to_vec(&rep, s.ids.ping_reply).expect("encode"))
    } else if id == Some(s.ids.delete) {
        st.saw_delete = true;
        let req = memclnt::SockclntDelete::decode(m).unwrap_or_default();
        let rep = memclnt::SockclntDeleteReply {
            context: req.context,
            response: 1,
        };
        Some(wire::to_vec(&rep, s.ids.delete_reply).expect("encode"))
    } else {
        None
    };
    drop(st);
    let Some(rep) = reply else { return };
    let mut client = s.client.lock().unwrap();
    if let Some(c) = client.as_mut() {
        let mut f = frame::header(rep.len() as u32).to_vec();
        f.extend_from_slice(&rep);
        let _ = c.write_all(&f);
        if id == Some(s.ids.delete) {
            let _ = c.shutdown(std::net::Shutdown::Both);
            *client = None;
        }
    }
}

/// What the test asks a [`FakeShmServer`] to send to its current client.
#[derive(Debug)]
enum Outgoing {
    Keepalive(u32),
    Raw(Vec<u8>),
}

#[derive(Debug)]
struct ShmShared {
    state: Mutex<State>,
    outbox: Mutex<VecDeque<Outgoing>>,
    answer_pings: AtomicBool,
    stop: AtomicBool,
    /// 0 while starting, 1 once the segment exists, 2 if it could not be made.
    started: AtomicU32,
    ids: ShmIds,
}

#[derive(Debug, Clone, Copy)]
struct ShmIds {
    base: Ids,
    create: u16,
    create_reply: u16,
    delete: u16,
    delete_reply: u16,
}

/// A scripted server on a named shared-memory segment (`/dev/shm/<prefix>-vpe-api`), served by
/// a thread that polls. Dropping it (or [`FakeShmServer::kill`]) removes the segment and closes
/// its doorbell, as a dying server does.
#[derive(Debug)]
pub struct FakeShmServer {
    shared: Arc<ShmShared>,
    prefix: String,
    table: Arc<MessageTable>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeShmServer {
    /// Starts a server under a prefix unique to this process and `tag`.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, FakeOptions::default())
    }

    /// Starts a server with options (`ping_every` pings the current client).
    pub fn start_with(tag: &str, opts: FakeOptions) -> Self {
        let prefix = format!("vlc{}-{tag}", std::process::id());
        let table = Arc::new(MessageTable::with_core());
        let id = |n: &str| table.id(n).expect("core message");
        let ids = ShmIds {
            base: Ids {
                ping: id(memclnt::ControlPing::NAME_CRC),
                ping_reply: id(memclnt::ControlPingReply::NAME_CRC),
                keepalive: id(memclnt::MemclntKeepalive::NAME_CRC),
                keepalive_reply: id(memclnt::MemclntKeepaliveReply::NAME_CRC),
                delete: id(memclnt::SockclntDelete::NAME_CRC),
                delete_reply: id(memclnt::SockclntDeleteReply::NAME_CRC),
            },
            create: id(memclnt::MemclntCreateV2::NAME_CRC),
            create_reply: id(memclnt::MemclntCreateV2Reply::NAME_CRC),
            delete: id(memclnt::MemclntDelete::NAME_CRC),
            delete_reply: id(memclnt::MemclntDeleteReply::NAME_CRC),
        };
        let shared = Arc::new(ShmShared {
            state: Mutex::new(State::default()),
            outbox: Mutex::new(VecDeque::new()),
            answer_pings: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            started: AtomicU32::new(0),
            ids,
        });
        let published = memclnt::SockclntCreateReply {
            count: table.sockclnt_entries().len() as u16,
            message_table: table.sockclnt_entries(),
            ..Default::default()
        };
        let published = wire::to_vec(&published, SOCKCLNT_CREATE_REPLY_ID).expect("encode");
        let config = ShmConfig {
            named: Some(NamedConfig {
                prefix: Some(prefix.clone()),
                slots: 4,
                ..NamedConfig::default()
            }),
            ..ShmConfig::default()
        };
        let s = shared.clone();
        let thread = std::thread::spawn(move || match ShmServer::new(config, published) {
            Ok(shm) => {
                s.started.store(1, Ordering::SeqCst);
                serve_shm(shm, &s, opts.ping_every);
            }
            Err(e) => {
                eprintln!("fake shm server: {e}");
                s.started.store(2, Ordering::SeqCst);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.started.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            shared.started.load(Ordering::SeqCst),
            1,
            "the fake shared-memory server did not start"
        );
        Self {
            shared,
            prefix,
            table,
            thread: Some(thread),
        }
    }

    /// The prefix clients attach under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The message table the segment publishes.
    pub fn table(&self) -> &MessageTable {
        &self.table
    }

    /// Clients registered so far.
    pub fn registrations(&self) -> u32 {
        self.shared.state.lock().unwrap().clients_accepted
    }

    /// Waits until `n` clients have registered (or `timeout` passed).
    pub fn wait_registrations(&self, n: u32, timeout: Duration) -> bool {
        State::wait_until(
            &self.shared.state,
            timeout,
            |st| (st.clients_accepted >= n).then_some(true),
            |_| false,
        )
    }

    /// Sends one `memclnt_keepalive` with `context` to the current client.
    pub fn send_keepalive(&self, context: u32) {
        self.shared
            .outbox
            .lock()
            .unwrap()
            .push_back(Outgoing::Keepalive(context));
    }

    /// Sends one message to the current client.
    pub fn send_raw(&self, msg: &[u8]) {
        self.shared
            .outbox
            .lock()
            .unwrap()
            .push_back(Outgoing::Raw(msg.to_vec()));
    }

    /// Answer `control_ping` (the default) or ignore it.
    pub fn set_answer_pings(&self, on: bool) {
        self.shared.answer_pings.store(on, Ordering::Relaxed);
    }

    /// Contexts of the keepalive replies received so far.
    pub fn keepalive_replies(&self) -> Vec<u32> {
        self.shared.state.lock().unwrap().keepalive_replies.clone()
    }

    /// Contexts of the keepalive pings sent so far.
    pub fn pings_sent(&self) -> Vec<u32> {
        self.shared.state.lock().unwrap().pings_sent.clone()
    }

    /// Waits until `n` keepalive replies have arrived (or `timeout` passed); returns them.
    pub fn wait_keepalive_replies(&self, n: usize, timeout: Duration) -> Vec<u32> {
        State::wait_until(
            &self.shared.state,
            timeout,
            |st| (st.keepalive_replies.len() >= n).then(|| st.keepalive_replies.clone()),
            |st| st.keepalive_replies.clone(),
        )
    }

    /// Waits until `n` messages with ID `id` have arrived (or `timeout` passed); returns them.
    pub fn wait_messages_with_id(&self, id: u16, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let pick = |st: &State| -> Vec<Vec<u8>> {
            st.received
                .iter()
                .filter(|m| wire::msg_id(m) == Some(id))
                .cloned()
                .collect()
        };
        State::wait_until(
            &self.shared.state,
            timeout,
            |st| Some(pick(st)).filter(|v| v.len() >= n),
            pick,
        )
    }

    /// True once a client said `memclnt_delete`.
    pub fn saw_delete(&self) -> bool {
        self.shared.state.lock().unwrap().saw_delete
    }

    /// Stops serving and removes the segment and its doorbell, as a server that dies.
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FakeShmServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The fake shared-memory server's loop: adopt claimed slots, take every message, send what
/// the test queued, retry backlogs; nap briefly when idle.
fn serve_shm(mut shm: ShmServer, s: &ShmShared, ping_every: Option<Duration>) {
    let mut current: Option<ClientIndex> = None;
    let mut buf = Vec::new();
    let mut next_ping = ping_every.map(|e| Instant::now() + e);
    let mut ping_context = 1u32;
    while !s.stop.load(Ordering::SeqCst) {
        let mut busy = false;
        shm.poll_named();
        for id in shm.channel_ids() {
            while let Ok(true) = shm.recv(id, &mut buf) {
                busy = true;
                handle_shm(&mut shm, s, id, &buf, &mut current);
            }
        }
        if let (Some(at), Some(every)) = (next_ping, ping_every) {
            if Instant::now() >= at {
                s.outbox
                    .lock()
                    .unwrap()
                    .push_back(Outgoing::Keepalive(ping_context));
                ping_context += 1;
                next_ping = Some(at + every);
            }
        }
        let out: Vec<Outgoing> = s.outbox.lock().unwrap().drain(..).collect();
        for o in out {
            busy = true;
            let Some(to) = current else { continue };
            let msg = match o {
                Outgoing::Keepalive(context) => {
                    let ping = memclnt::MemclntKeepalive {
                        client_index: to.0,
                        context,
                    };
                    // Recorded before the send, so a reply can never be seen before its ping.
                    s.state.lock().unwrap().pings_sent.push(context);
                    wire::to_vec(&ping, s.ids.base.keepalive).expect("encode keepalive")
                }
                Outgoing::Raw(m) => m,
            };
            let _ = shm.send(to, &msg);
        }
        shm.flush_backlogs();
        shm.reap_drained();
        if !busy {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn handle_shm(
    shm: &mut ShmServer,
    s: &ShmShared,
    id: vlibmemory::server::ChannelId,
    m: &[u8],
    current: &mut Option<ClientIndex>,
) {
    let msg_id = wire::msg_id(m);
    let ids = s.ids;
    s.state.lock().unwrap().received.push(m.to_vec());
    if msg_id == Some(ids.create) {
        let Ok(req) = memclnt::MemclntCreateV2::decode(m) else {
            return;
        };
        let Some(index) = shm.register(id, &req.name, req.keepalive) else {
            return;
        };
        let reply = memclnt::MemclntCreateV2Reply {
            context: req.context,
            response: 0,
            handle: 0,
            index: index.0,
            message_table: shm.named_table(id).unwrap_or(0),
        };
        let bytes = wire::to_vec(&reply, ids.create_reply).expect("encode");
        let _ = shm.send_channel(id, &bytes);
        *current = Some(index);
        s.state.lock().unwrap().clients_accepted += 1;
    } else if msg_id == Some(ids.base.keepalive_reply) {
        if let Ok(r) = memclnt::MemclntKeepaliveReply::decode(m) {
            s.state.lock().unwrap().keepalive_replies.push(r.context);
        }
    } else if msg_id == Some(ids.base.ping) && s.answer_pings.load(Ordering::Relaxed) {
        let req = memclnt::ControlPing::decode(m).unwrap_or_default();
        let rep = memclnt::ControlPingReply {
            context: req.context,
            retval: 0,
            client_index: req.client_index,
            vpe_pid: std::process::id(),
        };
        let bytes = wire::to_vec(&rep, ids.base.ping_reply).expect("encode");
        let _ = shm.send_channel(id, &bytes);
    } else if msg_id == Some(ids.delete) {
        let req = memclnt::MemclntDelete::decode(m).unwrap_or_default();
        s.state.lock().unwrap().saw_delete = true;
        let rep = memclnt::MemclntDeleteReply {
            response: 1,
            handle: req.handle,
        };
        let bytes = wire::to_vec(&rep, ids.delete_reply).expect("encode");
        let _ = shm.send_channel(id, &bytes);
        shm.remove_after_drain(id);
        *current = None;
    }
}
