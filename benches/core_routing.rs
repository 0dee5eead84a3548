//! Partition-key routing: `MD5(partition key)` as a big-endian u128, then a binary search over
//! the sorted hash ranges of a stream's open shards. Throughput is in records routed.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::hash_key::{HashRange, partition_key_hash};

/// The shard whose inclusive range holds `hash_key`. `ranges` are sorted, contiguous and cover
/// the whole key space, so the last range starting at or below the key is the one.
fn shard_for(ranges: &[HashRange], hash_key: u128) -> usize {
    ranges.partition_point(|r| r.starting <= hash_key) - 1
}

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000).map(|i| format!("partition-key-{i:08}")).collect();

    let mut group = c.benchmark_group("core_routing");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("partition_key_hash", |b| {
        b.iter(|| {
            let mut acc = 0u128;
            for k in &keys {
                acc ^= partition_key_hash(black_box(k));
            }
            acc
        })
    });
    for shard_count in [4u32, 64, 1000] {
        let ranges = HashRange::even_split(shard_count);
        assert!(keys.iter().all(|k| {
            ranges[shard_for(&ranges, partition_key_hash(k))].contains(partition_key_hash(k))
        }));
        group.bench_with_input(
            BenchmarkId::new("hash_and_lookup", shard_count),
            &ranges,
            |b, ranges| {
                b.iter(|| {
                    let mut acc = 0usize;
                    for k in &keys {
                        acc += shard_for(ranges, partition_key_hash(black_box(k)));
                    }
                    acc
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
