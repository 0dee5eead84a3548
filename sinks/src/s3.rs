//! The S3-compatible destination: AWS's own Rust client (aws-sdk-s3), path-style addressing, with
//! the endpoint, keys and region from the standard environment (`AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; region
//! `us-east-1` when none is set).
//!
//! Objects over 16 MiB go up as multipart uploads of 8 MiB parts (buffers reach 128 MiB).
//!
//! Request checksums are sent only where S3 requires them: S3-compatible servers differ in which
//! of the newer flexible-checksum trailers they accept, and a plain PutObject with a
//! Content-MD5-free body is what every one of them takes.

use aws_sdk_s3::config::{BehaviorVersion, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

/// Objects larger than this are uploaded in parts.
pub const MULTIPART_THRESHOLD_BYTES: usize = 16 * 1024 * 1024;
/// The size of each part but the last (S3's minimum is 5 MiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Why S3 did not store an object: Firehose's error code for it (`S3.` and S3's own code,
/// `S3.NoSuchBucket`, `S3.AccessDenied`; `S3.ServiceUnavailable` when S3 gave no answer
/// [verify]) and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error_code}: {error_message}")]
pub struct PutError {
    pub error_code: String,
    pub error_message: String,
}

impl<E, R> From<SdkError<E, R>> for PutError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn from(error: SdkError<E, R>) -> Self {
        let error_code = match error.code() {
            Some(code) => format!("S3.{code}"),
            None => "S3.ServiceUnavailable".to_owned(),
        };
        let error_message = match error.message() {
            Some(message) => message.to_owned(),
            None => DisplayErrorContext(&error).to_string(),
        };
        Self {
            error_code,
            error_message,
        }
    }
}

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

    /// Stores `body` as `bucket`/`key`; `Ok` once S3 answered success. Bodies over
    /// [`MULTIPART_THRESHOLD_BYTES`] go up as a multipart upload of [`PART_BYTES`] parts.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), PutError> {
        if body.len() > MULTIPART_THRESHOLD_BYTES {
            return self.put_multipart(bucket, key, body).await;
        }
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(PutError::from)
    }

    /// A multipart upload; a failed one is aborted so no parts are left behind, and the caller
    /// retries the whole object.
    async fn put_multipart(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), PutError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(PutError::from)?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| PutError {
                error_code: "S3.InternalError".to_owned(),
                error_message: "CreateMultipartUpload returned no UploadId".to_owned(),
            })?
            .to_owned();
        let uploaded = async {
            let mut parts = Vec::new();
            for (i, chunk) in body.chunks(PART_BYTES).enumerate() {
                let number = i32::try_from(i + 1).expect("a 128 MiB buffer has few 8 MiB parts");
                let part = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(PutError::from)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map(|_| ())
                .map_err(PutError::from)
        }
        .await;
        if uploaded.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        uploaded
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    #[test]
    fn s3_error_codes_become_firehose_error_codes_with_s3_message() {
        let answer = HttpResponse::new(
            404.try_into().expect("404 is a status code"),
            SdkBody::empty(),
        );
        let error = SdkError::service_error(
            PutObjectError::generic(
                ErrorMetadata::builder()
                    .code("NoSuchBucket")
                    .message("The specified bucket does not exist")
                    .build(),
            ),
            answer,
        );
        assert_eq!(
            PutError::from(error),
            PutError {
                error_code: "S3.NoSuchBucket".to_owned(),
                error_message: "The specified bucket does not exist".to_owned(),
            }
        );
    }

    #[test]
    fn an_s3_that_does_not_answer_is_service_unavailable() {
        let error = SdkError::<PutObjectError, HttpResponse>::timeout_error("no answer in time");
        let put = PutError::from(error);
        assert_eq!(put.error_code, "S3.ServiceUnavailable");
        assert!(!put.error_message.is_empty());
    }
}
