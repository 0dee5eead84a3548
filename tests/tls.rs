//! TLS on the HTTP listener, end to end with the real `sluice` binary: a self-signed certificate
//! for 127.0.0.1 is made with rcgen, the server is started with `--tls-cert`/`--tls-key`, and
//! clients that trust only that certificate talk to it.
//!
//! The failures these guard against: a listener that still speaks cleartext (or answers
//! cleartext requests) when TLS is configured, ALPN that never selects HTTP/2 (the Java SDK's
//! SubscribeToShard needs h2 over TLS), a ready line that still says `http://`, and bad TLS
//! settings that start a server anyway instead of one clear `error:` line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::Bytes;
use common::{REGION, Server, create_active_stream, shard_id, stream_arn, unique_stream_name};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a test waits for one network step before failing.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct TestCert {
    dir: tempfile::TempDir,
    cert_pem: String,
}

impl TestCert {
    fn new() -> TestCert {
        let generated = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("rcgen makes a self-signed certificate");
        let dir = tempfile::tempdir().expect("the temp dir is writable");
        let cert_pem = generated.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("cert.pem is writable");
        std::fs::write(
            dir.path().join("key.pem"),
            generated.signing_key.serialize_pem(),
        )
        .expect("key.pem is writable");
        TestCert { dir, cert_pem }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn start_server(&self) -> Server {
        let server = Server::options()
            .flag("--tls-cert", self.cert_path().display())
            .flag("--tls-key", self.key_path().display())
            .start();
        assert!(
            server.endpoint().starts_with("https://127.0.0.1:"),
            "the ready line names an https:// endpoint: {}",
            server.endpoint()
        );
        server
    }

    /// A rustls client configuration that trusts this certificate only.
    fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        let cert =
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("rcgen PEM parses");
        roots
            .add(cert)
            .expect("the test certificate is a valid trust anchor");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default protocol versions are supported")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// An SDK client whose HTTPS connector trusts this certificate only.
    fn sdk_client(&self, endpoint: &str) -> Client {
        use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
        use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(self.cert_pem.as_bytes());
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .expect("TLS context"),
            )
            .build_https();
        let credentials = Credentials::new(
            "AKIDSLUICETEST",
            "sluice-test-secret",
            None,
            None,
            "sluice-tests",
        );
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .http_client(http_client)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build();
        Client::from_conf(config)
    }

    /// Opens a TLS connection offering `alpn`; returns the stream and the protocol the server chose.
    async fn connect(
        &self,
        server: &Server,
        alpn: &[&[u8]],
    ) -> (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        Option<Vec<u8>>,
    ) {
        let address = server.endpoint().trim_start_matches("https://").to_owned();
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connects");
        let connector = tokio_rustls::TlsConnector::from(self.client_config(alpn));
        let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let tls = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp))
            .await
            .expect("the handshake finishes in time")
            .expect("the handshake succeeds with the trusted certificate");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        (tls, alpn)
    }

    /// An HTTP/2 connection over TLS (ALPN h2); fails the test if the server picks anything else.
    async fn h2(&self, server: &Server) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
        let (tls, alpn) = self.connect(server, &[b"h2", b"http/1.1"]).await;
        assert_eq!(
            alpn.as_deref(),
            Some(&b"h2"[..]),
            "the server selects h2 when the client offers it first"
        );
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake over TLS");
        tokio::spawn(connection);
        sender
    }
}

/// A JSON 1.1 Kinesis request as the SDKs send it (any signature is accepted on loopback).
fn kinesis_request(
    server: &Server,
    target: &str,
    body: serde_json::Value,
) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(format!("{}/", server.endpoint()))
        .header("x-amz-target", format!("Kinesis_20131202.{target}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-date", "20260101T000000Z")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c",
        )
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&body).expect("JSON"),
        )))
        .expect("valid request")
}

#[tokio::test]
async fn the_sdk_over_https_trusting_the_self_signed_certificate_creates_puts_and_gets() {
    let cert = TestCert::new();
    let server = cert.start_server();
    let client = cert.sdk_client(server.endpoint());
    let name = unique_stream_name("tls-sdk");
    create_active_stream(&client, &name, 1).await;

    let put = client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(&b"sealed in transit"[..]))
        .partition_key("pk")
        .send()
        .await
        .expect("PutRecord over https succeeds");
    let iterator = client
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard_id(0))
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator succeeds")
        .shard_iterator()
        .expect("an iterator is returned")
        .to_owned();
    let records = client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords succeeds");
    assert_eq!(records.records().len(), 1);
    let record = &records.records()[0];
    assert_eq!(record.data().as_ref(), b"sealed in transit");
    assert_eq!(record.sequence_number(), put.sequence_number());
}

#[tokio::test]
async fn alpn_h2_is_negotiated_and_the_request_is_really_served_over_http2() {
    let cert = TestCert::new();
    let server = cert.start_server();
    let mut sender = cert.h2(&server).await;
    let response = sender
        .send_request(kinesis_request(
            &server,
            "ListStreams",
            serde_json::json!({}),
        ))
        .await
        .expect("response arrives");
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let document: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
    assert!(document["StreamNames"].is_array(), "{document}");
}

#[tokio::test]
async fn alpn_http1_is_served_as_http1_over_tls() {
    let cert = TestCert::new();
    let server = cert.start_server();
    let (tls, alpn) = cert.connect(&server, &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake over TLS");
    tokio::spawn(connection);
    let response = sender
        .send_request(kinesis_request(
            &server,
            "ListStreams",
            serde_json::json!({}),
        ))
        .await
        .expect("response arrives");
    assert_eq!(response.version(), hyper::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_cleartext_request_to_the_tls_port_gets_no_http_answer_and_the_server_keeps_serving() {
    let cert = TestCert::new();
    let server = cert.start_server();
    let address = server.endpoint().trim_start_matches("https://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let body = "{}";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    // The server must close the connection (after at most a TLS alert), not wait for more.
    let read = tokio::time::timeout(STEP_TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the cleartext connection promptly");
    // A reset instead of an orderly close is a clean refusal too.
    drop(read);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "a TLS listener never answers cleartext HTTP: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // The refused connection did not disturb the listener.
    let mut sender = cert.h2(&server).await;
    let response = sender
        .send_request(kinesis_request(
            &server,
            "ListStreams",
            serde_json::json!({}),
        ))
        .await
        .expect("response arrives");
    assert_eq!(response.status(), 200);
}

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str().to_owned())
}

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
        let frame = tokio::time::timeout(STEP_TIMEOUT, body.frame())
            .await
            .expect("a frame arrives in time")
            .expect("the stream is still open")
            .expect("the body reads");
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
}

/// Registers a consumer through the JSON API (over h2 + TLS) and waits until it is ACTIVE.
async fn register_consumer(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    server: &Server,
    stream_name: &str,
) -> String {
    let response = sender
        .send_request(kinesis_request(
            server,
            "RegisterStreamConsumer",
            serde_json::json!({"StreamARN": stream_arn(stream_name), "ConsumerName": "tls-reader"}),
        ))
        .await
        .expect("response arrives");
    assert_eq!(response.status(), 200);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let document: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
    let arn = document["Consumer"]["ConsumerARN"]
        .as_str()
        .expect("a consumer ARN")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = sender
            .send_request(kinesis_request(
                server,
                "DescribeStreamConsumer",
                serde_json::json!({"ConsumerARN": arn}),
            ))
            .await
            .expect("response arrives");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body reads")
            .to_bytes();
        let document: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        if document["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE" {
            return arn;
        }
        assert!(
            Instant::now() < deadline,
            "consumer never became ACTIVE: {document}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn subscribe_to_shard_over_h2_and_tls_pushes_a_record_put_after_subscribing() {
    let cert = TestCert::new();
    let server = cert.start_server();
    let client = cert.sdk_client(server.endpoint());
    let name = unique_stream_name("tls-efo");
    create_active_stream(&client, &name, 1).await;
    let mut sender = cert.h2(&server).await;
    let consumer = register_consumer(&mut sender, &server, &name).await;

    let response = sender
        .send_request(kinesis_request(
            &server,
            "SubscribeToShard",
            serde_json::json!({
                "ConsumerARN": consumer,
                "ShardId": shard_id(0),
                "StartingPosition": {"Type": "LATEST"},
            }),
        ))
        .await
        .expect("response head arrives");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let mut body = response.into_body();
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = bytes::BytesMut::new();
    let initial = next_message(&mut body, &mut decoder, &mut buffer).await;
    assert_eq!(
        header(&initial, ":event-type").as_deref(),
        Some("initial-response")
    );

    let put = client
        .put_record()
        .stream_name(&name)
        .data(Blob::new(&b"pushed over h2 and tls"[..]))
        .partition_key("k")
        .send()
        .await
        .expect("PutRecord succeeds");
    let event = loop {
        let message = next_message(&mut body, &mut decoder, &mut buffer).await;
        assert_eq!(
            header(&message, ":event-type").as_deref(),
            Some("SubscribeToShardEvent")
        );
        let document: serde_json::Value =
            serde_json::from_slice(message.payload()).expect("JSON payload");
        if document["Records"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break document;
        }
    };
    let record = &event["Records"][0];
    assert_eq!(record["SequenceNumber"], put.sequence_number());
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(record["Data"].as_str().expect("base64 text"))
        .expect("valid base64");
    assert_eq!(data, b"pushed over h2 and tls");
}

/// Runs `sluice serve` with `flags`, expecting it to refuse to start; returns its stderr.
fn refused_start(flags: &[&str]) -> String {
    let data = tempfile::tempdir().expect("the temp dir is writable");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--pin-cores",
            "false",
        ])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sluice binary built by cargo can be spawned");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if started.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice {flags:?} kept running instead of refusing to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("the output is readable");
    assert_eq!(status.code(), Some(1), "sluice {flags:?} exits with 1");
    assert!(
        output.stdout.is_empty(),
        "no ready line: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn bad_tls_settings_are_refused_at_startup_with_one_error_line() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let cert_path = path_text(&cert.cert_path());
    let key_path = path_text(&cert.key_path());

    let half = refused_start(&["--tls-cert", &cert_path]);
    assert!(half.contains("--tls-cert needs --tls-key"), "{half}");
    let half = refused_start(&["--tls-key", &key_path]);
    assert!(half.contains("--tls-key needs --tls-cert"), "{half}");

    let missing = path_text(&cert.dir.path().join("absent.pem"));
    let unreadable = refused_start(&["--tls-cert", &missing, "--tls-key", &key_path]);
    assert!(
        unreadable.contains("cannot read TLS certificate file") && unreadable.contains(&missing),
        "{unreadable}"
    );

    // The key file holds no certificate, and the certificate file holds no key.
    let no_cert = refused_start(&["--tls-cert", &key_path, "--tls-key", &key_path]);
    assert!(no_cert.contains("holds no PEM certificate"), "{no_cert}");
    let no_key = refused_start(&["--tls-cert", &cert_path, "--tls-key", &cert_path]);
    assert!(no_key.contains("holds no PEM private key"), "{no_key}");

    let other_key = path_text(&other.key_path());
    let mismatch = refused_start(&["--tls-cert", &cert_path, "--tls-key", &other_key]);
    assert!(
        mismatch.contains("is not the private key of certificate"),
        "{mismatch}"
    );
}
