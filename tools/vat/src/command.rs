//! Message commands: field values parsed against the schema into a [`Value`], and encoded.
//!
//! A command is a message name followed by `field value` pairs, in any order:
//!
//! ```text
//! sw_thing_add_del name foo count 0x4 enable
//! sw_thing_add_del name "two words" is_add false
//! ```
//!
//! Values, by field type (all parsed with [`vppinfra::unformat`]):
//!
//! | type | syntax |
//! |---|---|
//! | `bool` | a bare field name means true; or `true`/`false`, `on`/`off`, `yes`/`no`, `enable`/`disable` after it |
//! | integers | decimal or `0x` hex, with a sign for the signed types |
//! | `f64` | decimal (`1.5`, `-2e3`) |
//! | `string` | a bare word or a double-quoted string with `\"`, `\\`, `\n`, `\t`, `\xHH` escapes |
//! | enum | a value name (`API_CLIENT_TRANSPORT_SOCKET`, any case, or a unique `_`-separated tail such as `socket`) or a number |
//! | enumflag | names joined with `\|` (`F_A\|F_B`) or a number |
//! | struct type | `{ member value member value }`, members by name as for a message |
//! | union | `{ member value }` (one member), or its raw bytes as hex |
//! | `u8` array | hex bytes `0x0a000001`, a quoted string's bytes, or `[ 10 0 0 1 ]`; a fixed array is zero-padded |
//! | other array | `[ value value ... ]` |
//!
//! Braces and brackets are words of their own: write `[ 1 2 ]`, not `[1 2]`. A field given
//! twice, an unknown field, and a value that does not parse are errors that point at the
//! offending word. `client_index` and `context` are filled in by vat, and array length fields
//! (`count` for `api_versions[count]`) follow the array. Fields not given take the schema's
//! `default`, else zero.

use std::fmt;

use vlibapi::EncodeError;
use vlibapi::json::{Json, Number};
use vlibapi::schema::{
    ArrayKind, BaseType, EnumDef, Field, MessageDef, NamedType, TypeLookup, TypeRef,
};
use vlibapi::value::{self, Value};
use vppinfra::unformat::{Input, ParseError};

use crate::api::{self, MsgInfo};
use crate::suggest;

/// What `help syntax` prints.
pub const SYNTAX_HELP: &str = "\
A message command is the message name, then `field value` pairs in any order:
    sw_thing_add_del name foo count 0x4 enable
Values by field type:
    bool        the field name alone means true; or true/false, on/off, yes/no, enable/disable
    integers    decimal or 0x hex (a sign for signed types)
    f64         decimal: 1.5, -2e3
    string      a bare word, or \"quoted\" with \\\" \\\\ \\n \\t \\xHH escapes
    enum        a value name (any case, or a unique _-separated tail) or a number
    enumflag    names joined with | (FLAG_A|FLAG_B) or a number
    struct      { member value member value }
    union       { member value } (one member), or raw bytes as 0x hex
    u8 array    0x hex bytes, a \"quoted string\", or [ 1 2 3 ] (fixed arrays are zero-padded)
    array       [ value value ... ]
Braces and brackets are words of their own: [ 1 2 ], not [1 2].
client_index and context are filled in by vat; array length fields follow their arrays;
fields not given take the schema default, else zero.
";

/// Fields vat fills in itself.
pub const FILLED_BY_VAT: [&str; 2] = ["client_index", "context"];

/// Types nested deeper than this are refused (the schema allows up to its own limit).
const MAX_DEPTH: usize = vlibapi::schema::MAX_TYPE_DEPTH;

/// A command that does not parse: where and why, and perhaps a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandParseError {
    /// The position, what was expected and what was found.
    pub error: ParseError,
    /// A suggestion (`did you mean ...?`, the valid names).
    pub hint: Option<String>,
    /// The error already names its field; enclosing fields leave it alone.
    located: bool,
}

impl CommandParseError {
    fn new(error: ParseError) -> Self {
        Self {
            error,
            hint: None,
            located: false,
        }
    }

    fn located(mut self) -> Self {
        self.located = true;
        self
    }

    /// The same error with `hint` attached.
    pub fn with_hint(mut self, hint: String) -> Self {
        self.hint = Some(hint);
        self
    }

    fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// The error, the line with a caret under the problem, and the hint.
    pub fn render(&self, text: &str) -> String {
        let mut s = format!("{}\n{}", self.error, self.error.render(text));
        if let Some(h) = &self.hint {
            s.push('\n');
            s.push_str(h);
        }
        s
    }
}

impl fmt::Display for CommandParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ParseError> for CommandParseError {
    fn from(e: ParseError) -> Self {
        Self::new(e)
    }
}

/// Parses the rest of `input` as the fields of message `def`; fields not given take their
/// defaults (see the module docs). The result has no `client_index` or `context`.
pub fn parse_message_args(
    types: &dyn TypeLookup,
    def: &MessageDef,
    input: &mut Input<'_>,
) -> Result<Value, CommandParseError> {
    let mut given = Vec::new();
    while !input.eof() {
        parse_member(types, &def.name, &def.fields, input, &mut given, true, 0)?;
    }
    apply_defaults(types, &def.fields, &mut given, true);
    Ok(Value::Struct(given))
}

/// Field names a user may give for `fields` (not the ones vat fills in, not length fields).
pub fn settable_fields(fields: &[Field], top_level: bool) -> impl Iterator<Item = &Field> + '_ {
    fields.iter().filter(move |f| {
        !(top_level && FILLED_BY_VAT.contains(&f.name.as_str())) && length_of(fields, f).is_none()
    })
}

/// The array whose length field `f` is, if it is one.
fn length_of<'a>(fields: &'a [Field], f: &Field) -> Option<&'a Field> {
    fields
        .iter()
        .find(|a| matches!(&a.array, ArrayKind::Counted(lf) if lf == &f.name))
}

fn parse_member(
    types: &dyn TypeLookup,
    owner: &str,
    fields: &[Field],
    input: &mut Input<'_>,
    given: &mut Vec<(String, Value)>,
    top_level: bool,
    depth: usize,
) -> Result<(), CommandParseError> {
    let start = input.checkpoint();
    let word = input.word().unwrap_or_default();
    let error_here = |input: &mut Input<'_>, expected: String| {
        input.rewind(start);
        CommandParseError::new(input.error(expected)).located()
    };
    let Some(f) = fields.iter().find(|f| f.name == word) else {
        let names: Vec<&str> = settable_fields(fields, top_level)
            .map(|f| f.name.as_str())
            .collect();
        let hint = suggest::did_you_mean(word, names.iter().copied()).or_else(|| {
            Some(if names.is_empty() {
                format!("{owner} has no fields to set")
            } else {
                format!("the fields of {owner} are: {}", names.join(", "))
            })
        });
        return Err(error_here(input, format!("a field of {owner}")).hint(hint));
    };
    if top_level && FILLED_BY_VAT.contains(&word) {
        return Err(
            error_here(input, format!("a field of {owner} other than `{word}`"))
                .hint(Some(format!("vat fills in `{word}` itself"))),
        );
    }
    if let Some(array) = length_of(fields, f) {
        return Err(
            error_here(input, format!("a field of {owner} other than `{word}`")).hint(Some(
                format!("`{word}` is the length of `{}` and follows it", array.name),
            )),
        );
    }
    if given.iter().any(|(n, _)| n == word) {
        return Err(error_here(
            input,
            format!("a field not given before (`{word}` is)"),
        ));
    }
    let v = parse_field_value(types, f, fields, input, depth)?;
    given.push((f.name.clone(), v));
    Ok(())
}

/// Adds a field-specific phrase to a value's parse error, and the bracket hint if it applies.
fn for_field(mut e: CommandParseError, f: &Field, types: &dyn TypeLookup) -> CommandParseError {
    if e.located {
        return e;
    }
    e.located = true;
    {
        e.error.expected = format!(
            "{} for `{}` ({})",
            e.error.expected,
            f.name,
            describe_field_type(types, f)
        )
        .into();
    }
    if e.hint.is_none()
        && e.error
            .found
            .as_deref()
            .is_some_and(|t| t.len() > 1 && (t.ends_with(']') || t.ends_with('}')))
    {
        e.hint = Some("braces and brackets are words of their own: `[ 1 2 ]`, `{ a 1 }`".into());
    }
    e
}

/// Parses the value of field `f`. `siblings` are the fields around it: a bool followed by one
/// of their names is a bare flag, so `is_add enable` sets both (`enable` is also a boolean word).
fn parse_field_value(
    types: &dyn TypeLookup,
    f: &Field,
    siblings: &[Field],
    input: &mut Input<'_>,
    depth: usize,
) -> Result<Value, CommandParseError> {
    let r = match (&f.ty, &f.array) {
        (TypeRef::String, _) => input.string().map(Value::String).map_err(Into::into),
        (ty, ArrayKind::None) => {
            if is_bool(types, ty) {
                let start = input.checkpoint();
                let next_is_field = input
                    .word()
                    .is_some_and(|w| siblings.iter().any(|s| s.name == w));
                input.rewind(start);
                // A bare flag means true; a boolean word after it is its value.
                let value = if next_is_field {
                    true
                } else {
                    input.attempt(|i| i.bool()).unwrap_or(true)
                };
                Ok(Value::Bool(value))
            } else {
                parse_type(types, ty, input, depth)
            }
        }
        (ty, ArrayKind::Fixed(n)) => parse_array(types, ty, Some(*n as usize), input, depth),
        (ty, ArrayKind::Counted(_) | ArrayKind::Unsized) => {
            parse_array(types, ty, None, input, depth)
        }
    };
    r.map_err(|e| for_field(e, f, types))
}

fn is_bool(types: &dyn TypeLookup, ty: &TypeRef) -> bool {
    match ty {
        TypeRef::Base(BaseType::Bool) => true,
        TypeRef::Named(n) => matches!(
            vlibapi::schema::resolve_alias(types, n, 0),
            Some(TypeRef::Base(BaseType::Bool))
        ),
        _ => false,
    }
}

fn is_byte(types: &dyn TypeLookup, ty: &TypeRef) -> bool {
    match ty {
        TypeRef::Base(BaseType::U8) => true,
        TypeRef::Named(n) => matches!(
            vlibapi::schema::resolve_alias(types, n, 0),
            Some(TypeRef::Base(BaseType::U8))
        ),
        _ => false,
    }
}

/// Consumes `open` (`{` or `[`) at the next non-blank character.
fn open(input: &mut Input<'_>, open: char) -> Result<(), CommandParseError> {
    input.skip_whitespace();
    if input.peek() == Some(open) {
        input.next_char();
        Ok(())
    } else {
        Err(input.error(format!("`{open}`")).into())
    }
}

/// Consumes `close` if it is the next word; an error at the end of input.
fn closes(input: &mut Input<'_>, close: &str) -> Result<bool, CommandParseError> {
    if input.keyword(close) {
        return Ok(true);
    }
    if input.eof() {
        return Err(CommandParseError::new(input.error(format!("`{close}`")))
            .hint(Some(format!("close with ` {close}` (a word of its own)"))));
    }
    Ok(false)
}

fn parse_array(
    types: &dyn TypeLookup,
    ty: &TypeRef,
    fixed: Option<usize>,
    input: &mut Input<'_>,
    depth: usize,
) -> Result<Value, CommandParseError> {
    input.skip_whitespace();
    if is_byte(types, ty) && input.peek() != Some('[') {
        let start = input.checkpoint();
        let bytes = parse_bytes(input)?;
        return match fixed {
            Some(n) if bytes.len() > n => {
                input.rewind(start);
                Err(input
                    .error(format!("at most {n} bytes (this is {})", bytes.len()))
                    .into())
            }
            Some(n) => {
                let mut bytes = bytes;
                bytes.resize(n, 0);
                Ok(Value::Bytes(bytes))
            }
            None => Ok(Value::Bytes(bytes)),
        };
    }
    let start = input.checkpoint();
    open(input, '[')?;
    let mut items = Vec::new();
    while !closes(input, "]")? {
        items.push(parse_type(types, ty, input, depth)?);
    }
    if let Some(n) = fixed {
        if items.len() != n {
            input.rewind(start);
            return Err(input
                .error(format!("exactly {n} elements (this has {})", items.len()))
                .into());
        }
    }
    if is_byte(types, ty) {
        let bytes = items
            .iter()
            .map(|v| v.as_i128().and_then(|b| u8::try_from(b).ok()).unwrap_or(0))
            .collect();
        return Ok(Value::Bytes(bytes));
    }
    Ok(Value::Array(items))
}

/// Hex bytes (`0x0a0b`, an even number of digits) or a quoted string's bytes.
fn parse_bytes(input: &mut Input<'_>) -> Result<Vec<u8>, CommandParseError> {
    input.skip_whitespace();
    if input.peek() == Some('"') {
        return Ok(input.quoted_string()?.into_bytes());
    }
    let start = input.checkpoint();
    let word = input.word().unwrap_or_default();
    let digits = word
        .strip_prefix("0x")
        .or_else(|| word.strip_prefix("0X"))
        .filter(|d| d.len() % 2 == 0 && d.bytes().all(|b| b.is_ascii_hexdigit()));
    let Some(digits) = digits else {
        input.rewind(start);
        return Err(input
            .error("bytes: 0x and an even number of hex digits, a quoted string, or [ n n ... ]")
            .into());
    };
    Ok((0..digits.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect())
}

fn parse_base(b: BaseType, input: &mut Input<'_>) -> Result<Value, CommandParseError> {
    Ok(match b {
        BaseType::Bool => Value::Bool(input.bool()?),
        BaseType::U8 => Value::U8(input.u8()?),
        BaseType::I8 => Value::I8(input.i8()?),
        BaseType::U16 => Value::U16(input.u16()?),
        BaseType::I16 => Value::I16(input.i16()?),
        BaseType::U32 => Value::U32(input.u32()?),
        BaseType::I32 => Value::I32(input.i32()?),
        BaseType::U64 => Value::U64(input.u64()?),
        BaseType::I64 => Value::I64(input.i64()?),
        BaseType::F64 => Value::F64(input.f64()?),
    })
}

fn parse_type(
    types: &dyn TypeLookup,
    ty: &TypeRef,
    input: &mut Input<'_>,
    depth: usize,
) -> Result<Value, CommandParseError> {
    if depth > MAX_DEPTH {
        return Err(input
            .error("a value of a type that does not nest so deeply")
            .into());
    }
    match ty {
        TypeRef::Base(b) => parse_base(*b, input),
        TypeRef::String => Ok(Value::String(input.string()?)),
        TypeRef::Named(n) => match types.named(n) {
            None => Err(input
                .error(format!("a value of a defined type (`{n}` is unknown)"))
                .into()),
            Some(NamedType::Struct(s)) => parse_struct(types, &s.name, &s.fields, input, depth + 1),
            Some(NamedType::Union(u)) => {
                input.skip_whitespace();
                if input.peek() != Some('{') {
                    return Ok(Value::Bytes(parse_bytes(input)?));
                }
                let start = input.checkpoint();
                let v = parse_struct(types, &u.name, &u.fields, input, depth + 1)?;
                match &v {
                    Value::Struct(m) if m.len() == 1 => Ok(v),
                    _ => {
                        input.rewind(start);
                        Err(input
                            .error(format!("exactly one member of union {}", u.name))
                            .into())
                    }
                }
            }
            Some(NamedType::Enum(e)) => parse_enum(e, input),
            Some(NamedType::EnumFlags(e)) => parse_flags(e, input),
            Some(NamedType::Alias(a)) => match a.length {
                None => parse_type(types, &a.ty, input, depth + 1),
                Some(len) => parse_array(types, &a.ty, Some(len as usize), input, depth + 1),
            },
        },
    }
}

fn parse_struct(
    types: &dyn TypeLookup,
    name: &str,
    fields: &[Field],
    input: &mut Input<'_>,
    depth: usize,
) -> Result<Value, CommandParseError> {
    open(input, '{')?;
    let mut given = Vec::new();
    while !closes(input, "}")? {
        parse_member(types, name, fields, input, &mut given, false, depth)?;
    }
    apply_defaults(types, fields, &mut given, false);
    Ok(Value::Struct(given))
}

/// An enum value by name: exact, then any case, then a unique `_`-separated tail.
fn enum_value(e: &EnumDef, word: &str) -> Option<i64> {
    let exact = e.values.iter().find(|(n, _)| n == word);
    let any_case = || e.values.iter().find(|(n, _)| n.eq_ignore_ascii_case(word));
    let tail = || {
        let suffix = format!("_{}", word.to_ascii_uppercase());
        let mut hits = e
            .values
            .iter()
            .filter(|(n, _)| n.to_ascii_uppercase().ends_with(&suffix));
        match (hits.next(), hits.next()) {
            (Some(hit), None) => Some(hit),
            _ => None,
        }
    };
    exact.or_else(any_case).or_else(tail).map(|(_, v)| *v)
}

/// A number that fits the enum's underlying type; nothing is consumed otherwise.
fn enum_number(e: &EnumDef, input: &mut Input<'_>) -> Option<i64> {
    let start = input.checkpoint();
    let v = input.attempt(|i| i.i64()).ok();
    let v = v.or_else(|| input.attempt(|i| i.u64()).ok().map(|u| u as i64));
    if v.is_some_and(|v| !fits(e.underlying, v)) {
        input.rewind(start);
        return None;
    }
    v
}

fn fits(b: BaseType, v: i64) -> bool {
    let v = i128::from(v);
    match b {
        BaseType::U8 => (0..=0xff).contains(&v),
        BaseType::I8 => (-0x80..0x80).contains(&v),
        BaseType::U16 => (0..=0xffff).contains(&v),
        BaseType::I16 => (-0x8000..0x8000).contains(&v),
        BaseType::U32 => (0..=0xffff_ffff).contains(&v),
        BaseType::I32 => (-0x8000_0000..0x8000_0000).contains(&v),
        _ => true,
    }
}

fn parse_enum(e: &EnumDef, input: &mut Input<'_>) -> Result<Value, CommandParseError> {
    if let Some(v) = enum_number(e, input) {
        return Ok(Value::I64(v));
    }
    let start = input.checkpoint();
    let word = input.word().unwrap_or_default();
    if let Some(v) = enum_value(e, word) {
        return Ok(Value::I64(v));
    }
    input.rewind(start);
    let names: Vec<&str> = e.values.iter().map(|(n, _)| n.as_str()).collect();
    Err(
        CommandParseError::new(input.error(format!("a value of enum {} or a number", e.name)))
            .hint(Some(format!("values: {}", names.join(", ")))),
    )
}

fn parse_flags(e: &EnumDef, input: &mut Input<'_>) -> Result<Value, CommandParseError> {
    if let Some(v) = enum_number(e, input) {
        return Ok(Value::I64(v));
    }
    let start = input.checkpoint();
    let word = input.word().unwrap_or_default();
    let mut bits = 0i64;
    for part in word.split('|') {
        match enum_value(e, part) {
            Some(v) => bits |= v,
            None => {
                input.rewind(start);
                let names: Vec<&str> = e.values.iter().map(|(n, _)| n.as_str()).collect();
                return Err(CommandParseError::new(
                    input.error(format!("flags of {} joined with `|`, or a number", e.name)),
                )
                .hint(Some(format!("flags: {}", names.join(", ")))));
            }
        }
    }
    Ok(Value::I64(bits))
}

/// Fills in the schema defaults of fields not given. A default that does not parse as its
/// field's type is left out (the field is then zero).
fn apply_defaults(
    types: &dyn TypeLookup,
    fields: &[Field],
    given: &mut Vec<(String, Value)>,
    top_level: bool,
) {
    for f in settable_fields(fields, top_level) {
        if given.iter().any(|(n, _)| n == &f.name) {
            continue;
        }
        if let Some(v) = api::field_default(f).and_then(|d| default_value(types, f, d)) {
            given.push((f.name.clone(), v));
        }
    }
}

fn default_value(types: &dyn TypeLookup, f: &Field, d: &Json) -> Option<Value> {
    match d {
        Json::Bool(b) => Some(Value::Bool(*b)),
        Json::Number(Number::UInt(u)) => Some(Value::U64(*u)),
        Json::Number(Number::Int(i)) => Some(Value::I64(*i)),
        Json::Number(Number::Float(x)) => Some(Value::F64(*x)),
        Json::String(s) => {
            let mut input = Input::new(s);
            let v = parse_field_value(types, f, &[], &mut input, 0).ok()?;
            input.end().ok()?;
            Some(v)
        }
        _ => None,
    }
}

/// Encodes a request: `value` (from [`parse_message_args`]) with `client_index` and `context`
/// added where the message has them.
pub fn encode_request(
    types: &dyn TypeLookup,
    info: &MsgInfo,
    value: &Value,
    client_index: u32,
    context: u32,
) -> Result<Vec<u8>, EncodeError> {
    let mut members = match value {
        Value::Struct(m) => m.clone(),
        _ => Vec::new(),
    };
    if info.has_field("client_index") {
        members.push(("client_index".into(), Value::U32(client_index)));
    }
    if info.has_field("context") {
        members.push(("context".into(), Value::U32(context)));
    }
    let mut out = Vec::new();
    value::encode_message(types, &info.def, info.id, &Value::Struct(members), &mut out)?;
    Ok(out)
}

/// How a field's type reads in help: `u32`, `string[64]`, `vl_api_pt_t[] (count in n)`, ...
pub fn describe_field_type(types: &dyn TypeLookup, f: &Field) -> String {
    let elem = describe_type(types, &f.ty);
    match (&f.ty, &f.array) {
        (TypeRef::String, ArrayKind::Fixed(n)) => format!("string[{n}]"),
        (TypeRef::String, _) => "string".to_owned(),
        (_, ArrayKind::None) => elem,
        (_, ArrayKind::Fixed(n)) => format!("{elem}[{n}]"),
        (_, ArrayKind::Counted(lf)) => format!("{elem}[{lf}]"),
        (_, ArrayKind::Unsized) => format!("{elem}[]"),
    }
}

fn describe_type(types: &dyn TypeLookup, ty: &TypeRef) -> String {
    match ty {
        TypeRef::Named(n) => match types.named(n) {
            Some(NamedType::Struct(_)) => format!("struct {n}"),
            Some(NamedType::Union(_)) => format!("union {n}"),
            Some(NamedType::Enum(_)) => format!("enum {n}"),
            Some(NamedType::EnumFlags(_)) => format!("flags {n}"),
            Some(NamedType::Alias(a)) => match a.length {
                None => format!("{n} = {}", describe_type(types, &a.ty)),
                Some(len) => format!("{n} = {}[{len}]", describe_type(types, &a.ty)),
            },
            None => n.clone(),
        },
        other => other.api_name(),
    }
}

/// The lines `help <message>` prints for the fields of a type or message: name, type, default,
/// and the members or values of named types, indented by nesting.
pub fn describe_fields(
    types: &dyn TypeLookup,
    fields: &[Field],
    top_level: bool,
    indent: usize,
    out: &mut Vec<String>,
) {
    let width = settable_fields(fields, top_level)
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for f in settable_fields(fields, top_level) {
        let mut line = format!(
            "{:indent$}{:width$}  {}",
            "",
            f.name,
            describe_field_type(types, f)
        );
        match api::field_default(f) {
            Some(Json::String(d)) => line.push_str(&format!("  (default {d})")),
            Some(d) => line.push_str(&format!("  (default {})", d.to_compact())),
            None => {}
        }
        if f.ty == TypeRef::Base(BaseType::Bool) && f.array == ArrayKind::None {
            line.push_str(&format!("  (`{}` alone means true)", f.name));
        }
        out.push(line);
        if indent < 12 {
            describe_named(types, &f.ty, indent + 4, out);
        }
    }
}

fn describe_named(types: &dyn TypeLookup, ty: &TypeRef, indent: usize, out: &mut Vec<String>) {
    let TypeRef::Named(n) = ty else {
        return;
    };
    match types.named(n) {
        Some(NamedType::Struct(s)) => describe_fields(types, &s.fields, false, indent, out),
        Some(NamedType::Union(u)) => {
            out.push(format!("{:indent$}one of:", ""));
            describe_fields(types, &u.fields, false, indent, out);
        }
        Some(NamedType::Enum(e) | NamedType::EnumFlags(e)) => {
            let values: Vec<String> = e.values.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push(format!("{:indent$}{}", "", values.join(" ")));
        }
        Some(NamedType::Alias(a)) if a.length.is_none() => {
            describe_named(types, &a.ty, indent, out)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::example_api;
    use vlibapi::schema::{Module, Schema};

    fn parse(api: &crate::api::Api, line: &str) -> Result<Value, CommandParseError> {
        let mut input = Input::new(line);
        let name = input.word().unwrap();
        let info = api.by_name(name).unwrap();
        parse_message_args(api.schema(), &info.def, &mut input)
    }

    fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
        v.get(name)
    }

    #[test]
    fn fields_by_name_with_flags_numbers_strings_and_defaults() {
        let api = example_api();
        let v = parse(&api, "sw_thing_add_del name foo count 4 enable").unwrap();
        assert_eq!(field(&v, "name"), Some(&Value::String("foo".into())));
        assert_eq!(field(&v, "count"), Some(&Value::U32(4)));
        assert_eq!(field(&v, "enable"), Some(&Value::Bool(true)));
        // `is_add` has the schema default "true".
        assert_eq!(field(&v, "is_add"), Some(&Value::Bool(true)));

        let v = parse(
            &api,
            r#"sw_thing_add_del enable false count 0x1F name "two \"words\"" is_add no"#,
        )
        .unwrap();
        assert_eq!(field(&v, "enable"), Some(&Value::Bool(false)));
        assert_eq!(field(&v, "count"), Some(&Value::U32(31)));
        assert_eq!(
            field(&v, "name"),
            Some(&Value::String("two \"words\"".into()))
        );
        assert_eq!(field(&v, "is_add"), Some(&Value::Bool(false)));
        // `enable` is both a field and a boolean word: after a flag it is the field.
        let v = parse(&api, "sw_thing_add_del is_add enable").unwrap();
        assert_eq!(field(&v, "is_add"), Some(&Value::Bool(true)));
        assert_eq!(field(&v, "enable"), Some(&Value::Bool(true)));
        let v = parse(&api, "sw_thing_add_del enable disable is_add off").unwrap();
        assert_eq!(field(&v, "enable"), Some(&Value::Bool(false)));
        assert_eq!(field(&v, "is_add"), Some(&Value::Bool(false)));
        // Nothing given: defaults only.
        let v = parse(&api, "sw_thing_add_del").unwrap();
        assert_eq!(v, Value::Struct(vec![("is_add".into(), Value::Bool(true))]));
    }

    #[test]
    fn encodes_with_client_index_and_context() {
        let api = example_api();
        let info = api.by_name("sw_thing_add_del").unwrap();
        let v = parse(&api, "sw_thing_add_del name ab count 258").unwrap();
        let bytes = encode_request(api.schema(), info, &v, 0x8000_0001, 7).unwrap();
        let mut want = info.id.to_be_bytes().to_vec();
        want.extend_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 7, 1]);
        let mut name = [0u8; 64];
        name[..2].copy_from_slice(b"ab");
        want.extend_from_slice(&name);
        want.extend_from_slice(&[0, 0, 1, 2, 0]);
        assert_eq!(bytes, want);
        let back = api.decode(&bytes).unwrap();
        assert_eq!(back.context(), Some(7));
    }

    fn message_error(api: &crate::api::Api, line: &str) -> CommandParseError {
        parse(api, line).unwrap_err()
    }

    #[test]
    fn errors_point_at_the_field_and_say_what_was_expected() {
        let api = example_api();
        let line = "sw_thing_add_del name foo count many";
        let e = message_error(&api, line);
        assert_eq!(
            e.error.to_string(),
            "expected an unsigned 32-bit number for `count` (u32) at column 33, found \"many\""
        );
        assert_eq!(
            e.render(line).lines().nth(2).unwrap(),
            format!("{:32}^", "")
        );

        let e = message_error(&api, "sw_thing_add_del cuont 4");
        assert_eq!(e.error.column, 18);
        assert_eq!(e.error.expected, "a field of sw_thing_add_del");
        assert_eq!(e.hint.as_deref(), Some("did you mean `count`?"));

        let e = message_error(&api, "sw_thing_add_del zzzzzzzz 4");
        assert_eq!(
            e.hint.as_deref(),
            Some("the fields of sw_thing_add_del are: is_add, name, count, enable")
        );

        let e = message_error(&api, "sw_thing_add_del count 1 count 2");
        assert_eq!(e.error.column, 26);
        let e = message_error(&api, "sw_thing_add_del context 5");
        assert_eq!(e.hint.as_deref(), Some("vat fills in `context` itself"));
        let e = message_error(&api, "sw_thing_add_del count 4294967296");
        assert!(e.error.to_string().contains("(out of range)"), "{e}");
        let e = message_error(&api, "sw_thing_add_del name \"open");
        assert!(e.error.to_string().contains("unterminated"), "{e}");
        let e = message_error(&api, "sw_thing_add_del name");
        assert!(e.error.to_string().contains("end of input"), "{e}");
        let too_long = format!("sw_thing_add_del name {}", "x".repeat(64));
        // Strings are checked by the encoder (room for the NUL).
        let v = parse(&api, &too_long).unwrap();
        let info = api.by_name("sw_thing_add_del").unwrap();
        assert!(encode_request(api.schema(), info, &v, 0, 1).is_err());
    }

    const NESTED: &str = r#"{
        "types": [["pt", ["i16", "x"], ["i16", "y", {"default": -1}]],
                  ["holder", ["u8", "n"], ["vl_api_pt_t", "pts", 0, "n"]]],
        "unions": [["addr", ["u32", "v4"], ["u8", "v6", 16]]],
        "enums": [["color", ["COLOR_RED", 1], ["COLOR_BLUE", 2], {"enumtype": "u8"}]],
        "enumflags": [["fl", ["FL_A", 1], ["FL_B", 4]]],
        "aliases": {"mac": {"type": "u8", "length": 6}},
        "messages": [["m", ["u16", "_vl_msg_id"], ["u32", "client_index"], ["u32", "context"],
            ["vl_api_holder_t", "h"], ["vl_api_color_t", "c"], ["vl_api_fl_t", "f"],
            ["vl_api_addr_t", "a"], ["vl_api_mac_t", "mac"], ["u8", "raw", 4],
            ["u32", "count"], ["u16", "list", 0, "count"], ["f64", "ratio"],
            ["i8", "delta"], ["string", "s", 0]]]
    }"#;

    fn nested() -> (Schema, MessageDef) {
        let m = Module::from_json_text("t", NESTED).unwrap();
        let def = m.messages[0].clone();
        let mut s = Schema::new();
        s.push(m);
        (s, def)
    }

    #[test]
    fn nested_types_arrays_enums_flags_unions_and_bytes() {
        let (s, def) = nested();
        let line = "m h { pts [ { x 1 y 2 } { x -3 } ] } c blue f FL_A|fl_b a { v4 0x01020304 } \
                    mac 0x0a0b0c raw [ 1 2 3 4 ] list [ 7 8 ] ratio -2.5 delta -1 s \"hi there\"";
        let v = parse_message_args(&s, &def, &mut Input::new(&line[2..])).unwrap();
        let pts = v.get("h").unwrap().get("pts").unwrap();
        let Value::Array(pts) = pts else {
            panic!("{pts:?}")
        };
        assert_eq!(pts[0].get("x"), Some(&Value::I16(1)));
        assert_eq!(pts[0].get("y"), Some(&Value::I16(2)));
        assert_eq!(pts[1].get("x"), Some(&Value::I16(-3)));
        // Struct members take their defaults too.
        assert_eq!(pts[1].get("y"), Some(&Value::I64(-1)));
        assert_eq!(v.get("c"), Some(&Value::I64(2)));
        assert_eq!(v.get("f"), Some(&Value::I64(5)));
        assert_eq!(
            v.get("a"),
            Some(&Value::Struct(vec![("v4".into(), Value::U32(0x0102_0304))]))
        );
        assert_eq!(v.get("mac"), Some(&Value::Bytes(vec![10, 11, 12, 0, 0, 0])));
        assert_eq!(v.get("raw"), Some(&Value::Bytes(vec![1, 2, 3, 4])));
        assert_eq!(
            v.get("list"),
            Some(&Value::Array(vec![Value::U16(7), Value::U16(8)]))
        );
        assert_eq!(v.get("ratio"), Some(&Value::F64(-2.5)));
        assert_eq!(v.get("delta"), Some(&Value::I8(-1)));
        assert_eq!(v.get("s"), Some(&Value::String("hi there".into())));

        // It encodes, counts included, and decodes back to the same values.
        let info = MsgInfo {
            id: 9,
            name_crc: "m_0".into(),
            def: def.clone(),
            module: "t".into(),
            client_index_offset: Some(2),
            context_offset: Some(6),
            reply: crate::api::ReplyKind::None,
            is_answer: false,
        };
        let bytes = encode_request(&s, &info, &v, 1, 2).unwrap();
        let back = vlibapi::value::decode_message(&s, &def, &bytes).unwrap();
        assert_eq!(back.get("count"), Some(&Value::U32(2)));
        assert_eq!(back.get("h").unwrap().get("n"), Some(&Value::U8(2)));
        assert_eq!(back.get("c"), Some(&Value::U8(2)));
        assert_eq!(
            back.get("a"),
            Some(&Value::Bytes(vec![
                1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]))
        );

        // Unions also take raw bytes; enums numbers; quoted strings fill byte arrays.
        let v = parse_message_args(&s, &def, &mut Input::new("a 0xff c 1 raw \"ab\"")).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Bytes(vec![0xff])));
        assert_eq!(v.get("c"), Some(&Value::I64(1)));
        assert_eq!(v.get("raw"), Some(&Value::Bytes(vec![b'a', b'b', 0, 0])));
    }

    #[test]
    fn nested_errors() {
        let (s, def) = nested();
        let err = |line: &str| parse_message_args(&s, &def, &mut Input::new(line)).unwrap_err();
        let e = err("h { pts [ { x 1 z 2 } ] }");
        assert_eq!(e.error.expected, "a field of pt");
        assert_eq!(e.error.column, 17);
        let e = err("h { pts [ { x 1 } ]");
        assert!(e.error.to_string().contains("found end of input"), "{e}");
        let e = err("list [1 2]");
        assert_eq!(
            e.hint.as_deref(),
            Some("braces and brackets are words of their own: `[ 1 2 ]`, `{ a 1 }`")
        );
        let e = err("c green");
        assert_eq!(e.hint.as_deref(), Some("values: COLOR_RED, COLOR_BLUE"));
        let e = err("c 300");
        assert_eq!(e.error.column, 3);
        let e = err("f FL_A|FL_C");
        assert_eq!(e.hint.as_deref(), Some("flags: FL_A, FL_B"));
        let e = err("raw [ 1 2 3 ]");
        assert!(e.error.to_string().contains("exactly 4 elements"), "{e}");
        let e = err("raw 0x0102030405");
        assert!(e.error.to_string().contains("at most 4 bytes"), "{e}");
        let e = err("mac 0x123");
        assert!(e.error.to_string().contains("hex digits"), "{e}");
        let e = err("a { v4 1 v6 0x01 }");
        assert!(e.error.to_string().contains("exactly one member"), "{e}");
        let e = err("count 2");
        assert_eq!(
            e.hint.as_deref(),
            Some("`count` is the length of `list` and follows it")
        );
    }

    #[test]
    fn help_describes_fields() {
        let (s, def) = nested();
        let mut lines = Vec::new();
        describe_fields(&s, &def.fields, true, 2, &mut lines);
        let text = lines.join("\n");
        assert!(text.contains("h      struct holder"), "{text}");
        assert!(text.contains("pts  struct pt[n]"), "{text}");
        assert!(text.contains("y  i16  (default -1)"), "{text}");
        assert!(text.contains("c      enum color"), "{text}");
        assert!(text.contains("COLOR_RED=1 COLOR_BLUE=2"), "{text}");
        assert!(text.contains("mac    mac = u8[6]"), "{text}");
        assert!(text.contains("list   u16[count]"), "{text}");
        assert!(!text.contains("context"), "{text}");
        assert!(!text.contains("count  "), "{text}");
    }
}
