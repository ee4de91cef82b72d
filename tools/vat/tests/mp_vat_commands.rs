//! vat against the real server binary, in one-shot and script mode: every built-in, plain
//! requests, dumps, and `--json` output (checked with an independent JSON parser).

mod support;

use support::ServerProc;

/// Parses every stdout line as JSON.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn mp_vat_one_shot_requests_and_dumps() {
    let server = ServerProc::start("mp_vat_one_shot");

    // A plain request: the reply printed field by field, client_index filled in by vat.
    let out = server.vat(&["control_ping"]).ok().to_owned();
    assert!(out.starts_with("control_ping_reply { context: "), "{out}");
    assert!(out.contains(&format!("vpe_pid: {}", server.pid())), "{out}");
    assert!(out.contains("retval: 0"), "{out}");

    // Fields by name, a bare flag, a default (`is_add` defaults to true), a quoted string.
    let out = server
        .vat(&["sw_thing_add_del", "name", "foo", "count", "4", "enable"])
        .ok()
        .to_owned();
    assert!(out.starts_with("sw_thing_add_del_reply {"), "{out}");
    assert!(out.contains("retval: 0, thing_index: 0"), "{out}");
    // The shell removed the quotes; vat puts them back so the name stays one value.
    server
        .vat(&["sw_thing_add_del", "name", "two words", "count", "0x10"])
        .ok();

    // A dump: every detail, and the trailing control_ping_reply is not printed.
    let out = server.vat(&["sw_thing_dump"]).ok().to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("thing_index: 0, name: \"foo\", count: 4, enable: true"),
        "{out}"
    );
    assert!(
        lines[1].contains("thing_index: 1, name: \"two words\", count: 16, enable: false"),
        "{out}"
    );
    assert!(!out.contains("control_ping_reply"), "{out}");

    // The same dump as JSON: one object per detail, parsed by serde_json.
    let run = server.vat(&["--json", "sw_thing_dump"]);
    let objs = json_lines(run.ok());
    assert_eq!(objs.len(), 2);
    assert_eq!(objs[0]["_msgname"], "sw_thing_details");
    assert_eq!(objs[0]["name"], "foo");
    assert_eq!(objs[0]["count"], 4);
    assert_eq!(objs[0]["enable"], true);
    assert_eq!(objs[1]["name"], "two words");

    // Deleting through is_add false; then the dump has one thing left.
    server
        .vat(&["sw_thing_add_del", "name", "foo", "is_add", "false"])
        .ok();
    let out = server.vat(&["sw_thing_dump"]).ok().to_owned();
    assert_eq!(out.lines().count(), 1, "{out}");

    // An enum field prints by name (api_client_dump lists us as a socket client).
    let out = server.vat(&["api_client_dump"]).ok().to_owned();
    assert!(
        out.contains("name: \"vat\", transport: API_CLIENT_TRANSPORT_SOCKET"),
        "{out}"
    );
    let out = server
        .vat(&["--name", "other-name", "api_client_dump"])
        .ok()
        .to_owned();
    assert!(out.contains("name: \"other-name\""), "{out}");
}

#[test]
fn mp_vat_builtins() {
    let server = ServerProc::start("mp_vat_builtins");

    // exec: the CLI reply text as it is.
    let out = server.vat(&["exec", "show", "version"]).ok().to_owned();
    assert!(out.starts_with("api-server "), "{out}");
    assert!(out.contains(&format!("(pid {})", server.pid())), "{out}");
    let out = server
        .vat(&["exec_inband", "show api plugins"])
        .ok()
        .to_owned();
    assert!(out.contains("example"), "{out}");

    // dump_msg_api_table: the whole table in id order.
    let out = server.vat(&["dump_msg_api_table"]).ok().to_owned();
    assert!(out.contains("   23  control_ping_51077d14"), "{out}");
    assert!(out.contains("   15  sockclnt_create_455fb9c4"), "{out}");
    assert!(out.contains("sw_thing_add_del_"), "{out}");
    let ids: Vec<u32> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{out}");

    // get_msg_id by name_crc and by name.
    assert_eq!(
        server.vat(&["get_msg_id", "control_ping_51077d14"]).ok(),
        "control_ping_51077d14 has id 23\n"
    );
    assert_eq!(
        server.vat(&["get_msg_id", "control_ping"]).ok(),
        "control_ping_51077d14 has id 23\n"
    );

    // api_versions: every module with its version.
    let out = server.vat(&["api_versions"]).ok().to_owned();
    for line in [
        "memclnt                  2.1.0",
        "example                  1.0.0",
    ] {
        assert!(out.contains(line), "{out}");
    }

    // ping: count, interval, statistics.
    let out = server
        .vat(&["ping", "count", "3", "interval", "0.01"])
        .ok()
        .to_owned();
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("control_ping_reply from pid"))
            .count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("ping: 3 sent, 3 received, 0 lost, min/avg/median/p99/max = "),
        "{out}"
    );

    // time: the command's output, then the elapsed time.
    let out = server.vat(&["time", "control_ping"]).ok().to_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("control_ping_reply"), "{out}");
    assert!(
        lines[1].starts_with("time: ") && lines[1].ends_with(" ms"),
        "{out}"
    );

    // repeat: pipelined, all answered; a dump and a CLI command can be repeated too.
    let out = server
        .vat(&["repeat", "500", "window", "8", "control_ping"])
        .ok()
        .to_owned();
    assert!(out.starts_with("repeat: 500 control_ping in "), "{out}");
    assert!(out.contains("(window 8), 0 failed"), "{out}");
    let out = server
        .vat(&["repeat", "50", "sw_thing_dump"])
        .ok()
        .to_owned();
    assert!(out.starts_with("repeat: 50 sw_thing_dump"), "{out}");
    let out = server
        .vat(&["repeat", "20", "exec", "show", "version"])
        .ok()
        .to_owned();
    assert!(out.starts_with("repeat: 20 cli_inband"), "{out}");
    // help: the overview, one message's fields, a built-in, the value syntax.
    let out = server.vat(&["help"]).ok().to_owned();
    assert!(
        out.contains("ping [count <n>] [interval <seconds>]"),
        "{out}"
    );
    assert!(out.contains("example 1.0.0:"), "{out}");
    assert!(out.contains("sw_thing_add_del"), "{out}");
    let out = server.vat(&["help", "sw_thing_add_del"]).ok().to_owned();
    assert!(
        out.starts_with("sw_thing_add_del (module example, id "),
        "{out}"
    );
    assert!(out.contains("replies sw_thing_add_del_reply"), "{out}");
    assert!(out.contains("  is_add  bool  (default true)"), "{out}");
    assert!(out.contains("  name    string[64]"), "{out}");
    assert!(out.contains("  count   u32"), "{out}");
    assert!(
        out.contains("(client_index and context filled in by vat)"),
        "{out}"
    );
    let out = server.vat(&["help", "repeat"]).ok().to_owned();
    assert!(
        out.starts_with("repeat <n> [window <w>] <command>"),
        "{out}"
    );
    let out = server.vat(&["help", "syntax"]).ok().to_owned();
    assert!(out.contains("{ member value member value }"), "{out}");

    // events with nothing subscribed: a timeout, reported as a failure.
    let run = server.vat(&["events", "timeout", "0.2"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("events: 0 of 1 event(s) arrived within"),
        "{run}"
    );

    // quit / exit end a script early: what follows is not run.
    let run = server.vat_with_input(&[], Some("control_ping\nquit\nbogus_command\n"));
    assert_eq!(run.ok().lines().count(), 1, "{run}");
    let run = server.vat_with_input(&[], Some("exit\ncontrol_ping\n"));
    assert_eq!(run.ok(), "", "{run}");
}

#[test]
fn mp_vat_scripts_and_json() {
    let server = ServerProc::start("mp_vat_scripts");
    let script = server.file(
        "setup.vat",
        "# a comment, then a blank line\n\
         \n\
         sw_thing_add_del name a count 1\n\
         sw_thing_add_del name b count 2 enable true\n\
         sw_thing_dump\n\
         exec show example things\n",
    );
    let run = server.vat(&["--exec", script.to_str().unwrap()]);
    let out = run.ok();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("sw_thing_add_del_reply"), "{run}");
    assert!(lines[1].starts_with("sw_thing_add_del_reply"), "{run}");
    assert!(
        lines[2].contains("name: \"a\", count: 1, enable: false"),
        "{run}"
    );
    assert!(
        lines[3].contains("name: \"b\", count: 2, enable: true"),
        "{run}"
    );
    assert!(
        lines[4].contains("Index") && lines[4].contains("Name"),
        "{run}"
    );
    assert!(out.contains("0 subscriber(s)"), "{run}");

    // The same commands on stdin (not a terminal): script mode.
    let run = server.vat_with_input(&[], Some("sw_thing_dump\ncontrol_ping\n"));
    assert_eq!(run.ok().lines().count(), 3, "{run}");

    // Every kind of output as JSON, each line parsed by serde_json.
    let run = server.vat_with_input(
        &["--json"],
        Some(
            "sw_thing_dump\n\
             exec show version\n\
             dump_msg_api_table\n\
             get_msg_id control_ping\n\
             api_versions\n\
             ping count 2\n\
             time control_ping\n\
             repeat 10 control_ping\n",
        ),
    );
    let objs = json_lines(run.ok());
    assert_eq!(objs.len(), 2 + 7 + 1, "{run}");
    assert_eq!(objs[0]["_msgname"], "sw_thing_details");
    assert_eq!(objs[2]["_msgname"], "cli_inband_reply");
    assert!(objs[2]["reply"].as_str().unwrap().starts_with("api-server"));
    assert_eq!(objs[3]["message_table"][22]["id"], 23);
    assert_eq!(
        objs[3]["message_table"][22]["name_crc"],
        "control_ping_51077d14"
    );
    assert_eq!(objs[4]["id"], 23);
    assert_eq!(objs[5]["_msgname"], "api_versions_reply");
    assert_eq!(objs[5]["api_versions"][0]["name"], "memclnt");
    assert_eq!(objs[6]["ping"]["received"], 2);
    assert!(objs[6]["ping"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(objs[7]["_msgname"], "control_ping_reply");
    assert!(objs[8]["time_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(objs[9]["repeat"]["requests"], 10);
    assert_eq!(objs[9]["repeat"]["failed"], 0);
}
