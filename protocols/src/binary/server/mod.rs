//! The server side of the binary protocol, one connection at a time (`docs/binary-protocol.md`):
//! the handshake (hello and Auth), the dispatch of frames to the Kinesis API and to the storage
//! face, the outbox, and push subscriptions.
//!
//! [`BinaryServer`] is generic over what it serves and over what it runs on, and touches no
//! socket or executor itself: over [`KinesisApi`] (streams, PutRecords, resource policies), over
//! [`RecordLog`] (shard maps and reads, `sluice_core::storage`), over the socket (any futures-io
//! `AsyncRead + AsyncWrite`), and over a [`Runtime`] that spawns tasks on the connection's
//! thread and sleeps. The server binary accepts connections and hands each to
//! [`BinaryServer::serve_connection`].
//!
//! One connection is a read loop, a writer and one task per request or subscription:
//! - The read loop decodes frames, answers the cheap ones (Ping, Credit, Unsubscribe) inline
//!   and spawns a task for every other request, so requests run concurrently and may be
//!   answered out of order. A fatal decode error (no frame boundary left) closes the
//!   connection; any other bad frame is answered by its request id and skipped.
//! - Every answer and push is encoded straight into the connection's [`outbox::Outbox`], which
//!   the writer sends with one write per burst.
//! - A subscription task reads while its credit balance is positive (one credit is one record)
//!   and otherwise waits for a Credit frame. Its reads wait on the owning core for the commit
//!   that stores the next record (`RecordLog::read` with a wait); nothing polls.
//!
//! Invariants:
//! - Nothing is served before the handshake is done (the hello and, when the server verifies
//!   credentials, an Auth that passes), and a connection whose handshake fails is closed.
//! - A subscription's SubscribeOk precedes its first push, and no push follows its
//!   UnsubscribeOk or SubscriptionEnded: both are written by code that runs without an await
//!   between checking the subscription's state and appending to the outbox.
//! - The outbox holds at most about [`outbox::OUTBOX_BYTES_MAX`] unsent bytes: the read loop
//!   stops reading requests, and subscriptions stop reading records, while it is fuller.
//! - A request about a stream passes the stream's resource policy (`kinesis::enforce`) before
//!   anything else about it is checked, as over HTTP.

mod handshake;
mod outbox;
mod requests;
mod subscription;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use sluice_core::storage::RecordLog;
use sluice_core::{KinesisApi, KinesisError};

use crate::auth::AuthConfig;
use crate::binary::{Body, DecodeError, Frame, FrameDecoder, Opcode, StatusCode, WireError};
use crate::kinesis::enforce;

use handshake::Handshake;
use outbox::Outbox;
use subscription::Subscription;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 * 1024;

/// What the connection handler needs from the executor it runs on.
///
/// Neither method has a default: spawning and sleeping are the executor's own work, and the
/// handler must not pick an executor of its own.
pub trait Runtime: Clone + 'static {
    /// Runs `task` detached on the calling thread, concurrently with the caller. A connection's
    /// state is single-threaded (`Rc`), so the task is not `Send`.
    fn spawn_local(&self, task: impl Future<Output = ()> + 'static);

    /// Completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static;
}

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

/// What one core's binary front end tells its clients and checks them against.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The listener's rule (`AuthConfig::for_listener`): with credentials, every connection
    /// authenticates before it is served.
    pub auth: Arc<AuthConfig>,
    pub ports: Arc<CorePorts>,
    /// Shard cores of the server, for the server hello.
    pub core_count: u16,
    /// The core this server runs on, for the server hello.
    pub core_id: u16,
}

/// One core's binary-protocol handler, shared by every connection the core accepts.
pub struct BinaryServer<A, L, R> {
    config: ServerConfig,
    api: A,
    log: L,
    runtime: R,
}

impl<A, L, R> BinaryServer<A, L, R>
where
    A: KinesisApi + 'static,
    L: RecordLog,
    R: Runtime,
{
    pub fn new(config: ServerConfig, api: A, log: L, runtime: R) -> Rc<Self> {
        Rc::new(Self {
            config,
            api,
            log,
            runtime,
        })
    }

    /// Serves one connection until the peer closes it, the protocol requires closing it, or the
    /// socket fails.
    pub async fn serve_connection<S>(self: Rc<Self>, socket: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (mut reader, writer) = futures_lite::io::split(socket);
        let connection = Rc::new(Connection {
            server: self,
            outbox: Rc::new(Outbox::default()),
            subscriptions: RefCell::new(HashMap::new()),
        });
        let reading = async {
            connection.read_loop(&mut reader).await;
            connection.shutdown();
        };
        let writing = outbox::write_loop(writer, connection.outbox.clone());
        futures_lite::future::zip(reading, writing).await;
    }
}

/// One client connection.
struct Connection<A, L, R> {
    server: Rc<BinaryServer<A, L, R>>,
    outbox: Rc<Outbox>,
    subscriptions: RefCell<HashMap<u64, Rc<Subscription>>>,
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
}

impl<A, L, R> Connection<A, L, R>
where
    A: KinesisApi + 'static,
    L: RecordLog,
    R: Runtime,
{
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
    /// the Kinesis actions `opcode` stands for: the check HTTP requests pass too.
    async fn check_policy(&self, opcode: Opcode, stream_name: &str) -> Result<(), KinesisError> {
        let api = &self.server.api;
        let arn = enforce::home_stream_arn(api, stream_name);
        enforce::check_actions(api, opcode.kinesis_actions(), &arn).await
    }

    /// Runs one request as its own task so that requests proceed concurrently.
    fn spawn<F, Fut>(self: &Rc<Self>, task: F)
    where
        F: FnOnce(Rc<Self>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        self.server.runtime.spawn_local(task(self.clone()));
    }

    /// Ends every subscription and closes the outbox; the writer sends what is queued.
    fn shutdown(&self) {
        for (_, subscription) in self.subscriptions.borrow_mut().drain() {
            subscription.cancel();
        }
        self.outbox.close();
    }

    async fn read_loop<S: AsyncRead + Unpin>(self: &Rc<Self>, reader: &mut S) {
        let mut decoder = FrameDecoder::new();
        let mut chunk = vec![0u8; READ_CHUNK_BYTES];
        let mut handshake = Handshake::AwaitHello;
        loop {
            loop {
                let next = match decoder.next_frame() {
                    Ok(Some(frame)) => self.on_frame(frame, &mut handshake),
                    Ok(None) => break,
                    Err(error) => self.on_decode_error(&error, &handshake),
                };
                if let Next::Close = next {
                    return;
                }
            }
            self.outbox.wait_room().await;
            if self.outbox.is_closed() {
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

    fn on_decode_error(&self, error: &DecodeError, handshake: &Handshake) -> Next {
        let message = error.to_string();
        match (error.request_id(), error.opcode()) {
            (Some(request_id), Some(opcode)) => {
                // Before the handshake is done only its own frame is acceptable: a broken one
                // is a BadFrame, anything else is answered with what the handshake still needs.
                // Either way the connection ends.
                let (expected, missing) = match handshake {
                    Handshake::Ready => {
                        self.respond_error(request_id, opcode, error.status(), &message);
                        return Next::Continue;
                    }
                    Handshake::AwaitHello => (Opcode::Hello, StatusCode::HandshakeRequired),
                    Handshake::AwaitAuth { .. } => {
                        (Opcode::Auth, StatusCode::AuthenticationRequired)
                    }
                };
                let status = if opcode == expected.code() {
                    error.status()
                } else {
                    missing
                };
                self.respond_error(request_id, opcode, status, &message);
                Next::Close
            }
            _ => {
                // No frame boundary is left: say why with request id 0 and hang up.
                self.respond_error(0, 0, error.status(), &message);
                Next::Close
            }
        }
    }

    fn on_frame(self: &Rc<Self>, frame: Frame<'_>, handshake: &mut Handshake) -> Next {
        if !matches!(handshake, Handshake::Ready) {
            return self.on_handshake_frame(frame, handshake);
        }
        let request_id = frame.request_id;
        match frame.body {
            Body::Ping => self.respond(request_id, Body::Pong),
            Body::Credit(credit) => self.on_credit(credit),
            Body::Unsubscribe(unsubscribe) => self.on_unsubscribe(request_id, unsubscribe),
            Body::CreateStream(create) => self.on_create_stream(request_id, create),
            Body::DescribeStream(name) => self.on_describe_stream(request_id, name),
            Body::ListStreams(list) => self.on_list_streams(request_id, list),
            Body::GetShardMap(name) => self.on_get_shard_map(request_id, name),
            Body::PutBatch(batch) => self.on_put_batch(request_id, &batch),
            Body::Read(read) => self.on_read(request_id, &read),
            Body::Subscribe(subscribe) => self.on_subscribe(request_id, &subscribe),
            Body::Hello(_) => self.respond_error(
                request_id,
                Opcode::Hello.code(),
                StatusCode::BadFrame,
                "The handshake is already done; a connection says hello once.",
            ),
            Body::Auth(_) => self.on_auth_after_handshake(request_id),
            other => {
                // A response or push sent to the server: the frame is sound but means nothing
                // here.
                self.respond_error(
                    request_id,
                    other.opcode_and_flags().0,
                    StatusCode::BadFrame,
                    "The server accepts only request frames.",
                );
            }
        }
        Next::Continue
    }
}
