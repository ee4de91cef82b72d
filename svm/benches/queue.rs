//! Cross-process queue benchmarks: round trips and one-way throughput of 64-byte elements
//! between this process and a child that shares a memfd segment, each beside a baseline
//! measured in the same run on the same memory:
//!
//! - round trip, against a raw ping-pong of two processes spinning on one shared word;
//! - throughput, against a raw single-producer/single-consumer ring (no checks, no parking).
//!
//! The child is this binary again, started with `SVM_BENCH_ROLE` set; it receives the segment
//! over a Unix socket (`SCM_RIGHTS`). `cargo bench -p svm --bench queue` runs it for real;
//! without `--bench` (as `cargo test --benches` runs it) it is a quick smoke run.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use svm::notify::WaitPolicy;
use svm::queue::{self, Consumer, Producer, QUEUE_ALIGN, QueueGeometry};
use svm::region::SharedRegion;
use svm::segment::{AttachOptions, Segment, SegmentOptions};
use vppinfra::bench::{Bench, Summary};
use vppinfra::socket::{self, ListenOptions, Listener, SocketAcceptError};
use vppinfra::sync::{AtomicU64, Ordering, spin_loop};

const ROLE_ENV: &str = "SVM_BENCH_ROLE";
const SOCK_ENV: &str = "SVM_BENCH_SOCK";
const ELEM: usize = 64;
const ELEM_WORDS: usize = ELEM / 8;
/// Capacity of the raw ring and of the queues.
const CAPACITY: usize = 256;
const STOP: u64 = u64::MAX;
const DEADLINE: Duration = Duration::from_secs(60);

/// Opaque header words holding the offsets of the benchmark's structures.
const OPAQUE_PING: usize = 0;
const OPAQUE_RING: usize = 1;
const OPAQUE_DOWN: usize = 2;
const OPAQUE_UP: usize = 3;

fn geometry() -> QueueGeometry {
    QueueGeometry::new(CAPACITY as u32, ELEM as u32).unwrap()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        child(&role);
        return;
    }
    let mut b = Bench::from_args("queue");
    let dir = std::env::temp_dir().join(format!("svm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = socket::listen(
        dir.join("sock"),
        &ListenOptions::new().nonblocking(true).mode(0o600),
    )
    .unwrap();
    let segment = Segment::create(&SegmentOptions::new(4 << 20).name("svm bench")).unwrap();
    for (slot, size) in [
        (OPAQUE_PING, 256),
        (OPAQUE_RING, 256 + CAPACITY * ELEM),
        (OPAQUE_DOWN, geometry().footprint()),
        (OPAQUE_UP, geometry().footprint()),
    ] {
        let offset = segment.alloc(size, QUEUE_ALIGN).unwrap();
        segment.set_opaque(slot, offset as u64);
    }
    segment.set_ready();
    let parent = Parent {
        listener,
        segment,
        _dir: DirGuard(dir),
    };
    let mut goals = Vec::new();

    // Round trips.
    let rtt_ops = 50_000;
    let raw_rtt = parent.case(
        &mut b,
        "rtt raw spin ping-pong (baseline)",
        rtt_ops,
        None,
        "ping",
    );
    let poll = parent.case(
        &mut b,
        "rtt queue, polling",
        rtt_ops,
        Some(&raw_rtt),
        "rtt poll",
    );
    goals.push(("polling round trip", poll.median() / raw_rtt.median(), 1.5));
    parent.case(
        &mut b,
        "rtt queue, polling with futex notifiers",
        rtt_ops,
        Some(&raw_rtt),
        "rtt poll-notify",
    );
    let spin_park = parent.case(
        &mut b,
        "rtt queue, spin-then-park",
        rtt_ops,
        Some(&raw_rtt),
        "rtt spin-park",
    );
    goals.push((
        "spin-then-park round trip",
        spin_park.median() / raw_rtt.median(),
        2.0,
    ));
    parent.case(
        &mut b,
        "rtt queue, park at once (sleeps)",
        rtt_ops / 100,
        Some(&raw_rtt),
        "rtt park",
    );

    // One-way throughput (ns per element; lower is better).
    let stream_ops = 500_000;
    let raw_ring = parent.case(
        &mut b,
        "one-way raw SPSC ring (baseline)",
        stream_ops,
        None,
        "ring",
    );
    let stream = parent.case(
        &mut b,
        "one-way queue, spin-then-park",
        stream_ops,
        Some(&raw_ring),
        "stream spin-park",
    );
    goals.push((
        "one-way throughput (time per element)",
        stream.median() / raw_ring.median(),
        2.0,
    ));
    parent.case(
        &mut b,
        "one-way queue, polling, no notifiers",
        stream_ops,
        Some(&raw_ring),
        "stream poll",
    );
    parent.case(
        &mut b,
        "one-way queue, batches of 16",
        stream_ops,
        Some(&raw_ring),
        "stream batch",
    );

    if b.is_smoke() {
        return;
    }
    println!();
    for (what, ratio, limit) in goals {
        if ratio.is_nan() {
            continue;
        }
        let verdict = if ratio <= limit { "met" } else { "MISSED" };
        println!("goal {what}: {ratio:.2}x the baseline (goal <= {limit:.1}x): {verdict}");
    }
}

/// Removes the socket directory at the end.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Parent {
    listener: Listener,
    segment: Segment,
    _dir: DirGuard,
}

impl Parent {
    fn offset(&self, slot: usize) -> usize {
        self.segment.opaque(slot).unwrap() as usize
    }

    /// Runs one case: starts a child playing `mode`, times `ops` operations per run, stops it.
    fn case(
        &self,
        b: &mut Bench,
        name: &str,
        ops: u64,
        baseline: Option<&Summary>,
        mode: &str,
    ) -> Summary {
        // Baselines always run; other cases honour the command-line filter.
        if baseline.is_some() && !b.wants(name) {
            return Summary::new(name, 0, vec![f64::NAN]);
        }
        let region = self.segment.region().clone();
        for slot in [OPAQUE_DOWN, OPAQUE_UP] {
            queue::init(&region, self.offset(slot), geometry()).unwrap();
        }
        for w in region.words(self.offset(OPAQUE_PING), 32).unwrap() {
            w.store(0, Ordering::Relaxed);
        }
        for w in region.words(self.offset(OPAQUE_RING), 32).unwrap() {
            w.store(0, Ordering::Relaxed);
        }
        // Streams: the child produces exactly what the warm-up and the timed runs consume.
        let total = b.ops(ops) * (b.runs() as u64 + 1);
        let (mut child, conn) = self.spawn(mode, total);
        let mut side = ParentSide::new(&region, self, mode);
        let summary = match baseline {
            Some(base) => b.run_vs(name, ops, base, |n| side.run(n)),
            None => b.run(name, ops, |n| side.run(n)),
        };
        side.stop();
        drop(conn);
        wait(&mut child);
        summary
    }

    fn spawn(&self, mode: &str, total: u64) -> (Child, OwnedFd) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE_ENV, mode)
            .env(SOCK_ENV, self.listener.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let conn = loop {
            match self.listener.accept_with(false) {
                Ok(fd) => break fd,
                Err(SocketAcceptError::WouldBlock) => {}
                Err(e) => panic!("accept: {e}"),
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "bench child exited early"
            );
            assert!(start.elapsed() < DEADLINE, "bench child did not connect");
            std::thread::sleep(Duration::from_millis(1));
        };
        socket::send_with_fds(&conn, total.to_string().as_bytes(), &[self.segment.fd()]).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = socket::recv_with_fds(&conn, &mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"ready");
        (child, conn)
    }
}

fn wait(child: &mut Child) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "bench child failed: {status}");
            return;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("bench child did not finish");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Applies a mode's wait policy and notifiers to a queue end.
fn configure(mode: &str, tx: &mut Producer, rx: &mut Consumer) {
    let (policy, notify) = match mode.split(' ').nth(1).unwrap_or("") {
        "poll" => (WaitPolicy::Poll, false),
        "poll-notify" => (WaitPolicy::Poll, true),
        "park" => (WaitPolicy::SpinThenPark { spins: 0 }, true),
        _ => (WaitPolicy::default(), true),
    };
    tx.set_wait_policy(policy);
    rx.set_wait_policy(policy);
    if !notify {
        tx.set_notifier(None);
        rx.set_notifier(None);
    }
}

/// The parent's half of a case.
enum ParentSide<'a> {
    Ping {
        word: &'a AtomicU64,
        next: u64,
    },
    Ring(RawRing<'a>),
    Rtt {
        tx: Producer,
        rx: Consumer,
        seq: u64,
    },
    Stream {
        rx: Consumer,
        seq: u64,
        batch: bool,
    },
}

impl<'a> ParentSide<'a> {
    fn new(region: &'a SharedRegion, parent: &Parent, mode: &str) -> Self {
        let g = geometry();
        let down = parent.offset(OPAQUE_DOWN);
        let up = parent.offset(OPAQUE_UP);
        match mode.split(' ').next().unwrap() {
            "ping" => Self::Ping {
                word: &region.words(parent.offset(OPAQUE_PING), 1).unwrap()[0],
                next: 1,
            },
            "ring" => Self::Ring(RawRing::new(region, parent.offset(OPAQUE_RING))),
            "rtt" => {
                let mut tx = Producer::attach(region, down, g).unwrap();
                let mut rx = Consumer::attach(region, up, g).unwrap();
                configure(mode, &mut tx, &mut rx);
                Self::Rtt { tx, rx, seq: 0 }
            }
            "stream" => {
                let mut rx = Consumer::attach(region, down, g).unwrap();
                let mut unused = Producer::attach(region, up, g).unwrap();
                configure(mode, &mut unused, &mut rx);
                Self::Stream {
                    rx,
                    seq: 0,
                    batch: mode.ends_with("batch"),
                }
            }
            other => panic!("unknown mode {other}"),
        }
    }

    fn run(&mut self, n: u64) {
        match self {
            Self::Ping { word, next } => {
                for _ in 0..n {
                    word.store(*next, Ordering::Release);
                    while word.load(Ordering::Acquire) != *next + 1 {
                        spin_loop();
                    }
                    *next += 2;
                }
            }
            Self::Ring(ring) => {
                let mut elem = [0u64; ELEM_WORDS];
                for _ in 0..n {
                    ring.pop(&mut elem);
                }
            }
            Self::Rtt { tx, rx, seq } => {
                let mut elem = [0u8; ELEM];
                for _ in 0..n {
                    elem[..8].copy_from_slice(&seq.to_ne_bytes());
                    tx.send(&elem).unwrap();
                    rx.recv(&mut elem).unwrap();
                    assert_eq!(u64::from_ne_bytes(elem[..8].try_into().unwrap()), *seq);
                    *seq += 1;
                }
            }
            Self::Stream { rx, seq, batch } => {
                let mut buf = [0u8; ELEM * 16];
                let mut left = n;
                while left > 0 {
                    let room = if *batch { (left as usize).min(16) } else { 1 };
                    let got = rx.recv_batch(&mut buf[..room * ELEM]).unwrap();
                    *seq += got as u64;
                    left -= got as u64;
                }
            }
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Ping { word, .. } => word.store(STOP, Ordering::Release),
            Self::Rtt { tx, .. } => tx.send(&[0xff; ELEM]).unwrap(),
            Self::Ring(_) | Self::Stream { .. } => {}
        }
    }
}

/// A minimal SPSC ring in shared memory: two indices and the slots, nothing else.
struct RawRing<'a> {
    tail: &'a AtomicU64,
    head: &'a AtomicU64,
    slots: &'a [AtomicU64],
    /// This side's own index, and its cache of the peer's.
    own: u64,
    peer: u64,
}

impl<'a> RawRing<'a> {
    fn new(region: &'a SharedRegion, offset: usize) -> Self {
        Self {
            tail: &region.words(offset, 1).unwrap()[0],
            head: &region.words(offset + 128, 1).unwrap()[0],
            slots: region.words(offset + 256, CAPACITY * ELEM_WORDS).unwrap(),
            own: 0,
            peer: 0,
        }
    }

    fn push(&mut self, elem: &[u64; ELEM_WORDS]) {
        while self.own - self.peer == CAPACITY as u64 {
            self.peer = self.head.load(Ordering::Acquire);
            spin_loop();
        }
        let slot = (self.own as usize % CAPACITY) * ELEM_WORDS;
        for (w, v) in self.slots[slot..slot + ELEM_WORDS].iter().zip(elem) {
            w.store(*v, Ordering::Relaxed);
        }
        self.own += 1;
        self.tail.store(self.own, Ordering::Release);
    }

    fn pop(&mut self, elem: &mut [u64; ELEM_WORDS]) {
        while self.own == self.peer {
            self.peer = self.tail.load(Ordering::Acquire);
            if self.own == self.peer {
                spin_loop();
            }
        }
        let slot = (self.own as usize % CAPACITY) * ELEM_WORDS;
        for (v, w) in elem.iter_mut().zip(&self.slots[slot..slot + ELEM_WORDS]) {
            *v = w.load(Ordering::Relaxed);
        }
        self.own += 1;
        self.head.store(self.own, Ordering::Release);
    }
}

/// The child's half: attach, say "ready", serve the case, exit.
fn child(mode: &str) {
    let path = PathBuf::from(std::env::var(SOCK_ENV).unwrap());
    let conn = connect(&path);
    let mut buf = [0u8; 32];
    let (n, mut fds) = socket::recv_with_fds(&conn, &mut buf, 1).unwrap();
    let total: u64 = std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
    let segment = Segment::attach(fds.pop().unwrap(), &AttachOptions::default()).unwrap();
    let region = segment.region();
    let offset = |slot| segment.opaque(slot).unwrap() as usize;
    let g = geometry();
    match mode.split(' ').next().unwrap() {
        "ping" => {
            let word = &region.words(offset(OPAQUE_PING), 1).unwrap()[0];
            socket::send_with_fds(&conn, b"ready", &[]).unwrap();
            let mut answered = 0;
            loop {
                let v = word.load(Ordering::Acquire);
                if v == STOP {
                    break;
                }
                if v % 2 == 1 && v != answered {
                    word.store(v + 1, Ordering::Release);
                    answered = v;
                } else {
                    spin_loop();
                }
            }
        }
        "ring" => {
            let mut ring = RawRing::new(region, offset(OPAQUE_RING));
            socket::send_with_fds(&conn, b"ready", &[]).unwrap();
            let mut elem = [0u64; ELEM_WORDS];
            for i in 0..total {
                elem[0] = i;
                ring.push(&elem);
            }
        }
        "rtt" => {
            let mut rx = Consumer::attach(region, offset(OPAQUE_DOWN), g).unwrap();
            let mut tx = Producer::attach(region, offset(OPAQUE_UP), g).unwrap();
            configure(mode, &mut tx, &mut rx);
            socket::send_with_fds(&conn, b"ready", &[]).unwrap();
            let mut elem = [0u8; ELEM];
            loop {
                rx.recv(&mut elem).unwrap();
                if elem == [0xff; ELEM] {
                    break;
                }
                tx.send(&elem).unwrap();
            }
        }
        "stream" => {
            let mut tx = Producer::attach(region, offset(OPAQUE_DOWN), g).unwrap();
            let mut unused = Consumer::attach(region, offset(OPAQUE_UP), g).unwrap();
            configure(mode, &mut tx, &mut unused);
            socket::send_with_fds(&conn, b"ready", &[]).unwrap();
            if mode.ends_with("batch") {
                let mut batch = vec![0u8; ELEM * 16];
                let mut sent = 0;
                while sent < total {
                    let k = (total - sent).min(16) as usize;
                    sent += tx.send_batch(&batch[..k * ELEM]).unwrap() as u64;
                    batch[..8].copy_from_slice(&sent.to_ne_bytes());
                }
            } else {
                let mut elem = [0u8; ELEM];
                for i in 0..total {
                    elem[..8].copy_from_slice(&i.to_ne_bytes());
                    tx.send(&elem).unwrap();
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
}

fn connect(path: &Path) -> OwnedFd {
    socket::connect(path).unwrap()
}
