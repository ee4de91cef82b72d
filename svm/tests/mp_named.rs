//! Multi-process: named segments in `/dev/shm`. A child attaches by name; permissions are
//! applied; a segment left behind by a creator killed with SIGKILL is removed when a new server
//! starts (and by `remove_stale`); a creator that exits cleanly unlinks its name.
#![cfg(not(loom))]

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use svm::segment::{
    AttachOptions, NamedPermissions, Segment, SegmentCreateError, SegmentOptions, ShmName,
    remove_stale,
};
use vppinfra::testing;

const TEST: &str = "mp_named_segments";

fn options() -> SegmentOptions {
    SegmentOptions::new(128 << 10).name("named")
}

/// Attaches by name, checks what the creator wrote and answers through the segment.
fn attacher(prefix: &str) {
    let name = ShmName::new(Some(prefix), "api").unwrap();
    let segment = Segment::attach_named(
        &name,
        &AttachOptions::default().ready_timeout(Duration::from_secs(20)),
    )
    .expect("attach by name");
    assert_eq!(segment.index(), 5);
    assert_eq!(segment.opaque(0), Some(0x1234));
    segment.set_opaque(1, u64::from(std::process::id()));
}

/// Creates a named segment and then either waits to be killed or exits cleanly.
fn creator(prefix: &str, clean: bool) {
    let name = ShmName::new(Some(prefix), "api").unwrap();
    let segment =
        Segment::create_named(&name, &options().index(77), &NamedPermissions::default()).unwrap();
    segment.set_opaque(0, u64::from(std::process::id()));
    segment.set_ready();
    if clean {
        return;
    }
    // Stay alive until the parent kills us (bounded, in case it never does).
    std::thread::sleep(common::STEP);
}

/// Waits until a child has created `name` (attaching by name fails fast on a missing name).
fn wait_for(name: &ShmName) {
    assert!(testing::wait_until(common::STEP, || name.path().exists()));
}

#[test]
fn mp_named_segments() {
    if let Some(role) = testing::child_role() {
        let prefix = testing::child_arg();
        return testing::run_child(|| match role.as_str() {
            "attacher" => attacher(&prefix),
            "creator" => creator(&prefix, false),
            "clean-creator" => creator(&prefix, true),
            other => panic!("unknown role {other}"),
        });
    }
    let prefix = testing::unique_name("named");
    let name = ShmName::new(Some(&prefix), "api").unwrap();

    // 1. Create with a mode; a child attaches by name.
    let segment =
        Segment::create_named(&name, &options().index(5), &NamedPermissions::new(0o640)).unwrap();
    assert_eq!(
        std::fs::metadata(name.path()).unwrap().mode() & 0o777,
        0o640
    );
    segment.set_opaque(0, 0x1234);
    let mut child = testing::spawn_self(TEST, "attacher", &prefix).spawn();
    // The child waits for `ready` by itself.
    std::thread::sleep(Duration::from_millis(20));
    segment.set_ready();
    child.expect_success(common::STEP);
    assert_eq!(segment.opaque(1), Some(u64::from(child.pid())));
    assert_eq!(segment.stats().attacher_pid, child.pid());
    drop(segment);
    assert!(!name.path().exists(), "the creator unlinks on drop");

    // 2. A creator killed with SIGKILL leaves its segment behind...
    let mut child = testing::spawn_self(TEST, "creator", &prefix).spawn();
    wait_for(&name);
    let stale = Segment::attach_named(&name, &AttachOptions::default().ready_timeout(common::STEP))
        .unwrap();
    assert_eq!(stale.opaque(0), Some(u64::from(child.pid())));
    // ...and while it lives, a second server is refused.
    assert_eq!(
        Segment::create_named(&name, &options(), &NamedPermissions::default()).unwrap_err(),
        SegmentCreateError::Exists {
            creator_pid: Some(child.pid())
        }
    );
    child.kill();
    drop(stale);
    assert!(name.path().exists(), "SIGKILL leaves the name behind");
    // A new server starting with the same prefix removes it and takes the name.
    let fresh =
        Segment::create_named(&name, &options().index(6), &NamedPermissions::default()).unwrap();
    fresh.set_ready();
    let check = Segment::attach_named(&name, &AttachOptions::default()).unwrap();
    assert_eq!(check.index(), 6);
    drop((check, fresh));
    assert!(!name.path().exists());

    // 3. The same, swept by `remove_stale`.
    let mut child = testing::spawn_self(TEST, "creator", &prefix).spawn();
    wait_for(&name);
    drop(
        Segment::attach_named(&name, &AttachOptions::default().ready_timeout(common::STEP))
            .unwrap(),
    );
    assert!(
        remove_stale(Some(&prefix)).unwrap().is_empty(),
        "its creator lives"
    );
    child.kill();
    assert_eq!(remove_stale(Some(&prefix)).unwrap(), vec![name.clone()]);
    assert!(!name.path().exists());

    // 4. A creator that exits cleanly unlinks its name.
    let mut child = testing::spawn_self(TEST, "clean-creator", &prefix).spawn();
    child.expect_success(common::STEP);
    assert!(!name.path().exists());
}
