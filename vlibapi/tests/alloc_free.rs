//! The control_ping round trip (decode, dispatch, encode, send) allocates nothing once warm.
//!
//! # Safety
//!
//! The only unsafe code is a global allocator that counts allocations made on the measuring
//! thread and forwards every call, unchanged, to the system allocator.
#![cfg(not(loom))]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vlibapi::msgs::memclnt;
use vlibapi::{ApiBuilder, ClientIndex, Outbox, SendError};

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees are ours; the counting touches only const-initialised thread locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller guarantees `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Sink(usize);

impl Outbox for Sink {
    fn send(&mut self, _to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        self.0 += msg.len();
        Ok(())
    }
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        f(ClientIndex(1));
    }
}

#[test]
fn control_ping_round_trip_does_not_allocate() {
    let mut b = ApiBuilder::new();
    b.add_memclnt_handlers(1).unwrap();
    let mut d = b.build();
    let id = d.table().id_of::<memclnt::ControlPing>().unwrap();
    let ping = vlibapi::wire::to_vec(
        &memclnt::ControlPing {
            client_index: 1,
            context: 2,
        },
        id,
    )
    .unwrap();
    let mut out = Sink(0);
    d.dispatch(ClientIndex(1), &ping, &mut out).unwrap();

    COUNTING.with(|c| c.set(true));
    for _ in 0..1000 {
        d.dispatch(ClientIndex(1), &ping, &mut out).unwrap();
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.with(Cell::get), 0);
    assert_eq!(out.0, 1001 * 18);

    // The counter does see allocations: a get_api_json reply builds a string.
    let id = d.table().id_of::<memclnt::GetApiJson>().unwrap();
    let req = vlibapi::wire::to_vec(
        &memclnt::GetApiJson {
            client_index: 1,
            context: 3,
        },
        id,
    )
    .unwrap();
    COUNTING.with(|c| c.set(true));
    d.dispatch(ClientIndex(1), &req, &mut out).unwrap();
    COUNTING.with(|c| c.set(false));
    assert!(ALLOCS.with(Cell::get) > 0);
}
