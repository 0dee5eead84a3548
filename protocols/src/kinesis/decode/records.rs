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
    HASH_KEY_PATTERN, SEQUENCE_NUMBER_PATTERN, Violations, is_hash_key, is_sequence_number,
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
    let record = RawEntry {
        partition_key,
        explicit_hash_key: hash_key,
        data,
    };
    record.check(&mut v, str::to_owned);
    stream_members(&mut v, name, arn);
    v.finish()?;

    Ok(PutRecordInput {
        // Fields are evaluated in the order written: the record's own refusals come before an
        // unknown stream's, as AWS orders them.
        record: record.into_entry()?,
        stream_name: resolve_stream(home, name, arn)?,
        sequence_number_for_ordering: ordering.map(str::to_owned),
    })
}

/// The record of a PutRecord, or one PutRecords entry, after pass 1.
struct RawEntry<'v> {
    partition_key: Option<&'v str>,
    explicit_hash_key: Option<&'v str>,
    data: Option<Vec<u8>>,
}

impl RawEntry<'_> {
    /// A cheap test that `check` finds nothing, so that the common valid entry of a large
    /// PutRecords skips building member paths. It never passes an entry `check` would refuse:
    /// a key's length in bytes is at least its length in characters.
    fn is_clearly_valid(&self) -> bool {
        self.partition_key
            .is_some_and(|k| !k.is_empty() && k.len() <= limits::PARTITION_KEY_CHARS_MAX)
            && self.explicit_hash_key.is_none_or(is_hash_key)
            && self
                .data
                .as_ref()
                .is_some_and(|d| d.len() <= DATA_BYTES_MAX)
    }

    /// Pass 2 for the record's members, each named by `path(member)`.
    fn check(&self, v: &mut Violations, mut path: impl FnMut(&str) -> String) {
        v.not_null(self.partition_key, &path("partitionKey"));
        v.str_len(
            self.partition_key,
            &path("partitionKey"),
            Some(1),
            Some(limits::PARTITION_KEY_CHARS_MAX),
        );
        v.pattern(
            self.explicit_hash_key,
            &path("explicitHashKey"),
            is_hash_key,
            HASH_KEY_PATTERN,
        );
        v.not_null(self.data.as_ref(), &path("data"));
        v.blob_max(self.data.as_deref(), &path("data"), DATA_BYTES_MAX);
    }

    /// Pass 3, after `check` found nothing: the ExplicitHashKey's range and the record size.
    fn into_entry(self) -> Result<PutRecordsEntry, KinesisError> {
        let partition_key = self.partition_key.expect("validated as not null");
        let data = self.data.expect("validated as not null");
        let explicit_hash_key = self.explicit_hash_key.map(explicit_hash_key).transpose()?;
        let total = partition_key.len() + data.len();
        if total > DATA_BYTES_MAX {
            return Err(KinesisError::invalid_argument(format!(
                "The record size ({total} bytes of partition key and data) exceeds the maximum record size of {DATA_BYTES_MAX} bytes."
            )));
        }
        Ok(PutRecordsEntry {
            data: data.into(),
            partition_key: partition_key.to_owned(),
            explicit_hash_key,
        })
    }
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
            v.entries_len(
                items.len(),
                shown,
                "records",
                1,
                limits::PUT_RECORDS_ENTRIES_MAX,
            );
        }
    }
    let mut path = String::new();
    for (i, entry) in raw.iter().enumerate() {
        if entry.is_clearly_valid() {
            continue;
        }
        entry.check(&mut v, |member| {
            path.clear();
            let _ = write!(path, "records.{}.member.{member}", i + 1);
            path.clone()
        });
    }
    stream_members(&mut v, name, arn);
    v.finish()?;

    let mut total_bytes = 0usize;
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let entry = entry.into_entry()?;
        total_bytes += entry.partition_key.len() + entry.data.len();
        entries.push(entry);
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
    v.required_name(shard_id, "shardId");
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
        bytes_max: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::value::parse;

    const HOME: Home<'static> = Home {
        region: "us-east-1",
        account_id: "000000000000",
    };

    fn put_record_error(body: &str) -> String {
        let doc = parse(body.as_bytes()).expect("test bodies are JSON");
        put_record(HOME, Obj::new(&doc))
            .expect_err("refused")
            .message
    }

    fn put_records_error(body: &str) -> String {
        let doc = parse(body.as_bytes()).expect("test bodies are JSON");
        put_records(HOME, Obj::new(&doc))
            .expect_err("refused")
            .message
    }

    #[test]
    fn put_record_and_put_records_check_a_record_with_the_same_rules() {
        let rules = |prefix: &str| {
            format!(
                "3 validation errors detected: Value '' at '{prefix}partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; Value 'x' at '{prefix}explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{{0,38}}); Value null at '{prefix}data' failed to satisfy constraint: Member must not be null"
            )
        };
        assert_eq!(
            put_record_error(r#"{"StreamName":"s","PartitionKey":"","ExplicitHashKey":"x"}"#),
            rules("")
        );
        assert_eq!(
            put_records_error(
                r#"{"StreamName":"s","Records":[{"PartitionKey":"k","Data":"AAAA"},{"PartitionKey":"","ExplicitHashKey":"x"}]}"#
            ),
            rules("records.2.member.")
        );
    }

    #[test]
    fn put_record_and_put_records_refuse_an_explicit_hash_key_past_2_to_the_128() {
        let key = "340282366920938463463374607431768211456";
        let expected = format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {key}"
        );
        assert_eq!(
            put_record_error(&format!(
                r#"{{"StreamName":"s","PartitionKey":"k","Data":"AAAA","ExplicitHashKey":"{key}"}}"#
            )),
            expected
        );
        assert_eq!(
            put_records_error(&format!(
                r#"{{"StreamName":"s","Records":[{{"PartitionKey":"k","Data":"AAAA","ExplicitHashKey":"{key}"}}]}}"#
            )),
            expected
        );
    }

    #[test]
    fn put_records_echoes_an_empty_records_list_as_aws_does() {
        assert_eq!(
            put_records_error(r#"{"StreamName":"s","Records":[]}"#),
            "1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
    }

    #[test]
    fn a_record_refusal_comes_before_an_unknown_stream_arn() {
        let arn = "arn:aws:kinesis:eu-west-1:000000000000:stream/s";
        let key = "340282366920938463463374607431768211456";
        let message = put_record_error(&format!(
            r#"{{"StreamARN":"{arn}","PartitionKey":"k","Data":"AAAA","ExplicitHashKey":"{key}"}}"#
        ));
        assert!(message.starts_with("Invalid ExplicitHashKey."), "{message}");
    }
}
