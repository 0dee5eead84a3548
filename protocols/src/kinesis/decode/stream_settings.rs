//! Resharding (SplitShard, MergeShards, UpdateShardCount), stream settings (mode, enhanced
//! monitoring, maximum record size, encryption, warm throughput) and account settings.
//!
//! Their model constraints come from botocore 1.44.8's `service-2.json`; the member order inside
//! each pass is alphabetical, the order kinesalite recorded for SplitShard and MergeShards.

use sluice_core::KinesisError;
use sluice_core::api::{
    EncryptionType, MergeShardsInput, SplitShardInput, StreamEncryptionInput, StreamMode,
    UpdateShardCountInput, UpdateStreamModeInput,
};

use super::arns::{resolve_stream, stream_members};
use super::body::{Obj, string_list};
use super::constraints::{HASH_KEY_PATTERN, Violations, is_hash_key, stream_mode_named};
use super::{Home, to_u32};

const SCALING_TYPES: [&str; 1] = ["UNIFORM_SCALING"];
const ENCRYPTION_TYPES: [&str; 2] = ["NONE", "KMS"];
const BILLING_COMMITMENT_STATUSES: [&str; 2] = ["ENABLED", "DISABLED"];
const KEY_ID_CHARS_MAX: usize = 2048;
const METRICS_NAMES_MAX: usize = 7;

pub fn split_shard(home: Home<'_>, body: Obj<'_, '_>) -> Result<SplitShardInput, KinesisError> {
    let key = body.string("NewStartingHashKey")?;
    let shard = body.string("ShardToSplit")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(key, "newStartingHashKey");
    v.pattern(key, "newStartingHashKey", is_hash_key, HASH_KEY_PATTERN);
    v.required_name(shard, "shardToSplit");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(SplitShardInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_to_split: shard.expect("validated as not null").to_owned(),
        new_starting_hash_key: key.expect("validated as not null").to_owned(),
    })
}

pub fn merge_shards(home: Home<'_>, body: Obj<'_, '_>) -> Result<MergeShardsInput, KinesisError> {
    let adjacent = body.string("AdjacentShardToMerge")?;
    let shard = body.string("ShardToMerge")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.required_name(adjacent, "adjacentShardToMerge");
    v.required_name(shard, "shardToMerge");
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(MergeShardsInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_to_merge: shard.expect("validated as not null").to_owned(),
        adjacent_shard_to_merge: adjacent.expect("validated as not null").to_owned(),
    })
}

pub fn update_shard_count(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<UpdateShardCountInput, KinesisError> {
    let scaling_type = body.string("ScalingType")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let target = body.integer("TargetShardCount")?;
    let mut v = Violations::default();
    v.not_null(scaling_type, "scalingType");
    v.one_of(scaling_type, "scalingType", &SCALING_TYPES);
    stream_members(&mut v, name, arn);
    v.not_null(target, "targetShardCount");
    v.range(target, "targetShardCount", 1, None);
    v.finish()?;
    Ok(UpdateShardCountInput {
        stream_name: resolve_stream(home, name, arn)?,
        target_shard_count: to_u32(target).expect("validated as not null"),
    })
}

pub fn update_stream_mode(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<UpdateStreamModeInput, KinesisError> {
    let arn = body.string("StreamARN")?;
    let details = body.structure("StreamModeDetails")?;
    let mode = details
        .map(|d| d.string("StreamMode"))
        .transpose()?
        .flatten();
    let warm = body.integer("WarmThroughputMiBps")?;
    let mut v = Violations::default();
    v.required_stream_arn(arn);
    v.not_null(details.map(|_| ()), "streamModeDetails");
    v.stream_mode(details.is_some(), mode);
    v.range(warm, "warmThroughputMiBps", 0, None);
    v.finish()?;
    Ok(UpdateStreamModeInput {
        stream_name: resolve_stream(home, None, arn)?,
        stream_mode: mode.map_or(StreamMode::Provisioned, stream_mode_named),
        warm_throughput_mibps: to_u32(warm),
    })
}

/// Enable- and DisableEnhancedMonitoring: the stream and the metric names. The names' enum is
/// checked by the implementation, which reports AWS's set-valued constraint text.
pub fn enhanced_monitoring(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, Vec<String>), KinesisError> {
    let items = body.list("ShardLevelMetrics")?;
    let metrics = string_list(items)?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(items, "shardLevelMetrics");
    v.list_len(
        items.map(|_| metrics.as_slice()),
        "shardLevelMetrics",
        1,
        METRICS_NAMES_MAX,
    );
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok((
        resolve_stream(home, name, arn)?,
        metrics.into_iter().map(str::to_owned).collect(),
    ))
}

pub fn update_max_record_size(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, u32), KinesisError> {
    let arn = body.string("StreamARN")?;
    let kib = body.integer("MaxRecordSizeInKiB")?;
    let mut v = Violations::default();
    // The model leaves StreamARN optional for the reserved StreamId, which this appliance does
    // not issue, so the ARN is what names the stream.
    v.required_stream_arn(arn);
    v.not_null(kib, "maxRecordSizeInKiB");
    v.range(
        kib,
        "maxRecordSizeInKiB",
        i64::from(sluice_core::control::MAX_RECORD_SIZE_KIB_MIN),
        Some(i64::from(sluice_core::control::MAX_RECORD_SIZE_KIB_MAX)),
    );
    v.finish()?;
    Ok((
        resolve_stream(home, None, arn)?,
        to_u32(kib).expect("validated as not null"),
    ))
}

/// Start- and StopStreamEncryption.
pub fn stream_encryption(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<StreamEncryptionInput, KinesisError> {
    let encryption_type = body.string("EncryptionType")?;
    let key_id = body.string("KeyId")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let mut v = Violations::default();
    v.not_null(encryption_type, "encryptionType");
    v.one_of(encryption_type, "encryptionType", &ENCRYPTION_TYPES);
    v.not_null(key_id, "keyId");
    v.str_len(key_id, "keyId", Some(1), Some(KEY_ID_CHARS_MAX));
    stream_members(&mut v, name, arn);
    v.finish()?;
    Ok(StreamEncryptionInput {
        stream_name: resolve_stream(home, name, arn)?,
        encryption_type: match encryption_type {
            Some("KMS") => EncryptionType::Kms,
            _ => EncryptionType::None,
        },
        key_id: key_id.expect("validated as not null").to_owned(),
    })
}

pub fn update_stream_warm_throughput(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<(String, u32), KinesisError> {
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let warm = body.integer("WarmThroughputMiBps")?;
    let mut v = Violations::default();
    stream_members(&mut v, name, arn);
    v.not_null(warm, "warmThroughputMiBps");
    v.range(warm, "warmThroughputMiBps", 0, None);
    v.finish()?;
    Ok((
        resolve_stream(home, name, arn)?,
        to_u32(warm).expect("validated as not null"),
    ))
}

/// UpdateAccountSettings: whether the requested commitment status is ENABLED.
pub fn update_account_settings(body: Obj<'_, '_>) -> Result<bool, KinesisError> {
    let commitment = body.structure("MinimumThroughputBillingCommitment")?;
    let status = commitment
        .map(|c| c.string("Status"))
        .transpose()?
        .flatten();
    let mut v = Violations::default();
    v.not_null(commitment.map(|_| ()), "minimumThroughputBillingCommitment");
    if commitment.is_some() {
        v.not_null(status, "minimumThroughputBillingCommitment.status");
        v.one_of(
            status,
            "minimumThroughputBillingCommitment.status",
            &BILLING_COMMITMENT_STATUSES,
        );
    }
    v.finish()?;
    Ok(status == Some("ENABLED"))
}
