//! The cross-core mesh: how a core answers the requests other cores (and service cores, through
//! the storage face) send it. Each message runs as its own task so that appends from many cores
//! join the same group commit.

use super::*;

/// Records of a local read copied into one buffer, so they can cross threads.
pub(crate) fn batch_of(
    read: &LogRead,
    origin: ShardOrigin,
    start_position: u64,
    tip: ShardTip,
) -> ReadBatch {
    let mut batch = ReadBatch::new(origin, read.len(), read.data_bytes() + read.key_bytes());
    read.for_each(&mut |position, arrival_ms, partition_key, data| {
        batch.push(position, arrival_ms, partition_key, data);
    });
    debug_assert_eq!(
        batch.payload_bytes(),
        read.data_bytes() + read.key_bytes(),
        "the batch was sized exactly"
    );
    batch.start_position = start_position;
    batch.tip_position = tip.next_position;
    batch.tip_arrival_ms = tip.last_arrival_ms;
    batch
}

impl Engine {
    pub(crate) async fn handle_message(&self, message: CoreMessage) {
        match message {
            CoreMessage::Append {
                log_id,
                shards,
                reply,
            } => {
                let keys = shard_keys(shards.iter().map(|(key, _)| key));
                let shards = keys
                    .into_iter()
                    .zip(shards)
                    .map(|(key, (_, records))| (key, records))
                    .collect();
                let outcomes = self.append_batch_on_owner(log_id, shards).await;
                let _ = reply.send(outcomes);
            }
            CoreMessage::Seal { shards, reply } => {
                let tips = self.seal_on_owner(shards).await;
                let _ = reply.send(tips);
            }
            CoreMessage::Locate {
                log_id,
                shard,
                query,
                reply,
            } => {
                let location = match self.local_log(log_id) {
                    Some(log) => locate_local(log, &shard.to_key(), query),
                    None => Location { position: 0 },
                };
                let _ = reply.send(location);
            }
            CoreMessage::ReadFrom {
                log_id,
                shard,
                origin,
                request,
                mut reply,
            } => {
                let Some(log) = self.local_log(log_id).cloned() else {
                    let _ = reply.send(Err(ReadRefused::LogNotOpen {
                        log_id,
                        core_id: self.local.core_id,
                    }));
                    return;
                };
                let key = shard.to_key();
                // A reader on another core that gave up (its subscription ended) cancels the
                // reply; stop waiting for it then rather than at the deadline.
                let read = {
                    let cancelled = async {
                        reply.cancellation().await;
                        None
                    };
                    futures_lite::future::or(
                        async { Some(self.read_local(&log, &key, &request).await) },
                        cancelled,
                    )
                    .await
                };
                let Some(read) = read else { return };
                let _ = reply
                    .send(read.map(|(read, position, tip)| batch_of(&read, origin, position, tip)));
            }
            CoreMessage::DropShards { keys } => {
                let mut by_log: HashMap<u32, Vec<ShardKey>> = HashMap::new();
                for (log_id, key) in keys {
                    by_log.entry(log_id).or_default().push(key.to_key());
                }
                for (log_id, keys) in by_log {
                    if let Some(log) = self.local_log(log_id) {
                        log.drop_shards(&keys).await;
                    }
                }
            }
        }
    }
}

/// Answers messages from other cores. Each message runs as its own task so that appends from
/// many cores join the same group commit.
pub(crate) async fn serve_inbox(engine: Engine, inbox: async_channel::Receiver<CoreMessage>) {
    while let Ok(message) = inbox.recv().await {
        crate::metrics::queue_popped();
        let engine = engine.clone();
        glommio::spawn_local(async move { engine.handle_message(message).await }).detach();
    }
}
