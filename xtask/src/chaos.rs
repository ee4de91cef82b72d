//! `cargo xtask chaos`: builds the server and the chaos driver, runs a crash storm
//! (`tools/chaos`), and with `--report` rewrites the storm's section of RELIABILITY.md.

use std::path::PathBuf;
use std::process::Command;

use crate::{Result, cargo, root, run};

/// Where the results section of RELIABILITY.md starts and ends.
const BEGIN: &str = "<!-- chaos:begin (cargo xtask chaos --report rewrites this section) -->";
const END: &str = "<!-- chaos:end -->";

pub(crate) fn chaos(args: &[String]) -> Result {
    let mut release = false;
    let mut report = false;
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--release" => release = true,
            "--report" => report = true,
            "--smoke" => pass.push(a.clone()),
            "--clients" | "--seconds" | "--seed" | "--points" => {
                let v = it.next().ok_or(format!("{a} needs a value"))?;
                pass.push(a.clone());
                pass.push(v.clone());
            }
            other => {
                return Err(format!(
                    "chaos: unknown argument `{other}` (--clients N, --seconds S, --seed X, \
                     --points P,..., --smoke, --release, --report)"
                ));
            }
        }
    }
    let mut cmd = cargo();
    cmd.args(["build", "-p", "api-server", "-p", "chaos"]);
    if release {
        cmd.arg("--release");
    }
    run(cmd)?;
    let profile = if release { "release" } else { "debug" };
    let bin = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join(profile);
    let out = bin.join("chaos-results.md");
    let mut cmd = Command::new(bin.join("chaos"));
    cmd.arg("run")
        .arg("--server")
        .arg(bin.join("api-server"))
        .args(&pass)
        .arg("--markdown")
        .arg(&out);
    let outcome = run(cmd);
    if report {
        let block = std::fs::read_to_string(&out)
            .map_err(|e| format!("no results to report ({}): {e}", out.display()))?;
        let mut line = String::from("cargo xtask chaos");
        for a in args.iter().filter(|a| *a != "--report") {
            line.push(' ');
            line.push_str(a);
        }
        splice(&format!("Command: `{line}`\n\n{block}"))?;
    }
    outcome
}

/// Replaces the results section of RELIABILITY.md with `text`.
fn splice(text: &str) -> Result {
    let path = root().join("RELIABILITY.md");
    let doc = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        return Err(format!(
            "{}: no `{BEGIN}` ... `{END}` section to rewrite",
            path.display()
        ));
    };
    if e < b {
        return Err(format!(
            "{}: the chaos markers are out of order",
            path.display()
        ));
    }
    let new = format!("{}{BEGIN}\n{}\n{}", &doc[..b], text.trim_end(), &doc[e..]);
    std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote the chaos section of {}", path.display());
    Ok(())
}
