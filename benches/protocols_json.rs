//! The Kinesis JSON hot paths: PutRecords request decoding (parse + validation + base64) and
//! GetRecords response encoding, plus a whole PutRecords through `handle_kinesis` against an API
//! that does nothing. Throughput is in records. The parser and writer choices recorded in
//! `protocols/src/kinesis/decode.rs` and `encode.rs` come from these numbers.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use sluice_core::api::{
    CreateStreamInput, DeleteStreamInput, DescribeStreamInput, EncryptionType, GetRecordsInput,
    GetRecordsOutput, GetShardIteratorInput, KinesisApi, ListShardsInput, ListShardsOutput,
    ListStreamsInput, ListStreamsOutput, ListTagsForStreamInput, ListTagsForStreamOutput,
    OwnedRecord, PutRecordsInput, PutRecordsOutput, PutRecordsResultEntry, StreamDescription,
    StreamDescriptionSummary, Tag,
};
use sluice_core::{KinesisError, SequenceNumber};
use sluice_protocols::json::value::{parse_serde_json, parse_sonic};
use sluice_protocols::kinesis::decode::{self, Home, Obj};
use sluice_protocols::kinesis::encode;
use sluice_protocols::{HttpRequest, handle_kinesis};

const HOME: Home<'static> = Home {
    region: "us-east-1",
    account_id: "000000000000",
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

/// Accepts every PutRecords and answers a fixed result; everything else is unsupported.
struct NullApi;

fn unsupported<T>() -> Result<T, KinesisError> {
    Err(KinesisError::internal("not part of the benchmark"))
}

impl KinesisApi for NullApi {
    type Records = Vec<OwnedRecord>;
    fn region(&self) -> &str {
        HOME.region
    }
    fn account_id(&self) -> &str {
        HOME.account_id
    }
    async fn create_stream(&self, _: CreateStreamInput) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn delete_stream(&self, _: DeleteStreamInput) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn describe_stream(
        &self,
        _: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError> {
        unsupported()
    }
    async fn describe_stream_summary(
        &self,
        _: String,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        unsupported()
    }
    async fn list_streams(&self, _: ListStreamsInput) -> Result<ListStreamsOutput, KinesisError> {
        unsupported()
    }
    async fn list_shards(&self, _: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
        unsupported()
    }
    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        let records = input
            .records
            .iter()
            .enumerate()
            .map(|(i, _)| {
                Ok(PutRecordsResultEntry {
                    shard_id: "shardId-000000000000".to_owned(),
                    sequence_number: SequenceNumber::new(1_700_000_000, 0, i as u64, 1_700_000_100),
                })
            })
            .collect();
        Ok(PutRecordsOutput {
            encryption_type: EncryptionType::None,
            records,
        })
    }
    async fn get_shard_iterator(&self, _: GetShardIteratorInput) -> Result<String, KinesisError> {
        unsupported()
    }
    async fn get_records(
        &self,
        _: GetRecordsInput,
    ) -> Result<GetRecordsOutput<Self::Records>, KinesisError> {
        unsupported()
    }
    async fn add_tags_to_stream(&self, _: String, _: Vec<Tag>) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn remove_tags_from_stream(&self, _: String, _: Vec<String>) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn list_tags_for_stream(
        &self,
        _: ListTagsForStreamInput,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        unsupported()
    }
    async fn increase_stream_retention_period(
        &self,
        _: String,
        _: u32,
    ) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn decrease_stream_retention_period(
        &self,
        _: String,
        _: u32,
    ) -> Result<(), KinesisError> {
        unsupported()
    }
    async fn put_record(
        &self,
        _: sluice_core::api::PutRecordInput,
    ) -> Result<sluice_core::api::PutRecordOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn split_shard(
        &self,
        _: sluice_core::api::SplitShardInput,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn merge_shards(
        &self,
        _: sluice_core::api::MergeShardsInput,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn update_shard_count(
        &self,
        _: sluice_core::api::UpdateShardCountInput,
    ) -> Result<sluice_core::api::UpdateShardCountOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn update_stream_mode(
        &self,
        _: sluice_core::api::UpdateStreamModeInput,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn describe_limits(
        &self,
    ) -> Result<sluice_core::api::DescribeLimitsOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn enable_enhanced_monitoring(
        &self,
        _: String,
        _: Vec<String>,
    ) -> Result<sluice_core::api::EnhancedMonitoringOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn disable_enhanced_monitoring(
        &self,
        _: String,
        _: Vec<String>,
    ) -> Result<sluice_core::api::EnhancedMonitoringOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn update_max_record_size(
        &self,
        _: String,
        _: u32,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn start_stream_encryption(
        &self,
        _: sluice_core::api::StreamEncryptionInput,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn stop_stream_encryption(
        &self,
        _: sluice_core::api::StreamEncryptionInput,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn update_stream_warm_throughput(
        &self,
        _: String,
        _: u32,
    ) -> Result<sluice_core::api::UpdateStreamWarmThroughputOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn describe_account_settings(
        &self,
    ) -> Result<
        Option<sluice_core::api::MinimumThroughputBillingCommitment>,
        sluice_core::KinesisError,
    > {
        unsupported()
    }
    async fn update_account_settings(
        &self,
        _: bool,
    ) -> Result<
        Option<sluice_core::api::MinimumThroughputBillingCommitment>,
        sluice_core::KinesisError,
    > {
        unsupported()
    }
    async fn register_stream_consumer(
        &self,
        _: sluice_core::api::RegisterStreamConsumerInput,
    ) -> Result<sluice_core::api::ConsumerDescription, sluice_core::KinesisError> {
        unsupported()
    }
    async fn deregister_stream_consumer(
        &self,
        _: sluice_core::api::ConsumerRef,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn describe_stream_consumer(
        &self,
        _: sluice_core::api::ConsumerRef,
    ) -> Result<sluice_core::api::ConsumerDescription, sluice_core::KinesisError> {
        unsupported()
    }
    async fn list_stream_consumers(
        &self,
        _: sluice_core::api::ListStreamConsumersInput,
    ) -> Result<sluice_core::api::ListStreamConsumersOutput, sluice_core::KinesisError> {
        unsupported()
    }
    async fn put_resource_policy(
        &self,
        _: String,
        _: String,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn get_resource_policy(&self, _: String) -> Result<String, sluice_core::KinesisError> {
        unsupported()
    }
    async fn delete_resource_policy(&self, _: String) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn resource_policy(&self, _: String) -> Option<String> {
        None
    }
    async fn tag_resource(
        &self,
        _: String,
        _: Vec<sluice_core::api::Tag>,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn untag_resource(
        &self,
        _: String,
        _: Vec<String>,
    ) -> Result<(), sluice_core::KinesisError> {
        unsupported()
    }
    async fn list_tags_for_resource(
        &self,
        _: String,
    ) -> Result<Vec<sluice_core::api::Tag>, sluice_core::KinesisError> {
        unsupported()
    }

    type Subscription = sluice_core::subscribe::NoSubscription;
    async fn subscribe_to_shard(
        &self,
        _: sluice_core::subscribe::SubscribeToShardInput,
    ) -> Result<Self::Subscription, KinesisError> {
        Err(KinesisError::internal(
            "SubscribeToShard is not part of this stub",
        ))
    }
}

fn put_records_handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_records_handle");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let body = put_records_body(100);
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
            let response = futures_lite::future::block_on(handle_kinesis(&NullApi, request));
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
