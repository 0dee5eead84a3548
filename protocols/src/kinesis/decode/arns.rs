//! ARNs: a `StreamARN` taken apart, the model's ConsumerARN and ResourceARN patterns, and the
//! stream a request names by `StreamName` and/or `StreamARN`.

use sluice_core::KinesisError;

use super::Home;
use super::constraints::{Violations, is_name};

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

/// The stream a request names by `StreamName` and/or `StreamARN`, after both were validated.
pub(super) fn resolve_stream(
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
pub(super) fn stream_members(v: &mut Violations, name: Option<&str>, arn: Option<&str>) {
    if arn.is_none() {
        v.not_null(name, "streamName");
    }
    v.stream_name(name, "streamName");
    v.stream_arn(arn);
}

/// The model's ConsumerARN pattern (the `.*` before `stream/` is taken as empty, which is what
/// every ARN this appliance issues has).
pub(super) fn is_consumer_arn(s: &str) -> bool {
    sluice_core::consumer::ConsumerArn::parse(s).is_some_and(|arn| {
        arn.account_id.len() == 12 && arn.account_id.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The model's ResourceARN pattern: a Kinesis ARN of a 12-digit account whose resource is a
/// stream, channel or queue path.
pub(super) fn is_resource_arn(s: &str) -> bool {
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
