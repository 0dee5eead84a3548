//! Firehose's CloudWatch metrics, per delivery stream, as Prometheus text on `/metrics`.
//!
//! Each series is named `sinks_firehose_<aws name in snake case>` and carries the AWS metric
//! name in its HELP line: IncomingRecords, IncomingBytes, IncomingPutRequests,
//! DeliveryToS3.Records, DeliveryToS3.Bytes, DeliveryToS3.Success (objects written) and its
//! failures, DeliveryToS3.DataFreshness (age of the oldest record of the last object written).
//! Counters are bumped per request or per object, never per record.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct StreamMetrics {
    incoming_records: AtomicU64,
    incoming_bytes: AtomicU64,
    incoming_put_requests: AtomicU64,
    delivered_records: AtomicU64,
    delivered_bytes: AtomicU64,
    delivered_objects: AtomicU64,
    failed_deliveries: AtomicU64,
    data_freshness_ms: AtomicU64,
}

impl StreamMetrics {
    pub fn incoming(&self, records: usize, bytes: usize) {
        self.incoming_put_requests.fetch_add(1, Ordering::Relaxed);
        self.incoming_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.incoming_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn delivered(&self, records: usize, bytes: usize, freshness_ms: u64) {
        self.delivered_objects.fetch_add(1, Ordering::Relaxed);
        self.delivered_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.delivered_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.data_freshness_ms
            .store(freshness_ms, Ordering::Relaxed);
    }

    pub fn delivery_failed(&self) {
        self.failed_deliveries.fetch_add(1, Ordering::Relaxed);
    }
}

/// One series: its name, Prometheus type, the AWS metric it stands for, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StreamMetrics) -> f64,
);

/// Prometheus text for `streams` (name, metrics), in name order.
pub fn render(streams: &[(String, std::sync::Arc<StreamMetrics>)]) -> String {
    let series: [Series; 8] = [
        (
            "sinks_firehose_incoming_records_total",
            "counter",
            "IncomingRecords",
            |m| m.incoming_records.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_incoming_bytes_total",
            "counter",
            "IncomingBytes",
            |m| m.incoming_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_incoming_put_requests_total",
            "counter",
            "IncomingPutRequests",
            |m| m.incoming_put_requests.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_delivery_to_s3_records_total",
            "counter",
            "DeliveryToS3.Records",
            |m| m.delivered_records.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_delivery_to_s3_bytes_total",
            "counter",
            "DeliveryToS3.Bytes",
            |m| m.delivered_bytes.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_delivery_to_s3_success_total",
            "counter",
            "DeliveryToS3.Success (objects written)",
            |m| m.delivered_objects.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_delivery_to_s3_failures_total",
            "counter",
            "failed DeliveryToS3 attempts (retried)",
            |m| m.failed_deliveries.load(Ordering::Relaxed) as f64,
        ),
        (
            "sinks_firehose_delivery_to_s3_data_freshness_seconds",
            "gauge",
            "DeliveryToS3.DataFreshness",
            |m| m.data_freshness_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ),
    ];
    let mut out = String::new();
    for (name, kind, aws, value) in series {
        let _ = writeln!(out, "# HELP {name} Firehose {aws}, per delivery stream.");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (stream, metrics) in streams {
            let _ = writeln!(
                out,
                "{name}{{delivery_stream=\"{stream}\"}} {}",
                value(metrics)
            );
        }
    }
    out
}
