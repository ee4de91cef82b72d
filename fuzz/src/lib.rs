//! The fuzz targets' bodies, as ordinary functions.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line libFuzzer entry point calling
//! [`bodies`]`::<name>::run`. The same files are compiled into the stable regression tests of
//! `tools/api-server/tests/fuzz_regressions.rs` (through `#[path]`), which run every committed
//! seed and reproducer plus a few thousand deterministic pseudo-random inputs per target, so
//! the bodies use only crates that test can reach and nothing nightly.

#[path = "bodies/mod.rs"]
pub mod bodies;
