//! The store-load barrier of the park/wake handshake, made asymmetric with `membarrier(2)`.
//!
//! The handshake (see [`crate::notify`]) is a Dekker pattern: the waker stores an index and then
//! loads the peer's parked word; the sleeper stores its parked word and then loads the index.
//! Each side needs a full (store-load) barrier between its store and its load. The waker runs on
//! every send and receive, the sleeper only when it is about to sleep, so the cost is moved to
//! the sleeper: with `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, the sleeper makes the kernel run a full
//! barrier on every CPU that currently runs a process registered for it, and a registered waker
//! then needs only a compiler barrier. (A full fence on the waker's path costs a cross-core
//! round trip per operation, because it waits for the stores of the element and the index to
//! reach the other core.)
//!
//! Why it is correct: the kernel barrier happens at some point P of the waker's execution. If
//! the waker's load of the parked word comes after P, it sees the sleeper's store (made before
//! the system call). Otherwise its store of the index, which precedes that load in program order,
//! precedes P too and is visible when the system call returns, so the sleeper's re-check sees it.
//! This is the use `membarrier(2)` documents.
//!
//! Safety net: a process uses the light barrier only once its own registration succeeded
//! (registration runs in the background when the first queue end is attached, because it can
//! take milliseconds), and a full fence otherwise, so the protocol holds whatever the peer did. A sleeper whose
//! `membarrier` call fails cannot know whether its waker relies on it, so it sleeps in short
//! naps and re-checks ([`heavy`] returns `false`).
//!
//! Under loom both sides use a `SeqCst` fence: loom checks the symmetric protocol, and the
//! argument above carries it over to the asymmetric one.
//!
//! # Safety
//!
//! The only unsafe operation is the raw `membarrier(2)` system call (no nix wrapper). It takes
//! a command and flags (integers), no pointers, so it cannot touch this process's memory.
#![allow(unsafe_code)]

use vppinfra::sync::{Ordering, fence};

/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED` from `<linux/membarrier.h>`.
#[cfg(not(loom))]
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
/// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED` from `<linux/membarrier.h>`.
#[cfg(not(loom))]
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

#[cfg(not(loom))]
fn membarrier(cmd: libc::c_long) -> bool {
    // SAFETY: membarrier(2) takes a command and flags and no pointers; it cannot affect this
    // process's memory, only order it. Failure (ENOSYS, EINVAL, EPERM under seccomp) is reported
    // through the return value.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) };
    rc == 0
}

/// Set (to anything) to make this process use full fences instead of the light barrier, for
/// testing the fallback and for systems where `membarrier` misbehaves.
pub const DISABLE_MEMBARRIER_ENV: &str = "SVM_DISABLE_MEMBARRIER";

/// Registration state of this process: not started, in progress, registered, unavailable.
#[cfg(not(loom))]
static STATE: vppinfra::sync::AtomicU8 = vppinfra::sync::AtomicU8::new(UNREGISTERED);
#[cfg(not(loom))]
const UNREGISTERED: u8 = 0;
#[cfg(not(loom))]
const REGISTERING: u8 = 1;
#[cfg(not(loom))]
const REGISTERED: u8 = 2;
#[cfg(not(loom))]
const UNAVAILABLE: u8 = 3;

/// True once this process is registered for global expedited membarriers, so that a sleeper's
/// [`heavy`] barrier reaches its threads.
///
/// `Acquire`: a waker that sees `REGISTERED` reads the peer's parked word only after the
/// registration completed. A sleeper whose barrier began before that did not reach us, but its
/// parked word was already visible when the barrier began, so such a read sees it.
#[cfg(not(loom))]
pub(crate) fn light_enabled() -> bool {
    STATE.load(Ordering::Acquire) == REGISTERED
}

/// Starts registering this process for the light barrier, once, in the background.
/// Registering a multi-threaded process waits for an RCU grace period (milliseconds); until it
/// is done, wakers use full fences, which is always correct.
pub(crate) fn prepare() {
    #[cfg(not(loom))]
    {
        if STATE
            .compare_exchange(
                UNREGISTERED,
                REGISTERING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        if std::env::var_os(DISABLE_MEMBARRIER_ENV).is_some() {
            STATE.store(UNAVAILABLE, Ordering::Release);
            return;
        }
        let register = || {
            let state = if membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) {
                REGISTERED
            } else {
                UNAVAILABLE
            };
            STATE.store(state, Ordering::Release);
        };
        let spawned = std::thread::Builder::new()
            .name("svm-membarrier".into())
            .spawn(register);
        if spawned.is_err() {
            register();
        }
    }
}

/// Waits (up to `timeout`) for a registration started by [`prepare`] to finish; true if this
/// process now uses the light barrier.
#[cfg(not(loom))]
pub(crate) fn wait_registered(timeout: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while STATE.load(Ordering::Acquire) == REGISTERING && start.elapsed() < timeout {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    light_enabled()
}

/// Waker side: between publishing an index and reading the peer's parked word.
#[inline]
pub(crate) fn light() {
    #[cfg(not(loom))]
    {
        if light_enabled() {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            return;
        }
    }
    fence(Ordering::SeqCst);
}

/// Sleeper side: between announcing it sleeps and re-checking the index. Returns false if the
/// barrier could not reach other processes, in which case the caller must not sleep for long.
pub(crate) fn heavy() -> bool {
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    {
        // Needed even when this process's own wakers use full fences: the peer's may not.
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
    }
    #[cfg(loom)]
    {
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn membarrier_is_available_here() {
        // The kernels this project targets (>= 4.16) have it; if this fails, the queue still
        // works, only with a full fence per operation.
        prepare();
        assert_eq!(
            wait_registered(std::time::Duration::from_secs(10)),
            std::env::var_os(DISABLE_MEMBARRIER_ENV).is_none()
        );
        assert!(heavy());
    }
}
