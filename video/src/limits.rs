//! Kinesis Video Streams' per-stream rate and concurrency limits, as AWS enforces them
//! (the "Media and archived-media API" quotas of the KVS developer guide).
//!
//! - Call rates (PutMedia, GetMedia, GetMediaForFragmentList, ListFragments, the HLS and DASH
//!   session URLs, GetClip) are token buckets per stream; a call finding its bucket empty is
//!   refused with ClientLimitExceededException.
//! - Concurrent connections (PutMedia, GetMedia, GetMediaForFragmentList) are counted per
//!   stream; a [`ConnectionSlot`] is held for as long as the connection streams and gives its
//!   place back when dropped. A connection beyond the count is refused.
//! - Bandwidth (PutMedia 12.5 MB/s, the readers 25 MB/s) is paced per connection and the
//!   PutMedia fragment rate per stream: they slow reading or sending down (back-pressure),
//!   they refuse nothing.
//!
//! Invariants:
//! - One [`Limiter`] serves every core, so a stream's limits hold whichever core its requests
//!   land on. Its lock is held only for a bucket update or a count change, never across an await.
//! - A stream's connection count equals the number of live slots for it: a slot is made only
//!   under the lock after the count was raised, and its drop lowers it exactly once.
//! - Buckets are pure arithmetic over the milliseconds they are given; nothing here reads a clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{Stream, StreamExt as _};

use crate::error::{ErrorKind, VideoError};
use crate::media::{Clock, Sleep};

/// Token amounts are kept in thousandths, so a rate of `r` tokens a second refills exactly `r`
/// thousandths each millisecond.
const MILLI: i128 = 1000;

/// How fast a bucket refills and how much it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u64,
    pub burst: u64,
}

impl Rate {
    /// `per_second`, holding one second's worth.
    pub const fn per_second(per_second: u64) -> Self {
        Self {
            per_second,
            burst: per_second,
        }
    }
}

/// A token bucket: holds at most `rate.burst` tokens and gains `rate.per_second` a second.
///
/// [`TokenBucket::try_take`] refuses when the tokens are not there (call rates);
/// [`TokenBucket::reserve`] always takes and may leave the bucket in debt, answering how long
/// the caller must wait until the debt is paid (pacing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    per_second: i128,
    capacity_milli: i128,
    /// Negative while in debt.
    level_milli: i128,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn new(rate: Rate, now_ms: u64) -> Self {
        assert!(rate.per_second > 0, "a token bucket refills");
        assert!(rate.burst > 0, "a token bucket holds at least one token");
        let capacity_milli = i128::from(rate.burst) * MILLI;
        Self {
            per_second: i128::from(rate.per_second),
            capacity_milli,
            level_milli: capacity_milli,
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        // A wall clock that stepped back refills nothing and restarts from the new time.
        let elapsed = i128::from(now_ms.saturating_sub(self.last_ms));
        self.last_ms = now_ms;
        self.level_milli = (self.level_milli + elapsed * self.per_second).min(self.capacity_milli);
    }

    /// Takes `amount` tokens if the bucket holds them.
    pub fn try_take(&mut self, amount: u64, now_ms: u64) -> bool {
        self.refill(now_ms);
        let wanted = i128::from(amount) * MILLI;
        if self.level_milli >= wanted {
            self.level_milli -= wanted;
            true
        } else {
            false
        }
    }

    /// Takes `amount` tokens, going into debt if need be, and answers how long until the bucket
    /// is out of debt again (zero when it never went in).
    pub fn reserve(&mut self, amount: u64, now_ms: u64) -> Duration {
        self.refill(now_ms);
        self.level_milli -= i128::from(amount) * MILLI;
        if self.level_milli >= 0 {
            return Duration::ZERO;
        }
        // Round up: waking a millisecond early would find the bucket still in debt.
        let wait_ms = (-self.level_milli + self.per_second - 1) / self.per_second;
        Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX))
    }

    /// Whether the bucket is full at `now_ms` (it then remembers nothing worth keeping).
    fn is_full(&self, now_ms: u64) -> bool {
        let elapsed = i128::from(now_ms.saturating_sub(self.last_ms));
        self.level_milli + elapsed * self.per_second >= self.capacity_milli
    }
}

/// A rate-limited call, one bucket per stream each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    PutMedia,
    GetMedia,
    GetMediaForFragmentList,
    ListFragments,
    GetHlsStreamingSessionUrl,
    GetDashStreamingSessionUrl,
    GetClip,
}

impl CallKind {
    const COUNT: usize = 7;

    /// The data-plane operation behind `path`, when it has a call rate.
    pub fn of_path(path: &str) -> Option<Self> {
        Some(match path {
            "/putMedia" => Self::PutMedia,
            "/getMedia" => Self::GetMedia,
            "/getMediaForFragmentList" => Self::GetMediaForFragmentList,
            "/listFragments" => Self::ListFragments,
            "/getHLSStreamingSessionURL" => Self::GetHlsStreamingSessionUrl,
            "/getDASHStreamingSessionURL" => Self::GetDashStreamingSessionUrl,
            "/getClip" => Self::GetClip,
            _ => return None,
        })
    }

    /// AWS's name of the operation.
    pub const fn operation(self) -> &'static str {
        match self {
            Self::PutMedia => "PutMedia",
            Self::GetMedia => "GetMedia",
            Self::GetMediaForFragmentList => "GetMediaForFragmentList",
            Self::ListFragments => "ListFragments",
            Self::GetHlsStreamingSessionUrl => "GetHLSStreamingSessionURL",
            Self::GetDashStreamingSessionUrl => "GetDASHStreamingSessionURL",
            Self::GetClip => "GetClip",
        }
    }
}

/// A long-lived connection counted per stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    PutMedia,
    GetMedia,
    GetMediaForFragmentList,
}

impl ConnectionKind {
    const COUNT: usize = 3;

    pub const fn operation(self) -> &'static str {
        match self {
            Self::PutMedia => "PutMedia",
            Self::GetMedia => "GetMedia",
            Self::GetMediaForFragmentList => "GetMediaForFragmentList",
        }
    }

    /// The error AWS answers a connection beyond the count with. GetMediaForFragmentList's
    /// model has no ConnectionLimitExceededException; its throttling error is
    /// ClientLimitExceededException (docs/DECISIONS.md).
    pub const fn error_kind(self) -> ErrorKind {
        match self {
            Self::PutMedia | Self::GetMedia => ErrorKind::ConnectionLimitExceeded,
            Self::GetMediaForFragmentList => ErrorKind::ClientLimitExceeded,
        }
    }
}

/// A call or connection over its limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitExceeded {
    #[error("{operation} is called on this stream faster than its limit of {per_second} a second")]
    CallRate {
        operation: &'static str,
        per_second: u64,
    },
    #[error("the stream already has {open} {operation} connections, its limit")]
    Connections {
        kind: ConnectionKind,
        operation: &'static str,
        open: u32,
    },
}

impl From<LimitExceeded> for VideoError {
    fn from(error: LimitExceeded) -> Self {
        let kind = match &error {
            LimitExceeded::CallRate { .. } => ErrorKind::ClientLimitExceeded,
            LimitExceeded::Connections { kind, .. } => kind.error_kind(),
        };
        let mut message = error.to_string();
        if let Some(first) = message.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        message.push('.');
        VideoError::new(kind, message)
    }
}

/// The limits, AWS's defaults unless configured (`--video-limit KEY=VALUE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoLimits {
    /// `false` turns every limit here off (`--video-limits false`, for benchmarks).
    pub enabled: bool,
    pub put_media_calls_per_second: u64,
    /// AWS: 1, a soft limit.
    pub put_media_connections_max: u32,
    pub put_media_fragments_per_second: u64,
    /// 12.5 MB/s (100 Mbit/s) per PutMedia connection.
    pub put_media_bytes_per_second: u64,
    /// A PutMedia connection open longer gets ErrorId 4003 (MAX_CONNECTION_DURATION_REACHED).
    pub put_media_connection_duration_ms: u64,
    pub get_media_calls_per_second: u64,
    pub get_media_connections_max: u32,
    /// 25 MB/s (200 Mbit/s) per GetMedia connection.
    pub get_media_bytes_per_second: u64,
    pub fragment_list_calls_per_second: u64,
    pub fragment_list_connections_max: u32,
    pub fragment_list_bytes_per_second: u64,
    pub list_fragments_calls_per_second: u64,
    /// GetHLSStreamingSessionURL and GetDASHStreamingSessionURL each: 5 at once, 1 a second on.
    pub session_url_calls_burst: u64,
    pub session_url_calls_per_second: u64,
    pub get_clip_calls_per_second: u64,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            put_media_calls_per_second: 5,
            put_media_connections_max: 1,
            put_media_fragments_per_second: 5,
            put_media_bytes_per_second: 12_500_000,
            put_media_connection_duration_ms: 45 * 60 * 1000,
            get_media_calls_per_second: 5,
            get_media_connections_max: 3,
            get_media_bytes_per_second: 25_000_000,
            fragment_list_calls_per_second: 5,
            fragment_list_connections_max: 5,
            fragment_list_bytes_per_second: 25_000_000,
            list_fragments_calls_per_second: 5,
            session_url_calls_burst: 5,
            session_url_calls_per_second: 1,
            get_clip_calls_per_second: 1,
        }
    }
}

/// Why a `--video-limit` setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitSettingError {
    #[error("{key} is not a video limit; the limits are: {}", VideoLimits::KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("{key} must be at least 1, not {value}")]
    Zero { key: String, value: u64 },
    #[error("{key} must be at most {max}, not {value}")]
    TooLarge { key: String, value: u64, max: u64 },
}

impl VideoLimits {
    /// Every key [`VideoLimits::set`] takes, named as the fields.
    pub const KEYS: &'static [&'static str] = &[
        "put_media_calls_per_second",
        "put_media_connections_max",
        "put_media_fragments_per_second",
        "put_media_bytes_per_second",
        "put_media_connection_duration_ms",
        "get_media_calls_per_second",
        "get_media_connections_max",
        "get_media_bytes_per_second",
        "fragment_list_calls_per_second",
        "fragment_list_connections_max",
        "fragment_list_bytes_per_second",
        "list_fragments_calls_per_second",
        "session_url_calls_burst",
        "session_url_calls_per_second",
        "get_clip_calls_per_second",
    ];

    /// Sets the limit named `key` (one of [`VideoLimits::KEYS`]); every limit is at least 1.
    pub fn set(&mut self, key: &str, value: u64) -> Result<(), LimitSettingError> {
        if value == 0 {
            return Err(LimitSettingError::Zero {
                key: key.to_owned(),
                value,
            });
        }
        // Rates stay far below where a bucket's arithmetic could overflow.
        let rate_max = 1u64 << 40;
        let rate = |field: &mut u64| -> Result<(), LimitSettingError> {
            if value > rate_max {
                return Err(LimitSettingError::TooLarge {
                    key: key.to_owned(),
                    value,
                    max: rate_max,
                });
            }
            *field = value;
            Ok(())
        };
        let count = |field: &mut u32| -> Result<(), LimitSettingError> {
            *field = u32::try_from(value).map_err(|_| LimitSettingError::TooLarge {
                key: key.to_owned(),
                value,
                max: u64::from(u32::MAX),
            })?;
            Ok(())
        };
        match key {
            "put_media_calls_per_second" => rate(&mut self.put_media_calls_per_second),
            "put_media_connections_max" => count(&mut self.put_media_connections_max),
            "put_media_fragments_per_second" => rate(&mut self.put_media_fragments_per_second),
            "put_media_bytes_per_second" => rate(&mut self.put_media_bytes_per_second),
            "put_media_connection_duration_ms" => rate(&mut self.put_media_connection_duration_ms),
            "get_media_calls_per_second" => rate(&mut self.get_media_calls_per_second),
            "get_media_connections_max" => count(&mut self.get_media_connections_max),
            "get_media_bytes_per_second" => rate(&mut self.get_media_bytes_per_second),
            "fragment_list_calls_per_second" => rate(&mut self.fragment_list_calls_per_second),
            "fragment_list_connections_max" => count(&mut self.fragment_list_connections_max),
            "fragment_list_bytes_per_second" => rate(&mut self.fragment_list_bytes_per_second),
            "list_fragments_calls_per_second" => rate(&mut self.list_fragments_calls_per_second),
            "session_url_calls_burst" => rate(&mut self.session_url_calls_burst),
            "session_url_calls_per_second" => rate(&mut self.session_url_calls_per_second),
            "get_clip_calls_per_second" => rate(&mut self.get_clip_calls_per_second),
            _ => Err(LimitSettingError::UnknownKey {
                key: key.to_owned(),
            }),
        }
    }

    /// A call's rate: a second's worth of calls at once, except the session URLs' burst of 5
    /// over 1 a second.
    fn call_rate(&self, kind: CallKind) -> Rate {
        let per_second = match kind {
            CallKind::PutMedia => self.put_media_calls_per_second,
            CallKind::GetMedia => self.get_media_calls_per_second,
            CallKind::GetMediaForFragmentList => self.fragment_list_calls_per_second,
            CallKind::ListFragments => self.list_fragments_calls_per_second,
            CallKind::GetHlsStreamingSessionUrl | CallKind::GetDashStreamingSessionUrl => {
                return Rate {
                    per_second: self.session_url_calls_per_second,
                    burst: self.session_url_calls_burst,
                };
            }
            CallKind::GetClip => self.get_clip_calls_per_second,
        };
        Rate::per_second(per_second)
    }

    fn connections_max(&self, kind: ConnectionKind) -> u32 {
        match kind {
            ConnectionKind::PutMedia => self.put_media_connections_max,
            ConnectionKind::GetMedia => self.get_media_connections_max,
            ConnectionKind::GetMediaForFragmentList => self.fragment_list_connections_max,
        }
    }

    /// The bandwidth of one connection, bytes a second.
    pub fn bytes_per_second(&self, kind: ConnectionKind) -> u64 {
        match kind {
            ConnectionKind::PutMedia => self.put_media_bytes_per_second,
            ConnectionKind::GetMedia => self.get_media_bytes_per_second,
            ConnectionKind::GetMediaForFragmentList => self.fragment_list_bytes_per_second,
        }
    }
}

/// One stream's buckets and connection counts.
#[derive(Debug, Default)]
struct StreamLimits {
    calls: [Option<TokenBucket>; CallKind::COUNT],
    fragments: Option<TokenBucket>,
    connections: [u32; ConnectionKind::COUNT],
}

impl StreamLimits {
    /// Whether forgetting this stream would change no answer.
    fn is_idle(&self, now_ms: u64) -> bool {
        self.connections.iter().all(|open| *open == 0)
            && self
                .calls
                .iter()
                .chain(std::iter::once(&self.fragments))
                .flatten()
                .all(|bucket| bucket.is_full(now_ms))
    }
}

#[derive(Debug)]
struct Streams {
    by_stream: HashMap<String, StreamLimits>,
    /// The map is pruned of idle streams when it grows to this size.
    prune_at: usize,
}

const PRUNE_AT_MIN: usize = 1024;

/// The limits of every stream, shared by every core. Streams are keyed by their internal
/// stream name, unique per incarnation, so a recreated stream starts afresh.
#[derive(Debug)]
pub struct Limiter {
    limits: VideoLimits,
    streams: Mutex<Streams>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(VideoLimits::default())
    }
}

impl Limiter {
    pub fn new(limits: VideoLimits) -> Self {
        Self {
            limits,
            streams: Mutex::new(Streams {
                by_stream: HashMap::new(),
                prune_at: PRUNE_AT_MIN,
            }),
        }
    }

    pub fn limits(&self) -> &VideoLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Streams> {
        // Every change under this lock is a counter or a bucket update that cannot panic
        // halfway, so a poisoned lock still holds consistent state.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on `stream`'s limits, first pruning idle streams once the map has grown.
    fn with_stream<T>(
        &self,
        stream: &str,
        now_ms: u64,
        f: impl FnOnce(&mut StreamLimits) -> T,
    ) -> T {
        let mut streams = self.lock();
        if !streams.by_stream.contains_key(stream) && streams.by_stream.len() >= streams.prune_at {
            streams.by_stream.retain(|_, s| !s.is_idle(now_ms));
            streams.prune_at = (streams.by_stream.len() * 2).max(PRUNE_AT_MIN);
        }
        f(streams.by_stream.entry(stream.to_owned()).or_default())
    }

    /// Admits one call of `kind` on `stream`, or refuses it when the stream's rate is spent.
    pub fn admit(&self, stream: &str, kind: CallKind, now_ms: u64) -> Result<(), LimitExceeded> {
        if !self.limits.enabled {
            return Ok(());
        }
        let rate = self.limits.call_rate(kind);
        let admitted = self.with_stream(stream, now_ms, |limits| {
            limits.calls[kind as usize]
                .get_or_insert_with(|| TokenBucket::new(rate, now_ms))
                .try_take(1, now_ms)
        });
        if admitted {
            Ok(())
        } else {
            Err(LimitExceeded::CallRate {
                operation: kind.operation(),
                per_second: rate.per_second,
            })
        }
    }

    /// Opens a connection of `kind` on `stream`, or refuses it when the stream has as many as
    /// it may. The connection counts until the slot is dropped.
    pub fn connect(
        self: &Arc<Self>,
        stream: &str,
        kind: ConnectionKind,
        now_ms: u64,
    ) -> Result<ConnectionSlot, LimitExceeded> {
        if !self.limits.enabled {
            return Ok(ConnectionSlot { held: None });
        }
        let max = self.limits.connections_max(kind);
        self.with_stream(stream, now_ms, |limits| {
            let open = &mut limits.connections[kind as usize];
            if *open >= max {
                return Err(LimitExceeded::Connections {
                    kind,
                    operation: kind.operation(),
                    open: *open,
                });
            }
            *open += 1;
            Ok(())
        })?;
        Ok(ConnectionSlot {
            held: Some(HeldSlot {
                limiter: self.clone(),
                stream: stream.to_owned(),
                kind,
            }),
        })
    }

    fn release(&self, stream: &str, kind: ConnectionKind) {
        let mut streams = self.lock();
        let open = streams
            .by_stream
            .get_mut(stream)
            .map(|limits| &mut limits.connections[kind as usize]);
        // A slot's stream is never pruned while the slot lives (its count is not zero).
        let open = open.expect("a live connection slot's stream is in the limiter");
        assert!(*open > 0, "a live connection slot is counted");
        *open -= 1;
    }

    /// Takes `fragments` from `stream`'s PutMedia fragment rate; answers how long the ingest
    /// must wait before it reads on.
    pub fn reserve_fragments(&self, stream: &str, fragments: u64, now_ms: u64) -> Duration {
        if !self.limits.enabled || fragments == 0 {
            return Duration::ZERO;
        }
        let per_second = self.limits.put_media_fragments_per_second;
        self.with_stream(stream, now_ms, |limits| {
            limits
                .fragments
                .get_or_insert_with(|| TokenBucket::new(Rate::per_second(per_second), now_ms))
                .reserve(fragments, now_ms)
        })
    }

    /// What a PutMedia session on `stream` paces itself by.
    pub fn put_media_pacing(self: &Arc<Self>, stream: &str) -> PutMediaPacing {
        if !self.limits.enabled {
            return PutMediaPacing::default();
        }
        PutMediaPacing {
            fragments: Some(FragmentPace {
                limiter: self.clone(),
                stream: stream.to_owned(),
            }),
            bytes_per_second: Some(self.limits.put_media_bytes_per_second),
            connection_duration: Some(Duration::from_millis(
                self.limits.put_media_connection_duration_ms,
            )),
        }
    }

    /// A reader's bandwidth, bytes a second (`None`: unpaced).
    pub fn reader_bytes_per_second(&self, kind: ConnectionKind) -> Option<u64> {
        self.limits
            .enabled
            .then(|| self.limits.bytes_per_second(kind))
    }

    #[cfg(test)]
    fn open(&self, stream: &str, kind: ConnectionKind) -> u32 {
        self.lock()
            .by_stream
            .get(stream)
            .map_or(0, |limits| limits.connections[kind as usize])
    }
}

/// A counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    /// `None` when limits are off.
    held: Option<HeldSlot>,
}

#[derive(Debug)]
struct HeldSlot {
    limiter: Arc<Limiter>,
    stream: String,
    kind: ConnectionKind,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.limiter.release(&held.stream, held.kind);
        }
    }
}

/// A PutMedia session's handle on its stream's fragment rate.
#[derive(Clone, Debug)]
pub struct FragmentPace {
    limiter: Arc<Limiter>,
    stream: String,
}

impl FragmentPace {
    /// See [`Limiter::reserve_fragments`].
    pub fn reserve(&self, fragments: u64, now_ms: u64) -> Duration {
        self.limiter
            .reserve_fragments(&self.stream, fragments, now_ms)
    }
}

/// What a PutMedia session paces itself by; `None` fields do not limit.
#[derive(Clone, Debug, Default)]
pub struct PutMediaPacing {
    /// The stream's fragment rate, shared by all its sessions.
    pub fragments: Option<FragmentPace>,
    /// This session's read bandwidth.
    pub bytes_per_second: Option<u64>,
    /// How long this session may stay open (ErrorId 4003 after it).
    pub connection_duration: Option<Duration>,
}

/// `body` paced to `bytes_per_second` (each chunk waits until the connection's bandwidth has
/// room for it), holding `slot` until the body ends or is dropped.
pub fn paced_body<S>(
    body: S,
    bytes_per_second: Option<u64>,
    slot: ConnectionSlot,
    sleep: Sleep,
    clock: Clock,
) -> impl Stream<Item = Bytes>
where
    S: Stream<Item = Bytes> + 'static,
{
    let bucket = bytes_per_second.map(|rate| TokenBucket::new(Rate::per_second(rate), clock()));
    futures_lite::stream::unfold(
        (Box::pin(body), bucket, slot),
        move |(mut body, mut bucket, slot)| {
            let sleep = sleep.clone();
            let clock = clock.clone();
            async move {
                let chunk = body.next().await?;
                if let Some(bucket) = bucket.as_mut() {
                    let wait = bucket.reserve(chunk.len() as u64, clock());
                    if !wait.is_zero() {
                        sleep(wait).await;
                    }
                }
                Some((chunk, (body, bucket, slot)))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_one_call_per_refill() {
        let mut bucket = TokenBucket::new(Rate::per_second(5), 1_000);
        for _ in 0..5 {
            assert!(bucket.try_take(1, 1_000));
        }
        assert!(!bucket.try_take(1, 1_000));
        // 5 a second: one token every 200 ms.
        assert!(!bucket.try_take(1, 1_199));
        assert!(bucket.try_take(1, 1_200));
        assert!(!bucket.try_take(1, 1_200));
        // A long pause refills only up to the burst.
        for _ in 0..5 {
            assert!(bucket.try_take(1, 60_000));
        }
        assert!(!bucket.try_take(1, 60_000));
    }

    #[test]
    fn session_urls_allow_a_burst_of_five_then_one_a_second() {
        let limiter = Limiter::default();
        let admit = |at| {
            limiter
                .admit("s", CallKind::GetHlsStreamingSessionUrl, at)
                .is_ok()
        };
        for _ in 0..5 {
            assert!(admit(0));
        }
        assert!(!admit(0));
        assert!(!admit(999));
        assert!(admit(1_000));
        assert!(!admit(1_500));
        // The DASH URL has a bucket of its own.
        assert!(
            limiter
                .admit("s", CallKind::GetDashStreamingSessionUrl, 1_500)
                .is_ok()
        );
    }

    #[test]
    fn a_refused_call_is_client_limit_exceeded_and_other_streams_are_not_affected() {
        let limiter = Limiter::default();
        assert!(limiter.admit("a", CallKind::GetClip, 0).is_ok());
        let error = VideoError::from(
            limiter
                .admit("a", CallKind::GetClip, 10)
                .expect_err("GetClip allows 1 a second"),
        );
        assert_eq!(error.type_name(), "ClientLimitExceededException");
        assert_eq!(error.status(), 400);
        assert!(error.message.contains("GetClip"), "{}", error.message);
        assert!(limiter.admit("b", CallKind::GetClip, 10).is_ok());
    }

    #[test]
    fn a_reserving_bucket_goes_into_debt_and_answers_the_wait() {
        let mut bucket = TokenBucket::new(Rate::per_second(5), 0);
        for _ in 0..5 {
            assert_eq!(bucket.reserve(1, 0), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(1, 0), Duration::from_millis(200));
        assert_eq!(bucket.reserve(1, 0), Duration::from_millis(400));
        // Waiting out the debt clears it: the next token is again 200 ms away.
        assert_eq!(bucket.reserve(1, 400), Duration::from_millis(200));
        let mut bytes = TokenBucket::new(Rate::per_second(12_500_000), 0);
        assert_eq!(bytes.reserve(12_500_000, 0), Duration::ZERO);
        assert_eq!(bytes.reserve(1_250_000, 0), Duration::from_millis(100));
        // One byte of debt still waits a whole (rounded up) millisecond.
        let mut slow = TokenBucket::new(Rate::per_second(1), 0);
        assert_eq!(slow.reserve(2, 0), Duration::from_millis(1000));
    }

    #[test]
    fn a_clock_that_steps_back_refills_nothing() {
        let mut bucket = TokenBucket::new(Rate::per_second(1), 10_000);
        assert!(bucket.try_take(1, 10_000));
        assert!(!bucket.try_take(1, 5_000));
        assert!(!bucket.try_take(1, 5_999));
        assert!(bucket.try_take(1, 6_000));
    }

    #[test]
    fn connections_beyond_the_count_are_refused_until_a_slot_is_dropped() {
        let limiter = Arc::new(Limiter::default());
        let first = limiter
            .connect("s", ConnectionKind::PutMedia, 0)
            .expect("the first PutMedia connection");
        let error = limiter
            .connect("s", ConnectionKind::PutMedia, 0)
            .expect_err("one PutMedia connection per stream");
        assert_eq!(
            VideoError::from(error).type_name(),
            "ConnectionLimitExceededException"
        );
        // Another stream, and another kind, have counts of their own.
        let other = limiter.connect("t", ConnectionKind::PutMedia, 0);
        assert!(other.is_ok());
        let readers: Vec<ConnectionSlot> = (0..3)
            .map(|_| {
                limiter
                    .connect("s", ConnectionKind::GetMedia, 0)
                    .expect("three GetMedia readers")
            })
            .collect();
        let fourth = limiter
            .connect("s", ConnectionKind::GetMedia, 0)
            .expect_err("at most three GetMedia readers");
        assert_eq!(
            fourth,
            LimitExceeded::Connections {
                kind: ConnectionKind::GetMedia,
                operation: "GetMedia",
                open: 3
            }
        );
        drop(first);
        assert_eq!(limiter.open("s", ConnectionKind::PutMedia), 0);
        assert!(limiter.connect("s", ConnectionKind::PutMedia, 0).is_ok());
        drop(readers);
        assert_eq!(limiter.open("s", ConnectionKind::GetMedia), 0);
    }

    #[test]
    fn fragment_list_readers_beyond_five_get_client_limit_exceeded() {
        let limiter = Arc::new(Limiter::default());
        let _held: Vec<ConnectionSlot> = (0..5)
            .map(|_| {
                limiter
                    .connect("s", ConnectionKind::GetMediaForFragmentList, 0)
                    .expect("five readers")
            })
            .collect();
        let error = limiter
            .connect("s", ConnectionKind::GetMediaForFragmentList, 0)
            .expect_err("a sixth reader");
        assert_eq!(
            VideoError::from(error).type_name(),
            "ClientLimitExceededException"
        );
    }

    #[test]
    fn with_limits_off_nothing_is_refused_or_paced() {
        let limiter = Arc::new(Limiter::new(VideoLimits {
            enabled: false,
            ..VideoLimits::default()
        }));
        for _ in 0..100 {
            assert!(limiter.admit("s", CallKind::GetClip, 0).is_ok());
        }
        let slots: Vec<ConnectionSlot> = (0..10)
            .map(|_| {
                limiter
                    .connect("s", ConnectionKind::PutMedia, 0)
                    .expect("unlimited")
            })
            .collect();
        assert_eq!(slots.len(), 10);
        assert_eq!(limiter.reserve_fragments("s", 1000, 0), Duration::ZERO);
        let pacing = limiter.put_media_pacing("s");
        assert!(pacing.fragments.is_none());
        assert!(pacing.bytes_per_second.is_none());
        assert!(pacing.connection_duration.is_none());
        assert!(
            limiter
                .reader_bytes_per_second(ConnectionKind::GetMedia)
                .is_none()
        );
    }

    #[test]
    fn the_fragment_rate_is_shared_by_a_streams_sessions() {
        let limiter = Arc::new(Limiter::default());
        let one = limiter.put_media_pacing("s");
        let two = limiter.put_media_pacing("s");
        let (one, two) = (one.fragments.expect("paced"), two.fragments.expect("paced"));
        assert_eq!(one.reserve(3, 0), Duration::ZERO);
        assert_eq!(two.reserve(2, 0), Duration::ZERO);
        assert_eq!(one.reserve(1, 0), Duration::from_millis(200));
        assert_eq!(limiter.reserve_fragments("other", 5, 0), Duration::ZERO);
    }

    #[test]
    fn idle_streams_are_pruned_and_busy_ones_kept() {
        let limiter = Arc::new(Limiter::default());
        let _busy = limiter
            .connect("busy", ConnectionKind::GetMedia, 0)
            .expect("a reader");
        limiter
            .admit("spent", CallKind::GetClip, 0)
            .expect("the first GetClip");
        // Two streams so far; these fill the map up to the size that prunes on the next new one.
        for i in 0..PRUNE_AT_MIN - 2 {
            limiter
                .admit(&format!("idle-{i}"), CallKind::ListFragments, 0)
                .expect("admitted");
        }
        // Much later every bucket is full again: only the stream with a connection is kept.
        limiter
            .admit("new", CallKind::ListFragments, 100_000)
            .expect("admitted");
        let streams = limiter.lock();
        assert!(streams.by_stream.contains_key("busy"));
        assert!(!streams.by_stream.contains_key("spent"));
        assert!(!streams.by_stream.contains_key("idle-0"));
        assert_eq!(streams.by_stream.len(), 2);
    }

    #[test]
    fn limits_are_set_by_key_and_bad_settings_are_refused() {
        let mut limits = VideoLimits::default();
        limits
            .set("put_media_connection_duration_ms", 2_000)
            .expect("a key");
        assert_eq!(limits.put_media_connection_duration_ms, 2_000);
        limits.set("get_media_connections_max", 4).expect("a key");
        assert_eq!(limits.get_media_connections_max, 4);
        assert!(matches!(
            limits.set("nope", 1),
            Err(LimitSettingError::UnknownKey { .. })
        ));
        assert!(matches!(
            limits.set("get_clip_calls_per_second", 0),
            Err(LimitSettingError::Zero { .. })
        ));
        assert!(matches!(
            limits.set("put_media_connections_max", u64::from(u32::MAX) + 1),
            Err(LimitSettingError::TooLarge { .. })
        ));
        for key in VideoLimits::KEYS {
            assert!(VideoLimits::default().set(key, 7).is_ok(), "{key}");
        }
    }

    #[test]
    fn a_paced_body_waits_for_its_bandwidth_and_releases_its_slot_at_the_end() {
        use std::sync::atomic::{AtomicU64, Ordering};

        let limiter = Arc::new(Limiter::default());
        let slot = limiter
            .connect("s", ConnectionKind::GetMedia, 0)
            .expect("a reader");
        // A fake clock that the fake sleep advances: no wall-clock time passes.
        let now = Arc::new(AtomicU64::new(0));
        let slept = Arc::new(AtomicU64::new(0));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let sleep: Sleep = {
            let (now, slept) = (now.clone(), slept.clone());
            Arc::new(move |wait: Duration| {
                let ms = u64::try_from(wait.as_millis()).expect("short waits");
                now.fetch_add(ms, Ordering::SeqCst);
                slept.fetch_add(ms, Ordering::SeqCst);
                Box::pin(async {})
            })
        };
        let chunks = (0..4).map(|_| Bytes::from(vec![0u8; 500]));
        let body = paced_body(
            futures_lite::stream::iter(chunks),
            Some(1_000),
            slot,
            sleep,
            clock,
        );
        let got: Vec<Bytes> = futures_lite::future::block_on(body.collect());
        assert_eq!(got.len(), 4);
        // 2000 bytes at 1000 a second with a 1000-byte burst: one second of waiting.
        assert_eq!(slept.load(Ordering::SeqCst), 1_000);
        assert_eq!(limiter.open("s", ConnectionKind::GetMedia), 0);
    }
}
