//! Multi-process: a child scribbles random bytes over the whole segment (aiming often at the
//! queue header and the heap) while the parent keeps using the queue, the heap and the segment
//! API. Every call must return `Ok` or an error: never crash, never hang. Afterwards a
//! re-initialised queue works normally.
#![cfg(not(loom))]

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Rng;
use svm::notify::WaitPolicy;
use svm::queue::{
    self, Consumer, Producer, QUEUE_ALIGN, QueueGeometry, QueueRecvError, QueueSendError,
};
use svm::segment::{AttachOptions, Segment, SegmentOptions};
use vppinfra::sync::thread;
use vppinfra::testing;

const TEST: &str = "mp_queue_survives_a_scribbler";
const ELEM: usize = 64;
const SIZE: usize = 256 << 10;

fn geometry() -> QueueGeometry {
    QueueGeometry::new(64, ELEM as u32).unwrap()
}

fn scribbler_child() {
    let (conn, arg) = common::child_connect();
    let (_, mut fds) = common::recv(&conn, 1);
    let seed: u64 = arg.parse().unwrap();
    let fd = fds.pop().unwrap();
    let queue_offset = {
        let segment = Segment::attach(fd.try_clone().unwrap(), &AttachOptions::default()).unwrap();
        segment.opaque(0).unwrap()
    };
    common::send(&conn, b"scribbling", &[]);
    let mut rng = Rng::new(seed);
    let mut bytes = [0u8; 512];
    loop {
        // Writes through the file land in the same pages the parent has mapped.
        let (offset, len) = match rng.below(4) {
            // Anywhere in the segment (header page, heap, queue slots).
            0 => (rng.below(SIZE as u64), 1 + rng.below(512) as usize),
            // One word of the queue header: indices, parked words, identity.
            1 | 2 => (queue_offset + rng.below(640) / 4 * 4, 4),
            // The heap's header and first blocks.
            _ => (4096 + rng.below(1024) / 8 * 8, 8),
        };
        let len = len.min(SIZE - offset as usize);
        for b in &mut bytes[..len] {
            *b = rng.next() as u8;
        }
        // Small values make plausible-but-wrong indices; keep some.
        if len == 4 && rng.below(2) == 0 {
            bytes[..4].copy_from_slice(&(rng.below(200) as u32).to_ne_bytes());
        }
        let _ = nix::sys::uio::pwrite(&fd, &bytes[..len], offset as i64);
    }
}

/// Counts of outcomes, to show the scribbler really got in the way.
#[derive(Debug, Default)]
struct Outcomes {
    ok: u64,
    corrupt: u64,
    other_err: u64,
}

fn hammer(
    segment: Segment,
    offset: usize,
    mut tx: Producer,
    mut rx: Consumer,
    seed: u64,
    run_for: Duration,
) -> (Outcomes, Segment) {
    let mut rng = Rng::new(seed);
    let region = segment.region().clone();
    let mut out = Outcomes::default();
    let mut buf = vec![0u8; ELEM * 8];
    let elem = [0x5au8; ELEM];
    let start = Instant::now();
    let mut tally = |corrupt: bool, ok: bool| {
        if ok {
            out.ok += 1;
        } else if corrupt {
            out.corrupt += 1;
        } else {
            out.other_err += 1;
        }
    };
    while start.elapsed() < run_for {
        let short = Duration::from_micros(rng.below(500));
        match rng.below(14) {
            0 => {
                let r = tx.try_send(&elem);
                tally(matches!(r, Err(QueueSendError::Corrupt(_))), r.is_ok());
            }
            1 => {
                let r = rx.try_recv(&mut buf[..ELEM]);
                tally(matches!(r, Err(QueueRecvError::Corrupt(_))), r.is_ok());
            }
            2 => {
                let r = tx.send_timeout(&elem, short);
                tally(matches!(r, Err(QueueSendError::Corrupt(_))), r.is_ok());
            }
            3 => {
                let r = rx.recv_timeout(&mut buf[..ELEM], short);
                tally(matches!(r, Err(QueueRecvError::Corrupt(_))), r.is_ok());
            }
            4 => {
                let r = tx.try_send_batch(&buf);
                tally(matches!(r, Err(QueueSendError::Corrupt(_))), r.is_ok());
            }
            5 => {
                let r = rx.recv_batch_timeout(&mut buf, short);
                tally(matches!(r, Err(QueueRecvError::Corrupt(_))), r.is_ok());
            }
            6 => {
                let r = rx.prepare_park();
                rx.finish_park();
                tally(r.is_err(), r.is_ok());
            }
            7 => {
                let r = tx.prepare_park();
                tx.finish_park();
                tally(r.is_err(), r.is_ok());
            }
            8 => {
                let r = tx.occupancy().and(rx.occupancy());
                tally(r.is_err(), r.is_ok());
            }
            9 => {
                let stats = segment.stats();
                tally(false, stats.size == SIZE);
            }
            10 => {
                let r = segment.alloc(1 + rng.below(2000) as usize, 16);
                if let Ok(a) = r {
                    let _ = segment.free(a);
                }
                tally(false, r.is_ok());
            }
            11 => {
                let r = segment.heap().validate();
                tally(false, r.is_ok());
            }
            12 => {
                let r = QueueGeometry::read(&region, offset);
                tally(false, r.is_ok());
            }
            _ => {
                let r = Consumer::attach(&region, offset, geometry()).map(drop);
                tally(false, r.is_ok());
            }
        }
    }
    (out, segment)
}

#[test]
fn mp_queue_survives_a_scribbler() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "scribbler" => scribbler_child(),
            other => panic!("unknown role {other}"),
        });
    }
    let seed = Rng::seed_from_time();
    eprintln!("{TEST}: seed {seed}");
    let segment = Segment::create(&SegmentOptions::new(SIZE).name("mp scribble")).unwrap();
    let offset = segment.alloc(geometry().footprint(), QUEUE_ALIGN).unwrap();
    queue::init(segment.region(), offset, geometry()).unwrap();
    segment.set_opaque(0, offset as u64);
    segment.set_ready();
    let mut segment = segment;
    segment.set_heap_lock_timeout(Duration::from_millis(20));
    let tx = Producer::attach(segment.region(), offset, geometry()).unwrap();
    let rx = Consumer::attach(segment.region(), offset, geometry()).unwrap();

    let rendezvous = common::Rendezvous::new(TEST);
    let (mut child, conn) = rendezvous.spawn(TEST, "scribbler", &seed.to_string());
    common::send(&conn, b"segment", &[segment.fd()]);
    let (msg, _) = common::recv(&conn, 0);
    assert_eq!(msg, b"scribbling");

    // The parent's work runs on a thread so that a hang is detected instead of hanging the test.
    let (done_tx, done_rx) = mpsc::channel();
    let run_for = if std::env::var_os("VPP_STRESS").is_some() {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(2)
    };
    thread::spawn(move || {
        let outcomes = hammer(segment, offset, tx, rx, seed, run_for);
        let _ = done_tx.send(outcomes);
    });
    let (outcomes, segment) = done_rx
        .recv_timeout(run_for + common::STEP)
        .unwrap_or_else(|_| panic!("seed {seed}: the queue API hung or panicked under scribbling"));
    child.kill();
    eprintln!("{TEST}: {outcomes:?}");
    assert!(outcomes.ok > 0, "seed {seed}: nothing ever succeeded");
    assert!(
        outcomes.corrupt > 0,
        "seed {seed}: the scribbler never made a queue report corruption"
    );

    // With the scribbler gone, a re-initialised queue in the same (now junk-filled) segment
    // works normally: this process's private copies of the segment geometry are intact.
    let region = segment.region();
    queue::init(region, offset, geometry()).unwrap();
    let mut tx = Producer::attach(region, offset, geometry()).unwrap();
    let mut rx = Consumer::attach(region, offset, geometry()).unwrap();
    tx.set_wait_policy(WaitPolicy::Poll);
    let mut buf = [0u8; ELEM];
    for seq in 0..1000u64 {
        tx.try_send(&common::numbered(seq, ELEM)).unwrap();
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(common::sequence_of(&buf), Some(seq));
    }
}
