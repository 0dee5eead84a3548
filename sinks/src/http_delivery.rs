//! Delivery to an HTTP endpoint, by the contract of Firehose's HTTP endpoint destination:
//!
//! - `POST <url>` with `Content-Type: application/json`, `X-Amz-Firehose-Protocol-Version: 1.0`,
//!   `X-Amz-Firehose-Request-Id` (a UUID kept the same across every retry of one request, so the
//!   receiver can deduplicate), `X-Amz-Firehose-Source-Arn` (the delivery stream's ARN),
//!   `X-Amz-Firehose-Access-Key` when configured, `X-Amz-Firehose-Common-Attributes` (JSON
//!   `{"commonAttributes":{…}}`) when configured, and `Content-Encoding: gzip` with GZIP.
//! - Body `{"requestId": <id>, "timestamp": <epoch ms>, "records": [{"data": <base64>}, …]}`,
//!   at most [`REQUEST_RECORDS_MAX`] records per request.
//! - Success is HTTP 200 with a JSON body whose `requestId` echoes ours; anything else (another
//!   status, a malformed body, no answer within [`RESPONSE_TIMEOUT`]) is a failure.
//! - Failures are retried with backoff starting at 1 s, doubling, ±15 % jitter, capped at
//!   2 minutes, until `RetryOptions.DurationInSeconds` has passed since the first failure
//!   (0: no retry). 413 is not retried. Records of a request that finally failed go to the S3
//!   backup as error records (`http-endpoint-failed`); AWS drops a 413's records instead
//!   [verify], this appliance backs them up too.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng as _;
use serde_json::json;

use crate::model::HttpEndpoint;

/// AWS's limit of records per request.
pub const REQUEST_RECORDS_MAX: usize = 10_000;
/// How long an answer may take before the attempt counts as failed.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(180);
/// The largest response body read.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// A request that finally failed, for its error records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub attempts: u32,
    pub error_code: &'static str,
    pub error_message: String,
    pub request_id: String,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP client of a service core; cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: HttpsClient,
}

impl HttpSender {
    /// Must run inside a tokio runtime. Trusts the system's root certificates for `https://`.
    pub fn new() -> std::io::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .or_else(|_| {
                // No system roots: plain http:// endpoints still work; https:// ones fail their
                // handshake and are retried (and reported) like any unreachable endpoint.
                Ok::<_, std::io::Error>(
                    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder_with_provider(
                            rustls::crypto::aws_lc_rs::default_provider().into(),
                        )
                        .with_safe_default_protocol_versions()
                        .map_err(std::io::Error::other)?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                    ),
                )
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `records` (at most [`REQUEST_RECORDS_MAX`]) as one request, retrying by the
    /// contract above. `alive` is asked before each attempt; `None` when it said no. Each failed
    /// attempt is told to `attempt_failed` (error code, message) as it happens.
    pub async fn deliver(
        &self,
        endpoint: &HttpEndpoint,
        source_arn: &str,
        records: &[&[u8]],
        alive: &dyn Fn() -> bool,
        attempt_failed: &dyn Fn(&str, &str),
    ) -> Option<Result<u32, Failure>> {
        assert!(records.len() <= REQUEST_RECORDS_MAX);
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut attempts = 0;
        let mut first_failure: Option<Instant> = None;
        let mut backoff = BACKOFF_FIRST;
        loop {
            if !alive() {
                return None;
            }
            attempts += 1;
            let outcome = self
                .attempt(endpoint, source_arn, records, &request_id)
                .await;
            let (error_code, error_message, retryable) = match outcome {
                Ok(()) => return Some(Ok(attempts)),
                Err(e) => e,
            };
            tracing::warn!(url = %endpoint.url, request_id, attempts, error_code, %error_message, "An HTTP endpoint delivery failed.");
            attempt_failed(error_code, &error_message);
            let failed_at = *first_failure.get_or_insert_with(Instant::now);
            let window = Duration::from_secs(u64::from(endpoint.retry_duration_s));
            if !retryable || failed_at.elapsed() >= window {
                return Some(Err(Failure {
                    attempts,
                    error_code,
                    error_message,
                    request_id,
                }));
            }
            let jitter = rand::rng().random_range(0.85..1.15);
            let wait = backoff
                .mul_f64(jitter)
                .min(window.saturating_sub(failed_at.elapsed()));
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// POSTs `body` to `url` once; the status and body of the answer (at most 1 MiB read), or
    /// why there was none.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let request = hyper::Request::post(url)
            .header("Content-Type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| "no answer in time".to_owned())?
    }

    /// One attempt: `Err((errorCode, errorMessage, retryable))` when it failed.
    async fn attempt(
        &self,
        endpoint: &HttpEndpoint,
        source_arn: &str,
        records: &[&[u8]],
        request_id: &str,
    ) -> Result<(), (&'static str, String, bool)> {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = json!({
            "requestId": request_id,
            "timestamp": timestamp_ms,
            "records": records.iter().map(|r| json!({ "data": b64.encode(r) })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        let body = if endpoint.content_encoding_gzip {
            crate::compression::compress(crate::model::Compression::Gzip, &body, "")
                .map_err(|e| ("HttpEndpoint.InternalError", e.to_string(), true))?
        } else {
            body
        };
        let mut request = hyper::Request::post(&endpoint.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request_id)
            .header("X-Amz-Firehose-Source-Arn", source_arn);
        if endpoint.content_encoding_gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(key) = &endpoint.access_key {
            request = request.header("X-Amz-Firehose-Access-Key", key);
        }
        if !endpoint.common_attributes.is_empty() {
            let attributes: serde_json::Map<String, serde_json::Value> = endpoint
                .common_attributes
                .iter()
                .map(|(n, v)| (n.clone(), json!(v)))
                .collect();
            request = request.header(
                "X-Amz-Firehose-Common-Attributes",
                json!({ "commonAttributes": attributes }).to_string(),
            );
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ("HttpEndpoint.InvalidUrl", e.to_string(), false))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ("HttpEndpoint.ConnectionFailed", format!("{e:?}"), true))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| ("HttpEndpoint.ResponseReadFailed", e.to_string(), true))?
                .to_bytes();
            Ok::<_, (&'static str, String, bool)>((status, body))
        };
        let (status, body) = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                (
                    "HttpEndpoint.RequestTimeout",
                    "The endpoint did not answer in time.".to_owned(),
                    true,
                )
            })??;
        let answer: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let message = answer
            .as_ref()
            .and_then(|a| a.get("errorMessage"))
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        match status {
            200 => {
                let echoed = answer
                    .as_ref()
                    .and_then(|a| a.get("requestId"))
                    .and_then(|r| r.as_str());
                if echoed == Some(request_id) {
                    Ok(())
                } else {
                    Err((
                        "HttpEndpoint.InvalidResponseFromDestination",
                        "The response did not echo the request's requestId.".to_owned(),
                        true,
                    ))
                }
            }
            413 => Err((
                "HttpEndpoint.PayloadTooLarge",
                message.unwrap_or_else(|| "The endpoint answered 413.".to_owned()),
                false,
            )),
            _ => Err((
                "HttpEndpoint.ResponseErrorStatus",
                message.unwrap_or_else(|| format!("The endpoint answered HTTP {status}.")),
                true,
            )),
        }
    }
}

/// One error record (a JSON line) of a record that could not be delivered.
pub fn error_record(failure: &Failure, data: &[u8], arrival_ms: u64, index: usize) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut line = json!({
        "attemptsMade": failure.attempts,
        "arrivalTimestamp": arrival_ms,
        "errorCode": failure.error_code,
        "errorMessage": failure.error_message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
        "subsequenceNumber": 0,
        "dataId": format!("{}.{index}", failure.request_id),
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

/// One error record of a record whose dynamic partition keys could not be had.
pub fn partitioning_error_record(data: &[u8], arrival_ms: u64, message: &str) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut line = json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
        "errorMessage": message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}

/// One error record of a record that could not be converted to the table's format.
pub fn conversion_error_record(data: &[u8], arrival_ms: u64, message: &str) -> Vec<u8> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut line = json!({
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": "DataFormatConversion.MalformedData",
        "errorMessage": message,
        "attemptEndingTimestamp": now_ms,
        "rawData": base64::engine::general_purpose::STANDARD.encode(data),
    })
    .to_string()
    .into_bytes();
    line.push(b'\n');
    line
}
