//! The one facade over `std` and `loom` synchronisation types.
//!
//! Code that loom must be able to check names its atomics, locks, cells and threads through this
//! module only; `clippy.toml` bans the `std` originals everywhere else. Under `--cfg loom` every
//! item here is loom's, so the same algorithm runs unchanged inside `loom::model`.
//!
//! Atomics are exported as type aliases rather than `pub use`, because clippy's
//! `disallowed-types` would otherwise flag every use that goes through the re-export.
#![allow(clippy::disallowed_types)]

#[cfg(not(loom))]
#[allow(missing_docs)] // Aliases of the std types; see their docs.
mod imp {
    pub type AtomicBool = std::sync::atomic::AtomicBool;
    pub type AtomicU8 = std::sync::atomic::AtomicU8;
    pub type AtomicU16 = std::sync::atomic::AtomicU16;
    pub type AtomicU32 = std::sync::atomic::AtomicU32;
    pub type AtomicU64 = std::sync::atomic::AtomicU64;
    pub type AtomicUsize = std::sync::atomic::AtomicUsize;
    pub type AtomicI32 = std::sync::atomic::AtomicI32;
    pub type AtomicI64 = std::sync::atomic::AtomicI64;
    pub type Mutex<T> = std::sync::Mutex<T>;
    pub type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;
    pub type Condvar = std::sync::Condvar;
    pub type Arc<T> = std::sync::Arc<T>;
    pub use std::sync::atomic::{Ordering, fence};
    pub use std::thread;

    /// `UnsafeCell` with loom's closure-based access API, so callers are written once.
    #[derive(Debug, Default)]
    #[repr(transparent)]
    pub struct UnsafeCell<T: ?Sized>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        pub const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        /// Consumes the cell and returns the value.
        pub fn into_inner(self) -> T {
            self.0.into_inner()
        }
    }

    impl<T: ?Sized> UnsafeCell<T> {
        /// Gives `f` a shared raw pointer to the contents.
        #[inline(always)]
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Gives `f` an exclusive raw pointer to the contents.
        #[inline(always)]
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// One step of a spin-wait: a CPU pause hint.
    #[inline(always)]
    pub fn spin_loop() {
        core::hint::spin_loop();
    }
}

#[cfg(loom)]
mod imp {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::atomic::{
        AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize,
        Ordering, fence,
    };
    pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    pub use loom::thread;

    /// One step of a spin-wait. Under loom it yields, so the model explores the other thread
    /// instead of exhausting its branch budget on a busy loop.
    #[inline(always)]
    pub fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub use imp::*;

/// Exponential spin backoff that yields under loom (crossbeam's `Backoff` would spin invisibly).
///
/// Each `snooze` spins `2^step` pause hints until the spin limit, then yields the thread.
#[derive(Debug, Default)]
pub struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_LIMIT: u32 = 6;
    const YIELD_LIMIT: u32 = 10;

    /// A fresh backoff.
    pub const fn new() -> Self {
        Self { step: 0 }
    }

    /// Forgets earlier waiting.
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// Busy-waits a little longer each call; yields the thread once spinning stops paying off.
    pub fn snooze(&mut self) {
        if self.step <= Self::SPIN_LIMIT {
            for _ in 0..(1u32 << self.step) {
                spin_loop();
            }
        } else {
            thread::yield_now();
        }
        if self.step <= Self::YIELD_LIMIT {
            self.step += 1;
        }
    }

    /// True once waiting has gone on long enough that blocking is the better choice.
    pub fn is_completed(&self) -> bool {
        self.step > Self::YIELD_LIMIT
    }
}
