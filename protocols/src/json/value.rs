//! A borrowed JSON document: strings without escapes point into the request body, so decoding a
//! PutRecords body allocates only the small member vectors and the final domain values.
//!
//! Request decoding needs the *JSON type* of every member before it converts it, because AWS
//! answers a wrong type with a `SerializationException` whose text names that type. A typed
//! serde derive would lose that information in its generic error, so we parse into this small
//! tree and walk it by hand (see `kinesis::decode`).
//!
//! CBOR requests (`crate::cbor`) decode into the same tree so that both protocols share one
//! validation path; they add the two variants JSON cannot express, byte strings and tagged
//! timestamps.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON number as the parser saw it. Integers stay exact; anything with a fraction or exponent
/// is a float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Unsigned(v) => v as f64,
            Self::Signed(v) => v as f64,
            Self::Float(v) => v,
        }
    }

    /// The value floored to an integer, as AWS's Java front end truncates numbers sent for
    /// integer members. Saturates at the i64 range.
    pub fn floor_i64(self) -> i64 {
        match self {
            Self::Unsigned(v) => i64::try_from(v).unwrap_or(i64::MAX),
            Self::Signed(v) => v,
            // `as` saturates for floats, which is the behaviour we want for huge values.
            Self::Float(v) => v.floor() as i64,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<JsonValue<'a>>),
    /// Members in document order. A duplicate key keeps both entries; lookups take the last one,
    /// as most JSON parsers AWS's SDKs talk to do.
    Object(Vec<(Cow<'a, str>, JsonValue<'a>)>),
    /// A CBOR byte string (blobs in `x-amz-cbor-1.1`). JSON never produces it.
    Bytes(Cow<'a, [u8]>),
    /// A CBOR tag-1 timestamp, in epoch **milliseconds** as the Java SDK sends it (not the RFC
    /// 8949 seconds). JSON never produces it.
    TimestampMs(Number),
}

impl<'a> JsonValue<'a> {
    /// The member `key` of an object, `None` when absent, null, or when `self` is not an object.
    pub fn get(&self, key: &str) -> Option<&JsonValue<'a>> {
        match self {
            Self::Object(members) => members
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .filter(|v| !matches!(v, JsonValue::Null)),
            _ => None,
        }
    }
}

/// Why a body is not a JSON document.
#[derive(Debug, thiserror::Error)]
#[error("body is not valid JSON: {0}")]
pub struct JsonSyntaxError(pub String);

/// Parses with serde_json. Kept for the benchmark that chose the parser and as a reference in
/// tests.
pub fn parse_serde_json(body: &[u8]) -> Result<JsonValue<'_>, JsonSyntaxError> {
    serde_json::from_slice(body).map_err(|e| JsonSyntaxError(e.to_string()))
}

/// Parses with sonic-rs (SIMD string scanning).
pub fn parse_sonic(body: &[u8]) -> Result<JsonValue<'_>, JsonSyntaxError> {
    sonic_rs::from_slice(body).map_err(|e| JsonSyntaxError(e.to_string()))
}

/// The parser request decoding uses. sonic-rs was chosen by `benches/protocols_json.rs`; the
/// numbers are at the decode site in `kinesis::decode`.
pub fn parse(body: &[u8]) -> Result<JsonValue<'_>, JsonSyntaxError> {
    parse_sonic(body)
}

impl<'de> Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = JsonValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(if v >= 0 {
            Number::Unsigned(v as u64)
        } else {
            Number::Signed(v)
        }))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(Number::Unsigned(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(JsonValue::Number(Number::Float(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonValue::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonValue::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonValue::String(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(JsonValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
        while let Some(key) = map.next_key::<KeyCow<'de>>()? {
            let value = map.next_value()?;
            members.push((key.0, value));
        }
        Ok(JsonValue::Object(members))
    }
}

/// An object key that borrows when it can.
struct KeyCow<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for KeyCow<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyCow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyCow(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyCow(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(KeyCow(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{"a":"x","b":[1,-2,3.5,true,null],"c":{"d":"e\"f"},"a":"y"}"#;

    #[test]
    fn both_parsers_build_the_same_tree() {
        let a = parse_serde_json(DOC.as_bytes()).expect("valid JSON");
        let b = parse_sonic(DOC.as_bytes()).expect("valid JSON");
        assert_eq!(a, b);
    }

    #[test]
    fn unescaped_strings_borrow_from_the_body_and_escaped_ones_are_owned() {
        let v = parse(DOC.as_bytes()).expect("valid JSON");
        assert!(matches!(
            v.get("a"),
            Some(JsonValue::String(Cow::Borrowed("y")))
        ));
        let c = v.get("c").expect("c is present");
        assert!(matches!(c.get("d"), Some(JsonValue::String(Cow::Owned(s))) if s == "e\"f"));
    }

    #[test]
    fn numbers_keep_their_kind() {
        let v = parse(DOC.as_bytes()).expect("valid JSON");
        let Some(JsonValue::Array(items)) = v.get("b") else {
            panic!("b is an array")
        };
        assert_eq!(items[0], JsonValue::Number(Number::Unsigned(1)));
        assert_eq!(items[1], JsonValue::Number(Number::Signed(-2)));
        assert_eq!(items[2], JsonValue::Number(Number::Float(3.5)));
        assert_eq!(Number::Float(3.5).floor_i64(), 3);
        assert_eq!(Number::Float(-0.5).floor_i64(), -1);
    }

    #[test]
    fn get_treats_null_as_absent() {
        let v = parse(br#"{"a":null}"#).expect("valid JSON");
        assert_eq!(v.get("a"), None);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(parse(b"{\"a\":").is_err());
        assert!(parse_serde_json(b"{\"a\":").is_err());
    }
}
