//! DeliveryStreamDescription and its destination descriptions, as DescribeDeliveryStream
//! answers them (secrets such as access keys and passwords are never described).

use serde_json::{Value, json};

use crate::failure::DeliveryError;
use crate::model::{DESTINATION_ID, Definition, S3Destination, Status};

fn epoch_seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

pub(crate) fn s3_description(d: &S3Destination) -> Value {
    let mut out = json!({
        "RoleARN": d.role_arn,
        "BucketARN": d.bucket_arn,
        "BufferingHints": { "SizeInMBs": d.buffer_size_mib, "IntervalInSeconds": d.buffer_interval_s },
        "CompressionFormat": d.compression.as_str(),
        "EncryptionConfiguration": { "NoEncryptionConfig": "NoEncryption" },
        "CloudWatchLoggingOptions": { "Enabled": false },
    });
    if let Some(prefix) = &d.prefix {
        out["Prefix"] = json!(prefix);
    }
    if let Some(prefix) = &d.error_output_prefix {
        out["ErrorOutputPrefix"] = json!(prefix);
    }
    out
}

/// ProcessingConfiguration as described: the one given, or disabled.
pub(crate) fn processing_description(
    transform: Option<&crate::transform::LambdaTransform>,
    partitioning: Option<&crate::model::Partitioning>,
) -> Value {
    partitioning
        .map(|p| p.described.as_str())
        .filter(|d| !d.is_empty())
        .or(transform.map(|t| t.described.as_str()))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_else(|| json!({ "Enabled": false, "Processors": [] }))
}

pub(crate) fn destination_description(definition: &Definition) -> Value {
    let d = &definition.destination;
    if let Some(os) = &definition.opensearch {
        return json!({
            "DestinationId": DESTINATION_ID,
            os.flavor.description_member(): crate::opensearch::description(os, d),
        });
    }
    if let Some(redshift) = &definition.redshift {
        return json!({
            "DestinationId": DESTINATION_ID,
            "RedshiftDestinationDescription": crate::redshift::description(redshift, d),
        });
    }
    if let Some(endpoint) = &definition.http_endpoint {
        return json!({
            "DestinationId": DESTINATION_ID,
            "HttpEndpointDestinationDescription": crate::http_endpoint::description(endpoint, d),
        });
    }
    let s3 = s3_description(d);
    let mut extended = s3.clone();
    extended["S3BackupMode"] = json!("Disabled");
    extended["ProcessingConfiguration"] =
        processing_description(d.transform.as_ref(), d.partitioning.as_ref());
    if let Some(conversion) = &d.conversion
        && let Ok(described) = serde_json::from_str::<Value>(&conversion.described)
    {
        extended["DataFormatConversionConfiguration"] = described;
    }
    if let Some(partitioning) = &d.partitioning {
        extended["DynamicPartitioningConfiguration"] = json!({
            "Enabled": true,
            "RetryOptions": { "DurationInSeconds": partitioning.retry_duration_s },
        });
    }
    if let Some(extension) = &d.file_extension {
        extended["FileExtension"] = json!(extension);
    }
    if let Some(zone) = &d.custom_time_zone {
        extended["CustomTimeZone"] = json!(zone);
    }
    json!({
        "DestinationId": DESTINATION_ID,
        "S3DestinationDescription": s3,
        "ExtendedS3DestinationDescription": extended,
    })
}

/// The delivery stream's description. `failure` is the newest delivery error still standing; it
/// is shown as FailureDescription with Type UNKNOWN_ERROR, the one member of
/// DeliveryStreamFailureType that is not about KMS, ENIs or VPC endpoints, and Details naming
/// Firehose's error code and message [verify: AWS documents FailureDescription only for the
/// failures of those resources, and reports delivery errors in CloudWatch Logs].
pub(crate) fn description(
    d: &Definition,
    status: Status,
    destinations: Vec<Value>,
    failure: Option<&DeliveryError>,
) -> Value {
    let encryption = if d.encryption.enabled {
        let mut e = json!({ "Status": "ENABLED" });
        if let Some(t) = &d.encryption.key_type {
            e["KeyType"] = json!(t);
        }
        if let Some(a) = &d.encryption.key_arn {
            e["KeyARN"] = json!(a);
        }
        e
    } else {
        json!({ "Status": "DISABLED" })
    };
    let mut out = json!({
        "DeliveryStreamName": d.name,
        "DeliveryStreamARN": d.arn,
        "DeliveryStreamStatus": status.as_str(),
        "DeliveryStreamEncryptionConfiguration": encryption,
        "DeliveryStreamType": d.stream_type.as_str(),
        "VersionId": d.version_id.to_string(),
        "CreateTimestamp": epoch_seconds(d.create_ms),
        "Destinations": destinations,
        "HasMoreDestinations": false,
    });
    if let Some(failure) = failure {
        out["FailureDescription"] =
            json!({ "Type": "UNKNOWN_ERROR", "Details": failure.details() });
    }
    if let Some(ms) = d.last_update_ms {
        out["LastUpdateTimestamp"] = epoch_seconds(ms);
    }
    if let (Some(source), Some(start_ms)) = (&d.kinesis_source, d.delivery_start_ms()) {
        out["Source"] = json!({ "KinesisStreamSourceDescription": {
            "KinesisStreamARN": source.stream_arn,
            "RoleARN": source.role_arn,
            "DeliveryStartTimestamp": epoch_seconds(start_ms),
        }});
    }
    out
}
