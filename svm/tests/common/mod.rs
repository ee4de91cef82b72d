//! Helpers shared by the multi-process tests: a parent/child Unix-socket link with `SCM_RIGHTS`
//! (through `vppinfra::socket`), reads with deadlines, numbered elements and a small PRNG.
#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(unreachable_pub)] // `pub` so the test crates that include this module can use it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use vppinfra::socket::{self, ListenOptions, Listener, SocketAcceptError};
use vppinfra::testing::{self, TempDir, TestChild};

/// How long any single step of a multi-process test may take before the test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// A listening socket in a private temporary directory.
pub struct Rendezvous {
    pub listener: Listener,
    _dir: TempDir,
}

impl Rendezvous {
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let listener = socket::listen(
            dir.join("sock"),
            &ListenOptions::new().nonblocking(true).mode(0o600),
        )
        .expect("listen");
        Self {
            listener,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.listener.path()
    }

    /// Starts `role` of `test`, passing the socket path and `arg`, and accepts its connection.
    pub fn spawn(&self, test: &str, role: &str, arg: &str) -> (TestChild, OwnedFd) {
        self.spawn_with_env(test, role, arg, &[])
    }

    /// Like [`Rendezvous::spawn`], with extra environment variables for the child.
    pub fn spawn_with_env(
        &self,
        test: &str,
        role: &str,
        arg: &str,
        env: &[(&str, &str)],
    ) -> (TestChild, OwnedFd) {
        let mut builder =
            testing::spawn_self(test, role, &format!("{}\n{arg}", self.path().display()));
        for (key, value) in env {
            builder.command().env(key, value);
        }
        let mut child = builder.spawn();
        let conn = self.accept(&mut child);
        (child, conn)
    }

    /// Accepts the connection of `child`, failing if it exits first or takes too long.
    pub fn accept(&self, child: &mut TestChild) -> OwnedFd {
        let start = Instant::now();
        loop {
            match self.listener.accept_with(false) {
                Ok(fd) => return fd,
                Err(SocketAcceptError::WouldBlock) => {}
                Err(e) => panic!("accept: {e}"),
            }
            if let Some(status) = child.try_wait() {
                panic!("child exited before connecting: {status}");
            }
            assert!(start.elapsed() < STEP, "child did not connect");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Child side: connects to the parent; returns the link and the parent's argument.
pub fn child_connect() -> (OwnedFd, String) {
    let arg = testing::child_arg();
    let (path, rest) = arg.split_once('\n').expect("socket path and argument");
    let conn = socket::connect(path).expect("connect to parent");
    (conn, rest.to_owned())
}

/// Sends `bytes` with `fds` attached.
pub fn send(conn: impl AsFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    socket::send_with_fds(conn, bytes, fds).expect("send_with_fds");
}

/// Waits (bounded by [`STEP`]) for one message; returns its bytes and descriptors.
pub fn recv(conn: impl AsFd, max_fds: usize) -> (Vec<u8>, Vec<OwnedFd>) {
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, STEP.as_millis() as u16).expect("poll");
    assert_eq!(n, 1, "no message from the peer within {STEP:?}");
    let mut buf = vec![0u8; 4096];
    let (len, fds) = socket::recv_with_fds(conn, &mut buf, max_fds).expect("recv_with_fds");
    buf.truncate(len);
    (buf, fds)
}

/// An element of `size` bytes carrying `seq` in every 8-byte word, so that a torn (partly
/// written) element is detectable.
pub fn numbered(seq: u64, size: usize) -> Vec<u8> {
    let mut e = vec![0u8; size];
    for (i, w) in e.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(&(seq ^ (i as u64).rotate_left(40)).to_ne_bytes());
    }
    e
}

/// The sequence number of an element made by [`numbered`], or `None` if it is torn.
pub fn sequence_of(e: &[u8]) -> Option<u64> {
    let word = |i: usize| u64::from_ne_bytes(e[i * 8..i * 8 + 8].try_into().unwrap());
    let seq = word(0);
    (1..e.len() / 8)
        .all(|i| word(i) == seq ^ (i as u64).rotate_left(40))
        .then_some(seq)
}

/// xorshift64*: reproducible randomness without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A seed that differs per run; printed by callers so a failure can be replayed.
    pub fn seed_from_time() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
