//! The Kinesis Video Streams service as the HTTP front end sees it: which paths are video's, the
//! data plane (PutMedia, GetMedia, ListFragments, GetMediaForFragmentList, HLS and DASH sessions
//! and their resources, GetClip), and the built-in player page. The control plane is `api`.
//!
//! Invariants:
//! - Every data-plane call but the session resources is SigV4-authenticated like the control
//!   plane; a session resource is authorised by its unguessable, expiring session token.
//! - Bodies that can be long (PutMedia's acks, GetMedia, GetMediaForFragmentList) stream: at most
//!   one fragment of a response is held at a time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use futures_lite::Stream;
use serde_json::{Value, json};
use sluice_core::KinesisApi;
use sluice_core::storage::RecordLog;
use sluice_protocols::HttpRequest;
use sluice_protocols::sigv4::AuthConfig;

mod input;
mod page;
mod sessions;

use crate::api;
use crate::error::{ErrorKind, VideoError};
use crate::fragments::{self, Indexes, StoredFragment, StreamIndex};
use crate::limits::{CallKind, ConnectionKind, Limiter, VideoLimits, paced_body};
use crate::media::{
    self, Clock, PutMediaLimits, PutMediaOptions, Sleep, StartSelector, TimecodeType,
};
use crate::model::{FragmentEntry, StreamDefinition, StreamStatus, VideoStream};
use crate::registry::Registry;
use crate::remux::{self, MediaTracks, playlist};

use input::{
    Selection, StreamRef, decode, decode_token, encode_token, enum_field, epoch_ms, field,
    fragment_error, int_field, key, ms_to_seconds, playlist_fragment, query_param, remux_error,
    seconds_to_ms, selection, string_field, timestamp_ms,
};
use page::{PLAYER_PAGE, html_escape};
use sessions::{Session, SessionKind, Sessions};

/// A response body: whole, or streamed chunk by chunk.
pub enum VideoBody {
    Full(Vec<u8>),
    Stream(Pin<Box<dyn Stream<Item = Bytes>>>),
}

impl std::fmt::Debug for VideoBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(body) => write!(f, "Full({} bytes)", body.len()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// What the front end sends back.
#[derive(Debug)]
pub struct VideoResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: VideoBody,
}

impl VideoResponse {
    fn error(error: &VideoError) -> Self {
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let response = error.response(&request_id);
        Self {
            status: response.status,
            headers: response.headers,
            body: VideoBody::Full(response.body),
        }
    }

    fn ok(content_type: &str, body: VideoBody) -> Self {
        Self {
            status: 200,
            headers: vec![
                (
                    "x-amzn-RequestId",
                    uuid::Uuid::new_v4().hyphenated().to_string(),
                ),
                ("Content-Type", content_type.to_owned()),
            ],
            body,
        }
    }

    fn json(value: &Value) -> Self {
        Self::ok(
            "application/json",
            VideoBody::Full(value.to_string().into_bytes()),
        )
    }

    /// Adds `Access-Control-Allow-Origin: *` (players on other origins may fetch sessions).
    fn cors(mut self) -> Self {
        self.headers
            .push(("Access-Control-Allow-Origin", "*".to_owned()));
        self
    }
}

/// What PutMedia starts: the response (the ack stream, or an error) and, when accepted, the
/// ingest task the caller spawns on its executor (it reads the body and feeds the acks).
pub struct PutMediaStart {
    pub response: VideoResponse,
    pub ingest: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl std::fmt::Debug for PutMediaStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutMediaStart")
            .field("response", &self.response)
            .field("ingest", &self.ingest.is_some())
            .finish()
    }
}

/// The data plane's operations (`POST /<op>`).
const DATA_PATHS: &[&str] = &[
    "/putMedia",
    "/getMedia",
    "/listFragments",
    "/getMediaForFragmentList",
    "/getHLSStreamingSessionURL",
    "/getDASHStreamingSessionURL",
    "/getClip",
    "/getImages",
];

/// Whether `path` is Kinesis Video Streams' (control plane, data plane, session resources, or
/// the player page).
pub fn is_video_path(path: &str) -> bool {
    api::is_control_path(path)
        || DATA_PATHS.contains(&path)
        || path.starts_with("/hls/v1/")
        || path.starts_with("/dash/v1/")
        || path.starts_with("/video/")
}

/// Whether `path` is PutMedia, whose body streams in (the front end must not collect it).
pub fn is_put_media(path: &str) -> bool {
    path == "/putMedia"
}

/// How long a GetMedia waits for a new fragment before its response ends.
pub const GET_MEDIA_IDLE_END: Duration = Duration::from_secs(5);
/// GetClip's output holds at most this many fragments and bytes.
const CLIP_FRAGMENTS_MAX: usize = 200;
const CLIP_BYTES_MAX: u64 = 100 * 1000 * 1000;

/// What every core's [`VideoService`] shares: the streams, their fragment indexes, the
/// streaming sessions, the per-stream limits, and the server's own URL.
#[derive(Clone, Debug)]
pub struct VideoShared {
    registry: Arc<Registry>,
    indexes: Arc<Indexes>,
    sessions: Arc<Sessions>,
    limiter: Arc<Limiter>,
    /// The base URL this server's data plane answers on (GetDataEndpoint, session URLs).
    endpoint: Arc<str>,
    /// hls.js for the player page, when configured.
    hls_js: Option<Arc<Vec<u8>>>,
    /// The ffmpeg that decodes GetImages' frames.
    ffmpeg: Arc<std::path::PathBuf>,
}

impl VideoShared {
    /// The shared state over `registry`; `endpoint` is this server's base URL, `hls_js` the
    /// hls.js library the player page loads.
    pub fn new(registry: Arc<Registry>, endpoint: &str, hls_js: Option<Vec<u8>>) -> Self {
        Self {
            registry,
            indexes: Arc::default(),
            sessions: Arc::default(),
            limiter: Arc::default(),
            endpoint: Arc::from(endpoint.trim_end_matches('/')),
            hls_js: hls_js.map(Arc::new),
            ffmpeg: Arc::new("ffmpeg".into()),
        }
    }

    /// The streams every core shares (RTSP ingest resolves its streams here).
    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The fragment indexes every core shares (RTSP ingest adds its fragments here).
    pub(crate) fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    /// GetImages decodes with this ffmpeg (default: `ffmpeg` on PATH).
    #[must_use]
    pub fn with_ffmpeg(mut self, ffmpeg: std::path::PathBuf) -> Self {
        self.ffmpeg = Arc::new(ffmpeg);
        self
    }

    /// Enforces `limits` (default: AWS's).
    #[must_use]
    pub fn with_limits(mut self, limits: VideoLimits) -> Self {
        self.limiter = Arc::new(Limiter::new(limits));
        self
    }
}

/// The video service as one core's front end holds it.
#[derive(Clone)]
pub struct VideoService<R: RecordLog> {
    registry: Arc<Registry>,
    storage: R,
    indexes: Arc<Indexes>,
    sessions: Arc<Sessions>,
    limiter: Arc<Limiter>,
    endpoint: Arc<str>,
    hls_js: Option<Arc<Vec<u8>>>,
    ffmpeg: Arc<std::path::PathBuf>,
    sleep: Sleep,
    clock: Clock,
    pub put_media_limits: PutMediaLimits,
    pub get_media_idle_end: Duration,
}

impl<R: RecordLog> std::fmt::Debug for VideoService<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoService")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<R: RecordLog> VideoService<R> {
    /// One core's service over `shared`, reading and writing through `storage`; `sleep` and
    /// `clock` are the core's timer and the wall clock.
    pub fn new(shared: &VideoShared, storage: R, sleep: Sleep, clock: Clock) -> Self {
        Self {
            registry: shared.registry.clone(),
            storage,
            indexes: shared.indexes.clone(),
            sessions: shared.sessions.clone(),
            limiter: shared.limiter.clone(),
            endpoint: shared.endpoint.clone(),
            hls_js: shared.hls_js.clone(),
            ffmpeg: shared.ffmpeg.clone(),
            sleep,
            clock,
            put_media_limits: PutMediaLimits::default(),
            get_media_idle_end: GET_MEDIA_IDLE_END,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// An ACTIVE stream by name or ARN, its internal stream brought in line first.
    async fn active<A: KinesisApi>(
        &self,
        api: &A,
        name: Option<&str>,
        arn: Option<&str>,
    ) -> Result<StreamDefinition, VideoError> {
        let VideoStream { definition, status } = self.registry.resolve(name, arn)?;
        let status = if status == StreamStatus::Creating {
            self.registry.refresh(api, &definition.name).await?
        } else {
            status
        };
        if status == StreamStatus::Deleting || status == StreamStatus::Creating {
            return Err(VideoError::new(
                ErrorKind::ResourceNotFound,
                crate::error::STREAM_NOT_FOUND,
            ));
        }
        Ok(definition)
    }

    async fn index(&self, definition: &StreamDefinition) -> Result<Arc<StreamIndex>, VideoError> {
        let index = self.indexes.of(definition);
        index
            .ensure_loaded(&self.storage, definition)
            .await
            .map_err(|e| fragment_error(&e))?;
        Ok(index)
    }

    /// The stream's fragments within its retention, in storage order with their storage index.
    fn retained(
        &self,
        definition: &StreamDefinition,
        index: &StreamIndex,
        now_ms: u64,
    ) -> Vec<(usize, FragmentEntry)> {
        // The stream's own retention (the internal stream keeps at least 24 h; a 1-hour video
        // stream still shows only its last hour). Callers answer NoDataRetention for 0 first.
        let hours = u64::from(definition.data_retention_hours);
        let horizon = now_ms.saturating_sub(hours * 3_600_000);
        index
            .entries()
            .into_iter()
            .enumerate()
            .filter(|(_, e)| e.server_ms >= horizon)
            .collect()
    }

    /// PutMedia. `req` carries the headers (its body is ignored); `body` is the upload as it
    /// arrives. Returns the response (an ack stream on success) and, on success, the ingest task
    /// the caller must spawn on its executor: it reads the body and feeds the ack stream.
    pub async fn put_media<A, B>(
        &self,
        api: &A,
        req: &HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
        body: B,
    ) -> PutMediaStart
    where
        A: KinesisApi,
        B: Stream<Item = Result<Bytes, String>> + Unpin + 'static,
    {
        let started = self.start_put_media(api, req, auth, now).await;
        let started = started.and_then(|(definition, options)| {
            let stream = &definition.internal_stream;
            self.limiter
                .admit(stream, CallKind::PutMedia, epoch_ms(now))?;
            let slot = self
                .limiter
                .connect(stream, ConnectionKind::PutMedia, epoch_ms(now))?;
            Ok((definition, options, slot))
        });
        match started {
            Ok((definition, options, slot)) => {
                let (sender, receiver) = async_channel::bounded::<Bytes>(256);
                let pacing = self.limiter.put_media_pacing(&definition.internal_stream);
                let index = self.indexes.of(&definition);
                let task = media::ingest(
                    self.storage.clone(),
                    definition,
                    index,
                    options,
                    self.put_media_limits,
                    pacing,
                    body,
                    sender,
                    self.sleep.clone(),
                    self.clock.clone(),
                );
                let task: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                    // The stream's PutMedia connection is counted until the session ends.
                    let _slot = slot;
                    let summary = task.await;
                    tracing::debug!(?summary, "A PutMedia session ended.");
                });
                PutMediaStart {
                    response: VideoResponse::ok(
                        "application/json",
                        VideoBody::Stream(Box::pin(receiver)),
                    ),
                    ingest: Some(task),
                }
            }
            Err(error) => PutMediaStart {
                response: VideoResponse::error(&error),
                ingest: None,
            },
        }
    }

    async fn start_put_media<A: KinesisApi>(
        &self,
        api: &A,
        req: &HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> Result<(StreamDefinition, PutMediaOptions), VideoError> {
        if req.method != "POST" {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                "Only POST is served.",
            ));
        }
        api::authenticate_headers(req, auth, self.registry.region(), now)?;
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
                .map(str::trim)
        };
        let name = header("x-amzn-stream-name");
        let arn = header("x-amzn-stream-arn");
        let definition = self.active(api, name, arn).await?;
        let timecode_type = match header("x-amzn-fragment-timecode-type") {
            Some("ABSOLUTE") => TimecodeType::Absolute,
            Some("RELATIVE") => TimecodeType::Relative,
            Some(other) => {
                return Err(VideoError::invalid(format!(
                    "x-amzn-fragment-timecode-type must be ABSOLUTE or RELATIVE, not {other}."
                )));
            }
            None => {
                return Err(VideoError::invalid(
                    "The x-amzn-fragment-timecode-type header is required.",
                ));
            }
        };
        let producer_start_ms = match header("x-amzn-producer-start-timestamp") {
            Some(text) => Some(
                text.parse::<f64>()
                    .ok()
                    .and_then(seconds_to_ms)
                    .ok_or_else(|| {
                        VideoError::invalid(
                            "x-amzn-producer-start-timestamp must be epoch seconds, such as 1732012345.678.",
                        )
                    })?,
            ),
            None => None,
        };
        if timecode_type == TimecodeType::Relative && producer_start_ms.is_none() {
            return Err(VideoError::invalid(
                "RELATIVE timecodes need the x-amzn-producer-start-timestamp header.",
            ));
        }
        let acks = header("x-amzn-fragment-acknowledgment-required") != Some("0");
        self.index(&definition).await?;
        Ok((
            definition,
            PutMediaOptions {
                timecode_type,
                producer_start_ms,
                acks,
            },
        ))
    }

    /// Every video request but PutMedia, with its whole body.
    pub async fn handle<A: KinesisApi>(
        &self,
        api: &A,
        req: HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> VideoResponse {
        if api::is_control_path(req.path) {
            let response =
                api::handle_control(&self.registry, api, req, auth, &self.endpoint, now).await;
            return VideoResponse {
                status: response.status,
                headers: response.headers,
                body: VideoBody::Full(response.body),
            };
        }
        let result = if req.path.starts_with("/hls/v1/") || req.path.starts_with("/dash/v1/") {
            self.session_resource(&req, now)
                .await
                .map(VideoResponse::cors)
        } else if req.path.starts_with("/video/") {
            self.page(api, &req, auth, now).await
        } else {
            self.data_plane(api, &req, auth, now).await
        };
        result.unwrap_or_else(|error| {
            if error.kind == ErrorKind::InternalFailure {
                tracing::warn!(message = %error.message, "A Kinesis Video Streams call failed.");
            }
            VideoResponse::error(&error)
        })
    }

    async fn data_plane<A: KinesisApi>(
        &self,
        api: &A,
        req: &HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> Result<VideoResponse, VideoError> {
        if req.method != "POST" {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                "Only POST is served.",
            ));
        }
        api::authenticate(req, auth, self.registry.region(), now)?;
        let input = decode(req.body)?;
        let stream: StreamRef = serde_json::from_value(input.clone()).unwrap_or_default();
        let definition = self
            .active(
                api,
                stream.stream_name.as_deref(),
                stream.stream_arn.as_deref(),
            )
            .await?;
        let now_ms = epoch_ms(now);
        if let Some(call) = CallKind::of_path(req.path) {
            self.limiter
                .admit(&definition.internal_stream, call, now_ms)?;
        }
        match req.path {
            "/getMedia" => self.get_media(&definition, &input).await,
            "/getMediaForFragmentList" => {
                self.get_media_for_fragment_list(&definition, &input).await
            }
            path => {
                if definition.data_retention_hours == 0 {
                    return Err(VideoError::new(
                        ErrorKind::NoDataRetention,
                        "The stream does not keep data (DataRetentionInHours is 0).",
                    ));
                }
                match path {
                    "/listFragments" => self.list_fragments(&definition, &input, now_ms).await,
                    "/getHLSStreamingSessionURL" => {
                        self.create_session(&definition, &input, SessionKind::Hls, now_ms)
                            .await
                    }
                    "/getDASHStreamingSessionURL" => {
                        self.create_session(&definition, &input, SessionKind::Dash, now_ms)
                            .await
                    }
                    "/getClip" => self.get_clip(&definition, &input, now_ms).await,
                    "/getImages" => self.get_images(&definition, &input, now_ms).await,
                    _ => Err(VideoError::new(
                        ErrorKind::UnknownOperation,
                        "Unknown operation.",
                    )),
                }
            }
        }
    }

    async fn get_media(
        &self,
        definition: &StreamDefinition,
        input: &Value,
    ) -> Result<VideoResponse, VideoError> {
        let selector =
            field(input, "StartSelector").ok_or_else(|| VideoError::missing("StartSelector"))?;
        let kind = enum_field(
            selector,
            "StartSelectorType",
            &[
                "FRAGMENT_NUMBER",
                "SERVER_TIMESTAMP",
                "PRODUCER_TIMESTAMP",
                "NOW",
                "EARLIEST",
                "CONTINUATION_TOKEN",
            ],
        )?
        .ok_or_else(|| VideoError::missing("StartSelectorType"))?;
        let text = |name: &str| -> Result<String, VideoError> {
            string_field(selector, name)?.ok_or_else(|| {
                VideoError::invalid(format!("StartSelectorType {kind} needs {name}."))
            })
        };
        let time = |name: &str| -> Result<u64, VideoError> {
            let value = field(selector, name).ok_or_else(|| {
                VideoError::invalid(format!("StartSelectorType {kind} needs {name}."))
            })?;
            timestamp_ms(value, name)
        };
        let start = match kind {
            "NOW" => StartSelector::Now,
            "EARLIEST" => StartSelector::Earliest,
            "FRAGMENT_NUMBER" => StartSelector::AfterFragment(text("AfterFragmentNumber")?),
            "CONTINUATION_TOKEN" => StartSelector::ContinuationToken(text("ContinuationToken")?),
            "SERVER_TIMESTAMP" => StartSelector::ServerTimestamp(time("StartTimestamp")?),
            _ => StartSelector::ProducerTimestamp(time("StartTimestamp")?),
        };
        let index = self.index(definition).await?;
        let entries = index.entries();
        let at = match media::start_index(&entries, &start) {
            Ok(at) => at,
            Err(media::StartError::FragmentNotFound(number)) => {
                return Err(VideoError::invalid(format!(
                    "Fragment {number} was not found in the stream."
                )));
            }
        };
        let slot = self.limiter.connect(
            &definition.internal_stream,
            ConnectionKind::GetMedia,
            (self.clock)(),
        )?;
        let body = media::get_media(
            self.storage.clone(),
            definition.clone(),
            index,
            at,
            self.get_media_idle_end,
            self.sleep.clone(),
            self.clock.clone(),
        );
        let body = paced_body(
            body,
            self.limiter
                .reader_bytes_per_second(ConnectionKind::GetMedia),
            slot,
            self.sleep.clone(),
            self.clock.clone(),
        );
        Ok(VideoResponse::ok(
            "video/webm",
            VideoBody::Stream(Box::pin(body)),
        ))
    }

    async fn get_media_for_fragment_list(
        &self,
        definition: &StreamDefinition,
        input: &Value,
    ) -> Result<VideoResponse, VideoError> {
        let numbers: Vec<String> = match field(input, "Fragments") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        VideoError::new(ErrorKind::Serialization, "Fragments holds strings.")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(VideoError::new(
                    ErrorKind::Serialization,
                    "Fragments must be a list.",
                ));
            }
            None => return Err(VideoError::missing("Fragments")),
        };
        if numbers.is_empty() || numbers.len() > 1000 {
            return Err(VideoError::validation(
                &format!("{} fragments", numbers.len()),
                "fragments",
                "Member must have length between 1 and 1000",
            ));
        }
        let index = self.index(definition).await?;
        let mut entries = Vec::with_capacity(numbers.len());
        for number in &numbers {
            if number.is_empty()
                || number.len() > 128
                || !number.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(VideoError::validation(
                    number,
                    "fragments",
                    "Member must satisfy regular expression pattern: ^[0-9]+$",
                ));
            }
            let (_, entry) = index.find(number).ok_or_else(|| {
                VideoError::new(
                    ErrorKind::ResourceNotFound,
                    format!("Fragment {number} was not found in the stream."),
                )
            })?;
            entries.push(entry);
        }
        let slot = self.limiter.connect(
            &definition.internal_stream,
            ConnectionKind::GetMediaForFragmentList,
            (self.clock)(),
        )?;
        let storage = self.storage.clone();
        let definition = definition.clone();
        let body = futures_lite::stream::unfold(entries.into_iter(), move |mut rest| {
            let storage = storage.clone();
            let definition = definition.clone();
            async move {
                let entry = rest.next()?;
                match fragments::load(&storage, &definition, &entry).await {
                    Ok(fragment) => Some((
                        Bytes::from(media::chunk(
                            &fragment,
                            media::ChunkTags::FragmentList,
                            0,
                            0,
                        )),
                        rest,
                    )),
                    Err(error) => {
                        tracing::warn!(%error, "GetMediaForFragmentList could not read a fragment.");
                        let tags = crate::mkv::tags_element(&[
                            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", entry.number.clone()),
                            (
                                "AWS_KINESISVIDEO_EXCEPTION_ERROR_CODE",
                                "FRAGMENT_NOT_FOUND".to_owned(),
                            ),
                            ("AWS_KINESISVIDEO_EXCEPTION_MESSAGE", error.to_string()),
                        ]);
                        Some((Bytes::from(tags), Vec::new().into_iter()))
                    }
                }
            }
        });
        let body = paced_body(
            body,
            self.limiter
                .reader_bytes_per_second(ConnectionKind::GetMediaForFragmentList),
            slot,
            self.sleep.clone(),
            self.clock.clone(),
        );
        Ok(VideoResponse::ok(
            "video/webm",
            VideoBody::Stream(Box::pin(body)),
        ))
    }

    async fn list_fragments(
        &self,
        definition: &StreamDefinition,
        input: &Value,
        now_ms: u64,
    ) -> Result<VideoResponse, VideoError> {
        let max = int_field(input, "MaxResults", 1, 1000)?.unwrap_or(100) as usize;
        let token = string_field(input, "NextToken")?;
        let selection = selection(field(input, "FragmentSelector"), false)?;
        let (selection, offset) = match &token {
            Some(token) => decode_token(token)?,
            None => (selection, 0),
        };
        let index = self.index(definition).await?;
        let matching: Vec<FragmentEntry> = self
            .retained(definition, &index, now_ms)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| {
                selection.is_none_or(|s| {
                    let k = key(e, s.source);
                    s.start_ms.is_none_or(|start| k >= start) && s.end_ms.is_none_or(|end| k <= end)
                })
            })
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .skip(offset)
            .take(max)
            .map(|e| {
                json!({
                    "FragmentNumber": e.number,
                    "FragmentSizeInBytes": e.size_bytes,
                    "ProducerTimestamp": ms_to_seconds(e.producer_ms),
                    "ServerTimestamp": ms_to_seconds(e.server_ms),
                    "FragmentLengthInMilliseconds": e.duration_ms,
                })
            })
            .collect();
        let mut out = json!({ "Fragments": page });
        if offset + max < matching.len() {
            out["NextToken"] = Value::String(encode_token(selection, offset + max));
        }
        Ok(VideoResponse::json(&out))
    }

    async fn create_session(
        &self,
        definition: &StreamDefinition,
        input: &Value,
        kind: SessionKind,
        now_ms: u64,
    ) -> Result<VideoResponse, VideoError> {
        let mode = match enum_field(input, "PlaybackMode", &["LIVE", "LIVE_REPLAY", "ON_DEMAND"])? {
            Some("LIVE_REPLAY") => playlist::PlaybackMode::LiveReplay,
            Some("ON_DEMAND") => playlist::PlaybackMode::OnDemand,
            _ => playlist::PlaybackMode::Live,
        };
        let selector_name = match kind {
            SessionKind::Hls => "HLSFragmentSelector",
            SessionKind::Dash => "DASHFragmentSelector",
        };
        let selection = selection(field(input, selector_name), false)?.unwrap_or(Selection {
            source: playlist::TimestampSource::ServerTimestamp,
            start_ms: None,
            end_ms: None,
        });
        match mode {
            playlist::PlaybackMode::Live if selection.start_ms.is_some() => {
                return Err(VideoError::invalid(
                    "TimestampRange must not be set for PlaybackMode LIVE.",
                ));
            }
            playlist::PlaybackMode::LiveReplay if selection.start_ms.is_none() => {
                return Err(VideoError::invalid(
                    "PlaybackMode LIVE_REPLAY needs a TimestampRange with a StartTimestamp.",
                ));
            }
            playlist::PlaybackMode::OnDemand
                if selection.start_ms.is_none() || selection.end_ms.is_none() =>
            {
                return Err(VideoError::invalid(
                    "PlaybackMode ON_DEMAND needs a TimestampRange with StartTimestamp and EndTimestamp.",
                ));
            }
            playlist::PlaybackMode::OnDemand
                if selection.end_ms.unwrap_or(0) - selection.start_ms.unwrap_or(0)
                    > 24 * 3_600_000 =>
            {
                return Err(VideoError::invalid(
                    "An ON_DEMAND TimestampRange must be shorter than 24 hours.",
                ));
            }
            _ => {}
        }
        let container = match kind {
            SessionKind::Hls
                if enum_field(input, "ContainerFormat", &["FRAGMENTED_MP4", "MPEG_TS"])?
                    == Some("MPEG_TS") =>
            {
                playlist::HlsContainer::MpegTs
            }
            _ => playlist::HlsContainer::FragmentedMp4,
        };
        let discontinuity = match enum_field(
            input,
            "DiscontinuityMode",
            &["ALWAYS", "NEVER", "ON_DISCONTINUITY"],
        )? {
            Some("ALWAYS") => playlist::DiscontinuityMode::Always,
            Some("NEVER") => playlist::DiscontinuityMode::Never,
            Some(_) => playlist::DiscontinuityMode::OnDiscontinuity,
            None => match selection.source {
                playlist::TimestampSource::ServerTimestamp => playlist::DiscontinuityMode::Always,
                playlist::TimestampSource::ProducerTimestamp => playlist::DiscontinuityMode::Never,
            },
        };
        let display_timestamp =
            enum_field(input, "DisplayFragmentTimestamp", &["ALWAYS", "NEVER"])? == Some("ALWAYS");
        let display_number =
            enum_field(input, "DisplayFragmentNumber", &["ALWAYS", "NEVER"])? == Some("ALWAYS");
        let expires_s = int_field(input, "Expires", 300, 43_200)?.unwrap_or(300);
        let max_name = match kind {
            SessionKind::Hls => "MaxMediaPlaylistFragmentResults",
            SessionKind::Dash => "MaxManifestFragmentResults",
        };
        let default_max = if mode == playlist::PlaybackMode::OnDemand {
            1000
        } else {
            5
        };
        let max_results = int_field(input, max_name, 1, 5000)?.unwrap_or(default_max) as usize;
        let session = Session {
            kind,
            container,
            stream_name: definition.name.clone(),
            internal_stream: definition.internal_stream.clone(),
            mode,
            source: selection.source,
            start_ms: selection.start_ms,
            end_ms: selection.end_ms,
            discontinuity,
            display_timestamp,
            display_number,
            max_results,
            created_ms: now_ms,
            expires_ms: now_ms + u64::try_from(expires_s).unwrap_or(300) * 1000,
        };
        // AWS refuses a session with nothing to play, and checks the media's codecs.
        let index = self.index(definition).await?;
        let listed = self.session_fragments(definition, &index, &session, now_ms);
        let Some((_, first)) = listed.first() else {
            return Err(VideoError::new(
                ErrorKind::ResourceNotFound,
                "No fragments were found for the requested stream and time range.",
            ));
        };
        let fragment = fragments::load(&self.storage, definition, first)
            .await
            .map_err(|e| fragment_error(&e))?;
        MediaTracks::parse(&fragment.header).map_err(|e| remux_error(&e))?;
        let token = self.sessions.create(session, now_ms);
        let (member, url) = match kind {
            SessionKind::Hls => (
                "HLSStreamingSessionURL",
                format!(
                    "{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}",
                    self.endpoint
                ),
            ),
            SessionKind::Dash => (
                "DASHStreamingSessionURL",
                format!(
                    "{}/dash/v1/getDASHManifest.mpd?SessionToken={token}",
                    self.endpoint
                ),
            ),
        };
        Ok(VideoResponse::json(&json!({ member: url })))
    }

    /// The fragments a session's playlist lists now, with their storage index.
    fn session_fragments(
        &self,
        definition: &StreamDefinition,
        index: &StreamIndex,
        session: &Session,
        now_ms: u64,
    ) -> Vec<(usize, FragmentEntry)> {
        let retained = self.retained(definition, index, now_ms);
        match session.mode {
            playlist::PlaybackMode::Live => {
                let skip = retained.len().saturating_sub(session.max_results);
                retained.into_iter().skip(skip).collect()
            }
            playlist::PlaybackMode::LiveReplay => {
                let start = session.start_ms.unwrap_or(0);
                let reached = start + now_ms.saturating_sub(session.created_ms);
                let until = session.end_ms.map_or(reached, |end| end.min(reached));
                let mut within: Vec<(usize, FragmentEntry)> = retained
                    .into_iter()
                    .filter(|(_, e)| {
                        let k = key(e, session.source);
                        k >= start && k <= until
                    })
                    .collect();
                within.sort_by_key(|(_, e)| key(e, session.source));
                let skip = within.len().saturating_sub(session.max_results);
                within.into_iter().skip(skip).collect()
            }
            playlist::PlaybackMode::OnDemand => {
                let (start, end) = (
                    session.start_ms.unwrap_or(0),
                    session.end_ms.unwrap_or(u64::MAX),
                );
                let mut within: Vec<(usize, FragmentEntry)> = retained
                    .into_iter()
                    .filter(|(_, e)| {
                        let k = key(e, session.source);
                        k >= start && k <= end
                    })
                    .collect();
                within.sort_by_key(|(_, e)| key(e, session.source));
                // Duplicate start times: the highest fragment number wins.
                within.dedup_by(|later, earlier| {
                    if key(&later.1, session.source) == key(&earlier.1, session.source) {
                        *earlier = later.clone();
                        true
                    } else {
                        false
                    }
                });
                within.truncate(session.max_results);
                within
            }
        }
    }

    async fn session_resource(
        &self,
        req: &HttpRequest<'_>,
        now: SystemTime,
    ) -> Result<VideoResponse, VideoError> {
        if req.method != "GET" && req.method != "HEAD" {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                "Only GET is served.",
            ));
        }
        let now_ms = epoch_ms(now);
        let token = query_param(req.query, "SessionToken")
            .ok_or_else(|| VideoError::missing("SessionToken"))?;
        let session = self.sessions.get(token, now_ms).ok_or_else(|| {
            VideoError::new(
                ErrorKind::NotAuthorized,
                "The session token is not valid or has expired.",
            )
        })?;
        let expected = match session.kind {
            SessionKind::Hls => "/hls/v1/",
            SessionKind::Dash => "/dash/v1/",
        };
        let resource = req.path.strip_prefix(expected).ok_or_else(|| {
            VideoError::new(
                ErrorKind::NotAuthorized,
                "The session token is for another protocol.",
            )
        })?;
        let VideoStream { definition, .. } = self
            .registry
            .get(&session.stream_name)
            .filter(|VideoStream { definition: d, .. }| {
                d.internal_stream == session.internal_stream
            })
            .ok_or_else(|| {
                VideoError::new(ErrorKind::ResourceNotFound, crate::error::STREAM_NOT_FOUND)
            })?;
        let index = self.index(&definition).await?;
        let track = match query_param(req.query, "TrackNumber") {
            Some(text) => Some(
                text.parse::<u64>()
                    .map_err(|_| VideoError::invalid("TrackNumber must be a positive integer."))?,
            ),
            None => None,
        };
        // Only playlists and init segments list the session's fragments; a media fragment is
        // found by its number.
        let listed = || self.session_fragments(&definition, &index, &session, now_ms);
        match resource {
            "getHLSMasterPlaylist.m3u8" | "getDASHManifest.mpd" => {
                let listed = listed();
                let (_, first) = listed.first().ok_or_else(|| {
                    VideoError::new(
                        ErrorKind::ResourceNotFound,
                        "No fragments are available yet.",
                    )
                })?;
                let tracks = self.tracks_of(&definition, first).await?;
                let bandwidth = bandwidth_bps(listed.iter().map(|(_, e)| e));
                let token = token.to_owned();
                if resource == "getDASHManifest.mpd" {
                    let fragments: Vec<playlist::PlaylistFragment> =
                        listed.iter().map(|(_, e)| playlist_fragment(e)).collect();
                    let text = playlist::dash_manifest(
                        &tracks,
                        &fragments,
                        &playlist::DashManifestOptions {
                            session_token: &token,
                            playback_mode: session.mode,
                            timestamp_source: session.source,
                            bandwidth_bps: bandwidth,
                            display_fragment_number: session.display_number,
                            display_fragment_timestamp: session.display_timestamp,
                            now_ms,
                        },
                    );
                    return Ok(VideoResponse::ok(
                        "application/dash+xml",
                        VideoBody::Full(text.into_bytes()),
                    ));
                }
                let text = playlist::hls_master_playlist(
                    &tracks,
                    &playlist::MasterPlaylistOptions {
                        session_token: &token,
                        container: session.container,
                        bandwidth_bps: bandwidth,
                    },
                );
                Ok(VideoResponse::ok(
                    "application/vnd.apple.mpegurl",
                    VideoBody::Full(text.into_bytes()),
                ))
            }
            "getHLSMediaPlaylist.m3u8" => {
                let listed = listed();
                // An MPEG-TS playlist lists segments of every track, so it takes no TrackNumber.
                let track = match session.container {
                    playlist::HlsContainer::FragmentedMp4 => {
                        track.ok_or_else(|| VideoError::missing("TrackNumber"))?
                    }
                    playlist::HlsContainer::MpegTs => 1,
                };
                let fragments: Vec<playlist::PlaylistFragment> =
                    listed.iter().map(|(_, e)| playlist_fragment(e)).collect();
                let mut text = playlist::hls_media_playlist(
                    &fragments,
                    &playlist::MediaPlaylistOptions {
                        session_token: token,
                        container: session.container,
                        track_number: track,
                        playback_mode: session.mode,
                        timestamp_source: session.source,
                        discontinuity_mode: session.discontinuity,
                        display_fragment_timestamp: session.display_timestamp,
                        media_sequence: listed.first().map_or(0, |(at, _)| *at as u64),
                    },
                );
                if session.mode == playlist::PlaybackMode::LiveReplay
                    && session.end_ms.is_some_and(|end| {
                        session.start_ms.unwrap_or(0) + now_ms.saturating_sub(session.created_ms)
                            >= end
                    })
                    && !text.contains("#EXT-X-ENDLIST")
                {
                    text.push_str("#EXT-X-ENDLIST\n");
                }
                Ok(VideoResponse::ok(
                    "application/vnd.apple.mpegurl",
                    VideoBody::Full(text.into_bytes()),
                ))
            }
            "getMP4InitFragment.mp4" => {
                let listed = listed();
                let (_, first) = listed.first().ok_or_else(|| {
                    VideoError::new(
                        ErrorKind::ResourceNotFound,
                        "No fragments are available yet.",
                    )
                })?;
                let tracks = self.tracks_of(&definition, first).await?;
                let init = remux::init_segment(&tracks, track).map_err(|e| remux_error(&e))?;
                Ok(VideoResponse::ok("video/mp4", VideoBody::Full(init)))
            }
            "getMP4MediaFragment.mp4" | "getTSFragment.ts" => {
                if resource == "getTSFragment.ts" && session.kind != SessionKind::Hls {
                    return Err(VideoError::new(
                        ErrorKind::ResourceNotFound,
                        "getTSFragment.ts is a resource of HLS sessions.",
                    ));
                }
                let number = query_param(req.query, "FragmentNumber")
                    .ok_or_else(|| VideoError::missing("FragmentNumber"))?;
                let (at, entry) = index.find(number).ok_or_else(|| {
                    VideoError::new(
                        ErrorKind::ResourceNotFound,
                        format!("Fragment {number} was not found in the stream."),
                    )
                })?;
                let fragment = fragments::load(&self.storage, &definition, &entry)
                    .await
                    .map_err(|e| fragment_error(&e))?;
                let tracks = MediaTracks::parse(&fragment.header).map_err(|e| remux_error(&e))?;
                let frames = frames_of(&tracks, &fragment)?;
                if resource == "getTSFragment.ts" {
                    // Each fragment is served on its own, so its continuity counters restart.
                    let segment =
                        remux::ts_segment(&tracks, &frames, &mut remux::TsContinuity::restart())
                            .map_err(|e| remux_error(&e))?;
                    return Ok(VideoResponse::ok("video/mp2t", VideoBody::Full(segment)));
                }
                let segment = remux::media_segment(
                    &tracks,
                    &frames,
                    u32::try_from(at + 1).unwrap_or(u32::MAX),
                    track,
                )
                .map_err(|e| remux_error(&e))?;
                Ok(VideoResponse::ok("video/mp4", VideoBody::Full(segment)))
            }
            _ => Err(VideoError::new(
                ErrorKind::ResourceNotFound,
                format!("{} is not a resource of a streaming session.", req.path),
            )),
        }
    }

    async fn get_images(
        &self,
        definition: &StreamDefinition,
        input: &Value,
        now_ms: u64,
    ) -> Result<VideoResponse, VideoError> {
        let source = match enum_field(
            input,
            "ImageSelectorType",
            &["PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"],
        )?
        .ok_or_else(|| VideoError::missing("ImageSelectorType"))?
        {
            "PRODUCER_TIMESTAMP" => playlist::TimestampSource::ProducerTimestamp,
            _ => playlist::TimestampSource::ServerTimestamp,
        };
        let time = |name: &str| -> Result<u64, VideoError> {
            timestamp_ms(
                field(input, name).ok_or_else(|| VideoError::missing(name))?,
                name,
            )
        };
        let (start, end) = (time("StartTimestamp")?, time("EndTimestamp")?);
        if end < start {
            return Err(VideoError::invalid(
                "EndTimestamp must be later than StartTimestamp.",
            ));
        }
        if end - start > 300_000 {
            return Err(VideoError::invalid(
                "The range between StartTimestamp and EndTimestamp must not exceed 300 seconds.",
            ));
        }
        let interval = int_field(input, "SamplingInterval", 200, 20_000)?.unwrap_or(3000) as u64;
        let format = match enum_field(input, "Format", &["JPEG", "PNG"])?
            .ok_or_else(|| VideoError::missing("Format"))?
        {
            "JPEG" => crate::images::ImageFormat::Jpeg,
            _ => crate::images::ImageFormat::Png,
        };
        let jpeg_quality = match field(input, "FormatConfig").and_then(|c| field(c, "JPEGQuality"))
        {
            None => 80,
            Some(value) => value
                .as_str()
                .and_then(|q| q.parse::<u8>().ok())
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| {
                    VideoError::invalid("JPEGQuality must be a number from 1 to 100.")
                })?,
        };
        let width = int_field(input, "WidthPixels", 1, 3840)?.map(|w| w as u32);
        let height = int_field(input, "HeightPixels", 1, 2160)?.map(|h| h as u32);
        let max = int_field(input, "MaxResults", 1, 100)?.unwrap_or(25) as usize;
        let mut at = match string_field(input, "NextToken")? {
            Some(token) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| *t >= start)
                .ok_or_else(|| VideoError::invalid("NextToken is not valid."))?,
            None => start,
        };
        let spec = crate::images::ImageSpec {
            format,
            jpeg_quality,
            width,
            height,
        };
        let index = self.index(definition).await?;
        let mut entries: Vec<FragmentEntry> = self
            .retained(definition, &index, now_ms)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        entries.sort_by_key(|e| key(e, source));
        let mut images = Vec::new();
        let mut loaded: Option<(String, Vec<u8>)> = None;
        while at <= end && images.len() < max {
            let holding = entries
                .iter()
                .rev()
                .find(|e| key(e, source) <= at && at < key(e, source) + e.duration_ms.max(1));
            let mut image = json!({ "TimeStamp": ms_to_seconds(at) });
            match holding {
                None => image["Error"] = json!("NO_MEDIA"),
                Some(entry) => {
                    if loaded.as_ref().is_none_or(|(n, _)| *n != entry.number) {
                        let fragment = fragments::load(&self.storage, definition, entry)
                            .await
                            .map_err(|e| fragment_error(&e))?;
                        let mut mkv = fragment.header;
                        mkv.extend_from_slice(&fragment.cluster);
                        loaded = Some((entry.number.clone(), mkv));
                    }
                    let mkv = loaded.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
                    let offset = at - key(entry, source);
                    match crate::images::decode_image_off_thread(
                        self.ffmpeg.as_ref().clone(),
                        mkv,
                        offset,
                        spec,
                    )
                    .await
                    {
                        Ok(bytes) => {
                            image["ImageContent"] =
                                json!(base64::engine::general_purpose::STANDARD.encode(bytes));
                        }
                        Err(error @ crate::images::ImageError::NoDecoder { .. }) => {
                            return Err(VideoError::invalid(format!(
                                "GetImages needs ffmpeg to decode frames: {error}"
                            )));
                        }
                        Err(error) => {
                            tracing::debug!(%error, "GetImages could not decode a frame.");
                            image["Error"] = json!("MEDIA_ERROR");
                        }
                    }
                }
            }
            images.push(image);
            at += interval;
        }
        let mut out = json!({ "Images": images });
        if at <= end {
            out["NextToken"] =
                json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(at.to_string()));
        }
        Ok(VideoResponse::json(&out))
    }

    async fn tracks_of(
        &self,
        definition: &StreamDefinition,
        entry: &FragmentEntry,
    ) -> Result<MediaTracks, VideoError> {
        let fragment = fragments::load(&self.storage, definition, entry)
            .await
            .map_err(|e| fragment_error(&e))?;
        MediaTracks::parse(&fragment.header).map_err(|e| remux_error(&e))
    }

    async fn get_clip(
        &self,
        definition: &StreamDefinition,
        input: &Value,
        now_ms: u64,
    ) -> Result<VideoResponse, VideoError> {
        let selection = selection(field(input, "ClipFragmentSelector"), true)?
            .ok_or_else(|| VideoError::missing("ClipFragmentSelector"))?;
        let (Some(start), Some(end)) = (selection.start_ms, selection.end_ms) else {
            return Err(VideoError::missing("TimestampRange"));
        };
        let index = self.index(definition).await?;
        let mut within: Vec<FragmentEntry> = self
            .retained(definition, &index, now_ms)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| {
                let k = key(e, selection.source);
                k >= start && k <= end
            })
            .collect();
        within.sort_by_key(|e| key(e, selection.source));
        within.dedup_by_key(|e| key(e, selection.source));
        if within.is_empty() {
            return Err(VideoError::new(
                ErrorKind::ResourceNotFound,
                "No fragments were found for the requested stream and time range.",
            ));
        }
        let mut tracks: Option<MediaTracks> = None;
        let mut frames = Vec::new();
        let mut bytes = 0u64;
        for entry in within.iter().take(CLIP_FRAGMENTS_MAX) {
            if bytes + entry.size_bytes > CLIP_BYTES_MAX {
                break;
            }
            bytes += entry.size_bytes;
            let fragment = fragments::load(&self.storage, definition, entry)
                .await
                .map_err(|e| fragment_error(&e))?;
            let parsed = MediaTracks::parse(&fragment.header).map_err(|e| remux_error(&e))?;
            frames.push(frames_of(&parsed, &fragment)?);
            tracks.get_or_insert(parsed);
        }
        let tracks = tracks.ok_or_else(|| VideoError::internal("no tracks"))?;
        let mp4 = remux::clip_mp4(&tracks, &frames).map_err(|e| remux_error(&e))?;
        Ok(VideoResponse::ok("video/mp4", VideoBody::Full(mp4)))
    }

    /// The player page (`/video/<stream>`), its session (`/video/<stream>/session`) and hls.js
    /// (`/video/hls.min.js`). The page and its session are as open as the listener when the
    /// server checks no credentials; with credentials they are refused (a browser cannot sign).
    async fn page<A: KinesisApi>(
        &self,
        api: &A,
        req: &HttpRequest<'_>,
        auth: &AuthConfig,
        now: SystemTime,
    ) -> Result<VideoResponse, VideoError> {
        if req.method != "GET" {
            return Err(VideoError::new(
                ErrorKind::UnknownOperation,
                "Only GET is served.",
            ));
        }
        let rest = req.path.trim_start_matches("/video/");
        if rest == "hls.min.js" {
            let js = self.hls_js.as_ref().ok_or_else(|| {
                VideoError::new(
                    ErrorKind::ResourceNotFound,
                    "hls.js is not configured: start Sluice with --hls-js <path to hls.min.js>.",
                )
            })?;
            return Ok(VideoResponse::ok(
                "text/javascript",
                VideoBody::Full(js.as_ref().clone()),
            ));
        }
        if matches!(auth.mode, sluice_protocols::sigv4::AuthMode::Verify { .. }) {
            return Err(VideoError::new(
                ErrorKind::AccessDenied,
                "The player page is off when Sluice checks credentials; use GetHLSStreamingSessionURL.",
            ));
        }
        let (name, session) = match rest.strip_suffix("/session") {
            Some(name) => (name, true),
            None => (rest, false),
        };
        let definition = self.active(api, Some(name), None).await?;
        if !session {
            let page = PLAYER_PAGE.replace("{{STREAM}}", &html_escape(&definition.name));
            return Ok(VideoResponse::ok(
                "text/html; charset=utf-8",
                VideoBody::Full(page.into_bytes()),
            ));
        }
        if definition.data_retention_hours == 0 {
            return Err(VideoError::new(
                ErrorKind::NoDataRetention,
                "The stream does not keep data (DataRetentionInHours is 0).",
            ));
        }
        self.create_session(
            &definition,
            &json!({"PlaybackMode": "LIVE"}),
            SessionKind::Hls,
            epoch_ms(now),
        )
        .await
    }
}

fn frames_of(
    tracks: &MediaTracks,
    fragment: &StoredFragment,
) -> Result<remux::FragmentFrames, VideoError> {
    remux::fragment_frames(
        tracks,
        remux::StoredFragment {
            header: &fragment.header,
            cluster: &fragment.cluster,
            producer_ms: fragment.entry.producer_ms,
        },
    )
    .map_err(|e| remux_error(&e))
}

/// The peak bit rate of `entries`, for BANDWIDTH.
fn bandwidth_bps<'a>(entries: impl Iterator<Item = &'a FragmentEntry>) -> u64 {
    entries
        .map(|e| e.size_bytes * 8 * 1000 / e.duration_ms.max(1))
        .max()
        .unwrap_or(1_000_000)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tokens_round_trip_their_selection_and_offset() {
        let selection = Selection {
            source: playlist::TimestampSource::ProducerTimestamp,
            start_ms: Some(5),
            end_ms: None,
        };
        let (back, offset) = decode_token(&encode_token(Some(selection), 7)).expect("valid");
        assert_eq!(offset, 7);
        let back = back.expect("selection");
        assert_eq!(back.source, playlist::TimestampSource::ProducerTimestamp);
        assert_eq!((back.start_ms, back.end_ms), (Some(5), None));
        assert!(decode_token("not a token!").is_err());
    }

    #[test]
    fn video_paths_are_recognised_and_kinesis_paths_are_not() {
        for path in [
            "/createStream",
            "/putMedia",
            "/getMedia",
            "/hls/v1/getHLSMasterPlaylist.m3u8",
            "/video/cam",
        ] {
            assert!(is_video_path(path), "{path}");
        }
        for path in ["/", "/health", "/metrics"] {
            assert!(!is_video_path(path), "{path}");
        }
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        let query = Some("SessionToken=abc&TrackNumber=2");
        assert_eq!(query_param(query, "TrackNumber"), Some("2"));
        assert_eq!(query_param(query, "SessionToken"), Some("abc"));
        assert_eq!(query_param(query, "FragmentNumber"), None);
    }
}
