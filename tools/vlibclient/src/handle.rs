//! What a `vlc_conn_t *` is, in safe Rust: a [`Connection`] plus the library's background
//! thread, which answers keepalive pings while the program is busy elsewhere.
//!
//! Two ways to receive, as VPP's client library has:
//! * **pull** (the default): [`Handle::read_with`] takes the next message, reading the socket
//!   directly in the caller's thread when nothing is queued, so a request/reply round trip has
//!   no thread hop. While nobody reads, the background thread wakes every
//!   [`HandleOptions::idle_poll`], drains what has arrived into a bounded queue and answers the
//!   pings among it. A program that stays silent for minutes keeps its registration;
//! * **callback**: after [`Handle::set_callback`], the background thread blocks on the
//!   connection and calls the callback with each message (VPP's rx pthread). Reads then fail
//!   with [`ReadError::CallbackMode`].
//!
//! Keepalive pings never reach either path (see [`crate::conn`]).
//!
//! [`Handle::pivot_to_shm`] moves the connection to shared memory while the background thread
//! is paused, so the thread never holds the receive half the pivot needs.
//!
//! When the pull queue holds [`HandleOptions::rx_queue_limit`] bytes the background thread
//! stops draining: the program is not consuming, and the server's flow control (and its
//! keepalive reaper) should see that.

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use vppinfra::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::conn::{ConnectError, ConnectOptions, Connection, PivotError, RecvError, Wait};

/// A receive callback: called on the library's thread with each message.
pub type RxCallback = Box<dyn Fn(&[u8]) + Send + Sync>;

/// Settings of a [`Handle`].
#[derive(Debug, Clone)]
pub struct HandleOptions {
    /// The connection's settings.
    pub connect: ConnectOptions,
    /// Bytes of messages the background thread may queue for a program that does not read.
    pub rx_queue_limit: usize,
    /// How often the background thread looks for pings while nobody reads.
    pub idle_poll: Duration,
    /// How long [`Handle::close`] waits for the server to confirm `sockclnt_delete`.
    pub close_timeout: Duration,
}

impl HandleOptions {
    /// Defaults: 64 MiB of queue, a look every 100 ms, 1 s to say goodbye.
    pub fn new(name: &str) -> Self {
        Self {
            connect: ConnectOptions::new(name),
            rx_queue_limit: 64 << 20,
            idle_poll: Duration::from_millis(100),
            close_timeout: Duration::from_secs(1),
        }
    }
}

/// Why [`Handle::read_with`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// A receive callback is installed; messages go there.
    CallbackMode,
    /// The connection failed (the server left, or broke the protocol).
    Recv(RecvError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CallbackMode => f.write_str("a receive callback is installed; read is disabled"),
            Self::Recv(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Recv(e) => Some(e),
            Self::CallbackMode => None,
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    callback: Option<Arc<RxCallback>>,
    stop: bool,
    /// The background thread is inside a callback.
    calling: bool,
    /// A pivot is under way: the background thread keeps off the connection.
    paused: bool,
    failed: Option<RecvError>,
    /// Messages the background thread moved to the queue or gave to the callback.
    background_messages: u64,
}

struct Shared {
    conn: Connection,
    state: Mutex<State>,
    /// Signalled on mode changes and stop, for the background thread's idle wait.
    changed: Condvar,
    opts: HandleOptions,
}

/// A connection with the library's background thread.
pub struct Handle {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("conn", &self.shared.conn)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Connects over the socket at `path` and starts the background thread.
    pub fn connect(path: &str, opts: HandleOptions) -> Result<Self, ConnectError> {
        let conn = Connection::connect(path, &opts.connect)?;
        Self::start(conn, opts)
    }

    /// Wraps a connected [`Connection`] (any transport) and starts the background thread.
    pub fn start(conn: Connection, opts: HandleOptions) -> Result<Self, ConnectError> {
        let shared = Arc::new(Shared {
            conn,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            opts,
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("vlibclient-rx".into())
            .spawn(move || background(&s))
            .map_err(|e| {
                ConnectError::Os(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
        Ok(Self {
            shared,
            worker: Some(worker),
        })
    }

    /// The connection (table, client index, sending).
    pub fn conn(&self) -> &Connection {
        &self.shared.conn
    }

    /// Messages the background thread has handled so far (queued or given to the callback).
    pub fn background_messages(&self) -> u64 {
        self.state().background_messages
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Moves the connection to shared memory ([`Connection::pivot_to_shm`]), keeping the
    /// background thread off the connection meanwhile. Not from inside the callback.
    #[doc(alias = "vl_socket_client_init_shm2")]
    pub fn pivot_to_shm(&self, segment_size: u64) -> Result<(), PivotError> {
        if self.on_background_thread() {
            return Err(PivotError::InsideCallback);
        }
        self.state().paused = true;
        self.shared.changed.notify_all();
        // The pivot interrupts whoever waits on the connection; paused, the background thread
        // then waits for the change instead of taking the receive half again.
        let r = self.shared.conn.pivot_to_shm(segment_size);
        self.state().paused = false;
        self.shared.changed.notify_all();
        r
    }

    /// Installs (or, with `None`, removes) the receive callback. Messages already queued go to
    /// the new callback first. Called from any thread but the callback's own, it returns once
    /// the previous callback is no longer running; it will not be called again.
    pub fn set_callback(&self, cb: Option<RxCallback>) {
        let mut st = self.state();
        st.callback = cb.map(Arc::new);
        self.shared.changed.notify_all();
        self.shared.conn.interrupt();
        if self.on_background_thread() {
            return;
        }
        while st.calling {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// True when called from the library's background thread (inside a callback).
    pub fn on_background_thread(&self) -> bool {
        self.worker
            .as_ref()
            .is_some_and(|w| w.thread().id() == std::thread::current().id())
    }

    /// Takes the next message and hands it to `f`, waiting as `wait` says. `Ok(None)`: the wait
    /// ended without one.
    pub fn read_with<T>(
        &self,
        wait: Wait,
        mut f: impl FnMut(&[u8]) -> T,
    ) -> Result<Option<T>, ReadError> {
        let deadline = match wait {
            Wait::No => Some(Instant::now()),
            Wait::For(d) => Some(Instant::now() + d),
            Wait::Forever => None,
        };
        loop {
            if let Some(r) = self.take_queued(&mut f)? {
                return Ok(Some(r));
            }
            let mut rx = self.shared.conn.lock_rx();
            // The background thread may have queued something while we waited for the lock;
            // it only queues while holding it, so this look is final.
            if let Some(r) = self.take_queued(&mut f)? {
                return Ok(Some(r));
            }
            let wait = match deadline {
                None => Wait::Forever,
                Some(d) => Wait::For(d.saturating_duration_since(Instant::now())),
            };
            match rx.recv_with(wait, &mut f) {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    self.state().failed.get_or_insert(e);
                    return Err(ReadError::Recv(e));
                }
            }
        }
    }

    fn take_queued<T>(&self, f: &mut impl FnMut(&[u8]) -> T) -> Result<Option<T>, ReadError> {
        let mut st = self.state();
        if st.callback.is_some() {
            return Err(ReadError::CallbackMode);
        }
        if let Some(m) = st.queue.pop_front() {
            st.queued_bytes -= m.len();
            drop(st);
            return Ok(Some(f(&m)));
        }
        match st.failed {
            Some(e) => Err(ReadError::Recv(e)),
            None => Ok(None),
        }
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<RecvError> {
        self.state().failed
    }

    /// Stops the background thread, says goodbye (`sockclnt_delete`) and closes. Returns
    /// whether the server confirmed.
    pub fn close(mut self) -> bool {
        self.stop_worker();
        self.shared.conn.close(self.shared.opts.close_timeout)
    }

    fn stop_worker(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.changed.notify_all();
        self.shared.conn.interrupt();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.stop_worker();
            self.shared.conn.shutdown();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The background thread: callback delivery, or idle draining in pull mode.
fn background(s: &Shared) {
    loop {
        let callback = {
            let mut st = lock(&s.state);
            loop {
                if st.stop || st.failed.is_some() {
                    return;
                }
                if !st.paused {
                    break;
                }
                st = s.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.callback.clone()
        };
        let outcome = match callback {
            Some(cb) => deliver(s, &cb),
            None => idle_drain(s),
        };
        if let Err(e) = outcome {
            lock(&s.state).failed.get_or_insert(e);
            return;
        }
    }
}

/// Callback mode: hands queued messages, then everything that arrives, to `cb`.
fn deliver(s: &Shared, cb: &Arc<RxCallback>) -> Result<(), RecvError> {
    let current = |st: &State| {
        !st.stop && !st.paused && st.callback.as_ref().is_some_and(|c| Arc::ptr_eq(c, cb))
    };
    let mut rx = s.conn.lock_rx();
    loop {
        let m = {
            let mut st = lock(&s.state);
            if !current(&st) {
                return Ok(());
            }
            match st.queue.pop_front() {
                Some(m) => {
                    st.queued_bytes -= m.len();
                    st.background_messages += 1;
                    st.calling = true;
                    m
                }
                None => break,
            }
        };
        call(s, cb, &m);
    }
    // Bounded waits, so a missed interrupt costs at most one slice.
    rx.recv_with(Wait::For(Duration::from_millis(500)), |m| {
        let mut st = lock(&s.state);
        if !current(&st) {
            // The mode changed while we waited: the message belongs to whoever reads next.
            st.queued_bytes += m.len();
            st.queue.push_back(m.to_vec());
            return;
        }
        st.calling = true;
        st.background_messages += 1;
        drop(st);
        call(s, cb, m);
    })?;
    Ok(())
}

/// Calls `cb` (marked as running by the caller, under the state lock, while it was current).
fn call(s: &Shared, cb: &RxCallback, m: &[u8]) {
    // A panicking Rust callback must not take the library's thread with it.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| cb(m)));
    lock(&s.state).calling = false;
    s.changed.notify_all();
}

/// Pull mode: sleeps for `idle_poll` (or until a change), then drains whatever has arrived if
/// no reader holds the connection.
fn idle_drain(s: &Shared) -> Result<(), RecvError> {
    {
        let st = lock(&s.state);
        if st.stop || st.paused || st.callback.is_some() {
            return Ok(());
        }
        let (st, _) = s
            .changed
            .wait_timeout(st, s.opts.idle_poll)
            .unwrap_or_else(|p| p.into_inner());
        if st.stop || st.paused || st.callback.is_some() {
            return Ok(());
        }
    }
    // A reader holding the lock is receiving, and answering pings, already.
    let Some(mut rx) = s.conn.try_lock_rx() else {
        return Ok(());
    };
    loop {
        if lock(&s.state).queued_bytes >= s.opts.rx_queue_limit {
            return Ok(());
        }
        match rx.recv_with(Wait::No, <[u8]>::to_vec)? {
            Some(m) => {
                let mut st = lock(&s.state);
                st.queued_bytes += m.len();
                st.queue.push_back(m);
                st.background_messages += 1;
            }
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeOptions, FakeServer};
    use vppinfra::sync::AtomicUsize;
    use vppinfra::sync::Ordering;

    fn opts(name: &str) -> HandleOptions {
        let mut o = HandleOptions::new(name);
        o.idle_poll = Duration::from_millis(10);
        o
    }

    #[test]
    fn a_silent_program_still_answers_pings() {
        let server = FakeServer::start_with(
            "handle_silent",
            FakeOptions {
                ping_every: Some(Duration::from_millis(20)),
            },
        );
        let h = Handle::connect(server.path().to_str().unwrap(), opts("silent")).unwrap();
        // The program reads nothing for a while; the background thread answers.
        let replies = server.wait_keepalive_replies(10, Duration::from_secs(10));
        assert!(replies.len() >= 10, "{replies:?}");
        assert_eq!(&server.pings_sent()[..replies.len()], &replies[..]);
        // Nothing was queued for the program: pings never surface.
        let r = h.read_with(Wait::No, <[u8]>::to_vec).unwrap();
        assert_eq!(r, None);
        assert!(h.conn().pings_answered() >= 10);
        assert!(h.close());
    }

    #[test]
    fn queued_and_direct_reads_keep_order() {
        let server = FakeServer::start("handle_order");
        let h = Handle::connect(server.path().to_str().unwrap(), opts("order")).unwrap();
        for i in 0..5u8 {
            server.send_raw(&[0, 77, i]);
        }
        // Let the background thread queue them.
        let queued =
            vppinfra::testing::wait_until(Duration::from_secs(5), || h.background_messages() >= 5);
        assert!(queued);
        for i in 5..8u8 {
            server.send_raw(&[0, 77, i]);
        }
        let got: Vec<u8> = (0..8)
            .map(|_| {
                h.read_with(Wait::For(Duration::from_secs(5)), |m| m[2])
                    .unwrap()
                    .unwrap()
            })
            .collect();
        assert_eq!(got, (0..8).collect::<Vec<u8>>());
    }

    #[test]
    fn callback_mode_delivers_and_disables_read() {
        let server = FakeServer::start("handle_cb");
        let h = Handle::connect(server.path().to_str().unwrap(), opts("cb")).unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        h.set_callback(Some(Box::new(move |m: &[u8]| {
            assert_eq!(&m[..2], &[0, 88]);
            s2.fetch_add(1, Ordering::SeqCst);
        })));
        assert_eq!(
            h.read_with(Wait::No, <[u8]>::to_vec),
            Err(ReadError::CallbackMode)
        );
        for i in 0..20u32 {
            server.send_keepalive(i + 1);
            server.send_raw(&[0, 88]);
        }
        assert!(vppinfra::testing::wait_until(
            Duration::from_secs(5),
            || { seen.load(Ordering::SeqCst) == 20 }
        ));
        assert_eq!(
            server
                .wait_keepalive_replies(20, Duration::from_secs(5))
                .len(),
            20
        );
        // Back to pull mode.
        h.set_callback(None);
        server.send_raw(&[0, 89]);
        let m = h
            .read_with(Wait::For(Duration::from_secs(5)), <[u8]>::to_vec)
            .unwrap();
        assert_eq!(m.as_deref(), Some(&[0u8, 89][..]));
    }

    #[test]
    fn replacing_a_callback_waits_until_it_has_returned() {
        let server = FakeServer::start("handle_cb_wait");
        let h = Handle::connect(server.path().to_str().unwrap(), opts("cbwait")).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let i2 = inside.clone();
        h.set_callback(Some(Box::new(move |_m: &[u8]| {
            i2.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
            i2.store(2, Ordering::SeqCst);
        })));
        server.send_raw(&[0, 88]);
        assert!(vppinfra::testing::wait_until(
            Duration::from_secs(5),
            || { inside.load(Ordering::SeqCst) == 1 }
        ));
        h.set_callback(None);
        // The old callback had finished by the time set_callback returned.
        assert_eq!(inside.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_queue_is_bounded() {
        let server = FakeServer::start("handle_bound");
        let mut o = opts("bound");
        o.rx_queue_limit = 10;
        let h = Handle::connect(server.path().to_str().unwrap(), o).unwrap();
        for _ in 0..10 {
            server.send_raw(&[0, 66, 1, 2, 3]);
        }
        assert!(vppinfra::testing::wait_until(
            Duration::from_secs(5),
            || { h.background_messages() >= 2 }
        ));
        std::thread::sleep(Duration::from_millis(100));
        // Two 5-byte messages reach the limit; the rest stay in the socket.
        assert_eq!(h.background_messages(), 2);
        let n = (0..10)
            .filter(|_| {
                h.read_with(Wait::For(Duration::from_secs(5)), |_| ())
                    .unwrap()
                    .is_some()
            })
            .count();
        assert_eq!(n, 10);
    }

    #[test]
    fn a_departed_server_is_reported() {
        let server = FakeServer::start("handle_gone");
        let h = Handle::connect(server.path().to_str().unwrap(), opts("gone")).unwrap();
        server.close_client();
        let r = h.read_with(Wait::For(Duration::from_secs(5)), |_| ());
        assert_eq!(r, Err(ReadError::Recv(RecvError::ServerGone)));
        assert_eq!(h.failure(), Some(RecvError::ServerGone));
    }
}
