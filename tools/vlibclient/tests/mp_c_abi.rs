//! `libvlibclient.so` from C: a program compiled here with gcc against `include/vlibclient.h`
//! runs against the real server (request/reply, pipelining, callbacks, several connections in
//! threads, errors, the pivot) and against a fake server that pings (a storm of keepalives
//! mixed with messages; a program that stays silent).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{ServerProc, compile_c, run_with_deadline};
use vlibclient::testing::{FakeOptions, FakeServer};
use vppinfra::testing::{self, TempDir};

/// Whether the shared-memory transport exists. The C program expects `vlc_pivot_to_shm` and
/// `vlc_attach_shm` to succeed when this is true, and to fail with `VLC_E_NOT_AVAILABLE`
/// (changing nothing) when it is false.
const SHM_AVAILABLE: bool = false;

#[test]
fn mp_c_program_against_the_real_server() {
    let dir = TempDir::new("mp_c_server");
    let exe = compile_c("client_test", dir.path());
    let server = ServerProc::start("mp_c_server_srv", &["--log-level", "warn"]);
    let (ok, out, err) = run_with_deadline(
        Command::new(&exe)
            .arg("server")
            .arg(&server.path)
            .arg(server.pid().to_string())
            .arg(if SHM_AVAILABLE { "1" } else { "0" }),
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "stdout:\n{out}\nstderr:\n{err}\nserver log:\n{}",
        server.log_text()
    );
    assert!(out.contains("server ok"), "{out}");
    // Every C connection said goodbye: the server lists none of them.
    let mut c = vlibsocket::client::SocketClient::connect(&server.path, "after-c").unwrap();
    let r: vlibapi::msgs::vpe::CliInbandReply = c
        .request(&vlibapi::msgs::vpe::CliInband {
            cmd: "show api clients".into(),
            ..Default::default()
        })
        .unwrap();
    assert!(
        !r.reply.contains("c-client") && !r.reply.contains("c-worker"),
        "{}",
        r.reply
    );
}

#[test]
fn mp_c_program_through_a_ping_storm() {
    let dir = TempDir::new("mp_c_storm");
    let exe = compile_c("client_test", dir.path());
    let server = FakeServer::start("mp_c_storm_srv");
    let n_msgs = 2_000u32;
    let n_pings = 10_000u32;
    let mut cmd = Command::new(&exe);
    cmd.arg("storm").arg(server.path()).arg(n_msgs.to_string());
    let (ok, out, err) = std::thread::scope(|scope| {
        let storm = scope.spawn(|| {
            assert!(
                testing::wait_until(Duration::from_secs(20), || server.clients_accepted() == 1),
                "the C program did not connect"
            );
            // Five pings before every message, so that the program meets every ping before it
            // reads its last message and leaves.
            let mut ctx = 1u32;
            for i in 0..n_msgs {
                for _ in 0..n_pings / n_msgs {
                    server.send_keepalive(ctx);
                    ctx += 1;
                }
                let mut m = vec![0u8, 99];
                m.extend_from_slice(&i.to_be_bytes());
                server.send_raw(&m);
            }
        });
        let r = run_with_deadline(&mut cmd, Duration::from_secs(60));
        storm.join().unwrap();
        r
    });
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    // Every ping was answered, in order, with its own context.
    let replies = server.wait_keepalive_replies(n_pings as usize, Duration::from_secs(20));
    assert!(
        replies == (1..=n_pings).collect::<Vec<_>>(),
        "{} replies of {} pings sent, first mismatch at {:?}; stdout:\n{out}\nstderr:\n{err}",
        replies.len(),
        server.pings_sent().len(),
        replies.iter().zip(1..).position(|(&r, i)| r != i)
    );
    let answered: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("answered "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"));
    assert_eq!(answered, u64::from(n_pings));
}

#[test]
fn mp_c_program_silent_keeps_answering() {
    let dir = TempDir::new("mp_c_silent");
    let exe = compile_c("client_test", dir.path());
    let server = FakeServer::start_with(
        "mp_c_silent_srv",
        FakeOptions {
            ping_every: Some(Duration::from_millis(10)),
        },
    );
    let (ok, out, err) = run_with_deadline(
        Command::new(&exe)
            .arg("silent")
            .arg(server.path())
            .arg("1500"),
        Duration::from_secs(30),
    );
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let answered: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("answered "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"));
    // 1.5 s of silence at one ping per 10 ms: the library answered them (the count is loose
    // because the machine may be slow; a library that does not answer gets zero).
    assert!(answered >= 20, "answered {answered}");
    let replies = server.keepalive_replies();
    assert!(
        replies.len() as u64 >= answered,
        "{} < {answered}",
        replies.len()
    );
    let sent = server.pings_sent();
    assert_eq!(
        &sent[..replies.len()],
        &replies[..],
        "replies carry the pings' contexts"
    );
}
