//! The Kinesis Video Streams control plane on the rest-json wire (`POST /<operation>` with a
//! JSON body, SigV4 signing name `kinesisvideo`).
//!
//! Runs on the shard cores' HTTP front ends. Calls that change a stream hold the registry's
//! control lock from their first read to their last write, and persist before they answer.
//! A stream's fragments live in an internal Kinesis stream of two shards
//! (`sluice_core::internal_stream::VIDEO_PREFIX`), created with the stream and deleted with it;
//! its Kinesis retention follows the stream's `DataRetentionInHours` (see
//! [`crate::registry::internal_retention_hours`]).
//!
//! Served: CreateStream, DescribeStream, ListStreams, UpdateStream, DeleteStream,
//! UpdateDataRetention, GetDataEndpoint, TagStream, UntagStream, ListTagsForStream, TagResource,
//! UntagResource, ListTagsForResource, Describe/UpdateStreamStorageConfiguration,
//! Describe/UpdateImageGenerationConfiguration and Describe/UpdateNotificationConfiguration
//! (stored settings: this appliance generates no images and sends no notifications), and
//! DescribeMappedResourceConfiguration (always empty). Signaling channels and edge
//! configurations do not exist here: the listing calls answer empty lists, the describing calls
//! ResourceNotFoundException (StreamEdgeConfigurationNotFoundException for edge), and the
//! changing calls InvalidArgumentException naming the operation.

pub mod validate;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_core::api::{DeleteStreamInput, KinesisApi};
use sluice_core::internal_stream::VIDEO_PREFIX;
use sluice_protocols::sigv4::{self, AuthConfig, AuthMode};
use sluice_protocols::{HttpRequest, HttpResponse};

use crate::error::{CONTENT_TYPE, ErrorKind, VideoError};
use crate::model::{StreamDefinition, StreamStatus, VideoStream};
use crate::registry::{ControlGuard, Registry, create_internal_stream};
use validate::{
    DATA_RETENTION_HOURS_MAX, TAGS_MAX, check_arn, check_device_name, check_enum, check_kms_key_id,
    check_length, check_media_type, check_next_token, check_range, check_stream_name,
    check_tag_keys, check_tags, check_version, tags_exceeded,
};

/// The SigV4 signing name of every KVS API.
pub const SIGNING_NAME: &str = "kinesisvideo";
/// The most video streams one appliance holds (each costs an internal stream of two shards).
pub const STREAMS_MAX: usize = 10_000;
/// ListStreams' page size when MaxResults is absent, and its largest.
pub const LIST_STREAMS_RESULTS_MAX: i64 = 10_000;
/// How much of the video stream's name its internal stream's name keeps (for operators); the
/// whole internal name stays within the Kinesis limit of 128 characters.
const INTERNAL_NAME_PREFIX_CHARS: usize = 60;
const _: () = assert!(
    VIDEO_PREFIX.len() + INTERNAL_NAME_PREFIX_CHARS + 1 + 20 + 1 + 16
        <= sluice_core::limits::STREAM_NAME_CHARS_MAX
);
/// The APIName values of GetDataEndpoint.
pub const API_NAMES: [&str; 8] = [
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
];

/// The control-plane operations, by request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    CreateStream,
    DescribeStream,
    ListStreams,
    UpdateStream,
    DeleteStream,
    UpdateDataRetention,
    GetDataEndpoint,
    TagStream,
    UntagStream,
    ListTagsForStream,
    TagResource,
    UntagResource,
    ListTagsForResource,
    DescribeStreamStorageConfiguration,
    UpdateStreamStorageConfiguration,
    DescribeImageGenerationConfiguration,
    UpdateImageGenerationConfiguration,
    DescribeNotificationConfiguration,
    UpdateNotificationConfiguration,
    DescribeMappedResourceConfiguration,
    ListSignalingChannels,
    ListEdgeAgentConfigurations,
    DescribeSignalingChannel,
    DescribeMediaStorageConfiguration,
    DescribeEdgeConfiguration,
    /// An operation of the model this appliance does not serve; the name is the model's.
    Unsupported(&'static str),
}

fn operation_of(path: &str) -> Option<Operation> {
    use Operation as O;
    Some(match path {
        "/createStream" => O::CreateStream,
        "/describeStream" => O::DescribeStream,
        "/listStreams" => O::ListStreams,
        "/updateStream" => O::UpdateStream,
        "/deleteStream" => O::DeleteStream,
        "/updateDataRetention" => O::UpdateDataRetention,
        "/getDataEndpoint" => O::GetDataEndpoint,
        "/tagStream" => O::TagStream,
        "/untagStream" => O::UntagStream,
        "/listTagsForStream" => O::ListTagsForStream,
        "/TagResource" => O::TagResource,
        "/UntagResource" => O::UntagResource,
        "/ListTagsForResource" => O::ListTagsForResource,
        "/describeStreamStorageConfiguration" => O::DescribeStreamStorageConfiguration,
        "/updateStreamStorageConfiguration" => O::UpdateStreamStorageConfiguration,
        "/describeImageGenerationConfiguration" => O::DescribeImageGenerationConfiguration,
        "/updateImageGenerationConfiguration" => O::UpdateImageGenerationConfiguration,
        "/describeNotificationConfiguration" => O::DescribeNotificationConfiguration,
        "/updateNotificationConfiguration" => O::UpdateNotificationConfiguration,
        "/describeMappedResourceConfiguration" => O::DescribeMappedResourceConfiguration,
        "/listSignalingChannels" => O::ListSignalingChannels,
        "/listEdgeAgentConfigurations" => O::ListEdgeAgentConfigurations,
        "/describeSignalingChannel" => O::DescribeSignalingChannel,
        "/describeMediaStorageConfiguration" => O::DescribeMediaStorageConfiguration,
        "/describeEdgeConfiguration" => O::DescribeEdgeConfiguration,
        "/createSignalingChannel" => O::Unsupported("CreateSignalingChannel"),
        "/updateSignalingChannel" => O::Unsupported("UpdateSignalingChannel"),
        "/deleteSignalingChannel" => O::Unsupported("DeleteSignalingChannel"),
        "/getSignalingChannelEndpoint" => O::Unsupported("GetSignalingChannelEndpoint"),
        "/updateMediaStorageConfiguration" => O::Unsupported("UpdateMediaStorageConfiguration"),
        "/startEdgeConfigurationUpdate" => O::Unsupported("StartEdgeConfigurationUpdate"),
        "/deleteEdgeConfiguration" => O::Unsupported("DeleteEdgeConfiguration"),
        _ => return None,
    })
}

/// Whether `path` (without its query) is a KVS control-plane operation.
pub fn is_control_path(path: &str) -> bool {
    operation_of(path).is_some()
}

fn now_ms(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checks that `req` is authenticated for KVS in `region`: an `Authorization` header or a
/// presigned query is always required (MissingAuthenticationTokenException otherwise); under
/// [`AuthMode::Verify`] its SigV4 signature must verify, over the body as received.
pub fn authenticate(
    req: &HttpRequest<'_>,
    auth: &AuthConfig,
    region: &str,
    now: SystemTime,
) -> Result<(), VideoError> {
    if !req.has_auth {
        return Err(VideoError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    }
    if let AuthMode::Verify { credentials } = &auth.mode
        && let Err(error) = sigv4::verify(req, credentials, SIGNING_NAME, region, now)
    {
        let kind = match error.type_name {
            "MissingAuthenticationTokenException" => ErrorKind::MissingAuthenticationToken,
            "IncompleteSignatureException" => ErrorKind::IncompleteSignature,
            "UnrecognizedClientException" => ErrorKind::UnrecognizedClient,
            _ => ErrorKind::InvalidSignature,
        };
        return Err(VideoError::new(kind, error.message));
    }
    Ok(())
}

/// [`authenticate`] for a request whose body streams in after its headers (PutMedia): the
/// signature is checked over the headers with the payload hash of an empty body, which is what
/// clients that sign a streamed upload (curl `--aws-sigv4`) put in it.
pub fn authenticate_headers(
    req: &HttpRequest<'_>,
    auth: &AuthConfig,
    region: &str,
    now: SystemTime,
) -> Result<(), VideoError> {
    let headers_only = HttpRequest { body: &[], ..*req };
    authenticate(&headers_only, auth, region, now)
}

/// A successful answer: 200 with `body`.
fn ok_response(request_id: String, body: &Value) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![
            ("x-amzn-RequestId", request_id),
            ("Content-Type", CONTENT_TYPE.to_owned()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// Answers one KVS control-plane request. `data_endpoint` is what GetDataEndpoint hands out
/// for every APIName (the base URL of this server's data plane).
pub async fn handle_control<A: KinesisApi>(
    registry: &Registry,
    api: &A,
    req: HttpRequest<'_>,
    auth: &AuthConfig,
    data_endpoint: &str,
    now: SystemTime,
) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let control = Control {
        registry,
        api,
        data_endpoint,
        now_ms: now_ms(now),
    };
    match control.dispatch(&req, auth, now).await {
        Ok(body) => ok_response(request_id, &body),
        Err(error) => {
            if error.kind == ErrorKind::InternalFailure {
                tracing::warn!(message = %error.message, "A Kinesis Video Streams call failed.");
            }
            error.response(&request_id)
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, VideoError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| VideoError::new(ErrorKind::Serialization, e.to_string()))
}

// Wire inputs. Members the model marks required are `Option` here so that their absence gets
// AWS's validation error rather than a serialization error.

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamInput {
    stream_name: Option<String>,
    device_name: Option<String>,
    media_type: Option<String>,
    kms_key_id: Option<String>,
    data_retention_in_hours: Option<i64>,
    tags: Option<BTreeMap<String, String>>,
    stream_storage_configuration: Option<StorageConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StorageConfiguration {
    default_storage_tier: Option<String>,
}

/// The members every per-stream call has: exactly one of them names the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_name_condition: Option<StreamNameCondition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamNameCondition {
    comparison_operator: Option<String>,
    comparison_value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: Option<String>,
    device_name: Option<String>,
    media_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteStreamInput2 {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    current_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateDataRetentionInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: Option<String>,
    operation: Option<String>,
    data_retention_change_in_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetDataEndpointInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(rename = "APIName")]
    api_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    tag_key_list: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PagedStreamInput {
    #[serde(flatten)]
    stream: StreamRef,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: Option<String>,
    tags: Option<Vec<Tag>>,
    tag_key_list: Option<Vec<String>>,
    next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStorageInput {
    #[serde(flatten)]
    stream: StreamRef,
    current_version: Option<String>,
    stream_storage_configuration: Option<StorageConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateSettingInput {
    #[serde(flatten)]
    stream: StreamRef,
    image_generation_configuration: Option<Value>,
    notification_configuration: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(rename = "HubDeviceArn")]
    hub_device_arn: Option<String>,
    #[serde(rename = "ChannelARN")]
    channel_arn: Option<String>,
    channel_name: Option<String>,
}

/// One call's view of the service.
struct Control<'a, A> {
    registry: &'a Registry,
    api: &'a A,
    data_endpoint: &'a str,
    now_ms: u64,
}

impl<A: KinesisApi> Control<'_, A> {
    async fn dispatch(
        &self,
        req: &HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> Result<Value, VideoError> {
        let Some(operation) = operation_of(req.path) else {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                format!(
                    "No Kinesis Video Streams operation is served at {}.",
                    req.path
                ),
            ));
        };
        if req.method != "POST" {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                "Kinesis Video Streams operations are served on POST only.",
            ));
        }
        authenticate(req, auth, self.registry.region(), now)?;
        let body = req.body;
        use Operation as O;
        match operation {
            O::CreateStream => self.create(decode(body)?).await,
            O::DescribeStream => self.describe(decode(body)?).await,
            O::ListStreams => self.list(decode(body)?).await,
            O::UpdateStream => self.update(decode(body)?).await,
            O::DeleteStream => self.delete(decode(body)?).await,
            O::UpdateDataRetention => self.update_retention(decode(body)?).await,
            O::GetDataEndpoint => self.data_endpoint(decode(body)?),
            O::TagStream => self.tag_stream(decode(body)?).await,
            O::UntagStream => self.untag_stream(decode(body)?).await,
            O::ListTagsForStream => self.list_tags_for_stream(decode(body)?),
            O::TagResource => self.tag_resource(decode(body)?).await,
            O::UntagResource => self.untag_resource(decode(body)?).await,
            O::ListTagsForResource => self.list_tags_for_resource(decode(body)?),
            O::DescribeStreamStorageConfiguration => self.describe_storage(decode(body)?),
            O::UpdateStreamStorageConfiguration => self.update_storage(decode(body)?).await,
            O::DescribeImageGenerationConfiguration => {
                self.describe_setting(decode(body)?, Setting::ImageGeneration)
            }
            O::UpdateImageGenerationConfiguration => {
                self.update_setting(decode(body)?, Setting::ImageGeneration)
                    .await
            }
            O::DescribeNotificationConfiguration => {
                self.describe_setting(decode(body)?, Setting::Notification)
            }
            O::UpdateNotificationConfiguration => {
                self.update_setting(decode(body)?, Setting::Notification)
                    .await
            }
            O::DescribeMappedResourceConfiguration => {
                let input: PagedStreamInput = decode(body)?;
                check_paging(input.max_results, 1, 1, input.next_token.as_deref())?;
                self.resolve(&input.stream)?;
                Ok(json!({ "MappedResourceConfigurationList": [] }))
            }
            O::ListSignalingChannels => {
                let input: ListInput = decode(body)?;
                check_paging(input.max_results, 1, 10_000, input.next_token.as_deref())?;
                Ok(json!({ "ChannelInfoList": [] }))
            }
            O::ListEdgeAgentConfigurations => {
                let input: ListInput = decode(body)?;
                check_paging(input.max_results, 1, 10, input.next_token.as_deref())?;
                let arn = input
                    .hub_device_arn
                    .ok_or_else(|| VideoError::missing("hubDeviceArn"))?;
                check_length(&arn, 1, 1024, "hubDeviceArn")?;
                Ok(json!({ "EdgeConfigs": [] }))
            }
            O::DescribeSignalingChannel | O::DescribeMediaStorageConfiguration => {
                let input: ListInput = decode(body)?;
                match (input.channel_name, input.channel_arn) {
                    (None, None) => Err(VideoError::invalid(
                        "ChannelName or ChannelARN must be specified.",
                    )),
                    _ => Err(VideoError::new(
                        ErrorKind::ResourceNotFound,
                        "The requested channel is not found or not active.",
                    )),
                }
            }
            O::DescribeEdgeConfiguration => {
                let input: StreamRef = decode(body)?;
                self.resolve(&input)?;
                Err(VideoError::new(
                    ErrorKind::StreamEdgeConfigurationNotFound,
                    "The stream has no edge configuration.",
                ))
            }
            O::Unsupported(name) => Err(VideoError::invalid(format!(
                "{name} is not supported by this appliance: it serves video streams, not signaling channels or edge agents."
            ))),
        }
    }

    fn resolve(&self, stream: &StreamRef) -> Result<VideoStream, VideoError> {
        self.registry
            .resolve(stream.stream_name.as_deref(), stream.stream_arn.as_deref())
    }

    /// [`Self::resolve`] under the control lock, after bringing a CREATING stream up to date,
    /// for a call that changes the stream: it must be ACTIVE (ResourceInUseException otherwise)
    /// and, when `version` is given, at that version (VersionMismatchException otherwise).
    async fn resolve_for_change(
        &self,
        control: &ControlGuard<'_>,
        stream: &StreamRef,
        version: Option<&str>,
    ) -> Result<StreamDefinition, VideoError> {
        let VideoStream { definition, .. } = self.resolve(stream)?;
        let status = self.refresh(control, &definition.name).await;
        if status != StreamStatus::Active {
            return Err(VideoError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "The stream {} is {}, not ACTIVE.",
                    definition.name,
                    status.as_str()
                ),
            ));
        }
        if let Some(version) = version
            && version != definition.version
        {
            return Err(VideoError::version_mismatch());
        }
        Ok(definition)
    }

    /// The stream's status after an attempt to bring it up to date; a failed attempt is logged
    /// and leaves the status as it was (the next call tries again).
    async fn refresh(&self, control: &ControlGuard<'_>, name: &str) -> StreamStatus {
        match self.registry.refresh_locked(control, self.api, name).await {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(stream = name, %error, "A video stream's internal stream could not be brought up to date.");
                self.registry
                    .get(name)
                    .map_or(StreamStatus::Creating, |VideoStream { status: s, .. }| s)
            }
        }
    }

    fn stream_info(&self, definition: &StreamDefinition, status: StreamStatus) -> Value {
        let mut info = json!({
            "StreamName": definition.name,
            "StreamARN": definition.arn,
            "KmsKeyId": definition.kms_key_id,
            "Version": definition.version,
            "Status": status.as_str(),
            "CreationTime": creation_time(definition.creation_time_ms),
            "DataRetentionInHours": definition.data_retention_hours,
        });
        if let Some(device) = &definition.device_name {
            info["DeviceName"] = json!(device);
        }
        if let Some(media_type) = &definition.media_type {
            info["MediaType"] = json!(media_type);
        }
        info
    }

    async fn create(&self, input: CreateStreamInput) -> Result<Value, VideoError> {
        let name = input
            .stream_name
            .ok_or_else(|| VideoError::missing("streamName"))?;
        check_stream_name(&name, "streamName")?;
        if let Some(device) = &input.device_name {
            check_device_name(device, "deviceName")?;
        }
        if let Some(media_type) = &input.media_type {
            check_media_type(media_type, "mediaType")?;
        }
        if let Some(key) = &input.kms_key_id {
            check_kms_key_id(key, "kmsKeyId")?;
        }
        let retention = match input.data_retention_in_hours {
            None => 0,
            Some(hours) => check_range(
                hours,
                0,
                i64::from(DATA_RETENTION_HOURS_MAX),
                "dataRetentionInHours",
            )?,
        };
        let retention = u32::try_from(retention).expect("checked to be within 0..=87600");
        let tags = match input.tags {
            None => BTreeMap::new(),
            Some(tags) => {
                check_tags(&tags, "tags")?;
                tags
            }
        };
        let storage_tier = match input.stream_storage_configuration {
            None => "HOT".to_owned(),
            Some(config) => storage_tier(config, "streamStorageConfiguration.defaultStorageTier")?,
        };

        let control = self.registry.lock_control().await;
        if self.registry.get(&name).is_some() {
            return Err(VideoError::new(
                ErrorKind::ResourceInUse,
                format!("The stream {name} already exists."),
            ));
        }
        if self.registry.len() >= STREAMS_MAX {
            return Err(VideoError::new(
                ErrorKind::AccountStreamLimitExceeded,
                format!("This appliance already holds its limit of {STREAMS_MAX} video streams."),
            ));
        }
        let file = crate::store::Store::file_name(&name);
        if self
            .registry
            .snapshot()
            .iter()
            .any(|VideoStream { definition: d, .. }| {
                crate::store::Store::file_name(&d.name) == file
            })
        {
            // Two long names that share a file (see `store`): refuse rather than overwrite.
            return Err(VideoError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "The stream {name} cannot be stored beside an existing stream whose name shares its first 100 characters and hash."
                ),
            ));
        }
        let creation_time_ms = self.registry.creation_time_ms(&control, self.now_ms);
        let definition = StreamDefinition {
            arn: self.registry.stream_arn(&name, creation_time_ms),
            internal_stream: internal_stream_name(&name, creation_time_ms),
            kms_key_id: input.kms_key_id.unwrap_or_else(|| {
                format!(
                    "arn:aws:kms:{}:{}:alias/aws/kinesisvideo",
                    self.registry.region(),
                    self.registry.account_id()
                )
            }),
            name,
            device_name: input.device_name,
            media_type: input.media_type,
            data_retention_hours: retention,
            version: new_version(),
            creation_time_ms,
            tags,
            storage_tier,
            image_generation: None,
            notification: None,
        };
        let arn = definition.arn.clone();
        let name = definition.name.clone();
        let internal = definition.internal_stream.clone();
        // The definition is durable before its internal stream exists, so that a crash between
        // the two leaves a stream whose refresh creates the internal stream, never an internal
        // stream no definition names.
        self.registry
            .save(&control, definition, StreamStatus::Creating)
            .await?;
        if let Err(error) = create_internal_stream(self.api, &internal).await {
            self.registry.remove(&control, &name).await?;
            return Err(error);
        }
        self.refresh(&control, &name).await;
        Ok(json!({ "StreamARN": arn }))
    }

    async fn describe(&self, input: StreamRef) -> Result<Value, VideoError> {
        let VideoStream { definition, .. } = self.resolve(&input)?;
        let status = match self.registry.refresh(self.api, &definition.name).await {
            Ok(status) => status,
            Err(error) if error.kind == ErrorKind::ResourceNotFound => return Err(error),
            Err(error) => {
                tracing::warn!(stream = definition.name, %error, "A video stream's internal stream could not be brought up to date.");
                self.resolve(&input)?.status
            }
        };
        let VideoStream { definition, .. } = self.resolve(&input)?;
        Ok(json!({ "StreamInfo": self.stream_info(&definition, status) }))
    }

    async fn list(&self, input: ListStreamsInput) -> Result<Value, VideoError> {
        let limit = match input.max_results {
            None => LIST_STREAMS_RESULTS_MAX,
            Some(n) => check_range(n, 1, LIST_STREAMS_RESULTS_MAX, "maxResults")?,
        };
        let limit = usize::try_from(limit).expect("checked to be within 1..=10000");
        let after = match input.next_token.as_deref() {
            None | Some("") => None,
            Some(token) => {
                check_next_token(token, "nextToken")?;
                Some(decode_next_token(token)?)
            }
        };
        let prefix = match input.stream_name_condition {
            None => None,
            Some(condition) => match (condition.comparison_operator, condition.comparison_value) {
                (None, None) => None,
                (Some(operator), Some(value)) => {
                    check_enum(
                        &operator,
                        &["BEGINS_WITH"],
                        "streamNameCondition.comparisonOperator",
                    )?;
                    check_stream_name(&value, "streamNameCondition.comparisonValue")?;
                    Some(value)
                }
                (Some(_), None) => {
                    return Err(VideoError::missing("streamNameCondition.comparisonValue"));
                }
                (None, Some(_)) => {
                    return Err(VideoError::missing(
                        "streamNameCondition.comparisonOperator",
                    ));
                }
            },
        };
        // Streams still CREATING are brought up to date first, so a listing shows what a
        // DescribeStream would.
        let creating: Vec<String> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|VideoStream { status, .. }| *status == StreamStatus::Creating)
            .map(|VideoStream { definition: d, .. }| d.name)
            .collect();
        for name in creating {
            if let Err(error) = self.registry.refresh(self.api, &name).await {
                tracing::warn!(stream = name, %error, "A video stream's internal stream could not be brought up to date.");
            }
        }
        let matching: Vec<VideoStream> = self
            .registry
            .snapshot()
            .into_iter()
            .filter(|VideoStream { definition: d, .. }| {
                prefix
                    .as_ref()
                    .is_none_or(|p| d.name.starts_with(p.as_str()))
            })
            .filter(|VideoStream { definition: d, .. }| after.as_ref().is_none_or(|a| d.name > *a))
            .collect();
        let more = matching.len() > limit;
        let page: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(
                |VideoStream {
                     definition: d,
                     status: s,
                 }| self.stream_info(d, *s),
            )
            .collect();
        let mut out = json!({ "StreamInfoList": page });
        if more
            && let Some(VideoStream {
                definition: last, ..
            }) = matching.get(limit - 1)
        {
            out["NextToken"] = json!(encode_next_token(&last.name));
        }
        Ok(out)
    }

    async fn update(&self, input: UpdateStreamInput) -> Result<Value, VideoError> {
        let version = required_version(input.current_version)?;
        if let Some(device) = &input.device_name {
            check_device_name(device, "deviceName")?;
        }
        if let Some(media_type) = &input.media_type {
            check_media_type(media_type, "mediaType")?;
        }
        let control = self.registry.lock_control().await;
        let mut definition = self
            .resolve_for_change(&control, &input.stream, Some(&version))
            .await?;
        if input.device_name.is_some() {
            definition.device_name = input.device_name;
        }
        if input.media_type.is_some() {
            definition.media_type = input.media_type;
        }
        definition.version = new_version();
        self.registry
            .save(&control, definition, StreamStatus::Active)
            .await?;
        Ok(json!({}))
    }

    async fn delete(&self, input: DeleteStreamInput2) -> Result<Value, VideoError> {
        let arn = input
            .stream_arn
            .ok_or_else(|| VideoError::missing("streamARN"))?;
        let version = match input.current_version {
            None => None,
            Some(v) => {
                check_version(&v, "currentVersion")?;
                Some(v)
            }
        };
        let control = self.registry.lock_control().await;
        let VideoStream { definition, status } = self.registry.by_arn(&arn, "streamARN")?;
        if status == StreamStatus::Deleting {
            return Err(VideoError::new(
                ErrorKind::ResourceInUse,
                format!("The stream {} is being deleted.", definition.name),
            ));
        }
        if let Some(version) = version
            && version != definition.version
        {
            return Err(VideoError::version_mismatch());
        }
        self.registry
            .set_status(&control, &definition.name, StreamStatus::Deleting);
        // The definition goes first: a crash after it leaves an internal stream no definition
        // names (hidden, and never reused: its name is unique to this incarnation), never a
        // video stream that comes back after its delete was acknowledged.
        if let Err(error) = self.registry.remove(&control, &definition.name).await {
            self.registry.set_status(&control, &definition.name, status);
            return Err(error);
        }
        match self
            .api
            .delete_stream(DeleteStreamInput {
                stream_name: definition.internal_stream.clone(),
                enforce_consumer_deletion: true,
            })
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind == sluice_core::ErrorKind::ResourceNotFound => {}
            Err(e) => {
                tracing::warn!(
                    stream = definition.name,
                    internal_stream = definition.internal_stream,
                    message = %e.message,
                    "A deleted video stream's internal stream could not be deleted; it stays hidden and unused."
                );
            }
        }
        Ok(json!({}))
    }

    async fn update_retention(&self, input: UpdateDataRetentionInput) -> Result<Value, VideoError> {
        let version = required_version(input.current_version)?;
        let operation = input
            .operation
            .ok_or_else(|| VideoError::missing("operation"))?;
        let increase = check_enum(
            &operation,
            &["INCREASE_DATA_RETENTION", "DECREASE_DATA_RETENTION"],
            "operation",
        )? == "INCREASE_DATA_RETENTION";
        let change = input
            .data_retention_change_in_hours
            .ok_or_else(|| VideoError::missing("dataRetentionChangeInHours"))?;
        let change = check_range(change, 1, i64::MAX, "dataRetentionChangeInHours")?;
        let control = self.registry.lock_control().await;
        let mut definition = self
            .resolve_for_change(&control, &input.stream, Some(&version))
            .await?;
        let current = i64::from(definition.data_retention_hours);
        let wanted = if increase {
            current.saturating_add(change)
        } else {
            current - change
        };
        if !(0..=i64::from(DATA_RETENTION_HOURS_MAX)).contains(&wanted) {
            return Err(VideoError::invalid(format!(
                "The data retention period would become {wanted} hours; it must be between 0 and {DATA_RETENTION_HOURS_MAX} hours."
            )));
        }
        definition.data_retention_hours =
            u32::try_from(wanted).expect("checked to be within 0..=87600");
        definition.version = new_version();
        let name = definition.name.clone();
        self.registry
            .save(&control, definition, StreamStatus::Active)
            .await?;
        self.refresh(&control, &name).await;
        Ok(json!({}))
    }

    fn data_endpoint(&self, input: GetDataEndpointInput) -> Result<Value, VideoError> {
        let api_name = input
            .api_name
            .ok_or_else(|| VideoError::missing("aPIName"))?;
        check_enum(&api_name, &API_NAMES, "aPIName")?;
        self.resolve(&input.stream)?;
        Ok(json!({ "DataEndpoint": self.data_endpoint }))
    }

    /// Adds `tags` to the stream (replacing values of existing keys), at most 50 in all.
    async fn add_tags(
        &self,
        control: &ControlGuard<'_>,
        mut definition: StreamDefinition,
        tags: BTreeMap<String, String>,
    ) -> Result<Value, VideoError> {
        definition.tags.extend(tags);
        if definition.tags.len() > TAGS_MAX {
            return Err(tags_exceeded());
        }
        let status = self
            .registry
            .get(&definition.name)
            .map_or(StreamStatus::Active, |VideoStream { status: s, .. }| s);
        self.registry.save(control, definition, status).await?;
        Ok(json!({}))
    }

    async fn remove_tags(
        &self,
        control: &ControlGuard<'_>,
        mut definition: StreamDefinition,
        keys: &[String],
    ) -> Result<Value, VideoError> {
        for key in keys {
            definition.tags.remove(key);
        }
        let status = self
            .registry
            .get(&definition.name)
            .map_or(StreamStatus::Active, |VideoStream { status: s, .. }| s);
        self.registry.save(control, definition, status).await?;
        Ok(json!({}))
    }

    async fn tag_stream(&self, input: TagStreamInput) -> Result<Value, VideoError> {
        let tags = input.tags.ok_or_else(|| VideoError::missing("tags"))?;
        check_tags(&tags, "tags")?;
        let control = self.registry.lock_control().await;
        let VideoStream { definition, .. } = self.resolve(&input.stream)?;
        self.add_tags(&control, definition, tags).await
    }

    async fn untag_stream(&self, input: UntagStreamInput) -> Result<Value, VideoError> {
        let keys = input
            .tag_key_list
            .ok_or_else(|| VideoError::missing("tagKeyList"))?;
        check_tag_keys(&keys, "tagKeyList")?;
        let control = self.registry.lock_control().await;
        let VideoStream { definition, .. } = self.resolve(&input.stream)?;
        self.remove_tags(&control, definition, &keys).await
    }

    fn list_tags_for_stream(&self, input: PagedStreamInput) -> Result<Value, VideoError> {
        if let Some(token) = &input.next_token {
            check_next_token(token, "nextToken")?;
        }
        let VideoStream { definition, .. } = self.resolve(&input.stream)?;
        // At most 50 tags: one page holds them all.
        Ok(json!({ "Tags": definition.tags }))
    }

    fn resource_arn(input: &ResourceInput) -> Result<&str, VideoError> {
        input
            .resource_arn
            .as_deref()
            .ok_or_else(|| VideoError::missing("resourceARN"))
    }

    /// The stream a ResourceARN names; a well-formed ARN of another resource names nothing.
    fn resource(&self, arn: &str) -> Result<StreamDefinition, VideoError> {
        let parts = check_arn(arn, "resourceARN")?;
        if parts.resource_type != "stream" {
            return Err(VideoError::new(
                ErrorKind::ResourceNotFound,
                "The requested resource is not found or not active.",
            ));
        }
        Ok(self.registry.by_arn(arn, "resourceARN")?.definition)
    }

    async fn tag_resource(&self, input: ResourceInput) -> Result<Value, VideoError> {
        let arn = Self::resource_arn(&input)?;
        check_arn(arn, "resourceARN")?;
        let list = input
            .tags
            .as_ref()
            .ok_or_else(|| VideoError::missing("tags"))?;
        if list.len() > TAGS_MAX {
            return Err(tags_exceeded());
        }
        let mut tags = BTreeMap::new();
        for (i, tag) in list.iter().enumerate() {
            let key = tag
                .key
                .clone()
                .ok_or_else(|| VideoError::missing(&format!("tags.{}.member.key", i + 1)))?;
            let value = tag
                .value
                .clone()
                .ok_or_else(|| VideoError::missing(&format!("tags.{}.member.value", i + 1)))?;
            tags.insert(key, value);
        }
        check_tags(&tags, "tags")?;
        let control = self.registry.lock_control().await;
        let definition = self.resource(arn)?;
        self.add_tags(&control, definition, tags).await
    }

    async fn untag_resource(&self, input: ResourceInput) -> Result<Value, VideoError> {
        let arn = Self::resource_arn(&input)?;
        check_arn(arn, "resourceARN")?;
        let keys = input
            .tag_key_list
            .as_deref()
            .ok_or_else(|| VideoError::missing("tagKeyList"))?;
        check_tag_keys(keys, "tagKeyList")?;
        let control = self.registry.lock_control().await;
        let definition = self.resource(arn)?;
        self.remove_tags(&control, definition, keys).await
    }

    fn list_tags_for_resource(&self, input: ResourceInput) -> Result<Value, VideoError> {
        let arn = Self::resource_arn(&input)?;
        if let Some(token) = &input.next_token {
            check_next_token(token, "nextToken")?;
        }
        let definition = self.resource(arn)?;
        Ok(json!({ "Tags": definition.tags }))
    }

    fn describe_storage(&self, input: StreamRef) -> Result<Value, VideoError> {
        let VideoStream { definition, .. } = self.resolve(&input)?;
        Ok(json!({
            "StreamName": definition.name,
            "StreamARN": definition.arn,
            "StreamStorageConfiguration": { "DefaultStorageTier": definition.storage_tier },
        }))
    }

    async fn update_storage(&self, input: UpdateStorageInput) -> Result<Value, VideoError> {
        let version = required_version(input.current_version)?;
        let config = input
            .stream_storage_configuration
            .ok_or_else(|| VideoError::missing("streamStorageConfiguration"))?;
        let tier = storage_tier(config, "streamStorageConfiguration.defaultStorageTier")?;
        let control = self.registry.lock_control().await;
        let mut definition = self
            .resolve_for_change(&control, &input.stream, Some(&version))
            .await?;
        definition.storage_tier = tier;
        definition.version = new_version();
        self.registry
            .save(&control, definition, StreamStatus::Active)
            .await?;
        Ok(json!({}))
    }

    fn describe_setting(&self, input: StreamRef, setting: Setting) -> Result<Value, VideoError> {
        let VideoStream { definition, .. } = self.resolve(&input)?;
        let stored = match setting {
            Setting::ImageGeneration => definition.image_generation,
            Setting::Notification => definition.notification,
        };
        Ok(match stored {
            Some(config) => json!({ setting.member(): config }),
            None => json!({}),
        })
    }

    async fn update_setting(
        &self,
        input: UpdateSettingInput,
        setting: Setting,
    ) -> Result<Value, VideoError> {
        let config = match setting {
            Setting::ImageGeneration => input.image_generation_configuration,
            Setting::Notification => input.notification_configuration,
        };
        let enabled = match &config {
            None | Some(Value::Null) => None,
            Some(config) => Some(match setting {
                Setting::ImageGeneration => check_image_generation(config)?,
                Setting::Notification => check_notification(config)?,
            }),
        };
        let control = self.registry.lock_control().await;
        let mut definition = self
            .resolve_for_change(&control, &input.stream, None)
            .await?;
        if enabled == Some(true) && definition.data_retention_hours == 0 {
            return Err(VideoError::new(
                ErrorKind::NoDataRetention,
                "The stream has no data retention: its DataRetentionInHours is 0.",
            ));
        }
        let stored = config.filter(|c| !c.is_null());
        match setting {
            Setting::ImageGeneration => definition.image_generation = stored,
            Setting::Notification => definition.notification = stored,
        }
        self.registry
            .save(&control, definition, StreamStatus::Active)
            .await?;
        Ok(json!({}))
    }
}

/// The per-stream settings this appliance stores without acting on them.
#[derive(Clone, Copy, Debug)]
enum Setting {
    ImageGeneration,
    Notification,
}

impl Setting {
    const fn member(self) -> &'static str {
        match self {
            Self::ImageGeneration => "ImageGenerationConfiguration",
            Self::Notification => "NotificationConfiguration",
        }
    }
}

fn required_version(version: Option<String>) -> Result<String, VideoError> {
    let version = version.ok_or_else(|| VideoError::missing("currentVersion"))?;
    check_version(&version, "currentVersion")?;
    Ok(version)
}

fn storage_tier(config: StorageConfiguration, member: &str) -> Result<String, VideoError> {
    let tier = config
        .default_storage_tier
        .ok_or_else(|| VideoError::missing(member))?;
    check_enum(&tier, &["HOT", "WARM"], member)?;
    Ok(tier)
}

fn check_paging(
    max_results: Option<i64>,
    min: i64,
    max: i64,
    next_token: Option<&str>,
) -> Result<(), VideoError> {
    if let Some(n) = max_results {
        check_range(n, min, max, "maxResults")?;
    }
    if let Some(token) = next_token {
        check_next_token(token, "nextToken")?;
    }
    Ok(())
}

fn string_member<'a>(value: &'a Value, key: &str, member: &str) -> Result<&'a str, VideoError> {
    match value.get(key) {
        None | Some(Value::Null) => Err(VideoError::missing(member)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(VideoError::new(
            ErrorKind::Serialization,
            format!("{member} must be a string."),
        )),
    }
}

fn check_destination_uri(uri: &str, member: &str) -> Result<(), VideoError> {
    check_length(uri, 1, 255, member)?;
    // ^[a-zA-Z_0-9]+:(//)?([^/]+)/?([^*]*)$
    let valid = uri.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && {
                let rest = rest.strip_prefix("//").unwrap_or(rest);
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                !host.is_empty() && !path.contains('*')
            }
    });
    if !valid {
        return Err(VideoError::validation(
            uri,
            member,
            "Member must satisfy regular expression pattern: ^[a-zA-Z_0-9]+:(//)?([^/]+)/?([^*]*)$",
        ));
    }
    Ok(())
}

/// Validates an ImageGenerationConfiguration; answers whether it is ENABLED.
fn check_image_generation(config: &Value) -> Result<bool, VideoError> {
    const M: &str = "imageGenerationConfiguration";
    let status = string_member(config, "Status", &format!("{M}.status"))?;
    check_enum(status, &["ENABLED", "DISABLED"], &format!("{M}.status"))?;
    let selector = string_member(
        config,
        "ImageSelectorType",
        &format!("{M}.imageSelectorType"),
    )?;
    check_enum(
        selector,
        &["SERVER_TIMESTAMP", "PRODUCER_TIMESTAMP"],
        &format!("{M}.imageSelectorType"),
    )?;
    let destination = config
        .get("DestinationConfig")
        .filter(|d| d.is_object())
        .ok_or_else(|| VideoError::missing(&format!("{M}.destinationConfig")))?;
    let uri = string_member(destination, "Uri", &format!("{M}.destinationConfig.uri"))?;
    check_destination_uri(uri, &format!("{M}.destinationConfig.uri"))?;
    let region = string_member(
        destination,
        "DestinationRegion",
        &format!("{M}.destinationConfig.destinationRegion"),
    )?;
    check_length(
        region,
        9,
        14,
        &format!("{M}.destinationConfig.destinationRegion"),
    )?;
    let interval = config
        .get("SamplingInterval")
        .and_then(Value::as_i64)
        .ok_or_else(|| VideoError::missing(&format!("{M}.samplingInterval")))?;
    // AWS documents 200 ms (5 images per second) to 20 seconds.
    check_range(interval, 200, 20_000, &format!("{M}.samplingInterval"))?;
    let format = string_member(config, "Format", &format!("{M}.format"))?;
    check_enum(format, &["JPEG", "PNG"], &format!("{M}.format"))?;
    if let Some(format_config) = config.get("FormatConfig").filter(|v| !v.is_null()) {
        let map = format_config
            .as_object()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| {
                VideoError::validation(
                    &format_config.to_string(),
                    &format!("{M}.formatConfig"),
                    "Member must have length less than or equal to 1",
                )
            })?;
        for (key, value) in map {
            check_enum(key, &["JPEGQuality"], &format!("{M}.formatConfig.key"))?;
            let quality = value
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    VideoError::invalid("JPEGQuality must be a number from 1 to 100.")
                })?;
            check_range(quality, 1, 100, &format!("{M}.formatConfig.value"))?;
        }
    }
    if let Some(width) = config.get("WidthPixels").and_then(Value::as_i64) {
        check_range(width, 1, 3840, &format!("{M}.widthPixels"))?;
    }
    if let Some(height) = config.get("HeightPixels").and_then(Value::as_i64) {
        check_range(height, 1, 2160, &format!("{M}.heightPixels"))?;
    }
    Ok(status == "ENABLED")
}

/// Validates a NotificationConfiguration; answers whether it is ENABLED.
fn check_notification(config: &Value) -> Result<bool, VideoError> {
    const M: &str = "notificationConfiguration";
    let status = string_member(config, "Status", &format!("{M}.status"))?;
    check_enum(status, &["ENABLED", "DISABLED"], &format!("{M}.status"))?;
    let destination = config
        .get("DestinationConfig")
        .filter(|d| d.is_object())
        .ok_or_else(|| VideoError::missing(&format!("{M}.destinationConfig")))?;
    let uri = string_member(destination, "Uri", &format!("{M}.destinationConfig.uri"))?;
    check_destination_uri(uri, &format!("{M}.destinationConfig.uri"))?;
    Ok(status == "ENABLED")
}

/// CreationTime as rest-json sends a timestamp: epoch seconds.
fn creation_time(creation_time_ms: u64) -> Value {
    // Millisecond epochs are far below 2^53, so the quotient is exact to the millisecond.
    #[expect(clippy::cast_precision_loss, reason = "epoch milliseconds fit 53 bits")]
    let seconds = creation_time_ms as f64 / 1000.0;
    json!(seconds)
}

/// A new opaque version: 32 alphanumeric characters.
fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new internal stream name for stream `name` created at `creation_time_ms`: the prefix, up
/// to 60 characters of the name (for operators), the creation time and 16 hex digits of the MD5
/// of the name and a random UUID, so that every incarnation gets a name of its own even when
/// clocks repeat. A name's characters are all valid in a Kinesis stream name.
pub fn internal_stream_name(name: &str, creation_time_ms: u64) -> String {
    let shown: String = name.chars().take(INTERNAL_NAME_PREFIX_CHARS).collect();
    let mut hasher = Md5::new();
    hasher.update(name.as_bytes());
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    let digest = hasher.finalize();
    let mut hash = String::with_capacity(16);
    for b in &digest[..8] {
        hash.push_str(&format!("{b:02x}"));
    }
    format!("{VIDEO_PREFIX}{shown}-{creation_time_ms}-{hash}")
}

fn encode_next_token(last_name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(last_name.as_bytes())
}

fn decode_next_token(token: &str) -> Result<String, VideoError> {
    let invalid = || VideoError::invalid(format!("The NextToken {token} is not valid."));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| invalid())?;
    let name = String::from_utf8(bytes).map_err(|_| invalid())?;
    check_stream_name(&name, "nextToken").map_err(|_| invalid())?;
    Ok(name)
}

#[cfg(test)]
mod tests;
