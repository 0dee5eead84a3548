//! A small in-memory `KinesisApi` for exercising `handle_kinesis` end to end without storage.
//! Streams are ACTIVE at once, shards split the hash space evenly, records live in vectors, and
//! time is a fixed clock the test can move.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use sluice_core::api::{
    CreateStreamInput, DeleteStreamInput, DescribeStreamInput, EncryptionType, GetRecordsInput,
    GetRecordsOutput, GetShardIteratorInput, KinesisApi, ListShardsInput, ListShardsOutput,
    ListStreamsInput, ListStreamsOutput, ListTagsForStreamInput, ListTagsForStreamOutput,
    OwnedRecord, PutRecordsInput, PutRecordsOutput, PutRecordsResultEntry, ShardDescription,
    ShardIteratorType, StreamDescription, StreamDescriptionSummary, StreamMode, StreamStatus,
    StreamSummary, Tag,
};
use sluice_core::hash_key::{HashRange, partition_key_hash};
use sluice_core::shard_id::{format_shard_id, parse_shard_id};
use sluice_core::shard_iterator::ShardIterator;
use sluice_core::{KinesisError, SequenceNumber};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

struct ModelStream {
    created_ms: u64,
    mode: StreamMode,
    retention_hours: u32,
    ranges: Vec<HashRange>,
    shards: Vec<Vec<OwnedRecord>>,
    tags: BTreeMap<String, String>,
}

pub struct Model {
    pub now_ms: Cell<u64>,
    streams: RefCell<BTreeMap<String, ModelStream>>,
    /// When set, PutRecords fails this entry index with ProvisionedThroughputExceeded.
    pub throttle_entry: Cell<Option<usize>>,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            now_ms: Cell::new(1_704_164_645_678),
            streams: RefCell::new(BTreeMap::new()),
            throttle_entry: Cell::new(None),
        }
    }
}

impl Model {
    fn arn(name: &str) -> String {
        format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
    }

    fn with_stream<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut ModelStream) -> Result<T, KinesisError>,
    ) -> Result<T, KinesisError> {
        let mut streams = self.streams.borrow_mut();
        let stream = streams
            .get_mut(name)
            .ok_or_else(|| KinesisError::stream_not_found(name, ACCOUNT))?;
        f(stream)
    }

    fn describe_shards(s: &ModelStream) -> Vec<ShardDescription> {
        s.ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let index = u32::try_from(i).expect("test streams have few shards");
                ShardDescription {
                    shard_id: format_shard_id(index),
                    parent_shard_id: None,
                    adjacent_parent_shard_id: None,
                    hash_key_range: *r,
                    starting_sequence_number: SequenceNumber::new(
                        s.created_ms / 1000,
                        index,
                        0,
                        s.created_ms / 1000,
                    )
                    .to_string(),
                    ending_sequence_number: None,
                }
            })
            .collect()
    }
}

impl KinesisApi for Model {
    type Records = Vec<OwnedRecord>;

    fn region(&self) -> &str {
        REGION
    }

    fn account_id(&self) -> &str {
        ACCOUNT
    }

    async fn create_stream(&self, input: CreateStreamInput) -> Result<(), KinesisError> {
        let mut streams = self.streams.borrow_mut();
        if streams.contains_key(&input.stream_name) {
            return Err(KinesisError::stream_exists(&input.stream_name, ACCOUNT));
        }
        let count = input.shard_count.unwrap_or(4);
        streams.insert(
            input.stream_name,
            ModelStream {
                created_ms: self.now_ms.get(),
                mode: input.stream_mode.unwrap_or(StreamMode::Provisioned),
                retention_hours: 24,
                ranges: HashRange::even_split(count),
                shards: (0..count).map(|_| Vec::new()).collect(),
                tags: input.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            },
        );
        Ok(())
    }

    async fn delete_stream(&self, input: DeleteStreamInput) -> Result<(), KinesisError> {
        self.streams
            .borrow_mut()
            .remove(&input.stream_name)
            .map(|_| ())
            .ok_or_else(|| KinesisError::stream_not_found(&input.stream_name, ACCOUNT))
    }

    async fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError> {
        self.with_stream(&input.stream_name, |s| {
            Ok(StreamDescription {
                stream_name: input.stream_name.clone(),
                stream_arn: Self::arn(&input.stream_name),
                stream_status: StreamStatus::Active,
                stream_mode: s.mode,
                shards: Self::describe_shards(s),
                has_more_shards: false,
                retention_period_hours: s.retention_hours,
                stream_creation_timestamp_ms: s.created_ms,
                shard_level_metrics: Vec::new(),
                encryption_type: EncryptionType::None,
                key_id: None,
            })
        })
    }

    async fn describe_stream_summary(
        &self,
        stream_name: String,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        self.with_stream(&stream_name, |s| {
            Ok(StreamDescriptionSummary {
                stream_name: stream_name.clone(),
                stream_arn: Self::arn(&stream_name),
                stream_status: StreamStatus::Active,
                stream_mode: s.mode,
                retention_period_hours: s.retention_hours,
                stream_creation_timestamp_ms: s.created_ms,
                shard_level_metrics: Vec::new(),
                encryption_type: EncryptionType::None,
                key_id: None,
                open_shard_count: u32::try_from(s.ranges.len()).expect("few shards"),
                consumer_count: 0,
                max_record_size_kib: 1024,
            })
        })
    }

    async fn list_streams(
        &self,
        input: ListStreamsInput,
    ) -> Result<ListStreamsOutput, KinesisError> {
        let streams = self.streams.borrow();
        let limit = input.limit.unwrap_or(100).min(100) as usize;
        let after = input.exclusive_start_stream_name.unwrap_or_default();
        let names: Vec<&String> = streams
            .keys()
            .filter(|n| n.as_str() > after.as_str())
            .collect();
        let page: Vec<String> = names.iter().take(limit).map(|n| (*n).clone()).collect();
        Ok(ListStreamsOutput {
            has_more_streams: names.len() > page.len(),
            next_token: None,
            stream_summaries: page
                .iter()
                .map(|n| StreamSummary {
                    stream_name: n.clone(),
                    stream_arn: Self::arn(n),
                    stream_status: StreamStatus::Active,
                    stream_mode: streams[n].mode,
                    stream_creation_timestamp_ms: streams[n].created_ms,
                })
                .collect(),
            stream_names: page,
        })
    }

    async fn list_shards(&self, input: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
        let name = input
            .stream_name
            .ok_or_else(|| KinesisError::invalid_argument("model has no NextTokens"))?;
        self.with_stream(&name, |s| {
            Ok(ListShardsOutput {
                shards: Self::describe_shards(s),
                next_token: None,
            })
        })
    }

    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        let now = self.now_ms.get();
        let throttle = self.throttle_entry.get();
        self.with_stream(&input.stream_name, |s| {
            let records = input
                .records
                .into_iter()
                .enumerate()
                .map(|(i, entry)| {
                    if throttle == Some(i) {
                        return Err(KinesisError::new(
                            sluice_core::ErrorKind::ProvisionedThroughputExceeded,
                            "Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000.",
                        ));
                    }
                    let key = entry.explicit_hash_key.unwrap_or_else(|| partition_key_hash(&entry.partition_key));
                    let index = s.ranges.iter().position(|r| r.contains(key)).expect("ranges cover the key space");
                    let shard_index = u32::try_from(index).expect("few shards");
                    let position = s.shards[index].len() as u64;
                    let sequence_number = SequenceNumber::new(s.created_ms / 1000, shard_index, position, now / 1000);
                    s.shards[index].push(OwnedRecord {
                        sequence_number,
                        approximate_arrival_timestamp_ms: now,
                        partition_key: entry.partition_key,
                        data: entry.data,
                    });
                    Ok(PutRecordsResultEntry { shard_id: format_shard_id(shard_index), sequence_number })
                })
                .collect();
            Ok(PutRecordsOutput { encryption_type: EncryptionType::None, records })
        })
    }

    async fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> Result<String, KinesisError> {
        let now = self.now_ms.get();
        self.with_stream(&input.stream_name, |s| {
            let index = parse_shard_id(&input.shard_id)
                .filter(|&i| (i as usize) < s.shards.len())
                .ok_or_else(|| {
                    KinesisError::shard_not_found(&input.shard_id, &input.stream_name, ACCOUNT)
                })?;
            let position = match input.shard_iterator_type {
                ShardIteratorType::TrimHorizon => 0,
                ShardIteratorType::Latest => s.shards[index as usize].len() as u64,
                _ => {
                    return Err(KinesisError::invalid_argument(
                        "model supports TRIM_HORIZON and LATEST",
                    ));
                }
            };
            Ok(ShardIterator {
                issued_ms: now,
                stream_created_ms: s.created_ms,
                stream_name: input.stream_name.clone(),
                shard_index: index,
                position,
            }
            .encode())
        })
    }

    async fn get_records(
        &self,
        input: GetRecordsInput,
    ) -> Result<GetRecordsOutput<Self::Records>, KinesisError> {
        let iterator = ShardIterator::decode(&input.shard_iterator)
            .ok_or_else(KinesisError::invalid_shard_iterator)?;
        let now = self.now_ms.get();
        self.with_stream(&iterator.stream_name, |s| {
            let shard = &s.shards[iterator.shard_index as usize];
            let start = (iterator.position as usize).min(shard.len());
            let end = (start + input.limit.unwrap_or(10_000) as usize).min(shard.len());
            let records = shard[start..end].to_vec();
            let next = ShardIterator {
                issued_ms: now,
                position: end as u64,
                ..iterator.clone()
            };
            Ok(GetRecordsOutput {
                records,
                next_shard_iterator: Some(next.encode()),
                millis_behind_latest: 0,
                child_shards: Vec::new(),
            })
        })
    }

    async fn add_tags_to_stream(
        &self,
        stream_name: String,
        tags: Vec<Tag>,
    ) -> Result<(), KinesisError> {
        self.with_stream(&stream_name, |s| {
            s.tags.extend(tags.into_iter().map(|t| (t.key, t.value)));
            Ok(())
        })
    }

    async fn remove_tags_from_stream(
        &self,
        stream_name: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.with_stream(&stream_name, |s| {
            for k in tag_keys {
                s.tags.remove(&k);
            }
            Ok(())
        })
    }

    async fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        self.with_stream(&input.stream_name, |s| {
            let after = input.exclusive_start_tag_key.clone().unwrap_or_default();
            let all: Vec<Tag> = s
                .tags
                .iter()
                .filter(|(k, _)| k.as_str() > after.as_str())
                .map(|(k, v)| Tag {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            let limit = input.limit.unwrap_or(50) as usize;
            Ok(ListTagsForStreamOutput {
                has_more_tags: all.len() > limit,
                tags: all.into_iter().take(limit).collect(),
            })
        })
    }

    async fn increase_stream_retention_period(
        &self,
        stream_name: String,
        hours: u32,
    ) -> Result<(), KinesisError> {
        self.with_stream(&stream_name, |s| {
            if hours > 8760 {
                return Err(KinesisError::invalid_argument(format!(
                    "Maximum allowed retention period is 8760 hours. Requested retention period ({hours} hours) is too long."
                )));
            }
            s.retention_hours = hours;
            Ok(())
        })
    }

    async fn decrease_stream_retention_period(
        &self,
        stream_name: String,
        hours: u32,
    ) -> Result<(), KinesisError> {
        self.with_stream(&stream_name, |s| {
            if hours < 24 {
                return Err(KinesisError::invalid_argument(format!(
                    "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
                )));
            }
            s.retention_hours = hours;
            Ok(())
        })
    }
}
