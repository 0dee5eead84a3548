//! Request decoding and validation for the Kinesis JSON 1.1 and CBOR 1.1 protocols. Both parse
//! into the same document tree ([`JsonValue`]; CBOR adds byte strings and tagged timestamps), so
//! everything below applies to both; [`Obj::new_cbor`] only changes how an untagged timestamp
//! number reads (milliseconds rather than seconds).
//!
//! AWS checks a request in three passes, and so do we:
//! 1. **Types.** Every member present must have its JSON type (string, number, list, ...). The
//!    first mismatch is a `SerializationException` whose text imitates AWS's Java front end
//!    (`class java.lang.Boolean can not be converted to an String`). Bad base64 in a blob is
//!    also caught here.
//! 2. **Model constraints.** Required members, lengths, ranges, patterns and enums. Violations
//!    are collected (at most 10) into one `ValidationException`:
//!    `2 validation errors detected: Value null at 'streamName' failed to satisfy constraint:
//!    Member must not be null; Value '0' at 'shardCount' ...`. Paths are lowerCamelCase, list
//!    items are `records.1.member.data` (1-based).
//! 3. **Argument rules** that need the decoded values (hash key range, record and batch size,
//!    ListShards' NextToken/StreamName mix, StreamARN resolution): `InvalidArgumentException` or
//!    `ResourceNotFoundException`.
//!
//! The member order inside each pass follows the order kinesalite recorded from AWS; clients
//! that compare messages verbatim compare the first error and the count.
//!
//! ## Parser choice
//!
//! Bodies are parsed into a borrowed [`JsonValue`] tree by sonic-rs. `benches/protocols_json.rs`
//! measured on this machine (2 cores shared with other builds, load average 4-5, bench profile;
//! read the numbers as ratios), PutRecords body → `PutRecordsInput`, parse + validation + base64:
//!
//! | body | serde_json | sonic-rs |
//! |---|---|---|
//! | 500 × 100 B | 3.10 M records/s | 3.43 M records/s |
//! | 500 × 1 KiB | 1.32 M records/s | 1.47 M records/s |
//!
//! A whole PutRecords of 500 × 100 B through `handle_kinesis` (envelope, decode, a no-op API,
//! response encoding) ran at 1.33 M records/s, well above the 500 k records/s per core target.
//! The tree costs a few small allocations per record; a typed fast path that falls back to the
//! tree for error texts is the next step if this ever shows up in a profile.

use std::borrow::Cow;
use std::fmt::Write as _;

use sluice_core::api::{
    ConsumerRef, CreateStreamInput, DeleteStreamInput, DescribeStreamInput, EncryptionType,
    GetRecordsInput, GetShardIteratorInput, ListShardsInput, ListStreamConsumersInput,
    ListStreamsInput, ListTagsForStreamInput, MergeShardsInput, PutRecordInput, PutRecordsEntry,
    PutRecordsInput, RegisterStreamConsumerInput, ShardFilter, ShardIteratorType, SplitShardInput,
    StreamEncryptionInput, StreamMode, Tag, UpdateShardCountInput, UpdateStreamModeInput,
};
use sluice_core::hash_key::{ParseHashKeyError, parse_hash_key};
use sluice_core::{ErrorKind, KinesisError, limits};

use crate::json::{JsonValue, Number};

/// Where a request names its stream: this appliance's region and account, which a `StreamARN`
/// must match.
#[derive(Clone, Copy, Debug)]
pub struct Home<'a> {
    pub region: &'a str,
    pub account_id: &'a str,
}

// ---------------------------------------------------------------------------------------------
// Pass 1: JSON types.

const NUMBER_CLASS: &str = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
const LIST_HERE: &str = "Start of list found where not expected";
const MAP_HERE: &str = "Start of structure or map found where not expected.";
/// How the type errors name CBOR's byte strings and tagged timestamps, the Java classes a CBOR
/// front end would hold them in.
const BYTES_CLASS: &str = "class java.nio.HeapByteBuffer";
const DATE_CLASS: &str = "class java.util.Date";

fn serialization(message: impl Into<String>) -> KinesisError {
    KinesisError::new(ErrorKind::Serialization, message)
}

type Members<'v, 'a> = &'v [(Cow<'a, str>, JsonValue<'a>)];

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
    fn nested(&self, v: &'v JsonValue<'a>) -> Result<Obj<'v, 'a>, KinesisError> {
        as_structure(v).map(|value| Obj {
            value,
            cbor: self.cbor,
        })
    }

    fn get(&self, key: &str) -> Option<&'v JsonValue<'a>> {
        self.value.get(key)
    }

    fn string(&self, key: &str) -> Result<Option<&'v str>, KinesisError> {
        self.get(key).map(as_string).transpose()
    }

    /// An Integer member: floored, and capped at i32::MAX as AWS's Java front end does.
    fn integer(&self, key: &str) -> Result<Option<i64>, KinesisError> {
        self.get(key)
            .map(|v| as_number(v, "Integer").map(|n| n.floor_i64().min(i64::from(i32::MAX))))
            .transpose()
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, KinesisError> {
        self.get(key).map(as_boolean).transpose()
    }

    /// A timestamp member: epoch seconds (with a fraction) as a number, returned in ms.
    fn timestamp_ms(&self, key: &str) -> Result<Option<u64>, KinesisError> {
        self.get(key)
            .map(|v| as_timestamp_ms(v, self.cbor))
            .transpose()
    }

    fn blob(&self, key: &str) -> Result<Option<Vec<u8>>, KinesisError> {
        self.get(key).map(as_blob).transpose()
    }

    fn list(&self, key: &str) -> Result<Option<&'v [JsonValue<'a>]>, KinesisError> {
        match self.get(key) {
            None => Ok(None),
            Some(JsonValue::Array(items)) => Ok(Some(items)),
            Some(JsonValue::Object(_)) => Err(serialization(MAP_HERE)),
            Some(_) => Err(serialization("Expected list or null")),
        }
    }

    fn map(&self, key: &str) -> Result<Option<Members<'v, 'a>>, KinesisError> {
        match self.get(key) {
            None => Ok(None),
            Some(JsonValue::Object(members)) => Ok(Some(members)),
            Some(JsonValue::Array(_)) => Err(serialization(LIST_HERE)),
            Some(_) => Err(serialization("Expected map or null")),
        }
    }

    fn structure(&self, key: &str) -> Result<Option<Obj<'v, 'a>>, KinesisError> {
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

fn as_string<'v>(v: &'v JsonValue<'_>) -> Result<&'v str, KinesisError> {
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

fn as_number(v: &JsonValue<'_>, java_type: &str) -> Result<Number, KinesisError> {
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

fn as_boolean(v: &JsonValue<'_>) -> Result<bool, KinesisError> {
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

fn as_timestamp_ms(v: &JsonValue<'_>, cbor: bool) -> Result<u64, KinesisError> {
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

fn as_blob(v: &JsonValue<'_>) -> Result<Vec<u8>, KinesisError> {
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

/// Standard padded base64 as AWS accepts it. The fast path is base64-simd; the texts of the
/// failures (AWS's, typo included) come from a slow second look that only runs on bad input.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, KinesisError> {
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(text)
        && last_quantum_is_canonical(text.as_bytes())
    {
        return Ok(bytes);
    }
    Err(base64_error(text))
}

/// A padded final quantum must leave the unused low bits of its last data character zero
/// (`+/+=` is refused), as AWS's decoder requires.
fn last_quantum_is_canonical(text: &[u8]) -> bool {
    let value = |c: u8| -> u8 {
        match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    match text {
        [.., c, b'=', b'='] => value(*c) & 0x0f == 0,
        [.., c, b'='] => value(*c) & 0x03 == 0,
        _ => true,
    }
}

fn base64_error(text: &str) -> KinesisError {
    let prefix = format!("'{text}' can not be converted to a Blob: ");
    if !text.len().is_multiple_of(4) {
        return serialization(format!(
            "{prefix}Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            text.chars().count()
        ));
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let bad_char = !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        let pad_then_data = b == b'=' && bytes.get(i + 1).is_some_and(|&n| n != b'=');
        if bad_char || pad_then_data {
            let c = text[i..]
                .chars()
                .next()
                .expect("index is on a character boundary");
            return serialization(format!("{prefix}Invalid Base64 character: '{c}'"));
        }
    }
    serialization(format!(
        "{prefix}Invalid last non-pad Base64 character dectected"
    ))
}

// ---------------------------------------------------------------------------------------------
// Pass 2: model constraints.

/// The violations of one request, in the order they were found. Only the first 10 are kept,
/// as AWS reports at most 10.
#[derive(Default)]
pub struct Violations {
    items: Vec<String>,
}

/// How a value is echoed in a violation.
enum Shown<'s> {
    Null,
    Text(&'s str),
    Owned(String),
}

impl Violations {
    const MAX: usize = 10;

    fn push(&mut self, shown: Shown<'_>, path: &str, constraint: &str) {
        if self.items.len() >= Self::MAX {
            return;
        }
        let mut item = String::with_capacity(64 + path.len() + constraint.len());
        match shown {
            Shown::Null => item.push_str("Value null"),
            Shown::Text(t) => {
                let _ = write!(item, "Value '{t}'");
            }
            Shown::Owned(t) => {
                let _ = write!(item, "Value '{t}'");
            }
        }
        let _ = write!(
            item,
            " at '{path}' failed to satisfy constraint: {constraint}"
        );
        self.items.push(item);
    }

    fn finish(self) -> Result<(), KinesisError> {
        if self.items.is_empty() {
            return Ok(());
        }
        let n = self.items.len();
        let plural = if n == 1 { "error" } else { "errors" };
        Err(KinesisError::new(
            ErrorKind::Validation,
            format!(
                "{n} validation {plural} detected: {}",
                self.items.join("; ")
            ),
        ))
    }

    fn not_null<T>(&mut self, v: Option<T>, path: &str) {
        if v.is_none() {
            self.push(Shown::Null, path, "Member must not be null");
        }
    }

    /// Length in characters between `min` and `max` (either optional).
    fn str_len(&mut self, v: Option<&str>, path: &str, min: Option<usize>, max: Option<usize>) {
        let Some(s) = v else { return };
        let len = s.chars().count();
        if let Some(min) = min
            && len < min
        {
            self.push(
                Shown::Text(s),
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        }
        if let Some(max) = max
            && len > max
        {
            self.push(
                Shown::Text(s),
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn pattern(&mut self, v: Option<&str>, path: &str, matches: fn(&str) -> bool, pattern: &str) {
        let Some(s) = v else { return };
        if !matches(s) {
            self.push(
                Shown::Text(s),
                path,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    fn range(&mut self, v: Option<i64>, path: &str, min: i64, max: Option<i64>) {
        let Some(n) = v else { return };
        if n < min {
            self.push(
                Shown::Owned(n.to_string()),
                path,
                &format!("Member must have value greater than or equal to {min}"),
            );
        }
        if let Some(max) = max
            && n > max
        {
            self.push(
                Shown::Owned(n.to_string()),
                path,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    fn one_of(&mut self, v: Option<&str>, path: &str, allowed: &[&str]) {
        let Some(s) = v else { return };
        if !allowed.contains(&s) {
            self.push(
                Shown::Text(s),
                path,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            );
        }
    }

    fn blob_max(&mut self, v: Option<&[u8]>, path: &str, max: usize) {
        let Some(b) = v else { return };
        if b.len() > max {
            let n = b.len();
            self.push(
                Shown::Owned(format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]")),
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn stream_name(&mut self, v: Option<&str>, path: &str) {
        self.pattern(v, path, is_name, NAME_PATTERN);
        self.str_len(v, path, Some(1), Some(limits::STREAM_NAME_CHARS_MAX));
    }

    fn stream_arn(&mut self, v: Option<&str>) {
        self.pattern(
            v,
            "streamARN",
            |s| parse_stream_arn(s).is_some(),
            STREAM_ARN_PATTERN,
        );
        self.str_len(v, "streamARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }

    fn tag_map(&mut self, v: Option<Members<'_, '_>>, tags: &[Tag], path: &str) {
        let Some(members) = v else { return };
        let shown = || {
            let mut s = String::from("{");
            for (i, t) in tags.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{}={}", t.key, t.value);
            }
            s.push('}');
            s
        };
        if members.is_empty() {
            self.push(
                Shown::Owned(shown()),
                path,
                "Member must have length greater than or equal to 1",
            );
        }
        if tags.len() > TAG_MAP_ENTRIES_MAX {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!("Member must have length less than or equal to {TAG_MAP_ENTRIES_MAX}"),
            );
        }
        if !tags
            .iter()
            .all(|t| (1..=limits::TAG_KEY_CHARS_MAX).contains(&t.key.chars().count()))
        {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!(
                    "Map keys must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
                    limits::TAG_KEY_CHARS_MAX
                ),
            );
        }
        if !tags
            .iter()
            .all(|t| t.value.chars().count() <= limits::TAG_VALUE_CHARS_MAX)
        {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!(
                    "Map value must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 0]",
                    limits::TAG_VALUE_CHARS_MAX
                ),
            );
        }
    }
}

const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
const SEQUENCE_NUMBER_PATTERN: &str = "0|([1-9]\\d{0,128})";
const STREAM_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";
const STREAM_ARN_CHARS_MAX: usize = 2048;
const SHARD_ITERATOR_CHARS_MAX: usize = 512;
const NEXT_TOKEN_CHARS_MAX: usize = 1_048_576;
const LIST_LIMIT_MAX: i64 = 10_000;
const LIST_TAGS_LIMIT_MAX: i64 = 50;
const TAG_KEYS_MAX: usize = 50;
/// The model's TagMap bound for one call; how many tags a stream may hold (50) is the
/// implementation's rule.
const TAG_MAP_ENTRIES_MAX: usize = 200;
/// The model's own cap on a Data blob: the largest maximum record size UpdateMaxRecordSize can
/// set. The stream's own maximum (1 MiB unless raised) is checked by the implementation, with
/// the same ValidationException text (see `sluice_core::api::check_record_sizes`).
const DATA_BYTES_MAX: usize = 10 * 1024 * 1024;
/// AWS echoes list members it cannot print as this Java object name.
const PUT_RECORDS_ENTRY_SHOWN: &str =
    "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310";
/// The ShardIteratorType enum in the order AWS prints it (a Java hash-set order, as recorded by
/// kinesalite's tests against AWS).
const SHARD_ITERATOR_TYPES: [&str; 5] = [
    "AFTER_SEQUENCE_NUMBER",
    "LATEST",
    "AT_TIMESTAMP",
    "AT_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
];
const STREAM_MODES: [&str; 2] = ["PROVISIONED", "ON_DEMAND"];
const SHARD_FILTER_TYPES: [&str; 6] = [
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `0|([1-9]\d{0,max_more})`.
fn is_decimal_pattern(s: &str, max_more: usize) -> bool {
    match s.as_bytes() {
        [b'0'] => true,
        [first, rest @ ..] => {
            (b'1'..=b'9').contains(first)
                && rest.len() <= max_more
                && rest.iter().all(u8::is_ascii_digit)
        }
        [] => false,
    }
}

fn is_hash_key(s: &str) -> bool {
    is_decimal_pattern(s, 38)
}

fn is_sequence_number(s: &str) -> bool {
    is_decimal_pattern(s, 128)
}

/// The parts of `arn:aws:kinesis:<region>:<account>:stream/<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamArn<'s> {
    pub region: &'s str,
    pub account_id: &'s str,
    pub stream_name: &'s str,
}

pub fn parse_stream_arn(arn: &str) -> Option<StreamArn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (region, account_id, resource) = (parts.next()?, parts.next()?, parts.next()?);
    let stream_name = resource.strip_prefix("stream/")?;
    let ok = scheme == "arn"
        && partition.starts_with("aws")
        && service == "kinesis"
        && account_id.len() == 12
        && account_id.bytes().all(|b| b.is_ascii_digit())
        && !stream_name.is_empty()
        && !stream_name.chars().any(char::is_whitespace);
    ok.then_some(StreamArn {
        region,
        account_id,
        stream_name,
    })
}

// ---------------------------------------------------------------------------------------------
// Pass 3 helpers.

/// The stream a request names by `StreamName` and/or `StreamARN`, after both were validated.
fn resolve_stream(
    home: Home<'_>,
    name: Option<&str>,
    arn: Option<&str>,
) -> Result<String, KinesisError> {
    let Some(arn) = arn else {
        return Ok(name
            .expect("validation required a StreamName when StreamARN is absent")
            .to_owned());
    };
    let parsed = parse_stream_arn(arn).expect("validation checked the StreamARN pattern");
    if parsed.region != home.region
        || parsed.account_id != home.account_id
        || !is_name(parsed.stream_name)
    {
        return Err(KinesisError::stream_not_found(
            parsed.stream_name,
            parsed.account_id,
        ));
    }
    if let Some(name) = name
        && name != parsed.stream_name
    {
        return Err(KinesisError::invalid_argument(format!(
            "StreamARN {arn} and StreamName {name} do not name the same stream."
        )));
    }
    Ok(parsed.stream_name.to_owned())
}

/// Validates the `StreamName`/`StreamARN` pair of an operation that needs one of them.
fn stream_members(v: &mut Violations, name: Option<&str>, arn: Option<&str>) {
    if arn.is_none() {
        v.not_null(name, "streamName");
    }
    v.stream_name(name, "streamName");
    v.stream_arn(arn);
}

fn explicit_hash_key(text: &str) -> Result<u128, KinesisError> {
    match parse_hash_key(text) {
        Ok(key) => Ok(key),
        Err(ParseHashKeyError::NotDecimal | ParseHashKeyError::OutOfRange) => {
            Err(KinesisError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            )))
        }
    }
}

fn record_too_large(partition_key: &str, data_len: usize) -> Option<KinesisError> {
    let total = partition_key.len() + data_len;
    (total > DATA_BYTES_MAX).then(|| {
        KinesisError::invalid_argument(format!(
            "The record size ({total} bytes of partition key and data) exceeds the maximum record size of {DATA_BYTES_MAX} bytes."
        ))
    })
}

fn to_u32(v: Option<i64>) -> Option<u32> {
    // Called after validation, so values are in range; negative leftovers clamp to 0.
    v.map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

// ---------------------------------------------------------------------------------------------
// Operations.

fn tags_of(members: Option<Members<'_, '_>>) -> Result<Vec<Tag>, KinesisError> {
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

pub fn create_stream(body: Obj<'_, '_>) -> Result<CreateStreamInput, KinesisError> {
    let shard_count = body.integer("ShardCount")?;
    let stream_name = body.string("StreamName")?;
    let mode_details = body.structure("StreamModeDetails")?;
    let stream_mode = mode_details.map(|d| d.string("StreamMode")).transpose()?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;

    let mut v = Violations::default();
    v.range(
        shard_count,
        "shardCount",
        1,
        Some(i64::from(limits::SHARD_COUNT_MAX)),
    );
    v.not_null(stream_name, "streamName");
    v.stream_name(stream_name, "streamName");
    if mode_details.is_some() {
        let mode = stream_mode.flatten();
        v.not_null(mode, "streamModeDetails.streamMode");
        v.one_of(mode, "streamModeDetails.streamMode", &STREAM_MODES);
    }
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;

    let stream_mode = match stream_mode.flatten() {
        Some("ON_DEMAND") => Some(StreamMode::OnDemand),
        Some(_) => Some(StreamMode::Provisioned),
        None => None,
    };
    Ok(CreateStreamInput {
        stream_name: stream_name.expect("validated as not null").to_owned(),
        shard_count: to_u32(shard_count),
        stream_mode,
        tags,
    })
}

/// Decodes just the stream of an operation whose only input is the stream.
pub fn stream_only(home: Home<'_>, body: Obj<'_, '_>) -> Result<String, KinesisError> {
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    stream_members(&mut v, name, arn);
    v.finish()?;
    resolve_stream(home, name, arn)
}

pub fn delete_stream(home: Home<'_>, body: Obj<'_, '_>) -> Result<DeleteStreamInput, KinesisError> {
    let enforce = body.boolean("EnforceConsumerDeletion")?;
    let stream_name = stream_only(home, body)?;
    Ok(DeleteStreamInput {
        stream_name,
        enforce_consumer_deletion: enforce.unwrap_or(false),
    })
}

pub fn describe_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<DescribeStreamInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartShardId")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.range(limit, "limit", 1, Some(LIST_LIMIT_MAX));
    v.stream_name(start, "exclusiveStartShardId");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(DescribeStreamInput {
        stream_name: resolve_stream(home, name, arn)?,
        limit: to_u32(limit),
        exclusive_start_shard_id: start.map(str::to_owned),
    })
}

pub fn list_streams(body: Obj<'_, '_>) -> Result<ListStreamsInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartStreamName")?;
    let next_token = body.string("NextToken")?;
    let mut v = Violations::default();
    v.range(limit, "limit", 1, Some(LIST_LIMIT_MAX));
    v.stream_name(start, "exclusiveStartStreamName");
    v.str_len(next_token, "nextToken", Some(1), Some(NEXT_TOKEN_CHARS_MAX));
    v.finish()?;
    Ok(ListStreamsInput {
        limit: to_u32(limit),
        exclusive_start_stream_name: start.map(str::to_owned),
        next_token: next_token.map(str::to_owned),
    })
}

pub fn list_shards(home: Home<'_>, body: Obj<'_, '_>) -> Result<ListShardsInput, KinesisError> {
    let start = body.string("ExclusiveStartShardId")?;
    let max_results = body.integer("MaxResults")?;
    let next_token = body.string("NextToken")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let filter = body.structure("ShardFilter")?;
    let (filter_type, filter_shard_id, filter_timestamp_ms) = match filter {
        Some(f) => (
            f.string("Type")?,
            f.string("ShardId")?,
            f.timestamp_ms("Timestamp")?,
        ),
        None => (None, None, None),
    };

    let mut v = Violations::default();
    v.stream_name(start, "exclusiveStartShardId");
    v.range(max_results, "maxResults", 1, Some(LIST_LIMIT_MAX));
    v.str_len(next_token, "nextToken", Some(1), Some(NEXT_TOKEN_CHARS_MAX));
    v.stream_name(name, "streamName");
    v.stream_arn(arn);
    if filter.is_some() {
        v.not_null(filter_type, "shardFilter.type");
        v.one_of(filter_type, "shardFilter.type", &SHARD_FILTER_TYPES);
        v.stream_name(filter_shard_id, "shardFilter.shardId");
    }
    v.finish()?;

    let names_stream = name.is_some() || arn.is_some();
    if next_token.is_some() && names_stream {
        return Err(KinesisError::invalid_argument(
            "NextToken and StreamName cannot be provided together.",
        ));
    }
    if next_token.is_none() && !names_stream {
        return Err(KinesisError::invalid_argument(
            "Either NextToken or StreamName should be provided.",
        ));
    }
    let stream_name = if names_stream {
        Some(resolve_stream(home, name, arn)?)
    } else {
        None
    };

    let shard_filter = match filter_type {
        None => None,
        Some(t) => Some(match t {
            "AFTER_SHARD_ID" => ShardFilter::AfterShardId(
                filter_shard_id
                    .ok_or_else(|| {
                        KinesisError::invalid_argument(
                            "ShardId must be specified for ShardFilter type AFTER_SHARD_ID.",
                        )
                    })?
                    .to_owned(),
            ),
            "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
            "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
            "AT_LATEST" => ShardFilter::AtLatest,
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {
                let ms = filter_timestamp_ms.ok_or_else(|| {
                    KinesisError::invalid_argument(format!(
                        "Timestamp must be specified for ShardFilter type {t}."
                    ))
                })?;
                if t == "AT_TIMESTAMP" {
                    ShardFilter::AtTimestamp(ms)
                } else {
                    ShardFilter::FromTimestamp(ms)
                }
            }
            _ => unreachable!("validation checked the ShardFilter type enum"),
        }),
    };

    Ok(ListShardsInput {
        stream_name,
        next_token: next_token.map(str::to_owned),
        exclusive_start_shard_id: start.map(str::to_owned),
        max_results: to_u32(max_results),
        stream_creation_timestamp_ms: created_ms,
        shard_filter,
    })
}

pub fn put_record(home: Home<'_>, body: Obj<'_, '_>) -> Result<PutRecordInput, KinesisError> {
    let ordering = body.string("SequenceNumberForOrdering")?;
    let partition_key = body.string("PartitionKey")?;
    let hash_key = body.string("ExplicitHashKey")?;
    let data = body.blob("Data")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.pattern(
        ordering,
        "sequenceNumberForOrdering",
        is_sequence_number,
        SEQUENCE_NUMBER_PATTERN,
    );
    v.not_null(partition_key, "partitionKey");
    v.str_len(
        partition_key,
        "partitionKey",
        Some(1),
        Some(limits::PARTITION_KEY_CHARS_MAX),
    );
    v.pattern(hash_key, "explicitHashKey", is_hash_key, HASH_KEY_PATTERN);
    v.not_null(data.as_ref(), "data");
    v.blob_max(data.as_deref(), "data", DATA_BYTES_MAX);
    stream_members(&mut v, name, arn);
    v.finish()?;

    let partition_key = partition_key.expect("validated as not null");
    let data = data.expect("validated as not null");
    let explicit_hash_key = hash_key.map(explicit_hash_key).transpose()?;
    if let Some(e) = record_too_large(partition_key, data.len()) {
        return Err(e);
    }
    Ok(PutRecordInput {
        stream_name: resolve_stream(home, name, arn)?,
        record: PutRecordsEntry {
            data,
            partition_key: partition_key.to_owned(),
            explicit_hash_key,
        },
        sequence_number_for_ordering: ordering.map(str::to_owned),
    })
}

/// One PutRecords entry after pass 1.
struct RawEntry<'v> {
    partition_key: Option<&'v str>,
    explicit_hash_key: Option<&'v str>,
    data: Option<Vec<u8>>,
}

pub fn put_records(home: Home<'_>, body: Obj<'_, '_>) -> Result<PutRecordsInput, KinesisError> {
    let records = body.list("Records")?;
    let mut raw = Vec::with_capacity(records.map_or(0, <[_]>::len));
    for item in records.unwrap_or_default() {
        if matches!(item, JsonValue::Null) {
            raw.push(RawEntry {
                partition_key: None,
                explicit_hash_key: None,
                data: None,
            });
            continue;
        }
        let entry = body.nested(item)?;
        raw.push(RawEntry {
            partition_key: entry.string("PartitionKey")?,
            explicit_hash_key: entry.string("ExplicitHashKey")?,
            data: entry.blob("Data")?,
        });
    }
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    match records {
        None => v.not_null(records, "records"),
        Some(items) => {
            let shown = || {
                let mut s = String::from("[");
                for i in 0..items.len() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(PUT_RECORDS_ENTRY_SHOWN);
                }
                s.push(']');
                s
            };
            if items.is_empty() {
                v.push(
                    Shown::Owned(shown()),
                    "records",
                    "Member must have length greater than or equal to 1",
                );
            }
            if items.len() > limits::PUT_RECORDS_ENTRIES_MAX {
                v.push(
                    Shown::Owned(shown()),
                    "records",
                    &format!(
                        "Member must have length less than or equal to {}",
                        limits::PUT_RECORDS_ENTRIES_MAX
                    ),
                );
            }
        }
    }
    let mut path = String::new();
    for (i, entry) in raw.iter().enumerate() {
        let is_valid = entry
            .partition_key
            .is_some_and(|k| !k.is_empty() && k.len() <= limits::PARTITION_KEY_CHARS_MAX)
            && entry.explicit_hash_key.is_none_or(is_hash_key)
            && entry
                .data
                .as_ref()
                .is_some_and(|d| d.len() <= DATA_BYTES_MAX);
        if is_valid {
            continue;
        }
        let mut at = |member: &str| {
            path.clear();
            let _ = write!(path, "records.{}.member.{member}", i + 1);
            path.clone()
        };
        v.not_null(entry.partition_key, &at("partitionKey"));
        v.str_len(
            entry.partition_key,
            &at("partitionKey"),
            Some(1),
            Some(limits::PARTITION_KEY_CHARS_MAX),
        );
        v.pattern(
            entry.explicit_hash_key,
            &at("explicitHashKey"),
            is_hash_key,
            HASH_KEY_PATTERN,
        );
        v.not_null(entry.data.as_ref(), &at("data"));
        v.blob_max(entry.data.as_deref(), &at("data"), DATA_BYTES_MAX);
    }
    stream_members(&mut v, name, arn);
    v.finish()?;

    let mut total_bytes = 0usize;
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let partition_key = entry.partition_key.expect("validated as not null");
        let data = entry.data.expect("validated as not null");
        let explicit_hash_key = entry.explicit_hash_key.map(explicit_hash_key).transpose()?;
        if let Some(e) = record_too_large(partition_key, data.len()) {
            return Err(e);
        }
        total_bytes += partition_key.len() + data.len();
        entries.push(PutRecordsEntry {
            data,
            partition_key: partition_key.to_owned(),
            explicit_hash_key,
        });
    }
    // The 5 MiB limit of a stream with the default record size is the implementation's check.
    if total_bytes > sluice_core::api::PUT_RECORDS_LARGE_BYTES_MAX {
        return Err(KinesisError::invalid_argument(
            "Records size exceeds 10 MB limit",
        ));
    }
    Ok(PutRecordsInput {
        stream_name: resolve_stream(home, name, arn)?,
        records: entries,
    })
}

pub fn get_shard_iterator(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<GetShardIteratorInput, KinesisError> {
    let shard_id = body.string("ShardId")?;
    let iterator_type = body.string("ShardIteratorType")?;
    let starting = body.string("StartingSequenceNumber")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let timestamp_ms = body.timestamp_ms("Timestamp")?;

    let mut v = Violations::default();
    v.not_null(shard_id, "shardId");
    v.stream_name(shard_id, "shardId");
    v.not_null(iterator_type, "shardIteratorType");
    v.one_of(iterator_type, "shardIteratorType", &SHARD_ITERATOR_TYPES);
    v.pattern(
        starting,
        "startingSequenceNumber",
        is_sequence_number,
        SEQUENCE_NUMBER_PATTERN,
    );
    stream_members(&mut v, name, arn);
    v.finish()?;

    Ok(GetShardIteratorInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_id: shard_id.expect("validated as not null").to_owned(),
        shard_iterator_type: ShardIteratorType::parse(
            iterator_type.expect("validated as not null"),
        )
        .expect("validated against the enum"),
        starting_sequence_number: starting.map(str::to_owned),
        timestamp_ms,
    })
}

pub fn get_records(body: Obj<'_, '_>) -> Result<GetRecordsInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let iterator = body.string("ShardIterator")?;
    // StreamARN is informational on GetRecords: the iterator names the stream.
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.range(
        limit,
        "limit",
        1,
        Some(i64::from(limits::GET_RECORDS_LIMIT_MAX)),
    );
    v.not_null(iterator, "shardIterator");
    v.str_len(
        iterator,
        "shardIterator",
        Some(1),
        Some(SHARD_ITERATOR_CHARS_MAX),
    );
    v.stream_arn(arn);
    v.finish()?;

    Ok(GetRecordsInput {
        shard_iterator: iterator.expect("validated as not null").to_owned(),
        limit: to_u32(limit),
    })
}

pub fn add_tags_to_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<Tag>), KinesisError> {
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(tag_members, "tags");
    v.tag_map(tag_members, &tags, "tags");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((resolve_stream(home, name, arn)?, tags))
}

pub fn remove_tags_from_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<String>), KinesisError> {
    let items = body.list("TagKeys")?;
    let mut keys = Vec::with_capacity(items.map_or(0, <[_]>::len));
    for item in items.unwrap_or_default() {
        if !matches!(item, JsonValue::Null) {
            keys.push(as_string(item)?.to_owned());
        }
    }
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(items, "tagKeys");
    if items.is_some() {
        let shown = || format!("[{}]", keys.join(", "));
        if keys.is_empty() {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                "Member must have length greater than or equal to 1",
            );
        }
        if keys.len() > TAG_KEYS_MAX {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                &format!("Member must have length less than or equal to {TAG_KEYS_MAX}"),
            );
        }
        if !keys
            .iter()
            .all(|k| (1..=limits::TAG_KEY_CHARS_MAX).contains(&k.chars().count()))
        {
            v.push(
                Shown::Owned(shown()),
                "tagKeys",
                &format!(
                    "Member must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
                    limits::TAG_KEY_CHARS_MAX
                ),
            );
        }
    }
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((resolve_stream(home, name, arn)?, keys))
}

pub fn list_tags_for_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<ListTagsForStreamInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartTagKey")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.range(limit, "limit", 1, Some(LIST_TAGS_LIMIT_MAX));
    v.str_len(
        start,
        "exclusiveStartTagKey",
        Some(1),
        Some(limits::TAG_KEY_CHARS_MAX),
    );
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(ListTagsForStreamInput {
        stream_name: resolve_stream(home, name, arn)?,
        exclusive_start_tag_key: start.map(str::to_owned),
        limit: to_u32(limit),
    })
}

/// Increase- and DecreaseStreamRetentionPeriod. The model gives the hours no range; the
/// implementation answers out-of-range values with AWS's InvalidArgument texts.
pub fn retention_period(home: Home<'_>, body: Obj<'_, '_>) -> Result<(String, u32), KinesisError> {
    let hours = body.integer("RetentionPeriodHours")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(hours, "retentionPeriodHours");
    stream_members(&mut v, name, arn);
    v.finish()?;
    let hours = to_u32(hours).expect("validated as not null");
    Ok((resolve_stream(home, name, arn)?, hours))
}

// ---------------------------------------------------------------------------------------------
// Resharding, stream settings, account settings, consumers and operations on resource ARNs.
//
// These follow the same three passes. Their model constraints come from botocore 1.44.8's
// `service-2.json`; the member order inside each pass is alphabetical, the order kinesalite
// recorded for SplitShard and MergeShards.

const SCALING_TYPES: [&str; 1] = ["UNIFORM_SCALING"];
const ENCRYPTION_TYPES: [&str; 2] = ["NONE", "KMS"];
const BILLING_COMMITMENT_STATUSES: [&str; 2] = ["ENABLED", "DISABLED"];
const KEY_ID_CHARS_MAX: usize = 2048;
const METRICS_NAMES_MAX: usize = 7;
const CONSUMER_ARN_PATTERN: &str = "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+";
const RESOURCE_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:.*(stream|channel|queue)/\\S+";

/// The model's ConsumerARN pattern (the `.*` before `stream/` is taken as empty, which is what
/// every ARN this appliance issues has).
fn is_consumer_arn(s: &str) -> bool {
    sluice_core::consumer::ConsumerArn::parse(s).is_some_and(|arn| {
        arn.account_id.len() == 12 && arn.account_id.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The model's ResourceARN pattern: a Kinesis ARN of a 12-digit account whose resource is a
/// stream, channel or queue path.
fn is_resource_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some(scheme), Some(partition), Some(service), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let kind_ok = ["stream/", "channel/", "queue/"].iter().any(|kind| {
        resource.match_indices(kind).any(|(at, _)| {
            let rest = &resource[at + kind.len()..];
            !rest.is_empty() && !rest.chars().any(char::is_whitespace)
        })
    });
    scheme == "arn"
        && partition.starts_with("aws")
        && service == "kinesis"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && kind_ok
}

/// A list of strings (null items skipped), for TagKeys and ShardLevelMetrics.
fn string_list<'v>(items: Option<&'v [JsonValue<'_>]>) -> Result<Vec<&'v str>, KinesisError> {
    let mut out = Vec::with_capacity(items.map_or(0, <[_]>::len));
    for item in items.unwrap_or_default() {
        if !matches!(item, JsonValue::Null) {
            out.push(as_string(item)?);
        }
    }
    Ok(out)
}

impl Violations {
    /// A list's length against the model's `min`/`max`, echoing the list as AWS prints it.
    fn list_len(&mut self, items: Option<&[&str]>, path: &str, min: usize, max: usize) {
        let Some(items) = items else { return };
        let shown = || format!("[{}]", items.join(", "));
        if items.len() < min {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!("Member must have length greater than or equal to {min}"),
            );
        }
        if items.len() > max {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!("Member must have length less than or equal to {max}"),
            );
        }
    }

    fn shard_id(&mut self, v: Option<&str>, path: &str) {
        self.not_null(v, path);
        self.stream_name(v, path);
    }

    fn resource_arn(&mut self, v: Option<&str>) {
        self.not_null(v, "resourceARN");
        self.pattern(v, "resourceARN", is_resource_arn, RESOURCE_ARN_PATTERN);
        self.str_len(v, "resourceARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }

    fn consumer_arn(&mut self, v: Option<&str>) {
        self.pattern(v, "consumerARN", is_consumer_arn, CONSUMER_ARN_PATTERN);
        self.str_len(v, "consumerARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }
}

pub fn split_shard(home: Home<'_>, body: Obj<'_, '_>) -> Result<SplitShardInput, KinesisError> {
    let key = body.string("NewStartingHashKey")?;
    let shard = body.string("ShardToSplit")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(key, "newStartingHashKey");
    v.pattern(key, "newStartingHashKey", is_hash_key, HASH_KEY_PATTERN);
    v.shard_id(shard, "shardToSplit");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(SplitShardInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_to_split: shard.expect("validated as not null").to_owned(),
        new_starting_hash_key: key.expect("validated as not null").to_owned(),
    })
}

pub fn merge_shards(home: Home<'_>, body: Obj<'_, '_>) -> Result<MergeShardsInput, KinesisError> {
    let adjacent = body.string("AdjacentShardToMerge")?;
    let shard = body.string("ShardToMerge")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.shard_id(adjacent, "adjacentShardToMerge");
    v.shard_id(shard, "shardToMerge");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(MergeShardsInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_to_merge: shard.expect("validated as not null").to_owned(),
        adjacent_shard_to_merge: adjacent.expect("validated as not null").to_owned(),
    })
}

pub fn update_shard_count(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<UpdateShardCountInput, KinesisError> {
    let scaling_type = body.string("ScalingType")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let target = body.integer("TargetShardCount")?;
    let mut v = Violations::default();
    v.not_null(scaling_type, "scalingType");
    v.one_of(scaling_type, "scalingType", &SCALING_TYPES);
    stream_members(&mut v, name, arn);
    v.not_null(target, "targetShardCount");
    v.range(target, "targetShardCount", 1, None);
    v.finish()?;
    Ok(UpdateShardCountInput {
        stream_name: resolve_stream(home, name, arn)?,
        target_shard_count: to_u32(target).expect("validated as not null"),
    })
}

pub fn update_stream_mode(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<UpdateStreamModeInput, KinesisError> {
    let arn = body.string("StreamARN")?;
    let details = body.structure("StreamModeDetails")?;
    let mode = details
        .map(|d| d.string("StreamMode"))
        .transpose()?
        .flatten();
    let warm = body.integer("WarmThroughputMiBps")?;
    let mut v = Violations::default();
    v.not_null(arn, "streamARN");
    v.stream_arn(arn);
    v.not_null(details.map(|_| ()), "streamModeDetails");
    if details.is_some() {
        v.not_null(mode, "streamModeDetails.streamMode");
        v.one_of(mode, "streamModeDetails.streamMode", &STREAM_MODES);
    }
    v.range(warm, "warmThroughputMiBps", 0, None);
    v.finish()?;
    Ok(UpdateStreamModeInput {
        stream_name: resolve_stream(home, None, arn)?,
        stream_mode: match mode {
            Some("ON_DEMAND") => StreamMode::OnDemand,
            _ => StreamMode::Provisioned,
        },
        warm_throughput_mibps: to_u32(warm),
    })
}

/// Enable- and DisableEnhancedMonitoring: the stream and the metric names. The names' enum is
/// checked by the implementation, which reports AWS's set-valued constraint text.
pub fn enhanced_monitoring(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<String>), KinesisError> {
    let items = body.list("ShardLevelMetrics")?;
    let metrics = string_list(items)?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(items, "shardLevelMetrics");
    v.list_len(
        items.map(|_| metrics.as_slice()),
        "shardLevelMetrics",
        1,
        METRICS_NAMES_MAX,
    );
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((
        resolve_stream(home, name, arn)?,
        metrics.into_iter().map(str::to_owned).collect(),
    ))
}

pub fn update_max_record_size(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, u32), KinesisError> {
    let arn = body.string("StreamARN")?;
    let kib = body.integer("MaxRecordSizeInKiB")?;
    let mut v = Violations::default();
    // The model leaves StreamARN optional for the reserved StreamId, which this appliance does
    // not issue, so the ARN is what names the stream.
    v.not_null(arn, "streamARN");
    v.stream_arn(arn);
    v.not_null(kib, "maxRecordSizeInKiB");
    v.range(
        kib,
        "maxRecordSizeInKiB",
        i64::from(sluice_core::control::MAX_RECORD_SIZE_KIB_MIN),
        Some(i64::from(sluice_core::control::MAX_RECORD_SIZE_KIB_MAX)),
    );
    v.finish()?;
    Ok((
        resolve_stream(home, None, arn)?,
        to_u32(kib).expect("validated as not null"),
    ))
}

/// Start- and StopStreamEncryption.
pub fn stream_encryption(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<StreamEncryptionInput, KinesisError> {
    let encryption_type = body.string("EncryptionType")?;
    let key_id = body.string("KeyId")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(encryption_type, "encryptionType");
    v.one_of(encryption_type, "encryptionType", &ENCRYPTION_TYPES);
    v.not_null(key_id, "keyId");
    v.str_len(key_id, "keyId", Some(1), Some(KEY_ID_CHARS_MAX));
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(StreamEncryptionInput {
        stream_name: resolve_stream(home, name, arn)?,
        encryption_type: match encryption_type {
            Some("KMS") => EncryptionType::Kms,
            _ => EncryptionType::None,
        },
        key_id: key_id.expect("validated as not null").to_owned(),
    })
}

pub fn update_stream_warm_throughput(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, u32), KinesisError> {
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let warm = body.integer("WarmThroughputMiBps")?;
    let mut v = Violations::default();
    stream_members(&mut v, name, arn);
    v.not_null(warm, "warmThroughputMiBps");
    v.range(warm, "warmThroughputMiBps", 0, None);
    v.finish()?;
    Ok((
        resolve_stream(home, name, arn)?,
        to_u32(warm).expect("validated as not null"),
    ))
}

/// UpdateAccountSettings: whether the requested commitment status is ENABLED.
pub fn update_account_settings(body: Obj<'_, '_>) -> Result<bool, KinesisError> {
    let commitment = body.structure("MinimumThroughputBillingCommitment")?;
    let status = commitment
        .map(|c| c.string("Status"))
        .transpose()?
        .flatten();
    let mut v = Violations::default();
    v.not_null(commitment.map(|_| ()), "minimumThroughputBillingCommitment");
    if commitment.is_some() {
        v.not_null(status, "minimumThroughputBillingCommitment.status");
        v.one_of(
            status,
            "minimumThroughputBillingCommitment.status",
            &BILLING_COMMITMENT_STATUSES,
        );
    }
    v.finish()?;
    Ok(status == Some("ENABLED"))
}

pub fn register_stream_consumer(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<RegisterStreamConsumerInput, KinesisError> {
    let consumer_name = body.string("ConsumerName")?;
    let arn = body.string("StreamARN")?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let mut v = Violations::default();
    v.not_null(consumer_name, "consumerName");
    v.stream_name(consumer_name, "consumerName");
    v.not_null(arn, "streamARN");
    v.stream_arn(arn);
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;
    Ok(RegisterStreamConsumerInput {
        stream_name: resolve_stream(home, None, arn)?,
        consumer_name: consumer_name.expect("validated as not null").to_owned(),
        tags,
    })
}

/// Describe- and DeregisterStreamConsumer: a consumer by ConsumerARN, or by StreamARN plus
/// ConsumerName.
pub fn consumer_ref(home: Home<'_>, body: Obj<'_, '_>) -> Result<ConsumerRef, KinesisError> {
    let consumer_arn = body.string("ConsumerARN")?;
    let consumer_name = body.string("ConsumerName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.consumer_arn(consumer_arn);
    v.stream_name(consumer_name, "consumerName");
    v.stream_arn(arn);
    v.finish()?;
    if let Some(consumer_arn) = consumer_arn {
        return Ok(ConsumerRef::Arn(consumer_arn.to_owned()));
    }
    match (arn, consumer_name) {
        (Some(arn), Some(consumer_name)) => Ok(ConsumerRef::Name {
            stream_name: resolve_stream(home, None, Some(arn))?,
            consumer_name: consumer_name.to_owned(),
        }),
        _ => Err(KinesisError::invalid_argument(
            "Either ConsumerARN or both ConsumerName and StreamARN must be provided.",
        )),
    }
}

pub fn list_stream_consumers(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<ListStreamConsumersInput, KinesisError> {
    let max_results = body.integer("MaxResults")?;
    let next_token = body.string("NextToken")?;
    let arn = body.string("StreamARN")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let mut v = Violations::default();
    v.range(max_results, "maxResults", 1, Some(LIST_LIMIT_MAX));
    v.str_len(next_token, "nextToken", Some(1), Some(NEXT_TOKEN_CHARS_MAX));
    v.not_null(arn, "streamARN");
    v.stream_arn(arn);
    v.finish()?;
    Ok(ListStreamConsumersInput {
        stream_name: resolve_stream(home, None, arn)?,
        next_token: next_token.map(str::to_owned),
        max_results: to_u32(max_results),
        stream_creation_timestamp_ms: created_ms,
    })
}

/// Get-, Delete- and ListTagsForResource: just the ResourceARN.
pub fn resource_arn(body: Obj<'_, '_>) -> Result<String, KinesisError> {
    let arn = body.string("ResourceARN")?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.finish()?;
    Ok(arn.expect("validated as not null").to_owned())
}

pub fn put_resource_policy(body: Obj<'_, '_>) -> Result<(String, String), KinesisError> {
    let policy = body.string("Policy")?;
    let arn = body.string("ResourceARN")?;
    let mut v = Violations::default();
    v.not_null(policy, "policy");
    v.resource_arn(arn);
    v.finish()?;
    Ok((
        arn.expect("validated as not null").to_owned(),
        policy.expect("validated as not null").to_owned(),
    ))
}

pub fn tag_resource(body: Obj<'_, '_>) -> Result<(String, Vec<Tag>), KinesisError> {
    let arn = body.string("ResourceARN")?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.not_null(tag_members, "tags");
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;
    Ok((arn.expect("validated as not null").to_owned(), tags))
}

pub fn untag_resource(body: Obj<'_, '_>) -> Result<(String, Vec<String>), KinesisError> {
    let arn = body.string("ResourceARN")?;
    let items = body.list("TagKeys")?;
    let keys = string_list(items)?;
    let mut v = Violations::default();
    v.resource_arn(arn);
    v.not_null(items, "tagKeys");
    v.list_len(items.map(|_| keys.as_slice()), "tagKeys", 1, TAG_KEYS_MAX);
    if items.is_some()
        && !keys
            .iter()
            .all(|k| (1..=limits::TAG_KEY_CHARS_MAX).contains(&k.chars().count()))
    {
        v.push(
            Shown::Owned(format!("[{}]", keys.join(", "))),
            "tagKeys",
            &format!(
                "Member must satisfy constraint: [Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
                limits::TAG_KEY_CHARS_MAX
            ),
        );
    }
    v.finish()?;
    Ok((
        arn.expect("validated as not null").to_owned(),
        keys.into_iter().map(str::to_owned).collect(),
    ))
}
