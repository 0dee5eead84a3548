//! Pass 1: reading members with their JSON types. Each read refuses a member of the wrong type
//! with the `SerializationException` text AWS's Java front end gives
//! (`class java.lang.Boolean can not be converted to an String`); a null member reads as absent.

use std::borrow::Cow;

use sluice_core::api::Tag;
use sluice_core::{ErrorKind, KinesisError};

use super::base64::decode_base64;
use crate::json::{JsonValue, Number};

const NUMBER_CLASS: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
const LIST_HERE: &str = "Start of list found where not expected";
const MAP_HERE: &str = "Start of structure or map found where not expected.";
/// How the type errors name CBOR's byte strings and tagged timestamps, the Java classes a CBOR
/// front end would hold them in.
const BYTES_CLASS: &str = "class java.nio.HeapByteBuffer";
const DATE_CLASS: &str = "class java.util.Date";

pub(super) fn serialization(message: impl Into<String>) -> KinesisError {
    KinesisError::new(ErrorKind::Serialization, message)
}

pub(super) type Members<'v, 'a> = &'v [(Cow<'a, str>, JsonValue<'a>)];

/// The members of the request body. Any JSON object is accepted; a body that is not an object
/// was refused before decoding.
///
/// `cbor` says which protocol the tree came from. It changes one thing: an untagged number sent
/// for a timestamp member is epoch seconds in JSON 1.1 but epoch milliseconds in the Java SDK's
/// CBOR (whose tagged timestamps are milliseconds too).
#[derive(Clone, Copy)]
pub struct Obj<'v, 'a> {
    value: &'v JsonValue<'a>,
    cbor: bool,
}
impl<'v, 'a> Obj<'v, 'a> {
    /// A JSON 1.1 request body.
    pub fn new(value: &'v JsonValue<'a>) -> Self {
        Self { value, cbor: false }
    }

    /// A CBOR 1.1 request body.
    pub fn new_cbor(value: &'v JsonValue<'a>) -> Self {
        Self { value, cbor: true }
    }

    /// A nested structure of this body, in the same protocol.
    pub(super) fn nested(&self, v: &'v JsonValue<'a>) -> Result<Obj<'v, 'a>, KinesisError> {
        as_structure(v).map(|value| Obj {
            value,
            cbor: self.cbor,
        })
    }

    fn get(&self, key: &str) -> Option<&'v JsonValue<'a>> {
        self.value.get(key)
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<&'v str>, KinesisError> {
        self.get(key).map(as_string).transpose()
    }

    /// An Integer member: floored, and capped at i32::MAX as AWS's Java front end does.
    pub(super) fn integer(&self, key: &str) -> Result<Option<i64>, KinesisError> {
        self.get(key)
            .map(|v| as_number(v, "Integer").map(|n| n.floor_i64().min(i64::from(i32::MAX))))
            .transpose()
    }

    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, KinesisError> {
        self.get(key).map(as_boolean).transpose()
    }

    /// A timestamp member: epoch seconds (with a fraction) as a number, returned in ms.
    pub(super) fn timestamp_ms(&self, key: &str) -> Result<Option<u64>, KinesisError> {
        self.get(key)
            .map(|v| as_timestamp_ms(v, self.cbor))
            .transpose()
    }

    pub(super) fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, KinesisError> {
        self.get(key).map(as_blob).transpose()
    }

    pub(super) fn list(&self, key: &str) -> Result<Option<&'v [JsonValue<'a>]>, KinesisError> {
        match self.get(key) {
            None => Ok(None),
            Some(JsonValue::Array(items)) => Ok(Some(items)),
            Some(JsonValue::Object(_)) => Err(serialization(MAP_HERE)),
            Some(_) => Err(serialization("Expected list or null")),
        }
    }

    pub(super) fn map(&self, key: &str) -> Result<Option<Members<'v, 'a>>, KinesisError> {
        match self.get(key) {
            None => Ok(None),
            Some(JsonValue::Object(members)) => Ok(Some(members)),
            Some(JsonValue::Array(_)) => Err(serialization(LIST_HERE)),
            Some(_) => Err(serialization("Expected map or null")),
        }
    }

    pub(super) fn structure(&self, key: &str) -> Result<Option<Obj<'v, 'a>>, KinesisError> {
        self.get(key).map(|v| self.nested(v)).transpose()
    }
}

fn as_structure<'v, 'a>(v: &'v JsonValue<'a>) -> Result<&'v JsonValue<'a>, KinesisError> {
    match v {
        JsonValue::Object(_) => Ok(v),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        _ => Err(serialization("Expected null")),
    }
}

/// The refusal of a member of the wrong type, naming the value's class as AWS's Java front end
/// does: `class java.lang.Boolean can not be converted to an String`. `target` carries AWS's
/// article (`an String`, `a Blob`). Lists and structures get the parser's own texts instead.
fn cannot_convert(v: &JsonValue<'_>, target: &str) -> KinesisError {
    let class = match v {
        JsonValue::Bool(_) => "class java.lang.Boolean",
        JsonValue::Number(_) => NUMBER_CLASS,
        JsonValue::String(_) => "class java.lang.String",
        JsonValue::Bytes(_) => BYTES_CLASS,
        JsonValue::TimestampMs(_) => DATE_CLASS,
        JsonValue::Array(_) => return serialization(LIST_HERE),
        JsonValue::Object(_) => return serialization(MAP_HERE),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
    };
    serialization(format!("{class} can not be converted to {target}"))
}

fn as_string<'v>(v: &'v JsonValue<'_>) -> Result<&'v str, KinesisError> {
    match v {
        JsonValue::String(s) => Ok(s),
        _ => Err(cannot_convert(v, "an String")),
    }
}

fn as_number(v: &JsonValue<'_>, java_type: &str) -> Result<Number, KinesisError> {
    match v {
        JsonValue::Number(n) => Ok(*n),
        _ => Err(cannot_convert(v, &format!("an {java_type}"))),
    }
}

fn as_boolean(v: &JsonValue<'_>) -> Result<bool, KinesisError> {
    match v {
        JsonValue::Bool(b) => Ok(*b),
        // AWS's parser lets a floating-point number through as a boolean; integers it refuses.
        JsonValue::Number(Number::Float(f)) => Ok(*f != 0.0),
        JsonValue::String(s) => Err(serialization(format!(
            "'{}' can not be converted to an Boolean",
            s.to_uppercase()
        ))),
        _ => Err(cannot_convert(v, "an Boolean")),
    }
}

fn as_timestamp_ms(v: &JsonValue<'_>, cbor: bool) -> Result<u64, KinesisError> {
    match v {
        // `as` saturates: negative times become 0, absurd ones u64::MAX.
        JsonValue::TimestampMs(n) => Ok(n.as_f64().round() as u64),
        JsonValue::Number(n) if cbor => Ok(n.as_f64().round() as u64),
        JsonValue::Number(n) => Ok((n.as_f64() * 1000.0).round() as u64),
        _ => Err(cannot_convert(v, "milliseconds since epoch")),
    }
}

fn as_blob(v: &JsonValue<'_>) -> Result<Vec<u8>, KinesisError> {
    match v {
        JsonValue::String(s) => decode_base64(s),
        JsonValue::Bytes(b) => Ok(b.to_vec()),
        _ => Err(cannot_convert(v, "a Blob")),
    }
}

pub(super) fn tags_of(members: Option<Members<'_, '_>>) -> Result<Vec<Tag>, KinesisError> {
    let Some(members) = members else {
        return Ok(Vec::new());
    };
    let mut tags: Vec<Tag> = Vec::with_capacity(members.len());
    for (key, value) in members {
        if matches!(value, JsonValue::Null) {
            continue;
        }
        let value = as_string(value)?;
        // A repeated key keeps its last value, like a JSON object read into a map.
        if let Some(existing) = tags.iter_mut().find(|t| t.key == key.as_ref()) {
            existing.value = value.to_owned();
        } else {
            tags.push(Tag {
                key: key.to_string(),
                value: value.to_owned(),
            });
        }
    }
    Ok(tags)
}

/// A list of strings (null items skipped), for TagKeys and ShardLevelMetrics.
pub(super) fn string_list<'v>(
    items: Option<&'v [JsonValue<'_>]>,
) -> Result<Vec<&'v str>, KinesisError> {
    let mut out = Vec::with_capacity(items.map_or(0, <[_]>::len));
    for item in items.unwrap_or_default() {
        if !matches!(item, JsonValue::Null) {
            out.push(as_string(item)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of<T: std::fmt::Debug>(read: Result<T, KinesisError>) -> String {
        let error = read.expect_err("the member has the wrong type");
        assert_eq!(error.kind, ErrorKind::Serialization);
        error.message
    }

    #[test]
    fn every_reader_names_the_wrong_types_class_as_aws_does() {
        let number = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
        let cases: Vec<(JsonValue<'static>, &str, String)> = vec![
            (
                JsonValue::Bool(true),
                "string",
                "class java.lang.Boolean can not be converted to an String".into(),
            ),
            (
                JsonValue::Number(Number::Unsigned(1)),
                "string",
                format!("{number} can not be converted to an String"),
            ),
            (
                JsonValue::Bytes(Cow::Borrowed(b"x")),
                "string",
                "class java.nio.HeapByteBuffer can not be converted to an String".into(),
            ),
            (
                JsonValue::TimestampMs(Number::Unsigned(1)),
                "string",
                "class java.util.Date can not be converted to an String".into(),
            ),
            (
                JsonValue::Array(Vec::new()),
                "string",
                "Start of list found where not expected".into(),
            ),
            (
                JsonValue::Object(Vec::new()),
                "string",
                "Start of structure or map found where not expected.".into(),
            ),
            (
                JsonValue::Bool(true),
                "integer",
                "class java.lang.Boolean can not be converted to an Integer".into(),
            ),
            (
                JsonValue::String(Cow::Borrowed("1")),
                "integer",
                "class java.lang.String can not be converted to an Integer".into(),
            ),
            (
                JsonValue::Bytes(Cow::Borrowed(b"x")),
                "integer",
                "class java.nio.HeapByteBuffer can not be converted to an Integer".into(),
            ),
            (
                JsonValue::TimestampMs(Number::Unsigned(1)),
                "integer",
                "class java.util.Date can not be converted to an Integer".into(),
            ),
            (
                JsonValue::Number(Number::Unsigned(1)),
                "boolean",
                format!("{number} can not be converted to an Boolean"),
            ),
            (
                JsonValue::String(Cow::Borrowed("yes")),
                "boolean",
                "'YES' can not be converted to an Boolean".into(),
            ),
            (
                JsonValue::Bytes(Cow::Borrowed(b"x")),
                "boolean",
                "class java.nio.HeapByteBuffer can not be converted to an Boolean".into(),
            ),
            (
                JsonValue::TimestampMs(Number::Unsigned(1)),
                "boolean",
                "class java.util.Date can not be converted to an Boolean".into(),
            ),
            (
                JsonValue::Bytes(Cow::Borrowed(b"x")),
                "timestamp",
                "class java.nio.HeapByteBuffer can not be converted to milliseconds since epoch"
                    .into(),
            ),
            (
                JsonValue::Bool(true),
                "timestamp",
                "class java.lang.Boolean can not be converted to milliseconds since epoch".into(),
            ),
            (
                JsonValue::String(Cow::Borrowed("1")),
                "timestamp",
                "class java.lang.String can not be converted to milliseconds since epoch".into(),
            ),
            (
                JsonValue::Array(Vec::new()),
                "timestamp",
                "Start of list found where not expected".into(),
            ),
            (
                JsonValue::TimestampMs(Number::Unsigned(1)),
                "blob",
                "class java.util.Date can not be converted to a Blob".into(),
            ),
            (
                JsonValue::Bool(true),
                "blob",
                "class java.lang.Boolean can not be converted to a Blob".into(),
            ),
            (
                JsonValue::Number(Number::Unsigned(1)),
                "blob",
                format!("{number} can not be converted to a Blob"),
            ),
            (
                JsonValue::Object(Vec::new()),
                "blob",
                "Start of structure or map found where not expected.".into(),
            ),
        ];
        for (value, reader, expected) in cases {
            let doc = JsonValue::Object(vec![(Cow::Borrowed("M"), value.clone())]);
            let body = Obj::new(&doc);
            let message = match reader {
                "string" => error_of(body.string("M")),
                "integer" => error_of(body.integer("M")),
                "boolean" => error_of(body.boolean("M")),
                "timestamp" => error_of(body.timestamp_ms("M")),
                "blob" => error_of(body.blob("M")),
                _ => unreachable!("the cases name the readers above"),
            };
            assert_eq!(message, expected, "{reader} of {value:?}");
        }
    }

    #[test]
    fn a_float_reads_as_a_boolean_but_an_integer_does_not() {
        let doc = JsonValue::Object(vec![(
            Cow::Borrowed("M"),
            JsonValue::Number(Number::Float(0.5)),
        )]);
        assert_eq!(
            Obj::new(&doc).boolean("M").map_err(|e| e.message),
            Ok(Some(true))
        );
    }
}
