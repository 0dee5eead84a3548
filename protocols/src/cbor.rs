//! CBOR (RFC 8949) as the Kinesis `application/x-amz-cbor-1.1` protocol uses it: a decoder into
//! the borrowed document tree the JSON decoder also produces, and a small writer for responses.
//!
//! ## The Java SDK's conventions
//!
//! The Java SDK (v1 and v2) is the one client that speaks this protocol. Its shapes are the JSON
//! 1.1 shapes with three differences, which both directions here follow:
//! - blobs are byte strings (major type 2), not base64 text;
//! - timestamps are tag 1 followed by an integer of epoch **milliseconds** (not the seconds RFC
//!   8949 gives tag 1);
//! - hash keys and sequence numbers stay decimal text strings.
//!
//! Jackson, which the SDK uses underneath, writes maps and arrays with indefinite lengths, so the
//! decoder accepts both forms, including indefinite-length (chunked) strings. The writer emits
//! indefinite-length maps (their member count would otherwise have to be known up front) and
//! definite-length arrays and strings.
//!
//! ## What the decoder refuses
//!
//! Anything that is not well-formed CBOR, trailing bytes after the top-level item, map keys that
//! are not text strings, invalid UTF-8 in text, and nesting deeper than [`DEPTH_MAX`] (a hostile
//! body of 7 MiB of `0x81` would otherwise recurse millions of frames deep).

use std::borrow::Cow;

use crate::json::{JsonValue, Number};

/// Nesting deeper than this is refused. Kinesis requests nest at most four levels.
pub const DEPTH_MAX: usize = 64;

/// Why a body is not a CBOR document we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("the CBOR item ends early, at byte {0}")]
    Truncated(usize),
    #[error("malformed CBOR at byte {0}")]
    Malformed(usize),
    #[error("unsupported CBOR item at byte {0}")]
    Unsupported(usize),
    #[error("a CBOR map key at byte {0} is not a text string")]
    NonTextKey(usize),
    #[error("a CBOR text string at byte {0} is not valid UTF-8")]
    InvalidUtf8(usize),
    #[error("CBOR nesting exceeds {DEPTH_MAX} levels")]
    TooDeep,
    #[error("{0} bytes follow the CBOR document")]
    TrailingBytes(usize),
}

/// Parses one complete CBOR item spanning all of `body`.
pub fn parse(body: &[u8]) -> Result<JsonValue<'_>, CborError> {
    let mut reader = Reader { body, pos: 0 };
    let value = reader.item(0)?;
    if reader.pos != body.len() {
        return Err(CborError::TrailingBytes(body.len() - reader.pos));
    }
    Ok(value)
}

/// The argument of an item head: a count, a length, a value, or "indefinite".
enum Arg {
    Value(u64),
    Indefinite,
}

struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .body
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let n = usize::try_from(n).map_err(|_| CborError::Truncated(self.pos))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.body.len())
            .ok_or(CborError::Truncated(self.body.len()))?;
        let slice = &self.body[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads the head of an item: major type (0-7) and its argument.
    fn head(&mut self) -> Result<(u8, u8, Arg), CborError> {
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => Arg::Value(u64::from(info)),
            24 => Arg::Value(u64::from(self.byte()?)),
            25 => Arg::Value(u64::from(u16::from_be_bytes(self.array()?))),
            26 => Arg::Value(u64::from(u32::from_be_bytes(self.array()?))),
            27 => Arg::Value(u64::from_be_bytes(self.array()?)),
            31 if matches!(major, 2..=5 | 7) => Arg::Indefinite,
            _ => return Err(CborError::Malformed(at)),
        };
        Ok((major, info, arg))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let bytes = self.take(N as u64)?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }

    /// True (and consumed) when the next byte is the "break" that ends an indefinite item.
    fn at_break(&mut self) -> Result<bool, CborError> {
        match self.body.get(self.pos) {
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(CborError::Truncated(self.pos)),
        }
    }

    fn item(&mut self, depth: usize) -> Result<JsonValue<'a>, CborError> {
        if depth > DEPTH_MAX {
            return Err(CborError::TooDeep);
        }
        let at = self.pos;
        let (major, info, arg) = self.head()?;
        match (major, arg) {
            (0, Arg::Value(v)) => Ok(JsonValue::Number(Number::Unsigned(v))),
            (1, Arg::Value(v)) => Ok(JsonValue::Number(match i64::try_from(v) {
                // -1 - v, which fits because v <= i64::MAX.
                Ok(v) => Number::Signed(-1 - v),
                // Below i64::MIN: keep the magnitude approximately, as Jackson would as a BigInteger.
                Err(_) => Number::Float(-1.0 - v as f64),
            })),
            (2, arg) => Ok(JsonValue::Bytes(self.chunks(2, arg)?)),
            (3, arg) => {
                let bytes = self.chunks(3, arg)?;
                Ok(JsonValue::String(match bytes {
                    Cow::Borrowed(b) => Cow::Borrowed(
                        std::str::from_utf8(b).map_err(|_| CborError::InvalidUtf8(at))?,
                    ),
                    Cow::Owned(b) => {
                        Cow::Owned(String::from_utf8(b).map_err(|_| CborError::InvalidUtf8(at))?)
                    }
                }))
            }
            (4, arg) => {
                let mut items = Vec::with_capacity(capacity_hint(&arg, 1024));
                match arg {
                    Arg::Value(n) => {
                        for _ in 0..n {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                }
                Ok(JsonValue::Array(items))
            }
            (5, arg) => {
                let mut members = Vec::with_capacity(capacity_hint(&arg, 64));
                match arg {
                    Arg::Value(n) => {
                        for _ in 0..n {
                            members.push(self.member(depth)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            members.push(self.member(depth)?);
                        }
                    }
                }
                Ok(JsonValue::Object(members))
            }
            (6, Arg::Value(tag)) => {
                let inner = self.item(depth + 1)?;
                match (tag, inner) {
                    // The Java SDK's timestamp: epoch milliseconds (integer, or a float from
                    // other writers).
                    (1, JsonValue::Number(n)) => Ok(JsonValue::TimestampMs(n)),
                    (1, _) => Err(CborError::Unsupported(at)),
                    // Other tags (bignums excepted, which no Kinesis member uses) do not change
                    // how a Kinesis member reads; pass the tagged value through.
                    (_, inner) => Ok(inner),
                }
            }
            (7, Arg::Value(v)) => match info {
                20 => Ok(JsonValue::Bool(false)),
                21 => Ok(JsonValue::Bool(true)),
                22 | 23 => Ok(JsonValue::Null),
                25 => Ok(JsonValue::Number(Number::Float(half_to_f64(v as u16)))),
                26 => Ok(JsonValue::Number(Number::Float(f64::from(f32::from_bits(
                    v as u32,
                ))))),
                27 => Ok(JsonValue::Number(Number::Float(f64::from_bits(v)))),
                _ => Err(CborError::Unsupported(at)),
            },
            _ => Err(CborError::Malformed(at)),
        }
    }

    fn member(&mut self, depth: usize) -> Result<(Cow<'a, str>, JsonValue<'a>), CborError> {
        let at = self.pos;
        let key = match self.item(depth + 1)? {
            JsonValue::String(s) => s,
            _ => return Err(CborError::NonTextKey(at)),
        };
        let value = self.item(depth + 1)?;
        Ok((key, value))
    }

    /// The content of a byte or text string: borrowed when definite, concatenated when chunked.
    fn chunks(&mut self, major: u8, arg: Arg) -> Result<Cow<'a, [u8]>, CborError> {
        match arg {
            Arg::Value(n) => Ok(Cow::Borrowed(self.take(n)?)),
            Arg::Indefinite => {
                let mut out = Vec::new();
                while !self.at_break()? {
                    let chunk_at = self.pos;
                    match self.head()? {
                        (m, _, Arg::Value(n)) if m == major => {
                            out.extend_from_slice(self.take(n)?);
                        }
                        _ => return Err(CborError::Malformed(chunk_at)),
                    }
                }
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// A preallocation that a hostile count cannot blow up.
fn capacity_hint(arg: &Arg, cap: usize) -> usize {
    match arg {
        Arg::Value(n) => usize::try_from(*n).unwrap_or(cap).min(cap),
        Arg::Indefinite => 4,
    }
}

/// IEEE 754 half precision to double.
fn half_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

// ---------------------------------------------------------------------------------------------
// Writer.

/// Writes the head of an item with the shortest encoding of `value`.
pub fn write_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let m = major << 5;
    if value < 24 {
        out.push(m | value as u8);
    } else if value <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, value as u8]);
    } else if value <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(value as u16).to_be_bytes());
    } else if value <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(value as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    write_head(out, 0, v);
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.push(if v { 0xf5 } else { 0xf4 });
}

pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

/// A timestamp as the Java SDK reads it: tag 1, then the integer epoch milliseconds.
pub fn write_timestamp_ms(out: &mut Vec<u8>, ms: u64) {
    out.push(0xc1);
    write_u64(out, ms);
}

/// Opens a map whose end [`write_break`] marks.
pub fn write_map_start(out: &mut Vec<u8>) {
    out.push(0xbf);
}

pub fn write_array_header(out: &mut Vec<u8>, len: usize) {
    write_head(out, 4, len as u64);
}

/// Opens an array whose end [`write_break`] marks, for lists whose length is not known up front.
pub fn write_array_start(out: &mut Vec<u8>) {
    out.push(0x9f);
}

/// Closes an indefinite-length map or array.
pub fn write_break(out: &mut Vec<u8>) {
    out.push(0xff);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of `s`, leaked so that parsed trees may borrow them for the whole test.
    fn hex(s: &str) -> &'static [u8] {
        let s: String = s.split_whitespace().collect();
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex is valid"))
            .collect();
        Box::leak(bytes.into_boxed_slice())
    }

    #[test]
    fn the_kds_reference_timestamp_decodes_as_tagged_milliseconds() {
        let v = parse(hex("c1 1b 000001a013accc38")).expect("valid CBOR");
        assert_eq!(
            v,
            JsonValue::TimestampMs(Number::Unsigned(0x0000_01a0_13ac_cc38))
        );
    }

    #[test]
    fn definite_and_indefinite_containers_decode_alike() {
        // {"a": [1, -2], "b": h'0001'} both ways.
        let definite = parse(hex("a2 6161 82 01 21 6162 42 0001")).expect("valid CBOR");
        let indefinite =
            parse(hex("bf 6161 9f 01 21 ff 6162 5f 41 00 41 01 ff ff")).expect("valid CBOR");
        assert_eq!(definite, indefinite);
        assert_eq!(
            definite.get("a"),
            Some(&JsonValue::Array(vec![
                JsonValue::Number(Number::Unsigned(1)),
                JsonValue::Number(Number::Signed(-2)),
            ]))
        );
        assert_eq!(
            definite.get("b"),
            Some(&JsonValue::Bytes(Cow::Borrowed(&[0, 1][..])))
        );
    }

    #[test]
    fn floats_of_every_width_decode() {
        assert_eq!(
            parse(hex("f9 3e00")).expect("half"),
            JsonValue::Number(Number::Float(1.5))
        );
        assert_eq!(
            parse(hex("fa 47c35000")).expect("single"),
            JsonValue::Number(Number::Float(100000.0))
        );
        assert_eq!(
            parse(hex("fb 3ff199999999999a")).expect("double"),
            JsonValue::Number(Number::Float(1.1))
        );
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        assert_eq!(parse(hex("a1 61")), Err(CborError::Truncated(2)));
        assert_eq!(parse(hex("a1 01 01")), Err(CborError::NonTextKey(1)));
        assert_eq!(parse(hex("62 ff fe")), Err(CborError::InvalidUtf8(0)));
        assert_eq!(parse(hex("01 02")), Err(CborError::TrailingBytes(1)));
        assert_eq!(parse(hex("1c")), Err(CborError::Malformed(0)));
        assert_eq!(parse(hex("c1 61 61")), Err(CborError::Unsupported(0)));
        assert_eq!(parse(&[0x81; 200]), Err(CborError::TooDeep));
        // A huge declared length is a truncation, not an allocation.
        assert!(matches!(
            parse(hex("5b ffffffffffffffff")),
            Err(CborError::Truncated(_))
        ));
        assert!(matches!(
            parse(hex("9b 00ffffffffffffff")),
            Err(CborError::Truncated(_))
        ));
    }

    #[test]
    fn written_items_read_back() {
        let mut out = Vec::new();
        write_map_start(&mut out);
        write_text(&mut out, "n");
        write_u64(&mut out, 70_000);
        write_text(&mut out, "t");
        write_timestamp_ms(&mut out, 1_704_164_645_678);
        write_text(&mut out, "d");
        write_bytes(&mut out, &[0; 300]);
        write_text(&mut out, "l");
        write_array_header(&mut out, 2);
        write_bool(&mut out, true);
        write_bool(&mut out, false);
        write_break(&mut out);
        let v = parse(&out).expect("our own output parses");
        assert_eq!(
            v.get("n"),
            Some(&JsonValue::Number(Number::Unsigned(70_000)))
        );
        assert_eq!(
            v.get("t"),
            Some(&JsonValue::TimestampMs(Number::Unsigned(1_704_164_645_678)))
        );
        assert!(matches!(v.get("d"), Some(JsonValue::Bytes(b)) if b.len() == 300));
        assert_eq!(
            v.get("l"),
            Some(&JsonValue::Array(vec![
                JsonValue::Bool(true),
                JsonValue::Bool(false)
            ]))
        );
    }
}
