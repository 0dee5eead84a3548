//! Resharding: SplitShard, MergeShards and UpdateShardCount, and the shard lineage that readers
//! follow across them.
//!
//! A reshard happens in two phases, because the position at which a parent closes is only known
//! to storage:
//! 1. The call (`split_shard`, `merge_shards`, `update_shard_count`) validates, records the
//!    steps in `StreamControl::pending_reshard` and puts the stream in UPDATING. Nothing else
//!    changes yet: DescribeStream still shows the old shards and writes still go to the parents,
//!    as AWS shows a stream while it is UPDATING.
//! 2. Once the UPDATING window has passed, [`Catalog::due_reshards`] names the open shards the
//!    reshard closes. Storage seals them (no append lands after), learns each one's tip, and
//!    calls [`Catalog::complete_reshard`], which closes them at those tips, creates the children
//!    and makes the stream ACTIVE.
//!
//! Until phase 2 runs the stream stays UPDATING, even past its window, so a slow or restarted
//! engine only lengthens the window; the pending steps are persisted with the catalog.
//!
//! Invariants:
//! - Every step is a split (one parent, two children partitioning it) or a merge (two adjacent
//!   parents, one child covering both), so every child has at most two parents and the open
//!   shards always cover the hash key space exactly once.
//! - Children take the next free shard indexes, in step order, and are dated one second after
//!   the moment their parents close, as AWS dates them (kinesalite records a 1000 ms gap). A
//!   closed parent's EndingSequenceNumber carries the second before.
//! - UpdateShardCount may create short-lived intermediate shards, as AWS's does. They are closed
//!   in the same completion that creates them, at position 0: they never hold a record.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::api::{ChildShard, StreamMode};
use crate::catalog::{Catalog, Lifecycle, Shard, Stream, parse_shard_id_like_aws};
use crate::error::{ErrorKind, KinesisError};
use crate::hash_key::HashRange;
use crate::shard_id::format_shard_id;

/// TargetShardCount may not exceed this (AWS's default per-stream limit).
pub const SHARDS_PER_STREAM_MAX: u32 = 10_000;
/// UpdateShardCount calls a stream accepts per rolling window.
pub const SCALINGS_PER_WINDOW_MAX: usize = 10;
pub const SCALING_WINDOW_MS: u64 = 24 * 3_600_000;
/// UpdateShardCount reuses an existing shard boundary instead of the exact uniform one when they
/// are at most this far apart. The exact boundaries of `HashRange::even_split(n)` and of
/// `even_split(2n)` differ by rounding (a few keys), and without this a doubling would split
/// every shard a second time to carve out one-key pieces. 2^20 keys out of 2^128 is no skew.
const BOUNDARY_SNAP_KEYS: u128 = 1 << 20;

/// One split or merge, applied at completion. Indexes may name shards an earlier step of the
/// same reshard creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReshardStep {
    Split {
        shard_index: u32,
        new_starting_hash_key: u128,
    },
    Merge {
        shard_index: u32,
        adjacent_shard_index: u32,
    },
}

/// A reshard accepted and waiting for storage to complete it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReshard {
    pub steps: Vec<ReshardStep>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitShardInput {
    pub stream_name: String,
    /// As the client sent it (messages echo it).
    pub shard_to_split: String,
    /// As the client sent it, already checked against `0|([1-9]\d{0,38})`; it may still exceed
    /// 2^128 − 1, which AWS reports as a key outside the shard.
    pub new_starting_hash_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeShardsInput {
    pub stream_name: String,
    pub shard_to_merge: String,
    pub adjacent_shard_to_merge: String,
}

/// UpdateShardCount; `ScalingType` has one value (UNIFORM_SCALING), which protocols checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateShardCountInput {
    pub stream_name: String,
    pub target_shard_count: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateShardCountOutput {
    pub stream_name: String,
    pub stream_arn: String,
    pub current_shard_count: u32,
    pub target_shard_count: u32,
}

/// An open shard a due reshard closes, with the log storage keeps it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosingShard {
    pub shard_index: u32,
    pub log_id: u32,
}

/// A stream whose reshard storage should complete now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReshard {
    pub stream_name: String,
    pub stream_created_ms: u64,
    /// Seal these and pass their tips to `complete_reshard`.
    pub closing: Vec<ClosingShard>,
}

/// What a completion changed, for storage to open and close logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedReshard {
    /// Shards closed, with their positions one past their last record.
    pub closed: Vec<(u32, u64)>,
    /// Shards created and still open afterwards.
    pub opened: Vec<u32>,
}

fn on_demand_error(stream_name: &str, account: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::Validation,
        format!(
            "Request is invalid. Stream {stream_name} under account {account} is in On-Demand mode."
        ),
    )
}

fn already_resharded(shard_id: &str, stream_name: &str, account: &str) -> KinesisError {
    KinesisError::invalid_argument(format!(
        "Shard {shard_id} in stream {stream_name} under account {account} has already been merged or split, and thus is not eligible for merging or splitting."
    ))
}

/// Applies one step to `shards` (ordered by index): closes the parents at the positions
/// `closed_at` gives and appends the children dated `children_created_s`. Returns the children.
fn apply_step(
    shards: &mut Vec<Shard>,
    step: ReshardStep,
    children_created_s: u64,
    closed_at: &mut dyn FnMut(u32) -> u64,
    log_id: &mut dyn FnMut(u32) -> u32,
) -> Vec<u32> {
    let next_index = shards.last().map_or(0, |last| last.index + 1);
    let mut close = |shards: &mut Vec<Shard>, index: u32| -> HashRange {
        let shard = shards
            .iter_mut()
            .find(|shard| shard.index == index)
            .expect("a reshard step names a shard of its stream");
        assert!(
            shard.closed_at_position.is_none(),
            "a reshard step closes an open shard"
        );
        shard.closed_at_position = Some(closed_at(index));
        shard.hash_range
    };
    let mut child = |index: u32, parent: u32, adjacent_parent: Option<u32>, hash_range| Shard {
        index,
        parent: Some(parent),
        adjacent_parent,
        hash_range,
        created_s: children_created_s,
        log_id: log_id(index),
        closed_at_position: None,
    };
    match step {
        ReshardStep::Split {
            shard_index,
            new_starting_hash_key,
        } => {
            let range = close(shards, shard_index);
            assert!(range.starting < new_starting_hash_key);
            assert!(new_starting_hash_key <= range.ending);
            let low = HashRange::new(range.starting, new_starting_hash_key - 1);
            let high = HashRange::new(new_starting_hash_key, range.ending);
            let first = child(next_index, shard_index, None, low);
            let second = child(next_index + 1, shard_index, None, high);
            shards.push(first);
            shards.push(second);
            vec![next_index, next_index + 1]
        }
        ReshardStep::Merge {
            shard_index,
            adjacent_shard_index,
        } => {
            let low = close(shards, shard_index);
            let high = close(shards, adjacent_shard_index);
            assert_eq!(
                low.ending.checked_add(1),
                Some(high.starting),
                "merged shards are adjacent"
            );
            let merged = child(
                next_index,
                shard_index,
                Some(adjacent_shard_index),
                HashRange::new(low.starting, high.ending),
            );
            shards.push(merged);
            vec![next_index]
        }
    }
}

/// The steps that take the open shards of `shards` to a uniform split into `target` shards:
/// first split every open shard at the target boundaries inside it, then merge the pieces of
/// each target range left to right. Shards that already are a target range stay untouched.
fn uniform_scaling_steps(shards: &[Shard], target: u32) -> Vec<ReshardStep> {
    let mut open: Vec<(u32, HashRange)> = shards
        .iter()
        .filter(|shard| shard.closed_at_position.is_none())
        .map(|shard| (shard.index, shard.hash_range))
        .collect();
    open.sort_by_key(|(_, range)| range.starting);
    let existing: Vec<u128> = open.iter().map(|(_, range)| range.starting).collect();
    let boundaries: Vec<u128> = HashRange::even_split(target)
        .iter()
        .skip(1)
        .map(|range| {
            let exact = range.starting;
            let nearest = match existing.binary_search(&exact) {
                Ok(_) => exact,
                Err(at) => [at.checked_sub(1), Some(at)]
                    .into_iter()
                    .flatten()
                    .filter_map(|i| existing.get(i).copied())
                    .filter(|b| *b > 0)
                    .min_by_key(|b| b.abs_diff(exact))
                    .unwrap_or(exact),
            };
            if nearest.abs_diff(exact) <= BOUNDARY_SNAP_KEYS {
                nearest
            } else {
                exact
            }
        })
        .collect();

    let mut scratch = shards.to_vec();
    let mut steps = Vec::new();
    let mut apply = |scratch: &mut Vec<Shard>, step: ReshardStep| {
        steps.push(step);
        apply_step(scratch, step, 0, &mut |_| 0, &mut |_| 0)
    };
    let mut pieces: Vec<(u32, HashRange)> = Vec::new();
    for (index, range) in open {
        let mut rest = (index, range);
        for &boundary in boundaries
            .iter()
            .filter(|b| range.starting < **b && **b <= range.ending)
        {
            let children = apply(
                &mut scratch,
                ReshardStep::Split {
                    shard_index: rest.0,
                    new_starting_hash_key: boundary,
                },
            );
            pieces.push((children[0], HashRange::new(rest.1.starting, boundary - 1)));
            rest = (children[1], HashRange::new(boundary, rest.1.ending));
        }
        pieces.push(rest);
    }
    let mut ends: Vec<u128> = boundaries.iter().map(|b| b - 1).collect();
    ends.push(u128::MAX);
    let mut pieces = pieces.into_iter();
    for end in ends {
        let mut merged = pieces.next().expect("the pieces cover the hash key space");
        while merged.1.ending < end {
            let next = pieces.next().expect("the pieces cover the hash key space");
            let children = apply(
                &mut scratch,
                ReshardStep::Merge {
                    shard_index: merged.0,
                    adjacent_shard_index: next.0,
                },
            );
            merged = (
                children[0],
                HashRange::new(merged.1.starting, next.1.ending),
            );
        }
        assert_eq!(
            merged.1.ending, end,
            "every target boundary is a piece boundary"
        );
    }
    steps
}

impl Stream {
    /// The shards a reader of `shard_index` moves on to once it reaches the end of the closed
    /// shard (GetRecords and SubscribeToShard `ChildShards`), in index order. Empty for an open
    /// shard.
    pub fn child_shards(&self, shard_index: u32) -> Vec<ChildShard> {
        self.shards
            .iter()
            .filter(|child| {
                child.parent == Some(shard_index) || child.adjacent_parent == Some(shard_index)
            })
            .map(|child| ChildShard {
                shard_id: format_shard_id(child.index),
                parent_shards: child
                    .parent
                    .into_iter()
                    .chain(child.adjacent_parent)
                    .map(format_shard_id)
                    .collect(),
                hash_key_range: child.hash_range,
            })
            .collect()
    }
}

impl Catalog {
    /// Records `steps` as the stream's pending reshard and starts its UPDATING window. A zero
    /// window still leaves the stream UPDATING until storage completes the reshard.
    fn begin_reshard(&mut self, stream_name: &str, steps: Vec<ReshardStep>, now_ms: u64) {
        let active_at_ms = now_ms.saturating_add(self.config.update_delay_ms);
        let stream = self
            .live_stream_mut(stream_name, now_ms)
            .expect("validated just before");
        stream.lifecycle = Lifecycle::Updating { active_at_ms };
        stream.control.pending_reshard = Some(PendingReshard { steps });
    }

    /// SplitShard. Checks in AWS's order (as kinesalite recorded it): the shard id parses, the
    /// stream exists, the shard exists and is open, the account has room for one more shard, the
    /// key lies strictly inside the shard, and only then that the stream is ACTIVE.
    pub fn split_shard(&mut self, input: SplitShardInput, now_ms: u64) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream_name = &input.stream_name;
        let Some(shard_index) = parse_shard_id_like_aws(&input.shard_to_split) else {
            return Err(KinesisError::shard_unparsable(
                &input.shard_to_split,
                stream_name,
                &account,
            ));
        };
        let shard_id = format_shard_id(shard_index);
        let stream = self.found(stream_name, now_ms)?;
        if stream.stream_mode() == StreamMode::OnDemand {
            return Err(on_demand_error(stream_name, &account));
        }
        let shard = stream
            .shard(shard_index)
            .ok_or_else(|| KinesisError::shard_unparsable(&shard_id, stream_name, &account))?;
        if shard.closed_at_position.is_some() {
            return Err(already_resharded(&shard_id, stream_name, &account));
        }
        self.check_account_shard_limit(1, now_ms)?;
        let range = shard.hash_range;
        let key = input
            .new_starting_hash_key
            .parse::<u128>()
            .ok()
            .filter(|key| {
                range
                    .starting
                    .checked_add(1)
                    .is_some_and(|floor| *key > floor)
                    && *key < range.ending
            });
        let Some(key) = key else {
            return Err(KinesisError::invalid_argument(format!(
                "NewStartingHashKey {} used in SplitShard() on shard {shard_id} in stream {stream_name} under account {account} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                input.new_starting_hash_key, range.starting, range.ending
            )));
        };
        stream.check_active(&account, now_ms)?;
        let step = ReshardStep::Split {
            shard_index,
            new_starting_hash_key: key,
        };
        self.begin_reshard(stream_name, vec![step], now_ms);
        Ok(())
    }

    /// MergeShards. `ShardToMerge` must be the lower of the two: AWS refuses the inverted pair
    /// as "not an adjacent pair" (kinesalite recorded this).
    pub fn merge_shards(
        &mut self,
        input: MergeShardsInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream_name = &input.stream_name;
        let mut indexes = [0u32; 2];
        for (slot, given) in indexes
            .iter_mut()
            .zip([&input.shard_to_merge, &input.adjacent_shard_to_merge])
        {
            *slot = parse_shard_id_like_aws(given)
                .ok_or_else(|| KinesisError::shard_unparsable(given, stream_name, &account))?;
        }
        let [low_index, high_index] = indexes;
        let (low_id, high_id) = (format_shard_id(low_index), format_shard_id(high_index));
        let stream = self.found(stream_name, now_ms)?;
        if stream.stream_mode() == StreamMode::OnDemand {
            return Err(on_demand_error(stream_name, &account));
        }
        let mut shards = Vec::with_capacity(2);
        for (index, shard_id) in [(low_index, &low_id), (high_index, &high_id)] {
            let shard = stream
                .shard(index)
                .ok_or_else(|| KinesisError::shard_unparsable(shard_id, stream_name, &account))?;
            shards.push(shard);
        }
        for (shard, shard_id) in shards.iter().zip([&low_id, &high_id]) {
            if shard.closed_at_position.is_some() {
                return Err(already_resharded(shard_id, stream_name, &account));
            }
        }
        if shards[0].hash_range.ending.checked_add(1) != Some(shards[1].hash_range.starting) {
            return Err(KinesisError::invalid_argument(format!(
                "Shards {low_id} and {high_id} in stream {stream_name} under account {account} are not an adjacent pair of shards eligible for merging"
            )));
        }
        stream.check_active(&account, now_ms)?;
        let step = ReshardStep::Merge {
            shard_index: low_index,
            adjacent_shard_index: high_index,
        };
        self.begin_reshard(stream_name, vec![step], now_ms);
        Ok(())
    }

    /// UpdateShardCount with UNIFORM_SCALING: at most double and at least half the open shards,
    /// at most 10,000, at most 10 calls per stream in a rolling 24 hours, within the account
    /// shard limit. The result is a uniform split of the hash key space into the target count,
    /// reached by splits and merges.
    pub fn update_shard_count(
        &mut self,
        input: UpdateShardCountInput,
        now_ms: u64,
    ) -> Result<UpdateShardCountOutput, KinesisError> {
        let account = self.config.account_id.clone();
        let stream_name = &input.stream_name;
        let target = input.target_shard_count;
        let stream = self.found(stream_name, now_ms)?;
        if stream.stream_mode() == StreamMode::OnDemand {
            return Err(on_demand_error(stream_name, &account));
        }
        stream.check_active(&account, now_ms)?;
        let current = stream.open_shard_count();
        let limit = |message: String| KinesisError::new(ErrorKind::LimitExceeded, message);
        if target == 0 {
            return Err(crate::catalog::validation_error(format!(
                "Value '{target}' at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
            )));
        }
        if target > SHARDS_PER_STREAM_MAX {
            return Err(limit(format!(
                "UpdateShardCount cannot scale up to over {SHARDS_PER_STREAM_MAX} shards in a stream. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        if u64::from(target) > 2 * u64::from(current) {
            return Err(limit(format!(
                "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        if 2 * u64::from(target) < u64::from(current) {
            return Err(limit(format!(
                "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {current} Target shard count: {target}"
            )));
        }
        let window_start_ms = now_ms.saturating_sub(SCALING_WINDOW_MS);
        let recent: Vec<u64> = stream
            .control
            .scaling_history_ms
            .iter()
            .copied()
            .filter(|at_ms| *at_ms > window_start_ms)
            .collect();
        if recent.len() >= SCALINGS_PER_WINDOW_MAX {
            let next_ms = recent[recent.len() - SCALINGS_PER_WINDOW_MAX] + SCALING_WINDOW_MS;
            return Err(limit(format!(
                "Stream {stream_name} under account {account} has already been scaled {SCALINGS_PER_WINDOW_MAX} times in the last 24 hours, the most UpdateShardCount allows. It can be scaled again at {}.",
                crate::time_format::java_date_utc(next_ms)
            )));
        }
        if target > current {
            self.check_account_shard_limit(u64::from(target - current), now_ms)?;
        }
        let steps = uniform_scaling_steps(&stream.shards, target);
        let stream_arn = stream.arn(&self.config.region, &account);
        self.begin_reshard(stream_name, steps, now_ms);
        let stream = self
            .live_stream_mut(stream_name, now_ms)
            .expect("validated just before");
        stream.control.scaling_history_ms = recent;
        stream.control.scaling_history_ms.push(now_ms);
        Ok(UpdateShardCountOutput {
            stream_name: stream_name.clone(),
            stream_arn,
            current_shard_count: current,
            target_shard_count: target,
        })
    }

    /// Streams whose reshard storage should complete now: the UPDATING window has passed and
    /// the stream is not being deleted.
    pub fn due_reshards(&self, now_ms: u64) -> Vec<DueReshard> {
        self.streams
            .iter()
            .filter(|(key, stream)| **key == stream.name)
            .filter_map(|(_, stream)| {
                let Lifecycle::Updating { active_at_ms } = stream.lifecycle else {
                    return None;
                };
                let pending = stream.control.pending_reshard.as_ref()?;
                if now_ms < active_at_ms {
                    return None;
                }
                let existing_open: BTreeSet<u32> = stream
                    .shards
                    .iter()
                    .filter(|shard| shard.closed_at_position.is_none())
                    .map(|shard| shard.index)
                    .collect();
                let mut closing_indexes = BTreeSet::new();
                for step in &pending.steps {
                    let parents = match *step {
                        ReshardStep::Split { shard_index, .. } => [Some(shard_index), None],
                        ReshardStep::Merge {
                            shard_index,
                            adjacent_shard_index,
                        } => [Some(shard_index), Some(adjacent_shard_index)],
                    };
                    closing_indexes.extend(
                        parents
                            .into_iter()
                            .flatten()
                            .filter(|i| existing_open.contains(i)),
                    );
                }
                let closing = closing_indexes
                    .into_iter()
                    .filter_map(|index| stream.shard(index))
                    .map(|shard| ClosingShard {
                        shard_index: shard.index,
                        log_id: shard.log_id,
                    })
                    .collect();
                Some(DueReshard {
                    stream_name: stream.name.clone(),
                    stream_created_ms: stream.created_ms,
                    closing,
                })
            })
            .collect()
    }

    /// Completes the pending reshard of the stream incarnation `stream_created_ms`: closes each
    /// shard `due_reshards` named at `tip_position(index)` (its tip once sealed), creates the
    /// children (placed by `log_id`, called once per new shard in index order) and makes the
    /// stream ACTIVE. `None` when there is nothing to complete (the stream was deleted or
    /// recreated, or another call completed it).
    pub fn complete_reshard(
        &mut self,
        stream_name: &str,
        stream_created_ms: u64,
        now_ms: u64,
        tip_position: &dyn Fn(u32) -> u64,
        log_id: &mut dyn FnMut(u32) -> u32,
    ) -> Option<CompletedReshard> {
        let stream = self
            .live_stream_mut(stream_name, now_ms)
            .filter(|stream| stream.created_ms == stream_created_ms)
            .filter(|stream| matches!(stream.lifecycle, Lifecycle::Updating { .. }))?;
        let pending = stream.control.pending_reshard.take()?;
        let first_new_index = stream.shards.last().map_or(0, |last| last.index + 1);
        let children_created_s = now_ms / 1000 + 1;
        let mut closed = Vec::new();
        for step in pending.steps {
            let mut closed_at = |index: u32| {
                // Shards this completion created were never open for writes.
                let position = if index >= first_new_index {
                    0
                } else {
                    tip_position(index)
                };
                closed.push((index, position));
                position
            };
            apply_step(
                &mut stream.shards,
                step,
                children_created_s,
                &mut closed_at,
                log_id,
            );
        }
        stream.lifecycle = Lifecycle::Active;
        let opened = stream
            .shards
            .iter()
            .filter(|shard| shard.index >= first_new_index && shard.closed_at_position.is_none())
            .map(|shard| shard.index)
            .collect();
        Some(CompletedReshard { closed, opened })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        CreateStreamInput, DescribeStreamInput, ListShardsInput, ShardFilter, StreamDescription,
        StreamStatus,
    };
    use crate::catalog::CatalogConfig;
    use crate::sequence_number::{self, SequenceNumber};
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;
    const ACCOUNT: &str = "000000000000";
    const THIRD: u128 = 113_427_455_640_312_821_154_458_202_477_256_070_484;

    fn catalog_with(name: &str, shard_count: u32, shard_limit: u32) -> (Catalog, u64) {
        let mut catalog = Catalog::new(CatalogConfig {
            shard_limit,
            ..CatalogConfig::default()
        });
        let input = CreateStreamInput {
            stream_name: name.into(),
            shard_count: Some(shard_count),
            stream_mode: None,
            tags: Vec::new(),
        };
        catalog
            .create_stream(input, T0, &mut |index| index)
            .expect("created");
        (catalog, T0 + 1_000)
    }

    fn split(stream: &str, shard: &str, key: &str) -> SplitShardInput {
        SplitShardInput {
            stream_name: stream.into(),
            shard_to_split: shard.into(),
            new_starting_hash_key: key.into(),
        }
    }

    fn merge(stream: &str, low: &str, high: &str) -> MergeShardsInput {
        MergeShardsInput {
            stream_name: stream.into(),
            shard_to_merge: low.into(),
            adjacent_shard_to_merge: high.into(),
        }
    }

    fn describe(catalog: &Catalog, now_ms: u64) -> StreamDescription {
        let input = DescribeStreamInput {
            stream_name: "s".into(),
            limit: None,
            exclusive_start_shard_id: None,
        };
        catalog.describe_stream(input, now_ms).expect("described")
    }

    /// Completes every due reshard the way storage would, with tip = 10 × index + 5.
    fn complete_due(catalog: &mut Catalog, now_ms: u64) -> Vec<CompletedReshard> {
        let due = catalog.due_reshards(now_ms);
        due.into_iter()
            .filter_map(|due| {
                catalog.complete_reshard(
                    &due.stream_name,
                    due.stream_created_ms,
                    now_ms,
                    &|index| u64::from(index) * 10 + 5,
                    &mut |index| index + 100,
                )
            })
            .collect()
    }

    fn message<T>(result: Result<T, KinesisError>) -> Result<T, String> {
        result.map_err(|e| e.message)
    }

    #[test]
    fn split_shard_keeps_the_old_layout_while_updating_then_closes_the_parent() {
        let (mut catalog, now) = catalog_with("s", 1, 10);
        catalog
            .split_shard(split("s", "anything-0", "2"), now)
            .expect("split accepted");
        let updating = describe(&catalog, now + 1);
        assert_eq!(updating.stream_status, StreamStatus::Updating);
        assert_eq!(updating.shards.len(), 1);
        assert_eq!(updating.shards[0].ending_sequence_number, None);
        assert_eq!(catalog.streams["s"].shard_for_hash_key(1).index, 0);
        assert!(catalog.due_reshards(now + 499).is_empty());

        let done_at = now + 600;
        let due = catalog.due_reshards(done_at);
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].closing,
            vec![ClosingShard {
                shard_index: 0,
                log_id: 0
            }]
        );
        // Past its window but not completed, the stream still reads UPDATING.
        assert_eq!(
            describe(&catalog, done_at).stream_status,
            StreamStatus::Updating
        );
        let completed = complete_due(&mut catalog, done_at);
        assert_eq!(
            completed,
            vec![CompletedReshard {
                closed: vec![(0, 5)],
                opened: vec![1, 2]
            }]
        );

        let active = describe(&catalog, done_at);
        assert_eq!(active.stream_status, StreamStatus::Active);
        let ranges: Vec<(u128, u128)> = active
            .shards
            .iter()
            .map(|s| (s.hash_key_range.starting, s.hash_key_range.ending))
            .collect();
        assert_eq!(ranges, vec![(0, u128::MAX), (0, 1), (2, u128::MAX)]);
        assert_eq!(
            active.shards[1].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
        assert_eq!(
            active.shards[2].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
        assert_eq!(active.shards[2].adjacent_parent_shard_id, None);
        let stream = &catalog.streams["s"];
        assert_eq!(stream.shards[0].closed_at_position, Some(5));
        assert_eq!(stream.shards[1].log_id, 101);
        assert_eq!(stream.shard_for_hash_key(1).index, 1);
        assert_eq!(stream.shard_for_hash_key(2).index, 2);
    }

    #[test]
    fn split_children_are_dated_one_second_after_the_parent_ends_as_aws_does() {
        let (mut catalog, now) = catalog_with("s", 1, 10);
        catalog
            .split_shard(split("s", "0", "2"), now)
            .expect("split accepted");
        let done_at = now + 1_234;
        complete_due(&mut catalog, done_at);
        let shards = describe(&catalog, done_at).shards;
        let end =
            SequenceNumber::parse(shards[0].ending_sequence_number.as_deref().expect("closed"))
                .expect("ours");
        let child = SequenceNumber::parse(&shards[1].starting_sequence_number).expect("ours");
        assert_eq!(end.position, sequence_number::POSITION_MAX);
        assert_eq!(end.shard_index, 0);
        assert_eq!(child.shard_created_s, done_at / 1000 + 1);
        assert_eq!(child.shard_created_s - 1, done_at / 1000);
        assert_eq!(
            SequenceNumber::new(child.shard_created_s, 1, 0, child.shard_created_s),
            child
        );
        assert_eq!(
            end,
            SequenceNumber::new(
                T0 / 1000 - 2,
                0,
                sequence_number::POSITION_MAX,
                done_at / 1000
            )
        );
    }

    #[test]
    fn split_shard_refuses_keys_not_strictly_inside_the_shard_with_the_aws_text() {
        let (mut catalog, now) = catalog_with("s", 3, 10);
        let expected = |key: &str, shard: u32, start: &str, end: &str| {
            Err(format!(
                "NewStartingHashKey {key} used in SplitShard() on shard shardId-00000000000{shard} in stream s under account {ACCOUNT} is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's EndingHashKey {end}."
            ))
        };
        let third = THIRD.to_string();
        assert_eq!(
            message(catalog.split_shard(split("s", "shard-0", "1"), now)),
            expected("1", 0, "0", &third)
        );
        assert_eq!(
            message(catalog.split_shard(split("s", "shard-0", &third), now)),
            expected(&third, 0, "0", &third)
        );
        let nines = "999999999999999999999999999999999999999";
        assert_eq!(
            message(catalog.split_shard(split("s", "shard-2", nines), now)),
            expected(
                nines,
                2,
                "226854911280625642308916404954512140970",
                &u128::MAX.to_string()
            )
        );
        catalog
            .split_shard(split("s", "shard-0", "2"), now)
            .expect("2 is the smallest key allowed");
    }

    #[test]
    fn split_shard_reports_missing_shards_streams_and_states_in_aws_order() {
        let (mut catalog, now) = catalog_with("s", 1, 10);
        assert_eq!(
            catalog.split_shard(split("x", "2147483647", "0"), now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
        assert_eq!(
            catalog.split_shard(split("x", "2147483648", "0"), now),
            Err(KinesisError::shard_unparsable("2147483648", "x", ACCOUNT))
        );
        assert_eq!(
            catalog.split_shard(split("s", "shardId-5", "0"), now),
            Err(KinesisError::shard_unparsable(
                "shardId-000000000005",
                "s",
                ACCOUNT
            ))
        );
        catalog
            .split_shard(split("s", "0", "10"), now)
            .expect("accepted");
        assert_eq!(
            catalog.split_shard(split("s", "0", "20"), now + 1),
            Err(KinesisError::stream_not_active("s", ACCOUNT, "UPDATING"))
        );
        complete_due(&mut catalog, now + 500);
        assert_eq!(
            message(catalog.split_shard(split("s", "0", "20"), now + 600)),
            Err(format!(
                "Shard shardId-000000000000 in stream s under account {ACCOUNT} has already been merged or split, and thus is not eligible for merging or splitting."
            ))
        );
    }

    #[test]
    fn split_shard_over_the_shard_limit_gives_the_exact_aws_message() {
        let (mut catalog, now) = catalog_with("s", 2, 2);
        let error = catalog
            .split_shard(split("s", "0", "2"), now)
            .expect_err("over the limit");
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert_eq!(
            error.message,
            "This request would exceed the shard limit for the account 000000000000 in us-east-1. Current shard count for the account: 2. Limit: 2. Number of additional shards that would have resulted from this request: 1. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits."
        );
    }

    #[test]
    fn resharding_an_on_demand_stream_is_a_validation_error() {
        let mut catalog = Catalog::new(CatalogConfig::default());
        let input = CreateStreamInput {
            stream_name: "od".into(),
            shard_count: None,
            stream_mode: Some(StreamMode::OnDemand),
            tags: Vec::new(),
        };
        catalog
            .create_stream(input, T0, &mut |i| i)
            .expect("created");
        let now = T0 + 1_000;
        let expected = Err(KinesisError::new(
            ErrorKind::Validation,
            format!("Request is invalid. Stream od under account {ACCOUNT} is in On-Demand mode."),
        ));
        assert_eq!(catalog.split_shard(split("od", "0", "5"), now), expected);
        assert_eq!(catalog.merge_shards(merge("od", "0", "1"), now), expected);
        let scale = UpdateShardCountInput {
            stream_name: "od".into(),
            target_shard_count: 5,
        };
        assert_eq!(catalog.update_shard_count(scale, now).map(|_| ()), expected);
    }

    #[test]
    fn merge_shards_makes_one_child_with_both_parents_covering_the_union() {
        let (mut catalog, now) = catalog_with("s", 3, 10);
        catalog
            .merge_shards(merge("s", "r-0", "r-1"), now)
            .expect("merge accepted");
        let updating = describe(&catalog, now + 1);
        assert_eq!(updating.stream_status, StreamStatus::Updating);
        assert_eq!(updating.shards.len(), 3);
        let due = catalog.due_reshards(now + 500);
        let closing: Vec<u32> = due[0].closing.iter().map(|c| c.shard_index).collect();
        assert_eq!(closing, vec![0, 1]);
        let completed = complete_due(&mut catalog, now + 500);
        assert_eq!(completed[0].closed, vec![(0, 5), (1, 15)]);
        assert_eq!(completed[0].opened, vec![3]);
        let shards = describe(&catalog, now + 500).shards;
        assert_eq!(shards.len(), 4);
        assert_eq!(
            shards[3].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
        assert_eq!(
            shards[3].adjacent_parent_shard_id.as_deref(),
            Some("shardId-000000000001")
        );
        assert_eq!(shards[3].hash_key_range, HashRange::new(0, 2 * THIRD + 1));
        assert!(shards[0].ending_sequence_number.is_some());
        assert!(shards[1].ending_sequence_number.is_some());
        assert!(shards[2].ending_sequence_number.is_none());
        assert_eq!(catalog.streams["s"].open_shard_count(), 2);
    }

    #[test]
    fn merge_shards_refuses_non_adjacent_and_inverted_pairs_with_the_aws_text() {
        let (mut catalog, now) = catalog_with("s", 3, 10);
        let not_adjacent = |a: &str, b: &str| {
            Err(format!(
                "Shards {a} and {b} in stream s under account {ACCOUNT} are not an adjacent pair of shards eligible for merging"
            ))
        };
        assert_eq!(
            message(catalog.merge_shards(merge("s", "x-0", "x-2"), now)),
            not_adjacent("shardId-000000000000", "shardId-000000000002")
        );
        assert_eq!(
            message(catalog.merge_shards(merge("s", "x-1", "x-0"), now)),
            not_adjacent("shardId-000000000001", "shardId-000000000000")
        );
        assert_eq!(
            catalog.merge_shards(merge("s", "x-0", "shardId-5"), now),
            Err(KinesisError::shard_unparsable(
                "shardId-000000000005",
                "s",
                ACCOUNT
            ))
        );
        assert_eq!(
            catalog.merge_shards(merge("s", "2.14E4", "0"), now),
            Err(KinesisError::shard_unparsable("2.14E4", "s", ACCOUNT))
        );
        assert_eq!(
            catalog.merge_shards(merge("x", "0", "2147483647"), now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
        let mut creating = catalog.clone();
        creating.streams.get_mut("s").expect("s").lifecycle = Lifecycle::Creating {
            active_at_ms: now + 10,
        };
        assert_eq!(
            creating.merge_shards(merge("s", "0", "1"), now),
            Err(KinesisError::stream_not_active("s", ACCOUNT, "CREATING"))
        );
    }

    #[test]
    fn child_shards_name_both_parents_of_a_merge_and_nothing_for_an_open_shard() {
        let (mut catalog, now) = catalog_with("s", 2, 10);
        catalog
            .merge_shards(merge("s", "0", "1"), now)
            .expect("accepted");
        complete_due(&mut catalog, now + 500);
        let stream = &catalog.streams["s"];
        let expected = vec![ChildShard {
            shard_id: "shardId-000000000002".into(),
            parent_shards: vec!["shardId-000000000000".into(), "shardId-000000000001".into()],
            hash_key_range: HashRange::ALL,
        }];
        assert_eq!(stream.child_shards(0), expected);
        assert_eq!(stream.child_shards(1), expected);
        assert!(stream.child_shards(2).is_empty());
    }

    #[test]
    fn update_shard_count_doubles_by_splitting_each_shard_once() {
        let (mut catalog, now) = catalog_with("s", 3, 10);
        let out = catalog
            .update_shard_count(
                UpdateShardCountInput {
                    stream_name: "s".into(),
                    target_shard_count: 6,
                },
                now,
            )
            .expect("accepted");
        assert_eq!((out.current_shard_count, out.target_shard_count), (3, 6));
        assert_eq!(
            out.stream_arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/s"
        );
        let steps = &catalog.streams["s"]
            .control
            .pending_reshard
            .as_ref()
            .expect("pending")
            .steps;
        assert_eq!(steps.len(), 3);
        assert!(
            steps
                .iter()
                .all(|step| matches!(step, ReshardStep::Split { .. }))
        );
        complete_due(&mut catalog, now + 500);
        let stream = &catalog.streams["s"];
        assert_eq!(stream.open_shard_count(), 6);
        assert_eq!(stream.shards.len(), 9);
    }

    #[test]
    fn update_shard_count_checks_its_bounds_and_the_rolling_daily_limit() {
        let (mut catalog, mut now) = catalog_with("s", 4, 100);
        let scale = |target| UpdateShardCountInput {
            stream_name: "s".into(),
            target_shard_count: target,
        };
        let kind =
            |r: Result<UpdateShardCountOutput, KinesisError>| r.map(|_| ()).map_err(|e| e.kind);
        assert_eq!(
            message(catalog.update_shard_count(scale(9), now)),
            Err("UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: 4 Target shard count: 9".into())
        );
        assert_eq!(
            kind(catalog.update_shard_count(scale(1), now)),
            Err(ErrorKind::LimitExceeded)
        );
        assert_eq!(
            kind(catalog.update_shard_count(scale(10_001), now)),
            Err(ErrorKind::LimitExceeded)
        );
        assert_eq!(
            kind(catalog.update_shard_count(scale(0), now)),
            Err(ErrorKind::Validation)
        );
        let first_ms = now;
        for i in 0..10 {
            let target = if i % 2 == 0 { 5 } else { 4 };
            catalog
                .update_shard_count(scale(target), now)
                .expect("within the daily limit");
            now += 600;
            complete_due(&mut catalog, now);
        }
        let error = catalog
            .update_shard_count(scale(5), now)
            .expect_err("eleventh call");
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert!(
            error.message.contains("10 times in the last 24 hours"),
            "{}",
            error.message
        );
        catalog
            .update_shard_count(scale(5), first_ms + SCALING_WINDOW_MS + 1)
            .expect("the first call left the window");
    }

    #[test]
    fn update_shard_count_respects_the_account_shard_limit() {
        let (mut catalog, now) = catalog_with("s", 4, 6);
        let error = catalog
            .update_shard_count(
                UpdateShardCountInput {
                    stream_name: "s".into(),
                    target_shard_count: 8,
                },
                now,
            )
            .expect_err("over the account limit");
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert!(error.message.contains("Current shard count for the account: 4. Limit: 6. Number of additional shards that would have resulted from this request: 4."));
    }

    #[test]
    fn list_shards_filters_follow_the_lineage_after_a_reshard() {
        let (mut catalog, now) = catalog_with("s", 2, 10);
        catalog
            .split_shard(split("s", "0", "1000"), now)
            .expect("accepted");
        let done_at = now + 10_000;
        complete_due(&mut catalog, done_at);
        let list = |filter: Option<ShardFilter>, at_ms: u64| -> Vec<String> {
            let input = ListShardsInput {
                stream_name: Some("s".into()),
                next_token: None,
                exclusive_start_shard_id: None,
                max_results: None,
                stream_creation_timestamp_ms: None,
                shard_filter: filter,
            };
            let out = catalog.list_shards(input, at_ms).expect("listed");
            out.shards.into_iter().map(|s| s.shard_id).collect()
        };
        let id = |i: u32| format_shard_id(i);
        assert_eq!(
            list(Some(ShardFilter::AtLatest), done_at),
            vec![id(1), id(2), id(3)]
        );
        assert_eq!(
            list(Some(ShardFilter::AtTrimHorizon), done_at),
            vec![id(0), id(1)]
        );
        assert_eq!(list(None, done_at), vec![id(0), id(1), id(2), id(3)]);
        assert_eq!(
            list(Some(ShardFilter::AtTimestamp(now)), done_at),
            vec![id(0), id(1)]
        );
        // Past the retention period the closed parent drops out of the default listing.
        let later = done_at + 25 * 3_600_000;
        assert_eq!(list(None, later), vec![id(1), id(2), id(3)]);
        assert_eq!(
            list(Some(ShardFilter::FromTimestamp(0)), later),
            vec![id(1), id(2), id(3)]
        );
        assert_eq!(
            list(Some(ShardFilter::AtTrimHorizon), later),
            vec![id(1), id(2), id(3)]
        );
    }

    #[test]
    fn a_reshard_of_a_deleted_stream_is_never_completed() {
        let (mut catalog, now) = catalog_with("s", 1, 10);
        catalog
            .split_shard(split("s", "0", "5"), now)
            .expect("accepted");
        catalog
            .delete_stream(
                crate::api::DeleteStreamInput {
                    stream_name: "s".into(),
                    enforce_consumer_deletion: false,
                },
                now + 1,
            )
            .expect("deleted");
        assert!(catalog.due_reshards(now + 1_000).is_empty());
        let created_ms = catalog.streams["s"].created_ms;
        assert_eq!(
            catalog.complete_reshard("s", created_ms, now + 1_000, &|_| 0, &mut |i| i),
            None
        );
    }

    #[test]
    fn a_pending_reshard_survives_a_json_round_trip() {
        let (mut catalog, now) = catalog_with("s", 3, 20);
        catalog
            .update_shard_count(
                UpdateShardCountInput {
                    stream_name: "s".into(),
                    target_shard_count: 5,
                },
                now,
            )
            .expect("accepted");
        let json = serde_json::to_string(&catalog).expect("serializes");
        let back: Catalog = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, catalog);
    }

    #[test]
    fn a_catalog_written_before_the_control_state_still_loads() {
        let (catalog, _) = catalog_with("s", 1, 10);
        let json = serde_json::to_string(&catalog).expect("serializes");
        let control =
            serde_json::to_string(&crate::control::StreamControl::default()).expect("serializes");
        let account =
            serde_json::to_string(&crate::control::AccountSettings::default()).expect("serializes");
        let old = json
            .replace(&format!(",\"control\":{control}"), "")
            .replace(&format!(",\"account\":{account}"), "");
        assert!(
            !old.contains("control") && !old.contains("account\""),
            "{old}"
        );
        let back: Catalog = serde_json::from_str(&old).expect("old layout parses");
        assert_eq!(back, catalog);
    }

    /// Checks the lineage invariants over every shard of `stream`.
    fn check_lineage(stream: &Stream) -> Result<(), TestCaseError> {
        let mut open: Vec<HashRange> = stream
            .shards
            .iter()
            .filter(|s| s.closed_at_position.is_none())
            .map(|s| s.hash_range)
            .collect();
        open.sort();
        prop_assert_eq!(open.first().map(|r| r.starting), Some(0));
        prop_assert_eq!(open.last().map(|r| r.ending), Some(u128::MAX));
        for pair in open.windows(2) {
            prop_assert_eq!(pair[0].ending.checked_add(1), Some(pair[1].starting));
        }
        for shard in &stream.shards {
            let parents: Vec<&Shard> = shard
                .parent
                .into_iter()
                .chain(shard.adjacent_parent)
                .map(|i| stream.shard(i).expect("parents exist"))
                .collect();
            for parent in &parents {
                prop_assert!(parent.closed_at_position.is_some());
                prop_assert!(parent.index < shard.index);
            }
            match parents.as_slice() {
                [] => {}
                [single] => {
                    prop_assert!(single.hash_range.starting <= shard.hash_range.starting);
                    prop_assert!(shard.hash_range.ending <= single.hash_range.ending);
                }
                [low, high] => {
                    prop_assert_eq!(shard.hash_range.starting, low.hash_range.starting);
                    prop_assert_eq!(shard.hash_range.ending, high.hash_range.ending);
                }
                _ => prop_assert!(false, "more than two parents"),
            }
            if shard.closed_at_position.is_some() && !stream.child_shards(shard.index).is_empty() {
                let mut covered: Vec<HashRange> = stream
                    .shards
                    .iter()
                    .filter(|c| c.parent == Some(shard.index) && c.adjacent_parent.is_none())
                    .map(|c| c.hash_range)
                    .collect();
                if !covered.is_empty() {
                    covered.sort();
                    prop_assert_eq!(covered[0].starting, shard.hash_range.starting);
                    prop_assert_eq!(covered[covered.len() - 1].ending, shard.hash_range.ending);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn update_shard_count_reaches_a_uniform_split_with_at_most_two_parents_per_child(
            initial in 1u32..40,
            targets in proptest::collection::vec(0.0f64..1.0, 1..5),
        ) {
            let (mut catalog, mut now) = catalog_with("s", initial, 100_000);
            for fraction in targets {
                let current = catalog.streams["s"].open_shard_count();
                let low = current.div_ceil(2);
                let high = (current * 2).min(SHARDS_PER_STREAM_MAX);
                let target = low + ((f64::from(high - low)) * fraction) as u32;
                catalog
                    .update_shard_count(UpdateShardCountInput { stream_name: "s".into(), target_shard_count: target }, now)
                    .expect("within bounds");
                now += 1_000;
                let first_new = catalog.streams["s"].shards.len() as u32;
                let completed = complete_due(&mut catalog, now);
                // Shards that existed close at their tip; intermediates, never open for
                // writes, at position 0.
                for (index, position) in completed.iter().flat_map(|c| c.closed.iter().copied()) {
                    let expected = if index >= first_new { 0 } else { u64::from(index) * 10 + 5 };
                    prop_assert_eq!(position, expected);
                }
                let stream = &catalog.streams["s"];
                prop_assert_eq!(stream.open_shard_count(), target);
                check_lineage(stream)?;
                let mut open: Vec<HashRange> = stream.shards.iter().filter(|s| s.closed_at_position.is_none()).map(|s| s.hash_range).collect();
                open.sort();
                for (got, want) in open.iter().zip(HashRange::even_split(target)) {
                    prop_assert!(got.starting.abs_diff(want.starting) <= BOUNDARY_SNAP_KEYS);
                }
            }
        }

        #[test]
        fn random_splits_and_merges_keep_the_open_shards_covering_the_key_space(
            ops in proptest::collection::vec((any::<bool>(), any::<u16>(), any::<u128>()), 1..30),
        ) {
            let (mut catalog, mut now) = catalog_with("s", 2, 1_000);
            for (is_split, pick, key) in ops {
                let open: Vec<Shard> = {
                    let mut open: Vec<Shard> = catalog.streams["s"].shards.iter().filter(|s| s.closed_at_position.is_none()).cloned().collect();
                    open.sort_by_key(|s| s.hash_range.starting);
                    open
                };
                let i = usize::from(pick) % open.len();
                if is_split {
                    let range = open[i].hash_range;
                    let width = range.ending - range.starting;
                    let input = split("s", &open[i].index.to_string(), &(range.starting + key % width.max(1)).to_string());
                    let _ = catalog.split_shard(input, now);
                } else if i + 1 < open.len() {
                    let input = merge("s", &open[i].index.to_string(), &open[i + 1].index.to_string());
                    catalog.merge_shards(input, now).expect("adjacent open shards merge");
                }
                now += 1_000;
                complete_due(&mut catalog, now);
                prop_assert_eq!(catalog.streams["s"].status(now), StreamStatus::Active);
                check_lineage(&catalog.streams["s"])?;
            }
        }
    }
}
