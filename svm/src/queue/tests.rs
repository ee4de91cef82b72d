//! Single-process tests of the queue (threads share an anonymous mapping). The cross-process
//! behaviour is in `tests/mp_queue*.rs`; the interleavings are in `loom_tests.rs`.

use std::os::fd::AsFd;
use std::time::Duration;

use super::*;
use crate::notify::EventFdNotifier;
use vppinfra::sync::{Arc, AtomicUsize, thread};

fn geometry(capacity: u32, elem_size: u32) -> QueueGeometry {
    QueueGeometry::new(capacity, elem_size).unwrap()
}

fn elem(value: u64, elem_size: usize) -> Vec<u8> {
    let mut e = vec![0u8; elem_size];
    for chunk in e.chunks_exact_mut(8) {
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    e
}

fn value_of(e: &[u8]) -> u64 {
    let first = u64::from_ne_bytes(e[..8].try_into().unwrap());
    assert!(
        e.chunks_exact(8)
            .all(|c| u64::from_ne_bytes(c.try_into().unwrap()) == first),
        "torn element"
    );
    first
}

fn region_with_queue(g: QueueGeometry) -> SharedRegion {
    let region = SharedRegion::anonymous(g.footprint()).unwrap();
    init(&region, 0, g).unwrap();
    region
}

fn header(region: &SharedRegion) -> &QueueHeader {
    region.view::<QueueHeader>(0).unwrap()
}

/// Counts wakes, then wakes a futex sleeper.
#[derive(Debug, Default, Clone)]
struct CountingNotifier(Arc<AtomicUsize>);

impl Notifier for CountingNotifier {
    fn notify(&self, parked: &ParkWord) {
        self.0.fetch_add(1, Ordering::Relaxed);
        parked.wake_all();
    }
}

#[test]
fn geometry_is_validated() {
    assert!(QueueGeometry::new(1, 8).is_ok());
    assert!(QueueGeometry::new(1024, 64).is_ok());
    assert_eq!(
        QueueGeometry::new(0, 8),
        Err(QueueGeometryError::Capacity { capacity: 0 })
    );
    assert_eq!(
        QueueGeometry::new(3, 8),
        Err(QueueGeometryError::Capacity { capacity: 3 })
    );
    assert!(QueueGeometry::new(QueueGeometry::MAX_CAPACITY * 2, 8).is_err());
    assert_eq!(
        QueueGeometry::new(4, 12),
        Err(QueueGeometryError::ElementSize { elem_size: 12 })
    );
    assert!(QueueGeometry::new(4, 0).is_err());
    assert!(QueueGeometry::new(4, QueueGeometry::MAX_ELEM_SIZE + 8).is_err());
    assert_eq!(geometry(4, 16).footprint(), QueueHeader::SIZE + 64);
}

#[test]
fn init_checks_placement() {
    let g = geometry(16, 8);
    let region = SharedRegion::anonymous(4096).unwrap();
    assert_eq!(
        init(&region, 64, g),
        Err(QueueInitError::Misaligned { offset: 64 })
    );
    assert!(matches!(
        init(&region, 4096 - 128, g),
        Err(QueueInitError::OutOfBounds { .. })
    ));
    assert!(init(&region, 4096 - g.footprint() / 128 * 128 - 128, g).is_ok());
}

#[test]
fn attach_validates_the_shared_identity() {
    let g = geometry(16, 8);
    let region = SharedRegion::anonymous(8192).unwrap();
    assert_eq!(
        Producer::attach(&region, 0, g).unwrap_err(),
        QueueAttachError::BadMagic { found: 0 }
    );
    init(&region, 0, g).unwrap();
    assert_eq!(QueueGeometry::read(&region, 0), Ok(g));
    assert!(matches!(
        Consumer::attach(&region, 0, geometry(32, 8)),
        Err(QueueAttachError::GeometryMismatch {
            found_capacity: 16,
            found_elem_size: 8,
            ..
        })
    ));
    assert!(matches!(
        Consumer::attach(&region, 8192 - 128, g),
        Err(QueueAttachError::OutOfBounds { .. })
    ));
    assert!(matches!(
        Consumer::attach(&region, 8, g),
        Err(QueueAttachError::Misaligned { offset: 8 })
    ));

    let id = &header(&region).identity.0;
    id.version.store(99, Ordering::Relaxed);
    assert_eq!(
        Producer::attach(&region, 0, g).unwrap_err(),
        QueueAttachError::BadVersion { found: 99 }
    );
    id.version.store(QUEUE_LAYOUT_VERSION, Ordering::Relaxed);
    id.data_offset.store(64, Ordering::Relaxed);
    assert_eq!(
        Producer::attach(&region, 0, g).unwrap_err(),
        QueueAttachError::BadLayout { data_offset: 64 }
    );
    id.data_offset
        .store(QueueHeader::SIZE as u32, Ordering::Relaxed);
    id.capacity.store(1 << 30, Ordering::Relaxed);
    assert!(matches!(
        QueueGeometry::read(&region, 0),
        Err(QueueAttachError::Geometry(_))
    ));
    id.capacity.store(16, Ordering::Relaxed);
    header(&region).tail.0.store(17, Ordering::Relaxed);
    assert!(matches!(
        Producer::attach(&region, 0, g),
        Err(QueueAttachError::Corrupt(_))
    ));
}

#[test]
fn attach_records_pids() {
    let g = geometry(4, 8);
    let region = region_with_queue(g);
    let _tx = Producer::attach(&region, 0, g).unwrap();
    let _rx = Consumer::attach(&region, 0, g).unwrap();
    let id = &header(&region).identity.0;
    assert_eq!(id.producer_pid.load(Ordering::Relaxed), std::process::id());
    assert_eq!(id.consumer_pid.load(Ordering::Relaxed), std::process::id());
}

#[test]
fn fifo_full_and_empty() {
    let g = geometry(4, 16);
    let (mut tx, mut rx) = process_local_pair(g).unwrap();
    let mut out = [0u8; 16];
    assert_eq!(rx.try_recv(&mut out), Err(QueueRecvError::Empty));
    for v in 0..4 {
        tx.try_send(&elem(v, 16)).unwrap();
    }
    assert_eq!(tx.try_send(&elem(9, 16)), Err(QueueSendError::Full));
    assert_eq!(tx.occupancy(), Ok(4));
    assert_eq!(rx.occupancy(), Ok(4));
    for v in 0..4 {
        rx.try_recv(&mut out).unwrap();
        assert_eq!(value_of(&out), v);
    }
    assert_eq!(rx.try_recv(&mut out), Err(QueueRecvError::Empty));
    assert_eq!(tx.occupancy(), Ok(0));
}

#[test]
fn element_sizes_are_checked() {
    let (mut tx, mut rx) = process_local_pair(geometry(4, 16)).unwrap();
    assert_eq!(
        tx.try_send(&[0u8; 8]),
        Err(QueueSendError::ElementSize {
            expected: 16,
            found: 8
        })
    );
    assert!(matches!(
        tx.try_send_batch(&[0u8; 24]),
        Err(QueueSendError::ElementSize { .. })
    ));
    assert!(matches!(
        rx.try_recv(&mut [0u8; 32]),
        Err(QueueRecvError::ElementSize { .. })
    ));
    assert!(matches!(
        rx.try_recv_batch(&mut [0u8; 8]),
        Err(QueueRecvError::ElementSize { .. })
    ));
    assert_eq!(tx.try_send_batch(&[]), Ok(0));
}

#[test]
fn indices_wrap_around_u32() {
    let g = geometry(4, 8);
    let region = region_with_queue(g);
    let start = u32::MAX - 5;
    header(&region).tail.0.store(start, Ordering::Relaxed);
    header(&region).head.0.store(start, Ordering::Relaxed);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let mut rx = Consumer::attach(&region, 0, g).unwrap();
    let mut out = [0u8; 8];
    for v in 0..40u64 {
        tx.try_send(&v.to_ne_bytes()).unwrap();
        tx.try_send(&(v + 1000).to_ne_bytes()).unwrap();
        rx.try_recv(&mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out), v);
        rx.try_recv(&mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out), v + 1000);
    }
    assert!(header(&region).tail.0.load(Ordering::Relaxed) < start);
}

#[test]
fn batches_move_what_fits() {
    let g = geometry(8, 8);
    let (mut tx, mut rx) = process_local_pair(g).unwrap();
    let batch: Vec<u8> = (0..12u64).flat_map(|v| v.to_ne_bytes()).collect();
    assert_eq!(tx.try_send_batch(&batch), Ok(8));
    assert_eq!(tx.try_send_batch(&batch), Ok(0));
    let mut out = [0u8; 8 * 5];
    assert_eq!(rx.try_recv_batch(&mut out), Ok(5));
    let got: Vec<u64> = out
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    assert_eq!(tx.try_send_batch(&batch[8 * 8..]), Ok(4));
    let mut rest = [0u8; 8 * 16];
    assert_eq!(rx.try_recv_batch(&mut rest), Ok(7));
    let got: Vec<u64> = rest[..7 * 8]
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, vec![5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(rx.try_recv_batch(&mut rest), Ok(0));
}

#[test]
fn a_bogus_peer_index_is_reported_for_this_queue_only() {
    let g = geometry(4, 8);
    let region = region_with_queue(g);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let mut rx = Consumer::attach(&region, 0, g).unwrap();
    let mut out = [0u8; 8];
    for v in 0..4u64 {
        tx.try_send(&v.to_ne_bytes()).unwrap();
    }
    // The consumer claims to have read past the producer's tail.
    header(&region).head.0.store(9, Ordering::Relaxed);
    assert_eq!(
        tx.try_send(&[0; 8]),
        Err(QueueSendError::Corrupt(QueueCorrupt {
            head: 9,
            tail: 4,
            capacity: 4
        }))
    );
    header(&region).head.0.store(0, Ordering::Relaxed);
    assert_eq!(tx.try_send(&[0; 8]), Err(QueueSendError::Full));

    // The producer claims more elements than fit.
    header(&region).tail.0.store(100, Ordering::Relaxed);
    let mut batch = [0u8; 64];
    assert!(matches!(
        rx.try_recv(&mut out),
        Err(QueueRecvError::Corrupt(QueueCorrupt { tail: 100, .. }))
    ));
    assert!(matches!(
        rx.try_recv_batch(&mut batch),
        Err(QueueRecvError::Corrupt(_))
    ));
    assert!(matches!(
        rx.occupancy(),
        Err(QueueCorrupt { tail: 100, .. })
    ));
    assert!(matches!(
        rx.recv_timeout(&mut out, Duration::from_millis(1)),
        Err(QueueRecvError::Corrupt(_))
    ));
    assert!(matches!(rx.prepare_park(), Err(QueueCorrupt { .. })));
    assert!(!header(&region).consumer_parked.0.is_parked());
    // Sane again: the queue carries on.
    header(&region).tail.0.store(4, Ordering::Relaxed);
    rx.try_recv(&mut out).unwrap();
    assert_eq!(u64::from_ne_bytes(out), 0);
}

#[test]
fn own_index_is_never_reread_from_shared_memory() {
    let g = geometry(4, 8);
    let region = region_with_queue(g);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let mut rx = Consumer::attach(&region, 0, g).unwrap();
    let mut out = [0u8; 8];
    tx.try_send(&1u64.to_ne_bytes()).unwrap();
    // A scribbler rewinds the producer's published tail; the producer keeps its own.
    header(&region).tail.0.store(0, Ordering::Relaxed);
    tx.try_send(&2u64.to_ne_bytes()).unwrap();
    assert_eq!(header(&region).tail.0.load(Ordering::Relaxed), 2);
    rx.try_recv(&mut out).unwrap();
    assert_eq!(u64::from_ne_bytes(out), 1);
    // And the consumer keeps its own head.
    header(&region).head.0.store(0, Ordering::Relaxed);
    rx.try_recv(&mut out).unwrap();
    assert_eq!(u64::from_ne_bytes(out), 2);
    assert_eq!(rx.try_recv(&mut out), Err(QueueRecvError::Empty));
}

#[test]
fn blocking_calls_time_out() {
    let (mut tx, mut rx) = process_local_pair(geometry(1, 8)).unwrap();
    let mut out = [0u8; 8];
    for policy in [
        WaitPolicy::Poll,
        WaitPolicy::SpinThenPark { spins: 0 },
        WaitPolicy::SpinThenPark { spins: 100 },
    ] {
        rx.set_wait_policy(policy);
        tx.set_wait_policy(policy);
        assert_eq!(
            rx.recv_timeout(&mut out, Duration::from_millis(3)),
            Err(QueueRecvError::Timeout)
        );
        assert_eq!(
            rx.recv_batch_timeout(&mut out, Duration::from_millis(3)),
            Err(QueueRecvError::Timeout)
        );
        tx.send_timeout(&[1; 8], Duration::from_millis(3)).unwrap();
        assert_eq!(
            tx.send_timeout(&[2; 8], Duration::from_millis(3)),
            Err(QueueSendError::Timeout)
        );
        assert_eq!(
            tx.send_batch_timeout(&[2; 16], Duration::from_millis(3)),
            Err(QueueSendError::Timeout)
        );
        rx.recv(&mut out).unwrap();
        assert_eq!(out, [1; 8]);
    }
}

/// Runs `n` numbered elements through a queue between two threads with the given policies.
fn stream(n: u64, capacity: u32, tx_policy: WaitPolicy, rx_policy: WaitPolicy, batch: bool) {
    let g = geometry(capacity, 64);
    let (mut tx, mut rx) = process_local_pair(g).unwrap();
    tx.set_wait_policy(tx_policy);
    rx.set_wait_policy(rx_policy);
    let producer = thread::spawn(move || {
        if batch {
            let mut v = 0;
            while v < n {
                let k = (n - v).min(5);
                let elems: Vec<u8> = (v..v + k).flat_map(|x| elem(x, 64)).collect();
                let sent = tx.send_batch(&elems).unwrap() as u64;
                assert!(sent >= 1);
                v += sent;
            }
        } else {
            for v in 0..n {
                tx.send(&elem(v, 64)).unwrap();
            }
        }
    });
    let mut expected = 0;
    let mut out = vec![0u8; 64 * 7];
    while expected < n {
        if batch {
            let k = rx.recv_batch(&mut out).unwrap();
            for e in out[..k * 64].chunks_exact(64) {
                assert_eq!(value_of(e), expected);
                expected += 1;
            }
        } else {
            rx.recv(&mut out[..64]).unwrap();
            assert_eq!(value_of(&out[..64]), expected);
            expected += 1;
        }
    }
    producer.join().unwrap();
    assert_eq!(rx.try_recv(&mut out[..64]), Err(QueueRecvError::Empty));
}

#[test]
fn threads_stream_with_parking() {
    let park = WaitPolicy::SpinThenPark { spins: 0 };
    stream(20_000, 4, park, park, false);
    stream(20_000, 4, park, park, true);
}

#[test]
fn threads_stream_with_spin_then_park() {
    let policy = WaitPolicy::SpinThenPark { spins: 50 };
    stream(20_000, 8, policy, policy, false);
    stream(20_000, 8, policy, WaitPolicy::Poll, true);
}

#[test]
fn threads_stream_polling() {
    stream(20_000, 16, WaitPolicy::Poll, WaitPolicy::Poll, false);
}

#[test]
fn a_polling_peer_is_never_woken() {
    let (mut tx, mut rx) = process_local_pair(geometry(64, 8)).unwrap();
    let wakes = CountingNotifier::default();
    tx.set_notifier(Some(Box::new(wakes.clone())));
    rx.set_wait_policy(WaitPolicy::Poll);
    let consumer = thread::spawn(move || {
        let mut out = [0u8; 8];
        for v in 0..10_000u64 {
            rx.recv(&mut out).unwrap();
            assert_eq!(u64::from_ne_bytes(out), v);
        }
    });
    for v in 0..10_000u64 {
        tx.send(&v.to_ne_bytes()).unwrap();
    }
    consumer.join().unwrap();
    assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
}

#[test]
fn a_parked_consumer_is_woken_once() {
    let g = geometry(8, 8);
    let region = region_with_queue(g);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let mut rx = Consumer::attach(&region, 0, g).unwrap();
    let wakes = CountingNotifier::default();
    tx.set_notifier(Some(Box::new(wakes.clone())));
    rx.set_wait_policy(WaitPolicy::SpinThenPark { spins: 0 });
    let consumer = thread::spawn(move || {
        let mut out = [0u8; 8];
        rx.recv(&mut out).unwrap();
        u64::from_ne_bytes(out)
    });
    // Wait until the consumer announced that it sleeps, then send twice: one wake only.
    assert!(vppinfra::testing::wait_until(
        Duration::from_secs(5),
        || { header(&region).consumer_parked.0.is_parked() }
    ));
    tx.try_send(&7u64.to_ne_bytes()).unwrap();
    tx.try_send(&8u64.to_ne_bytes()).unwrap();
    assert_eq!(consumer.join().unwrap(), 7);
    assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    assert!(!header(&region).consumer_parked.0.is_parked());
}

#[test]
fn a_garbage_parked_word_costs_one_wake_and_is_cleared() {
    let g = geometry(8, 8);
    let region = region_with_queue(g);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let wakes = CountingNotifier::default();
    tx.set_notifier(Some(Box::new(wakes.clone())));
    header(&region).consumer_parked.0.announce();
    tx.try_send(&[0; 8]).unwrap();
    tx.try_send(&[0; 8]).unwrap();
    assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
    assert!(!header(&region).consumer_parked.0.is_parked());
}

#[test]
fn a_producer_parked_on_a_full_queue_is_woken() {
    let (mut tx, mut rx) = process_local_pair(geometry(2, 8)).unwrap();
    tx.set_wait_policy(WaitPolicy::SpinThenPark { spins: 0 });
    let producer = thread::spawn(move || {
        for v in 0..1000u64 {
            tx.send(&v.to_ne_bytes()).unwrap();
        }
    });
    let mut out = [0u8; 8];
    for v in 0..1000u64 {
        if v % 100 == 0 {
            // Let the producer fill the queue and park.
            thread::sleep(Duration::from_millis(1));
        }
        rx.recv(&mut out).unwrap();
        assert_eq!(u64::from_ne_bytes(out), v);
    }
    producer.join().unwrap();
}

#[test]
fn prepare_park_reports_whether_to_sleep() {
    let g = geometry(4, 8);
    let region = region_with_queue(g);
    let mut tx = Producer::attach(&region, 0, g).unwrap();
    let mut rx = Consumer::attach(&region, 0, g).unwrap();
    assert_eq!(rx.prepare_park(), Ok(true));
    assert!(header(&region).consumer_parked.0.is_parked());
    rx.finish_park();
    assert!(!header(&region).consumer_parked.0.is_parked());
    tx.try_send(&[1; 8]).unwrap();
    assert_eq!(rx.prepare_park(), Ok(false));
    assert!(!header(&region).consumer_parked.0.is_parked());

    assert_eq!(tx.prepare_park(), Ok(false));
    assert!(!header(&region).producer_parked.0.is_parked());
    for _ in 0..3 {
        tx.try_send(&[1; 8]).unwrap();
    }
    assert_eq!(tx.prepare_park(), Ok(true));
    assert!(header(&region).producer_parked.0.is_parked());
    tx.finish_park();
    assert!(!header(&region).producer_parked.0.is_parked());
}

#[test]
fn an_epoll_sleeper_is_woken_through_its_eventfd() {
    use nix::poll::{PollFd, PollFlags, poll};
    use nix::sys::eventfd::{EfdFlags, EventFd};

    let (mut tx, mut rx) = process_local_pair(geometry(4, 8)).unwrap();
    let efd =
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap();
    let waker = efd.as_fd().try_clone_to_owned().unwrap();
    tx.set_notifier(Some(Box::new(EventFdNotifier::new(waker))));
    let consumer = thread::spawn(move || {
        let mut got = Vec::new();
        let mut out = [0u8; 8];
        let mut sleeps = 0;
        while got.len() < 3 {
            match rx.try_recv(&mut out) {
                Ok(()) => got.push(u64::from_ne_bytes(out)),
                Err(QueueRecvError::Empty) => {
                    if rx.prepare_park().unwrap() {
                        sleeps += 1;
                        let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
                        let n = poll(&mut fds, 10_000u16).unwrap();
                        assert_eq!(n, 1, "the producer's eventfd write must wake us");
                        let mut buf = [0u8; 8];
                        let _ = nix::unistd::read(efd.as_fd(), &mut buf);
                    }
                    rx.finish_park();
                }
                Err(e) => panic!("{e}"),
            }
        }
        (got, sleeps)
    });
    for v in 0..3u64 {
        thread::sleep(Duration::from_millis(20));
        tx.try_send(&v.to_ne_bytes()).unwrap();
    }
    let (got, sleeps) = consumer.join().unwrap();
    assert_eq!(got, vec![0, 1, 2]);
    assert!(sleeps >= 1);
}

#[test]
fn parking_many_queues_at_once_announces_all_or_none() {
    use nix::sys::eventfd::{EfdFlags, EventFd};

    let efd =
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).unwrap();
    let (mut tx1, mut rx1) = process_local_pair(geometry(4, 8)).unwrap();
    let (mut tx2, mut rx2) = process_local_pair(geometry(4, 8)).unwrap();
    for tx in [&mut tx1, &mut tx2] {
        let waker = efd.as_fd().try_clone_to_owned().unwrap();
        tx.set_notifier(Some(Box::new(EventFdNotifier::new(waker))));
    }
    // Both empty: both announced; a send to either rings the doorbell.
    assert_eq!(prepare_park_all(&mut [&mut rx1, &mut rx2]), Ok(Some(true)));
    tx2.try_send(&7u64.to_ne_bytes()).unwrap();
    assert_eq!(efd.read().unwrap(), 1, "the announced sleeper was woken");
    rx1.finish_park();
    rx2.finish_park();
    // One has an element: nothing stays announced, so nobody rings.
    assert_eq!(prepare_park_all(&mut [&mut rx1, &mut rx2]), Ok(None));
    tx1.try_send(&8u64.to_ne_bytes()).unwrap();
    assert!(efd.read().is_err(), "no wake without an announcement");
}
