//! Corruption of acknowledged records in the newest segment, through the real binary: the
//! server must refuse to start instead of truncating, `sluice verify` must find and locate the
//! damage, and `sluice verify --repair` must say what it drops before the server starts again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use common::{Server, create_active_stream, read_shard_to_end, shard_id, wait_for_status};

const STREAM: &str = "damaged";
const BLOCK_BYTES: usize = 4096;
const BATCHES: usize = 6;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("the sluice binary built by cargo runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn verify(data_dir: &Path, repair: bool) -> Output {
    let dir = data_dir.display().to_string();
    let mut args = vec!["verify", "--data-dir", dir.as_str()];
    if repair {
        args.push("--repair");
    }
    let output = sluice(&args);
    eprintln!("$ sluice {}\n{}", args.join(" "), text(&output.stdout));
    output
}

/// The only segment of log 0 and the offsets of the block headers in it.
fn segment_and_blocks(data_dir: &Path) -> (PathBuf, Vec<usize>) {
    let dir = data_dir.join("log").join("0");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("log 0 exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert_eq!(segments.len(), 1, "one segment: {segments:?}");
    let segment = segments.remove(0);
    let bytes = std::fs::read(&segment).expect("segment readable");
    let blocks = (0..bytes.len())
        .step_by(BLOCK_BYTES)
        .filter(|&at| &bytes[at..at + 8] == b"SLUICEBK")
        .collect();
    (segment, blocks)
}

/// Puts one PutRecords of `count` records of about `bytes` bytes each into `STREAM`, all under
/// one partition key, and appends their data to `written`.
async fn put_batch(
    client: &aws_sdk_kinesis::Client,
    batch: usize,
    count: usize,
    bytes: usize,
    written: &mut Vec<Vec<u8>>,
) {
    let mut request = client.put_records().stream_name(STREAM);
    for i in 0..count {
        let data = format!("batch-{batch}-{i}:{}", "x".repeat(bytes)).into_bytes();
        written.push(data.clone());
        request = request.records(
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(data))
                .build()
                .expect("data and key set"),
        );
    }
    let output = request.send().await.expect("PutRecords succeeds");
    assert_eq!(output.failed_record_count(), Some(0));
}

/// Restarts the server and reads every record of `STREAM`'s only shard; answers the client
/// with the records' data in order.
async fn restart_and_read(server: &mut Server) -> (aws_sdk_kinesis::Client, Vec<Vec<u8>>) {
    server.restart();
    let client = server.client();
    wait_for_status(&client, STREAM, StreamStatus::Active).await;
    let records = read_shard_to_end(&client, STREAM, &shard_id(0)).await;
    (client, records.into_iter().map(|r| r.data).collect())
}

/// Writes `BATCHES` PutRecords, each its own commit with its own commit time, and stops the
/// server. Returns the server (for its data dir) and every record's data in order.
async fn write_batches() -> (Server, Vec<Vec<u8>>) {
    let mut server = Server::options()
        .flag("--segment-bytes", 1024 * 1024)
        .start();
    let client = server.client();
    create_active_stream(&client, STREAM, 1).await;
    let mut written = Vec::new();
    for batch in 0..BATCHES {
        put_batch(&client, batch, 5, 300, &mut written).await;
        // Commits a few milliseconds apart carry different commit times.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    (server, written)
}

/// Guards against corruption in the middle of the newest segment being taken for a torn tail:
/// the old recovery cut the log at the damaged block and the next commit overwrote every
/// acknowledged record after it, with only a warning. Here one block in the middle is damaged
/// and acknowledged blocks follow it: the server must refuse to start with one `error:` line
/// naming the file and offset, change no byte of the segment, `sluice verify` must exit
/// non-zero naming the same place, and only `sluice verify --repair` may truncate, after saying
/// what it drops. The server then starts and serves the records before the damage.
#[tokio::test]
async fn damage_before_acknowledged_blocks_stops_the_server_until_an_operator_repairs_it() {
    let (mut server, written) = write_batches().await;
    let data_dir = server.data_dir().to_owned();

    let clean = verify(&data_dir, false);
    let stdout = text(&clean.stdout);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "clean dir verifies: {stdout}{}",
        text(&clean.stderr)
    );
    assert!(stdout.contains("1 shard(s), 30 record(s)"), "{stdout}");
    assert!(
        stdout.contains(&format!("{STREAM}/shardId-000000000000")),
        "{stdout}"
    );
    assert!(stdout.contains("clean"), "{stdout}");

    let (segment, blocks) = segment_and_blocks(&data_dir);
    assert_eq!(
        blocks.len(),
        BATCHES,
        "one block per PutRecords: {blocks:?}"
    );
    let hole = blocks[2];
    let mut bytes = std::fs::read(&segment).expect("segment readable");
    bytes[hole + 200] ^= 0xA5;
    bytes[hole + 201] ^= 0x5A;
    std::fs::write(&segment, &bytes).expect("segment writable");

    let dir = data_dir.display().to_string();
    let refused = sluice(&[
        "serve",
        "--data-dir",
        &dir,
        "--http-addr",
        "127.0.0.1:0",
        "--binary-addr",
        "off",
        "--cores",
        "1",
        "--pin-cores",
        "false",
    ]);
    let stderr = text(&refused.stderr);
    eprintln!("$ sluice serve ...\n{stderr}");
    assert_eq!(
        refused.status.code(),
        Some(1),
        "the server refuses: {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("an error line: {stderr}"));
    assert!(line.contains(&segment.display().to_string()), "{line}");
    assert!(line.contains(&format!("offset {hole}")), "{line}");
    assert!(line.contains("sluice verify"), "{line}");
    assert_eq!(
        std::fs::read(&segment).expect("segment readable"),
        bytes,
        "a refused start changes no byte of the segment"
    );

    let damaged = verify(&data_dir, false);
    let stdout = text(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("CORRUPT"), "{stdout}");
    assert!(stdout.contains(&segment.display().to_string()), "{stdout}");
    assert!(stdout.contains(&format!("offset {hole}")), "{stdout}");
    assert!(
        stdout.contains("positions 10..15 lost in the hole, 15..30"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&segment).expect("segment readable"), bytes);

    let repaired = verify(&data_dir, true);
    let stdout = text(&repaired.stdout);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{stdout}{}",
        text(&repaired.stderr)
    );
    assert!(stdout.contains("REPAIRED"), "{stdout}");
    assert!(stdout.contains("3 block(s), 15 record(s)"), "{stdout}");
    assert!(stdout.contains("1 shard(s), 10 record(s)"), "{stdout}");

    let (_, data) = restart_and_read(&mut server).await;
    assert_eq!(
        data,
        written[..10].to_vec(),
        "the records before the hole survive"
    );
}

/// Guards against the new check mistaking a torn write for corruption: the same damage on the
/// very last commit's block is a torn tail, never acknowledged. `sluice verify` reports it and
/// exits 0, and the server starts without an operator.
#[tokio::test]
async fn damage_to_the_last_commit_is_a_torn_tail_that_verify_calls_clean() {
    let (mut server, written) = write_batches().await;
    let data_dir = server.data_dir().to_owned();
    let (segment, blocks) = segment_and_blocks(&data_dir);
    let last = *blocks.last().expect("blocks");
    let mut bytes = std::fs::read(&segment).expect("segment readable");
    bytes[last + 200] ^= 0xA5;
    std::fs::write(&segment, &bytes).expect("segment writable");

    let checked = verify(&data_dir, false);
    let stdout = text(&checked.stdout);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{stdout}{}",
        text(&checked.stderr)
    );
    assert!(
        stdout.contains(&format!("torn tail: segment 1 at offset {last}")),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("segment readable"),
        bytes,
        "verify changes nothing"
    );

    let (_, data) = restart_and_read(&mut server).await;
    assert_eq!(
        data,
        written[..25].to_vec(),
        "every batch but the torn one survives"
    );
}

/// Damage in an older segment, with whole segments of acknowledged records after it. The
/// server opens sealed segments from their indexes and never writes to them again, so it is
/// `sluice verify` that finds such damage: it must say where the hole is, what the later
/// segments held, and that a repair removes them; `--repair` must then do exactly that, and the
/// server serve the records before the hole and take new ones.
#[tokio::test]
async fn damage_in_an_older_segment_is_located_and_repair_drops_the_segments_after_it() {
    let mut server = Server::options().flag("--segment-bytes", 65536).start();
    let client = server.client();
    create_active_stream(&client, STREAM, 1).await;
    let mut written = Vec::new();
    // 12 commits of 6 records of ~3 KB: about 20 KiB each, so three per 64 KiB segment.
    for batch in 0..12 {
        put_batch(&client, batch, 6, 3000, &mut written).await;
    }
    let data_dir = server.data_dir().to_owned();
    let log_dir = data_dir.join("log").join("0");
    // Sealed segments' indexes are written in the background; the oldest one's must exist, so
    // that the repair is seen to remove it.
    let oldest_index = log_dir.join(format!("{:020}.idx", 1));
    for _ in 0..500 {
        if oldest_index.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(oldest_index.exists(), "the oldest segment is indexed");
    server.kill9();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .expect("log 0 exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "several segments: {segments:?}");

    // Damage the second block of the oldest segment.
    let oldest = segments[0].clone();
    let mut bytes = std::fs::read(&oldest).expect("segment readable");
    let blocks: Vec<usize> = (0..bytes.len())
        .step_by(BLOCK_BYTES)
        .filter(|&at| &bytes[at..at + 8] == b"SLUICEBK")
        .collect();
    assert!(blocks.len() >= 2, "{blocks:?}");
    let hole = blocks[1];
    bytes[hole + 300] ^= 0xFF;
    std::fs::write(&oldest, &bytes).expect("segment writable");

    let damaged = verify(&data_dir, false);
    let stdout = text(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("CORRUPT"), "{stdout}");
    assert!(stdout.contains(&oldest.display().to_string()), "{stdout}");
    assert!(stdout.contains(&format!("offset {hole}")), "{stdout}");
    assert!(stdout.contains("LaterSegment"), "{stdout}");
    assert!(
        stdout.contains("positions 6..12 lost in the hole, 12..72 after the hole"),
        "{stdout}"
    );
    assert!(stdout.contains("removing every later segment"), "{stdout}");
    assert_eq!(
        std::fs::read(&oldest).expect("segment readable"),
        bytes,
        "verify changes nothing"
    );

    let repaired = verify(&data_dir, true);
    let stdout = text(&repaired.stdout);
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{stdout}{}",
        text(&repaired.stderr)
    );
    assert!(stdout.contains("REPAIRED"), "{stdout}");
    assert!(stdout.contains("1 shard(s), 6 record(s)"), "{stdout}");
    assert!(stdout.contains("removed by the repair"), "{stdout}");
    for later in &segments[1..] {
        assert!(!later.exists(), "{} is removed", later.display());
        assert!(!later.with_extension("idx").exists(), "and its index");
    }
    assert!(
        !oldest.with_extension("idx").exists(),
        "the truncated segment's index, written when it was sealed, is gone"
    );

    let (client, data) = restart_and_read(&mut server).await;
    assert_eq!(
        data,
        written[..6].to_vec(),
        "the records before the hole survive"
    );
    let put = client
        .put_record()
        .stream_name(STREAM)
        .partition_key("k")
        .data(Blob::new(b"after the repair".to_vec()))
        .send()
        .await
        .expect("the repaired log takes writes");
    assert_eq!(put.shard_id(), shard_id(0));
}
