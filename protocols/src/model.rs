//! An in-memory [`KinesisApi`] for tests, benches and fuzzing; not for production. It stores
//! nothing on disk, keeps every record in memory without bound, and answers in the shape of the
//! real engine only as far as the tests that use it need.
//!
//! Streams are ACTIVE at once, shards split the hash space evenly, records live in vectors, and
//! time is a fixed clock the caller can move. The records are also behind the narrow storage
//! face ([`ModelLog`], a `RecordLog`), which enhanced fan-out reads; that face never waits (a
//! read with a wait answers at once) and stamps its own appends with the shard's last arrival. The control-plane operations beyond the basic
//! stream calls (resharding, settings, consumers, policies, tags by ARN) run on a real
//! `sluice_core::catalog::Catalog` kept alongside, with every delay at zero and reshards
//! completed at once, so their outputs are the engine's.
//!
//! It must not panic on any input that reaches it through `handle_kinesis`, forged shard
//! iterators and sequence numbers included: the `kinesis_json` fuzz target drives it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice_core::api::{
    ConsumerDescription, ConsumerRef, CreateStreamInput, DeleteStreamInput, DescribeLimitsOutput,
    DescribeStreamInput, EncryptionType, EnhancedMonitoringOutput, GetRecordsInput,
    GetRecordsOutput, GetShardIteratorInput, KinesisApi, ListShardsInput, ListShardsOutput,
    ListStreamConsumersInput, ListStreamConsumersOutput, ListStreamsInput, ListStreamsOutput,
    ListTagsForStreamInput, ListTagsForStreamOutput, MergeShardsInput,
    MinimumThroughputBillingCommitment, OwnedRecord, PutRecordInput, PutRecordOutput,
    PutRecordsEntry, PutRecordsInput, PutRecordsOutput, PutRecordsResultEntry,
    RegisterStreamConsumerInput, ShardDescription, ShardIteratorType, SplitShardInput,
    StreamDescription, StreamDescriptionSummary, StreamEncryptionInput, StreamMode, StreamStatus,
    StreamSummary, Tag, UpdateShardCountInput, UpdateShardCountOutput, UpdateStreamModeInput,
    UpdateStreamWarmThroughputOutput, check_record_sizes,
};
use sluice_core::catalog::{Catalog, CatalogConfig};
use sluice_core::hash_key::{HashRange, partition_key_hash};
use sluice_core::shard_id::{format_shard_id, parse_shard_id};
use sluice_core::shard_iterator::ShardIterator;
use sluice_core::storage::{
    AppendError, Appended, NewRecord, ReadBatch, ReadError, ReadLimits, ReadStart, RecordLog,
    ShardAddress, ShardOrigin, ShardPlacement,
};
use sluice_core::{KinesisError, SequenceNumber};

/// The region every model answers for.
pub const REGION: &str = "us-east-1";
/// The account every model answers for.
pub const ACCOUNT: &str = "000000000000";

struct ModelStream {
    created_ms: u64,
    mode: StreamMode,
    retention_hours: u32,
    ranges: Vec<HashRange>,
    /// Per shard, its ShardId, formatted once rather than for every record put.
    shard_ids: Vec<String>,
    /// Per shard, how many records were appended: the position of the next one.
    appended: Vec<u64>,
    tags: BTreeMap<String, String>,
}

/// The in-memory model (see the module doc). Clones share one state, the way every connection
/// of the server shares one engine handle; like that handle it is not `Send`.
#[derive(Clone)]
pub struct Model {
    /// The model's clock, in milliseconds since the epoch. It moves only when the caller sets it.
    pub now_ms: Rc<Cell<u64>>,
    /// When set, PutRecords fails this entry index with ProvisionedThroughputExceeded.
    pub throttle_entry: Rc<Cell<Option<usize>>>,
    state: Rc<ModelState>,
}

struct ModelState {
    /// False once puts are numbered and answered but their records dropped
    /// (see [`Model::discarding_records`]). It never turns back to true.
    keep_records: Cell<bool>,
    streams: RefCell<BTreeMap<String, ModelStream>>,
    /// Control-plane state of the same streams (see the module doc).
    catalog: RefCell<Catalog>,
    /// The records, per stream and shard.
    log: ModelLog,
}

/// The model's records behind the narrow storage face (see the module doc). Clones share the
/// records, with the model they came from too.
#[derive(Clone, Default)]
pub struct ModelLog {
    streams: Arc<Mutex<BTreeMap<String, LogStream>>>,
}

struct LogStream {
    created_ms: u64,
    ranges: Vec<HashRange>,
    /// Per shard, the records kept; empty when the model discards records.
    shards: Vec<Vec<OwnedRecord>>,
}

impl std::fmt::Debug for ModelLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelLog")
            .field("streams", &self.lock().len())
            .finish()
    }
}

impl ModelLog {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, LogStream>> {
        // The map holds plain data that every critical section leaves consistent.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a read of `records` (the shard `index` of a stream created at `created_ms`) starts:
/// GetShardIterator's rules, as far as the model keeps them.
fn model_read_start(
    records: &[OwnedRecord],
    origin: ShardOrigin,
    start: ReadStart,
) -> Result<usize, String> {
    let belongs = |s: SequenceNumber| {
        if s.shard_index == origin.shard_index && s.shard_created_s == origin.created_s {
            Ok(usize::try_from(s.position).unwrap_or(usize::MAX))
        } else {
            Err(format!(
                "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                format_shard_id(s.shard_index),
                format_shard_id(origin.shard_index)
            ))
        }
    };
    let start = match start {
        ReadStart::TrimHorizon => 0,
        ReadStart::Latest => records.len(),
        ReadStart::AtTimestamp { timestamp_ms } => records
            .iter()
            .position(|r| r.approximate_arrival_timestamp_ms >= timestamp_ms)
            .unwrap_or(records.len()),
        ReadStart::AtSequenceNumber(s) => belongs(s)?,
        ReadStart::AfterSequenceNumber(s) => belongs(s)?.saturating_add(1),
        ReadStart::AtPosition(position) => usize::try_from(position).unwrap_or(usize::MAX),
    };
    Ok(start.min(records.len()))
}

impl RecordLog for ModelLog {
    fn shards(&self, stream_name: &str) -> Result<Vec<ShardPlacement>, ReadError> {
        let streams = self.lock();
        let stream = streams
            .get(stream_name)
            .ok_or_else(|| ReadError::StreamNotFound {
                stream_name: stream_name.to_owned(),
            })?;
        Ok(stream
            .ranges
            .iter()
            .enumerate()
            .map(|(i, range)| ShardPlacement {
                shard_index: u32::try_from(i).expect("test streams have few shards"),
                hash_range: *range,
                core_id: 0,
                open: true,
            })
            .collect())
    }

    async fn append(
        &self,
        shard: &ShardAddress,
        records: Vec<NewRecord>,
    ) -> Result<Appended, AppendError> {
        assert!(!records.is_empty());
        let mut streams = self.lock();
        let stream =
            streams
                .get_mut(&shard.stream_name)
                .ok_or_else(|| AppendError::StreamNotWritable {
                    stream_name: shard.stream_name.clone(),
                })?;
        let origin = ShardOrigin {
            shard_index: shard.shard_index,
            created_s: stream.created_ms / 1000,
        };
        let kept = stream
            .shards
            .get_mut(shard.shard_index as usize)
            .ok_or_else(|| AppendError::ShardNotFound {
                shard: shard.clone(),
            })?;
        let arrival_ms = kept
            .last()
            .map_or(stream.created_ms, |r| r.approximate_arrival_timestamp_ms);
        let first = kept.len() as u64;
        let appended = Appended {
            origin,
            positions: first..first + records.len() as u64,
            arrival_ms,
        };
        for (position, record) in appended.positions.clone().zip(records) {
            kept.push(OwnedRecord {
                sequence_number: appended.sequence_number(position),
                approximate_arrival_timestamp_ms: arrival_ms,
                partition_key: record.partition_key,
                data: record.data,
            });
        }
        Ok(appended)
    }

    async fn read(
        &self,
        shard: &ShardAddress,
        start: ReadStart,
        limits: ReadLimits,
        _wait: Option<Duration>,
    ) -> Result<ReadBatch, ReadError> {
        let streams = self.lock();
        let stream = streams
            .get(&shard.stream_name)
            .ok_or_else(|| ReadError::StreamNotFound {
                stream_name: shard.stream_name.clone(),
            })?;
        let records = stream
            .shards
            .get(shard.shard_index as usize)
            .ok_or_else(|| ReadError::ShardNotFound {
                shard: shard.clone(),
            })?;
        let origin = ShardOrigin {
            shard_index: shard.shard_index,
            created_s: stream.created_ms / 1000,
        };
        let first =
            model_read_start(records, origin, start).map_err(|detail| ReadError::InvalidStart {
                shard: shard.clone(),
                detail,
            })?;
        let mut batch = ReadBatch::new(origin, 0, 0);
        let mut bytes = 0;
        let mut end = first;
        for record in &records[first..] {
            if end - first >= limits.records_max.max(1)
                || (end > first && bytes + record.data.len() > limits.bytes_max)
            {
                break;
            }
            bytes += record.data.len();
            batch.push(
                end as u64,
                record.approximate_arrival_timestamp_ms,
                &record.partition_key,
                &record.data,
            );
            end += 1;
        }
        batch.start_position = first as u64;
        batch.next_position = Some(end as u64);
        batch.tip_position = records.len() as u64;
        batch.tip_arrival_ms = records.last().map(|r| r.approximate_arrival_timestamp_ms);
        batch.millis_behind_latest = match (batch.tip_arrival_ms, batch.last_arrival_ms()) {
            (Some(tip), Some(last)) => tip.saturating_sub(last),
            _ => 0,
        };
        Ok(batch)
    }
}

impl Default for Model {
    /// A model with no streams.
    fn default() -> Self {
        Self {
            now_ms: Rc::new(Cell::new(1_704_164_645_678)),
            throttle_entry: Rc::new(Cell::new(None)),
            state: Rc::new(ModelState {
                keep_records: Cell::new(true),
                streams: RefCell::new(BTreeMap::new()),
                catalog: RefCell::new(Catalog::new(CatalogConfig {
                    region: REGION.to_owned(),
                    account_id: ACCOUNT.to_owned(),
                    create_delay_ms: 0,
                    delete_delay_ms: 0,
                    update_delay_ms: 0,
                    ..CatalogConfig::default()
                })),
                log: ModelLog::default(),
            }),
        }
    }
}

impl Model {
    /// A model holding one ACTIVE provisioned stream of `shard_count` shards.
    pub fn with_stream(stream_name: &str, shard_count: u32) -> Self {
        let model = Self::default();
        model
            .create(CreateStreamInput {
                stream_name: stream_name.to_owned(),
                shard_count: Some(shard_count),
                stream_mode: None,
                tags: Vec::new(),
            })
            .expect("an empty model accepts a valid stream name and shard count");
        model
    }

    /// This model, answering puts from now on (routed, numbered and size-checked as usual)
    /// without keeping their records, so a benchmark can put for as long as it likes in
    /// constant memory. Reads see only the records kept before. It applies to every clone, as
    /// they share one state.
    pub fn discarding_records(self) -> Self {
        self.state.keep_records.set(false);
        self
    }

    /// The model's records behind the narrow storage face.
    pub fn log(&self) -> ModelLog {
        self.state.log.clone()
    }

    fn arn(name: &str) -> String {
        format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
    }

    fn on_stream<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut ModelStream) -> Result<T, KinesisError>,
    ) -> Result<T, KinesisError> {
        let mut streams = self.state.streams.borrow_mut();
        let stream = streams
            .get_mut(name)
            .ok_or_else(|| KinesisError::stream_not_found(name, ACCOUNT))?;
        f(stream)
    }

    /// Runs a catalog change, then completes any reshard it started (a shard's tip is the number of records appended to it).
    fn catalog_change<T>(
        &self,
        change: impl FnOnce(&mut Catalog, u64) -> Result<T, KinesisError>,
    ) -> Result<T, KinesisError> {
        let now = self.now_ms.get();
        let mut catalog = self.state.catalog.borrow_mut();
        let out = change(&mut catalog, now)?;
        let streams = self.state.streams.borrow();
        for due in catalog.due_reshards(now) {
            let tips = |index: u32| {
                streams
                    .get(&due.stream_name)
                    .and_then(|s| s.appended.get(index as usize))
                    .copied()
                    .unwrap_or(0)
            };
            catalog.complete_reshard(
                &due.stream_name,
                due.stream_created_ms,
                now,
                &tips,
                &mut |index| index,
            );
        }
        Ok(out)
    }

    /// The engine's size rules, against the catalog stream's maximum record size.
    fn check_sizes(
        &self,
        stream_name: &str,
        records: &[PutRecordsEntry],
        single: bool,
    ) -> Result<(), KinesisError> {
        let catalog = self.state.catalog.borrow();
        let max = catalog
            .live_stream(stream_name, self.now_ms.get())
            .map_or(sluice_core::limits::RECORD_BYTES_MAX, |s| {
                s.max_record_bytes()
            });
        check_record_sizes(max, records, single)
    }

    /// CreateStream, callable without an executor.
    fn create(&self, input: CreateStreamInput) -> Result<(), KinesisError> {
        let mut streams = self.state.streams.borrow_mut();
        if streams.contains_key(&input.stream_name) {
            return Err(KinesisError::stream_exists(&input.stream_name, ACCOUNT));
        }
        let count = input.shard_count.unwrap_or(4);
        self.state.catalog.borrow_mut().create_stream(
            input.clone(),
            self.now_ms.get(),
            &mut |index| index,
        )?;
        self.state.log.lock().insert(
            input.stream_name.clone(),
            LogStream {
                created_ms: self.now_ms.get(),
                ranges: HashRange::even_split(count),
                shards: (0..count).map(|_| Vec::new()).collect(),
            },
        );
        streams.insert(
            input.stream_name,
            ModelStream {
                created_ms: self.now_ms.get(),
                mode: input.stream_mode.unwrap_or(StreamMode::Provisioned),
                retention_hours: 24,
                ranges: HashRange::even_split(count),
                shard_ids: (0..count).map(format_shard_id).collect(),
                appended: vec![0; count as usize],
                tags: input.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            },
        );
        Ok(())
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
        self.create(input)
    }

    async fn delete_stream(&self, input: DeleteStreamInput) -> Result<(), KinesisError> {
        let now = self.now_ms.get();
        let mut catalog = self.state.catalog.borrow_mut();
        catalog.delete_stream(input.clone(), now)?;
        catalog.reap(now);
        drop(catalog);
        self.state.log.lock().remove(&input.stream_name);
        self.state
            .streams
            .borrow_mut()
            .remove(&input.stream_name)
            .map(|_| ())
            .ok_or_else(|| KinesisError::stream_not_found(&input.stream_name, ACCOUNT))
    }

    async fn describe_stream(
        &self,
        input: DescribeStreamInput,
    ) -> Result<StreamDescription, KinesisError> {
        self.on_stream(&input.stream_name, |s| {
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
        self.on_stream(&stream_name, |s| {
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
        let streams = self.state.streams.borrow();
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
        self.on_stream(&name, |s| {
            Ok(ListShardsOutput {
                shards: Self::describe_shards(s),
                next_token: None,
            })
        })
    }

    async fn put_records(&self, input: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
        self.check_sizes(&input.stream_name, &input.records, false)?;
        let now = self.now_ms.get();
        let throttle = self.throttle_entry.get();
        let keep_records = self.state.keep_records.get();
        let mut log = self.state.log.lock();
        self.on_stream(&input.stream_name, |s| {
            let kept = &mut log
                .get_mut(&input.stream_name)
                .expect("the log holds every stream of the model")
                .shards;
            let mut records = Vec::with_capacity(input.records.len());
            for (i, entry) in input.records.into_iter().enumerate() {
                if throttle == Some(i) {
                    records.push(Err(KinesisError::new(
                        sluice_core::ErrorKind::ProvisionedThroughputExceeded,
                        "Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000.",
                    )));
                    continue;
                }
                // A lone shard owns the whole key space, so the partition key's MD5 would
                // decide nothing; skipping it keeps the model out of the JSON bench's numbers.
                let index = if s.ranges.len() == 1 {
                    0
                } else {
                    let key = entry
                        .explicit_hash_key
                        .unwrap_or_else(|| partition_key_hash(&entry.partition_key));
                    s.ranges
                        .iter()
                        .position(|r| r.contains(key))
                        .expect("the even split covers the whole key space")
                };
                let shard_index = u32::try_from(index).expect("shard counts fit u32");
                let position = s.appended[index];
                s.appended[index] = position + 1;
                let sequence_number =
                    SequenceNumber::new(s.created_ms / 1000, shard_index, position, now / 1000);
                if keep_records {
                    assert!(kept[index].len() as u64 == position);
                    kept[index].push(OwnedRecord {
                        sequence_number,
                        approximate_arrival_timestamp_ms: now,
                        partition_key: entry.partition_key,
                        data: entry.data.to_vec(),
                    });
                }
                records.push(Ok(PutRecordsResultEntry {
                    shard_id: s.shard_ids[index].as_str().into(),
                    sequence_number,
                }));
            }
            Ok(PutRecordsOutput {
                encryption_type: EncryptionType::None,
                records,
            })
        })
    }

    async fn get_shard_iterator(
        &self,
        input: GetShardIteratorInput,
    ) -> Result<String, KinesisError> {
        let now = self.now_ms.get();
        self.on_stream(&input.stream_name, |s| {
            let index = parse_shard_id(&input.shard_id)
                .filter(|&i| (i as usize) < s.ranges.len())
                .ok_or_else(|| {
                    KinesisError::shard_not_found(&input.shard_id, &input.stream_name, ACCOUNT)
                })?;
            let position = match input.shard_iterator_type {
                ShardIteratorType::TrimHorizon => 0,
                ShardIteratorType::Latest => s.appended[index as usize],
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
        let log = self.state.log.lock();
        self.on_stream(&iterator.stream_name, |_| {
            // The iterator's CRC only catches damage, so a forged one can name any shard.
            let shard = log
                .get(&iterator.stream_name)
                .expect("the log holds every stream of the model")
                .shards
                .get(iterator.shard_index as usize)
                .ok_or_else(KinesisError::invalid_shard_iterator)?;
            let start = (iterator.position as usize).min(shard.len());
            let mut end = (start + input.limit.unwrap_or(10_000) as usize).min(shard.len());
            // The front end's byte cap, like the engine's: at least one record.
            if let Some(cap) = input.bytes_max {
                let mut bytes = 0;
                for (i, record) in shard[start..end].iter().enumerate() {
                    bytes += record.data.len();
                    if i > 0 && bytes > cap {
                        end = start + i;
                        break;
                    }
                }
            }
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
        self.on_stream(&stream_name, |s| {
            s.tags.extend(tags.into_iter().map(|t| (t.key, t.value)));
            Ok(())
        })
    }

    async fn remove_tags_from_stream(
        &self,
        stream_name: String,
        tag_keys: Vec<String>,
    ) -> Result<(), KinesisError> {
        self.on_stream(&stream_name, |s| {
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
        self.on_stream(&input.stream_name, |s| {
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
        self.on_stream(&stream_name, |s| {
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
        self.on_stream(&stream_name, |s| {
            if hours < 24 {
                return Err(KinesisError::invalid_argument(format!(
                    "Minimum allowed retention period is 24 hours. Requested retention period ({hours} hours) is too short."
                )));
            }
            s.retention_hours = hours;
            Ok(())
        })
    }

    async fn put_record(&self, input: PutRecordInput) -> Result<PutRecordOutput, KinesisError> {
        if let Some(ordering) = &input.sequence_number_for_ordering
            && SequenceNumber::parse(ordering).is_err()
        {
            return Err(KinesisError::invalid_argument(format!(
                "ExclusiveMinimumSequenceNumber {ordering} used in PutRecord on stream {} under account {ACCOUNT} is invalid.",
                input.stream_name
            )));
        }
        self.check_sizes(
            &input.stream_name,
            std::slice::from_ref(&input.record),
            true,
        )?;
        let output = self
            .put_records(PutRecordsInput {
                stream_name: input.stream_name,
                records: vec![input.record],
            })
            .await?;
        let entry = output
            .records
            .into_iter()
            .next()
            .expect("one entry in, one result out")?;
        Ok(PutRecordOutput {
            shard_id: entry.shard_id.to_string(),
            sequence_number: entry.sequence_number,
            encryption_type: output.encryption_type,
        })
    }

    async fn split_shard(&self, input: SplitShardInput) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.split_shard(input, now))
    }

    async fn merge_shards(&self, input: MergeShardsInput) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.merge_shards(input, now))
    }

    async fn update_shard_count(
        &self,
        input: UpdateShardCountInput,
    ) -> Result<UpdateShardCountOutput, KinesisError> {
        self.catalog_change(|c, now| c.update_shard_count(input, now))
    }

    async fn update_stream_mode(&self, input: UpdateStreamModeInput) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.update_stream_mode(input, now))
    }

    async fn describe_limits(&self) -> Result<DescribeLimitsOutput, KinesisError> {
        Ok(self
            .state
            .catalog
            .borrow()
            .describe_limits(self.now_ms.get()))
    }

    async fn enable_enhanced_monitoring(
        &self,
        stream_name: String,
        metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.catalog_change(|c, now| c.enable_enhanced_monitoring(&stream_name, &metrics, now))
    }

    async fn disable_enhanced_monitoring(
        &self,
        stream_name: String,
        metrics: Vec<String>,
    ) -> Result<EnhancedMonitoringOutput, KinesisError> {
        self.catalog_change(|c, now| c.disable_enhanced_monitoring(&stream_name, &metrics, now))
    }

    async fn update_max_record_size(
        &self,
        stream_name: String,
        kib: u32,
    ) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.update_max_record_size(&stream_name, kib, now))
    }

    async fn start_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.start_stream_encryption(input, now))
    }

    async fn stop_stream_encryption(
        &self,
        input: StreamEncryptionInput,
    ) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.stop_stream_encryption(input, now))
    }

    async fn update_stream_warm_throughput(
        &self,
        stream_name: String,
        mibps: u32,
    ) -> Result<UpdateStreamWarmThroughputOutput, KinesisError> {
        self.catalog_change(|c, now| c.update_stream_warm_throughput(&stream_name, mibps, now))
    }

    async fn describe_account_settings(
        &self,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        Ok(self
            .state
            .catalog
            .borrow()
            .describe_account_settings(self.now_ms.get()))
    }

    async fn update_account_settings(
        &self,
        enable: bool,
    ) -> Result<Option<MinimumThroughputBillingCommitment>, KinesisError> {
        self.catalog_change(|c, now| Ok(c.update_account_settings(enable, now)))
    }

    async fn register_stream_consumer(
        &self,
        input: RegisterStreamConsumerInput,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.catalog_change(|c, now| c.register_stream_consumer(input, now))
    }

    async fn deregister_stream_consumer(&self, consumer: ConsumerRef) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.deregister_stream_consumer(&consumer, now))
    }

    async fn describe_stream_consumer(
        &self,
        consumer: ConsumerRef,
    ) -> Result<ConsumerDescription, KinesisError> {
        self.state
            .catalog
            .borrow()
            .describe_stream_consumer(&consumer, self.now_ms.get())
    }

    async fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
    ) -> Result<ListStreamConsumersOutput, KinesisError> {
        self.state
            .catalog
            .borrow()
            .list_stream_consumers(input, self.now_ms.get())
    }

    async fn put_resource_policy(&self, arn: String, policy: String) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.put_resource_policy(&arn, policy, now))
    }

    async fn get_resource_policy(&self, arn: String) -> Result<String, KinesisError> {
        self.state
            .catalog
            .borrow()
            .get_resource_policy(&arn, self.now_ms.get())
    }

    async fn delete_resource_policy(&self, arn: String) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.delete_resource_policy(&arn, now))
    }

    async fn resource_policy(&self, arn: String) -> Option<String> {
        self.state
            .catalog
            .borrow()
            .resource_policy(&arn, self.now_ms.get())
            .map(str::to_owned)
    }

    async fn tag_resource(&self, arn: String, tags: Vec<Tag>) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.tag_resource(&arn, tags, now))
    }

    async fn untag_resource(&self, arn: String, keys: Vec<String>) -> Result<(), KinesisError> {
        self.catalog_change(|c, now| c.untag_resource(&arn, keys, now))
    }

    async fn list_tags_for_resource(&self, arn: String) -> Result<Vec<Tag>, KinesisError> {
        self.state
            .catalog
            .borrow()
            .list_tags_for_resource(&arn, self.now_ms.get())
    }
}
