//! The S3-compatible destination: AWS's own Rust client (aws-sdk-s3), path-style addressing, with
//! the endpoint, keys and region from the standard environment (`AWS_ENDPOINT_URL_S3` or
//! `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; region
//! `us-east-1` when none is set). The config file can override any of them for one delivery
//! stream (`[firehose_s3."NAME"]`, see [`S3Endpoint`]).
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

/// One delivery stream's S3 settings from the config file, `[firehose_s3."NAME"]`: each field
/// given replaces the environment's for that delivery stream only; the rest still come from the
/// environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Endpoint {
    /// The S3-compatible server's URL (`http://host:port`), instead of `AWS_ENDPOINT_URL_S3`.
    pub endpoint_url: Option<String>,
    /// Given together with `secret_access_key`, instead of the environment's keys.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// The signing region, instead of `AWS_REGION`.
    pub region: Option<String>,
}

impl S3Endpoint {
    /// Why the settings cannot work, if they cannot: a key without its secret (or the
    /// reverse), or an endpoint that is not an http(s) URL.
    pub fn check(&self) -> Result<(), String> {
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("access_key_id and secret_access_key must be given together".to_owned());
        }
        if let Some(url) = &self.endpoint_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|host| host.is_empty()) {
                return Err(format!(
                    "endpoint_url {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        if self.region.as_deref() == Some("") {
            return Err("region must not be empty".to_owned());
        }
        Ok(())
    }
}

impl S3Sink {
    /// Builds the client from the environment. Must run inside a tokio runtime.
    pub async fn from_env() -> Self {
        Self::with_overrides(&S3Endpoint::default()).await
    }

    /// Builds the client from the environment, with `settings`' fields in place of the
    /// environment's. Must run inside a tokio runtime.
    pub async fn with_overrides(settings: &S3Endpoint) -> Self {
        let region = match &settings.region {
            Some(region) => aws_config::meta::region::RegionProviderChain::first_try(
                aws_config::Region::new(region.clone()),
            ),
            None => aws_config::meta::region::RegionProviderChain::default_provider()
                .or_else(aws_config::Region::new("us-east-1")),
        };
        let mut shared = aws_config::defaults(BehaviorVersion::latest()).region(region);
        if let (Some(key), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            shared = shared.credentials_provider(aws_sdk_s3::config::Credentials::new(
                key.clone(),
                secret.clone(),
                None,
                None,
                "sluice-config-file",
            ));
        }
        let shared = shared.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        // Set on the service's own config, so it wins over AWS_ENDPOINT_URL_S3 too.
        if let Some(url) = &settings.endpoint_url {
            config = config.endpoint_url(url.clone());
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(config.build()),
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
