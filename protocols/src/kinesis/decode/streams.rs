//! Streams: CreateStream, DeleteStream, DescribeStream(Summary), ListStreams, ListShards and the
//! retention calls.

use sluice_core::api::{
    CreateStreamInput, DeleteStreamInput, DescribeStreamInput, ListShardsInput, ListStreamsInput,
    ShardFilter,
};
use sluice_core::{KinesisError, limits};

use super::arns::{resolve_stream, stream_members};
use super::body::{Obj, tags_of};
use super::constraints::{Violations, stream_mode_named};
use super::{Home, to_u32};

const SHARD_FILTER_TYPES: [&str; 6] = [
    "AFTER_SHARD_ID",
    "AT_TRIM_HORIZON",
    "FROM_TRIM_HORIZON",
    "AT_LATEST",
    "AT_TIMESTAMP",
    "FROM_TIMESTAMP",
];

pub fn create_stream(body: Obj<'_, '_>) -> Result<CreateStreamInput, KinesisError> {
    let shard_count = body.integer("ShardCount")?;
    let stream_name = body.string("StreamName")?;
    let mode_details = body.structure("StreamModeDetails")?;
    let stream_mode = mode_details.map(|d| d.string("StreamMode")).transpose()?;
    let tag_members = body.map("Tags")?;
    let tags = tags_of(tag_members)?;

    let mut v = Violations::default();
    v.range(
        shard_count,
        "shardCount",
        1,
        Some(i64::from(limits::SHARD_COUNT_MAX)),
    );
    v.required_name(stream_name, "streamName");
    v.stream_mode(mode_details.is_some(), stream_mode.flatten());
    v.tag_map(tag_members, &tags, "tags");
    v.finish()?;

    Ok(CreateStreamInput {
        stream_name: stream_name.expect("validated as not null").to_owned(),
        shard_count: to_u32(shard_count),
        stream_mode: stream_mode.flatten().map(stream_mode_named),
        tags,
    })
}

/// Decodes just the stream of an operation whose only input is the stream.
pub fn stream_only(home: Home<'_>, body: Obj<'_, '_>) -> Result<String, KinesisError> {
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    stream_members(&mut v, name, arn);
    v.finish()?;
    resolve_stream(home, name, arn)
}

pub fn delete_stream(home: Home<'_>, body: Obj<'_, '_>) -> Result<DeleteStreamInput, KinesisError> {
    let enforce = body.boolean("EnforceConsumerDeletion")?;
    let stream_name = stream_only(home, body)?;
    Ok(DeleteStreamInput {
        stream_name,
        enforce_consumer_deletion: enforce.unwrap_or(false),
    })
}

pub fn describe_stream(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<DescribeStreamInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartShardId")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.list_limit(limit, "limit");
    v.stream_name(start, "exclusiveStartShardId");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(DescribeStreamInput {
        stream_name: resolve_stream(home, name, arn)?,
        limit: to_u32(limit),
        exclusive_start_shard_id: start.map(str::to_owned),
    })
}

pub fn list_streams(body: Obj<'_, '_>) -> Result<ListStreamsInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let start = body.string("ExclusiveStartStreamName")?;
    let next_token = body.string("NextToken")?;
    let mut v = Violations::default();
    v.list_limit(limit, "limit");
    v.stream_name(start, "exclusiveStartStreamName");
    v.next_token(next_token);
    v.finish()?;
    Ok(ListStreamsInput {
        limit: to_u32(limit),
        exclusive_start_stream_name: start.map(str::to_owned),
        next_token: next_token.map(str::to_owned),
    })
}

pub fn list_shards(home: Home<'_>, body: Obj<'_, '_>) -> Result<ListShardsInput, KinesisError> {
    let start = body.string("ExclusiveStartShardId")?;
    let max_results = body.integer("MaxResults")?;
    let next_token = body.string("NextToken")?;
    let created_ms = body.timestamp_ms("StreamCreationTimestamp")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let filter = body.structure("ShardFilter")?;
    let (filter_type, filter_shard_id, filter_timestamp_ms) = match filter {
        Some(f) => (
            f.string("Type")?,
            f.string("ShardId")?,
            f.timestamp_ms("Timestamp")?,
        ),
        None => (None, None, None),
    };

    let mut v = Violations::default();
    v.stream_name(start, "exclusiveStartShardId");
    v.list_limit(max_results, "maxResults");
    v.next_token(next_token);
    v.stream_name(name, "streamName");
    v.stream_arn(arn);
    if filter.is_some() {
        v.not_null(filter_type, "shardFilter.type");
        v.one_of(filter_type, "shardFilter.type", &SHARD_FILTER_TYPES);
        v.stream_name(filter_shard_id, "shardFilter.shardId");
    }
    v.finish()?;

    let names_stream = name.is_some() || arn.is_some();
    if next_token.is_some() && names_stream {
        return Err(KinesisError::invalid_argument(
            "NextToken and StreamName cannot be provided together.",
        ));
    }
    if next_token.is_none() && !names_stream {
        return Err(KinesisError::invalid_argument(
            "Either NextToken or StreamName should be provided.",
        ));
    }
    let stream_name = if names_stream {
        Some(resolve_stream(home, name, arn)?)
    } else {
        None
    };

    let shard_filter = match filter_type {
        None => None,
        Some(t) => Some(match t {
            "AFTER_SHARD_ID" => ShardFilter::AfterShardId(
                filter_shard_id
                    .ok_or_else(|| {
                        KinesisError::invalid_argument(
                            "ShardId must be specified for ShardFilter type AFTER_SHARD_ID.",
                        )
                    })?
                    .to_owned(),
            ),
            "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
            "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
            "AT_LATEST" => ShardFilter::AtLatest,
            "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {
                let ms = filter_timestamp_ms.ok_or_else(|| {
                    KinesisError::invalid_argument(format!(
                        "Timestamp must be specified for ShardFilter type {t}."
                    ))
                })?;
                if t == "AT_TIMESTAMP" {
                    ShardFilter::AtTimestamp(ms)
                } else {
                    ShardFilter::FromTimestamp(ms)
                }
            }
            _ => unreachable!("validation checked the ShardFilter type enum"),
        }),
    };

    Ok(ListShardsInput {
        stream_name,
        next_token: next_token.map(str::to_owned),
        exclusive_start_shard_id: start.map(str::to_owned),
        max_results: to_u32(max_results),
        stream_creation_timestamp_ms: created_ms,
        shard_filter,
    })
}

/// Increase- and DecreaseStreamRetentionPeriod. The model gives the hours no range; the
/// implementation answers out-of-range values with AWS's InvalidArgument texts.
pub fn retention_period(home: Home<'_>, body: Obj<'_, '_>) -> Result<(String, u32), KinesisError> {
    let hours = body.integer("RetentionPeriodHours")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.not_null(hours, "retentionPeriodHours");
    stream_members(&mut v, name, arn);
    v.finish()?;
    let hours = to_u32(hours).expect("validated as not null");
    Ok((resolve_stream(home, name, arn)?, hours))
}
