//! The metrics of RTSP and RTMP ingest, as Prometheus text on `/metrics`.
//!
//! Names are `video_<protocol>_<name>_<unit>[_total]`, from the closed list in [`render`] and the
//! closed [`Protocol`] enum. Labels are bounded: RTSP's `stream` label is one of the configured
//! sources; RTMP's series carry no stream label, because a publisher chooses its stream key and
//! the keys a listener is offered are not bounded by the configuration. Counters move per
//! session or per fragment, never per frame.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The ingest a series belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rtsp,
    Rtmp,
}

impl Protocol {
    const fn prefix(self) -> &'static str {
        match self {
            Self::Rtsp => "video_rtsp",
            Self::Rtmp => "video_rtmp",
        }
    }

    const fn sessions_help(self) -> &'static str {
        match self {
            Self::Rtsp => "RTSP sessions that reached PLAY, per source.",
            Self::Rtmp => "RTMP publishes accepted into an existing video stream.",
        }
    }

    const fn connected_help(self) -> &'static str {
        match self {
            Self::Rtsp => "1 while the source's RTSP session is playing.",
            Self::Rtmp => "RTMP publishers storing fragments now.",
        }
    }

    const fn errors_help(self) -> &'static str {
        match self {
            Self::Rtsp => {
                "Failures of the source, by kind; each is followed by a reconnect with backoff."
            }
            Self::Rtmp => {
                "RTMP connections refused or ended by a failure, by kind (the publisher reconnects)."
            }
        }
    }
}

/// Why a source is not ingesting: the `error_type` label of `video_<protocol>_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The video stream does not exist, is being deleted, its internal stream is not ready, or
    /// (RTMP) another publisher already feeds it.
    Stream = 0,
    /// RTSP: DESCRIBE, SETUP or PLAY failed (camera unreachable, refused, wrong credentials or
    /// path). RTMP: the handshake or the commands before the publish failed.
    Connect = 1,
    /// No H.264 video: the camera offers none, or the publisher sends another codec.
    Unsupported = 2,
    /// The session broke after it started: the connection dropped, the source went silent, or
    /// its media could not be read.
    Media = 3,
    /// A fragment could not be stored.
    Storage = 4,
}

const ERROR_TYPES: [ErrorType; 5] = [
    ErrorType::Stream,
    ErrorType::Connect,
    ErrorType::Unsupported,
    ErrorType::Media,
    ErrorType::Storage,
];

impl ErrorType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Connect => "connect",
            Self::Unsupported => "unsupported",
            Self::Media => "media",
            Self::Storage => "storage",
        }
    }
}

/// The counters of one RTSP source, or of the whole RTMP listener.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    sessions: AtomicU64,
    connected: AtomicU64,
    fragments: AtomicU64,
    fragment_bytes: AtomicU64,
    frames_dropped: AtomicU64,
    errors: [AtomicU64; 5],
}

/// A session counted in `connected` until this is dropped, however the session ends.
#[derive(Debug)]
#[must_use = "the session counts as connected only while this is held"]
pub struct Connected(Arc<IngestMetrics>);

impl Drop for Connected {
    fn drop(&mut self) {
        let before = self.0.connected.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "every Connected was counted once");
    }
}

impl IngestMetrics {
    /// A session started (an RTSP PLAY, an accepted RTMP publish); it is connected until the
    /// returned guard is dropped.
    pub fn session_started(self: &Arc<Self>) -> Connected {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.connected.fetch_add(1, Ordering::Relaxed);
        Connected(self.clone())
    }

    /// A fragment of `bytes` (its Cluster) was stored.
    pub fn fragment_stored(&self, bytes: usize) {
        self.fragments.fetch_add(1, Ordering::Relaxed);
        self.fragment_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `frames` frames were dropped (before the first keyframe, out of time order, or of a
    /// track the fragment does not declare).
    pub fn frames_dropped(&self, frames: u64) {
        self.frames_dropped.fetch_add(frames, Ordering::Relaxed);
    }

    pub fn error(&self, error_type: ErrorType) {
        self.errors[error_type as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A series: its name after the protocol prefix, Prometheus type, help text, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&IngestMetrics) -> u64,
);

/// Prometheus text for `sources`: each one's `stream` label (`None`: no label) and metrics.
pub fn render<'a>(
    protocol: Protocol,
    sources: impl Iterator<Item = (Option<&'a str>, &'a IngestMetrics)> + Clone,
) -> String {
    let prefix = protocol.prefix();
    let labels = |stream: Option<&str>, more: &str| match (stream, more.is_empty()) {
        (None, true) => String::new(),
        (None, false) => format!("{{{more}}}"),
        (Some(stream), true) => format!("{{stream=\"{stream}\"}}"),
        (Some(stream), false) => format!("{{stream=\"{stream}\",{more}}}"),
    };
    let mut out = String::new();
    let series: [Series; 5] = [
        ("sessions_total", "counter", protocol.sessions_help(), |m| {
            m.sessions.load(Ordering::Relaxed)
        }),
        ("connected", "gauge", protocol.connected_help(), |m| {
            m.connected.load(Ordering::Relaxed)
        }),
        (
            "fragments_total",
            "counter",
            "Fragments stored from the source.",
            |m| m.fragments.load(Ordering::Relaxed),
        ),
        (
            "fragment_bytes_total",
            "counter",
            "Bytes of the fragments (Clusters) stored from the source.",
            |m| m.fragment_bytes.load(Ordering::Relaxed),
        ),
        (
            "frames_dropped_total",
            "counter",
            "Frames dropped: before a session's first keyframe, too far out of time order, or of an undeclared track.",
            |m| m.frames_dropped.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}"
        );
        for (stream, metrics) in sources.clone() {
            let _ = writeln!(
                out,
                "{prefix}_{name}{} {}",
                labels(stream, ""),
                value(metrics)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP {prefix}_errors_total {}\n# TYPE {prefix}_errors_total counter",
        protocol.errors_help()
    );
    for (stream, metrics) in sources {
        for error_type in ERROR_TYPES {
            let label = format!("error_type=\"{}\"", error_type.as_str());
            let _ = writeln!(
                out,
                "{prefix}_errors_total{} {}",
                labels(stream, &label),
                metrics.errors[error_type as usize].load(Ordering::Relaxed)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_rendered_for_every_source_with_its_stream_label() {
        let camera = Arc::new(IngestMetrics::default());
        let connected = camera.session_started();
        camera.fragment_stored(1_000);
        camera.error(ErrorType::Media);
        let text = render(Protocol::Rtsp, [(Some("cam"), camera.as_ref())].into_iter());
        assert!(text.contains("video_rtsp_sessions_total{stream=\"cam\"} 1\n"));
        assert!(text.contains("video_rtsp_connected{stream=\"cam\"} 1\n"));
        assert!(text.contains("video_rtsp_fragment_bytes_total{stream=\"cam\"} 1000\n"));
        assert!(text.contains("video_rtsp_errors_total{stream=\"cam\",error_type=\"media\"} 1\n"));
        assert!(
            text.contains("video_rtsp_errors_total{stream=\"cam\",error_type=\"storage\"} 0\n")
        );
        drop(connected);
        assert!(
            render(Protocol::Rtsp, [(Some("cam"), camera.as_ref())].into_iter())
                .contains("video_rtsp_connected{stream=\"cam\"} 0\n")
        );
    }

    #[test]
    fn rtmp_series_have_no_stream_label_and_count_concurrent_publishers() {
        let listener = Arc::new(IngestMetrics::default());
        let first = listener.session_started();
        let second = listener.session_started();
        listener.error(ErrorType::Stream);
        let text = render(Protocol::Rtmp, [(None, listener.as_ref())].into_iter());
        assert!(text.contains("video_rtmp_sessions_total 2\n"));
        assert!(text.contains("video_rtmp_connected 2\n"));
        assert!(text.contains("video_rtmp_errors_total{error_type=\"stream\"} 1\n"));
        assert!(text.contains("# TYPE video_rtmp_fragments_total counter\n"));
        drop((first, second));
        assert!(
            render(Protocol::Rtmp, [(None, listener.as_ref())].into_iter())
                .contains("video_rtmp_connected 0\n")
        );
    }
}
