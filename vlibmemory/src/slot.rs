//! The two small ownership protocols of the transport, on single shared words, kept apart from
//! the shared-memory plumbing so that loom can check them with the very code the transport
//! runs:
//!
//! - **Message buffer ownership** (a ring slot's in-use word): the producer takes a slot only
//!   when it reads it free (`Acquire`), writes the message, marks it busy (`Release`) and
//!   publishes its offset through the queue; the consumer copies the message out and only then
//!   frees it (`Release`). The consumer's copy therefore happens before any rewrite of the slot.
//! - **Named-slot claiming** (a channel's state word): clients race with a compare-and-swap from
//!   free to claimed; exactly one wins; the server adopts claimed slots and, when their client
//!   is gone, frees them again after resetting the channel.

use vppinfra::sync::{AtomicU64, Ordering};

/// In-use word value of a free message buffer.
pub const SLOT_FREE: u64 = 0;
/// In-use word value of a buffer holding a message not yet consumed.
pub const SLOT_BUSY: u64 = 1;

/// True when the producer may reuse the buffer: the consumer freed it. `Acquire` pairs with the
/// consumer's [`free_buffer`], so its reads of the old message are over.
#[inline]
pub fn buffer_is_free(in_use: &AtomicU64) -> bool {
    in_use.load(Ordering::Acquire) == SLOT_FREE
}

/// Marks a written buffer as holding a message (before its offset is enqueued).
#[inline]
pub fn mark_buffer_busy(in_use: &AtomicU64) {
    in_use.store(SLOT_BUSY, Ordering::Release);
}

/// Gives a consumed buffer back to its producer (after the message was copied out).
#[inline]
pub fn free_buffer(in_use: &AtomicU64) {
    in_use.store(SLOT_FREE, Ordering::Release);
}

/// Named-slot state: nobody uses the channel.
pub const CHANNEL_FREE: u64 = 0;
/// Named-slot state: a client claimed the channel.
pub const CHANNEL_CLAIMED: u64 = 1;

/// Tries to claim a free named channel for process `pid`; true if this caller won it.
///
/// The pid is written after the claim, so the server may briefly see a claimed slot with pid 0;
/// it treats pid 0 as "unknown, alive".
pub fn claim_channel(state: &AtomicU64, pid_word: &AtomicU64, pid: u64) -> bool {
    if state
        .compare_exchange(
            CHANNEL_FREE,
            CHANNEL_CLAIMED,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return false;
    }
    pid_word.store(pid, Ordering::Release);
    true
}

/// True when a client has claimed the channel (server side).
pub fn channel_claimed(state: &AtomicU64) -> bool {
    state.load(Ordering::Acquire) == CHANNEL_CLAIMED
}

/// Frees a named channel for the next client (server side, after resetting it). `Release`: the
/// reset is visible to the client whose claim sees the free state.
pub fn release_channel(state: &AtomicU64, pid_word: &AtomicU64) {
    pid_word.store(0, Ordering::Relaxed);
    state.store(CHANNEL_FREE, Ordering::Release);
}

// The model reads and writes loom's `UnsafeCell` through raw pointers, which loom checks.
#[cfg(all(test, loom))]
#[allow(unsafe_code)]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// A ring of two buffers whose offsets travel through svm's queue: the producer rewrites a
    /// buffer only after the consumer has copied the previous message out of it.
    #[test]
    fn loom_buffer_ownership_hands_each_message_over_whole() {
        loom::model(|| {
            struct Ring {
                in_use: [AtomicU64; 2],
                payload: [UnsafeCell<u64>; 2],
            }
            // loom's UnsafeCell tracks every access and reports any that overlap.
            let ring = Arc::new(Ring {
                in_use: [AtomicU64::new(SLOT_FREE), AtomicU64::new(SLOT_FREE)],
                payload: [UnsafeCell::new(0), UnsafeCell::new(0)],
            });
            let geometry = svm::queue::QueueGeometry::new(2, 8).unwrap();
            let (mut tx, mut rx) = svm::queue::process_local_pair(geometry).unwrap();
            let r = ring.clone();
            let producer = thread::spawn(move || {
                let mut head = 0usize;
                for msg in 1..=3u64 {
                    // Wait for the head buffer to be free (a miss would go to another ring).
                    while !buffer_is_free(&r.in_use[head]) {
                        thread::yield_now();
                    }
                    r.payload[head].with_mut(|p| {
                        // The write loom checks against the consumer's read of the same cell.
                        unsafe_free_write(p, msg)
                    });
                    mark_buffer_busy(&r.in_use[head]);
                    let elem = (head as u64).to_ne_bytes();
                    while tx.try_send(&elem).is_err() {
                        thread::yield_now();
                    }
                    head = (head + 1) % 2;
                }
            });
            let mut got = Vec::new();
            while got.len() < 3 {
                let mut elem = [0u8; 8];
                if rx.try_recv(&mut elem).is_err() {
                    thread::yield_now();
                    continue;
                }
                let i = u64::from_ne_bytes(elem) as usize;
                got.push(ring.payload[i].with(unsafe_free_read));
                free_buffer(&ring.in_use[i]);
            }
            producer.join().unwrap();
            assert_eq!(got, [1, 2, 3]);
        });
    }

    /// Two clients race for one named channel while the server watches: exactly one wins, and
    /// the server sees the winner's pid once it sees the claim plus the pid.
    #[test]
    fn loom_named_channel_claim_has_one_winner() {
        loom::model(|| {
            let state = Arc::new(AtomicU64::new(CHANNEL_FREE));
            let pid = Arc::new(AtomicU64::new(0));
            let clients: Vec<_> = [11u64, 22]
                .into_iter()
                .map(|p| {
                    let (s, w) = (state.clone(), pid.clone());
                    thread::spawn(move || claim_channel(&s, &w, p))
                })
                .collect();
            let won: Vec<bool> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(won.iter().filter(|&&w| w).count(), 1);
            assert!(channel_claimed(&state));
            let winner = if won[0] { 11 } else { 22 };
            assert_eq!(pid.load(Ordering::Acquire), winner);
            release_channel(&state, &pid);
            assert!(
                claim_channel(&state, &pid, 33),
                "a released channel can be claimed again"
            );
        });
    }

    fn unsafe_free_write(p: *mut u64, v: u64) {
        // SAFETY: loom's `with_mut` hands out the cell's pointer and checks that no other access
        // overlaps this one; the model fails if the protocol lets one overlap.
        unsafe { p.write(v) }
    }

    fn unsafe_free_read(p: *const u64) -> u64 {
        // SAFETY: as above, for a shared read.
        unsafe { p.read() }
    }
}
