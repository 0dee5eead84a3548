//! The analytics service's metrics, rendered as Prometheus text on `/metrics`.
//!
//! Names come from the closed enum [`Metric`] (`analytics_<name>_<unit>[_total]`) for the
//! service as a whole, and from [`ApplicationSeries`] (`analytics_application_…`, labelled by
//! `application`) for each application, as KDA's CloudWatch metrics are per application. An
//! application's series live from its first start until DeleteApplication, so there are as
//! many as there are applications, like the per-stream series of Data Streams. Counters are
//! bumped once per batch, never per row.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sluice_core::prometheus::label_value as label;

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

/// One application's counters, shared by its runner (whichever service core it runs on) and
/// `/metrics`.
#[derive(Debug, Default)]
pub struct ApplicationSeries {
    records_read: AtomicU64,
    record_bytes_read: AtomicU64,
    rows_written: AtomicU64,
    error_rows: AtomicU64,
    /// How far behind its inputs' newest records the last round of reads was (KDA's
    /// `MillisBehindLatest`): the largest lag of the shards read in that round.
    millis_behind_latest: AtomicU64,
}

impl ApplicationSeries {
    pub fn read(&self, records: u64, bytes: u64) {
        self.records_read.fetch_add(records, Ordering::Relaxed);
        self.record_bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn wrote(&self, rows: u64) {
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn errors(&self, rows: u64) {
        self.error_rows.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn behind(&self, millis: u64) {
        self.millis_behind_latest.store(millis, Ordering::Relaxed);
    }
}

static APPLICATIONS: Mutex<BTreeMap<String, Arc<ApplicationSeries>>> = Mutex::new(BTreeMap::new());

fn applications() -> std::sync::MutexGuard<'static, BTreeMap<String, Arc<ApplicationSeries>>> {
    APPLICATIONS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The series of application `name`, made on its first start.
pub fn application(name: &str) -> Arc<ApplicationSeries> {
    applications().entry(name.to_owned()).or_default().clone()
}

/// Drops the series of a deleted application.
pub fn forget_application(name: &str) {
    applications().remove(name);
}

fn render_applications(out: &mut String) {
    type Field = fn(&ApplicationSeries) -> &AtomicU64;
    const SERIES: [(&str, &str, &str, Field); 5] = [
        (
            "analytics_application_records_read_total",
            "counter",
            "Input records read by the application.",
            |a| &a.records_read,
        ),
        (
            "analytics_application_record_bytes_read_total",
            "counter",
            "Data bytes of the input records the application read.",
            |a| &a.record_bytes_read,
        ),
        (
            "analytics_application_rows_written_total",
            "counter",
            "Rows the application wrote to its outputs (error_stream outputs included).",
            |a| &a.rows_written,
        ),
        (
            "analytics_application_error_rows_total",
            "counter",
            "Rows that entered the application's error_stream.",
            |a| &a.error_rows,
        ),
        (
            "analytics_application_millis_behind_latest",
            "gauge",
            "How far the application's last read was behind its inputs' newest records (KDA's MillisBehindLatest).",
            |a| &a.millis_behind_latest,
        ),
    ];
    let apps = applications();
    for (name, kind, help, field) in SERIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (app, series) in apps.iter() {
            let _ = writeln!(
                out,
                "{name}{{application=\"{}\"}} {}",
                label(app),
                field(series).load(Ordering::Relaxed)
            );
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
    render_applications(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_has_its_own_series_until_it_is_deleted() {
        let name = "metrics-test-app \"one\"\\";
        let series = application(name);
        series.read(3, 30);
        series.errors(1);
        series.wrote(2);
        series.behind(1500);
        application(name).read(1, 10);
        let text = render();
        let label = r#"{application="metrics-test-app \"one\"\\"}"#;
        for (metric, value) in [
            ("analytics_application_records_read_total", 4),
            ("analytics_application_record_bytes_read_total", 40),
            ("analytics_application_error_rows_total", 1),
            ("analytics_application_rows_written_total", 2),
            ("analytics_application_millis_behind_latest", 1500),
        ] {
            let line = format!("{metric}{label} {value}");
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
            assert!(text.contains(&format!("# TYPE {metric} ")));
        }
        forget_application(name);
        assert!(!render().contains(label));
    }
}
