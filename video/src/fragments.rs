//! Fragments stored through the narrow storage face, and the in-memory index over them.
//!
//! Layout in a stream's internal Kinesis stream (see `model`):
//! - [`DATA_SHARD`]: a fragment is `u32 LE header length | MKV header | Cluster`, cut into
//!   records of at most [`PART_BYTES_MAX`] bytes and appended in one call, so its records are
//!   contiguous.
//! - [`INDEX_SHARD`]: one JSON [`FragmentEntry`] per fragment, appended only after the data append
//!   returned (durable under `durability = "fsync"`).
//!
//! Invariants:
//! - An entry is in the index only after both appends returned, so a fragment a reader can find
//!   is durable; a crash between the two appends leaves unindexed data that nothing reads (its
//!   producer never got PERSISTED for it).
//! - Fragment numbers are allocated from a per-stream counter that never goes back: at least one
//!   more than the last one, and at least the allocation time in milliseconds times 2^20, so
//!   numbers grow across restarts without reading the whole index first.
//! - The index is loaded from [`INDEX_SHARD`] on first use; entries appended while it loads are
//!   merged by number, never duplicated.
//! - No lock is held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_core::storage::{
    AppendError, NewRecord, ReadError, ReadLimits, ReadStart, RecordLog, ShardAddress,
};

use crate::model::{DATA_SHARD, FragmentEntry, INDEX_SHARD, PART_BYTES_MAX, StreamDefinition};

/// The partition key of every internal record (the shard is chosen explicitly).
const PARTITION_KEY: &str = "f";

/// A fragment read back: its index entry, the producer's MKV header and its Cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFragment {
    pub entry: FragmentEntry,
    pub header: Vec<u8>,
    pub cluster: Vec<u8>,
}

/// Why a fragment could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    #[error("cannot store the fragment: {0}")]
    Append(#[from] AppendError),
    #[error("cannot read fragments: {0}")]
    Read(#[from] ReadError),
    #[error("stored fragment {number} is damaged: {reason}")]
    Damaged { number: String, reason: String },
}

#[derive(Debug, Default)]
struct IndexState {
    /// In storage order of the index shard.
    entries: Vec<FragmentEntry>,
    by_number: HashMap<u128, usize>,
    last_number: u128,
    loaded: bool,
}

/// One video stream's fragment index.
#[derive(Debug, Default)]
pub struct StreamIndex {
    state: Mutex<IndexState>,
    /// Notified whenever an entry is added (live readers wait on it).
    added: event_listener::Event,
    /// Serialises loading.
    load: async_lock::Mutex<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // panic = "abort" in the server: a poisoned lock is only seen in tests, and every change
    // under it is a single push or insert.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StreamIndex {
    /// The next fragment number for a fragment that begins at `now_ms`.
    pub fn allocate(&self, now_ms: u64) -> u128 {
        let mut state = lock(&self.state);
        let number = (state.last_number + 1).max(u128::from(now_ms) << 20);
        state.last_number = number;
        number
    }

    fn insert(state: &mut IndexState, entry: FragmentEntry) -> bool {
        let Ok(number) = entry.number.parse::<u128>() else {
            return false;
        };
        if state.by_number.contains_key(&number) {
            return false;
        }
        state.last_number = state.last_number.max(number);
        state.by_number.insert(number, state.entries.len());
        state.entries.push(entry);
        true
    }

    /// Adds an entry whose data and index records are stored, and wakes live readers.
    pub fn add(&self, entry: FragmentEntry) {
        if Self::insert(&mut lock(&self.state), entry) {
            self.added.notify(usize::MAX);
        }
    }

    /// A listener that fires on the next [`StreamIndex::add`]; take it before looking, then wait.
    pub fn listen(&self) -> event_listener::EventListener {
        self.added.listen()
    }

    /// Every entry, in storage order.
    pub fn entries(&self) -> Vec<FragmentEntry> {
        lock(&self.state).entries.clone()
    }

    /// Entries from storage index `from` on (at most `max`).
    pub fn entries_from(&self, from: usize, max: usize) -> Vec<FragmentEntry> {
        let state = lock(&self.state);
        state.entries.iter().skip(from).take(max).cloned().collect()
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage index of fragment `number`.
    pub fn find(&self, number: &str) -> Option<(usize, FragmentEntry)> {
        let number = number.parse::<u128>().ok()?;
        let state = lock(&self.state);
        let at = *state.by_number.get(&number)?;
        Some((at, state.entries[at].clone()))
    }

    /// Loads the stored entries of `definition` once.
    pub async fn ensure_loaded<R: RecordLog>(
        &self,
        storage: &R,
        definition: &StreamDefinition,
    ) -> Result<(), FragmentError> {
        if lock(&self.state).loaded {
            return Ok(());
        }
        let _guard = self.load.lock().await;
        if lock(&self.state).loaded {
            return Ok(());
        }
        let shard = ShardAddress::new(&definition.internal_stream, INDEX_SHARD);
        let mut start = ReadStart::TrimHorizon;
        let mut loaded = Vec::new();
        loop {
            let batch = storage
                .read(
                    &shard,
                    start,
                    ReadLimits {
                        records_max: 10_000,
                        bytes_max: 8 << 20,
                    },
                    None,
                )
                .await?;
            let mut any = false;
            batch.for_each_positioned(&mut |_, record| {
                any = true;
                if let Ok(entry) = serde_json::from_slice::<FragmentEntry>(record.data) {
                    loaded.push(entry);
                }
            });
            match batch.next_position {
                Some(next) if any && next < batch.tip_position => {
                    start = ReadStart::AtPosition(next);
                }
                _ => break,
            }
        }
        let mut state = lock(&self.state);
        // Entries added while loading came after every stored one that was read... or were read
        // too; rebuild in storage order without duplicates.
        let added = std::mem::take(&mut state.entries);
        state.by_number.clear();
        for entry in loaded.into_iter().chain(added) {
            Self::insert(&mut state, entry);
        }
        state.loaded = true;
        Ok(())
    }
}

/// The fragment indexes of every video stream, keyed by internal stream name (unique per stream
/// incarnation, so a deleted stream's index is never reused).
#[derive(Debug, Default)]
pub struct Indexes {
    streams: Mutex<HashMap<String, Arc<StreamIndex>>>,
}

impl Indexes {
    /// The index of `definition`'s stream (created empty, unloaded, on first use).
    pub fn of(&self, definition: &StreamDefinition) -> Arc<StreamIndex> {
        lock(&self.streams)
            .entry(definition.internal_stream.clone())
            .or_default()
            .clone()
    }
}

/// What [`store`] records about a fragment besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentTimes {
    pub producer_ms: u64,
    pub server_ms: u64,
    pub duration_ms: u64,
}

/// Stores one fragment (data, then its index entry) and adds it to `index`.
pub async fn store<R: RecordLog>(
    storage: &R,
    definition: &StreamDefinition,
    index: &StreamIndex,
    number: u128,
    header: &[u8],
    cluster: &[u8],
    times: FragmentTimes,
) -> Result<FragmentEntry, FragmentError> {
    let mut payload = Vec::with_capacity(4 + header.len() + cluster.len());
    payload.extend_from_slice(&(header.len() as u32).to_le_bytes());
    payload.extend_from_slice(header);
    payload.extend_from_slice(cluster);
    let parts: Vec<NewRecord> = payload
        .chunks(PART_BYTES_MAX)
        .map(|part| NewRecord {
            partition_key: PARTITION_KEY.to_owned(),
            data: part.to_vec(),
        })
        .collect();
    let part_count = parts.len() as u32;
    let data_shard = ShardAddress::new(&definition.internal_stream, DATA_SHARD);
    let appended = storage.append(&data_shard, parts).await?;
    let entry = FragmentEntry {
        number: number.to_string(),
        data_position: appended.positions.start,
        parts: part_count,
        producer_ms: times.producer_ms,
        server_ms: times.server_ms,
        duration_ms: times.duration_ms,
        size_bytes: cluster.len() as u64,
    };
    let index_shard = ShardAddress::new(&definition.internal_stream, INDEX_SHARD);
    let record = NewRecord {
        partition_key: PARTITION_KEY.to_owned(),
        data: serde_json::to_vec(&entry).map_err(|e| FragmentError::Damaged {
            number: entry.number.clone(),
            reason: e.to_string(),
        })?,
    };
    storage.append(&index_shard, vec![record]).await?;
    index.add(entry.clone());
    Ok(entry)
}

/// Reads one stored fragment back.
pub async fn load<R: RecordLog>(
    storage: &R,
    definition: &StreamDefinition,
    entry: &FragmentEntry,
) -> Result<StoredFragment, FragmentError> {
    let damaged = |reason: &str| FragmentError::Damaged {
        number: entry.number.clone(),
        reason: reason.to_owned(),
    };
    let shard = ShardAddress::new(&definition.internal_stream, DATA_SHARD);
    let parts = entry.parts as usize;
    let batch = storage
        .read(
            &shard,
            ReadStart::AtPosition(entry.data_position),
            ReadLimits {
                records_max: parts,
                bytes_max: parts * (PART_BYTES_MAX + 64),
            },
            None,
        )
        .await?;
    let mut payload = Vec::new();
    let mut seen = 0usize;
    let mut contiguous = true;
    batch.for_each_positioned(&mut |position, record| {
        if position != entry.data_position + seen as u64 {
            contiguous = false;
        }
        seen += 1;
        payload.extend_from_slice(record.data);
    });
    if seen != parts || !contiguous {
        return Err(damaged("its records are missing (past retention?)"));
    }
    let header_len = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| damaged("no header length"))?;
    if payload.len() < 4 + header_len {
        return Err(damaged("shorter than its header"));
    }
    let cluster = payload.split_off(4 + header_len);
    let header = payload[4..].to_vec();
    if cluster.len() as u64 != entry.size_bytes {
        return Err(damaged("its size differs from the index"));
    }
    Ok(StoredFragment {
        entry: entry.clone(),
        header,
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(number: u128) -> FragmentEntry {
        FragmentEntry {
            number: number.to_string(),
            data_position: 0,
            parts: 1,
            producer_ms: 0,
            server_ms: 0,
            duration_ms: 0,
            size_bytes: 0,
        }
    }

    #[test]
    fn numbers_grow_and_never_repeat_even_when_the_clock_goes_back() {
        let index = StreamIndex::default();
        let a = index.allocate(1_000);
        let b = index.allocate(1_000);
        let c = index.allocate(999);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a, 1_000u128 << 20);
        index.add(entry(5_000u128 << 20));
        assert!(index.allocate(1_001) > 5_000u128 << 20);
    }

    #[test]
    fn an_entry_is_indexed_once() {
        let index = StreamIndex::default();
        index.add(entry(7));
        index.add(entry(7));
        assert_eq!(index.len(), 1);
        assert_eq!(index.find("7").map(|(at, _)| at), Some(0));
        assert!(index.find("8").is_none());
        assert!(index.find("x").is_none());
    }
}
