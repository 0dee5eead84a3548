//! The read path: GetRecords' read, GetShardIterator's start resolution, and the one-round-trip owner read every
//! reader (the storage face's `read` included) uses (resolve the start on the owning core, clamp
//! to retention, optionally wait for the commit that stores the next record, read).

use super::*;

impl Engine {
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
                .ask(owner, |reply| target.read_from(request, reply))
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
        let millis_behind_latest =
            millis_behind_latest(next_position, records.last_arrival_ms(), tip);
        Ok(OwnerReadOutput {
            records,
            next_position,
            millis_behind_latest,
        })
    }

    /// On the owning core: resolves the start, clamps it to the retained records, checks the
    /// read limits when asked, waits for a record when asked, reads. Answers the records, the
    /// position the read started at and the shard's tip.
    pub(crate) async fn read_local(
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
    pub(crate) async fn resolve_starting_point(
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

/// How far behind the shard's `tip` a read is whose next position is `next_position` and whose
/// last record arrived at `last_arrival_ms`: 0 once it has reached the tip, or when either
/// arrival time is unknown.
pub(crate) fn millis_behind_latest(
    next_position: u64,
    last_arrival_ms: Option<u64>,
    tip: ShardTip,
) -> u64 {
    if next_position >= tip.next_position {
        0
    } else {
        match (last_arrival_ms, tip.last_arrival_ms) {
            (Some(last), Some(tip_ms)) => tip_ms.saturating_sub(last),
            _ => 0,
        }
    }
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
