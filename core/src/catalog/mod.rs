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
//!
//! `Catalog` is one state machine answering some forty calls, so its `impl` is spread over
//! modules by responsibility rather than held in one file: stream lifecycle (`lifecycle`),
//! Describe and List calls (`descriptions`), tags (`tags`), retention (`retention`) and shard
//! iterators (`shard_iterators`); consumers, reshards, stream settings and resource policies
//! are in the crate's `consumer`, `reshard`, `control` and `resource` modules. The fields, the
//! lookups every call shares and the invariants above are defined here only. The persisted types
//! are `Catalog`, `CatalogConfig`, those in `stream` and the control-plane state in `control`.

mod descriptions;
mod lifecycle;
mod retention;
mod shard_ids;
mod shard_iterators;
mod stream;
mod tags;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, KinesisError};
use crate::limits;
use crate::next_token::NextTokenError;

pub use shard_ids::{parse_shard_id_like_aws, shard_id_as_encoded};
pub use shard_iterators::StartingPoint;
pub use stream::{HashRouter, Lifecycle, Shard, Stream, StreamModeRepr};
pub(crate) use tags::validate_consumer_tags;

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

pub(crate) fn validation_error(message: String) -> KinesisError {
    KinesisError::new(
        ErrorKind::Validation,
        format!("1 validation error detected: {message}"),
    )
}

/// One model-constraint violation in AWS's words: `1 validation error detected: Value '<value>'
/// at '<member>' failed to satisfy constraint: <constraint>`.
pub(crate) fn constraint_violation(
    value: impl Display,
    member: &str,
    constraint: &str,
) -> KinesisError {
    validation_error(format!(
        "Value '{value}' at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

/// Whether `name` matches the model's pattern for stream and consumer names, `[a-zA-Z0-9_.-]+`.
pub(crate) fn is_name_pattern(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The model's rule for stream and consumer names (`[a-zA-Z0-9_.-]+`, 1..=128), with `member`
/// naming the field in AWS's text. Re-checked here because a longer or stranger name would break
/// the iterator and token encodings.
pub(crate) fn validate_name(name: &str, member: &str) -> Result<(), KinesisError> {
    let refused = |constraint: &str| Err(constraint_violation(name, member, constraint));
    if name.is_empty() {
        return refused("Member must have length greater than or equal to 1");
    }
    if name.len() > limits::STREAM_NAME_CHARS_MAX {
        return refused(&format!(
            "Member must have length less than or equal to {}",
            limits::STREAM_NAME_CHARS_MAX
        ));
    }
    if !is_name_pattern(name) {
        return refused("Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
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

/// The keys of an ordered map after `after` (exclusive), or all of them: where a listing that
/// continues from an ExclusiveStart* key resumes.
pub(crate) fn keys_after(after: Option<&str>) -> (Bound<&str>, Bound<&str>) {
    let lower = match after {
        Some(key) => Bound::Excluded(key),
        None => Bound::Unbounded,
    };
    (lower, Bound::Unbounded)
}

/// The first `limit` items and whether any are left: one page of a paged listing.
pub(crate) fn take_page<T>(items: impl Iterator<Item = T>, limit: usize) -> (Vec<T>, bool) {
    let mut items = items.peekable();
    let page: Vec<T> = items.by_ref().take(limit).collect();
    let has_more = items.peek().is_some();
    (page, has_more)
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
            .filter(|stream| stream.is_live_as(stream_name, now_ms))
    }

    pub(crate) fn live_stream_mut(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Option<&mut Stream> {
        self.streams
            .get_mut(stream_name)
            .filter(|stream| stream.is_live_as(stream_name, now_ms))
    }

    fn not_found(&self, stream_name: &str) -> KinesisError {
        KinesisError::stream_not_found(stream_name, &self.config.account_id)
    }

    /// The live stream called `stream_name`, or ResourceNotFoundException.
    pub(crate) fn found(&self, stream_name: &str, now_ms: u64) -> Result<&Stream, KinesisError> {
        self.live_stream(stream_name, now_ms)
            .ok_or_else(|| self.not_found(stream_name))
    }

    /// The live stream called `stream_name` to change, or ResourceNotFoundException.
    pub(crate) fn found_mut(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&mut Stream, KinesisError> {
        // Borrowing the fields apart lets the error name the account while the stream is
        // borrowed mutably.
        let Self {
            config, streams, ..
        } = self;
        streams
            .get_mut(stream_name)
            .filter(|stream| stream.is_live_as(stream_name, now_ms))
            .ok_or_else(|| KinesisError::stream_not_found(stream_name, &config.account_id))
    }

    /// The live stream called `stream_name` for a control-plane change: ResourceNotFoundException
    /// when missing, ResourceInUseException unless ACTIVE.
    pub(crate) fn found_active_mut(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&mut Stream, KinesisError> {
        self.found_mut_passing(stream_name, now_ms, Stream::check_active)
    }

    /// The live stream called `stream_name` to change while its shards stay readable (tags,
    /// consumers): ResourceNotFoundException when missing, ResourceInUseException unless ACTIVE
    /// or UPDATING.
    pub(crate) fn found_readable_mut(
        &mut self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&mut Stream, KinesisError> {
        self.found_mut_passing(stream_name, now_ms, Stream::check_readable)
    }

    /// `found_mut`, then `check` (given the account its error names).
    fn found_mut_passing(
        &mut self,
        stream_name: &str,
        now_ms: u64,
        check: fn(&Stream, &str, u64) -> Result<(), KinesisError>,
    ) -> Result<&mut Stream, KinesisError> {
        let account = self.config.account_id.clone();
        let stream = self.found_mut(stream_name, now_ms)?;
        check(stream, &account, now_ms)?;
        Ok(stream)
    }

    /// The stream called `stream_name` if it is ACTIVE or UPDATING, the states in which its
    /// shards can be written and read.
    pub(crate) fn readable_stream(&self, stream_name: &str, now_ms: u64) -> Option<&Stream> {
        self.live_stream(stream_name, now_ms)
            .filter(|stream| stream.is_readable(now_ms))
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

    /// LimitExceededException when `additional` more open shards would take the account past
    /// its shard limit: the check of CreateStream, SplitShard and UpdateShardCount.
    pub(crate) fn check_account_shard_limit(
        &self,
        additional: u64,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let current = self.account_open_shard_count(now_ms);
        if current + additional <= u64::from(self.config.shard_limit) {
            return Ok(());
        }
        Err(KinesisError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {account} in {region}. Current shard count for the account: {current}. Limit: {limit}. Number of additional shards that would have resulted from this request: {additional}. Refer to the AWS Service Limits page (http://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
                account = self.config.account_id,
                region = self.config.region,
                limit = self.config.shard_limit,
            ),
        ))
    }

    /// The stream a PutRecord(s) writes to: RNF if it does not exist or is still CREATING or
    /// DELETING.
    pub fn stream_for_write(
        &self,
        stream_name: &str,
        now_ms: u64,
    ) -> Result<&Stream, KinesisError> {
        self.readable_stream(stream_name, now_ms)
            .ok_or_else(|| self.not_found(stream_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Tag;
    use crate::catalog::test_support::*;

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
}
