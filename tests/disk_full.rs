//! A full disk under the real binary: the data dir is a small loop-mounted ext4 file system,
//! filled up by a filler file so that the next segment rollover meets ENOSPC. Writes must be
//! refused per entry with an AWS-shaped InternalFailure, nothing acknowledged may be lost, the
//! records of the refused writes must never appear, `/health` must say so, and once the filler
//! is deleted the server must take writes again without a restart.
//!
//! The test needs root (CI runs as root) to mount the image; when the mount fails it fails
//! loudly rather than skipping, so a CI change cannot silently turn it off.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::{Server, create_active_stream, expect_error, read_shard_to_end, shard_id};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const STREAM: &str = "full";
const IMAGE_BYTES: &str = "48M";
const SEGMENT_BYTES: u64 = 1 << 20;
const RECORD_BYTES: usize = 60 << 10;
const RECORDS_PER_PUT: usize = 4;

fn run(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A small ext4 file system in a loop-mounted image; unmounted and removed on drop, even when
/// the test panics.
struct LoopMount {
    _temp: tempfile::TempDir,
    dir: PathBuf,
}

impl LoopMount {
    fn new() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let image = temp.path().join("disk.img");
        let dir = temp.path().join("mnt");
        std::fs::create_dir(&dir).expect("mount point");
        run(Command::new("truncate")
            .args(["-s", IMAGE_BYTES])
            .arg(&image));
        // No blocks reserved for root: the server runs as root here and would use them.
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image));
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&dir)
            .output()
            .expect("mount runs");
        assert!(
            mounted.status.success(),
            "mounting a loop ext4 image failed; this test needs root and loop devices and must \
             not be skipped: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        Self { _temp: temp, dir }
    }

    /// Free bytes on the file system.
    fn available_bytes(&self) -> u64 {
        let output = run(Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .expect("df prints the available bytes")
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        for _ in 0..50 {
            let unmounted = Command::new("umount").arg(&self.dir).status();
            if unmounted.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still busy (a server that did not exit yet): detach it so the image can go.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system but for `leave_bytes` with one preallocated file.
fn fill(mount: &LoopMount, path: &Path, leave_bytes: u64) {
    let size = mount.available_bytes().saturating_sub(leave_bytes);
    run(Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(path));
}

fn batch(tag: usize) -> Vec<PutRecordsRequestEntry> {
    (0..RECORDS_PER_PUT)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("pk-{tag}-{i}"))
                .data(Blob::new(vec![(tag % 251) as u8; RECORD_BYTES]))
                .build()
                .expect("entry builds")
        })
        .collect()
}

/// `GET <path>`: the status line and body.
async fn get(server: &Server, path: &str) -> String {
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("the server accepts connections");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("the request can be written");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answers within 10 s")
        .expect("the response can be read");
    String::from_utf8_lossy(&response).into_owned()
}

/// Guards against a full disk wedging the log or losing data: before, a preallocation that
/// failed with ENOSPC left the half-made segment file behind, so every later rollover failed
/// with EEXIST and the server took no write again until restarted. While the disk is full
/// each record must get InternalFailure saying the disk is full (PutRecord: HTTP 500), `/health`
/// must answer 503 `disk_full`, and after space is freed the same server must take writes, with
/// every acknowledged record (and no refused one) readable, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_per_entry_and_writes_resume_once_space_is_freed() {
    let mount = LoopMount::new();
    let data_dir = mount.dir.join("data");
    let mut server = Server::options()
        .data_dir(&data_dir)
        .flag("--segment-bytes", SEGMENT_BYTES)
        .start();
    let client = server.client();
    create_active_stream(&client, STREAM, 1).await;

    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut refused = 0usize;
    let put = |tag: usize| {
        let client = client.clone();
        async move {
            client
                .put_records()
                .stream_name(STREAM)
                .set_records(Some(batch(tag)))
                .send()
                .await
                .expect("PutRecords answers 200 even when every entry fails")
        }
    };
    for tag in 0..3 {
        let out = put(tag).await;
        assert_eq!(out.failed_record_count, Some(0));
        for (i, entry) in out.records.iter().enumerate() {
            acknowledged.push((
                format!("pk-{tag}-{i}"),
                entry.sequence_number.clone().expect("a sequence number"),
            ));
        }
    }

    let filler = mount.dir.join("filler");
    fill(&mount, &filler, 256 << 10);
    // The active segment still has room, so the first writes after the fill succeed; the
    // rollover after them finds no space. 40 puts of 240 KiB are far more than one segment.
    let mut tag = 3;
    while refused == 0 {
        assert!(tag < 40, "the disk never filled up");
        let out = put(tag).await;
        for (i, entry) in out.records.iter().enumerate() {
            match &entry.error_code {
                None => acknowledged.push((
                    format!("pk-{tag}-{i}"),
                    entry.sequence_number.clone().expect("a sequence number"),
                )),
                Some(code) => {
                    assert_eq!(code, "InternalFailure");
                    let message = entry.error_message.clone().unwrap_or_default();
                    assert!(message.contains("disk"), "{message}");
                    refused += 1;
                }
            }
        }
        tag += 1;
    }
    // Still full: every entry keeps failing, and nothing is poisoned.
    for _ in 0..3 {
        let out = put(tag).await;
        assert_eq!(out.failed_record_count, Some(RECORDS_PER_PUT as i32));
        tag += 1;
    }
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name(STREAM)
            .partition_key("single")
            .data(Blob::new(vec![1; RECORD_BYTES]))
            .send()
            .await,
    );
    assert_eq!(code, "InternalFailure", "{message}");
    let health = get(&server, "/health").await;
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains(r#""state":"disk_full""#), "{health}");
    let metrics = get(&server, "/metrics").await;
    assert!(
        metrics.contains(r#"io_log_disk_full{core="0",log="0"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"io_log_poisoned{core="0",log="0"} 0"#),
        "{metrics}"
    );

    std::fs::remove_file(&filler).expect("filler removed");
    let out = put(tag).await;
    assert_eq!(out.failed_record_count, Some(0), "writes resume: {out:?}");
    for (i, entry) in out.records.iter().enumerate() {
        acknowledged.push((
            format!("pk-{tag}-{i}"),
            entry.sequence_number.clone().expect("a sequence number"),
        ));
    }
    let health = get(&server, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let read_back = |records: Vec<common::ReadRecord>| -> Vec<(String, String)> {
        records
            .into_iter()
            .map(|r| (r.partition_key, r.sequence_number))
            .collect()
    };
    assert_eq!(
        read_back(read_shard_to_end(&client, STREAM, &shard_id(0)).await),
        acknowledged,
        "exactly the acknowledged records, in order"
    );
    server.restart();
    let client = server.client();
    assert_eq!(
        read_back(read_shard_to_end(&client, STREAM, &shard_id(0)).await),
        acknowledged,
        "the same records after a restart"
    );
    drop(server);
}
