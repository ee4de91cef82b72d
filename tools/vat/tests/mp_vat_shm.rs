//! vat over every transport against the real server binary: the socket, `--pivot` (socket then
//! a private shared-memory segment) and `--shm PREFIX` (the server's named segment), each in
//! one-shot and script mode; the `sock_init_shm` and `memfd_segment_create` commands inside a
//! session; and what vat says when shared memory cannot be had.

mod support;

use support::{LiveVat, ServerProc, Via};

/// The rows of `show api clients` for client `name`, split into columns: in the socket table
/// and in the shared-memory table (Name, Index, Pid, Transport, Queue Length, Backlog,
/// Health).
fn client_rows(clients: &str, name: &str) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let (socket, shm) = clients
        .split_once("Shared memory clients")
        .unwrap_or_else(|| panic!("no shared-memory table:\n{clients}"));
    let row = |table: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
    };
    (row(socket), row(shm))
}

#[test]
fn mp_vat_every_transport_runs_everything() {
    let server = ServerProc::start_shm("mp_vat_transports", &[]);
    for via in Via::ALL {
        let name = format!("vat-{}", via.kind());
        let thing = format!("thing-{}", via.kind());

        // One-shot: a request, then a dump that shows it.
        let run = server.vat_via(
            via,
            &[
                "--name",
                &name,
                "sw_thing_add_del",
                "name",
                &thing,
                "count",
                "3",
            ],
            None,
        );
        assert!(
            run.ok().starts_with("sw_thing_add_del_reply {"),
            "{via:?}: {run}"
        );
        assert!(run.stdout.contains("retval: 0"), "{via:?}: {run}");
        let run = server.vat_via(via, &["--name", &name, "sw_thing_dump"], None);
        assert!(
            run.ok()
                .contains(&format!("name: \"{thing}\", count: 3, enable: false")),
            "{via:?}: {run}"
        );

        // A script: the CLI, latency, a pipelined burst; all over the same transport.
        let run = server.vat_via(
            via,
            &["--name", &name],
            Some(
                "exec show api clients\n\
                 control_ping\n\
                 ping count 100\n\
                 repeat 1000 control_ping\n\
                 sw_thing_dump\n",
            ),
        );
        let out = run.ok();
        let (socket_row, shm_row) = client_rows(out, &name);
        // A pivoted client keeps its socket registration (the liveness channel).
        assert_eq!(socket_row.is_some(), via != Via::Shm, "{via:?}: {run}");
        match (via, shm_row) {
            (Via::Socket, None) => {}
            (Via::Pivot | Via::Shm, Some(row)) => {
                assert_eq!(row[3], via.kind(), "{run}");
                assert_eq!(row.last().map(String::as_str), Some("OK"), "{run}");
            }
            (_, row) => panic!("{via:?}: shared-memory row {row:?}:\n{run}"),
        }
        assert!(
            out.contains(&format!("vpe_pid: {}", server.pid())),
            "{via:?}: {run}"
        );
        assert!(
            out.contains("ping: 100 sent, 100 received, 0 lost, min/avg/median/p99/max = "),
            "{via:?}: {run}"
        );
        assert!(
            out.contains("repeat: 1000 control_ping in ") && out.contains("(window 32), 0 failed"),
            "{via:?}: {run}"
        );
        assert!(
            out.contains(&format!("name: \"{thing}\"")),
            "{via:?}: {run}"
        );
        assert_eq!(run.stderr, "", "{via:?}");

        // The server lists the registration with the matching transport enum.
        let run = server.vat_via(via, &["--name", &name, "api_client_dump"], None);
        let enum_name = match via {
            Via::Socket => "transport: API_CLIENT_TRANSPORT_SOCKET,",
            Via::Pivot => "transport: API_CLIENT_TRANSPORT_SOCKET_SHM,",
            Via::Shm => "transport: API_CLIENT_TRANSPORT_SHM,",
        };
        assert!(
            run.ok()
                .lines()
                .any(|l| l.contains(&format!("name: \"{name}\"")) && l.contains(enum_name)),
            "{via:?}: {run}"
        );
    }
    // Every one-shot and script said goodbye: no registration is left behind.
    let run = server.vat(&["--name", "last", "exec", "show", "api", "clients"]);
    let out = run.ok();
    for via in Via::ALL {
        assert!(!out.contains(&format!("vat-{}", via.kind())), "{out}");
    }
}

#[test]
fn mp_vat_events_arrive_over_shared_memory() {
    let server = ServerProc::start_shm("mp_vat_shm_events", &[]);
    for via in [Via::Pivot, Via::Shm] {
        let mut watcher = LiveVat::start_via(&server, via, &[]);
        watcher.send("want_sw_thing_events enable pid 99");
        watcher.expect_line("want_sw_thing_events_reply { context: ");
        // While waiting for them.
        watcher.send("events count 1 timeout 20");
        let thing = format!("ev-{}", via.kind());
        server.vat(&["sw_thing_add_del", "name", &thing]).ok();
        let event = watcher.expect_line("sw_thing_event {");
        assert!(
            event.contains(&format!("is_add: true, name: \"{thing}\"")),
            "{via:?}: {event}"
        );
        // Between commands: printed after the next one.
        server
            .vat(&["sw_thing_add_del", "name", &thing, "is_add", "false"])
            .ok();
        watcher.send("control_ping");
        watcher.expect_line("control_ping_reply");
        let late = watcher.expect_line("sw_thing_event {");
        assert!(late.contains("is_add: false"), "{via:?}: {late}");
        let (status, _, err) = watcher.finish();
        assert_eq!(status.code(), Some(0), "{via:?}: {err}");
    }
}

#[test]
fn mp_vat_pivot_commands_in_a_script() {
    let server = ServerProc::start("mp_vat_pivot_script");
    // A long timeout: a refused second pivot that waited for an answer would overrun the
    // test's deadline.
    let run = server.vat_with_input(
        &["--timeout", "60"],
        Some(
            "control_ping\n\
             sock_init_shm\n\
             control_ping\n\
             exec show api clients\n\
             sock_init_shm\n\
             control_ping\n\
             memfd_segment_create size 8m\n\
             repeat 100 control_ping\n",
        ),
    );
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let index_of = |line: &str| {
        let i = line.find("client_index: ").expect("a client_index") + "client_index: ".len();
        line[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    // Over the socket first (socket indexes have bit 31 set), then over shared memory with
    // the index the pivot announced.
    assert!(index_of(lines[0]) & 0x8000_0000 != 0, "{run}");
    let announced = lines[1];
    assert!(
        announced.starts_with(&format!(
            "sock_init_shm: now on socket+shm {}, client index 0x",
            server.path.display()
        )),
        "{run}"
    );
    let shm_index = index_of(lines[2]);
    assert_eq!(shm_index & 0x8000_0000, 0, "{run}");
    assert!(announced.ends_with(&format!("{shm_index:#010x}")), "{run}");
    let (_, row) = client_rows(&run.stdout, "vat");
    assert_eq!(
        row.expect("listed on shared memory")[3],
        "socket+shm",
        "{run}"
    );
    // The second and third pivots are refused without asking the server; the session goes on
    // over the same segment.
    assert_eq!(
        run.stderr,
        "stdin:5: error: sock_init_shm: cannot move to shared memory: the connection is \
         already there (socket+shm); a connection moves once\n\
         stdin:7: error: memfd_segment_create: cannot move to shared memory: the connection \
         is already there (socket+shm); a connection moves once\n"
    );
    let after: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("control_ping_reply"))
        .collect();
    assert_eq!(after.len(), 3, "{run}");
    assert_eq!(index_of(after[2]), shm_index, "{run}");
    assert!(
        run.stdout.contains("repeat: 100 control_ping in ") && run.stdout.contains("0 failed"),
        "{run}"
    );

    // memfd_segment_create with a size: the server's ring listing shows the segment's size.
    let run = server.vat_with_input(
        &["--name", "sized"],
        Some("memfd_segment_create size 8m\ncontrol_ping\nexec show api ring\n"),
    );
    let out = run.ok();
    assert!(
        out.starts_with("memfd_segment_create: now on socket+shm "),
        "{run}"
    );
    assert!(out.contains("sized segment rings ("), "{run}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("sized segment rings (") && l.ends_with(", 8M):")),
        "{run}"
    );

    // As JSON: where the connection went.
    let run = server.vat_with_input(&["--json"], Some("sock_init_shm\n"));
    let v: serde_json::Value = serde_json::from_str(run.ok().trim()).expect("JSON");
    assert_eq!(v["sock_init_shm"]["transport"], "socket+shm");
    assert!(v["sock_init_shm"]["client_index"].as_u64().unwrap() < 0x8000_0000);
}

#[test]
fn mp_vat_pivot_refusals_keep_the_socket() {
    let server = ServerProc::start("mp_vat_pivot_refused");
    // Too large for sock_init_shm's 32-bit size: not sent at all. Too large for the server
    // (it allows 1G): refused with its retval. Too small for the rings: refused. Each time
    // the session stays on the socket, and a pivot that fits then works.
    let run = server.vat_with_input(
        &[],
        Some(
            "sock_init_shm size 5g\n\
             sock_init_shm size 2g\n\
             memfd_segment_create size 64k\n\
             control_ping\n\
             exec show api clients\n\
             sock_init_shm size 1m\n\
             control_ping\n",
        ),
    );
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        "stdin:1: error: sock_init_shm: cannot move to shared memory: its size is 32 bits and \
         5G does not fit (memfd_segment_create takes 64-bit sizes)\n\
         stdin:2: error: sock_init_shm: the server refused the segment with retval -70 \
         (INVALID_MEMORY_SIZE); still on the socket\n\
         stdin:3: error: memfd_segment_create: the server refused the segment with retval -70 \
         (INVALID_MEMORY_SIZE); still on the socket\n"
    );
    let (socket_row, shm_row) = client_rows(&run.stdout, "vat");
    assert!(socket_row.is_some() && shm_row.is_none(), "{run}");
    assert!(
        run.stdout.contains("sock_init_shm: now on socket+shm "),
        "{run}"
    );
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("control_ping_reply"))
            .count(),
        2,
        "{run}"
    );

    // A malformed size is a parse error, said where it is.
    let run = server.vat(&["sock_init_shm", "size", "lots"]);
    run.expect_code(1);
    assert!(run.stderr.contains("expected a memory size"), "{run}");

    // Attached by name there is no socket to pivot from.
    drop(server);
    let server = ServerProc::start_shm("mp_vat_pivot_named", &[]);
    let run = server.vat_via(Via::Shm, &[], Some("sock_init_shm\ncontrol_ping\n"));
    run.expect_code(1);
    assert_eq!(
        run.stderr,
        "stdin:1: error: sock_init_shm: cannot move to shared memory: the connection is \
         already there (shm); a connection moves once\n"
    );
    assert!(run.stdout.starts_with("control_ping_reply"), "{run}");
    // --pivot then the command: refused the same way.
    let run = server.vat_via(Via::Pivot, &["memfd_segment_create"], None);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("the connection is already there (socket+shm)"),
        "{run}"
    );
}
