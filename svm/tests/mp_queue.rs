//! Multi-process: queue traffic both ways between a parent and a child that share a memfd
//! segment, under each wait policy and with single and batched operations; also with the child
//! using full fences instead of the `membarrier`-based light barrier (mixed peers must
//! interoperate: each side's choice is its own).
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{numbered, sequence_of};
use svm::notify::WaitPolicy;
use svm::queue::{self, Consumer, Producer, QUEUE_ALIGN, QueueGeometry};
use svm::segment::{AttachOptions, Segment, SegmentOptions};
use vppinfra::sync::thread;
use vppinfra::testing;

const TEST: &str = "mp_queue_traffic_both_ways";
const ELEM: usize = 64;

fn geometry() -> QueueGeometry {
    QueueGeometry::new(256, ELEM as u32).unwrap()
}

fn policy(name: &str) -> WaitPolicy {
    match name {
        "park" => WaitPolicy::SpinThenPark { spins: 0 },
        "poll" => WaitPolicy::Poll,
        _ => WaitPolicy::default(),
    }
}

/// The child echoes every element back with its number mapped to `3 * n + 1`.
fn echo_child() {
    let (conn, arg) = common::child_connect();
    let (_, mut fds) = common::recv(&conn, 1);
    let mut parts = arg.split(' ');
    let wait = policy(parts.next().unwrap());
    let batched = parts.next() == Some("batch");
    let count: u64 = parts.next().unwrap().parse().unwrap();
    let segment = Segment::attach(fds.pop().unwrap(), &AttachOptions::default()).unwrap();
    let region = segment.region();
    let mut rx = Consumer::attach(region, segment.opaque(0).unwrap() as usize, geometry()).unwrap();
    let mut tx = Producer::attach(region, segment.opaque(1).unwrap() as usize, geometry()).unwrap();
    rx.set_wait_policy(wait);
    tx.set_wait_policy(wait);
    let mut expected = 0;
    let mut buf = vec![0u8; ELEM * 16];
    while expected < count {
        let n = if batched {
            rx.recv_batch(&mut buf).unwrap()
        } else {
            rx.recv(&mut buf[..ELEM]).unwrap();
            1
        };
        let mut replies = Vec::with_capacity(n * ELEM);
        for e in buf[..n * ELEM].chunks_exact(ELEM) {
            assert_eq!(sequence_of(e), Some(expected));
            replies.extend(numbered(3 * expected + 1, ELEM));
            expected += 1;
        }
        if batched {
            let mut sent = 0;
            while sent < n {
                sent += tx.send_batch(&replies[sent * ELEM..]).unwrap();
            }
        } else {
            tx.send(&replies).unwrap();
        }
    }
}

#[test]
fn mp_queue_traffic_both_ways() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "echo" => echo_child(),
            other => panic!("unknown role {other}"),
        });
    }
    let rendezvous = common::Rendezvous::new(TEST);
    for (wait, batched, count, membarrier) in [
        ("default", "single", 50_000u64, true),
        // Three threads poll on two cores here: keep it short.
        ("poll", "single", 5_000, true),
        ("park", "single", 5_000, true),
        ("park", "single", 5_000, false),
        ("default", "batch", 100_000, true),
        ("park", "batch", 20_000, true),
        ("default", "batch", 50_000, false),
    ] {
        let segment = Segment::create(&SegmentOptions::new(1 << 20).name("mp queue")).unwrap();
        for i in 0..2 {
            let offset = segment.alloc(geometry().footprint(), QUEUE_ALIGN).unwrap();
            queue::init(segment.region(), offset, geometry()).unwrap();
            segment.set_opaque(i, offset as u64);
        }
        segment.set_ready();
        let region = segment.region();
        let mut tx =
            Producer::attach(region, segment.opaque(0).unwrap() as usize, geometry()).unwrap();
        let mut rx =
            Consumer::attach(region, segment.opaque(1).unwrap() as usize, geometry()).unwrap();
        tx.set_wait_policy(policy(wait));
        rx.set_wait_policy(policy(wait));

        let env: &[(&str, &str)] = if membarrier {
            &[]
        } else {
            &[(svm::notify::DISABLE_MEMBARRIER_ENV, "1")]
        };
        let (mut child, conn) =
            rendezvous.spawn_with_env(TEST, "echo", &format!("{wait} {batched} {count}"), env);
        common::send(&conn, b"segment", &[segment.fd()]);
        let sender = thread::spawn(move || {
            for seq in 0..count {
                tx.send_timeout(&numbered(seq, ELEM), common::STEP).unwrap();
            }
        });
        let mut buf = vec![0u8; ELEM];
        for seq in 0..count {
            rx.recv_timeout(&mut buf, common::STEP)
                .unwrap_or_else(|e| panic!("{wait}/{batched}: reply {seq}: {e}"));
            assert_eq!(sequence_of(&buf), Some(3 * seq + 1), "{wait}/{batched}");
        }
        sender.join().unwrap();
        child.expect_success(common::STEP);
        assert_eq!(
            rx.recv_timeout(&mut buf, Duration::from_millis(10)),
            Err(svm::queue::QueueRecvError::Timeout)
        );
    }
}
