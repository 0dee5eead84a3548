//! `--throughput-limits`: per-shard provisioned throughput, end to end against the real `sluice`
//! binary with `aws-sdk-kinesis`.
//!
//! The limits allow 1 000 records/s per shard, and a shard may burst one second's worth at once.
//! A burst of 2 500 records to one shard, sent faster than the buckets refill, must therefore have
//! entries refused with ProvisionedThroughputExceededException and AWS's message. With the switch
//! off (the default), the same burst is stored whole. The servers run two cores so that the
//! shard's owning core is not always the one handling the request.

mod common;

use std::time::Instant;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{ACCOUNT_ID, Server, create_active_stream, expect_error, unique_stream_name};

const BATCHES: usize = 5;
const BATCH_RECORDS: usize = 500;

/// Sends `BATCHES` PutRecords of `BATCH_RECORDS` small records to a one-shard stream, back to
/// back. Returns (stored, refused) counts, the refused entries' (code, message) pairs and the
/// seconds the burst took.
async fn burst(client: &Client, stream_name: &str) -> (usize, usize, Vec<(String, String)>, f64) {
    let started = Instant::now();
    let mut stored = 0;
    let mut refused = Vec::new();
    for batch in 0..BATCHES {
        let entries: Vec<PutRecordsRequestEntry> = (0..BATCH_RECORDS)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{batch}-{i}"))
                    .data(Blob::new(b"x".to_vec()))
                    .build()
                    .expect("partition key and data are set")
            })
            .collect();
        let output = client
            .put_records()
            .stream_name(stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords itself succeeds; throttling is per entry");
        let mut failed = 0;
        for entry in output.records() {
            match entry.error_code() {
                Some(code) => {
                    failed += 1;
                    refused.push((
                        code.to_owned(),
                        entry.error_message().unwrap_or_default().to_owned(),
                    ));
                }
                None => stored += 1,
            }
        }
        assert_eq!(
            output.failed_record_count(),
            Some(failed),
            "FailedRecordCount counts the refused entries"
        );
    }
    let refused_count = refused.len();
    (
        stored,
        refused_count,
        refused,
        started.elapsed().as_secs_f64(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_limits_on_a_burst_beyond_a_thousand_records_a_second_gets_per_entry_throttling_errors()
 {
    let server = Server::options()
        .flag("--cores", 2)
        .flag("--throughput-limits", "true")
        .start();
    let client = server.client();
    let stream_name = unique_stream_name("throttled");
    create_active_stream(&client, &stream_name, 1).await;

    let (stored, refused, errors, seconds) = burst(&client, &stream_name).await;
    assert!(
        refused > 0,
        "{BATCHES}×{BATCH_RECORDS} records in {seconds:.2} s were all accepted"
    );
    // One second's burst plus the refill during the burst, plus one for rounding.
    let allowed = 1000.0 + 1000.0 * seconds + 1.0;
    assert!(
        (stored as f64) <= allowed,
        "{stored} records stored in {seconds:.2} s, more than {allowed:.0}"
    );
    let expected = format!(
        "Rate exceeded for shard shardId-000000000000 in stream {stream_name} under account {ACCOUNT_ID}."
    );
    for (code, message) in &errors {
        assert_eq!(code, "ProvisionedThroughputExceededException");
        assert_eq!(message, &expected);
    }

    // Exactly the stored records are readable, with nothing of the refused ones.
    let iterator = client
        .get_shard_iterator()
        .stream_name(&stream_name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator
        .expect("an open shard has an iterator");
    let read = client
        .get_records()
        .shard_iterator(iterator)
        .limit(10_000)
        .send()
        .await
        .expect("GetRecords succeeds");
    assert_eq!(read.records().len(), stored);

    // PutRecord fails as a whole call. The record bucket refills a token every millisecond, so
    // use the byte limit: two records of 1 000 KiB need 1 MiB/s × ~0.93 s of refill between them.
    let big = vec![7u8; 1000 * 1024];
    let other = unique_stream_name("throttled-bytes");
    create_active_stream(&client, &other, 1).await;
    let first = Instant::now();
    client
        .put_record()
        .stream_name(&other)
        .partition_key("k")
        .data(Blob::new(big.clone()))
        .send()
        .await
        .expect("the first 1 000 KiB record fits in a full byte bucket");
    let (code, message) = expect_error(
        client
            .put_record()
            .stream_name(&other)
            .partition_key("k")
            .data(Blob::new(big))
            .send()
            .await,
    );
    assert!(
        first.elapsed().as_millis() < 900,
        "the two puts were too slow to test the byte limit"
    );
    assert_eq!(code, "ProvisionedThroughputExceededException");
    assert_eq!(
        message,
        format!(
            "Rate exceeded for shard shardId-000000000000 in stream {other} under account {ACCOUNT_ID}."
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_limits_on_a_sixth_get_records_call_within_a_second_is_throttled() {
    let server = Server::options()
        .flag("--cores", 2)
        .flag("--throughput-limits", "true")
        .start();
    let client = server.client();
    let stream_name = unique_stream_name("read-throttled");
    create_active_stream(&client, &stream_name, 1).await;
    let iterator = client
        .get_shard_iterator()
        .stream_name(&stream_name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator
        .expect("an open shard has an iterator");
    let mut throttled = None;
    // Five calls fit in the bucket; twenty back to back cannot all fit in the time they take
    // unless each took over 200 ms.
    let started = Instant::now();
    for _ in 0..20 {
        if let Err(error) = client.get_records().shard_iterator(&iterator).send().await {
            throttled = Some(expect_error::<(), _, _>(Err(error)));
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let (code, message) = throttled
        .unwrap_or_else(|| panic!("20 GetRecords calls in {seconds:.2} s were all served"));
    assert_eq!(code, "ProvisionedThroughputExceededException");
    assert_eq!(
        message,
        format!(
            "Rate exceeded for shard shardId-000000000000 in stream {stream_name} under account {ACCOUNT_ID}."
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_limits_off_by_default_the_same_burst_is_stored_whole() {
    let server = Server::options().flag("--cores", 2).start();
    let client = server.client();
    let stream_name = unique_stream_name("unthrottled");
    create_active_stream(&client, &stream_name, 1).await;

    let (stored, refused, errors, _) = burst(&client, &stream_name).await;
    assert_eq!(
        refused,
        0,
        "entries were refused with the limits off: {:?}",
        errors.first()
    );
    assert_eq!(stored, BATCHES * BATCH_RECORDS);
}
