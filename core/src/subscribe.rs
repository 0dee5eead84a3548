//! SubscribeToShard (enhanced fan-out push) as a domain call: its input, the events a
//! subscription yields, and the timing rules every implementation shares.
//!
//! Invariants an implementation of [`Subscription`] keeps:
//! - Events come in shard order; each record is delivered at most once per subscription.
//! - `continuation_sequence_number` is `None` only on the last event of a closed shard, which
//!   also carries the shard's `child_shards`; after it `next_event` answers `None`.
//! - A subscription ends (`None`) at most [`SUBSCRIPTION_LIFETIME_MS`] after it started, and
//!   yields an event at least every [`SUBSCRIPTION_HEARTBEAT_MS`] while it lasts.

use crate::api::{ChildShard, RecordBatch, ShardIteratorType};
use crate::error::KinesisError;

/// How long one subscription lasts before the server ends it and the client resubscribes.
pub const SUBSCRIPTION_LIFETIME_MS: u64 = 5 * 60 * 1000;
/// A second subscription to the same (consumer, shard) within this long of a live one is
/// refused with ResourceInUse; after it the new one takes over and the old one ends.
pub const SUBSCRIPTION_TAKEOVER_MS: u64 = 5_000;
/// The longest a subscription stays silent: with no new records it sends an empty event.
pub const SUBSCRIPTION_HEARTBEAT_MS: u64 = 5_000;

/// `StartingPosition` of SubscribeToShard. `kind` uses GetShardIterator's types, which are the
/// same five names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartingPosition {
    pub kind: ShardIteratorType,
    pub sequence_number: Option<String>,
    pub timestamp_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeToShardInput {
    pub consumer_arn: String,
    /// As the client sent it (messages echo it); the implementation parses it.
    pub shard_id: String,
    pub starting_position: StartingPosition,
}

/// One `SubscribeToShardEvent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeToShardEventOut<R> {
    pub records: R,
    /// Resubscribing with AFTER_SEQUENCE_NUMBER at this number continues right after this
    /// event. `None` on the final event of a closed shard.
    pub continuation_sequence_number: Option<String>,
    pub millis_behind_latest: u64,
    pub child_shards: Vec<ChildShard>,
}

/// A live subscription. `next_event` waits for the next event: records as they are committed,
/// or an empty heartbeat. `None` means the subscription ended cleanly (lifetime over, end of a
/// closed shard, or taken over); `Some(Err(_))` is a mid-stream error after which the stream
/// ends too.
#[allow(async_fn_in_trait)]
pub trait Subscription {
    type Records: RecordBatch;

    async fn next_event(
        &mut self,
    ) -> Option<Result<SubscribeToShardEventOut<Self::Records>, KinesisError>>;
}
