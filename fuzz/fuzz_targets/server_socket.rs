//! libFuzzer entry point; the body is `vlib_fuzz::bodies::server_socket::run`, which the stable
//! regression tests (tools/api-server/tests/fuzz_regressions.rs) call too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vlib_fuzz::bodies::server_socket::run(data));
