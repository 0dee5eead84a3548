//! Reading reference objects from S3-compatible storage: AWS's own Rust client (aws-sdk-s3),
//! path-style addressing, configured from the standard environment as the Firehose S3
//! destination is (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; region `us-east-1` when none is set).
//!
//! An object is read whole into memory, and never more than the configured bound: a declared
//! length over it is refused before the body is read, and a body that grows past it (a server
//! that declared no length) is refused as soon as it does.

use aws_sdk_s3::config::{BehaviorVersion, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;

use crate::reference::LoadReferenceError;

/// A handle to the S3 endpoint; cheap to clone.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
}

impl S3Objects {
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

    /// The bytes of `bucket`/`key`, at most `bytes_max` of them.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        bytes_max: u64,
    ) -> Result<Vec<u8>, LoadReferenceError> {
        let read_error = read_error(bucket, key);
        let too_large = |bytes: u64| LoadReferenceError::TooLarge {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            bytes,
            bytes_max,
        };
        let reply = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| read_error(DisplayErrorContext(e).to_string()))?;
        let declared = reply.content_length().and_then(|l| u64::try_from(l).ok());
        if let Some(bytes) = declared
            && bytes > bytes_max
        {
            return Err(too_large(bytes));
        }
        let capacity = declared.unwrap_or(0).min(bytes_max);
        let mut data = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        let mut body = reply.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| read_error(DisplayErrorContext(e).to_string()))?;
            let bytes = (data.len() + chunk.len()) as u64;
            if bytes > bytes_max {
                return Err(too_large(bytes));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    /// The first `bytes_max` bytes of `bucket`/`key` (all of it if shorter), by a ranged GET.
    pub async fn get_prefix(
        &self,
        bucket: &str,
        key: &str,
        bytes_max: u64,
    ) -> Result<Vec<u8>, LoadReferenceError> {
        let read_error = read_error(bucket, key);
        let reply = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes=0-{}", bytes_max.saturating_sub(1)))
            .send()
            .await
            .map_err(|e| read_error(DisplayErrorContext(e).to_string()))?;
        let mut data = Vec::new();
        let mut body = reply.body;
        // A server that ignores the range sends the whole object: stop reading at the bound.
        while data.len() < bytes_max as usize
            && let Some(chunk) = body.next().await
        {
            let chunk = chunk.map_err(|e| read_error(DisplayErrorContext(e).to_string()))?;
            data.extend_from_slice(&chunk);
        }
        data.truncate(bytes_max as usize);
        Ok(data)
    }
}

/// The error of a failed read of `bucket`/`key`, from the client's message.
fn read_error<'a>(bucket: &'a str, key: &'a str) -> impl Fn(String) -> LoadReferenceError + 'a {
    move |message| LoadReferenceError::Read {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    }
}
