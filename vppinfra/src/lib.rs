//! The clib layer every other crate stands on.
//!
//! - [`sync`]: the one facade over `std` and `loom` synchronisation types.
//! - [`time`]: CPU ticks calibrated against the monotonic clock, `now_seconds`, a stopwatch.
//! - [`format`](mod@format): memory sizes, hex dumps, tables, durations, rates for CLI output.
//! - [`unformat`]: a cursor over command text: words, keywords, numbers, sizes, quoted strings.
//! - [`socket`]: `AF_UNIX` listen/connect with stale-socket handling, `SCM_RIGHTS` fd passing,
//!   peer credentials, send-queue length.
//! - [`heap`]: a position-independent, lock-protected allocator inside a shared region that may
//!   be hostile, and [`heap::vec::HeapVec`], a vector stored in it.
//! - [`bench`](mod@bench): a small harness for `harness = false` benchmarks (figures beside baselines).
//! - `testing` (feature `testing`, dev only): the multi-process test harness.
#![warn(missing_docs)]

pub mod bench;
pub mod format;
pub mod heap;
pub mod socket;
pub mod sync;
pub mod time;
pub mod unformat;

#[cfg(feature = "testing")]
#[doc(hidden)]
#[allow(clippy::disallowed_types)] // Test infrastructure is never loom-checked.
pub mod testing;
