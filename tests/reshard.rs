//! Resharding end to end: SplitShard, MergeShards and UpdateShardCount against the real `sluice`
//! binary, driven by `aws-sdk-kinesis`.
//!
//! The failure these tests guard against is a reshard that loses, duplicates or reorders
//! records: a write racing the moment a parent closes must land either in the parent before it
//! closes or in a child after, and a reader that follows the lineage the way the KCL does (read
//! every parent to its end, then its children) must see every acknowledged record exactly once,
//! in write order per partition key. The servers run two shard cores, so parents and children
//! live on different cores and the seal crosses cores. `--update-delay-ms 200` keeps the
//! UPDATING windows short.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    PutRecordsRequestEntry, ScalingType, Shard, ShardFilter, ShardFilterType, ShardIteratorType,
    StreamStatus,
};
use common::{
    Server, client_for, create_active_stream, expect_error, sequence_number_key, wait_for_status,
};

const UPDATE_DELAY_MS: u64 = 200;
const HASH_KEY_MAX: u128 = u128::MAX;

fn server() -> Server {
    Server::options()
        .flag("--cores", 2)
        .flag("--update-delay-ms", UPDATE_DELAY_MS)
        .start()
}

async fn list_shards(
    client: &Client,
    stream_name: &str,
    filter: Option<ShardFilter>,
) -> Vec<Shard> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let mut request = client.list_shards().max_results(3);
        request = match &next_token {
            Some(token) => request.next_token(token),
            None => {
                let r = request.stream_name(stream_name);
                match &filter {
                    Some(f) => r.shard_filter(f.clone()),
                    None => r,
                }
            }
        };
        let page = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListShards failed: {e:?}"));
        shards.extend(page.shards().iter().cloned());
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => return shards,
        }
    }
}

fn range_of(shard: &Shard) -> (u128, u128) {
    let range = shard
        .hash_key_range()
        .expect("every shard has a hash key range");
    (
        range.starting_hash_key().parse().expect("decimal hash key"),
        range.ending_hash_key().parse().expect("decimal hash key"),
    )
}

fn is_open(shard: &Shard) -> bool {
    shard
        .sequence_number_range()
        .expect("every shard has a range")
        .ending_sequence_number()
        .is_none()
}

/// The open shards' ranges, in hash key order, must tile [0, 2^128 − 1] exactly.
fn assert_open_shards_cover_the_key_space(shards: &[Shard]) -> Vec<(u128, u128)> {
    let mut ranges: Vec<(u128, u128)> =
        shards.iter().filter(|s| is_open(s)).map(range_of).collect();
    ranges.sort_unstable();
    assert_eq!(
        ranges.first().map(|r| r.0),
        Some(0),
        "the open shards start at hash key 0: {ranges:?}"
    );
    assert_eq!(
        ranges.last().map(|r| r.1),
        Some(HASH_KEY_MAX),
        "the open shards end at 2^128 - 1: {ranges:?}"
    );
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[0].1 + 1,
            pair[1].0,
            "open shards are contiguous and disjoint: {ranges:?}"
        );
    }
    ranges
}

/// Every closed shard has an EndingSequenceNumber; every shard has at most two parents, and
/// a child's range is exactly the union of its parents' ranges.
fn assert_lineage_is_consistent(shards: &[Shard]) {
    let by_id: HashMap<&str, &Shard> = shards.iter().map(|s| (s.shard_id(), s)).collect();
    for shard in shards {
        let parents: Vec<&Shard> = shard
            .parent_shard_id()
            .into_iter()
            .chain(shard.adjacent_parent_shard_id())
            .map(|id| {
                *by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("parent {id} of {} is listed", shard.shard_id()))
            })
            .collect();
        for parent in &parents {
            assert!(
                !is_open(parent),
                "parent {} of {} is closed",
                parent.shard_id(),
                shard.shard_id()
            );
        }
        match parents.as_slice() {
            [] => {}
            [only] => {
                let (ps, pe) = range_of(only);
                let (cs, ce) = range_of(shard);
                assert!(ps <= cs && ce <= pe, "a split child lies inside its parent");
            }
            [a, b] => {
                let (mut r1, mut r2) = (range_of(a), range_of(b));
                if r1 > r2 {
                    std::mem::swap(&mut r1, &mut r2);
                }
                assert_eq!(r1.1 + 1, r2.0, "merged parents are adjacent");
                assert_eq!(
                    range_of(shard),
                    (r1.0, r2.1),
                    "a merge child covers both parents"
                );
            }
            _ => unreachable!("at most two parents are named"),
        }
    }
}

/// A record as the lineage reader saw it.
#[derive(Clone, Debug)]
struct Seen {
    shard_id: String,
    sequence_number: String,
    partition_key: String,
    data: String,
}

/// Reads the whole stream the way the KCL does: a shard is read only once every parent has
/// been read to its end; a closed shard ends with no NextShardIterator and ChildShards naming
/// exactly its children; an open shard is read until it is caught up. Also checks that every
/// record's sequence number lies within its shard's sequence number range and grows.
async fn read_by_lineage(client: &Client, stream_name: &str) -> Vec<Seen> {
    let shards = list_shards(client, stream_name, None).await;
    let ids: BTreeSet<String> = shards.iter().map(|s| s.shard_id().to_owned()).collect();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut seen = Vec::new();
    let started = Instant::now();
    while finished.len() < shards.len() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "reading by lineage took too long"
        );
        let ready: Vec<&Shard> = shards
            .iter()
            .filter(|s| !finished.contains(s.shard_id()))
            .filter(|s| {
                s.parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .all(|p| finished.contains(p) || !ids.contains(p))
            })
            .collect();
        assert!(
            !ready.is_empty(),
            "some shard must be readable once its parents are done"
        );
        for shard in ready {
            seen.extend(read_shard(client, stream_name, shard, &shards).await);
            finished.insert(shard.shard_id().to_owned());
        }
    }
    seen
}

async fn read_shard(client: &Client, stream_name: &str, shard: &Shard, all: &[Shard]) -> Vec<Seen> {
    let range = shard
        .sequence_number_range()
        .expect("every shard has a range");
    let starting = range.starting_sequence_number().to_owned();
    let ending = range.ending_sequence_number().map(str::to_owned);
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id(shard.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator on {} failed: {e:?}", shard.shard_id()))
        .shard_iterator
        .expect("an iterator, also for a closed shard");
    let mut records = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let output = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRecords on {} failed: {e:?}", shard.shard_id()));
        for record in output.records() {
            let sequence_number = record.sequence_number().to_owned();
            assert!(
                sequence_number_key(&sequence_number) >= sequence_number_key(&starting),
                "record {sequence_number} of {} comes before the shard's StartingSequenceNumber {starting}",
                shard.shard_id()
            );
            if let Some(ending) = &ending {
                assert!(
                    sequence_number_key(&sequence_number) <= sequence_number_key(ending),
                    "record {sequence_number} of {} comes after the shard's EndingSequenceNumber {ending}",
                    shard.shard_id()
                );
            }
            if let Some(previous) = &last {
                assert!(sequence_number_key(&sequence_number) > sequence_number_key(previous));
            }
            last = Some(sequence_number.clone());
            records.push(Seen {
                shard_id: shard.shard_id().to_owned(),
                sequence_number,
                partition_key: record.partition_key().unwrap_or_default().to_owned(),
                data: String::from_utf8(record.data().as_ref().to_vec())
                    .expect("test data is UTF-8"),
            });
        }
        match output.next_shard_iterator() {
            None => {
                assert!(
                    ending.is_some(),
                    "only a closed shard ends: {}",
                    shard.shard_id()
                );
                let mut reported: Vec<(String, Vec<String>)> = output
                    .child_shards()
                    .iter()
                    .map(|c| (c.shard_id().to_owned(), c.parent_shards().to_vec()))
                    .collect();
                reported.sort();
                let mut expected: Vec<(String, Vec<String>)> = all
                    .iter()
                    .filter(|c| {
                        c.parent_shard_id() == Some(shard.shard_id())
                            || c.adjacent_parent_shard_id() == Some(shard.shard_id())
                    })
                    .map(|c| {
                        let parents = c
                            .parent_shard_id()
                            .into_iter()
                            .chain(c.adjacent_parent_shard_id())
                            .map(str::to_owned)
                            .collect::<Vec<_>>();
                        (c.shard_id().to_owned(), parents)
                    })
                    .collect();
                expected.sort();
                assert!(!expected.is_empty(), "a closed shard has children");
                assert_eq!(
                    reported,
                    expected,
                    "ChildShards at the end of {}",
                    shard.shard_id()
                );
                return records;
            }
            Some(next) => {
                let caught_up =
                    output.records().is_empty() && output.millis_behind_latest() == Some(0);
                if caught_up && ending.is_none() {
                    return records;
                }
                iterator = next.to_owned();
            }
        }
    }
}

/// What the producers wrote and had acknowledged: data → partition key, and per partition key
/// the data in write order.
#[derive(Default)]
struct Acked {
    keys_of: HashMap<String, String>,
    order: BTreeMap<String, Vec<String>>,
    /// Data of records whose outcome is unknown (the server died during the call).
    unknown: BTreeSet<String>,
}

/// Writes until `stop` is set: PutRecords batches of 20 and single PutRecords alternately,
/// over 8 partition keys per producer, so every shard gets traffic. Every entry must succeed;
/// a failed call counts as unknown when `tolerate_errors` (a server being killed) and fails the
/// test otherwise.
async fn produce(
    endpoint: String,
    stream_name: String,
    producer: usize,
    stop: Arc<AtomicBool>,
    tolerate_errors: bool,
) -> Acked {
    let client = client_for(&endpoint);
    let mut acked = Acked::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if n % 40 < 20 {
            let batch: Vec<(String, String)> = (0..20)
                .map(|i| {
                    (
                        format!("p{producer}-k{}", (n + i) % 8),
                        format!("p{producer}-{}", n + i),
                    )
                })
                .collect();
            let entries: Vec<PutRecordsRequestEntry> = batch
                .iter()
                .map(|(key, data)| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(key)
                        .data(Blob::new(data.as_bytes()))
                        .build()
                        .expect("complete entry")
                })
                .collect();
            match client
                .put_records()
                .stream_name(&stream_name)
                .set_records(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    assert_eq!(
                        output.failed_record_count(),
                        Some(0),
                        "no entry of a PutRecords fails during a reshard: {output:?}"
                    );
                    for (key, data) in batch {
                        acked
                            .order
                            .entry(key.clone())
                            .or_default()
                            .push(data.clone());
                        acked.keys_of.insert(data, key);
                    }
                }
                Err(error) => {
                    assert!(
                        tolerate_errors,
                        "PutRecords failed during a reshard: {error:?}"
                    );
                    acked
                        .unknown
                        .extend(batch.into_iter().map(|(_, data)| data));
                    // A kill: per-key order is no longer checkable past this point.
                    return acked;
                }
            }
            n += 20;
        } else {
            let key = format!("p{producer}-k{}", n % 8);
            let data = format!("p{producer}-{n}");
            match client
                .put_record()
                .stream_name(&stream_name)
                .partition_key(&key)
                .data(Blob::new(data.as_bytes()))
                .send()
                .await
            {
                Ok(_) => {
                    acked
                        .order
                        .entry(key.clone())
                        .or_default()
                        .push(data.clone());
                    acked.keys_of.insert(data, key);
                }
                Err(error) => {
                    assert!(
                        tolerate_errors,
                        "PutRecord failed during a reshard: {error:?}"
                    );
                    acked.unknown.insert(data);
                    return acked;
                }
            }
            n += 1;
        }
    }
    acked
}

/// Every acknowledged record was read exactly once; any other record read is one whose
/// outcome was unknown, read at most once; per partition key the acknowledged records come in
/// write order.
fn assert_exactly_once(acked: &[Acked], seen: &[Seen]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for record in seen {
        *count.entry(record.data.as_str()).or_default() += 1;
    }
    let mut total = 0;
    for producer in acked {
        for (data, key) in &producer.keys_of {
            total += 1;
            assert_eq!(
                count.get(data.as_str()).copied(),
                Some(1),
                "acknowledged record {data} ({key}) is read exactly once"
            );
        }
    }
    for record in seen {
        let known = acked
            .iter()
            .any(|a| a.keys_of.contains_key(&record.data) || a.unknown.contains(&record.data));
        assert!(
            known,
            "record {} in {} was never written",
            record.data, record.shard_id
        );
        assert_eq!(
            count[record.data.as_str()],
            1,
            "record {} is read once",
            record.data
        );
    }
    let mut read_order: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for record in seen {
        read_order
            .entry(record.partition_key.as_str())
            .or_default()
            .push(record.data.as_str());
    }
    for producer in acked {
        for (key, written) in &producer.order {
            let read: Vec<&str> = read_order
                .get(key.as_str())
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|d| producer.keys_of.contains_key(*d))
                        .collect()
                })
                .unwrap_or_default();
            let written: Vec<&str> = written.iter().map(String::as_str).collect();
            assert_eq!(
                read, written,
                "records of partition key {key} are read in write order"
            );
        }
    }
    assert!(total > 0, "the producers wrote something");
}

async fn update_shard_count(client: &Client, stream_name: &str, target: i32) {
    let output = client
        .update_shard_count()
        .stream_name(stream_name)
        .target_shard_count(target)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_or_else(|e| panic!("UpdateShardCount to {target} failed: {e:?}"));
    assert_eq!(output.target_shard_count(), Some(target));
    assert_eq!(output.stream_name(), Some(stream_name));
}

async fn open_shard_count(client: &Client, stream_name: &str) -> usize {
    list_shards(client, stream_name, None)
        .await
        .iter()
        .filter(|s| is_open(s))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_written_before_during_and_after_resharding_are_read_exactly_once_following_lineage()
 {
    let server = server();
    let client = server.client();
    let stream_name = "reshard-under-load";
    create_active_stream(&client, stream_name, 4).await;

    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2)
        .map(|p| {
            tokio::spawn(produce(
                server.endpoint().to_owned(),
                stream_name.to_owned(),
                p,
                stop.clone(),
                false,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    update_shard_count(&client, stream_name, 8).await;
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    assert_eq!(open_shard_count(&client, stream_name).await, 8);

    let shards = list_shards(
        &client,
        stream_name,
        Some(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .expect("type set"),
        ),
    )
    .await;
    let first = shards
        .iter()
        .min_by_key(|s| range_of(s))
        .expect("open shards");
    let (start, end) = range_of(first);
    client
        .split_shard()
        .stream_name(stream_name)
        .shard_to_split(first.shard_id())
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_for_status(&client, stream_name, StreamStatus::Active).await;

    let mut open: Vec<Shard> = list_shards(&client, stream_name, None)
        .await
        .into_iter()
        .filter(is_open)
        .collect();
    open.sort_by_key(range_of);
    client
        .merge_shards()
        .stream_name(stream_name)
        .shard_to_merge(open[0].shard_id())
        .adjacent_shard_to_merge(open[1].shard_id())
        .send()
        .await
        .expect("MergeShards");
    wait_for_status(&client, stream_name, StreamStatus::Active).await;

    update_shard_count(&client, stream_name, 4).await;
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for producer in producers {
        acked.push(producer.await.expect("producer task"));
    }

    let shards = list_shards(&client, stream_name, None).await;
    assert_eq!(assert_open_shards_cover_the_key_space(&shards).len(), 4);
    assert_lineage_is_consistent(&shards);
    let seen = read_by_lineage(&client, stream_name).await;
    assert_exactly_once(&acked, &seen);
    let in_children = seen
        .iter()
        .filter(|r| {
            shards
                .iter()
                .any(|s| s.shard_id() == r.shard_id && s.parent_shard_id().is_some())
        })
        .count();
    assert!(
        in_children > 0,
        "some records were written after the first reshard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_closes_the_parent_and_creates_two_children_that_partition_its_range() {
    let server = server();
    let client = server.client();
    let stream_name = "split-lineage";
    create_active_stream(&client, stream_name, 2).await;
    for i in 0..10 {
        client
            .put_record()
            .stream_name(stream_name)
            .explicit_hash_key("1")
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("before-{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
    let parent = &list_shards(&client, stream_name, None).await[0];
    let (start, end) = range_of(parent);
    let key = start + (end - start) / 4;
    client
        .split_shard()
        .stream_name(stream_name)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(key.to_string())
        .send()
        .await
        .expect("SplitShard");
    // UPDATING: the old shards are still shown, writes still go to the parent.
    let summary = client
        .describe_stream_summary()
        .stream_name(stream_name)
        .send()
        .await
        .expect("summary");
    assert_eq!(
        summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone()),
        Some(StreamStatus::Updating)
    );
    let (code, _) = expect_error(
        client
            .split_shard()
            .stream_name(stream_name)
            .shard_to_split("shardId-000000000001")
            .new_starting_hash_key((HASH_KEY_MAX - 5).to_string())
            .send()
            .await,
    );
    assert_eq!(
        code, "ResourceInUseException",
        "a second reshard waits for the first"
    );
    client
        .put_record()
        .stream_name(stream_name)
        .explicit_hash_key("1")
        .partition_key("during")
        .data(Blob::new("during"))
        .send()
        .await
        .expect("PutRecord while UPDATING");
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    let put = client
        .put_record()
        .stream_name(stream_name)
        .explicit_hash_key("1")
        .partition_key("after")
        .data(Blob::new("after"))
        .send()
        .await
        .expect("PutRecord after");
    assert_eq!(
        put.shard_id(),
        "shardId-000000000002",
        "the low child takes the low keys"
    );

    let described = client
        .describe_stream()
        .stream_name(stream_name)
        .send()
        .await
        .expect("DescribeStream");
    let shards = described
        .stream_description()
        .expect("description")
        .shards()
        .to_vec();
    assert_eq!(shards.len(), 4);
    let parent = &shards[0];
    assert!(!is_open(parent), "the parent has an EndingSequenceNumber");
    for (child, expected_range) in [(&shards[2], (start, key - 1)), (&shards[3], (key, end))] {
        assert_eq!(child.parent_shard_id(), Some("shardId-000000000000"));
        assert_eq!(child.adjacent_parent_shard_id(), None);
        assert_eq!(range_of(child), expected_range);
        assert!(is_open(child));
    }
    assert_open_shards_cover_the_key_space(&shards);

    // The parent read to its end: 11 records, then no NextShardIterator and the children.
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream_name)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator
        .expect("iterator");
    let output = client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords");
    let data: Vec<String> = output
        .records()
        .iter()
        .map(|r| String::from_utf8(r.data().as_ref().to_vec()).expect("UTF-8"))
        .collect();
    assert_eq!(data.len(), 11, "{data:?}");
    assert_eq!(data.last().map(String::as_str), Some("during"));
    assert_eq!(
        output.next_shard_iterator(),
        None,
        "a closed shard read to its end has no next iterator"
    );
    let children: Vec<(&str, Vec<String>)> = output
        .child_shards()
        .iter()
        .map(|c| (c.shard_id(), c.parent_shards().to_vec()))
        .collect();
    assert_eq!(
        children,
        vec![
            (
                "shardId-000000000002",
                vec!["shardId-000000000000".to_owned()]
            ),
            (
                "shardId-000000000003",
                vec!["shardId-000000000000".to_owned()]
            ),
        ]
    );
    let ranges: Vec<(String, String)> = output
        .child_shards()
        .iter()
        .map(|c| {
            let r = c.hash_key_range().expect("range");
            (
                r.starting_hash_key().to_owned(),
                r.ending_hash_key().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        vec![
            (start.to_string(), (key - 1).to_string()),
            (key.to_string(), end.to_string())
        ]
    );

    // The child's records are numbered after the parent's last one.
    let child = read_shard(&client, stream_name, &shards[2], &shards).await;
    assert_eq!(child.len(), 1);
    let parent_last = output.records().last().expect("records").sequence_number();
    assert!(sequence_number_key(&child[0].sequence_number) > sequence_number_key(parent_last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merge_creates_one_child_naming_both_parents_and_list_shards_filters_follow_lineage() {
    let server = server();
    let client = server.client();
    let stream_name = "merge-lineage";
    create_active_stream(&client, stream_name, 3).await;
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Stay clear of the creation second and of the second the children will be dated.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (code, message) = expect_error(
        client
            .merge_shards()
            .stream_name(stream_name)
            .shard_to_merge("shardId-000000000000")
            .adjacent_shard_to_merge("shardId-000000000002")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidArgumentException");
    assert!(
        message.contains("not an adjacent pair of shards eligible for merging"),
        "{message}"
    );

    client
        .merge_shards()
        .stream_name(stream_name)
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .expect("MergeShards");
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    let shards = list_shards(&client, stream_name, None).await;
    assert_eq!(shards.len(), 4);
    let child = &shards[3];
    assert_eq!(child.shard_id(), "shardId-000000000003");
    assert_eq!(child.parent_shard_id(), Some("shardId-000000000001"));
    assert_eq!(
        child.adjacent_parent_shard_id(),
        Some("shardId-000000000002")
    );
    assert_eq!(range_of(child), (range_of(&shards[1]).0, HASH_KEY_MAX));
    assert_lineage_is_consistent(&shards);
    assert_open_shards_cover_the_key_space(&shards);

    let ids = |shards: Vec<Shard>| {
        shards
            .iter()
            .map(|s| s.shard_id().to_owned())
            .collect::<Vec<_>>()
    };
    let filter = |kind: ShardFilterType| ShardFilter::builder().r#type(kind);
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(filter(ShardFilterType::AtLatest).build().expect("type"))
        )
        .await),
        vec!["shardId-000000000000", "shardId-000000000003"],
        "AT_LATEST lists the open shards"
    );
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::AfterShardId)
                    .shard_id("shardId-000000000001")
                    .build()
                    .expect("type")
            )
        )
        .await),
        vec!["shardId-000000000002", "shardId-000000000003"],
    );
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::FromTrimHorizon)
                    .build()
                    .expect("type")
            )
        )
        .await)
        .len(),
        4,
        "FROM_TRIM_HORIZON lists every shard still within retention"
    );
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::AtTrimHorizon)
                    .build()
                    .expect("type")
            )
        )
        .await),
        vec![
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002"
        ],
        "AT_TRIM_HORIZON lists the shards open at the trim horizon"
    );
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::AtTimestamp)
                    .timestamp(DateTime::from_millis(before_ms + 500))
                    .build()
                    .expect("type")
            )
        )
        .await),
        vec![
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002"
        ],
        "AT_TIMESTAMP before the merge lists the parents"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::AtTimestamp)
                    .timestamp(DateTime::from_millis(now_ms + 1000))
                    .build()
                    .expect("type")
            )
        )
        .await),
        vec!["shardId-000000000000", "shardId-000000000003"],
        "AT_TIMESTAMP after the merge lists the child"
    );
    assert_eq!(
        ids(list_shards(
            &client,
            stream_name,
            Some(
                filter(ShardFilterType::FromTimestamp)
                    .timestamp(DateTime::from_millis(now_ms + 1000))
                    .build()
                    .expect("type")
            )
        )
        .await),
        vec!["shardId-000000000000", "shardId-000000000003"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_shard_count_scales_three_to_five_uniformly_and_back_to_four() {
    let server = server();
    let client = server.client();
    let stream_name = "scale-3-5";
    create_active_stream(&client, stream_name, 3).await;
    for i in 0..30 {
        client
            .put_record()
            .stream_name(stream_name)
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("a-{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
    let output = client
        .update_shard_count()
        .stream_name(stream_name)
        .target_shard_count(5)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");
    assert_eq!(
        (output.current_shard_count(), output.target_shard_count()),
        (Some(3), Some(5))
    );
    assert_eq!(
        output.stream_arn(),
        Some(common::stream_arn(stream_name).as_str())
    );
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    for i in 30..60 {
        client
            .put_record()
            .stream_name(stream_name)
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("a-{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
    let shards = list_shards(&client, stream_name, None).await;
    let open = assert_open_shards_cover_the_key_space(&shards);
    assert_eq!(open.len(), 5);
    let width = u128::MAX / 5;
    for (i, (start, _)) in open.iter().enumerate() {
        let exact = width * i as u128;
        assert!(
            start.abs_diff(exact) <= 1 << 20,
            "shard {i} starts at the uniform boundary: {start} vs {exact}"
        );
    }
    assert_lineage_is_consistent(&shards);

    // More than double is refused, as AWS's default scaling limits do.
    let (code, _) = expect_error(
        client
            .update_shard_count()
            .stream_name(stream_name)
            .target_shard_count(11)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await,
    );
    assert_eq!(code, "LimitExceededException");

    update_shard_count(&client, stream_name, 4).await;
    wait_for_status(&client, stream_name, StreamStatus::Active).await;
    let shards = list_shards(&client, stream_name, None).await;
    assert_eq!(assert_open_shards_cover_the_key_space(&shards).len(), 4);
    assert_lineage_is_consistent(&shards);
    let seen = read_by_lineage(&client, stream_name).await;
    let mut data: Vec<String> = seen.into_iter().map(|r| r.data).collect();
    data.sort();
    let mut expected: Vec<String> = (0..60).map(|i| format!("a-{i}")).collect();
    expected.sort();
    assert_eq!(data, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_interrupted_by_kill_9_completes_after_restart_without_losing_or_duplicating_records()
 {
    let mut server = server();
    let client = server.client();
    let stream_name = "reshard-crash";
    create_active_stream(&client, stream_name, 4).await;
    let mut acked = Vec::new();

    for (round, target, kill_after_ms) in [(0, 8, 120u64), (1, 4, 260)] {
        let endpoint = server.endpoint().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                tokio::spawn(produce(
                    endpoint.clone(),
                    stream_name.to_owned(),
                    round * 2 + p,
                    stop.clone(),
                    true,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        update_shard_count(&server.client(), stream_name, target).await;
        // Kill inside or just past the UPDATING window: before, during or after the seal.
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for producer in producers {
            acked.push(producer.await.expect("producer task"));
        }
        server.restart();
        let client = server.client();
        wait_for_status(&client, stream_name, StreamStatus::Active).await;
        assert_eq!(
            open_shard_count(&client, stream_name).await,
            target as usize
        );
        // Writes after the restart go to the children.
        let stop = Arc::new(AtomicBool::new(false));
        let producer = tokio::spawn(produce(
            server.endpoint().to_owned(),
            stream_name.to_owned(),
            10 + round,
            stop.clone(),
            false,
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        acked.push(producer.await.expect("producer task"));
    }
    drop(client);
    let client = server.client();
    let shards = list_shards(&client, stream_name, None).await;
    assert_lineage_is_consistent(&shards);
    assert_eq!(assert_open_shards_cover_the_key_space(&shards).len(), 4);
    let seen = read_by_lineage(&client, stream_name).await;
    assert_exactly_once(&acked, &seen);
}

/// A loopback port that is free now, for the binary protocol listener.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("bound").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binary_protocol_read_of_a_closed_parent_ends_with_no_next_position() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let server = Server::options()
        .flag("--cores", 2)
        .flag("--update-delay-ms", UPDATE_DELAY_MS)
        .flag("--binary-addr", addr)
        .start();
    let client = server.client();
    let stream_name = "binary-lineage";
    create_active_stream(&client, stream_name, 1).await;
    for i in 0..25 {
        client
            .put_record()
            .stream_name(stream_name)
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
    update_shard_count(&client, stream_name, 2).await;
    wait_for_status(&client, stream_name, StreamStatus::Active).await;

    let binary = sluice_client::Client::connect(addr)
        .await
        .expect("binary connection");
    let mut start = sluice_client::StartPosition::TrimHorizon;
    let mut read = 0;
    let limits = sluice_client::ReadLimits {
        records_max: 10,
        bytes_max: 1 << 20,
    };
    loop {
        let page = binary
            .read(stream_name, 0, start, limits)
            .await
            .expect("Read of the closed parent");
        read += page.records.len();
        match page.next_position {
            Some(next) => start = sluice_client::StartPosition::AtPosition(next),
            None => break,
        }
    }
    assert_eq!(read, 25, "the closed parent yields every record, then ends");
}
