//! The write path of PutRecord(s) on the front-end core: route every record by hash key to its
//! shard under the catalog lock, group per shard, append on the owning cores concurrently, and
//! route again the records whose shard a reshard sealed meanwhile. Results keep input order.

use super::*;

/// Records of one write routed to one shard: the target, each record's index in the call and
/// hash key (to route it again if the shard was sealed), and the records themselves.
pub(crate) type RoutedGroup = (ShardTarget, Vec<(usize, u128)>, Vec<AppendRecord>);

/// How long a write whose shard was sealed waits for the reshard to complete before it gives
/// up with InternalFailure, and how often it looks. Completion is one catalog write after the
/// seal, a few milliseconds, and happens only during a reshard, so a short sleep-and-retry is
/// enough; the catalog has no change notifier to wait on.
pub(crate) const SEALED_WAIT_MAX: Duration = Duration::from_secs(10);

pub(crate) const SEALED_RETRY_INTERVAL: Duration = Duration::from_millis(2);

/// The InternalFailure message of a record refused because the disk is full. AWS has no error
/// code for this; InternalFailure is the one SDKs retry, and nothing of the record was stored.
pub(crate) const DISK_FULL_MESSAGE: &str = "Internal service failure: the disk holding the shard's records is full; the record was not stored. Retry after space is freed.";

impl Engine {
    /// Appends to several shards of log `log_id` in one group commit, on the core that owns
    /// it: one cross-core message per log, not one per shard. One outcome per shard, in order.
    pub(crate) async fn append_to_log(
        &self,
        log_id: u32,
        shards: Vec<(&ShardTarget, Vec<AppendRecord>)>,
    ) -> Result<Vec<Result<LogAppended, AppendFailure>>, KinesisError> {
        let owner = self.owner(log_id);
        if owner == self.local.core_id {
            let keys = shard_keys(shards.iter().map(|(target, _)| &target.key));
            let shards = keys
                .into_iter()
                .zip(shards)
                .map(|(key, (_, records))| (key, records))
                .collect();
            Ok(self.append_batch_on_owner(log_id, shards).await)
        } else {
            let shards = shards
                .into_iter()
                .map(|(target, records)| (target.key.clone(), records))
                .collect();
            self.ask(owner, |reply| CoreMessage::Append {
                log_id,
                shards,
                reply,
            })
            .await
        }
    }

    /// Routes and appends `records` (already size-checked), routing again the ones whose shard
    /// a reshard sealed meanwhile. Results are in input order.
    pub(crate) async fn append_entries(
        &self,
        stream_name: &str,
        records: Vec<PutRecordsEntry>,
    ) -> Result<Vec<Result<PutRecordsResultEntry, KinesisError>>, KinesisError> {
        let count = records.len();
        let mut results: Vec<Option<Result<PutRecordsResultEntry, KinesisError>>> =
            vec![None; count];
        // The keys without an explicit hash key are hashed together, in SIMD lanes.
        let keys: Vec<&str> = records
            .iter()
            .filter(|entry| entry.explicit_hash_key.is_none())
            .map(|entry| entry.partition_key.as_str())
            .collect();
        let mut hashed = partition_key_hashes(&keys).into_iter();
        let mut pending: Vec<(usize, u128, AppendRecord)> = records
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                let hash_key = match entry.explicit_hash_key {
                    Some(hash_key) => hash_key,
                    None => hashed
                        .next()
                        .expect("one hash per record without an explicit hash key"),
                };
                (
                    i,
                    hash_key,
                    AppendRecord {
                        partition_key: entry.partition_key,
                        data: entry.data,
                    },
                )
            })
            .collect();
        let deadline = Instant::now() + SEALED_WAIT_MAX;
        while !pending.is_empty() {
            // Route every record to its shard under the catalog lock, then release it before
            // any I/O.
            let mut groups: Vec<RoutedGroup> = Vec::new();
            {
                let catalog = self.catalog_read();
                let stream = match catalog.stream_for_write(stream_name, now_ms()) {
                    Ok(stream) => stream,
                    // The stream went away while records waited for a reshard: those records
                    // fail, the ones already stored keep their results.
                    Err(error) if results.iter().any(Option::is_some) => {
                        for (i, _, _) in pending.drain(..) {
                            results[i] = Some(Err(error.clone()));
                        }
                        break;
                    }
                    Err(error) => return Err(error),
                };
                let router = stream.router();
                // Two passes: route every record, then move each into a group allocated at its
                // exact size. Growing the groups push by push, with a hash map from shard to
                // group, cost ~10 % of binary ingest's server CPU (`perf record`, 500 × 100 B).
                let mut group_of_slot = vec![u32::MAX; router.open_count()];
                let most_groups = router.open_count().min(pending.len());
                groups.reserve_exact(most_groups);
                let mut counts: Vec<usize> = Vec::with_capacity(most_groups);
                let route: Vec<u32> = pending
                    .iter()
                    .map(|(_, hash_key, _)| {
                        let slot = router.slot_for_hash_key(*hash_key);
                        if group_of_slot[slot] == u32::MAX {
                            let shard = router.shard_at(slot);
                            groups.push((
                                self.resolve_target(stream, shard),
                                Vec::new(),
                                Vec::new(),
                            ));
                            counts.push(0);
                            group_of_slot[slot] = u32::try_from(groups.len() - 1)
                                .expect("a write touches fewer than 2^32 shards");
                        }
                        let g = group_of_slot[slot];
                        counts[g as usize] += 1;
                        g
                    })
                    .collect();
                for ((_, indexes, records), &n) in groups.iter_mut().zip(&counts) {
                    indexes.reserve_exact(n);
                    records.reserve_exact(n);
                }
                for ((i, hash_key, record), g) in pending.drain(..).zip(route) {
                    let (_, indexes, records) = &mut groups[g as usize];
                    indexes.push((i, hash_key));
                    records.push(record);
                }
            }
            // One append per log (so per owning core) holding all of its shards.
            let mut logs: Vec<(u32, Vec<usize>)> = Vec::new();
            let mut records_of: Vec<Vec<AppendRecord>> = Vec::with_capacity(groups.len());
            for (g, (target, _, records)) in groups.iter_mut().enumerate() {
                match logs.iter_mut().find(|(log_id, _)| *log_id == target.log_id) {
                    Some((_, members)) => members.push(g),
                    None => logs.push((target.log_id, vec![g])),
                }
                records_of.push(std::mem::take(records));
            }
            let appends = logs.iter().map(|(log_id, members)| {
                let shards: Vec<(&ShardTarget, Vec<AppendRecord>)> = members
                    .iter()
                    .map(|&g| (&groups[g].0, std::mem::take(&mut records_of[g])))
                    .collect();
                self.append_to_log(*log_id, shards)
            });
            let mut outcomes: Vec<
                Option<Result<Result<LogAppended, AppendFailure>, KinesisError>>,
            > = std::iter::repeat_with(|| None).take(groups.len()).collect();
            for ((_, members), outcome) in logs.iter().zip(join_all(appends).await) {
                match outcome {
                    Ok(per_shard) => {
                        assert_eq!(per_shard.len(), members.len(), "one outcome per shard");
                        for (&g, outcome) in members.iter().zip(per_shard) {
                            outcomes[g] = Some(Ok(outcome));
                        }
                    }
                    Err(error) => {
                        for &g in members {
                            outcomes[g] = Some(Err(error.clone()));
                        }
                    }
                }
            }
            for ((target, indexes, _), outcome) in groups.into_iter().zip(outcomes) {
                let outcome = outcome.expect("every routed group has an outcome");
                match outcome {
                    Ok(Ok(LogAppended {
                        first_position,
                        arrival_ms,
                    })) => {
                        // Formatted once per shard: per record it cost ~5 % of binary ingest.
                        let shard_id: Arc<str> = format_shard_id(target.key.shard_index).into();
                        for (k, (i, _)) in indexes.into_iter().enumerate() {
                            results[i] = Some(Ok(PutRecordsResultEntry {
                                shard_id: shard_id.clone(),
                                sequence_number: target.origin().sequence_number(RecordStamp {
                                    position: first_position + k as u64,
                                    arrival_ms,
                                }),
                            }));
                        }
                    }
                    Ok(Err(AppendFailure::Sealed(records))) => {
                        pending.extend(
                            indexes
                                .into_iter()
                                .zip(records)
                                .map(|((i, hash_key), record)| (i, hash_key, record)),
                        );
                    }
                    Ok(Err(AppendFailure::Throttled { appended, admitted })) => {
                        let shard_id: Arc<str> = format_shard_id(target.key.shard_index).into();
                        for (k, (i, _)) in indexes.into_iter().enumerate() {
                            results[i] = Some(match appended {
                                Some(LogAppended {
                                    first_position,
                                    arrival_ms,
                                }) if k < admitted => Ok(PutRecordsResultEntry {
                                    shard_id: shard_id.clone(),
                                    sequence_number: target.origin().sequence_number(RecordStamp {
                                        position: first_position + k as u64,
                                        arrival_ms,
                                    }),
                                }),
                                _ => Err(KinesisError::new(
                                    sluice_core::error::ErrorKind::ProvisionedThroughputExceeded,
                                    format!(
                                        "Rate exceeded for shard {shard_id} in stream {stream_name} under account {}.",
                                        self.shared.catalog_config.account_id
                                    ),
                                )),
                            });
                        }
                    }
                    Ok(Err(AppendFailure::DiskFull)) => {
                        for (i, _) in indexes {
                            results[i] = Some(Err(KinesisError::internal(DISK_FULL_MESSAGE)));
                        }
                    }
                    Ok(Err(AppendFailure::Failed(reason))) => {
                        tracing::debug!(stream_name, %reason, "Append failed on the shard's core.");
                        for (i, _) in indexes {
                            results[i] =
                                Some(Err(KinesisError::internal("Internal service failure.")));
                        }
                    }
                    Err(_) => {
                        for (i, _) in indexes {
                            results[i] =
                                Some(Err(KinesisError::internal("Internal service failure.")));
                        }
                    }
                }
            }
            if !pending.is_empty() {
                if Instant::now() >= deadline {
                    tracing::warn!(
                        stream_name,
                        records = pending.len(),
                        "Writes to sealed shards gave up waiting for the reshard."
                    );
                    for (i, _, _) in pending.drain(..) {
                        results[i] = Some(Err(KinesisError::internal("Internal service failure.")));
                    }
                    break;
                }
                // The reshard that sealed these shards completes with one catalog write.
                glommio::timer::sleep(SEALED_RETRY_INTERVAL).await;
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(KinesisError::internal("Internal service failure."))))
            .collect())
    }

    pub(crate) fn resolve_target(&self, stream: &Stream, shard: &Shard) -> ShardTarget {
        ShardTarget::new(stream, shard)
    }
}
