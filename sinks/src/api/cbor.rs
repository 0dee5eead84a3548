//! Firehose over `application/x-amz-cbor-1.1`, as for Data Streams (`sluice_protocols::cbor`):
//! the same shapes as JSON 1.1, with blobs (a record's `Data`) as CBOR byte strings and
//! timestamps as tag 1 around epoch milliseconds. No AWS SDK sends Firehose CBOR today; a client
//! built on the Java SDK's Kinesis conventions gets the same conventions here.
//!
//! A request is turned into the JSON document the JSON path decodes (byte strings become base64
//! text, tagged timestamps epoch seconds), and the answer back into CBOR (members named
//! `…Timestamp` become tagged milliseconds), so both wires share every check.

use base64::Engine as _;
use serde_json::Value;
use sluice_protocols::cbor;
use sluice_protocols::json::{JsonValue, Number};

pub(crate) const CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

/// The JSON document of a CBOR request body, or why it is not one.
pub(crate) fn to_json(body: &[u8]) -> Result<Value, String> {
    let document = cbor::parse(body).map_err(|e| e.to_string())?;
    Ok(convert(&document))
}

fn number(n: Number) -> Value {
    match n {
        Number::Unsigned(u) => u.into(),
        Number::Signed(i) => i.into(),
        Number::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
    }
}

fn convert(value: &JsonValue<'_>) -> Value {
    match value {
        JsonValue::Null => Value::Null,
        JsonValue::Bool(b) => Value::Bool(*b),
        JsonValue::Number(n) => number(*n),
        JsonValue::String(s) => Value::String(s.to_string()),
        JsonValue::Array(items) => Value::Array(items.iter().map(convert).collect()),
        // A duplicate key: the last one wins, as the JSON path's parser does.
        JsonValue::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), convert(v)))
                .collect(),
        ),
        JsonValue::Bytes(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        JsonValue::TimestampMs(ms) => {
            serde_json::Number::from_f64(ms.as_f64() / 1000.0).map_or(Value::Null, Value::Number)
        }
    }
}

/// `answer` (a JSON response or error document) as CBOR.
pub(crate) fn from_json(answer: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, answer, false);
    out
}

fn write(out: &mut Vec<u8>, value: &Value, timestamp: bool) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => cbor::write_bool(out, *b),
        Value::Number(n) if timestamp => {
            let ms = n
                .as_f64()
                .map_or(0, |s| (s * 1000.0).round().max(0.0) as u64);
            cbor::write_timestamp_ms(out, ms);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                cbor::write_u64(out, u);
            } else if let Some(i) = n.as_i64() {
                // A negative integer: major type 1 holds -1 - n.
                cbor::write_head(out, 1, (-1 - i) as u64);
            } else {
                out.push(0xfb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => cbor::write_text(out, s),
        Value::Array(items) => {
            cbor::write_array_header(out, items.len());
            for item in items {
                write(out, item, false);
            }
        }
        Value::Object(members) => {
            cbor::write_map_start(out);
            for (key, member) in members {
                cbor::write_text(out, key);
                write(out, member, key.ends_with("Timestamp"));
            }
            cbor::write_break(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_become_base64_and_timestamps_seconds_and_back() {
        // {"Record": {"Data": h'00ff'}, "T": 1(1700000000123)}, hand-encoded.
        let mut body = Vec::new();
        cbor::write_map_start(&mut body);
        cbor::write_text(&mut body, "Record");
        cbor::write_map_start(&mut body);
        cbor::write_text(&mut body, "Data");
        cbor::write_bytes(&mut body, &[0x00, 0xff]);
        cbor::write_break(&mut body);
        cbor::write_text(&mut body, "T");
        cbor::write_timestamp_ms(&mut body, 1_700_000_000_123);
        cbor::write_break(&mut body);
        let json = to_json(&body).expect("CBOR");
        assert_eq!(json["Record"]["Data"], "AP8=");
        assert_eq!(json["T"].as_f64(), Some(1_700_000_000.123));

        let answer = serde_json::json!({"CreateTimestamp": 1_700_000_000.5, "n": -3, "x": 1.5, "ok": true, "a": [null]});
        let encoded = from_json(&answer);
        let back = cbor::parse(&encoded).expect("CBOR");
        let member = |name: &str| match &back {
            JsonValue::Object(m) => m.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            _ => None,
        };
        assert_eq!(
            member("CreateTimestamp"),
            Some(JsonValue::TimestampMs(Number::Unsigned(1_700_000_000_500)))
        );
        assert_eq!(member("n"), Some(JsonValue::Number(Number::Signed(-3))));
        assert_eq!(member("x"), Some(JsonValue::Number(Number::Float(1.5))));
        assert_eq!(member("ok"), Some(JsonValue::Bool(true)));
        assert!(to_json(b"\xff").is_err());
    }
}
