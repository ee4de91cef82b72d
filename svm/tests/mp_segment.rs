//! Multi-process: a memfd segment passed over a Unix socket to a child, which attaches, waits
//! for `ready`, checks what the creator wrote, cannot resize or re-seal it, and can map it at the
//! creator's address in its own address space.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use svm::segment::{AttachOptions, AttachPlacement, Segment, SegmentOptions, SegmentRole};
use vppinfra::testing;

const TEST: &str = "mp_segment_create_attach_ready_and_seals";

fn child() {
    let (conn, _) = common::child_connect();
    let (msg, mut fds) = common::recv(&conn, 1);
    assert_eq!(msg, b"segment");
    let fd = fds.pop().expect("segment fd");
    let spare = fd.try_clone().unwrap();

    // The creator publishes `ready` only after we have started waiting.
    let segment = Segment::attach(
        fd,
        &AttachOptions::default().ready_timeout(Duration::from_secs(20)),
    )
    .expect("attach");
    assert_eq!(segment.role(), SegmentRole::Attacher);
    assert_eq!(segment.name(), "mp segment");
    assert_eq!(segment.index(), 11);
    assert_eq!(segment.size(), 256 << 10);
    let offset = segment.opaque(0).unwrap() as usize;
    let mut text = [0u8; 5];
    segment
        .heap()
        .read((offset - segment.heap_range().start) as u64, &mut text)
        .unwrap();
    assert_eq!(&text, b"hello");

    // The seals hold against this process too.
    assert_eq!(
        nix::unistd::ftruncate(segment.fd(), 4096),
        Err(Errno::EPERM)
    );
    assert_eq!(
        nix::unistd::ftruncate(segment.fd(), 1 << 30),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fcntl(
            segment.fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_FUTURE_WRITE)
        ),
        Err(Errno::EPERM)
    );

    // In this address space the creator's range is (almost certainly) free: attach there too.
    let fixed = Segment::attach(
        spare,
        &AttachOptions::default().placement(AttachPlacement::CreatorAddress),
    )
    .expect("attach at the creator's address");
    let creator_va = segment.opaque(1).unwrap() as usize;
    assert_eq!(fixed.region().base_addr(), creator_va);

    // Report back through the segment: our pid, and an allocation of ours for the parent to free.
    let mine = segment.alloc(100, 16).unwrap();
    segment.set_opaque(2, mine as u64);
    segment.set_opaque(3, u64::from(std::process::id()));
    common::send(&conn, b"done", &[]);
}

#[test]
fn mp_segment_create_attach_ready_and_seals() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "attacher" => child(),
            other => panic!("unknown role {other}"),
        });
    }
    let rendezvous = common::Rendezvous::new(TEST);
    let (mut child, conn) = rendezvous.spawn(TEST, "attacher", "");
    let segment =
        Segment::create(&SegmentOptions::new(256 << 10).name("mp segment").index(11)).unwrap();
    let offset = segment.alloc(5, 16).unwrap();
    segment
        .heap()
        .write((offset - segment.heap_range().start) as u64, b"hello")
        .unwrap();
    segment.set_opaque(0, offset as u64);
    segment.set_opaque(1, segment.region().base_addr() as u64);
    common::send(&conn, b"segment", &[segment.fd()]);

    std::thread::sleep(Duration::from_millis(50));
    assert!(!segment.is_ready());
    segment.set_ready();

    let (msg, _) = common::recv(&conn, 0);
    assert_eq!(msg, b"done");
    child.expect_success(common::STEP);
    let stats = segment.stats();
    assert_eq!(stats.attacher_pid, child.pid());
    assert_eq!(segment.opaque(3), Some(u64::from(child.pid())));
    // The child's allocation is ours to free; the heap stays consistent across processes.
    segment.free(segment.opaque(2).unwrap() as usize).unwrap();
    segment.free(offset).unwrap();
    segment.heap().validate().unwrap();
    assert_eq!(segment.stats().heap.unwrap().n_live, 0);
}
