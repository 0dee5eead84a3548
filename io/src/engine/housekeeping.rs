//! Periodic work: core 0 reaps deleted streams and completes due reshards (seal on the owning
//! cores, then one catalog change at the sealed tips); every core trims whole segments past
//! retention.

use super::*;

/// Periodic work of each core: core 0 reaps deleted streams; every core trims whole segments
/// past retention.
pub(crate) async fn housekeeping_loop(engine: Engine) {
    let mut ticks: u64 = 0;
    loop {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        ticks += 1;
        if engine.local.core_id == 0 {
            engine.reap_deleted_streams().await;
        }
        if ticks.is_multiple_of(60) {
            engine.enforce_retention().await;
        }
    }
}

/// How often core 0 looks for reshards whose UPDATING window has passed. The window is the
/// operator's (`--update-delay-ms`, 500 ms by default); this only bounds how long past it a
/// reshard waits.
pub(crate) const RESHARD_TICK: Duration = Duration::from_millis(50);

/// Core 0 completes due reshards (see the module doc).
pub(crate) async fn reshard_loop(engine: Engine) {
    loop {
        glommio::timer::sleep(RESHARD_TICK).await;
        engine.complete_due_reshards().await;
    }
}

impl Engine {
    pub(crate) async fn reap_deleted_streams(&self) {
        let now = now_ms();
        let due = {
            let catalog = self.catalog_read();
            catalog.streams.values().any(|s| {
                matches!(s.lifecycle, sluice_core::catalog::Lifecycle::Deleting { gone_at_ms } if gone_at_ms <= now)
            })
        };
        if !due {
            return;
        }
        let removed: Vec<RemovedStream> = match self.mutate_catalog(|c| Ok(c.reap(now))).await {
            Ok(removed) => removed,
            Err(_) => return,
        };
        let mut per_core: Vec<Vec<(u32, OwnedShardKey)>> = vec![Vec::new(); self.shared.cores];
        for stream in removed {
            for shard in stream.shards {
                per_core[self.owner(shard.log_id)].push((
                    shard.log_id,
                    OwnedShardKey {
                        stream_name: stream.name.clone(),
                        stream_created_ms: stream.created_ms,
                        shard_index: shard.index,
                    },
                ));
            }
        }
        for (core, keys) in per_core.into_iter().enumerate() {
            if !keys.is_empty() {
                let _ = self.send(core, CoreMessage::DropShards { keys }).await;
            }
        }
    }

    pub(crate) async fn enforce_retention(&self) {
        let now = now_ms();
        let retention: HashMap<(String, u64), u64> = {
            let catalog = self.catalog_read();
            catalog
                .streams
                .values()
                .map(|s| {
                    (
                        (s.name.clone(), s.created_ms),
                        u64::from(s.retention_period_hours) * 3_600_000,
                    )
                })
                .collect()
        };
        let lookup = |key: &ShardKey| {
            retention
                .get(&(key.stream_name.to_string(), key.stream_created_ms))
                .copied()
        };
        for (log_id, log) in &self.local.logs {
            match log.enforce_retention(&lookup, now).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(log_id, removed, "Trimmed segments past retention."),
                Err(e) => tracing::warn!(log_id, error = %e, "Retention pass failed."),
            }
        }
    }

    /// Chooses the log for a new shard: the core with the fewest open shards, so ownership
    /// stays balanced.
    pub(crate) fn placement(catalog: &Catalog, cores: usize) -> Vec<u32> {
        let mut load = vec![0u32; cores];
        for stream in catalog.streams.values() {
            for shard in &stream.shards {
                if shard.closed_at_position.is_none() {
                    load[shard.log_id as usize % cores] += 1;
                }
            }
        }
        load
    }

    /// Completes every reshard whose UPDATING window has passed (core 0's `reshard_loop`).
    pub(crate) async fn complete_due_reshards(&self) {
        let due = self.catalog_read().due_reshards(now_ms());
        for reshard in due {
            if let Err(error) = self.complete_reshard(&reshard).await {
                tracing::warn!(stream_name = %reshard.stream_name, %error, "Reshard not completed; will retry.");
            }
        }
    }

    /// Seals the shards `due` closes on their owning cores, then completes the reshard in the
    /// catalog at their tips, placing each new shard on the core with the fewest open shards.
    pub(crate) async fn complete_reshard(&self, due: &DueReshard) -> Result<(), KinesisError> {
        let cores = self.shared.cores;
        let mut per_core: Vec<Vec<(u32, OwnedShardKey)>> = vec![Vec::new(); cores];
        for closing in &due.closing {
            per_core[self.owner(closing.log_id)].push((
                closing.log_id,
                OwnedShardKey {
                    stream_name: due.stream_name.clone(),
                    stream_created_ms: due.stream_created_ms,
                    shard_index: closing.shard_index,
                },
            ));
        }
        let seals = per_core
            .into_iter()
            .enumerate()
            .filter(|(_, shards)| !shards.is_empty())
            .map(|(core, shards)| async move {
                let indexes: Vec<u32> = shards.iter().map(|(_, key)| key.shard_index).collect();
                let tips = if core == self.local.core_id {
                    self.seal_on_owner(shards).await
                } else {
                    self.ask(core, |reply| CoreMessage::Seal { shards, reply })
                        .await?
                };
                Ok::<_, KinesisError>(indexes.into_iter().zip(tips).collect::<Vec<_>>())
            });
        let mut tips: HashMap<u32, u64> = HashMap::new();
        for sealed in join_all(seals).await {
            tips.extend(sealed?);
        }
        let now = now_ms();
        let completed = self
            .mutate_catalog(|catalog| {
                let mut load = Engine::placement(catalog, cores);
                for closing in &due.closing {
                    let core = self.owner(closing.log_id);
                    load[core] = load[core].saturating_sub(1);
                }
                Ok(catalog.complete_reshard(
                    &due.stream_name,
                    due.stream_created_ms,
                    now,
                    &|index| {
                        *tips
                            .get(&index)
                            .expect("due_reshards names every open shard the reshard closes")
                    },
                    &mut |_shard_index| least_loaded(&mut load),
                ))
            })
            .await?;
        if let Some(completed) = completed {
            tracing::info!(
                stream_name = %due.stream_name,
                closed = completed.closed.len(),
                opened = completed.opened.len(),
                "Reshard completed."
            );
        }
        Ok(())
    }
}

/// The core with the fewest open shards, counted into `load`: where a new shard goes.
pub(crate) fn least_loaded(load: &mut [u32]) -> u32 {
    let (core, _) = load
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .expect("at least one core");
    load[core] += 1;
    u32::try_from(core).expect("core count fits u32")
}
