//! Response encoding for the Kinesis CBOR 1.1 protocol's data plane: the same output shapes and
//! member order as `encode` (the JSON 1.1 writer), with the Java SDK's value conventions (see `crate::cbor`):
//! `Data` as a byte string, timestamps as tag 1 + epoch milliseconds, hash keys and sequence
//! numbers as text. Structures are indefinite-length maps; lists are definite-length arrays
//! except GetRecords' `Records`, whose length the record batch does not expose up front.
//!
//! This is a second writer rather than one generic over the format so that the JSON hot path
//! keeps its straight-line byte pushing. `tests::cbor_responses_match_json_responses` decodes
//! both writers' output for every shape and checks they carry the same document.

use sluice_core::api::{ChildShard, GetRecordsOutput, PutRecordsOutput, RecordBatch};
use sluice_core::{HashRange, SequenceNumber};

use crate::cbor::{
    write_array_header, write_array_start, write_break, write_bytes, write_map_start, write_text,
    write_timestamp_ms, write_u64,
};
use crate::kinesis::error::put_records_error_code;

fn write_sequence_number(out: &mut Vec<u8>, sequence_number: SequenceNumber) {
    write_text(out, &sequence_number.to_string());
}

fn write_hash_key_range(out: &mut Vec<u8>, range: HashRange) {
    write_map_start(out);
    write_text(out, "StartingHashKey");
    write_text(out, &range.starting.to_string());
    write_text(out, "EndingHashKey");
    write_text(out, &range.ending.to_string());
    write_break(out);
}

fn write_child_shards(out: &mut Vec<u8>, children: &[ChildShard]) {
    write_array_header(out, children.len());
    for child in children {
        write_map_start(out);
        write_text(out, "ShardId");
        write_text(out, &child.shard_id);
        write_text(out, "ParentShards");
        write_array_header(out, child.parent_shards.len());
        for parent in &child.parent_shards {
            write_text(out, parent);
        }
        write_text(out, "HashKeyRange");
        write_hash_key_range(out, child.hash_key_range);
        write_break(out);
    }
}

pub fn put_record(
    shard_id: &str,
    sequence_number: SequenceNumber,
    encryption_type: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    write_map_start(&mut out);
    write_text(&mut out, "ShardId");
    write_text(&mut out, shard_id);
    write_text(&mut out, "SequenceNumber");
    write_sequence_number(&mut out, sequence_number);
    write_text(&mut out, "EncryptionType");
    write_text(&mut out, encryption_type);
    write_break(&mut out);
    out
}

pub fn put_records(o: &PutRecordsOutput) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + o.records.len() * 120);
    write_map_start(&mut out);
    write_text(&mut out, "FailedRecordCount");
    write_u64(&mut out, o.failed_record_count() as u64);
    write_text(&mut out, "Records");
    write_array_header(&mut out, o.records.len());
    for r in &o.records {
        write_map_start(&mut out);
        match r {
            Ok(entry) => {
                write_text(&mut out, "SequenceNumber");
                write_sequence_number(&mut out, entry.sequence_number);
                write_text(&mut out, "ShardId");
                write_text(&mut out, &entry.shard_id);
            }
            Err(e) => {
                write_text(&mut out, "ErrorCode");
                write_text(&mut out, put_records_error_code(e.kind));
                write_text(&mut out, "ErrorMessage");
                write_text(&mut out, &e.message);
            }
        }
        write_break(&mut out);
    }
    write_text(&mut out, "EncryptionType");
    write_text(&mut out, o.encryption_type.as_str());
    write_break(&mut out);
    out
}

pub fn get_shard_iterator(iterator: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + iterator.len());
    write_map_start(&mut out);
    write_text(&mut out, "ShardIterator");
    write_text(&mut out, iterator);
    write_break(&mut out);
    out
}

pub fn get_records<R: RecordBatch>(o: &GetRecordsOutput<R>) -> Vec<u8> {
    let mut capacity = 160 + o.next_shard_iterator.as_ref().map_or(0, String::len);
    o.records.for_each_record(&mut |r| {
        capacity += 120 + r.data.len() + r.partition_key.len();
    });
    let mut out = Vec::with_capacity(capacity);
    write_map_start(&mut out);
    write_text(&mut out, "Records");
    write_array_start(&mut out);
    o.records.for_each_record(&mut |r| {
        write_map_start(&mut out);
        write_text(&mut out, "SequenceNumber");
        write_sequence_number(&mut out, r.sequence_number);
        write_text(&mut out, "ApproximateArrivalTimestamp");
        write_timestamp_ms(&mut out, r.approximate_arrival_timestamp_ms);
        write_text(&mut out, "Data");
        write_bytes(&mut out, r.data);
        write_text(&mut out, "PartitionKey");
        write_text(&mut out, r.partition_key);
        write_break(&mut out);
    });
    write_break(&mut out);
    if let Some(next) = &o.next_shard_iterator {
        write_text(&mut out, "NextShardIterator");
        write_text(&mut out, next);
    }
    write_text(&mut out, "MillisBehindLatest");
    write_u64(&mut out, o.millis_behind_latest);
    if !o.child_shards.is_empty() {
        write_text(&mut out, "ChildShards");
        write_child_shards(&mut out, &o.child_shards);
    }
    write_break(&mut out);
    out
}
