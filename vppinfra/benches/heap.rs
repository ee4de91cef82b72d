//! `cargo bench -p vppinfra --bench heap`: alloc+free pairs of small sizes on a
//! [`vppinfra::heap::Heap`], single-threaded and with two threads sharing one heap, each beside
//! the system allocator (`std::alloc::alloc`/`dealloc`, same sizes and alignment) measured in the
//! same run. `cargo test --benches` runs it in smoke mode.
//!
//! # Safety
//!
//! The only unsafe code calls `std::alloc::alloc`/`dealloc` for the baseline, with a non-zero
//! layout and freeing each pointer exactly once with the layout it was allocated with.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc, dealloc};
use std::hint::black_box;
use vppinfra::bench::Bench;
use vppinfra::heap::Heap;

const SIZES: [usize; 4] = [16, 64, 256, 1024];
const OPS: u64 = 2_000_000;
const BATCH: usize = 64;

fn system_pairs(layout: Layout, n: u64) {
    for _ in 0..n {
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        black_box(p);
        // SAFETY: `p` came from `alloc(layout)` just above and is freed once.
        unsafe { dealloc(p, layout) };
    }
}

fn heap_pairs(heap: &Heap, size: usize, n: u64) {
    for _ in 0..n {
        let off = heap.alloc(size, 16).expect("alloc");
        heap.free(black_box(off)).expect("free");
    }
}

/// `n` operations as batches: allocate `BATCH` blocks, then free them in order.
fn system_batches(layout: Layout, n: u64) {
    let mut ptrs = Vec::with_capacity(BATCH);
    for _ in 0..n.div_ceil(BATCH as u64) {
        for _ in 0..BATCH {
            // SAFETY: `layout` has a non-zero size.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            ptrs.push(black_box(p));
        }
        for p in ptrs.drain(..) {
            // SAFETY: each `p` came from `alloc(layout)` above and is freed once.
            unsafe { dealloc(p, layout) };
        }
    }
}

fn heap_batches(heap: &Heap, size: usize, n: u64) {
    let mut offs = Vec::with_capacity(BATCH);
    for _ in 0..n.div_ceil(BATCH as u64) {
        for _ in 0..BATCH {
            offs.push(black_box(heap.alloc(size, 16).expect("alloc")));
        }
        for off in offs.drain(..) {
            heap.free(off).expect("free");
        }
    }
}

/// Runs `f(n / 2)` on two threads at once.
fn on_two_threads(n: u64, f: impl Fn(u64) + Sync) {
    std::thread::scope(|s| {
        let f = &f;
        let other = s.spawn(move || f(n / 2));
        f(n - n / 2);
        other.join().expect("bench thread");
    });
}

fn main() {
    let mut b = Bench::from_args("heap");
    let heap = Heap::new_local(64 << 20).expect("heap");
    for size in SIZES {
        let layout = Layout::from_size_align(size, 16).expect("layout");
        let name = format!("system alloc+free {size}B");
        if b.wants(&name) || b.wants(&format!("heap alloc+free {size}B")) {
            let base = b.run(&name, OPS, |n| system_pairs(layout, n));
            b.run_vs(&format!("heap alloc+free {size}B"), OPS, &base, |n| {
                heap_pairs(&heap, size, n)
            });
        }
        let name = format!("system batch{BATCH} {size}B");
        if b.wants(&name) || b.wants(&format!("heap batch{BATCH} {size}B")) {
            let base = b.run(&name, OPS, |n| system_batches(layout, n));
            b.run_vs(&format!("heap batch{BATCH} {size}B"), OPS, &base, |n| {
                heap_batches(&heap, size, n)
            });
        }
        let name = format!("2 threads: system alloc+free {size}B");
        if b.wants(&name) || b.wants(&format!("2 threads: heap alloc+free {size}B")) {
            let base = b.run(&name, OPS, |n| {
                on_two_threads(n, |n| system_pairs(layout, n))
            });
            b.run_vs(
                &format!("2 threads: heap alloc+free {size}B"),
                OPS,
                &base,
                |n| on_two_threads(n, |n| heap_pairs(&heap, size, n)),
            );
        }
    }
    heap.validate()
        .expect("heap consistent after the benchmark");
}
