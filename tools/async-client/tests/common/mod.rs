//! A tiny executor for the tests: `block_on` parks the thread until the future's waker
//! unparks it, and `join_all` polls many futures on one thread.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use vppinfra::sync::Arc;

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn waker() -> Waker {
    Waker::from(Arc::new(ThreadWaker(std::thread::current())))
}

/// Runs `f` to completion on this thread.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let w = waker();
    let mut cx = Context::from_waker(&w);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Runs `f` to completion, panicking after `limit` (a test must never hang).
pub fn block_on_for<F: Future>(limit: Duration, f: F) -> F::Output {
    let deadline = Instant::now() + limit;
    let mut f = std::pin::pin!(f);
    let w = waker();
    let mut cx = Context::from_waker(&w);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("future not ready within {limit:?}"));
        std::thread::park_timeout(left);
    }
}

/// Polls every future once per wake-up until all are ready; outputs in order.
pub fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..futs.len()).map(|_| None).collect();
    let w = waker();
    let mut cx = Context::from_waker(&w);
    loop {
        let mut pending = 0;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => out[i] = Some(v),
                    Poll::Pending => pending += 1,
                }
            }
        }
        if pending == 0 {
            return out.into_iter().map(Option::unwrap).collect();
        }
        std::thread::park();
    }
}

/// Polls `f` once.
pub fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    let w = waker();
    let mut cx = Context::from_waker(&w);
    Pin::new(f).poll(&mut cx)
}
