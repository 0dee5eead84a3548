//! One RTSP source: connect, play, cut fragments, store them; on any failure, back off and
//! connect again, for as long as the server runs.
//!
//! Runs on the RTSP thread's tokio runtime (retina is tokio-based). Frames go through
//! `ingest::FragmentWriter`, which stores each fragment with `fragments::store`, PutMedia's own
//! store (see `ingest` for the invariants of numbers, headers and producer timestamps).
//!
//! Invariants:
//! - Producer timestamps never go back across reconnects: a new session starts no earlier than
//!   the end of the last fragment stored from this source.
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
use sluice_core::storage::RecordLog;

use super::RtspSource;
use crate::fragments::StreamIndex;
use crate::ingest::fragmenter::{Frame, TrackKind};
use crate::ingest::metrics::{ErrorType, IngestMetrics};
use crate::ingest::muxer::{AudioTrack, Tracks, VideoTrack};
use crate::ingest::{FragmentWriter, IngestError, IngestTarget, ready_stream};
use crate::model::StreamDefinition;

/// DESCRIBE, SETUP and PLAY together must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A playing session with no frame for this long is broken (a camera sends 1 to 60 frames a
/// second; RTSP keepalives alone do not count).
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff: doubling from the first delay up to the last.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} offers no H.264 video ({offered})")]
    NoVideo { url: String, offered: String },
    #[error("the RTSP session with {url} broke: {reason}")]
    Media { url: String, reason: String },
}

impl SessionError {
    const fn error_type(&self) -> ErrorType {
        match self {
            Self::Ingest(error) => error.error_type(),
            Self::Connect { .. } => ErrorType::Connect,
            Self::NoVideo { .. } => ErrorType::Unsupported,
            Self::Media { .. } => ErrorType::Media,
        }
    }
}

/// Everything one source's task holds.
pub(crate) struct SourceContext<R> {
    pub source: RtspSource,
    pub target: IngestTarget<R>,
    pub metrics: Arc<IngestMetrics>,
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
        let outcome = match ready_stream(&context.target, &stream_name).await {
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
            Err(error) => Err(error.into()),
        };
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
    let _connected = context.metrics.session_started();
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

    let mut writer = FragmentWriter::new(
        &context.target,
        &context.metrics,
        definition,
        index,
        *producer_floor_ms,
    );
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
                if (frame.has_new_parameters() || !writer.has_tracks())
                    && let Some(tracks) =
                        current_tracks(demuxed.streams()[video_i].parameters(), audio.as_ref())
                {
                    writer.set_tracks(&tracks);
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
        if let Err(error) = writer.push(frame).await {
            break Err(error.into());
        }
    };
    // What arrived before the end is stored whatever ended the session.
    let finished = writer.finish().await;
    *stored += writer.stored;
    *producer_floor_ms = writer.producer_floor_ms;
    finished?;
    ended
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
        let stream = SessionError::Ingest(IngestError::StreamNotFound {
            stream_name: "s".into(),
        });
        assert_eq!(stream.error_type(), ErrorType::Stream);
        let media = SessionError::Media {
            url: "rtsp://cam/".into(),
            reason: "eof".into(),
        };
        assert_eq!(media.error_type(), ErrorType::Media);
    }
}
