//! `cargo xtask bench clients`: control_ping through each client library, against the real
//! `api-server`, beside the sync Rust client (`vlibsocket::client::SocketClient`) measured in
//! the same run, over the socket and over shared memory (each client pivots its connection).
//!
//! - sync: one request in flight (round-trip time per request);
//! - pipelined: up to 256 in flight, refilled when half have come back (per request).
//!
//! Clients: `SocketClient` (the baseline); `libvlibclient.so` from a C program compiled here
//! with gcc (`benches/clients_bench.c`), which times itself and reports per-run figures; and
//! the async client, driven by a ten-line `block_on` on the bench thread. Each figure is
//! printed with its ratio to `SocketClient` on the same transport (`SocketClient` over shared
//! memory: to `SocketClient` over the socket), then all of them in one table.

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

/// One client's two figures.
struct Row {
    sync: Summary,
    pipe: Summary,
}

/// Every client's figures on one transport.
struct Figures {
    rust: Row,
    c: Row,
    async_client: Row,
}

fn main() {
    let mut b = Bench::from_args("clients");
    let server = support::ServerProc::start("bench-clients", &["--log-level", "warn"]);
    let dir = TempDir::new("bench-clients-c");
    let exe = compile_bench(dir.path());
    let socket = measure(&mut b, &server, &exe, false, None);
    let shm = measure(&mut b, &server, &exe, true, Some(&socket.rust));

    println!();
    println!(
        "clients: median ns per control_ping; ratio to SocketClient on the same transport \
         (SocketClient over shm: to SocketClient over the socket); lower is faster"
    );
    println!(
        "{:<26} {:<9} {:>12} {:>8} {:>14} {:>8}",
        "client", "transport", "sync RTT", "ratio", "pipelined", "ratio"
    );
    for (transport, figures, base) in [("socket", &socket, &socket.rust), ("shm", &shm, &shm.rust)]
    {
        for (name, row) in [
            ("SocketClient (sync Rust)", &figures.rust),
            ("libvlibclient.so (C)", &figures.c),
            ("async-client (Rust)", &figures.async_client),
        ] {
            // The shared-memory baseline row compares with the socket baseline.
            let base = if std::ptr::eq(row, base) && transport == "shm" {
                &socket.rust
            } else {
                base
            };
            println!(
                "{:<26} {:<9} {:>12} {:>7.2}x {:>14} {:>7.2}x",
                name,
                transport,
                format_ns(row.sync.median()),
                row.sync.median() / base.sync.median(),
                format_ns(row.pipe.median()),
                row.pipe.median() / base.pipe.median()
            );
        }
    }
}

/// Measures the three clients over the socket, or (`shm`) each after a pivot. The sync Rust
/// client's figures are the baseline of the others; its own, over shared memory, are compared
/// with `socket_baseline`.
fn measure(
    b: &mut Bench,
    server: &support::ServerProc,
    exe: &Path,
    shm: bool,
    socket_baseline: Option<&Row>,
) -> Figures {
    let sync_ops = 20_000;
    let pipe_ops = 200_000;
    let on = if shm { " over shm" } else { "" };

    let mut sc = SocketClient::connect(&server.path, "bench-rust").unwrap();
    if shm {
        sc.pivot(0, None).unwrap();
    }
    let name = format!("SocketClient{on} sync RTT");
    let sync = |n: u64, sc: &mut SocketClient| {
        for _ in 0..n {
            let _: ControlPingReply = sc.request(&ControlPing::default()).unwrap();
        }
    };
    let rust_sync = match socket_baseline {
        Some(base) => b.run_vs(&name, sync_ops, &base.sync, |n| sync(n, &mut sc)),
        None => b.run(&name, sync_ops, |n| sync(n, &mut sc)),
    };
    let name = format!("SocketClient{on} pipelined");
    let rust_pipe = match socket_baseline {
        Some(base) => b.run_vs(&name, pipe_ops, &base.pipe, |n| {
            socket_client_pipelined(&mut sc, n)
        }),
        None => b.run(&name, pipe_ops, |n| socket_client_pipelined(&mut sc, n)),
    };
    sc.disconnect().unwrap();

    // The C library, from C.
    let where_ = if shm {
        format!("pivot:{}", server.path.display())
    } else {
        server.path.display().to_string()
    };
    let c_sync = c_figures(
        exe,
        &where_,
        "sync",
        b.ops(sync_ops),
        b.runs(),
        &format!("libvlibclient (C){on} sync RTT"),
    );
    let c_sync = b.report(c_sync, Some(&rust_sync));
    let c_pipe = c_figures(
        exe,
        &where_,
        "pipelined",
        b.ops(pipe_ops),
        b.runs(),
        &format!("libvlibclient (C){on} pipelined"),
    );
    let c_pipe = b.report(c_pipe, Some(&rust_pipe));

    // The async client.
    let opts = if shm {
        Options::shm_pivot(&server.path, "bench-async")
    } else {
        Options::socket(&server.path, "bench-async")
    };
    let client = Client::connect(opts).unwrap();
    let a_sync = b.run_vs(
        &format!("async-client{on} sync RTT"),
        sync_ops,
        &rust_sync,
        |n| {
            for _ in 0..n {
                common::block_on(client.request::<_, ControlPingReply>(&ControlPing::default()))
                    .unwrap();
            }
        },
    );
    let a_pipe = b.run_vs(
        &format!("async-client{on} pipelined"),
        pipe_ops,
        &rust_pipe,
        |n| async_pipelined(&client, n),
    );
    client.close();
    Figures {
        rust: Row {
            sync: rust_sync,
            pipe: rust_pipe,
        },
        c: Row {
            sync: c_sync,
            pipe: c_pipe,
        },
        async_client: Row {
            sync: a_sync,
            pipe: a_pipe,
        },
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

/// Runs the C program (`where_`: a socket path, or `pivot:` and one) and turns its per-run
/// lines into a summary.
fn c_figures(exe: &Path, where_: &str, mode: &str, n: u64, runs: usize, name: &str) -> Summary {
    let out = Command::new(exe)
        .arg(where_)
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
