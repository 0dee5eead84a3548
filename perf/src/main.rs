//! sluice-perf: a small load generator for any Kinesis-compatible HTTP endpoint (Sluice,
//! kinesalite, kinesis-mock). It prebuilds request bodies so that the client, not JSON
//! encoding, is cheap, and measures:
//!
//! - `put-records`: closed-loop PutRecords throughput (records/s, payload MB/s) with several
//!   connections, plus per-call latency;
//! - `put-record`: single-record PutRecord latency at a fixed open-loop rate, corrected for
//!   coordinated omission (latency is taken from the time a call was *due*, not when it was
//!   sent);
//! - `get-records`: GetRecords throughput draining every shard from TRIM_HORIZON.
//!
//! Output is one JSON object on stdout (and a human summary on stderr).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng as _;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "sluice-perf", about = "Kinesis HTTP load generator")]
struct Args {
    /// Endpoint, e.g. http://127.0.0.1:4567
    #[arg(long)]
    endpoint: String,
    #[arg(long, default_value = "perf")]
    stream: String,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Create the stream first (deleting any old one).
    #[arg(long, default_value_t = true)]
    create: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    PutRecords {
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
        #[arg(long, default_value_t = 500)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    PutRecord {
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
        /// Calls per second (open loop).
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 2000)]
        count: u64,
    },
    GetRecords {
        /// Records to preload before reading (PutRecords of 500).
        #[arg(long, default_value_t = 200_000)]
        preload: usize,
        #[arg(long, default_value_t = 100)]
        record_bytes: usize,
    },
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Kinesis {
    client: HttpClient,
    endpoint: String,
}

impl Kinesis {
    async fn call(&self, operation: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let request = hyper::Request::post(&self.endpoint)
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .header("content-type", "application/x-amz-json-1.1")
            // Neither Sluice (in this release) nor the emulators verify signatures, but all of
            // them require one to be present.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDPERF/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000",
            )
            .header("x-amz-date", "20260101T000000Z")
            .body(Full::new(body))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    async fn json(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        let (status, bytes) = self.call(operation, Bytes::from(body.to_string())).await?;
        let value: Value = if bytes.is_empty() { json!({}) } else { serde_json::from_slice(&bytes)? };
        if status != 200 {
            bail!("{operation} answered {status}: {value}");
        }
        Ok(value)
    }
}

fn summary(h: &Histogram<u64>) -> Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(0.50), "p90_ms": ms(0.90), "p99_ms": ms(0.99), "p99_9_ms": ms(0.999),
        "p99_99_ms": ms(0.9999), "max_ms": h.max() as f64 / 1000.0,
    })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?)
}

fn put_records_body(stream: &str, batch: usize, record_bytes: usize, rng: &mut impl rand::Rng) -> Bytes {
    let mut data = vec![0u8; record_bytes];
    let records: Vec<Value> = (0..batch)
        .map(|_| {
            rng.fill(&mut data[..]);
            let key: u128 = rng.random();
            json!({"Data": base64::engine::general_purpose::STANDARD.encode(&data), "PartitionKey": format!("{key:032x}")})
        })
        .collect();
    Bytes::from(json!({"StreamName": stream, "Records": records}).to_string())
}

async fn prepare_stream(k: &Kinesis, stream: &str, shards: u32) -> anyhow::Result<()> {
    let _ = k.json("DeleteStream", json!({"StreamName": stream})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match k.json("CreateStream", json!({"StreamName": stream, "ShardCount": shards})).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline && e.to_string().contains("ResourceInUse") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    loop {
        let d = k.json("DescribeStreamSummary", json!({"StreamName": stream})).await?;
        if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {stream} did not become ACTIVE");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let k = Kinesis { client, endpoint: args.endpoint.clone() };
    if args.create {
        prepare_stream(&k, &args.stream, args.shards).await.context("preparing the stream")?;
    }
    let result = match args.scenario {
        Scenario::PutRecords { record_bytes, batch, connections, seconds } => {
            let mut rng = rand::rng();
            let bodies: Arc<Vec<Bytes>> =
                Arc::new((0..16).map(|_| put_records_body(&args.stream, batch, record_bytes, &mut rng)).collect());
            let stop = Arc::new(AtomicBool::new(false));
            let records = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            let started = Instant::now();
            for c in 0..connections {
                let (k, bodies, stop, records, failed) =
                    (k.clone(), bodies.clone(), stop.clone(), records.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    let mut h = new_histogram()?;
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let (status, body) = k.call("PutRecords", bodies[i % bodies.len()].clone()).await?;
                        h.record(t.elapsed().as_micros() as u64)?;
                        if status != 200 {
                            bail!("PutRecords answered {status}: {}", String::from_utf8_lossy(&body));
                        }
                        let v: Value = serde_json::from_slice(&body)?;
                        let f = v["FailedRecordCount"].as_u64().unwrap_or(0);
                        failed.fetch_add(f, Ordering::Relaxed);
                        records.fetch_add(batch as u64 - f, Ordering::Relaxed);
                        i += connections;
                    }
                    anyhow::Ok(h)
                }));
            }
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            let mut h = new_histogram()?;
            for t in tasks {
                h.add(t.await??)?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let n = records.load(Ordering::Relaxed);
            json!({
                "scenario": "put-records", "record_bytes": record_bytes, "batch": batch, "connections": connections,
                "seconds": elapsed, "records": n, "failed": failed.load(Ordering::Relaxed),
                "records_per_s": n as f64 / elapsed, "payload_mb_per_s": n as f64 * record_bytes as f64 / elapsed / 1e6,
                "call_latency": summary(&h),
            })
        }
        Scenario::PutRecord { record_bytes, rate, count } => {
            let mut rng = rand::rng();
            let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; record_bytes]);
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            let start = tokio::time::Instant::now();
            let mut h = new_histogram()?;
            let mut service = new_histogram()?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<(u64, u64)>>();
            for i in 0..count {
                let due = start + interval * i as u32;
                // tokio's timer wheel has 1 ms granularity; sleep to just before the due time and
                // spin the rest so the send time is accurate to microseconds.
                tokio::time::sleep_until(due.checked_sub(Duration::from_millis(2)).unwrap_or(due)).await;
                while tokio::time::Instant::now() < due {
                    tokio::task::yield_now().await;
                }
                let key: u64 = rng.random();
                let body = Bytes::from(
                    json!({"StreamName": args.stream, "Data": data, "PartitionKey": format!("{key:x}")}).to_string(),
                );
                let (k, tx) = (k.clone(), tx.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let r = k.call("PutRecord", body).await.and_then(|(status, body)| {
                        if status != 200 {
                            bail!("PutRecord answered {status}: {}", String::from_utf8_lossy(&body));
                        }
                        Ok((due.elapsed().as_micros() as u64, sent.elapsed().as_micros() as u64))
                    });
                    let _ = tx.send(r);
                });
            }
            drop(tx);
            while let Some(r) = rx.recv().await {
                let (intended, measured) = r?;
                h.record(intended.max(1))?;
                service.record(measured.max(1))?;
            }
            // `latency` counts from when each call was due (coordinated-omission corrected; it
            // includes the client timer's lateness, up to ~1 ms with tokio's timer wheel);
            // `service_time` counts from when the request was actually sent.
            json!({"scenario": "put-record", "record_bytes": record_bytes, "rate": rate, "latency": summary(&h), "service_time": summary(&service)})
        }
        Scenario::GetRecords { preload, record_bytes } => {
            let mut rng = rand::rng();
            let mut loaded = 0;
            while loaded < preload {
                let body = put_records_body(&args.stream, 500.min(preload - loaded), record_bytes, &mut rng);
                let (status, b) = k.call("PutRecords", body).await?;
                if status != 200 {
                    bail!("preload PutRecords answered {status}: {}", String::from_utf8_lossy(&b));
                }
                loaded += 500.min(preload - loaded);
            }
            let d = k.json("ListShards", json!({"StreamName": args.stream})).await?;
            let shards: Vec<String> = d["Shards"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["ShardId"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let started = Instant::now();
            let mut read = 0u64;
            let mut h = new_histogram()?;
            for shard in shards {
                let it = k
                    .json(
                        "GetShardIterator",
                        json!({"StreamName": args.stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
                    )
                    .await?;
                let mut iterator = it["ShardIterator"].as_str().map(str::to_owned);
                while let Some(current) = iterator {
                    let t = Instant::now();
                    let r = k.json("GetRecords", json!({"ShardIterator": current, "Limit": 10000})).await?;
                    h.record(t.elapsed().as_micros() as u64)?;
                    let n = r["Records"].as_array().map_or(0, Vec::len) as u64;
                    read += n;
                    iterator = if n == 0 { None } else { r["NextShardIterator"].as_str().map(str::to_owned) };
                }
            }
            let elapsed = started.elapsed().as_secs_f64();
            json!({"scenario": "get-records", "records": read, "seconds": elapsed, "records_per_s": read as f64 / elapsed, "call_latency": summary(&h)})
        }
    };
    eprintln!("{}", serde_json::to_string_pretty(&result)?);
    println!("{result}");
    Ok(())
}
