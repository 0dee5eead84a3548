//! RTMP ingest: Sluice listens for RTMP publishers (ffmpeg, OBS, cameras and encoders that push
//! RTMP) and stores what they push — H.264 video, and AAC audio when they send it — in the Kinesis
//! video stream their stream key names, exactly as a producer's PutMedia would (see `ingest`).
//! Configured with `--rtmp-addr ADDR` (or `rtmp_addr` in the config file); off by default.
//!
//! A publisher pushes to `rtmp://HOST:PORT/APP/STREAM`: the stream key is the name of a video
//! stream that must exist (CreateStream); the application name is not used. A publish into an
//! unknown or not-yet-active stream, or into a stream another publisher is feeding, is refused
//! (`NetStream.Publish.BadName`), logged and counted.
//!
//! - `chunk`: a check of the publisher's chunk stream before rml_rtmp parses it (pure): rml_rtmp
//!   panics on some malformed input, which would abort a release build.
//! - `flv`: the FLV tag bodies RTMP carries (pure).
//! - `server`: the listener and one task per connection: the RTMP handshake and chunk stream
//!   (rml_rtmp's sans-I/O `ServerSession`), the publish, and its frames into fragments.
//!
//! Threads: the listener is a tokio `TcpListener` on a current-thread runtime of its own
//! (`sluice-rtmp`), never on a shard core, like RTSP ingest; it asks core 0 over a channel to
//! bring a stream's internal stream in line with its definition
//! ([`RtmpIngest::answer_status_requests`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_core::KinesisApi;
use sluice_core::storage::RecordLog;

pub mod chunk;
pub mod flv;
mod server;

pub use server::ConnectionError;

use crate::ingest::metrics::{self, IngestMetrics, Protocol};
use crate::ingest::{IngestContext, spawn_thread};
use crate::media::Clock;
use crate::service::VideoShared;

/// The RTMP ingest of the server: where it listens, its metrics, and the thread that serves it.
#[derive(Clone)]
pub struct RtmpIngest {
    inner: Arc<Inner>,
}

struct Inner {
    addr: Option<SocketAddr>,
    context: IngestContext,
    metrics: Arc<IngestMetrics>,
    started: AtomicBool,
}

impl std::fmt::Debug for RtmpIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtmpIngest")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl RtmpIngest {
    /// The ingest of publishers connecting to `addr` (`None`: off) into the streams of
    /// `shared`; `clock` is the wall clock that stamps fragments (epoch milliseconds).
    pub fn new(addr: Option<SocketAddr>, shared: &VideoShared, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                addr,
                context: IngestContext::new(shared, clock),
                metrics: Arc::default(),
                started: AtomicBool::new(false),
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.addr.is_some()
    }

    /// Binds the listener and starts the `sluice-rtmp` thread that serves it, storing through
    /// `storage`; answers the bound address (`None` when off or already started). Fails when
    /// the address cannot be bound or the thread cannot be created.
    pub fn start<R: RecordLog>(&self, storage: R) -> std::io::Result<Option<SocketAddr>> {
        let Some(addr) = self.inner.addr else {
            return Ok(None);
        };
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        // Bound here, on the caller's thread, so that a taken port stops the server at start.
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let target = self.inner.context.target(storage);
        let metrics = self.inner.metrics.clone();
        spawn_thread("sluice-rtmp", move |local| {
            local.spawn_local(server::serve(listener, target, metrics));
        })?;
        tracing::info!(addr = %bound, "RTMP ingest listening.");
        Ok(Some(bound))
    }

    /// Answers the RTMP thread's status requests with `api` (a shard core's Kinesis API); core
    /// 0 runs this for the server's life.
    pub async fn answer_status_requests<A: KinesisApi>(self, api: A) {
        self.inner.context.answer_status_requests(api).await;
    }

    /// `video_rtmp_*` as Prometheus text (nothing when RTMP ingest is off).
    pub fn render_metrics(&self) -> String {
        if !self.is_enabled() {
            return String::new();
        }
        metrics::render(
            Protocol::Rtmp,
            [(None, self.inner.metrics.as_ref())].into_iter(),
        )
    }
}
