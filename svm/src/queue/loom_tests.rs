//! Loom models of the queue: slot publication, the park/wake handshake on both ends, and the
//! "announce, re-check, sleep" protocol used by a consumer that sleeps outside the queue.
//!
//! Each model uses the main thread plus one spawned thread. Slot words are loom `UnsafeCell`s,
//! so a slot read that is not ordered after its write (or a reuse not ordered after the read)
//! fails the model; a lost wake-up leaves a thread asleep forever, which loom reports as a
//! deadlock.

use super::*;
use vppinfra::sync::{Arc, Condvar, Mutex, thread};

fn pair(capacity: u32, elem_size: u32, policy: WaitPolicy) -> (Producer, Consumer) {
    let g = QueueGeometry::new(capacity, elem_size).unwrap();
    let (mut tx, mut rx) = process_local_pair(g).unwrap();
    tx.set_wait_policy(policy);
    rx.set_wait_policy(policy);
    (tx, rx)
}

fn elem(v: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[..8].copy_from_slice(&v.to_ne_bytes());
    e[8..].copy_from_slice(&(!v).to_ne_bytes());
    e
}

fn value(e: &[u8; 16]) -> u64 {
    let v = u64::from_ne_bytes(e[..8].try_into().unwrap());
    assert_eq!(
        u64::from_ne_bytes(e[8..].try_into().unwrap()),
        !v,
        "torn element"
    );
    v
}

/// Publication and consumption through a full, wrapping queue, both sides polling.
#[test]
fn loom_spsc_publish_consume() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(2, 16, WaitPolicy::Poll);
        let producer = thread::spawn(move || {
            for v in 1..=3 {
                tx.send(&elem(v)).unwrap();
            }
        });
        let mut out = [0u8; 16];
        for v in 1..=3 {
            rx.recv(&mut out).unwrap();
            assert_eq!(value(&out), v);
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv(&mut out), Err(QueueRecvError::Empty));
    });
}

/// Batches publish several slots with one index store.
#[test]
fn loom_spsc_batches() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(4, 16, WaitPolicy::Poll);
        let producer = thread::spawn(move || {
            let batch: Vec<u8> = (1..=3).flat_map(elem).collect();
            let mut sent = 0;
            while sent < 3 {
                sent += tx.send_batch(&batch[sent * 16..]).unwrap();
            }
        });
        let mut out = [0u8; 48];
        let mut next = 1;
        while next <= 3 {
            let n = rx.recv_batch(&mut out).unwrap();
            for e in out[..n * 16].chunks_exact(16) {
                assert_eq!(value(e.try_into().unwrap()), next);
                next += 1;
            }
        }
        producer.join().unwrap();
    });
}

/// A consumer that parks at once on an empty queue is always woken by the producer.
#[test]
fn loom_consumer_park_wake() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(2, 16, WaitPolicy::SpinThenPark { spins: 0 });
        let producer = thread::spawn(move || {
            tx.try_send(&elem(1)).unwrap();
            tx.try_send(&elem(2)).unwrap();
        });
        let mut out = [0u8; 16];
        rx.recv(&mut out).unwrap();
        assert_eq!(value(&out), 1);
        rx.recv(&mut out).unwrap();
        assert_eq!(value(&out), 2);
        producer.join().unwrap();
    });
}

/// A producer that parks on a full queue is always woken by the consumer, and vice versa.
#[test]
fn loom_producer_park_wake() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(1, 16, WaitPolicy::SpinThenPark { spins: 0 });
        let producer = thread::spawn(move || {
            tx.send(&elem(1)).unwrap();
            tx.send(&elem(2)).unwrap();
        });
        let mut out = [0u8; 16];
        rx.recv(&mut out).unwrap();
        assert_eq!(value(&out), 1);
        rx.recv(&mut out).unwrap();
        assert_eq!(value(&out), 2);
        producer.join().unwrap();
    });
}

/// An eventfd as loom sees it: a counter under a mutex, and a condition variable.
#[derive(Debug, Clone)]
struct ModelEventFd(Arc<(Mutex<u64>, Condvar)>);

impl ModelEventFd {
    fn new() -> Self {
        Self(Arc::new((Mutex::new(0), Condvar::new())))
    }

    /// Blocks until the counter is non-zero, then resets it (like `read(2)` on an eventfd).
    fn wait_and_drain(&self) {
        let (lock, cond) = &*self.0;
        let mut count = lock.lock().unwrap();
        while *count == 0 {
            count = cond.wait(count).unwrap();
        }
        *count = 0;
    }
}

impl Notifier for ModelEventFd {
    fn notify(&self, _parked: &ParkWord) {
        let (lock, cond) = &*self.0;
        *lock.lock().unwrap() += 1;
        cond.notify_all();
    }
}

/// A consumer that sleeps outside the queue (epoll on an eventfd): announce with
/// `prepare_park`, re-check, sleep, `finish_park`. The race between the announcement and the
/// producer's publication must never lose the wake-up.
#[test]
fn loom_external_sleeper_prepare_park() {
    loom::model(|| {
        let (mut tx, mut rx) = pair(2, 16, WaitPolicy::Poll);
        let doorbell = ModelEventFd::new();
        tx.set_notifier(Some(Box::new(doorbell.clone())));
        let producer = thread::spawn(move || {
            tx.try_send(&elem(1)).unwrap();
            tx.try_send(&elem(2)).unwrap();
        });
        let mut out = [0u8; 16];
        let mut next = 1;
        while next <= 2 {
            match rx.try_recv(&mut out) {
                Ok(()) => {
                    assert_eq!(value(&out), next);
                    next += 1;
                }
                Err(QueueRecvError::Empty) => {
                    if rx.prepare_park().unwrap() {
                        doorbell.wait_and_drain();
                    }
                    rx.finish_park();
                }
                Err(e) => panic!("{e}"),
            }
        }
        producer.join().unwrap();
    });
}
