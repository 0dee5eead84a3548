//! Group-commit append throughput of the per-core log (`sluice_io::log`): each iteration
//! appends one PutRecords-sized batch (500 records) to each of 8 shards concurrently, so the
//! committer folds them into one commit (one or a few O_DIRECT writes, plus one `fdatasync`
//! under `Durability::Fsync`). Throughput is in record data bytes.
//!
//! The log lives in a temp dir on the filesystem holding `std::env::temp_dir()` (set `TMPDIR`
//! to measure another disk); it must support O_DIRECT.

use std::rc::Rc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice_io::log::{AppendRecord, Durability, Log, LogConfig, ShardKey};

const SHARDS: u32 = 8;
const RECORDS_PER_APPEND: usize = 500;

fn batch(record_bytes: usize, shard: u32) -> Vec<AppendRecord> {
    (0..RECORDS_PER_APPEND)
        .map(|i| AppendRecord {
            partition_key: format!("partition-key-{shard}-{i:06}"),
            data: vec![(i % 251) as u8; record_bytes].into(),
        })
        .collect()
}

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("a glommio executor starts (io_uring available)")
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("io_segment_append");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    for (mode, durability) in [("write", Durability::Write), ("fsync", Durability::Fsync)] {
        for record_bytes in [100usize, 1024] {
            let dir = tempfile::tempdir().expect("temp dir for the bench log");
            let ex = executor();
            let config = LogConfig {
                durability,
                segment_bytes: 64 << 20,
                ..LogConfig::new(dir.path(), 0)
            };
            let log: Rc<Log> = ex.run(Log::open(config)).expect("bench log opens");
            let shards: Vec<ShardKey> = (0..SHARDS)
                .map(|i| ShardKey {
                    stream_name: Rc::from("bench"),
                    stream_created_ms: 1,
                    shard_index: i,
                })
                .collect();
            group.throughput(Throughput::Bytes(
                (record_bytes * RECORDS_PER_APPEND) as u64 * u64::from(SHARDS),
            ));
            group.bench_function(BenchmarkId::new(mode, format!("{record_bytes}B")), |b| {
                b.iter_batched(
                    || {
                        (0..SHARDS)
                            .map(|s| batch(record_bytes, s))
                            .collect::<Vec<_>>()
                    },
                    |batches| {
                        ex.run(async {
                            let tasks: Vec<_> = batches
                                .into_iter()
                                .zip(&shards)
                                .map(|(records, shard)| {
                                    let log = log.clone();
                                    let shard = shard.clone();
                                    glommio::spawn_local(async move {
                                        log.append(&shard, records).await
                                    })
                                })
                                .collect();
                            for task in tasks {
                                task.await.expect("bench append succeeds");
                            }
                        })
                    },
                    BatchSize::SmallInput,
                )
            });
            // Old segments are dropped between configurations so the bench leaves little on disk.
            let removed = ex.run(log.enforce_retention(&|_| None, u64::MAX));
            removed.expect("bench retention succeeds");
            drop(log);
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
