//! The async client against the real `api-server` binary, over the socket, after a pivot to
//! shared memory, and attached to the named segment: requests, dumps and events of the example
//! plugin, many requests in flight, silent clients answering the server's keepalive pings, a
//! server that stops (SIGSTOP) under the health check or under a request timeout, and a server
//! that dies (the loss is seen on every transport) and comes back (reconnect).
#![cfg(not(loom))]

mod common;
#[path = "../../vlibclient/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use async_client::{Client, HealthCheck, Options, Reconnect, RequestError, Status, StatusEvent};
use common::{block_on_for, join_all};
use example_plugin::msgs as ex;
use support::ServerProc;
use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibapi::msgs::{vlib_api, vpe};
use vppinfra::testing;

const LIMIT: Duration = Duration::from_secs(20);

/// The three ways to reach a server started with `--shm-prefix prefix`.
fn transports(server: &ServerProc, prefix: &str, name: &str) -> Vec<(&'static str, Options)> {
    vec![
        ("socket", Options::socket(&server.path, name)),
        ("pivot", Options::shm_pivot(&server.path, name)),
        ("named", Options::shm_by_name(Some(prefix), name)),
    ]
}

/// A server prefix unique to this process and test.
fn prefix(tag: &str) -> String {
    format!("a{}-{tag}", std::process::id())
}

/// Starts a server publishing its named segment under a fresh prefix.
fn shm_server(tag: &str, extra: &[&str]) -> (ServerProc, String) {
    let p = prefix(tag);
    let mut args = vec!["--log-level", "warn", "--shm-prefix", &p];
    args.extend_from_slice(extra);
    let server = ServerProc::start(tag, &args);
    (server, p)
}

#[test]
fn mp_requests_dumps_and_events() {
    for kind in ["socket", "pivot", "named"] {
        // A fresh server per transport: the dumps below list every thing it has.
        let (server, p) = shm_server(&format!("mp_async_basic_{kind}"), &[]);
        let pick = |name: &str| {
            transports(&server, &p, name)
                .into_iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, o)| o)
                .unwrap()
        };
        let a = Client::connect(pick("async-a")).unwrap();
        let b = Client::connect(pick("async-b")).unwrap();
        requests_dumps_and_events(&server, &a, &b, kind);
        a.close();
        b.close();
    }
}

fn requests_dumps_and_events(server: &ServerProc, a: &Client, b: &Client, kind: &str) {
    assert_eq!(
        a.client_index().unwrap() & 0x8000_0000 != 0,
        kind == "socket",
        "{kind}: socket indexes have bit 31 set, shared-memory ones do not"
    );
    block_on_for(LIMIT, async {
        let r: ControlPingReply = a.request(&ControlPing::default()).await.unwrap();
        assert_eq!(r.vpe_pid, server.pid());
        assert_eq!(Some(r.client_index), a.client_index());
        let v: vpe::ShowVersionReply = a.request(&vpe::ShowVersion::default()).await.unwrap();
        assert_eq!(v.program, "api-server");

        // b subscribes; a adds two things; b sees two events.
        let _: ex::WantSwThingEventsReply = b
            .request(&ex::WantSwThingEvents {
                enable: true,
                pid: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut events = b.events();
        for name in ["one", "two"] {
            let _: ex::SwThingAddDelReply = a
                .request(&ex::SwThingAddDel {
                    is_add: true,
                    name: name.into(),
                    count: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        for name in ["one", "two"] {
            let ev = events.next().await.unwrap();
            let ev = <ex::SwThingEvent as vlibapi::Message>::decode(&ev.bytes).unwrap();
            assert_eq!(ev.name, name);
        }

        // A refused request is an error carrying the retval; unchecked, it is a reply.
        let dup = a
            .request::<_, ex::SwThingAddDelReply>(&ex::SwThingAddDel {
                is_add: true,
                name: "one".into(),
                ..Default::default()
            })
            .await;
        assert!(
            matches!(dup, Err(RequestError::Retval { retval: -116, .. })),
            "{dup:?}"
        );

        // Dumps: streamed one by one, or collected.
        let mut dump = a.dump::<_, ex::SwThingDetails>(&ex::SwThingDump::default());
        let mut names = Vec::new();
        while let Some(d) = dump.next().await {
            names.push(d.unwrap().name);
        }
        assert_eq!(names, ["one", "two"]);
        let clients = a
            .dump::<_, vlib_api::ApiClientDetails>(&vlib_api::ApiClientDump::default())
            .collect()
            .await
            .unwrap();
        let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"async-a") && names.contains(&"async-b"),
            "{names:?}"
        );

        // A dump dropped halfway leaves nothing behind.
        let mut partial = a.dump::<_, ex::SwThingDetails>(&ex::SwThingDump::default());
        assert!(partial.next().await.is_some());
        drop(partial);
        let r: ControlPingReply = a.request(&ControlPing::default()).await.unwrap();
        assert_eq!(r.retval, 0);
    });
    assert_eq!(a.in_flight(), 0);
    let mut events = a.events();
    assert!(
        common::poll_once(&mut events.next()).is_pending(),
        "no stray messages became events"
    );
}

#[test]
fn mp_thousands_in_flight() {
    let (server, p) = shm_server("mp_async_many", &[]);
    for (kind, opts) in transports(&server, &p, "async-many") {
        let c = Client::connect(opts).unwrap();
        // Two threads issue requests on clones of one client, 2000 in flight each.
        std::thread::scope(|s| {
            for _ in 0..2 {
                let c = c.clone();
                s.spawn(move || {
                    let futs: Vec<_> = (0..2000)
                        .map(|_| c.request::<_, ControlPingReply>(&ControlPing::default()))
                        .collect();
                    let ok = join_all(futs).into_iter().filter(|r| r.is_ok()).count();
                    assert_eq!(ok, 2000, "{kind}");
                });
            }
        });
        assert_eq!(c.in_flight(), 0, "{kind}");
        c.close();
    }
}

fn cli(c: &mut vlibsocket::client::SocketClient, cmd: &str) -> String {
    let r: vpe::CliInbandReply = c
        .request(&vpe::CliInband {
            cmd: cmd.into(),
            ..Default::default()
        })
        .unwrap();
    r.reply
}

#[test]
fn mp_silent_shared_memory_clients_answer_the_servers_pings() {
    // Pinged after 50 ms of silence (and, since a consumed ping counts as activity at the next
    // scan, about every 100 ms).
    let p = prefix("keepalive");
    let server = ServerProc::start(
        "mp_async_keepalive",
        &["--keepalive-interval", "0.05", "--shm-prefix", &p],
    );
    let pivoted = Client::connect(Options::shm_pivot(&server.path, "async-ka-pivot")).unwrap();
    let named = Client::connect(Options::shm_by_name(Some(&p), "async-ka-named")).unwrap();
    // Silent: no requests at all for two seconds.
    std::thread::sleep(Duration::from_secs(2));
    let answered = [pivoted.pings_answered(), named.pings_answered()];
    eprintln!("pings answered in 2 s of silence: {answered:?}");
    assert!(answered.iter().all(|&n| n >= 5), "{answered:?}");
    let mut watcher = vlibsocket::client::SocketClient::connect(&server.path, "watcher").unwrap();
    let healthy = testing::wait_until(Duration::from_secs(5), || {
        let text = cli(&mut watcher, "show api clients");
        let shm_part = text
            .split("Shared memory clients")
            .nth(1)
            .unwrap_or("")
            .to_owned();
        let lines: Vec<&str> = shm_part
            .lines()
            .filter(|l| l.contains("async-ka-"))
            .collect();
        lines.len() == 2 && lines.iter().all(|l| l.trim_end().ends_with("OK"))
    });
    assert!(healthy, "{}", cli(&mut watcher, "show api clients"));
    let log = server.log_text();
    assert!(!log.contains("does not answer pings"), "{log}");
    for c in [&pivoted, &named] {
        let r: ControlPingReply = block_on_for(LIMIT, c.request(&ControlPing::default())).unwrap();
        assert_eq!(r.vpe_pid, server.pid());
        let mut events = c.events();
        assert!(
            common::poll_once(&mut events.next()).is_pending(),
            "a ping surfaced"
        );
    }
}

#[test]
fn mp_request_timeouts_work_on_shared_memory() {
    let (server, p) = shm_server("mp_async_shm_timeout", &[]);
    let mut o = Options::shm_by_name(Some(&p), "async-patient");
    o.request_timeout = Some(Duration::from_millis(200));
    let c = Client::connect(o).unwrap();
    server.child.signal(nix::sys::signal::Signal::SIGSTOP);
    let r = block_on_for(
        LIMIT,
        c.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::Timeout);
    server.child.signal(nix::sys::signal::Signal::SIGCONT);
    let r: ControlPingReply = block_on_for(LIMIT, c.request(&ControlPing::default())).unwrap();
    assert_eq!(r.vpe_pid, server.pid());
}

#[test]
fn mp_a_dead_server_is_a_loss_on_shared_memory_and_a_restarted_one_is_found_again() {
    for kind in ["pivot", "named"] {
        // Killed (SIGKILL), then stopped cleanly (SIGTERM: it removes its named segment).
        for clean in [false, true] {
            let how = if clean { "stopped" } else { "killed" };
            let tag = format!("mp_async_shm_death_{kind}_{how}");
            let (mut server, p) = shm_server(&tag, &[]);
            let mut o = transports(&server, &p, "async-doomed")
                .into_iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, o)| o)
                .unwrap();
            o.request_timeout = None;
            o.reconnect = Some(Reconnect {
                max_attempts: Some(100),
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(100),
                multiplier: 2.0,
            });
            let c = Client::connect(o).unwrap();
            let mut status = c.status_events();
            let gone = std::time::Instant::now();
            if clean {
                server.child.signal(nix::sys::signal::Signal::SIGTERM);
                server.child.wait_deadline(LIMIT);
            } else {
                // A request the server never answers: it stopped, then dies.
                server.child.signal(nix::sys::signal::Signal::SIGSTOP);
                let mut req = c.request::<_, ControlPingReply>(&ControlPing::default());
                assert!(common::poll_once(&mut req).is_pending());
                server.child.kill();
                assert_eq!(
                    block_on_for(LIMIT, req).unwrap_err(),
                    RequestError::Disconnected,
                    "{kind} {how}"
                );
            }
            let ev = block_on_for(LIMIT, status.next());
            assert!(
                matches!(ev, Some(StatusEvent::Disconnected(_))),
                "{kind} {how}: {ev:?}"
            );
            eprintln!("{kind} {how}: loss seen after {:?}", gone.elapsed());
            // The same socket path and prefix again.
            let path = server.path.clone();
            let dir = std::mem::replace(&mut server.dir, vppinfra::testing::TempDir::new("unused"));
            let server2 =
                ServerProc::start_at(dir, path, &["--log-level", "warn", "--shm-prefix", &p]);
            let ev = block_on_for(LIMIT, status.next()).unwrap();
            assert!(
                matches!(ev, StatusEvent::Reconnected { .. }),
                "{kind} {how}: {ev:?}"
            );
            let r: ControlPingReply =
                block_on_for(LIMIT, c.request(&ControlPing::default())).unwrap();
            assert_eq!(r.vpe_pid, server2.pid(), "{kind} {how}");
            c.close();
        }
    }
}

#[test]
fn mp_health_check_sees_a_stopped_server() {
    let server = ServerProc::start("mp_async_stop", &["--log-level", "warn"]);
    let mut o = Options::socket(&server.path, "async-hc");
    o.health_check = Some(HealthCheck {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(50),
        max_misses: 3,
    });
    let c = Client::connect(o).unwrap();
    let mut status = c.status_events();
    server.child.signal(nix::sys::signal::Signal::SIGSTOP);
    assert_eq!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Unhealthy)
    );
    server.child.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Healthy)
    );
    let r: ControlPingReply = block_on_for(LIMIT, c.request(&ControlPing::default())).unwrap();
    assert_eq!(r.vpe_pid, server.pid());
}

#[test]
fn mp_reconnects_to_a_restarted_server() {
    let mut server = ServerProc::start("mp_async_restart", &["--log-level", "warn"]);
    let mut o = Options::socket(&server.path, "async-rc");
    o.reconnect = Some(Reconnect {
        max_attempts: Some(50),
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        multiplier: 2.0,
    });
    let c = Client::connect(o).unwrap();
    let first_pid = server.pid();
    let mut status = c.status_events();
    server.child.kill();
    assert!(matches!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Disconnected(_))
    ));
    assert_eq!(c.status(), Status::Reconnecting);
    let r = block_on_for(
        LIMIT,
        c.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::NotConnected);
    // A new server on the same socket path (it replaces the stale socket file).
    let path = server.path.clone();
    let dir = std::mem::replace(&mut server.dir, vppinfra::testing::TempDir::new("unused"));
    let server2 = ServerProc::start_at(dir, path, &["--log-level", "warn"]);
    let ev = block_on_for(LIMIT, status.next()).unwrap();
    assert!(matches!(ev, StatusEvent::Reconnected { .. }), "{ev:?}");
    let r: ControlPingReply = block_on_for(LIMIT, c.request(&ControlPing::default())).unwrap();
    assert_eq!(r.vpe_pid, server2.pid());
    assert_ne!(r.vpe_pid, first_pid);
    assert_eq!(c.reconnects(), 1);
}
