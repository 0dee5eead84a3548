//! The per-core append-only log: every shard a core owns appends into one log, so one group
//! commit (one O_DIRECT write of a block, then one `fdatasync`) makes the records of all those
//! shards durable at once. 1,000 shards cost one `fdatasync` per commit, not 1,000.
//!
//! Layout: `<dir>/<first_block_seq:020>.seg` segment files, preallocated to
//! `LogConfig::segment_bytes` and filled front to back with 4 KiB-aligned blocks (byte layout in
//! `docs/segment-format.md` and [`block`]). Each shard keeps an in-memory [`ShardIndex`] of its
//! chunks; the log keeps the most recently written blocks in memory so tailing readers do not
//! touch the disk.
//!
//! Invariants:
//! - Block sequence numbers start at 1 and grow by one per block across segments; every block
//!   stores the CRC of the block before it, so recovery accepts only an unbroken chain.
//! - All blocks of one commit go into one segment, and commits are written one after another,
//!   so a torn write can only ever be the tail of the newest segment.
//! - A shard's positions become visible to readers only once the commit holding them has been
//!   written (and, under [`Durability::Fsync`], synced).
//! - Once a write or sync fails the log is poisoned: the state of the disk is unknown, so every
//!   later append fails with [`AppendError::Poisoned`] and every read with
//!   [`ReadError::Poisoned`] (redb's rule) until a restart runs recovery. A full disk is the
//!   exception: when preallocation or every write of a commit fails with ENOSPC, nothing of the
//!   commit reached the disk, so its appends fail with [`AppendError::DiskFull`], its positions
//!   are handed out again, and the next commit retries. [`Log::health`] reports both.
//! - Waiters registered with [`Log::wait_for_records`] are woken by the committer right after
//!   the commit that moved their shard's tip past their position became visible, so tailing
//!   readers never poll.
//! - Retention deletes a prefix of segments, never the one being written. Before deleting the
//!   last segment that mentions a live shard it writes an empty marker chunk for that shard into
//!   the active segment, so recovery still learns the shard's next position.
//!
//! Modules, by responsibility: this file holds the [`Log`] type, its configuration and its
//! whole public API; [`commit`] is the write path (the committer task and group commit);
//! [`read`] the read path; [`recovery`] opening the log and scanning its segments;
//! [`damage`] telling a torn tail after the end of the chain from corruption behind a hole;
//! [`retention`] deleting old segments; [`block_cache`] the recently written blocks;
//! [`waiter`] readers waiting for new records; [`shard_index`] a shard's chunk index;
//! [`block`] the on-disk codec; [`error`] the error enums. In test and `fault-injection`
//! builds, `observer` reports the write path's writes, syncs and segment creations, and in
//! tests `power_loss` turns those reports into a simulated power cut.

mod block;
mod block_cache;
mod commit;
mod damage;
mod error;
mod health;
#[cfg(any(test, feature = "fault-injection"))]
mod observer;
#[cfg(test)]
mod power_loss;
mod read;
mod recovery;
mod retention;
mod segment_index;
mod shard_index;
#[cfg(test)]
mod test_support;
mod waiter;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::io::{DmaFile, OpenOptions};

use crate::keystore::KeyStore;
use block::BLOCK_ALIGN;
use block_cache::BlockCache;
use commit::Pending;
use shard_index::ShardIndex;
use waiter::{WaitForRecords, WaitSlot};

#[cfg(any(test, feature = "fault-injection"))]
pub use commit::FaultOp;
pub use damage::{TornTail, Truncation};
pub(crate) use error::error_chain;
pub use error::{
    AppendError, Corruption, CorruptionEvidence, OpenLogError, PositionRange, ReadError,
    RetentionError, ShardDamage,
};
pub use health::{LogHealth, Poisoning, WriteErrorKind};
#[cfg(any(test, feature = "fault-injection"))]
pub use observer::{FaultPlan, IoEvent, IoObserver};
pub use read::{LogRead, RecordVisitor};
pub use recovery::probe_direct_io;

/// Default preallocated size of one segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 << 20;
/// Default cap on the bytes one group commit takes from the queue.
pub const COMMIT_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Most group commits a log may have written but not yet acknowledged. Recovery accepts a torn
/// tail of up to this many commits, whatever the setting was when the log was written.
pub const COMMITS_IN_FLIGHT_MAX: usize = 2;
/// Default commits in flight: the next commit is written while the previous ones sync.
pub const COMMITS_IN_FLIGHT_DEFAULT: usize = 2;
/// Default bytes of recently written blocks kept in memory for tailing readers.
pub const BLOCK_CACHE_BYTES_DEFAULT: usize = 32 << 20;
/// Commits bigger than this are cut into several blocks written concurrently: this disk needs
/// writes of at least 256 KiB with several in flight to reach its bandwidth (perf.md §2a).
pub const BLOCK_BYTES_TARGET: usize = 1 << 20;

const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(BLOCK_ALIGN as u64));
// A default segment's chunks stay far below the per-key chunk bound even with several torn
// tails rewritten into it: 256 MiB / 96 bytes is about 2^21.4 chunks, against 2^24.
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= block::SEGMENT_BYTES_MAX / 4);
const _: () = assert!(BLOCK_BYTES_TARGET.is_multiple_of(BLOCK_ALIGN));

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the block is written and `fdatasync` returned.
    Fsync,
    /// After the O_DIRECT write completed (survives a process crash, not a power loss).
    Write,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `<data-dir>/log/<log_id>/`; created if missing.
    pub dir: PathBuf,
    pub log_id: u32,
    /// Preallocated size of each segment file, a multiple of 4096.
    pub segment_bytes: u64,
    /// Cap on one group commit; bigger batches span several blocks.
    pub commit_bytes_max: usize,
    /// Group commits written but not yet acknowledged, at most (1 to
    /// [`COMMITS_IN_FLIGHT_MAX`]). With more than one, the next commit is written while the
    /// previous one syncs; 1 runs write and sync one commit at a time.
    pub commits_in_flight: usize,
    pub durability: Durability,
    /// Told about every block write, segment sync and segment creation (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub observer: Option<Rc<dyn IoObserver>>,
    /// Failures to inject into block writes, syncs and preallocations (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub faults: Option<Arc<FaultPlan>>,
}

impl LogConfig {
    /// A configuration with the default sizes and `Durability::Fsync`.
    pub fn new(dir: impl Into<PathBuf>, log_id: u32) -> Self {
        Self {
            dir: dir.into(),
            log_id,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            commit_bytes_max: COMMIT_BYTES_MAX_DEFAULT,
            commits_in_flight: COMMITS_IN_FLIGHT_DEFAULT,
            durability: Durability::Fsync,
            #[cfg(any(test, feature = "fault-injection"))]
            observer: None,
            #[cfg(any(test, feature = "fault-injection"))]
            faults: None,
        }
    }
}

/// Maps keyed by shard, hashed with FxHash: SipHash over the stream name took 8 % of the
/// server's CPU when a batch spread over 1,000 shards (`perf record`). Keys are names of
/// streams a caller was allowed to create, not arbitrary input, so flooding is not a concern.
pub(crate) type ShardMap<V> = HashMap<ShardKey, V, rustc_hash::FxBuildHasher>;
pub(crate) type ShardSet = std::collections::HashSet<ShardKey, rustc_hash::FxBuildHasher>;

/// Identifies a shard across stream re-creation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardKey {
    pub stream_name: Rc<str>,
    pub stream_created_ms: u64,
    pub shard_index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    pub partition_key: String,
    pub data: bytes::Bytes,
}

/// The records of one append got positions `first_position..` in order, all with this arrival
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_position: u64,
    pub arrival_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardTip {
    pub next_position: u64,
    pub last_arrival_ms: Option<u64>,
}

/// Counters for metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segment_count: usize,
    /// Bytes written to segments, padding included.
    pub bytes_written: u64,
    pub commits: u64,
    pub blocks: u64,
    pub fsyncs: u64,
    pub appends: u64,
    pub records: u64,
    pub segments_removed: u64,
    pub poisoned: bool,
}

struct Segment {
    file: Rc<DmaFile>,
    size: u64,
    /// The newest arrival time of each shard with a chunk in this segment.
    shard_arrival_max: ShardMap<u64>,
}

struct State {
    config: LogConfig,
    shards: ShardMap<ShardIndex>,
    segments: BTreeMap<u64, Segment>,
    active_segment_id: u64,
    write_offset: u64,
    next_block_seq: u64,
    prev_crc: u32,
    last_arrival_ms: u64,
    /// Every block numbered below this is durable: a completed `fdatasync` covered it (or
    /// recovery found it). Written into each new block's header, so that recovery can tell
    /// damage to synced blocks from a torn tail of commits in flight.
    synced_below: u64,
    poisoned: Option<u64>,
    /// What `/health` and `/metrics` see of this log; shared with other threads.
    health: Arc<LogHealth>,
    cache: BlockCache,
    stats: LogStats,
    /// Readers waiting for each shard's tip to move, woken after each commit touching the
    /// shard. Entries are weak so that a waiter that gave up (timed out, was cancelled) costs
    /// nothing but a dead pointer, pruned when the next waiter of that shard registers.
    waiters: ShardMap<Vec<Weak<WaitSlot>>>,
    /// What the active segment holds, to index it when it is sealed (see [`segment_index`]).
    ledger: segment_index::Ledger,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .get(&self.active_segment_id)
            .expect("the active segment is always open")
    }
}

/// The per-core log. Lives on one glommio executor and is shared through `Rc<Log>`.
pub struct Log {
    state: Rc<RefCell<State>>,
    queue: async_channel::Sender<Pending>,
    encryption: RefCell<Option<Encryption>>,
}

/// Says which KeyId a shard's new records are encrypted under (`None`: in the clear).
pub type EncryptionPolicy = Rc<dyn Fn(&ShardKey) -> Option<String>>;

/// The key store (for reads and writes) and the policy (for writes) of a log.
#[derive(Clone)]
struct Encryption {
    keys: Arc<KeyStore>,
    policy: EncryptionPolicy,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.borrow();
        f.debug_struct("Log")
            .field("dir", &state.config.dir)
            .field("log_id", &state.config.log_id)
            .field("stats", &state.stats)
            .finish()
    }
}

/// What [`check`] may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Read only: report what recovery would do, change nothing.
    Verify,
    /// Recover as [`Log::open`] does, and on a corruption truncate the log at the hole,
    /// dropping every block after it (reported in [`LogCheck::truncated`]).
    Repair,
}

/// The records one shard has stored in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheck {
    pub stream_name: String,
    pub stream_created_ms: u64,
    pub shard_index: u32,
    pub stored: PositionRange,
}

/// What [`check`] found in one log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCheck {
    pub segments: usize,
    /// Blocks in the chain.
    pub blocks: u64,
    /// Every shard with stored records or a stored position, in (stream, created, shard)
    /// order.
    pub shards: Vec<ShardCheck>,
    /// A torn last commit at the end of the log. It was never acknowledged, so a log with
    /// only this is clean; opening drops it.
    pub torn_tail: Option<TornTail>,
    /// Segments after the end of the log. Opening removes them when they hold no valid block;
    /// a repair of damage in an older segment (see [`LogCheck::truncated`]) removed them with
    /// their blocks.
    pub leftover_segments: Vec<u64>,
    /// Under [`CheckMode::Repair`], the corruption the log was truncated at.
    pub truncated: Option<Truncation>,
}

/// Checks the log in `config.dir` offline with the same scan [`Log::open`] runs: every block's
/// CRC, the chain, every chunk's layout and every shard's positions, plus everything after the
/// end of the log. A corruption of acknowledged records is [`OpenLogError::Corrupt`] under
/// [`CheckMode::Verify`]; under [`CheckMode::Repair`] the log is truncated there. A directory
/// without segments is an empty, clean log.
pub async fn check(config: LogConfig, mode: CheckMode) -> Result<LogCheck, OpenLogError> {
    let mut config = config;
    config.dir = std::path::absolute(&config.dir).map_err(|source| OpenLogError::Directory {
        dir: config.dir.clone(),
        source,
    })?;
    if recovery::segment_ids(&config.dir)?.is_empty() {
        return Ok(LogCheck::default());
    }
    let mode = match mode {
        CheckMode::Verify => recovery::RecoveryMode::Verify,
        CheckMode::Repair => recovery::RecoveryMode::Repair,
    };
    let (state, report) = recovery::recover(config, mode).await?;
    let mut shards: Vec<ShardCheck> = state
        .shards
        .iter()
        .map(|(key, index)| ShardCheck {
            stream_name: key.stream_name.to_string(),
            stream_created_ms: key.stream_created_ms,
            shard_index: key.shard_index,
            stored: PositionRange {
                starting: index.first_stored_position(),
                ending: index.next_position,
            },
        })
        .collect();
    shards.sort_by(|a, b| {
        (&a.stream_name, a.stream_created_ms, a.shard_index).cmp(&(
            &b.stream_name,
            b.stream_created_ms,
            b.shard_index,
        ))
    });
    Ok(LogCheck {
        segments: state.segments.len(),
        blocks: report.blocks,
        shards,
        torn_tail: report.torn_tail,
        leftover_segments: report.leftover_segments,
        truncated: report.truncated,
    })
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn segment_path(dir: &Path, segment_id: u64) -> PathBuf {
    dir.join(format!("{segment_id:020}.seg"))
}

async fn open_segment_file(
    dir: &Path,
    segment_id: u64,
    create: bool,
) -> Result<DmaFile, (PathBuf, std::io::Error)> {
    let path = segment_path(dir, segment_id);
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create {
        options.create_new(true);
    }
    match options.dma_open(&path).await {
        Ok(file) => Ok(file),
        Err(error) => Err((path, error.into())),
    }
}

/// Creates `dir` and every missing parent, and `fsync`s the parent of each directory it
/// created, parents first, so the new names survive a power loss. A segment's own directory
/// `fsync` makes the segment's name durable but not the name of the directory holding it:
/// without this, a power cut soon after a log's first acknowledged append could lose
/// `<data-dir>/log/<log_id>/` and every segment in it. Returns the directories it synced.
pub(crate) fn create_dir_durably(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at
        && !path.as_os_str().is_empty()
        && !path.exists()
    {
        missing.push(path);
        at = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    let mut synced = Vec::new();
    for created in missing.into_iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()?;
        synced.push(parent.to_owned());
    }
    Ok(synced)
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = glommio::io::Directory::open(dir).await?;
    dir.sync().await?;
    dir.close().await?;
    Ok(())
}

fn tip_of(index: Option<&ShardIndex>) -> ShardTip {
    index.map_or(
        ShardTip {
            next_position: 0,
            last_arrival_ms: None,
        },
        |s| ShardTip {
            next_position: s.next_position,
            last_arrival_ms: s.last_arrival_ms,
        },
    )
}

impl Log {
    /// Opens (or creates) the log in `config.dir`, recovers every shard's index from the
    /// segments, and starts the committer task on the current executor.
    pub async fn open(config: LogConfig) -> Result<Rc<Log>, OpenLogError> {
        Self::open_with_cache(config, BLOCK_CACHE_BYTES_DEFAULT).await
    }

    /// [`Log::open`] with `cache_bytes_max` bytes of recently written blocks kept in memory.
    pub async fn open_with_cache(
        config: LogConfig,
        cache_bytes_max: usize,
    ) -> Result<Rc<Log>, OpenLogError> {
        if config.segment_bytes == 0 || !config.segment_bytes.is_multiple_of(BLOCK_ALIGN as u64) {
            return Err(OpenLogError::InvalidConfig {
                reason: format!(
                    "segment_bytes must be a positive multiple of 4096, not {}",
                    config.segment_bytes
                ),
            });
        }
        if !(1..=COMMITS_IN_FLIGHT_MAX).contains(&config.commits_in_flight) {
            return Err(OpenLogError::InvalidConfig {
                reason: format!(
                    "commits_in_flight must be 1 to {COMMITS_IN_FLIGHT_MAX}, not {}",
                    config.commits_in_flight
                ),
            });
        }
        if config.commit_bytes_max == 0 {
            return Err(OpenLogError::InvalidConfig {
                reason: "commit_bytes_max must be positive".to_owned(),
            });
        }
        // Each segment has its own encryption key; its size bounds the chunks under that key,
        // plus the torn tail (up to every commit in flight) that a reopen overwrites.
        let commit_extent = damage::commit_extent_max(config.commit_bytes_max);
        let segment_key_bytes = config
            .segment_bytes
            .max(commit_extent)
            .saturating_add(commit_extent.saturating_mul(COMMITS_IN_FLIGHT_MAX as u64));
        if segment_key_bytes > block::SEGMENT_BYTES_MAX {
            return Err(OpenLogError::InvalidConfig {
                reason: format!(
                    "segment_bytes plus the commits in flight must stay within {} bytes (one \
                     encryption key per segment), not {segment_key_bytes}",
                    block::SEGMENT_BYTES_MAX
                ),
            });
        }
        // glommio resolves a relative path against no directory at all (`Directory::open` fails
        // with EBADF), so the log always works with an absolute one.
        let mut config = config;
        config.dir =
            std::path::absolute(&config.dir).map_err(|source| OpenLogError::Directory {
                dir: config.dir.clone(),
                source,
            })?;
        create_dir_durably(&config.dir).map_err(|source| OpenLogError::Directory {
            dir: config.dir.clone(),
            source,
        })?;
        let (mut state, _) = recovery::recover(config, recovery::RecoveryMode::Open).await?;
        // What recovery found may sit in the device's cache only (a process killed before its
        // sync): one sync makes all of it durable, so new blocks may say so in `synced_below`.
        let active_file = state.active().file.clone();
        active_file
            .fdatasync()
            .await
            .map_err(|error| OpenLogError::SyncSegment {
                segment_id: state.active_segment_id,
                source: error.into(),
            })?;
        state.synced_below = state.next_block_seq;
        state.cache.bytes_max = cache_bytes_max;
        let state = Rc::new(RefCell::new(state));
        let (queue, receiver) = async_channel::unbounded();
        glommio::spawn_local(commit::run_committer(state.clone(), receiver)).detach();
        Ok(Rc::new(Log {
            state,
            queue,
            encryption: RefCell::new(None),
        }))
    }

    /// Turns on encryption at rest: from now on every append asks `policy` which KeyId (if any)
    /// the shard's records are encrypted under, and reads decrypt chunks with `keys`. Without
    /// this, encrypted chunks fail to read with [`ReadError::Decrypt`].
    pub fn set_encryption(&self, keys: Arc<KeyStore>, policy: EncryptionPolicy) {
        *self.encryption.borrow_mut() = Some(Encryption { keys, policy });
    }

    /// Appends `records` to `shard`. Resolves once the group commit holding them is written
    /// (and synced under `Durability::Fsync`).
    pub async fn append(
        &self,
        shard: &ShardKey,
        records: Vec<AppendRecord>,
    ) -> Result<Appended, AppendError> {
        let mut appended = self.append_batch(vec![(shard.clone(), records)]).await?;
        Ok(appended.pop().expect("one answer per shard appended to"))
    }

    /// Appends records to several shards in one group commit, with one message to the
    /// committer and one answer: a request spread over 1,000 shards costs one queued append,
    /// not 1,000. Resolves once that commit is written (and synced under
    /// `Durability::Fsync`); either every shard's records are stored or none are. Answers one
    /// `Appended` per entry, in order; an entry with no records is answered the shard's next
    /// position and commits nothing.
    pub async fn append_batch(
        &self,
        appends: Vec<(ShardKey, Vec<AppendRecord>)>,
    ) -> Result<Vec<Appended>, AppendError> {
        if let Some(segment_id) = self.state.borrow().poisoned {
            return Err(AppendError::Poisoned { segment_id });
        }
        // The key is chosen when the append is accepted, so an append that starts after
        // StartStreamEncryption returned is encrypted, and the key is durable before the
        // records can be acknowledged.
        let encryption = self.encryption.borrow().clone();
        let mut answers: Vec<Option<Appended>> = Vec::with_capacity(appends.len());
        let mut parts = Vec::with_capacity(appends.len());
        for (shard, records) in appends {
            if records.is_empty() {
                let state = self.state.borrow();
                answers.push(Some(Appended {
                    first_position: state.shards.get(&shard).map_or(0, |s| s.assigned_next),
                    arrival_ms: state.last_arrival_ms,
                }));
                continue;
            }
            let key = match &encryption {
                None => None,
                Some(encryption) => match (encryption.policy)(&shard) {
                    None => None,
                    Some(key_id) => {
                        Some(encryption.keys.get_or_create(&key_id).map_err(|error| {
                            AppendError::Key {
                                key_id,
                                reason: error.to_string(),
                            }
                        })?)
                    }
                },
            };
            answers.push(None);
            parts.push(commit::Part {
                shard,
                records,
                key,
            });
        }
        let mut committed = if parts.is_empty() {
            Vec::new()
        } else {
            commit::enqueue(&self.queue, parts, false).await?
        }
        .into_iter();
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    committed
                        .next()
                        .expect("the committer answers every part it was given")
                })
            })
            .collect())
    }

    pub fn tip(&self, shard: &ShardKey) -> ShardTip {
        let state = self.state.borrow();
        tip_of(state.shards.get(shard))
    }

    /// Resolves once `shard` holds a record at `position` or later, that is once
    /// `tip(shard).next_position > position`: at once if it already does, else right after
    /// the commit that makes it so (durable under `Durability::Fsync`). There is no timeout
    /// and no polling; callers race it against their own deadline. Dropping the future
    /// unregisters it. The future does not borrow the log.
    pub fn wait_for_records(
        &self,
        shard: &ShardKey,
        position: u64,
    ) -> impl Future<Output = ()> + 'static + use<> {
        WaitForRecords {
            state: self.state.clone(),
            shard: shard.clone(),
            position,
            slot: None,
        }
    }

    /// TRIM_HORIZON: the first stored record with arrival `>= retain_after_ms`, else the tip.
    pub fn first_retained_position(&self, shard: &ShardKey, retain_after_ms: u64) -> u64 {
        self.position_at_timestamp(shard, retain_after_ms)
    }

    /// The first stored record with arrival `>= timestamp_ms`, else the tip.
    pub fn position_at_timestamp(&self, shard: &ShardKey, timestamp_ms: u64) -> u64 {
        let state = self.state.borrow();
        state
            .shards
            .get(shard)
            .map_or(0, |s| s.position_at_timestamp(timestamp_ms))
    }

    /// Reads records of `shard` from `position` (or from the oldest stored record if `position`
    /// was already deleted) up to `limit` records or about `bytes_max` data bytes; at least one
    /// record if any exists at or after `position`.
    pub async fn read(
        &self,
        shard: &ShardKey,
        position: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<LogRead, ReadError> {
        read::read(self, shard, position, limit, bytes_max).await
    }

    /// Forgets these shards (their stream was deleted); their chunks become garbage that
    /// retention removes with the segments holding them.
    pub async fn drop_shards(&self, shards: &[ShardKey]) {
        let woken = {
            let mut state = self.state.borrow_mut();
            for shard in shards {
                state.shards.remove(shard);
            }
            waiter::take_waiters(&mut state, shards)
        };
        // Waiters re-check their shard; they keep waiting (until their own deadline) for
        // records that will not come, which their callers notice in the catalog.
        woken.iter().for_each(|slot| slot.wake());
    }

    /// Deletes the oldest segments (never the active one) whose every chunk is older than its
    /// shard's retention or belongs to a shard that `retention_ms` no longer knows (`None`).
    /// Returns how many segments were removed.
    pub async fn enforce_retention(
        &self,
        retention_ms: &dyn Fn(&ShardKey) -> Option<u64>,
        now_ms: u64,
    ) -> Result<usize, RetentionError> {
        retention::enforce_retention(self, retention_ms, now_ms).await
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }

    /// This log's health, shareable with other threads (for `/health` and `/metrics`).
    pub fn health(&self) -> Arc<LogHealth> {
        self.state.borrow().health.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_log_in_a_relative_directory_opens_appends_and_reopens() {
        // glommio alone fails on relative paths (EBADF); the default data dir is relative.
        let temp = tempfile::tempdir_in(".").expect("temp dir under the working directory");
        let relative = PathBuf::from(".").join(temp.path().file_name().expect("a name"));
        assert!(relative.is_relative());
        let key = shard("relative", 0);
        let written = records(3, 10, 7);
        let appended = written.clone();
        let (dir, key2) = (relative.clone(), key.clone());
        run(async move {
            let log = Log::open(config(&dir, 64 << 10, Durability::Fsync))
                .await
                .expect("opens");
            log.append(&key2, appended).await.expect("appends");
        });
        let got = run(async move {
            let log = Log::open(config(&relative, 64 << 10, Durability::Fsync))
                .await
                .expect("reopens");
            read_all(&log, &key, 0).await
        });
        assert_eq!(got, expected(&[written]));
    }

    /// Guards against a log directory whose own name is not durable: the first segment's
    /// directory `fsync` covers the segment, not `log/<log_id>/` in its parent, so a power cut
    /// could take the directory and every acknowledged record with it. Each directory the open
    /// creates must have its parent synced, parents first; existing ones are left alone.
    #[test]
    fn opening_a_log_syncs_the_parent_of_every_directory_it_creates() {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().join("data");
        let dir = data.join("log").join("3");
        let synced = create_dir_durably(&dir).expect("creates");
        assert!(dir.is_dir());
        assert_eq!(
            synced,
            vec![temp.path().to_owned(), data.clone(), data.join("log")]
        );
        assert_eq!(
            create_dir_durably(&dir).expect("exists"),
            Vec::<PathBuf>::new(),
            "nothing new, nothing to sync"
        );
        let path = data.join("log").join("4");
        run(async move {
            Log::open(config(&path, 64 << 10, Durability::Fsync))
                .await
                .expect("opens in a new directory");
        });
        assert!(data.join("log").join("4").is_dir());
    }

    #[test]
    fn a_segment_size_that_is_not_4_kib_aligned_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let error = Log::open(config(&path, 10_000, Durability::Write))
                .await
                .expect_err("refused");
            assert!(
                matches!(error, OpenLogError::InvalidConfig { .. }),
                "{error}"
            );
        });
    }

    /// Guards against a segment so large that its derived encryption key would encrypt
    /// more chunks than random nonces allow: such a configuration is refused at open.
    #[test]
    fn a_segment_too_large_for_one_encryption_key_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let error = Log::open(config(&path, block::SEGMENT_BYTES_MAX, Durability::Write))
                .await
                .expect_err("refused");
            assert!(
                matches!(error, OpenLogError::InvalidConfig { .. }),
                "{error}"
            );
        });
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Append {
                shard: u32,
                count: usize,
                size: usize,
            },
            Read {
                shard: u32,
                from: u64,
                limit: usize,
                bytes_max: usize,
            },
            Retention {
                expire: bool,
            },
            Reopen,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (0..4u32, 1..12usize, 0..1500usize)
                    .prop_map(|(shard, count, size)| Op::Append { shard, count, size }),
                4 => (0..4u32, 0..80u64, 1..30usize, 1..6000usize)
                    .prop_map(|(shard, from, limit, bytes_max)| Op::Read { shard, from, limit, bytes_max }),
                1 => any::<bool>().prop_map(|expire| Op::Retention { expire }),
                1 => Just(Op::Reopen),
            ]
        }

        /// The model's view of the log: every shard's records and its oldest stored position.
        struct Model {
            records: Vec<Vec<(String, Vec<u8>)>>,
            floor: Vec<u64>,
        }

        async fn check_read(
            log: &Log,
            model: &Model,
            key: &ShardKey,
            shard: usize,
            (from, limit, bytes_max): (u64, usize, usize),
        ) {
            let (model, floor) = (&model.records, &model.floor);
            let read = log
                .read(key, from, limit, bytes_max)
                .await
                .expect("read succeeds");
            let mut got = Vec::new();
            read.for_each(&mut |position, _, k, data| {
                got.push((position, k.to_owned(), data.to_vec()))
            });
            let start = from.max(floor[shard]) as usize;
            let mut want = Vec::new();
            let mut bytes = 0;
            for (i, (k, data)) in model[shard].iter().enumerate().skip(start) {
                if want.len() >= limit || (!want.is_empty() && bytes + data.len() > bytes_max) {
                    break;
                }
                bytes += data.len();
                want.push((i as u64, k.clone(), data.clone()));
            }
            assert_eq!(
                got, want,
                "read of shard {shard} from {from} limit {limit} bytes {bytes_max}"
            );
            assert_eq!(read.len(), want.len());
        }

        fn run_ops(ops: Vec<Op>) {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().to_owned();
            run(async move {
                let cfg = || LogConfig {
                    dir: path.clone(),
                    log_id: 9,
                    segment_bytes: 24 << 10,
                    commit_bytes_max: 8 << 10,
                    commits_in_flight: COMMITS_IN_FLIGHT_DEFAULT,
                    durability: Durability::Write,
                    observer: None,
                    faults: None,
                };
                let keys: Vec<ShardKey> = (0..4).map(|i| shard("model", i)).collect();
                let mut model = Model {
                    records: vec![Vec::new(); 4],
                    floor: vec![0u64; 4],
                };
                let mut log = Log::open_with_cache(cfg(), 16 << 10)
                    .await
                    .expect("log opens");
                let mut tag = 0u64;
                for op in ops {
                    match op {
                        Op::Append { shard, count, size } => {
                            tag += 1;
                            let batch = records(count, size, tag);
                            let got = log
                                .append(&keys[shard as usize], batch.clone())
                                .await
                                .expect("append");
                            let entries = &mut model.records[shard as usize];
                            assert_eq!(got.first_position, entries.len() as u64);
                            entries.extend(
                                batch
                                    .into_iter()
                                    .map(|r| (r.partition_key, r.data.to_vec())),
                            );
                        }
                        Op::Read {
                            shard,
                            from,
                            limit,
                            bytes_max,
                        } => {
                            let s = shard as usize;
                            check_read(&log, &model, &keys[s], s, (from, limit, bytes_max)).await;
                        }
                        Op::Retention { expire } => {
                            let retention =
                                move |_: &ShardKey| Some(if expire { 0 } else { 3_600_000 });
                            let now_ms = if expire {
                                u64::MAX / 2
                            } else {
                                wall_clock_ms()
                            };
                            let removed = log
                                .enforce_retention(&retention, now_ms)
                                .await
                                .expect("retention");
                            if !expire {
                                assert_eq!(removed, 0);
                            }
                            assert!(log.stats().segment_count >= 1);
                            for (s, key) in keys.iter().enumerate() {
                                let first = log.first_retained_position(key, 0);
                                assert!(
                                    first >= model.floor[s],
                                    "retention never brings data back"
                                );
                                assert!(first <= model.records[s].len() as u64);
                                model.floor[s] = first;
                            }
                        }
                        Op::Reopen => {
                            drop(log);
                            log = Log::open_with_cache(cfg(), 16 << 10)
                                .await
                                .expect("log reopens");
                        }
                    }
                    for (s, key) in keys.iter().enumerate() {
                        assert_eq!(log.tip(key).next_position, model.records[s].len() as u64);
                        assert_eq!(log.first_retained_position(key, 0), model.floor[s]);
                    }
                }
                for (s, key) in keys.iter().enumerate() {
                    check_read(&log, &model, key, s, (0, usize::MAX, usize::MAX)).await;
                }
            });
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
            #[test]
            fn the_log_behaves_like_an_in_memory_model_across_rollover_retention_and_reopen(
                ops in proptest::collection::vec(op(), 1..60)
            ) {
                run_ops(ops);
            }
        }
    }
}
