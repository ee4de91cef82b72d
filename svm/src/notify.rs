//! Parking and waking across processes: the shared "parked" word, the [`Notifier`] a side uses
//! to wake its peer, and the [`WaitPolicy`] a side uses when it has to wait.
//!
//! The protocol used by both ends of a [`queue`](crate::queue) (a segment's `ready` flag uses a
//! [`ParkWord`] too, but its creator always wakes, so it needs no handshake):
//!
//! 1. A side that is about to sleep stores 1 in its own [`ParkWord`], issues a heavy barrier
//!    (a `SeqCst` fence plus `membarrier(2)`, which makes every CPU running a registered
//!    process execute a full barrier) and re-checks the condition it waits for. If the
//!    condition already holds it clears the word and does not sleep.
//! 2. The other side changes the shared state (publishes an index), issues a light barrier (a
//!    compiler barrier once its process is registered for `membarrier`, a `SeqCst` fence
//!    before that or where `membarrier` is unavailable) and reads the peer's word. Only if it
//!    reads non-zero does it swap the word to 0 and call its [`Notifier`]. Back-to-back
//!    traffic therefore never makes a system call, nor pays a full fence.
//!
//! The barriers make the race safe: either the sleeper's re-check sees the new state, or the
//! waker sees the word set (the store-buffering litmus test, with a barrier on each side; the
//! asymmetric form is the use `membarrier(2)` documents). Loom checks the protocol with a
//! `SeqCst` fence on both sides.
//!
//! How the sleeper sleeps decides which notifier the waker must use: a side blocked inside a
//! queue call sleeps on the word itself (a futex), woken by [`FutexNotifier`]; a side that sleeps
//! in `epoll` uses `prepare_park`/`finish_park` on its queue end and is woken by
//! [`EventFdNotifier`] (or any other [`Notifier`]).

use std::fmt;
use std::time::Duration;

use nix::errno::Errno;
use vppinfra::sync::{AtomicU32, Ordering};

pub use crate::barrier::DISABLE_MEMBARRIER_ENV;
pub(crate) use crate::futex::WaitOutcome;

/// A 32-bit word, in shared memory, in which one side announces that it sleeps (non-zero) or
/// not (zero). It doubles as the futex word that side sleeps on.
///
/// Any value may be found here, since a peer can write it; values are only ever compared.
#[repr(C)]
pub struct ParkWord {
    word: AtomicU32,
    /// Under loom the futex is modelled by a mutex and a condition variable beside the word.
    #[cfg(loom)]
    model: crate::futex::FutexModel,
}

impl ParkWord {
    /// A word that says "not parked".
    pub fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            #[cfg(loom)]
            model: crate::futex::FutexModel::new(),
        }
    }

    /// True when the owner announced that it sleeps (or a peer wrote garbage).
    pub fn is_parked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Wakes every sleeper on this word. Used by [`FutexNotifier`]; cheap when nobody sleeps.
    pub fn wake_all(&self) {
        #[cfg(not(loom))]
        {
            // A failure here (EFAULT, EINVAL) would mean the word is not mapped or misaligned,
            // which the types rule out; there is nothing useful to report to the caller.
            let _ = crate::futex::wake_all(&self.word);
        }
        #[cfg(loom)]
        self.model.wake_all();
    }

    pub(crate) fn load(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }

    /// `Acquire` load counterpart of [`ParkWord::store_release`] (for flag words such as a
    /// segment's `ready`).
    pub(crate) fn load_acquire(&self) -> u32 {
        self.word.load(Ordering::Acquire)
    }

    /// Publishes `value` with `Release`: writes before it are visible to an `Acquire` reader.
    pub(crate) fn store_release(&self, value: u32) {
        self.word.store(value, Ordering::Release);
    }

    /// Sets the word to 1 ("about to sleep"). The caller must fence before re-checking.
    pub(crate) fn announce(&self) {
        self.word.store(1, Ordering::Relaxed);
    }

    /// Clears the word ("awake").
    pub(crate) fn clear(&self) {
        self.word.store(0, Ordering::Relaxed);
    }

    /// Waker side: if the owner announced it sleeps, claims the wake (swaps to 0) and reports
    /// whether a wake is due. The caller must have fenced after publishing its state change.
    pub(crate) fn take_parked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0 && self.word.swap(0, Ordering::Relaxed) != 0
    }

    /// Sleeps while the word holds `expected`, for at most `timeout`.
    pub(crate) fn wait(
        &self,
        expected: u32,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome, Errno> {
        #[cfg(not(loom))]
        {
            crate::futex::wait(&self.word, expected, timeout)
        }
        #[cfg(loom)]
        {
            let _ = timeout;
            Ok(self.model.wait(&self.word, expected))
        }
    }
}

impl Default for ParkWord {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ParkWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ParkWord").field(&self.load()).finish()
    }
}

/// How one side wakes its peer after it found the peer's [`ParkWord`] set (and cleared it).
///
/// `notify` is called only on that slow path, never for back-to-back traffic. It cannot fail
/// from the queue's point of view: the element is already committed when it runs, so an error
/// could only mislead the caller into sending twice. Implementations deal with their own errors.
pub trait Notifier: fmt::Debug + Send {
    /// Wakes the peer that parked on `parked`.
    fn notify(&self, parked: &ParkWord);
}

/// Wakes a peer that sleeps on the futex of its [`ParkWord`] (the default; used by the blocking
/// queue calls).
#[derive(Debug, Default, Clone, Copy)]
pub struct FutexNotifier;

impl Notifier for FutexNotifier {
    fn notify(&self, parked: &ParkWord) {
        parked.wake_all();
    }
}

/// Wakes a peer that sleeps in `epoll`/`poll` on an eventfd, by adding 1 to the eventfd.
///
/// The peer parks with `prepare_park` before it sleeps and calls `finish_park` (and drains the
/// eventfd) when it wakes.
#[cfg(not(loom))]
#[derive(Debug)]
pub struct EventFdNotifier {
    fd: std::os::fd::OwnedFd,
}

#[cfg(not(loom))]
impl EventFdNotifier {
    /// Signals `fd` (an eventfd, usually received from the peer) on every wake.
    pub fn new(fd: std::os::fd::OwnedFd) -> Self {
        Self { fd }
    }

    /// The eventfd.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }
}

#[cfg(not(loom))]
impl Notifier for EventFdNotifier {
    fn notify(&self, _parked: &ParkWord) {
        // EAGAIN means the counter is already near its maximum, so the peer is due to wake
        // anyway; EBADF would be a caller bug. Neither is worth failing a committed send.
        let _ = nix::unistd::write(&self.fd, &1u64.to_ne_bytes());
    }
}

/// Registers this process for the light (compiler-only) barrier on the queue's fast path, if
/// not done yet, and waits up to `timeout` for the registration; returns whether the fast path
/// is in use. Attaching a queue end starts the registration in the background anyway (it can
/// take milliseconds); call this at start-up to have the fast path from the first message on.
#[cfg(not(loom))]
pub fn enable_light_barrier(timeout: Duration) -> bool {
    crate::barrier::prepare();
    crate::barrier::wait_registered(timeout)
}

/// True when a side that parks can rely on being woken: `membarrier(2)` works in this process,
/// so the light barrier of the peer's fast path is covered (see the crate's `barrier` module).
/// When false, park only in short naps (the blocking queue calls do so by themselves).
#[cfg(not(loom))]
pub fn reliable_wakeups() -> bool {
    static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBE.get_or_init(crate::barrier::heavy)
}

/// How a side waits when its queue is empty (consumer) or full (producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitPolicy {
    /// Poll the peer's index forever (until the deadline); never sleep. The lowest latency, at
    /// the price of a busy core. A peer that only ever polls needs no notifier.
    Poll,
    /// Poll up to `spins` times, then park on the futex until woken or the deadline passes.
    /// `spins: 0` parks at once. A side that has just woken its peer polls up to 8 times longer
    /// before its next park, because the peer needs a wake-up latency to answer; without that,
    /// two sides that fell asleep once could keep taking turns sleeping.
    SpinThenPark {
        /// Polls before parking.
        spins: u32,
    },
}

impl WaitPolicy {
    /// Polls before parking by default: a few microseconds, more than a cross-core round trip,
    /// so back-to-back traffic never sleeps.
    pub const DEFAULT_SPINS: u32 = 2000;
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self::SpinThenPark {
            spins: Self::DEFAULT_SPINS,
        }
    }
}
