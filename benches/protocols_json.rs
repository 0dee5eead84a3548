//! The Kinesis JSON hot paths: PutRecords request decoding (parse + validation + base64) and
//! GetRecords response encoding, plus a whole PutRecords through `handle_kinesis`. Throughput is
//! in records. The parser and writer choices recorded in `protocols/src/kinesis/decode.rs` and
//! `encode.rs` come from these numbers.
//!
//! `put_records_handle` runs against the shared in-memory model (`sluice_protocols::model`) with
//! one single-shard stream that discards records: the model then skips the partition-key MD5 and
//! keeps nothing. What remains of it (size checks, sequence numbers, one ShardId copy per record)
//! measured 5-10% of the time against a stub that did nothing; the rest is the envelope, the
//! decoder and the encoder. It measures no storage and no routing.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use sluice_core::SequenceNumber;
use sluice_core::api::{GetRecordsOutput, OwnedRecord};
use sluice_protocols::json::value::{parse_serde_json, parse_sonic};
use sluice_protocols::kinesis::decode::{self, Home, Obj};
use sluice_protocols::kinesis::encode;
use sluice_protocols::model::{ACCOUNT, Model, REGION};
use sluice_protocols::{HttpRequest, handle_kinesis};

const HOME: Home<'static> = Home {
    region: REGION,
    account_id: ACCOUNT,
};
const RECORDS: usize = 500;

fn put_records_body(data_bytes: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..data_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            serde_json::json!({
                "Data": base64_simd::STANDARD.encode_to_string(&data),
                "PartitionKey": format!("partition-key-{i}"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"StreamName": "bench", "Records": records}))
        .expect("bench body serialises")
}

fn put_records_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_records_decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (label, bytes) in [("500x100B", 100), ("500x1KiB", 1024)] {
        let body = put_records_body(bytes);
        group.bench_with_input(BenchmarkId::new("sonic_rs", label), &body, |b, body| {
            b.iter(|| {
                let doc = parse_sonic(black_box(body)).expect("valid JSON");
                decode::put_records(HOME, Obj::new(&doc)).expect("valid input")
            })
        });
        group.bench_with_input(BenchmarkId::new("serde_json", label), &body, |b, body| {
            b.iter(|| {
                let doc = parse_serde_json(black_box(body)).expect("valid JSON");
                decode::put_records(HOME, Obj::new(&doc)).expect("valid input")
            })
        });
    }
    group.finish();
}

/// The serde alternative to the hand-rolled GetRecords writer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SerdeRecord<'a> {
    sequence_number: String,
    approximate_arrival_timestamp: f64,
    data: String,
    partition_key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SerdeGetRecords<'a> {
    records: Vec<SerdeRecord<'a>>,
    next_shard_iterator: &'a str,
    millis_behind_latest: u64,
}

fn serde_get_records(output: &GetRecordsOutput<Vec<OwnedRecord>>) -> SerdeGetRecords<'_> {
    SerdeGetRecords {
        records: output
            .records
            .iter()
            .map(|r| SerdeRecord {
                sequence_number: r.sequence_number.to_string(),
                approximate_arrival_timestamp: r.approximate_arrival_timestamp_ms as f64 / 1000.0,
                data: base64_simd::STANDARD.encode_to_string(&r.data),
                partition_key: &r.partition_key,
            })
            .collect(),
        next_shard_iterator: output.next_shard_iterator.as_deref().unwrap_or(""),
        millis_behind_latest: output.millis_behind_latest,
    }
}

fn get_records_encode(c: &mut Criterion) {
    const COUNT: usize = 10_000;
    let output = GetRecordsOutput {
        records: (0..COUNT)
            .map(|i| OwnedRecord {
                sequence_number: SequenceNumber::new(1_700_000_000, 3, i as u64, 1_700_000_100),
                approximate_arrival_timestamp_ms: 1_700_000_100_123,
                partition_key: format!("partition-key-{i}"),
                data: vec![b'x'; 100],
            })
            .collect::<Vec<_>>(),
        next_shard_iterator: Some("AAAAAAAAAAE".repeat(20)),
        millis_behind_latest: 0,
        child_shards: Vec::new(),
    };
    let mut group = c.benchmark_group("get_records_encode");
    group.throughput(Throughput::Elements(COUNT as u64));
    group.bench_function("hand_written/10000x100B", |b| {
        b.iter(|| encode::get_records(black_box(&output)))
    });
    group.bench_function("serde_json/10000x100B", |b| {
        b.iter(|| serde_json::to_vec(&serde_get_records(black_box(&output))).expect("serialisable"))
    });
    group.bench_function("sonic_rs/10000x100B", |b| {
        b.iter(|| sonic_rs::to_vec(&serde_get_records(black_box(&output))).expect("serialisable"))
    });
    group.finish();
}

fn put_records_handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_records_handle");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let body = put_records_body(100);
    // One shard and no kept records: see the module doc.
    let model = Model::with_stream("bench", 1).discarding_records();
    group.bench_function("500x100B", |b| {
        b.iter(|| {
            let request = HttpRequest {
                method: "POST",
                path: "/",
                target: Some("Kinesis_20131202.PutRecords"),
                content_type: Some("application/x-amz-json-1.1"),
                has_auth: true,
                body: black_box(&body),
                ..HttpRequest::default()
            };
            let response = futures_lite::future::block_on(handle_kinesis(&model, request));
            assert_eq!(response.status, 200);
            response
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    put_records_decode,
    get_records_encode,
    put_records_handle
);
criterion_main!(benches);
