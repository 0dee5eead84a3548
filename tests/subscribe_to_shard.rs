//! SubscribeToShard (enhanced fan-out) end to end: the real `sluice` binary on loopback, read by
//! the real `aws-sdk-kinesis` event-stream parser over HTTP/1.1 (what the SDK speaks on
//! `http://`), and by a raw h2c client whose frames are decoded with aws-smithy-eventstream.
//!
//! The failures these guard against: records that are only delivered on a polling tick (or not
//! at all) instead of when they commit, a missing `initial-response` (boto3 and Go refuse the
//! stream), continuation numbers that do not advance or do not resume exactly after the last
//! record, two live subscriptions to one (consumer, shard), and frames that a real decoder
//! rejects. `GET /metrics` is checked here too, since it counts the same traffic.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ShardIteratorType, StartingPosition, SubscribeToShardEvent,
    SubscribeToShardEventStream,
};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::Bytes;
use common::{
    Server, create_active_stream, expect_error, shard_id, stream_arn, unique_stream_name,
};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How long a test waits for one event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// Registers a consumer and waits until it is ACTIVE; returns its ARN.
async fn register_consumer(client: &Client, stream_name: &str, consumer_name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let arn = loop {
        match client
            .register_stream_consumer()
            .stream_arn(stream_arn(stream_name))
            .consumer_name(consumer_name)
            .send()
            .await
        {
            Ok(out) => {
                break out
                    .consumer()
                    .expect("RegisterStreamConsumer returns the consumer")
                    .consumer_arn()
                    .to_owned();
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("RegisterStreamConsumer not ready yet: {e:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("RegisterStreamConsumer failed: {e:?}"),
        }
    };
    loop {
        let described = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .expect("DescribeStreamConsumer works");
        let status = described
            .consumer_description()
            .map(|d| d.consumer_status().as_str().to_owned())
            .unwrap_or_default();
        if status == "ACTIVE" {
            return arn;
        }
        assert!(Instant::now() < deadline, "consumer stayed {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn position(kind: ShardIteratorType) -> StartingPosition {
    StartingPosition::builder()
        .r#type(kind)
        .build()
        .expect("type is set")
}

fn entry(data: &[u8], partition_key: &str) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(data))
        .partition_key(partition_key)
        .build()
        .expect("data and partition key are set")
}

/// The next SubscribeToShardEvent of an SDK subscription, failing the test after a deadline.
async fn next_event(
    stream: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
) -> SubscribeToShardEvent {
    let received = tokio::time::timeout(EVENT_TIMEOUT, stream.event_stream.recv())
        .await
        .expect("an event arrives in time")
        .expect("the event stream parses");
    match received {
        Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)) => event,
        Some(other) => panic!("unexpected event {other:?}"),
        None => panic!("the stream ended early"),
    }
}

/// The next event that carries records, skipping empty heartbeats.
async fn next_records(
    stream: &mut aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
) -> SubscribeToShardEvent {
    loop {
        let event = next_event(stream).await;
        if !event.records().is_empty() {
            return event;
        }
    }
}

/// Guards against records put after subscribing that are lost, altered, reordered or given
/// the wrong continuation. How soon they arrive is not asserted here: on a loaded machine any
/// deadline is a guess. That a waiting read is woken by the commit, not by its timer, is
/// tested without a clock in `io/src/storage.rs` (a read waiting an hour returns at once).
#[tokio::test]
async fn records_put_after_subscribing_are_pushed_over_http1_byte_for_byte() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-push");
    create_active_stream(&client, &name, 1).await;
    let consumer = register_consumer(&client, &name, "pusher").await;

    let mut subscription = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shard_id(0))
        .starting_position(position(ShardIteratorType::Latest))
        .send()
        .await
        .expect("SubscribeToShard succeeds");

    let mut previous_continuation: Option<String> = None;
    for round in 0..3u8 {
        let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![round, i, 0, 0xff, b'x']).collect();
        let put = client
            .put_records()
            .stream_name(&name)
            .set_records(Some(payloads.iter().map(|p| entry(p, "pk")).collect()))
            .send()
            .await
            .expect("PutRecords succeeds");
        let put_numbers: Vec<String> = put
            .records()
            .iter()
            .map(|r| r.sequence_number().expect("stored").to_owned())
            .collect();

        let mut received = Vec::new();
        let mut last_event = None;
        while received.len() < payloads.len() {
            let event = next_records(&mut subscription).await;
            received.extend(event.records().iter().cloned());
            last_event = Some(event);
        }
        assert_eq!(received.len(), payloads.len());
        for ((record, payload), number) in received.iter().zip(&payloads).zip(&put_numbers) {
            assert_eq!(record.data().as_ref(), payload.as_slice());
            assert_eq!(record.partition_key(), Some("pk"));
            assert_eq!(record.sequence_number(), number);
        }
        let event = last_event.expect("at least one event");
        let continuation = event.continuation_sequence_number().to_owned();
        assert_eq!(&continuation, put_numbers.last().expect("four records"));
        if let Some(previous) = &previous_continuation {
            assert_eq!(continuation.len(), 56);
            assert!(
                continuation > *previous,
                "continuation advances: {previous} -> {continuation}"
            );
        }
        previous_continuation = Some(continuation);
    }
}

/// Guards against a subscription that skips earlier records, sends empty events in a busy
/// loop instead of waiting for the heartbeat, loses its continuation when idle, or repeats or
/// loses a record on resuming.
#[tokio::test]
async fn trim_horizon_delivers_earlier_records_then_an_idle_heartbeat_keeps_the_continuation() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-horizon");
    create_active_stream(&client, &name, 1).await;
    let consumer = register_consumer(&client, &name, "reader").await;
    let put = client
        .put_records()
        .stream_name(&name)
        .set_records(Some((0..5u8).map(|i| entry(&[i; 3], "k")).collect()))
        .send()
        .await
        .expect("PutRecords succeeds");
    let last = put.records()[4]
        .sequence_number()
        .expect("stored")
        .to_owned();

    // Measured from before the request: the server starts its heartbeat wait after it sent
    // the first event, so the heartbeat cannot come sooner than that wait after this point,
    // however slow the machine. Lateness is not asserted (`next_event` has a hang guard).
    let subscribed_from = Instant::now();
    let mut subscription = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shard_id(0))
        .starting_position(position(ShardIteratorType::TrimHorizon))
        .send()
        .await
        .expect("SubscribeToShard succeeds");
    let event = next_records(&mut subscription).await;
    assert_eq!(event.records().len(), 5);
    assert_eq!(event.continuation_sequence_number(), last);

    let heartbeat = next_event(&mut subscription).await;
    let idle = subscribed_from.elapsed();
    assert!(heartbeat.records().is_empty());
    assert!(
        idle >= Duration::from_secs(3),
        "an empty event after {idle:?}: the heartbeat did not wait"
    );
    assert_eq!(
        heartbeat.continuation_sequence_number(),
        last,
        "resubscribing AFTER the continuation of an idle event resumes after the last record"
    );

    // Resuming after the continuation delivers exactly the next record: nothing repeated or lost.
    drop(subscription);
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    let next = client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(b"sixth".to_vec()))
        .partition_key("k")
        .send()
        .await
        .expect("PutRecord succeeds");
    let mut resumed = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shard_id(0))
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(&last)
                .build()
                .expect("type is set"),
        )
        .send()
        .await
        .expect("resubscribing succeeds");
    let event = next_records(&mut resumed).await;
    assert_eq!(event.records().len(), 1);
    assert_eq!(event.records()[0].sequence_number(), next.sequence_number());
    assert_eq!(event.records()[0].data().as_ref(), b"sixth");
}

/// Guards against two live subscriptions to one (consumer, shard), and against a lease that
/// is never handed over. The refusal is asserted only when the client saw both requests within
/// five seconds (then the server did too); a machine too slow for that repeats the attempt.
#[tokio::test]
async fn a_second_subscription_within_five_seconds_is_refused_and_a_later_one_takes_over() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-riu");
    create_active_stream(&client, &name, 1).await;
    let consumer = register_consumer(&client, &name, "single").await;
    let subscribe = || {
        client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id(shard_id(0))
            .starting_position(position(ShardIteratorType::Latest))
            .send()
    };
    const TAKEOVER: Duration = Duration::from_secs(5);
    let mut attempts = 0;
    let (mut first, leased_by) = loop {
        attempts += 1;
        let started = Instant::now();
        let first = subscribe().await.expect("the first subscription succeeds");
        // The server took the lease before it answered.
        let leased_by = Instant::now();
        let second = subscribe().await;
        if started.elapsed() < TAKEOVER {
            let (code, message) = expect_error(second);
            assert_eq!(code, "ResourceInUseException", "{message}");
            break (first, leased_by);
        }
        // Too slow to tell: the second may rightly have taken over. Wait out its lease.
        assert!(attempts < 5, "5 attempts each took over {TAKEOVER:?}");
        drop((first, second));
        tokio::time::sleep(TAKEOVER + Duration::from_millis(300)).await;
    };

    tokio::time::sleep((TAKEOVER + Duration::from_millis(300)).saturating_sub(leased_by.elapsed()))
        .await;
    let mut second = subscribe()
        .await
        .expect("after 5 s a new subscription takes over");
    // The old one ends at its next event: with a ResourceInUse exception, then nothing.
    let ended = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match first.event_stream.recv().await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(_))) => continue,
                Ok(other) => return format!("{other:?}"),
                Err(e) => return format!("{e:?}"),
            }
        }
    })
    .await
    .expect("the old subscription ends");
    assert!(ended.contains("ResourceInUse"), "{ended}");

    client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(b"to the new one".to_vec()))
        .partition_key("k")
        .send()
        .await
        .expect("PutRecord succeeds");
    let event = next_records(&mut second).await;
    assert_eq!(event.records()[0].data().as_ref(), b"to the new one");
}

#[tokio::test]
async fn errors_found_before_streaming_are_ordinary_error_responses() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-errors");
    create_active_stream(&client, &name, 1).await;
    let consumer = register_consumer(&client, &name, "errs").await;

    let unknown = format!("{}/consumer/nobody:1700000000", stream_arn(&name));
    let (code, message) = expect_error(
        client
            .subscribe_to_shard()
            .consumer_arn(&unknown)
            .shard_id(shard_id(0))
            .starting_position(position(ShardIteratorType::Latest))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(
        message,
        format!("Consumer {unknown}, account 000000000000 not found.")
    );

    let (code, _) = expect_error(
        client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id(shard_id(7))
            .starting_position(position(ShardIteratorType::Latest))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");

    let (code, _) = expect_error(
        client
            .subscribe_to_shard()
            .consumer_arn(&consumer)
            .shard_id(shard_id(0))
            .starting_position(position(ShardIteratorType::AtSequenceNumber))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2 (h2c prior knowledge), as the Java SDK and the JS SDK v3 speak it.

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str().to_owned())
}

/// Reads body chunks into `decoder` until one whole message is decoded.
async fn next_message(
    body: &mut hyper::body::Incoming,
    decoder: &mut MessageFrameDecoder,
    buffer: &mut bytes::BytesMut,
) -> Message {
    loop {
        if let DecodedFrame::Complete(message) = decoder
            .decode_frame(&mut *buffer)
            .expect("frames are valid")
        {
            return message;
        }
        let frame = tokio::time::timeout(EVENT_TIMEOUT, body.frame())
            .await
            .expect("a frame arrives in time")
            .expect("the stream is still open")
            .expect("the body reads");
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

/// Starts an h2c SubscribeToShard with `body` of `content_type`; returns the response and the
/// connection's request handle, which must be kept while the body streams.
async fn subscribe_h2c(
    server: &Server,
    content_type: &str,
    body: Vec<u8>,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    hyper::Response<hyper::body::Incoming>,
) {
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    let request = hyper::Request::post(format!("http://{address}/"))
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("content-type", content_type)
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let response = sender
        .send_request(request)
        .await
        .expect("response head arrives");
    (sender, response)
}

#[tokio::test]
async fn h2c_subscriptions_stream_frames_that_the_sdk_decoder_accepts_in_json_and_cbor() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-h2");
    create_active_stream(&client, &name, 2).await;
    let consumer = register_consumer(&client, &name, "h2").await;

    for (shard, protocol) in [(0usize, "json"), (1, "cbor")] {
        let (content_type, body, payload_type) = if protocol == "json" {
            let body = serde_json::json!({
                "ConsumerARN": consumer,
                "ShardId": shard_id(shard),
                "StartingPosition": {"Type": "LATEST"},
            });
            (
                "application/x-amz-json-1.1",
                serde_json::to_vec(&body).expect("JSON"),
                "application/json",
            )
        } else {
            use ciborium::Value;
            let body = Value::Map(vec![
                (
                    Value::Text("ConsumerARN".into()),
                    Value::Text(consumer.clone()),
                ),
                (Value::Text("ShardId".into()), Value::Text(shard_id(shard))),
                (
                    Value::Text("StartingPosition".into()),
                    Value::Map(vec![(
                        Value::Text("Type".into()),
                        Value::Text("LATEST".into()),
                    )]),
                ),
            ]);
            let mut bytes = Vec::new();
            ciborium::into_writer(&body, &mut bytes).expect("CBOR");
            (
                "application/x-amz-cbor-1.1",
                bytes,
                "application/x-amz-cbor-1.1",
            )
        };
        let (_connection, response) = subscribe_h2c(&server, content_type, body).await;
        assert_eq!(response.status(), 200, "{protocol}");
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/vnd.amazon.eventstream")
        );
        let mut body = response.into_body();
        let mut decoder = MessageFrameDecoder::new();
        let mut buffer = bytes::BytesMut::new();

        let initial = next_message(&mut body, &mut decoder, &mut buffer).await;
        assert_eq!(header(&initial, ":message-type").as_deref(), Some("event"));
        assert_eq!(
            header(&initial, ":event-type").as_deref(),
            Some("initial-response")
        );
        assert_eq!(
            header(&initial, ":content-type").as_deref(),
            Some(payload_type)
        );

        // Route the record to `shard` with an explicit hash key in its half of the key space.
        let hash_key = if shard == 0 {
            "1"
        } else {
            "340282366920938463463374607431768211455"
        };
        let data = format!("over h2 as {protocol}").into_bytes();
        let put = client
            .put_record()
            .stream_name(&name)
            .data(Blob::new(data.clone()))
            .partition_key("k")
            .explicit_hash_key(hash_key)
            .send()
            .await
            .expect("PutRecord succeeds");
        assert_eq!(put.shard_id(), shard_id(shard));

        let event = loop {
            let message = next_message(&mut body, &mut decoder, &mut buffer).await;
            assert_eq!(
                header(&message, ":event-type").as_deref(),
                Some("SubscribeToShardEvent")
            );
            assert_eq!(
                header(&message, ":content-type").as_deref(),
                Some(payload_type)
            );
            let document: serde_json::Value = if protocol == "json" {
                serde_json::from_slice(message.payload()).expect("JSON payload")
            } else {
                let value: ciborium::Value =
                    ciborium::from_reader(message.payload().as_ref()).expect("CBOR payload");
                cbor_to_json(value)
            };
            if document["Records"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                break document;
            }
        };
        let record = &event["Records"][0];
        assert_eq!(record["SequenceNumber"], put.sequence_number());
        assert_eq!(record["PartitionKey"], "k");
        assert_eq!(event["ContinuationSequenceNumber"], put.sequence_number());
        assert!(event["MillisBehindLatest"].is_u64());
        let received = if protocol == "json" {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(record["Data"].as_str().expect("base64 text"))
                .expect("valid base64")
        } else {
            record["Data"]
                .as_array()
                .expect("bytes")
                .iter()
                .map(|b| b.as_u64().expect("byte") as u8)
                .collect()
        };
        assert_eq!(received, data);
    }
}

/// A CBOR value as JSON, with byte strings as arrays of numbers and tags dropped.
fn cbor_to_json(value: ciborium::Value) -> serde_json::Value {
    use ciborium::Value;
    match value {
        Value::Text(s) => serde_json::Value::String(s),
        Value::Integer(i) => serde_json::json!(i128::from(i) as u64),
        Value::Bytes(b) => serde_json::json!(b),
        Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(cbor_to_json).collect())
        }
        Value::Map(members) => serde_json::Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.as_text().unwrap_or("").to_owned(), cbor_to_json(v)))
                .collect(),
        ),
        Value::Tag(_, inner) => cbor_to_json(*inner),
        Value::Bool(b) => serde_json::Value::Bool(b),
        _ => serde_json::Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// GET /metrics

/// Scrapes `GET /metrics` over HTTP/1.1 and returns the body.
async fn scrape(server: &Server) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request written");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("text/plain; version=0.0.4"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `name{labels}` (exact label text), or 0 when absent.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().expect("sample values are numbers"))
}

#[tokio::test]
async fn metrics_count_puts_reads_and_events_per_stream_and_per_shard_when_enabled() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("metrics");
    create_active_stream(&client, &name, 1).await;
    let stream_label = format!("stream=\"{name}\"");
    let before = scrape(&server).await;
    assert_eq!(
        sample(&before, "kinesis_incoming_records_total", &stream_label),
        0.0
    );

    // 3 records of 10 + 2 bytes through PutRecords, 1 of 4 + 2 through PutRecord.
    client
        .put_records()
        .stream_name(&name)
        .set_records(Some((0..3).map(|_| entry(&[7u8; 10], "pk")).collect()))
        .send()
        .await
        .expect("PutRecords succeeds");
    client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(vec![1u8; 4]))
        .partition_key("pk")
        .send()
        .await
        .expect("PutRecord succeeds");
    let iterator = client
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard_id(0))
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator()
        .expect("an iterator")
        .to_owned();
    let read = client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords succeeds");
    assert_eq!(read.records().len(), 4);

    let text = scrape(&server).await;
    let value = |metric: &str| sample(&text, metric, &stream_label);
    assert_eq!(value("kinesis_incoming_records_total"), 4.0);
    assert_eq!(value("kinesis_incoming_bytes_total"), 42.0);
    assert_eq!(value("kinesis_put_records_records_total"), 3.0);
    assert_eq!(value("kinesis_put_records_successful_records_total"), 3.0);
    assert_eq!(value("kinesis_put_records_failed_records_total"), 0.0);
    assert_eq!(value("kinesis_put_records_success_total"), 1.0);
    assert_eq!(value("kinesis_put_record_success_total"), 1.0);
    assert_eq!(value("kinesis_put_record_bytes_total"), 6.0);
    assert_eq!(value("kinesis_get_records_success_total"), 1.0);
    assert_eq!(value("kinesis_get_records_records_total"), 4.0);
    assert_eq!(value("kinesis_get_records_bytes_total"), 42.0);
    assert_eq!(
        value("kinesis_write_provisioned_throughput_exceeded_total"),
        0.0
    );
    assert!(text.contains("# TYPE kinesis_get_records_iterator_age_milliseconds gauge"));
    assert!(text.contains("# TYPE io_fsync_duration_seconds histogram"));
    let commits = sample(&text, "io_group_commit_records_count", "core=\"0\"");
    assert!(
        commits >= 2.0,
        "two writes were two group commits at least: {commits}\n{text}"
    );
    let segments: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("io_segments "))
        .expect("io_segments is always rendered")
        .parse()
        .expect("a number");
    assert!(
        segments >= 1.0,
        "the stream's log has a segment: {segments}"
    );
    // Shard-level metrics stay hidden until enhanced monitoring turns them on.
    let shard_label = format!("stream=\"{name}\",shard=\"{}\"", shard_id(0));
    assert!(!text.contains(&format!(
        "kinesis_shard_incoming_records_total{{{shard_label}}}"
    )));

    client
        .enable_enhanced_monitoring()
        .stream_name(&name)
        .shard_level_metrics(aws_sdk_kinesis::types::MetricsName::IncomingRecords)
        .shard_level_metrics(aws_sdk_kinesis::types::MetricsName::OutgoingBytes)
        .send()
        .await
        .expect("EnableEnhancedMonitoring succeeds");
    let text = scrape(&server).await;
    assert_eq!(
        sample(&text, "kinesis_shard_incoming_records_total", &shard_label),
        4.0
    );
    assert_eq!(
        sample(&text, "kinesis_shard_outgoing_bytes_total", &shard_label),
        42.0
    );
    assert!(!text.contains(&format!(
        "kinesis_shard_incoming_bytes_total{{{shard_label}}}"
    )));

    // A subscription's events count too.
    let consumer = register_consumer(&client, &name, "metered").await;
    let mut subscription = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id(shard_id(0))
        .starting_position(position(ShardIteratorType::TrimHorizon))
        .send()
        .await
        .expect("SubscribeToShard succeeds");
    let event = next_records(&mut subscription).await;
    assert_eq!(event.records().len(), 4);
    let text = scrape(&server).await;
    let value = |metric: &str| sample(&text, metric, &stream_label);
    assert_eq!(value("kinesis_subscribe_to_shard_success_total"), 1.0);
    assert!(value("kinesis_subscribe_to_shard_events_total") >= 1.0);
    assert_eq!(value("kinesis_subscribe_to_shard_event_records_total"), 4.0);
    assert_eq!(value("kinesis_subscribe_to_shard_event_bytes_total"), 42.0);
}

#[tokio::test]
async fn a_closed_shard_ends_with_child_shards_and_no_continuation_then_the_stream_ends() {
    let server = Server::start();
    let client = server.client();
    let name = unique_stream_name("efo-closed");
    create_active_stream(&client, &name, 1).await;
    let consumer = register_consumer(&client, &name, "lineage").await;
    let put = client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(b"before the split".to_vec()))
        .partition_key("k")
        .send()
        .await
        .expect("PutRecord succeeds");
    client
        .split_shard()
        .stream_name(&name)
        .shard_to_split(shard_id(0))
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard succeeds");
    common::wait_for_status(&client, &name, aws_sdk_kinesis::types::StreamStatus::Active).await;

    let body = serde_json::json!({
        "ConsumerARN": consumer,
        "ShardId": shard_id(0),
        "StartingPosition": {"Type": "TRIM_HORIZON"},
    });
    let (_connection, response) = subscribe_h2c(
        &server,
        "application/x-amz-json-1.1",
        serde_json::to_vec(&body).expect("JSON"),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = bytes::BytesMut::new();
    let initial = next_message(&mut body, &mut decoder, &mut buffer).await;
    assert_eq!(
        header(&initial, ":event-type").as_deref(),
        Some("initial-response")
    );

    let mut records = Vec::new();
    let last = loop {
        let message = next_message(&mut body, &mut decoder, &mut buffer).await;
        let event: serde_json::Value =
            serde_json::from_slice(message.payload()).expect("JSON payload");
        records.extend(event["Records"].as_array().cloned().unwrap_or_default());
        if event.get("ContinuationSequenceNumber").is_none() {
            break event;
        }
    };
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["SequenceNumber"], put.sequence_number());
    let children: Vec<&str> = last["ChildShards"]
        .as_array()
        .expect("the last event names the child shards")
        .iter()
        .map(|c| c["ShardId"].as_str().expect("a shard id"))
        .collect();
    assert_eq!(children, [shard_id(1), shard_id(2)]);
    // Then the stream ends: no more frames, and the body finishes.
    // (HTTP/2 may close the stream with an empty DATA frame carrying END_STREAM.)
    let rest = tokio::time::timeout(EVENT_TIMEOUT, body.collect())
        .await
        .expect("the body ends in time")
        .expect("the body ends cleanly")
        .to_bytes();
    assert!(
        rest.is_empty() && buffer.is_empty(),
        "no frame follows the last event: {rest:?}"
    );
}
