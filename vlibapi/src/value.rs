//! The dynamic codec: any message to and from a [`Value`] tree, driven by the schema.
//!
//! It serves whoever learns the API at run time (vat, from `get_api_json`), traces, replay and
//! pretty-printing. It produces the same bytes as the generated static codec (a golden test
//! checks every generated message), with the same validation:
//!
//! * decoding never panics and rejects a message shorter than its fixed part, a count running
//!   past the end, and strings without room, without NUL or not UTF-8 ([`DecodeError`]);
//! * encoding writes count fields from the lengths of their arrays and refuses fixed strings
//!   without room for the NUL ([`EncodeError`]).
//!
//! Decoded shapes: scalars as their own variant, enums and enumflags as their underlying
//! integer, `u8` arrays and unions as [`Value::Bytes`], other arrays as [`Value::Array`], types
//! and messages as [`Value::Struct`] (fields in order, `_vl_msg_id` left out). Encoding is
//! lenient the way vpp_papi is: any integer variant that fits is accepted, an enum field also
//! takes a value name, a missing field is zero or empty, and a union takes either its raw bytes
//! or a one-member struct.

use crate::json::{Json, Number};
use crate::schema::{self, ArrayKind, BaseType, Field, MessageDef, NamedType, TypeLookup, TypeRef};
use crate::wire::{self, DecodeError, EncodeError, Reader};

/// A decoded (or to-be-encoded) value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `bool`.
    Bool(bool),
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
    /// A string (fixed or variable).
    String(String),
    /// A `u8` array, or the raw bytes of a union.
    Bytes(Vec<u8>),
    /// An array of anything else.
    Array(Vec<Value>),
    /// A struct type or a message: fields in wire order.
    Struct(Vec<(String, Value)>),
}

impl Value {
    /// The member `name` of a struct.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as an integer, if it is one (booleans count as 0 and 1).
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::Bool(b) => i128::from(b),
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// JSON rendering: numbers, strings, bools; bytes as a list of numbers; structs as objects.
    pub fn to_json(&self) -> Json {
        let n = |v: i128| {
            if v < 0 {
                Json::Number(Number::Int(v as i64))
            } else {
                Json::Number(Number::UInt(v as u64))
            }
        };
        match self {
            Value::Bool(b) => Json::Bool(*b),
            Value::F64(f) => Json::Number(Number::Float(*f)),
            Value::String(s) => Json::String(s.clone()),
            Value::Bytes(b) => Json::Array(b.iter().map(|&x| n(x.into())).collect()),
            Value::Array(a) => Json::Array(a.iter().map(Value::to_json).collect()),
            Value::Struct(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            other => n(other.as_i128().unwrap_or(0)),
        }
    }

    /// A value from JSON (for encoding): integers become `U64`/`I64`, objects structs. `null`
    /// has no value and gives `None`.
    pub fn from_json(j: &Json) -> Option<Value> {
        Some(match j {
            Json::Null => return None,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(Number::UInt(v)) => Value::U64(*v),
            Json::Number(Number::Int(v)) => Value::I64(*v),
            Json::Number(Number::Float(v)) => Value::F64(*v),
            Json::String(s) => Value::String(s.clone()),
            Json::Array(a) => Value::Array(a.iter().map(Value::from_json).collect::<Option<_>>()?),
            Json::Object(o) => Value::Struct(
                o.iter()
                    .map(|(k, v)| Some((k.clone(), Value::from_json(v)?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }
}

fn too_deep(field: &str) -> DecodeError {
    DecodeError::BadLength {
        field: format!("{field} (types nest too deeply)"),
        need: 0,
        have: 0,
    }
}

/// Decodes a whole message (ID included, not checked) into a [`Value::Struct`].
pub fn decode_message(
    types: &dyn TypeLookup,
    msg: &MessageDef,
    bytes: &[u8],
) -> Result<Value, DecodeError> {
    let need = schema::message_min_size(types, msg);
    if bytes.len() < need {
        return Err(DecodeError::TooShort {
            need,
            have: bytes.len(),
        });
    }
    let mut r = Reader::new(&bytes[2..]);
    decode_fields(types, &msg.fields, &mut r, 0)
}

fn decode_fields(
    types: &dyn TypeLookup,
    fields: &[Field],
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Value, DecodeError> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
    for f in fields {
        let v = decode_field(types, f, &out, r, depth)?;
        out.push((f.name.clone(), v));
    }
    Ok(Value::Struct(out))
}

fn decode_field(
    types: &dyn TypeLookup,
    f: &Field,
    earlier: &[(String, Value)],
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Value, DecodeError> {
    let name = f.name.as_str();
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => {
            return r.fixed_string(*n as usize, name).map(Value::String);
        }
        (TypeRef::String, _) => return r.var_string(name).map(Value::String),
        _ => {}
    }
    let is_u8 = is_byte(types, &f.ty);
    match &f.array {
        ArrayKind::None => decode_type(types, &f.ty, f.host_order, name, r, depth),
        ArrayKind::Fixed(n) => {
            let n = *n as usize;
            if is_u8 {
                return Ok(Value::Bytes(r.bytes(n, name)?.to_vec()));
            }
            // The message's fixed part was checked up front, so `n` elements are bounded by the
            // input; cap the allocation by it anyway.
            let mut items = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                items.push(decode_type(types, &f.ty, f.host_order, name, r, depth)?);
            }
            Ok(Value::Array(items))
        }
        ArrayKind::Counted(lf) => {
            let count = earlier
                .iter()
                .find(|(n, _)| n == lf)
                .and_then(|(_, v)| v.as_i128())
                .and_then(|c| usize::try_from(c).ok())
                .unwrap_or(usize::MAX);
            if is_u8 {
                return Ok(Value::Bytes(r.bytes(count, name)?.to_vec()));
            }
            r.check_count(count, schema::min_size(types, &f.ty), name)?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode_type(types, &f.ty, f.host_order, name, r, depth)?);
            }
            Ok(Value::Array(items))
        }
        ArrayKind::Unsized => {
            if is_u8 {
                return Ok(Value::Bytes(r.bytes(r.remaining(), name)?.to_vec()));
            }
            let mut items = Vec::new();
            match schema::fixed_size(types, &f.ty) {
                Some(size) => {
                    let n = wire::rest_count(r, size, name)?;
                    for _ in 0..n {
                        items.push(decode_type(types, &f.ty, f.host_order, name, r, depth)?);
                    }
                }
                None => {
                    while r.remaining() > 0 {
                        let before = r.position();
                        items.push(decode_type(types, &f.ty, f.host_order, name, r, depth)?);
                        if r.position() == before {
                            break;
                        }
                    }
                }
            }
            Ok(Value::Array(items))
        }
    }
}

/// True if `ty` is `u8` or an alias of it (without length): arrays of it are bytes.
fn is_byte(types: &dyn TypeLookup, ty: &TypeRef) -> bool {
    match ty {
        TypeRef::Base(BaseType::U8) => true,
        TypeRef::Named(n) => {
            matches!(
                schema::resolve_alias(types, n, 0),
                Some(TypeRef::Base(BaseType::U8))
            )
        }
        _ => false,
    }
}

fn decode_base(
    b: BaseType,
    host: bool,
    name: &str,
    r: &mut Reader<'_>,
) -> Result<Value, DecodeError> {
    macro_rules! num {
        ($t:ty, $n:expr, $v:ident) => {{
            let bytes = r.take::<$n>(name)?;
            Value::$v(if host {
                <$t>::from_ne_bytes(bytes)
            } else {
                <$t>::from_be_bytes(bytes)
            })
        }};
    }
    Ok(match b {
        BaseType::U8 => Value::U8(r.take::<1>(name)?[0]),
        BaseType::I8 => Value::I8(r.take::<1>(name)?[0] as i8),
        BaseType::Bool => Value::Bool(r.take::<1>(name)?[0] != 0),
        BaseType::U16 => num!(u16, 2, U16),
        BaseType::I16 => num!(i16, 2, I16),
        BaseType::U32 => num!(u32, 4, U32),
        BaseType::I32 => num!(i32, 4, I32),
        BaseType::U64 => num!(u64, 8, U64),
        BaseType::I64 => num!(i64, 8, I64),
        BaseType::F64 => num!(f64, 8, F64),
    })
}

fn decode_type(
    types: &dyn TypeLookup,
    ty: &TypeRef,
    host: bool,
    name: &str,
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Value, DecodeError> {
    if depth > schema::MAX_TYPE_DEPTH {
        return Err(too_deep(name));
    }
    match ty {
        TypeRef::Base(b) => decode_base(*b, host, name, r),
        TypeRef::String => r.var_string(name).map(Value::String),
        TypeRef::Named(n) => match types.named(n) {
            None => Err(too_deep(name)),
            Some(NamedType::Struct(s)) => decode_fields(types, &s.fields, r, depth + 1),
            Some(NamedType::Union(_)) => {
                let size = schema::fixed_size(types, ty).unwrap_or(0);
                Ok(Value::Bytes(r.bytes(size, name)?.to_vec()))
            }
            Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
                decode_base(e.underlying, false, name, r)
            }
            Some(NamedType::Alias(a)) => match a.length {
                None => decode_type(types, &a.ty, host, name, r, depth + 1),
                Some(n) => {
                    if is_byte(types, &a.ty) {
                        return Ok(Value::Bytes(r.bytes(n as usize, name)?.to_vec()));
                    }
                    let mut items = Vec::with_capacity((n as usize).min(r.remaining()));
                    for _ in 0..n {
                        items.push(decode_type(types, &a.ty, host, name, r, depth + 1)?);
                    }
                    Ok(Value::Array(items))
                }
            },
        },
    }
}

/// Appends a whole message, `msg_id` first, encoded from `value` (a [`Value::Struct`]). On
/// error `out` is left as it was.
pub fn encode_message(
    types: &dyn TypeLookup,
    msg: &MessageDef,
    msg_id: u16,
    value: &Value,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&msg_id.to_be_bytes());
    let r = encode_fields(types, &msg.fields, Some(value), &msg.name, out, 0);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn mismatch(field: &str, expected: &str) -> EncodeError {
    EncodeError::TypeMismatch {
        field: field.to_owned(),
        expected: expected.to_owned(),
    }
}

/// The elements of an array value (bytes count as elements too).
fn array_len(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Bytes(b)) => b.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn encode_fields(
    types: &dyn TypeLookup,
    fields: &[Field],
    value: Option<&Value>,
    owner: &str,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    if depth > schema::MAX_TYPE_DEPTH {
        return Err(mismatch(owner, "a type that does not nest too deeply"));
    }
    let members: &[(String, Value)] = match value {
        None => &[],
        Some(Value::Struct(m)) => m,
        Some(_) => return Err(mismatch(owner, "a struct")),
    };
    if let Some((extra, _)) = members
        .iter()
        .find(|(n, _)| !fields.iter().any(|f| &f.name == n))
    {
        return Err(EncodeError::UnknownField {
            field: extra.clone(),
        });
    }
    let member = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    for f in fields {
        let counted: Vec<usize> = fields
            .iter()
            .filter(|a| matches!(&a.array, ArrayKind::Counted(lf) if lf == &f.name))
            .map(|a| array_len(member(&a.name)))
            .collect();
        if counted.is_empty() {
            encode_field(types, f, member(&f.name), out, depth)?;
        } else {
            let n = wire::same_len(&counted, &f.name)?;
            let n = Value::U64(n as u64);
            encode_field(types, f, Some(&n), out, depth).map_err(|e| match e {
                EncodeError::TypeMismatch { field, .. } => EncodeError::TooMany {
                    field,
                    len: counted[0],
                },
                e => e,
            })?;
        }
    }
    Ok(())
}

fn encode_field(
    types: &dyn TypeLookup,
    f: &Field,
    v: Option<&Value>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    let name = f.name.as_str();
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => {
            let s = match v {
                None => "",
                Some(Value::String(s)) => s,
                Some(_) => return Err(mismatch(name, "a string")),
            };
            return wire::put_fixed_string(out, s, *n as usize, name);
        }
        (TypeRef::String, _) => {
            let s = match v {
                None => "",
                Some(Value::String(s)) => s,
                Some(_) => return Err(mismatch(name, "a string")),
            };
            return wire::put_var_string(out, s, name);
        }
        _ => {}
    }
    match &f.array {
        ArrayKind::None => encode_type(types, &f.ty, f.host_order, v, name, out, depth),
        ArrayKind::Fixed(n) => encode_array(
            types,
            &f.ty,
            f.host_order,
            v,
            Some(*n as usize),
            name,
            out,
            depth,
        ),
        ArrayKind::Counted(_) | ArrayKind::Unsized => {
            encode_array(types, &f.ty, f.host_order, v, None, name, out, depth)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_array(
    types: &dyn TypeLookup,
    ty: &TypeRef,
    host: bool,
    v: Option<&Value>,
    fixed: Option<usize>,
    name: &str,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    let check_len = |got: usize| match fixed {
        Some(expected) if expected != got => Err(EncodeError::WrongArrayLength {
            field: name.to_owned(),
            expected,
            got,
        }),
        _ => Ok(()),
    };
    match v {
        None => {
            // Absent: zeros for a fixed array, nothing for a variable one.
            for _ in 0..fixed.unwrap_or(0) {
                encode_type(types, ty, host, None, name, out, depth)?;
            }
            Ok(())
        }
        Some(Value::Bytes(b)) if is_byte(types, ty) => {
            check_len(b.len())?;
            out.extend_from_slice(b);
            Ok(())
        }
        Some(Value::Array(items)) => {
            check_len(items.len())?;
            for item in items {
                encode_type(types, ty, host, Some(item), name, out, depth)?;
            }
            Ok(())
        }
        Some(_) => Err(mismatch(name, "an array")),
    }
}

fn encode_base(
    b: BaseType,
    host: bool,
    v: Option<&Value>,
    name: &str,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if b == BaseType::F64 {
        let x = match v {
            None => 0.0,
            Some(Value::F64(x)) => *x,
            Some(other) => match other.as_i128() {
                Some(i) => i as f64,
                None => return Err(mismatch(name, "a number")),
            },
        };
        let bytes = if host {
            x.to_ne_bytes()
        } else {
            x.to_be_bytes()
        };
        out.extend_from_slice(&bytes);
        return Ok(());
    }
    let i = match v {
        None => 0,
        Some(v) => v.as_i128().ok_or_else(|| mismatch(name, b.name()))?,
    };
    macro_rules! put {
        ($t:ty) => {{
            let x = <$t>::try_from(i).map_err(|_| mismatch(name, b.name()))?;
            let bytes = if host {
                x.to_ne_bytes()
            } else {
                x.to_be_bytes()
            };
            out.extend_from_slice(&bytes);
        }};
    }
    match b {
        BaseType::U8 => put!(u8),
        BaseType::I8 => put!(i8),
        BaseType::Bool => {
            if i != 0 && i != 1 {
                return Err(mismatch(name, "a bool"));
            }
            out.push(i as u8);
        }
        BaseType::U16 => put!(u16),
        BaseType::I16 => put!(i16),
        BaseType::U32 => put!(u32),
        BaseType::I32 => put!(i32),
        BaseType::U64 => put!(u64),
        BaseType::I64 => put!(i64),
        BaseType::F64 => {}
    }
    Ok(())
}

fn encode_type(
    types: &dyn TypeLookup,
    ty: &TypeRef,
    host: bool,
    v: Option<&Value>,
    name: &str,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), EncodeError> {
    if depth > schema::MAX_TYPE_DEPTH {
        return Err(mismatch(name, "a type that does not nest too deeply"));
    }
    match ty {
        TypeRef::Base(b) => encode_base(*b, host, v, name, out),
        TypeRef::String => {
            let s = v.and_then(Value::as_str).unwrap_or("");
            wire::put_var_string(out, s, name)
        }
        TypeRef::Named(n) => match types.named(n) {
            None => Err(mismatch(
                name,
                &format!("a defined type (`{n}` is unknown)"),
            )),
            Some(NamedType::Struct(s)) => encode_fields(types, &s.fields, v, name, out, depth + 1),
            Some(NamedType::Union(u)) => {
                let size = schema::fixed_size(types, ty).unwrap_or(0);
                let start = out.len();
                match v {
                    None => {}
                    Some(Value::Bytes(b)) => {
                        if b.len() > size {
                            return Err(EncodeError::WrongArrayLength {
                                field: name.to_owned(),
                                expected: size,
                                got: b.len(),
                            });
                        }
                        out.extend_from_slice(b);
                    }
                    Some(Value::Struct(members)) if members.len() == 1 => {
                        let (arm, av) = &members[0];
                        let Some(f) = u.fields.iter().find(|f| &f.name == arm) else {
                            return Err(EncodeError::UnknownField { field: arm.clone() });
                        };
                        encode_field(types, f, Some(av), out, depth + 1)?;
                    }
                    Some(_) => return Err(mismatch(name, "union bytes or a one-member struct")),
                }
                out.resize(start + size, 0);
                Ok(())
            }
            Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
                if let Some(Value::String(s)) = v {
                    let Some((_, val)) = e.values.iter().find(|(vn, _)| vn == s) else {
                        return Err(mismatch(name, &format!("a value of enum `{}`", e.name)));
                    };
                    return encode_base(e.underlying, false, Some(&Value::I64(*val)), name, out);
                }
                encode_base(e.underlying, false, v, name, out)
            }
            Some(NamedType::Alias(a)) => match a.length {
                None => encode_type(types, &a.ty, host, v, name, out, depth + 1),
                Some(n) => encode_array(
                    types,
                    &a.ty,
                    host,
                    v,
                    Some(n as usize),
                    name,
                    out,
                    depth + 1,
                ),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Module;

    fn module() -> Module {
        Module::from_json_text(
            "t",
            r#"{"types": [["pt", ["i16", "x"], ["i16", "y"]]],
                "unions": [["un", ["u32", "w"], ["u8", "b", 6]]],
                "enums": [["e", ["E_A", 1], ["E_B", 2], {"enumtype": "u8"}]],
                "aliases": {"a4": {"type": "u8", "length": 4}},
                "messages": [["m", ["u16", "_vl_msg_id"], ["u32", "context"],
                    ["u8", "n"], ["vl_api_pt_t", "pts", 0, "n"], ["vl_api_e_t", "e"],
                    ["vl_api_un_t", "u"], ["vl_api_a4_t", "addr"], ["string", "s", 4],
                    ["u64", "h", {"host_order": true}], ["string", "t", 0]]]}"#,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_layout() {
        let m = module();
        let def = &m.messages[0];
        let v = Value::Struct(vec![
            ("context".into(), Value::U32(7)),
            ("n".into(), Value::U8(99)), // overwritten by the array length
            (
                "pts".into(),
                Value::Array(vec![Value::Struct(vec![
                    ("x".into(), Value::I16(-1)),
                    ("y".into(), Value::I16(2)),
                ])]),
            ),
            ("e".into(), Value::String("E_B".into())),
            (
                "u".into(),
                Value::Struct(vec![("w".into(), Value::U32(0x0102_0304))]),
            ),
            ("addr".into(), Value::Bytes(vec![10, 0, 0, 1])),
            ("s".into(), Value::String("abc".into())),
            ("h".into(), Value::U64(0x0102)),
            ("t".into(), Value::String("hi".into())),
        ]);
        let mut out = Vec::new();
        encode_message(&m, def, 300, &v, &mut out).unwrap();
        let mut want = vec![
            1, 44, 0, 0, 0, 7, 1, 0xff, 0xff, 0, 2, 2, 1, 2, 3, 4, 0, 0, 10, 0, 0, 1,
        ];
        want.extend_from_slice(b"abc\0");
        want.extend_from_slice(&0x0102u64.to_ne_bytes());
        want.extend_from_slice(b"\0\0\0\x02hi");
        assert_eq!(out, want);
        let back = decode_message(&m, def, &out).unwrap();
        assert_eq!(back.get("n"), Some(&Value::U8(1)));
        assert_eq!(back.get("e"), Some(&Value::U8(2)));
        assert_eq!(back.get("u"), Some(&Value::Bytes(vec![1, 2, 3, 4, 0, 0])));
        assert_eq!(back.get("h"), Some(&Value::U64(0x0102)));
        assert_eq!(back.get("t"), Some(&Value::String("hi".into())));
        // Re-encoding the decoded value gives the same bytes.
        let mut again = Vec::new();
        encode_message(&m, def, 300, &back, &mut again).unwrap();
        assert_eq!(again, out);
        // Every truncation is an error, never a panic.
        for end in 0..out.len() {
            assert!(decode_message(&m, def, &out[..end]).is_err(), "{end}");
        }
    }

    #[test]
    fn missing_fields_are_zero_and_errors_leave_out_untouched() {
        let m = module();
        let def = &m.messages[0];
        let mut out = vec![0xAA];
        encode_message(&m, def, 1, &Value::Struct(vec![]), &mut out).unwrap();
        assert_eq!(out.len(), 1 + schema::message_min_size(&m, def));
        let mut out = vec![0xAA];
        let bad = Value::Struct(vec![("s".into(), Value::String("abcd".into()))]);
        assert!(matches!(
            encode_message(&m, def, 1, &bad, &mut out),
            Err(EncodeError::StringTooLong { .. })
        ));
        assert_eq!(out, [0xAA]);
        let bad = Value::Struct(vec![("nope".into(), Value::U8(1))]);
        assert!(matches!(
            encode_message(&m, def, 1, &bad, &mut out),
            Err(EncodeError::UnknownField { .. })
        ));
        let bad = Value::Struct(vec![("context".into(), Value::I64(-1))]);
        assert!(matches!(
            encode_message(&m, def, 1, &bad, &mut out),
            Err(EncodeError::TypeMismatch { .. })
        ));
        let bad = Value::Struct(vec![("addr".into(), Value::Bytes(vec![1]))]);
        assert!(matches!(
            encode_message(&m, def, 1, &bad, &mut out),
            Err(EncodeError::WrongArrayLength {
                expected: 4,
                got: 1,
                ..
            })
        ));
        let many = Value::Struct(vec![(
            "pts".into(),
            Value::Array(vec![Value::Struct(vec![]); 256]),
        )]);
        assert!(matches!(
            encode_message(&m, def, 1, &many, &mut out),
            Err(EncodeError::TooMany { len: 256, .. })
        ));
    }

    #[test]
    fn json_conversion() {
        let v = Value::Struct(vec![
            ("a".into(), Value::I32(-3)),
            ("b".into(), Value::Bytes(vec![1, 2])),
            ("c".into(), Value::String("x".into())),
        ]);
        let j = v.to_json();
        assert_eq!(j.to_compact(), r#"{"a":-3,"b":[1,2],"c":"x"}"#);
        let back = Value::from_json(&j).unwrap();
        assert_eq!(back.get("a"), Some(&Value::I64(-3)));
        assert_eq!(
            back.get("b"),
            Some(&Value::Array(vec![Value::U64(1), Value::U64(2)]))
        );
        assert_eq!(Value::from_json(&Json::Null), None);
    }
}
