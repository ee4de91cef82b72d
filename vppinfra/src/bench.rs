//! A tiny benchmark harness for `[[bench]] harness = false` binaries.
//!
//! Each case is timed over several runs after a warm-up; the report line gives the median,
//! minimum, p99 and spread of the per-run figures, and, when a baseline measured in the same
//! process run is named, the ratio to it. Machines here are shared and noisy, so a figure is only
//! ever read beside its baseline.
//!
//! `cargo bench` passes `--bench` to the binary; `cargo test --benches` does not. Without it the
//! harness runs in *smoke* mode: one short run per case, enough to prove the benchmark still
//! works, with no claim about speed.
//!
//! Figures are nanoseconds per operation unless a case says otherwise ([`Unit`]): a memory
//! figure is in bytes, and a latency distribution reports one value per sample instead of one per
//! run (`ops_per_run` 1). [`Bench::goal`] judges a case against a target and prints the verdict.
//!
//! When the environment variable `VPP_BENCH_JSON` names a file, every reported case and every
//! goal is also appended to it as one JSON object per line (see [`Summary::to_json`] and
//! [`Bench::goal`]); `cargo xtask bench` reads them back to print one table for all benchmarks.
//!
//! ```
//! let mut b = vppinfra::bench::Bench::from_args("example");
//! let base = b.run("baseline: add", 1000, |n| {
//!     let mut x = 0u64;
//!     for i in 0..n { x = std::hint::black_box(x + i); }
//! });
//! b.run_vs("wrapping add", 1000, &base, |n| {
//!     let mut x = 0u64;
//!     for i in 0..n { x = std::hint::black_box(x.wrapping_add(i)); }
//! });
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The environment variable naming the file that reported cases are appended to, as JSON lines.
pub const JSON_ENV: &str = "VPP_BENCH_JSON";

/// What the figures of a [`Summary`] measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds per operation (or per sample); lower is better.
    Nanoseconds,
    /// Bytes (for example memory per client); lower is better.
    Bytes,
    /// Events per second; higher is better.
    PerSecond,
}

impl Unit {
    /// The symbol written in the JSON `unit` field: `ns`, `B` or `/s`.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Nanoseconds => "ns",
            Unit::Bytes => "B",
            Unit::PerSecond => "/s",
        }
    }

    /// Formats a value of this unit for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::Nanoseconds => format_ns(value),
            Unit::Bytes => format_bytes(value),
            Unit::PerSecond => format_rate(value),
        }
    }
}

/// Figures of one case: per-run values (nanoseconds per operation unless `unit` says otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Case name.
    pub name: String,
    /// Operations per run (1 when each value is a single sample).
    pub ops_per_run: u64,
    /// Per-run values in `unit` (ns/op by default), sorted ascending.
    pub runs_ns: Vec<f64>,
    /// What the values measure.
    pub unit: Unit,
}

impl Summary {
    /// Builds a summary from per-run ns/op figures.
    pub fn new(name: impl Into<String>, ops_per_run: u64, mut runs_ns: Vec<f64>) -> Self {
        runs_ns.sort_by(|a, b| a.total_cmp(b));
        Self {
            name: name.into(),
            ops_per_run,
            runs_ns,
            unit: Unit::Nanoseconds,
        }
    }

    /// Builds a distribution from individually timed samples (ns each): the median, p99 and
    /// spread are then those of the samples.
    pub fn samples(name: impl Into<String>, samples_ns: Vec<f64>) -> Self {
        Self::new(name, 1, samples_ns)
    }

    /// The same figures in another unit.
    pub fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// Median ns/op.
    pub fn median(&self) -> f64 {
        percentile(&self.runs_ns, 50.0)
    }

    /// Minimum ns/op.
    pub fn min(&self) -> f64 {
        self.runs_ns.first().copied().unwrap_or(f64::NAN)
    }

    /// 99th percentile of the runs' ns/op (the worst run when there are fewer than 100).
    pub fn p99(&self) -> f64 {
        percentile(&self.runs_ns, 99.0)
    }

    /// Maximum value.
    pub fn max(&self) -> f64 {
        self.runs_ns.last().copied().unwrap_or(f64::NAN)
    }

    /// (max - min) / median, as a fraction.
    pub fn spread(&self) -> f64 {
        (self.max() - self.min()) / self.median()
    }

    /// Operations per second at the median (meaningful for [`Unit::Nanoseconds`] only).
    pub fn ops_per_sec(&self) -> f64 {
        1e9 / self.median()
    }

    /// One JSON object (a single line) describing this case as reported by `group`, beside
    /// `baseline` with `ratio`:
    ///
    /// `{"kind":"case","group":..,"name":..,"unit":"ns"|"B"|"/s","ops":..,"runs":[..],
    /// "median":..,"min":..,"p99":..,"max":..,"spread":..,"baseline":name|null,
    /// "ratio":x|null,"smoke":bool}`
    ///
    /// `runs` holds the per-run (or per-sample) values in `unit`, ascending; numbers that are
    /// not finite are written as `null`.
    pub fn to_json(
        &self,
        group: &str,
        baseline: Option<&Summary>,
        ratio: Option<f64>,
        smoke: bool,
    ) -> String {
        let mut out = String::with_capacity(256 + 24 * self.runs_ns.len());
        out.push_str("{\"kind\":\"case\",\"group\":");
        json_string(&mut out, group);
        out.push_str(",\"name\":");
        json_string(&mut out, &self.name);
        out.push_str(",\"unit\":");
        json_string(&mut out, self.unit.symbol());
        let _ = write!(out, ",\"ops\":{},\"runs\":[", self.ops_per_run);
        for (i, v) in self.runs_ns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_number(&mut out, *v);
        }
        out.push(']');
        for (key, v) in [
            ("median", self.median()),
            ("min", self.min()),
            ("p99", self.p99()),
            ("max", self.max()),
            ("spread", self.spread()),
        ] {
            let _ = write!(out, ",\"{key}\":");
            json_number(&mut out, v);
        }
        out.push_str(",\"baseline\":");
        match baseline {
            Some(b) => json_string(&mut out, &b.name),
            None => out.push_str("null"),
        }
        out.push_str(",\"ratio\":");
        json_number(&mut out, ratio.unwrap_or(f64::NAN));
        let _ = write!(out, ",\"smoke\":{smoke}}}");
        out
    }
}

/// A target a case is judged against; limits are in the case's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The median is at most this.
    MedianAtMost(f64),
    /// The p99 is at most this.
    P99AtMost(f64),
    /// Operations per second at the median are at least this (a [`Unit::Nanoseconds`] case).
    RateAtLeast(f64),
    /// The ratio of the median to the baseline's is at most this.
    RatioAtMost(f64),
}

impl Goal {
    /// The goal in words, for example `p99 <= 5.00 us`.
    pub fn describe(&self, unit: Unit) -> String {
        match *self {
            Goal::MedianAtMost(v) => format!("median <= {}", unit.format(v)),
            Goal::P99AtMost(v) => format!("p99 <= {}", unit.format(v)),
            Goal::RateAtLeast(v) => format!(">= {}", format_rate(v)),
            Goal::RatioAtMost(v) => format!("<= {v:.2}x baseline"),
        }
    }

    /// The figure the goal looks at, or `None` (a ratio goal without a baseline).
    pub fn value(&self, s: &Summary, ratio: Option<f64>) -> Option<f64> {
        match self {
            Goal::MedianAtMost(_) => Some(s.median()),
            Goal::P99AtMost(_) => Some(s.p99()),
            Goal::RateAtLeast(_) => Some(s.ops_per_sec()),
            Goal::RatioAtMost(_) => ratio,
        }
    }

    /// The limit.
    pub fn limit(&self) -> f64 {
        match *self {
            Goal::MedianAtMost(v)
            | Goal::P99AtMost(v)
            | Goal::RateAtLeast(v)
            | Goal::RatioAtMost(v) => v,
        }
    }

    /// True when `value` meets the goal (NaN never does).
    pub fn met_by(&self, value: f64) -> bool {
        match self {
            Goal::RateAtLeast(limit) => value >= *limit,
            _ => value <= self.limit(),
        }
    }

    /// Formats a figure this goal looks at.
    fn format_value(&self, unit: Unit, value: f64) -> String {
        match self {
            Goal::MedianAtMost(_) | Goal::P99AtMost(_) => unit.format(value),
            Goal::RateAtLeast(_) => format_rate(value),
            Goal::RatioAtMost(_) => format!("{value:.2}x"),
        }
    }
}

/// Appends `s` to `out` as a JSON string.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `v` as a JSON number, or `null` when it is not finite.
fn json_number(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

/// The `p`th percentile (0..=100) of sorted `values`, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats nanoseconds with a unit that keeps three significant digits readable.
pub fn format_ns(ns: f64) -> String {
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

/// Formats a byte count with a binary unit.
pub fn format_bytes(bytes: f64) -> String {
    if bytes.abs() >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
    } else if bytes.abs() >= (1u64 << 20) as f64 {
        format!("{:.2} MiB", bytes / (1u64 << 20) as f64)
    } else if bytes.abs() >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// Formats a rate with an SI suffix.
pub fn format_rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}K/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}/s")
    }
}

/// One benchmark binary's run: settings plus the summaries it printed.
#[derive(Debug)]
pub struct Bench {
    group: String,
    smoke: bool,
    runs: usize,
    filter: Option<String>,
    /// Where reported cases are appended as JSON lines (`VPP_BENCH_JSON`).
    json: Option<PathBuf>,
    /// Every summary reported so far, in order, with its ratio to its baseline.
    pub results: Vec<(Summary, Option<f64>)>,
}

impl Bench {
    /// Reads the process arguments: `--bench` (real run, else smoke), `--runs N`, and an
    /// optional name filter; and `VPP_BENCH_JSON` from the environment.
    pub fn from_args(group: &str) -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = !args.iter().any(|a| a == "--bench");
        let mut runs = 11;
        let mut filter = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--runs" => runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(runs),
                s if !s.starts_with("--") => filter = Some(s.to_owned()),
                _ => {}
            }
        }
        if smoke {
            eprintln!(
                "{group}: smoke mode (no --bench): one short run per case, figures mean nothing"
            );
        }
        let mut b = Self::new(group, smoke, runs);
        b.filter = filter;
        b.json = std::env::var_os(JSON_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        b
    }

    /// A run configured in code: `runs` timed runs per case (1 in smoke mode), no filter, no
    /// JSON output until [`Bench::json_to`].
    pub fn new(group: &str, smoke: bool, runs: usize) -> Self {
        Self {
            group: group.to_owned(),
            smoke,
            runs: if smoke { 1 } else { runs.max(1) },
            filter: None,
            json: None,
            results: Vec::new(),
        }
    }

    /// Appends every case reported from now on to `path` as JSON lines.
    pub fn json_to(&mut self, path: impl Into<PathBuf>) {
        self.json = Some(path.into());
    }

    /// The group name (the benchmark binary's).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// True in smoke mode (`cargo test --benches`).
    pub fn is_smoke(&self) -> bool {
        self.smoke
    }

    /// Number of timed runs per case.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Scales an operation count down in smoke mode.
    pub fn ops(&self, full: u64) -> u64 {
        if self.smoke {
            (full / 1000).max(1)
        } else {
            full
        }
    }

    /// True when `name` passes the command-line filter.
    pub fn wants(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Times `f(ops)` (which must perform `ops` operations) over the configured runs after one
    /// warm-up, prints it and returns the summary.
    pub fn run(&mut self, name: &str, ops: u64, f: impl FnMut(u64)) -> Summary {
        self.run_inner(name, ops, None, f)
    }

    /// Like [`Bench::run`], and prints the ratio of this case's median to `baseline`'s.
    pub fn run_vs(
        &mut self,
        name: &str,
        ops: u64,
        baseline: &Summary,
        f: impl FnMut(u64),
    ) -> Summary {
        self.run_inner(name, ops, Some(baseline), f)
    }

    fn run_inner(
        &mut self,
        name: &str,
        ops: u64,
        baseline: Option<&Summary>,
        mut f: impl FnMut(u64),
    ) -> Summary {
        let ops = self.ops(ops);
        f(ops); // warm-up
        let mut runs_ns = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let t = Instant::now();
            f(ops);
            runs_ns.push(t.elapsed().as_nanos() as f64 / ops as f64);
        }
        let s = Summary::new(name, ops, runs_ns);
        self.report(s, baseline)
    }

    /// Records and prints a summary measured elsewhere (for example by a child process, or a
    /// distribution of individually timed samples), and appends it to the JSON file if any.
    pub fn report(&mut self, s: Summary, baseline: Option<&Summary>) -> Summary {
        let ratio = baseline.map(|b| s.median() / b.median());
        println!("{}", self.line(&s, baseline, ratio));
        self.append_json(&s.to_json(&self.group, baseline, ratio, self.smoke));
        self.results.push((s.clone(), ratio));
        s
    }

    /// Judges the reported case `s` against `goal`, prints the verdict and appends it to the
    /// JSON file as `{"kind":"goal","group":..,"case":..,"goal":text,"value":x|null,
    /// "limit":x,"met":bool,"smoke":bool}`. A ratio goal uses the ratio `s` was reported with.
    /// Returns whether the goal is met (in smoke mode the answer means nothing).
    pub fn goal(&mut self, s: &Summary, goal: Goal) -> bool {
        let ratio = self
            .results
            .iter()
            .rev()
            .find(|(r, _)| r.name == s.name)
            .and_then(|(_, ratio)| *ratio);
        let value = goal.value(s, ratio);
        let met = value.is_some_and(|v| goal.met_by(v));
        let text = goal.describe(s.unit);
        let verdict = match (self.smoke, met) {
            (true, _) => "not judged (smoke run)",
            (false, true) => "met",
            (false, false) => "MISSED",
        };
        println!(
            "{}/goal {}: {} (goal {text}): {verdict}",
            self.group,
            s.name,
            value.map_or_else(
                || "no baseline".to_owned(),
                |v| goal.format_value(s.unit, v)
            ),
        );
        let mut line = String::from("{\"kind\":\"goal\",\"group\":");
        json_string(&mut line, &self.group);
        line.push_str(",\"case\":");
        json_string(&mut line, &s.name);
        line.push_str(",\"goal\":");
        json_string(&mut line, &text);
        line.push_str(",\"value\":");
        json_number(&mut line, value.unwrap_or(f64::NAN));
        line.push_str(",\"limit\":");
        json_number(&mut line, goal.limit());
        let _ = write!(line, ",\"met\":{met},\"smoke\":{}}}", self.smoke);
        self.append_json(&line);
        met
    }

    fn append_json(&self, line: &str) {
        let Some(path) = &self.json else {
            return;
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("{}: cannot append to {}: {e}", self.group, path.display());
        }
    }

    fn line(&self, s: &Summary, baseline: Option<&Summary>, ratio: Option<f64>) -> String {
        let mut line = format!(
            "{}/{:<40} median {:>10}  min {:>10}  p99 {:>10}  spread {:>5.1}%",
            self.group,
            s.name,
            s.unit.format(s.median()),
            s.unit.format(s.min()),
            s.unit.format(s.p99()),
            s.spread() * 100.0,
        );
        if s.unit == Unit::Nanoseconds && s.ops_per_run > 1 {
            let _ = write!(line, "  ({})", format_rate(s.ops_per_sec()));
        } else if s.ops_per_run == 1 {
            let _ = write!(line, "  ({} samples)", s.runs_ns.len());
        }
        if let (Some(b), Some(r)) = (baseline, ratio) {
            let _ = write!(line, "  = {r:.2}x {}", b.name);
        }
        line
    }

    /// Time left before `budget` runs out since `start`; a helper for benches that loop until a
    /// deadline.
    pub fn remaining(start: Instant, budget: Duration) -> Option<Duration> {
        budget.checked_sub(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn summary_sorts_and_reports() {
        let s = Summary::new("x", 10, vec![3.0, 1.0, 2.0]);
        assert_eq!(s.runs_ns, vec![1.0, 2.0, 3.0]);
        assert_eq!(s.median(), 2.0);
        assert_eq!(s.min(), 1.0);
        assert_eq!(s.spread(), 1.0);
        assert_eq!(s.ops_per_sec(), 5e8);
    }

    #[test]
    fn units_are_readable() {
        assert_eq!(format_ns(12.34), "12.3 ns");
        assert_eq!(format_ns(1500.0), "1.50 us");
        assert_eq!(format_rate(2_500_000.0), "2.50M/s");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(3.5 * 1024.0), "3.5 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0), "3.00 MiB");
        assert_eq!(Unit::Bytes.format(2048.0), "2.0 KiB");
        assert_eq!(Unit::PerSecond.format(1500.0), "1.5K/s");
    }

    #[test]
    fn case_json_has_every_field_and_escapes_names() {
        let base = Summary::new("raw \"base\"", 5, vec![10.0]);
        let s = Summary::new("a\\b\n", 100, vec![4.0, 2.0, 3.0]);
        let json = s.to_json("grp", Some(&base), Some(0.3), false);
        assert_eq!(
            json,
            "{\"kind\":\"case\",\"group\":\"grp\",\"name\":\"a\\\\b\\n\",\"unit\":\"ns\",\
             \"ops\":100,\"runs\":[2,3,4],\"median\":3,\"min\":2,\"p99\":4,\"max\":4,\
             \"spread\":0.6666666666666666,\"baseline\":\"raw \\\"base\\\"\",\"ratio\":0.3,\
             \"smoke\":false}"
        );
        assert!(!json.contains('\n'), "one line per case");
    }

    #[test]
    fn json_writes_null_for_missing_figures_and_keeps_the_unit() {
        let s = Summary::new("empty", 1, Vec::new()).with_unit(Unit::Bytes);
        let json = s.to_json("g", None, None, true);
        assert!(json.contains("\"unit\":\"B\""), "{json}");
        assert!(json.contains("\"runs\":[]"), "{json}");
        assert!(json.contains("\"median\":null"), "{json}");
        assert!(json.contains("\"baseline\":null,\"ratio\":null"), "{json}");
        assert!(json.contains("\"smoke\":true"), "{json}");
        let mut out = String::new();
        json_string(&mut out, "\u{1}");
        assert_eq!(out, "\"\\u0001\"");
    }

    #[test]
    fn goals_judge_the_right_figure() {
        let s = Summary::new("x", 10, vec![100.0, 200.0, 1000.0]);
        assert_eq!(Goal::MedianAtMost(200.0).value(&s, None), Some(200.0));
        assert!(Goal::MedianAtMost(200.0).met_by(200.0));
        assert!(!Goal::P99AtMost(999.0).met_by(Goal::P99AtMost(999.0).value(&s, None).unwrap()));
        assert_eq!(Goal::RateAtLeast(1.0).value(&s, None), Some(5e6));
        assert!(Goal::RateAtLeast(5e6).met_by(5e6));
        assert!(!Goal::RateAtLeast(5e6).met_by(4e6));
        assert_eq!(Goal::RatioAtMost(2.0).value(&s, None), None);
        assert!(!Goal::RatioAtMost(2.0).met_by(f64::NAN));
        assert_eq!(
            Goal::P99AtMost(5000.0).describe(Unit::Nanoseconds),
            "p99 <= 5.00 us"
        );
        assert_eq!(
            Goal::RateAtLeast(2e6).describe(Unit::Nanoseconds),
            ">= 2.00M/s"
        );
        assert_eq!(
            Goal::RatioAtMost(1.1).describe(Unit::Nanoseconds),
            "<= 1.10x baseline"
        );
    }

    #[test]
    fn report_and_goal_append_json_lines() {
        let path =
            std::env::temp_dir().join(format!("vppinfra-bench-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut b = Bench::new("grp", false, 3);
        b.json_to(&path);
        let base = b.report(Summary::new("base", 10, vec![10.0, 10.0, 10.0]), None);
        let case = b.report(
            Summary::new("case", 10, vec![25.0, 30.0, 35.0]),
            Some(&base),
        );
        assert!(b.goal(&case, Goal::RatioAtMost(3.0)));
        assert!(!b.goal(&case, Goal::RatioAtMost(2.0)));
        let samples = b.report(Summary::samples("lat", vec![5.0, 1.0]), None);
        assert_eq!(samples.ops_per_run, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("{\"kind\":\"case\",\"group\":\"grp\",\"name\":\"base\""));
        assert!(
            lines[1].contains("\"baseline\":\"base\",\"ratio\":3,"),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "{\"kind\":\"goal\",\"group\":\"grp\",\"case\":\"case\",\"goal\":\"<= 3.00x baseline\",\
             \"value\":3,\"limit\":3,\"met\":true,\"smoke\":false}"
        );
        assert!(lines[3].contains("\"met\":false"), "{}", lines[3]);
        assert!(lines[4].contains("\"runs\":[1,5]"), "{}", lines[4]);
        assert_eq!(b.results.len(), 3);
    }

    #[test]
    fn without_a_json_file_nothing_is_written() {
        let mut b = Bench::new("grp", true, 5);
        assert_eq!(b.runs(), 1, "smoke mode runs once");
        let s = b.run("noop", 10, |n| {
            std::hint::black_box(n);
        });
        assert_eq!(s.runs_ns.len(), 1);
        assert!(b.json.is_none());
    }
}
