//! Enhanced fan-out consumers as catalog state: RegisterStreamConsumer,
//! DeregisterStreamConsumer, DescribeStreamConsumer and ListStreamConsumers. Delivery
//! (SubscribeToShard) is storage's and the protocols' job; [`Catalog::consumer_for_subscribe`]
//! is its entry check.
//!
//! Invariants:
//! - A consumer's ARN is `<stream ARN>/consumer/<name>:<creation epoch seconds>`, so a consumer
//!   registered again under the same name after deregistration has a different ARN.
//! - A consumer goes CREATING → ACTIVE after `create_delay_ms` and DELETING → gone after
//!   `delete_delay_ms`, computed from `now_ms` like streams. Gone consumers are invisible
//!   everywhere and are pruned on the stream's next consumer change.
//! - Within a stream, at most one consumer that is not gone has a given name.
//!
//! ListStreamConsumers tokens (base64, little-endian), in the family of `next_token`'s:
//! `"SNT" | kind u8 = 3 | issued_ms u64 | stream_created_ms u64 | last consumer name (u16 length
//! + UTF-8) | CRC32C u32` over everything before it.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::api::Tag;
use crate::catalog::{
    Catalog, Stream, is_name_pattern, next_token_error, page_size, take_page, validate_name,
};
use crate::error::{ErrorKind, KinesisError};
use crate::limits::NEXT_TOKEN_TTL_MS;
use crate::next_token::NextTokenError;

/// Consumers a stream may have at once.
pub const CONSUMERS_PER_STREAM_MAX: usize = 20;
/// Consumers of one stream that may be CREATING at once.
pub const CONSUMERS_CREATING_MAX: usize = 5;
/// ListStreamConsumers pages hold at most this many consumers.
pub const LIST_STREAM_CONSUMERS_MAX: u32 = 100;

const TOKEN_MAGIC: [u8; 3] = *b"SNT";
const TOKEN_KIND_LIST_STREAM_CONSUMERS: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerLifecycle {
    Creating { active_at_ms: u64 },
    Active,
    Deleting { gone_at_ms: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerStatus {
    Creating,
    Deleting,
    Active,
}

impl ConsumerStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Deleting => "DELETING",
            Self::Active => "ACTIVE",
        }
    }
}

/// An enhanced fan-out consumer as the catalog persists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub name: String,
    pub created_ms: u64,
    pub lifecycle: ConsumerLifecycle,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub resource_policy: Option<String>,
}

impl Consumer {
    pub fn status(&self, now_ms: u64) -> ConsumerStatus {
        match self.lifecycle {
            ConsumerLifecycle::Creating { active_at_ms } if now_ms < active_at_ms => {
                ConsumerStatus::Creating
            }
            ConsumerLifecycle::Creating { .. } | ConsumerLifecycle::Active => {
                ConsumerStatus::Active
            }
            ConsumerLifecycle::Deleting { .. } => ConsumerStatus::Deleting,
        }
    }

    pub fn is_gone(&self, now_ms: u64) -> bool {
        matches!(self.lifecycle, ConsumerLifecycle::Deleting { gone_at_ms } if now_ms >= gone_at_ms)
    }

    pub fn arn(&self, stream_arn: &str) -> String {
        format!(
            "{stream_arn}/consumer/{}:{}",
            self.name,
            self.created_ms / 1000
        )
    }
}

/// `ConsumerDescription` (DescribeStreamConsumer) and, without `stream_arn`, `Consumer`
/// (RegisterStreamConsumer, ListStreamConsumers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerDescription {
    pub consumer_name: String,
    pub consumer_arn: String,
    pub consumer_status: ConsumerStatus,
    pub consumer_creation_timestamp_ms: u64,
    pub stream_arn: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterStreamConsumerInput {
    /// protocols resolves the required StreamARN to the name.
    pub stream_name: String,
    pub consumer_name: String,
    pub tags: Vec<Tag>,
}

/// How DescribeStreamConsumer and DeregisterStreamConsumer name a consumer: by ConsumerARN, or
/// by StreamARN (resolved to a name) plus ConsumerName.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerRef {
    Arn(String),
    Name {
        stream_name: String,
        consumer_name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStreamConsumersInput {
    pub stream_name: String,
    pub next_token: Option<String>,
    /// Already checked to be 1..=10000; the server caps pages at 100.
    pub max_results: Option<u32>,
    pub stream_creation_timestamp_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStreamConsumersOutput {
    pub consumers: Vec<ConsumerDescription>,
    pub next_token: Option<String>,
}

/// The parts of a consumer ARN: `arn:<partition>:kinesis:<region>:<account>:stream/<stream>/
/// consumer/<consumer>:<creation epoch s>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerArn {
    pub region: String,
    pub account_id: String,
    pub stream_name: String,
    pub consumer_name: String,
    pub created_s: u64,
}

impl ConsumerArn {
    pub fn parse(arn: &str) -> Option<Self> {
        let (region, account_id, resource) = crate::resource::split_kinesis_arn(arn)?;
        let rest = resource.strip_prefix("stream/")?;
        let (stream_name, consumer) = rest.split_once("/consumer/")?;
        let (consumer_name, created) = consumer.rsplit_once(':')?;
        if !is_name_pattern(stream_name) || !is_name_pattern(consumer_name) || created.is_empty() {
            return None;
        }
        if !created.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self {
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            stream_name: stream_name.to_owned(),
            consumer_name: consumer_name.to_owned(),
            created_s: created.parse().ok()?,
        })
    }
}

/// RIU for DeleteStream on a stream with consumers, in AWS's words (the apostrophe is the
/// typographic one AWS sends).
pub(crate) fn stream_has_consumers(account: &str, stream_name: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceInUse,
        format!(
            "DeleteStream can’t delete {account}:{stream_name} because there are consumers associated with this data stream. To delete {stream_name} anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it."
        ),
    )
}

/// ResourceNotFound for a consumer named by ARN or name.
pub fn consumer_not_found(consumer: &str, account: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceNotFound,
        format!("Consumer {consumer}, account {account} not found."),
    )
}

fn encode_token(issued_ms: u64, stream_created_ms: u64, last_consumer_name: &str) -> String {
    let mut out = Vec::with_capacity(32 + last_consumer_name.len());
    out.extend_from_slice(&TOKEN_MAGIC);
    out.push(TOKEN_KIND_LIST_STREAM_CONSUMERS);
    out.extend_from_slice(&issued_ms.to_le_bytes());
    out.extend_from_slice(&stream_created_ms.to_le_bytes());
    let len =
        u16::try_from(last_consumer_name.len()).expect("consumer names are at most 128 bytes");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(last_consumer_name.as_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    STANDARD.encode(out)
}

/// Decodes a ListStreamConsumers token into (stream_created_ms, last consumer name).
fn decode_token(token: &str, now_ms: u64) -> Result<(u64, String), NextTokenError> {
    let malformed = NextTokenError::Malformed;
    let bytes = STANDARD.decode(token).map_err(|_| malformed)?;
    let (sealed, crc) = bytes
        .split_at_checked(bytes.len().checked_sub(4).ok_or(malformed)?)
        .ok_or(malformed)?;
    let stored = u32::from_le_bytes(crc.try_into().map_err(|_| malformed)?);
    if crc32c::crc32c(sealed) != stored {
        return Err(malformed);
    }
    let header = TOKEN_MAGIC.len() + 1;
    if sealed.len() < header + 8 + 8 + 2
        || sealed[..TOKEN_MAGIC.len()] != TOKEN_MAGIC
        || sealed[TOKEN_MAGIC.len()] != TOKEN_KIND_LIST_STREAM_CONSUMERS
    {
        return Err(malformed);
    }
    let u64_at = |at: usize| {
        u64::from_le_bytes(sealed[at..at + 8].try_into().expect("bounds checked above"))
    };
    let issued_ms = u64_at(header);
    let stream_created_ms = u64_at(header + 8);
    let len_at = header + 16;
    let len = usize::from(u16::from_le_bytes([sealed[len_at], sealed[len_at + 1]]));
    let name = sealed
        .get(len_at + 2..)
        .filter(|rest| rest.len() == len)
        .ok_or(malformed)?;
    let name = std::str::from_utf8(name).map_err(|_| malformed)?.to_owned();
    if now_ms > issued_ms.saturating_add(NEXT_TOKEN_TTL_MS) {
        return Err(NextTokenError::Expired);
    }
    Ok((stream_created_ms, name))
}

fn describe(consumer: &Consumer, stream_arn: &str, now_ms: u64) -> ConsumerDescription {
    ConsumerDescription {
        consumer_name: consumer.name.clone(),
        consumer_arn: consumer.arn(stream_arn),
        consumer_status: consumer.status(now_ms),
        consumer_creation_timestamp_ms: consumer.created_ms,
        stream_arn: stream_arn.to_owned(),
    }
}

impl Stream {
    /// The consumer called `name` that is not gone.
    pub fn consumer(&self, name: &str, now_ms: u64) -> Option<&Consumer> {
        self.control
            .consumers
            .iter()
            .find(|c| c.name == name && !c.is_gone(now_ms))
    }
}

impl Catalog {
    /// The stream and consumer a ConsumerARN names: RNF when either is missing or the ARN's
    /// creation time names an earlier registration.
    pub fn consumer_by_arn(
        &self,
        consumer_arn: &str,
        now_ms: u64,
    ) -> Result<(&Stream, &Consumer), KinesisError> {
        let not_found = || consumer_not_found(consumer_arn, &self.config.account_id);
        let arn = ConsumerArn::parse(consumer_arn).ok_or_else(not_found)?;
        if arn.region != self.config.region || arn.account_id != self.config.account_id {
            return Err(not_found());
        }
        let stream = self
            .live_stream(&arn.stream_name, now_ms)
            .ok_or_else(not_found)?;
        let consumer = stream
            .consumer(&arn.consumer_name, now_ms)
            .filter(|c| c.created_ms / 1000 == arn.created_s)
            .ok_or_else(not_found)?;
        Ok((stream, consumer))
    }

    fn resolve_consumer(
        &self,
        consumer: &ConsumerRef,
        now_ms: u64,
    ) -> Result<(String, String), KinesisError> {
        match consumer {
            ConsumerRef::Arn(arn) => {
                let (stream, consumer) = self.consumer_by_arn(arn, now_ms)?;
                Ok((stream.name.clone(), consumer.name.clone()))
            }
            ConsumerRef::Name {
                stream_name,
                consumer_name,
            } => {
                let stream = self.found(stream_name, now_ms)?;
                stream
                    .consumer(consumer_name, now_ms)
                    .ok_or_else(|| consumer_not_found(consumer_name, &self.config.account_id))?;
                Ok((stream_name.clone(), consumer_name.clone()))
            }
        }
    }

    /// RegisterStreamConsumer: a new consumer in CREATING, ACTIVE after `create_delay_ms`.
    /// The stream must be ACTIVE or UPDATING; at most 20 consumers, 5 of them CREATING.
    pub fn register_stream_consumer(
        &mut self,
        input: RegisterStreamConsumerInput,
        now_ms: u64,
    ) -> Result<ConsumerDescription, KinesisError> {
        validate_name(&input.consumer_name, "consumerName")?;
        let account = self.config.account_id.clone();
        let stream_arn = self.stream_arn(&input.stream_name);
        let create_delay_ms = self.config.create_delay_ms;
        crate::catalog::validate_consumer_tags(&account, &input.consumer_name, &input.tags, 0)?;
        let stream_name = &input.stream_name;
        let stream = self.found_readable_mut(stream_name, now_ms)?;
        stream.control.consumers.retain(|c| !c.is_gone(now_ms));
        let consumers = &stream.control.consumers;
        if consumers.iter().any(|c| c.name == input.consumer_name) {
            return Err(KinesisError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Consumer {} under stream {stream_name} already exists for account {account}.",
                    input.consumer_name
                ),
            ));
        }
        if consumers.len() >= CONSUMERS_PER_STREAM_MAX {
            return Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {stream_name} under account {account} already has {CONSUMERS_PER_STREAM_MAX} registered consumers, the most a stream can have."
                ),
            ));
        }
        let creating = consumers
            .iter()
            .filter(|c| c.status(now_ms) == ConsumerStatus::Creating)
            .count();
        if creating >= CONSUMERS_CREATING_MAX {
            return Err(KinesisError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Stream {stream_name} under account {account} already has {CONSUMERS_CREATING_MAX} consumers in CREATING state. Wait for them to become ACTIVE and try again."
                ),
            ));
        }
        let lifecycle = match create_delay_ms {
            0 => ConsumerLifecycle::Active,
            delay_ms => ConsumerLifecycle::Creating {
                active_at_ms: now_ms.saturating_add(delay_ms),
            },
        };
        let consumer = Consumer {
            name: input.consumer_name,
            created_ms: now_ms,
            lifecycle,
            tags: input.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            resource_policy: None,
        };
        let description = describe(&consumer, &stream_arn, now_ms);
        stream.control.consumers.push(consumer);
        Ok(description)
    }

    /// DeregisterStreamConsumer: the consumer goes DELETING, then is gone after
    /// `delete_delay_ms`. Deregistering a consumer already DELETING keeps its deadline.
    pub fn deregister_stream_consumer(
        &mut self,
        consumer: &ConsumerRef,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let (stream_name, consumer_name) = self.resolve_consumer(consumer, now_ms)?;
        let gone_at_ms = now_ms.saturating_add(self.config.delete_delay_ms);
        let stream = self
            .live_stream_mut(&stream_name, now_ms)
            .expect("resolved just before");
        stream.control.consumers.retain(|c| !c.is_gone(now_ms));
        let consumer = stream
            .control
            .consumers
            .iter_mut()
            .find(|c| c.name == consumer_name)
            .expect("resolved just before");
        if !matches!(consumer.lifecycle, ConsumerLifecycle::Deleting { .. }) {
            consumer.lifecycle = ConsumerLifecycle::Deleting { gone_at_ms };
        }
        Ok(())
    }

    pub fn describe_stream_consumer(
        &self,
        consumer: &ConsumerRef,
        now_ms: u64,
    ) -> Result<ConsumerDescription, KinesisError> {
        let (stream_name, consumer_name) = self.resolve_consumer(consumer, now_ms)?;
        let stream = self.found(&stream_name, now_ms)?;
        let consumer = stream
            .consumer(&consumer_name, now_ms)
            .expect("resolved just before");
        Ok(describe(consumer, &self.stream_arn(&stream_name), now_ms))
    }

    /// ListStreamConsumers, paged in consumer-name order with NextTokens that expire like
    /// ListShards'. StreamCreationTimestamp, when given, must name this incarnation (to the
    /// second, the wire's precision).
    pub fn list_stream_consumers(
        &self,
        input: ListStreamConsumersInput,
        now_ms: u64,
    ) -> Result<ListStreamConsumersOutput, KinesisError> {
        let stream = self.found(&input.stream_name, now_ms)?;
        if let Some(created_ms) = input.stream_creation_timestamp_ms
            && created_ms / 1000 != stream.created_ms / 1000
        {
            return Err(KinesisError::stream_not_found(
                &input.stream_name,
                &self.config.account_id,
            ));
        }
        let after = match &input.next_token {
            Some(token) => {
                let (created_ms, last) = decode_token(token, now_ms).map_err(next_token_error)?;
                if created_ms != stream.created_ms {
                    return Err(next_token_error(NextTokenError::Malformed));
                }
                Some(last)
            }
            None => None,
        };
        let limit = page_size(input.max_results, LIST_STREAM_CONSUMERS_MAX);
        let mut sorted: Vec<&Consumer> = stream
            .control
            .consumers
            .iter()
            .filter(|c| !c.is_gone(now_ms))
            .collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let remaining = sorted
            .into_iter()
            .filter(|c| after.as_ref().is_none_or(|last| c.name > *last));
        let (page, has_more_consumers) = take_page(remaining, limit);
        let next_token = match page.last() {
            Some(last) if has_more_consumers => {
                Some(encode_token(now_ms, stream.created_ms, &last.name))
            }
            _ => None,
        };
        let stream_arn = self.stream_arn(&stream.name);
        Ok(ListStreamConsumersOutput {
            consumers: page
                .into_iter()
                .map(|c| describe(c, &stream_arn, now_ms))
                .collect(),
            next_token,
        })
    }

    /// The entry check of SubscribeToShard, on the catalog itself: the consumer exists and is ACTIVE (RIU otherwise)
    /// and its stream can be read.
    pub fn consumer_for_subscribe(
        &self,
        consumer_arn: &str,
        now_ms: u64,
    ) -> Result<(&Stream, &Consumer), KinesisError> {
        let (stream, consumer) = self.consumer_by_arn(consumer_arn, now_ms)?;
        let status = consumer.status(now_ms);
        if status != ConsumerStatus::Active {
            return Err(consumer_not_active(
                consumer_arn,
                &self.config.account_id,
                status,
            ));
        }
        stream.check_readable(&self.config.account_id, now_ms)?;
        Ok((stream, consumer))
    }
}

/// SubscribeToShard's refusal of a consumer that is not ACTIVE (ResourceInUse), shared by
/// [`Catalog::consumer_for_subscribe`] and delivery that sees the consumer through
/// DescribeStreamConsumer.
pub fn consumer_not_active(
    consumer_arn: &str,
    account_id: &str,
    status: ConsumerStatus,
) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceInUse,
        format!(
            "Consumer {consumer_arn} under account {account_id} is not ACTIVE, instead in state {}.",
            status.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CreateStreamInput, DeleteStreamInput};
    use crate::catalog::CatalogConfig;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;
    const ACCOUNT: &str = "000000000000";
    const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

    fn active_catalog() -> (Catalog, u64) {
        let mut catalog = Catalog::new(CatalogConfig::default());
        let input = CreateStreamInput {
            stream_name: "s".into(),
            shard_count: Some(1),
            stream_mode: None,
            tags: Vec::new(),
        };
        catalog
            .create_stream(input, T0, &mut |i| i)
            .expect("created");
        (catalog, T0 + 1_000)
    }

    fn register(
        catalog: &mut Catalog,
        name: &str,
        now_ms: u64,
    ) -> Result<ConsumerDescription, KinesisError> {
        let input = RegisterStreamConsumerInput {
            stream_name: "s".into(),
            consumer_name: name.into(),
            tags: Vec::new(),
        };
        catalog.register_stream_consumer(input, now_ms)
    }

    fn by_name(name: &str) -> ConsumerRef {
        ConsumerRef::Name {
            stream_name: "s".into(),
            consumer_name: name.into(),
        }
    }

    #[test]
    fn a_registered_consumer_is_creating_then_active_with_an_arn_ending_in_its_creation_second() {
        let (mut catalog, now) = active_catalog();
        let created = register(&mut catalog, "c", now).expect("registered");
        assert_eq!(created.consumer_status, ConsumerStatus::Creating);
        assert_eq!(
            created.consumer_arn,
            format!("{STREAM_ARN}/consumer/c:{}", now / 1000)
        );
        assert_eq!(created.consumer_creation_timestamp_ms, now);
        let by_arn = ConsumerRef::Arn(created.consumer_arn.clone());
        let active = catalog
            .describe_stream_consumer(&by_arn, now + 500)
            .expect("described");
        assert_eq!(active.consumer_status, ConsumerStatus::Active);
        assert_eq!(active.stream_arn, STREAM_ARN);
        assert_eq!(
            catalog.describe_stream_consumer(&by_name("c"), now + 500),
            Ok(active)
        );
        let summary = catalog.describe_stream_summary("s", now).expect("summary");
        assert_eq!(summary.consumer_count, 1);
    }

    #[test]
    fn registering_a_name_twice_is_in_use_and_limits_are_enforced() {
        let (mut catalog, now) = active_catalog();
        register(&mut catalog, "c0", now).expect("registered");
        let again = register(&mut catalog, "c0", now).map_err(|e| e.kind);
        assert_eq!(again, Err(ErrorKind::ResourceInUse));
        for i in 1..5 {
            register(&mut catalog, &format!("c{i}"), now).expect("registered");
        }
        let sixth = register(&mut catalog, "c5", now).expect_err("five are creating");
        assert_eq!(sixth.kind, ErrorKind::LimitExceeded);
        let later = now + 500;
        for i in 5..20 {
            let at = later + i * 1_000;
            register(&mut catalog, &format!("c{i}"), at).expect("registered");
        }
        let over = register(&mut catalog, "c20", later + 100_000).expect_err("twenty exist");
        assert_eq!(over.kind, ErrorKind::LimitExceeded);
        let bad = register(&mut catalog, "a/b", later).map_err(|e| e.kind);
        assert_eq!(bad, Err(ErrorKind::Validation));
        let input = RegisterStreamConsumerInput {
            stream_name: "x".into(),
            consumer_name: "c".into(),
            tags: Vec::new(),
        };
        assert_eq!(
            catalog.register_stream_consumer(input, now),
            Err(KinesisError::stream_not_found("x", ACCOUNT))
        );
    }

    #[test]
    fn a_deregistered_consumer_is_deleting_then_gone() {
        let (mut catalog, now) = active_catalog();
        let created = register(&mut catalog, "c", now).expect("registered");
        catalog
            .deregister_stream_consumer(&ConsumerRef::Arn(created.consumer_arn.clone()), now + 10)
            .expect("deregistered");
        let deleting = catalog
            .describe_stream_consumer(&by_name("c"), now + 20)
            .expect("still there");
        assert_eq!(deleting.consumer_status, ConsumerStatus::Deleting);
        assert_eq!(
            catalog
                .describe_stream_summary("s", now + 20)
                .map(|s| s.consumer_count),
            Ok(0)
        );
        let gone = catalog.describe_stream_consumer(&by_name("c"), now + 510);
        assert_eq!(gone, Err(consumer_not_found("c", ACCOUNT)));
        let gone = catalog
            .deregister_stream_consumer(&ConsumerRef::Arn(created.consumer_arn.clone()), now + 510);
        assert_eq!(
            gone,
            Err(consumer_not_found(&created.consumer_arn, ACCOUNT))
        );
        // Registered again a second later, the name has a new ARN; the old one names nothing.
        let again = register(&mut catalog, "c", now + 1_000).expect("registered again");
        assert_ne!(again.consumer_arn, created.consumer_arn);
        let old = catalog
            .describe_stream_consumer(&ConsumerRef::Arn(created.consumer_arn.clone()), now + 1_000);
        assert_eq!(old.map_err(|e| e.kind), Err(ErrorKind::ResourceNotFound));
    }

    #[test]
    fn delete_stream_with_consumers_needs_enforce_consumer_deletion() {
        let (mut catalog, now) = active_catalog();
        register(&mut catalog, "c", now).expect("registered");
        let delete = |enforce| DeleteStreamInput {
            stream_name: "s".into(),
            enforce_consumer_deletion: enforce,
        };
        let refused = catalog
            .delete_stream(delete(false), now)
            .expect_err("has consumers");
        assert_eq!(refused.kind, ErrorKind::ResourceInUse);
        assert_eq!(
            refused.message,
            "DeleteStream can’t delete 000000000000:s because there are consumers associated with this data stream. To delete s anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it."
        );
        catalog.delete_stream(delete(true), now).expect("forced");
        let stream = &catalog.streams["s"];
        assert_eq!(stream.control.consumer_count(now), 0);
        assert_eq!(
            stream.control.consumers[0].status(now),
            ConsumerStatus::Deleting
        );
    }

    #[test]
    fn subscribing_needs_an_active_consumer() {
        let (mut catalog, now) = active_catalog();
        let arn = register(&mut catalog, "c", now)
            .expect("registered")
            .consumer_arn;
        let creating = catalog
            .consumer_for_subscribe(&arn, now)
            .map(|_| ())
            .map_err(|e| e.kind);
        assert_eq!(creating, Err(ErrorKind::ResourceInUse));
        let (stream, consumer) = catalog
            .consumer_for_subscribe(&arn, now + 500)
            .expect("active");
        assert_eq!((stream.name.as_str(), consumer.name.as_str()), ("s", "c"));
        let foreign = arn.replace("us-east-1", "eu-west-1");
        let missing = catalog
            .consumer_for_subscribe(&foreign, now + 500)
            .map(|_| ())
            .map_err(|e| e.kind);
        assert_eq!(missing, Err(ErrorKind::ResourceNotFound));
    }

    #[test]
    fn consumer_arns_parse_into_their_parts() {
        let arn = ConsumerArn::parse(
            "arn:aws:kinesis:eu-west-1:123456789012:stream/my.s/consumer/c-1:1700000000",
        )
        .expect("parses");
        assert_eq!(arn.region, "eu-west-1");
        assert_eq!(arn.account_id, "123456789012");
        assert_eq!(
            (arn.stream_name.as_str(), arn.consumer_name.as_str()),
            ("my.s", "c-1")
        );
        assert_eq!(arn.created_s, 1_700_000_000);
        for bad in [
            "arn:aws:kinesis:r:1:stream/s/consumer/c",
            "arn:aws:kinesis:r:1:stream/s/consumer/c:x",
            "arn:aws:sqs:r:1:stream/s/consumer/c:1",
            "arn:aws:kinesis:r:1:stream/s",
        ] {
            assert_eq!(ConsumerArn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn list_stream_consumer_tokens_refuse_damage_and_expire() {
        let token = encode_token(5, 7, "abc");
        assert_eq!(decode_token(&token, 5), Ok((7, "abc".to_owned())));
        assert_eq!(
            decode_token(&token, 6 + NEXT_TOKEN_TTL_MS),
            Err(NextTokenError::Expired)
        );
        let mut bytes = STANDARD.decode(&token).expect("base64");
        bytes[21] ^= 1;
        assert_eq!(
            decode_token(&STANDARD.encode(&bytes), 5),
            Err(NextTokenError::Malformed)
        );
        assert_eq!(decode_token("", 5), Err(NextTokenError::Malformed));
        assert_eq!(decode_token("AAAA", 5), Err(NextTokenError::Malformed));
    }

    proptest! {
        #[test]
        fn list_stream_consumers_paging_visits_every_consumer_once_in_name_order(
            names in proptest::collection::btree_set("[a-z0-9]{1,8}", 0..20),
            page in 1u32..7,
        ) {
            let (mut catalog, now) = active_catalog();
            for (i, name) in names.iter().enumerate() {
                // Five may be CREATING at once, so space registrations past the window.
                register(&mut catalog, name, now + i as u64 * 1_000).expect("registered");
            }
            let now = now + 100_000;
            let mut seen = Vec::new();
            let mut next_token = None;
            loop {
                let input = ListStreamConsumersInput {
                    stream_name: "s".into(),
                    next_token: next_token.take(),
                    max_results: Some(page),
                    stream_creation_timestamp_ms: None,
                };
                let out = catalog.list_stream_consumers(input, now).expect("listed");
                prop_assert!(out.consumers.len() <= page as usize);
                seen.extend(out.consumers.into_iter().map(|c| c.consumer_name));
                match out.next_token {
                    Some(token) => next_token = Some(token),
                    None => break,
                }
            }
            prop_assert_eq!(seen, names.into_iter().collect::<Vec<_>>());
        }
    }
}
