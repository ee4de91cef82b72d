//! Multi-process test harness (dev only, feature `testing`).
//!
//! One `#[test]` plays both parent and child. The parent re-runs its own test binary with the
//! test's exact name as the filter and a role in `VPP_TEST_ROLE`; the child sees the role, does its
//! part and exits. Roles travel in the environment, never in argv, because libtest reads extra
//! positional arguments as filters.
//!
//! ```no_run
//! use vppinfra::testing;
//! # fn client_main(_arg: &str) {}
//! #[test]
//! fn mp_example() {
//!     if let Some(role) = testing::child_role() {
//!         return testing::run_child(|| match role.as_str() {
//!             "client" => client_main(&testing::child_arg()),
//!             other => panic!("unknown role {other}"),
//!         });
//!     }
//!     let mut child = testing::spawn_self("mp_example", "client", "x").spawn();
//!     child.expect_success(std::time::Duration::from_secs(10));
//! }
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Environment variable that carries a child's role.
pub const ROLE_ENV: &str = "VPP_TEST_ROLE";
/// Environment variable that carries a child's argument.
pub const ARG_ENV: &str = "VPP_TEST_ARG";
/// Set to anything to see children's stdout and stderr.
pub const VERBOSE_ENV: &str = "VPP_TEST_VERBOSE";

/// The role this process was started with, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE_ENV).ok().filter(|r| !r.is_empty())
}

/// The argument passed to this child (empty when none).
pub fn child_arg() -> String {
    std::env::var(ARG_ENV).unwrap_or_default()
}

/// Runs the child's body and exits the process: status 0 on return, 101 on panic.
///
/// Exiting here keeps libtest from printing a result line or running anything else.
pub fn run_child(body: impl FnOnce()) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::process::exit(if outcome.is_ok() { 0 } else { 101 });
}

/// True when children should inherit stdout/stderr.
pub fn verbose() -> bool {
    std::env::var_os(VERBOSE_ENV).is_some()
}

/// Starts building a child that re-runs this test binary with `test_name` and `role`.
pub fn spawn_self(test_name: &str, role: &str, arg: &str) -> ChildBuilder {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .env(ARG_ENV, arg)
        .stdin(Stdio::null());
    if !verbose() {
        cmd.stdout(Stdio::null());
    }
    ChildBuilder {
        cmd,
        name: format!("{test_name}/{role}"),
    }
}

/// Starts building a child that runs an arbitrary program (a workspace binary, python, gcc...).
pub fn spawn_program(program: impl AsRef<std::ffi::OsStr>, args: &[OsString]) -> ChildBuilder {
    let mut cmd = Command::new(program.as_ref());
    cmd.args(args).stdin(Stdio::null());
    if !verbose() {
        cmd.stdout(Stdio::null());
    }
    ChildBuilder {
        name: Path::new(program.as_ref()).display().to_string(),
        cmd,
    }
}

/// A child process about to start; gives access to the underlying [`Command`].
#[derive(Debug)]
pub struct ChildBuilder {
    cmd: Command,
    name: String,
}

impl ChildBuilder {
    /// The command, to add environment, pipes or a working directory.
    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Starts the child. It is killed when the returned guard drops unless it was waited for.
    pub fn spawn(mut self) -> TestChild {
        let child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.name));
        TestChild {
            child,
            name: self.name,
            reaped: false,
        }
    }
}

/// A running child; killed and reaped on drop so a failing test leaves no orphans.
#[derive(Debug)]
pub struct TestChild {
    child: std::process::Child,
    name: String,
    reaped: bool,
}

impl TestChild {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The underlying process handle (for its pipes).
    pub fn inner(&mut self) -> &mut std::process::Child {
        &mut self.child
    }

    /// Sends `SIGKILL` and reaps the child.
    pub fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Non-blocking check: `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait")?;
        self.reaped = true;
        Some(status)
    }

    /// Waits until the child exits or `deadline` passes; on timeout kills it and panics.
    pub fn wait_deadline(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            if start.elapsed() > deadline {
                self.kill();
                panic!("{} did not exit within {deadline:?}; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (with a deadline) and asserts the child exited with status 0.
    pub fn expect_success(&mut self, deadline: Duration) {
        let status = self.wait_deadline(deadline);
        assert!(status.success(), "{} failed: {status}", self.name);
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        self.kill();
    }
}

static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, for shared-memory objects: `vpp-test-{pid}-{tag}-{n}`.
pub fn unique_name(tag: &str) -> String {
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("vpp-test-{}-{tag}-{n}", std::process::id())
}

/// A per-test temporary directory, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `cond` every millisecond until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The workspace root: the nearest ancestor of `CARGO_MANIFEST_DIR` (or of the current
/// directory) whose `Cargo.toml` declares `[workspace]`.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("current dir"));
    let mut dir = start.as_path();
    loop {
        let manifest = dir.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("[workspace]")) {
            return dir.to_path_buf();
        }
        dir = dir
            .parent()
            .unwrap_or_else(|| panic!("no workspace above {}", start.display()));
    }
}

/// Python packages the tests need, pinned.
pub const PYTHON_REQUIREMENTS: &[&str] = &["vpp-papi==2.4.2", "pytest==8.3.4"];

/// A Python interpreter with [`PYTHON_REQUIREMENTS`] installed: `$VPP_TEST_PYTHON` if set, else
/// the virtual environment `target/py-venv` of the workspace, created on first use (under a
/// lock, so concurrent tests create it once).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("VPP_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let venv = root.join("target/py-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".requirements");
    let wanted = PYTHON_REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return python;
    }
    std::fs::create_dir_all(root.join("target")).expect("create target dir");
    let lock = std::fs::File::create(root.join("target/py-venv.lock")).expect("venv lock file");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the venv");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return python;
    }
    let run = |cmd: &mut Command| {
        let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(status.success(), "{cmd:?} failed: {status}");
    };
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_REQUIREMENTS));
    std::fs::write(&stamp, wanted).expect("write venv stamp");
    python
}
