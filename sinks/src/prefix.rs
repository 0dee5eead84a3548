//! The S3 key grammar of Firehose: custom prefixes with `!{namespace:value}` expressions, their
//! validation at create time, and their evaluation per object.
//!
//! Grammar (AWS's "Custom Prefixes for Amazon S3 Objects"):
//! - `!{timestamp:<pattern>}`: a `java.time.format.DateTimeFormatter` pattern, evaluated in UTC
//!   on the arrival time of the oldest record in the object; every occurrence in one key uses
//!   the same instant. Supported letters: `y u M d D H m s` (with their Java widths, `MMM` and
//!   `MMMM` month names); text in single quotes is literal, `''` is a quote; any other letter
//!   is refused at create time.
//! - `!{firehose:random-string}`: 11 random lowercase alphanumerics, fresh at each occurrence.
//! - `!{firehose:error-output-type}`: only in ErrorOutputPrefix, and required there when it
//!   has expressions.
//! - `!{partitionKeyFromQuery:k}` / `!{partitionKeyFromLambda:k}`: dynamic partitioning, which
//!   this appliance does not offer; refused.
//!
//! Defaults: a Prefix without a timestamp expression gets `!{timestamp:yyyy/MM/dd/HH/}`
//! appended (so the default layout `YYYY/MM/dd/HH/` follows any plain prefix); a Prefix with
//! expressions needs an ErrorOutputPrefix. The evaluated prefix may be at most 512 characters.

use rand::Rng as _;

use crate::error::FirehoseError;

/// The longest evaluated prefix AWS accepts.
pub const EVALUATED_PREFIX_CHARS_MAX: usize = 512;
/// The length of `!{firehose:random-string}`'s value.
pub const RANDOM_STRING_CHARS: usize = 11;

/// One piece of a parsed prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Timestamp(Vec<TimeToken>),
    RandomString,
    ErrorOutputType,
    /// `!{partitionKeyFromQuery:key}` (`lambda` false) or `!{partitionKeyFromLambda:key}`.
    PartitionKey {
        lambda: bool,
        key: String,
    },
}

/// One piece of a timestamp pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeToken {
    Literal(String),
    /// A pattern letter repeated `width` times.
    Field {
        letter: char,
        width: usize,
    },
}

/// Which of the two prefix fields is parsed: they allow different expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixField {
    Prefix,
    /// Prefix of a delivery stream with dynamic partitioning: partition keys are allowed.
    DynamicPrefix,
    ErrorOutputPrefix,
}

impl PrefixField {
    const fn name(self) -> &'static str {
        match self {
            Self::Prefix | Self::DynamicPrefix => "Prefix",
            Self::ErrorOutputPrefix => "ErrorOutputPrefix",
        }
    }
}

/// A parsed prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefix {
    pub parts: Vec<Part>,
}

impl Prefix {
    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
    }

    /// The key prefix for an object whose oldest record arrived at `arrival_ms`.
    pub fn evaluate(&self, arrival_ms: u64, error_output_type: Option<&str>) -> String {
        self.evaluate_with(arrival_ms, error_output_type, &|_, _| None)
            .unwrap_or_default()
    }

    /// [`Prefix::evaluate`] with partition keys: `keys(lambda, name)` gives a key's value; a key
    /// with no value is an error naming it.
    pub fn evaluate_with(
        &self,
        arrival_ms: u64,
        error_output_type: Option<&str>,
        keys: &dyn Fn(bool, &str) -> Option<String>,
    ) -> Result<String, String> {
        let instant = Instant::from_ms(arrival_ms);
        let mut out = String::new();
        let mut rng = rand::rng();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Timestamp(tokens) => format_time(&mut out, tokens, &instant),
                Part::RandomString => {
                    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
                    for _ in 0..RANDOM_STRING_CHARS {
                        out.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
                    }
                }
                Part::ErrorOutputType => out.push_str(error_output_type.unwrap_or("")),
                Part::PartitionKey { lambda, key } => match keys(*lambda, key) {
                    Some(value) => out.push_str(&value),
                    None => return Err(format!("the partition key {key} has no value")),
                },
            }
        }
        Ok(out)
    }

    /// The partition keys the prefix uses: (from Lambda, name).
    pub fn partition_keys(&self) -> impl Iterator<Item = (bool, &str)> {
        self.parts.iter().filter_map(|p| match p {
            Part::PartitionKey { lambda, key } => Some((*lambda, key.as_str())),
            _ => None,
        })
    }
}

/// The prefix objects get: `prefix` as configured, with the default timestamp layout appended
/// when it has no timestamp expression.
pub fn object_prefix(prefix: Option<&str>) -> Result<Prefix, FirehoseError> {
    let mut parsed = parse(prefix.unwrap_or(""), PrefixField::Prefix)?;
    if !parsed.has_timestamp() {
        parsed.parts.push(Part::Timestamp(default_layout()));
    }
    Ok(parsed)
}

/// The prefix objects of a delivery stream with dynamic partitioning get: `prefix` as
/// configured (no default layout is appended).
pub fn dynamic_prefix(prefix: Option<&str>) -> Result<Prefix, FirehoseError> {
    parse(prefix.unwrap_or(""), PrefixField::DynamicPrefix)
}

/// Checks Prefix and ErrorOutputPrefix of a delivery stream with dynamic partitioning: Prefix
/// must use at least one partition key (from the query, or from a Lambda processor when there
/// is one), and both prefixes are required.
pub fn validate_dynamic(
    prefix: Option<&str>,
    error_output_prefix: Option<&str>,
    has_query: bool,
    has_lambda: bool,
) -> Result<(), FirehoseError> {
    let parsed = dynamic_prefix(prefix)?;
    if parsed.partition_keys().next().is_none() {
        return Err(FirehoseError::invalid(
            "Prefix must use at least one partitionKeyFromQuery or partitionKeyFromLambda expression when dynamic partitioning is enabled.",
        ));
    }
    for (lambda, key) in parsed.partition_keys() {
        if lambda && !has_lambda {
            return Err(FirehoseError::invalid(format!(
                "!{{partitionKeyFromLambda:{key}}} needs a Lambda processor."
            )));
        }
        if !lambda && !has_query {
            return Err(FirehoseError::invalid(format!(
                "!{{partitionKeyFromQuery:{key}}} needs a MetadataExtraction processor."
            )));
        }
    }
    if error_output_prefix.is_none_or(str::is_empty) {
        return Err(FirehoseError::invalid(
            "ErrorOutputPrefix cannot be null or empty when dynamic partitioning is enabled.",
        ));
    }
    validate_error_prefix(error_output_prefix)
}

fn validate_error_prefix(error_output_prefix: Option<&str>) -> Result<(), FirehoseError> {
    let parsed_error = parse(
        error_output_prefix.unwrap_or(""),
        PrefixField::ErrorOutputPrefix,
    )?;
    if parsed_error.has_expressions()
        && !parsed_error
            .parts
            .iter()
            .any(|p| matches!(p, Part::ErrorOutputType))
    {
        return Err(FirehoseError::invalid(
            "ErrorOutputPrefix must contain the expression !{firehose:error-output-type} when it contains expressions.",
        ));
    }
    Ok(())
}

fn default_layout() -> Vec<TimeToken> {
    parse_time_pattern("yyyy/MM/dd/HH/").expect("the default layout is a valid pattern")
}

/// The prefix of error objects of `error_output_type`: ErrorOutputPrefix as configured when it
/// has expressions; otherwise (a plain ErrorOutputPrefix, or none, when Prefix then stands in)
/// followed by `<error-output-type>/yyyy/MM/dd/HH/` [verify the fallback against AWS].
pub fn error_prefix(prefix: Option<&str>, error_output_prefix: Option<&str>) -> Prefix {
    if let Some(text) = error_output_prefix
        && let Ok(parsed) = parse(text, PrefixField::ErrorOutputPrefix)
        && parsed.has_expressions()
    {
        return parsed;
    }
    let base = error_output_prefix.or(prefix).unwrap_or("");
    let mut parts: Vec<Part> = match parse(base, PrefixField::Prefix) {
        Ok(parsed) if !parsed.has_expressions() => parsed.parts,
        _ => Vec::new(),
    };
    parts.push(Part::ErrorOutputType);
    parts.push(Part::Literal("/".to_owned()));
    parts.push(Part::Timestamp(default_layout()));
    Prefix { parts }
}

/// Checks Prefix and ErrorOutputPrefix together, as CreateDeliveryStream and UpdateDestination
/// do.
pub fn validate(
    prefix: Option<&str>,
    error_output_prefix: Option<&str>,
) -> Result<(), FirehoseError> {
    let parsed = parse(prefix.unwrap_or(""), PrefixField::Prefix)?;
    let error_prefix = error_output_prefix.unwrap_or("");
    let parsed_error = parse(error_prefix, PrefixField::ErrorOutputPrefix)?;
    if parsed.has_expressions() && error_prefix.is_empty() {
        return Err(FirehoseError::invalid(
            "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions.",
        ));
    }
    if parsed_error.has_expressions()
        && !parsed_error
            .parts
            .iter()
            .any(|p| matches!(p, Part::ErrorOutputType))
    {
        return Err(FirehoseError::invalid(
            "ErrorOutputPrefix must contain the expression !{firehose:error-output-type} when it contains expressions.",
        ));
    }
    Ok(())
}

/// Parses `text` as a prefix of `field`.
pub fn parse(text: &str, field: PrefixField) -> Result<Prefix, FirehoseError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("!{") {
        literal.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(FirehoseError::invalid(format!(
                "The expression in {} is not closed: '{}'.",
                field.name(),
                &rest[start..]
            )));
        };
        let expression = &after[..end];
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(parse_expression(expression, field)?);
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(Prefix { parts })
}

fn parse_expression(expression: &str, field: PrefixField) -> Result<Part, FirehoseError> {
    let unsupported = || {
        FirehoseError::invalid(format!(
            "The expression !{{{expression}}} is not supported in {}.",
            field.name()
        ))
    };
    let Some((namespace, value)) = expression.split_once(':') else {
        return Err(unsupported());
    };
    match (namespace, value) {
        ("timestamp", pattern) => {
            parse_time_pattern(pattern)
                .map(Part::Timestamp)
                .map_err(|detail| {
                    FirehoseError::invalid(format!(
                        "The timestamp pattern '{pattern}' in {} is invalid: {detail}",
                        field.name()
                    ))
                })
        }
        ("firehose", "random-string") => Ok(Part::RandomString),
        ("firehose", "error-output-type") if field == PrefixField::ErrorOutputPrefix => {
            Ok(Part::ErrorOutputType)
        }
        ("partitionKeyFromQuery" | "partitionKeyFromLambda", key)
            if field == PrefixField::DynamicPrefix && !key.is_empty() =>
        {
            Ok(Part::PartitionKey {
                lambda: namespace == "partitionKeyFromLambda",
                key: key.to_owned(),
            })
        }
        ("partitionKeyFromQuery" | "partitionKeyFromLambda", _) => {
            Err(FirehoseError::invalid(format!(
                "The expression !{{{expression}}} in {} needs dynamic partitioning, which is not enabled.",
                field.name()
            )))
        }
        _ => Err(unsupported()),
    }
}

/// Parses a `DateTimeFormatter` pattern into tokens; the error says what is wrong.
pub fn parse_time_pattern(pattern: &str) -> Result<Vec<TimeToken>, String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A quoted run, or '' for a quote.
            if chars.get(i + 1) == Some(&'\'') {
                literal.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err("a quote is not closed".to_owned()),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        literal.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&other) => {
                        literal.push(other);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if c.is_ascii_alphabetic() {
            let mut width = 1;
            while chars.get(i + width) == Some(&c) {
                width += 1;
            }
            let supported = match c {
                'y' | 'u' | 'd' | 'H' | 'm' | 's' => width <= 4 || c == 'y' || c == 'u',
                'M' => width <= 4,
                'D' => width <= 3,
                _ => false,
            };
            if !supported {
                return Err(format!(
                    "the pattern letter '{c}' (x{width}) is not supported"
                ));
            }
            if !literal.is_empty() {
                tokens.push(TimeToken::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(TimeToken::Field { letter: c, width });
            i += width;
            continue;
        }
        if matches!(c, '[' | ']' | '{' | '}' | '#') {
            return Err(format!("the character '{c}' is reserved"));
        }
        literal.push(c);
        i += 1;
    }
    if !literal.is_empty() {
        tokens.push(TimeToken::Literal(literal));
    }
    Ok(tokens)
}

/// A UTC instant broken into calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instant {
    pub year: u64,
    pub month: u32,
    pub day: u32,
    pub day_of_year: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Instant {
    pub fn from_ms(epoch_ms: u64) -> Self {
        let seconds = epoch_ms / 1000;
        let days = seconds / 86_400;
        let of_day = seconds % 86_400;
        let date = sluice_core::time_format::civil_from_days(days);
        let day_of_year = days_before_month(date.year, date.month) + date.day;
        Self {
            year: date.year,
            month: date.month,
            day: date.day,
            day_of_year,
            hour: (of_day / 3600) as u32,
            minute: (of_day % 3600 / 60) as u32,
            second: (of_day % 60) as u32,
        }
    }
}

fn days_before_month(year: u64, month: u32) -> u32 {
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let index = (month.clamp(1, 12) - 1) as usize;
    CUMULATIVE[index] + u32::from(leap && month > 2)
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn format_time(out: &mut String, tokens: &[TimeToken], t: &Instant) {
    use std::fmt::Write as _;
    for token in tokens {
        match token {
            TimeToken::Literal(text) => out.push_str(text),
            TimeToken::Field { letter, width } => {
                let width = *width;
                let number = |out: &mut String, value: u64| {
                    let _ = write!(out, "{value:0width$}");
                };
                match letter {
                    // Java: "yy" is the year modulo 100; other widths pad the full year.
                    'y' | 'u' if width == 2 => {
                        let _ = write!(out, "{:02}", t.year % 100);
                    }
                    'y' | 'u' => number(out, t.year),
                    'M' if width == 3 => {
                        out.push_str(&MONTH_NAMES[(t.month - 1) as usize][..3]);
                    }
                    'M' if width == 4 => out.push_str(MONTH_NAMES[(t.month - 1) as usize]),
                    'M' => number(out, u64::from(t.month)),
                    'd' => number(out, u64::from(t.day)),
                    'D' => number(out, u64::from(t.day_of_year)),
                    'H' => number(out, u64::from(t.hour)),
                    'm' => number(out, u64::from(t.minute)),
                    's' => number(out, u64::from(t.second)),
                    _ => {}
                }
            }
        }
    }
}

/// The object name after the prefix: `<name>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><extension>`.
pub fn object_name(stream_name: &str, version_id: u64, arrival_ms: u64, extension: &str) -> String {
    let t = Instant::from_ms(arrival_ms);
    format!(
        "{stream_name}-{version_id}-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}-{}{extension}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-09T17:42:05.123Z
    const ARRIVAL_MS: u64 = 1_710_006_125_123;

    #[test]
    fn no_prefix_gives_the_default_hourly_layout() {
        let prefix = object_prefix(None).expect("valid");
        assert_eq!(prefix.evaluate(ARRIVAL_MS, None), "2024/03/09/17/");
    }

    #[test]
    fn a_plain_prefix_is_followed_by_the_default_layout() {
        let prefix = object_prefix(Some("logs/")).expect("valid");
        assert_eq!(prefix.evaluate(ARRIVAL_MS, None), "logs/2024/03/09/17/");
    }

    #[test]
    fn timestamp_expressions_are_evaluated_on_one_instant_and_get_no_default_layout() {
        let prefix = object_prefix(Some("raw/dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/"))
            .expect("valid");
        assert_eq!(prefix.evaluate(ARRIVAL_MS, None), "raw/dt=2024-03-09/h=17/");
        let odd = object_prefix(Some("!{timestamp:yy'y'DDD'T'mm:ss MMM MMMM}")).expect("valid");
        assert_eq!(odd.evaluate(ARRIVAL_MS, None), "24y069T42:05 Mar March");
    }

    #[test]
    fn random_strings_are_eleven_fresh_characters_at_each_occurrence() {
        let prefix = object_prefix(Some("!{firehose:random-string}/!{firehose:random-string}/"))
            .expect("valid");
        let key = prefix.evaluate(ARRIVAL_MS, None);
        let pieces: Vec<&str> = key.split('/').collect();
        assert_eq!(pieces[0].len(), RANDOM_STRING_CHARS);
        assert_eq!(pieces[1].len(), RANDOM_STRING_CHARS);
        assert_ne!(pieces[0], pieces[1]);
        assert!(key.ends_with("/2024/03/09/17/"), "{key}");
    }

    #[test]
    fn the_error_output_type_is_allowed_only_in_the_error_prefix() {
        assert!(parse("!{firehose:error-output-type}/", PrefixField::Prefix).is_err());
        let error = parse(
            "e/!{firehose:error-output-type}/!{timestamp:yyyy}/",
            PrefixField::ErrorOutputPrefix,
        )
        .expect("valid");
        assert_eq!(
            error.evaluate(ARRIVAL_MS, Some("processing-failed")),
            "e/processing-failed/2024/"
        );
    }

    #[test]
    fn bad_prefixes_are_refused_at_create_time() {
        let refused = |prefix: &str, error: Option<&str>| validate(Some(prefix), error).is_err();
        assert!(refused(
            "!{timestamp:yyyy",
            Some("e/!{firehose:error-output-type}")
        ));
        assert!(refused(
            "!{timestamp:yyyy-QQ}/",
            Some("e/!{firehose:error-output-type}")
        ));
        assert!(refused(
            "!{nope:x}/",
            Some("e/!{firehose:error-output-type}")
        ));
        assert!(refused(
            "!{partitionKeyFromQuery:id}/",
            Some("e/!{firehose:error-output-type}")
        ));
        // Expressions in Prefix need an error prefix, and that one needs the error type.
        assert!(refused("!{timestamp:yyyy}/", None));
        assert!(refused("!{timestamp:yyyy}/", Some("e/!{timestamp:yyyy}/")));
        assert!(!refused(
            "!{timestamp:yyyy}/",
            Some("e/!{firehose:error-output-type}/")
        ));
        assert!(!refused("plain/", None));
    }

    #[test]
    fn error_objects_go_under_the_error_prefix_or_a_typed_default() {
        let typed = error_prefix(
            Some("p/"),
            Some("e/!{firehose:error-output-type}/!{timestamp:yyyy}/"),
        );
        assert_eq!(
            typed.evaluate(ARRIVAL_MS, Some("http-endpoint-failed")),
            "e/http-endpoint-failed/2024/"
        );
        let plain = error_prefix(Some("p/"), None);
        assert_eq!(
            plain.evaluate(ARRIVAL_MS, Some("http-endpoint-failed")),
            "p/http-endpoint-failed/2024/03/09/17/"
        );
        let none = error_prefix(None, None);
        assert_eq!(
            none.evaluate(ARRIVAL_MS, Some("processing-failed")),
            "processing-failed/2024/03/09/17/"
        );
    }

    #[test]
    fn object_names_carry_stream_version_time_uuid_and_extension() {
        let name = object_name("orders", 3, ARRIVAL_MS, ".gz");
        assert!(name.starts_with("orders-3-2024-03-09-17-42-05-"), "{name}");
        assert!(name.ends_with(".gz"));
        let uuid = &name["orders-3-2024-03-09-17-42-05-".len()..name.len() - 3];
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{uuid}");
    }

    #[test]
    fn day_of_year_counts_leap_days() {
        // 2024-12-31 is day 366.
        assert_eq!(Instant::from_ms(1_735_603_200_000).day_of_year, 366);
        assert_eq!(Instant::from_ms(0).day_of_year, 1);
    }
}
