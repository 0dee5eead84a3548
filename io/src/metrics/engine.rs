//! The engine's own metrics: segment fdatasync latency and records per group commit
//! (histograms per core), the segment files open across all logs (a gauge), and the messages
//! queued for and taken off each core's queue (two counters, not a depth gauge).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::registry::{QUEUE_CORES_MAX, with_local};

/// Upper bounds of the fsync latency buckets, in seconds.
pub(super) const FSYNC_BUCKETS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Upper bounds of the group-commit size buckets, in records.
pub(super) const GROUP_COMMIT_BUCKETS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

pub(super) struct Histogram<const N: usize> {
    pub bounds: &'static [f64; N],
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    pub buckets: Vec<AtomicU64>,
    pub count: AtomicU64,
    /// The sum, in the histogram's unit times 1e6 (so microseconds for seconds), to stay integer.
    pub sum_micro: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub(super) fn new(bounds: &'static [f64; N]) -> Self {
        Self {
            bounds,
            buckets: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(N);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Segment files open across all logs (a gauge: it rises and falls).
pub(super) static SEGMENTS: AtomicI64 = AtomicI64::new(0);

/// One segment fdatasync and how long it took.
pub fn observe_fsync(elapsed: Duration) {
    with_local(|local| local.registry.fsync.observe(elapsed.as_secs_f64()));
}

/// One group commit of `records` records.
pub fn observe_group_commit(records: usize) {
    with_local(|local| local.registry.group_commit.observe(records as f64));
}

/// A log's segment count changed from `before` to `after`.
pub fn segments_changed(before: usize, after: usize) {
    SEGMENTS.fetch_add(after as i64 - before as i64, Ordering::Relaxed);
}

/// A message was queued for core `to`.
pub fn queue_pushed(to: usize) {
    if to < QUEUE_CORES_MAX {
        with_local(|local| local.registry.queue_pushed[to].fetch_add(1, Ordering::Relaxed));
    }
}

/// This core took a message off its queue.
pub fn queue_popped() {
    with_local(|local| local.registry.queue_popped.fetch_add(1, Ordering::Relaxed));
}
