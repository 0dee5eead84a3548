//! The persistence thread: catalog snapshots and consumer checkpoints are written and synced
//! here, on one plain OS thread, so that no shard or service executor ever blocks on an fsync
//! of a control-plane file. Callers hand a job over a bounded channel and await a oneshot reply
//! (runtime-agnostic, so glommio and tokio executors both can).
//!
//! Invariants:
//! - A reply of `Ok` is sent only after the job's bytes are durable under the configured
//!   durability: catalog saves always fsync (tmp + fsync + rename + fsync dir, see
//!   `catalog_store`); checkpoints are fdatasynced under `Durability::Fsync` and only written
//!   under `Durability::Write`, exactly like records.
//! - Jobs that arrive together share one fdatasync of the checkpoint file (group commit).
//! - The in-memory checkpoint table only ever holds positions whose entries are durable, so a
//!   load never returns a position a crash could take back.
//!
//! Checkpoint file, `<data-dir>/checkpoints/checkpoints.log`: a sequence of entries, each
//! `u32 LE length | u32 LE crc32c(payload) | payload`, the payload being one JSON object
//! `{"consumer","stream","created_ms","shard","position"}`. The last entry for a key wins. On
//! open, entries are read until the first one that is short or fails its CRC: that is the tail
//! of a write a crash interrupted, never acknowledged, and is cut off. When the file holds many
//! more entries than keys it is rewritten (tmp + fsync + rename + fsync dir) with one entry per
//! key.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use sluice_core::catalog::Catalog;

use crate::catalog_store::{CatalogStore, CatalogStoreError};
use crate::log::Durability;

/// Jobs waiting for the persistence thread at most; a caller beyond that waits for room.
pub const PERSIST_QUEUE_MAX: usize = 4096;
/// A checkpoint file with more than this many entries per live key is compacted.
const CHECKPOINT_ENTRIES_PER_KEY_MAX: usize = 8;
/// …but never below this many entries, so that a few keys do not rewrite the file constantly.
const CHECKPOINT_COMPACT_ENTRIES_MIN: usize = 4096;
const CHECKPOINT_FILE: &str = "checkpoints.log";
const CHECKPOINT_TMP: &str = "checkpoints.log.tmp";
const ENTRY_HEADER_BYTES: usize = 8;
/// A payload longer than this is corrupt (consumer and stream names are at most a few hundred
/// bytes).
const ENTRY_PAYLOAD_MAX: usize = 64 * 1024;

/// What identifies a checkpoint: consumer, stream, shard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CheckpointId {
    pub(crate) consumer: String,
    pub(crate) stream_name: String,
    pub(crate) shard_index: u32,
}

/// A committed checkpoint: the stream incarnation it belongs to and the position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointValue {
    pub(crate) stream_created_ms: u64,
    pub(crate) position: u64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointEntry {
    consumer: String,
    stream: String,
    created_ms: u64,
    shard: u32,
    position: u64,
}

/// Why a persistence job failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    Catalog(#[from] CatalogStoreError),
    #[error("checkpoint I/O on {path}")]
    CheckpointIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The thread is gone (the process is shutting down).
    #[error("the persistence thread is not running")]
    Stopped,
}

enum Job {
    SaveCatalog {
        catalog: Box<Catalog>,
        reply: oneshot::Sender<(Box<Catalog>, Result<(), PersistError>)>,
    },
    Checkpoint {
        id: CheckpointId,
        value: CheckpointValue,
        reply: oneshot::Sender<Result<(), PersistError>>,
    },
}

/// A handle on the persistence thread; cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub(crate) struct Persister {
    jobs: async_channel::Sender<Job>,
    checkpoints: Arc<Mutex<HashMap<CheckpointId, CheckpointValue>>>,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister").finish_non_exhaustive()
    }
}

impl Persister {
    /// Opens the checkpoint file under `checkpoint_dir` (recovering its table) and starts the
    /// thread that owns it and `catalog_store`.
    pub(crate) fn start(
        catalog_store: CatalogStore,
        checkpoint_dir: &Path,
        durability: Durability,
    ) -> Result<Self, PersistError> {
        let (file, table, entries) = CheckpointFile::open(checkpoint_dir, durability)?;
        let checkpoints = Arc::new(Mutex::new(table));
        let (jobs, inbox) = async_channel::bounded(PERSIST_QUEUE_MAX);
        let thread_table = checkpoints.clone();
        std::thread::Builder::new()
            .name("sluice-persist".into())
            .spawn(move || {
                let mut worker = Worker {
                    catalog_store,
                    file,
                    entries,
                    checkpoints: thread_table,
                };
                worker.run(inbox);
            })
            .map_err(|source| PersistError::CheckpointIo {
                path: checkpoint_dir.to_path_buf(),
                source,
            })?;
        Ok(Self { jobs, checkpoints })
    }

    /// Makes `catalog` durable; hands it back with the outcome.
    pub(crate) async fn save_catalog(
        &self,
        catalog: Catalog,
    ) -> (Catalog, Result<(), PersistError>) {
        let catalog = Box::new(catalog);
        let (reply, answer) = oneshot::channel();
        // On a send failure the job, and with it the catalog, comes back in the error.
        if let Err(async_channel::SendError(job)) =
            self.jobs.send(Job::SaveCatalog { catalog, reply }).await
        {
            let Job::SaveCatalog { catalog, .. } = job else {
                unreachable!("the job sent was a catalog save")
            };
            return (*catalog, Err(PersistError::Stopped));
        }
        match answer.await {
            Ok((catalog, result)) => (*catalog, result),
            Err(_) => unreachable!("the persistence thread answers every job it takes"),
        }
    }

    pub(crate) async fn commit_checkpoint(
        &self,
        id: CheckpointId,
        value: CheckpointValue,
    ) -> Result<(), PersistError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Checkpoint { id, value, reply })
            .await
            .map_err(|_| PersistError::Stopped)?;
        answer.await.map_err(|_| PersistError::Stopped)?
    }

    pub(crate) fn checkpoint(&self, id: &CheckpointId) -> Option<CheckpointValue> {
        self.checkpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }
}

/// A checkpoint waiting for the next group commit, with the caller's reply.
type PendingCheckpoint = (
    CheckpointId,
    CheckpointValue,
    oneshot::Sender<Result<(), PersistError>>,
);

struct Worker {
    catalog_store: CatalogStore,
    file: CheckpointFile,
    /// Entries in the checkpoint file, for the compaction rule.
    entries: usize,
    checkpoints: Arc<Mutex<HashMap<CheckpointId, CheckpointValue>>>,
}

impl Worker {
    fn run(&mut self, inbox: async_channel::Receiver<Job>) {
        while let Ok(first) = inbox.recv_blocking() {
            let mut jobs = vec![first];
            while let Ok(more) = inbox.try_recv() {
                jobs.push(more);
            }
            let mut pending = Vec::new();
            for job in jobs {
                match job {
                    Job::SaveCatalog { catalog, reply } => {
                        let result = self.catalog_store.save(&catalog).map_err(Into::into);
                        let _ = reply.send((catalog, result));
                    }
                    Job::Checkpoint { id, value, reply } => pending.push((id, value, reply)),
                }
            }
            if !pending.is_empty() {
                self.commit_checkpoints(pending);
            }
        }
    }

    fn commit_checkpoints(&mut self, pending: Vec<PendingCheckpoint>) {
        let mut bytes = Vec::new();
        for (id, value, _) in &pending {
            encode_entry(&mut bytes, id, *value);
        }
        match self.file.append(&bytes) {
            Ok(()) => {
                self.entries += pending.len();
                let mut table = self.checkpoints.lock().unwrap_or_else(|e| e.into_inner());
                for (id, value, _) in &pending {
                    table.insert(id.clone(), *value);
                }
                let live = table.len();
                let snapshot = (self.entries > CHECKPOINT_COMPACT_ENTRIES_MIN
                    && self.entries > live * CHECKPOINT_ENTRIES_PER_KEY_MAX)
                    .then(|| table.clone());
                drop(table);
                for (_, _, reply) in pending {
                    let _ = reply.send(Ok(()));
                }
                if let Some(snapshot) = snapshot {
                    match self.file.rewrite(&snapshot) {
                        Ok(()) => self.entries = snapshot.len(),
                        Err(error) => {
                            tracing::warn!(%error, "Checkpoint compaction failed; the file keeps growing until it succeeds.")
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "Checkpoint write failed; the checkpoints were not committed.");
                for (_, _, reply) in pending {
                    let _ = reply.send(Err(PersistError::CheckpointIo {
                        path: self.file.path.clone(),
                        source: std::io::Error::other(error.to_string()),
                    }));
                }
            }
        }
    }
}

fn encode_entry(out: &mut Vec<u8>, id: &CheckpointId, value: CheckpointValue) {
    let payload = serde_json::to_vec(&CheckpointEntry {
        consumer: id.consumer.clone(),
        stream: id.stream_name.clone(),
        created_ms: value.stream_created_ms,
        shard: id.shard_index,
        position: value.position,
    })
    .expect("a checkpoint entry serialises");
    assert!(payload.len() <= ENTRY_PAYLOAD_MAX);
    let length = u32::try_from(payload.len()).expect("payload fits u32");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Decodes entries from the start of `bytes`; returns the table and how many bytes and entries
/// were valid (the rest is a torn tail).
fn decode_entries(bytes: &[u8]) -> (HashMap<CheckpointId, CheckpointValue>, usize, usize) {
    let mut table = HashMap::new();
    let mut offset = 0;
    let mut entries = 0;
    while bytes.len() - offset >= ENTRY_HEADER_BYTES {
        let header = &bytes[offset..offset + ENTRY_HEADER_BYTES];
        let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let stored = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let start = offset + ENTRY_HEADER_BYTES;
        if length > ENTRY_PAYLOAD_MAX || bytes.len() - start < length {
            break;
        }
        let payload = &bytes[start..start + length];
        if crc32c::crc32c(payload) != stored {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<CheckpointEntry>(payload) else {
            break;
        };
        table.insert(
            CheckpointId {
                consumer: entry.consumer,
                stream_name: entry.stream,
                shard_index: entry.shard,
            },
            CheckpointValue {
                stream_created_ms: entry.created_ms,
                position: entry.position,
            },
        );
        offset = start + length;
        entries += 1;
    }
    (table, offset, entries)
}

struct CheckpointFile {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    durability: Durability,
}

type OpenedCheckpoints = (
    CheckpointFile,
    HashMap<CheckpointId, CheckpointValue>,
    usize,
);

impl CheckpointFile {
    fn open(dir: &Path, durability: Durability) -> Result<OpenedCheckpoints, PersistError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PersistError::CheckpointIo { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(CHECKPOINT_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let (table, valid, entries) = decode_entries(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut_bytes = bytes.len() - valid,
                "Checkpoint file ends in a torn write; cutting it off (it was never acknowledged)."
            );
            file.set_len(valid as u64).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        Ok((
            Self {
                dir: dir.to_path_buf(),
                path,
                file,
                durability,
            },
            table,
            entries,
        ))
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        if self.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn rewrite(&mut self, table: &HashMap<CheckpointId, CheckpointValue>) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for (id, value) in table {
            encode_entry(&mut bytes, id, *value);
        }
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let mut out = File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(consumer: &str, shard_index: u32) -> CheckpointId {
        CheckpointId {
            consumer: consumer.into(),
            stream_name: "orders".into(),
            shard_index,
        }
    }

    fn value(position: u64) -> CheckpointValue {
        CheckpointValue {
            stream_created_ms: 7,
            position,
        }
    }

    #[test]
    fn checkpoint_entries_decode_back_and_the_last_one_wins() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, &id("a", 0), value(5));
        encode_entry(&mut bytes, &id("a", 0), value(9));
        encode_entry(&mut bytes, &id("b", 1), value(3));
        let (table, valid, entries) = decode_entries(&bytes);
        assert_eq!(valid, bytes.len());
        assert_eq!(entries, 3);
        assert_eq!(table[&id("a", 0)], value(9));
        assert_eq!(table[&id("b", 1)], value(3));
    }

    #[test]
    fn a_torn_or_corrupt_checkpoint_tail_is_cut_at_the_last_whole_entry() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, &id("a", 0), value(5));
        let whole = bytes.len();
        encode_entry(&mut bytes, &id("a", 0), value(6));
        let (_, valid, _) = decode_entries(&bytes[..bytes.len() - 3]);
        assert_eq!(valid, whole);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        let (table, valid, _) = decode_entries(&flipped);
        assert_eq!(valid, whole);
        assert_eq!(table[&id("a", 0)], value(5));
    }

    #[test]
    fn checkpoints_survive_reopening_and_compaction_keeps_the_last_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut file, table, _) =
                CheckpointFile::open(dir.path(), Durability::Fsync).expect("open");
            assert!(table.is_empty());
            let mut bytes = Vec::new();
            for position in 0..50 {
                encode_entry(&mut bytes, &id("a", position as u32 % 2), value(position));
            }
            file.append(&bytes).expect("append");
        }
        let (mut file, table, entries) =
            CheckpointFile::open(dir.path(), Durability::Fsync).expect("reopen");
        assert_eq!(entries, 50);
        assert_eq!(table[&id("a", 0)], value(48));
        assert_eq!(table[&id("a", 1)], value(49));
        file.rewrite(&table).expect("compact");
        drop(file);
        let (_, compacted, entries) =
            CheckpointFile::open(dir.path(), Durability::Fsync).expect("reopen compacted");
        assert_eq!(entries, 2);
        assert_eq!(compacted, table);
    }
}
