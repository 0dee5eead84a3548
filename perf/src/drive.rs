//! The scenario drivers: produce (closed or open loop), end-to-end (put → consume) and read.
//!
//! **Open loop and coordinated omission.** In open-loop mode request *i* is due at
//! `start + i / rate` whatever happened before, and its latency is taken from that due time,
//! not from when it was actually sent: if the server stalls, every request it delays is charged
//! the stall (Gil Tene's coordinated-omission correction). tokio's timer has 1 ms granularity,
//! so the pacer sleeps until ~2 ms before the due time and then yields in a loop until it
//! arrives, which puts sends within microseconds of their schedule. The service time (from the
//! actual send) is kept as a second histogram so client lateness is visible.
//!
//! **End-to-end records** start with a 16-byte stamp: the magic `STAMP_MAGIC` and the due time
//! in nanoseconds since this process's [`epoch`], both little-endian. Consumers run in the same
//! process, so the clock is the same monotonic clock on both sides.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;

use crate::report::Recorder;
use crate::scenario::{Kind, Load, Protocol, STAMP_BYTES, Scenario};
use crate::target::{Batch, Cursor, ShardRef, Target, binary_page, build_batch, random_records};

/// "SLUICEP1" as a little-endian u64: marks a record stamped by this tool.
const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"SLUICEP1");
/// How long end-to-end consumers may take to deliver the last acknowledged records.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a run waits for in-flight requests after its end.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// Distinct prebuilt batches cycled through by the producers.
const PREBUILT_BATCHES: usize = 64;
/// Records per PutRecords while preloading a read scenario.
const PRELOAD_BATCH: usize = 500;
/// The pacer sleeps until this long before a due time, then yields until the time comes.
const SPIN_WINDOW: Duration = Duration::from_millis(2);

pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Sleeps until `due` with microsecond accuracy (see the module docs).
pub async fn wait_until(due: Instant) {
    if let Some(early) = due.checked_sub(SPIN_WINDOW)
        && early > Instant::now()
    {
        tokio::time::sleep_until(tokio::time::Instant::from_std(early)).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// What a run measured, besides the main recorder.
pub struct Outcome {
    /// Seconds from the start of measurement to the last measured completion.
    pub measured_s: f64,
    /// Per-request latency from the actual send (open loop only).
    pub service: Option<Arc<Recorder>>,
    /// End-to-end: the producer's acknowledgements (latency from the due time).
    pub acks: Option<Arc<Recorder>>,
    /// End-to-end: deliveries expected (acknowledged records × consumers per shard) and seen.
    pub deliveries: Option<(u64, u64)>,
    /// What `latency` means in this run, for the summary.
    pub latency_meaning: &'static str,
}

pub struct Run<'a> {
    pub scenario: &'a Scenario,
    pub protocol: Protocol,
    pub target: Target,
    pub stream: String,
    /// A read scenario reads each shard to its tip once instead of until the time is up.
    pub read_once: bool,
}

/// Where a producer's batches come from.
#[derive(Clone)]
enum Source {
    Prebuilt(Arc<Vec<Arc<Batch>>>),
    /// Built per request, each record stamped with the request's due time.
    Stamped {
        protocol: Protocol,
        stream: Arc<str>,
        batch: usize,
        record_bytes: usize,
    },
}

impl Source {
    fn get(&self, i: usize, due: Instant) -> Arc<Batch> {
        match self {
            Source::Prebuilt(batches) => batches[i % batches.len()].clone(),
            Source::Stamped {
                protocol,
                stream,
                batch,
                record_bytes,
            } => {
                let mut rng = rand::rng();
                let mut records = random_records(*batch, *record_bytes, &mut rng);
                let stamp = nanos_since_epoch(due);
                for (_, data) in &mut records {
                    data[..8].copy_from_slice(&STAMP_MAGIC.to_le_bytes());
                    data[8..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
                }
                Arc::new(build_batch(*protocol, stream, records))
            }
        }
    }
}

fn prebuilt(run: &Run<'_>, batch: usize) -> Source {
    let mut rng = rand::rng();
    let count = if batch == 1 { 1024 } else { PREBUILT_BATCHES };
    let batches = (0..count)
        .map(|_| {
            Arc::new(build_batch(
                run.protocol,
                &run.stream,
                random_records(batch, run.scenario.record_bytes, &mut rng),
            ))
        })
        .collect();
    Source::Prebuilt(Arc::new(batches))
}

/// Runs the producer side for `[start, end)` into `rec` (latency from the due time in open
/// loop, from the send in closed loop). Returns when every request has been answered.
async fn produce(
    run: &Run<'_>,
    source: Source,
    rec: Arc<Recorder>,
    service: Option<Arc<Recorder>>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<()> {
    let record_bytes = run.scenario.record_bytes;
    match run.scenario.load.clone() {
        Load::Closed { concurrency } => {
            let mut lanes = Vec::new();
            for lane in 0..concurrency {
                let (target, stream, source, rec) = (
                    run.target.clone(),
                    run.stream.clone(),
                    source.clone(),
                    rec.clone(),
                );
                lanes.push(tokio::spawn(async move {
                    let mut i = lane;
                    while Instant::now() < end {
                        let sent = Instant::now();
                        let batch = source.get(i, sent);
                        i += concurrency;
                        match target.put(&stream, &batch).await {
                            Ok((ok, failed)) if rec.counts(sent) => {
                                rec.latency_since(sent);
                                rec.request(ok, failed, ok as usize * record_bytes);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                rec.error(|| format!("{e:#}"));
                                // A refusing server must not turn the client into a busy loop.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                }));
            }
            for lane in lanes {
                lane.await.context("a producer lane panicked")?;
            }
        }
        Load::Open {
            rate_per_s,
            max_in_flight,
        } => {
            let interval = Duration::from_secs_f64(1.0 / rate_per_s);
            let permits = Arc::new(Semaphore::new(max_in_flight));
            for i in 0usize.. {
                let due = start + interval.mul_f64(i as f64);
                if due >= end {
                    break;
                }
                wait_until(due).await;
                // Waiting for a permit delays the send, and the delay is charged: latency still
                // counts from `due`.
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .context("the permit semaphore is never closed")?;
                let batch = source.get(i, due);
                let (target, stream, rec, service) = (
                    run.target.clone(),
                    run.stream.clone(),
                    rec.clone(),
                    service.clone(),
                );
                tokio::spawn(async move {
                    let sent = Instant::now();
                    match target.put(&stream, &batch).await {
                        Ok((ok, failed)) if rec.counts(due) => {
                            rec.latency_since(due);
                            rec.request(ok, failed, ok as usize * record_bytes);
                            if let Some(service) = service {
                                service.latency_since(sent);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => rec.error(|| format!("{e:#}")),
                    }
                    drop(permit);
                });
            }
            let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
            tokio::time::timeout(IN_FLIGHT_TIMEOUT, permits.acquire_many(all))
                .await
                .context("requests still in flight a minute after the run ended")?
                .context("the permit semaphore is never closed")?
                .forget();
        }
    }
    Ok(())
}

pub async fn execute(
    run: &Run<'_>,
    shards: &[ShardRef],
    rec: Arc<Recorder>,
) -> anyhow::Result<Outcome> {
    let s = run.scenario;
    let start = Instant::now();
    let measure_from = rec.measure_from();
    let end = measure_from + s.duration();
    match s.kind {
        Kind::Produce => {
            let service = matches!(s.load, Load::Open { .. }).then(|| Recorder::new(measure_from));
            produce(
                run,
                prebuilt(run, s.batch),
                rec.clone(),
                service.clone(),
                start,
                end,
            )
            .await?;
            let measured_s = measure_from.elapsed().as_secs_f64();
            Ok(Outcome {
                measured_s,
                latency_meaning: if service.is_some() {
                    "acknowledgement, from each request's intended send time (coordinated-omission corrected)"
                } else {
                    "acknowledgement, from the send (closed loop)"
                },
                service,
                acks: None,
                deliveries: None,
            })
        }
        Kind::EndToEnd => end_to_end(run, shards, rec, start, end).await,
        Kind::Read => read(run, shards, rec, end).await,
    }
}

async fn end_to_end(
    run: &Run<'_>,
    shards: &[ShardRef],
    rec: Arc<Recorder>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let s = run.scenario;
    let measure_from = rec.measure_from();
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for shard in shards {
        for _ in 0..s.consumers_per_shard {
            let record_bytes = s.record_bytes;
            let on_page = {
                let (rec, delivered) = (rec.clone(), delivered.clone());
                move |heads: &[[u8; 16]]| {
                    let now = nanos_since_epoch(Instant::now());
                    let from = nanos_since_epoch(rec.measure_from());
                    for head in heads {
                        let (magic, stamp) = head.split_at(8);
                        if u64::from_le_bytes(magic.try_into().expect("8 bytes")) != STAMP_MAGIC {
                            continue;
                        }
                        let due = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if due >= from {
                            rec.latency_ns(now.saturating_sub(due));
                            rec.request(1, 0, record_bytes);
                        }
                    }
                }
            };
            let task = match &run.target {
                Target::Binary(client) => {
                    let index = shard.index().context("binary shards are indexes")?;
                    let mut sub = client
                        .subscribe(&run.stream, index, sluice_client::StartPosition::Latest)
                        .await
                        .with_context(|| format!("subscribing to shard {index}"))?;
                    let (stop, rec) = (stop.clone(), rec.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            match sub.next().await {
                                Some(Ok(event)) => {
                                    on_page(&binary_page(&event.records, None, 0).heads)
                                }
                                Some(Err(e)) => {
                                    rec.error(|| format!("subscription: {e:#}"));
                                    break;
                                }
                                None => break,
                            }
                        }
                    })
                }
                Target::Http(_) => {
                    let mut cursor = run.target.start_cursor(&run.stream, shard, true).await?;
                    let (target, stream, shard, stop, rec) = (
                        run.target.clone(),
                        run.stream.clone(),
                        shard.clone(),
                        stop.clone(),
                        rec.clone(),
                    );
                    let (limit, pause) = (s.read_limit, Duration::from_millis(s.poll_interval_ms));
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            match target.read(&stream, &shard, &cursor, limit).await {
                                Ok(page) => {
                                    on_page(&page.heads);
                                    if page.records == 0 {
                                        tokio::time::sleep(pause).await;
                                    }
                                    match page.next {
                                        Some(next) => cursor = next,
                                        None => break,
                                    }
                                }
                                Err(e) => {
                                    rec.error(|| format!("GetRecords: {e:#}"));
                                    tokio::time::sleep(pause.max(Duration::from_millis(10))).await;
                                }
                            }
                        }
                    })
                }
            };
            consumers.push(task);
        }
    }
    let acks = Recorder::new(measure_from);
    let source = Source::Stamped {
        protocol: run.protocol,
        stream: Arc::from(run.stream.as_str()),
        batch: s.batch,
        record_bytes: s.record_bytes,
    };
    produce(run, source, acks.clone(), None, start, end).await?;
    // Every acknowledged measured record should reach every consumer of its shard.
    let expected_measured = acks.records_ok.load(Ordering::Relaxed) * s.consumers_per_shard as u64;
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while rec.records_ok.load(Ordering::Relaxed) < expected_measured
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let measured_s = (end.min(Instant::now()) - measure_from).as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in consumers {
        task.abort();
    }
    let seen = rec.records_ok.load(Ordering::Relaxed);
    Ok(Outcome {
        measured_s,
        service: None,
        acks: Some(acks),
        deliveries: Some((expected_measured, seen)),
        latency_meaning: if run.protocol == Protocol::Binary {
            "delivery to a push subscriber, from each record's intended send time"
        } else {
            "delivery to a GetRecords poller, from each record's intended send time (includes the poll interval)"
        },
    })
}

/// Puts `preload_records` records (unmeasured) before a read scenario; returns how many the
/// server acknowledged.
pub async fn preload(run: &Run<'_>) -> anyhow::Result<u64> {
    let s = run.scenario;
    if s.kind != Kind::Read {
        return Ok(0);
    }
    let preload = Recorder::new(Instant::now());
    let mut rng = rand::rng();
    let mut loaded = 0;
    let mut pending = std::collections::VecDeque::new();
    while loaded < s.preload_records {
        let n = PRELOAD_BATCH.min(s.preload_records - loaded);
        let batch = build_batch(
            run.protocol,
            &run.stream,
            random_records(n, s.record_bytes, &mut rng),
        );
        let (target, stream, preload) = (run.target.clone(), run.stream.clone(), preload.clone());
        pending.push_back(tokio::spawn(async move {
            let (ok, failed) = target.put(&stream, &batch).await?;
            preload.request(ok, failed, 0);
            anyhow::Ok(())
        }));
        if pending.len() >= 4
            && let Some(first) = pending.pop_front()
        {
            first.await.context("a preload task panicked")??;
        }
        loaded += n;
    }
    for p in pending {
        p.await.context("a preload task panicked")??;
    }
    let stored = preload.records_ok.load(Ordering::Relaxed);
    anyhow::ensure!(
        stored > 0 || s.preload_records == 0,
        "preloading stored no records"
    );
    Ok(stored)
}

/// Reads every shard from its start, over and over, until the measured time is up (or, with
/// `read_once`, to its tip once). `Load::Closed { concurrency }` is the number of readers per
/// shard.
async fn read(
    run: &Run<'_>,
    shards: &[ShardRef],
    rec: Arc<Recorder>,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let s = run.scenario;
    let readers_per_shard = match s.load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { .. } => 1,
    };
    let mut readers = Vec::new();
    for shard in shards {
        for _ in 0..readers_per_shard {
            let (target, stream, shard, rec) = (
                run.target.clone(),
                run.stream.clone(),
                shard.clone(),
                rec.clone(),
            );
            let (limit, read_once) = (s.read_limit, run.read_once);
            readers.push(tokio::spawn(async move {
                let mut cursor: Option<Cursor> = None;
                while Instant::now() < end {
                    let current = match cursor.take() {
                        Some(c) => c,
                        None => match target.start_cursor(&stream, &shard, false).await {
                            Ok(c) => c,
                            Err(e) => {
                                rec.error(|| format!("{e:#}"));
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let sent = Instant::now();
                    match target.read(&stream, &shard, &current, limit).await {
                        Ok(page) => {
                            if rec.counts(sent) {
                                rec.latency_since(sent);
                                rec.request(page.records as u64, 0, page.bytes);
                            }
                            // Start over from the oldest record once the shard is drained.
                            let drained = page.records == 0 || page.caught_up;
                            if drained && read_once {
                                break;
                            }
                            cursor = if drained { None } else { page.next };
                        }
                        Err(e) => {
                            rec.error(|| format!("{e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
    }
    for r in readers {
        r.await.context("a reader panicked")?;
    }
    let measured_s = rec.measure_from().elapsed().as_secs_f64();
    Ok(Outcome {
        measured_s,
        service: None,
        acks: None,
        deliveries: None,
        latency_meaning: "one read request, from the send (closed loop)",
    })
}
