//! `cargo xtask bench [NAME] [--report]`: runs the benchmarks in release mode, collects the JSON
//! lines they append to `VPP_BENCH_JSON` (one per case and per goal, written by
//! `vppinfra::bench`), prints one table, writes `<target>/bench/results.json` (an array of
//! cases, per-run values included) and `<target>/bench/chart.svg`, and with `--report` rewrites
//! `BENCHMARKS.md` and `docs/bench-chart.svg` (plus a PNG when an SVG renderer is installed).
//!
//! The JSON reader here is small and only as strict as the lines we write need: objects,
//! arrays, strings with escapes, numbers, booleans and null.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::{Result, cargo, root, run, tidy};

/// The variable `vppinfra::bench` reads.
const JSON_ENV: &str = "VPP_BENCH_JSON";

/// Benchmarks run in this order (the machine's limits first); others follow by name.
const ORDER: &[&str] = &[
    "queue", "socket", "shm", "server", "clients", "codec", "heap", "time",
];

/// One benchmark binary to run.
#[derive(Debug, Clone)]
struct BenchTarget {
    package: String,
    stem: String,
    /// Source path relative to the workspace root.
    source: String,
    /// The member's directory (where `cargo bench` would run it).
    dir: PathBuf,
}

/// What happened while one benchmark binary ran.
#[derive(Debug, Clone)]
struct GroupRun {
    target: BenchTarget,
    load_before: String,
    load_after: String,
    seconds: f64,
    ok: bool,
}

pub(crate) fn bench(args: &[String]) -> Result {
    let report = args.iter().any(|a| a == "--report");
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--report") {
        return Err(format!(
            "unknown option {bad}; usage: bench [NAME] [--report]"
        ));
    }
    let name = args.iter().find(|a| !a.starts_with('-'));
    let benches = discover()?;
    let selected: Vec<BenchTarget> = benches
        .iter()
        .filter(|b| name.is_none_or(|n| *n == b.stem))
        .cloned()
        .collect();
    if selected.is_empty() {
        let known: Vec<_> = benches.iter().map(|b| b.stem.as_str()).collect();
        return Err(format!(
            "no benchmark named {:?}; known: {}",
            name.map(String::as_str).unwrap_or(""),
            known.join(", ")
        ));
    }
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let jsonl = out.join("results.jsonl");
    if jsonl.exists() {
        std::fs::remove_file(&jsonl).map_err(|e| format!("{}: {e}", jsonl.display()))?;
    }

    // Build everything first and run the executables themselves: no compiler runs beside a
    // measurement, and a source file edited during the run cannot change what is measured.
    let executables = build(&selected)?;

    let started = Instant::now();
    let load_start = loadavg();
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for (b, exe) in selected.iter().zip(&executables) {
        let load_before = loadavg();
        let t = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.arg("--bench").current_dir(&b.dir).env(JSON_ENV, &jsonl);
        let outcome = run(cmd);
        runs.push(GroupRun {
            target: b.clone(),
            load_before,
            load_after: loadavg(),
            seconds: t.elapsed().as_secs_f64(),
            ok: outcome.is_ok(),
        });
        if let Err(e) = outcome {
            failures.push(format!("{}: {e}", b.stem));
        }
    }
    let load_end = loadavg();
    let total_seconds = started.elapsed().as_secs_f64();

    let text = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let mut results = Results::parse(&text)?;
    results.order_by(&runs);
    println!();
    print!("{}", results.text_table(&runs));

    let json_path = out.join("results.json");
    write(&json_path, &results.to_json(&runs))?;
    let chart = results.svg();
    let svg_path = out.join("chart.svg");
    write(&svg_path, &chart)?;
    eprintln!(
        "wrote {}, {} and {}",
        jsonl.display(),
        json_path.display(),
        svg_path.display()
    );

    if report {
        let docs = root().join("docs");
        std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        write(&docs.join("bench-chart.svg"), &chart)?;
        let png = to_png(&docs.join("bench-chart.svg"), &docs.join("bench-chart.png"));
        let info = RunInfo {
            machine: machine(),
            date: utc_now(),
            load_start,
            load_end,
            total_seconds,
            selected_name: name.cloned(),
            png,
        };
        let md = results.markdown_report(&runs, &info);
        write(&root().join("BENCHMARKS.md"), &md)?;
        eprintln!("wrote BENCHMARKS.md and docs/bench-chart.svg");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Builds the selected benchmarks in release mode (`cargo bench --no-run`) and returns their
/// executables, in the same order.
fn build(selected: &[BenchTarget]) -> Result<Vec<PathBuf>> {
    let mut cmd = cargo();
    cmd.args([
        "bench",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for b in selected {
        cmd.args(["-p", &b.package, "--bench", &b.stem]);
    }
    crate::echo(&cmd);
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("building the benchmarks failed ({})", out.status));
    }
    let artifacts = bench_executables(&String::from_utf8_lossy(&out.stdout));
    selected
        .iter()
        .map(|b| {
            let manifest = b.dir.join("Cargo.toml");
            artifacts
                .iter()
                .find(|(m, name, _)| Path::new(m) == manifest && *name == b.stem)
                .map(|(_, _, exe)| PathBuf::from(exe))
                .ok_or_else(|| format!("cargo did not report an executable for {}", b.stem))
        })
        .collect()
}

/// (manifest path, target name, executable) of every bench artifact in cargo's JSON messages.
fn bench_executables(messages: &str) -> Vec<(String, String, String)> {
    messages
        .lines()
        .filter_map(|line| parse_json(line).ok())
        .filter(|j| j.str("reason") == Some("compiler-artifact"))
        .filter_map(|j| {
            let target = j.get("target")?;
            let is_bench = matches!(target.get("kind"), Some(Json::Arr(k)) if k.contains(&Json::Str("bench".into())));
            if !is_bench {
                return None;
            }
            Some((
                j.str("manifest_path")?.to_owned(),
                target.str("name")?.to_owned(),
                j.str("executable")?.to_owned(),
            ))
        })
        .collect()
}

/// Every `benches/*.rs` of every member, in [`ORDER`].
fn discover() -> Result<Vec<BenchTarget>> {
    let root = root();
    let mut benches = Vec::new();
    for member in tidy::members(&root)? {
        let Ok(entries) = std::fs::read_dir(member.dir.join("benches")) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "rs") {
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    let source = p
                        .strip_prefix(&root)
                        .unwrap_or(&p)
                        .to_string_lossy()
                        .into_owned();
                    benches.push(BenchTarget {
                        package: member.name.clone(),
                        stem: stem.to_owned(),
                        source,
                        dir: member.dir.clone(),
                    });
                }
            }
        }
    }
    benches.sort_by_key(|b| (rank(&b.stem), b.stem.clone()));
    Ok(benches)
}

fn rank(stem: &str) -> usize {
    ORDER.iter().position(|o| *o == stem).unwrap_or(ORDER.len())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The 1, 5 and 15 minute load averages, as the kernel prints them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// Renders `svg` to `png` with the first renderer found; `None` when there is none or it fails.
fn to_png(svg: &Path, png: &Path) -> Option<PathBuf> {
    let _ = std::fs::remove_file(png);
    let attempts: [(&str, Vec<&std::ffi::OsStr>); 2] = [
        (
            "rsvg-convert",
            vec![
                "-b".as_ref(),
                "white".as_ref(),
                "-o".as_ref(),
                png.as_os_str(),
                svg.as_os_str(),
            ],
        ),
        (
            "convert",
            vec![
                "-background".as_ref(),
                "white".as_ref(),
                svg.as_os_str(),
                png.as_os_str(),
            ],
        ),
    ];
    for (tool, args) in attempts {
        let ok = Command::new(tool)
            .args(&args)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok && std::fs::metadata(png).is_ok_and(|m| m.len() > 0) {
            eprintln!("$ {tool} ... (PNG written to {})", png.display());
            return Some(png.to_path_buf());
        }
    }
    None
}

/// Facts about the machine for the report.
#[derive(Debug, Clone, Default)]
struct Machine {
    cpu: String,
    cpus: usize,
    memory: String,
    kernel: String,
    rustc: String,
    commit: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kb / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "?".to_owned());
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".to_owned())
    };
    let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    Machine {
        cpu: field("model name").unwrap_or_else(|| "?".to_owned()),
        cpus,
        memory,
        kernel: output("uname", &["-srm"]),
        rustc: output("rustc", &["-V"]),
        commit: format!(
            "{}{}",
            output("git", &["rev-parse", "--short", "HEAD"]),
            if dirty {
                " (with uncommitted changes in the tree)"
            } else {
                ""
            }
        ),
    }
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_date(secs)
}

fn utc_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, or `None` for `null` or anything else.
    fn num(&self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// Parses one JSON document (surrounding whitespace allowed).
fn parse_json(text: &str) -> Result<Json> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.bytes.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!("json: {what} at byte {}", self.pos)
    }

    fn ws(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json> {
        if depth > 32 {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.bytes.get(self.pos) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                if self.eat(b'}') {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return Err(self.err("expected `:`"));
                    }
                    members.push((key, self.value(depth + 1)?));
                    if self.eat(b'}') {
                        return Ok(Json::Obj(members));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `}`"));
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return Err(self.err("expected `,` or `]`"));
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(_) => self.number(),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json> {
        if self.bytes[self.pos..].starts_with(w.as_bytes()) {
            self.pos += w.len();
            Ok(v)
        } else {
            Err(self.err("unknown word"))
        }
    }

    fn number(&mut self) -> Result<Json> {
        let start = self.pos;
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
        {
            self.pos += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.pos])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(Json::Num)
            .ok_or_else(|| self.err("bad number"))
    }

    fn string(&mut self) -> Result<String> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return Err(self.err("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.pos..self.pos + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err("bad \\u escape"))?;
                            self.pos += 4;
                            let c = char::from_u32(hex).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"))
    }
}

/// Appends `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_num(out: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v}");
        }
        _ => out.push_str("null"),
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// One goal a case was judged against.
#[derive(Debug, Clone, PartialEq)]
struct GoalRecord {
    text: String,
    value: Option<f64>,
    limit: f64,
    met: bool,
}

/// One reported case.
#[derive(Debug, Clone, PartialEq)]
struct Case {
    group: String,
    name: String,
    unit: String,
    ops: f64,
    runs: Vec<f64>,
    median: Option<f64>,
    p99: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    spread: Option<f64>,
    baseline: Option<String>,
    ratio: Option<f64>,
    smoke: bool,
    goals: Vec<GoalRecord>,
}

impl Case {
    fn from_json(j: &Json) -> Result<Case> {
        let need = |key: &str| {
            j.str(key)
                .map(str::to_owned)
                .ok_or_else(|| format!("case without `{key}`"))
        };
        let runs = match j.get("runs") {
            Some(Json::Arr(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Json::Num(n) => Some(*n),
                    _ => None,
                })
                .collect(),
            _ => return Err("case without `runs`".into()),
        };
        Ok(Case {
            group: need("group")?,
            name: need("name")?,
            unit: j.str("unit").unwrap_or("ns").to_owned(),
            ops: j.num("ops").unwrap_or(1.0),
            runs,
            median: j.num("median"),
            p99: j.num("p99"),
            min: j.num("min"),
            max: j.num("max"),
            spread: j.num("spread"),
            baseline: j.str("baseline").map(str::to_owned),
            ratio: j.num("ratio"),
            smoke: j.bool("smoke").unwrap_or(false),
            goals: Vec::new(),
        })
    }

    /// Per-sample distributions (reaper latency, connect time...) report one value per sample.
    fn is_distribution(&self) -> bool {
        self.ops <= 1.0
    }

    /// Pipelined and one-way cases are throughput: their figure is time per operation with
    /// many in flight, best read as operations per second.
    fn is_throughput(&self) -> bool {
        self.unit == "ns" && (self.name.contains("pipelined") || self.name.contains("one-way"))
    }

    /// A per-run figure whose runs disagree by more than a quarter of the median.
    fn is_noisy(&self) -> bool {
        !self.is_distribution() && self.spread.is_some_and(|s| s > 0.25)
    }

    fn fmt(&self, v: Option<f64>) -> String {
        v.map_or_else(|| "-".to_owned(), |v| fmt_value(&self.unit, v))
    }

    fn rate(&self) -> String {
        match self.median {
            Some(m) if self.is_throughput() && m > 0.0 => fmt_rate(1e9 / m),
            _ => String::new(),
        }
    }

    fn vs_baseline(&self) -> String {
        match (&self.baseline, self.ratio) {
            (Some(b), Some(r)) => format!("{r:.2}x {b}"),
            _ => String::new(),
        }
    }

    fn goal_text(&self) -> String {
        self.goals
            .iter()
            .map(|g| format!("{}: {}", g.text, if g.met { "met" } else { "MISSED" }))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The spread of per-run figures; for a distribution of samples, whose (max - min) is one
    /// outlier, the largest sample instead.
    fn spread_text(&self) -> String {
        if self.is_distribution() && self.unit == "ns" {
            return self
                .max
                .map_or_else(|| "-".to_owned(), |m| format!("max {}", fmt_ns(m)));
        }
        self.spread.map_or_else(
            || "-".to_owned(),
            |s| {
                format!(
                    "{:.0}%{}",
                    s * 100.0,
                    if self.is_noisy() { " (noisy)" } else { "" }
                )
            },
        )
    }

    fn count_text(&self) -> String {
        if self.is_distribution() {
            format!("{} samples", self.runs.len())
        } else {
            format!("{} runs", self.runs.len())
        }
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}K/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

fn fmt_bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn fmt_value(unit: &str, v: f64) -> String {
    match unit {
        "ns" => fmt_ns(v),
        "B" => fmt_bytes(v),
        "/s" => fmt_rate(v),
        other => format!("{v:.3} {other}"),
    }
}

/// Everything one `cargo xtask bench` collected.
#[derive(Debug, Clone, Default)]
struct Results {
    cases: Vec<Case>,
}

impl Results {
    /// Reads the JSON lines; goal lines attach to the latest case of that group and name.
    fn parse(text: &str) -> Result<Results> {
        let mut r = Results::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let j = parse_json(line).map_err(|e| format!("results line {}: {e}", i + 1))?;
            match j.str("kind") {
                Some("case") => r
                    .cases
                    .push(Case::from_json(&j).map_err(|e| format!("line {}: {e}", i + 1))?),
                Some("goal") => {
                    let (Some(group), Some(case)) = (j.str("group"), j.str("case")) else {
                        return Err(format!("results line {}: goal without its case", i + 1));
                    };
                    let goal = GoalRecord {
                        text: j.str("goal").unwrap_or("?").to_owned(),
                        value: j.num("value"),
                        limit: j.num("limit").unwrap_or(f64::NAN),
                        met: j.bool("met").unwrap_or(false),
                    };
                    match r
                        .cases
                        .iter_mut()
                        .rev()
                        .find(|c| c.group == group && c.name == case)
                    {
                        Some(c) => c.goals.push(goal),
                        None => {
                            return Err(format!(
                                "results line {}: goal for unknown case {group}/{case}",
                                i + 1
                            ));
                        }
                    }
                }
                _ => return Err(format!("results line {}: unknown kind", i + 1)),
            }
        }
        Ok(r)
    }

    /// Groups in the order the benchmarks ran, cases in the order they were reported.
    fn order_by(&mut self, runs: &[GroupRun]) {
        let pos = |g: &str| {
            runs.iter()
                .position(|r| r.target.stem == g)
                .unwrap_or(runs.len())
        };
        // A stable sort keeps each group's own order.
        self.cases.sort_by_key(|c| pos(&c.group));
    }

    fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = Vec::new();
        for c in &self.cases {
            if !groups.contains(&c.group.as_str()) {
                groups.push(&c.group);
            }
        }
        groups
    }

    /// Names some other case of the same group is measured against.
    fn is_baseline(&self, c: &Case) -> bool {
        self.cases
            .iter()
            .any(|o| o.group == c.group && o.baseline.as_deref() == Some(c.name.as_str()))
    }

    /// A baseline that is not itself measured against another case: a limit, drawn grey.
    fn is_pure_baseline(&self, c: &Case) -> bool {
        c.baseline.is_none() && self.is_baseline(c)
    }

    fn text_table(&self, runs: &[GroupRun]) -> String {
        let header = [
            "case",
            "median",
            "p99",
            "spread",
            "n",
            "rate",
            "vs baseline (same run)",
            "goal",
        ];
        let mut rows: Vec<[String; 8]> = Vec::new();
        for c in &self.cases {
            rows.push([
                format!("{}/{}", c.group, c.name),
                c.fmt(c.median),
                c.fmt(c.p99),
                c.spread_text(),
                c.count_text(),
                c.rate(),
                c.vs_baseline(),
                c.goal_text(),
            ]);
        }
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: &[&str], out: &mut String| {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if (1..=5).contains(&i) {
                    let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
                }
            }
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        };
        line(&header, &mut out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(
            &rule.iter().map(String::as_str).collect::<Vec<_>>(),
            &mut out,
        );
        let mut group = "";
        for (c, r) in self.cases.iter().zip(&rows) {
            if c.group != group {
                group = &c.group;
                if let Some(run) = runs.iter().find(|r| r.target.stem == group) {
                    let _ = writeln!(
                        out,
                        "# {} ({}): {:.0} s, load average {} -> {}",
                        group, run.target.source, run.seconds, run.load_before, run.load_after
                    );
                }
            }
            line(&r.iter().map(String::as_str).collect::<Vec<_>>(), &mut out);
        }
        for run in runs.iter().filter(|r| !r.ok) {
            let _ = writeln!(out, "# {} FAILED (figures may be missing)", run.target.stem);
        }
        if self.cases.iter().any(|c| c.smoke) {
            out.push_str("# some figures come from smoke runs and mean nothing\n");
        }
        out
    }

    fn to_json(&self, runs: &[GroupRun]) -> String {
        let mut out = String::from("[\n");
        for (i, c) in self.cases.iter().enumerate() {
            out.push_str("  {\"group\":");
            json_str(&mut out, &c.group);
            out.push_str(",\"name\":");
            json_str(&mut out, &c.name);
            out.push_str(",\"unit\":");
            json_str(&mut out, &c.unit);
            out.push_str(",\"ops\":");
            json_num(&mut out, Some(c.ops));
            out.push_str(",\"runs\":[");
            for (k, v) in c.runs.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                json_num(&mut out, Some(*v));
            }
            out.push(']');
            for (key, v) in [
                ("median", c.median),
                ("min", c.min),
                ("p99", c.p99),
                ("max", c.max),
                ("spread", c.spread),
            ] {
                let _ = write!(out, ",\"{key}\":");
                json_num(&mut out, v);
            }
            out.push_str(",\"baseline\":");
            match &c.baseline {
                Some(b) => json_str(&mut out, b),
                None => out.push_str("null"),
            }
            out.push_str(",\"ratio\":");
            json_num(&mut out, c.ratio);
            let _ = write!(out, ",\"smoke\":{},\"goals\":[", c.smoke);
            for (k, g) in c.goals.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push_str("{\"goal\":");
                json_str(&mut out, &g.text);
                out.push_str(",\"value\":");
                json_num(&mut out, g.value);
                out.push_str(",\"limit\":");
                json_num(&mut out, Some(g.limit));
                let _ = write!(out, ",\"met\":{}}}", g.met);
            }
            out.push(']');
            if let Some(run) = runs.iter().find(|r| r.target.stem == c.group) {
                out.push_str(",\"load_before\":");
                json_str(&mut out, &run.load_before);
                out.push_str(",\"load_after\":");
                json_str(&mut out, &run.load_after);
            }
            out.push('}');
            out.push_str(if i + 1 < self.cases.len() {
                ",\n"
            } else {
                "\n"
            });
        }
        out.push_str("]\n");
        out
    }

    fn markdown_report(&self, runs: &[GroupRun], info: &RunInfo) -> String {
        let m = &info.machine;
        let mut out = String::new();
        out.push_str("# Benchmarks\n\n");
        out.push_str(
            "Generated by `cargo xtask bench --report`; do not edit by hand, run it again. Every \
             figure sits beside a baseline measured in the same run (the machine's limits: raw \
             shared-memory and socket ping-pongs, a raw ring), because the machine is shared and \
             absolute figures move with its load; read the ratios first.\n\n",
        );
        out.push_str("## Machine and run\n\n");
        let _ = writeln!(out, "- Date: {}", info.date);
        let _ = writeln!(out, "- CPU: {} ({} logical CPUs)", m.cpu, m.cpus);
        let _ = writeln!(out, "- Memory: {}", m.memory);
        let _ = writeln!(out, "- Kernel: {}", m.kernel);
        let _ = writeln!(out, "- Compiler: {}", m.rustc);
        let _ = writeln!(out, "- Commit: {}", m.commit);
        let _ = writeln!(
            out,
            "- Load average (1, 5, 15 min): {} at the start, {} at the end; {:.0} s of \
             benchmarks. The machine is shared with other people's builds: a load near or above \
             the CPU count means some figures were taken while another process held a CPU.",
            info.load_start, info.load_end, info.total_seconds
        );
        if let Some(n) = &info.selected_name {
            let _ = writeln!(out, "- Only the `{n}` benchmark was run.");
        }
        out.push_str("\n## Commands\n\n```sh\n");
        out.push_str(
            "cargo xtask bench --report   # build in release, run every benchmark, rewrite this file\n",
        );
        out.push_str(
            "cargo xtask bench            # the same, table and files under target/bench only\n",
        );
        out.push_str(
            "cargo xtask bench shm        # one benchmark (a file stem under */benches/)\n",
        );
        for run in runs {
            let _ = writeln!(
                out,
                "cargo bench -p {} --bench {}{}# {}",
                run.target.package,
                run.target.stem,
                " ".repeat(
                    28usize.saturating_sub(run.target.package.len() + run.target.stem.len())
                ),
                run.target.source
            );
        }
        out.push_str("```\n\n");
        out.push_str(
            "Per-run values of every case: `target/bench/results.json` (and the raw JSON lines \
             in `target/bench/results.jsonl`, written by `vppinfra::bench` through \
             `VPP_BENCH_JSON`).\n\n",
        );
        out.push_str("## Chart\n\n");
        let _ = writeln!(
            out,
            "[![latency distributions and throughput](docs/bench-chart.{})](docs/bench-chart.svg)\n",
            if info.png.is_some() { "png" } else { "svg" }
        );
        out.push_str(
            "Left: every time figure on a log scale (dots: runs or samples; bar: median; red \
             tick: p99; grey names: baselines). Right: throughput of pipelined and one-way \
             cases, and memory figures.\n\n",
        );

        let goals: Vec<(&Case, &GoalRecord)> = self
            .cases
            .iter()
            .flat_map(|c| c.goals.iter().map(move |g| (c, g)))
            .collect();
        if !goals.is_empty() {
            out.push_str("## Goals\n\n| case | goal | figure | verdict |\n|---|---|---|---|\n");
            for (c, g) in goals {
                let figure = g.value.map_or_else(
                    || "-".to_owned(),
                    |v| {
                        if g.text.contains("baseline") {
                            format!("{v:.2}x")
                        } else if g.text.starts_with(">=") {
                            fmt_rate(v)
                        } else {
                            fmt_value(&c.unit, v)
                        }
                    },
                );
                let _ = writeln!(
                    out,
                    "| {}/{} | {} | {} | {} |",
                    md(&c.group),
                    md(&c.name),
                    md(&g.text),
                    figure,
                    if g.met { "met" } else { "**missed**" }
                );
            }
            out.push('\n');
        }

        out.push_str("## Results\n\n");
        out.push_str(
            "median and p99 of the per-run figures (time per operation; with fewer than 100 runs \
             the p99 is the worst run) or, for distributions (`samples`), of the individual \
             samples; spread = (max - min) / median, marked noisy above 25%, or for a \
             distribution its largest sample; rate = operations per second at the median for \
             pipelined and one-way cases.\n\n",
        );
        let _ = write!(
            out,
            "Where two processes spin (the raw spin ping-pong, polling modes), a run's mean swells \
             whenever both land on one of the {} CPUs or another process takes one: a timeslice \
             per handoff instead of a cache-line transfer. The per-sample distributions (cases \
             named `each`) time every handoff on its own, so their medians show the handoff \
             itself and their tails show the interference; read both.\n\n",
            info.machine.cpus
        );
        for group in self.groups() {
            let run = runs.iter().find(|r| r.target.stem == group);
            match run {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "### {group}\n\n`{}`: {:.0} s, load average {} before, {} after.\n",
                        r.target.source, r.seconds, r.load_before, r.load_after
                    );
                }
                None => {
                    let _ = writeln!(out, "### {group}\n");
                }
            }
            out.push_str(
                "| case | median | p99 | spread | n | rate | vs baseline (same run) | goal |\n\
                 |---|---:|---:|---:|---:|---:|---|---|\n",
            );
            for c in self.cases.iter().filter(|c| c.group == group) {
                let name = if self.is_baseline(c) && !c.name.contains("baseline") {
                    format!("{} *(baseline)*", md(&c.name))
                } else {
                    md(&c.name)
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    name,
                    c.fmt(c.median),
                    c.fmt(c.p99),
                    c.spread_text(),
                    c.count_text(),
                    c.rate(),
                    md(&c.vs_baseline()),
                    md(&c.goal_text()),
                );
            }
            out.push('\n');
        }
        for run in runs.iter().filter(|r| !r.ok) {
            let _ = writeln!(
                out,
                "**`{}` failed during this run; its figures may be missing.**\n",
                run.target.stem
            );
        }
        out
    }

    /// The chart: time figures as distributions on a log scale, throughput and memory as bars.
    fn svg(&self) -> String {
        let times: Vec<&Case> = self
            .cases
            .iter()
            .filter(|c| c.unit == "ns" && !c.is_throughput() && !c.runs.is_empty())
            .collect();
        let bars: Vec<&Case> = self
            .cases
            .iter()
            .filter(|c| (c.is_throughput() || c.unit != "ns") && c.median.is_some())
            .collect();
        const ROW: f64 = 15.0;
        const TOP: f64 = 60.0;
        const LABEL_W: f64 = 360.0;
        const PLOT_W: f64 = 430.0;
        const GAP: f64 = 90.0;
        const BAR_LABEL_W: f64 = 300.0;
        const BAR_W: f64 = 250.0;
        let group_rows = |cs: &[&Case]| {
            let mut n = 0usize;
            let mut g = "";
            for c in cs {
                if c.group != g {
                    g = &c.group;
                    n += 1;
                }
            }
            n
        };
        let left_h = (times.len() + group_rows(&times)) as f64 * ROW;
        let right_h = (bars.len() + 2 * group_rows(&bars)) as f64 * ROW * 1.3;
        let width = LABEL_W + PLOT_W + GAP + BAR_LABEL_W + BAR_W + 80.0;
        let height = TOP + left_h.max(right_h) + 60.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans, Arial, sans-serif\" \
             font-size=\"10\">"
        );
        let _ = writeln!(
            s,
            "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">cargo xtask bench</text>\n\
             <text x=\"10\" y=\"38\" font-size=\"11\">Time per operation or per sample \
             (log scale): dots = runs or samples, black bar = median, red tick = p99; grey = \
             baselines</text>"
        );
        // Left: distributions on a log axis.
        let (lo, hi) = times
            .iter()
            .flat_map(|c| c.runs.iter().copied())
            .filter(|v| *v > 0.0)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo_exp, hi_exp) = if lo <= hi {
            (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        } else {
            (0.0, 1.0)
        };
        let x0 = LABEL_W;
        let x_of = |v: f64| {
            let v = v.max(10f64.powf(lo_exp));
            x0 + (v.log10() - lo_exp) / (hi_exp - lo_exp) * PLOT_W
        };
        let plot_top = TOP;
        let plot_bottom = TOP + left_h;
        let mut e = lo_exp;
        while e <= hi_exp {
            let x = x_of(10f64.powf(e));
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{plot_top:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" \
                 stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                 fill=\"#555\">{}</text>",
                plot_top - 4.0,
                esc(&fmt_ns(10f64.powf(e)).replace(".00", "").replace(".0", ""))
            );
            e += 1.0;
        }
        let mut y = TOP;
        let mut group = "";
        for c in &times {
            if c.group != group {
                group = &c.group;
                y += ROW;
                let _ = writeln!(
                    s,
                    "<text x=\"4\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
                    y - 3.0,
                    esc(group)
                );
            }
            y += ROW;
            let mid = y - ROW / 2.0;
            let base = self.is_pure_baseline(c);
            let color = if base { "#888" } else { "#1f5fa8" };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">{}</text>",
                x0 - 6.0,
                mid + 3.5,
                if base { "#777" } else { "#000" },
                esc(&clip(&c.name, 62))
            );
            if let (Some(min), Some(max)) = (c.min, c.max) {
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{mid:.1}\" x2=\"{:.1}\" y2=\"{mid:.1}\" stroke=\"{color}\" \
                     stroke-opacity=\"0.5\"/>",
                    x_of(min),
                    x_of(max)
                );
            }
            for v in c.runs.iter().filter(|v| **v > 0.0) {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{mid:.1}\" r=\"1.8\" fill=\"{color}\" \
                     fill-opacity=\"0.35\"/>",
                    x_of(*v)
                );
            }
            s.push('\n');
            if let Some(p99) = c.p99 {
                let x = x_of(p99);
                let _ = writeln!(
                    s,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#d22\" \
                     stroke-width=\"1.5\"/>",
                    mid - 4.0,
                    mid + 4.0
                );
            }
            if let Some(m) = c.median {
                let x = x_of(m);
                let _ = writeln!(
                    s,
                    "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#000\" \
                     stroke-width=\"2.5\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text>",
                    mid - 6.0,
                    mid + 6.0,
                    x0 + PLOT_W + 6.0,
                    mid + 3.5,
                    esc(&fmt_ns(m))
                );
            }
        }

        // Right: bars, one scale per group and unit.
        let bx0 = LABEL_W + PLOT_W + GAP + BAR_LABEL_W;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\">Throughput at the \
             median (operations per second) and memory</text>",
            bx0 - BAR_LABEL_W,
            TOP - 4.0
        );
        let mut y = TOP + 6.0;
        let mut key = (String::new(), String::new());
        let mut scale = 1.0;
        for c in &bars {
            let value = |c: &Case| {
                let m = c.median.unwrap_or(0.0);
                if c.is_throughput() {
                    if m > 0.0 { 1e9 / m } else { 0.0 }
                } else {
                    m
                }
            };
            let unit_label = if c.is_throughput() {
                "ops/s"
            } else {
                c.unit.as_str()
            };
            if (c.group.as_str(), unit_label) != (key.0.as_str(), key.1.as_str()) {
                key = (c.group.clone(), unit_label.to_owned());
                scale = bars
                    .iter()
                    .filter(|o| {
                        o.group == c.group
                            && o.is_throughput() == c.is_throughput()
                            && o.unit == c.unit
                    })
                    .map(|o| {
                        let goal = o
                            .goals
                            .iter()
                            .filter(|g| g.text.starts_with(">="))
                            .map(|g| g.limit)
                            .fold(0.0, f64::max);
                        value(o).max(goal)
                    })
                    .fold(0.0, f64::max)
                    .max(1e-9);
                y += ROW * 1.6;
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-weight=\"bold\">{} ({})</text>",
                    bx0 - BAR_LABEL_W,
                    y - 4.0,
                    esc(&c.group),
                    if c.is_throughput() {
                        "pipelined / one-way, ops per second"
                    } else if c.unit == "B" {
                        "bytes"
                    } else {
                        unit_label
                    }
                );
            }
            y += ROW * 1.3;
            let v = value(c);
            let w = (v / scale * BAR_W).clamp(0.0, BAR_W);
            let base = self.is_pure_baseline(c);
            let label = if c.is_throughput() {
                fmt_rate(v)
            } else {
                fmt_value(&c.unit, v)
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{}\">{}</text>\
                 <rect x=\"{bx0:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text>",
                bx0 - 6.0,
                y - 4.0,
                if base { "#777" } else { "#000" },
                esc(&clip(&c.name, 48)),
                y - ROW,
                ROW - 3.0,
                if base { "#aaa" } else { "#e07b24" },
                bx0 + w + 4.0,
                y - 4.0,
                esc(&label)
            );
            for g in c.goals.iter().filter(|g| g.text.starts_with(">=")) {
                let gx = bx0 + (g.limit / scale * BAR_W).clamp(0.0, BAR_W);
                let _ = writeln!(
                    s,
                    "<line x1=\"{gx:.1}\" y1=\"{:.1}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#d22\" \
                     stroke-dasharray=\"2,2\"/>",
                    y - ROW - 2.0,
                    y
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Facts the report needs beside the results.
#[derive(Debug, Clone)]
struct RunInfo {
    machine: Machine,
    date: String,
    load_start: String,
    load_end: String,
    total_seconds: f64,
    selected_name: Option<String>,
    png: Option<PathBuf>,
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = concat!(
        r#"{"kind":"case","group":"socket","name":"raw \"blocking\"","unit":"ns","ops":20000,"runs":[9000,10000,11000],"median":10000,"min":9000,"p99":11000,"max":11000,"spread":0.2,"baseline":null,"ratio":null,"smoke":false}"#,
        "\n",
        r#"{"kind":"case","group":"socket","name":"control_ping pipelined","unit":"ns","ops":2000000,"runs":[400,500,600],"median":500,"min":400,"p99":600,"max":600,"spread":0.4,"baseline":"raw \"blocking\"","ratio":0.05,"smoke":false}"#,
        "\n",
        r#"{"kind":"goal","group":"socket","case":"control_ping pipelined","goal":">= 2.00M/s","value":2000000,"limit":2000000,"met":true,"smoke":false}"#,
        "\n\n",
        r#"{"kind":"case","group":"server","name":"memory per socket client","unit":"B","ops":1,"runs":[4096],"median":4096,"min":4096,"p99":4096,"max":4096,"spread":0,"baseline":null,"ratio":null,"smoke":false}"#,
        "\n"
    );

    fn runs() -> Vec<GroupRun> {
        ["socket", "server"]
            .iter()
            .map(|s| GroupRun {
                target: BenchTarget {
                    package: "api-server".into(),
                    stem: (*s).into(),
                    source: format!("tools/api-server/benches/{s}.rs"),
                    dir: PathBuf::from("tools/api-server"),
                },
                load_before: "0.50 0.40 0.30".into(),
                load_after: "0.60 0.40 0.30".into(),
                seconds: 12.0,
                ok: true,
            })
            .collect()
    }

    #[test]
    fn json_parser_reads_what_vppinfra_writes() {
        let j = parse_json(r#" {"a":[1,-2.5e3,null,true],"b":"x\"\\\n\u00e9","c":{}} "#).unwrap();
        assert_eq!(
            j.get("a"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-2500.0),
                Json::Null,
                Json::Bool(true)
            ]))
        );
        assert_eq!(j.str("b"), Some("x\"\\\né"));
        assert_eq!(j.get("c"), Some(&Json::Obj(Vec::new())));
        assert!(j.num("a").is_none());
        for bad in [
            "{",
            "[1,]",
            "{\"a\" 1}",
            "\"abc",
            "tru",
            "1 2",
            "{\"a\":1,}",
            "-",
        ] {
            assert!(parse_json(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn results_attach_goals_and_keep_units() {
        let r = Results::parse(LINES).unwrap();
        assert_eq!(r.cases.len(), 3);
        assert_eq!(r.cases[0].name, "raw \"blocking\"");
        assert!(r.cases[0].goals.is_empty());
        assert_eq!(r.cases[1].goals.len(), 1);
        assert!(r.cases[1].goals[0].met);
        assert!(r.cases[1].is_throughput());
        assert!(r.cases[1].is_noisy());
        assert_eq!(r.cases[1].rate(), "2.00M/s");
        assert_eq!(r.cases[2].unit, "B");
        assert!(r.cases[2].is_distribution());
        assert_eq!(r.cases[2].fmt(r.cases[2].median), "4.0 KiB");
        assert!(r.is_baseline(&r.cases[0]));
        assert!(!r.is_baseline(&r.cases[1]));
        assert!(Results::parse("{\"kind\":\"goal\",\"group\":\"g\",\"case\":\"nope\"}").is_err());
        assert!(Results::parse("{\"kind\":\"mystery\"}").is_err());
        assert!(Results::parse("not json").is_err());
    }

    #[test]
    fn table_json_report_and_chart_carry_every_case() {
        let runs = runs();
        let mut r = Results::parse(LINES).unwrap();
        r.order_by(&runs);
        let table = r.text_table(&runs);
        assert!(table.contains("socket/control_ping pipelined"), "{table}");
        assert!(table.contains(">= 2.00M/s: met"), "{table}");
        assert!(table.contains("0.05x raw \"blocking\""), "{table}");
        assert!(table.contains("load average 0.50 0.40 0.30 -> 0.60 0.40 0.30"));

        let json = parse_json(&r.to_json(&runs)).unwrap();
        let Json::Arr(items) = json else {
            panic!("results.json is an array")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[1]
                .get("goals")
                .map(|g| matches!(g, Json::Arr(a) if a.len() == 1)),
            Some(true)
        );
        assert_eq!(items[2].str("unit"), Some("B"));
        assert_eq!(items[0].str("load_before"), Some("0.50 0.40 0.30"));

        let info = RunInfo {
            machine: Machine {
                cpu: "Test CPU".into(),
                cpus: 2,
                ..Default::default()
            },
            date: "2024-01-02 03:04 UTC".into(),
            load_start: "1.00 1.00 1.00".into(),
            load_end: "2.00 1.00 1.00".into(),
            total_seconds: 100.0,
            selected_name: None,
            png: None,
        };
        let md = r.markdown_report(&runs, &info);
        assert!(md.contains("- CPU: Test CPU (2 logical CPUs)"));
        assert!(md.contains("1.00 1.00 1.00 at the start"));
        assert!(md.contains("(docs/bench-chart.svg)"));
        assert!(md.contains("| raw \"blocking\" *(baseline)* |"), "{md}");
        assert!(
            md.contains("| 4.0 KiB | 4.0 KiB | 0% | 1 samples |"),
            "{md}"
        );
        assert!(
            md.contains("| socket/control_ping pipelined | >= 2.00M/s | 2.00M/s | met |"),
            "{md}"
        );
        assert!(md.contains("cargo bench -p api-server --bench socket"));

        let svg = r.svg();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(
            svg.contains("raw &quot;blocking&quot;"),
            "names are escaped"
        );
        assert!(svg.contains(">2.00M/s</text>"), "throughput bar labelled");
        assert!(svg.contains(">4.0 KiB</text>"), "memory bar labelled");
        assert_eq!(
            svg.matches("<circle").count(),
            3,
            "one dot per run of the time case"
        );
    }

    #[test]
    fn bench_executables_come_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","manifest_path":"/w/svm/Cargo.toml","target":{"kind":["lib"],"name":"svm"},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/svm/Cargo.toml","target":{"kind":["bench"],"name":"queue"},"executable":"/t/release/deps/queue-1"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\nnot json\n"
        );
        assert_eq!(
            bench_executables(messages),
            vec![(
                "/w/svm/Cargo.toml".to_owned(),
                "queue".to_owned(),
                "/t/release/deps/queue-1".to_owned()
            )]
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert_eq!(utc_date(1_735_689_600), "2025-01-01 00:00 UTC");
    }

    #[test]
    fn benches_run_limits_first() {
        assert!(rank("queue") < rank("socket"));
        assert!(rank("server") < rank("heap"));
        assert_eq!(rank("something-new"), ORDER.len());
    }
}
