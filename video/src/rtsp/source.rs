//! One RTSP source: connect, play, cut fragments, store them; on any failure, back off and
//! connect again, for as long as the server runs.
//!
//! Runs on the RTSP thread's tokio runtime (retina is tokio-based). Storage is reached only
//! through the narrow face: each fragment goes through `fragments::store`, PutMedia's own
//! store, whose appends travel to the shard core that owns the stream's internal stream and
//! return once durable; the fragment is then in the shared index, where GetMedia, ListFragments,
//! HLS and GetClip find it.
//!
//! Invariants:
//! - A session stores its fragments in order, one at a time; a fragment's number is allocated
//!   from the stream's index like PutMedia's (at the server time its first frame arrived).
//! - Producer timestamps are the server's wall clock at the session's first frame plus the
//!   camera's presentation times, and never go back across reconnects: a new session starts no
//!   earlier than the end of the last fragment stored from this source.
//! - The error that ended a session is counted once in `video_rtsp_errors_total`, and logged at
//!   WARN when it differs from the previous one (at DEBUG when it repeats), so a camera that
//!   stays down costs one line, not one per attempt.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt as _;
use retina::client::{
    InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions, Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use sluice_core::storage::{AppendError, RecordLog};

use super::fragmenter::{Fragment, Fragmenter, FragmenterLimits, Frame, Pushed, TrackKind};
use super::metrics::{ErrorType, SourceMetrics};
use super::muxer::{self, AUDIO_TRACK, AudioTrack, Block, Tracks, VIDEO_TRACK, VideoTrack};
use super::{RtspSource, StatusRequest};
use crate::fragments::{self, FragmentError, FragmentTimes, Indexes, StreamIndex};
use crate::media::Clock;
use crate::model::{StreamDefinition, StreamStatus, VideoStream};
use crate::registry::Registry;

/// DESCRIBE, SETUP and PLAY together must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A playing session with no frame for this long is broken (a camera sends 1 to 60 frames a
/// second; RTSP keepalives alone do not count).
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long core 0 may take to bring the stream's status up to date.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff: doubling from the first delay up to the last.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error(
        "video stream {stream_name} does not exist; create it (CreateStream) and RTSP ingest starts"
    )]
    StreamNotFound { stream_name: String },
    #[error("video stream {stream_name} is {status}")]
    StreamNotReady {
        stream_name: String,
        status: &'static str,
    },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} offers no H.264 video ({offered})")]
    NoVideo { url: String, offered: String },
    #[error("the RTSP session with {url} broke: {reason}")]
    Media { url: String, reason: String },
    #[error("cannot store a fragment: {0}")]
    Storage(#[from] FragmentError),
}

impl SessionError {
    const fn error_type(&self) -> ErrorType {
        match self {
            Self::StreamNotFound { .. } | Self::StreamNotReady { .. } => ErrorType::Stream,
            Self::Connect { .. } => ErrorType::Connect,
            Self::NoVideo { .. } => ErrorType::Unsupported,
            Self::Media { .. } => ErrorType::Media,
            Self::Storage(FragmentError::Append(
                AppendError::StreamNotWritable { .. } | AppendError::ShardNotFound { .. },
            )) => ErrorType::Stream,
            Self::Storage(_) => ErrorType::Storage,
        }
    }
}

/// Everything one source's task holds.
pub(crate) struct SourceContext<R> {
    pub source: RtspSource,
    pub storage: R,
    pub registry: Arc<Registry>,
    pub indexes: Arc<Indexes>,
    pub status: async_channel::Sender<StatusRequest>,
    pub metrics: Arc<SourceMetrics>,
    pub limits: FragmenterLimits,
    pub clock: Clock,
}

/// Pulls the source for ever.
pub(crate) async fn run<R: RecordLog>(context: SourceContext<R>) {
    let stream_name = context.source.stream_name.clone();
    let url = context.source.display_url();
    let mut delay = BACKOFF_MIN;
    let mut last_error: Option<String> = None;
    // The producer time the next session may not start before.
    let mut producer_floor_ms = 0u64;
    loop {
        let mut stored = 0u64;
        let outcome = match ready_stream(&context).await {
            Ok((definition, index)) => {
                session(
                    &context,
                    &definition,
                    &index,
                    &mut producer_floor_ms,
                    &mut stored,
                )
                .await
            }
            Err(error) => Err(error),
        };
        context.metrics.session_ended();
        // A session that stored anything was a working camera: the next attempt comes soon,
        // however the session ended.
        if stored > 0 {
            delay = BACKOFF_MIN;
        }
        match outcome {
            Ok(()) => {
                tracing::info!(stream = %stream_name, %url, fragments = stored, "The RTSP session ended; connecting again.");
                last_error = None;
            }
            Err(error) => {
                context.metrics.error(error.error_type());
                let text = error.to_string();
                if last_error.as_deref() == Some(text.as_str()) {
                    tracing::debug!(stream = %stream_name, %error, retry_in_ms = delay.as_millis() as u64, "RTSP ingest failed again.");
                } else {
                    tracing::warn!(stream = %stream_name, %error, retry_in_ms = delay.as_millis() as u64, "RTSP ingest failed; retrying with backoff.");
                }
                last_error = Some(text);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// The stream's definition and index, once it exists, is ACTIVE (or UPDATING) and its internal
/// stream is in line with it (core 0 refreshes it, as a data-plane call would).
async fn ready_stream<R: RecordLog>(
    context: &SourceContext<R>,
) -> Result<(StreamDefinition, Arc<StreamIndex>), SessionError> {
    let stream_name = &context.source.stream_name;
    let not_found = || SessionError::StreamNotFound {
        stream_name: stream_name.clone(),
    };
    let (reply, answer) = futures_channel::oneshot::channel();
    let asked = context
        .status
        .send(StatusRequest {
            stream_name: stream_name.clone(),
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
        return Err(SessionError::StreamNotReady {
            stream_name: stream_name.clone(),
            status: status.as_str(),
        });
    }
    let index = context.indexes.of(&definition);
    index.ensure_loaded(&context.storage, &definition).await?;
    Ok((definition, index))
}

/// Session milliseconds of an RTP timestamp, rounded to nearest.
fn session_ms(timestamp: retina::Timestamp) -> i64 {
    let rate = i128::from(timestamp.clock_rate().get());
    let ms = (i128::from(timestamp.elapsed()) * 1000 + rate / 2).div_euclid(rate);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The header of the camera's current parameters, when the video ones are known.
fn current_tracks(video: Option<ParametersRef<'_>>, audio: Option<&AudioTrack>) -> Option<Tracks> {
    let Some(ParametersRef::Video(video)) = video else {
        return None;
    };
    let (width, height) = video.pixel_dimensions();
    Some(Tracks {
        video: VideoTrack {
            avcc: video.extra_data().to_vec(),
            width,
            height,
        },
        audio: audio.cloned(),
    })
}

/// One RTSP session, from DESCRIBE to the end of the stream; `stored` counts the fragments it
/// stored, whatever ended it.
async fn session<R: RecordLog>(
    context: &SourceContext<R>,
    definition: &StreamDefinition,
    index: &StreamIndex,
    producer_floor_ms: &mut u64,
    stored: &mut u64,
) -> Result<(), SessionError> {
    let url = context.source.display_url();
    let connect_error = |reason: String| SessionError::Connect {
        url: url.clone(),
        reason,
    };
    let media_error = |reason: String| SessionError::Media {
        url: url.clone(),
        reason,
    };
    let connect = async {
        let options = SessionOptions::default()
            .creds(context.source.credentials())
            .user_agent(format!("sluice/{}", env!("CARGO_PKG_VERSION")));
        let mut described = Session::describe(context.source.url.clone(), options)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let streams = described.streams();
        let Some(video_i) = streams
            .iter()
            .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        else {
            let offered: Vec<String> = streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            return Err(SessionError::NoVideo {
                url: url.clone(),
                offered: offered.join(", "),
            });
        };
        // AAC (RFC 3640 `mpeg4-generic`) whose AudioSpecificConfig the SDP gives.
        let audio_i = streams.iter().position(|s| {
            s.media() == "audio"
                && s.encoding_name() == "mpeg4-generic"
                && matches!(s.parameters(), Some(ParametersRef::Audio(_)))
        });
        let setup = || {
            SetupOptions::default()
                .transport(Transport::default())
                .frame_format(FrameFormat::MP4)
        };
        described
            .setup(video_i, setup())
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        if let Some(audio_i) = audio_i {
            described
                .setup(audio_i, setup())
                .await
                .map_err(|e| connect_error(e.to_string()))?;
        }
        let playing = described
            .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let demuxed = playing
            .demuxed()
            .map_err(|e| connect_error(e.to_string()))?;
        Ok((demuxed, video_i, audio_i))
    };
    let (mut demuxed, video_i, audio_i) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
        connect_error(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
    })??;
    context.metrics.session_started();
    let audio = audio_i.and_then(|i| match demuxed.streams()[i].parameters() {
        Some(ParametersRef::Audio(parameters)) => Some(AudioTrack {
            audio_specific_config: parameters.extra_data().to_vec(),
            sample_rate: parameters.clock_rate(),
            channels: parameters.channels().get(),
        }),
        _ => None,
    });
    tracing::info!(
        stream = %definition.name,
        %url,
        audio = audio.is_some(),
        "RTSP session playing; storing fragments."
    );

    let mut fragmenter = Fragmenter::new(context.limits);
    let mut writer = FragmentWriter {
        context,
        definition,
        index,
        anchor_ms: None,
        header: None,
        open_header: None,
        stored,
        producer_floor_ms,
    };
    let ended = loop {
        let item = match tokio::time::timeout(FRAME_TIMEOUT, demuxed.next()).await {
            Err(_) => {
                break Err(media_error(format!(
                    "no frame for {} s",
                    FRAME_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => break Ok(()),
            Ok(Some(Err(error))) => break Err(media_error(error.to_string())),
            Ok(Some(Ok(item))) => item,
        };
        let frame = match item {
            CodecItem::VideoFrame(frame) if frame.stream_id() == video_i => {
                if frame.has_new_parameters() || writer.header.is_none() {
                    writer.header =
                        current_tracks(demuxed.streams()[video_i].parameters(), audio.as_ref())
                            .map(|tracks| Arc::new(muxer::header(&tracks)));
                }
                Frame {
                    track: TrackKind::Video,
                    time_ms: session_ms(frame.timestamp()),
                    keyframe: frame.is_random_access_point(),
                    data: frame.into_data(),
                }
            }
            CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == audio_i => Frame {
                track: TrackKind::Audio,
                time_ms: session_ms(frame.timestamp()),
                keyframe: true,
                data: frame.data().to_vec(),
            },
            _ => continue,
        };
        if let Err(error) = writer.push(&mut fragmenter, frame).await {
            break Err(error);
        }
    };
    // What arrived before the end is stored whatever ended the session.
    if let Some(fragment) = fragmenter.finish() {
        writer.store(fragment).await?;
    }
    ended
}

/// A session's state between the fragmenter and storage.
struct FragmentWriter<'a, R> {
    context: &'a SourceContext<R>,
    definition: &'a StreamDefinition,
    index: &'a StreamIndex,
    /// The producer time (epoch ms) of session time 0, fixed at the first frame.
    anchor_ms: Option<i64>,
    /// The header of the camera's current parameters (`None` until they are known).
    header: Option<Arc<Vec<u8>>>,
    /// The header of the open fragment: the parameters at its keyframe.
    open_header: Option<Arc<Vec<u8>>>,
    stored: &'a mut u64,
    producer_floor_ms: &'a mut u64,
}

impl<R: RecordLog> FragmentWriter<'_, R> {
    async fn push(
        &mut self,
        fragmenter: &mut Fragmenter,
        frame: Frame,
    ) -> Result<(), SessionError> {
        if self.header.is_none() {
            // No SPS/PPS yet: nothing can describe this frame.
            self.context.metrics.frames_dropped(1);
            return Ok(());
        }
        let now_ms = (self.context.clock)();
        if self.anchor_ms.is_none() {
            let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
            let floor = i64::try_from(*self.producer_floor_ms).unwrap_or(i64::MAX);
            self.anchor_ms = Some(now.max(floor) - frame.time_ms);
        }
        let was_open = fragmenter.is_open();
        match fragmenter.push(frame, now_ms) {
            Pushed::Added => {
                if !was_open {
                    self.open_header = self.header.clone();
                }
            }
            Pushed::Dropped => self.context.metrics.frames_dropped(1),
            Pushed::Cut(fragment) => {
                self.store(fragment).await?;
                self.open_header = self.header.clone();
            }
        }
        Ok(())
    }

    /// Stores a finished fragment exactly as PutMedia stores a Cluster.
    async fn store(&mut self, fragment: Fragment) -> Result<(), SessionError> {
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
            &self.context.storage,
            self.definition,
            self.index,
            number,
            &header,
            &cluster,
            times,
        )
        .await?;
        *self.stored += 1;
        self.context.metrics.fragment_stored(cluster.len());
        *self.producer_floor_ms = (*self.producer_floor_ms).max(producer_ms + fragment.duration_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_timestamps_become_session_milliseconds_rounded_to_nearest() {
        let rate = std::num::NonZeroU32::new(90_000).expect("non-zero");
        let at = |ticks: i64| {
            session_ms(retina::Timestamp::new(1_000 + ticks, rate, 1_000).expect("in range"))
        };
        assert_eq!(at(0), 0);
        assert_eq!(at(3_600), 40);
        assert_eq!(at(3_000), 33);
        assert_eq!(at(3_045), 34);
        let audio = std::num::NonZeroU32::new(48_000).expect("non-zero");
        assert_eq!(
            session_ms(retina::Timestamp::new(1_024, audio, 0).expect("in range")),
            21
        );
    }

    #[test]
    fn session_errors_count_under_their_kind() {
        let stream = SessionError::Storage(FragmentError::Append(AppendError::StreamNotWritable {
            stream_name: "s".into(),
        }));
        assert_eq!(stream.error_type(), ErrorType::Stream);
        let media = SessionError::Media {
            url: "rtsp://cam/".into(),
            reason: "eof".into(),
        };
        assert_eq!(media.error_type(), ErrorType::Media);
    }
}
