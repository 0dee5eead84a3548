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
//!   later append fails with [`AppendError::Poisoned`] (redb's rule).
//! - Waiters registered with [`Log::wait_for_records`] are woken by the committer right after
//!   the commit that moved their shard's tip past their position became visible, so tailing
//!   readers never poll.
//! - Retention deletes a prefix of segments, never the one being written. Before deleting the
//!   last segment that mentions a live shard it writes an empty marker chunk for that shard into
//!   the active segment, so recovery still learns the shard's next position.

mod block;
mod shard_index;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use block::{
    ArchivedStoredChunk, BLOCK_ALIGN, BlockIdentity, ChunkEncryption, ChunkInput, HeaderProblem,
    StoredChunk, StoredRecord, align_up,
};

use crate::keystore::{DataKey, KeyStore};
use shard_index::{ChunkRef, ShardIndex};

/// Default preallocated size of one segment file.
pub const SEGMENT_BYTES_DEFAULT: u64 = 256 << 20;
/// Default cap on the bytes one group commit takes from the queue.
pub const COMMIT_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Default bytes of recently written blocks kept in memory for tailing readers.
pub const BLOCK_CACHE_BYTES_DEFAULT: usize = 32 << 20;
/// Commits bigger than this are cut into several blocks written concurrently: this disk needs
/// writes of at least 256 KiB with several in flight to reach its bandwidth (perf.md §2a).
pub const BLOCK_BYTES_TARGET: usize = 1 << 20;
/// Chunks a read fetches from disk concurrently.
const READ_AHEAD_CHUNKS: usize = 32;
/// Recovery reads segments in windows of this many bytes.
const RECOVERY_WINDOW_BYTES: usize = 1 << 20;

const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(BLOCK_ALIGN as u64));
const _: () = assert!(BLOCK_BYTES_TARGET.is_multiple_of(BLOCK_ALIGN));
const _: () = assert!(RECOVERY_WINDOW_BYTES.is_multiple_of(BLOCK_ALIGN));

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
    pub durability: Durability,
}

impl LogConfig {
    /// A configuration with the default sizes and `Durability::Fsync`.
    pub fn new(dir: impl Into<PathBuf>, log_id: u32) -> Self {
        Self {
            dir: dir.into(),
            log_id,
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            commit_bytes_max: COMMIT_BYTES_MAX_DEFAULT,
            durability: Durability::Fsync,
        }
    }
}

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
    pub data: Vec<u8>,
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenLogError {
    #[error("invalid log configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("cannot create or list log directory {dir}")]
    Directory {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the filesystem holding {dir} rejects O_DIRECT (EINVAL); put the data dir on a filesystem \
         that supports direct I/O, such as ext4 or xfs"
    )]
    DirectIoUnsupported {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open segment {path}")]
    OpenSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create segment {path}")]
    CreateSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read segment {segment_id} at offset {offset}")]
    ReadSegment {
        segment_id: u64,
        offset: u64,
        source: std::io::Error,
    },
    #[error("cannot remove empty segment {path} found after the end of the log")]
    RemoveSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "segment {segment_id} holds valid blocks but lies after the end of the log (expected block \
         {expected_block_seq} next); earlier data is corrupt and an operator must decide"
    )]
    DataAfterLogEnd {
        segment_id: u64,
        expected_block_seq: u64,
    },
    #[error("segment {segment_id} belongs to log {stored}, not to log {expected}")]
    ForeignSegment {
        segment_id: u64,
        stored: u32,
        expected: u32,
    },
    #[error(
        "segment {segment_id} offset {offset}: shard {stream_name}/{shard_index} chunk starts at \
         position {stored}, expected {expected}"
    )]
    PositionMismatch {
        segment_id: u64,
        offset: u64,
        stream_name: String,
        shard_index: u32,
        stored: u64,
        expected: u64,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("log poisoned by an earlier failed write or sync of segment {segment_id}")]
    Poisoned { segment_id: u64 },
    #[error("writing segment {segment_id} at offset {offset} failed; log poisoned")]
    WriteFailed {
        segment_id: u64,
        offset: u64,
        source: Arc<std::io::Error>,
    },
    #[error("syncing segment {segment_id} failed; log poisoned")]
    FsyncFailed {
        segment_id: u64,
        source: Arc<std::io::Error>,
    },
    #[error("cannot create or grow segment {segment_id}")]
    CreateSegment {
        segment_id: u64,
        source: Arc<std::io::Error>,
    },
    #[error("the log's committer has stopped")]
    Closed,
    #[error("cannot get the data key {key_id} to encrypt with: {reason}")]
    Key { key_id: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("reading segment {segment_id} at offset {offset} failed")]
    Io {
        segment_id: u64,
        offset: u64,
        source: std::io::Error,
    },
    #[error("short read of segment {segment_id} at offset {offset}: {got} of {expected} bytes")]
    ShortRead {
        segment_id: u64,
        offset: u64,
        expected: usize,
        got: usize,
    },
    #[error(
        "chunk in segment {segment_id} at offset {offset} is corrupt: stored crc {stored:#010x}, \
         computed {computed:#010x}"
    )]
    ChunkCorrupt {
        segment_id: u64,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("chunk in segment {segment_id} at offset {offset} does not match the index")]
    ChunkMismatch { segment_id: u64, offset: u64 },
    #[error("chunk in segment {segment_id} at offset {offset} holds an invalid archive: {reason}")]
    ArchiveInvalid {
        segment_id: u64,
        offset: u64,
        reason: String,
    },
    #[error(
        "encrypted chunk in segment {segment_id} at offset {offset} (shard {stream_name}/\
         {shard_index}) cannot be decrypted: {problem}"
    )]
    Decrypt {
        segment_id: u64,
        offset: u64,
        stream_name: String,
        shard_index: u32,
        problem: block::DecryptProblem,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    #[error("writing a position marker before deleting segments failed")]
    Marker { source: AppendError },
    #[error("removing segment {segment_id} failed")]
    RemoveSegment {
        segment_id: u64,
        source: std::io::Error,
    },
}

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
    tip: ShardTip,
}

impl LogRead {
    fn empty(tip: ShardTip) -> Self {
        Self {
            pieces: Vec::new(),
            len: 0,
            data_bytes: 0,
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

/// One queued append (or retention marker) waiting for the committer.
struct Pending {
    shard: ShardKey,
    records: Vec<AppendRecord>,
    /// Encrypt these records under this key; `None` stores them in the clear.
    key: Option<Arc<DataKey>>,
    marker: bool,
    bytes: usize,
    done: oneshot::Sender<Result<Appended, AppendError>>,
}

struct Segment {
    file: Rc<DmaFile>,
    size: u64,
    /// The newest arrival time of each shard with a chunk in this segment.
    shard_arrival_max: HashMap<ShardKey, u64>,
}

/// Recently written blocks, oldest first, for readers tailing the log.
#[derive(Default)]
struct BlockCache {
    order: VecDeque<(u64, u64)>,
    blocks: HashMap<(u64, u64), Rc<DmaBuffer>>,
    bytes: usize,
    bytes_max: usize,
}

impl BlockCache {
    fn insert(&mut self, key: (u64, u64), block: Rc<DmaBuffer>) {
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

    fn get(&self, key: &(u64, u64)) -> Option<Rc<DmaBuffer>> {
        self.blocks.get(key).cloned()
    }

    fn remove_segment(&mut self, segment_id: u64) {
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

struct State {
    config: LogConfig,
    shards: HashMap<ShardKey, ShardIndex>,
    segments: BTreeMap<u64, Segment>,
    active_segment_id: u64,
    write_offset: u64,
    next_block_seq: u64,
    prev_crc: u32,
    last_arrival_ms: u64,
    poisoned: Option<u64>,
    cache: BlockCache,
    stats: LogStats,
    /// Readers waiting for each shard's tip to move, woken after each commit touching the
    /// shard. Entries are weak so that a waiter that gave up (timed out, was cancelled) costs
    /// nothing but a dead pointer, pruned when the next waiter of that shard registers.
    waiters: HashMap<ShardKey, Vec<Weak<WaitSlot>>>,
}

/// Where a waiting reader leaves its waker.
#[derive(Default)]
struct WaitSlot {
    waker: RefCell<Option<Waker>>,
}

impl WaitSlot {
    fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// Takes the waiters of `shards` out of `state`; the caller wakes them once it has released
/// the state, so a woken task never finds the state borrowed.
fn take_waiters<'s>(
    state: &mut State,
    shards: impl IntoIterator<Item = &'s ShardKey>,
) -> Vec<Rc<WaitSlot>> {
    if state.waiters.is_empty() {
        return Vec::new();
    }
    let mut woken = Vec::new();
    for shard in shards {
        if let Some(slots) = state.waiters.remove(shard) {
            woken.extend(slots.iter().filter_map(Weak::upgrade));
        }
    }
    woken
}

/// The future of [`Log::wait_for_records`].
struct WaitForRecords {
    state: Rc<RefCell<State>>,
    shard: ShardKey,
    position: u64,
    /// Registered with the log after the first `Pending`.
    slot: Option<Rc<WaitSlot>>,
}

impl Future for WaitForRecords {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.state.borrow_mut();
        if tip_of(state.shards.get(&this.shard)).next_position > this.position {
            return Poll::Ready(());
        }
        let slot = this.slot.get_or_insert_with(Rc::default);
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        // (Re-)register: the committer removes a shard's list when it wakes it, so a waiter
        // that was woken but found its position still not reached must enter the new list.
        let slots = state.waiters.entry(this.shard.clone()).or_default();
        slots.retain(|weak| weak.strong_count() > 0);
        if !slots
            .iter()
            .any(|weak| std::ptr::eq(weak.as_ptr(), Rc::as_ptr(slot)))
        {
            slots.push(Rc::downgrade(slot));
        }
        Poll::Pending
    }
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

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn segment_path(dir: &Path, segment_id: u64) -> PathBuf {
    dir.join(format!("{segment_id:020}.seg"))
}

fn is_einval(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

fn record_bytes(record: &AppendRecord) -> usize {
    // Archived overhead of one record: two relative pointers with lengths, plus alignment.
    record.partition_key.len() + record.data.len() + 24
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
        if config.commit_bytes_max == 0 {
            return Err(OpenLogError::InvalidConfig {
                reason: "commit_bytes_max must be positive".to_owned(),
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
        let mut state = recover(config).await?;
        state.cache.bytes_max = cache_bytes_max;
        let state = Rc::new(RefCell::new(state));
        let (queue, receiver) = async_channel::unbounded();
        glommio::spawn_local(run_committer(state.clone(), receiver)).detach();
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
        if let Some(segment_id) = self.state.borrow().poisoned {
            return Err(AppendError::Poisoned { segment_id });
        }
        if records.is_empty() {
            let state = self.state.borrow();
            let first_position = state.shards.get(shard).map_or(0, |s| s.assigned_next);
            return Ok(Appended {
                first_position,
                arrival_ms: state.last_arrival_ms,
            });
        }
        // The key is chosen when the append is accepted, so an append that starts after
        // StartStreamEncryption returned is encrypted, and the key is durable before the
        // records can be acknowledged.
        let encryption = self.encryption.borrow().clone();
        let key = match encryption {
            None => None,
            Some(encryption) => match (encryption.policy)(shard) {
                None => None,
                Some(key_id) => Some(encryption.keys.get_or_create(&key_id).map_err(|error| {
                    AppendError::Key {
                        key_id,
                        reason: error.to_string(),
                    }
                })?),
            },
        };
        self.enqueue(shard.clone(), records, key, false).await
    }

    async fn enqueue(
        &self,
        shard: ShardKey,
        records: Vec<AppendRecord>,
        key: Option<Arc<DataKey>>,
        marker: bool,
    ) -> Result<Appended, AppendError> {
        let bytes = records.iter().map(record_bytes).sum::<usize>() + shard.stream_name.len() + 64;
        let (done, completion) = oneshot::channel();
        self.queue
            .try_send(Pending {
                shard,
                records,
                key,
                marker,
                bytes,
                done,
            })
            .map_err(|_| AppendError::Closed)?;
        completion.await.map_err(|_| AppendError::Closed)?
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
        let tip = self.tip(shard);
        let mut out = LogRead::empty(tip);
        let mut next = position;
        'batches: while out.len < limit {
            // Chunks expected to cover the rest of `limit`, fetched concurrently: a shard's
            // chunks lie in different blocks, so a catch-up read would otherwise pay one disk
            // round trip per chunk.
            let batch: Vec<(ChunkRef, Fetch)> = {
                let state = self.state.borrow();
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
                let plain = self.decrypt_if_encrypted(&bytes.as_slice()[range], shard, &chunk)?;
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
        &self,
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
        let keys = self.encryption.borrow().as_ref().map(|e| e.keys.clone());
        block::decrypt_payload(raw, &header, &|key_ref| {
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

    /// Forgets these shards (their stream was deleted); their chunks become garbage that
    /// retention removes with the segments holding them.
    pub async fn drop_shards(&self, shards: &[ShardKey]) {
        let woken = {
            let mut state = self.state.borrow_mut();
            for shard in shards {
                state.shards.remove(shard);
            }
            take_waiters(&mut state, shards)
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
        let (doomed, markers) = {
            let state = self.state.borrow();
            let mut doomed = Vec::new();
            for (&segment_id, segment) in &state.segments {
                if segment_id == state.active_segment_id {
                    break;
                }
                let expired = segment
                    .shard_arrival_max
                    .iter()
                    .all(|(shard, &arrival_ms)| {
                        if !state.shards.contains_key(shard) {
                            return true;
                        }
                        match retention_ms(shard) {
                            None => true,
                            Some(retain_ms) => arrival_ms.saturating_add(retain_ms) < now_ms,
                        }
                    });
                if !expired {
                    break;
                }
                doomed.push(segment_id);
            }
            let Some(&last_doomed) = doomed.last() else {
                return Ok(0);
            };
            let markers: Vec<ShardKey> = state
                .shards
                .iter()
                .filter(|(shard, index)| {
                    index.next_position > 0
                        && index.last_segment_id <= last_doomed
                        && retention_ms(shard).is_some()
                })
                .map(|(shard, _)| shard.clone())
                .collect();
            (doomed, markers)
        };
        if !markers.is_empty() {
            tracing::debug!(
                shards = markers.len(),
                "Writing position markers before retention."
            );
            let waits: Vec<_> = markers
                .into_iter()
                .map(|shard| self.enqueue(shard, Vec::new(), None, true))
                .collect();
            for wait in waits {
                wait.await
                    .map_err(|source| RetentionError::Marker { source })?;
            }
        }
        let mut removed = 0;
        for segment_id in doomed {
            let segment = {
                let mut state = self.state.borrow_mut();
                let Some(segment) = state.segments.remove(&segment_id) else {
                    continue;
                };
                for shard in segment.shard_arrival_max.keys() {
                    let forget = match state.shards.get_mut(shard) {
                        Some(index) => {
                            index.remove_segment(segment_id);
                            index.last_segment_id <= segment_id && retention_ms(shard).is_none()
                        }
                        None => false,
                    };
                    if forget {
                        state.shards.remove(shard);
                    }
                }
                state.cache.remove_segment(segment_id);
                state.stats.segments_removed += 1;
                let segments_now = state.segments.len();
                crate::metrics::segments_changed(state.stats.segment_count, segments_now);
                state.stats.segment_count = segments_now;
                segment
            };
            segment
                .file
                .remove()
                .await
                .map_err(|error| RetentionError::RemoveSegment {
                    segment_id,
                    source: error.into(),
                })?;
            tracing::info!(segment_id, "Removed a segment past retention.");
            removed += 1;
        }
        Ok(removed)
    }

    pub fn stats(&self) -> LogStats {
        self.state.borrow().stats
    }
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

// ---------------------------------------------------------------------------------------------
// Committer

async fn run_committer(state: Rc<RefCell<State>>, queue: async_channel::Receiver<Pending>) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Ok(pending) => pending,
                Err(_) => return,
            },
        };
        let cap = state.borrow().config.commit_bytes_max;
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while bytes < cap {
            match queue.try_recv() {
                Ok(pending) => {
                    if bytes + pending.bytes > cap {
                        carry = Some(pending);
                        break;
                    }
                    bytes += pending.bytes;
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        commit(&state, batch).await;
    }
}

/// The records of one shard inside one planned block.
struct ChunkPlan {
    shard: ShardKey,
    key: Option<Arc<DataKey>>,
    first_position: u64,
    arrival_ms: u64,
    records: Vec<StoredRecord>,
}

/// A planned chunk whose records have been serialized into `payload`.
struct SerializedChunk {
    shard: ShardKey,
    key: Option<Arc<DataKey>>,
    first_position: u64,
    arrival_ms: u64,
    record_count: u32,
    payload: rkyv::util::AlignedVec,
}

#[derive(Default)]
struct BlockPlan {
    chunks: Vec<ChunkPlan>,
    open_chunk: HashMap<ShardKey, usize>,
    bytes: usize,
}

/// A block encoded and ready to write.
struct EncodedBlock {
    buffer: Rc<DmaBuffer>,
    offset: u64,
    block_seq: u64,
    crc: u32,
    chunks: Vec<(ShardKey, ChunkRef)>,
}

/// Assigns positions and an arrival time to a batch and splits it into blocks.
fn plan_commit(
    state: &mut State,
    batch: &mut [Pending],
) -> (Vec<BlockPlan>, Vec<Option<Appended>>, u64) {
    let arrival_ms = wall_clock_ms().max(state.last_arrival_ms);
    let block_target = state.config.commit_bytes_max.min(BLOCK_BYTES_TARGET);
    let mut blocks = vec![BlockPlan::default()];
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch.iter_mut() {
        let index = state
            .shards
            .entry(pending.shard.clone())
            .or_insert_with(|| ShardIndex::starting_at(0));
        if pending.marker {
            let block = blocks
                .last_mut()
                .expect("there is always a block being planned");
            block.open_chunk.remove(&pending.shard);
            block.chunks.push(ChunkPlan {
                shard: pending.shard.clone(),
                key: None,
                first_position: index.assigned_next,
                arrival_ms: index.last_arrival_ms.unwrap_or(arrival_ms),
                records: Vec::new(),
            });
            block.bytes += block::CHUNK_HEADER_LEN + pending.shard.stream_name.len() + 32;
            results.push(None);
            continue;
        }
        let first_position = index.assigned_next;
        index.assigned_next += pending.records.len() as u64;
        results.push(Some(Appended {
            first_position,
            arrival_ms,
        }));
        for (i, record) in std::mem::take(&mut pending.records).into_iter().enumerate() {
            let position = first_position + i as u64;
            let bytes = record_bytes(&record);
            let block = blocks
                .last_mut()
                .expect("there is always a block being planned");
            // A chunk is encrypted under one key or none, so records of the same shard under
            // another key (encryption just started or stopped) go into the next block; this
            // keeps one records chunk per shard per block.
            let other_key = block.open_chunk.get(&pending.shard).is_some_and(|&at| {
                block.chunks[at].key.as_ref().map(|k| k.key_ref)
                    != pending.key.as_ref().map(|k| k.key_ref)
            });
            if other_key || (block.bytes + bytes > block_target && !block.chunks.is_empty()) {
                blocks.push(BlockPlan::default());
            }
            let block = blocks
                .last_mut()
                .expect("there is always a block being planned");
            let at = match block.open_chunk.get(&pending.shard) {
                Some(&at) => at,
                None => {
                    block.chunks.push(ChunkPlan {
                        shard: pending.shard.clone(),
                        key: pending.key.clone(),
                        first_position: position,
                        arrival_ms,
                        records: Vec::new(),
                    });
                    block.bytes += block::CHUNK_HEADER_LEN + pending.shard.stream_name.len() + 32;
                    block
                        .open_chunk
                        .insert(pending.shard.clone(), block.chunks.len() - 1);
                    block.chunks.len() - 1
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
    }
    (blocks, results, arrival_ms)
}

/// Serialized chunks of a planned block.
struct SerializedBlock {
    chunks: Vec<SerializedChunk>,
    unpadded_len: usize,
    padded_len: usize,
}

fn serialize_block(plan: BlockPlan) -> SerializedBlock {
    let chunks: Vec<SerializedChunk> = plan
        .chunks
        .into_iter()
        .map(|chunk| {
            let record_count =
                u32::try_from(chunk.records.len()).expect("a chunk's record count fits u32");
            let payload = block::serialize_payload(&StoredChunk {
                records: chunk.records,
            });
            SerializedChunk {
                shard: chunk.shard,
                key: chunk.key,
                first_position: chunk.first_position,
                arrival_ms: chunk.arrival_ms,
                record_count,
                payload,
            }
        })
        .collect();
    let unpadded_len = block::HEADER_LEN
        + chunks
            .iter()
            .map(|c| {
                block::chunk_encoded_len(
                    c.shard.stream_name.len(),
                    block::stored_payload_len(c.payload.len(), c.key.is_some()),
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
fn encode_blocks(
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
                payload: &c.payload,
                encryption: c.key.as_deref().map(|key| ChunkEncryption {
                    key,
                    nonce: fresh_nonce(),
                }),
            })
            .collect();
        let identity = BlockIdentity {
            log_id: state.config.log_id,
            block_seq,
            prev_crc,
            arrival_ms,
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
/// negligible for up to 2^32 chunks per key (NIST SP 800-38D, 8.3).
fn fresh_nonce() -> [u8; block::NONCE_LEN] {
    let mut nonce = [0u8; block::NONCE_LEN];
    getrandom::getrandom(&mut nonce).expect("the OS random number source is available");
    nonce
}

fn fail_all(batch: Vec<Pending>, error: &AppendError) {
    for pending in batch {
        // A dropped receiver means the caller stopped waiting; nothing to tell it.
        let _ = pending.done.send(Err(error.clone()));
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = glommio::io::Directory::open(dir).await?;
    dir.sync().await?;
    dir.close().await?;
    Ok(())
}

/// Makes room for `total` bytes of blocks in the active segment, growing an empty active
/// segment or rolling over to a new one.
async fn ensure_space(state_rc: &Rc<RefCell<State>>, total: u64) -> Result<(), AppendError> {
    let (segment_id, offset, size, file, dir, segment_bytes, next_block_seq) = {
        let state = state_rc.borrow();
        let active = state.active();
        (
            state.active_segment_id,
            state.write_offset,
            active.size,
            active.file.clone(),
            state.config.dir.clone(),
            state.config.segment_bytes,
            state.next_block_seq,
        )
    };
    if offset + total <= size {
        return Ok(());
    }
    if offset == 0 {
        // Nothing is written to the active segment yet, so it can simply grow to hold a commit
        // bigger than `segment_bytes`.
        file.pre_allocate(total, false)
            .await
            .map_err(|error| AppendError::CreateSegment {
                segment_id,
                source: Arc::new(error.into()),
            })?;
        let mut state = state_rc.borrow_mut();
        let active_id = state.active_segment_id;
        if let Some(active) = state.segments.get_mut(&active_id) {
            active.size = total;
        }
        return Ok(());
    }
    let new_id = next_block_seq;
    let new_size = segment_bytes.max(total);
    let create_error = |error: std::io::Error| AppendError::CreateSegment {
        segment_id: new_id,
        source: Arc::new(error),
    };
    let file = open_segment_file(&dir, new_id, true)
        .await
        .map_err(|(_, error)| create_error(error))?;
    file.pre_allocate(new_size, false)
        .await
        .map_err(|error| create_error(error.into()))?;
    sync_dir(&dir).await.map_err(create_error)?;
    tracing::debug!(
        segment_id = new_id,
        segment_bytes = new_size,
        "Rolled over to a new segment."
    );
    let mut state = state_rc.borrow_mut();
    state.segments.insert(
        new_id,
        Segment {
            file: Rc::new(file),
            size: new_size,
            shard_arrival_max: HashMap::new(),
        },
    );
    state.active_segment_id = new_id;
    state.write_offset = 0;
    let segments_now = state.segments.len();
    crate::metrics::segments_changed(state.stats.segment_count, segments_now);
    state.stats.segment_count = segments_now;
    Ok(())
}

async fn commit(state_rc: &Rc<RefCell<State>>, mut batch: Vec<Pending>) {
    let poisoned = state_rc.borrow().poisoned;
    if let Some(segment_id) = poisoned {
        fail_all(batch, &AppendError::Poisoned { segment_id });
        return;
    }
    let (plans, results, arrival_ms) = plan_commit(&mut state_rc.borrow_mut(), &mut batch);
    let blocks: Vec<SerializedBlock> = plans
        .into_iter()
        .filter(|plan| !plan.chunks.is_empty())
        .map(serialize_block)
        .collect();
    let total: u64 = blocks.iter().map(|b| b.padded_len as u64).sum();
    if let Err(error) = ensure_space(state_rc, total).await {
        // Nothing of this batch reached the disk: hand its positions out again.
        let mut state = state_rc.borrow_mut();
        for pending in &batch {
            if let Some(index) = state.shards.get_mut(&pending.shard) {
                index.assigned_next = index.next_position;
            }
        }
        tracing::warn!(%error, "Could not make room for a commit; its appends failed.");
        fail_all(batch, &error);
        return;
    }
    let (segment_id, file, durability) = {
        let state = state_rc.borrow();
        (
            state.active_segment_id,
            state.active().file.clone(),
            state.config.durability,
        )
    };
    let encoded = encode_blocks(&state_rc.borrow(), blocks, arrival_ms);

    let mut failure: Option<AppendError> = None;
    let write_failed = |offset: u64, error: std::io::Error| AppendError::WriteFailed {
        segment_id,
        offset,
        source: Arc::new(error),
    };
    let check = |offset: u64, expected: usize, written: glommio::Result<usize, ()>| match written {
        Ok(n) if n == expected => None,
        Ok(n) => Some(write_failed(
            offset,
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("wrote {n} of {expected} bytes"),
            ),
        )),
        Err(error) => Some(write_failed(offset, error.into())),
    };
    if let [only] = encoded.as_slice() {
        let written = file.write_rc_at(only.buffer.clone(), only.offset).await;
        failure = check(only.offset, only.buffer.len(), written);
    } else {
        // Several blocks go out as concurrent writes; every one is awaited, even after a
        // failure, so no buffer is released while the kernel may still read it.
        let tasks: Vec<_> = encoded
            .iter()
            .map(|block| {
                let file = file.clone();
                let buffer = block.buffer.clone();
                let offset = block.offset;
                glommio::spawn_local(async move { file.write_rc_at(buffer, offset).await })
            })
            .collect();
        for (task, block) in tasks.into_iter().zip(&encoded) {
            let problem = check(block.offset, block.buffer.len(), task.await);
            if failure.is_none() {
                failure = problem;
            }
        }
    }
    let mut synced = false;
    if failure.is_none() && durability == Durability::Fsync {
        let fsync_started = std::time::Instant::now();
        let synced_result = file.fdatasync().await;
        crate::metrics::observe_fsync(fsync_started.elapsed());
        match synced_result {
            Ok(()) => synced = true,
            Err(error) => {
                failure = Some(AppendError::FsyncFailed {
                    segment_id,
                    source: Arc::new(error.into()),
                })
            }
        }
    }
    if let Some(error) = failure {
        state_rc.borrow_mut().poisoned = Some(segment_id);
        state_rc.borrow_mut().stats.poisoned = true;
        tracing::error!(segment_id, %error, "Segment write or sync failed; log poisoned.");
        fail_all(batch, &error);
        return;
    }

    let woken = {
        let mut guard = state_rc.borrow_mut();
        let state = &mut *guard;
        let segment = state
            .segments
            .get_mut(&segment_id)
            .expect("the segment being written stays open");
        let mut bytes_written = 0;
        for block in &encoded {
            for (shard, chunk) in &block.chunks {
                segment
                    .shard_arrival_max
                    .entry(shard.clone())
                    .and_modify(|max| *max = (*max).max(chunk.arrival_ms))
                    .or_insert(chunk.arrival_ms);
                // A shard dropped while its commit was in flight is not indexed again.
                if let Some(index) = state.shards.get_mut(shard) {
                    index.push(*chunk);
                }
            }
            bytes_written += block.buffer.len() as u64;
            state
                .cache
                .insert((segment_id, block.offset), block.buffer.clone());
        }
        if let Some(last) = encoded.last() {
            state.write_offset = last.offset + last.buffer.len() as u64;
            state.next_block_seq = last.block_seq + 1;
            state.prev_crc = last.crc;
        }
        state.last_arrival_ms = arrival_ms;
        state.stats.commits += 1;
        state.stats.blocks += encoded.len() as u64;
        state.stats.bytes_written += bytes_written;
        state.stats.fsyncs += u64::from(synced);
        state.stats.appends += results.iter().filter(|r| r.is_some()).count() as u64;
        let committed_records = encoded
            .iter()
            .flat_map(|b| b.chunks.iter())
            .map(|(_, c)| u64::from(c.record_count))
            .sum::<u64>();
        state.stats.records += committed_records;
        crate::metrics::observe_group_commit(committed_records as usize);
        take_waiters(
            state,
            encoded
                .iter()
                .flat_map(|b| b.chunks.iter())
                .map(|(shard, _)| shard),
        )
    };
    // The new positions are indexed (and durable), so tailing readers may read them now.
    for slot in &woken {
        slot.wake();
    }
    for (pending, result) in batch.into_iter().zip(results) {
        let appended = result.unwrap_or(Appended {
            first_position: 0,
            arrival_ms,
        });
        // A dropped receiver means the caller stopped waiting; the records are committed anyway.
        let _ = pending.done.send(Ok(appended));
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery

/// Where the chain of blocks must continue.
struct ChainCursor {
    expected_block_seq: u64,
    /// `None` before the first block of the oldest segment, whose predecessor may have been
    /// deleted by retention.
    prev_crc: Option<u32>,
}

/// How a segment scan ended.
struct ScanEnd {
    offset: u64,
    /// Bytes at `offset` that look written but are not a valid next block.
    torn_bytes: u64,
}

/// Makes `window` hold at least `len` bytes at `offset` (fewer only at the end of the file).
async fn fill_window(
    file: &DmaFile,
    segment_id: u64,
    window: &mut Option<(u64, ReadResult)>,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), OpenLogError> {
    if let Some((start, read)) = window
        && *start <= offset
        && offset + len as u64 <= *start + read.len() as u64
    {
        return Ok(());
    }
    let want = (len.max(RECOVERY_WINDOW_BYTES) as u64).min(size - offset);
    let want = usize::try_from(want).expect("a recovery window fits usize");
    let read =
        file.read_at_aligned(offset, want)
            .await
            .map_err(|error| OpenLogError::ReadSegment {
                segment_id,
                offset,
                source: error.into(),
            })?;
    *window = Some((offset, read));
    Ok(())
}

fn window_slice(window: &Option<(u64, ReadResult)>, offset: u64) -> &[u8] {
    match window {
        Some((start, read)) => &read[(offset - start) as usize..],
        None => &[],
    }
}

struct Interner(HashMap<String, Rc<str>>);

impl Interner {
    fn get(&mut self, name: &str) -> Rc<str> {
        if let Some(rc) = self.0.get(name) {
            return rc.clone();
        }
        let rc: Rc<str> = Rc::from(name);
        self.0.insert(name.to_owned(), rc.clone());
        rc
    }
}

async fn scan_segment(
    state: &mut State,
    file: &DmaFile,
    segment_id: u64,
    size: u64,
    cursor: &mut ChainCursor,
    arrivals: &mut HashMap<ShardKey, u64>,
    names: &mut Interner,
) -> Result<ScanEnd, OpenLogError> {
    let mut window = None;
    let mut offset = 0u64;
    loop {
        if offset + (BLOCK_ALIGN as u64) > size {
            return Ok(ScanEnd {
                offset,
                torn_bytes: 0,
            });
        }
        fill_window(file, segment_id, &mut window, offset, BLOCK_ALIGN, size).await?;
        let header = match block::parse_header(window_slice(&window, offset)) {
            Ok(header) => header,
            Err(HeaderProblem::Zeroed) => {
                return Ok(ScanEnd {
                    offset,
                    torn_bytes: 0,
                });
            }
            Err(_) => {
                return Ok(ScanEnd {
                    offset,
                    torn_bytes: BLOCK_ALIGN as u64,
                });
            }
        };
        if header.log_id != state.config.log_id {
            return Err(OpenLogError::ForeignSegment {
                segment_id,
                stored: header.log_id,
                expected: state.config.log_id,
            });
        }
        let padded = header.padded_len() as u64;
        let torn = ScanEnd {
            offset,
            torn_bytes: padded.min(size - offset),
        };
        let chained = header.block_seq == cursor.expected_block_seq
            && cursor.prev_crc.is_none_or(|prev| prev == header.prev_crc);
        if !chained || padded > size - offset {
            return Ok(torn);
        }
        fill_window(
            file,
            segment_id,
            &mut window,
            offset,
            header.padded_len(),
            size,
        )
        .await?;
        let bytes = window_slice(&window, offset);
        if bytes.len() < header.block_len() {
            return Ok(torn);
        }
        let raw = &bytes[..header.block_len()];
        let computed = block::block_crc(raw);
        if computed != header.crc {
            tracing::debug!(
                segment_id,
                segment_offset = offset,
                stored = header.crc,
                computed,
                "Block CRC mismatch."
            );
            return Ok(torn);
        }
        let Ok(chunks) = block::parse_chunks(raw, &header) else {
            tracing::warn!(
                segment_id,
                segment_offset = offset,
                "Block passed its CRC but its chunks are malformed; treating it as the end of the log."
            );
            return Ok(torn);
        };
        for (chunk_offset, chunk) in chunks {
            let shard = ShardKey {
                stream_name: names.get(chunk.stream_name),
                stream_created_ms: chunk.stream_created_ms,
                shard_index: chunk.shard_index,
            };
            let index = state
                .shards
                .entry(shard.clone())
                .or_insert_with(|| ShardIndex::starting_at(chunk.first_position));
            if chunk.first_position != index.next_position
                || index
                    .last_arrival_ms
                    .is_some_and(|last| chunk.arrival_ms < last)
            {
                return Err(OpenLogError::PositionMismatch {
                    segment_id,
                    offset,
                    stream_name: chunk.stream_name.to_owned(),
                    shard_index: chunk.shard_index,
                    stored: chunk.first_position,
                    expected: index.next_position,
                });
            }
            index.push(ChunkRef {
                first_position: chunk.first_position,
                record_count: chunk.record_count,
                arrival_ms: chunk.arrival_ms,
                segment_id,
                block_offset: offset,
                chunk_offset: u32::try_from(chunk_offset).expect("a chunk offset fits u32"),
                chunk_len: u32::try_from(chunk.chunk_len).expect("a chunk fits u32 bytes"),
            });
            arrivals
                .entry(shard)
                .and_modify(|max| *max = (*max).max(chunk.arrival_ms))
                .or_insert(chunk.arrival_ms);
            state.last_arrival_ms = state.last_arrival_ms.max(chunk.arrival_ms);
        }
        cursor.expected_block_seq += 1;
        cursor.prev_crc = Some(header.crc);
        offset += padded;
    }
}

/// A segment found after the end of the log. If it holds a valid block, earlier data must be
/// corrupt and the operator decides; if not, it is a segment the writer created but never
/// completed a write to, and it is removed.
async fn remove_leftover_segment(
    config: &LogConfig,
    segment_id: u64,
    expected_block_seq: u64,
) -> Result<(), OpenLogError> {
    let (path, file) = match open_segment_file(&config.dir, segment_id, false).await {
        Ok(file) => (segment_path(&config.dir, segment_id), file),
        Err((path, source)) => return Err(OpenLogError::OpenSegment { path, source }),
    };
    let size = file
        .file_size()
        .await
        .map_err(|error| OpenLogError::ReadSegment {
            segment_id,
            offset: 0,
            source: error.into(),
        })?;
    let size = size - size % BLOCK_ALIGN as u64;
    let mut window = None;
    let mut valid = false;
    if size > 0 {
        fill_window(&file, segment_id, &mut window, 0, BLOCK_ALIGN, size).await?;
        if let Ok(header) = block::parse_header(window_slice(&window, 0))
            && header.padded_len() as u64 <= size
        {
            fill_window(&file, segment_id, &mut window, 0, header.padded_len(), size).await?;
            let bytes = window_slice(&window, 0);
            valid = bytes.len() >= header.block_len()
                && block::block_crc(&bytes[..header.block_len()]) == header.crc;
        }
    }
    drop(window);
    let _ = file.close().await;
    if valid {
        return Err(OpenLogError::DataAfterLogEnd {
            segment_id,
            expected_block_seq,
        });
    }
    std::fs::remove_file(&path).map_err(|source| OpenLogError::RemoveSegment { path, source })?;
    tracing::warn!(
        segment_id,
        "Removed a segment after the end of the log that holds no valid block."
    );
    Ok(())
}

fn open_error(
    config: &LogConfig,
    path: PathBuf,
    source: std::io::Error,
    create: bool,
) -> OpenLogError {
    if is_einval(&source) {
        OpenLogError::DirectIoUnsupported {
            dir: config.dir.clone(),
            source,
        }
    } else if create {
        OpenLogError::CreateSegment { path, source }
    } else {
        OpenLogError::OpenSegment { path, source }
    }
}

/// Makes glommio's polled-I/O probe give the right answer for the device holding `dir`.
///
/// glommio decides once per device and executor thread whether reads may go through the
/// polled (IOPOLL) ring, by reading the first file that thread opens with `DmaFile`. If that
/// file is empty the probe read succeeds without touching the device and answers "yes" even on
/// devices without poll queues (virtio disks, for one); from then on every read on that thread
/// fails with EOPNOTSUPP. Opening a file that holds real data first makes the probe issue a
/// real read. [`Log::open`] calls this; call it yourself before opening any other `DmaFile` on
/// the same executor if that file may be empty.
pub async fn probe_direct_io(dir: &Path) -> Result<(), OpenLogError> {
    let dir_error = |source| OpenLogError::Directory {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    let path = dir.join(".direct-io-probe");
    std::fs::write(&path, [0xA5u8; BLOCK_ALIGN]).map_err(dir_error)?;
    let opened = OpenOptions::new().read(true).dma_open(&path).await;
    let _ = std::fs::remove_file(&path);
    match opened {
        Ok(file) => {
            let _ = file.close().await;
            Ok(())
        }
        Err(error) => {
            let source: std::io::Error = error.into();
            if is_einval(&source) {
                Err(OpenLogError::DirectIoUnsupported {
                    dir: dir.to_owned(),
                    source,
                })
            } else {
                Err(OpenLogError::OpenSegment { path, source })
            }
        }
    }
}

async fn recover(config: LogConfig) -> Result<State, OpenLogError> {
    let dir_error = |source| OpenLogError::Directory {
        dir: config.dir.clone(),
        source,
    };
    probe_direct_io(&config.dir).await?;
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&config.dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();

    let mut state = State {
        config,
        shards: HashMap::new(),
        segments: BTreeMap::new(),
        active_segment_id: 1,
        write_offset: 0,
        next_block_seq: 1,
        prev_crc: 0,
        last_arrival_ms: 0,
        poisoned: None,
        cache: BlockCache::default(),
        stats: LogStats::default(),
        waiters: HashMap::new(),
    };

    if ids.is_empty() {
        let file = open_segment_file(&state.config.dir, 1, true)
            .await
            .map_err(|(path, source)| open_error(&state.config, path, source, true))?;
        let size = state.config.segment_bytes;
        file.pre_allocate(size, false)
            .await
            .map_err(|error| OpenLogError::CreateSegment {
                path: segment_path(&state.config.dir, 1),
                source: error.into(),
            })?;
        sync_dir(&state.config.dir)
            .await
            .map_err(dir_error_owned(&state.config.dir))?;
        state.segments.insert(
            1,
            Segment {
                file: Rc::new(file),
                size,
                shard_arrival_max: HashMap::new(),
            },
        );
        let segments_now = 1;
        crate::metrics::segments_changed(state.stats.segment_count, segments_now);
        state.stats.segment_count = segments_now;
        return Ok(state);
    }

    let mut cursor = ChainCursor {
        expected_block_seq: ids[0],
        prev_crc: None,
    };
    let mut names = Interner(HashMap::new());
    let mut ended = false;
    for (i, &segment_id) in ids.iter().enumerate() {
        if ended {
            remove_leftover_segment(&state.config, segment_id, cursor.expected_block_seq).await?;
            continue;
        }
        let file = open_segment_file(&state.config.dir, segment_id, false)
            .await
            .map_err(|(path, source)| open_error(&state.config, path, source, false))?;
        let size = file
            .file_size()
            .await
            .map_err(|error| OpenLogError::ReadSegment {
                segment_id,
                offset: 0,
                source: error.into(),
            })?;
        let size = size - size % BLOCK_ALIGN as u64;
        let mut arrivals = HashMap::new();
        let end = scan_segment(
            &mut state,
            &file,
            segment_id,
            size,
            &mut cursor,
            &mut arrivals,
            &mut names,
        )
        .await?;
        state.segments.insert(
            segment_id,
            Segment {
                file: Rc::new(file),
                size,
                shard_arrival_max: arrivals,
            },
        );
        let continues = ids.get(i + 1) == Some(&cursor.expected_block_seq);
        if continues {
            if end.torn_bytes > 0 {
                tracing::debug!(
                    segment_id,
                    segment_offset = end.offset,
                    "Skipping a tail the writer abandoned when it rolled over."
                );
            }
            continue;
        }
        ended = true;
        state.active_segment_id = segment_id;
        state.write_offset = end.offset;
        if end.torn_bytes > 0 {
            tracing::warn!(
                segment_id,
                segment_offset = end.offset,
                bytes_dropped = end.torn_bytes,
                "Dropped a torn tail at the end of the log; the next commit overwrites it."
            );
        }
    }
    state.next_block_seq = cursor.expected_block_seq;
    state.prev_crc = cursor.prev_crc.unwrap_or(0);
    let segments_now = state.segments.len();
    crate::metrics::segments_changed(state.stats.segment_count, segments_now);
    state.stats.segment_count = segments_now;
    for index in state.shards.values_mut() {
        index.assigned_next = index.next_position;
    }
    tracing::info!(
        log_id = state.config.log_id,
        segments = state.segments.len(),
        shards = state.shards.len(),
        next_block_seq = state.next_block_seq,
        "Recovered the log."
    );
    Ok(state)
}

fn dir_error_owned(dir: &Path) -> impl Fn(std::io::Error) -> OpenLogError + '_ {
    move |source| OpenLogError::Directory {
        dir: dir.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn run<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor starts")
            .run(future)
    }

    fn shard(name: &str, shard_index: u32) -> ShardKey {
        ShardKey {
            stream_name: Rc::from(name),
            stream_created_ms: 1_700_000_000_000,
            shard_index,
        }
    }

    fn records(count: usize, size: usize, tag: u64) -> Vec<AppendRecord> {
        (0..count)
            .map(|i| AppendRecord {
                partition_key: format!("pk-{tag}-{i}"),
                data: (0..size)
                    .map(|b| (b as u64 ^ tag ^ i as u64) as u8)
                    .collect(),
            })
            .collect()
    }

    fn config(dir: &Path, segment_bytes: u64, durability: Durability) -> LogConfig {
        LogConfig {
            dir: dir.to_owned(),
            log_id: 3,
            segment_bytes,
            commit_bytes_max: 16 << 10,
            durability,
        }
    }

    type Owned = (u64, String, Vec<u8>);

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

    async fn read_all(log: &Log, shard: &ShardKey, from: u64) -> Vec<Owned> {
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

    fn expected(batches: &[Vec<AppendRecord>]) -> Vec<Owned> {
        batches
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| (i as u64, r.partition_key.clone(), r.data.clone()))
            .collect()
    }

    /// Offsets of the valid-looking block headers in a segment file.
    fn block_offsets(path: &Path) -> Vec<usize> {
        let bytes = std::fs::read(path).expect("segment readable");
        (0..bytes.len())
            .step_by(BLOCK_ALIGN)
            .filter(|&at| block::parse_header(&bytes[at..]).is_ok())
            .collect()
    }

    const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

    fn marked(count: usize, tag: u64) -> Vec<AppendRecord> {
        (0..count)
            .map(|i| AppendRecord {
                partition_key: format!("pk-{tag}-{i}"),
                data: [MARKER, format!("-{tag}-{i}").as_bytes()].concat(),
            })
            .collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn segments_contain(dir: &Path, needle: &[u8]) -> bool {
        segment_files(dir)
            .iter()
            .any(|path| contains(&std::fs::read(path).expect("segment readable"), needle))
    }

    /// A policy that encrypts every shard under `alias/aws/kinesis` while `on` is set.
    fn toggled_policy(on: Rc<std::cell::Cell<bool>>) -> EncryptionPolicy {
        Rc::new(move |_: &ShardKey| on.get().then(|| "alias/aws/kinesis".to_owned()))
    }

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
                data: b"CLEAR-TEXT-AFTER-STOP".to_vec(),
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

    #[test]
    fn a_format_version_1_block_still_opens_and_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let a = shard("old", 0);
            let batch = records(5, 40, 9);
            {
                let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                    .await
                    .expect("log opens");
                log.append(&a, batch.clone()).await.expect("append");
            }
            // Version 1 differs from version 2 only in the chunk flags, which were reserved
            // zeros: relabel the one block as version 1, as an old binary wrote it.
            let file = segment_files(&path).remove(0);
            let mut bytes = std::fs::read(&file).expect("read segment");
            assert_eq!(block_offsets(&file), vec![0], "one block");
            bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
            let len = block::parse_header(&bytes)
                .expect("version 1 parses")
                .block_len();
            let crc = block::block_crc(&bytes[..len]);
            bytes[36..40].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&file, &bytes).expect("write segment");
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(read_all(&log, &a, 0).await, expected(&[batch]));
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

    #[test]
    fn a_waiter_wakes_after_the_commit_that_passes_its_position_and_not_before() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            let a = shard("orders", 0);
            let b = shard("orders", 1);
            log.append(&a, records(2, 10, 1)).await.expect("append");
            // Positions already stored resolve at once.
            log.wait_for_records(&a, 1).await;

            let woke = Rc::new(std::cell::Cell::new(false));
            let waiter = {
                let woke = woke.clone();
                let wait = log.wait_for_records(&a, 2);
                glommio::spawn_local(async move {
                    wait.await;
                    woke.set(true);
                })
            };
            // A commit of another shard, and time passing, do not wake it.
            log.append(&b, records(1, 10, 2)).await.expect("append");
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!woke.get(), "no record at position 2 exists yet");

            log.append(&a, records(1, 10, 3)).await.expect("append");
            glommio::timer::timeout(std::time::Duration::from_secs(5), async {
                waiter.await;
                Ok(())
            })
            .await
            .expect("the commit wakes the waiter");
            assert!(woke.get());
            assert_eq!(log.tip(&a).next_position, 3);
            // Dropped waiters leave no live registration behind.
            drop(log.wait_for_records(&a, 10));
            let live: usize = log
                .state
                .borrow()
                .waiters
                .values()
                .flatten()
                .filter(|w| w.strong_count() > 0)
                .count();
            assert_eq!(live, 0);
        });
    }

    fn both_modes_round_trip(durability: Durability) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, durability))
                .await
                .expect("log opens");
            let a = shard("orders", 0);
            let b = shard("orders", 1);
            let batches = [records(3, 10, 1), records(5, 300, 2)];
            let first = log.append(&a, batches[0].clone()).await.expect("append");
            let second = log.append(&a, batches[1].clone()).await.expect("append");
            log.append(&b, records(2, 5, 9)).await.expect("append");
            assert_eq!(first.first_position, 0);
            assert_eq!(second.first_position, 3);
            assert!(second.arrival_ms >= first.arrival_ms);
            assert_eq!(
                log.tip(&a),
                ShardTip {
                    next_position: 8,
                    last_arrival_ms: Some(second.arrival_ms)
                }
            );
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
            assert_eq!(
                read_all(&log, &a, 4).await,
                expected(&batches)[4..].to_vec()
            );
            assert!(
                log.read(&a, 8, 10, 100).await.expect("read").is_empty(),
                "reads past the tip are empty"
            );
            let stats = log.stats();
            assert_eq!(stats.commits, 3);
            match durability {
                Durability::Fsync => assert_eq!(stats.fsyncs, 3),
                Durability::Write => assert_eq!(stats.fsyncs, 0),
            }
            drop(log);
            let log = Log::open(config(&path, 1 << 20, durability))
                .await
                .expect("log reopens");
            assert_eq!(log.tip(&a).next_position, 8);
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
        });
    }

    #[test]
    fn appends_read_back_in_order_under_fsync_durability() {
        both_modes_round_trip(Durability::Fsync);
    }

    #[test]
    fn appends_read_back_in_order_under_write_durability() {
        both_modes_round_trip(Durability::Write);
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
            let read = log.read(&s, 0, 100, 10).await.expect("read");
            assert_eq!(
                read.len(),
                1,
                "one record even when it exceeds the byte budget"
            );
        });
    }

    #[test]
    fn a_thousand_concurrent_appends_to_a_thousand_shards_share_few_fsyncs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let mut config = config(&path, 64 << 20, Durability::Fsync);
            config.commit_bytes_max = COMMIT_BYTES_MAX_DEFAULT;
            let log = Log::open(config).await.expect("log opens");
            let tasks: Vec<_> = (0..1000u32)
                .map(|i| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let key = shard("many", i);
                        log.append(&key, records(1, 100, u64::from(i))).await
                    })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.expect("append").first_position, 0);
            }
            let stats = log.stats();
            assert_eq!(stats.appends, 1000);
            assert!(stats.fsyncs >= 1);
            assert!(
                stats.fsyncs <= 20,
                "1,000 appends took {} fsyncs",
                stats.fsyncs
            );
            for i in [0u32, 499, 999] {
                let key = shard("many", i);
                assert_eq!(
                    read_all(&log, &key, 0).await,
                    expected(&[records(1, 100, u64::from(i))])
                );
            }
        });
    }

    #[test]
    fn an_append_bigger_than_a_commit_spans_several_blocks_written_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 64 << 10, Durability::Fsync))
                .await
                .expect("log opens");
            let s = shard("big", 0);
            log.append(&s, records(1, 10, 0)).await.expect("append");
            let big = records(200, 1000, 7);
            assert_eq!(
                log.append(&s, big.clone())
                    .await
                    .expect("append")
                    .first_position,
                1
            );
            let stats = log.stats();
            assert!(
                stats.blocks >= 14,
                "200 KB at 16 KiB per block took {} blocks",
                stats.blocks
            );
            assert_eq!(stats.fsyncs, 2);
            assert_eq!(
                stats.segment_count, 2,
                "the commit rolled over to a bigger segment"
            );
            let all = expected(&[records(1, 10, 0), big]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            drop(log);
            let log = Log::open(config(&path, 64 << 10, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(read_all(&log, &s, 0).await, all);
        });
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

    #[test]
    fn once_poisoned_the_log_refuses_appends_but_still_serves_what_it_wrote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            let s = shard("p", 0);
            let batch = records(3, 10, 1);
            log.append(&s, batch.clone()).await.expect("append");
            // A failed write or fsync sets this; the disk cannot be made to fail on demand here.
            log.state.borrow_mut().poisoned = Some(1);
            let error = log
                .append(&s, records(1, 1, 2))
                .await
                .expect_err("poisoned log refuses");
            assert!(
                matches!(error, AppendError::Poisoned { segment_id: 1 }),
                "{error}"
            );
            assert_eq!(log.tip(&s).next_position, 3);
            assert_eq!(read_all(&log, &s, 0).await, expected(&[batch]));
        });
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("dir readable")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        files.sort();
        files
    }

    /// A crash mid-write leaves the newest block torn. Recovery must drop exactly that block,
    /// keep every earlier one, and let the next commit continue at the right positions.
    fn torn_tail_recovers(damage: impl FnOnce(&Path, usize) + 'static) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let s = shard("torn", 0);
            let batches = [records(4, 50, 1), records(3, 2000, 2), records(5, 3000, 3)];
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            for batch in &batches {
                log.append(&s, batch.clone()).await.expect("append");
            }
            drop(log);
            let files = segment_files(&path);
            assert_eq!(files.len(), 1);
            let offsets = block_offsets(&files[0]);
            assert_eq!(offsets.len(), 3);
            damage(&files[0], offsets[2]);

            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(log.tip(&s).next_position, 7, "the torn block is gone");
            assert_eq!(read_all(&log, &s, 0).await, expected(&batches[..2]));
            let again = records(2, 10, 4);
            assert_eq!(
                log.append(&s, again.clone())
                    .await
                    .expect("append")
                    .first_position,
                7
            );
            drop(log);
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            let all = expected(&[batches[0].clone(), batches[1].clone(), again]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            assert_eq!(
                log.append(&s, records(1, 1, 5))
                    .await
                    .expect("append")
                    .first_position,
                9
            );
        });
    }

    #[test]
    fn recovery_drops_a_corrupted_last_block_and_keeps_the_earlier_ones() {
        torn_tail_recovers(|file, offset| {
            let mut bytes = std::fs::read(file).expect("read segment");
            bytes[offset + 5000] ^= 0xFF;
            std::fs::write(file, bytes).expect("write segment");
        });
    }

    #[test]
    fn recovery_drops_a_last_block_truncated_mid_way() {
        torn_tail_recovers(|file, offset| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .expect("open segment");
            f.set_len((offset + 6000) as u64).expect("truncate");
        });
    }

    #[test]
    fn retention_removes_old_segments_and_recovery_keeps_idle_shards_positions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let busy = shard("busy", 0);
            let idle = shard("idle", 0);
            let gone = shard("gone", 0);
            let cfg = || config(&path, 16 << 10, Durability::Write);
            let log = Log::open(cfg()).await.expect("log opens");
            log.append(&idle, records(3, 100, 1)).await.expect("append");
            log.append(&gone, records(3, 100, 1)).await.expect("append");
            for i in 0..20 {
                log.append(&busy, records(2, 3000, i))
                    .await
                    .expect("append");
            }
            let before = log.stats().segment_count;
            assert!(before > 3, "tiny segments rolled over ({before})");
            log.drop_shards(std::slice::from_ref(&gone)).await;
            assert_eq!(log.tip(&gone).next_position, 0);

            // Long retention keeps everything.
            let keep = |_: &ShardKey| Some(u64::MAX / 4);
            assert_eq!(
                log.enforce_retention(&keep, wall_clock_ms())
                    .await
                    .expect("retention"),
                0
            );

            let expire = |_: &ShardKey| Some(0);
            let removed = log
                .enforce_retention(&expire, u64::MAX / 2)
                .await
                .expect("retention");
            assert_eq!(
                removed,
                before - 1,
                "everything but the active segment goes"
            );
            assert_eq!(log.stats().segment_count, 1);
            assert_eq!(segment_files(&path).len(), 1);
            assert_eq!(log.tip(&idle).next_position, 3);
            assert!(
                log.read(&idle, 0, 10, 1 << 20)
                    .await
                    .expect("read")
                    .is_empty()
            );
            let busy_first = log.first_retained_position(&busy, 0);
            assert!(busy_first > 0 && busy_first <= 40);
            let rest = read_all(&log, &busy, 0).await;
            assert_eq!(
                rest.first().map(|r| r.0),
                Some(busy_first),
                "reads start at the oldest stored record"
            );
            assert_eq!(rest.last().map(|r| r.0), Some(39));
            drop(log);

            let log = Log::open(cfg()).await.expect("log reopens");
            assert_eq!(
                log.tip(&idle).next_position,
                3,
                "a marker kept the idle shard's tip"
            );
            assert!(log.tip(&idle).last_arrival_ms.is_some());
            assert_eq!(log.tip(&busy).next_position, 40);
            assert_eq!(log.first_retained_position(&busy, 0), busy_first);
            assert_eq!(
                log.append(&idle, records(1, 1, 1))
                    .await
                    .expect("append")
                    .first_position,
                3
            );
        });
    }

    #[test]
    fn a_later_segment_with_valid_blocks_after_a_broken_chain_is_an_error_not_silent_loss() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let s = shard("s", 0);
            let log = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect("log opens");
            for i in 0..12 {
                log.append(&s, records(2, 3000, i)).await.expect("append");
            }
            drop(log);
            let files = segment_files(&path);
            assert!(files.len() >= 3);
            let mut bytes = std::fs::read(&files[0]).expect("read");
            bytes[100] ^= 1;
            std::fs::write(&files[0], bytes).expect("write");
            let error = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect_err("refuses");
            assert!(
                matches!(error, OpenLogError::DataAfterLogEnd { .. }),
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
                    durability: Durability::Write,
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
                            entries.extend(batch.into_iter().map(|r| (r.partition_key, r.data)));
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
