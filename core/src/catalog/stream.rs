//! A stream and its shards as the catalog persists them, and what follows from them alone: the
//! status at a given time, routing a hash key to its open shard, and a shard's description.
//!
//! These types are serialized into the catalog file; a field added later needs
//! `#[serde(default)]` so that older files still load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{ShardDescription, StreamMode, StreamStatus};
use crate::error::KinesisError;
use crate::hash_key::HashRange;
use crate::sequence_number::{self, SequenceNumber};
use crate::shard_id::format_shard_id;

/// Where a stream is in its life. The status shown to clients derives from this and `now_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    Creating { active_at_ms: u64 },
    Active,
    Updating { active_at_ms: u64 },
    Deleting { gone_at_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub hash_range: HashRange,
    /// Creation time in epoch seconds, encoded in the shard's sequence numbers.
    pub created_s: u64,
    /// Which storage log holds this shard's records (chosen by `io` at creation; stable for the
    /// shard's life).
    pub log_id: u32,
    /// Set when the shard is closed by a reshard: the position one past its last record.
    pub closed_at_position: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    pub created_ms: u64,
    pub lifecycle: Lifecycle,
    pub mode: StreamModeRepr,
    pub retention_period_hours: u32,
    pub tags: BTreeMap<String, String>,
    pub shards: Vec<Shard>,
    pub shard_level_metrics: Vec<String>,
    pub max_record_size_kib: u32,
    /// Control-plane state added after the first catalog format (pending reshards, consumers,
    /// encryption, policies…); older catalog files load with its defaults.
    #[serde(default)]
    pub control: crate::control::StreamControl,
}

/// The open shards of a stream in hash-key order (see [`Stream::router`]).
pub struct HashRouter<'a> {
    open: Vec<&'a Shard>,
    /// `open[i].hash_range.starting`, side by side: the binary search reads one array instead
    /// of following a pointer to a shard per step (~5 % of the server's CPU with 1,000 shards).
    starts: Vec<u128>,
}

impl<'a> HashRouter<'a> {
    /// The open shard whose hash range holds `hash_key`: the last one starting at or before it.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &'a Shard {
        self.open[self.slot_for_hash_key(hash_key)]
    }

    /// Where the open shard holding `hash_key` is among the open shards (`0..open_count()`),
    /// so that a caller can keep per-shard state in a plain vector instead of a map.
    pub fn slot_for_hash_key(&self, hash_key: u128) -> usize {
        let after = self
            .starts
            .partition_point(|&starting| starting <= hash_key);
        let slot = after
            .checked_sub(1)
            .expect("the open shards of a stream cover the whole hash key space");
        debug_assert!(self.open[slot].hash_range.contains(hash_key));
        slot
    }

    /// The open shard at `slot` (see [`Self::slot_for_hash_key`]).
    pub fn shard_at(&self, slot: usize) -> &'a Shard {
        self.open[slot]
    }

    /// How many shards are open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// `StreamMode` as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamModeRepr {
    Provisioned,
    OnDemand,
}

impl Stream {
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        match self.lifecycle {
            // A reshard only takes effect when storage completes it (see `reshard`); until then
            // the stream stays UPDATING even past its window.
            Lifecycle::Updating { .. } if self.control.pending_reshard.is_some() => {
                StreamStatus::Updating
            }
            Lifecycle::Creating { active_at_ms } if now_ms < active_at_ms => StreamStatus::Creating,
            Lifecycle::Updating { active_at_ms } if now_ms < active_at_ms => StreamStatus::Updating,
            Lifecycle::Creating { .. } | Lifecycle::Updating { .. } | Lifecycle::Active => {
                StreamStatus::Active
            }
            Lifecycle::Deleting { .. } => StreamStatus::Deleting,
        }
    }

    /// Whether the DELETING window has passed: the stream no longer exists for clients.
    pub fn is_gone(&self, now_ms: u64) -> bool {
        matches!(self.lifecycle, Lifecycle::Deleting { gone_at_ms } if now_ms >= gone_at_ms)
    }

    /// Whether this stream, found under catalog key `key`, is the live stream of that name:
    /// not gone, and not a gone stream waiting for `reap` under a retired key.
    pub(crate) fn is_live_as(&self, key: &str, now_ms: u64) -> bool {
        self.name == key && !self.is_gone(now_ms)
    }

    pub fn arn(&self, region: &str, account_id: &str) -> String {
        format!("arn:aws:kinesis:{region}:{account_id}:stream/{}", self.name)
    }

    pub fn shard(&self, shard_index: u32) -> Option<&Shard> {
        // Indexes are usually dense from 0, so the shard normally sits at its own index.
        match self.shards.get(shard_index as usize) {
            Some(shard) if shard.index == shard_index => Some(shard),
            _ => self.shards.iter().find(|shard| shard.index == shard_index),
        }
    }

    /// The open shard whose hash range holds `hash_key`. One lookup scans the shards; to route
    /// many keys, build a [`HashRouter`] once with [`Stream::router`].
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &Shard {
        self.shards
            .iter()
            .find(|shard| shard.closed_at_position.is_none() && shard.hash_range.contains(hash_key))
            .expect("the open shards of a stream cover the whole hash key space")
    }

    /// Routes many hash keys to their open shards by binary search over the open shards' hash
    /// ranges. Scanning 1,000 shards per record took 18 % of the server's CPU when a batch of
    /// 500 records spread over 1,000 shards (profiled with `perf record`).
    pub fn router(&self) -> HashRouter<'_> {
        let mut open: Vec<&Shard> = self
            .shards
            .iter()
            .filter(|shard| shard.closed_at_position.is_none())
            .collect();
        // Usually sorted already: shards are created in hash-key order until a reshard.
        open.sort_unstable_by_key(|shard| shard.hash_range.starting);
        debug_assert!(
            open.windows(2)
                .all(|w| w[0].hash_range.ending.checked_add(1) == Some(w[1].hash_range.starting)),
            "the open shards tile the hash key space"
        );
        let starts = open.iter().map(|shard| shard.hash_range.starting).collect();
        HashRouter { open, starts }
    }

    pub fn open_shard_count(&self) -> u32 {
        let open = self
            .shards
            .iter()
            .filter(|shard| shard.closed_at_position.is_none())
            .count();
        u32::try_from(open).expect("a stream has fewer than 2^32 shards")
    }

    pub fn stream_mode(&self) -> StreamMode {
        match self.mode {
            StreamModeRepr::Provisioned => StreamMode::Provisioned,
            StreamModeRepr::OnDemand => StreamMode::OnDemand,
        }
    }

    /// When a closed shard was closed, in epoch seconds: the creation time of its children,
    /// which a reshard creates at the moment it closes the parent. `None` for an open shard.
    pub fn shard_closed_s(&self, shard_index: u32) -> Option<u64> {
        let shard = self.shard(shard_index)?;
        shard.closed_at_position?;
        let closed_s = self
            .shards
            .iter()
            .filter(|child| {
                child.parent == Some(shard_index) || child.adjacent_parent == Some(shard_index)
            })
            .map(|child| child.created_s)
            .min();
        // A closed shard without children cannot come out of a reshard; dating it at its own
        // creation keeps its ending sequence number well-formed all the same.
        Some(closed_s.unwrap_or(shard.created_s))
    }

    /// The shard as DescribeStream and ListShards show it.
    pub fn describe_shard(&self, shard: &Shard) -> ShardDescription {
        let starting = SequenceNumber::new(shard.created_s, shard.index, 0, shard.created_s);
        let ending = shard.closed_at_position.map(|_| {
            // Children are dated one second after their parent closed (see `reshard`), so the
            // parent's last second is the one before theirs.
            let closed_s = self
                .shard_closed_s(shard.index)
                .map_or(shard.created_s, |children_s| children_s.saturating_sub(1))
                .max(shard.created_s);
            SequenceNumber::new(
                shard.created_s,
                shard.index,
                sequence_number::POSITION_MAX,
                closed_s,
            )
            .to_string()
        });
        ShardDescription {
            shard_id: format_shard_id(shard.index),
            parent_shard_id: shard.parent.map(format_shard_id),
            adjacent_parent_shard_id: shard.adjacent_parent.map(format_shard_id),
            hash_key_range: shard.hash_range,
            starting_sequence_number: starting.to_string(),
            ending_sequence_number: ending,
        }
    }

    pub(crate) fn is_readable(&self, now_ms: u64) -> bool {
        matches!(
            self.status(now_ms),
            StreamStatus::Active | StreamStatus::Updating
        )
    }

    /// ResourceInUseException naming the status unless the stream is ACTIVE or UPDATING.
    pub(crate) fn check_readable(&self, account_id: &str, now_ms: u64) -> Result<(), KinesisError> {
        if self.is_readable(now_ms) {
            return Ok(());
        }
        Err(self.not_active(account_id, now_ms))
    }

    /// ResourceInUseException naming the status unless the stream is ACTIVE: control-plane
    /// changes and reshards wait for the previous change to finish.
    pub(crate) fn check_active(&self, account_id: &str, now_ms: u64) -> Result<(), KinesisError> {
        if self.status(now_ms) == StreamStatus::Active {
            return Ok(());
        }
        Err(self.not_active(account_id, now_ms))
    }

    fn not_active(&self, account_id: &str, now_ms: u64) -> KinesisError {
        KinesisError::stream_not_active(&self.name, account_id, self.status(now_ms).as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_support::*;
    use crate::catalog::{Catalog, CatalogConfig};

    #[test]
    fn a_new_stream_is_creating_until_the_create_delay_passes_then_active() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 3, T0);
        let stream = catalog.live_stream("s", T0).expect("stream exists");
        assert_eq!(stream.status(T0), StreamStatus::Creating);
        assert_eq!(stream.status(T0 + 499), StreamStatus::Creating);
        assert_eq!(stream.status(T0 + 500), StreamStatus::Active);
    }

    #[test]
    fn a_zero_create_delay_makes_the_stream_active_at_once() {
        let mut catalog = Catalog::new(CatalogConfig {
            create_delay_ms: 0,
            ..config()
        });
        create(&mut catalog, "s", 1, T0);
        assert_eq!(catalog.streams["s"].lifecycle, Lifecycle::Active);
    }

    #[test]
    fn the_router_agrees_with_the_scan_over_a_thousand_shards() {
        let mut catalog = Catalog::new(CatalogConfig {
            shard_limit: 1000,
            ..config()
        });
        create(&mut catalog, "s", 1000, T0);
        let stream = &catalog.streams["s"];
        let router = stream.router();
        let mut key: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        let mut edges = vec![0, u128::MAX];
        for shard in &stream.shards {
            edges.extend([shard.hash_range.starting, shard.hash_range.ending]);
        }
        for _ in 0..2000 {
            // A xorshift walk over the whole key space, plus every range edge.
            key ^= key << 13;
            key ^= key >> 7;
            key ^= key << 17;
            edges.push(key);
        }
        for key in edges {
            assert_eq!(
                router.shard_for_hash_key(key).index,
                stream.shard_for_hash_key(key).index
            );
        }
    }

    #[test]
    fn shard_for_hash_key_routes_only_to_open_shards() {
        let (mut catalog, _) = active_catalog(2);
        split_shard_zero(&mut catalog, T0 / 1000);
        let stream = &catalog.streams["s"];
        assert_eq!(stream.shard_for_hash_key(0).index, 2);
        assert_eq!(stream.shard_for_hash_key(u128::MAX).index, 1);
        let middle = stream.shards[3].hash_range.starting;
        assert_eq!(stream.shard_for_hash_key(middle).index, 3);
        assert_eq!(stream.shard_for_hash_key(middle - 1).index, 2);
        let router = stream.router();
        for key in [0, middle - 1, middle, middle + 1, u128::MAX / 2, u128::MAX] {
            assert_eq!(
                router.shard_for_hash_key(key).index,
                stream.shard_for_hash_key(key).index,
                "the router and the scan agree on {key}"
            );
            let slot = router.slot_for_hash_key(key);
            assert!(slot < router.open_count());
            assert_eq!(
                router.shard_at(slot).index,
                stream.shard_for_hash_key(key).index
            );
        }
        assert_eq!(
            router.open_count(),
            3,
            "the split shard is no longer a slot"
        );
        assert_eq!(stream.open_shard_count(), 3);
        assert_eq!(stream.shard(3).map(|s| s.index), Some(3));
        assert_eq!(stream.shard(4), None);
    }
}
