//! loom models of the heap lock (mutual exclusion, park/wake hand-over between several waiters,
//! take-over from a dead owner) and of two threads allocating under it.
//!
//! Run with the command in the brief: `RUSTFLAGS="--cfg loom" ... cargo test --release -p
//! vppinfra --lib -- loom_`.
//!
//! # Safety
//!
//! The unsafe code is the test's own protected counter: a loom `UnsafeCell` that is only touched
//! with the lock held (or after all threads joined), which is exactly what loom verifies.
#![allow(unsafe_code)]

use super::layout::{LOCK_PID_MASK, LOCK_WAITERS};
use super::lock::{Acquired, FutexSim, LockConfig, LockWord};
use super::{Heap, MIN_REGION_LEN};
use crate::sync::{Arc, AtomicU32, Ordering, UnsafeCell, thread};
use std::time::Duration;

/// A lock word and its futex model, shareable between model threads.
struct Lock {
    word: AtomicU32,
    futex: FutexSim,
    /// Data the lock protects; loom reports any unsynchronised access to it.
    counter: UnsafeCell<u32>,
}

// SAFETY: `counter` is only touched while `word` is held (that is what the models check; loom's
// `UnsafeCell` flags any overlap), and the atomics are Sync.
unsafe impl Sync for Lock {}

impl Lock {
    fn new(initial: u32) -> Self {
        Lock {
            word: AtomicU32::new(initial),
            futex: FutexSim::new(),
            counter: UnsafeCell::new(0),
        }
    }

    fn view(&self) -> LockWord<'_> {
        LockWord::new(&self.word, &self.futex)
    }

    /// Takes the lock, bumps the counter inside, releases; returns how the lock was obtained.
    fn critical_section(&self) -> Acquired {
        let how = self
            .view()
            .lock(&config())
            .expect("loom waits never time out");
        self.counter.with_mut(|c| {
            // SAFETY: the lock is held, so no other thread accesses the counter; loom checks it.
            unsafe { *c += 1 };
        });
        self.view().unlock();
        how
    }

    fn count(&self) -> u32 {
        self.counter.with(|c| {
            // SAFETY: called after every other thread has been joined.
            unsafe { *c }
        })
    }
}

fn config() -> LockConfig {
    LockConfig {
        pid: std::process::id() & LOCK_PID_MASK,
        timeout: Duration::from_secs(1),
        owner_check_after: Duration::ZERO,
    }
}

/// A pid that the loom liveness check reports dead (any pid but ours).
fn dead_pid() -> u32 {
    (std::process::id() & LOCK_PID_MASK) ^ 1
}

#[test]
fn loom_lock_excludes_and_wakes_every_waiter() {
    // Three contenders: whichever order they come in, each parked waiter must be woken (a
    // missed wake-up would leave a thread spinning until the model's branch limit).
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let lock = Arc::new(Lock::new(0));
        let others: Vec<_> = (0..2)
            .map(|_| {
                let lock = lock.clone();
                thread::spawn(move || lock.critical_section())
            })
            .collect();
        assert_eq!(lock.critical_section(), Acquired::Released);
        for t in others {
            assert_eq!(t.join().unwrap(), Acquired::Released);
        }
        assert_eq!(lock.count(), 3);
        assert_eq!(lock.word.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn loom_dead_owner_is_taken_over_exactly_once() {
    loom::model(|| {
        let lock = Arc::new(Lock::new(dead_pid() | LOCK_WAITERS));
        let other = {
            let lock = lock.clone();
            thread::spawn(move || lock.critical_section())
        };
        let mine = lock.critical_section();
        let theirs = other.join().unwrap();
        let took_over = [mine, theirs]
            .iter()
            .filter(|a| matches!(a, Acquired::TookOver { dead_owner } if *dead_owner == dead_pid()))
            .count();
        assert_eq!(took_over, 1, "{mine:?} {theirs:?}");
        assert_eq!(lock.count(), 2);
        assert_eq!(lock.word.load(Ordering::Relaxed), 0);
    });
}

/// Allocates, stamps the block with `marker`, checks the stamp survived, frees.
fn stamp_and_check(heap: &Heap, marker: u8) -> u64 {
    let off = heap.alloc(16, 16).expect("alloc");
    heap.fill(off, 16, marker).unwrap();
    let mut back = [0u8; 16];
    heap.read(off, &mut back).unwrap();
    assert_eq!(
        back, [marker; 16],
        "another thread wrote into this allocation"
    );
    heap.free(off).expect("free");
    off
}

#[test]
fn loom_two_threads_allocate_without_overlap() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let heap = Arc::new(Heap::new_local(MIN_REGION_LEN).unwrap());
        let other = {
            let heap = heap.clone();
            thread::spawn(move || stamp_and_check(&heap, 0xbb))
        };
        stamp_and_check(&heap, 0xaa);
        other.join().unwrap();
        heap.validate().expect("validate");
        let s = heap.stats().unwrap();
        assert_eq!((s.n_allocs, s.n_frees, s.n_live), (2, 2, 0));
    });
}

#[test]
fn loom_heap_repairs_once_after_a_dead_owner() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let heap = Arc::new(Heap::new_local(MIN_REGION_LEN).unwrap());
        heap.region
            .lock_word()
            .word_store_for_test(dead_pid() | LOCK_WAITERS);
        let other = {
            let heap = heap.clone();
            thread::spawn(move || heap.alloc(16, 16).expect("alloc"))
        };
        let mine = heap.alloc(16, 16).expect("alloc");
        let theirs = other.join().unwrap();
        assert_ne!(mine, theirs);
        heap.validate().expect("validate");
        let s = heap.stats().unwrap();
        assert_eq!((s.n_recoveries, s.n_live), (1, 2));
    });
}
