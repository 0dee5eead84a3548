//! Rendering every thread's registry as Prometheus text for `GET /metrics`
//! ([`Engine::render_metrics`]): counters summed over threads, "last value" gauges as the
//! maximum over threads, shard-level metrics only where enhanced monitoring enables them, plus
//! the service cores and the disk-fault state of every log.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluice_core::prometheus::label_value as label;

use super::engine::{FSYNC_BUCKETS_S, GROUP_COMMIT_BUCKETS, Histogram, SEGMENTS};
use super::kinesis::{ShardMetric, StreamGauge, StreamMetric};
use super::registry::{CoreRegistry, REGISTRIES, lock};
use crate::engine::Engine;
use crate::log::LogHealth;

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
    render_log_flag(
        out,
        logs,
        "io_log_poisoned",
        "Whether a write or sync of the log failed, so it refuses appends and reads until a restart (1) or not (0).",
        |health| health.poisoned().is_some(),
    );
    render_log_flag(
        out,
        logs,
        "io_log_disk_full",
        "Whether the log's last commit failed for lack of disk space (1) or not (0).",
        LogHealth::disk_full,
    );
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

/// A 0-or-1 gauge per log, labelled with the owning core and log id.
fn render_log_flag(
    out: &mut String,
    logs: &[crate::engine::CoreLogHealth],
    name: &str,
    help: &str,
    flag: impl Fn(&LogHealth) -> bool,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for log in logs {
        let _ = writeln!(
            out,
            "{name}{{core=\"{}\",log=\"{}\"}} {}",
            log.core_id,
            log.health.log_id(),
            u8::from(flag(&log.health))
        );
    }
}
