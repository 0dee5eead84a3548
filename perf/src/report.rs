//! Measurement and output: the shared [`Recorder`] the drivers write into, the live progress
//! line, and the three result files.
//!
//! Latencies are recorded in **nanoseconds** in HDR histograms with 3 significant digits
//! (1 ns … 120 s). Every file shows them in **milliseconds**:
//!
//! - `<stem>.hgrm`: the percentile distribution exactly as Java's
//!   `HistogramLogProcessor`/`outputPercentileDistribution` prints it (value unit ratio 10^6),
//!   readable by the HdrHistogram web plotter: a header line, rows
//!   `%12.3f %2.12f %10d %14.2f` (value, quantile, cumulative count, 1/(1−quantile)), the last
//!   row without its fourth column, and three `#[…]` footer lines.
//! - `<stem>.json`: the summary (counts, rates, p50 … p99.99 and max), also printed on stdout.
//! - `<stem>.svg`: a hand-written latency-by-percentile plot with a logarithmic percentile axis.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// 120 s in nanoseconds: anything slower is clamped (and then is a failure anyway).
const LATENCY_NS_MAX: u64 = 120_000_000_000;
const NS_PER_MS: f64 = 1e6;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
        .expect("1 ns .. 120 s at 3 significant digits are valid bounds")
}

#[derive(Default)]
struct Histograms {
    total: Option<Histogram<u64>>,
    interval: Option<Histogram<u64>>,
}

/// Counters and histograms shared by every task of a run. Tasks run on one thread in the
/// usual set-up, so the mutex is uncontended; it exists so the types are `Send`.
pub struct Recorder {
    hist: Mutex<Histograms>,
    /// Only requests that *started* (or were due) at or after this instant count: the warm-up
    /// is excluded.
    measure_from: Instant,
    pub records_ok: AtomicU64,
    pub records_failed: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub payload_bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain counters and histograms that a panic cannot leave torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    pub fn new(measure_from: Instant) -> Arc<Recorder> {
        Arc::new(Recorder {
            hist: Mutex::new(Histograms {
                total: Some(new_histogram()),
                interval: Some(new_histogram()),
            }),
            measure_from,
            records_ok: AtomicU64::new(0),
            records_failed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            payload_bytes: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
    }

    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    /// Whether a request that started (or was due) at `t` is measured.
    pub fn counts(&self, t: Instant) -> bool {
        t >= self.measure_from
    }

    /// One latency sample, from `from` (the intended or actual start) to now.
    pub fn latency_since(&self, from: Instant) {
        self.latency_ns(from.elapsed().as_nanos().min(u128::from(LATENCY_NS_MAX)) as u64);
    }

    pub fn latency_ns(&self, ns: u64) {
        let ns = ns.clamp(1, LATENCY_NS_MAX);
        let mut h = lock(&self.hist);
        if let Some(total) = h.total.as_mut() {
            total.saturating_record(ns);
        }
        if let Some(interval) = h.interval.as_mut() {
            interval.saturating_record(ns);
        }
    }

    /// A request answered: `ok` records acknowledged (carrying `bytes` of payload in all) and
    /// `failed` refused one by one.
    pub fn request(&self, ok: u64, failed: u64, bytes: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.records_ok.fetch_add(ok, Ordering::Relaxed);
        self.records_failed.fetch_add(failed, Ordering::Relaxed);
        self.payload_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A request that failed as a whole. The first message is kept for the summary.
    pub fn error(&self, message: impl FnOnce() -> String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *lock(&self.first_error) = Some(message());
        }
    }

    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }

    fn take_interval(&self) -> Histogram<u64> {
        let mut h = lock(&self.hist);
        let fresh = new_histogram();
        h.interval.replace(fresh).unwrap_or_else(new_histogram)
    }

    pub fn total(&self) -> Histogram<u64> {
        lock(&self.hist).total.clone().unwrap_or_else(new_histogram)
    }
}

/// Prints one progress line to stderr every second until dropped.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(
        label: String,
        recorder: Arc<Recorder>,
        started: Instant,
        enabled: bool,
    ) -> Progress {
        let task = tokio::spawn(async move {
            if !enabled {
                return;
            }
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last_records = 0;
            let mut last = Instant::now();
            loop {
                ticker.tick().await;
                let records = recorder.records_ok.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (records - last_records) as f64 / now.duration_since(last).as_secs_f64();
                let interval = recorder.take_interval();
                let phase = if now < recorder.measure_from() {
                    " (warm-up)"
                } else {
                    ""
                };
                eprintln!(
                    "[{label}] {:5.1} s{phase}  {:>12} rec/s  acked {:>11}  failed {}  errors {}  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                    now.duration_since(started).as_secs_f64(),
                    group_thousands(rate),
                    group_thousands(records as f64),
                    recorder.records_failed.load(Ordering::Relaxed),
                    recorder.errors.load(Ordering::Relaxed),
                    interval.value_at_quantile(0.5) as f64 / NS_PER_MS,
                    interval.value_at_quantile(0.99) as f64 / NS_PER_MS,
                    interval.max() as f64 / NS_PER_MS,
                );
                last_records = records;
                last = now;
            }
        });
        Progress { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn group_thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// p50 … p99.99 and max of a histogram, in milliseconds.
pub fn latency_summary(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / NS_PER_MS
        }
    };
    json!({
        "count": h.len(),
        "mean_ms": if h.is_empty() { 0.0 } else { h.mean() / NS_PER_MS },
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "p99_9_ms": ms(0.999),
        "p99_99_ms": ms(0.9999), "max_ms": h.max() as f64 / NS_PER_MS,
    })
}

/// The Java `outputPercentileDistribution` text, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut cumulative = 0u64;
        for v in h.iter_quantiles(5) {
            cumulative += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / NS_PER_MS;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {cumulative:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {cumulative:10}");
            }
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / NS_PER_MS, h.stdev() / NS_PER_MS)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / NS_PER_MS,
        h.len()
    );
    // Java's sub-bucket count: the power of two that covers 2 × 10^digits single-unit values.
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// One curve of the plot: a label and (quantile, milliseconds) points.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub fn curve(label: &str, h: &Histogram<u64>) -> Curve {
    let points = if h.is_empty() {
        Vec::new()
    } else {
        h.iter_quantiles(5)
            .map(|v| {
                (
                    v.quantile_iterated_to(),
                    v.value_iterated_to() as f64 / NS_PER_MS,
                )
            })
            .collect()
    };
    Curve {
        label: label.to_owned(),
        points,
    }
}

/// The (quantile, milliseconds) rows of a `.hgrm` file; comment and header lines are skipped.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let value: f64 = fields.next()?.parse().ok()?;
            let quantile: f64 = fields.next()?.parse().ok()?;
            Some((quantile, value))
        })
        .collect()
}

/// A latency-by-percentile SVG: x is 1/(1−q) on a log scale from 1 (p0) to 10^6 (p99.9999),
/// y is milliseconds on a linear scale from 0 to the largest value shown.
pub fn svg(title: &str, curves: &[Curve]) -> String {
    const W: f64 = 800.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    const X_DECADES: f64 = 6.0;
    const COLORS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    ];
    let y_max = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_top = nice_ceiling(y_max.max(0.001));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x_of = |q: f64| {
        let inv = if q >= 1.0 {
            10f64.powf(X_DECADES)
        } else {
            (1.0 / (1.0 - q)).min(10f64.powf(X_DECADES))
        };
        LEFT + inv.log10() / X_DECADES * plot_w
    };
    let y_of = |ms: f64| TOP + plot_h - ms / y_top * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = LEFT + i as f64 / X_DECADES * plot_w;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            TOP + plot_h + 18.0
        );
    }
    for i in 0..=5 {
        let ms = y_top * f64::from(i) / 5.0;
        let y = y_of(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            trim_float(ms)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        H - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">latency (ms)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !c.points.is_empty() {
            let points: Vec<String> = c
                .points
                .iter()
                .map(|&(q, ms)| format!("{:.1},{:.1}", x_of(q), y_of(ms)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
        let ly = TOP + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"#,
            LEFT + 10.0,
            ly - 4.0,
            LEFT + 30.0,
            ly - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#,
            LEFT + 36.0,
            escape(&c.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `<stem>.json`, `<stem>.hgrm` and `<stem>.svg` into `dir`.
pub fn write_files(
    dir: &Path,
    stem: &str,
    summary: &Value,
    h: &Histogram<u64>,
    title: &str,
    legend: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |ext: &str, text: String| {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("json", serde_json::to_string_pretty(summary)? + "\n")?;
    write("hgrm", hgrm(h))?;
    write("svg", svg(title, &[curve(legend, h)]))?;
    Ok(())
}

/// The terminal table for one result.
pub fn table(summary: &Value) -> String {
    let l = &summary["latency"];
    let f = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:<7} {:>12} {:>12} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scenario",
        "proto",
        "records",
        "rec/s",
        "MB/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max ms"
    );
    let _ = writeln!(
        s,
        "{:<24} {:<7} {:>12} {:>12} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        summary["scenario"].as_str().unwrap_or("?"),
        summary["protocol"].as_str().unwrap_or("?"),
        group_thousands(summary["records"].as_f64().unwrap_or(0.0)),
        group_thousands(summary["records_per_s"].as_f64().unwrap_or(0.0)),
        summary["payload_mb_per_s"].as_f64().unwrap_or(0.0),
        f(&l["p50_ms"]),
        f(&l["p90_ms"]),
        f(&l["p99_ms"]),
        f(&l["p99_9_ms"]),
        f(&l["p99_99_ms"]),
        f(&l["max_ms"]),
    );
    let cpu = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.0} %"))
    };
    let _ = writeln!(
        s,
        "cpu: client {}  server {}",
        cpu(&summary["client_cpu_pct"]),
        cpu(&summary["server_cpu_pct"])
    );
    let _ = writeln!(
        s,
        "goal: {} {} = {}   errors: {}   latency: {}",
        if summary["goal"]["maximize"] == true {
            "maximize"
        } else {
            "minimize"
        },
        summary["goal"]["metric"].as_str().unwrap_or("?"),
        summary["goal_value"],
        summary["errors"],
        summary["latency_meaning"].as_str().unwrap_or(""),
    );
    s
}

/// Looks up a dotted key (`latency.p99_ms`) in a summary.
pub fn lookup<'a>(summary: &'a Value, dotted: &str) -> &'a Value {
    dotted.split('.').fold(summary, |v, k| &v[k])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 1_000).expect("in range");
        }
        h
    }

    #[test]
    fn the_hgrm_file_has_the_java_header_rows_and_footer() {
        let text = hgrm(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines[1], "");
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[1], "0.000000000000");
        let rows: Vec<&&str> = lines
            .iter()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .skip(1)
            .collect();
        let last: Vec<&str> = rows.last().expect("rows").split_whitespace().collect();
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        assert!(lines.iter().any(|l| l.starts_with("#[Mean    =")));
        assert!(
            lines.iter().any(
                |l| l.starts_with("#[Max     =") && l.contains("Total count    =        10000")
            )
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("#[Buckets =")
                    && l.ends_with("SubBuckets     =         2048]"))
        );
        // The values are milliseconds: the median of 1..10 ms is about 5 ms.
        let median = rows
            .iter()
            .map(|r| r.split_whitespace().collect::<Vec<_>>())
            .find(|c| c[1].parse::<f64>().expect("quantile") >= 0.5)
            .expect("a row at or past the median");
        let value: f64 = median[0].parse().expect("value");
        assert!((4.9..5.1).contains(&value), "median {value}");
    }

    #[test]
    fn the_svg_plot_is_well_formed_and_draws_one_polyline_per_curve() {
        let text = svg(
            "a <title>",
            &[curve("one", &sample()), curve("two", &sample())],
        );
        assert!(text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("a &lt;title&gt;"));
    }

    #[test]
    fn an_hgrm_file_parses_back_to_its_curve() {
        let h = sample();
        let parsed = parse_hgrm(&hgrm(&h));
        let direct = curve("x", &h).points;
        assert_eq!(parsed.len(), direct.len());
        for (a, b) in parsed.iter().zip(&direct) {
            assert!((a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 0.001);
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(1234567.4), "1,234,567");
        assert_eq!(group_thousands(999.0), "999");
    }
}
