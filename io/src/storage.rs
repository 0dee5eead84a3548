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
    AppendFailure, CoreMessage, OwnedShardKey, OwnerRead, ReadRefused, ShardTarget, Shared, now_ms,
    resolve_read_start,
};
use crate::log::AppendRecord;
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
            let key_chars = record.partition_key.chars().count();
            if key_chars == 0
                || key_chars > sluice_core::limits::PARTITION_KEY_CHARS_MAX
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
        Ok(stream
            .shards
            .iter()
            .map(|shard| ShardPlacement {
                shard_index: shard.index,
                hash_range: shard.hash_range,
                core_id: self.shared.owner(shard.log_id),
                open: shard.closed_at_position.is_none(),
            })
            .collect())
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
                data: r.data,
            })
            .collect();
        let owner = self.shared.owner(target.log_id);
        let key: OwnedShardKey = target.key.clone();
        let outcome = self
            .shared
            .ask(owner, |reply| CoreMessage::Append {
                log_id: target.log_id,
                shard: key,
                records,
                reply,
            })
            .await
            .map_err(|_| AppendError::Unavailable)?;
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
            .ask(owner, |reply| CoreMessage::ReadFrom {
                log_id: target.log_id,
                shard: target.key.clone(),
                origin: target.origin(),
                request,
                reply,
            })
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
        batch.millis_behind_latest = if next >= batch.tip_position {
            0
        } else {
            match (batch.last_arrival_ms(), batch.tip_arrival_ms) {
                (Some(last), Some(tip)) => tip.saturating_sub(last),
                _ => 0,
            }
        };
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
                    reason: crate::engine::error_chain(&other),
                },
            })
    }
}
