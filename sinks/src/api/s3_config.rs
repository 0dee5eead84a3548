//! S3 destination configurations (ExtendedS3, the legacy S3 shape, and the S3 configurations
//! of other destinations): AWS's defaults, ranges and prefix rules, dynamic partitioning and
//! processors, and the members this appliance refuses rather than ignores.

use serde_json::Value;

use crate::api::validate::{check_length, check_range};
use crate::error::FirehoseError;
use crate::model::{
    self, BUFFER_INTERVAL_S_DEFAULT, BUFFER_INTERVAL_S_MAX, BUFFER_SIZE_MIB_DEFAULT,
    BUFFER_SIZE_MIB_MAX, Compression, S3Destination,
};
use crate::wire;

/// Refuses the members of an S3 configuration that ask for processing this appliance does not
/// do, so that a configuration is never accepted and then silently ignored.
pub(crate) fn check_unsupported(config: &wire::S3Configuration) -> Result<(), FirehoseError> {
    if config
        .s3_backup_mode
        .as_deref()
        .is_some_and(|m| m != "Disabled")
        || config.s3_backup_configuration.is_some()
        || config.s3_backup_update.is_some()
    {
        return Err(FirehoseError::invalid(
            "S3 source backup (S3BackupMode Enabled) is not supported by this appliance.",
        ));
    }
    if let Some(encryption) = &config.encryption_configuration
        && encryption.get("KMSEncryptionConfig").is_some()
    {
        return Err(FirehoseError::invalid(
            "KMSEncryptionConfig is not supported by this appliance; use NoEncryptionConfig.",
        ));
    }
    Ok(())
}

pub(crate) fn s3_destination(
    config: wire::S3Configuration,
    extended: bool,
    member: &str,
) -> Result<S3Destination, FirehoseError> {
    let role_arn = config
        .role_arn
        .clone()
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.roleARN")))?;
    let bucket_arn = config
        .bucket_arn
        .clone()
        .ok_or_else(|| FirehoseError::missing(&format!("{member}.bucketARN")))?;
    let base = S3Destination {
        role_arn,
        bucket_arn,
        prefix: None,
        error_output_prefix: None,
        buffer_size_mib: BUFFER_SIZE_MIB_DEFAULT,
        buffer_interval_s: BUFFER_INTERVAL_S_DEFAULT,
        compression: Compression::Uncompressed,
        file_extension: None,
        custom_time_zone: None,
        extended,
        transform: None,
        partitioning: None,
        conversion: None,
    };
    merge_s3(&base, config, extended, member, true)
}

/// `current` with the members `update` gives, checked as a whole.
pub(crate) fn merge_s3(
    current: &S3Destination,
    update: wire::S3Configuration,
    extended: bool,
    member: &str,
    creating: bool,
) -> Result<S3Destination, FirehoseError> {
    check_unsupported(&update)?;
    if !extended && (update.file_extension.is_some() || update.custom_time_zone.is_some()) {
        return Err(FirehoseError::invalid(
            "FileExtension and CustomTimeZone need an ExtendedS3 destination.",
        ));
    }
    let mut next = current.clone();
    next.extended = extended;
    if let Some(dynamic) = &update.dynamic_partitioning_configuration {
        let enabled = dynamic
            .get("Enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let retry_s = match dynamic
            .get("RetryOptions")
            .and_then(|r| r.get("DurationInSeconds"))
            .and_then(Value::as_i64)
        {
            Some(s) => check_range(
                s,
                0,
                7200,
                &format!(
                    "{member}.dynamicPartitioningConfiguration.retryOptions.durationInSeconds"
                ),
            )? as u32,
            None => 300,
        };
        match (&mut next.partitioning, enabled) {
            (None, true) if creating && extended => {
                next.partitioning = Some(crate::model::Partitioning {
                    metadata_query: None,
                    append_delimiter: false,
                    retry_duration_s: retry_s,
                    described: String::new(),
                });
            }
            (None, true) => {
                return Err(FirehoseError::invalid(
                    "Dynamic partitioning can only be enabled when the delivery stream is created.",
                ));
            }
            (Some(_), false) => {
                return Err(FirehoseError::invalid(
                    "Dynamic partitioning cannot be disabled once it is enabled.",
                ));
            }
            (Some(partitioning), true) => partitioning.retry_duration_s = retry_s,
            (None, false) => {}
        }
    }
    if let Some(processing) = &update.processing_configuration {
        if !extended {
            return Err(FirehoseError::invalid(
                "ProcessingConfiguration needs an ExtendedS3 destination.",
            ));
        }
        let parsed = crate::transform::parse(processing, member, next.partitioning.is_some())?;
        next.transform = parsed.lambda;
        if let Some(partitioning) = &mut next.partitioning {
            partitioning.metadata_query = parsed.metadata_query;
            partitioning.append_delimiter = parsed.append_delimiter;
            partitioning.described = processing.to_string();
        }
    }
    if let Some(role) = update.role_arn {
        check_length(&role, 1, 512, &format!("{member}.roleARN"))?;
        next.role_arn = role;
    }
    if let Some(bucket) = update.bucket_arn {
        check_length(&bucket, 1, 2048, &format!("{member}.bucketARN"))?;
        if model::bucket_of(&bucket).is_none() {
            return Err(FirehoseError::validation(
                &bucket,
                &format!("{member}.bucketARN"),
                "Member must satisfy regular expression pattern: arn:.*:s3:::[\\w\\.\\-]{1,255}",
            ));
        }
        next.bucket_arn = bucket;
    }
    if let Some(prefix) = update.prefix {
        check_length(&prefix, 0, 1024, &format!("{member}.prefix"))?;
        next.prefix = (!prefix.is_empty()).then_some(prefix);
    }
    if let Some(prefix) = update.error_output_prefix {
        check_length(&prefix, 0, 1024, &format!("{member}.errorOutputPrefix"))?;
        next.error_output_prefix = (!prefix.is_empty()).then_some(prefix);
    }
    let conversion_update = update.data_format_conversion_configuration.clone();
    let size_given = update
        .buffering_hints
        .as_ref()
        .is_some_and(|h| h.size_in_mbs.is_some());
    if let Some(hints) = update.buffering_hints {
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
                BUFFER_INTERVAL_S_MAX,
                &format!("{member}.bufferingHints.intervalInSeconds"),
            )? as u32;
        }
    }
    if let Some(format) = update.compression_format {
        next.compression = Compression::parse(&format).ok_or_else(|| {
            FirehoseError::validation(
                &format,
                &format!("{member}.compressionFormat"),
                "Member must satisfy enum value set: [HADOOP_SNAPPY, ZIP, Snappy, UNCOMPRESSED, GZIP, ZSTD]",
            )
        })?;
    }
    if let Some(extension) = update.file_extension {
        check_length(&extension, 0, 128, &format!("{member}.fileExtension"))?;
        let valid = extension.is_empty()
            || (extension.starts_with('.')
                && extension[1..].bytes().all(|b| {
                    b.is_ascii_digit()
                        || b.is_ascii_lowercase()
                        || matches!(b, b'!' | b'-' | b'_' | b'.' | b'*' | b'\'' | b'(' | b')')
                })
                && extension.len() > 1);
        if !valid {
            return Err(FirehoseError::validation(
                &extension,
                &format!("{member}.fileExtension"),
                "Member must satisfy regular expression pattern: ^$|\\.[0-9a-z!\\-_.*'()]+",
            ));
        }
        next.file_extension = (!extension.is_empty()).then_some(extension);
    }
    if let Some(zone) = update.custom_time_zone {
        check_length(&zone, 0, 50, &format!("{member}.customTimeZone"))?;
        if !(zone.is_empty() || zone == "UTC") {
            return Err(FirehoseError::invalid(format!(
                "CustomTimeZone {zone} is not supported by this appliance: prefixes are evaluated in UTC."
            )));
        }
        next.custom_time_zone = (!zone.is_empty()).then_some(zone);
    }
    if let Some(conversion) = &conversion_update {
        if !extended {
            return Err(FirehoseError::invalid(
                "DataFormatConversionConfiguration needs an ExtendedS3 destination.",
            ));
        }
        next.conversion = crate::format::parse(
            conversion,
            &format!("{member}.dataFormatConversionConfiguration"),
        )?;
    }
    if next.conversion.is_some() {
        if next.compression != Compression::Uncompressed {
            return Err(FirehoseError::invalid(
                "CompressionFormat must be UNCOMPRESSED when data format conversion is enabled.",
            ));
        }
        if next.partitioning.is_some() {
            return Err(FirehoseError::invalid(
                "Data format conversion together with dynamic partitioning is not supported by this appliance.",
            ));
        }
        if next.buffer_size_mib < 64 {
            if size_given {
                return Err(FirehoseError::invalid(
                    "BufferingHints.SizeInMBs must be at least 64 when data format conversion is enabled.",
                ));
            }
            next.buffer_size_mib = 128;
        }
    }
    match &next.partitioning {
        Some(partitioning) => crate::prefix::validate_dynamic(
            next.prefix.as_deref(),
            next.error_output_prefix.as_deref(),
            partitioning.metadata_query.is_some(),
            next.transform.is_some(),
        )?,
        None => {
            crate::prefix::validate(next.prefix.as_deref(), next.error_output_prefix.as_deref())?
        }
    }
    Ok(next)
}
