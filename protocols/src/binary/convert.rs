//! Conversions between the `Wire*` types and `sluice_core`'s domain types, used at the edge of
//! the server and the client. The wire carries sequence numbers as their fields and shards as
//! indexes; the domain model (shaped by the JSON API) carries decimal strings and shard ids, so
//! some directions can fail.

use bytes::Bytes;
use sluice_core::KinesisError;
use sluice_core::api::{
    PutRecordsEntry, PutRecordsOutput, ShardDescription, ShardIteratorType, StreamDescription,
    StreamMode, StreamStatus,
};
use sluice_core::hash_key::HashRange;
use sluice_core::sequence_number::{POSITION_MAX, SequenceNumber};
use sluice_core::shard_id::parse_shard_id;

use crate::binary::frame::*;
use crate::binary::status::{StatusCode, WireStatus};

/// A domain value the wire cannot carry, or a wire value the domain refuses.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{text:?} is not a shard id")]
    InvalidShardId { text: String },
    #[error("{text:?} is not a sequence number this service issued")]
    InvalidSequenceNumber { text: String },
    #[error("position {position} is past the largest record position")]
    PositionOutOfRange { position: u64 },
    #[error("hash range starts at {starting} after it ends at {ending}")]
    InvertedHashRange { starting: u128, ending: u128 },
}

impl From<SequenceNumber> for WireSequenceNumber {
    fn from(s: SequenceNumber) -> Self {
        WireSequenceNumber {
            shard_created_s: s.shard_created_s,
            shard_index: s.shard_index,
            position: s.position,
            arrival_s: s.arrival_s,
        }
    }
}

impl TryFrom<WireSequenceNumber> for SequenceNumber {
    type Error = ConvertError;

    fn try_from(s: WireSequenceNumber) -> Result<Self, ConvertError> {
        if s.position > POSITION_MAX {
            return Err(ConvertError::PositionOutOfRange {
                position: s.position,
            });
        }
        Ok(SequenceNumber::new(
            s.shard_created_s,
            s.shard_index,
            s.position,
            s.arrival_s,
        ))
    }
}

impl WireSequenceNumber {
    /// Parses the decimal form (as the HTTP API and `ShardDescription` carry it).
    pub fn parse(text: &str) -> Result<Self, ConvertError> {
        SequenceNumber::parse(text).map(Self::from).map_err(|_| {
            ConvertError::InvalidSequenceNumber {
                text: text.to_owned(),
            }
        })
    }
}

impl From<HashRange> for WireHashRange {
    fn from(r: HashRange) -> Self {
        WireHashRange {
            starting: r.starting,
            ending: r.ending,
        }
    }
}

impl TryFrom<WireHashRange> for HashRange {
    type Error = ConvertError;

    fn try_from(r: WireHashRange) -> Result<Self, ConvertError> {
        if r.starting > r.ending {
            return Err(ConvertError::InvertedHashRange {
                starting: r.starting,
                ending: r.ending,
            });
        }
        Ok(HashRange::new(r.starting, r.ending))
    }
}

impl WireHashRange {
    pub const fn contains(&self, hash_key: u128) -> bool {
        self.starting <= hash_key && hash_key <= self.ending
    }
}

impl From<StreamStatus> for WireStreamStatus {
    fn from(s: StreamStatus) -> Self {
        match s {
            StreamStatus::Creating => Self::Creating,
            StreamStatus::Deleting => Self::Deleting,
            StreamStatus::Active => Self::Active,
            StreamStatus::Updating => Self::Updating,
        }
    }
}

impl From<WireStreamStatus> for StreamStatus {
    fn from(s: WireStreamStatus) -> Self {
        match s {
            WireStreamStatus::Creating => Self::Creating,
            WireStreamStatus::Deleting => Self::Deleting,
            WireStreamStatus::Active => Self::Active,
            WireStreamStatus::Updating => Self::Updating,
        }
    }
}

impl From<StreamMode> for WireStreamMode {
    fn from(m: StreamMode) -> Self {
        match m {
            StreamMode::Provisioned => Self::Provisioned,
            StreamMode::OnDemand => Self::OnDemand,
        }
    }
}

impl From<WireStreamMode> for StreamMode {
    fn from(m: WireStreamMode) -> Self {
        match m {
            WireStreamMode::Provisioned => Self::Provisioned,
            WireStreamMode::OnDemand => Self::OnDemand,
        }
    }
}

impl WireStartPosition {
    /// The Kinesis iterator type this start corresponds to; `None` for
    /// [`WireStartPosition::AtPosition`], which has no JSON counterpart (the server resolves it
    /// directly).
    pub const fn shard_iterator_type(&self) -> Option<ShardIteratorType> {
        Some(match self {
            Self::TrimHorizon => ShardIteratorType::TrimHorizon,
            Self::Latest => ShardIteratorType::Latest,
            Self::AtTimestamp { .. } => ShardIteratorType::AtTimestamp,
            Self::AtSequenceNumber(_) => ShardIteratorType::AtSequenceNumber,
            Self::AfterSequenceNumber(_) => ShardIteratorType::AfterSequenceNumber,
            Self::AtPosition(_) => return None,
        })
    }
}

impl<'a> WireError<'a> {
    /// The error response to a request with `opcode`.
    pub fn from_kinesis(opcode: u16, error: &'a KinesisError) -> Self {
        WireError {
            opcode,
            status: StatusCode::from_error_kind(error.kind).into(),
            message: &error.message,
        }
    }

    /// The error as the domain names it. A status this codec does not know becomes an
    /// `InternalFailure` whose message names the code.
    pub fn to_kinesis_error(&self) -> KinesisError {
        match self.status.known().and_then(StatusCode::error_kind) {
            Some(kind) => KinesisError::new(kind, self.message),
            None => KinesisError::internal(format!("{} ({})", self.message, self.status)),
        }
    }
}

/// One shard of a DescribeStream response, owned by `core_id`.
pub fn wire_shard(shard: &ShardDescription, core_id: u16) -> Result<WireShard, ConvertError> {
    let index = |text: &str| {
        parse_shard_id(text).ok_or_else(|| ConvertError::InvalidShardId {
            text: text.to_owned(),
        })
    };
    Ok(WireShard {
        shard_index: index(&shard.shard_id)?,
        parent_shard_index: shard.parent_shard_id.as_deref().map(index).transpose()?,
        adjacent_parent_shard_index: shard
            .adjacent_parent_shard_id
            .as_deref()
            .map(index)
            .transpose()?,
        hash_range: shard.hash_key_range.into(),
        core_id,
        starting_sequence_number: WireSequenceNumber::parse(&shard.starting_sequence_number)?,
        ending_sequence_number: shard
            .ending_sequence_number
            .as_deref()
            .map(WireSequenceNumber::parse)
            .transpose()?,
    })
}

/// A DescribeStream response; `core_of(shard_index)` names each shard's owning core.
pub fn wire_stream_description<'a>(
    description: &'a StreamDescription,
    core_of: impl Fn(u32) -> u16,
) -> Result<WireStreamDescription<'a>, ConvertError> {
    let shards = description
        .shards
        .iter()
        .map(|shard| {
            let index =
                parse_shard_id(&shard.shard_id).ok_or_else(|| ConvertError::InvalidShardId {
                    text: shard.shard_id.clone(),
                })?;
            wire_shard(shard, core_of(index))
        })
        .collect::<Result<_, _>>()?;
    Ok(WireStreamDescription {
        stream_name: &description.stream_name,
        stream_status: description.stream_status.into(),
        stream_mode: description.stream_mode.into(),
        retention_period_hours: description.retention_period_hours,
        stream_creation_timestamp_ms: description.stream_creation_timestamp_ms,
        shards,
    })
}

impl WirePutRecord<'_> {
    /// The domain entry for this record, its data a slice of `frame` (the frame the record was
    /// decoded from), not a copy. A record routed by shard index is sent to the starting hash
    /// key of that shard, which `starting_hash_key_of` looks up (`None` if the stream has no
    /// such open shard, answered with `InvalidArgument`).
    ///
    /// # Panics
    /// When the record's data does not lie inside `frame`.
    pub fn to_put_records_entry(
        &self,
        frame: &Bytes,
        starting_hash_key_of: impl Fn(u32) -> Option<u128>,
    ) -> Result<PutRecordsEntry, WireStatus> {
        let explicit_hash_key = match self.route {
            WireRoute::PartitionKey => None,
            WireRoute::ExplicitHashKey(key) => Some(key),
            WireRoute::ShardIndex(index) => Some(
                starting_hash_key_of(index).ok_or(WireStatus::from(StatusCode::InvalidArgument))?,
            ),
        };
        Ok(PutRecordsEntry {
            data: frame.slice_ref(self.data),
            partition_key: self.partition_key.to_owned(),
            explicit_hash_key,
        })
    }
}

impl From<&PutRecordsOutput> for WirePutBatchResult {
    fn from(output: &PutRecordsOutput) -> Self {
        WirePutBatchResult {
            records: output
                .records
                .iter()
                .map(|r| match r {
                    Ok(entry) => Ok(entry.sequence_number.into()),
                    Err(error) => Err(StatusCode::from_error_kind(error.kind).into()),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::ErrorKind;
    use sluice_core::api::PutRecordsResultEntry;

    #[test]
    fn sequence_numbers_survive_the_wire_form_and_keep_their_decimal_text() {
        let domain = SequenceNumber::new(1_700_000_000, 7, 12345, 1_700_000_123);
        let wire = WireSequenceNumber::from(domain);
        assert_eq!(SequenceNumber::try_from(wire), Ok(domain));
        assert_eq!(WireSequenceNumber::parse(&domain.to_string()), Ok(wire));
    }

    #[test]
    fn a_wire_position_past_the_maximum_is_refused() {
        let wire = WireSequenceNumber {
            shard_created_s: 1,
            shard_index: 0,
            position: u64::MAX,
            arrival_s: 1,
        };
        assert_eq!(
            SequenceNumber::try_from(wire),
            Err(ConvertError::PositionOutOfRange { position: u64::MAX })
        );
    }

    #[test]
    fn an_inverted_hash_range_is_refused() {
        let wire = WireHashRange {
            starting: 5,
            ending: 4,
        };
        assert!(HashRange::try_from(wire).is_err());
    }

    #[test]
    fn shard_descriptions_become_wire_shards_with_indexes() {
        let starting = SequenceNumber::new(1_700_000_000, 3, 0, 1_700_000_000);
        let shard = ShardDescription {
            shard_id: "shardId-000000000003".into(),
            parent_shard_id: Some("shardId-000000000001".into()),
            adjacent_parent_shard_id: None,
            hash_key_range: HashRange::new(10, 20),
            starting_sequence_number: starting.to_string(),
            ending_sequence_number: None,
        };
        let wire = wire_shard(&shard, 1).expect("valid shard");
        assert_eq!(wire.shard_index, 3);
        assert_eq!(wire.parent_shard_index, Some(1));
        assert_eq!(wire.adjacent_parent_shard_index, None);
        assert_eq!(wire.core_id, 1);
        assert_eq!(wire.starting_sequence_number, starting.into());
    }

    #[test]
    fn kinesis_errors_cross_the_wire_with_kind_and_message() {
        let error = KinesisError::stream_not_found("s", "000000000000");
        let wire = WireError::from_kinesis(Opcode::PutBatch.code(), &error);
        assert_eq!(wire.status, StatusCode::ResourceNotFound.into());
        assert_eq!(wire.to_kinesis_error(), error);
    }

    #[test]
    fn an_unknown_status_becomes_an_internal_failure_naming_the_code() {
        let wire = WireError {
            opcode: 2,
            status: WireStatus(999),
            message: "boom",
        };
        let error = wire.to_kinesis_error();
        assert_eq!(error.kind, ErrorKind::InternalFailure);
        assert!(error.message.contains("999"), "{}", error.message);
    }

    #[test]
    fn shard_index_routes_use_the_shards_starting_hash_key() {
        let frame = Bytes::from_static(b"..x..");
        let record = WirePutRecord {
            route: WireRoute::ShardIndex(2),
            partition_key: "",
            data: &frame[2..3],
        };
        let entry = record
            .to_put_records_entry(&frame, |i| (i == 2).then_some(77))
            .expect("shard 2 exists");
        assert_eq!(entry.explicit_hash_key, Some(77));
        assert_eq!(entry.data, Bytes::from_static(b"x"));
        assert_eq!(
            entry.data.as_ptr(),
            frame[2..].as_ptr(),
            "a slice, not a copy"
        );
        let missing = record.to_put_records_entry(&frame, |_| None);
        assert_eq!(missing, Err(StatusCode::InvalidArgument.into()));
    }

    #[test]
    fn put_records_output_maps_failures_to_status_codes() {
        let sequence_number = SequenceNumber::new(1, 0, 4, 2);
        let output = PutRecordsOutput {
            encryption_type: sluice_core::api::EncryptionType::None,
            records: vec![
                Ok(PutRecordsResultEntry {
                    shard_id: "shardId-000000000000".into(),
                    sequence_number,
                }),
                Err(KinesisError::new(
                    ErrorKind::ProvisionedThroughputExceeded,
                    "slow down",
                )),
            ],
        };
        let wire = WirePutBatchResult::from(&output);
        assert_eq!(wire.records[0], Ok(sequence_number.into()));
        assert_eq!(
            wire.records[1],
            Err(StatusCode::ProvisionedThroughputExceeded.into())
        );
    }
}
