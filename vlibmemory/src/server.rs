//! The server side of the shared-memory transport: every client's channel, registrations,
//! keepalive bookkeeping, and the named segment clients attach to by name.
//!
//! Two ways in:
//! - **Private segments** (the pivot): a socket client asks, the server creates a memfd segment
//!   holding one channel, and hands the client the memfd and an eventfd doorbell. Clients are
//!   isolated from each other: each can only scribble on its own segment.
//! - **The named segment** (`/dev/shm/<prefix>-vpe-api`): it holds a directory and a fixed
//!   number of channel slots; a client claims a free slot with a compare-and-swap, rings the
//!   shared doorbell (a FIFO beside the segment) and registers. Every client of the named segment
//!   can write all of it, as with VPP's `/vpe-api`: use private segments where isolation matters.
//!
//! Each channel is read through a [`Receiver`] and written through a [`Sender`]; a reply that
//! finds the client's rings or queue full waits in a bounded per-channel backlog in server
//! memory, never blocking the server. Nothing here sleeps or logs: the server's event loop polls
//! channels, parks them before it sleeps, and decides what to log.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::stat::Mode;
use svm::notify::{EventFdNotifier, WaitPolicy};
use svm::segment::{NamedPermissions, ShmName};
use svm::segment::{Segment, SegmentOptions};
use vlibapi::ClientIndex;
use vppinfra::sync::{Arc, Ordering};

use crate::channel::{
    ChannelError, ChannelLayout, Receiver, RecvError, SendError, Sender, SenderStats,
};
use crate::config::ChannelConfig;

/// A channel's slot in the server (not a client index: that exists only after registration).
pub type ChannelId = usize;

/// Bytes a reply held in a backlog counts for beyond its length: its `Vec` in the queue and the
/// allocator's overhead for its buffer.
pub const BACKLOG_ENTRY_COST: usize = 64;

/// Once a reply puts a client's backlog past this (or half its bound, if that is less), the
/// client is not read from until one of its waiting replies has been delivered: a client that
/// does not take its replies cannot make the server work for more of them, and the memory held
/// for it stays within this plus one request's replies. Its rings, reply queue and the batch
/// held back hold a few thousand replies before anything reaches the backlog; a client that
/// takes replies, however slowly, is read again at each one it takes (it may be answering the
/// server's own messages, keepalive pings, while it drains).
pub const BACKLOG_PAUSE: usize = 64 << 10;

/// Low bits of a client index that hold the epoch; the channel sits above them.
const EPOCH_BITS: u32 = 12;
const EPOCH_MASK: u16 = (1 << EPOCH_BITS) - 1;
/// Channels at most: their indexes must leave bit 31 (socket clients') clear.
pub const MAX_CHANNELS: usize = 1 << (31 - EPOCH_BITS);

/// Two random bytes from the kernel (falling back on the clock and pid).
fn random_u16() -> u16 {
    use std::io::Read;
    let mut b = [0u8; 2];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if ok {
        return u16::from_ne_bytes(b);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ std::process::id().rotate_left(7)) as u16
}

/// Directory words of the named segment.
mod dir {
    pub(crate) const MAGIC: usize = 0;
    pub(crate) const N_SLOTS: usize = 1;
    pub(crate) const TABLE_OFFSET: usize = 2;
    pub(crate) const TABLE_LEN: usize = 3;
    pub(crate) const SERVER_PID: usize = 4;
    pub(crate) const SLOTS: usize = 5;
    pub(crate) const MAGIC_VALUE: u64 = 0x5641_5049_4449_5201;
}

/// Segment opaque word holding the offset of a private segment's channel (or the named
/// segment's directory).
pub const OPAQUE_ROOT: usize = 0;

/// The doorbell FIFO of a named segment: the segment's path plus this suffix.
pub const DOORBELL_SUFFIX: &str = ".doorbell";

/// Name of the named segment under a prefix (`<prefix>-vpe-api`, or `vpe-api`).
pub fn named_segment_name(prefix: Option<&str>) -> Result<ShmName, String> {
    ShmName::new(prefix, "vpe-api").map_err(|e| e.to_string())
}

/// Settings of the shared-memory transport.
#[derive(Debug, Clone)]
pub struct ShmConfig {
    /// Channel shape for pivots that do not bring their own.
    pub channel: ChannelConfig,
    /// Size of a private segment when the client asks for 0.
    pub default_segment_size: usize,
    /// Largest private segment a client may ask for.
    pub max_segment_size: usize,
    /// Most bytes of replies held for one client whose rings or queue are full; past it the
    /// client is reported stuck. Each held reply counts with [`BACKLOG_ENTRY_COST`] bytes of
    /// bookkeeping on top of its length, so this bounds the memory held, small replies
    /// included.
    pub max_backlog_bytes: usize,
    /// A client that keeps the server waiting this long is reported stalled
    /// ([`ShmServer::stalled`]): replies wait for it (held back or in the backlog) and none of
    /// them has been delivered, or a request of its waits for its segment heap's lock.
    pub stall_timeout: Duration,
    /// A registered client silent for this long is pinged.
    pub keepalive_interval: Duration,
    /// Unanswered pings after which the client's pid is checked and, if gone, it is reaped.
    pub max_unanswered_pings: u32,
    /// The named segment, if clients may attach by name.
    pub named: Option<NamedConfig>,
}

impl Default for ShmConfig {
    fn default() -> Self {
        Self {
            channel: ChannelConfig::default(),
            default_segment_size: 4 << 20,
            max_segment_size: 1 << 30,
            max_backlog_bytes: 16 << 20,
            stall_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            max_unanswered_pings: 2,
            named: None,
        }
    }
}

/// Settings of the named segment.
#[derive(Debug, Clone)]
pub struct NamedConfig {
    /// Prefix for running several servers side by side (VPP's `chroot prefix`).
    pub prefix: Option<String>,
    /// Channel slots (clients attached by name at once).
    pub slots: u32,
    /// Mode of the segment and its doorbell.
    pub mode: u32,
    /// Group owning them, if any.
    pub gid: Option<u32>,
    /// Channel shape of every slot.
    pub channel: ChannelConfig,
}

impl Default for NamedConfig {
    fn default() -> Self {
        Self {
            prefix: None,
            slots: 16,
            mode: 0o600,
            gid: None,
            channel: ChannelConfig {
                request_queue: 256,
                reply_queue: 256,
                ..ChannelConfig::default()
            },
        }
    }
}

/// Why the transport could not do something.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmError {
    /// Creating or mapping a segment failed.
    Segment(String),
    /// Laying out a channel failed.
    Channel(ChannelError),
    /// The requested segment size is out of range.
    BadSize(u64),
    /// A system call failed.
    Os(&'static str, Errno),
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment(e) => write!(f, "segment: {e}"),
            Self::Channel(e) => write!(f, "{e}"),
            Self::BadSize(n) => write!(f, "segment size {n} is out of range"),
            Self::Os(call, e) => write!(f, "{call} failed: {e}"),
        }
    }
}

impl std::error::Error for ShmError {}

impl From<ChannelError> for ShmError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

/// How a channel came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A private segment created for this socket client (its liveness follows the socket).
    Pivot {
        /// The socket client.
        socket: ClientIndex,
    },
    /// A slot of the named segment.
    Named {
        /// The slot.
        slot: usize,
    },
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Its index: `channel << 12 | epoch`, the epoch changing with every server start and every
    /// reuse of the channel.
    pub index: ClientIndex,
    /// The name it registered with.
    pub name: String,
    /// Whether it wants keepalive pings.
    pub keepalive: bool,
}

/// What the keepalive scan decided about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Send it a `memclnt_keepalive` (the caller encodes it).
    Ping(ClientIndex),
    /// It has not answered, but its pid lives: a lazy client, kept.
    Lazy(ClientIndex),
    /// It has not answered and its pid is gone: reap it.
    Dead(ChannelId),
}

/// Why a client was reported stalled by [`ShmServer::stalled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stall {
    /// Replies wait for it and none was delivered for the stall timeout.
    Replies {
        /// Replies waiting: held back because its reply queue is full, or in the backlog.
        waiting: usize,
        /// Bytes the backlog counts against its bound.
        held_bytes: usize,
    },
    /// A request of its has waited for its segment heap's lock for the stall timeout.
    HeapLock,
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Replies {
                waiting,
                held_bytes,
            } => write!(
                f,
                "none of its {waiting} waiting replies could be delivered ({held_bytes} bytes held)"
            ),
            Self::HeapLock => f.write_str("its segment heap's lock stayed held"),
        }
    }
}

/// Why a send did not go through.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmSendError {
    /// No such registered client.
    UnknownClient,
    /// The backlog is full: the client does not drain its queue.
    Stuck {
        /// Bytes held.
        backlog: usize,
    },
    /// The channel is corrupt.
    Channel(SendError),
}

impl fmt::Display for ShmSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownClient => f.write_str("no such shared-memory client"),
            Self::Stuck { backlog } => {
                write!(f, "client does not drain its queue ({backlog} bytes held)")
            }
            Self::Channel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ShmSendError {}

/// One client's channel, server side.
struct ServerChannel {
    origin: Origin,
    segment: Arc<Segment>,
    layout: ChannelLayout,
    /// Replies: server rings, reply queue.
    tx: Sender,
    /// Requests: client rings, request queue.
    rx: Receiver,
    /// The server's end of the doorbell (private segments).
    doorbell: Option<EventFd>,
    registration: Option<Registration>,
    pid: u32,
    backlog: VecDeque<Vec<u8>>,
    backlog_bytes: usize,
    /// While replies wait for the client (held back or in the backlog): since when none has
    /// been delivered.
    undelivered_since: Option<Instant>,
    /// Waiting replies delivered so far (moved on from the batch held back or the backlog).
    delivered: u64,
    /// `delivered` when a reply last put the backlog past the pause threshold.
    paused_at: Option<u64>,
    last_heard: Instant,
    unanswered_pings: u32,
    consumed_at_scan: u64,
    received_at_scan: u64,
    created: Instant,
    bad_messages: u64,
    /// Deleted, waiting for the client to take its last replies before the slot is recycled.
    closing: Option<Instant>,
}

impl ServerChannel {
    /// Not read from for now (see [`BACKLOG_PAUSE`]).
    fn paused(&self, pause_bytes: usize) -> bool {
        self.backlog_bytes > pause_bytes && self.paused_at == Some(self.delivered)
    }
}

/// How long a deleted channel waits for its client to take the last replies.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// What the server shows about one channel.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// Its id.
    pub id: ChannelId,
    /// How it came.
    pub origin: Origin,
    /// Its registration, once registered.
    pub registration: Option<Registration>,
    /// The pid the client reported or the socket showed.
    pub pid: u32,
    /// Replies queued and not yet taken by the client.
    pub queue_len: u32,
    /// Replies waiting in the server's backlog.
    pub backlog: usize,
    /// Pings sent without an answer.
    pub unanswered_pings: u32,
    /// Server-to-client ring statistics.
    pub server_rings: SenderStats,
    /// Messages received per client ring, and refused offsets.
    pub received: (u64, u64),
    /// Segment name and size.
    pub segment: (String, usize),
}

/// The shared-memory side of the server.
pub struct ShmServer {
    config: ShmConfig,
    channels: Vec<Option<ServerChannel>>,
    generations: Vec<u16>,
    free: Vec<ChannelId>,
    epoch: u16,
    named: Option<NamedSegment>,
    table: Vec<u8>,
    /// Whether the last `flush_backlogs` delivered anything that waited.
    backlog_moved: bool,
    /// Ids of the channels there are (`channels[id]` is `Some`).
    live: Vec<ChannelId>,
}

struct NamedSegment {
    segment: Arc<Segment>,
    fifo_path: PathBuf,
    fifo: OwnedFd,
    slots: Vec<(ChannelLayout, Option<ChannelId>)>,
    structures: Arc<Vec<std::ops::Range<usize>>>,
}

impl fmt::Debug for ShmServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmServer")
            .field("channels", &self.len())
            .field("epoch", &self.epoch)
            .field("named", &self.named.as_ref().map(|n| n.fifo_path.clone()))
            .finish()
    }
}

/// The fds a pivoting client receives: the memfd of its segment and its doorbell.
#[derive(Debug)]
pub struct PivotFds {
    /// The segment.
    pub memfd: OwnedFd,
    /// Write 8 bytes (a `u64`) here to wake the server.
    pub doorbell: OwnedFd,
}

impl ShmServer {
    /// A transport with no channels; creates the named segment if configured. `table` is the
    /// encoded `sockclnt_create_reply` the named segment publishes for clients that attach by
    /// name (they have no socket to learn the table from).
    pub fn new(config: ShmConfig, table: Vec<u8>) -> Result<Self, ShmError> {
        // Random at every start, so an index from before a restart is refused (but for a
        // 1-in-4096 chance of an equal epoch).
        let epoch = random_u16() & EPOCH_MASK;
        let mut s = Self {
            config,
            channels: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            epoch,
            named: None,
            table,
            backlog_moved: false,
            live: Vec::new(),
        };
        if let Some(named) = s.config.named.clone() {
            s.named = Some(s.create_named(&named)?);
        }
        Ok(s)
    }

    /// The settings.
    pub fn config(&self) -> &ShmConfig {
        &self.config
    }

    /// Number of channels (registered or not).
    pub fn len(&self) -> usize {
        self.channels.iter().flatten().count()
    }

    /// True when there are no channels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of every channel.
    pub fn channel_ids(&self) -> Vec<ChannelId> {
        self.channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|_| i))
            .collect()
    }

    fn insert(&mut self, ch: ServerChannel) -> Option<ChannelId> {
        if self.free.is_empty() && self.channels.len() >= MAX_CHANNELS {
            return None;
        }
        // The lowest free id, so that the ids in use stay low and the table can shrink.
        let lowest = (0..self.free.len()).min_by_key(|&at| self.free[at]);
        let id = match lowest {
            Some(at) => self.free.swap_remove(at),
            None => {
                self.channels.push(None);
                // Generations outlive a shrinking table: an index of a channel that was at
                // this id before is still refused.
                if self.generations.len() < self.channels.len() {
                    self.generations.push(0);
                }
                self.channels.len() - 1
            }
        };
        self.generations[id] = self.generations[id].wrapping_add(1);
        self.channels[id] = Some(ch);
        self.live.push(id);
        Some(id)
    }

    fn index_of(&self, id: ChannelId) -> ClientIndex {
        let epoch = self.epoch.wrapping_add(self.generations[id]) & EPOCH_MASK;
        ClientIndex(((id as u32) << EPOCH_BITS) | u32::from(epoch))
    }

    /// The channel a client index names, if the index is current (right slot and epoch).
    #[doc(alias = "vl_api_client_index_to_registration")]
    pub fn channel_of(&self, index: ClientIndex) -> Option<ChannelId> {
        if index.0 & 0x8000_0000 != 0 {
            return None;
        }
        let id = (index.0 >> EPOCH_BITS) as usize;
        let ch = self.channels.get(id)?.as_ref()?;
        (ch.registration.as_ref()?.index == index).then_some(id)
    }

    /// Creates a private segment with one channel for the socket client `socket`.
    pub fn create_private(
        &mut self,
        socket: ClientIndex,
        pid: u32,
        requested_size: u64,
        config: Option<ChannelConfig>,
    ) -> Result<(ChannelId, PivotFds), ShmError> {
        let config = config.unwrap_or_else(|| self.config.channel.clone());
        let size = if requested_size == 0 {
            self.config.default_segment_size
        } else {
            usize::try_from(requested_size).map_err(|_| ShmError::BadSize(requested_size))?
        };
        // Room for the rings, queues and headers, plus heap for large messages.
        let need = config.ring_bytes() + 64 * 1024 + 2 * 16 * 1024;
        if size > self.config.max_segment_size || size < need {
            return Err(ShmError::BadSize(requested_size));
        }
        let segment = Segment::create(
            &SegmentOptions::new(size).name(&format!("vlib api client {:#x}", socket.0)),
        )
        .map_err(|e| ShmError::Segment(e.to_string()))?;
        let mut segment = segment;
        // A client holding the heap lock must not stall the server.
        segment.set_heap_lock_timeout(Duration::from_millis(2));
        // Nor make it walk the whole heap at every operation by asking for a repair: the heap
        // of a private segment needs none while its only other user lives, and its death closes
        // the socket, which reaps the channel.
        segment.set_heap_repair(false);
        let segment = Arc::new(segment);
        let layout = ChannelLayout::create(&segment, &config)?;
        segment.set_opaque(OPAQUE_ROOT, layout.base as u64);
        let structures = Arc::new(layout.structures());
        let doorbell = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| ShmError::Os("eventfd", e))?;
        let client_doorbell = doorbell
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ShmError::Os("dup", Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let memfd = segment
            .fd()
            .try_clone_to_owned()
            .map_err(|e| ShmError::Os("dup", Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let ch = Self::make_channel(
            Origin::Pivot { socket },
            segment.clone(),
            layout,
            structures,
            Some(doorbell),
            pid,
        )?;
        segment.set_ready();
        let id = self
            .insert(ch)
            .ok_or(ShmError::Segment("too many shared-memory clients".into()))?;
        Ok((
            id,
            PivotFds {
                memfd,
                doorbell: client_doorbell,
            },
        ))
    }

    fn make_channel(
        origin: Origin,
        segment: Arc<Segment>,
        layout: ChannelLayout,
        structures: Arc<Vec<std::ops::Range<usize>>>,
        doorbell: Option<EventFd>,
        pid: u32,
    ) -> Result<ServerChannel, ShmError> {
        let mut tx = Sender::attach(segment.clone(), &layout.server_rings, layout.reply)?;
        // The client sleeps on the reply queue's futex; wake it that way (the default), and never
        // wait: a full queue goes to the backlog instead. Replies are published in batches at
        // the end of each burst (`flush_channel`, `flush_backlogs`).
        tx.queue_mut().set_wait_policy(WaitPolicy::Poll);
        tx.set_batching(true);
        let mut rx = Receiver::attach(
            segment.clone(),
            &layout.client_rings,
            layout.request,
            structures,
        )?;
        rx.queue_mut().set_wait_policy(WaitPolicy::Poll);
        let now = Instant::now();
        Ok(ServerChannel {
            origin,
            segment,
            layout,
            tx,
            rx,
            doorbell,
            registration: None,
            pid,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            undelivered_since: None,
            delivered: 0,
            paused_at: None,
            last_heard: now,
            unanswered_pings: 0,
            consumed_at_scan: 0,
            received_at_scan: 0,
            created: now,
            bad_messages: 0,
            closing: None,
        })
    }

    /// The eventfd that wakes the server for channel `id` (private segments).
    pub fn doorbell_fd(&self, id: ChannelId) -> Option<BorrowedFd<'_>> {
        self.channels
            .get(id)?
            .as_ref()?
            .doorbell
            .as_ref()
            .map(AsFd::as_fd)
    }

    /// Empties a channel's doorbell after it woke the server.
    pub fn drain_doorbell(&self, id: ChannelId) {
        if let Some(Some(ch)) = self.channels.get(id) {
            if let Some(d) = &ch.doorbell {
                let _ = d.read();
            }
        }
    }

    /// The FIFO that wakes the server for the named segment.
    pub fn named_doorbell_fd(&self) -> Option<BorrowedFd<'_>> {
        self.named.as_ref().map(|n| n.fifo.as_fd())
    }

    /// Empties the named doorbell and adopts newly claimed slots; returns their channel ids.
    pub fn poll_named(&mut self) -> Vec<ChannelId> {
        let Some(named) = self.named.as_ref() else {
            return Vec::new();
        };
        let mut buf = [0u8; 4096];
        while matches!(nix::unistd::read(&named.fifo, &mut buf), Ok(n) if n > 0) {}
        let mut claimed = Vec::new();
        for (slot, (layout, channel)) in named.slots.iter().enumerate() {
            if channel.is_some() {
                continue;
            }
            let Some((st, pid)) = ChannelLayout::slot_words(named.segment.region(), layout.base)
            else {
                continue;
            };
            if crate::slot::channel_claimed(st) {
                claimed.push((slot, layout.clone(), pid.load(Ordering::Relaxed) as u32));
            }
        }
        let mut ids = Vec::new();
        for (slot, layout, pid) in claimed {
            let (segment, structures) = match self.named.as_ref() {
                Some(n) => (n.segment.clone(), n.structures.clone()),
                None => break,
            };
            match Self::make_channel(
                Origin::Named { slot },
                segment,
                layout,
                structures,
                None,
                pid,
            ) {
                Ok(ch) => {
                    // Named slots are few; the channel limit cannot be reached through them.
                    let Some(id) = self.insert(ch) else { break };
                    if let Some(n) = self.named.as_mut() {
                        n.slots[slot].1 = Some(id);
                    }
                    ids.push(id);
                }
                Err(_) => {
                    // The slot's queues were scribbled on before we attached: recycle it.
                    self.recycle_named_slot(slot);
                }
            }
        }
        ids
    }

    fn create_named(&self, cfg: &NamedConfig) -> Result<NamedSegment, ShmError> {
        let name = named_segment_name(cfg.prefix.as_deref()).map_err(ShmError::Segment)?;
        let _ = svm::segment::remove_stale(cfg.prefix.as_deref());
        let per_slot = cfg.channel.ring_bytes() + 64 * 1024;
        let size = per_slot * cfg.slots as usize + (1 << 20) + self.table.len();
        let perms = NamedPermissions::new(cfg.mode).owner(None, cfg.gid);
        let mut segment = Segment::create_named(
            &name,
            &SegmentOptions::new(size).name("vlib api named segment"),
            &perms,
        )
        .map_err(|e| ShmError::Segment(e.to_string()))?;
        segment.set_heap_lock_timeout(Duration::from_millis(2));
        let segment = Arc::new(segment);
        let words = 5 + cfg.slots as usize;
        let dir_off = segment
            .alloc(words * 8, 64)
            .map_err(|e| ShmError::Segment(e.to_string()))?;
        let table_off = segment
            .alloc(self.table.len().max(8), 64)
            .map_err(|e| ShmError::Segment(e.to_string()))?;
        let region = segment.region();
        region
            .write(table_off, &self.table)
            .map_err(|e| ShmError::Segment(e.to_string()))?;
        let mut slots = Vec::new();
        for _ in 0..cfg.slots {
            slots.push((ChannelLayout::create(&segment, &cfg.channel)?, None));
        }
        let d = region
            .words(dir_off, words)
            .ok_or(ShmError::Segment("directory out of range".into()))?;
        d[dir::N_SLOTS].store(u64::from(cfg.slots), Ordering::Relaxed);
        d[dir::TABLE_OFFSET].store(table_off as u64, Ordering::Relaxed);
        d[dir::TABLE_LEN].store(self.table.len() as u64, Ordering::Relaxed);
        d[dir::SERVER_PID].store(u64::from(std::process::id()), Ordering::Relaxed);
        for (i, (l, _)) in slots.iter().enumerate() {
            d[dir::SLOTS + i].store(l.base as u64, Ordering::Relaxed);
        }
        d[dir::MAGIC].store(dir::MAGIC_VALUE, Ordering::Release);
        segment.set_opaque(OPAQUE_ROOT, dir_off as u64);
        let mut structures: Vec<std::ops::Range<usize>> =
            slots.iter().flat_map(|(l, _)| l.structures()).collect();
        structures.push(dir_off..dir_off + words * 8);
        structures.push(table_off..table_off + self.table.len().max(8));
        let fifo_path = PathBuf::from(format!("{}{DOORBELL_SUFFIX}", name.path().display()));
        let _ = std::fs::remove_file(&fifo_path);
        nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(cfg.mode))
            .map_err(|e| ShmError::Os("mkfifo", e))?;
        // mkfifo's mode is filtered by the umask; set it exactly.
        let _ = std::fs::set_permissions(
            &fifo_path,
            std::os::unix::fs::PermissionsExt::from_mode(cfg.mode),
        );
        if let Some(g) = cfg.gid {
            let _ = nix::unistd::chown(&fifo_path, None, Some(nix::unistd::Gid::from_raw(g)));
        }
        // Read-write, so the FIFO never reports EOF when no client has it open.
        let fifo = nix::fcntl::open(
            &fifo_path,
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ShmError::Os("open fifo", e))?;
        segment.set_ready();
        Ok(NamedSegment {
            segment,
            fifo_path,
            fifo,
            slots,
            structures: Arc::new(structures),
        })
    }

    fn recycle_named_slot(&mut self, slot: usize) {
        if let Some(n) = self.named.as_mut() {
            if let Some((layout, channel)) = n.slots.get_mut(slot) {
                *channel = None;
                // Resetting republishes the header with the state word free.
                let _ = layout.reset(n.segment.region());
            }
        }
    }

    /// Takes the next message of channel `id` into `buf`. Any message counts as a sign of life
    /// (seen by the next keepalive scan).
    pub fn recv(&mut self, id: ChannelId, buf: &mut Vec<u8>) -> Result<bool, RecvError> {
        let pause = self.pause_bytes();
        let Some(Some(ch)) = self.channels.get_mut(id) else {
            return Ok(false);
        };
        if ch.closing.is_some() || ch.paused(pause) {
            return Ok(false);
        }
        // Signs of life are read from the receive count at the keepalive scan, not timed here:
        // no clock read per message.
        let r = ch.rx.try_recv(buf);
        // A request waiting for the heap lock is not a bad one; it is taken again later.
        if r.is_err() && !matches!(r, Err(RecvError::HeapBusy { .. })) {
            ch.bad_messages += 1;
        }
        r
    }

    /// The backlog size past which a client is not read from.
    fn pause_bytes(&self) -> usize {
        BACKLOG_PAUSE.min(self.config.max_backlog_bytes / 2)
    }

    /// True when channel `id` is not read from for now: its backlog is above the pause
    /// threshold, or a request of its waits for its heap lock.
    pub fn held(&self, id: ChannelId) -> bool {
        let pause = self.pause_bytes();
        self.channels
            .get(id)
            .and_then(|c| c.as_ref())
            .is_some_and(|c| c.paused(pause) || c.rx.heap_busy_since().is_some())
    }

    /// True when some channel is held (see [`ShmServer::held`]): nothing tells the loop when
    /// it may be read again, so it should look again soon rather than sleep.
    pub fn any_held(&self) -> bool {
        (0..self.channels.len()).any(|id| self.held(id))
    }

    /// Malformed messages or offsets channel `id` has sent.
    pub fn bad_messages(&self, id: ChannelId) -> u64 {
        self.channels
            .get(id)
            .and_then(|c| c.as_ref())
            .map_or(0, |c| c.bad_messages)
    }

    /// Counts a message of channel `id` that failed validation above this layer.
    pub fn note_bad_message(&mut self, id: ChannelId) {
        if let Some(Some(ch)) = self.channels.get_mut(id) {
            ch.bad_messages += 1;
        }
    }

    /// Registers channel `id` (on `memclnt_create`); returns its client index. A second
    /// registration of the same channel keeps its index and updates its name.
    pub fn register(&mut self, id: ChannelId, name: &str, keepalive: bool) -> Option<ClientIndex> {
        let index = self.index_of(id);
        let ch = self.channels.get_mut(id)?.as_mut()?;
        ch.registration = Some(Registration {
            index,
            name: name.to_owned(),
            keepalive,
        });
        Some(index)
    }

    /// The registration of channel `id`.
    pub fn registration(&self, id: ChannelId) -> Option<&Registration> {
        self.channels.get(id)?.as_ref()?.registration.as_ref()
    }

    /// How channel `id` came.
    pub fn origin(&self, id: ChannelId) -> Option<Origin> {
        Some(self.channels.get(id)?.as_ref()?.origin)
    }

    /// Offset of the published message table in the named segment, and its length.
    pub fn named_table(&self, id: ChannelId) -> Option<u64> {
        let ch = self.channels.get(id)?.as_ref()?;
        if !matches!(ch.origin, Origin::Named { .. }) {
            return None;
        }
        let n = self.named.as_ref()?;
        let dir_off = n.segment.opaque(OPAQUE_ROOT)? as usize;
        let d = n.segment.region().words(dir_off, 5)?;
        Some(d[dir::TABLE_OFFSET].load(Ordering::Relaxed))
    }

    /// Channels created by socket client `socket` (reaped with it).
    pub fn channels_of_socket(&self, socket: ClientIndex) -> Vec<ChannelId> {
        self.channels
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Some(ch) if ch.origin == (Origin::Pivot { socket }) => Some(i),
                _ => None,
            })
            .collect()
    }

    /// Sends to channel `id` whatever its registration state (the `memclnt_create_reply`).
    pub fn send_channel(&mut self, id: ChannelId, msg: &[u8]) -> Result<(), ShmSendError> {
        let max = self.config.max_backlog_bytes;
        let pause = self.pause_bytes();
        let ch = self
            .channels
            .get_mut(id)
            .and_then(|c| c.as_mut())
            .ok_or(ShmSendError::UnknownClient)?;
        if ch.backlog.is_empty() {
            match ch.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::NoBuffer | SendError::QueueFull) => {}
                Err(e) => return Err(ShmSendError::Channel(e)),
            }
        }
        let cost = msg.len() + BACKLOG_ENTRY_COST;
        if ch.backlog_bytes + cost > max {
            return Err(ShmSendError::Stuck {
                backlog: ch.backlog_bytes,
            });
        }
        ch.backlog_bytes += cost;
        ch.backlog.push_back(msg.to_vec());
        if ch.backlog_bytes > pause {
            ch.paused_at = Some(ch.delivered);
        }
        Ok(())
    }

    /// Sends to a registered client.
    pub fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), ShmSendError> {
        let id = self.channel_of(to).ok_or(ShmSendError::UnknownClient)?;
        self.send_channel(id, msg)
    }

    /// Publishes the replies channel `id` holds back (call it when a burst for it ends).
    pub fn flush_channel(&mut self, id: ChannelId) -> Result<(), ShmSendError> {
        match self.channels.get_mut(id) {
            Some(Some(ch)) => {
                let before = ch.tx.pending();
                let r = ch.tx.flush().map_err(ShmSendError::Channel);
                ch.delivered += before.saturating_sub(ch.tx.pending()) as u64;
                r
            }
            _ => Ok(()),
        }
    }

    /// Publishes held-back replies and retries backlogged ones; returns the channels whose
    /// backlog is stuck or broken.
    pub fn flush_backlogs(&mut self) -> Vec<(ChannelId, ShmSendError)> {
        let mut failed = Vec::new();
        let mut now = None;
        self.backlog_moved = false;
        for (id, slot) in self.channels.iter_mut().enumerate() {
            let Some(ch) = slot.as_mut() else { continue };
            let before = ch.tx.pending() + ch.backlog.len();
            if let Err(e) = ch.tx.flush() {
                failed.push((id, ShmSendError::Channel(e)));
                continue;
            }
            while let Some(msg) = ch.backlog.front() {
                match ch.tx.try_send(msg) {
                    Ok(()) => {
                        ch.backlog_bytes -= msg.len() + BACKLOG_ENTRY_COST;
                        ch.backlog.pop_front();
                    }
                    Err(SendError::NoBuffer | SendError::QueueFull) => break,
                    Err(e) => {
                        failed.push((id, ShmSendError::Channel(e)));
                        break;
                    }
                }
            }
            if let Err(e) = ch.tx.flush() {
                failed.push((id, ShmSendError::Channel(e)));
            }
            // The stall clock runs while replies wait and none of them leaves.
            let after = ch.tx.pending() + ch.backlog.len();
            if after == 0 {
                ch.undelivered_since = None;
            } else if after < before || ch.undelivered_since.is_none() {
                ch.undelivered_since = Some(*now.get_or_insert_with(Instant::now));
            }
            self.backlog_moved |= after < before;
            ch.delivered += before.saturating_sub(after) as u64;
        }
        failed
    }

    /// True when the last [`ShmServer::flush_backlogs`] delivered some of the replies that were
    /// waiting. When replies wait and none moved, the client is not draining: retrying at once
    /// would only spin.
    pub fn backlog_moved(&self) -> bool {
        self.backlog_moved
    }

    /// Channels that have kept the server waiting for longer than the stall timeout, and why
    /// (see [`ShmConfig::stall_timeout`]).
    pub fn stalled(&self, now: Instant) -> Vec<(ChannelId, Stall)> {
        let timeout = self.config.stall_timeout;
        let over = |since: Option<Instant>| since.is_some_and(|t| now.duration_since(t) > timeout);
        let mut out = Vec::new();
        for (id, slot) in self.channels.iter().enumerate() {
            let Some(ch) = slot.as_ref() else { continue };
            if ch.closing.is_some() {
                continue;
            }
            if over(ch.undelivered_since) {
                out.push((
                    id,
                    Stall::Replies {
                        waiting: ch.tx.pending() + ch.backlog.len(),
                        held_bytes: ch.backlog_bytes,
                    },
                ));
            } else if over(ch.rx.heap_busy_since()) || over(ch.tx.heap_busy_since()) {
                out.push((id, Stall::HeapLock));
            }
        }
        out
    }

    /// True when some channel has replies waiting in its backlog or held back unpublished.
    pub fn has_backlog(&self) -> bool {
        self.channels
            .iter()
            .flatten()
            .any(|c| !c.backlog.is_empty() || c.tx.pending() > 0)
    }

    /// Number of channel slots (some may be empty): channel ids are below it. New channels take
    /// the lowest free id and empty slots at the end are given back, so it follows the highest
    /// id in use; [`ShmServer::live_channels`] lists the channels there are.
    pub fn capacity(&self) -> usize {
        self.channels.len()
    }

    /// The ids of the channels there are now, in no particular order: polling them costs what
    /// there is, not what there once was.
    pub fn live_channels(&self) -> &[ChannelId] {
        &self.live
    }

    /// Calls `f` with every registered client index.
    pub fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        for ch in self.channels.iter().flatten() {
            if let Some(r) = &ch.registration {
                f(r.index);
            }
        }
    }

    /// Announces, on every channel, that the server is about to sleep, with one barrier for
    /// all of them. `None` (nothing announced) if a request is already waiting somewhere, or a
    /// queue is corrupt (the next poll reports it); `Some(reliable)` otherwise: sleep, for at
    /// most a millisecond if `reliable` is false, then call [`ShmServer::finish_park`].
    pub fn prepare_park(&mut self) -> Option<bool> {
        let pause = self.pause_bytes();
        let mut consumers: Vec<&mut svm::queue::Consumer> = self
            .channels
            .iter_mut()
            .flatten()
            // A held channel's waiting requests must not keep the loop awake.
            .filter(|c| c.closing.is_none() && !c.paused(pause) && c.rx.heap_busy_since().is_none())
            .map(|c| c.rx.queue_mut())
            .collect();
        svm::queue::prepare_park_all(&mut consumers).ok().flatten()
    }

    /// Withdraws the announcement made by [`ShmServer::prepare_park`].
    pub fn finish_park(&mut self) {
        for ch in self.channels.iter_mut().flatten() {
            ch.rx.queue_mut().finish_park();
        }
    }

    /// Stops recycling named slots, as the server stops: a client still attached by name then
    /// finds the server gone (the doorbell loses its reader) instead of its queues reset under
    /// it, and no new claim is adopted. The segment goes when the transport is dropped.
    pub fn begin_shutdown(&mut self) {
        if let Some(n) = self.named.as_mut() {
            n.slots.clear();
        }
    }

    /// Removes channel `id`: its segment is unmapped once nobody uses it (a private segment at
    /// once; a named slot is recycled). Returns the registration it had.
    pub fn remove(&mut self, id: ChannelId) -> Option<(Origin, Option<Registration>)> {
        let mut ch = self.channels.get_mut(id)?.take()?;
        // Publish what is held back (the answer to a delete, for one): the client keeps its
        // mapping and may still read it.
        let _ = ch.tx.flush();
        self.free.push(id);
        if let Some(at) = self.live.iter().position(|&l| l == id) {
            self.live.swap_remove(at);
        }
        // Empty slots at the end go: what the loop scans every turn is what there is, not the
        // most there ever were.
        let before = self.channels.len();
        while matches!(self.channels.last(), Some(None)) {
            self.channels.pop();
        }
        if self.channels.len() < before {
            let len = self.channels.len();
            self.free.retain(|&f| f < len);
        }
        let origin = ch.origin;
        let registration = ch.registration.clone();
        drop(ch);
        if let Origin::Named { slot } = origin {
            self.recycle_named_slot(slot);
        }
        Some((origin, registration))
    }

    /// Unregisters channel `id` now and removes it once the client has taken the replies still
    /// queued for it (the answer to its `memclnt_delete`, typically), or after a short timeout.
    pub fn remove_after_drain(&mut self, id: ChannelId) -> Option<(Origin, Option<Registration>)> {
        let ch = self.channels.get_mut(id)?.as_mut()?;
        if !matches!(ch.origin, Origin::Named { .. }) {
            // A private segment stays mapped in the client after the server lets go of it.
            return self.remove(id);
        }
        let _ = ch.tx.flush();
        ch.closing = Some(Instant::now());
        Some((ch.origin, ch.registration.take()))
    }

    /// True when some channel waits in [`ShmServer::remove_after_drain`].
    pub fn has_closing(&self) -> bool {
        self.channels.iter().flatten().any(|c| c.closing.is_some())
    }

    /// Removes the closing channels that have drained or waited long enough; returns them.
    pub fn reap_drained(&mut self) -> Vec<ChannelId> {
        let mut done = Vec::new();
        for (id, slot) in self.channels.iter_mut().enumerate() {
            let Some(ch) = slot.as_mut() else { continue };
            let Some(since) = ch.closing else { continue };
            if ch.tx.queued().is_ok_and(|q| q == 0) || since.elapsed() > DRAIN_TIMEOUT {
                done.push(id);
            }
        }
        for &id in &done {
            self.remove(id);
        }
        done
    }

    /// The keepalive scan (call it every few seconds): decides, for each registered client
    /// that wants pings, whether it has been heard from, needs a ping, is lazy or is dead. A
    /// client whose reply queue drained since the last scan counts as heard.
    #[doc(alias = "vl_mem_api_dead_client_scan")]
    pub fn keepalive_scan(&mut self, now: Instant) -> Vec<Liveness> {
        let interval = self.config.keepalive_interval;
        let max = self.config.max_unanswered_pings;
        let mut out = Vec::new();
        for (id, slot) in self.channels.iter_mut().enumerate() {
            let Some(ch) = slot.as_mut() else { continue };
            if ch.closing.is_some() {
                continue;
            }
            let Some(reg) = ch.registration.as_ref() else {
                // A claimed slot that never registers is dead once its pid is.
                if now.duration_since(ch.created) > interval && !pid_alive(ch.pid) {
                    out.push(Liveness::Dead(id));
                }
                continue;
            };
            if !reg.keepalive {
                continue;
            }
            let consumed = ch
                .tx
                .queued()
                .map(|q| ch.tx.stats().sent.saturating_sub(u64::from(q)))
                .unwrap_or(0);
            let received = ch.rx.counts().0;
            if consumed != ch.consumed_at_scan || received != ch.received_at_scan {
                ch.consumed_at_scan = consumed;
                ch.received_at_scan = received;
                ch.last_heard = now;
                ch.unanswered_pings = 0;
            }
            if now.duration_since(ch.last_heard) < interval {
                ch.unanswered_pings = 0;
            } else if ch.unanswered_pings >= max {
                if pid_alive(ch.pid) {
                    ch.unanswered_pings = 0;
                    ch.last_heard = now;
                    out.push(Liveness::Lazy(reg.index));
                } else {
                    out.push(Liveness::Dead(id));
                }
            } else {
                ch.unanswered_pings += 1;
                out.push(Liveness::Ping(reg.index));
            }
        }
        out
    }

    /// Marks channel `id` as heard from (a keepalive reply arrived).
    pub fn note_heard(&mut self, id: ChannelId) {
        if let Some(Some(ch)) = self.channels.get_mut(id) {
            ch.last_heard = Instant::now();
            ch.unanswered_pings = 0;
        }
    }

    /// What `show api clients` and `show api ring` print about channel `id`.
    pub fn info(&mut self, id: ChannelId) -> Option<ChannelInfo> {
        let ch = self.channels.get_mut(id)?.as_mut()?;
        Some(ChannelInfo {
            id,
            origin: ch.origin,
            registration: ch.registration.clone(),
            pid: ch.pid,
            queue_len: ch.tx.queued().unwrap_or(u32::MAX),
            backlog: ch.backlog.len(),
            unanswered_pings: ch.unanswered_pings,
            server_rings: ch.tx.stats(),
            received: ch.rx.counts(),
            segment: (ch.segment.name().to_owned(), ch.segment.size()),
        })
    }

    /// The layout of channel `id` (for tests and `show` output).
    pub fn layout(&self, id: ChannelId) -> Option<&ChannelLayout> {
        Some(&self.channels.get(id)?.as_ref()?.layout)
    }
}

impl Drop for ShmServer {
    fn drop(&mut self) {
        if let Some(n) = &self.named {
            let _ = std::fs::remove_file(&n.fifo_path);
        }
    }
}

/// True unless `kill(pid, 0)` says the process is gone. A pid of 0 (unknown) counts as alive.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return true;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None),
        Err(Errno::ESRCH)
    )
}

/// Wakes the server through a named segment's doorbell FIFO (opened by clients).
pub fn open_named_doorbell(name: &ShmName) -> Result<EventFdNotifier, Errno> {
    let path = format!("{}{DOORBELL_SUFFIX}", name.path().display());
    let fd = nix::fcntl::open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(EventFdNotifier::new(fd))
}

pub(crate) use dir::{
    MAGIC as DIR_MAGIC, MAGIC_VALUE as DIR_MAGIC_VALUE, N_SLOTS as DIR_N_SLOTS, SLOTS as DIR_SLOTS,
    TABLE_LEN as DIR_TABLE_LEN, TABLE_OFFSET as DIR_TABLE_OFFSET,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ShmLink;

    fn server(named: Option<NamedConfig>) -> ShmServer {
        let config = ShmConfig {
            named,
            ..ShmConfig::default()
        };
        ShmServer::new(config, b"table bytes".to_vec()).unwrap()
    }

    #[test]
    fn pivot_channel_carries_both_ways_and_registers() {
        let mut s = server(None);
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0000), 1, 0, None)
            .unwrap();
        let mut link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        link.send(&[0, 1, 2, 3], Duration::from_secs(1)).unwrap();
        let mut buf = Vec::new();
        assert!(s.recv(id, &mut buf).unwrap());
        assert_eq!(buf, [0, 1, 2, 3]);
        // The doorbell rang only if the server had announced it sleeps; it had not.
        let index = s.register(id, "client", true).unwrap();
        assert_eq!(s.channel_of(index), Some(id));
        assert_eq!(index.0 >> EPOCH_BITS, id as u32);
        assert_eq!(
            s.channel_of(ClientIndex(index.0 ^ 0x01)),
            None,
            "wrong epoch refused"
        );
        s.send(index, &[9, 9]).unwrap();
        // Replies are published in batches, when the owner flushes.
        assert!(
            !link.try_recv(&mut buf).unwrap(),
            "held back until the flush"
        );
        s.flush_channel(id).unwrap();
        link.recv(&mut buf, Duration::from_secs(1)).unwrap();
        assert_eq!(buf, [9, 9]);
        assert_eq!(s.channels_of_socket(ClientIndex(0x8100_0000)), vec![id]);
        assert_eq!(s.live_channels(), [id]);
        assert!(s.remove(id).is_some());
        assert_eq!(s.channel_of(index), None);
        assert!(s.live_channels().is_empty());
        assert_eq!(s.capacity(), 0, "the table shrinks back");
        // The next channel at that id has another index: the old one stays refused.
        let (again, fds) = s
            .create_private(ClientIndex(0x8100_0000), 1, 0, None)
            .unwrap();
        assert_eq!(again, id);
        let _link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        let index2 = s.register(again, "client", true).unwrap();
        assert_ne!(index2, index);
        assert_eq!(s.channel_of(index), None);
        assert_eq!(s.channel_of(index2), Some(again));
    }

    #[test]
    fn the_channel_table_follows_what_there_is_not_what_there_was() {
        let mut s = server(None);
        let pid = std::process::id();
        let mut ids: Vec<ChannelId> = (0..20)
            .map(|i| {
                s.create_private(ClientIndex(0x8100_0100 + i), pid, 0, None)
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(s.capacity(), 20);
        // A storm passes: all but two go, in no particular order.
        let keep = [ids[3], ids[7]];
        ids.retain(|id| !keep.contains(id));
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 0 {
                s.remove(*id);
            }
        }
        for (i, id) in ids.iter().enumerate() {
            if i % 2 == 1 {
                s.remove(*id);
            }
        }
        assert_eq!(s.capacity(), 8, "up to the highest id in use");
        let mut live = s.live_channels().to_vec();
        live.sort_unstable();
        assert_eq!(live, keep);
        // New channels fill the lowest holes first.
        let next = s
            .create_private(ClientIndex(0x8100_0200), pid, 0, None)
            .unwrap()
            .0;
        assert_eq!(next, 0);
        assert_eq!(s.capacity(), 8);
    }

    #[test]
    fn a_parked_server_is_woken_through_the_doorbell() {
        let mut s = server(None);
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0001), 1, 0, None)
            .unwrap();
        let mut link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        assert!(s.prepare_park().is_some(), "nothing pending");
        link.send(&[0, 7], Duration::from_secs(1)).unwrap();
        let fd = s.doorbell_fd(id).unwrap();
        let mut poll = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let n = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(1000u16)).unwrap();
        assert_eq!(n, 1, "doorbell did not ring");
        s.finish_park();
        s.drain_doorbell(id);
        let mut buf = Vec::new();
        assert!(s.recv(id, &mut buf).unwrap());
        // With a request waiting, the server must not park.
        link.send(&[0, 8], Duration::from_secs(1)).unwrap();
        assert!(s.prepare_park().is_none());
    }

    #[test]
    fn a_full_client_queue_goes_to_the_backlog_then_reports_stuck() {
        let mut s = server(None);
        s.config.max_backlog_bytes = 4096;
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0002), 1, 0, None)
            .unwrap();
        let _link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        let index = s.register(id, "sleeper", true).unwrap();
        let msg = [0u8; 100];
        let mut stuck = false;
        for _ in 0..5000 {
            match s.send(index, &msg) {
                Ok(()) => {}
                Err(ShmSendError::Stuck { .. }) => {
                    stuck = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(stuck, "backlog never filled");
        assert!(s.has_backlog());
    }

    #[test]
    fn the_backlog_bound_counts_bookkeeping_and_a_client_that_never_drains_stalls() {
        let mut s = server(None);
        s.config.max_backlog_bytes = 64 << 10;
        s.config.stall_timeout = Duration::from_millis(20);
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0005), 1, 0, None)
            .unwrap();
        let mut link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        let index = s.register(id, "sleeper", true).unwrap();
        // Tiny replies: their bookkeeping, not their length, is what fills server memory.
        let msg = [0u8; 10];
        let mut sent = 0usize;
        loop {
            match s.send(index, &msg) {
                Ok(()) => sent += 1,
                Err(ShmSendError::Stuck { backlog }) => {
                    assert!(backlog <= 64 << 10);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(sent < 100_000, "the backlog never filled");
        }
        let held = s.info(id).unwrap().backlog;
        assert!(held > 0);
        assert!(
            held <= (64 << 10) / (msg.len() + BACKLOG_ENTRY_COST),
            "{held} replies of {} bytes held under a 64 KiB bound",
            msg.len()
        );
        // Nothing moves: the flush says so, and once the timeout has passed it is stalled.
        assert!(s.flush_backlogs().is_empty());
        assert!(!s.backlog_moved());
        assert!(s.stalled(Instant::now()).is_empty(), "not yet");
        std::thread::sleep(Duration::from_millis(30));
        s.flush_backlogs();
        assert!(matches!(
            s.stalled(Instant::now()).as_slice(),
            [(i, Stall::Replies { held_bytes, .. })] if *i == id && *held_bytes > 0
        ));
        // The client drains: the replies move, the clock restarts, and once everything has
        // been delivered nothing is stalled any more.
        let mut buf = Vec::new();
        let mut taken = 0;
        while taken < sent {
            while link.try_recv(&mut buf).unwrap() {
                taken += 1;
            }
            s.flush_backlogs();
            if taken < sent {
                assert!(s.backlog_moved(), "{taken} of {sent}");
            }
            assert!(s.stalled(Instant::now()).is_empty());
        }
        assert!(!s.has_backlog());
    }

    #[test]
    fn a_client_that_does_not_take_its_replies_is_not_read_until_it_does() {
        let mut s = server(None);
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0006), 1, 0, None)
            .unwrap();
        let mut link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        let index = s.register(id, "flooder", true).unwrap();
        let mut buf = Vec::new();
        let reply = [7u8; 100];
        let cost = reply.len() + BACKLOG_ENTRY_COST;
        // It keeps its queue full and never reads; the server answers every request it takes,
        // until a reply puts the backlog past the threshold.
        let mut taken = 0;
        loop {
            while link.send(&[0, 1], Duration::ZERO).is_ok() {}
            if !s.recv(id, &mut buf).unwrap() {
                break;
            }
            taken += 1;
            s.send(index, &reply).unwrap();
            s.flush_channel(id).unwrap();
            assert!(taken < 100_000, "never paused");
        }
        assert!(s.held(id) && s.any_held());
        let held = s.info(id).unwrap().backlog;
        assert!(
            held * cost <= BACKLOG_PAUSE + cost,
            "{held} replies held past the pause threshold"
        );
        // Its requests wait, untouched, and the loop may sleep meanwhile.
        s.flush_backlogs();
        assert!(!s.recv(id, &mut buf).unwrap());
        assert!(
            s.prepare_park().is_some(),
            "a paused channel must not keep the loop awake"
        );
        s.finish_park();
        // One reply taken is enough: it is read again, until a reply past the threshold.
        assert!(link.try_recv(&mut buf).unwrap());
        s.flush_backlogs();
        assert!(!s.held(id));
        assert!(s.recv(id, &mut buf).unwrap());
        // (The client took a batch of offsets off its queue: a few replies moved on.)
        let mut more = 0;
        while !s.held(id) {
            s.send(index, &reply).unwrap();
            more += 1;
            assert!(more <= 64, "not paused again");
        }
    }

    #[test]
    fn keepalive_pings_then_declares_a_dead_pid() {
        let mut s = server(None);
        s.config.keepalive_interval = Duration::from_millis(1);
        // A pid that cannot exist.
        let (id, fds) = s
            .create_private(ClientIndex(0x8100_0003), i32::MAX as u32 - 1, 0, None)
            .unwrap();
        let _link = ShmLink::from_pivot(fds.memfd, fds.doorbell, WaitPolicy::Poll).unwrap();
        let index = s.register(id, "ghost", true).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        assert_eq!(s.keepalive_scan(t), vec![Liveness::Ping(index)]);
        assert_eq!(s.keepalive_scan(t), vec![Liveness::Ping(index)]);
        assert_eq!(s.keepalive_scan(t), vec![Liveness::Dead(id)]);
        // A live pid (ours) is lazy, not dead.
        let (id2, fds2) = s
            .create_private(ClientIndex(0x8100_0004), std::process::id(), 0, None)
            .unwrap();
        let _l2 = ShmLink::from_pivot(fds2.memfd, fds2.doorbell, WaitPolicy::Poll).unwrap();
        let i2 = s.register(id2, "lazy", true).unwrap();
        s.remove(id);
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        s.keepalive_scan(t);
        s.keepalive_scan(t);
        assert_eq!(s.keepalive_scan(t), vec![Liveness::Lazy(i2)]);
        // An opted-out client is never pinged.
        s.register(id2, "quiet", false);
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.keepalive_scan(Instant::now()).is_empty());
    }

    #[test]
    fn named_segment_slots_are_claimed_used_and_recycled() {
        let prefix = format!("vlibmem-test-{}", std::process::id());
        let named = NamedConfig {
            prefix: Some(prefix.clone()),
            slots: 2,
            ..NamedConfig::default()
        };
        let mut s = server(Some(named));
        let mut a = ShmLink::attach_named(Some(&prefix), WaitPolicy::Poll).unwrap();
        assert_eq!(a.published_table(), Some(&b"table bytes"[..]));
        let mut b = ShmLink::attach_named(Some(&prefix), WaitPolicy::Poll).unwrap();
        assert!(matches!(
            ShmLink::attach_named(Some(&prefix), WaitPolicy::Poll),
            Err(crate::client::ShmConnectError::NoFreeSlot)
        ));
        let ids = s.poll_named();
        assert_eq!(ids.len(), 2);
        a.send(&[0, 1], Duration::from_secs(1)).unwrap();
        b.send(&[0, 2], Duration::from_secs(1)).unwrap();
        let mut buf = Vec::new();
        assert!(s.recv(ids[0], &mut buf).unwrap());
        assert!(s.recv(ids[1], &mut buf).unwrap());
        // One leaves; its slot is recycled and can be claimed again.
        s.remove(ids[0]);
        drop(a);
        let _c = ShmLink::attach_named(Some(&prefix), WaitPolicy::Poll).unwrap();
        assert_eq!(s.poll_named().len(), 1);
        drop(s);
        assert!(
            ShmLink::attach_named(Some(&prefix), WaitPolicy::Poll).is_err(),
            "named segment must be gone after the server"
        );
    }
}
