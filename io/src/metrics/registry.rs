//! The per-thread metric registries: each executor thread ("core") owns one [`CoreRegistry`],
//! registered once in a global list the scrape reads, and keeps a thread-local cache of its
//! per-stream and per-shard counters so that recording takes no shared lock. Owns the label
//! caps: streams beyond [`stream_labels_max`] fold into `stream="_other"`, shards beyond
//! [`SHARD_LABELS_PER_STREAM_MAX`] (or of a folded stream) get no shard labels.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::engine::{FSYNC_BUCKETS_S, GROUP_COMMIT_BUCKETS, Histogram};
use super::kinesis::{ShardCounters, StreamCounters};

/// Per-stream label sets each thread keeps before folding further streams into `_other`.
static STREAM_LABELS_MAX: AtomicUsize = AtomicUsize::new(1_000);
/// Shards of one stream with their own labels.
pub const SHARD_LABELS_PER_STREAM_MAX: usize = 10_000;
/// Destination cores the queue counters distinguish.
pub const QUEUE_CORES_MAX: usize = 256;
const OTHER_STREAM: &str = "_other";

/// Sets the per-stream label cap (the server's `--metrics-streams-max`).
pub fn set_stream_labels_max(max: usize) {
    STREAM_LABELS_MAX.store(max, Ordering::Relaxed);
}

pub fn stream_labels_max() -> usize {
    STREAM_LABELS_MAX.load(Ordering::Relaxed)
}

/// One thread's registry.
pub(super) struct CoreRegistry {
    pub core: String,
    pub streams: Mutex<HashMap<String, Arc<StreamCounters>>>,
    pub shards: Mutex<HashMap<(String, u32), Arc<ShardCounters>>>,
    pub fsync: Histogram<{ FSYNC_BUCKETS_S.len() }>,
    pub group_commit: Histogram<{ GROUP_COMMIT_BUCKETS.len() }>,
    pub queue_pushed: Vec<AtomicU64>,
    pub queue_popped: AtomicU64,
}

/// Every thread's registry, in registration order.
pub(super) static REGISTRIES: LazyLock<Mutex<Vec<Arc<CoreRegistry>>>> =
    LazyLock::new(|| Mutex::new(Vec::new()));
pub(super) struct Local {
    pub registry: Arc<CoreRegistry>,
    streams: HashMap<String, Arc<StreamCounters>>,
    /// By stream, then shard index: looked up with a borrowed name, so counting a write to
    /// one of 1,000 shards allocates nothing once the shard's counters exist.
    shards: HashMap<String, rustc_hash::FxHashMap<u32, Arc<ShardCounters>>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Registries hold counters only; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with this thread's registry, creating and registering it on first use.
pub(super) fn with_local<T>(f: impl FnOnce(&mut Local) -> T) -> T {
    LOCAL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let local = slot.get_or_insert_with(|| {
            let core = std::thread::current()
                .name()
                .and_then(|n| n.strip_prefix("sluice-core-"))
                // glommio appends its own executor id: `sluice-core-<core>-<id>`.
                .and_then(|rest| rest.split('-').next())
                .unwrap_or("other")
                .to_owned();
            let registry = Arc::new(CoreRegistry {
                core,
                streams: Mutex::new(HashMap::new()),
                shards: Mutex::new(HashMap::new()),
                fsync: Histogram::new(&FSYNC_BUCKETS_S),
                group_commit: Histogram::new(&GROUP_COMMIT_BUCKETS),
                queue_pushed: (0..QUEUE_CORES_MAX).map(|_| AtomicU64::new(0)).collect(),
                queue_popped: AtomicU64::new(0),
            });
            lock(&REGISTRIES).push(registry.clone());
            Local {
                registry,
                streams: HashMap::new(),
                shards: HashMap::new(),
            }
        });
        f(local)
    })
}

impl Local {
    pub(super) fn stream(&mut self, stream_name: &str) -> Arc<StreamCounters> {
        if let Some(c) = self.streams.get(stream_name) {
            return c.clone();
        }
        let name = if self.streams.len() < stream_labels_max() {
            stream_name
        } else {
            OTHER_STREAM
        };
        let counters = lock(&self.registry.streams)
            .entry(name.to_owned())
            .or_default()
            .clone();
        if name != OTHER_STREAM {
            self.streams.insert(name.to_owned(), counters.clone());
        }
        counters
    }

    pub(super) fn shard(
        &mut self,
        stream_name: &str,
        shard_index: u32,
    ) -> Option<Arc<ShardCounters>> {
        if let Some(c) = self
            .shards
            .get(stream_name)
            .and_then(|shards| shards.get(&shard_index))
        {
            return Some(c.clone());
        }
        if !self.streams.contains_key(stream_name)
            || shard_index as usize >= SHARD_LABELS_PER_STREAM_MAX
        {
            return None;
        }
        let counters = lock(&self.registry.shards)
            .entry((stream_name.to_owned(), shard_index))
            .or_default()
            .clone();
        self.shards
            .entry(stream_name.to_owned())
            .or_default()
            .insert(shard_index, counters.clone());
        Some(counters)
    }
}
