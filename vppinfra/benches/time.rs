//! Cost of taking a timestamp: `Ticks::now` and `now_seconds` beside `std::time::Instant::now`.
//!
//! `cargo bench -p vppinfra --bench time` for figures; `cargo test --benches` runs a smoke pass.

use std::hint::black_box;
use std::time::Instant;
use vppinfra::bench::Bench;
use vppinfra::time::{self, Calibration, Ticks};

fn main() {
    let mut b = Bench::from_args("time");
    let cal = Calibration::global();
    println!(
        "time: source {} at {:.0} ticks/s{}",
        cal.source(),
        cal.ticks_per_second(),
        cal.fallback_reason()
            .map(|r| format!(" (fallback: {r})"))
            .unwrap_or_default()
    );
    const OPS: u64 = 2_000_000;
    let base = b.run("baseline: Instant::now", OPS, |n| {
        for _ in 0..n {
            black_box(Instant::now());
        }
    });
    if b.wants("Ticks::now") {
        b.run_vs("Ticks::now", OPS, &base, |n| {
            for _ in 0..n {
                black_box(Ticks::now());
            }
        });
    }
    if b.wants("now_seconds") {
        b.run_vs("now_seconds", OPS, &base, |n| {
            for _ in 0..n {
                black_box(time::now_seconds());
            }
        });
    }
    if b.wants("elapsed") {
        let start = Ticks::now();
        b.run_vs("Ticks::elapsed (read + convert)", OPS, &base, |n| {
            for _ in 0..n {
                black_box(start.elapsed());
            }
        });
    }
}
