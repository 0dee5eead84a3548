//! The read path of the log: [`read`] serves a shard's records from a position, zero-copy,
//! out of the block cache or out of chunks read from the segments with O_DIRECT, several in
//! flight at once.
//!
//! Invariants:
//! - Every chunk is checked after the read, paired with the encoding before the write: its
//!   CRC, then its header against the shard's index entry, then (for an encrypted chunk) its
//!   GCM tag, then its rkyv archive with `rkyv::access`. Only then does a [`Piece`] hold it.
//! - [`LogRead::for_each`] reads the archives unchecked, which is sound because each piece's
//!   bytes were validated when the piece was made and are immutable and owned by the piece.
//! - A read returns records in position order, at most `limit` of them, and stops before the
//!   record that would take its data bytes over `bytes_max`, except that it always returns at
//!   least one record if any exists at or after the requested position.

use std::ops::Range;
use std::rc::Rc;

use glommio::io::{DmaBuffer, ReadResult};

use super::block::{self, ArchivedStoredChunk};
use super::shard_index::ChunkRef;
use super::{Log, ReadError, ShardKey, ShardTip};
use crate::keystore::SegmentKeyId;

/// Chunks a read fetches from disk concurrently.
const READ_AHEAD_CHUNKS: usize = 32;

/// A chunk being fetched for a read: from the block cache, or by a disk read in flight.
enum Fetch {
    Cached(Rc<DmaBuffer>),
    Reading(glommio::Task<glommio::Result<ReadResult, ()>>),
}

/// Read buffers a [`LogRead`] borrows its records from.
#[derive(Debug)]
enum ReadBytes {
    Disk(ReadResult),
    Cached(Rc<DmaBuffer>),
    /// The decrypted archive of an encrypted chunk.
    Decrypted(rkyv::util::AlignedVec),
}

impl ReadBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            ReadBytes::Disk(read) => read,
            ReadBytes::Cached(buffer) => buffer.as_bytes(),
            ReadBytes::Decrypted(plain) => plain,
        }
    }
}

/// A run of records served from one validated chunk payload.
#[derive(Debug)]
struct Piece {
    bytes: ReadBytes,
    /// The rkyv payload inside `bytes`; validated with `rkyv::access` when the piece was made.
    payload: Range<usize>,
    /// Position of the chunk's first record.
    chunk_first_position: u64,
    skip: usize,
    take: usize,
    arrival_ms: u64,
}

/// Called with `(position, arrival_ms, partition_key, data)` for each record of a [`LogRead`].
pub type RecordVisitor<'f> = dyn FnMut(u64, u64, &str, &[u8]) + 'f;

/// The result of [`Log::read`]: records in position order, borrowed zero-copy from read buffers.
#[derive(Debug)]
pub struct LogRead {
    pieces: Vec<Piece>,
    len: usize,
    data_bytes: usize,
    key_bytes: usize,
    tip: ShardTip,
}

impl LogRead {
    fn empty(tip: ShardTip) -> Self {
        Self {
            pieces: Vec::new(),
            len: 0,
            data_bytes: 0,
            key_bytes: 0,
            tip,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of the data bytes of the records (partition keys not included).
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Sum of the partition keys' bytes of the records.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    pub fn first_position(&self) -> Option<u64> {
        self.pieces
            .first()
            .map(|p| p.chunk_first_position + p.skip as u64)
    }

    pub fn last_position(&self) -> Option<u64> {
        self.pieces
            .last()
            .map(|p| p.chunk_first_position + (p.skip + p.take) as u64 - 1)
    }

    /// The shard's tip when the read started.
    pub fn tip(&self) -> ShardTip {
        self.tip
    }

    /// Calls `f(position, arrival_ms, partition_key, data)` for every record, in order.
    pub fn for_each(&self, f: &mut RecordVisitor<'_>) {
        for piece in &self.pieces {
            let payload = &piece.bytes.as_slice()[piece.payload.clone()];
            // SAFETY: `Log::read` built this piece only after `rkyv::access` validated exactly
            // these bytes as an `ArchivedStoredChunk`, and the buffer behind them is immutable
            // (a `ReadResult` or a shared `Rc<DmaBuffer>`) and owned by this piece.
            let chunk = unsafe { rkyv::access_unchecked::<ArchivedStoredChunk>(payload) };
            let records = &chunk.records[piece.skip..piece.skip + piece.take];
            for (i, record) in records.iter().enumerate() {
                let position = piece.chunk_first_position + (piece.skip + i) as u64;
                f(
                    position,
                    piece.arrival_ms,
                    record.partition_key.as_str(),
                    record.data.as_slice(),
                );
            }
        }
    }
}

/// See [`Log::read`].
pub(super) async fn read(
    log: &Log,
    shard: &ShardKey,
    position: u64,
    limit: usize,
    bytes_max: usize,
) -> Result<LogRead, ReadError> {
    if let Some(segment_id) = log.state.borrow().poisoned {
        return Err(ReadError::Poisoned { segment_id });
    }
    let tip = log.tip(shard);
    let mut out = LogRead::empty(tip);
    let mut next = position;
    'batches: while out.len < limit {
        // Chunks expected to cover the rest of `limit`, fetched concurrently: a shard's
        // chunks lie in different blocks, so a catch-up read would otherwise pay one disk
        // round trip per chunk.
        let batch: Vec<(ChunkRef, Fetch)> = {
            let state = log.state.borrow();
            let Some(index) = state.shards.get(shard) else {
                break;
            };
            let Some(first) = index.chunk_for(next) else {
                break;
            };
            let mut batch = Vec::new();
            let mut covered = 0usize;
            let mut at = first;
            while batch.len() < READ_AHEAD_CHUNKS && covered < limit - out.len {
                let Some(chunk) = index.chunk(at) else { break };
                let chunk = *chunk;
                covered += chunk
                    .end_position()
                    .saturating_sub(next.max(chunk.first_position))
                    as usize;
                let fetch = match state.cache.get(&(chunk.segment_id, chunk.block_offset)) {
                    Some(block) => Fetch::Cached(block),
                    None => {
                        let file = state
                            .segments
                            .get(&chunk.segment_id)
                            .expect("an indexed chunk's segment is open")
                            .file
                            .clone();
                        let offset = chunk.block_offset + u64::from(chunk.chunk_offset);
                        let len = chunk.chunk_len as usize;
                        Fetch::Reading(glommio::spawn_local(async move {
                            file.read_at(offset, len).await
                        }))
                    }
                };
                batch.push((chunk, fetch));
                at += 1;
            }
            batch
        };
        for (chunk, fetch) in batch {
            let offset = chunk.block_offset + u64::from(chunk.chunk_offset);
            let (bytes, range) = match fetch {
                Fetch::Cached(block) => {
                    let start = chunk.chunk_offset as usize;
                    (
                        ReadBytes::Cached(block),
                        start..start + chunk.chunk_len as usize,
                    )
                }
                Fetch::Reading(task) => {
                    let read = task.await.map_err(|error| ReadError::Io {
                        segment_id: chunk.segment_id,
                        offset,
                        source: error.into(),
                    })?;
                    (ReadBytes::Disk(read), 0..chunk.chunk_len as usize)
                }
            };
            let mut payload = validate_chunk(&bytes, range.clone(), shard, &chunk)?;
            let plain = decrypt_if_encrypted(log, &bytes.as_slice()[range], shard, &chunk)?;
            let bytes = match plain {
                None => bytes,
                Some(plain) => {
                    payload = 0..plain.len();
                    ReadBytes::Decrypted(plain)
                }
            };
            let archived = rkyv::access::<ArchivedStoredChunk, rkyv::rancor::Error>(
                &bytes.as_slice()[payload.clone()],
            )
            .map_err(|error| ReadError::ArchiveInvalid {
                segment_id: chunk.segment_id,
                offset,
                reason: error.to_string(),
            })?;
            if archived.records.len() != chunk.record_count as usize {
                return Err(ReadError::ChunkMismatch {
                    segment_id: chunk.segment_id,
                    offset,
                });
            }
            let skip = (next.max(chunk.first_position) - chunk.first_position) as usize;
            let mut take = 0;
            let mut full = false;
            for record in archived.records.iter().skip(skip) {
                let len = record.data.len();
                if out.len >= limit || (out.len > 0 && out.data_bytes + len > bytes_max) {
                    full = true;
                    break;
                }
                out.len += 1;
                out.data_bytes += len;
                out.key_bytes += record.partition_key.len();
                take += 1;
            }
            if take > 0 {
                out.pieces.push(Piece {
                    bytes,
                    payload,
                    chunk_first_position: chunk.first_position,
                    skip,
                    take,
                    arrival_ms: chunk.arrival_ms,
                });
            }
            next = chunk.first_position + (skip + take) as u64;
            if full {
                // Reads still in flight are cancelled when their tasks drop; glommio keeps
                // their buffers alive until the kernel is done with them.
                break 'batches;
            }
        }
    }
    Ok(out)
}

/// The decrypted archive of `raw` (a CRC-checked chunk) if it is encrypted, else `None`.
fn decrypt_if_encrypted(
    log: &Log,
    raw: &[u8],
    shard: &ShardKey,
    chunk: &ChunkRef,
) -> Result<Option<rkyv::util::AlignedVec>, ReadError> {
    let offset = chunk.block_offset + u64::from(chunk.chunk_offset);
    let header = block::parse_chunk(raw).map_err(|_| ReadError::ChunkMismatch {
        segment_id: chunk.segment_id,
        offset,
    })?;
    if !header.is_encrypted() {
        return Ok(None);
    }
    let keys = log.encryption.borrow().as_ref().map(|e| e.keys.clone());
    let segment = SegmentKeyId {
        log_id: log.state.borrow().config.log_id,
        segment_id: chunk.segment_id,
    };
    block::decrypt_payload(raw, &header, segment, &|key_ref| {
        keys.as_ref().and_then(|keys| keys.by_ref(key_ref))
    })
    .map(Some)
    .map_err(|problem| ReadError::Decrypt {
        segment_id: chunk.segment_id,
        offset,
        stream_name: shard.stream_name.to_string(),
        shard_index: shard.shard_index,
        problem,
    })
}

/// Checks a chunk read back against its CRC and its index entry; returns the payload range
/// within `bytes`.
fn validate_chunk(
    bytes: &ReadBytes,
    range: Range<usize>,
    shard: &ShardKey,
    chunk: &ChunkRef,
) -> Result<Range<usize>, ReadError> {
    let segment_id = chunk.segment_id;
    let offset = chunk.block_offset + u64::from(chunk.chunk_offset);
    let all = bytes.as_slice();
    if all.len() < range.end {
        return Err(ReadError::ShortRead {
            segment_id,
            offset,
            expected: range.len(),
            got: all.len().saturating_sub(range.start),
        });
    }
    let raw = &all[range.clone()];
    let header =
        block::parse_chunk(raw).map_err(|_| ReadError::ChunkMismatch { segment_id, offset })?;
    let computed = block::chunk_crc(raw);
    if computed != header.crc {
        return Err(ReadError::ChunkCorrupt {
            segment_id,
            offset,
            stored: header.crc,
            computed,
        });
    }
    let matches = header.chunk_len == raw.len()
        && header.first_position == chunk.first_position
        && header.record_count == chunk.record_count
        && header.shard_index == shard.shard_index
        && header.stream_created_ms == shard.stream_created_ms
        && header.stream_name == &*shard.stream_name;
    if !matches {
        return Err(ReadError::ChunkMismatch { segment_id, offset });
    }
    Ok(range.start + header.payload.start..range.start + header.payload.end)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Durability, Log};
    use super::*;
    use crate::keystore::KeyStore;

    #[test]
    fn encrypted_chunks_read_back_across_reopen_and_never_reach_the_disk_in_the_clear() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let keys_dir = dir.path().join("keys");
        run(async move {
            let keys = KeyStore::open(&keys_dir).expect("key store opens");
            let on = Rc::new(std::cell::Cell::new(true));
            let a = shard("secret", 0);
            let batches = vec![marked(3, 1), marked(2, 2)];
            {
                let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                    .await
                    .expect("log opens");
                log.set_encryption(keys.clone(), toggled_policy(on.clone()));
                for batch in &batches {
                    log.append(&a, batch.clone()).await.expect("append");
                }
                // Served from the block cache: decrypted there too.
                assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
            }
            assert!(
                !segments_contain(&path, MARKER),
                "plaintext reached the disk"
            );

            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            // Without the key store the chunk is refused, not returned as garbage.
            match log.read(&a, 0, 10, 1 << 20).await {
                Err(ReadError::Decrypt { problem, .. }) => {
                    assert!(matches!(problem, block::DecryptProblem::UnknownKey { .. }))
                }
                other => panic!("expected a decrypt error, got {other:?}"),
            }
            let keys = KeyStore::open(&keys_dir).expect("key store reopens");
            log.set_encryption(keys, toggled_policy(on));
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
        });
    }

    #[test]
    fn a_tampered_encrypted_chunk_with_a_fixed_crc_is_a_decrypt_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let keys_dir = dir.path().join("keys");
        run(async move {
            let keys = KeyStore::open(&keys_dir).expect("key store opens");
            let on = Rc::new(std::cell::Cell::new(true));
            let a = shard("tamper", 0);
            {
                let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                    .await
                    .expect("log opens");
                log.set_encryption(keys.clone(), toggled_policy(on.clone()));
                log.append(&a, marked(4, 1)).await.expect("append");
            }
            // Flip one ciphertext bit and recompute both CRCs, as an attacker with write
            // access to the segment could: only the GCM tag can notice.
            let file = segment_files(&path).remove(0);
            let mut bytes = std::fs::read(&file).expect("read segment");
            let header = block::parse_header(&bytes).expect("first block");
            let block_len = header.block_len();
            let (chunk_at, chunk_len, payload) = {
                let chunks =
                    block::parse_chunks(&bytes[..block_len], &header).expect("chunks parse");
                let (at, chunk) = &chunks[0];
                assert!(chunk.is_encrypted());
                (*at, chunk.chunk_len, chunk.payload.clone())
            };
            bytes[chunk_at + payload.start + block::ENVELOPE_LEN + 3] ^= 0x01;
            let crc = block::chunk_crc(&bytes[chunk_at..chunk_at + chunk_len]);
            bytes[chunk_at + 4..chunk_at + 8].copy_from_slice(&crc.to_le_bytes());
            let crc = block::block_crc(&bytes[..block_len]);
            bytes[36..40].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&file, &bytes).expect("write segment");

            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens: the chain is intact");
            log.set_encryption(keys, toggled_policy(on));
            match log.read(&a, 0, 10, 1 << 20).await {
                Err(ReadError::Decrypt { problem, .. }) => {
                    assert!(matches!(problem, block::DecryptProblem::TagMismatch { .. }))
                }
                other => panic!("expected a decrypt error, got {other:?}"),
            }
        });
    }

    /// Guards against per-segment keys that only work within one segment: records written
    /// into two segments (under two derived keys) must both read back, from the cache and
    /// after a reopen, and each segment's chunks must carry the segment-key flag.
    #[test]
    fn records_in_two_segments_decrypt_under_their_own_segment_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let keys_dir = dir.path().join("keys");
        run(async move {
            let keys = KeyStore::open(&keys_dir).expect("key store opens");
            let on = Rc::new(std::cell::Cell::new(true));
            let a = shard("secret", 0);
            // Each batch fills about half of an 8 KiB segment, so three roll over once.
            let batches: Vec<_> = (1..=3).map(|tag| marked(40, tag)).collect();
            {
                let log = Log::open(config(&path, 8192, Durability::Fsync))
                    .await
                    .expect("log opens");
                log.set_encryption(keys.clone(), toggled_policy(on.clone()));
                for batch in &batches {
                    log.append(&a, batch.clone()).await.expect("append");
                }
                assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
            }
            let files = segment_files(&path);
            assert_eq!(files.len(), 2, "the records span two segments");
            let mut ciphertexts = Vec::new();
            for file in &files {
                for at in block_offsets(file) {
                    let bytes = std::fs::read(file).expect("read segment");
                    let header = block::parse_header(&bytes[at..]).expect("block");
                    let block_bytes = &bytes[at..at + header.block_len()];
                    for (_, chunk) in block::parse_chunks(block_bytes, &header).expect("chunks") {
                        assert_eq!(
                            chunk.flags,
                            block::CHUNK_FLAG_ENCRYPTED | block::CHUNK_FLAG_SEGMENT_KEY
                        );
                        ciphertexts.push(block_bytes[chunk.payload.clone()].to_vec());
                    }
                }
            }
            assert_eq!(ciphertexts.len(), 3);
            assert!(
                !segments_contain(&path, MARKER),
                "plaintext reached the disk"
            );

            let log = Log::open(config(&path, 8192, Durability::Fsync))
                .await
                .expect("log reopens");
            log.set_encryption(keys, toggled_policy(on));
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
        });
    }

    /// Guards against the per-segment key change orphaning old data: segments written by the
    /// format version 2 code (every chunk encrypted under the data key itself; the fixture in
    /// `io/tests/fixtures/segment-v2-encrypted` was written by that code, not by a test
    /// helper) must open and read with this code, and new appends after them must read too.
    #[test]
    fn chunks_written_by_format_version_2_still_decrypt() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/segment-v2-encrypted");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let keys_dir = dir.path().join("keys");
        for sub in ["log", "keys"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
            for entry in std::fs::read_dir(fixture.join(sub)).expect("fixture exists") {
                let entry = entry.expect("entry");
                std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name()))
                    .expect("copy fixture");
            }
        }
        for file in segment_files(&path) {
            let bytes = std::fs::read(&file).expect("read segment");
            let header = block::parse_header(&bytes).expect("block");
            assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
            let block_bytes = &bytes[..header.block_len()];
            for (_, chunk) in block::parse_chunks(block_bytes, &header).expect("chunks") {
                assert_eq!(chunk.flags, block::CHUNK_FLAG_ENCRYPTED, "old scheme");
            }
        }
        run(async move {
            let keys = KeyStore::open(&keys_dir).expect("key store opens");
            let on = Rc::new(std::cell::Cell::new(true));
            let a = shard("legacy", 0);
            let mut batches: Vec<_> = (1..=3).map(|tag| marked(40, tag)).collect();
            {
                let log = Log::open(config(&path, 8192, Durability::Fsync))
                    .await
                    .expect("a format version 2 log opens");
                log.set_encryption(keys.clone(), toggled_policy(on.clone()));
                assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
                batches.push(marked(40, 4));
                log.append(&a, batches[3].clone()).await.expect("append");
                assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
            }
            let log = Log::open(config(&path, 8192, Durability::Fsync))
                .await
                .expect("a mixed log reopens");
            log.set_encryption(keys, toggled_policy(on));
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
        });
    }

    #[test]
    fn reads_honour_the_record_limit_and_the_byte_budget_but_return_at_least_one_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, Durability::Write))
                .await
                .expect("log opens");
            let s = shard("s", 0);
            log.append(&s, records(10, 100, 1)).await.expect("append");
            let read = log.read(&s, 2, 3, 1 << 20).await.expect("read");
            assert_eq!(
                (read.len(), read.first_position(), read.last_position()),
                (3, Some(2), Some(4))
            );
            let read = log.read(&s, 0, 100, 250).await.expect("read");
            assert_eq!(read.len(), 2);
            assert_eq!(read.data_bytes(), 200);
            assert_eq!(read.key_bytes(), "pk-1-0".len() + "pk-1-1".len());
            let read = log.read(&s, 0, 100, 10).await.expect("read");
            assert_eq!(
                read.len(),
                1,
                "one record even when it exceeds the byte budget"
            );
        });
    }
}
