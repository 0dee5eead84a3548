//! The log's cache of recently written blocks, so readers tailing a shard are served from
//! memory instead of the disk.
//!
//! Invariants:
//! - Blocks are keyed by `(segment_id, block_offset)` and are the exact bytes the committer
//!   wrote there; a cached block is never modified.
//! - `bytes` is the sum of the lengths of the cached blocks and, after every insert, at most
//!   `bytes_max`: the oldest blocks are evicted first. With `bytes_max == 0` nothing is cached.
//! - Retention drops a segment's blocks together with the segment.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use glommio::io::DmaBuffer;

/// Recently written blocks, oldest first, for readers tailing the log.
#[derive(Default)]
pub(super) struct BlockCache {
    order: VecDeque<(u64, u64)>,
    blocks: HashMap<(u64, u64), Rc<DmaBuffer>>,
    bytes: usize,
    pub(super) bytes_max: usize,
}

impl BlockCache {
    pub(super) fn insert(&mut self, key: (u64, u64), block: Rc<DmaBuffer>) {
        if self.bytes_max == 0 {
            return;
        }
        self.bytes += block.len();
        if let Some(old) = self.blocks.insert(key, block) {
            self.bytes -= old.len();
        } else {
            self.order.push_back(key);
        }
        while self.bytes > self.bytes_max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.blocks.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
    }

    pub(super) fn get(&self, key: &(u64, u64)) -> Option<Rc<DmaBuffer>> {
        self.blocks.get(key).cloned()
    }

    pub(super) fn remove_segment(&mut self, segment_id: u64) {
        let blocks = &mut self.blocks;
        let bytes = &mut self.bytes;
        self.order.retain(|key| {
            if key.0 != segment_id {
                return true;
            }
            if let Some(old) = blocks.remove(key) {
                *bytes -= old.len();
            }
            false
        });
    }
}
