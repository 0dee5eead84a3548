//! Enhanced fan-out delivery: SubscribeToShard. A subscription is a shard position plus a lease;
//! each event is one read of the narrow storage face ([`RecordLog::read`] with a wait), which
//! parks on the owning core's commit notifier until a record is durable, so records are pushed
//! as they commit and nothing polls. Only the subscribe call itself (validating the consumer
//! and resolving the starting position with GetShardIterator's rules and messages) uses the
//! engine; delivery runs on the face alone and so could run on any core.
//!
//! Invariants:
//! - At most one subscription per (engine, consumer ARN, shard) holds the lease. A new subscribe
//!   within [`SUBSCRIPTION_TAKEOVER_MS`] of the holder's start is refused with ResourceInUse;
//!   a later one takes the lease, and the old subscription ends with a ResourceInUse exception
//!   at its next event. A subscription gives its lease back when dropped.
//! - Leases live in one process-wide table keyed by the engine's shared state (its address),
//!   so several engines in one process (tests) never see each other's leases. Every
//!   subscription keeps its engine alive, so an address cannot be reused while a lease names it.
//! - `ContinuationSequenceNumber` is the last delivered record's number, or, before any record,
//!   the number of the record just before the cursor, so AFTER_SEQUENCE_NUMBER with it resumes
//!   exactly at the cursor. At position 0 of a shard nothing precedes the cursor; the shard's
//!   starting sequence number stands in, and the catalog resolves AFTER_SEQUENCE_NUMBER with it
//!   to the shard's first record.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use sluice_core::api::{RecordBatch, ShardIteratorType};
use sluice_core::shard_id::parse_shard_id;
use sluice_core::subscribe::{
    SUBSCRIPTION_HEARTBEAT_MS, SUBSCRIPTION_LIFETIME_MS, SUBSCRIPTION_TAKEOVER_MS,
    StartingPosition, SubscribeToShardEventOut, SubscribeToShardInput, Subscription,
};
use sluice_core::{ErrorKind, KinesisError, SequenceNumber};

use sluice_core::storage::{ReadBatch, ReadError, ReadLimits, RecordLog as _, ShardAddress};

use crate::engine::{Engine, ReadStart, now_ms};
use crate::storage::StorageHandle;

/// Records in one event at most (GetRecords' cap).
const EVENT_RECORDS_MAX: usize = 10_000;
/// Data bytes in one event, about: small enough that a base64 event stays far below the
/// event-stream message limit (16 MiB) and a catching-up consumer sees steady progress.
const EVENT_BYTES_MAX: usize = 1 << 20;

/// (engine address, consumer ARN, shard index).
type LeaseKey = (usize, String, u32);

struct Lease {
    generation: u64,
    started: Instant,
}

#[derive(Default)]
struct Leases {
    next_generation: u64,
    held: HashMap<LeaseKey, Lease>,
}

static LEASES: LazyLock<Mutex<Leases>> = LazyLock::new(|| Mutex::new(Leases::default()));

fn leases() -> std::sync::MutexGuard<'static, Leases> {
    // The table holds plain data that every critical section leaves consistent.
    LEASES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A live SubscribeToShard.
pub struct EngineSubscription {
    storage: StorageHandle,
    consumer_arn: String,
    shard: ShardAddress,
    /// The shard's creation second, for continuation numbers before any record.
    shard_created_s: u64,
    /// Where the next event's read starts.
    position: u64,
    account_id: String,
    lease: LeaseKey,
    generation: u64,
    ends_at: Instant,
    /// Arrival (epoch s) of the last delivered record, for continuation numbers of empty events.
    last_arrival_s: Option<u64>,
    done: bool,
}

impl std::fmt::Debug for EngineSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSubscription")
            .field("consumer_arn", &self.consumer_arn)
            .field("shard_index", &self.shard.shard_index)
            .field("position", &self.position)
            .field("done", &self.done)
            .finish()
    }
}

impl Drop for EngineSubscription {
    fn drop(&mut self) {
        let mut leases = leases();
        if leases
            .held
            .get(&self.lease)
            .is_some_and(|l| l.generation == self.generation)
        {
            leases.held.remove(&self.lease);
        }
    }
}

fn invalid_position(message: String) -> KinesisError {
    KinesisError::new(ErrorKind::InvalidArgument, message)
}

/// Maps a StartingPosition onto a cursor start, with SubscribeToShard's messages for the members
/// a type requires.
fn read_start(position: &StartingPosition) -> Result<ReadStart, KinesisError> {
    let sequence_number = || {
        let text = position.sequence_number.as_deref().ok_or_else(|| {
            invalid_position(format!(
                "StartingPosition.SequenceNumber is required when StartingPosition.Type is {}.",
                position.kind.as_str()
            ))
        })?;
        SequenceNumber::parse(text).map_err(|_| {
            invalid_position(format!(
                "StartingPosition.SequenceNumber {text} is invalid."
            ))
        })
    };
    Ok(match position.kind {
        ShardIteratorType::TrimHorizon => ReadStart::TrimHorizon,
        ShardIteratorType::Latest => ReadStart::Latest,
        ShardIteratorType::AtTimestamp => ReadStart::AtTimestamp {
            timestamp_ms: position.timestamp_ms.ok_or_else(|| {
                invalid_position(
                    "StartingPosition.Timestamp is required when StartingPosition.Type is AT_TIMESTAMP."
                        .to_owned(),
                )
            })?,
        },
        ShardIteratorType::AtSequenceNumber => ReadStart::AtSequenceNumber(sequence_number()?),
        ShardIteratorType::AfterSequenceNumber => {
            ReadStart::AfterSequenceNumber(sequence_number()?)
        }
    })
}

impl Engine {
    /// SubscribeToShard: checks the consumer (exists, ACTIVE, stream readable), the shard and
    /// the starting position exactly as GetShardIterator checks them, then takes the lease.
    pub async fn subscribe(
        &self,
        input: SubscribeToShardInput,
    ) -> Result<EngineSubscription, KinesisError> {
        let now = now_ms();
        let (stream_name, account) = {
            let catalog = self.catalog_read();
            let (stream, _) = catalog.consumer_for_subscribe(&input.consumer_arn, now)?;
            (stream.name.clone(), catalog.config.account_id.clone())
        };
        let shard_index = parse_shard_id(&input.shard_id).ok_or_else(|| {
            KinesisError::shard_not_found(&input.shard_id, &stream_name, &account)
        })?;
        let start = read_start(&input.starting_position)?;
        let cursor = self.open_cursor(&stream_name, shard_index, start).await?;

        let lease: LeaseKey = (
            Arc::as_ptr(&self.shared) as usize,
            input.consumer_arn.clone(),
            shard_index,
        );
        let started = Instant::now();
        let generation = {
            let mut leases = leases();
            if let Some(held) = leases.held.get(&lease)
                && started.saturating_duration_since(held.started)
                    < Duration::from_millis(SUBSCRIPTION_TAKEOVER_MS)
            {
                return Err(KinesisError::new(
                    ErrorKind::ResourceInUse,
                    format!(
                        "Another active subscription exists for consumer {} and shard {}. Retry after {} seconds.",
                        input.consumer_arn,
                        input.shard_id,
                        SUBSCRIPTION_TAKEOVER_MS / 1000
                    ),
                ));
            }
            leases.next_generation += 1;
            let generation = leases.next_generation;
            leases.held.insert(
                lease.clone(),
                Lease {
                    generation,
                    started,
                },
            );
            generation
        };
        crate::metrics::record_subscribe(&stream_name);
        let account_id = account;
        Ok(EngineSubscription {
            storage: self.storage(),
            consumer_arn: input.consumer_arn,
            shard: ShardAddress::new(stream_name, shard_index),
            shard_created_s: cursor.shard_created_s(),
            position: cursor.position(),
            account_id,
            lease,
            generation,
            ends_at: started + Duration::from_millis(SUBSCRIPTION_LIFETIME_MS),
            last_arrival_s: None,
            done: false,
        })
    }
}

impl EngineSubscription {
    /// Words a refused read as the event stream's exception: a stream deleted or a shard gone
    /// meanwhile is ResourceNotFound for the shard, as GetRecords says; anything else is an
    /// internal failure.
    fn kinesis_error(&self, error: ReadError) -> KinesisError {
        match error {
            ReadError::StreamNotFound { .. } | ReadError::ShardNotFound { .. } => {
                KinesisError::shard_not_found(
                    &sluice_core::shard_id::format_shard_id(self.shard.shard_index),
                    &self.shard.stream_name,
                    &self.account_id,
                )
            }
            other => {
                tracing::warn!(error = %other, "SubscribeToShard read failed.");
                KinesisError::internal("The records could not be read.")
            }
        }
    }

    fn holds_lease(&self) -> bool {
        leases()
            .held
            .get(&self.lease)
            .is_some_and(|l| l.generation == self.generation)
    }

    /// The reason this subscription must stop before reading again, if any.
    fn check_still_valid(&self) -> Result<(), KinesisError> {
        if !self.holds_lease() {
            return Err(KinesisError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Another subscription for consumer {} and shard {} took over this one.",
                    self.consumer_arn,
                    sluice_core::shard_id::format_shard_id(self.shard.shard_index)
                ),
            ));
        }
        self.storage
            .catalog_read()
            .consumer_by_arn(&self.consumer_arn, now_ms())?;
        Ok(())
    }

    /// The continuation number when the event carries no record.
    fn continuation_without_records(&self) -> SequenceNumber {
        let created_s = self.shard_created_s;
        SequenceNumber::new(
            created_s,
            self.shard.shard_index,
            self.position.saturating_sub(1),
            self.last_arrival_s.unwrap_or(created_s),
        )
    }
}

impl Subscription for EngineSubscription {
    type Records = ReadBatch;

    async fn next_event(
        &mut self,
    ) -> Option<Result<SubscribeToShardEventOut<ReadBatch>, KinesisError>> {
        if self.done {
            return None;
        }
        let now = Instant::now();
        if now >= self.ends_at {
            self.done = true;
            return None;
        }
        if let Err(error) = self.check_still_valid() {
            self.done = true;
            return Some(Err(error));
        }
        let wait = self
            .ends_at
            .saturating_duration_since(now)
            .min(Duration::from_millis(SUBSCRIPTION_HEARTBEAT_MS));
        let limits = ReadLimits {
            records_max: EVENT_RECORDS_MAX,
            bytes_max: EVENT_BYTES_MAX,
        };
        let read = match self
            .storage
            .read(
                &self.shard,
                ReadStart::AtPosition(self.position),
                limits,
                Some(wait),
            )
            .await
        {
            Ok(read) => read,
            Err(error) => {
                self.done = true;
                return Some(Err(self.kinesis_error(error)));
            }
        };
        if let Some(next) = read.next_position {
            self.position = next;
        }
        let mut last = None;
        read.for_each_record(&mut |r| last = Some(r.sequence_number));
        if let Some(last) = last {
            self.last_arrival_s = Some(last.arrival_s);
        }
        let (continuation_sequence_number, child_shards) = match read.next_position {
            Some(_) => {
                let number = last.unwrap_or_else(|| self.continuation_without_records());
                (Some(number.to_string()), Vec::new())
            }
            None => {
                self.done = true;
                let catalog = self.storage.catalog_read();
                let children = catalog
                    .live_stream(&self.shard.stream_name, now_ms())
                    .map(|s| s.child_shards(self.shard.shard_index))
                    .unwrap_or_default();
                (None, children)
            }
        };
        crate::metrics::record_subscribe_event(
            &self.shard.stream_name,
            self.shard.shard_index,
            &read,
            read.millis_behind_latest,
            now_ms(),
        );
        Some(Ok(SubscribeToShardEventOut {
            millis_behind_latest: read.millis_behind_latest,
            records: read,
            continuation_sequence_number,
            child_shards,
        }))
    }
}
