//! The load generator's scenarios, each run in smoke mode (a fraction of a second, tiny counts)
//! against the real `sluice` binary, so that no scenario file and no driver path rots.
//!
//! `sluice-perf` is another package of the workspace, so cargo does not build it for this test
//! binary; the test builds it once (same profile, same target directory) with the cargo that
//! runs the tests, then runs it as a child process and checks its three output files. It asks
//! for `--workspace --all-targets`, the build `scripts/test` has already made: dependencies
//! then resolve to the features the tests use, so nothing is compiled a second time (`-p
//! sluice-perf` alone resolved other features and compiled a second copy of most dependencies,
//! which once filled CI's disk).
//!
//! Every scenario runs twice: over the Kinesis HTTP API and over the binary protocol (the server
//! gets a binary listener on a free port chosen here).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::Server;
use serde_json::Value;

/// Builds `sluice-perf` next to the `sluice` binary this test was built with.
fn perf_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let sluice = Path::new(env!("CARGO_BIN_EXE_sluice"));
        let dir = sluice
            .parent()
            .expect("the sluice binary lives in a profile directory");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                build.arg("--release");
            }
            Some(profile) => {
                build.args(["--profile", profile]);
            }
            None => panic!("cannot tell the cargo profile from {}", dir.display()),
        }
        let status = build
            .status()
            .expect("cargo can be run to build sluice-perf");
        assert!(status.success(), "building sluice-perf failed: {status}");
        let binary = dir.join("sluice-perf");
        assert!(binary.exists(), "cargo built no {}", binary.display());
        binary
    })
}

fn scenario_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("perf/scenarios")
        .join(format!("{name}.toml"))
}

/// A loopback port that was free a moment ago (the OS hands out ephemeral ports in turn, so
/// it is not handed out again at once).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback can be bound");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Runs one scenario in smoke mode over `protocol` ("http" or "binary") against a fresh
/// server; returns the summary and the output directory (kept alive by the returned guard).
fn run_smoke(name: &str, protocol: &str) -> (Value, tempfile::TempDir) {
    let binary_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::options()
        .flag("--binary-addr", &binary_addr)
        .start();
    let out = tempfile::tempdir().expect("the temp dir is writable");
    let output = Command::new(perf_binary())
        .args([
            "run",
            "--smoke",
            "--quiet",
            "--label",
            "smoke",
            "--protocol",
            protocol,
            "--endpoint",
        ])
        .arg(server.endpoint())
        .args(["--binary-addr", &binary_addr])
        .args([
            "--server-pid",
            &server.pid().expect("the server runs").to_string(),
        ])
        .arg("--out")
        .arg(out.path())
        .arg(scenario_file(name))
        .output()
        .expect("sluice-perf can be spawned");
    assert!(
        output.status.success(),
        "sluice-perf {name} over {protocol} failed ({}):\nstderr:\n{}\nserver stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.stderr_text()
    );
    let stdout = String::from_utf8(output.stdout).expect("the summary is UTF-8");
    let printed: Value =
        serde_json::from_str(stdout.lines().last().expect("one summary line on stdout"))
            .expect("stdout carries the JSON summary");
    let stem = format!("smoke-{name}-{protocol}");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(format!("{stem}.json")))
            .expect("the JSON summary file exists"),
    )
    .expect("the JSON summary file parses");
    assert_eq!(printed, file, "stdout and the file carry the same summary");
    assert_eq!(file["protocol"], protocol);
    check_common(&file, name);
    check_hgrm(&out.path().join(format!("{stem}.hgrm")), &file);
    check_svg(&out.path().join(format!("{stem}.svg")));
    (file, out)
}

fn check_common(summary: &Value, name: &str) {
    assert_eq!(summary["scenario"], name);
    assert_eq!(summary["smoke"], true);
    assert_eq!(
        summary["errors"], 0,
        "no request failed: {}",
        summary["first_error"]
    );
    assert_eq!(summary["records_failed"], 0);
    let records = summary["records"].as_u64().expect("records is a count");
    assert!(
        records > 0,
        "the scenario acknowledged (or delivered) records: {summary}"
    );
    assert!(summary["records_per_s"].as_f64().expect("a rate") > 0.0);
    let latency = &summary["latency"];
    let count = latency["count"].as_u64().expect("a latency count");
    assert!(count > 0);
    let p50 = latency["p50_ms"].as_f64().expect("p50");
    let p99 = latency["p99_ms"].as_f64().expect("p99");
    let max = latency["max_ms"].as_f64().expect("max");
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max,
        "percentiles are ordered: {latency}"
    );
    assert!(
        !summary["goal_value"].is_null(),
        "the goal metric names a value of the summary"
    );
    for side in ["client_cpu_pct", "server_cpu_pct"] {
        let pct = summary[side]
            .as_f64()
            .unwrap_or_else(|| panic!("{side} is reported: {summary}"));
        assert!(
            (0.0..=400.0).contains(&pct),
            "{side} is a utilisation: {pct}"
        );
    }
}

/// Parses the Java-format percentile file and checks it against the summary.
fn check_hgrm(path: &Path, summary: &Value) {
    let text = std::fs::read_to_string(path).expect("the .hgrm file exists");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    let mut rows = Vec::new();
    let mut footer = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        if line.starts_with("#[") {
            footer.push(line);
            continue;
        }
        let fields: Vec<f64> = line
            .split_whitespace()
            .map(|f| f.parse().expect("every row field is a number"))
            .collect();
        assert!(fields.len() == 3 || fields.len() == 4, "row {line:?}");
        rows.push(fields);
    }
    assert!(rows.len() >= 2);
    for pair in rows.windows(2) {
        assert!(
            pair[0][0] <= pair[1][0] && pair[0][1] <= pair[1][1] && pair[0][2] <= pair[1][2],
            "rows ascend"
        );
    }
    let last = rows.last().expect("rows");
    assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
    assert_eq!(last[1], 1.0);
    assert_eq!(
        last[2] as u64,
        summary["latency"]["count"].as_u64().expect("count")
    );
    assert_eq!(footer.len(), 3);
    assert!(footer[0].starts_with("#[Mean    ="));
    assert!(footer[1].starts_with("#[Max     =") && footer[1].contains("Total count"));
    assert!(footer[2].starts_with("#[Buckets =") && footer[2].contains("SubBuckets"));
}

fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).expect("the .svg file exists");
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<polyline").count(), 1, "one latency curve");
    assert_eq!(
        text.matches('<').count(),
        text.matches('>').count(),
        "tags are balanced"
    );
}

fn check_producer_throughput(summary: &Value) {
    assert_eq!(
        summary["payload_mb_per_s"].as_f64().map(|v| v > 0.0),
        Some(true)
    );
}

fn check_put_record_latency(summary: &Value) {
    assert_eq!(summary["config"]["batch"], 1);
    let corrected = summary["latency"]["max_ms"].as_f64().expect("max");
    let service = summary["service_time"]["max_ms"]
        .as_f64()
        .expect("the open loop reports service times");
    assert!(
        service <= corrected + 0.001,
        "latency from the due time is never below the service time"
    );
}

fn check_end_to_end_latency(summary: &Value) {
    let expected = summary["deliveries_expected"]
        .as_u64()
        .expect("expected deliveries");
    assert!(expected > 0);
    assert!(
        summary["deliveries_seen"].as_u64().expect("seen") >= expected,
        "{summary}"
    );
    assert!(summary["records_acked"].as_u64().expect("acked") > 0);
}

fn check_fanout_consumers(summary: &Value) {
    let acked = summary["records_acked"].as_u64().expect("acked");
    let consumers = summary["config"]["consumers_per_shard"]
        .as_u64()
        .expect("consumers");
    assert!(
        consumers > 1,
        "smoke mode keeps more than one consumer per shard"
    );
    assert_eq!(
        summary["deliveries_expected"].as_u64(),
        Some(acked * consumers)
    );
    assert!(
        summary["records"].as_u64().expect("delivered") >= acked * consumers,
        "{summary}"
    );
}

fn check_get_records_throughput(summary: &Value) {
    let preload = summary["config"]["preload_records"]
        .as_u64()
        .expect("preload");
    assert_eq!(summary["preloaded_records"].as_u64(), Some(preload));
    assert!(
        summary["records"].as_u64().expect("read") >= preload,
        "at least one full pass: {summary}"
    );
}

#[test]
fn producer_throughput_runs_in_smoke_mode_over_http() {
    check_producer_throughput(&run_smoke("producer_throughput", "http").0);
}

#[test]
fn producer_throughput_runs_in_smoke_mode_over_the_binary_protocol() {
    check_producer_throughput(&run_smoke("producer_throughput", "binary").0);
}

#[test]
fn put_record_latency_runs_in_smoke_mode_over_http_with_service_times() {
    check_put_record_latency(&run_smoke("put_record_latency", "http").0);
}

#[test]
fn put_record_latency_runs_in_smoke_mode_over_the_binary_protocol_with_service_times() {
    check_put_record_latency(&run_smoke("put_record_latency", "binary").0);
}

#[test]
fn end_to_end_latency_runs_in_smoke_mode_over_http_and_every_record_arrives() {
    check_end_to_end_latency(&run_smoke("end_to_end_latency", "http").0);
}

#[test]
fn end_to_end_latency_runs_in_smoke_mode_over_push_subscriptions_and_every_record_arrives() {
    check_end_to_end_latency(&run_smoke("end_to_end_latency", "binary").0);
}

#[test]
fn fanout_consumers_runs_in_smoke_mode_over_http_and_each_consumer_gets_every_record() {
    check_fanout_consumers(&run_smoke("fanout_consumers", "http").0);
}

#[test]
fn fanout_consumers_runs_in_smoke_mode_over_push_subscriptions_and_each_consumer_gets_every_record()
{
    check_fanout_consumers(&run_smoke("fanout_consumers", "binary").0);
}

#[test]
fn get_records_throughput_runs_in_smoke_mode_over_http_and_reads_the_preload() {
    check_get_records_throughput(&run_smoke("get_records_throughput", "http").0);
}

#[test]
fn get_records_throughput_runs_in_smoke_mode_over_the_binary_protocol_and_reads_the_preload() {
    check_get_records_throughput(&run_smoke("get_records_throughput", "binary").0);
}

/// Runs `sluice-perf run --smoke --quiet --protocol binary` with `args` before the scenario
/// file `name`; returns the last summary line it printed.
fn run_binary(binary_addr: &str, name: &str, args: &[&str], server: &Server) -> Value {
    let output = Command::new(perf_binary())
        .args(["run", "--smoke", "--quiet", "--protocol", "binary"])
        .args(["--binary-addr", binary_addr])
        .args(args)
        .arg(scenario_file(name))
        .output()
        .expect("sluice-perf can be spawned");
    assert!(
        output.status.success(),
        "sluice-perf {args:?} {name} failed ({}):\nstderr:\n{}\nserver stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.stderr_text()
    );
    let stdout = String::from_utf8(output.stdout).expect("the summary is UTF-8");
    serde_json::from_str(stdout.lines().last().expect("one summary line on stdout"))
        .expect("stdout carries the JSON summary")
}

/// scripts/perf.sh times a restart by filling a named stream (`--stream NAME --preload-only`),
/// killing the server with SIGKILL, and reading the stream back (`--stream NAME --read-once`).
/// If `--stream` made a fresh stream on the second run, or `--read-once` started over at the
/// tip instead of stopping, its cold-read figure would measure the wrong data.
#[test]
fn a_named_stream_filled_before_a_kill_9_is_read_back_once_after_the_restart() {
    let binary_addr = format!("127.0.0.1:{}", free_port());
    let mut server = Server::options()
        .flag("--binary-addr", &binary_addr)
        .start();
    let fill = run_binary(
        &binary_addr,
        "restart_cold_read",
        &[
            "--stream",
            "smoke-restart",
            "--preload-only",
            "--preload-records",
            "150",
        ],
        &server,
    );
    assert_eq!(fill["preloaded_records"], 150, "{fill}");
    assert_eq!(fill["stream"], "smoke-restart");

    server.restart();
    let out = tempfile::tempdir().expect("the temp dir is writable");
    let out_dir = out.path().to_str().expect("the temp dir is UTF-8");
    let read = run_binary(
        &binary_addr,
        "restart_cold_read",
        &[
            "--stream",
            "smoke-restart",
            "--read-once",
            "--preload-records",
            "0",
            "--out",
            out_dir,
        ],
        &server,
    );
    assert_eq!(read["errors"], 0, "no read failed: {}", read["first_error"]);
    assert_eq!(read["read_once"], true);
    assert_eq!(
        read["records"], 150,
        "every preloaded record is read exactly once: {read}"
    );
}
