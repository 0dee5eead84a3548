//! Crash and recovery of the real binary: `kill -9` under load, and a torn tail on disk.
//!
//! Every acknowledged record must survive a process crash, with the sequence number it was
//! acknowledged with; a record that was sent but not acknowledged may survive or not, but only
//! whole. Each test opens with the failure it guards against. Randomised runs print their seed;
//! set `SLUICE_CRASH_SEED` to replay one.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use common::{
    ReadRecord, Server, create_active_stream, read_shard_to_end, sequence_number_key, shard_id,
    wait_for_status,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SHARDS: usize = 4;
const PRODUCERS: u32 = 4;
const STREAM: &str = "crash";

/// Where a record's identity ends inside its payload.
const ID_END: u8 = b'|';

/// What the producers sent and what the server acknowledged.
#[derive(Default)]
struct Ledger {
    /// Every payload ever sent, by record id (`p<producer>-<counter>`), exactly as sent.
    sent: HashMap<String, Vec<u8>>,
    /// Acknowledged records: id → (shard id, sequence number).
    acked: HashMap<String, (String, String)>,
    /// Entries a PutRecords answered with a per-entry error (never acknowledged).
    entry_failures: usize,
    /// Request-level errors seen before the kill, which a healthy server never produces.
    errors_before_kill: Vec<String>,
}

fn seed_for(test: &str) -> u64 {
    let seed = match std::env::var("SLUICE_CRASH_SEED") {
        Ok(text) => text.parse().expect("SLUICE_CRASH_SEED is a u64"),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos();
            // Mix in the test name so parallel tests started in the same instant differ.
            (nanos as u64)
                ^ test
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)))
        }
    };
    eprintln!("{test}: seed {seed} (replay with SLUICE_CRASH_SEED={seed})");
    seed
}

/// `p3-17|<random body>`: the id up to the first `|`, then a body of random bytes.
fn payload(id: &str, rng: &mut StdRng) -> Vec<u8> {
    let len = match rng.random_range(0..100) {
        0..=79 => rng.random_range(1..300),
        80..=97 => rng.random_range(300..4000),
        _ => rng.random_range(4000..40_000),
    };
    let mut data = Vec::with_capacity(id.len() + 1 + len);
    data.extend_from_slice(id.as_bytes());
    data.push(ID_END);
    data.extend((0..len).map(|_| rng.random::<u8>()));
    data
}

fn id_of(data: &[u8]) -> Option<&str> {
    let end = data.iter().position(|&b| b == ID_END)?;
    std::str::from_utf8(&data[..end]).ok()
}

async fn produce(
    client: Client,
    producer: u32,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    killed: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(producer) << 48));
    let mut counter = 0u64;
    loop {
        if killed.load(Ordering::SeqCst) {
            return;
        }
        let batch = if rng.random_bool(0.25) {
            1
        } else {
            rng.random_range(1..=64)
        };
        let mut records = Vec::with_capacity(batch);
        for _ in 0..batch {
            let id = format!("p{producer}-{counter}");
            counter += 1;
            let data = payload(&id, &mut rng);
            records.push((id, data));
        }
        {
            let mut ledger = ledger.lock().expect("ledger lock is never poisoned");
            for (id, data) in &records {
                ledger.sent.insert(id.clone(), data.clone());
            }
        }
        let outcome: Result<Vec<Option<(String, String)>>, String> =
            if batch == 1 && rng.random_bool(0.5) {
                let (id, data) = &records[0];
                client
                    .put_record()
                    .stream_name(STREAM)
                    .partition_key(id)
                    .data(Blob::new(data.clone()))
                    .send()
                    .await
                    .map(|out| {
                        vec![Some((
                            out.shard_id().to_owned(),
                            out.sequence_number().to_owned(),
                        ))]
                    })
                    .map_err(|e| format!("{e:?}"))
            } else {
                let entries = records
                    .iter()
                    .map(|(id, data)| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(id)
                            .data(Blob::new(data.clone()))
                            .build()
                            .expect("data and partition key are set")
                    })
                    .collect();
                client
                    .put_records()
                    .stream_name(STREAM)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .map_err(|e| format!("{e:?}"))
                    .and_then(|out| {
                        if out.records().len() != records.len() {
                            return Err(format!(
                                "PutRecords answered {} results for {} entries",
                                out.records().len(),
                                records.len()
                            ));
                        }
                        Ok(out
                            .records()
                            .iter()
                            .map(
                                |r| match (r.shard_id(), r.sequence_number(), r.error_code()) {
                                    (Some(shard), Some(sequence_number), None) => {
                                        Some((shard.to_owned(), sequence_number.to_owned()))
                                    }
                                    _ => None,
                                },
                            )
                            .collect())
                    })
            };
        let mut ledger = ledger.lock().expect("ledger lock is never poisoned");
        match outcome {
            Ok(results) => {
                for ((id, _), result) in records.iter().zip(results) {
                    match result {
                        Some(ack) => {
                            ledger.acked.insert(id.clone(), ack);
                        }
                        None => ledger.entry_failures += 1,
                    }
                }
            }
            Err(error) => {
                if !killed.load(Ordering::SeqCst) {
                    ledger
                        .errors_before_kill
                        .push(format!("producer {producer}: {error}"));
                }
                return;
            }
        }
    }
}

/// Reads every shard of [`STREAM`] from TRIM_HORIZON to its end.
async fn read_all_shards(client: &Client) -> BTreeMap<String, Vec<ReadRecord>> {
    let mut shards = BTreeMap::new();
    for index in 0..SHARDS {
        let id = shard_id(index);
        let records = read_shard_to_end(client, STREAM, &id).await;
        shards.insert(id, records);
    }
    shards
}

/// Checks the recovered log against the ledger: every acknowledged record exactly once, where and
/// as it was acknowledged; everything else whole, sent by a producer, and at most once; per shard,
/// sequence numbers strictly increase and each producer's records keep their send order.
fn verify_recovered(ledger: &Ledger, shards: &BTreeMap<String, Vec<ReadRecord>>) -> (usize, usize) {
    let mut seen: HashSet<String> = HashSet::new();
    let mut extras = 0;
    for (shard, records) in shards {
        for pair in records.windows(2) {
            assert!(
                sequence_number_key(&pair[0].sequence_number)
                    < sequence_number_key(&pair[1].sequence_number),
                "sequence numbers must strictly increase within {shard}: {} then {}",
                pair[0].sequence_number,
                pair[1].sequence_number
            );
        }
        let mut last_counter_per_producer: HashMap<String, u64> = HashMap::new();
        for record in records {
            let id = id_of(&record.data).unwrap_or_else(|| {
                panic!(
                    "record {} on {shard} is not a producer payload (garbled or partial): first bytes {:?}",
                    record.sequence_number,
                    &record.data[..record.data.len().min(32)]
                )
            });
            let sent = ledger.sent.get(id).unwrap_or_else(|| {
                panic!(
                    "record {} on {shard} has id {id} that no producer sent",
                    record.sequence_number
                )
            });
            assert!(
                record.data == *sent,
                "record {id} ({} on {shard}) is not byte-for-byte what was sent: {} bytes read, {} sent",
                record.sequence_number,
                record.data.len(),
                sent.len()
            );
            assert_eq!(
                record.partition_key, id,
                "record {id} kept its partition key"
            );
            assert!(
                seen.insert(id.to_owned()),
                "record {id} appears more than once"
            );
            match ledger.acked.get(id) {
                Some((acked_shard, acked_sequence_number)) => {
                    assert_eq!(
                        acked_shard, shard,
                        "record {id} was acknowledged on {acked_shard}"
                    );
                    assert_eq!(
                        &record.sequence_number, acked_sequence_number,
                        "record {id} must keep the sequence number it was acknowledged with"
                    );
                }
                None => extras += 1,
            }
            let (producer, counter) = id
                .split_once('-')
                .expect("ids look like p<producer>-<counter>");
            let counter: u64 = counter.parse().expect("the counter is a number");
            if let Some(previous) = last_counter_per_producer.insert(producer.to_owned(), counter) {
                assert!(
                    previous < counter,
                    "producer {producer}'s records on {shard} are out of send order: {previous} then {counter}"
                );
            }
        }
    }
    let missing: Vec<&String> = ledger
        .acked
        .keys()
        .filter(|id| !seen.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records were lost after kill -9, e.g. {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    (seen.len(), extras)
}

/// Whether the run must have rolled over to a second segment in some log.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rollover {
    Required,
    NotRequired,
}

async fn kill_during_writes_and_verify(
    test: &str,
    options: common::ServerOptions,
    rollover: Rollover,
) {
    let seed = seed_for(test);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server = options.start();
    let client = server.client();
    create_active_stream(&client, STREAM, SHARDS as i32).await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let killed = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            tokio::spawn(produce(
                client.clone(),
                producer,
                seed,
                Arc::clone(&ledger),
                Arc::clone(&killed),
            ))
        })
        .collect();

    let write_for = Duration::from_millis(rng.random_range(4_000..=7_000));
    eprintln!("{test}: writing for {write_for:?} before kill -9");
    tokio::time::sleep(write_for).await;
    {
        let ledger = ledger.lock().expect("ledger lock is never poisoned");
        assert!(
            ledger.errors_before_kill.is_empty(),
            "the server failed requests before the kill: {:?}\nserver stderr:\n{}",
            ledger.errors_before_kill,
            server.stderr_text()
        );
    }
    killed.store(true, Ordering::SeqCst);
    server.kill9();
    for producer in producers {
        tokio::time::timeout(Duration::from_secs(90), producer)
            .await
            .expect("producers stop once the server is gone")
            .expect("producer tasks do not panic");
    }

    let ledger = Arc::try_unwrap(ledger)
        .unwrap_or_else(|_| panic!("every producer has finished"))
        .into_inner()
        .expect("ledger lock is never poisoned");
    assert!(
        ledger.errors_before_kill.is_empty(),
        "the server failed requests before the kill: {:?}",
        ledger.errors_before_kill
    );
    assert!(
        ledger.acked.len() >= 100,
        "only {} records were acknowledged in {write_for:?}",
        ledger.acked.len()
    );

    let segments = segment_files(server.data_dir());
    let logs: HashSet<PathBuf> = segments
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    eprintln!(
        "{test}: {} segment files in {} logs at the kill",
        segments.len(),
        logs.len()
    );
    if rollover == Rollover::Required {
        assert!(
            segments.len() > logs.len(),
            "the run was meant to roll over to a new segment but wrote only {} segments in {} logs",
            segments.len(),
            logs.len()
        );
    }

    let restarted_at = Instant::now();
    server.restart();
    let client = server.client();
    wait_for_status(&client, STREAM, StreamStatus::Active).await;
    eprintln!(
        "{test}: restarted and ACTIVE in {:?}",
        restarted_at.elapsed()
    );
    let shards = read_all_shards(&client).await;
    let (recovered, extras) = verify_recovered(&ledger, &shards);
    eprintln!(
        "{test}: sent {}, acknowledged {}, per-entry failures {}, recovered {recovered} ({extras} unacknowledged but whole)",
        ledger.sent.len(),
        ledger.acked.len(),
        ledger.entry_failures
    );

    // The recovered server keeps accepting writes, after everything recovered.
    let output = client
        .put_record()
        .stream_name(STREAM)
        .partition_key("after-restart")
        .data(Blob::new("after-restart"))
        .send()
        .await
        .expect("PutRecord after recovery succeeds");
    let shard = output.shard_id().to_owned();
    if let Some(last) = shards.get(&shard).and_then(|records| records.last()) {
        assert!(
            sequence_number_key(&last.sequence_number)
                < sequence_number_key(output.sequence_number()),
            "a write after recovery gets a sequence number above every recovered one on {shard}"
        );
    }
}

/// Guards against losing or duplicating acknowledged records when the process dies mid-write
/// under `durability = fsync`: an acknowledgement sent before the group commit's fdatasync
/// finished, a recovery scan that stops early at a block boundary or replays a block twice, or a
/// sequence counter rebuilt wrongly after restart (acknowledged numbers then no longer match).
/// One core owns all four shards, so every group commit mixes shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_under_fsync_on_one_core() {
    kill_during_writes_and_verify(
        "acknowledged_records_survive_kill_9_under_fsync_on_one_core",
        Server::options().flag("--durability", "fsync"),
        Rollover::NotRequired,
    )
    .await;
}

/// Guards against the same losses when shards are spread over two cores and the segments are
/// small enough (1 MiB) to roll over several times during the run: a record acknowledged by one
/// core while another core's commit is still in flight, and a segment rollover that drops or
/// repeats the records around the boundary during recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_under_fsync_on_two_cores_with_segment_rollover() {
    kill_during_writes_and_verify(
        "acknowledged_records_survive_kill_9_under_fsync_on_two_cores_with_segment_rollover",
        Server::options()
            .flag("--durability", "fsync")
            .flag("--cores", 2)
            .flag("--segment-bytes", 1024 * 1024),
        Rollover::Required,
    )
    .await;
}

/// Guards against acknowledging records under `durability = write` before their O_DIRECT write
/// completed (for example acknowledging on submission, or from a buffer not yet handed to the
/// kernel). Without fsync a power cut may lose data, but a killed process must not: the kernel
/// already holds every completed write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9_under_write_durability() {
    kill_during_writes_and_verify(
        "acknowledged_records_survive_kill_9_under_write_durability",
        Server::options().flag("--durability", "write"),
        Rollover::NotRequired,
    )
    .await;
}

/// Every `*.seg` file under `<data-dir>/log`.
fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "seg") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&data_dir.join("log"), &mut found);
    found
}

const BLOCK_BYTES: usize = 4096;

/// The newest segment that holds data, and the start of its last 4 KiB block with a non-zero
/// byte: the block the final commit wrote.
fn last_written_block(data_dir: &Path) -> (PathBuf, usize, Vec<u8>) {
    let mut candidates: Vec<(PathBuf, usize, Vec<u8>)> = Vec::new();
    for path in segment_files(data_dir) {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("segment {} is readable: {e}", path.display()));
        let last = bytes
            .chunks(BLOCK_BYTES)
            .rposition(|block| block.iter().any(|&b| b != 0))
            .map(|index| index * BLOCK_BYTES);
        if let Some(offset) = last {
            candidates.push((path, offset, bytes));
        }
    }
    // Segment names are the block sequence number of their first block, zero-padded, so the
    // newest segment (of one log) has the greatest name.
    candidates.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
    let (path, offset, bytes) = candidates.pop().unwrap_or_else(|| {
        panic!(
            "no segment under {} holds data",
            data_dir.join("log").display()
        )
    });
    (path, offset, bytes)
}

/// Guards against a torn or corrupted tail making recovery fail or lie: after a crash the last
/// block on disk may be half written. Recovery must detect it by its CRC, drop exactly the
/// records it held (never serve a partial or garbled record from it), keep every earlier record,
/// and resume appending cleanly after the truncated tail, so later writes are readable.
#[tokio::test]
async fn a_corrupted_last_block_is_dropped_whole_and_earlier_records_survive() {
    // One core, so there is one log; small segments, so the test reads little from disk.
    let mut server = Server::options()
        .flag("--segment-bytes", 1024 * 1024)
        .start();
    let client = server.client();
    create_active_stream(&client, "torn", 1).await;
    let shard = shard_id(0);

    let mut earlier: Vec<(String, Vec<u8>)> = Vec::new();
    for batch in 0..4 {
        let payloads: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("early-{batch}-{i}:{}", "e".repeat(50 + 20 * i)).into_bytes())
            .collect();
        let mut request = client.put_records().stream_name("torn");
        for data in &payloads {
            request = request.records(
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("data and key set"),
            );
        }
        let output = request.send().await.expect("PutRecords succeeds");
        assert_eq!(output.failed_record_count(), Some(0));
        for (result, data) in output.records().iter().zip(payloads) {
            earlier.push((
                result
                    .sequence_number()
                    .expect("sequence number")
                    .to_owned(),
                data,
            ));
        }
    }
    for i in 0..3 {
        let data = format!("early-single-{i}").into_bytes();
        let output = client
            .put_record()
            .stream_name("torn")
            .partition_key("k")
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord succeeds");
        earlier.push((output.sequence_number().to_owned(), data));
    }

    // The final batch, alone in its commit, small enough to sit in one block.
    let mut request = client.put_records().stream_name("torn");
    for i in 0..6 {
        request = request.records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(
                    format!("FINAL-{i}:{}", "f".repeat(80)).into_bytes(),
                ))
                .build()
                .expect("data and key set"),
        );
    }
    let output = request.send().await.expect("the final PutRecords succeeds");
    assert_eq!(output.failed_record_count(), Some(0));
    server.kill9();

    let (path, block_offset, mut bytes) = last_written_block(server.data_dir());
    // docs/segment-format.md: a block is a 64-byte header (magic `SLUICEBK`, `body_len` at
    // offset 24, little-endian) and `body_len` bytes of chunks, CRC32C-checked as a whole. Each
    // commit starts a new 4 KiB-aligned block, so the last written block holds the final batch
    // and nothing else.
    let block = &bytes[block_offset..block_offset + BLOCK_BYTES];
    assert_eq!(
        &block[..8],
        b"SLUICEBK",
        "the last written 4 KiB region starts a block (format changed?)"
    );
    let body_len = u32::from_le_bytes(block[24..28].try_into().expect("4 bytes")) as usize;
    let used = 64 + body_len;
    assert!(
        body_len > 0 && used <= BLOCK_BYTES,
        "the final batch fits one block ({body_len} body bytes)"
    );
    // Flip bytes in the body (the records), as a torn write of this block would leave them.
    for position in [
        64 + body_len / 2,
        64 + body_len / 2 + 1,
        64 + body_len * 3 / 4,
        used - 1,
    ] {
        bytes[block_offset + position] ^= 0xA5;
    }
    std::fs::write(&path, &bytes)
        .unwrap_or_else(|e| panic!("cannot rewrite {}: {e}", path.display()));
    eprintln!(
        "corrupted {} at block offset {block_offset} ({used} bytes in use)",
        path.display()
    );

    server.restart();
    let client = server.client();
    wait_for_status(&client, "torn", StreamStatus::Active).await;
    let records = read_shard_to_end(&client, "torn", &shard).await;
    let final_present: Vec<&ReadRecord> = records
        .iter()
        .filter(|r| r.data.starts_with(b"FINAL-"))
        .collect();
    assert!(
        final_present.is_empty(),
        "records of the corrupted final batch must be absent, found {} of them: {:?}",
        final_present.len(),
        final_present
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data[..r.data.len().min(12)]).into_owned())
            .collect::<Vec<_>>()
    );
    let recovered: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| (r.sequence_number.clone(), r.data.clone()))
        .collect();
    assert_eq!(
        recovered.len(),
        earlier.len(),
        "every record before the final batch survives"
    );
    assert!(
        recovered == earlier,
        "earlier records come back with their sequence numbers, byte for byte"
    );

    let mut after = Vec::new();
    for i in 0..5 {
        let data = format!("after-{i}").into_bytes();
        let output = client
            .put_record()
            .stream_name("torn")
            .partition_key("k")
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord after recovering a torn tail succeeds");
        after.push((output.sequence_number().to_owned(), data));
    }
    let last_earlier = &earlier.last().expect("earlier records exist").0;
    assert!(
        sequence_number_key(last_earlier) < sequence_number_key(&after[0].0),
        "new writes sort after the surviving records"
    );
    let records = read_shard_to_end(&client, "torn", &shard).await;
    let all: Vec<(String, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.sequence_number, r.data))
        .collect();
    let expected: Vec<(String, Vec<u8>)> = earlier
        .iter()
        .cloned()
        .chain(after.iter().cloned())
        .collect();
    assert!(
        all == expected,
        "after recovery the shard holds the earlier records then the new ones"
    );

    // And the new tail itself survives another crash.
    server.restart();
    let client = server.client();
    wait_for_status(&client, "torn", StreamStatus::Active).await;
    let records = read_shard_to_end(&client, "torn", &shard).await;
    let all: Vec<(String, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.sequence_number, r.data))
        .collect();
    assert!(
        all == expected,
        "a second restart after the torn-tail recovery keeps everything"
    );
}
