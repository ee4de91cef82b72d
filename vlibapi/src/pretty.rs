//! Pretty-printing of messages: `name { field: value, ... }`, through the dynamic codec.
//!
//! Enum fields print their value's name when it has one, enumflags the names of their bits,
//! strings quoted, byte arrays and unions in hex.

use std::fmt::Write as _;

use crate::schema::{ArrayKind, Field, NamedType, TypeLookup, TypeRef};
use crate::table::MessageTable;
use crate::value::{self, Value};
use crate::wire;

/// Formats any message bytes using the table's schema. Never fails: unknown IDs and
/// undecodable messages are described instead.
pub fn format_message(table: &MessageTable, bytes: &[u8]) -> String {
    let Some(id) = wire::msg_id(bytes) else {
        return format!("<{} bytes, no message id>", bytes.len());
    };
    let Some(info) = table.info(id) else {
        return format!("<unknown message id {id}, {} bytes>", bytes.len());
    };
    match value::decode_message(table.schema(), info.def, bytes) {
        Ok(v) => format_fields(table.schema(), &info.def.name, &info.def.fields, &v),
        Err(e) => format!(
            "{} <undecodable: {e}; {} bytes>",
            info.def.name,
            bytes.len()
        ),
    }
}

/// Formats a decoded struct value with its fields' types: `name { a: 1, b: "x" }`.
pub fn format_fields(types: &dyn TypeLookup, name: &str, fields: &[Field], v: &Value) -> String {
    let mut s = String::new();
    s.push_str(name);
    write_struct(types, fields, v, &mut s, 0);
    s
}

fn write_struct(types: &dyn TypeLookup, fields: &[Field], v: &Value, s: &mut String, depth: usize) {
    s.push_str(" {");
    for (i, f) in fields.iter().enumerate() {
        s.push_str(if i == 0 { " " } else { ", " });
        s.push_str(&f.name);
        s.push_str(": ");
        match v.get(&f.name) {
            Some(fv) => write_field(types, f, fv, s, depth),
            None => s.push('?'),
        }
    }
    s.push_str(if fields.is_empty() { "}" } else { " }" });
}

fn write_field(types: &dyn TypeLookup, f: &Field, v: &Value, s: &mut String, depth: usize) {
    match (&f.array, v) {
        (ArrayKind::None, _) | (_, Value::String(_) | Value::Bytes(_)) => {
            write_typed(types, &f.ty, v, s, depth)
        }
        (_, Value::Array(items)) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_typed(types, &f.ty, item, s, depth);
            }
            s.push(']');
        }
        _ => write_plain(v, s),
    }
}

fn write_typed(types: &dyn TypeLookup, ty: &TypeRef, v: &Value, s: &mut String, depth: usize) {
    let TypeRef::Named(n) = ty else {
        return write_plain(v, s);
    };
    if depth > crate::schema::MAX_TYPE_DEPTH {
        return write_plain(v, s);
    }
    match types.named(n) {
        Some(NamedType::Struct(t)) => write_struct(types, &t.fields, v, s, depth + 1),
        Some(NamedType::Enum(e)) => {
            let known = v
                .as_i128()
                .and_then(|x| e.values.iter().find(|(_, val)| i128::from(*val) == x));
            match known {
                Some((name, _)) => s.push_str(name),
                None => write_plain(v, s),
            }
        }
        Some(NamedType::EnumFlags(e)) => {
            let Some(mut rest) = v.as_i128() else {
                return write_plain(v, s);
            };
            let mut parts = Vec::new();
            for (name, val) in &e.values {
                let bit = i128::from(*val);
                if bit != 0 && rest & bit == bit {
                    parts.push(name.clone());
                    rest &= !bit;
                }
            }
            if rest != 0 || parts.is_empty() {
                parts.push(format!("{rest:#x}"));
            }
            s.push_str(&parts.join("|"));
        }
        Some(NamedType::Alias(a)) if a.length.is_none() => {
            write_typed(types, &a.ty, v, s, depth + 1)
        }
        Some(NamedType::Alias(a)) => match v {
            Value::Array(items) => {
                s.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    write_typed(types, &a.ty, item, s, depth + 1);
                }
                s.push(']');
            }
            _ => write_plain(v, s),
        },
        Some(NamedType::Union(_)) | None => write_plain(v, s),
    }
}

/// Formats a value without type information.
pub fn format_value(v: &Value) -> String {
    let mut s = String::new();
    write_plain(v, &mut s);
    s
}

fn write_plain(v: &Value, s: &mut String) {
    match v {
        Value::Bool(b) => {
            let _ = write!(s, "{b}");
        }
        Value::F64(x) => {
            let _ = write!(s, "{x}");
        }
        Value::String(x) => {
            let _ = write!(s, "{x:?}");
        }
        Value::Bytes(b) => {
            s.push_str("0x");
            for x in b {
                let _ = write!(s, "{x:02x}");
            }
        }
        Value::Array(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_plain(item, s);
            }
            s.push(']');
        }
        Value::Struct(fields) => {
            s.push('{');
            for (i, (k, x)) in fields.iter().enumerate() {
                s.push_str(if i == 0 { " " } else { ", " });
                let _ = write!(s, "{k}: ");
                write_plain(x, s);
            }
            s.push_str(if fields.is_empty() { "}" } else { " }" });
        }
        other => {
            let _ = write!(s, "{}", other.as_i128().unwrap_or(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::memclnt::ControlPingReply;
    use crate::msgs::vlib_api::{ApiClientDetails, ApiClientTransport};
    use crate::wire::Message;

    #[test]
    fn formats_messages() {
        let t = MessageTable::with_core();
        let id = t.id_of::<ControlPingReply>().unwrap();
        let msg = ControlPingReply {
            context: 7,
            retval: -1,
            client_index: 0,
            vpe_pid: 42,
        };
        let bytes = wire::to_vec(&msg, id).unwrap();
        assert_eq!(
            format_message(&t, &bytes),
            "control_ping_reply { context: 7, retval: -1, client_index: 0, vpe_pid: 42 }"
        );
        let id = t.id_of::<ApiClientDetails>().unwrap();
        let d = ApiClientDetails {
            name: "vat \"x\"".into(),
            transport: ApiClientTransport::API_CLIENT_TRANSPORT_SOCKET,
            ..Default::default()
        };
        let bytes = wire::to_vec(&d, id).unwrap();
        assert_eq!(
            format_message(&t, &bytes),
            "api_client_details { context: 0, index: 0, name: \"vat \\\"x\\\"\", \
             transport: API_CLIENT_TRANSPORT_SOCKET, pid: 0, uid: 0 }"
        );
        assert_eq!(format_message(&t, &[0]), "<1 bytes, no message id>");
        assert_eq!(
            format_message(&t, &[0xff, 0xff]),
            "<unknown message id 65535, 2 bytes>"
        );
        assert!(format_message(&t, &bytes[..5]).starts_with("api_client_details <undecodable"));
        assert_eq!(ControlPingReply::NAME, "control_ping_reply");
    }

    #[test]
    fn plain_values() {
        let v = Value::Struct(vec![
            ("a".into(), Value::Bytes(vec![10, 0, 0, 1])),
            (
                "b".into(),
                Value::Array(vec![Value::I8(-1), Value::Bool(true)]),
            ),
            ("c".into(), Value::Struct(vec![])),
        ]);
        assert_eq!(format_value(&v), "{ a: 0x0a000001, b: [-1, true], c: {} }");
    }
}
