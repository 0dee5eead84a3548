//! The Kinesis Data Analytics v1 API (`X-Amz-Target: KinesisAnalytics_20150814.<Op>`, JSON 1.1,
//! SigV4 service name `kinesisanalytics`) over the application [`catalog`].
//!
//! Requests arrive on the shard cores' HTTP front ends; the catalog is shared with the runner on
//! a service core behind one mutex, held only for in-memory changes and the catalog write (never
//! across an await). Errors are `{"__type": …, "message": …}` with HTTP 400, as the JSON 1.1
//! protocol has it.

pub mod catalog;
mod discover;
pub(crate) mod ops;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use sluice_core::storage::RecordLog;
use sluice_protocols::auth::{AuthConfig, AuthMode};
use sluice_protocols::{HttpRequest, HttpResponse, sigv4};

use crate::peers::{DeliveryStreamTarget, DeliveryStreams, Functions};
use catalog::Catalog;

/// The `X-Amz-Target` prefix of the v1 API.
pub const TARGET_PREFIX: &str = "KinesisAnalytics_20150814";
/// The SigV4 signing name.
pub const SIGNING_NAME: &str = "kinesisanalytics";

/// Whether a request's `X-Amz-Target` names this API.
pub fn is_analytics_target(target: Option<&str>) -> bool {
    target.is_some_and(|t| {
        t.split_once('.')
            .is_some_and(|(service, _)| service == TARGET_PREFIX)
    })
}

/// An API error: the exception's name and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub type_name: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(type_name: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            type_name,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidArgumentException", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new("ResourceInUseException", message)
    }
    /// The HTTP status: 503 for the server fault, 400 for everything else.
    pub const fn status(&self) -> u16 {
        if matches!(self.type_name.as_bytes(), b"ServiceUnavailableException") {
            503
        } else {
            400
        }
    }
}

pub(crate) struct Shared<R> {
    pub(crate) catalog: Mutex<Catalog>,
    pub(crate) storage: OnceLock<R>,
    pub(crate) region: String,
    pub(crate) account_id: String,
    /// The largest reference data object an application may load.
    pub(crate) reference_bytes_max: AtomicU64,
    /// The S3 client reference data is read with, built on first use on the service core.
    pub(crate) s3: tokio::sync::OnceCell<crate::s3::S3Objects>,
    /// The service core's tokio runtime, once the runner is up: API calls that need the S3
    /// client (DiscoverInputSchema from an object) run there, not on the HTTP core.
    pub(crate) service_core: OnceLock<tokio::runtime::Handle>,
    /// The server's Firehose delivery streams (outputs and inputs that name one).
    pub(crate) delivery_streams: OnceLock<Arc<dyn DeliveryStreams>>,
    /// The server's Lambda functions (output and pre-processing functions).
    pub(crate) functions: OnceLock<Arc<dyn Functions>>,
}

/// The analytics service: API handler and runner share it. Cloning shares the state.
pub struct AnalyticsService<R> {
    pub(crate) shared: Arc<Shared<R>>,
}

impl<R> Clone for AnalyticsService<R> {
    fn clone(&self) -> Self {
        AnalyticsService {
            shared: self.shared.clone(),
        }
    }
}

impl<R> std::fmt::Debug for AnalyticsService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsService")
            .field("region", &self.shared.region)
            .finish()
    }
}

impl<R: RecordLog + sluice_core::storage::CheckpointLog> AnalyticsService<R> {
    /// A service over `catalog` for ARNs in `region` and `account_id`.
    pub fn new(catalog: Catalog, region: String, account_id: String) -> Self {
        AnalyticsService {
            shared: Arc::new(Shared {
                catalog: Mutex::new(catalog),
                storage: OnceLock::new(),
                region,
                account_id,
                reference_bytes_max: AtomicU64::new(crate::reference::REFERENCE_BYTES_MAX_DEFAULT),
                s3: tokio::sync::OnceCell::new(),
                service_core: OnceLock::new(),
                delivery_streams: OnceLock::new(),
                functions: OnceLock::new(),
            }),
        }
    }

    /// Bounds the size of the reference data objects applications load (default
    /// [`crate::reference::REFERENCE_BYTES_MAX_DEFAULT`]).
    pub fn set_reference_bytes_max(&self, bytes: u64) {
        self.shared
            .reference_bytes_max
            .store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn reference_bytes_max(&self) -> u64 {
        self.shared.reference_bytes_max.load(Ordering::Relaxed)
    }

    /// Hands the service the server's delivery streams (before the API is served).
    pub fn attach_delivery_streams(&self, delivery_streams: Arc<dyn DeliveryStreams>) {
        let _ = self.shared.delivery_streams.set(delivery_streams);
    }

    /// Hands the service the server's Lambda functions (on the service core, before the runner).
    pub fn attach_functions(&self, functions: Arc<dyn Functions>) {
        let _ = self.shared.functions.set(functions);
    }

    /// The delivery stream `name`; none when the server has no Firehose attached.
    pub(crate) fn delivery_stream(&self, name: &str) -> Option<DeliveryStreamTarget> {
        self.shared.delivery_streams.get()?.lookup(name)
    }

    /// Hands the service its storage (from the service core, once the engine has recovered).
    pub fn attach_storage(&self, storage: R) {
        let _ = self.shared.storage.set(storage);
    }

    pub(crate) fn catalog(&self) -> MutexGuard<'_, Catalog> {
        // A panic while holding the lock is a bug that already aborted the process
        // (panic = "abort"), so a poisoned lock cannot be observed in release builds.
        self.shared
            .catalog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn application_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesisanalytics:{}:{}:application/{name}",
            self.shared.region, self.shared.account_id
        )
    }

    /// Answers one API request.
    pub async fn handle(
        &self,
        req: HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> HttpResponse {
        let mut headers: Vec<(&'static str, String)> =
            vec![("x-amzn-RequestId", uuid::Uuid::new_v4().to_string())];
        headers.push(("Content-Type", "application/x-amz-json-1.1".to_owned()));
        let reply =
            |status: u16, body: Vec<u8>, headers: Vec<(&'static str, String)>| HttpResponse {
                status,
                headers,
                body,
            };
        let error = |e: ApiError, headers: Vec<(&'static str, String)>| {
            let body = serde_json::json!({"__type": e.type_name, "message": e.message});
            reply(e.status(), body.to_string().into_bytes(), headers)
        };
        let operation = req
            .target
            .and_then(|t| t.split_once('.'))
            .map_or("", |(_, op)| op)
            .to_owned();
        if req.method != "POST" {
            return error(ApiError::new("UnknownOperationException", ""), headers);
        }
        let document: serde_json::Value = match serde_json::from_slice(req.body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return error(
                    ApiError::new(
                        "SerializationException",
                        "Start of structure or map found where not expected.",
                    ),
                    headers,
                );
            }
        };
        if !req.has_auth {
            return error(
                ApiError::new(
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                ),
                headers,
            );
        }
        if let AuthMode::Verify { credentials } = &auth.mode
            && let Err(e) = sigv4::verify(&req, credentials, SIGNING_NAME, &self.shared.region, now)
        {
            return error(ApiError::new(e.type_name, e.message), headers);
        }
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match ops::dispatch(self, &operation, &document, now_ms).await {
            Ok(body) => reply(200, body.to_string().into_bytes(), headers),
            Err(e) => error(e, headers),
        }
    }
}
