//! Fixtures shared by the catalog's unit tests.

use super::{Catalog, CatalogConfig, Shard};
use crate::api::{
    CreateStreamInput, DeleteStreamInput, DescribeStreamInput, GetShardIteratorInput,
    ListShardsInput, ShardDescription, ShardIteratorType, StreamDescription,
};
use crate::error::KinesisError;
use crate::hash_key::HashRange;

pub(crate) const T0: u64 = 1_700_000_000_000;
pub(crate) const ACCOUNT: &str = "000000000000";

pub(crate) fn config() -> CatalogConfig {
    CatalogConfig {
        shard_limit: 10,
        ..CatalogConfig::default()
    }
}

pub(crate) fn create_input(name: &str, shard_count: Option<u32>) -> CreateStreamInput {
    CreateStreamInput {
        stream_name: name.into(),
        shard_count,
        stream_mode: None,
        tags: Vec::new(),
    }
}

pub(crate) fn create(catalog: &mut Catalog, name: &str, shard_count: u32, now_ms: u64) {
    catalog
        .create_stream(
            create_input(name, Some(shard_count)),
            now_ms,
            &mut |index| index,
        )
        .expect("test stream is created");
}

/// A catalog holding ACTIVE stream `s` with `shard_count` shards, created at T0.
pub(crate) fn active_catalog(shard_count: u32) -> (Catalog, u64) {
    let mut catalog = Catalog::new(config());
    create(&mut catalog, "s", shard_count, T0);
    (catalog, T0 + 1_000)
}

pub(crate) fn describe(
    catalog: &Catalog,
    name: &str,
    now_ms: u64,
) -> Result<StreamDescription, KinesisError> {
    catalog.describe_stream(
        DescribeStreamInput {
            stream_name: name.into(),
            limit: None,
            exclusive_start_shard_id: None,
        },
        now_ms,
    )
}

pub(crate) fn delete(catalog: &mut Catalog, name: &str, now_ms: u64) -> Result<(), KinesisError> {
    catalog.delete_stream(
        DeleteStreamInput {
            stream_name: name.into(),
            enforce_consumer_deletion: false,
        },
        now_ms,
    )
}

/// Splits shard 0 of `s` the way a reshard would: closes it and adds two children dated
/// `at_s`.
pub(crate) fn split_shard_zero(catalog: &mut Catalog, at_s: u64) {
    let stream = catalog.streams.get_mut("s").expect("stream s exists");
    let parent = stream.shards[0].clone();
    let middle =
        parent.hash_range.starting + (parent.hash_range.ending - parent.hash_range.starting) / 2;
    stream.shards[0].closed_at_position = Some(7);
    let next = stream.shards.len() as u32;
    for (offset, range) in [
        HashRange::new(parent.hash_range.starting, middle),
        HashRange::new(middle + 1, parent.hash_range.ending),
    ]
    .into_iter()
    .enumerate()
    {
        stream.shards.push(Shard {
            index: next + offset as u32,
            parent: Some(0),
            adjacent_parent: None,
            hash_range: range,
            created_s: at_s,
            log_id: 0,
            closed_at_position: None,
        });
    }
}

pub(crate) fn iterator_input(
    shard_id: &str,
    kind: ShardIteratorType,
    sequence: Option<&str>,
) -> GetShardIteratorInput {
    GetShardIteratorInput {
        stream_name: "s".into(),
        shard_id: shard_id.into(),
        shard_iterator_type: kind,
        starting_sequence_number: sequence.map(str::to_owned),
        timestamp_ms: None,
    }
}

pub(crate) fn list_shards_input(
    stream_name: Option<&str>,
    next_token: Option<String>,
) -> ListShardsInput {
    ListShardsInput {
        stream_name: stream_name.map(str::to_owned),
        next_token,
        exclusive_start_shard_id: None,
        max_results: None,
        stream_creation_timestamp_ms: None,
        shard_filter: None,
    }
}

pub(crate) fn shard_ids(shards: &[ShardDescription]) -> Vec<String> {
    shards.iter().map(|shard| shard.shard_id.clone()).collect()
}
