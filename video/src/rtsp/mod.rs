//! RTSP ingest: Sluice pulls an IP camera's RTSP stream (H.264 video, and AAC audio when the
//! camera sends it) and stores it in a Kinesis video stream exactly as a producer's PutMedia
//! would: fragments cut at keyframes, each an MKV header and one Cluster, numbered, indexed and
//! timestamped by the same code, so GetMedia, ListFragments, HLS, DASH and GetClip serve them
//! unchanged. Configured with `--rtsp-source STREAM=rtsp://[user:password@]host[:port]/path`
//! (or `rtsp_source = [...]` in the config file); the video stream must exist (CreateStream)
//! and the source waits for it.
//!
//! - `source`: one camera's session loop on retina, with reconnects and backoff.
//! - `crate::ingest`: what it shares with RTMP ingest — the fragmenter, the MKV muxer, the
//!   fragment writer and the `video_rtsp_*` metrics.
//!
//! Threads: retina is built on tokio, so every source runs as a task of one current-thread
//! tokio runtime on a thread of its own (`sluice-rtsp`), never on a shard core. It reaches
//! records only through the narrow storage face (`RecordLog`), which sends each append to the
//! shard core owning the stream's internal stream and answers once it is durable. Bringing a
//! stream's internal stream in line with its definition (`Registry::refresh`) needs a shard
//! core's Kinesis API, so the RTSP thread asks core 0 over a channel
//! ([`RtspIngest::answer_status_requests`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_core::KinesisApi;
use sluice_core::storage::RecordLog;

mod source;

pub use source::SessionError;

use crate::ingest::metrics::{self, IngestMetrics, Protocol};
use crate::ingest::{IngestContext, spawn_thread};
use crate::media::Clock;
use crate::service::VideoShared;

/// One configured camera: the video stream it feeds and the URL Sluice pulls.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspSource {
    pub stream_name: String,
    /// The URL without its user information (retina takes credentials separately).
    pub url: url::Url,
    username: String,
    password: String,
}

impl std::fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("RtspSource")
            .field("stream_name", &self.stream_name)
            .field("url", &self.display_url())
            .finish_non_exhaustive()
    }
}

/// Why an `--rtsp-source` value is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspSourceError {
    #[error("{0:?} is not STREAM=URL")]
    NotAPair(String),
    #[error("stream name {name:?} is not valid: {reason}")]
    StreamName { name: String, reason: String },
    #[error("{url:?} is not a URL: {reason}")]
    Url { url: String, reason: String },
    #[error("{url:?} is not an rtsp:// URL")]
    Scheme { url: String },
}

impl std::str::FromStr for RtspSource {
    type Err = RtspSourceError;

    /// `STREAM=rtsp://[user[:password]@]host[:port]/path` (user and password percent-encoded).
    fn from_str(text: &str) -> Result<Self, RtspSourceError> {
        let (stream_name, url_text) = text
            .split_once('=')
            .filter(|(name, url)| !name.is_empty() && !url.is_empty())
            .ok_or_else(|| RtspSourceError::NotAPair(text.to_owned()))?;
        crate::api::validate::check_stream_name(stream_name, "stream").map_err(|error| {
            RtspSourceError::StreamName {
                name: stream_name.to_owned(),
                reason: error.message,
            }
        })?;
        let mut url = url::Url::parse(url_text).map_err(|error| RtspSourceError::Url {
            url: url_text.to_owned(),
            reason: error.to_string(),
        })?;
        if url.scheme() != "rtsp" || url.host_str().is_none_or(str::is_empty) {
            return Err(RtspSourceError::Scheme {
                url: url_text.to_owned(),
            });
        }
        let decode = |part: &str| {
            percent_decode(part).map_err(|reason| RtspSourceError::Url {
                url: url_text.to_owned(),
                reason,
            })
        };
        let username = decode(url.username())?;
        let password = decode(url.password().unwrap_or(""))?;
        // Userinfo is removed for good: retina sends credentials only when the camera asks.
        let stripped = url.set_username("").is_ok() && url.set_password(None).is_ok();
        assert!(
            stripped,
            "an rtsp:// URL with a host has userinfo that can be removed"
        );
        Ok(Self {
            stream_name: stream_name.to_owned(),
            url,
            username,
            password,
        })
    }
}

/// Percent-decodes URL userinfo as UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = text
                .get(at + 1..at + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {at}"))?;
            out.push(hex);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user information is not UTF-8".to_owned())
}

impl RtspSource {
    /// The URL as logs and metrics show it: without credentials.
    pub fn display_url(&self) -> String {
        if self.username.is_empty() {
            self.url.to_string()
        } else {
            let mut shown = self.url.clone();
            let _ = shown.set_username("***");
            shown.to_string()
        }
    }

    fn credentials(&self) -> Option<retina::client::Credentials> {
        (!self.username.is_empty()).then(|| retina::client::Credentials {
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

/// The RTSP ingest of the server: its sources, their metrics, and the thread that pulls them.
#[derive(Clone)]
pub struct RtspIngest {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Vec<(RtspSource, Arc<IngestMetrics>)>,
    context: IngestContext,
    started: AtomicBool,
}

impl std::fmt::Debug for RtspIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspIngest")
            .field("sources", &self.inner.sources.len())
            .finish_non_exhaustive()
    }
}

impl RtspIngest {
    /// The ingest of `sources` into the streams of `shared`; `clock` is the wall clock that
    /// stamps fragments (epoch milliseconds).
    pub fn new(sources: Vec<RtspSource>, shared: &VideoShared, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                sources: sources
                    .into_iter()
                    .map(|source| (source, Arc::default()))
                    .collect(),
                context: IngestContext::new(shared, clock),
                started: AtomicBool::new(false),
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.sources.is_empty()
    }

    /// Starts the `sluice-rtsp` thread that pulls every source through `storage`; later calls
    /// do nothing. Fails only when the thread cannot be created.
    pub fn start<R: RecordLog>(&self, storage: R) -> std::io::Result<()> {
        if self.is_empty() || self.inner.started.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let contexts: Vec<source::SourceContext<R>> = self
            .inner
            .sources
            .iter()
            .map(|(source, metrics)| source::SourceContext {
                source: source.clone(),
                target: self.inner.context.target(storage.clone()),
                metrics: metrics.clone(),
            })
            .collect();
        spawn_thread("sluice-rtsp", move |local| {
            for context in contexts {
                local.spawn_local(source::run(context));
            }
        })
    }

    /// Answers the RTSP thread's status requests with `api` (a shard core's Kinesis API); core
    /// 0 runs this for the server's life.
    pub async fn answer_status_requests<A: KinesisApi>(self, api: A) {
        self.inner.context.answer_status_requests(api).await;
    }

    /// `video_rtsp_*` for every source, as Prometheus text.
    pub fn render_metrics(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        metrics::render(
            Protocol::Rtsp,
            self.inner
                .sources
                .iter()
                .map(|(source, metrics)| (Some(source.stream_name.as_str()), metrics.as_ref())),
        )
    }

    /// The metrics of the source feeding `stream_name`.
    pub fn metrics(&self, stream_name: &str) -> Option<Arc<IngestMetrics>> {
        self.inner
            .sources
            .iter()
            .find(|(source, _)| source.stream_name == stream_name)
            .map(|(_, metrics)| metrics.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_stream_equals_url_and_its_credentials_leave_the_url() {
        let source: RtspSource = "front-door=rtsp://admin:p%40ss@127.0.0.1:8554/live"
            .parse()
            .expect("valid");
        assert_eq!(source.stream_name, "front-door");
        assert_eq!(source.url.as_str(), "rtsp://127.0.0.1:8554/live");
        let credentials = source.credentials().expect("credentials");
        assert_eq!(credentials.username, "admin");
        assert_eq!(credentials.password, "p@ss");
        assert_eq!(source.display_url(), "rtsp://***@127.0.0.1:8554/live");
        assert!(!format!("{source:?}").contains("p@ss"));

        let plain: RtspSource = "cam=rtsp://cam.local/stream1".parse().expect("valid");
        assert!(plain.credentials().is_none());
        assert_eq!(plain.display_url(), "rtsp://cam.local/stream1");
    }

    #[test]
    fn malformed_sources_are_refused_with_the_reason() {
        let error = |text: &str| text.parse::<RtspSource>().expect_err("refused");
        assert!(matches!(
            error("rtsp://cam/x"),
            RtspSourceError::NotAPair(_)
        ));
        assert!(matches!(error("cam"), RtspSourceError::NotAPair(_)));
        assert!(matches!(
            error("cam=http://cam/x"),
            RtspSourceError::Scheme { .. }
        ));
        assert!(matches!(
            error("bad name=rtsp://cam/x"),
            RtspSourceError::StreamName { .. }
        ));
        assert!(matches!(
            error("cam=rtsp://"),
            RtspSourceError::Url { .. } | RtspSourceError::Scheme { .. }
        ));
    }
}
