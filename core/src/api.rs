//! The Kinesis Data Streams operations as domain calls. `protocols` decodes a wire request
//! (JSON 1.1, CBOR 1.1 or the binary protocol) into these inputs, calls a [`KinesisApi`]
//! implementation, and encodes the outputs. `io::Engine` is the real implementation; tests may
//! use an in-memory model.
//!
//! Streams are always named by `stream_name` here: `protocols` resolves a `StreamARN` to a name
//! (and checks that it names this appliance's region and account) before calling.

use crate::error::KinesisError;
use crate::hash_key::HashRange;
use crate::sequence_number::SequenceNumber;

// The inputs and outputs of the control-plane operations are defined next to the catalog code
// that implements them; they are re-exported here so that every implementor of `KinesisApi`
// finds its whole vocabulary in this module.
pub use crate::consumer::{
    ConsumerDescription, ConsumerRef, ConsumerStatus, ListStreamConsumersInput,
    ListStreamConsumersOutput, RegisterStreamConsumerInput,
};
pub use crate::control::{
    BillingCommitmentStatus, DescribeLimitsOutput, EnhancedMonitoringOutput,
    MinimumThroughputBillingCommitment, StreamEncryptionInput, UpdateStreamModeInput,
    UpdateStreamWarmThroughputOutput, WarmThroughput,
};
pub use crate::reshard::{
    MergeShardsInput, SplitShardInput, UpdateShardCountInput, UpdateShardCountOutput,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    Creating,
    Deleting,
    Active,
    Updating,
}

impl StreamStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Deleting => "DELETING",
            Self::Active => "ACTIVE",
            Self::Updating => "UPDATING",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

impl StreamMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provisioned => "PROVISIONED",
            Self::OnDemand => "ON_DEMAND",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionType {
    None,
    Kms,
}

impl EncryptionType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Kms => "KMS",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardIteratorType {
    AtSequenceNumber,
    AfterSequenceNumber,
    TrimHorizon,
    Latest,
    AtTimestamp,
}

impl ShardIteratorType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AT_SEQUENCE_NUMBER" => Self::AtSequenceNumber,
            "AFTER_SEQUENCE_NUMBER" => Self::AfterSequenceNumber,
            "TRIM_HORIZON" => Self::TrimHorizon,
            "LATEST" => Self::Latest,
            "AT_TIMESTAMP" => Self::AtTimestamp,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AtSequenceNumber => "AT_SEQUENCE_NUMBER",
            Self::AfterSequenceNumber => "AFTER_SEQUENCE_NUMBER",
            Self::TrimHorizon => "TRIM_HORIZON",
            Self::Latest => "LATEST",
            Self::AtTimestamp => "AT_TIMESTAMP",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One shard as DescribeStream / ListShards show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDescription {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashRange,
    pub starting_sequence_number: String,
    /// Present once the shard is closed.
    pub ending_sequence_number: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub hash_key_range: HashRange,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateStreamInput {
    pub stream_name: String,
    /// `None` with `StreamMode::OnDemand` (4 shards) or when the client left it out.
    pub shard_count: Option<u32>,
    pub stream_mode: Option<StreamMode>,
    pub tags: Vec<Tag>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteStreamInput {
    pub stream_name: String,
    pub enforce_consumer_deletion: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescribeStreamInput {
    pub stream_name: String,
    /// Already checked to be 1..=10000; the server caps at 100.
    pub limit: Option<u32>,
    pub exclusive_start_shard_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDescription {
    pub stream_name: String,
    pub stream_arn: String,
    pub stream_status: StreamStatus,
    pub stream_mode: StreamMode,
    pub shards: Vec<ShardDescription>,
    pub has_more_shards: bool,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp_ms: u64,
    pub shard_level_metrics: Vec<String>,
    pub encryption_type: EncryptionType,
    pub key_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDescriptionSummary {
    pub stream_name: String,
    pub stream_arn: String,
    pub stream_status: StreamStatus,
    pub stream_mode: StreamMode,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp_ms: u64,
    pub shard_level_metrics: Vec<String>,
    pub encryption_type: EncryptionType,
    pub key_id: Option<String>,
    pub open_shard_count: u32,
    pub consumer_count: u32,
    pub max_record_size_kib: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStreamsInput {
    pub limit: Option<u32>,
    pub exclusive_start_stream_name: Option<String>,
    pub next_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    pub stream_name: String,
    pub stream_arn: String,
    pub stream_status: StreamStatus,
    pub stream_mode: StreamMode,
    pub stream_creation_timestamp_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStreamsOutput {
    pub stream_names: Vec<String>,
    pub has_more_streams: bool,
    pub next_token: Option<String>,
    pub stream_summaries: Vec<StreamSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardFilter {
    AfterShardId(String),
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp(u64),
    FromTimestamp(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListShardsInput {
    /// Exactly one of `stream_name` and `next_token` is set (protocols checks this).
    pub stream_name: Option<String>,
    pub next_token: Option<String>,
    pub exclusive_start_shard_id: Option<String>,
    pub max_results: Option<u32>,
    pub stream_creation_timestamp_ms: Option<u64>,
    pub shard_filter: Option<ShardFilter>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListShardsOutput {
    pub shards: Vec<ShardDescription>,
    pub next_token: Option<String>,
}

/// One record to append. `explicit_hash_key` was already parsed and range-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordsEntry {
    /// Shared, not copied: a binary PutBatch's records are slices of its frame, kept until
    /// they are stored.
    pub data: bytes::Bytes,
    pub partition_key: String,
    pub explicit_hash_key: Option<u128>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordsInput {
    pub stream_name: String,
    pub records: Vec<PutRecordsEntry>,
}

/// PutRecord: one entry, plus the optional `SequenceNumberForOrdering`, which must be a sequence
/// number of this stream (already checked against the model's decimal pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordInput {
    pub stream_name: String,
    pub record: PutRecordsEntry,
    pub sequence_number_for_ordering: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordOutput {
    pub shard_id: String,
    pub sequence_number: SequenceNumber,
    pub encryption_type: EncryptionType,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordsResultEntry {
    /// Shared by every record of a call stored in the same shard: one allocation per shard,
    /// not per record (a `String` per record cost ~1.5 % of binary ingest's server CPU).
    pub shard_id: std::sync::Arc<str>,
    pub sequence_number: SequenceNumber,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecordsOutput {
    pub encryption_type: EncryptionType,
    /// Same length and order as the input records. A failed entry carries the error whose kind
    /// becomes `ErrorCode` (`ProvisionedThroughputExceededException` or `InternalFailure`).
    pub records: Vec<Result<PutRecordsResultEntry, KinesisError>>,
}

pub use crate::limits::PUT_RECORDS_LARGE_BYTES_MAX;

/// The record-size rules of PutRecord (`single`) and PutRecords for a stream whose maximum
/// record size (UpdateMaxRecordSize) is `max_record_bytes`. A Data blob over the maximum is
/// refused the way the model's own length constraint is (ValidationException); partition key
/// plus data over it is an InvalidArgument. PutRecords carries at most 5 MiB in all, 10 MiB on
/// a stream that allows records over 1 MiB.
pub fn check_record_sizes(
    max_record_bytes: usize,
    records: &[PutRecordsEntry],
    single: bool,
) -> Result<(), KinesisError> {
    for (i, entry) in records.iter().enumerate() {
        let n = entry.data.len();
        if n > max_record_bytes {
            let path = if single {
                "data".to_owned()
            } else {
                format!("records.{}.member.data", i + 1)
            };
            return Err(KinesisError::new(
                crate::error::ErrorKind::Validation,
                format!(
                    "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max_record_bytes}"
                ),
            ));
        }
        let total = entry.partition_key.len() + n;
        if total > max_record_bytes {
            return Err(record_too_large(total, max_record_bytes));
        }
    }
    if !single {
        let limit = if max_record_bytes > crate::limits::RECORD_BYTES_MAX {
            PUT_RECORDS_LARGE_BYTES_MAX
        } else {
            crate::limits::PUT_RECORDS_BYTES_MAX
        };
        let total: usize = records
            .iter()
            .map(|r| r.partition_key.len() + r.data.len())
            .sum();
        if total > limit {
            return Err(records_too_large(limit));
        }
    }
    Ok(())
}

/// A record whose partition key plus data (`total_bytes`) exceeds the maximum record size, in
/// AWS's words. Every wire and the implementation refuse it with this one message.
pub fn record_too_large(total_bytes: usize, max_record_bytes: usize) -> KinesisError {
    KinesisError::invalid_argument(format!(
        "The record size ({total_bytes} bytes of partition key and data) exceeds the maximum record size of {max_record_bytes} bytes."
    ))
}

/// A PutRecords whose records together exceed `limit_bytes` (5 MiB, or 10 MiB on a stream that
/// allows records over 1 MiB), in AWS's words.
pub fn records_too_large(limit_bytes: usize) -> KinesisError {
    let megabytes = limit_bytes / (1024 * 1024);
    KinesisError::invalid_argument(format!("Records size exceeds {megabytes} MB limit"))
}

/// The partition-key rule of one record: 1..=[`crate::limits::PARTITION_KEY_CHARS_MAX`]
/// Unicode characters, or empty where the wire routes the record without its key (`required`
/// false: the binary protocol's routes by explicit hash key and by shard). `index` is the
/// record's place in its request, for the message.
pub fn check_partition_key(
    index: usize,
    partition_key: &str,
    required: bool,
) -> Result<(), KinesisError> {
    let max = crate::limits::PARTITION_KEY_CHARS_MAX;
    // A key of at most `max` bytes has at most `max` characters: counting them (per record)
    // is needed only for longer keys.
    let chars = if partition_key.len() <= max {
        usize::from(!partition_key.is_empty())
    } else {
        partition_key.chars().count()
    };
    if chars > max {
        return Err(KinesisError::invalid_argument(format!(
            "Record {index} has a partition key of {chars} characters; at most {max} are allowed."
        )));
    }
    if required && chars == 0 {
        return Err(KinesisError::invalid_argument(format!(
            "Record {index} has an empty partition key; a partition key has 1 to {max} characters."
        )));
    }
    Ok(())
}

impl PutRecordsOutput {
    pub fn failed_record_count(&self) -> usize {
        self.records.iter().filter(|r| r.is_err()).count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetShardIteratorInput {
    pub stream_name: String,
    /// As the client sent it (messages echo it); the implementation parses it.
    pub shard_id: String,
    pub shard_iterator_type: ShardIteratorType,
    pub starting_sequence_number: Option<String>,
    pub timestamp_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetRecordsInput {
    pub shard_iterator: String,
    /// Already checked to be 1..=10000; `None` means 10000.
    pub limit: Option<u32>,
    /// A front end's cap on the answer's data bytes, below the API's 10 MiB, set from its
    /// memory budget (never from the wire): the answer then holds fewer records and the client
    /// goes on with the next iterator, as after any short answer. `None` means the API's limit.
    /// At least one record is returned whatever the cap.
    pub bytes_max: Option<usize>,
}

/// A record as a read returns it, borrowing from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub sequence_number: SequenceNumber,
    pub approximate_arrival_timestamp_ms: u64,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// The records of one read. Implementations keep the validated read buffers alive and hand out
/// borrowed views, so a response can be encoded without copying record data again.
pub trait RecordBatch {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn for_each_record(&self, f: &mut dyn FnMut(RecordView<'_>));
}

/// An owned record, for models and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    pub sequence_number: SequenceNumber,
    pub approximate_arrival_timestamp_ms: u64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl RecordBatch for Vec<OwnedRecord> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn for_each_record(&self, f: &mut dyn FnMut(RecordView<'_>)) {
        for r in self {
            f(RecordView {
                sequence_number: r.sequence_number,
                approximate_arrival_timestamp_ms: r.approximate_arrival_timestamp_ms,
                partition_key: &r.partition_key,
                data: &r.data,
            });
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetRecordsOutput<R> {
    pub records: R,
    /// `None` at the end of a closed shard.
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: u64,
    pub child_shards: Vec<ChildShard>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListTagsForStreamInput {
    pub stream_name: String,
    pub exclusive_start_tag_key: Option<String>,
    /// Already checked to be 1..=50; `None` means 50.
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListTagsForStreamOutput {
    pub tags: Vec<Tag>,
    pub has_more_tags: bool,
}

/// The Kinesis Data Streams operations of a single appliance. Every operation has no default:
/// each one is a capability the implementation must state it has.
#[allow(async_fn_in_trait)]
pub trait KinesisApi {
    type Records: RecordBatch;

    /// Region and account id that ARNs and messages name.
    fn region(&self) -> &str;
    fn account_id(&self) -> &str;

    async fn create_stream(&self, input: CreateStreamInput) -> Result<(), KinesisError>;
    async fn delete_stream(&self, input: DeleteStreamInput) -> Result<(), KinesisError>;
    async fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError>;
    async fn describe_stream_summary(
        &self,
        stream_name: String,
    ) -> Result<StreamDescriptionSummary, KinesisError>;
    async fn list_streams(
        &self,
        input: ListStreamsInput,
    ) -> Result<ListStreamsOutput, KinesisError>;
    async fn list_shards(&self, input: ListShardsInput) -> Result<ListShardsOutput, KinesisError>;
    /// PutRecord is a PutRecords of one entry whose single failure becomes the call's error.
    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError>;
    async fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> Result<String, KinesisError>;
    async fn get_records(
        &self,
        input: GetRecordsInput,
    ) -> Result<GetRecordsOutput<Self::Records>, KinesisError>;
    async fn add_tags_to_stream(
        &self,
        stream_name: String,
        tags: Vec<Tag>,
    ) -> Result<(), KinesisError>;
    async fn remove_tags_from_stream(
        &self,
        stream_name: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError>;
    async fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
    ) -> Result<ListTagsForStreamOutput, KinesisError>;
    async fn increase_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError>;
    async fn decrease_stream_retention_period(
        &self,
        stream_name: String,
        retention_period_hours: u32,
    ) -> Result<(), KinesisError>;

    /// PutRecord. Implementations check `SequenceNumberForOrdering` (a number that is not one
    /// of this stream's is InvalidArgument) and then append like a PutRecords of one entry,
    /// whose single failure becomes the call's error.
    async fn put_record(&self, input: PutRecordInput) -> Result<PutRecordOutput, KinesisError>;

    // Resharding. Each call only starts the reshard (the stream goes UPDATING); storage
    // completes it once the UPDATING window has passed.
    async fn split_shard(&self, input: SplitShardInput) -> Result<(), KinesisError>;
    async fn merge_shards(&self, input: MergeShardsInput) -> Result<(), KinesisError>;
    async fn update_shard_count(
        &self,
        input: UpdateShardCountInput,
    ) -> Result<UpdateShardCountOutput, KinesisError>;

    // Stream settings.
    async fn update_stream_mode(&self, input: UpdateStreamModeInput) -> Result<(), KinesisError>;
    async fn describe_limits(&self) -> Result<DescribeLimitsOutput, KinesisError>;
    async fn enable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError>;
    async fn disable_enhanced_monitoring(
        &self,
        stream_name: String,
        shard_level_metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError>;
    async fn update_max_record_size(
        &self,
        stream_name: String,
        max_record_size_kib: u32,
    ) -> Result<(), KinesisError>;
    async fn start_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError>;
    async fn stop_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError>;
    async fn update_stream_warm_throughput(
        &self,
        stream_name: String,
        warm_throughput_mibps: u32,
    ) -> Result<UpdateStreamWarmThroughputOutput, KinesisError>;

    // Account settings.
    async fn describe_account_settings(
        &self,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError>;
    /// `enable` is the requested `MinimumThroughputBillingCommitment.Status` (ENABLED or not).
    async fn update_account_settings(
        &self,
        enable: bool,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError>;

    // Enhanced fan-out consumers (registration; delivery is SubscribeToShard).
    async fn register_stream_consumer(
        &self,
        input: RegisterStreamConsumerInput,
    ) -> Result<ConsumerDescription, KinesisError>;
    async fn deregister_stream_consumer(&self, consumer: ConsumerRef) -> Result<(), KinesisError>;
    async fn describe_stream_consumer(
        &self,
        consumer: ConsumerRef,
    ) -> Result<ConsumerDescription, KinesisError>;
    async fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
    ) -> Result<ListStreamConsumersOutput, KinesisError>;

    // Operations on a resource named by ARN (a stream or a consumer).
    async fn put_resource_policy(
        &self,
        resource_arn: String,
        policy: String,
    ) -> Result<(), KinesisError>;
    async fn get_resource_policy(&self, resource_arn: String) -> Result<String, KinesisError>;
    async fn delete_resource_policy(&self, resource_arn: String) -> Result<(), KinesisError>;
    async fn tag_resource(&self, resource_arn: String, tags: Vec<Tag>) -> Result<(), KinesisError>;
    async fn untag_resource(
        &self,
        resource_arn: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError>;
    async fn list_tags_for_resource(&self, resource_arn: String) -> Result<Vec<Tag>, KinesisError>;
    /// The resource policy stored for a live stream or consumer ARN, for enforcement (see
    /// `crate::policy`); `None` when there is none or the ARN names nothing.
    async fn resource_policy(&self, resource_arn: String) -> Option<String>;

    // Enhanced fan-out delivery (SubscribeToShard) is not an operation of this trait: it reads
    // records through the narrow storage face (`crate::storage::RecordLog`) and asks this trait
    // only for the consumer (`describe_stream_consumer`) and the shard lineage (`list_shards`).
    // These two hooks let an implementation count what that delivery did. They have a default
    // that does nothing, unlike every other method, because they only observe: an
    // implementation without metrics (a test model) loses nothing by ignoring them.

    /// A SubscribeToShard on `stream_name` was accepted and starts streaming.
    fn count_subscribe(&self, stream_name: &str) {
        let _ = stream_name;
    }

    /// A SubscribeToShardEvent carrying `records` of `shard` was produced.
    fn count_subscribe_event(
        &self,
        shard: &crate::storage::ShardAddress,
        records: &dyn RecordBatch,
        millis_behind_latest: u64,
    ) {
        let _ = (shard, records, millis_behind_latest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{PARTITION_KEY_CHARS_MAX, PUT_RECORDS_BYTES_MAX, RECORD_BYTES_MAX};

    fn entry(partition_key: &str, data_bytes: usize) -> PutRecordsEntry {
        PutRecordsEntry {
            data: vec![0; data_bytes].into(),
            partition_key: partition_key.to_owned(),
            explicit_hash_key: None,
        }
    }

    #[test]
    fn partition_keys_of_1_to_256_characters_pass_and_others_are_refused() {
        let longest = "é".repeat(PARTITION_KEY_CHARS_MAX);
        assert_eq!(check_partition_key(0, &longest, true), Ok(()));
        assert_eq!(check_partition_key(0, "", false), Ok(()));
        let error = check_partition_key(3, "", true).expect_err("required");
        assert_eq!(error.kind, crate::ErrorKind::InvalidArgument);
        assert_eq!(
            error.message,
            "Record 3 has an empty partition key; a partition key has 1 to 256 characters."
        );
        let too_long = "k".repeat(PARTITION_KEY_CHARS_MAX + 1);
        let error = check_partition_key(1, &too_long, false).expect_err("too long");
        assert_eq!(
            error.message,
            "Record 1 has a partition key of 257 characters; at most 256 are allowed."
        );
    }

    #[test]
    fn record_and_batch_sizes_are_refused_with_one_message_each() {
        let at_limit = entry("k", RECORD_BYTES_MAX - 1);
        assert_eq!(
            check_record_sizes(RECORD_BYTES_MAX, &[at_limit], true),
            Ok(())
        );
        let over = entry("kk", RECORD_BYTES_MAX - 1);
        assert_eq!(
            check_record_sizes(RECORD_BYTES_MAX, &[over], false),
            Err(record_too_large(RECORD_BYTES_MAX + 1, RECORD_BYTES_MAX))
        );
        assert_eq!(
            record_too_large(RECORD_BYTES_MAX + 1, RECORD_BYTES_MAX).message,
            "The record size (1048577 bytes of partition key and data) exceeds the maximum record size of 1048576 bytes."
        );
        let six: Vec<_> = (0..6).map(|_| entry("k", RECORD_BYTES_MAX - 1)).collect();
        assert_eq!(
            check_record_sizes(RECORD_BYTES_MAX, &six, false),
            Err(records_too_large(PUT_RECORDS_BYTES_MAX))
        );
        assert_eq!(
            records_too_large(PUT_RECORDS_BYTES_MAX).message,
            "Records size exceeds 5 MB limit"
        );
        assert_eq!(
            records_too_large(PUT_RECORDS_LARGE_BYTES_MAX).message,
            "Records size exceeds 10 MB limit"
        );
    }
}
