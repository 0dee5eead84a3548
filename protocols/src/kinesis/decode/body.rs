//! Pass 1: reading members with their JSON types. Each read refuses a member of the wrong type
//! with the `SerializationException` text AWS's Java front end gives
//! (`class java.lang.Boolean can not be converted to an String`); a null member reads as absent.

use std::borrow::Cow;

use sluice_core::api::Tag;
use sluice_core::{ErrorKind, KinesisError};

use super::base64::decode_base64;
use crate::json::{JsonValue, Number};

pub(super) const NUMBER_CLASS: &str =
    "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
pub(super) const LIST_HERE: &str = "Start of list found where not expected";
pub(super) const MAP_HERE: &str = "Start of structure or map found where not expected.";
/// How the type errors name CBOR's byte strings and tagged timestamps, the Java classes a CBOR
/// front end would hold them in.
pub(super) const BYTES_CLASS: &str = "class java.nio.HeapByteBuffer";
pub(super) const DATE_CLASS: &str = "class java.util.Date";

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

    pub(super) fn get(&self, key: &str) -> Option<&'v JsonValue<'a>> {
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

pub(super) fn as_structure<'v, 'a>(
    v: &'v JsonValue<'a>,
) -> Result<&'v JsonValue<'a>, KinesisError> {
    match v {
        JsonValue::Object(_) => Ok(v),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        _ => Err(serialization("Expected null")),
    }
}

pub(super) fn as_string<'v>(v: &'v JsonValue<'_>) -> Result<&'v str, KinesisError> {
    match v {
        JsonValue::String(s) => Ok(s),
        JsonValue::Bool(_) => Err(serialization(
            "class java.lang.Boolean can not be converted to an String",
        )),
        JsonValue::Number(_) => Err(serialization(format!(
            "{NUMBER_CLASS} can not be converted to an String"
        ))),
        JsonValue::Bytes(_) => Err(serialization(format!(
            "{BYTES_CLASS} can not be converted to an String"
        ))),
        JsonValue::TimestampMs(_) => Err(serialization(format!(
            "{DATE_CLASS} can not be converted to an String"
        ))),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        JsonValue::Object(_) => Err(serialization(MAP_HERE)),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
    }
}

pub(super) fn as_number(v: &JsonValue<'_>, java_type: &str) -> Result<Number, KinesisError> {
    match v {
        JsonValue::Number(n) => Ok(*n),
        JsonValue::Bool(_) => Err(serialization(format!(
            "class java.lang.Boolean can not be converted to an {java_type}"
        ))),
        JsonValue::String(_) => Err(serialization(format!(
            "class java.lang.String can not be converted to an {java_type}"
        ))),
        JsonValue::Bytes(_) => Err(serialization(format!(
            "{BYTES_CLASS} can not be converted to an {java_type}"
        ))),
        JsonValue::TimestampMs(_) => Err(serialization(format!(
            "{DATE_CLASS} can not be converted to an {java_type}"
        ))),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        JsonValue::Object(_) => Err(serialization(MAP_HERE)),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
    }
}

pub(super) fn as_boolean(v: &JsonValue<'_>) -> Result<bool, KinesisError> {
    match v {
        JsonValue::Bool(b) => Ok(*b),
        // AWS's parser lets a floating-point number through as a boolean; integers it refuses.
        JsonValue::Number(Number::Float(f)) => Ok(*f != 0.0),
        JsonValue::Number(_) => Err(serialization(format!(
            "{NUMBER_CLASS} can not be converted to an Boolean"
        ))),
        JsonValue::String(s) => Err(serialization(format!(
            "'{}' can not be converted to an Boolean",
            s.to_uppercase()
        ))),
        JsonValue::Bytes(_) => Err(serialization(format!(
            "{BYTES_CLASS} can not be converted to an Boolean"
        ))),
        JsonValue::TimestampMs(_) => Err(serialization(format!(
            "{DATE_CLASS} can not be converted to an Boolean"
        ))),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        JsonValue::Object(_) => Err(serialization(MAP_HERE)),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
    }
}

pub(super) fn as_timestamp_ms(v: &JsonValue<'_>, cbor: bool) -> Result<u64, KinesisError> {
    const TARGET: &str = "milliseconds since epoch";
    match v {
        // `as` saturates: negative times become 0, absurd ones u64::MAX.
        JsonValue::TimestampMs(n) => Ok(n.as_f64().round() as u64),
        JsonValue::Number(n) if cbor => Ok(n.as_f64().round() as u64),
        JsonValue::Number(n) => Ok((n.as_f64() * 1000.0).round() as u64),
        JsonValue::Bytes(_) => Err(serialization(format!(
            "{BYTES_CLASS} can not be converted to {TARGET}"
        ))),
        JsonValue::Bool(_) => Err(serialization(format!(
            "class java.lang.Boolean can not be converted to {TARGET}"
        ))),
        JsonValue::String(_) => Err(serialization(format!(
            "class java.lang.String can not be converted to {TARGET}"
        ))),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        JsonValue::Object(_) => Err(serialization(MAP_HERE)),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
    }
}

pub(super) fn as_blob(v: &JsonValue<'_>) -> Result<Vec<u8>, KinesisError> {
    match v {
        JsonValue::String(s) => decode_base64(s),
        JsonValue::Bytes(b) => Ok(b.to_vec()),
        JsonValue::TimestampMs(_) => Err(serialization(format!(
            "{DATE_CLASS} can not be converted to a Blob"
        ))),
        JsonValue::Bool(_) => Err(serialization(
            "class java.lang.Boolean can not be converted to a Blob",
        )),
        JsonValue::Number(_) => Err(serialization(format!(
            "{NUMBER_CLASS} can not be converted to a Blob"
        ))),
        JsonValue::Array(_) => Err(serialization(LIST_HERE)),
        JsonValue::Object(_) => Err(serialization(MAP_HERE)),
        JsonValue::Null => unreachable!("lookups treat null as absent"),
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
