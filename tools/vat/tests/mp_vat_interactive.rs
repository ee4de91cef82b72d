//! Interactive vat on a pseudo-terminal: TAB completion of message and field names, running a
//! command, rerunning earlier ones with the up arrow, and the history file.

mod support;

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use support::{DEADLINE, ServerProc, Via, vat_bin, wait_deadline};
use vppinfra::testing::TempDir;

const UP: &str = "\x1b[A";

/// What vat has written to the terminal, as it arrives.
struct Screen {
    chunks: Receiver<Vec<u8>>,
    text: String,
    /// Where the next `expect` starts looking.
    mark: usize,
}

impl Screen {
    /// Waits until `needle` appears after the mark; moves the mark past it.
    fn expect(&mut self, needle: &str) {
        let start = Instant::now();
        loop {
            if let Some(i) = self.text[self.mark..].find(needle) {
                self.mark += i + needle.len();
                return;
            }
            let Some(left) = DEADLINE.checked_sub(start.elapsed()) else {
                break;
            };
            match self.chunks.recv_timeout(left) {
                Ok(c) => self.text.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => break,
            }
        }
        panic!(
            "{needle:?} did not appear; terminal after the mark:\n{:?}",
            &self.text[self.mark..]
        );
    }

    /// Everything after the mark that has arrived within `quiet` of the last byte.
    fn settle(&mut self, quiet: Duration) -> &str {
        while let Ok(c) = self.chunks.recv_timeout(quiet) {
            self.text.push_str(&String::from_utf8_lossy(&c));
        }
        &self.text[self.mark..]
    }
}

/// vat running interactively on a pseudo-terminal.
struct PtyVat {
    child: std::process::Child,
    keys: File,
    screen: Screen,
}

impl PtyVat {
    /// Starts `vat args...` with its stdin, stdout and stderr on a new terminal.
    fn start(args: &[OsString], home: &TempDir) -> PtyVat {
        let size = Winsize {
            ws_row: 40,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let child = Command::new(vat_bin())
            .args(args)
            .env("TERM", "xterm")
            .env("HOME", home.path())
            .stdin(Stdio::from(pty.slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(pty.slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .expect("spawn vat on the pty");
        let keys = File::from(pty.master);
        let mut reader = keys.try_clone().expect("dup master");
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Reading fails with EIO once vat has exited and the slave side is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        PtyVat {
            child,
            keys,
            screen: Screen {
                chunks,
                text: String::new(),
                mark: 0,
            },
        }
    }

    /// Types `s`.
    fn type_keys(&mut self, s: &str) {
        self.keys.write_all(s.as_bytes()).expect("type");
        self.keys.flush().expect("flush keys");
    }

    /// Types `quit` and checks that vat exits with status 0.
    fn quit(mut self) {
        self.type_keys("quit\r");
        let status = wait_deadline(&mut self.child, DEADLINE);
        let rest = self.screen.settle(Duration::from_millis(100)).to_owned();
        assert!(
            status.success(),
            "vat exited with {status}; terminal:\n{rest:?}"
        );
    }
}

impl Drop for PtyVat {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn mp_vat_interactive_completion_and_history() {
    let server = ServerProc::start("mp_vat_interactive");
    let home = TempDir::new("mp_vat_interactive_home");
    let history = home.join("history");
    let mut vat = PtyVat::start(
        &[
            "--socket".into(),
            server.path.clone().into(),
            "--history".into(),
            history.clone().into(),
        ],
        &home,
    );

    vat.screen.expect("`help` lists the commands");
    vat.screen.expect("vat# ");

    // A partial message name and TAB: the only match is completed (with a space after it).
    vat.type_keys("sw_thing_add_d\t");
    vat.screen.expect("sw_thing_add_del ");
    // A partial field name and TAB.
    vat.type_keys("name pty1 cou\t");
    vat.screen.expect("count ");
    vat.type_keys("7 enable\r");
    vat.screen.expect("sw_thing_add_del_reply { context: ");
    vat.screen.expect("retval: 0");
    vat.screen.expect("vat# ");

    // TAB twice on an ambiguous prefix lists the candidates.
    vat.type_keys("sw_thing_\t\t");
    vat.screen.expect("sw_thing_add_del");
    vat.screen.expect("sw_thing_dump");
    vat.type_keys("dump\r");
    vat.screen.expect("name: \"pty1\", count: 7, enable: true");
    vat.screen.expect("vat# ");

    // Up arrow: the dump again.
    vat.type_keys(UP);
    vat.screen.expect("sw_thing_dump");
    vat.type_keys("\r");
    vat.screen.expect("name: \"pty1\", count: 7, enable: true");
    vat.screen.expect("vat# ");

    // Up twice: the add, which now fails because the thing exists; the session goes on.
    vat.type_keys(UP);
    vat.type_keys(UP);
    vat.screen
        .expect("sw_thing_add_del name pty1 count 7 enable");
    vat.type_keys("\r");
    vat.screen.expect("retval: -116");
    vat.screen.expect("ENTRY_ALREADY_EXISTS");
    vat.screen.expect("vat# ");

    vat.quit();

    // The history file holds the commands, for the next session.
    let saved = std::fs::read_to_string(&history).expect("history saved");
    assert!(
        saved.contains("sw_thing_add_del name pty1 count 7 enable"),
        "{saved}"
    );
    assert!(saved.contains("sw_thing_dump"), "{saved}");
}

#[test]
fn mp_vat_interactive_over_shared_memory() {
    let server = ServerProc::start_shm("mp_vat_interactive_shm", &[]);
    let home = TempDir::new("mp_vat_interactive_shm_home");
    let no_history = |mut args: Vec<OsString>| {
        args.push("--no-history".into());
        PtyVat::start(&args, &home)
    };

    // A socket session moves to shared memory by command, once.
    let mut vat = no_history(server.via_args(Via::Socket));
    vat.screen.expect(&format!(
        "vat: connected to socket {} as client index 0x8",
        server.path.display()
    ));
    vat.screen.expect("vat# ");
    vat.type_keys("sock_init_shm\r");
    vat.screen.expect("sock_init_shm: now on socket+shm ");
    vat.screen.expect("vat# ");
    vat.type_keys("exec show api clients\r");
    vat.screen.expect("Shared memory clients");
    vat.screen.expect("socket+shm");
    vat.screen.expect("vat# ");
    vat.type_keys("sock_init_shm\r");
    vat.screen
        .expect("error: sock_init_shm: cannot move to shared memory: the connection is already");
    vat.screen.expect("vat# ");
    vat.type_keys("ping count 100\r");
    vat.screen.expect("ping: 100 sent, 100 received, 0 lost");
    vat.screen.expect("vat# ");
    vat.quit();

    // Started with --pivot, and attached by name: the banner says which.
    for (via, banner) in [
        (
            Via::Pivot,
            format!(
                "vat: connected to socket+shm {} as client index 0x0",
                server.path.display()
            ),
        ),
        (
            Via::Shm,
            format!(
                "vat: connected to shm by name /dev/shm/{}-vpe-api as client index 0x0",
                server.prefix()
            ),
        ),
    ] {
        let mut vat = no_history(server.via_args(via));
        vat.screen.expect(&banner);
        vat.screen.expect("vat# ");
        vat.type_keys("sw_thing_add_del name pty-shm\r");
        vat.screen.expect("retval: 0");
        vat.screen.expect("vat# ");
        vat.type_keys("sw_thing_dump\r");
        vat.screen.expect("name: \"pty-shm\"");
        vat.screen.expect("vat# ");
        vat.type_keys("repeat 1000 control_ping\r");
        vat.screen.expect("repeat: 1000 control_ping in ");
        vat.screen.expect("vat# ");
        vat.type_keys("sw_thing_add_del name pty-shm is_add false\r");
        vat.screen.expect("retval: 0");
        vat.screen.expect("vat# ");
        vat.quit();
    }
}
