//! Latency statistics for `ping`, and the progress line of long runs.

use std::io::Write;
use std::time::{Duration, Instant};

/// Summary of a set of round-trip times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min: Duration,
    /// Mean.
    pub avg: Duration,
    /// Median (the lower middle sample for an even count).
    pub median: Duration,
    /// 99th percentile, nearest rank.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

impl Latency {
    /// Summarises `samples` (sorted in place); `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let total: Duration = samples.iter().sum();
        // Nearest rank: the smallest sample with at least p% of the samples at or below it.
        let rank = |p: usize| samples[(n * p).div_ceil(100).clamp(1, n) - 1];
        Some(Latency {
            count: n,
            min: samples[0],
            avg: total / n as u32,
            median: samples[(n - 1) / 2],
            p99: rank(99),
            max: samples[n - 1],
        })
    }

    /// `min/avg/median/p99/max = 0.041/0.052/0.050/0.090/0.093 ms`, or in microseconds with
    /// a tenth when the median is below 10 us (shared-memory round trips), where thousandths of
    /// a millisecond would round every figure to the same digit:
    /// `min/avg/median/p99/max = 0.9/1.2/1.1/2.3/140.2 us`.
    pub fn render(&self) -> String {
        let all = [self.min, self.avg, self.median, self.p99, self.max];
        let (figures, unit): (Vec<String>, &str) = if self.median < Duration::from_micros(10) {
            let us = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
            (all.iter().map(us).collect(), "us")
        } else {
            (all.iter().copied().map(ms).collect(), "ms")
        };
        format!("min/avg/median/p99/max = {} {unit}", figures.join("/"))
    }
}

/// Milliseconds with three decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// A self-overwriting progress line on stderr, for runs longer than a second, shown only when
/// stderr is a terminal.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: u64,
    start: Instant,
    enabled: bool,
    shown: bool,
}

/// How long a run goes before its progress line appears.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

impl Progress {
    /// A progress line for `total` steps; `enabled` is whether stderr is a terminal.
    pub fn new(label: &str, total: u64, enabled: bool) -> Progress {
        Progress {
            label: label.to_owned(),
            total,
            start: Instant::now(),
            enabled,
            shown: false,
        }
    }

    /// The line for `done` steps after `elapsed`.
    pub fn line(&self, done: u64, elapsed: Duration) -> String {
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
        format!(
            "{}: {}/{} ({})",
            self.label,
            done,
            self.total,
            vppinfra::format::format_rate(rate)
        )
    }

    /// Shows `done` steps (if enabled and the run is long enough).
    pub fn update(&mut self, done: u64) {
        let elapsed = self.start.elapsed();
        if !self.enabled || elapsed < PROGRESS_AFTER {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", self.line(done, elapsed));
        let _ = err.flush();
        self.shown = true;
    }

    /// Erases the line, if it was shown.
    pub fn finish(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn statistics() {
        assert_eq!(Latency::of(&mut []), None);
        let mut one = [us(5)];
        let l = Latency::of(&mut one).unwrap();
        assert_eq!(
            (l.min, l.avg, l.median, l.p99, l.max),
            (us(5), us(5), us(5), us(5), us(5))
        );

        let mut samples: Vec<Duration> = (1..=100).rev().map(us).collect();
        let l = Latency::of(&mut samples).unwrap();
        assert_eq!(l.count, 100);
        assert_eq!(l.min, us(1));
        assert_eq!(l.max, us(100));
        assert_eq!(l.median, us(50));
        assert_eq!(l.p99, us(99));
        assert_eq!(l.avg, Duration::from_nanos(50_500));
        assert_eq!(
            l.render(),
            "min/avg/median/p99/max = 0.001/0.051/0.050/0.099/0.100 ms"
        );

        // Round trips of a few microseconds are shown in microseconds.
        let mut fast: Vec<Duration> = [1100, 900, 1200, 140_200, 2300]
            .into_iter()
            .map(Duration::from_nanos)
            .collect();
        assert_eq!(
            Latency::of(&mut fast).unwrap().render(),
            "min/avg/median/p99/max = 0.9/29.1/1.2/140.2/140.2 us"
        );

        // With few samples the 99th percentile is the largest.
        let mut few = [us(3), us(1), us(2)];
        let l = Latency::of(&mut few).unwrap();
        assert_eq!((l.median, l.p99), (us(2), us(3)));
    }

    #[test]
    fn progress_line() {
        let p = Progress::new("repeat control_ping", 1000, false);
        assert_eq!(
            p.line(250, Duration::from_millis(500)),
            "repeat control_ping: 250/1000 (500/s)"
        );
    }
}
