//! CPU-tick time: a cheap counter for hot paths, calibrated against the monotonic clock.
//!
//! [`Ticks::now`] reads a raw hardware counter: the TSC (`rdtsc`) on x86_64, the virtual counter
//! (`cntvct_el0`) on aarch64, and `CLOCK_MONOTONIC` in nanoseconds elsewhere or when the hardware
//! counter cannot be trusted. The first use in a process measures the counter's rate against
//! `CLOCK_MONOTONIC` over a short window (about 16 ms, in two halves that must agree) and caches
//! the result in a [`Calibration`]; [`now_seconds`] counts from that moment, the process epoch.
//!
//! The TSC is used only when the CPU advertises an invariant TSC (CPUID leaf `0x8000_0007`, EDX
//! bit 8) or the kernel itself uses it as its clocksource, and only when the measured rate is
//! plausible and stable. Otherwise, or when `VPPINFRA_CLOCK=monotonic` is set in the environment,
//! ticks are monotonic-clock nanoseconds: slower to read (a vDSO call) but always right. The
//! reason is kept in [`Calibration::fallback_reason`].
//!
//! ```
//! use vppinfra::time::{self, Stopwatch, Ticks};
//! let start = Ticks::now(); // a raw counter read: cheap enough for every packet or message
//! let watch = Stopwatch::start();
//! let spent: std::time::Duration = start.elapsed();
//! println!("{spent:?} {:?} at {:.0} ticks/s", watch.elapsed(), time::ticks_per_second());
//! assert!(time::now_seconds() >= 0.0);
//! ```
//!
//! # References
//! VPP `src/vppinfra/time.h` and `time.c` (`clib_cpu_time_now`, `clib_time_init`,
//! `clib_time_now`); Intel SDM vol. 3 §18.17 (invariant TSC); Arm ARM D11 (generic timer).
//!
//! # Safety
//! The only unsafe operations read the cycle counter. `_rdtsc` exists on every x86_64 CPU and
//! only reads a register. `mrs cntvct_el0` reads the generic timer's virtual count, which Linux
//! makes readable at EL0 on every aarch64 system (the vDSO relies on it). Neither touches memory.
//! `__cpuid` is safe on current toolchains and wrapped for older ones; the leaves it reads exist
//! on every x86_64 CPU (the maximum extended leaf is checked before leaf `0x8000_0007`).
#![allow(unsafe_code)]

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable that, set to `monotonic`, makes [`Ticks`] use the monotonic clock.
pub const CLOCK_ENV: &str = "VPPINFRA_CLOCK";

/// The length of the calibration window used at first use.
pub const CALIBRATION_WINDOW: Duration = Duration::from_millis(16);

/// Counter rates outside this range (ticks per second) are taken as miscalibration.
const PLAUSIBLE_RATE: std::ops::RangeInclusive<f64> = 1e6..=1e11;

/// The two halves of a calibration window must measure rates within this fraction of each other.
const MAX_HALF_DISAGREEMENT: f64 = 0.01;

/// The counter behind [`Ticks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TickSource {
    /// The x86_64 time-stamp counter (`rdtsc`).
    Tsc,
    /// The aarch64 generic timer's virtual count (`cntvct_el0`).
    ArmVirtualCounter,
    /// `CLOCK_MONOTONIC`, in nanoseconds.
    Monotonic,
}

impl TickSource {
    /// The hardware counter this architecture offers, if any.
    pub const fn hardware() -> Option<TickSource> {
        if cfg!(target_arch = "x86_64") {
            Some(TickSource::Tsc)
        } else if cfg!(target_arch = "aarch64") {
            Some(TickSource::ArmVirtualCounter)
        } else {
            None
        }
    }

    /// Reads this source's counter. A hardware source this architecture lacks reads the
    /// monotonic clock instead (such a source is never calibrated, see [`Calibration::measure`]).
    #[inline(always)]
    pub fn read(self) -> u64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            TickSource::Tsc => counter::rdtsc(),
            #[cfg(target_arch = "aarch64")]
            TickSource::ArmVirtualCounter => counter::cntvct(),
            _ => monotonic_ns(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            TickSource::Tsc => "tsc",
            TickSource::ArmVirtualCounter => "cntvct_el0",
            TickSource::Monotonic => "monotonic clock",
        }
    }
}

impl fmt::Display for TickSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC`.
#[inline]
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux with a valid clock id; 0 keeps this total anyway.
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec() as u64),
        Err(_) => 0,
    }
}

/// Raw counter reads, the only unsafe code in this module.
mod counter {
    /// Reads the TSC.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn rdtsc() -> u64 {
        // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the time-stamp counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Reads the aarch64 virtual counter.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(super) fn cntvct() -> u64 {
        let value: u64;
        // SAFETY: Linux enables EL0 access to cntvct_el0 (CNTKCTL_EL1.EL0VCTEN) on every aarch64
        // system; the instruction reads one system register and touches no memory.
        unsafe {
            core::arch::asm!("mrs {}, cntvct_el0", out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    }

    /// The counter frequency the firmware programmed into `cntfrq_el0`.
    #[cfg(target_arch = "aarch64")]
    pub(super) fn cntfrq() -> u64 {
        let value: u64;
        // SAFETY: cntfrq_el0 is readable at EL0 whenever cntvct_el0 is; the read touches no memory.
        unsafe {
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    }

    /// True when CPUID reports an invariant TSC (constant rate across P-, C- and T-states).
    #[cfg(target_arch = "x86_64")]
    pub(super) fn cpuid_invariant_tsc() -> bool {
        use core::arch::x86_64::__cpuid;
        // SAFETY: CPUID exists on every x86_64 CPU and leaf 0x8000_0000 (maximum extended leaf)
        // is always defined. (The intrinsic is safe on newer toolchains, hence the allow.)
        #[allow(unused_unsafe)]
        let max_extended = unsafe { __cpuid(0x8000_0000) }.eax;
        if max_extended < 0x8000_0007 {
            return false;
        }
        // SAFETY: leaf 0x8000_0007 is within the maximum extended leaf checked above.
        #[allow(unused_unsafe)]
        let power = unsafe { __cpuid(0x8000_0007) };
        power.edx & (1 << 8) != 0
    }
}

/// Why a counter could not be calibrated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClockCalibrateError {
    /// This architecture has no such counter.
    Unsupported(TickSource),
    /// The counter did not advance, or went backwards, across the window.
    NotMonotonic,
    /// The measured rate is outside any plausible counter frequency.
    ImplausibleRate {
        /// The measured ticks per second.
        ticks_per_second: f64,
    },
    /// The two halves of the window measured different rates (a non-invariant or unsynchronised
    /// counter, or a badly disturbed measurement).
    Unstable {
        /// Ticks per second over the first half.
        first: f64,
        /// Ticks per second over the second half.
        second: f64,
    },
}

impl fmt::Display for ClockCalibrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(source) => {
                write!(f, "{source} is not available on this architecture")
            }
            Self::NotMonotonic => f.write_str("the counter did not advance monotonically"),
            Self::ImplausibleRate { ticks_per_second } => {
                write!(
                    f,
                    "implausible counter rate of {ticks_per_second:.0} ticks/s"
                )
            }
            Self::Unstable { first, second } => write!(
                f,
                "counter rate unstable across the window ({first:.0} vs {second:.0} ticks/s)"
            ),
        }
    }
}

impl std::error::Error for ClockCalibrateError {}

/// A counter source with its measured rate and the process epoch.
#[doc(alias = "clib_time_t")]
#[derive(Debug, Clone)]
pub struct Calibration {
    source: TickSource,
    ticks_per_second: f64,
    seconds_per_tick: f64,
    epoch_ticks: u64,
    fallback_reason: Option<String>,
}

/// One simultaneous reading of a counter and the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ticks: u64,
    ns: u64,
}

/// Reads `source` between two monotonic-clock reads, keeping the tightest of a few brackets, so a
/// preemption in the middle of one attempt does not skew the pairing.
fn sample(source: TickSource) -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..7 {
        let before = monotonic_ns();
        let ticks = source.read();
        let after = monotonic_ns();
        let bracket = after.saturating_sub(before);
        let candidate = Sample {
            ticks,
            ns: before + bracket / 2,
        };
        if best.is_none_or(|(b, _)| bracket < b) {
            best = Some((bracket, candidate));
        }
    }
    best.map_or(
        Sample {
            ticks: source.read(),
            ns: monotonic_ns(),
        },
        |(_, s)| s,
    )
}

fn rate(from: Sample, to: Sample) -> Result<f64, ClockCalibrateError> {
    if to.ticks <= from.ticks || to.ns <= from.ns {
        return Err(ClockCalibrateError::NotMonotonic);
    }
    Ok((to.ticks - from.ticks) as f64 * 1e9 / (to.ns - from.ns) as f64)
}

impl Calibration {
    /// The process-wide calibration, measured at first use (which takes about
    /// [`CALIBRATION_WINDOW`]) and fixed afterwards.
    #[doc(alias = "clib_time_init")]
    pub fn global() -> &'static Calibration {
        static GLOBAL: OnceLock<Calibration> = OnceLock::new();
        GLOBAL.get_or_init(Calibration::choose)
    }

    /// Picks the best trustworthy source for this machine and calibrates it.
    fn choose() -> Calibration {
        if std::env::var(CLOCK_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("monotonic")) {
            return Calibration::monotonic_because(format!("{CLOCK_ENV}=monotonic"));
        }
        let Some(source) = TickSource::hardware() else {
            return Calibration::monotonic_because("no hardware counter on this architecture");
        };
        if let Err(why) = hardware_trusted(source) {
            return Calibration::monotonic_because(why);
        }
        // A single disturbed window (a preemption mid-measurement on a busy machine) should not
        // cost the process its fast clock, so one failure is retried.
        let mut last_error = None;
        for _ in 0..2 {
            match Calibration::measure(source, CALIBRATION_WINDOW) {
                Ok(cal) => return cal,
                Err(e) => last_error = Some(e),
            }
        }
        let why = last_error.map_or_else(String::new, |e| e.to_string());
        Calibration::monotonic_because(format!("{source} calibration failed: {why}"))
    }

    /// Calibrates `source` against the monotonic clock over `window`, checking that the rate is
    /// plausible and that both halves of the window agree within 1%.
    ///
    /// The epoch of the result is the end of the window.
    pub fn measure(
        source: TickSource,
        window: Duration,
    ) -> Result<Calibration, ClockCalibrateError> {
        if source != TickSource::Monotonic && TickSource::hardware() != Some(source) {
            return Err(ClockCalibrateError::Unsupported(source));
        }
        let half = window / 2;
        let s0 = sample(source);
        std::thread::sleep(half);
        let s1 = sample(source);
        std::thread::sleep(half);
        let s2 = sample(source);
        let (first, second, whole) = (rate(s0, s1)?, rate(s1, s2)?, rate(s0, s2)?);
        if !PLAUSIBLE_RATE.contains(&whole) {
            return Err(ClockCalibrateError::ImplausibleRate {
                ticks_per_second: whole,
            });
        }
        if (first - second).abs() > MAX_HALF_DISAGREEMENT * whole {
            return Err(ClockCalibrateError::Unstable { first, second });
        }
        let ticks_per_second = refine_rate(source, whole);
        Ok(Calibration {
            source,
            ticks_per_second,
            seconds_per_tick: 1.0 / ticks_per_second,
            epoch_ticks: s2.ticks,
            fallback_reason: None,
        })
    }

    /// The monotonic clock in nanoseconds: exact, no measurement needed. The epoch is now.
    pub fn monotonic() -> Calibration {
        Calibration {
            source: TickSource::Monotonic,
            ticks_per_second: 1e9,
            seconds_per_tick: 1e-9,
            epoch_ticks: monotonic_ns(),
            fallback_reason: None,
        }
    }

    fn monotonic_because(reason: impl Into<String>) -> Calibration {
        Calibration {
            fallback_reason: Some(reason.into()),
            ..Calibration::monotonic()
        }
    }

    /// The counter behind this calibration.
    pub fn source(&self) -> TickSource {
        self.source
    }

    /// Counter ticks per second.
    pub fn ticks_per_second(&self) -> f64 {
        self.ticks_per_second
    }

    /// Seconds per counter tick.
    pub fn seconds_per_tick(&self) -> f64 {
        self.seconds_per_tick
    }

    /// The raw counter value at the epoch (the end of calibration).
    pub fn epoch(&self) -> Ticks {
        Ticks(self.epoch_ticks)
    }

    /// Why the monotonic clock was chosen over a hardware counter, if it was a fallback.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// Reads this calibration's counter.
    #[inline(always)]
    pub fn now(&self) -> Ticks {
        Ticks(self.source.read())
    }

    /// Seconds since this calibration's epoch.
    #[inline]
    pub fn now_seconds(&self) -> f64 {
        self.seconds_since_epoch(self.now())
    }

    /// Seconds from the epoch to `t` (negative if `t` predates it).
    #[inline]
    pub fn seconds_since_epoch(&self, t: Ticks) -> f64 {
        (t.0 as i128 - self.epoch_ticks as i128) as f64 * self.seconds_per_tick
    }

    /// Converts a tick count to seconds.
    #[inline]
    pub fn ticks_to_seconds(&self, ticks: u64) -> f64 {
        ticks as f64 * self.seconds_per_tick
    }

    /// Converts a tick count to a duration (saturating at [`Duration::MAX`]).
    pub fn ticks_to_duration(&self, ticks: u64) -> Duration {
        if self.source == TickSource::Monotonic {
            return Duration::from_nanos(ticks);
        }
        Duration::try_from_secs_f64(self.ticks_to_seconds(ticks)).unwrap_or(Duration::MAX)
    }

    /// Converts a duration to ticks, rounding to the nearest tick and saturating at `u64::MAX`.
    pub fn duration_to_ticks(&self, d: Duration) -> u64 {
        if self.source == TickSource::Monotonic {
            return u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        }
        // `as` saturates for out-of-range floats.
        (d.as_secs_f64() * self.ticks_per_second).round() as u64
    }
}

/// Decides whether the hardware counter may be used at all, before measuring it.
fn hardware_trusted(source: TickSource) -> Result<(), String> {
    match source {
        TickSource::Tsc => {
            #[cfg(target_arch = "x86_64")]
            {
                let invariant = counter::cpuid_invariant_tsc();
                let kernel_uses_tsc = kernel_clocksource().as_deref() == Some("tsc");
                tsc_policy(invariant, kernel_uses_tsc)
            }
            #[cfg(not(target_arch = "x86_64"))]
            Err("tsc is not available on this architecture".to_owned())
        }
        // The generic timer runs at a fixed frequency by architecture definition.
        TickSource::ArmVirtualCounter => Ok(()),
        TickSource::Monotonic => Ok(()),
    }
}

/// The TSC is trusted when the CPU says it is invariant or the kernel, which watches it against
/// other clocks, uses it itself (hypervisors often hide the CPUID bit of a perfectly good TSC).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn tsc_policy(cpuid_invariant: bool, kernel_uses_tsc: bool) -> Result<(), String> {
    if cpuid_invariant || kernel_uses_tsc {
        Ok(())
    } else {
        Err("tsc is not invariant and the kernel does not use it as its clocksource".to_owned())
    }
}

/// The kernel's current clocksource (`tsc`, `kvm-clock`, `hpet`...), if readable.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn kernel_clocksource() -> Option<String> {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// On aarch64 the firmware states the counter frequency; when the measurement confirms it, the
/// stated value is exact and better than the measurement.
fn refine_rate(source: TickSource, measured: f64) -> f64 {
    #[cfg(target_arch = "aarch64")]
    if source == TickSource::ArmVirtualCounter {
        let stated = counter::cntfrq() as f64;
        if (stated - measured).abs() <= 0.01 * measured {
            return stated;
        }
    }
    if source == TickSource::Monotonic {
        // Measuring the monotonic clock against itself must give 1e9; keep it exact.
        return 1e9;
    }
    measured
}

/// A raw counter reading from the process-wide source; the cheap timestamp for hot paths.
///
/// Differences between two readings convert to time with [`Ticks::duration_since`] or the
/// [`Calibration`] methods. Readings are only comparable within one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticks(u64);

impl Ticks {
    /// Reads the counter.
    #[doc(alias = "clib_cpu_time_now")]
    #[inline(always)]
    pub fn now() -> Ticks {
        Calibration::global().now()
    }

    /// Wraps a raw counter value (for example one stored in a shared structure).
    pub const fn from_raw(raw: u64) -> Ticks {
        Ticks(raw)
    }

    /// The raw counter value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Ticks from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub const fn ticks_since(self, earlier: Ticks) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Ticks) -> Duration {
        Calibration::global().ticks_to_duration(self.ticks_since(earlier))
    }

    /// Time since this reading.
    pub fn elapsed(self) -> Duration {
        Ticks::now().duration_since(self)
    }

    /// This reading plus `d`, saturating.
    pub fn add_duration(self, d: Duration) -> Ticks {
        Ticks(
            self.0
                .saturating_add(Calibration::global().duration_to_ticks(d)),
        )
    }
}

/// Counter ticks per second of the process-wide source.
pub fn ticks_per_second() -> f64 {
    Calibration::global().ticks_per_second()
}

/// Seconds since the process epoch (the first use of this module).
#[doc(alias = "clib_time_now")]
#[inline]
pub fn now_seconds() -> f64 {
    Calibration::global().now_seconds()
}

/// Converts ticks of the process-wide source to a duration.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    Calibration::global().ticks_to_duration(ticks)
}

/// Converts a duration to ticks of the process-wide source.
pub fn duration_to_ticks(d: Duration) -> u64 {
    Calibration::global().duration_to_ticks(d)
}

/// Wall-clock seconds since the Unix epoch (negative before 1970).
#[doc(alias = "unix_time_now")]
pub fn unix_time_seconds() -> f64 {
    let now = std::time::SystemTime::now();
    match now.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Measures elapsed time with the tick counter.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    start: Ticks,
}

impl Stopwatch {
    /// Starts timing now.
    pub fn start() -> Stopwatch {
        Stopwatch {
            start: Ticks::now(),
        }
    }

    /// The reading timing started from.
    pub fn started_at(&self) -> Ticks {
        self.start
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Seconds since the start.
    pub fn elapsed_seconds(&self) -> f64 {
        Calibration::global().ticks_to_seconds(Ticks::now().ticks_since(self.start))
    }

    /// Returns the time since the start and starts again from now (a lap).
    pub fn restart(&mut self) -> Duration {
        let now = Ticks::now();
        let lap = now.duration_since(self.start);
        self.start = now;
        lap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn global_calibration_is_plausible() {
        let cal = Calibration::global();
        assert!(PLAUSIBLE_RATE.contains(&cal.ticks_per_second()), "{cal:?}");
        assert!((cal.seconds_per_tick() * cal.ticks_per_second() - 1.0).abs() < 1e-12);
        if cal.source() == TickSource::Monotonic {
            assert_eq!(cal.ticks_per_second(), 1e9);
        } else {
            assert!(cal.fallback_reason().is_none());
        }
        eprintln!(
            "calibration: {} at {:.0} ticks/s{}",
            cal.source(),
            cal.ticks_per_second(),
            cal.fallback_reason()
                .map(|r| format!(" (fallback: {r})"))
                .unwrap_or_default()
        );
    }

    /// Calibration correctness: a ~100 ms interval measured with ticks and with `Instant` must
    /// agree within 1%. A noisy machine gets three attempts.
    #[test]
    fn ticks_agree_with_instant_within_one_percent() {
        let mut errors = Vec::new();
        for _ in 0..3 {
            let (i0, t0) = (Instant::now(), Ticks::now());
            std::thread::sleep(Duration::from_millis(100));
            let (t1, i1) = (Ticks::now(), Instant::now());
            let by_ticks = t1.duration_since(t0).as_secs_f64();
            let by_instant = i1.duration_since(i0).as_secs_f64();
            let error = (by_ticks - by_instant).abs() / by_instant;
            if error < 0.01 {
                return;
            }
            errors.push((by_ticks, by_instant, error));
        }
        panic!("ticks and Instant disagree by more than 1% in every attempt: {errors:?}");
    }

    #[test]
    fn hardware_counter_measures_like_the_clock() {
        let Some(source) = TickSource::hardware() else {
            return;
        };
        if hardware_trusted(source).is_err() {
            return;
        }
        // Two independent calibrations of the same counter agree closely.
        let a = Calibration::measure(source, Duration::from_millis(20));
        let b = Calibration::measure(source, Duration::from_millis(20));
        if let (Ok(a), Ok(b)) = (a, b) {
            let diff = (a.ticks_per_second() - b.ticks_per_second()).abs();
            assert!(diff < 0.01 * a.ticks_per_second(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn measuring_the_monotonic_clock_gives_exactly_a_gigahertz() {
        let cal = Calibration::measure(TickSource::Monotonic, Duration::from_millis(4)).unwrap();
        assert_eq!(cal.source(), TickSource::Monotonic);
        assert_eq!(cal.ticks_per_second(), 1e9);
        assert!(cal.fallback_reason().is_none());
    }

    #[test]
    fn unsupported_source_is_an_error() {
        let foreign = if cfg!(target_arch = "x86_64") {
            TickSource::ArmVirtualCounter
        } else {
            TickSource::Tsc
        };
        let err = Calibration::measure(foreign, Duration::from_millis(1)).unwrap_err();
        assert_eq!(err, ClockCalibrateError::Unsupported(foreign));
        assert!(
            err.to_string()
                .ends_with("is not available on this architecture")
        );
    }

    #[test]
    fn rate_rejects_a_counter_that_does_not_advance() {
        let s = |ticks, ns| Sample { ticks, ns };
        assert_eq!(
            rate(s(10, 0), s(10, 100)),
            Err(ClockCalibrateError::NotMonotonic)
        );
        assert_eq!(
            rate(s(10, 0), s(5, 100)),
            Err(ClockCalibrateError::NotMonotonic)
        );
        assert_eq!(rate(s(0, 0), s(300, 100)), Ok(3e9));
    }

    #[test]
    fn tsc_policy_needs_invariance_or_kernel_trust() {
        assert!(tsc_policy(true, false).is_ok());
        assert!(tsc_policy(false, true).is_ok());
        assert!(tsc_policy(false, false).is_err());
    }

    #[test]
    fn monotonic_conversions_are_exact() {
        let cal = Calibration::monotonic();
        assert_eq!(cal.ticks_to_duration(1_500), Duration::from_nanos(1_500));
        assert_eq!(cal.duration_to_ticks(Duration::from_micros(7)), 7_000);
        assert_eq!(cal.duration_to_ticks(Duration::MAX), u64::MAX);
        assert_eq!(cal.ticks_to_seconds(2_000_000_000), 2.0);
    }

    #[test]
    fn tick_duration_round_trip_is_within_one_tick() {
        let cal = Calibration::global();
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(3),
            Duration::from_millis(250),
            Duration::from_secs(86_400),
        ] {
            let ticks = cal.duration_to_ticks(d);
            let back = cal.ticks_to_duration(ticks);
            let tick_ns = cal.seconds_per_tick() * 1e9;
            let diff = (back.as_nanos() as f64 - d.as_nanos() as f64).abs();
            assert!(diff <= tick_ns + 1.0, "{d:?} -> {ticks} -> {back:?}");
        }
        assert_eq!(cal.ticks_to_duration(0), Duration::ZERO);
        // Saturation instead of a panic.
        assert!(cal.ticks_to_duration(u64::MAX) > Duration::from_secs(1_000));
    }

    #[test]
    fn now_seconds_advances() {
        let a = now_seconds();
        let mut prev = a;
        for _ in 0..10_000 {
            let t = now_seconds();
            assert!(t >= prev, "time went backwards: {prev} -> {t}");
            prev = t;
        }
        std::thread::sleep(Duration::from_millis(5));
        let b = now_seconds();
        assert!(b - a >= 0.004, "{a} -> {b}");
        assert!(a >= 0.0);
    }

    #[test]
    fn ticks_helpers_saturate() {
        let a = Ticks::from_raw(100);
        let b = Ticks::from_raw(40);
        assert_eq!(a.ticks_since(b), 60);
        assert_eq!(b.ticks_since(a), 0);
        assert_eq!(b.duration_since(a), Duration::ZERO);
        assert_eq!(a.raw(), 100);
        assert_eq!(
            Ticks::from_raw(u64::MAX)
                .add_duration(Duration::from_secs(1))
                .raw(),
            u64::MAX
        );
        let later = a.add_duration(Duration::from_secs(1));
        assert_eq!(
            later.ticks_since(a),
            duration_to_ticks(Duration::from_secs(1))
        );
    }

    #[test]
    fn stopwatch_measures_at_least_the_sleep() {
        let mut watch = Stopwatch::start();
        std::thread::sleep(Duration::from_millis(20));
        // Sleep never returns early; allow the 1% calibration tolerance.
        assert!(
            watch.elapsed() >= Duration::from_micros(19_800),
            "{:?}",
            watch.elapsed()
        );
        assert!(watch.elapsed_seconds() >= 0.0198);
        let lap = watch.restart();
        assert!(lap >= Duration::from_micros(19_800));
        assert!(watch.elapsed() < lap);
        assert!(watch.started_at() >= Ticks::from_raw(0));
    }

    /// `VPPINFRA_CLOCK=monotonic` forces the fallback; checked in a child process because the
    /// global calibration is fixed once measured.
    #[test]
    fn environment_forces_the_monotonic_clock() {
        const NAME: &str = "time::tests::environment_forces_the_monotonic_clock";
        if let Some(role) = crate::testing::child_role() {
            return crate::testing::run_child(|| {
                assert_eq!(role, "forced");
                let cal = Calibration::global();
                assert_eq!(cal.source(), TickSource::Monotonic);
                assert_eq!(cal.ticks_per_second(), 1e9);
                assert!(cal.fallback_reason().unwrap().contains(CLOCK_ENV));
                let t0 = Ticks::now();
                std::thread::sleep(Duration::from_millis(2));
                assert!(t0.elapsed() >= Duration::from_millis(2));
            });
        }
        let mut child = crate::testing::spawn_self(NAME, "forced", "");
        child.command().env(CLOCK_ENV, "monotonic");
        child.spawn().expect_success(Duration::from_secs(30));
    }

    #[test]
    fn unix_time_is_after_2020() {
        assert!(unix_time_seconds() > 1_577_836_800.0);
    }

    #[test]
    fn epoch_is_before_now() {
        let cal = Calibration::global();
        assert!(cal.now() >= cal.epoch());
        assert!(
            cal.seconds_since_epoch(Ticks::from_raw(cal.epoch().raw().saturating_sub(1000))) <= 0.0
        );
    }
}
