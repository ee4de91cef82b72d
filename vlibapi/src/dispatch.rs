//! Handler registration and dispatch by message ID.
//!
//! An [`ApiBuilder`] holds the [`MessageTable`] while modules and handlers are registered, and
//! [`ApiBuilder::build`] freezes both into a [`Dispatcher`]. The server's transports call
//! [`Dispatcher::dispatch`] with each received message and an [`Outbox`] that can reach every
//! client, whatever its transport. Dispatch is single-threaded; handlers are `FnMut` closures
//! and need not be `Send`.
//!
//! Three kinds of handler:
//! * typed ([`ApiBuilder::handle`]): the framework decodes the request (invalid input never
//!   reaches the handler), the handler returns its reply or an [`ApiError`], the framework echoes
//!   `context` and sends the reply. On `Err` it sends the reply type's `Default` with
//!   `retval = err.retval()`: the one place where errors become retvals;
//! * streaming ([`ApiBuilder::handle_stream`]) for dumps: the handler sends any number of details
//!   through [`Ctx::reply`]; the client's trailing `control_ping` marks the end, as vpp_papi
//!   expects;
//! * raw ([`ApiBuilder::handle_raw`]): the handler gets the bytes, after the same validation
//!   (by the dynamic codec).
//!
//! Validation failures and unknown IDs are counted under named counters
//! ([`DispatchCounters`]) and returned as [`DispatchError`]; nothing is sent for them.

use std::fmt;

use crate::msgs::memclnt;
use crate::schema::{self, Module};
use crate::table::{MessageTable, TableAddError};
use crate::trace::{Direction, Trace};
use crate::value;
use crate::wire::{self, DecodeError, DecodeErrorKind, EncodeError, Message};

/// A client's handle, as the transports assign it (socket clients have bit 31 set; shared-memory
/// clients are `pool_index << 8 | epoch`). vlibapi only carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientIndex(pub u32);

/// What a transport layer offers the dispatcher: a way to reach any registered client.
pub trait Outbox {
    /// Queues one whole message for client `to`.
    fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), SendError>;
    /// Calls `f` once per registered client.
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex));
}

/// Why a transport could not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No client with that index.
    UnknownClient(ClientIndex),
    /// The client's queue is full.
    QueueFull,
    /// The client is gone.
    Disconnected,
    /// An OS error (errno).
    Os(i32),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownClient(c) => write!(f, "no client {:#x}", c.0),
            SendError::QueueFull => write!(f, "client queue full"),
            SendError::Disconnected => write!(f, "client disconnected"),
            SendError::Os(e) => write!(f, "os error {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// A handler's failure. [`ApiError::retval`] is the one mapping from errors to `retval`.
///
/// The named values are VPP's (`vnet/api_errno.h`), so clients that know them keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// -1.
    Unspecified,
    /// -6.
    NoSuchEntry,
    /// -7.
    InvalidValue,
    /// -9.
    Unimplemented,
    /// -31: the request came from the wrong kind of registration.
    InvalidRegistration,
    /// -70.
    InvalidMemorySize,
    /// -73.
    InvalidArgument,
    /// -107.
    QueueFull,
    /// -116.
    EntryAlreadyExists,
    /// -126.
    Unsupported,
    /// Any other value.
    Retval(i32),
}

impl ApiError {
    /// The `retval` a reply carries for this error.
    pub fn retval(self) -> i32 {
        match self {
            ApiError::Unspecified => -1,
            ApiError::NoSuchEntry => -6,
            ApiError::InvalidValue => -7,
            ApiError::Unimplemented => -9,
            ApiError::InvalidRegistration => -31,
            ApiError::InvalidMemorySize => -70,
            ApiError::InvalidArgument => -73,
            ApiError::QueueFull => -107,
            ApiError::EntryAlreadyExists => -116,
            ApiError::Unsupported => -126,
            ApiError::Retval(r) => r,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api error {}", self.retval())
    }
}

impl std::error::Error for ApiError {}

/// Why a handler could not send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    /// The message type is not in the table (we never send IDs clients cannot look up).
    NotInTable(String),
    /// The message could not be encoded.
    Encode(EncodeError),
    /// The transport refused it.
    Send(SendError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotInTable(m) => write!(f, "message `{m}` is not in the table"),
            ReplyError::Encode(e) => write!(f, "encode: {e}"),
            ReplyError::Send(e) => write!(f, "send: {e}"),
        }
    }
}

impl std::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyError::Encode(e) => Some(e),
            ReplyError::Send(e) => Some(e),
            ReplyError::NotInTable(_) => None,
        }
    }
}

/// Why a received message was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchError {
    /// Fewer than two bytes: no message ID.
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The ID is not in the table.
    UnknownId(u16),
    /// The ID is known but nothing handles it.
    NoHandler(u16),
    /// The message failed validation; the handler did not run.
    Invalid {
        /// The message ID.
        id: u16,
        /// What is wrong.
        error: DecodeError,
    },
    /// A streaming or raw handler failed (typed handlers answer with a retval instead).
    Failed {
        /// The message ID.
        id: u16,
        /// The handler's error.
        error: ApiError,
    },
    /// The handler ran but a message it sent could not go out.
    Reply {
        /// The message ID.
        id: u16,
        /// What went wrong.
        error: ReplyError,
    },
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::TooShort { len } => write!(f, "message of {len} bytes has no id"),
            DispatchError::UnknownId(id) => write!(f, "unknown message id {id}"),
            DispatchError::NoHandler(id) => write!(f, "no handler for message id {id}"),
            DispatchError::Invalid { id, error } => write!(f, "message id {id}: {error}"),
            DispatchError::Failed { id, error } => write!(f, "message id {id}: {error}"),
            DispatchError::Reply { id, error } => write!(f, "message id {id}: reply: {error}"),
        }
    }
}

impl std::error::Error for DispatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DispatchError::Invalid { error, .. } => Some(error),
            DispatchError::Failed { error, .. } => Some(error),
            DispatchError::Reply { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Named error counters of a dispatcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchCounters {
    /// Messages handed to a handler.
    pub dispatched: u64,
    /// Shorter than the fixed part (or than a message ID).
    pub too_short: u64,
    /// A variable array's count runs past the end.
    pub bad_length: u64,
    /// A string without room, without NUL or not UTF-8.
    pub bad_string: u64,
    /// The ID is not in the table.
    pub unknown_id: u64,
    /// No handler registered for a known ID.
    pub no_handler: u64,
    /// Handlers that returned an error.
    pub handler_error: u64,
    /// Messages the transport refused.
    pub send_failed: u64,
}

impl DispatchCounters {
    /// Every counter with its name.
    pub fn named(&self) -> [(&'static str, u64); 8] {
        [
            ("dispatched", self.dispatched),
            ("too_short", self.too_short),
            ("bad_length", self.bad_length),
            ("bad_string", self.bad_string),
            ("unknown_id", self.unknown_id),
            ("no_handler", self.no_handler),
            ("handler_error", self.handler_error),
            ("send_failed", self.send_failed),
        ]
    }
}

/// Per-message counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgCounters {
    /// Times received (valid or not).
    pub rx: u64,
    /// Times rejected or failed.
    pub errors: u64,
}

/// Per-handler flags, as VPP keeps them per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerFlags {
    /// Safe to run outside the main thread's barrier (`is_mp_safe`).
    pub mp_safe: bool,
    /// The transport must not free the message after the handler (`message_bounce`).
    pub bounce: bool,
    /// Record it in the rx trace when tracing is on.
    pub trace: bool,
}

impl Default for HandlerFlags {
    fn default() -> Self {
        HandlerFlags {
            mp_safe: false,
            bounce: false,
            trace: true,
        }
    }
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The message is not in the table (register its module first).
    NotInTable(String),
    /// The message already has a handler.
    AlreadyHandled(String),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::NotInTable(m) => write!(f, "message `{m}` is not in the table"),
            RegisterError::AlreadyHandled(m) => write!(f, "message `{m}` already has a handler"),
        }
    }
}

impl std::error::Error for RegisterError {}

enum Failure {
    Decode(DecodeError),
    Api(ApiError),
    Reply(ReplyError),
}

type HandlerFn = Box<dyn FnMut(&mut Ctx<'_>, &[u8]) -> Result<(), Failure>>;

fn boxed<F>(f: F) -> HandlerFn
where
    F: FnMut(&mut Ctx<'_>, &[u8]) -> Result<(), Failure> + 'static,
{
    Box::new(f)
}

struct Slot {
    handler: Option<HandlerFn>,
    flags: HandlerFlags,
    /// Where the request's `context` sits, to echo it from streaming and raw handlers.
    context_offset: Option<usize>,
    counters: MsgCounters,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("handled", &self.handler.is_some())
            .field("flags", &self.flags)
            .field("counters", &self.counters)
            .finish()
    }
}

/// State handlers reach through [`Ctx`].
#[derive(Debug)]
struct Shared {
    table: MessageTable,
    buf: Vec<u8>,
    trace: Trace,
    counters: DispatchCounters,
    clients: Vec<ClientIndex>,
}

/// What a handler gets: the sender, the table, and ways to send.
pub struct Ctx<'a> {
    client: ClientIndex,
    context: Option<u32>,
    shared: &'a mut Shared,
    out: &'a mut dyn Outbox,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("client", &self.client)
            .field("context", &self.context)
            .finish()
    }
}

impl Ctx<'_> {
    /// The client that sent the message being handled.
    pub fn client(&self) -> ClientIndex {
        self.client
    }

    /// The request's `context`, if it has one.
    pub fn context(&self) -> Option<u32> {
        self.context
    }

    /// The message table.
    pub fn table(&self) -> &MessageTable {
        &self.shared.table
    }

    /// The ID of a message type in this table.
    pub fn msg_id<M: Message>(&self) -> Option<u16> {
        self.shared.table.id_of::<M>()
    }

    /// Sends `msg` to the sender, with the request's `context` (details of a dump, or any
    /// reply a raw handler builds).
    pub fn reply<M: Message>(&mut self, msg: &M) -> Result<(), ReplyError> {
        let id = self.id_for::<M>()?;
        let to = self.client;
        self.encode(id, msg)?;
        if let (Some(off), Some(c)) = (M::CONTEXT_OFFSET, self.context) {
            if let Some(slot) = self.shared.buf.get_mut(off..off + 4) {
                slot.copy_from_slice(&c.to_be_bytes());
            }
        }
        self.transmit(to)
    }

    /// Sends `msg` as it is to client `to` (an event, for instance).
    pub fn send_to<M: Message>(&mut self, to: ClientIndex, msg: &M) -> Result<(), ReplyError> {
        let id = self.id_for::<M>()?;
        self.encode(id, msg)?;
        self.transmit(to)
    }

    /// Sends already-encoded bytes to `to`. Their ID must be in the table.
    pub fn send_raw(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), ReplyError> {
        check_known(&self.shared.table, msg)?;
        self.shared.buf.clear();
        self.shared.buf.extend_from_slice(msg);
        self.transmit(to)
    }

    /// Sends `msg` to every registered client; returns how many took it. Refusals are counted
    /// under `send_failed`.
    pub fn broadcast<M: Message>(&mut self, msg: &M) -> Result<usize, ReplyError> {
        let id = self.id_for::<M>()?;
        self.encode(id, msg)?;
        let mut clients = std::mem::take(&mut self.shared.clients);
        clients.clear();
        self.out.for_each_client(&mut |c| clients.push(c));
        let mut sent = 0;
        for &c in &clients {
            if self.transmit(c).is_ok() {
                sent += 1;
            }
        }
        self.shared.clients = clients;
        Ok(sent)
    }

    fn id_for<M: Message>(&self) -> Result<u16, ReplyError> {
        self.shared
            .table
            .id_of::<M>()
            .ok_or_else(|| ReplyError::NotInTable(M::NAME_CRC.to_owned()))
    }

    #[inline]
    fn encode<M: Message>(&mut self, id: u16, msg: &M) -> Result<(), ReplyError> {
        self.shared.buf.clear();
        msg.encode(id, &mut self.shared.buf)
            .map_err(ReplyError::Encode)
    }

    #[inline]
    fn transmit(&mut self, to: ClientIndex) -> Result<(), ReplyError> {
        self.shared
            .trace
            .record(Direction::Tx, to, &self.shared.buf);
        self.out.send(to, &self.shared.buf).map_err(|e| {
            self.shared.counters.send_failed += 1;
            ReplyError::Send(e)
        })
    }
}

fn check_known(table: &MessageTable, msg: &[u8]) -> Result<(), ReplyError> {
    match wire::msg_id(msg) {
        Some(id) if table.info(id).is_some() => Ok(()),
        Some(id) => Err(ReplyError::NotInTable(format!("id {id}"))),
        None => Err(ReplyError::NotInTable("a message without id".to_owned())),
    }
}

/// A registered handler, to adjust its flags.
#[derive(Debug)]
pub struct HandlerRef<'a> {
    id: u16,
    flags: &'a mut HandlerFlags,
}

impl HandlerRef<'_> {
    /// The handled message's ID.
    pub fn id(&self) -> u16 {
        self.id
    }
    /// Marks the handler safe to run without the main-thread barrier.
    pub fn mp_safe(self) -> Self {
        self.flags.mp_safe = true;
        self
    }
    /// Marks the message as not to be freed by the transport after the handler.
    pub fn bounce(self) -> Self {
        self.flags.bounce = true;
        self
    }
    /// Keeps the message out of the rx trace.
    pub fn no_trace(self) -> Self {
        self.flags.trace = false;
        self
    }
}

/// Registers modules and handlers, then builds the [`Dispatcher`].
#[derive(Debug)]
pub struct ApiBuilder {
    table: MessageTable,
    slots: Vec<Slot>,
    trace_capacity: usize,
}

impl Default for ApiBuilder {
    fn default() -> Self {
        ApiBuilder::new()
    }
}

impl ApiBuilder {
    /// A builder whose table holds memclnt and our core modules (memfd, vpe, vlib_api).
    pub fn new() -> ApiBuilder {
        ApiBuilder::with_table(MessageTable::with_core())
    }

    /// A builder over a given table.
    pub fn with_table(table: MessageTable) -> ApiBuilder {
        ApiBuilder {
            table,
            slots: Vec::new(),
            trace_capacity: 256,
        }
    }

    /// The table so far.
    pub fn table(&self) -> &MessageTable {
        &self.table
    }

    /// Registers a module (a plugin's `schema()`); returns its first message ID.
    pub fn add_module(&mut self, m: Module) -> Result<u16, TableAddError> {
        self.table.add_module(m)
    }

    /// Messages kept per trace direction (default 256).
    pub fn trace_capacity(&mut self, n: usize) -> &mut Self {
        self.trace_capacity = n;
        self
    }

    fn slot(&mut self, name_crc: &str) -> Result<(u16, &mut Slot), RegisterError> {
        let id = self
            .table
            .id(name_crc)
            .ok_or_else(|| RegisterError::NotInTable(name_crc.to_owned()))?;
        let context_offset = self.table.info(id).and_then(|i| {
            let is_u32 = i.def.fields.iter().any(|f| {
                f.name == "context"
                    && f.array == schema::ArrayKind::None
                    && f.ty == schema::TypeRef::Base(schema::BaseType::U32)
            });
            schema::field_offset(self.table.schema(), i.def, "context").filter(|_| is_u32)
        });
        let n = usize::from(id) + 1;
        if self.slots.len() < n {
            self.slots.resize_with(n, || Slot {
                handler: None,
                flags: HandlerFlags::default(),
                context_offset: None,
                counters: MsgCounters::default(),
            });
        }
        let slot = &mut self.slots[usize::from(id)];
        if slot.handler.is_some() {
            return Err(RegisterError::AlreadyHandled(name_crc.to_owned()));
        }
        slot.context_offset = context_offset;
        Ok((id, slot))
    }

    fn install(&mut self, name_crc: &str, h: HandlerFn) -> Result<HandlerRef<'_>, RegisterError> {
        let (id, slot) = self.slot(name_crc)?;
        slot.handler = Some(h);
        Ok(HandlerRef {
            id,
            flags: &mut slot.flags,
        })
    }

    /// A typed request/reply handler. The framework decodes `Req`, echoes its `context` into
    /// the reply, and on `Err(e)` sends `Rep::default()` with `retval = e.retval()`.
    pub fn handle<Req: Message, Rep: Message>(
        &mut self,
        mut f: impl FnMut(&mut Ctx<'_>, Req) -> Result<Rep, ApiError> + 'static,
    ) -> Result<HandlerRef<'_>, RegisterError> {
        let reply_id = self
            .table
            .id_of::<Rep>()
            .ok_or_else(|| RegisterError::NotInTable(Rep::NAME_CRC.to_owned()))?;
        let h = boxed(move |ctx, bytes| {
            let req = Req::decode(bytes).map_err(Failure::Decode)?;
            let context = req.context();
            let (mut rep, failed) = match f(ctx, req) {
                Ok(rep) => (rep, None),
                Err(e) => {
                    // The one place where a handler's error becomes a retval.
                    let mut rep = Rep::default();
                    rep.set_retval(e.retval());
                    (rep, Some(e))
                }
            };
            if let Some(c) = context {
                rep.set_context(c);
            }
            if failed.is_some() {
                ctx.shared.counters.handler_error += 1;
            }
            ctx.encode(reply_id, &rep).map_err(Failure::Reply)?;
            ctx.transmit(ctx.client).map_err(Failure::Reply)
        });
        self.install(Req::NAME_CRC, h)
    }

    /// A streaming handler (a dump): it sends details through [`Ctx::reply`]; nothing else is
    /// sent for it. An `Err` is counted and returned from dispatch.
    pub fn handle_stream<Req: Message>(
        &mut self,
        mut f: impl FnMut(&mut Ctx<'_>, Req) -> Result<(), ApiError> + 'static,
    ) -> Result<HandlerRef<'_>, RegisterError> {
        let h = boxed(move |ctx, bytes| {
            let req = Req::decode(bytes).map_err(Failure::Decode)?;
            f(ctx, req).map_err(Failure::Api)
        });
        self.install(Req::NAME_CRC, h)
    }

    /// A raw handler for the message `name_crc`: it gets the bytes, already validated against
    /// the schema.
    pub fn handle_raw(
        &mut self,
        name_crc: &str,
        mut f: impl FnMut(&mut Ctx<'_>, &[u8]) -> Result<(), ApiError> + 'static,
    ) -> Result<HandlerRef<'_>, RegisterError> {
        let id = self
            .table
            .id(name_crc)
            .ok_or_else(|| RegisterError::NotInTable(name_crc.to_owned()))?;
        let h = boxed(move |ctx, bytes| {
            if let Some(info) = ctx.shared.table.info(id) {
                value::decode_message(ctx.shared.table.schema(), info.def, bytes)
                    .map_err(Failure::Decode)?;
            }
            f(ctx, bytes).map_err(Failure::Api)
        });
        self.install(name_crc, h)
    }

    /// Handlers for the memclnt requests whose answers come from the table alone:
    /// `control_ping` (reply carries `vpe_pid` and echoes `client_index`), `get_first_msg_id`,
    /// `api_versions`, `get_api_json` (computed once, on first use), and `memclnt_keepalive`
    /// (mp-safe, untraced).
    pub fn add_memclnt_handlers(&mut self, vpe_pid: u32) -> Result<(), RegisterError> {
        self.handle(move |_ctx, req: memclnt::ControlPing| {
            Ok(memclnt::ControlPingReply {
                client_index: req.client_index,
                vpe_pid,
                ..Default::default()
            })
        })?;
        self.handle(|ctx, req: memclnt::GetFirstMsgId| {
            let first = ctx
                .table()
                .first_msg_id(&req.name)
                .ok_or(ApiError::Unspecified)?;
            Ok(memclnt::GetFirstMsgIdReply {
                first_msg_id: first,
                ..Default::default()
            })
        })?;
        self.handle(|ctx, _req: memclnt::ApiVersions| {
            let api_versions = ctx.table().api_versions();
            Ok(memclnt::ApiVersionsReply {
                count: api_versions.len() as u32,
                api_versions,
                ..Default::default()
            })
        })?;
        let mut cached: Option<String> = None;
        self.handle(move |ctx, _req: memclnt::GetApiJson| {
            let json = cached.get_or_insert_with(|| ctx.table().api_json()).clone();
            Ok(memclnt::GetApiJsonReply {
                json,
                ..Default::default()
            })
        })?;
        self.handle(|_ctx, _req: memclnt::MemclntKeepalive| {
            Ok(memclnt::MemclntKeepaliveReply::default())
        })?
        .mp_safe()
        .no_trace();
        Ok(())
    }

    /// Freezes the table and handlers.
    pub fn build(mut self) -> Dispatcher {
        let n = self.table.len() + 1;
        if self.slots.len() < n {
            self.slots.resize_with(n, || Slot {
                handler: None,
                flags: HandlerFlags::default(),
                context_offset: None,
                counters: MsgCounters::default(),
            });
        }
        Dispatcher {
            slots: self.slots,
            shared: Shared {
                table: self.table,
                buf: Vec::with_capacity(4096),
                trace: Trace::new(self.trace_capacity),
                counters: DispatchCounters::default(),
                clients: Vec::new(),
            },
        }
    }
}

/// The outcome of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages dispatched without error.
    pub ok: usize,
    /// Messages that failed.
    pub failed: usize,
}

/// Routes received messages to their handlers.
#[derive(Debug)]
pub struct Dispatcher {
    /// Slot `id` handles message `id`; slot 0 is never used.
    slots: Vec<Slot>,
    shared: Shared,
}

impl Dispatcher {
    /// Validates and handles one message from `client`; replies go out through `out`.
    pub fn dispatch(
        &mut self,
        client: ClientIndex,
        msg: &[u8],
        out: &mut dyn Outbox,
    ) -> Result<(), DispatchError> {
        let Some(id) = wire::msg_id(msg) else {
            self.shared.counters.too_short += 1;
            return Err(DispatchError::TooShort { len: msg.len() });
        };
        let Some(slot) = self.slots.get_mut(usize::from(id)).filter(|_| id != 0) else {
            self.shared.counters.unknown_id += 1;
            return Err(DispatchError::UnknownId(id));
        };
        if id as usize > self.shared.table.len() {
            self.shared.counters.unknown_id += 1;
            return Err(DispatchError::UnknownId(id));
        }
        slot.counters.rx += 1;
        let Some(handler) = slot.handler.as_mut() else {
            slot.counters.errors += 1;
            self.shared.counters.no_handler += 1;
            return Err(DispatchError::NoHandler(id));
        };
        if slot.flags.trace {
            self.shared.trace.record(Direction::Rx, client, msg);
        }
        let context = slot
            .context_offset
            .and_then(|off| msg.get(off..off + 4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let mut ctx = Ctx {
            client,
            context,
            shared: &mut self.shared,
            out,
        };
        let r = handler(&mut ctx, msg);
        let counters = &mut self.shared.counters;
        match r {
            Ok(()) => {
                counters.dispatched += 1;
                Ok(())
            }
            Err(failure) => {
                slot.counters.errors += 1;
                Err(match failure {
                    Failure::Decode(error) => {
                        match error.kind() {
                            DecodeErrorKind::TooShort => counters.too_short += 1,
                            DecodeErrorKind::BadLength => counters.bad_length += 1,
                            DecodeErrorKind::BadString => counters.bad_string += 1,
                        }
                        DispatchError::Invalid { id, error }
                    }
                    Failure::Api(error) => {
                        counters.dispatched += 1;
                        counters.handler_error += 1;
                        DispatchError::Failed { id, error }
                    }
                    Failure::Reply(error) => {
                        counters.dispatched += 1;
                        DispatchError::Reply { id, error }
                    }
                })
            }
        }
    }

    /// Sends a message outside of any handler (an event, a keepalive ping); it is traced like
    /// replies.
    pub fn send<M: Message>(
        &mut self,
        to: ClientIndex,
        msg: &M,
        out: &mut dyn Outbox,
    ) -> Result<(), ReplyError> {
        let mut ctx = Ctx {
            client: to,
            context: None,
            shared: &mut self.shared,
            out,
        };
        ctx.send_to(to, msg)
    }

    /// Dispatches saved messages (see [`crate::trace::load`]) as if `client` had sent them.
    #[doc(alias = "vl_msg_api_trace_replay")]
    pub fn replay(
        &mut self,
        msgs: &[Vec<u8>],
        client: ClientIndex,
        out: &mut dyn Outbox,
    ) -> ReplayReport {
        let mut report = ReplayReport::default();
        for m in msgs {
            match self.dispatch(client, m, out) {
                Ok(()) => report.ok += 1,
                Err(_) => report.failed += 1,
            }
        }
        report
    }

    /// The message table.
    pub fn table(&self) -> &MessageTable {
        &self.shared.table
    }

    /// The trace rings.
    pub fn trace(&self) -> &Trace {
        &self.shared.trace
    }

    /// The trace rings, to enable, disable or clear them.
    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.shared.trace
    }

    /// The named counters.
    pub fn counters(&self) -> &DispatchCounters {
        &self.shared.counters
    }

    /// Counters of message `id`.
    pub fn msg_counters(&self, id: u16) -> Option<MsgCounters> {
        self.slots.get(usize::from(id)).map(|s| s.counters)
    }

    /// Flags of message `id`'s handler, if it has one.
    pub fn flags(&self, id: u16) -> Option<HandlerFlags> {
        self.slots
            .get(usize::from(id))
            .filter(|s| s.handler.is_some())
            .map(|s| s.flags)
    }

    /// Pretty-prints message bytes.
    pub fn format(&self, msg: &[u8]) -> String {
        crate::pretty::format_message(&self.shared.table, msg)
    }
}
