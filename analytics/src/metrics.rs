//! The analytics service's metrics, rendered as Prometheus text on `/metrics`.
//!
//! Names come from the closed enum [`Metric`] (`analytics_<name>_<unit>[_total]`); no label
//! carries an application name, so the series stay bounded however many applications exist.
//! Counters are bumped once per batch, never per row.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Every analytics metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    RecordsReadTotal,
    RecordBytesReadTotal,
    RowsWrittenTotal,
    ErrorRowsTotal,
    ApplicationsRunning,
    LateRowsTotal,
    SnapshotsWrittenTotal,
    SnapshotBytesWrittenTotal,
    SnapshotWriteFailuresTotal,
}

const ALL: [Metric; 9] = [
    Metric::RecordsReadTotal,
    Metric::RecordBytesReadTotal,
    Metric::RowsWrittenTotal,
    Metric::ErrorRowsTotal,
    Metric::ApplicationsRunning,
    Metric::LateRowsTotal,
    Metric::SnapshotsWrittenTotal,
    Metric::SnapshotBytesWrittenTotal,
    Metric::SnapshotWriteFailuresTotal,
];

static VALUES: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

impl Metric {
    const fn index(self) -> usize {
        match self {
            Metric::RecordsReadTotal => 0,
            Metric::RecordBytesReadTotal => 1,
            Metric::RowsWrittenTotal => 2,
            Metric::ErrorRowsTotal => 3,
            Metric::ApplicationsRunning => 4,
            Metric::LateRowsTotal => 5,
            Metric::SnapshotsWrittenTotal => 6,
            Metric::SnapshotBytesWrittenTotal => 7,
            Metric::SnapshotWriteFailuresTotal => 8,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Metric::RecordsReadTotal => "analytics_records_read_total",
            Metric::RecordBytesReadTotal => "analytics_record_bytes_read_total",
            Metric::RowsWrittenTotal => "analytics_rows_written_total",
            Metric::ErrorRowsTotal => "analytics_error_rows_total",
            Metric::ApplicationsRunning => "analytics_applications_running",
            Metric::LateRowsTotal => "analytics_late_rows_total",
            Metric::SnapshotsWrittenTotal => "analytics_snapshots_written_total",
            Metric::SnapshotBytesWrittenTotal => "analytics_snapshot_bytes_written_total",
            Metric::SnapshotWriteFailuresTotal => "analytics_snapshot_write_failures_total",
        }
    }

    const fn help(self) -> (&'static str, &'static str) {
        match self {
            Metric::RecordsReadTotal => ("counter", "Input records read by running applications."),
            Metric::RecordBytesReadTotal => ("counter", "Data bytes of the input records read."),
            Metric::RowsWrittenTotal => (
                "counter",
                "Rows written to output streams (error_stream outputs included).",
            ),
            Metric::ErrorRowsTotal => ("counter", "Rows that entered error_stream."),
            Metric::ApplicationsRunning => (
                "gauge",
                "Applications whose runner task is reading its input.",
            ),
            Metric::LateRowsTotal => (
                "counter",
                "Rows of event-time windows that arrived after their window closed (sent to error_stream).",
            ),
            Metric::SnapshotsWrittenTotal => (
                "counter",
                "Window snapshots made durable (file and marker) by applications with stagger windows.",
            ),
            Metric::SnapshotBytesWrittenTotal => {
                ("counter", "Bytes of the window snapshots written.")
            }
            Metric::SnapshotWriteFailuresTotal => (
                "counter",
                "Window snapshots whose file or marker could not be written (the positions then wait).",
            ),
        }
    }

    pub fn add(self, n: u64) {
        VALUES[self.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(self, n: u64) {
        VALUES[self.index()].fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(self) -> u64 {
        VALUES[self.index()].load(Ordering::Relaxed)
    }
}

/// The most service cores whose running applications are counted apart.
const SERVICE_CORES_MAX: usize = 64;

/// Running applications per service core, and how many service cores run applications.
static RUNNING_ON_CORE: [AtomicU64; SERVICE_CORES_MAX] =
    [const { AtomicU64::new(0) }; SERVICE_CORES_MAX];
static SERVICE_CORES: AtomicUsize = AtomicUsize::new(0);

/// Notes that `count` service cores run applications (each core's supervisor says so).
pub fn service_cores_are(count: usize) {
    SERVICE_CORES.store(count.min(SERVICE_CORES_MAX), Ordering::Relaxed);
}

/// One more (`delta` 1) or one fewer (-1) application running on service core `core`.
pub fn running_on_core(core: usize, delta: i64) {
    if let Some(slot) = RUNNING_ON_CORE.get(core) {
        if delta >= 0 {
            slot.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            slot.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }
}

/// Prometheus text of every metric.
pub fn render() -> String {
    let mut out = String::new();
    for metric in ALL {
        let (kind, help) = metric.help();
        let name = metric.name();
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
            metric.get()
        );
    }
    let name = "analytics_applications_running_by_service_core";
    let _ = writeln!(
        out,
        "# HELP {name} Applications whose runner task is reading its input, by the service core it runs on.\n# TYPE {name} gauge"
    );
    for (core, running) in RUNNING_ON_CORE
        .iter()
        .take(SERVICE_CORES.load(Ordering::Relaxed))
        .enumerate()
    {
        let _ = writeln!(
            out,
            "{name}{{service_core=\"{core}\"}} {}",
            running.load(Ordering::Relaxed)
        );
    }
    out
}
