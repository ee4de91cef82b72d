//! The Python package (`python/vlibclient`) under pytest, against the real server (over the
//! socket, after a pivot to shared memory, and attached to its named segment) and a fake server
//! that pings every 20 ms: raw messages, vpp_papi's serializer, a dump, events, callbacks,
//! threads, errors, and Python programs that stay silent (asleep, then busy holding the GIL)
//! while the library answers their pings: over the socket against the fake server, and over
//! shared memory against a real server with a 0.5 s keepalive interval, which must keep them
//! listed as healthy and never log them as not answering. The interpreter is
//! `vppinfra::testing::python()`, whose virtual environment pins vpp-papi and pytest.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{ServerProc, libvlibclient, run_with_deadline};
use vlibclient::testing::{FakeOptions, FakeServer};
use vppinfra::testing;

#[test]
fn mp_python_package_under_pytest() {
    let prefix = format!("py{}-main", std::process::id());
    let server = ServerProc::start(
        "mp_python_srv",
        &["--log-level", "warn", "--shm-prefix", &prefix],
    );
    let ka_prefix = format!("py{}-keepalive", std::process::id());
    let keepalive = ServerProc::start(
        "mp_python_ka",
        &["--keepalive-interval", "0.5", "--shm-prefix", &ka_prefix],
    );
    let pinging = FakeServer::start_with(
        "mp_python_ping",
        FakeOptions {
            ping_every: Some(Duration::from_millis(20)),
        },
    );
    let python = testing::python();
    let pkg = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let (ok, out, err) = run_with_deadline(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"])
            .arg(pkg.join("tests"))
            .current_dir(&pkg)
            .env("PYTHONPATH", &pkg)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("VLIBCLIENT_LIB", libvlibclient())
            .env("VLIB_TEST_SOCKET", &server.path)
            .env("VLIB_TEST_SERVER_PID", server.pid().to_string())
            .env("VLIB_TEST_SHM_PREFIX", &prefix)
            .env("VLIB_TEST_KEEPALIVE_SOCKET", &keepalive.path)
            .env("VLIB_TEST_KEEPALIVE_PREFIX", &ka_prefix)
            .env("VLIB_TEST_KEEPALIVE_LOG", &keepalive.log)
            .env("VLIB_TEST_PINGING_SOCKET", pinging.path()),
        Duration::from_secs(120),
    );
    assert!(
        ok,
        "pytest failed:\n{out}\n{err}\nserver log:\n{}\nkeepalive server log:\n{}",
        server.log_text(),
        keepalive.log_text()
    );
    assert!(out.contains("10 passed"), "{out}");
    // The silent shared-memory programs were pinged, answered, and never reported as silent.
    let ka_log = keepalive.log_text();
    assert!(
        out.contains("keepalive answered") && !ka_log.contains("does not answer pings"),
        "{out}\n{ka_log}"
    );
    // The fake server saw the silent program's replies, each with its ping's context.
    // pytest's progress dots share the line with the test's print.
    let answered: usize = out
        .split("silent answered ")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no count in {out}"));
    let replies = pinging.keepalive_replies();
    assert!(
        replies.len() >= answered && answered >= 20,
        "{} {answered}",
        replies.len()
    );
    assert_eq!(&pinging.pings_sent()[..replies.len()], &replies[..]);
}
