//! The engine: one glommio executor per shard core, each owning the logs (and so the shards)
//! whose `log_id % cores` is its index, plus the catalog shared by all cores.
//!
//! Invariants:
//! - A shard's records live in exactly one log, `Shard::log_id`, chosen when the shard is created
//!   and never changed. Only the core that owns that log appends to or reads from it; every other
//!   core sends it a message (`CoreMessage`) over the cross-core mesh and awaits the reply.
//! - The catalog is the single source of truth for streams and shards. Every change is persisted
//!   (write, fsync, rename, fsync directory) before the call that made it is acknowledged.
//! - `run` finishes recovery of every log on every core before any front end starts serving.
//! - Reads for the binary protocol ([`Engine::read_cursor`], [`Engine::read_wait`]) resolve
//!   their start with the same catalog code as GetShardIterator and read with the same trim and
//!   continuation rules as GetRecords, so both protocols see the same records at the same
//!   positions. A waiting read waits on the owning core for the log's commit notifier
//!   (`Log::wait_for_records`); nothing polls.
//! - Resharding (see `core::reshard`): core 0 completes due reshards. It first seals every
//!   closing shard on its owning core ([`CoreMessage::Seal`]): from then on appends to that shard
//!   fail with [`AppendFailure::Sealed`] and the seal waits until every append accepted before it
//!   is committed (or failed), so the tip it reports is final. Only then is the reshard completed
//!   in the catalog at those tips. A writer whose append met a seal routes the records again
//!   once the catalog shows the children, so a record racing a reshard lands exactly once:
//!   before the seal in the parent, or after it in a child.
//! - A record's sequence number carries its arrival second, but never one before its shard's
//!   creation second: children are dated one second after their parents close, and a record
//!   that reaches a child within that second is numbered as if it arrived then, so numbers grow
//!   along the lineage as AWS's do.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use futures_util::future::join_all;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_core::api::*;
use sluice_core::catalog::{Catalog, CatalogConfig, RemovedStream, Shard, StartingPoint, Stream};
use sluice_core::hash_key::partition_key_hash;
use sluice_core::limits::GET_RECORDS_BYTES_MAX;
use sluice_core::reshard::DueReshard;
use sluice_core::shard_id::format_shard_id;
use sluice_core::storage::{ReadBatch, RecordStamp, ShardOrigin};
pub use sluice_core::storage::{ReadStart, ShardPlacement};
use sluice_core::{KinesisError, SequenceNumber};

use crate::catalog_store::{CatalogStore, CatalogStoreError};
use crate::log::{
    AppendRecord, Appended as LogAppended, Durability, Log, LogConfig, LogRead, ShardKey, ShardTip,
};
use crate::persist::Persister;
use crate::service::{ServiceCoreStatus, ServiceRuntime, ServiceStarter};

/// Everything the engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Number of shard cores (executors).
    pub cores: usize,
    /// Pin executor i to CPU i (production); tests run unpinned so parallel servers share CPUs.
    pub pin_cores: bool,
    pub durability: Durability,
    pub catalog: CatalogConfig,
    /// Preallocated size of each segment file.
    pub segment_bytes: u64,
    /// Largest single group commit.
    pub commit_bytes_max: usize,
    /// glommio io memory per executor.
    pub io_memory_bytes: usize,
    /// How long an idle executor polls before it parks. Waking a parked thread costs tens to
    /// hundreds of microseconds on a VM, which dominates a single durable put at low load.
    pub idle_spin_us: u64,
    /// Enforce AWS's provisioned throughput per shard (1 MiB/s or 1 000 records/s written, 2 MiB/s
    /// read); see [`crate::throttle`]. Off by default: an appliance usually wants all the
    /// throughput its disk gives.
    pub throughput_limits: bool,
    /// Service cores: executors that own no shards and run services (see [`crate::service`]).
    pub service_cores: usize,
    /// The runtime every service core runs.
    pub service_runtime: ServiceRuntime,
}

impl EngineConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin_cores: true,
            durability: Durability::Fsync,
            catalog: CatalogConfig::default(),
            segment_bytes: 256 * 1024 * 1024,
            commit_bytes_max: 4 * 1024 * 1024,
            io_memory_bytes: 8 * 1024 * 1024,
            idle_spin_us: 0,
            throughput_limits: false,
            service_cores: 1,
            service_runtime: ServiceRuntime::Tokio,
        }
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path} is not usable")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogStoreError),
    #[error("could not start executor for core {core}: {message}")]
    Executor { core: usize, message: String },
    #[error("recovery of log {log_id} failed: {message}")]
    Recovery { log_id: u32, message: String },
    #[error("could not start the persistence thread: {message}")]
    Persist { message: String },
    #[error("--cores must be at least 1")]
    NoCores,
}

/// An error and all its sources on one line, so a start-up failure names its root cause.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A request sent to the core that owns a log. Everything in it is `Send`.
pub(crate) enum CoreMessage {
    Append {
        log_id: u32,
        shard: OwnedShardKey,
        records: Vec<AppendRecord>,
        reply: oneshot::Sender<Result<LogAppended, AppendFailure>>,
    },
    /// Seals shards this core owns for a reshard and answers their final tips, in order.
    Seal {
        shards: Vec<(u32, OwnedShardKey)>,
        reply: oneshot::Sender<Vec<u64>>,
    },
    Locate {
        log_id: u32,
        shard: OwnedShardKey,
        query: Locate,
        reply: oneshot::Sender<Location>,
    },
    DropShards {
        keys: Vec<(u32, OwnedShardKey)>,
    },
    /// A read of any kind (GetRecords, a cursor, the storage face): resolve the start, clamp
    /// it to the retained records, optionally wait for a record there, then read; one round
    /// trip whatever the start.
    ReadFrom {
        log_id: u32,
        shard: OwnedShardKey,
        origin: ShardOrigin,
        request: OwnerRead,
        reply: oneshot::Sender<Result<ReadBatch, ReadRefused>>,
    },
}

/// Why a read on the owning core returned no records.
#[derive(Clone, Debug)]
pub(crate) enum ReadRefused {
    /// The shard's read limits refused the call.
    Throttled,
    /// The shard's log is not open on the core the request reached.
    LogNotOpen { log_id: u32, core_id: usize },
    /// The log failed the read.
    Failed { reason: String },
}

impl std::fmt::Display for ReadRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Throttled => f.write_str("the shard's read limits refused the call"),
            Self::LogNotOpen { log_id, core_id } => {
                write!(f, "log {log_id} is not open on core {core_id}")
            }
            Self::Failed { reason } => f.write_str(reason),
        }
    }
}

/// Why an append on the owning core did not happen.
#[derive(Clone, Debug)]
pub(crate) enum AppendFailure {
    /// The shard was sealed by a reshard: route the records (handed back) again once the
    /// reshard completes.
    Sealed(Vec<AppendRecord>),
    /// The log refused or failed the append.
    Failed(String),
    /// The shard's throughput limits admitted only the first `admitted` records, stored at
    /// `appended` (first position, arrival ms) when there were any; the rest were refused.
    Throttled {
        appended: Option<LogAppended>,
        admitted: usize,
    },
}

/// What the owning core does for every read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OwnerRead {
    /// Resolved on the owning core (TRIM_HORIZON, LATEST and AT_TIMESTAMP need its log).
    pub(crate) start: StartingPoint,
    /// Charge the read against the shard's read limits (GetRecords does; pushes do not).
    pub(crate) charge_read_limits: bool,
    pub(crate) limit: usize,
    pub(crate) bytes_max: usize,
    /// Records that arrived before this are past retention and skipped, as GetRecords does.
    pub(crate) retain_after_ms: u64,
    /// Wait until a record exists at the (clamped) position or this instant passes.
    pub(crate) wait_until: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Locate {
    /// First retained record (arrival ≥ the given ms).
    TrimHorizon(u64),
    /// First record with arrival ≥ the given ms.
    Timestamp(u64),
    Tip,
}

/// Where a `Locate` landed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Location {
    position: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct OwnedShardKey {
    stream_name: String,
    stream_created_ms: u64,
    shard_index: u32,
}

impl OwnedShardKey {
    fn to_key(&self) -> ShardKey {
        ShardKey {
            stream_name: Rc::from(self.stream_name.as_str()),
            stream_created_ms: self.stream_created_ms,
            shard_index: self.shard_index,
        }
    }
}

/// Records of a local read copied into one buffer, so they can cross threads.
fn batch_of(read: &LogRead, origin: ShardOrigin, start_position: u64, tip: ShardTip) -> ReadBatch {
    let mut batch = ReadBatch::new(origin, read.len(), read.data_bytes() + read.len() * 16);
    read.for_each(&mut |position, arrival_ms, partition_key, data| {
        batch.push(position, arrival_ms, partition_key, data);
    });
    batch.start_position = start_position;
    batch.tip_position = tip.next_position;
    batch.tip_arrival_ms = tip.last_arrival_ms;
    batch
}

/// State shared by every core.
pub(crate) struct Shared {
    cores: usize,
    catalog_config: CatalogConfig,
    catalog: RwLock<Catalog>,
    /// Serialises catalog changes with their persistence. An async lock: a change waits for
    /// the persistence thread's fsyncs without blocking its executor.
    catalog_change: futures_util::lock::Mutex<()>,
    /// Writes catalog snapshots and consumer checkpoints off the executors.
    pub(crate) persister: Persister,
    /// What `/health` and `/metrics` show of each service core.
    pub(crate) service_cores: Vec<Arc<ServiceCoreStatus>>,
    inboxes: Vec<async_channel::Sender<CoreMessage>>,
}

/// A shard core's inbox is closed or it dropped a reply: the core has stopped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoreGone;

impl Shared {
    pub(crate) fn cores(&self) -> usize {
        self.cores
    }

    /// The core that owns `log_id`.
    pub(crate) fn owner(&self, log_id: u32) -> usize {
        log_id as usize % self.cores
    }

    pub(crate) fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        // A poisoned lock means a panic while mutating the catalog; with panic=abort that cannot
        // be observed, and in tests the state is still structurally valid.
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) async fn send(&self, core: usize, message: CoreMessage) -> Result<(), CoreGone> {
        crate::metrics::queue_pushed(core);
        self.inboxes[core].send(message).await.map_err(|_| CoreGone)
    }

    /// Sends the request `request` builds around a reply channel to `core` and awaits the reply.
    pub(crate) async fn ask<T>(
        &self,
        core: usize,
        request: impl FnOnce(oneshot::Sender<T>) -> CoreMessage,
    ) -> Result<T, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.send(core, request(reply)).await?;
        rx.await.map_err(|_| CoreGone)
    }
}

/// The logs one core owns.
struct CoreState {
    core_id: usize,
    logs: HashMap<u32, Rc<Log>>,
    /// Shards sealed by a reshard on this core: appends to them fail with `Sealed`. Kept for the
    /// life of the process; after a restart the catalog, which records them closed, routes no
    /// write to them.
    sealed: RefCell<HashSet<ShardKey>>,
    /// Appends accepted for a shard and not yet committed or failed, and the seals waiting for
    /// that count to reach zero.
    in_flight: RefCell<HashMap<ShardKey, InFlight>>,
    /// Token buckets of the shards this core owns, when throughput limits are on.
    throttles: Option<RefCell<HashMap<ShardKey, crate::throttle::ShardThrottle>>>,
}

#[derive(Default)]
struct InFlight {
    appends: usize,
    drained: Vec<oneshot::Sender<()>>,
}

impl CoreState {
    fn new(core_id: usize, logs: HashMap<u32, Rc<Log>>, throughput_limits: bool) -> Self {
        let throttles = throughput_limits.then(RefCell::default);
        Self {
            core_id,
            logs,
            sealed: RefCell::default(),
            in_flight: RefCell::default(),
            throttles,
        }
    }

    /// How many of `records`, from the first, the shard's write limits admit now (all of them
    /// when limits are off).
    fn admit_writes(&self, key: &ShardKey, records: &[AppendRecord]) -> usize {
        let Some(throttles) = &self.throttles else {
            return records.len();
        };
        let now = Instant::now();
        let mut throttles = throttles.borrow_mut();
        let shard = throttles
            .entry(key.clone())
            .or_insert_with(|| crate::throttle::ShardThrottle::new(now));
        shard.admit_writes(
            records.iter().map(|r| r.partition_key.len() + r.data.len()),
            now,
        )
    }

    /// Whether the shard's read limits let one more GetRecords call run now (always when limits
    /// are off).
    fn admit_read(&self, key: &ShardKey) -> bool {
        let Some(throttles) = &self.throttles else {
            return true;
        };
        let now = Instant::now();
        throttles
            .borrow_mut()
            .entry(key.clone())
            .or_insert_with(|| crate::throttle::ShardThrottle::new(now))
            .admit_read_call(now)
    }

    /// Charges the data bytes a GetRecords call returned against the shard's read limit.
    fn charge_read(&self, key: &ShardKey, read: &LogRead) {
        let Some(throttles) = &self.throttles else {
            return;
        };
        let mut bytes = 0usize;
        read.for_each(&mut |_, _, _, data| bytes += data.len());
        let now = Instant::now();
        if let Some(shard) = throttles.borrow_mut().get_mut(key) {
            shard.charge_read_bytes(bytes, now);
        }
    }

    fn begin_append(&self, key: &ShardKey) {
        self.in_flight
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .appends += 1;
    }

    fn end_append(&self, key: &ShardKey) {
        let mut in_flight = self.in_flight.borrow_mut();
        let entry = in_flight
            .get_mut(key)
            .expect("an append in flight was counted");
        assert!(entry.appends > 0);
        entry.appends -= 1;
        if entry.appends == 0 {
            let entry = in_flight.remove(key).expect("looked up just before");
            for waiter in entry.drained {
                let _ = waiter.send(());
            }
        }
    }

    /// A receiver that resolves once no append accepted for `key` is still in flight; `None`
    /// when none is.
    fn drained(&self, key: &ShardKey) -> Option<oneshot::Receiver<()>> {
        let mut in_flight = self.in_flight.borrow_mut();
        let entry = in_flight.get_mut(key)?;
        let (tx, rx) = oneshot::channel();
        entry.drained.push(tx);
        Some(rx)
    }
}

/// A per-core handle on the engine. Cheap to clone; not `Send` (it lives on its core).
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    local: Rc<CoreState>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("core_id", &self.local.core_id)
            .finish()
    }
}

fn log_dir(data_dir: &Path, log_id: u32) -> PathBuf {
    data_dir.join("log").join(log_id.to_string())
}

/// Log ids that already exist on disk.
fn existing_log_ids(data_dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let dir = data_dir.join("log");
    if !dir.exists() {
        return Ok(ids);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Starts the engine: opens the catalog, spawns one executor per core, recovers that core's
/// logs, then runs `per_core(engine)` on every core (the front ends). Blocks until every
/// executor exits, which in practice is never; returns an error if startup fails anywhere.
/// Service cores, if configured, run nothing; see [`run_with_services`].
pub fn run<F, Fut>(config: EngineConfig, per_core: F) -> Result<(), StartError>
where
    F: Fn(Engine) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let idle: ServiceStarter = Arc::new(|_| Box::pin(std::future::pending::<()>()));
    run_with_services(config, per_core, idle)
}

/// [`run`], and once every shard core has recovered, `config.service_cores` service cores each
/// running `services(context)`.
pub fn run_with_services<F, Fut>(
    config: EngineConfig,
    per_core: F,
    services: ServiceStarter,
) -> Result<(), StartError>
where
    F: Fn(Engine) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if config.cores == 0 {
        return Err(StartError::NoCores);
    }
    for dir in [
        config.data_dir.clone(),
        config.data_dir.join("log"),
        config.data_dir.join("catalog"),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let probe = config.data_dir.join(".write-probe");
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;

    let (store, catalog) =
        CatalogStore::open(&config.data_dir.join("catalog"), config.catalog.clone())?;
    let persister = Persister::start(
        store,
        &config.data_dir.join("checkpoints"),
        config.durability,
    )
    .map_err(|e| StartError::Persist {
        message: error_chain(&e),
    })?;
    let existing = existing_log_ids(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;

    let mut receivers = Vec::with_capacity(config.cores);
    let mut inboxes = Vec::with_capacity(config.cores);
    for _ in 0..config.cores {
        let (tx, rx) = async_channel::bounded(4096);
        inboxes.push(tx);
        receivers.push(rx);
    }
    let shared = Arc::new(Shared {
        cores: config.cores,
        catalog_config: config.catalog.clone(),
        catalog: RwLock::new(catalog),
        catalog_change: futures_util::lock::Mutex::new(()),
        persister,
        service_cores: (0..config.service_cores)
            .map(|id| {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                let cpu = crate::service::service_cpu(config.cores, id, cpus, config.pin_cores);
                Arc::new(ServiceCoreStatus::new(id, config.service_runtime, cpu))
            })
            .collect(),
        inboxes,
    });
    // Data keys for streams under StartStreamEncryption (the stand-in for KMS).
    let keys = crate::keystore::KeyStore::open(config.data_dir.join("keys")).map_err(|source| {
        StartError::DataDir {
            path: config.data_dir.join("keys"),
            source,
        }
    })?;
    let per_core = Arc::new(per_core);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), StartError>>();

    let mut handles = Vec::with_capacity(config.cores);
    for (core_id, inbox) in receivers.into_iter().enumerate() {
        let placement = if config.pin_cores {
            Placement::Fixed(core_id)
        } else {
            Placement::Unbound
        };
        let shared = shared.clone();
        let keys = keys.clone();
        let per_core = per_core.clone();
        let config = config.clone();
        let ready_tx = ready_tx.clone();
        let mut log_ids: Vec<u32> = existing
            .iter()
            .copied()
            .filter(|id| *id as usize % config.cores == core_id)
            .collect();
        let own = u32::try_from(core_id).expect("core count fits u32");
        if !log_ids.contains(&own) {
            log_ids.push(own);
        }
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("sluice-core-{core_id}"))
            .io_memory(config.io_memory_bytes);
        if config.idle_spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(config.idle_spin_us));
        }
        let handle = builder
            .spawn(move || async move {
                let mut logs = HashMap::new();
                for log_id in log_ids {
                    let log_config = LogConfig {
                        dir: log_dir(&config.data_dir, log_id),
                        log_id,
                        segment_bytes: config.segment_bytes,
                        commit_bytes_max: config.commit_bytes_max,
                        durability: config.durability,
                    };
                    match Log::open(log_config).await {
                        Ok(log) => {
                            let catalog_of = shared.clone();
                            log.set_encryption(
                                keys.clone(),
                                Rc::new(move |key: &ShardKey| {
                                    let catalog = catalog_of
                                        .catalog
                                        .read()
                                        .unwrap_or_else(|e| e.into_inner());
                                    let stream = catalog.streams.get(&*key.stream_name)?;
                                    (stream.created_ms == key.stream_created_ms)
                                        .then(|| stream.control.encryption_key_id.clone())
                                        .flatten()
                                }),
                            );
                            logs.insert(log_id, log);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(StartError::Recovery {
                                log_id,
                                message: error_chain(&e),
                            }));
                            return;
                        }
                    }
                }
                let local = Rc::new(CoreState::new(core_id, logs, config.throughput_limits));
                let engine = Engine { shared, local };
                let _ = ready_tx.send(Ok(()));
                drop(ready_tx);
                glommio::spawn_local(serve_inbox(engine.clone(), inbox)).detach();
                glommio::spawn_local(housekeeping(engine.clone())).detach();
                if core_id == 0 {
                    glommio::spawn_local(reshard_loop(engine.clone())).detach();
                }
                per_core(engine).await;
            })
            .map_err(|e| StartError::Executor {
                core: core_id,
                message: e.to_string(),
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..config.cores {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartError::Executor {
                    core: 0,
                    message: "executor exited during startup".into(),
                });
            }
        }
    }
    // Service threads run until the process exits, like the shard cores; nothing joins them.
    let mut service_threads = Vec::with_capacity(shared.service_cores.len());
    for status in &shared.service_cores {
        let thread = crate::service::spawn(
            status.clone(),
            crate::storage::StorageHandle::new(shared.clone()),
            services.clone(),
            config.io_memory_bytes,
        )
        .map_err(|e| StartError::Executor {
            core: config.cores + status.service_core_id,
            message: e.to_string(),
        })?;
        service_threads.push(thread);
    }
    for (core, handle) in handles.into_iter().enumerate() {
        handle.join().map_err(|e| StartError::Executor {
            core,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// Answers messages from other cores. Each message runs as its own task so that appends from
/// many cores join the same group commit.
async fn serve_inbox(engine: Engine, inbox: async_channel::Receiver<CoreMessage>) {
    while let Ok(message) = inbox.recv().await {
        crate::metrics::queue_popped();
        let engine = engine.clone();
        glommio::spawn_local(async move { engine.handle_message(message).await }).detach();
    }
}

/// Periodic work of each core: core 0 reaps deleted streams; every core trims whole segments
/// past retention.
async fn housekeeping(engine: Engine) {
    let mut ticks: u64 = 0;
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        ticks += 1;
        if engine.local.core_id == 0 {
            engine.reap_deleted_streams().await;
        }
        if ticks.is_multiple_of(60) {
            engine.enforce_retention().await;
        }
    }
}

/// How often core 0 looks for reshards whose UPDATING window has passed. The window is the
/// operator's (`--update-delay-ms`, 500 ms by default); this only bounds how long past it a
/// reshard waits.
const RESHARD_TICK: Duration = Duration::from_millis(50);

/// Core 0 completes due reshards (see the module doc).
async fn reshard_loop(engine: Engine) {
    loop {
        glommio::timer::sleep(RESHARD_TICK).await;
        engine.complete_due_reshards().await;
    }
}

/// Records of one write routed to one shard: the target, each record's index in the call and
/// hash key (to route it again if the shard was sealed), and the records themselves.
type RoutedGroup = (ShardTarget, Vec<(usize, u128)>, Vec<AppendRecord>);

/// How long a write whose shard was sealed waits for the reshard to complete before it gives
/// up with InternalFailure, and how often it looks. Completion is one catalog write after the
/// seal, a few milliseconds, and happens only during a reshard, so a short sleep-and-retry is
/// enough; the catalog has no change notifier to wait on.
const SEALED_WAIT_MAX: Duration = Duration::from_secs(10);
const SEALED_RETRY_INTERVAL: Duration = Duration::from_millis(2);

/// A shard resolved for a data-plane call: everything needed without holding the catalog lock.
#[derive(Clone, Debug)]
pub(crate) struct ShardTarget {
    pub(crate) key: OwnedShardKey,
    pub(crate) log_id: u32,
    pub(crate) shard_created_s: u64,
    pub(crate) retention_ms: u64,
    pub(crate) closed_at_position: Option<u64>,
}

impl ShardTarget {
    pub(crate) fn origin(&self) -> ShardOrigin {
        ShardOrigin {
            shard_index: self.key.shard_index,
            created_s: self.shard_created_s,
        }
    }

    pub(crate) fn new(stream: &Stream, shard: &Shard) -> Self {
        Self {
            key: OwnedShardKey {
                stream_name: stream.name.clone(),
                stream_created_ms: stream.created_ms,
                shard_index: shard.index,
            },
            log_id: shard.log_id,
            shard_created_s: shard.created_s,
            retention_ms: u64::from(stream.retention_period_hours) * 3_600_000,
            closed_at_position: shard.closed_at_position,
        }
    }
}

impl Engine {
    /// `GET /health`: the engine's shard and service cores as one JSON object.
    pub fn render_health(&self) -> String {
        let mut out = format!(
            r#"{{"status":"ok","shard_cores":{},"service_cores":["#,
            self.shared.cores
        );
        for (i, status) in self.shared.service_cores.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let cpu = status.cpu.map_or("null".to_owned(), |c| c.to_string());
            out.push_str(&format!(
                r#"{{"id":{},"runtime":"{}","cpu":{cpu},"state":"{}"}}"#,
                status.service_core_id,
                status.runtime.name(),
                status.state()
            ));
        }
        out.push_str("]}");
        out
    }

    /// The service cores' statuses.
    pub fn service_cores(&self) -> &[Arc<ServiceCoreStatus>] {
        &self.shared.service_cores
    }

    /// The narrow storage face on this engine, as a handle any executor may hold.
    pub fn storage(&self) -> crate::storage::StorageHandle {
        crate::storage::StorageHandle::new(self.shared.clone())
    }

    pub fn core_id(&self) -> usize {
        self.local.core_id
    }

    pub fn cores(&self) -> usize {
        self.shared.cores
    }

    fn owner(&self, log_id: u32) -> usize {
        self.shared.owner(log_id)
    }

    fn local_log(&self, log_id: u32) -> Option<&Rc<Log>> {
        self.local.logs.get(&log_id)
    }

    pub(crate) fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.shared.catalog_read()
    }

    /// Applies a catalog change and persists it (on the persistence thread) before returning.
    /// The in-memory catalog is only replaced once the new state is durable; changes are
    /// serialised so each one starts from the state the previous one installed.
    async fn mutate_catalog<T>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, KinesisError>,
    ) -> Result<T, KinesisError> {
        let _serialised = self.shared.catalog_change.lock().await;
        let mut next = self.catalog_read().clone();
        let out = change(&mut next)?;
        let (next, saved) = self.shared.persister.save_catalog(next).await;
        saved.map_err(|e| {
            tracing::error!(error = %e, "Catalog could not be persisted; the change was not applied.");
            KinesisError::internal("The catalog could not be persisted.")
        })?;
        *self
            .shared
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = next;
        Ok(out)
    }

    async fn send(&self, core: usize, message: CoreMessage) -> Result<(), KinesisError> {
        self.shared
            .send(core, message)
            .await
            .map_err(|CoreGone| KinesisError::internal("A shard core is not running."))
    }

    async fn ask<T>(
        &self,
        core: usize,
        request: impl FnOnce(oneshot::Sender<T>) -> CoreMessage,
    ) -> Result<T, KinesisError> {
        self.shared
            .ask(core, request)
            .await
            .map_err(|CoreGone| KinesisError::internal("A shard core is not running."))
    }

    async fn append(
        &self,
        target: &ShardTarget,
        records: Vec<AppendRecord>,
    ) -> Result<Result<LogAppended, AppendFailure>, KinesisError> {
        let owner = self.owner(target.log_id);
        if owner == self.local.core_id {
            Ok(self
                .append_on_owner(target.log_id, target.key.to_key(), records)
                .await)
        } else {
            self.ask(owner, |reply| CoreMessage::Append {
                log_id: target.log_id,
                shard: target.key.clone(),
                records,
                reply,
            })
            .await
        }
    }

    /// Appends on the core that owns `log_id`. The seal check and the in-flight count happen
    /// before the first await, so a seal on this core orders strictly before or after the
    /// append. The append itself runs as a detached task that keeps the count until the log
    /// has answered, even when the caller goes away, so a seal never reports a tip that an
    /// accepted append later moves.
    fn append_on_owner(
        &self,
        log_id: u32,
        key: ShardKey,
        mut records: Vec<AppendRecord>,
    ) -> impl Future<Output = Result<LogAppended, AppendFailure>> + 'static + use<> {
        let requested = records.len();
        // Throughput limits are checked after the seal (a sealed shard takes no tokens) and
        // before the append, on this core, which sees every write to the shard.
        let sealed = self.local.sealed.borrow().contains(&key);
        let admitted = if sealed {
            requested
        } else {
            self.local.admit_writes(&key, &records)
        };
        records.truncate(admitted);
        let started = if sealed {
            Err(AppendFailure::Sealed(records))
        } else if admitted == 0 {
            Err(AppendFailure::Throttled {
                appended: None,
                admitted: 0,
            })
        } else {
            match self.local_log(log_id) {
                None => Err(AppendFailure::Failed(format!(
                    "log {log_id} is not open on core {}",
                    self.local.core_id
                ))),
                Some(log) => {
                    let log = log.clone();
                    let local = self.local.clone();
                    local.begin_append(&key);
                    Ok(glommio::spawn_local(async move {
                        let appended = log.append(&key, records).await;
                        local.end_append(&key);
                        appended
                    })
                    .detach())
                }
            }
        };
        async move {
            match started?.await {
                Some(Ok(appended)) if admitted < requested => Err(AppendFailure::Throttled {
                    appended: Some(appended),
                    admitted,
                }),
                Some(Ok(appended)) => Ok(appended),
                Some(Err(e)) => {
                    tracing::warn!(log_id, error = %e, "Append failed.");
                    Err(AppendFailure::Failed(e.to_string()))
                }
                None => Err(AppendFailure::Failed(
                    "the append task was cancelled".to_owned(),
                )),
            }
        }
    }

    /// Seals `keys` (all owned by this core) and returns their final tips, in order.
    async fn seal_on_owner(&self, keys: Vec<(u32, OwnedShardKey)>) -> Vec<u64> {
        let keys: Vec<(u32, ShardKey)> = keys
            .into_iter()
            .map(|(log_id, key)| (log_id, key.to_key()))
            .collect();
        {
            let mut sealed = self.local.sealed.borrow_mut();
            for (_, key) in &keys {
                sealed.insert(key.clone());
            }
        }
        let mut tips = Vec::with_capacity(keys.len());
        for (log_id, key) in &keys {
            if let Some(drained) = self.local.drained(key) {
                let _ = drained.await;
            }
            tips.push(
                self.local_log(*log_id)
                    .map_or(0, |log| log.tip(key).next_position),
            );
        }
        tips
    }

    async fn locate(&self, target: &ShardTarget, query: Locate) -> Result<Location, KinesisError> {
        let owner = self.owner(target.log_id);
        if owner == self.local.core_id {
            let log = self.local_log(target.log_id).ok_or_else(|| {
                KinesisError::internal("The shard's log is not open on its core.")
            })?;
            Ok(locate_local(log, &target.key.to_key(), query))
        } else {
            self.ask(owner, |reply| CoreMessage::Locate {
                log_id: target.log_id,
                shard: target.key.clone(),
                query,
                reply,
            })
            .await
        }
    }

    /// The ProvisionedThroughputExceeded answer of a GetRecords call the shard's read limits
    /// refused; counted in the read metrics here, once per refused call.
    fn read_throttled(&self, target: &ShardTarget) -> KinesisError {
        crate::metrics::record_read_throttled(&target.key.stream_name, target.key.shard_index);
        KinesisError::new(
            sluice_core::error::ErrorKind::ProvisionedThroughputExceeded,
            format!(
                "Rate exceeded for shard {} in stream {} under account {}.",
                format_shard_id(target.key.shard_index),
                target.key.stream_name,
                self.shared.catalog_config.account_id
            ),
        )
    }

    async fn handle_message(&self, message: CoreMessage) {
        match message {
            CoreMessage::Append {
                log_id,
                shard,
                records,
                reply,
            } => {
                let result = self.append_on_owner(log_id, shard.to_key(), records).await;
                let _ = reply.send(result);
            }
            CoreMessage::Seal { shards, reply } => {
                let tips = self.seal_on_owner(shards).await;
                let _ = reply.send(tips);
            }
            CoreMessage::Locate {
                log_id,
                shard,
                query,
                reply,
            } => {
                let location = match self.local_log(log_id) {
                    Some(log) => locate_local(log, &shard.to_key(), query),
                    None => Location { position: 0 },
                };
                let _ = reply.send(location);
            }
            CoreMessage::ReadFrom {
                log_id,
                shard,
                origin,
                request,
                mut reply,
            } => {
                let Some(log) = self.local_log(log_id).cloned() else {
                    let _ = reply.send(Err(ReadRefused::LogNotOpen {
                        log_id,
                        core_id: self.local.core_id,
                    }));
                    return;
                };
                let key = shard.to_key();
                // A reader on another core that gave up (its subscription ended) cancels the
                // reply; stop waiting for it then rather than at the deadline.
                let read = {
                    let cancelled = async {
                        reply.cancellation().await;
                        None
                    };
                    futures_lite::future::or(
                        async { Some(self.read_local(&log, &key, &request).await) },
                        cancelled,
                    )
                    .await
                };
                let Some(read) = read else { return };
                let _ = reply
                    .send(read.map(|(read, position, tip)| batch_of(&read, origin, position, tip)));
            }
            CoreMessage::DropShards { keys } => {
                let mut by_log: HashMap<u32, Vec<ShardKey>> = HashMap::new();
                for (log_id, key) in keys {
                    by_log.entry(log_id).or_default().push(key.to_key());
                }
                for (log_id, keys) in by_log {
                    if let Some(log) = self.local_log(log_id) {
                        log.drop_shards(&keys).await;
                    }
                }
            }
        }
    }

    async fn reap_deleted_streams(&self) {
        let now = now_ms();
        let due = {
            let catalog = self.catalog_read();
            catalog.streams.values().any(|s| {
                matches!(s.lifecycle, sluice_core::catalog::Lifecycle::Deleting { gone_at_ms } if gone_at_ms <= now)
            })
        };
        if !due {
            return;
        }
        let removed: Vec<RemovedStream> = match self.mutate_catalog(|c| Ok(c.reap(now))).await {
            Ok(removed) => removed,
            Err(_) => return,
        };
        let mut per_core: Vec<Vec<(u32, OwnedShardKey)>> = vec![Vec::new(); self.shared.cores];
        for stream in removed {
            for shard in stream.shards {
                per_core[self.owner(shard.log_id)].push((
                    shard.log_id,
                    OwnedShardKey {
                        stream_name: stream.name.clone(),
                        stream_created_ms: stream.created_ms,
                        shard_index: shard.index,
                    },
                ));
            }
        }
        for (core, keys) in per_core.into_iter().enumerate() {
            if !keys.is_empty() {
                let _ = self.send(core, CoreMessage::DropShards { keys }).await;
            }
        }
    }

    async fn enforce_retention(&self) {
        let now = now_ms();
        let retention: HashMap<(String, u64), u64> = {
            let catalog = self.catalog_read();
            catalog
                .streams
                .values()
                .map(|s| {
                    (
                        (s.name.clone(), s.created_ms),
                        u64::from(s.retention_period_hours) * 3_600_000,
                    )
                })
                .collect()
        };
        let lookup = |key: &ShardKey| {
            retention
                .get(&(key.stream_name.to_string(), key.stream_created_ms))
                .copied()
        };
        for (log_id, log) in &self.local.logs {
            match log.enforce_retention(&lookup, now).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(log_id, removed, "Trimmed segments past retention."),
                Err(e) => tracing::warn!(log_id, error = %e, "Retention pass failed."),
            }
        }
    }

    /// Chooses the log for a new shard: the core with the fewest open shards, so ownership
    /// stays balanced.
    fn placement(catalog: &Catalog, cores: usize) -> Vec<u32> {
        let mut load = vec![0u32; cores];
        for stream in catalog.streams.values() {
            for shard in &stream.shards {
                if shard.closed_at_position.is_none() {
                    load[shard.log_id as usize % cores] += 1;
                }
            }
        }
        load
    }

    /// Completes every reshard whose UPDATING window has passed (core 0's `reshard_loop`).
    async fn complete_due_reshards(&self) {
        let due = self.catalog_read().due_reshards(now_ms());
        for reshard in due {
            if let Err(error) = self.complete_reshard(&reshard).await {
                tracing::warn!(stream_name = %reshard.stream_name, %error, "Reshard not completed; will retry.");
            }
        }
    }

    /// Seals the shards `due` closes on their owning cores, then completes the reshard in the
    /// catalog at their tips, placing each new shard on the core with the fewest open shards.
    async fn complete_reshard(&self, due: &DueReshard) -> Result<(), KinesisError> {
        let cores = self.shared.cores;
        let mut per_core: Vec<Vec<(u32, OwnedShardKey)>> = vec![Vec::new(); cores];
        for closing in &due.closing {
            per_core[self.owner(closing.log_id)].push((
                closing.log_id,
                OwnedShardKey {
                    stream_name: due.stream_name.clone(),
                    stream_created_ms: due.stream_created_ms,
                    shard_index: closing.shard_index,
                },
            ));
        }
        let seals = per_core
            .into_iter()
            .enumerate()
            .filter(|(_, shards)| !shards.is_empty())
            .map(|(core, shards)| async move {
                let indexes: Vec<u32> = shards.iter().map(|(_, key)| key.shard_index).collect();
                let tips = if core == self.local.core_id {
                    self.seal_on_owner(shards).await
                } else {
                    self.ask(core, |reply| CoreMessage::Seal { shards, reply })
                        .await?
                };
                Ok::<_, KinesisError>(indexes.into_iter().zip(tips).collect::<Vec<_>>())
            });
        let mut tips: HashMap<u32, u64> = HashMap::new();
        for sealed in join_all(seals).await {
            tips.extend(sealed?);
        }
        let now = now_ms();
        let completed = self
            .mutate_catalog(|catalog| {
                let mut load = Engine::placement(catalog, cores);
                for closing in &due.closing {
                    let core = self.owner(closing.log_id);
                    load[core] = load[core].saturating_sub(1);
                }
                Ok(catalog.complete_reshard(
                    &due.stream_name,
                    due.stream_created_ms,
                    now,
                    &|index| {
                        *tips
                            .get(&index)
                            .expect("due_reshards names every open shard the reshard closes")
                    },
                    &mut |_shard_index| {
                        let (core, _) = load
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .expect("at least one core");
                        load[core] += 1;
                        u32::try_from(core).expect("core count fits u32")
                    },
                ))
            })
            .await?;
        if let Some(completed) = completed {
            tracing::info!(
                stream_name = %due.stream_name,
                closed = completed.closed.len(),
                opened = completed.opened.len(),
                "Reshard completed."
            );
        }
        Ok(())
    }

    /// Routes and appends `records` (already size-checked), routing again the ones whose shard
    /// a reshard sealed meanwhile. Results are in input order.
    async fn append_entries(
        &self,
        stream_name: &str,
        records: Vec<PutRecordsEntry>,
    ) -> Result<Vec<Result<PutRecordsResultEntry, KinesisError>>, KinesisError> {
        let count = records.len();
        let mut results: Vec<Option<Result<PutRecordsResultEntry, KinesisError>>> =
            vec![None; count];
        let mut pending: Vec<(usize, u128, AppendRecord)> = records
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let hash_key = entry
                    .explicit_hash_key
                    .unwrap_or_else(|| partition_key_hash(&entry.partition_key));
                (
                    i,
                    hash_key,
                    AppendRecord {
                        partition_key: entry.partition_key,
                        data: entry.data,
                    },
                )
            })
            .collect();
        let deadline = Instant::now() + SEALED_WAIT_MAX;
        while !pending.is_empty() {
            // Route every record to its shard under the catalog lock, then release it before
            // any I/O.
            let mut groups: Vec<RoutedGroup> = Vec::new();
            {
                let catalog = self.catalog_read();
                let stream = match catalog.stream_for_write(stream_name, now_ms()) {
                    Ok(stream) => stream,
                    // The stream went away while records waited for a reshard: those records
                    // fail, the ones already stored keep their results.
                    Err(error) if results.iter().any(Option::is_some) => {
                        for (i, _, _) in pending.drain(..) {
                            results[i] = Some(Err(error.clone()));
                        }
                        break;
                    }
                    Err(error) => return Err(error),
                };
                let mut group_of_shard: HashMap<u32, usize> = HashMap::new();
                for (i, hash_key, record) in pending.drain(..) {
                    let shard = stream.shard_for_hash_key(hash_key);
                    let g = *group_of_shard.entry(shard.index).or_insert_with(|| {
                        groups.push((self.resolve_target(stream, shard), Vec::new(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push((i, hash_key));
                    groups[g].2.push(record);
                }
            }
            let appends = groups
                .into_iter()
                .map(|(target, indexes, records)| async move {
                    let outcome = self.append(&target, records).await;
                    (target, indexes, outcome)
                });
            for (target, indexes, outcome) in join_all(appends).await {
                match outcome {
                    Ok(Ok(LogAppended {
                        first_position,
                        arrival_ms,
                    })) => {
                        for (k, (i, _)) in indexes.into_iter().enumerate() {
                            results[i] = Some(Ok(PutRecordsResultEntry {
                                shard_id: format_shard_id(target.key.shard_index),
                                sequence_number: target.origin().sequence_number(RecordStamp {
                                    position: first_position + k as u64,
                                    arrival_ms,
                                }),
                            }));
                        }
                    }
                    Ok(Err(AppendFailure::Sealed(records))) => {
                        pending.extend(
                            indexes
                                .into_iter()
                                .zip(records)
                                .map(|((i, hash_key), record)| (i, hash_key, record)),
                        );
                    }
                    Ok(Err(AppendFailure::Throttled { appended, admitted })) => {
                        let shard_id = format_shard_id(target.key.shard_index);
                        for (k, (i, _)) in indexes.into_iter().enumerate() {
                            results[i] = Some(match appended {
                                Some(LogAppended {
                                    first_position,
                                    arrival_ms,
                                }) if k < admitted => Ok(PutRecordsResultEntry {
                                    shard_id: shard_id.clone(),
                                    sequence_number: target.origin().sequence_number(RecordStamp {
                                        position: first_position + k as u64,
                                        arrival_ms,
                                    }),
                                }),
                                _ => Err(KinesisError::new(
                                    sluice_core::error::ErrorKind::ProvisionedThroughputExceeded,
                                    format!(
                                        "Rate exceeded for shard {shard_id} in stream {stream_name} under account {}.",
                                        self.shared.catalog_config.account_id
                                    ),
                                )),
                            });
                        }
                    }
                    Ok(Err(AppendFailure::Failed(reason))) => {
                        tracing::debug!(stream_name, %reason, "Append failed on the shard's core.");
                        for (i, _) in indexes {
                            results[i] =
                                Some(Err(KinesisError::internal("Internal service failure.")));
                        }
                    }
                    Err(_) => {
                        for (i, _) in indexes {
                            results[i] =
                                Some(Err(KinesisError::internal("Internal service failure.")));
                        }
                    }
                }
            }
            if !pending.is_empty() {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        stream_name,
                        records = pending.len(),
                        "Writes to sealed shards gave up waiting for the reshard."
                    );
                    for (i, _, _) in pending.drain(..) {
                        results[i] = Some(Err(KinesisError::internal("Internal service failure.")));
                    }
                    break;
                }
                // The reshard that sealed these shards completes with one catalog write.
                glommio::timer::sleep(SEALED_RETRY_INTERVAL).await;
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(KinesisError::internal("Internal service failure."))))
            .collect())
    }

    fn resolve_target(&self, stream: &Stream, shard: &Shard) -> ShardTarget {
        ShardTarget::new(stream, shard)
    }
}

/// A shard opened for reading, and the position the next read starts at. Reads advance it.
/// Holds no lock and no reference to the log, so it may live as long as a subscription.
#[derive(Clone, Debug)]
pub struct ShardCursor {
    target: ShardTarget,
    position: u64,
}

impl ShardCursor {
    pub fn shard_index(&self) -> u32 {
        self.target.key.shard_index
    }

    /// The shard's creation time in seconds: the first field of its sequence numbers.
    pub fn shard_created_s(&self) -> u64 {
        self.target.shard_created_s
    }

    /// Where the next read starts.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the cursor, e.g. back to just after the last record a caller actually delivered
    /// when it sent only a prefix of a read.
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
    }

    /// The core that owns the shard (`log_id % cores`).
    pub fn core_id(&self, cores: usize) -> usize {
        self.target.log_id as usize % cores
    }
}

/// The result of [`Engine::read_cursor`] / [`Engine::read_wait`].
pub struct ShardRead {
    pub records: EngineRecords,
    /// Where to continue; `None` once a closed shard has been read to its end.
    pub next_position: Option<u64>,
    pub millis_behind_latest: u64,
}

impl std::fmt::Debug for ShardRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRead")
            .field("records", &self.records.len())
            .field("next_position", &self.next_position)
            .field("millis_behind_latest", &self.millis_behind_latest)
            .finish()
    }
}

impl Engine {
    /// Every shard of `stream_name` (open and closed, in index order) with its owning core.
    /// ResourceNotFound, with the HTTP API's message, if the stream does not exist.
    pub fn shard_map(&self, stream_name: &str) -> Result<Vec<ShardPlacement>, KinesisError> {
        let catalog = self.catalog_read();
        let stream = catalog.live_stream(stream_name, now_ms()).ok_or_else(|| {
            KinesisError::stream_not_found(stream_name, &catalog.config.account_id)
        })?;
        Ok(stream
            .shards
            .iter()
            .map(|shard| ShardPlacement {
                shard_index: shard.index,
                hash_range: shard.hash_range,
                core_id: self.owner(shard.log_id),
                open: shard.closed_at_position.is_none(),
            })
            .collect())
    }

    /// Opens `shard_index` of `stream_name` at `start`. Validation (stream and shard exist and
    /// are readable, a sequence number belongs to this shard, a timestamp is not in the future)
    /// and the resolution of the start are GetShardIterator's, errors and messages included.
    pub async fn open_cursor(
        &self,
        stream_name: &str,
        shard_index: u32,
        start: ReadStart,
    ) -> Result<ShardCursor, KinesisError> {
        let now = now_ms();
        let (target, point) =
            resolve_read_start(&self.catalog_read(), stream_name, shard_index, start, now)?;
        let position = self.resolve_starting_point(&target, point, now).await?;
        Ok(ShardCursor { target, position })
    }

    /// Reads up to `limit` records (and about `bytes_max` data bytes, at least one record) from
    /// the cursor's position and advances the cursor past them. Records past retention are
    /// skipped as GetRecords skips them. Runs on the owning core (forwarded if need be).
    pub async fn read_cursor(
        &self,
        cursor: &mut ShardCursor,
        limit: usize,
        bytes_max: usize,
    ) -> Result<ShardRead, KinesisError> {
        self.read_cursor_inner(cursor, limit, bytes_max, None).await
    }

    /// Like [`Engine::read_cursor`], but when no record exists at the cursor's position yet it
    /// waits, on the owning core, for the commit that stores one, or until `timeout` passes
    /// (then the read is empty). A closed shard read to its end answers at once with
    /// `next_position: None`.
    pub async fn read_wait(
        &self,
        cursor: &mut ShardCursor,
        limit: usize,
        bytes_max: usize,
        timeout: Duration,
    ) -> Result<ShardRead, KinesisError> {
        self.read_cursor_inner(cursor, limit, bytes_max, Some(Instant::now() + timeout))
            .await
    }

    /// [`Engine::open_cursor`] then [`Engine::read_cursor`]: one read from a start position.
    pub async fn read_from(
        &self,
        stream_name: &str,
        shard_index: u32,
        start: ReadStart,
        limit: usize,
        bytes_max: usize,
    ) -> Result<(ShardCursor, ShardRead), KinesisError> {
        let mut cursor = self.open_cursor(stream_name, shard_index, start).await?;
        let read = self.read_cursor(&mut cursor, limit, bytes_max).await?;
        Ok((cursor, read))
    }

    /// Re-reads the cursor's shard from the catalog: the stream may have been deleted (then
    /// the shard "does not exist", as GetRecords says) or the shard closed by a reshard.
    fn refresh_target(&self, target: &mut ShardTarget, now: u64) -> Result<(), KinesisError> {
        let catalog = self.catalog_read();
        let not_found = || {
            KinesisError::shard_not_found(
                &format_shard_id(target.key.shard_index),
                &target.key.stream_name,
                &catalog.config.account_id,
            )
        };
        let stream = catalog
            .live_stream(&target.key.stream_name, now)
            .filter(|s| s.created_ms == target.key.stream_created_ms)
            .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating))
            .ok_or_else(not_found)?;
        let shard = stream.shard(target.key.shard_index).ok_or_else(not_found)?;
        *target = ShardTarget::new(stream, shard);
        Ok(())
    }

    async fn read_cursor_inner(
        &self,
        cursor: &mut ShardCursor,
        limit: usize,
        bytes_max: usize,
        wait_until: Option<Instant>,
    ) -> Result<ShardRead, KinesisError> {
        let now = now_ms();
        self.refresh_target(&mut cursor.target, now)?;
        let target = &cursor.target;
        if target
            .closed_at_position
            .is_some_and(|end| cursor.position >= end)
        {
            return Ok(ShardRead {
                records: EngineRecords::Remote(ReadBatch::new(target.origin(), 0, 0)),
                next_position: None,
                millis_behind_latest: 0,
            });
        }
        let request = OwnerRead {
            start: StartingPoint::At(cursor.position),
            charge_read_limits: false,
            limit: limit.max(1),
            bytes_max,
            retain_after_ms: now.saturating_sub(target.retention_ms),
            // A closed shard gets no more records: waiting for them would only burn the timeout.
            wait_until: wait_until.filter(|_| target.closed_at_position.is_none()),
        };
        let read = self.read_on_owner(target, request).await?;
        cursor.position = read.next_position;
        let shard_ended = target
            .closed_at_position
            .is_some_and(|end| read.next_position >= end);
        Ok(ShardRead {
            next_position: (!shard_ended).then_some(read.next_position),
            millis_behind_latest: read.millis_behind_latest,
            records: read.records,
        })
    }

    /// Runs an [`OwnerRead`] on the shard's core, in place when that is this core (the records
    /// stay zero-copy views of its read buffers) or in one round trip to the owner.
    pub(crate) async fn read_on_owner(
        &self,
        target: &ShardTarget,
        request: OwnerRead,
    ) -> Result<OwnerReadOutput, KinesisError> {
        let owner = self.owner(target.log_id);
        let refused = |refused: ReadRefused| match refused {
            ReadRefused::Throttled => self.read_throttled(target),
            other => {
                tracing::warn!(log_id = target.log_id, reason = %other, "Read failed.");
                KinesisError::internal("The records could not be read.")
            }
        };
        let (records, start_position, tip) = if owner == self.local.core_id {
            let log = self
                .local_log(target.log_id)
                .ok_or_else(|| {
                    refused(ReadRefused::LogNotOpen {
                        log_id: target.log_id,
                        core_id: owner,
                    })
                })?
                .clone();
            let (read, position, tip) = self
                .read_local(&log, &target.key.to_key(), &request)
                .await
                .map_err(refused)?;
            (
                EngineRecords::Local {
                    read,
                    origin: target.origin(),
                },
                position,
                tip,
            )
        } else {
            let batch = self
                .ask(owner, |reply| CoreMessage::ReadFrom {
                    log_id: target.log_id,
                    shard: target.key.clone(),
                    origin: target.origin(),
                    request,
                    reply,
                })
                .await?
                .map_err(refused)?;
            let position = batch.start_position;
            let tip = ShardTip {
                next_position: batch.tip_position,
                last_arrival_ms: batch.tip_arrival_ms,
            };
            (EngineRecords::Remote(batch), position, tip)
        };
        let next_position = records.last_position().map_or(start_position, |p| p + 1);
        let millis_behind_latest = if next_position >= tip.next_position {
            0
        } else {
            match (records.last_arrival_ms(), tip.last_arrival_ms) {
                (Some(last), Some(tip_ms)) => tip_ms.saturating_sub(last),
                _ => 0,
            }
        };
        Ok(OwnerReadOutput {
            records,
            next_position,
            millis_behind_latest,
        })
    }

    /// On the owning core: resolves the start, clamps it to the retained records, checks the
    /// read limits when asked, waits for a record when asked, reads. Answers the records, the
    /// position the read started at and the shard's tip.
    async fn read_local(
        &self,
        log: &Rc<Log>,
        key: &ShardKey,
        request: &OwnerRead,
    ) -> Result<(LogRead, u64, ShardTip), ReadRefused> {
        if request.charge_read_limits && !self.local.admit_read(key) {
            return Err(ReadRefused::Throttled);
        }
        let first_retained = log.first_retained_position(key, request.retain_after_ms);
        let position = match request.start {
            StartingPoint::TrimHorizon => first_retained,
            StartingPoint::Latest => log.tip(key).next_position,
            StartingPoint::At(p) => p,
            StartingPoint::After(p) => p.saturating_add(1),
            StartingPoint::Timestamp(ms) => {
                log.position_at_timestamp(key, ms.max(request.retain_after_ms))
            }
        }
        .max(first_retained);
        if let Some(deadline) = request.wait_until {
            let wait = log.wait_for_records(key, position);
            let timer = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
            futures_lite::future::or(wait, timer).await;
        }
        let read = log
            .read(key, position, request.limit, request.bytes_max)
            .await
            .map_err(|e| ReadRefused::Failed {
                reason: e.to_string(),
            })?;
        if request.charge_read_limits {
            self.local.charge_read(key, &read);
        }
        Ok((read, position, log.tip(key)))
    }

    /// Turns a validated starting point into a position, as GetShardIterator does.
    async fn resolve_starting_point(
        &self,
        target: &ShardTarget,
        start: StartingPoint,
        now: u64,
    ) -> Result<u64, KinesisError> {
        let retain_after = now.saturating_sub(target.retention_ms);
        Ok(match start {
            StartingPoint::TrimHorizon => {
                self.locate(target, Locate::TrimHorizon(retain_after))
                    .await?
                    .position
            }
            StartingPoint::Latest => self.locate(target, Locate::Tip).await?.position,
            StartingPoint::At(p) => p,
            StartingPoint::After(p) => p.saturating_add(1),
            StartingPoint::Timestamp(ms) => {
                self.locate(target, Locate::Timestamp(ms.max(retain_after)))
                    .await?
                    .position
            }
        })
    }
}

fn locate_local(log: &Log, key: &ShardKey, query: Locate) -> Location {
    let position = match query {
        Locate::TrimHorizon(retain_after_ms) => log.first_retained_position(key, retain_after_ms),
        Locate::Timestamp(ms) => log.position_at_timestamp(key, ms),
        Locate::Tip => log.tip(key).next_position,
    };
    Location { position }
}

/// Resolves where a read of `shard_index` of `stream_name` starts, with GetShardIterator's
/// validation (stream and shard exist and are readable, a sequence number belongs to this
/// shard, a timestamp is not in the future), errors and messages included.
pub(crate) fn resolve_read_start(
    catalog: &Catalog,
    stream_name: &str,
    shard_index: u32,
    start: ReadStart,
    now: u64,
) -> Result<(ShardTarget, StartingPoint), KinesisError> {
    let (iterator_type, starting_sequence_number, timestamp_ms) = match start {
        ReadStart::TrimHorizon | ReadStart::AtPosition(_) => {
            (ShardIteratorType::TrimHorizon, None, None)
        }
        ReadStart::Latest => (ShardIteratorType::Latest, None, None),
        ReadStart::AtTimestamp { timestamp_ms } => {
            (ShardIteratorType::AtTimestamp, None, Some(timestamp_ms))
        }
        ReadStart::AtSequenceNumber(s) => (
            ShardIteratorType::AtSequenceNumber,
            Some(s.to_string()),
            None,
        ),
        ReadStart::AfterSequenceNumber(s) => (
            ShardIteratorType::AfterSequenceNumber,
            Some(s.to_string()),
            None,
        ),
    };
    let input = GetShardIteratorInput {
        stream_name: stream_name.to_owned(),
        shard_id: format_shard_id(shard_index),
        shard_iterator_type: iterator_type,
        starting_sequence_number,
        timestamp_ms,
    };
    let (stream, shard, point) = catalog.shard_iterator_start(&input, now)?;
    let point = match start {
        ReadStart::AtPosition(position) => StartingPoint::At(position),
        _ => point,
    };
    Ok((ShardTarget::new(stream, shard), point))
}

/// The record size limit a write is checked against: the stream's, or the default one when the
/// stream does not exist, so that an oversized record is a ValidationException whatever the
/// stream, as the model's length constraint always was.
fn max_record_bytes(stream: Option<&&Stream>) -> usize {
    stream.map_or(sluice_core::limits::RECORD_BYTES_MAX, |s| {
        s.max_record_bytes()
    })
}

/// PutRecord's SequenceNumberForOrdering must be a sequence number of this stream: ours, naming
/// one of its shards as created. Any later record of the shard gets a greater number anyway, so
/// nothing else is needed to honour the ordering.
fn check_sequence_number_for_ordering(
    stream: &Stream,
    text: &str,
    account_id: &str,
    now_ms: u64,
) -> Result<(), KinesisError> {
    // AWS takes any well-formed sequence number (either layout version, any shard, even one of
    // an earlier stream of the same name) whose shard creation time is not in the future: our
    // positions only grow, so every later record already orders after it.
    let well_formed = SequenceNumber::parse_any_version(text)
        .is_ok_and(|s| s.shard_created_s.saturating_mul(1000) <= now_ms);
    if well_formed {
        Ok(())
    } else {
        Err(KinesisError::invalid_argument(format!(
            "ExclusiveMinimumSequenceNumber {text} used in PutRecord on stream {} under account {account_id} is invalid.",
            stream.name
        )))
    }
}

/// The records of one read: zero-copy views into the owning core's read buffers when the
/// shard is local, or one copied buffer when it came from another core.
pub enum EngineRecords {
    Local { read: LogRead, origin: ShardOrigin },
    Remote(ReadBatch),
}

impl RecordBatch for EngineRecords {
    fn len(&self) -> usize {
        match self {
            Self::Local { read, .. } => read.len(),
            Self::Remote(batch) => batch.len(),
        }
    }

    fn for_each_record(&self, f: &mut dyn FnMut(RecordView<'_>)) {
        match self {
            Self::Local { read, origin } => {
                read.for_each(&mut |position, arrival_ms, partition_key, data| {
                    f(RecordView {
                        sequence_number: origin.sequence_number(RecordStamp {
                            position,
                            arrival_ms,
                        }),
                        approximate_arrival_timestamp_ms: arrival_ms,
                        partition_key,
                        data,
                    })
                });
            }
            Self::Remote(batch) => batch.for_each_record(f),
        }
    }
}

impl EngineRecords {
    fn last_position(&self) -> Option<u64> {
        match self {
            Self::Local { read, .. } => read.last_position(),
            Self::Remote(batch) => batch.last_position(),
        }
    }

    fn last_arrival_ms(&self) -> Option<u64> {
        match self {
            Self::Local { .. } => {
                let mut last = None;
                self.for_each_record(&mut |r| last = Some(r.approximate_arrival_timestamp_ms));
                last
            }
            Self::Remote(batch) => batch.last_arrival_ms(),
        }
    }
}

/// The outcome of [`Engine::read_on_owner`].
pub(crate) struct OwnerReadOutput {
    pub(crate) records: EngineRecords,
    /// Just past the last record read, or the start when none was.
    pub(crate) next_position: u64,
    pub(crate) millis_behind_latest: u64,
}

impl KinesisApi for Engine {
    type Records = EngineRecords;

    fn region(&self) -> &str {
        &self.shared.catalog_config.region
    }

    fn account_id(&self) -> &str {
        &self.shared.catalog_config.account_id
    }

    async fn create_stream(&self, input: CreateStreamInput) -> Result<(), KinesisError> {
        let cores = self.shared.cores;
        self.mutate_catalog(|catalog| {
            let mut load = Engine::placement(catalog, cores);
            catalog.create_stream(input, now_ms(), &mut |_shard_index| {
                let (core, _) = load
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .expect("at least one core");
                load[core] += 1;
                u32::try_from(core).expect("core count fits u32")
            })
        })
        .await
    }

    async fn delete_stream(&self, input: DeleteStreamInput) -> Result<(), KinesisError> {
        self.mutate_catalog(|catalog| catalog.delete_stream(input, now_ms()))
            .await
    }

    async fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError> {
        self.catalog_read().describe_stream(input, now_ms())
    }

    async fn describe_stream_summary(
        &self,
        stream_name: String,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        self.catalog_read()
            .describe_stream_summary(&stream_name, now_ms())
    }

    async fn list_streams(
        &self,
        input: ListStreamsInput,
    ) -> Result<ListStreamsOutput, KinesisError> {
        self.catalog_read().list_streams(input, now_ms())
    }

    async fn list_shards(&self, input: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
        self.catalog_read().list_shards(input, now_ms())
    }

    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        let encryption_type = {
            let catalog = self.catalog_read();
            let stream = catalog.stream_for_write(&input.stream_name, now_ms());
            check_record_sizes(
                max_record_bytes(stream.as_ref().ok()),
                &input.records,
                false,
            )?;
            stream?.control.encryption_type()
        };
        let sizes = crate::metrics::entry_sizes(&input.records);
        let records = self
            .append_entries(&input.stream_name, input.records)
            .await?;
        crate::metrics::record_writes(
            &input.stream_name,
            crate::metrics::WriteCall::PutRecords,
            &sizes,
            &records,
        );
        Ok(PutRecordsOutput {
            encryption_type,
            records,
        })
    }

    async fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> Result<String, KinesisError> {
        let now = now_ms();
        let (target, start) = {
            let catalog = self.catalog_read();
            let (stream, shard, start) = catalog.shard_iterator_start(&input, now)?;
            (self.resolve_target(stream, shard), start)
        };
        let position = self.resolve_starting_point(&target, start, now).await?;
        let catalog = self.catalog_read();
        let stream = catalog
            .streams
            .get(&target.key.stream_name)
            .filter(|s| s.created_ms == target.key.stream_created_ms)
            .ok_or_else(|| {
                KinesisError::stream_not_found(&target.key.stream_name, &catalog.config.account_id)
            })?;
        let shard = stream.shard(target.key.shard_index).ok_or_else(|| {
            KinesisError::shard_not_found(
                &format_shard_id(target.key.shard_index),
                &stream.name,
                &catalog.config.account_id,
            )
        })?;
        Ok(catalog.shard_iterator(stream, shard, position, now))
    }

    async fn get_records(
        &self,
        input: GetRecordsInput,
    ) -> Result<GetRecordsOutput<EngineRecords>, KinesisError> {
        let now = now_ms();
        let (target, iterator_position) = {
            let catalog = self.catalog_read();
            let (stream, shard, iterator) =
                catalog.resolve_shard_iterator(&input.shard_iterator, now)?;
            (self.resolve_target(stream, shard), iterator.position)
        };
        let limit = input
            .limit
            .unwrap_or(sluice_core::limits::GET_RECORDS_LIMIT_MAX) as usize;
        let request = OwnerRead {
            start: StartingPoint::At(iterator_position),
            charge_read_limits: true,
            limit,
            bytes_max: GET_RECORDS_BYTES_MAX,
            retain_after_ms: now.saturating_sub(target.retention_ms),
            wait_until: None,
        };
        let OwnerReadOutput {
            records,
            next_position,
            millis_behind_latest,
        } = self.read_on_owner(&target, request).await?;
        let shard_ended = target
            .closed_at_position
            .is_some_and(|end| next_position >= end);
        let mut child_shards = Vec::new();
        let next_shard_iterator = if shard_ended {
            let catalog = self.catalog_read();
            if let Some(stream) = catalog
                .streams
                .get(&target.key.stream_name)
                .filter(|s| s.created_ms == target.key.stream_created_ms)
            {
                child_shards = stream.child_shards(target.key.shard_index);
            }
            None
        } else {
            let catalog = self.catalog_read();
            let stream = catalog
                .streams
                .get(&target.key.stream_name)
                .filter(|s| s.created_ms == target.key.stream_created_ms);
            match stream.and_then(|s| s.shard(target.key.shard_index).map(|sh| (s, sh))) {
                Some((stream, shard)) => {
                    Some(catalog.shard_iterator(stream, shard, next_position, now))
                }
                None => {
                    return Err(KinesisError::shard_not_found(
                        &format_shard_id(target.key.shard_index),
                        &target.key.stream_name,
                        &catalog.config.account_id,
                    ));
                }
            }
        };
        crate::metrics::record_get_records(
            &target.key.stream_name,
            target.key.shard_index,
            &records,
            now,
        );
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator,
            millis_behind_latest,
            child_shards,
        })
    }

    async fn add_tags_to_stream(
        &self,
        stream_name: String,
        tags: Vec<Tag>,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.add_tags_to_stream(&stream_name, tags, now_ms()))
            .await
    }

    async fn remove_tags_from_stream(
        &self,
        stream_name: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.remove_tags_from_stream(&stream_name, tag_keys, now_ms()))
            .await
    }

    async fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        self.catalog_read().list_tags_for_stream(input, now_ms())
    }

    async fn increase_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| {
            c.increase_stream_retention_period(&stream_name, retention_period_hours, now_ms())
        })
        .await
    }

    async fn decrease_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| {
            c.decrease_stream_retention_period(&stream_name, retention_period_hours, now_ms())
        })
        .await
    }

    async fn put_record(&self, input: PutRecordInput) -> Result<PutRecordOutput, KinesisError> {
        let records = vec![input.record];
        let encryption_type = {
            let catalog = self.catalog_read();
            let stream = catalog.stream_for_write(&input.stream_name, now_ms());
            check_record_sizes(max_record_bytes(stream.as_ref().ok()), &records, true)?;
            let stream = stream?;
            if let Some(ordering) = &input.sequence_number_for_ordering {
                check_sequence_number_for_ordering(
                    stream,
                    ordering,
                    &catalog.config.account_id,
                    now_ms(),
                )?;
            }
            stream.control.encryption_type()
        };
        let sizes = crate::metrics::entry_sizes(&records);
        let results = self.append_entries(&input.stream_name, records).await?;
        crate::metrics::record_writes(
            &input.stream_name,
            crate::metrics::WriteCall::PutRecord,
            &sizes,
            &results,
        );
        let entry = results
            .into_iter()
            .next()
            .expect("one record in, one result out")?;
        Ok(PutRecordOutput {
            shard_id: entry.shard_id,
            sequence_number: entry.sequence_number,
            encryption_type,
        })
    }

    async fn split_shard(&self, input: SplitShardInput) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.split_shard(input, now_ms()))
            .await
    }

    async fn merge_shards(&self, input: MergeShardsInput) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.merge_shards(input, now_ms()))
            .await
    }

    async fn update_shard_count(
        &self,
        input: UpdateShardCountInput,
    ) -> Result<UpdateShardCountOutput, KinesisError> {
        self.mutate_catalog(|c| c.update_shard_count(input, now_ms()))
            .await
    }

    async fn update_stream_mode(&self, input: UpdateStreamModeInput) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.update_stream_mode(input, now_ms()))
            .await
    }

    async fn describe_limits(&self) -> Result<DescribeLimitsOutput, KinesisError> {
        Ok(self.catalog_read().describe_limits(now_ms()))
    }

    async fn enable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.mutate_catalog(|c| {
            c.enable_enhanced_monitoring(&stream_name, &shard_level_metrics, now_ms())
        })
        .await
    }

    async fn disable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.mutate_catalog(|c| {
            c.disable_enhanced_monitoring(&stream_name, &shard_level_metrics, now_ms())
        })
        .await
    }

    async fn update_max_record_size(
        &self,
        stream_name: String,
        max_record_size_kib: u32,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| {
            c.update_max_record_size(&stream_name, max_record_size_kib, now_ms())
        })
        .await
    }

    async fn start_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.start_stream_encryption(input, now_ms()))
            .await
    }

    async fn stop_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.stop_stream_encryption(input, now_ms()))
            .await
    }

    async fn update_stream_warm_throughput(
        &self,
        stream_name: String,
        warm_throughput_mibps: u32,
    ) -> Result<UpdateStreamWarmThroughputOutput, KinesisError> {
        self.mutate_catalog(|c| {
            c.update_stream_warm_throughput(&stream_name, warm_throughput_mibps, now_ms())
        })
        .await
    }

    async fn describe_account_settings(
        &self,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        Ok(self.catalog_read().describe_account_settings(now_ms()))
    }

    async fn update_account_settings(
        &self,
        enable: bool,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        self.mutate_catalog(|c| Ok(c.update_account_settings(enable, now_ms())))
            .await
    }

    async fn register_stream_consumer(
        &self,
        input: RegisterStreamConsumerInput,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.mutate_catalog(|c| c.register_stream_consumer(input, now_ms()))
            .await
    }

    async fn deregister_stream_consumer(&self, consumer: ConsumerRef) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.deregister_stream_consumer(&consumer, now_ms()))
            .await
    }

    async fn describe_stream_consumer(
        &self,
        consumer: ConsumerRef,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.catalog_read()
            .describe_stream_consumer(&consumer, now_ms())
    }

    async fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
    ) -> Result<ListStreamConsumersOutput, KinesisError> {
        self.catalog_read().list_stream_consumers(input, now_ms())
    }

    async fn put_resource_policy(
        &self,
        resource_arn: String,
        policy: String,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.put_resource_policy(&resource_arn, policy, now_ms()))
            .await
    }

    async fn get_resource_policy(&self, resource_arn: String) -> Result<String, KinesisError> {
        self.catalog_read()
            .get_resource_policy(&resource_arn, now_ms())
    }

    async fn delete_resource_policy(&self, resource_arn: String) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.delete_resource_policy(&resource_arn, now_ms()))
            .await
    }

    async fn resource_policy(&self, resource_arn: String) -> Option<String> {
        self.catalog_read()
            .resource_policy(&resource_arn, now_ms())
            .map(str::to_owned)
    }

    async fn tag_resource(&self, resource_arn: String, tags: Vec<Tag>) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.tag_resource(&resource_arn, tags, now_ms()))
            .await
    }

    async fn untag_resource(
        &self,
        resource_arn: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.mutate_catalog(|c| c.untag_resource(&resource_arn, tag_keys, now_ms()))
            .await
    }

    async fn list_tags_for_resource(&self, resource_arn: String) -> Result<Vec<Tag>, KinesisError> {
        self.catalog_read()
            .list_tags_for_resource(&resource_arn, now_ms())
    }

    type Subscription = crate::efo::EngineSubscription;

    async fn subscribe_to_shard(
        &self,
        input: sluice_core::subscribe::SubscribeToShardInput,
    ) -> Result<Self::Subscription, KinesisError> {
        self.subscribe(input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<AppendRecord> {
        (0..n)
            .map(|i| AppendRecord {
                partition_key: format!("k{i}"),
                data: vec![1; 10],
            })
            .collect()
    }

    /// The seal of a reshard must report a tip that no accepted append moves afterwards, or a
    /// record acknowledged to its writer would land past the parent's closing position and never
    /// be read. So a seal waits for the appends already accepted on the shard, and refuses the
    /// ones that come after it (handing their records back for rerouting).
    #[test]
    fn a_seal_waits_for_appends_in_flight_and_refuses_later_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = EngineConfig::new(dir.path().join("data"));
        config.cores = 1;
        config.pin_cores = false;
        config.segment_bytes = 1 << 20;
        config.catalog.create_delay_ms = 0;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        run(config, move |engine| {
            let done_tx = done_tx.clone();
            async move {
                let input = CreateStreamInput {
                    stream_name: "s".into(),
                    shard_count: Some(1),
                    stream_mode: None,
                    tags: Vec::new(),
                };
                engine.create_stream(input).await.expect("stream created");
                let target = {
                    let catalog = engine.catalog_read();
                    let stream = catalog.live_stream("s", now_ms()).expect("stream exists");
                    engine.resolve_target(stream, stream.shard(0).expect("shard 0"))
                };
                let first = engine
                    .append_on_owner(target.log_id, target.key.to_key(), records(2))
                    .await;
                assert!(
                    matches!(
                        first,
                        Ok(LogAppended {
                            first_position: 0,
                            ..
                        })
                    ),
                    "{first:?}"
                );
                // Accepted (counted in flight) but not yet committed when the seal arrives.
                let in_flight =
                    engine.append_on_owner(target.log_id, target.key.to_key(), records(3));
                let tips = engine
                    .seal_on_owner(vec![(target.log_id, target.key.clone())])
                    .await;
                let LogAppended { first_position, .. } = in_flight
                    .await
                    .expect("an append accepted before the seal is stored");
                assert_eq!(first_position, 2);
                assert_eq!(
                    tips,
                    vec![5],
                    "the tip includes the append that was in flight"
                );
                match engine
                    .append_on_owner(target.log_id, target.key.to_key(), records(4))
                    .await
                {
                    Err(AppendFailure::Sealed(back)) => {
                        assert_eq!(back.len(), 4, "the records come back")
                    }
                    other => panic!("an append after the seal must be refused, got {other:?}"),
                }
                let again = engine
                    .seal_on_owner(vec![(target.log_id, target.key.clone())])
                    .await;
                assert_eq!(again, vec![5], "sealing again reports the same tip");
                done_tx.send(()).expect("the test waits");
            }
        })
        .expect("the engine runs");
        done_rx
            .recv_timeout(Duration::from_secs(1))
            .expect("the test body ran");
    }
}
