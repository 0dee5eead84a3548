//! Metrics: the CloudWatch metrics of Kinesis Data Streams per stream (and per shard where
//! EnableEnhancedMonitoring turned them on), plus the engine's own, rendered as Prometheus text
//! by [`Engine::render_metrics`] for `GET /metrics`.
//!
//! Invariants:
//! - One registry per executor thread ("core"): every counter a thread bumps is its own, so
//!   the hot path is a thread-local map lookup plus a few relaxed atomic adds per batch, never
//!   per record and never a shared lock. A scrape sums the registries of all threads.
//! - Metric names come from the closed enums below; nothing builds a name from data.
//! - Labels are bounded: at most [`stream_labels_max`] streams (and
//!   [`SHARD_LABELS_PER_STREAM_MAX`] shards each) get their own labels per thread; the rest
//!   are counted under `stream="_other"`. Queue counters are labelled by destination core, up
//!   to [`QUEUE_CORES_MAX`] cores.
//! - Gauges that CloudWatch reports as "the last value" (iterator age, millis behind latest)
//!   keep the last value any thread stored; a scrape shows the maximum over threads.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sluice_core::api::{PutRecordsEntry, PutRecordsResultEntry, RecordBatch};
use sluice_core::shard_id::parse_shard_id;
use sluice_core::{ErrorKind, KinesisError};

use crate::engine::Engine;

/// Per-stream label sets each thread keeps before folding further streams into `_other`.
static STREAM_LABELS_MAX: AtomicUsize = AtomicUsize::new(1_000);
/// Shards of one stream with their own labels.
pub const SHARD_LABELS_PER_STREAM_MAX: usize = 10_000;
/// Destination cores the queue counters distinguish.
pub const QUEUE_CORES_MAX: usize = 256;
const OTHER_STREAM: &str = "_other";

/// Sets the per-stream label cap (the server's `--metrics-streams-max`).
pub fn set_stream_labels_max(max: usize) {
    STREAM_LABELS_MAX.store(max, Ordering::Relaxed);
}

pub fn stream_labels_max() -> usize {
    STREAM_LABELS_MAX.load(Ordering::Relaxed)
}

/// Per-stream counters (CloudWatch stream-level metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMetric {
    IncomingBytes,
    IncomingRecords,
    PutRecordSuccess,
    PutRecordBytes,
    PutRecordsSuccess,
    PutRecordsRecords,
    PutRecordsSuccessfulRecords,
    PutRecordsFailedRecords,
    PutRecordsThrottledRecords,
    PutRecordsBytes,
    GetRecordsSuccess,
    GetRecordsRecords,
    GetRecordsBytes,
    SubscribeToShardSuccess,
    SubscribeToShardEvents,
    SubscribeToShardEventRecords,
    SubscribeToShardEventBytes,
    WriteProvisionedThroughputExceeded,
    ReadProvisionedThroughputExceeded,
}

impl StreamMetric {
    const ALL: [Self; 19] = [
        Self::IncomingBytes,
        Self::IncomingRecords,
        Self::PutRecordSuccess,
        Self::PutRecordBytes,
        Self::PutRecordsSuccess,
        Self::PutRecordsRecords,
        Self::PutRecordsSuccessfulRecords,
        Self::PutRecordsFailedRecords,
        Self::PutRecordsThrottledRecords,
        Self::PutRecordsBytes,
        Self::GetRecordsSuccess,
        Self::GetRecordsRecords,
        Self::GetRecordsBytes,
        Self::SubscribeToShardSuccess,
        Self::SubscribeToShardEvents,
        Self::SubscribeToShardEventRecords,
        Self::SubscribeToShardEventBytes,
        Self::WriteProvisionedThroughputExceeded,
        Self::ReadProvisionedThroughputExceeded,
    ];

    /// The Prometheus name, and the CloudWatch metric it stands for (for HELP).
    pub const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::IncomingBytes => ("kinesis_incoming_bytes_total", "IncomingBytes"),
            Self::IncomingRecords => ("kinesis_incoming_records_total", "IncomingRecords"),
            Self::PutRecordSuccess => ("kinesis_put_record_success_total", "PutRecord.Success"),
            Self::PutRecordBytes => ("kinesis_put_record_bytes_total", "PutRecord.Bytes"),
            Self::PutRecordsSuccess => ("kinesis_put_records_success_total", "PutRecords.Success"),
            Self::PutRecordsRecords => (
                "kinesis_put_records_records_total",
                "PutRecords.TotalRecords",
            ),
            Self::PutRecordsSuccessfulRecords => (
                "kinesis_put_records_successful_records_total",
                "PutRecords.SuccessfulRecords",
            ),
            Self::PutRecordsFailedRecords => (
                "kinesis_put_records_failed_records_total",
                "PutRecords.FailedRecords",
            ),
            Self::PutRecordsThrottledRecords => (
                "kinesis_put_records_throttled_records_total",
                "PutRecords.ThrottledRecords",
            ),
            Self::PutRecordsBytes => ("kinesis_put_records_bytes_total", "PutRecords.Bytes"),
            Self::GetRecordsSuccess => ("kinesis_get_records_success_total", "GetRecords.Success"),
            Self::GetRecordsRecords => ("kinesis_get_records_records_total", "GetRecords.Records"),
            Self::GetRecordsBytes => ("kinesis_get_records_bytes_total", "GetRecords.Bytes"),
            Self::SubscribeToShardSuccess => (
                "kinesis_subscribe_to_shard_success_total",
                "SubscribeToShard.Success",
            ),
            Self::SubscribeToShardEvents => (
                "kinesis_subscribe_to_shard_events_total",
                "SubscribeToShardEvent.Success",
            ),
            Self::SubscribeToShardEventRecords => (
                "kinesis_subscribe_to_shard_event_records_total",
                "SubscribeToShardEvent.Records",
            ),
            Self::SubscribeToShardEventBytes => (
                "kinesis_subscribe_to_shard_event_bytes_total",
                "SubscribeToShardEvent.Bytes",
            ),
            Self::WriteProvisionedThroughputExceeded => (
                "kinesis_write_provisioned_throughput_exceeded_total",
                "WriteProvisionedThroughputExceeded",
            ),
            Self::ReadProvisionedThroughputExceeded => (
                "kinesis_read_provisioned_throughput_exceeded_total",
                "ReadProvisionedThroughputExceeded",
            ),
        }
    }
}

/// Per-stream "last value" gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamGauge {
    GetRecordsIteratorAgeMilliseconds,
    SubscribeToShardEventMillisBehindLatest,
}

impl StreamGauge {
    const ALL: [Self; 2] = [
        Self::GetRecordsIteratorAgeMilliseconds,
        Self::SubscribeToShardEventMillisBehindLatest,
    ];

    pub const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::GetRecordsIteratorAgeMilliseconds => (
                "kinesis_get_records_iterator_age_milliseconds",
                "GetRecords.IteratorAgeMilliseconds",
            ),
            Self::SubscribeToShardEventMillisBehindLatest => (
                "kinesis_subscribe_to_shard_event_millis_behind_latest",
                "SubscribeToShardEvent.MillisBehindLatest",
            ),
        }
    }
}

/// The shard-level metrics of EnableEnhancedMonitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardMetric {
    IncomingBytes,
    IncomingRecords,
    OutgoingBytes,
    OutgoingRecords,
    WriteProvisionedThroughputExceeded,
    ReadProvisionedThroughputExceeded,
    /// A gauge (last value), the others are counters.
    IteratorAgeMilliseconds,
}

impl ShardMetric {
    const ALL: [Self; 7] = [
        Self::IncomingBytes,
        Self::IncomingRecords,
        Self::OutgoingBytes,
        Self::OutgoingRecords,
        Self::WriteProvisionedThroughputExceeded,
        Self::ReadProvisionedThroughputExceeded,
        Self::IteratorAgeMilliseconds,
    ];

    /// The Prometheus name and the `ShardLevelMetrics` value that enables it.
    pub const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::IncomingBytes => ("kinesis_shard_incoming_bytes_total", "IncomingBytes"),
            Self::IncomingRecords => ("kinesis_shard_incoming_records_total", "IncomingRecords"),
            Self::OutgoingBytes => ("kinesis_shard_outgoing_bytes_total", "OutgoingBytes"),
            Self::OutgoingRecords => ("kinesis_shard_outgoing_records_total", "OutgoingRecords"),
            Self::WriteProvisionedThroughputExceeded => (
                "kinesis_shard_write_provisioned_throughput_exceeded_total",
                "WriteProvisionedThroughputExceeded",
            ),
            Self::ReadProvisionedThroughputExceeded => (
                "kinesis_shard_read_provisioned_throughput_exceeded_total",
                "ReadProvisionedThroughputExceeded",
            ),
            Self::IteratorAgeMilliseconds => (
                "kinesis_shard_iterator_age_milliseconds",
                "IteratorAgeMilliseconds",
            ),
        }
    }

    const fn is_gauge(self) -> bool {
        matches!(self, Self::IteratorAgeMilliseconds)
    }
}

#[derive(Default)]
struct StreamCounters {
    counters: [AtomicU64; StreamMetric::ALL.len()],
    gauges: [AtomicU64; StreamGauge::ALL.len()],
}

#[derive(Default)]
struct ShardCounters {
    values: [AtomicU64; ShardMetric::ALL.len()],
}

/// Upper bounds of the fsync latency buckets, in seconds.
const FSYNC_BUCKETS_S: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];
/// Upper bounds of the group-commit size buckets, in records.
const GROUP_COMMIT_BUCKETS: [f64; 14] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, in the histogram's unit times 1e6 (so microseconds for seconds), to stay integer.
    sum_micro: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Self {
            bounds,
            buckets: (0..=N).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let slot = self.bounds.iter().position(|b| value <= *b).unwrap_or(N);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }
}

/// One thread's registry.
struct CoreRegistry {
    core: String,
    streams: Mutex<HashMap<String, Arc<StreamCounters>>>,
    shards: Mutex<HashMap<(String, u32), Arc<ShardCounters>>>,
    fsync: Histogram<{ FSYNC_BUCKETS_S.len() }>,
    group_commit: Histogram<{ GROUP_COMMIT_BUCKETS.len() }>,
    queue_pushed: Vec<AtomicU64>,
    queue_popped: AtomicU64,
}

/// Every thread's registry, in registration order.
static REGISTRIES: LazyLock<Mutex<Vec<Arc<CoreRegistry>>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));
/// Segment files open across all logs (a gauge: it rises and falls).
static SEGMENTS: AtomicI64 = AtomicI64::new(0);

struct Local {
    registry: Arc<CoreRegistry>,
    streams: HashMap<String, Arc<StreamCounters>>,
    shards: HashMap<(String, u32), Arc<ShardCounters>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Registries hold counters only; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with this thread's registry, creating and registering it on first use.
fn with_local<T>(f: impl FnOnce(&mut Local) -> T) -> T {
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let local = slot.get_or_insert_with(|| {
            let core = std::thread::current()
                .name()
                .and_then(|n| n.strip_prefix("sluice-core-"))
                // glommio appends its own executor id: `sluice-core-<core>-<id>`.
                .and_then(|rest| rest.split('-').next())
                .unwrap_or("other")
                .to_owned();
            let registry = Arc::new(CoreRegistry {
                core,
                streams: Mutex::new(HashMap::new()),
                shards: Mutex::new(HashMap::new()),
                fsync: Histogram::new(&FSYNC_BUCKETS_S),
                group_commit: Histogram::new(&GROUP_COMMIT_BUCKETS),
                queue_pushed: (0..QUEUE_CORES_MAX).map(|_| AtomicU64::new(0)).collect(),
                queue_popped: AtomicU64::new(0),
            });
            lock(&REGISTRIES).push(registry.clone());
            Local {
                registry,
                streams: HashMap::new(),
                shards: HashMap::new(),
            }
        });
        f(local)
    })
}

impl Local {
    fn stream(&mut self, stream_name: &str) -> Arc<StreamCounters> {
        if let Some(c) = self.streams.get(stream_name) {
            return c.clone();
        }
        let name = if self.streams.len() < stream_labels_max() {
            stream_name
        } else {
            OTHER_STREAM
        };
        let counters = lock(&self.registry.streams)
            .entry(name.to_owned())
            .or_default()
            .clone();
        if name != OTHER_STREAM {
            self.streams.insert(name.to_owned(), counters.clone());
        }
        counters
    }

    fn shard(&mut self, stream_name: &str, shard_index: u32) -> Option<Arc<ShardCounters>> {
        let key = (stream_name.to_owned(), shard_index);
        if let Some(c) = self.shards.get(&key) {
            return Some(c.clone());
        }
        if !self.streams.contains_key(stream_name)
            || shard_index as usize >= SHARD_LABELS_PER_STREAM_MAX
        {
            return None;
        }
        let counters = lock(&self.registry.shards)
            .entry(key.clone())
            .or_default()
            .clone();
        self.shards.insert(key, counters.clone());
        Some(counters)
    }
}

fn add(counters: &StreamCounters, metric: StreamMetric, n: u64) {
    if n > 0 {
        counters.counters[metric as usize].fetch_add(n, Ordering::Relaxed);
    }
}

fn add_shard(counters: &ShardCounters, metric: ShardMetric, n: u64) {
    if n > 0 {
        counters.values[metric as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// Which call a write came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCall {
    PutRecord,
    PutRecords,
}

/// The data + partition key bytes of each entry, taken before the entries move into storage.
pub fn entry_sizes(entries: &[PutRecordsEntry]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| (e.data.len() + e.partition_key.len()) as u64)
        .collect()
}

/// Counts one PutRecord or PutRecords call that reached storage: `sizes` from [`entry_sizes`],
/// `results` in the same order.
pub fn record_writes(
    stream_name: &str,
    call: WriteCall,
    sizes: &[u64],
    results: &[Result<PutRecordsResultEntry, KinesisError>],
) {
    let mut stored_bytes = 0u64;
    let mut stored = 0u64;
    let mut throttled = 0u64;
    // Per-shard sums first, so each shard costs one atomic add per batch.
    let mut per_shard: BTreeMap<u32, (u64, u64, u64)> = BTreeMap::new();
    for (size, result) in sizes.iter().zip(results) {
        match result {
            Ok(entry) => {
                stored += 1;
                stored_bytes += size;
                if let Some(index) = parse_shard_id(&entry.shard_id) {
                    let s = per_shard.entry(index).or_default();
                    s.0 += size;
                    s.1 += 1;
                }
            }
            Err(e) if e.kind == ErrorKind::ProvisionedThroughputExceeded => throttled += 1,
            Err(_) => {}
        }
    }
    let total = results.len() as u64;
    with_local(|local| {
        let c = local.stream(stream_name);
        add(&c, StreamMetric::IncomingBytes, stored_bytes);
        add(&c, StreamMetric::IncomingRecords, stored);
        add(
            &c,
            StreamMetric::WriteProvisionedThroughputExceeded,
            throttled,
        );
        match call {
            WriteCall::PutRecord => {
                add(&c, StreamMetric::PutRecordSuccess, stored);
                add(&c, StreamMetric::PutRecordBytes, stored_bytes);
            }
            WriteCall::PutRecords => {
                add(&c, StreamMetric::PutRecordsSuccess, u64::from(stored > 0));
                add(&c, StreamMetric::PutRecordsRecords, total);
                add(&c, StreamMetric::PutRecordsSuccessfulRecords, stored);
                add(&c, StreamMetric::PutRecordsFailedRecords, total - stored);
                add(&c, StreamMetric::PutRecordsThrottledRecords, throttled);
                add(&c, StreamMetric::PutRecordsBytes, stored_bytes);
            }
        }
        for (index, (bytes, records, _)) in per_shard {
            if let Some(s) = local.shard(stream_name, index) {
                add_shard(&s, ShardMetric::IncomingBytes, bytes);
                add_shard(&s, ShardMetric::IncomingRecords, records);
            }
        }
    });
}

/// What a read delivered, for GetRecords and SubscribeToShard events.
fn read_totals(records: &dyn RecordBatch, now_ms: u64) -> (u64, u64, u64) {
    let mut bytes = 0u64;
    let mut last_arrival_ms = None;
    records.for_each_record(&mut |r| {
        bytes += (r.data.len() + r.partition_key.len()) as u64;
        last_arrival_ms = Some(r.approximate_arrival_timestamp_ms);
    });
    let age = last_arrival_ms.map_or(0, |a| now_ms.saturating_sub(a));
    (records.len() as u64, bytes, age)
}

fn record_read(stream_name: &str, shard_index: u32, records: u64, bytes: u64, age_ms: u64) {
    with_local(|local| {
        if let Some(s) = local.shard(stream_name, shard_index) {
            add_shard(&s, ShardMetric::OutgoingBytes, bytes);
            add_shard(&s, ShardMetric::OutgoingRecords, records);
            s.values[ShardMetric::IteratorAgeMilliseconds as usize]
                .store(age_ms, Ordering::Relaxed);
        }
    });
}

/// Counts one successful GetRecords.
pub fn record_get_records(
    stream_name: &str,
    shard_index: u32,
    records: &dyn RecordBatch,
    now_ms: u64,
) {
    let (count, bytes, age_ms) = read_totals(records, now_ms);
    with_local(|local| {
        let c = local.stream(stream_name);
        add(&c, StreamMetric::GetRecordsSuccess, 1);
        add(&c, StreamMetric::GetRecordsRecords, count);
        add(&c, StreamMetric::GetRecordsBytes, bytes);
        c.gauges[StreamGauge::GetRecordsIteratorAgeMilliseconds as usize]
            .store(age_ms, Ordering::Relaxed);
    });
    record_read(stream_name, shard_index, count, bytes, age_ms);
}

/// Counts one started subscription.
pub fn record_subscribe(stream_name: &str) {
    with_local(|local| {
        add(
            &local.stream(stream_name),
            StreamMetric::SubscribeToShardSuccess,
            1,
        )
    });
}

/// Counts one SubscribeToShardEvent sent.
pub fn record_subscribe_event(
    stream_name: &str,
    shard_index: u32,
    records: &dyn RecordBatch,
    millis_behind_latest: u64,
    now_ms: u64,
) {
    let (count, bytes, age_ms) = read_totals(records, now_ms);
    with_local(|local| {
        let c = local.stream(stream_name);
        add(&c, StreamMetric::SubscribeToShardEvents, 1);
        add(&c, StreamMetric::SubscribeToShardEventRecords, count);
        add(&c, StreamMetric::SubscribeToShardEventBytes, bytes);
        c.gauges[StreamGauge::SubscribeToShardEventMillisBehindLatest as usize]
            .store(millis_behind_latest, Ordering::Relaxed);
    });
    record_read(stream_name, shard_index, count, bytes, age_ms);
}

/// Counts a read refused with ProvisionedThroughputExceeded.
pub fn record_read_throttled(stream_name: &str, shard_index: u32) {
    with_local(|local| {
        add(
            &local.stream(stream_name),
            StreamMetric::ReadProvisionedThroughputExceeded,
            1,
        );
        if let Some(s) = local.shard(stream_name, shard_index) {
            add_shard(&s, ShardMetric::ReadProvisionedThroughputExceeded, 1);
        }
    });
}

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

/// Escapes a label value for the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_histogram<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    parts: &[(&str, &Histogram<N>)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (core, h) in parts {
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{core=\"{core}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += h.buckets[N].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{core=\"{core}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = h.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{core=\"{core}\"}} {sum}");
        let _ = writeln!(
            out,
            "{name}_count{{core=\"{core}\"}} {}",
            h.count.load(Ordering::Relaxed)
        );
    }
}

/// Renders every registry as Prometheus text. `shard_metrics_enabled(stream)` names the
/// shard-level metrics enhanced monitoring has on for a stream (`None`: the stream is gone).
pub fn render(shard_metrics_enabled: &dyn Fn(&str) -> Option<Vec<String>>) -> String {
    let registries: Vec<Arc<CoreRegistry>> = lock(&REGISTRIES).clone();
    let mut streams: BTreeMap<
        String,
        (
            [u64; StreamMetric::ALL.len()],
            [u64; StreamGauge::ALL.len()],
        ),
    > = BTreeMap::new();
    let mut shards: BTreeMap<(String, u32), [u64; ShardMetric::ALL.len()]> = BTreeMap::new();
    for r in &registries {
        for (name, c) in lock(&r.streams).iter() {
            let entry = streams.entry(name.clone()).or_default();
            for (i, v) in c.counters.iter().enumerate() {
                entry.0[i] += v.load(Ordering::Relaxed);
            }
            for (i, v) in c.gauges.iter().enumerate() {
                entry.1[i] = entry.1[i].max(v.load(Ordering::Relaxed));
            }
        }
        for (key, c) in lock(&r.shards).iter() {
            let entry = shards.entry(key.clone()).or_default();
            for (i, metric) in ShardMetric::ALL.iter().enumerate() {
                let v = c.values[i].load(Ordering::Relaxed);
                entry[i] = if metric.is_gauge() {
                    entry[i].max(v)
                } else {
                    entry[i] + v
                };
            }
        }
    }

    let mut out = String::with_capacity(4096);
    for (i, metric) in StreamMetric::ALL.iter().enumerate() {
        let (name, cloudwatch) = metric.names();
        let _ = writeln!(
            out,
            "# HELP {name} CloudWatch {cloudwatch}, per stream.\n# TYPE {name} counter"
        );
        for (stream, (counters, _)) in &streams {
            let _ = writeln!(
                out,
                "{name}{{stream=\"{}\"}} {}",
                label(stream),
                counters[i]
            );
        }
    }
    for (i, gauge) in StreamGauge::ALL.iter().enumerate() {
        let (name, cloudwatch) = gauge.names();
        let _ = writeln!(
            out,
            "# HELP {name} CloudWatch {cloudwatch} (last value), per stream.\n# TYPE {name} gauge"
        );
        for (stream, (_, gauges)) in &streams {
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", label(stream), gauges[i]);
        }
    }
    let enabled: HashMap<&str, Option<Vec<String>>> = streams
        .keys()
        .map(|s| (s.as_str(), shard_metrics_enabled(s)))
        .collect();
    for (i, metric) in ShardMetric::ALL.iter().enumerate() {
        let (name, level_name) = metric.names();
        let kind = if metric.is_gauge() {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(
            out,
            "# HELP {name} CloudWatch shard-level {level_name} (enhanced monitoring).\n# TYPE {name} {kind}"
        );
        for ((stream, shard), values) in &shards {
            let on = enabled
                .get(stream.as_str())
                .and_then(|e| e.as_ref())
                .is_some_and(|levels| levels.iter().any(|l| l == level_name || l == "ALL"));
            if on {
                let _ = writeln!(
                    out,
                    "{name}{{stream=\"{}\",shard=\"{}\"}} {}",
                    label(stream),
                    sluice_core::shard_id::format_shard_id(*shard),
                    values[i]
                );
            }
        }
    }

    let fsync: Vec<(&str, &Histogram<{ FSYNC_BUCKETS_S.len() }>)> = registries
        .iter()
        .map(|r| (r.core.as_str(), &r.fsync))
        .collect();
    render_histogram(
        &mut out,
        "io_fsync_duration_seconds",
        "Segment fdatasync latency.",
        &fsync,
    );
    let commits: Vec<(&str, &Histogram<{ GROUP_COMMIT_BUCKETS.len() }>)> = registries
        .iter()
        .map(|r| (r.core.as_str(), &r.group_commit))
        .collect();
    render_histogram(
        &mut out,
        "io_group_commit_records",
        "Records per group commit.",
        &commits,
    );
    let _ = writeln!(
        out,
        "# HELP io_segments Segment files of all logs.\n# TYPE io_segments gauge\nio_segments {}",
        SEGMENTS.load(Ordering::Relaxed).max(0)
    );
    let mut pushed: BTreeMap<usize, u64> = BTreeMap::new();
    let mut popped: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &registries {
        for (core, v) in r.queue_pushed.iter().enumerate() {
            let v = v.load(Ordering::Relaxed);
            if v > 0 {
                *pushed.entry(core).or_default() += v;
            }
        }
        *popped.entry(r.core.as_str()).or_default() += r.queue_popped.load(Ordering::Relaxed);
    }
    let _ = writeln!(
        out,
        "# HELP io_core_queue_pushed_total Messages queued for a core.\n# TYPE io_core_queue_pushed_total counter"
    );
    for (core, v) in pushed {
        let _ = writeln!(out, "io_core_queue_pushed_total{{core=\"{core}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP io_core_queue_popped_total Messages a core took off its queue.\n# TYPE io_core_queue_popped_total counter"
    );
    for (core, v) in popped {
        let _ = writeln!(
            out,
            "io_core_queue_popped_total{{core=\"{}\"}} {v}",
            label(core)
        );
    }
    out
}

impl Engine {
    /// `GET /metrics`: every thread's registry, with shard-level metrics shown for the streams
    /// whose enhanced monitoring enables them.
    pub fn render_metrics(&self) -> String {
        let catalog = self.catalog_read();
        let now = crate::engine::now_ms();
        let mut out = render(&|stream| {
            catalog
                .live_stream(stream, now)
                .map(|s| s.shard_level_metrics.clone())
        });
        let _ = writeln!(
            out,
            "# HELP io_service_core_up Whether a service core is running (1) or not (0).\n# TYPE io_service_core_up gauge"
        );
        for status in self.service_cores() {
            let cpu = status.cpu.map_or("shared".to_owned(), |c| c.to_string());
            let _ = writeln!(
                out,
                "io_service_core_up{{service_core=\"{}\",runtime=\"{}\",cpu=\"{cpu}\"}} {}",
                status.service_core_id,
                status.runtime.name(),
                u8::from(status.state() == "running")
            );
        }
        render_log_health(&mut out, &self.log_health());
        out
    }
}

/// The disk-fault state of every log: `io_log_poisoned` and `io_log_disk_full` (gauges, 0 or 1)
/// and `io_log_write_errors_total` by `error_type`, labelled with the owning core and log id.
fn render_log_health(out: &mut String, logs: &[crate::engine::CoreLogHealth]) {
    let _ = writeln!(
        out,
        "# HELP io_log_poisoned Whether a write or sync of the log failed, so it refuses appends and reads until a restart (1) or not (0).\n# TYPE io_log_poisoned gauge"
    );
    for log in logs {
        let _ = writeln!(
            out,
            "io_log_poisoned{{core=\"{}\",log=\"{}\"}} {}",
            log.core_id,
            log.health.log_id(),
            u8::from(log.health.poisoned().is_some())
        );
    }
    let _ = writeln!(
        out,
        "# HELP io_log_disk_full Whether the log's last commit failed for lack of disk space (1) or not (0).\n# TYPE io_log_disk_full gauge"
    );
    for log in logs {
        let _ = writeln!(
            out,
            "io_log_disk_full{{core=\"{}\",log=\"{}\"}} {}",
            log.core_id,
            log.health.log_id(),
            u8::from(log.health.disk_full())
        );
    }
    let _ = writeln!(
        out,
        "# HELP io_log_write_errors_total Failed segment writes, syncs and preallocations.\n# TYPE io_log_write_errors_total counter"
    );
    for log in logs {
        for kind in crate::log::WriteErrorKind::ALL {
            let _ = writeln!(
                out,
                "io_log_write_errors_total{{core=\"{}\",log=\"{}\",error_type=\"{}\"}} {}",
                log.core_id,
                log.health.log_id(),
                kind.label(),
                log.health.write_errors(kind)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_core::SequenceNumber;

    use super::*;

    #[test]
    fn writes_are_summed_per_stream_and_unknown_shard_levels_stay_hidden() {
        let entries = vec![
            PutRecordsEntry {
                data: vec![0; 10],
                partition_key: "ab".into(),
                explicit_hash_key: None,
            },
            PutRecordsEntry {
                data: vec![0; 5],
                partition_key: "c".into(),
                explicit_hash_key: None,
            },
        ];
        let sizes = entry_sizes(&entries);
        let ok = Ok(PutRecordsResultEntry {
            shard_id: "shardId-000000000000".into(),
            sequence_number: SequenceNumber::new(1, 0, 0, 1),
        });
        let throttled = Err(KinesisError::new(
            ErrorKind::ProvisionedThroughputExceeded,
            "slow down",
        ));
        record_writes(
            "metrics-unit",
            WriteCall::PutRecords,
            &sizes,
            &[ok, throttled],
        );
        let text = render(&|_| Some(Vec::new()));
        assert!(
            text.contains("kinesis_incoming_bytes_total{stream=\"metrics-unit\"} 12\n"),
            "{text}"
        );
        assert!(text.contains("kinesis_put_records_records_total{stream=\"metrics-unit\"} 2\n"));
        assert!(
            text.contains("kinesis_put_records_failed_records_total{stream=\"metrics-unit\"} 1\n")
        );
        assert!(text.contains(
            "kinesis_write_provisioned_throughput_exceeded_total{stream=\"metrics-unit\"} 1\n"
        ));
        assert!(!text.contains("kinesis_shard_incoming_bytes_total{stream=\"metrics-unit\""));
        let text = render(&|_| Some(vec!["IncomingBytes".to_owned()]));
        assert!(text.contains(
            "kinesis_shard_incoming_bytes_total{stream=\"metrics-unit\",shard=\"shardId-000000000000\"} 12\n"
        ));
    }
}
