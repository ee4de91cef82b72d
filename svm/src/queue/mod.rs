//! A bounded single-producer/single-consumer queue of fixed-size elements that lives in shared
//! memory and survives a hostile or dead peer.
//!
//! A queue is laid out in a [`SharedRegion`] (usually a [`Segment`](crate::segment::Segment)) by
//! [`init`], then each process attaches the end it plays: [`Producer::attach`] or
//! [`Consumer::attach`]. Elements are copied in and out; the shared memory is never borrowed.
//!
//! ```
//! use svm::queue::{self, Consumer, Producer, QueueGeometry};
//! use svm::region::SharedRegion;
//!
//! let geometry = QueueGeometry::new(64, 8).unwrap();
//! let region = SharedRegion::anonymous(geometry.footprint()).unwrap();
//! queue::init(&region, 0, geometry).unwrap();
//! let mut tx = Producer::attach(&region, 0, geometry).unwrap();
//! let mut rx = Consumer::attach(&region, 0, geometry).unwrap();
//! tx.try_send(&42u64.to_ne_bytes()).unwrap();
//! let mut out = [0u8; 8];
//! rx.try_recv(&mut out).unwrap();
//! assert_eq!(u64::from_ne_bytes(out), 42);
//! ```
//!
//! # Design
//!
//! - **Lock-free SPSC.** The producer writes a slot, then publishes `tail` with `Release`; the
//!   consumer reads `tail` with `Acquire`, copies the slot out, then publishes `head` with
//!   `Release`. No lock exists that a dead process could hold, and a producer killed at any
//!   instruction leaves either the element committed (tail published) or invisible.
//! - **Private indices.** Each handle keeps its own index privately and never re-reads it from
//!   shared memory; it reads the peer's index only to compute occupancy, and checks
//!   `tail - head <= capacity` (wrapping `u32`) every time, reporting [`QueueCorrupt`] otherwise.
//!   Geometry (capacity, element size, data offset) is fixed when the handle is made and held
//!   privately; the copy in shared memory is only checked at attach time.
//! - **Waiting.** A blocked call polls for a while, then parks on a futex in its own
//!   [`ParkWord`]; the peer wakes it only if that word is set, so
//!   back-to-back traffic makes no system call. See [`crate::notify`] for the protocol, the
//!   [`WaitPolicy`] and pluggable [`Notifier`]s (eventfd for a peer that sleeps in epoll).
//! - **Bounded waits.** Every wait on a word a peer controls ends at the caller's deadline.
//!
//! # Performance
//!
//! A handoff moves two cache lines between the cores (the index and the element's slot), where
//! a bare shared flag moves one; a consumer that polls touches the next slot right after reading
//! the index so that the two transfers overlap. Neither side issues a full fence on the fast
//! path (see [`crate::notify`]), so the ability to park costs nothing while traffic flows. The
//! batch calls publish one index per batch. `cargo bench -p svm --bench queue` measures all of
//! this against a raw ping-pong and a raw ring.
//!
//! # References
//!
//! Replaces VPP's `svm_queue_t` (`src/svm/queue.c`), which uses a process-shared robust mutex and
//! condition variable.

mod layout;
mod mem;

use std::fmt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use vppinfra::sync::{Ordering, spin_loop};

use crate::barrier;
use crate::notify::{FutexNotifier, Notifier, ParkWord, WaitPolicy};
#[cfg(not(loom))]
use crate::region::SharedRegion;
use layout::{QUEUE_LAYOUT_VERSION, QUEUE_MAGIC, QueueHeader};
use mem::QueueMem;

/// Alignment a queue's offset in its region must have.
pub const QUEUE_ALIGN: usize = 128;

/// Capacity and element size of a queue: fixed at creation, checked at attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueGeometry {
    capacity: u32,
    elem_size: u32,
}

impl QueueGeometry {
    /// Largest capacity (elements).
    pub const MAX_CAPACITY: u32 = 1 << 24;
    /// Largest element size (bytes).
    pub const MAX_ELEM_SIZE: u32 = 1 << 16;

    /// A geometry of `capacity` elements (a power of two) of `elem_size` bytes (a non-zero
    /// multiple of 8).
    pub fn new(capacity: u32, elem_size: u32) -> Result<Self, QueueGeometryError> {
        if !capacity.is_power_of_two() {
            return Err(QueueGeometryError::Capacity { capacity });
        }
        if capacity > Self::MAX_CAPACITY {
            return Err(QueueGeometryError::Capacity { capacity });
        }
        if elem_size == 0 || elem_size % 8 != 0 || elem_size > Self::MAX_ELEM_SIZE {
            return Err(QueueGeometryError::ElementSize { elem_size });
        }
        Ok(Self {
            capacity,
            elem_size,
        })
    }

    /// Number of elements the queue holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Bytes per element.
    pub fn elem_size(&self) -> usize {
        self.elem_size as usize
    }

    /// Bytes the queue occupies in its region: header plus slots.
    pub fn footprint(&self) -> usize {
        // Cannot overflow: both factors are bounded by the MAX_* constants.
        QueueHeader::SIZE + self.capacity as usize * self.elem_size as usize
    }

    /// Reads the geometry a queue at `offset` was created with, validating it. For an attacher
    /// that does not know the geometry in advance; the result is then held privately.
    #[cfg(not(loom))]
    pub fn read(region: &SharedRegion, offset: usize) -> Result<Self, QueueAttachError> {
        let header = header_view(region, offset)?;
        check_identity(header)?;
        let id = &header.identity.0;
        Self::new(
            id.capacity.load(Ordering::Relaxed),
            id.elem_size.load(Ordering::Relaxed),
        )
        .map_err(QueueAttachError::Geometry)
    }

    fn slot_words(&self) -> usize {
        self.elem_size as usize / 8
    }
}

/// Lays out a fresh, empty queue at `offset` in `region` (overwriting whatever was there).
///
/// Call it before any peer attaches; re-initialising a queue that has attached handles makes
/// their next operations report [`QueueCorrupt`] or see stale elements.
#[cfg(not(loom))]
#[doc(alias = "svm_queue_init")]
pub fn init(
    region: &SharedRegion,
    offset: usize,
    geometry: QueueGeometry,
) -> Result<(), QueueInitError> {
    if offset % QUEUE_ALIGN != 0 {
        return Err(QueueInitError::Misaligned { offset });
    }
    if !region.contains(offset, geometry.footprint()) {
        return Err(QueueInitError::OutOfBounds {
            offset,
            footprint: geometry.footprint(),
            region_len: region.len(),
        });
    }
    let mem = QueueMem::new(region, offset, geometry).ok_or(QueueInitError::OutOfBounds {
        offset,
        footprint: geometry.footprint(),
        region_len: region.len(),
    })?;
    init_header(mem.header(), geometry);
    Ok(())
}

fn init_header(header: &QueueHeader, geometry: QueueGeometry) {
    let id = &header.identity.0;
    // Hide the queue from attachers while it is rewritten; the magic goes last, with Release.
    id.magic.store(0, Ordering::Relaxed);
    id.version.store(QUEUE_LAYOUT_VERSION, Ordering::Relaxed);
    id.capacity.store(geometry.capacity, Ordering::Relaxed);
    id.elem_size.store(geometry.elem_size, Ordering::Relaxed);
    id.data_offset
        .store(QueueHeader::SIZE as u32, Ordering::Relaxed);
    id.producer_pid.store(0, Ordering::Relaxed);
    id.consumer_pid.store(0, Ordering::Relaxed);
    header.tail.0.store(0, Ordering::Relaxed);
    header.head.0.store(0, Ordering::Relaxed);
    header.producer_parked.0.clear();
    header.consumer_parked.0.clear();
    id.magic.store(QUEUE_MAGIC, Ordering::Release);
}

/// A process-local queue and both its ends, for threads of one process (and for loom models,
/// where shared memory cannot be used).
pub fn process_local_pair(geometry: QueueGeometry) -> Result<(Producer, Consumer), QueueInitError> {
    #[cfg(not(loom))]
    {
        let region = SharedRegion::anonymous(geometry.footprint()).map_err(QueueInitError::Os)?;
        init(&region, 0, geometry)?;
        let tx = Producer::attach(&region, 0, geometry).map_err(QueueInitError::Attach)?;
        let rx = Consumer::attach(&region, 0, geometry).map_err(QueueInitError::Attach)?;
        Ok((tx, rx))
    }
    #[cfg(loom)]
    {
        let mem = QueueMem::local(geometry);
        init_header(mem.header(), geometry);
        let rx_mem = mem.share();
        let tx = Producer::from_mem(mem, geometry).map_err(QueueInitError::Attach)?;
        let rx = Consumer::from_mem(rx_mem, geometry).map_err(QueueInitError::Attach)?;
        Ok((tx, rx))
    }
}

#[cfg(not(loom))]
fn header_view(region: &SharedRegion, offset: usize) -> Result<&QueueHeader, QueueAttachError> {
    if offset % QUEUE_ALIGN != 0 {
        return Err(QueueAttachError::Misaligned { offset });
    }
    region
        .view::<QueueHeader>(offset)
        .ok_or(QueueAttachError::OutOfBounds {
            offset,
            footprint: QueueHeader::SIZE,
            region_len: region.len(),
        })
}

fn check_identity(header: &QueueHeader) -> Result<(), QueueAttachError> {
    let id = &header.identity.0;
    let magic = id.magic.load(Ordering::Acquire);
    if magic != QUEUE_MAGIC {
        return Err(QueueAttachError::BadMagic { found: magic });
    }
    let version = id.version.load(Ordering::Relaxed);
    if version != QUEUE_LAYOUT_VERSION {
        return Err(QueueAttachError::BadVersion { found: version });
    }
    let data_offset = id.data_offset.load(Ordering::Relaxed);
    if data_offset as usize != QueueHeader::SIZE {
        return Err(QueueAttachError::BadLayout { data_offset });
    }
    Ok(())
}

/// Validates the shared identity against the geometry the caller expects, and returns the
/// queue's current (tail, head), checked for consistency.
fn check_attach(
    header: &QueueHeader,
    geometry: QueueGeometry,
) -> Result<(u32, u32), QueueAttachError> {
    check_identity(header)?;
    let id = &header.identity.0;
    let found = (
        id.capacity.load(Ordering::Relaxed),
        id.elem_size.load(Ordering::Relaxed),
    );
    if found != (geometry.capacity, geometry.elem_size) {
        return Err(QueueAttachError::GeometryMismatch {
            expected: geometry,
            found_capacity: found.0,
            found_elem_size: found.1,
        });
    }
    let tail = header.tail.0.load(Ordering::Acquire);
    let head = header.head.0.load(Ordering::Acquire);
    if tail.wrapping_sub(head) > geometry.capacity {
        return Err(QueueAttachError::Corrupt(QueueCorrupt {
            head,
            tail,
            capacity: geometry.capacity,
        }));
    }
    Ok((tail, head))
}

/// When a blocking call gives up.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// Do not wait at all.
    Now,
    /// Wait as long as it takes.
    Never,
    /// Wait until this instant.
    At(Instant),
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Never, Self::At)
    }
}

/// What a blocked call does next.
enum Next {
    /// Poll again.
    Retry,
    /// Park, for at most this long (`None`: no limit).
    Park(Option<Duration>),
}

/// Deadline checks while polling happen once per this many polls: reading the clock costs
/// about as much as a poll.
const POLLS_PER_CLOCK_READ: u32 = 64;

/// How many times its usual spin budget a side polls before parking when it has just woken its
/// peer: the peer's answer cannot come sooner than a wake-up latency (tens of microseconds),
/// and parking meanwhile would make the two sides take turns sleeping.
const WAKE_GRACE_FACTOR: u32 = 8;

/// The spin-then-park schedule of one blocking call.
struct Waiter {
    policy: WaitPolicy,
    deadline: Deadline,
    polls: u32,
    /// This side woke its peer since it last waited: poll longer before parking.
    grace: bool,
}

/// The caller's deadline passed.
struct TimedOut;

impl Waiter {
    fn new(policy: WaitPolicy, deadline: Deadline, grace: bool) -> Self {
        Self {
            policy,
            deadline,
            polls: 0,
            grace,
        }
    }

    fn next(&mut self) -> Result<Next, TimedOut> {
        let park = match self.policy {
            WaitPolicy::Poll => false,
            WaitPolicy::SpinThenPark { spins } => {
                let budget = if self.grace {
                    spins.saturating_mul(WAKE_GRACE_FACTOR)
                } else {
                    spins
                };
                self.polls >= budget
            }
        };
        if park {
            return Ok(Next::Park(self.remaining()?));
        }
        self.polls = self.polls.wrapping_add(1);
        if self.polls % POLLS_PER_CLOCK_READ == 0 {
            self.remaining()?;
        }
        spin_loop();
        Ok(Next::Retry)
    }

    fn remaining(&self) -> Result<Option<Duration>, TimedOut> {
        match self.deadline {
            Deadline::Now => Err(TimedOut),
            Deadline::Never => Ok(None),
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(TimedOut)
                } else {
                    Ok(Some(left))
                }
            }
        }
    }
}

/// Announces on `own` that this side sleeps, then re-checks `still_blocked`; clears the
/// announcement if the wait is over or the check failed. Returns `Some(nap)` to sleep (for at
/// most `nap` when the heavy barrier failed and wakes may be missed), `None` not to.
fn announce_park(
    own: &ParkWord,
    still_blocked: impl FnOnce() -> Result<bool, QueueCorrupt>,
) -> Result<Option<Option<Duration>>, QueueCorrupt> {
    own.announce();
    // Pairs with the barrier in `wake_peer`: either our re-check below sees the peer's new
    // index, or the peer sees our announcement.
    let reliable = barrier::heavy();
    match still_blocked() {
        Ok(true) => Ok(Some(if reliable { None } else { Some(UNRELIABLE_NAP) })),
        Ok(false) => {
            own.clear();
            Ok(None)
        }
        Err(e) => {
            own.clear();
            Err(e)
        }
    }
}

/// [`Consumer::prepare_park`] for many queues at once, with one store-load barrier for all of
/// them instead of one each (the barrier is a system call that interrupts every CPU).
///
/// Returns `Ok(Some(reliable))` when every queue is still empty: sleep until a notifier fires
/// (or, if `reliable` is false, for at most a millisecond), then call
/// [`Consumer::finish_park`] on each. Returns `Ok(None)` when some queue has elements (nothing
/// stays announced), and the first corruption found as an error (nothing stays announced).
#[cfg(not(loom))]
pub fn prepare_park_all(consumers: &mut [&mut Consumer]) -> Result<Option<bool>, QueueCorrupt> {
    for c in consumers.iter() {
        c.mem.header().consumer_parked.0.announce();
    }
    let reliable = barrier::heavy();
    let mut outcome = Ok(Some(reliable));
    for c in consumers.iter_mut() {
        match c.still_empty() {
            Ok(true) => {}
            Ok(false) => {
                outcome = Ok(None);
                break;
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if !matches!(outcome, Ok(Some(_))) {
        for c in consumers.iter_mut() {
            c.finish_park();
        }
    }
    outcome
}

/// Longest sleep when a peer's wake could be missed (see [`barrier`]).
const UNRELIABLE_NAP: Duration = Duration::from_millis(1);

/// After publishing an index: wakes the peer if it announced that it sleeps; returns whether
/// it did.
#[inline]
fn wake_peer(notifier: &Option<Box<dyn Notifier>>, peer: &ParkWord) -> bool {
    if let Some(notifier) = notifier {
        // Pairs with the barrier in `announce_park`.
        barrier::light();
        if peer.take_parked() {
            notifier.notify(peer);
            return true;
        }
    }
    false
}

/// Sleeps on `own` (announced), for at most `timeout`, then clears the announcement.
fn sleep_parked(own: &ParkWord, timeout: Option<Duration>) -> Result<(), Errno> {
    let outcome = own.wait(1, timeout);
    own.clear();
    outcome.map(drop)
}

/// The producing end of a queue. Not `Clone`: one producer per queue.
pub struct Producer {
    mem: QueueMem,
    capacity: u32,
    elem_size: usize,
    /// Next index to fill: private, never re-read from shared memory.
    tail: u32,
    /// Last `head` read from shared memory (validated when read).
    head_cache: u32,
    wait: WaitPolicy,
    notifier: Option<Box<dyn Notifier>>,
    /// Woke the consumer since the last wait (see `WAKE_GRACE_FACTOR`).
    woke_peer: bool,
}

impl Producer {
    /// Attaches the producing end of the queue at `offset` in `region`, which must have been
    /// created with `geometry`.
    #[cfg(not(loom))]
    pub fn attach(
        region: &SharedRegion,
        offset: usize,
        geometry: QueueGeometry,
    ) -> Result<Self, QueueAttachError> {
        header_view(region, offset)?;
        let mem = QueueMem::new(region, offset, geometry).ok_or(QueueAttachError::OutOfBounds {
            offset,
            footprint: geometry.footprint(),
            region_len: region.len(),
        })?;
        Self::from_mem(mem, geometry)
    }

    fn from_mem(mem: QueueMem, geometry: QueueGeometry) -> Result<Self, QueueAttachError> {
        let (tail, head) = check_attach(mem.header(), geometry)?;
        barrier::prepare();
        mem.header()
            .identity
            .0
            .producer_pid
            .store(std::process::id(), Ordering::Relaxed);
        Ok(Self {
            mem,
            capacity: geometry.capacity,
            elem_size: geometry.elem_size(),
            tail,
            head_cache: head,
            wait: WaitPolicy::default(),
            notifier: Some(Box::new(FutexNotifier)),
            woke_peer: false,
        })
    }

    /// The geometry this handle trusts.
    pub fn geometry(&self) -> QueueGeometry {
        QueueGeometry {
            capacity: self.capacity,
            elem_size: self.elem_size as u32,
        }
    }

    /// How blocking sends wait for space.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.wait = policy;
    }

    /// How this producer wakes a parked consumer: `None` when the consumer only ever polls
    /// (saves a fence per send); the default is [`FutexNotifier`].
    pub fn set_notifier(&mut self, notifier: Option<Box<dyn Notifier>>) {
        self.notifier = notifier;
    }

    /// Enqueues one element (exactly `elem_size` bytes) if there is room.
    #[doc(alias = "svm_queue_add")]
    pub fn try_send(&mut self, elem: &[u8]) -> Result<(), QueueSendError> {
        self.check_elem(elem.len())?;
        self.send_inner(elem, 1, Deadline::Now).map(drop)
    }

    /// Enqueues one element, waiting for room as long as it takes.
    pub fn send(&mut self, elem: &[u8]) -> Result<(), QueueSendError> {
        self.check_elem(elem.len())?;
        self.send_inner(elem, 1, Deadline::Never).map(drop)
    }

    /// Enqueues one element, waiting for room at most `timeout`.
    pub fn send_timeout(&mut self, elem: &[u8], timeout: Duration) -> Result<(), QueueSendError> {
        self.check_elem(elem.len())?;
        self.send_inner(elem, 1, Deadline::after(timeout)).map(drop)
    }

    /// Enqueues as many of `elems` (a whole number of elements) as fit now; returns how many
    /// (possibly 0). One index publication and at most one wake for the whole batch.
    pub fn try_send_batch(&mut self, elems: &[u8]) -> Result<usize, QueueSendError> {
        let n = self.check_batch(elems.len())?;
        match self.send_inner(elems, n, Deadline::Now) {
            Err(QueueSendError::Full) => Ok(0),
            other => other,
        }
    }

    /// Waits until at least one element fits, then enqueues as many of `elems` as fit; returns
    /// how many.
    pub fn send_batch(&mut self, elems: &[u8]) -> Result<usize, QueueSendError> {
        let n = self.check_batch(elems.len())?;
        self.send_inner(elems, n, Deadline::Never)
    }

    /// Like [`Producer::send_batch`], waiting at most `timeout`.
    pub fn send_batch_timeout(
        &mut self,
        elems: &[u8],
        timeout: Duration,
    ) -> Result<usize, QueueSendError> {
        let n = self.check_batch(elems.len())?;
        self.send_inner(elems, n, Deadline::after(timeout))
    }

    /// Elements in the queue now, from this producer's view.
    pub fn occupancy(&mut self) -> Result<u32, QueueCorrupt> {
        let free = self.refresh_free()?;
        Ok(self.capacity - free)
    }

    /// For a producer that sleeps elsewhere (epoll) while the queue is full: announces that it
    /// sleeps and returns whether the queue is still full. If it returns `true`, sleep until the
    /// consumer's notifier fires, then call [`Producer::finish_park`]; if `false`, send now.
    /// (If [`reliable_wakeups`](crate::notify::reliable_wakeups) is false, sleep briefly.)
    pub fn prepare_park(&mut self) -> Result<bool, QueueCorrupt> {
        Ok(self.announce()?.is_some())
    }

    fn announce(&mut self) -> Result<Option<Option<Duration>>, QueueCorrupt> {
        let header = self.mem.header();
        let own = &header.producer_parked.0;
        let (tail, capacity) = (self.tail, self.capacity);
        let head_cache = &mut self.head_cache;
        announce_park(own, || {
            let head = header.head.0.load(Ordering::Acquire);
            let used = checked_occupancy(tail, head, capacity)?;
            *head_cache = head;
            Ok(used == capacity)
        })
    }

    /// Ends a sleep begun with [`Producer::prepare_park`].
    pub fn finish_park(&mut self) {
        self.mem.header().producer_parked.0.clear();
    }

    fn check_elem(&self, len: usize) -> Result<(), QueueSendError> {
        if len == self.elem_size {
            Ok(())
        } else {
            Err(QueueSendError::ElementSize {
                expected: self.elem_size,
                found: len,
            })
        }
    }

    /// The number of elements in a batch of `len` bytes (saturated to `u32::MAX`).
    fn check_batch(&self, len: usize) -> Result<u32, QueueSendError> {
        if len % self.elem_size == 0 {
            Ok(u32::try_from(len / self.elem_size).unwrap_or(u32::MAX))
        } else {
            Err(QueueSendError::ElementSize {
                expected: self.elem_size,
                found: len,
            })
        }
    }

    /// Free slots, re-reading `head` only when the cached value shows fewer than `want`.
    #[inline]
    fn free_slots(&mut self, want: u32) -> Result<u32, QueueCorrupt> {
        let free = self.capacity - self.tail.wrapping_sub(self.head_cache);
        if free >= want {
            return Ok(free);
        }
        self.refresh_free()
    }

    fn refresh_free(&mut self) -> Result<u32, QueueCorrupt> {
        // Acquire: the consumer finished copying a slot out before it published the index that
        // frees it, so our next write to that slot cannot overtake its read.
        let head = self.mem.header().head.0.load(Ordering::Acquire);
        let used = checked_occupancy(self.tail, head, self.capacity)?;
        self.head_cache = head;
        Ok(self.capacity - used)
    }

    /// Sends up to `want` elements from `elems` (which holds at least `want` of them).
    #[inline]
    fn send_inner(
        &mut self,
        elems: &[u8],
        want: u32,
        deadline: Deadline,
    ) -> Result<usize, QueueSendError> {
        if want == 0 {
            return Ok(0);
        }
        let free = self.free_slots(want)?;
        if free > 0 {
            let n = want.min(free);
            self.publish(elems, n);
            return Ok(n as usize);
        }
        if matches!(deadline, Deadline::Now) {
            return Err(QueueSendError::Full);
        }
        self.send_wait(elems, want, deadline)
    }

    /// The slow path of a blocking send: the queue was full.
    #[cold]
    #[inline(never)]
    fn send_wait(
        &mut self,
        elems: &[u8],
        want: u32,
        deadline: Deadline,
    ) -> Result<usize, QueueSendError> {
        let mut waiter = Waiter::new(self.wait, deadline, self.woke_peer);
        loop {
            match waiter.next().map_err(|TimedOut| QueueSendError::Timeout)? {
                Next::Retry => {}
                Next::Park(timeout) => {
                    self.woke_peer = false;
                    if let Some(nap) = self.announce()? {
                        let timeout = match (timeout, nap) {
                            (Some(t), Some(n)) => Some(t.min(n)),
                            (t, n) => t.or(n),
                        };
                        sleep_parked(&self.mem.header().producer_parked.0, timeout)
                            .map_err(QueueSendError::Os)?;
                    }
                }
            }
            let free = self.free_slots(want)?;
            if free > 0 {
                self.woke_peer = false;
                let n = want.min(free);
                self.publish(elems, n);
                return Ok(n as usize);
            }
        }
    }

    #[inline]
    fn publish(&mut self, elems: &[u8], n: u32) {
        let size = self.elem_size;
        for i in 0..n {
            let start = i as usize * size;
            self.mem
                .write_slot(self.tail.wrapping_add(i), &elems[start..start + size]);
        }
        self.tail = self.tail.wrapping_add(n);
        let header = self.mem.header();
        // Release: the slot writes above become visible no later than the index.
        header.tail.0.store(self.tail, Ordering::Release);
        if wake_peer(&self.notifier, &header.consumer_parked.0) {
            self.woke_peer = true;
        }
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("geometry", &self.geometry())
            .field("tail", &self.tail)
            .field("head_cache", &self.head_cache)
            .field("wait", &self.wait)
            .field("notifier", &self.notifier)
            .finish()
    }
}

/// The consuming end of a queue. Not `Clone`: one consumer per queue.
pub struct Consumer {
    mem: QueueMem,
    capacity: u32,
    elem_size: usize,
    /// Next index to read: private, never re-read from shared memory.
    head: u32,
    /// Last `tail` read from shared memory (validated when read).
    tail_cache: u32,
    wait: WaitPolicy,
    notifier: Option<Box<dyn Notifier>>,
    /// Woke the producer since the last wait (see `WAKE_GRACE_FACTOR`).
    woke_peer: bool,
}

impl Consumer {
    /// Attaches the consuming end of the queue at `offset` in `region`, which must have been
    /// created with `geometry`.
    #[cfg(not(loom))]
    pub fn attach(
        region: &SharedRegion,
        offset: usize,
        geometry: QueueGeometry,
    ) -> Result<Self, QueueAttachError> {
        header_view(region, offset)?;
        let mem = QueueMem::new(region, offset, geometry).ok_or(QueueAttachError::OutOfBounds {
            offset,
            footprint: geometry.footprint(),
            region_len: region.len(),
        })?;
        Self::from_mem(mem, geometry)
    }

    fn from_mem(mem: QueueMem, geometry: QueueGeometry) -> Result<Self, QueueAttachError> {
        let (tail, head) = check_attach(mem.header(), geometry)?;
        barrier::prepare();
        mem.header()
            .identity
            .0
            .consumer_pid
            .store(std::process::id(), Ordering::Relaxed);
        Ok(Self {
            mem,
            capacity: geometry.capacity,
            elem_size: geometry.elem_size(),
            head,
            tail_cache: tail,
            wait: WaitPolicy::default(),
            notifier: Some(Box::new(FutexNotifier)),
            woke_peer: false,
        })
    }

    /// The geometry this handle trusts.
    pub fn geometry(&self) -> QueueGeometry {
        QueueGeometry {
            capacity: self.capacity,
            elem_size: self.elem_size as u32,
        }
    }

    /// How blocking receives wait for elements.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.wait = policy;
    }

    /// How this consumer wakes a producer parked on a full queue: `None` when the producer only
    /// ever polls (saves a fence per receive); the default is [`FutexNotifier`].
    pub fn set_notifier(&mut self, notifier: Option<Box<dyn Notifier>>) {
        self.notifier = notifier;
    }

    /// Dequeues one element into `out` (exactly `elem_size` bytes) if there is one.
    #[doc(alias = "svm_queue_sub")]
    #[doc(alias = "svm_queue_sub2")]
    pub fn try_recv(&mut self, out: &mut [u8]) -> Result<(), QueueRecvError> {
        self.check_elem(out.len())?;
        self.recv_inner(out, 1, Deadline::Now).map(drop)
    }

    /// Dequeues one element, waiting for one as long as it takes.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<(), QueueRecvError> {
        self.check_elem(out.len())?;
        self.recv_inner(out, 1, Deadline::Never).map(drop)
    }

    /// Dequeues one element, waiting at most `timeout`.
    pub fn recv_timeout(
        &mut self,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<(), QueueRecvError> {
        self.check_elem(out.len())?;
        self.recv_inner(out, 1, Deadline::after(timeout)).map(drop)
    }

    /// Dequeues as many elements as are available and fit in `out` (whole elements); returns
    /// how many (possibly 0). One index publication and at most one wake for the whole batch.
    pub fn try_recv_batch(&mut self, out: &mut [u8]) -> Result<usize, QueueRecvError> {
        let n = self.check_batch(out.len())?;
        match self.recv_inner(out, n, Deadline::Now) {
            Err(QueueRecvError::Empty) => Ok(0),
            other => other,
        }
    }

    /// Waits until at least one element is available, then dequeues as many as fit in `out`.
    pub fn recv_batch(&mut self, out: &mut [u8]) -> Result<usize, QueueRecvError> {
        let n = self.check_batch(out.len())?;
        self.recv_inner(out, n, Deadline::Never)
    }

    /// Like [`Consumer::recv_batch`], waiting at most `timeout`.
    pub fn recv_batch_timeout(
        &mut self,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, QueueRecvError> {
        let n = self.check_batch(out.len())?;
        self.recv_inner(out, n, Deadline::after(timeout))
    }

    /// Elements in the queue now, from this consumer's view.
    pub fn occupancy(&mut self) -> Result<u32, QueueCorrupt> {
        self.refresh_available()
    }

    /// For a consumer that sleeps elsewhere (epoll) while the queue is empty: announces that it
    /// sleeps and returns whether the queue is still empty. If it returns `true`, sleep until
    /// the producer's notifier fires (for example an [`EventFdNotifier`](crate::notify::EventFdNotifier)),
    /// then call [`Consumer::finish_park`]; if `false`, receive now. (If
    /// [`reliable_wakeups`](crate::notify::reliable_wakeups) is false, sleep briefly.)
    pub fn prepare_park(&mut self) -> Result<bool, QueueCorrupt> {
        Ok(self.announce()?.is_some())
    }

    fn announce(&mut self) -> Result<Option<Option<Duration>>, QueueCorrupt> {
        let header = self.mem.header();
        let own = &header.consumer_parked.0;
        let (head, capacity) = (self.head, self.capacity);
        let tail_cache = &mut self.tail_cache;
        announce_park(own, || {
            let tail = header.tail.0.load(Ordering::Acquire);
            let available = checked_occupancy(tail, head, capacity)?;
            *tail_cache = tail;
            Ok(available == 0)
        })
    }

    /// Ends a sleep begun with [`Consumer::prepare_park`] or [`prepare_park_all`].
    pub fn finish_park(&mut self) {
        self.mem.header().consumer_parked.0.clear();
    }

    /// Re-reads the producer's index after an announcement: true when the queue is empty.
    #[cfg(not(loom))]
    fn still_empty(&mut self) -> Result<bool, QueueCorrupt> {
        let tail = self.mem.header().tail.0.load(Ordering::Acquire);
        let available = checked_occupancy(tail, self.head, self.capacity)?;
        self.tail_cache = tail;
        Ok(available == 0)
    }

    fn check_elem(&self, len: usize) -> Result<(), QueueRecvError> {
        if len == self.elem_size {
            Ok(())
        } else {
            Err(QueueRecvError::ElementSize {
                expected: self.elem_size,
                found: len,
            })
        }
    }

    /// The number of whole elements a buffer of `len` bytes holds (saturated to `u32::MAX`).
    fn check_batch(&self, len: usize) -> Result<u32, QueueRecvError> {
        if len >= self.elem_size {
            Ok(u32::try_from(len / self.elem_size).unwrap_or(u32::MAX))
        } else {
            Err(QueueRecvError::ElementSize {
                expected: self.elem_size,
                found: len,
            })
        }
    }

    /// Available elements, re-reading `tail` only when the cached value shows fewer than `want`.
    #[inline]
    fn available(&mut self, want: u32) -> Result<u32, QueueCorrupt> {
        let available = self.tail_cache.wrapping_sub(self.head);
        if available >= want {
            return Ok(available);
        }
        self.refresh_available()
    }

    fn refresh_available(&mut self) -> Result<u32, QueueCorrupt> {
        // Acquire: pairs with the producer's Release of `tail`, so the slots below it are
        // completely written before we copy them.
        let tail = self.mem.header().tail.0.load(Ordering::Acquire);
        let available = checked_occupancy(tail, self.head, self.capacity)?;
        self.tail_cache = tail;
        Ok(available)
    }

    /// Receives up to `want` elements into `out` (which has room for at least `want`).
    #[inline]
    fn recv_inner(
        &mut self,
        out: &mut [u8],
        want: u32,
        deadline: Deadline,
    ) -> Result<usize, QueueRecvError> {
        let available = self.available(want)?;
        if available > 0 {
            let n = want.min(available);
            self.consume(out, n);
            return Ok(n as usize);
        }
        if matches!(deadline, Deadline::Now) {
            return Err(QueueRecvError::Empty);
        }
        self.recv_wait(out, want, deadline)
    }

    /// The slow path of a blocking receive: the queue was empty.
    #[cold]
    #[inline(never)]
    fn recv_wait(
        &mut self,
        out: &mut [u8],
        want: u32,
        deadline: Deadline,
    ) -> Result<usize, QueueRecvError> {
        let mut waiter = Waiter::new(self.wait, deadline, self.woke_peer);
        loop {
            match waiter.next().map_err(|TimedOut| QueueRecvError::Timeout)? {
                Next::Retry => {}
                Next::Park(timeout) => {
                    self.woke_peer = false;
                    if let Some(nap) = self.announce()? {
                        let timeout = match (timeout, nap) {
                            (Some(t), Some(n)) => Some(t.min(n)),
                            (t, n) => t.or(n),
                        };
                        sleep_parked(&self.mem.header().consumer_parked.0, timeout)
                            .map_err(QueueRecvError::Os)?;
                    }
                }
            }
            let available = self.available(want)?;
            // Right after reading `tail`, touch the slot the next element will occupy, so that
            // when the element arrives its line is requested together with `tail` rather than
            // after it (a prefetch: the value is discarded).
            self.mem.touch_slot(self.head);
            if available > 0 {
                self.woke_peer = false;
                let n = want.min(available);
                self.consume(out, n);
                return Ok(n as usize);
            }
        }
    }

    #[inline]
    fn consume(&mut self, out: &mut [u8], n: u32) {
        let size = self.elem_size;
        for i in 0..n {
            let start = i as usize * size;
            self.mem
                .read_slot(self.head.wrapping_add(i), &mut out[start..start + size]);
        }
        self.head = self.head.wrapping_add(n);
        let header = self.mem.header();
        // Release: our copies out of the slots complete before the producer may reuse them.
        header.head.0.store(self.head, Ordering::Release);
        if wake_peer(&self.notifier, &header.producer_parked.0) {
            self.woke_peer = true;
        }
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("geometry", &self.geometry())
            .field("head", &self.head)
            .field("tail_cache", &self.tail_cache)
            .field("wait", &self.wait)
            .field("notifier", &self.notifier)
            .finish()
    }
}

/// `tail - head`, checked against the capacity.
#[inline]
fn checked_occupancy(tail: u32, head: u32, capacity: u32) -> Result<u32, QueueCorrupt> {
    let used = tail.wrapping_sub(head);
    if used <= capacity {
        Ok(used)
    } else {
        Err(QueueCorrupt {
            head,
            tail,
            capacity,
        })
    }
}

/// The peer's index is inconsistent with ours: `tail - head` (wrapping) exceeds the capacity.
/// Only this queue is affected; the handle stays usable if the peer's index becomes sane again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCorrupt {
    /// `head` as seen (the consumer's index).
    pub head: u32,
    /// `tail` as seen (the producer's index).
    pub tail: u32,
    /// The capacity this handle trusts.
    pub capacity: u32,
}

impl fmt::Display for QueueCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queue indices are inconsistent: tail {} - head {} exceeds capacity {}",
            self.tail, self.head, self.capacity
        )
    }
}

impl std::error::Error for QueueCorrupt {}

/// Why a [`QueueGeometry`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueGeometryError {
    /// The capacity is not a power of two in `1..=MAX_CAPACITY`.
    Capacity {
        /// The capacity asked for.
        capacity: u32,
    },
    /// The element size is not a multiple of 8 in `8..=MAX_ELEM_SIZE`.
    ElementSize {
        /// The element size asked for.
        elem_size: u32,
    },
}

impl fmt::Display for QueueGeometryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capacity { capacity } => write!(
                f,
                "queue capacity {capacity} is not a power of two between 1 and {}",
                QueueGeometry::MAX_CAPACITY
            ),
            Self::ElementSize { elem_size } => write!(
                f,
                "queue element size {elem_size} is not a multiple of 8 between 8 and {}",
                QueueGeometry::MAX_ELEM_SIZE
            ),
        }
    }
}

impl std::error::Error for QueueGeometryError {}

/// Why [`init`] (or [`process_local_pair`]) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueInitError {
    /// The offset is not a multiple of [`QUEUE_ALIGN`].
    Misaligned {
        /// The offset given.
        offset: usize,
    },
    /// The queue does not fit in the region.
    OutOfBounds {
        /// The offset given.
        offset: usize,
        /// Bytes the queue needs.
        footprint: usize,
        /// Bytes the region has.
        region_len: usize,
    },
    /// Mapping memory for a process-local queue failed.
    Os(Errno),
    /// Attaching to the fresh queue failed (cannot happen unless the memory is shared with a
    /// peer that rewrote it in the meantime).
    Attach(QueueAttachError),
}

impl fmt::Display for QueueInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { offset } => {
                write!(
                    f,
                    "queue offset {offset:#x} is not aligned to {QUEUE_ALIGN}"
                )
            }
            Self::OutOfBounds {
                offset,
                footprint,
                region_len,
            } => write!(
                f,
                "queue of {footprint} bytes at offset {offset:#x} does not fit in a region of {region_len} bytes"
            ),
            Self::Os(e) => write!(f, "cannot map queue memory: {e}"),
            Self::Attach(e) => write!(f, "cannot attach to the new queue: {e}"),
        }
    }
}

impl std::error::Error for QueueInitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Os(e) => Some(e),
            Self::Attach(e) => Some(e),
            _ => None,
        }
    }
}

/// Why attaching to a queue failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueAttachError {
    /// The offset is not a multiple of [`QUEUE_ALIGN`].
    Misaligned {
        /// The offset given.
        offset: usize,
    },
    /// The queue does not fit in the region.
    OutOfBounds {
        /// The offset given.
        offset: usize,
        /// Bytes the queue needs.
        footprint: usize,
        /// Bytes the region has.
        region_len: usize,
    },
    /// No queue here (or not initialised yet).
    BadMagic {
        /// The word found instead of the magic.
        found: u32,
    },
    /// A queue of another layout version.
    BadVersion {
        /// The version found.
        found: u32,
    },
    /// The recorded data offset is not the one this layout uses.
    BadLayout {
        /// The data offset found.
        data_offset: u32,
    },
    /// The queue's recorded geometry is not the one expected.
    GeometryMismatch {
        /// The geometry the caller expected.
        expected: QueueGeometry,
        /// The capacity found.
        found_capacity: u32,
        /// The element size found.
        found_elem_size: u32,
    },
    /// The recorded geometry is invalid.
    Geometry(QueueGeometryError),
    /// The indices are already inconsistent.
    Corrupt(QueueCorrupt),
}

impl fmt::Display for QueueAttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { offset } => {
                write!(
                    f,
                    "queue offset {offset:#x} is not aligned to {QUEUE_ALIGN}"
                )
            }
            Self::OutOfBounds {
                offset,
                footprint,
                region_len,
            } => write!(
                f,
                "queue of {footprint} bytes at offset {offset:#x} does not fit in a region of {region_len} bytes"
            ),
            Self::BadMagic { found } => write!(f, "no queue here (magic {found:#010x})"),
            Self::BadVersion { found } => write!(
                f,
                "queue layout version {found} is not the supported version {QUEUE_LAYOUT_VERSION}"
            ),
            Self::BadLayout { data_offset } => {
                write!(
                    f,
                    "queue data offset {data_offset} is not {}",
                    QueueHeader::SIZE
                )
            }
            Self::GeometryMismatch {
                expected,
                found_capacity,
                found_elem_size,
            } => write!(
                f,
                "queue geometry {found_capacity}x{found_elem_size} bytes is not the expected {}x{} bytes",
                expected.capacity, expected.elem_size
            ),
            Self::Geometry(e) => write!(f, "invalid queue geometry: {e}"),
            Self::Corrupt(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for QueueAttachError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Geometry(e) => Some(e),
            Self::Corrupt(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a send failed. The element was not enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueSendError {
    /// The queue is full (non-blocking calls).
    Full,
    /// The queue stayed full until the deadline.
    Timeout,
    /// The consumer's index is inconsistent.
    Corrupt(QueueCorrupt),
    /// The element (or batch) length is not a (whole number of) element size.
    ElementSize {
        /// The element size of the queue.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// Parking failed with an unexpected errno.
    Os(Errno),
}

impl From<QueueCorrupt> for QueueSendError {
    fn from(e: QueueCorrupt) -> Self {
        Self::Corrupt(e)
    }
}

impl fmt::Display for QueueSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("queue is full"),
            Self::Timeout => f.write_str("queue stayed full until the deadline"),
            Self::Corrupt(e) => e.fmt(f),
            Self::ElementSize { expected, found } => write!(
                f,
                "{found} bytes is not a whole number of {expected}-byte elements"
            ),
            Self::Os(e) => write!(f, "cannot park: {e}"),
        }
    }
}

impl std::error::Error for QueueSendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Corrupt(e) => Some(e),
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a receive failed. Nothing was dequeued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueRecvError {
    /// The queue is empty (non-blocking calls).
    Empty,
    /// The queue stayed empty until the deadline.
    Timeout,
    /// The producer's index is inconsistent.
    Corrupt(QueueCorrupt),
    /// The output buffer is not (at least) one element.
    ElementSize {
        /// The element size of the queue.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// Parking failed with an unexpected errno.
    Os(Errno),
}

impl From<QueueCorrupt> for QueueRecvError {
    fn from(e: QueueCorrupt) -> Self {
        Self::Corrupt(e)
    }
}

impl fmt::Display for QueueRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("queue is empty"),
            Self::Timeout => f.write_str("queue stayed empty until the deadline"),
            Self::Corrupt(e) => e.fmt(f),
            Self::ElementSize { expected, found } => write!(
                f,
                "a {found}-byte buffer does not fit a whole {expected}-byte element"
            ),
            Self::Os(e) => write!(f, "cannot park: {e}"),
        }
    }
}

impl std::error::Error for QueueRecvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Corrupt(e) => Some(e),
            Self::Os(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
