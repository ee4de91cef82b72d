//! `cargo xtask bench socket`: `control_ping` over the API socket, beside raw AF_UNIX baselines
//! measured in the same run with the same frame sizes (26-byte request, 34-byte reply).
//!
//! - raw blocking ping-pong: a child process echoes with blocking `read`/`write`;
//! - raw busy-poll ping-pong: both sides spin on non-blocking `recv`;
//! - raw pipelined echo: the limit for many requests in flight;
//! - ours: the real `api-server` binary, one request in flight (sync), then many (pipelined),
//!   both with pre-encoded frames (the server's cost) and through `SocketClient` (the client
//!   library's cost on top).
//!
//! Goals (printed as met or MISSED): sync RTT <= 1.1x the raw blocking ping-pong; pipelined >=
//! 2M request/reply pairs per second.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibapi::wire::Message;
use vlibsocket::client::SocketClient;
use vlibsocket::frame::{FrameReader, ReadOutcome, header};
use vppinfra::bench::{Bench, Goal};

const REQ_LEN: usize = 16 + 10;
const REPLY_LEN: usize = 16 + 18;
const ROLE_ENV: &str = "SOCKET_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let path = PathBuf::from(std::env::var("SOCKET_BENCH_PATH").unwrap());
        match role.as_str() {
            "echo-blocking" => echo(&path, false),
            "echo-poll" => echo(&path, true),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let mut b = Bench::from_args("socket");
    let dir = std::env::temp_dir().join(format!("socket-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let rtt_ops = 20_000;
    let pipe_ops = 2_000_000;

    // Raw baselines.
    let blocking = {
        let (mut child, mut s) = start_echo(&dir, "echo-blocking");
        let r = b.run("raw AF_UNIX blocking ping-pong", rtt_ops, |n| {
            raw_pingpong(&mut s, n, false)
        });
        drop(s);
        let _ = child.wait();
        r
    };
    let polling = {
        let (mut child, mut s) = start_echo(&dir, "echo-poll");
        s.set_nonblocking(true).unwrap();
        let r = b.run_vs("raw AF_UNIX busy-poll ping-pong", rtt_ops, &blocking, |n| {
            raw_pingpong(&mut s, n, true)
        });
        drop(s);
        let _ = child.wait();
        r
    };
    let _ = polling;
    let raw_pipe = {
        let (mut child, mut s) = start_echo(&dir, "echo-blocking");
        let r = b.run("raw AF_UNIX pipelined echo", pipe_ops, |n| {
            raw_pipelined(&mut s, n)
        });
        drop(s);
        let _ = child.wait();
        r
    };

    // The real server.
    let sock = dir.join("api.sock");
    let mut server = start_server(&sock);
    let mut client = SocketClient::connect(&sock, "bench").unwrap();
    let ping_id = client.msg_id(ControlPing::NAME_CRC).unwrap();
    let index = client.client_index();
    let mut raw = UnixStream::connect(&sock).unwrap();
    register_raw(&mut raw);

    let sync_raw = b.run_vs(
        "control_ping sync RTT (pre-encoded)",
        rtt_ops,
        &blocking,
        |n| ours_sync_raw(&mut raw, ping_id, index, n),
    );
    b.goal(&sync_raw, Goal::RatioAtMost(1.1));
    let sync_client = b.run_vs(
        "control_ping sync RTT (SocketClient)",
        rtt_ops,
        &blocking,
        |n| {
            for _ in 0..n {
                let _: ControlPingReply = client.request(&ControlPing::default()).unwrap();
            }
        },
    );
    b.goal(&sync_client, Goal::RatioAtMost(1.1));
    let pipelined = b.run_vs(
        "control_ping pipelined (pre-encoded)",
        pipe_ops,
        &raw_pipe,
        |n| ours_pipelined_raw(&mut raw, ping_id, index, n),
    );
    b.goal(&pipelined, Goal::RateAtLeast(2e6));
    let pipelined_client = b.run_vs(
        "control_ping pipelined (SocketClient)",
        pipe_ops / 4,
        &raw_pipe,
        |n| {
            let window = 256;
            let mut sent = 0;
            let mut ctxs = std::collections::VecDeque::new();
            let mut done = 0;
            while done < n {
                while sent < n && ctxs.len() < window {
                    ctxs.push_back(client.send(&ControlPing::default()).unwrap());
                    sent += 1;
                }
                client.flush().unwrap();
                while ctxs.len() > window / 2 || (sent == n && !ctxs.is_empty()) {
                    let c = ctxs.pop_front().unwrap();
                    let _: ControlPingReply = client.wait_reply(c).unwrap();
                    done += 1;
                }
            }
        },
    );
    b.goal(&pipelined_client, Goal::RateAtLeast(2e6));
    drop(client);
    drop(raw);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_echo(dir: &Path, role: &str) -> (Child, UnixStream) {
    let path = dir.join(format!("{role}.sock"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE_ENV, role)
        .env("SOCKET_BENCH_PATH", &path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (s, _) = listener.accept().unwrap();
    (child, s)
}

/// The echo child: connects back and answers each 26-byte request with a 34-byte reply.
fn echo(path: &Path, poll: bool) {
    // The parent listens; this side connects.
    let mut s = UnixStream::connect(path).unwrap();
    let reply = [7u8; REPLY_LEN];
    if poll {
        s.set_nonblocking(true).unwrap();
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut pending = 0usize;
    let mut out = Vec::with_capacity(128 << 10);
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::hint::spin_loop();
                continue;
            }
            Err(_) => return,
        };
        pending += n;
        out.clear();
        while pending >= REQ_LEN {
            pending -= REQ_LEN;
            out.extend_from_slice(&reply);
        }
        let mut off = 0;
        while off < out.len() {
            match s.write(&out[off..]) {
                Ok(w) => off += w,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(_) => return,
            }
        }
    }
}

fn read_exact_spin(s: &mut UnixStream, buf: &mut [u8], spin: bool) {
    let mut off = 0;
    while off < buf.len() {
        match s.read(&mut buf[off..]) {
            Ok(0) => panic!("echo child went away"),
            Ok(n) => off += n,
            Err(e) if spin && e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn raw_pingpong(s: &mut UnixStream, n: u64, spin: bool) {
    let req = [1u8; REQ_LEN];
    let mut reply = [0u8; REPLY_LEN];
    for _ in 0..n {
        s.write_all(&req).unwrap();
        read_exact_spin(s, &mut reply, spin);
    }
}

fn raw_pipelined(s: &mut UnixStream, n: u64) {
    let window = 256u64;
    let batch = vec![1u8; REQ_LEN * window as usize];
    let mut buf = vec![0u8; REPLY_LEN * window as usize];
    let mut sent = 0u64;
    let mut got_bytes = 0u64;
    let want = n * REPLY_LEN as u64;
    while got_bytes < want {
        if sent < n && sent * (REPLY_LEN as u64) < got_bytes + 2 * window * REPLY_LEN as u64 {
            let k = window.min(n - sent);
            s.write_all(&batch[..(k as usize) * REQ_LEN]).unwrap();
            sent += k;
        }
        let r = s.read(&mut buf).unwrap();
        assert!(r > 0);
        got_bytes += r as u64;
    }
}

fn start_server(sock: &Path) -> Child {
    // VLIB_BENCH_SERVER: another build of the server to measure (an A/B against this one).
    let server = std::env::var_os("VLIB_BENCH_SERVER")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_api-server").into());
    let child = Command::new(server)
        .arg("--socket")
        .arg(sock)
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while UnixStream::connect(sock).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Registers a raw connection with `sockclnt_create` and discards the reply.
fn register_raw(s: &mut UnixStream) {
    let mut msg = vec![0u8, 15, 0, 0, 0, 1];
    let mut name = [0u8; 64];
    name[..3].copy_from_slice(b"raw");
    msg.extend_from_slice(&name);
    s.write_all(&header(msg.len() as u32)).unwrap();
    s.write_all(&msg).unwrap();
    let mut r = FrameReader::new(64 << 20);
    loop {
        if r.next_frame().unwrap().is_some() {
            return;
        }
        assert!(matches!(r.read_from(&*s).unwrap(), ReadOutcome::Data(_)));
    }
}

fn ping_frame(id: u16, index: u32, context: u32) -> [u8; REQ_LEN] {
    let mut f = [0u8; REQ_LEN];
    f[..16].copy_from_slice(&header(10));
    f[16..18].copy_from_slice(&id.to_be_bytes());
    f[18..22].copy_from_slice(&index.to_be_bytes());
    f[22..26].copy_from_slice(&context.to_be_bytes());
    f
}

fn ours_sync_raw(s: &mut UnixStream, id: u16, index: u32, n: u64) {
    let mut reply = [0u8; REPLY_LEN];
    for i in 0..n {
        s.write_all(&ping_frame(id, index, i as u32 + 1)).unwrap();
        read_exact_spin(s, &mut reply, false);
    }
}

fn ours_pipelined_raw(s: &mut UnixStream, id: u16, index: u32, n: u64) {
    let window = 256u64;
    let mut batch = Vec::with_capacity(REQ_LEN * window as usize);
    let mut reader = FrameReader::new(1 << 20);
    let mut sent = 0u64;
    let mut got = 0u64;
    while got < n {
        if sent < n && sent < got + 2 * window {
            batch.clear();
            let k = window.min(n - sent);
            for i in 0..k {
                batch.extend_from_slice(&ping_frame(id, index, (sent + i) as u32 + 1));
            }
            s.write_all(&batch).unwrap();
            sent += k;
        }
        match reader.read_from(&*s).unwrap() {
            ReadOutcome::Data(_) => {}
            other => panic!("server: {other:?}"),
        }
        while let Some(f) = reader.next_frame().unwrap() {
            debug_assert_eq!(f.len(), REPLY_LEN - 16);
            got += 1;
        }
    }
}
