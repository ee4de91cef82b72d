//! `cargo xtask`: the project's automation, in Rust, with the standard library only.
//!
//! Every command echoes the command lines it runs. See `cargo xtask help`.
#![forbid(unsafe_code)]

mod bench;
mod chaos;
mod fuzz;
mod tidy;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const HELP: &str = "\
cargo xtask <command> [args]

  fmt [--fix]            check formatting (or fix it)
  lint                   clippy on every target, warnings are errors
  test                   unit + integration + doc tests, bench smoke runs, loom models,
                         then multi-process tests (what CI runs)
  loom [FILTER] [--preemptions N]
                         loom models (own target dir: target/loom)
  mp [FILTER]            multi-process tests (tests/mp_*.rs), one at a time
  bench [NAME] [--report] benchmarks in release mode (NAME: a file stem under */benches/):
                         one table, target/bench/results.json and chart.svg; --report
                         also rewrites BENCHMARKS.md and docs/bench-chart.svg
  fuzz [TARGET] [--time S] [--smoke]
                         cargo-fuzz targets on nightly, S seconds each (default 60; --smoke:
                         10); installs cargo-fuzz if missing; see fuzz/README.md
  chaos [--clients N] [--seconds S] [--seed X] [--points P,...] [--smoke] [--release]
        [--report]
                         crash storm against a fresh server (tools/chaos): thousands of
                         clients SIGKILLed at set points while survivors check their replies,
                         then fds, segments, registrations, memory and probe latency must be
                         as before (default 16 clients for 90 s; --smoke: 8 for 8 s); --report
                         rewrites the results in RELIABILITY.md
  doc                    rustdoc with warnings as errors
  tidy                   layering, SAFETY comments, lint inheritance
  ci                     fmt, lint, tidy, test, doc; stops at the first failure
  demo                   build, start the server, drive it with vat over socket and shared
                         memory, kill a client and watch it reaped, stop
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    };
    let started = Instant::now();
    let result = match cmd.as_str() {
        "fmt" => fmt(rest.iter().any(|a| a == "--fix")),
        "lint" => lint(),
        "test" => test(),
        "loom" => loom(rest),
        "mp" => mp(rest.first().map(String::as_str)),
        "bench" => bench::bench(rest),
        "fuzz" => fuzz::fuzz(rest),
        "chaos" => chaos::chaos(rest),
        "doc" => doc(),
        "tidy" => tidy_cmd(),
        "ci" => ci(),
        "demo" => demo(),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => {
            eprintln!("xtask {cmd}: ok in {:.1}s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask {cmd}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, echoing it first; an unsuccessful exit is an error.
fn run(mut cmd: Command) -> Result {
    echo(&cmd);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` exited with {status}", render(&cmd)))
    }
}

pub(crate) fn echo(cmd: &Command) {
    eprintln!("$ {}", render(cmd));
}

fn render(cmd: &Command) -> String {
    let mut out = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    out.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.contains('*') {
            out.push_str(&format!(" '{a}'"));
        } else {
            out.push(' ');
            out.push_str(&a);
        }
    }
    out
}

fn fmt(fix: bool) -> Result {
    let mut cmd = cargo();
    cmd.args(["fmt", "--all"]);
    if !fix {
        cmd.args(["--", "--check"]);
    }
    run(cmd)
}

fn lint() -> Result {
    let mut cmd = cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(cmd)?;
    // The loom build sees different code (cfg(loom)); lint it too, in the crates built that way.
    let mut cmd = loom_cargo();
    cmd.args(["clippy", "--lib", "--tests"]);
    for p in LOOM_PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.args(["--", "-D", "warnings"]);
    run(cmd)
}

/// Integration test files of every member, split by kind.
struct TestFiles {
    /// (package, test target) for ordinary integration tests.
    plain: Vec<(String, String)>,
    /// Packages that have `tests/mp_*.rs`.
    mp: Vec<(String, String)>,
}

fn test_files() -> Result<TestFiles> {
    let mut files = TestFiles {
        plain: Vec::new(),
        mp: Vec::new(),
    };
    for member in tidy::members(&root())? {
        let dir = member.dir.join("tests");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut stems: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        stems.sort();
        for stem in stems {
            if stem.starts_with("mp_") {
                files.mp.push((member.name.clone(), stem));
            } else if !stem.starts_with("loom_") {
                files.plain.push((member.name.clone(), stem));
            }
        }
    }
    Ok(files)
}

fn test() -> Result {
    let files = test_files()?;
    // Unit tests, ordinary integration tests and the bench smoke runs, in one cargo call.
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--lib", "--bins", "--benches"]);
    for (_, stem) in &files.plain {
        cmd.args(["--test", stem]);
    }
    run(cmd)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--doc"]);
    run(cmd)?;
    loom(&[])?;
    mp(None)
}

/// Crates with loom models. The crates above them use shared memory between processes, which
/// loom cannot model, and are not built under `--cfg loom`.
const LOOM_PACKAGES: &[&str] = &["vppinfra", "svm", "vlibmemory"];

fn loom_cargo() -> Command {
    let mut cmd = cargo();
    let mut flags = env::var("RUSTFLAGS").unwrap_or_default();
    flags.push_str(" --cfg loom -C debug-assertions");
    cmd.env("RUSTFLAGS", flags.trim())
        .env("CARGO_TARGET_DIR", root().join("target/loom"));
    cmd
}

fn loom(args: &[String]) -> Result {
    let mut filter = String::from("loom_");
    let mut preemptions = String::from("2");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--preemptions" {
            preemptions = it.next().ok_or("--preemptions needs a number")?.clone();
        } else {
            filter = a.clone();
        }
    }
    let mut cmd = loom_cargo();
    cmd.env("LOOM_MAX_PREEMPTIONS", &preemptions)
        .env("LOOM_MAX_BRANCHES", "10000")
        .args(["test", "--release", "--lib"]);
    for p in LOOM_PACKAGES {
        cmd.args(["-p", p]);
    }
    for member in tidy::members(&root())? {
        if !LOOM_PACKAGES.contains(&member.name.as_str()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(member.dir.join("tests")) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                if stem.starts_with("loom_") && p.extension().is_some_and(|x| x == "rs") {
                    cmd.args(["--test", stem]);
                }
            }
        }
    }
    cmd.args(["--", &filter]);
    run(cmd)
}

/// Builds the workspace binaries (multi-process tests start them), then runs every
/// `tests/mp_*.rs`, one test at a time.
fn mp(filter: Option<&str>) -> Result {
    let files = test_files()?;
    if files.mp.is_empty() {
        eprintln!("no multi-process tests yet");
        return Ok(());
    }
    let mut cmd = cargo();
    cmd.args(["build", "--workspace", "--bins"]);
    run(cmd)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]);
    for (_, stem) in &files.mp {
        cmd.args(["--test", stem]);
    }
    cmd.args(["--", "--test-threads=1"]);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    run(cmd)
}

fn doc() -> Result {
    let mut cmd = cargo();
    cmd.env("RUSTDOCFLAGS", "-D warnings")
        .args(["doc", "--workspace", "--no-deps"]);
    run(cmd)
}

fn tidy_cmd() -> Result {
    eprintln!("$ tidy (layering table, SAFETY comments, [lints] workspace = true)");
    let problems = tidy::check(&root())?;
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("{} tidy problem(s)", problems.len()))
    }
}

fn ci() -> Result {
    fmt(false)?;
    lint()?;
    tidy_cmd()?;
    test()?;
    doc()
}

fn demo() -> Result {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "api-server", "-p", "vat"]);
    run(cmd)?;
    let started = Instant::now();
    let bin = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("release");
    let dir = env::temp_dir().join(format!("vlib-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = demo_steps(&bin, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "\n== Demo finished in {:.1}s after the build",
        started.elapsed().as_secs_f64()
    );
    result
}

fn demo_steps(bin: &Path, dir: &Path) -> Result {
    let sock = dir.join("api.sock");
    let prefix = format!("demo{}", std::process::id());
    let log = dir.join("server.log");
    section("Start the API server on a temporary socket, with a named shared-memory segment");
    let mut server = Command::new(bin.join("api-server"));
    server
        .arg("--socket")
        .arg(&sock)
        .args(["--shm-prefix", &prefix, "--keepalive-interval", "0.5"])
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?);
    echo(&server);
    let mut server = server
        .spawn()
        .map_err(|e| format!("cannot start api-server: {e}"))?;
    let outcome = demo_with_server(bin, &sock, &prefix, &log);
    section("Stop the server (SIGTERM): clients are closed, the socket file removed");
    let mut kill = Command::new("kill");
    kill.args(["-TERM", &server.id().to_string()]);
    let _ = run(kill);
    let _ = server.wait();
    eprintln!("socket file still there: {}", sock.exists());
    outcome
}

fn section(title: &str) {
    eprintln!("\n== {title}");
}

fn vat(bin: &Path, sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin.join("vat"));
    c.arg("--socket").arg(sock).args(args);
    c
}

fn vat_script(bin: &Path, sock: &Path, args: &[&str], script: &str) -> Result {
    use std::io::Write as _;
    let mut c = vat(bin, sock, args);
    c.stdin(std::process::Stdio::piped());
    echo(&c);
    for line in script.lines() {
        eprintln!("  > {line}");
    }
    let mut child = c.spawn().map_err(|e| format!("vat: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("vat exited with {status}"))
    }
}

fn demo_with_server(bin: &Path, sock: &Path, prefix: &str, log: &Path) -> Result {
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if started.elapsed().as_secs() > 10 {
            return Err("the server did not start".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    section("vat over the socket: any message by name, fields by name");
    run(vat(bin, sock, &["show_version"]))?;
    run(vat(
        bin,
        sock,
        &["sw_thing_add_del", "name", "demo", "count", "4", "enable"],
    ))?;
    run(vat(bin, sock, &["sw_thing_dump"]))?;

    section("vat pivots from the socket to a private shared-memory segment");
    vat_script(
        bin,
        sock,
        &["--pivot"],
        "ping count 2000\nrepeat 100000 control_ping\nexec show api clients\nexec show api ring\n",
    )?;

    section("vat attaches to the named segment instead (no socket at all)");
    let mut by_name = Command::new(bin.join("vat"));
    by_name.args(["--shm", prefix, "ping", "count", "1000"]);
    run(by_name)?;

    section("A client is SIGKILLed; the server reaps it at once (its socket closed)");
    let mut victim = vat(bin, sock, &["--pivot", "--name", "victim"]);
    victim.stdin(std::process::Stdio::piped());
    echo(&victim);
    let mut victim = victim.spawn().map_err(|e| format!("vat: {e}"))?;
    let _keep_stdin_open = victim.stdin.take();
    let listed = |bin: &Path| -> bool {
        let out = vat(bin, sock, &["exec", "show api clients"]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("victim"))
    };
    let t = Instant::now();
    while !listed(bin) {
        if t.elapsed().as_secs() > 10 {
            let _ = victim.kill();
            return Err("the victim never showed up".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    run(vat(bin, sock, &["exec", "show api clients"]))?;
    let t = Instant::now();
    eprintln!("$ kill -KILL {}", victim.id());
    let _ = victim.kill();
    let _ = victim.wait();
    while listed(bin) {
        if t.elapsed().as_secs() > 10 {
            return Err("the victim was not reaped".into());
        }
    }
    eprintln!(
        "reaped within {:.1} ms (including the vat round trips that looked)",
        t.elapsed().as_secs_f64() * 1e3
    );
    run(vat(bin, sock, &["exec", "show api clients"]))?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains("victim")) {
        eprintln!("server log: {line}");
    }
    Ok(())
}
