//! End-to-end tests of the Kinesis front end (`handle_kinesis`) against an in-memory model, plus
//! decoder and encoder tests that pin AWS's exact texts and shapes.

use futures_lite::future::block_on;
use serde_json::{Value, json};
use sluice_core::api::{
    ChildShard, GetRecordsOutput, OwnedRecord, PutRecordsOutput, PutRecordsResultEntry,
};
use sluice_core::{ErrorKind, HashRange, KinesisError, SequenceNumber};

use crate::json::value::parse;
use crate::kinesis::decode::{self, Home, Obj};
use crate::kinesis::encode;
use crate::model::{ACCOUNT, Model, REGION};
use crate::{HttpRequest, HttpResponse, handle_kinesis};

const HOME: Home<'static> = Home {
    region: REGION,
    account_id: ACCOUNT,
};

fn request<'a>(target: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path: "/",
        target: Some(target),
        content_type: Some("application/x-amz-json-1.1"),
        has_auth: true,
        body,
        ..HttpRequest::default()
    }
}

fn send(model: &Model, req: HttpRequest<'_>) -> HttpResponse {
    block_on(handle_kinesis(model, req))
}

/// Calls `op` with a JSON body and returns the status and the parsed body (`Null` when empty).
fn call(model: &Model, op: &str, body: Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(&body).expect("test bodies serialise");
    let target = format!("Kinesis_20131202.{op}");
    let response = send(model, request(&target, &bytes));
    let parsed = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).expect("responses are JSON")
    };
    (response.status, parsed)
}

fn error_of(model: &Model, op: &str, body: Value) -> (String, String) {
    let (status, v) = call(model, op, body);
    assert_eq!(status, 400, "{v}");
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    (
        v["__type"]
            .as_str()
            .expect("errors have a __type")
            .to_owned(),
        message.to_owned(),
    )
}

fn validation(model: &Model, op: &str, body: Value) -> String {
    let (kind, message) = error_of(model, op, body);
    assert_eq!(kind, "ValidationException", "{message}");
    message
}

fn serialization(model: &Model, op: &str, body: Value) -> String {
    let (status, v) = call(model, op, body);
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "SerializationException", "{v}");
    v["Message"]
        .as_str()
        .expect("SerializationException uses a capital Message")
        .to_owned()
}

fn model_with_stream(name: &str, shards: u32) -> Model {
    let model = Model::default();
    let (status, body) = call(
        &model,
        "CreateStream",
        json!({"StreamName": name, "ShardCount": shards}),
    );
    assert_eq!((status, body), (200, Value::Null));
    model
}

// ---------------------------------------------------------------------------------------------
// Envelope.

#[test]
fn every_response_carries_a_request_id_an_extended_id_and_the_json_content_type() {
    let model = Model::default();
    let r = send(&model, request("Kinesis_20131202.ListStreams", b"{}"));
    assert_eq!(r.status, 200);
    let id = r.header("x-amzn-RequestId").expect("request id");
    assert_eq!(id.len(), 36);
    assert_eq!(id.as_bytes()[14], b'4', "a version 4 UUID: {id}");
    let id2 = r.header("x-amz-id-2").expect("extended request id");
    assert_eq!(
        base64_simd::STANDARD
            .decode_to_vec(id2)
            .expect("base64")
            .len(),
        72
    );
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    let other = send(&model, request("Kinesis_20131202.ListStreams", b"{}"));
    assert_ne!(other.header("x-amzn-RequestId"), Some(id));
}

#[test]
fn non_post_methods_get_a_403_xml_access_denied() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            method: "GET",
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        String::from_utf8(r.body).expect("utf8"),
        "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n"
    );
}

#[test]
fn cors_preflight_is_200_and_echoes_the_requested_headers_and_method() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            method: "OPTIONS",
            origin: Some("http://example.com"),
            access_control_request_headers: Some("x-amz-target"),
            access_control_request_method: Some("POST"),
            ..HttpRequest::default()
        },
    );
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        r.header("Access-Control-Allow-Headers"),
        Some("x-amz-target")
    );
    assert_eq!(r.header("Access-Control-Allow-Methods"), Some("POST"));
    assert_eq!(r.header("Access-Control-Max-Age"), Some("172800"));
    assert!(r.header("x-amz-id-2").is_none());
}

#[test]
fn an_origin_adds_cors_headers_to_ordinary_responses() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            origin: Some("http://x"),
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(
        r.header("Access-Control-Expose-Headers")
            .expect("expose")
            .contains("x-amzn-RequestId")
    );
}

#[test]
fn a_request_without_any_auth_gets_missing_authentication_token() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            has_auth: false,
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        br#"{"__type":"MissingAuthenticationTokenException","message":"Missing Authentication Token"}"#
    );
}

#[test]
fn incomplete_sigv4_authentication_is_named_part_by_part() {
    let model = Model::default();
    let incomplete = |req: HttpRequest<'_>| {
        let r = send(&model, req);
        assert_eq!(r.status, 400);
        let v: Value = serde_json::from_slice(&r.body).expect("JSON error");
        (
            v["__type"].as_str().unwrap_or("").to_owned(),
            v["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let base = request("Kinesis_20131202.ListStreams", b"{}");
    assert_eq!(
        incomplete(HttpRequest { authorization: Some("AWS4- Signature=b,Credential=a"), has_date: true, ..base }),
        (
            "IncompleteSignatureException".to_owned(),
            "Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4- Signature=b,Credential=a".to_owned()
        )
    );
    assert_eq!(
        incomplete(HttpRequest {
            authorization: Some("a"),
            has_date: false,
            ..base
        })
        .1,
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=a"
    );
    assert_eq!(
        incomplete(HttpRequest {
            query: Some("X-Amz-Algorithm=&X-Amz-Date=1"),
            ..base
        })
        .1,
        "AWS query-string parameters must include 'X-Amz-Algorithm'. AWS query-string parameters must include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string parameters."
    );
    assert_eq!(
        incomplete(HttpRequest { authorization: Some("x"), query: Some("X-Amz-Algorithm=a"), ..base }),
        (
            "InvalidSignatureException".to_owned(),
            "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.".to_owned()
        )
    );
    let complete = send(
        &model,
        HttpRequest {
            authorization: Some("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c"),
            has_date: true,
            ..base
        },
    );
    assert_eq!(complete.status, 200);
}

#[test]
fn xml_errors_and_preflights_carry_no_content_type() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            method: "GET",
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.header("content-type"), None);
    let r = send(
        &model,
        HttpRequest {
            method: "OPTIONS",
            origin: Some("o"),
            ..HttpRequest::default()
        },
    );
    assert_eq!(r.header("content-type"), None);
}

#[test]
fn unknown_targets_are_unknown_operation_exceptions() {
    let model = Model::default();
    for target in ["Kinesis_20131202.Nope", "Foo.ListStreams", "garbage"] {
        let r = send(&model, request(target, b"{}"));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, br#"{"__type":"UnknownOperationException"}"#.as_slice()),
            "{target}"
        );
    }
}

#[test]
fn an_empty_body_is_a_serialization_exception_for_a_known_operation() {
    let model = Model::default();
    let r = send(&model, request("Kinesis_20131202.ListStreams", b""));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (400, br#"{"__type":"SerializationException"}"#.as_slice())
    );
    let r = send(&model, request("Kinesis_20131202.Nope", b""));
    assert_eq!(r.body, br#"{"__type":"UnknownOperationException"}"#);
}

#[test]
fn malformed_json_is_a_serialization_exception_without_a_message() {
    let model = Model::default();
    for body in [&b"{"[..], b"[]", b"\"x\"", b"nul"] {
        let r = send(&model, request("Kinesis_20131202.ListStreams", body));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (400, br#"{"__type":"SerializationException"}"#.as_slice())
        );
    }
}

#[test]
fn an_unknown_content_type_gets_an_xml_answer() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            content_type: Some("text/plain"),
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (404, b"<UnknownOperationException/>\n".as_slice())
    );
    let r = send(
        &model,
        HttpRequest {
            content_type: Some("text/plain"),
            target: None,
            ..request("", b"{}")
        },
    );
    assert_eq!(r.status, 403);
}

#[test]
fn plain_application_json_gets_the_legacy_output_envelope() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            content_type: Some("application/json"),
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.body, br#"{"Output":{"__type":"com.amazon.coral.service#UnknownOperationException"},"Version":"1.0"}"#);
}

#[test]
fn a_content_type_with_parameters_is_still_json() {
    let model = Model::default();
    let r = send(
        &model,
        HttpRequest {
            content_type: Some("application/x-amz-json-1.1; charset=utf-8"),
            ..request("Kinesis_20131202.ListStreams", b"{}")
        },
    );
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Operations end to end.

#[test]
fn create_describe_put_and_get_round_trip_through_the_model() {
    let model = model_with_stream("s1", 2);
    let (status, d) = call(&model, "DescribeStream", json!({"StreamName": "s1"}));
    assert_eq!(status, 200);
    let sd = &d["StreamDescription"];
    assert_eq!(sd["StreamName"], "s1");
    assert_eq!(
        sd["StreamARN"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/s1"
    );
    assert_eq!(sd["StreamStatus"], "ACTIVE");
    assert_eq!(
        sd["StreamModeDetails"],
        json!({"StreamMode": "PROVISIONED"})
    );
    assert_eq!(sd["HasMoreShards"], false);
    assert_eq!(sd["RetentionPeriodHours"], 24);
    assert_eq!(
        sd["StreamCreationTimestamp"].as_f64(),
        Some(1_704_164_645.678)
    );
    assert_eq!(sd["EnhancedMonitoring"], json!([{"ShardLevelMetrics": []}]));
    assert_eq!(sd["EncryptionType"], "NONE");
    assert!(sd.get("KeyId").is_none());
    let shards = sd["Shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[0]["ShardId"], "shardId-000000000000");
    assert_eq!(
        shards[0]["HashKeyRange"]["EndingHashKey"],
        "170141183460469231731687303715884105727"
    );
    assert_eq!(
        shards[1]["HashKeyRange"]["StartingHashKey"],
        "170141183460469231731687303715884105728"
    );
    assert!(
        shards[0]["SequenceNumberRange"]["StartingSequenceNumber"]
            .as_str()
            .expect("string")
            .len()
            == 56
    );
    assert!(shards[0].get("ParentShardId").is_none());

    let (status, put) = call(
        &model,
        "PutRecord",
        json!({"StreamName": "s1", "Data": "AAFoZWxsbw==", "PartitionKey": "a"}),
    );
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["ShardId"], "shardId-000000000000");
    assert_eq!(put["EncryptionType"], "NONE");
    assert_eq!(put["SequenceNumber"].as_str().expect("string").len(), 56);

    let (status, puts) = call(
        &model,
        "PutRecords",
        json!({"StreamName": "s1", "Records": [
            {"Data": "", "PartitionKey": "b", "ExplicitHashKey": "0"},
            {"Data": "eA==", "PartitionKey": "ü", "ExplicitHashKey": "340282366920938463463374607431768211455"},
        ]}),
    );
    assert_eq!(status, 200, "{puts}");
    assert_eq!(puts["FailedRecordCount"], 0);
    assert_eq!(puts["Records"][0]["ShardId"], "shardId-000000000000");
    assert_eq!(puts["Records"][1]["ShardId"], "shardId-000000000001");
    assert_eq!(puts["EncryptionType"], "NONE");

    let (status, it) = call(
        &model,
        "GetShardIterator",
        json!({"StreamName": "s1", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
    );
    assert_eq!(status, 200, "{it}");
    let (status, got) = call(
        &model,
        "GetRecords",
        json!({"ShardIterator": it["ShardIterator"]}),
    );
    assert_eq!(status, 200, "{got}");
    let records = got["Records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["Data"], "AAFoZWxsbw==");
    assert_eq!(records[0]["PartitionKey"], "a");
    assert_eq!(records[0]["SequenceNumber"], put["SequenceNumber"]);
    assert_eq!(
        records[0]["ApproximateArrivalTimestamp"].as_f64(),
        Some(1_704_164_645.678)
    );
    assert_eq!(records[1]["Data"], "");
    assert_eq!(got["MillisBehindLatest"], 0);
    assert!(got["NextShardIterator"].is_string());
    assert!(got.get("ChildShards").is_none());
}

#[test]
fn operations_without_output_answer_200_with_an_empty_body() {
    let model = model_with_stream("s", 1);
    for (op, body) in [
        (
            "AddTagsToStream",
            json!({"StreamName": "s", "Tags": {"a": "1", "b": ""}}),
        ),
        (
            "RemoveTagsFromStream",
            json!({"StreamName": "s", "TagKeys": ["b"]}),
        ),
        (
            "IncreaseStreamRetentionPeriod",
            json!({"StreamName": "s", "RetentionPeriodHours": 48}),
        ),
        (
            "DecreaseStreamRetentionPeriod",
            json!({"StreamName": "s", "RetentionPeriodHours": 24}),
        ),
        (
            "DeleteStream",
            json!({"StreamName": "s", "EnforceConsumerDeletion": true}),
        ),
    ] {
        assert_eq!(call(&model, op, body), (200, Value::Null), "{op}");
    }
}

#[test]
fn list_operations_encode_the_model_shapes() {
    let model = model_with_stream("b", 3);
    call(
        &model,
        "CreateStream",
        json!({"StreamName": "a", "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
    );
    call(
        &model,
        "AddTagsToStream",
        json!({"StreamName": "b", "Tags": {"k1": "v1", "k2": "v2"}}),
    );

    let (_, streams) = call(&model, "ListStreams", json!({"Limit": 1}));
    assert_eq!(streams["StreamNames"], json!(["a"]));
    assert_eq!(streams["HasMoreStreams"], true);
    assert_eq!(
        streams["StreamSummaries"][0]["StreamModeDetails"]["StreamMode"],
        "ON_DEMAND"
    );
    assert!(streams.get("NextToken").is_none());

    let (_, shards) = call(&model, "ListShards", json!({"StreamName": "b"}));
    assert_eq!(shards["Shards"].as_array().map(Vec::len), Some(3));

    let (_, tags) = call(
        &model,
        "ListTagsForStream",
        json!({"StreamName": "b", "Limit": 1}),
    );
    assert_eq!(
        tags,
        json!({"Tags": [{"Key": "k1", "Value": "v1"}], "HasMoreTags": true})
    );

    let (_, summary) = call(&model, "DescribeStreamSummary", json!({"StreamName": "b"}));
    let s = &summary["StreamDescriptionSummary"];
    assert_eq!(s["OpenShardCount"], 3);
    assert_eq!(s["ConsumerCount"], 0);
    assert_eq!(
        s["StreamARN"],
        "arn:aws:kinesis:us-east-1:000000000000:stream/b"
    );
}

#[test]
fn a_failed_put_record_entry_becomes_the_call_error() {
    let model = model_with_stream("s", 1);
    model.throttle_entry.set(Some(0));
    let (kind, message) = error_of(
        &model,
        "PutRecord",
        json!({"StreamName": "s", "Data": "", "PartitionKey": "a"}),
    );
    assert_eq!(kind, "ProvisionedThroughputExceededException");
    assert!(message.starts_with("Rate exceeded"));
}

#[test]
fn a_failed_put_records_entry_is_reported_in_place() {
    let model = model_with_stream("s", 1);
    model.throttle_entry.set(Some(1));
    let (status, v) = call(
        &model,
        "PutRecords",
        json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "a"}, {"Data": "", "PartitionKey": "b"}]}),
    );
    assert_eq!(status, 200);
    assert_eq!(v["FailedRecordCount"], 1);
    assert!(v["Records"][0]["SequenceNumber"].is_string());
    assert_eq!(
        v["Records"][1]["ErrorCode"],
        "ProvisionedThroughputExceededException"
    );
    assert!(v["Records"][1].get("SequenceNumber").is_none());
}

#[test]
fn missing_streams_are_resource_not_found_with_the_account() {
    let model = Model::default();
    assert_eq!(
        error_of(&model, "DescribeStream", json!({"StreamName": "nope"})),
        (
            "ResourceNotFoundException".to_owned(),
            "Stream nope under account 000000000000 not found.".to_owned()
        )
    );
}

#[test]
fn a_stream_arn_names_the_stream_when_it_is_ours() {
    let model = model_with_stream("s", 1);
    let (status, v) = call(
        &model,
        "DescribeStreamSummary",
        json!({"StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        error_of(
            &model,
            "DescribeStreamSummary",
            json!({"StreamARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/s"})
        ),
        (
            "ResourceNotFoundException".to_owned(),
            "Stream s under account 000000000000 not found.".to_owned()
        )
    );
    assert_eq!(
        error_of(&model, "PutRecord", json!({"StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s", "Data": "", "PartitionKey": "a"})).1,
        "Stream s under account 123456789012 not found."
    );
    let message = validation(
        &model,
        "DescribeStreamSummary",
        json!({"StreamARN": "arn:aws:sqs:us-east-1:000000000000:q"}),
    );
    assert_eq!(
        message,
        "1 validation error detected: Value 'arn:aws:sqs:us-east-1:000000000000:q' at 'streamARN' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+"
    );
}

#[test]
fn neither_stream_name_nor_arn_is_a_null_stream_name_violation() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "DescribeStream", json!({})),
        "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    );
}

// ---------------------------------------------------------------------------------------------
// Validation texts.

#[test]
fn create_stream_reports_every_violation_with_its_count() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "CreateStream", json!({"ShardCount": 0})),
        "2 validation errors detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1; Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    );
    assert_eq!(
        validation(
            &model,
            "CreateStream",
            json!({"StreamName": "a", "ShardCount": 100_001})
        ),
        "1 validation error detected: Value '100001' at 'shardCount' failed to satisfy constraint: Member must have value less than or equal to 100000"
    );
    assert_eq!(
        validation(
            &model,
            "CreateStream",
            json!({"StreamName": "a", "StreamModeDetails": {"StreamMode": "X"}})
        ),
        "1 validation error detected: Value 'X' at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"
    );
}

#[test]
fn stream_names_must_match_the_pattern_and_length() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "DeleteStream", json!({"StreamName": ""})),
        "2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    let long = "a".repeat(129);
    assert_eq!(
        validation(&model, "DeleteStream", json!({"StreamName": long})),
        format!(
            "1 validation error detected: Value '{long}' at 'streamName' failed to satisfy constraint: Member must have length less than or equal to 128"
        )
    );
    assert!(
        validation(&model, "DeleteStream", json!({"StreamName": "a/b"}))
            .contains("regular expression pattern")
    );
}

#[test]
fn a_validation_message_lists_at_most_ten_items() {
    let model = Model::default();
    let records: Vec<Value> = (0..12)
        .map(|_| json!({"Data": "", "PartitionKey": ""}))
        .collect();
    let message = validation(
        &model,
        "PutRecords",
        json!({"StreamName": "s", "Records": records}),
    );
    assert!(
        message.starts_with("10 validation errors detected: "),
        "{message}"
    );
    assert_eq!(message.matches("; ").count(), 9);
    assert!(message.contains(
        "Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"
    ));
}

#[test]
fn put_records_paths_name_the_entry_and_member() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "PutRecords",
            json!({"StreamName": "s", "Records": [{"Data": "", "PartitionKey": "a"}, {"PartitionKey": "b", "ExplicitHashKey": "01"}]})
        ),
        "2 validation errors detected: Value '01' at 'records.2.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38}); Value null at 'records.2.member.data' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn put_records_needs_one_to_five_hundred_entries() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "PutRecords",
            json!({"StreamName": "s", "Records": []})
        ),
        "1 validation error detected: Value '[]' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    let records: Vec<Value> = (0..501)
        .map(|_| json!({"Data": "", "PartitionKey": "a"}))
        .collect();
    let message = validation(
        &model,
        "PutRecords",
        json!({"StreamName": "s", "Records": records}),
    );
    assert!(message.starts_with("1 validation error detected: Value '[com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@c965e310, "));
    assert!(message.ends_with("' at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"));
    assert_eq!(
        validation(&model, "PutRecords", json!({"StreamName": "s"})),
        "1 validation error detected: Value null at 'records' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn data_over_one_mebibyte_is_a_validation_error_showing_the_byte_buffer() {
    let model = Model::default();
    let data = base64_simd::STANDARD.encode_to_string(vec![0u8; 1_048_577]);
    assert_eq!(
        validation(
            &model,
            "PutRecord",
            json!({"StreamName": "s", "PartitionKey": "a", "Data": data})
        ),
        "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"
    );
}

#[test]
fn partition_key_and_data_over_one_mebibyte_is_an_invalid_argument() {
    let model = model_with_stream("s", 1);
    let data = base64_simd::STANDARD.encode_to_string(vec![0u8; 1_048_576]);
    let (kind, _) = error_of(
        &model,
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "a", "Data": data}),
    );
    assert_eq!(kind, "InvalidArgumentException");
}

#[test]
fn put_records_over_five_mebibytes_in_total_is_an_invalid_argument() {
    let model = model_with_stream("s", 1);
    let data = base64_simd::STANDARD.encode_to_string(vec![7u8; 1_000_000]);
    let records: Vec<Value> = (0..6)
        .map(|_| json!({"Data": data, "PartitionKey": "a"}))
        .collect();
    assert_eq!(
        error_of(
            &model,
            "PutRecords",
            json!({"StreamName": "s", "Records": records})
        ),
        (
            "InvalidArgumentException".to_owned(),
            "Records size exceeds 5 MB limit".to_owned()
        )
    );
}

#[test]
fn partition_keys_count_characters_not_bytes() {
    let model = model_with_stream("s", 1);
    let key = "é".repeat(256);
    let (status, v) = call(
        &model,
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": key, "Data": ""}),
    );
    assert_eq!(status, 200, "{v}");
    let key = "é".repeat(257);
    assert!(
        validation(&model, "PutRecord", json!({"StreamName": "s", "PartitionKey": key, "Data": ""}))
            .ends_with("at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256")
    );
}

#[test]
fn explicit_hash_keys_past_two_to_the_128_are_invalid_arguments() {
    let model = model_with_stream("s", 1);
    let too_big = "340282366920938463463374607431768211456";
    assert_eq!(
        error_of(
            &model,
            "PutRecord",
            json!({"StreamName": "s", "PartitionKey": "a", "Data": "", "ExplicitHashKey": too_big})
        ),
        (
            "InvalidArgumentException".to_owned(),
            format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {too_big}"
            )
        )
    );
    assert!(
        validation(&model, "PutRecord", json!({"StreamName": "s", "PartitionKey": "a", "Data": "", "ExplicitHashKey": "-1"}))
            .contains("at 'explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})")
    );
}

#[test]
fn get_shard_iterator_checks_the_type_enum_and_sequence_number_pattern() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "GetShardIterator",
            json!({"StreamName": "s", "ShardId": "shardId-0", "ShardIteratorType": "NOPE", "StartingSequenceNumber": "x"})
        ),
        "2 validation errors detected: Value 'NOPE' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]; Value 'x' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"
    );
    assert_eq!(
        validation(&model, "GetShardIterator", json!({"StreamName": "s"})),
        "2 validation errors detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null; Value null at 'shardIteratorType' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn list_limits_are_range_checked() {
    let model = Model::default();
    let cases = [
        (
            "GetRecords",
            json!({"ShardIterator": "x", "Limit": 0}),
            "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            "GetRecords",
            json!({"ShardIterator": "x", "Limit": 10_001}),
            "Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000",
        ),
        (
            "DescribeStream",
            json!({"StreamName": "s", "Limit": 10_001}),
            "Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000",
        ),
        (
            "ListStreams",
            json!({"Limit": 0}),
            "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            "ListShards",
            json!({"StreamName": "s", "MaxResults": 10_001}),
            "Value '10001' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 10000",
        ),
        (
            "ListTagsForStream",
            json!({"StreamName": "s", "Limit": 51}),
            "Value '51' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 50",
        ),
    ];
    for (op, body, item) in cases {
        assert_eq!(
            validation(&model, op, body),
            format!("1 validation error detected: {item}"),
            "{op}"
        );
    }
}

#[test]
fn fractional_integers_are_floored_before_range_checks() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "ListStreams", json!({"Limit": 0.9})),
        "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
}

#[test]
fn list_shards_needs_exactly_one_of_next_token_and_stream_name() {
    let model = Model::default();
    assert_eq!(
        error_of(&model, "ListShards", json!({})),
        (
            "InvalidArgumentException".to_owned(),
            "Either NextToken or StreamName should be provided.".to_owned()
        )
    );
    assert_eq!(
        error_of(
            &model,
            "ListShards",
            json!({"StreamName": "s", "NextToken": "t"})
        ),
        (
            "InvalidArgumentException".to_owned(),
            "NextToken and StreamName cannot be provided together.".to_owned()
        )
    );
}

#[test]
fn tags_are_checked_for_key_and_value_lengths() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "AddTagsToStream",
            json!({"StreamName": "s", "Tags": {"": "v"}})
        ),
        "1 validation error detected: Value '{=v}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"
    );
    assert_eq!(
        validation(
            &model,
            "AddTagsToStream",
            json!({"StreamName": "s", "Tags": {}})
        ),
        "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    assert_eq!(
        validation(
            &model,
            "CreateStream",
            json!({"StreamName": "s", "Tags": {}})
        ),
        "1 validation error detected: Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    let many: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert!(
        validation(&model, "AddTagsToStream", json!({"StreamName": "s", "Tags": many}))
            .ends_with("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200")
    );
    let long = "v".repeat(257);
    assert!(
        validation(&model, "AddTagsToStream", json!({"StreamName": "s", "Tags": {"k": long}}))
            .contains("Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]")
    );
    assert_eq!(
        validation(
            &model,
            "RemoveTagsFromStream",
            json!({"StreamName": "s", "TagKeys": []})
        ),
        "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
}

#[test]
fn retention_hours_are_required() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "IncreaseStreamRetentionPeriod",
            json!({"StreamName": "s"})
        ),
        "1 validation error detected: Value null at 'retentionPeriodHours' failed to satisfy constraint: Member must not be null"
    );
}

// ---------------------------------------------------------------------------------------------
// Serialization texts.

#[test]
fn wrong_json_types_get_aws_java_flavoured_serialization_texts() {
    let model = Model::default();
    let number = "class com.amazon.coral.value.json.numbers.TruncatingBigNumber";
    let cases = [
        (
            "DeleteStream",
            json!({"StreamName": true}),
            "class java.lang.Boolean can not be converted to an String".to_owned(),
        ),
        (
            "DeleteStream",
            json!({"StreamName": 23}),
            format!("{number} can not be converted to an String"),
        ),
        (
            "DeleteStream",
            json!({"StreamName": 34.56}),
            format!("{number} can not be converted to an String"),
        ),
        (
            "DeleteStream",
            json!({"StreamName": []}),
            "Start of list found where not expected".to_owned(),
        ),
        (
            "DeleteStream",
            json!({"StreamName": {}}),
            "Start of structure or map found where not expected.".to_owned(),
        ),
        (
            "DeleteStream",
            json!({"StreamName": "s", "EnforceConsumerDeletion": "yes"}),
            "'YES' can not be converted to an Boolean".to_owned(),
        ),
        (
            "DeleteStream",
            json!({"StreamName": "s", "EnforceConsumerDeletion": 1}),
            format!("{number} can not be converted to an Boolean"),
        ),
        (
            "ListStreams",
            json!({"Limit": "23"}),
            "class java.lang.String can not be converted to an Integer".to_owned(),
        ),
        (
            "ListStreams",
            json!({"Limit": true}),
            "class java.lang.Boolean can not be converted to an Integer".to_owned(),
        ),
        (
            "PutRecords",
            json!({"Records": "23"}),
            "Expected list or null".to_owned(),
        ),
        (
            "PutRecords",
            json!({"Records": {}}),
            "Start of structure or map found where not expected.".to_owned(),
        ),
        (
            "PutRecords",
            json!({"Records": ["23"]}),
            "Expected null".to_owned(),
        ),
        (
            "PutRecords",
            json!({"Records": [[]]}),
            "Start of list found where not expected".to_owned(),
        ),
        (
            "AddTagsToStream",
            json!({"Tags": "23"}),
            "Expected map or null".to_owned(),
        ),
        (
            "AddTagsToStream",
            json!({"Tags": []}),
            "Start of list found where not expected".to_owned(),
        ),
        (
            "CreateStream",
            json!({"StreamModeDetails": 1}),
            "Expected null".to_owned(),
        ),
        (
            "PutRecord",
            json!({"Data": true}),
            "class java.lang.Boolean can not be converted to a Blob".to_owned(),
        ),
        (
            "PutRecord",
            json!({"Data": 23}),
            format!("{number} can not be converted to a Blob"),
        ),
        (
            "GetShardIterator",
            json!({"Timestamp": "23"}),
            "class java.lang.String can not be converted to milliseconds since epoch".to_owned(),
        ),
        (
            "GetShardIterator",
            json!({"Timestamp": true}),
            "class java.lang.Boolean can not be converted to milliseconds since epoch".to_owned(),
        ),
    ];
    for (op, body, message) in cases {
        assert_eq!(
            serialization(&model, op, body.clone()),
            message,
            "{op} {body}"
        );
    }
}

#[test]
fn bad_base64_gets_the_three_aws_texts() {
    let model = Model::default();
    let cases = [
        (
            "23456",
            "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5",
        ),
        (
            "=+/=",
            "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='",
        ),
        (
            "+/+=",
            "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected",
        ),
        (
            "ab~d",
            "'ab~d' can not be converted to a Blob: Invalid Base64 character: '~'",
        ),
    ];
    for (data, message) in cases {
        assert_eq!(
            serialization(&model, "PutRecord", json!({"Data": data})),
            message
        );
        assert_eq!(
            serialization(&model, "PutRecords", json!({"Records": [{"Data": data}]})),
            message
        );
    }
}

#[test]
fn nulls_count_as_absent_members() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "DeleteStream", json!({"StreamName": null})),
        "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    );
}

// ---------------------------------------------------------------------------------------------
// Decoders and encoders directly.

#[test]
fn timestamps_in_requests_are_epoch_seconds_with_a_fraction() {
    let body = br#"{"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1704164645.678}"#;
    let doc = parse(body).expect("valid JSON");
    let input = decode::get_shard_iterator(HOME, Obj::new(&doc)).expect("valid input");
    assert_eq!(input.timestamp_ms, Some(1_704_164_645_678));
    let doc = parse(
        br#"{"StreamName":"s","ShardFilter":{"Type":"FROM_TIMESTAMP","Timestamp":1704164645}}"#,
    )
    .expect("valid JSON");
    let input = decode::list_shards(HOME, Obj::new(&doc)).expect("valid input");
    assert_eq!(
        input.shard_filter,
        Some(sluice_core::api::ShardFilter::FromTimestamp(
            1_704_164_645_000
        ))
    );
}

#[test]
fn put_records_decodes_escaped_keys_and_explicit_hash_keys() {
    let body = br#"{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"a\"b\u00e9"},{"Data":"","PartitionKey":"k","ExplicitHashKey":"42"}]}"#;
    let doc = parse(body).expect("valid JSON");
    let input = decode::put_records(HOME, Obj::new(&doc)).expect("valid input");
    assert_eq!(input.stream_name, "s");
    assert_eq!(input.records[0].data, &b"hi"[..]);
    assert_eq!(input.records[0].partition_key, "a\"bé");
    assert_eq!(input.records[0].explicit_hash_key, None);
    assert_eq!(input.records[1].explicit_hash_key, Some(42));
}

#[test]
fn get_records_output_encodes_records_and_child_shards() {
    let sequence_number = SequenceNumber::new(1_700_000_000, 1, 5, 1_700_000_001);
    let output = GetRecordsOutput {
        records: vec![OwnedRecord {
            sequence_number,
            approximate_arrival_timestamp_ms: 1_700_000_001_234,
            partition_key: "p\n".to_owned(),
            data: b"hello".to_vec(),
        }],
        next_shard_iterator: None,
        millis_behind_latest: 7,
        child_shards: vec![ChildShard {
            shard_id: "shardId-000000000002".to_owned(),
            parent_shards: vec!["shardId-000000000001".to_owned()],
            hash_key_range: HashRange {
                starting: 0,
                ending: 10,
            },
        }],
    };
    let v: Value = serde_json::from_slice(&encode::get_records(&output)).expect("valid JSON");
    assert_eq!(
        v,
        json!({
            "Records": [{
                "SequenceNumber": sequence_number.to_string(),
                "ApproximateArrivalTimestamp": 1_700_000_001.234,
                "Data": "aGVsbG8=",
                "PartitionKey": "p\n",
            }],
            "MillisBehindLatest": 7,
            "ChildShards": [{
                "ShardId": "shardId-000000000002",
                "ParentShards": ["shardId-000000000001"],
                "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "10"},
            }],
        })
    );
}

#[test]
fn put_records_output_reports_failures_with_their_codes() {
    let sequence_number = SequenceNumber::new(1, 0, 0, 1);
    let output = PutRecordsOutput {
        encryption_type: sluice_core::api::EncryptionType::None,
        records: vec![
            Ok(PutRecordsResultEntry {
                shard_id: "shardId-000000000000".into(),
                sequence_number,
            }),
            Err(KinesisError::internal("boom")),
        ],
    };
    let v: Value = serde_json::from_slice(&encode::put_records(&output)).expect("valid JSON");
    assert_eq!(
        v,
        json!({
            "FailedRecordCount": 1,
            "Records": [
                {"SequenceNumber": sequence_number.to_string(), "ShardId": "shardId-000000000000"},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "boom"},
            ],
            "EncryptionType": "NONE",
        })
    );
    assert_eq!(KinesisError::internal("x").kind, ErrorKind::InternalFailure);
}

proptest::proptest! {
    #[test]
    fn put_records_bodies_round_trip_through_the_decoder(
        records in proptest::collection::vec(
            (
                proptest::collection::vec(proptest::num::u8::ANY, 0..300),
                "\\PC{1,40}",
                proptest::option::of(proptest::num::u128::ANY),
            ),
            1..40,
        )
    ) {
        let body = json!({
            "StreamName": "stream-1",
            "Records": records.iter().map(|(data, key, hash)| {
                let mut entry = json!({
                    "Data": base64_simd::STANDARD.encode_to_string(data),
                    "PartitionKey": key,
                });
                if let Some(h) = hash {
                    entry["ExplicitHashKey"] = Value::String(h.to_string());
                }
                entry
            }).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&body).expect("serialisable");
        let doc = parse(&bytes).expect("valid JSON");
        let input = decode::put_records(HOME, Obj::new(&doc)).expect("valid input");
        proptest::prop_assert_eq!(input.stream_name, "stream-1");
        proptest::prop_assert_eq!(input.records.len(), records.len());
        for (got, (data, key, hash)) in input.records.iter().zip(&records) {
            proptest::prop_assert_eq!(&got.data, data);
            proptest::prop_assert_eq!(&got.partition_key, key);
            proptest::prop_assert_eq!(got.explicit_hash_key, *hash);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resharding, settings, consumers, policies and tags by ARN.

fn arn(stream_name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream_name}")
}

#[test]
fn split_and_merge_list_every_missing_member_in_aws_order() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "SplitShard", json!({})),
        "3 validation errors detected: Value null at 'newStartingHashKey' failed to satisfy constraint: Member must not be null; Value null at 'shardToSplit' failed to satisfy constraint: Member must not be null; Value null at 'streamName' failed to satisfy constraint: Member must not be null"
    );
    assert_eq!(
        validation(
            &model,
            "MergeShards",
            json!({"StreamName": "s", "ShardToMerge": "a b"})
        ),
        "2 validation errors detected: Value null at 'adjacentShardToMerge' failed to satisfy constraint: Member must not be null; Value 'a b' at 'shardToMerge' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    );
    assert_eq!(
        validation(
            &model,
            "UpdateShardCount",
            json!({"StreamName": "s", "TargetShardCount": 0, "ScalingType": "NOPE"})
        ),
        "2 validation errors detected: Value 'NOPE' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]; Value '0' at 'targetShardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
    );
}

#[test]
fn resharding_reaches_the_api_and_update_shard_count_answers_its_counts() {
    let model = model_with_stream("s", 2);
    let (status, body) = call(
        &model,
        "SplitShard",
        json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}),
    );
    assert_eq!((status, body), (200, Value::Null));
    let (status, body) = call(
        &model,
        "UpdateShardCount",
        json!({"StreamARN": arn("s"), "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"StreamName": "s", "CurrentShardCount": 3, "TargetShardCount": 4, "StreamARN": arn("s")})
    );
    let (kind, message) = error_of(
        &model,
        "MergeShards",
        json!({"StreamName": "nope", "ShardToMerge": "shardId-000000000000", "AdjacentShardToMerge": "shardId-000000000001"}),
    );
    assert_eq!(kind, "ResourceNotFoundException");
    assert_eq!(
        message,
        format!("Stream nope under account {ACCOUNT} not found.")
    );
}

#[test]
fn update_stream_mode_needs_a_stream_arn_and_mode_details() {
    let model = Model::default();
    assert_eq!(
        validation(&model, "UpdateStreamMode", json!({"StreamModeDetails": {}})),
        "2 validation errors detected: Value null at 'streamARN' failed to satisfy constraint: Member must not be null; Value null at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must not be null"
    );
    let model = model_with_stream("s", 1);
    let (status, _) = call(
        &model,
        "UpdateStreamMode",
        json!({"StreamARN": arn("s"), "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}),
    );
    assert_eq!(status, 200);
    let (status, body) = call(&model, "DescribeLimits", json!({}));
    assert_eq!(status, 200);
    assert_eq!(body["OnDemandStreamCount"], 1);
    assert_eq!(body["OpenShardCount"], 1);
    assert!(body["ShardLimit"].is_u64());
    assert_eq!(body["OnDemandStreamCountLimit"], 50);
}

#[test]
fn enhanced_monitoring_answers_current_and_desired_metrics() {
    let model = model_with_stream("s", 1);
    let (status, body) = call(
        &model,
        "EnableEnhancedMonitoring",
        json!({"StreamName": "s", "ShardLevelMetrics": ["IncomingRecords"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"StreamName": "s", "CurrentShardLevelMetrics": [], "DesiredShardLevelMetrics": ["IncomingRecords"], "StreamARN": arn("s")})
    );
    assert_eq!(
        validation(
            &model,
            "DisableEnhancedMonitoring",
            json!({"StreamName": "s", "ShardLevelMetrics": []})
        ),
        "1 validation error detected: Value '[]' at 'shardLevelMetrics' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
}

#[test]
fn stream_encryption_and_record_size_validate_their_members() {
    let model = Model::default();
    assert_eq!(
        validation(
            &model,
            "StartStreamEncryption",
            json!({"StreamName": "s", "EncryptionType": "AES"})
        ),
        "2 validation errors detected: Value 'AES' at 'encryptionType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, KMS]; Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    assert_eq!(
        validation(
            &model,
            "UpdateMaxRecordSize",
            json!({"StreamARN": arn("s"), "MaxRecordSizeInKiB": 20000})
        ),
        "1 validation error detected: Value '20000' at 'maxRecordSizeInKiB' failed to satisfy constraint: Member must have value less than or equal to 10240"
    );
    let model = model_with_stream("s", 1);
    let (status, _) = call(
        &model,
        "StartStreamEncryption",
        json!({"StreamName": "s", "EncryptionType": "KMS", "KeyId": "alias/k"}),
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &model,
        "UpdateMaxRecordSize",
        json!({"StreamARN": arn("s"), "MaxRecordSizeInKiB": 2048}),
    );
    assert_eq!(status, 200);
    let data = base64_simd::STANDARD.encode_to_string(vec![1u8; 1_500_000]);
    let (status, body) = call(
        &model,
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "k", "Data": data}),
    );
    assert_eq!(status, 200, "a raised record size admits 1.5 MB: {body}");
}

#[test]
fn warm_throughput_and_account_settings_answer_their_shapes() {
    let model = model_with_stream("s", 1);
    let (status, body) = call(
        &model,
        "UpdateStreamWarmThroughput",
        json!({"StreamName": "s", "WarmThroughputMiBps": 10}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"StreamARN": arn("s"), "StreamName": "s", "WarmThroughput": {"TargetMiBps": 10, "CurrentMiBps": 10}})
    );
    assert_eq!(
        call(&model, "DescribeAccountSettings", json!({})),
        (200, json!({}))
    );
    assert_eq!(
        validation(
            &model,
            "UpdateAccountSettings",
            json!({"MinimumThroughputBillingCommitment": {"Status": "ON"}})
        ),
        "1 validation error detected: Value 'ON' at 'minimumThroughputBillingCommitment.status' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]"
    );
    let (status, body) = call(
        &model,
        "UpdateAccountSettings",
        json!({"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}}),
    );
    assert_eq!(status, 200);
    let commitment = &body["MinimumThroughputBillingCommitment"];
    assert_eq!(commitment["Status"], "ENABLED");
    assert_eq!(
        commitment["StartedAt"].as_f64(),
        Some(model.now_ms.get() as f64 / 1000.0),
        "timestamps are epoch seconds"
    );
    assert!(commitment.get("EndedAt").is_none());
}

#[test]
fn consumers_answer_the_consumer_and_description_shapes_in_json_and_cbor() {
    let model = model_with_stream("s", 1);
    let (status, body) = call(
        &model,
        "RegisterStreamConsumer",
        json!({"StreamARN": arn("s"), "ConsumerName": "c"}),
    );
    assert_eq!(status, 200, "{body}");
    let consumer = &body["Consumer"];
    let consumer_arn = consumer["ConsumerARN"].as_str().expect("ARN").to_owned();
    assert_eq!(
        consumer_arn,
        format!("{}/consumer/c:{}", arn("s"), model.now_ms.get() / 1000)
    );
    assert_eq!(consumer["ConsumerStatus"], "ACTIVE");
    assert!(consumer.get("StreamARN").is_none());

    let described = crate::kinesis::encode_control::to_cbor(
        &crate::kinesis::encode_control::describe_stream_consumer(
            &block_on(sluice_core::KinesisApi::describe_stream_consumer(
                &model,
                sluice_core::api::ConsumerRef::Arn(consumer_arn.clone()),
            ))
            .expect("described"),
        ),
    );
    let parsed = crate::cbor::parse(&described).expect("CBOR");
    let description = parsed.get("ConsumerDescription").expect("description");
    assert!(matches!(
        description.get("ConsumerCreationTimestamp"),
        Some(crate::json::JsonValue::TimestampMs(_))
    ));

    let (status, body) = call(
        &model,
        "ListStreamConsumers",
        json!({"StreamARN": arn("s")}),
    );
    assert_eq!(status, 200);
    assert_eq!(body["Consumers"][0]["ConsumerARN"], consumer_arn.as_str());
    assert_eq!(
        validation(
            &model,
            "DescribeStreamConsumer",
            json!({"ConsumerARN": "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c"})
        ),
        "1 validation error detected: Value 'arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c' at 'consumerARN' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(arn):aws.*:kinesis:.*:\\d{12}:.*stream\\/[a-zA-Z0-9_.-]+\\/consumer\\/[a-zA-Z0-9_.-]+:[0-9]+"
    );
    let (status, _) = call(
        &model,
        "DeregisterStreamConsumer",
        json!({"StreamARN": arn("s"), "ConsumerName": "c"}),
    );
    assert_eq!(status, 200);
}

#[test]
fn policies_and_tags_by_resource_arn_round_trip() {
    let model = model_with_stream("s", 1);
    let policy = r#"{"Statement":[]}"#;
    assert_eq!(
        call(
            &model,
            "PutResourcePolicy",
            json!({"ResourceARN": arn("s"), "Policy": policy})
        ),
        (200, Value::Null)
    );
    assert_eq!(
        call(
            &model,
            "GetResourcePolicy",
            json!({"ResourceARN": arn("s")})
        ),
        (200, json!({"Policy": policy}))
    );
    assert_eq!(
        validation(&model, "DeleteResourcePolicy", json!({})),
        "1 validation error detected: Value null at 'resourceARN' failed to satisfy constraint: Member must not be null"
    );
    assert_eq!(
        call(
            &model,
            "TagResource",
            json!({"ResourceARN": arn("s"), "Tags": {"b": "2", "a": "1"}})
        ),
        (200, Value::Null)
    );
    assert_eq!(
        call(
            &model,
            "ListTagsForResource",
            json!({"ResourceARN": arn("s")})
        ),
        (
            200,
            json!({"Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]})
        )
    );
    assert_eq!(
        validation(
            &model,
            "UntagResource",
            json!({"ResourceARN": arn("s"), "TagKeys": []})
        ),
        "1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    let (kind, message) = error_of(
        &model,
        "ListTagsForResource",
        json!({"ResourceARN": format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:channel/c")}),
    );
    assert_eq!(kind, "ResourceNotFoundException", "{message}");
}

#[test]
fn put_record_checks_sequence_number_for_ordering() {
    let model = model_with_stream("s", 1);
    let (kind, message) = error_of(
        &model,
        "PutRecord",
        json!({"StreamName": "s", "PartitionKey": "k", "Data": "AA==", "SequenceNumberForOrdering": "1"}),
    );
    assert_eq!(kind, "InvalidArgumentException");
    assert_eq!(
        message,
        format!(
            "ExclusiveMinimumSequenceNumber 1 used in PutRecord on stream s under account {ACCOUNT} is invalid."
        )
    );
}

#[test]
fn channel_and_queue_operations_are_refused_with_a_reason_after_authentication() {
    let model = Model::default();
    for (operation, _) in crate::kinesis::UNSUPPORTED_OPERATIONS {
        let (kind, message) = error_of(&model, operation, json!({}));
        assert_eq!(kind, "InvalidArgumentException", "{operation}");
        assert!(
            message.starts_with("Sluice does not support"),
            "{operation}: {message}"
        );
    }
    let unauthenticated = send(
        &model,
        HttpRequest {
            has_auth: false,
            ..request("Kinesis_20131202.CreateQueue", b"{}")
        },
    );
    assert_eq!(unauthenticated.status, 400);
    assert!(
        String::from_utf8_lossy(&unauthenticated.body).contains("MissingAuthenticationToken"),
        "authentication is checked first"
    );
}
