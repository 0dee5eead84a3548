//! Shard iterators: where GetShardIterator starts (checking the iterator type against its
//! arguments and a StartingSequenceNumber against the shard), and resolving an iterator token
//! for GetRecords.

use super::{Catalog, Shard, Stream, parse_shard_id_like_aws, shard_id_as_encoded};
use crate::api::{GetShardIteratorInput, ShardIteratorType};
use crate::error::{ErrorKind, KinesisError};
use crate::sequence_number::{ParseSequenceNumberError, SequenceNumber};
use crate::shard_id::format_shard_id;
use crate::shard_iterator::ShardIterator;

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

/// kinesalite (after AWS) refuses sequence numbers whose shard creation time, in seconds, is at
/// or beyond this.
const SEQUENCE_SECONDS_LIMIT: u64 = 16_025_175_000;

/// What an older (pre-2014) AWS sequence number encodes, read the way AWS still reads them:
/// numbers below 2^128, with 2^124 added to those below it, carry the shard creation time in
/// bits 88..124 and the shard index in the low 16 bits.
struct LegacySequenceNumber {
    shard_created_s: u64,
    shard_index: u32,
}

fn parse_legacy_sequence_number(text: &str) -> Option<LegacySequenceNumber> {
    let mut value = text.parse::<u128>().ok()?;
    if value < 1 << 124 {
        value += 1 << 124;
    }
    let shard_created_s = u64::try_from((value >> 88) & ((1 << 36) - 1)).expect("36 bits fit u64");
    let shard_index = u32::try_from(value & 0xffff).expect("16 bits fit u32");
    Some(LegacySequenceNumber {
        shard_created_s,
        shard_index,
    })
}

impl Catalog {
    /// Validates a GetShardIterator call (stream and shard exist, iterator type and
    /// StartingSequenceNumber / Timestamp agree, the sequence number belongs to this shard) and
    /// says where the iterator starts.
    pub fn shard_iterator_start(
        &self,
        input: &GetShardIteratorInput,
        now_ms: u64,
    ) -> Result<(&Stream, &Shard, StartingPoint), KinesisError> {
        let account = &self.config.account_id;
        let stream_name = &input.stream_name;
        let Some(shard_index) = parse_shard_id_like_aws(&input.shard_id) else {
            return Err(KinesisError::shard_unparsable(
                &input.shard_id,
                stream_name,
                account,
            ));
        };
        let shard_id = format_shard_id(shard_index);
        let shard_not_found = || KinesisError::shard_not_found(&shard_id, stream_name, account);
        // A CREATING stream shows no shards yet and a DELETING one is on its way out, so in
        // both the shard "does not exist", as AWS says.
        let stream = self
            .readable_stream(stream_name, now_ms)
            .ok_or_else(shard_not_found)?;
        let shard = stream.shard(shard_index).ok_or_else(shard_not_found)?;

        let iterator_type = input.shard_iterator_type;
        let type_mismatch = |what: &str| {
            KinesisError::invalid_argument(format!(
                "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified {} and {what} StartingSequenceNumber.",
                iterator_type.as_str()
            ))
        };
        let start = match (iterator_type, input.starting_sequence_number.as_deref()) {
            (
                ShardIteratorType::TrimHorizon
                | ShardIteratorType::Latest
                | ShardIteratorType::AtTimestamp,
                Some(_),
            ) => return Err(type_mismatch("also a")),
            (
                ShardIteratorType::AtSequenceNumber | ShardIteratorType::AfterSequenceNumber,
                None,
            ) => {
                return Err(type_mismatch("no"));
            }
            (ShardIteratorType::TrimHorizon, None) => StartingPoint::TrimHorizon,
            (ShardIteratorType::Latest, None) => StartingPoint::Latest,
            (ShardIteratorType::AtTimestamp, None) => match input.timestamp_ms {
                None => {
                    return Err(KinesisError::invalid_argument(
                        "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                    ));
                }
                Some(timestamp_ms) if timestamp_ms > now_ms => {
                    return Err(KinesisError::invalid_argument(format!(
                        "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {timestamp_ms}, currentTimestampInMillis: {now_ms}"
                    )));
                }
                Some(timestamp_ms) => StartingPoint::Timestamp(timestamp_ms),
            },
            (ShardIteratorType::AtSequenceNumber, Some(text)) => {
                StartingPoint::At(self.starting_position(stream, shard, &shard_id, text)?)
            }
            (ShardIteratorType::AfterSequenceNumber, Some(text)) => {
                let position = self.starting_position(stream, shard, &shard_id, text)?;
                // The shard's StartingSequenceNumber names the place before its first record (a
                // consumer that saw nothing yet resumes after it), not record 0 itself.
                if text == stream.describe_shard(shard).starting_sequence_number {
                    StartingPoint::At(0)
                } else {
                    StartingPoint::After(position)
                }
            }
        };
        Ok((stream, shard, start))
    }

    /// The position a StartingSequenceNumber names in `shard`, with AWS's refusals: a number
    /// that is not ours or dates from an impossible time is invalid; one that encodes another
    /// shard says which; one from another incarnation of the shard "did not come from this
    /// stream"; and a pre-2014 AWS number for this very shard is an internal failure on AWS too.
    fn starting_position(
        &self,
        stream: &Stream,
        shard: &Shard,
        shard_id: &str,
        text: &str,
    ) -> Result<u64, KinesisError> {
        let account = &self.config.account_id;
        let invalid = |reason: &str| {
            KinesisError::invalid_argument(format!(
                "StartingSequenceNumber {text} used in GetShardIterator on shard {shard_id} in stream {} under account {account} is invalid{reason}.",
                stream.name
            ))
        };
        let other_shard = |encoded: u32| {
            KinesisError::invalid_argument(format!(
                "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {shard_id}",
                shard_id_as_encoded(encoded)
            ))
        };
        match SequenceNumber::parse(text) {
            Ok(sequence_number) => {
                if sequence_number.shard_created_s >= SEQUENCE_SECONDS_LIMIT {
                    return Err(invalid(""));
                }
                if sequence_number.shard_index != shard.index {
                    return Err(other_shard(sequence_number.shard_index));
                }
                if sequence_number.shard_created_s != shard.created_s {
                    return Err(invalid(" because it did not come from this stream"));
                }
                Ok(sequence_number.position)
            }
            Err(ParseSequenceNumberError::NotDecimal) => Err(invalid("")),
            Err(ParseSequenceNumberError::Foreign) => match parse_legacy_sequence_number(text) {
                Some(legacy) if legacy.shard_created_s < SEQUENCE_SECONDS_LIMIT => {
                    if legacy.shard_index != shard.index {
                        Err(other_shard(legacy.shard_index))
                    } else {
                        Err(KinesisError::internal(""))
                    }
                }
                _ => Err(invalid("")),
            },
        }
    }

    /// Decodes and checks a shard iterator for GetRecords: `Invalid ShardIterator.` for a bad
    /// token, ExpiredIteratorException after 300 s, RNF when its stream or shard is gone.
    pub fn resolve_shard_iterator(
        &self,
        token: &str,
        now_ms: u64,
    ) -> Result<(&Stream, &Shard, ShardIterator), KinesisError> {
        let iterator =
            ShardIterator::decode(token).ok_or_else(KinesisError::invalid_shard_iterator)?;
        if iterator.is_expired(now_ms) {
            return Err(KinesisError::new(
                ErrorKind::ExpiredIterator,
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                    crate::time_format::java_date_utc(iterator.issued_ms),
                    crate::time_format::java_date_utc(now_ms),
                    crate::shard_iterator::SHARD_ITERATOR_TTL_MS
                ),
            ));
        }
        let shard_not_found = || {
            KinesisError::shard_not_found(
                &format_shard_id(iterator.shard_index),
                &iterator.stream_name,
                &self.config.account_id,
            )
        };
        let stream = self
            .readable_stream(&iterator.stream_name, now_ms)
            .filter(|stream| stream.created_ms == iterator.stream_created_ms)
            .ok_or_else(shard_not_found)?;
        let shard = stream
            .shard(iterator.shard_index)
            .ok_or_else(shard_not_found)?;
        Ok((stream, shard, iterator))
    }

    /// Issues an iterator for `position` in the given shard.
    pub fn shard_iterator(
        &self,
        stream: &Stream,
        shard: &Shard,
        position: u64,
        now_ms: u64,
    ) -> String {
        ShardIterator {
            issued_ms: now_ms,
            stream_created_ms: stream.created_ms,
            stream_name: stream.name.clone(),
            shard_index: shard.index,
            position,
        }
        .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CreateStreamInput;
    use crate::catalog::CatalogConfig;
    use crate::catalog::test_support::*;

    #[test]
    fn get_shard_iterator_reports_missing_streams_and_shards_like_aws() {
        let (catalog, now) = active_catalog(2);
        let mut input = iterator_input("2147483647", ShardIteratorType::Latest, None);
        input.stream_name = "x".into();
        assert_eq!(
            catalog.shard_iterator_start(&input, now).map(|_| ()),
            Err(KinesisError::shard_not_found(
                "shardId-002147483647",
                "x",
                ACCOUNT
            ))
        );
        input.shard_id = "2147483648".into();
        assert_eq!(
            catalog.shard_iterator_start(&input, now).map(|_| ()),
            Err(KinesisError::shard_unparsable("2147483648", "x", ACCOUNT))
        );
        let input = iterator_input("shardId-5", ShardIteratorType::Latest, None);
        assert_eq!(
            catalog.shard_iterator_start(&input, now).map(|_| ()),
            Err(KinesisError::shard_not_found(
                "shardId-000000000005",
                "s",
                ACCOUNT
            ))
        );
        let input = iterator_input("anything-1", ShardIteratorType::TrimHorizon, None);
        let (_, shard, start) = catalog
            .shard_iterator_start(&input, now)
            .expect("shard 1 exists");
        assert_eq!((shard.index, start), (1, StartingPoint::TrimHorizon));
    }

    #[test]
    fn get_shard_iterator_on_a_creating_stream_says_the_shard_does_not_exist() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        let input = iterator_input("shardId-0", ShardIteratorType::Latest, None);
        assert_eq!(
            catalog.shard_iterator_start(&input, T0).map(|_| ()),
            Err(KinesisError::shard_not_found(
                "shardId-000000000000",
                "s",
                ACCOUNT
            ))
        );
    }

    #[test]
    fn get_shard_iterator_checks_the_iterator_type_against_the_arguments() {
        let (catalog, now) = active_catalog(1);
        let prefix = "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber.";
        let message = |input: GetShardIteratorInput| {
            catalog
                .shard_iterator_start(&input, now)
                .map(|(_, _, start)| start)
                .map_err(|e| e.message)
        };
        assert_eq!(
            message(iterator_input(
                "0",
                ShardIteratorType::AtSequenceNumber,
                None
            )),
            Err(format!(
                "{prefix} Request specified AT_SEQUENCE_NUMBER and no StartingSequenceNumber."
            ))
        );
        assert_eq!(
            message(iterator_input("0", ShardIteratorType::Latest, Some("5"))),
            Err(format!(
                "{prefix} Request specified LATEST and also a StartingSequenceNumber."
            ))
        );
        assert_eq!(
            message(iterator_input("0", ShardIteratorType::AtTimestamp, None)),
            Err("Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.".into())
        );
        let mut future = iterator_input("0", ShardIteratorType::AtTimestamp, None);
        future.timestamp_ms = Some(now + 2_000);
        assert_eq!(
            message(future),
            Err(format!(
                "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {}, currentTimestampInMillis: {now}",
                now + 2_000
            ))
        );
        let mut past = iterator_input("0", ShardIteratorType::AtTimestamp, None);
        past.timestamp_ms = Some(now - 1);
        assert_eq!(message(past), Ok(StartingPoint::Timestamp(now - 1)));
        assert_eq!(
            message(iterator_input("0", ShardIteratorType::Latest, None)),
            Ok(StartingPoint::Latest)
        );
    }

    #[test]
    fn after_the_shards_starting_sequence_number_starts_at_its_first_record() {
        let mut catalog = Catalog::new(CatalogConfig {
            create_delay_ms: 0,
            ..CatalogConfig::default()
        });
        let now = 1_700_000_000_000;
        catalog
            .create_stream(
                CreateStreamInput {
                    stream_name: "s".into(),
                    shard_count: Some(1),
                    stream_mode: None,
                    tags: vec![],
                },
                now,
                &mut |_| 0,
            )
            .expect("create");
        let stream = catalog.streams.get("s").expect("stream");
        let starting = stream
            .describe_shard(&stream.shards[0])
            .starting_sequence_number;
        let input = GetShardIteratorInput {
            stream_name: "s".into(),
            shard_id: "shardId-000000000000".into(),
            shard_iterator_type: ShardIteratorType::AfterSequenceNumber,
            starting_sequence_number: Some(starting),
            timestamp_ms: None,
        };
        let (_, _, start) = catalog
            .shard_iterator_start(&input, now + 1000)
            .expect("valid");
        assert_eq!(start, StartingPoint::At(0));
    }

    #[test]
    fn get_shard_iterator_resolves_and_checks_starting_sequence_numbers() {
        let (catalog, now) = active_catalog(2);
        let created_s = T0 / 1000 - 2;
        let ours = SequenceNumber::new(created_s, 1, 42, created_s + 10).to_string();
        let start = |shard: &str, kind, sequence: &str| {
            catalog
                .shard_iterator_start(&iterator_input(shard, kind, Some(sequence)), now)
                .map(|(_, _, start)| start)
        };
        assert_eq!(
            start("1", ShardIteratorType::AtSequenceNumber, &ours),
            Ok(StartingPoint::At(42))
        );
        assert_eq!(
            start("1", ShardIteratorType::AfterSequenceNumber, &ours),
            Ok(StartingPoint::After(42))
        );
        assert_eq!(
            start("0", ShardIteratorType::AtSequenceNumber, &ours).map_err(|e| e.message),
            Err("Invalid StartingSequenceNumber. It encodes shardId-000000000001, while it was used in a call to a shard with shardId-000000000000".into())
        );
        let other_incarnation = SequenceNumber::new(created_s - 100, 1, 42, created_s).to_string();
        assert_eq!(
            start("1", ShardIteratorType::AtSequenceNumber, &other_incarnation)
                .map_err(|e| e.message),
            Err(format!(
                "StartingSequenceNumber {other_incarnation} used in GetShardIterator on shard shardId-000000000001 in stream s under account 000000000000 is invalid because it did not come from this stream."
            ))
        );
        // Older AWS layouts, as kinesalite's suite (recorded from AWS) expects them.
        assert_eq!(
            start("0", ShardIteratorType::AtSequenceNumber, "5").map_err(|e| e.message),
            Err("Invalid StartingSequenceNumber. It encodes shardId-000000000005, while it was used in a call to a shard with shardId-000000000000".into())
        );
        assert_eq!(
            start("0", ShardIteratorType::AtSequenceNumber, "0").map_err(|e| e.kind),
            Err(ErrorKind::InternalFailure)
        );
        let large_date = "26227199374822427428162556223570313216";
        assert_eq!(
            start("0", ShardIteratorType::AtSequenceNumber, large_date).map_err(|e| e.message),
            Err(format!(
                "StartingSequenceNumber {large_date} used in GetShardIterator on shard shardId-000000000000 in stream s under account 000000000000 is invalid."
            ))
        );
        let negative_index = SequenceNumber::new(0, 0x8000_0000, 0, 0).to_string();
        assert_eq!(
            start("0", ShardIteratorType::AtSequenceNumber, &negative_index).map_err(|e| e.message),
            Err("Invalid StartingSequenceNumber. It encodes shardId--02147483648, while it was used in a call to a shard with shardId-000000000000".into())
        );
    }

    #[test]
    fn shard_iterators_resolve_until_they_expire_with_the_aws_text() {
        let (catalog, now) = active_catalog(2);
        let stream = catalog.live_stream("s", now).expect("exists");
        let shard = stream.shard(1).expect("shard 1");
        let token = catalog.shard_iterator(stream, shard, 9, now);
        let (_, resolved_shard, iterator) = catalog
            .resolve_shard_iterator(&token, now + 300_000)
            .expect("valid");
        assert_eq!(
            (resolved_shard.index, iterator.position, iterator.issued_ms),
            (1, 9, now)
        );
        assert_eq!(
            catalog.resolve_shard_iterator("bogus", now).map(|_| ()),
            Err(KinesisError::invalid_shard_iterator())
        );
        let expired = catalog
            .resolve_shard_iterator(&token, now + 300_001)
            .expect_err("expired");
        assert_eq!(expired.kind, ErrorKind::ExpiredIterator);
        assert_eq!(
            expired.message,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of 300000 milliseconds.",
                crate::time_format::java_date_utc(now),
                crate::time_format::java_date_utc(now + 300_001)
            )
        );
    }

    #[test]
    fn shard_iterators_of_a_deleted_or_recreated_stream_name_a_missing_shard() {
        let (mut catalog, now) = active_catalog(2);
        let token = {
            let stream = catalog.live_stream("s", now).expect("exists");
            catalog.shard_iterator(stream, stream.shard(0).expect("shard 0"), 0, now)
        };
        delete(&mut catalog, "s", now).expect("deleted");
        let missing = Err(KinesisError::shard_not_found(
            "shardId-000000000000",
            "s",
            ACCOUNT,
        ));
        assert_eq!(
            catalog
                .resolve_shard_iterator(&token, now + 600)
                .map(|_| ()),
            missing
        );
        create(&mut catalog, "s", 2, now + 600);
        assert_eq!(
            catalog
                .resolve_shard_iterator(&token, now + 1_200)
                .map(|_| ()),
            missing
        );
    }
}
