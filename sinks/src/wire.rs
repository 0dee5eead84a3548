//! The request shapes of the Firehose JSON 1.1 API (botocore model `firehose` 2015-08-04), as
//! serde reads them. Every member is optional here: required members and ranges are checked by
//! `api` so that each failure gets AWS's own error and wording. Members this appliance does not
//! act on are kept as raw JSON so a request that uses them can be refused by name.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BufferingHints {
    #[serde(rename = "SizeInMBs")]
    pub size_in_mbs: Option<i64>,
    #[serde(rename = "IntervalInSeconds")]
    pub interval_in_seconds: Option<i64>,
}

/// ExtendedS3DestinationConfiguration, S3DestinationConfiguration and their `*Update` forms
/// (the legacy shape is a subset).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct S3Configuration {
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(rename = "BucketARN")]
    pub bucket_arn: Option<String>,
    #[serde(rename = "Prefix")]
    pub prefix: Option<String>,
    #[serde(rename = "ErrorOutputPrefix")]
    pub error_output_prefix: Option<String>,
    #[serde(rename = "BufferingHints")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(rename = "CompressionFormat")]
    pub compression_format: Option<String>,
    #[serde(rename = "EncryptionConfiguration")]
    pub encryption_configuration: Option<Value>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    pub cloud_watch_logging_options: Option<Value>,
    #[serde(rename = "ProcessingConfiguration")]
    pub processing_configuration: Option<Value>,
    #[serde(rename = "S3BackupMode")]
    pub s3_backup_mode: Option<String>,
    #[serde(rename = "S3BackupConfiguration")]
    pub s3_backup_configuration: Option<Value>,
    #[serde(rename = "S3BackupUpdate")]
    pub s3_backup_update: Option<Value>,
    #[serde(rename = "DataFormatConversionConfiguration")]
    pub data_format_conversion_configuration: Option<Value>,
    #[serde(rename = "DynamicPartitioningConfiguration")]
    pub dynamic_partitioning_configuration: Option<Value>,
    #[serde(rename = "FileExtension")]
    pub file_extension: Option<String>,
    #[serde(rename = "CustomTimeZone")]
    pub custom_time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Tag {
    #[serde(rename = "Key")]
    pub key: Option<String>,
    #[serde(rename = "Value")]
    pub value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KinesisStreamSourceConfiguration {
    #[serde(rename = "KinesisStreamARN")]
    pub kinesis_stream_arn: Option<String>,
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EncryptionInput {
    #[serde(rename = "KeyARN")]
    pub key_arn: Option<String>,
    #[serde(rename = "KeyType")]
    pub key_type: Option<String>,
}

/// The destination members of CreateDeliveryStream that this appliance does not deliver to.
pub const UNSUPPORTED_DESTINATIONS: [&str; 5] = [
    "SplunkDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
    "DatabaseSourceConfiguration",
];

/// The destination update members of UpdateDestination that this appliance does not take.
pub const UNSUPPORTED_UPDATES: [&str; 5] = [
    "SplunkDestinationUpdate",
    "AmazonOpenSearchServerlessDestinationUpdate",
    "SnowflakeDestinationUpdate",
    "IcebergDestinationUpdate",
    "MSKSourceConfiguration",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateDeliveryStream {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "DeliveryStreamType")]
    pub delivery_stream_type: Option<String>,
    #[serde(rename = "KinesisStreamSourceConfiguration")]
    pub kinesis_stream_source_configuration: Option<KinesisStreamSourceConfiguration>,
    #[serde(rename = "DirectPutSourceConfiguration")]
    pub direct_put_source_configuration: Option<Value>,
    #[serde(rename = "DeliveryStreamEncryptionConfigurationInput")]
    pub encryption: Option<EncryptionInput>,
    #[serde(rename = "S3DestinationConfiguration")]
    pub s3: Option<S3Configuration>,
    #[serde(rename = "ExtendedS3DestinationConfiguration")]
    pub extended_s3: Option<S3Configuration>,
    #[serde(rename = "HttpEndpointDestinationConfiguration")]
    pub http_endpoint: Option<HttpEndpointConfiguration>,
    #[serde(rename = "RedshiftDestinationConfiguration")]
    pub redshift: Option<Value>,
    #[serde(rename = "AmazonopensearchserviceDestinationConfiguration")]
    pub opensearch: Option<Value>,
    #[serde(rename = "ElasticsearchDestinationConfiguration")]
    pub elasticsearch: Option<Value>,
    #[serde(rename = "MSKSourceConfiguration")]
    pub msk_source_configuration: Option<Value>,
    #[serde(rename = "Tags")]
    pub tags: Option<Vec<Tag>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpdateDestination {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "CurrentDeliveryStreamVersionId")]
    pub current_version_id: Option<String>,
    #[serde(rename = "DestinationId")]
    pub destination_id: Option<String>,
    #[serde(rename = "S3DestinationUpdate")]
    pub s3: Option<S3Configuration>,
    #[serde(rename = "ExtendedS3DestinationUpdate")]
    pub extended_s3: Option<S3Configuration>,
    #[serde(rename = "HttpEndpointDestinationUpdate")]
    pub http_endpoint: Option<HttpEndpointConfiguration>,
    #[serde(rename = "RedshiftDestinationUpdate")]
    pub redshift: Option<Value>,
    #[serde(rename = "AmazonopensearchserviceDestinationUpdate")]
    pub opensearch: Option<Value>,
    #[serde(rename = "ElasticsearchDestinationUpdate")]
    pub elasticsearch: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Named {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "AllowForceDelete")]
    pub allow_force_delete: Option<bool>,
    #[serde(rename = "Limit")]
    pub limit: Option<i64>,
    #[serde(rename = "ExclusiveStartDestinationId")]
    pub exclusive_start_destination_id: Option<String>,
    #[serde(rename = "ExclusiveStartTagKey")]
    pub exclusive_start_tag_key: Option<String>,
    #[serde(rename = "Tags")]
    pub tags: Option<Vec<Tag>>,
    #[serde(rename = "TagKeys")]
    pub tag_keys: Option<Vec<String>>,
    #[serde(rename = "DeliveryStreamEncryptionConfigurationInput")]
    pub encryption: Option<EncryptionInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListDeliveryStreams {
    #[serde(rename = "Limit")]
    pub limit: Option<i64>,
    #[serde(rename = "DeliveryStreamType")]
    pub delivery_stream_type: Option<String>,
    #[serde(rename = "ExclusiveStartDeliveryStreamName")]
    pub exclusive_start_delivery_stream_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Record {
    #[serde(rename = "Data")]
    pub data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PutRecord {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "Record")]
    pub record: Option<Record>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PutRecordBatch {
    #[serde(rename = "DeliveryStreamName")]
    pub delivery_stream_name: Option<String>,
    #[serde(rename = "Records")]
    pub records: Option<Vec<Record>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointConfiguration {
    #[serde(rename = "Url")]
    pub url: Option<String>,
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "AccessKey")]
    pub access_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommonAttribute {
    #[serde(rename = "AttributeName")]
    pub attribute_name: Option<String>,
    #[serde(rename = "AttributeValue")]
    pub attribute_value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestConfiguration {
    #[serde(rename = "ContentEncoding")]
    pub content_encoding: Option<String>,
    #[serde(rename = "CommonAttributes")]
    pub common_attributes: Option<Vec<CommonAttribute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RetryOptions {
    #[serde(rename = "DurationInSeconds")]
    pub duration_in_seconds: Option<i64>,
}

/// HttpEndpointDestinationConfiguration and HttpEndpointDestinationUpdate.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HttpEndpointConfiguration {
    #[serde(rename = "EndpointConfiguration")]
    pub endpoint_configuration: Option<EndpointConfiguration>,
    #[serde(rename = "BufferingHints")]
    pub buffering_hints: Option<BufferingHints>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    pub cloud_watch_logging_options: Option<Value>,
    #[serde(rename = "RequestConfiguration")]
    pub request_configuration: Option<RequestConfiguration>,
    #[serde(rename = "ProcessingConfiguration")]
    pub processing_configuration: Option<Value>,
    #[serde(rename = "RoleARN")]
    pub role_arn: Option<String>,
    #[serde(rename = "RetryOptions")]
    pub retry_options: Option<RetryOptions>,
    #[serde(rename = "S3BackupMode")]
    pub s3_backup_mode: Option<String>,
    #[serde(rename = "S3Configuration")]
    pub s3_configuration: Option<S3Configuration>,
    #[serde(rename = "S3Update")]
    pub s3_update: Option<S3Configuration>,
    #[serde(rename = "SecretsManagerConfiguration")]
    pub secrets_manager_configuration: Option<Value>,
}
