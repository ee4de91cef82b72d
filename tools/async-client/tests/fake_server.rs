//! The async client against the fake server of `vlibclient::testing`, which can ping, stop
//! answering, send stray replies and drop the client: routing, cancellation, timeouts,
//! keepalives, the health check and reconnection.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use async_client::{
    Client, ConnectError, HealthCheck, Options, Reconnect, RequestError, Status, StatusEvent,
    Transport,
};
use common::{block_on_for, join_all, poll_once};
use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibapi::wire::{self, Message};
use vlibclient::conn::PivotError;
use vlibclient::testing::{FakeOptions, FakeServer, FakeShmServer, fake_client_index};

const LIMIT: Duration = Duration::from_secs(20);

fn opts(server: &FakeServer) -> Options {
    Options::socket(server.path(), "async-test")
}

fn ping_reply_bytes(server: &FakeServer, context: u32) -> Vec<u8> {
    let id = server.table().id_of::<ControlPingReply>().unwrap();
    wire::to_vec(
        &ControlPingReply {
            context,
            ..Default::default()
        },
        id,
    )
    .unwrap()
}

#[test]
fn many_requests_in_flight_complete() {
    let server = FakeServer::start("async_many");
    let client = Client::connect(opts(&server)).unwrap();
    assert_eq!(client.client_index(), Some(fake_client_index(0)));
    let futs: Vec<_> = (0..1000)
        .map(|_| client.request::<_, ControlPingReply>(&ControlPing::default()))
        .collect();
    let contexts: std::collections::BTreeSet<u32> = futs.iter().map(|f| f.context()).collect();
    assert_eq!(contexts.len(), 1000, "every request has its own context");
    let replies = join_all(futs);
    assert!(
        replies
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.vpe_pid == std::process::id()))
    );
    assert_eq!(client.in_flight(), 0);
    // The replies' contexts are the requests'.
    let got: std::collections::BTreeSet<u32> =
        replies.into_iter().map(|r| r.unwrap().context).collect();
    assert_eq!(got, contexts);
}

#[test]
fn pings_are_answered_while_idle_and_never_surface() {
    let server = FakeServer::start_with(
        "async_pings",
        FakeOptions {
            ping_every: Some(Duration::from_millis(10)),
        },
    );
    let client = Client::connect(opts(&server)).unwrap();
    let replies = server.wait_keepalive_replies(20, LIMIT);
    assert!(replies.len() >= 20);
    assert_eq!(&server.pings_sent()[..replies.len()], &replies[..]);
    let mut events = client.events();
    assert!(
        poll_once(&mut events.next()).is_pending(),
        "a ping surfaced"
    );
    assert!(client.pings_answered() >= 20);
}

#[test]
fn dropping_a_request_discards_its_late_reply() {
    let server = FakeServer::start("async_cancel");
    let client = Client::connect(opts(&server)).unwrap();
    server.set_answer_pings(false);
    let mut req = client.request::<_, ControlPingReply>(&ControlPing::default());
    let context = req.context();
    assert!(poll_once(&mut req).is_pending());
    assert_eq!(client.in_flight(), 1);
    drop(req);
    assert_eq!(client.in_flight(), 0);
    // The late reply arrives, then an event: only the event surfaces.
    server.send_raw(&ping_reply_bytes(&server, context));
    server.send_raw(&[0, 99, 0, 0, 0, 0]);
    let mut events = client.events();
    let ev = block_on_for(LIMIT, events.next()).unwrap();
    assert_eq!(ev.bytes, vec![0, 99, 0, 0, 0, 0]);
    // The connection is still good.
    server.set_answer_pings(true);
    block_on_for(
        LIMIT,
        client.request::<_, ControlPingReply>(&ControlPing::default()),
    )
    .unwrap();
}

#[test]
fn a_reply_with_an_unknown_context_is_an_event() {
    let server = FakeServer::start("async_stray");
    let client = Client::connect(opts(&server)).unwrap();
    server.send_raw(&ping_reply_bytes(&server, 0xabcdef));
    let ev = block_on_for(LIMIT, client.events().next()).unwrap();
    assert_eq!(ev.name_crc.as_deref(), Some(ControlPingReply::NAME_CRC));
}

#[test]
fn the_event_queue_is_bounded() {
    let server = FakeServer::start("async_events_bound");
    let mut o = opts(&server);
    o.event_queue_len = 2;
    let client = Client::connect(o).unwrap();
    for i in 0..5u8 {
        server.send_raw(&[0, 99, 0, 0, 0, i]);
    }
    assert!(vppinfra::testing::wait_until(LIMIT, || client
        .events_dropped()
        == 3));
    let mut events = client.events();
    let first = block_on_for(LIMIT, events.next()).unwrap();
    let second = block_on_for(LIMIT, events.next()).unwrap();
    assert_eq!(
        (first.bytes[5], second.bytes[5]),
        (0, 1),
        "the oldest are kept"
    );
    assert!(poll_once(&mut events.next()).is_pending());
}

#[test]
fn unanswered_requests_time_out() {
    let server = FakeServer::start("async_timeout");
    let mut o = opts(&server);
    o.request_timeout = Some(Duration::from_millis(100));
    let client = Client::connect(o).unwrap();
    server.set_answer_pings(false);
    let r = block_on_for(
        LIMIT,
        client.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::Timeout);
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn health_check_reports_unhealthy_then_healthy() {
    let server = FakeServer::start("async_health");
    let mut o = opts(&server);
    o.health_check = Some(HealthCheck {
        interval: Duration::from_millis(30),
        timeout: Duration::from_millis(20),
        max_misses: 3,
    });
    let client = Client::connect(o).unwrap();
    let mut status = client.status_events();
    server.set_answer_pings(false);
    assert_eq!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Unhealthy)
    );
    assert_eq!(client.status(), Status::Unhealthy);
    // Three misses in a row, no fewer.
    let probes =
        server.wait_messages_with_id(client.msg_id(ControlPing::NAME_CRC).unwrap(), 3, LIMIT);
    assert!(probes.len() >= 3);
    server.set_answer_pings(true);
    assert_eq!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Healthy)
    );
    assert_eq!(client.status(), Status::Connected);
    // Unanswered probes never surface as events, even when their replies come late.
    let mut events = client.events();
    assert!(poll_once(&mut events.next()).is_pending());
}

#[test]
fn an_unhealthy_connection_is_replaced_when_reconnect_is_on() {
    let server = FakeServer::start("async_hc_reconnect");
    let mut o = opts(&server);
    o.health_check = Some(HealthCheck {
        interval: Duration::from_millis(30),
        timeout: Duration::from_millis(20),
        max_misses: 3,
    });
    o.reconnect = Some(Reconnect {
        initial_delay: Duration::from_millis(10),
        ..Reconnect::default()
    });
    let client = Client::connect(o).unwrap();
    let mut status = client.status_events();
    server.set_answer_pings(false);
    let ev = block_on_for(LIMIT, status.next()).unwrap();
    assert!(
        matches!(ev, StatusEvent::Disconnected(ref why) if why.contains("health check")),
        "{ev:?}"
    );
    server.set_answer_pings(true);
    let ev = block_on_for(LIMIT, status.next()).unwrap();
    assert_eq!(
        ev,
        StatusEvent::Reconnected {
            attempts: 1,
            client_index: fake_client_index(1)
        }
    );
    assert_eq!(client.reconnects(), 1);
    block_on_for(
        LIMIT,
        client.request::<_, ControlPingReply>(&ControlPing::default()),
    )
    .unwrap();
}

#[test]
fn a_lost_connection_fails_requests_in_flight() {
    let server = FakeServer::start("async_lost");
    let client = Client::connect(opts(&server)).unwrap();
    server.set_answer_pings(false);
    let mut req = client.request::<_, ControlPingReply>(&ControlPing::default());
    assert!(poll_once(&mut req).is_pending());
    server.close_client();
    assert_eq!(
        block_on_for(LIMIT, req).unwrap_err(),
        RequestError::Disconnected
    );
    assert!(vppinfra::testing::wait_until(LIMIT, || client.status() == Status::Closed));
    let r = block_on_for(
        LIMIT,
        client.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::NotConnected);
    // Streams end once the client is closed.
    assert_eq!(block_on_for(LIMIT, client.events().next()), None);
}

#[test]
fn reconnect_backs_off_and_gives_up() {
    let server = FakeServer::start("async_giveup");
    let path = server.path().to_owned();
    let mut o = opts(&server);
    o.reconnect = Some(Reconnect {
        max_attempts: Some(3),
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(80),
        multiplier: 2.0,
    });
    let client = Client::connect(o).unwrap();
    let mut status = client.status_events();
    let started = std::time::Instant::now();
    drop(server); // the listener stops accepting: every attempt is refused or times out
    let _ = std::fs::remove_file(&path);
    assert!(matches!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Disconnected(_))
    ));
    assert_eq!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::ReconnectFailed { attempts: 3 })
    );
    // 20 + 40 + 80 ms of backoff at least.
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert_eq!(client.status(), Status::Closed);
    assert_eq!(block_on_for(LIMIT, status.next()), None);
}

#[test]
fn attached_by_name_requests_complete_and_pings_never_surface() {
    let server = FakeShmServer::start("async_named");
    let client = Client::connect(Options::shm_by_name(Some(server.prefix()), "async-shm")).unwrap();
    assert!(client.client_index().is_some_and(|i| i & 0x8000_0000 == 0));
    let futs: Vec<_> = (0..1000)
        .map(|_| client.request::<_, ControlPingReply>(&ControlPing::default()))
        .collect();
    let replies = join_all(futs);
    assert!(
        replies.iter().all(|r| r.is_ok()),
        "{:?}",
        replies.iter().find(|r| r.is_err())
    );
    assert_eq!(client.in_flight(), 0);
    // A storm of pings while idle: all answered, in order, none an event.
    for c in 1..=300 {
        server.send_keepalive(c);
    }
    let replies = server.wait_keepalive_replies(300, LIMIT);
    assert_eq!(replies, (1..=300).collect::<Vec<u32>>());
    assert_eq!(client.pings_answered(), 300);
    let mut events = client.events();
    assert!(
        poll_once(&mut events.next()).is_pending(),
        "a ping surfaced"
    );
    client.close();
    assert!(server.saw_delete(), "close says memclnt_delete");
}

#[test]
fn attached_by_name_a_dead_server_fails_requests_in_flight_and_timeouts_still_work() {
    let mut server = FakeShmServer::start("async_named_dead");
    let mut o = Options::shm_by_name(Some(server.prefix()), "async-orphan");
    o.request_timeout = Some(Duration::from_millis(100));
    let client = Client::connect(o).unwrap();
    // An unanswered request times out on shared memory as on the socket.
    server.set_answer_pings(false);
    let r = block_on_for(
        LIMIT,
        client.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::Timeout);
    // The server dies: what is in flight fails as disconnected, and the client closes.
    let mut status = client.status_events();
    let mut req = client.request::<_, ControlPingReply>(&ControlPing::default());
    assert!(poll_once(&mut req).is_pending());
    server.kill();
    assert_eq!(
        block_on_for(LIMIT, req).unwrap_err(),
        RequestError::Disconnected
    );
    assert!(matches!(
        block_on_for(LIMIT, status.next()),
        Some(StatusEvent::Disconnected(_))
    ));
    assert_eq!(client.status(), Status::Closed);
}

#[test]
fn shared_memory_connect_errors_say_why() {
    // The fake socket server does not know sock_init_shm: the pivot times out and the client
    // is not created.
    let server = FakeServer::start("async_shm_pivot_fail");
    let mut o = opts(&server);
    o.transport = Transport::ShmPivot {
        socket: server.path().to_owned(),
        segment_size: 0,
    };
    o.connect.timeout = Duration::from_millis(200);
    let e = Client::connect(o).unwrap_err();
    assert!(
        matches!(e, ConnectError::Pivot(PivotError::Timeout { .. })),
        "{e}"
    );
    let prefix = format!("async{}-nobody", std::process::id());
    let e = Client::connect(Options::shm_by_name(Some(&prefix), "x")).unwrap_err();
    assert!(matches!(e, ConnectError::Attach(_)), "{e}");
    assert!(e.to_string().contains("named segment"), "{e}");
}

#[test]
fn connect_async_and_close() {
    let server = FakeServer::start("async_connect");
    let client = block_on_for(LIMIT, Client::connect_async(opts(&server))).unwrap();
    let clone = client.clone();
    block_on_for(
        LIMIT,
        clone.request::<_, ControlPingReply>(&ControlPing::default()),
    )
    .unwrap();
    client.close();
    assert!(server.saw_delete(), "close says sockclnt_delete");
    assert_eq!(clone.status(), Status::Closed);
    let r = block_on_for(
        LIMIT,
        clone.request::<_, ControlPingReply>(&ControlPing::default()),
    );
    assert_eq!(r.unwrap_err(), RequestError::NotConnected);
}

#[test]
fn the_io_thread_parks_at_once_on_shared_memory_by_default() {
    // It relays replies to the tasks; spinning for them would compete with those tasks.
    let park = vlibclient::conn::WaitPolicy::SpinThenPark { spins: 0 };
    for o in [
        Options::socket("/x", "n"),
        Options::shm_pivot("/x", "n"),
        Options::shm_by_name(Some("p"), "n"),
    ] {
        assert_eq!(o.connect.shm_wait, park, "{:?}", o.transport);
    }
}
