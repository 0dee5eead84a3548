//! Helpers shared by the log's unit tests: an executor to run them on, shard keys, records,
//! configurations, and readers of segment files.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::block::{self, BLOCK_ALIGN};
use super::{AppendRecord, Durability, EncryptionPolicy, Log, LogConfig, ShardKey};

pub(super) fn run<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(2 << 20)
        .make()
        .expect("executor starts")
        .run(future)
}

pub(super) fn shard(name: &str, shard_index: u32) -> ShardKey {
    ShardKey {
        stream_name: Rc::from(name),
        stream_created_ms: 1_700_000_000_000,
        shard_index,
    }
}

pub(super) fn records(count: usize, size: usize, tag: u64) -> Vec<AppendRecord> {
    (0..count)
        .map(|i| AppendRecord {
            partition_key: format!("pk-{tag}-{i}"),
            data: (0..size)
                .map(|b| (b as u64 ^ tag ^ i as u64) as u8)
                .collect(),
        })
        .collect()
}

pub(super) fn config(dir: &Path, segment_bytes: u64, durability: Durability) -> LogConfig {
    LogConfig {
        dir: dir.to_owned(),
        log_id: 3,
        segment_bytes,
        commit_bytes_max: 16 << 10,
        commits_in_flight: super::COMMITS_IN_FLIGHT_DEFAULT,
        durability,
        observer: None,
        faults: None,
    }
}

pub(super) type Owned = (u64, String, Vec<u8>);

pub(super) async fn read_all(log: &Log, shard: &ShardKey, from: u64) -> Vec<Owned> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let read = log
            .read(shard, next, 7, 1 << 20)
            .await
            .expect("read succeeds");
        if read.is_empty() {
            return out;
        }
        read.for_each(&mut |position, _, key, data| {
            out.push((position, key.to_owned(), data.to_vec()))
        });
        next = read
            .last_position()
            .expect("non-empty read has a last position")
            + 1;
    }
}

pub(super) fn expected(batches: &[Vec<AppendRecord>]) -> Vec<Owned> {
    batches
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| (i as u64, r.partition_key.clone(), r.data.to_vec()))
        .collect()
}

/// Offsets of the valid-looking block headers in a segment file.
pub(super) fn block_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).expect("segment readable");
    (0..bytes.len())
        .step_by(BLOCK_ALIGN)
        .filter(|&at| block::parse_header(&bytes[at..]).is_ok())
        .collect()
}

pub(super) const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

pub(super) fn marked(count: usize, tag: u64) -> Vec<AppendRecord> {
    (0..count)
        .map(|i| AppendRecord {
            partition_key: format!("pk-{tag}-{i}"),
            data: [MARKER, format!("-{tag}-{i}").as_bytes()].concat().into(),
        })
        .collect()
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub(super) fn segments_contain(dir: &Path, needle: &[u8]) -> bool {
    segment_files(dir)
        .iter()
        .any(|path| contains(&std::fs::read(path).expect("segment readable"), needle))
}

/// A policy that encrypts every shard under `alias/aws/kinesis` while `on` is set.
pub(super) fn toggled_policy(on: Rc<std::cell::Cell<bool>>) -> EncryptionPolicy {
    Rc::new(move |_: &ShardKey| on.get().then(|| "alias/aws/kinesis".to_owned()))
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir readable")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}
