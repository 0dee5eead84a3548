//! Reading the JSON of data-plane requests: members, enums and ranges checked as the model
//! says, rest-json timestamps, and ListFragments' paging token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ErrorKind, VideoError};
use crate::fragments;
use crate::model::FragmentEntry;
use crate::remux::{self, playlist};

pub(super) fn epoch_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds (rest-json timestamps) to epoch milliseconds.
pub(super) fn seconds_to_ms(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

pub(super) fn ms_to_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A rest-json timestamp member: epoch seconds as a number (what the SDKs send), or an ISO 8601
/// string is refused as AWS's parser would not send it for this protocol.
pub(super) fn timestamp_ms(value: &Value, member: &str) -> Result<u64, VideoError> {
    value.as_f64().and_then(seconds_to_ms).ok_or_else(|| {
        VideoError::invalid(format!("{member} must be a timestamp in epoch seconds."))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StreamRef {
    pub(super) stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    pub(super) stream_arn: Option<String>,
}

pub(super) fn decode(body: &[u8]) -> Result<Value, VideoError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| VideoError::new(ErrorKind::Serialization, e.to_string()))
}

pub(super) fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.get(name).filter(|v| !v.is_null())
}

pub(super) fn string_field(value: &Value, name: &str) -> Result<Option<String>, VideoError> {
    match field(value, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(VideoError::new(
            ErrorKind::Serialization,
            format!("{name} must be a string."),
        )),
    }
}

pub(super) fn int_field(
    value: &Value,
    name: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, VideoError> {
    match field(value, name) {
        None => Ok(None),
        Some(v) => {
            let n = v.as_i64().ok_or_else(|| {
                VideoError::new(
                    ErrorKind::Serialization,
                    format!("{name} must be an integer."),
                )
            })?;
            if n < min || n > max {
                return Err(VideoError::validation(
                    &n.to_string(),
                    &lower_camel(name),
                    &format!("Member must have value between {min} and {max}"),
                ));
            }
            Ok(Some(n))
        }
    }
}

pub(super) fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

pub(super) fn enum_field<'a>(
    value: &Value,
    name: &str,
    allowed: &[&'a str],
) -> Result<Option<&'a str>, VideoError> {
    match string_field(value, name)? {
        None => Ok(None),
        Some(s) => allowed
            .iter()
            .find(|a| **a == s)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                VideoError::validation(
                    &s,
                    &lower_camel(name),
                    &format!(
                        "Member must satisfy enum value set: [{}]",
                        allowed.join(", ")
                    ),
                )
            }),
    }
}

/// A fragment selector's type and time range.
#[derive(Clone, Copy, Debug)]
pub(super) struct Selection {
    pub(super) source: playlist::TimestampSource,
    pub(super) start_ms: Option<u64>,
    pub(super) end_ms: Option<u64>,
}

pub(super) fn selection(
    value: Option<&Value>,
    required: bool,
) -> Result<Option<Selection>, VideoError> {
    let Some(value) = value else {
        return if required {
            Err(VideoError::missing("FragmentSelector"))
        } else {
            Ok(None)
        };
    };
    let kind = enum_field(
        value,
        "FragmentSelectorType",
        &["PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"],
    )?;
    let source = match kind {
        Some("PRODUCER_TIMESTAMP") => playlist::TimestampSource::ProducerTimestamp,
        Some(_) => playlist::TimestampSource::ServerTimestamp,
        None if required => return Err(VideoError::missing("FragmentSelectorType")),
        None => playlist::TimestampSource::ServerTimestamp,
    };
    let range = field(value, "TimestampRange");
    let start_ms = range
        .and_then(|r| field(r, "StartTimestamp"))
        .map(|v| timestamp_ms(v, "StartTimestamp"))
        .transpose()?;
    let end_ms = range
        .and_then(|r| field(r, "EndTimestamp"))
        .map(|v| timestamp_ms(v, "EndTimestamp"))
        .transpose()?;
    if let (Some(start), Some(end)) = (start_ms, end_ms)
        && end < start
    {
        return Err(VideoError::invalid(
            "EndTimestamp must be later than StartTimestamp.",
        ));
    }
    Ok(Some(Selection {
        source,
        start_ms,
        end_ms,
    }))
}

pub(super) fn key(entry: &FragmentEntry, source: playlist::TimestampSource) -> u64 {
    match source {
        playlist::TimestampSource::ProducerTimestamp => entry.producer_ms,
        playlist::TimestampSource::ServerTimestamp => entry.server_ms,
    }
}

pub(super) fn playlist_fragment(entry: &FragmentEntry) -> playlist::PlaylistFragment {
    playlist::PlaylistFragment {
        fragment_number: entry.number.clone(),
        producer_ms: entry.producer_ms,
        server_ms: entry.server_ms,
        duration_ms: entry.duration_ms,
    }
}

pub(super) fn remux_error(error: &remux::RemuxError) -> VideoError {
    let kind = match error.kvs_error_type() {
        "UnsupportedStreamMediaType" => ErrorKind::UnsupportedStreamMediaType,
        "MissingCodecPrivateData" => ErrorKind::MissingCodecPrivateData,
        "InvalidCodecPrivateData" => ErrorKind::InvalidCodecPrivateData,
        "InvalidMediaFrame" => ErrorKind::InvalidMediaFrame,
        "ResourceNotFound" => ErrorKind::ResourceNotFound,
        _ => ErrorKind::InvalidArgument,
    };
    VideoError::new(kind, error.to_string())
}

pub(super) fn fragment_error(error: &fragments::FragmentError) -> VideoError {
    VideoError::internal(error.to_string())
}

/// The query parameter `name` of `query`.
pub(super) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// ListFragments' NextToken: the selection and the offset, base64url of JSON.
pub(super) fn encode_token(selection: Option<Selection>, offset: usize) -> String {
    let value = json!({
        "o": offset,
        "s": selection.map(|s| json!({
            "p": s.source == playlist::TimestampSource::ProducerTimestamp,
            "a": s.start_ms,
            "b": s.end_ms,
        })),
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

pub(super) fn decode_token(token: &str) -> Result<(Option<Selection>, usize), VideoError> {
    let bad = || VideoError::invalid("NextToken is not valid.");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let offset = value.get("o").and_then(Value::as_u64).ok_or_else(bad)? as usize;
    let selection = value.get("s").filter(|s| !s.is_null()).map(|s| Selection {
        source: if s.get("p").and_then(Value::as_bool).unwrap_or(false) {
            playlist::TimestampSource::ProducerTimestamp
        } else {
            playlist::TimestampSource::ServerTimestamp
        },
        start_ms: s.get("a").and_then(Value::as_u64),
        end_ms: s.get("b").and_then(Value::as_u64),
    });
    Ok((selection, offset))
}
