//! Hostile shared-memory clients against the real server binary, each in its own process, each
//! attacking over and over (it pivots, attacks its channel until the server lets go of it, and
//! pivots again) while two well-behaved clients, one on shared memory and one on the socket,
//! time their synchronous round trips:
//!
//! - a scribbler rewrites every byte of its segment in a loop (random bytes, all ones, zeros,
//!   and words that look like offsets into the segment);
//! - a forger plants offsets and lengths no honest client would: past the segment, inside the
//!   channel's header, queues and rings, mid-slot, slot lengths larger than the slot, heap
//!   offsets that are no allocation, lengths too short for a message ID;
//! - a flooder sends valid requests as fast as its queue takes them and never reads a reply;
//! - a heavy client does the same but reads every reply: it does nothing wrong, so it is neither
//!   disconnected nor held to the latency bound (the server is rightly busy serving it all the
//!   time, which on this loaded 2-core machine exposes it to preemption and the others to
//!   wake-up costs an idle server does not have); its figures are reported, and the share it
//!   gets is checked exactly by `vlib_server`'s `a_flooded_channel_delays_another_by_one_quantum_at_most`;
//! - a heap-recovery forcer keeps asking for the segment heap's crash repair (the flag a dead
//!   lock owner leaves) in a heap tiled with tiny blocks, and sends its requests from that heap;
//! - a lock holder writes its own pid into the segment heap's lock word and sends heap-placed
//!   requests, so every heap operation of the server on its segment has to give up.
//!
//! For each: the server stays up and correct (a fresh client is served, the well-behaved ones
//! get exactly their replies), it disconnects the offender and logs why, and the well-behaved
//! clients' round trips with the hostile running stay within twice those with the hostile
//! stopped (SIGSTOP), both the median (the typical round trip) and the mean (the phases are of
//! equal length, so this is how many round trips fit: it catches stalls a median hides). Both
//! are measured in the same test, in alternating phases, so the load of this shared 2-core
//! machine weighs on both alike; the hostile runs under `SCHED_IDLE` (see `spawn_hostile`).
//! Nothing is left behind once the hostile is gone: registrations, fds and mapped segments
//! return to what they were.

mod support;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{ServerProc, cli};
use svm::notify::WaitPolicy;
use svm::queue::Producer;
use svm::segment::{AttachOptions, Segment};
use vlibapi::msgs::{memclnt, vlib_api};
use vlibapi::wire::{self, Message};
use vlibmemory::channel::ChannelLayout;
use vlibmemory::client::ShmLink;
use vlibmemory::server::OPAQUE_ROOT;
use vlibsocket::client::SocketClient;
use vppinfra::sync::Ordering;
use vppinfra::testing;

/// Alternations of a stopped and a running hostile.
const ROUNDS: usize = 8;
/// Length of each measuring phase.
const PHASE: Duration = Duration::from_millis(250);
/// Time given to the server after a hostile is stopped or resumed, before sampling.
const SETTLE: Duration = Duration::from_millis(30);
/// How long one attack lasts before the hostile starts over on a fresh channel (if the server
/// has not let go of it before).
const CYCLE: Duration = Duration::from_millis(150);

/// Offsets of the heap header's flags and lock words from the heap's start (vppinfra's layout;
/// the hostile needs them, an honest client never writes them).
const HEAP_LOCK: usize = 24;
const HEAP_FLAGS: usize = 32;
/// The heap header's "a lock owner died, rebuild before use" flag.
const HEAP_NEEDS_RECOVERY: u64 = 1;

// ---------------------------------------------------------------------------------------------
// The hostile side.

/// A private channel pivoted to by hand: the hostile keeps the memfd mapped itself and knows the
/// channel's layout, so it can write anything anywhere.
struct ByHand {
    /// The socket stays open: closing it would make the server reap the channel at once.
    _socket: SocketClient,
    segment: Segment,
    layout: ChannelLayout,
    /// The link used to register; afterwards only its receiving side is ever used.
    link: ShmLink,
    doorbell: OwnedFd,
    index: u32,
    ping_id: u16,
}

impl ByHand {
    /// Connects, pivots to a segment of `size` bytes, registers as `name`.
    fn pivot(path: &str, name: &str, size: u32) -> Option<Self> {
        let mut socket = SocketClient::connect(path, name).ok()?;
        let vlibsocket::client::SegmentFds { memfd, doorbell } =
            socket.request_segment(size).ok()?;
        let mut link = ShmLink::from_pivot(
            memfd.try_clone().ok()?,
            doorbell.try_clone().ok()?,
            WaitPolicy::default(),
        )
        .ok()?;
        let create = memclnt::MemclntCreateV2 {
            name: name.to_owned(),
            keepalive: true,
            ..Default::default()
        };
        let id = socket.id_of::<memclnt::MemclntCreateV2>().ok()?;
        link.send(&wire::to_vec(&create, id).ok()?, Duration::from_secs(1))
            .ok()?;
        let mut reply = Vec::new();
        link.recv(&mut reply, Duration::from_secs(5)).ok()?;
        let reply = memclnt::MemclntCreateV2Reply::decode(&reply).ok()?;
        let segment = Segment::attach(memfd, &AttachOptions::default()).ok()?;
        let base = segment.opaque(OPAQUE_ROOT)? as usize;
        let layout = ChannelLayout::read(segment.region(), base).ok()?;
        let ping_id = socket.id_of::<memclnt::ControlPing>().ok()?;
        Some(Self {
            _socket: socket,
            segment,
            layout,
            link,
            doorbell,
            index: reply.index,
            ping_id,
        })
    }

    /// A raw producer on the request queue (the link sent only its registration, and never
    /// sends again, so the two never race).
    fn producer(&self) -> Producer {
        Producer::attach(
            self.segment.region(),
            self.layout.request.0,
            self.layout.request.1,
        )
        .expect("request queue")
    }

    /// Wakes the server, in case it sleeps.
    fn ring(&self) {
        let _ = nix::unistd::write(&self.doorbell, &1u64.to_ne_bytes());
    }

    /// A `control_ping` carrying this client's index.
    fn ping(&self, context: u32) -> Vec<u8> {
        let msg = memclnt::ControlPing {
            client_index: self.index,
            context,
        };
        wire::to_vec(&msg, self.ping_id).expect("encode")
    }

    /// Writes a message buffer (in-use word, big-endian length, payload) at `off`.
    fn write_buffer(&self, off: usize, len: u32, payload: &[u8]) {
        let region = self.segment.region();
        let mut head = [0u8; 16];
        head[..8].copy_from_slice(&1u64.to_ne_bytes());
        head[8..12].copy_from_slice(&len.to_be_bytes());
        let _ = region.write(off, &head);
        let _ = region.write(off + 16, payload);
    }

    fn heap_word(&self, at: usize) -> &vppinfra::sync::AtomicU64 {
        let start = self.segment.heap_range().start;
        &self
            .segment
            .region()
            .words(start + at, 1)
            .expect("heap header")[0]
    }
}

/// Prints the line the parent waits for.
fn say_ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

/// A small xorshift generator: the hostiles need no quality, only speed and variety.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Rewrites every byte of its segment, pass after pass, with a different pattern each pass.
fn scribbler(path: &str) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut first = true;
    loop {
        let Some(h) = ByHand::pivot(path, "hostile-scribbler", 1 << 20) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if std::mem::take(&mut first) {
            say_ready();
        }
        let region = h.segment.region();
        let len = region.len();
        let start = Instant::now();
        let mut pass = 0u64;
        let mut chunk = vec![0u8; 4096];
        while start.elapsed() < CYCLE {
            for off in (0..len).step_by(chunk.len()) {
                for w in chunk.chunks_exact_mut(8) {
                    let word = match pass % 4 {
                        0 => rng.next(),
                        1 => u64::MAX,
                        2 => 0,
                        // Offsets into the segment, 16-aligned: plausible queue elements,
                        // lengths, links and indices.
                        _ => (rng.next() % len as u64) & !15,
                    };
                    w.copy_from_slice(&word.to_ne_bytes());
                }
                let n = chunk.len().min(len - off);
                let _ = region.write(off, &chunk[..n]);
                h.ring();
            }
            pass += 1;
        }
    }
}

/// Plants offsets and lengths no honest client would, until the server drops the channel.
fn forger(path: &str) {
    let mut rng = Rng(0x0bad_cafe_dead_beef);
    let mut first = true;
    loop {
        let Some(h) = ByHand::pivot(path, "hostile-forger", 1 << 20) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if std::mem::take(&mut first) {
            say_ready();
        }
        let mut q = h.producer();
        let l = &h.layout;
        let ring = l.client_rings[0];
        let slot_size = (16 + ring.spec.payload as usize).next_multiple_of(64);
        let heap = h.segment.heap_range();
        // A live heap block that is then freed, so its offset names no allocation.
        let freed = h.segment.alloc(64, 16).ok();
        if let Some(f) = freed {
            let _ = h.segment.free(f);
        }
        let size = h.segment.size() as u64;
        let ping = h.ping(7);
        let start = Instant::now();
        let mut full_since: Option<Instant> = None;
        let mut kind = 0u64;
        while start.elapsed() < CYCLE * 4 {
            let slot = |i: u64| ring.slots + (i as usize % ring.spec.count as usize) * slot_size;
            let off: u64 = match kind % 14 {
                0 => u64::MAX,
                1 => size + 64,
                2 => size - 8,
                3 => l.base as u64,
                4 => l.request.0 as u64,
                5 => l.reply.0 as u64 + 640,
                6 => (slot(rng.next()) + 8) as u64,
                7 => l.server_rings[0].slots as u64,
                8 => {
                    // A real slot claiming more than it holds.
                    let s = slot(rng.next());
                    h.write_buffer(s, ring.spec.payload + 1 + rng.next() as u32 % 4096, &ping);
                    s as u64
                }
                9 => {
                    // A real slot with a length too short for a message ID.
                    let s = slot(rng.next());
                    h.write_buffer(s, rng.next() as u32 % 2, &ping);
                    s as u64
                }
                10 => (heap.start + 16 + ((rng.next() as usize % (heap.len() - 64)) & !15)) as u64,
                11 => freed.map_or(heap.start as u64, |f| f as u64),
                12 => heap.start as u64,
                _ => 4096 + (rng.next() % 64) * 8,
            };
            kind += 1;
            match q.try_send(&off.to_ne_bytes()) {
                Ok(()) => {
                    full_since = None;
                    h.ring();
                }
                Err(_) => {
                    // The server stopped reading this queue: it let go of the channel.
                    let since = *full_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(20) {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Sends valid requests as fast as its queue takes them and never reads a reply.
fn flooder(path: &str) {
    let mut first = true;
    loop {
        let Some(mut h) = ByHand::pivot(path, "hostile-flooder", 1 << 20) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if std::mem::take(&mut first) {
            say_ready();
        }
        let ping = h.ping(9);
        // A full queue does not tell a paused channel from a dropped one: flood for longer
        // than the stall timeout the test gives the server, then start over.
        let start = Instant::now();
        while start.elapsed() < CYCLE * 15 {
            if h.link.send(&ping, Duration::ZERO).is_err() {
                std::hint::spin_loop();
            }
        }
    }
}

/// Sends valid requests as fast as its queue takes them and reads every reply: no offence, but
/// as much load as one client can make. The server must keep serving it and everyone else.
fn heavy(path: &str) {
    let Some(mut h) = ByHand::pivot(path, "heavy", 1 << 20) else {
        panic!("the heavy client could not pivot");
    };
    say_ready();
    let ping = h.ping(11);
    let mut buf = Vec::new();
    loop {
        while h.link.send(&ping, Duration::ZERO).is_ok() {}
        while h.link.try_recv(&mut buf).unwrap_or(false) {}
    }
}

/// Tiles its heap with tiny blocks, then sends requests placed in them while setting the heap's
/// "needs recovery" flag before each one.
fn recovery_forcer(path: &str) {
    let mut first = true;
    loop {
        let Some(h) = ByHand::pivot(path, "hostile-recovery", 16 << 20) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let mut blocks = Vec::new();
        while let Ok(off) = h.segment.alloc(32, 16) {
            blocks.push(off);
        }
        if std::mem::take(&mut first) {
            say_ready();
        }
        let mut q = h.producer();
        let flags = h.heap_word(HEAP_FLAGS);
        let start = Instant::now();
        let mut i = 0usize;
        while start.elapsed() < CYCLE * 4 && !blocks.is_empty() {
            let off = blocks[i % blocks.len()];
            i += 1;
            let ping = h.ping(i as u32);
            // The payload offset the heap returned holds the 16-byte buffer header too.
            h.write_buffer(off, ping.len() as u32, &ping);
            flags.fetch_or(HEAP_NEEDS_RECOVERY, Ordering::Relaxed);
            if q.try_send(&(off as u64).to_ne_bytes()).is_err() {
                std::thread::yield_now();
            }
            h.ring();
        }
    }
}

/// Holds its heap's lock (its own pid in the lock word) and sends requests placed in the heap.
fn lock_holder(path: &str) {
    let mut first = true;
    loop {
        let Some(h) = ByHand::pivot(path, "hostile-lock-holder", 1 << 20) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        let blocks: Vec<usize> = (0..256)
            .filter_map(|_| h.segment.alloc(32, 16).ok())
            .collect();
        if std::mem::take(&mut first) {
            say_ready();
        }
        let start = h.segment.heap_range().start;
        let lock = &h
            .segment
            .region()
            .words32(start + HEAP_LOCK, 1)
            .expect("lock")[0];
        lock.store(std::process::id(), Ordering::Release);
        let mut q = h.producer();
        let begun = Instant::now();
        let mut i = 0usize;
        // Long enough for the stall timeout the test gives the server to pass.
        while begun.elapsed() < CYCLE * 10 && !blocks.is_empty() {
            let off = blocks[i % blocks.len()];
            i += 1;
            let ping = h.ping(i as u32);
            h.write_buffer(off, ping.len() as u32, &ping);
            if q.try_send(&(off as u64).to_ne_bytes()).is_err() {
                std::thread::yield_now();
            }
            h.ring();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent side.

fn ping(c: &mut SocketClient) -> memclnt::ControlPingReply {
    c.request(&memclnt::ControlPing::default())
        .expect("control_ping")
}

/// One well-behaved client's round trips, with the hostile stopped and running.
#[derive(Default)]
struct Samples {
    stopped: Vec<Duration>,
    running: Vec<Duration>,
}

/// Order statistics of one set of round trips.
struct Stats {
    n: usize,
    median: Duration,
    mean: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(v: &mut [Duration]) -> Self {
        v.sort_unstable();
        let at = |q: f64| {
            v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let total: Duration = v.iter().sum();
        Self {
            n: v.len(),
            median: at(0.5),
            mean: total / v.len().max(1) as u32,
            p99: at(0.99),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

/// Starts the hostile under `SCHED_IDLE` (`chrt --idle 0`): it still gets a whole core whenever
/// one is free, so its attack is undiminished, but a well-behaved client that wakes up (they
/// sleep between round trips) takes that core at once instead of queueing behind it. On this
/// 2-core machine the figures then measure how the server shares its time, not how the kernel
/// shares two cores among three busy processes: a hostile's appetite for CPU is the kernel's to
/// limit, the server's fairness is ours.
fn spawn_hostile(test: &str, role: &str, path: &str) -> testing::TestChild {
    let exe = std::env::current_exe().expect("current_exe");
    let args: Vec<std::ffi::OsString> = vec![
        "--idle".into(),
        "0".into(),
        exe.into(),
        test.into(),
        "--exact".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ];
    let mut b = testing::spawn_program("chrt", &args);
    b.command()
        .env(testing::ROLE_ENV, role)
        .env(testing::ARG_ENV, path)
        .stdout(std::process::Stdio::piped());
    let mut child = b.spawn();
    let out = child.inner().stdout.take().unwrap();
    // libtest prints its own text first, and "test name ... " shares the line with ours.
    let ready = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .any(|l| l.trim_end().ends_with("ready"));
    assert!(ready, "hostile {role} did not get ready");
    child
}

/// Runs `role` against a server while two well-behaved clients measure, then checks everything
/// the module docs promise.
fn run_hostile(test: &str, role: &str, name: &str, server_args: &[&str]) {
    run_against(test, role, name, server_args, true);
}

/// As [`run_hostile`]; `offender` says whether the server must have disconnected the client
/// (and is held to the latency bound).
fn run_against(test: &str, role: &str, name: &str, server_args: &[&str], offender: bool) {
    let mut args = vec!["--log-level", "warn"];
    args.extend_from_slice(server_args);
    let mut server = ServerProc::start(test, &args);
    // The well-behaved clients sleep while they wait (the socket one in recv, the shared-memory
    // one parks at once): spinning, they would compete for the two cores with the server and
    // the hostile, and the figures would measure the scheduler.
    let mut opts = vlibsocket::client::ClientOptions::new("good-shm");
    opts.shm_wait = WaitPolicy::SpinThenPark { spins: 0 };
    let mut shm = SocketClient::connect_with(&server.path, &opts).expect("connect");
    shm.pivot(1 << 20, None).expect("pivot");
    let mut sock = server.client("good-socket");
    for _ in 0..200 {
        ping(&mut shm);
        ping(&mut sock);
    }
    let fds_before = support::fd_count(server.pid());
    let maps_before = support::memfd_maps(server.pid());
    let registrations_before = sock
        .dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default())
        .unwrap()
        .len();
    let hostile = spawn_hostile(test, role, server.path.to_str().unwrap());
    let mut samples = [Samples::default(), Samples::default()];
    let mut pings = 0u64;
    for _ in 0..ROUNDS {
        for running in [false, true] {
            hostile.signal(if running {
                Signal::SIGCONT
            } else {
                Signal::SIGSTOP
            });
            std::thread::sleep(SETTLE);
            let start = Instant::now();
            while start.elapsed() < PHASE {
                for (i, c) in [&mut shm, &mut sock].into_iter().enumerate() {
                    let t = Instant::now();
                    let r = ping(c);
                    let rtt = t.elapsed();
                    assert_eq!(r.client_index, c.client_index(), "a reply for someone else");
                    assert_eq!(r.vpe_pid, server.pid());
                    let s = &mut samples[i];
                    if running {
                        s.running.push(rtt);
                    } else {
                        s.stopped.push(rtt);
                    }
                    pings += 1;
                }
            }
        }
    }
    let mut hostile = hostile;
    hostile.kill();
    let mut report = format!("{role}: {pings} round trips, hostile stopped -> running:");
    let mut failures = Vec::new();
    for (label, s) in ["shm", "socket"].iter().zip(samples.iter_mut()) {
        let stopped = Stats::of(&mut s.stopped);
        let running = Stats::of(&mut s.running);
        report.push_str(&format!(
            "\n  {label:>6}: median {:?} -> {:?} (x{:.2}), mean {:?} -> {:?} (x{:.2}), \
             p99 {:?} -> {:?}, max {:?} -> {:?}, samples {} -> {}",
            stopped.median,
            running.median,
            running.median.as_secs_f64() / stopped.median.as_secs_f64(),
            stopped.mean,
            running.mean,
            running.mean.as_secs_f64() / stopped.mean.as_secs_f64(),
            stopped.p99,
            running.p99,
            stopped.max,
            running.max,
            stopped.n,
            running.n,
        ));
        // Medians say how the typical round trip fares; means (the phases are of equal length,
        // so this is the number of round trips that fit) catch stalls a median hides.
        if !offender {
            continue;
        }
        if running.median > stopped.median * 2 {
            failures.push(format!(
                "{label}: median {:?} > 2 x {:?}",
                running.median, stopped.median
            ));
        }
        if running.mean > stopped.mean * 2 {
            failures.push(format!(
                "{label}: mean {:?} > 2 x {:?}",
                running.mean, stopped.mean
            ));
        }
    }
    eprintln!("{report}");
    assert!(server.child.try_wait().is_none(), "the server died");
    // Still correct: a fresh client is served, the well-behaved ones got only their replies.
    let mut fresh = server.client("fresh");
    assert_eq!(ping(&mut fresh).vpe_pid, server.pid());
    for c in [&mut shm, &mut sock] {
        assert!(
            c.next_event(Duration::from_millis(1)).unwrap().is_none(),
            "a message nobody asked for"
        );
    }
    // It said why it let go of the offender.
    let log = server.log_text();
    let reaped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(name) && l.contains("reaped:"))
        .collect();
    if offender {
        assert!(
            !reaped.is_empty(),
            "{name} was never disconnected with a reason:\n{log}"
        );
    } else {
        assert!(reaped.is_empty(), "{name} was disconnected:\n{log}");
    }
    assert!(!log.contains("panicked"), "{log}");
    // Nothing of the hostile is left once it is gone.
    let settled = testing::wait_until(Duration::from_secs(5), || {
        let listed: Vec<vlib_api::ApiClientDetails> =
            fresh.dump(&vlib_api::ApiClientDump::default()).unwrap();
        listed.len() == registrations_before + 1
            && support::fd_count(server.pid()) <= fds_before + 1
            && support::memfd_maps(server.pid()) == maps_before
    });
    assert!(
        settled,
        "left behind: {} fds (before {fds_before} + 1), {} memfd maps (before {maps_before}):\n{}",
        support::fd_count(server.pid()),
        support::memfd_maps(server.pid()),
        cli(&mut fresh, "show api clients")
    );
    if let Some(first) = reaped.first() {
        eprintln!(
            "{} disconnections of {name} logged; the first: {first}",
            reaped.len()
        );
    }
    assert!(failures.is_empty(), "{report}\n{failures:?}");
}

fn child(role: &str) {
    let path = testing::child_arg();
    match role {
        "scribbler" => scribbler(&path),
        "forger" => forger(&path),
        "flooder" => flooder(&path),
        "heavy" => heavy(&path),
        "recovery" => recovery_forcer(&path),
        "lock-holder" => lock_holder(&path),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn mp_hostile_scribbler_rewriting_its_whole_segment() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_hostile(
        "mp_hostile_scribbler_rewriting_its_whole_segment",
        "scribbler",
        "hostile-scribbler",
        &[],
    );
}

#[test]
fn mp_hostile_forger_of_offsets_and_lengths() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_hostile(
        "mp_hostile_forger_of_offsets_and_lengths",
        "forger",
        "hostile-forger",
        &[],
    );
}

#[test]
fn mp_hostile_flooder_that_never_reads() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_hostile(
        "mp_hostile_flooder_that_never_reads",
        "flooder",
        "hostile-flooder",
        &["--stall-timeout", "0.5"],
    );
}

#[test]
fn mp_hostile_heavy_client_gets_its_share_only() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_against(
        "mp_hostile_heavy_client_gets_its_share_only",
        "heavy",
        "heavy",
        &[],
        false,
    );
}

#[test]
fn mp_hostile_heap_recovery_forcer() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_hostile(
        "mp_hostile_heap_recovery_forcer",
        "recovery",
        "hostile-recovery",
        &[],
    );
}

#[test]
fn mp_hostile_heap_lock_holder() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child(&role));
    }
    run_hostile(
        "mp_hostile_heap_lock_holder",
        "lock-holder",
        "hostile-lock-holder",
        &["--stall-timeout", "0.3"],
    );
}
