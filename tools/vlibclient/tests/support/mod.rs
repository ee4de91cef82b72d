//! Shared by the multi-process tests: find (or build) the real `api-server` binary and this
//! crate's `libvlibclient.so`, start the server on a temporary socket, compile C programs.
//!
//! **Where the artifacts come from.** A test binary lives in `target/<profile>/deps/`. Cargo
//! builds this package's library, `libvlibclient.so` included, into that same `deps/`
//! directory before it runs the tests, so the library found there is always the current one.
//! `api-server` is another package's binary, which a test cannot name with
//! `CARGO_BIN_EXE_*`; the first test that needs it runs `$CARGO build -p api-server` for the
//! same profile and target directory (a no-op when it is up to date, as after
//! `cargo xtask test`, which builds the workspace binaries first) and uses
//! `target/<profile>/api-server`.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use vppinfra::testing::{self, TempDir, TestChild};

/// `target/<profile>/deps`, where this test binary and `libvlibclient.so` are.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .expect("test binary has a directory")
        .to_path_buf()
}

/// `target/<profile>`.
pub fn profile_dir() -> PathBuf {
    deps_dir()
        .parent()
        .expect("deps has a parent")
        .to_path_buf()
}

/// The freshly built `libvlibclient.so`.
pub fn libvlibclient() -> PathBuf {
    let p = deps_dir().join("libvlibclient.so");
    assert!(p.exists(), "{} is missing", p.display());
    p
}

/// The C header.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The `api-server` binary of this profile, built if needed (once per test process).
pub fn api_server() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let profile_dir = profile_dir();
            let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") => "dev".to_owned(),
                Some(other) => other.to_owned(),
                None => panic!("odd target layout: {}", profile_dir.display()),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = Command::new(cargo)
                .args(["build", "-q", "-p", "api-server", "--profile", &profile])
                .env("CARGO_TARGET_DIR", &target_dir)
                .stdin(Stdio::null())
                .output()
                .expect("run cargo build -p api-server");
            let status = out.status;
            let bin = profile_dir.join("api-server");
            // A tree that does not build (someone else's work in progress) still runs these
            // tests against the last binary, with a warning; without one they fail.
            assert!(
                status.success() || bin.exists(),
                "cargo build -p api-server: {status}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !status.success() {
                eprintln!(
                    "warning: cargo build -p api-server failed ({status}); using the existing {}",
                    bin.display()
                );
            }
            bin
        })
        .clone()
}

/// A server process on a socket in its own temporary directory. Dropped, it is stopped
/// cleanly (SIGTERM), so that it removes its socket and named segment; one that does not stop
/// within a few seconds is killed, and the named segment of a server that was killed is
/// removed here.
pub struct ServerProc {
    pub child: TestChild,
    pub dir: TempDir,
    pub path: PathBuf,
    pub log: PathBuf,
    /// The `--shm-prefix` it was given.
    pub shm_prefix: Option<String>,
}

impl ServerProc {
    /// Starts `api-server` with `extra` arguments and waits until it accepts connections.
    pub fn start(tag: &str, extra: &[&str]) -> Self {
        let dir = TempDir::new(tag);
        let path = dir.join("api.sock");
        Self::start_at(dir, path, extra)
    }

    /// Starts a server on `path` inside `dir`.
    pub fn start_at(dir: TempDir, path: PathBuf, extra: &[&str]) -> Self {
        let log = dir.join("server.log");
        let mut args: Vec<OsString> = vec!["--socket".into(), path.clone().into()];
        args.extend(extra.iter().map(OsString::from));
        let mut b = testing::spawn_program(api_server(), &args);
        let log_file = std::fs::File::create(&log).expect("server log");
        b.command().stderr(Stdio::from(log_file));
        let child = b.spawn();
        let shm_prefix = extra
            .iter()
            .position(|a| *a == "--shm-prefix")
            .and_then(|i| extra.get(i + 1))
            .map(|p| (*p).to_owned());
        let p = ServerProc {
            child,
            dir,
            path,
            log,
            shm_prefix,
        };
        let ok = testing::wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&p.path).is_ok()
        });
        assert!(ok, "server did not start; log:\n{}", p.log_text());
        p
    }

    /// The server's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Only a child not yet reaped may be signalled: a reaped pid may belong to anyone now.
        if self.child.try_wait().is_none() {
            self.child.signal(nix::sys::signal::Signal::SIGTERM);
            self.child.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = testing::wait_until(Duration::from_secs(3), || self.child.try_wait().is_some());
        }
        self.child.kill();
        if let Some(p) = &self.shm_prefix {
            let segment = format!("/dev/shm/{p}-vpe-api");
            let _ = std::fs::remove_file(format!("{segment}.doorbell"));
            let _ = std::fs::remove_file(segment);
        }
    }
}

/// Compiles `tests/c/<name>.c` against the header and `libvlibclient.so` into `dir`; returns
/// the executable.
pub fn compile_c(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let lib_dir = libvlibclient().parent().unwrap().to_path_buf();
    let result = Command::new("gcc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-g",
            "-pthread",
        ])
        .arg("-I")
        .arg(include_dir())
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lvlibclient")
        // DT_RPATH (not RUNPATH) so that the library next to this test binary wins over any
        // other libvlibclient.so on LD_LIBRARY_PATH (cargo puts target/<profile> there, where
        // an older `cargo build` may have left one).
        .arg(format!(
            "-Wl,--disable-new-dtags,-rpath,{}",
            lib_dir.display()
        ))
        .output()
        .expect("run gcc");
    assert!(
        result.status.success(),
        "gcc {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Runs a program to completion within `deadline`; returns (status ok, stdout, stderr).
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> (bool, String, String) {
    let out_dir = TempDir::new("run-output");
    let (o, e) = (out_dir.join("stdout"), out_dir.join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap());
    let child = cmd.spawn().expect("spawn");
    let mut child = TestChildWrap(child);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            panic!(
                "{cmd:?} did not finish within {deadline:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&o).unwrap_or_default(),
                std::fs::read_to_string(&e).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (
        status.success(),
        std::fs::read_to_string(&o).unwrap_or_default(),
        std::fs::read_to_string(&e).unwrap_or_default(),
    )
}

/// Kills the child if the test panics before waiting for it.
struct TestChildWrap(std::process::Child);

impl Drop for TestChildWrap {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
