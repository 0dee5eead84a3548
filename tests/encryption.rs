//! Encryption at rest with the real binary: records of a stream under StartStreamEncryption
//! never reach the log files in the clear, read back byte for byte (also after `kill -9`), and
//! StopStreamEncryption switches new records back to plaintext while the old ones stay
//! readable. A control stream without encryption shows that the disk scan does find
//! plaintext when it is there.

mod common;

use std::path::Path;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{EncryptionType, StreamStatus};
use common::{Server, create_active_stream, read_shard_to_end, shard_id, wait_for_status};

const KEY_ID: &str = "alias/aws/kinesis";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("log directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The log files under `<data-dir>/log/` that contain `needle`.
fn log_files_containing(data_dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let files = files_under(&data_dir.join("log"));
    assert!(!files.is_empty(), "the data dir has log files to scan");
    files
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).expect("log file is readable");
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

/// `count` records whose data all start with `marker`, each unique.
fn payloads(marker: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("{marker}:{i:04}:{}", "x".repeat(i * 37)).into_bytes())
        .collect()
}

async fn put_all(client: &Client, stream: &str, data: &[Vec<u8>], expect: EncryptionType) {
    for (i, bytes) in data.iter().enumerate() {
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(format!("pk-{i}"))
            .data(Blob::new(bytes.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecord to {stream} failed: {e:?}"));
        assert_eq!(
            out.encryption_type(),
            Some(&expect),
            "PutRecord reports the stream's EncryptionType"
        );
    }
}

async fn read_data(client: &Client, stream: &str) -> Vec<Vec<u8>> {
    read_shard_to_end(client, stream, &shard_id(0))
        .await
        .into_iter()
        .map(|r| r.data)
        .collect()
}

async fn start_encryption(client: &Client, stream: &str) {
    client
        .start_stream_encryption()
        .stream_name(stream)
        .encryption_type(EncryptionType::Kms)
        .key_id(KEY_ID)
        .send()
        .await
        .expect("StartStreamEncryption succeeds");
    wait_for_status(client, stream, StreamStatus::Active).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_an_encrypted_stream_never_appear_in_the_clear_on_disk_but_read_back_exactly() {
    let mut server = Server::start();
    let client = server.client();
    create_active_stream(&client, "secret", 1).await;
    create_active_stream(&client, "control", 1).await;
    start_encryption(&client, "secret").await;
    let summary = client
        .describe_stream_summary()
        .stream_name("secret")
        .send()
        .await
        .expect("describe");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.encryption_type(), Some(&EncryptionType::Kms));
    assert_eq!(summary.key_id(), Some(KEY_ID));

    let secret = payloads("SECRET-MARKER-8d1f", 40);
    let control = payloads("CONTROL-MARKER-2b7e", 5);
    put_all(&client, "secret", &secret, EncryptionType::Kms).await;
    put_all(&client, "control", &control, EncryptionType::None).await;

    assert_eq!(
        read_data(&client, "secret").await,
        secret,
        "read back from the tailing cache"
    );
    assert!(
        server.data_dir().join("keys").is_dir(),
        "the key store lives in <data-dir>/keys"
    );

    server.kill9();
    let found = log_files_containing(server.data_dir(), b"SECRET-MARKER-8d1f");
    assert!(
        found.is_empty(),
        "plaintext of the encrypted stream found in {found:?}"
    );
    assert!(
        !log_files_containing(server.data_dir(), b"CONTROL-MARKER-2b7e").is_empty(),
        "the scan finds the unencrypted control stream's records"
    );

    server.restart();
    let client = server.client();
    assert_eq!(
        read_data(&client, "secret").await,
        secret,
        "read back from disk after kill -9"
    );
    assert_eq!(read_data(&client, "control").await, control);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_stop_stream_encryption_new_records_are_plaintext_and_old_ones_still_read() {
    let mut server = Server::start();
    let client = server.client();
    create_active_stream(&client, "toggle", 1).await;
    start_encryption(&client, "toggle").await;
    let before = payloads("BEFORE-STOP-4c2a", 10);
    put_all(&client, "toggle", &before, EncryptionType::Kms).await;

    client
        .stop_stream_encryption()
        .stream_name("toggle")
        .encryption_type(EncryptionType::Kms)
        .key_id(KEY_ID)
        .send()
        .await
        .expect("StopStreamEncryption succeeds");
    wait_for_status(&client, "toggle", StreamStatus::Active).await;
    let after = payloads("AFTER-STOP-9e5b", 10);
    put_all(&client, "toggle", &after, EncryptionType::None).await;

    let all: Vec<Vec<u8>> = before.iter().chain(&after).cloned().collect();
    assert_eq!(read_data(&client, "toggle").await, all);

    server.kill9();
    assert!(log_files_containing(server.data_dir(), b"BEFORE-STOP-4c2a").is_empty());
    assert!(!log_files_containing(server.data_dir(), b"AFTER-STOP-9e5b").is_empty());
    server.restart();
    assert_eq!(
        read_data(&server.client(), "toggle").await,
        all,
        "both kinds read back after a restart"
    );
}
