//! `cargo xtask bench clients`: control_ping through each client library, against the real
//! `api-server`, beside the sync Rust client (`vlibsocket::client::SocketClient`) measured in
//! the same run.
//!
//! - sync: one request in flight (round-trip time per request);
//! - pipelined: up to 256 in flight, refilled when half have come back (per request).
//!
//! Clients: `SocketClient` (the baseline); `libvlibclient.so` from a C program compiled here
//! with gcc (`benches/clients_bench.c`), which times itself and reports per-run figures; and
//! the async client, driven by a ten-line `block_on` on the bench thread. Each figure is
//! printed with its ratio to the baseline, then all of them in one table.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../vlibclient/tests/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll, Wake, Waker};

use async_client::{Client, Options, Request};
use vlibapi::msgs::memclnt::{ControlPing, ControlPingReply};
use vlibsocket::client::SocketClient;
use vppinfra::bench::{Bench, Summary, format_ns};
use vppinfra::sync::Arc;
use vppinfra::testing::TempDir;

const WINDOW: usize = 256;

fn main() {
    let mut b = Bench::from_args("clients");
    let server = support::ServerProc::start("bench-clients", &["--log-level", "warn"]);
    let sync_ops = 20_000;
    let pipe_ops = 200_000;

    // Baselines: the sync Rust client.
    let mut sc = SocketClient::connect(&server.path, "bench-rust").unwrap();
    let base_sync = b.run("SocketClient sync RTT", sync_ops, |n| {
        for _ in 0..n {
            let _: ControlPingReply = sc.request(&ControlPing::default()).unwrap();
        }
    });
    let base_pipe = b.run("SocketClient pipelined", pipe_ops, |n| {
        socket_client_pipelined(&mut sc, n)
    });
    drop(sc);

    // The C library, from C.
    let dir = TempDir::new("bench-clients-c");
    let exe = compile_bench(dir.path());
    let c_sync = c_figures(
        &exe,
        &server.path,
        "sync",
        b.ops(sync_ops),
        b.runs(),
        "libvlibclient (C) sync RTT",
    );
    let c_sync = b.report(c_sync, Some(&base_sync));
    let c_pipe = c_figures(
        &exe,
        &server.path,
        "pipelined",
        b.ops(pipe_ops),
        b.runs(),
        "libvlibclient (C) pipelined",
    );
    let c_pipe = b.report(c_pipe, Some(&base_pipe));

    // The async client.
    let client = Client::connect(Options::socket(&server.path, "bench-async")).unwrap();
    let a_sync = b.run_vs("async-client sync RTT", sync_ops, &base_sync, |n| {
        for _ in 0..n {
            common::block_on(client.request::<_, ControlPingReply>(&ControlPing::default()))
                .unwrap();
        }
    });
    let a_pipe = b.run_vs("async-client pipelined", pipe_ops, &base_pipe, |n| {
        async_pipelined(&client, n)
    });
    client.close();

    println!();
    println!(
        "clients: median ns per control_ping; ratio to SocketClient in this run (lower is faster)"
    );
    println!(
        "{:<28} {:>12} {:>8} {:>14} {:>8}",
        "client", "sync RTT", "ratio", "pipelined", "ratio"
    );
    for (name, s, p) in [
        ("SocketClient (sync Rust)", &base_sync, &base_pipe),
        ("libvlibclient.so (C)", &c_sync, &c_pipe),
        ("async-client (Rust)", &a_sync, &a_pipe),
    ] {
        println!(
            "{:<28} {:>12} {:>7.2}x {:>14} {:>7.2}x",
            name,
            format_ns(s.median()),
            s.median() / base_sync.median(),
            format_ns(p.median()),
            p.median() / base_pipe.median()
        );
    }
}

fn socket_client_pipelined(c: &mut SocketClient, n: u64) {
    let mut sent = 0;
    let mut ctxs = VecDeque::new();
    let mut done = 0;
    while done < n {
        if sent < n && ctxs.len() <= WINDOW / 2 {
            while sent < n && ctxs.len() < WINDOW {
                ctxs.push_back(c.send(&ControlPing::default()).unwrap());
                sent += 1;
            }
            c.flush().unwrap();
        }
        let ctx = ctxs.pop_front().unwrap();
        let _: ControlPingReply = c.wait_reply(ctx).unwrap();
        done += 1;
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The same window as the others: refill to 256 when half are back, then one flush.
fn async_pipelined(c: &Client, n: u64) {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut q: VecDeque<Pin<Box<Request<ControlPingReply>>>> = VecDeque::new();
    let (mut sent, mut done) = (0u64, 0u64);
    while done < n {
        if sent < n && q.len() <= WINDOW / 2 {
            while sent < n && q.len() < WINDOW {
                q.push_back(Box::pin(c.request(&ControlPing::default())));
                sent += 1;
            }
            c.flush().unwrap();
        }
        let front = q.front_mut().unwrap();
        match front.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                r.unwrap();
                q.pop_front();
                done += 1;
            }
            Poll::Pending => std::thread::park(),
        }
    }
}

fn compile_bench(dir: &Path) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/clients_bench.c");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vlibclient/include");
    let lib = support::libvlibclient();
    let lib_dir = lib.parent().unwrap();
    let out = dir.join("clients_bench");
    let r = Command::new("gcc")
        .args(["-std=gnu11", "-O2", "-Wall", "-Werror"])
        .arg("-I")
        .arg(&include)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lvlibclient")
        // DT_RPATH: this library wins over any other on LD_LIBRARY_PATH.
        .arg(format!(
            "-Wl,--disable-new-dtags,-rpath,{}",
            lib_dir.display()
        ))
        .output()
        .expect("run gcc");
    assert!(
        r.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

/// Runs the C program and turns its per-run lines into a summary.
fn c_figures(exe: &Path, socket: &Path, mode: &str, n: u64, runs: usize, name: &str) -> Summary {
    let out = Command::new(exe)
        .arg(socket)
        .arg(mode)
        .arg(n.to_string())
        .arg(runs.to_string())
        .output()
        .expect("run the C bench");
    assert!(
        out.status.success(),
        "C bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs_ns: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("run ")?.trim().parse().ok())
        .collect();
    assert_eq!(runs_ns.len(), runs, "one figure per run");
    Summary::new(name, n, runs_ns)
}
