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
//! - The catalog is changed only through `mutate_catalog`, which serialises changes and has the
//!   persistence thread make each one durable before it is installed; no executor blocks on it.
//! - Every read — GetRecords, the storage face (`crate::storage`) used by the binary protocol,
//!   enhanced fan-out and services — resolves its start with the same catalog code as
//!   GetShardIterator and runs on the owning core with the same trim and continuation rules, in
//!   one round trip, so every wire sees the same records at the same positions. A waiting read
//!   waits on the owning core for the log's commit notifier (`Log::wait_for_records`); nothing
//!   polls.
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
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_channel::oneshot;
use futures_util::future::join_all;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_core::KinesisError;
use sluice_core::api::*;
use sluice_core::catalog::{Catalog, CatalogConfig, RemovedStream, Shard, StartingPoint, Stream};
use sluice_core::hash_key::partition_key_hashes;
use sluice_core::reshard::DueReshard;
use sluice_core::shard_id::format_shard_id;
use sluice_core::storage::{ReadBatch, RecordStamp, ShardOrigin};
pub use sluice_core::storage::{ReadStart, ShardPlacement};

use crate::catalog_store::{CatalogStore, CatalogStoreError};
use crate::log::{
    AppendRecord, Appended as LogAppended, Durability, Log, LogConfig, LogHealth, LogRead,
    ShardKey, ShardMap, ShardSet, ShardTip, error_chain,
};
use crate::persist::Persister;
use crate::service::{ServiceCoreStatus, ServiceRuntime, ServiceStarter};

mod housekeeping;
mod messages;
mod owner;
mod read;
mod startup;
#[cfg(test)]
mod tests;
mod write;

pub(crate) use housekeeping::least_loaded;
use housekeeping::{housekeeping_loop, reshard_loop};
use messages::serve_inbox;
use owner::locate_local;
pub(crate) use read::{millis_behind_latest, resolve_read_start};
pub use startup::{LogOfDataDir, check_data_dir, run, run_with_services};
pub(crate) use write::DISK_FULL_MESSAGE;

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
    /// Group commits each log may have written but not yet synced (see
    /// [`crate::log::LogConfig::commits_in_flight`]).
    pub commits_in_flight: usize,
    /// Enforce AWS's provisioned throughput per shard (1 MiB/s or 1 000 records/s written, 2 MiB/s
    /// read); see [`crate::throttle`]. Off by default: an appliance usually wants all the
    /// throughput its disk gives.
    pub throughput_limits: bool,
    /// Service cores: executors that own no shards and run services (see [`crate::service`]).
    pub service_cores: usize,
    /// The runtime every service core runs.
    pub service_runtime: ServiceRuntime,
    /// Failures to inject into every log's writes, syncs and preallocations (tests only).
    #[cfg(any(test, feature = "fault-injection"))]
    pub faults: Option<Arc<crate::log::FaultPlan>>,
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
            commits_in_flight: crate::log::COMMITS_IN_FLIGHT_DEFAULT,
            throughput_limits: false,
            service_cores: 1,
            service_runtime: ServiceRuntime::Tokio,
            #[cfg(any(test, feature = "fault-injection"))]
            faults: None,
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
    /// Recovery found acknowledged records behind damaged bytes and changed nothing; an
    /// operator must decide (`log::check` with `CheckMode::Repair` truncates there).
    #[error("log {log_id} is corrupt: {message}")]
    LogCorrupt { log_id: u32, message: String },
    #[error("could not start the persistence thread: {message}")]
    Persist { message: String },
    #[error("--cores must be at least 1")]
    NoCores,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A request sent to the core that owns a log. Everything in it is `Send`.
pub(crate) enum CoreMessage {
    /// Appends to one or more shards of one log in one group commit; one outcome per shard,
    /// in order.
    Append {
        log_id: u32,
        shards: Vec<(OwnedShardKey, Vec<AppendRecord>)>,
        reply: oneshot::Sender<Vec<Result<LogAppended, AppendFailure>>>,
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
    /// The disk holding the log is full: nothing was stored, and the same append may succeed
    /// once space is freed.
    DiskFull,
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
    pub(crate) stream_name: String,
    pub(crate) stream_created_ms: u64,
    pub(crate) shard_index: u32,
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

/// The log's keys of `keys`, sharing one allocation of each stream name that runs on: the
/// shards of one write all belong to one stream, so a write to 1,000 shards allocates its
/// stream's name once rather than 1,000 times.
pub(crate) fn shard_keys<'a>(keys: impl IntoIterator<Item = &'a OwnedShardKey>) -> Vec<ShardKey> {
    let mut name: Option<Rc<str>> = None;
    keys.into_iter()
        .map(|key| {
            let stream_name = match &name {
                Some(name) if **name == *key.stream_name => name.clone(),
                _ => name.insert(Rc::from(key.stream_name.as_str())).clone(),
            };
            ShardKey {
                stream_name,
                stream_created_ms: key.stream_created_ms,
                shard_index: key.shard_index,
            }
        })
        .collect()
}

/// State shared by every core.
pub(crate) struct Shared {
    pub(crate) cores: usize,
    pub(crate) catalog_config: CatalogConfig,
    pub(crate) catalog: RwLock<Catalog>,
    /// Serialises catalog changes with their persistence. An async lock: a change waits for
    /// the persistence thread's fsyncs without blocking its executor.
    pub(crate) catalog_change: futures_util::lock::Mutex<()>,
    /// Writes catalog snapshots and consumer checkpoints off the executors.
    pub(crate) persister: Persister,
    /// What `/health` and `/metrics` show of each service core.
    pub(crate) service_cores: Vec<Arc<ServiceCoreStatus>>,
    pub(crate) inboxes: Vec<async_channel::Sender<CoreMessage>>,
    /// The health of every log, registered by its core when the log opens; read by `/health`
    /// and `/metrics` on any core.
    pub(crate) log_health: Mutex<Vec<CoreLogHealth>>,
}

/// What [`Engine::health`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// A log is poisoned or out of disk space: writes to its shards fail.
    pub degraded: bool,
    /// The `GET /health` body.
    pub json: String,
}

/// `text` as the inside of a JSON string.
fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// One log's health and the shard core that owns the log.
#[derive(Clone, Debug)]
pub(crate) struct CoreLogHealth {
    pub(crate) core_id: usize,
    pub(crate) health: Arc<LogHealth>,
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

    /// Every shard of `stream` (open and closed, in index order) with its owning core.
    pub(crate) fn placements(&self, stream: &Stream) -> Vec<ShardPlacement> {
        stream
            .shards
            .iter()
            .map(|shard| ShardPlacement {
                shard_index: shard.index,
                hash_range: shard.hash_range,
                core_id: self.owner(shard.log_id),
                open: shard.closed_at_position.is_none(),
            })
            .collect()
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
pub(crate) struct CoreState {
    pub(crate) core_id: usize,
    pub(crate) logs: HashMap<u32, Rc<Log>>,
    /// Shards sealed by a reshard on this core: appends to them fail with `Sealed`. Kept for the
    /// life of the process; after a restart the catalog, which records them closed, routes no
    /// write to them.
    pub(crate) sealed: RefCell<ShardSet>,
    /// Appends accepted for a shard and not yet committed or failed, and the seals waiting for
    /// that count to reach zero.
    pub(crate) in_flight: RefCell<ShardMap<InFlight>>,
    /// Token buckets of the shards this core owns, when throughput limits are on.
    pub(crate) throttles: Option<RefCell<ShardMap<crate::kds::throttle::ShardThrottle>>>,
}

#[derive(Default)]
pub(crate) struct InFlight {
    appends: usize,
    drained: Vec<oneshot::Sender<()>>,
}

/// A per-core handle on the engine. Cheap to clone; not `Send` (it lives on its core).
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) local: Rc<CoreState>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("core_id", &self.local.core_id)
            .finish()
    }
}

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
    /// The message that runs `request` on this shard's owning core and answers on `reply`.
    pub(crate) fn read_from(
        &self,
        request: OwnerRead,
        reply: oneshot::Sender<Result<ReadBatch, ReadRefused>>,
    ) -> CoreMessage {
        CoreMessage::ReadFrom {
            log_id: self.log_id,
            shard: self.key.clone(),
            origin: self.origin(),
            request,
            reply,
        }
    }

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
    /// `GET /health`: the engine's shard and service cores and its logs as one JSON object.
    pub fn render_health(&self) -> String {
        self.health().json
    }

    /// The engine's health: `"status":"degraded"` (and [`Health::degraded`]) while any log is
    /// poisoned or its disk is full, with each log's state, owning core and, for a poisoned
    /// log, the failure that poisoned it.
    pub fn health(&self) -> Health {
        let logs = self.log_health();
        let degraded = logs
            .iter()
            .any(|l| l.health.disk_full() || l.health.poisoned().is_some());
        let mut out = format!(
            r#"{{"status":"{}","shard_cores":{},"service_cores":["#,
            if degraded { "degraded" } else { "ok" },
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
        out.push_str(r#"],"logs":["#);
        for (i, log) in logs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let id = log.health.log_id();
            let core = log.core_id;
            match log.health.poisoned() {
                Some(poisoning) => out.push_str(&format!(
                    r#"{{"log_id":{id},"core":{core},"state":"poisoned","segment_id":{},"reason":"{}"}}"#,
                    poisoning.segment_id,
                    json_escape(&poisoning.reason)
                )),
                None if log.health.disk_full() => out.push_str(&format!(
                    r#"{{"log_id":{id},"core":{core},"state":"disk_full"}}"#
                )),
                None => out.push_str(&format!(r#"{{"log_id":{id},"core":{core},"state":"ok"}}"#)),
            }
        }
        out.push_str("]}");
        Health {
            degraded,
            json: out,
        }
    }

    /// Every log's health with its owning core, in log id order.
    pub(crate) fn log_health(&self) -> Vec<CoreLogHealth> {
        let mut logs = self
            .shared
            .log_health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        logs.sort_by_key(|l| l.health.log_id());
        logs
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

    pub(crate) fn owner(&self, log_id: u32) -> usize {
        self.shared.owner(log_id)
    }

    pub(crate) fn local_log(&self, log_id: u32) -> Option<&Rc<Log>> {
        self.local.logs.get(&log_id)
    }

    pub(crate) fn catalog_read(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.shared.catalog_read()
    }

    /// Applies a catalog change and persists it (on the persistence thread) before returning.
    /// The in-memory catalog is only replaced once the new state is durable; changes are
    /// serialised so each one starts from the state the previous one installed.
    pub(crate) async fn mutate_catalog<T>(
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

    pub(crate) async fn send(&self, core: usize, message: CoreMessage) -> Result<(), KinesisError> {
        self.shared
            .send(core, message)
            .await
            .map_err(|CoreGone| KinesisError::internal("A shard core is not running."))
    }

    pub(crate) async fn ask<T>(
        &self,
        core: usize,
        request: impl FnOnce(oneshot::Sender<T>) -> CoreMessage,
    ) -> Result<T, KinesisError> {
        self.shared
            .ask(core, request)
            .await
            .map_err(|CoreGone| KinesisError::internal("A shard core is not running."))
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
