//! Operations addressed by ResourceARN: resource policies (Put/Get/DeleteResourcePolicy) and
//! tags (TagResource, UntagResource, ListTagsForResource), for streams and for enhanced fan-out
//! consumers. Channels and queues do not exist on the appliance, so their ARNs name nothing.
//!
//! A policy is kept as the exact text the client sent, after checking that it is a JSON object
//! with a `Statement` member. The check is a small JSON syntax walker here (enforcement, in
//! `crate::policy`, reads stored documents with `serde_json`); it accepts exactly RFC 8259 JSON
//! (tested against `serde_json`) nested at most [`POLICY_DEPTH_MAX`] deep.

use crate::api::Tag;
use crate::catalog::{Catalog, is_name_pattern, validate_consumer_tags};
use crate::consumer::ConsumerArn;
use crate::error::{ErrorKind, KinesisError};

/// Largest policy document accepted, in bytes `[verify]`.
pub const POLICY_BYTES_MAX: usize = 20 * 1024;
/// Deepest nesting of arrays and objects a policy may have.
pub const POLICY_DEPTH_MAX: usize = 64;

/// What a ResourceARN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceArn {
    Stream { stream_name: String },
    Consumer(ConsumerArn),
}

/// Splits `arn:<aws…>:kinesis:<region>:<account>:<resource>` into region, account and resource.
pub(crate) fn split_kinesis_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
    if scheme != "arn" || !partition.starts_with("aws") || service != "kinesis" {
        return None;
    }
    Some((region, account, resource))
}

impl ResourceArn {
    /// Reads a stream or consumer ARN; `None` for anything else.
    pub fn parse(arn: &str) -> Option<Self> {
        if let Some(consumer) = ConsumerArn::parse(arn) {
            return Some(Self::Consumer(consumer));
        }
        let (_, _, resource) = split_kinesis_arn(arn)?;
        let stream_name = resource.strip_prefix("stream/")?;
        is_name_pattern(stream_name).then(|| Self::Stream {
            stream_name: stream_name.to_owned(),
        })
    }
}

/// Whether `text` is a JSON object with a `Statement` member (see the module doc).
pub fn is_policy_document(text: &str) -> bool {
    let mut walker = JsonWalker {
        bytes: text.as_bytes(),
        at: 0,
    };
    walker.skip_space();
    let Some(has_statement) = walker.object_with_statement() else {
        return false;
    };
    walker.skip_space();
    has_statement && walker.at == walker.bytes.len()
}

/// A JSON syntax checker: each method consumes one value and says whether it was well formed.
struct JsonWalker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonWalker<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// The top-level object; `Some(true)` when it has a `Statement` key.
    fn object_with_statement(&mut self) -> Option<bool> {
        let mut has_statement = false;
        self.object(1, &mut |key| has_statement |= key == b"Statement")?;
        Some(has_statement)
    }

    fn object(&mut self, depth: usize, on_key: &mut dyn FnMut(&[u8])) -> Option<()> {
        if depth > POLICY_DEPTH_MAX || !self.eat(b'{') {
            return None;
        }
        self.skip_space();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.skip_space();
            let start = self.at + 1;
            self.string()?;
            on_key(&self.bytes[start..self.at - 1]);
            self.skip_space();
            if !self.eat(b':') {
                return None;
            }
            self.value(depth)?;
            self.skip_space();
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > POLICY_DEPTH_MAX || !self.eat(b'[') {
            return None;
        }
        self.skip_space();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.skip_space();
            if self.eat(b']') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        self.skip_space();
        match self.peek()? {
            b'{' => self.object(depth + 1, &mut |_| {}),
            b'[' => self.array(depth + 1),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        if self.bytes.get(self.at..end)? != word {
            return None;
        }
        self.at = end;
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        if self.eat(b'0') {
            // A leading zero stands alone.
        } else if self.digits() == 0 {
            return None;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A string; the input is `&str`, so its bytes are already valid UTF-8.
    fn string(&mut self) -> Option<()> {
        if !self.eat(b'"') {
            return None;
        }
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => {
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                _ => self.at += 1,
            }
        }
    }
}

fn no_such_resource(arn: &str, account: &str) -> KinesisError {
    KinesisError::new(
        ErrorKind::ResourceNotFound,
        format!("Resource {arn} under account {account} not found."),
    )
}

impl Catalog {
    /// Resolves a ResourceARN to something that exists: RNF for an unknown, foreign or gone
    /// resource.
    fn resource(&self, arn: &str, now_ms: u64) -> Result<ResourceArn, KinesisError> {
        let account = &self.config.account_id;
        let parsed = ResourceArn::parse(arn).ok_or_else(|| no_such_resource(arn, account))?;
        match &parsed {
            ResourceArn::Stream { stream_name } => {
                let ours = split_kinesis_arn(arn).is_some_and(|(region, account_id, _)| {
                    region == self.config.region && account_id == *account
                });
                if !ours {
                    return Err(KinesisError::stream_not_found(stream_name, account));
                }
                self.found(stream_name, now_ms)?;
            }
            ResourceArn::Consumer(_) => {
                self.consumer_by_arn(arn, now_ms)?;
            }
        }
        Ok(parsed)
    }

    fn policy_slot(&mut self, resource: &ResourceArn, now_ms: u64) -> &mut Option<String> {
        match resource {
            ResourceArn::Stream { stream_name } => {
                let stream = self
                    .live_stream_mut(stream_name, now_ms)
                    .expect("resolved just before");
                &mut stream.control.resource_policy
            }
            ResourceArn::Consumer(arn) => &mut self.consumer_mut(arn, now_ms).resource_policy,
        }
    }

    /// PutResourcePolicy: stores `policy` (a JSON object with a Statement) for a stream or
    /// consumer, replacing any earlier one.
    pub fn put_resource_policy(
        &mut self,
        resource_arn: &str,
        policy: String,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let resource = self.resource(resource_arn, now_ms)?;
        if policy.len() > POLICY_BYTES_MAX {
            return Err(KinesisError::invalid_argument(format!(
                "The resource policy is {} bytes long, over the limit of {POLICY_BYTES_MAX} bytes.",
                policy.len()
            )));
        }
        if !is_policy_document(&policy) {
            return Err(KinesisError::invalid_argument(
                "The resource policy is not a valid policy document: it must be a JSON object with a Statement.",
            ));
        }
        *self.policy_slot(&resource, now_ms) = Some(policy);
        Ok(())
    }

    /// GetResourcePolicy: the stored document, or `{}` when there is none.
    pub fn get_resource_policy(
        &self,
        resource_arn: &str,
        now_ms: u64,
    ) -> Result<String, KinesisError> {
        self.resource(resource_arn, now_ms)?;
        Ok(self
            .resource_policy(resource_arn, now_ms)
            .unwrap_or("{}")
            .to_owned())
    }

    /// DeleteResourcePolicy: RNF when the resource has no policy.
    pub fn delete_resource_policy(
        &mut self,
        resource_arn: &str,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        let resource = self.resource(resource_arn, now_ms)?;
        if self.policy_slot(&resource, now_ms).take().is_none() {
            return Err(KinesisError::new(
                ErrorKind::ResourceNotFound,
                format!("No resource policy found for resource ARN {resource_arn}."),
            ));
        }
        Ok(())
    }

    /// The resource policy that governs calls on `resource_arn`, for enforcement.
    pub fn resource_policy(&self, resource_arn: &str, now_ms: u64) -> Option<&str> {
        match ResourceArn::parse(resource_arn)? {
            ResourceArn::Stream { stream_name } => self
                .live_stream(&stream_name, now_ms)?
                .control
                .resource_policy
                .as_deref(),
            ResourceArn::Consumer(_) => self
                .consumer_by_arn(resource_arn, now_ms)
                .ok()?
                .1
                .resource_policy
                .as_deref(),
        }
    }

    /// TagResource: stream ARNs behave as AddTagsToStream; consumer ARNs tag the consumer.
    pub fn tag_resource(
        &mut self,
        resource_arn: &str,
        tags: Vec<Tag>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        match self.resource(resource_arn, now_ms)? {
            ResourceArn::Stream { stream_name } => {
                self.add_tags_to_stream(&stream_name, tags, now_ms)
            }
            ResourceArn::Consumer(arn) => {
                let account = self.config.account_id.clone();
                let consumer = self.consumer_mut(&arn, now_ms);
                let existing = tags
                    .iter()
                    .filter(|t| consumer.tags.contains_key(&t.key))
                    .count();
                validate_consumer_tags(
                    &account,
                    &arn.consumer_name,
                    &tags,
                    consumer.tags.len().saturating_sub(existing),
                )?;
                consumer
                    .tags
                    .extend(tags.into_iter().map(|t| (t.key, t.value)));
                Ok(())
            }
        }
    }

    /// UntagResource: removes the keys; absent keys are ignored, as AWS does.
    pub fn untag_resource(
        &mut self,
        resource_arn: &str,
        tag_keys: Vec<String>,
        now_ms: u64,
    ) -> Result<(), KinesisError> {
        match self.resource(resource_arn, now_ms)? {
            ResourceArn::Stream { stream_name } => {
                self.remove_tags_from_stream(&stream_name, tag_keys, now_ms)
            }
            ResourceArn::Consumer(arn) => {
                let consumer = self.consumer_mut(&arn, now_ms);
                for key in &tag_keys {
                    consumer.tags.remove(key);
                }
                Ok(())
            }
        }
    }

    /// ListTagsForResource: every tag of the stream or consumer, in key order.
    pub fn list_tags_for_resource(
        &self,
        resource_arn: &str,
        now_ms: u64,
    ) -> Result<Vec<Tag>, KinesisError> {
        let tags = match self.resource(resource_arn, now_ms)? {
            ResourceArn::Stream { stream_name } => self.found(&stream_name, now_ms)?.tags.clone(),
            ResourceArn::Consumer(_) => self.consumer_by_arn(resource_arn, now_ms)?.1.tags.clone(),
        };
        Ok(tags
            .into_iter()
            .map(|(key, value)| Tag { key, value })
            .collect())
    }

    fn consumer_mut(&mut self, arn: &ConsumerArn, now_ms: u64) -> &mut crate::consumer::Consumer {
        self.live_stream_mut(&arn.stream_name, now_ms)
            .expect("resolved just before")
            .control
            .consumers
            .iter_mut()
            .find(|c| c.name == arn.consumer_name && !c.is_gone(now_ms))
            .expect("resolved just before")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CreateStreamInput;
    use crate::catalog::CatalogConfig;
    use crate::consumer::RegisterStreamConsumerInput;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000;
    const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::1:root"},"Action":"kinesis:GetRecords","Resource":"*"}]}"#;

    /// Stream `s` ACTIVE with ACTIVE consumer `c`; returns the consumer ARN.
    fn catalog_with_consumer() -> (Catalog, u64, String) {
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
        let now = T0 + 1_000;
        let input = RegisterStreamConsumerInput {
            stream_name: "s".into(),
            consumer_name: "c".into(),
            tags: vec![Tag {
                key: "team".into(),
                value: "x".into(),
            }],
        };
        let arn = catalog
            .register_stream_consumer(input, now)
            .expect("registered")
            .consumer_arn;
        (catalog, now + 500, arn)
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn resource_policies_are_stored_returned_and_deleted_for_streams_and_consumers() {
        let (mut catalog, now, consumer_arn) = catalog_with_consumer();
        for arn in [STREAM_ARN, consumer_arn.as_str()] {
            assert_eq!(catalog.get_resource_policy(arn, now), Ok("{}".to_owned()));
            catalog
                .put_resource_policy(arn, POLICY.into(), now)
                .expect("stored");
            assert_eq!(catalog.get_resource_policy(arn, now), Ok(POLICY.to_owned()));
            assert_eq!(catalog.resource_policy(arn, now), Some(POLICY));
            catalog.delete_resource_policy(arn, now).expect("deleted");
            assert_eq!(
                catalog
                    .delete_resource_policy(arn, now)
                    .map_err(|e| e.message),
                Err(format!("No resource policy found for resource ARN {arn}."))
            );
        }
    }

    #[test]
    fn put_resource_policy_refuses_documents_without_a_statement_or_unknown_resources() {
        let (mut catalog, now, _) = catalog_with_consumer();
        for bad in [
            "",
            "{",
            "[]",
            r#"{"Version":"2012-10-17"}"#,
            r#"{"Statement":[]} x"#,
        ] {
            let result = catalog.put_resource_policy(STREAM_ARN, bad.into(), now);
            assert_eq!(
                result.map_err(|e| e.kind),
                Err(ErrorKind::InvalidArgument),
                "{bad:?}"
            );
        }
        let missing = "arn:aws:kinesis:us-east-1:000000000000:stream/x";
        assert_eq!(
            catalog.put_resource_policy(missing, POLICY.into(), now),
            Err(KinesisError::stream_not_found("x", "000000000000"))
        );
        let other_account = "arn:aws:kinesis:us-east-1:111111111111:stream/s";
        let result = catalog
            .get_resource_policy(other_account, now)
            .map_err(|e| e.kind);
        assert_eq!(result, Err(ErrorKind::ResourceNotFound));
        let queue = "arn:aws:kinesis:us-east-1:000000000000:queue/q";
        let result = catalog.get_resource_policy(queue, now).map_err(|e| e.kind);
        assert_eq!(result, Err(ErrorKind::ResourceNotFound));
    }

    #[test]
    fn consumer_tags_are_refused_in_aws_words_naming_the_consumer() {
        let (mut catalog, now, consumer_arn) = catalog_with_consumer();
        let mut refusal = |tags: Vec<Tag>| {
            catalog
                .tag_resource(&consumer_arn, tags, now)
                .map_err(|e| (e.kind, e.message))
        };
        assert_eq!(
            refusal(vec![tag("k", "50%")]),
            Err((
                ErrorKind::InvalidArgument,
                "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @.".to_owned()
            ))
        );
        let fifty = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(
            refusal(fifty),
            Err((
                ErrorKind::InvalidArgument,
                "Failed to add tags to consumer c under account 000000000000 because a given consumer cannot have more than 50 tags associated with it.".to_owned()
            ))
        );
    }

    #[test]
    fn tags_by_arn_reach_streams_and_consumers() {
        let (mut catalog, now, consumer_arn) = catalog_with_consumer();
        catalog
            .tag_resource(STREAM_ARN, vec![tag("b", "2"), tag("a", "1")], now)
            .expect("tagged");
        assert_eq!(
            catalog.list_tags_for_resource(STREAM_ARN, now),
            Ok(vec![tag("a", "1"), tag("b", "2")])
        );
        catalog
            .untag_resource(STREAM_ARN, vec!["a".into(), "zz".into()], now)
            .expect("untagged");
        assert_eq!(catalog.streams["s"].tags.len(), 1);

        assert_eq!(
            catalog.list_tags_for_resource(&consumer_arn, now),
            Ok(vec![tag("team", "x")])
        );
        catalog
            .tag_resource(&consumer_arn, vec![tag("team", "y")], now)
            .expect("overwritten");
        assert_eq!(
            catalog.list_tags_for_resource(&consumer_arn, now),
            Ok(vec![tag("team", "y")])
        );
        let reserved = catalog.tag_resource(&consumer_arn, vec![tag("aws:x", "1")], now);
        assert_eq!(
            reserved.map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "")).collect();
        let too_many = catalog.tag_resource(&consumer_arn, many, now);
        assert_eq!(
            too_many.map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument)
        );
        catalog
            .untag_resource(&consumer_arn, vec!["team".into()], now)
            .expect("untagged");
        assert_eq!(
            catalog.list_tags_for_resource(&consumer_arn, now),
            Ok(Vec::new())
        );
    }

    #[test]
    fn the_policy_check_reads_json_as_rfc_8259_does() {
        assert!(is_policy_document(POLICY));
        assert!(is_policy_document(
            " {\"Statement\" : [1, -2.5e+3, true, null, \"\\u00e9\\n\"]} \n"
        ));
        for bad in [
            r#"{"Statement":01}"#,
            r#"{"Statement":1.}"#,
            r#"{"Statement":"\x"}"#,
            r#"{"Statement":[1,]}"#,
            r#"{"Statement":tru}"#,
            "{\"Statement\":\"a\u{1}\"}",
            r#"{'Statement':1}"#,
        ] {
            assert!(!is_policy_document(bad), "{bad:?}");
        }
        let deep = format!("{{\"Statement\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(!is_policy_document(&deep));
    }

    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("1".to_owned()),
            Just("-0.5e3".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            "\"[a-z\\\\\"]{0,4}\"",
            "[-0-9.eE+]{1,4}",
            "[\\[\\]{},:\" a]{1,3}",
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec(("[a-zS]{0,3}", inner), 0..4).prop_map(|v| {
                    let members: Vec<String> =
                        v.into_iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_policy_check_agrees_with_serde_json(value in json_text(), statement in any::<bool>()) {
            let text = if statement { format!("{{\"Statement\":{value}}}") } else { value.clone() };
            let reference = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .is_some_and(|v| v.as_object().is_some_and(|o| o.contains_key("Statement")));
            prop_assert_eq!(is_policy_document(&text), reference, "{}", text);
        }
    }
}
