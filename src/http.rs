//! The HTTP front end on one glommio executor: accepts connections, serves HTTP/1.1 and
//! cleartext HTTP/2 with prior knowledge on the same port (the JS SDK v3 speaks h2c for every
//! Kinesis call; boto3, the CLI and the Rust SDK speak HTTP/1.1), collects each request body,
//! and hands it to `sluice_protocols::kinesis::handle_kinesis_within`, which also verifies SigV4
//! signatures when [`ServeOptions::auth`] says so.
//!
//! SubscribeToShard is the one call whose answer streams: it is routed to
//! `sluice_protocols::kinesis::subscribe`, and its event-stream frames go out through
//! [`EventBody`] as the subscription produces them (chunked on HTTP/1.1, DATA frames on h2c).
//! `GET /metrics` answers Prometheus text rendered by [`ServeOptions::metrics`].
//!
//! With [`ServeOptions::tls`] the listener speaks TLS only (rustls): ALPN offers `h2` and
//! `http/1.1`, and the negotiated protocol picks hyper's HTTP/2 or HTTP/1.1 side; a client that
//! negotiates no ALPN protocol gets the same detection as cleartext connections. Cleartext
//! requests on a TLS listener fail the handshake and the connection is closed.
//!
//! hyper runs over glommio's futures-io sockets through tokio-util's compat layer; no tokio
//! runtime exists. hyper's HTTP/2 spawns per-stream tasks through [`GlommioExec`], which puts
//! them on the current executor, so nothing here needs `Send`.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use sluice_core::KinesisApi;
use sluice_core::storage::RecordLog;
use sluice_core::subscribe::Subscription;
use sluice_protocols::HttpRequest;
use sluice_protocols::admission::{
    BudgetPermit, REQUEST_CHARGE_FLOOR_BYTES, get_records_reservation, request_charge,
};

pub use sluice_protocols::admission::Admission;
use sluice_protocols::kinesis::efo::{EnhancedFanOut, FanOutSubscription};
use sluice_protocols::kinesis::subscribe::{
    EventStream, SubscribeReply, handle_subscribe_to_shard, is_subscribe_to_shard,
};
use sluice_protocols::kinesis::{ReplyLimits, handle_kinesis_within};
use sluice_protocols::sigv4::AuthConfig;
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

/// How the HTTP front end treats requests, shared by every core's listener.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Which SigV4 credentials are accepted; the default accepts any well-formed signature.
    pub auth: Arc<AuthConfig>,
    /// What `GET /metrics` answers: Prometheus text, rendered at scrape time. `None` answers 404.
    /// Per core, like the engine handle it usually captures.
    pub metrics: Option<std::rc::Rc<dyn Fn() -> String>>,
    /// `GET /health`'s answer; `200 {"status":"ok"}` when absent.
    pub health: Option<std::rc::Rc<dyn Fn() -> HealthReport>>,
    /// `Some`: every connection is TLS, set up by this acceptor (see [`tls_acceptor`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `Some`: a connection that moves no byte for this long while none of its requests is
    /// being handled is closed (a slow or abandoned client holds no task forever).
    pub idle_timeout: Option<Duration>,
    /// `Some`: a connection that has received bytes which began no request yet (a request's
    /// headers still arriving), with nothing sent back, for this long is closed, however
    /// slowly the bytes trickle in. A slow-headers client holds no task forever.
    pub header_timeout: Option<Duration>,
    /// `Some`: the core's memory budget and connection limit (see [`Admission`]).
    pub admission: Option<Admission>,
    /// `Some`: Kinesis Data Analytics (`KinesisAnalytics_20150814.*`) is served on this port.
    pub analytics:
        Option<sluice_analytics::api::AnalyticsService<sluice_io::storage::StorageHandle>>,
    /// `Some`: Firehose calls (`X-Amz-Target: Firehose_20150804.*`) go to this service.
    pub firehose: Option<sluice_sinks::Firehose<sluice_io::storage::StorageHandle>>,
    /// `Some`: Kinesis Video Streams (its `POST /<operation>` paths, the streaming sessions'
    /// resources and the player page) is served on this port.
    pub video: Option<sluice_video::service::VideoService<sluice_io::storage::StorageHandle>>,
}

/// hyper's per-connection read buffer at most. A connection whose request waits for budget holds
/// at most this much of its body in memory; the rest stays in the socket and TCP slows the
/// client down.
const CONNECTION_READ_BUFFER_BYTES_MAX: usize = 16 * 1024;

/// The answer of a request that waited for budget past the deadline, or of a connection beyond
/// the limit: HTTP 503, which every AWS SDK retries with backoff.
fn service_busy<S>(message: &'static str) -> Response<ResponseBody<S>> {
    let body = format!(r#"{{"__type":"ServiceUnavailableException","message":"{message}"}}"#);
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/x-amz-json-1.1",
        body,
    );
    response
        .headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

const BUSY_MEMORY: &str =
    "Sluice is at its memory budget for requests in flight; retry with backoff.";

const BUSY_CONNECTIONS: &str = "Sluice is at its connection limit; retry with backoff.";

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("auth", &self.auth)
            .field("metrics", &self.metrics.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// ALPN protocol ids, in the server's order of preference.
const ALPN_H2: &[u8] = b"h2";
/// The one call whose answer a request's charge must reserve room for before it is read.
const GET_RECORDS_TARGET: &str = "Kinesis_20131202.GetRecords";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How long a client may take to complete the TLS handshake before the connection is dropped,
/// so idle or cleartext connections on a TLS port do not pin a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS identity could not be loaded; each message names the file and is one line.
/// Causes are folded into the message as text (not chained as sources), so `{:#}` prints each once.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read TLS certificate file {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS certificate file {path} holds no PEM certificate")]
    NoCert { path: String },
    #[error("cannot read TLS private key file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS private key file {path} holds no PEM private key")]
    NoKey { path: String },
    #[error("TLS key {key} is not the private key of certificate {cert}")]
    Mismatch { cert: String, key: String },
    #[error("cannot use TLS certificate {cert} with key {key}: {reason}")]
    Unusable {
        cert: String,
        key: String,
        reason: String,
    },
}

/// The text of a PEM reading error, without the I/O error's repeated `Display`.
fn pem_reason(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Builds the TLS acceptor of the HTTP listener from a PEM certificate chain (leaf first) and
/// its PEM private key (PKCS#8, PKCS#1 or SEC1). Fails when either file is unreadable or holds
/// no usable item, or when the key is not the certificate's.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let cert_path = cert.display().to_string();
    let key_path = key.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsSetupError::Cert {
            path: cert_path.clone(),
            reason: pem_reason(error),
        })?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCert { path: cert_path });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsSetupError::NoKey {
            path: key_path.clone(),
        },
        other => TlsSetupError::Key {
            path: key_path.clone(),
            reason: pem_reason(other),
        },
    })?;
    // The provider is named rather than taken from the process default, because the test
    // dependencies may enable a second rustls provider in the same build.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mismatch = |error| match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsSetupError::Mismatch {
                cert: cert_path.clone(),
                key: key_path.clone(),
            }
        }
        other => TlsSetupError::Unusable {
            cert: cert_path.clone(),
            key: key_path.clone(),
            reason: other.to_string(),
        },
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` and serves each on the current glommio executor, accepting
/// any well-formed SigV4 authentication. Returns only when the listener fails with an error that
/// retrying cannot fix.
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "the binary always passes options")
)]
pub async fn serve<A: KinesisApi + Clone + 'static, R: RecordLog>(
    listener: glommio::net::TcpListener,
    api: A,
    fan_out: EnhancedFanOut<R>,
) {
    serve_with(listener, api, fan_out, ServeOptions::default()).await;
}

/// [`serve`] with explicit options (signature verification). SubscribeToShard reads records
/// through `fan_out`.
pub async fn serve_with<A: KinesisApi + Clone + 'static, R: RecordLog>(
    listener: glommio::net::TcpListener,
    api: A,
    fan_out: EnhancedFanOut<R>,
    options: ServeOptions,
) {
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
        // Counted here, before the next accept, so the limit holds however fast clients come.
        let open = match &options.admission {
            None => None,
            Some(admission) => match admission.open_connection() {
                Some(open) => Some(open),
                None => {
                    glommio::spawn_local(refuse_connection(stream)).detach();
                    continue;
                }
            },
        };
        let api = api.clone();
        let fan_out = fan_out.clone();
        let options = options.clone();
        glommio::spawn_local(async move {
            let _open = open;
            serve_connection(stream, api, fan_out, options).await;
        })
        .detach();
    }
}

/// Answers a connection beyond the limit with a 503 and closes it, without reading its request.
async fn refuse_connection(mut stream: glommio::net::TcpStream) {
    use futures_lite::AsyncWriteExt as _;
    let body =
        format!(r#"{{"__type":"ServiceUnavailableException","message":"{BUSY_CONNECTIONS}"}}"#);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/x-amz-json-1.1\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = stream.write_all(response.as_bytes());
    let timeout = glommio::timer::sleep(Duration::from_secs(1));
    let _ = futures_lite::future::or(async { write.await.is_ok() }, async {
        timeout.await;
        false
    })
    .await;
    let _ = stream.close().await;
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

async fn serve_connection<A: KinesisApi + Clone + 'static, R: RecordLog>(
    stream: glommio::net::TcpStream,
    api: A,
    fan_out: EnhancedFanOut<R>,
    options: ServeOptions,
) {
    let activity = Activity::default();
    let stream = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    let serve = serve_watched(stream, api, fan_out, options.clone(), activity.clone());
    if options.idle_timeout.is_none() && options.header_timeout.is_none() {
        return serve.await;
    }
    let watchdog = activity.stalled(options.idle_timeout, options.header_timeout);
    futures_lite::future::or(serve, watchdog).await
}

/// What the watchdog of one connection knows: when it last moved a byte, how many of its
/// requests are being handled, and since when it has received bytes that began no request yet.
#[derive(Clone)]
struct Activity(Rc<ActivityCells>);

struct ActivityCells {
    last_byte: Cell<Instant>,
    in_flight: Cell<usize>,
    /// Set by the first byte received while no request is being handled and nothing was sent
    /// since; cleared when a request begins or a byte is sent (an HTTP/2 PING's answer).
    unanswered_since: Cell<Option<Instant>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self(Rc::new(ActivityCells {
            last_byte: Cell::new(Instant::now()),
            in_flight: Cell::new(0),
            unanswered_since: Cell::new(None),
        }))
    }
}

impl Activity {
    fn received(&self) {
        let now = Instant::now();
        self.0.last_byte.set(now);
        if self.0.in_flight.get() == 0 && self.0.unanswered_since.get().is_none() {
            self.0.unanswered_since.set(Some(now));
        }
    }

    fn sent(&self) {
        self.0.last_byte.set(Instant::now());
        self.0.unanswered_since.set(None);
    }

    /// Resolves once the connection is idle or stalled:
    /// - idle: it moved no byte for `idle` while no request of it was being handled (a request
    ///   waiting for budget or for the engine is not idleness);
    /// - stalled in its headers: it received bytes that began no request, and sent nothing,
    ///   for `header` (a slowloris client trickling one header byte at a time).
    ///
    /// Checked at a tenth of the shorter timeout, so a connection is closed within 1.1 × its
    /// timeout.
    async fn stalled(&self, idle: Option<Duration>, header: Option<Duration>) {
        let tick = match (idle, header) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return futures_lite::future::pending().await,
        } / 10;
        loop {
            glommio::timer::sleep(tick).await;
            let cells = &*self.0;
            if cells.in_flight.get() > 0 {
                continue;
            }
            if idle.is_some_and(|idle| cells.last_byte.get().elapsed() >= idle) {
                tracing::debug!("Closing an idle connection.");
                return;
            }
            let stalled = cells.unanswered_since.get().map(|since| since.elapsed());
            if let (Some(header), Some(stalled)) = (header, stalled)
                && stalled >= header
            {
                tracing::debug!(
                    "Closing a connection whose request headers did not arrive in time."
                );
                return;
            }
        }
    }
}

/// Counts one request of a connection as being handled while it lives.
struct HandlingRequest(Activity);

impl HandlingRequest {
    fn new(activity: &Activity) -> Self {
        let cells = &activity.0;
        cells.in_flight.set(cells.in_flight.get() + 1);
        cells.unanswered_since.set(None);
        Self(activity.clone())
    }
}

impl Drop for HandlingRequest {
    fn drop(&mut self) {
        let cells = &self.0.0;
        cells.in_flight.set(cells.in_flight.get() - 1);
        cells.last_byte.set(Instant::now());
    }
}

/// A socket that records when it last moved a byte (see [`Activity`]).
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: futures_lite::AsyncRead + Unpin> futures_lite::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.received();
        }
        polled
    }
}

impl<S: futures_lite::AsyncWrite + Unpin> futures_lite::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.sent();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

async fn serve_watched<A: KinesisApi + Clone + 'static, R: RecordLog>(
    stream: Watched<glommio::net::TcpStream>,
    api: A,
    fan_out: EnhancedFanOut<R>,
    options: ServeOptions,
    activity: Activity,
) {
    let Some(acceptor) = options.tls.clone() else {
        serve_http(
            TokioIo::new(stream.compat()),
            Protocol::Detect,
            api,
            fan_out,
            options,
            activity,
        )
        .await;
        return;
    };
    let handshake = acceptor.accept(stream.compat());
    let timeout = async {
        glommio::timer::sleep(TLS_HANDSHAKE_TIMEOUT).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the TLS handshake took too long",
        ))
    };
    let tls = match futures_lite::future::or(handshake, timeout).await {
        Ok(tls) => tls,
        Err(error) => {
            // Cleartext clients, scanners and clients that distrust the certificate end here.
            tracing::debug!(%error, "TLS handshake failed.");
            return;
        }
    };
    let protocol = match tls.get_ref().1.alpn_protocol() {
        Some(ALPN_H2) => Protocol::Http2,
        Some(ALPN_HTTP11) => Protocol::Http1,
        _ => Protocol::Detect,
    };
    serve_http(TokioIo::new(tls), protocol, api, fan_out, options, activity).await;
}

/// Which HTTP version a connection speaks: fixed by ALPN, or detected from the first bytes
/// (HTTP/2 prior knowledge starts with the connection preface).
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Detect,
    Http1,
    Http2,
}

async fn serve_http<A, R, I>(
    io: I,
    protocol: Protocol,
    api: A,
    fan_out: EnhancedFanOut<R>,
    options: ServeOptions,
    activity: Activity,
) where
    A: KinesisApi + Clone + 'static,
    R: RecordLog,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let api = api.clone();
        let fan_out = fan_out.clone();
        let options = options.clone();
        let handling = HandlingRequest::new(&activity);
        async move {
            let response = respond(&api, &fan_out, &options, request).await;
            drop(handling);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = Builder::new(GlommioExec);
    builder
        .http1()
        .max_buf_size(CONNECTION_READ_BUFFER_BYTES_MAX);
    let builder = match protocol {
        Protocol::Detect => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    if let Err(error) = builder.serve_connection(io, service).await {
        // Clients reset connections all the time; that is not worth more than a debug line.
        tracing::debug!(%error, "HTTP connection ended with an error.");
    }
}

/// A response body: a whole buffer, or the frames of a SubscribeToShard event stream, sent as
/// they are produced (chunked on HTTP/1.1, DATA frames on HTTP/2).
pub enum ResponseBody<S> {
    Full(Full<Bytes>),
    Events(EventBody<S>),
    /// A body produced as it is sent (PutMedia's acknowledgements, GetMedia's chunks).
    Stream(Pin<Box<dyn futures_lite::Stream<Item = Bytes>>>),
    /// A whole answer that keeps its request's budget until it has been sent (or the client went
    /// away): hyper drops the body then.
    Admitted(
        Full<Bytes>,
        #[expect(
            dead_code,
            reason = "held, never read: dropping it gives the budget back"
        )]
        BudgetPermit,
    ),
}

impl<S> From<Full<Bytes>> for ResponseBody<S> {
    fn from(body: Full<Bytes>) -> Self {
        Self::Full(body)
    }
}

impl<S: Subscription + 'static> Body for ResponseBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(full) | Self::Admitted(full, _) => Pin::new(full).poll_frame(cx),
            Self::Events(events) => Pin::new(events).poll_frame(cx),
            Self::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) | Self::Admitted(full, _) => full.is_end_stream(),
            Self::Events(events) => events.is_end_stream(),
            Self::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) | Self::Admitted(full, _) => full.size_hint(),
            Self::Events(_) | Self::Stream(_) => SizeHint::default(),
        }
    }
}

/// The frame being produced: the stream moves into the future that awaits its next frame and
/// comes back with it, so the body needs no self-reference.
type NextFrame<S> = Pin<Box<dyn Future<Output = (EventStream<S>, Option<Vec<u8>>)>>>;

enum EventBodyState<S> {
    Idle(Box<EventStream<S>>),
    Waiting(NextFrame<S>),
    Done,
}

/// A streaming body over an [`EventStream`]. Dropping it (the client went away) drops the
/// subscription at once, wherever it was waiting.
pub struct EventBody<S> {
    state: EventBodyState<S>,
}

impl<S: Subscription + 'static> EventBody<S> {
    pub fn new(events: EventStream<S>) -> Self {
        Self {
            state: EventBodyState::Idle(Box::new(events)),
        }
    }
}

impl<S: Subscription + 'static> Body for EventBody<S> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, EventBodyState::Done) {
                EventBodyState::Done => return Poll::Ready(None),
                EventBodyState::Idle(events) => {
                    let mut events = *events;
                    this.state = EventBodyState::Waiting(Box::pin(async move {
                        let frame = events.next_frame().await;
                        (events, frame)
                    }));
                }
                EventBodyState::Waiting(mut next) => match next.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.state = EventBodyState::Waiting(next);
                        return Poll::Pending;
                    }
                    Poll::Ready((events, Some(frame))) => {
                        this.state = EventBodyState::Idle(Box::new(events));
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))));
                    }
                    Poll::Ready((_, None)) => return Poll::Ready(None),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, EventBodyState::Done)
    }
}

fn plain<S>(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody<S>> {
    let mut response = Response::new(ResponseBody::Full(Full::new(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

fn too_large<S>() -> Response<ResponseBody<S>> {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", Bytes::new())
}

/// Copies a protocols reply's status and headers onto `response`.
fn apply_head<B>(
    response: &mut Response<B>,
    status: u16,
    reply_headers: Vec<(&'static str, String)>,
) {
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in reply_headers {
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
}

/// What `GET /health` answers: 200 with `json`, or 503 with it when the server is degraded
/// (a log poisoned or out of disk space), so a load balancer can steer writes away.
#[derive(Clone, Debug)]
pub struct HealthReport {
    pub degraded: bool,
    pub json: String,
}

/// One request: `GET /health`, `GET /metrics`, or a Kinesis call.
async fn respond<A: KinesisApi + Clone + 'static, R: RecordLog>(
    api: &A,
    fan_out: &EnhancedFanOut<R>,
    options: &ServeOptions,
    request: Request<Incoming>,
) -> Response<ResponseBody<FanOutSubscription<A, R>>> {
    let auth = &*options.auth;
    if request.method() == hyper::Method::GET && request.uri().path() == "/health" {
        return match &options.health {
            Some(render) => {
                let report = render();
                let status = if report.degraded {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                plain(status, "application/json", report.json)
            }
            None => plain(
                StatusCode::OK,
                "application/json",
                &br#"{"status":"ok"}"#[..],
            ),
        };
    }
    if request.method() == hyper::Method::GET && request.uri().path() == "/metrics" {
        return match &options.metrics {
            Some(render) => plain(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                render(),
            ),
            None => plain(StatusCode::NOT_FOUND, "text/plain", Bytes::new()),
        };
    }
    if let Some(video) = &options.video
        && sluice_video::service::is_video_path(request.uri().path())
    {
        return respond_video(api, video, auth, request).await;
    }

    let declared_length = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > REQUEST_BODY_BYTES_MAX as u64) {
        return too_large();
    }

    // Admission: wait for budget before reading the body, so a flood of requests holds their
    // bodies in the sockets (TCP backpressure) rather than in memory. A GetRecords also
    // reserves room for its answer, and is capped to what it reserved.
    let (mut permit, limits, request) = match &options.admission {
        None => (None, ReplyLimits::default(), request),
        Some(admission) => {
            let mut charge =
                request_charge(declared_length.unwrap_or(REQUEST_BODY_BYTES_MAX as u64));
            let mut limits = ReplyLimits::default();
            let target = request.headers().get("x-amz-target");
            if target.is_some_and(|t| t.as_bytes() == GET_RECORDS_TARGET.as_bytes()) {
                let reservation = get_records_reservation(admission.budget.bytes_max());
                charge = charge.saturating_add(reservation.charge);
                limits = ReplyLimits {
                    get_records_bytes_max: Some(reservation.bytes_max),
                    get_records_records_max: Some(reservation.records_max),
                };
            }
            let deadline = glommio::timer::sleep(admission.queue_timeout);
            match admission.admit(charge, deadline).await {
                Some(permit) => (Some(permit), limits, request),
                None => {
                    // Read the body and drop it chunk by chunk (no memory held) so that hyper
                    // can keep the connection: the client retries on it instead of reconnecting.
                    let mut body = Limited::new(request.into_body(), REQUEST_BODY_BYTES_MAX);
                    while let Some(Ok(_)) = body.frame().await {}
                    return service_busy(BUSY_MEMORY);
                }
            }
        }
    };

    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };

    // Signature verification signs headers of the client's choosing, so it needs all of them.
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let all_headers = if auth.verifies() {
        signed_headers(&parts, authority.as_deref())
    } else {
        Vec::new()
    };
    let kinesis_request = wire_request(&parts, &all_headers, &body);
    if let Some(analytics) = &options.analytics
        && sluice_analytics::api::is_analytics_target(kinesis_request.target)
    {
        let reply = analytics
            .handle(kinesis_request, auth, SystemTime::now())
            .await;
        if let Some(permit) = &mut permit {
            permit.shrink_to(
                REQUEST_CHARGE_FLOOR_BYTES + body.len() as u64 + reply.body.len() as u64,
            );
        }
        let full = Full::new(Bytes::from(reply.body));
        let mut response = Response::new(match permit {
            Some(permit) => ResponseBody::Admitted(full, permit),
            None => ResponseBody::Full(full),
        });
        apply_head(&mut response, reply.status, reply.headers);
        return response;
    }
    if is_subscribe_to_shard(kinesis_request.target) {
        let reply =
            handle_subscribe_to_shard(api, fan_out, kinesis_request, auth, SystemTime::now()).await;
        return match reply {
            SubscribeReply::Complete(reply) => {
                let mut response =
                    Response::new(ResponseBody::Full(Full::new(Bytes::from(reply.body))));
                apply_head(&mut response, reply.status, reply.headers);
                response
            }
            SubscribeReply::Stream { head, events } => {
                let mut response = Response::new(ResponseBody::Events(EventBody::new(events)));
                apply_head(&mut response, head.status, head.headers);
                response
            }
        };
    }
    let reply = match &options.firehose {
        Some(firehose) if sluice_sinks::is_firehose_target(kinesis_request.target) => {
            firehose
                .handle(api, kinesis_request, auth, SystemTime::now())
                .await
        }
        _ => handle_kinesis_within(api, kinesis_request, auth, SystemTime::now(), limits).await,
    };
    // What the request still holds: its body and its answer (a reservation for a read, or the
    // room for decoding a body, is given back now).
    if let Some(permit) = &mut permit {
        permit.shrink_to(REQUEST_CHARGE_FLOOR_BYTES + body.len() as u64 + reply.body.len() as u64);
    }
    let full = Full::new(Bytes::from(reply.body));
    let mut response = Response::new(match permit {
        Some(permit) => ResponseBody::Admitted(full, permit),
        None => ResponseBody::Full(full),
    });
    apply_head(&mut response, reply.status, reply.headers);
    response
}

/// A request's whole body, at most the API's request size: 413 beyond it, 400 when the
/// connection fails while it is read.
async fn read_body<S>(body: Incoming) -> Result<Bytes, Response<ResponseBody<S>>> {
    match Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => {
            tracing::debug!(%error, "Reading a request body failed.");
            Err(plain(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()))
        }
    }
}

/// Every request header as received (SigV4 signs headers of the client's choosing), plus `host`
/// from the URI's authority when the header is absent: HTTP/2 carries the host in
/// `:authority`, which hyper keeps in the URI, and SDKs sign it as `host`.
fn signed_headers<'a>(
    parts: &'a hyper::http::request::Parts,
    authority: Option<&'a str>,
) -> Vec<(&'a str, &'a [u8])> {
    let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(parts.headers.len() + 1);
    headers.extend(
        parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    if !parts.headers.contains_key(hyper::header::HOST)
        && let Some(authority) = authority
    {
        headers.push(("host", authority.as_bytes()));
    }
    headers
}

/// The protocol handlers' view of a request: its head, `headers` (see [`signed_headers`]; may be
/// empty when no signature is checked) and its whole `body`.
fn wire_request<'a>(
    parts: &'a hyper::http::request::Parts,
    headers: &'a [(&'a str, &'a [u8])],
    body: &'a [u8],
) -> HttpRequest<'a> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let has_query_auth = parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("X-Amz-Algorithm"))
    });
    HttpRequest {
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
        headers,
        body,
    }
}

/// A Kinesis Video Streams request. Its memory is bounded without the admission budget: a
/// PutMedia body is read as it arrives (at most one fragment held), other bodies are capped at
/// the API's request size, and long answers stream one fragment at a time.
async fn respond_video<A: KinesisApi, S>(
    api: &A,
    video: &sluice_video::service::VideoService<sluice_io::storage::StorageHandle>,
    auth: &AuthConfig,
    request: Request<Incoming>,
) -> Response<ResponseBody<S>> {
    use futures_lite::StreamExt as _;

    let (parts, body) = request.into_parts();
    // PutMedia's headers are read by the service whatever the auth mode.
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let all_headers = signed_headers(&parts, authority.as_deref());
    let reply = if sluice_video::service::is_put_media(parts.uri.path()) {
        let upload = http_body_util::BodyStream::new(body).filter_map(|frame| match frame {
            Ok(frame) => frame.into_data().ok().map(Ok),
            Err(error) => Some(Err(error.to_string())),
        });
        let start = video
            .put_media(
                api,
                &wire_request(&parts, &all_headers, &[]),
                auth,
                SystemTime::now(),
                Box::pin(upload),
            )
            .await;
        if let Some(ingest) = start.ingest {
            glommio::spawn_local(ingest).detach();
        }
        start.response
    } else {
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        video
            .handle(
                api,
                wire_request(&parts, &all_headers, &body),
                auth,
                SystemTime::now(),
            )
            .await
    };
    let mut response = Response::new(match reply.body {
        sluice_video::service::VideoBody::Full(body) => {
            ResponseBody::Full(Full::new(Bytes::from(body)))
        }
        sluice_video::service::VideoBody::Stream(stream) => ResponseBody::Stream(stream),
    });
    apply_head(&mut response, reply.status, reply.headers);
    response
}

#[cfg(test)]
mod tests {
    //! Serves the in-memory model of `sluice_protocols::model` on a glommio executor and talks to
    //! it over loopback with HTTP/1.1 and h2c prior knowledge, as boto3 and the JS SDK v3 do.

    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
    use sluice_protocols::model::Model;

    use super::*;

    /// The shared in-memory model holding one stream, `only`. Like the engine handle the real
    /// server passes, it is `Clone` (clones share state) and not `Send`.
    fn one_stream() -> Model {
        Model::with_stream("only", 1)
    }

    /// Enhanced fan-out on `model`'s records, with a lease table of its own.
    fn fan_out(model: &Model) -> EnhancedFanOut<sluice_protocols::model::ModelLog> {
        EnhancedFanOut::new(
            model.log(),
            sluice_protocols::kinesis::efo::SubscriptionLeases::default(),
        )
    }

    /// ListStreams as the model answers it: the one stream, created at the model's fixed clock.
    const LIST_STREAMS_BODY: &str = r#"{"StreamNames":["only"],"HasMoreStreams":false,"StreamSummaries":[{"StreamName":"only","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/only","StreamStatus":"ACTIVE","StreamModeDetails":{"StreamMode":"PROVISIONED"},"StreamCreationTimestamp":1704164645.678}]}"#;

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
                let model = one_stream();
                let server = glommio::spawn_local(serve(listener, model.clone(), fan_out(&model)));
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

    // -----------------------------------------------------------------------------------------
    // SigV4 verification through the real HTTP stack, with requests signed by AWS's own signer
    // and by the real aws-sdk-kinesis client.

    mod sigv4 {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::{AtomicBool, Ordering};

        use aws_credential_types::Credentials;
        use aws_sigv4::http_request::{
            SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
        };
        use aws_smithy_runtime_api::client::identity::Identity;

        use super::*;

        const KEY: &str = "AKIDHTTPTEST";
        const SECRET: &str = "http-test-secret";
        const LIST_STREAMS: &[u8] = b"{}";

        /// A server verifying signatures, on its own executor thread until dropped.
        struct Running {
            addr: std::net::SocketAddr,
            stop: Arc<AtomicBool>,
            thread: Option<glommio::ExecutorJoinHandle<()>>,
        }

        impl Drop for Running {
            fn drop(&mut self) {
                self.stop.store(true, Ordering::SeqCst);
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
            }
        }

        fn start_verifying() -> Running {
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::channel();
            let stop_flag = stop.clone();
            let thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .io_memory(1 << 20)
                .spawn(move || async move {
                    let listener = glommio::net::TcpListener::bind("127.0.0.1:0")
                        .expect("loopback bind works");
                    tx.send(listener.local_addr().expect("bound"))
                        .expect("test waits for the address");
                    let options = ServeOptions {
                        auth: Arc::new(AuthConfig::verify([(KEY, SECRET)])),
                        ..ServeOptions::default()
                    };
                    let model = one_stream();
                    let server = glommio::spawn_local(serve_with(
                        listener,
                        model.clone(),
                        fan_out(&model),
                        options,
                    ));
                    while !stop_flag.load(Ordering::SeqCst) {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    drop(server.cancel());
                })
                .expect("executor starts");
            let addr = rx.recv().expect("server reports its address");
            Running {
                addr,
                stop,
                thread: Some(thread),
            }
        }

        /// A ListStreams request signed by aws-sigv4 as of `at`: its path and query, and its
        /// headers.
        fn signed_list_streams(
            addr: std::net::SocketAddr,
            secret: &str,
            location: SignatureLocation,
            at: SystemTime,
        ) -> (String, Vec<(String, String)>) {
            let identity: Identity = Credentials::new(KEY, secret, None, None, "test").into();
            let mut settings = SigningSettings::default();
            settings.signature_location = location;
            if location == SignatureLocation::QueryParams {
                settings.expires_in = Some(Duration::from_secs(300));
            }
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("kinesis")
                .time(at)
                .settings(settings)
                .build()
                .expect("complete signing params")
                .into();
            let host = addr.to_string();
            let base = vec![
                ("host".to_owned(), host.clone()),
                (
                    "content-type".to_owned(),
                    "application/x-amz-json-1.1".to_owned(),
                ),
                (
                    "x-amz-target".to_owned(),
                    "Kinesis_20131202.ListStreams".to_owned(),
                ),
            ];
            let uri = format!("http://{host}/");
            let signable = SignableRequest::new(
                "POST",
                uri.as_str(),
                base.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                SignableBody::Bytes(LIST_STREAMS),
            )
            .expect("signable");
            let (instructions, _) = sign(signable, &params).expect("signs").into_parts();
            let mut request = http::Request::builder()
                .method("POST")
                .uri(uri.as_str())
                .body(())
                .expect("valid request");
            for (n, v) in &base {
                request.headers_mut().insert(
                    http::HeaderName::from_bytes(n.as_bytes()).expect("valid name"),
                    v.parse().expect("valid value"),
                );
            }
            instructions.apply_to_request_http1x(&mut request);
            let path = request
                .uri()
                .path_and_query()
                .expect("has a path")
                .to_string();
            let headers = request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().expect("ASCII").to_owned()))
                .collect();
            (path, headers)
        }

        /// Sends an HTTP/1.1 request with blocking std sockets; returns status line and body.
        fn exchange(
            addr: std::net::SocketAddr,
            path: &str,
            headers: &[(String, String)],
            body: &[u8],
        ) -> (String, String) {
            let mut stream = std::net::TcpStream::connect(addr).expect("connects");
            let mut head = format!("POST {path} HTTP/1.1\r\nConnection: close\r\n");
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            stream.write_all(head.as_bytes()).expect("head written");
            stream.write_all(body).expect("body written");
            let mut response = String::new();
            stream.read_to_string(&mut response).expect("response read");
            let status = response.lines().next().unwrap_or("").to_owned();
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            (status, body)
        }

        fn error_type_and_message(body: &str) -> (String, String) {
            let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
            (
                v["__type"].as_str().unwrap_or("").to_owned(),
                v["message"].as_str().unwrap_or("").to_owned(),
            )
        }

        #[test]
        fn correctly_signed_header_and_presigned_requests_pass() {
            let server = start_verifying();
            for location in [SignatureLocation::Headers, SignatureLocation::QueryParams] {
                let (path, headers) =
                    signed_list_streams(server.addr, SECRET, location, SystemTime::now());
                let (status, body) = exchange(server.addr, &path, &headers, LIST_STREAMS);
                assert_eq!(status, "HTTP/1.1 200 OK", "{location:?}: {body}");
                assert_eq!(body, LIST_STREAMS_BODY, "{location:?}");
            }
        }

        #[test]
        fn a_wrong_secret_a_stale_date_and_a_tampered_body_are_each_refused() {
            let server = start_verifying();
            let (path, headers) = signed_list_streams(
                server.addr,
                "not-the-secret",
                SignatureLocation::Headers,
                SystemTime::now(),
            );
            let (status, body) = exchange(server.addr, &path, &headers, LIST_STREAMS);
            assert!(status.starts_with("HTTP/1.1 400"), "{status}");
            assert_eq!(
                error_type_and_message(&body),
                (
                    "InvalidSignatureException".to_owned(),
                    sluice_protocols::sigv4::SIGNATURE_MISMATCH.to_owned()
                )
            );

            let stale = SystemTime::now() - Duration::from_secs(20 * 60);
            let (path, headers) =
                signed_list_streams(server.addr, SECRET, SignatureLocation::Headers, stale);
            let (status, body) = exchange(server.addr, &path, &headers, LIST_STREAMS);
            assert!(status.starts_with("HTTP/1.1 400"), "{status}");
            let (kind, message) = error_type_and_message(&body);
            assert_eq!(kind, "InvalidSignatureException");
            assert!(message.starts_with("Signature expired: "), "{message}");
            assert!(message.ends_with(" - 15 min.)"), "{message}");

            let (path, headers) = signed_list_streams(
                server.addr,
                SECRET,
                SignatureLocation::Headers,
                SystemTime::now(),
            );
            let (status, body) = exchange(server.addr, &path, &headers, b"{ }");
            assert!(status.starts_with("HTTP/1.1 400"), "{status}");
            assert_eq!(
                error_type_and_message(&body).0,
                "InvalidSignatureException",
                "{body}"
            );
        }

        #[test]
        fn the_real_sdk_passes_with_the_right_secret_and_is_refused_otherwise() {
            use aws_sdk_kinesis::error::ProvideErrorMetadata as _;

            let server = start_verifying();
            let endpoint = format!("http://{}", server.addr);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async {
                let client = |key: &str, secret: &str| {
                    let config = aws_sdk_kinesis::Config::builder()
                        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                        .endpoint_url(endpoint.clone())
                        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                            key, secret, None, None, "test",
                        ))
                        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
                        .build();
                    aws_sdk_kinesis::Client::from_conf(config)
                };
                let listed = client(KEY, SECRET)
                    .list_streams()
                    .send()
                    .await
                    .expect("the right secret passes");
                assert_eq!(listed.stream_names(), ["only"]);

                let error = client(KEY, "wrong")
                    .list_streams()
                    .send()
                    .await
                    .expect_err("a wrong secret is refused");
                assert_eq!(error.code(), Some("InvalidSignatureException"));
                assert_eq!(
                    error.message(),
                    Some(sluice_protocols::sigv4::SIGNATURE_MISMATCH)
                );

                let error = client("AKIDUNKNOWN", SECRET)
                    .list_streams()
                    .send()
                    .await
                    .expect_err("an unknown key is refused");
                assert_eq!(error.code(), Some("UnrecognizedClientException"));
                assert_eq!(
                    error.message(),
                    Some("The security token included in the request is invalid.")
                );
            });
        }

        #[test]
        fn h2c_requests_verify_with_the_host_taken_from_the_authority() {
            let server = start_verifying();
            let (path, headers) = signed_list_streams(
                server.addr,
                SECRET,
                SignatureLocation::Headers,
                SystemTime::now(),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let (status, body) = runtime.block_on(async {
                let stream = tokio::net::TcpStream::connect(server.addr)
                    .await
                    .expect("connects");
                let (mut sender, connection) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    TokioIo::new(stream),
                )
                .await
                .expect("h2c handshake");
                tokio::spawn(connection);
                let mut request = Request::post(format!("http://{}{path}", server.addr));
                for (n, v) in &headers {
                    // HTTP/2 sends the host as :authority (from the URI), not as a header.
                    if n != "host" {
                        request = request.header(n.as_str(), v.as_str());
                    }
                }
                let request = request
                    .body(Full::new(Bytes::from_static(LIST_STREAMS)))
                    .expect("valid request");
                let response = sender.send_request(request).await.expect("response");
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                (status, body)
            });
            assert_eq!(status, StatusCode::OK, "{body:?}");
            assert_eq!(body, LIST_STREAMS_BODY.as_bytes());
        }
    }
}
