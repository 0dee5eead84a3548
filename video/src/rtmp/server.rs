//! The RTMP listener and its connections: handshake, commands, one publish, and its FLV tags
//! turned into frames for `ingest::FragmentWriter`.
//!
//! rml_rtmp does the protocol without I/O: bytes in, `ServerSessionResult`s out (bytes to send
//! back and events: connect and publish requests, video and audio tag bodies). This module owns
//! the sockets, the decisions (accept a connect; accept a publish only into an existing stream
//! nobody else feeds; refuse every play) and the media.
//!
//! Invariants:
//! - At most [`CONNECTIONS_MAX`] connections are served at once; more are closed on accept and
//!   counted.
//! - At most one publisher feeds a video stream at a time (the claim is released when its
//!   connection ends, however it ends).
//! - A connection with nothing to read for [`SILENCE_TIMEOUT`] is closed, so a publisher that
//!   vanished without a FIN does not hold its stream.
//! - Session times are the RTMP message timestamps (32-bit milliseconds, unwrapped) plus, for
//!   video, the composition offset: presentation times, as the fragmenter expects.
//! - Whatever ends a publish — an unpublish, a disconnect, an unsupported codec, a protocol
//!   error — the frames that arrived before it are stored, and the error is counted once in
//!   `video_rtmp_errors_total`.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use sluice_core::storage::RecordLog;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::chunk::{ChunkError, ChunkGuard};
use super::flv::{self, AudioTag, FlvError, VideoTag};
use crate::ingest::fragmenter::{Frame, TrackKind};
use crate::ingest::metrics::{ErrorType, IngestMetrics};
use crate::ingest::muxer::{AudioTrack, Tracks, VideoTrack};
use crate::ingest::{FragmentWriter, IngestError, IngestTarget, ready_stream};

/// How many connections are served at once.
const CONNECTIONS_MAX: usize = 64;
/// How many bytes one read takes from a socket.
const READ_BYTES: usize = 64 * 1024;
/// A connection with nothing to read for this long is closed (an encoder sends 1 to 60 frames
/// a second; the handshake and commands take milliseconds).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write to a publisher may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    #[error("the RTMP handshake failed: {0}")]
    Handshake(String),
    #[error("the RTMP session failed: {0}")]
    Protocol(#[from] ServerSessionError),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("nothing arrived for {} s", SILENCE_TIMEOUT.as_secs())]
    Silent,
    #[error("the publisher disconnected without unpublishing")]
    Disconnected,
    #[error("the client asked to play {stream_key:?}; this listener only takes publishes")]
    Play { stream_key: String },
    #[error("video stream {stream_name} already has an RTMP publisher")]
    Busy { stream_name: String },
    #[error("{stream_key:?} is not a valid video stream name")]
    BadStreamKey { stream_key: String },
    #[error("the RTMP chunk stream is refused: {0}")]
    Chunk(#[from] ChunkError),
    #[error(transparent)]
    Flv(#[from] FlvError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl ConnectionError {
    /// The `error_type` it counts under; `publishing` says whether a publish had been accepted.
    const fn error_type(&self, publishing: bool) -> ErrorType {
        match self {
            Self::Ingest(error) => error.error_type(),
            Self::Busy { .. } | Self::BadStreamKey { .. } => ErrorType::Stream,
            Self::Flv(FlvError::UnsupportedVideo { .. }) => ErrorType::Unsupported,
            Self::Handshake(_) | Self::Play { .. } => ErrorType::Connect,
            Self::Protocol(_)
            | Self::Chunk(_)
            | Self::Io(_)
            | Self::Silent
            | Self::Disconnected
            | Self::Flv(_) => {
                if publishing {
                    ErrorType::Media
                } else {
                    ErrorType::Connect
                }
            }
        }
    }
}

/// What every connection of the listener shares (all on the RTMP thread).
struct Listener<R> {
    target: IngestTarget<R>,
    metrics: Arc<IngestMetrics>,
    /// The video streams a publisher feeds now.
    publishing: RefCell<HashSet<String>>,
    connections: Cell<usize>,
}

/// A stream's one publisher, until dropped.
struct Claim<'a, R> {
    listener: &'a Listener<R>,
    stream_name: String,
}

impl<R> Drop for Claim<'_, R> {
    fn drop(&mut self) {
        let removed = self
            .listener
            .publishing
            .borrow_mut()
            .remove(&self.stream_name);
        assert!(
            removed,
            "a claimed stream stays claimed until its claim is dropped"
        );
    }
}

impl<R> Listener<R> {
    fn claim(&self, stream_name: &str) -> Option<Claim<'_, R>> {
        self.publishing
            .borrow_mut()
            .insert(stream_name.to_owned())
            .then(|| Claim {
                listener: self,
                stream_name: stream_name.to_owned(),
            })
    }
}

/// Serves `listener` for the server's life.
pub(super) async fn serve<R: RecordLog>(
    listener: std::net::TcpListener,
    target: IngestTarget<R>,
    metrics: Arc<IngestMetrics>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "RTMP ingest cannot use its listener; no publisher can connect.");
            return;
        }
    };
    let shared = Rc::new(Listener {
        target,
        metrics,
        publishing: RefCell::default(),
        connections: Cell::new(0),
    });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "An RTMP accept failed.");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if shared.connections.get() >= CONNECTIONS_MAX {
            shared.metrics.error(ErrorType::Connect);
            tracing::debug!(%peer, connections_max = CONNECTIONS_MAX, "RTMP connection refused: too many connections.");
            continue;
        }
        let _ = socket.set_nodelay(true);
        shared.connections.set(shared.connections.get() + 1);
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let mut publishing = false;
            let outcome = connection(&shared, socket, peer, &mut publishing).await;
            shared.connections.set(shared.connections.get() - 1);
            if let Err(error) = outcome {
                shared.metrics.error(error.error_type(publishing));
                if publishing {
                    tracing::warn!(%peer, %error, "An RTMP publish ended with an error.");
                } else {
                    tracing::warn!(%peer, %error, "RTMP connection refused.");
                }
            }
        });
    }
}

/// One connection: the handshake, the commands up to a publish, then the publish.
async fn connection<R: RecordLog>(
    listener: &Listener<R>,
    socket: TcpStream,
    peer: SocketAddr,
    publishing: &mut bool,
) -> Result<(), ConnectionError> {
    let Some(mut rtmp) = Rtmp::open(socket).await? else {
        // A port probe or health check: connected and closed without a byte.
        return Ok(());
    };
    let (stream_key, stream_name, definition, index, claim) = loop {
        match rtmp.next_event().await? {
            None => return Ok(()),
            Some(ServerSessionEvent::ConnectionRequested { request_id, .. }) => {
                let accepted = rtmp.session.accept_request(request_id);
                rtmp.answer(accepted).await?;
            }
            Some(ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            }) => {
                // Encoders append query parameters (`key?token=…`) to the stream key.
                let stream_name = stream_key
                    .split_once('?')
                    .map_or(stream_key.as_str(), |(name, _)| name)
                    .to_owned();
                let ready =
                    if crate::api::validate::check_stream_name(&stream_name, "stream").is_err() {
                        Err(ConnectionError::BadStreamKey {
                            stream_key: stream_key.clone(),
                        })
                    } else {
                        match ready_stream(&listener.target, &stream_name).await {
                            Ok((definition, index)) => match listener.claim(&stream_name) {
                                Some(claim) => Ok((definition, index, claim)),
                                None => Err(ConnectionError::Busy {
                                    stream_name: stream_name.clone(),
                                }),
                            },
                            Err(error) => Err(error.into()),
                        }
                    };
                match ready {
                    Ok((definition, index, claim)) => {
                        let accepted = rtmp.session.accept_request(request_id);
                        rtmp.answer(accepted).await?;
                        break (stream_key, stream_name, definition, index, claim);
                    }
                    Err(error) => {
                        let refused = rtmp.session.reject_request(
                            request_id,
                            "NetStream.Publish.BadName",
                            &error.to_string(),
                        );
                        // The publisher hears why when it can; the connection ends either way.
                        let _ = rtmp.answer(refused).await;
                        return Err(error);
                    }
                }
            }
            Some(ServerSessionEvent::PlayStreamRequested {
                request_id,
                stream_key,
                ..
            }) => {
                let refused = rtmp.session.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "this server takes RTMP publishes only",
                );
                let _ = rtmp.answer(refused).await;
                return Err(ConnectionError::Play { stream_key });
            }
            Some(_) => {}
        }
    };
    *publishing = true;
    let _connected = listener.metrics.session_started();
    // A new publish starts no earlier than the end of the stream's last fragment.
    let floor_ms = index
        .entries_from(index.len().saturating_sub(1), 1)
        .first()
        .map_or(0, |last| last.producer_ms + last.duration_ms);
    let mut writer = FragmentWriter::new(
        &listener.target,
        &listener.metrics,
        &definition,
        &index,
        floor_ms,
    );
    tracing::info!(stream = %stream_name, %peer, "RTMP publisher connected; storing fragments.");
    let ended = publish(&mut rtmp, &mut writer, &listener.metrics).await;
    // What arrived before the end is stored whatever ended the publish.
    let finished = writer.finish().await;
    drop(claim);
    tracing::info!(stream = %stream_name, %peer, %stream_key, fragments = writer.stored, "RTMP publish ended.");
    finished?;
    ended
}

/// A publish's media, until it is unpublished or the connection ends.
async fn publish<R: RecordLog>(
    rtmp: &mut Rtmp,
    writer: &mut FragmentWriter<'_, R>,
    metrics: &IngestMetrics,
) -> Result<(), ConnectionError> {
    let mut video: Option<VideoTrack> = None;
    let mut audio: Option<AudioTrack> = None;
    let mut clock = SessionClock::default();
    let mut unsupported_audio_logged = false;
    loop {
        let (frame, new_video, new_audio) = match rtmp.next_event().await? {
            None => return Err(ConnectionError::Disconnected),
            Some(ServerSessionEvent::PublishStreamFinished { .. }) => return Ok(()),
            Some(ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            }) => {
                let dts_ms = clock.session_ms(timestamp.value);
                match flv::video_tag(&data)? {
                    VideoTag::AvcConfig(config) => (None, Some(flv::video_track(config)?), None),
                    VideoTag::AvcFrame {
                        keyframe,
                        composition_ms,
                        data,
                    } => (
                        Some(Frame {
                            track: TrackKind::Video,
                            time_ms: dts_ms + i64::from(composition_ms),
                            keyframe,
                            data: data.to_vec(),
                        }),
                        None,
                        None,
                    ),
                    VideoTag::Skip => continue,
                }
            }
            Some(ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            }) => {
                let dts_ms = clock.session_ms(timestamp.value);
                match flv::audio_tag(&data)? {
                    AudioTag::AacConfig(config) => (None, None, Some(flv::audio_track(config)?)),
                    AudioTag::AacFrame(data) => (
                        Some(Frame {
                            track: TrackKind::Audio,
                            time_ms: dts_ms,
                            keyframe: true,
                            data: data.to_vec(),
                        }),
                        None,
                        None,
                    ),
                    AudioTag::Unsupported(format) => {
                        if !unsupported_audio_logged {
                            unsupported_audio_logged = true;
                            tracing::warn!(
                                format,
                                "RTMP audio is not AAC; only the video is stored."
                            );
                        }
                        metrics.frames_dropped(1);
                        continue;
                    }
                }
            }
            Some(_) => continue,
        };
        let changed = (new_video.is_some() && new_video != video)
            || (new_audio.is_some() && new_audio != audio);
        video = new_video.or(video);
        audio = new_audio.or(audio);
        if changed && let Some(video) = &video {
            writer.set_tracks(&Tracks {
                video: video.clone(),
                audio: audio.clone(),
            });
        }
        if let Some(frame) = frame {
            writer.push(frame).await?;
        }
    }
}

/// RTMP message timestamps as session milliseconds: 32-bit and wrapping every 49.7 days, so each
/// is taken as the nearest value to the one before (audio and video interleave slightly out of
/// order, never by anything near 2^31 ms).
#[derive(Debug, Default)]
struct SessionClock {
    last: Option<(u32, i64)>,
}

impl SessionClock {
    fn session_ms(&mut self, raw: u32) -> i64 {
        let ms = match self.last {
            None => i64::from(raw),
            Some((last_raw, last_ms)) => last_ms + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.last = Some((raw, ms));
        ms
    }
}

/// One RTMP connection after its handshake: the socket, rml_rtmp's session, and the results it
/// produced that are not handled yet.
struct Rtmp {
    socket: TcpStream,
    /// Sees every byte before `session` does (see `chunk`: rml_rtmp panics on some input).
    guard: ChunkGuard,
    session: ServerSession,
    pending: VecDeque<ServerSessionResult>,
    buffer: Vec<u8>,
}

impl Rtmp {
    /// Does the handshake on `socket` and starts the session; `None` when the client closed the
    /// connection without sending a byte.
    async fn open(mut socket: TcpStream) -> Result<Option<Self>, ConnectionError> {
        let mut buffer = vec![0; READ_BYTES];
        let mut handshake = Handshake::new(PeerType::Server);
        let mut received = 0;
        let remaining = loop {
            let read = read(&mut socket, &mut buffer).await?;
            if read == 0 && received == 0 {
                return Ok(None);
            }
            if read == 0 {
                return Err(ConnectionError::Handshake(
                    "the client closed the connection".to_owned(),
                ));
            }
            received += read;
            match handshake
                .process_bytes(&buffer[..read])
                .map_err(|error| ConnectionError::Handshake(error.to_string()))?
            {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    write(&mut socket, &response_bytes).await?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    write(&mut socket, &response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (session, results) = ServerSession::new(ServerSessionConfig::new())?;
        let mut rtmp = Self {
            socket,
            guard: ChunkGuard::default(),
            session,
            pending: results.into(),
            buffer,
        };
        rtmp.guard.check(&remaining)?;
        let more = rtmp.session.handle_input(&remaining)?;
        rtmp.pending.extend(more);
        Ok(Some(rtmp))
    }

    /// The next event, after sending every response before it; `None` once the client closed
    /// the connection.
    async fn next_event(&mut self) -> Result<Option<ServerSessionEvent>, ConnectionError> {
        loop {
            while let Some(result) = self.pending.pop_front() {
                match result {
                    ServerSessionResult::OutboundResponse(packet) => {
                        write(&mut self.socket, &packet.bytes).await?;
                    }
                    ServerSessionResult::RaisedEvent(event) => return Ok(Some(event)),
                    ServerSessionResult::UnhandleableMessageReceived(_) => {}
                }
            }
            let read = read(&mut self.socket, &mut self.buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            self.guard.check(&self.buffer[..read])?;
            let results = self.session.handle_input(&self.buffer[..read])?;
            self.pending.extend(results);
        }
    }

    /// Sends the responses of an accept or reject now; any events it raised come next.
    async fn answer(
        &mut self,
        results: Result<Vec<ServerSessionResult>, ServerSessionError>,
    ) -> Result<(), ConnectionError> {
        let mut events = Vec::new();
        for result in results? {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    write(&mut self.socket, &packet.bytes).await?;
                }
                event @ ServerSessionResult::RaisedEvent(_) => events.push(event),
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        for event in events.into_iter().rev() {
            self.pending.push_front(event);
        }
        Ok(())
    }
}

async fn read(socket: &mut TcpStream, buffer: &mut [u8]) -> Result<usize, ConnectionError> {
    match tokio::time::timeout(SILENCE_TIMEOUT, socket.read(buffer)).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(ConnectionError::Silent),
    }
}

async fn write(socket: &mut TcpStream, bytes: &[u8]) -> Result<(), ConnectionError> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(bytes)).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the publisher did not read for 10 s",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use rml_rtmp::sessions::{
        ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult,
        PublishRequestType,
    };
    use rml_rtmp::time::RtmpTimestamp;

    use super::*;

    /// Feeds `bytes` to a server session that accepts every request; answers the bytes it sends
    /// back and the video tag bodies it raised, or where it failed.
    fn serve_bytes(
        server: &mut ServerSession,
        bytes: &[u8],
    ) -> Result<(Vec<u8>, Vec<Vec<u8>>), ServerSessionError> {
        let mut out = Vec::new();
        let mut videos = Vec::new();
        let mut pending: VecDeque<ServerSessionResult> = server.handle_input(bytes)?.into();
        while let Some(result) = pending.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => out.extend(packet.bytes),
                ServerSessionResult::RaisedEvent(
                    ServerSessionEvent::ConnectionRequested { request_id, .. }
                    | ServerSessionEvent::PublishStreamRequested { request_id, .. },
                ) => pending.extend(server.accept_request(request_id)?),
                ServerSessionResult::RaisedEvent(ServerSessionEvent::VideoDataReceived {
                    data,
                    ..
                }) => videos.push(data.to_vec()),
                _ => {}
            }
        }
        Ok((out, videos))
    }

    /// What a publisher sends after the handshake, in the pieces it sends them (each after the
    /// answer to the one before): connect, createStream and publish (rml_rtmp's own client,
    /// answered by its server session), then `tags` video tags.
    fn publisher_pieces(tags: u8) -> Vec<Vec<u8>> {
        let (mut server, initial) =
            ServerSession::new(ServerSessionConfig::new()).expect("a server session starts");
        let (mut client, _) =
            ClientSession::new(ClientSessionConfig::new()).expect("a client session starts");
        let mut to_client: Vec<u8> = initial
            .into_iter()
            .filter_map(|r| match r {
                ServerSessionResult::OutboundResponse(packet) => Some(packet.bytes),
                _ => None,
            })
            .flatten()
            .collect();
        let outbound = |result: ClientSessionResult| match result {
            ClientSessionResult::OutboundResponse(packet) => packet.bytes,
            _ => Vec::new(),
        };
        let mut sent = Vec::new();
        let mut to_server = outbound(
            client
                .request_connection("live".to_owned())
                .expect("connect request"),
        );
        while !to_server.is_empty() {
            sent.push(to_server.clone());
            let (answer, _) = serve_bytes(&mut server, &to_server).expect("the server takes it");
            to_server = Vec::new();
            to_client.extend(answer);
            for result in client
                .handle_input(&to_client)
                .expect("the client takes it")
            {
                match result {
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::ConnectionRequestAccepted,
                    ) => {
                        to_server.extend(outbound(
                            client
                                .request_publishing("cam".to_owned(), PublishRequestType::Live)
                                .expect("publish request"),
                        ));
                    }
                    ClientSessionResult::RaisedEvent(
                        ClientSessionEvent::PublishRequestAccepted,
                    ) => {
                        for tag in 0..tags {
                            let body = [0x17, 1, 0, 0, 0, 0, 0, 0, 1, tag];
                            to_server.extend(outbound(
                                client
                                    .publish_video_data(
                                        bytes::Bytes::copy_from_slice(&body),
                                        RtmpTimestamp::new(u32::from(tag) * 40),
                                        false,
                                    )
                                    .expect("video data"),
                            ));
                        }
                    }
                    other => to_server.extend(outbound(other)),
                }
            }
            to_client.clear();
        }
        sent
    }

    #[test]
    fn a_publish_through_rml_rtmp_raises_every_video_tag_sent() {
        let (mut server, _) = ServerSession::new(ServerSessionConfig::new()).expect("starts");
        let mut videos = Vec::new();
        for piece in publisher_pieces(5) {
            videos.extend(serve_bytes(&mut server, &piece).expect("a valid publish").1);
        }
        let tags: Vec<u8> = videos.iter().map(|v| v[9]).collect();
        assert_eq!(tags, [0, 1, 2, 3, 4]);
        assert_eq!(
            flv::video_tag(&videos[0])
                .map(|tag| matches!(tag, VideoTag::AvcFrame { keyframe: true, .. })),
            Ok(true)
        );
    }

    /// xorshift32: the tests' deterministic randomness.
    fn next(seed: &mut u32) -> u32 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 17;
        *seed ^= *seed << 5;
        *seed
    }

    /// The server session parses what any client on the network sends, and a release build
    /// aborts on a panic: corrupted publishes, fed in random pieces through the chunk guard as a
    /// connection feeds them, must end in an error or in events, never in a panic. (Without the
    /// guard, rml_rtmp 0.8 panics within the first few hundred seeds.)
    #[test]
    fn corrupted_publishes_never_panic_the_server_session_behind_the_guard() {
        let valid: Vec<u8> = publisher_pieces(20).concat();
        let mut refused = 0;
        for seed in 1..=3_000u32 {
            let mut seed = seed.wrapping_mul(2_654_435_761);
            let mut bytes = valid.clone();
            let flips = 1 + next(&mut seed) % 8;
            for _ in 0..flips {
                let at = next(&mut seed) as usize % bytes.len();
                bytes[at] = next(&mut seed) as u8;
            }
            let (mut server, _) = ServerSession::new(ServerSessionConfig::new()).expect("starts");
            let mut guard = ChunkGuard::default();
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let take = (1 + next(&mut seed) as usize % 512).min(rest.len());
                if guard.check(&rest[..take]).is_err() {
                    refused += 1;
                    break;
                }
                if serve_bytes(&mut server, &rest[..take]).is_err() {
                    break;
                }
                rest = &rest[take..];
            }
        }
        // The guard refuses some corruptions and lets rml_rtmp refuse or ignore the others.
        assert!(refused > 0);
        assert!(refused < 3_000);
    }

    #[test]
    fn random_bytes_end_the_handshake_with_an_error_not_a_panic() {
        for seed in 1..=200u32 {
            let mut seed = seed.wrapping_mul(2_654_435_761);
            let mut handshake = Handshake::new(PeerType::Server);
            let mut bytes: Vec<u8> = (0..4_000).map(|_| next(&mut seed) as u8).collect();
            bytes[0] = 3;
            for piece in bytes.chunks(1 + seed as usize % 700) {
                if handshake.process_bytes(piece).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn message_timestamps_unwrap_across_the_32_bit_boundary_and_small_reorderings() {
        let mut clock = SessionClock::default();
        assert_eq!(clock.session_ms(0), 0);
        assert_eq!(clock.session_ms(40), 40);
        // Audio a little behind the video before it.
        assert_eq!(clock.session_ms(21), 21);
        let mut late = SessionClock::default();
        assert_eq!(late.session_ms(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(late.session_ms(29), i64::from(u32::MAX) + 30);
    }

    #[test]
    fn connection_errors_count_as_connect_before_a_publish_and_media_after() {
        assert_eq!(
            ConnectionError::Silent.error_type(false),
            ErrorType::Connect
        );
        assert_eq!(ConnectionError::Silent.error_type(true), ErrorType::Media);
        assert_eq!(
            ConnectionError::Disconnected.error_type(true),
            ErrorType::Media
        );
        let h265 = ConnectionError::Flv(FlvError::UnsupportedVideo {
            codec: "H.265".into(),
        });
        assert_eq!(h265.error_type(true), ErrorType::Unsupported);
        let unknown = ConnectionError::Ingest(IngestError::StreamNotFound {
            stream_name: "s".into(),
        });
        assert_eq!(unknown.error_type(false), ErrorType::Stream);
    }
}
