//! The storm's clients: each runs to its kill point and is SIGKILLed there, by itself at a
//! precise point of a protocol, or by the driver at a random moment while it works.
//!
//! A victim that kills itself calls `raise(SIGKILL)`: the kernel tears the process down exactly
//! as if another process had sent the signal, at that very instruction.

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use nix::sys::signal::Signal;
use svm::segment::{AttachOptions, Segment};
use vlibapi::msgs::{memclnt, vlib_api};
use vlibapi::wire::{self, Message};
use vlibmemory::channel::{ChannelLayout, Sender};
use vlibmemory::client::{ShmConnectError, ShmLink};
use vlibmemory::server::OPAQUE_ROOT;
use vlibsocket::client::{ClientError, ClientOptions, SocketClient};
use vppinfra::sync::Arc;

/// Who kills the victim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Killer {
    /// The victim itself, at the point.
    Itself,
    /// The driver, at a random moment.
    Driver,
}

/// A kill point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point {
    /// Its name (the victim's argument, and the report's row).
    pub(crate) name: &'static str,
    /// `socket`, `pivot` (a private segment) or `named` (the named segment).
    pub(crate) transport: &'static str,
    /// Who kills.
    pub(crate) killer: Killer,
    /// Where it dies.
    pub(crate) what: &'static str,
}

const fn point(
    name: &'static str,
    transport: &'static str,
    killer: Killer,
    what: &'static str,
) -> Point {
    Point {
        name,
        transport,
        killer,
        what,
    }
}

/// Every kill point, in report order.
pub(crate) const POINTS: &[Point] = &[
    point(
        "sock-connected",
        "socket",
        Killer::Itself,
        "connected, nothing sent",
    ),
    point(
        "sock-registered",
        "socket",
        Killer::Itself,
        "right after sockclnt_create",
    ),
    point(
        "sock-mid-frame",
        "socket",
        Killer::Itself,
        "half a frame written",
    ),
    point(
        "sock-pipelined",
        "socket",
        Killer::Itself,
        "256 requests written, no reply read",
    ),
    point(
        "sock-random",
        "socket",
        Killer::Driver,
        "at random while sending and receiving",
    ),
    point(
        "pivot-requested",
        "pivot",
        Killer::Itself,
        "sock_init_shm written, reply unread",
    ),
    point(
        "pivot-reply-read",
        "pivot",
        Killer::Itself,
        "pivot reply read, fds not taken",
    ),
    point(
        "pivot-unregistered",
        "pivot",
        Killer::Itself,
        "segment attached, memclnt_create not sent",
    ),
    point(
        "pivot-mid-enqueue",
        "pivot",
        Killer::Itself,
        "ring slots written and marked busy, some offsets not enqueued",
    ),
    point(
        "pivot-holding",
        "pivot",
        Killer::Itself,
        "3000 requests sent, no reply taken (server rings full, backlog)",
    ),
    point(
        "pivot-random",
        "pivot",
        Killer::Driver,
        "at random while sending and receiving",
    ),
    point(
        "named-claimed",
        "named",
        Killer::Itself,
        "slot claimed, memclnt_create not sent",
    ),
    point(
        "named-holding",
        "named",
        Killer::Itself,
        "600 requests sent, no reply taken",
    ),
    point(
        "named-random",
        "named",
        Killer::Driver,
        "at random while sending and receiving",
    ),
];

/// Exit status of a victim that found every named slot taken (not an error of the server's:
/// slots of killed clients are given back by the keepalive scan).
pub(crate) const EXIT_NO_SLOT: u8 = 3;
/// Exit status of a victim whose server refused or failed it.
pub(crate) const EXIT_FAILED: u8 = 4;

/// Dies now, by SIGKILL.
fn die() -> ! {
    let _ = nix::sys::signal::raise(Signal::SIGKILL);
    // SIGKILL cannot be caught; the process is gone before this line runs.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// What went wrong before the kill point.
#[derive(Debug)]
enum Failure {
    NoSlot,
    Other(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.to_string())
    }
}

type Outcome = Result<(), Failure>;

/// Runs kill point `point`; returns only if the victim could not reach it.
pub(crate) fn run(point: &str, socket: &Path, prefix: &str, seed: u64) -> ExitCode {
    match reach(point, socket, prefix, &mut Rng(seed | 1)) {
        Ok(()) => die(),
        Err(Failure::NoSlot) => ExitCode::from(EXIT_NO_SLOT),
        Err(Failure::Other(e)) => {
            let _ = writeln!(
                std::io::stderr(),
                "victim {point} (pid {}): {e}",
                std::process::id()
            );
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Goes to kill point `point` (and dies there, for the points it kills itself at).
fn reach(point: &str, socket: &Path, prefix: &str, rng: &mut Rng) -> Outcome {
    let name = format!("victim-{point}");
    match point {
        "sock-connected" => sock_connected(socket),
        "sock-registered" => sock_registered(socket, &name),
        "sock-mid-frame" => sock_mid_frame(socket, &name),
        "sock-pipelined" => sock_pipelined(socket, &name),
        "sock-random" => busy(&mut connect(socket, &name)?, rng),
        "pivot-requested" => pivot_requested(socket, &name),
        "pivot-reply-read" => pivot_reply_read(socket, &name),
        "pivot-unregistered" => pivot_unregistered(socket, &name),
        "pivot-mid-enqueue" => pivot_mid_enqueue(socket, &name, rng),
        "pivot-holding" => holding(pivoted(socket, &name)?, 3000),
        "pivot-random" => busy(&mut pivoted(socket, &name)?, rng),
        "named-claimed" => named_claimed(prefix),
        "named-holding" => holding(by_name(prefix, &name)?, 600),
        "named-random" => busy(&mut by_name(prefix, &name)?, rng),
        other => Err(Failure::Other(format!("unknown kill point {other}"))),
    }
}

fn options(name: &str) -> ClientOptions {
    let mut o = ClientOptions::new(name);
    o.timeout = Duration::from_secs(10);
    o
}

fn connect(socket: &Path, name: &str) -> Result<SocketClient, Failure> {
    Ok(SocketClient::connect_with(socket, &options(name))?)
}

fn pivoted(socket: &Path, name: &str) -> Result<SocketClient, Failure> {
    let mut c = connect(socket, name)?;
    c.pivot(1 << 20, None)?;
    Ok(c)
}

fn by_name(prefix: &str, name: &str) -> Result<SocketClient, Failure> {
    match SocketClient::attach_by_name(Some(prefix), &options(name)) {
        Ok(c) => Ok(c),
        Err(ClientError::Shm(ShmConnectError::NoFreeSlot)) => Err(Failure::NoSlot),
        Err(e) => Err(e.into()),
    }
}

fn sock_connected(socket: &Path) -> Outcome {
    let _s = UnixStream::connect(socket)?;
    die()
}

fn sock_registered(socket: &Path, name: &str) -> Outcome {
    let _c = connect(socket, name)?;
    die()
}

fn sock_mid_frame(socket: &Path, name: &str) -> Outcome {
    let c = connect(socket, name)?;
    // A control_ping announced as 10 bytes, of which 5 arrive.
    let mut f = vlibsocket::frame::header(10).to_vec();
    f.extend_from_slice(&[0, 23, 0, 0, 0]);
    let fd = c.fd().ok_or(Failure::Other("no socket".into()))?;
    nix::unistd::write(fd, &f)?;
    die()
}

fn sock_pipelined(socket: &Path, name: &str) -> Outcome {
    let mut c = connect(socket, name)?;
    for _ in 0..256 {
        c.send(&memclnt::ControlPing::default())?;
    }
    c.flush()?;
    die()
}

/// Sends requests and never takes a reply: the server's rings and reply queue fill, then its
/// backlog, then it stops reading.
fn holding(mut c: SocketClient, n: usize) -> Outcome {
    c.set_timeout(Duration::from_millis(200))?;
    for _ in 0..n {
        if c.send(&memclnt::ControlPing::default()).is_err() {
            // Its request queue is full: the server no longer reads it.
            break;
        }
    }
    let _ = c.flush();
    die()
}

/// Works until the driver kills it: synchronous requests, pipelined bursts, a dump now and
/// then, so that the kill lands in the middle of any of them.
fn busy(c: &mut SocketClient, rng: &mut Rng) -> Outcome {
    loop {
        match rng.below(8) {
            0 => {
                let _: Vec<vlib_api::ApiClientDetails> =
                    c.dump(&vlib_api::ApiClientDump::default())?;
            }
            1..=3 => {
                let n = 1 + rng.below(64) as usize;
                let ctxs: Vec<u32> = (0..n)
                    .map(|_| c.send(&memclnt::ControlPing::default()))
                    .collect::<Result<_, _>>()?;
                c.flush()?;
                for ctx in ctxs {
                    let _: memclnt::ControlPingReply = c.wait_reply(ctx)?;
                }
            }
            _ => {
                let _: memclnt::ControlPingReply = c.request(&memclnt::ControlPing::default())?;
            }
        }
    }
}

fn pivot_requested(socket: &Path, name: &str) -> Outcome {
    let mut c = connect(socket, name)?;
    c.send(&memclnt::SockInitShm {
        requested_size: 1 << 20,
        ..Default::default()
    })?;
    c.flush()?;
    die()
}

fn pivot_reply_read(socket: &Path, name: &str) -> Outcome {
    let mut c = connect(socket, name)?;
    let _: memclnt::SockInitShmReply = c.request(&memclnt::SockInitShm {
        requested_size: 1 << 20,
        ..Default::default()
    })?;
    die()
}

/// Pivots by hand up to receiving the segment: returns the socket client (kept open), the
/// memfd and the doorbell.
fn pivot_fds(
    socket: &Path,
    name: &str,
) -> Result<(SocketClient, std::os::fd::OwnedFd, std::os::fd::OwnedFd), Failure> {
    let mut c = connect(socket, name)?;
    let _: memclnt::SockInitShmReply = c.request(&memclnt::SockInitShm {
        requested_size: 1 << 20,
        ..Default::default()
    })?;
    let fd = c.fd().ok_or(Failure::Other("no socket".into()))?;
    let mut buf = [0u8; 5];
    let (_, fds) = vppinfra::socket::recv_with_fds(fd, &mut buf, 2)?;
    let mut fds = fds.into_iter();
    let (Some(memfd), Some(doorbell)) = (fds.next(), fds.next()) else {
        return Err(Failure::Other("the pivot brought no fds".into()));
    };
    Ok((c, memfd, doorbell))
}

fn pivot_unregistered(socket: &Path, name: &str) -> Outcome {
    let (_c, memfd, doorbell) = pivot_fds(socket, name)?;
    let _link = ShmLink::from_pivot(memfd, doorbell, Default::default())?;
    die()
}

/// Registers over its private segment, then writes requests into ring slots and marks them
/// busy, publishing the offsets of some and holding the others back, and dies.
fn pivot_mid_enqueue(socket: &Path, name: &str, rng: &mut Rng) -> Outcome {
    let (c, memfd, doorbell) = pivot_fds(socket, name)?;
    let mut link = ShmLink::from_pivot(memfd.try_clone()?, doorbell, Default::default())?;
    let create = memclnt::MemclntCreateV2 {
        name: name.to_owned(),
        keepalive: true,
        ..Default::default()
    };
    link.send(
        &wire::to_vec(&create, c.id_of::<memclnt::MemclntCreateV2>()?)?,
        Duration::from_secs(5),
    )?;
    let mut reply = Vec::new();
    link.recv(&mut reply, Duration::from_secs(10))?;
    let index = memclnt::MemclntCreateV2Reply::decode(&reply)?.index;
    // A second sender on the request queue: the link never sends again, so the two never race.
    let segment = Arc::new(Segment::attach(memfd, &AttachOptions::default())?);
    let base = segment
        .opaque(OPAQUE_ROOT)
        .ok_or(Failure::Other("no channel".into()))? as usize;
    let layout = ChannelLayout::read(segment.region(), base)?;
    let mut tx = Sender::attach(segment, &layout.client_rings, layout.request)?;
    tx.set_batching(true);
    let ping = wire::to_vec(
        &memclnt::ControlPing {
            client_index: index,
            context: 1,
        },
        c.id_of::<memclnt::ControlPing>()?,
    )?;
    // Some published, then some written, marked busy and held back.
    for _ in 0..rng.below(16) {
        tx.try_send(&ping)?;
    }
    tx.flush()?;
    for _ in 0..1 + rng.below(30) {
        tx.try_send(&ping)?;
    }
    die()
}

fn named_claimed(prefix: &str) -> Outcome {
    match ShmLink::attach_named(Some(prefix), Default::default()) {
        Ok(_link) => die(),
        Err(ShmConnectError::NoFreeSlot) => Err(Failure::NoSlot),
        Err(e) => Err(e.into()),
    }
}

/// A small xorshift generator (choices only, no quality needed).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-enough in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_known_and_named_once() {
        let mut names: Vec<&str> = POINTS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
        for p in POINTS {
            assert!(["socket", "pivot", "named"].contains(&p.transport));
            assert!(p.name.starts_with(match p.transport {
                "socket" => "sock-",
                t => t,
            }));
        }
    }
}
