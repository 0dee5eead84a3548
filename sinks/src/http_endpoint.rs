//! The HTTP endpoint destination's configuration: HttpEndpointDestinationConfiguration and its
//! update checked with AWS's ranges (buffering 1–64 MiB / 0–900 s, defaults 5 MiB / 300 s; retry
//! duration 0–7200 s, default 300 s; at most 50 common attributes), and its description.
//!
//! Unlike AWS, any `http://` or `https://` URL on any port is accepted: an appliance delivers to
//! endpoints on its own network.

use serde_json::{Value, json};

use crate::api::{check_length, check_range, merge_s3, s3_description, s3_destination};
use crate::error::FirehoseError;
use crate::model::{HttpEndpoint, S3Destination};
use crate::wire;

pub const BUFFER_SIZE_MIB_MAX: i64 = 64;
pub const RETRY_DURATION_S_DEFAULT: u32 = 300;
pub const RETRY_DURATION_S_MAX: i64 = 7200;
pub const COMMON_ATTRIBUTES_MAX: usize = 50;

const MEMBER: &str = "httpEndpointDestinationConfiguration";

/// A new HTTP endpoint destination and its S3 backup configuration.
pub fn create(
    config: wire::HttpEndpointConfiguration,
) -> Result<(HttpEndpoint, S3Destination), FirehoseError> {
    let endpoint = config
        .endpoint_configuration
        .as_ref()
        .ok_or_else(|| FirehoseError::missing(&format!("{MEMBER}.endpointConfiguration")))?;
    let url = endpoint
        .url
        .clone()
        .ok_or_else(|| FirehoseError::missing(&format!("{MEMBER}.endpointConfiguration.url")))?;
    let base = HttpEndpoint {
        url,
        name: None,
        access_key: None,
        buffer_size_mib: crate::model::BUFFER_SIZE_MIB_DEFAULT,
        buffer_interval_s: crate::model::BUFFER_INTERVAL_S_DEFAULT,
        content_encoding_gzip: false,
        common_attributes: Vec::new(),
        retry_duration_s: RETRY_DURATION_S_DEFAULT,
        backup_all_data: false,
        role_arn: None,
        transform: None,
    };
    let mut config = config;
    let s3_config = config
        .s3_configuration
        .take()
        .ok_or_else(|| FirehoseError::missing(&format!("{MEMBER}.s3Configuration")))?;
    let backup = s3_destination(s3_config, false, &format!("{MEMBER}.s3Configuration"))?;
    let endpoint = merge(&base, config, MEMBER)?;
    Ok((endpoint, backup))
}

/// `current` (and its backup) with an HttpEndpointDestinationUpdate applied.
pub fn update(
    current: &HttpEndpoint,
    backup: &S3Destination,
    mut update: wire::HttpEndpointConfiguration,
) -> Result<(HttpEndpoint, S3Destination), FirehoseError> {
    let member = "httpEndpointDestinationUpdate";
    let backup = match update.s3_update.take() {
        Some(s3) => merge_s3(backup, s3, false, &format!("{member}.s3Update"), false)?,
        None => backup.clone(),
    };
    Ok((merge(current, update, member)?, backup))
}

fn merge(
    current: &HttpEndpoint,
    config: wire::HttpEndpointConfiguration,
    member: &str,
) -> Result<HttpEndpoint, FirehoseError> {
    if config
        .secrets_manager_configuration
        .as_ref()
        .is_some_and(|v| v.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
    {
        return Err(FirehoseError::invalid(
            "SecretsManagerConfiguration is not supported by this appliance: give the AccessKey.",
        ));
    }
    let mut next = current.clone();
    if let Some(processing) = &config.processing_configuration {
        next.transform = crate::transform::parse(processing, member, false)?.lambda;
    }
    if let Some(endpoint) = config.endpoint_configuration {
        if let Some(url) = endpoint.url {
            check_length(
                &url,
                1,
                1000,
                &format!("{member}.endpointConfiguration.url"),
            )?;
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.parse::<hyper::Uri>().is_err()
            {
                return Err(FirehoseError::validation(
                    &url,
                    &format!("{member}.endpointConfiguration.url"),
                    "Member must satisfy regular expression pattern: https?://.*",
                ));
            }
            next.url = url;
        }
        if let Some(name) = endpoint.name {
            check_length(
                &name,
                1,
                256,
                &format!("{member}.endpointConfiguration.name"),
            )?;
            next.name = Some(name);
        }
        if let Some(key) = endpoint.access_key {
            check_length(
                &key,
                0,
                4096,
                &format!("{member}.endpointConfiguration.accessKey"),
            )?;
            next.access_key = (!key.is_empty()).then_some(key);
        }
    }
    if let Some(hints) = config.buffering_hints {
        if let Some(size) = hints.size_in_mbs {
            next.buffer_size_mib = check_range(
                size,
                1,
                BUFFER_SIZE_MIB_MAX,
                &format!("{member}.bufferingHints.sizeInMBs"),
            )? as u32;
        }
        if let Some(interval) = hints.interval_in_seconds {
            next.buffer_interval_s = check_range(
                interval,
                0,
                900,
                &format!("{member}.bufferingHints.intervalInSeconds"),
            )? as u32;
        }
    }
    if let Some(request) = config.request_configuration {
        if let Some(encoding) = request.content_encoding {
            next.content_encoding_gzip = match encoding.as_str() {
                "NONE" => false,
                "GZIP" => true,
                other => {
                    return Err(FirehoseError::validation(
                        other,
                        &format!("{member}.requestConfiguration.contentEncoding"),
                        "Member must satisfy enum value set: [NONE, GZIP]",
                    ));
                }
            };
        }
        if let Some(attributes) = request.common_attributes {
            if attributes.len() > COMMON_ATTRIBUTES_MAX {
                return Err(FirehoseError::validation(
                    "[...]",
                    &format!("{member}.requestConfiguration.commonAttributes"),
                    "Member must have length less than or equal to 50",
                ));
            }
            let mut parsed = Vec::with_capacity(attributes.len());
            for (i, attribute) in attributes.into_iter().enumerate() {
                let at = format!(
                    "{member}.requestConfiguration.commonAttributes.{}.member",
                    i + 1
                );
                let name = attribute
                    .attribute_name
                    .ok_or_else(|| FirehoseError::missing(&format!("{at}.attributeName")))?;
                check_length(&name, 1, 256, &format!("{at}.attributeName"))?;
                let value = attribute
                    .attribute_value
                    .ok_or_else(|| FirehoseError::missing(&format!("{at}.attributeValue")))?;
                check_length(&value, 0, 1024, &format!("{at}.attributeValue"))?;
                parsed.push((name, value));
            }
            next.common_attributes = parsed;
        }
    }
    if let Some(role) = config.role_arn {
        check_length(&role, 1, 512, &format!("{member}.roleARN"))?;
        next.role_arn = Some(role);
    }
    if let Some(retry) = config.retry_options
        && let Some(duration) = retry.duration_in_seconds
    {
        next.retry_duration_s = check_range(
            duration,
            0,
            RETRY_DURATION_S_MAX,
            &format!("{member}.retryOptions.durationInSeconds"),
        )? as u32;
    }
    if let Some(mode) = config.s3_backup_mode {
        next.backup_all_data = match mode.as_str() {
            "FailedDataOnly" => false,
            "AllData" => true,
            other => {
                return Err(FirehoseError::validation(
                    other,
                    &format!("{member}.s3BackupMode"),
                    "Member must satisfy enum value set: [FailedDataOnly, AllData]",
                ));
            }
        };
    }
    Ok(next)
}

/// HttpEndpointDestinationDescription (the access key is never described).
pub fn description(endpoint: &HttpEndpoint, backup: &S3Destination) -> Value {
    let mut endpoint_configuration = json!({ "Url": endpoint.url });
    if let Some(name) = &endpoint.name {
        endpoint_configuration["Name"] = json!(name);
    }
    let attributes: Vec<Value> = endpoint
        .common_attributes
        .iter()
        .map(|(n, v)| json!({ "AttributeName": n, "AttributeValue": v }))
        .collect();
    let mut out = json!({
        "EndpointConfiguration": endpoint_configuration,
        "BufferingHints": { "SizeInMBs": endpoint.buffer_size_mib, "IntervalInSeconds": endpoint.buffer_interval_s },
        "CloudWatchLoggingOptions": { "Enabled": false },
        "RequestConfiguration": {
            "ContentEncoding": if endpoint.content_encoding_gzip { "GZIP" } else { "NONE" },
            "CommonAttributes": attributes,
        },
        "RetryOptions": { "DurationInSeconds": endpoint.retry_duration_s },
        "S3BackupMode": if endpoint.backup_all_data { "AllData" } else { "FailedDataOnly" },
        "S3DestinationDescription": s3_description(backup),
        "ProcessingConfiguration": crate::api::processing_description(endpoint.transform.as_ref(), None),
    });
    if let Some(role) = &endpoint.role_arn {
        out["RoleARN"] = json!(role);
    }
    out
}
