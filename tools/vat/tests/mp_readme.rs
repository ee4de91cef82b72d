//! README.md's snippets, run as written: the server command starts the server, every `vat` line
//! runs against it, and the Python example runs with the real vpp_papi. The socket path and the
//! shared-memory prefix are swapped for the test's own; `cargo xtask` lines are what CI runs
//! itself, and the Rust examples are compiled as doctests of `example-plugin`.

mod support;

use std::ffi::OsString;
use std::time::Duration;

use support::{ShmPrefix, run_vat, server_bin};
use vppinfra::testing::{self, TempDir};

const README: &str = include_str!("../../../README.md");

/// The code blocks of `lang`, in order.
fn blocks(lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in README.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(tag)) if tag.split(',').next() == Some(lang) => {
                current = Some(String::new())
            }
            (Some(_), Some(_)) => out.push(current.take().unwrap_or_default()),
            (Some(text), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn mp_readme_snippets_work_as_written() {
    let dir = TempDir::new("mp_readme");
    let sock = dir.join("api.sock");
    let prefix = ShmPrefix::new("readme");
    let swap = |text: &str| {
        text.replace("/tmp/vpp/api.sock", &sock.display().to_string())
            .replace("--shm-prefix demo", &format!("--shm-prefix {}", prefix.0))
            .replace("--shm demo", &format!("--shm {}", prefix.0))
    };
    let mut server = None;
    let mut vat_lines = 0;
    for block in blocks("sh") {
        for line in block.lines() {
            let command = line.split('#').next().unwrap_or("").trim();
            if command.is_empty() || command.starts_with("cargo xtask") {
                continue;
            }
            let command = swap(command);
            let words: Vec<&str> = command.split_whitespace().collect();
            if let Some(args) = command.strip_prefix("cargo run --release -p api-server -- ") {
                let args: Vec<OsString> = args.split_whitespace().map(OsString::from).collect();
                let mut b = testing::spawn_program(server_bin(), &args);
                b.command().stderr(std::process::Stdio::null());
                server = Some(b.spawn());
                let up = testing::wait_until(Duration::from_secs(20), || {
                    std::os::unix::net::UnixStream::connect(&sock).is_ok()
                });
                assert!(up, "the README's server command did not start a server");
            } else if words.first() == Some(&"vat") {
                assert!(
                    server.is_some(),
                    "a vat line comes before the server command"
                );
                let args: Vec<OsString> = words[1..].iter().map(OsString::from).collect();
                let run = run_vat(&args, None);
                assert_eq!(run.code(), 0, "README line failed: {command}\n{run}");
                vat_lines += 1;
            } else {
                panic!("README shell line the test does not know how to check: {command}");
            }
        }
    }
    assert!(vat_lines >= 5, "the README lost its vat examples");
    let python = blocks("python");
    assert_eq!(python.len(), 1, "one Python example");
    let script = dir.join("readme.py");
    std::fs::write(&script, swap(&python[0])).unwrap();
    let out = std::process::Command::new(testing::python())
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README Python example failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("control_ping_reply"));
    let mut server = server.expect("the README starts a server");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait_deadline(Duration::from_secs(10)).success());
}
