//! The I/O thread of a [`crate::Client`]: receives and routes messages, runs the health check,
//! expires requests, and reconnects.
//!
//! One loop per connection: wait for a message until the next timer (probe due, probe
//! deadline, timeout sweep), route what arrived, then run the timers. Losing the connection
//! (or, with reconnect on, its health) fails everything in flight and enters the reconnect
//! loop, which sleeps with backoff between attempts and can be woken by `Client::close`.

use std::task::Waker;
use std::time::{Duration, Instant};

use vlibapi::msgs::memclnt;
use vlibapi::wire;
use vlibclient::conn::{Connection, Wait};
use vppinfra::sync::{Arc, Ordering};

use crate::{
    Event, Expect, HealthCheck, Inner, Reconnect, RequestError, Status, StatusEvent, lock,
};

/// How often request deadlines and forgotten contexts are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// How long a cancelled context's late messages are watched for.
const CANCELLED_TTL: Duration = Duration::from_secs(60);
/// Messages handled per turn before the timers get a look.
const BURST: usize = 256;

/// Why serving a connection ended.
enum Outcome {
    /// `Client::close` asked.
    Stop,
    /// The connection is lost (or unhealthy, with reconnect on).
    Lost(String),
}

/// The thread's body.
pub(crate) fn run(inner: &Inner) {
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(conn) = lock(&inner.conn).clone() else {
            return;
        };
        match serve(inner, &conn) {
            Outcome::Stop => return,
            Outcome::Lost(why) => {
                conn.shutdown();
                *lock(&inner.conn) = None;
                fail_all(inner, RequestError::Disconnected);
                match inner.opts.reconnect {
                    None => {
                        inner.set_status(Status::Closed, Some(StatusEvent::Disconnected(why)));
                        wake_streams(inner);
                        return;
                    }
                    Some(policy) => {
                        inner
                            .set_status(Status::Reconnecting, Some(StatusEvent::Disconnected(why)));
                        if !reconnect(inner, policy) {
                            wake_streams(inner);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Fails every request in flight with `error` (replies already here stay deliverable).
pub(crate) fn fail_all(inner: &Inner, error: RequestError) {
    let wakers: Vec<_> = {
        let mut st = inner.state();
        st.cancelled.clear();
        st.pending
            .values_mut()
            .filter(|p| !p.done && p.error.is_none())
            .filter_map(|p| {
                p.error = Some(error.clone());
                p.waker.take()
            })
            .collect()
    };
    wakers.into_iter().for_each(|w| w.wake());
}

/// Wakes event streams so they see the client closed.
fn wake_streams(inner: &Inner) {
    let wakers: Vec<_> = inner.state().event_wakers.drain().map(|(_, w)| w).collect();
    wakers.into_iter().for_each(|w| w.wake());
}

/// Tries to connect again with backoff; true once connected.
fn reconnect(inner: &Inner, policy: Reconnect) -> bool {
    let mut delay = policy.initial_delay;
    let mut attempts = 0;
    loop {
        if policy.max_attempts.is_some_and(|m| attempts >= m) {
            inner.set_status(
                Status::Closed,
                Some(StatusEvent::ReconnectFailed { attempts }),
            );
            return false;
        }
        let until = Instant::now() + delay;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if inner.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::park_timeout(left);
        }
        if inner.stop.load(Ordering::SeqCst) {
            return false;
        }
        attempts += 1;
        if let Ok(c) = crate::connect_transport(&inner.opts) {
            let client_index = c.client_index();
            *lock(&inner.conn) = Some(Arc::new(c));
            inner.reconnects.fetch_add(1, Ordering::Relaxed);
            inner.set_status(
                Status::Connected,
                Some(StatusEvent::Reconnected {
                    attempts,
                    client_index,
                }),
            );
            return true;
        }
        delay = delay.mul_f64(policy.multiplier).min(policy.max_delay);
    }
}

struct Probe {
    context: u32,
    sent_at: Instant,
    deadline: Instant,
}

/// The health check's state for one connection.
struct Health {
    settings: HealthCheck,
    probe: Option<Probe>,
    next_probe: Instant,
    misses: u32,
    unhealthy: bool,
}

/// Receives and routes until the connection is lost or the client stops.
fn serve(inner: &Inner, conn: &Connection) -> Outcome {
    let ping_reply = conn.table().id_of::<memclnt::ControlPingReply>();
    let ping = conn.table().id_of::<memclnt::ControlPing>();
    let mut health = inner.opts.health_check.map(|settings| Health {
        settings,
        probe: None,
        next_probe: Instant::now() + settings.interval,
        misses: 0,
        unhealthy: false,
    });
    let mut last_rx = Instant::now();
    let mut next_sweep = Instant::now() + SWEEP_EVERY;
    let mut rx = conn.lock_rx();
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return Outcome::Stop;
        }
        // Requests buffered by futures that were never polled go out now.
        if let Err(e) = conn.flush() {
            return Outcome::Lost(e.to_string());
        }
        let now = Instant::now();
        let mut wake_at = next_sweep;
        if let Some(h) = &health {
            wake_at = wake_at.min(h.next_probe);
            if let Some(p) = &h.probe {
                wake_at = wake_at.min(p.deadline);
            }
        }
        let probe_ctx = health
            .as_ref()
            .and_then(|h| h.probe.as_ref())
            .map(|p| p.context);
        let mut probe_answered = false;
        let mut wait = Wait::For(wake_at.saturating_duration_since(now));
        // Wakers are woken once per burst: a task waiting for many replies is woken once for
        // all that arrived together, not once per reply.
        let mut wakers: Vec<Waker> = Vec::new();
        for _ in 0..BURST {
            let routed = rx.recv_with(wait, |m| {
                route(inner, conn, m, probe_ctx, ping_reply, &mut wakers)
            });
            match routed {
                Ok(Some(is_probe)) => {
                    probe_answered |= is_probe;
                    last_rx = Instant::now();
                    wait = Wait::No;
                }
                Ok(None) => break,
                Err(e) => {
                    wake_all(wakers);
                    return Outcome::Lost(e.to_string());
                }
            }
        }
        wake_all(wakers);
        let now = Instant::now();
        if let Some(h) = &mut health {
            if let Some(why) = check_health(inner, conn, h, probe_answered, last_rx, now, ping) {
                return Outcome::Lost(why);
            }
        }
        if now >= next_sweep {
            sweep(inner, now);
            next_sweep = now + SWEEP_EVERY;
        }
    }
}

/// Runs the health check's timers; `Some(why)` when the connection must be dropped.
fn check_health(
    inner: &Inner,
    conn: &Connection,
    h: &mut Health,
    probe_answered: bool,
    last_rx: Instant,
    now: Instant,
    ping: Option<u16>,
) -> Option<String> {
    if let Some(p) = &h.probe {
        // Any message after the probe proves the server alive (as GoVPP counts replies on
        // other channels).
        if probe_answered || last_rx > p.sent_at {
            if let Some(p) = h.probe.take() {
                if !probe_answered {
                    remember_cancelled(inner, conn, p.context);
                }
            }
            h.misses = 0;
            if h.unhealthy {
                h.unhealthy = false;
                inner.set_status(Status::Connected, Some(StatusEvent::Healthy));
            }
        } else if now >= p.deadline {
            let context = p.context;
            h.probe = None;
            remember_cancelled(inner, conn, context);
            h.misses += 1;
            if h.misses >= h.settings.max_misses && !h.unhealthy {
                h.unhealthy = true;
                if inner.opts.reconnect.is_some() {
                    return Some(format!("health check: {} probes unanswered", h.misses));
                }
                inner.set_status(Status::Unhealthy, Some(StatusEvent::Unhealthy));
            }
        }
    }
    if h.probe.is_none() && now >= h.next_probe {
        let ping = ping?;
        let context = inner.fresh_context();
        let req = memclnt::ControlPing {
            client_index: conn.client_index(),
            context,
        };
        let msg = wire::to_vec(&req, ping).ok()?;
        if let Err(e) = conn.send(&msg) {
            return Some(e.to_string());
        }
        h.probe = Some(Probe {
            context,
            sent_at: now,
            deadline: now + h.settings.timeout,
        });
        h.next_probe = now + h.settings.interval;
    }
    None
}

/// A probe's late reply must be swallowed, not surface as an event.
fn remember_cancelled(inner: &Inner, conn: &Connection, context: u32) {
    if let Some(id) = conn.table().id_of::<memclnt::ControlPingReply>() {
        inner
            .state()
            .cancelled
            .insert(context, (Expect::Reply(id), Instant::now()));
    }
}

/// Expires requests past their deadline and forgets old cancelled contexts.
fn sweep(inner: &Inner, now: Instant) {
    let wakers: Vec<_> = {
        let mut st = inner.state();
        st.cancelled
            .retain(|_, (_, at)| now.duration_since(*at) < CANCELLED_TTL);
        st.pending
            .values_mut()
            .filter(|p| !p.done && p.error.is_none() && p.deadline.is_some_and(|d| now >= d))
            .filter_map(|p| {
                p.error = Some(RequestError::Timeout);
                p.waker.take()
            })
            .collect()
    };
    wakers.into_iter().for_each(|w| w.wake());
}

/// Files one received message: to its request, to the bin (a cancelled context), or to the
/// events. Returns whether it answered the health probe.
fn route(
    inner: &Inner,
    conn: &Connection,
    m: &[u8],
    probe_ctx: Option<u32>,
    ping_reply: Option<u16>,
    wakers: &mut Vec<Waker>,
) -> bool {
    let id = wire::msg_id(m).unwrap_or(0);
    // Replies carry their context right after the ID.
    let context = m
        .get(2..6)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    if context != 0 && probe_ctx == Some(context) && ping_reply == Some(id) {
        return true;
    }
    {
        let mut st = inner.state();
        let mut filed = false;
        if context != 0 {
            if let Some(p) = st.pending.get_mut(&context) {
                if let Some(last) = p.expect.accepts(id).filter(|_| !p.done) {
                    p.msgs.push_back(m.to_vec());
                    p.done = last;
                    wakers.extend(p.waker.take());
                    filed = true;
                }
            }
            if !filed {
                if let Some((expect, _)) = st.cancelled.get(&context).copied() {
                    if let Some(last) = expect.accepts(id) {
                        if last {
                            st.cancelled.remove(&context);
                        }
                        filed = true;
                    }
                }
            }
        }
        if !filed {
            if st.events.len() < inner.opts.event_queue_len {
                st.events.push_back(Event {
                    id,
                    name_crc: conn.table().name(id).map(str::to_owned),
                    bytes: m.to_vec(),
                });
                wakers.extend(st.event_wakers.drain().map(|(_, w)| w));
            } else {
                st.events_dropped += 1;
            }
        }
    }
    false
}

/// Wakes each distinct waker once.
fn wake_all(mut wakers: Vec<Waker>) {
    wakers.dedup_by(|a, b| a.will_wake(b));
    wakers.into_iter().for_each(Waker::wake);
}
