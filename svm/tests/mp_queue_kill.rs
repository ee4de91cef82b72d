//! Multi-process: producers killed with SIGKILL at random points while one consumer keeps going.
//!
//! One queue lives for the whole test. Each round a new child attaches as the producer and sends
//! numbered elements (continuing the numbering), recording after each send how many it has
//! committed; the parent consumes, pausing at random so the queue fills and the producer parks,
//! and kills the child after a random delay. After each kill the parent drains the queue and
//! checks that it received a gap-free, duplicate-free prefix, no torn element, and exactly the
//! committed elements (or one more: the child may die between publishing an element and
//! recording it).
//!
//! `VPP_STRESS=1` runs many more rounds.
#![cfg(not(loom))]

mod common;

use std::time::{Duration, Instant};

use common::{Rng, numbered, sequence_of};
use svm::notify::WaitPolicy;
use svm::queue::{self, Consumer, Producer, QUEUE_ALIGN, QueueGeometry, QueueRecvError};
use svm::segment::{AttachOptions, Segment, SegmentOptions};
use vppinfra::testing;

const TEST: &str = "mp_queue_producer_killed_at_random_points";
const ELEM: usize = 64;

fn geometry() -> QueueGeometry {
    QueueGeometry::new(16, ELEM as u32).unwrap()
}

fn rounds() -> u32 {
    if std::env::var_os("VPP_STRESS").is_some() {
        3000
    } else {
        600
    }
}

fn producer_child() {
    let (conn, _) = common::child_connect();
    let (msg, mut fds) = common::recv(&conn, 1);
    let text = String::from_utf8(msg).unwrap();
    let mut words = text.split(' ');
    let start: u64 = words.next().unwrap().parse().unwrap();
    let spins: u32 = words.next().unwrap().parse().unwrap();
    let segment = Segment::attach(fds.pop().unwrap(), &AttachOptions::default()).unwrap();
    let offset = segment.opaque(1).unwrap() as usize;
    let mut tx = Producer::attach(segment.region(), offset, geometry()).unwrap();
    tx.set_wait_policy(WaitPolicy::SpinThenPark { spins });
    common::send(&conn, b"attached", &[]);
    for seq in start.. {
        tx.send(&numbered(seq, ELEM)).unwrap();
        segment.set_opaque(0, seq + 1);
    }
}

#[test]
fn mp_queue_producer_killed_at_random_points() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "producer" => producer_child(),
            other => panic!("unknown role {other}"),
        });
    }
    let seed = Rng::seed_from_time();
    eprintln!("{TEST}: seed {seed}");
    let mut rng = Rng::new(seed);
    let segment = Segment::create(&SegmentOptions::new(1 << 16).name("mp kill")).unwrap();
    let offset = segment.alloc(geometry().footprint(), QUEUE_ALIGN).unwrap();
    queue::init(segment.region(), offset, geometry()).unwrap();
    segment.set_opaque(1, offset as u64);
    segment.set_ready();
    let mut rx = Consumer::attach(segment.region(), offset, geometry()).unwrap();
    rx.set_wait_policy(WaitPolicy::SpinThenPark { spins: 100 });

    let rendezvous = common::Rendezvous::new(TEST);
    let mut received: u64 = 0;
    let mut buf = [0u8; ELEM];
    let mut rounds_with_traffic = 0;
    let check = |buf: &[u8], received: &mut u64| {
        assert_eq!(
            sequence_of(buf),
            Some(*received),
            "seed {seed}: element {received} is torn, missing or duplicated"
        );
        *received += 1;
    };
    for round in 0..rounds() {
        segment.set_opaque(0, received);
        // Alternate the producer's barrier: the light one (membarrier) and full fences.
        let env: &[(&str, &str)] = if round % 2 == 0 {
            &[]
        } else {
            &[(svm::notify::DISABLE_MEMBARRIER_ENV, "1")]
        };
        let (mut child, conn) = rendezvous.spawn_with_env(TEST, "producer", "", env);
        // Half the producers park at once when the queue is full, the others spin a while.
        let spins = if rng.below(2) == 0 { 0 } else { 200 };
        common::send(
            &conn,
            format!("{received} {spins}").as_bytes(),
            &[segment.fd()],
        );
        let (msg, _) = common::recv(&conn, 0);
        assert_eq!(msg, b"attached");

        let before = received;
        let kill_at = Instant::now() + Duration::from_micros(rng.below(3000));
        while Instant::now() < kill_at {
            if rng.below(8) == 0 {
                // Let the queue fill so the producer parks (or is mid-wake) when it dies.
                std::thread::sleep(Duration::from_micros(rng.below(300)));
            }
            match rx.recv_timeout(&mut buf, Duration::from_micros(200)) {
                Ok(()) => check(&buf, &mut received),
                Err(QueueRecvError::Timeout) => {}
                Err(e) => panic!("seed {seed}, round {round}: {e}"),
            }
        }
        child.kill();
        loop {
            match rx.try_recv(&mut buf) {
                Ok(()) => check(&buf, &mut received),
                Err(QueueRecvError::Empty) => break,
                Err(e) => panic!("seed {seed}, round {round}: {e}"),
            }
        }
        let committed = segment.opaque(0).unwrap();
        assert!(
            received == committed || received == committed + 1,
            "seed {seed}, round {round}: received {received}, producer committed {committed}"
        );
        if received > before {
            rounds_with_traffic += 1;
        }
    }
    eprintln!(
        "{TEST}: {received} elements over {} rounds, {rounds_with_traffic} with traffic",
        rounds()
    );
    assert!(
        rounds_with_traffic > rounds() / 2,
        "producers rarely got going ({rounds_with_traffic} of {} rounds)",
        rounds()
    );
}
