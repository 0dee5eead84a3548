//! The client against a small in-test server that speaks the binary codec over loopback. The
//! server keeps streams in memory and can misbehave on cue (answer out of order, drop the
//! connection, refuse a core port), so these tests pin down the client's own behaviour:
//! pipelining, error mapping, batching and linger, credit-based flow control, shard-aware
//! routing and reconnects. End-to-end tests against the real server live in the root `tests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{
    Client, ClientConfig, ClientError, ProducerConfig, PutRecord, ReadLimits, Route, StartPosition,
    StatusCode,
};
use sluice_core::ErrorKind;
use sluice_core::hash_key::{HashRange, partition_key_hash};
use sluice_protocols::binary::limits::{
    AUTH_VERSION_MIN, INGEST_CREDIT_BYTES, INGEST_CREDIT_VERSION_MIN, PROTOCOL_VERSIONS,
};
use sluice_protocols::binary::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const SHARD_CREATED_S: u64 = 1_700_000_000;
const ARRIVAL_MS: u64 = 1_700_000_001_234;

struct FakeShard {
    range: HashRange,
    records: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Stats {
    /// (core that received the PutBatch, partition key) per record.
    put_records: Vec<(u16, String)>,
    put_frames: usize,
    credit_frames: usize,
    /// Records pushed to subscriptions; the fake never pushes beyond the credits it holds.
    pushed_records: u64,
    connections: usize,
    /// PutBatches answered ServerBusy.
    busy_answers: usize,
}

struct Fake {
    streams: Mutex<HashMap<String, Vec<FakeShard>>>,
    stats: Mutex<Stats>,
    changed: watch::Sender<u64>,
    core_count: u16,
    /// Filled in once the listeners are bound.
    core_ports: Mutex<Vec<u16>>,
}

struct FakeServer {
    fake: Arc<Fake>,
    addr: std::net::SocketAddr,
}

impl FakeServer {
    /// Starts listeners for `core_count` cores; the first is also the shared port. A core listed
    /// in `unreachable` advertises a port nobody listens on.
    async fn start(core_count: u16, unreachable: &[u16]) -> FakeServer {
        let fake = Arc::new(Fake {
            streams: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            changed: watch::channel(0).0,
            core_count,
            core_ports: Mutex::new(Vec::new()),
        });
        let mut ports = Vec::new();
        let mut first = None;
        for core_id in 0..core_count {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let addr = listener.local_addr().expect("bound address");
            if unreachable.contains(&core_id) {
                // Bind then drop, so the port is very likely refused.
                drop(listener);
                ports.push(addr.port());
                continue;
            }
            first.get_or_insert(addr);
            ports.push(addr.port());
            let fake = fake.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    fake.stats.lock().expect("stats").connections += 1;
                    tokio::spawn(serve(socket, core_id, fake.clone()));
                }
            });
        }
        *fake.core_ports.lock().expect("ports") = ports;
        FakeServer {
            fake,
            addr: first.expect("core 0 listens"),
        }
    }

    fn stats<R>(&self, f: impl FnOnce(&Stats) -> R) -> R {
        f(&self.fake.stats.lock().expect("stats"))
    }
}

struct Sub {
    stream: String,
    shard: usize,
    next: u64,
    credits: u64,
}

fn seq(shard_index: u32, position: u64) -> WireSequenceNumber {
    WireSequenceNumber {
        shard_created_s: SHARD_CREATED_S,
        shard_index,
        position,
        arrival_s: ARRIVAL_MS / 1000,
    }
}

fn send(tx: &mpsc::UnboundedSender<Vec<u8>>, request_id: u64, body: Body<'_>) {
    let mut out = Vec::new();
    encode_frame(&Frame { request_id, body }, &mut out).expect("fake server frames fit");
    let _ = tx.send(out);
}

fn error(
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    request_id: u64,
    opcode: Opcode,
    status: StatusCode,
    message: &str,
) {
    send(
        tx,
        request_id,
        Body::Error(WireError {
            opcode: opcode.code(),
            status: status.into(),
            message,
        }),
    );
}

async fn serve(socket: tokio::net::TcpStream, core_id: u16, fake: Arc<Fake>) {
    let (mut read, mut write) = socket.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut changed = fake.changed.subscribe();
    let mut decoder = FrameDecoder::new();
    let mut subs: HashMap<u64, Sub> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    // The fake grants the ingest credit of a version 3 hello and checks the client keeps to it.
    let mut ingest = IngestCredit::new(INGEST_CREDIT_BYTES);
    'conn: loop {
        loop {
            let put_bytes = decoder
                .peek_header()
                .filter(|h| h.opcode == Opcode::PutBatch.code() && h.flags == 0)
                .map(|h| h.frame_bytes);
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => panic!("client sent a bad frame: {e}"),
            };
            if let Some(bytes) = put_bytes {
                ingest
                    .spend(bytes)
                    .unwrap_or_else(|e| panic!("the client overspent its ingest credit: {e}"));
            }
            if !handle(frame, core_id, &fake, &tx, &mut subs) {
                break 'conn;
            }
            if let Some(bytes) = put_bytes {
                ingest.give_back(bytes).expect("spent above");
                send(&tx, 0, Body::IngestCredit(WireIngestCredit { bytes }));
            }
        }
        push(&fake, &tx, &mut subs);
        tokio::select! {
            n = read.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => decoder.push(&buf[..n]),
            },
            _ = changed.changed() => {}
        }
    }
    writer.abort();
}

/// Pushes committed records to subscriptions, never beyond their credits.
fn push(fake: &Fake, tx: &mpsc::UnboundedSender<Vec<u8>>, subs: &mut HashMap<u64, Sub>) {
    let streams = fake.streams.lock().expect("streams");
    for (id, sub) in subs.iter_mut() {
        let shard = &streams[&sub.stream][sub.shard];
        let available = shard.records.len() as u64 - sub.next;
        let n = available.min(sub.credits).min(3);
        if n == 0 {
            continue;
        }
        let records = (sub.next..sub.next + n)
            .map(|p| {
                let (key, data) = &shard.records[p as usize];
                WireRecord {
                    position: p,
                    arrival_s: ARRIVAL_MS / 1000,
                    approximate_arrival_timestamp_ms: ARRIVAL_MS,
                    partition_key: key,
                    data,
                }
            })
            .collect();
        sub.next += n;
        sub.credits -= n;
        fake.stats.lock().expect("stats").pushed_records += n;
        let body = Body::RecordsEvent(WireRecords {
            shard_created_s: SHARD_CREATED_S,
            shard_index: sub.shard as u32,
            records,
            next_position: Some(sub.next),
            millis_behind_latest: available - n,
        });
        send(tx, *id, body);
    }
    // A single pass pushes at most 3 records per subscription; come back for the rest.
    if subs
        .values()
        .any(|s| s.credits > 0 && (streams[&s.stream][s.shard].records.len() as u64) > s.next)
    {
        fake.changed.send_modify(|v| *v += 1);
    }
}

/// Answers one frame; `false` closes the connection.
fn handle(
    frame: Frame<'_>,
    core_id: u16,
    fake: &Arc<Fake>,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    subs: &mut HashMap<u64, Sub>,
) -> bool {
    let id = frame.request_id;
    match frame.body {
        Body::Hello(hello) => {
            let version = *hello
                .versions
                .iter()
                .filter(|v| PROTOCOL_VERSIONS.contains(v))
                .max()
                .expect("common version");
            let core_ports = fake.core_ports.lock().expect("ports").clone();
            send(
                tx,
                id,
                Body::HelloOk(WireServerHello {
                    version,
                    core_count: fake.core_count,
                    core_id,
                    core_ports,
                    // The fake verifies no credentials, so its challenge asks for none.
                    challenge: (version >= AUTH_VERSION_MIN).then_some(WireAuthChallenge {
                        auth_required: false,
                        server_nonce: [0; 32],
                    }),
                    ingest_credit_bytes: (version >= INGEST_CREDIT_VERSION_MIN)
                        .then_some(INGEST_CREDIT_BYTES),
                }),
            );
        }
        Body::Ping => send(tx, id, Body::Pong),
        Body::CreateStream(c) => {
            if c.stream_name == "drop-the-connection" {
                return false;
            }
            let mut streams = fake.streams.lock().expect("streams");
            if streams.contains_key(c.stream_name) {
                error(
                    tx,
                    id,
                    Opcode::CreateStream,
                    StatusCode::ResourceInUse,
                    "exists",
                );
            } else {
                let shards = HashRange::even_split(c.shard_count)
                    .into_iter()
                    .map(|range| FakeShard {
                        range,
                        records: Vec::new(),
                    })
                    .collect();
                streams.insert(c.stream_name.to_owned(), shards);
                send(tx, id, Body::CreateStreamOk);
            }
        }
        Body::DescribeStream(d) if d.stream_name == "slow" => {
            // Answered late from another task, so later requests overtake it.
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                error(
                    &tx,
                    id,
                    Opcode::DescribeStream,
                    StatusCode::ResourceNotFound,
                    "slow and missing",
                );
            });
        }
        Body::DescribeStream(d) => {
            let streams = fake.streams.lock().expect("streams");
            let Some(shards) = streams.get(d.stream_name) else {
                error(
                    tx,
                    id,
                    Opcode::DescribeStream,
                    StatusCode::ResourceNotFound,
                    "no such stream",
                );
                return true;
            };
            let shards = shards
                .iter()
                .enumerate()
                .map(|(i, s)| WireShard {
                    shard_index: i as u32,
                    parent_shard_index: None,
                    adjacent_parent_shard_index: None,
                    hash_range: s.range.into(),
                    core_id: i as u16 % fake.core_count,
                    starting_sequence_number: seq(i as u32, 0),
                    ending_sequence_number: None,
                })
                .collect();
            send(
                tx,
                id,
                Body::DescribeStreamOk(WireStreamDescription {
                    stream_name: d.stream_name,
                    stream_status: WireStreamStatus::Active,
                    stream_mode: WireStreamMode::Provisioned,
                    retention_period_hours: 24,
                    stream_creation_timestamp_ms: SHARD_CREATED_S * 1000,
                    shards,
                }),
            );
        }
        Body::ListStreams(l) => {
            let streams = fake.streams.lock().expect("streams");
            let mut names: Vec<&str> = streams.keys().map(String::as_str).collect();
            names.sort_unstable();
            names.retain(|n| l.exclusive_start_stream_name.is_none_or(|s| *n > s));
            // Pages of two, so the client has to follow them.
            let has_more_streams = names.len() > 2;
            names.truncate(2);
            send(
                tx,
                id,
                Body::ListStreamsOk(WireStreamList {
                    stream_names: names,
                    has_more_streams,
                }),
            );
        }
        Body::GetShardMap(m) => {
            let streams = fake.streams.lock().expect("streams");
            let Some(shards) = streams.get(m.stream_name) else {
                error(
                    tx,
                    id,
                    Opcode::GetShardMap,
                    StatusCode::ResourceNotFound,
                    "no such stream",
                );
                return true;
            };
            let shards = shards
                .iter()
                .enumerate()
                .map(|(i, s)| WireShardMapEntry {
                    shard_index: i as u32,
                    hash_range: s.range.into(),
                    core_id: i as u16 % fake.core_count,
                })
                .collect();
            send(tx, id, Body::GetShardMapOk(WireShardMap { shards }));
        }
        Body::PutBatch(p) => {
            // A batch whose first key is "busy-once" is refused as busy the first time it comes.
            if p.records
                .first()
                .is_some_and(|r| r.partition_key == "busy-once")
            {
                let mut stats = fake.stats.lock().expect("stats");
                if stats.busy_answers == 0 {
                    stats.busy_answers += 1;
                    drop(stats);
                    error(
                        tx,
                        id,
                        Opcode::PutBatch,
                        StatusCode::ServerBusy,
                        "at the memory budget",
                    );
                    return true;
                }
            }
            let mut streams = fake.streams.lock().expect("streams");
            let Some(shards) = streams.get_mut(p.stream_name) else {
                error(
                    tx,
                    id,
                    Opcode::PutBatch,
                    StatusCode::ResourceNotFound,
                    "no such stream",
                );
                return true;
            };
            let mut stats = fake.stats.lock().expect("stats");
            stats.put_frames += 1;
            let mut results = Vec::new();
            for r in &p.records {
                stats
                    .put_records
                    .push((core_id, r.partition_key.to_owned()));
                if r.partition_key == "refuse-me" {
                    results.push(Err(StatusCode::ProvisionedThroughputExceeded.into()));
                    continue;
                }
                let shard_index = match r.route {
                    WireRoute::PartitionKey => shards
                        .iter()
                        .position(|s| s.range.contains(partition_key_hash(r.partition_key))),
                    WireRoute::ExplicitHashKey(k) => {
                        shards.iter().position(|s| s.range.contains(k))
                    }
                    WireRoute::ShardIndex(i) => {
                        (usize::try_from(i).ok()).filter(|i| *i < shards.len())
                    }
                };
                let Some(shard_index) = shard_index else {
                    results.push(Err(StatusCode::InvalidArgument.into()));
                    continue;
                };
                let shard = &mut shards[shard_index];
                shard
                    .records
                    .push((r.partition_key.to_owned(), r.data.to_vec()));
                results.push(Ok(seq(shard_index as u32, shard.records.len() as u64 - 1)));
            }
            send(
                tx,
                id,
                Body::PutBatchOk(WirePutBatchResult { records: results }),
            );
            fake.changed.send_modify(|v| *v += 1);
        }
        Body::Read(r) => {
            let streams = fake.streams.lock().expect("streams");
            let Some(shard) = streams
                .get(r.stream_name)
                .and_then(|s| s.get(r.shard_index as usize))
            else {
                error(
                    tx,
                    id,
                    Opcode::Read,
                    StatusCode::ResourceNotFound,
                    "no such shard",
                );
                return true;
            };
            let from = match r.start {
                WireStartPosition::TrimHorizon => 0,
                WireStartPosition::Latest => shard.records.len() as u64,
                WireStartPosition::AtPosition(p) => p,
                WireStartPosition::AtSequenceNumber(s) => s.position,
                WireStartPosition::AfterSequenceNumber(s) => s.position + 1,
                WireStartPosition::AtTimestamp { .. } => 0,
            };
            let mut out = Vec::new();
            let mut writer =
                RecordsWriter::read_response(&mut out, id, SHARD_CREATED_S, r.shard_index);
            let mut next = from;
            for (key, data) in shard
                .records
                .iter()
                .skip(from as usize)
                .take(r.records_max as usize)
            {
                writer
                    .push(next, ARRIVAL_MS / 1000, ARRIVAL_MS, key, data)
                    .expect("fits");
                next += 1;
            }
            writer.finish(Some(next), 0);
            let _ = tx.send(out);
        }
        Body::Subscribe(s) => {
            let from = match s.start {
                WireStartPosition::AtPosition(p) => p,
                _ => 0,
            };
            subs.insert(
                id,
                Sub {
                    stream: s.stream_name.to_owned(),
                    shard: s.shard_index as usize,
                    next: from,
                    credits: u64::from(s.credits),
                },
            );
            send(tx, id, Body::SubscribeOk);
        }
        Body::Credit(c) => {
            fake.stats.lock().expect("stats").credit_frames += 1;
            if let Some(sub) = subs.get_mut(&c.subscription_id) {
                sub.credits += u64::from(c.credits);
            }
        }
        Body::Unsubscribe(u) => {
            subs.remove(&u.subscription_id);
            send(tx, id, Body::UnsubscribeOk);
        }
        other => panic!("the client sent a server frame {other:?}"),
    }
    true
}

fn config() -> ClientConfig {
    ClientConfig {
        reconnect_backoff_initial: Duration::from_millis(5),
        reconnect_backoff_max: Duration::from_millis(20),
        reconnect_attempts_max: 3,
        request_timeout: Some(Duration::from_secs(10)),
        ..ClientConfig::default()
    }
}

#[tokio::test]
async fn connect_performs_the_handshake_and_reports_the_server() {
    let server = FakeServer::start(2, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    let info = client.server_info();
    assert_eq!(info.version, 3);
    assert_eq!(info.core_count, 2);
    assert_eq!(info.core_id, 0);
    assert_eq!(info.core_ports.len(), 2);
    client.ping().await.expect("pong");
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_with_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = Client::connect_with(addr, config())
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
}

#[tokio::test]
async fn a_server_that_is_not_sluice_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    });
    let error = Client::connect_with(addr, config())
        .await
        .expect_err("not our protocol");
    assert!(matches!(error, ClientError::Handshake { .. }), "{error}");
}

#[tokio::test]
async fn streams_are_created_described_and_listed_across_pages() {
    let server = FakeServer::start(2, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    for name in ["a", "b", "c", "d", "e"] {
        client.create_stream(name, 3).await.expect("created");
    }
    let error = client.create_stream("a", 1).await.expect_err("exists");
    assert_eq!(error.kind(), Some(ErrorKind::ResourceInUse));
    assert_eq!(
        client.list_streams().await.expect("listed"),
        ["a", "b", "c", "d", "e"]
    );
    let description = client.describe_stream("b").await.expect("described");
    assert_eq!(description.shards.len(), 3);
    assert_eq!(description.shards[1].shard_id(), "shardId-000000000001");
    assert_eq!(description.shards[1].core_id, 1);
    assert_eq!(description.shards[2].hash_range.ending, u128::MAX);
    assert_eq!(
        description.shards[0]
            .starting_sequence_number
            .to_string()
            .len(),
        56
    );
    let missing = client.describe_stream("zzz").await.expect_err("missing");
    assert_eq!(missing.status(), Some(StatusCode::ResourceNotFound.into()));
}

#[tokio::test]
async fn pipelined_answers_may_arrive_out_of_order() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    let started = Instant::now();
    let slow = async {
        let r = client.describe_stream("slow").await;
        (r, started.elapsed())
    };
    let fast = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = client.ping().await;
        (r, started.elapsed())
    };
    let ((slow, slow_at), (fast, fast_at)) = tokio::join!(slow, fast);
    assert_eq!(
        slow.expect_err("the slow stream is missing").kind(),
        Some(ErrorKind::ResourceNotFound)
    );
    fast.expect("pong");
    assert!(
        fast_at < slow_at,
        "the ping sent later was answered first: {fast_at:?} vs {slow_at:?}"
    );
}

#[tokio::test]
async fn put_batch_returns_a_result_per_record_in_order() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 4).await.expect("created");
    let records = [
        PutRecord::new("a", b"one"),
        PutRecord::new("refuse-me", b"two"),
        PutRecord {
            route: Route::ShardIndex(3),
            partition_key: "",
            data: b"three",
        },
        PutRecord {
            route: Route::ExplicitHashKey(0),
            partition_key: "x",
            data: b"four",
        },
    ];
    let results = client
        .put_batch("s", &records)
        .await
        .expect("batch answered");
    assert_eq!(results.len(), 4);
    // MD5("a") falls in the first quarter of the key space.
    assert_eq!(results[0].as_ref().expect("stored").shard_index, 0);
    assert_eq!(
        results[1],
        Err(StatusCode::ProvisionedThroughputExceeded.into())
    );
    assert_eq!(results[2].as_ref().expect("stored").shard_index, 3);
    let fourth = results[3].as_ref().expect("stored");
    assert_eq!((fourth.shard_index, fourth.position), (0, 1));
    let error = client
        .put_batch("nope", &records)
        .await
        .expect_err("no stream");
    assert_eq!(error.kind(), Some(ErrorKind::ResourceNotFound));
}

/// A PutBatch the server refused as busy was not stored, so the client sends it again after a
/// backoff, and the caller sees only the success.
#[tokio::test]
async fn put_batch_retries_a_busy_answer_transparently() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    assert_eq!(
        client.server_info().ingest_credit_bytes,
        Some(INGEST_CREDIT_BYTES)
    );
    client.create_stream("s", 1).await.expect("created");
    let results = client
        .put_batch("s", &[PutRecord::new("busy-once", b"x")])
        .await
        .expect("the retry succeeds");
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(server.stats(|s| s.busy_answers), 1);
    assert_eq!(server.stats(|s| s.put_frames), 1, "stored once");
}

/// Many large batches pipelined on one connection stay within the ingest credit the fake
/// grants (it panics on an overspend) and all succeed as credit comes back.
#[tokio::test]
async fn pipelined_puts_beyond_the_ingest_credit_wait_for_it_and_all_succeed() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let data = vec![7u8; 6 * 1024 * 1024];
    let mut puts = Vec::new();
    for _ in 0..12 {
        let client = client.clone();
        let data = data.clone();
        puts.push(tokio::spawn(async move {
            client.put_batch("s", &[PutRecord::new("k", &data)]).await
        }));
    }
    for put in puts {
        let results = put.await.expect("the task ran").expect("the put succeeds");
        assert!(results[0].is_ok());
    }
    assert_eq!(server.stats(|s| s.put_frames), 12);
}

#[tokio::test]
async fn read_returns_records_with_their_sequence_numbers_and_next_position() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let data: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; usize::from(i) * 10]).collect();
    let records: Vec<PutRecord<'_>> = data.iter().map(|d| PutRecord::new("k", d)).collect();
    let put = client.put_batch("s", &records).await.expect("stored");
    let page = client
        .read(
            "s",
            0,
            StartPosition::TrimHorizon,
            ReadLimits {
                records_max: 3,
                bytes_max: 1 << 20,
            },
        )
        .await
        .expect("read");
    assert_eq!(page.records.len(), 3);
    assert_eq!(page.next_position, Some(3));
    for (i, record) in page.records.iter().enumerate() {
        assert_eq!(Ok(record.sequence_number), put[i]);
        assert_eq!(record.data, data[i]);
        assert_eq!(record.partition_key, "k");
        assert_eq!(record.approximate_arrival_timestamp_ms, ARRIVAL_MS);
    }
    let rest = client
        .read("s", 0, StartPosition::AtPosition(3), ReadLimits::default())
        .await
        .expect("read");
    assert_eq!(
        rest.records
            .iter()
            .map(|r| r.position())
            .collect::<Vec<_>>(),
        [3, 4]
    );
}

#[tokio::test]
async fn the_producer_flushes_on_linger_and_on_batch_size() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 2).await.expect("created");

    let lingering = client.producer(
        "s",
        ProducerConfig {
            linger: Duration::from_millis(50),
            ..ProducerConfig::default()
        },
    );
    let sends: Vec<_> = (0..3)
        .map(|i| lingering.send(format!("k{i}"), vec![i as u8]))
        .collect();
    for send in sends {
        let sequence_number = send.await.expect("stored");
        assert_eq!(sequence_number.to_string().len(), 56);
    }
    assert_eq!(
        server.stats(|s| s.put_frames),
        1,
        "three records within the linger form one batch"
    );

    let small = client.producer(
        "s",
        ProducerConfig {
            batch_records_max: 2,
            linger: Duration::from_secs(60),
            ..ProducerConfig::default()
        },
    );
    let sends: Vec<_> = (0..5)
        .map(|i| small.send(format!("k{i}"), vec![i as u8]))
        .collect();
    small.flush().await.expect("flushed");
    for send in sends {
        send.await.expect("stored");
    }
    assert_eq!(
        server.stats(|s| s.put_frames),
        1 + 3,
        "five records in batches of two take three frames"
    );

    let refused = lingering
        .send("refuse-me", b"x".to_vec())
        .await
        .expect_err("refused");
    assert!(
        matches!(refused, ClientError::RecordFailed { .. }),
        "{refused}"
    );
    assert!(refused.is_retryable());
}

#[tokio::test]
async fn a_subscription_receives_every_record_without_exceeding_its_credits() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let early: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
    let records: Vec<PutRecord<'_>> = early.iter().map(|d| PutRecord::new("k", d)).collect();
    client.put_batch("s", &records).await.expect("stored");

    let mut subscription = client
        .subscribe_with_credits("s", 0, StartPosition::TrimHorizon, 4)
        .await
        .expect("subscribed");
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let event = subscription.next().await.expect("open").expect("records");
        assert!(
            event.records.len() <= 4,
            "an event never exceeds the credit window"
        );
        seen.extend(event.records.iter().map(|r| r.data[0]));
    }
    // Records committed after subscribing are pushed too.
    let late = [PutRecord::new("k", b"\x0a"), PutRecord::new("k", b"\x0b")];
    client.put_batch("s", &late).await.expect("stored");
    while seen.len() < 12 {
        let event = subscription.next().await.expect("open").expect("records");
        seen.extend(event.records.iter().map(|r| r.data[0]));
    }
    assert_eq!(seen, (0..12u8).collect::<Vec<_>>());
    assert!(
        server.stats(|s| s.credit_frames) >= 2,
        "credits were granted back as events were consumed"
    );
    subscription.unsubscribe().await.expect("unsubscribed");
}

#[tokio::test]
async fn a_consumer_that_stops_taking_events_stops_the_pushes_at_its_window() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let data: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
    let records: Vec<PutRecord<'_>> = data.iter().map(|d| PutRecord::new("k", d)).collect();
    client.put_batch("s", &records).await.expect("stored");
    // A window of 6; the fake pushes events of at most 3. Taking the first event (3 records)
    // reaches half the window, so exactly 3 credits go back: the server may push 6 + 3 = 9.
    let mut subscription = client
        .subscribe_with_credits("s", 0, StartPosition::TrimHorizon, 6)
        .await
        .expect("subscribed");
    let first = subscription.next().await.expect("open").expect("records");
    assert_eq!(first.records.len(), 3);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.stats(|s| s.pushed_records),
        9,
        "pushes stop when the credits run out"
    );
    assert_eq!(server.stats(|s| s.credit_frames), 1);
    // Draining resumes the flow until every record has arrived.
    let mut seen = first.records.len();
    while seen < 20 {
        seen += subscription
            .next()
            .await
            .expect("open")
            .expect("records")
            .records
            .len();
    }
    assert_eq!(server.stats(|s| s.pushed_records), 20);
}

#[tokio::test]
async fn shard_aware_mode_sends_each_record_to_the_core_that_owns_its_shard() {
    let server = FakeServer::start(2, &[]).await;
    let client = Client::connect_with(
        server.addr,
        ClientConfig {
            shard_aware: true,
            ..config()
        },
    )
    .await
    .expect("connects");
    client.create_stream("s", 4).await.expect("created");
    let keys: Vec<String> = (0..64).map(|i| format!("key-{i}")).collect();
    let records: Vec<PutRecord<'_>> = keys.iter().map(|k| PutRecord::new(k, b"x")).collect();
    let results = client.put_batch("s", &records).await.expect("stored");
    let ranges = HashRange::even_split(4);
    for (key, result) in keys.iter().zip(&results) {
        let expected = ranges
            .iter()
            .position(|r| r.contains(partition_key_hash(key)))
            .expect("covered") as u32;
        assert_eq!(
            result.as_ref().expect("stored").shard_index,
            expected,
            "results stay in request order"
        );
    }
    let received = server.stats(|s| s.put_records.clone());
    assert_eq!(received.len(), 64);
    for (core, key) in received {
        let shard = ranges
            .iter()
            .position(|r| r.contains(partition_key_hash(&key)))
            .expect("covered");
        assert_eq!(core, shard as u16 % 2, "{key} went to core {core}");
    }
    assert!(
        server.stats(|s| s.connections) >= 2,
        "a second connection went to core 1's port"
    );
}

#[tokio::test]
async fn shard_aware_mode_falls_back_to_the_shared_port_when_a_core_port_is_unreachable() {
    let server = FakeServer::start(2, &[1]).await;
    let client = Client::connect_with(
        server.addr,
        ClientConfig {
            shard_aware: true,
            ..config()
        },
    )
    .await
    .expect("connects");
    client.create_stream("s", 2).await.expect("created");
    let keys: Vec<String> = (0..16).map(|i| format!("key-{i}")).collect();
    let records: Vec<PutRecord<'_>> = keys.iter().map(|k| PutRecord::new(k, b"x")).collect();
    let results = client.put_batch("s", &records).await.expect("stored");
    assert!(results.iter().all(Result::is_ok));
    assert!(server.stats(|s| s.put_records.iter().all(|(core, _)| *core == 0)));
}

#[tokio::test]
async fn a_lost_connection_fails_requests_in_flight_and_the_next_request_reconnects() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let mut subscription = client
        .subscribe("s", 0, StartPosition::TrimHorizon)
        .await
        .expect("subscribed");
    let error = client
        .create_stream("drop-the-connection", 1)
        .await
        .expect_err("the server hung up");
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "{error}"
    );
    assert!(error.is_retryable());
    let ended = subscription
        .next()
        .await
        .expect("an error item")
        .expect_err("subscription ended");
    assert!(
        matches!(ended, ClientError::ConnectionLost { .. }),
        "{ended}"
    );
    assert!(subscription.next().await.is_none());
    client.ping().await.expect("reconnected");
    assert_eq!(server.stats(|s| s.connections), 2);
    assert_eq!(client.list_streams().await.expect("listed"), ["s"]);
}

#[tokio::test]
async fn reconnecting_gives_up_after_the_configured_attempts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let fake = Arc::new(Fake {
        streams: Mutex::new(HashMap::new()),
        stats: Mutex::new(Stats::default()),
        changed: watch::channel(0).0,
        core_count: 1,
        core_ports: Mutex::new(vec![addr.port()]),
    });
    // Serve exactly one connection, then close the listener for good.
    let served = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        drop(listener);
        serve(socket, 0, fake).await;
    });
    let client = Client::connect_with(addr, config())
        .await
        .expect("connects once");
    let error = client
        .create_stream("drop-the-connection", 1)
        .await
        .expect_err("hung up");
    assert!(
        matches!(error, ClientError::ConnectionLost { .. }),
        "{error}"
    );
    served.await.expect("the one connection was served");
    let started = Instant::now();
    let error = client.ping().await.expect_err("nobody listens any more");
    assert!(
        matches!(error, ClientError::Reconnect { attempts: 3, .. }),
        "{error}"
    );
    // Backoff sleeps of 5 and 10 ms lie between the three attempts.
    assert!(
        started.elapsed() >= Duration::from_millis(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes_it() {
    let server = FakeServer::start(1, &[]).await;
    let client = Client::connect_with(server.addr, config())
        .await
        .expect("connects");
    client.create_stream("s", 1).await.expect("created");
    let subscription = client
        .subscribe_with_credits("s", 0, StartPosition::TrimHorizon, 100)
        .await
        .expect("subscribed");
    drop(subscription);
    client.ping().await.expect("pong");
    client
        .put_batch("s", &[PutRecord::new("k", b"x")])
        .await
        .expect("stored");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.stats(|s| s.pushed_records),
        0,
        "nothing is pushed after the unsubscribe"
    );
}

#[tokio::test]
async fn a_server_that_breaks_the_protocol_fails_requests_with_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await;
        let mut hello = Vec::new();
        let body = Body::HelloOk(WireServerHello {
            version: 1,
            core_count: 1,
            core_id: 0,
            core_ports: vec![addr.port()],
            challenge: None,
            ingest_credit_bytes: None,
        });
        encode_frame(
            &Frame {
                request_id: 0,
                body,
            },
            &mut hello,
        )
        .expect("fits");
        socket.write_all(&hello).await.expect("hello sent");
        let _ = socket.read(&mut buf).await;
        // A frame length below the header size: the stream has no frame boundary any more.
        socket
            .write_all(&[3, 0, 0, 0, 2, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
            .await
            .expect("sent");
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let client = Client::connect_with(addr, config())
        .await
        .expect("connects");
    let error = client.ping().await.expect_err("garbage answer");
    assert!(matches!(error, ClientError::Protocol { .. }), "{error}");
}
