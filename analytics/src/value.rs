//! Scalar values: coercion of JSON/CSV input into column kinds, and rendering for output.
//!
//! Timestamps are milliseconds since the epoch. Input accepts a number (milliseconds) or the
//! texts `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY-MM-DDTHH:MM:SS[.fff][Z]` and `YYYY-MM-DD`; output
//! renders `YYYY-MM-DD HH:MM:SS.fff`, the form KDA's JSON output uses `[verify]`.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::types::Kind;

/// One value of a row, by kind. Serialized only inside window snapshots ([`crate::snapshot`]):
/// no variant is removed, reordered or retyped without a snapshot format version bump.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Time(i64),
}

/// Parses a timestamp text into epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    None
}

/// Renders epoch milliseconds as `YYYY-MM-DD HH:MM:SS.fff` (UTC).
pub fn format_timestamp(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => ms.to_string(),
    }
}

/// Coerces a JSON value to `kind`; `Err` names the mismatch (a coercion error).
pub fn from_json(value: &serde_json::Value, kind: Kind) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match (value, kind) {
        (J::Null, _) => Value::Null,
        (J::Number(n), Kind::Int) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::Int(f as i64),
                _ => return Err(format!("cannot convert {n} to an integer")),
            },
        },
        (J::Number(n), Kind::Float) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        (J::Number(n), Kind::Time) => match n.as_i64() {
            Some(i) => Value::Time(i),
            None => return Err(format!("cannot convert {n} to a timestamp")),
        },
        (J::Number(n), Kind::Text) => Value::Text(n.to_string()),
        (J::Bool(b), Kind::Bool) => Value::Bool(*b),
        (J::Bool(b), Kind::Text) => Value::Text(b.to_string()),
        (J::String(s), kind) => return from_text(s, kind),
        (J::Array(_) | J::Object(_), Kind::Text) => Value::Text(value.to_string()),
        (other, kind) => return Err(format!("cannot convert {other} to {kind:?}")),
    })
}

/// Coerces a text (a CSV field or a JSON string) to `kind`.
pub fn from_text(text: &str, kind: Kind) -> Result<Value, String> {
    let fail = || format!("cannot convert '{text}' to {}", kind_name(kind));
    Ok(match kind {
        Kind::Text => Value::Text(text.to_owned()),
        Kind::Int => Value::Int(text.trim().parse().map_err(|_| fail())?),
        Kind::Float => Value::Float(text.trim().parse().map_err(|_| fail())?),
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(fail()),
        },
        Kind::Time => Value::Time(
            parse_timestamp(text)
                .or_else(|| text.trim().parse().ok())
                .ok_or_else(fail)?,
        ),
    })
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "an integer",
        Kind::Float => "a number",
        Kind::Text => "a character string",
        Kind::Bool => "a boolean",
        Kind::Time => "a timestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text() {
        let ms = parse_timestamp("2026-12-06 23:01:02.345").expect("parses");
        assert_eq!(format_timestamp(ms), "2026-12-06 23:01:02.345");
        assert_eq!(parse_timestamp("2026-12-06T23:01:02.345Z"), Some(ms));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn json_values_coerce_to_their_column_kinds_or_fail() {
        assert_eq!(
            from_json(&serde_json::json!(3), Kind::Float),
            Ok(Value::Float(3.0))
        );
        assert_eq!(
            from_json(&serde_json::json!("7"), Kind::Int),
            Ok(Value::Int(7))
        );
        assert_eq!(
            from_json(&serde_json::json!(2.0), Kind::Int),
            Ok(Value::Int(2))
        );
        assert!(from_json(&serde_json::json!(2.5), Kind::Int).is_err());
        assert!(from_json(&serde_json::json!("x"), Kind::Float).is_err());
        assert_eq!(
            from_json(&serde_json::json!(null), Kind::Int),
            Ok(Value::Null)
        );
    }
}
