//! `cargo xtask bench server`: what a client pays to get in, what the server pays to keep it,
//! and how the server answers one client while many others load it.
//!
//! - Connect: `SocketClient::connect` until the first `control_ping` reply, against a server
//!   (in-process, `Server::builder()` on a thread) whose table has 1,000 entries (the core
//!   modules plus a generated module of the missing messages), beside the same against a server
//!   with the core table only, measured in the same run.
//! - Pivot: `SocketClient::pivot` (server-default segment) on a fresh connection to the same
//!   server, beside the connect figure.
//! - Memory: the `api-server` binary's resident set (`VmRSS` of `/proc/PID/status`) idle, with
//!   1,000 socket clients, then with 200 of them pivoted to shared memory; bytes per client.
//!   Kernel socket buffers are not in the process's RSS and are not counted.
//! - Load: a probe client's sync `control_ping` round trips, each timed on its own, on an idle
//!   `api-server` and then while 100 other clients (threads of this process, one connection
//!   each) keep 16 pipelined pings in flight; plus the pairs per second the loaded server
//!   answers, beside one pipelining client alone.
//!
//! Goals (printed as met or MISSED): connect with 1,000 entries < 1 ms (median); pivot < 2 ms
//! (median). Without `--bench` (as `cargo test --benches` runs it) every count is tiny.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vlib_server::log::Level;
use vlib_server::server::{Plugin, PluginRegistrar, Server, ServerBuildError, ShutdownHandle};
use vlibapi::MessageTable;
use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibapi::schema::Module;
use vlibsocket::client::SocketClient;
use vppinfra::bench::{Bench, Goal, Summary, Unit};
use vppinfra::sync::{Arc, AtomicBool, AtomicU64, Ordering, thread};

/// Entries in the big table.
const TABLE_ENTRIES: usize = 1_000;
/// Load clients beside the probe.
const LOAD_CLIENTS: usize = 100;
/// Pings each load client keeps in flight.
const LOAD_WINDOW: usize = 16;
/// The deadline for anything a benchmark waits for.
const DEADLINE: Duration = Duration::from_secs(30);

fn main() {
    let mut b = Bench::from_args("server");
    let dir = std::env::temp_dir().join(format!("server-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = DirGuard(dir.clone());

    if b.wants("connect") || b.wants("pivot") {
        connect_and_pivot(&mut b, &dir);
    }
    if b.wants("memory") {
        memory(&mut b, &dir);
    }
    if b.wants("probe") || b.wants("load") {
        probe_under_load(&mut b, &dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Connect and pivot

/// Adds one generated module to the table.
struct Synthetic(Module);

impl Plugin for Synthetic {
    fn name(&self) -> &str {
        "bench-synthetic"
    }

    fn install(self: Box<Self>, r: &mut PluginRegistrar<'_>) -> Result<(), ServerBuildError> {
        r.add_module(self.0)?;
        Ok(())
    }
}

/// A module of `count` messages in VPP's `.api.json` form: requests and their replies, with
/// names as long as typical VPP ones.
fn synthetic_module(count: usize) -> Module {
    let mut messages = Vec::with_capacity(count);
    for i in 0..count {
        let pair = i / 2;
        messages.push(if i % 2 == 0 {
            format!(
                "[\"bench_synthetic_object_{pair:04}_add_del\", [\"u16\", \"_vl_msg_id\"], \
                 [\"u32\", \"client_index\"], [\"u32\", \"context\"], [\"bool\", \"is_add\"], \
                 [\"u32\", \"object_index\"], [\"string\", \"tag\", 64]]"
            )
        } else {
            format!(
                "[\"bench_synthetic_object_{pair:04}_add_del_reply\", [\"u16\", \"_vl_msg_id\"], \
                 [\"u32\", \"context\"], [\"i32\", \"retval\"], [\"u32\", \"object_index\"]]"
            )
        });
    }
    let text = format!(
        "{{\"types\": [], \"messages\": [{}], \"unions\": [], \"enums\": [], \
         \"enumflags\": [], \"services\": {{}}, \"options\": {{\"version\": \"1.0.0\"}}, \
         \"aliases\": {{}}, \"imports\": []}}",
        messages.join(", ")
    );
    Module::from_json_text("bench_synthetic", &text).expect("generated module parses")
}

/// A server running on a thread of this process; stopped on drop.
struct InProcess {
    path: PathBuf,
    stop: ShutdownHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(path: PathBuf, module: Option<Module>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let server_path = path.clone();
        let thread = thread::spawn(move || {
            let mut builder = Server::builder()
                .socket_path(&server_path)
                .log_level(Level::Warn);
            if let Some(m) = module {
                builder = builder.plugin(Synthetic(m));
            }
            let mut server = builder.build().expect("in-process server");
            tx.send(server.shutdown_handle()).unwrap();
            server.run().expect("in-process server run");
        });
        let stop = rx
            .recv_timeout(DEADLINE)
            .expect("in-process server started");
        Self {
            path,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Times connect + the first `control_ping` reply, `n` times, each on its own.
fn connect_samples(path: &Path, n: u64, expect_entries: usize) -> Vec<f64> {
    let mut samples = Vec::with_capacity(n as usize);
    // One untimed connection: the first pays for cold code and the check below.
    let c = SocketClient::connect(path, "connect-bench").unwrap();
    assert_eq!(c.table().len(), expect_entries, "message table entries");
    c.disconnect().unwrap();
    for _ in 0..n {
        let t = Instant::now();
        let mut c = SocketClient::connect(path, "connect-bench").unwrap();
        let _: ControlPingReply = c.request(&ControlPing::default()).unwrap();
        samples.push(t.elapsed().as_nanos() as f64);
        c.disconnect().unwrap();
    }
    samples
}

fn connect_and_pivot(b: &mut Bench, dir: &Path) {
    let core = MessageTable::with_core().len();
    assert!(
        core < TABLE_ENTRIES,
        "the core table alone has {core} entries"
    );
    let small = InProcess::start(dir.join("core.sock"), None);
    let big = InProcess::start(
        dir.join("big.sock"),
        Some(synthetic_module(TABLE_ENTRIES - core)),
    );
    let n = if b.is_smoke() { 5 } else { 400 };

    let base = b.report(
        Summary::samples(
            format!("socket connect + first ping, core table ({core} entries)"),
            connect_samples(&small.path, n, core),
        ),
        None,
    );
    let connect = b.report(
        Summary::samples(
            format!("socket connect + first ping, {TABLE_ENTRIES}-entry table"),
            connect_samples(&big.path, n, TABLE_ENTRIES),
        ),
        Some(&base),
    );
    b.goal(&connect, Goal::MedianAtMost(1e6));

    let n = if b.is_smoke() { 3 } else { 200 };
    let mut samples = Vec::with_capacity(n);
    for i in 0..=n {
        let mut c = SocketClient::connect(&big.path, "pivot-bench").unwrap();
        let t = Instant::now();
        // Size 0: the server's default segment, as vat asks for.
        c.pivot(0, None).unwrap();
        let ns = t.elapsed().as_nanos() as f64;
        let _: ControlPingReply = c.request(&ControlPing::default()).unwrap();
        c.disconnect().unwrap();
        // The first pivot of the process also starts svm's barrier registration; not counted.
        if i > 0 {
            samples.push(ns);
        }
    }
    let pivot = b.report(
        Summary::samples(
            format!("pivot to shm (sock_init_shm, default segment), {TABLE_ENTRIES}-entry table"),
            samples,
        ),
        Some(&connect),
    );
    b.goal(&pivot, Goal::MedianAtMost(2e6));
    drop(big);
    drop(small);
}

// ---------------------------------------------------------------------------------------------
// Memory per client

/// The `api-server` binary on `path`; killed on drop.
struct ServerProcess {
    child: Child,
    path: PathBuf,
}

impl ServerProcess {
    fn start(path: PathBuf) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_api-server"))
            .arg("--socket")
            .arg(&path)
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&path).is_err() {
            assert!(start.elapsed() < DEADLINE, "server did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { child, path }
    }

    /// Resident set size in bytes.
    fn rss(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The soft limit on open files of this process.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

fn memory(b: &mut Bench, dir: &Path) {
    let (mut sockets, mut pivots, rounds) = if b.is_smoke() {
        (20, 4, 1)
    } else {
        (1_000, 200, 5)
    };
    // Each socket client holds one fd, each pivoted one a few more; the server inherits the limit.
    let limit = open_files_limit();
    if sockets + 4 * pivots + 64 > limit {
        sockets = limit.saturating_sub(64) * 2 / 3;
        pivots = sockets / 5;
        eprintln!("server: open-file limit {limit}: measuring {sockets} clients, {pivots} pivoted");
    }
    let (mut idle, mut per_socket, mut per_shm) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let server = ServerProcess::start(dir.join(format!("mem{round}.sock")));
        // A first client that comes and goes: the server's lazily built state exists before
        // the idle figure is taken.
        let mut warm = SocketClient::connect(&server.path, "warm").unwrap();
        warm.pivot(0, None).unwrap();
        let _: ControlPingReply = warm.request(&ControlPing::default()).unwrap();
        warm.disconnect().unwrap();
        let rss0 = server.rss();
        let mut clients: Vec<SocketClient> = (0..sockets)
            .map(|i| SocketClient::connect(&server.path, &format!("mem{i}")).unwrap())
            .collect();
        let rss1 = server.rss();
        for (i, c) in clients.iter_mut().take(pivots).enumerate() {
            c.pivot(0, None)
                .unwrap_or_else(|e| panic!("pivot of client {i} of {pivots}: {e}"));
            let _: ControlPingReply = c
                .request(&ControlPing::default())
                .unwrap_or_else(|e| panic!("ping of pivoted client {i}: {e}"));
        }
        let rss2 = server.rss();
        idle.push(rss0);
        per_socket.push((rss1 - rss0) / sockets as f64);
        per_shm.push((rss2 - rss1) / pivots as f64);
        drop(clients);
    }
    b.report(
        Summary::new("server RSS, idle (after one client came and went)", 1, idle)
            .with_unit(Unit::Bytes),
        None,
    );
    let socket = b.report(
        Summary::new(
            format!("memory per socket client ({sockets} connected)"),
            1,
            per_socket,
        )
        .with_unit(Unit::Bytes),
        None,
    );
    b.report(
        Summary::new(
            format!("memory per shm client ({pivots} pivoted, beyond its socket)"),
            1,
            per_shm,
        )
        .with_unit(Unit::Bytes),
        Some(&socket),
    );
}

// ---------------------------------------------------------------------------------------------
// A probe under load

/// Times `n` sync pings of `c`, each on its own.
fn probe_samples(c: &mut SocketClient, n: u64) -> Vec<f64> {
    let _: ControlPingReply = c.request(&ControlPing::default()).unwrap();
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let _: ControlPingReply = c.request(&ControlPing::default()).unwrap();
            t.elapsed().as_nanos() as f64
        })
        .collect()
}

/// Keeps `LOAD_WINDOW` pings in flight on its own connection until `stop`, counting replies.
fn load_client(path: &Path, name: &str, ready: &AtomicU64, stop: &AtomicBool, done: &AtomicU64) {
    let mut c = SocketClient::connect(path, name).unwrap();
    ready.fetch_add(1, Ordering::Relaxed);
    let mut in_flight = VecDeque::with_capacity(LOAD_WINDOW);
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < LOAD_WINDOW {
            in_flight.push_back(c.send(&ControlPing::default()).unwrap());
        }
        c.flush().unwrap();
        // Refill when half are back, as the pipelined benchmarks do.
        while in_flight.len() > LOAD_WINDOW / 2 {
            let ctx = in_flight.pop_front().unwrap();
            let _: ControlPingReply = c.wait_reply(ctx).unwrap();
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
    while let Some(ctx) = in_flight.pop_front() {
        let _: ControlPingReply = c.wait_reply(ctx).unwrap();
    }
    c.disconnect().unwrap();
}

/// Load clients on threads; stopped and joined on drop.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(path: &Path, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|i| {
                let (path, stop, done, ready) = (
                    path.to_path_buf(),
                    stop.clone(),
                    done.clone(),
                    ready.clone(),
                );
                thread::spawn(move || load_client(&path, &format!("load{i}"), &ready, &stop, &done))
            })
            .collect();
        let start = Instant::now();
        while ready.load(Ordering::Relaxed) < clients as u64 {
            assert!(start.elapsed() < DEADLINE, "load clients did not connect");
            std::thread::sleep(Duration::from_millis(1));
        }
        Self {
            stop,
            done,
            threads,
        }
    }

    /// Nanoseconds per answered ping in each of `intervals` windows of `each`, as a summary
    /// whose operations per run are the mean pairs per window.
    fn rate(&self, name: &str, intervals: usize, each: Duration) -> Summary {
        let mut total = 0;
        let runs = (0..intervals)
            .map(|_| {
                let (t, before) = (Instant::now(), self.done.load(Ordering::Relaxed));
                std::thread::sleep(each);
                let pairs = (self.done.load(Ordering::Relaxed) - before).max(1);
                total += pairs;
                t.elapsed().as_nanos() as f64 / pairs as f64
            })
            .collect();
        Summary::new(name, (total / intervals as u64).max(2), runs)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn probe_under_load(b: &mut Bench, dir: &Path) {
    let (clients, samples, intervals, each) = if b.is_smoke() {
        (4, 20, 2, Duration::from_millis(20))
    } else {
        (LOAD_CLIENTS, 3_000, 11, Duration::from_millis(300))
    };
    let server = ServerProcess::start(dir.join("load.sock"));
    let mut probe = SocketClient::connect(&server.path, "probe").unwrap();
    let idle = b.report(
        Summary::samples(
            "probe sync RTT each, idle server",
            probe_samples(&mut probe, samples),
        ),
        None,
    );
    let alone = {
        let load = Load::start(&server.path, 1);
        let s = load.rate(
            "pipelined pairs, 1 loading client alone (window 16)",
            intervals,
            each,
        );
        drop(load);
        b.report(s, None)
    };
    let load = Load::start(&server.path, clients);
    let loaded = probe_samples(&mut probe, samples);
    let rate = load.rate(
        &format!("pipelined pairs, {clients} loading clients together (window 16)"),
        intervals,
        each,
    );
    drop(load);
    b.report(
        Summary::samples(
            format!("probe sync RTT each, {clients} clients pipelining"),
            loaded,
        ),
        Some(&idle),
    );
    b.report(rate, Some(&alone));
    probe.disconnect().unwrap();
    let _ = std::io::stdout().flush();
}

/// Removes the socket directory at the end.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
