//! Event-time window checkpoints through [`CheckpointLog`].
//!
//! An event-time window pump needs two numbers besides its input position to resume exactly
//! (see [`crate::window`]): its greatest event time seen and the last ROWTIME it processed. Each
//! is committed as a checkpoint of its own, keyed by the application's input consumer name plus
//! `/event-time/<pump>/max_event_ms` or `/last_rowtime_ms`, on the input's first shard, so they
//! share the positions' durability (one fsync'd group commit each) and stream incarnation.
//! A value is an `i64` stored as the `u64` of the same bits.
//!
//! Order: both are committed before the input positions. A crash between them leaves a newer
//! watermark with older positions, which only replays more rows, all found too late and skipped
//! as replayed; the reverse order could restore an older watermark with newer positions and
//! reopen a window that was already emitted. Between the two numbers, a crash can leave the
//! newer watermark with the older ROWTIME: rows between the two ROWTIMEs of already-emitted
//! windows are then reported to `error_stream` again instead of skipped, never counted twice.
//!
//! ROWTIME windows that a replay rebuilds (tumbling windows not fed by a stagger pump; stagger
//! pumps and what they feed are in window snapshots, [`crate::snapshot_store`]) keep one number
//! the same way: their replay floor
//! (`/replay-floor/<pump>`), the exact start of their oldest open window. The runner replays
//! from the first row of that ROWTIME's second, and the pump skips the rows before the floor,
//! which belong to windows already emitted. Committed first as well: a newer floor with older
//! positions skips only rows of windows emitted before the crash. A pump with no window open
//! commits none, and the floor it committed last is at or before every row after it (ROWTIME
//! never decreases), so it skips nothing.

use sluice_core::storage::{CheckpointKey, CheckpointLog, ShardAddress};

use crate::pipeline::Pipeline;
use crate::window::EventTimeCheckpoint;

fn key(consumer: &str, pump: &str, field: &str, shard: &ShardAddress) -> CheckpointKey {
    CheckpointKey {
        consumer: format!("{consumer}/event-time/{pump}/{field}"),
        shard: shard.clone(),
    }
}

const fn to_stored(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

const fn from_stored(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Commits every event-time window pump's checkpoint; call before the input positions.
pub async fn commit<R: CheckpointLog>(
    storage: &R,
    consumer: &str,
    shard: &ShardAddress,
    pipeline: &Pipeline,
) {
    for (pump, checkpoint) in pipeline.event_time_checkpoints() {
        let mut fields = Vec::with_capacity(2);
        if let Some(max_event_ms) = checkpoint.max_event_ms {
            fields.push(("max_event_ms", max_event_ms));
        }
        fields.push(("last_rowtime_ms", checkpoint.last_rowtime_ms));
        for (field, value) in fields {
            let key = key(consumer, &pump, field, shard);
            if let Err(error) = storage.commit_checkpoint(&key, to_stored(value)).await {
                tracing::warn!(consumer, pump, %error, "Committing an event-time checkpoint failed.");
            }
        }
    }
}

fn floor_key(consumer: &str, pump: &str, shard: &ShardAddress) -> CheckpointKey {
    CheckpointKey {
        consumer: format!("{consumer}/replay-floor/{pump}"),
        shard: shard.clone(),
    }
}

/// Commits the replay floor of every ROWTIME window pump with a window open; call before the
/// input positions.
pub async fn commit_replay_floors<R: CheckpointLog>(
    storage: &R,
    consumer: &str,
    shard: &ShardAddress,
    pipeline: &Pipeline,
) {
    for (pump, floor) in pipeline.replay_floors() {
        let key = floor_key(consumer, &pump, shard);
        if let Err(error) = storage.commit_checkpoint(&key, to_stored(floor)).await {
            tracing::warn!(consumer, pump, %error, "Committing a window's replay floor failed.");
        }
    }
}

/// Restores the replay floors of `pipeline`'s ROWTIME window pumps (before its first record).
pub async fn restore_replay_floors<R: CheckpointLog>(
    storage: &R,
    consumer: &str,
    shard: &ShardAddress,
    pipeline: &mut Pipeline,
) {
    for pump in pipeline.rowtime_window_pumps() {
        match storage
            .load_checkpoint(&floor_key(consumer, &pump, shard))
            .await
        {
            Ok(Some(floor)) => {
                pipeline.restore_replay_floor(&pump, from_stored(floor));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(consumer, pump, %error, "Loading a window's replay floor failed; its replay is not trimmed.");
            }
        }
    }
}

/// Restores the event-time checkpoints of `pipeline`'s pumps (before its first record). A pump
/// without one starts with no watermark.
pub async fn restore<R: CheckpointLog>(
    storage: &R,
    consumer: &str,
    shard: &ShardAddress,
    pipeline: &mut Pipeline,
) {
    for pump in pipeline.event_time_pumps() {
        let load = |field: &'static str| {
            let key = key(consumer, &pump, field, shard);
            async move { storage.load_checkpoint(&key).await }
        };
        let (max_event, last_rowtime) = (load("max_event_ms").await, load("last_rowtime_ms").await);
        match (max_event, last_rowtime) {
            (Ok(max_event), Ok(Some(last_rowtime))) => {
                pipeline.restore_event_time(
                    &pump,
                    EventTimeCheckpoint {
                        max_event_ms: max_event.map(from_stored),
                        last_rowtime_ms: from_stored(last_rowtime),
                    },
                );
            }
            (Ok(_), Ok(None)) => {}
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(consumer, pump, %error, "Loading an event-time checkpoint failed; the pump starts with no watermark.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_keep_negative_and_extreme_times() {
        for value in [0, -1, 1_700_000_000_000, i64::MIN, i64::MAX] {
            assert_eq!(from_stored(to_stored(value)), value);
        }
    }
}
