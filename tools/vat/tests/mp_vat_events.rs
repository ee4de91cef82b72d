//! Events through vat: one vat subscribes, another changes things, and the first prints the
//! events, both while it waits (`events`) and after an unrelated command.

mod support;

use support::{LiveVat, ServerProc};

#[test]
fn mp_vat_events_from_another_client() {
    let server = ServerProc::start("mp_vat_events");
    let mut watcher = LiveVat::start(&server, &[]);
    watcher.send("want_sw_thing_events enable pid 4242");
    watcher.expect_line("want_sw_thing_events_reply { context: ");

    // Waiting for events: another vat adds and deletes a thing.
    watcher.send("events count 2 timeout 20");
    server
        .vat(&["sw_thing_add_del", "name", "ev1", "count", "3"])
        .ok();
    server
        .vat(&["sw_thing_add_del", "name", "ev1", "is_add", "false"])
        .ok();
    let added = watcher.expect_line("sw_thing_event {");
    assert!(
        added.contains("pid: 4242, thing_index: 0, is_add: true, name: \"ev1\""),
        "{added}"
    );
    let deleted = watcher.expect_line("sw_thing_event {");
    assert!(
        deleted.contains("is_add: false, name: \"ev1\""),
        "{deleted}"
    );

    // Not waiting: an event that arrives between commands is printed after the next one.
    server.vat(&["sw_thing_add_del", "name", "ev2"]).ok();
    watcher.send("control_ping");
    watcher.expect_line("control_ping_reply");
    let late = watcher.expect_line("sw_thing_event {");
    assert!(late.contains("name: \"ev2\""), "{late}");

    // Unsubscribing stops them.
    watcher.send("want_sw_thing_events enable false");
    watcher.expect_line("want_sw_thing_events_reply");
    server.vat(&["sw_thing_add_del", "name", "ev3"]).ok();
    watcher.send("events timeout 0.3");
    let (status, seen, err) = watcher.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("events: 0 of 1 event(s) arrived"), "{err}");
    assert!(!seen.iter().any(|l| l.contains("ev3")), "{seen:?}");
}

#[test]
fn mp_vat_events_as_json() {
    let server = ServerProc::start("mp_vat_events_json");
    let mut watcher = LiveVat::start(&server, &["--json"]);
    watcher.send("want_sw_thing_events enable pid 7");
    watcher.expect_line("want_sw_thing_events_reply");
    watcher.send("events count 1 timeout 20");
    server.vat(&["sw_thing_add_del", "name", "j"]).ok();
    let line = watcher.expect_line("sw_thing_event");
    let v: serde_json::Value = serde_json::from_str(&line).expect("an event as JSON");
    assert_eq!(v["_msgname"], "sw_thing_event");
    assert_eq!(v["name"], "j");
    assert_eq!(v["is_add"], true);
    assert_eq!(v["pid"], 7);
    let (status, _, err) = watcher.finish();
    assert_eq!(status.code(), Some(0), "{err}");
}
