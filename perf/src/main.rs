//! sluice-perf: the load generator for Sluice and any Kinesis-compatible endpoint.
//!
//! Each run takes scenario files (`perf/scenarios/*.toml`, format in `scenario.rs`) and a
//! protocol: Kinesis HTTP JSON (any endpoint: Sluice, kinesalite, kinesis-local) or Sluice's
//! binary protocol (through `sluice-client`). For each scenario it creates a fresh stream,
//! drives the load (closed loop, or open loop with coordinated-omission correction), prints a
//! live progress line to stderr once per second and a result table at the end, and writes
//! `<out>/<label>-<scenario>-<protocol>.{json,hgrm,svg}`. The JSON summary is also printed on
//! stdout, one object per line.
//!
//! ```text
//! sluice-perf run --endpoint http://127.0.0.1:4567 perf/scenarios/producer_throughput.toml
//! sluice-perf run --protocol binary --binary-addr 127.0.0.1:4568 --smoke perf/scenarios/*.toml
//! sluice-perf plot --title 'PutRecord latency' --out put.svg sluice=a.hgrm kinesalite=b.hgrm
//! ```

mod cpu;
mod drive;
mod report;
mod scenario;
mod server_metrics;
mod target;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::{Value, json};

use crate::drive::Run;
use crate::report::{Progress, Recorder, latency_summary};
use crate::scenario::{Protocol, Scenario};
use crate::target::Target;

/// The binary client encodes every request into a buffer of its own (500 KB at 1 KB records).
/// glibc's malloc handed such blocks back to the kernel when they were freed, so each request
/// faulted its pages in again: 38 % of the load generator's core in `perf record` of the 1 KB
/// ingest scenario. jemalloc keeps freed extents for reuse, as in the server.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "sluice-perf",
    about = "Load generator for Sluice and Kinesis-compatible endpoints"
)]
enum Command {
    /// Run scenario files against a server.
    Run(Args),
    /// Draw several .hgrm files (e.g. one per server) as one latency-by-percentile SVG.
    Plot(PlotArgs),
    /// Time Firehose's own compressor alone on this thread: the limit beside a delivery
    /// stream's throughput. Prints one JSON object.
    Compress(CompressArgs),
    /// Time PUTs of one object size into an S3-compatible server through the S3 client
    /// Firehose delivery uses, one at a time: the destination's limit beside a delivery
    /// stream's throughput. Prints one JSON object.
    S3Put(S3PutArgs),
}

#[derive(Debug, clap::Args)]
struct S3PutArgs {
    /// The server's URL (`http://127.0.0.1:9000`).
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    access_key_id: String,
    #[arg(long)]
    secret_access_key: String,
    /// An existing bucket.
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    object_bytes: usize,
    /// PUT objects for at least this long.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// `sluice-perf s3-put`: PUTs objects of random bytes one after the other, as delivery does.
fn s3_put(args: &S3PutArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sink = sluice_sinks::s3::S3Sink::with_overrides(&sluice_sinks::s3::S3Endpoint {
            endpoint_url: Some(args.endpoint.clone()),
            access_key_id: Some(args.access_key_id.clone()),
            secret_access_key: Some(args.secret_access_key.clone()),
            region: Some("us-east-1".to_owned()),
        })
        .await;
        let body: Vec<u8> = (0..args.object_bytes)
            .map(|_| rand::random::<u8>())
            .collect();
        let started = Instant::now();
        let mut puts = 0u64;
        while puts == 0 || started.elapsed().as_secs_f64() < args.seconds {
            sink.put(&args.bucket, &format!("o-{puts}"), body.clone())
                .await
                .map_err(|e| anyhow::anyhow!("PUT failed: {e}"))?;
            puts += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({
                "puts": puts,
                "object_bytes": args.object_bytes,
                "seconds": seconds,
                "puts_per_s": puts as f64 / seconds,
                "mb_per_s": (puts * args.object_bytes as u64) as f64 / 1e6 / seconds,
            })
        );
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
struct CompressArgs {
    /// GZIP, ZIP, Snappy, HADOOP_SNAPPY or ZSTD (Firehose's CompressionFormat names).
    #[arg(long)]
    format: String,
    /// The data: its first --object-bytes bytes (repeated if shorter) form each object.
    #[arg(long)]
    input: PathBuf,
    /// Bytes of one object, as a delivery stream's buffer would hand it over.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    object_bytes: usize,
    /// Compress objects for at least this long.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// `sluice-perf compress`: compresses the same object over and over with the function the
/// delivery path calls, and reports uncompressed MB/s.
fn compress_files(args: &CompressArgs) -> anyhow::Result<()> {
    let format = sluice_sinks::model::Compression::parse(&args.format)
        .with_context(|| format!("unknown compression format {:?}", args.format))?;
    let data = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    if data.is_empty() {
        bail!("{} is empty", args.input.display());
    }
    let object: Vec<u8> = data
        .iter()
        .copied()
        .cycle()
        .take(args.object_bytes)
        .collect();
    let started = Instant::now();
    let (mut objects, mut bytes_out) = (0u64, 0u64);
    while objects == 0 || started.elapsed().as_secs_f64() < args.seconds {
        let packed = sluice_sinks::compression::compress(format, &object, "object")?;
        bytes_out += packed.len() as u64;
        objects += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes_in = objects * object.len() as u64;
    println!(
        "{}",
        json!({
            "format": format.as_str(),
            "objects": objects,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "seconds": seconds,
            "mb_per_s": bytes_in as f64 / 1e6 / seconds,
        })
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
struct PlotArgs {
    #[arg(long)]
    title: String,
    /// The SVG file to write.
    #[arg(long)]
    out: PathBuf,
    /// Curves as LABEL=FILE.hgrm.
    #[arg(required = true)]
    curves: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Scenario files (TOML).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// Kinesis HTTP endpoint (for `--protocol http`).
    #[arg(long, default_value = "http://127.0.0.1:4567")]
    endpoint: String,
    /// Binary protocol address (for `--protocol binary`).
    #[arg(long, default_value = "127.0.0.1:4568")]
    binary_addr: String,
    /// Access key for the binary protocol, as ACCESS_KEY_ID:SECRET, for a server started with
    /// `--credentials` (a server without credentials needs none).
    #[arg(long, value_name = "ID:SECRET")]
    binary_credentials: Option<String>,
    /// Directory for the .json, .hgrm and .svg files.
    #[arg(long, default_value = "perf/results/latest")]
    out: PathBuf,
    /// Prefix of the output file names, e.g. the server's name and the run number.
    #[arg(long, default_value = "run")]
    label: String,
    /// Run every scenario for a fraction of a second with tiny counts.
    #[arg(long)]
    smoke: bool,
    /// Override the scenario's measured duration (seconds).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Override the scenario's warm-up (seconds).
    #[arg(long)]
    warmup_s: Option<f64>,
    /// Override an open-loop scenario's rate (requests per second).
    #[arg(long)]
    rate: Option<f64>,
    /// The server's process id, to report its CPU utilisation over the measured window
    /// (read from /proc, so only for a server on this machine).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Sluice's `/metrics` URL, to report its fdatasyncs (count, mean time) and records per
    /// group commit over the measured window (`server_commits` in the summary).
    #[arg(long, value_name = "URL")]
    server_metrics: Option<String>,
    /// Override a read scenario's preloaded record count.
    #[arg(long)]
    preload_records: Option<usize>,
    /// Run on this stream and keep it afterwards, instead of a fresh stream deleted at the
    /// end. An ACTIVE stream of that name is used as it is (its open shards, whatever the
    /// scenario's count), so a later run can read what an earlier one wrote, e.g. after a
    /// restart; otherwise it is created with the scenario's shard count.
    #[arg(long)]
    stream: Option<String>,
    /// Create the stream and preload it, then stop: no measured phase. Prints the preload's
    /// records, seconds and MB/s as one JSON object.
    #[arg(long)]
    preload_only: bool,
    /// A read scenario reads each shard from its oldest record to its tip once, then stops
    /// (the duration is only a cap), instead of starting over until the time is up.
    #[arg(long)]
    read_once: bool,
    /// Worker threads of the client runtime; 1 runs everything on the calling thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn main() -> anyhow::Result<()> {
    let args = match Command::parse() {
        Command::Run(args) => args,
        Command::Plot(plot) => return plot_files(&plot),
        Command::Compress(compress) => return compress_files(&compress),
        Command::S3Put(put) => return s3_put(&put),
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run_all(args))
}

async fn run_all(args: Args) -> anyhow::Result<()> {
    drive::epoch();
    let mut failures = Vec::new();
    for path in &args.scenarios {
        let mut scenario =
            Scenario::load_file(path)?.with_overrides(args.duration_s, args.warmup_s, args.rate);
        if let Some(n) = args.preload_records {
            scenario.preload_records = n;
        }
        if args.smoke {
            scenario = scenario.smoke();
        }
        scenario.validate()?;
        if !scenario.protocols.contains(&args.protocol) {
            bail!(
                "scenario {} does not run over {}",
                scenario.name,
                args.protocol.as_str()
            );
        }
        match run_one(&args, &scenario).await {
            Ok(summary) => {
                if !args.preload_only {
                    eprint!("{}", report::table(&summary));
                }
                println!("{summary}");
            }
            Err(e) => {
                eprintln!("[{}] failed: {e:#}", scenario.name);
                failures.push(format!("{}: {e:#}", scenario.name));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} scenario(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

fn unique_stream_name(scenario: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "perf-{scenario}-{}-{millis}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn run_one(args: &Args, scenario: &Scenario) -> anyhow::Result<Value> {
    let binary_credentials = args
        .binary_credentials
        .as_deref()
        .map(|text| {
            text.split_once(':')
                .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
                .map(|(id, secret)| sluice_client::Credentials::new(id, secret))
                .context("--binary-credentials takes ACCESS_KEY_ID:SECRET")
        })
        .transpose()?;
    let target = Target::connect(
        args.protocol,
        &args.endpoint,
        &args.binary_addr,
        binary_credentials,
    )
    .await?;
    let (stream, shards) = match &args.stream {
        Some(name) => match target.existing_shards(name).await {
            Some(shards) => (name.clone(), shards),
            None => (
                name.clone(),
                target.create_stream(name, scenario.shards).await?,
            ),
        },
        None => {
            let name = unique_stream_name(&scenario.name);
            let shards = target.create_stream(&name, scenario.shards).await?;
            (name, shards)
        }
    };
    let run = Run {
        scenario,
        protocol: args.protocol,
        target: target.clone(),
        stream: stream.clone(),
        read_once: args.read_once,
    };
    let result = if args.preload_only {
        preload_only(args, &run, shards.len()).await
    } else {
        measure(args, &run, &shards).await
    };
    if args.stream.is_none() {
        target.delete_stream(&stream).await;
    }
    result
}

/// `--preload-only`: the preload, timed, as the whole run.
async fn preload_only(args: &Args, run: &Run<'_>, shards: usize) -> anyhow::Result<Value> {
    let started = Instant::now();
    let preloaded = drive::preload(run).await.context("preloading")?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let bytes = preloaded as f64 * run.scenario.record_bytes as f64;
    Ok(json!({
        "scenario": run.scenario.name,
        "protocol": args.protocol.as_str(),
        "label": args.label,
        "stream": run.stream,
        "shards": shards,
        "record_bytes": run.scenario.record_bytes,
        "preloaded_records": preloaded,
        "preloaded_bytes": bytes,
        "preload_s": secs,
        "preload_mb_per_s": bytes / secs / 1e6,
    }))
}

async fn measure(args: &Args, run: &Run<'_>, shards: &[target::ShardRef]) -> anyhow::Result<Value> {
    let scenario = run.scenario;
    let preloaded = drive::preload(run).await.context("preloading")?;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let started = Instant::now();
    let scenario_warmup = scenario.warmup();
    let rec = Recorder::new(started + scenario_warmup);
    let label = format!("{}/{}", scenario.name, args.protocol.as_str());
    let progress = Progress::start(label, rec.clone(), started, !args.quiet);
    // CPU time is sampled when the warm-up ends and when the run does.
    let server_pid = args.server_pid;
    let metrics_url = args.server_metrics.clone();
    let first_sample = tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + scenario_warmup)).await;
        let cpu = cpu::Sample::take(server_pid);
        let commits = match &metrics_url {
            Some(url) => server_metrics::Commits::take(url).await,
            None => None,
        };
        (cpu, commits)
    });
    let outcome = drive::execute(run, shards, rec.clone()).await?;
    let last_sample = cpu::Sample::take(server_pid);
    let last_commits = match &args.server_metrics {
        Some(url) => server_metrics::Commits::take(url).await,
        None => None,
    };
    drop(progress);
    let (first_sample, first_commits) = match first_sample.await {
        Ok((cpu, commits)) => (Some(cpu), commits),
        Err(_) => (None, None),
    };
    let (client_cpu_pct, server_cpu_pct) = match first_sample {
        Some(first) => first.utilisation(&last_sample),
        None => (None, None),
    };

    let records = rec.records_ok.load(Ordering::Relaxed);
    let requests = rec.requests.load(Ordering::Relaxed);
    let bytes = rec.payload_bytes.load(Ordering::Relaxed);
    let secs = outcome.measured_s.max(1e-9);
    let histogram = rec.total();
    let mut summary = json!({
        "scenario": scenario.name,
        "description": scenario.description,
        "goal": scenario.goal,
        "protocol": args.protocol.as_str(),
        "endpoint": match args.protocol { Protocol::Http => args.endpoint.clone(), Protocol::Binary => args.binary_addr.clone() },
        "label": args.label,
        "stream": run.stream,
        "read_once": run.read_once,
        "smoke": args.smoke,
        "config": scenario,
        "started_unix_s": started_unix_s,
        "measured_s": outcome.measured_s,
        "records": records,
        "records_failed": rec.records_failed.load(Ordering::Relaxed),
        "requests": requests,
        "errors": rec.errors.load(Ordering::Relaxed),
        "first_error": rec.first_error(),
        "records_per_s": records as f64 / secs,
        "requests_per_s": requests as f64 / secs,
        "payload_mb_per_s": bytes as f64 / secs / 1e6,
        "latency": latency_summary(&histogram),
        "latency_meaning": outcome.latency_meaning,
        "client_cpu_pct": client_cpu_pct,
        "server_cpu_pct": server_cpu_pct,
    });
    if let (Some(first), Some(last)) = (first_commits, last_commits) {
        summary["server_commits"] = first.since(&last, outcome.measured_s);
    }
    if let Some(service) = &outcome.service {
        summary["service_time"] = latency_summary(&service.total());
    }
    if let Some(acks) = &outcome.acks {
        summary["records_acked"] = json!(acks.records_ok.load(Ordering::Relaxed));
        summary["ack_errors"] = json!(acks.errors.load(Ordering::Relaxed));
        summary["ack_latency"] = latency_summary(&acks.total());
        if summary["first_error"].is_null() {
            summary["first_error"] = json!(acks.first_error());
        }
        summary["errors"] =
            json!(rec.errors.load(Ordering::Relaxed) + acks.errors.load(Ordering::Relaxed));
    }
    if let Some((expected, seen)) = outcome.deliveries {
        summary["deliveries_expected"] = json!(expected);
        summary["deliveries_seen"] = json!(seen);
    }
    if scenario.kind == scenario::Kind::Read {
        summary["preloaded_records"] = json!(preloaded);
    }
    summary["goal_value"] = report::lookup(&summary, &scenario.goal.metric).clone();
    let stem = format!(
        "{}-{}-{}",
        args.label,
        scenario.name,
        args.protocol.as_str()
    );
    let title = format!(
        "{} over {}: {}",
        scenario.name,
        args.protocol.as_str(),
        outcome.latency_meaning
    );
    summary["files"] = json!({
        "json": args.out.join(format!("{stem}.json")),
        "hgrm": args.out.join(format!("{stem}.hgrm")),
        "svg": args.out.join(format!("{stem}.svg")),
    });
    report::write_files(
        &args.out,
        &stem,
        &summary,
        &histogram,
        &title,
        &format!("{} {}", args.label, args.protocol.as_str()),
    )?;
    Ok(summary)
}

fn plot_files(plot: &PlotArgs) -> anyhow::Result<()> {
    let mut curves = Vec::new();
    for spec in &plot.curves {
        let (label, path) = spec
            .split_once('=')
            .with_context(|| format!("curve {spec:?} is not LABEL=FILE.hgrm"))?;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        curves.push(report::Curve {
            label: label.to_owned(),
            points: report::parse_hgrm(&text),
        });
    }
    if let Some(dir) = plot.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&plot.out, report::svg(&plot.title, &curves))
        .with_context(|| format!("writing {}", plot.out.display()))?;
    Ok(())
}
