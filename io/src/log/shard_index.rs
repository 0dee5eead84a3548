//! The in-memory index of one shard's records inside the per-core log.
//!
//! Invariants:
//! - `chunks` are in position order and contiguous: each chunk starts where the previous one
//!   ends, and the last one ends at `next_position`. Retention only removes a prefix.
//! - `arrival_ms` is non-decreasing along `chunks` (the log never hands out an arrival time
//!   below one it already used), so timestamp lookups can binary search.
//! - `assigned_next >= next_position`: the committer assigns positions before the block is
//!   written; readers only see `next_position`, which moves once the block is written (and,
//!   under `Durability::Fsync`, synced).

use std::collections::VecDeque;

/// Where one chunk of a shard's records lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub first_position: u64,
    pub record_count: u32,
    pub arrival_ms: u64,
    pub segment_id: u64,
    pub block_offset: u64,
    /// Offset of the chunk from its block start.
    pub chunk_offset: u32,
    pub chunk_len: u32,
}

impl ChunkRef {
    pub fn end_position(&self) -> u64 {
        self.first_position + u64::from(self.record_count)
    }
}

#[derive(Debug, Default, Clone)]
pub struct ShardIndex {
    chunks: VecDeque<ChunkRef>,
    /// One past the last record readers may see.
    pub next_position: u64,
    /// One past the last position handed to an append (readers never see this).
    pub assigned_next: u64,
    pub last_arrival_ms: Option<u64>,
    /// The newest segment holding a chunk (or an empty marker chunk) of this shard. Retention
    /// must not delete it without first writing a marker elsewhere, or recovery would forget
    /// `next_position`.
    pub last_segment_id: u64,
}

impl ShardIndex {
    /// An index for a shard first seen at `first_position` (0 for a new shard, more when
    /// retention already deleted its oldest segments).
    pub fn starting_at(first_position: u64) -> Self {
        Self {
            chunks: VecDeque::new(),
            next_position: first_position,
            assigned_next: first_position,
            last_arrival_ms: None,
            last_segment_id: 0,
        }
    }

    /// Records a written chunk. Empty (marker) chunks only move `last_segment_id`.
    pub fn push(&mut self, chunk: ChunkRef) {
        assert_eq!(
            chunk.first_position, self.next_position,
            "chunks of a shard are contiguous"
        );
        if let Some(last) = self.last_arrival_ms {
            assert!(chunk.arrival_ms >= last, "arrival times never go backwards");
        }
        self.last_segment_id = chunk.segment_id;
        if chunk.record_count == 0 {
            // A marker of a shard whose records all expired carries its last arrival time.
            if self.last_arrival_ms.is_none() {
                self.last_arrival_ms = Some(chunk.arrival_ms);
            }
            return;
        }
        self.next_position = chunk.end_position();
        self.assigned_next = self.assigned_next.max(self.next_position);
        self.last_arrival_ms = Some(chunk.arrival_ms);
        self.chunks.push_back(chunk);
    }

    /// The first position still stored (the tip when nothing is).
    pub fn first_stored_position(&self) -> u64 {
        self.chunks
            .front()
            .map_or(self.next_position, |c| c.first_position)
    }

    /// First position whose arrival time is `>= timestamp_ms`, or the tip if none is.
    pub fn position_at_timestamp(&self, timestamp_ms: u64) -> u64 {
        let at = self.chunks.partition_point(|c| c.arrival_ms < timestamp_ms);
        self.chunks
            .get(at)
            .map_or(self.next_position, |c| c.first_position)
    }

    /// Index of the chunk holding `position`, or of the first stored chunk if `position` was
    /// already deleted; `None` at or past the tip.
    pub fn chunk_for(&self, position: u64) -> Option<usize> {
        if position >= self.next_position || self.chunks.is_empty() {
            return None;
        }
        let after = self
            .chunks
            .partition_point(|c| c.first_position <= position);
        Some(after.saturating_sub(1))
    }

    pub fn chunk(&self, at: usize) -> Option<&ChunkRef> {
        self.chunks.get(at)
    }

    /// Forgets the chunks stored in `segment_id`, which must be the oldest segment holding any.
    pub fn remove_segment(&mut self, segment_id: u64) {
        while self
            .chunks
            .front()
            .is_some_and(|c| c.segment_id == segment_id)
        {
            self.chunks.pop_front();
        }
        assert!(
            self.chunks.iter().all(|c| c.segment_id != segment_id),
            "retention deletes segments oldest first"
        );
    }

    #[cfg(test)]
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first_position: u64, record_count: u32, arrival_ms: u64, segment_id: u64) -> ChunkRef {
        ChunkRef {
            first_position,
            record_count,
            arrival_ms,
            segment_id,
            block_offset: 0,
            chunk_offset: 64,
            chunk_len: 128,
        }
    }

    #[test]
    fn lookups_find_the_chunk_holding_a_position_and_the_first_at_a_timestamp() {
        let mut index = ShardIndex::starting_at(0);
        index.push(chunk(0, 3, 10, 1));
        index.push(chunk(3, 2, 20, 1));
        index.push(chunk(5, 4, 20, 2));
        assert_eq!(index.next_position, 9);
        assert_eq!(index.chunk_for(0), Some(0));
        assert_eq!(index.chunk_for(2), Some(0));
        assert_eq!(index.chunk_for(3), Some(1));
        assert_eq!(index.chunk_for(8), Some(2));
        assert_eq!(index.chunk_for(9), None);
        assert_eq!(index.position_at_timestamp(0), 0);
        assert_eq!(index.position_at_timestamp(11), 3);
        assert_eq!(index.position_at_timestamp(20), 3);
        assert_eq!(index.position_at_timestamp(21), 9);
        index.remove_segment(1);
        assert_eq!(index.chunk_count(), 1);
        assert_eq!(index.first_stored_position(), 5);
        assert_eq!(
            index.chunk_for(0),
            Some(0),
            "deleted positions read from the first stored"
        );
        assert_eq!(index.position_at_timestamp(0), 5);
    }

    #[test]
    #[should_panic(expected = "contiguous")]
    fn a_gap_between_chunks_is_a_bug() {
        let mut index = ShardIndex::starting_at(0);
        index.push(chunk(1, 3, 10, 1));
    }
}
