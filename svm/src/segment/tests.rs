//! Single-process segment tests. Cross-process behaviour (fd passing, seals enforced on a
//! peer, dead creators) is in `tests/mp_segment.rs` and `tests/mp_named.rs`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::{FdFlag, OFlag};
use nix::sys::mman::shm_open;
use nix::sys::stat::Mode;

use super::*;
use vppinfra::sync::thread;

fn small() -> SegmentOptions {
    SegmentOptions::new(64 << 10).name("test segment").index(3)
}

fn dup(segment: &Segment) -> OwnedFd {
    segment.fd().try_clone_to_owned().unwrap()
}

fn quick() -> AttachOptions {
    AttachOptions::default().ready_timeout(Duration::from_millis(50))
}

/// A sealed memfd holding a copy of `segment` with `edit` applied.
fn forged(segment: &Segment, edit: impl FnOnce(&mut [u8])) -> OwnedFd {
    let mut page = vec![0u8; segment.size()];
    nix::sys::uio::pread(segment.fd(), &mut page, 0).unwrap();
    edit(&mut page);
    let fd = memfd_create(
        "forged",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, segment.size() as i64).unwrap();
    nix::sys::uio::pwrite(&fd, &page, 0).unwrap();
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    fd
}

fn put_u32(page: &mut [u8], off: usize, v: u32) {
    page[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(page: &mut [u8], off: usize, v: u64) {
    page[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn create_fills_the_header_and_seals() {
    let segment = Segment::create(&small()).unwrap();
    assert_eq!(segment.size(), 64 << 10);
    assert_eq!(segment.role(), SegmentRole::Creator);
    assert_eq!(segment.kind(), SegmentKind::Memfd);
    assert_eq!(segment.heap_range(), header_page()..64 << 10);
    let header = segment.header();
    assert_eq!(header.magic.load(Ordering::Relaxed), SEGMENT_MAGIC);
    assert_eq!(header.size.load(Ordering::Relaxed), 64 << 10);
    assert_eq!(
        header.creator_pid.load(Ordering::Relaxed),
        std::process::id()
    );
    assert_eq!(header.index.load(Ordering::Relaxed), 3);
    assert_eq!(header.name(), "test segment");
    assert_eq!(
        header.creator_va.load(Ordering::Relaxed),
        segment.region().base_addr() as u64
    );
    assert!(!segment.is_ready());

    let seals = SealFlag::from_bits_retain(fcntl(segment.fd(), FcntlArg::F_GET_SEALS).unwrap());
    assert!(
        seals.contains(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL)
    );
    let fd_flags = FdFlag::from_bits_retain(fcntl(segment.fd(), FcntlArg::F_GETFD).unwrap());
    assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
    // Sealed: this process cannot resize it either.
    assert_eq!(
        nix::unistd::ftruncate(segment.fd(), 4096),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fcntl(
            segment.fd(),
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_FUTURE_WRITE)
        ),
        Err(Errno::EPERM)
    );
}

#[test]
fn sizes_are_rounded_and_bounded() {
    let segment = Segment::create(&SegmentOptions::new(3 * 4096 + 1)).unwrap();
    assert_eq!(segment.size(), 4 * 4096);
    assert_eq!(
        Segment::create(&SegmentOptions::new(4096)).unwrap_err(),
        SegmentCreateError::InvalidSize { size: 4096 }
    );
    assert!(matches!(
        Segment::create(&SegmentOptions::new(usize::MAX)),
        Err(SegmentCreateError::InvalidSize { .. })
    ));
}

#[test]
fn long_names_are_truncated_on_a_char_boundary() {
    let name = "é".repeat(40);
    let segment = Segment::create(&SegmentOptions::new(1 << 16).name(&name)).unwrap();
    assert_eq!(segment.name(), "é".repeat(32));
    segment.set_ready();
    let attacher = Segment::attach(dup(&segment), &quick()).unwrap();
    assert_eq!(attacher.name(), "é".repeat(32));
}

#[test]
fn attach_takes_private_copies() {
    let creator = Segment::create(&small()).unwrap();
    creator.set_opaque(2, 0xabcd);
    creator.set_ready();
    let attacher = Segment::attach(dup(&creator), &AttachOptions::default()).unwrap();
    assert_eq!(attacher.role(), SegmentRole::Attacher);
    assert_eq!(attacher.size(), creator.size());
    assert_eq!(attacher.heap_range(), creator.heap_range());
    assert_eq!(attacher.name(), "test segment");
    assert_eq!(attacher.index(), 3);
    assert_eq!(attacher.opaque(2), Some(0xabcd));
    assert_eq!(attacher.opaque(SEGMENT_N_OPAQUE), None);
    assert!(!attacher.set_opaque(SEGMENT_N_OPAQUE, 1));
    assert_ne!(attacher.region().base_addr(), creator.region().base_addr());
    let stats = creator.stats();
    assert_eq!(stats.attacher_pid, std::process::id());
    assert_eq!(stats.creator_pid, std::process::id());
    assert!(stats.ready);
    assert_eq!(stats.size, 64 << 10);
    assert!(stats.to_string().starts_with("test segment"));

    // Rewriting the shared header afterwards changes none of the attacher's private copies.
    creator.header().size.store(1, Ordering::Relaxed);
    creator
        .header()
        .heap_offset
        .store(u64::MAX, Ordering::Relaxed);
    creator.header().set_name("evil");
    assert_eq!(attacher.size(), 64 << 10);
    assert_eq!(attacher.heap_range(), creator.heap_range());
    assert_eq!(attacher.name(), "test segment");
}

#[test]
fn attach_waits_for_ready() {
    let creator = Segment::create(&small()).unwrap();
    let fd = dup(&creator);
    let attacher = thread::spawn(move || {
        Segment::attach(
            fd,
            &AttachOptions::default().ready_timeout(Duration::from_secs(10)),
        )
    });
    thread::sleep(Duration::from_millis(30));
    creator.set_ready();
    assert!(attacher.join().unwrap().is_ok());
}

#[test]
fn attach_times_out_without_ready() {
    let creator = Segment::create(&small()).unwrap();
    assert_eq!(
        Segment::attach(dup(&creator), &quick()).unwrap_err(),
        SegmentAttachError::ReadyTimeout {
            waited: Duration::from_millis(50)
        }
    );
}

#[test]
fn attach_refuses_an_unsealed_fd() {
    let fd = memfd_create("plain", MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, 1 << 16).unwrap();
    assert_eq!(
        Segment::attach(fd, &quick()).unwrap_err(),
        SegmentAttachError::NotSealed {
            seals: SealFlag::F_SEAL_SEAL
        }
    );
    let fd = memfd_create("growable", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&fd, 1 << 16).unwrap();
    fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_GROW)).unwrap();
    assert!(matches!(
        Segment::attach(fd, &quick()),
        Err(SegmentAttachError::NotSealed { .. })
    ));
}

#[test]
fn attach_validates_the_header_before_mapping() {
    let creator = Segment::create(&small()).unwrap();
    creator.set_ready();
    assert!(Segment::attach(forged(&creator, |_| {}), &quick()).is_ok());
    assert_eq!(
        Segment::attach(
            forged(&creator, |p| put_u32(p, offsets::MAGIC, 7)),
            &quick()
        )
        .unwrap_err(),
        SegmentAttachError::BadMagic { found: 7 }
    );
    assert_eq!(
        Segment::attach(
            forged(&creator, |p| put_u32(p, offsets::VERSION, 9)),
            &quick()
        )
        .unwrap_err(),
        SegmentAttachError::BadVersion { found: 9 }
    );
    assert_eq!(
        Segment::attach(
            forged(&creator, |p| put_u64(p, offsets::SIZE, 1 << 40)),
            &quick()
        )
        .unwrap_err(),
        SegmentAttachError::SizeMismatch {
            header: 1 << 40,
            file: 64 << 10
        }
    );
    let heap_offset = memoffset::offset_of!(SegmentHeader, heap_offset);
    let heap_size = memoffset::offset_of!(SegmentHeader, heap_size);
    assert!(matches!(
        Segment::attach(
            forged(&creator, |p| put_u64(p, heap_size, 1 << 20)),
            &quick()
        ),
        Err(SegmentAttachError::BadHeap { .. })
    ));
    assert!(matches!(
        Segment::attach(forged(&creator, |p| put_u64(p, heap_offset, 0)), &quick()),
        Err(SegmentAttachError::BadHeap { offset: 0, .. })
    ));
    assert!(matches!(
        Segment::attach(
            forged(&creator, |p| put_u64(p, heap_offset, u64::MAX - 10)),
            &quick()
        ),
        Err(SegmentAttachError::BadHeap { .. })
    ));

    let tiny = memfd_create("tiny", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&tiny, 4096).unwrap();
    fcntl(&tiny, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    assert_eq!(
        Segment::attach(tiny, &quick()).unwrap_err(),
        SegmentAttachError::TooSmall { size: 4096 }
    );
    let odd = memfd_create("odd", MFdFlags::MFD_ALLOW_SEALING).unwrap();
    nix::unistd::ftruncate(&odd, 3 * 4096 + 5).unwrap();
    fcntl(&odd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    assert!(matches!(
        Segment::attach(odd, &quick()),
        Err(SegmentAttachError::BadSize { .. })
    ));
}

#[test]
fn creator_address_placement_never_replaces_a_mapping() {
    let creator = Segment::create(&small()).unwrap();
    creator.set_ready();
    let options = quick().placement(AttachPlacement::CreatorAddress);
    // In the creator's own process that address is taken by the creator's mapping.
    assert_eq!(
        Segment::attach(dup(&creator), &options).unwrap_err(),
        SegmentAttachError::AddressInUse {
            addr: creator.region().base_addr()
        }
    );
    assert_eq!(
        creator.header().magic.load(Ordering::Relaxed),
        SEGMENT_MAGIC,
        "the creator's mapping is intact"
    );
    assert!(matches!(
        Segment::attach(
            forged(&creator, |p| put_u64(p, offsets::CREATOR_VA, 0x1234)),
            &options
        ),
        Err(SegmentAttachError::BadAddress { addr: 0x1234 })
    ));
}

#[test]
fn huge_pages_fall_back_or_are_used() {
    let segment = Segment::create(&small().huge_pages(HugePages::Prefer)).unwrap();
    if segment.huge_pages() {
        assert_eq!(segment.huge_page_fallback(), None);
    } else {
        assert!(segment.huge_page_fallback().is_some());
        assert!(matches!(
            Segment::create(&small().huge_pages(HugePages::Require)),
            Err(SegmentCreateError::HugePages(_))
        ));
    }
    segment.set_ready();
    let attacher = Segment::attach(dup(&segment), &quick()).unwrap();
    assert_eq!(attacher.huge_pages(), segment.huge_pages());
}

#[test]
fn the_heap_is_shared_by_creator_and_attacher() {
    let creator = Segment::create(&small()).unwrap();
    let a = creator.alloc(1000, 64).unwrap();
    assert!(creator.heap_range().contains(&a));
    assert_eq!(a % 64, 0);
    creator.set_ready();
    let attacher = Segment::attach(dup(&creator), &quick()).unwrap();
    let b = attacher.alloc(2000, 128).unwrap();
    assert!(b != a && attacher.heap_range().contains(&b));
    let stats = creator.stats().heap.unwrap();
    assert_eq!(stats.n_live, 2);
    // Either side frees either allocation, by segment offset.
    attacher.free(a).unwrap();
    creator.free(b).unwrap();
    assert_eq!(creator.stats().heap.unwrap().n_live, 0);
    assert!(matches!(
        creator.free(a),
        Err(HeapFreeError::DoubleFree { .. } | HeapFreeError::NotAllocated { .. })
    ));
    assert_eq!(
        creator.free(16),
        Err(HeapFreeError::OutOfRange { offset: 16 })
    );
    creator.heap().validate().unwrap();
}

#[test]
fn attach_refuses_a_segment_without_a_heap() {
    let creator = Segment::create(&small()).unwrap();
    creator.set_ready();
    let heap_start = creator.heap_range().start;
    let fd = forged(&creator, |_| {});
    // Wipe the heap header in the forged copy.
    nix::sys::uio::pwrite(&fd, &[0u8; 64], heap_start as i64).unwrap();
    assert!(matches!(
        Segment::attach(fd, &quick()),
        Err(SegmentAttachError::Heap(HeapAttachError::BadMagic {
            found: 0
        }))
    ));
}

#[test]
fn queues_live_in_segments_and_outlive_the_handle() {
    use crate::queue::{self, Consumer, Producer, QueueGeometry};
    let creator = Segment::create(&small()).unwrap();
    let g = QueueGeometry::new(16, 64).unwrap();
    let offset = creator
        .alloc(g.footprint(), crate::queue::QUEUE_ALIGN)
        .unwrap();
    queue::init(creator.region(), offset, g).unwrap();
    creator.set_ready();
    let attacher = Segment::attach(dup(&creator), &quick()).unwrap();
    let mut tx = Producer::attach(attacher.region(), offset, g).unwrap();
    let mut rx = Consumer::attach(creator.region(), offset, g).unwrap();
    drop(attacher);
    drop(creator);
    tx.try_send(&[5u8; 64]).unwrap();
    let mut out = [0u8; 64];
    rx.try_recv(&mut out).unwrap();
    assert_eq!(out, [5u8; 64]);
}

#[test]
fn shm_names_are_validated() {
    assert_eq!(ShmName::new(None, "vpe-api").unwrap().as_str(), "/vpe-api");
    assert_eq!(ShmName::new(None, "/vpe-api").unwrap().as_str(), "/vpe-api");
    let n = ShmName::new(Some("vpp1"), "/vpe-api").unwrap();
    assert_eq!(n.as_str(), "/vpp1-vpe-api");
    assert_eq!(n.path(), PathBuf::from("/dev/shm/vpp1-vpe-api"));
    assert_eq!(ShmName::new(None, ""), Err(ShmNameError::Empty));
    assert_eq!(ShmName::new(None, ".."), Err(ShmNameError::Empty));
    assert_eq!(
        ShmName::new(None, "a/b"),
        Err(ShmNameError::BadChar { c: '/' })
    );
    assert_eq!(
        ShmName::new(Some("x/y"), "a"),
        Err(ShmNameError::BadChar { c: '/' })
    );
    assert!(matches!(
        ShmName::new(None, &"x".repeat(256)),
        Err(ShmNameError::TooLong { .. })
    ));
    assert!(ShmName::new(None, &"x".repeat(255)).is_ok());
}

fn test_name(tag: &str) -> ShmName {
    ShmName::new(None, &vppinfra::testing::unique_name(tag)).unwrap()
}

#[test]
fn named_segments_apply_mode_and_unlink_on_drop() {
    let name = test_name("named-mode");
    let creator = Segment::create_named(&name, &small(), &NamedPermissions::new(0o640)).unwrap();
    assert_eq!(creator.kind(), SegmentKind::Named);
    let meta = std::fs::metadata(name.path()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(meta.len(), 64 << 10);
    creator.set_ready();
    let attacher = Segment::attach_named(&name, &quick()).unwrap();
    assert_eq!(attacher.kind(), SegmentKind::Named);
    assert_eq!(attacher.index(), 3);
    drop(attacher);
    assert!(name.path().exists(), "an attacher does not unlink");
    drop(creator);
    assert!(!name.path().exists(), "the creator unlinks on drop");
    assert!(matches!(
        Segment::attach_named(&name, &quick()),
        Err(SegmentAttachError::Os {
            call: "shm_open",
            errno: Errno::ENOENT
        })
    ));
}

#[test]
fn named_segments_take_an_owner() {
    let name = test_name("named-owner");
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    // Root may give the object away; anyone may give it to themselves.
    let (owner, group) = if uid.is_root() {
        (65534, 65534)
    } else {
        (uid.as_raw(), gid.as_raw())
    };
    let creator = Segment::create_named(
        &name,
        &small(),
        &NamedPermissions::new(0o600).owner(Some(owner), Some(group)),
    )
    .unwrap();
    let meta = std::fs::metadata(name.path()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (owner, group));
    drop(creator);
}

#[test]
fn a_named_segment_of_a_live_creator_is_kept() {
    let name = test_name("named-live");
    let _creator = Segment::create_named(&name, &small(), &NamedPermissions::default()).unwrap();
    assert_eq!(
        Segment::create_named(&name, &small(), &NamedPermissions::default()).unwrap_err(),
        SegmentCreateError::Exists {
            creator_pid: Some(std::process::id())
        }
    );
    assert!(remove_stale(None).unwrap().iter().all(|n| n != &name));
    assert!(name.path().exists());
}

#[test]
fn a_foreign_object_is_not_touched() {
    let name = test_name("named-foreign");
    let fd = shm_open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, 8192).unwrap();
    assert_eq!(
        Segment::create_named(&name, &small(), &NamedPermissions::default()).unwrap_err(),
        SegmentCreateError::Exists { creator_pid: None }
    );
    remove_stale(None).unwrap();
    assert!(name.path().exists());
    unlink(&name).unwrap();
    drop(fd);
}

#[test]
fn a_stale_named_segment_is_replaced() {
    let name = test_name("named-stale");
    let mut old = Segment::create_named(&name, &small(), &NamedPermissions::default()).unwrap();
    // Pretend the creator was a process that has since died: pid 0 never names a live one.
    old.header().creator_pid.store(0, Ordering::Relaxed);
    old.unlink_on_drop = None;
    drop(old);
    assert!(name.path().exists());
    let new =
        Segment::create_named(&name, &small().index(9), &NamedPermissions::default()).unwrap();
    new.set_ready();
    assert_eq!(
        Segment::attach_named(&name, &quick()).unwrap().index(),
        9,
        "attachers see the new segment"
    );
}

#[test]
fn remove_stale_sweeps_a_prefix() {
    let prefix = vppinfra::testing::unique_name("sweep");
    let names: Vec<ShmName> = (0..3)
        .map(|i| ShmName::new(Some(&prefix), &format!("seg{i}")).unwrap())
        .collect();
    let mut live = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut segment =
            Segment::create_named(name, &small(), &NamedPermissions::default()).unwrap();
        if i == 1 {
            live.push(segment);
        } else {
            segment.header().creator_pid.store(0, Ordering::Relaxed);
            segment.unlink_on_drop = None;
        }
    }
    let mut removed = remove_stale(Some(&prefix)).unwrap();
    removed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(removed, vec![names[0].clone(), names[2].clone()]);
    assert!(names[1].path().exists());
    assert!(!names[0].path().exists());
    drop(live);
    assert!(!names[1].path().exists());
}

#[test]
fn a_fifo_in_dev_shm_is_skipped_not_opened() {
    // A doorbell FIFO (or anyone's FIFO) in /dev/shm: opening it to read would block until a
    // writer appeared, hanging the stale-segment sweep.
    let name = test_name("named-fifo");
    let path = name.path();
    nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(remove_stale(None).is_ok());
    });
    let swept = rx.recv_timeout(std::time::Duration::from_secs(10));
    let _ = std::fs::remove_file(&path);
    assert_eq!(swept, Ok(true), "remove_stale blocked on a FIFO");
}
