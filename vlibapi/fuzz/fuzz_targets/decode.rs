//! Feeds arbitrary bytes to every decoder: each generated message type's static decoder, the
//! dynamic decoder of the message the ID names, the pretty-printer, and the dispatcher.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use vlibapi::msgs::{memclnt, memfd, testapi, vlib_api, vpe};
use vlibapi::wire::{Message, MessageVisitor};
use vlibapi::{ApiBuilder, ClientIndex, Dispatcher, MessageTable, Outbox, SendError};

struct DecodeAll<'a>(&'a [u8]);

impl MessageVisitor for DecodeAll<'_> {
    fn visit<M: Message>(&mut self) {
        if let Ok(m) = M::decode(self.0) {
            // Whatever decodes must encode again, to the same length it claims.
            let mut out = Vec::new();
            m.encode(1, &mut out).expect("decoded messages re-encode");
            assert_eq!(out.len(), m.encoded_len());
        }
    }
}

struct Sink;

impl Outbox for Sink {
    fn send(&mut self, _to: ClientIndex, _msg: &[u8]) -> Result<(), SendError> {
        Ok(())
    }
    fn for_each_client(&self, f: &mut dyn FnMut(ClientIndex)) {
        f(ClientIndex(1));
    }
}

fn dispatcher() -> Dispatcher {
    let mut table = MessageTable::with_core();
    table
        .add_module(testapi::schema())
        .expect("testapi registers");
    let mut b = ApiBuilder::with_table(table);
    b.add_memclnt_handlers(1).expect("handlers register");
    b.build()
}

thread_local! {
    // Built once: constructing the table per input would dominate the run time.
    static DISPATCHER: RefCell<Dispatcher> = RefCell::new(dispatcher());
}

fuzz_target!(|data: &[u8]| {
    let mut v = DecodeAll(data);
    memclnt::visit_messages(&mut v);
    memfd::visit_messages(&mut v);
    vpe::visit_messages(&mut v);
    vlib_api::visit_messages(&mut v);
    testapi::visit_messages(&mut v);

    DISPATCHER.with(|d| {
        let mut d = d.borrow_mut();
        let table = d.table();
        if let Some(info) = vlibapi::wire::msg_id(data).and_then(|id| table.info(id)) {
            let _ = vlibapi::value::decode_message(table.schema(), info.def, data);
        }
        let _ = vlibapi::pretty::format_message(table, data);
        let _ = d.dispatch(ClientIndex(1), data, &mut Sink);
    });
});
