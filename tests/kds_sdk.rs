//! Kinesis Data Streams end to end: the real `sluice` binary on loopback, driven by the real
//! `aws-sdk-kinesis` client exactly as an application would drive AWS through `endpoint_url`.
//!
//! Each test starts its own server on a fresh data directory, so tests are independent and may
//! run in parallel. Expected values (hash key boundaries, error codes and texts) are AWS's, as
//! recorded in `shared/reference/kds.md`; the MD5 routing rule is recomputed here with `md-5`
//! rather than taken from the server's own code.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use common::{
    ACCOUNT_ID, ReadRecord, Server, create_active_stream, even_hash_ranges, expect_error,
    hash_key_of, read_from_iterator_to_end, read_shard_to_end, sequence_number_key, shard_id,
    shard_index_for, stream_arn, stream_not_found_message, wait_for_status, wait_until_gone,
};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2^128 − 1, the largest hash key.
const HASH_KEY_MAX: &str = "340282366920938463463374607431768211455";

fn entry(data: impl Into<Vec<u8>>, partition_key: &str) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(data))
        .partition_key(partition_key)
        .build()
        .expect("data and partition key are set")
}

fn assert_sequence_number_shape(sequence_number: &str) {
    assert_eq!(
        sequence_number.len(),
        56,
        "sequence numbers are 56 digits: {sequence_number}"
    );
    assert!(
        sequence_number.bytes().all(|b| b.is_ascii_digit()),
        "sequence numbers are decimal: {sequence_number}"
    );
}

async fn iterator(
    client: &Client,
    stream_name: &str,
    shard: &str,
    kind: ShardIteratorType,
    sequence_number: Option<&str>,
    timestamp: Option<DateTime>,
) -> String {
    let mut request = client
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(shard)
        .shard_iterator_type(kind.clone());
    if let Some(sequence_number) = sequence_number {
        request = request.starting_sequence_number(sequence_number);
    }
    if let Some(timestamp) = timestamp {
        request = request.timestamp(timestamp);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator {kind:?} failed: {e:?}"))
        .shard_iterator
        .expect("GetShardIterator on an open shard returns an iterator")
}

#[tokio::test]
async fn health_endpoint_answers_200() {
    let server = Server::start();
    let address = server.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("the server accepts connections");
    stream
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("the request can be written");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("/health answers within 10 s")
        .expect("the response can be read");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "GET /health must answer 200, got: {response}"
    );
}

#[tokio::test]
async fn serve_reports_an_occupied_port_as_one_error_line_and_fails() {
    // Hold a port without SO_REUSEPORT, so the server's bind must fail.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port exists");
    let address = holder
        .local_addr()
        .expect("a bound listener has an address");
    let data_dir = tempfile::tempdir().expect("the temp dir is writable");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "serve",
                "--http-addr",
                &address.to_string(),
                "--cores",
                "1",
                "--pin-cores",
                "false",
            ])
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the sluice binary runs")
    });
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("sluice exits within 30 s when its port is taken")
        .expect("the blocking task does not panic");
    drop(holder);
    assert!(
        !output.status.success(),
        "sluice must exit non-zero when its port is taken"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|line| line.starts_with("error:")),
        "sluice must explain a failed start on a line starting with `error:`, stderr was: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !stdout.contains("serving Kinesis"),
        "a failed start must not print the ready line: {stdout}"
    );
}

#[tokio::test]
async fn create_stream_describes_shards_with_aws_even_hash_ranges() {
    let server = Server::start();
    let client = server.client();
    for (stream_name, shard_count) in [
        ("even-1", 1u32),
        ("even-2", 2),
        ("even-3", 3),
        ("even-5", 5),
    ] {
        create_active_stream(&client, stream_name, shard_count as i32).await;
        let description = client
            .describe_stream()
            .stream_name(stream_name)
            .send()
            .await
            .expect("DescribeStream of an ACTIVE stream succeeds")
            .stream_description
            .expect("DescribeStream carries a description");
        assert_eq!(description.stream_name(), stream_name);
        assert_eq!(description.stream_arn(), stream_arn(stream_name));
        assert_eq!(description.stream_status(), &StreamStatus::Active);
        assert_eq!(description.retention_period_hours(), 24);
        assert!(
            !description.has_more_shards(),
            "{shard_count} shards fit one page"
        );
        let shards = description.shards();
        assert_eq!(shards.len(), shard_count as usize);
        let expected = even_hash_ranges(shard_count);
        for (index, shard) in shards.iter().enumerate() {
            assert_eq!(shard.shard_id(), shard_id(index));
            let range = shard
                .hash_key_range()
                .expect("every shard has a hash key range");
            assert_eq!(
                range.starting_hash_key(),
                expected[index].0.to_string(),
                "{stream_name} {index}"
            );
            assert_eq!(
                range.ending_hash_key(),
                expected[index].1.to_string(),
                "{stream_name} {index}"
            );
            let sequence_range = shard
                .sequence_number_range()
                .expect("every shard has a sequence range");
            assert_sequence_number_shape(sequence_range.starting_sequence_number());
            assert_eq!(
                sequence_range.ending_sequence_number(),
                None,
                "new shards are open"
            );
            assert_eq!(shard.parent_shard_id(), None);
        }
    }
    // The literal boundaries AWS uses (kds.md §2.2), independent of the helper's arithmetic.
    let two = client
        .describe_stream()
        .stream_name("even-2")
        .send()
        .await
        .expect("describe succeeds");
    let shards = two.stream_description().expect("description").shards();
    let first = shards[0].hash_key_range().expect("range");
    let second = shards[1].hash_key_range().expect("range");
    assert_eq!(first.starting_hash_key(), "0");
    assert_eq!(
        first.ending_hash_key(),
        "170141183460469231731687303715884105727"
    );
    assert_eq!(
        second.starting_hash_key(),
        "170141183460469231731687303715884105728"
    );
    assert_eq!(second.ending_hash_key(), HASH_KEY_MAX);
    let three = client
        .describe_stream()
        .stream_name("even-3")
        .send()
        .await
        .expect("describe succeeds");
    let shards = three.stream_description().expect("description").shards();
    assert_eq!(
        shards[0].hash_key_range().expect("range").ending_hash_key(),
        "113427455640312821154458202477256070484"
    );
    assert_eq!(
        shards[2].hash_key_range().expect("range").ending_hash_key(),
        HASH_KEY_MAX
    );
}

/// Guards against a stream that is ACTIVE (or writable) before its create delay has passed,
/// or that passes through a state other than CREATING on the way.
#[tokio::test]
async fn create_stream_stays_creating_until_the_create_delay_has_passed() {
    // A 3 s delay leaves a loaded machine 2.5 s to describe the new stream while it is
    // still CREATING; the attempts below only cover a machine slower than that.
    let server = Server::options().flag("--create-delay-ms", 3000).start();
    let client = server.client();
    // A loaded machine may take longer than the delay between CreateStream and the first
    // DescribeStreamSummary; then CREATING cannot be observed and the attempt is repeated with a
    // new stream rather than passing or failing on timing alone.
    let mut observed = None;
    for attempt in 0..5 {
        let name = format!("slow-{attempt}");
        let started = Instant::now();
        client
            .create_stream()
            .stream_name(&name)
            .shard_count(2)
            .send()
            .await
            .expect("CreateStream succeeds");
        let summary = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("a CREATING stream can be described");
        let status = summary
            .stream_description_summary()
            .expect("summary")
            .stream_status()
            .clone();
        if started.elapsed() < Duration::from_millis(2500) {
            assert_eq!(
                status,
                StreamStatus::Creating,
                "right after CreateStream the stream is CREATING"
            );
            observed = Some((name, started));
            break;
        }
    }
    let (name, started) =
        observed.expect("in 5 attempts, one DescribeStreamSummary came within 2.5 s");
    let name = name.as_str();
    // Writes to a CREATING stream fail with ResourceNotFound, as on AWS.
    let put = client
        .put_record()
        .stream_name(name)
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await;
    let put_returned_after = started.elapsed();
    match put {
        Err(error) => {
            let (code, message) = expect_error::<(), _, _>(Err(error));
            assert_eq!(code, "ResourceNotFoundException");
            assert_eq!(message, stream_not_found_message(name));
        }
        Ok(_) => assert!(
            put_returned_after >= Duration::from_millis(3000),
            "PutRecord succeeded {put_returned_after:?} after CreateStream, before the 3 s delay"
        ),
    }

    let mut active_at = None;
    while started.elapsed() < Duration::from_secs(20) {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .expect("describe");
        let status = summary
            .stream_description_summary()
            .expect("summary")
            .stream_status()
            .clone();
        if status == StreamStatus::Active {
            active_at = Some(started.elapsed());
            break;
        }
        assert_eq!(
            status,
            StreamStatus::Creating,
            "the only state before ACTIVE is CREATING"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let active_at = active_at.expect("the stream becomes ACTIVE within 20 s");
    assert!(
        active_at >= Duration::from_millis(3000),
        "ACTIVE was seen {active_at:?} after CreateStream"
    );
    let description = client
        .describe_stream()
        .stream_name(name)
        .send()
        .await
        .expect("describe");
    assert_eq!(
        description
            .stream_description()
            .expect("description")
            .shards()
            .len(),
        2
    );
}

#[tokio::test]
async fn create_stream_rejects_an_existing_name_with_resource_in_use() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "twice", 1).await;
    let (code, message) = expect_error(
        client
            .create_stream()
            .stream_name("twice")
            .shard_count(1)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceInUseException");
    assert_eq!(
        message,
        format!("Stream twice under account {ACCOUNT_ID} already exists.")
    );
}

#[tokio::test]
async fn describe_stream_pages_with_limit_and_exclusive_start_shard_id() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "paged", 5).await;
    let mut seen = Vec::new();
    let mut exclusive_start: Option<String> = None;
    let mut pages = 0;
    loop {
        let description = client
            .describe_stream()
            .stream_name("paged")
            .limit(2)
            .set_exclusive_start_shard_id(exclusive_start.clone())
            .send()
            .await
            .expect("DescribeStream with Limit succeeds")
            .stream_description
            .expect("description");
        pages += 1;
        let ids: Vec<String> = description
            .shards()
            .iter()
            .map(|s| s.shard_id().to_owned())
            .collect();
        assert!(
            ids.len() <= 2,
            "Limit 2 returns at most 2 shards, got {ids:?}"
        );
        let more = description.has_more_shards();
        seen.extend(ids.iter().cloned());
        match (pages, more) {
            (1, true) | (2, true) => assert_eq!(ids.len(), 2),
            (3, false) => {
                assert_eq!(ids.len(), 1);
                break;
            }
            _ => panic!("unexpected page {pages}: {ids:?}, HasMoreShards={more}"),
        }
        exclusive_start = ids.last().cloned();
    }
    assert_eq!(seen, (0..5).map(shard_id).collect::<Vec<_>>());
}

#[tokio::test]
async fn describe_stream_summary_reports_open_shard_count_and_arn() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "summary", 3).await;
    let summary = client
        .describe_stream_summary()
        .stream_name("summary")
        .send()
        .await
        .expect("DescribeStreamSummary succeeds")
        .stream_description_summary
        .expect("summary");
    assert_eq!(summary.stream_name(), "summary");
    assert_eq!(summary.stream_arn(), stream_arn("summary"));
    assert_eq!(summary.stream_status(), &StreamStatus::Active);
    assert_eq!(summary.open_shard_count(), 3);
    assert_eq!(summary.retention_period_hours(), 24);
    assert_eq!(summary.consumer_count(), Some(0));
}

#[tokio::test]
async fn list_streams_pages_in_name_order_with_next_token_and_exclusive_start() {
    let server = Server::start();
    let client = server.client();
    let names = ["ls-c", "ls-a", "ls-e", "ls-b", "ls-d"];
    for name in names {
        create_active_stream(&client, name, 1).await;
    }
    let sorted: Vec<String> = {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };

    let all = client
        .list_streams()
        .send()
        .await
        .expect("ListStreams succeeds");
    assert_eq!(
        all.stream_names(),
        sorted.as_slice(),
        "ListStreams lists names in order"
    );
    assert!(!all.has_more_streams());
    let summaries = all.stream_summaries();
    assert_eq!(
        summaries.len(),
        5,
        "StreamSummaries has one entry per stream"
    );
    for summary in summaries {
        assert_eq!(summary.stream_arn(), stream_arn(summary.stream_name()));
        assert_eq!(summary.stream_status(), &StreamStatus::Active);
    }

    // Paging by NextToken.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for page in 1.. {
        let mut request = client.list_streams().limit(2);
        if let Some(token) = &token {
            request = request.next_token(token);
        }
        let output = request.send().await.expect("ListStreams page succeeds");
        assert!(output.stream_names().len() <= 2);
        seen.extend(output.stream_names().iter().cloned());
        if page < 3 {
            assert!(output.has_more_streams(), "page {page} of 3 has more");
            token = Some(
                output
                    .next_token()
                    .expect("a page with more streams has a NextToken")
                    .to_owned(),
            );
        } else {
            assert!(!output.has_more_streams(), "page 3 is the last");
            break;
        }
    }
    assert_eq!(seen, sorted);

    // Paging by ExclusiveStartStreamName.
    let output = client
        .list_streams()
        .limit(2)
        .exclusive_start_stream_name("ls-b")
        .send()
        .await
        .expect("ListStreams with ExclusiveStartStreamName succeeds");
    assert_eq!(
        output.stream_names(),
        ["ls-c".to_owned(), "ls-d".to_owned()].as_slice()
    );
    assert!(output.has_more_streams());
}

#[tokio::test]
async fn list_shards_pages_with_max_results_next_token_and_exclusive_start() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "shards", 5).await;

    let first = client
        .list_shards()
        .stream_name("shards")
        .max_results(2)
        .send()
        .await
        .expect("ListShards");
    let ids = |output: &aws_sdk_kinesis::operation::list_shards::ListShardsOutput| -> Vec<String> {
        output
            .shards()
            .iter()
            .map(|s| s.shard_id().to_owned())
            .collect()
    };
    assert_eq!(ids(&first), vec![shard_id(0), shard_id(1)]);
    let token = first
        .next_token()
        .expect("a first page of 2 out of 5 has a NextToken")
        .to_owned();
    // A NextToken names the stream by itself; StreamName must not be sent with it.
    let second = client
        .list_shards()
        .next_token(&token)
        .max_results(2)
        .send()
        .await
        .expect("ListShards page 2");
    assert_eq!(ids(&second), vec![shard_id(2), shard_id(3)]);
    let token = second
        .next_token()
        .expect("page 2 of 3 has a NextToken")
        .to_owned();
    let third = client
        .list_shards()
        .next_token(&token)
        .max_results(2)
        .send()
        .await
        .expect("ListShards page 3");
    assert_eq!(ids(&third), vec![shard_id(4)]);
    assert_eq!(third.next_token(), None, "the last page has no NextToken");

    let after = client
        .list_shards()
        .stream_name("shards")
        .exclusive_start_shard_id(shard_id(2))
        .send()
        .await
        .expect("ListShards with ExclusiveStartShardId");
    assert_eq!(ids(&after), vec![shard_id(3), shard_id(4)]);

    let all = client
        .list_shards()
        .stream_name("shards")
        .send()
        .await
        .expect("ListShards");
    let expected = even_hash_ranges(5);
    for (index, shard) in all.shards().iter().enumerate() {
        let range = shard.hash_key_range().expect("range");
        assert_eq!(range.starting_hash_key(), expected[index].0.to_string());
        assert_eq!(range.ending_hash_key(), expected[index].1.to_string());
    }
    assert_eq!(all.shards().len(), 5);

    let (code, message) = expect_error(
        client
            .list_shards()
            .stream_name("shards")
            .next_token(&token)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert_eq!(
        message,
        "NextToken and StreamName cannot be provided together."
    );
}

#[tokio::test]
async fn put_record_routes_by_md5_of_the_partition_key() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "routing", 4).await;
    let mut per_shard: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut keys: Vec<String> = (0..60).map(|i| format!("key-{i}")).collect();
    // Unicode keys hash their UTF-8 bytes; 256 two-byte characters is still a legal key.
    keys.push("é".repeat(256));
    keys.push("ключ-🦀".to_owned());
    for key in &keys {
        let output = client
            .put_record()
            .stream_name("routing")
            .partition_key(key)
            .data(Blob::new(key.as_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecord with key {key:?} failed: {e:?}"));
        let expected = shard_id(shard_index_for(hash_key_of(key), 4));
        assert_eq!(
            output.shard_id(),
            expected,
            "partition key {key:?} routes by MD5"
        );
        assert_sequence_number_shape(output.sequence_number());
        per_shard
            .entry(expected)
            .or_default()
            .push((output.sequence_number().to_owned(), key.clone()));
    }
    assert!(per_shard.len() == 4, "62 keys reach all 4 shards");
    for (shard, written) in per_shard {
        for pair in written.windows(2) {
            assert!(
                sequence_number_key(&pair[0].0) < sequence_number_key(&pair[1].0),
                "sequence numbers grow within {shard}: {pair:?}"
            );
        }
        let read = read_shard_to_end(&client, "routing", &shard).await;
        let read: Vec<(String, String)> = read
            .into_iter()
            .map(|r| {
                assert_eq!(r.data, r.partition_key.as_bytes(), "data round-trips");
                (r.sequence_number, r.partition_key)
            })
            .collect();
        assert_eq!(read, written, "{shard} holds exactly its records, in order");
    }
}

#[tokio::test]
async fn put_record_routes_by_explicit_hash_key_at_the_exact_boundaries() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "explicit", 3).await;
    let ranges = even_hash_ranges(3);
    let mut cases: Vec<(String, usize)> = Vec::new();
    for (index, (start, end)) in ranges.iter().enumerate() {
        cases.push((start.to_string(), index));
        cases.push((end.to_string(), index));
    }
    cases.push((HASH_KEY_MAX.to_owned(), 2));
    for (hash_key, expected_index) in cases {
        // The partition key alone would route elsewhere for some of these; the explicit key wins.
        let output = client
            .put_record()
            .stream_name("explicit")
            .partition_key("same-key-for-all")
            .explicit_hash_key(&hash_key)
            .data(Blob::new(hash_key.as_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecord with ExplicitHashKey {hash_key} failed: {e:?}"));
        assert_eq!(
            output.shard_id(),
            shard_id(expected_index),
            "ExplicitHashKey {hash_key}"
        );
    }
}

#[tokio::test]
async fn put_records_returns_per_entry_results_in_request_order() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "batch", 4).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ranges = even_hash_ranges(4);
    let mut entries = Vec::new();
    let mut expected_shards = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..200usize {
        let len = rng.random_range(0..3000usize).max(1);
        let mut data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        data[0] = (i % 256) as u8;
        let key = format!("pk-{i}-{}", rng.random::<u32>());
        let mut builder = PutRecordsRequestEntry::builder()
            .data(Blob::new(data.clone()))
            .partition_key(&key);
        let shard_index = if i % 5 == 0 {
            // Every fifth entry names its shard with an explicit hash key inside the range.
            let target = i % 4;
            let (start, end) = ranges[target];
            let hash_key = start + (end - start) / 2;
            builder = builder.explicit_hash_key(hash_key.to_string());
            target
        } else {
            shard_index_for(hash_key_of(&key), 4)
        };
        entries.push(builder.build().expect("data and key set"));
        expected_shards.push(shard_id(shard_index));
        payloads.push((key, data));
    }
    let output = client
        .put_records()
        .stream_name("batch")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords of 200 entries succeeds");
    assert_eq!(output.failed_record_count(), Some(0));
    let results = output.records();
    assert_eq!(results.len(), 200, "one result per entry");
    let mut acked: HashMap<String, (String, String, Vec<u8>)> = HashMap::new();
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result.error_code(),
            None,
            "entry {i} failed: {:?}",
            result.error_message()
        );
        let shard = result
            .shard_id()
            .expect("a successful entry names its shard");
        assert_eq!(
            shard, expected_shards[i],
            "entry {i} went to the wrong shard"
        );
        let sequence_number = result
            .sequence_number()
            .expect("a successful entry has a sequence number");
        assert_sequence_number_shape(sequence_number);
        let previous = acked.insert(
            sequence_number.to_owned(),
            (
                shard.to_owned(),
                payloads[i].0.clone(),
                payloads[i].1.clone(),
            ),
        );
        assert!(
            previous.is_none(),
            "sequence number {sequence_number} was given twice"
        );
    }
    // Per shard, entries keep their request order: sequence numbers grow with the entry index.
    let mut last_per_shard: HashMap<&str, &str> = HashMap::new();
    for result in results {
        let shard = result.shard_id().expect("shard");
        let sequence_number = result.sequence_number().expect("sequence number");
        if let Some(last) = last_per_shard.insert(shard, sequence_number) {
            assert!(
                sequence_number_key(last) < sequence_number_key(sequence_number),
                "entries to {shard} must be stored in request order"
            );
        }
    }
    let mut found = 0;
    for index in 0..4 {
        for record in read_shard_to_end(&client, "batch", &shard_id(index)).await {
            let (shard, key, data) = acked.get(&record.sequence_number).unwrap_or_else(|| {
                panic!("record {} was never acknowledged", record.sequence_number)
            });
            assert_eq!(shard, &shard_id(index));
            assert_eq!(&record.partition_key, key);
            assert_eq!(
                &record.data, data,
                "record {} differs from what was put",
                record.sequence_number
            );
            found += 1;
        }
    }
    assert_eq!(found, 200, "every acknowledged entry is read back once");
}

#[tokio::test]
async fn get_records_returns_exact_bytes_including_a_maximum_size_record() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "bytes", 1).await;
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let key = "max";
    let largest: Vec<u8> = (0..(1024 * 1024 - key.len()))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let payloads: Vec<(String, Vec<u8>)> = vec![
        ("a".to_owned(), all_bytes.clone()),
        ("b".to_owned(), b"{\"json\":\"looking\"}\n".to_vec()),
        ("c".to_owned(), vec![0u8; 4096]),
        (key.to_owned(), largest),
        ("d".to_owned(), all_bytes.iter().rev().copied().collect()),
    ];
    let mut sequence_numbers = Vec::new();
    for (key, data) in &payloads {
        let output = client
            .put_record()
            .stream_name("bytes")
            .partition_key(key)
            .data(Blob::new(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutRecord of {} bytes failed: {e:?}", data.len()));
        sequence_numbers.push(output.sequence_number().to_owned());
    }
    let read = read_shard_to_end(&client, "bytes", &shard_id(0)).await;
    assert_eq!(read.len(), payloads.len());
    for ((record, (key, data)), sequence_number) in
        read.iter().zip(&payloads).zip(&sequence_numbers)
    {
        assert_eq!(&record.sequence_number, sequence_number);
        assert_eq!(&record.partition_key, key);
        assert_eq!(record.data.len(), data.len());
        assert!(
            record.data == *data,
            "record {key} must come back byte for byte"
        );
        assert!(
            record.approximate_arrival_timestamp.is_some(),
            "records carry an arrival timestamp"
        );
    }
}

#[tokio::test]
async fn get_shard_iterator_supports_all_five_iterator_types() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "iterators", 1).await;
    let shard = shard_id(0);
    let mut sequence_numbers = Vec::new();
    for i in 0..6 {
        if i == 3 {
            // A gap, so that record 3 has a strictly later arrival time than record 2.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let output = client
            .put_record()
            .stream_name("iterators")
            .partition_key("k")
            .data(Blob::new(format!("record-{i}")))
            .send()
            .await
            .expect("PutRecord succeeds");
        sequence_numbers.push(output.sequence_number().to_owned());
    }
    let data_of = |records: &[ReadRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect()
    };
    let names = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| format!("record-{i}")).collect()
    };

    let it = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::TrimHorizon,
        None,
        None,
    )
    .await;
    let all = read_from_iterator_to_end(&client, it).await;
    assert_eq!(
        data_of(&all),
        names(0..6),
        "TRIM_HORIZON starts at the oldest record"
    );

    let it = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::AtSequenceNumber,
        Some(&sequence_numbers[2]),
        None,
    )
    .await;
    assert_eq!(
        data_of(&read_from_iterator_to_end(&client, it).await),
        names(2..6),
        "AT_SEQUENCE_NUMBER"
    );

    let it = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::AfterSequenceNumber,
        Some(&sequence_numbers[2]),
        None,
    )
    .await;
    assert_eq!(
        data_of(&read_from_iterator_to_end(&client, it).await),
        names(3..6),
        "AFTER_SEQUENCE_NUMBER"
    );

    let arrival_of_3 = all[3]
        .approximate_arrival_timestamp
        .expect("arrival timestamp");
    let it = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::AtTimestamp,
        None,
        Some(arrival_of_3),
    )
    .await;
    assert_eq!(
        data_of(&read_from_iterator_to_end(&client, it).await),
        names(3..6),
        "AT_TIMESTAMP starts at the first record that arrived at or after the timestamp"
    );
    let long_ago = DateTime::from_secs(1_000_000_000);
    let it = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::AtTimestamp,
        None,
        Some(long_ago),
    )
    .await;
    assert_eq!(
        data_of(&read_from_iterator_to_end(&client, it).await),
        names(0..6),
        "AT_TIMESTAMP in the past"
    );

    let latest = iterator(
        &client,
        "iterators",
        &shard,
        ShardIteratorType::Latest,
        None,
        None,
    )
    .await;
    let output = client
        .get_records()
        .shard_iterator(&latest)
        .send()
        .await
        .expect("GetRecords at LATEST");
    assert!(
        output.records().is_empty(),
        "LATEST starts after the newest record"
    );
    let next = output.next_shard_iterator().expect("open shard").to_owned();
    client
        .put_record()
        .stream_name("iterators")
        .partition_key("k")
        .data(Blob::new("record-6"))
        .send()
        .await
        .expect("PutRecord succeeds");
    assert_eq!(
        data_of(&read_from_iterator_to_end(&client, next).await),
        names(6..7),
        "LATEST sees new records"
    );

    // Type and sequence number must agree.
    let (code, _) = expect_error(
        client
            .get_shard_iterator()
            .stream_name("iterators")
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .send()
            .await,
    );
    assert_eq!(
        code, "InvalidArgumentException",
        "AT_SEQUENCE_NUMBER needs a StartingSequenceNumber"
    );
    let (code, message) = expect_error(
        client
            .get_shard_iterator()
            .stream_name("iterators")
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .starting_sequence_number(&sequence_numbers[0])
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert_eq!(
        message,
        "Must either specify (1) AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER and StartingSequenceNumber or \
         (2) TRIM_HORIZON or LATEST and no StartingSequenceNumber. Request specified TRIM_HORIZON and also a \
         StartingSequenceNumber."
    );
}

#[tokio::test]
async fn get_records_honours_limit_next_shard_iterator_and_millis_behind_latest() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "limit", 1).await;
    let put = |i: usize| {
        let client = client.clone();
        async move {
            client
                .put_record()
                .stream_name("limit")
                .partition_key("k")
                .data(Blob::new(format!("r{i}")))
                .send()
                .await
                .expect("PutRecord succeeds")
        }
    };
    put(0).await;
    // Records 1.. arrive well after record 0, so a reader holding only record 0 is behind.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 1..10 {
        put(i).await;
    }
    let mut iterator = iterator(
        &client,
        "limit",
        &shard_id(0),
        ShardIteratorType::TrimHorizon,
        None,
        None,
    )
    .await;

    let first = client
        .get_records()
        .shard_iterator(&iterator)
        .limit(1)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(first.records().len(), 1);
    let behind = first
        .millis_behind_latest()
        .expect("GetRecords reports MillisBehindLatest");
    assert!(
        behind > 0,
        "a reader 9 records and 300 ms behind the tip reports MillisBehindLatest > 0"
    );
    iterator = first.next_shard_iterator().expect("open shard").to_owned();

    let mut seen = vec![String::from_utf8_lossy(first.records()[0].data().as_ref()).into_owned()];
    let mut page_sizes = Vec::new();
    loop {
        let output = client
            .get_records()
            .shard_iterator(&iterator)
            .limit(4)
            .send()
            .await
            .expect("GetRecords");
        assert!(
            output.records().len() <= 4,
            "Limit 4 returns at most 4 records"
        );
        page_sizes.push(output.records().len());
        seen.extend(
            output
                .records()
                .iter()
                .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned()),
        );
        iterator = output
            .next_shard_iterator()
            .expect("an open shard always has a NextShardIterator")
            .to_owned();
        if output.records().is_empty() {
            assert_eq!(
                output.millis_behind_latest(),
                Some(0),
                "a caught-up reader is 0 ms behind"
            );
            break;
        }
        assert!(
            page_sizes.len() < 20,
            "reading 9 records with Limit 4 does not take 20 pages"
        );
    }
    assert_eq!(
        page_sizes,
        vec![4, 4, 1, 0],
        "9 records with Limit 4 come as 4, 4, 1"
    );
    assert_eq!(seen, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());

    // The final iterator stays usable and sees later writes.
    put(10).await;
    let output = client
        .get_records()
        .shard_iterator(&iterator)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(output.records().len(), 1);
    assert_eq!(output.records()[0].data().as_ref(), b"r10");
}

#[tokio::test]
async fn tags_are_added_overwritten_listed_in_pages_and_removed() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "tagged", 1).await;
    client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("team", "storage")
        .tags("env", "test")
        .tags("cost-center", "42")
        .send()
        .await
        .expect("AddTagsToStream succeeds");
    client
        .add_tags_to_stream()
        .stream_name("tagged")
        .tags("env", "prod")
        .send()
        .await
        .expect("AddTagsToStream overwrites");
    let list = |limit: Option<i32>, start: Option<&str>| {
        let client = client.clone();
        let start = start.map(str::to_owned);
        async move {
            client
                .list_tags_for_stream()
                .stream_name("tagged")
                .set_limit(limit)
                .set_exclusive_start_tag_key(start)
                .send()
                .await
                .expect("ListTagsForStream succeeds")
        }
    };
    let all = list(None, None).await;
    let tags: BTreeMap<String, String> = all
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    let expected: BTreeMap<String, String> =
        [("cost-center", "42"), ("env", "prod"), ("team", "storage")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(tags, expected);
    assert!(!all.has_more_tags());

    let first = list(Some(2), None).await;
    assert_eq!(first.tags().len(), 2);
    assert!(first.has_more_tags(), "2 of 3 tags leaves more");
    let last_key = first.tags()[1].key().to_owned();
    let rest = list(Some(2), Some(&last_key)).await;
    assert!(!rest.has_more_tags());
    let mut keys: BTreeSet<String> = first.tags().iter().map(|t| t.key().to_owned()).collect();
    keys.extend(rest.tags().iter().map(|t| t.key().to_owned()));
    assert_eq!(keys.len(), 3, "two pages cover all tags without repeats");

    client
        .remove_tags_from_stream()
        .stream_name("tagged")
        .tag_keys("team")
        .tag_keys("no-such-key")
        .send()
        .await
        .expect("RemoveTagsFromStream succeeds, ignoring unknown keys");
    let after = list(None, None).await;
    let keys: Vec<&str> = after.tags().iter().map(|t| t.key()).collect();
    assert_eq!(keys.len(), 2);
    assert!(!keys.contains(&"team"), "removed tag is gone: {keys:?}");
}

#[tokio::test]
async fn retention_period_increases_and_decreases_within_aws_bounds() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "retained", 1).await;
    let retention = || {
        let client = client.clone();
        async move {
            client
                .describe_stream_summary()
                .stream_name("retained")
                .send()
                .await
                .expect("describe")
                .stream_description_summary
                .expect("summary")
                .retention_period_hours
        }
    };
    client
        .increase_stream_retention_period()
        .stream_name("retained")
        .retention_period_hours(48)
        .send()
        .await
        .expect("IncreaseStreamRetentionPeriod to 48 succeeds");
    wait_for_status(&client, "retained", StreamStatus::Active).await;
    assert_eq!(retention().await, 48);

    let (code, message) = expect_error(
        client
            .decrease_stream_retention_period()
            .stream_name("retained")
            .retention_period_hours(12)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert_eq!(
        message,
        "Minimum allowed retention period is 24 hours. Requested retention period (12 hours) is too short."
    );

    let (code, message) = expect_error(
        client
            .increase_stream_retention_period()
            .stream_name("retained")
            .retention_period_hours(8761)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert_eq!(
        message,
        "Maximum allowed retention period is 8760 hours. Requested retention period (8761 hours) is too long."
    );

    let (code, _) = expect_error(
        client
            .increase_stream_retention_period()
            .stream_name("retained")
            .retention_period_hours(24)
            .send()
            .await,
    );
    assert_eq!(
        code, "InvalidArgumentException",
        "Increase to a shorter period is refused"
    );

    client
        .decrease_stream_retention_period()
        .stream_name("retained")
        .retention_period_hours(24)
        .send()
        .await
        .expect("DecreaseStreamRetentionPeriod to 24 succeeds");
    wait_for_status(&client, "retained", StreamStatus::Active).await;
    assert_eq!(retention().await, 24);
}

#[tokio::test]
async fn delete_stream_makes_the_stream_not_found() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "doomed", 2).await;
    client
        .put_record()
        .stream_name("doomed")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .expect("PutRecord succeeds");
    client
        .delete_stream()
        .stream_name("doomed")
        .send()
        .await
        .expect("DeleteStream succeeds");
    wait_until_gone(&client, "doomed").await;
    let (code, message) = expect_error(client.describe_stream().stream_name("doomed").send().await);
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(message, stream_not_found_message("doomed"));
    let listed = client.list_streams().send().await.expect("ListStreams");
    assert!(
        listed.stream_names().is_empty(),
        "a deleted stream is not listed: {:?}",
        listed.stream_names()
    );

    // The name can be reused, and the new stream starts empty.
    create_active_stream(&client, "doomed", 1).await;
    assert!(
        read_shard_to_end(&client, "doomed", &shard_id(0))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn operations_on_a_missing_stream_fail_with_resource_not_found() {
    let server = Server::start();
    let client = server.client();
    let expected = stream_not_found_message("ghost");
    let checks = [
        (
            "DescribeStream",
            expect_error(client.describe_stream().stream_name("ghost").send().await),
        ),
        (
            "DescribeStreamSummary",
            expect_error(
                client
                    .describe_stream_summary()
                    .stream_name("ghost")
                    .send()
                    .await,
            ),
        ),
        (
            "PutRecord",
            expect_error(
                client
                    .put_record()
                    .stream_name("ghost")
                    .partition_key("k")
                    .data(Blob::new("x"))
                    .send()
                    .await,
            ),
        ),
        (
            "PutRecords",
            expect_error(
                client
                    .put_records()
                    .stream_name("ghost")
                    .records(entry("x", "k"))
                    .send()
                    .await,
            ),
        ),
        (
            "DeleteStream",
            expect_error(client.delete_stream().stream_name("ghost").send().await),
        ),
        (
            "ListShards",
            expect_error(client.list_shards().stream_name("ghost").send().await),
        ),
        (
            "ListTagsForStream",
            expect_error(
                client
                    .list_tags_for_stream()
                    .stream_name("ghost")
                    .send()
                    .await,
            ),
        ),
        (
            "AddTagsToStream",
            expect_error(
                client
                    .add_tags_to_stream()
                    .stream_name("ghost")
                    .tags("a", "b")
                    .send()
                    .await,
            ),
        ),
    ];
    for (operation, (code, message)) in checks {
        assert_eq!(
            code, "ResourceNotFoundException",
            "{operation} on a missing stream"
        );
        assert_eq!(message, expected, "{operation} on a missing stream");
    }
    let (code, message) = expect_error(
        client
            .get_shard_iterator()
            .stream_name("ghost")
            .shard_id(shard_id(0))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(
        message,
        format!(
            "Shard {} in stream ghost under account {ACCOUNT_ID} does not exist",
            shard_id(0)
        )
    );

    create_active_stream(&client, "real", 2).await;
    let (code, message) = expect_error(
        client
            .get_shard_iterator()
            .stream_name("real")
            .shard_id(shard_id(7))
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await,
    );
    assert_eq!(
        code, "ResourceNotFoundException",
        "a missing shard of an existing stream"
    );
    assert_eq!(
        message,
        format!(
            "Shard {} in stream real under account {ACCOUNT_ID} does not exist",
            shard_id(7)
        )
    );
}

#[tokio::test]
async fn get_records_rejects_garbage_iterators_with_invalid_argument() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "iters", 1).await;
    use base64::Engine as _;
    let random_bytes: Vec<u8> = (0..120u8)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    let base64_noise = base64::engine::general_purpose::STANDARD.encode(random_bytes);
    let valid = iterator(
        &client,
        "iters",
        &shard_id(0),
        ShardIteratorType::TrimHorizon,
        None,
        None,
    )
    .await;
    // A real iterator with one character changed in the middle must not decode as valid either.
    let mut tampered: Vec<char> = valid.chars().collect();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    for bad in [
        "garbage",
        "not-an-iterator!",
        base64_noise.as_str(),
        tampered.as_str(),
    ] {
        let (code, message) = expect_error(client.get_records().shard_iterator(bad).send().await);
        assert_eq!(code, "InvalidArgumentException", "iterator {bad:?}");
        assert_eq!(message, "Invalid ShardIterator.", "iterator {bad:?}");
    }
}

#[tokio::test]
async fn put_records_rejects_501_entries_with_validation_exception() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "limits", 1).await;
    let entries: Vec<PutRecordsRequestEntry> = (0..501)
        .map(|i| entry(vec![1u8], &format!("k{i}")))
        .collect();
    let (code, message) = expect_error(
        client
            .put_records()
            .stream_name("limits")
            .set_records(Some(entries))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.starts_with("1 validation error detected: "),
        "message: {message}"
    );
    assert!(
        message.contains("at 'records' failed to satisfy constraint: Member must have length less than or equal to 500"),
        "message: {message}"
    );
    // 500 is fine.
    let entries: Vec<PutRecordsRequestEntry> = (0..500)
        .map(|i| entry(vec![1u8], &format!("k{i}")))
        .collect();
    let output = client
        .put_records()
        .stream_name("limits")
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords of 500 entries succeeds");
    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(output.records().len(), 500);
}

#[tokio::test]
async fn put_record_rejects_data_over_one_mebibyte_with_validation_exception() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "big", 1).await;
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("big")
            .partition_key("k")
            .data(Blob::new(vec![7u8; 1024 * 1024 + 1]))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"),
        "message: {message}"
    );
    let (code, message) = expect_error(
        client
            .put_records()
            .stream_name("big")
            .records(entry(vec![1u8], "small"))
            .records(entry(vec![7u8; 1024 * 1024 + 1], "k"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("at 'records.2.member.data' failed to satisfy constraint: Member must have length less than or equal to 1048576"),
        "message: {message}"
    );
    assert!(
        read_shard_to_end(&client, "big", &shard_id(0))
            .await
            .is_empty(),
        "a rejected request writes nothing"
    );
}

#[tokio::test]
async fn put_record_rejects_empty_and_257_character_partition_keys() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "keys", 1).await;
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("keys")
            .partition_key("")
            .data(Blob::new("x"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("at 'partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1"),
        "message: {message}"
    );
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("keys")
            .partition_key("a".repeat(257))
            .data(Blob::new("x"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256"),
        "message: {message}"
    );
    let (code, _) = expect_error(
        client
            .put_records()
            .stream_name("keys")
            .records(entry("x", &"b".repeat(257)))
            .send()
            .await,
    );
    assert_eq!(
        code, "ValidationException",
        "PutRecords checks each entry's key too"
    );
    client
        .put_record()
        .stream_name("keys")
        .partition_key("a".repeat(256))
        .data(Blob::new("x"))
        .send()
        .await
        .expect("a 256-character key is accepted");
}

#[tokio::test]
async fn put_record_rejects_an_explicit_hash_key_above_2_pow_128_minus_1() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "ehk", 1).await;
    let too_big = "340282366920938463463374607431768211456";
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name("ehk")
            .partition_key("k")
            .explicit_hash_key(too_big)
            .data(Blob::new("x"))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert_eq!(
        message,
        format!(
            "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {too_big}"
        )
    );
    let entry_with_bad_key = PutRecordsRequestEntry::builder()
        .data(Blob::new("x"))
        .partition_key("k")
        .explicit_hash_key(too_big)
        .build()
        .expect("data and key set");
    let (code, _) = expect_error(
        client
            .put_records()
            .stream_name("ehk")
            .records(entry_with_bad_key)
            .send()
            .await,
    );
    assert_eq!(
        code, "InvalidArgumentException",
        "PutRecords checks each ExplicitHashKey"
    );
}

#[tokio::test]
async fn stream_arn_names_the_stream_wherever_the_model_allows_it() {
    let server = Server::start();
    let client = server.client();
    create_active_stream(&client, "by-arn", 2).await;
    let arn = stream_arn("by-arn");

    let summary = client
        .describe_stream_summary()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStreamSummary by ARN");
    assert_eq!(
        summary
            .stream_description_summary()
            .expect("summary")
            .stream_name(),
        "by-arn"
    );
    let description = client
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStream by ARN");
    assert_eq!(
        description
            .stream_description()
            .expect("description")
            .shards()
            .len(),
        2
    );
    let shards = client
        .list_shards()
        .stream_arn(&arn)
        .send()
        .await
        .expect("ListShards by ARN");
    assert_eq!(shards.shards().len(), 2);

    let put = client
        .put_record()
        .stream_arn(&arn)
        .partition_key("k")
        .data(Blob::new("via-arn"))
        .send()
        .await
        .expect("PutRecord by ARN");
    let batch = client
        .put_records()
        .stream_arn(&arn)
        .records(entry("via-arn-batch", "k"))
        .send()
        .await
        .expect("PutRecords by ARN");
    assert_eq!(batch.failed_record_count(), Some(0));
    let iterator = client
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator by ARN")
        .shard_iterator
        .expect("iterator");
    let records = client
        .get_records()
        .stream_arn(&arn)
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords with StreamARN");
    let data: Vec<&[u8]> = records
        .records()
        .iter()
        .map(|r| r.data().as_ref())
        .collect();
    assert_eq!(
        data,
        vec![b"via-arn".as_slice(), b"via-arn-batch".as_slice()]
    );

    client
        .add_tags_to_stream()
        .stream_arn(&arn)
        .tags("via", "arn")
        .send()
        .await
        .expect("AddTagsToStream by ARN");
    let tags = client
        .list_tags_for_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("ListTagsForStream by ARN");
    assert_eq!(tags.tags().len(), 1);
    client
        .remove_tags_from_stream()
        .stream_arn(&arn)
        .tag_keys("via")
        .send()
        .await
        .expect("RemoveTags by ARN");
    client
        .increase_stream_retention_period()
        .stream_arn(&arn)
        .retention_period_hours(36)
        .send()
        .await
        .expect("IncreaseStreamRetentionPeriod by ARN");

    let (code, message) = expect_error(
        client
            .describe_stream_summary()
            .stream_arn(stream_arn("no-such-stream"))
            .send()
            .await,
    );
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(message, stream_not_found_message("no-such-stream"));

    client
        .delete_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DeleteStream by ARN");
    wait_until_gone(&client, "by-arn").await;
}

#[tokio::test]
async fn two_cores_serve_many_shards_and_every_record_reads_back() {
    let server = Server::options().flag("--cores", 2).start();
    let client = server.client();
    const SHARDS: u32 = 8;
    create_active_stream(&client, "wide", SHARDS as i32).await;

    let mut tasks = Vec::new();
    for producer in 0..4u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for batch in 0..10u32 {
                let mut payloads = Vec::new();
                let mut request = client.put_records().stream_name("wide");
                for i in 0..50u32 {
                    let key = format!("p{producer}-b{batch}-r{i}");
                    let data = format!(
                        "{key}:{}",
                        "x".repeat(((producer + batch + i) % 97) as usize)
                    )
                    .into_bytes();
                    request = request.records(entry(data.clone(), &key));
                    payloads.push((key, data));
                }
                let output = request
                    .send()
                    .await
                    .expect("PutRecords on two cores succeeds");
                assert_eq!(output.failed_record_count(), Some(0));
                for (result, (key, data)) in output.records().iter().zip(payloads) {
                    let shard = result.shard_id().expect("shard").to_owned();
                    assert_eq!(
                        shard,
                        shard_id(shard_index_for(hash_key_of(&key), SHARDS)),
                        "{key}"
                    );
                    acked.push((
                        result
                            .sequence_number()
                            .expect("sequence number")
                            .to_owned(),
                        shard,
                        key,
                        data,
                    ));
                }
                // Interleave single PutRecord calls with the batches.
                let key = format!("p{producer}-single-{batch}");
                let output = client
                    .put_record()
                    .stream_name("wide")
                    .partition_key(&key)
                    .data(Blob::new(key.as_bytes()))
                    .send()
                    .await
                    .expect("PutRecord on two cores succeeds");
                acked.push((
                    output.sequence_number().to_owned(),
                    output.shard_id().to_owned(),
                    key.clone(),
                    key.into_bytes(),
                ));
            }
            acked
        }));
    }
    let mut acked: HashMap<String, (String, String, Vec<u8>)> = HashMap::new();
    for task in tasks {
        for (sequence_number, shard, key, data) in task.await.expect("producer task does not panic")
        {
            assert!(
                acked.insert(sequence_number, (shard, key, data)).is_none(),
                "sequence numbers are unique"
            );
        }
    }
    assert_eq!(acked.len(), 4 * 10 * 51);

    let mut readers = Vec::new();
    for index in 0..SHARDS as usize {
        let client = client.clone();
        readers.push(tokio::spawn(async move {
            (
                index,
                read_shard_to_end(&client, "wide", &shard_id(index)).await,
            )
        }));
    }
    let mut found = 0;
    for reader in readers {
        let (index, records) = reader.await.expect("reader task does not panic");
        for pair in records.windows(2) {
            assert!(
                sequence_number_key(&pair[0].sequence_number)
                    < sequence_number_key(&pair[1].sequence_number)
            );
        }
        for record in records {
            let (shard, key, data) = acked.get(&record.sequence_number).unwrap_or_else(|| {
                panic!(
                    "record {} on {} was never acknowledged",
                    record.sequence_number,
                    shard_id(index)
                )
            });
            assert_eq!(shard, &shard_id(index));
            assert_eq!(&record.partition_key, key);
            assert_eq!(&record.data, data);
            found += 1;
        }
    }
    assert_eq!(
        found,
        acked.len(),
        "every acknowledged record is read back exactly once"
    );
}

/// The 47 hex nibbles of a 56-digit decimal sequence number.
fn sequence_number_nibbles(sequence_number: &str) -> Vec<u8> {
    // Little-endian base-2^32 limbs; multiply by 10 and add each decimal digit.
    let mut limbs: Vec<u64> = vec![0];
    for digit in sequence_number.bytes() {
        assert!(
            digit.is_ascii_digit(),
            "sequence numbers are decimal: {sequence_number}"
        );
        let mut carry = u64::from(digit - b'0');
        for limb in &mut limbs {
            let value = *limb * 10 + carry;
            *limb = value & 0xffff_ffff;
            carry = value >> 32;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut nibbles = Vec::new();
    for limb in limbs.iter().rev() {
        for shift in (0..8).rev() {
            nibbles.push(((limb >> (shift * 4)) & 0xf) as u8);
        }
    }
    let first_nonzero = nibbles
        .iter()
        .position(|&n| n != 0)
        .unwrap_or(nibbles.len());
    let nibbles = nibbles[first_nonzero..].to_vec();
    assert_eq!(
        nibbles.len(),
        47,
        "a sequence number is 47 hex nibbles: {sequence_number}"
    );
    nibbles
}

/// The value of nibbles `range` as an integer.
fn nibble_field(nibbles: &[u8], range: std::ops::Range<usize>) -> u64 {
    nibbles[range]
        .iter()
        .fold(0u64, |value, &n| (value << 4) | u64::from(n))
}

/// Guards the AWS sequence-number layout that clients and kinesalite's suite inspect:
/// `2 | shard creation s (9) | index & 0xf (1) | position (16) | 00 | arrival s (9) | index (8) | 2`
/// in hex, with the position counting records within the shard from 0.
#[tokio::test]
async fn sequence_numbers_follow_the_aws_layout() {
    let server = Server::start();
    let client = server.client();
    let before_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    create_active_stream(&client, "layout", 3).await;
    let description = client
        .describe_stream()
        .stream_name("layout")
        .send()
        .await
        .expect("describe");
    let shards = description
        .stream_description()
        .expect("description")
        .shards()
        .to_vec();
    let mut creation_s = None;
    for (index, shard) in shards.iter().enumerate() {
        let start = shard
            .sequence_number_range()
            .expect("range")
            .starting_sequence_number();
        let nibbles = sequence_number_nibbles(start);
        assert_eq!(nibbles[0], 2, "{start} starts with nibble 2");
        assert_eq!(nibbles[46], 2, "{start} ends with nibble 2");
        assert_eq!(
            nibble_field(&nibbles, 10..11),
            index as u64 & 0xf,
            "index nibble of {start}"
        );
        assert_eq!(
            nibble_field(&nibbles, 38..46),
            index as u64,
            "shard index field of {start}"
        );
        assert_eq!(
            nibble_field(&nibbles, 27..29),
            0,
            "the fixed 00 byte of {start}"
        );
        let created = nibble_field(&nibbles, 1..10);
        assert_eq!(
            *creation_s.get_or_insert(created),
            created,
            "all shards of a new stream share a creation time"
        );
        assert!(
            created + 60 >= before_s && created <= before_s + 60,
            "shard creation time {created} is near the CreateStream call at {before_s}"
        );
    }
    for position in 0..3u64 {
        let output = client
            .put_record()
            .stream_name("layout")
            .partition_key("k")
            .explicit_hash_key(even_hash_ranges(3)[1].0.to_string())
            .data(Blob::new("x"))
            .send()
            .await
            .expect("PutRecord succeeds");
        assert_eq!(output.shard_id(), shard_id(1));
        let nibbles = sequence_number_nibbles(output.sequence_number());
        assert_eq!(
            nibble_field(&nibbles, 11..27),
            position,
            "record {position} of the shard has that position"
        );
        assert_eq!(
            nibble_field(&nibbles, 38..46),
            1,
            "the record's number names shard 1"
        );
        let arrival = nibble_field(&nibbles, 29..38);
        assert!(
            arrival + 60 >= before_s && arrival <= before_s + 120,
            "arrival second {arrival} is now-ish"
        );
    }
}
