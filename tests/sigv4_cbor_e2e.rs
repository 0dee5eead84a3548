//! The CBOR 1.1 protocol (the Java SDK's default) and SigV4 verification end to end: the real
//! `sluice` binary on loopback, requests built with an independent CBOR library (`ciborium`),
//! signed by AWS's own signer (`aws-sigv4`), and sent over plain HTTP/1.1.
//!
//! The CBOR tests run against the default loopback server, which accepts any well-formed
//! signature. The verification tests start the server with `--credentials ACCESS_KEY_ID:SECRET`,
//! so every signature is checked. The same checks also run in-process, through the real HTTP
//! stack, in `src/http.rs` (`http::tests::sigv4`).

mod common;

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;
use ciborium::value::Value as Cbor;
use common::{STATE_CHANGE_TIMEOUT, Server, unique_stream_name};

const CBOR: &str = "application/x-amz-cbor-1.1";
const KEY: &str = "AKIDE2ETEST";
const SECRET: &str = "e2e-secret";

struct Response {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Response {
    fn cbor(&self) -> Cbor {
        assert_eq!(self.content_type.as_deref(), Some(CBOR), "a CBOR answer");
        ciborium::de::from_reader(self.body.as_slice()).expect("the body is CBOR")
    }
}

fn host_of(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

/// Signs `body` for `op` as of `at` with `secret`, and returns the headers to send.
fn signed_headers(
    endpoint: &str,
    op: &str,
    body: &[u8],
    secret: &str,
    at: SystemTime,
) -> Vec<(String, String)> {
    let identity: Identity = Credentials::new(KEY, secret, None, None, "e2e").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(common::REGION)
        .name("kinesis")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .expect("complete signing params")
        .into();
    let base = vec![
        ("host".to_owned(), host_of(endpoint).to_owned()),
        ("content-type".to_owned(), CBOR.to_owned()),
        ("x-amz-target".to_owned(), format!("Kinesis_20131202.{op}")),
    ];
    let uri = format!("{endpoint}/");
    let signable = SignableRequest::new(
        "POST",
        uri.as_str(),
        base.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(signable, &params).expect("signing works").into_parts();
    let mut headers = base;
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers
}

/// One HTTP/1.1 exchange over a fresh connection.
fn post(endpoint: &str, headers: &[(String, String)], body: &[u8]) -> Response {
    let mut stream = std::net::TcpStream::connect(host_of(endpoint)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout set");
    let mut head = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("head written");
    stream.write_all(body).expect("body written");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_owned())
    });
    Response {
        status,
        content_type,
        body: raw[split + 4..].to_vec(),
    }
}

fn call(endpoint: &str, op: &str, body: &Cbor) -> Response {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(body, &mut bytes).expect("encodes");
    let headers = signed_headers(endpoint, op, &bytes, SECRET, SystemTime::now());
    post(endpoint, &headers, &bytes)
}

fn map(pairs: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.to_owned()), v))
            .collect(),
    )
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

fn get<'v>(value: &'v Cbor, key: &str) -> &'v Cbor {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{key} in {value:?}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Tag 1 around epoch milliseconds, as the Java SDK writes timestamps.
fn timestamp(ms: u64) -> Cbor {
    Cbor::Tag(1, Box::new(Cbor::Integer(ms.into())))
}

fn create_active_cbor_stream(endpoint: &str, name: &str) {
    let created = call(
        endpoint,
        "CreateStream",
        &map(vec![
            ("StreamName", text(name)),
            ("ShardCount", Cbor::Integer(1.into())),
        ]),
    );
    assert_eq!(created.status, 200, "{:?}", created.body);
    assert!(
        created.body.is_empty(),
        "CreateStream answers an empty body"
    );
    let deadline = Instant::now() + STATE_CHANGE_TIMEOUT;
    loop {
        let summary = call(
            endpoint,
            "DescribeStreamSummary",
            &map(vec![("StreamName", text(name))]),
        )
        .cbor();
        let status = get(get(&summary, "StreamDescriptionSummary"), "StreamStatus").clone();
        if status == text("ACTIVE") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream never became ACTIVE: {summary:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn iterator_at(endpoint: &str, name: &str, ms: u64) -> String {
    let response = call(
        endpoint,
        "GetShardIterator",
        &map(vec![
            ("StreamName", text(name)),
            ("ShardId", text("shardId-000000000000")),
            ("ShardIteratorType", text("AT_TIMESTAMP")),
            ("Timestamp", timestamp(ms)),
        ]),
    );
    assert_eq!(response.status, 200, "{:?}", response.cbor());
    get(&response.cbor(), "ShardIterator")
        .as_text()
        .expect("text")
        .to_owned()
}

fn records_from(endpoint: &str, iterator: &str) -> Vec<Cbor> {
    let response = call(
        endpoint,
        "GetRecords",
        &map(vec![("ShardIterator", text(iterator))]),
    );
    assert_eq!(response.status, 200);
    get(&response.cbor(), "Records")
        .as_array()
        .expect("a list")
        .clone()
}

#[test]
fn cbor_requests_round_trip_binary_data_and_millisecond_timestamps_through_the_real_server() {
    let server = Server::start();
    let endpoint = server.endpoint();
    let name = unique_stream_name("cbor");
    create_active_cbor_stream(endpoint, &name);

    let first: Vec<u8> = (0..=255u8).collect();
    let second = b"\x00second\xff".to_vec();
    let before = now_ms();
    let put = call(
        endpoint,
        "PutRecord",
        &map(vec![
            ("StreamName", text(&name)),
            ("Data", Cbor::Bytes(first.clone())),
            ("PartitionKey", text("pk")),
        ]),
    );
    assert_eq!(put.status, 200);
    let put = put.cbor();
    assert_eq!(get(&put, "ShardId"), &text("shardId-000000000000"));
    let first_sequence_number = get(&put, "SequenceNumber")
        .as_text()
        .expect("a text sequence number")
        .to_owned();
    assert_eq!(first_sequence_number.len(), 56);
    std::thread::sleep(Duration::from_millis(30));
    let between = now_ms();
    std::thread::sleep(Duration::from_millis(30));
    let put = call(
        endpoint,
        "PutRecords",
        &map(vec![
            ("StreamName", text(&name)),
            (
                "Records",
                Cbor::Array(vec![map(vec![
                    ("Data", Cbor::Bytes(second.clone())),
                    ("PartitionKey", text("pk")),
                ])]),
            ),
        ]),
    );
    assert_eq!(put.status, 200);
    assert_eq!(
        get(&put.cbor(), "FailedRecordCount"),
        &Cbor::Integer(0.into())
    );
    let after = now_ms();

    // AT_TIMESTAMP before both puts reads both, with byte strings and tag-1 millisecond times.
    let records = records_from(endpoint, &iterator_at(endpoint, &name, before - 1));
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(get(&records[0], "Data"), &Cbor::Bytes(first));
    assert_eq!(
        get(&records[0], "SequenceNumber"),
        &text(&first_sequence_number)
    );
    assert_eq!(get(&records[1], "Data"), &Cbor::Bytes(second.clone()));
    for record in &records {
        let Cbor::Tag(1, inner) = get(record, "ApproximateArrivalTimestamp") else {
            panic!("timestamps are tag 1: {record:?}");
        };
        let ms =
            u64::try_from(i128::from(inner.as_integer().expect("an integer"))).expect("positive");
        // Milliseconds, not seconds: within the window the test measured (one second of slack
        // for clock granularity).
        assert!(
            before - 1000 <= ms && ms <= after + 1000,
            "{ms} not in {before}..{after}"
        );
    }

    // A millisecond timestamp between the two puts reads only the second record; read as
    // seconds it would be tens of thousands of years in the future.
    let records = records_from(endpoint, &iterator_at(endpoint, &name, between));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(get(&records[0], "Data"), &Cbor::Bytes(second));
}

#[test]
fn cbor_errors_come_back_as_cbor_maps_with_the_aws_texts() {
    let server = Server::start();
    let endpoint = server.endpoint();
    let missing = call(
        endpoint,
        "DescribeStream",
        &map(vec![("StreamName", text("nope"))]),
    );
    assert_eq!(missing.status, 400);
    let error = missing.cbor();
    assert_eq!(get(&error, "__type"), &text("ResourceNotFoundException"));
    assert_eq!(
        get(&error, "message"),
        &text(&common::stream_not_found_message("nope"))
    );

    let invalid = call(
        endpoint,
        "PutRecord",
        &map(vec![
            ("StreamName", text("s")),
            ("Data", Cbor::Bytes(vec![1])),
        ]),
    );
    assert_eq!(invalid.status, 400);
    let error = invalid.cbor();
    assert_eq!(get(&error, "__type"), &text("ValidationException"));
    assert_eq!(
        get(&error, "message"),
        &text(
            "1 validation error detected: Value null at 'partitionKey' failed to satisfy constraint: Member must not be null"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Verification against configured credentials. These need the server's credentials setting.

fn verifying_server() -> Server {
    Server::options()
        .flag("--credentials", format!("{KEY}:{SECRET}"))
        .start()
}

fn list_streams_with(
    endpoint: &str,
    secret: &str,
    at: SystemTime,
    body: &[u8],
    signed_body: &[u8],
) -> Response {
    let headers = signed_headers(endpoint, "ListStreams", signed_body, secret, at);
    post(endpoint, &headers, body)
}

fn empty_map() -> Vec<u8> {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&Cbor::Map(Vec::new()), &mut bytes).expect("encodes");
    bytes
}

#[test]
fn the_right_signature_passes_and_a_wrong_secret_a_stale_date_and_a_tampered_body_are_refused() {
    let server = verifying_server();
    let endpoint = server.endpoint();
    let body = empty_map();
    let ok = list_streams_with(endpoint, SECRET, SystemTime::now(), &body, &body);
    assert_eq!(ok.status, 200);
    assert!(get(&ok.cbor(), "StreamNames").as_array().is_some());

    // Authentication errors on a CBOR request come back in AWS's XML form with 403.
    let wrong = list_streams_with(endpoint, "wrong", SystemTime::now(), &body, &body);
    assert_eq!(wrong.status, 403);
    let text = String::from_utf8(wrong.body).expect("XML");
    assert!(text.contains("<InvalidSignatureException>"), "{text}");
    assert!(
        text.contains("The request signature we calculated does not match"),
        "{text}"
    );

    let stale = list_streams_with(
        endpoint,
        SECRET,
        SystemTime::now() - Duration::from_secs(16 * 60),
        &body,
        &body,
    );
    assert_eq!(stale.status, 403);
    let text = String::from_utf8(stale.body).expect("XML");
    assert!(text.contains("Signature expired: "), "{text}");

    let mut tampered = Vec::new();
    ciborium::ser::into_writer(
        &map(vec![("Limit", Cbor::Integer(1.into()))]),
        &mut tampered,
    )
    .expect("encodes");
    let refused = list_streams_with(endpoint, SECRET, SystemTime::now(), &tampered, &body);
    assert_eq!(refused.status, 403);
    let text = String::from_utf8(refused.body).expect("XML");
    assert!(text.contains("<InvalidSignatureException>"), "{text}");
}

#[test]
fn the_sdk_with_the_configured_secret_passes_and_with_another_is_refused() {
    use aws_sdk_kinesis::error::ProvideErrorMetadata as _;

    let server = verifying_server();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client = |secret: &str| {
            let config = aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .region(aws_sdk_kinesis::config::Region::new(common::REGION))
                .endpoint_url(server.endpoint())
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    KEY, secret, None, None, "e2e",
                ))
                .build();
            aws_sdk_kinesis::Client::from_conf(config)
        };
        client(SECRET)
            .list_streams()
            .send()
            .await
            .expect("the configured secret passes");
        let error = client("wrong")
            .list_streams()
            .send()
            .await
            .expect_err("another secret is refused");
        assert_eq!(error.code(), Some("InvalidSignatureException"));
    });
}
