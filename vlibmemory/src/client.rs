//! The client side of the shared-memory transport: a [`ShmLink`] moves whole messages to and
//! from the server through one channel, either in a private segment received over the socket
//! (the pivot) or in a slot of the named segment claimed by name.
//!
//! The link knows nothing about message contents: registering (`memclnt_create`), matching
//! replies and answering keepalives belong to the client above it (`vlibsocket::client`).

use std::fmt;
use std::os::fd::OwnedFd;
use std::time::Duration;

use svm::notify::{EventFdNotifier, Notifier, WaitPolicy};
use svm::segment::{AttachOptions, Segment};
use vppinfra::sync::{Arc, Ordering};

use crate::channel::{ChannelError, ChannelLayout, Receiver, RecvError, SendError, Sender};
use crate::server::{
    DIR_MAGIC, DIR_MAGIC_VALUE, DIR_N_SLOTS, DIR_SLOTS, DIR_TABLE_LEN, DIR_TABLE_OFFSET,
    OPAQUE_ROOT, named_segment_name, open_named_doorbell,
};

/// Why a link could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmConnectError {
    /// The segment could not be attached.
    Segment(String),
    /// No named segment under that name: no server publishes one.
    NoServer(String),
    /// The channel in it is not valid.
    Channel(ChannelError),
    /// Every slot of the named segment is taken.
    NoFreeSlot,
    /// The named segment's directory is not valid.
    BadDirectory(&'static str),
    /// The doorbell could not be opened.
    Doorbell(nix::errno::Errno),
}

impl fmt::Display for ShmConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment(e) => write!(f, "cannot attach the segment: {e}"),
            Self::NoServer(name) => write!(f, "no server publishes {name}"),
            Self::Channel(e) => write!(f, "{e}"),
            Self::NoFreeSlot => f.write_str("every client slot of the named segment is taken"),
            Self::BadDirectory(what) => write!(f, "bad named-segment directory: {what}"),
            Self::Doorbell(e) => write!(f, "cannot open the server's doorbell: {e}"),
        }
    }
}

impl std::error::Error for ShmConnectError {}

impl From<ChannelError> for ShmConnectError {
    fn from(e: ChannelError) -> Self {
        Self::Channel(e)
    }
}

/// One client's end of a channel.
pub struct ShmLink {
    segment: Arc<Segment>,
    tx: Sender,
    rx: Receiver,
    table: Option<Vec<u8>>,
    doorbell_kick: Option<EventFdNotifier>,
}

impl fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmLink")
            .field("segment", &self.segment.name())
            .finish_non_exhaustive()
    }
}

impl ShmLink {
    /// Attaches to the private segment `memfd` received after `sock_init_shm`, waking the
    /// server through `doorbell`. `wait` is how a blocked receive waits.
    pub fn from_pivot(
        memfd: OwnedFd,
        doorbell: OwnedFd,
        wait: WaitPolicy,
    ) -> Result<Self, ShmConnectError> {
        let segment = Segment::attach(
            memfd,
            &AttachOptions::default().ready_timeout(Duration::from_secs(2)),
        )
        .map_err(|e| ShmConnectError::Segment(e.to_string()))?;
        let segment = Arc::new(segment);
        let base = segment
            .opaque(OPAQUE_ROOT)
            .ok_or(ShmConnectError::BadDirectory("no channel"))? as usize;
        let layout = ChannelLayout::read(segment.region(), base)?;
        let notifier: Box<dyn Notifier> = Box::new(EventFdNotifier::new(doorbell));
        Self::attach_ends(segment, &layout, notifier, wait, None, None)
    }

    /// Attaches by name to the server's named segment (`prefix` as the server was given),
    /// claiming a free slot.
    ///
    /// The server is woken through a FIFO beside the segment; once the server is gone, a write
    /// to it raises `SIGPIPE`. Rust programs ignore `SIGPIPE`; a C host must ignore or block it
    /// (libvlibclient does).
    pub fn attach_named(prefix: Option<&str>, wait: WaitPolicy) -> Result<Self, ShmConnectError> {
        let name = named_segment_name(prefix).map_err(ShmConnectError::Segment)?;
        let segment = Segment::attach_named(
            &name,
            &AttachOptions::default().ready_timeout(Duration::from_secs(2)),
        )
        .map_err(|e| match e {
            svm::segment::SegmentAttachError::Os {
                errno: nix::errno::Errno::ENOENT,
                ..
            } => ShmConnectError::NoServer(name.path().display().to_string()),
            e => ShmConnectError::Segment(e.to_string()),
        })?;
        let segment = Arc::new(segment);
        let region = segment.region();
        let dir_off = segment
            .opaque(OPAQUE_ROOT)
            .ok_or(ShmConnectError::BadDirectory("no directory"))? as usize;
        let head = region
            .words(dir_off, DIR_SLOTS)
            .ok_or(ShmConnectError::BadDirectory("out of the segment"))?;
        if head[DIR_MAGIC].load(Ordering::Acquire) != DIR_MAGIC_VALUE {
            return Err(ShmConnectError::BadDirectory("magic"));
        }
        let n_slots = head[DIR_N_SLOTS].load(Ordering::Relaxed).min(4096) as usize;
        let table_off = head[DIR_TABLE_OFFSET].load(Ordering::Relaxed) as usize;
        let table_len = head[DIR_TABLE_LEN].load(Ordering::Relaxed) as usize;
        if table_len > 64 << 20 {
            return Err(ShmConnectError::BadDirectory("table length"));
        }
        let mut table = vec![0u8; table_len];
        region
            .read(table_off, &mut table)
            .map_err(|_| ShmConnectError::BadDirectory("table out of the segment"))?;
        let slots: Vec<usize> = region
            .words(dir_off + DIR_SLOTS * 8, n_slots)
            .ok_or(ShmConnectError::BadDirectory("slots out of the segment"))?
            .iter()
            .map(|w| w.load(Ordering::Relaxed) as usize)
            .collect();
        // Everything that can fail comes before the claim: a claimed slot is only given back by
        // the server, once the claiming process is gone.
        let mut notifier = Some(open_named_doorbell(&name).map_err(ShmConnectError::Doorbell)?);
        let mut kick = Some(open_named_doorbell(&name).map_err(ShmConnectError::Doorbell)?);
        let pid = u64::from(std::process::id());
        for base in slots {
            let Some((st, pid_word)) = ChannelLayout::slot_words(region, base) else {
                continue;
            };
            let Ok(layout) = ChannelLayout::read(region, base) else {
                continue;
            };
            if !crate::slot::claim_channel(st, pid_word, pid) {
                continue;
            }
            let (Some(notifier), Some(kick)) = (notifier.take(), kick.take()) else {
                break;
            };
            let link = Self::attach_ends(
                segment.clone(),
                &layout,
                Box::new(notifier),
                wait,
                Some(table),
                Some(kick),
            )?;
            // The server sleeps until its doorbell rings: tell it about the claim.
            link.kick();
            return Ok(link);
        }
        Err(ShmConnectError::NoFreeSlot)
    }

    fn attach_ends(
        segment: Arc<Segment>,
        layout: &ChannelLayout,
        notifier: Box<dyn Notifier>,
        wait: WaitPolicy,
        table: Option<Vec<u8>>,
        doorbell_kick: Option<EventFdNotifier>,
    ) -> Result<Self, ShmConnectError> {
        let mut tx = Sender::attach(segment.clone(), &layout.client_rings, layout.request)?;
        tx.queue_mut().set_notifier(Some(notifier));
        tx.queue_mut().set_wait_policy(wait);
        let mut rx = Receiver::attach(
            segment.clone(),
            &layout.server_rings,
            layout.reply,
            Arc::new(layout.structures()),
        )?;
        rx.queue_mut().set_wait_policy(wait);
        Ok(Self {
            segment,
            tx,
            rx,
            table,
            doorbell_kick,
        })
    }

    /// True when the server is known to be gone: the named segment's doorbell FIFO has no
    /// reader left (its write end reports an error). A pivoted link cannot tell; its socket does.
    pub fn peer_gone(&self) -> bool {
        doorbell_gone(self.doorbell_kick.as_ref())
    }

    /// Rings the server's doorbell unconditionally (named segment: after a claim).
    fn kick(&self) {
        if let Some(k) = &self.doorbell_kick {
            let _ = nix::unistd::write(k.fd(), &1u64.to_ne_bytes());
        }
    }

    /// The encoded `sockclnt_create_reply` a named segment publishes (the message table).
    pub fn published_table(&self) -> Option<&[u8]> {
        self.table.as_deref()
    }

    /// Sends one message, waiting up to `timeout` for a buffer and queue room.
    pub fn send(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.tx.try_send(msg) {
            Err(SendError::NoBuffer | SendError::QueueFull) => {}
            other => return other,
        }
        self.tx.send_timeout(msg, timeout)
    }

    /// The next message, if one is waiting.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<bool, RecvError> {
        self.rx.try_recv(buf)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        self.rx.recv_timeout(buf, timeout)
    }

    /// Changes how a blocked receive waits.
    pub fn set_wait_policy(&mut self, wait: WaitPolicy) {
        self.rx.queue_mut().set_wait_policy(wait);
        self.tx.queue_mut().set_wait_policy(wait);
    }

    /// Statistics of the client-to-server rings.
    pub fn stats(&self) -> crate::channel::SenderStats {
        self.tx.stats()
    }

    /// The segment's name.
    pub fn segment_name(&self) -> &str {
        self.segment.name()
    }

    /// Splits the link into a sending half and a receiving half, for a client that sends from
    /// one thread and receives in another. Both keep the segment mapped; the receiving half
    /// keeps [`ShmReceiver::peer_gone`].
    pub fn split(self) -> (ShmSender, ShmReceiver) {
        (
            ShmSender {
                _segment: self.segment.clone(),
                tx: self.tx,
            },
            ShmReceiver {
                _segment: self.segment,
                rx: self.rx,
                table: self.table,
                doorbell_kick: self.doorbell_kick,
            },
        )
    }
}

/// The sending half of a [`ShmLink`].
pub struct ShmSender {
    _segment: Arc<Segment>,
    tx: Sender,
}

impl fmt::Debug for ShmSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmSender").finish_non_exhaustive()
    }
}

impl ShmSender {
    /// Sends one message, waiting up to `timeout` for a buffer and queue room.
    pub fn send(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.tx.try_send(msg) {
            Err(SendError::NoBuffer | SendError::QueueFull) => {}
            other => return other,
        }
        self.tx.send_timeout(msg, timeout)
    }

    /// Statistics of the client-to-server rings.
    pub fn stats(&self) -> crate::channel::SenderStats {
        self.tx.stats()
    }
}

/// The receiving half of a [`ShmLink`].
pub struct ShmReceiver {
    _segment: Arc<Segment>,
    rx: Receiver,
    table: Option<Vec<u8>>,
    doorbell_kick: Option<EventFdNotifier>,
}

impl fmt::Debug for ShmReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmReceiver").finish_non_exhaustive()
    }
}

impl ShmReceiver {
    /// The next message, if one is waiting.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<bool, RecvError> {
        self.rx.try_recv(buf)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), RecvError> {
        self.rx.recv_timeout(buf, timeout)
    }

    /// The encoded `sockclnt_create_reply` a named segment publishes (the message table).
    pub fn published_table(&self) -> Option<&[u8]> {
        self.table.as_deref()
    }

    /// As [`ShmLink::peer_gone`].
    pub fn peer_gone(&self) -> bool {
        doorbell_gone(self.doorbell_kick.as_ref())
    }
}

/// True when the named segment's doorbell FIFO lost its reader (the server).
fn doorbell_gone(kick: Option<&EventFdNotifier>) -> bool {
    let Some(k) = kick else {
        return false;
    };
    let mut p = [nix::poll::PollFd::new(
        k.fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    matches!(nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && p[0].revents().is_some_and(|r| {
            r.intersects(nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLHUP)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_can_move_to_other_threads() {
        fn send<T: Send>() {}
        send::<ShmLink>();
        send::<ShmSender>();
        send::<ShmReceiver>();
    }
}
