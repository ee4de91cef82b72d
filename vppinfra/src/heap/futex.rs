//! The two futex operations the heap lock needs, on a word that other processes map too.
//!
//! # Safety
//!
//! The only unsafe code is the `futex(2)` system call. Its address argument always comes from a
//! live `&AtomicU32`, so it is a valid, aligned 32-bit word for the duration of the call; the
//! timeout pointer refers to a local `timespec`. The operations are the shared (not
//! `FUTEX_PRIVATE_FLAG`) variants, because waiters and wakers live in different processes; for a
//! `MAP_SHARED` mapping the kernel keys the wait queue by the underlying file page, so both sides
//! meet even though they map the word at different addresses.
#![allow(unsafe_code)]

use crate::sync::AtomicU32;
use nix::errno::Errno;
use std::time::Duration;

/// Sleeps while `*word == expected`, for at most `timeout`.
///
/// Returns `Ok` on a wake-up, a timeout, a signal, or when the word no longer holds `expected`;
/// callers re-check the word in every case.
///
/// # References
///
/// `futex(2)`, `FUTEX_WAIT`.
pub(super) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) -> Result<(), Errno> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: futex(2): "uaddr points to the futex word ... a 4-byte aligned integer"; it comes
    // from a live &AtomicU32. For FUTEX_WAIT, "timeout ... points to a timespec structure that
    // specifies a relative timeout"; `ts` outlives the call. uaddr2 and val3 are ignored.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == -1 {
        match Errno::last() {
            Errno::EAGAIN | Errno::ETIMEDOUT | Errno::EINTR => Ok(()),
            e => Err(e),
        }
    } else {
        Ok(())
    }
}

/// Wakes at most one waiter sleeping on `word`.
///
/// # References
///
/// `futex(2)`, `FUTEX_WAKE`.
pub(super) fn wake_one(word: &AtomicU32) {
    // SAFETY: futex(2): FUTEX_WAKE only uses uaddr (a live, aligned &AtomicU32) and val (the
    // number of waiters to wake); timeout, uaddr2 and val3 are ignored.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1i32,
            core::ptr::null::<libc::timespec>(),
            core::ptr::null::<u32>(),
            0u32,
        )
    };
    // A failed wake cannot be acted on: waiters sleep with a timeout and re-check the word, so
    // the worst case is a delayed hand-over.
    let _ = rc;
}
