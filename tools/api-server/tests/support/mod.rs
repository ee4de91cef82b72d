//! Shared by the api-server tests: start the real server binary on a temporary socket.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use vlibsocket::client::SocketClient;
use vppinfra::testing::{self, TempDir, TestChild};

/// A server process on a socket in its own temporary directory; killed on drop.
pub struct ServerProc {
    pub child: TestChild,
    pub dir: TempDir,
    pub path: PathBuf,
    pub log: PathBuf,
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
        let mut b = testing::spawn_program(env!("CARGO_BIN_EXE_api-server"), &args);
        let log_file = std::fs::File::create(&log).expect("server log");
        b.command().stderr(Stdio::from(log_file));
        let child = b.spawn();
        let p = ServerProc {
            child,
            dir,
            path,
            log,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let ok = testing::wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.path).is_ok()
        });
        assert!(ok, "server did not start; log:\n{}", self.log_text());
    }

    /// The server's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A connected client.
    pub fn client(&self, name: &str) -> SocketClient {
        SocketClient::connect(&self.path, name).expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Runs a CLI command through `cli_inband`.
pub fn cli(c: &mut SocketClient, cmd: &str) -> String {
    let r: vlibapi::msgs::vpe::CliInbandReply = c
        .request(&vlibapi::msgs::vpe::CliInband {
            cmd: cmd.to_owned(),
            ..Default::default()
        })
        .expect("cli_inband");
    r.reply
}

/// Count of memfd segments mapped by `pid`.
pub fn memfd_maps(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count()
}

/// Number of open fds of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True if `path` exists.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

impl Drop for ServerProc {
    /// Stops the server cleanly, so it removes its socket and named segment; a server that does
    /// not stop within a few seconds is killed by the child guard.
    fn drop(&mut self) {
        self.child.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = testing::wait_until(Duration::from_secs(3), || self.child.try_wait().is_some());
    }
}
