//! SubscribeToShard over HTTP: the one Kinesis operation whose successful response is a stream
//! of event-stream messages (`crate::eventstream`) rather than one body.
//!
//! The server routes a request whose `X-Amz-Target` names SubscribeToShard here
//! ([`is_subscribe_to_shard`]). The envelope rules are the ordinary ones: when any of them fails
//! (method, body, content type, syntax, authentication, signature), the request is handed to
//! [`handle_kinesis_with`], which answers with exactly the error every other operation gets.
//! Errors found before streaming (decoding, consumer, shard, position, a live subscription) are
//! ordinary 400 replies in the request's protocol. After that the reply is 200 with
//! `Content-Type: application/vnd.amazon.eventstream` and an [`EventStream`]:
//!
//! 1. `initial-response` with the empty output (`{}` / CBOR `a0`), which boto3 and Go require;
//! 2. one `SubscribeToShardEvent` per [`Subscription::next_event`]: the GetRecords record
//!    encoding plus `ContinuationSequenceNumber`, `MillisBehindLatest` and `ChildShards`;
//! 3. a mid-stream error as an `exception` message (`:exception-type` = the error's type), after
//!    which the stream ends.
//!
//! Payloads are JSON for a JSON request and CBOR for a CBOR request, and `:content-type` says
//! which.

use std::time::SystemTime;

use sluice_core::api::{GetRecordsOutput, KinesisApi, RecordBatch, ShardIteratorType};
use sluice_core::storage::RecordLog;
use sluice_core::subscribe::{
    StartingPosition, SubscribeToShardEventOut, SubscribeToShardInput, Subscription,
};
use sluice_core::{ErrorKind, KinesisError};

use super::efo::{EnhancedFanOut, FanOutSubscription};
use super::{
    CONTENT_TYPE_CBOR, CONTENT_TYPE_JSON, CORS_EXPOSE_HEADERS, Protocol, Reply, TARGET_PREFIX,
    check_auth, encode, encode_cbor, error, extended_request_id, handle_kinesis_with, request_id,
};
use crate::json::{self, JsonValue};
use crate::sigv4::{self, AuthConfig, AuthMode};
use crate::{HttpRequest, HttpResponse};

pub const OPERATION: &str = "SubscribeToShard";
pub const CONTENT_TYPE_EVENT_STREAM: &str = "application/vnd.amazon.eventstream";
/// `:content-type` of JSON payloads, as AWS labels them inside an event stream.
const PAYLOAD_TYPE_JSON: &str = "application/json";

/// Whether the `X-Amz-Target` header names SubscribeToShard.
pub fn is_subscribe_to_shard(target: Option<&str>) -> bool {
    target
        .and_then(|t| t.split_once('.'))
        .is_some_and(|(service, operation)| service == TARGET_PREFIX && operation == OPERATION)
}

/// The answer to a SubscribeToShard request.
pub enum SubscribeReply<S> {
    /// An error (or anything else that is not a stream): send it as it is.
    Complete(HttpResponse),
    /// Send `head` (status and headers; its body is empty), then every frame of `events`.
    Stream {
        head: HttpResponse,
        events: EventStream<S>,
    },
}

impl<S> std::fmt::Debug for SubscribeReply<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete(r) => f.debug_tuple("Complete").field(r).finish(),
            Self::Stream { head, .. } => f.debug_struct("Stream").field("head", head).finish(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Initial,
    Events,
    Done,
}

/// The frames of one subscription, produced one at a time as its events arrive.
pub struct EventStream<S> {
    subscription: S,
    protocol: Protocol,
    state: StreamState,
}

impl<S> std::fmt::Debug for EventStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("protocol", &self.protocol)
            .field("state", &self.state)
            .finish()
    }
}

impl<S: Subscription> EventStream<S> {
    pub fn new(subscription: S, protocol: Protocol) -> Self {
        Self {
            subscription,
            protocol,
            state: StreamState::Initial,
        }
    }

    fn payload_type(&self) -> &'static str {
        match self.protocol {
            Protocol::Json => PAYLOAD_TYPE_JSON,
            Protocol::Cbor => CONTENT_TYPE_CBOR,
        }
    }

    /// The next message, waiting for the subscription's next event; `None` once the stream is
    /// over.
    pub async fn next_frame(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self.state {
            StreamState::Done => return None,
            StreamState::Initial => {
                self.state = StreamState::Events;
                let payload: &[u8] = match self.protocol {
                    Protocol::Json => b"{}",
                    Protocol::Cbor => &[0xa0],
                };
                crate::eventstream::write_message(
                    &mut out,
                    &[
                        (":message-type", "event"),
                        (":event-type", "initial-response"),
                        (":content-type", self.payload_type()),
                    ],
                    payload,
                );
                return Some(out);
            }
            StreamState::Events => {}
        }
        match self.subscription.next_event().await {
            None => {
                self.state = StreamState::Done;
                None
            }
            Some(Ok(event)) => {
                let payload = encode_event(self.protocol, event);
                crate::eventstream::write_message(
                    &mut out,
                    &[
                        (":message-type", "event"),
                        (":event-type", "SubscribeToShardEvent"),
                        (":content-type", self.payload_type()),
                    ],
                    &payload,
                );
                Some(out)
            }
            Some(Err(e)) => {
                self.state = StreamState::Done;
                let (type_name, _) = error::error_shape(e.kind);
                let payload = match self.protocol {
                    Protocol::Json => {
                        let mut body = b"{\"message\":".to_vec();
                        json::writer::write_str(&mut body, &e.message);
                        body.push(b'}');
                        body
                    }
                    Protocol::Cbor => {
                        let mut body = vec![0xa1];
                        crate::cbor::write_text(&mut body, "message");
                        crate::cbor::write_text(&mut body, &e.message);
                        body
                    }
                };
                crate::eventstream::write_message(
                    &mut out,
                    &[
                        (":message-type", "exception"),
                        (":exception-type", type_name),
                        (":content-type", self.payload_type()),
                    ],
                    &payload,
                );
                Some(out)
            }
        }
    }
}

/// A SubscribeToShardEvent payload: GetRecords' writer (so records are encoded identically),
/// with `ContinuationSequenceNumber` added as the last member of the top-level structure.
pub fn encode_event<R: RecordBatch>(
    protocol: Protocol,
    event: SubscribeToShardEventOut<R>,
) -> Vec<u8> {
    let output = GetRecordsOutput {
        records: event.records,
        next_shard_iterator: None,
        millis_behind_latest: event.millis_behind_latest,
        child_shards: event.child_shards,
    };
    match protocol {
        Protocol::Json => {
            let mut out = encode::get_records(&output);
            assert_eq!(out.pop(), Some(b'}'), "GetRecords JSON ends its object");
            if let Some(number) = &event.continuation_sequence_number {
                out.extend_from_slice(b",\"ContinuationSequenceNumber\":");
                json::writer::write_str(&mut out, number);
            }
            out.push(b'}');
            out
        }
        Protocol::Cbor => {
            let mut out = encode_cbor::get_records(&output);
            assert_eq!(
                out.pop(),
                Some(0xff),
                "GetRecords CBOR ends its indefinite map"
            );
            if let Some(number) = &event.continuation_sequence_number {
                crate::cbor::write_text(&mut out, "ContinuationSequenceNumber");
                crate::cbor::write_text(&mut out, number);
            }
            crate::cbor::write_break(&mut out);
            out
        }
    }
}

fn serialization(message: &str) -> KinesisError {
    KinesisError::new(ErrorKind::Serialization, message)
}

fn string_member<'v>(doc: &'v JsonValue<'_>, key: &str) -> Result<Option<&'v str>, KinesisError> {
    match doc.get(key) {
        None => Ok(None),
        Some(JsonValue::String(s)) => Ok(Some(s)),
        Some(_) => Err(serialization(&format!("{key} must be a string"))),
    }
}

/// Decodes and validates the request body (the model's required members and enum).
pub fn decode_input(
    doc: &JsonValue<'_>,
    protocol: Protocol,
) -> Result<SubscribeToShardInput, KinesisError> {
    let consumer_arn = string_member(doc, "ConsumerARN")?;
    let shard_id = string_member(doc, "ShardId")?;
    let position = match doc.get("StartingPosition") {
        None => None,
        Some(p @ JsonValue::Object(_)) => Some(p),
        Some(_) => return Err(serialization("StartingPosition must be a structure")),
    };
    let kind = position
        .map(|p| string_member(p, "Type"))
        .transpose()?
        .flatten();
    let sequence_number = position
        .map(|p| string_member(p, "SequenceNumber"))
        .transpose()?
        .flatten();
    let timestamp_ms = match position.and_then(|p| p.get("Timestamp")) {
        None => None,
        Some(JsonValue::TimestampMs(n)) => Some(n.as_f64().round() as u64),
        Some(JsonValue::Number(n)) if protocol == Protocol::Cbor => Some(n.as_f64().round() as u64),
        Some(JsonValue::Number(n)) => Some((n.as_f64() * 1000.0).round() as u64),
        Some(_) => {
            return Err(serialization(
                "StartingPosition.Timestamp must be a timestamp",
            ));
        }
    };

    let mut violations = Vec::new();
    let mut not_null = |value: bool, path: &str| {
        if !value {
            violations.push(format!(
                "Value null at '{path}' failed to satisfy constraint: Member must not be null"
            ));
        }
    };
    not_null(consumer_arn.is_some(), "consumerARN");
    not_null(shard_id.is_some(), "shardId");
    not_null(position.is_some(), "startingPosition");
    if position.is_some() {
        not_null(kind.is_some(), "startingPosition.type");
    }
    let parsed_kind = kind.map(ShardIteratorType::parse);
    if let (Some(text), Some(None)) = (kind, parsed_kind) {
        violations.push(format!(
            "Value '{text}' at 'startingPosition.type' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
        ));
    }
    if let Some(shard_id) = shard_id
        && (shard_id.is_empty() || shard_id.len() > 128)
    {
        violations.push(format!(
            "Value '{shard_id}' at 'shardId' failed to satisfy constraint: Member must have length between 1 and 128"
        ));
    }
    if !violations.is_empty() {
        let n = violations.len();
        let noun = if n == 1 { "error" } else { "errors" };
        return Err(KinesisError::new(
            ErrorKind::Validation,
            format!("{n} validation {noun} detected: {}", violations.join("; ")),
        ));
    }
    Ok(SubscribeToShardInput {
        consumer_arn: consumer_arn.expect("validated as not null").to_owned(),
        shard_id: shard_id.expect("validated as not null").to_owned(),
        starting_position: StartingPosition {
            kind: parsed_kind
                .flatten()
                .expect("validated as not null and in the enum"),
            sequence_number: sequence_number.map(str::to_owned),
            timestamp_ms,
        },
    })
}

/// Serves a request that [`is_subscribe_to_shard`] routed here: the control plane through `api`,
/// the records through `fan_out`'s record log (see [`super::efo`]).
pub async fn handle_subscribe_to_shard<A: KinesisApi + Clone, R: RecordLog>(
    api: &A,
    fan_out: &EnhancedFanOut<R>,
    req: HttpRequest<'_>,
    auth: &AuthConfig,
    now: SystemTime,
) -> SubscribeReply<FanOutSubscription<A, R>> {
    // The ordinary handler owns every envelope error text; only a request that passes all of
    // the envelope checks is served here.
    let content_type = req
        .content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let protocol = match content_type {
        CONTENT_TYPE_JSON => Some(Protocol::Json),
        CONTENT_TYPE_CBOR => Some(Protocol::Cbor),
        _ => None,
    };
    let document = match protocol {
        _ if req.method != "POST" || req.body.is_empty() || !is_subscribe_to_shard(req.target) => {
            None
        }
        Some(Protocol::Json) => json::value::parse(req.body).ok(),
        Some(Protocol::Cbor) => crate::cbor::parse(req.body).ok(),
        None => None,
    }
    .filter(|doc| matches!(doc, JsonValue::Object(_)));
    let signature_ok = || match &auth.mode {
        AuthMode::Verify { credentials } => {
            sigv4::verify(&req, credentials, sigv4::KINESIS_SERVICE, api.region(), now).is_ok()
        }
        _ => true,
    };
    let (Some(protocol), Some(document)) = (protocol, document) else {
        return SubscribeReply::Complete(handle_kinesis_with(api, req, auth, now).await);
    };
    if check_auth(&req).is_err() || !signature_ok() {
        return SubscribeReply::Complete(handle_kinesis_with(api, req, auth, now).await);
    }

    let mut headers = vec![
        ("x-amzn-RequestId", request_id()),
        ("x-amz-id-2", extended_request_id()),
    ];
    if req.origin.is_some() {
        headers.push(("Access-Control-Allow-Origin", "*".to_owned()));
        headers.push((
            "Access-Control-Expose-Headers",
            CORS_EXPOSE_HEADERS.to_owned(),
        ));
    }
    let reply = Reply { headers };
    if let Err(e) = super::enforce::check_resource_policy(api, OPERATION, &document).await {
        return SubscribeReply::Complete(reply.error_in(protocol, &e));
    }
    let subscription = match decode_input(&document, protocol) {
        Ok(input) => fan_out.subscribe(api, input).await,
        Err(e) => Err(e),
    };
    match subscription {
        Ok(subscription) => {
            let head = reply.finish(200, CONTENT_TYPE_EVENT_STREAM, Vec::new());
            SubscribeReply::Stream {
                head,
                events: EventStream::new(subscription, protocol),
            }
        }
        Err(e) => SubscribeReply::Complete(reply.error_in(protocol, &e)),
    }
}

#[cfg(test)]
mod tests {
    //! The SubscribeToShard envelope and stream against the in-memory model: frames in order,
    //! payloads in the request's protocol, and envelope errors identical to other operations'.

    use futures_lite::future::block_on;
    use sluice_core::api::{
        CreateStreamInput, PutRecordsEntry, PutRecordsInput, RegisterStreamConsumerInput,
    };

    use super::*;
    use crate::kinesis::efo::SubscriptionLeases;
    use crate::model::Model;

    /// The model holding stream `s` with one record and an ACTIVE consumer, its fan-out, and the
    /// consumer's ARN.
    fn model_with_one_record() -> (Model, EnhancedFanOut<crate::model::ModelLog>, String) {
        let model = Model::default();
        let consumer = block_on(async {
            model
                .create_stream(CreateStreamInput {
                    stream_name: "s".into(),
                    shard_count: Some(1),
                    stream_mode: None,
                    tags: Vec::new(),
                })
                .await
                .expect("created");
            model
                .put_records(PutRecordsInput {
                    stream_name: "s".into(),
                    records: vec![PutRecordsEntry {
                        data: b"hello".to_vec().into(),
                        partition_key: "k".into(),
                        explicit_hash_key: None,
                    }],
                })
                .await
                .expect("stored");
            model
                .register_stream_consumer(RegisterStreamConsumerInput {
                    stream_name: "s".into(),
                    consumer_name: "c".into(),
                    tags: Vec::new(),
                })
                .await
                .expect("registered")
                .consumer_arn
        });
        let fan_out = EnhancedFanOut::new(model.log(), SubscriptionLeases::default());
        (model, fan_out, consumer)
    }

    fn request<'a>(content_type: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
        HttpRequest {
            method: "POST",
            path: "/",
            target: Some("Kinesis_20131202.SubscribeToShard"),
            content_type: Some(content_type),
            has_auth: true,
            body,
            ..HttpRequest::default()
        }
    }

    /// The first `count` frames of the stream as (event type, content type, payload). The model
    /// never waits for records, so after them a subscription sends empty events until its
    /// lifetime ends.
    fn frames<S: Subscription>(
        mut events: EventStream<S>,
        count: usize,
    ) -> Vec<(String, String, Vec<u8>)> {
        use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
        let mut out = Vec::new();
        while out.len() < count
            && let Some(frame) = block_on(events.next_frame())
        {
            let mut decoder = MessageFrameDecoder::new();
            let mut buffer = bytes::Bytes::from(frame);
            let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buffer).expect("valid")
            else {
                panic!("one whole message per frame");
            };
            let header = |name: &str| {
                message
                    .headers()
                    .iter()
                    .find(|h| h.name().as_str() == name)
                    .and_then(|h| h.value().as_string().ok())
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default()
            };
            out.push((
                header(":event-type"),
                header(":content-type"),
                message.payload().to_vec(),
            ));
        }
        out
    }

    #[test]
    fn a_json_subscription_streams_the_initial_response_then_events_with_a_continuation() {
        let (model, fan_out, consumer) = model_with_one_record();
        let body = format!(
            r#"{{"ConsumerARN":"{consumer}","ShardId":"shardId-000000000000","StartingPosition":{{"Type":"TRIM_HORIZON"}}}}"#
        );
        let reply = block_on(handle_subscribe_to_shard(
            &model,
            &fan_out,
            request(CONTENT_TYPE_JSON, body.as_bytes()),
            &AuthConfig::default(),
            SystemTime::UNIX_EPOCH,
        ));
        let SubscribeReply::Stream { head, events } = reply else {
            panic!("expected a stream, got {reply:?}");
        };
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(CONTENT_TYPE_EVENT_STREAM));
        let frames = frames(events, 2);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0],
            (
                "initial-response".into(),
                "application/json".into(),
                b"{}".to_vec()
            )
        );
        assert_eq!(frames[1].0, "SubscribeToShardEvent");
        let event: serde_json::Value = serde_json::from_slice(&frames[1].2).expect("JSON");
        assert_eq!(event["Records"][0]["Data"], "aGVsbG8=");
        assert_eq!(
            event["Records"][0]["SequenceNumber"],
            event["ContinuationSequenceNumber"]
        );
        assert_eq!(event["MillisBehindLatest"], 0);
    }

    #[test]
    fn a_cbor_subscription_gets_cbor_payloads_labelled_as_cbor() {
        let (model, fan_out, consumer) = model_with_one_record();
        let body = ciborium::Value::Map(vec![
            ("ConsumerARN".into(), consumer.into()),
            ("ShardId".into(), "shardId-000000000000".into()),
            (
                "StartingPosition".into(),
                ciborium::Value::Map(vec![("Type".into(), "TRIM_HORIZON".into())]),
            ),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&body, &mut bytes).expect("CBOR");
        let reply = block_on(handle_subscribe_to_shard(
            &model,
            &fan_out,
            request(CONTENT_TYPE_CBOR, &bytes),
            &AuthConfig::default(),
            SystemTime::UNIX_EPOCH,
        ));
        let SubscribeReply::Stream { events, .. } = reply else {
            panic!("expected a stream, got {reply:?}");
        };
        let frames = frames(events, 2);
        assert_eq!(
            frames[0],
            (
                "initial-response".into(),
                CONTENT_TYPE_CBOR.into(),
                vec![0xa0]
            )
        );
        let event: ciborium::Value = ciborium::from_reader(frames[1].2.as_slice()).expect("CBOR");
        let member = |v: &ciborium::Value, key: &str| {
            v.as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
                .map(|(_, v)| v.clone())
        };
        let records = member(&event, "Records").expect("Records");
        let first = &records.as_array().expect("a list")[0];
        assert_eq!(
            member(first, "Data"),
            Some(ciborium::Value::Bytes(b"hello".to_vec()))
        );
        assert!(member(&event, "ContinuationSequenceNumber").is_some());
    }

    #[test]
    fn envelope_and_validation_errors_are_ordinary_responses() {
        let (model, fan_out, _) = model_with_one_record();
        let unauthenticated = HttpRequest {
            has_auth: false,
            ..request(CONTENT_TYPE_JSON, b"{}")
        };
        let reply = block_on(handle_subscribe_to_shard(
            &model,
            &fan_out,
            unauthenticated,
            &AuthConfig::default(),
            SystemTime::UNIX_EPOCH,
        ));
        let SubscribeReply::Complete(response) = reply else {
            panic!("expected an error, got {reply:?}");
        };
        assert_eq!(response.status, 400);
        assert!(String::from_utf8_lossy(&response.body).contains("MissingAuthenticationToken"));

        let reply = block_on(handle_subscribe_to_shard(
            &model,
            &fan_out,
            request(CONTENT_TYPE_JSON, br#"{"ShardId":"shardId-000000000000"}"#),
            &AuthConfig::default(),
            SystemTime::UNIX_EPOCH,
        ));
        let SubscribeReply::Complete(response) = reply else {
            panic!("expected an error, got {reply:?}");
        };
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(body["__type"], "ValidationException");
        assert_eq!(
            body["message"],
            "2 validation errors detected: Value null at 'consumerARN' failed to satisfy constraint: Member must not be null; Value null at 'startingPosition' failed to satisfy constraint: Member must not be null"
        );
    }
}
