//! `libvlibclient.so` from C: a program compiled here with gcc against `include/vlibclient.h`
//! runs against the real server (request/reply, pipelining, events, a dump, callbacks, several
//! connections in threads, errors) over the socket, after a pivot to shared memory, and
//! attached to the named segment; against fake servers that ping (a storm of keepalives mixed
//! with messages; a program that stays silent), over the socket and over shared memory; and
//! through the server's death while on shared memory.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use example_plugin::msgs as ex;
use support::{ServerProc, compile_c, run_with_deadline};
use vlibapi::wire::Message;
use vlibclient::testing::{FakeOptions, FakeServer, FakeShmServer};
use vppinfra::testing::{self, TempDir};

/// A server prefix unique to this process and test.
fn prefix(tag: &str) -> String {
    format!("c{}-{tag}", std::process::id())
}

/// The example plugin's `name_crc`s, for the C program's `VLC_TEST_*` variables.
fn example_messages() -> Vec<(&'static str, &'static str)> {
    vec![
        ("VLC_TEST_SW_THING_ADD_DEL", ex::SwThingAddDel::NAME_CRC),
        (
            "VLC_TEST_SW_THING_ADD_DEL_REPLY",
            ex::SwThingAddDelReply::NAME_CRC,
        ),
        ("VLC_TEST_SW_THING_DUMP", ex::SwThingDump::NAME_CRC),
        ("VLC_TEST_SW_THING_DETAILS", ex::SwThingDetails::NAME_CRC),
        (
            "VLC_TEST_WANT_SW_THING_EVENTS",
            ex::WantSwThingEvents::NAME_CRC,
        ),
        (
            "VLC_TEST_WANT_SW_THING_EVENTS_REPLY",
            ex::WantSwThingEventsReply::NAME_CRC,
        ),
        ("VLC_TEST_SW_THING_EVENT", ex::SwThingEvent::NAME_CRC),
    ]
}

fn show_api_clients(server: &ServerProc) -> String {
    let mut c = vlibsocket::client::SocketClient::connect(&server.path, "observer").unwrap();
    let r: vlibapi::msgs::vpe::CliInbandReply = c
        .request(&vlibapi::msgs::vpe::CliInband {
            cmd: "show api clients".into(),
            ..Default::default()
        })
        .unwrap();
    r.reply
}

#[test]
fn mp_c_program_against_the_real_server() {
    let dir = TempDir::new("mp_c_server");
    let exe = compile_c("client_test", dir.path());
    let p = prefix("server");
    let server = ServerProc::start(
        "mp_c_server_srv",
        &["--log-level", "warn", "--shm-prefix", &p],
    );
    let mut cmd = Command::new(&exe);
    cmd.arg("server")
        .arg(&server.path)
        .arg(server.pid().to_string())
        .arg(&p)
        .envs(example_messages());
    let (ok, out, err) = run_with_deadline(&mut cmd, Duration::from_secs(90));
    assert!(
        ok,
        "stdout:\n{out}\nstderr:\n{err}\nserver log:\n{}",
        server.log_text()
    );
    assert!(out.contains("server ok"), "{out}");
    // Every C connection said goodbye, on every transport: the server lists none of them.
    let gone = testing::wait_until(Duration::from_secs(5), || {
        let text = show_api_clients(&server);
        !text.contains("c-client") && !text.contains("c-worker") && !text.contains("c-attach")
    });
    assert!(gone, "{}", show_api_clients(&server));
}

/// What the storm needs of a fake server, socket or shared memory.
trait Pinger: Sync {
    fn clients(&self) -> u32;
    fn ping(&self, context: u32);
    fn raw(&self, msg: &[u8]);
    fn replies(&self, n: usize, timeout: Duration) -> Vec<u32>;
    fn sent(&self) -> Vec<u32>;
}

impl Pinger for FakeServer {
    fn clients(&self) -> u32 {
        self.clients_accepted()
    }
    fn ping(&self, context: u32) {
        self.send_keepalive(context);
    }
    fn raw(&self, msg: &[u8]) {
        self.send_raw(msg);
    }
    fn replies(&self, n: usize, timeout: Duration) -> Vec<u32> {
        self.wait_keepalive_replies(n, timeout)
    }
    fn sent(&self) -> Vec<u32> {
        self.pings_sent()
    }
}

impl Pinger for FakeShmServer {
    fn clients(&self) -> u32 {
        self.registrations()
    }
    fn ping(&self, context: u32) {
        self.send_keepalive(context);
    }
    fn raw(&self, msg: &[u8]) {
        self.send_raw(msg);
    }
    fn replies(&self, n: usize, timeout: Duration) -> Vec<u32> {
        self.wait_keepalive_replies(n, timeout)
    }
    fn sent(&self) -> Vec<u32> {
        self.pings_sent()
    }
}

/// 2000 messages, five pings before each: the C program reads exactly the messages, in order,
/// and the library answered every ping, in order, with its own context.
fn ping_storm(tag: &str, server: &dyn Pinger, where_: &str) {
    let dir = TempDir::new(tag);
    let exe = compile_c("client_test", dir.path());
    let n_msgs = 2_000u32;
    let n_pings = 10_000u32;
    let mut cmd = Command::new(&exe);
    cmd.arg("storm").arg(where_).arg(n_msgs.to_string());
    let (ok, out, err) = std::thread::scope(|scope| {
        let storm = scope.spawn(|| {
            assert!(
                testing::wait_until(Duration::from_secs(20), || server.clients() == 1),
                "the C program did not connect"
            );
            // Five pings before every message, so that the program meets every ping before it
            // reads its last message and leaves.
            let mut ctx = 1u32;
            for i in 0..n_msgs {
                for _ in 0..n_pings / n_msgs {
                    server.ping(ctx);
                    ctx += 1;
                }
                let mut m = vec![0u8, 99];
                m.extend_from_slice(&i.to_be_bytes());
                server.raw(&m);
            }
        });
        let r = run_with_deadline(&mut cmd, Duration::from_secs(60));
        storm.join().unwrap();
        r
    });
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let replies = server.replies(n_pings as usize, Duration::from_secs(20));
    assert!(
        replies == (1..=n_pings).collect::<Vec<_>>(),
        "{} replies of {} pings sent, first mismatch at {:?}; stdout:\n{out}\nstderr:\n{err}",
        replies.len(),
        server.sent().len(),
        replies.iter().zip(1..).position(|(&r, i)| r != i)
    );
    assert_eq!(answered(&out), u64::from(n_pings));
}

fn answered(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("answered "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

#[test]
fn mp_c_program_through_a_ping_storm() {
    let server = FakeServer::start("mp_c_storm_srv");
    ping_storm("mp_c_storm", &server, server.path().to_str().unwrap());
}

#[test]
fn mp_c_program_through_a_ping_storm_over_shared_memory() {
    let server = FakeShmServer::start("storm");
    ping_storm(
        "mp_c_storm_shm",
        &server,
        &format!("shm:{}", server.prefix()),
    );
}

/// 1.5 s of silence at one ping per 10 ms: the library answered them (the count is loose
/// because the machine may be slow; a library that does not answer gets zero), each with its
/// ping's context.
fn silent(tag: &str, where_: &str, replies: impl Fn() -> Vec<u32>, sent: impl Fn() -> Vec<u32>) {
    let dir = TempDir::new(tag);
    let exe = compile_c("client_test", dir.path());
    let (ok, out, err) = run_with_deadline(
        Command::new(&exe).arg("silent").arg(where_).arg("1500"),
        Duration::from_secs(30),
    );
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let answered = answered(&out);
    assert!(answered >= 20, "answered {answered}");
    let replies = replies();
    assert!(
        replies.len() as u64 >= answered,
        "{} < {answered}",
        replies.len()
    );
    assert_eq!(
        &sent()[..replies.len()],
        &replies[..],
        "replies carry the pings' contexts"
    );
}

#[test]
fn mp_c_program_silent_keeps_answering() {
    let every = FakeOptions {
        ping_every: Some(Duration::from_millis(10)),
    };
    let server = FakeServer::start_with("mp_c_silent_srv", every.clone());
    silent(
        "mp_c_silent",
        server.path().to_str().unwrap(),
        || server.keepalive_replies(),
        || server.pings_sent(),
    );
    let server = FakeShmServer::start_with("silent", every);
    silent(
        "mp_c_silent_shm",
        &format!("shm:{}", server.prefix()),
        || server.keepalive_replies(),
        || server.pings_sent(),
    );
}

/// The C program connects as `where_`, the server is SIGKILLed, then the program sends and
/// reads: it must survive (no SIGPIPE death) and see the disconnection, not a timeout.
fn death(server: ServerProc, where_: &str, tag: &str) {
    let dir = TempDir::new(tag);
    let exe = compile_c("client_test", dir.path());
    let mut child = Command::new(&exe)
        .arg("death")
        .arg(where_)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().map(Result::unwrap).unwrap_or_default();
    assert_eq!(first, "ready", "{}", server.log_text());
    let mut server = server;
    server.child.signal(nix::sys::signal::Signal::SIGKILL);
    server.child.wait_deadline(Duration::from_secs(10));
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    // The program prints a few lines only, so the pipe cannot fill before it exits.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the C program did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    assert!(
        status.success(),
        "{status} (a SIGPIPE death shows as signal 13); stdout {rest:?}; stderr:\n{err}"
    );
    assert!(rest.iter().any(|l| l == "survived"), "{rest:?}");
    eprintln!("{tag}: {}", rest.join("; "));
}

#[test]
fn mp_c_program_survives_the_server_dying_on_shared_memory() {
    let server = ServerProc::start("mp_c_death_pivot", &["--log-level", "warn"]);
    let where_ = format!("pivot:{}", server.path.display());
    death(server, &where_, "mp_c_death_pivot");

    let p = prefix("death");
    let server = ServerProc::start(
        "mp_c_death_named",
        &["--log-level", "warn", "--shm-prefix", &p],
    );
    death(server, &format!("shm:{p}"), "mp_c_death_named");
}
