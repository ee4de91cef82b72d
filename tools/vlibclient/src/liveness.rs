//! How a connection attached by name (no socket) learns that the server has gone, and how it
//! keeps the server's departure from killing the program.
//!
//! The named segment's doorbell is a FIFO beside the segment (`<segment>.doorbell`), and only
//! the server holds its read end (the server opens it read-write; clients open it write-only).
//! When the server dies the kernel closes that end, and from then on:
//!
//! - `poll` on a write-only descriptor of the FIFO reports `POLLERR`. [`DoorbellWatch`] keeps
//!   one such descriptor (it never writes to it) and is the named transport's equivalent of the
//!   socket's EOF;
//! - a write to the FIFO fails with `EPIPE` and raises `SIGPIPE`. vlibmemory's sender writes to
//!   the doorbell whenever it finds the server asleep, so the first message sent after the
//!   server died raises `SIGPIPE`, whose default action kills the process. Rust programs and
//!   Python ignore `SIGPIPE`, C programs usually do not. [`SigpipeShield`] blocks `SIGPIPE` in
//!   the sending thread around each send and takes back the one the send raised, but only when
//!   the process has left `SIGPIPE` at its default action (a handler or `SIG_IGN` already copes).

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::PollFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use vlibmemory::server::{DOORBELL_SUFFIX, named_segment_name};

/// A write-only descriptor of the named segment's doorbell FIFO, used only to ask whether the
/// server still holds the read end.
#[derive(Debug)]
pub(crate) struct DoorbellWatch {
    fd: OwnedFd,
}

impl DoorbellWatch {
    /// Opens the doorbell of the named segment under `prefix`. `ENXIO`: nobody holds the read
    /// end, so the server is gone.
    pub(crate) fn open(prefix: Option<&str>) -> Result<Self, Errno> {
        let name = named_segment_name(prefix).map_err(|_| Errno::EINVAL)?;
        let path = format!("{}{DOORBELL_SUFFIX}", name.path().display());
        let fd = nix::fcntl::open(
            path.as_str(),
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    /// The descriptor, for a `poll` with `POLLOUT` whose `POLLERR` means the server is gone.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// True once the server no longer holds the FIFO's read end.
    #[cfg(test)]
    pub(crate) fn server_gone(&self) -> bool {
        use nix::poll::{PollFd, PollTimeout};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLOUT)];
        match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => gone_in(fds[0].revents()),
            Err(_) => false,
        }
    }
}

/// Whether `revents` of a `POLLOUT` poll on the doorbell say the read end is closed.
pub(crate) fn gone_in(revents: Option<PollFlags>) -> bool {
    revents.is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// Keeps the `SIGPIPE` a doorbell write raises from reaching a process that left `SIGPIPE` at
/// its default action.
#[derive(Debug)]
pub(crate) struct SigpipeShield {
    /// Reads (and so discards) a `SIGPIPE` pending for the calling thread while it is blocked.
    taker: SignalFd,
    only_sigpipe: SigSet,
}

impl SigpipeShield {
    /// A shield if this process would die of `SIGPIPE` (default action), else `None`.
    pub(crate) fn if_needed() -> Option<Self> {
        if !sigpipe_is_default() {
            return None;
        }
        Self::new()
    }

    /// A shield whatever the process does with `SIGPIPE` (`None`: no signalfd).
    fn new() -> Option<Self> {
        let mut only_sigpipe = SigSet::empty();
        only_sigpipe.add(Signal::SIGPIPE);
        let taker = SignalFd::with_flags(
            &only_sigpipe,
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .ok()?;
        Some(Self {
            taker,
            only_sigpipe,
        })
    }

    /// Runs `f` with `SIGPIPE` blocked in this thread, then discards a `SIGPIPE` that `f`
    /// raised and restores the thread's mask.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let Ok(old) = self.only_sigpipe.thread_swap_mask(SigmaskHow::SIG_BLOCK) else {
            return f();
        };
        let r = f();
        if !old.contains(Signal::SIGPIPE) {
            // Blocked by us: a SIGPIPE now pending is the one our write raised. (If the thread
            // had it blocked already, the program manages SIGPIPE itself; leave it alone.)
            while let Ok(Some(_)) = self.taker.read_signal() {}
            let _ = old.thread_set_mask();
        }
        r
    }
}

/// True when `SIGPIPE` is neither ignored nor caught in this process (`/proc/self/status`,
/// `SigIgn` and `SigCgt`); true as well when that cannot be read, to stay on the safe side.
fn sigpipe_is_default() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let bit = 1u64 << (Signal::SIGPIPE as u32 - 1);
    (mask("SigIgn:") | mask("SigCgt:")) & bit == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_test_binaries_ignore_sigpipe_so_no_shield_is_needed() {
        // The Rust runtime sets SIGPIPE to SIG_IGN before main; the check must see that.
        assert!(!sigpipe_is_default());
        assert!(SigpipeShield::if_needed().is_none());
    }

    #[test]
    fn a_missing_doorbell_is_an_error_not_a_hang() {
        let e = DoorbellWatch::open(Some(&format!("vlc-nodoorbell-{}", std::process::id())))
            .unwrap_err();
        assert_eq!(e, Errno::ENOENT);
    }

    #[test]
    fn a_fifo_without_reader_reads_as_gone_and_with_one_as_alive() {
        let prefix = format!("vlc-watch-{}", std::process::id());
        let name = named_segment_name(Some(&prefix)).unwrap();
        let path = format!("{}{DOORBELL_SUFFIX}", name.path().display());
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(path.as_str(), Mode::from_bits_truncate(0o600)).unwrap();
        let reader = nix::fcntl::open(
            path.as_str(),
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let watch = DoorbellWatch::open(Some(&prefix)).unwrap();
        assert!(!watch.server_gone());
        drop(reader);
        assert!(watch.server_gone());
        // Nobody holds the read end: opening fails at once.
        assert_eq!(
            DoorbellWatch::open(Some(&prefix)).unwrap_err(),
            Errno::ENXIO
        );
        std::fs::remove_file(&path).unwrap();
    }
}
