//! The async client against the real `api-server` binary: requests, dumps and events of the
//! example plugin, many requests in flight, a server that stops (SIGSTOP) under the health
//! check, and a server that dies and comes back on the same socket (reconnect).
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

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn mp_requests_dumps_and_events() {
    let server = ServerProc::start("mp_async_basic", &["--log-level", "warn"]);
    let a = Client::connect(Options::socket(&server.path, "async-a")).unwrap();
    let b = Client::connect(Options::socket(&server.path, "async-b")).unwrap();
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
    a.close();
    b.close();
}

#[test]
fn mp_thousands_in_flight() {
    let server = ServerProc::start("mp_async_many", &["--log-level", "warn"]);
    let c = Client::connect(Options::socket(&server.path, "async-many")).unwrap();
    // Two threads issue requests on clones of one client, 2000 in flight each.
    std::thread::scope(|s| {
        for _ in 0..2 {
            let c = c.clone();
            s.spawn(move || {
                let futs: Vec<_> = (0..2000)
                    .map(|_| c.request::<_, ControlPingReply>(&ControlPing::default()))
                    .collect();
                let ok = join_all(futs).into_iter().filter(|r| r.is_ok()).count();
                assert_eq!(ok, 2000);
            });
        }
    });
    assert_eq!(c.in_flight(), 0);
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
