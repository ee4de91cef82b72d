//! The real server binary and the Rust socket client in separate processes: requests, dumps,
//! events, many clients, and clients that misbehave (garbage, SIGKILL mid-request, never
//! reading). After each misbehaviour a well-behaved client must still be served.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use example_plugin::msgs as ex;
use support::{ServerProc, cli};
use vlibapi::msgs::{memclnt, vlib_api, vpe};
use vlibapi::wire::Message;
use vlibsocket::client::{ClientError, SocketClient};
use vlibsocket::frame::header;
use vppinfra::testing;

fn ping(c: &mut SocketClient) -> memclnt::ControlPingReply {
    c.request(&memclnt::ControlPing::default())
        .expect("control_ping")
}

#[test]
fn mp_requests_dumps_and_events() {
    let server = ServerProc::start("mp_requests", &[]);
    let mut a = server.client("alpha");
    let mut b = server.client("beta");

    let reply = ping(&mut a);
    assert_eq!(
        reply.vpe_pid,
        server.pid(),
        "control_ping_reply carries the server pid"
    );
    assert_eq!(
        reply.client_index,
        a.client_index(),
        "client_index is echoed"
    );
    assert!(
        a.client_index() & 0x8000_0000 != 0,
        "socket handles have bit 31 set"
    );

    let v: vpe::ShowVersionReply = a.request(&vpe::ShowVersion::default()).unwrap();
    assert_eq!(v.program, "api-server");

    // b subscribes to events; a adds a thing; b gets an event with context 0.
    let _: ex::WantSwThingEventsReply = b
        .request(&ex::WantSwThingEvents {
            enable: true,
            pid: 77,
            ..Default::default()
        })
        .unwrap();
    let added: ex::SwThingAddDelReply = a
        .request(&ex::SwThingAddDel {
            is_add: true,
            name: "foo".into(),
            count: 4,
            enable: true,
            ..Default::default()
        })
        .unwrap();
    let ev = b
        .next_event(Duration::from_secs(5))
        .unwrap()
        .expect("event");
    let ev = ex::SwThingEvent::decode(&ev.bytes).unwrap();
    assert_eq!(
        (ev.thing_index, ev.is_add, ev.name.as_str(), ev.pid),
        (added.thing_index, true, "foo", 77)
    );

    // A duplicate is refused with the retval of EntryAlreadyExists.
    let dup = a.request::<_, ex::SwThingAddDelReply>(&ex::SwThingAddDel {
        is_add: true,
        name: "foo".into(),
        ..Default::default()
    });
    assert!(
        matches!(dup, Err(ClientError::Retval { retval: -116, .. })),
        "{dup:?}"
    );

    let things: Vec<ex::SwThingDetails> = a.dump(&ex::SwThingDump::default()).unwrap();
    assert_eq!(things.len(), 1);
    assert_eq!((things[0].name.as_str(), things[0].count), ("foo", 4));

    let clients: Vec<vlib_api::ApiClientDetails> =
        a.dump(&vlib_api::ApiClientDump::default()).unwrap();
    let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"alpha") && names.contains(&"beta"),
        "{names:?}"
    );

    let first: memclnt::GetFirstMsgIdReply = a
        .request(&memclnt::GetFirstMsgId {
            name: "example".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        Some(first.first_msg_id),
        a.msg_id(ex::SwThingAddDel::NAME_CRC)
    );

    let text = cli(&mut a, "show api clients");
    assert!(text.contains("alpha") && text.contains("beta"), "{text}");
    let text = cli(&mut a, "sh example things");
    assert!(text.contains("foo"), "{text}");
    let bad: vpe::CliInbandReply = a
        .request_unchecked(&vpe::CliInband {
            cmd: "frobnicate".into(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(bad.retval, -1);
    assert!(bad.reply.contains("unknown input"), "{}", bad.reply);

    // b leaves; the plugin's reaper callback drops its subscription.
    b.disconnect().unwrap();
    let ok = testing::wait_until(Duration::from_secs(5), || {
        cli(&mut a, "show example things").contains("0 subscriber(s)")
    });
    assert!(ok, "subscription of a departed client was not dropped");
    a.disconnect().unwrap();
}

#[test]
fn mp_many_clients_at_once() {
    let server = ServerProc::start("mp_many", &[]);
    let n = 250;
    let mut clients: Vec<SocketClient> = (0..n).map(|i| server.client(&format!("c{i}"))).collect();
    // Pipelined: every client sends, then every client reads.
    let ctxs: Vec<u32> = clients
        .iter_mut()
        .map(|c| {
            let ctx = c.send(&memclnt::ControlPing::default()).unwrap();
            c.flush().unwrap();
            ctx
        })
        .collect();
    for (c, ctx) in clients.iter_mut().zip(ctxs) {
        let r: memclnt::ControlPingReply = c.wait_reply(ctx).unwrap();
        assert_eq!(r.client_index, c.client_index());
    }
    let listed: Vec<vlib_api::ApiClientDetails> = clients[0]
        .dump(&vlib_api::ApiClientDump::default())
        .unwrap();
    assert_eq!(listed.len(), n);
    let mut last = clients.pop().unwrap();
    drop(clients);
    let ok = testing::wait_until(Duration::from_secs(10), || {
        last.dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default())
            .map(|v| v.len() == 1)
            .unwrap_or(false)
    });
    assert!(ok, "closed connections were not reaped");
}

/// Sends `bytes` on a fresh connection and reports whether the server closed it.
fn send_garbage(server: &ServerProc, bytes: &[u8]) -> bool {
    let mut s = UnixStream::connect(&server.path).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    let start = Instant::now();
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return start.elapsed() < Duration::from_secs(1),
        }
    }
}

#[test]
fn mp_garbage_is_rejected_and_others_are_served() {
    let server = ServerProc::start(
        "mp_garbage",
        &["--max-msg-size", "64k", "--log-level", "warn"],
    );
    let mut good = server.client("good");

    // A length beyond the maximum, and a frame shorter than a message id: closed at once.
    assert!(
        send_garbage(&server, &header(0xffff_ffff)),
        "huge data_len not closed"
    );
    assert!(send_garbage(&server, &header(1)), "1-byte frame not closed");
    ping(&mut good);

    // Random bytes: whatever they announce, the server must survive them.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut s = UnixStream::connect(&server.path).unwrap();
        let _ = s.write_all(&bytes);
    }
    ping(&mut good);

    // A truncated header followed by a close.
    {
        let mut s = UnixStream::connect(&server.path).unwrap();
        s.write_all(&header(100)[..9]).unwrap();
    }
    ping(&mut good);

    // Unknown message ids are counted and logged, and the connection stays until the client has
    // sent too many of them.
    let mut s = UnixStream::connect(&server.path).unwrap();
    let mut frame = header(10).to_vec();
    frame.extend_from_slice(&[0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 1]);
    for _ in 0..10 {
        s.write_all(&frame).unwrap();
    }
    ping(&mut good);
    let mut many = Vec::new();
    for _ in 0..200 {
        many.extend_from_slice(&frame);
    }
    s.write_all(&many).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        std::io::Read::read(&mut s, &mut buf).unwrap_or(0),
        0,
        "flooder not disconnected"
    );

    // A valid id with a truncated body is rejected before any handler sees it.
    let id = good.msg_id(ex::SwThingAddDel::NAME_CRC).unwrap();
    let mut s = UnixStream::connect(&server.path).unwrap();
    let mut short = header(6).to_vec();
    short.extend_from_slice(&id.to_be_bytes());
    short.extend_from_slice(&[0, 0, 0, 1]);
    s.write_all(&short).unwrap();
    ping(&mut good);
    let things: Vec<ex::SwThingDetails> = good.dump(&ex::SwThingDump::default()).unwrap();
    assert!(things.is_empty(), "a truncated add reached the handler");

    let counters = cli(&mut good, "show api counters");
    assert!(counters.contains("socket framing errors"), "{counters}");
    let log = server.log_text();
    assert!(
        log.contains("framing error"),
        "no log line for the framing error:\n{log}"
    );
    assert!(
        log.contains("unknown message id 65520"),
        "no log line for unknown ids:\n{log}"
    );
    good.disconnect().unwrap();
}

#[test]
fn mp_client_killed_mid_request() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| {
            assert_eq!(role, "half-sender");
            let mut c = SocketClient::connect(testing::child_arg(), "victim").unwrap();
            ping(&mut c);
            // Half a control_ping: header announces 10 bytes, 5 arrive.
            let mut raw = UnixStream::connect(testing::child_arg()).unwrap();
            let mut f = header(10).to_vec();
            f.extend_from_slice(&[0, 23, 0, 0, 0]);
            raw.write_all(&f).unwrap();
            println!("ready");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
    }
    let server = ServerProc::start("mp_killed", &[]);
    let mut good = server.client("good");
    let fds_before = support::fd_count(server.pid());
    for _ in 0..5 {
        let mut b = testing::spawn_self(
            "mp_client_killed_mid_request",
            "half-sender",
            server.path.to_str().unwrap(),
        );
        b.command().stdout(std::process::Stdio::piped());
        let mut child = b.spawn();
        let out = child.inner().stdout.take().unwrap();
        // libtest prints its own text first, and "test name ... " shares the line with ours.
        let ready = std::io::BufRead::lines(std::io::BufReader::new(out))
            .map_while(Result::ok)
            .any(|l| l.trim_end().ends_with("ready"));
        assert!(ready, "child did not get ready");
        child.signal(nix::sys::signal::Signal::SIGKILL);
        child.wait_deadline(Duration::from_secs(5));
        ping(&mut good);
    }
    let ok = testing::wait_until(Duration::from_secs(5), || {
        !cli(&mut good, "show api clients").contains("victim")
            && support::fd_count(server.pid()) <= fds_before
    });
    assert!(
        ok,
        "killed clients not reaped: {}",
        cli(&mut good, "show api clients")
    );
}

#[test]
fn mp_a_client_that_never_reads_does_not_block_others() {
    let server = ServerProc::start("mp_stuck", &["--max-output", "1m", "--log-level", "warn"]);
    let mut good = server.client("good");
    let mut stuck = server.client("stuck");
    // Ask for far more reply bytes than the bound, never reading: get_api_json replies are big.
    for _ in 0..2000 {
        stuck.send(&memclnt::GetApiJson::default()).unwrap();
    }
    let flooder = std::thread::spawn(move || {
        // The server stops reading this client; the flush blocks until it is dropped.
        let r = stuck.flush();
        (stuck, r)
    });
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        ping(&mut good);
        pings += 1;
    }
    assert!(
        pings > 10,
        "the good client was starved ({pings} pings in 2 s)"
    );
    let ok = testing::wait_until(Duration::from_secs(20), || {
        let t = cli(&mut good, "show api counters");
        t.lines()
            .any(|l| l.contains("socket stuck clients") && !l.trim().ends_with(" 0"))
    });
    assert!(
        ok,
        "stuck client never dropped:\n{}",
        cli(&mut good, "show api counters")
    );
    let (_stuck, flushed) = flooder.join().unwrap();
    let _ = flushed;
    ping(&mut good);
    assert!(
        server.log_text().contains("stopped reading"),
        "{}",
        server.log_text()
    );
}

#[test]
fn mp_stale_socket_replaced_live_one_refused_and_clean_shutdown() {
    let mut first = ServerProc::start("mp_stale", &[]);
    // A second server on the same path is refused while the first lives.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
        .arg("--socket")
        .arg(&first.path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");

    // SIGKILL leaves the socket file behind; the next server replaces it.
    first.child.kill();
    assert!(
        first.path.exists(),
        "socket file should be left by a killed server"
    );
    let path = first.path.clone();
    let dir = std::mem::replace(&mut first.dir, testing::TempDir::new("mp_stale_unused"));
    let mut second = ServerProc::start_at(dir, path.clone(), &[]);
    let mut c = second.client("after-restart");
    ping(&mut c);

    // SIGTERM: clients are closed, the socket file is removed, exit status 0.
    second.child.signal(nix::sys::signal::Signal::SIGTERM);
    let status = second.child.wait_deadline(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(!path.exists(), "socket file left after a clean stop");
    assert!(matches!(c.recv_raw(), Err(ClientError::ServerGone)));
}
