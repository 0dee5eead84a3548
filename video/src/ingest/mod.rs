//! Ingest from sources that are not KVS producers — RTSP cameras Sluice pulls (`rtsp`) and RTMP
//! publishers that push to it (`rtmp`) — stored exactly as a producer's PutMedia would be:
//! fragments cut at keyframes, each an MKV header and one Cluster, numbered, indexed and
//! timestamped by the same code, so GetMedia, ListFragments, HLS, DASH and GetClip serve them
//! unchanged.
//!
//! - `fragmenter`: frames in, fragments out, cut at IDR pictures (pure).
//! - `muxer`: the MKV header and Clusters (pure).
//! - `metrics`: `video_rtsp_*` and `video_rtmp_*` on `/metrics`.
//! - here: what every source shares between its frames and storage — the stream it feeds
//!   ([`IngestTarget`], [`ready_stream`]), the requests to core 0 that bring a stream's internal
//!   stream in line with its definition ([`StatusDesk`]), and [`FragmentWriter`].
//!
//! Both protocols run on threads of their own with a current-thread tokio runtime (retina and
//! the RTMP listener are tokio-based), never on a shard core. They reach records only through
//! the narrow storage face (`RecordLog`), which sends each append to the shard core owning the
//! stream's internal stream and answers once it is durable.
//!
//! Invariants:
//! - A session stores its fragments in order, one at a time; a fragment's number is allocated
//!   from the stream's index like PutMedia's (at the server time its first frame arrived).
//! - Producer timestamps are the server's wall clock at the session's first frame plus the
//!   source's presentation times, and never go back across sessions: a session starts no
//!   earlier than the floor it is given (the end of the last fragment stored before it).
//! - A fragment's header is the one current when its first frame arrived, and every frame in it
//!   belongs to a track that header declares.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::KinesisApi;
use sluice_core::storage::{AppendError, RecordLog};

pub mod fragmenter;
pub mod metrics;
pub mod muxer;

use fragmenter::{Fragment, Fragmenter, FragmenterLimits, Frame, Pushed, TrackKind};
use metrics::{ErrorType, IngestMetrics};
use muxer::{AUDIO_TRACK, Block, Tracks, VIDEO_TRACK};

use crate::error::VideoError;
use crate::fragments::{self, FragmentError, FragmentTimes, Indexes, StreamIndex};
use crate::media::Clock;
use crate::model::{StreamDefinition, StreamStatus, VideoStream};
use crate::registry::Registry;
use crate::service::VideoShared;

/// How many status requests may wait for core 0.
const STATUS_REQUESTS_MAX: usize = 64;
/// How long core 0 may take to bring the stream's status up to date.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why frames cannot go into their stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("video stream {stream_name} does not exist (create it with CreateStream)")]
    StreamNotFound { stream_name: String },
    #[error("video stream {stream_name} is {status}")]
    StreamNotReady {
        stream_name: String,
        status: &'static str,
    },
    #[error("cannot store a fragment: {0}")]
    Storage(#[from] FragmentError),
}

impl IngestError {
    pub const fn error_type(&self) -> ErrorType {
        match self {
            Self::StreamNotFound { .. } | Self::StreamNotReady { .. } => ErrorType::Stream,
            Self::Storage(FragmentError::Append(
                AppendError::StreamNotWritable { .. } | AppendError::ShardNotFound { .. },
            )) => ErrorType::Stream,
            Self::Storage(_) => ErrorType::Storage,
        }
    }
}

/// A request from an ingest thread to core 0: bring the stream's internal stream in line with
/// its definition (`Registry::refresh`) and answer its status.
#[derive(Debug)]
struct StatusRequest {
    stream_name: String,
    reply: futures_channel::oneshot::Sender<Result<StreamStatus, VideoError>>,
}

/// The channel between an ingest thread and core 0.
#[derive(Clone, Debug)]
struct StatusDesk {
    sender: async_channel::Sender<StatusRequest>,
    receiver: async_channel::Receiver<StatusRequest>,
}

impl Default for StatusDesk {
    fn default() -> Self {
        let (sender, receiver) = async_channel::bounded(STATUS_REQUESTS_MAX);
        Self { sender, receiver }
    }
}

/// What every source of one ingest shares, apart from the storage handle: the streams, their
/// indexes, the way to core 0, the fragment limits and the clock.
#[derive(Clone)]
pub(crate) struct IngestContext {
    registry: Arc<Registry>,
    indexes: Arc<Indexes>,
    status: StatusDesk,
    limits: FragmenterLimits,
    clock: Clock,
}

impl IngestContext {
    /// The streams of `shared`, stamped by `clock` (epoch milliseconds).
    pub fn new(shared: &VideoShared, clock: Clock) -> Self {
        Self {
            registry: shared.registry().clone(),
            indexes: shared.indexes().clone(),
            status: StatusDesk::default(),
            limits: FragmenterLimits::put_media(),
            clock,
        }
    }

    /// What a source stores through `storage` with.
    pub fn target<R>(&self, storage: R) -> IngestTarget<R> {
        IngestTarget {
            storage,
            context: self.clone(),
        }
    }

    /// Answers the ingest thread's status requests with `api` (a shard core's Kinesis API);
    /// core 0 runs this for the server's life.
    pub async fn answer_status_requests<A: KinesisApi>(&self, api: A) {
        while let Ok(request) = self.status.receiver.recv().await {
            let status = self.registry.refresh(&api, &request.stream_name).await;
            // The source gave up waiting (it asks again on its next attempt).
            let _ = request.reply.send(status);
        }
    }
}

/// Everything a source needs to store fragments into some stream.
#[derive(Clone)]
pub(crate) struct IngestTarget<R> {
    pub storage: R,
    context: IngestContext,
}

/// Starts the thread `name` with a current-thread tokio runtime, on which `spawn` starts the
/// ingest's tasks; it runs until they all end. A LocalSet keeps the tasks' futures on that
/// thread, so they need not be `Send`. Fails only when the thread cannot be created.
pub(crate) fn spawn_thread(
    name: &str,
    spawn: impl FnOnce(&tokio::task::LocalSet) + Send + 'static,
) -> std::io::Result<()> {
    let thread = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%thread, %error, "An ingest thread cannot start its tokio runtime; its sources are not ingested.");
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            spawn(&local);
            runtime.block_on(local);
        })?;
    Ok(())
}

/// The definition and index of `stream_name`, once it exists, is ACTIVE (or UPDATING) and its
/// internal stream is in line with it (core 0 refreshes it, as a data-plane call would).
pub(crate) async fn ready_stream<R: RecordLog>(
    target: &IngestTarget<R>,
    stream_name: &str,
) -> Result<(StreamDefinition, Arc<StreamIndex>), IngestError> {
    let not_found = || IngestError::StreamNotFound {
        stream_name: stream_name.to_owned(),
    };
    let context = &target.context;
    // An unknown name needs no round trip to core 0.
    if context.registry.get(stream_name).is_none() {
        return Err(not_found());
    }
    let (reply, answer) = futures_channel::oneshot::channel();
    let asked = context
        .status
        .sender
        .send(StatusRequest {
            stream_name: stream_name.to_owned(),
            reply,
        })
        .await
        .is_ok();
    let refreshed = if asked {
        tokio::time::timeout(STATUS_TIMEOUT, answer)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let VideoStream { definition, status } =
        context.registry.get(stream_name).ok_or_else(not_found)?;
    let status = match refreshed {
        Some(Ok(status)) => status,
        Some(Err(error)) if error.kind == crate::error::ErrorKind::ResourceNotFound => {
            return Err(not_found());
        }
        // The refresh failed or did not answer: go by what the registry says.
        _ => status,
    };
    if matches!(status, StreamStatus::Creating | StreamStatus::Deleting) {
        return Err(IngestError::StreamNotReady {
            stream_name: stream_name.to_owned(),
            status: status.as_str(),
        });
    }
    let index = context.indexes.of(&definition);
    index.ensure_loaded(&target.storage, &definition).await?;
    Ok((definition, index))
}

/// An MKV header and whether it declares the audio track.
#[derive(Debug)]
struct Header {
    bytes: Vec<u8>,
    has_audio: bool,
}

/// A session's state between the fragmenter and storage.
pub(crate) struct FragmentWriter<'a, R> {
    target: &'a IngestTarget<R>,
    metrics: &'a IngestMetrics,
    definition: &'a StreamDefinition,
    index: &'a StreamIndex,
    fragmenter: Fragmenter,
    /// The producer time (epoch ms) of session time 0, fixed at the first frame.
    anchor_ms: Option<i64>,
    /// The header of the source's current parameters (`None` until they are known).
    header: Option<Arc<Header>>,
    /// The header of the open fragment: the parameters at its first frame.
    open_header: Option<Arc<Header>>,
    /// Fragments stored by this session.
    pub stored: u64,
    /// The producer time (epoch ms) the session may not start before; after each fragment, its
    /// end.
    pub producer_floor_ms: u64,
}

impl<'a, R: RecordLog> FragmentWriter<'a, R> {
    pub fn new(
        target: &'a IngestTarget<R>,
        metrics: &'a IngestMetrics,
        definition: &'a StreamDefinition,
        index: &'a StreamIndex,
        producer_floor_ms: u64,
    ) -> Self {
        Self {
            target,
            metrics,
            definition,
            index,
            fragmenter: Fragmenter::new(target.context.limits),
            anchor_ms: None,
            header: None,
            open_header: None,
            stored: 0,
            producer_floor_ms,
        }
    }

    /// The source's parameters changed (or became known); fragments opened from now on carry
    /// them.
    pub fn set_tracks(&mut self, tracks: &Tracks) {
        self.header = Some(Arc::new(Header {
            bytes: muxer::header(tracks),
            has_audio: tracks.audio.is_some(),
        }));
    }

    /// Whether the parameters are known (frames before them are dropped).
    pub fn has_tracks(&self) -> bool {
        self.header.is_some()
    }

    /// Takes the session's next frame; it is dropped (and counted) when no header can describe
    /// it.
    pub async fn push(&mut self, frame: Frame) -> Result<(), IngestError> {
        let Some(header) = &self.header else {
            // No SPS/PPS yet: nothing can describe this frame.
            self.metrics.frames_dropped(1);
            return Ok(());
        };
        let audio_declared =
            header.has_audio && self.open_header.as_ref().is_none_or(|open| open.has_audio);
        if frame.track == TrackKind::Audio && !audio_declared {
            self.metrics.frames_dropped(1);
            return Ok(());
        }
        let now_ms = (self.target.context.clock)();
        if self.anchor_ms.is_none() {
            let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
            let floor = i64::try_from(self.producer_floor_ms).unwrap_or(i64::MAX);
            self.anchor_ms = Some(now.max(floor) - frame.time_ms);
        }
        let was_open = self.fragmenter.is_open();
        match self.fragmenter.push(frame, now_ms) {
            Pushed::Added => {
                if !was_open {
                    self.open_header = self.header.clone();
                }
            }
            Pushed::Dropped => self.metrics.frames_dropped(1),
            Pushed::Cut(fragment) => {
                self.store(fragment).await?;
                self.open_header = self.header.clone();
            }
        }
        Ok(())
    }

    /// The session ended: what arrived before the end is stored, whatever ended it.
    pub async fn finish(&mut self) -> Result<(), IngestError> {
        match self.fragmenter.finish() {
            Some(fragment) => self.store(fragment).await,
            None => Ok(()),
        }
    }

    /// Stores a finished fragment exactly as PutMedia stores a Cluster.
    async fn store(&mut self, fragment: Fragment) -> Result<(), IngestError> {
        let header = self
            .open_header
            .clone()
            .expect("a fragment opens only once the header is known");
        let anchor_ms = self
            .anchor_ms
            .expect("the anchor is fixed at the first frame");
        let producer_ms = u64::try_from(anchor_ms + fragment.start_ms).unwrap_or(0);
        let cluster = muxer::cluster(
            producer_ms,
            fragment.frames.iter().map(|frame| Block {
                track_number: match frame.track {
                    TrackKind::Video => VIDEO_TRACK,
                    TrackKind::Audio => AUDIO_TRACK,
                },
                offset_ms: fragment.offset_ms(frame),
                keyframe: frame.keyframe,
                data: &frame.data,
            }),
        );
        let number = self.index.allocate(fragment.server_ms);
        let times = FragmentTimes {
            producer_ms,
            server_ms: fragment.server_ms,
            duration_ms: fragment.duration_ms,
        };
        fragments::store(
            &self.target.storage,
            self.definition,
            self.index,
            number,
            &header.bytes,
            &cluster,
            times,
        )
        .await?;
        self.stored += 1;
        self.metrics.fragment_stored(cluster.len());
        self.producer_floor_ms = self
            .producer_floor_ms
            .max(producer_ms + fragment.duration_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_errors_count_under_their_kind() {
        let stream = IngestError::Storage(FragmentError::Append(AppendError::StreamNotWritable {
            stream_name: "s".into(),
        }));
        assert_eq!(stream.error_type(), ErrorType::Stream);
        let missing = IngestError::StreamNotFound {
            stream_name: "s".into(),
        };
        assert_eq!(missing.error_type(), ErrorType::Stream);
    }
}
