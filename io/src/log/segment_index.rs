//! Index files of sealed segments, so that opening the log scans only the newest segment.
//!
//! When the committer rolls over to a new segment, the segment it leaves is sealed: nothing is
//! ever written to it again. Its chunk references (what recovery would rebuild by reading and
//! CRC-checking every block) are written beside it as `<segment>.idx`, together with where its
//! chain of blocks ends. Opening the log loads a sealed segment's index instead of scanning it,
//! so recovery reads one segment whatever the size of the log (18 s for 12 GB before this).
//!
//! Invariants:
//! - An index is only an accelerator: a missing, torn, foreign or inconsistent index file is
//!   ignored and the segment is scanned as before. That is why the file is written without
//!   an fsync of its own and checked by a CRC-32C over its whole body.
//! - An index is written only after its segment's data is durable (the committer fdatasyncs
//!   the sealed segment first, whatever the log's durability), so an index never describes
//!   blocks a power cut could take away.
//! - A sealed segment never changes, so its index never goes stale; retention removes the
//!   index with its segment. Repair and verification scan every segment and ignore indexes.
//! - Loading an index applies the same position and arrival-time checks as a scan, and the
//!   chain must continue in the next segment exactly where the index says it ends (the next
//!   segment is named after that block and its first block carries that CRC, which the scan of
//!   the next segment checks).
//!
//! What an index does not do: CRC-check the sealed segment's blocks at open. Damage inside a
//! sealed segment is found when it is read (every read checks its block's CRC) and by
//! `sluice verify`, which scans every block.
//!
//! File layout: `SLIX` magic, format version (u32 LE), body length (u64 LE), CRC-32C of the
//! body (u32 LE), then the body: an rkyv archive of [`IndexFile`].

use std::path::{Path, PathBuf};

use super::ShardKey;
use super::shard_index::ChunkRef;

const MAGIC: &[u8; 4] = b"SLIX";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 4 + 4 + 8 + 4;

/// The index of one sealed segment, as written.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexFile {
    pub log_id: u32,
    pub segment_id: u64,
    /// The `prev_crc` of the segment's first block (its link to the segment before).
    pub first_prev_crc: u32,
    /// Blocks in the segment; its last block is `segment_id + blocks - 1`.
    pub blocks: u64,
    /// The CRC of its last block, which the next segment's first block must carry.
    pub last_crc: u32,
    /// The commit time of its last block.
    pub last_arrival_ms: u64,
    /// Stream names, referred to by index from `chunks`.
    pub stream_names: Vec<String>,
    /// Every chunk of the segment (marker chunks included), in the order they were written.
    pub chunks: Vec<IndexedChunk>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexedChunk {
    pub stream: u32,
    pub stream_created_ms: u64,
    pub shard_index: u32,
    pub first_position: u64,
    pub record_count: u32,
    pub arrival_ms: u64,
    pub block_offset: u64,
    pub chunk_offset: u32,
    pub chunk_len: u32,
}

/// What the committer collects about the segment being written, to index it when sealed.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub first_prev_crc: Option<u32>,
    pub blocks: u64,
    pub chunks: Vec<(ShardKey, ChunkRef)>,
}

pub(super) fn index_path(dir: &Path, segment_id: u64) -> PathBuf {
    dir.join(format!("{segment_id:020}.idx"))
}

impl IndexFile {
    /// The index of a sealed segment from what the committer collected while writing it.
    pub fn from_ledger(
        log_id: u32,
        segment_id: u64,
        ledger: Ledger,
        last_crc: u32,
        last_arrival_ms: u64,
    ) -> Self {
        let mut stream_names: Vec<String> = Vec::new();
        let mut last_name: Option<(std::rc::Rc<str>, u32)> = None;
        let chunks = ledger
            .chunks
            .into_iter()
            .map(|(shard, chunk)| {
                let stream = match &last_name {
                    Some((name, at)) if std::rc::Rc::ptr_eq(name, &shard.stream_name) => *at,
                    _ => {
                        let at = match stream_names.iter().position(|n| **n == *shard.stream_name) {
                            Some(at) => at,
                            None => {
                                stream_names.push(shard.stream_name.to_string());
                                stream_names.len() - 1
                            }
                        };
                        let at = u32::try_from(at).expect("fewer than 2^32 streams");
                        last_name = Some((shard.stream_name.clone(), at));
                        at
                    }
                };
                IndexedChunk {
                    stream,
                    stream_created_ms: shard.stream_created_ms,
                    shard_index: shard.shard_index,
                    first_position: chunk.first_position,
                    record_count: chunk.record_count,
                    arrival_ms: chunk.arrival_ms,
                    block_offset: chunk.block_offset,
                    chunk_offset: chunk.chunk_offset,
                    chunk_len: chunk.chunk_len,
                }
            })
            .collect();
        Self {
            log_id,
            segment_id,
            first_prev_crc: ledger.first_prev_crc.unwrap_or(0),
            blocks: ledger.blocks,
            last_crc,
            last_arrival_ms,
            stream_names,
            chunks,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing an index into memory cannot fail");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The index in `bytes`, or `None` if they are not a whole, intact index file.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let header = bytes.get(..HEADER_LEN)?;
        if &header[..4] != MAGIC || header[4..8] != VERSION.to_le_bytes() {
            return None;
        }
        let len = u64::from_le_bytes(header[8..16].try_into().ok()?);
        let crc = u32::from_le_bytes(header[16..20].try_into().ok()?);
        let body = bytes.get(HEADER_LEN..)?;
        if body.len() as u64 != len || crc32c::crc32c(body) != crc {
            return None;
        }
        // rkyv needs its archive aligned; the body sits at an offset of 20 in the file.
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        rkyv::from_bytes::<Self, rkyv::rancor::Error>(&aligned).ok()
    }
}

/// Writes a sealed (and already synced) segment's index, replacing any, on a thread of its
/// own so that the executor never waits for it. Failures are logged and cost only a scan at the next
/// open.
pub(super) fn write_in_background(dir: PathBuf, index: IndexFile) {
    let segment_id = index.segment_id;
    let spawned = std::thread::Builder::new()
        .name("sluice-index".into())
        .spawn(move || {
            if let Err(error) = write(&dir, &index) {
                tracing::warn!(
                    segment_id,
                    %error,
                    "Could not write a sealed segment's index; the next open scans it."
                );
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(segment_id, %error, "Could not start the index writer.");
    }
}

fn write(dir: &Path, index: &IndexFile) -> std::io::Result<()> {
    let path = index_path(dir, index.segment_id);
    let tmp = path.with_extension("idx.tmp");
    std::fs::write(&tmp, index.encode())?;
    std::fs::rename(&tmp, &path)
}

/// The index of `segment_id` in `dir` if there is a valid one for this log.
pub(super) fn load(dir: &Path, log_id: u32, segment_id: u64) -> Option<IndexFile> {
    let bytes = std::fs::read(index_path(dir, segment_id)).ok()?;
    let index = IndexFile::decode(&bytes)?;
    (index.log_id == log_id && index.segment_id == segment_id && index.blocks > 0).then_some(index)
}

/// Removes the index of a segment that is going away (retention), if there is one.
pub(super) fn remove(dir: &Path, segment_id: u64) {
    let path = index_path(dir, segment_id);
    if let Err(error) = std::fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(segment_id, %error, "Could not remove a segment's index.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IndexFile {
        IndexFile {
            log_id: 7,
            segment_id: 42,
            first_prev_crc: 0xDEAD_BEEF,
            blocks: 3,
            last_crc: 0x1234_5678,
            last_arrival_ms: 1_700_000_000_000,
            stream_names: vec!["orders".into(), "clicks".into()],
            chunks: vec![
                IndexedChunk {
                    stream: 1,
                    stream_created_ms: 5,
                    shard_index: 2,
                    first_position: 10,
                    record_count: 4,
                    arrival_ms: 1_700_000_000_000,
                    block_offset: 8192,
                    chunk_offset: 64,
                    chunk_len: 512,
                },
                IndexedChunk {
                    stream: 0,
                    stream_created_ms: 6,
                    shard_index: 0,
                    first_position: 0,
                    record_count: 0,
                    arrival_ms: 1_700_000_000_000,
                    block_offset: 12288,
                    chunk_offset: 64,
                    chunk_len: 96,
                },
            ],
        }
    }

    #[test]
    fn an_index_round_trips_and_any_damage_makes_it_unusable() {
        let index = sample();
        let bytes = index.encode();
        assert_eq!(IndexFile::decode(&bytes), Some(index));
        for at in [0, 5, 9, 17, HEADER_LEN + 3, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert_eq!(IndexFile::decode(&damaged), None, "byte {at} flipped");
        }
        assert_eq!(IndexFile::decode(&bytes[..bytes.len() - 1]), None, "torn");
        assert_eq!(IndexFile::decode(&[]), None);
    }

    mod on_disk {
        use std::time::Duration;

        use super::super::super::recovery::{RecoveryMode, recover};
        use super::super::super::test_support::*;
        use super::super::super::{Durability, Log};
        use super::super::index_path;

        /// Waits until every sealed segment (all but the newest) has its index file.
        async fn indexes_written(dir: &std::path::Path) -> usize {
            for _ in 0..500 {
                let segments = segment_files(dir);
                let sealed = segments.len() - 1;
                let indexed = segments[..sealed]
                    .iter()
                    .filter(|s| s.with_extension("idx").exists())
                    .count();
                if indexed == sealed {
                    return sealed;
                }
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            panic!("the sealed segments' indexes were never written");
        }

        #[test]
        fn sealed_segments_open_from_their_index_and_a_damaged_index_falls_back_to_a_scan() {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().to_owned();
            run(async move {
                let cfg = || config(&path, 64 << 10, Durability::Fsync);
                let a = shard("orders", 0);
                let b = shard("clicks", 3);
                let mut batches_a = Vec::new();
                let mut batches_b = Vec::new();
                {
                    let log = Log::open(cfg()).await.expect("log opens");
                    for tag in 0..40 {
                        let ra = records(20, 500, tag);
                        let rb = records(3, 100, tag + 1000);
                        log.append(&a, ra.clone()).await.expect("append");
                        log.append(&b, rb.clone()).await.expect("append");
                        batches_a.push(ra);
                        batches_b.push(rb);
                    }
                }
                let sealed = indexes_written(&path).await;
                assert!(
                    sealed >= 3,
                    "the test needs several sealed segments: {sealed}"
                );

                let (_, report) = recover(cfg(), RecoveryMode::Open).await.expect("recovers");
                assert_eq!(report.indexed_segments, sealed as u64);
                let (_, verified) = recover(cfg(), RecoveryMode::Verify)
                    .await
                    .expect("verifies");
                assert_eq!(
                    verified.indexed_segments, 0,
                    "verification scans every segment"
                );
                assert_eq!(
                    verified.blocks, report.blocks,
                    "the index agrees with a scan"
                );
                {
                    let log = Log::open(cfg()).await.expect("log reopens");
                    assert_eq!(read_all(&log, &a, 0).await, expected(&batches_a));
                    assert_eq!(read_all(&log, &b, 0).await, expected(&batches_b));
                    // Appends continue the chain after an indexed open.
                    let more = records(5, 50, 99);
                    let appended = log.append(&a, more.clone()).await.expect("append");
                    assert_eq!(appended.first_position, 800);
                    batches_a.push(more);
                }

                // A damaged index is ignored: that segment is scanned, nothing is lost.
                let sealed = indexes_written(&path).await;
                let first = segment_files(&path)[0].clone();
                let id: u64 = first
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .expect("a segment id");
                let idx = index_path(&path, id);
                let mut bytes = std::fs::read(&idx).expect("index readable");
                let last = bytes.len() - 1;
                bytes[last] ^= 0xFF;
                std::fs::write(&idx, bytes).expect("index writable");
                let (_, report) = recover(cfg(), RecoveryMode::Open).await.expect("recovers");
                assert_eq!(report.indexed_segments, sealed as u64 - 1);
                let log = Log::open(cfg()).await.expect("log reopens");
                assert_eq!(read_all(&log, &a, 0).await, expected(&batches_a));
                assert_eq!(read_all(&log, &b, 0).await, expected(&batches_b));
            });
        }
    }
}
