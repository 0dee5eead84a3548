//! The binary-protocol front end on one glommio executor (`docs/binary-protocol.md`).
//!
//! Every core accepts on the shared port (SO_REUSEPORT spreads connections over the cores) and
//! on a port of its own, which the server hello publishes so that a shard-aware client talks to
//! the core owning each shard. A request about a shard another core owns is forwarded by the
//! engine, so a plain client on the shared port works too.
//!
//! One connection is a read loop, a writer task and one task per request or subscription:
//! - The read loop decodes frames, answers the cheap ones (Ping, Credit, Unsubscribe) inline
//!   and spawns a task for every other request, so requests run concurrently and may be
//!   answered out of order. A fatal decode error (no frame boundary left) closes the
//!   connection; any other bad frame is answered by its request id and skipped.
//! - Every answer and push is encoded straight into the connection's [`Outbox`], one buffer
//!   that the writer task sends with one write per burst. Nothing is written to the socket
//!   anywhere else, so frames never interleave.
//! - A subscription task reads while its credit balance is positive (one credit is one record)
//!   and otherwise waits for a Credit frame. Its reads wait on the owning core for the commit
//!   that stores the next record (`Engine::read_wait`); nothing polls.
//!
//! Invariants:
//! - Nothing is served before the handshake is done (the hello and, when the server verifies
//!   credentials, an Auth that passes), and a connection whose handshake fails is closed.
//! - A subscription's SubscribeOk precedes its first push, and no push follows its
//!   UnsubscribeOk or SubscriptionEnded: both are written by code that runs without an await
//!   between checking the subscription's state and appending to the outbox.
//! - The outbox holds at most about [`OUTBOX_BYTES_MAX`] unsent bytes: the read loop stops
//!   reading requests, and subscriptions stop reading records, while it is fuller.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use sluice_core::api::{
    CreateStreamInput, DescribeStreamInput, ListStreamsInput, PutRecordsEntry, PutRecordsInput,
    RecordBatch as _, StreamStatus,
};
use sluice_core::shard_id::format_shard_id;
use sluice_core::{KinesisApi as _, KinesisError, SequenceNumber, api, limits as kinesis_limits};
use sluice_io::engine::{Engine, ReadStart, ShardCursor, ShardRead};
use sluice_protocols::auth::AuthConfig;
use sluice_protocols::binary::auth as binary_auth;
use sluice_protocols::binary::convert::wire_stream_description;
use sluice_protocols::binary::limits::{
    AUTH_VERSION_MIN, PROTOCOL_VERSIONS, READ_BYTES_MAX, READ_RECORDS_MAX, SERVER_NONCE_BYTES,
    SUBSCRIPTION_CREDITS_MAX,
};
use sluice_protocols::binary::{
    Body, DecodeError, Frame, FrameDecoder, Opcode, RecordsWriter, StatusCode, WireAuthChallenge,
    WireError, WirePutBatch, WirePutBatchResult, WireRead, WireRoute, WireServerHello,
    WireShardMap, WireShardMapEntry, WireStartPosition, WireStatus, WireStreamList, WireSubscribe,
    WireSubscriptionEnded, encode_frame,
};
use sluice_protocols::kinesis::enforce;

// A record of the largest size the Kinesis limits allow always fits one records frame, so a
// read or push always makes progress.
const _: () = assert!(
    sluice_core::control::MAX_RECORD_SIZE_KIB_MAX as usize * 1024 + 1024
        < sluice_protocols::binary::limits::FRAME_BYTES_MAX
);

/// Unsent bytes a connection may queue before it stops taking requests and pushing records.
const OUTBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// How long one wait of a subscription for new records lasts. When it passes the subscription
/// checks the catalog again (a deleted stream ends it) and waits anew; it is not a polling
/// interval, as records wake the wait the moment they commit.
const SUBSCRIPTION_WAIT: Duration = Duration::from_secs(1);
/// How long a CreateStream waits for its stream to become ACTIVE.
const CREATE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a CreateStream checks whether its stream left CREATING (only when the server is
/// configured with a create delay).
const CREATE_ACTIVE_CHECK: Duration = Duration::from_millis(5);
/// How long the accept loop waits before retrying after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// The per-core ports of the binary protocol, filled in by each core as it binds, and read by
/// every core for its server hellos.
#[derive(Debug)]
pub struct CorePorts {
    ports: Mutex<Vec<u16>>,
}

impl CorePorts {
    pub fn new(cores: usize) -> Self {
        Self {
            ports: Mutex::new(vec![0; cores]),
        }
    }

    pub fn set(&self, core_id: usize, port: u16) {
        // A panic cannot leave a Vec<u16> half-written.
        let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        ports[core_id] = port;
    }

    pub fn get(&self) -> Vec<u16> {
        self.ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Serves the binary protocol on this core: on the shared listener (if any) and on the core's
/// own listener. Returns when both listeners failed for good. `auth` is the listener's rule
/// (`AuthConfig::for_listener`): with credentials every connection authenticates before it is
/// served.
pub async fn serve(
    shared: Option<glommio::net::TcpListener>,
    own: glommio::net::TcpListener,
    engine: Engine,
    ports: Arc<CorePorts>,
    auth: Arc<AuthConfig>,
) {
    let front = Front {
        engine,
        ports,
        auth,
    };
    let own_task = glommio::spawn_local(accept_loop(own, front.clone()));
    if let Some(shared) = shared {
        accept_loop(shared, front).await;
    }
    own_task.await;
}

/// What every connection of this core's binary front end shares.
#[derive(Clone)]
struct Front {
    engine: Engine,
    ports: Arc<CorePorts>,
    auth: Arc<AuthConfig>,
}

async fn accept_loop(listener: glommio::net::TcpListener, front: Front) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) if accept_error_is_transient(&error) => {
                tracing::warn!(%error, "Accepting a binary connection failed; retrying.");
                glommio::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "A binary listener failed; this core stops accepting on it.");
                return;
            }
        };
        // Answers are coalesced in the outbox, so Nagle's delay would only add latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "Could not set TCP_NODELAY.");
        }
        glommio::spawn_local(serve_connection(stream, front.clone())).detach();
    }
}

fn accept_error_is_transient(error: &glommio::GlommioError<()>) -> bool {
    match error {
        glommio::GlommioError::IoError(e) => matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ECONNABORTED)
        ),
        _ => false,
    }
}

/// A single-threaded notification: [`Event::wait`] completes after the next
/// [`Event::notify`]. Callers check their condition, then wait, in one poll, so no
/// notification is lost between the two.
#[derive(Default)]
struct Event {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Event {
    fn notify(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        let start = self.generation.get();
        std::future::poll_fn(move |cx| {
            if self.generation.get() != start {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            // A task polled again without being notified (it waits on several things at once)
            // is registered once, so the list stays as long as the number of waiting tasks.
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Frames waiting for the writer task.
#[derive(Default)]
struct Outbox {
    buf: RefCell<Vec<u8>>,
    closed: Cell<bool>,
    /// Bytes were queued or the outbox closed: wakes the writer.
    queued: Event,
    /// The writer took the queued bytes, or the outbox closed: wakes producers waiting for room.
    drained: Event,
}

impl Outbox {
    fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Appends `frame`. A frame the codec cannot encode (a string past the wire's limit) is
    /// answered with InternalFailure instead, so the peer is never left without an answer.
    fn push(&self, frame: &Frame<'_>) {
        if self.closed.get() {
            return;
        }
        let encoded = encode_frame(frame, &mut self.buf.borrow_mut());
        if let Err(error) = encoded {
            tracing::warn!(%error, request_id = frame.request_id, "An answer could not be encoded.");
            let message = format!("The answer could not be encoded: {error}");
            let opcode = frame.body.opcode_and_flags().0;
            let fallback = Frame {
                request_id: frame.request_id,
                body: Body::Error(WireError {
                    opcode,
                    status: StatusCode::InternalFailure.into(),
                    message: &message,
                }),
            };
            encode_frame(&fallback, &mut self.buf.borrow_mut())
                .expect("an error frame with a short message always encodes");
        }
        self.queued.notify();
    }

    /// Appends bytes a caller encodes itself (records frames), then wakes the writer.
    fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.closed.get() {
            return;
        }
        encode(&mut self.buf.borrow_mut());
        self.queued.notify();
    }

    fn close(&self) {
        self.closed.set(true);
        self.queued.notify();
        self.drained.notify();
    }

    /// Waits until the outbox has room (or is closed).
    async fn wait_room(&self) {
        loop {
            if self.closed.get() || self.buf.borrow().len() < OUTBOX_BYTES_MAX {
                return;
            }
            self.drained.wait().await;
        }
    }
}

/// Sends what the outbox queues, one write per burst, until the outbox is closed and empty.
async fn write_loop<W: futures_lite::AsyncWrite + Unpin>(mut socket: W, outbox: Rc<Outbox>) {
    let mut sending = Vec::new();
    loop {
        loop {
            if !outbox.buf.borrow().is_empty() {
                break;
            }
            if outbox.closed.get() {
                let _ = socket.close().await;
                return;
            }
            outbox.queued.wait().await;
        }
        std::mem::swap(&mut *outbox.buf.borrow_mut(), &mut sending);
        outbox.drained.notify();
        if let Err(error) = socket.write_all(&sending).await {
            tracing::debug!(%error, "A binary connection's write failed; closing it.");
            outbox.close();
            return;
        }
        sending.clear();
        // A burst of a huge push should not keep its memory for the connection's lifetime.
        if sending.capacity() > OUTBOX_BYTES_MAX {
            sending = Vec::new();
        }
    }
}

/// One open subscription's shared state.
#[derive(Default)]
struct Subscription {
    credits: Cell<u32>,
    cancelled: Cell<bool>,
    /// Credits were added or the subscription was cancelled.
    changed: Event,
}

impl Subscription {
    fn cancel(&self) {
        self.cancelled.set(true);
        self.changed.notify();
    }

    fn add_credits(&self, credits: u32) {
        // The balance never exceeds the protocol's cap; credits beyond it are dropped.
        let balance = self
            .credits
            .get()
            .saturating_add(credits)
            .min(SUBSCRIPTION_CREDITS_MAX);
        self.credits.set(balance);
        self.changed.notify();
    }

    async fn cancelled(&self) {
        while !self.cancelled.get() {
            self.changed.wait().await;
        }
    }
}

/// One client connection.
struct Connection {
    engine: Engine,
    outbox: Rc<Outbox>,
    subscriptions: RefCell<HashMap<u64, Rc<Subscription>>>,
}

impl Connection {
    fn respond(&self, request_id: u64, body: Body<'_>) {
        self.outbox.push(&Frame { request_id, body });
    }

    fn respond_error(&self, request_id: u64, opcode: u16, status: StatusCode, message: &str) {
        self.respond(
            request_id,
            Body::Error(WireError {
                opcode,
                status: status.into(),
                message,
            }),
        );
    }

    fn respond_kinesis_error(&self, request_id: u64, opcode: Opcode, error: &KinesisError) {
        self.respond(
            request_id,
            Body::Error(WireError::from_kinesis(opcode.code(), error)),
        );
    }

    /// Refuses a request about `stream_name` when the stream's resource policy denies any of
    /// the Kinesis actions `opcode` stands for (the check HTTP requests pass too).
    async fn check_policy(&self, opcode: Opcode, stream_name: &str) -> Result<(), KinesisError> {
        let arn = enforce::home_stream_arn(&self.engine, stream_name);
        enforce::check_actions(&self.engine, opcode.kinesis_actions(), &arn).await
    }

    /// Ends every subscription and closes the outbox; the writer sends what is queued.
    fn shutdown(&self) {
        for (_, subscription) in self.subscriptions.borrow_mut().drain() {
            subscription.cancel();
        }
        self.outbox.close();
    }
}

async fn serve_connection(stream: glommio::net::TcpStream, front: Front) {
    let (mut reader, writer) = futures_lite::io::split(stream);
    let connection = Rc::new(Connection {
        engine: front.engine.clone(),
        outbox: Rc::new(Outbox::default()),
        subscriptions: RefCell::new(HashMap::new()),
    });
    let writer = glommio::spawn_local(write_loop(writer, connection.outbox.clone()));
    read_loop(&mut reader, &connection, &front).await;
    connection.shutdown();
    writer.await;
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
}

/// Where a connection is in its handshake. Requests are served only in `Ready`.
enum Handshake {
    /// Nothing received yet: the first frame must be a hello.
    AwaitHello,
    /// The server verifies credentials and sent this challenge: the next frame must be an Auth
    /// that answers it.
    AwaitAuth {
        version: u16,
        server_nonce: [u8; SERVER_NONCE_BYTES],
    },
    Ready,
}

async fn read_loop<R: futures_lite::AsyncRead + Unpin>(
    reader: &mut R,
    connection: &Rc<Connection>,
    front: &Front,
) {
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut handshake = Handshake::AwaitHello;
    loop {
        loop {
            let next = match decoder.next_frame() {
                Ok(Some(frame)) => on_frame(connection, frame, &mut handshake, front),
                Ok(None) => break,
                Err(error) => on_decode_error(connection, &error, &handshake),
            };
            if let Next::Close = next {
                return;
            }
        }
        connection.outbox.wait_room().await;
        if connection.outbox.is_closed() {
            return;
        }
        match reader.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => decoder.push(&chunk[..n]),
            Err(error) => {
                tracing::debug!(%error, "A binary connection's read failed; closing it.");
                return;
            }
        }
    }
}

fn on_decode_error(connection: &Connection, error: &DecodeError, handshake: &Handshake) -> Next {
    let message = error.to_string();
    match (error.request_id(), error.opcode()) {
        (Some(request_id), Some(opcode)) => {
            // Before the handshake is done only its own frame is acceptable: a broken one is a
            // BadFrame, anything else is answered with what the handshake still needs. Either
            // way the connection ends.
            let (expected, missing) = match handshake {
                Handshake::Ready => {
                    connection.respond_error(request_id, opcode, error.status(), &message);
                    return Next::Continue;
                }
                Handshake::AwaitHello => (Opcode::Hello, StatusCode::HandshakeRequired),
                Handshake::AwaitAuth { .. } => (Opcode::Auth, StatusCode::AuthenticationRequired),
            };
            let status = if opcode == expected.code() {
                error.status()
            } else {
                missing
            };
            connection.respond_error(request_id, opcode, status, &message);
            Next::Close
        }
        _ => {
            // No frame boundary is left: say why with request id 0 and hang up.
            connection.respond_error(0, 0, error.status(), &message);
            Next::Close
        }
    }
}

fn on_frame(
    connection: &Rc<Connection>,
    frame: Frame<'_>,
    handshake: &mut Handshake,
    front: &Front,
) -> Next {
    let request_id = frame.request_id;
    match handshake {
        Handshake::AwaitHello => return on_hello(connection, frame, handshake, front),
        Handshake::AwaitAuth {
            version,
            server_nonce,
        } => {
            let Body::Auth(auth) = &frame.body else {
                connection.respond_error(
                    request_id,
                    frame.body.opcode_and_flags().0,
                    StatusCode::AuthenticationRequired,
                    "This server verifies credentials: the frame after the hello must be an Auth.",
                );
                return Next::Close;
            };
            return match binary_auth::verify(&front.auth, *version, server_nonce, auth) {
                Ok(()) => {
                    connection.respond(request_id, Body::AuthOk);
                    *handshake = Handshake::Ready;
                    Next::Continue
                }
                Err(error) => {
                    tracing::info!(access_key_id = auth.access_key_id, %error, "A binary connection failed to authenticate; closing it.");
                    connection.respond_error(
                        request_id,
                        Opcode::Auth.code(),
                        StatusCode::AuthenticationFailed,
                        &error.to_string(),
                    );
                    Next::Close
                }
            };
        }
        Handshake::Ready => {}
    }
    match frame.body {
        Body::Ping => connection.respond(request_id, Body::Pong),
        Body::Credit(credit) => {
            // Credit for a subscription that just ended is ignored, as the protocol says.
            if let Some(subscription) = connection
                .subscriptions
                .borrow()
                .get(&credit.subscription_id)
            {
                subscription.add_credits(credit.credits);
            }
        }
        Body::Unsubscribe(unsubscribe) => {
            let removed = connection
                .subscriptions
                .borrow_mut()
                .remove(&unsubscribe.subscription_id);
            match removed {
                Some(subscription) => {
                    subscription.cancel();
                    connection.respond(request_id, Body::UnsubscribeOk);
                }
                None => connection.respond_error(
                    request_id,
                    Opcode::Unsubscribe.code(),
                    StatusCode::UnknownSubscription,
                    &format!(
                        "No subscription {} is open on this connection.",
                        unsubscribe.subscription_id
                    ),
                ),
            }
        }
        Body::CreateStream(create) => {
            let input = CreateStreamInput {
                stream_name: create.stream_name.to_owned(),
                shard_count: Some(create.shard_count),
                stream_mode: None,
                tags: Vec::new(),
            };
            spawn(connection, move |c| create_stream(c, request_id, input));
        }
        Body::DescribeStream(name) => {
            let stream_name = name.stream_name.to_owned();
            spawn(connection, move |c| {
                describe_stream(c, request_id, stream_name)
            });
        }
        Body::ListStreams(list) => {
            let input = ListStreamsInput {
                limit: (list.limit != 0).then_some(list.limit.min(10_000)),
                exclusive_start_stream_name: list.exclusive_start_stream_name.map(str::to_owned),
                next_token: None,
            };
            spawn(connection, move |c| list_streams(c, request_id, input));
        }
        Body::GetShardMap(name) => {
            let stream_name = name.stream_name.to_owned();
            spawn(connection, move |c| {
                get_shard_map(c, request_id, stream_name)
            });
        }
        Body::PutBatch(batch) => {
            // Validated here, while the records borrow the frame; a refusal is answered only
            // after the policy check, so a denied request is AccessDenied whatever else is
            // wrong with it, as over HTTP.
            let stream_name = batch.stream_name.to_owned();
            let prepared = prepare_put_batch(&connection.engine, &batch);
            spawn(connection, move |c| {
                put_batch(c, request_id, stream_name, prepared)
            });
        }
        Body::Read(read) => {
            let stream_name = read.stream_name.to_owned();
            let request = ReadRequest::new(&read);
            spawn(connection, move |c| {
                read_records(c, request_id, stream_name, request)
            });
        }
        Body::Subscribe(subscribe) => on_subscribe(connection, request_id, &subscribe),
        Body::Hello(_) => connection.respond_error(
            request_id,
            Opcode::Hello.code(),
            StatusCode::BadFrame,
            "The handshake is already done; a connection says hello once.",
        ),
        // Without credentials any Auth passes, as any SigV4 signature does over HTTP, so a
        // client configured with a key works against a loopback server that has none.
        Body::Auth(_) if !front.auth.verifies() => connection.respond(request_id, Body::AuthOk),
        Body::Auth(_) => connection.respond_error(
            request_id,
            Opcode::Auth.code(),
            StatusCode::BadFrame,
            "The connection is already authenticated; a connection authenticates once.",
        ),
        other => {
            // A response or push sent to the server: the frame is sound but means nothing here.
            connection.respond_error(
                request_id,
                other.opcode_and_flags().0,
                StatusCode::BadFrame,
                "The server accepts only request frames.",
            );
        }
    }
    Next::Continue
}

/// Answers the first frame of a connection, which must be a hello.
fn on_hello(
    connection: &Connection,
    frame: Frame<'_>,
    handshake: &mut Handshake,
    front: &Front,
) -> Next {
    let request_id = frame.request_id;
    let Body::Hello(hello) = &frame.body else {
        connection.respond_error(
            request_id,
            frame.body.opcode_and_flags().0,
            StatusCode::HandshakeRequired,
            "The first frame of a connection must be a Hello.",
        );
        return Next::Close;
    };
    let Some(version) = hello.choose_version(PROTOCOL_VERSIONS) else {
        let message = format!(
            "No common protocol version: the client offered {:?}, the server speaks {:?}.",
            hello.versions, PROTOCOL_VERSIONS
        );
        connection.respond_error(
            request_id,
            Opcode::Hello.code(),
            StatusCode::UnsupportedVersion,
            &message,
        );
        return Next::Close;
    };
    let verifies = front.auth.verifies();
    if version < AUTH_VERSION_MIN && verifies {
        // Version 1 has no way to authenticate, so a server with credentials cannot serve it.
        let message = format!(
            "This server verifies credentials, which needs protocol version {AUTH_VERSION_MIN} or later; the client offered {:?}.",
            hello.versions
        );
        connection.respond_error(
            request_id,
            Opcode::Hello.code(),
            StatusCode::AuthenticationRequired,
            &message,
        );
        return Next::Close;
    }
    let challenge = (version >= AUTH_VERSION_MIN).then(|| WireAuthChallenge {
        auth_required: verifies,
        server_nonce: binary_auth::server_nonce(),
    });
    let engine = &connection.engine;
    connection.respond(
        request_id,
        Body::HelloOk(WireServerHello {
            version,
            core_count: u16::try_from(engine.cores()).expect("the core count fits u16"),
            core_id: u16::try_from(engine.core_id()).expect("the core id fits u16"),
            core_ports: front.ports.get(),
            challenge,
        }),
    );
    *handshake = match challenge {
        Some(challenge) if challenge.auth_required => Handshake::AwaitAuth {
            version,
            server_nonce: challenge.server_nonce,
        },
        _ => Handshake::Ready,
    };
    Next::Continue
}

/// Runs one request as its own task so that requests proceed concurrently.
fn spawn<F, Fut>(connection: &Rc<Connection>, task: F)
where
    F: FnOnce(Rc<Connection>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    glommio::spawn_local(task(connection.clone())).detach();
}

async fn create_stream(connection: Rc<Connection>, request_id: u64, input: CreateStreamInput) {
    let stream_name = input.stream_name.clone();
    let engine = &connection.engine;
    let result = async {
        connection
            .check_policy(Opcode::CreateStream, &stream_name)
            .await?;
        engine.create_stream(input).await?;
        // The protocol promises an ACTIVE stream with the answer; with a create delay
        // configured the catalog keeps it CREATING for a while.
        let started = std::time::Instant::now();
        loop {
            let summary = engine.describe_stream_summary(stream_name.clone()).await?;
            if summary.stream_status != StreamStatus::Creating {
                return Ok(());
            }
            if started.elapsed() > CREATE_ACTIVE_TIMEOUT {
                return Err(KinesisError::internal(
                    "The stream was created but did not become ACTIVE in time.",
                ));
            }
            glommio::timer::sleep(CREATE_ACTIVE_CHECK).await;
        }
    }
    .await;
    match result {
        Ok(()) => connection.respond(request_id, Body::CreateStreamOk),
        Err(error) => connection.respond_kinesis_error(request_id, Opcode::CreateStream, &error),
    }
}

async fn describe_stream(connection: Rc<Connection>, request_id: u64, stream_name: String) {
    let engine = &connection.engine;
    let result = async {
        connection
            .check_policy(Opcode::DescribeStream, &stream_name)
            .await?;
        // The HTTP API pages shards; the binary answer carries them all.
        let mut description = engine
            .describe_stream(DescribeStreamInput {
                stream_name: stream_name.clone(),
                limit: Some(kinesis_limits::DESCRIBE_STREAM_SHARDS_MAX),
                exclusive_start_shard_id: None,
            })
            .await?;
        while description.has_more_shards {
            let Some(last) = description.shards.last() else {
                break;
            };
            let page = engine
                .describe_stream(DescribeStreamInput {
                    stream_name: stream_name.clone(),
                    limit: Some(kinesis_limits::DESCRIBE_STREAM_SHARDS_MAX),
                    exclusive_start_shard_id: Some(last.shard_id.clone()),
                })
                .await?;
            description.has_more_shards = page.has_more_shards && !page.shards.is_empty();
            description.shards.extend(page.shards);
        }
        let placements = engine.shard_map(&stream_name)?;
        Ok::<_, KinesisError>((description, placements))
    }
    .await;
    let (description, placements) = match result {
        Ok(found) => found,
        Err(error) => {
            connection.respond_kinesis_error(request_id, Opcode::DescribeStream, &error);
            return;
        }
    };
    let core_of = |shard_index: u32| {
        placements
            .iter()
            .find(|p| p.shard_index == shard_index)
            .map_or(0, |p| core_id_u16(p.core_id))
    };
    match wire_stream_description(&description, core_of) {
        Ok(wire) => connection.respond(request_id, Body::DescribeStreamOk(wire)),
        Err(error) => {
            tracing::error!(%error, "A stream description does not fit the binary protocol.");
            connection.respond_kinesis_error(
                request_id,
                Opcode::DescribeStream,
                &KinesisError::internal(format!("The stream description is malformed: {error}")),
            );
        }
    }
}

fn core_id_u16(core_id: usize) -> u16 {
    u16::try_from(core_id).expect("the core id fits u16")
}

async fn list_streams(connection: Rc<Connection>, request_id: u64, input: ListStreamsInput) {
    match connection.engine.list_streams(input).await {
        Ok(output) => connection.respond(
            request_id,
            Body::ListStreamsOk(WireStreamList {
                stream_names: output.stream_names.iter().map(String::as_str).collect(),
                has_more_streams: output.has_more_streams,
            }),
        ),
        Err(error) => connection.respond_kinesis_error(request_id, Opcode::ListStreams, &error),
    }
}

async fn get_shard_map(connection: Rc<Connection>, request_id: u64, stream_name: String) {
    let result = async {
        connection
            .check_policy(Opcode::GetShardMap, &stream_name)
            .await?;
        connection.engine.shard_map(&stream_name)
    }
    .await;
    match result {
        Ok(placements) => {
            let shards = placements
                .iter()
                .filter(|p| p.open)
                .map(|p| WireShardMapEntry {
                    shard_index: p.shard_index,
                    hash_range: p.hash_range.into(),
                    core_id: core_id_u16(p.core_id),
                })
                .collect();
            connection.respond(request_id, Body::GetShardMapOk(WireShardMap { shards }));
        }
        Err(error) => connection.respond_kinesis_error(request_id, Opcode::GetShardMap, &error),
    }
}

/// A PutBatch checked and converted to the domain: the entries for `put_records` and, in
/// request order, where each record's answer comes from.
struct PreparedPut {
    stream_name: String,
    entries: Vec<PutRecordsEntry>,
    /// `Ok(i)`: the answer of `entries[i]`; `Err(status)`: refused before storage.
    slots: Vec<Result<usize, WireStatus>>,
}

/// Applies the partition-key rule to every record (refusing the whole batch, as the HTTP API
/// does) and resolves routes by shard index to that shard's starting hash key, so the engine
/// routes them exactly as HTTP records with that explicit hash key.
fn prepare_put_batch(
    engine: &Engine,
    batch: &WirePutBatch<'_>,
) -> Result<PreparedPut, KinesisError> {
    // Record sizes are checked by `put_records` against the stream's own maximum
    // (`sluice_core::api::check_record_sizes`), as for HTTP requests.
    for (i, record) in batch.records.iter().enumerate() {
        api::check_partition_key(
            i,
            record.partition_key,
            record.route == WireRoute::PartitionKey,
        )?;
    }
    let by_shard = batch
        .records
        .iter()
        .any(|r| matches!(r.route, WireRoute::ShardIndex(_)));
    let placements = if by_shard {
        engine.shard_map(batch.stream_name)?
    } else {
        Vec::new()
    };
    let starting_hash_key_of = |shard_index: u32| {
        placements
            .iter()
            .find(|p| p.shard_index == shard_index && p.open)
            .map(|p| p.hash_range.starting)
    };
    let mut entries = Vec::with_capacity(batch.records.len());
    let mut slots = Vec::with_capacity(batch.records.len());
    for record in &batch.records {
        match record.to_put_records_entry(starting_hash_key_of) {
            Ok(entry) => {
                slots.push(Ok(entries.len()));
                entries.push(entry);
            }
            Err(status) => slots.push(Err(status)),
        }
    }
    Ok(PreparedPut {
        stream_name: batch.stream_name.to_owned(),
        entries,
        slots,
    })
}

async fn put_batch(
    connection: Rc<Connection>,
    request_id: u64,
    stream_name: String,
    prepared: Result<PreparedPut, KinesisError>,
) {
    let checked = connection
        .check_policy(Opcode::PutBatch, &stream_name)
        .await;
    let PreparedPut {
        stream_name,
        entries,
        slots,
    } = match checked.and(prepared) {
        Ok(prepared) => prepared,
        Err(error) => {
            connection.respond_kinesis_error(request_id, Opcode::PutBatch, &error);
            return;
        }
    };
    let input = PutRecordsInput {
        stream_name,
        records: entries,
    };
    let output = match connection.engine.put_records(input).await {
        Ok(output) => output,
        Err(error) => {
            connection.respond_kinesis_error(request_id, Opcode::PutBatch, &error);
            return;
        }
    };
    let stored = WirePutBatchResult::from(&output);
    let records = slots
        .into_iter()
        .map(|slot| match slot {
            Ok(i) => stored
                .records
                .get(i)
                .copied()
                .unwrap_or(Err(StatusCode::InternalFailure.into())),
            Err(status) => Err(status),
        })
        .collect();
    connection.respond(request_id, Body::PutBatchOk(WirePutBatchResult { records }));
}

/// The domain form of a start position. A sequence number with a position no record can have
/// is refused as the HTTP API refuses a malformed StartingSequenceNumber.
fn read_start(start: WireStartPosition) -> Result<ReadStart, KinesisError> {
    let sequence_number = |wire| {
        SequenceNumber::try_from(wire).map_err(|error| {
            KinesisError::invalid_argument(format!("Invalid sequence number: {error}."))
        })
    };
    Ok(match start {
        WireStartPosition::TrimHorizon => ReadStart::TrimHorizon,
        WireStartPosition::Latest => ReadStart::Latest,
        WireStartPosition::AtTimestamp { timestamp_ms } => ReadStart::AtTimestamp { timestamp_ms },
        WireStartPosition::AtSequenceNumber(s) => ReadStart::AtSequenceNumber(sequence_number(s)?),
        WireStartPosition::AfterSequenceNumber(s) => {
            ReadStart::AfterSequenceNumber(sequence_number(s)?)
        }
        WireStartPosition::AtPosition(position) => ReadStart::AtPosition(position),
    })
}

/// A validated Read.
struct ReadRequest {
    stream_name: String,
    shard_index: u32,
    start: ReadStart,
    records_max: usize,
    bytes_max: usize,
}

impl ReadRequest {
    fn new(read: &WireRead<'_>) -> Result<Self, KinesisError> {
        if !(1..=READ_RECORDS_MAX).contains(&read.records_max) {
            return Err(KinesisError::invalid_argument(format!(
                "records_max must be between 1 and {READ_RECORDS_MAX}; it is {}.",
                read.records_max
            )));
        }
        if !(1..=READ_BYTES_MAX).contains(&read.bytes_max) {
            return Err(KinesisError::invalid_argument(format!(
                "bytes_max must be between 1 and {READ_BYTES_MAX}; it is {}.",
                read.bytes_max
            )));
        }
        Ok(Self {
            stream_name: read.stream_name.to_owned(),
            shard_index: read.shard_index,
            start: read_start(read.start)?,
            records_max: read.records_max as usize,
            bytes_max: read.bytes_max as usize,
        })
    }
}

/// Encodes up to `records_max` records and `bytes_max` partition key plus data bytes of
/// `read` (at least one record if there is any) into `writer`, and finishes the frame.
/// Returns the records written and where to continue, which is before the first record left
/// out when the frame could not take them all.
fn write_records(
    mut writer: RecordsWriter<'_>,
    read: &ShardRead,
    records_max: usize,
    bytes_max: usize,
) -> (usize, Option<u64>) {
    let mut first_position = None;
    let mut last_written = None;
    let mut truncated = false;
    read.records.for_each_record(&mut |record| {
        first_position.get_or_insert(record.sequence_number.position);
        if truncated {
            return;
        }
        let key_bytes = record.partition_key.len();
        let data_bytes = record.data.len();
        let over_budget = !writer.is_empty()
            && (writer.len() as usize >= records_max
                || writer.payload_bytes() + key_bytes + data_bytes > bytes_max);
        if over_budget || !writer.fits(key_bytes, data_bytes) {
            truncated = true;
            return;
        }
        match writer.push_view(&record) {
            Ok(()) => last_written = Some(record.sequence_number.position),
            Err(error) => {
                tracing::warn!(%error, "A record does not fit a records frame.");
                truncated = true;
            }
        }
    });
    let count = writer.len() as usize;
    let next_position = if truncated {
        // The left-out records come first in the next frame. If none fit at all, the read
        // starts over where it began.
        match last_written {
            Some(last) => Some(last + 1),
            None => first_position.or(read.next_position),
        }
    } else {
        read.next_position
    };
    writer.finish(next_position, read.millis_behind_latest);
    (count, next_position)
}

async fn read_records(
    connection: Rc<Connection>,
    request_id: u64,
    stream_name: String,
    request: Result<ReadRequest, KinesisError>,
) {
    let checked = connection.check_policy(Opcode::Read, &stream_name).await;
    let request = match checked.and(request) {
        Ok(request) => request,
        Err(error) => {
            connection.respond_kinesis_error(request_id, Opcode::Read, &error);
            return;
        }
    };
    let result = connection
        .engine
        .read_from(
            &request.stream_name,
            request.shard_index,
            request.start,
            request.records_max,
            request.bytes_max,
        )
        .await;
    match result {
        Ok((cursor, read)) => connection.outbox.push_with(|buf| {
            let writer = RecordsWriter::read_response(
                buf,
                request_id,
                cursor.shard_created_s(),
                cursor.shard_index(),
            );
            write_records(writer, &read, request.records_max, request.bytes_max);
        }),
        Err(error) => connection.respond_kinesis_error(request_id, Opcode::Read, &error),
    }
}

fn on_subscribe(connection: &Rc<Connection>, subscription_id: u64, subscribe: &WireSubscribe<'_>) {
    let start = read_start(subscribe.start);
    let subscription = {
        let mut subscriptions = connection.subscriptions.borrow_mut();
        if subscriptions.contains_key(&subscription_id) {
            drop(subscriptions);
            connection.respond_error(
                subscription_id,
                Opcode::Subscribe.code(),
                StatusCode::SubscriptionExists,
                &format!("Subscription {subscription_id} is already open on this connection."),
            );
            return;
        }
        let subscription = Rc::new(Subscription::default());
        subscription.add_credits(subscribe.credits);
        subscriptions.insert(subscription_id, subscription.clone());
        subscription
    };
    let stream_name = subscribe.stream_name.to_owned();
    let shard_index = subscribe.shard_index;
    spawn(connection, move |c| async move {
        let checked = c.check_policy(Opcode::Subscribe, &stream_name).await;
        let opened = match checked.and(start) {
            Ok(start) => c.engine.open_cursor(&stream_name, shard_index, start).await,
            Err(error) => Err(error),
        };
        let cursor = match opened {
            Ok(cursor) => cursor,
            Err(error) => {
                forget_subscription(&c, subscription_id, &subscription);
                c.respond_kinesis_error(subscription_id, Opcode::Subscribe, &error);
                return;
            }
        };
        // Written before the task's first push, so the answer precedes every RecordsEvent.
        c.respond(subscription_id, Body::SubscribeOk);
        run_subscription(&c, subscription_id, &subscription, cursor).await;
    });
}

/// Removes the subscription from the connection's table unless an Unsubscribe (or a newer
/// subscription with the same id) already replaced it.
fn forget_subscription(
    connection: &Connection,
    subscription_id: u64,
    subscription: &Rc<Subscription>,
) {
    let mut subscriptions = connection.subscriptions.borrow_mut();
    if subscriptions
        .get(&subscription_id)
        .is_some_and(|s| Rc::ptr_eq(s, subscription))
    {
        subscriptions.remove(&subscription_id);
    }
}

/// Pushes records while credits last, until the subscription is cancelled, the shard is closed
/// and fully delivered, or an error ends it.
async fn run_subscription(
    connection: &Connection,
    subscription_id: u64,
    subscription: &Rc<Subscription>,
    mut cursor: ShardCursor,
) {
    let ended = loop {
        while subscription.credits.get() == 0 && !subscription.cancelled.get() {
            subscription.changed.wait().await;
        }
        if subscription.cancelled.get() {
            return;
        }
        connection.outbox.wait_room().await;
        if connection.outbox.is_closed() {
            return;
        }
        let want = subscription.credits.get().min(READ_RECORDS_MAX) as usize;
        let bytes_max = READ_BYTES_MAX as usize;
        let read = futures_lite::future::or(
            async {
                Some(
                    connection
                        .engine
                        .read_wait(&mut cursor, want, bytes_max, SUBSCRIPTION_WAIT)
                        .await,
                )
            },
            async {
                subscription.cancelled().await;
                None
            },
        )
        .await;
        // From here to the push there is no await, so an Unsubscribe answered meanwhile is
        // seen and no push follows its answer.
        let Some(read) = read else { return };
        if subscription.cancelled.get() {
            return;
        }
        let read = match read {
            Ok(read) => read,
            Err(error) => break Err(error),
        };
        if read.records.is_empty() {
            match read.next_position {
                None => break Ok(()),
                // The wait ran out: check the stream again and wait anew.
                Some(_) => continue,
            }
        }
        let mut sent = (0, None);
        connection.outbox.push_with(|buf| {
            let writer = RecordsWriter::records_event(
                buf,
                subscription_id,
                cursor.shard_created_s(),
                cursor.shard_index(),
            );
            sent = write_records(writer, &read, want, bytes_max);
        });
        let (count, next_position) = sent;
        let count = u32::try_from(count).expect("a records frame holds at most READ_RECORDS_MAX");
        subscription
            .credits
            .set(subscription.credits.get().saturating_sub(count));
        match next_position {
            Some(position) => cursor.set_position(position),
            None => break Ok(()),
        }
    };
    if subscription.cancelled.get() {
        return;
    }
    forget_subscription(connection, subscription_id, subscription);
    let (status, message) = match &ended {
        Ok(()) => (
            WireStatus::OK,
            format!(
                "Shard {} is closed and every record was delivered.",
                format_shard_id(cursor.shard_index())
            ),
        ),
        Err(error) => (
            StatusCode::from_error_kind(error.kind).into(),
            error.message.clone(),
        ),
    };
    connection.respond(
        subscription_id,
        Body::SubscriptionEnded(WireSubscriptionEnded {
            status,
            message: &message,
        }),
    );
}

/// The per-core port of core `core_id` (0: pick a free one).
pub fn core_port(base: u16, core_id: usize) -> u16 {
    if base == 0 {
        return 0;
    }
    let port = usize::from(base) + core_id;
    u16::try_from(port).expect("settings checked that every core's port fits u16")
}

/// The address core `core_id` listens on alone.
pub fn core_addr(shared: SocketAddr, base: u16, core_id: usize) -> SocketAddr {
    SocketAddr::new(shared.ip(), core_port(base, core_id))
}
