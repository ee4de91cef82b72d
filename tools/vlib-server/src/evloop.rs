//! The event loop's building blocks: an epoll poller keyed by tokens, and timers.
//!
//! The server owns one of each and runs them on one thread, like VPP's API process. Other event
//! sources (shared-memory doorbells, pidfds, a shutdown eventfd) plug in as more fds with their
//! own tokens.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// What a registered fd is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Readability (and hang-up/error, always reported).
    Read,
    /// Readability and writability.
    ReadWrite,
    /// Writability only (input paused until the output drains).
    Write,
}

impl Interest {
    fn flags(self) -> EpollFlags {
        let base = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        match self {
            Self::Read => base,
            Self::ReadWrite => base | EpollFlags::EPOLLOUT,
            Self::Write => EpollFlags::EPOLLOUT,
        }
    }
}

/// Readiness reported for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Data (or EOF) can be read.
    pub readable: bool,
    /// The send buffer has room.
    pub writable: bool,
    /// The peer hung up or the fd is in error.
    pub closed: bool,
}

/// Level-triggered epoll with `u64` tokens.
#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl Poller {
    /// A poller reporting up to `batch` events per wait.
    pub fn new(batch: usize) -> Result<Self, Errno> {
        Ok(Self {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); batch.max(1)],
        })
    }

    /// Starts watching `fd` under `token`.
    pub fn add(&self, fd: impl AsFd, token: u64, interest: Interest) -> Result<(), Errno> {
        self.epoll.add(fd, EpollEvent::new(interest.flags(), token))
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> Result<(), Errno> {
        let mut ev = EpollEvent::new(interest.flags(), token);
        self.epoll.modify(fd, &mut ev)
    }

    /// Stops watching `fd` (before it is closed).
    pub fn delete(&self, fd: BorrowedFd<'_>) -> Result<(), Errno> {
        self.epoll.delete(fd)
    }

    /// Waits up to `timeout` (`None` = forever, zero = poll) and calls `f` for each ready token.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut f: impl FnMut(u64, Readiness),
    ) -> Result<usize, Errno> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(d) => {
                // Round up so a timer is never woken for early and busy-looped on.
                let ms = d.as_micros().div_ceil(1000).min(i32::MAX as u128 / 2) as u32;
                EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE)
            }
        };
        let n = match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e),
        };
        for ev in &self.events[..n] {
            let fl = ev.events();
            f(
                ev.data(),
                Readiness {
                    readable: fl.intersects(EpollFlags::EPOLLIN),
                    writable: fl.intersects(EpollFlags::EPOLLOUT),
                    closed: fl.intersects(
                        EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP,
                    ),
                },
            );
        }
        Ok(n)
    }
}

/// Timers keyed by a caller-chosen value; due timers are popped in deadline order.
#[derive(Debug)]
pub struct Timers<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, u64, K)>>,
    seq: u64,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// Schedules `key` to fire at `at`.
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, key)));
    }

    /// Time until the earliest timer (zero if one is due), or `None` if there are none.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((at, _, _))| at.saturating_duration_since(now))
    }

    /// Pops one timer that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => self.heap.pop().map(|Reverse((_, _, k))| k),
            _ => None,
        }
    }

    /// Number of scheduled timers.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn poller_reports_readable_and_hangup_by_token() {
        let mut p = Poller::new(8).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        p.add(&b, 42, Interest::Read).unwrap();
        let mut seen = Vec::new();
        p.wait(Some(Duration::ZERO), |t, r| seen.push((t, r)))
            .unwrap();
        assert!(seen.is_empty(), "nothing ready yet");
        a.write_all(b"x").unwrap();
        p.wait(Some(Duration::from_secs(5)), |t, r| seen.push((t, r)))
            .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, 42);
        assert!(seen[0].1.readable && !seen[0].1.closed);
        drop(a);
        seen.clear();
        p.wait(Some(Duration::from_secs(5)), |t, r| seen.push((t, r)))
            .unwrap();
        assert!(seen[0].1.closed);
        p.delete(b.as_fd()).unwrap();
    }

    #[test]
    fn poller_reports_writable_when_asked() {
        let mut p = Poller::new(8).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        p.add(&a, 7, Interest::Read).unwrap();
        let mut n = p.wait(Some(Duration::ZERO), |_, _| {}).unwrap();
        assert_eq!(n, 0);
        p.modify(&a, 7, Interest::ReadWrite).unwrap();
        n = p
            .wait(Some(Duration::ZERO), |t, r| {
                assert_eq!(t, 7);
                assert!(r.writable);
            })
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn timers_fire_in_deadline_order() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.schedule(now + Duration::from_millis(20), 'b');
        t.schedule(now + Duration::from_millis(10), 'a');
        t.schedule(now + Duration::from_millis(30), 'c');
        assert_eq!(t.next_timeout(now), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(t.pop_due(later), Some('a'));
        assert_eq!(t.pop_due(later), Some('b'));
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
    }
}
