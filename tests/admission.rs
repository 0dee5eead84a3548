//! Overload without falling over: the HTTP front end's per-core memory budget and connection
//! limit, observed through `/metrics` and through a real SDK client. No test here depends on a
//! wall-clock deadline being met on a loaded machine: each waits for a gauge or a counter to
//! reach a value, with a generous bound only so that a broken server fails instead of hanging.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::Blob;
use common::{Server, create_active_stream, unique_stream_name};

/// How long a test waits for a metric to reach the value it expects before it fails.
const METRIC_WAIT_MAX: Duration = Duration::from_secs(60);

fn addr(server: &Server) -> String {
    server
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// `GET /metrics` over HTTP/1.1; the scrape itself is never subject to admission.
fn metrics(server: &Server) -> String {
    let mut stream = TcpStream::connect(addr(server)).expect("connect for /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send /metrics");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read /metrics");
    text
}

/// The value of `name{core="0"}` in the scrape, or `None` when the scrape itself was refused
/// (at the connection limit, before the server has seen other connections close).
fn try_metric(server: &Server, name: &str) -> Option<u64> {
    let needle = format!("{name}{{core=\"0\"}} ");
    let text = metrics(server);
    if text.starts_with("HTTP/1.1 503") {
        return None;
    }
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .unwrap_or_else(|| panic!("{name} is on /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a metric value is an integer");
    Some(value)
}

fn metric(server: &Server, name: &str) -> u64 {
    wait_for_metric(server, name, |_| true)
}

fn wait_for_metric(server: &Server, name: &str, wanted: impl Fn(u64) -> bool) -> u64 {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some(value) = try_metric(server, name) {
            if wanted(value) {
                return value;
            }
            last = Some(value);
        }
        assert!(
            started.elapsed() < METRIC_WAIT_MAX,
            "{name} stayed at {last:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A PutRecords request whose headers declare a body of `body.len()` bytes, split so the test can
/// send the headers and part of the body, hold the rest, and send it later.
fn put_records_request(server: &Server, stream_name: &str, data_bytes: usize) -> Vec<u8> {
    let data = base64_of(&vec![b'x'; data_bytes]);
    let body = format!(
        r#"{{"StreamName":"{stream_name}","Records":[{{"Data":"{data}","PartitionKey":"k"}}]}}"#
    );
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nX-Amz-Date: 20250101T000000Z\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\nContent-Length: {}\r\n\r\n",
        addr(server),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn read_response(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(METRIC_WAIT_MAX))
        .expect("read timeout");
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read the response");
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length
                && buffer.len() >= head_end + 4 + length
            {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// With the budget spent by one request whose body has not fully arrived, the next request waits
/// (its body unread: the gauge shows it waiting) instead of being buffered, and proceeds as soon
/// as the first one finishes. Nothing is refused and nothing is lost.
#[test]
fn a_request_beyond_the_memory_budget_waits_and_proceeds_when_room_returns() {
    let server = Server::options()
        .flag("--memory-budget-bytes", 1024 * 1024)
        .flag("--request-queue-timeout-ms", 600_000)
        .start();
    let stream_name = unique_stream_name("budget-wait");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(create_active_stream(&server.client(), &stream_name, 1));

    // 600 KB of data: about 800 KB of JSON, charged about 1.6 MB, which is the whole budget.
    let first = put_records_request(&server, &stream_name, 600 * 1024);
    let split = first.len() - 1000;
    let mut holder = TcpStream::connect(addr(&server)).expect("connect");
    holder
        .write_all(&first[..split])
        .expect("send most of the first request");
    wait_for_metric(&server, "frontend_bytes_in_flight", |v| v == 1024 * 1024);

    let second = put_records_request(&server, &stream_name, 100);
    let mut waiter = TcpStream::connect(addr(&server)).expect("connect");
    waiter.write_all(&second).expect("send the second request");
    wait_for_metric(&server, "frontend_requests_waiting", |v| v == 1);
    assert!(metric(&server, "frontend_requests_delayed_total") >= 1);

    holder
        .write_all(&first[split..])
        .expect("send the rest of the first request");
    let first_answer = read_response(&mut holder);
    assert!(first_answer.starts_with("HTTP/1.1 200"), "{first_answer}");
    let second_answer = read_response(&mut waiter);
    assert!(second_answer.starts_with("HTTP/1.1 200"), "{second_answer}");
    assert!(
        second_answer.contains("\"FailedRecordCount\":0"),
        "{second_answer}"
    );
    wait_for_metric(&server, "frontend_requests_waiting", |v| v == 0);
    wait_for_metric(&server, "frontend_bytes_in_flight", |v| v == 0);
    assert_eq!(metric(&server, "frontend_requests_refused_total"), 0);
}

/// A request that waits for budget past the deadline is answered 503 ServiceUnavailable, which
/// the SDK retries with backoff; once the budget frees up, the retried call succeeds.
#[test]
fn a_throttled_sdk_call_succeeds_on_retry_once_the_budget_frees_up() {
    let server = Server::options()
        .flag("--memory-budget-bytes", 1024 * 1024)
        .flag("--request-queue-timeout-ms", 100)
        .start();
    let stream_name = unique_stream_name("budget-retry");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(create_active_stream(&server.client(), &stream_name, 1));

    let first = put_records_request(&server, &stream_name, 600 * 1024);
    let split = first.len() - 1000;
    let mut holder = TcpStream::connect(addr(&server)).expect("connect");
    holder
        .write_all(&first[..split])
        .expect("send most of the first request");
    wait_for_metric(&server, "frontend_bytes_in_flight", |v| v == 1024 * 1024);

    // A raw request refused at the deadline: 503 with an AWS-shaped, retryable error.
    let mut refused = TcpStream::connect(addr(&server)).expect("connect");
    refused
        .write_all(&put_records_request(&server, &stream_name, 10))
        .expect("send");
    let answer = read_response(&mut refused);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("ServiceUnavailableException"), "{answer}");
    assert!(metric(&server, "frontend_requests_refused_total") >= 1);

    // The SDK with its standard retries: its first attempts are refused while the budget is
    // held; the budget is released once a refusal of the SDK's own call has been counted.
    let config = server
        .client()
        .config()
        .to_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(10))
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    let refusals_before = metric(&server, "frontend_requests_refused_total");
    let call = runtime.spawn({
        let stream_name = stream_name.clone();
        async move {
            client
                .put_record()
                .stream_name(stream_name)
                .partition_key("k")
                .data(Blob::new(b"retried".to_vec()))
                .send()
                .await
        }
    });
    wait_for_metric(&server, "frontend_requests_refused_total", |v| {
        v > refusals_before
    });
    holder
        .write_all(&first[split..])
        .expect("release the budget");
    assert!(read_response(&mut holder).starts_with("HTTP/1.1 200"));
    let output = runtime
        .block_on(call)
        .expect("the task ran")
        .expect("the retried PutRecord succeeds");
    assert!(!output.sequence_number().is_empty());
}

/// Connections beyond the per-core limit get a clear 503 and are closed; the ones within it are
/// served as before, and the refusal is counted.
#[test]
fn connections_beyond_the_limit_are_refused_with_503_and_counted() {
    let server = Server::options().flag("--connections-max", 3).start();
    let first = TcpStream::connect(addr(&server)).expect("connect");
    let second = TcpStream::connect(addr(&server)).expect("connect");
    // Two held connections and the scrape's own.
    wait_for_metric(&server, "frontend_connections", |v| v == 3);
    let third = TcpStream::connect(addr(&server)).expect("connect");
    let mut fourth = TcpStream::connect(addr(&server)).expect("the listener still accepts");
    let answer = read_response(&mut fourth);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection limit"), "{answer}");
    drop((first, second, third));
    // Only the scrape's own connection is left.
    wait_for_metric(&server, "frontend_connections", |v| v == 1);
    assert!(metric(&server, "frontend_connections_refused_total") >= 1);
}

/// A client that sends half a request header and then nothing holds a connection (and its
/// buffers) only until the idle timeout: the server closes it, and the connection gauge goes
/// back down. A normal request on another connection is answered meanwhile.
#[test]
fn a_connection_that_stalls_mid_header_is_closed_after_the_idle_timeout() {
    let server = Server::options().flag("--idle-timeout-ms", 300).start();
    let mut stalled = TcpStream::connect(addr(&server)).expect("connect");
    stalled
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar")
        .expect("send half a header");
    // Answered while the stalled connection is open.
    let mut normal = TcpStream::connect(addr(&server)).expect("connect");
    normal
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    assert!(read_response(&mut normal).starts_with("HTTP/1.1 200"));
    // The server closes the stalled one: a read sees the end of the stream.
    stalled
        .set_read_timeout(Some(METRIC_WAIT_MAX))
        .expect("read timeout");
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the server closed the connection: {closed:?}"
    );
    // Only the scrape's own connection is left.
    wait_for_metric(&server, "frontend_connections", |v| v == 1);
}

/// A client that trickles a request header one byte at a time moves bytes all the time, so the
/// idle timeout never fires; the header timeout closes it. A keep-alive connection that stays
/// quiet between two requests is not a stalled header and stays open.
#[test]
fn a_client_trickling_its_headers_is_closed_after_the_header_timeout() {
    let server = Server::options()
        .flag("--idle-timeout-ms", 0)
        .flag("--header-timeout-ms", 400)
        .start();
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    let mut quiet = TcpStream::connect(addr(&server)).expect("connect");
    quiet.write_all(health).expect("send");
    assert!(read_response(&mut quiet).starts_with("HTTP/1.1 200"));

    let mut trickling = TcpStream::connect(addr(&server)).expect("connect");
    trickling
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let header = b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n";
    let started = Instant::now();
    let mut closed = false;
    for byte in header.iter().cycle() {
        if started.elapsed() > METRIC_WAIT_MAX {
            break;
        }
        if trickling.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        // The read timeout paces the trickle: one byte every 100 ms.
        let mut buffer = [0u8; 64];
        match trickling.read(&mut buffer) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("half a header was answered"),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "a trickling header was never cut off");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed before the header timeout"
    );

    // The quiet keep-alive connection has been open, silent, for longer than the header
    // timeout, and still answers.
    quiet.write_all(health).expect("send again");
    assert!(read_response(&mut quiet).starts_with("HTTP/1.1 200"));
}

/// A GetRecords reserves room for its answer before it reads, and on a small budget its answer
/// is capped to what the reservation covers (fewer bytes and records than the API's limits):
/// the client reads on with the next iterator and gets every record, in order.
#[test]
fn get_records_answers_are_held_to_what_the_memory_budget_can_reserve() {
    let server = Server::options()
        .flag("--memory-budget-bytes", 1024 * 1024)
        .start();
    let stream_name = unique_stream_name("budget-read");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = server.client();
    runtime.block_on(async {
        create_active_stream(&client, &stream_name, 1).await;
        // Five large records, then 400 small ones.
        for i in 0..5u8 {
            client
                .put_record()
                .stream_name(&stream_name)
                .partition_key("k")
                .data(Blob::new(vec![i; 100 * 1024]))
                .send()
                .await
                .expect("put a large record");
        }
        let mut entries = Vec::new();
        for i in 0..400u32 {
            entries.push(
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(i.to_be_bytes().to_vec()))
                    .build()
                    .expect("entry"),
            );
        }
        let put = client
            .put_records()
            .stream_name(&stream_name)
            .set_records(Some(entries))
            .send()
            .await
            .expect("put small records");
        assert_eq!(put.failed_record_count(), Some(0));

        let mut iterator = client
            .get_shard_iterator()
            .stream_name(&stream_name)
            .shard_id("shardId-000000000000")
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator")
            .shard_iterator
            .expect("an iterator");
        let mut answers = Vec::new();
        let mut records = Vec::new();
        while records.len() < 405 && answers.len() < 100 {
            let output = client
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .expect("get records");
            answers.push(output.records().len());
            records.extend(output.records().iter().map(|r| r.data().as_ref().to_vec()));
            iterator = output.next_shard_iterator.expect("an open shard");
        }
        // Half the 1 MiB budget is the reservation: about 167 KiB of data and 163 records.
        assert_eq!(answers[0], 1, "one 100 KiB record per answer: {answers:?}");
        assert!(
            answers.iter().all(|n| *n <= 163),
            "no answer beyond the reservation's record cap: {answers:?}"
        );
        assert!(answers.contains(&163), "{answers:?}");
        assert_eq!(records.len(), 405, "{answers:?}");
        for (i, data) in records[..5].iter().enumerate() {
            assert_eq!(data, &vec![i as u8; 100 * 1024]);
        }
        for (i, data) in records[5..].iter().enumerate() {
            assert_eq!(data, &(i as u32).to_be_bytes().to_vec());
        }
    });
    wait_for_metric(&server, "frontend_bytes_in_flight", |v| v <= 64 * 1024);
}

/// Service cores are part of the appliance's health: `/health` names every shard and service
/// core with its runtime and state, and `/metrics` shows each service core as up.
#[test]
fn health_and_metrics_list_the_shard_and_service_cores() {
    let server = Server::options()
        .flag("--service-cores", 2)
        .flag("--service-runtime", "glommio")
        .start();
    let started = Instant::now();
    let health = loop {
        let mut stream = TcpStream::connect(addr(&server)).expect("connect");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let answer = read_response(&mut stream);
        // Service cores start once the shard cores have recovered; wait until both run.
        if answer.matches(r#""state":"running""#).count() == 2 {
            break answer;
        }
        assert!(started.elapsed() < METRIC_WAIT_MAX, "{answer}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");
    assert!(health.contains(r#""shard_cores":1"#), "{health}");
    assert!(health.contains(r#""id":0,"runtime":"glommio""#), "{health}");
    assert!(health.contains(r#""id":1,"runtime":"glommio""#), "{health}");
    let text = metrics(&server);
    let up: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("io_service_core_up{"))
        .collect();
    assert_eq!(up.len(), 2, "{text}");
    assert!(up.iter().all(|l| l.ends_with(" 1")), "{up:?}");
}
