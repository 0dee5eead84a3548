//! Retention: deleting the oldest segments once every chunk in them is past its shard's
//! retention period or belongs to a shard that no longer exists.
//!
//! Invariants:
//! - Retention deletes a prefix of the segments, oldest first, and never the active segment.
//! - Before deleting the newest segment holding a chunk of a live shard, it commits an empty
//!   marker chunk for that shard into the active segment, so recovery still learns the shard's
//!   next position and last arrival time.
//! - A shard's index forgets exactly the chunks of the deleted segment; a shard that retention
//!   no longer knows is forgotten once its newest segment is gone.

use super::commit;
use super::{Log, RetentionError, ShardKey};

/// See [`Log::enforce_retention`].
pub(super) async fn enforce_retention(
    log: &Log,
    retention_ms: &dyn Fn(&ShardKey) -> Option<u64>,
    now_ms: u64,
) -> Result<usize, RetentionError> {
    let (doomed, markers) = {
        let state = log.state.borrow();
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
        let parts = markers
            .into_iter()
            .map(|shard| commit::Part {
                shard,
                records: Vec::new(),
                key: None,
            })
            .collect();
        commit::enqueue(&log.queue, parts, true)
            .await
            .map_err(|source| RetentionError::Marker { source })?;
    }
    let mut removed = 0;
    for segment_id in doomed {
        let segment = {
            let mut state = log.state.borrow_mut();
            assert!(
                segment_id < state.active_segment_id,
                "retention never deletes the segment being written"
            );
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
        let dir = log.state.borrow().config.dir.clone();
        super::segment_index::remove(&dir, segment_id);
        tracing::info!(segment_id, "Removed a segment past retention.");
        removed += 1;
    }
    if removed > 0 {
        // Make the removals durable: a power cut must not bring back an old segment whose
        // successors are gone (opening would then find a broken chain).
        let dir = log.state.borrow().config.dir.clone();
        super::sync_dir(&dir)
            .await
            .map_err(|source| RetentionError::SyncDir { source })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Durability, wall_clock_ms};
    use super::*;

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
}
