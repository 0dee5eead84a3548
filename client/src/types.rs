//! The client's owned result and argument types. They use `sluice_core`'s domain types
//! (`SequenceNumber`, `HashRange`, stream status and mode) so that values read over the binary
//! protocol compare equal to values read over the HTTP API.

use std::fmt;

use sluice_core::api::{StreamMode, StreamStatus};
use sluice_core::hash_key::{HashRange, partition_key_hash};
use sluice_core::sequence_number::SequenceNumber;
use sluice_core::shard_id::format_shard_id;
use sluice_protocols::binary::{WireRoute, WireSequenceNumber, WireStartPosition};

/// What the server said in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: u16,
    pub core_count: u16,
    /// The core that accepted this connection.
    pub core_id: u16,
    /// `core_ports[i]` is core `i`'s own port (0: none).
    pub core_ports: Vec<u16>,
    /// The connection's ingest credit window in PutBatch frame bytes (version 3 and later);
    /// `None` on older versions, which have none.
    pub ingest_credit_bytes: Option<u32>,
}

/// An access key to authenticate with (protocol version 2): the same pair the server's
/// `--credentials ID:SECRET` or `[[credentials]]` names, and the same an AWS SDK would sign
/// HTTP requests with. The secret never leaves the client; the handshake sends an HMAC-SHA256
/// of the server's challenge made with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }
}

// Written out so that a logged client configuration never shows the secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How the server should pick a record's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// MD5 of the partition key, as Kinesis does.
    PartitionKey,
    ExplicitHashKey(u128),
    /// Straight to an open shard by index.
    ShardIndex(u32),
}

impl From<Route> for WireRoute {
    fn from(route: Route) -> Self {
        match route {
            Route::PartitionKey => WireRoute::PartitionKey,
            Route::ExplicitHashKey(key) => WireRoute::ExplicitHashKey(key),
            Route::ShardIndex(index) => WireRoute::ShardIndex(index),
        }
    }
}

/// One record to put, borrowed from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutRecord<'a> {
    pub route: Route,
    /// Required with `Route::PartitionKey`; may be empty with the other routes.
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

impl<'a> PutRecord<'a> {
    /// A record routed by MD5 of its partition key.
    pub fn new(partition_key: &'a str, data: &'a [u8]) -> Self {
        Self {
            route: Route::PartitionKey,
            partition_key,
            data,
        }
    }
}

/// Where a read or subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    AtTimestamp {
        timestamp_ms: u64,
    },
    AtSequenceNumber(SequenceNumber),
    AfterSequenceNumber(SequenceNumber),
    /// A record index within the shard, as [`Records::next_position`] gives it.
    AtPosition(u64),
}

impl From<StartPosition> for WireStartPosition {
    fn from(start: StartPosition) -> Self {
        match start {
            StartPosition::TrimHorizon => Self::TrimHorizon,
            StartPosition::Latest => Self::Latest,
            StartPosition::AtTimestamp { timestamp_ms } => Self::AtTimestamp { timestamp_ms },
            StartPosition::AtSequenceNumber(s) => {
                Self::AtSequenceNumber(WireSequenceNumber::from(s))
            }
            StartPosition::AfterSequenceNumber(s) => {
                Self::AfterSequenceNumber(WireSequenceNumber::from(s))
            }
            StartPosition::AtPosition(p) => Self::AtPosition(p),
        }
    }
}

/// One record read back.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence_number: SequenceNumber,
    pub approximate_arrival_timestamp_ms: u64,
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl Record {
    /// The record's index within its shard.
    pub fn position(&self) -> u64 {
        self.sequence_number.position
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("sequence_number", &self.sequence_number.to_string())
            .field(
                "approximate_arrival_timestamp_ms",
                &self.approximate_arrival_timestamp_ms,
            )
            .field("partition_key", &self.partition_key)
            .field("data_bytes", &self.data.len())
            .finish()
    }
}

/// Records of one shard: a read's result or one subscription event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    pub shard_index: u32,
    pub records: Vec<Record>,
    /// Where to continue (`StartPosition::AtPosition`); `None` once a closed shard is read to
    /// its end.
    pub next_position: Option<u64>,
    pub millis_behind_latest: u64,
}

/// A read's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    pub records_max: u32,
    /// Partition key plus data bytes; at least one record is returned even if larger.
    pub bytes_max: u32,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            records_max: sluice_protocols::binary::limits::READ_RECORDS_MAX,
            bytes_max: sluice_protocols::binary::limits::READ_BYTES_MAX,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub shard_index: u32,
    pub parent_shard_index: Option<u32>,
    pub adjacent_parent_shard_index: Option<u32>,
    pub hash_range: HashRange,
    /// The core that owns the shard.
    pub core_id: u16,
    pub starting_sequence_number: SequenceNumber,
    /// Present once the shard is closed.
    pub ending_sequence_number: Option<SequenceNumber>,
}

impl Shard {
    /// The shard's id as the HTTP API names it (`shardId-000000000007`).
    pub fn shard_id(&self) -> String {
        format_shard_id(self.shard_index)
    }

    pub fn is_open(&self) -> bool {
        self.ending_sequence_number.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDescription {
    pub stream_name: String,
    pub stream_status: StreamStatus,
    pub stream_mode: StreamMode,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp_ms: u64,
    pub shards: Vec<Shard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardMapEntry {
    pub shard_index: u32,
    pub hash_range: HashRange,
    pub core_id: u16,
}

/// The open shards of a stream and their owning cores, sorted by hash range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<ShardMapEntry>,
}

impl ShardMap {
    /// Sorts the entries by starting hash key.
    pub fn new(mut shards: Vec<ShardMapEntry>) -> Self {
        shards.sort_by_key(|s| s.hash_range.starting);
        Self { shards }
    }

    pub fn shards(&self) -> &[ShardMapEntry] {
        &self.shards
    }

    /// The open shard whose range holds `hash_key`.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> Option<&ShardMapEntry> {
        let after = self
            .shards
            .partition_point(|s| s.hash_range.starting <= hash_key);
        let candidate = self.shards.get(after.checked_sub(1)?)?;
        candidate.hash_range.contains(hash_key).then_some(candidate)
    }

    /// The open shard a partition key routes to: MD5 of the key, as Kinesis routes it.
    pub fn shard_for_partition_key(&self, partition_key: &str) -> Option<&ShardMapEntry> {
        self.shard_for_hash_key(partition_key_hash(partition_key))
    }

    pub fn shard_by_index(&self, shard_index: u32) -> Option<&ShardMapEntry> {
        self.shards.iter().find(|s| s.shard_index == shard_index)
    }

    /// The shard a record goes to under `route`.
    pub fn shard_for(&self, route: Route, partition_key: &str) -> Option<&ShardMapEntry> {
        match route {
            Route::PartitionKey => self.shard_for_partition_key(partition_key),
            Route::ExplicitHashKey(key) => self.shard_for_hash_key(key),
            Route::ShardIndex(index) => self.shard_by_index(index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: u32) -> ShardMap {
        ShardMap::new(
            HashRange::even_split(n)
                .into_iter()
                .enumerate()
                .rev()
                .map(|(i, hash_range)| ShardMapEntry {
                    shard_index: i as u32,
                    hash_range,
                    core_id: (i % 2) as u16,
                })
                .collect(),
        )
    }

    #[test]
    fn partition_keys_route_by_md5_to_the_shard_holding_the_hash() {
        let m = map(4);
        // MD5("a") is 16955237001963240173058271559858726497, in the first quarter.
        assert_eq!(
            m.shard_for_partition_key("a").map(|s| s.shard_index),
            Some(0)
        );
        for key in ["x", "y", "partition-17", ""] {
            let hash = partition_key_hash(key);
            let shard = m
                .shard_for_partition_key(key)
                .expect("ranges cover the key space");
            assert!(shard.hash_range.contains(hash));
        }
    }

    #[test]
    fn the_ends_of_the_key_space_route_to_the_first_and_last_shards() {
        let m = map(3);
        assert_eq!(m.shard_for_hash_key(0).map(|s| s.shard_index), Some(0));
        assert_eq!(
            m.shard_for_hash_key(u128::MAX).map(|s| s.shard_index),
            Some(2)
        );
    }

    #[test]
    fn a_hash_in_a_gap_of_the_map_has_no_shard() {
        let m = ShardMap::new(vec![ShardMapEntry {
            shard_index: 5,
            hash_range: HashRange::new(10, 20),
            core_id: 0,
        }]);
        assert!(m.shard_for_hash_key(9).is_none());
        assert!(m.shard_for_hash_key(21).is_none());
        assert_eq!(m.shard_for_hash_key(15).map(|s| s.shard_index), Some(5));
        assert!(ShardMap::new(vec![]).shard_for_hash_key(1).is_none());
    }
}
