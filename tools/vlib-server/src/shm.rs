//! The server's shared-memory side: the pivot from a socket to a private segment, polling every
//! channel, registration over shared memory, keepalive pings and reaping, and the `show`
//! output about it.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use vlibapi::dispatch::DispatchError;
use vlibapi::msgs::{memclnt, vpe};
use vlibapi::wire::{self, Message};
use vlibapi::{ApiError, ClientIndex};
use vlibmemory::channel::RecvError;
use vlibmemory::config::ChannelConfig;
use vlibmemory::server::{ChannelId, Liveness, Origin, PivotFds, ShmError};

use crate::evloop::Interest;
use crate::server::{
    BURST, ClientInfo, Deferred, MAX_BAD_MESSAGES, Routes, Server, TOKEN_SHM, Timer, Transport,
};

/// A pivot whose fds wait until the reply has left the socket (the client must read the reply
/// with ordinary reads before it receives the fds, or they would be lost).
#[derive(Debug)]
pub(crate) struct PendingFds {
    socket: ClientIndex,
    channel: ChannelId,
    fds: PivotFds,
    started: Instant,
}

/// How long a pivot may wait for its client to read the reply.
const PIVOT_TIMEOUT: Duration = Duration::from_secs(1);
/// For this long after a pivot reply the loop does not sleep, so the fds follow at once.
const PIVOT_EAGER: Duration = Duration::from_millis(2);
/// Iterations of the idle spin over shared-memory channels before epoll is polled again.
const SPIN_ROUNDS: u32 = 64;
/// Messages one channel has taken in a row before the next channel's turn.
const SHM_QUANTUM: usize = 8;
/// Time one poll of the channels may take before the loop looks at its sockets and timers
/// again (checked after each quantum).
pub(crate) const SHM_POLL_BUDGET: Duration = Duration::from_micros(20);

impl Server {
    /// Handles the messages waiting in the channels, round-robin: every channel that has
    /// messages gets up to [`SHM_QUANTUM`] of them in turn, round after round, until none has
    /// more, each has had [`BURST`], or the poll has used its [`SHM_POLL_BUDGET`]. Returns how
    /// many were taken.
    ///
    /// So a client that floods its queue delays another client's request by at most a quantum
    /// of its own messages, and the loop gets back to its sockets and timers within the budget
    /// however many clients flood.
    pub(crate) fn poll_shm(&mut self) -> usize {
        let live = self.shm.live_channels();
        let n = live.len();
        if n == 0 {
            return 0;
        }
        let mut handled = 0;
        let mut buf = std::mem::take(&mut self.shm_buf);
        let mut active = std::mem::take(&mut self.shm_active);
        // Only the channels there are now are visited: a storm's high-water mark of channels
        // must not slow every later poll down. The round-robin goes on where the last poll's
        // budget cut it off, so that every channel's turn comes however many are busy.
        let start = self.shm_cursor % n;
        active.clear();
        active.extend_from_slice(&live[start..]);
        active.extend_from_slice(&live[..start]);
        // Where the next poll starts: one further if this one gets through its first round.
        let mut next = start + 1;
        // The clock is read only once messages flow, never by an idle poll.
        let mut started: Option<Instant> = None;
        'rounds: for round in 0..BURST / SHM_QUANTUM {
            let mut kept = 0;
            for k in 0..active.len() {
                let id = active[k];
                let (taken, more) = self.poll_channel(id, &mut buf);
                handled += taken;
                if more {
                    active[kept] = id;
                    kept += 1;
                }
                if taken > 0 && started.get_or_insert_with(Instant::now).elapsed() > SHM_POLL_BUDGET
                {
                    if round == 0 {
                        next = start + k + 1;
                    }
                    break 'rounds;
                }
            }
            active.truncate(kept);
            if active.is_empty() {
                break;
            }
        }
        self.shm_cursor = next % n;
        self.shm_buf = buf;
        self.shm_active = active;
        if handled > 0 {
            self.last_shm_activity = Instant::now();
        }
        handled
    }

    /// Takes up to a quantum of channel `id`'s messages and publishes their replies; returns
    /// how many it took and whether more may be waiting.
    fn poll_channel(&mut self, id: ChannelId, buf: &mut Vec<u8>) -> (usize, bool) {
        let mut taken = 0;
        let mut more = true;
        while taken < SHM_QUANTUM {
            match self.shm.recv(id, buf) {
                Ok(true) => {
                    taken += 1;
                    self.handle_shm_message(id, buf);
                }
                Ok(false) => {
                    more = false;
                    break;
                }
                Err(RecvError::Corrupt(e)) => {
                    self.reap_shm(id, &format!("its queue is corrupt ({e})"));
                    return (taken, false);
                }
                Err(RecvError::HeapBusy { .. }) => {
                    // The request stays queued; the channel is left alone until the back-off
                    // passes (or dropped once it has waited for the stall timeout).
                    more = false;
                    break;
                }
                Err(e) => {
                    // A refused message counts against the quantum like any other.
                    taken += 1;
                    self.stats.malformed += 1;
                    self.note_shm_bad(id, &e.to_string());
                    if self.shm.bad_messages(id) > MAX_BAD_MESSAGES {
                        self.stats.garbage_disconnects += 1;
                        self.reap_shm(id, "it sent too many malformed messages");
                        return (taken, false);
                    }
                }
            }
        }
        if taken > 0 {
            // The quantum's replies go out together.
            if let Err(e) = self.shm.flush_channel(id) {
                self.reap_shm(id, &format!("its replies cannot be delivered: {e}"));
                return (taken, false);
            }
        }
        (taken, more)
    }

    /// Polls the channels a little longer before going back to epoll (poll and spin modes):
    /// until [`SPIN_ROUNDS`] polls in a row found nothing, or for at most [`SHM_POLL_BUDGET`].
    /// Returns how many messages were taken.
    ///
    /// Messages do not end the spin: a synchronous client's next request comes a few hundred
    /// nanoseconds after its reply, and an `epoll_wait` between the two (about 200 ns here)
    /// would sit on every round trip. Sockets and timers wait at most the budget, as they do
    /// behind one busy poll.
    pub(crate) fn spin_shm(&mut self) -> usize {
        let start = Instant::now();
        let mut handled = 0;
        let mut idle = 0;
        while idle < SPIN_ROUNDS {
            let n = self.poll_shm();
            if n > 0 {
                handled += n;
                idle = 0;
            } else {
                idle += 1;
                std::hint::spin_loop();
            }
            // Many idle channels make each round long, and a steady trickle of messages
            // would keep the spin going: the sockets are not kept waiting.
            if start.elapsed() > SHM_POLL_BUDGET {
                break;
            }
        }
        handled
    }

    fn note_shm_bad(&mut self, id: ChannelId, what: &str) {
        self.shm.note_bad_message(id);
        let n = self.shm.bad_messages(id);
        if n <= 10 || n % 1000 == 0 {
            let name = self
                .shm
                .registration(id)
                .map_or("(unregistered)".to_owned(), |r| r.name.clone());
            self.log.warn(format_args!(
                "shared-memory client '{name}' (channel {id}): {what} [{n} so far]"
            ));
        }
    }

    fn reply_shm<M: Message>(&mut self, id: ChannelId, msg_id: u16, msg: &M) {
        let mut bytes = Vec::with_capacity(msg.encoded_len());
        if msg.encode(msg_id, &mut bytes).is_err() {
            return;
        }
        let to = self
            .shm
            .registration(id)
            .map_or(ClientIndex(0), |r| r.index);
        self.dispatcher
            .trace_mut()
            .record(vlibapi::trace::Direction::Tx, to, &bytes);
        if let Err(e) = self.shm.send_channel(id, &bytes) {
            self.reap_shm(id, &format!("a reply could not be queued: {e}"));
        }
    }

    fn handle_shm_message(&mut self, id: ChannelId, msg: &[u8]) {
        let Some(msg_id) = wire::msg_id(msg) else {
            return;
        };
        let ids = self.ids;
        if msg_id == ids.memclnt_create || msg_id == ids.memclnt_create_v2 {
            self.shm_register(id, msg_id, msg);
            return;
        }
        let Some(index) = self.shm.registration(id).map(|r| r.index) else {
            self.stats.malformed += 1;
            self.note_shm_bad(id, &format!("message {msg_id} before memclnt_create"));
            return;
        };
        self.dispatcher
            .trace_mut()
            .record(vlibapi::trace::Direction::Rx, index, msg);
        if msg_id == ids.memclnt_keepalive_reply {
            self.shm.note_heard(id);
            return;
        }
        if msg_id == ids.memclnt_delete {
            let Ok(req) = memclnt::MemclntDelete::decode(msg) else {
                self.note_shm_bad(id, "malformed memclnt_delete");
                return;
            };
            if req.index != index.0 {
                // VPP ignores a delete of a stale or foreign index; so do we.
                self.note_shm_bad(id, "memclnt_delete of another index");
                return;
            }
            if !req.do_cleanup {
                let reply = memclnt::MemclntDeleteReply {
                    response: 1,
                    handle: req.handle,
                };
                self.reply_shm(id, ids.memclnt_delete_reply, &reply);
            }
            self.reap_shm_with(id, "it deleted its registration", true);
            return;
        }
        let claimed = self
            .has_client_index
            .get(usize::from(msg_id))
            .copied()
            .unwrap_or(false)
            .then(|| {
                msg.get(2..6)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            })
            .flatten();
        if claimed.is_some_and(|c| c != index.0) {
            // An index from before a restart, or someone else's: refused, as VPP does.
            self.stats.wrong_client_index += 1;
            self.note_shm_bad(id, "message carries another client's index");
            return;
        }
        if msg_id == ids.sock_init_shm || msg_id == ids.memfd_segment_create {
            // A channel pivots nowhere: answer, rather than leave the client waiting.
            let context = msg
                .get(6..10)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let retval = ApiError::InvalidRegistration.retval();
            if msg_id == ids.sock_init_shm {
                let reply = memclnt::SockInitShmReply { context, retval };
                self.reply_shm(id, ids.sock_init_shm_reply, &reply);
            } else {
                let reply = vlibapi::msgs::memfd::MemfdSegmentCreateReply {
                    context,
                    retval,
                    master_fd: 0,
                };
                self.reply_shm(id, ids.memfd_segment_create_reply, &reply);
            }
            return;
        }
        if msg_id == ids.cli_inband {
            let Ok(req) = vpe::CliInband::decode(msg) else {
                self.note_shm_bad(id, "malformed cli_inband");
                return;
            };
            let (retval, reply) = match self.run_cli(&req.cmd) {
                Ok(t) => (0, t),
                Err(t) => (-1, t),
            };
            let msg = vpe::CliInbandReply {
                context: req.context,
                retval,
                reply,
            };
            self.reply_shm(id, ids.cli_inband_reply, &msg);
            return;
        }
        let mut outputs = self.socket.outputs();
        let mut routes = Routes {
            sock: &mut outputs,
            shm: &mut self.shm,
        };
        match self.dispatcher.dispatch(index, msg, &mut routes) {
            Ok(()) => {}
            Err(DispatchError::UnknownId(m)) => {
                self.stats.unknown_id += 1;
                self.note_shm_bad(id, &format!("unknown message id {m}"));
            }
            Err(DispatchError::NoHandler(_)) => self.stats.no_handler += 1,
            Err(DispatchError::Invalid { id: m, error }) => {
                self.stats.malformed += 1;
                self.note_shm_bad(id, &format!("invalid message {m}: {error}"));
            }
            Err(_) => {}
        }
    }

    fn shm_register(&mut self, id: ChannelId, msg_id: u16, msg: &[u8]) {
        let v2 = msg_id == self.ids.memclnt_create_v2;
        let decoded = if v2 {
            memclnt::MemclntCreateV2::decode(msg).map(|m| (m.context, m.name, m.keepalive))
        } else {
            memclnt::MemclntCreate::decode(msg).map(|m| (m.context, m.name, true))
        };
        let Ok((context, name, keepalive)) = decoded else {
            self.stats.malformed += 1;
            self.note_shm_bad(id, "malformed memclnt_create");
            return;
        };
        let Some(index) = self.shm.register(id, &name, keepalive) else {
            return;
        };
        let origin = self.shm.origin(id);
        let (pid, uid, gid, transport) = match origin {
            Some(Origin::Pivot { socket }) => match self.socket.session(socket) {
                Some(s) => (
                    s.peer.pid,
                    s.peer.uid,
                    s.peer.gid,
                    Transport::SocketSharedMemory,
                ),
                None => (0, 0, 0, Transport::SocketSharedMemory),
            },
            _ => (
                self.shm.info(id).map_or(0, |i| i.pid as i32),
                u32::MAX,
                u32::MAX,
                Transport::SharedMemory,
            ),
        };
        self.directory.borrow_mut().clients.insert(
            index,
            ClientInfo {
                index,
                name: name.clone(),
                transport,
                pid,
                uid,
                gid,
            },
        );
        let handle = self.shm.layout(id).map_or(0, |l| l.base as u64);
        let message_table = self.shm.named_table(id).unwrap_or(0);
        if v2 {
            let reply = memclnt::MemclntCreateV2Reply {
                context,
                response: 0,
                handle,
                index: index.0,
                message_table,
            };
            self.reply_shm(id, self.ids.memclnt_create_v2_reply, &reply);
        } else {
            let reply = memclnt::MemclntCreateReply {
                context,
                response: 0,
                handle,
                index: index.0,
                message_table,
            };
            self.reply_shm(id, self.ids.memclnt_create_reply, &reply);
        }
        self.log.debug(format_args!(
            "shared-memory client '{name}' registered as {:#010x} ({transport})",
            index.0
        ));
    }

    /// Creates the private segment of a pivot and answers; the fds follow once the answer has
    /// been read.
    pub(crate) fn do_pivot(
        &mut self,
        client: ClientIndex,
        reply_id: u16,
        context: u32,
        size: u64,
        configs: Vec<u64>,
    ) {
        let Some(pid) = self.socket.session(client).map(|s| s.peer.pid) else {
            return;
        };
        if !self.shm.channels_of_socket(client).is_empty() {
            // One private segment per connection.
            self.pivot_reply(
                client,
                reply_id,
                context,
                ApiError::EntryAlreadyExists.retval(),
            );
            return;
        }
        let config = if configs.is_empty() {
            None
        } else {
            match ChannelConfig::from_vpp_items(&configs) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.log
                        .warn(format_args!("pivot of {:#x} refused: {e}", client.0));
                    self.pivot_reply(
                        client,
                        reply_id,
                        context,
                        ApiError::InvalidArgument.retval(),
                    );
                    return;
                }
            }
        };
        let (id, fds) = match self.shm.create_private(client, pid as u32, size, config) {
            Ok(x) => x,
            Err(e) => {
                let retval = match e {
                    ShmError::BadSize(_) => ApiError::InvalidMemorySize.retval(),
                    _ => ApiError::Unspecified.retval(),
                };
                self.log
                    .warn(format_args!("pivot of {:#x} failed: {e}", client.0));
                self.pivot_reply(client, reply_id, context, retval);
                return;
            }
        };
        if let Some(fd) = self.shm.doorbell_fd(id) {
            if let Err(e) = self.poller.add(fd, TOKEN_SHM | id as u64, Interest::Read) {
                self.log.error(format_args!("cannot watch a doorbell: {e}"));
                self.shm.remove(id);
                self.pivot_reply(client, reply_id, context, ApiError::Unspecified.retval());
                return;
            }
        }
        self.pivot_reply(client, reply_id, context, 0);
        self.pending_fds.push(PendingFds {
            socket: client,
            channel: id,
            fds,
            started: Instant::now(),
        });
    }

    /// Answers a pivot request: `sock_init_shm_reply` and `memfd_segment_create_reply` share
    /// context and retval; the latter adds an unused `master_fd`.
    fn pivot_reply(&mut self, to: ClientIndex, reply_id: u16, context: u32, retval: i32) {
        if reply_id == self.ids.memfd_segment_create_reply {
            let msg = vlibapi::msgs::memfd::MemfdSegmentCreateReply {
                context,
                retval,
                master_fd: 0,
            };
            self.send_socket(to, reply_id, &msg);
        } else {
            self.send_socket(to, reply_id, &memclnt::SockInitShmReply { context, retval });
        }
    }

    fn send_socket<M: Message>(&mut self, to: ClientIndex, id: u16, msg: &M) {
        let mut buf = Vec::with_capacity(msg.encoded_len());
        if msg.encode(id, &mut buf).is_ok() {
            self.dispatcher
                .trace_mut()
                .record(vlibapi::trace::Direction::Tx, to, &buf);
            self.socket.send(to, &buf);
        }
    }

    /// True while a pivot has just been answered: the loop should not sleep yet.
    pub(crate) fn pivot_eager(&self) -> bool {
        self.pending_fds
            .iter()
            .any(|p| p.started.elapsed() < PIVOT_EAGER)
    }

    /// Sends the fds of pivots whose reply has been read by the client.
    pub(crate) fn send_pending_fds(&mut self) {
        if self.pending_fds.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending_fds);
        let mut keep = Vec::new();
        for p in pending {
            let Some(session) = self.socket.session(p.socket) else {
                // The socket is gone; its channel was reaped with it.
                continue;
            };
            let drained = self.socket.queued(p.socket) == 0
                && vppinfra::socket::outq_len(session.fd()).is_ok_and(|n| n == 0);
            if drained {
                let fds = [p.fds.memfd.as_fd(), p.fds.doorbell.as_fd()];
                match vppinfra::socket::send_with_fds(session.fd(), b"fdmsg", &fds) {
                    Ok(_) => {
                        self.stats.pivots += 1;
                        continue;
                    }
                    Err(vppinfra::socket::FdSendError::WouldBlock) => {}
                    Err(e) => {
                        let channel = p.channel;
                        self.log
                            .warn(format_args!("cannot send the segment fds: {e}"));
                        self.reap_shm(channel, "its segment fds could not be sent");
                        continue;
                    }
                }
            }
            if p.started.elapsed() > PIVOT_TIMEOUT {
                let channel = p.channel;
                self.reap_shm(channel, "it never read the pivot reply");
                continue;
            }
            keep.push(p);
        }
        self.pending_fds = keep;
        if !self.pending_fds.is_empty() {
            self.timers
                .schedule(Instant::now() + Duration::from_millis(1), Timer::PendingFds);
        }
    }

    /// Removes channel `id` and everything about it; runs the reaper callbacks.
    pub(crate) fn reap_shm(&mut self, id: ChannelId, reason: &str) {
        self.reap_shm_with(id, reason, false);
    }

    /// As [`Server::reap_shm`]; with `drain`, a named slot is recycled only once the client
    /// has taken its last replies.
    pub(crate) fn reap_shm_with(&mut self, id: ChannelId, reason: &str, drain: bool) {
        if let Some(fd) = self.shm.doorbell_fd(id) {
            let _ = self.poller.delete(fd);
        }
        self.pending_fds.retain(|p| p.channel != id);
        let removed = if drain {
            self.shm.remove_after_drain(id)
        } else {
            self.shm.remove(id)
        };
        let Some((origin, registration)) = removed else {
            return;
        };
        match registration {
            Some(reg) => {
                self.directory.borrow_mut().clients.remove(&reg.index);
                for reaper in &mut self.reapers {
                    reaper(reg.index);
                }
                let deliberate =
                    reason.starts_with("it deleted") || reason.starts_with("its socket");
                let level = if deliberate {
                    crate::log::Level::Debug
                } else {
                    crate::log::Level::Warn
                };
                self.log.log(
                    level,
                    format_args!(
                        "shared-memory client '{}' ({:#010x}, {origin:?}) reaped: {reason}",
                        reg.name, reg.index.0
                    ),
                );
            }
            None => {
                let owner = match origin {
                    Origin::Pivot { socket } => self
                        .socket
                        .session(socket)
                        .map_or_else(|| format!("{:#x}", socket.0), |s| format!("'{}'", s.name)),
                    Origin::Named { slot } => format!("named slot {slot}"),
                };
                let level = if reason.starts_with("its socket") {
                    crate::log::Level::Debug
                } else {
                    crate::log::Level::Warn
                };
                self.log.log(
                    level,
                    format_args!(
                        "unregistered shared-memory channel {id} of {owner} removed: {reason}"
                    ),
                );
            }
        }
    }

    /// Reaps the channels a departed socket client created.
    pub(crate) fn reap_socket_channels(&mut self, socket: ClientIndex) {
        for id in self.shm.channels_of_socket(socket) {
            self.reap_shm(id, "its socket closed");
        }
    }

    /// The keepalive scan: pings silent clients, keeps lazy ones, reaps dead ones.
    pub(crate) fn keepalive_scan(&mut self) {
        let now = Instant::now();
        for action in self.shm.keepalive_scan(now) {
            match action {
                Liveness::Ping(index) => {
                    let ping = memclnt::MemclntKeepalive {
                        client_index: index.0,
                        context: index.0,
                    };
                    let mut bytes = Vec::with_capacity(10);
                    if ping.encode(self.ids.memclnt_keepalive, &mut bytes).is_ok() {
                        // A client that cannot even take a ping is handled by the backlog bound.
                        let _ = self.shm.send(index, &bytes);
                    }
                }
                Liveness::Lazy(index) => self.log.info(format_args!(
                    "shared-memory client {:#010x} does not answer pings but its pid lives: kept",
                    index.0
                )),
                Liveness::Dead(id) => {
                    self.stats.reaped_by_keepalive += 1;
                    self.reap_shm(id, "it stopped answering pings and its pid is gone");
                }
            }
        }
    }

    /// Retries replies held for slow clients; drops clients stuck past the bound.
    pub(crate) fn flush_shm_backlogs(&mut self) {
        for (id, e) in self.shm.flush_backlogs() {
            self.reap_shm(id, &format!("its replies cannot be delivered: {e}"));
        }
    }

    /// Adopts clients that claimed slots of the named segment.
    pub(crate) fn on_named_doorbell(&mut self) {
        for id in self.shm.poll_named() {
            self.log
                .debug(format_args!("a client claimed named-segment channel {id}"));
        }
    }

    /// `show api clients`, shared-memory part.
    pub(crate) fn show_shm_clients(&mut self) -> String {
        use vppinfra::format::{Align, Table};
        let mut t = Table::new()
            .column("Name", Align::Right)
            .column("Index", Align::Right)
            .column("Pid", Align::Right)
            .column("Transport", Align::Right)
            .column("Queue Length", Align::Right)
            .column("Backlog", Align::Right)
            .column("Health", Align::Left);
        for id in self.shm.channel_ids() {
            let Some(info) = self.shm.info(id) else {
                continue;
            };
            let (name, index) = match &info.registration {
                Some(r) => (r.name.clone(), format!("{:#010x}", r.index.0)),
                None => ("(registering)".to_owned(), "-".to_owned()),
            };
            let transport = match info.origin {
                Origin::Pivot { .. } => "socket+shm",
                Origin::Named { .. } => "shm",
            };
            // As VPP: a client with unanswered pings is questionable.
            let health = if info.unanswered_pings > 0 {
                "questionable"
            } else {
                "OK"
            };
            t.row([
                name,
                index,
                info.pid.to_string(),
                transport.to_owned(),
                info.queue_len.to_string(),
                info.backlog.to_string(),
                health.to_owned(),
            ]);
        }
        let mut out = String::from("Shared memory clients\n");
        if t.is_empty() {
            out.push_str("  (none)\n");
        } else {
            out.push_str(&t.to_string());
            out.push('\n');
        }
        out
    }

    /// `show api ring`: the rings of every segment.
    pub(crate) fn show_api_ring(&mut self) -> String {
        use vppinfra::format::{Align, Table};
        let mut out = String::new();
        let ids = self.shm.channel_ids();
        if ids.is_empty() {
            return "No shared-memory segments.\n".to_owned();
        }
        for id in ids {
            let Some(info) = self.shm.info(id) else {
                continue;
            };
            let Some(layout) = self.shm.layout(id).cloned() else {
                continue;
            };
            let name = info
                .registration
                .as_ref()
                .map_or("(registering)".to_owned(), |r| r.name.clone());
            out.push_str(&format!(
                "{name} segment rings ({}, {}):\n",
                info.segment.0,
                vppinfra::format::format_memory_size(info.segment.1 as u64)
            ));
            let mut t = Table::new()
                .column("Owner", Align::Right)
                .column("Size", Align::Right)
                .column("Nitems", Align::Right)
                .column("Hits", Align::Right)
                .column("Misses", Align::Right);
            for r in &info.server_rings.rings {
                t.row([
                    "vlib".to_owned(),
                    r.payload.to_string(),
                    r.count.to_string(),
                    r.hits.to_string(),
                    r.misses.to_string(),
                ]);
            }
            for r in &layout.client_rings {
                // The client's allocator lives in the client; its hits are not visible here.
                t.row([
                    "clnt".to_owned(),
                    r.spec.payload.to_string(),
                    r.spec.count.to_string(),
                    "-".to_owned(),
                    "-".to_owned(),
                ]);
            }
            out.push_str(&t.to_string());
            out.push('\n');
            out.push_str(&format!(
                "{} ring miss fallback allocations, {} garbage collects, {} messages received, {} refused\n",
                info.server_rings.heap_fallbacks,
                info.server_rings.garbage_collects,
                info.received.0,
                info.received.1
            ));
        }
        out
    }

    /// Handles one deferred pivot request.
    pub(crate) fn run_deferred_pivot(&mut self, d: Deferred) {
        if let Deferred::Pivot {
            client,
            reply_id,
            context,
            size,
            configs,
        } = d
        {
            self.do_pivot(client, reply_id, context, size, configs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlibapi::msgs::memclnt::ControlPing;
    use vlibapi::trace::Direction;
    use vlibmemory::client::ShmLink;

    /// A server on a socket in `dir`, and `n` registered private channels with their links.
    fn server_with_channels(
        dir: &vppinfra::testing::TempDir,
        n: usize,
    ) -> (Server, Vec<(ClientIndex, ShmLink)>) {
        let mut server = Server::builder()
            .socket_path(dir.join("api.sock"))
            .log_level(crate::log::Level::Off)
            .build()
            .unwrap();
        let pid = std::process::id();
        let links = (0..n)
            .map(|i| {
                let socket = ClientIndex(0x8100_0000 | i as u32);
                let (id, fds) = server.shm.create_private(socket, pid, 0, None).unwrap();
                // The default wait policy (this crate does not name svm's types).
                let link =
                    ShmLink::from_pivot(fds.memfd, fds.doorbell, Default::default()).unwrap();
                let index = server.shm.register(id, &format!("c{i}"), false).unwrap();
                (index, link)
            })
            .collect();
        (server, links)
    }

    fn ping(server: &Server, index: ClientIndex, context: u32) -> Vec<u8> {
        let id = server.table().id(ControlPing::NAME_CRC).unwrap();
        let msg = ControlPing {
            client_index: index.0,
            context,
        };
        wire::to_vec(&msg, id).unwrap()
    }

    #[test]
    fn when_many_flood_each_gets_its_turn_within_a_few_polls() {
        let dir = vppinfra::testing::TempDir::new("poll_shm_rotation");
        let n = 12;
        let (mut server, mut links) = server_with_channels(&dir, n);
        for (index, link) in links.iter_mut() {
            for context in 1..=400 {
                let msg = ping(&server, *index, context);
                link.send(&msg, Duration::from_secs(1)).unwrap();
            }
        }
        // Which channels each poll served, from the replies each client has got.
        let mut served = vec![0usize; n];
        let mut gaps = vec![0usize; n];
        let mut longest = 0;
        let mut buf = Vec::new();
        for _ in 0..40 {
            server.poll_shm();
            for (i, (_, link)) in links.iter_mut().enumerate() {
                let mut got = 0;
                while link.try_recv(&mut buf).unwrap() {
                    got += 1;
                }
                served[i] += got;
                gaps[i] = if got > 0 { 0 } else { gaps[i] + 1 };
                longest = longest.max(gaps[i]);
            }
        }
        // A poll serves at least two channels before its time budget can end it, and the next
        // one goes on from there: nobody waits for half the ring's worth of polls.
        assert!(
            longest <= n / 2,
            "a channel waited {longest} polls for its turn; served: {served:?}"
        );
        assert!(served.iter().all(|&s| s > 0), "{served:?}");
    }

    #[test]
    fn a_flooded_channel_delays_another_by_one_quantum_at_most() {
        let dir = vppinfra::testing::TempDir::new("poll_shm_quantum");
        let (mut server, mut links) = server_with_channels(&dir, 2);
        server.dispatcher.trace_mut().set_enabled(true);
        for round in 0..4 {
            // Whichever channel the rotating start visits first, the single request of one
            // client is handled within a quantum of the other's flood.
            let (heavy, light) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
            for context in 1..=4 * BURST as u32 {
                let flood = ping(&server, links[heavy].0, context);
                links[heavy].1.send(&flood, Duration::from_secs(1)).unwrap();
            }
            let one = ping(&server, links[light].0, 0);
            links[light].1.send(&one, Duration::from_secs(1)).unwrap();
            server
                .dispatcher
                .trace_mut()
                .ring_mut(Direction::Rx)
                .clear();
            let handled = server.poll_shm();
            assert!(handled > 1 && handled <= 1 + BURST, "{handled}");
            // The flood's messages handled before the single one (by context: the trace may
            // record a message more than once).
            let mut before = std::collections::BTreeSet::new();
            for r in server.dispatcher.trace().ring(Direction::Rx).records() {
                if r.client == links[light].0 {
                    break;
                }
                before.insert(r.bytes.get(6..10).map(<[u8]>::to_vec));
            }
            assert!(
                before.len() <= SHM_QUANTUM,
                "round {round}: handled after {} of the flood",
                before.len()
            );
            // Drain the rest of the flood and every reply before the next round.
            while server.poll_shm() > 0 {}
            let mut buf = Vec::new();
            for (_, link) in links.iter_mut() {
                while link.try_recv(&mut buf).unwrap() {}
            }
        }
    }
}
