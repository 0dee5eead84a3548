//! The data plane: PutRecord, PutRecords, GetShardIterator and GetRecords.

use std::fmt::Write as _;

use sluice_core::api::{
    GetRecordsInput, GetShardIteratorInput, PutRecordInput, PutRecordsEntry, PutRecordsInput,
    ShardIteratorType,
};
use sluice_core::hash_key::{ParseHashKeyError, parse_hash_key};
use sluice_core::{KinesisError, limits};

use super::arns::{resolve_stream, stream_members};
use super::body::Obj;
use super::constraints::{
    HASH_KEY_PATTERN, SEQUENCE_NUMBER_PATTERN, Shown, Violations, is_hash_key, is_sequence_number,
};
use super::{Home, to_u32};
use crate::json::JsonValue;

const SHARD_ITERATOR_CHARS_MAX: usize = 512;
/// The model's own cap on a Data blob: the largest maximum record size UpdateMaxRecordSize can
/// set. The stream's own maximum (1 MiB unless raised) is checked by the implementation, with
/// the same ValidationException text (see `sluice_core::api::check_record_sizes`).
const DATA_BYTES_MAX: usize = 10 * 1024 * 1024;
/// AWS echoes list members it cannot print as this Java object name.
const PUT_RECORDS_ENTRY_SHOWN: &str =
    "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310";
/// The ShardIteratorType enum in the order AWS prints it (a Java hash-set order, as recorded by
/// kinesalite's tests against AWS).
const SHARD_ITERATOR_TYPES: [&str; 5] = [
    "AFTER_SEQUENCE_NUMBER",
    "LATEST",
    "AT_TIMESTAMP",
    "AT_SEQUENCE_NUMBER",
    "TRIM_HORIZON",
];

fn explicit_hash_key(text: &str) -> Result<u128, KinesisError> {
    match parse_hash_key(text) {
        Ok(key) => Ok(key),
        Err(ParseHashKeyError::NotDecimal | ParseHashKeyError::OutOfRange) => {
            Err(KinesisError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            )))
        }
    }
}

fn record_too_large(partition_key: &str, data_len: usize) -> Option<KinesisError> {
    let total = partition_key.len() + data_len;
    (total > DATA_BYTES_MAX).then(|| {
        KinesisError::invalid_argument(format!(
            "The record size ({total} bytes of partition key and data) exceeds the maximum record size of {DATA_BYTES_MAX} bytes."
        ))
    })
}

pub fn put_record(home: Home<'_>, body: Obj<'_, '_>) -> Result<PutRecordInput, KinesisError> {
    let ordering = body.string("SequenceNumberForOrdering")?;
    let partition_key = body.string("PartitionKey")?;
    let hash_key = body.string("ExplicitHashKey")?;
    let data = body.blob("Data")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.pattern(
        ordering,
        "sequenceNumberForOrdering",
        is_sequence_number,
        SEQUENCE_NUMBER_PATTERN,
    );
    v.not_null(partition_key, "partitionKey");
    v.str_len(
        partition_key,
        "partitionKey",
        Some(1),
        Some(limits::PARTITION_KEY_CHARS_MAX),
    );
    v.pattern(hash_key, "explicitHashKey", is_hash_key, HASH_KEY_PATTERN);
    v.not_null(data.as_ref(), "data");
    v.blob_max(data.as_deref(), "data", DATA_BYTES_MAX);
    stream_members(&mut v, name, arn);
    v.finish()?;

    let partition_key = partition_key.expect("validated as not null");
    let data = data.expect("validated as not null");
    let explicit_hash_key = hash_key.map(explicit_hash_key).transpose()?;
    if let Some(e) = record_too_large(partition_key, data.len()) {
        return Err(e);
    }
    Ok(PutRecordInput {
        stream_name: resolve_stream(home, name, arn)?,
        record: PutRecordsEntry {
            data,
            partition_key: partition_key.to_owned(),
            explicit_hash_key,
        },
        sequence_number_for_ordering: ordering.map(str::to_owned),
    })
}

/// One PutRecords entry after pass 1.
struct RawEntry<'v> {
    partition_key: Option<&'v str>,
    explicit_hash_key: Option<&'v str>,
    data: Option<Vec<u8>>,
}

pub fn put_records(home: Home<'_>, body: Obj<'_, '_>) -> Result<PutRecordsInput, KinesisError> {
    let records = body.list("Records")?;
    let mut raw = Vec::with_capacity(records.map_or(0, <[_]>::len));
    for item in records.unwrap_or_default() {
        if matches!(item, JsonValue::Null) {
            raw.push(RawEntry {
                partition_key: None,
                explicit_hash_key: None,
                data: None,
            });
            continue;
        }
        let entry = body.nested(item)?;
        raw.push(RawEntry {
            partition_key: entry.string("PartitionKey")?,
            explicit_hash_key: entry.string("ExplicitHashKey")?,
            data: entry.blob("Data")?,
        });
    }
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    match records {
        None => v.not_null(records, "records"),
        Some(items) => {
            let shown = || {
                let mut s = String::from("[");
                for i in 0..items.len() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    s.push_str(PUT_RECORDS_ENTRY_SHOWN);
                }
                s.push(']');
                s
            };
            if items.is_empty() {
                v.push(
                    Shown::Owned(shown()),
                    "records",
                    "Member must have length greater than or equal to 1",
                );
            }
            if items.len() > limits::PUT_RECORDS_ENTRIES_MAX {
                v.push(
                    Shown::Owned(shown()),
                    "records",
                    &format!(
                        "Member must have length less than or equal to {}",
                        limits::PUT_RECORDS_ENTRIES_MAX
                    ),
                );
            }
        }
    }
    let mut path = String::new();
    for (i, entry) in raw.iter().enumerate() {
        let is_valid = entry
            .partition_key
            .is_some_and(|k| !k.is_empty() && k.len() <= limits::PARTITION_KEY_CHARS_MAX)
            && entry.explicit_hash_key.is_none_or(is_hash_key)
            && entry
                .data
                .as_ref()
                .is_some_and(|d| d.len() <= DATA_BYTES_MAX);
        if is_valid {
            continue;
        }
        let mut at = |member: &str| {
            path.clear();
            let _ = write!(path, "records.{}.member.{member}", i + 1);
            path.clone()
        };
        v.not_null(entry.partition_key, &at("partitionKey"));
        v.str_len(
            entry.partition_key,
            &at("partitionKey"),
            Some(1),
            Some(limits::PARTITION_KEY_CHARS_MAX),
        );
        v.pattern(
            entry.explicit_hash_key,
            &at("explicitHashKey"),
            is_hash_key,
            HASH_KEY_PATTERN,
        );
        v.not_null(entry.data.as_ref(), &at("data"));
        v.blob_max(entry.data.as_deref(), &at("data"), DATA_BYTES_MAX);
    }
    stream_members(&mut v, name, arn);
    v.finish()?;

    let mut total_bytes = 0usize;
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let partition_key = entry.partition_key.expect("validated as not null");
        let data = entry.data.expect("validated as not null");
        let explicit_hash_key = entry.explicit_hash_key.map(explicit_hash_key).transpose()?;
        if let Some(e) = record_too_large(partition_key, data.len()) {
            return Err(e);
        }
        total_bytes += partition_key.len() + data.len();
        entries.push(PutRecordsEntry {
            data,
            partition_key: partition_key.to_owned(),
            explicit_hash_key,
        });
    }
    // The 5 MiB limit of a stream with the default record size is the implementation's check.
    if total_bytes > sluice_core::api::PUT_RECORDS_LARGE_BYTES_MAX {
        return Err(KinesisError::invalid_argument(
            "Records size exceeds 10 MB limit",
        ));
    }
    Ok(PutRecordsInput {
        stream_name: resolve_stream(home, name, arn)?,
        records: entries,
    })
}

pub fn get_shard_iterator(
    home: Home<'_>,
    body: Obj<'_, '_>,
) -> Result<GetShardIteratorInput, KinesisError> {
    let shard_id = body.string("ShardId")?;
    let iterator_type = body.string("ShardIteratorType")?;
    let starting = body.string("StartingSequenceNumber")?;
    let name = body.string("StreamName")?;
    let arn = body.string("StreamARN")?;
    let timestamp_ms = body.timestamp_ms("Timestamp")?;

    let mut v = Violations::default();
    v.not_null(shard_id, "shardId");
    v.stream_name(shard_id, "shardId");
    v.not_null(iterator_type, "shardIteratorType");
    v.one_of(iterator_type, "shardIteratorType", &SHARD_ITERATOR_TYPES);
    v.pattern(
        starting,
        "startingSequenceNumber",
        is_sequence_number,
        SEQUENCE_NUMBER_PATTERN,
    );
    stream_members(&mut v, name, arn);
    v.finish()?;

    Ok(GetShardIteratorInput {
        stream_name: resolve_stream(home, name, arn)?,
        shard_id: shard_id.expect("validated as not null").to_owned(),
        shard_iterator_type: ShardIteratorType::parse(
            iterator_type.expect("validated as not null"),
        )
        .expect("validated against the enum"),
        starting_sequence_number: starting.map(str::to_owned),
        timestamp_ms,
    })
}

pub fn get_records(body: Obj<'_, '_>) -> Result<GetRecordsInput, KinesisError> {
    let limit = body.integer("Limit")?;
    let iterator = body.string("ShardIterator")?;
    // StreamARN is informational on GetRecords: the iterator names the stream.
    let arn = body.string("StreamARN")?;

    let mut v = Violations::default();
    v.range(
        limit,
        "limit",
        1,
        Some(i64::from(limits::GET_RECORDS_LIMIT_MAX)),
    );
    v.not_null(iterator, "shardIterator");
    v.str_len(
        iterator,
        "shardIterator",
        Some(1),
        Some(SHARD_ITERATOR_CHARS_MAX),
    );
    v.stream_arn(arn);
    v.finish()?;

    Ok(GetRecordsInput {
        shard_iterator: iterator.expect("validated as not null").to_owned(),
        limit: to_u32(limit),
    })
}
