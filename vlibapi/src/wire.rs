//! The static codec's runtime: the [`Message`] trait that generated messages implement, the
//! [`Wire`] trait of generated types, the bounds-checked [`Reader`], the string and count
//! helpers, and the two error types shared with the dynamic codec.
//!
//! Byte order: every multi-byte value is big-endian on the wire, except fields the schema marks
//! `host_order` (VPP's memclnt bootstrap pointers and handles), which are native-endian.
//!
//! Strings: `string x[N]` is N bytes, NUL padded; encoding refuses N or more bytes (vpp_papi
//! needs room for the NUL) and decoding refuses N bytes without a NUL. `string x[]` is a
//! big-endian u32 length and that many bytes, no NUL. Strings must be UTF-8.

use std::fmt;

/// A message type generated from a `.api.json` definition.
///
/// The message ID is not part of the value: the [`crate::table::MessageTable`] assigns it at run
/// time, and [`Message::encode`] takes it as an argument. [`Message::decode`] reads past the
/// ID without looking at it.
pub trait Message: Sized + Default + Clone + fmt::Debug + PartialEq + 'static {
    /// The message's name (`control_ping`).
    const NAME: &'static str;
    /// The message's CRC.
    const CRC: u32;
    /// `name_crc8hex`, the message-table key (`control_ping_51077d14`).
    const NAME_CRC: &'static str;
    /// Size of the fixed part, ID included (variable parts empty). Shorter input is rejected.
    const MIN_SIZE: usize;
    /// Byte offset of the `context` field, when the message has one at a fixed offset.
    const CONTEXT_OFFSET: Option<usize>;

    /// `name_crc8hex` (the same as [`Message::NAME_CRC`]).
    fn name_crc() -> &'static str {
        Self::NAME_CRC
    }

    /// Exact number of bytes [`Message::encode`] appends.
    fn encoded_len(&self) -> usize;

    /// Appends the message, starting with `msg_id`, to `out`. Count fields are written from the
    /// lengths of their arrays. On error `out` is left as it was.
    fn encode(&self, msg_id: u16, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Decodes a whole message (ID included, not checked). Trailing bytes are ignored, as VPP
    /// does. Never panics.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// The `context` field, if the message has one.
    fn context(&self) -> Option<u32> {
        None
    }
    /// Sets the `context` field, if the message has one.
    fn set_context(&mut self, _context: u32) {}
    /// The `client_index` field, if the message has one.
    fn client_index(&self) -> Option<u32> {
        None
    }
    /// Sets the `client_index` field, if the message has one.
    fn set_client_index(&mut self, _client_index: u32) {}
    /// The `retval` field, if the message has one.
    fn retval(&self) -> Option<i32> {
        None
    }
    /// Sets the `retval` field, if the message has one.
    fn set_retval(&mut self, _retval: i32) {}
}

/// Something that wants to see every message type of a generated module, by type (for generic
/// tests, tools and bulk registration). Generated modules call it from `visit_messages`.
pub trait MessageVisitor {
    /// Called once per message type, in ID order.
    fn visit<M: Message>(&mut self);
}

/// A generated type (struct, union, enum, enumflag) that can be put on and read off the wire.
pub trait Wire: Sized {
    /// Smallest encoded size.
    const MIN_SIZE: usize;
    /// Appends the value. On error, `out` may hold a partial value; [`Message::encode`] undoes it.
    fn put(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;
    /// Reads one value.
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Encoded size of this value.
    fn wire_len(&self) -> usize;
}

/// What is wrong with a string on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StringProblem {
    /// The length (or the fixed size) runs past the end of the message.
    Truncated,
    /// A fixed string has no NUL within its N bytes.
    NotTerminated,
    /// The bytes are not UTF-8.
    NotUtf8,
}

/// Why bytes could not be decoded as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the message's fixed part.
    TooShort {
        /// The fixed part's size.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A variable array (or what follows it) runs past the end of the message.
    BadLength {
        /// The field being read.
        field: String,
        /// Bytes it needs at least.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A string without room, without NUL, or not UTF-8.
    BadString {
        /// The field being read.
        field: String,
        /// What is wrong.
        problem: StringProblem,
    },
}

/// The class of a [`DecodeError`], for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// [`DecodeError::TooShort`].
    TooShort,
    /// [`DecodeError::BadLength`].
    BadLength,
    /// [`DecodeError::BadString`].
    BadString,
}

impl DecodeError {
    /// The error's class.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            DecodeError::TooShort { .. } => DecodeErrorKind::TooShort,
            DecodeError::BadLength { .. } => DecodeErrorKind::BadLength,
            DecodeError::BadString { .. } => DecodeErrorKind::BadString,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { need, have } => {
                write!(f, "message too short: {have} bytes, fixed part is {need}")
            }
            DecodeError::BadLength { field, need, have } => write!(
                f,
                "field `{field}` runs past the end: needs {need} bytes, {have} left"
            ),
            DecodeError::BadString { field, problem } => {
                let what = match problem {
                    StringProblem::Truncated => "runs past the end",
                    StringProblem::NotTerminated => "has no NUL terminator",
                    StringProblem::NotUtf8 => "is not UTF-8",
                };
                write!(f, "string `{field}` {what}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A fixed string of N bytes was given N or more bytes (no room for the NUL).
    StringTooLong {
        /// The field.
        field: String,
        /// Bytes given.
        len: usize,
        /// The most allowed (N - 1).
        max: usize,
    },
    /// An array is longer than its count field can say, or a variable string is over 4 GiB.
    TooMany {
        /// The field.
        field: String,
        /// Elements given.
        len: usize,
    },
    /// Two arrays share a count field but have different lengths.
    CountMismatch {
        /// The count field.
        field: String,
    },
    /// A dynamic value does not fit its schema type.
    TypeMismatch {
        /// The field.
        field: String,
        /// What the schema wants there.
        expected: String,
    },
    /// A dynamic value names a field the schema does not have.
    UnknownField {
        /// The field.
        field: String,
    },
    /// A dynamic fixed array has the wrong number of elements.
    WrongArrayLength {
        /// The field.
        field: String,
        /// Elements the schema wants.
        expected: usize,
        /// Elements given.
        got: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::StringTooLong { field, len, max } => {
                write!(f, "string `{field}` is {len} bytes, at most {max} fit")
            }
            EncodeError::TooMany { field, len } => {
                write!(
                    f,
                    "`{field}` has {len} elements, more than its length field can count"
                )
            }
            EncodeError::CountMismatch { field } => {
                write!(f, "arrays counted by `{field}` have different lengths")
            }
            EncodeError::TypeMismatch { field, expected } => {
                write!(f, "`{field}` must be {expected}")
            }
            EncodeError::UnknownField { field } => write!(f, "no field named `{field}`"),
            EncodeError::WrongArrayLength {
                field,
                expected,
                got,
            } => write!(f, "`{field}` needs {expected} elements, got {got}"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// A bounds-checked cursor over received bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[cold]
    fn short(&self, field: &str, need: usize) -> DecodeError {
        DecodeError::BadLength {
            field: field.to_owned(),
            need,
            have: self.remaining(),
        }
    }

    /// The next `N` bytes.
    #[inline]
    pub fn take<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        match self.buf.get(self.pos..self.pos + N) {
            Some(s) => {
                let mut a = [0u8; N];
                a.copy_from_slice(s);
                self.pos += N;
                Ok(a)
            }
            None => Err(self.short(field, N)),
        }
    }

    /// A view of the next `N` bytes.
    #[inline]
    pub fn array<const N: usize>(&mut self, field: &str) -> Result<&'a [u8; N], DecodeError> {
        match self
            .buf
            .get(self.pos..self.pos + N)
            .and_then(|s| <&[u8; N]>::try_from(s).ok())
        {
            Some(a) => {
                self.pos += N;
                Ok(a)
            }
            None => Err(self.short(field, N)),
        }
    }

    /// The next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.short(field, n)),
        }
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize, field: &str) -> Result<(), DecodeError> {
        self.bytes(n, field).map(|_| ())
    }

    /// Checks that `count` elements of at least `min_elem` bytes each can still follow, so a
    /// hostile count never makes us allocate. Zero-size elements count as one byte.
    #[inline]
    pub fn check_count(
        &self,
        count: usize,
        min_elem: usize,
        field: &str,
    ) -> Result<(), DecodeError> {
        let need = count.saturating_mul(min_elem.max(1));
        if need > self.remaining() {
            return Err(self.short(field, need));
        }
        Ok(())
    }

    /// `string x[n]`: n bytes holding a NUL-terminated UTF-8 string.
    pub fn fixed_string(&mut self, n: usize, field: &str) -> Result<String, DecodeError> {
        let bytes = self.bytes(n, field).map_err(|_| DecodeError::BadString {
            field: field.to_owned(),
            problem: StringProblem::Truncated,
        })?;
        fixed_string_from(bytes, field).map(str::to_owned)
    }

    /// `string x[]`: a u32 length and that many UTF-8 bytes.
    pub fn var_string(&mut self, field: &str) -> Result<String, DecodeError> {
        self.var_str(field).map(str::to_owned)
    }

    /// `string x[]` without copying.
    pub fn var_str(&mut self, field: &str) -> Result<&'a str, DecodeError> {
        let truncated = || DecodeError::BadString {
            field: field.to_owned(),
            problem: StringProblem::Truncated,
        };
        let len = u32::from_be_bytes(self.take::<4>(field).map_err(|_| truncated())?);
        let bytes = self.bytes(len as usize, field).map_err(|_| truncated())?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::BadString {
            field: field.to_owned(),
            problem: StringProblem::NotUtf8,
        })
    }
}

/// The string in a fixed string's bytes: up to the first NUL, which must exist.
pub fn fixed_string_from<'a>(bytes: &'a [u8], field: &str) -> Result<&'a str, DecodeError> {
    let Some(nul) = bytes.iter().position(|&b| b == 0) else {
        return Err(DecodeError::BadString {
            field: field.to_owned(),
            problem: StringProblem::NotTerminated,
        });
    };
    std::str::from_utf8(&bytes[..nul]).map_err(|_| DecodeError::BadString {
        field: field.to_owned(),
        problem: StringProblem::NotUtf8,
    })
}

/// Appends `string x[n]`: the bytes, then NULs up to n. Refuses n or more bytes.
#[inline]
pub fn put_fixed_string(
    out: &mut Vec<u8>,
    s: &str,
    n: usize,
    field: &str,
) -> Result<(), EncodeError> {
    if s.len() >= n {
        return Err(EncodeError::StringTooLong {
            field: field.to_owned(),
            len: s.len(),
            max: n.saturating_sub(1),
        });
    }
    out.extend_from_slice(s.as_bytes());
    out.resize(out.len() + (n - s.len()), 0);
    Ok(())
}

/// Appends `string x[]`: a big-endian u32 length, then the bytes.
#[inline]
pub fn put_var_string(out: &mut Vec<u8>, s: &str, field: &str) -> Result<(), EncodeError> {
    let len = u32::try_from(s.len()).map_err(|_| EncodeError::TooMany {
        field: field.to_owned(),
        len: s.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Converts an array length to its count field's type.
#[inline]
pub fn count<T: TryFrom<usize>>(len: usize, field: &str) -> Result<T, EncodeError> {
    T::try_from(len).map_err(|_| EncodeError::TooMany {
        field: field.to_owned(),
        len,
    })
}

/// Checks that every array counted by one field has the same length; returns it.
#[inline]
pub fn same_len(lens: &[usize], field: &str) -> Result<usize, EncodeError> {
    let first = lens.first().copied().unwrap_or(0);
    if lens.iter().any(|&l| l != first) {
        return Err(EncodeError::CountMismatch {
            field: field.to_owned(),
        });
    }
    Ok(first)
}

/// For an unsized array of `size`-byte elements running to the end of the message: how many
/// there are. The bytes left must be a whole number of elements.
#[inline]
pub fn rest_count(r: &Reader<'_>, size: usize, field: &str) -> Result<usize, DecodeError> {
    if size == 0 {
        return Ok(0);
    }
    let left = r.remaining();
    if left % size != 0 {
        return Err(DecodeError::BadLength {
            field: field.to_owned(),
            need: left.div_ceil(size) * size,
            have: left,
        });
    }
    Ok(left / size)
}

/// The message ID at the start of `msg`, if there are two bytes.
#[inline]
pub fn msg_id(msg: &[u8]) -> Option<u16> {
    match msg {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Encodes `msg` with `msg_id` into a new vector.
pub fn to_vec<M: Message>(msg: &M, msg_id: u16) -> Result<Vec<u8>, EncodeError> {
    let mut v = Vec::with_capacity(msg.encoded_len());
    msg.encode(msg_id, &mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take::<2>("a"), Ok([1, 2]));
        assert_eq!(
            r.take::<2>("b"),
            Err(DecodeError::BadLength {
                field: "b".into(),
                need: 2,
                have: 1
            })
        );
        assert_eq!(
            r.bytes(usize::MAX, "c").unwrap_err().kind(),
            DecodeErrorKind::BadLength
        );
        assert_eq!(r.bytes(1, "d"), Ok(&[3u8][..]));
        assert_eq!(r.remaining(), 0);
        assert!(r.check_count(0, 8, "e").is_ok());
        assert!(r.check_count(1, 0, "e").is_err());
        assert!(r.check_count(usize::MAX, 8, "e").is_err());
    }

    #[test]
    fn strings() {
        let mut out = Vec::new();
        put_fixed_string(&mut out, "abc", 4, "s").unwrap();
        assert_eq!(out, b"abc\0");
        assert_eq!(
            put_fixed_string(&mut out, "abcd", 4, "s"),
            Err(EncodeError::StringTooLong {
                field: "s".into(),
                len: 4,
                max: 3
            })
        );
        assert_eq!(Reader::new(b"abc\0").fixed_string(4, "s").unwrap(), "abc");
        assert_eq!(Reader::new(b"ab\0z").fixed_string(4, "s").unwrap(), "ab");
        let e = Reader::new(b"abcd").fixed_string(4, "s").unwrap_err();
        assert!(matches!(
            e,
            DecodeError::BadString {
                problem: StringProblem::NotTerminated,
                ..
            }
        ));
        let e = Reader::new(b"ab").fixed_string(4, "s").unwrap_err();
        assert!(matches!(
            e,
            DecodeError::BadString {
                problem: StringProblem::Truncated,
                ..
            }
        ));
        let e = Reader::new(b"\xff\0").fixed_string(2, "s").unwrap_err();
        assert!(matches!(
            e,
            DecodeError::BadString {
                problem: StringProblem::NotUtf8,
                ..
            }
        ));
        out.clear();
        put_var_string(&mut out, "hi", "v").unwrap();
        assert_eq!(out, b"\0\0\0\x02hi");
        assert_eq!(Reader::new(&out).var_string("v").unwrap(), "hi");
        let e = Reader::new(b"\0\0\0\x05hi").var_string("v").unwrap_err();
        assert!(matches!(
            e,
            DecodeError::BadString {
                problem: StringProblem::Truncated,
                ..
            }
        ));
        assert_eq!(e.to_string(), "string `v` runs past the end");
    }

    #[test]
    fn counts() {
        assert_eq!(count::<u8>(255, "n"), Ok(255u8));
        assert!(matches!(
            count::<u8>(256, "n"),
            Err(EncodeError::TooMany { len: 256, .. })
        ));
        assert_eq!(same_len(&[3, 3], "n"), Ok(3));
        assert!(same_len(&[3, 2], "n").is_err());
        assert_eq!(msg_id(&[0, 15, 9]), Some(15));
        assert_eq!(msg_id(&[0]), None);
    }
}
