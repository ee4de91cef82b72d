//! Dispatch: typed, streaming and raw handlers, context echo, the error-to-retval mapping,
//! validation with named counters, events, flags, trace save and replay.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use support::Rng;
use vlibapi::dispatch::{HandlerFlags, RegisterError, ReplyError};
use vlibapi::msgs::{memclnt, testapi, vlib_api, vpe};
use vlibapi::trace::{self, Direction};
use vlibapi::wire::{self, DecodeError, DecodeErrorKind, Message};
use vlibapi::{ApiBuilder, ApiError, ClientIndex, DispatchError, Dispatcher, Outbox, SendError};

#[derive(Debug, Default)]
struct TestOutbox {
    clients: Vec<ClientIndex>,
    sent: Vec<(ClientIndex, Vec<u8>)>,
    refuse: Option<ClientIndex>,
}

impl Outbox for TestOutbox {
    fn send(&mut self, to: ClientIndex, msg: &[u8]) -> Result<(), SendError> {
        if self.refuse == Some(to) {
            return Err(SendError::QueueFull);
        }
        if !self.clients.contains(&to) {
            return Err(SendError::UnknownClient(to));
        }
        self.sent.push((to, msg.to_vec()));
        Ok(())
    }
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        for &c in &self.clients {
            f(c);
        }
    }
}

const A: ClientIndex = ClientIndex(0x8000_0001);
const B: ClientIndex = ClientIndex(0x0000_0100);

fn outbox() -> TestOutbox {
    TestOutbox {
        clients: vec![A, B],
        ..Default::default()
    }
}

fn standard() -> Dispatcher {
    let mut b = ApiBuilder::new();
    b.add_memclnt_handlers(4242).unwrap();
    b.build()
}

fn bytes<M: Message>(d: &Dispatcher, m: &M) -> Vec<u8> {
    wire::to_vec(m, d.table().id_of::<M>().unwrap()).unwrap()
}

fn decode_sent<M: Message>(d: &Dispatcher, (to, msg): &(ClientIndex, Vec<u8>)) -> (ClientIndex, M) {
    assert_eq!(wire::msg_id(msg), d.table().id_of::<M>(), "{}", M::NAME);
    (*to, M::decode(msg).unwrap())
}

#[test]
fn control_ping_echoes_context_and_client_index() {
    let mut d = standard();
    let mut out = outbox();
    let ping = bytes(
        &d,
        &memclnt::ControlPing {
            client_index: A.0,
            context: 77,
        },
    );
    d.dispatch(A, &ping, &mut out).unwrap();
    let (to, r) = decode_sent::<memclnt::ControlPingReply>(&d, &out.sent[0]);
    assert_eq!(to, A);
    assert_eq!(
        r,
        memclnt::ControlPingReply {
            context: 77,
            retval: 0,
            client_index: A.0,
            vpe_pid: 4242
        }
    );
    assert_eq!(d.counters().dispatched, 1);
    assert_eq!(d.msg_counters(23).unwrap().rx, 1);
    // Context 0 is echoed as 0.
    let ping = bytes(
        &d,
        &memclnt::ControlPing {
            client_index: 0,
            context: 0,
        },
    );
    d.dispatch(A, &ping, &mut out).unwrap();
    assert_eq!(
        decode_sent::<memclnt::ControlPingReply>(&d, &out.sent[1])
            .1
            .context,
        0
    );
}

#[test]
fn handler_errors_become_default_replies_with_retval() {
    let mut b = ApiBuilder::new();
    b.handle(|_ctx, req: vpe::CliInband| {
        if req.cmd == "boom" {
            Err(ApiError::InvalidValue)
        } else {
            Ok(vpe::CliInbandReply {
                reply: format!("ran {}", req.cmd),
                retval: 0,
                context: 999, // overwritten by the echo
            })
        }
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();
    let ok = bytes(
        &d,
        &vpe::CliInband {
            client_index: 0,
            context: 5,
            cmd: "show x".into(),
        },
    );
    d.dispatch(B, &ok, &mut out).unwrap();
    let bad = bytes(
        &d,
        &vpe::CliInband {
            client_index: 0,
            context: 6,
            cmd: "boom".into(),
        },
    );
    d.dispatch(B, &bad, &mut out).unwrap();
    let (_, r1) = decode_sent::<vpe::CliInbandReply>(&d, &out.sent[0]);
    assert_eq!(
        (r1.context, r1.retval, r1.reply.as_str()),
        (5, 0, "ran show x")
    );
    let (_, r2) = decode_sent::<vpe::CliInbandReply>(&d, &out.sent[1]);
    assert_eq!((r2.context, r2.retval, r2.reply.as_str()), (6, -7, ""));
    assert_eq!(d.counters().handler_error, 1);
    assert_eq!(ApiError::Retval(-123).retval(), -123);
    assert_eq!(ApiError::InvalidRegistration.retval(), -31);
}

#[test]
fn invalid_messages_are_counted_and_never_reach_the_handler() {
    let ran = Rc::new(Cell::new(0));
    let mut b = ApiBuilder::new();
    b.add_module(testapi::schema()).unwrap();
    let r = ran.clone();
    b.handle(move |_ctx, _req: testapi::AllTypes| {
        r.set(r.get() + 1);
        Ok(testapi::AllTypesReply::default())
    })
    .unwrap();
    let r = ran.clone();
    b.handle(move |_ctx, req: memclnt::GetFirstMsgId| {
        r.set(r.get() + 1);
        let _ = req;
        Ok(memclnt::GetFirstMsgIdReply::default())
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();

    // No message id at all.
    assert_eq!(
        d.dispatch(A, &[1], &mut out),
        Err(DispatchError::TooShort { len: 1 })
    );
    // Shorter than the fixed part.
    let good = bytes(&d, &testapi::AllTypes::default());
    let e = d
        .dispatch(A, &good[..good.len() - 1], &mut out)
        .unwrap_err();
    assert!(matches!(
        e,
        DispatchError::Invalid {
            error: DecodeError::TooShort { .. },
            ..
        }
    ));
    // A count running past the end.
    let msg = testapi::AllTypes {
        words: vec![1, 2, 3],
        ..Default::default()
    };
    let mut long = bytes(&d, &msg);
    long.truncate(long.len() - 4 - 5); // drop the text length and part of the words
    let e = d.dispatch(A, &long, &mut out).unwrap_err();
    assert!(
        matches!(e, DispatchError::Invalid { ref error, .. } if error.kind() == DecodeErrorKind::BadLength),
        "{e:?}"
    );
    // A fixed string without a NUL.
    let mut name = bytes(
        &d,
        &memclnt::GetFirstMsgId {
            client_index: 0,
            context: 1,
            name: "x".into(),
        },
    );
    for b in &mut name[10..] {
        *b = b'a';
    }
    let e = d.dispatch(A, &name, &mut out).unwrap_err();
    assert!(
        matches!(e, DispatchError::Invalid { ref error, .. } if error.kind() == DecodeErrorKind::BadString)
    );
    // Unknown ids and known ids without handler.
    assert_eq!(
        d.dispatch(A, &[0, 0], &mut out),
        Err(DispatchError::UnknownId(0))
    );
    assert_eq!(
        d.dispatch(A, &[0xff, 0xff, 1], &mut out),
        Err(DispatchError::UnknownId(0xffff))
    );
    let exit = bytes(&d, &memclnt::RxThreadExit { dummy: 0 });
    assert_eq!(
        d.dispatch(A, &exit, &mut out),
        Err(DispatchError::NoHandler(5))
    );

    assert_eq!(ran.get(), 0, "no handler saw invalid input");
    assert!(out.sent.is_empty(), "nothing is sent for invalid input");
    let c = d.counters();
    assert_eq!((c.too_short, c.bad_length, c.bad_string), (2, 1, 1));
    assert_eq!((c.unknown_id, c.no_handler, c.dispatched), (2, 1, 0));
    let named = c.named();
    assert!(named.contains(&("bad_string", 1)));
    let id = d.table().id_of::<testapi::AllTypes>().unwrap();
    assert_eq!(
        d.msg_counters(id).unwrap(),
        vlibapi::dispatch::MsgCounters { rx: 2, errors: 2 }
    );

    d.dispatch(A, &good, &mut out).unwrap();
    assert_eq!(ran.get(), 1);
}

#[test]
fn streaming_dump_then_control_ping_marks_the_end() {
    let mut b = ApiBuilder::new();
    b.add_memclnt_handlers(1).unwrap();
    b.handle_stream(|ctx, _req: vlib_api::ApiClientDump| {
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            ctx.reply(&vlib_api::ApiClientDetails {
                index: i as u32,
                name: (*name).into(),
                ..Default::default()
            })
            .map_err(|_| ApiError::Unspecified)?;
        }
        Ok(())
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();
    let dump = bytes(
        &d,
        &vlib_api::ApiClientDump {
            client_index: A.0,
            context: 41,
        },
    );
    d.dispatch(A, &dump, &mut out).unwrap();
    let ping = bytes(
        &d,
        &memclnt::ControlPing {
            client_index: A.0,
            context: 41,
        },
    );
    d.dispatch(A, &ping, &mut out).unwrap();
    assert_eq!(out.sent.len(), 4);
    for (i, sent) in out.sent[..3].iter().enumerate() {
        let (to, det) = decode_sent::<vlib_api::ApiClientDetails>(&d, sent);
        assert_eq!((to, det.context, det.index), (A, 41, i as u32));
    }
    let (_, end) = decode_sent::<memclnt::ControlPingReply>(&d, &out.sent[3]);
    assert_eq!(end.context, 41);
}

#[test]
fn raw_handlers_are_validated_and_can_answer() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut b = ApiBuilder::new();
    let s = seen.clone();
    b.handle_raw(memclnt::GetApiJson::NAME_CRC, move |ctx, msg| {
        s.borrow_mut().push(msg.to_vec());
        ctx.reply(&memclnt::GetApiJsonReply {
            json: "[]".into(),
            ..Default::default()
        })
        .map_err(|_| ApiError::Unspecified)
    })
    .unwrap();
    b.handle_raw(memclnt::RpcCall::NAME_CRC, |_ctx, _msg| {
        Err(ApiError::Unimplemented)
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();
    let req = bytes(
        &d,
        &memclnt::GetApiJson {
            client_index: 0,
            context: 8,
        },
    );
    d.dispatch(A, &req, &mut out).unwrap();
    assert_eq!(
        decode_sent::<memclnt::GetApiJsonReply>(&d, &out.sent[0])
            .1
            .context,
        8
    );
    assert!(d.dispatch(A, &req[..9], &mut out).is_err());
    assert_eq!(seen.borrow().len(), 1);
    let rpc = bytes(
        &d,
        &memclnt::RpcCall {
            data: vec![1, 2],
            ..Default::default()
        },
    );
    assert_eq!(
        d.dispatch(A, &rpc, &mut out),
        Err(DispatchError::Failed {
            id: 8,
            error: ApiError::Unimplemented
        })
    );
    let mut lying = rpc.clone();
    lying[24] = 200; // data_len far past the end
    assert!(matches!(
        d.dispatch(A, &lying, &mut out),
        Err(DispatchError::Invalid {
            error: DecodeError::BadLength { .. },
            ..
        })
    ));
}

#[test]
fn events_reach_other_clients_and_refusals_are_counted() {
    let mut b = ApiBuilder::new();
    b.add_module(testapi::schema()).unwrap();
    b.handle(|ctx, req: testapi::AllTypes| {
        let ev = testapi::EventMsg {
            client_index: 0,
            pid: 1,
            seq: req.a_u32,
        };
        let n = ctx.broadcast(&ev).map_err(|_| ApiError::Unspecified)?;
        ctx.send_to(B, &ev).map_err(|_| ApiError::Unspecified)?;
        assert!(matches!(
            ctx.send_raw(B, &[0xff, 0xff]),
            Err(ReplyError::NotInTable(_))
        ));
        Ok(testapi::AllTypesReply {
            retval: n as i32,
            ..Default::default()
        })
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();
    out.clients.push(ClientIndex(7));
    out.refuse = Some(ClientIndex(7));
    let req = bytes(
        &d,
        &testapi::AllTypes {
            a_u32: 9,
            context: 3,
            ..Default::default()
        },
    );
    d.dispatch(A, &req, &mut out).unwrap();
    let events: Vec<_> = out
        .sent
        .iter()
        .filter(|(_, m)| wire::msg_id(m) == d.table().id_of::<testapi::EventMsg>())
        .map(|(to, m)| (*to, testapi::EventMsg::decode(m).unwrap().seq))
        .collect();
    assert_eq!(events, [(A, 9), (B, 9), (B, 9)]);
    let reply = out.sent.last().unwrap();
    let (to, r) = decode_sent::<testapi::AllTypesReply>(&d, reply);
    assert_eq!((to, r.retval, r.context), (A, 2, 3));
    assert_eq!(d.counters().send_failed, 1);
    // Sends outside of handlers go through the same path.
    d.send(B, &testapi::EventMsg::default(), &mut out).unwrap();
    assert_eq!(
        d.send(ClientIndex(99), &testapi::EventMsg::default(), &mut out),
        Err(ReplyError::Send(SendError::UnknownClient(ClientIndex(99))))
    );
}

#[test]
fn table_answers_first_msg_id_versions_and_api_json() {
    let mut b = ApiBuilder::new();
    let first = b.add_module(testapi::schema()).unwrap();
    assert_eq!(first, 37);
    b.add_memclnt_handlers(1).unwrap();
    let mut d = b.build();
    let mut out = outbox();
    for (name, want) in [("vpe", 0), ("testapi", 0), ("nope", -1)] {
        let req = bytes(
            &d,
            &memclnt::GetFirstMsgId {
                client_index: 0,
                context: 1,
                name: name.into(),
            },
        );
        d.dispatch(A, &req, &mut out).unwrap();
        let (_, r) = decode_sent::<memclnt::GetFirstMsgIdReply>(&d, out.sent.last().unwrap());
        assert_eq!(r.retval, want, "{name}");
        if want == 0 {
            assert_eq!(Some(r.first_msg_id), d.table().first_msg_id(name));
        }
    }
    let req = bytes(
        &d,
        &memclnt::ApiVersions {
            client_index: 0,
            context: 2,
        },
    );
    d.dispatch(A, &req, &mut out).unwrap();
    let (_, r) = decode_sent::<memclnt::ApiVersionsReply>(&d, out.sent.last().unwrap());
    let names: Vec<_> = r.api_versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["memclnt", "memfd", "vpe", "vlib_api", "testapi"]);
    assert_eq!(r.count, 5);
    let req = bytes(
        &d,
        &memclnt::GetApiJson {
            client_index: 0,
            context: 3,
        },
    );
    d.dispatch(A, &req, &mut out).unwrap();
    let (_, r) = decode_sent::<memclnt::GetApiJsonReply>(&d, out.sent.last().unwrap());
    assert_eq!(r.json, d.table().api_json());
    assert!(r.json.starts_with("[{\"types\""));
}

#[test]
fn registration_errors_and_flags() {
    let mut b = ApiBuilder::new();
    b.add_memclnt_handlers(1).unwrap();
    assert_eq!(
        b.add_memclnt_handlers(1),
        Err(RegisterError::AlreadyHandled(
            "control_ping_51077d14".into()
        ))
    );
    assert!(matches!(
        b.handle(|_c, _r: testapi::AllTypes| Ok(testapi::AllTypesReply::default())),
        Err(RegisterError::NotInTable(_))
    ));
    let id = b
        .handle_raw(memclnt::MemclntDelete::NAME_CRC, |_c, _m| Ok(()))
        .unwrap()
        .bounce()
        .id();
    let d = b.build();
    assert_eq!(
        d.flags(id),
        Some(HandlerFlags {
            mp_safe: false,
            bounce: true,
            trace: true
        })
    );
    let ka = d.table().id_of::<memclnt::MemclntKeepalive>().unwrap();
    assert_eq!(
        d.flags(ka),
        Some(HandlerFlags {
            mp_safe: true,
            bounce: false,
            trace: false
        })
    );
    assert_eq!(d.flags(5), None);
}

#[test]
fn trace_records_dumps_saves_and_replays() {
    let mut d = standard();
    let mut out = outbox();
    d.trace_mut().set_enabled(true);
    let ping = bytes(
        &d,
        &memclnt::ControlPing {
            client_index: 0,
            context: 1,
        },
    );
    let keepalive = bytes(
        &d,
        &memclnt::MemclntKeepalive {
            client_index: 0,
            context: 2,
        },
    );
    let ver = bytes(
        &d,
        &memclnt::ApiVersions {
            client_index: 0,
            context: 3,
        },
    );
    for m in [&ping, &keepalive, &ver] {
        d.dispatch(A, m, &mut out).unwrap();
    }
    assert_eq!(d.trace().rx.len(), 2, "keepalive is registered untraced");
    assert_eq!(d.trace().tx.len(), 3);
    let text = d.trace().dump(Direction::Rx, d.table());
    assert!(
        text.contains("control_ping { client_index: 0, context: 1 }"),
        "{text}"
    );
    assert!(text.contains("client 0x80000001"), "{text}");
    let tx = d.trace().dump(Direction::Tx, d.table());
    assert!(
        tx.contains("control_ping_reply { context: 1, retval: 0, client_index: 0, vpe_pid: 4242 }"),
        "{tx}"
    );

    let mut file = Vec::new();
    d.trace().save(Direction::Rx, &mut file).unwrap();
    let msgs = trace::load(&mut &file[..], 1 << 20).unwrap();
    assert_eq!(msgs, [ping.clone(), ver.clone()]);

    let mut fresh = standard();
    let mut out2 = outbox();
    let report = fresh.replay(&msgs, A, &mut out2);
    assert_eq!((report.ok, report.failed), (2, 0));
    let replies: Vec<_> = out
        .sent
        .iter()
        .filter(|(_, m)| m[1] != 22)
        .cloned()
        .collect();
    assert_eq!(out2.sent, replies, "replay produces the same replies");
    assert_eq!(
        d.format(&ping),
        "control_ping { client_index: 0, context: 1 }"
    );

    d.trace_mut().set_enabled(false);
    d.dispatch(A, &ping, &mut out).unwrap();
    assert_eq!(d.trace().rx.len(), 2);
}

#[test]
fn random_input_never_panics_the_dispatcher() {
    let mut b = ApiBuilder::new();
    b.add_module(testapi::schema()).unwrap();
    b.add_memclnt_handlers(1).unwrap();
    b.handle(|_c, _r: testapi::AllTypes| Ok(testapi::AllTypesReply::default()))
        .unwrap();
    b.handle(|_c, r: testapi::Wide64| Ok(r)).unwrap();
    b.handle(|_c, r: vpe::CliInband| {
        Ok(vpe::CliInbandReply {
            reply: r.cmd,
            ..Default::default()
        })
    })
    .unwrap();
    let mut d = b.build();
    let mut out = outbox();
    let mut rng = Rng::new(7);
    let n = d.table().len() as u64;
    for _ in 0..20_000 {
        let len = rng.below(300) as usize;
        let mut msg = rng.bytes(len);
        if len >= 2 && rng.below(4) != 0 {
            let id = 1 + rng.below(n + 2) as u16;
            msg[..2].copy_from_slice(&id.to_be_bytes());
        }
        let _ = d.dispatch(A, &msg, &mut out);
    }
    let c = d.counters();
    let rejected = c.too_short + c.bad_length + c.bad_string + c.unknown_id + c.no_handler;
    assert_eq!(c.dispatched + rejected, 20_000);
    assert!(c.dispatched > 0 && rejected > 0);
}
