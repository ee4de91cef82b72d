//! Shared by vat's tests: the real `api-server` binary on a temporary socket, and `vat` run as a
//! subprocess with a deadline.
//!
//! # Finding the server binary
//!
//! Cargo only gives a test the binaries of its own package (`CARGO_BIN_EXE_vat`), and a
//! dev-dependency on `api-server` would not build its binary. So the server is taken from the
//! directory that holds `vat`, and brought up to date first with `$CARGO build -p api-server
//! --target-dir <that target dir>` (once per test process; a no-op when `cargo xtask mp` has just
//! built every binary). Cargo releases its build lock before it runs tests, so this nested build
//! does not wait on the outer one. Without `$CARGO` (the test binary run by hand) an existing
//! binary is used as it is.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use vppinfra::testing::{self, TempDir, TestChild};

/// How long any one vat run may take before the test gives up on it.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The vat binary under test.
pub fn vat_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vat"))
}

/// The api-server binary, next to vat's, built if needed (see the module docs).
pub fn server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let vat = vat_bin();
        let profile_dir = vat.parent().expect("vat has a directory");
        let bin = profile_dir.join("api-server");
        if let Some(cargo) = std::env::var_os("CARGO") {
            let target_dir = profile_dir.parent().expect("a target directory");
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "api-server",
                "--bin",
                "api-server",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let out = cmd.output().expect("run cargo build -p api-server");
            assert!(
                out.status.success(),
                "cargo build -p api-server failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p api-server` (or `cargo xtask mp`)",
            bin.display()
        );
        bin
    })
}

/// The prefix of a named shared-memory segment this test owns: unique per test process and
/// call (it carries the pid), and its segment and doorbell are unlinked on drop (a server
/// killed with SIGKILL cannot unlink them itself).
pub struct ShmPrefix(pub String);

impl ShmPrefix {
    /// A fresh prefix.
    pub fn new(tag: &str) -> Self {
        ShmPrefix(testing::unique_name(tag))
    }

    /// The segment's path.
    pub fn segment(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/{}-vpe-api", self.0))
    }
}

impl Drop for ShmPrefix {
    fn drop(&mut self) {
        let segment = self.segment();
        let _ = std::fs::remove_file(&segment);
        let _ = std::fs::remove_file(format!("{}.doorbell", segment.display()));
    }
}

/// How vat reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `--socket PATH`.
    Socket,
    /// `--socket PATH --pivot`.
    Pivot,
    /// `--shm PREFIX` (the server must have been started with one).
    Shm,
}

impl Via {
    /// All three.
    pub const ALL: [Via; 3] = [Via::Socket, Via::Pivot, Via::Shm];

    /// The transport as `show api clients` names it.
    pub fn kind(self) -> &'static str {
        match self {
            Via::Socket => "socket",
            Via::Pivot => "socket+shm",
            Via::Shm => "shm",
        }
    }
}

/// A server process on a socket in its own temporary directory; killed on drop.
pub struct ServerProc {
    pub child: TestChild,
    pub dir: TempDir,
    pub path: PathBuf,
    pub log: PathBuf,
    /// The named segment's prefix, when the server publishes one. Dropped after the child, so
    /// the segment is unlinked once the server is dead.
    pub shm: Option<ShmPrefix>,
}

impl ServerProc {
    /// Starts `api-server` and waits until it accepts connections.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, None, &[])
    }

    /// Starts `api-server` publishing a named segment under a fresh prefix as well.
    pub fn start_shm(tag: &str, extra: &[&str]) -> Self {
        Self::start_with(tag, Some(ShmPrefix::new(tag)), extra)
    }

    fn start_with(tag: &str, shm: Option<ShmPrefix>, extra: &[&str]) -> Self {
        let dir = TempDir::new(tag);
        let path = dir.join("api.sock");
        let log = dir.join("server.log");
        let mut args: Vec<OsString> = vec!["--socket".into(), path.clone().into()];
        if let Some(p) = &shm {
            args.extend(["--shm-prefix".into(), p.0.clone().into()]);
        }
        args.extend(extra.iter().map(OsString::from));
        let mut b = testing::spawn_program(server_bin(), &args);
        b.command()
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
        let child = b.spawn();
        let s = ServerProc {
            child,
            dir,
            path,
            log,
            shm,
        };
        let up = testing::wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&s.path).is_ok()
                && s.shm.as_ref().is_none_or(|p| p.segment().exists())
        });
        assert!(up, "server did not start; log:\n{}", s.log_text());
        s
    }

    /// The named segment's prefix (the server must publish one).
    pub fn prefix(&self) -> &str {
        &self.shm.as_ref().expect("a server with --shm-prefix").0
    }

    /// vat's arguments to reach this server `via` a transport.
    pub fn via_args(&self, via: Via) -> Vec<OsString> {
        match via {
            Via::Socket => vec!["--socket".into(), self.path.clone().into()],
            Via::Pivot => vec![
                "--socket".into(),
                self.path.clone().into(),
                "--pivot".into(),
            ],
            Via::Shm => vec!["--shm".into(), self.prefix().into()],
        }
    }

    /// `vat <via> args...`, with `stdin` fed to vat if given, run to completion.
    pub fn vat_via(&self, via: Via, args: &[&str], stdin: Option<&str>) -> VatRun {
        let mut full = self.via_args(via);
        full.extend(args.iter().map(OsString::from));
        run_vat(&full, stdin)
    }

    /// The server's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `vat --socket <this server> args...`, run to completion.
    pub fn vat(&self, args: &[&str]) -> VatRun {
        self.vat_with_input(args, None)
    }

    /// The same, with `stdin` fed to vat (script mode reads it).
    pub fn vat_with_input(&self, args: &[&str], stdin: Option<&str>) -> VatRun {
        self.vat_via(Via::Socket, args, stdin)
    }

    /// A file in the server's temporary directory with `text` in it.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

/// A finished vat run.
#[derive(Debug)]
pub struct VatRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl VatRun {
    /// The exit code (vat always exits, never dies of a signal, in these tests).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Asserts exit status 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code(), 0, "vat failed:\n{self}");
        &self.stdout
    }

    /// Asserts exit status `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected exit status:\n{self}");
        self
    }
}

impl std::fmt::Display for VatRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout\n{}--- stderr\n{}---",
            self.status, self.stdout, self.stderr
        )
    }
}

fn drain(mut r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// Runs vat with `args` to completion (killed after [`DEADLINE`]).
pub fn run_vat(args: &[OsString], stdin: Option<&str>) -> VatRun {
    let mut child = Command::new(vat_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vat");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // vat may exit before reading its input (no server to talk to): that is its answer.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write vat's stdin: {e}"
            );
        }
    }
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_deadline(&mut child, DEADLINE);
    VatRun {
        status,
        stdout: out.recv_timeout(DEADLINE).unwrap_or_default(),
        stderr: err.recv_timeout(DEADLINE).unwrap_or_default(),
    }
}

/// Waits for `child` with a deadline; kills it and panics when the deadline passes.
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vat did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A vat running in script mode on a pipe: commands are written one at a time and its output
/// read line by line, so a test can interleave it with other processes.
pub struct LiveVat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    err: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
}

impl LiveVat {
    /// Starts `vat --socket <server> args...` reading commands from a pipe.
    pub fn start(server: &ServerProc, args: &[&str]) -> LiveVat {
        Self::start_via(server, Via::Socket, args)
    }

    /// Starts `vat <via> args...` reading commands from a pipe.
    pub fn start_via(server: &ServerProc, via: Via, args: &[&str]) -> LiveVat {
        let mut child = Command::new(vat_bin())
            .args(server.via_args(via))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vat");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = drain(child.stderr.take().expect("stderr"));
        LiveVat {
            child,
            stdin,
            lines,
            err,
            seen: Vec::new(),
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        let pipe = self.stdin.as_mut().expect("stdin open");
        writeln!(pipe, "{line}").expect("write to vat");
        pipe.flush().expect("flush vat's stdin");
    }

    /// Waits (up to [`DEADLINE`]) for a stdout line containing `needle`; returns it.
    pub fn expect_line(&mut self, needle: &str) -> String {
        let start = Instant::now();
        while let Some(left) = DEADLINE.checked_sub(start.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line containing {needle:?}; seen:\n{}",
            self.seen.join("\n")
        );
    }

    /// Closes stdin (end of the script) and waits for vat to exit.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let status = wait_deadline(&mut self.child, DEADLINE);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let err = self.err.recv_timeout(DEADLINE).unwrap_or_default();
        (status, std::mem::take(&mut self.seen), err)
    }

    /// Waits for vat to exit by itself (stdin left open).
    pub fn wait_exit(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait_deadline(&mut self.child, DEADLINE);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let err = self.err.recv_timeout(DEADLINE).unwrap_or_default();
        (status, std::mem::take(&mut self.seen), err)
    }
}

impl Drop for LiveVat {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
