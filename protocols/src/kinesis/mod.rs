//! The Kinesis Data Streams front end for the JSON 1.1 and CBOR 1.1 protocols: the HTTP envelope
//! rules (method, content type, target, authentication, CORS), dispatch of
//! `X-Amz-Target: Kinesis_20131202.<Op>` to a [`KinesisApi`], and the error mapping.
//!
//! The envelope checks run in the order AWS's front end applies them, as recorded by kinesalite:
//! CORS preflight, method, empty body, content type, body syntax, target, authentication
//! (presence and completeness, then, when configured, the SigV4 signature), then the
//! operation's own decoding.
//!
//! Both protocols decode into the same document tree and go through the same validation
//! (`decode`), so a CBOR request gets exactly the ValidationException and
//! SerializationException texts a JSON one does. Responses and errors are written in the
//! protocol of the request (`encode` / `encode_cbor`). Authentication errors follow AWS: a JSON
//! body (400) for a JSON request, the XML form (403) for any other content type.

pub mod decode;
pub mod efo;
pub mod encode;
pub mod encode_cbor;
pub mod encode_control;
pub mod enforce;
pub mod error;
pub mod subscribe;

#[cfg(test)]
mod cbor_tests;

use std::time::SystemTime;

use rand::RngCore as _;
use sluice_core::api::{EncryptionType, KinesisApi, ListTagsForStreamInput};
use sluice_core::{ErrorKind, KinesisError};

use crate::json::{self, JsonValue};
use crate::sigv4::{self, AuthConfig, AuthError, AuthMode};
use crate::{HttpRequest, HttpResponse};
use decode::{Home, Obj};

pub const TARGET_PREFIX: &str = "Kinesis_20131202";
pub const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
pub const CONTENT_TYPE_CBOR: &str = "application/x-amz-cbor-1.1";
/// The legacy content type AWS still recognises but answers with an `Output` envelope.
const CONTENT_TYPE_PLAIN_JSON: &str = "application/json";
const CORS_EXPOSE_HEADERS: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";
const CORS_MAX_AGE_S: &str = "172800";

/// The wire protocol of a request, which its response and errors use too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-amz-json-1.1`
    Json,
    /// `application/x-amz-cbor-1.1`, the Java SDK's default.
    Cbor,
}

/// The operations this front end serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    CreateStream,
    DeleteStream,
    DescribeStream,
    DescribeStreamSummary,
    ListStreams,
    ListShards,
    PutRecord,
    PutRecords,
    GetShardIterator,
    GetRecords,
    AddTagsToStream,
    RemoveTagsFromStream,
    ListTagsForStream,
    IncreaseStreamRetentionPeriod,
    DecreaseStreamRetentionPeriod,
    SplitShard,
    MergeShards,
    UpdateShardCount,
    UpdateStreamMode,
    DescribeLimits,
    EnableEnhancedMonitoring,
    DisableEnhancedMonitoring,
    UpdateMaxRecordSize,
    StartStreamEncryption,
    StopStreamEncryption,
    UpdateStreamWarmThroughput,
    DescribeAccountSettings,
    UpdateAccountSettings,
    RegisterStreamConsumer,
    DeregisterStreamConsumer,
    DescribeStreamConsumer,
    ListStreamConsumers,
    PutResourcePolicy,
    GetResourcePolicy,
    DeleteResourcePolicy,
    TagResource,
    UntagResource,
    ListTagsForResource,
    /// An operation of the model that a single-node appliance cannot honour (see
    /// [`UNSUPPORTED_OPERATIONS`]); answered with an error naming why.
    Unsupported(&'static str),
}

impl Operation {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "CreateStream" => Self::CreateStream,
            "DeleteStream" => Self::DeleteStream,
            "DescribeStream" => Self::DescribeStream,
            "DescribeStreamSummary" => Self::DescribeStreamSummary,
            "ListStreams" => Self::ListStreams,
            "ListShards" => Self::ListShards,
            "PutRecord" => Self::PutRecord,
            "PutRecords" => Self::PutRecords,
            "GetShardIterator" => Self::GetShardIterator,
            "GetRecords" => Self::GetRecords,
            "AddTagsToStream" => Self::AddTagsToStream,
            "RemoveTagsFromStream" => Self::RemoveTagsFromStream,
            "ListTagsForStream" => Self::ListTagsForStream,
            "IncreaseStreamRetentionPeriod" => Self::IncreaseStreamRetentionPeriod,
            "DecreaseStreamRetentionPeriod" => Self::DecreaseStreamRetentionPeriod,
            "SplitShard" => Self::SplitShard,
            "MergeShards" => Self::MergeShards,
            "UpdateShardCount" => Self::UpdateShardCount,
            "UpdateStreamMode" => Self::UpdateStreamMode,
            "DescribeLimits" => Self::DescribeLimits,
            "EnableEnhancedMonitoring" => Self::EnableEnhancedMonitoring,
            "DisableEnhancedMonitoring" => Self::DisableEnhancedMonitoring,
            "UpdateMaxRecordSize" => Self::UpdateMaxRecordSize,
            "StartStreamEncryption" => Self::StartStreamEncryption,
            "StopStreamEncryption" => Self::StopStreamEncryption,
            "UpdateStreamWarmThroughput" => Self::UpdateStreamWarmThroughput,
            "DescribeAccountSettings" => Self::DescribeAccountSettings,
            "UpdateAccountSettings" => Self::UpdateAccountSettings,
            "RegisterStreamConsumer" => Self::RegisterStreamConsumer,
            "DeregisterStreamConsumer" => Self::DeregisterStreamConsumer,
            "DescribeStreamConsumer" => Self::DescribeStreamConsumer,
            "ListStreamConsumers" => Self::ListStreamConsumers,
            "PutResourcePolicy" => Self::PutResourcePolicy,
            "GetResourcePolicy" => Self::GetResourcePolicy,
            "DeleteResourcePolicy" => Self::DeleteResourcePolicy,
            "TagResource" => Self::TagResource,
            "UntagResource" => Self::UntagResource,
            "ListTagsForResource" => Self::ListTagsForResource,
            other => match UNSUPPORTED_OPERATIONS.iter().find(|(op, _)| *op == other) {
                Some((op, _)) => Self::Unsupported(op),
                None => return None,
            },
        })
    }
}

/// The operations of the current model that Sluice answers with an error, and why. They all
/// belong to Kinesis features that live outside a stream store: delivery channels to S3 / S3
/// Tables, SQS-like queues over streams with their dead-letter queues, and on-demand record
/// placement strategies. No peer emulator implements them either.
pub const UNSUPPORTED_OPERATIONS: [(&str, &str); 18] = [
    ("AcknowledgeDeadLetterQueueRecords", QUEUES_UNSUPPORTED),
    ("AcknowledgeQueueRecords", QUEUES_UNSUPPORTED),
    ("CreateChannel", CHANNELS_UNSUPPORTED),
    ("CreateQueue", QUEUES_UNSUPPORTED),
    ("DeleteChannel", CHANNELS_UNSUPPORTED),
    ("DeleteQueue", QUEUES_UNSUPPORTED),
    ("DescribeChannel", CHANNELS_UNSUPPORTED),
    ("DescribeQueue", QUEUES_UNSUPPORTED),
    ("ListChannels", CHANNELS_UNSUPPORTED),
    ("ListQueues", QUEUES_UNSUPPORTED),
    ("ReceiveDeadLetterQueueRecords", QUEUES_UNSUPPORTED),
    ("ReceiveQueueRecords", QUEUES_UNSUPPORTED),
    ("RestoreDeadLetterQueueRecords", QUEUES_UNSUPPORTED),
    ("UpdateChannel", CHANNELS_UNSUPPORTED),
    ("UpdateDeadLetterQueueRecordsVisibility", QUEUES_UNSUPPORTED),
    ("UpdateQueue", QUEUES_UNSUPPORTED),
    ("UpdateQueueRecordsVisibility", QUEUES_UNSUPPORTED),
    (
        "UpdateStreamRecordDistributionStrategy",
        "Sluice does not support record distribution strategies: every stream places records by partition key (USER_PARTITION_KEY), and the appliance has no on-demand capacity to rebalance.",
    ),
];
const CHANNELS_UNSUPPORTED: &str = "Sluice does not support channels: it is a single-node stream store and has no delivery to Amazon S3 or S3 Tables. Read the stream with GetRecords or SubscribeToShard instead.";
const QUEUES_UNSUPPORTED: &str = "Sluice does not support queues or dead-letter queues: it is a single-node stream store without the queue service. Read the stream with GetRecords or SubscribeToShard instead.";

/// Every operation of the current Kinesis model (botocore 1.44.8), served or not. A name from
/// this list that [`Operation::parse`] does not know is answered `UnknownOperationException` after
/// the authentication check, like a real operation this build lacks.
pub const MODEL_OPERATIONS: [&str; 57] = [
    "AcknowledgeDeadLetterQueueRecords",
    "AcknowledgeQueueRecords",
    "AddTagsToStream",
    "CreateChannel",
    "CreateQueue",
    "CreateStream",
    "DecreaseStreamRetentionPeriod",
    "DeleteChannel",
    "DeleteQueue",
    "DeleteResourcePolicy",
    "DeleteStream",
    "DeregisterStreamConsumer",
    "DescribeAccountSettings",
    "DescribeChannel",
    "DescribeLimits",
    "DescribeQueue",
    "DescribeStream",
    "DescribeStreamConsumer",
    "DescribeStreamSummary",
    "DisableEnhancedMonitoring",
    "EnableEnhancedMonitoring",
    "GetRecords",
    "GetResourcePolicy",
    "GetShardIterator",
    "IncreaseStreamRetentionPeriod",
    "ListChannels",
    "ListQueues",
    "ListShards",
    "ListStreamConsumers",
    "ListStreams",
    "ListTagsForResource",
    "ListTagsForStream",
    "MergeShards",
    "PutRecord",
    "PutRecords",
    "PutResourcePolicy",
    "ReceiveDeadLetterQueueRecords",
    "ReceiveQueueRecords",
    "RegisterStreamConsumer",
    "RemoveTagsFromStream",
    "RestoreDeadLetterQueueRecords",
    "SplitShard",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "SubscribeToShard",
    "TagResource",
    "UntagResource",
    "UpdateAccountSettings",
    "UpdateChannel",
    "UpdateDeadLetterQueueRecordsVisibility",
    "UpdateMaxRecordSize",
    "UpdateQueue",
    "UpdateQueueRecordsVisibility",
    "UpdateShardCount",
    "UpdateStreamMode",
    "UpdateStreamRecordDistributionStrategy",
    "UpdateStreamWarmThroughput",
];

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// AWS's extended request id: base64 of 72 random bytes.
fn extended_request_id() -> String {
    let mut bytes = [0u8; 72];
    rand::rng().fill_bytes(&mut bytes);
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// A response under construction: the common headers are already in place.
struct Reply {
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn finish(mut self, status: u16, content_type: &str, body: Vec<u8>) -> HttpResponse {
        self.headers.push(("Content-Type", content_type.to_owned()));
        HttpResponse {
            status,
            headers: self.headers,
            body,
        }
    }

    fn json(self, status: u16, body: Vec<u8>) -> HttpResponse {
        self.finish(status, CONTENT_TYPE_JSON, body)
    }

    fn error(self, error: &KinesisError) -> HttpResponse {
        let (status, body) = error::error_body(error);
        self.json(status, body)
    }

    fn error_in(self, protocol: Protocol, error: &KinesisError) -> HttpResponse {
        match protocol {
            Protocol::Json => self.error(error),
            Protocol::Cbor => {
                let (status, body) = error::error_body_cbor(error);
                self.finish(status, CONTENT_TYPE_CBOR, body)
            }
        }
    }

    /// An authentication failure: JSON for a JSON request, AWS's XML form for anything else.
    fn auth_error(self, protocol: Protocol, type_name: &str, message: &str) -> HttpResponse {
        match protocol {
            Protocol::Json => {
                let mut body = Vec::with_capacity(48 + message.len());
                body.extend_from_slice(b"{\"__type\":");
                json::writer::write_str(&mut body, type_name);
                body.extend_from_slice(b",\"message\":");
                json::writer::write_str(&mut body, message);
                body.push(b'}');
                self.json(400, body)
            }
            Protocol::Cbor => self.xml_error(type_name, &xml_escape(message)),
        }
    }

    /// The XML error AWS sends when it cannot tell which service or protocol was meant.
    /// AWS sends these without any `Content-Type`.
    fn xml_error(self, type_name: &str, message: &str) -> HttpResponse {
        let body = format!("<{type_name}>\n  <Message>{message}</Message>\n</{type_name}>\n");
        self.untyped(403, body.into_bytes())
    }

    fn untyped(self, status: u16, body: Vec<u8>) -> HttpResponse {
        HttpResponse {
            status,
            headers: self.headers,
            body,
        }
    }

    /// `{"__type": type_name}` in the request's protocol: JSON for the JSON content type, CBOR
    /// for anything else (AWS's default protocol).
    fn bare_type(self, is_json: bool, type_name: &str) -> HttpResponse {
        if is_json {
            let mut body = Vec::with_capacity(48);
            body.extend_from_slice(b"{\"__type\":");
            json::writer::write_str(&mut body, type_name);
            body.push(b'}');
            self.json(400, body)
        } else {
            let mut body = Vec::with_capacity(48);
            body.push(0xa1); // map of one pair
            cbor_text(&mut body, "__type");
            cbor_text(&mut body, type_name);
            self.finish(400, CONTENT_TYPE_CBOR, body)
        }
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A CBOR text string (major type 3).
fn cbor_text(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 24 {
        out.push(0x60 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0x78, n as u8]);
    } else {
        let n = u16::try_from(n).expect("CBOR error texts are short");
        out.push(0x79);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// Serves one Kinesis request, accepting any well-formed SigV4 authentication without checking
/// the signature (the loopback default).
pub async fn handle_kinesis<A: KinesisApi>(api: &A, req: HttpRequest<'_>) -> HttpResponse {
    const ACCEPT_ANY: AuthConfig = AuthConfig {
        mode: AuthMode::AcceptAny,
    };
    handle_kinesis_with(api, req, &ACCEPT_ANY, SystemTime::UNIX_EPOCH).await
}

/// Serves one Kinesis request (JSON 1.1 or CBOR 1.1). With [`AuthMode::Verify`] the SigV4
/// signature is checked against `auth`'s credentials at time `now` (which the caller passes so
/// that this stays free of clocks); `req.headers` must then hold every request header.
pub async fn handle_kinesis_with<A: KinesisApi>(
    api: &A,
    req: HttpRequest<'_>,
    auth: &AuthConfig,
    now: SystemTime,
) -> HttpResponse {
    handle_kinesis_within(api, req, auth, now, ReplyLimits::default()).await
}

/// What a front end's memory budget allows one answer to hold (see [`handle_kinesis_within`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyLimits {
    /// The data bytes a GetRecords answer may carry (at least one record is always returned);
    /// `None` means the API's 10 MiB.
    pub get_records_bytes_max: Option<usize>,
    /// The records a GetRecords answer may carry, below the client's `Limit`; `None` means the
    /// client's.
    pub get_records_records_max: Option<u32>,
}

/// [`handle_kinesis_with`] with answers held to `limits`: a front end that reserved part of its
/// memory budget for a GetRecords answer passes the matching byte cap, so the answer never
/// holds more than it reserved.
pub async fn handle_kinesis_within<A: KinesisApi>(
    api: &A,
    req: HttpRequest<'_>,
    auth: &AuthConfig,
    now: SystemTime,
    limits: ReplyLimits,
) -> HttpResponse {
    let mut headers = Vec::with_capacity(8);
    headers.push(("x-amzn-RequestId", request_id()));
    let is_preflight = req.method == "OPTIONS" && req.origin.is_some();
    if !is_preflight {
        headers.push(("x-amz-id-2", extended_request_id()));
    }
    if req.origin.is_some() {
        headers.push(("Access-Control-Allow-Origin", "*".to_owned()));
        if is_preflight {
            if let Some(h) = req.access_control_request_headers {
                headers.push(("Access-Control-Allow-Headers", h.to_owned()));
            }
            if let Some(m) = req.access_control_request_method {
                headers.push(("Access-Control-Allow-Methods", m.to_owned()));
            }
            headers.push(("Access-Control-Max-Age", CORS_MAX_AGE_S.to_owned()));
            // AWS answers a preflight with no body and no Content-Type.
            return Reply { headers }.untyped(200, Vec::new());
        }
        headers.push((
            "Access-Control-Expose-Headers",
            CORS_EXPOSE_HEADERS.to_owned(),
        ));
    }
    let reply = Reply { headers };

    if req.method != "POST" {
        return reply.xml_error(
            "AccessDeniedException",
            "Unable to determine service/operation name to be authorized",
        );
    }

    let content_type = req
        .content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let is_json = content_type == CONTENT_TYPE_JSON;
    let content_valid =
        is_json || content_type == CONTENT_TYPE_CBOR || content_type == CONTENT_TYPE_PLAIN_JSON;
    let (service, operation_name) = match req.target.unwrap_or("").split_once('.') {
        Some((s, o)) => (s, o),
        None => (req.target.unwrap_or(""), ""),
    };
    let service_valid = service == TARGET_PREFIX;
    let in_model = MODEL_OPERATIONS.contains(&operation_name);

    if req.body.is_empty() {
        let type_name = if service_valid && in_model {
            "SerializationException"
        } else {
            "UnknownOperationException"
        };
        return reply.bare_type(is_json, type_name);
    }
    if !content_valid {
        if service.is_empty() || operation_name.is_empty() {
            return reply.xml_error(
                "AccessDeniedException",
                "Unable to determine service/operation name to be authorized",
            );
        }
        return reply.untyped(404, b"<UnknownOperationException/>\n".to_vec());
    }
    let protocol = if content_type == CONTENT_TYPE_CBOR {
        Protocol::Cbor
    } else {
        Protocol::Json
    };
    let document = match protocol {
        Protocol::Json => match json::value::parse(req.body) {
            Ok(doc @ JsonValue::Object(_)) => Some(doc),
            _ => None,
        },
        Protocol::Cbor => match crate::cbor::parse(req.body) {
            Ok(doc @ JsonValue::Object(_)) => Some(doc),
            _ => None,
        },
    };
    if content_type == CONTENT_TYPE_PLAIN_JSON {
        let (status, type_name) = if document.is_none() {
            (400, "SerializationException")
        } else {
            (404, "UnknownOperationException")
        };
        let body = format!(
            r#"{{"Output":{{"__type":"com.amazon.coral.service#{type_name}"}},"Version":"1.0"}}"#
        );
        return reply.finish(status, CONTENT_TYPE_PLAIN_JSON, body.into_bytes());
    }
    let Some(document) = document else {
        return reply.error_in(protocol, &KinesisError::new(ErrorKind::Serialization, ""));
    };
    if !service_valid || !in_model {
        return reply.error_in(
            protocol,
            &KinesisError::new(ErrorKind::UnknownOperation, ""),
        );
    }
    if let Err(error) = check_auth(&req) {
        let (type_name, _) = error::error_shape(error.kind);
        return reply.auth_error(protocol, type_name, &error.message);
    }
    if let AuthMode::Verify { credentials } = &auth.mode
        && let Err(AuthError { type_name, message }) =
            sigv4::verify(&req, credentials, sigv4::KINESIS_SERVICE, api.region(), now)
    {
        return reply.auth_error(protocol, type_name, &message);
    }
    let Some(operation) = Operation::parse(operation_name) else {
        return reply.error_in(
            protocol,
            &KinesisError::new(ErrorKind::UnknownOperation, ""),
        );
    };

    if let Err(e) = enforce::check_resource_policy(api, operation_name, &document).await {
        return reply.error_in(protocol, &e);
    }
    let body = match protocol {
        Protocol::Json => Obj::new(&document),
        Protocol::Cbor => Obj::new_cbor(&document),
    };
    match dispatch(api, operation, body, protocol, limits).await {
        Ok(body) => match protocol {
            Protocol::Json => reply.json(200, body),
            Protocol::Cbor => reply.finish(200, CONTENT_TYPE_CBOR, body),
        },
        Err(e) => reply.error_in(protocol, &e),
    }
}

/// AWS's checks on the presence and shape of SigV4 authentication, before any signature is
/// verified: exactly one of header or query authentication, and each with all its parts.
fn check_auth(req: &HttpRequest<'_>) -> Result<(), KinesisError> {
    let header_auth = req.authorization.is_some();
    let query_params = || {
        req.query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    };
    let query_auth = query_params().any(|(k, _)| k == "X-Amz-Algorithm");
    if header_auth && query_auth {
        return Err(KinesisError::new(
            ErrorKind::InvalidSignature,
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.",
        ));
    }
    if !header_auth && !query_auth && !req.has_auth {
        return Err(KinesisError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    }
    let mut message = String::new();
    if let Some(authorization) = req.authorization {
        // The first token names the algorithm; the rest are `Name=value` parts separated by
        // commas and/or spaces. A later repeat of a name wins.
        let parts: Vec<(&str, &str)> = authorization
            .split([',', ' '])
            .skip(1)
            .filter(|t| !t.is_empty())
            .map(|t| {
                let mut pieces = t.trim().split('=');
                (pieces.next().unwrap_or(""), pieces.next().unwrap_or(""))
            })
            .collect();
        let has = |name: &str| {
            parts
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .is_some_and(|(_, v)| !v.is_empty())
        };
        for name in ["Credential", "Signature", "SignedHeaders"] {
            if !has(name) {
                message.push_str(&format!(
                    "Authorization header requires '{name}' parameter. "
                ));
            }
        }
        if !req.has_date {
            message.push_str("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
        }
        if !message.is_empty() {
            message.push_str("Authorization=");
            message.push_str(authorization);
        }
    } else if query_auth {
        for name in [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "X-Amz-SignedHeaders",
            "X-Amz-Date",
        ] {
            if !query_params().any(|(k, v)| k == name && !v.is_empty()) {
                message.push_str(&format!(
                    "AWS query-string parameters must include '{name}'. "
                ));
            }
        }
        if !message.is_empty() {
            message.push_str("Re-examine the query-string parameters.");
        }
    }
    if message.is_empty() {
        Ok(())
    } else {
        Err(KinesisError::new(ErrorKind::IncompleteSignature, message))
    }
}

/// Picks the JSON or the CBOR writer of an output shape.
macro_rules! encode_in {
    ($protocol:expr, $shape:ident($($arg:expr),* $(,)?)) => {
        match $protocol {
            Protocol::Json => encode::$shape($($arg),*),
            Protocol::Cbor => encode_cbor::$shape($($arg),*),
        }
    };
}

/// Writes a control-plane answer in the request's protocol.
fn write_doc(protocol: Protocol, doc: &encode_control::Doc) -> Vec<u8> {
    match protocol {
        Protocol::Json => encode_control::to_json(doc),
        Protocol::Cbor => encode_control::to_cbor(doc),
    }
}

/// Decodes the input of `operation`, calls the API and encodes its output in `protocol`.
/// Operations without output answer an empty body.
pub async fn dispatch<A: KinesisApi>(
    api: &A,
    operation: Operation,
    body: Obj<'_, '_>,
    protocol: Protocol,
    limits: ReplyLimits,
) -> Result<Vec<u8>, KinesisError> {
    let home = Home {
        region: api.region(),
        account_id: api.account_id(),
    };
    match operation {
        Operation::CreateStream => {
            api.create_stream(decode::create_stream(body)?).await?;
            Ok(Vec::new())
        }
        Operation::DeleteStream => {
            api.delete_stream(decode::delete_stream(home, body)?)
                .await?;
            Ok(Vec::new())
        }
        Operation::DescribeStream => {
            let output = api
                .describe_stream(decode::describe_stream(home, body)?)
                .await?;
            Ok(write_doc(
                protocol,
                &encode_control::describe_stream(&output),
            ))
        }
        Operation::DescribeStreamSummary => {
            let output = api
                .describe_stream_summary(decode::stream_only(home, body)?)
                .await?;
            Ok(write_doc(
                protocol,
                &encode_control::describe_stream_summary(&output),
            ))
        }
        Operation::ListStreams => {
            let output = api.list_streams(decode::list_streams(body)?).await?;
            Ok(write_doc(protocol, &encode_control::list_streams(&output)))
        }
        Operation::ListShards => {
            let output = api.list_shards(decode::list_shards(home, body)?).await?;
            Ok(write_doc(protocol, &encode_control::list_shards(&output)))
        }
        Operation::PutRecord => {
            let output = api.put_record(decode::put_record(home, body)?).await?;
            Ok(encode_in!(
                protocol,
                put_record(
                    &output.shard_id,
                    output.sequence_number,
                    encryption_type_str(output.encryption_type),
                )
            ))
        }
        Operation::PutRecords => {
            let input = decode::put_records(home, body)?;
            let n = input.records.len();
            let output = api.put_records(input).await?;
            if output.records.len() != n {
                return Err(KinesisError::internal(
                    "PutRecords returned a different number of results",
                ));
            }
            Ok(encode_in!(protocol, put_records(&output)))
        }
        Operation::GetShardIterator => {
            let iterator = api
                .get_shard_iterator(decode::get_shard_iterator(home, body)?)
                .await?;
            Ok(encode_in!(protocol, get_shard_iterator(&iterator)))
        }
        Operation::GetRecords => {
            let mut input = decode::get_records(body)?;
            input.bytes_max = limits.get_records_bytes_max;
            if let Some(cap) = limits.get_records_records_max {
                input.limit = Some(input.limit.map_or(cap, |limit| limit.min(cap)).max(1));
            }
            let output = api.get_records(input).await?;
            Ok(encode_in!(protocol, get_records(&output)))
        }
        Operation::AddTagsToStream => {
            let (stream_name, tags) = decode::add_tags_to_stream(home, body)?;
            api.add_tags_to_stream(stream_name, tags).await?;
            Ok(Vec::new())
        }
        Operation::RemoveTagsFromStream => {
            let (stream_name, keys) = decode::remove_tags_from_stream(home, body)?;
            api.remove_tags_from_stream(stream_name, keys).await?;
            Ok(Vec::new())
        }
        Operation::ListTagsForStream => {
            let input: ListTagsForStreamInput = decode::list_tags_for_stream(home, body)?;
            let output = api.list_tags_for_stream(input).await?;
            Ok(write_doc(
                protocol,
                &encode_control::list_tags_for_stream(&output),
            ))
        }
        Operation::IncreaseStreamRetentionPeriod => {
            let (stream_name, hours) = decode::retention_period(home, body)?;
            api.increase_stream_retention_period(stream_name, hours)
                .await?;
            Ok(Vec::new())
        }
        Operation::DecreaseStreamRetentionPeriod => {
            let (stream_name, hours) = decode::retention_period(home, body)?;
            api.decrease_stream_retention_period(stream_name, hours)
                .await?;
            Ok(Vec::new())
        }
        _ => dispatch_control(api, operation, body, protocol, home).await,
    }
}

/// The control-plane operations whose outputs `encode_control` writes.
async fn dispatch_control<A: KinesisApi>(
    api: &A,
    operation: Operation,
    body: Obj<'_, '_>,
    protocol: Protocol,
    home: Home<'_>,
) -> Result<Vec<u8>, KinesisError> {
    use encode_control as out;
    let doc = match operation {
        Operation::SplitShard => {
            api.split_shard(decode::split_shard(home, body)?).await?;
            None
        }
        Operation::MergeShards => {
            api.merge_shards(decode::merge_shards(home, body)?).await?;
            None
        }
        Operation::UpdateShardCount => {
            let output = api
                .update_shard_count(decode::update_shard_count(home, body)?)
                .await?;
            Some(out::update_shard_count(&output))
        }
        Operation::UpdateStreamMode => {
            api.update_stream_mode(decode::update_stream_mode(home, body)?)
                .await?;
            None
        }
        Operation::DescribeLimits => Some(out::describe_limits(&api.describe_limits().await?)),
        Operation::EnableEnhancedMonitoring => {
            let (stream_name, metrics) = decode::enhanced_monitoring(home, body)?;
            let output = api.enable_enhanced_monitoring(stream_name, metrics).await?;
            Some(out::enhanced_monitoring(&output))
        }
        Operation::DisableEnhancedMonitoring => {
            let (stream_name, metrics) = decode::enhanced_monitoring(home, body)?;
            let output = api
                .disable_enhanced_monitoring(stream_name, metrics)
                .await?;
            Some(out::enhanced_monitoring(&output))
        }
        Operation::UpdateMaxRecordSize => {
            let (stream_name, kib) = decode::update_max_record_size(home, body)?;
            api.update_max_record_size(stream_name, kib).await?;
            None
        }
        Operation::StartStreamEncryption => {
            api.start_stream_encryption(decode::stream_encryption(home, body)?)
                .await?;
            None
        }
        Operation::StopStreamEncryption => {
            api.stop_stream_encryption(decode::stream_encryption(home, body)?)
                .await?;
            None
        }
        Operation::UpdateStreamWarmThroughput => {
            let (stream_name, mibps) = decode::update_stream_warm_throughput(home, body)?;
            let output = api
                .update_stream_warm_throughput(stream_name, mibps)
                .await?;
            Some(out::update_stream_warm_throughput(&output))
        }
        Operation::DescribeAccountSettings => {
            let commitment = api.describe_account_settings().await?;
            Some(out::account_settings(commitment.as_ref()))
        }
        Operation::UpdateAccountSettings => {
            let enable = decode::update_account_settings(body)?;
            let commitment = api.update_account_settings(enable).await?;
            Some(out::account_settings(commitment.as_ref()))
        }
        Operation::RegisterStreamConsumer => {
            let output = api
                .register_stream_consumer(decode::register_stream_consumer(home, body)?)
                .await?;
            Some(out::register_stream_consumer(&output))
        }
        Operation::DeregisterStreamConsumer => {
            api.deregister_stream_consumer(decode::consumer_ref(home, body)?)
                .await?;
            None
        }
        Operation::DescribeStreamConsumer => {
            let output = api
                .describe_stream_consumer(decode::consumer_ref(home, body)?)
                .await?;
            Some(out::describe_stream_consumer(&output))
        }
        Operation::ListStreamConsumers => {
            let output = api
                .list_stream_consumers(decode::list_stream_consumers(home, body)?)
                .await?;
            Some(out::list_stream_consumers(&output))
        }
        Operation::PutResourcePolicy => {
            let (arn, policy) = decode::put_resource_policy(body)?;
            api.put_resource_policy(arn, policy).await?;
            None
        }
        Operation::GetResourcePolicy => {
            let policy = api.get_resource_policy(decode::resource_arn(body)?).await?;
            Some(out::get_resource_policy(&policy))
        }
        Operation::DeleteResourcePolicy => {
            api.delete_resource_policy(decode::resource_arn(body)?)
                .await?;
            None
        }
        Operation::TagResource => {
            let (arn, tags) = decode::tag_resource(body)?;
            api.tag_resource(arn, tags).await?;
            None
        }
        Operation::UntagResource => {
            let (arn, keys) = decode::untag_resource(body)?;
            api.untag_resource(arn, keys).await?;
            None
        }
        Operation::ListTagsForResource => {
            let tags = api
                .list_tags_for_resource(decode::resource_arn(body)?)
                .await?;
            Some(out::list_tags_for_resource(&tags))
        }
        Operation::Unsupported(name) => {
            let why = UNSUPPORTED_OPERATIONS
                .iter()
                .find(|(op, _)| *op == name)
                .map_or("Sluice does not support this operation.", |(_, why)| why);
            return Err(KinesisError::invalid_argument(why));
        }
        Operation::CreateStream
        | Operation::DeleteStream
        | Operation::DescribeStream
        | Operation::DescribeStreamSummary
        | Operation::ListStreams
        | Operation::ListShards
        | Operation::PutRecord
        | Operation::PutRecords
        | Operation::GetShardIterator
        | Operation::GetRecords
        | Operation::AddTagsToStream
        | Operation::RemoveTagsFromStream
        | Operation::ListTagsForStream
        | Operation::IncreaseStreamRetentionPeriod
        | Operation::DecreaseStreamRetentionPeriod => {
            unreachable!("dispatch serves the stream operations itself")
        }
    };
    Ok(match doc {
        None => Vec::new(),
        Some(doc) => write_doc(protocol, &doc),
    })
}

const fn encryption_type_str(e: EncryptionType) -> &'static str {
    e.as_str()
}
