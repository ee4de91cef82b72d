//! Interop with the real Python client: `vpp-papi==2.4.2` from PyPI, unmodified, threaded and
//! asyncio, against our server binary. The scripts assert; a non-zero exit fails the test.

mod support;

use std::path::Path;
use support::ServerProc;
use vppinfra::testing;

fn run_script(script: &str, tag: &str) {
    let server = ServerProc::start(tag, &["--log-level", "warn"]);
    let python = testing::python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/papi")
        .join(script);
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(&server.path)
        .arg(server.pid().to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}",
        script.display(),
        out.status,
        server.log_text()
    );
    assert!(stdout.contains(" ok"), "{stdout}");
    // The server is still fine afterwards.
    let mut c = server.client("after-papi");
    let _: vlibapi::msgs::memclnt::ControlPingReply = c
        .request(&vlibapi::msgs::memclnt::ControlPing::default())
        .unwrap();
}

#[test]
fn mp_papi_threaded_client() {
    run_script("threaded.py", "mp_papi_threaded");
}

#[test]
fn mp_papi_asyncio_client() {
    run_script("asyncio_client.py", "mp_papi_asyncio");
}
