//! The static (generated) and dynamic (schema-driven) codecs agree byte for byte on every
//! generated message, and neither panics or accepts a truncated message.

mod support;

use support::{Rng, all_modules, random_struct, visit_all};
use vlibapi::schema::{ArrayKind, MessageDef, Schema, TypeRef};
use vlibapi::value;
use vlibapi::wire::{Message, MessageVisitor};

fn schema() -> Schema {
    let mut s = Schema::new();
    for m in all_modules() {
        s.push(m);
    }
    s
}

/// True if the message's last field is an array running to the end of the message, so a
/// shorter message can be valid too.
fn ends_open(def: &MessageDef) -> bool {
    matches!(def.fields.last(), Some(f) if f.array == ArrayKind::Unsized && f.ty != TypeRef::String)
}

struct Agreement {
    schema: Schema,
    rng: Rng,
    messages: usize,
}

impl MessageVisitor for Agreement {
    fn visit<M: Message>(&mut self) {
        self.messages += 1;
        let def = self
            .schema
            .message_by_name_crc(M::NAME_CRC)
            .unwrap_or_else(|| panic!("{} not in schema", M::NAME_CRC))
            .clone();
        assert_eq!(def.name, M::NAME);
        assert_eq!(def.crc, M::CRC);
        assert_eq!(
            vlibapi::schema::message_min_size(&self.schema, &def),
            M::MIN_SIZE,
            "{}",
            M::NAME
        );

        // Defaults: the static default and an empty dynamic struct encode alike.
        let mut st = Vec::new();
        M::default().encode(0x1234, &mut st).unwrap();
        let mut dy = Vec::new();
        value::encode_message(
            &self.schema,
            &def,
            0x1234,
            &value::Value::Struct(vec![]),
            &mut dy,
        )
        .unwrap();
        assert_eq!(st, dy, "{} default", M::NAME);
        assert_eq!(st.len(), M::MIN_SIZE, "{}", M::NAME);

        for round in 0..150 {
            let v = random_struct(&self.schema, &def.fields, &mut self.rng);
            let mut dy = Vec::new();
            value::encode_message(&self.schema, &def, 77, &v, &mut dy).unwrap();
            let m = M::decode(&dy).unwrap_or_else(|e| panic!("{} round {round}: {e}", M::NAME));
            assert_eq!(m.encoded_len(), dy.len(), "{}", M::NAME);
            let mut st = Vec::new();
            m.encode(77, &mut st).unwrap();
            assert_eq!(st, dy, "{} round {round}", M::NAME);
            let back = value::decode_message(&self.schema, &def, &st).unwrap();
            let mut again = Vec::new();
            value::encode_message(&self.schema, &def, 77, &back, &mut again).unwrap();
            assert_eq!(again, st, "{} round {round}", M::NAME);
            assert_eq!(M::decode(&st).unwrap(), m);

            if !ends_open(&def) {
                for end in 0..st.len() {
                    let s = M::decode(&st[..end]);
                    let d = value::decode_message(&self.schema, &def, &st[..end]);
                    assert!(s.is_err() && d.is_err(), "{} truncated to {end}", M::NAME);
                    assert_eq!(s.unwrap_err().kind(), d.unwrap_err().kind());
                }
            }

            // Mutations: flip a few bytes; both codecs must agree on the outcome.
            let mut mutated = st.clone();
            for _ in 0..1 + self.rng.below(4) {
                let i = self.rng.below(mutated.len() as u64) as usize;
                mutated[i] = self.rng.next_u64() as u8;
            }
            self.compare::<M>(&def, &mutated);
        }

        // Random bytes of every length up to a little past the fixed part.
        for _ in 0..300 {
            let len = self.rng.below(M::MIN_SIZE as u64 + 80) as usize;
            let bytes = self.rng.bytes(len);
            self.compare::<M>(&def, &bytes);
        }
    }
}

impl Agreement {
    fn compare<M: Message>(&mut self, def: &MessageDef, bytes: &[u8]) {
        let s = M::decode(bytes);
        let d = value::decode_message(&self.schema, def, bytes);
        match (s, d) {
            (Ok(m), Ok(v)) => {
                let mut a = Vec::new();
                m.encode(5, &mut a).unwrap();
                let mut b = Vec::new();
                value::encode_message(&self.schema, def, 5, &v, &mut b).unwrap();
                assert_eq!(a, b, "{} re-encoding of {bytes:02x?}", M::NAME);
            }
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{} {bytes:02x?}", M::NAME),
            (s, d) => panic!(
                "{}: static {:?} vs dynamic {:?} on {bytes:02x?}",
                M::NAME,
                s.map(|_| ()),
                d.map(|_| ())
            ),
        }
    }
}

#[test]
fn static_and_dynamic_codecs_agree_on_every_message() {
    let mut a = Agreement {
        schema: schema(),
        rng: Rng::new(0x5eed),
        messages: 0,
    };
    visit_all(&mut a);
    let total: usize = all_modules().iter().map(|m| m.messages.len()).sum();
    assert_eq!(a.messages, total, "visit_messages covers every message");
}
