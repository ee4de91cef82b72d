//! Process-shared futex wait and wake on a 32-bit word that may live in shared memory.
//!
//! # Safety
//!
//! The only unsafe operation is the raw `futex(2)` system call, which has no wrapper in nix.
//! Each call passes the address of an `AtomicU32` the caller holds a reference to, so the address
//! is valid, 4-byte aligned and mapped for the duration of the call. `FUTEX_WAIT` only reads the
//! word; `FUTEX_WAKE` only uses its address as a key. The optional timeout is a `timespec` on the
//! caller's stack that outlives the call. The private flag is deliberately not used: the word may
//! be mapped in several processes, and only the shared (inode-keyed) form wakes across them.
//!
//! # References
//!
//! `futex(2)`: "FUTEX_WAIT ... tests that the value at the futex word pointed to by the address
//! uaddr still contains the expected value val, and if so, then sleeps waiting for a FUTEX_WAKE
//! operation on the futex word."
#![allow(unsafe_code)]

#[cfg(not(loom))]
use std::time::Duration;

#[cfg(not(loom))]
use nix::errno::Errno;
use vppinfra::sync::AtomicU32;

/// How a [`wait`] ended. Every outcome means "look at the shared state again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(loom, allow(dead_code))] // Timeouts and signals are not modelled.
pub(crate) enum WaitOutcome {
    /// A `FUTEX_WAKE` (or a spurious wake-up) ended the sleep.
    Woken,
    /// The word no longer held the expected value, so the call did not sleep.
    ValueChanged,
    /// The timeout passed.
    TimedOut,
    /// A signal interrupted the sleep.
    Interrupted,
}

#[cfg(not(loom))]
/// Sleeps while `*word == expected`, for at most `timeout` (forever when `None`).
pub(crate) fn wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<Duration>,
) -> Result<WaitOutcome, Errno> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex(2) FUTEX_WAIT reads the aligned u32 at `word.as_ptr()`, which `word` keeps
    // valid for the call; `ts_ptr` is null or points at `ts`, alive on this stack frame. The
    // unused uaddr2/val3 arguments are null and zero as the man page asks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return Ok(WaitOutcome::Woken);
    }
    match Errno::last() {
        Errno::EAGAIN => Ok(WaitOutcome::ValueChanged),
        Errno::ETIMEDOUT => Ok(WaitOutcome::TimedOut),
        Errno::EINTR => Ok(WaitOutcome::Interrupted),
        e => Err(e),
    }
}

#[cfg(not(loom))]
/// Wakes every process or thread sleeping in [`wait`] on `word`; returns how many woke.
pub(crate) fn wake_all(word: &AtomicU32) -> Result<usize, Errno> {
    // SAFETY: futex(2) FUTEX_WAKE uses the aligned address of `word`, valid for the call, only as
    // a key; it neither reads nor writes memory. The timeout/uaddr2/val3 arguments are unused.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc as usize)
    }
}

/// The futex as loom sees it: a mutex and a condition variable beside the word.
///
/// `wait` checks the word under the mutex and sleeps on the condition variable; `wake_all` takes
/// the mutex and notifies. Because a waker changes the word before it takes the mutex, a waiter
/// either sees the new value or is already asleep when the notification comes, as with the real
/// futex's hash-bucket lock. Timeouts are not modelled: a lost wake-up shows up as a deadlock,
/// which loom reports.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct FutexModel {
    lock: vppinfra::sync::Mutex<()>,
    cond: vppinfra::sync::Condvar,
}

#[cfg(loom)]
impl FutexModel {
    pub(crate) fn new() -> Self {
        Self {
            lock: vppinfra::sync::Mutex::new(()),
            cond: vppinfra::sync::Condvar::new(),
        }
    }

    pub(crate) fn wait(&self, word: &AtomicU32, expected: u32) -> WaitOutcome {
        let guard = self.lock.lock().unwrap();
        if word.load(vppinfra::sync::Ordering::SeqCst) != expected {
            return WaitOutcome::ValueChanged;
        }
        drop(self.cond.wait(guard).unwrap());
        WaitOutcome::Woken
    }

    pub(crate) fn wake_all(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use vppinfra::sync::{Arc, Ordering, thread};

    #[test]
    fn wait_returns_at_once_when_the_value_differs() {
        let word = AtomicU32::new(5);
        assert_eq!(wait(&word, 4, None), Ok(WaitOutcome::ValueChanged));
    }

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(1);
        let outcome = wait(&word, 1, Some(Duration::from_millis(5))).unwrap();
        assert!(matches!(
            outcome,
            WaitOutcome::TimedOut | WaitOutcome::Interrupted
        ));
    }

    #[test]
    fn wake_ends_a_wait() {
        let word = Arc::new(AtomicU32::new(1));
        let sleeper = {
            let word = Arc::clone(&word);
            thread::spawn(move || wait(&word, 1, None))
        };
        // Keep waking until the call reports that it woke a sleeper: that proves both that the
        // sleeper really slept and that the wake reached it.
        let woke =
            vppinfra::testing::wait_until(Duration::from_secs(5), || wake_all(&word) == Ok(1));
        assert!(woke, "no sleeper was ever woken");
        assert_eq!(sleeper.join().unwrap(), Ok(WaitOutcome::Woken));
        assert_eq!(word.load(Ordering::Relaxed), 1);
    }
}
