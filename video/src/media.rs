//! The media data plane over stored fragments: PutMedia's ingest loop and its acknowledgement
//! stream, GetMedia and GetMediaForFragmentList chunks, and ListFragments.
//!
//! These functions take a resolved stream (its definition and fragment index) and the storage
//! face; resolving names, authentication and HTTP framing are the service's (`service`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{Stream, StreamExt as _};
use sluice_core::storage::{AppendError, RecordLog};

use crate::fragments::{self, FragmentError, FragmentTimes, StoredFragment, StreamIndex};
use crate::limits::{PutMediaPacing, Rate, TokenBucket};
use crate::mkv::{self, MkvEvent, MkvReader};
use crate::model::{FragmentEntry, StreamDefinition};

/// A timer: a future that completes after the duration (the server passes its runtime's).
pub type Sleep = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// A wall clock in epoch milliseconds (passed in so tests can fix it).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// AWS's PutMedia limits, and how long a silent session lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutMediaLimits {
    /// A fragment (Cluster) larger than this is refused with ErrorId 4001 (AWS: 50 MB).
    pub fragment_bytes_max: u64,
    /// A fragment longer than this is refused with ErrorId 4002 (AWS: 10 s).
    pub fragment_duration_ms_max: u64,
    /// IDLE is sent after this long without data.
    pub idle_event_interval: Duration,
    /// The session ends after this long without data (AWS: 30 s).
    pub silence_max: Duration,
}

impl Default for PutMediaLimits {
    fn default() -> Self {
        Self {
            fragment_bytes_max: 50 * 1000 * 1000,
            fragment_duration_ms_max: 10_000,
            idle_event_interval: Duration::from_secs(3),
            silence_max: Duration::from_secs(30),
        }
    }
}

/// The ErrorId of a PutMedia connection open longer than AWS allows
/// (MAX_CONNECTION_DURATION_REACHED).
pub const ERROR_ID_CONNECTION_DURATION: u32 = 4003;

/// `x-amzn-fragment-timecode-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimecodeType {
    /// Cluster timecodes are producer timestamps.
    Absolute,
    /// Cluster timecodes count from `x-amzn-producer-start-timestamp`.
    Relative,
}

/// The request headers of a PutMedia session, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutMediaOptions {
    pub timecode_type: TimecodeType,
    /// `x-amzn-producer-start-timestamp`, epoch milliseconds.
    pub producer_start_ms: Option<u64>,
    /// `x-amzn-fragment-acknowledgment-required: 1` (the default): BUFFERING, RECEIVED and
    /// PERSISTED are sent; otherwise only ERROR and IDLE.
    pub acks: bool,
}

/// An acknowledgement event of PutMedia's response stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckEvent {
    Buffering,
    Received,
    Persisted,
    Error,
    Idle,
}

impl AckEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Buffering => "BUFFERING",
            Self::Received => "RECEIVED",
            Self::Persisted => "PERSISTED",
            Self::Error => "ERROR",
            Self::Idle => "IDLE",
        }
    }
}

/// The `ErrorCode` AWS sends beside an ErrorId (the producer SDKs' names for them), for the
/// ErrorIds this service sends.
pub const fn error_code(error_id: u32) -> Option<&'static str> {
    Some(match error_id {
        4000 => "STREAM_READ_ERROR",
        4001 => "MAX_FRAGMENT_SIZE_REACHED",
        4002 => "MAX_FRAGMENT_DURATION_REACHED",
        ERROR_ID_CONNECTION_DURATION => "MAX_CONNECTION_DURATION_REACHED",
        4004 => "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
        4006 => "INVALID_MKV_DATA",
        4007 => "INVALID_PRODUCER_TIMESTAMP",
        4008 => "STREAM_NOT_ACTIVE",
        4010 => "TRACK_NUMBER_MISMATCH",
        4011 => "FRAMES_MISSING_FOR_TRACK",
        4012 => "MORE_THAN_ALLOWED_TRACKS_FOUND",
        5000 => "INTERNAL_ERROR",
        5001 => "ARCHIVAL_ERROR",
        _ => return None,
    })
}

/// One line of the acknowledgement stream. An ERROR carries both `ErrorCode` and `ErrorId`, as
/// AWS's do (`{"EventType":"ERROR",…,"ErrorCode":"MAX_FRAGMENT_DURATION_REACHED","ErrorId":4002}`).
pub fn ack_line(
    event: AckEvent,
    fragment_timecode: Option<u64>,
    fragment_number: Option<&str>,
    error_id: Option<u32>,
) -> Bytes {
    let mut out = format!(r#"{{"EventType":"{}""#, event.as_str());
    if let Some(timecode) = fragment_timecode {
        out.push_str(&format!(r#","FragmentTimecode":{timecode}"#));
    }
    if let Some(number) = fragment_number {
        out.push_str(&format!(r#","FragmentNumber":"{number}""#));
    }
    if let Some(id) = error_id {
        if let Some(code) = error_code(id) {
            out.push_str(&format!(r#","ErrorCode":"{code}""#));
        }
        out.push_str(&format!(r#","ErrorId":{id}"#));
    }
    out.push_str("}\n");
    Bytes::from(out)
}

/// The fragment being received.
#[derive(Debug)]
struct Pending {
    number: u128,
    timecode: u64,
    server_ms: u64,
}

/// How a PutMedia session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestSummary {
    pub persisted: u64,
    pub rejected: u64,
    /// The ErrorId that ended the session early, if any.
    pub ended_by: Option<u32>,
}

/// Runs one PutMedia session: reads `body` as it arrives, stores each complete Cluster as a
/// fragment, and sends the acknowledgement lines to `acks` (the response body). Returns when the
/// body ends, when the stream can no longer be read or stored, after `limits.silence_max`
/// without data, or once the session has been open for `pacing.connection_duration` (ErrorId
/// 4003). Reading waits whenever the session's bandwidth or the stream's fragment rate is spent
/// (`pacing`), so a fast producer is slowed down by TCP rather than refused. Dropping the `acks`
/// receiver (the client went away) does not stop storing what arrives.
#[expect(clippy::too_many_arguments, reason = "one session's whole context")]
pub async fn ingest<R, B>(
    storage: R,
    definition: StreamDefinition,
    index: Arc<StreamIndex>,
    options: PutMediaOptions,
    limits: PutMediaLimits,
    pacing: PutMediaPacing,
    mut body: B,
    acks: async_channel::Sender<Bytes>,
    sleep: Sleep,
    clock: Clock,
) -> IngestSummary
where
    R: RecordLog,
    B: Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut summary = IngestSummary {
        persisted: 0,
        rejected: 0,
        ended_by: None,
    };
    let send = |line: Bytes| {
        let acks = acks.clone();
        async move {
            // A client that stopped reading acks still gets its fragments stored.
            let _ = acks.send(line).await;
        }
    };
    if let Err(error) = index.ensure_loaded(&storage, &definition).await {
        tracing::warn!(%error, stream = %definition.name, "Loading a video stream's fragment index failed.");
        send(ack_line(AckEvent::Error, None, None, Some(5000))).await;
        summary.ended_by = Some(5000);
        return summary;
    }
    let mut reader = MkvReader::new(limits.fragment_bytes_max);
    let mut session = Session {
        storage: &storage,
        definition: &definition,
        index: &index,
        options,
        limits,
        header: None,
        pending: None,
        last_end: None,
        tracks_with_frames: std::collections::BTreeSet::new(),
        summary,
        send,
        clock,
    };
    let mut silent = Duration::ZERO;
    let opened_ms = (session.clock)();
    let deadline_ms = pacing
        .connection_duration
        .map(|d| opened_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let mut bandwidth = pacing
        .bytes_per_second
        .map(|rate| TokenBucket::new(Rate::per_second(rate), opened_ms));
    loop {
        let now_ms = (session.clock)();
        if deadline_ms.is_some_and(|deadline| now_ms >= deadline) {
            // AWS rejects the fragment in progress and ends the connection.
            let pending = session.pending.take();
            let number = pending.as_ref().map(|p| p.number.to_string());
            (session.send)(ack_line(
                AckEvent::Error,
                pending.as_ref().map(|p| p.timecode),
                number.as_deref(),
                Some(ERROR_ID_CONNECTION_DURATION),
            ))
            .await;
            if pending.is_some() {
                session.summary.rejected += 1;
            }
            session.summary.ended_by = Some(ERROR_ID_CONNECTION_DURATION);
            break;
        }
        // Wake at the deadline too (a millisecond late, so that it has passed).
        let wait = deadline_ms.map_or(limits.idle_event_interval, |deadline| {
            limits
                .idle_event_interval
                .min(Duration::from_millis(deadline - now_ms + 1))
        });
        let next = futures_lite::future::or(async { Some(body.next().await) }, async {
            sleep(wait).await;
            None
        })
        .await;
        let chunk = match next {
            None if deadline_ms.is_some_and(|deadline| (session.clock)() >= deadline) => continue,
            None => {
                silent += wait;
                if silent >= limits.silence_max {
                    break;
                }
                (session.send)(ack_line(AckEvent::Idle, None, None, None)).await;
                continue;
            }
            Some(None) => {
                // The body ended: an unknown-size cluster still open ends with it.
                match reader.finish() {
                    Ok(events) => {
                        session.handle_events(events).await;
                    }
                    Err(_) if reader.at_boundary() => {}
                    Err(error) => {
                        let timecode = session.pending.as_ref().map(|p| p.timecode);
                        (session.send)(ack_line(AckEvent::Error, timecode, None, Some(4000))).await;
                        tracing::debug!(%error, "A PutMedia body ended inside an element.");
                        session.summary.ended_by = Some(4000);
                    }
                }
                break;
            }
            Some(Some(Err(error))) => {
                tracing::debug!(%error, "Reading a PutMedia body failed.");
                let timecode = session.pending.as_ref().map(|p| p.timecode);
                (session.send)(ack_line(AckEvent::Error, timecode, None, Some(4000))).await;
                session.summary.ended_by = Some(4000);
                break;
            }
            Some(Some(Ok(chunk))) => chunk,
        };
        silent = Duration::ZERO;
        match reader.push(&chunk) {
            Ok(events) => {
                let started = events
                    .iter()
                    .filter(|e| matches!(e, MkvEvent::ClusterStarted { .. }))
                    .count() as u64;
                let stop = session.handle_events(events).await;
                if stop {
                    break;
                }
                // Back-pressure: the next read waits until this chunk fits the session's
                // bandwidth and its new fragments fit the stream's fragment rate.
                let now_ms = (session.clock)();
                let mut pause = bandwidth
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.reserve(chunk.len() as u64, now_ms));
                if let Some(fragments) = &pacing.fragments {
                    pause = pause.max(fragments.reserve(started, now_ms));
                }
                if !pause.is_zero() {
                    sleep(pause).await;
                }
            }
            Err(error) => {
                let timecode = session.pending.as_ref().map(|p| p.timecode);
                let id = error.error_id();
                tracing::debug!(%error, id, "A PutMedia body is not valid MKV.");
                (session.send)(ack_line(AckEvent::Error, timecode, None, Some(id))).await;
                session.summary.ended_by = Some(id);
                session.summary.rejected += 1;
                break;
            }
        }
    }
    session.summary
}

/// One PutMedia session's context and state.
struct Session<'a, R, S> {
    storage: &'a R,
    definition: &'a StreamDefinition,
    index: &'a StreamIndex,
    options: PutMediaOptions,
    limits: PutMediaLimits,
    header: Option<mkv::Header>,
    pending: Option<Pending>,
    /// The end of the last accepted fragment, in TimecodeScale units (absolute producer time).
    last_end: Option<i128>,
    /// The tracks that had a frame in an accepted fragment of this session.
    tracks_with_frames: std::collections::BTreeSet<u64>,
    summary: IngestSummary,
    send: S,
    clock: Clock,
}

impl<R: RecordLog, S: Fn(Bytes) -> F, F: Future<Output = ()>> Session<'_, R, S> {
    /// Acts on what the reader found; `true` when the session must end.
    async fn handle_events(&mut self, events: Vec<MkvEvent>) -> bool {
        let Self {
            storage,
            definition,
            index,
            options,
            limits,
            header,
            pending,
            last_end,
            tracks_with_frames,
            summary,
            send,
            clock,
        } = self;
        let (storage, definition, index): (&R, &StreamDefinition, &StreamIndex) =
            (*storage, *definition, *index);
        for event in events {
            match event {
                MkvEvent::Header(new) => *header = Some(new),
                MkvEvent::ClusterStarted { timecode } => {
                    let server_ms = clock();
                    let number = index.allocate(server_ms);
                    if options.acks {
                        send(ack_line(
                            AckEvent::Buffering,
                            Some(timecode),
                            Some(&number.to_string()),
                            None,
                        ))
                        .await;
                    }
                    *pending = Some(Pending {
                        number,
                        timecode,
                        server_ms,
                    });
                }
                MkvEvent::Cluster(cluster) => {
                    let Some(header) = header.as_ref() else {
                        return true;
                    };
                    let Some(started) = pending.take() else {
                        return true;
                    };
                    let number_text = started.number.to_string();
                    let error = |id: u32| {
                        ack_line(
                            AckEvent::Error,
                            Some(started.timecode),
                            Some(&number_text),
                            Some(id),
                        )
                    };
                    let scale = i128::from(header.timecode_scale_ns);
                    let to_ms = |units: i128| -> i128 { units * scale / 1_000_000 };
                    let declared: Vec<u64> = header.tracks.iter().map(|t| t.number).collect();
                    let check = if cluster.tracks_seen.iter().any(|t| !declared.contains(t)) {
                        Err(4010)
                    } else if declared.iter().any(|t| {
                        !cluster.tracks_seen.contains(t) && !tracks_with_frames.contains(t)
                    }) {
                        // A declared track that has had no frame in the session yet. (A fragment
                        // without one track, such as the audio a muxer flushes after the last video
                        // frame, is taken.)
                        Err(4011)
                    } else if last_end.is_some_and(|end| i128::from(cluster.first_block) < end) {
                        Err(4004)
                    } else {
                        Ok(())
                    };
                    let duration_units =
                        i128::from(cluster.last_block - cluster.first_block + cluster.frame_gap);
                    let duration_ms = u64::try_from(to_ms(duration_units)).unwrap_or(0);
                    let check = check.and_then(|()| {
                        (duration_ms <= limits.fragment_duration_ms_max)
                            .then_some(())
                            .ok_or(4002)
                    });
                    let start_ms = to_ms(i128::from(cluster.first_block).max(0));
                    let producer_ms = match options.timecode_type {
                        TimecodeType::Absolute => u64::try_from(start_ms).ok(),
                        TimecodeType::Relative => options
                            .producer_start_ms
                            .and_then(|start| u64::try_from(i128::from(start) + start_ms).ok()),
                    };
                    let check = check.and_then(|()| producer_ms.ok_or(4007));
                    let producer_ms = match check {
                        Ok(ms) => ms,
                        Err(id) => {
                            summary.rejected += 1;
                            send(error(id)).await;
                            continue;
                        }
                    };
                    *last_end = Some(i128::from(cluster.last_block));
                    tracks_with_frames.extend(cluster.tracks_seen.iter().copied());
                    if options.acks {
                        send(ack_line(
                            AckEvent::Received,
                            Some(started.timecode),
                            Some(&number_text),
                            None,
                        ))
                        .await;
                    }
                    let times = FragmentTimes {
                        producer_ms,
                        server_ms: started.server_ms,
                        duration_ms,
                    };
                    match fragments::store(
                        storage,
                        definition,
                        index,
                        started.number,
                        &header.bytes,
                        &cluster.bytes,
                        times,
                    )
                    .await
                    {
                        Ok(_) => {
                            summary.persisted += 1;
                            // AWS sends PERSISTED only for streams that keep data.
                            if options.acks && definition.data_retention_hours > 0 {
                                send(ack_line(
                                    AckEvent::Persisted,
                                    Some(started.timecode),
                                    Some(&number_text),
                                    None,
                                ))
                                .await;
                            }
                        }
                        Err(FragmentError::Append(
                            AppendError::StreamNotWritable { .. }
                            | AppendError::ShardNotFound { .. },
                        )) => {
                            send(error(4008)).await;
                            summary.ended_by = Some(4008);
                            return true;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, stream = %definition.name, "Storing a video fragment failed.");
                            send(error(5001)).await;
                            summary.ended_by = Some(5001);
                            return true;
                        }
                    }
                }
            }
        }
        false
    }
}

/// Epoch milliseconds as KVS's tag text: seconds with three decimals.
pub fn seconds_text(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Which tags a chunk carries: GetMedia's names or GetMediaForFragmentList's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkTags {
    GetMedia,
    FragmentList,
}

/// One chunk: the producer's header, the service's Tags, and the fragment's Cluster.
pub fn chunk(fragment: &StoredFragment, tags: ChunkTags, now_ms: u64, newest_ms: u64) -> Vec<u8> {
    let entry = &fragment.entry;
    let pairs: Vec<(&str, String)> = match tags {
        ChunkTags::GetMedia => vec![
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", entry.number.clone()),
            (
                "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
                seconds_text(entry.server_ms),
            ),
            (
                "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
                seconds_text(entry.producer_ms),
            ),
            (
                "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW",
                newest_ms
                    .min(now_ms)
                    .saturating_sub(entry.server_ms)
                    .to_string(),
            ),
            ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", entry.number.clone()),
        ],
        ChunkTags::FragmentList => vec![
            ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", entry.number.clone()),
            (
                "AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP",
                seconds_text(entry.server_ms),
            ),
            (
                "AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP",
                seconds_text(entry.producer_ms),
            ),
        ],
    };
    let tags = mkv::tags_element(&pairs);
    let mut out = Vec::with_capacity(fragment.header.len() + tags.len() + fragment.cluster.len());
    out.extend_from_slice(&fragment.header);
    out.extend_from_slice(&tags);
    out.extend_from_slice(&fragment.cluster);
    out
}

/// GetMedia's StartSelector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartSelector {
    Now,
    Earliest,
    /// Starts after this fragment.
    AfterFragment(String),
    ServerTimestamp(u64),
    ProducerTimestamp(u64),
    /// Starts after the fragment the token names.
    ContinuationToken(String),
}

/// Why a read could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("fragment {0} was not found in the stream")]
    FragmentNotFound(String),
}

/// Where in `entries` (storage order) a GetMedia with `selector` starts.
pub fn start_index(
    entries: &[FragmentEntry],
    selector: &StartSelector,
) -> Result<usize, StartError> {
    let after = |number: &str| {
        entries
            .iter()
            .position(|e| e.number == number)
            .map(|at| at + 1)
            .ok_or_else(|| StartError::FragmentNotFound(number.to_owned()))
    };
    // The fragment holding `ts` (or the first after it): the last one that starts at or before.
    let containing = |ts: u64, key: fn(&FragmentEntry) -> u64| {
        let mut best: Option<usize> = None;
        for (at, entry) in entries.iter().enumerate() {
            if key(entry) <= ts && best.is_none_or(|b| key(&entries[b]) <= key(entry)) {
                best = Some(at);
            }
        }
        match best {
            Some(at)
                if key(&entries[at]) + entries[at].duration_ms > ts || at + 1 == entries.len() =>
            {
                at
            }
            Some(at) => at + 1,
            None => entries
                .iter()
                .position(|e| key(e) >= ts)
                .unwrap_or(entries.len()),
        }
    };
    Ok(match selector {
        StartSelector::Earliest => 0,
        StartSelector::Now => entries.len().saturating_sub(1),
        StartSelector::AfterFragment(number) | StartSelector::ContinuationToken(number) => {
            after(number)?
        }
        StartSelector::ServerTimestamp(ts) => containing(*ts, |e| e.server_ms),
        StartSelector::ProducerTimestamp(ts) => containing(*ts, |e| e.producer_ms),
    })
}

/// GetMedia's body: chunks from `start` on, then new ones as they are stored, until `idle_end`
/// passes with no new fragment. A fragment that cannot be read ends the stream.
pub fn get_media<R: RecordLog>(
    storage: R,
    definition: StreamDefinition,
    index: Arc<StreamIndex>,
    start: usize,
    idle_end: Duration,
    sleep: Sleep,
    clock: Clock,
) -> impl Stream<Item = Bytes> {
    futures_lite::stream::unfold(Some(start), move |next| {
        let storage = storage.clone();
        let definition = definition.clone();
        let index = index.clone();
        let sleep = sleep.clone();
        let clock = clock.clone();
        async move {
            let at = next?;
            let entry = loop {
                let listener = index.listen();
                if let Some(entry) = index.entries_from(at, 1).into_iter().next() {
                    break entry;
                }
                let woke = futures_lite::future::or(
                    async {
                        listener.await;
                        true
                    },
                    async {
                        sleep(idle_end).await;
                        false
                    },
                )
                .await;
                if !woke {
                    return None;
                }
            };
            let newest = index
                .entries_from(index.len().saturating_sub(1), 1)
                .first()
                .map_or(entry.server_ms, |e| e.server_ms);
            match fragments::load(&storage, &definition, &entry).await {
                Ok(fragment) => Some((
                    Bytes::from(chunk(&fragment, ChunkTags::GetMedia, clock(), newest)),
                    Some(at + 1),
                )),
                Err(error) => {
                    tracing::warn!(%error, "GetMedia could not read a fragment.");
                    // The stream ends with an error chunk's tags, as KVS does.
                    let tags = mkv::tags_element(&[
                        (
                            "AWS_KINESISVIDEO_ERROR_CODE",
                            "FRAGMENT_NOT_FOUND".to_owned(),
                        ),
                        ("AWS_KINESISVIDEO_ERROR_ID", "4000".to_owned()),
                    ]);
                    let mut out = Vec::new();
                    if let Ok(fragment) = fragments::load(&storage, &definition, &entry).await {
                        out.extend_from_slice(&fragment.header);
                    }
                    out.extend_from_slice(&tags);
                    Some((Bytes::from(out), None))
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use sluice_protocols::model::Model;

    use super::*;
    use crate::limits::{Limiter, VideoLimits};

    /// A wall clock that only the fake timer moves, and the waits the timer was asked for.
    fn fake_time(start_ms: u64) -> (Clock, Sleep, Arc<Mutex<Vec<u64>>>) {
        let now = Arc::new(AtomicU64::new(start_ms));
        let waits = Arc::new(Mutex::new(Vec::new()));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let sleep: Sleep = {
            let waits = waits.clone();
            Arc::new(move |wait: Duration| {
                let ms = u64::try_from(wait.as_millis()).expect("short waits");
                now.fetch_add(ms, Ordering::SeqCst);
                waits.lock().expect("not poisoned").push(ms);
                Box::pin(async {})
            })
        };
        (clock, sleep, waits)
    }

    fn definition(internal_stream: &str) -> StreamDefinition {
        StreamDefinition {
            name: "cam".into(),
            arn: "arn:aws:kinesisvideo:us-east-1:000000000000:stream/cam/1".into(),
            device_name: None,
            media_type: None,
            kms_key_id: String::new(),
            data_retention_hours: 24,
            version: "v".into(),
            creation_time_ms: 0,
            tags: std::collections::BTreeMap::new(),
            storage_tier: "HOT".into(),
            internal_stream: internal_stream.into(),
            image_generation: None,
            notification: None,
        }
    }

    /// The guard: a producer faster than 5 fragments a second is slowed down (the ingest waits
    /// before reading on, refusing nothing), and a session open past its connection duration ends
    /// with ErrorId 4003 naming the fragment in progress, which is not stored. Time is fake: the
    /// test asserts the waits asked for, never how long anything took.
    #[test]
    fn ingest_paces_fragments_and_ends_with_4003_at_the_connection_duration() {
        let internal = format!("{}cam-1-x", sluice_core::internal_stream::VIDEO_PREFIX);
        let model = Model::with_stream(&internal, 2);
        // Unknown-size clusters: each one ends only when the next begins, so one is always in
        // progress. One chunk per cluster, the first with the header.
        let clusters: Vec<(u64, Vec<(u64, i16)>)> =
            (0..8).map(|i| (i * 1000, vec![(1, 0), (1, 500)])).collect();
        let mkv = crate::mkv::tests::sample(&[1], &clusters, true);
        let starts: Vec<usize> = (0..mkv.len() - 3)
            .filter(|&at| mkv[at..at + 4] == [0x1F, 0x43, 0xB6, 0x75])
            .collect();
        assert_eq!(starts.len(), 8);
        let mut chunks = Vec::new();
        let mut from = 0;
        for &to in starts.iter().skip(1).chain(std::iter::once(&mkv.len())) {
            chunks.push(Ok(Bytes::copy_from_slice(&mkv[from..to])));
            from = to;
        }
        let (clock, sleep, waits) = fake_time(1_700_000_000_000);
        let limiter = Arc::new(Limiter::new(VideoLimits {
            put_media_connection_duration_ms: 500,
            ..VideoLimits::default()
        }));
        let (sender, receiver) = async_channel::bounded(256);
        let definition = definition(&internal);
        let summary = futures_lite::future::block_on(ingest(
            model.log(),
            definition.clone(),
            Arc::new(StreamIndex::default()),
            PutMediaOptions {
                timecode_type: TimecodeType::Relative,
                producer_start_ms: Some(1_699_999_000_000),
                acks: true,
            },
            PutMediaLimits::default(),
            limiter.put_media_pacing(&definition.internal_stream),
            futures_lite::stream::iter(chunks),
            sender,
            sleep,
            clock,
        ));
        // Five fragments start at once; each later one waits for its 200 ms of the rate. After
        // the eighth has started 600 ms have passed, past the 500 ms the connection may last.
        assert_eq!(*waits.lock().expect("not poisoned"), vec![200, 200, 200]);
        assert_eq!(
            summary,
            IngestSummary {
                persisted: 7,
                rejected: 1,
                ended_by: Some(ERROR_ID_CONNECTION_DURATION),
            }
        );
        let mut lines = Vec::new();
        while let Ok(line) = receiver.try_recv() {
            lines.push(String::from_utf8(line.to_vec()).expect("utf-8"));
        }
        let last: serde_json::Value =
            serde_json::from_str(lines.last().expect("acks")).expect("json");
        assert_eq!(last["EventType"], "ERROR");
        assert_eq!(last["ErrorId"], 4003);
        assert_eq!(last["FragmentTimecode"], 7000);
        let persisted = lines.iter().filter(|l| l.contains("PERSISTED")).count();
        assert_eq!(persisted, 7);
    }

    fn entry(number: u128, producer_ms: u64, server_ms: u64) -> FragmentEntry {
        FragmentEntry {
            number: number.to_string(),
            data_position: 0,
            parts: 1,
            producer_ms,
            server_ms,
            duration_ms: 1000,
            size_bytes: 0,
        }
    }

    #[test]
    fn start_selectors_pick_the_fragment_holding_the_time_or_the_one_after_a_number() {
        let entries = vec![
            entry(10, 1_000, 5_000),
            entry(11, 2_000, 6_000),
            entry(12, 3_000, 7_000),
        ];
        let at = |s: StartSelector| start_index(&entries, &s).map_err(|e| e.to_string());
        assert_eq!(at(StartSelector::Earliest), Ok(0));
        assert_eq!(at(StartSelector::Now), Ok(2));
        assert_eq!(at(StartSelector::AfterFragment("10".into())), Ok(1));
        assert_eq!(at(StartSelector::ContinuationToken("12".into())), Ok(3));
        assert!(at(StartSelector::AfterFragment("99".into())).is_err());
        assert_eq!(at(StartSelector::ProducerTimestamp(2_500)), Ok(1));
        assert_eq!(at(StartSelector::ProducerTimestamp(500)), Ok(0));
        assert_eq!(at(StartSelector::ServerTimestamp(7_999)), Ok(2));
        assert_eq!(at(StartSelector::ServerTimestamp(6_000)), Ok(1));
    }

    #[test]
    fn ack_lines_carry_only_the_keys_that_apply() {
        assert_eq!(
            ack_line(AckEvent::Persisted, Some(40), Some("7"), None),
            Bytes::from_static(
                b"{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":40,\"FragmentNumber\":\"7\"}\n"
            )
        );
        assert_eq!(
            ack_line(AckEvent::Error, None, None, Some(4006)),
            Bytes::from_static(
                b"{\"EventType\":\"ERROR\",\"ErrorCode\":\"INVALID_MKV_DATA\",\"ErrorId\":4006}\n"
            )
        );
        assert_eq!(
            ack_line(AckEvent::Error, Some(7), Some("9"), Some(4003)),
            Bytes::from_static(
                b"{\"EventType\":\"ERROR\",\"FragmentTimecode\":7,\"FragmentNumber\":\"9\",\"ErrorCode\":\"MAX_CONNECTION_DURATION_REACHED\",\"ErrorId\":4003}\n"
            )
        );
    }
}
