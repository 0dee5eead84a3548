//! Resource-policy enforcement for a request that passed the envelope and authentication
//! checks: find the stream or consumer the request names, fetch its policy, and refuse the call
//! with AWS's `AccessDeniedException` when a `Deny` statement matches (`sluice_core::policy`
//! decides, and documents the principal model: every caller is the appliance account's root).
//!
//! The resource a request names, in this order:
//! - `ConsumerARN` (consumer operations and SubscribeToShard): the consumer's own policy;
//! - `ResourceARN` (TagResource, UntagResource, ListTagsForResource);
//! - for GetRecords, the stream the `ShardIterator` was issued for (GetRecords' `StreamARN` is
//!   informational, so the iterator is what decides);
//! - `StreamARN` when it names this appliance's region and account, else `StreamName`.
//!
//! The binary protocol has no JSON to search: it calls [`check_actions`] with its stream's ARN
//! and the actions its opcode stands for (`binary::Opcode::kinesis_actions`), so both wires
//! refuse with the one check and the one message.
//!
//! A consumer named by `StreamName`/`StreamARN` plus `ConsumerName` is checked against its
//! stream's policy. Operations naming no resource (ListStreams, DescribeLimits, account
//! settings) are never checked, and neither are PutResourcePolicy, GetResourcePolicy and
//! DeleteResourcePolicy: like the root user's access to an S3 bucket policy, this keeps the
//! appliance's owner from locking themselves out of a resource for good. A field that is
//! missing or malformed names nothing here; the operation's own validation then reports it.

use sluice_core::api::KinesisApi;
use sluice_core::policy;
use sluice_core::shard_iterator::ShardIterator;
use sluice_core::{ErrorKind, KinesisError};

use super::decode::{Home, parse_stream_arn};
use crate::json::JsonValue;

/// Operations exempt from enforcement (see the module doc).
const EXEMPT: [&str; 3] = [
    "PutResourcePolicy",
    "GetResourcePolicy",
    "DeleteResourcePolicy",
];

/// Refuses `action` (an operation name such as `PutRecord`) when the policy of the resource
/// that `document` names explicitly denies it to the caller.
pub async fn check_resource_policy<A: KinesisApi>(
    api: &A,
    action: &str,
    document: &JsonValue<'_>,
) -> Result<(), KinesisError> {
    if EXEMPT.contains(&action) {
        return Ok(());
    }
    let home = Home {
        region: api.region(),
        account_id: api.account_id(),
    };
    let Some(arn) = named_resource(home, action, document) else {
        return Ok(());
    };
    check_actions(api, &[action], &arn).await
}

/// Refuses the call when the policy of `resource_arn` explicitly denies any of `actions` to the
/// caller, naming the first denied action. This is the one check behind both wires: the HTTP API
/// finds the resource in the request's JSON ([`check_resource_policy`]); the binary protocol
/// names its stream directly and maps each opcode to the Kinesis actions it stands for.
pub async fn check_actions<A: KinesisApi>(
    api: &A,
    actions: &[&str],
    resource_arn: &str,
) -> Result<(), KinesisError> {
    if actions.iter().all(|action| EXEMPT.contains(action)) {
        return Ok(());
    }
    let Some(document) = api.resource_policy(resource_arn.to_owned()).await else {
        return Ok(());
    };
    let account_id = api.account_id();
    let denied = actions.iter().find(|action| {
        !EXEMPT.contains(action)
            && policy::explicitly_denies(&document, action, resource_arn, account_id)
    });
    match denied {
        Some(action) => Err(KinesisError::new(
            ErrorKind::AccessDenied,
            format!(
                "User: {} is not authorized to perform: kinesis:{action} on resource: {resource_arn} with an explicit deny in a resource-based policy",
                policy::root_principal(account_id)
            ),
        )),
        None => Ok(()),
    }
}

/// The ARN of this appliance's stream `stream_name`, as the catalog writes it and as policies
/// name it.
pub fn home_stream_arn<A: KinesisApi>(api: &A, stream_name: &str) -> String {
    let home = Home {
        region: api.region(),
        account_id: api.account_id(),
    };
    stream_arn(home, stream_name)
}

fn text<'d>(document: &'d JsonValue<'_>, key: &str) -> Option<&'d str> {
    match document.get(key)? {
        JsonValue::String(s) => Some(s),
        _ => None,
    }
}

fn stream_arn(home: Home<'_>, stream_name: &str) -> String {
    format!(
        "arn:aws:kinesis:{}:{}:stream/{stream_name}",
        home.region, home.account_id
    )
}

/// A stream ARN of this appliance, written the way the catalog writes it; `None` for another
/// region's or account's.
fn our_stream_arn(home: Home<'_>, arn: &str) -> Option<String> {
    let parsed = parse_stream_arn(arn)?;
    (parsed.region == home.region && parsed.account_id == home.account_id)
        .then(|| stream_arn(home, parsed.stream_name))
}

/// The ARN of the stream or consumer a request names (see the module doc).
fn named_resource(home: Home<'_>, action: &str, document: &JsonValue<'_>) -> Option<String> {
    if let Some(arn) = text(document, "ConsumerARN") {
        return Some(arn.to_owned());
    }
    if let Some(arn) = text(document, "ResourceARN") {
        return match parse_stream_arn(arn) {
            Some(_) if !arn.contains("/consumer/") => our_stream_arn(home, arn),
            _ => Some(arn.to_owned()),
        };
    }
    if action == "GetRecords" {
        let iterator = ShardIterator::decode(text(document, "ShardIterator")?)?;
        return Some(stream_arn(home, &iterator.stream_name));
    }
    if let Some(arn) = text(document, "StreamARN").and_then(|arn| our_stream_arn(home, arn)) {
        return Some(arn);
    }
    text(document, "StreamName").map(|name| stream_arn(home, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Home<'static> = Home {
        region: "us-east-1",
        account_id: "000000000000",
    };
    const S: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

    fn parse(text: &str) -> JsonValue<'_> {
        crate::json::value::parse(text.as_bytes()).expect("test documents are JSON")
    }

    #[test]
    fn a_matching_deny_refuses_the_call_before_it_reaches_the_api() {
        use futures_lite::future::block_on;
        use sluice_core::api::CreateStreamInput;

        use crate::model::Model;
        use crate::{HttpRequest, handle_kinesis};

        let model = Model::default();
        let deny = r#"{"Statement":[{"Effect":"Deny","Principal":{"AWS":"000000000000"},"Action":"kinesis:PutRecord","Resource":"*"}]}"#;
        block_on(async {
            let input = CreateStreamInput {
                stream_name: "s".into(),
                shard_count: Some(1),
                stream_mode: None,
                tags: Vec::new(),
            };
            model.create_stream(input).await.expect("created");
            model
                .put_resource_policy(S.into(), deny.into())
                .await
                .expect("stored");
        });
        let send = |op: &str| {
            let target = format!("Kinesis_20131202.{op}");
            let body = br#"{"StreamName":"s","PartitionKey":"k","Data":"AA=="}"#;
            let req = HttpRequest {
                method: "POST",
                path: "/",
                target: Some(&target),
                content_type: Some("application/x-amz-json-1.1"),
                has_auth: true,
                body,
                ..HttpRequest::default()
            };
            block_on(handle_kinesis(&model, req))
        };
        let refused = send("PutRecord");
        assert_eq!(refused.status, 400);
        let body: serde_json::Value =
            serde_json::from_slice(&refused.body).expect("errors are JSON");
        assert_eq!(body["__type"], "AccessDeniedException");
        assert_eq!(
            body["message"],
            format!(
                "User: arn:aws:iam::000000000000:root is not authorized to perform: kinesis:PutRecord on resource: {S} with an explicit deny in a resource-based policy"
            )
        );
        let summary = send("DescribeStreamSummary");
        assert_eq!(summary.status, 200, "the Deny names PutRecord only");
    }

    #[test]
    fn check_actions_names_the_first_denied_action_and_ignores_undenied_ones() {
        use futures_lite::future::block_on;
        use sluice_core::api::CreateStreamInput;

        use crate::model::Model;

        let model = Model::default();
        let deny = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"kinesis:GetRecords","Resource":"*"}]}"#;
        block_on(async {
            let input = CreateStreamInput {
                stream_name: "s".into(),
                shard_count: Some(1),
                stream_mode: None,
                tags: Vec::new(),
            };
            model.create_stream(input).await.expect("created");
            model
                .put_resource_policy(S.into(), deny.into())
                .await
                .expect("stored");
            assert_eq!(home_stream_arn(&model, "s"), S);
            let refused = check_actions(&model, &["GetShardIterator", "GetRecords"], S)
                .await
                .expect_err("GetRecords is denied");
            assert_eq!(refused.kind, ErrorKind::AccessDenied);
            assert!(
                refused.message.contains("kinesis:GetRecords on resource"),
                "{}",
                refused.message
            );
            check_actions(&model, &["PutRecords", "PutRecord"], S)
                .await
                .expect("the Deny names GetRecords only");
            check_actions(&model, &["GetRecords"], &stream_arn(HOME, "other"))
                .await
                .expect("another stream has no policy");
        });
    }

    #[test]
    fn requests_name_their_stream_or_consumer_by_each_field() {
        let consumer = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1";
        let iterator = ShardIterator {
            issued_ms: 1,
            stream_created_ms: 1,
            stream_name: "s".into(),
            shard_index: 0,
            position: 0,
        }
        .encode();
        let cases = [
            ("PutRecord", r#"{"StreamName":"s"}"#.to_owned(), Some(S)),
            ("PutRecord", format!(r#"{{"StreamARN":"{S}"}}"#), Some(S)),
            (
                "PutRecord",
                r#"{"StreamARN":"arn:aws:kinesis:eu-west-1:000000000000:stream/s"}"#.to_owned(),
                None,
            ),
            (
                "GetRecords",
                format!(r#"{{"ShardIterator":"{iterator}"}}"#),
                Some(S),
            ),
            ("GetRecords", r#"{"ShardIterator":"junk"}"#.to_owned(), None),
            (
                "DescribeStreamConsumer",
                format!(r#"{{"ConsumerARN":"{consumer}"}}"#),
                Some(consumer),
            ),
            (
                "TagResource",
                format!(r#"{{"ResourceARN":"{S}"}}"#),
                Some(S),
            ),
            (
                "TagResource",
                format!(r#"{{"ResourceARN":"{consumer}"}}"#),
                Some(consumer),
            ),
            ("ListStreams", "{}".to_owned(), None),
            ("PutRecord", r#"{"StreamName":7}"#.to_owned(), None),
        ];
        for (action, body, expected) in cases {
            assert_eq!(
                named_resource(HOME, action, &parse(&body)).as_deref(),
                expected,
                "{action} {body}"
            );
        }
    }
}
