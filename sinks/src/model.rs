//! A delivery stream as Sluice keeps it: its definition (what CreateDeliveryStream and
//! UpdateDestination set), which is persisted, and its status, which is not (it is derived again
//! after a restart: CREATING until the stream's source is readable, then ACTIVE).
//!
//! The persisted form is JSON (serde) in `<data-dir>/firehose/<name>.json`; a field added here
//! must be optional or defaulted so that older files still load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// AWS's default buffering size and interval for S3 destinations.
pub const BUFFER_SIZE_MIB_DEFAULT: u32 = 5;
pub const BUFFER_INTERVAL_S_DEFAULT: u32 = 300;
pub const BUFFER_SIZE_MIB_MAX: i64 = 128;
pub const BUFFER_INTERVAL_S_MAX: i64 = 900;

/// The only destination id a delivery stream has (Firehose streams have one destination).
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// The prefix of the internal Kinesis stream that holds a DirectPut delivery stream's records.
pub use sluice_core::internal_stream::FIREHOSE_PREFIX as INTERNAL_STREAM_PREFIX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamType {
    DirectPut,
    KinesisStreamAsSource,
}

impl StreamType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DirectPut => "DirectPut",
            Self::KinesisStreamAsSource => "KinesisStreamAsSource",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Active,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Active => "ACTIVE",
        }
    }
}

/// CompressionFormat, plus ZSTD as a Sluice extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    #[serde(rename = "UNCOMPRESSED")]
    Uncompressed,
    #[serde(rename = "GZIP")]
    Gzip,
    #[serde(rename = "ZIP")]
    Zip,
    #[serde(rename = "Snappy")]
    Snappy,
    #[serde(rename = "HADOOP_SNAPPY")]
    HadoopSnappy,
    #[serde(rename = "ZSTD")]
    Zstd,
}

impl Compression {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "UNCOMPRESSED" => Self::Uncompressed,
            "GZIP" => Self::Gzip,
            "ZIP" => Self::Zip,
            "Snappy" => Self::Snappy,
            "HADOOP_SNAPPY" => Self::HadoopSnappy,
            "ZSTD" => Self::Zstd,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Uncompressed => "UNCOMPRESSED",
            Self::Gzip => "GZIP",
            Self::Zip => "ZIP",
            Self::Snappy => "Snappy",
            Self::HadoopSnappy => "HADOOP_SNAPPY",
            Self::Zstd => "ZSTD",
        }
    }
}

/// An S3 destination (ExtendedS3 or the legacy S3 configuration), with AWS's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Destination {
    pub role_arn: String,
    pub bucket_arn: String,
    pub prefix: Option<String>,
    pub error_output_prefix: Option<String>,
    pub buffer_size_mib: u32,
    pub buffer_interval_s: u32,
    pub compression: Compression,
    pub file_extension: Option<String>,
    pub custom_time_zone: Option<String>,
    /// Whether it was given as ExtendedS3DestinationConfiguration.
    pub extended: bool,
    /// ProcessingConfiguration's Lambda processor.
    #[serde(default)]
    pub transform: Option<crate::transform::LambdaTransform>,
    /// DynamicPartitioningConfiguration, enabled (only at creation, never disabled).
    #[serde(default)]
    pub partitioning: Option<Partitioning>,
    /// DataFormatConversionConfiguration: JSON → Parquet.
    #[serde(default)]
    pub conversion: Option<crate::format::Conversion>,
}

/// Dynamic partitioning of an S3 destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// MetadataExtraction's jq query, if any.
    pub metadata_query: Option<String>,
    /// AppendDelimiterToRecord: `\n` after each record.
    pub append_delimiter: bool,
    pub retry_duration_s: u32,
    /// The ProcessingConfiguration as given, JSON text, for DescribeDeliveryStream.
    pub described: String,
}

impl S3Destination {
    /// The bucket name of `arn:aws:s3:::bucket`.
    pub fn bucket(&self) -> &str {
        bucket_of(&self.bucket_arn).unwrap_or("")
    }
}

/// The bucket named by an S3 bucket ARN, if it is one.
pub fn bucket_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    let bucket = rest.strip_prefix("s3:::")?;
    let valid = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    valid.then_some(bucket)
}

/// Server-side encryption of the delivery stream (StartDeliveryStreamEncryption).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub enabled: bool,
    pub key_type: Option<String>,
    pub key_arn: Option<String>,
}

/// A delivery stream's persisted definition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub arn: String,
    pub stream_type: StreamType,
    /// Goes up by one on every configuration change; names objects.
    pub version_id: u64,
    pub create_ms: u64,
    pub last_update_ms: Option<u64>,
    pub destination: S3Destination,
    pub encryption: Encryption,
    pub tags: BTreeMap<String, String>,
    /// The Kinesis stream the records are read from: the internal stream of a DirectPut
    /// delivery stream, the user's stream for KinesisStreamAsSource.
    pub source_stream: String,
    /// KinesisStreamAsSource: the source stream's ARN and role as given.
    pub kinesis_source: Option<KinesisSource>,
    /// `Some`: records go to this HTTP endpoint, and `destination` is its S3 backup
    /// (S3Configuration): failed records always, every record with `S3BackupMode` AllData.
    #[serde(default)]
    pub http_endpoint: Option<HttpEndpoint>,
    /// `Some`: records are loaded into PostgreSQL (RedshiftDestinationConfiguration), and
    /// `destination` is the S3 staging configuration.
    #[serde(default)]
    pub redshift: Option<crate::redshift::Redshift>,
    /// `Some`: records are indexed with `_bulk`, and `destination` is the S3 configuration for
    /// failed (or all) documents.
    #[serde(default)]
    pub opensearch: Option<crate::opensearch::OpenSearch>,
}

impl Definition {
    /// KinesisStreamAsSource: DeliveryStartTimestamp, the instant from which the source stream
    /// is read. Firehose "starts reading data from the LATEST position" of the stream (its
    /// developer guide), so records written before the delivery stream existed are not
    /// delivered. The latest position is pinned to the creation instant and read as
    /// AT_TIMESTAMP rather than LATEST, so that records written while the delivery stream was
    /// CREATING, or before a restart that came before the first checkpoint, are not skipped.
    /// `None` for DirectPut, whose internal stream holds only the delivery stream's records.
    pub fn delivery_start_ms(&self) -> Option<u64> {
        self.kinesis_source.as_ref().map(|_| self.create_ms)
    }
}

/// An HTTP endpoint destination (HttpEndpointDestinationConfiguration), defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    pub url: String,
    pub name: Option<String>,
    /// Sent verbatim in `X-Amz-Firehose-Access-Key`; never described back.
    pub access_key: Option<String>,
    pub buffer_size_mib: u32,
    pub buffer_interval_s: u32,
    pub content_encoding_gzip: bool,
    pub common_attributes: Vec<(String, String)>,
    pub retry_duration_s: u32,
    /// `S3BackupMode` AllData (every record also to S3); otherwise FailedDataOnly.
    pub backup_all_data: bool,
    pub role_arn: Option<String>,
    /// ProcessingConfiguration's Lambda processor.
    #[serde(default)]
    pub transform: Option<crate::transform::LambdaTransform>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KinesisSource {
    pub stream_arn: String,
    pub role_arn: String,
}

/// A definition with its live status.
#[derive(Clone, Debug)]
pub struct DeliveryStream {
    pub definition: Definition,
    pub status: Status,
}

/// The internal stream name of the DirectPut delivery stream `name`.
pub fn internal_stream_name(name: &str) -> String {
    format!("{INTERNAL_STREAM_PREFIX}{name}")
}

/// The checkpoint consumer name of delivery stream `name`.
pub fn checkpoint_consumer(name: &str) -> String {
    format!("firehose:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_arns_name_their_bucket_and_anything_else_is_refused() {
        assert_eq!(bucket_of("arn:aws:s3:::my-bucket"), Some("my-bucket"));
        assert_eq!(bucket_of("arn:aws-cn:s3:::b.c"), Some("b.c"));
        assert_eq!(bucket_of("arn:aws:s3:::"), None);
        assert_eq!(bucket_of("arn:aws:s3:us-east-1::b"), None);
        assert_eq!(bucket_of("my-bucket"), None);
    }
}
