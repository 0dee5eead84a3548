//! The CloudWatch metrics of Kinesis Data Streams: per-stream counters and "last value"
//! gauges, and the shard-level metrics EnableEnhancedMonitoring turns on, with the calls the
//! Kinesis API records them through (once per call or event, never per record).

use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::api::{PutRecordsEntry, PutRecordsResultEntry, RecordBatch};
use sluice_core::{ErrorKind, KinesisError};

use super::registry::with_local;

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
    pub(super) const ALL: [Self; 19] = [
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
    pub(super) const ALL: [Self; 2] = [
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
    pub(super) const ALL: [Self; 7] = [
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

    pub(super) const fn is_gauge(self) -> bool {
        matches!(self, Self::IteratorAgeMilliseconds)
    }
}

#[derive(Default)]
pub(super) struct StreamCounters {
    pub counters: [AtomicU64; StreamMetric::ALL.len()],
    pub gauges: [AtomicU64; StreamGauge::ALL.len()],
}

#[derive(Default)]
pub(super) struct ShardCounters {
    pub values: [AtomicU64; ShardMetric::ALL.len()],
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
    // Per-shard sums first, so each shard costs one atomic add per batch. FxHash: a BTreeMap
    // here cost ~3 % of binary ingest's server CPU (`perf record`, 500 × 100 B records).
    let mut per_shard: rustc_hash::FxHashMap<u32, (u64, u64, u64)> =
        rustc_hash::FxHashMap::default();
    for (size, result) in sizes.iter().zip(results) {
        match result {
            Ok(entry) => {
                stored += 1;
                stored_bytes += size;
                // The sequence number names the shard: no need to parse `shard_id` per record.
                let s = per_shard
                    .entry(entry.sequence_number.shard_index)
                    .or_default();
                s.0 += size;
                s.1 += 1;
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

#[cfg(test)]
mod tests {
    use sluice_core::SequenceNumber;

    use super::*;
    use crate::metrics::render;

    #[test]
    fn writes_are_summed_per_stream_and_unknown_shard_levels_stay_hidden() {
        let entries = vec![
            PutRecordsEntry {
                data: vec![0; 10].into(),
                partition_key: "ab".into(),
                explicit_hash_key: None,
            },
            PutRecordsEntry {
                data: vec![0; 5].into(),
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
