//! The CBOR 1.1 protocol end to end through `handle_kinesis`: requests encoded by independent
//! CBOR libraries (Python `cbor2` vectors in `protocols/tests/fixtures/cbor`, and `ciborium`
//! here), responses decoded by `ciborium`.

use ciborium::value::Value as Cbor;
use futures_lite::future::block_on;
use serde_json::{Value, json};

use super::decode::{self, Home, Obj};
use super::{CONTENT_TYPE_CBOR, handle_kinesis};
use crate::HttpRequest;
use crate::model::{ACCOUNT, Model, REGION};

const HOME: Home<'static> = Home {
    region: REGION,
    account_id: ACCOUNT,
};
const VECTORS: &str = include_str!("../../tests/fixtures/cbor/vectors.txt");
/// What `make_vectors.py` puts in `Data`.
const DATA: &[u8] = b"\x00\x01\x02\xff\xfebinary \x00 payload";
const AT_MS: u64 = 1_704_164_645_678;

fn vector(name: &str) -> Vec<u8> {
    let line = VECTORS
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("vector {name} exists"));
    let hex = line.split(' ').nth(1).expect("name hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("vectors are hex"))
        .collect()
}

fn request<'a>(target: &'a str, content_type: &'a str, body: &'a [u8]) -> HttpRequest<'a> {
    HttpRequest {
        method: "POST",
        path: "/",
        target: Some(target),
        content_type: Some(content_type),
        has_auth: true,
        body,
        ..HttpRequest::default()
    }
}

/// Sends a CBOR body and returns the status and the decoded CBOR response (`Null` when empty).
fn call_cbor(model: &Model, op: &str, body: &[u8]) -> (u16, Cbor) {
    let target = format!("Kinesis_20131202.{op}");
    let response = block_on(handle_kinesis(
        model,
        request(&target, CONTENT_TYPE_CBOR, body),
    ));
    if response.body.is_empty() {
        return (response.status, Cbor::Null);
    }
    assert_eq!(
        response.header("content-type"),
        Some(CONTENT_TYPE_CBOR),
        "CBOR requests get CBOR answers"
    );
    let value: Cbor =
        ciborium::de::from_reader(response.body.as_slice()).expect("responses are CBOR");
    (response.status, value)
}

fn call_json(model: &Model, op: &str, body: &Value) -> (u16, Value) {
    let target = format!("Kinesis_20131202.{op}");
    let bytes = serde_json::to_vec(body).expect("serialises");
    let response = block_on(handle_kinesis(
        model,
        request(&target, "application/x-amz-json-1.1", &bytes),
    ));
    let value = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).expect("responses are JSON")
    };
    (response.status, value)
}

fn encode(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("encodes");
    out
}

fn map(pairs: &[(&str, Cbor)]) -> Cbor {
    Cbor::Map(
        pairs
            .iter()
            .map(|(k, v)| (Cbor::Text((*k).to_owned()), v.clone()))
            .collect(),
    )
}

fn get<'v>(value: &'v Cbor, key: &str) -> &'v Cbor {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{key} in {value:?}"))
}

fn text(value: &Cbor) -> &str {
    value.as_text().unwrap_or_else(|| panic!("text: {value:?}"))
}

/// The document a CBOR response carries, in JSON 1.1's conventions: byte strings as base64,
/// tagged millisecond timestamps as fractional seconds.
fn as_json(value: &Cbor) -> Value {
    match value {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => json!(b),
        Cbor::Integer(i) => json!(u64::try_from(i128::from(*i)).expect("non-negative")),
        Cbor::Float(f) => json!(f),
        Cbor::Text(t) => json!(t),
        Cbor::Bytes(b) => json!(base64_simd::STANDARD.encode_to_string(b)),
        Cbor::Tag(1, inner) => {
            let ms = u64::try_from(i128::from(
                inner.as_integer().expect("tag 1 holds an integer"),
            ))
            .expect("non-negative");
            json!(ms as f64 / 1000.0)
        }
        Cbor::Array(items) => Value::Array(items.iter().map(as_json).collect()),
        Cbor::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (text(k).to_owned(), as_json(v)))
                .collect(),
        ),
        other => panic!("unexpected CBOR item {other:?}"),
    }
}

fn cbor_doc(name: &str) -> crate::json::JsonValue<'static> {
    let bytes: &'static [u8] = Box::leak(vector(name).into_boxed_slice());
    crate::cbor::parse(bytes).expect("vectors are valid CBOR")
}

#[test]
fn cbor2_vectors_decode_into_the_same_inputs_json_would_give() {
    let put = decode::put_record(HOME, Obj::new_cbor(&cbor_doc("put_record"))).expect("valid");
    assert_eq!(put.stream_name, "cbor-stream");
    assert_eq!(put.record.data, DATA);
    assert_eq!(put.record.partition_key, "pk");
    let indefinite =
        decode::put_record(HOME, Obj::new_cbor(&cbor_doc("put_record_indefinite"))).expect("valid");
    assert_eq!(indefinite.stream_name, put.stream_name);
    assert_eq!(indefinite.record.data, put.record.data);

    let puts = decode::put_records(HOME, Obj::new_cbor(&cbor_doc("put_records"))).expect("valid");
    assert_eq!(puts.records.len(), 2);
    assert_eq!(puts.records[0].data, &b"first"[..]);
    assert_eq!(puts.records[1].data, &b""[..]);
    assert_eq!(puts.records[1].explicit_hash_key, Some(0));

    let it = decode::get_shard_iterator(
        HOME,
        Obj::new_cbor(&cbor_doc("get_shard_iterator_at_timestamp")),
    )
    .expect("valid");
    assert_eq!(it.timestamp_ms, Some(AT_MS), "tag 1 carries milliseconds");
    let shards = decode::list_shards(HOME, Obj::new_cbor(&cbor_doc("list_shards_created_at")))
        .expect("valid");
    assert_eq!(shards.stream_creation_timestamp_ms, Some(AT_MS));

    // Base64 text for a blob is still accepted, as Jackson would read it.
    let text_data =
        decode::put_record(HOME, Obj::new_cbor(&cbor_doc("put_record_text_data"))).expect("valid");
    assert_eq!(text_data.record.data, &b"\x00\x01hello"[..]);
    let float =
        decode::create_stream(Obj::new_cbor(&cbor_doc("float_shard_count"))).expect("valid");
    assert_eq!(float.shard_count, Some(2));
}

#[test]
fn cbor_requests_get_the_json_protocols_validation_and_serialization_texts_in_cbor() {
    let model = Model::default();
    let (status, error) = call_cbor(&model, "PutRecord", &vector("put_record_missing_members"));
    let (json_status, json_error) =
        call_json(&model, "PutRecord", &json!({"StreamName": "cbor-stream"}));
    assert_eq!((status, json_status), (400, 400));
    assert_eq!(text(get(&error, "__type")), "ValidationException");
    assert_eq!(as_json(&error), json_error);
    assert!(
        text(get(&error, "message")).starts_with("2 validation errors detected: "),
        "{error:?}"
    );

    let (status, error) = call_cbor(
        &model,
        "CreateStream",
        &vector("create_stream_string_count"),
    );
    assert_eq!(status, 400);
    assert_eq!(text(get(&error, "__type")), "SerializationException");
    assert_eq!(
        text(get(&error, "Message")),
        "class java.lang.String can not be converted to an Integer"
    );

    for body in [vector("not_a_map"), vec![0xa1, 0x61]] {
        let (status, error) = call_cbor(&model, "CreateStream", &body);
        assert_eq!(status, 400);
        assert_eq!(
            error,
            map(&[("__type", Cbor::Text("SerializationException".into()))])
        );
    }

    let (status, error) = call_cbor(
        &model,
        "DescribeStream",
        &encode(&map(&[("StreamName", Cbor::Text("nope".into()))])),
    );
    assert_eq!(status, 400);
    assert_eq!(text(get(&error, "__type")), "ResourceNotFoundException");
    assert_eq!(
        text(get(&error, "message")),
        "Stream nope under account 000000000000 not found."
    );
}

#[test]
fn a_cbor_round_trip_returns_byte_strings_and_tagged_millisecond_timestamps() {
    let model = Model::default();
    assert_eq!(
        call_cbor(&model, "CreateStream", &vector("create_stream")),
        (200, Cbor::Null)
    );
    let (status, put) = call_cbor(&model, "PutRecord", &vector("put_record"));
    assert_eq!(status, 200, "{put:?}");
    assert_eq!(text(get(&put, "ShardId")), "shardId-000000000000");
    let sequence_number = text(get(&put, "SequenceNumber")).to_owned();
    assert_eq!(sequence_number.len(), 56);
    let (status, puts) = call_cbor(&model, "PutRecords", &vector("put_records"));
    assert_eq!(status, 200, "{puts:?}");
    assert_eq!(get(&puts, "FailedRecordCount"), &Cbor::Integer(0.into()));

    let (status, it) = call_cbor(
        &model,
        "GetShardIterator",
        &encode(&map(&[
            ("StreamName", Cbor::Text("cbor-stream".into())),
            ("ShardId", Cbor::Text("shardId-000000000000".into())),
            ("ShardIteratorType", Cbor::Text("TRIM_HORIZON".into())),
        ])),
    );
    assert_eq!(status, 200, "{it:?}");
    let iterator = text(get(&it, "ShardIterator")).to_owned();
    let get_records = encode(&map(&[("ShardIterator", Cbor::Text(iterator.clone()))]));
    let (status, got) = call_cbor(&model, "GetRecords", &get_records);
    assert_eq!(status, 200, "{got:?}");
    let records = get(&got, "Records").as_array().expect("a list");
    assert!(!records.is_empty());
    let first = &records[0];
    assert_eq!(get(first, "Data"), &Cbor::Bytes(DATA.to_vec()));
    assert_eq!(text(get(first, "SequenceNumber")), sequence_number);
    assert_eq!(
        get(first, "ApproximateArrivalTimestamp"),
        &Cbor::Tag(1, Box::new(Cbor::Integer(model.now_ms.get().into())))
    );

    // The same read in JSON carries the same document.
    let (status, json_got) = call_json(&model, "GetRecords", &json!({"ShardIterator": iterator}));
    assert_eq!(status, 200);
    let mut cbor_got = as_json(&got);
    let mut json_got = json_got;
    for doc in [&mut cbor_got, &mut json_got] {
        doc.as_object_mut()
            .expect("an object")
            .remove("NextShardIterator");
    }
    assert_eq!(cbor_got, json_got);
}

#[test]
fn cbor_responses_match_json_responses() {
    let model = Model::default();
    call_cbor(&model, "CreateStream", &vector("create_stream"));
    call_cbor(
        &model,
        "AddTagsToStream",
        &encode(&map(&[
            ("StreamName", Cbor::Text("cbor-stream".into())),
            (
                "Tags",
                map(&[("k", Cbor::Text("v".into())), ("k2", Cbor::Text("".into()))]),
            ),
        ])),
    );
    for (op, body) in [
        ("DescribeStream", json!({"StreamName": "cbor-stream"})),
        (
            "DescribeStreamSummary",
            json!({"StreamName": "cbor-stream"}),
        ),
        ("ListStreams", json!({})),
        ("ListShards", json!({"StreamName": "cbor-stream"})),
        ("ListTagsForStream", json!({"StreamName": "cbor-stream"})),
    ] {
        let cbor_body = ciborium_from_json(&body);
        let (status, cbor) = call_cbor(&model, op, &cbor_body);
        let (json_status, json) = call_json(&model, op, &body);
        assert_eq!((status, json_status), (200, 200), "{op}");
        assert_eq!(as_json(&cbor), json, "{op}");
    }
}

fn ciborium_from_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("encodes");
    out
}

#[test]
fn authentication_errors_are_json_for_json_requests_and_403_xml_otherwise() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crate::sigv4::{AuthConfig, SIGNATURE_MISMATCH, format_amz_date};

    let model = Model::default();
    let auth = AuthConfig::verify([("AKID", "secret")]);
    let now = SystemTime::now();
    let amz_date = format_amz_date(
        now.duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs(),
    );
    let scope = format!("AKID/{}/{REGION}/kinesis/aws4_request", &amz_date[..8]);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature={}",
        "0".repeat(64)
    );
    let headers: Vec<(&str, &[u8])> =
        vec![("host", b"localhost"), ("x-amz-date", amz_date.as_bytes())];
    let cbor_body = encode(&map(&[]));
    for (content_type, body) in [
        ("application/x-amz-json-1.1", b"{}".as_slice()),
        (CONTENT_TYPE_CBOR, cbor_body.as_slice()),
    ] {
        let req = HttpRequest {
            authorization: Some(&authorization),
            has_date: true,
            headers: &headers,
            ..request("Kinesis_20131202.ListStreams", content_type, body)
        };
        let response = block_on(super::handle_kinesis_with(&model, req, &auth, now));
        let text = String::from_utf8(response.body.clone()).expect("text body");
        if content_type == CONTENT_TYPE_CBOR {
            assert_eq!(response.status, 403);
            assert_eq!(response.header("content-type"), None);
            assert_eq!(
                text,
                format!(
                    "<InvalidSignatureException>\n  <Message>{SIGNATURE_MISMATCH}</Message>\n</InvalidSignatureException>\n"
                )
            );
        } else {
            assert_eq!(response.status, 400);
            let v: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(
                v,
                json!({"__type": "InvalidSignatureException", "message": SIGNATURE_MISMATCH})
            );
        }
    }
}
