//! Pass 2: model constraints. [`Violations`] collects what a request breaks (required members,
//! lengths, ranges, patterns, enums), in the order AWS checks them, into one
//! `ValidationException`; the patterns and bounds of the model are here too.

use std::fmt::Write as _;

use sluice_core::api::{StreamMode, Tag};
use sluice_core::{ErrorKind, KinesisError, limits};

use super::arns::{is_consumer_arn, is_resource_arn, parse_stream_arn};
use super::body::Members;

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

    pub(super) fn finish(self) -> Result<(), KinesisError> {
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

    pub(super) fn not_null<T>(&mut self, v: Option<T>, path: &str) {
        if v.is_none() {
            self.push(Shown::Null, path, "Member must not be null");
        }
    }

    /// Length in characters between `min` and `max` (either optional).
    pub(super) fn str_len(
        &mut self,
        v: Option<&str>,
        path: &str,
        min: Option<usize>,
        max: Option<usize>,
    ) {
        let Some(s) = v else { return };
        let len = s.chars().count();
        if let Some(min) = min
            && len < min
        {
            self.push(Shown::Text(s), path, &length_at_least(min));
        }
        if let Some(max) = max
            && len > max
        {
            self.push(Shown::Text(s), path, &length_at_most(max));
        }
    }

    pub(super) fn pattern(
        &mut self,
        v: Option<&str>,
        path: &str,
        matches: fn(&str) -> bool,
        pattern: &str,
    ) {
        let Some(s) = v else { return };
        if !matches(s) {
            self.push(
                Shown::Text(s),
                path,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    pub(super) fn range(&mut self, v: Option<i64>, path: &str, min: i64, max: Option<i64>) {
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

    pub(super) fn one_of(&mut self, v: Option<&str>, path: &str, allowed: &[&str]) {
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

    pub(super) fn blob_max(&mut self, v: Option<&[u8]>, path: &str, max: usize) {
        let Some(b) = v else { return };
        if b.len() > max {
            let n = b.len();
            self.push(
                Shown::Owned(format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]")),
                path,
                &length_at_most(max),
            );
        }
    }

    pub(super) fn stream_name(&mut self, v: Option<&str>, path: &str) {
        self.pattern(v, path, is_name, NAME_PATTERN);
        self.str_len(v, path, Some(1), Some(limits::STREAM_NAME_CHARS_MAX));
    }

    pub(super) fn stream_arn(&mut self, v: Option<&str>) {
        self.pattern(
            v,
            "streamARN",
            |s| parse_stream_arn(s).is_some(),
            STREAM_ARN_PATTERN,
        );
        self.str_len(v, "streamARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }

    pub(super) fn tag_map(&mut self, v: Option<Members<'_, '_>>, tags: &[Tag], path: &str) {
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
        // The lower bound counts the members as sent (null values included), the upper one the
        // tags they make (a repeated key counts once).
        if members.is_empty() {
            self.push(Shown::Owned(shown()), path, &length_at_least(1));
        }
        if tags.len() > TAG_MAP_ENTRIES_MAX {
            self.push(
                Shown::Owned(shown()),
                path,
                &length_at_most(TAG_MAP_ENTRIES_MAX),
            );
        }
        if !tags.iter().all(|t| is_tag_key_length(&t.key)) {
            self.push(
                Shown::Owned(shown()),
                path,
                &format!("Map keys must satisfy constraint: {}", tag_key_lengths()),
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

    /// A list's length against the model's `min`/`max`, echoing the list as AWS prints it.
    pub(super) fn list_len(&mut self, items: Option<&[&str]>, path: &str, min: usize, max: usize) {
        let Some(items) = items else { return };
        self.entries_len(
            items.len(),
            || format!("[{}]", items.join(", ")),
            path,
            min,
            max,
        );
    }

    /// The number of entries of a list or map against the model's `min`/`max`, echoing the
    /// collection as `shown` prints it.
    pub(super) fn entries_len(
        &mut self,
        len: usize,
        shown: impl Fn() -> String,
        path: &str,
        min: usize,
        max: usize,
    ) {
        if len < min {
            self.push(Shown::Owned(shown()), path, &length_at_least(min));
        }
        if len > max {
            self.push(Shown::Owned(shown()), path, &length_at_most(max));
        }
    }

    /// The TagKeys list of RemoveTagsFromStream and UntagResource: required, 1..=50 keys of
    /// 1..=128 characters each.
    pub(super) fn tag_keys(&mut self, keys: Option<&[&str]>, path: &str) {
        self.not_null(keys, path);
        self.list_len(keys, path, 1, TAG_KEYS_MAX);
        if let Some(keys) = keys
            && !keys.iter().all(|key| is_tag_key_length(key))
        {
            self.push(
                Shown::Owned(format!("[{}]", keys.join(", "))),
                path,
                &format!("Member must satisfy constraint: {}", tag_key_lengths()),
            );
        }
    }

    /// A `nextToken` member.
    pub(super) fn next_token(&mut self, v: Option<&str>) {
        self.str_len(v, "nextToken", Some(1), Some(NEXT_TOKEN_CHARS_MAX));
    }

    /// A page size (`limit`, `maxResults`) of a listing call.
    pub(super) fn list_limit(&mut self, v: Option<i64>, path: &str) {
        self.range(v, path, 1, Some(LIST_LIMIT_MAX));
    }

    /// A `streamARN` that names the stream on its own (no StreamName alternative).
    pub(super) fn required_stream_arn(&mut self, v: Option<&str>) {
        self.not_null(v, "streamARN");
        self.stream_arn(v);
    }

    /// `streamModeDetails.streamMode`, required whenever StreamModeDetails is given.
    pub(super) fn stream_mode(&mut self, details_given: bool, mode: Option<&str>) {
        if details_given {
            self.not_null(mode, "streamModeDetails.streamMode");
            self.one_of(mode, "streamModeDetails.streamMode", &STREAM_MODES);
        }
    }

    /// A required member under the model's name rule, which stream, shard and consumer names
    /// share.
    pub(super) fn required_name(&mut self, v: Option<&str>, path: &str) {
        self.not_null(v, path);
        self.stream_name(v, path);
    }

    pub(super) fn resource_arn(&mut self, v: Option<&str>) {
        self.not_null(v, "resourceARN");
        self.pattern(v, "resourceARN", is_resource_arn, RESOURCE_ARN_PATTERN);
        self.str_len(v, "resourceARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }

    pub(super) fn consumer_arn(&mut self, v: Option<&str>) {
        self.pattern(v, "consumerARN", is_consumer_arn, CONSUMER_ARN_PATTERN);
        self.str_len(v, "consumerARN", Some(1), Some(STREAM_ARN_CHARS_MAX));
    }
}

fn length_at_least(min: usize) -> String {
    format!("Member must have length greater than or equal to {min}")
}

fn length_at_most(max: usize) -> String {
    format!("Member must have length less than or equal to {max}")
}

/// Whether a tag key has the model's TagKey length, 1..=128 characters.
fn is_tag_key_length(key: &str) -> bool {
    (1..=limits::TAG_KEY_CHARS_MAX).contains(&key.chars().count())
}

/// The TagKey length bounds as AWS prints them inside a list or map constraint.
fn tag_key_lengths() -> String {
    format!(
        "[Member must have length less than or equal to {}, Member must have length greater than or equal to 1]",
        limits::TAG_KEY_CHARS_MAX
    )
}

/// The StreamMode a validated `streamMode` text names.
pub(super) fn stream_mode_named(text: &str) -> StreamMode {
    match text {
        "ON_DEMAND" => StreamMode::OnDemand,
        _ => StreamMode::Provisioned,
    }
}

const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
pub(super) const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
pub(super) const SEQUENCE_NUMBER_PATTERN: &str = "0|([1-9]\\d{0,128})";
const STREAM_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";
const STREAM_ARN_CHARS_MAX: usize = 2048;
const NEXT_TOKEN_CHARS_MAX: usize = 1_048_576;
const LIST_LIMIT_MAX: i64 = 10_000;
const TAG_KEYS_MAX: usize = 50;
/// The model's TagMap bound for one call; how many tags a stream may hold (50) is the
/// implementation's rule.
const TAG_MAP_ENTRIES_MAX: usize = 200;
const STREAM_MODES: [&str; 2] = ["PROVISIONED", "ON_DEMAND"];

const CONSUMER_ARN_PATTERN: &str = "^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+";
const RESOURCE_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:.*(stream|channel|queue)/\\S+";

pub(super) fn is_name(s: &str) -> bool {
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

pub(super) fn is_hash_key(s: &str) -> bool {
    is_decimal_pattern(s, 38)
}

pub(super) fn is_sequence_number(s: &str) -> bool {
    is_decimal_pattern(s, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(check: impl FnOnce(&mut Violations)) -> Option<String> {
        let mut v = Violations::default();
        check(&mut v);
        v.finish().err().map(|e| e.message)
    }

    #[test]
    fn stream_mode_details_need_a_known_stream_mode() {
        assert_eq!(message(|v| v.stream_mode(false, None)), None);
        assert_eq!(
            message(|v| v.stream_mode(true, None)).as_deref(),
            Some(
                "1 validation error detected: Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null"
            )
        );
        assert_eq!(
            message(|v| v.stream_mode(true, Some("X"))).as_deref(),
            Some(
                "1 validation error detected: Value 'X' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
            )
        );
        assert_eq!(stream_mode_named("ON_DEMAND"), StreamMode::OnDemand);
        assert_eq!(stream_mode_named("PROVISIONED"), StreamMode::Provisioned);
    }

    #[test]
    fn next_tokens_list_limits_and_stream_arns_use_the_model_bounds() {
        assert_eq!(
            message(|v| v.next_token(Some(""))).as_deref(),
            Some(
                "1 validation error detected: Value '' at 'nextToken' failed to satisfy constraint: Member must have length greater than or equal to 1"
            )
        );
        assert_eq!(
            message(|v| v.list_limit(Some(10_001), "maxResults")).as_deref(),
            Some(
                "1 validation error detected: Value '10001' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10000"
            )
        );
        assert_eq!(
            message(|v| v.required_stream_arn(None)).as_deref(),
            Some(
                "1 validation error detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null"
            )
        );
    }

    #[test]
    fn at_most_ten_violations_are_reported() {
        let text = message(|v| {
            for i in 0..12 {
                v.not_null(None::<()>, &format!("m{i}"));
            }
        })
        .expect("violations");
        assert!(text.starts_with("10 validation errors detected: Value null at 'm0'"));
        assert!(!text.contains("'m10'"));
    }
}
