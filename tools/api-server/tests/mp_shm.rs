//! The shared-memory transport with the real server binary: the pivot (both request kinds),
//! attach by name, many clients, clients SIGKILLed and reaped, lazy clients kept, and a hostile
//! client that scribbles over its segment while others keep being served.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use example_plugin::msgs as ex;
use support::{ServerProc, cli};
use vlibapi::msgs::{memclnt, vlib_api};
use vlibsocket::client::{ClientOptions, SocketClient, TransportKind};
use vppinfra::testing;

fn ping(c: &mut SocketClient) -> memclnt::ControlPingReply {
    c.request(&memclnt::ControlPing::default())
        .expect("control_ping")
}

fn prefix(tag: &str) -> String {
    format!("t{}-{tag}", std::process::id())
}

#[test]
fn mp_pivot_then_everything_over_shared_memory() {
    let server = ServerProc::start("mp_pivot", &[]);
    let mut c = server.client("pivoter");
    let socket_index = c.client_index();
    c.pivot(0, None).expect("pivot");
    assert_eq!(c.transport(), TransportKind::SocketShm);
    assert_ne!(c.client_index(), socket_index);
    assert_eq!(
        c.client_index() & 0x8000_0000,
        0,
        "shm indexes have no socket bit"
    );
    let r = ping(&mut c);
    assert_eq!(r.vpe_pid, server.pid());
    assert_eq!(r.client_index, c.client_index());

    let _: ex::SwThingAddDelReply = c
        .request(&ex::SwThingAddDel {
            is_add: true,
            name: "over-shm".into(),
            count: 3,
            ..Default::default()
        })
        .unwrap();
    let things: Vec<ex::SwThingDetails> = c.dump(&ex::SwThingDump::default()).unwrap();
    assert_eq!(things.len(), 1);
    // A reply larger than any ring slot travels through the segment heap.
    let json: memclnt::GetApiJsonReply = c.request(&memclnt::GetApiJson::default()).unwrap();
    assert!(json.json.len() > 4096, "{}", json.json.len());
    let clients = cli(&mut c, "show api clients");
    assert!(
        clients.contains("socket+shm") && clients.contains("pivoter"),
        "{clients}"
    );
    let rings = cli(&mut c, "show api ring");
    assert!(
        rings.contains("pivoter segment rings") && rings.contains("vlib"),
        "{rings}"
    );

    // Pipelined: many in flight at once.
    let ctxs: Vec<u32> = (0..2000)
        .map(|_| c.send(&memclnt::ControlPing::default()).unwrap())
        .collect();
    for ctx in ctxs {
        let _: memclnt::ControlPingReply = c.wait_reply(ctx).unwrap();
    }
    let listed: Vec<vlib_api::ApiClientDetails> =
        c.dump(&vlib_api::ApiClientDump::default()).unwrap();
    assert!(listed.iter().any(|d| d.index == c.client_index()
        && d.transport == vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET_SHM));
    c.disconnect().unwrap();
    let mut other = server.client("observer");
    let ok = testing::wait_until(Duration::from_secs(5), || {
        !cli(&mut other, "show api clients").contains("pivoter")
    });
    assert!(ok, "pivoted client not removed after disconnect");
}

#[test]
fn mp_pivot_with_memfd_segment_create_and_ring_config() {
    let server = ServerProc::start("mp_memfd", &[]);
    let mut a = server.client("memfd-client");
    a.pivot_memfd_segment_create(8 << 20).unwrap();
    ping(&mut a);
    let mut b = server.client("configured");
    let config = vlibmemory::config::ChannelConfig {
        client_rings: vec![vlibmemory::config::RingSpec {
            payload: 256,
            count: 32,
        }],
        server_rings: vec![vlibmemory::config::RingSpec {
            payload: 256,
            count: 32,
        }],
        request_queue: 64,
        reply_queue: 64,
    };
    b.pivot(1 << 20, Some(&config)).unwrap();
    ping(&mut b);
    let rings = cli(&mut b, "show api ring");
    assert!(rings.contains("configured segment rings"), "{rings}");
    // An absurd size is refused with VPP's invalid-memory-size retval, and the socket still works.
    let mut c = server.client("greedy");
    let e = c.pivot(u32::MAX, None).unwrap_err();
    assert!(
        matches!(
            e,
            vlibsocket::client::ClientError::Retval { retval: -70, .. }
        ),
        "{e}"
    );
    ping(&mut c);
}

#[test]
fn mp_attach_by_name() {
    let p = prefix("named");
    let server = ServerProc::start("mp_named", &["--shm-prefix", &p, "--shm-slots", "2"]);
    let opts = ClientOptions::new("by-name");
    let mut a = SocketClient::attach_by_name(Some(&p), &opts).unwrap();
    assert_eq!(a.transport(), TransportKind::NamedShm);
    assert_eq!(ping(&mut a).vpe_pid, server.pid());
    assert!(
        a.msg_id(<ex::SwThingDump as vlibapi::wire::Message>::NAME_CRC)
            .is_some()
    );
    let mut b = SocketClient::attach_by_name(Some(&p), &ClientOptions::new("second")).unwrap();
    ping(&mut b);
    assert!(
        SocketClient::attach_by_name(Some(&p), &ClientOptions::new("third")).is_err(),
        "only two slots"
    );
    let text = cli(&mut a, "show api clients");
    assert!(
        text.contains("by-name") && text.contains("second"),
        "{text}"
    );
    b.disconnect().unwrap();
    // The freed slot is taken again (once the server has recycled it).
    let mut c = None;
    let ok = testing::wait_until(Duration::from_secs(5), || {
        c = SocketClient::attach_by_name(Some(&p), &ClientOptions::new("third")).ok();
        c.is_some()
    });
    assert!(ok, "slot never recycled");
    ping(c.as_mut().unwrap());
}

#[test]
fn mp_sixty_four_shared_memory_clients() {
    let server = ServerProc::start("mp_64", &[]);
    let mut clients: Vec<SocketClient> = (0..64)
        .map(|i| {
            let mut c = server.client(&format!("shm{i}"));
            c.pivot(1 << 20, None).unwrap();
            c
        })
        .collect();
    for round in 0..10 {
        let ctxs: Vec<u32> = clients
            .iter_mut()
            .map(|c| c.send(&memclnt::ControlPing::default()).unwrap())
            .collect();
        for (c, ctx) in clients.iter_mut().zip(ctxs) {
            let r: memclnt::ControlPingReply = c.wait_reply(ctx).unwrap();
            assert_eq!(r.client_index, c.client_index(), "round {round}");
        }
    }
    let listed: Vec<vlib_api::ApiClientDetails> = clients[0]
        .dump(&vlib_api::ApiClientDump::default())
        .unwrap();
    let shm = listed
        .iter()
        .filter(|d| d.transport == vlib_api::ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET_SHM)
        .count();
    assert_eq!(shm, 64);
}

/// Child: connects, pivots, says "ready", then waits to be killed (or, for the named variant,
/// attaches by name).
fn child_main(role: &str, arg: &str) {
    let mut c = match role {
        "pivot" => {
            let mut c = SocketClient::connect(arg, "victim").unwrap();
            c.pivot(1 << 20, None).unwrap();
            c
        }
        "named" => SocketClient::attach_by_name(Some(arg), &ClientOptions::new("victim")).unwrap(),
        "lazy" => SocketClient::attach_by_name(Some(arg), &ClientOptions::new("lazy")).unwrap(),
        other => panic!("unknown role {other}"),
    };
    ping(&mut c);
    if role == "pivot" {
        // Leave a request half-way: a slot written and queued, the reply never read.
        let _ = c.send(&memclnt::ControlPing::default());
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    // Silent from here on: never reads, never answers a ping.
    std::thread::sleep(Duration::from_secs(120));
}

fn spawn_ready(test: &str, role: &str, arg: &str) -> testing::TestChild {
    let mut b = testing::spawn_self(test, role, arg);
    b.command().stdout(std::process::Stdio::piped());
    let mut child = b.spawn();
    let out = child.inner().stdout.take().unwrap();
    let ready = std::io::BufRead::lines(std::io::BufReader::new(out))
        .map_while(Result::ok)
        .any(|l| l.trim_end().ends_with("ready"));
    assert!(ready, "child {role} did not get ready");
    child
}

#[test]
fn mp_sigkilled_pivot_client_is_reaped_at_once() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child_main(&role, &testing::child_arg()));
    }
    let server = ServerProc::start("mp_kill_pivot", &["--log-level", "warn"]);
    let mut good = server.client("good");
    let fds_before = support::fd_count(server.pid());
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let mut child = spawn_ready(
            "mp_sigkilled_pivot_client_is_reaped_at_once",
            "pivot",
            server.path.to_str().unwrap(),
        );
        assert!(cli(&mut good, "show api clients").contains("victim"));
        let t = Instant::now();
        child.signal(nix::sys::signal::Signal::SIGKILL);
        child.wait_deadline(Duration::from_secs(5));
        let ok = testing::wait_until(Duration::from_secs(5), || {
            !cli(&mut good, "show api clients").contains("victim")
        });
        assert!(ok, "killed client not reaped");
        latencies.push(t.elapsed());
        ping(&mut good);
    }
    // No fd, segment or registration is left behind.
    let ok = testing::wait_until(Duration::from_secs(5), || {
        support::fd_count(server.pid()) <= fds_before
    });
    assert!(
        ok,
        "fds leaked: {} > {fds_before}",
        support::fd_count(server.pid())
    );
    assert!(cli(&mut good, "show api ring").contains("No shared-memory segments"));
    eprintln!("reap latencies (including the cli round trips): {latencies:?}");
}

#[test]
fn mp_sigkilled_named_client_is_reaped_by_keepalive_and_lazy_one_kept() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| child_main(&role, &testing::child_arg()));
    }
    let p = prefix("keepalive");
    let server = ServerProc::start(
        "mp_kill_named",
        &[
            "--shm-prefix",
            &p,
            "--keepalive-interval",
            "0.05",
            "--log-level",
            "info",
        ],
    );
    let mut good = server.client("good");
    let test = "mp_sigkilled_named_client_is_reaped_by_keepalive_and_lazy_one_kept";
    let _lazy = spawn_ready(test, "lazy", &p);
    let mut victim = spawn_ready(test, "named", &p);
    victim.signal(nix::sys::signal::Signal::SIGKILL);
    victim.wait_deadline(Duration::from_secs(5));
    let ok = testing::wait_until(Duration::from_secs(10), || {
        !cli(&mut good, "show api clients").contains("victim")
    });
    assert!(
        ok,
        "named victim not reaped: {}",
        cli(&mut good, "show api clients")
    );
    // The silent but living client is still there after many intervals.
    std::thread::sleep(Duration::from_millis(500));
    let text = cli(&mut good, "show api clients");
    assert!(text.contains("lazy"), "a live client was reaped:\n{text}");
    assert!(
        server.log_text().contains("pid lives: kept"),
        "{}",
        server.log_text()
    );
    let counters = cli(&mut good, "show api counters");
    assert!(
        counters
            .lines()
            .any(|l| l.contains("shm reaped by keepalive") && l.trim().ends_with(" 1")),
        "{counters}"
    );
}

#[test]
fn mp_a_client_that_answers_pings_is_never_questioned_for_long() {
    let p = prefix("answers");
    let server = ServerProc::start(
        "mp_answers",
        &["--shm-prefix", &p, "--keepalive-interval", "0.02"],
    );
    let mut c = SocketClient::attach_by_name(Some(&p), &ClientOptions::new("polite")).unwrap();
    // Silent, except that any receive answers the server's pings on the way.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        let _ = c.next_event(Duration::from_millis(1));
    }
    assert!(c.pings_answered() > 0, "no ping arrived");
    ping(&mut c);
    let mut watcher = server.client("watcher");
    assert!(cli(&mut watcher, "show api clients").contains("polite"));
}

#[test]
fn mp_hostile_client_scribbling_its_segment_cannot_hurt_others() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "scribbler");
            scribbler(&testing::child_arg());
        });
    }
    let server = ServerProc::start("mp_scribble", &["--log-level", "warn"]);
    let mut good = server.client("good");
    good.pivot(1 << 20, None).unwrap();
    let mut child = testing::spawn_self(
        "mp_hostile_client_scribbling_its_segment_cannot_hurt_others",
        "scribbler",
        server.path.to_str().unwrap(),
    )
    .spawn();
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(3) {
        ping(&mut good);
        pings += 1;
    }
    child.kill();
    assert!(pings > 100, "good client starved: {pings}");
    // The server is alive and well, and said why it dropped the offender.
    ping(&mut good);
    let mut fresh = server.client("fresh");
    ping(&mut fresh);
    let log = server.log_text();
    assert!(
        log.contains("scribbler"),
        "offender never mentioned:\n{log}"
    );
}

/// Pivots by hand, keeping the segment's memfd, then writes garbage over the whole segment
/// while sending messages, forever.
fn scribbler(path: &str) {
    use svm::segment::{AttachOptions, Segment};
    let mut c = SocketClient::connect(path, "scribbler").unwrap();
    let vlibsocket::client::SegmentFds { memfd, doorbell } = c.request_segment(1 << 20).unwrap();
    // Register properly through a link over copies of the fds, so the server knows a name.
    let mut link = vlibmemory::client::ShmLink::from_pivot(
        memfd.try_clone().unwrap(),
        doorbell.try_clone().unwrap(),
        svm::notify::WaitPolicy::default(),
    )
    .unwrap();
    let create = memclnt::MemclntCreateV2 {
        name: "scribbler".into(),
        keepalive: true,
        ..Default::default()
    };
    let id = c
        .msg_id(<memclnt::MemclntCreateV2 as vlibapi::wire::Message>::NAME_CRC)
        .unwrap();
    let bytes = vlibapi::wire::to_vec(&create, id).unwrap();
    link.send(&bytes, Duration::from_secs(1)).unwrap();
    let mut reply = Vec::new();
    link.recv(&mut reply, Duration::from_secs(5)).unwrap();
    let seg = Segment::attach(memfd, &AttachOptions::default()).unwrap();
    let region = seg.region().clone();
    let len = region.len();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut junk = vec![0u8; 4096];
    loop {
        for b in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        // Skip the segment header page now and then, to reach the queues and rings more.
        let off = (x as usize % len.saturating_sub(4096)).max(4096) & !7;
        let _ = region.write(off, &junk[..(len - off).min(4096)]);
        let _ = nix::unistd::write(&doorbell, &1u64.to_ne_bytes());
    }
}

#[test]
fn mp_a_client_attached_by_name_notices_the_server_die() {
    let p = prefix("death");
    let mut server = ServerProc::start("mp_named_death", &["--shm-prefix", &p]);
    let mut opts = ClientOptions::new("orphan");
    opts.timeout = Duration::from_secs(20);
    let mut c = SocketClient::attach_by_name(Some(&p), &opts).unwrap();
    ping(&mut c);
    server.child.kill();
    let t = Instant::now();
    let r = c.request::<_, memclnt::ControlPingReply>(&memclnt::ControlPing::default());
    assert!(
        matches!(r, Err(vlibsocket::client::ClientError::ServerGone)),
        "{r:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // The killed server left its segment; the next server with the prefix replaces it.
    let _next = ServerProc::start("mp_named_death_next", &["--shm-prefix", &p]);
    let mut again = SocketClient::attach_by_name(Some(&p), &opts).unwrap();
    ping(&mut again);
}
