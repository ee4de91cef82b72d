//! A session: one connection plus the API loaded from it, and the exchanges vat performs over
//! it (a request and its answer, a pipelined burst of requests, waiting for events).
//!
//! Everything goes through [`Link`], which owns the `Box<dyn Transport>`: vat assigns its own
//! contexts, so every message the server sends comes back through [`Transport::recv`] and is
//! matched here. A message whose context nobody waits for (an event, or a late reply) is kept in
//! [`Link::take_unclaimed`] for the caller to print.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use vlibapi::msgs::memclnt;
use vlibapi::value::Value;
use vlibapi::wire::{self, Message};
use vlibapi::{DecodeError, EncodeError};
use vlibsocket::client::TransportKind;

use crate::api::{Api, ApiLoadError, ModuleSummary, MsgInfo, ReplyKind};
use crate::command;
use crate::transport::{self, PivotRequest, Target, Transport, TransportError};

/// Why a session operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionError {
    /// The connection failed (fatal unless it is a timeout; see [`SessionError::is_fatal`]).
    Transport(TransportError),
    /// No answer within the timeout.
    Timeout {
        /// What was awaited.
        waiting_for: String,
        /// How long.
        after: Duration,
        /// The connection cannot notice a server that died (shared memory attached by name
        /// has no socket to watch), so the timeout may mean that.
        blind: bool,
    },
    /// The request could not be encoded from its values.
    Encode(EncodeError),
    /// A bootstrap reply could not be decoded.
    Decode(DecodeError),
    /// The server's API could not be loaded.
    Api(ApiLoadError),
    /// The server lacks a message vat needs.
    Missing(&'static str),
    /// The server answered a bootstrap request with an error.
    Refused {
        /// The request.
        what: &'static str,
        /// Its retval.
        retval: i32,
    },
}

impl SessionError {
    /// True if the connection cannot be used any more.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_fatal(),
            Self::Api(_) | Self::Decode(_) | Self::Missing(_) | Self::Refused { .. } => true,
            Self::Timeout { .. } | Self::Encode(_) => false,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "{e}"),
            Self::Timeout {
                waiting_for,
                after,
                blind,
            } => {
                write!(
                    f,
                    "timed out after {} waiting for {waiting_for}",
                    vppinfra::format::format_duration(*after)
                )?;
                if *blind {
                    f.write_str(
                        " (attached by name, vat cannot tell a server that died from a slow one)",
                    )?;
                }
                Ok(())
            }
            Self::Encode(e) => write!(f, "cannot encode the request: {e}"),
            Self::Decode(e) => write!(f, "bad reply from the server: {e}"),
            Self::Api(e) => write!(f, "cannot load the server's api: {e}"),
            Self::Missing(m) => write!(f, "the server does not have message {m}"),
            Self::Refused { what, retval } => write!(f, "{what} returned retval {retval}"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(e),
            Self::Encode(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TransportError> for SessionError {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// The answer to one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every message that carried the request's context, in arrival order, except a dump's
    /// closing `control_ping_reply`.
    pub messages: Vec<Vec<u8>>,
    /// A dump's closing `control_ping_reply`.
    pub ping_reply: Option<Vec<u8>>,
}

/// What a pipelined burst did.
#[derive(Debug, Clone, PartialEq)]
pub struct BurstReport {
    /// Requests completed.
    pub completed: u64,
    /// Completed requests whose answer had a non-zero retval.
    pub failed: u64,
    /// The first non-zero retval seen.
    pub first_retval: Option<i32>,
    /// Wall time from the first send to the last answer.
    pub elapsed: Duration,
}

/// The connection and the message exchanges over it.
#[derive(Debug)]
pub struct Link {
    conn: Box<dyn Transport>,
    next_context: u32,
    timeout: Duration,
    unclaimed: VecDeque<Vec<u8>>,
    ping: u16,
    ping_reply: u16,
}

impl Link {
    /// The reply timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Where the connection goes, and over what.
    pub fn describe(&self) -> String {
        self.conn.describe()
    }

    /// How messages travel now.
    pub fn kind(&self) -> TransportKind {
        self.conn.kind()
    }

    /// The index the server gave us.
    pub fn client_index(&self) -> u32 {
        self.conn.client_index()
    }

    fn fresh_context(&mut self) -> u32 {
        let c = self.next_context;
        // Zero means "no context" to servers; skip it when wrapping.
        self.next_context = self.next_context.wrapping_add(1).max(1);
        c
    }

    /// Messages that arrived without a waiter (events, late replies), oldest first.
    pub fn take_unclaimed(&mut self) -> Vec<Vec<u8>> {
        self.unclaimed.drain(..).collect()
    }

    /// Reads whatever has already arrived, without waiting, into the unclaimed queue.
    pub fn poll(&mut self) -> Result<(), SessionError> {
        while let Some(m) = self.conn.recv(Duration::ZERO)? {
            self.unclaimed.push_back(m);
        }
        Ok(())
    }

    /// Waits up to `timeout` for one unclaimed message (an event).
    pub fn next_unclaimed(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, SessionError> {
        if let Some(m) = self.unclaimed.pop_front() {
            return Ok(Some(m));
        }
        Ok(self.conn.recv(timeout)?)
    }

    /// The next message to arrive before `deadline`, if any.
    fn recv_by(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, SessionError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        Ok(self.conn.recv(left)?)
    }

    fn timed_out(&self, waiting_for: String) -> SessionError {
        SessionError::Timeout {
            waiting_for,
            after: self.timeout,
            blind: self.conn.kind() == TransportKind::NamedShm,
        }
    }

    /// The next message with `context`, filing others as unclaimed; a timeout error if none
    /// arrives within the timeout.
    fn next_for(
        &mut self,
        api: &Api,
        context: u32,
        waiting_for: &str,
    ) -> Result<Vec<u8>, SessionError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(m) = self.recv_by(deadline)? else {
                return Err(self.timed_out(waiting_for.to_owned()));
            };
            if api.context_of(&m) == Some(context) {
                return Ok(m);
            }
            self.unclaimed.push_back(m);
        }
    }

    /// Sends one request (encoded from `value`) and collects its answer as its service says.
    pub fn request(
        &mut self,
        api: &Api,
        info: &MsgInfo,
        value: &Value,
    ) -> Result<Answer, SessionError> {
        let context = self.fresh_context();
        let bytes =
            command::encode_request(api.schema(), info, value, self.conn.client_index(), context)
                .map_err(SessionError::Encode)?;
        self.conn.queue(&bytes);
        if matches!(info.reply, ReplyKind::Dump { .. }) {
            self.queue_ping(context);
        }
        self.conn.flush()?;
        let mut answer = Answer::default();
        let done_id = |name: &str| api.by_name(name).map(|m| m.id);
        let end = match &info.reply {
            ReplyKind::None => return Ok(answer),
            ReplyKind::Single { reply } => (done_id(reply), reply.as_str()),
            ReplyKind::Dump { .. } => (Some(self.ping_reply), "control_ping_reply"),
            ReplyKind::StreamThenReply { reply, .. } => (done_id(reply), reply.as_str()),
        };
        loop {
            let m = self.next_for(api, context, end.1)?;
            let id = wire::msg_id(&m);
            if id == end.0 {
                if matches!(info.reply, ReplyKind::Dump { .. }) {
                    answer.ping_reply = Some(m);
                } else {
                    answer.messages.push(m);
                }
                return Ok(answer);
            }
            answer.messages.push(m);
        }
    }

    fn queue_ping(&mut self, context: u32) {
        let ping = memclnt::ControlPing {
            client_index: self.conn.client_index(),
            context,
        };
        if let Ok(bytes) = wire::to_vec(&ping, self.ping) {
            self.conn.queue(&bytes);
        }
    }

    /// Sends `total` copies of one request, keeping up to `window` in flight, and counts the
    /// answers. A request with no reply of its own is followed by a `control_ping` (as a dump
    /// is), whose reply marks it done. `progress` is called with the count done now and then.
    pub fn burst(
        &mut self,
        api: &Api,
        info: &MsgInfo,
        value: &Value,
        total: u64,
        window: usize,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BurstReport, SessionError> {
        let template =
            command::encode_request(api.schema(), info, value, self.conn.client_index(), 0)
                .map_err(SessionError::Encode)?;
        let (done_id, with_ping) = match &info.reply {
            ReplyKind::Single { reply } | ReplyKind::StreamThenReply { reply, .. } => {
                (api.by_name(reply).map(|m| m.id), false)
            }
            ReplyKind::Dump { .. } | ReplyKind::None => (Some(self.ping_reply), true),
        };
        let done_info = done_id.and_then(|id| api.by_id(id));
        let retval_offset =
            done_info.and_then(|d| vlibapi::schema::field_offset(api.schema(), &d.def, "retval"));
        let mut in_flight: HashSet<u32> = HashSet::with_capacity(window);
        let mut sent = 0u64;
        let mut report = BurstReport {
            completed: 0,
            failed: 0,
            first_retval: None,
            elapsed: Duration::ZERO,
        };
        let start = Instant::now();
        let mut last_progress = start;
        while report.completed < total {
            // Top the window up, then write once.
            let mut queued = false;
            while sent < total && in_flight.len() < window.max(1) {
                let context = self.fresh_context();
                let bytes = self.with_context(api, info, value, &template, context)?;
                self.conn.queue(&bytes);
                if with_ping {
                    self.queue_ping(context);
                }
                in_flight.insert(context);
                sent += 1;
                queued = true;
            }
            if queued {
                self.conn.flush()?;
            }
            // Wait for one answer, then take whatever else has already arrived.
            let mut timeout = self.timeout;
            loop {
                let Some(m) = self.conn.recv(timeout)? else {
                    if timeout.is_zero() {
                        break;
                    }
                    return Err(self.timed_out(format!(
                        "{} answer(s) to {}",
                        in_flight.len(),
                        info.name()
                    )));
                };
                timeout = Duration::ZERO;
                let Some(ctx) = api.context_of(&m).filter(|c| in_flight.contains(c)) else {
                    self.unclaimed.push_back(m);
                    continue;
                };
                if wire::msg_id(&m) != done_id {
                    // Details of a dump, or another message for the same request.
                    continue;
                }
                in_flight.remove(&ctx);
                report.completed += 1;
                let retval = retval_offset
                    .and_then(|o| m.get(o..o + 4))
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if let Some(r) = retval.filter(|&r| r != 0) {
                    report.failed += 1;
                    report.first_retval.get_or_insert(r);
                }
            }
            if last_progress.elapsed() >= Duration::from_millis(100) {
                last_progress = Instant::now();
                progress(report.completed);
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    fn with_context(
        &self,
        api: &Api,
        info: &MsgInfo,
        value: &Value,
        template: &[u8],
        context: u32,
    ) -> Result<Vec<u8>, SessionError> {
        match info.context_offset {
            Some(off) if template.len() >= off + 4 => {
                let mut bytes = template.to_vec();
                bytes[off..off + 4].copy_from_slice(&context.to_be_bytes());
                Ok(bytes)
            }
            // The context sits after a variable-size field: encode afresh.
            _ => command::encode_request(
                api.schema(),
                info,
                value,
                self.conn.client_index(),
                context,
            )
            .map_err(SessionError::Encode),
        }
    }

    /// Moves the connection onto a private shared-memory segment of `size` bytes (0: the
    /// server's default). Everything else carries on as before; only the client index changes.
    pub fn pivot(&mut self, size: u64, how: PivotRequest) -> Result<(), SessionError> {
        Ok(self.conn.pivot_to_shm(size, how)?)
    }

    /// Says goodbye.
    pub fn close(self) -> Result<(), SessionError> {
        Ok(self.conn.close()?)
    }

    /// A typed bootstrap request (before the API is loaded), checked for a zero retval.
    fn bootstrap<Req: Message, Rep: Message>(
        &mut self,
        table: &[(u16, String)],
        mut req: Req,
        set: impl FnOnce(&mut Req, u32, u32),
    ) -> Result<Rep, SessionError> {
        let id_of = |name_crc: &str| table.iter().find(|(_, n)| n == name_crc).map(|(id, _)| *id);
        let req_id = id_of(Req::NAME_CRC).ok_or(SessionError::Missing(Req::NAME))?;
        let rep_id = id_of(Rep::NAME_CRC).ok_or(SessionError::Missing(Rep::NAME))?;
        let context = self.fresh_context();
        set(&mut req, self.conn.client_index(), context);
        let bytes = wire::to_vec(&req, req_id).map_err(SessionError::Encode)?;
        self.conn.queue(&bytes);
        self.conn.flush()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(m) = self.recv_by(deadline)? else {
                return Err(self.timed_out(Rep::NAME.to_owned()));
            };
            if wire::msg_id(&m) != Some(rep_id) {
                self.unclaimed.push_back(m);
                continue;
            }
            let rep = Rep::decode(&m).map_err(SessionError::Decode)?;
            match rep.retval() {
                Some(r) if r != 0 => {
                    return Err(SessionError::Refused {
                        what: Req::NAME,
                        retval: r,
                    });
                }
                _ => return Ok(rep),
            }
        }
    }
}

/// A connected session: the link and the API it loaded.
#[derive(Debug)]
pub struct Session {
    /// The connection.
    pub link: Link,
    /// The server's API.
    pub api: Api,
}

impl Session {
    /// Connects to `target` as `name`, then loads the API: the message table from the
    /// registration, the module names from `api_versions` and the schema from `get_api_json`.
    pub fn open(target: &Target, name: &str, timeout: Duration) -> Result<Session, SessionError> {
        let conn = transport::connect(target, name, timeout)?;
        Session::over(conn, timeout)
    }

    /// Loads the API over an open connection.
    pub fn over(conn: Box<dyn Transport>, timeout: Duration) -> Result<Session, SessionError> {
        let table = conn.message_table();
        let id_of = |name_crc: &str| table.iter().find(|(_, n)| n == name_crc).map(|(id, _)| *id);
        let (ping, ping_reply) = match (
            id_of(memclnt::ControlPing::NAME_CRC),
            id_of(memclnt::ControlPingReply::NAME_CRC),
        ) {
            (Some(ping), Some(reply)) => (ping, reply),
            (ping, _) => {
                let _ = conn.close();
                return Err(SessionError::Missing(if ping.is_none() {
                    memclnt::ControlPing::NAME
                } else {
                    memclnt::ControlPingReply::NAME
                }));
            }
        };
        let mut link = Link {
            conn,
            next_context: 1,
            timeout,
            unclaimed: VecDeque::new(),
            ping,
            ping_reply,
        };
        match Session::load_api(&mut link, table) {
            Ok(api) => Ok(Session { link, api }),
            Err(e) => {
                // Registered but unusable: say goodbye rather than vanish (a client that
                // closes its socket without sockclnt_delete can leave a VPP spinning on it).
                let _ = link.close();
                Err(e)
            }
        }
    }

    /// The bootstrap after registration: module names from `api_versions`, the schema from
    /// `get_api_json`.
    fn load_api(link: &mut Link, table: Vec<(u16, String)>) -> Result<Api, SessionError> {
        let versions: memclnt::ApiVersionsReply =
            link.bootstrap(&table, memclnt::ApiVersions::default(), |r, ci, ctx| {
                r.client_index = ci;
                r.context = ctx;
            })?;
        let modules: Vec<ModuleSummary> = versions
            .api_versions
            .iter()
            .map(|m| ModuleSummary {
                name: m.name.clone(),
                version: vlibapi::schema::Version {
                    major: m.major,
                    minor: m.minor,
                    patch: m.patch,
                },
            })
            .collect();
        let json: memclnt::GetApiJsonReply =
            link.bootstrap(&table, memclnt::GetApiJson::default(), |r, ci, ctx| {
                r.client_index = ci;
                r.context = ctx;
            })?;
        Api::load(table, &json.json, &modules).map_err(SessionError::Api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{CLIENT, Fake};
    use vppinfra::unformat::Input;

    #[test]
    fn a_session_that_cannot_load_the_api_says_goodbye() {
        // The server goes away between api_versions and get_api_json.
        let fake = Fake::new().hang_up_after(1);
        let closed = fake.closed.clone();
        assert!(Session::over(Box::new(fake), Duration::from_millis(50)).is_err());
        assert!(closed.get(), "the connection was dropped without a goodbye");
        let fake = Fake::new();
        let closed = fake.closed.clone();
        let s = Session::over(Box::new(fake), Duration::from_millis(50)).expect("session");
        assert!(!closed.get());
        drop(s);
    }

    fn session() -> Session {
        Session::over(Box::new(Fake::new()), Duration::from_millis(50)).expect("session")
    }

    fn parse(s: &Session, line: &str) -> (MsgInfo, Value) {
        let mut input = Input::new(line);
        let info = s.api.by_name(input.word().unwrap()).unwrap().clone();
        let v = command::parse_message_args(s.api.schema(), &info.def, &mut input).unwrap();
        (info, v)
    }

    fn names(s: &Session, msgs: &[Vec<u8>]) -> Vec<String> {
        msgs.iter()
            .map(|m| s.api.decode(m).unwrap().info.name().to_owned())
            .collect()
    }

    #[test]
    fn loads_the_api_over_the_connection() {
        let s = session();
        assert_eq!(s.link.client_index(), CLIENT);
        let t = s.api.modules().iter().find(|m| m.name == "t").unwrap();
        assert_eq!(t.version.to_string(), "3.2.1");
        assert!(s.api.by_name("thing_get").is_some());
        assert_eq!(s.api.by_name("memclnt_create").unwrap().id, 1);
    }

    #[test]
    fn each_kind_of_answer() {
        let mut s = session();
        // A reply; the event sent before it is kept for later.
        let (info, v) = parse(&s, "poke value 41 color blue");
        let a = s.link.request(&s.api, &info, &v).unwrap();
        assert_eq!(names(&s, &a.messages), ["poke_reply"]);
        let reply = s.api.decode(&a.messages[0]).unwrap();
        assert_eq!(reply.value.get("value"), Some(&Value::U32(42)));
        assert_eq!(reply.value.get("color"), Some(&Value::U8(2)));
        let events = s.link.take_unclaimed();
        assert_eq!(names(&s, &events), ["tick_event"]);

        // A dump: the details, then the ping reply apart.
        let (info, v) = parse(&s, "thing_dump count 3");
        let a = s.link.request(&s.api, &info, &v).unwrap();
        assert_eq!(names(&s, &a.messages), ["thing_details"; 3]);
        assert_eq!(names(&s, a.ping_reply.as_slice()), ["control_ping_reply"]);

        // A `_get` stream: details, then the closing reply; no control_ping sent.
        let (info, v) = parse(&s, "thing_get");
        let a = s.link.request(&s.api, &info, &v).unwrap();
        assert_eq!(
            names(&s, &a.messages),
            ["thing_details", "thing_details", "thing_get_reply"]
        );
        assert_eq!(a.ping_reply, None);

        // No reply awaited.
        let (info, v) = parse(&s, "oneway");
        assert_eq!(
            s.link.request(&s.api, &info, &v).unwrap(),
            Answer::default()
        );

        // A promised reply that never comes: a timeout, and the session goes on.
        let (info, v) = parse(&s, "silent");
        let e = s.link.request(&s.api, &info, &v).unwrap_err();
        assert!(!e.is_fatal());
        assert_eq!(
            e.to_string(),
            "timed out after 50.000ms waiting for silent_reply"
        );
        let (info, v) = parse(&s, "fail retval -7");
        let a = s.link.request(&s.api, &info, &v).unwrap();
        assert_eq!(s.api.decode(&a.messages[0]).unwrap().retval(), Some(-7));
    }

    #[test]
    fn bursts_count_answers_and_failures() {
        let mut s = session();
        let (info, v) = parse(&s, "fail retval -116");
        let mut updates = 0;
        let r = s
            .link
            .burst(&s.api, &info, &v, 100, 7, &mut |_| updates += 1)
            .unwrap();
        assert_eq!(
            (r.completed, r.failed, r.first_retval),
            (100, 100, Some(-116))
        );
        let (info, v) = parse(&s, "thing_dump count 2");
        let r = s.link.burst(&s.api, &info, &v, 10, 3, &mut |_| {}).unwrap();
        assert_eq!((r.completed, r.failed), (10, 0));
        // Requests without a reply are followed by a control_ping each.
        let (info, v) = parse(&s, "oneway");
        let r = s.link.burst(&s.api, &info, &v, 5, 2, &mut |_| {}).unwrap();
        assert_eq!(r.completed, 5);
        // Events that arrive during a burst are kept.
        let (info, v) = parse(&s, "poke");
        s.link.burst(&s.api, &info, &v, 4, 4, &mut |_| {}).unwrap();
        assert_eq!(s.link.take_unclaimed().len(), 4);
        let (info, v) = parse(&s, "silent");
        let e = s
            .link
            .burst(&s.api, &info, &v, 3, 2, &mut |_| {})
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "timed out after 50.000ms waiting for 2 answer(s) to silent"
        );
    }

    #[test]
    fn contexts_are_fresh_and_never_zero() {
        let mut s = session();
        s.link.next_context = u32::MAX;
        assert_eq!(s.link.fresh_context(), u32::MAX);
        assert_eq!(s.link.fresh_context(), 1);
    }

    #[test]
    fn a_lost_server_is_fatal() {
        let mut s = Session::over(
            Box::new(Fake::new().hang_up_after(2)),
            Duration::from_millis(50),
        )
        .unwrap();
        let (info, v) = parse(&s, "poke");
        let e = s.link.request(&s.api, &info, &v).unwrap_err();
        assert!(e.is_fatal());
        assert_eq!(
            e.to_string(),
            "the server closed the connection (server gone)"
        );
        assert!(s.link.poll().unwrap_err().is_fatal());
        let e = s
            .link
            .pivot(1 << 20, PivotRequest::SockInitShm)
            .unwrap_err();
        assert!(e.is_fatal(), "{e}");
    }

    #[test]
    fn an_impossible_pivot_leaves_the_session_as_it_was() {
        let mut s = session();
        let e = s
            .link
            .pivot(0, PivotRequest::MemfdSegmentCreate)
            .unwrap_err();
        assert!(!e.is_fatal());
        assert_eq!(
            e.to_string(),
            "memfd_segment_create: cannot move to shared memory: the in-process test server \
             has no shared memory"
        );
        assert_eq!(s.link.kind(), TransportKind::Socket);
        let (info, v) = parse(&s, "poke value 1");
        let a = s.link.request(&s.api, &info, &v).unwrap();
        assert_eq!(names(&s, &a.messages), ["poke_reply"]);
    }

    #[test]
    fn a_timeout_says_when_a_dead_server_cannot_be_noticed() {
        let timeout = |blind| SessionError::Timeout {
            waiting_for: "control_ping_reply".into(),
            after: Duration::from_secs(1),
            blind,
        };
        assert_eq!(
            timeout(false).to_string(),
            "timed out after 1.000s waiting for control_ping_reply"
        );
        assert_eq!(
            timeout(true).to_string(),
            "timed out after 1.000s waiting for control_ping_reply (attached by name, vat \
             cannot tell a server that died from a slow one)"
        );
        assert!(!timeout(true).is_fatal());
    }
}
