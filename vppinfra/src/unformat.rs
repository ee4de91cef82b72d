//! A cursor over command text in VPP `unformat` style: words, keywords, numbers, sizes, strings.
//!
//! [`Input`] walks a `&str`. Two rules hold for every token parser:
//!
//! - it skips leading whitespace first, and
//! - on failure it leaves the position where it was, so the caller can try something else.
//!
//! Callers combine alternatives with [`Input::keyword`] (which only consumes on a match), with
//! [`Input::checkpoint`] / [`Input::rewind`], or with [`Input::attempt`]. Failures are
//! [`ParseError`]s that carry the byte position, what was expected and what was found, and can
//! render the input line with a caret under the problem.
//!
//! Tokens end at whitespace: `123abc` is not the number `123` followed by `abc` but a malformed
//! number. Numbers accept decimal and `0x` hex, with overflow detected for every width.
//!
//! ```
//! use vppinfra::unformat::Input;
//! let mut input = Input::new("set interface mtu 9000 sw_if_index 0x1f");
//! assert!(input.keyword("set") && input.keyword("interface"));
//! assert!(!input.keyword("state"));
//! assert!(input.keyword("mtu"));
//! assert_eq!(input.u16().unwrap(), 9000);
//! assert_eq!(input.keyed("sw_if_index", |i| i.u32()).unwrap(), Some(31));
//! assert!(input.end().is_ok());
//!
//! let mut bad = Input::new("mtu 9000000");
//! assert!(bad.keyword("mtu"));
//! let err = bad.u16().unwrap_err();
//! assert_eq!(err.to_string(), "expected an unsigned 16-bit number at column 5, found \"9000000\" (out of range)");
//! assert_eq!(err.render(bad.text()), "mtu 9000000\n    ^");
//! ```
//!
//! # References
//! VPP `src/vppinfra/format.h` and `unformat.c` (`unformat_input_t`, `unformat_skip_white_space`,
//! `unformat_check_input`, `unformat_peek_input`, `unformat_line`), `std-formats.c`
//! (`unformat_memory_size`).

use std::borrow::Cow;
use std::fmt;

/// What kind of problem a [`ParseError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The input does not have the expected shape (or ended too early).
    Mismatch,
    /// A well-formed number that does not fit the requested type.
    Overflow,
    /// A backslash escape that is not recognised.
    BadEscape,
    /// A quoted string without its closing quote.
    Unterminated,
}

/// A parse failure: where, what was expected, and what was there instead.
#[doc(alias = "format_unformat_error")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseError {
    /// Byte offset into the input.
    pub pos: usize,
    /// 1-based line of `pos`.
    pub line: usize,
    /// 1-based column of `pos`, in characters.
    pub column: usize,
    /// What the parser wanted, as a phrase: "a number", "keyword \"up\"".
    pub expected: Cow<'static, str>,
    /// The offending text (a token, shortened if long), `None` at the end of input.
    pub found: Option<String>,
    /// The kind of problem.
    pub kind: ParseErrorKind,
}

/// Longest `found` snippet kept in an error, in characters.
const MAX_FOUND_CHARS: usize = 40;

impl ParseError {
    fn new(
        text: &str,
        pos: usize,
        expected: impl Into<Cow<'static, str>>,
        found: Option<String>,
        kind: ParseErrorKind,
    ) -> Self {
        let pos = floor_char_boundary(text, pos);
        let before = &text[..pos];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self {
            pos,
            line,
            column,
            expected: expected.into(),
            found,
            kind,
        }
    }

    /// The line of `text` holding the error, then a caret under the error's column.
    ///
    /// `text` should be the input the error came from; any other text is clamped rather than
    /// causing a panic. Control characters (tabs included) print as spaces, so the caret lines up
    /// and hostile input cannot send terminal escape sequences.
    pub fn render(&self, text: &str) -> String {
        let pos = floor_char_boundary(text, self.pos);
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line: String = text[line_start..line_end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let column = text[line_start..pos].chars().count();
        format!("{line}\n{:column$}^", "")
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {} at ", self.expected)?;
        if self.line > 1 {
            write!(f, "line {}, ", self.line)?;
        }
        write!(f, "column {}, found ", self.column)?;
        match &self.found {
            Some(found) => write!(f, "{found:?}")?,
            None => f.write_str("end of input")?,
        }
        match self.kind {
            ParseErrorKind::Mismatch => Ok(()),
            ParseErrorKind::Overflow => f.write_str(" (out of range)"),
            ParseErrorKind::BadEscape => f.write_str(" (invalid escape)"),
            ParseErrorKind::Unterminated => f.write_str(" (unterminated quote)"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The largest char boundary of `text` at or before `pos` (clamped to the text).
fn floor_char_boundary(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// A saved position of an [`Input`], for [`Input::rewind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Checkpoint(usize);

/// Why a numeric token did not parse.
enum NumberError {
    Invalid,
    Overflow,
}

/// A cursor over input text.
#[doc(alias = "unformat_input_t")]
#[doc(alias = "unformat_init_string")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    /// The whole input.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The current byte position.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The input not yet consumed.
    pub fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// Saves the current position.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint(self.pos)
    }

    /// Returns to a saved position. A checkpoint from another input is clamped to this one.
    pub fn rewind(&mut self, checkpoint: Checkpoint) {
        self.pos = floor_char_boundary(self.text, checkpoint.0);
    }

    /// Runs `parse`, restoring the position if it fails; for trying alternatives.
    pub fn attempt<T, E>(&mut self, parse: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        let saved = self.checkpoint();
        let result = parse(self);
        if result.is_err() {
            self.rewind(saved);
        }
        result
    }

    /// Skips whitespace (including newlines) at the cursor.
    #[doc(alias = "unformat_skip_white_space")]
    pub fn skip_whitespace(&mut self) {
        self.pos = self.skip_ws_from(self.pos);
    }

    /// True when nothing but whitespace remains. Does not move the cursor.
    #[doc(alias = "unformat_is_eof")]
    #[doc(alias = "unformat_check_input")]
    pub fn eof(&self) -> bool {
        self.skip_ws_from(self.pos) == self.text.len()
    }

    /// The next character, whitespace included, without consuming it.
    #[doc(alias = "unformat_peek_input")]
    pub fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Consumes and returns the next character, whitespace included.
    #[doc(alias = "unformat_get_input")]
    pub fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// The next whitespace-delimited token, or `None` at the end of input.
    pub fn word(&mut self) -> Option<&'a str> {
        let start = self.skip_ws_from(self.pos);
        let end = self.token_end(start);
        if start == end {
            return None;
        }
        self.pos = end;
        Some(&self.text[start..end])
    }

    /// The next token, or an error saying a word was expected.
    pub fn expect_word(&mut self) -> Result<&'a str, ParseError> {
        self.word().ok_or_else(|| self.error("a word"))
    }

    /// The longest non-empty run of characters satisfying `pred`, after whitespace.
    #[doc(alias = "unformat_token")]
    pub fn take_while(&mut self, pred: impl Fn(char) -> bool) -> Option<&'a str> {
        let start = self.skip_ws_from(self.pos);
        let rest = &self.text[start..];
        let len = rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
        if len == 0 {
            return None;
        }
        self.pos = start + len;
        Some(&rest[..len])
    }

    /// Consumes `keyword` if the next token is exactly it (case-sensitive, a whole word).
    /// Returns whether it did; nothing is consumed otherwise.
    pub fn keyword(&mut self, keyword: &str) -> bool {
        let start = self.skip_ws_from(self.pos);
        if keyword.is_empty() || self.token_end(start) != start + keyword.len() {
            return false;
        }
        if !self.text[start..].starts_with(keyword) {
            return false;
        }
        self.pos = start + keyword.len();
        true
    }

    /// Like [`Input::keyword`], but a mismatch is an error naming the keyword.
    pub fn expect_keyword(&mut self, keyword: &str) -> Result<(), ParseError> {
        if self.keyword(keyword) {
            Ok(())
        } else {
            Err(self.error(format!("keyword {keyword:?}")))
        }
    }

    /// An unsigned 8-bit number (decimal or `0x` hex).
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        self.unsigned("an unsigned 8-bit number")
    }

    /// An unsigned 16-bit number (decimal or `0x` hex).
    pub fn u16(&mut self) -> Result<u16, ParseError> {
        self.unsigned("an unsigned 16-bit number")
    }

    /// An unsigned 32-bit number (decimal or `0x` hex).
    pub fn u32(&mut self) -> Result<u32, ParseError> {
        self.unsigned("an unsigned 32-bit number")
    }

    /// An unsigned 64-bit number (decimal or `0x` hex).
    pub fn u64(&mut self) -> Result<u64, ParseError> {
        self.unsigned("an unsigned 64-bit number")
    }

    /// An unsigned number that fits `usize` (decimal or `0x` hex).
    pub fn usize(&mut self) -> Result<usize, ParseError> {
        self.unsigned("an unsigned number")
    }

    /// A signed 8-bit number (optional sign, decimal or `0x` hex).
    pub fn i8(&mut self) -> Result<i8, ParseError> {
        self.signed("a signed 8-bit number")
    }

    /// A signed 16-bit number (optional sign, decimal or `0x` hex).
    pub fn i16(&mut self) -> Result<i16, ParseError> {
        self.signed("a signed 16-bit number")
    }

    /// A signed 32-bit number (optional sign, decimal or `0x` hex).
    pub fn i32(&mut self) -> Result<i32, ParseError> {
        self.signed("a signed 32-bit number")
    }

    /// A signed 64-bit number (optional sign, decimal or `0x` hex).
    pub fn i64(&mut self) -> Result<i64, ParseError> {
        self.signed("a signed 64-bit number")
    }

    /// A hexadecimal number with or without a `0x` prefix (`1f`, `0x1F`).
    pub fn hex_u64(&mut self) -> Result<u64, ParseError> {
        self.parse_token("a hex number", |tok| {
            let digits = strip_hex_prefix(tok).unwrap_or(tok);
            parse_digits(digits, 16)
        })
    }

    /// A finite decimal floating-point number (`1`, `-2.5`, `1e-3`).
    pub fn f64(&mut self) -> Result<f64, ParseError> {
        self.parse_token("a decimal number", |tok| {
            let shape_ok = tok.bytes().any(|b| b.is_ascii_digit())
                && tok
                    .bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
            if !shape_ok {
                return Err(NumberError::Invalid);
            }
            match tok.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                Ok(_) => Err(NumberError::Overflow),
                Err(_) => Err(NumberError::Invalid),
            }
        })
    }

    /// A boolean word, case-insensitive: `true`/`false`, `on`/`off`, `enable`/`disable`,
    /// `yes`/`no`.
    pub fn bool(&mut self) -> Result<bool, ParseError> {
        self.parse_token(
            "a boolean (true/false, on/off, enable/disable, yes/no)",
            |tok| match tok.to_ascii_lowercase().as_str() {
                "true" | "on" | "enable" | "yes" => Ok(true),
                "false" | "off" | "disable" | "no" => Ok(false),
                _ => Err(NumberError::Invalid),
            },
        )
    }

    /// A byte count with an optional binary unit: `512`, `0x1000`, `64k`, `64KB`, `64KiB`,
    /// `1.5M`, `2G`, and `T`, `P`, `E` (units are powers of 1024, case-insensitive).
    ///
    /// A fraction needs a unit and is rounded down to whole bytes (`1.5k` is 1536); fraction
    /// digits beyond the 18th are ignored. Results above `u64::MAX` are overflow errors.
    #[doc(alias = "unformat_memory_size")]
    pub fn memory_size(&mut self) -> Result<u64, ParseError> {
        self.parse_token("a memory size (e.g. 512, 64k, 1.5M, 2G)", parse_memory_size)
    }

    /// A double-quoted string with backslash escapes, returned unescaped.
    ///
    /// Escapes: `\"`, `\\`, `\'`, `\n`, `\t`, `\r`, `\0` and `\xHH` (up to `\x7f`). An unknown
    /// escape is an error at its backslash; a missing closing quote is an error at the opening
    /// one.
    pub fn quoted_string(&mut self) -> Result<String, ParseError> {
        let start = self.skip_ws_from(self.pos);
        let rest = &self.text[start..];
        if !rest.starts_with('"') {
            return Err(self.error_at(start, "a quoted string", ParseErrorKind::Mismatch));
        }
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, escaped)) = chars.next() else {
                        break;
                    };
                    let unescaped = match escaped {
                        '"' => Some('"'),
                        '\\' => Some('\\'),
                        '\'' => Some('\''),
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        '0' => Some('\0'),
                        'x' => {
                            let hi = chars.next().and_then(|(_, c)| c.to_digit(16));
                            let lo = chars.next().and_then(|(_, c)| c.to_digit(16));
                            match (hi, lo) {
                                (Some(hi), Some(lo)) if hi < 8 => char::from_u32(hi * 16 + lo),
                                _ => None,
                            }
                        }
                        _ => None,
                    };
                    match unescaped {
                        Some(u) => out.push(u),
                        None => {
                            let pos = start + i;
                            let found: String = self.text[pos..].chars().take(4).collect();
                            return Err(ParseError::new(
                                self.text,
                                pos,
                                "an escape (\\\" \\\\ \\' \\n \\t \\r \\0 \\xHH)",
                                Some(found),
                                ParseErrorKind::BadEscape,
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
        Err(ParseError::new(
            self.text,
            start,
            "a closing '\"' for the string starting here",
            None,
            ParseErrorKind::Unterminated,
        ))
    }

    /// A quoted string (see [`Input::quoted_string`]) or else a bare word.
    pub fn string(&mut self) -> Result<String, ParseError> {
        let start = self.skip_ws_from(self.pos);
        if self.text[start..].starts_with('"') {
            return self.quoted_string();
        }
        match self.word() {
            Some(w) => Ok(w.to_owned()),
            None => Err(self.error("a string")),
        }
    }

    /// `key value`: if the next token is `key`, parses the value with `parse` and returns it;
    /// `Ok(None)` (nothing consumed) if the key is absent. If the key is present but the value
    /// does not parse, the error is returned and the key is not consumed either.
    ///
    /// ```
    /// # use vppinfra::unformat::Input;
    /// let mut i = Input::new("name \"my if\" mtu 1500");
    /// assert_eq!(i.keyed("mtu", |i| i.u16()).unwrap(), None);
    /// assert_eq!(i.keyed("name", |i| i.string()).unwrap().as_deref(), Some("my if"));
    /// assert_eq!(i.keyed("mtu", |i| i.u16()).unwrap(), Some(1500));
    /// ```
    pub fn keyed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Option<T>, ParseError> {
        let saved = self.checkpoint();
        if !self.keyword(key) {
            return Ok(None);
        }
        match parse(self) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                self.rewind(saved);
                Err(e)
            }
        }
    }

    /// The next `key value` pair: a word, then a string (quoted or bare). `Ok(None)` at the end
    /// of input; a key without a value is an error at the end of the key.
    pub fn pair(&mut self) -> Result<Option<(&'a str, String)>, ParseError> {
        let saved = self.checkpoint();
        let Some(key) = self.word() else {
            return Ok(None);
        };
        match self.string() {
            Ok(value) => Ok(Some((key, value))),
            Err(e) => {
                self.rewind(saved);
                Err(ParseError {
                    expected: format!("a value for {key:?}").into(),
                    ..e
                })
            }
        }
    }

    /// The rest of the current line, without leading blanks or trailing whitespace; consumes the
    /// newline. Empty at the end of input.
    #[doc(alias = "unformat_line")]
    pub fn rest_of_line(&mut self) -> &'a str {
        let rest = self.rest();
        let blanks = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let start = self.pos + blanks;
        let (end, next) = match self.text[start..].find('\n') {
            Some(i) => (start + i, start + i + 1),
            None => (self.text.len(), self.text.len()),
        };
        self.pos = next;
        self.text[start..end].trim_end()
    }

    /// Succeeds (consuming trailing whitespace) only if nothing but whitespace remains; the
    /// check that a command has no trailing junk.
    #[doc(alias = "unformat_eof")]
    pub fn end(&mut self) -> Result<(), ParseError> {
        if self.eof() {
            self.pos = self.text.len();
            Ok(())
        } else {
            Err(self.error("end of input"))
        }
    }

    /// An error at the next token saying `expected` was wanted; for callers' own parsers.
    pub fn error(&self, expected: impl Into<Cow<'static, str>>) -> ParseError {
        self.error_at(
            self.skip_ws_from(self.pos),
            expected,
            ParseErrorKind::Mismatch,
        )
    }

    fn error_at(
        &self,
        pos: usize,
        expected: impl Into<Cow<'static, str>>,
        kind: ParseErrorKind,
    ) -> ParseError {
        ParseError::new(self.text, pos, expected, self.found_at(pos), kind)
    }

    /// The token at `pos`, shortened for messages; `None` at the end of input.
    fn found_at(&self, pos: usize) -> Option<String> {
        let token = &self.text[pos..self.token_end(pos)];
        if pos == self.text.len() {
            return None;
        }
        if token.is_empty() {
            // Only reachable for a caller-chosen position on whitespace; show that character.
            return self.text[pos..].chars().next().map(String::from);
        }
        let mut shown: String = token.chars().take(MAX_FOUND_CHARS).collect();
        if shown.len() < token.len() {
            shown.push_str("...");
        }
        Some(shown)
    }

    fn skip_ws_from(&self, pos: usize) -> usize {
        let rest = &self.text[pos..];
        pos + (rest.len() - rest.trim_start().len())
    }

    fn token_end(&self, start: usize) -> usize {
        let rest = &self.text[start..];
        start + rest.find(char::is_whitespace).unwrap_or(rest.len())
    }

    /// Parses the next token with `parse`, consuming it only on success.
    fn parse_token<T>(
        &mut self,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Result<T, NumberError>,
    ) -> Result<T, ParseError> {
        let start = self.skip_ws_from(self.pos);
        let end = self.token_end(start);
        if start == end {
            return Err(self.error_at(start, expected, ParseErrorKind::Mismatch));
        }
        match parse(&self.text[start..end]) {
            Ok(v) => {
                self.pos = end;
                Ok(v)
            }
            Err(NumberError::Invalid) => {
                Err(self.error_at(start, expected, ParseErrorKind::Mismatch))
            }
            Err(NumberError::Overflow) => {
                Err(self.error_at(start, expected, ParseErrorKind::Overflow))
            }
        }
    }

    fn unsigned<T: TryFrom<u64>>(&mut self, expected: &'static str) -> Result<T, ParseError> {
        self.parse_token(expected, |tok| {
            let (negative, magnitude) = parse_signed_magnitude(tok)?;
            if negative && magnitude != 0 {
                return Err(NumberError::Overflow);
            }
            T::try_from(magnitude).map_err(|_| NumberError::Overflow)
        })
    }

    fn signed<T: TryFrom<i64>>(&mut self, expected: &'static str) -> Result<T, ParseError> {
        self.parse_token(expected, |tok| {
            let (negative, magnitude) = parse_signed_magnitude(tok)?;
            let value = if negative {
                0i64.checked_sub_unsigned(magnitude)
            } else {
                i64::try_from(magnitude).ok()
            };
            let value = value.ok_or(NumberError::Overflow)?;
            T::try_from(value).map_err(|_| NumberError::Overflow)
        })
    }
}

fn strip_hex_prefix(tok: &str) -> Option<&str> {
    tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X"))
}

/// Parses digits of `radix`; every character must be a digit, and there must be at least one.
fn parse_digits(digits: &str, radix: u32) -> Result<u64, NumberError> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumberError::Invalid);
    }
    digits.chars().try_fold(0u64, |acc, c| {
        acc.checked_mul(u64::from(radix))
            .and_then(|acc| acc.checked_add(u64::from(c.to_digit(radix).unwrap_or(0))))
            .ok_or(NumberError::Overflow)
    })
}

/// An optional sign, then decimal digits or `0x` hex digits.
fn parse_signed_magnitude(tok: &str) -> Result<(bool, u64), NumberError> {
    let (negative, body) = match tok.as_bytes().first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    let magnitude = match strip_hex_prefix(body) {
        Some(hex) => parse_digits(hex, 16)?,
        None => parse_digits(body, 10)?,
    };
    Ok((negative, magnitude))
}

fn parse_memory_size(tok: &str) -> Result<u64, NumberError> {
    if let Some(hex) = strip_hex_prefix(tok) {
        return parse_digits(hex, 16);
    }
    let number_len = tok
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tok.len());
    let (number, unit) = tok.split_at(number_len);
    let (int_digits, frac_digits) = match number.split_once('.') {
        Some((i, f)) if !f.is_empty() && !f.contains('.') => (i, f),
        Some(_) => return Err(NumberError::Invalid),
        None => (number, ""),
    };
    if int_digits.is_empty() {
        return Err(NumberError::Invalid);
    }
    let unit = unit.to_ascii_lowercase();
    let prefix = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let shift: u32 = match prefix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return Err(NumberError::Invalid),
    };
    // "ib" only makes sense after a unit letter ("64kib", not "64ib").
    if shift == 0 && unit.ends_with("ib") {
        return Err(NumberError::Invalid);
    }
    let whole = parse_digits(int_digits, 10)?;
    let mut total = u128::from(whole) << shift;
    if !frac_digits.is_empty() {
        if shift == 0 {
            // A fraction of a byte is a mistake, unless it is all zeros ("512.0").
            if frac_digits.bytes().all(|b| b == b'0') {
                return Ok(whole);
            }
            return Err(NumberError::Invalid);
        }
        let kept = &frac_digits[..frac_digits.len().min(18)];
        let numerator = u128::from(parse_digits(kept, 10)?);
        let denominator = 10u128.pow(kept.len() as u32);
        total += (numerator << shift) / denominator;
    }
    u64::try_from(total).map_err(|_| NumberError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of<T: fmt::Debug>(r: Result<T, ParseError>) -> ParseError {
        r.expect_err("expected a parse error")
    }

    #[test]
    fn words_keywords_and_whitespace() {
        let mut i = Input::new("  show  api\tring \n");
        assert_eq!(i.peek(), Some(' '));
        assert!(!i.keyword("sh"), "prefix of a word is not a keyword match");
        assert!(!i.keyword("showx"));
        assert!(!i.keyword(""));
        assert_eq!(i.pos(), 0, "failed keyword consumed nothing");
        assert!(i.keyword("show"));
        assert_eq!(i.word(), Some("api"));
        i.skip_whitespace();
        assert_eq!(i.peek(), Some('r'));
        assert_eq!(i.next_char(), Some('r'));
        assert_eq!(i.word(), Some("ing"));
        assert!(i.eof());
        assert_eq!(i.word(), None);
        assert!(i.end().is_ok());
        assert_eq!(i.pos(), i.text().len());
        assert_eq!(i.next_char(), None);
    }

    #[test]
    fn expect_keyword_and_word_report_position() {
        let mut i = Input::new("set state up");
        assert!(i.expect_keyword("set").is_ok());
        let e = err_of(i.expect_keyword("interface"));
        assert_eq!((e.pos, e.column), (4, 5));
        assert_eq!(e.expected, "keyword \"interface\"");
        assert_eq!(e.found.as_deref(), Some("state"));
        assert_eq!(i.pos(), 3);
        let mut empty = Input::new("   ");
        let e = err_of(empty.expect_word());
        assert_eq!(e.found, None);
        assert_eq!(
            e.to_string(),
            "expected a word at column 4, found end of input"
        );
    }

    #[test]
    fn decimal_and_hex_numbers() {
        let mut i = Input::new("0 255 0x1f 0XFF +7 18446744073709551615 -0");
        assert_eq!(i.u8().unwrap(), 0);
        assert_eq!(i.u8().unwrap(), 255);
        assert_eq!(i.u16().unwrap(), 31);
        assert_eq!(i.u32().unwrap(), 255);
        assert_eq!(i.usize().unwrap(), 7);
        assert_eq!(i.u64().unwrap(), u64::MAX);
        assert_eq!(i.u64().unwrap(), 0);
        assert!(i.eof());
    }

    #[test]
    fn unsigned_overflow_and_garbage() {
        let cases: &[(&str, ParseErrorKind)] = &[
            ("256", ParseErrorKind::Overflow),
            ("0x100", ParseErrorKind::Overflow),
            ("-1", ParseErrorKind::Overflow),
            ("", ParseErrorKind::Mismatch),
            ("abc", ParseErrorKind::Mismatch),
            ("0x", ParseErrorKind::Mismatch),
            ("0xg1", ParseErrorKind::Mismatch),
            ("12abc", ParseErrorKind::Mismatch),
            ("1_000", ParseErrorKind::Mismatch),
            ("--1", ParseErrorKind::Mismatch),
            ("+", ParseErrorKind::Mismatch),
        ];
        for &(text, kind) in cases {
            let mut i = Input::new(text);
            let e = err_of(i.u8());
            assert_eq!(e.kind, kind, "{text:?}");
            assert_eq!(e.pos, 0, "{text:?}");
            assert_eq!(i.pos(), 0, "{text:?}: failure must not consume");
        }
        let e = err_of(Input::new("x 18446744073709551616").attempt(|i| {
            i.expect_word()?;
            i.u64()
        }));
        assert_eq!((e.pos, e.kind), (2, ParseErrorKind::Overflow));
        assert_eq!(
            e.to_string(),
            "expected an unsigned 64-bit number at column 3, found \"18446744073709551616\" (out of range)"
        );
        assert_eq!(
            err_of(Input::new("0x1_0000_0000").u32()).kind,
            ParseErrorKind::Mismatch
        );
        assert_eq!(
            err_of(Input::new("0x100000000").u32()).kind,
            ParseErrorKind::Overflow
        );
        assert_eq!(
            err_of(Input::new("65536").u16()).kind,
            ParseErrorKind::Overflow
        );
    }

    #[test]
    fn signed_numbers_cover_their_full_range() {
        let mut i = Input::new(
            "-128 127 -32768 -2147483648 -9223372036854775808 9223372036854775807 -0x10 +5",
        );
        assert_eq!(i.i8().unwrap(), -128);
        assert_eq!(i.i8().unwrap(), 127);
        assert_eq!(i.i16().unwrap(), -32768);
        assert_eq!(i.i32().unwrap(), i32::MIN);
        assert_eq!(i.i64().unwrap(), i64::MIN);
        assert_eq!(i.i64().unwrap(), i64::MAX);
        assert_eq!(i.i32().unwrap(), -16);
        assert_eq!(i.i8().unwrap(), 5);
        let i8_of: fn(&str) -> ParseError = |t| err_of(Input::new(t).i8());
        let i64_of: fn(&str) -> ParseError = |t| err_of(Input::new(t).i64());
        for (text, parse, kind) in [
            ("-129", i8_of, ParseErrorKind::Overflow),
            ("128", i8_of, ParseErrorKind::Overflow),
            ("-9223372036854775809", i64_of, ParseErrorKind::Overflow),
            ("9223372036854775808", i64_of, ParseErrorKind::Overflow),
            ("99999999999999999999999", i64_of, ParseErrorKind::Overflow),
            ("-", i8_of, ParseErrorKind::Mismatch),
            ("1-", i8_of, ParseErrorKind::Mismatch),
            ("-x", i64_of, ParseErrorKind::Mismatch),
            ("", i64_of, ParseErrorKind::Mismatch),
        ] {
            assert_eq!(parse(text).kind, kind, "{text:?}");
        }
    }

    #[test]
    fn hex_without_prefix() {
        let mut i = Input::new("1f 0xDEADbeef ffffffffffffffff");
        assert_eq!(i.hex_u64().unwrap(), 0x1f);
        assert_eq!(i.hex_u64().unwrap(), 0xdead_beef);
        assert_eq!(i.hex_u64().unwrap(), u64::MAX);
        assert_eq!(
            err_of(Input::new("1_0000000000000000").hex_u64()).kind,
            ParseErrorKind::Mismatch
        );
        assert_eq!(
            err_of(Input::new("10000000000000000").hex_u64()).kind,
            ParseErrorKind::Overflow
        );
        assert_eq!(
            err_of(Input::new("0x").hex_u64()).kind,
            ParseErrorKind::Mismatch
        );
        assert_eq!(
            err_of(Input::new("xyz").hex_u64()).kind,
            ParseErrorKind::Mismatch
        );
    }

    #[test]
    fn floats() {
        let mut i = Input::new("1 -2.5 1e-3 .5 +3.");
        assert_eq!(i.f64().unwrap(), 1.0);
        assert_eq!(i.f64().unwrap(), -2.5);
        assert_eq!(i.f64().unwrap(), 1e-3);
        assert_eq!(i.f64().unwrap(), 0.5);
        assert_eq!(i.f64().unwrap(), 3.0);
        for (text, kind) in [
            ("inf", ParseErrorKind::Mismatch),
            ("NaN", ParseErrorKind::Mismatch),
            ("1e400", ParseErrorKind::Overflow),
            ("1..2", ParseErrorKind::Mismatch),
            ("e5", ParseErrorKind::Mismatch),
            ("", ParseErrorKind::Mismatch),
            ("0x10", ParseErrorKind::Mismatch),
        ] {
            assert_eq!(err_of(Input::new(text).f64()).kind, kind, "{text:?}");
        }
    }

    #[test]
    fn booleans() {
        let words = "true false on off enable disable yes no TRUE Off";
        let mut i = Input::new(words);
        let got: Vec<bool> = (0..10).map(|_| i.bool().unwrap()).collect();
        assert_eq!(
            got,
            [
                true, false, true, false, true, false, true, false, true, false
            ]
        );
        let e = err_of(Input::new("  maybe").bool());
        assert_eq!((e.pos, e.found.as_deref()), (2, Some("maybe")));
        assert!(err_of(Input::new("").bool()).found.is_none());
        assert!(err_of(Input::new("1").bool()).kind == ParseErrorKind::Mismatch);
    }

    #[test]
    fn memory_sizes() {
        let cases: &[(&str, u64)] = &[
            ("512", 512),
            ("0", 0),
            ("512b", 512),
            ("64k", 64 << 10),
            ("64K", 64 << 10),
            ("64kb", 64 << 10),
            ("64KiB", 64 << 10),
            ("64m", 64 << 20),
            ("2G", 2 << 30),
            ("1.5M", 3 << 19),
            ("1.5k", 1536),
            ("0.1k", 102),
            ("3T", 3 << 40),
            ("1p", 1 << 50),
            ("15E", 15 << 60),
            ("15.999999999999999999E", (16u128 * (1 << 60) - 2) as u64),
            ("0x1000", 4096),
            ("512.0", 512),
        ];
        for &(text, want) in cases {
            assert_eq!(Input::new(text).memory_size().unwrap(), want, "{text:?}");
        }
        for (text, kind) in [
            ("16E", ParseErrorKind::Overflow),
            ("18446744073709551616", ParseErrorKind::Overflow),
            ("99999999999999999999999k", ParseErrorKind::Overflow),
            ("1.5", ParseErrorKind::Mismatch),
            ("12q", ParseErrorKind::Mismatch),
            ("k", ParseErrorKind::Mismatch),
            (".5M", ParseErrorKind::Mismatch),
            ("1.M", ParseErrorKind::Mismatch),
            ("1.2.3M", ParseErrorKind::Mismatch),
            ("64ib", ParseErrorKind::Mismatch),
            ("0x", ParseErrorKind::Mismatch),
            ("-5k", ParseErrorKind::Mismatch),
            ("", ParseErrorKind::Mismatch),
        ] {
            let mut i = Input::new(text);
            let e = err_of(i.memory_size());
            assert_eq!(e.kind, kind, "{text:?}");
            assert_eq!(i.pos(), 0);
        }
    }

    #[test]
    fn memory_sizes_round_trip_through_format() {
        for n in [
            0u64,
            1,
            1023,
            1024,
            1536,
            64 << 10,
            3 << 19,
            2 << 30,
            5 << 40,
            7 << 60,
        ] {
            let text = crate::format::format_memory_size(n);
            assert_eq!(Input::new(&text).memory_size().unwrap(), n, "{text}");
        }
    }

    #[test]
    fn quoted_strings_and_escapes() {
        let mut i = Input::new(r#" "a \"b\" c" "tab\there\\" "\x41\n" "" "é""#);
        assert_eq!(i.quoted_string().unwrap(), "a \"b\" c");
        assert_eq!(i.quoted_string().unwrap(), "tab\there\\");
        assert_eq!(i.quoted_string().unwrap(), "A\n");
        assert_eq!(i.quoted_string().unwrap(), "");
        assert_eq!(i.quoted_string().unwrap(), "é");
        assert!(i.end().is_ok());
    }

    #[test]
    fn quoted_string_errors_point_at_the_problem() {
        let text = r#"name "ab\qc""#;
        let mut i = Input::new(text);
        assert!(i.keyword("name"));
        let e = err_of(i.quoted_string());
        assert_eq!(e.kind, ParseErrorKind::BadEscape);
        assert_eq!(e.pos, 8, "at the backslash");
        assert_eq!(e.found.as_deref(), Some("\\qc\""));
        assert_eq!(i.pos(), 4, "failure consumed nothing");

        let e = err_of(Input::new(r#"  "abc"#).quoted_string());
        assert_eq!((e.kind, e.pos), (ParseErrorKind::Unterminated, 2));
        assert!(
            e.to_string()
                .ends_with("found end of input (unterminated quote)"),
            "{e}"
        );

        let e = err_of(Input::new(r#""abc\"#).quoted_string());
        assert_eq!((e.kind, e.pos), (ParseErrorKind::Unterminated, 0));

        for (text, pos) in [
            (r#""\x4""#, 0),
            (r#""\xff""#, 0),
            (r#""\x""#, 0),
            (r#"x"\u""#, 1),
        ] {
            let mut i = Input::new(text);
            if text.starts_with('x') {
                assert_eq!(i.next_char(), Some('x'));
            }
            let e = err_of(i.quoted_string());
            assert_eq!(
                (e.kind, e.pos),
                (ParseErrorKind::BadEscape, pos + 1),
                "{text}"
            );
        }

        let e = err_of(Input::new("bare").quoted_string());
        assert_eq!((e.kind, e.pos), (ParseErrorKind::Mismatch, 0));
    }

    #[test]
    fn strings_quoted_or_bare() {
        let mut i = Input::new(r#"plain "two words""#);
        assert_eq!(i.string().unwrap(), "plain");
        assert_eq!(i.string().unwrap(), "two words");
        assert!(err_of(i.string()).found.is_none());
    }

    #[test]
    fn keyed_values_and_pairs() {
        let mut i = Input::new("mtu 9000 name \"x y\" bad");
        assert_eq!(i.keyed("name", |i| i.string()).unwrap(), None);
        assert_eq!(i.keyed("mtu", |i| i.u16()).unwrap(), Some(9000));
        assert_eq!(i.pair().unwrap(), Some(("name", "x y".to_owned())));
        let before = i.pos();
        let e = err_of(i.pair());
        assert_eq!(e.expected, "a value for \"bad\"");
        assert_eq!(e.pos, i.text().len());
        assert_eq!(i.pos(), before, "failed pair consumed nothing");
        let mut i = Input::new("mtu lots");
        let e = err_of(i.keyed("mtu", |i| i.u16()));
        assert_eq!(e.pos, 4);
        assert_eq!(i.pos(), 0, "key is not consumed when its value fails");
        assert_eq!(Input::new("  ").pair().unwrap(), None);
    }

    #[test]
    fn rest_of_line_consumes_the_newline() {
        let mut i = Input::new("echo   hello world  \r\nnext line\n\nlast");
        assert!(i.keyword("echo"));
        assert_eq!(i.rest_of_line(), "hello world");
        assert_eq!(i.rest_of_line(), "next line");
        assert_eq!(i.rest_of_line(), "");
        assert_eq!(i.rest_of_line(), "last");
        assert_eq!(i.rest_of_line(), "");
        assert!(i.eof());
    }

    #[test]
    fn checkpoint_rewind_and_attempt() {
        let mut i = Input::new("ip4 10.0.0.1");
        let cp = i.checkpoint();
        assert!(i.keyword("ip4"));
        assert!(i.u32().is_err());
        i.rewind(cp);
        assert_eq!(i.pos(), 0);
        // Try "ip4 <u32>" first, fall back to "ip4 <word>".
        let n = i.attempt(|i| {
            i.expect_keyword("ip4")?;
            i.u32()
        });
        assert!(n.is_err());
        assert_eq!(i.pos(), 0);
        let w = i.attempt(|i| {
            i.expect_keyword("ip4")?;
            i.expect_word()
        });
        assert_eq!(w.unwrap(), "10.0.0.1");
        // A foreign checkpoint is clamped, never a panic.
        let mut short = Input::new("é");
        short.rewind(Checkpoint(1));
        assert_eq!(short.pos(), 0);
        short.rewind(cp);
        assert_eq!(short.pos(), 0);
        short.rewind(Checkpoint(100));
        assert_eq!(short.pos(), 2);
    }

    #[test]
    fn take_while_reads_custom_tokens() {
        let mut i = Input::new("  GigabitEthernet0/8/0.100 rest");
        let name = i.take_while(|c| c.is_ascii_alphanumeric() || "/.".contains(c));
        assert_eq!(name, Some("GigabitEthernet0/8/0.100"));
        assert_eq!(i.take_while(|c| c.is_ascii_digit()), None);
        assert_eq!(i.word(), Some("rest"));
    }

    #[test]
    fn errors_render_with_a_caret() {
        let text = "set interface\n\tmtu 9x00 up";
        let mut i = Input::new(text);
        assert!(i.keyword("set") && i.keyword("interface") && i.keyword("mtu"));
        let e = err_of(i.u16());
        assert_eq!((e.pos, e.line, e.column), (19, 2, 6));
        assert_eq!(
            e.to_string(),
            "expected an unsigned 16-bit number at line 2, column 6, found \"9x00\""
        );
        assert_eq!(e.render(text), " mtu 9x00 up\n     ^");
        // Rendering against unrelated text clamps instead of panicking.
        assert_eq!(e.render("é"), "é\n ^");
        assert_eq!(e.render(""), "\n^");
    }

    #[test]
    fn found_is_shortened_and_escaped() {
        let long = "x".repeat(100);
        let e = err_of(Input::new(&long).u8());
        assert_eq!(e.found.as_deref().map(str::len), Some(MAX_FOUND_CHARS + 3));
        let e = err_of(Input::new("\u{1b}[31m").u8());
        assert_eq!(
            e.to_string(),
            "expected an unsigned 8-bit number at column 1, found \"\\u{1b}[31m\""
        );
        assert_eq!(e.render("\u{1b}[31m"), " [31m\n^");
    }

    /// A small deterministic generator, so the randomised test needs no extra dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    type Parser = fn(&mut Input<'_>) -> Result<(), ParseError>;

    fn parsers() -> Vec<(&'static str, Parser)> {
        vec![
            ("u8", |i| i.u8().map(drop)),
            ("u16", |i| i.u16().map(drop)),
            ("u32", |i| i.u32().map(drop)),
            ("u64", |i| i.u64().map(drop)),
            ("usize", |i| i.usize().map(drop)),
            ("i8", |i| i.i8().map(drop)),
            ("i16", |i| i.i16().map(drop)),
            ("i32", |i| i.i32().map(drop)),
            ("i64", |i| i.i64().map(drop)),
            ("hex", |i| i.hex_u64().map(drop)),
            ("f64", |i| i.f64().map(drop)),
            ("bool", |i| i.bool().map(drop)),
            ("memory_size", |i| i.memory_size().map(drop)),
            ("quoted", |i| i.quoted_string().map(drop)),
            ("string", |i| i.string().map(drop)),
            ("word", |i| i.expect_word().map(drop)),
            ("keyword", |i| i.expect_keyword("up")),
            ("keyed", |i| i.keyed("mtu", |i| i.u32()).map(drop)),
            ("pair", |i| i.pair().map(drop)),
            ("end", |i| i.end()),
            ("line", |i| {
                i.rest_of_line();
                Ok(())
            }),
            ("char", |i| {
                i.next_char();
                Ok(())
            }),
            ("take_while", |i| {
                i.take_while(|c| c.is_alphanumeric());
                Ok(())
            }),
        ]
    }

    fn check_invariants(text: &str, rng: &mut XorShift) {
        let parsers = parsers();
        // Every parser alone, from the start.
        for (name, parse) in &parsers {
            let mut i = Input::new(text);
            match parse(&mut i) {
                Ok(()) => assert!(i.pos() <= text.len() && text.is_char_boundary(i.pos())),
                Err(e) => {
                    let consumes_anyway = *name == "line" || *name == "char";
                    assert!(
                        consumes_anyway || i.pos() == 0,
                        "{name} consumed on error: {text:?}"
                    );
                    assert!(
                        e.pos <= text.len() && text.is_char_boundary(e.pos),
                        "{name}: {e:?}"
                    );
                    assert!(e.line >= 1 && e.column >= 1);
                    let _ = e.to_string();
                    let rendered = e.render(text);
                    assert!(rendered.ends_with('^'));
                }
            }
        }
        // A random chain of parsers over the same input, as a command parser would run them.
        let mut i = Input::new(text);
        for _ in 0..16 {
            let (_, parse) = parsers[rng.below(parsers.len())];
            let before = i.pos();
            let _ = parse(&mut i);
            assert!(i.pos() >= before && i.pos() <= text.len());
            assert!(text.is_char_boundary(i.pos()));
        }
    }

    #[test]
    fn random_input_never_panics() {
        const PIECES: &[&str] = &[
            "0",
            "1",
            "9",
            "0x",
            "0X",
            "f",
            "ff",
            "-",
            "+",
            ".",
            "e",
            "k",
            "M",
            "G",
            "E",
            "ib",
            "b",
            "\"",
            "\\",
            "\\x",
            "\\n",
            "\\q",
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "é",
            "中",
            "🦀",
            "up",
            "mtu",
            "true",
            "off",
            "18446744073709551615",
            "99999999999999999999",
            "\u{1b}",
            "\0",
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let n = rng.below(12);
            let text: String = (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect();
            check_invariants(&text, &mut rng);
        }
        for _ in 0..1_000 {
            let n = rng.below(24);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            check_invariants(&text, &mut rng);
        }
        check_invariants("", &mut rng);
    }
}
