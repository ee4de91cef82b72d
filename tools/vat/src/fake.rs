//! Test support: a [`Transport`] served in-process by a vlibapi [`Dispatcher`], so sessions and
//! the runner are tested without sockets or processes.
//!
//! The fake server has memclnt's handlers plus a `t` module that covers every way a request is
//! answered: `poke` (a reply, with an event sent first), `thing_dump` (a dump), `thing_get`
//! (details, then a closing reply), `fail` (a reply with the retval asked for), `silent` (a
//! promised reply that never comes) and `oneway` (no reply at all).

use std::collections::VecDeque;
use std::time::Duration;

use vlibapi::dispatch::{Outbox, SendError};
use vlibapi::schema::Module;
use vlibapi::value::{self, Value};
use vlibapi::{ApiBuilder, ApiError, ClientIndex, Dispatcher};
use vlibsocket::client::TransportKind;

use crate::transport::{PivotRequest, Transport, TransportError};

pub(crate) const T_JSON: &str = r#"{
    "enums": [["color", ["COLOR_RED", 1], ["COLOR_BLUE", 2], {"enumtype": "u8"}]],
    "messages": [
        ["poke", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
            ["u32", "value"], ["vl_api_color_t", "color"]],
        ["poke_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"],
            ["u32", "value"], ["vl_api_color_t", "color"]],
        ["tick_event", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "n"]],
        ["thing_dump", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
            ["u8", "count"]],
        ["thing_details", ["u16", "_vl_msg_id"], ["u32", "context"], ["u32", "index"]],
        ["thing_get", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"]],
        ["thing_get_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"],
            ["u32", "cursor"]],
        ["fail", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
            ["i32", "retval"]],
        ["fail_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"]],
        ["silent", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"]],
        ["silent_reply", ["u16", "_vl_msg_id"], ["u32", "context"], ["i32", "retval"]],
        ["oneway", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"]]
    ],
    "services": {
        "poke": {"reply": "poke_reply", "events": ["tick_event"]},
        "thing_dump": {"reply": "thing_details", "stream": true},
        "thing_get": {"reply": "thing_get_reply", "stream": true, "stream_msg": "thing_details"},
        "fail": {"reply": "fail_reply"},
        "silent": {"reply": "silent_reply"},
        "oneway": {"reply": "null"}
    },
    "options": {"version": "3.2.1"}
}"#;

/// The client index the fake server gives.
pub(crate) const CLIENT: u32 = 0x8000_0007;

struct Inbox<'a>(&'a mut VecDeque<Vec<u8>>);

impl Outbox for Inbox<'_> {
    fn send(&mut self, _to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        self.0.push_back(msg.to_vec());
        Ok(())
    }

    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        f(ClientIndex(CLIENT));
    }
}

/// Encodes `members` as message `name` of the table behind `ctx`.
fn encode(ctx: &vlibapi::Ctx<'_>, name: &str, members: Vec<(&str, Value)>) -> Vec<u8> {
    let table = ctx.table();
    let id = table.id_by_name(name).expect("in the table");
    let def = table.info(id).expect("described").def;
    let v = Value::Struct(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    );
    let mut out = Vec::new();
    value::encode_message(table.schema(), def, id, &v, &mut out).expect("encodes");
    out
}

fn field(ctx: &vlibapi::Ctx<'_>, bytes: &[u8], name: &str) -> i128 {
    let table = ctx.table();
    let id = vlibapi::wire::msg_id(bytes).expect("id");
    let def = table.info(id).expect("described").def;
    value::decode_message(table.schema(), def, bytes)
        .expect("decodes")
        .get(name)
        .and_then(Value::as_i128)
        .unwrap_or(0)
}

fn dispatcher() -> Dispatcher {
    let t = Module::from_json_text("t", T_JSON).expect("t module");
    let crc = |name: &str| t.message(name).expect("defined").name_crc();
    let mut api = ApiBuilder::new();
    api.add_memclnt_handlers(4242).expect("memclnt handlers");
    api.add_module(t.clone()).expect("add t");
    let ctx_u32 = |ctx: &vlibapi::Ctx<'_>| Value::U32(ctx.context().unwrap_or(0));
    api.handle_raw(&crc("poke"), move |ctx, bytes| {
        let tick = encode(
            ctx,
            "tick_event",
            vec![("client_index", Value::U32(CLIENT)), ("n", Value::U32(1))],
        );
        ctx.send_raw(ctx.client(), &tick)
            .map_err(|_| ApiError::Unspecified)?;
        let reply = encode(
            ctx,
            "poke_reply",
            vec![
                ("context", ctx_u32(ctx)),
                ("value", Value::U64(field(ctx, bytes, "value") as u64 + 1)),
                ("color", Value::U64(field(ctx, bytes, "color") as u64)),
            ],
        );
        ctx.send_raw(ctx.client(), &reply)
            .map_err(|_| ApiError::Unspecified)
    })
    .expect("poke");
    api.handle_raw(&crc("thing_dump"), move |ctx, bytes| {
        for i in 0..field(ctx, bytes, "count") {
            let d = encode(
                ctx,
                "thing_details",
                vec![("context", ctx_u32(ctx)), ("index", Value::U64(i as u64))],
            );
            ctx.send_raw(ctx.client(), &d)
                .map_err(|_| ApiError::Unspecified)?;
        }
        Ok(())
    })
    .expect("thing_dump");
    api.handle_raw(&crc("thing_get"), move |ctx, _| {
        for i in 0..2u64 {
            let d = encode(
                ctx,
                "thing_details",
                vec![("context", ctx_u32(ctx)), ("index", Value::U64(i))],
            );
            ctx.send_raw(ctx.client(), &d)
                .map_err(|_| ApiError::Unspecified)?;
        }
        let r = encode(
            ctx,
            "thing_get_reply",
            vec![("context", ctx_u32(ctx)), ("cursor", Value::U32(2))],
        );
        ctx.send_raw(ctx.client(), &r)
            .map_err(|_| ApiError::Unspecified)
    })
    .expect("thing_get");
    api.handle_raw(&crc("fail"), move |ctx, bytes| {
        let r = encode(
            ctx,
            "fail_reply",
            vec![
                ("context", ctx_u32(ctx)),
                ("retval", Value::I64(field(ctx, bytes, "retval") as i64)),
            ],
        );
        ctx.send_raw(ctx.client(), &r)
            .map_err(|_| ApiError::Unspecified)
    })
    .expect("fail");
    api.handle_raw(&crc("oneway"), |_, _| Ok(()))
        .expect("oneway");
    api.build()
}

/// The fake connection. Requests are handled when flushed; a `recv` that finds nothing
/// returns at once (its timeout has nothing to wait for). [`Fake::hang_up_after`] makes the
/// server "die" after some flushes: every operation then reports it gone.
#[derive(Debug)]
pub(crate) struct Fake {
    dispatcher: Dispatcher,
    queued: Vec<Vec<u8>>,
    inbox: VecDeque<Vec<u8>>,
    flushes_left: Option<usize>,
    dead: bool,
    /// Requests the fake server received, by message id.
    pub(crate) received: Vec<u16>,
    /// Set once the client closed the connection (said goodbye).
    pub(crate) closed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Fake {
    pub(crate) fn new() -> Fake {
        Fake {
            dispatcher: dispatcher(),
            queued: Vec::new(),
            inbox: VecDeque::new(),
            flushes_left: None,
            dead: false,
            received: Vec::new(),
            closed: Default::default(),
        }
    }

    /// The server dies after `flushes` more flushes (the session's bootstrap takes two): the
    /// next flush fails, and so does everything after it.
    pub(crate) fn hang_up_after(mut self, flushes: usize) -> Fake {
        self.flushes_left = Some(flushes);
        self
    }

    fn check(&self) -> Result<(), TransportError> {
        if self.dead {
            Err(vlibsocket::client::ClientError::ServerGone.into())
        } else {
            Ok(())
        }
    }
}

impl Transport for Fake {
    fn kind(&self) -> TransportKind {
        TransportKind::Socket
    }

    fn describe(&self) -> String {
        "fake".to_owned()
    }

    fn client_index(&self) -> u32 {
        CLIENT
    }

    fn message_table(&self) -> Vec<(u16, String)> {
        self.dispatcher
            .table()
            .iter()
            .map(|i| (i.id, i.name_crc.to_owned()))
            .collect()
    }

    fn queue(&mut self, msg: &[u8]) {
        self.queued.push(msg.to_vec());
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        match &mut self.flushes_left {
            Some(0) => self.dead = true,
            Some(n) => *n -= 1,
            None => {}
        }
        self.check()?;
        for m in std::mem::take(&mut self.queued) {
            self.received.extend(vlibapi::wire::msg_id(&m));
            // A request without a handler gets no answer, as from the real server.
            let _ = self
                .dispatcher
                .dispatch(ClientIndex(CLIENT), &m, &mut Inbox(&mut self.inbox));
        }
        Ok(())
    }

    fn recv(&mut self, _timeout: Duration) -> Result<Option<Vec<u8>>, TransportError> {
        match self.inbox.pop_front() {
            Some(m) => Ok(Some(m)),
            None => self.check().map(|()| None),
        }
    }

    fn pivot_to_shm(&mut self, _size: u64, how: PivotRequest) -> Result<(), TransportError> {
        self.check()?;
        Err(TransportError::CannotPivot {
            how: how.name(),
            why: "the in-process test server has no shared memory".to_owned(),
        })
    }

    fn close(self: Box<Self>) -> Result<(), TransportError> {
        self.closed.set(true);
        self.check()
    }
}
