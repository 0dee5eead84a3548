//! The `kinesisvideo` model's constraints on input members (lengths, patterns, ranges, enums),
//! each failure worded as AWS's front end words a validation error.

use std::collections::BTreeMap;

use crate::error::{ErrorKind, VideoError};

/// The most tags a stream may carry (the ResourceTags shape's `max`).
pub const TAGS_MAX: usize = 50;
/// The longest retention AWS accepts, hours (ten years).
pub const DATA_RETENTION_HOURS_MAX: u32 = 87_600;

const NAME_PATTERN: &str = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+";
const ARN_PATTERN: &str = "Member must satisfy regular expression pattern: arn:[a-z\\d-]+:kinesisvideo:[a-z0-9-]+:[0-9]+:[a-z]+/[a-zA-Z0-9_.-]+/[0-9]+";

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// A member of at most `max` and at least `min` characters.
pub fn check_length(value: &str, min: usize, max: usize, member: &str) -> Result<(), VideoError> {
    let chars = value.chars().count();
    if chars < min {
        return Err(VideoError::validation(
            value,
            member,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if chars > max {
        return Err(VideoError::validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

/// `[a-zA-Z0-9_.-]+` of 1 to `max` characters (StreamName, DeviceName).
fn check_name_like(value: &str, max: usize, member: &str) -> Result<(), VideoError> {
    check_length(value, 1, max, member)?;
    if !value.bytes().all(is_name_byte) {
        return Err(VideoError::validation(value, member, NAME_PATTERN));
    }
    Ok(())
}

pub fn check_stream_name(name: &str, member: &str) -> Result<(), VideoError> {
    check_name_like(name, 256, member)
}

pub fn check_device_name(name: &str, member: &str) -> Result<(), VideoError> {
    check_name_like(name, 128, member)
}

/// A resource ARN's parts: `arn:<partition>:kinesisvideo:<region>:<account>:<type>/<name>/<n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArnParts<'a> {
    pub resource_type: &'a str,
    pub name: &'a str,
}

/// Checks `arn` against the ResourceARN shape and splits it.
pub fn check_arn<'a>(arn: &'a str, member: &str) -> Result<ArnParts<'a>, VideoError> {
    check_length(arn, 1, 1024, member)?;
    parse_arn(arn).ok_or_else(|| VideoError::validation(arn, member, ARN_PATTERN))
}

fn parse_arn(arn: &str) -> Option<ArnParts<'_>> {
    let mut fields = arn.splitn(6, ':');
    let (scheme, partition, service, region, account, resource) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let lower_digit_dash = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if scheme != "arn"
        || !lower_digit_dash(partition)
        || service != "kinesisvideo"
        || !lower_digit_dash(region)
        || !digits(account)
    {
        return None;
    }
    let (resource_type, rest) = resource.split_once('/')?;
    let (name, suffix) = rest.rsplit_once('/')?;
    let valid = !resource_type.is_empty()
        && resource_type.bytes().all(|b| b.is_ascii_lowercase())
        && !name.is_empty()
        && name.bytes().all(is_name_byte)
        && digits(suffix);
    valid.then_some(ArnParts {
        resource_type,
        name,
    })
}

/// A well-formed ARN of a stream: its stream name. A well-formed ARN of another resource
/// (a signaling channel) names no stream.
pub fn check_stream_arn<'a>(arn: &'a str, member: &str) -> Result<&'a str, VideoError> {
    let parts = check_arn(arn, member)?;
    if parts.resource_type != "stream" {
        return Err(VideoError::not_found());
    }
    Ok(parts.name)
}

/// `[\w\-\.\+]+/[\w\-\.\+]+(,[\w\-\.\+]+/[\w\-\.\+]+)*`, 1 to 128 characters.
pub fn check_media_type(value: &str, member: &str) -> Result<(), VideoError> {
    check_length(value, 1, 128, member)?;
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
    };
    let valid = value.split(',').all(|part| {
        part.split_once('/')
            .is_some_and(|(kind, sub)| word(kind) && word(sub))
    });
    if !valid {
        return Err(VideoError::validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [\\w\\-\\.\\+]+/[\\w\\-\\.\\+]+(,[\\w\\-\\.\\+]+/[\\w\\-\\.\\+]+)*",
        ));
    }
    Ok(())
}

/// `.+`, 1 to 2048 characters.
pub fn check_kms_key_id(value: &str, member: &str) -> Result<(), VideoError> {
    check_length(value, 1, 2048, member)?;
    if value.contains(['\n', '\r']) {
        return Err(VideoError::validation(
            value,
            member,
            "Member must satisfy regular expression pattern: .+",
        ));
    }
    Ok(())
}

/// A stream version: `[a-zA-Z0-9]+`, 1 to 64 characters.
pub fn check_version(value: &str, member: &str) -> Result<(), VideoError> {
    check_length(value, 1, 64, member)?;
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(VideoError::validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9]+",
        ));
    }
    Ok(())
}

/// `[a-zA-Z0-9+/=]*`, 0 to 1024 characters.
pub fn check_next_token(value: &str, member: &str) -> Result<(), VideoError> {
    check_length(value, 0, 1024, member)?;
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(VideoError::validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9+/=]*",
        ));
    }
    Ok(())
}

/// `value` is one of `allowed`.
pub fn check_enum<'a>(
    value: &'a str,
    allowed: &[&str],
    member: &str,
) -> Result<&'a str, VideoError> {
    if allowed.contains(&value) {
        return Ok(value);
    }
    Err(VideoError::validation(
        value,
        member,
        &format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ),
    ))
}

pub fn check_range(value: i64, min: i64, max: i64, member: &str) -> Result<i64, VideoError> {
    if value < min {
        return Err(VideoError::validation(
            &value.to_string(),
            member,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(VideoError::validation(
            &value.to_string(),
            member,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(value)
}

/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, the tag key and value alphabet.
fn is_tag_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

pub fn check_tag_key(key: &str, member: &str) -> Result<(), VideoError> {
    check_length(key, 1, 128, member)?;
    if !key.chars().all(is_tag_char) {
        return Err(VideoError::validation(
            key,
            member,
            "Member must satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
        ));
    }
    if key.starts_with("aws:") {
        return Err(VideoError::invalid(
            "Tag keys starting with 'aws:' are reserved for AWS use.",
        ));
    }
    Ok(())
}

pub fn check_tag_value(value: &str, member: &str) -> Result<(), VideoError> {
    check_length(value, 0, 256, member)?;
    if !value.chars().all(is_tag_char) {
        return Err(VideoError::validation(
            value,
            member,
            "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
        ));
    }
    Ok(())
}

/// A ResourceTags map (or a TagList made one): 1 to 50 valid pairs.
pub fn check_tags(tags: &BTreeMap<String, String>, member: &str) -> Result<(), VideoError> {
    if tags.is_empty() {
        return Err(VideoError::validation(
            "{}",
            member,
            "Member must have length greater than or equal to 1",
        ));
    }
    if tags.len() > TAGS_MAX {
        return Err(tags_exceeded());
    }
    for (key, value) in tags {
        check_tag_key(key, &format!("{member}.key"))?;
        check_tag_value(value, &format!("{member}.value"))?;
    }
    Ok(())
}

/// A TagKeyList: 1 to 50 valid keys.
pub fn check_tag_keys(keys: &[String], member: &str) -> Result<(), VideoError> {
    if keys.is_empty() {
        return Err(VideoError::validation(
            "[]",
            member,
            "Member must have length greater than or equal to 1",
        ));
    }
    if keys.len() > TAGS_MAX {
        return Err(VideoError::validation(
            &format!("{} keys", keys.len()),
            member,
            &format!("Member must have length less than or equal to {TAGS_MAX}"),
        ));
    }
    for key in keys {
        check_length(key, 1, 128, &format!("{member}.member"))?;
        if !key.chars().all(is_tag_char) {
            return Err(VideoError::validation(
                key,
                &format!("{member}.member"),
                "Member must satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$",
            ));
        }
    }
    Ok(())
}

pub fn tags_exceeded() -> VideoError {
    VideoError::new(
        ErrorKind::TagsPerResourceExceededLimit,
        format!("The stream can have at most {TAGS_MAX} tags."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T>(r: Result<T, VideoError>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind)
    }

    #[test]
    fn stream_names_follow_the_model_pattern_and_length() {
        for ok in ["a", ".", "..", "A-b_c.9", &"x".repeat(256)] {
            assert!(check_stream_name(ok, "streamName").is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(257)] {
            assert_eq!(
                kind(check_stream_name(bad, "streamName")),
                Some(ErrorKind::InvalidArgument),
                "{bad}"
            );
        }
        let error = check_stream_name("a b", "streamName").expect_err("a space is not allowed");
        assert!(
            error
                .message
                .starts_with("1 validation error detected: Value 'a b' at 'streamName'")
        );
    }

    #[test]
    fn arns_are_split_into_type_and_name_and_other_resources_name_no_stream() {
        let arn = "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam.1/1700000000000";
        assert_eq!(check_stream_arn(arn, "streamARN").expect("valid"), "cam.1");
        let channel = "arn:aws:kinesisvideo:us-east-1:000000000000:channel/c/1";
        assert_eq!(
            kind(check_stream_arn(channel, "streamARN")),
            Some(ErrorKind::ResourceNotFound)
        );
        for bad in [
            "arn:aws:kinesis:us-east-1:000000000000:stream/cam/1",
            "arn:aws:kinesisvideo:us-east-1:acct:stream/cam/1",
            "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam",
            "arn:aws:kinesisvideo:us-east-1:000000000000:stream/c m/1",
            "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam/x",
            "",
        ] {
            assert_eq!(
                kind(check_stream_arn(bad, "streamARN")),
                Some(ErrorKind::InvalidArgument),
                "{bad}"
            );
        }
    }

    #[test]
    fn media_types_are_comma_separated_type_slash_subtype_pairs() {
        for ok in [
            "video/h264",
            "video/h264,audio/aac",
            "video/x-matroska",
            "a+b/c.d",
        ] {
            assert!(check_media_type(ok, "mediaType").is_ok(), "{ok}");
        }
        for bad in [
            "video",
            "video/",
            "/h264",
            "video/h264,",
            "video/h 264",
            "video/h264/x",
        ] {
            assert!(check_media_type(bad, "mediaType").is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_need_one_to_fifty_valid_pairs() {
        let mut tags = BTreeMap::new();
        assert_eq!(
            kind(check_tags(&tags, "tags")),
            Some(ErrorKind::InvalidArgument)
        );
        tags.insert("team".to_owned(), "vision lab".to_owned());
        assert!(check_tags(&tags, "tags").is_ok());
        tags.insert("bad*key".to_owned(), String::new());
        assert_eq!(
            kind(check_tags(&tags, "tags")),
            Some(ErrorKind::InvalidArgument)
        );
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(
            kind(check_tags(&many, "tags")),
            Some(ErrorKind::TagsPerResourceExceededLimit)
        );
        assert_eq!(
            kind(check_tag_keys(&[], "tagKeyList")),
            Some(ErrorKind::InvalidArgument)
        );
    }

    #[test]
    fn versions_and_next_tokens_follow_their_patterns() {
        assert!(check_version("abc123", "currentVersion").is_ok());
        assert!(check_version("abc-123", "currentVersion").is_err());
        assert!(check_version(&"a".repeat(65), "currentVersion").is_err());
        assert!(check_next_token("", "nextToken").is_ok());
        assert!(check_next_token("YWJj+/=", "nextToken").is_ok());
        assert!(check_next_token("a-b", "nextToken").is_err());
    }
}
