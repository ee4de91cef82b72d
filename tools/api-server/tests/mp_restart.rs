//! The server stops (SIGTERM) or dies (SIGKILL) under connected clients of every kind: each
//! client gets `ServerGone` rather than a timeout, and reconnects to the next server on the
//! same path and prefix. A clean stop leaves no socket file and nothing in /dev/shm; a killed
//! server's leftovers are replaced by the next start. And an index from before a restart, sent
//! over a fresh channel of the new server, is refused and counted.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{ServerProc, cli};
use vlibapi::msgs::memclnt;
use vlibapi::wire::{self, Message};
use vlibsocket::client::{ClientError, ClientOptions, SegmentFds, SocketClient, TransportKind};
use vppinfra::testing::{self, TempDir};

fn prefix(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

/// The named segment and its doorbell FIFO under `prefix`.
fn named_files(prefix: &str) -> [PathBuf; 2] {
    let seg = vlibmemory::server::named_segment_name(Some(prefix))
        .expect("valid prefix")
        .path();
    let bell = PathBuf::from(format!(
        "{}{}",
        seg.display(),
        vlibmemory::server::DOORBELL_SUFFIX
    ));
    [seg, bell]
}

/// Everything in /dev/shm whose name mentions `prefix`.
fn shm_leftovers(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn opts(name: &str) -> ClientOptions {
    let mut o = ClientOptions::new(name);
    // Long enough that a missed server death shows up as a timeout, not as ServerGone.
    o.timeout = Duration::from_secs(20);
    o
}

fn ping(c: &mut SocketClient) -> memclnt::ControlPingReply {
    c.request(&memclnt::ControlPing::default())
        .expect("control_ping")
}

/// A socket client, a pivoted one and one attached by name, each answered once.
fn three_clients(path: &Path, prefix: &str) -> [SocketClient; 3] {
    let mut socket = SocketClient::connect_with(path, &opts("on-socket")).unwrap();
    let mut pivoted = SocketClient::connect_with(path, &opts("pivoted")).unwrap();
    pivoted.pivot(1 << 20, None).unwrap();
    assert_eq!(pivoted.transport(), TransportKind::SocketShm);
    let mut named = SocketClient::attach_by_name(Some(prefix), &opts("named")).unwrap();
    assert_eq!(named.transport(), TransportKind::NamedShm);
    for c in [&mut socket, &mut pivoted, &mut named] {
        ping(c);
    }
    [socket, pivoted, named]
}

/// Takes the server's directory out of it, so the next server can use the same socket path.
fn take_dir(server: &mut ServerProc) -> TempDir {
    std::mem::replace(&mut server.dir, TempDir::new("mp_restart_unused"))
}

/// Stops the server with `signal` under three clients; checks what each client and the file
/// system see; starts the next server on the same path and prefix and reconnects.
fn stop_and_restart(tag: &str, signal: Signal) {
    let p = prefix(tag);
    let args = ["--shm-prefix", p.as_str(), "--log-level", "warn"];
    let mut first = ServerProc::start(tag, &args);
    let path = first.path.clone();
    let named = named_files(&p);
    assert!(
        named.iter().all(|f| f.exists()),
        "named segment not published"
    );
    let mut clients = three_clients(&path, &p);

    first.child.signal(signal);
    let status = first.child.wait_deadline(Duration::from_secs(10));
    if signal == Signal::SIGTERM {
        assert!(status.success(), "clean stop failed: {status}");
    }
    for c in &mut clients {
        let kind = c.transport();
        let r = c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default());
        assert!(
            matches!(r, Err(ClientError::ServerGone)),
            "{kind:?} client after {signal}: {r:?}"
        );
    }
    match signal {
        Signal::SIGTERM => {
            assert!(!path.exists(), "socket file left after a clean stop");
            assert!(
                shm_leftovers(&p).is_empty(),
                "left in /dev/shm after a clean stop: {:?}",
                shm_leftovers(&p)
            );
        }
        _ => {
            assert!(path.exists(), "a killed server cannot remove its socket");
            assert!(
                named.iter().all(|f| f.exists()),
                "a killed server cannot remove its named segment"
            );
        }
    }
    drop(clients);

    // The next server takes the same path and prefix, whatever the last one left.
    let dir = take_dir(&mut first);
    let mut second = ServerProc::start_at(dir, path.clone(), &args);
    let mut again = three_clients(&path, &p);
    let mut observer = second.client("observer");
    let text = cli(&mut observer, "show api clients");
    for name in ["on-socket", "pivoted", "named"] {
        assert!(
            text.contains(name),
            "{name} missing after reconnecting:\n{text}"
        );
    }
    for c in &mut again {
        assert_eq!(ping(c).vpe_pid, second.pid());
    }
    drop(observer);

    // And this one stops cleanly, whatever the last one left behind.
    second.child.signal(Signal::SIGTERM);
    let status = second.child.wait_deadline(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "socket file left after a clean stop");
    assert!(shm_leftovers(&p).is_empty(), "{:?}", shm_leftovers(&p));
    for c in &mut again {
        assert!(matches!(
            c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default()),
            Err(ClientError::ServerGone)
        ));
    }
}

#[test]
fn mp_sigterm_every_client_sees_server_gone_nothing_is_left_and_all_reconnect() {
    stop_and_restart("term", Signal::SIGTERM);
}

#[test]
fn mp_sigkill_every_client_sees_server_gone_and_the_next_server_replaces_the_leftovers() {
    stop_and_restart("kill", Signal::SIGKILL);
}

/// Pivots `c` by hand (keeping the fds for a raw link) and registers over shared memory;
/// returns the link and the new index.
fn raw_pivot(c: &mut SocketClient) -> (vlibmemory::client::ShmLink, u32) {
    let SegmentFds { memfd, doorbell } = c.request_segment(1 << 20).unwrap();
    let mut link = vlibmemory::client::ShmLink::from_pivot(
        memfd,
        doorbell,
        svm::notify::WaitPolicy::default(),
    )
    .unwrap();
    let create = memclnt::MemclntCreateV2 {
        name: "raw".into(),
        context: 1,
        keepalive: false,
        ..Default::default()
    };
    let id = c.id_of::<memclnt::MemclntCreateV2>().unwrap();
    link.send(&wire::to_vec(&create, id).unwrap(), Duration::from_secs(5))
        .unwrap();
    let mut reply = Vec::new();
    link.recv(&mut reply, Duration::from_secs(5)).unwrap();
    let reply = memclnt::MemclntCreateV2Reply::decode(&reply).unwrap();
    assert_eq!(reply.response, 0);
    (link, reply.index)
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.trim_start().starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name:?} in:\n{text}"))
}

#[test]
fn mp_an_index_from_before_a_restart_is_refused_and_counted() {
    let mut first = ServerProc::start("mp_stale_index", &["--log-level", "warn"]);
    let path = first.path.clone();
    // Three pivoted clients: channels 0, 1 and 2 of the first server.
    let mut old = Vec::new();
    let mut keep = Vec::new();
    for i in 0..3 {
        let mut c = first.client(&format!("before-{i}"));
        c.pivot(1 << 20, None).unwrap();
        old.push(c.client_index());
        keep.push(c);
    }
    first.child.signal(Signal::SIGTERM);
    assert!(first.child.wait_deadline(Duration::from_secs(10)).success());
    drop(keep);
    let dir = take_dir(&mut first);
    let second = ServerProc::start_at(dir, path, &["--log-level", "warn"]);

    let mut c = second.client("after");
    let (mut link, new_index) = raw_pivot(&mut c);
    let ping_id = c.id_of::<memclnt::ControlPing>().unwrap();
    // Each old index, then the new one; requests are answered in order, so if any old one were
    // accepted its reply would come before the new one's.
    let mut refused = 0u64;
    for (i, &index) in old.iter().enumerate() {
        let ping = memclnt::ControlPing {
            client_index: index,
            context: 100 + i as u32,
        };
        link.send(
            &wire::to_vec(&ping, ping_id).unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        // An old index can only equal the new one by the epoch's chance (same channel, same
        // 12-bit epoch); any other old index must be refused.
        if index != new_index {
            refused += 1;
        }
    }
    assert!(refused >= 2, "channels 1 and 2 cannot match channel 0");
    let ping = memclnt::ControlPing {
        client_index: new_index,
        context: 200,
    };
    link.send(
        &wire::to_vec(&ping, ping_id).unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let reply_id = c.id_of::<memclnt::ControlPingReply>().unwrap();
    let mut buf = Vec::new();
    let reply = loop {
        link.recv(&mut buf, Duration::from_secs(10)).unwrap();
        if wire::msg_id(&buf) == Some(reply_id) {
            break memclnt::ControlPingReply::decode(&buf).unwrap();
        }
    };
    let stale_answered = old
        .iter()
        .enumerate()
        .any(|(i, &idx)| idx != new_index && reply.context == 100 + i as u32);
    assert!(!stale_answered, "a stale index was answered: {reply:?}");
    if refused == old.len() as u64 {
        assert_eq!(reply.context, 200, "{reply:?}");
    }
    assert_eq!(reply.client_index, new_index);
    let text = cli(&mut c, "show api counters");
    assert_eq!(
        counter(&text, "shm wrong client index"),
        refused,
        "refusals not counted:\n{text}"
    );
    // The channel still serves its rightful owner.
    let again = testing::wait_until(Duration::from_secs(5), || {
        cli(&mut c, "show api clients").contains("raw")
    });
    assert!(again, "the raw client was dropped for the stale messages");
}
