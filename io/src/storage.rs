//! The narrow storage face implemented on the engine: [`StorageHandle`] is `Clone + Send +
//! Sync`, holds no executor type and works from any thread of the process — a shard core, a
//! service core running glommio, or one running a tokio runtime. Every call is one message to
//! the shard's owning core and one reply (runtime-agnostic channels); the owning core resolves
//! a read's start, waits on its commit notifier when asked, and reads, so nothing polls and no
//! read costs two round trips.
//!
//! Checkpoints go to the persistence thread (`persist`), which makes them durable with the
//! same durability setting as records before it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::api::StreamStatus;
use sluice_core::catalog::StartingPoint;
use sluice_core::storage::{
    AppendError, Appended, CheckpointError, CheckpointKey, CheckpointLog, NewRecord, ReadBatch,
    ReadError, ReadLimits, ReadStart, RecordLog, ShardAddress, ShardPlacement,
};
use sluice_core::{ErrorKind, KinesisError};

use crate::engine::{
    AppendFailure, CoreMessage, OwnedShardKey, OwnerRead, ReadRefused, ShardTarget, Shared,
    millis_behind_latest, now_ms, resolve_read_start,
};
use crate::log::{AppendRecord, ShardTip};
use crate::persist::{CheckpointId, CheckpointValue};

/// A handle on the engine's storage that any executor of the process may hold.
#[derive(Clone)]
pub struct StorageHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StorageHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageHandle")
            .field("cores", &self.shared.cores())
            .finish()
    }
}

impl StorageHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The number of shard cores.
    pub fn shard_cores(&self) -> usize {
        self.shared.cores()
    }

    /// The target of an open shard for a write, checked against the stream's record limit.
    fn write_target(
        &self,
        shard: &ShardAddress,
        records: &[NewRecord],
    ) -> Result<ShardTarget, AppendError> {
        let catalog = self.shared.catalog_read();
        let stream = catalog
            .stream_for_write(&shard.stream_name, now_ms())
            .map_err(|_| AppendError::StreamNotWritable {
                stream_name: shard.stream_name.clone(),
            })?;
        let found = stream
            .shard(shard.shard_index)
            .ok_or_else(|| AppendError::ShardNotFound {
                shard: shard.clone(),
            })?;
        if found.closed_at_position.is_some() {
            return Err(AppendError::ShardClosed {
                shard: shard.clone(),
            });
        }
        let record_bytes_max = stream.max_record_bytes();
        for (index, record) in records.iter().enumerate() {
            let bytes = record.partition_key.len() + record.data.len();
            if sluice_core::api::check_partition_key(index, &record.partition_key, true).is_err()
                || bytes > record_bytes_max
            {
                return Err(AppendError::InvalidRecord {
                    index,
                    bytes,
                    bytes_max: record_bytes_max,
                });
            }
        }
        Ok(ShardTarget::new(stream, found))
    }
}

/// Words a catalog refusal of a read in the face's terms.
fn read_error(shard: &ShardAddress, error: KinesisError) -> ReadError {
    match error.kind {
        ErrorKind::ResourceNotFound => ReadError::ShardNotFound {
            shard: shard.clone(),
        },
        ErrorKind::InvalidArgument => ReadError::InvalidStart {
            shard: shard.clone(),
            detail: error.message,
        },
        _ => ReadError::Storage {
            shard: shard.clone(),
            reason: error.message,
        },
    }
}

impl RecordLog for StorageHandle {
    fn shards(&self, stream_name: &str) -> Result<Vec<ShardPlacement>, ReadError> {
        let catalog = self.shared.catalog_read();
        let stream = catalog.live_stream(stream_name, now_ms()).ok_or_else(|| {
            ReadError::StreamNotFound {
                stream_name: stream_name.to_owned(),
            }
        })?;
        Ok(self.shared.placements(stream))
    }

    async fn append(
        &self,
        shard: &ShardAddress,
        records: Vec<NewRecord>,
    ) -> Result<Appended, AppendError> {
        assert!(!records.is_empty());
        let target = self.write_target(shard, &records)?;
        let count = records.len() as u64;
        let records: Vec<AppendRecord> = records
            .into_iter()
            .map(|r| AppendRecord {
                partition_key: r.partition_key,
                data: r.data.into(),
            })
            .collect();
        let owner = self.shared.owner(target.log_id);
        let key: OwnedShardKey = target.key.clone();
        let outcome = self
            .shared
            .ask(owner, |reply| CoreMessage::Append {
                log_id: target.log_id,
                shards: vec![(key, records)],
                reply,
            })
            .await
            .map_err(|_| AppendError::Unavailable)?
            .pop()
            .expect("one outcome per shard appended to");
        let appended = |first: u64, count: u64, arrival_ms: u64| Appended {
            origin: target.origin(),
            positions: first..first + count,
            arrival_ms,
        };
        match outcome {
            Ok(done) => Ok(appended(done.first_position, count, done.arrival_ms)),
            Err(AppendFailure::Sealed(_)) => Err(AppendError::ShardClosed {
                shard: shard.clone(),
            }),
            // Throughput limits admitted a prefix: report exactly what was stored.
            Err(AppendFailure::Throttled {
                appended: Some(done),
                admitted,
            }) => Ok(appended(
                done.first_position,
                admitted as u64,
                done.arrival_ms,
            )),
            Err(AppendFailure::Throttled { appended: None, .. }) => Err(AppendError::Throttled {
                shard: shard.clone(),
            }),
            Err(AppendFailure::DiskFull) => Err(AppendError::Storage {
                shard: shard.clone(),
                reason: crate::engine::DISK_FULL_MESSAGE.to_owned(),
            }),
            Err(AppendFailure::Failed(reason)) => Err(AppendError::Storage {
                shard: shard.clone(),
                reason,
            }),
        }
    }

    async fn read(
        &self,
        shard: &ShardAddress,
        start: ReadStart,
        limits: ReadLimits,
        wait: Option<Duration>,
    ) -> Result<ReadBatch, ReadError> {
        let now = now_ms();
        let (target, point) = {
            let catalog = self.shared.catalog_read();
            let stream = catalog
                .live_stream(&shard.stream_name, now)
                .filter(|s| matches!(s.status(now), StreamStatus::Active | StreamStatus::Updating))
                .ok_or_else(|| ReadError::StreamNotFound {
                    stream_name: shard.stream_name.clone(),
                })?;
            if stream.shard(shard.shard_index).is_none() {
                return Err(ReadError::ShardNotFound {
                    shard: shard.clone(),
                });
            }
            resolve_read_start(&catalog, &shard.stream_name, shard.shard_index, start, now)
                .map_err(|e| read_error(shard, e))?
        };
        let closed_at = target.closed_at_position;
        if let (Some(end), StartingPoint::At(position)) = (closed_at, point)
            && position >= end
        {
            let mut batch = ReadBatch::new(target.origin(), 0, 0);
            batch.start_position = position;
            batch.next_position = None;
            return Ok(batch);
        }
        let request = OwnerRead {
            start: point,
            charge_read_limits: false,
            limit: limits.records_max.max(1),
            bytes_max: limits.bytes_max,
            retain_after_ms: now.saturating_sub(target.retention_ms),
            // A closed shard gets no more records: waiting for them would only burn the time.
            wait_until: wait
                .filter(|_| closed_at.is_none())
                .map(|wait| Instant::now() + wait),
        };
        let owner = self.shared.owner(target.log_id);
        let mut batch = self
            .shared
            .ask(owner, |reply| target.read_from(request, reply))
            .await
            .map_err(|_| ReadError::Unavailable)?
            .map_err(|refused| match refused {
                ReadRefused::Throttled => ReadError::Throttled {
                    shard: shard.clone(),
                },
                other => ReadError::Storage {
                    shard: shard.clone(),
                    reason: other.to_string(),
                },
            })?;
        let next = batch
            .last_position()
            .map_or(batch.start_position, |p| p + 1);
        let tip = ShardTip {
            next_position: batch.tip_position,
            last_arrival_ms: batch.tip_arrival_ms,
        };
        batch.millis_behind_latest = millis_behind_latest(next, batch.last_arrival_ms(), tip);
        batch.next_position = match closed_at {
            Some(end) if next >= end => None,
            _ => Some(next),
        };
        Ok(batch)
    }
}

impl StorageHandle {
    /// The stream's current incarnation (its creation time), which a checkpoint names.
    fn stream_created_ms(&self, stream_name: &str) -> Option<u64> {
        self.shared
            .catalog_read()
            .live_stream(stream_name, now_ms())
            .map(|s| s.created_ms)
    }
}

fn checkpoint_id(key: &CheckpointKey) -> CheckpointId {
    CheckpointId {
        consumer: key.consumer.clone(),
        stream_name: key.shard.stream_name.clone(),
        shard_index: key.shard.shard_index,
    }
}

impl CheckpointLog for StorageHandle {
    async fn load_checkpoint(&self, key: &CheckpointKey) -> Result<Option<u64>, CheckpointError> {
        let created_ms = self
            .stream_created_ms(&key.shard.stream_name)
            .ok_or_else(|| CheckpointError::StreamNotFound {
                stream_name: key.shard.stream_name.clone(),
            })?;
        Ok(self
            .shared
            .persister
            .checkpoint(&checkpoint_id(key))
            .filter(|value| value.stream_created_ms == created_ms)
            .map(|value| value.position))
    }

    async fn commit_checkpoint(
        &self,
        key: &CheckpointKey,
        position: u64,
    ) -> Result<(), CheckpointError> {
        let created_ms = self
            .stream_created_ms(&key.shard.stream_name)
            .ok_or_else(|| CheckpointError::StreamNotFound {
                stream_name: key.shard.stream_name.clone(),
            })?;
        let value = CheckpointValue {
            stream_created_ms: created_ms,
            position,
        };
        self.shared
            .persister
            .commit_checkpoint(checkpoint_id(key), value)
            .await
            .map_err(|e| match e {
                crate::persist::PersistError::Stopped => CheckpointError::Unavailable,
                other => CheckpointError::Storage {
                    reason: crate::log::error_chain(&other),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use sluice_core::KinesisApi as _;
    use sluice_core::api::{CreateStreamInput, RecordBatch as _};
    use sluice_core::storage::{CheckpointKey, CheckpointLog, NewRecord, ReadLimits, RecordLog};

    use super::*;
    use crate::engine::{EngineConfig, run_with_services};
    use crate::service::{ServiceContext, ServiceRuntime, ServiceStarter};

    const LIMITS: ReadLimits = ReadLimits {
        records_max: 100,
        bytes_max: 1 << 20,
    };

    fn config(dir: &std::path::Path, runtime: ServiceRuntime) -> EngineConfig {
        let mut config = EngineConfig::new(dir.join("data"));
        config.cores = 2;
        config.pin_cores = false;
        config.segment_bytes = 1 << 20;
        config.io_memory_bytes = 1 << 20;
        config.catalog.create_delay_ms = 0;
        config.service_cores = 1;
        config.service_runtime = runtime;
        config
    }

    fn records(prefix: &str, n: usize) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                partition_key: format!("{prefix}{i}"),
                data: format!("{prefix}-data-{i}").into_bytes(),
            })
            .collect()
    }

    fn data_of(batch: &ReadBatch) -> Vec<String> {
        let mut out = Vec::new();
        batch.for_each_record(&mut |r| out.push(String::from_utf8_lossy(r.data).into_owned()));
        out
    }

    /// Runs an engine with two shard cores and one service core; core 0 creates the stream
    /// `s` with two shards, then `service` runs on the service core with the storage face. The
    /// shard cores stop once the service has finished; returns what the service returned.
    fn with_service<T: Send + 'static>(
        dir: &std::path::Path,
        runtime: ServiceRuntime,
        create: bool,
        service: impl Fn(StorageHandle) -> std::pin::Pin<Box<dyn Future<Output = T>>>
        + Send
        + Sync
        + 'static,
    ) -> T {
        let (result_tx, result_rx) = mpsc::channel::<T>();
        let (stop_tx, stop_rx) = async_channel::unbounded::<()>();
        let (ready_tx, ready_rx) = async_channel::unbounded::<()>();
        let starter: ServiceStarter = Arc::new(move |context: ServiceContext| {
            let result_tx = result_tx.clone();
            let stop_tx = stop_tx.clone();
            let ready_rx = ready_rx.clone();
            let run = service(context.storage.clone());
            Box::pin(async move {
                ready_rx.recv().await.expect("core 0 signals readiness");
                let out = run.await;
                result_tx.send(out).expect("the test waits");
                for _ in 0..2 {
                    stop_tx.send(()).await.expect("the shard cores wait");
                }
            })
        });
        run_with_services(
            config(dir, runtime),
            move |engine| {
                let stop_rx = stop_rx.clone();
                let ready_tx = ready_tx.clone();
                async move {
                    if engine.core_id() == 0 {
                        if create {
                            let input = CreateStreamInput {
                                stream_name: "s".into(),
                                shard_count: Some(2),
                                stream_mode: None,
                                tags: Vec::new(),
                            };
                            engine.create_stream(input).await.expect("stream created");
                        }
                        ready_tx.send(()).await.expect("the service waits");
                    }
                    stop_rx.recv().await.expect("the service signals the end");
                }
            },
            starter,
        )
        .expect("the engine runs");
        result_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the service ran")
    }

    /// A service core owns no shard, so every record it reads crosses cores: this checks that
    /// the face routes appends and reads to the owning core of each shard, that a waiting read
    /// is woken by the commit that stores its record, and that a checkpoint survives a restart
    /// (durable, not just in memory).
    fn a_reader_on_a_service_core_sees_records_committed_on_two_shard_cores(
        runtime: ServiceRuntime,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = CheckpointKey {
            consumer: "delivery".into(),
            shard: ShardAddress::new("s", 1),
        };
        let key_for_service = key.clone();
        let seen = with_service(dir.path(), runtime, true, move |storage| {
            let key = key_for_service.clone();
            Box::pin(async move {
                let shards = storage.shards("s").expect("stream s exists");
                assert_eq!(shards.len(), 2);
                assert_ne!(
                    shards[0].core_id, shards[1].core_id,
                    "the two shards are placed on different shard cores"
                );
                let zero = ShardAddress::new("s", 0);
                let one = ShardAddress::new("s", 1);
                // A read that starts before the records exist and waits for them, for an hour:
                // if it returns records within this test, the commit woke it, not its timer.
                // A thread-timed hang guard fails the test instead of waiting out the hour.
                let (guard_tx, guard_rx) = futures_channel::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(60));
                    let _ = guard_tx.send(());
                });
                let waiting = {
                    let storage = storage.clone();
                    let zero = zero.clone();
                    let read = async move {
                        storage
                            .read(
                                &zero,
                                ReadStart::TrimHorizon,
                                LIMITS,
                                Some(Duration::from_secs(3600)),
                            )
                            .await
                    };
                    futures_lite::future::or(read, async move {
                        let _ = guard_rx.await;
                        panic!("the waiting read was not woken by the commit within 60 s");
                    })
                };
                let appending = async {
                    let a = storage.append(&zero, records("a", 3)).await;
                    let b = storage.append(&one, records("b", 2)).await;
                    (a, b)
                };
                let (waited, (a, b)) = futures_lite::future::zip(waiting, appending).await;
                let a = a.expect("append to shard 0");
                let b = b.expect("append to shard 1");
                assert_eq!(a.positions, 0..3);
                assert_eq!(b.positions, 0..2);
                let waited = waited.expect("the waiting read");
                assert!(
                    !data_of(&waited).is_empty(),
                    "the waiting read was woken by the commit"
                );
                let zero_read = storage
                    .read(&zero, ReadStart::TrimHorizon, LIMITS, None)
                    .await
                    .expect("read shard 0");
                let one_read = storage
                    .read(
                        &one,
                        ReadStart::AtSequenceNumber(b.sequence_number(1)),
                        LIMITS,
                        None,
                    )
                    .await
                    .expect("read shard 1 at a sequence number");
                assert_eq!(zero_read.next_position, Some(3));
                assert_eq!(one_read.start_position, 1);
                assert_eq!(
                    storage.load_checkpoint(&key).await.expect("load"),
                    None,
                    "no checkpoint before the first commit"
                );
                storage
                    .commit_checkpoint(&key, 2)
                    .await
                    .expect("commit checkpoint");
                assert_eq!(storage.load_checkpoint(&key).await.expect("load"), Some(2));
                (data_of(&zero_read), data_of(&one_read))
            })
        });
        assert_eq!(seen.0, vec!["a-data-0", "a-data-1", "a-data-2"]);
        assert_eq!(seen.1, vec!["b-data-1"]);

        // Restart on the same directory: records and the checkpoint are still there.
        let after = with_service(dir.path(), runtime, false, move |storage| {
            let key = key.clone();
            Box::pin(async move {
                let checkpoint = storage.load_checkpoint(&key).await.expect("load");
                let read = storage
                    .read(
                        &ShardAddress::new("s", 1),
                        ReadStart::AtPosition(checkpoint.expect("checkpoint survived")),
                        LIMITS,
                        None,
                    )
                    .await
                    .expect("read from the checkpoint");
                (checkpoint, data_of(&read))
            })
        });
        assert_eq!(after, (Some(2), Vec::<String>::new()));
    }

    #[test]
    fn a_reader_on_a_tokio_service_core_sees_records_committed_on_two_shard_cores() {
        a_reader_on_a_service_core_sees_records_committed_on_two_shard_cores(ServiceRuntime::Tokio);
    }

    #[test]
    fn a_reader_on_a_glommio_service_core_sees_records_committed_on_two_shard_cores() {
        a_reader_on_a_service_core_sees_records_committed_on_two_shard_cores(
            ServiceRuntime::Glommio,
        );
    }

    /// The face words refusals structurally: a missing stream, a closed or missing shard, an
    /// invalid record and a sequence number of another shard each get their own variant.
    #[test]
    fn the_face_refuses_bad_appends_and_reads_with_structured_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let errors = with_service(dir.path(), ServiceRuntime::Tokio, true, |storage| {
            Box::pin(async move {
                let missing = storage
                    .append(&ShardAddress::new("nope", 0), records("x", 1))
                    .await;
                let no_shard = storage
                    .append(&ShardAddress::new("s", 9), records("x", 1))
                    .await;
                let empty_key = storage
                    .append(
                        &ShardAddress::new("s", 0),
                        vec![NewRecord {
                            partition_key: String::new(),
                            data: b"x".to_vec(),
                        }],
                    )
                    .await;
                let zero = storage
                    .append(&ShardAddress::new("s", 0), records("x", 1))
                    .await
                    .expect("append");
                let other_shard = storage
                    .read(
                        &ShardAddress::new("s", 1),
                        ReadStart::AtSequenceNumber(zero.sequence_number(0)),
                        LIMITS,
                        None,
                    )
                    .await;
                let no_stream = storage.shards("nope");
                (missing, no_shard, empty_key, other_shard, no_stream)
            })
        });
        assert!(
            matches!(errors.0, Err(AppendError::StreamNotWritable { .. })),
            "{:?}",
            errors.0
        );
        assert!(
            matches!(errors.1, Err(AppendError::ShardNotFound { .. })),
            "{:?}",
            errors.1
        );
        assert!(
            matches!(errors.2, Err(AppendError::InvalidRecord { index: 0, .. })),
            "{:?}",
            errors.2
        );
        assert!(
            matches!(errors.3, Err(ReadError::InvalidStart { .. })),
            "{:?}",
            errors.3
        );
        assert!(
            matches!(errors.4, Err(ReadError::StreamNotFound { .. })),
            "{:?}",
            errors.4
        );
    }
}
