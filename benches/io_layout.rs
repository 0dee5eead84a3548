//! The layout decision of docs/segment-format.md, measured: what one durable commit costs when it
//! touches N shards (N = 4, 100, 1,000), one 100-byte record per shard.
//!
//! - `per_core_log/N`: Sluice's layout. N appends to N shards queue together and the per-core
//!   log commits them as one block with one `fdatasync`.
//! - `per_shard_files/N`: the alternative, one file per shard. The same N records become N
//!   4 KiB writes to N preallocated files and N `fdatasync`s (what per-shard segments synced
//!   together would cost without a filesystem-wide sync).
//!
//! Throughput is in records, so a flat `per_core_log` line and a falling `per_shard_files` line
//! is the result that justified the choice. Files live under `std::env::temp_dir()`.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::rc::Rc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice_io::log::{AppendRecord, Durability, Log, LogConfig, ShardKey};

const SHARD_COUNTS: [u32; 3] = [4, 100, 1000];

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("a glommio executor starts (io_uring available)")
}

fn per_core_log(c: &mut Criterion) {
    let mut group = c.benchmark_group("io_layout_per_core_log");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir for the bench log");
    let ex = executor();
    let config = LogConfig {
        durability: Durability::Fsync,
        segment_bytes: 64 << 20,
        ..LogConfig::new(dir.path(), 0)
    };
    let log: Rc<Log> = ex.run(Log::open(config)).expect("bench log opens");
    for shards in SHARD_COUNTS {
        let keys: Vec<ShardKey> = (0..shards)
            .map(|i| ShardKey {
                stream_name: Rc::from("layout"),
                stream_created_ms: 1,
                shard_index: i,
            })
            .collect();
        group.throughput(Throughput::Elements(u64::from(shards)));
        group.bench_function(BenchmarkId::from_parameter(shards), |b| {
            b.iter(|| {
                ex.run(async {
                    let tasks: Vec<_> = keys
                        .iter()
                        .map(|key| {
                            let (log, key) = (log.clone(), key.clone());
                            glommio::spawn_local(async move {
                                let record = AppendRecord {
                                    partition_key: "k".into(),
                                    data: vec![7; 100].into(),
                                };
                                log.append(&key, vec![record]).await
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.expect("bench append succeeds");
                    }
                })
            })
        });
    }
    group.finish();
}

fn per_shard_files(c: &mut Criterion) {
    let mut group = c.benchmark_group("io_layout_per_shard_files");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(1));
    let dir = tempfile::tempdir().expect("temp dir for the per-shard files");
    let block = vec![7u8; 4096];
    for shards in SHARD_COUNTS {
        let files: Vec<File> = (0..shards)
            .map(|i| {
                let file = File::options()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(dir.path().join(format!("{shards}-{i}.seg")))
                    .expect("per-shard file opens");
                file.set_len(1 << 20).expect("per-shard file preallocates");
                file
            })
            .collect();
        let mut offset = 0u64;
        group.throughput(Throughput::Elements(u64::from(shards)));
        group.bench_function(BenchmarkId::from_parameter(shards), |b| {
            b.iter(|| {
                for file in &files {
                    file.write_all_at(&block, offset)
                        .expect("per-shard write succeeds");
                    file.sync_data().expect("per-shard fdatasync succeeds");
                }
                offset = (offset + 4096) % (1 << 20);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_core_log, per_shard_files);
criterion_main!(benches);
