//! The server under test, over either protocol: a small Kinesis HTTP JSON client on hyper
//! (requests are prebuilt bytes, responses are scanned or parsed without building a DOM, so the
//! client stays cheap and the server is what gets measured) and the binary protocol through
//! `sluice-client`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_client::{Client as BinaryClient, ClientConfig, PutRecord, ReadLimits, StartPosition};

use sluice_core::api::StreamStatus;

use crate::scenario::Protocol;

const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(60);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type Http = HyperClient<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
pub struct Kinesis {
    client: Http,
    endpoint: String,
}

impl Kinesis {
    pub fn new(endpoint: &str) -> Kinesis {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build(connector);
        Kinesis {
            client,
            endpoint: endpoint.to_owned(),
        }
    }

    pub async fn call(&self, operation: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let request = hyper::Request::post(&self.endpoint)
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .header("content-type", "application/x-amz-json-1.1")
            // None of the servers measured verify signatures, but all of them want one present.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDPERF/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000",
            )
            .header("x-amz-date", "20260101T000000Z")
            .body(Full::new(body))?;
        let response = self
            .client
            .request(request)
            .await
            .with_context(|| format!("{operation} to {}", self.endpoint))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    pub async fn json(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        let (status, bytes) = self.call(operation, Bytes::from(body.to_string())).await?;
        let value: Value = if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&bytes)?
        };
        if status != 200 {
            bail!("{operation} answered {status}: {value}");
        }
        Ok(value)
    }
}

/// One prebuilt request: the HTTP body, or the records for the binary client.
pub struct Batch {
    pub http_body: Bytes,
    pub records: Vec<(String, Vec<u8>)>,
    pub len: usize,
}

/// Random payload and a random 32-hex-digit partition key per record, as the AWS SDKs'
/// typical producers send.
pub fn random_records(
    count: usize,
    record_bytes: usize,
    rng: &mut impl rand::Rng,
) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|_| {
            let mut data = vec![0u8; record_bytes];
            rng.fill(&mut data[..]);
            let key: u128 = rng.random();
            (format!("{key:032x}"), data)
        })
        .collect()
}

pub fn build_batch(protocol: Protocol, stream: &str, records: Vec<(String, Vec<u8>)>) -> Batch {
    let len = records.len();
    match protocol {
        Protocol::Http => {
            let body = if len == 1 {
                let (key, data) = &records[0];
                json!({"StreamName": stream, "Data": B64.encode(data), "PartitionKey": key})
            } else {
                let list: Vec<Value> = records
                    .iter()
                    .map(|(key, data)| json!({"Data": B64.encode(data), "PartitionKey": key}))
                    .collect();
                json!({"StreamName": stream, "Records": list})
            };
            Batch {
                http_body: Bytes::from(body.to_string()),
                records: Vec::new(),
                len,
            }
        }
        Protocol::Binary => Batch {
            http_body: Bytes::new(),
            records,
            len,
        },
    }
}

/// Where a shard is read from next.
#[derive(Clone, Debug)]
pub enum Cursor {
    Iterator(String),
    Position(u64),
}

/// One page of a shard.
pub struct Page {
    pub records: usize,
    pub bytes: usize,
    /// The first 16 bytes of each record whose data is at least that long (end-to-end stamps).
    pub heads: Vec<[u8; 16]>,
    pub next: Option<Cursor>,
    pub caught_up: bool,
}

#[derive(Deserialize)]
struct GetRecordsOut<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Vec<RecordOut<'a>>,
    #[serde(rename = "NextShardIterator", default)]
    next_shard_iterator: Option<String>,
    #[serde(rename = "MillisBehindLatest", default)]
    millis_behind_latest: Option<u64>,
}

#[derive(Deserialize)]
struct RecordOut<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
}

fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count();
    text.len() / 4 * 3 - padding.min(2)
}

/// Reads `"FailedRecordCount":N` out of a PutRecords response without parsing the 500
/// per-record entries that follow it.
fn failed_record_count(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"FailedRecordCount\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b':' || b.is_ascii_whitespace())
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[derive(Clone)]
pub enum Target {
    Http(Box<Kinesis>),
    Binary(BinaryClient),
}

impl Target {
    pub async fn connect(
        protocol: Protocol,
        endpoint: &str,
        binary_addr: &str,
        binary_credentials: Option<sluice_client::Credentials>,
    ) -> anyhow::Result<Target> {
        Ok(match protocol {
            Protocol::Http => Target::Http(Box::new(Kinesis::new(endpoint))),
            Protocol::Binary => {
                let config = ClientConfig {
                    request_timeout: Some(Duration::from_secs(60)),
                    credentials: binary_credentials,
                    ..ClientConfig::default()
                };
                let client = BinaryClient::connect_with(binary_addr.to_owned(), config)
                    .await
                    .with_context(|| {
                        format!("connecting to the binary protocol at {binary_addr}")
                    })?;
                Target::Binary(client)
            }
        })
    }

    /// Creates the stream (replacing an old one of the same name over HTTP), waits for it to
    /// be ACTIVE, and returns its open shards (HTTP shard ids or binary shard indexes).
    pub async fn create_stream(&self, stream: &str, shards: u32) -> anyhow::Result<Vec<ShardRef>> {
        let deadline = Instant::now() + STREAM_READY_TIMEOUT;
        match self {
            Target::Http(k) => {
                if k.json("DeleteStream", json!({"StreamName": stream}))
                    .await
                    .is_ok()
                {
                    // Wait for the old stream to go, so CreateStream does not hit ResourceInUse.
                    while k
                        .json("DescribeStreamSummary", json!({"StreamName": stream}))
                        .await
                        .is_ok()
                    {
                        if Instant::now() > deadline {
                            bail!("old stream {stream} was not deleted in time");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                loop {
                    match k
                        .json(
                            "CreateStream",
                            json!({"StreamName": stream, "ShardCount": shards}),
                        )
                        .await
                    {
                        Ok(_) => break,
                        Err(e)
                            if Instant::now() < deadline
                                && e.to_string().contains("ResourceInUse") =>
                        {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e.context(format!("creating stream {stream}"))),
                    }
                }
                loop {
                    let d = k
                        .json("DescribeStreamSummary", json!({"StreamName": stream}))
                        .await?;
                    if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "stream {stream} did not become ACTIVE within {STREAM_READY_TIMEOUT:?}"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let listed = k.json("ListShards", json!({"StreamName": stream})).await?;
                let ids: Vec<ShardRef> = listed["Shards"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| {
                                s["ShardId"].as_str().map(|id| ShardRef::Id(id.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.len() != shards as usize {
                    bail!(
                        "ListShards returned {} shards for a {shards}-shard stream",
                        ids.len()
                    );
                }
                Ok(ids)
            }
            Target::Binary(c) => {
                c.create_stream(stream, shards)
                    .await
                    .with_context(|| format!("creating stream {stream}"))?;
                loop {
                    let d = c.describe_stream(stream).await?;
                    if d.stream_status == StreamStatus::Active {
                        return Ok(d
                            .shards
                            .iter()
                            .filter(|s| s.is_open())
                            .map(|s| ShardRef::Index(s.shard_index))
                            .collect());
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "stream {stream} did not become ACTIVE within {STREAM_READY_TIMEOUT:?}"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The open shards of a stream that already exists and is ACTIVE, or `None` when there is
    /// no such stream (or it cannot be described): a named stream outlives a run, e.g. to be
    /// read again after the server restarted.
    pub async fn existing_shards(&self, stream: &str) -> Option<Vec<ShardRef>> {
        match self {
            Target::Http(k) => {
                let d = k
                    .json("DescribeStreamSummary", json!({"StreamName": stream}))
                    .await
                    .ok()?;
                if d["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE" {
                    return None;
                }
                let listed = k
                    .json("ListShards", json!({"StreamName": stream}))
                    .await
                    .ok()?;
                let ids: Vec<ShardRef> = listed["Shards"]
                    .as_array()?
                    .iter()
                    .filter(|s| s["SequenceNumberRange"]["EndingSequenceNumber"].is_null())
                    .filter_map(|s| s["ShardId"].as_str().map(|id| ShardRef::Id(id.to_owned())))
                    .collect();
                Some(ids)
            }
            Target::Binary(c) => {
                let d = c.describe_stream(stream).await.ok()?;
                if d.stream_status != StreamStatus::Active {
                    return None;
                }
                Some(
                    d.shards
                        .iter()
                        .filter(|s| s.is_open())
                        .map(|s| ShardRef::Index(s.shard_index))
                        .collect(),
                )
            }
        }
    }

    /// Deletes the stream if the protocol can (the binary protocol has no DeleteStream; the
    /// caller uses a fresh name per run instead).
    pub async fn delete_stream(&self, stream: &str) {
        if let Target::Http(k) = self {
            let _ = k.json("DeleteStream", json!({"StreamName": stream})).await;
        }
    }

    /// Sends one batch; returns (records acknowledged, records refused one by one).
    pub async fn put(&self, stream: &str, batch: &Batch) -> anyhow::Result<(u64, u64)> {
        match self {
            Target::Http(k) => {
                let operation = if batch.len == 1 {
                    "PutRecord"
                } else {
                    "PutRecords"
                };
                let (status, body) = k.call(operation, batch.http_body.clone()).await?;
                if status != 200 {
                    bail!(
                        "{operation} answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let failed = if batch.len == 1 {
                    0
                } else {
                    failed_record_count(&body).unwrap_or(0)
                };
                Ok((batch.len as u64 - failed.min(batch.len as u64), failed))
            }
            Target::Binary(c) => {
                let records: Vec<PutRecord<'_>> = batch
                    .records
                    .iter()
                    .map(|(key, data)| PutRecord::new(key.as_str(), data.as_slice()))
                    .collect();
                let results = c.put_batch(stream, &records).await?;
                let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
                Ok((ok, results.len() as u64 - ok))
            }
        }
    }

    /// Where reading a shard from its oldest record (`latest = false`) or from its tip starts.
    pub async fn start_cursor(
        &self,
        stream: &str,
        shard: &ShardRef,
        latest: bool,
    ) -> anyhow::Result<Cursor> {
        match (self, shard) {
            (Target::Http(k), ShardRef::Id(id)) => {
                let kind = if latest { "LATEST" } else { "TRIM_HORIZON" };
                let it = k
                    .json(
                        "GetShardIterator",
                        json!({"StreamName": stream, "ShardId": id, "ShardIteratorType": kind}),
                    )
                    .await?;
                let iterator = it["ShardIterator"]
                    .as_str()
                    .context("GetShardIterator returned no ShardIterator")?;
                Ok(Cursor::Iterator(iterator.to_owned()))
            }
            (Target::Binary(c), ShardRef::Index(index)) => {
                if latest {
                    // Read nothing from LATEST to learn where the tip is now.
                    let limits = ReadLimits {
                        records_max: 1,
                        ..ReadLimits::default()
                    };
                    let page = c
                        .read(stream, *index, StartPosition::Latest, limits)
                        .await?;
                    Ok(Cursor::Position(page.next_position.unwrap_or(0)))
                } else {
                    Ok(Cursor::Position(0))
                }
            }
            _ => bail!("shard reference does not match the protocol"),
        }
    }

    pub async fn read(
        &self,
        stream: &str,
        shard: &ShardRef,
        cursor: &Cursor,
        limit: u32,
    ) -> anyhow::Result<Page> {
        match (self, shard, cursor) {
            (Target::Http(k), _, Cursor::Iterator(iterator)) => {
                let body =
                    Bytes::from(json!({"ShardIterator": iterator, "Limit": limit}).to_string());
                let (status, bytes) = k.call("GetRecords", body).await?;
                if status != 200 {
                    bail!(
                        "GetRecords answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                let out: GetRecordsOut<'_> =
                    serde_json::from_slice(&bytes).context("parsing GetRecords")?;
                let mut heads = Vec::new();
                let mut total = 0;
                for r in &out.records {
                    total += base64_decoded_len(&r.data);
                    if r.data.len() >= 24
                        && let Ok(decoded) = B64.decode(&r.data.as_bytes()[..24])
                    {
                        let mut head = [0u8; 16];
                        head.copy_from_slice(&decoded[..16]);
                        heads.push(head);
                    }
                }
                let caught_up =
                    out.records.is_empty() && out.millis_behind_latest.unwrap_or(0) == 0;
                Ok(Page {
                    records: out.records.len(),
                    bytes: total,
                    heads,
                    next: out.next_shard_iterator.map(Cursor::Iterator),
                    caught_up,
                })
            }
            (Target::Binary(c), ShardRef::Index(index), Cursor::Position(position)) => {
                let limits = ReadLimits {
                    records_max: limit,
                    ..ReadLimits::default()
                };
                let page = c
                    .read(stream, *index, StartPosition::AtPosition(*position), limits)
                    .await?;
                Ok(binary_page(
                    &page.records,
                    page.next_position.map(Cursor::Position),
                    page.millis_behind_latest,
                ))
            }
            _ => bail!("cursor does not match the protocol"),
        }
    }
}

pub fn binary_page(
    records: &[sluice_client::Record],
    next: Option<Cursor>,
    millis_behind_latest: u64,
) -> Page {
    let mut heads = Vec::new();
    let mut total = 0;
    for r in records {
        total += r.data.len();
        if let Some(head) = r.data.get(..16) {
            let mut h = [0u8; 16];
            h.copy_from_slice(head);
            heads.push(h);
        }
    }
    Page {
        records: records.len(),
        bytes: total,
        heads,
        next,
        caught_up: records.is_empty() && millis_behind_latest == 0,
    }
}

#[derive(Clone, Debug)]
pub enum ShardRef {
    Id(String),
    Index(u32),
}

impl ShardRef {
    pub fn index(&self) -> Option<u32> {
        match self {
            ShardRef::Index(i) => Some(*i),
            ShardRef::Id(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_record_count_is_read_from_the_front_of_a_put_records_answer() {
        assert_eq!(
            failed_record_count(br#"{"FailedRecordCount":3,"Records":[]}"#),
            Some(3)
        );
        assert_eq!(
            failed_record_count(br#"{"Records":[], "FailedRecordCount" : 0}"#),
            Some(0)
        );
        assert_eq!(failed_record_count(br#"{"Records":[]}"#), None);
    }

    #[test]
    fn base64_lengths_account_for_padding() {
        for n in 0..40 {
            assert_eq!(base64_decoded_len(&B64.encode(vec![1u8; n])), n);
        }
    }
}
