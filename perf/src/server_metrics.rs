//! What Sluice's own `/metrics` says about its commits over the measured window: how many
//! fdatasyncs ran, how long they took on average, and how many records a group commit held.
//! A closed-loop ingest run that leaves both cores idle is waiting for something; these
//! figures say whether it was the disk's flush (`docs/PERFORMANCE.md` quotes them beside the
//! CPU split).
//!
//! Only Sluice exports these series; against another server every field is absent.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The commit counters at one moment, summed over the server's cores.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Commits {
    fsync_seconds: f64,
    fsyncs: f64,
    group_commit_records: f64,
    group_commits: f64,
}

impl Commits {
    /// Reads `url` (the server's `/metrics`); `None` if it cannot be read.
    pub async fn take(url: &str) -> Option<Commits> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let response = client.get(url.parse().ok()?).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(Commits::parse(std::str::from_utf8(&body).ok()?))
    }

    /// Sums the four series over every label set in a Prometheus text exposition.
    fn parse(text: &str) -> Commits {
        let mut commits = Commits::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            let slot = match name {
                "io_fsync_duration_seconds_sum" => &mut commits.fsync_seconds,
                "io_fsync_duration_seconds_count" => &mut commits.fsyncs,
                "io_group_commit_records_sum" => &mut commits.group_commit_records,
                "io_group_commit_records_count" => &mut commits.group_commits,
                _ => continue,
            };
            *slot += value;
        }
        commits
    }

    /// The summary of what happened between `self` (the start) and `end`.
    pub fn since(&self, end: &Commits, measured_s: f64) -> Value {
        let fsyncs = end.fsyncs - self.fsyncs;
        let commits = end.group_commits - self.group_commits;
        let ratio = |a: f64, b: f64| if b > 0.0 { json!(a / b) } else { Value::Null };
        json!({
            "fsyncs": fsyncs,
            "fsyncs_per_s": fsyncs / measured_s.max(1e-9),
            "fsync_mean_ms": ratio((end.fsync_seconds - self.fsync_seconds) * 1e3, fsyncs),
            // Share of the window with an fdatasync running (the syncer runs one at a time).
            "fsync_busy_pct": (end.fsync_seconds - self.fsync_seconds) / measured_s.max(1e-9) * 100.0,
            "group_commits": commits,
            "records_per_commit": ratio(end.group_commit_records - self.group_commit_records, commits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_core_and_ignores_other_series() {
        let text = "# HELP io_fsync_duration_seconds x\n\
            io_fsync_duration_seconds_bucket{core=\"0\",le=\"0.001\"} 3\n\
            io_fsync_duration_seconds_sum{core=\"0\"} 0.5\n\
            io_fsync_duration_seconds_sum{core=\"1\"} 0.25\n\
            io_fsync_duration_seconds_count{core=\"0\"} 10\n\
            io_fsync_duration_seconds_count{core=\"1\"} 5\n\
            io_group_commit_records_sum{core=\"0\"} 3000\n\
            io_group_commit_records_count{core=\"0\"} 6\n\
            kinesis_incoming_records_total 99\n";
        let end = Commits::parse(text);
        let summary = Commits::default().since(&end, 2.0);
        assert_eq!(summary["fsyncs"], 15.0);
        assert_eq!(summary["fsyncs_per_s"], 7.5);
        assert_eq!(summary["fsync_mean_ms"], 50.0);
        assert_eq!(summary["fsync_busy_pct"], 37.5);
        assert_eq!(summary["records_per_commit"], 500.0);
    }

    #[test]
    fn no_commits_gives_no_means() {
        let summary = Commits::default().since(&Commits::default(), 1.0);
        assert_eq!(summary["fsync_mean_ms"], Value::Null);
        assert_eq!(summary["records_per_commit"], Value::Null);
    }
}
