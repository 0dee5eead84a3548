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
    /// Appends on the core that owns `log_id`. The seal check and the in-flight count happen
    /// before the first await, so a seal on this core orders strictly before or after the
    /// append. The append itself runs as a detached task that keeps the count until the log
    /// has answered, even when the caller goes away, so a seal never reports a tip that an
    /// accepted append later moves.
    pub(crate) fn append_on_owner(
        &self,
        log_id: u32,
        key: ShardKey,
        mut records: Vec<AppendRecord>,
    ) -> impl Future<Output = Result<LogAppended, AppendFailure>> + 'static + use<> {
        let requested = records.len();
        // Throughput limits are checked after the seal (a sealed shard takes no tokens) and
        // before the append, on this core, which sees every write to the shard.
        let sealed = self.local.sealed.borrow().contains(&key);
        let admitted = if sealed {
            requested
        } else {
            self.local.admit_writes(&key, &records)
        };
        records.truncate(admitted);
        let started = if sealed {
            Err(AppendFailure::Sealed(records))
        } else if admitted == 0 {
            Err(AppendFailure::Throttled {
                appended: None,
                admitted: 0,
            })
        } else {
            match self.local_log(log_id) {
                None => Err(AppendFailure::Failed(format!(
                    "log {log_id} is not open on core {}",
                    self.local.core_id
                ))),
                Some(log) => {
                    let log = log.clone();
                    let local = self.local.clone();
                    local.begin_append(&key);
                    Ok(glommio::spawn_local(async move {
                        let appended = log.append(&key, records).await;
                        local.end_append(&key);
                        appended
                    })
                    .detach())
                }
            }
        };
        async move {
            match started?.await {
                Some(Ok(appended)) if admitted < requested => Err(AppendFailure::Throttled {
                    appended: Some(appended),
                    admitted,
                }),
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
            }
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
