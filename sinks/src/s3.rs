//! The S3-compatible destination: AWS's own Rust client (aws-sdk-s3), path-style addressing, with
//! the endpoint, keys and region from the standard environment (`AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; region
//! `us-east-1` when none is set).
//!
//! Request checksums are sent only where S3 requires them: S3-compatible servers differ in which
//! of the newer flexible-checksum trailers they accept, and a plain PutObject with a
//! Content-MD5-free body is what every one of them takes.

use aws_sdk_s3::config::{BehaviorVersion, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

/// A handle to the S3 endpoint; cheap to clone.
#[derive(Clone, Debug)]
pub struct S3Sink {
    client: aws_sdk_s3::Client,
}

impl S3Sink {
    /// Builds the client from the environment. Must run inside a tokio runtime.
    pub async fn from_env() -> Self {
        let region = aws_config::meta::region::RegionProviderChain::default_provider()
            .or_else(aws_config::Region::new("us-east-1"));
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .load()
            .await;
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// Stores `body` as `bucket`/`key`; `Ok` once S3 answered success.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(e).to_string())
    }
}
