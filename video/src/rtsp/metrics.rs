//! RTSP ingest's metrics, per source, as Prometheus text on `/metrics`.
//!
//! Names are `video_rtsp_<name>_<unit>[_total]`, from the closed list in [`render`]; the
//! `stream` label is one of the configured sources, so the series are bounded by the
//! configuration. Counters move per session or per fragment, never per frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a source is not ingesting: the `error_type` label of `video_rtsp_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// The video stream does not exist, is being deleted, or its internal stream is not ready.
    Stream = 0,
    /// DESCRIBE, SETUP or PLAY failed (camera unreachable, refused, wrong credentials or path).
    Connect = 1,
    /// The camera offers no H.264 video track.
    Unsupported = 2,
    /// The session broke after PLAY: the connection dropped, the camera went silent, or the
    /// RTP could not be depacketized.
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

/// One source's counters.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    sessions: AtomicU64,
    connected: AtomicU64,
    fragments: AtomicU64,
    fragment_bytes: AtomicU64,
    frames_dropped: AtomicU64,
    errors: [AtomicU64; 5],
}

impl SourceMetrics {
    /// A session reached PLAY.
    pub fn session_started(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.connected.store(1, Ordering::Relaxed);
    }

    /// The session ended (or never started).
    pub fn session_ended(&self) {
        self.connected.store(0, Ordering::Relaxed);
    }

    /// A fragment of `bytes` (its Cluster) was stored.
    pub fn fragment_stored(&self, bytes: usize) {
        self.fragments.fetch_add(1, Ordering::Relaxed);
        self.fragment_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `frames` frames were dropped (before the first keyframe, or out of time order).
    pub fn frames_dropped(&self, frames: u64) {
        self.frames_dropped.fetch_add(frames, Ordering::Relaxed);
    }

    pub fn error(&self, error_type: ErrorType) {
        self.errors[error_type as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A series: its name, Prometheus type, help text, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SourceMetrics) -> u64,
);

/// Prometheus text for `sources` (stream name, metrics).
pub fn render<'a>(sources: impl Iterator<Item = (&'a str, &'a SourceMetrics)> + Clone) -> String {
    let mut out = String::new();
    let series: [Series; 5] = [
        (
            "video_rtsp_sessions_total",
            "counter",
            "RTSP sessions that reached PLAY, per source.",
            |m| m.sessions.load(Ordering::Relaxed),
        ),
        (
            "video_rtsp_connected",
            "gauge",
            "1 while the source's RTSP session is playing.",
            |m| m.connected.load(Ordering::Relaxed),
        ),
        (
            "video_rtsp_fragments_total",
            "counter",
            "Fragments stored from the source.",
            |m| m.fragments.load(Ordering::Relaxed),
        ),
        (
            "video_rtsp_fragment_bytes_total",
            "counter",
            "Bytes of the fragments (Clusters) stored from the source.",
            |m| m.fragment_bytes.load(Ordering::Relaxed),
        ),
        (
            "video_rtsp_frames_dropped_total",
            "counter",
            "Frames dropped: before a session's first keyframe, or too far out of time order.",
            |m| m.frames_dropped.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (stream, metrics) in sources.clone() {
            let _ = writeln!(out, "{name}{{stream=\"{stream}\"}} {}", value(metrics));
        }
    }
    let name = "video_rtsp_errors_total";
    let _ = writeln!(
        out,
        "# HELP {name} Failures of the source, by kind; each is followed by a reconnect with backoff.\n# TYPE {name} counter"
    );
    for (stream, metrics) in sources {
        for error_type in ERROR_TYPES {
            let _ = writeln!(
                out,
                "{name}{{stream=\"{stream}\",error_type=\"{}\"}} {}",
                error_type.as_str(),
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
        let camera = SourceMetrics::default();
        camera.session_started();
        camera.fragment_stored(1_000);
        camera.error(ErrorType::Media);
        let text = render([("cam", &camera)].into_iter());
        assert!(text.contains("video_rtsp_sessions_total{stream=\"cam\"} 1\n"));
        assert!(text.contains("video_rtsp_connected{stream=\"cam\"} 1\n"));
        assert!(text.contains("video_rtsp_fragment_bytes_total{stream=\"cam\"} 1000\n"));
        assert!(text.contains("video_rtsp_errors_total{stream=\"cam\",error_type=\"media\"} 1\n"));
        assert!(
            text.contains("video_rtsp_errors_total{stream=\"cam\",error_type=\"storage\"} 0\n")
        );
        camera.session_ended();
        assert!(
            render([("cam", &camera)].into_iter())
                .contains("video_rtsp_connected{stream=\"cam\"} 0\n")
        );
    }
}
