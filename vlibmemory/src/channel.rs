//! One client's channel inside a segment: a header, a request queue and a reply queue carrying
//! message offsets, and message rings in each direction (VPP's `client_rings` and `vl_rings`),
//! with the segment heap as the fallback for messages larger than any ring slot.
//!
//! ```text
//! channel header (words)      request queue (client -> server), elements: u64 offsets
//!                             reply queue   (server -> client)
//! client rings: slot = [in-use u64][data_len u32 BE][gc u32][payload...]
//! server rings: same
//! ```
//!
//! A message travels as: the producer takes a free slot of the smallest ring that fits (its head
//! slot; a busy head is a *miss*, so the next larger ring is tried, then the heap), writes payload
//! and length, sets the slot's in-use word, and enqueues the slot's offset. The consumer dequeues
//! the offset, checks it against **its own private copy** of the peer's ring geometry (a slot
//! start, or a heap block that is not one of the channel's own structures), reads the length,
//! bounds it by the slot, copies the message out, and only then frees the slot by clearing its
//! in-use word. Nothing read from shared memory is used before it has been checked, and nothing
//! is validated in place.
//!
//! A slot that stays in use for longer than [`GC_TIMEOUT`] is reclaimed by its producer (VPP's
//! garbage collection), so a consumer that died holding slots cannot exhaust the rings.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use svm::queue::{
    self, Consumer, Producer, QueueAttachError, QueueCorrupt, QueueGeometry, QueueInitError,
    QueueRecvError, QueueSendError,
};
use svm::region::SharedRegion;
use svm::segment::Segment;
use vppinfra::heap::{HeapAllocError, HeapLockError, HeapLookupError};
use vppinfra::sync::{Arc, Ordering};

use crate::config::{ChannelConfig, ChannelConfigError, MAX_RINGS, MSGBUF_HEADER, RingSpec};

/// "VAPI", then the layout version.
const MAGIC: u64 = 0x5641_5049;
const VERSION: u64 = 1;

/// Words of the channel header (each an `AtomicU64`).
mod w {
    pub(super) const MAGIC: usize = 0;
    pub(super) const STATE: usize = 1;
    pub(super) const CLIENT_PID: usize = 2;
    pub(super) const REQ_QUEUE: usize = 3;
    pub(super) const REP_QUEUE: usize = 4;
    pub(super) const REQ_GEOM: usize = 5;
    pub(super) const REP_GEOM: usize = 6;
    pub(super) const N_RINGS: usize = 7;
    pub(super) const RINGS: usize = 8;
    /// Two words per ring (spec, slots offset), client rings then server rings.
    pub(super) const COUNT: usize = RINGS + 2 * 2 * super::MAX_RINGS;
}

/// Bytes of the channel header.
pub const HEADER_BYTES: usize = w::COUNT * 8;

use crate::slot::{SLOT_FREE, buffer_is_free, free_buffer, mark_buffer_busy};

/// A slot busy for longer than this is taken back by its producer.
pub const GC_TIMEOUT: Duration = Duration::from_secs(10);

/// After the peer held the segment heap's lock past this side's lock timeout, the heap is left
/// alone this long before the next try; every further failure doubles the pause, up to
/// [`HEAP_RETRY_MAX`]. A peer sitting on its lock then costs this side one lock timeout now and
/// then, not one per message.
pub const HEAP_RETRY_FIRST: Duration = Duration::from_millis(1);
/// The longest pause between two tries of a heap whose lock the peer holds.
pub const HEAP_RETRY_MAX: Duration = Duration::from_millis(100);

/// The back-off of one side after the peer held the heap lock past this side's timeout.
#[derive(Debug, Clone, Copy)]
struct HeapBackoff {
    /// When the lock was first found held (reset by any heap operation that gets it).
    since: Instant,
    /// No heap operation before this.
    next_try: Instant,
    /// The pause after the next failure.
    pause: Duration,
}

impl HeapBackoff {
    /// Records a lock timeout.
    fn note_busy(backoff: &mut Option<HeapBackoff>) {
        let now = Instant::now();
        match backoff {
            Some(b) => {
                b.next_try = now + b.pause;
                b.pause = (b.pause * 2).min(HEAP_RETRY_MAX);
            }
            None => {
                *backoff = Some(HeapBackoff {
                    since: now,
                    next_try: now + HEAP_RETRY_FIRST,
                    pause: HEAP_RETRY_FIRST * 2,
                });
            }
        }
    }

    /// True while the heap is to be left alone (reads the clock only during a back-off).
    fn pausing(backoff: &Option<HeapBackoff>) -> bool {
        backoff.is_some_and(|b| Instant::now() < b.next_try)
    }
}

/// Copies `msg` into the buffer at `off` (its payload at `off + 16`) and writes the length
/// word, in whole 64-bit words: the last word is zero-padded, which stays inside the buffer
/// because payload capacities are multiples of 8. False if the buffer is out of the region.
fn write_buffer(region: &SharedRegion, off: usize, msg: &[u8]) -> bool {
    let n = msg.len().div_ceil(8);
    let Some(words) = region.words(off + 8, 1 + n) else {
        return false;
    };
    let len = (msg.len() as u32).to_be_bytes();
    // data_len (big-endian) then gc_mark 0, as VPP's msgbuf_t lays them out.
    words[0].store(
        u64::from_ne_bytes([len[0], len[1], len[2], len[3], 0, 0, 0, 0]),
        Ordering::Relaxed,
    );
    let mut chunks = msg.chunks_exact(8);
    for (w, c) in words[1..].iter().zip(&mut chunks) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        words[n].store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    true
}

/// Copies `len` payload bytes of the buffer at `off` into `buf` in whole 64-bit words (the
/// buffer's capacity was checked to hold them, rounded up to a word).
fn read_buffer(region: &SharedRegion, off: usize, len: usize, buf: &mut Vec<u8>) -> bool {
    let n = len.div_ceil(8);
    let Some(words) = region.words(off + MSGBUF_HEADER, n) else {
        return false;
    };
    buf.clear();
    buf.resize(n * 8, 0);
    for (w, b) in words.iter().zip(buf.chunks_exact_mut(8)) {
        b.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
    }
    buf.truncate(len);
    true
}

/// Where one ring lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingGeometry {
    /// Its slots.
    pub spec: RingSpec,
    /// Offset of slot 0 in the segment.
    pub slots: usize,
}

impl RingGeometry {
    fn slot_size(&self) -> usize {
        self.spec.slot_size()
    }

    fn span(&self) -> Range<usize> {
        self.slots..self.slots + self.slot_size() * self.spec.count as usize
    }

    /// The slot index of `offset`, if it is exactly a slot start of this ring.
    fn slot_of(&self, offset: usize) -> Option<usize> {
        let rel = offset.checked_sub(self.slots)?;
        let size = self.slot_size();
        (rel % size == 0 && rel / size < self.spec.count as usize).then_some(rel / size)
    }
}

/// A channel's layout: everything either end needs, held privately once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLayout {
    /// Offset of the channel header.
    pub base: usize,
    /// Request queue offset and geometry.
    pub request: (usize, QueueGeometry),
    /// Reply queue offset and geometry.
    pub reply: (usize, QueueGeometry),
    /// Rings the client allocates from.
    pub client_rings: Vec<RingGeometry>,
    /// Rings the server allocates from.
    pub server_rings: Vec<RingGeometry>,
}

/// Why a channel could not be laid out or read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// The configuration is invalid.
    Config(ChannelConfigError),
    /// The segment heap could not hold it.
    Alloc(String),
    /// A queue could not be laid out.
    QueueInit(QueueInitError),
    /// A queue could not be attached.
    QueueAttach(QueueAttachError),
    /// The header does not describe a valid channel (bad magic, version or geometry).
    BadHeader(&'static str),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "bad channel configuration: {e}"),
            Self::Alloc(e) => write!(f, "cannot allocate the channel: {e}"),
            Self::QueueInit(e) => write!(f, "cannot lay out a queue: {e}"),
            Self::QueueAttach(e) => write!(f, "cannot attach a queue: {e}"),
            Self::BadHeader(what) => write!(f, "bad channel header: {what}"),
        }
    }
}

impl std::error::Error for ChannelError {}

fn words(region: &SharedRegion, base: usize) -> Option<&[vppinfra::sync::AtomicU64]> {
    region.words(base, w::COUNT)
}

fn pack_geom(g: QueueGeometry) -> u64 {
    u64::from(g.capacity()) | (g.elem_size() as u64) << 32
}

fn pack_spec(r: RingSpec) -> u64 {
    u64::from(r.payload) | u64::from(r.count) << 32
}

impl ChannelLayout {
    /// Lays out a fresh channel in `segment`'s heap (server side); the header says "free".
    pub fn create(segment: &Segment, config: &ChannelConfig) -> Result<Self, ChannelError> {
        config.validate().map_err(ChannelError::Config)?;
        let alloc = |size: usize, align: usize| {
            segment
                .alloc(size, align)
                .map_err(|e| ChannelError::Alloc(e.to_string()))
        };
        let region = segment.region();
        let base = alloc(HEADER_BYTES, 128)?;
        let req_geom = QueueGeometry::new(config.request_queue, 8)
            .map_err(|e| ChannelError::Alloc(e.to_string()))?;
        let rep_geom = QueueGeometry::new(config.reply_queue, 8)
            .map_err(|e| ChannelError::Alloc(e.to_string()))?;
        let req = alloc(req_geom.footprint(), queue::QUEUE_ALIGN)?;
        let rep = alloc(rep_geom.footprint(), queue::QUEUE_ALIGN)?;
        queue::init(region, req, req_geom).map_err(ChannelError::QueueInit)?;
        queue::init(region, rep, rep_geom).map_err(ChannelError::QueueInit)?;
        let rings = |specs: &[RingSpec]| -> Result<Vec<RingGeometry>, ChannelError> {
            specs
                .iter()
                .map(|&spec| {
                    let bytes = spec.slot_size() * spec.count as usize;
                    let slots = alloc(bytes, 64)?;
                    // Every slot starts free.
                    for i in 0..spec.count as usize {
                        if let Some(word) = region.words(slots + i * spec.slot_size(), 1) {
                            word[0].store(SLOT_FREE, Ordering::Relaxed);
                        }
                    }
                    Ok(RingGeometry { spec, slots })
                })
                .collect()
        };
        let client_rings = rings(&config.client_rings)?;
        let server_rings = rings(&config.server_rings)?;
        let layout = Self {
            base,
            request: (req, req_geom),
            reply: (rep, rep_geom),
            client_rings,
            server_rings,
        };
        layout.publish(region);
        Ok(layout)
    }

    /// Writes the header (magic last, with `Release`).
    fn publish(&self, region: &SharedRegion) {
        let Some(h) = words(region, self.base) else {
            return;
        };
        h[w::MAGIC].store(0, Ordering::Relaxed);
        h[w::STATE].store(crate::slot::CHANNEL_FREE, Ordering::Relaxed);
        h[w::CLIENT_PID].store(0, Ordering::Relaxed);
        h[w::REQ_QUEUE].store(self.request.0 as u64, Ordering::Relaxed);
        h[w::REP_QUEUE].store(self.reply.0 as u64, Ordering::Relaxed);
        h[w::REQ_GEOM].store(pack_geom(self.request.1), Ordering::Relaxed);
        h[w::REP_GEOM].store(pack_geom(self.reply.1), Ordering::Relaxed);
        h[w::N_RINGS].store(
            self.client_rings.len() as u64 | (self.server_rings.len() as u64) << 8,
            Ordering::Relaxed,
        );
        for (i, r) in self
            .client_rings
            .iter()
            .chain(&self.server_rings)
            .enumerate()
        {
            let k = w::RINGS + 2 * i;
            h[k].store(pack_spec(r.spec), Ordering::Relaxed);
            h[k + 1].store(r.slots as u64, Ordering::Relaxed);
        }
        h[w::MAGIC].store(MAGIC << 32 | VERSION, Ordering::Release);
    }

    /// Reads and validates a channel header written by the server (client side): every offset
    /// must fall inside the region and every geometry must be sane.
    pub fn read(region: &SharedRegion, base: usize) -> Result<Self, ChannelError> {
        let h = words(region, base).ok_or(ChannelError::BadHeader("out of the segment"))?;
        let magic = h[w::MAGIC].load(Ordering::Acquire);
        if magic >> 32 != MAGIC {
            return Err(ChannelError::BadHeader("magic"));
        }
        if magic & 0xffff_ffff != VERSION {
            return Err(ChannelError::BadHeader("layout version"));
        }
        let geom = |word: u64| {
            QueueGeometry::new(word as u32, (word >> 32) as u32)
                .map_err(|_| ChannelError::BadHeader("queue geometry"))
        };
        let req = h[w::REQ_QUEUE].load(Ordering::Relaxed) as usize;
        let rep = h[w::REP_QUEUE].load(Ordering::Relaxed) as usize;
        let req_geom = geom(h[w::REQ_GEOM].load(Ordering::Relaxed))?;
        let rep_geom = geom(h[w::REP_GEOM].load(Ordering::Relaxed))?;
        if req_geom.elem_size() != 8 || rep_geom.elem_size() != 8 {
            return Err(ChannelError::BadHeader("queue element size"));
        }
        let counts = h[w::N_RINGS].load(Ordering::Relaxed);
        let (nc, ns) = ((counts & 0xff) as usize, (counts >> 8 & 0xff) as usize);
        if nc == 0 || ns == 0 || nc > MAX_RINGS || ns > MAX_RINGS {
            return Err(ChannelError::BadHeader("ring count"));
        }
        let mut all = Vec::with_capacity(nc + ns);
        for i in 0..nc + ns {
            let k = w::RINGS + 2 * i;
            let spec = h[k].load(Ordering::Relaxed);
            let spec = RingSpec {
                payload: spec as u32,
                count: (spec >> 32) as u32,
            };
            let slots = h[k + 1].load(Ordering::Relaxed) as usize;
            let g = RingGeometry { spec, slots };
            let one = ChannelConfig {
                client_rings: vec![spec],
                server_rings: vec![spec],
                request_queue: 1,
                reply_queue: 1,
            };
            one.validate()
                .map_err(|_| ChannelError::BadHeader("ring geometry"))?;
            if slots % 8 != 0 || !region.contains(slots, g.span().len()) {
                return Err(ChannelError::BadHeader("ring outside the segment"));
            }
            all.push(g);
        }
        if !region.contains(req, req_geom.footprint())
            || !region.contains(rep, rep_geom.footprint())
        {
            return Err(ChannelError::BadHeader("queue outside the segment"));
        }
        let server_rings = all.split_off(nc);
        Ok(Self {
            base,
            request: (req, req_geom),
            reply: (rep, rep_geom),
            client_rings: all,
            server_rings,
        })
    }

    /// Byte ranges of the channel's own structures (header, queues, rings): offsets inside them
    /// are never accepted as heap-allocated messages.
    pub fn structures(&self) -> Vec<Range<usize>> {
        let mut v = vec![
            self.base..self.base + HEADER_BYTES,
            self.request.0..self.request.0 + self.request.1.footprint(),
            self.reply.0..self.reply.0 + self.reply.1.footprint(),
        ];
        v.extend(
            self.client_rings
                .iter()
                .chain(&self.server_rings)
                .map(RingGeometry::span),
        );
        v
    }

    /// The named-slot state word and the client pid word.
    pub(crate) fn slot_words(
        region: &SharedRegion,
        base: usize,
    ) -> Option<(&vppinfra::sync::AtomicU64, &vppinfra::sync::AtomicU64)> {
        let h = words(region, base)?;
        Some((&h[w::STATE], &h[w::CLIENT_PID]))
    }

    /// Re-initialises the queues and frees every slot (server side, when a named slot is
    /// recycled), then republishes the header as free.
    pub(crate) fn reset(&self, region: &SharedRegion) -> Result<(), ChannelError> {
        queue::init(region, self.request.0, self.request.1).map_err(ChannelError::QueueInit)?;
        queue::init(region, self.reply.0, self.reply.1).map_err(ChannelError::QueueInit)?;
        for r in self.client_rings.iter().chain(&self.server_rings) {
            for i in 0..r.spec.count as usize {
                if let Some(word) = region.words(r.slots + i * r.slot_size(), 1) {
                    word[0].store(SLOT_FREE, Ordering::Relaxed);
                }
            }
        }
        self.publish(region);
        Ok(())
    }
}

/// Ring statistics for `show api ring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingStats {
    /// Payload bytes per slot.
    pub payload: u32,
    /// Slots.
    pub count: u32,
    /// Allocations served by this ring.
    pub hits: u64,
    /// Times its head slot was still busy.
    pub misses: u64,
}

/// Allocation statistics of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Per ring, smallest first.
    pub rings: Vec<RingStats>,
    /// Messages that fitted no ring slot and went to the heap.
    pub heap_fallbacks: u64,
    /// Slots taken back after [`GC_TIMEOUT`].
    pub garbage_collects: u64,
    /// Messages sent.
    pub sent: u64,
}

#[derive(Debug)]
struct RingState {
    geom: RingGeometry,
    head: usize,
    hits: u64,
    misses: u64,
    /// When each slot was first found busy (producer-private, never read from shared memory).
    busy_since: Vec<Option<Instant>>,
}

/// Why a message could not be sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// Every ring slot is busy and the heap has no room; try again once the peer has caught up.
    NoBuffer,
    /// The queue is full; try again once the peer has caught up.
    QueueFull,
    /// The queue is corrupt (the peer wrote its indices).
    Corrupt(QueueCorrupt),
    /// Waiting for room timed out.
    Timeout,
    /// The message is larger than any buffer could be.
    TooLarge(usize),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBuffer => f.write_str("no free message buffer"),
            Self::QueueFull => f.write_str("queue full"),
            Self::Corrupt(e) => write!(f, "{e}"),
            Self::Timeout => f.write_str("timed out waiting for room"),
            Self::TooLarge(n) => write!(f, "message of {n} bytes is too large"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a received offset was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// The queue is corrupt.
    Corrupt(QueueCorrupt),
    /// The offset is neither a ring slot of the peer nor a heap block.
    BadOffset(u64),
    /// The length in the buffer header exceeds the buffer.
    BadLength {
        /// The offset.
        offset: u64,
        /// The announced length.
        len: u32,
    },
    /// The message is shorter than a message ID.
    TooShort(u32),
    /// The heap refused the block (double use, foreign offset, corruption).
    Heap(String),
    /// The peer holds the segment heap's lock for longer than this side waits. The message
    /// stays first in line: it is taken again once the back-off after the lock timeout has
    /// passed ([`HEAP_RETRY_FIRST`], doubling), and nothing behind it overtakes it.
    HeapBusy {
        /// The pid in the lock word.
        owner: u32,
    },
    /// The peer's queue has nothing (blocking receive timed out).
    Timeout,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "{e}"),
            Self::BadOffset(o) => write!(f, "offset {o:#x} is not a message buffer"),
            Self::BadLength { offset, len } => {
                write!(
                    f,
                    "buffer at {offset:#x} claims {len} bytes, more than it holds"
                )
            }
            Self::TooShort(n) => write!(f, "message of {n} bytes has no id"),
            Self::Heap(e) => write!(f, "heap block refused: {e}"),
            Self::HeapBusy { owner } => {
                write!(f, "the heap lock is held by pid {owner}; the message waits")
            }
            Self::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for RecvError {}

/// The sending end of one direction of a channel.
pub struct Sender {
    segment: Arc<Segment>,
    queue: Producer,
    rings: Vec<RingState>,
    heap_fallbacks: u64,
    garbage_collects: u64,
    sent: u64,
    batching: bool,
    /// Offsets written and marked busy but not yet published (native-endian `u64`s).
    pending: Vec<u8>,
    /// Set while the peer holds the heap lock: no heap fallback until it passes.
    heap_busy: Option<HeapBackoff>,
}

/// Offsets published together when batching.
const BATCH: usize = 32;
/// Most offsets a batching sender holds back before it reports the queue full.
const MAX_PENDING: usize = 1024;

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("rings", &self.rings.len())
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// The sending end over `rings` and the queue at `queue` (which must be this side's).
    pub fn attach(
        segment: Arc<Segment>,
        rings: &[RingGeometry],
        queue: (usize, QueueGeometry),
    ) -> Result<Self, ChannelError> {
        let producer = Producer::attach(segment.region(), queue.0, queue.1)
            .map_err(ChannelError::QueueAttach)?;
        Ok(Self {
            queue: producer,
            rings: rings
                .iter()
                .map(|&geom| RingState {
                    geom,
                    head: 0,
                    hits: 0,
                    misses: 0,
                    busy_since: vec![None; geom.spec.count as usize],
                })
                .collect(),
            segment,
            heap_fallbacks: 0,
            garbage_collects: 0,
            sent: 0,
            batching: false,
            pending: Vec::new(),
            heap_busy: None,
        })
    }

    /// The queue's producer end (to set its wait policy and notifier).
    pub fn queue_mut(&mut self) -> &mut Producer {
        &mut self.queue
    }

    /// Statistics.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            rings: self
                .rings
                .iter()
                .map(|r| RingStats {
                    payload: r.geom.spec.payload,
                    count: r.geom.spec.count,
                    hits: r.hits,
                    misses: r.misses,
                })
                .collect(),
            heap_fallbacks: self.heap_fallbacks,
            garbage_collects: self.garbage_collects,
            sent: self.sent,
        }
    }

    /// Takes a buffer for `len` bytes: a ring slot, else a heap block. Returns its offset.
    fn alloc(&mut self, len: usize) -> Option<usize> {
        let region = self.segment.region();
        let mut now = None;
        for r in &mut self.rings {
            if (r.geom.spec.payload as usize) < len {
                continue;
            }
            let slot = r.head;
            let off = r.geom.slots + slot * r.geom.slot_size();
            let word = &region.words(off, 1)?[0];
            if !buffer_is_free(word) {
                let now = *now.get_or_insert_with(Instant::now);
                match r.busy_since[slot] {
                    Some(t) if now.duration_since(t) > GC_TIMEOUT => {
                        // The consumer never freed it: take it back (VPP's garbage collect).
                        self.garbage_collects += 1;
                    }
                    Some(_) => {
                        r.misses += 1;
                        continue;
                    }
                    None => {
                        r.busy_since[slot] = Some(now);
                        r.misses += 1;
                        continue;
                    }
                }
            }
            r.busy_since[slot] = None;
            r.head = (slot + 1) % r.geom.spec.count as usize;
            r.hits += 1;
            return Some(off);
        }
        if HeapBackoff::pausing(&self.heap_busy) {
            return None;
        }
        match self
            .segment
            .alloc(MSGBUF_HEADER + len.next_multiple_of(8), 64)
        {
            Ok(off) => {
                self.heap_busy = None;
                self.heap_fallbacks += 1;
                Some(off)
            }
            Err(HeapAllocError::Lock(HeapLockError::Timeout { .. })) => {
                HeapBackoff::note_busy(&mut self.heap_busy);
                None
            }
            Err(_) => {
                self.heap_busy = None;
                None
            }
        }
    }

    /// Since when the peer has held the heap lock past this side's timeout, as last seen by a
    /// heap fallback (`None` once a heap operation got the lock again).
    pub fn heap_busy_since(&self) -> Option<Instant> {
        self.heap_busy.map(|b| b.since)
    }

    /// Puts the buffer at `off` back (a ring slot is freed; a heap block returned).
    fn release(&mut self, off: usize) {
        let in_ring = self.rings.iter().any(|r| r.geom.slot_of(off).is_some());
        if in_ring {
            if let Some(w) = self.segment.region().words(off, 1) {
                free_buffer(&w[0]);
            }
        } else {
            let _ = self.segment.free(off);
        }
    }

    /// Sends one message without waiting. On [`SendError::NoBuffer`] or
    /// [`SendError::QueueFull`] nothing was sent. With batching on, the offset may wait in this
    /// sender until [`Sender::flush`] (or until a batch is full).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        if msg.len() > u32::MAX as usize - MSGBUF_HEADER {
            return Err(SendError::TooLarge(msg.len()));
        }
        if self.batching && self.pending_full() {
            self.flush()?;
            if self.pending_full() {
                return Err(SendError::QueueFull);
            }
        }
        let off = self.alloc(msg.len()).ok_or(SendError::NoBuffer)?;
        let region = self.segment.region();
        if !write_buffer(region, off, msg) {
            self.release(off);
            return Err(SendError::NoBuffer);
        }
        if let Some(w) = region.words(off, 1) {
            mark_buffer_busy(&w[0]);
        }
        if self.batching {
            self.pending.extend_from_slice(&(off as u64).to_ne_bytes());
            self.sent += 1;
            if self.pending.len() >= BATCH * 8 {
                // A full batch goes at once; what does not fit stays queued here, in order.
                let _ = self.flush();
            }
            return Ok(());
        }
        match self.queue.try_send(&(off as u64).to_ne_bytes()) {
            Ok(()) => {
                self.sent += 1;
                Ok(())
            }
            Err(e) => {
                self.release(off);
                Err(match e {
                    QueueSendError::Full => SendError::QueueFull,
                    QueueSendError::Corrupt(c) => SendError::Corrupt(c),
                    QueueSendError::Timeout => SendError::Timeout,
                    _ => SendError::QueueFull,
                })
            }
        }
    }

    /// Holds sent offsets back and publishes them in batches: one index store, and at most one
    /// wake-up, per batch instead of per message. The owner must call [`Sender::flush`] when
    /// a burst ends.
    pub fn set_batching(&mut self, on: bool) {
        self.batching = on;
    }

    fn pending_full(&self) -> bool {
        self.pending.len() >= MAX_PENDING * 8
    }

    /// Messages written but not yet published (batching).
    pub fn pending(&self) -> usize {
        self.pending.len() / 8
    }

    /// Publishes the offsets held back by batching, as many as the queue takes; the rest stay,
    /// in order, for the next flush.
    pub fn flush(&mut self) -> Result<(), SendError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.queue.try_send_batch(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n * 8);
                Ok(())
            }
            Err(QueueSendError::Corrupt(c)) => Err(SendError::Corrupt(c)),
            Err(_) => Ok(()),
        }
    }

    /// Sends one message, waiting up to `timeout` for a buffer and for queue room.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = vppinfra::sync::Backoff::new();
        loop {
            match self.try_send(msg) {
                Err(SendError::NoBuffer | SendError::QueueFull) if Instant::now() < deadline => {
                    if backoff.is_completed() {
                        std::thread::sleep(Duration::from_micros(50));
                    } else {
                        backoff.snooze();
                    }
                }
                Err(SendError::NoBuffer | SendError::QueueFull) => return Err(SendError::Timeout),
                other => return other,
            }
        }
    }

    /// Messages sent and not yet taken: queued, plus held back by batching.
    pub fn queued(&mut self) -> Result<u32, QueueCorrupt> {
        Ok(self.queue.occupancy()? + self.pending() as u32)
    }
}

/// The receiving end of one direction of a channel.
pub struct Receiver {
    segment: Arc<Segment>,
    queue: Consumer,
    /// Offsets dequeued in one batch and not yet taken (native-endian `u64`s).
    batch: Vec<u8>,
    /// Next offset of `batch` to take.
    batch_pos: usize,
    /// The peer's rings, from this side's private copy of the layout.
    rings: Vec<RingGeometry>,
    /// Structures of the whole segment a heap offset may not point into.
    structures: Arc<Vec<Range<usize>>>,
    received: u64,
    refused: u64,
    /// A dequeued offset that waits for the peer to release the heap lock; taken first.
    retry: Option<u64>,
    /// Set while the peer holds the heap lock.
    heap_busy: Option<HeapBackoff>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("received", &self.received)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// The receiving end over the peer's `rings` and the queue at `queue`.
    pub fn attach(
        segment: Arc<Segment>,
        rings: &[RingGeometry],
        queue: (usize, QueueGeometry),
        structures: Arc<Vec<Range<usize>>>,
    ) -> Result<Self, ChannelError> {
        let consumer = Consumer::attach(segment.region(), queue.0, queue.1)
            .map_err(ChannelError::QueueAttach)?;
        Ok(Self {
            segment,
            queue: consumer,
            batch: vec![0; BATCH * 8],
            batch_pos: BATCH * 8,
            rings: rings.to_vec(),
            structures,
            received: 0,
            refused: 0,
            retry: None,
            heap_busy: None,
        })
    }

    /// The queue's consumer end (to set its wait policy and notifier, and to park).
    pub fn queue_mut(&mut self) -> &mut Consumer {
        &mut self.queue
    }

    /// Messages received and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.received, self.refused)
    }

    /// Takes the next message, if any, into `buf` (replacing its contents). `Ok(false)` when the
    /// queue is empty, or while a message waits for the peer to release the heap lock
    /// ([`RecvError::HeapBusy`]).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<bool, RecvError> {
        if let Some(offset) = self.retry {
            if HeapBackoff::pausing(&self.heap_busy) {
                return Ok(false);
            }
            self.retry = None;
            return self.take(offset, buf).map(|()| true);
        }
        if self.batch_pos >= self.batch.len() {
            // Take every offset waiting, up to a batch, with one index publication.
            let n = match self.queue.try_recv_batch(&mut self.batch[..BATCH * 8]) {
                Ok(n) => n,
                Err(QueueRecvError::Corrupt(c)) => return Err(RecvError::Corrupt(c)),
                Err(_) => 0,
            };
            if n == 0 {
                return Ok(false);
            }
            self.batch.truncate(n * 8);
            self.batch_pos = 0;
        }
        let p = self.batch_pos;
        let mut elem = [0u8; 8];
        elem.copy_from_slice(&self.batch[p..p + 8]);
        self.batch_pos += 8;
        if self.batch_pos >= self.batch.len() {
            self.batch.resize(BATCH * 8, 0);
            self.batch_pos = self.batch.len();
        }
        self.take(u64::from_ne_bytes(elem), buf).map(|()| true)
    }

    /// Waits up to `timeout` for a message (using the queue's wait policy).
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        if self.try_recv(buf)? {
            return Ok(());
        }
        if self.retry.is_some() {
            // A message waits for the heap lock, and nothing behind it may overtake it.
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                std::thread::sleep(HEAP_RETRY_FIRST.min(deadline - Instant::now()));
                if self.try_recv(buf)? {
                    return Ok(());
                }
            }
            return Err(RecvError::Timeout);
        }
        let mut elem = [0u8; 8];
        match self.queue.recv_timeout(&mut elem, timeout) {
            Ok(()) => self.take(u64::from_ne_bytes(elem), buf),
            Err(QueueRecvError::Corrupt(c)) => Err(RecvError::Corrupt(c)),
            Err(_) => Err(RecvError::Timeout),
        }
    }

    /// Validates the buffer at `offset`, copies its message into `buf`, and frees the buffer.
    fn take(&mut self, offset: u64, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let r = self.take_inner(offset, buf);
        match r {
            Ok(()) => {
                self.received += 1;
                self.heap_busy = None;
            }
            Err(RecvError::HeapBusy { .. }) => {
                // Not refused: it is taken again after the back-off.
                self.retry = Some(offset);
                HeapBackoff::note_busy(&mut self.heap_busy);
            }
            Err(_) => {
                self.refused += 1;
                self.heap_busy = None;
            }
        }
        r
    }

    /// Since when a message has waited for the peer to release the heap lock.
    pub fn heap_busy_since(&self) -> Option<Instant> {
        self.heap_busy.map(|b| b.since)
    }

    fn take_inner(&mut self, offset: u64, buf: &mut Vec<u8>) -> Result<(), RecvError> {
        let off = usize::try_from(offset).map_err(|_| RecvError::BadOffset(offset))?;
        let region = self.segment.region();
        let ring_capacity = self
            .rings
            .iter()
            .find(|r| r.slot_of(off).is_some())
            .map(|r| r.spec.payload as usize);
        let capacity = match ring_capacity {
            Some(c) => c,
            None => self.heap_capacity(off)?,
        };
        let len = region
            .words32(off + 8, 1)
            .map(|w| u32::from_be(w[0].load(Ordering::Relaxed)))
            .ok_or(RecvError::BadOffset(offset))?;
        if len as usize > capacity {
            self.discard(off, ring_capacity.is_some());
            return Err(RecvError::BadLength { offset, len });
        }
        if (len as usize) < 2 {
            self.discard(off, ring_capacity.is_some());
            return Err(RecvError::TooShort(len));
        }
        // Copy first; the caller validates the copy, never the shared bytes.
        if !read_buffer(region, off, len as usize, buf) {
            return Err(RecvError::BadOffset(offset));
        }
        self.discard(off, ring_capacity.is_some());
        Ok(())
    }

    /// Usable payload bytes of a heap block at `off`, refusing anything that is not a heap
    /// allocation or that lies inside one of the segment's structures.
    fn heap_capacity(&self, off: usize) -> Result<usize, RecvError> {
        let heap = self.segment.heap_range();
        if !heap.contains(&off) || self.structures.iter().any(|s| s.contains(&off)) {
            return Err(RecvError::BadOffset(off as u64));
        }
        let size = self
            .segment
            .heap()
            .usable_size((off - heap.start) as u64)
            .map_err(|e| match e {
                HeapLookupError::Lock(HeapLockError::Timeout { owner }) => {
                    RecvError::HeapBusy { owner }
                }
                e => RecvError::Heap(e.to_string()),
            })?;
        size.checked_sub(MSGBUF_HEADER)
            .ok_or(RecvError::BadOffset(off as u64))
    }

    fn discard(&self, off: usize, in_ring: bool) {
        if in_ring {
            if let Some(w) = self.segment.region().words(off, 1) {
                free_buffer(&w[0]);
            }
        } else {
            let _ = self.segment.free(off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svm::segment::SegmentOptions;

    fn pair(config: &ChannelConfig) -> (Sender, Receiver, Arc<Segment>, ChannelLayout) {
        let seg = Arc::new(Segment::create(&SegmentOptions::new(4 << 20)).unwrap());
        let layout = ChannelLayout::create(&seg, config).unwrap();
        let structures = Arc::new(layout.structures());
        let tx = Sender::attach(seg.clone(), &layout.client_rings, layout.request).unwrap();
        let rx = Receiver::attach(
            seg.clone(),
            &layout.client_rings,
            layout.request,
            structures,
        )
        .unwrap();
        (tx, rx, seg, layout)
    }

    #[test]
    fn messages_of_every_size_cross_in_order() {
        let (mut tx, mut rx, _seg, _) = pair(&ChannelConfig::default());
        let mut buf = Vec::new();
        for len in [2usize, 10, 64, 65, 300, 1024, 4096, 5000, 100_000] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            tx.try_send(&msg).unwrap();
            assert!(rx.try_recv(&mut buf).unwrap());
            assert_eq!(buf, msg, "len {len}");
        }
        assert!(!rx.try_recv(&mut buf).unwrap());
        let s = tx.stats();
        assert_eq!(s.heap_fallbacks, 2, "5000 and 100000 bytes fit no ring");
        assert_eq!(s.rings[0].hits, 3);
    }

    #[test]
    fn layout_reads_back_identically() {
        let (_, _, seg, layout) = pair(&ChannelConfig::default());
        let read = ChannelLayout::read(seg.region(), layout.base).unwrap();
        assert_eq!(read, layout);
    }

    #[test]
    fn a_busy_head_slot_is_a_miss_then_the_next_ring_serves() {
        let config = ChannelConfig {
            client_rings: vec![
                RingSpec {
                    payload: 64,
                    count: 2,
                },
                RingSpec {
                    payload: 256,
                    count: 2,
                },
            ],
            ..ChannelConfig::default()
        };
        let (mut tx, mut rx, _seg, _) = pair(&config);
        for _ in 0..4 {
            tx.try_send(&[0, 1, 2]).unwrap();
        }
        let s = tx.stats();
        assert_eq!((s.rings[0].hits, s.rings[0].misses), (2, 2));
        assert_eq!(s.rings[1].hits, 2);
        // Both rings full now: the fifth goes to the heap.
        tx.try_send(&[0, 1, 2]).unwrap();
        assert_eq!(tx.stats().heap_fallbacks, 1);
        let mut buf = Vec::new();
        let mut n = 0;
        while rx.try_recv(&mut buf).unwrap() {
            n += 1;
        }
        assert_eq!(n, 5);
        // Freed: the small ring serves again.
        tx.try_send(&[0, 1]).unwrap();
        assert_eq!(tx.stats().rings[0].hits, 3);
    }

    #[test]
    fn hostile_offsets_and_lengths_are_refused() {
        let (mut tx, mut rx, seg, layout) = pair(&ChannelConfig::default());
        let region = seg.region();
        let mut q = Producer::attach(region, layout.request.0, layout.request.1).unwrap();
        let mut buf = Vec::new();
        // Offsets that are no buffer at all: inside the header, mid-slot, past the end.
        for bad in [
            layout.base as u64,
            (layout.client_rings[0].slots + 8) as u64,
            u64::MAX,
            seg.size() as u64 + 64,
            layout.request.0 as u64,
        ] {
            q.try_send(&bad.to_ne_bytes()).unwrap();
            assert!(
                matches!(
                    rx.try_recv(&mut buf),
                    Err(RecvError::BadOffset(_) | RecvError::Heap(_))
                ),
                "{bad:#x} accepted"
            );
        }
        // A real slot whose length claims more than the slot holds.
        let slot = layout.client_rings[0].slots;
        region.words32(slot + 8, 1).unwrap()[0].store(10_000u32.to_be(), Ordering::Relaxed);
        q.try_send(&(slot as u64).to_ne_bytes()).unwrap();
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(RecvError::BadLength { len: 10_000, .. })
        ));
        // The channel still works for honest traffic afterwards.
        drop(q);
        let _ = &mut tx;
        assert_eq!(rx.counts().1, 6);
    }

    #[test]
    fn a_message_behind_a_held_heap_lock_waits_and_keeps_its_place() {
        let mut seg = Segment::create(&SegmentOptions::new(4 << 20)).unwrap();
        seg.set_heap_lock_timeout(Duration::from_millis(1));
        let seg = Arc::new(seg);
        let layout = ChannelLayout::create(&seg, &ChannelConfig::default()).unwrap();
        let structures = Arc::new(layout.structures());
        let mut tx = Sender::attach(seg.clone(), &layout.client_rings, layout.request).unwrap();
        let mut rx = Receiver::attach(
            seg.clone(),
            &layout.client_rings,
            layout.request,
            structures,
        )
        .unwrap();
        // Fits no ring: it goes through the heap. The small one behind it takes a ring slot.
        let big: Vec<u8> = (0..6000).map(|i| i as u8).collect();
        tx.try_send(&big).unwrap();
        tx.try_send(&[0, 1, 2]).unwrap();
        // The heap's lock word (vppinfra's layout: 24 bytes into the heap header), held by a
        // live process: this one.
        let lock = &seg
            .region()
            .words32(seg.heap_range().start + 24, 1)
            .unwrap()[0];
        let me = std::process::id();
        lock.store(me, Ordering::Release);
        let mut buf = Vec::new();
        assert_eq!(
            rx.try_recv(&mut buf),
            Err(RecvError::HeapBusy { owner: me })
        );
        let since = rx.heap_busy_since().expect("busy");
        // Neither lost nor overtaken by the message behind it, and not refused.
        assert!(!matches!(rx.try_recv(&mut buf), Ok(true)));
        assert_eq!(rx.heap_busy_since(), Some(since));
        // The sender does not wait on the held lock either: no heap fallback for now.
        assert!(matches!(tx.try_send(&big), Err(SendError::NoBuffer)));
        assert!(tx.heap_busy_since().is_some());
        lock.store(0, Ordering::Release);
        std::thread::sleep(HEAP_RETRY_MAX);
        assert!(rx.try_recv(&mut buf).unwrap());
        assert_eq!(buf, big);
        assert!(rx.try_recv(&mut buf).unwrap());
        assert_eq!(buf, [0, 1, 2]);
        assert_eq!(rx.counts(), (2, 0));
        assert_eq!(rx.heap_busy_since(), None);
        tx.try_send(&big).unwrap();
        assert_eq!(tx.heap_busy_since(), None);
    }

    #[test]
    fn a_slot_never_freed_is_garbage_collected_after_the_timeout() {
        let config = ChannelConfig {
            client_rings: vec![RingSpec {
                payload: 64,
                count: 1,
            }],
            ..ChannelConfig::default()
        };
        let (mut tx, _rx, _seg, _) = pair(&config);
        tx.try_send(&[0, 1]).unwrap();
        // Consumer never frees; the next small message misses and falls back to the heap.
        tx.try_send(&[0, 2]).unwrap();
        assert_eq!(tx.stats().heap_fallbacks, 1);
        // Pretend the slot has been busy for longer than the timeout.
        tx.rings[0].busy_since[0] = Some(Instant::now() - GC_TIMEOUT - Duration::from_secs(1));
        tx.try_send(&[0, 3]).unwrap();
        assert_eq!(tx.stats().garbage_collects, 1);
    }
}
