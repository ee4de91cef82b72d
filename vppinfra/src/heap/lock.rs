//! The heap lock: a futex-style mutex whose word lives in the region and names its owner's pid.
//!
//! Word values: `0` is unlocked; otherwise the low bits hold the owner's pid and
//! [`LOCK_WAITERS`] says that someone may be parked on the word. The protocol is Drepper's
//! three-state mutex with the owner folded into the word:
//!
//! - Acquire: `CAS 0 -> pid`. On contention, spin briefly, then set the waiters bit and park on
//!   the word (`FUTEX_WAIT`, shared). A waiter that wins after parking stores `pid | WAITERS`,
//!   because others may still be parked.
//! - Release: swap in `0`; if the old value had the waiters bit, wake one waiter.
//! - Dead owner: a waiter that has waited longer than the owner-check bound asks whether the
//!   owner's pid still exists (`kill(pid, 0)`; `ESRCH` means dead). If not, it takes the lock over
//!   with `CAS observed -> me | WAITERS`; the dead process cannot change the word, so exactly one
//!   waiter wins. The caller learns of the take-over and must repair the heap.
//! - Anything else in the word is tolerated: a waiter never waits past its timeout for a word a
//!   peer controls, and an owner that finds a foreign value on release just clears it.
//!
//! A pid identifies a process, so threads of one process share it. That is enough: a process
//! whose thread holds the lock is alive, and a heap operation never panics while holding it.
//! Known limit: a zombie owner counts as alive until its parent reaps it, and a recycled pid
//! looks alive; both only delay a waiter until its timeout.
//!
//! Under loom there is no futex syscall: `FutexSim` models one with a loom mutex and condition
//! variable (a waiter checks the word and sleeps under the mutex; a waker takes the mutex and
//! wakes exactly one sleeper, as `FUTEX_WAKE` with a count of one does), and "dead" means "any pid
//! other than this process's". The modelled park returns only on a wake-up, or at once when the
//! owner is dead (standing in for the real park's timeout slice, which only matters for dead
//! owners), so a missed wake-up shows up as a deadlock that loom reports. Blocking rather than
//! spinning also keeps models with two parked waiters small: two spinning waiters make loom
//! explore ever longer yield sequences.

use super::error::HeapLockError;
use super::layout::{LOCK_PID_MASK, LOCK_WAITERS};
use crate::sync::{AtomicU32, Backoff, Ordering};
#[cfg(loom)]
use crate::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long one futex wait may sleep before the waiter looks at the owner again.
#[cfg(not(loom))]
const PARK_SLICE: Duration = Duration::from_millis(5);

/// The number of short spins before a waiter parks.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 7;
#[cfg(loom)]
const SPIN_ROUNDS: u32 = 1;

/// How a handle waits for the lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct LockConfig {
    /// The value this process stores as owner.
    pub(super) pid: u32,
    /// Give up (with [`HeapLockError::Timeout`]) after waiting this long for a live owner.
    pub(super) timeout: Duration,
    /// Start checking whether the owner is alive after waiting this long.
    pub(super) owner_check_after: Duration,
}

/// How the lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Acquired {
    /// From an owner that released it (or nobody).
    Released,
    /// From an owner that died holding it; the protected state may be half-updated.
    TookOver {
        /// The dead owner's pid.
        dead_owner: u32,
    },
}

/// A view of the lock word (and, under loom, of the model of its futex wait queue).
#[derive(Debug, Clone, Copy)]
pub(super) struct LockWord<'a> {
    word: &'a AtomicU32,
    #[cfg(loom)]
    futex: &'a FutexSim,
}

/// A model of the kernel's futex wait queue for one word (loom only).
#[cfg(loom)]
#[derive(Debug)]
pub(super) struct FutexSim {
    queue: Mutex<()>,
    wakeups: Condvar,
}

#[cfg(loom)]
impl FutexSim {
    pub(super) fn new() -> Self {
        FutexSim {
            queue: Mutex::new(()),
            wakeups: Condvar::new(),
        }
    }
}

impl<'a> LockWord<'a> {
    /// Views `word` as a heap lock.
    #[cfg(not(loom))]
    pub(super) fn new(word: &'a AtomicU32) -> Self {
        LockWord { word }
    }

    /// Views `word` as a heap lock whose futex is modelled by `futex`.
    #[cfg(loom)]
    pub(super) fn new(word: &'a AtomicU32, futex: &'a FutexSim) -> Self {
        LockWord { word, futex }
    }

    /// The current raw word (for diagnostics and tests).
    pub(super) fn raw(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// Overwrites the word, as a crashed or hostile peer might.
    #[cfg(test)]
    pub(super) fn word_store_for_test(&self, value: u32) {
        self.word.store(value, Ordering::Relaxed);
    }

    /// Takes the lock, waiting as configured.
    #[inline]
    pub(super) fn lock(&self, cfg: &LockConfig) -> Result<Acquired, HeapLockError> {
        if self
            .word
            .compare_exchange(0, cfg.pid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Acquired::Released);
        }
        self.lock_contended(cfg)
    }

    #[cold]
    fn lock_contended(&self, cfg: &LockConfig) -> Result<Acquired, HeapLockError> {
        let mut backoff = Backoff::new();
        for _ in 0..SPIN_ROUNDS {
            backoff.snooze();
            if self.word.load(Ordering::Relaxed) == 0
                && self
                    .word
                    .compare_exchange(0, cfg.pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(Acquired::Released);
            }
        }
        let patience = Patience::start(cfg);
        let parked_value = cfg.pid | LOCK_WAITERS;
        loop {
            let seen = self.word.load(Ordering::Relaxed);
            if seen == 0 {
                if self
                    .word
                    .compare_exchange(0, parked_value, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(Acquired::Released);
                }
            } else {
                let with_waiters = seen | LOCK_WAITERS;
                let flagged = seen == with_waiters
                    || self
                        .word
                        .compare_exchange(seen, with_waiters, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok();
                if flagged {
                    self.park(with_waiters, cfg.pid, &patience)?;
                } else {
                    crate::sync::spin_loop();
                }
                let now = self.word.load(Ordering::Relaxed);
                if now != 0 && patience.owner_check_due() {
                    let owner = now & LOCK_PID_MASK;
                    if !owner_alive(owner, cfg.pid)
                        && self
                            .word
                            .compare_exchange(
                                now,
                                parked_value,
                                Ordering::Acquire,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        return Ok(Acquired::TookOver { dead_owner: owner });
                    }
                }
            }
            if patience.expired() {
                return Err(HeapLockError::Timeout {
                    owner: self.word.load(Ordering::Relaxed) & LOCK_PID_MASK,
                });
            }
        }
    }

    /// Releases the lock and wakes one parked waiter if there may be any.
    #[inline]
    pub(super) fn unlock(&self) {
        let old = self.word.swap(0, Ordering::Release);
        if old & LOCK_WAITERS != 0 {
            self.wake_one();
        }
    }

    #[cfg(not(loom))]
    fn park(&self, expected: u32, _me: u32, patience: &Patience) -> Result<(), HeapLockError> {
        super::futex::wait(self.word, expected, patience.park_slice()).map_err(HeapLockError::Os)
    }

    #[cfg(not(loom))]
    fn wake_one(&self) {
        super::futex::wake_one(self.word);
    }

    /// Modelled `FUTEX_WAIT`: returns at once if the word no longer holds `expected` (checked
    /// under the queue lock, as the kernel checks under its hash-bucket lock) or if the owner is
    /// dead; otherwise sleeps until a wake-up.
    #[cfg(loom)]
    fn park(&self, expected: u32, me: u32, _patience: &Patience) -> Result<(), HeapLockError> {
        if !owner_alive(expected & LOCK_PID_MASK, me) {
            return Ok(());
        }
        let queue = self.futex.queue.lock().expect("futex model lock");
        if self.word.load(Ordering::SeqCst) != expected {
            return Ok(());
        }
        drop(self.futex.wakeups.wait(queue).expect("futex model wait"));
        Ok(())
    }

    /// Modelled `FUTEX_WAKE` of one waiter.
    #[cfg(loom)]
    fn wake_one(&self) {
        let _queue = self.futex.queue.lock().expect("futex model lock");
        self.futex.wakeups.notify_one();
    }
}

/// True unless `pid` certainly names no process.
#[cfg(not(loom))]
fn owner_alive(pid: u32, me: u32) -> bool {
    if pid == me {
        return true;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    // pid 0 and negative pids would address process groups; no owner ever stores them.
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        // EPERM: it exists but belongs to someone else.
        Err(_) => true,
    }
}

/// Under loom only this process is alive.
#[cfg(loom)]
fn owner_alive(pid: u32, me: u32) -> bool {
    pid == me
}

/// How long a waiter has waited, and what it may do about it.
#[cfg(not(loom))]
struct Patience {
    start: std::time::Instant,
    timeout: Duration,
    owner_check_after: Duration,
}

#[cfg(not(loom))]
impl Patience {
    fn start(cfg: &LockConfig) -> Self {
        Patience {
            start: std::time::Instant::now(),
            timeout: cfg.timeout,
            owner_check_after: cfg.owner_check_after,
        }
    }

    fn owner_check_due(&self) -> bool {
        self.start.elapsed() >= self.owner_check_after
    }

    fn expired(&self) -> bool {
        self.start.elapsed() >= self.timeout
    }

    /// How long the next futex wait may sleep: one slice, but never past the moment the waiter
    /// must give up or look at the owner, so a short timeout (the server's, on a segment a
    /// client shares) is kept rather than rounded up to a whole slice.
    fn park_slice(&self) -> Duration {
        let elapsed = self.start.elapsed();
        let mut slice = PARK_SLICE.min(self.timeout.saturating_sub(elapsed));
        if let Some(until_check) = self.owner_check_after.checked_sub(elapsed) {
            slice = slice.min(until_check);
        }
        slice
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn patience(timeout: Duration, owner_check_after: Duration) -> Patience {
        Patience::start(&LockConfig {
            pid: 1,
            timeout,
            owner_check_after,
        })
    }

    #[test]
    fn a_park_never_outlasts_the_timeout_or_the_owner_check() {
        let short = patience(Duration::from_millis(2), Duration::from_secs(1));
        assert!(short.park_slice() <= Duration::from_millis(2));
        let check_soon = patience(Duration::from_secs(10), Duration::from_millis(1));
        assert!(check_soon.park_slice() <= Duration::from_millis(1));
        let patient = patience(Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(patient.park_slice(), PARK_SLICE);
        let expired = patience(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(expired.park_slice(), Duration::ZERO);
    }
}

/// Under loom time does not pass: the owner is checked after every park, and waiting never
/// times out (the model's branch limit catches waits that never end).
#[cfg(loom)]
struct Patience;

#[cfg(loom)]
impl Patience {
    fn start(_cfg: &LockConfig) -> Self {
        Patience
    }

    fn owner_check_due(&self) -> bool {
        true
    }

    fn expired(&self) -> bool {
        false
    }
}
