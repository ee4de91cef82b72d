//! `cargo xtask fuzz`: runs the cargo-fuzz (libFuzzer) targets on nightly.
//!
//! Two fuzz crates, each outside the workspace (its own `[workspace]`): `fuzz/` (framing, every
//! decoder of every module, the server's socket input, shared memory) and `vlibapi/fuzz/` (the
//! decoder and the `.api.json` reader). Each target fuzzes its working corpus
//! (`<crate>/corpus/<target>`, not committed) seeded with the committed seeds
//! (`fuzz/seeds/<target>`), which libFuzzer only reads. A crash is left in
//! `<crate>/artifacts/<target>/`; once fixed, it belongs in `fuzz/regressions/<target>/`, where
//! the stable regression tests (`tools/api-server/tests/fuzz_regressions.rs`) replay it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{Result, echo, render, root};

/// Every target: (fuzz crate directory relative to the root, target name).
const TARGETS: &[(&str, &str)] = &[
    ("fuzz", "frame_reader"),
    ("fuzz", "decode_all"),
    ("fuzz", "server_socket"),
    ("fuzz", "shm_reader"),
    ("vlibapi/fuzz", "decode"),
    ("vlibapi/fuzz", "api_json"),
];

/// Seconds per target without `--time`.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target with `--smoke`.
const SMOKE_SECONDS: u64 = 10;

/// What one run did.
struct Outcome {
    target: &'static str,
    seconds: f64,
    executions: Option<u64>,
    corpus: usize,
}

/// `cargo xtask fuzz [TARGET] [--time S] [--smoke]`.
pub(crate) fn fuzz(args: &[String]) -> Result {
    let mut name = None;
    let mut seconds = None;
    let mut smoke = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                let s = it.next().ok_or("--time needs a number of seconds")?;
                seconds = Some(s.parse::<u64>().map_err(|e| format!("--time {s}: {e}"))?);
            }
            "--smoke" => smoke = true,
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => name = Some(other.to_owned()),
        }
    }
    let seconds = seconds.unwrap_or(if smoke {
        SMOKE_SECONDS
    } else {
        DEFAULT_SECONDS
    });
    let selected: Vec<_> = TARGETS
        .iter()
        .filter(|(_, t)| name.as_deref().is_none_or(|n| n == *t))
        .collect();
    if selected.is_empty() {
        let known: Vec<_> = TARGETS.iter().map(|(_, t)| *t).collect();
        return Err(format!(
            "no fuzz target named {:?}; known: {}",
            name.unwrap_or_default(),
            known.join(", ")
        ));
    }
    ensure_tools()?;
    let mut outcomes = Vec::new();
    for &&(dir, target) in &selected {
        outcomes.push(run_target(dir, target, seconds)?);
    }
    eprintln!(
        "\n{:<16} {:>8} {:>14} {:>10} {:>8}",
        "target", "seconds", "executions", "exec/s", "corpus"
    );
    for o in &outcomes {
        let execs = o.executions.map_or("?".to_owned(), |n| n.to_string());
        let rate = o.executions.map_or("?".to_owned(), |n| {
            format!("{:.0}", n as f64 / o.seconds.max(0.001))
        });
        eprintln!(
            "{:<16} {:>8.1} {:>14} {:>10} {:>8}",
            o.target, o.seconds, execs, rate, o.corpus
        );
    }
    Ok(())
}

/// `cargo +nightly` with the fuzz crates' own target directory (under the workspace's, so a
/// plain `cargo clean` removes it too), unless `CARGO_TARGET_DIR` says otherwise.
fn nightly_cargo() -> Command {
    // rustup picks the toolchain from `+nightly`; the CARGO variable would pin the stable one.
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(root()).env_remove("CARGO");
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        cmd.env("CARGO_TARGET_DIR", root().join("target/fuzz"));
    }
    cmd
}

/// Checks for the nightly toolchain and installs cargo-fuzz if it is missing.
fn ensure_tools() -> Result {
    let mut rustc = Command::new("rustc");
    rustc.args(["+nightly", "--version"]).env_remove("CARGO");
    let nightly = rustc.output().is_ok_and(|o| o.status.success());
    if !nightly {
        return Err(
            "fuzzing needs the nightly toolchain (`rustup toolchain install nightly`)".into(),
        );
    }
    let mut probe = nightly_cargo();
    probe
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if probe.status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let mut install = Command::new("cargo");
    install
        .args(["install", "cargo-fuzz", "--locked"])
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR");
    crate::run(install)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.filter_map(|e| e.ok()).count())
}

/// Builds and runs one target for `seconds`, echoing libFuzzer's output; a crash is an error
/// naming the reproducer.
fn run_target(dir: &str, target: &'static str, seconds: u64) -> Result<Outcome> {
    let crate_dir = root().join(dir);
    let corpus = crate_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let seeds: PathBuf = root().join("fuzz/seeds").join(target);
    // Built first, so the time and rate below are the fuzzing's alone.
    let mut build = nightly_cargo();
    build
        .args(["fuzz", "build", "--fuzz-dir"])
        .arg(&crate_dir)
        .args(["--debug-assertions", target]);
    crate::run(build)?;
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run", "--fuzz-dir"])
        .arg(&crate_dir)
        .args(["--debug-assertions", target])
        .arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.args([
        "--",
        &format!("-max_total_time={seconds}"),
        "-print_final_stats=1",
        "-timeout=30",
    ]);
    echo(&cmd);
    let started = Instant::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start cargo fuzz: {e}"))?;
    let mut executions = None;
    let mut crash = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            eprintln!("{line}");
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                executions = n.trim().parse().ok();
            }
            if let Some(path) = line.split("Test unit written to ").nth(1) {
                crash = Some(path.trim().to_owned());
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(match crash {
            Some(path) => format!(
                "{target} found a bug; reproduce with `cargo +nightly fuzz run --fuzz-dir {dir} \
                 {target} {path}`, and once fixed copy the input to fuzz/regressions/{target}/"
            ),
            None => format!("`{}` exited with {status}", render(&cmd)),
        });
    }
    Ok(Outcome {
        target,
        seconds: started.elapsed().as_secs_f64(),
        executions,
        corpus: count_files(&corpus),
    })
}
