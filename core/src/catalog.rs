//! The catalog: every stream, its shards, tags, retention and lifecycle, as a pure state
//! machine. `io` owns one `Catalog`, applies control-plane calls to it, persists it after every
//! change, and asks it where data-plane calls go. Time comes in as `now_ms`; status transitions
//! (CREATING → ACTIVE, UPDATING → ACTIVE, DELETING → gone) are computed from it, so no timer is
//! needed and a restart resumes them exactly.
//!
//! Invariants:
//! - A stream whose DELETING window has passed ("gone") is absent for every read and write,
//!   whether or not `reap` has removed it yet.
//! - `streams` is keyed by stream name, except for gone streams displaced by a new stream of the
//!   same name: those wait for `reap` under a retired key that starts with NUL, which no valid
//!   stream name can contain, so storage still learns that their records may be dropped.
//! - Within a stream, `shards` is ordered by `index`, and indexes only grow.
//! - The open shards of a stream cover the whole hash key space exactly once.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::api::*;
use crate::error::{ErrorKind, KinesisError};
use crate::hash_key::HashRange;
use crate::limits;
use crate::next_token::{ListShardsToken, ListStreamsToken, NextTokenError};
use crate::sequence_number::{self, ParseSequenceNumberError, SequenceNumber};
use crate::shard_id::format_shard_id;
use crate::shard_iterator::ShardIterator;
use crate::tag_rules;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogConfig {
    pub region: String,
    pub account_id: String,
    /// Account-wide open-shard limit (LimitExceededException beyond it).
    pub shard_limit: u32,
    /// How long a new stream stays CREATING (AWS-like clients and test suites expect a short
    /// CREATING window; 0 makes streams ACTIVE at once).
    pub create_delay_ms: u64,
    pub delete_delay_ms: u64,
    pub update_delay_ms: u64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            shard_limit: crate::limits::SHARD_LIMIT_DEFAULT,
            create_delay_ms: 500,
            delete_delay_ms: 500,
            update_delay_ms: 500,
        }
    }
}

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

/// `StreamMode` as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamModeRepr {
    Provisioned,
    OnDemand,
}

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

/// A stream that `reap` removed for good; storage may now drop its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedStream {
    pub name: String,
    pub created_ms: u64,
    pub shards: Vec<Shard>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub config: CatalogConfig,
    pub streams: BTreeMap<String, Stream>,
    /// Account-level settings (UpdateAccountSettings); older catalog files load with defaults.
    #[serde(default)]
    pub account: crate::control::AccountSettings,
}

/// Shards are dated this long before the CreateStream call, as AWS does (kinesalite's tests
/// require the creation time embedded in sequence numbers to be 2–7 s before the call).
const SHARD_CREATED_LEAD_S: u64 = 2;
/// Marks the key of a gone stream displaced by a new one of the same name (see the module doc).
const RETIRED_KEY_PREFIX: char = '\0';
/// kinesalite (after AWS) refuses sequence numbers whose shard creation time, in seconds, is at
/// or beyond this.
const SEQUENCE_SECONDS_LIMIT: u64 = 16_025_175_000;
/// The largest shard index AWS accepts in a shard id (a signed 32-bit integer).
const SHARD_INDEX_PARSE_MAX: u64 = i32::MAX as u64;

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

    /// The open shard whose hash range holds `hash_key`.
    pub fn shard_for_hash_key(&self, hash_key: u128) -> &Shard {
        self.shards
            .iter()
            .find(|shard| shard.closed_at_position.is_none() && shard.hash_range.contains(hash_key))
            .expect("the open shards of a stream cover the whole hash key space")
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
}

/// Reads a shard id as AWS does: whatever follows the first `-` (or the whole text when there is
/// no `-` or nothing follows it) must be decimal digits naming an index up to 2^31 − 1. So
/// `shardId-000000000001`, `shardId-1`, `1` and `anything-1` all name shard 1.
pub fn parse_shard_id_like_aws(text: &str) -> Option<u32> {
    let digits = match text.split('-').nth(1) {
        Some(after_hyphen) if !after_hyphen.is_empty() => after_hyphen,
        _ => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    let index = if significant.is_empty() {
        0
    } else {
        significant.parse::<u64>().ok()?
    };
    if index > SHARD_INDEX_PARSE_MAX {
        return None;
    }
    u32::try_from(index).ok()
}

/// A shard id as AWS prints the index a sequence number encodes: indexes with the top bit set
/// read as negative 32-bit integers (`shardId--02147483648`).
pub fn shard_id_as_encoded(shard_index: u32) -> String {
    match i32::try_from(shard_index) {
        Ok(_) => format_shard_id(shard_index),
        Err(_) => {
            let magnitude = (1u64 << 32) - u64::from(shard_index);
            format!("shardId--{magnitude:011}")
        }
    }
}

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

pub(crate) fn validation_error(message: String) -> KinesisError {
    KinesisError::new(
        ErrorKind::Validation,
        format!("1 validation error detected: {message}"),
    )
}

/// The stream-name rule of the model (`[a-zA-Z0-9_.-]+`, 1..=128), re-checked here because a
/// longer or stranger name would break the iterator and token encodings.
fn validate_stream_name(name: &str) -> Result<(), KinesisError> {
    if name.is_empty() {
        return Err(validation_error(format!(
            "Value '{name}' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )));
    }
    if name.len() > limits::STREAM_NAME_CHARS_MAX {
        return Err(validation_error(format!(
            "Value '{name}' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to {}",
            limits::STREAM_NAME_CHARS_MAX
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(validation_error(format!(
            "Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(())
}

pub(crate) fn next_token_error(error: NextTokenError) -> KinesisError {
    match error {
        NextTokenError::Expired => KinesisError::new(
            ErrorKind::ExpiredNextToken,
            format!(
                "The NextToken has expired. NextTokens are valid for {} seconds.",
                limits::NEXT_TOKEN_TTL_MS / 1000
            ),
        ),
        _ => KinesisError::invalid_argument("Invalid NextToken."),
    }
}

/// Page size: the caller's value, else the maximum, and never more than the maximum.
pub(crate) fn page_size(requested: Option<u32>, max: u32) -> usize {
    requested.unwrap_or(max).clamp(1, max) as usize
}

/// Whether ListShards' `filter` keeps `shard`, as AWS documents the filters: AT_LATEST keeps
/// open shards; AT_TIMESTAMP keeps shards open at that time; FROM_TIMESTAMP keeps open shards
/// and those closed at or after that time; the TRIM_HORIZON forms are the same taken at the trim
/// horizon (now minus the retention period), which FROM_TIMESTAMP is also raised to.
fn shard_filter_keeps(stream: &Stream, shard: &Shard, filter: &ShardFilter, now_ms: u64) -> bool {
    let created_ms = shard.created_s.saturating_mul(1000);
    let closed_ms = stream
        .shard_closed_s(shard.index)
        .map(|s| s.saturating_mul(1000));
    let retention_ms = u64::from(stream.retention_period_hours) * 3_600_000;
    let trim_horizon_ms = now_ms.saturating_sub(retention_ms);
    let open_at = |at_ms: u64| {
        // A time before the stream existed means "from the start": the first shards.
        let earliest_ms = stream
            .shards
            .iter()
            .map(|s| s.created_s.saturating_mul(1000))
            .min()
            .unwrap_or(0);
        let at_ms = at_ms.max(earliest_ms);
        created_ms <= at_ms && closed_ms.is_none_or(|closed| closed >= at_ms)
    };
    let open_since =
        |from_ms: u64| closed_ms.is_none_or(|closed| closed >= from_ms.max(trim_horizon_ms));
    match filter {
        ShardFilter::AfterShardId(shard_id) => {
            parse_shard_id_like_aws(shard_id).is_none_or(|after| shard.index > after)
        }
        ShardFilter::AtTrimHorizon => open_at(trim_horizon_ms),
        ShardFilter::FromTrimHorizon => open_since(trim_horizon_ms),
        ShardFilter::AtLatest => shard.closed_at_position.is_none(),
        ShardFilter::AtTimestamp(at_ms) => open_at(*at_ms),
        ShardFilter::FromTimestamp(from_ms) => open_since(*from_ms),
    }
}

/// Checks tag characters and the reserved prefix, in AWS's order, for an add (or a create).
fn validate_new_tags<'a>(
    account: &str,
    stream_name: &str,
    mut texts: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Result<(), KinesisError> {
    if texts.clone().any(|(key, value)| {
        !tag_rules::has_only_tag_characters(key) || !tag_rules::has_only_tag_characters(value)
    }) {
        return Err(KinesisError::invalid_argument(
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
        ));
    }
    if texts
        .clone()
        .any(|(key, value)| tag_rules::contains_percent(key) || tag_rules::contains_percent(value))
    {
        return Err(KinesisError::invalid_argument(format!(
            "Failed to add tags to stream {stream_name} under account {account} because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
        )));
    }
    if texts.any(|(key, _)| key.starts_with(tag_rules::RESERVED_KEY_PREFIX)) {
        return Err(KinesisError::invalid_argument(format!(
            "Failed to add tags to stream {stream_name} under account {account} because tag keys may not start with '{}'.",
            tag_rules::RESERVED_KEY_PREFIX
        )));
    }
    Ok(())
}

fn too_many_tags(account: &str, stream_name: &str) -> KinesisError {
    KinesisError::invalid_argument(format!(
        "Failed to add tags to stream {stream_name} under account {account} because a given stream cannot have more than {} tags associated with it.",
        limits::TAGS_PER_STREAM_MAX
    ))
}

impl Catalog {
    pub fn new(config: CatalogConfig) -> Self {
        Self {
            config,
            streams: BTreeMap::new(),
            account: Default::default(),
        }
    }

    /// The stream called `stream_name`, unless it is gone.
    pub fn live_stream(&self, stream_name: &str, now_ms: u64) -> Option<&Stream> {
        self.streams
            .get(stream_name)
            .filter(|stream| stream.name == stream_name && !stream.is_gone(now_ms))
    }

    pub(crate) fn live_stream_mut(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Option<&mut Stream> {
        self.streams
            .get_mut(stream_name)
            .filter(|stream| stream.name == stream_name && !stream.is_gone(now_ms))
    }

    fn not_found(&self, stream_name: &str) -> KinesisError {
        KinesisError::stream_not_found(stream_name, &self.config.account_id)
    }

    pub(crate) fn found(&self, stream_name: &str, now_ms: u64) -> Result<&Stream, KinesisError> {
        self.live_stream(stream_name, now_ms)
            .ok_or_else(|| self.not_found(stream_name))
    }

    /// Open shards of every stream that still exists: the count the account shard limit is
    /// measured against.
    pub fn account_open_shard_count(&self, now_ms: u64) -> u64 {
        self.streams
            .values()
            .filter(|stream| !stream.is_gone(now_ms))
            .map(|stream| u64::from(stream.open_shard_count()))
            .sum()
    }

    /// Whether DescribeStream shows the shards: not while CREATING, and not while DELETING a
    /// stream that was deleted before it ever became ACTIVE (AWS shows `Shards: []` then too).
    pub(crate) fn shards_visible(&self, stream: &Stream, now_ms: u64) -> bool {
        match stream.lifecycle {
            Lifecycle::Creating { active_at_ms } => now_ms >= active_at_ms,
            Lifecycle::Deleting { gone_at_ms } => {
                let deleted_at_ms = gone_at_ms.saturating_sub(self.config.delete_delay_ms);
                let active_at_ms = stream
                    .created_ms
                    .saturating_add(self.config.create_delay_ms);
                deleted_at_ms >= active_at_ms
            }
            Lifecycle::Active | Lifecycle::Updating { .. } => true,
        }
    }

    /// Creates a stream in CREATING. `log_id` is called once per new shard, in shard order, to
    /// place it.
    pub fn create_stream(
        &mut self,
        input: CreateStreamInput,
        now_ms: u64,
        log_id: &mut dyn FnMut(u32) -> u32,
    ) -> Result<(), KinesisError> {
        let name = input.stream_name;
        validate_stream_name(&name)?;
        let (mode, shard_count) = match input.shard_count {
            None => (StreamModeRepr::OnDemand, limits::ON_DEMAND_SHARD_COUNT),
            Some(0) => {
                return Err(validation_error(
                    "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
                ));
            }
            Some(n) if n > limits::SHARD_COUNT_MAX => {
                return Err(validation_error(format!(
                    "Value '{n}' at 'shardCount' failed to satisfy constraint: Member must have value less than or equal to {}",
                    limits::SHARD_COUNT_MAX
                )));
            }
            Some(n) => match input.stream_mode {
                Some(StreamMode::OnDemand) => (StreamModeRepr::OnDemand, n),
                Some(StreamMode::Provisioned) | None => (StreamModeRepr::Provisioned, n),
            },
        };
        if self.live_stream(&name, now_ms).is_some() {
            return Err(KinesisError::stream_exists(&name, &self.config.account_id));
        }
        let account = &self.config.account_id;
        validate_new_tags(
            account,
            &name,
            input.tags.iter().map(|t| (&*t.key, &*t.value)),
        )?;
        let tags: BTreeMap<String, String> = input
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect();
        if tags.len() > limits::TAGS_PER_STREAM_MAX {
            return Err(too_many_tags(account, &name));
        }
        let current = self.account_open_shard_count(now_ms);
        if current + u64::from(shard_count) > u64::from(self.config.shard_limit) {
            return Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "This request would exceed the shard limit for the account {account} in {region}. Current shard count for the account: {current}. Limit: {limit}. Number of additional shards that would have resulted from this request: {shard_count}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
                    account = self.config.account_id,
                    region = self.config.region,
                    limit = self.config.shard_limit,
                ),
            ));
        }

        // A gone stream of the same name may still wait for `reap`; keep it under a retired key
        // so that its records are still dropped, and make sure the new incarnation is told apart
        // from it even when both were created in the same millisecond.
        let mut created_ms = now_ms;
        if let Some(old) = self.streams.remove(&name) {
            assert!(old.is_gone(now_ms));
            created_ms = created_ms.max(old.created_ms.saturating_add(1));
            let retired_key = format!(
                "{RETIRED_KEY_PREFIX}{}{RETIRED_KEY_PREFIX}{}",
                old.name, old.created_ms
            );
            self.streams.insert(retired_key, old);
        }

        let created_s = (now_ms / 1000).saturating_sub(SHARD_CREATED_LEAD_S);
        let shards: Vec<Shard> = HashRange::even_split(shard_count)
            .into_iter()
            .zip(0u32..)
            .map(|(hash_range, index)| Shard {
                index,
                parent: None,
                adjacent_parent: None,
                hash_range,
                created_s,
                log_id: log_id(index),
                closed_at_position: None,
            })
            .collect();
        let lifecycle = match self.config.create_delay_ms {
            0 => Lifecycle::Active,
            delay_ms => Lifecycle::Creating {
                active_at_ms: now_ms.saturating_add(delay_ms),
            },
        };
        let stream = Stream {
            name: name.clone(),
            created_ms,
            lifecycle,
            mode,
            retention_period_hours: limits::RETENTION_HOURS_DEFAULT,
            tags,
            shards,
            shard_level_metrics: Vec::new(),
            max_record_size_kib: 1024,
            control: crate::control::StreamControl::default(),
        };
        self.streams.insert(name, stream);
        Ok(())
    }

    pub fn delete_stream(
        &mut self,
        input: DeleteStreamInput,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let gone_at_ms = now_ms.saturating_add(self.config.delete_delay_ms);
        let account = self.config.account_id.clone();
        let stream = self
            .live_stream_mut(&input.stream_name, now_ms)
            .ok_or_else(|| KinesisError::stream_not_found(&input.stream_name, &account))?;
        if stream.control.consumer_count(now_ms) > 0 {
            if !input.enforce_consumer_deletion {
                return Err(crate::consumer::stream_has_consumers(
                    &account,
                    &stream.name,
                ));
            }
            stream.control.deregister_all_consumers(now_ms, gone_at_ms);
        }
        // Deleting again keeps the first deadline, so repeated calls cannot keep a stream alive.
        if !matches!(stream.lifecycle, Lifecycle::Deleting { .. }) {
            stream.lifecycle = Lifecycle::Deleting { gone_at_ms };
        }
        Ok(())
    }

    pub fn describe_stream(
        &self,
        input: DescribeStreamInput,
        now_ms: u64,
    ) -> Result<StreamDescription, KinesisError> {
        let stream = self.found(&input.stream_name, now_ms)?;
        let limit = page_size(input.limit, limits::DESCRIBE_STREAM_SHARDS_MAX);
        // An id that does not parse starts from the beginning, as AWS does.
        let after = input
            .exclusive_start_shard_id
            .as_deref()
            .and_then(parse_shard_id_like_aws);
        let (shards, has_more_shards) = if self.shards_visible(stream, now_ms) {
            let mut remaining = stream
                .shards
                .iter()
                .filter(|shard| after.is_none_or(|after| shard.index > after));
            let page: Vec<ShardDescription> = remaining
                .by_ref()
                .take(limit)
                .map(|shard| stream.describe_shard(shard))
                .collect();
            (page, remaining.next().is_some())
        } else {
            (Vec::new(), false)
        };
        Ok(StreamDescription {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn(&self.config.region, &self.config.account_id),
            stream_status: stream.status(now_ms),
            stream_mode: stream.stream_mode(),
            shards,
            has_more_shards,
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
            shard_level_metrics: stream.shard_level_metrics.clone(),
            encryption_type: stream.control.encryption_type(),
            key_id: stream.control.encryption_key_id.clone(),
        })
    }

    pub fn describe_stream_summary(
        &self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<StreamDescriptionSummary, KinesisError> {
        let stream = self.found(stream_name, now_ms)?;
        // Consistent with DescribeStream, which shows no shards while they are not visible.
        let open_shard_count = if self.shards_visible(stream, now_ms) {
            stream.open_shard_count()
        } else {
            0
        };
        Ok(StreamDescriptionSummary {
            stream_name: stream.name.clone(),
            stream_arn: stream.arn(&self.config.region, &self.config.account_id),
            stream_status: stream.status(now_ms),
            stream_mode: stream.stream_mode(),
            retention_period_hours: stream.retention_period_hours,
            stream_creation_timestamp_ms: stream.created_ms,
            shard_level_metrics: stream.shard_level_metrics.clone(),
            encryption_type: stream.control.encryption_type(),
            key_id: stream.control.encryption_key_id.clone(),
            open_shard_count,
            consumer_count: stream.control.consumer_count(now_ms),
            max_record_size_kib: stream.max_record_size_kib,
        })
    }

    pub fn list_streams(
        &self,
        input: ListStreamsInput,
        now_ms: u64,
    ) -> Result<ListStreamsOutput, KinesisError> {
        let limit = page_size(input.limit, limits::LIST_STREAMS_MAX);
        // A NextToken wins over ExclusiveStartStreamName: it is the newer of the two cursors.
        let after = match &input.next_token {
            Some(token) => Some(
                ListStreamsToken::decode(token, now_ms)
                    .map_err(next_token_error)?
                    .last_stream_name,
            ),
            None => input.exclusive_start_stream_name.clone(),
        };
        let lower = match &after {
            Some(name) => Bound::Excluded(name.as_str()),
            None => Bound::Unbounded,
        };
        let mut remaining = self
            .streams
            .range::<str, _>((lower, Bound::Unbounded))
            .filter(|(key, stream)| **key == stream.name && !stream.is_gone(now_ms))
            .map(|(_, stream)| stream);
        let page: Vec<&Stream> = remaining.by_ref().take(limit).collect();
        let has_more_streams = remaining.next().is_some();
        let next_token = match page.last() {
            Some(last) if has_more_streams => Some(
                ListStreamsToken {
                    issued_ms: now_ms,
                    last_stream_name: last.name.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(ListStreamsOutput {
            stream_names: page.iter().map(|stream| stream.name.clone()).collect(),
            has_more_streams,
            next_token,
            stream_summaries: page
                .iter()
                .map(|stream| StreamSummary {
                    stream_name: stream.name.clone(),
                    stream_arn: stream.arn(&self.config.region, &self.config.account_id),
                    stream_status: stream.status(now_ms),
                    stream_mode: stream.stream_mode(),
                    stream_creation_timestamp_ms: stream.created_ms,
                })
                .collect(),
        })
    }

    pub fn list_shards(
        &self,
        input: ListShardsInput,
        now_ms: u64,
    ) -> Result<ListShardsOutput, KinesisError> {
        let (stream, after, filter) = match (&input.stream_name, &input.next_token) {
            (None, None) => {
                return Err(KinesisError::invalid_argument(
                    "Either NextToken or StreamName should be provided.",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(KinesisError::invalid_argument(
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            (None, Some(token)) => {
                if input.exclusive_start_shard_id.is_some() {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and ExclusiveStartShardId cannot be provided together.",
                    ));
                }
                if input.stream_creation_timestamp_ms.is_some() {
                    return Err(KinesisError::invalid_argument(
                        "NextToken and StreamCreationTimestamp cannot be provided together.",
                    ));
                }
                let token = ListShardsToken::decode(token, now_ms).map_err(next_token_error)?;
                let stream = self.found(&token.stream_name, now_ms)?;
                // The stream was deleted and created again since the first page: the listing
                // the token continues no longer exists, and the client must start over.
                if stream.created_ms != token.stream_created_ms {
                    return Err(KinesisError::new(
                        ErrorKind::ExpiredNextToken,
                        format!(
                            "The NextToken is no longer valid: stream {} under account {} was recreated since it was issued.",
                            stream.name, self.config.account_id
                        ),
                    ));
                }
                (stream, Some(token.last_shard_index), token.shard_filter)
            }
            (Some(stream_name), None) => {
                let stream = self.found(stream_name, now_ms)?;
                // StreamCreationTimestamp names one incarnation; the wire carries seconds, so
                // compare at that precision.
                if let Some(created_ms) = input.stream_creation_timestamp_ms
                    && created_ms / 1000 != stream.created_ms / 1000
                {
                    return Err(self.not_found(stream_name));
                }
                let after = input
                    .exclusive_start_shard_id
                    .as_deref()
                    .and_then(parse_shard_id_like_aws);
                (stream, after, input.shard_filter.clone())
            }
        };
        let status = stream.status(now_ms);
        if !stream.is_readable(now_ms) {
            return Err(KinesisError::stream_not_active(
                &stream.name,
                &self.config.account_id,
                status.as_str(),
            ));
        }
        let limit = page_size(input.max_results, limits::LIST_SHARDS_MAX);
        let mut remaining = stream.shards.iter().filter(|shard| {
            after.is_none_or(|after| shard.index > after)
                // No filter means FROM_TRIM_HORIZON, AWS's default.
                && shard_filter_keeps(
                    stream,
                    shard,
                    filter.as_ref().unwrap_or(&ShardFilter::FromTrimHorizon),
                    now_ms,
                )
        });
        let page: Vec<&Shard> = remaining.by_ref().take(limit).collect();
        let next_token = match page.last() {
            Some(last) if remaining.next().is_some() => Some(
                ListShardsToken {
                    issued_ms: now_ms,
                    stream_name: stream.name.clone(),
                    stream_created_ms: stream.created_ms,
                    last_shard_index: last.index,
                    shard_filter: filter.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(ListShardsOutput {
            shards: page
                .into_iter()
                .map(|shard| stream.describe_shard(shard))
                .collect(),
            next_token,
        })
    }

    /// The stream a tag change applies to: RNF when missing, RIU unless ACTIVE or UPDATING.
    fn stream_for_tag_change(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&mut Stream, KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self
            .live_stream_mut(stream_name, now_ms)
            .ok_or_else(|| KinesisError::stream_not_found(stream_name, &account))?;
        if !stream.is_readable(now_ms) {
            let status = stream.status(now_ms);
            return Err(KinesisError::stream_not_active(
                stream_name,
                &account,
                status.as_str(),
            ));
        }
        Ok(stream)
    }

    pub fn add_tags_to_stream(
        &mut self,
        stream_name: &str,
        tags: Vec<Tag>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self.stream_for_tag_change(stream_name, now_ms)?;
        validate_new_tags(
            &account,
            stream_name,
            tags.iter().map(|t| (&*t.key, &*t.value)),
        )?;
        let added = tags
            .iter()
            .filter(|tag| !stream.tags.contains_key(&tag.key));
        let mut new_keys: Vec<&str> = added.map(|tag| tag.key.as_str()).collect();
        new_keys.sort_unstable();
        new_keys.dedup();
        if stream.tags.len() + new_keys.len() > limits::TAGS_PER_STREAM_MAX {
            return Err(too_many_tags(&account, stream_name));
        }
        for tag in tags {
            stream.tags.insert(tag.key, tag.value);
        }
        Ok(())
    }

    pub fn remove_tags_from_stream(
        &mut self,
        stream_name: &str,
        tag_keys: Vec<String>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self.stream_for_tag_change(stream_name, now_ms)?;
        if tag_keys
            .iter()
            .any(|key| !tag_rules::has_only_tag_characters(key))
        {
            return Err(KinesisError::invalid_argument(
                "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.",
            ));
        }
        if tag_keys.iter().any(|key| tag_rules::contains_percent(key)) {
            return Err(KinesisError::invalid_argument(format!(
                "Failed to remove tags from stream {stream_name} under account {account} because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
            )));
        }
        for key in &tag_keys {
            stream.tags.remove(key);
        }
        Ok(())
    }

    pub fn list_tags_for_stream(
        &self,
        input: ListTagsForStreamInput,
        now_ms: u64,
    ) -> Result<ListTagsForStreamOutput, KinesisError> {
        let stream = self.found(&input.stream_name, now_ms)?;
        let limit = page_size(
            input.limit,
            u32::try_from(limits::TAGS_PER_STREAM_MAX).expect("50 fits u32"),
        );
        let lower = match &input.exclusive_start_tag_key {
            Some(key) => Bound::Excluded(key.as_str()),
            None => Bound::Unbounded,
        };
        let mut remaining = stream.tags.range::<str, _>((lower, Bound::Unbounded));
        let tags: Vec<Tag> = remaining
            .by_ref()
            .take(limit)
            .map(|(key, value)| Tag {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        Ok(ListTagsForStreamOutput {
            tags,
            has_more_tags: remaining.next().is_some(),
        })
    }

    /// The stream a retention change applies to, after the bounds checks every retention call
    /// shares: RNF when missing, RIU unless ACTIVE, IA outside 24..=8760 hours.
    fn stream_for_retention_change(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<&mut Stream, KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self
            .live_stream_mut(stream_name, now_ms)
            .ok_or_else(|| KinesisError::stream_not_found(stream_name, &account))?;
        let status = stream.status(now_ms);
        if status != StreamStatus::Active {
            return Err(KinesisError::stream_not_active(
                stream_name,
                &account,
                status.as_str(),
            ));
        }
        if retention_period_hours < limits::RETENTION_HOURS_MIN {
            return Err(KinesisError::invalid_argument(format!(
                "Minimum allowed retention period is {} hours. Requested retention period ({retention_period_hours} hours) is too short.",
                limits::RETENTION_HOURS_MIN
            )));
        }
        if retention_period_hours > limits::RETENTION_HOURS_MAX {
            return Err(KinesisError::invalid_argument(format!(
                "Maximum allowed retention period is {} hours. Requested retention period ({retention_period_hours} hours) is too long.",
                limits::RETENTION_HOURS_MAX
            )));
        }
        Ok(stream)
    }

    pub fn increase_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let stream =
            self.stream_for_retention_change(stream_name, retention_period_hours, now_ms)?;
        if retention_period_hours < stream.retention_period_hours {
            return Err(KinesisError::invalid_argument(format!(
                "Requested retention period ({retention_period_hours} hours) for stream {stream_name} can not be shorter than existing retention period ({} hours). Use DecreaseRetentionPeriod API.",
                stream.retention_period_hours
            )));
        }
        stream.retention_period_hours = retention_period_hours;
        Ok(())
    }

    pub fn decrease_stream_retention_period(
        &mut self,
        stream_name: &str,
        retention_period_hours: u32,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let stream =
            self.stream_for_retention_change(stream_name, retention_period_hours, now_ms)?;
        if retention_period_hours > stream.retention_period_hours {
            return Err(KinesisError::invalid_argument(format!(
                "Requested retention period ({retention_period_hours} hours) for stream {stream_name} can not be longer than existing retention period ({} hours). Use IncreaseRetentionPeriod API.",
                stream.retention_period_hours
            )));
        }
        stream.retention_period_hours = retention_period_hours;
        Ok(())
    }

    /// The stream a PutRecord(s) writes to: RNF if it does not exist or is still CREATING or
    /// DELETING.
    pub fn stream_for_write(
        &self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&Stream, KinesisError> {
        self.live_stream(stream_name, now_ms)
            .filter(|stream| stream.is_readable(now_ms))
            .ok_or_else(|| self.not_found(stream_name))
    }

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
            .live_stream(stream_name, now_ms)
            .filter(|stream| stream.is_readable(now_ms))
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
            .live_stream(&iterator.stream_name, now_ms)
            .filter(|stream| {
                stream.created_ms == iterator.stream_created_ms && stream.is_readable(now_ms)
            })
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

    /// Removes streams whose DELETING window has passed and returns them.
    pub fn reap(&mut self, now_ms: u64) -> Vec<RemovedStream> {
        let gone: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.is_gone(now_ms))
            .map(|(key, _)| key.clone())
            .collect();
        gone.into_iter()
            .filter_map(|key| self.streams.remove(&key))
            .map(|stream| RemovedStream {
                name: stream.name,
                created_ms: stream.created_ms,
                shards: stream.shards,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;
    const ACCOUNT: &str = "000000000000";

    fn config() -> CatalogConfig {
        CatalogConfig {
            shard_limit: 10,
            ..CatalogConfig::default()
        }
    }

    fn create_input(name: &str, shard_count: Option<u32>) -> CreateStreamInput {
        CreateStreamInput {
            stream_name: name.into(),
            shard_count,
            stream_mode: None,
            tags: Vec::new(),
        }
    }

    fn create(catalog: &mut Catalog, name: &str, shard_count: u32, now_ms: u64) {
        catalog
            .create_stream(
                create_input(name, Some(shard_count)),
                now_ms,
                &mut |index| index,
            )
            .expect("test stream is created");
    }

    /// A catalog holding ACTIVE stream `s` with `shard_count` shards, created at T0.
    fn active_catalog(shard_count: u32) -> (Catalog, u64) {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", shard_count, T0);
        (catalog, T0 + 1_000)
    }

    fn describe(
        catalog: &Catalog,
        name: &str,
        now_ms: u64,
    ) -> Result<StreamDescription, KinesisError> {
        catalog.describe_stream(
            DescribeStreamInput {
                stream_name: name.into(),
                limit: None,
                exclusive_start_shard_id: None,
            },
            now_ms,
        )
    }

    fn delete(catalog: &mut Catalog, name: &str, now_ms: u64) -> Result<(), KinesisError> {
        catalog.delete_stream(
            DeleteStreamInput {
                stream_name: name.into(),
                enforce_consumer_deletion: false,
            },
            now_ms,
        )
    }

    /// Splits shard 0 of `s` the way a reshard would: closes it and adds two children dated
    /// `at_s`.
    fn split_shard_zero(catalog: &mut Catalog, at_s: u64) {
        let stream = catalog.streams.get_mut("s").expect("stream s exists");
        let parent = stream.shards[0].clone();
        let middle = parent.hash_range.starting
            + (parent.hash_range.ending - parent.hash_range.starting) / 2;
        stream.shards[0].closed_at_position = Some(7);
        let next = stream.shards.len() as u32;
        for (offset, range) in [
            HashRange::new(parent.hash_range.starting, middle),
            HashRange::new(middle + 1, parent.hash_range.ending),
        ]
        .into_iter()
        .enumerate()
        {
            stream.shards.push(Shard {
                index: next + offset as u32,
                parent: Some(0),
                adjacent_parent: None,
                hash_range: range,
                created_s: at_s,
                log_id: 0,
                closed_at_position: None,
            });
        }
    }

    fn iterator_input(
        shard_id: &str,
        kind: ShardIteratorType,
        sequence: Option<&str>,
    ) -> GetShardIteratorInput {
        GetShardIteratorInput {
            stream_name: "s".into(),
            shard_id: shard_id.into(),
            shard_iterator_type: kind,
            starting_sequence_number: sequence.map(str::to_owned),
            timestamp_ms: None,
        }
    }

    fn list_shards_input(stream_name: Option<&str>, next_token: Option<String>) -> ListShardsInput {
        ListShardsInput {
            stream_name: stream_name.map(str::to_owned),
            next_token,
            exclusive_start_shard_id: None,
            max_results: None,
            stream_creation_timestamp_ms: None,
            shard_filter: None,
        }
    }

    fn shard_ids(shards: &[ShardDescription]) -> Vec<String> {
        shards.iter().map(|shard| shard.shard_id.clone()).collect()
    }

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
    fn create_stream_splits_the_hash_space_evenly_and_dates_shards_two_seconds_early() {
        let mut catalog = Catalog::new(config());
        let mut placed = Vec::new();
        catalog
            .create_stream(create_input("s", Some(3)), T0 + 999, &mut |index| {
                placed.push(index);
                index + 100
            })
            .expect("created");
        assert_eq!(placed, vec![0, 1, 2]);
        let stream = &catalog.streams["s"];
        assert_eq!(
            stream.shards.iter().map(|s| s.log_id).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
        assert_eq!(
            stream
                .shards
                .iter()
                .map(|s| s.hash_range)
                .collect::<Vec<_>>(),
            HashRange::even_split(3)
        );
        assert!(stream.shards.iter().all(|s| s.created_s == T0 / 1000 - 2));
        assert_eq!(stream.created_ms, T0 + 999);
        assert_eq!(stream.retention_period_hours, 24);
        assert_eq!(stream.max_record_size_kib, 1024);
        assert_eq!(stream.mode, StreamModeRepr::Provisioned);
    }

    #[test]
    fn create_stream_without_a_shard_count_makes_an_on_demand_stream_of_four_shards() {
        let mut catalog = Catalog::new(config());
        catalog
            .create_stream(create_input("s", None), T0, &mut |i| i)
            .expect("created");
        assert_eq!(catalog.streams["s"].mode, StreamModeRepr::OnDemand);
        assert_eq!(catalog.streams["s"].open_shard_count(), 4);
    }

    #[test]
    fn create_stream_refuses_a_name_in_use_even_while_it_is_deleting() {
        let (mut catalog, now) = active_catalog(1);
        let error = catalog.create_stream(create_input("s", Some(1)), now, &mut |i| i);
        assert_eq!(error, Err(KinesisError::stream_exists("s", ACCOUNT)));
        delete(&mut catalog, "s", now).expect("deleted");
        let error = catalog.create_stream(create_input("s", Some(1)), now + 100, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::ResourceInUse));
    }

    #[test]
    fn create_stream_over_the_shard_limit_gives_the_exact_aws_message() {
        let (mut catalog, now) = active_catalog(3);
        let error = catalog
            .create_stream(create_input("t", Some(1000)), now, &mut |i| i)
            .expect_err("over the limit");
        assert_eq!(error.kind, ErrorKind::LimitExceeded);
        assert_eq!(
            error.message,
            "This request would exceed the shard limit for the account 000000000000 in us-east-1. Current shard count for the account: 3. Limit: 10. Number of additional shards that would have resulted from this request: 1000. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits."
        );
        let error = catalog.create_stream(create_input("t", Some(100_000)), now, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::LimitExceeded));
        create(&mut catalog, "t", 7, now);
    }

    #[test]
    fn create_stream_rechecks_the_name_and_shard_count_rules() {
        let mut catalog = Catalog::new(config());
        for (name, count) in [
            ("", Some(1)),
            ("a/b", Some(1)),
            (&*"a".repeat(129), Some(1)),
            ("ok", Some(0)),
        ] {
            let error = catalog.create_stream(create_input(name, count), T0, &mut |i| i);
            assert_eq!(
                error.map_err(|e| e.kind),
                Err(ErrorKind::Validation),
                "{name:?}"
            );
        }
        assert!(catalog.streams.is_empty());
    }

    #[test]
    fn create_stream_refuses_reserved_tag_keys_and_more_than_fifty_tags() {
        let mut catalog = Catalog::new(config());
        let mut input = create_input("s", Some(1));
        input.tags = vec![Tag {
            key: "aws:owner".into(),
            value: "x".into(),
        }];
        let error = catalog.create_stream(input, T0, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        let mut input = create_input("s", Some(1));
        input.tags = (0..51)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        let error = catalog.create_stream(input, T0, &mut |i| i);
        assert_eq!(error.map_err(|e| e.kind), Err(ErrorKind::InvalidArgument));
        let mut input = create_input("s", Some(1));
        input.tags = (0..50)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        catalog
            .create_stream(input, T0, &mut |i| i)
            .expect("fifty tags are allowed");
        assert_eq!(catalog.streams["s"].tags.len(), 50);
    }

    #[test]
    fn describe_stream_shows_no_shards_while_creating_and_all_once_active() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 3, T0);
        let creating = describe(&catalog, "s", T0 + 1).expect("described");
        assert_eq!(creating.stream_status, StreamStatus::Creating);
        assert!(creating.shards.is_empty());
        assert!(!creating.has_more_shards);
        let active = describe(&catalog, "s", T0 + 500).expect("described");
        assert_eq!(active.stream_status, StreamStatus::Active);
        assert_eq!(
            shard_ids(&active.shards),
            vec![
                "shardId-000000000000",
                "shardId-000000000001",
                "shardId-000000000002"
            ]
        );
        assert_eq!(
            active.stream_arn,
            "arn:aws:kinesis:us-east-1:000000000000:stream/s"
        );
        assert_eq!(active.retention_period_hours, 24);
        assert_eq!(active.encryption_type, EncryptionType::None);
        assert!(active.shard_level_metrics.is_empty());
        assert_eq!(active.stream_creation_timestamp_ms, T0);
    }

    #[test]
    fn describe_stream_sequence_ranges_use_the_shard_creation_time_and_index() {
        let (mut catalog, now) = active_catalog(2);
        split_shard_zero(&mut catalog, T0 / 1000 + 60);
        let description = describe(&catalog, "s", now).expect("described");
        let created_s = T0 / 1000 - 2;
        let start =
            SequenceNumber::parse(&description.shards[1].starting_sequence_number).expect("ours");
        assert_eq!(start, SequenceNumber::new(created_s, 1, 0, created_s));
        assert_eq!(description.shards[1].ending_sequence_number, None);
        let end = description.shards[0]
            .ending_sequence_number
            .as_deref()
            .expect("shard 0 is closed");
        let end = SequenceNumber::parse(end).expect("ours");
        // The children are dated one second after the parent's last second, as AWS does.
        assert_eq!(
            end,
            SequenceNumber::new(created_s, 0, sequence_number::POSITION_MAX, T0 / 1000 + 59)
        );
        assert_eq!(
            description.shards[2].parent_shard_id.as_deref(),
            Some("shardId-000000000000")
        );
    }

    #[test]
    fn describe_stream_pages_after_the_exclusive_start_shard_id() {
        let (catalog, now) = active_catalog(5);
        let page = catalog
            .describe_stream(
                DescribeStreamInput {
                    stream_name: "s".into(),
                    limit: Some(2),
                    exclusive_start_shard_id: Some("shardId-000000000001".into()),
                },
                now,
            )
            .expect("described");
        assert_eq!(
            shard_ids(&page.shards),
            vec!["shardId-000000000002", "shardId-000000000003"]
        );
        assert!(page.has_more_shards);
        let from_start = catalog
            .describe_stream(
                DescribeStreamInput {
                    stream_name: "s".into(),
                    limit: Some(10_000),
                    exclusive_start_shard_id: Some("not a shard".into()),
                },
                now,
            )
            .expect("described");
        assert_eq!(from_start.shards.len(), 5);
        assert!(!from_start.has_more_shards);
    }

    #[test]
    fn describe_stream_of_a_missing_stream_is_not_found() {
        let catalog = Catalog::new(config());
        assert_eq!(
            describe(&catalog, "nope", T0),
            Err(KinesisError::stream_not_found("nope", ACCOUNT))
        );
    }

    #[test]
    fn a_stream_deleted_while_creating_shows_deleting_with_no_shards() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        delete(&mut catalog, "s", T0 + 10).expect("deleted");
        let description = describe(&catalog, "s", T0 + 20).expect("still visible");
        assert_eq!(description.stream_status, StreamStatus::Deleting);
        assert!(description.shards.is_empty());
    }

    #[test]
    fn a_stream_deleted_after_becoming_active_still_shows_its_shards_while_deleting() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let description = describe(&catalog, "s", now + 1).expect("still visible");
        assert_eq!(description.stream_status, StreamStatus::Deleting);
        assert_eq!(description.shards.len(), 2);
    }

    #[test]
    fn a_deleted_stream_is_absent_after_its_window_even_before_reap() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let gone = now + 500;
        assert_eq!(
            describe(&catalog, "s", gone),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
        assert_eq!(
            delete(&mut catalog, "s", gone),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
        let listed = catalog
            .list_streams(
                ListStreamsInput {
                    limit: None,
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                gone,
            )
            .expect("listed");
        assert!(listed.stream_names.is_empty());
        assert_eq!(catalog.account_open_shard_count(gone), 0);
        assert!(catalog.reap(gone - 1).is_empty());
        let removed = catalog.reap(gone);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].name, "s");
        assert_eq!(removed[0].shards.len(), 2);
        assert!(catalog.reap(gone).is_empty());
        assert!(catalog.streams.is_empty());
    }

    #[test]
    fn deleting_twice_keeps_the_first_deadline() {
        let (mut catalog, now) = active_catalog(1);
        delete(&mut catalog, "s", now).expect("deleted");
        delete(&mut catalog, "s", now + 400).expect("deleting again is accepted");
        assert_eq!(
            catalog.streams["s"].lifecycle,
            Lifecycle::Deleting {
                gone_at_ms: now + 500
            }
        );
    }

    #[test]
    fn a_name_can_be_reused_after_deletion_and_reap_still_returns_the_old_stream() {
        let (mut catalog, now) = active_catalog(2);
        delete(&mut catalog, "s", now).expect("deleted");
        let later = now + 500;
        create(&mut catalog, "s", 1, later);
        assert_eq!(
            catalog.live_stream("s", later).map(|s| s.shards.len()),
            Some(1)
        );
        let listed = catalog
            .list_streams(
                ListStreamsInput {
                    limit: None,
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                later,
            )
            .expect("listed");
        assert_eq!(listed.stream_names, vec!["s"]);
        let removed = catalog.reap(later);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].shards.len(), 2);
        assert_eq!(removed[0].created_ms, T0);
        assert_eq!(catalog.streams.keys().collect::<Vec<_>>(), vec!["s"]);
    }

    #[test]
    fn describe_stream_summary_counts_open_shards() {
        let (mut catalog, now) = active_catalog(3);
        split_shard_zero(&mut catalog, T0 / 1000);
        let summary = catalog
            .describe_stream_summary("s", now)
            .expect("described");
        assert_eq!(summary.open_shard_count, 4);
        assert_eq!(summary.consumer_count, 0);
        assert_eq!(summary.max_record_size_kib, 1024);
        assert_eq!(summary.stream_mode, StreamMode::Provisioned);
        assert_eq!(
            catalog.describe_stream_summary("x", now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn list_streams_pages_with_next_tokens_that_expire() {
        let mut catalog = Catalog::new(config());
        for name in ["c", "a", "b"] {
            create(&mut catalog, name, 1, T0);
        }
        let first = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(2),
                    exclusive_start_stream_name: None,
                    next_token: None,
                },
                T0,
            )
            .expect("listed");
        assert_eq!(first.stream_names, vec!["a", "b"]);
        assert!(first.has_more_streams);
        assert_eq!(first.stream_summaries[1].stream_name, "b");
        assert_eq!(
            first.stream_summaries[1].stream_status,
            StreamStatus::Creating
        );
        let token = first.next_token.expect("more pages");
        let second = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(2),
                    exclusive_start_stream_name: None,
                    next_token: Some(token.clone()),
                },
                T0 + 1,
            )
            .expect("listed");
        assert_eq!(second.stream_names, vec!["c"]);
        assert!(!second.has_more_streams);
        assert_eq!(second.next_token, None);
        let expired = catalog.list_streams(
            ListStreamsInput {
                limit: None,
                exclusive_start_stream_name: None,
                next_token: Some(token),
            },
            T0 + limits::NEXT_TOKEN_TTL_MS + 1,
        );
        assert_eq!(
            expired.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );
        let malformed = catalog.list_streams(
            ListStreamsInput {
                limit: None,
                exclusive_start_stream_name: None,
                next_token: Some("abc".into()),
            },
            T0,
        );
        assert_eq!(
            malformed.map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        let after_a = catalog
            .list_streams(
                ListStreamsInput {
                    limit: Some(1),
                    exclusive_start_stream_name: Some("a".into()),
                    next_token: None,
                },
                T0,
            )
            .expect("listed");
        assert_eq!(after_a.stream_names, vec!["b"]);
        assert!(after_a.has_more_streams);
    }

    #[test]
    fn list_shards_refuses_argument_mixes_with_aws_texts() {
        let (catalog, now) = active_catalog(2);
        let neither = catalog
            .list_shards(list_shards_input(None, None), now)
            .expect_err("refused");
        assert_eq!(
            neither.message,
            "Either NextToken or StreamName should be provided."
        );
        let both = catalog
            .list_shards(list_shards_input(Some("s"), Some("x".into())), now)
            .expect_err("refused");
        assert_eq!(
            both.message,
            "NextToken and StreamName cannot be provided together."
        );
        assert_eq!(both.kind, ErrorKind::InvalidArgument);
    }

    #[test]
    fn list_shards_needs_an_active_stream() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 2, T0);
        let error = catalog
            .list_shards(list_shards_input(Some("s"), None), T0)
            .expect_err("creating");
        assert_eq!(
            error,
            KinesisError::stream_not_active("s", ACCOUNT, "CREATING")
        );
        let error = catalog
            .list_shards(list_shards_input(Some("t"), None), T0)
            .expect_err("missing");
        assert_eq!(error, KinesisError::stream_not_found("t", ACCOUNT));
    }

    #[test]
    fn list_shards_pages_with_a_next_token_that_keeps_the_filter() {
        let (mut catalog, now) = active_catalog(3);
        split_shard_zero(&mut catalog, T0 / 1000 + 100);
        let mut input = list_shards_input(Some("s"), None);
        input.max_results = Some(2);
        input.shard_filter = Some(ShardFilter::AtLatest);
        let first = catalog.list_shards(input, now).expect("listed");
        assert_eq!(
            shard_ids(&first.shards),
            vec!["shardId-000000000001", "shardId-000000000002"]
        );
        let token = first.next_token.expect("more shards");
        let second = catalog
            .list_shards(list_shards_input(None, Some(token.clone())), now)
            .expect("listed");
        assert_eq!(
            shard_ids(&second.shards),
            vec!["shardId-000000000003", "shardId-000000000004"]
        );
        assert_eq!(second.next_token, None);

        let mut with_start = list_shards_input(None, Some(token.clone()));
        with_start.exclusive_start_shard_id = Some("shardId-0".into());
        assert_eq!(
            catalog.list_shards(with_start, now).map_err(|e| e.message),
            Err("NextToken and ExclusiveStartShardId cannot be provided together.".into())
        );
        let expired =
            catalog.list_shards(list_shards_input(None, Some(token.clone())), now + 300_001);
        assert_eq!(
            expired.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );

        delete(&mut catalog, "s", now).expect("deleted");
        let recreated_at = now + 500;
        create(&mut catalog, "s", 3, recreated_at);
        let recreated =
            catalog.list_shards(list_shards_input(None, Some(token)), recreated_at + 500);
        assert_eq!(
            recreated.map_err(|e| e.kind),
            Err(ErrorKind::ExpiredNextToken)
        );
    }

    #[test]
    fn list_shards_filters_select_shards_by_state_and_time() {
        let (mut catalog, now) = active_catalog(2);
        let split_s = T0 / 1000 + 100;
        split_shard_zero(&mut catalog, split_s);
        let list = |filter: ShardFilter| {
            let mut input = list_shards_input(Some("s"), None);
            input.shard_filter = Some(filter);
            shard_ids(&catalog.list_shards(input, now).expect("listed").shards)
        };
        let all = vec![
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003",
        ];
        // The trim horizon (24 hours back) predates the stream: the shards open at its start.
        assert_eq!(list(ShardFilter::AtTrimHorizon), all[..2].to_vec());
        assert_eq!(list(ShardFilter::FromTrimHorizon), all);
        assert_eq!(list(ShardFilter::AtLatest), all[1..].to_vec());
        assert_eq!(
            list(ShardFilter::AfterShardId("shardId-000000000001".into())),
            all[2..].to_vec()
        );
        assert_eq!(
            list(ShardFilter::AtTimestamp(split_s * 1000 - 1)),
            all[..2].to_vec()
        );
        assert_eq!(list(ShardFilter::AtTimestamp(0)), all[..2].to_vec());
        assert_eq!(
            list(ShardFilter::AtTimestamp(split_s * 1000 + 1)),
            all[1..].to_vec()
        );
        assert_eq!(
            list(ShardFilter::FromTimestamp(split_s * 1000 + 1)),
            all[1..].to_vec()
        );
        assert_eq!(list(ShardFilter::FromTimestamp(split_s * 1000)), all);
    }

    #[test]
    fn list_shards_checks_the_stream_creation_timestamp() {
        let (catalog, now) = active_catalog(1);
        let mut input = list_shards_input(Some("s"), None);
        input.stream_creation_timestamp_ms = Some(T0 - 5_000);
        assert_eq!(
            catalog.list_shards(input.clone(), now).map_err(|e| e.kind),
            Err(ErrorKind::ResourceNotFound)
        );
        input.stream_creation_timestamp_ms = Some(T0);
        assert_eq!(
            catalog.list_shards(input, now).map(|o| o.shards.len()),
            Ok(1)
        );
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
        assert_eq!(stream.open_shard_count(), 3);
        assert_eq!(stream.shard(3).map(|s| s.index), Some(3));
        assert_eq!(stream.shard(4), None);
    }

    #[test]
    fn tags_are_added_listed_in_key_order_and_removed() {
        let (mut catalog, now) = active_catalog(1);
        let tags = [("b", "2"), ("a", "1"), ("ü0 _.", "x"), ("c", "")]
            .map(|(key, value)| Tag {
                key: key.into(),
                value: value.into(),
            })
            .to_vec();
        catalog.add_tags_to_stream("s", tags, now).expect("added");
        let list = |catalog: &Catalog, start: Option<&str>, limit: Option<u32>| {
            catalog
                .list_tags_for_stream(
                    ListTagsForStreamInput {
                        stream_name: "s".into(),
                        exclusive_start_tag_key: start.map(str::to_owned),
                        limit,
                    },
                    now,
                )
                .expect("listed")
        };
        let all = list(&catalog, None, None);
        assert_eq!(
            all.tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "b", "c", "ü0 _."]
        );
        assert!(!all.has_more_tags);
        let page = list(&catalog, Some("a"), Some(2));
        assert_eq!(
            page.tags,
            vec![
                Tag {
                    key: "b".into(),
                    value: "2".into()
                },
                Tag {
                    key: "c".into(),
                    value: String::new()
                }
            ]
        );
        assert!(page.has_more_tags);
        catalog
            .remove_tags_from_stream("s", vec!["a".into(), "zz".into()], now)
            .expect("removed");
        assert_eq!(list(&catalog, None, None).tags.len(), 3);
    }

    #[test]
    fn tag_changes_refuse_bad_characters_and_more_than_fifty_tags_with_aws_texts() {
        let (mut catalog, now) = active_catalog(1);
        let tag = |key: &str, value: &str| {
            vec![Tag {
                key: key.into(),
                value: value.into(),
            }]
        };
        let error = catalog
            .add_tags_to_stream("s", tag("abc;def", "1"), now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
        );
        let error = catalog
            .add_tags_to_stream("s", tag("a", "abc%def"), now)
            .expect_err("refused");
        assert_eq!(
            error.message,
            "Failed to add tags to stream s under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
        );
        let error = catalog
            .remove_tags_from_stream("s", vec!["abc%def".into()], now)
            .expect_err("refused");
        assert!(
            error
                .message
                .starts_with("Failed to remove tags from stream s under account 000000000000")
        );
        let forty: Vec<Tag> = (0..40)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        catalog
            .add_tags_to_stream("s", forty.clone(), now)
            .expect("forty fit");
        catalog
            .add_tags_to_stream("s", forty, now)
            .expect("re-adding existing keys adds nothing");
        let eleven: Vec<Tag> = (0..11)
            .map(|i| Tag {
                key: format!("n{i}"),
                value: String::new(),
            })
            .collect();
        let error = catalog
            .add_tags_to_stream("s", eleven, now)
            .expect_err("fifty-one");
        assert_eq!(
            error.message,
            "Failed to add tags to stream s under account 000000000000 because a given stream cannot have more than 50 tags associated with it."
        );
        assert_eq!(
            catalog.add_tags_to_stream("x", tag("a", "b"), now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn tag_changes_need_an_active_or_updating_stream() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        let error = catalog.add_tags_to_stream(
            "s",
            vec![Tag {
                key: "a".into(),
                value: "b".into(),
            }],
            T0,
        );
        assert_eq!(
            error,
            Err(KinesisError::stream_not_active("s", ACCOUNT, "CREATING"))
        );
        let error = catalog.remove_tags_from_stream("s", vec!["a".into()], T0);
        assert_eq!(
            error,
            Err(KinesisError::stream_not_active("s", ACCOUNT, "CREATING"))
        );
    }

    #[test]
    fn retention_changes_use_the_exact_aws_texts() {
        let (mut catalog, now) = active_catalog(1);
        let message = |r: Result<(), KinesisError>| r.map_err(|e| e.message);
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 23, now)),
            Err("Minimum allowed retention period is 24 hours. Requested retention period (23 hours) is too short.".into())
        );
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 8761, now)),
            Err("Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long.".into())
        );
        assert_eq!(
            message(catalog.decrease_stream_retention_period("s", 25, now)),
            Err("Requested retention period (25 hours) for stream s can not be longer than existing retention period (24 hours). Use IncreaseRetentionPeriod API.".into())
        );
        catalog
            .increase_stream_retention_period("s", 25, now)
            .expect("increased");
        catalog
            .increase_stream_retention_period("s", 25, now)
            .expect("same value is fine");
        assert_eq!(
            message(catalog.increase_stream_retention_period("s", 24, now)),
            Err("Requested retention period (24 hours) for stream s can not be shorter than existing retention period (25 hours). Use DecreaseRetentionPeriod API.".into())
        );
        catalog
            .decrease_stream_retention_period("s", 24, now)
            .expect("decreased");
        assert_eq!(catalog.streams["s"].retention_period_hours, 24);
        assert_eq!(
            catalog.increase_stream_retention_period("x", 25, now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
        create(&mut catalog, "t", 1, now);
        assert_eq!(
            catalog.increase_stream_retention_period("t", 25, now),
            Err(KinesisError::stream_not_active("t", ACCOUNT, "CREATING"))
        );
    }

    #[test]
    fn writes_see_a_creating_or_deleting_stream_as_not_found() {
        let mut catalog = Catalog::new(config());
        create(&mut catalog, "s", 1, T0);
        assert_eq!(
            catalog.stream_for_write("s", T0).map(|_| ()),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
        assert_eq!(
            catalog
                .stream_for_write("s", T0 + 500)
                .map(|s| s.name.as_str()),
            Ok("s")
        );
        delete(&mut catalog, "s", T0 + 600).expect("deleted");
        assert_eq!(
            catalog.stream_for_write("s", T0 + 601).map(|_| ()),
            Err(KinesisError::stream_not_found("s", ACCOUNT))
        );
    }

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

    #[test]
    fn shard_ids_parse_as_leniently_as_aws() {
        assert_eq!(parse_shard_id_like_aws("shardId-000000000001"), Some(1));
        assert_eq!(parse_shard_id_like_aws("shard-0"), Some(0));
        assert_eq!(
            parse_shard_id_like_aws("-00002147483647"),
            Some(2_147_483_647)
        );
        assert_eq!(parse_shard_id_like_aws("7"), Some(7));
        assert_eq!(parse_shard_id_like_aws("2147483648"), None);
        assert_eq!(parse_shard_id_like_aws("2.14E4"), None);
        assert_eq!(parse_shard_id_like_aws("a-b-1"), None);
        assert_eq!(parse_shard_id_like_aws("shardId-"), None);
    }

    #[test]
    fn the_catalog_round_trips_through_json_with_full_width_hash_keys() {
        let (mut catalog, now) = active_catalog(3);
        split_shard_zero(&mut catalog, T0 / 1000 + 5);
        catalog
            .add_tags_to_stream(
                "s",
                vec![Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
                now,
            )
            .expect("tagged");
        create(&mut catalog, "t", 1, now);
        delete(&mut catalog, "t", now).expect("deleted");
        let json = serde_json::to_string(&catalog).expect("a catalog serializes");
        let back: Catalog = serde_json::from_str(&json).expect("a serialized catalog parses");
        assert_eq!(back, catalog);
        assert_eq!(back.streams["s"].shards[2].hash_range.ending, u128::MAX);
        assert!(json.contains(&u128::MAX.to_string()));
    }

    proptest! {
        #[test]
        fn list_streams_paging_visits_every_stream_exactly_once(
            names in proptest::collection::btree_set("[a-z0-9]{1,6}", 0..40),
            page in 1u32..12,
        ) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            for name in &names {
                create(&mut catalog, name, 1, T0);
            }
            let mut seen = Vec::new();
            let mut next_token = None;
            loop {
                let out = catalog
                    .list_streams(ListStreamsInput { limit: Some(page), exclusive_start_stream_name: None, next_token: next_token.take() }, T0)
                    .expect("listed");
                prop_assert!(out.stream_names.len() <= page as usize);
                prop_assert_eq!(out.stream_summaries.len(), out.stream_names.len());
                prop_assert_eq!(out.has_more_streams, out.next_token.is_some());
                seen.extend(out.stream_names);
                match out.next_token {
                    Some(token) => next_token = Some(token),
                    None => break,
                }
            }
            prop_assert_eq!(seen, names.into_iter().collect::<Vec<_>>());
        }

        #[test]
        fn describe_stream_paging_covers_all_shards_in_order(shard_count in 1u32..250, page in 1u32..120) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            create(&mut catalog, "s", shard_count, T0);
            let now = T0 + 1_000;
            let mut seen: Vec<String> = Vec::new();
            let mut start = None;
            loop {
                let out = catalog
                    .describe_stream(DescribeStreamInput { stream_name: "s".into(), limit: Some(page), exclusive_start_shard_id: start.take() }, now)
                    .expect("described");
                prop_assert!(out.shards.len() <= page.min(100) as usize);
                seen.extend(shard_ids(&out.shards));
                if !out.has_more_shards {
                    break;
                }
                start = seen.last().cloned();
            }
            let expected: Vec<String> = (0..shard_count).map(format_shard_id).collect();
            prop_assert_eq!(seen, expected);
        }

        #[test]
        fn list_shards_paging_covers_all_shards_in_order(shard_count in 1u32..60, page in 1u32..20) {
            let mut catalog = Catalog::new(CatalogConfig { shard_limit: 1_000, ..config() });
            create(&mut catalog, "s", shard_count, T0);
            let now = T0 + 1_000;
            let mut input = list_shards_input(Some("s"), None);
            input.max_results = Some(page);
            let mut seen = Vec::new();
            loop {
                let out = catalog.list_shards(input, now).expect("listed");
                seen.extend(shard_ids(&out.shards));
                match out.next_token {
                    Some(token) => {
                        input = list_shards_input(None, Some(token));
                        input.max_results = Some(page);
                    }
                    None => break,
                }
            }
            let expected: Vec<String> = (0..shard_count).map(format_shard_id).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
