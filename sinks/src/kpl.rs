//! De-aggregation of KPL-aggregated records (the Kinesis Producer Library's format, public in
//! awslabs/amazon-kinesis-producer `aggregation-format.md`):
//!
//! ```text
//! 0xF3 0x89 0x9A 0xC2 | protobuf AggregatedRecord | MD5 of the protobuf bytes (16 bytes)
//! AggregatedRecord { repeated string partition_key_table = 1; repeated string
//!                    explicit_hash_key_table = 2; repeated Record records = 3; }
//! Record { uint64 partition_key_index = 1; uint64 explicit_hash_key_index = 2;
//!          bytes data = 3; repeated Tag tags = 4; }
//! ```
//!
//! A record whose magic, protobuf or MD5 does not check out is a plain record, as the KPL's own
//! de-aggregators treat it. The protobuf reader is hand-written (varints and length-delimited
//! fields only, ~40 lines): no crate on crates.io de-aggregates KPL records, and prost would need
//! generated or derived types for two messages of which only one field is read.

use md5::{Digest as _, Md5};

const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_BYTES: usize = 16;

/// Calls `f` with each user record of `data`: its aggregated records, or `data` itself.
pub fn for_each_user_record(data: &[u8], f: &mut dyn FnMut(&[u8])) {
    match user_records(data) {
        Some(records) => records.into_iter().for_each(f),
        None => f(data),
    }
}

/// The data of each aggregated record, or `None` when `data` is not a valid aggregate.
pub fn user_records(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.len() < MAGIC.len() + DIGEST_BYTES || data[..4] != MAGIC {
        return None;
    }
    let body = &data[4..data.len() - DIGEST_BYTES];
    let digest = &data[data.len() - DIGEST_BYTES..];
    if Md5::digest(body).as_slice() != digest {
        return None;
    }
    let mut records = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (field, wire_type, after) = tag(rest)?;
        rest = after;
        match wire_type {
            0 => rest = varint(rest)?.1,
            2 => {
                let (value, after) = length_delimited(rest)?;
                rest = after;
                if field == 3 {
                    records.push(record_data(value)?);
                }
            }
            _ => return None,
        }
    }
    Some(records)
}

/// The `data` field (3) of a `Record`.
fn record_data(mut message: &[u8]) -> Option<&[u8]> {
    let mut data: &[u8] = &[];
    while !message.is_empty() {
        let (field, wire_type, after) = tag(message)?;
        message = after;
        match wire_type {
            0 => message = varint(message)?.1,
            2 => {
                let (value, after) = length_delimited(message)?;
                message = after;
                if field == 3 {
                    data = value;
                }
            }
            _ => return None,
        }
    }
    Some(data)
}

fn tag(bytes: &[u8]) -> Option<(u64, u64, &[u8])> {
    let (key, rest) = varint(bytes)?;
    Some((key >> 3, key & 7, rest))
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn length_delimited(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = varint(bytes)?;
    let len = usize::try_from(len).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }

    fn aggregate(records: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        put_bytes(&mut body, 1, b"pk");
        for data in records {
            let mut record = Vec::new();
            put_varint(&mut record, 1 << 3);
            put_varint(&mut record, 0);
            put_bytes(&mut record, 3, data);
            put_bytes(&mut body, 3, &record);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        out
    }

    #[test]
    fn an_aggregate_yields_its_user_records_in_order() {
        let data = aggregate(&[b"one\n", b"", b"three\n"]);
        assert_eq!(
            user_records(&data),
            Some(vec![&b"one\n"[..], b"", b"three\n"])
        );
    }

    #[test]
    fn a_bad_digest_or_no_magic_makes_a_plain_record() {
        let mut data = aggregate(&[b"x"]);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert_eq!(user_records(&data), None);
        let mut seen = Vec::new();
        for_each_user_record(b"plain", &mut |r| seen.push(r.to_vec()));
        assert_eq!(seen, vec![b"plain".to_vec()]);
    }
}
