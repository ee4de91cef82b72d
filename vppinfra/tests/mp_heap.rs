//! Multi-process tests of `vppinfra::heap`: processes map one memfd wherever the kernel puts it
//! and share a heap inside; one test kills children in the middle of heap operations.
//!
//! # Safety
//!
//! The unsafe code maps and unmaps the shared memfd and adopts the inherited fd number in the
//! child. A [`Mapping`] owns its mapping and outlives every [`Heap`] built on it (heaps are
//! declared after, so they drop first); the fd number comes from the parent, which created the
//! memfd without close-on-exec, so it is open and ours in the child.
#![cfg(not(loom))]
#![allow(unsafe_code)]

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};
use vppinfra::heap::vec::HeapVec;
use vppinfra::heap::{Heap, HeapAllocError};
use vppinfra::sync::{AtomicBool, Ordering};
use vppinfra::testing;

/// A shared mapping of the whole memfd at an address the kernel picks.
struct Mapping {
    base: NonNull<core::ffi::c_void>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize) -> Mapping {
        let length = NonZeroUsize::new(len).expect("non-empty");
        // SAFETY: mmap(2) with a NULL hint lets the kernel choose a fresh range, so no existing
        // mapping is replaced; `fd` is a memfd of at least `len` bytes (ftruncate'd by the
        // parent).
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .expect("mmap memfd");
        Mapping { base, len }
    }

    fn base(&self) -> *mut u8 {
        self.base.as_ptr().cast()
    }

    /// Formats a fresh heap in the mapping.
    fn init(&self) -> Heap {
        // SAFETY: the mapping is valid for `len` bytes and outlives the heap (see the module's
        // Safety section); nothing else in this process touches it.
        unsafe { Heap::init(self.base(), self.len) }.expect("init heap")
    }

    /// Attaches to the heap another process formatted.
    fn attach(&self) -> Heap {
        // SAFETY: as for `init`.
        unsafe { Heap::attach(self.base(), self.len) }.expect("attach heap")
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping we created and nothing refers to it any more
        // (heaps on it were dropped first).
        unsafe { munmap(self.base, self.len) }.expect("munmap");
    }
}

/// A memfd of `len` bytes that children inherit (no close-on-exec).
fn shared_memfd(len: usize) -> OwnedFd {
    let fd = memfd_create(c"vpp-heap-test", MFdFlags::empty()).expect("memfd_create");
    nix::unistd::ftruncate(&fd, len as i64).expect("ftruncate");
    fd
}

/// Parses `key=value,key=value` child arguments.
fn args(arg: &str) -> HashMap<String, u64> {
    arg.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("numeric argument")))
        .collect()
}

/// The inherited memfd named by the child argument.
fn inherited_fd(args: &HashMap<String, u64>) -> BorrowedFd<'static> {
    let raw = args["fd"] as RawFd;
    // SAFETY: the parent created this fd without close-on-exec and passed its number; it stays
    // open for the whole life of the child, which never closes it.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn pattern(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id as u8).wrapping_mul(13).wrapping_add(i as u8) ^ (id >> 16) as u8)
        .collect()
}

/// Allocations per worker in the sharing test.
const WORKER_OPS: u64 = 3000;

/// Allocates and frees `WORKER_OPS` times through `heaps` in turn, writing and checking a
/// pattern unique to `worker`; frees everything. Returns how many allocations it made.
fn work(heaps: &[&Heap], worker: u64) -> u64 {
    let mut rng = XorShift::new(worker + 1);
    let mut live: Vec<(u64, usize, u64)> = Vec::new();
    let mut n_allocs = 0;
    let mut seq = 0;
    while n_allocs < WORKER_OPS {
        let heap = heaps[(seq % heaps.len() as u64) as usize];
        seq += 1;
        if live.len() < 32 && rng.below(3) != 0 {
            let size = match rng.below(10) {
                0 => 1 + rng.below(16 << 10),
                _ => 1 + rng.below(1024),
            } as usize;
            let align = if rng.below(6) == 0 {
                1 << rng.below(13)
            } else {
                16
            };
            let off = heap.alloc(size, align).expect("alloc");
            assert_eq!(off % align as u64, 0);
            let id = (worker << 32) | seq;
            heap.write(off, &pattern(id, size)).unwrap();
            live.push((off, size, id));
            n_allocs += 1;
        } else if let Some((off, size, id)) = live.pop() {
            let mut back = vec![0u8; size];
            heap.read(off, &mut back).unwrap();
            assert_eq!(
                back,
                pattern(id, size),
                "worker {worker}: block {off:#x} was overwritten"
            );
            heap.free(off).expect("free");
        }
    }
    for (off, size, id) in live {
        let mut back = vec![0u8; size];
        heaps[0].read(off, &mut back).unwrap();
        assert_eq!(
            back,
            pattern(id, size),
            "worker {worker}: block {off:#x} was overwritten"
        );
        heaps[0].free(off).expect("free");
    }
    n_allocs
}

/// Child of `mp_heap_processes_share_one_heap`: maps the memfd twice (at two addresses), works
/// through both mappings, checks the parent's vector and leaves a result vector behind.
fn share_worker(arg: &str) {
    let a = args(arg);
    let len = a["len"] as usize;
    let fd = inherited_fd(&a);
    let first = Mapping::new(fd, len);
    let second = Mapping::new(fd, len);
    assert_ne!(first.base(), second.base());
    let heap = first.attach();
    let same_heap = second.attach();

    let parents: HeapVec<'_, u64> = HeapVec::open(&heap, a["vec"]).expect("open parent's vec");
    assert_eq!(parents.to_vec().unwrap(), (0..1000).collect::<Vec<u64>>());

    let n_allocs = work(&[&heap, &same_heap], a["id"]);

    // Report through the heap itself: a vector whose offset goes into this child's mailbox.
    let mut result: HeapVec<'_, u64> = HeapVec::new(&same_heap).unwrap();
    result.push(n_allocs).unwrap();
    let mailbox = a["mbox"] + 8 * a["id"];
    heap.write(mailbox, &result.offset().to_ne_bytes()).unwrap();
}

#[test]
fn mp_heap_processes_share_one_heap() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "worker" => share_worker(&testing::child_arg()),
            other => panic!("unknown role {other}"),
        });
    }
    let len = 8 << 20;
    let fd = shared_memfd(len);
    let map = Mapping::new(fd.as_fd(), len);
    let heap = map.init();

    let mut parents: HeapVec<'_, u64> = HeapVec::new(&heap).unwrap();
    for i in 0..1000 {
        parents.push(i).unwrap();
    }
    let mailbox = heap.alloc(24, 16).unwrap();
    heap.fill(mailbox, 24, 0).unwrap();

    let mut children: Vec<_> = (1..=2u64)
        .map(|id| {
            let arg = format!(
                "fd={},len={len},id={id},vec={},mbox={mailbox}",
                fd.as_raw_fd(),
                parents.offset()
            );
            testing::spawn_self("mp_heap_processes_share_one_heap", "worker", &arg).spawn()
        })
        .collect();
    let parent_allocs = work(&[&heap], 0);
    for child in &mut children {
        child.expect_success(Duration::from_secs(120));
    }

    heap.validate()
        .expect("validate after all processes worked");
    let mut total_allocs = parent_allocs + 2; // plus the parent's vector and the mailbox
    let mut n_results = 0;
    for id in 1..=2u64 {
        let mut word = [0u8; 8];
        heap.read(mailbox + 8 * id, &mut word).unwrap();
        let result: HeapVec<'_, u64> =
            HeapVec::open(&heap, u64::from_ne_bytes(word)).expect("child's result vector");
        let values = result.to_vec().unwrap();
        assert_eq!(values[0], WORKER_OPS);
        total_allocs += values[0] + 1; // plus the result vector
        n_results += 1;
    }
    let s = heap.stats().unwrap();
    assert_eq!(s.n_live, 2 + n_results, "{s:?}");
    assert_eq!(s.n_allocs, total_allocs, "{s:?}");
    assert_eq!(s.n_allocs - s.n_frees, s.n_live, "{s:?}");
    assert_eq!(s.bytes_used + s.bytes_free, s.arena_len, "{s:?}");
    assert_eq!(s.n_recoveries, 0);
}

/// Child of `mp_heap_survives_children_killed_mid_operation`: hammers the heap until killed.
fn hammer(arg: &str) {
    let a = args(arg);
    let map = Mapping::new(inherited_fd(&a), a["len"] as usize);
    let heap = map.attach();
    let mut rng = XorShift::new(a["seed"]);
    let mut live: Vec<u64> = Vec::new();
    loop {
        let op = rng.below(10);
        let result = if op < 5 && live.len() < 64 {
            let size = if rng.below(8) == 0 {
                1 + rng.below(30_000)
            } else {
                1 + rng.below(1024)
            };
            let align = if rng.below(8) == 0 {
                1 << rng.below(13)
            } else {
                16
            };
            heap.alloc(size as usize, align)
                .map(|off| live.push(off))
                .map_err(|e| e.to_string())
        } else if op < 8 && !live.is_empty() {
            let off = live.swap_remove(rng.below(live.len() as u64) as usize);
            heap.free(off).map_err(|e| e.to_string())
        } else if let Some(off) = live.pop() {
            let size = 1 + rng.below(8000) as usize;
            heap.realloc(off, size, 16)
                .map(|new| live.push(new))
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        if let Err(e) = result {
            if !e.contains("out of memory") {
                // A corrupt heap: nothing more to do but wait for the parent's SIGKILL.
                eprintln!("hammer: {e}");
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}

/// What an operation on a heap whose lock holder was killed returned. Corruption is a legal
/// outcome for the heap's contract; this test additionally expects none (see the assertions).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Corrupt,
}

fn alloc_outcome(r: Result<u64, HeapAllocError>, heap: &Heap) -> Outcome {
    match r {
        Ok(off) => {
            heap.free(off).expect("free what was just allocated");
            Outcome::Ok
        }
        Err(HeapAllocError::OutOfMemory { .. }) => Outcome::Ok,
        Err(HeapAllocError::Corrupt(_)) => Outcome::Corrupt,
        Err(e) => panic!("alloc after a killed owner: {e}"),
    }
}

/// Stops `child` and, if it holds the heap lock, kills it there and returns true; otherwise lets
/// it run on and returns false.
fn kill_if_owner(child: &mut testing::TestChild, heap: &Heap) -> bool {
    let pid = nix::unistd::Pid::from_raw(child.pid() as i32);
    child.signal(Signal::SIGSTOP);
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)) {
        Ok(WaitStatus::Stopped(..)) => {}
        other => panic!("hammer did not stop: {other:?}"),
    }
    if heap.lock_owner() == Some(child.pid()) {
        child.kill();
        return true;
    }
    child.signal(Signal::SIGCONT);
    false
}

#[test]
fn mp_heap_survives_children_killed_mid_operation() {
    if let Some(role) = testing::child_role() {
        return testing::run_child(|| match role.as_str() {
            "hammer" => hammer(&testing::child_arg()),
            other => panic!("unknown role {other}"),
        });
    }
    // Room for the blocks each killed child leaks.
    let len = 16 << 20;
    let fd = shared_memfd(len);
    let map = Mapping::new(fd.as_fd(), len);
    let heap = map.init();
    let mut rng = XorShift::new(2024);
    let (mut n_killed_as_owner, mut n_killed_anywhere) = (0, 0);

    for iteration in 0..20u64 {
        let arg = format!("fd={},len={len},seed={iteration}", fd.as_raw_fd());
        let mut child = testing::spawn_self(
            "mp_heap_survives_children_killed_mid_operation",
            "hammer",
            &arg,
        )
        .spawn();
        let before = heap.stats().unwrap().n_allocs;
        assert!(
            testing::wait_until(Duration::from_secs(20), || heap
                .stats()
                .is_ok_and(|s| s.n_allocs > before + 50)),
            "the hammer never got going"
        );
        // While the child hammers, a parent thread does too, so it may be parked on the lock
        // when the child dies.
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    outcomes.push(alloc_outcome(heap.alloc(200, 16), &heap));
                    if outcomes.last() == Some(&Outcome::Corrupt) {
                        break;
                    }
                }
                outcomes
            });
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            if iteration % 2 == 0 {
                // Kill it inside a heap operation, holding the lock.
                let deadline = Instant::now() + Duration::from_secs(10);
                while !kill_if_owner(&mut child, &heap) {
                    assert!(
                        Instant::now() < deadline,
                        "never caught the hammer holding the lock"
                    );
                    std::thread::sleep(Duration::from_micros(rng.below(300)));
                }
                n_killed_as_owner += 1;
            } else {
                // Kill it wherever it happens to be.
                child.kill();
                n_killed_anywhere += 1;
            }
            std::thread::sleep(Duration::from_millis(rng.below(5)));
            stop.store(true, Ordering::Relaxed);
            let outcomes = worker.join().expect("parent worker");
            assert!(!outcomes.is_empty());
            assert!(
                outcomes.iter().all(|o| *o == Outcome::Ok),
                "iteration {iteration}: {outcomes:?}"
            );
        });

        // The dead child's lock is taken over and the heap repaired: operations succeed (a
        // lock timeout or corruption would fail the test) and the heap validates.
        assert_eq!(alloc_outcome(heap.alloc(64, 16), &heap), Outcome::Ok);
        heap.validate()
            .unwrap_or_else(|e| panic!("iteration {iteration}: validate: {e}"));
        let s = heap.stats().unwrap();
        assert_eq!(s.bytes_used + s.bytes_free, s.arena_len, "{s:?}");
        assert_eq!(s.n_allocs - s.n_frees, s.n_live, "{s:?}");
        assert!(heap.lock_owner().is_none());
    }
    // Every child killed holding the lock was followed by exactly one repair; children killed
    // elsewhere may or may not have held it.
    let n_recoveries = heap.stats().unwrap().n_recoveries;
    eprintln!(
        "killed holding the lock: {n_killed_as_owner}, killed anywhere: {n_killed_anywhere}, \
         repairs: {n_recoveries}"
    );
    assert!(
        n_recoveries >= n_killed_as_owner && n_recoveries <= n_killed_as_owner + n_killed_anywhere
    );
    // Afterwards the heap works as if nothing happened.
    let off = heap.alloc(1000, 64).unwrap();
    let off = heap.realloc(off, 5000, 16).unwrap();
    heap.free(off).unwrap();
    heap.validate().unwrap();
}
