//! A small JSON reader and writer, enough for VPP's `.api.json` documents.
//!
//! Core crates may not depend on serde_json, so this module carries its own. The parser is strict
//! RFC 8259 JSON, never panics, reports errors with a byte offset, line and column, and refuses
//! documents nested deeper than [`MAX_DEPTH`]. Objects keep their keys in document order (VPP's
//! files are ordered, and so is our output), and duplicate keys are kept as they came; lookups
//! return the first.
//!
//! This file is also compiled into `build.rs` (through `#[path]`), so it uses nothing but `std`.

use std::fmt;

/// Deepest nesting of arrays and objects the parser accepts.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, with its members in document order.
    Object(Vec<(String, Json)>),
}

/// A JSON number, kept as an integer when it was written as one and fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// Anything with a fraction or exponent, or an integer out of the 64-bit ranges.
    Float(f64),
}

impl Number {
    /// The value as a `u64`, when it is a non-negative integer.
    pub fn as_u64(self) -> Option<u64> {
        match self {
            Number::UInt(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an `i64`, when it is an integer in range.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::UInt(v) => i64::try_from(v).ok(),
            Number::Int(v) => Some(v),
            Number::Float(_) => None,
        }
    }

    /// The value as an `f64` (integers converted, possibly rounding).
    pub fn as_f64(self) -> f64 {
        match self {
            Number::UInt(v) => v as f64,
            Number::Int(v) => v as f64,
            Number::Float(v) => v,
        }
    }
}

impl Json {
    /// The member `key` of an object (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<Number> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value as a `u64`, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number().and_then(Number::as_u64)
    }

    /// Writes compact JSON (no whitespace) to `out`.
    pub fn write_compact(&self, out: &mut String) {
        write_value(self, out, None, 0);
    }

    /// Compact JSON text.
    pub fn to_compact(&self) -> String {
        let mut s = String::new();
        self.write_compact(&mut s);
        s
    }

    /// JSON text indented by `indent` spaces per level, one member or element per line.
    pub fn to_pretty(&self, indent: usize) -> String {
        let mut s = String::new();
        write_value(self, &mut s, Some(indent), 0);
        s.push('\n');
        s
    }
}

/// Where and why parsing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonParseError {
    /// What went wrong.
    pub kind: JsonParseErrorKind,
    /// Byte offset of the problem.
    pub offset: usize,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in characters) of the problem.
    pub column: usize,
}

/// The reasons a JSON text is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonParseErrorKind {
    /// The text ended inside a value.
    UnexpectedEnd,
    /// A character that cannot start or continue a value here.
    UnexpectedChar(char),
    /// A malformed number.
    BadNumber,
    /// A malformed escape sequence or `\u` code point.
    BadEscape,
    /// A raw control character inside a string.
    ControlCharInString,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Non-whitespace text after the value.
    TrailingCharacters,
}

impl fmt::Display for JsonParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            JsonParseErrorKind::UnexpectedEnd => "unexpected end of input".to_owned(),
            JsonParseErrorKind::UnexpectedChar(c) => format!("unexpected character {c:?}"),
            JsonParseErrorKind::BadNumber => "malformed number".to_owned(),
            JsonParseErrorKind::BadEscape => "malformed escape sequence".to_owned(),
            JsonParseErrorKind::ControlCharInString => "control character in string".to_owned(),
            JsonParseErrorKind::TooDeep => format!("nesting deeper than {MAX_DEPTH}"),
            JsonParseErrorKind::TrailingCharacters => "trailing characters after value".to_owned(),
        };
        write!(
            f,
            "json: {what} at line {}, column {} (byte {})",
            self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for JsonParseError {}

/// Parses one JSON value; only whitespace may surround it.
pub fn parse(text: &str) -> Result<Json, JsonParseError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error(JsonParseErrorKind::TrailingCharacters));
    }
    Ok(v)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, kind: JsonParseErrorKind) -> JsonParseError {
        let offset = self.pos.min(self.bytes.len());
        // The offset may sit inside a multi-byte character; count whole characters before it.
        let mut start = offset;
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        JsonParseError {
            kind,
            offset,
            line,
            column,
        }
    }

    fn unexpected(&self) -> JsonParseError {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(c) => self.error(JsonParseErrorKind::UnexpectedChar(c)),
            None => self.error(JsonParseErrorKind::UnexpectedEnd),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, lit: &str, v: Json) -> Result<Json, JsonParseError> {
        for &b in lit.as_bytes() {
            if self.peek() != Some(b) {
                return Err(self.unexpected());
            }
            self.pos += 1;
        }
        Ok(v)
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonParseError> {
        match self.peek() {
            None => Err(self.error(JsonParseErrorKind::UnexpectedEnd)),
            Some(b'n') => self.expect_literal("null", Json::Null),
            Some(b't') => self.expect_literal("true", Json::Bool(true)),
            Some(b'f') => self.expect_literal("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Json::Number),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(JsonParseErrorKind::TooDeep));
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.skip_ws();
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(JsonParseErrorKind::TooDeep));
                }
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.skip_ws();
                    if self.peek() != Some(b'"') {
                        return Err(self.unexpected());
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Err(self.unexpected());
                    }
                    self.pos += 1;
                    self.skip_ws();
                    let v = self.value(depth + 1)?;
                    members.push((key, v));
                    self.skip_ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            }
            Some(_) => Err(self.unexpected()),
        }
    }

    fn number(&mut self) -> Result<Number, JsonParseError> {
        let start = self.pos;
        let bad = |p: &Self| p.error(JsonParseErrorKind::BadNumber);
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(bad(self)),
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(self));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            is_float = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(bad(self));
            }
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
        }
        let s = &self.text[start..self.pos];
        if !is_float {
            if let Ok(v) = s.parse::<u64>() {
                return Ok(Number::UInt(v));
            }
            if let Ok(v) = s.parse::<i64>() {
                return Ok(Number::Int(v));
            }
        }
        s.parse::<f64>().map(Number::Float).map_err(|_| bad(self))
    }

    fn hex4(&mut self) -> Result<u32, JsonParseError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.error(JsonParseErrorKind::BadEscape)),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonParseError> {
        // The caller saw the opening quote.
        self.pos += 1;
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Quote, backslash and control bytes are ASCII, so both ends are char boundaries.
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                None => return Err(self.error(JsonParseErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.peek() != Some(b'\\')
                                    || self.bytes.get(self.pos + 1) != Some(&b'u')
                                {
                                    return Err(self.error(JsonParseErrorKind::BadEscape));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error(JsonParseErrorKind::BadEscape));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let c = char::from_u32(cp)
                                .ok_or_else(|| self.error(JsonParseErrorKind::BadEscape))?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error(JsonParseErrorKind::BadEscape)),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.error(JsonParseErrorKind::ControlCharInString)),
            }
        }
    }
}

/// Appends `s` as a JSON string literal.
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(n: Number, out: &mut String) {
    use std::fmt::Write as _;
    match n {
        Number::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        Number::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Number::Float(v) if v.is_finite() => {
            // Rust prints the shortest text that reads back to the same f64, and always in a
            // form JSON accepts (no leading '+', no bare '.').
            let _ = write!(out, "{v}");
        }
        Number::Float(_) => out.push_str("null"),
    }
}

fn newline(out: &mut String, indent: Option<usize>, level: usize) {
    if let Some(n) = indent {
        out.push('\n');
        for _ in 0..n * level {
            out.push(' ');
        }
    }
}

fn write_value(v: &Json, out: &mut String, indent: Option<usize>, level: usize) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => write_number(*n, out),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, level + 1);
                write_value(item, out, indent, level + 1);
            }
            if !items.is_empty() {
                newline(out, indent, level);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, level + 1);
                write_string(k, out);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                write_value(item, out, indent, level + 1);
            }
            if !members.is_empty() {
                newline(out, indent, level);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_value() {
        let v = parse(
            r#" {"a": [1, -2, 3.5, 1e3, true, false, null, "x\n\u00e9\ud83d\ude00"], "b": {}} "#,
        )
        .unwrap();
        let a = v.get("a").unwrap().as_array().unwrap();
        assert_eq!(a[0], Json::Number(Number::UInt(1)));
        assert_eq!(a[1], Json::Number(Number::Int(-2)));
        assert_eq!(a[2], Json::Number(Number::Float(3.5)));
        assert_eq!(a[3], Json::Number(Number::Float(1000.0)));
        assert_eq!(a[4], Json::Bool(true));
        assert_eq!(a[6], Json::Null);
        assert_eq!(a[7].as_str(), Some("x\n\u{e9}\u{1F600}"));
        assert_eq!(v.get("b"), Some(&Json::Object(vec![])));
        assert_eq!(v.get("c"), None);
    }

    #[test]
    fn big_integers_fall_back_to_float() {
        assert_eq!(
            parse("18446744073709551615").unwrap(),
            Json::Number(Number::UInt(u64::MAX))
        );
        assert_eq!(
            parse("-9223372036854775808").unwrap(),
            Json::Number(Number::Int(i64::MIN))
        );
        assert!(matches!(
            parse("18446744073709551616").unwrap(),
            Json::Number(Number::Float(_))
        ));
    }

    #[test]
    fn errors_carry_position() {
        let e = parse("{\n  \"a\": [1,,2]\n}").unwrap_err();
        assert_eq!(e.kind, JsonParseErrorKind::UnexpectedChar(','));
        assert_eq!((e.line, e.column), (2, 11));
        assert_eq!(
            e.to_string(),
            "json: unexpected character ',' at line 2, column 11 (byte 12)"
        );
        for (text, kind) in [
            ("", JsonParseErrorKind::UnexpectedEnd),
            ("[1", JsonParseErrorKind::UnexpectedEnd),
            ("01", JsonParseErrorKind::TrailingCharacters),
            ("1.", JsonParseErrorKind::BadNumber),
            ("-", JsonParseErrorKind::BadNumber),
            ("1e+", JsonParseErrorKind::BadNumber),
            ("\"\\x\"", JsonParseErrorKind::BadEscape),
            ("\"\\ud800\"", JsonParseErrorKind::BadEscape),
            ("\"\\udc00\"", JsonParseErrorKind::BadEscape),
            ("\"a\u{1}\"", JsonParseErrorKind::ControlCharInString),
            ("\"abc", JsonParseErrorKind::UnexpectedEnd),
            ("nul", JsonParseErrorKind::UnexpectedEnd),
            ("[1] x", JsonParseErrorKind::TrailingCharacters),
            ("{1:2}", JsonParseErrorKind::UnexpectedChar('1')),
            ("{\"a\" 2}", JsonParseErrorKind::UnexpectedChar('2')),
            ("é", JsonParseErrorKind::UnexpectedChar('é')),
        ] {
            assert_eq!(parse(text).map_err(|e| e.kind), Err(kind), "{text:?}");
        }
    }

    #[test]
    fn depth_is_limited() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep).unwrap_err().kind, JsonParseErrorKind::TooDeep);
        // Far deeper than the stack could take if the limit were missing.
        let very_deep = "{\"a\":".repeat(1_000_000);
        assert_eq!(
            parse(&very_deep).unwrap_err().kind,
            JsonParseErrorKind::TooDeep
        );
    }

    #[test]
    fn writer_round_trips() {
        let text = r#"{"k":["s\"\\\n\u0001",1,-1,0.25,true,null,{}],"e":[]}"#;
        let v = parse(text).unwrap();
        assert_eq!(v.to_compact(), text);
        assert_eq!(parse(&v.to_pretty(4)).unwrap(), v);
        assert_eq!(
            Json::Array(vec![Json::Number(Number::UInt(1))]).to_pretty(2),
            "[\n  1\n]\n"
        );
    }

    #[test]
    fn never_panics_on_prefixes_of_valid_text() {
        let text = r#"{"a": [1, -2.5e-3, "\u00e9x\ud83d\ude00", {"b": null}], "c": true}"#;
        for end in 0..=text.len() {
            if let Some(prefix) = text.get(..end) {
                let r = parse(prefix);
                assert_eq!(r.is_ok(), end == text.len(), "{prefix:?}");
            }
        }
    }
}
