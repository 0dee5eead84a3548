//! Kinesis JSON 1.1 request bodies: whatever the body and whichever operation it is sent to, the
//! front end answers with a well-formed response (an HTTP status and, for errors, a JSON body
//! with `__type`) and never panics. The API behind it refuses every call, so only decoding,
//! validation and error encoding are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::api::*;
use sluice_core::KinesisError;
use sluice_protocols::kinesis::MODEL_OPERATIONS;
use sluice_protocols::{HttpRequest, handle_kinesis};

struct Refuse;

fn refuse<T>() -> Result<T, KinesisError> {
    Err(KinesisError::stream_not_found("fuzz", "000000000000"))
}

impl KinesisApi for Refuse {
    type Records = Vec<OwnedRecord>;
    fn region(&self) -> &str {
        "us-east-1"
    }
    fn account_id(&self) -> &str {
        "000000000000"
    }
    async fn create_stream(&self, _: CreateStreamInput) -> Result<(), KinesisError> {
        refuse()
    }
    async fn delete_stream(&self, _: DeleteStreamInput) -> Result<(), KinesisError> {
        refuse()
    }
    async fn describe_stream(&self, _: DescribeStreamInput) -> Result<StreamDescription, KinesisError> {
        refuse()
    }
    async fn describe_stream_summary(&self, _: String) -> Result<StreamDescriptionSummary, KinesisError> {
        refuse()
    }
    async fn list_streams(&self, _: ListStreamsInput) -> Result<ListStreamsOutput, KinesisError> {
        refuse()
    }
    async fn list_shards(&self, _: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
        refuse()
    }
    async fn put_records(&self, _: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        refuse()
    }
    async fn get_shard_iterator(&self, _: GetShardIteratorInput) -> Result<String, KinesisError> {
        refuse()
    }
    async fn get_records(&self, _: GetRecordsInput) -> Result<GetRecordsOutput<Vec<OwnedRecord>>, KinesisError> {
        refuse()
    }
    async fn add_tags_to_stream(&self, _: String, _: Vec<Tag>) -> Result<(), KinesisError> {
        refuse()
    }
    async fn remove_tags_from_stream(&self, _: String, _: Vec<String>) -> Result<(), KinesisError> {
        refuse()
    }
    async fn list_tags_for_stream(&self, _: ListTagsForStreamInput) -> Result<ListTagsForStreamOutput, KinesisError> {
        refuse()
    }
    async fn increase_stream_retention_period(&self, _: String, _: u32) -> Result<(), KinesisError> {
        refuse()
    }
    async fn decrease_stream_retention_period(&self, _: String, _: u32) -> Result<(), KinesisError> {
        refuse()
    }
    async fn put_record(&self, _: sluice_core::api::PutRecordInput) -> Result<sluice_core::api::PutRecordOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn split_shard(&self, _: sluice_core::api::SplitShardInput) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn merge_shards(&self, _: sluice_core::api::MergeShardsInput) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn update_shard_count(&self, _: sluice_core::api::UpdateShardCountInput) -> Result<sluice_core::api::UpdateShardCountOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn update_stream_mode(&self, _: sluice_core::api::UpdateStreamModeInput) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn describe_limits(&self) -> Result<sluice_core::api::DescribeLimitsOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn enable_enhanced_monitoring(&self, _: String, _: Vec<String>) -> Result<sluice_core::api::EnhancedMonitoringOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn disable_enhanced_monitoring(&self, _: String, _: Vec<String>) -> Result<sluice_core::api::EnhancedMonitoringOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn update_max_record_size(&self, _: String, _: u32) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn start_stream_encryption(&self, _: sluice_core::api::StreamEncryptionInput) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn stop_stream_encryption(&self, _: sluice_core::api::StreamEncryptionInput) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn update_stream_warm_throughput(&self, _: String, _: u32) -> Result<sluice_core::api::UpdateStreamWarmThroughputOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn describe_account_settings(&self) -> Result<Option<sluice_core::api::MinimumThroughputBillingCommitment>, sluice_core::KinesisError> {
        refuse()
    }
    async fn update_account_settings(&self, _: bool) -> Result<Option<sluice_core::api::MinimumThroughputBillingCommitment>, sluice_core::KinesisError> {
        refuse()
    }
    async fn register_stream_consumer(&self, _: sluice_core::api::RegisterStreamConsumerInput) -> Result<sluice_core::api::ConsumerDescription, sluice_core::KinesisError> {
        refuse()
    }
    async fn deregister_stream_consumer(&self, _: sluice_core::api::ConsumerRef) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn describe_stream_consumer(&self, _: sluice_core::api::ConsumerRef) -> Result<sluice_core::api::ConsumerDescription, sluice_core::KinesisError> {
        refuse()
    }
    async fn list_stream_consumers(&self, _: sluice_core::api::ListStreamConsumersInput) -> Result<sluice_core::api::ListStreamConsumersOutput, sluice_core::KinesisError> {
        refuse()
    }
    async fn put_resource_policy(&self, _: String, _: String) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn get_resource_policy(&self, _: String) -> Result<String, sluice_core::KinesisError> {
        refuse()
    }
    async fn delete_resource_policy(&self, _: String) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn resource_policy(&self, _: String) -> Option<String> {
        None
    }
    async fn tag_resource(&self, _: String, _: Vec<sluice_core::api::Tag>) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn untag_resource(&self, _: String, _: Vec<String>) -> Result<(), sluice_core::KinesisError> {
        refuse()
    }
    async fn list_tags_for_resource(&self, _: String) -> Result<Vec<sluice_core::api::Tag>, sluice_core::KinesisError> {
        refuse()
    }

    type Subscription = sluice_core::subscribe::NoSubscription;
    async fn subscribe_to_shard(
        &self,
        _: sluice_core::subscribe::SubscribeToShardInput,
    ) -> Result<Self::Subscription, KinesisError> {
        Err(KinesisError::internal("SubscribeToShard is not part of this stub"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let operation = MODEL_OPERATIONS[usize::from(selector) % MODEL_OPERATIONS.len()];
    let target = format!("Kinesis_20131202.{operation}");
    let request = HttpRequest {
        method: "POST",
        path: "/",
        target: Some(&target),
        content_type: Some("application/x-amz-json-1.1"),
        has_auth: true,
        authorization: Some(
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        ),
        query: None,
        has_date: true,
        origin: None,
        access_control_request_headers: None,
        access_control_request_method: None,
        headers: &[],
        body,
    };
    let response = futures_lite::future::block_on(handle_kinesis(&Refuse, request));
    assert!((200..600).contains(&response.status));
    if response.status >= 400 && !response.body.is_empty() {
        let text = std::str::from_utf8(&response.body).expect("error bodies are UTF-8");
        assert!(text.contains("__type"), "error body without __type: {text}");
    }
});
