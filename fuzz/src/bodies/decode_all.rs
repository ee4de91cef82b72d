//! Arbitrary bytes through every decoder of every generated module (the core modules, the
//! test-only one, and the example plugin's): each message type's static decoder, the dynamic
//! decoder of the message the ID names (which must agree with the static one), the
//! pretty-printer, and the dispatcher.
//!
//! Whatever decodes must encode again to exactly `encoded_len` bytes, and encoding is a fixed
//! point: decoding the re-encoded bytes and encoding them once more changes nothing.

use std::cell::RefCell;

use vlibapi::msgs::{memclnt, memfd, testapi, vlib_api, vpe};
use vlibapi::schema::{self, ArrayKind, BaseType, Field, Module, NamedType, TypeLookup, TypeRef};
use vlibapi::value::{self, Value};
use vlibapi::wire::{Message, MessageVisitor};
use vlibapi::{ApiBuilder, ClientIndex, Dispatcher, MessageTable, Outbox, SendError};

/// Visits every message type of every generated module, the example plugin's included.
pub fn visit_every_module<V: MessageVisitor>(v: &mut V) {
    memclnt::visit_messages(v);
    memfd::visit_messages(v);
    vpe::visit_messages(v);
    vlib_api::visit_messages(v);
    testapi::visit_messages(v);
    example_plugin::msgs::visit_messages(v);
}

/// The schemas of the modules [`visit_every_module`] visits.
pub fn every_module() -> Vec<Module> {
    vec![
        memclnt::schema(),
        memfd::schema(),
        vpe::schema(),
        vlib_api::schema(),
        testapi::schema(),
        example_plugin::msgs::schema(),
    ]
}

/// The core table plus the test-only module and the example plugin's.
pub fn table() -> MessageTable {
    let mut table = MessageTable::with_core();
    table
        .add_module(testapi::schema())
        .expect("testapi registers");
    table
        .add_module(example_plugin::msgs::schema())
        .expect("the example module registers");
    table
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
    let mut b = ApiBuilder::with_table(table());
    b.add_memclnt_handlers(1).expect("handlers register");
    b.build()
}

thread_local! {
    // Built once: a table per input would dominate the run time.
    static DISPATCHER: RefCell<Dispatcher> = RefCell::new(dispatcher());
}

/// Encodes `m`, checking the length it announced.
fn encode<M: Message>(m: &M) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(1, &mut out)
        .unwrap_or_else(|e| panic!("{}: a decoded message does not re-encode: {e}", M::NAME));
    assert_eq!(out.len(), m.encoded_len(), "{}: encoded_len lies", M::NAME);
    out
}

struct DecodeAll<'a> {
    bytes: &'a [u8],
    table: &'a MessageTable,
}

impl MessageVisitor for DecodeAll<'_> {
    fn visit<M: Message>(&mut self) {
        let def = self
            .table
            .schema()
            .message_by_name_crc(M::NAME_CRC)
            .unwrap_or_else(|| panic!("{} missing from the table", M::NAME_CRC));
        let dynamic = value::decode_message(self.table.schema(), def, self.bytes);
        let m = match (M::decode(self.bytes), dynamic) {
            (Err(_), Err(_)) => return,
            (Ok(_), Err(e)) => panic!("{}: static decode accepts, dynamic refuses: {e}", M::NAME),
            (Err(e), Ok(_)) => panic!("{}: dynamic decode accepts, static refuses: {e}", M::NAME),
            (Ok(m), Ok(dynamic)) => {
                let mut dy = Vec::new();
                value::encode_message(self.table.schema(), def, 1, &dynamic, &mut dy)
                    .unwrap_or_else(|e| panic!("{}: dynamic value does not encode: {e}", M::NAME));
                assert_eq!(
                    dy,
                    encode(&m),
                    "{}: static and dynamic codecs disagree",
                    M::NAME
                );
                m
            }
        };
        let once = encode(&m);
        let back = M::decode(&once)
            .unwrap_or_else(|e| panic!("{}: its own encoding does not decode: {e}", M::NAME));
        assert_eq!(
            encode(&back),
            once,
            "{}: encoding is not a fixed point",
            M::NAME
        );
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    DISPATCHER.with(|d| {
        let mut d = d.borrow_mut();
        visit_every_module(&mut DecodeAll {
            bytes: data,
            table: d.table(),
        });
        let table = d.table();
        if let Some(info) = vlibapi::wire::msg_id(data).and_then(|id| table.info(id)) {
            if let Ok(v) = value::decode_message(table.schema(), info.def, data) {
                let mut once = Vec::new();
                value::encode_message(table.schema(), info.def, info.id, &v, &mut once)
                    .unwrap_or_else(|e| {
                        panic!("{}: decoded value does not encode: {e}", info.name_crc)
                    });
                let again = value::decode_message(table.schema(), info.def, &once)
                    .unwrap_or_else(|e| panic!("{}: own encoding refused: {e}", info.name_crc));
                let mut twice = Vec::new();
                value::encode_message(table.schema(), info.def, info.id, &again, &mut twice)
                    .expect("a decoded value encodes");
                assert_eq!(
                    once, twice,
                    "{}: dynamic encoding is not a fixed point",
                    info.name_crc
                );
            }
        }
        let _ = vlibapi::pretty::format_message(table, data);
        let _ = d.dispatch(ClientIndex(1), data, &mut Sink);
    });
}

/// True when some encoding of `def` is longer than its fixed part.
pub fn has_variable_part(types: &dyn TypeLookup, def: &schema::MessageDef) -> bool {
    def.fields
        .iter()
        .any(|f| schema::field_fixed_size(types, f).is_none())
}

/// One well-formed input per message with a variable part, its variable parts non-empty, keyed
/// by `name_crc`: the seeds that lead the fuzzer into every variable-length decoder.
pub fn structured_inputs() -> Vec<(String, Vec<u8>)> {
    let table = table();
    let types = table.schema();
    let mut out = Vec::new();
    for info in table.iter() {
        if !has_variable_part(types, info.def) {
            continue;
        }
        let v = fill_struct(types, &info.def.fields, 0);
        let mut bytes = Vec::new();
        value::encode_message(types, info.def, info.id, &v, &mut bytes)
            .unwrap_or_else(|e| panic!("{}: cannot encode its seed: {e}", info.name_crc));
        out.push((info.name_crc.to_owned(), bytes));
    }
    out
}

/// Elements given to every variable-length array.
const ELEMENTS: usize = 2;

fn fill_struct(types: &dyn TypeLookup, fields: &[Field], depth: usize) -> Value {
    Value::Struct(
        fields
            .iter()
            .map(|f| (f.name.clone(), fill_field(types, f, depth)))
            .collect(),
    )
}

fn fill_field(types: &dyn TypeLookup, f: &Field, depth: usize) -> Value {
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => {
            Value::String("s".repeat((*n as usize).min(4).saturating_sub(1)))
        }
        (TypeRef::String, _) => Value::String("seed".to_owned()),
        (_, ArrayKind::None) => fill_type(types, &f.ty, depth),
        (_, ArrayKind::Fixed(n)) => fill_array(types, &f.ty, *n as usize, depth),
        (_, _) => fill_array(types, &f.ty, ELEMENTS, depth),
    }
}

fn fill_array(types: &dyn TypeLookup, ty: &TypeRef, n: usize, depth: usize) -> Value {
    if ty == &TypeRef::Base(BaseType::U8) {
        return Value::Bytes((1..=n).map(|i| i as u8).collect());
    }
    Value::Array((0..n).map(|_| fill_type(types, ty, depth)).collect())
}

fn fill_type(types: &dyn TypeLookup, ty: &TypeRef, depth: usize) -> Value {
    if depth > 16 {
        return Value::Struct(Vec::new());
    }
    match ty {
        TypeRef::Base(b) => base(*b),
        TypeRef::String => Value::String("seed".to_owned()),
        TypeRef::Named(n) => match types.named(n) {
            Some(NamedType::Struct(s)) => fill_struct(types, &s.fields, depth + 1),
            Some(NamedType::Union(_)) => {
                let size = schema::fixed_size(types, ty).unwrap_or(0);
                Value::Bytes((0..size).map(|i| i as u8).collect())
            }
            Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
                Value::I64(e.values.first().map_or(0, |v| v.1))
            }
            Some(NamedType::Alias(a)) => match a.length {
                None => fill_type(types, &a.ty, depth + 1),
                Some(l) => fill_array(types, &a.ty, l as usize, depth + 1),
            },
            None => Value::Struct(Vec::new()),
        },
    }
}

fn base(b: BaseType) -> Value {
    match b {
        BaseType::U8 => Value::U8(1),
        BaseType::I8 => Value::I8(-1),
        BaseType::U16 => Value::U16(2),
        BaseType::I16 => Value::I16(-2),
        BaseType::U32 => Value::U32(3),
        BaseType::I32 => Value::I32(-3),
        BaseType::U64 => Value::U64(4),
        BaseType::I64 => Value::I64(-4),
        BaseType::F64 => Value::F64(0.5),
        BaseType::Bool => Value::Bool(true),
    }
}
