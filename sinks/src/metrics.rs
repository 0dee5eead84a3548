//! Firehose's CloudWatch metrics, per delivery stream, as Prometheus text on `/metrics`.
//!
//! Each series is named `sinks_firehose_<aws name in snake case>` and carries the AWS metric
//! name in its HELP line: IncomingRecords, IncomingBytes, IncomingPutRequests, and per
//! destination (S3, HttpEndpoint, Redshift, AmazonOpenSearchService) DeliveryTo<dest>.Records,
//! .Bytes, .Success, .DataFreshness (age of the oldest record of the last delivery) and the
//! failed attempts. Counters are bumped per request or per delivery, never per record.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The destination a delivery counts under (`DeliveryTo<name>.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    S3 = 0,
    HttpEndpoint = 1,
    Redshift = 2,
    AmazonOpenSearchService = 3,
}

pub(crate) const DESTINATIONS: [Destination; 4] = [
    Destination::S3,
    Destination::HttpEndpoint,
    Destination::Redshift,
    Destination::AmazonOpenSearchService,
];

impl Destination {
    const fn aws(self) -> &'static str {
        match self {
            Self::S3 => "S3",
            Self::HttpEndpoint => "HttpEndpoint",
            Self::Redshift => "Redshift",
            Self::AmazonOpenSearchService => "AmazonOpenSearchService",
        }
    }

    const fn snake(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::HttpEndpoint => "http_endpoint",
            Self::Redshift => "redshift",
            Self::AmazonOpenSearchService => "amazon_open_search_service",
        }
    }
}

#[derive(Debug, Default)]
struct Delivery {
    records: AtomicU64,
    bytes: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    freshness_ms: AtomicU64,
}

#[derive(Debug, Default)]
pub struct StreamMetrics {
    incoming_records: AtomicU64,
    incoming_bytes: AtomicU64,
    incoming_put_requests: AtomicU64,
    delivery: [Delivery; 4],
    /// The latest delivery error per stage. It lives beside the counters because the same
    /// calls of the pipeline bump both, and this one per-stream handle reaches all of them.
    pub errors: crate::failure::LatestErrors,
}

impl StreamMetrics {
    pub fn incoming(&self, records: usize, bytes: usize) {
        self.incoming_put_requests.fetch_add(1, Ordering::Relaxed);
        self.incoming_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.incoming_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One successful delivery (an object, a request, a COPY) of `records` records.
    pub fn delivered(&self, to: Destination, records: usize, bytes: usize, freshness_ms: u64) {
        let d = &self.delivery[to as usize];
        d.successes.fetch_add(1, Ordering::Relaxed);
        d.records.fetch_add(records as u64, Ordering::Relaxed);
        d.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        d.freshness_ms.store(freshness_ms, Ordering::Relaxed);
    }

    /// One failed attempt (it is retried or its records go to the error prefix).
    pub fn delivery_failed(&self, to: Destination) {
        self.delivery_failures(to, 1);
    }

    /// `attempts` failed attempts.
    pub fn delivery_failures(&self, to: Destination, attempts: u32) {
        self.delivery[to as usize]
            .failures
            .fetch_add(u64::from(attempts), Ordering::Relaxed);
    }
}

/// An incoming series: its name, the AWS metric, and how to read it.
type IncomingSeries = (&'static str, &'static str, fn(&StreamMetrics) -> u64);
/// A delivery series: its name suffix, Prometheus type, what it counts, and how to read it.
type DeliverySeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Delivery) -> f64,
);

/// Prometheus text for `streams` (name, metrics), in name order.
pub fn render(streams: &[(String, std::sync::Arc<StreamMetrics>)]) -> String {
    let mut out = String::new();
    let incoming: [IncomingSeries; 3] = [
        (
            "sinks_firehose_incoming_records_total",
            "IncomingRecords",
            |m| m.incoming_records.load(Ordering::Relaxed),
        ),
        (
            "sinks_firehose_incoming_bytes_total",
            "IncomingBytes",
            |m| m.incoming_bytes.load(Ordering::Relaxed),
        ),
        (
            "sinks_firehose_incoming_put_requests_total",
            "IncomingPutRequests",
            |m| m.incoming_put_requests.load(Ordering::Relaxed),
        ),
    ];
    for (name, aws, value) in incoming {
        let _ = writeln!(out, "# HELP {name} Firehose {aws}, per delivery stream.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (stream, metrics) in streams {
            let _ = writeln!(
                out,
                "{name}{{delivery_stream=\"{stream}\"}} {}",
                value(metrics)
            );
        }
    }
    for to in DESTINATIONS {
        let series: [DeliverySeries; 5] = [
            ("records_total", "counter", "Records", |d| {
                d.records.load(Ordering::Relaxed) as f64
            }),
            ("bytes_total", "counter", "Bytes", |d| {
                d.bytes.load(Ordering::Relaxed) as f64
            }),
            (
                "success_total",
                "counter",
                "Success (deliveries that succeeded)",
                |d| d.successes.load(Ordering::Relaxed) as f64,
            ),
            (
                "failures_total",
                "counter",
                "failed attempts (retried or sent to the error prefix)",
                |d| d.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                "data_freshness_seconds",
                "gauge",
                "DataFreshness (age of the oldest record of the last delivery)",
                |d| d.freshness_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
        ];
        for (suffix, kind, what, value) in series {
            let name = format!("sinks_firehose_delivery_to_{}_{suffix}", to.snake());
            let _ = writeln!(
                out,
                "# HELP {name} Firehose DeliveryTo{}.{what}, per delivery stream.",
                to.aws()
            );
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (stream, metrics) in streams {
                let _ = writeln!(
                    out,
                    "{name}{{delivery_stream=\"{stream}\"}} {}",
                    value(&metrics.delivery[to as usize])
                );
            }
        }
    }
    out
}
