//! Work on the core that owns a shard's log: the in-flight count and seal of each shard (so a
//! reshard's seal reports a tip no accepted append moves afterwards), throughput admission, the
//! append itself, and locating positions in the local log.

use super::*;

impl CoreState {
    pub(crate) fn new(
        core_id: usize,
        logs: HashMap<u32, Rc<Log>>,
        throughput_limits: bool,
    ) -> Self {
        let throttles = throughput_limits.then(RefCell::default);
        Self {
            core_id,
            logs,
            sealed: RefCell::default(),
            in_flight: RefCell::default(),
            throttles,
        }
    }

    /// How many of `records`, from the first, the shard's write limits admit now (all of them
    /// when limits are off).
    pub(crate) fn admit_writes(&self, key: &ShardKey, records: &[AppendRecord]) -> usize {
        let Some(throttles) = &self.throttles else {
            return records.len();
        };
        let now = Instant::now();
        let mut throttles = throttles.borrow_mut();
        let shard = throttles
            .entry(key.clone())
            .or_insert_with(|| crate::kds::throttle::ShardThrottle::new(now));
        shard.admit_writes(
            records.iter().map(|r| r.partition_key.len() + r.data.len()),
            now,
        )
    }

    /// Whether the shard's read limits let one more GetRecords call run now (always when limits
    /// are off).
    pub(crate) fn admit_read(&self, key: &ShardKey) -> bool {
        let Some(throttles) = &self.throttles else {
            return true;
        };
        let now = Instant::now();
        throttles
            .borrow_mut()
            .entry(key.clone())
            .or_insert_with(|| crate::kds::throttle::ShardThrottle::new(now))
            .admit_read_call(now)
    }

    /// Charges the data bytes a GetRecords call returned against the shard's read limit.
    pub(crate) fn charge_read(&self, key: &ShardKey, read: &LogRead) {
        let Some(throttles) = &self.throttles else {
            return;
        };
        let mut bytes = 0usize;
        read.for_each(&mut |_, _, _, data| bytes += data.len());
        let now = Instant::now();
        if let Some(shard) = throttles.borrow_mut().get_mut(key) {
            shard.charge_read_bytes(bytes, now);
        }
    }

    pub(crate) fn begin_append(&self, key: &ShardKey) {
        self.in_flight
            .borrow_mut()
            .entry(key.clone())
            .or_default()
            .appends += 1;
    }

    pub(crate) fn end_append(&self, key: &ShardKey) {
        let mut in_flight = self.in_flight.borrow_mut();
        let entry = in_flight
            .get_mut(key)
            .expect("an append in flight was counted");
        assert!(entry.appends > 0);
        entry.appends -= 1;
        if entry.appends == 0 {
            let entry = in_flight.remove(key).expect("looked up just before");
            for waiter in entry.drained {
                let _ = waiter.send(());
            }
        }
    }

    /// A receiver that resolves once no append accepted for `key` is still in flight; `None`
    /// when none is.
    pub(crate) fn drained(&self, key: &ShardKey) -> Option<oneshot::Receiver<()>> {
        let mut in_flight = self.in_flight.borrow_mut();
        let entry = in_flight.get_mut(key)?;
        let (tx, rx) = oneshot::channel();
        entry.drained.push(tx);
        Some(rx)
    }
}

impl Engine {
    /// Appends `records` to one shard on the core that owns `log_id`; see
    /// [`Engine::append_batch_on_owner`].
    #[cfg(test)]
    pub(crate) fn append_on_owner(
        &self,
        log_id: u32,
        key: ShardKey,
        records: Vec<AppendRecord>,
    ) -> impl Future<Output = Result<LogAppended, AppendFailure>> + 'static + use<> {
        let batch = self.append_batch_on_owner(log_id, vec![(key, records)]);
        async move {
            batch
                .await
                .pop()
                .expect("one outcome per shard appended to")
        }
    }

    /// Appends records to several shards of `log_id` on the core that owns it, in one log
    /// append (one group commit), and answers one outcome per shard, in order. The seal checks
    /// and the in-flight counts happen before the first await, so a seal on this core orders
    /// strictly before or after the append. The append itself runs as one detached task that
    /// keeps the counts until the log has answered, even when the caller goes away, so a seal
    /// never reports a tip that an accepted append later moves.
    pub(crate) fn append_batch_on_owner(
        &self,
        log_id: u32,
        shards: Vec<(ShardKey, Vec<AppendRecord>)>,
    ) -> impl Future<Output = Vec<Result<LogAppended, AppendFailure>>> + 'static + use<> {
        // Per shard: the outcome known before any I/O, or how many records were admitted and
        // go into the log append.
        let mut outcomes: Vec<Result<usize, AppendFailure>> = Vec::with_capacity(shards.len());
        let mut admitted_parts: Vec<(ShardKey, Vec<AppendRecord>)> = Vec::new();
        let mut requested_counts: Vec<usize> = Vec::new();
        let log = self.local_log(log_id).cloned();
        for (key, mut records) in shards {
            let requested = records.len();
            // Throughput limits are checked after the seal (a sealed shard takes no tokens)
            // and before the append, on this core, which sees every write to the shard.
            if self.local.sealed.borrow().contains(&key) {
                outcomes.push(Err(AppendFailure::Sealed(records)));
                continue;
            }
            let admitted = self.local.admit_writes(&key, &records);
            if admitted == 0 {
                outcomes.push(Err(AppendFailure::Throttled {
                    appended: None,
                    admitted: 0,
                }));
                continue;
            }
            if log.is_none() {
                outcomes.push(Err(AppendFailure::Failed(format!(
                    "log {log_id} is not open on core {}",
                    self.local.core_id
                ))));
                continue;
            }
            records.truncate(admitted);
            outcomes.push(Ok(admitted));
            requested_counts.push(requested);
            admitted_parts.push((key, records));
        }
        let task = log.filter(|_| !admitted_parts.is_empty()).map(|log| {
            let local = self.local.clone();
            let keys: Vec<ShardKey> = admitted_parts.iter().map(|(key, _)| key.clone()).collect();
            for key in &keys {
                local.begin_append(key);
            }
            glommio::spawn_local(async move {
                let appended = log.append_batch(admitted_parts).await;
                for key in &keys {
                    local.end_append(key);
                }
                appended
            })
            .detach()
        });
        async move {
            let appended = match task {
                None => Ok(Vec::new()),
                Some(task) => match task.await {
                    Some(Ok(appended)) => Ok(appended),
                    // The log already warned once when the disk filled up.
                    Some(Err(e)) if e.is_retryable() => Err(AppendFailure::DiskFull),
                    Some(Err(e)) => {
                        tracing::warn!(log_id, error = %e, "Append failed.");
                        Err(AppendFailure::Failed(e.to_string()))
                    }
                    None => Err(AppendFailure::Failed(
                        "the append task was cancelled".to_owned(),
                    )),
                },
            };
            let mut appended = appended.map(Vec::into_iter);
            let mut requested = requested_counts.into_iter();
            outcomes
                .into_iter()
                .map(|outcome| {
                    let admitted = outcome?;
                    let requested = requested
                        .next()
                        .expect("a requested count per shard appended to");
                    match &mut appended {
                        Ok(answers) => {
                            let done = answers
                                .next()
                                .expect("the log answers every shard appended to");
                            if admitted < requested {
                                Err(AppendFailure::Throttled {
                                    appended: Some(done),
                                    admitted,
                                })
                            } else {
                                Ok(done)
                            }
                        }
                        Err(failure) => Err(failure.clone()),
                    }
                })
                .collect()
        }
    }

    /// Seals `keys` (all owned by this core) and returns their final tips, in order.
    pub(crate) async fn seal_on_owner(&self, keys: Vec<(u32, OwnedShardKey)>) -> Vec<u64> {
        let keys: Vec<(u32, ShardKey)> = keys
            .into_iter()
            .map(|(log_id, key)| (log_id, key.to_key()))
            .collect();
        {
            let mut sealed = self.local.sealed.borrow_mut();
            for (_, key) in &keys {
                sealed.insert(key.clone());
            }
        }
        let mut tips = Vec::with_capacity(keys.len());
        for (log_id, key) in &keys {
            if let Some(drained) = self.local.drained(key) {
                let _ = drained.await;
            }
            tips.push(
                self.local_log(*log_id)
                    .map_or(0, |log| log.tip(key).next_position),
            );
        }
        tips
    }

    pub(crate) async fn locate(
        &self,
        target: &ShardTarget,
        query: Locate,
    ) -> Result<Location, KinesisError> {
        let owner = self.owner(target.log_id);
        if owner == self.local.core_id {
            let log = self.local_log(target.log_id).ok_or_else(|| {
                KinesisError::internal("The shard's log is not open on its core.")
            })?;
            Ok(locate_local(log, &target.key.to_key(), query))
        } else {
            self.ask(owner, |reply| CoreMessage::Locate {
                log_id: target.log_id,
                shard: target.key.clone(),
                query,
                reply,
            })
            .await
        }
    }

    /// The ProvisionedThroughputExceeded answer of a GetRecords call the shard's read limits
    /// refused; counted in the read metrics here, once per refused call.
    pub(crate) fn read_throttled(&self, target: &ShardTarget) -> KinesisError {
        crate::metrics::record_read_throttled(&target.key.stream_name, target.key.shard_index);
        KinesisError::new(
            sluice_core::error::ErrorKind::ProvisionedThroughputExceeded,
            format!(
                "Rate exceeded for shard {} in stream {} under account {}.",
                format_shard_id(target.key.shard_index),
                target.key.stream_name,
                self.shared.catalog_config.account_id
            ),
        )
    }
}

pub(crate) fn locate_local(log: &Log, key: &ShardKey, query: Locate) -> Location {
    let position = match query {
        Locate::TrimHorizon(retain_after_ms) => log.first_retained_position(key, retain_after_ms),
        Locate::Timestamp(ms) => log.position_at_timestamp(key, ms),
        Locate::Tip => log.tip(key).next_position,
    };
    Location { position }
}
