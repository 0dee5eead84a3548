//! Turning one group commit's queued appends into blocks: assigning each append its
//! positions and the commit's arrival time, cutting the batch into blocks of about
//! `min(commit_bytes_max, BLOCK_BYTES_TARGET)` bytes, serializing each shard's records into a
//! chunk, and encoding the chunks into chained, 4 KiB-padded blocks in DMA buffers at the log's
//! write offset. Nothing here touches the disk or moves the log's write position.
//!
//! Invariants:
//! - A chunk holds records of one shard, all under one data key or all in the clear, at
//!   consecutive positions; records of a shard under another key go into the next block, so a
//!   block holds at most one records chunk per shard.
//! - A retention marker is an empty chunk at the shard's next assigned position.
//! - The blocks of one commit carry consecutive block sequence numbers from the log's next one,
//!   each the CRC of the block before it, and lie back to back from the log's write offset.

use std::rc::Rc;
use std::sync::Arc;

use glommio::io::DmaBuffer;

use super::super::block::{
    self, BLOCK_ALIGN, BlockIdentity, ChunkEncryption, ChunkInput, ChunkPayload, StoredChunk,
    StoredRecord, align_up,
};
use super::super::shard_index::{ChunkRef, ShardIndex};
use super::super::{Appended, BLOCK_BYTES_TARGET, ShardKey, ShardMap, State, wall_clock_ms};
use super::{Part, Pending, record_bytes};
use crate::keystore::{DataKey, SegmentKeyId};

/// The records of one shard inside one planned block.
struct ChunkPlan {
    shard: ShardKey,
    key: Option<Arc<DataKey>>,
    first_position: u64,
    arrival_ms: u64,
    records: Vec<StoredRecord>,
}

/// A planned chunk whose archive has been measured: `payload_len` bytes, serialized straight
/// into its block by [`encode_blocks`].
struct SerializedChunk {
    shard: ShardKey,
    key: Option<Arc<DataKey>>,
    first_position: u64,
    arrival_ms: u64,
    record_count: u32,
    records: StoredChunk,
    payload_len: usize,
}

#[derive(Default)]
pub(super) struct BlockPlan {
    chunks: Vec<ChunkPlan>,
    open_chunk: ShardMap<usize>,
    bytes: usize,
}

impl BlockPlan {
    /// Whether no chunk went into this block.
    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// A block encoded and ready to write.
pub(super) struct EncodedBlock {
    pub buffer: Rc<DmaBuffer>,
    pub offset: u64,
    pub block_seq: u64,
    pub crc: u32,
    pub chunks: Vec<(ShardKey, ChunkRef)>,
}

/// Assigns positions and an arrival time to a batch and splits it into blocks. Answers one
/// `Appended` per part of each pending append (none for markers).
pub(super) fn plan_commit(
    state: &mut State,
    batch: &mut [Pending],
) -> (Vec<BlockPlan>, Vec<Vec<Appended>>, u64) {
    let arrival_ms = wall_clock_ms().max(state.last_arrival_ms);
    let block_target = state.config.commit_bytes_max.min(BLOCK_BYTES_TARGET);
    let mut blocks = vec![BlockPlan::default()];
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch.iter_mut() {
        let mut appended = Vec::with_capacity(if pending.marker {
            0
        } else {
            pending.parts.len()
        });
        for part in &mut pending.parts {
            let index = state
                .shards
                .entry(part.shard.clone())
                .or_insert_with(|| ShardIndex::starting_at(0));
            assert!(
                index.assigned_next >= index.next_position,
                "positions are assigned before they become visible, never after"
            );
            if pending.marker {
                plan_marker(&mut blocks, part, index, arrival_ms);
                continue;
            }
            appended.push(plan_records(
                &mut blocks,
                part,
                index,
                arrival_ms,
                block_target,
            ));
        }
        results.push(appended);
    }
    (blocks, results, arrival_ms)
}

/// Plans a retention marker: an empty chunk at the shard's next assigned position.
fn plan_marker(blocks: &mut [BlockPlan], part: &Part, index: &ShardIndex, arrival_ms: u64) {
    assert!(part.records.is_empty(), "a marker carries no records");
    let block = blocks
        .last_mut()
        .expect("there is always a block being planned");
    block.open_chunk.remove(&part.shard);
    block.chunks.push(ChunkPlan {
        shard: part.shard.clone(),
        key: None,
        first_position: index.assigned_next,
        // With records of the shard still in flight (written, not yet indexed), the indexed
        // arrival time is behind theirs; the commit's own is not.
        arrival_ms: if index.assigned_next > index.next_position {
            arrival_ms
        } else {
            index.last_arrival_ms.unwrap_or(arrival_ms)
        },
        records: Vec::new(),
    });
    block.bytes += block::CHUNK_HEADER_LEN + part.shard.stream_name.len() + 32;
}

/// Assigns positions to one shard's records and adds them to the blocks being planned.
fn plan_records(
    blocks: &mut Vec<BlockPlan>,
    part: &mut Part,
    index: &mut ShardIndex,
    arrival_ms: u64,
    block_target: usize,
) -> Appended {
    assert!(
        !part.records.is_empty(),
        "an empty append never reaches the committer"
    );
    let first_position = index.assigned_next;
    index.assigned_next += part.records.len() as u64;
    assert!(
        index.assigned_next > first_position,
        "positions strictly increase per shard"
    );
    // The chunk of this part's shard in the block being planned, once looked up: the lookup
    // hashes the shard key, which per record cost ~7 % of binary ingest.
    let mut chunk_at: Option<usize> = None;
    for (i, record) in std::mem::take(&mut part.records).into_iter().enumerate() {
        let position = first_position + i as u64;
        let bytes = record_bytes(&record);
        let block = blocks
            .last_mut()
            .expect("there is always a block being planned");
        // A chunk is encrypted under one key or none, so records of the same shard under
        // another key (encryption just started or stopped) go into the next block; this keeps
        // one records chunk per shard per block.
        let other_key = chunk_at.is_none()
            && block.open_chunk.get(&part.shard).is_some_and(|&at| {
                block.chunks[at].key.as_ref().map(|k| k.key_ref)
                    != part.key.as_ref().map(|k| k.key_ref)
            });
        if other_key || (block.bytes + bytes > block_target && !block.chunks.is_empty()) {
            blocks.push(BlockPlan::default());
            chunk_at = None;
        }
        let block = blocks
            .last_mut()
            .expect("there is always a block being planned");
        let at = match chunk_at {
            Some(at) => at,
            None => {
                let at = match block.open_chunk.get(&part.shard) {
                    Some(&at) => at,
                    None => {
                        block.chunks.push(ChunkPlan {
                            shard: part.shard.clone(),
                            key: part.key.clone(),
                            first_position: position,
                            arrival_ms,
                            records: Vec::new(),
                        });
                        block.bytes += block::CHUNK_HEADER_LEN + part.shard.stream_name.len() + 32;
                        block
                            .open_chunk
                            .insert(part.shard.clone(), block.chunks.len() - 1);
                        block.chunks.len() - 1
                    }
                };
                chunk_at = Some(at);
                at
            }
        };
        let chunk = &mut block.chunks[at];
        assert_eq!(
            chunk.first_position + chunk.records.len() as u64,
            position,
            "records of a shard in one chunk have consecutive positions"
        );
        chunk.records.push(StoredRecord {
            partition_key: record.partition_key,
            data: record.data,
        });
        block.bytes += bytes;
    }
    Appended {
        first_position,
        arrival_ms,
    }
}

/// Serialized chunks of a planned block.
pub(super) struct SerializedBlock {
    chunks: Vec<SerializedChunk>,
    unpadded_len: usize,
    pub padded_len: usize,
}

pub(super) fn serialize_block(plan: BlockPlan) -> SerializedBlock {
    let chunks: Vec<SerializedChunk> = plan
        .chunks
        .into_iter()
        .map(|chunk| {
            let record_count =
                u32::try_from(chunk.records.len()).expect("a chunk's record count fits u32");
            let records = StoredChunk {
                records: chunk.records,
            };
            let payload_len = ChunkPayload::new(&records).len;
            SerializedChunk {
                shard: chunk.shard,
                key: chunk.key,
                first_position: chunk.first_position,
                arrival_ms: chunk.arrival_ms,
                record_count,
                records,
                payload_len,
            }
        })
        .collect();
    let unpadded_len = block::HEADER_LEN
        + chunks
            .iter()
            .map(|c| {
                block::chunk_encoded_len(
                    c.shard.stream_name.len(),
                    block::stored_payload_len(c.payload_len, c.key.is_some()),
                )
            })
            .sum::<usize>();
    SerializedBlock {
        chunks,
        unpadded_len,
        padded_len: align_up(unpadded_len, BLOCK_ALIGN),
    }
}

/// Encodes the blocks of one commit into DMA buffers at the log's write offset, chaining their
/// sequence numbers and CRCs. Does not move the log's write position: that happens once the
/// blocks are written.
pub(super) fn encode_blocks(
    state: &State,
    blocks: Vec<SerializedBlock>,
    arrival_ms: u64,
) -> Vec<EncodedBlock> {
    let segment_id = state.active_segment_id;
    let file = &state.active().file;
    let mut offset = state.write_offset;
    let mut prev_crc = state.prev_crc;
    let mut encoded = Vec::with_capacity(blocks.len());
    for (block_seq, block) in (state.next_block_seq..).zip(blocks) {
        assert!(
            offset.is_multiple_of(BLOCK_ALIGN as u64),
            "a block starts 4 KiB-aligned"
        );
        assert!(
            block.padded_len.is_multiple_of(BLOCK_ALIGN),
            "a block is a whole number of 4 KiB pages"
        );
        assert!(
            offset + block.padded_len as u64 <= state.active().size,
            "ensure_space made room for the whole commit in the active segment"
        );
        let mut buffer = file.alloc_dma_buffer(block.padded_len);
        let inputs: Vec<ChunkInput<'_>> = block
            .chunks
            .iter()
            .map(|c| ChunkInput {
                stream_name: &c.shard.stream_name,
                stream_created_ms: c.shard.stream_created_ms,
                shard_index: c.shard.shard_index,
                first_position: c.first_position,
                arrival_ms: c.arrival_ms,
                record_count: c.record_count,
                payload: ChunkPayload {
                    chunk: &c.records,
                    len: c.payload_len,
                },
                encryption: c.key.as_deref().map(|key| ChunkEncryption {
                    key,
                    segment: SegmentKeyId {
                        log_id: state.config.log_id,
                        segment_id,
                    },
                    nonce: fresh_nonce(),
                }),
            })
            .collect();
        let identity = BlockIdentity {
            log_id: state.config.log_id,
            block_seq,
            prev_crc,
            arrival_ms,
            synced_below: state.synced_below,
        };
        let (crc, offsets) = block::encode_block(buffer.as_bytes_mut(), identity, &inputs);
        // Paired with the check after every read: the bytes handed to the disk carry this CRC.
        debug_assert_eq!(
            block::block_crc(&buffer.as_bytes()[..block.unpadded_len]),
            crc
        );
        let chunks = block
            .chunks
            .iter()
            .zip(offsets)
            .zip(inputs.iter())
            .map(|((c, chunk_offset), input)| {
                let chunk_len = input.encoded_len();
                let chunk = ChunkRef {
                    first_position: c.first_position,
                    record_count: c.record_count,
                    arrival_ms: c.arrival_ms,
                    segment_id,
                    block_offset: offset,
                    chunk_offset,
                    chunk_len: u32::try_from(chunk_len).expect("a chunk fits u32 bytes"),
                };
                (c.shard.clone(), chunk)
            })
            .collect();
        encoded.push(EncodedBlock {
            buffer: Rc::new(buffer),
            offset,
            block_seq,
            crc,
            chunks,
        });
        offset += block.padded_len as u64;
        prev_crc = crc;
    }
    encoded
}

/// A random 96-bit AES-GCM nonce. Random nonces keep the chance of a repeat under one key
/// negligible for up to 2^32 chunks per key (NIST SP 800-38D, 8.3); each segment has its own
/// key, with at most `block::SEGMENT_KEY_CHUNKS_MAX` chunks.
fn fresh_nonce() -> [u8; block::NONCE_LEN] {
    let mut nonce = [0u8; block::NONCE_LEN];
    getrandom::getrandom(&mut nonce).expect("the OS random number source is available");
    nonce
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use crate::keystore::KeyStore;
    use crate::log::test_support::*;
    use crate::log::{AppendRecord, Durability, Log};

    #[test]
    fn after_encryption_stops_new_chunks_are_clear_and_old_ones_stay_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log");
        let keys_dir = dir.path().join("keys");
        run(async move {
            let keys = KeyStore::open(&keys_dir).expect("key store opens");
            let on = Rc::new(std::cell::Cell::new(true));
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            log.set_encryption(keys, toggled_policy(on.clone()));
            let a = shard("toggle", 0);
            let secret = marked(2, 1);
            log.append(&a, secret.clone()).await.expect("append");
            on.set(false);
            let clear = vec![AppendRecord {
                partition_key: "pk".to_owned(),
                data: b"CLEAR-TEXT-AFTER-STOP".to_vec().into(),
            }];
            // Encrypted and clear records of one shard queued into the same commit.
            // The key is chosen when an append is first polled; `join` polls both before the
            // committer runs.
            let (more_secret, more_clear) = futures_util::future::join(
                async {
                    on.set(true);
                    log.append(&a, marked(1, 3)).await
                },
                async {
                    on.set(false);
                    log.append(&a, clear.clone()).await
                },
            )
            .await;
            more_secret.expect("append");
            more_clear.expect("append");
            assert_eq!(log.stats().commits, 2, "the two appends shared one commit");
            log.append(&a, clear.clone()).await.expect("append");
            assert!(!segments_contain(&path, MARKER));
            assert!(segments_contain(&path, b"CLEAR-TEXT-AFTER-STOP"));
            let all = read_all(&log, &a, 0).await;
            assert_eq!(all, expected(&[secret, marked(1, 3), clear.clone(), clear]));
        });
    }
}
