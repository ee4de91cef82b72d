//! Cross-process queue benchmarks: round trips and one-way throughput of 64-byte elements
//! between this process and a child that shares a memfd segment, each beside a baseline
//! measured in the same run on the same memory:
//!
//! - round trip, against a raw ping-pong of two processes spinning on one shared word;
//! - one-way throughput, against a raw single-producer/single-consumer ring (no checks, no
//!   parking).
//!
//! The cases are measured in interleaved rounds (baseline, then each case, then the baseline
//! again...), so that every figure and its baseline see the same conditions: on a shared
//! virtual machine the two processes may land on sibling hyper-threads or on distant cores from
//! one second to the next, which changes a cache-line handoff several times over.
//!
//! The child is this binary again, started with `SVM_BENCH_ROLE` set; it receives the segment
//! over a Unix socket (`SCM_RIGHTS`) and then takes commands through a word in the segment.
//! `cargo bench -p svm --bench queue` runs it for real; without `--bench` (as
//! `cargo test --benches` runs it) it is a quick smoke run.

// Under loom the crate has no shared memory to measure; the benchmark is compiled out.
fn main() {
    #[cfg(not(loom))]
    bench::main();
}

#[cfg(not(loom))]
mod bench {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use svm::notify::WaitPolicy;
    use svm::queue::{self, Consumer, Producer, QUEUE_ALIGN, QueueGeometry};
    use svm::region::SharedRegion;
    use svm::segment::{AttachOptions, Segment, SegmentOptions};
    use vppinfra::bench::{Bench, Summary};
    use vppinfra::socket::{self, ListenOptions, SocketAcceptError};
    use vppinfra::sync::{AtomicU64, Ordering, spin_loop};

    const ROLE_ENV: &str = "SVM_BENCH_ROLE";
    const SOCK_ENV: &str = "SVM_BENCH_SOCK";
    const ELEM: usize = 64;
    const ELEM_WORDS: usize = ELEM / 8;
    /// Capacity of the raw ring and of the queues.
    const CAPACITY: usize = 256;
    const BATCH: usize = 16;
    const STOP: u64 = u64::MAX;
    const DEADLINE: Duration = Duration::from_secs(60);

    /// Opaque header words holding the offsets of the benchmark's structures.
    const OPAQUE_CONTROL: usize = 0;
    const OPAQUE_RING: usize = 1;
    const OPAQUE_RTT_DOWN: usize = 2;
    const OPAQUE_RTT_UP: usize = 3;
    const OPAQUE_STREAM: usize = 4;

    /// Word indices in the control block (each in its own 128-byte block).
    const CTL_PING: usize = 0;
    const CTL_COMMAND: usize = 16;
    const CTL_ACK: usize = 32;
    const CTL_WORDS: usize = 48;

    fn geometry() -> QueueGeometry {
        QueueGeometry::new(CAPACITY as u32, ELEM as u32).unwrap()
    }

    /// One measured case.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Case {
        Ping,
        RttPoll,
        RttPollNotify,
        RttSpinPark,
        RttPark,
        Ring,
        StreamSpinPark,
        StreamPoll,
        StreamBatch,
    }

    impl Case {
        const ALL: [Case; 9] = [
            Case::Ping,
            Case::RttPoll,
            Case::RttPollNotify,
            Case::RttSpinPark,
            Case::RttPark,
            Case::Ring,
            Case::StreamSpinPark,
            Case::StreamPoll,
            Case::StreamBatch,
        ];

        fn name(self) -> &'static str {
            match self {
                Case::Ping => "rtt raw spin ping-pong (baseline)",
                Case::RttPoll => "rtt queue, polling",
                Case::RttPollNotify => "rtt queue, polling with futex notifiers",
                Case::RttSpinPark => "rtt queue, spin-then-park",
                Case::RttPark => "rtt queue, park at once (sleeps)",
                Case::Ring => "one-way raw SPSC ring (baseline)",
                Case::StreamSpinPark => "one-way queue, spin-then-park",
                Case::StreamPoll => "one-way queue, polling, no notifiers",
                Case::StreamBatch => "one-way queue, spin-then-park, batches of 16",
            }
        }

        fn code(self) -> u64 {
            Case::ALL.iter().position(|c| *c == self).unwrap() as u64
        }

        fn from_code(code: u64) -> Case {
            Case::ALL[code as usize]
        }

        fn baseline(self) -> Option<Case> {
            match self {
                Case::Ping | Case::Ring => None,
                Case::RttPoll | Case::RttPollNotify | Case::RttSpinPark | Case::RttPark => {
                    Some(Case::Ping)
                }
                Case::StreamSpinPark | Case::StreamPoll | Case::StreamBatch => Some(Case::Ring),
            }
        }

        /// Operations per round at full size.
        fn ops(self) -> u64 {
            match self {
                Case::RttPark => 500,
                Case::Ping | Case::RttPoll | Case::RttPollNotify | Case::RttSpinPark => 20_000,
                _ => 200_000,
            }
        }

        /// Wait policy and whether the ends wake each other.
        fn config(self) -> (WaitPolicy, bool) {
            match self {
                Case::RttPoll | Case::StreamPoll => (WaitPolicy::Poll, false),
                Case::RttPollNotify => (WaitPolicy::Poll, true),
                Case::RttPark => (WaitPolicy::SpinThenPark { spins: 0 }, true),
                _ => (WaitPolicy::default(), true),
            }
        }
    }

    /// The queue ends a process holds; each side holds the opposite ends.
    struct Ends {
        rtt_tx: Producer,
        rtt_rx: Consumer,
        stream_tx: Option<Producer>,
        stream_rx: Option<Consumer>,
    }

    impl Ends {
        fn configure(&mut self, case: Case) {
            let (policy, notify) = case.config();
            let notifier = || -> Option<Box<dyn svm::notify::Notifier>> {
                notify
                    .then(|| Box::new(svm::notify::FutexNotifier) as Box<dyn svm::notify::Notifier>)
            };
            self.rtt_tx.set_wait_policy(policy);
            self.rtt_rx.set_wait_policy(policy);
            self.rtt_tx.set_notifier(notifier());
            self.rtt_rx.set_notifier(notifier());
            if let Some(tx) = &mut self.stream_tx {
                tx.set_wait_policy(policy);
                tx.set_notifier(notifier());
            }
            if let Some(rx) = &mut self.stream_rx {
                rx.set_wait_policy(policy);
                rx.set_notifier(notifier());
            }
        }
    }

    fn offset(segment: &Segment, slot: usize) -> usize {
        segment.opaque(slot).unwrap() as usize
    }

    pub(crate) fn main() {
        // Both processes use the light barrier from the first measured operation on.
        assert!(svm::notify::enable_light_barrier(Duration::from_secs(10)));
        if let Ok(role) = std::env::var(ROLE_ENV) {
            assert_eq!(role, "child");
            child();
            return;
        }
        let mut b = Bench::from_args("queue");
        let dir = std::env::temp_dir().join(format!("svm-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _dir = DirGuard(dir.clone());
        let listener = socket::listen(
            dir.join("sock"),
            &ListenOptions::new().nonblocking(true).mode(0o600),
        )
        .unwrap();
        let segment = Segment::create(&SegmentOptions::new(4 << 20).name("svm bench")).unwrap();
        for (slot, size) in [
            (OPAQUE_CONTROL, CTL_WORDS * 8),
            (OPAQUE_RING, 256 + CAPACITY * ELEM),
            (OPAQUE_RTT_DOWN, geometry().footprint()),
            (OPAQUE_RTT_UP, geometry().footprint()),
            (OPAQUE_STREAM, geometry().footprint()),
        ] {
            let off = segment.alloc(size, QUEUE_ALIGN).unwrap();
            segment.set_opaque(slot, off as u64);
        }
        let region = segment.region().clone();
        for slot in [OPAQUE_RTT_DOWN, OPAQUE_RTT_UP, OPAQUE_STREAM] {
            queue::init(&region, offset(&segment, slot), geometry()).unwrap();
        }
        segment.set_ready();

        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ROLE_ENV, "child")
            .env(SOCK_ENV, listener.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let conn = loop {
            match listener.accept_with(false) {
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
        socket::send_with_fds(&conn, b"segment", &[segment.fd()]).unwrap();

        let ctl = region
            .words(offset(&segment, OPAQUE_CONTROL), CTL_WORDS)
            .unwrap();
        let g = geometry();
        let mut ends = Ends {
            rtt_tx: Producer::attach(&region, offset(&segment, OPAQUE_RTT_DOWN), g).unwrap(),
            rtt_rx: Consumer::attach(&region, offset(&segment, OPAQUE_RTT_UP), g).unwrap(),
            stream_tx: None,
            stream_rx: Some(Consumer::attach(&region, offset(&segment, OPAQUE_STREAM), g).unwrap()),
        };
        let mut ring = RawRing::new(&region, offset(&segment, OPAQUE_RING));
        let mut runner = Runner {
            ctl,
            seq: 0,
            ping_next: 1,
            child: &mut child,
        };

        let cases: Vec<Case> = Case::ALL
            .into_iter()
            .filter(|c| c.baseline().is_none() || b.wants(c.name()))
            .collect();
        let rounds = b.runs() + 1;
        let mut figures: Vec<Vec<f64>> = vec![Vec::new(); Case::ALL.len()];
        for round in 0..rounds {
            for &case in &cases {
                let ops = b.ops(case.ops());
                let ns = runner.measure(case, ops, &mut ends, &mut ring);
                // Round 0 is the warm-up.
                if round > 0 {
                    figures[case.code() as usize].push(ns / ops as f64);
                }
            }
        }
        runner.command(STOP, 0);
        wait(&mut child);
        drop(conn);

        let mut summaries: Vec<Option<Summary>> = vec![None; Case::ALL.len()];
        // Goals are judged on paired ratios (see below); the report lines give the medians.
        let mut goals = Vec::new();
        for &case in &cases {
            let summary = Summary::new(
                case.name(),
                b.ops(case.ops()),
                figures[case.code() as usize].clone(),
            );
            let base = case
                .baseline()
                .and_then(|bc| summaries[bc.code() as usize].clone());
            let reported = b.report(summary, base.as_ref());
            if let Some(base_case) = case.baseline() {
                // The median of per-round ratios: each round's figure against the baseline measured
                // just before it, under the same placement of the two processes.
                let mut paired: Vec<f64> = figures[case.code() as usize]
                    .iter()
                    .zip(&figures[base_case.code() as usize])
                    .map(|(x, base)| x / base)
                    .collect();
                paired.sort_by(f64::total_cmp);
                let ratio = vppinfra::bench::percentile(&paired, 50.0);
                match case {
                    Case::RttPoll => goals.push(("polling round trip", ratio, 1.5)),
                    Case::RttSpinPark => goals.push(("spin-then-park round trip", ratio, 2.0)),
                    Case::StreamSpinPark => {
                        goals.push(("one-way time per element, spin-then-park", ratio, 2.0))
                    }
                    Case::StreamPoll => {
                        goals.push(("one-way time per element, polling", ratio, 2.0))
                    }
                    _ => {}
                }
            }
            summaries[case.code() as usize] = Some(reported);
        }
        if b.is_smoke() {
            return;
        }
        println!();
        for (what, ratio, limit) in goals {
            let verdict = if ratio <= limit { "met" } else { "MISSED" };
            println!(
                "goal {what}: {ratio:.2}x the baseline, median of per-round ratios (goal <= {limit:.1}x): {verdict}"
            );
        }
    }

    /// Removes the socket directory at the end.
    struct DirGuard(PathBuf);

    impl Drop for DirGuard {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The parent's side of the command protocol and of each case.
    struct Runner<'a> {
        ctl: &'a [AtomicU64],
        seq: u64,
        ping_next: u64,
        child: &'a mut Child,
    }

    impl Runner<'_> {
        /// Tells the child to run `code` for `ops` operations (ops in the ack word's partner).
        fn command(&mut self, code: u64, ops: u64) {
            self.seq += 1;
            self.ctl[CTL_COMMAND + 1].store(ops, Ordering::Relaxed);
            self.ctl[CTL_COMMAND].store(self.seq << 8 | (code & 0xff), Ordering::Release);
        }

        /// Waits until the child has taken up the last command.
        fn wait_ack(&mut self) {
            let start = Instant::now();
            while self.ctl[CTL_ACK].load(Ordering::Acquire) != self.seq {
                spin_loop();
                if start.elapsed() > DEADLINE {
                    let _ = self.child.kill();
                    panic!("bench child stopped answering");
                }
            }
        }

        /// Runs one round of `case`; returns the elapsed nanoseconds for `ops` operations.
        fn measure(
            &mut self,
            case: Case,
            ops: u64,
            ends: &mut Ends,
            ring: &mut RawRing<'_>,
        ) -> f64 {
            ends.configure(case);
            self.command(case.code(), ops);
            self.wait_ack();
            let t = Instant::now();
            match case {
                Case::Ping => {
                    let word = &self.ctl[CTL_PING];
                    for _ in 0..ops {
                        word.store(self.ping_next, Ordering::Release);
                        while word.load(Ordering::Acquire) != self.ping_next + 1 {
                            spin_loop();
                        }
                        self.ping_next += 2;
                    }
                }
                Case::RttPoll | Case::RttPollNotify | Case::RttSpinPark | Case::RttPark => {
                    let mut elem = [0u8; ELEM];
                    for seq in 0..ops {
                        elem[..8].copy_from_slice(&seq.to_ne_bytes());
                        ends.rtt_tx.send(&elem).unwrap();
                        ends.rtt_rx.recv(&mut elem).unwrap();
                    }
                }
                Case::Ring => {
                    let mut elem = [0u64; ELEM_WORDS];
                    for _ in 0..ops {
                        ring.pop(&mut elem);
                    }
                }
                Case::StreamSpinPark | Case::StreamPoll | Case::StreamBatch => {
                    let rx = ends.stream_rx.as_mut().unwrap();
                    let mut buf = [0u8; ELEM * BATCH];
                    let room = if case == Case::StreamBatch { BATCH } else { 1 };
                    let mut left = ops;
                    while left > 0 {
                        let k = (left as usize).min(room);
                        left -= rx.recv_batch(&mut buf[..k * ELEM]).unwrap() as u64;
                    }
                }
            }
            let ns = t.elapsed().as_nanos() as f64;
            // An RTT case ends with the stop element so the child's echo loop returns.
            if matches!(
                case,
                Case::RttPoll | Case::RttPollNotify | Case::RttSpinPark | Case::RttPark
            ) {
                ends.rtt_tx.send(&[0xff; ELEM]).unwrap();
            }
            if case == Case::Ping {
                self.ctl[CTL_PING].store(STOP, Ordering::Release);
                // Wait for the child to leave the ping loop before the next case reuses the word.
                while self.ctl[CTL_PING].load(Ordering::Acquire) != 0 {
                    spin_loop();
                }
                self.ping_next = 1;
            }
            ns
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

    /// The child: attach, then serve commands until told to stop.
    fn child() {
        let path = PathBuf::from(std::env::var(SOCK_ENV).unwrap());
        let conn = socket::connect(&path).unwrap();
        let mut buf = [0u8; 32];
        let (_, mut fds) = socket::recv_with_fds(&conn, &mut buf, 1).unwrap();
        let segment = Segment::attach(fds.pop().unwrap(), &AttachOptions::default()).unwrap();
        let region = segment.region();
        let ctl = region
            .words(offset(&segment, OPAQUE_CONTROL), CTL_WORDS)
            .unwrap();
        let g = geometry();
        let mut ends = Ends {
            rtt_tx: Producer::attach(region, offset(&segment, OPAQUE_RTT_UP), g).unwrap(),
            rtt_rx: Consumer::attach(region, offset(&segment, OPAQUE_RTT_DOWN), g).unwrap(),
            stream_tx: Some(Producer::attach(region, offset(&segment, OPAQUE_STREAM), g).unwrap()),
            stream_rx: None,
        };
        let mut ring = RawRing::new(region, offset(&segment, OPAQUE_RING));
        let mut last = 0;
        loop {
            let command = ctl[CTL_COMMAND].load(Ordering::Acquire);
            if command >> 8 == last {
                spin_loop();
                continue;
            }
            last = command >> 8;
            let ops = ctl[CTL_COMMAND + 1].load(Ordering::Relaxed);
            if command & 0xff == STOP & 0xff {
                return;
            }
            let case = Case::from_code(command & 0xff);
            ends.configure(case);
            ctl[CTL_ACK].store(last, Ordering::Release);
            match case {
                Case::Ping => {
                    let word = &ctl[CTL_PING];
                    let mut answered = 0;
                    loop {
                        let v = word.load(Ordering::Acquire);
                        if v == STOP {
                            word.store(0, Ordering::Release);
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
                Case::RttPoll | Case::RttPollNotify | Case::RttSpinPark | Case::RttPark => {
                    let mut elem = [0u8; ELEM];
                    loop {
                        ends.rtt_rx.recv(&mut elem).unwrap();
                        if elem == [0xff; ELEM] {
                            break;
                        }
                        ends.rtt_tx.send(&elem).unwrap();
                    }
                }
                Case::Ring => {
                    let mut elem = [0u64; ELEM_WORDS];
                    for i in 0..ops {
                        elem[0] = i;
                        ring.push(&elem);
                    }
                }
                Case::StreamSpinPark | Case::StreamPoll => {
                    let tx = ends.stream_tx.as_mut().unwrap();
                    let mut elem = [0u8; ELEM];
                    for i in 0..ops {
                        elem[..8].copy_from_slice(&i.to_ne_bytes());
                        tx.send(&elem).unwrap();
                    }
                }
                Case::StreamBatch => {
                    let tx = ends.stream_tx.as_mut().unwrap();
                    let batch = [0u8; ELEM * BATCH];
                    let mut sent = 0;
                    while sent < ops {
                        let k = (ops - sent).min(BATCH as u64) as usize;
                        sent += tx.send_batch(&batch[..k * ELEM]).unwrap() as u64;
                    }
                }
            }
        }
    }
}
