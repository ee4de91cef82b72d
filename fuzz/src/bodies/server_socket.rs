//! A real server instance (`vlib_server::server::Server`, the example plugin installed) driven
//! in-process one loop turn at a time, fed a sequence of frames and raw bytes over real
//! connections on a temporary socket path. After each input every attacker connection is
//! half-closed and the server must close it; then a well-behaved client, connected and
//! registered all along, must still get a `control_ping` answered, must still be registered, and
//! the server must hold no other registration and no shared-memory segment.
//!
//! Input: a sequence of operations, each a selector byte and its operands:
//! 0. a frame of a known message: an ID selector byte (`1 + b % table length`), a body length
//!    byte, the body; the header and the ID are added;
//! 1. raw bytes: a length byte and that many bytes, framing included or not;
//! 2. one server loop turn;
//! 3. the attacker reads (and drops) what the server sent it;
//! 4. the good client pings in the middle of it all (its answer is awaited at the end);
//! 5. another attacker connection (at most four), which later writes go to;
//! 6. the current attacker half-closes its sending side.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vlib_server::log::Level;
use vlib_server::server::{Server, ServerConfig, ShmWait};
use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vlibsocket::frame::{FrameReader, header};
use vlibsocket::server::SocketConfig;

use super::Input;

/// How long the server may take to do what it must (close a half-closed connection, answer a
/// ping) before the harness calls it a hang. Generous: CI machines are slow and shared.
const DEADLINE: Duration = Duration::from_secs(10);

/// Inputs after which the fuzz target builds a fresh server, bounding the state (things added
/// through the example plugin, say) that piles up across inputs.
const INPUTS_PER_SERVER: u64 = 5000;

/// Attacker connections open at once.
const MAX_ATTACKERS: usize = 4;

/// A server on a socket in a temporary directory, and a registered, well-behaved client.
pub struct Harness {
    server: Server,
    dir: PathBuf,
    good: UnixStream,
    good_reader: FrameReader,
    good_index: u32,
    next_context: u32,
    ping_id: u16,
    ping_reply_id: u16,
    table_len: u16,
    inputs: u64,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nonblocking_connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the server under test");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Writes all of `bytes` to a nonblocking socket, letting the server turn while it is full; a
/// peer that closed or that does not take the bytes within the deadline ends the write.
fn write_all(server: &mut Server, s: &mut UnixStream, mut bytes: &[u8]) {
    let start = Instant::now();
    while !bytes.is_empty() {
        match s.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if start.elapsed() > DEADLINE {
                    return;
                }
                turn(server, Duration::from_micros(100));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn turn(server: &mut Server, max_wait: Duration) {
    let running = server
        .run_turn(max_wait)
        .expect("the server's event loop failed");
    assert!(running, "input made the server stop");
}

/// Reads whatever is waiting; `true` once the peer has closed.
fn drain(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

impl Harness {
    /// Builds a server on a fresh temporary socket path and registers the good client.
    pub fn new() -> Harness {
        use vppinfra::sync::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vlib-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("api.sock");
        let config = ServerConfig {
            socket: SocketConfig::new(&path),
            log_level: Level::Off,
            shm_wait: ShmWait::Park,
            ..ServerConfig::default()
        };
        let mut server = Server::builder()
            .config(config)
            .plugin(example_plugin::ExamplePlugin::new())
            .build()
            .expect("the server under test builds");
        let table = server.table();
        let ping_id = table.id_of::<memclnt::ControlPing>().expect("control_ping");
        let ping_reply_id = table
            .id_of::<memclnt::ControlPingReply>()
            .expect("control_ping_reply");
        let create_id = table
            .id_of::<memclnt::SockclntCreate>()
            .expect("sockclnt_create");
        let create_reply_id = table
            .id_of::<memclnt::SockclntCreateReply>()
            .expect("sockclnt_create_reply");
        let table_len = u16::try_from(table.len()).expect("fewer than 65536 messages");
        let mut good = nonblocking_connect(&path);
        let create = memclnt::SockclntCreate {
            context: 1,
            name: "good".to_owned(),
        };
        let msg = wire::to_vec(&create, create_id).expect("encode");
        let mut frame = header(msg.len() as u32).to_vec();
        frame.extend_from_slice(&msg);
        write_all(&mut server, &mut good, &frame);
        let mut good_reader = FrameReader::new(64 << 20);
        let reply = await_message(&mut server, &mut good, &mut good_reader, |m| {
            wire::msg_id(m) == Some(create_reply_id)
        });
        let reply = memclnt::SockclntCreateReply::decode(&reply).expect("create reply decodes");
        assert_eq!(reply.response, 0, "registration refused");
        Harness {
            server,
            dir,
            good,
            good_reader,
            good_index: reply.index,
            next_context: 2,
            ping_id,
            ping_reply_id,
            table_len,
            inputs: 0,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// Sends a `control_ping` from the good client; returns its context.
    fn send_ping(&mut self) -> u32 {
        let context = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(2);
        let ping = memclnt::ControlPing {
            client_index: self.good_index,
            context,
        };
        let msg = wire::to_vec(&ping, self.ping_id).expect("encode");
        let mut frame = header(msg.len() as u32).to_vec();
        frame.extend_from_slice(&msg);
        write_all(&mut self.server, &mut self.good, &frame);
        context
    }

    /// Waits for the good client's answers to `contexts`, dropping everything else it gets
    /// (events, say).
    fn await_pings(&mut self, contexts: &mut Vec<u32>) {
        let reply_id = self.ping_reply_id;
        while let Some(&want) = contexts.first() {
            let reply = await_message(
                &mut self.server,
                &mut self.good,
                &mut self.good_reader,
                |m| {
                    wire::msg_id(m) == Some(reply_id)
                        && memclnt::ControlPingReply::decode(m).is_ok_and(|r| r.context == want)
                },
            );
            let reply = memclnt::ControlPingReply::decode(&reply).expect("checked above");
            assert_eq!(reply.retval, 0);
            assert_eq!(
                reply.client_index, self.good_index,
                "the ping came back to another index"
            );
            contexts.remove(0);
        }
    }

    /// Runs one input against this server.
    pub fn run(&mut self, data: &[u8]) {
        self.inputs += 1;
        let mut input = Input::new(data);
        let mut attackers = vec![nonblocking_connect(&self.path())];
        let mut pings = Vec::new();
        while let Some(op) = input.byte() {
            let current = attackers.len() - 1;
            match op % 7 {
                0 => {
                    let id = 1 + u16::from(input.byte().unwrap_or(0)) % self.table_len;
                    let len = usize::from(input.byte().unwrap_or(0));
                    let body = input.take(len);
                    let mut frame = header(2 + body.len() as u32).to_vec();
                    frame.extend_from_slice(&id.to_be_bytes());
                    frame.extend_from_slice(body);
                    write_all(&mut self.server, &mut attackers[current], &frame);
                }
                1 => {
                    let len = usize::from(input.byte().unwrap_or(0));
                    let bytes = input.take(len);
                    write_all(&mut self.server, &mut attackers[current], bytes);
                }
                2 => turn(&mut self.server, Duration::ZERO),
                3 => {
                    drain(&mut attackers[current]);
                }
                4 => pings.push(self.send_ping()),
                5 if attackers.len() < MAX_ATTACKERS => {
                    attackers.push(nonblocking_connect(&self.path()));
                }
                6 => {
                    let _ = attackers[current].shutdown(std::net::Shutdown::Write);
                }
                _ => {}
            }
        }
        // Every attacker half-closes; the server must handle what it sent and close it.
        for a in &attackers {
            let _ = a.shutdown(std::net::Shutdown::Write);
        }
        let start = Instant::now();
        let mut open: Vec<UnixStream> = attackers;
        while !open.is_empty() {
            open.retain_mut(|a| !drain(a));
            assert!(
                start.elapsed() < DEADLINE,
                "the server kept {} half-closed connection(s) open",
                open.len()
            );
            turn(&mut self.server, Duration::from_millis(1));
        }
        pings.push(self.send_ping());
        self.await_pings(&mut pings);
        let directory = self.server.directory();
        let directory = directory.borrow();
        let registered: Vec<u32> = directory.clients().map(|c| c.index.0).collect();
        assert_eq!(
            registered,
            vec![self.good_index],
            "registrations other than the good client's survived their connections"
        );
        drop(directory);
        let rings = self.server.run_cli("show api ring").unwrap_or_default();
        assert!(
            rings.contains("No shared-memory segments"),
            "a departed client's segment survived it:\n{rings}"
        );
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Turns the server until the good client receives a message `wanted` accepts; panics at the
/// deadline or when the server closes the good client.
fn await_message(
    server: &mut Server,
    s: &mut UnixStream,
    reader: &mut FrameReader,
    wanted: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let start = Instant::now();
    loop {
        while let Some(frame) = reader.next_frame().expect("the server frames correctly") {
            if wanted(frame) {
                return frame.to_vec();
            }
        }
        match reader.read_from(&*s) {
            Ok(vlibsocket::frame::ReadOutcome::Eof) => {
                panic!("the server closed the well-behaved client")
            }
            Ok(_) => {}
            Err(e) => panic!("the well-behaved client's socket failed: {e}"),
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the well-behaved client got no answer"
        );
        turn(server, Duration::from_millis(1));
    }
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

/// Runs one input against this thread's server (rebuilt every few thousand inputs).
pub fn run(data: &[u8]) {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        if h.as_ref().is_none_or(|h| h.inputs >= INPUTS_PER_SERVER) {
            *h = None;
            *h = Some(Harness::new());
        }
        if let Some(h) = h.as_mut() {
            h.run(data);
        }
    });
}
