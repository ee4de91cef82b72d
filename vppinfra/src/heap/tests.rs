//! Unit tests: every operation, policies, statistics, validation against planted corruption,
//! bad input, the lock's dead-owner and timeout paths, and randomised and garbage runs.

use super::layout::*;
use super::vec::{HeapVec, HeapVecAccessError, HeapVecCreateError, HeapVecOpenError};
use super::*;
use std::collections::HashMap;

/// A small deterministic PRNG (xorshift64) so failures replay from the seed.
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

fn heap(len: usize) -> Heap {
    Heap::new_local(len).expect("new_local")
}

fn peek(h: &Heap, off: u64) -> u64 {
    h.region
        .word(off)
        .expect("in region")
        .load(Ordering::Relaxed)
}

fn poke(h: &Heap, off: u64, v: u64) {
    h.region
        .word(off)
        .expect("in region")
        .store(v, Ordering::Relaxed);
}

/// Forgets recorded corruption, so a test can keep operating on a damaged heap.
fn forget_corruption(h: &Heap) {
    h.corrupt_kind.store(0, Ordering::Relaxed);
    let flags = peek(h, H_FLAGS);
    poke(h, H_FLAGS, flags & !FLAG_CORRUPT);
}

fn corruption_of(r: Result<(), HeapValidateError>) -> HeapCorruption {
    match r {
        Err(HeapValidateError::Corrupt(c)) => c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn stats(h: &Heap) -> HeapStats {
    h.stats().expect("stats")
}

fn assert_consistent(h: &Heap) {
    h.validate().expect("validate");
    let s = stats(h);
    assert_eq!(s.bytes_used + s.bytes_free, s.arena_len, "{s:?}");
    assert_eq!(s.n_allocs - s.n_frees, s.n_live, "{s:?}");
}

/// Fills an allocation with a pattern derived from `id`.
fn fill_pattern(h: &Heap, off: u64, len: usize, id: u64) {
    let bytes: Vec<u8> = (0..len).map(|i| pattern_byte(id, i)).collect();
    h.write(off, &bytes).expect("write");
}

fn pattern_byte(id: u64, i: usize) -> u8 {
    (id as u8)
        .wrapping_mul(31)
        .wrapping_add(i as u8)
        .wrapping_add((id >> 8) as u8)
}

fn check_pattern(h: &Heap, off: u64, len: usize, id: u64) {
    let mut bytes = vec![0u8; len];
    h.read(off, &mut bytes).expect("read");
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(
            *b,
            pattern_byte(id, i),
            "allocation {id} at {off:#x}: byte {i} changed"
        );
    }
}

#[test]
fn regions_that_are_too_small_large_or_misaligned_are_rejected() {
    assert_eq!(
        Heap::new_local(MIN_REGION_LEN - 1).unwrap_err(),
        HeapInitError::TooSmall {
            len: MIN_REGION_LEN - 1
        }
    );
    assert_eq!(
        Heap::new_local(MAX_REGION_LEN + 1).unwrap_err(),
        HeapInitError::TooLarge {
            len: MAX_REGION_LEN + 1
        }
    );
    assert_eq!(
        region::check_region(REGION_ALIGN + 64, 1 << 20),
        Err(HeapInitError::Misaligned {
            addr: REGION_ALIGN + 64
        })
    );
    assert_eq!(
        region::check_region(0, 1 << 20),
        Err(HeapInitError::Misaligned { addr: 0 })
    );
    let h = heap(MIN_REGION_LEN);
    let off = h
        .alloc(16, 16)
        .expect("the minimum region holds an allocation");
    h.free(off).unwrap();
    assert_consistent(&h);
}

#[test]
fn attach_checks_magic_version_size_and_layout() {
    let h = heap(64 << 10);
    assert_eq!(h.check_header(), Ok(()));
    poke(&h, H_VERSION, 99);
    assert_eq!(
        h.check_header(),
        Err(HeapAttachError::BadVersion { found: 99 })
    );
    poke(&h, H_VERSION, VERSION);
    poke(&h, H_REGION_LEN, 32 << 10);
    assert_eq!(
        h.check_header(),
        Err(HeapAttachError::SizeMismatch {
            header: 32 << 10,
            len: 64 << 10
        })
    );
    poke(&h, H_REGION_LEN, 64 << 10);
    poke(&h, H_ARENA_END, 4096);
    assert!(matches!(
        h.check_header(),
        Err(HeapAttachError::BadLayout { .. })
    ));
    poke(&h, H_MAGIC, 7);
    assert_eq!(
        h.check_header(),
        Err(HeapAttachError::BadMagic { found: 7 })
    );
}

#[test]
fn alloc_write_read_free() {
    let h = heap(64 << 10);
    let a = h.alloc(100, 16).unwrap();
    let b = h.alloc(5000, 8).unwrap();
    assert!(h.arena().contains(&a) && h.arena().contains(&b));
    assert!(a + 100 <= b || b + 5000 <= a, "allocations overlap");
    fill_pattern(&h, a, 100, 1);
    fill_pattern(&h, b, 5000, 2);
    check_pattern(&h, a, 100, 1);
    check_pattern(&h, b, 5000, 2);
    assert!(h.usable_size(a).unwrap() >= 100);
    h.free(a).unwrap();
    check_pattern(&h, b, 5000, 2);
    h.free(b).unwrap();
    assert_consistent(&h);
    let s = stats(&h);
    assert_eq!(
        (s.n_allocs, s.n_frees, s.n_live, s.bytes_used),
        (2, 2, 0, 0)
    );
}

#[test]
fn byte_accessors_handle_unaligned_ranges_and_stay_in_the_arena() {
    let h = heap(64 << 10);
    let a = h.alloc(64, 16).unwrap();
    h.fill(a, 64, 0xee).unwrap();
    h.write(a + 3, b"abcdefghijk").unwrap();
    let mut buf = [0u8; 16];
    h.read(a, &mut buf).unwrap();
    assert_eq!(&buf, b"\xee\xee\xeeabcdefghijk\xee\xee");
    let end = h.arena().end;
    assert!(h.read(end - 4, &mut [0u8; 8]).is_err());
    assert!(h.write(0, &[1]).is_err(), "the header is not writable");
    assert!(h.write(u64::MAX - 2, &[1, 2, 3, 4]).is_err());
    assert!(h.ptr(end, 1).is_err());
    let p = h.ptr(a, 64).unwrap();
    assert_eq!(p.as_ptr() as usize, h.base() as usize + a as usize);
    h.free(a).unwrap();
    assert_consistent(&h);
}

#[test]
fn alignments_up_to_4096_are_honoured_in_offsets_and_addresses() {
    let h = heap(1 << 20);
    let mut live = Vec::new();
    for (i, align) in (0..=12).map(|s| 1usize << s).enumerate() {
        for size in [1, 24, 100, 3000] {
            let off = h.alloc(size, align).unwrap();
            assert_eq!(off % align as u64, 0, "offset {off:#x} for align {align}");
            assert_eq!((h.base() as usize + off as usize) % align, 0);
            fill_pattern(&h, off, size, (i * 10 + size) as u64);
            live.push((off, size, (i * 10 + size) as u64));
        }
    }
    h.validate().unwrap();
    for (off, size, id) in &live {
        check_pattern(&h, *off, *size, *id);
    }
    for (off, ..) in live {
        h.free(off).unwrap();
    }
    assert_consistent(&h);
    assert_eq!(
        h.alloc(1, 8192),
        Err(HeapAllocError::BadAlign { align: 8192 })
    );
}

#[test]
fn freed_neighbours_coalesce_into_one_block() {
    let h = heap(64 << 10);
    let a = h.alloc(2000, 16).unwrap();
    let b = h.alloc(2000, 16).unwrap();
    let c = h.alloc(2000, 16).unwrap();
    let guard = h.alloc(2000, 16).unwrap();
    let block = block_size_for(2000);
    assert_eq!((b - a, c - b), (block, block));
    // Free the outer two first, then the middle: it must merge both ways.
    h.free(a).unwrap();
    h.free(c).unwrap();
    h.free(b).unwrap();
    assert_consistent(&h);
    let merged = h.alloc((3 * block - BLOCK_HEADER) as usize, 16).unwrap();
    assert_eq!(merged, a, "the three blocks must have become one");
    assert_eq!(
        h.usable_size(merged).unwrap() as u64,
        3 * block - BLOCK_HEADER
    );
    h.free(merged).unwrap();
    h.free(guard).unwrap();
    assert_consistent(&h);
    // Everything is one free block again.
    assert_eq!(stats(&h).largest_free, stats(&h).arena_len - BLOCK_HEADER);
}

#[test]
fn small_sizes_reuse_their_class_lifo_without_coalescing() {
    let h = heap(64 << 10);
    let a = h.alloc(64, 16).unwrap();
    let b = h.alloc(64, 16).unwrap();
    h.free(a).unwrap();
    h.free(b).unwrap();
    // The last freed comes back first, from its exact class.
    assert_eq!(h.alloc(60, 16).unwrap(), b);
    assert_eq!(h.alloc(49, 1).unwrap(), a);
    assert_eq!(
        peek(&h, quick_head(quick_index(block_size_for(64)).unwrap())),
        0
    );
    h.free(a).unwrap();
    h.free(b).unwrap();
    assert_consistent(&h);
}

#[test]
fn exhaustion_fails_cleanly_and_quick_blocks_are_returned_before_failing() {
    let h = heap(64 << 10);
    let mut live = Vec::new();
    let err = loop {
        match h.alloc(100, 16) {
            Ok(off) => live.push(off),
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        HeapAllocError::OutOfMemory {
            size: 100,
            align: 16
        }
    );
    assert!(live.len() > 400, "only {} allocations fit", live.len());
    assert_eq!(stats(&h).n_failures, 1);
    assert_consistent(&h);
    for off in live.drain(..) {
        h.free(off).unwrap();
    }
    // Every block is now in a quick list; one allocation of the whole arena must still succeed.
    let whole = (stats(&h).arena_len - BLOCK_HEADER) as usize;
    let off = h.alloc(whole, 16).unwrap();
    assert_eq!(off, ARENA_START + BLOCK_HEADER);
    assert_eq!(
        h.alloc(1, 16),
        Err(HeapAllocError::OutOfMemory { size: 1, align: 16 })
    );
    h.free(off).unwrap();
    assert_consistent(&h);
    assert_eq!(
        h.alloc(whole + 1, 16),
        Err(HeapAllocError::TooLarge { size: whole + 1 })
    );
}

#[test]
fn fragmentation_blocks_large_requests_until_holes_merge() {
    let h = heap(256 << 10);
    let blocks: Vec<u64> = (0..64).map(|_| h.alloc(2000, 16).unwrap()).collect();
    // Fill the rest so the tail cannot serve a big request.
    let mut filler = Vec::new();
    while let Ok(off) = h.alloc(2000, 16) {
        filler.push(off);
    }
    for off in blocks.iter().step_by(2) {
        h.free(*off).unwrap();
    }
    let s = stats(&h);
    assert!(s.bytes_free >= 32 * 2016, "{s:?}");
    assert!(
        s.largest_free < 4000,
        "holes are separated by live blocks: {s:?}"
    );
    assert!(matches!(
        h.alloc(4000, 16),
        Err(HeapAllocError::OutOfMemory { .. })
    ));
    for off in blocks.iter().skip(1).step_by(2) {
        h.free(*off).unwrap();
    }
    let big = h.alloc(64 * 2000, 16).expect("the holes merged");
    h.free(big).unwrap();
    for off in filler {
        h.free(off).unwrap();
    }
    assert_consistent(&h);
}

#[test]
fn internal_waste_stays_within_the_documented_bound() {
    let h = heap(4 << 20);
    let mut rng = XorShift::new(7);
    for _ in 0..2000 {
        let size = 1 + rng.below(20_000) as usize;
        let align = 1usize << rng.below(13);
        let off = h.alloc(size, align).unwrap();
        let usable = h.usable_size(off).unwrap();
        assert!(usable >= size);
        let block = usable as u64 + BLOCK_HEADER;
        assert!(
            block - size as u64 <= 47,
            "size {size} align {align}: block {block}"
        );
        h.free(off).unwrap();
    }
    assert_consistent(&h);
}

#[test]
fn stats_track_every_operation() {
    let h = heap(64 << 10);
    let arena_len = stats(&h).arena_len;
    assert_eq!(arena_len, h.arena().end - h.arena().start);
    let a = h.alloc(10, 16).unwrap();
    let b = h.alloc(3000, 16).unwrap();
    let b = h.realloc(b, 5000, 16).unwrap();
    let _ = h.alloc(1 << 20, 16).unwrap_err();
    h.free(a).unwrap();
    let s = stats(&h);
    assert_eq!(s.n_allocs, 2);
    assert_eq!(s.n_frees, 1);
    assert_eq!(s.n_live, 1);
    assert_eq!(s.n_reallocs, 1);
    assert_eq!(
        s.n_failures, 0,
        "a request that can never fit is a bad argument, not a failure"
    );
    assert_eq!(s.bytes_used, block_size_for(5000));
    assert_eq!(s.bytes_used + s.bytes_free, arena_len);
    assert_eq!(s.region_len, 64 << 10);
    h.free(b).unwrap();
    assert_consistent(&h);
}

#[test]
fn realloc_shrinks_and_grows_in_place_and_moves_with_contents() {
    let h = heap(256 << 10);
    let a = h.alloc(4000, 16).unwrap();
    fill_pattern(&h, a, 4000, 9);
    // Shrink in place: same offset, the tail becomes free.
    let a2 = h.realloc(a, 1500, 16).unwrap();
    assert_eq!(a2, a);
    assert_eq!(
        h.usable_size(a).unwrap() as u64,
        block_size_for(1500) - BLOCK_HEADER
    );
    check_pattern(&h, a, 1500, 9);
    h.validate().unwrap();
    // Grow in place into the free right neighbour.
    let a3 = h.realloc(a, 3500, 16).unwrap();
    assert_eq!(a3, a);
    check_pattern(&h, a, 1500, 9);
    h.validate().unwrap();
    // Block the right neighbour; growth must move and keep the contents.
    let wall = h.alloc(2000, 16).unwrap();
    fill_pattern(&h, a, 3500, 10);
    let moved = h.realloc(a, 9000, 16).unwrap();
    assert_ne!(moved, a);
    check_pattern(&h, moved, 3500, 10);
    assert_eq!(h.free(a), Err(HeapFreeError::DoubleFree { offset: a }));
    // A stricter alignment moves too.
    let aligned = h.realloc(moved, 9000, 4096).unwrap();
    assert_eq!(aligned % 4096, 0);
    check_pattern(&h, aligned, 3500, 10);
    // Small blocks shrink and grow through their classes.
    let s = h.alloc(40, 16).unwrap();
    fill_pattern(&h, s, 40, 11);
    let s = h.realloc(s, 600, 16).unwrap();
    check_pattern(&h, s, 40, 11);
    let s = h.realloc(s, 20, 16).unwrap();
    check_pattern(&h, s, 20, 11);
    for off in [s, aligned, wall] {
        h.free(off).unwrap();
    }
    assert_consistent(&h);
    assert_eq!(stats(&h).n_reallocs, 6);
}

#[test]
fn bad_arguments_are_typed_errors_and_leave_the_heap_intact() {
    let h = heap(64 << 10);
    let small = h.alloc(32, 16).unwrap();
    let big = h.alloc(3000, 16).unwrap();
    let big2 = h.alloc(3000, 16).unwrap();
    let _guard = h.alloc(3000, 16).unwrap();
    let end = h.arena().end;

    assert_eq!(h.alloc(0, 16), Err(HeapAllocError::ZeroSize));
    assert_eq!(h.alloc(8, 0), Err(HeapAllocError::BadAlign { align: 0 }));
    assert_eq!(h.alloc(8, 48), Err(HeapAllocError::BadAlign { align: 48 }));
    assert_eq!(
        h.alloc(usize::MAX, 16),
        Err(HeapAllocError::TooLarge { size: usize::MAX })
    );
    assert_eq!(h.realloc(big, 0, 16), Err(HeapReallocError::ZeroSize));

    // Out of range: the header, past the fence, absurd values.
    for off in [0, 16, ARENA_START, end, end + 16, u64::MAX] {
        assert_eq!(
            h.free(off),
            Err(HeapFreeError::OutOfRange { offset: off }),
            "{off:#x}"
        );
    }
    assert_eq!(
        h.realloc(0, 8, 16),
        Err(HeapReallocError::OutOfRange { offset: 0 })
    );
    // Foreign and interior offsets.
    for off in [big + 16, big + 1, big + 2992, small + 8, big - 16] {
        assert_eq!(
            h.free(off),
            Err(HeapFreeError::NotAllocated { offset: off }),
            "{off:#x}"
        );
    }
    assert_eq!(
        h.usable_size(big + 32),
        Err(HeapLookupError::NotAllocated { offset: big + 32 })
    );
    // A forged header inside user data: a tag copied from a real block does not validate at a
    // different offset.
    let real_tag = peek(&h, big - BLOCK_HEADER + B_TAG);
    h.write(big + 8, &real_tag.to_ne_bytes()).unwrap();
    assert_eq!(
        h.free(big + 16),
        Err(HeapFreeError::NotAllocated { offset: big + 16 })
    );

    // Double frees: a quick block, a coalesced block, and a block merged into its neighbour.
    h.free(small).unwrap();
    assert_eq!(
        h.free(small),
        Err(HeapFreeError::DoubleFree { offset: small })
    );
    h.free(big).unwrap();
    assert_eq!(h.free(big), Err(HeapFreeError::DoubleFree { offset: big }));
    h.free(big2).unwrap();
    assert_eq!(
        h.free(big2),
        Err(HeapFreeError::DoubleFree { offset: big2 })
    );
    assert_eq!(
        h.realloc(big2, 10, 16),
        Err(HeapReallocError::AlreadyFree { offset: big2 })
    );
    assert_eq!(
        h.usable_size(small),
        Err(HeapLookupError::AlreadyFree { offset: small })
    );
    assert!(
        h.corruption().is_none(),
        "bad arguments must not mark the heap corrupt"
    );
    assert_consistent(&h);
}

/// A heap with live, quick and coalesced blocks, for planting corruption. Returns
/// `(heap, live payloads, quick payloads, coalesced free payloads)`.
fn populated() -> (Heap, Vec<u64>, Vec<u64>, Vec<u64>) {
    let h = heap(64 << 10);
    let p: Vec<u64> = (0..12)
        .map(|i| h.alloc(if i % 2 == 0 { 48 } else { 2000 }, 16).unwrap())
        .collect();
    // Free 0, 2 (quick, same class) and 5, 9 (large, not adjacent, same bin).
    for i in [0, 2, 5, 9] {
        h.free(p[i]).unwrap();
    }
    h.validate().unwrap();
    let live = [1, 3, 4, 6, 7, 8, 10, 11].iter().map(|&i| p[i]).collect();
    (h, live, vec![p[0], p[2]], vec![p[5], p[9]])
}

#[test]
fn validate_passes_on_a_good_heap_and_names_planted_corruption() {
    type Plant = fn(&Heap, &[u64], &[u64], &[u64]) -> (u64, CorruptionKind);
    let cases: Vec<(&str, Plant)> = vec![
        ("flipped tag bit", |h, live, _, _| {
            let b = live[2] - BLOCK_HEADER;
            poke(h, b + B_TAG, peek(h, b + B_TAG) ^ (1 << 20));
            (b, CorruptionKind::BlockTag)
        }),
        ("bogus huge size", |h, live, _, _| {
            let b = live[2] - BLOCK_HEADER;
            poke(h, b + B_TAG, make_tag(b, 1 << 40, State::InUse));
            (b, CorruptionKind::BlockSize)
        }),
        ("size off by one granule", |h, live, _, _| {
            let b = live[1] - BLOCK_HEADER;
            let (size, _) = decode_tag(b, peek(h, b + B_TAG)).unwrap();
            poke(h, b + B_TAG, make_tag(b, size + 16, State::InUse));
            // The walk lands 16 bytes into the next block's header.
            (b + size + 16, CorruptionKind::BlockTag)
        }),
        ("boundary tag disagrees", |h, live, _, _| {
            let b = live[3] - BLOCK_HEADER;
            poke(h, b + B_PREV_SIZE, 64);
            (b, CorruptionKind::PrevSize)
        }),
        ("bin list cycle", |h, _, _, free| {
            let (x, y) = (free[0] - BLOCK_HEADER, free[1] - BLOCK_HEADER);
            let (first, second) = if peek(h, B_NEXT + x) == y {
                (x, y)
            } else {
                (y, x)
            };
            poke(h, second + B_NEXT, first);
            (first, CorruptionKind::FreeLink)
        }),
        ("quick list cycle", |h, _, quick, _| {
            let q = quick_index(block_size_for(48)).unwrap();
            let head = peek(h, quick_head(q));
            let tail = peek(h, head + B_NEXT);
            assert_eq!(peek(h, tail + B_NEXT), 0);
            let _ = quick;
            poke(h, tail + B_NEXT, head);
            (head, CorruptionKind::FreeListCycle)
        }),
        ("bin bitmap bit cleared", |h, _, _, free| {
            let size = decode_tag(free[0] - 16, peek(h, free[0] - 16 + B_TAG))
                .unwrap()
                .0;
            let (map, bit) = bin_map_bit(bin_index(size));
            poke(h, map, peek(h, map) & !bit);
            (map, CorruptionKind::BinMap)
        }),
        ("free block dropped from its bin", |h, _, _, free| {
            let (x, y) = (free[0] - BLOCK_HEADER, free[1] - BLOCK_HEADER);
            let (first, second) = if peek(h, B_NEXT + x) == y {
                (x, y)
            } else {
                (y, x)
            };
            poke(h, first + B_NEXT, 0);
            (second, CorruptionKind::FreeBlockUnlisted)
        }),
        ("listed block is in use", |h, live, _, free| {
            let b = free[0] - BLOCK_HEADER;
            let size = decode_tag(b, peek(h, b + B_TAG)).unwrap().0;
            poke(h, b + B_TAG, make_tag(b, size, State::InUse));
            let _ = live;
            (b, CorruptionKind::FreeListMember)
        }),
        ("bytes used off", |h, _, _, _| {
            poke(h, H_BYTES_USED, peek(h, H_BYTES_USED) + 16);
            (H_BYTES_USED, CorruptionKind::StatsBytes)
        }),
        ("live count off", |h, _, _, _| {
            poke(h, H_N_LIVE, 3);
            (H_N_LIVE, CorruptionKind::StatsCounts)
        }),
        ("frees counter off", |h, _, _, _| {
            poke(h, H_N_FREES, 0);
            (H_N_ALLOCS, CorruptionKind::StatsCounts)
        }),
        ("magic", |h, _, _, _| {
            poke(h, H_MAGIC, 0);
            (H_MAGIC, CorruptionKind::HeaderMagic)
        }),
        ("fence", |h, _, _, _| {
            let fence = h.arena().end;
            poke(h, fence + B_TAG, 0);
            (fence, CorruptionKind::Fence)
        }),
    ];
    for (name, plant) in cases {
        let (h, live, quick, free) = populated();
        let (offset, kind) = plant(&h, &live, &quick, &free);
        let found = corruption_of(h.validate());
        assert_eq!(found, HeapCorruption { offset, kind }, "{name}");
        // Sticky: later operations report it too, and nothing else changes.
        assert_eq!(
            h.alloc(16, 16),
            Err(HeapAllocError::Corrupt(found)),
            "{name}"
        );
        assert_eq!(
            h.free(live[0]),
            Err(HeapFreeError::Corrupt(found)),
            "{name}"
        );
        assert_eq!(h.corruption(), Some(found), "{name}");
        assert!(found.to_string().starts_with("heap corrupt at offset"));
    }
}

#[test]
fn operations_detect_damaged_lists_without_validate() {
    // A quick-list cycle is found when a pop meets a block that is already in use.
    let (h, _, quick, _) = populated();
    let q = quick_index(block_size_for(48)).unwrap();
    let head = peek(&h, quick_head(q));
    assert_eq!(head, quick[1] - BLOCK_HEADER);
    poke(&h, quick[0] - BLOCK_HEADER + B_NEXT, head);
    assert_eq!(h.alloc(48, 16), Ok(quick[1]));
    assert_eq!(h.alloc(48, 16), Ok(quick[0]));
    let found = HeapCorruption {
        offset: head,
        kind: CorruptionKind::FreeListMember,
    };
    assert_eq!(h.alloc(48, 16), Err(HeapAllocError::Corrupt(found)));
    assert_eq!(h.alloc(2000, 16), Err(HeapAllocError::Corrupt(found)));

    // A bin link pointing outside the arena is refused, not followed.
    let (h, _, _, free) = populated();
    let head = free[1] - BLOCK_HEADER;
    assert_eq!(peek(&h, head + B_NEXT), free[0] - BLOCK_HEADER);
    poke(&h, head + B_NEXT, u64::MAX - 7);
    let size = decode_tag(head, peek(&h, head + B_TAG)).unwrap().0;
    assert_eq!(
        h.alloc((size - BLOCK_HEADER) as usize, 16),
        Err(HeapAllocError::Corrupt(HeapCorruption {
            offset: head,
            kind: CorruptionKind::FreeLink
        }))
    );
}

#[test]
fn a_live_foreign_owner_makes_waiters_time_out() {
    let mut h = heap(64 << 10);
    h.set_lock_timeout(Duration::from_millis(50));
    h.set_owner_check_after(Duration::from_millis(1));
    // pid 1 always exists.
    h.region.lock_word().word_store_for_test(1);
    assert_eq!(h.lock_owner(), Some(1));
    let start = std::time::Instant::now();
    assert_eq!(
        h.alloc(16, 16),
        Err(HeapAllocError::Lock(HeapLockError::Timeout { owner: 1 }))
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(matches!(h.stats(), Err(HeapStatsError::Lock(_))));
    h.region.lock_word().word_store_for_test(0);
    assert!(h.alloc(16, 16).is_ok());
    assert!(h.corruption().is_none());
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[test]
fn a_dead_owner_is_taken_over_and_a_half_done_operation_repaired() {
    let mut h = heap(64 << 10);
    h.set_owner_check_after(Duration::from_millis(1));
    let live: Vec<u64> = (0..8).map(|_| h.alloc(48, 16).unwrap()).collect();
    let big = h.alloc(3000, 16).unwrap();
    let _big2 = h.alloc(3000, 16).unwrap();
    h.free(live[3]).unwrap();
    h.free(big).unwrap();
    // Simulate a process that died inside `free`: it tagged a block free (a quick block here)
    // and updated nothing else, and one that died after unlinking a free block.
    let b = live[5] - BLOCK_HEADER;
    poke(&h, b + B_TAG, make_tag(b, block_size_for(48), State::Quick));
    let fb = big - BLOCK_HEADER;
    let size = decode_tag(fb, peek(&h, fb + B_TAG)).unwrap().0;
    h.bin_unlink(fb, size).unwrap();
    assert!(
        h.validate().is_err(),
        "the simulated crash must leave damage"
    );
    forget_corruption(&h);
    h.region
        .lock_word()
        .word_store_for_test(dead_pid() | LOCK_WAITERS);

    let off = h
        .alloc(2000, 16)
        .expect("the lock is taken over and the heap repaired");
    let s = stats(&h);
    assert_eq!(s.n_recoveries, 1);
    assert_eq!(
        s.n_live, 8,
        "7 small + 1 big live before, 1 freed by the dead owner, 1 new"
    );
    assert_consistent(&h);
    assert_eq!(h.lock_owner(), None);
    // The block the dead owner freed is gone for good (double free), the others are live.
    assert_eq!(
        h.free(live[5]),
        Err(HeapFreeError::DoubleFree { offset: live[5] })
    );
    for (i, p) in live.iter().enumerate() {
        if i != 3 && i != 5 {
            h.free(*p).unwrap();
        }
    }
    h.free(off).unwrap();
    assert_consistent(&h);
}

#[test]
fn a_dead_owner_leaving_unrepairable_damage_makes_operations_report_it() {
    let mut h = heap(64 << 10);
    h.set_owner_check_after(Duration::from_millis(1));
    let a = h.alloc(3000, 16).unwrap();
    let b = a - BLOCK_HEADER;
    poke(&h, b + B_TAG, 0xdead_beef);
    h.region.lock_word().word_store_for_test(dead_pid());
    let err = h.alloc(16, 16).unwrap_err();
    let HeapAllocError::Corrupt(c) = err else {
        panic!("expected corruption, got {err:?}");
    };
    assert_eq!(
        c,
        HeapCorruption {
            offset: b,
            kind: CorruptionKind::BlockTag
        }
    );
    assert_eq!(h.validate(), Err(HeapValidateError::Corrupt(c)));
    assert_eq!(h.lock_owner(), None, "the lock is released even on failure");
    // A second handle on a region with the corrupt flag set sees it too.
    assert_eq!(peek(&h, H_FLAGS) & FLAG_CORRUPT, FLAG_CORRUPT);
    h.corrupt_kind.store(0, Ordering::Relaxed);
    assert_eq!(h.alloc(16, 16), Err(HeapAllocError::Corrupt(c)));
}

#[test]
fn a_handle_that_does_not_repair_refuses_in_constant_time() {
    // A peer that can write the region sets the repair flag before each of our operations: a
    // repairing handle would walk the whole arena every time.
    let mut h = heap(1 << 20);
    let live: Vec<u64> = (0..1000).map(|_| h.alloc(16, 16).unwrap()).collect();
    poke(&h, H_FLAGS, peek(&h, H_FLAGS) | FLAG_NEEDS_RECOVERY);
    h.set_repair(false);
    let refused = HeapCorruption {
        offset: H_FLAGS,
        kind: CorruptionKind::RepairRefused,
    };
    assert_eq!(
        h.usable_size(live[0]),
        Err(HeapLookupError::Corrupt(refused))
    );
    assert_eq!(h.lock_owner(), None, "the lock is released");
    // Refused for good by this handle, even once the flag is cleared again.
    poke(&h, H_FLAGS, 0);
    assert_eq!(h.free(live[1]), Err(HeapFreeError::Corrupt(refused)));
    assert_eq!(h.alloc(16, 16), Err(HeapAllocError::Corrupt(refused)));
    assert_eq!(stats(&h).n_recoveries, 0, "nothing was walked");

    // A dead lock owner is refused the same way, at the lock word.
    let mut h = heap(64 << 10);
    h.set_repair(false);
    h.set_owner_check_after(Duration::from_millis(1));
    h.region.lock_word().word_store_for_test(dead_pid());
    assert_eq!(
        h.alloc(16, 16),
        Err(HeapAllocError::Corrupt(HeapCorruption {
            offset: H_LOCK,
            kind: CorruptionKind::RepairRefused,
        }))
    );
    assert_eq!(h.lock_owner(), None);

    // With repair on (the default), the same flag is simply repaired.
    let h = heap(64 << 10);
    let a = h.alloc(16, 16).unwrap();
    poke(&h, H_FLAGS, peek(&h, H_FLAGS) | FLAG_NEEDS_RECOVERY);
    assert!(h.usable_size(a).is_ok());
    assert_eq!(stats(&h).n_recoveries, 1);
}

#[test]
fn randomised_alloc_free_realloc_preserves_contents() {
    for seed in [1, 2, 3, 0xdead_beef] {
        let h = heap(1 << 20);
        let mut rng = XorShift::new(seed);
        // payload offset -> (length, pattern id)
        let mut live: HashMap<u64, (usize, u64)> = HashMap::new();
        let mut keys: Vec<u64> = Vec::new();
        let mut next_id = 0u64;
        for step in 0..20_000 {
            let op = rng.below(100);
            if op < 45 || keys.is_empty() {
                let size = match rng.below(20) {
                    0 => 1 + rng.below(64 << 10),
                    1..=5 => 1 + rng.below(8192),
                    _ => 1 + rng.below(1024),
                } as usize;
                let align = if rng.below(8) == 0 {
                    1 << rng.below(13)
                } else {
                    16
                };
                match h.alloc(size, align) {
                    Ok(off) => {
                        assert_eq!(off % align as u64, 0);
                        assert!(!live.contains_key(&off), "offset handed out twice");
                        next_id += 1;
                        fill_pattern(&h, off, size, next_id);
                        live.insert(off, (size, next_id));
                        keys.push(off);
                    }
                    Err(HeapAllocError::OutOfMemory { .. }) => {}
                    Err(e) => panic!("seed {seed} step {step}: {e}"),
                }
            } else if op < 85 {
                let i = rng.below(keys.len() as u64) as usize;
                let off = keys.swap_remove(i);
                let (size, id) = live.remove(&off).unwrap();
                check_pattern(&h, off, size, id);
                h.free(off)
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            } else {
                let i = rng.below(keys.len() as u64) as usize;
                let off = keys[i];
                let (size, id) = live[&off];
                let limit = if rng.below(4) == 0 { 20_000 } else { 2048 };
                let new_size = 1 + rng.below(limit) as usize;
                match h.realloc(off, new_size, 16) {
                    Ok(new_off) => {
                        check_pattern(&h, new_off, size.min(new_size), id);
                        live.remove(&off);
                        next_id += 1;
                        fill_pattern(&h, new_off, new_size, next_id);
                        live.insert(new_off, (new_size, next_id));
                        keys[i] = new_off;
                    }
                    Err(HeapReallocError::OutOfMemory { .. }) => check_pattern(&h, off, size, id),
                    Err(e) => panic!("seed {seed} step {step}: {e}"),
                }
            }
            if step % 1000 == 0 {
                assert_consistent(&h);
                assert_eq!(stats(&h).n_live, live.len() as u64);
                for (off, (size, id)) in &live {
                    check_pattern(&h, *off, *size, *id);
                }
            }
        }
        for (off, (size, id)) in live.drain() {
            check_pattern(&h, off, size, id);
            h.free(off).unwrap();
        }
        assert_consistent(&h);
        let s = stats(&h);
        assert_eq!((s.n_live, s.bytes_used), (0, 0));
        let whole = (s.arena_len - BLOCK_HEADER) as usize;
        h.free(h.alloc(whole, 16).expect("everything coalesces back"))
            .unwrap();
    }
}

#[test]
fn random_garbage_never_crashes_hangs_or_escapes_the_arena() {
    let mut rng = XorShift::new(42);
    let mut n_errors = 0u64;
    let mut n_ok = 0u64;
    for round in 0..300 {
        let mut h = heap(if round % 3 == 0 { 2048 } else { 32 << 10 });
        h.set_lock_timeout(Duration::from_millis(5));
        h.set_owner_check_after(Duration::from_millis(1));
        let mut offs: Vec<u64> = (0..20)
            .filter_map(|i| h.alloc(1 + (i * 97) % 3000, 16).ok())
            .collect();
        for off in offs.iter().step_by(3) {
            let _ = h.free(*off);
        }
        let words = h.region_len() as u64 / 8;
        // Scribble: random words, bit flips, runs of bytes, sometimes the lock word.
        for _ in 0..1 + rng.below(12) {
            match rng.below(4) {
                0 => {
                    let w = rng.below(words) * 8;
                    if w != H_LOCK {
                        poke(&h, w, rng.next());
                    }
                }
                1 => {
                    let w = rng.below(words) * 8;
                    if w != H_LOCK {
                        poke(&h, w, peek(&h, w) ^ (1 << rng.below(64)));
                    }
                }
                2 => {
                    let start = h.arena().start + rng.below(h.arena().end - h.arena().start - 64);
                    let bytes: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                    h.write(start, &bytes).unwrap();
                }
                _ => {
                    // Live owners are left out: waiting them out is tested on its own and is slow.
                    let values = [0, rng.next() as u32, dead_pid_cached(), LOCK_WAITERS];
                    h.region
                        .lock_word()
                        .word_store_for_test(values[rng.below(values.len() as u64) as usize]);
                }
            }
        }
        for _ in 0..60 {
            let outcome_ok = match rng.below(7) {
                0 | 1 => {
                    let size = 1 + rng.below(4000) as usize;
                    match h.alloc(size, 1 << rng.below(13)) {
                        Ok(off) => {
                            assert!(
                                off >= h.arena().start && off + size as u64 <= h.arena().end,
                                "allocation {off:#x}+{size} escapes the arena"
                            );
                            h.fill(off, size, 0xa5).unwrap();
                            offs.push(off);
                            true
                        }
                        Err(_) => false,
                    }
                }
                2 => {
                    let off = if offs.is_empty() || rng.below(4) == 0 {
                        rng.next() % (h.region_len() as u64 + 64)
                    } else {
                        offs.swap_remove(rng.below(offs.len() as u64) as usize)
                    };
                    h.free(off).is_ok()
                }
                3 => match offs.last() {
                    Some(&off) => {
                        let size = 1 + rng.below(6000) as usize;
                        match h.realloc(off, size, 16) {
                            Ok(new) => {
                                assert!(
                                    new >= h.arena().start && new + size as u64 <= h.arena().end
                                );
                                offs.pop();
                                offs.push(new);
                                true
                            }
                            Err(_) => false,
                        }
                    }
                    None => false,
                },
                4 => h.validate().is_ok(),
                5 => h.stats().is_ok(),
                _ => offs.last().is_some_and(|&off| h.usable_size(off).is_ok()),
            };
            if outcome_ok {
                n_ok += 1;
            } else {
                n_errors += 1;
            }
            if rng.below(2) == 0 {
                forget_corruption(&h);
            }
        }
    }
    // Both outcomes must occur, or the scribbling (or the heap) is not doing anything.
    assert!(n_ok > 100 && n_errors > 100, "ok {n_ok}, errors {n_errors}");
}

fn dead_pid_cached() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(dead_pid)
}

#[test]
fn threads_share_one_heap_without_overlap() {
    let h = heap(4 << 20);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let h = &h;
            s.spawn(move || {
                let mut rng = XorShift::new(100 + t);
                let mut live: Vec<(u64, usize, u64)> = Vec::new();
                for i in 0..5_000u64 {
                    if live.len() < 64 && rng.below(2) == 0 {
                        let limit = if rng.below(10) == 0 { 20_000 } else { 600 };
                        let size = 1 + rng.below(limit) as usize;
                        let id = (t << 32) | i;
                        let off = h.alloc(size, 16).expect("alloc");
                        fill_pattern(h, off, size, id);
                        live.push((off, size, id));
                    } else if let Some((off, size, id)) = live.pop() {
                        check_pattern(h, off, size, id);
                        h.free(off).expect("free");
                    }
                }
                for (off, size, id) in live {
                    check_pattern(h, off, size, id);
                    h.free(off).expect("free");
                }
            });
        }
    });
    assert_consistent(&h);
    let s = stats(&h);
    assert_eq!((s.n_live, s.bytes_used), (0, 0));
}

#[test]
fn heap_vec_operations() {
    let h = heap(256 << 10);
    let mut v: HeapVec<'_, u64> = HeapVec::new(&h).unwrap();
    assert_eq!(v.len().unwrap(), 0);
    assert!(v.is_empty().unwrap());
    for i in 0..100u64 {
        v.push(i * 3).unwrap();
    }
    v.extend_from_slice(&[7, 8, 9]).unwrap();
    assert_eq!(v.len().unwrap(), 103);
    assert!(v.capacity().unwrap() >= 103);
    assert_eq!(v.get(10).unwrap(), Some(30));
    assert_eq!(v.get(102).unwrap(), Some(9));
    assert_eq!(v.get(103).unwrap(), None);
    v.set(0, 1000).unwrap();
    assert_eq!(
        v.set(500, 1),
        Err(HeapVecAccessError::IndexOutOfBounds {
            index: 500,
            len: 103
        })
    );
    assert_eq!(v.pop().unwrap(), Some(9));
    let all = v.to_vec().unwrap();
    assert_eq!(all.len(), 102);
    assert_eq!(all[0], 1000);
    assert_eq!(all[99], 297);
    assert_eq!(
        v.iter().unwrap().map(|x| x as u128).sum::<u128>(),
        all.iter().map(|&x| x as u128).sum()
    );

    // Another handle opens it from the offset and sees the same elements.
    let w: HeapVec<'_, u64> = HeapVec::open(&h, v.offset()).unwrap();
    assert_eq!(w.to_vec().unwrap(), all);

    // Odd-sized elements and arrays.
    let mut bytes: HeapVec<'_, [u8; 3]> = HeapVec::with_capacity(&h, 1).unwrap();
    for i in 0..50u8 {
        bytes.push([i, i + 1, i + 2]).unwrap();
    }
    assert_eq!(bytes.get(49).unwrap(), Some([49, 50, 51]));
    bytes.clear().unwrap();
    assert_eq!(bytes.len().unwrap(), 0);
    assert!(bytes.capacity().unwrap() >= 50);
    bytes.free().unwrap();

    let off = v.offset();
    v.free().unwrap();
    assert!(matches!(
        HeapVec::<u64>::open(&h, off),
        Err(HeapVecOpenError::Lookup(
            HeapLookupError::AlreadyFree { .. }
        ))
    ));
    assert_consistent(&h);
}

#[test]
fn heap_vec_open_rejects_untrusted_offsets_and_headers() {
    let h = heap(64 << 10);
    let mut v: HeapVec<'_, u32> = HeapVec::with_capacity(&h, 10).unwrap();
    v.extend_from_slice(&[1, 2, 3]).unwrap();
    let off = v.offset();
    assert!(matches!(
        HeapVec::<u32>::open(&h, off + 16),
        Err(HeapVecOpenError::Lookup(
            HeapLookupError::NotAllocated { .. }
        ))
    ));
    assert!(matches!(
        HeapVec::<u32>::open(&h, 8),
        Err(HeapVecOpenError::Lookup(HeapLookupError::OutOfRange { .. }))
    ));
    // len > capacity.
    h.write(off, &20u64.to_ne_bytes()).unwrap();
    assert_eq!(
        HeapVec::<u32>::open(&h, off).unwrap_err(),
        HeapVecOpenError::BadHeader {
            len: 20,
            capacity: 10
        }
    );
    assert!(matches!(
        v.get(0),
        Err(HeapVecAccessError::BadHeader { .. })
    ));
    assert!(v.push(4).is_err());
    // A capacity larger than the allocation.
    h.write(off, &3u64.to_ne_bytes()).unwrap();
    h.write(off + 8, &1_000_000u64.to_ne_bytes()).unwrap();
    assert!(matches!(
        HeapVec::<u32>::open(&h, off),
        Err(HeapVecOpenError::BadHeader {
            capacity: 1_000_000,
            ..
        })
    ));
    h.write(off + 8, &10u64.to_ne_bytes()).unwrap();
    assert_eq!(
        HeapVec::<u32>::open(&h, off).unwrap().to_vec().unwrap(),
        [1, 2, 3]
    );
    assert_eq!(
        HeapVec::<[u8; 0]>::new(&h).unwrap_err(),
        HeapVecCreateError::ZeroSizedElement
    );
    assert_consistent(&h);
}

#[test]
fn error_messages_are_lowercase_without_trailing_period() {
    let c = HeapCorruption {
        offset: 64,
        kind: CorruptionKind::FreeLink,
    };
    let messages = [
        HeapAllocError::ZeroSize.to_string(),
        HeapAllocError::OutOfMemory { size: 1, align: 16 }.to_string(),
        HeapAllocError::Corrupt(c).to_string(),
        HeapFreeError::DoubleFree { offset: 32 }.to_string(),
        HeapFreeError::NotAllocated { offset: 32 }.to_string(),
        HeapReallocError::AlreadyFree { offset: 32 }.to_string(),
        HeapLookupError::OutOfRange { offset: 1 }.to_string(),
        HeapValidateError::Lock(HeapLockError::Timeout { owner: 9 }).to_string(),
        HeapStatsError::Lock(HeapLockError::Os(nix::errno::Errno::EINVAL)).to_string(),
        HeapInitError::TooSmall { len: 1 }.to_string(),
        HeapAttachError::BadMagic { found: 0 }.to_string(),
        HeapAccessError::OutOfRange { offset: 0, len: 1 }.to_string(),
        HeapVecAccessError::BadHeader {
            len: 2,
            capacity: 1,
        }
        .to_string(),
    ];
    for m in messages {
        assert!(m.chars().next().is_some_and(|c| c.is_lowercase()), "{m}");
        assert!(!m.ends_with('.'), "{m}");
    }
    for code in 0..20 {
        let kind = CorruptionKind::from_code(code);
        if kind != CorruptionKind::Unknown {
            assert_eq!(kind.code(), code);
        }
    }
}
