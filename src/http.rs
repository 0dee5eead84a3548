//! The HTTP front end on one glommio executor: accepts connections, serves HTTP/1.1 and
//! cleartext HTTP/2 with prior knowledge on the same port (the JS SDK v3 speaks h2c for every
//! Kinesis call; boto3, the CLI and the Rust SDK speak HTTP/1.1), collects each request body,
//! and hands it to `sluice_protocols::handle_kinesis`.
//!
//! hyper runs over glommio's futures-io sockets through tokio-util's compat layer; no tokio
//! runtime exists. hyper's HTTP/2 spawns per-stream tasks through [`GlommioExec`], which puts
//! them on the current executor, so nothing here needs `Send`.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use sluice_core::KinesisApi;
use sluice_protocols::{HttpRequest, handle_kinesis};
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

/// Bodies above this are refused with 413 before or while reading them. AWS's front end (as
/// kinesalite copies it) uses the same cap; the largest legal PutRecords body is about 6.7 MiB
/// of base64.
pub const REQUEST_BODY_BYTES_MAX: usize = 7 * 1024 * 1024;

/// How long the accept loop waits before retrying after the process ran out of descriptors or
/// memory for a new connection.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Runs hyper's background tasks (HTTP/2 streams, connection drivers) on the current glommio
/// executor.
#[derive(Clone, Copy, Debug)]
pub struct GlommioExec;

impl<F> hyper::rt::Executor<F> for GlommioExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

/// Accepts connections on `listener` and serves each on the current glommio executor. Returns
/// only when the listener fails with an error that retrying cannot fix.
pub async fn serve<A: KinesisApi + Clone + 'static>(listener: glommio::net::TcpListener, api: A) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) if accept_error_is_transient(&error) => {
                tracing::warn!(%error, "Accepting a connection failed; retrying.");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "The HTTP listener failed; this core stops accepting connections.");
                return;
            }
        };
        // Kinesis calls are small request/response exchanges; Nagle's algorithm would hold back
        // the last segment of every response.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "Could not set TCP_NODELAY.");
        }
        let api = api.clone();
        glommio::spawn_local(serve_connection(stream, api)).detach();
    }
}

fn accept_error_is_transient(error: &glommio::GlommioError<()>) -> bool {
    use std::io::ErrorKind;
    match error {
        glommio::GlommioError::IoError(e) => {
            matches!(
                e.kind(),
                ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
            ) || matches!(
                e.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN)
            )
        }
        _ => false,
    }
}

async fn serve_connection<A: KinesisApi + Clone + 'static>(
    stream: glommio::net::TcpStream,
    api: A,
) {
    let io = TokioIo::new(stream.compat());
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(respond(&api, request).await) }
    });
    if let Err(error) = Builder::new(GlommioExec)
        .serve_connection(io, service)
        .await
    {
        // Clients reset connections all the time; that is not worth more than a debug line.
        tracing::debug!(%error, "HTTP connection ended with an error.");
    }
}

fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: &'static [u8],
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn too_large() -> Response<Full<Bytes>> {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", b"")
}

/// One request: `GET /health`, or a Kinesis call.
async fn respond<A: KinesisApi>(api: &A, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() == hyper::Method::GET && request.uri().path() == "/health" {
        return plain(StatusCode::OK, "application/json", br#"{"status":"ok"}"#);
    }

    let declared_length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > REQUEST_BODY_BYTES_MAX as u64) {
        return too_large();
    }

    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Err(error) => {
            tracing::debug!(%error, "Reading a request body failed.");
            return plain(StatusCode::BAD_REQUEST, "text/plain", b"");
        }
    };

    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let has_query_auth = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("X-Amz-Algorithm"))
    });
    let kinesis_request = HttpRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        target: header("x-amz-target"),
        content_type: header("content-type"),
        has_auth: parts.headers.contains_key(hyper::header::AUTHORIZATION) || has_query_auth,
        authorization: header("authorization"),
        query: parts.uri.query(),
        has_date: parts.headers.contains_key("x-amz-date")
            || parts.headers.contains_key(hyper::header::DATE),
        origin: header("origin"),
        access_control_request_headers: header("access-control-request-headers"),
        access_control_request_method: header("access-control-request-method"),
        body: &body,
    };
    let reply = handle_kinesis(api, kinesis_request).await;

    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => tracing::warn!(name, "Dropped a response header that is not valid HTTP."),
        }
    }
    response
}

#[cfg(test)]
mod tests {
    //! Serves a tiny API on a glommio executor and talks to it over loopback with HTTP/1.1 and
    //! h2c prior knowledge, as boto3 and the JS SDK v3 do.

    use std::rc::Rc;

    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
    use sluice_core::KinesisError;
    use sluice_core::api::*;

    use super::*;

    /// Knows one stream name; every other operation is a server fault. It is not `Send`, like
    /// the engine handle the real server passes.
    #[derive(Clone)]
    struct OneStream(std::marker::PhantomData<Rc<()>>);

    fn unsupported<T>() -> Result<T, KinesisError> {
        Err(KinesisError::internal("not part of the test"))
    }

    impl KinesisApi for OneStream {
        type Records = Vec<OwnedRecord>;
        fn region(&self) -> &str {
            "us-east-1"
        }
        fn account_id(&self) -> &str {
            "000000000000"
        }
        async fn create_stream(&self, _: CreateStreamInput) -> Result<(), KinesisError> {
            unsupported()
        }
        async fn delete_stream(&self, _: DeleteStreamInput) -> Result<(), KinesisError> {
            unsupported()
        }
        async fn describe_stream(
            &self,
            _: DescribeStreamInput,
        ) -> Result<StreamDescription, KinesisError> {
            unsupported()
        }
        async fn describe_stream_summary(
            &self,
            _: String,
        ) -> Result<StreamDescriptionSummary, KinesisError> {
            unsupported()
        }
        async fn list_streams(
            &self,
            _: ListStreamsInput,
        ) -> Result<ListStreamsOutput, KinesisError> {
            Ok(ListStreamsOutput {
                stream_names: vec!["only".to_owned()],
                has_more_streams: false,
                next_token: None,
                stream_summaries: Vec::new(),
            })
        }
        async fn list_shards(&self, _: ListShardsInput) -> Result<ListShardsOutput, KinesisError> {
            unsupported()
        }
        async fn put_records(&self, _: PutRecordsInput) -> Result<PutRecordsOutput, KinesisError> {
            unsupported()
        }
        async fn get_shard_iterator(
            &self,
            _: GetShardIteratorInput,
        ) -> Result<String, KinesisError> {
            unsupported()
        }
        async fn get_records(
            &self,
            _: GetRecordsInput,
        ) -> Result<GetRecordsOutput<Self::Records>, KinesisError> {
            unsupported()
        }
        async fn add_tags_to_stream(&self, _: String, _: Vec<Tag>) -> Result<(), KinesisError> {
            unsupported()
        }
        async fn remove_tags_from_stream(
            &self,
            _: String,
            _: Vec<String>,
        ) -> Result<(), KinesisError> {
            unsupported()
        }
        async fn list_tags_for_stream(
            &self,
            _: ListTagsForStreamInput,
        ) -> Result<ListTagsForStreamOutput, KinesisError> {
            unsupported()
        }
        async fn increase_stream_retention_period(
            &self,
            _: String,
            _: u32,
        ) -> Result<(), KinesisError> {
            unsupported()
        }
        async fn decrease_stream_retention_period(
            &self,
            _: String,
            _: u32,
        ) -> Result<(), KinesisError> {
            unsupported()
        }
    }

    const LIST_STREAMS_BODY: &str =
        r#"{"StreamNames":["only"],"HasMoreStreams":false,"StreamSummaries":[]}"#;

    /// Runs `client` against a server on a fresh executor and returns what it returned.
    fn with_server<T: Send + 'static, F: Future<Output = T> + 'static>(
        client: impl FnOnce(std::net::SocketAddr) -> F + Send + 'static,
    ) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(move || async move {
                let listener =
                    glommio::net::TcpListener::bind("127.0.0.1:0").expect("loopback bind works");
                let addr = listener.local_addr().expect("bound socket has an address");
                let server =
                    glommio::spawn_local(serve(listener, OneStream(std::marker::PhantomData)));
                let result = client(addr).await;
                drop(server.cancel());
                result
            })
            .expect("executor starts")
            .join()
            .expect("executor finishes")
    }

    async fn http1_exchange(addr: std::net::SocketAddr, request: String) -> String {
        let mut stream = glommio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("request written");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("response read");
        String::from_utf8(response).expect("response is text")
    }

    #[test]
    fn http1_requests_reach_the_kinesis_handler_and_health_answers_ok() {
        let (kinesis, health) = with_server(|addr| async move {
            let body = "{}";
            let kinesis = http1_exchange(
                addr,
                format!(
                    "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c\r\nX-Amz-Date: 20260101T000000Z\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            )
            .await;
            let health = http1_exchange(
                addr,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_owned(),
            )
            .await;
            (kinesis, health)
        });
        assert!(kinesis.starts_with("HTTP/1.1 200 OK\r\n"), "{kinesis}");
        assert!(
            kinesis.to_ascii_lowercase().contains("x-amzn-requestid: "),
            "{kinesis}"
        );
        assert!(kinesis.ends_with(LIST_STREAMS_BODY), "{kinesis}");
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
        assert!(health.ends_with(r#"{"status":"ok"}"#), "{health}");
    }

    #[test]
    fn bodies_over_seven_mebibytes_are_refused_with_413() {
        let response = with_server(|addr| async move {
            http1_exchange(
                addr,
                format!(
                    "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    REQUEST_BODY_BYTES_MAX + 1
                ),
            )
            .await
        });
        assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    }

    #[test]
    fn h2c_with_prior_knowledge_is_served_on_the_same_port() {
        let (status, body) = with_server(|addr| async move {
            let stream = glommio::net::TcpStream::connect(addr)
                .await
                .expect("connects");
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(GlommioExec, TokioIo::new(stream.compat()))
                    .await
                    .expect("h2c handshake");
            glommio::spawn_local(connection).detach();
            let request = Request::post("http://localhost/")
                .header("x-amz-target", "Kinesis_20131202.ListStreams")
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-date", "20260101T000000Z")
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=c",
                )
                .body(Full::new(Bytes::from_static(b"{}")))
                .expect("valid request");
            let response = sender
                .send_request(request)
                .await
                .expect("response arrives");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body arrives")
                .to_bytes();
            (status, body)
        });
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, LIST_STREAMS_BODY.as_bytes());
    }
}
