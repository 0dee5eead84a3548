//! Enhanced fan-out delivery: SubscribeToShard. A subscription is a shard position plus a lease;
//! each event is one read of the narrow storage face ([`RecordLog::read`] with a wait), which
//! parks on the owning core's commit notifier until a record is durable, so records are pushed
//! as they commit and nothing polls. The control plane is reached through [`KinesisApi`] only:
//! the consumer by ARN (DescribeStreamConsumer, at subscribe time and before every event), the
//! stream's status (DescribeStreamSummary) and, at a closed shard's end, its children
//! (ListShards).
//!
//! The starting position is resolved and checked by the face's first read, with no wait, at
//! subscribe time: the face resolves a [`ReadStart`] exactly as GetShardIterator does, so a
//! refused start carries GetShardIterator's message ([`ReadError::InvalidStart`]). When that
//! read found records (or the end of a closed shard), they are the first event.
//!
//! Invariants:
//! - At most one subscription per (lease table, consumer ARN, shard) holds the lease. A new
//!   subscribe within [`SUBSCRIPTION_TAKEOVER_MS`] of the holder's start is refused with
//!   ResourceInUse; a later one takes the lease, and the old subscription ends with a
//!   ResourceInUse exception at its next event. A subscription gives its lease back when
//!   dropped.
//! - A lease table ([`SubscriptionLeases`]) belongs to one server: the server makes one and
//!   hands a clone to every core, so several servers in one process (tests) never see each
//!   other's leases.
//! - `ContinuationSequenceNumber` is the last delivered record's number, or, before any record,
//!   the number of the record just before the cursor, so AFTER_SEQUENCE_NUMBER with it resumes
//!   exactly at the cursor. At position 0 of a shard nothing precedes the cursor; the shard's
//!   starting sequence number stands in, and GetShardIterator's rules resolve
//!   AFTER_SEQUENCE_NUMBER with it to the shard's first record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_core::api::{
    ChildShard, ConsumerRef, KinesisApi, ListShardsInput, RecordBatch, ShardIteratorType,
    StreamStatus,
};
use sluice_core::consumer::{ConsumerArn, ConsumerStatus, consumer_not_active, consumer_not_found};
use sluice_core::shard_id::{format_shard_id, parse_shard_id};
use sluice_core::storage::{ReadBatch, ReadError, ReadLimits, ReadStart, RecordLog, ShardAddress};
use sluice_core::subscribe::{
    SUBSCRIPTION_HEARTBEAT_MS, SUBSCRIPTION_LIFETIME_MS, SUBSCRIPTION_TAKEOVER_MS,
    StartingPosition, SubscribeToShardEventOut, SubscribeToShardInput, Subscription,
};
use sluice_core::{ErrorKind, KinesisError, SequenceNumber};

/// How much one event carries at most: GetRecords' record cap, and about 1 MiB of data, small
/// enough that a base64 event stays far below the event-stream message limit (16 MiB) and a
/// catching-up consumer sees steady progress.
const EVENT_LIMITS: ReadLimits = ReadLimits {
    records_max: 10_000,
    bytes_max: 1 << 20,
};

/// ListShards pages read at most to find a closed shard's children. A page holds up to 1,000
/// shards, far more than a stream has.
const LINEAGE_PAGES_MAX: usize = 100;

/// (consumer ARN, shard index), within one server's table.
type LeaseKey = (String, u32);

struct Lease {
    generation: u64,
    started: Instant,
}

#[derive(Default)]
struct Leases {
    next_generation: u64,
    held: HashMap<LeaseKey, Lease>,
}

/// One server's table of subscription leases (see the module doc). Clones share the table.
#[derive(Clone, Default)]
pub struct SubscriptionLeases {
    table: Arc<Mutex<Leases>>,
}

impl std::fmt::Debug for SubscriptionLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionLeases")
            .field("held", &self.lock().held.len())
            .finish()
    }
}

impl SubscriptionLeases {
    fn lock(&self) -> MutexGuard<'_, Leases> {
        // The table holds plain data that every critical section leaves consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holds(&self, key: &LeaseKey, generation: u64) -> bool {
        self.lock()
            .held
            .get(key)
            .is_some_and(|l| l.generation == generation)
    }
}

/// Enhanced fan-out on one server: the record log every subscription reads and the server's
/// lease table.
#[derive(Clone, Debug)]
pub struct EnhancedFanOut<R> {
    log: R,
    leases: SubscriptionLeases,
}

/// A live SubscribeToShard.
pub struct FanOutSubscription<A, R> {
    api: A,
    log: R,
    leases: SubscriptionLeases,
    consumer_arn: String,
    shard: ShardAddress,
    /// The shard's creation second, for continuation numbers before any record.
    shard_created_s: u64,
    /// Where the next event's read starts.
    position: u64,
    /// The subscribe-time read, when it found records or the shard's end: the first event.
    first: Option<ReadBatch>,
    account_id: String,
    lease: LeaseKey,
    generation: u64,
    ends_at: Instant,
    /// Arrival (epoch s) of the last delivered record, for continuation numbers of empty events.
    last_arrival_s: Option<u64>,
    done: bool,
}

impl<A, R> std::fmt::Debug for FanOutSubscription<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutSubscription")
            .field("consumer_arn", &self.consumer_arn)
            .field("shard_index", &self.shard.shard_index)
            .field("position", &self.position)
            .field("done", &self.done)
            .finish()
    }
}

impl<A, R> Drop for FanOutSubscription<A, R> {
    fn drop(&mut self) {
        let mut leases = self.leases.lock();
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

/// Maps a StartingPosition onto a read start, with SubscribeToShard's messages for the members
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

/// Words a refused read: a stream deleted or a shard gone is ResourceNotFound for the shard, as
/// GetShardIterator and GetRecords say; a refused start is GetShardIterator's InvalidArgument;
/// anything else is an internal failure.
fn kinesis_error(error: ReadError, shard: &ShardAddress, account_id: &str) -> KinesisError {
    match error {
        ReadError::StreamNotFound { .. } | ReadError::ShardNotFound { .. } => {
            KinesisError::shard_not_found(
                &format_shard_id(shard.shard_index),
                &shard.stream_name,
                account_id,
            )
        }
        ReadError::InvalidStart { detail, .. } => KinesisError::invalid_argument(detail),
        other => {
            tracing::warn!(error = %other, "SubscribeToShard read failed.");
            KinesisError::internal("The records could not be read.")
        }
    }
}

impl<R: RecordLog> EnhancedFanOut<R> {
    /// Enhanced fan-out reading `log`, with the server's lease table `leases`.
    pub fn new(log: R, leases: SubscriptionLeases) -> Self {
        Self { log, leases }
    }

    /// SubscribeToShard: checks the consumer (exists, ACTIVE, stream readable), the shard and
    /// the starting position exactly as GetShardIterator checks them, then takes the lease.
    /// Every error it returns is found before streaming starts.
    pub async fn subscribe<A: KinesisApi + Clone>(
        &self,
        api: &A,
        input: SubscribeToShardInput,
    ) -> Result<FanOutSubscription<A, R>, KinesisError> {
        let account_id = api.account_id().to_owned();
        let consumer = api
            .describe_stream_consumer(ConsumerRef::Arn(input.consumer_arn.clone()))
            .await?;
        if consumer.consumer_status != ConsumerStatus::Active {
            return Err(consumer_not_active(
                &input.consumer_arn,
                &account_id,
                consumer.consumer_status,
            ));
        }
        let stream_name = ConsumerArn::parse(&input.consumer_arn)
            .ok_or_else(|| consumer_not_found(&input.consumer_arn, &account_id))?
            .stream_name;
        let summary = api.describe_stream_summary(stream_name.clone()).await?;
        if !matches!(
            summary.stream_status,
            StreamStatus::Active | StreamStatus::Updating
        ) {
            return Err(KinesisError::stream_not_active(
                &stream_name,
                &account_id,
                summary.stream_status.as_str(),
            ));
        }
        let shard_index = parse_shard_id(&input.shard_id).ok_or_else(|| {
            KinesisError::shard_not_found(&input.shard_id, &stream_name, &account_id)
        })?;
        let start = read_start(&input.starting_position)?;
        let shard = ShardAddress::new(stream_name, shard_index);
        let first = self
            .log
            .read(&shard, start, EVENT_LIMITS, None)
            .await
            .map_err(|e| kinesis_error(e, &shard, &account_id))?;

        let lease: LeaseKey = (input.consumer_arn.clone(), shard_index);
        let started = Instant::now();
        let generation = {
            let mut leases = self.leases.lock();
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
        api.count_subscribe(&shard.stream_name);
        let shard_created_s = first.origin().created_s;
        let position = first.start_position;
        let first = (first.len() > 0 || first.next_position.is_none()).then_some(first);
        Ok(FanOutSubscription {
            api: api.clone(),
            log: self.log.clone(),
            leases: self.leases.clone(),
            consumer_arn: input.consumer_arn,
            shard,
            shard_created_s,
            position,
            first,
            account_id,
            lease,
            generation,
            ends_at: started + Duration::from_millis(SUBSCRIPTION_LIFETIME_MS),
            last_arrival_s: None,
            done: false,
        })
    }
}

impl<A: KinesisApi, R: RecordLog> FanOutSubscription<A, R> {
    /// The reason this subscription must stop before reading again, if any.
    async fn check_still_valid(&self) -> Result<(), KinesisError> {
        if !self.leases.holds(&self.lease, self.generation) {
            return Err(KinesisError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Another subscription for consumer {} and shard {} took over this one.",
                    self.consumer_arn,
                    format_shard_id(self.shard.shard_index)
                ),
            ));
        }
        self.api
            .describe_stream_consumer(ConsumerRef::Arn(self.consumer_arn.clone()))
            .await?;
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

    /// The children of this (closed) shard, from the stream's shard list; none when the stream
    /// cannot be listed any more.
    async fn child_shards(&self) -> Vec<ChildShard> {
        let parent = format_shard_id(self.shard.shard_index);
        let mut children = Vec::new();
        let mut input = ListShardsInput {
            stream_name: Some(self.shard.stream_name.clone()),
            next_token: None,
            exclusive_start_shard_id: None,
            max_results: None,
            stream_creation_timestamp_ms: None,
            shard_filter: None,
        };
        for _ in 0..LINEAGE_PAGES_MAX {
            let Ok(page) = self.api.list_shards(input).await else {
                return Vec::new();
            };
            for shard in page.shards {
                let parent_shards: Vec<String> = shard
                    .parent_shard_id
                    .into_iter()
                    .chain(shard.adjacent_parent_shard_id)
                    .collect();
                if parent_shards.contains(&parent) {
                    children.push(ChildShard {
                        shard_id: shard.shard_id,
                        parent_shards,
                        hash_key_range: shard.hash_key_range,
                    });
                }
            }
            let Some(next_token) = page.next_token else {
                break;
            };
            input = ListShardsInput {
                stream_name: None,
                next_token: Some(next_token),
                exclusive_start_shard_id: None,
                max_results: None,
                stream_creation_timestamp_ms: None,
                shard_filter: None,
            };
        }
        children
    }
}

impl<A: KinesisApi, R: RecordLog> Subscription for FanOutSubscription<A, R> {
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
        if let Err(error) = self.check_still_valid().await {
            self.done = true;
            return Some(Err(error));
        }
        let read = match self.first.take() {
            Some(first) => first,
            None => {
                let wait = self
                    .ends_at
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(SUBSCRIPTION_HEARTBEAT_MS));
                let read = self
                    .log
                    .read(
                        &self.shard,
                        ReadStart::AtPosition(self.position),
                        EVENT_LIMITS,
                        Some(wait),
                    )
                    .await;
                match read {
                    Ok(read) => read,
                    Err(error) => {
                        self.done = true;
                        return Some(Err(kinesis_error(error, &self.shard, &self.account_id)));
                    }
                }
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
                (None, self.child_shards().await)
            }
        };
        self.api
            .count_subscribe_event(&self.shard, &read, read.millis_behind_latest);
        Some(Ok(SubscribeToShardEventOut {
            millis_behind_latest: read.millis_behind_latest,
            records: read,
            continuation_sequence_number,
            child_shards,
        }))
    }
}

#[cfg(test)]
mod tests {
    //! Subscribe-time checks and the lease table, against the in-memory model.

    use futures_lite::future::block_on;
    use sluice_core::api::{CreateStreamInput, RegisterStreamConsumerInput};

    use super::*;
    use crate::model::{Model, ModelLog};

    fn model_with_consumer() -> (Model, String) {
        let model = Model::default();
        let arn = block_on(async {
            model
                .create_stream(CreateStreamInput {
                    stream_name: "s".into(),
                    shard_count: Some(1),
                    stream_mode: None,
                    tags: Vec::new(),
                })
                .await
                .expect("created");
            model
                .register_stream_consumer(RegisterStreamConsumerInput {
                    stream_name: "s".into(),
                    consumer_name: "c".into(),
                    tags: Vec::new(),
                })
                .await
                .expect("registered")
                .consumer_arn
        });
        (model, arn)
    }

    fn input(
        consumer_arn: &str,
        kind: ShardIteratorType,
        sequence: Option<&str>,
    ) -> SubscribeToShardInput {
        SubscribeToShardInput {
            consumer_arn: consumer_arn.to_owned(),
            shard_id: "shardId-000000000000".into(),
            starting_position: StartingPosition {
                kind,
                sequence_number: sequence.map(str::to_owned),
                timestamp_ms: None,
            },
        }
    }

    fn subscribe(
        fan_out: &EnhancedFanOut<ModelLog>,
        model: &Model,
        input: SubscribeToShardInput,
    ) -> Result<FanOutSubscription<Model, ModelLog>, KinesisError> {
        block_on(fan_out.subscribe(model, input))
    }

    #[test]
    fn a_second_subscription_is_refused_until_the_first_is_dropped_and_other_tables_never_see_it() {
        let (model, arn) = model_with_consumer();
        let fan_out = EnhancedFanOut::new(model.log(), SubscriptionLeases::default());
        let first = subscribe(
            &fan_out,
            &model,
            input(&arn, ShardIteratorType::Latest, None),
        )
        .expect("subscribed");
        let refused = subscribe(
            &fan_out,
            &model,
            input(&arn, ShardIteratorType::Latest, None),
        )
        .expect_err("the lease is held");
        assert_eq!(refused.kind, ErrorKind::ResourceInUse);
        assert_eq!(
            refused.message,
            format!(
                "Another active subscription exists for consumer {arn} and shard shardId-000000000000. Retry after 5 seconds."
            )
        );
        let other_server = EnhancedFanOut::new(model.log(), SubscriptionLeases::default());
        let elsewhere = subscribe(
            &other_server,
            &model,
            input(&arn, ShardIteratorType::Latest, None),
        );
        assert!(elsewhere.is_ok());
        drop(first);
        assert!(
            subscribe(
                &fan_out,
                &model,
                input(&arn, ShardIteratorType::Latest, None)
            )
            .is_ok()
        );
    }

    #[test]
    fn an_unknown_consumer_and_a_sequence_number_of_another_shard_are_refused_before_streaming() {
        let (model, arn) = model_with_consumer();
        let fan_out = EnhancedFanOut::new(model.log(), SubscriptionLeases::default());
        let unknown = format!("{arn}9");
        let missing = subscribe(
            &fan_out,
            &model,
            input(&unknown, ShardIteratorType::Latest, None),
        )
        .expect_err("no such consumer");
        assert_eq!(missing.kind, ErrorKind::ResourceNotFound);
        assert_eq!(
            missing.message,
            format!("Consumer {unknown}, account 000000000000 not found.")
        );
        let foreign = SequenceNumber::new(1, 7, 0, 1).to_string();
        let invalid = subscribe(
            &fan_out,
            &model,
            input(&arn, ShardIteratorType::AtSequenceNumber, Some(&foreign)),
        )
        .expect_err("another shard's number");
        assert_eq!(invalid.kind, ErrorKind::InvalidArgument);
        let absent = subscribe(
            &fan_out,
            &model,
            input(&arn, ShardIteratorType::AfterSequenceNumber, None),
        )
        .expect_err("a sequence number is required");
        assert_eq!(
            absent.message,
            "StartingPosition.SequenceNumber is required when StartingPosition.Type is AFTER_SEQUENCE_NUMBER."
        );
    }
}
