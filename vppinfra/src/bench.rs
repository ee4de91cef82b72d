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
use std::time::{Duration, Instant};

/// Figures of one case, in nanoseconds per operation over the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Case name.
    pub name: String,
    /// Operations per run.
    pub ops_per_run: u64,
    /// Per-run ns/op, sorted ascending.
    pub runs_ns: Vec<f64>,
}

impl Summary {
    /// Builds a summary from per-run ns/op figures.
    pub fn new(name: impl Into<String>, ops_per_run: u64, mut runs_ns: Vec<f64>) -> Self {
        runs_ns.sort_by(|a, b| a.total_cmp(b));
        Self {
            name: name.into(),
            ops_per_run,
            runs_ns,
        }
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

    /// (max - min) / median, as a fraction.
    pub fn spread(&self) -> f64 {
        let max = self.runs_ns.last().copied().unwrap_or(f64::NAN);
        (max - self.min()) / self.median()
    }

    /// Operations per second at the median.
    pub fn ops_per_sec(&self) -> f64 {
        1e9 / self.median()
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
    /// Every summary reported so far, in order.
    pub results: Vec<(Summary, Option<f64>)>,
}

impl Bench {
    /// Reads the process arguments: `--bench` (real run, else smoke), `--runs N`, and an
    /// optional name filter.
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
            eprintln!("{group}: smoke mode (no --bench): one short run per case, figures mean nothing");
        }
        Self {
            group: group.to_owned(),
            smoke,
            runs: if smoke { 1 } else { runs },
            filter,
            results: Vec::new(),
        }
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
        if self.smoke { (full / 1000).max(1) } else { full }
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

    /// Records and prints a summary measured elsewhere (for example by a child process).
    pub fn report(&mut self, s: Summary, baseline: Option<&Summary>) -> Summary {
        let ratio = baseline.map(|b| s.median() / b.median());
        println!("{}", self.line(&s, baseline, ratio));
        self.results.push((s.clone(), ratio));
        s
    }

    fn line(&self, s: &Summary, baseline: Option<&Summary>, ratio: Option<f64>) -> String {
        let mut line = format!(
            "{}/{:<40} median {:>10}  min {:>10}  p99 {:>10}  spread {:>5.1}%  ({})",
            self.group,
            s.name,
            format_ns(s.median()),
            format_ns(s.min()),
            format_ns(s.p99()),
            s.spread() * 100.0,
            format_rate(s.ops_per_sec()),
        );
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
    }
}
