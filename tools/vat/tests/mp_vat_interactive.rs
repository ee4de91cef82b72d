//! Interactive vat on a pseudo-terminal: TAB completion of message and field names, running a
//! command, rerunning earlier ones with the up arrow, and the history file.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};
use support::{DEADLINE, ServerProc, vat_bin, wait_deadline};
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

#[test]
fn mp_vat_interactive_completion_and_history() {
    let server = ServerProc::start("mp_vat_interactive");
    let home = TempDir::new("mp_vat_interactive_home");
    let history = home.join("history");

    let size = Winsize {
        ws_row: 40,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("openpty");
    let mut child = Command::new(vat_bin())
        .arg("--socket")
        .arg(&server.path)
        .arg("--history")
        .arg(&history)
        .env("TERM", "xterm")
        .env("HOME", home.path())
        .stdin(Stdio::from(pty.slave.try_clone().expect("dup slave")))
        .stdout(Stdio::from(pty.slave.try_clone().expect("dup slave")))
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn vat on the pty");
    let mut keys = File::from(pty.master);
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
    let mut screen = Screen {
        chunks,
        text: String::new(),
        mark: 0,
    };
    let mut type_keys = |s: &str| {
        keys.write_all(s.as_bytes()).expect("type");
        keys.flush().expect("flush keys");
    };

    screen.expect("`help` lists the commands");
    screen.expect("vat# ");

    // A partial message name and TAB: the only match is completed (with a space after it).
    type_keys("sw_thing_add_d\t");
    screen.expect("sw_thing_add_del ");
    // A partial field name and TAB.
    type_keys("name pty1 cou\t");
    screen.expect("count ");
    type_keys("7 enable\r");
    screen.expect("sw_thing_add_del_reply { context: ");
    screen.expect("retval: 0");
    screen.expect("vat# ");

    // TAB twice on an ambiguous prefix lists the candidates.
    type_keys("sw_thing_\t\t");
    screen.expect("sw_thing_add_del");
    screen.expect("sw_thing_dump");
    type_keys("dump\r");
    screen.expect("name: \"pty1\", count: 7, enable: true");
    screen.expect("vat# ");

    // Up arrow: the dump again.
    type_keys(UP);
    screen.expect("sw_thing_dump");
    type_keys("\r");
    screen.expect("name: \"pty1\", count: 7, enable: true");
    screen.expect("vat# ");

    // Up twice: the add, which now fails because the thing exists; the session goes on.
    type_keys(UP);
    type_keys(UP);
    screen.expect("sw_thing_add_del name pty1 count 7 enable");
    type_keys("\r");
    screen.expect("retval: -116");
    screen.expect("ENTRY_ALREADY_EXISTS");
    screen.expect("vat# ");

    type_keys("quit\r");
    let status = wait_deadline(&mut child, DEADLINE);
    let rest = screen.settle(Duration::from_millis(100)).to_owned();
    assert!(
        status.success(),
        "vat exited with {status}; terminal:\n{rest:?}"
    );

    // The history file holds the commands, for the next session.
    let saved = std::fs::read_to_string(&history).expect("history saved");
    assert!(
        saved.contains("sw_thing_add_del name pty1 count 7 enable"),
        "{saved}"
    );
    assert!(saved.contains("sw_thing_dump"), "{saved}");
}
