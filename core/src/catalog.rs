//! The catalog: every stream, its shards, tags, retention and lifecycle, as a pure state
//! machine. `io` owns one `Catalog`, applies control-plane calls to it, persists it after every
//! change, and asks it where data-plane calls go. Time comes in as `now_ms`; status transitions
//! (CREATING → ACTIVE, UPDATING → ACTIVE, DELETING → gone) are computed from it, so no timer is
//! needed and a restart resumes them exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::*;
use crate::error::KinesisError;
use crate::hash_key::HashRange;
use crate::shard_iterator::ShardIterator;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogConfig {
    pub region: String,
    pub account_id: String,
    /// Account-wide open-shard limit (LimitExceededException beyond it).
    pub shard_limit: u32,
    /// How long a new stream stays CREATING (AWS-like clients and test suites expect a short
    /// CREATING window; 0 makes streams ACTIVE at once).
    pub create_delay_ms: u64,
    pub delete_delay_ms: u64,
    pub update_delay_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            shard_limit: crate::limits::SHARD_LIMIT_DEFAULT,
            create_delay_ms: 500,
            delete_delay_ms: 500,
            update_delay_ms: 500,
        }
    }
}

/// Where a stream is in its life. The status shown to clients derives from this and `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    Creating { active_at_ms: u64 },
    Active,
    Updating { active_at_ms: u64 },
    Deleting { gone_at_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub hash_range: HashRange,
    /// Creation time in epoch seconds, encoded in the shard's sequence numbers.
    pub created_s: u64,
    /// Which storage log holds this shard's records (chosen by `io` at creation; stable for the
    /// shard's life).
    pub log_id: u32,
    /// Set when the shard is closed by a reshard: the position one past its last record.
    pub closed_at_position: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    pub created_ms: u64,
    pub lifecycle: Lifecycle,
    pub mode: StreamModeRepr,
    pub retention_period_hours: u32,
    pub tags: BTreeMap<String, String>,
    pub shards: Vec<Shard>,
    pub shard_level_metrics: Vec<String>,
    pub max_record_size_kib: u32,
}

/// `StreamMode` as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamModeRepr {
    Provisioned,
    OnDemand,
}

/// Where a new shard iterator starts, before storage resolves it to a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingPoint {
    TrimHorizon,
    Latest,
    /// At this position (AT_SEQUENCE_NUMBER).
    At(u64),
    /// Just after this position (AFTER_SEQUENCE_NUMBER).
    After(u64),
    /// The first record whose arrival time is ≥ this (AT_TIMESTAMP).
    Timestamp(u64),
}

/// A stream that `reap` removed for good; storage may now drop its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedStream {
    pub name: String,
    pub created_ms: u64,
    pub shards: Vec<Shard>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub config: CatalogConfig,
    pub streams: BTreeMap<String, Stream>,
}

impl Stream {
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        todo!()
    }

    pub fn arn(&self, region: &str, account_id: &str) -> String {
        format!("arn:aws:kinesis:{region}:{account_id}:stream/{}", self.name)
    }

    pub fn shard(&self, shard_index: u32) -> Option<&Shard> {
        todo!()
    }

    /// The open shard whose hash range holds `hash_key`.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &Shard {
        todo!()
    }

    pub fn open_shard_count(&self) -> u32 {
        todo!()
    }
}

impl Catalog {
    pub fn new(config: CatalogConfig) -> Self {
        Self { config, streams: BTreeMap::new() }
    }

    /// Creates a stream in CREATING. `log_id` is called once per new shard, in shard order, to
    /// place it.
    pub fn create_stream(
        &mut self,
        input: CreateStreamInput,
        now_ms: u64,
        log_id: &mut dyn FnMut(u32) -> u32,
    ) -> Result<(), KinesisError> {
        todo!()
    }

    pub fn delete_stream(&mut self, input: DeleteStreamInput, now_ms: u64) -> Result<(), KinesisError> {
        todo!()
    }

    pub fn describe_stream(
        &self,
        input: DescribeStreamInput,
        now_ms: u64,
    ) -> Result<StreamDescription, KinesisError> {
        todo!()
    }

    pub fn describe_stream_summary(
        &self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        todo!()
    }

    pub fn list_streams(&self, input: ListStreamsInput, now_ms: u64) -> Result<ListStreamsOutput, KinesisError> {
        todo!()
    }

    pub fn list_shards(&self, input: ListShardsInput, now_ms: u64) -> Result<ListShardsOutput, KinesisError> {
        todo!()
    }

    pub fn add_tags_to_stream(&mut self, stream_name: &str, tags: Vec<Tag>, now_ms: u64) -> Result<(), KinesisError> {
        todo!()
    }

    pub fn remove_tags_from_stream(
        &mut self,
        stream_name: &str,
        tag_keys: Vec<String>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        todo!()
    }

    pub fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
        now_ms: u64,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        todo!()
    }

    pub fn increase_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        todo!()
    }

    pub fn decrease_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        todo!()
    }

    /// The stream a PutRecord(s) writes to: RNF if it does not exist or is still CREATING or
    /// DELETING.
    pub fn stream_for_write(&self, stream_name: &str, now_ms: u64) -> Result<&Stream, KinesisError> {
        todo!()
    }

    /// Validates a GetShardIterator call (stream and shard exist, iterator type and
    /// StartingSequenceNumber / Timestamp agree, the sequence number belongs to this shard) and
    /// says where the iterator starts.
    pub fn shard_iterator_start(
        &self,
        input: &GetShardIteratorInput,
        now_ms: u64,
    ) -> Result<(&Stream, &Shard, StartingPoint), KinesisError> {
        todo!()
    }

    /// Decodes and checks a shard iterator for GetRecords: `Invalid ShardIterator.` for a bad
    /// token, ExpiredIteratorException after 300 s, RNF when its stream or shard is gone.
    pub fn resolve_shard_iterator(
        &self,
        token: &str,
        now_ms: u64,
    ) -> Result<(&Stream, &Shard, ShardIterator), KinesisError> {
        todo!()
    }

    /// Issues an iterator for `position` in the given shard.
    pub fn shard_iterator(&self, stream: &Stream, shard: &Shard, position: u64, now_ms: u64) -> String {
        todo!()
    }

    /// Removes streams whose DELETING window has passed and returns them.
    pub fn reap(&mut self, now_ms: u64) -> Vec<RemovedStream> {
        todo!()
    }
}
