//! Pass 2: model constraints. [`Violations`] collects what a request breaks (required members,
//! lengths, ranges, patterns, enums), in the order AWS checks them, into one
//! `ValidationException`; the patterns and bounds of the model are here too.

use std::fmt::Write as _;

use sluice_core::api::Tag;
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
pub(super) enum Shown<'s> {
    Null,
    Text(&'s str),
    Owned(String),
}

impl Violations {
    const MAX: usize = 10;

    pub(super) fn push(&mut self, shown: Shown<'_>, path: &str, constraint: &str) {
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
                &format!("Member must have length less than or equal to {max}"),
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

    /// A list's length against the model's `min`/`max`, echoing the list as AWS prints it.
    pub(super) fn list_len(&mut self, items: Option<&[&str]>, path: &str, min: usize, max: usize) {
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

    pub(super) fn shard_id(&mut self, v: Option<&str>, path: &str) {
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

const NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";
pub(super) const HASH_KEY_PATTERN: &str = "0|([1-9]\\d{0,38})";
pub(super) const SEQUENCE_NUMBER_PATTERN: &str = "0|([1-9]\\d{0,128})";
const STREAM_ARN_PATTERN: &str = "arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";
const STREAM_ARN_CHARS_MAX: usize = 2048;
pub(super) const NEXT_TOKEN_CHARS_MAX: usize = 1_048_576;
pub(super) const LIST_LIMIT_MAX: i64 = 10_000;
pub(super) const TAG_KEYS_MAX: usize = 50;
/// The model's TagMap bound for one call; how many tags a stream may hold (50) is the
/// implementation's rule.
const TAG_MAP_ENTRIES_MAX: usize = 200;
pub(super) const STREAM_MODES: [&str; 2] = ["PROVISIONED", "ON_DEMAND"];

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
