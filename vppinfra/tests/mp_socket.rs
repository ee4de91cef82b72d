//! Multi-process tests of `vppinfra::socket`: descriptors and credentials across real processes.
//!
//! Each test re-runs this binary as a child (see `vppinfra::testing`). Parents wait for
//! connections, data and children with deadlines, so a broken child fails the test instead of
//! hanging it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::unistd::{Gid, Uid, getpid, getppid, pipe2, read, write};
use vppinfra::socket::{
    self, ConnectOptions, FdRecvError, ListenOptions, Listener, SCM_MAX_FD, SocketConnectError,
};
use vppinfra::testing::{self, TempDir};

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `fd` is readable (or at EOF); false on timeout.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => return n > 0,
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Accepts one connection within the deadline.
fn accept_within(listener: &Listener, timeout: Duration) -> OwnedFd {
    assert!(
        wait_readable(listener.as_fd(), timeout),
        "no connection within {timeout:?}"
    );
    listener.accept().expect("accept")
}

/// Reads until EOF within the deadline.
fn read_to_eof(fd: BorrowedFd<'_>, timeout: Duration) -> Vec<u8> {
    let end = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            wait_readable(fd, left),
            "no EOF within {timeout:?}; got {out:?}"
        );
        match read(fd, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
    FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The parent listens; the child connects and receives the write end of a pipe over
/// `SCM_RIGHTS`, writes through it, and the parent reads the message from the read end. The
/// parent sees the child's pid in the peer credentials, and the child sees the parent's.
#[test]
fn mp_socket_parent_passes_fd_to_child() {
    const NAME: &str = "mp_socket_parent_passes_fd_to_child";
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "receiver");
            let conn = socket::connect(testing::child_arg()).expect("connect");
            let server = socket::peer_credentials(&conn).unwrap();
            assert_eq!(server.pid, getppid().as_raw(), "server credentials");
            assert!(
                wait_readable(conn.as_fd(), DEADLINE),
                "no message from parent"
            );
            let mut buf = [0u8; 16];
            let (n, fds) = socket::recv_with_fds(&conn, &mut buf, 1).expect("recv_with_fds");
            assert_eq!(&buf[..n], b"pipe");
            assert_eq!(fds.len(), 1);
            assert!(
                is_cloexec(fds[0].as_fd()),
                "received fd must be close-on-exec"
            );
            let msg = format!("hello from child {}", getpid());
            write(&fds[0], msg.as_bytes()).unwrap();
        });
    }
    let dir = TempDir::new(NAME);
    let path = dir.join("api.sock");
    let listener = socket::listen(&path, &ListenOptions::new().nonblocking(true)).unwrap();
    let mut child = testing::spawn_self(NAME, "receiver", path.to_str().unwrap()).spawn();
    let conn = accept_within(&listener, DEADLINE);
    let cred = socket::peer_credentials(&conn).unwrap();
    assert_eq!(cred.pid, child.pid() as i32, "peer pid is the child's");
    assert_eq!(cred.uid, nix::unistd::geteuid().as_raw());

    let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
    socket::send_with_fds(&conn, b"pipe", &[w.as_fd()]).unwrap();
    drop(w); // Only the child's copy remains, so EOF follows its exit.
    let got = read_to_eof(r.as_fd(), DEADLINE);
    assert_eq!(
        String::from_utf8(got).unwrap(),
        format!("hello from child {}", child.pid())
    );
    child.expect_success(DEADLINE);
}

/// The reverse direction: the child sends a memfd and a pipe's write end in one message; the
/// parent reads the memfd's contents and answers through the pipe.
#[test]
fn mp_socket_child_passes_fds_to_parent() {
    const NAME: &str = "mp_socket_child_passes_fds_to_parent";
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "sender");
            let conn = socket::connect(testing::child_arg()).expect("connect");
            let memfd = memfd_create(c"mp-socket", MFdFlags::MFD_CLOEXEC).unwrap();
            write(&memfd, b"shared from child").unwrap();
            let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
            let sent =
                socket::send_with_fds(&conn, b"memfd+pipe", &[memfd.as_fd(), w.as_fd()]).unwrap();
            assert_eq!(sent, 10);
            drop(w);
            let answer = read_to_eof(r.as_fd(), DEADLINE);
            assert_eq!(answer, b"ack from parent");
        });
    }
    let dir = TempDir::new(NAME);
    let path = dir.join("api.sock");
    let listener = socket::listen(&path, &ListenOptions::new().nonblocking(true)).unwrap();
    let mut child = testing::spawn_self(NAME, "sender", path.to_str().unwrap()).spawn();
    let conn = accept_within(&listener, DEADLINE);
    assert_eq!(
        socket::peer_credentials(&conn).unwrap().pid,
        child.pid() as i32
    );
    assert!(
        wait_readable(conn.as_fd(), DEADLINE),
        "no message from child"
    );
    let mut buf = [0u8; 32];
    let (n, mut fds) = socket::recv_with_fds(&conn, &mut buf, 2).unwrap();
    assert_eq!(&buf[..n], b"memfd+pipe");
    assert_eq!(fds.len(), 2);
    assert!(fds.iter().all(|fd| is_cloexec(fd.as_fd())));
    let pipe_w = fds.pop().unwrap();
    let memfd = fds.pop().unwrap();
    let mut contents = [0u8; 64];
    let n = nix::sys::uio::pread(&memfd, &mut contents, 0).unwrap();
    assert_eq!(&contents[..n], b"shared from child");
    write(&pipe_w, b"ack from parent").unwrap();
    drop(pipe_w);
    child.expect_success(DEADLINE);
}

/// In a process of its own (so no other test's descriptors move the count), hostile amounts of
/// descriptors are received and refused, and `/proc/self/fd` shows nothing left behind.
#[test]
fn mp_socket_refused_fds_do_not_leak() {
    const NAME: &str = "mp_socket_refused_fds_do_not_leak";
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "counter");
            let before = open_fd_count();
            {
                let (a, b) = nix::sys::socket::socketpair(
                    nix::sys::socket::AddressFamily::Unix,
                    nix::sys::socket::SockType::Stream,
                    None,
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                )
                .unwrap();
                let (_r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
                let mut buf = [0u8; 8];

                // More than asked for.
                socket::send_with_fds(&a, b"five", &[w.as_fd(); 5]).unwrap();
                let during = open_fd_count();
                assert_eq!(
                    socket::recv_with_fds(&b, &mut buf, 2).unwrap_err(),
                    FdRecvError::TooManyFds {
                        received: 5,
                        max: 2
                    }
                );
                assert_eq!(open_fd_count(), during, "refused fds leaked");

                // Truncated control data (credentials take room from a full set of rights).
                nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::PassCred, &true)
                    .unwrap();
                socket::send_with_fds(&a, b"full", &vec![w.as_fd(); SCM_MAX_FD]).unwrap();
                assert!(matches!(
                    socket::recv_with_fds(&b, &mut buf, SCM_MAX_FD),
                    Err(FdRecvError::ControlTruncated { .. })
                ));
                assert_eq!(open_fd_count(), during, "truncated fds leaked");

                // Accepted fds are owned and closed by their OwnedFd.
                socket::send_with_fds(&a, b"ok", &[w.as_fd(), w.as_fd()]).unwrap();
                let (_, fds) = socket::recv_with_fds(&b, &mut buf, 2).unwrap();
                assert_eq!(open_fd_count(), during + 2);
                drop(fds);
                assert_eq!(open_fd_count(), during);
            }
            assert_eq!(open_fd_count(), before);
        });
    }
    testing::spawn_self(NAME, "counter", "")
        .spawn()
        .expect_success(DEADLINE);
}

/// The socket file's mode and group decide who may connect. As root the child drops to
/// uid/gid 65534 (nobody/nogroup): a 0600 socket refuses it, a 0666 one accepts it, and a 0660
/// socket given to group 65534 accepts it. Without root, the owner is refused by a mode-0 socket.
#[test]
fn mp_socket_mode_and_group_are_enforced() {
    const NAME: &str = "mp_socket_mode_and_group_are_enforced";
    const NOBODY: u32 = 65534;
    let as_root = nix::unistd::geteuid().is_root();
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "unprivileged");
            let arg = testing::child_arg();
            let dir = Path::new(&arg);
            if as_root {
                nix::unistd::setgroups(&[]).unwrap();
                nix::unistd::setgid(Gid::from_raw(NOBODY)).unwrap();
                nix::unistd::setuid(Uid::from_raw(NOBODY)).unwrap();
                assert!(!nix::unistd::geteuid().is_root());
            }
            let private = dir.join("private.sock");
            assert_eq!(
                socket::connect(&private).unwrap_err(),
                SocketConnectError::PermissionDenied { path: private }
            );
            let opts = ConnectOptions::new().timeout(DEADLINE);
            socket::connect_with(dir.join("open.sock"), &opts).expect("open socket");
            if as_root {
                socket::connect_with(dir.join("group.sock"), &opts).expect("group socket");
            }
        });
    }
    let dir = TempDir::new(NAME);
    let private_mode = if as_root { 0o600 } else { 0 };
    let _private = socket::listen(
        dir.join("private.sock"),
        &ListenOptions::new().mode(private_mode),
    )
    .unwrap();
    let _open = socket::listen(dir.join("open.sock"), &ListenOptions::new().mode(0o666)).unwrap();
    let _group = as_root.then(|| {
        socket::listen(
            dir.join("group.sock"),
            &ListenOptions::new().mode(0o660).group(NOBODY),
        )
        .unwrap()
    });
    testing::spawn_self(NAME, "unprivileged", dir.path().to_str().unwrap())
        .spawn()
        .expect_success(DEADLINE);
}
