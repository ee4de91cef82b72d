//! Helpers shared by vlibapi's integration tests: a small deterministic PRNG, random values
//! shaped by a schema, and every generated module.
#![allow(dead_code, unreachable_pub)]

use vlibapi::msgs::{memclnt, memfd, testapi, vlib_api, vpe};
use vlibapi::schema::{ArrayKind, BaseType, Field, Module, NamedType, TypeLookup, TypeRef};
use vlibapi::value::Value;
use vlibapi::wire::MessageVisitor;

/// splitmix64: tiny, fast, and good enough for test inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    pub fn ascii(&mut self, max_len: usize) -> String {
        let len = self.below(max_len as u64 + 1) as usize;
        (0..len)
            .map(|_| char::from(b' ' + self.below(95) as u8))
            .collect()
    }
}

/// Every generated module's schema, in table order, plus the test-only one.
pub fn all_modules() -> Vec<Module> {
    vec![
        memclnt::schema(),
        memfd::schema(),
        vpe::schema(),
        vlib_api::schema(),
        testapi::schema(),
    ]
}

/// Visits every generated message type of every module.
pub fn visit_all<V: MessageVisitor>(v: &mut V) {
    memclnt::visit_messages(v);
    memfd::visit_messages(v);
    vpe::visit_messages(v);
    vlib_api::visit_messages(v);
    testapi::visit_messages(v);
}

/// A random value for `fields`, valid for encoding (strings fit, arrays are short).
pub fn random_struct(types: &dyn TypeLookup, fields: &[Field], rng: &mut Rng) -> Value {
    // Arrays sharing a count field must have the same length.
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for f in fields {
        let n = match &f.array {
            ArrayKind::Counted(lf) => match counts.iter().find(|(c, _)| c == lf) {
                Some(&(_, n)) => n,
                None => {
                    let n = rng.below(6) as usize;
                    counts.push((lf.clone(), n));
                    n
                }
            },
            _ => rng.below(6) as usize,
        };
        out.push((f.name.clone(), random_field(types, f, n, rng)));
    }
    Value::Struct(out)
}

fn random_field(types: &dyn TypeLookup, f: &Field, n: usize, rng: &mut Rng) -> Value {
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => Value::String(rng.ascii(*n as usize - 1)),
        (TypeRef::String, _) => Value::String(rng.ascii(40)),
        (_, ArrayKind::None) => random_type(types, &f.ty, rng),
        (_, ArrayKind::Fixed(n)) => array(types, &f.ty, *n as usize, rng),
        (_, _) => array(types, &f.ty, n, rng),
    }
}

fn array(types: &dyn TypeLookup, ty: &TypeRef, n: usize, rng: &mut Rng) -> Value {
    Value::Array((0..n).map(|_| random_type(types, ty, rng)).collect())
}

fn base(b: BaseType, rng: &mut Rng) -> Value {
    let x = rng.next_u64();
    match b {
        BaseType::U8 => Value::U8(x as u8),
        BaseType::I8 => Value::I8(x as i8),
        BaseType::U16 => Value::U16(x as u16),
        BaseType::I16 => Value::I16(x as i16),
        BaseType::U32 => Value::U32(x as u32),
        BaseType::I32 => Value::I32(x as i32),
        BaseType::U64 => Value::U64(x),
        BaseType::I64 => Value::I64(x as i64),
        BaseType::F64 => Value::F64(f64::from_bits(x)),
        BaseType::Bool => Value::Bool(x & 1 == 1),
    }
}

pub fn random_type(types: &dyn TypeLookup, ty: &TypeRef, rng: &mut Rng) -> Value {
    match ty {
        TypeRef::Base(b) => base(*b, rng),
        TypeRef::String => Value::String(rng.ascii(10)),
        TypeRef::Named(n) => match types.named(n).expect("type resolves") {
            NamedType::Struct(s) => random_struct(types, &s.fields, rng),
            NamedType::Union(_) => {
                let size = vlibapi::schema::fixed_size(types, ty).unwrap();
                Value::Bytes(rng.bytes(size))
            }
            NamedType::Enum(e) | NamedType::EnumFlags(e) => {
                // Half the time a listed value, else anything of the underlying type.
                if rng.below(2) == 0 && !e.values.is_empty() {
                    let i = rng.below(e.values.len() as u64) as usize;
                    Value::I64(e.values[i].1)
                } else {
                    base(e.underlying, rng)
                }
            }
            NamedType::Alias(a) => match a.length {
                None => random_type(types, &a.ty, rng),
                Some(l) => array(types, &a.ty, l as usize, rng),
            },
        },
    }
}
