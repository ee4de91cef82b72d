//! vat's failures against the real server binary: each is said in words a person can act on,
//! and the exit status says failure (1 for a failed command, 2 for a lost or missing server).

mod support;

use std::ffi::OsString;
use std::time::Duration;

use support::{LiveVat, ServerProc, ShmPrefix, Via, run_vat};
use vppinfra::testing::TempDir;

#[test]
fn mp_vat_no_server() {
    let dir = TempDir::new("mp_vat_no_server");
    let path = dir.join("nobody.sock");
    let run = run_vat(
        &[
            "--socket".into(),
            path.clone().into(),
            "control_ping".into(),
        ],
        None,
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!(
            "no server at {} (the socket file does not exist",
            path.display()
        )),
        "{run}"
    );
    assert_eq!(run.stdout, "");

    // A stale socket file nobody listens on.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(listener);
    let run = run_vat(
        &[
            "--socket".into(),
            path.clone().into(),
            "control_ping".into(),
        ],
        None,
    );
    run.expect_code(2);
    assert!(run.stderr.contains("nothing listens on it"), "{run}");
}

#[test]
fn mp_vat_command_errors() {
    let server = ServerProc::start("mp_vat_command_errors");

    // An unknown message: the nearest names.
    let run = server.vat(&["control_pign"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        "error: unknown command or message `control_pign`; did you mean `control_ping`?\n"
    );
    let run = server.vat(&["sw_thing_dmp"]);
    run.expect_code(1);
    assert!(run.stderr.contains("did you mean `sw_thing_dump`"), "{run}");

    // A malformed value: which field, what it takes, a caret under it.
    let run = server.vat(&["sw_thing_add_del", "name", "x", "count", "many"]);
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: expected an unsigned 32-bit number for `count` (u32) at column 31, \
             found \"many\"\n  sw_thing_add_del name x count many\n  {:30}^\n",
            ""
        )
    );
    let run = server.vat(&["sw_thing_add_del", "cuont", "4"]);
    run.expect_code(1);
    assert!(run.stderr.contains("did you mean `count`?"), "{run}");
    let run = server.vat(&["sw_thing_add_del", "count", "99999999999"]);
    run.expect_code(1);
    assert!(run.stderr.contains("(out of range)"), "{run}");
    let long = "x".repeat(64);
    let run = server.vat(&["sw_thing_add_del", "name", &long]);
    run.expect_code(1);
    assert!(run.stderr.contains("cannot encode the request"), "{run}");

    // A non-zero retval: the reply is printed, the failure named, the exit status 1.
    server.vat(&["sw_thing_add_del", "name", "dup"]).ok();
    let run = server.vat(&["sw_thing_add_del", "name", "dup"]);
    run.expect_code(1);
    assert!(run.stdout.contains("retval: -116"), "{run}");
    assert!(
        run.stderr.contains(
            "sw_thing_add_del failed: sw_thing_add_del_reply: retval -116 (ENTRY_ALREADY_EXISTS)"
        ),
        "{run}"
    );

    // exec of an unknown CLI command: retval -1, the server's text on stderr.
    let run = server.vat(&["exec", "show", "nonsense"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("exec `show nonsense` failed with retval -1"),
        "{run}"
    );
    assert!(run.stderr.contains("unknown input"), "{run}");

    // In a script, errors carry the line number, later commands still run, and the status is 1;
    // with --stop-on-error the script stops at the first failure.
    let script = "control_ping\nbogus\ncontrol_ping\n";
    let run = server.vat_with_input(&[], Some(script));
    run.expect_code(1);
    assert_eq!(run.stdout.lines().count(), 2, "{run}");
    assert!(
        run.stderr.starts_with("stdin:2: error: unknown command"),
        "{run}"
    );
    let run = server.vat_with_input(&["--stop-on-error"], Some(script));
    run.expect_code(1);
    assert_eq!(run.stdout.lines().count(), 1, "{run}");

    // Trailing junk after a built-in's arguments.
    let run = server.vat(&["ping", "count", "2", "often"]);
    run.expect_code(1);
    assert!(run.stderr.contains("expected end of input"), "{run}");

    // A module's first id for a module that does not exist: retval -1.
    let run = server.vat(&["get_first_msg_id", "name", "nonexistent"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("get_first_msg_id_reply: retval -1 (UNSPECIFIED)"),
        "{run}"
    );

    // A request whose promised reply never comes (the server has no rpc_call handler): a
    // timeout, exit status 1.
    let run = server.vat(&["--timeout", "0.3", "rpc_call"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("error: timed out after 300.000ms waiting for rpc_call_reply"),
        "{run}"
    );
}

#[test]
fn mp_vat_no_shared_memory_server() {
    // No server publishes the segment: said with its path and the server flag that would, in
    // every mode, exit status 2 and nothing on stdout.
    let prefix = ShmPrefix::new("mp_vat_no_segment");
    let expected = format!(
        "vat: no server at {} (the named shared-memory segment does not exist; is api-server \
         running with --shm-prefix {}?)\n",
        prefix.segment().display(),
        prefix.0
    );
    for (args, stdin) in [
        (vec!["control_ping"], None),
        (vec![], Some("control_ping\n")),
    ] {
        let mut full: Vec<OsString> = vec!["--shm".into(), prefix.0.clone().into()];
        full.extend(args.iter().map(OsString::from));
        let run = run_vat(&full, stdin);
        run.expect_code(2);
        assert_eq!(run.stderr, expected, "{run}");
        assert_eq!(run.stdout, "", "{run}");
    }
    // --pivot needs the socket first.
    let dir = TempDir::new("mp_vat_no_segment");
    let path = dir.join("nobody.sock");
    let run = run_vat(
        &[
            "--socket".into(),
            path.clone().into(),
            "--pivot".into(),
            "control_ping".into(),
        ],
        None,
    );
    run.expect_code(2);
    assert!(
        run.stderr.starts_with(&format!(
            "vat: no server at {} (the socket file does not exist",
            path.display()
        )),
        "{run}"
    );
}

#[test]
fn mp_vat_server_killed_on_shared_memory() {
    // After a pivot, between commands: the socket, still open, says the server is gone.
    let mut server = ServerProc::start("mp_vat_killed_pivot");
    let mut vat = LiveVat::start_via(&server, Via::Pivot, &[]);
    vat.send("control_ping");
    vat.expect_line("control_ping_reply");
    server.child.kill();
    vat.send("control_ping");
    let (status, _, err) = vat.wait_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("the server closed the connection (server gone)"),
        "{err}"
    );

    // Pivoted by command in the session, then killed while vat waits for events: noticed at
    // once (had it not been, vat would wait out its 25 s and fail with status 1).
    let mut server = ServerProc::start("mp_vat_killed_pivot_waiting");
    let mut vat = LiveVat::start(&server, &[]);
    vat.send("sock_init_shm");
    vat.expect_line("sock_init_shm: now on socket+shm");
    vat.send("events count 1 timeout 25");
    std::thread::sleep(Duration::from_millis(100));
    server.child.kill();
    let (status, _, err) = vat.wait_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("server gone"), "{err}");

    // Attached by name there is no socket: the client library sees the doorbell FIFO lose its
    // reader, so the next command finds the server gone at once, as over the socket.
    let mut server = ServerProc::start_shm("mp_vat_killed_named", &[]);
    let mut vat = LiveVat::start_via(&server, Via::Shm, &["--timeout", "20"]);
    vat.send("control_ping");
    vat.expect_line("control_ping_reply");
    server.child.kill();
    let t = std::time::Instant::now();
    vat.send("control_ping");
    let (status, _, err) = vat.wait_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("server gone"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    // The dead server's segment is still there; a new vat says nobody serves it.
    let run = server.vat_via(Via::Shm, &["control_ping"], None);
    run.expect_code(2);
    assert_eq!(
        run.stderr,
        format!(
            "vat: no server at {} (the named shared-memory segment is left over from a server \
             that is gone: nothing reads its doorbell)\n",
            server.shm.as_ref().unwrap().segment().display()
        ),
        "{run}"
    );
}

#[test]
fn mp_vat_server_killed_mid_session() {
    // Killed between commands: the next command finds it gone.
    let mut server = ServerProc::start("mp_vat_killed");
    let mut vat = LiveVat::start(&server, &[]);
    vat.send("control_ping");
    vat.expect_line("control_ping_reply");
    server.child.kill();
    vat.send("control_ping");
    let (status, _, err) = vat.wait_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("the server closed the connection (server gone)"),
        "{err}"
    );

    // Killed while vat waits (for events): vat notices at once, long before its timeout.
    let mut server = ServerProc::start("mp_vat_killed_waiting");
    let mut vat = LiveVat::start(&server, &[]);
    vat.send("control_ping");
    vat.expect_line("control_ping_reply");
    vat.send("events count 1 timeout 25");
    // Give vat a moment to start waiting; the outcome does not depend on it.
    std::thread::sleep(Duration::from_millis(100));
    server.child.kill();
    // Had vat not noticed, it would wait out its 25 s and fail with status 1 ("0 of 1
    // events").
    let (status, _, err) = vat.wait_exit();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("server gone"), "{err}");
}
