//! Request validation shared by the operations: names, lengths, ranges, record data, tags,
//! encryption input and Kinesis stream ARNs, each failure worded as AWS words it.

use std::collections::BTreeMap;

use base64::Engine as _;
use sluice_core::api::KinesisApi;

use crate::api::{RECORD_BYTES_MAX, TAGS_MAX};
use crate::error::{ErrorKind, FirehoseError};
use crate::model::Encryption;
use crate::wire;

/// The stream name of a Kinesis stream ARN of this appliance.
pub(crate) fn kinesis_stream_name<A: KinesisApi>(
    arn: &str,
    api: &A,
) -> Result<String, FirehoseError> {
    let invalid = || {
        FirehoseError::invalid(format!(
            "KinesisStreamARN {arn} is not a valid Kinesis stream ARN."
        ))
    };
    let rest = arn.strip_prefix("arn:").ok_or_else(invalid)?;
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [_partition, "kinesis", region, account, resource] = parts[..] else {
        return Err(invalid());
    };
    if region != api.region() || account != api.account_id() {
        return Err(invalid());
    }
    let name = resource.strip_prefix("stream/").ok_or_else(invalid)?;
    if name.is_empty() {
        return Err(invalid());
    }
    Ok(name.to_owned())
}

pub(crate) fn check_name(name: Option<&str>, member: &str) -> Result<String, FirehoseError> {
    let name = name.ok_or_else(|| FirehoseError::missing(member))?;
    check_length(name, 1, 64, member)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(FirehoseError::validation(
            name,
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(name.to_owned())
}

pub(crate) fn check_length(
    value: &str,
    min: usize,
    max: usize,
    member: &str,
) -> Result<(), FirehoseError> {
    let n = value.chars().count();
    if n < min {
        return Err(FirehoseError::validation(
            value,
            member,
            &format!("Member must have length greater than or equal to {min}"),
        ));
    }
    if n > max {
        return Err(FirehoseError::validation(
            value,
            member,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_range(
    value: i64,
    min: i64,
    max: i64,
    member: &str,
) -> Result<i64, FirehoseError> {
    if value < min {
        return Err(FirehoseError::validation(
            &value.to_string(),
            member,
            &format!("Member must have value greater than or equal to {min}"),
        ));
    }
    if value > max {
        return Err(FirehoseError::validation(
            &value.to_string(),
            member,
            &format!("Member must have value less than or equal to {max}"),
        ));
    }
    Ok(value)
}

pub(crate) fn decode_data(data: Option<String>, member: &str) -> Result<Vec<u8>, FirehoseError> {
    let data = data.ok_or_else(|| FirehoseError::missing(member))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|_| {
            FirehoseError::new(
                ErrorKind::Serialization,
                format!("Base64 decoding of {member} failed."),
            )
        })?;
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(FirehoseError::validation(
            "java.nio.HeapByteBuffer",
            member,
            &format!("Member must have length less than or equal to {RECORD_BYTES_MAX}"),
        ));
    }
    Ok(bytes)
}

pub(crate) fn check_tags(
    tags: Vec<wire::Tag>,
    member: &str,
) -> Result<BTreeMap<String, String>, FirehoseError> {
    if tags.len() > TAGS_MAX {
        return Err(FirehoseError::validation(
            "[...]",
            member,
            "Member must have length less than or equal to 50",
        ));
    }
    let mut out = BTreeMap::new();
    for (i, tag) in tags.into_iter().enumerate() {
        let key_member = format!("{member}.{}.member.key", i + 1);
        let key = tag.key.ok_or_else(|| FirehoseError::missing(&key_member))?;
        check_length(&key, 1, 128, &key_member)?;
        let value = tag.value.unwrap_or_default();
        check_length(&value, 0, 256, &format!("{member}.{}.member.value", i + 1))?;
        out.insert(key, value);
    }
    Ok(out)
}

pub(crate) fn check_encryption(
    input: wire::EncryptionInput,
    member: &str,
) -> Result<Encryption, FirehoseError> {
    let key_type = input
        .key_type
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.keyType")))?;
    match (key_type.as_str(), &input.key_arn) {
        ("AWS_OWNED_CMK", None) => {}
        ("AWS_OWNED_CMK", Some(_)) => {
            return Err(FirehoseError::invalid(
                "KeyARN must not be specified when KeyType is AWS_OWNED_CMK.",
            ));
        }
        ("CUSTOMER_MANAGED_CMK", None) => {
            return Err(FirehoseError::invalid(
                "KeyARN must be specified when KeyType is CUSTOMER_MANAGED_CMK.",
            ));
        }
        ("CUSTOMER_MANAGED_CMK", Some(arn)) => {
            check_length(arn, 1, 512, &format!("{member}.keyARN"))?
        }
        (other, _) => {
            return Err(FirehoseError::validation(
                other,
                &format!("{member}.keyType"),
                "Member must satisfy enum value set: [AWS_OWNED_CMK, CUSTOMER_MANAGED_CMK]",
            ));
        }
    }
    Ok(Encryption {
        enabled: true,
        key_type: Some(key_type),
        key_arn: input.key_arn,
    })
}
