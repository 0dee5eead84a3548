//! `--throughput-limits`: per-shard provisioned throughput, end to end against the real `sluice`
//! binary with `aws-sdk-kinesis`.
//!
//! The limits allow 1 000 records/s per shard, and a shard may burst one second's worth at once.
//! A burst of 2 000 records to one shard, sent faster than the buckets refill, must therefore have
//! entries refused with ProvisionedThroughputExceededException and AWS's message. With the switch
//! off (the default), the same burst is stored whole. The servers run two cores so that the
//! shard's owning core is not always the one handling the request.
//!
//! These tests run on a loaded machine, where a request may take any time. How fast the buckets
//! refill is tested against a fake clock in `io/src/kds/throttle.rs`; here every burst is sent
//! as concurrent requests, repeated until one is refused (or a generous bound passes, only so a
//! broken limit cannot hang the test), and what is asserted holds at any speed: the refusal
//! happens, it has AWS's code and message, and no more is stored than the elapsed time allows.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use common::{ACCOUNT_ID, Server, create_active_stream, expect_error, unique_stream_name};

/// Concurrent PutRecords in one burst: 2 000 records, twice what a full bucket admits.
const BATCHES: usize = 4;
const BATCH_RECORDS: usize = 500;
/// Bursts tried before giving up on seeing a refusal; only a broken limit should need more
/// than one.
const BURSTS_MAX: usize = 20;
/// Bound on waiting for the throttle to act, only so that a broken limit cannot hang the test.
const THROTTLE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Runs `futures` concurrently (each as its own task) and returns their outputs in order.
async fn all_at_once<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("a request task does not panic"));
    }
    outputs
}

/// Sends bursts of `BATCHES` concurrent PutRecords of `BATCH_RECORDS` small records each to a
/// one-shard stream until an entry is refused, or `until_refused` is false and one burst was
/// sent. Returns (stored, refused) counts, the refused entries' (code, message) pairs and the
/// seconds from the first request sent to the last answer.
async fn burst(
    client: &Client,
    stream_name: &str,
    until_refused: bool,
) -> (usize, usize, Vec<(String, String)>, f64) {
    let started = Instant::now();
    let mut stored = 0;
    let mut refused = Vec::new();
    for round in 0..BURSTS_MAX {
        let requests = (0..BATCHES).map(|batch| {
            let entries: Vec<PutRecordsRequestEntry> = (0..BATCH_RECORDS)
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("key-{round}-{batch}-{i}"))
                        .data(Blob::new(b"x".to_vec()))
                        .build()
                        .expect("partition key and data are set")
                })
                .collect();
            client
                .put_records()
                .stream_name(stream_name)
                .set_records(Some(entries))
                .send()
        });
        for output in all_at_once(requests).await {
            let output = output.expect("PutRecords itself succeeds; throttling is per entry");
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
        if !until_refused || !refused.is_empty() || started.elapsed() > THROTTLE_WAIT_MAX {
            break;
        }
    }
    let refused_count = refused.len();
    (
        stored,
        refused_count,
        refused,
        started.elapsed().as_secs_f64(),
    )
}

/// Guards against a write limit that is not enforced, enforced with the wrong error, or that
/// stores refused entries: a burst beyond the bucket gets per-entry
/// ProvisionedThroughputExceeded with AWS's message, only admitted records are readable, and a
/// PutRecord beyond the byte limit fails as a whole call.
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

    let (stored, refused, errors, seconds) = burst(&client, &stream_name, true).await;
    assert!(
        refused > 0,
        "{stored} records in bursts of {BATCHES}×{BATCH_RECORDS} over {seconds:.2} s were all accepted"
    );
    // One second's burst plus the refill during the bursts, plus one for rounding. The client's
    // clock spans the server's, so a slow machine only raises the allowance.
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

    // Exactly the stored records are readable, with nothing of the refused ones. GetRecords is
    // throttled too (5 calls/s), so a refused call is waited out and repeated.
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(&stream_name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator
        .expect("an open shard has an iterator");
    let mut read = 0;
    let reading = Instant::now();
    loop {
        assert!(
            reading.elapsed() < THROTTLE_WAIT_MAX,
            "read {read} of {stored} stored records"
        );
        match client
            .get_records()
            .shard_iterator(&iterator)
            .limit(10_000)
            .send()
            .await
        {
            Ok(output) => {
                if output.records().is_empty() {
                    break;
                }
                read += output.records().len();
                iterator = output
                    .next_shard_iterator
                    .expect("an open shard has a next iterator");
            }
            Err(error) => {
                let (code, _) = expect_error::<(), _, _>(Err(error));
                assert_eq!(code, "ProvisionedThroughputExceededException");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    assert_eq!(read, stored);

    // PutRecord fails as a whole call. The record bucket refills a token every millisecond, so
    // use the byte limit: a full bucket admits one record of 1 000 KiB, and three sent at once
    // need about two seconds of refill to all fit. Repeated until a call is refused.
    let big = vec![7u8; 1000 * 1024];
    let other = unique_stream_name("throttled-bytes");
    create_active_stream(&client, &other, 1).await;
    let started = Instant::now();
    let (code, message) = loop {
        let puts = (0..3).map(|_| {
            client
                .put_record()
                .stream_name(&other)
                .partition_key("k")
                .data(Blob::new(big.clone()))
                .send()
        });
        let refused = all_at_once(puts)
            .await
            .into_iter()
            .find_map(|put| put.err());
        if let Some(error) = refused {
            break expect_error::<(), _, _>(Err(error));
        }
        assert!(
            started.elapsed() < THROTTLE_WAIT_MAX,
            "1 000 KiB records sent three at a time were never refused"
        );
    };
    assert_eq!(code, "ProvisionedThroughputExceededException");
    assert_eq!(
        message,
        format!(
            "Rate exceeded for shard shardId-000000000000 in stream {other} under account {ACCOUNT_ID}."
        )
    );
}

/// Guards against an unenforced read-call limit: more than five GetRecords calls reaching a
/// shard within a second must be refused with ProvisionedThroughputExceeded.
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
    // Five calls fit in the bucket; ten sent at once fit only if they take two seconds to reach
    // the shard's core. Repeated until a call is refused.
    let started = Instant::now();
    let (code, message) = loop {
        let calls = (0..10).map(|_| client.get_records().shard_iterator(&iterator).send());
        let refused = all_at_once(calls)
            .await
            .into_iter()
            .find_map(|call| call.err());
        if let Some(error) = refused {
            break expect_error::<(), _, _>(Err(error));
        }
        let seconds = started.elapsed();
        assert!(
            seconds < THROTTLE_WAIT_MAX,
            "GetRecords calls ten at a time for {seconds:?} were all served"
        );
    };
    assert_eq!(code, "ProvisionedThroughputExceededException");
    assert_eq!(
        message,
        format!(
            "Rate exceeded for shard shardId-000000000000 in stream {stream_name} under account {ACCOUNT_ID}."
        )
    );
}

/// Guards against limits applied when the switch is off: the same burst is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_limits_off_by_default_the_same_burst_is_stored_whole() {
    let server = Server::options().flag("--cores", 2).start();
    let client = server.client();
    let stream_name = unique_stream_name("unthrottled");
    create_active_stream(&client, &stream_name, 1).await;

    let (stored, refused, errors, _) = burst(&client, &stream_name, false).await;
    assert_eq!(
        refused,
        0,
        "entries were refused with the limits off: {:?}",
        errors.first()
    );
    assert_eq!(stored, BATCHES * BATCH_RECORDS);
}
