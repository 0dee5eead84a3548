//! Metrics: the CloudWatch metrics of Kinesis Data Streams per stream (and per shard where
//! EnableEnhancedMonitoring turned them on), plus the engine's own, rendered as Prometheus text
//! by [`Engine::render_metrics`](crate::engine::Engine::render_metrics) for `GET /metrics`.
//!
//! Invariants:
//! - One registry per executor thread ("core"): every counter a thread bumps is its own, so
//!   the hot path is a thread-local map lookup plus a few relaxed atomic adds per batch, never
//!   per record and never a shared lock. A scrape sums the registries of all threads.
//! - Metric names are fixed: the Kinesis ones come from the closed enums [`StreamMetric`],
//!   [`StreamGauge`] and [`ShardMetric`], the engine's are literals in the renderer; nothing
//!   builds a name from data.
//! - Labels are bounded: at most [`stream_labels_max`] streams (and
//!   [`SHARD_LABELS_PER_STREAM_MAX`] shards each) get their own labels per thread; the rest
//!   are counted under `stream="_other"`. Queue counters are labelled by destination core, up
//!   to [`QUEUE_CORES_MAX`] cores.
//! - Gauges that CloudWatch reports as "the last value" (iterator age, millis behind latest)
//!   keep the last value any thread stored; a scrape shows the maximum over threads.
//!
//! Modules: [`registry`] the per-thread registries and the label caps; [`kinesis`] the Kinesis
//! metrics and the calls that record them; [`engine`] the engine's own (fsync, group commit,
//! segments, core queues); [`prometheus`] the text `GET /metrics` serves.

mod engine;
mod kinesis;
mod prometheus;
mod registry;

pub use engine::{
    observe_fsync, observe_group_commit, queue_popped, queue_pushed, segments_changed,
};
pub use kinesis::{
    ShardMetric, StreamGauge, StreamMetric, WriteCall, entry_sizes, record_get_records,
    record_read_throttled, record_subscribe, record_subscribe_event, record_writes,
};
pub use prometheus::render;
pub use registry::{
    QUEUE_CORES_MAX, SHARD_LABELS_PER_STREAM_MAX, set_stream_labels_max, stream_labels_max,
};
