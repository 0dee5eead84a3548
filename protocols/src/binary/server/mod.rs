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
//! - Admission (`crate::admission`, the core's budget shared with HTTP): a PutBatch is charged
//!   from its header, before its payload is read, and a Read for the most it may answer, before
//!   it runs. While the charge does not fit the read loop waits and reads nothing more, so TCP
//!   slows the client down; past the queue deadline the request is answered `ServerBusy` (a
//!   PutBatch's payload is then dropped unread). From version 3 a PutBatch also spends the
//!   connection's ingest credit (`binary::credit`), checked from its header too: a client that
//!   overspends is answered `IngestCreditExceeded` and the connection is closed.
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
//! - Every PutBatch that spent ingest credit gives it back exactly once, after its answer (an
//!   IngestCredit push follows the answer), whatever the answer was.
//! - A connection beyond the core's connection limit is served nothing: its first frame is
//!   answered `ServerBusy` and it is closed.

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

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use sluice_core::storage::RecordLog;
use sluice_core::{KinesisApi, KinesisError};

use crate::admission::{Admission, BudgetPermit, request_charge};
use crate::auth::AuthConfig;
use crate::binary::{
    Body, DecodeError, Frame, FrameDecoder, FrameHeader, IngestCredit, Opcode, StatusCode,
    WireError, WireIngestCredit, encode_frame,
};
use crate::kinesis::enforce;

use handshake::Handshake;
use outbox::Outbox;
use requests::PendingRead;
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
    /// The core's memory budget and connection limit, shared with its HTTP listener. `None`
    /// admits every request and connection.
    pub admission: Option<Admission>,
    /// The ingest credit granted to each connection of version 3 or later
    /// (`limits::INGEST_CREDIT_BYTES` unless a test wants it smaller); at least
    /// `limits::FRAME_BYTES_MAX`.
    pub ingest_credit_bytes: u32,
}

/// How long a refused connection is given to send its first frame, so that the refusal answers
/// it (a client reads the answer to its hello) instead of racing it.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

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

    /// Takes one accepted connection: counts it against the core's connection limit at once
    /// (before the caller accepts the next), and returns the task that serves it, or, beyond
    /// the limit, refuses it with `ServerBusy`.
    pub fn accept<S>(self: Rc<Self>, socket: S) -> impl Future<Output = ()> + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let open = match &self.config.admission {
            None => Ok(None),
            Some(admission) => admission.open_connection().map(Some).ok_or(()),
        };
        async move {
            match open {
                Ok(open) => {
                    self.serve_connection(socket).await;
                    drop(open);
                }
                Err(()) => self.refuse_connection(socket).await,
            }
        }
    }

    /// Answers the first frame of a connection beyond the limit (normally its hello) with
    /// `ServerBusy`, or, if none comes within [`REFUSAL_WAIT`], sends that answer to request 0,
    /// and closes the connection.
    async fn refuse_connection<S>(&self, mut socket: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        use futures_lite::AsyncWriteExt as _;
        let mut decoder = FrameDecoder::new();
        let mut chunk = [0u8; 1024];
        let first = async {
            loop {
                if let Some(header) = decoder.peek_header() {
                    return (header.request_id, header.opcode);
                }
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return (0, Opcode::Hello.code()),
                    Ok(n) => decoder.push(&chunk[..n]),
                }
            }
        };
        let timeout = self.runtime.sleep(REFUSAL_WAIT);
        let (request_id, opcode) = futures_lite::future::or(first, async {
            timeout.await;
            (0, Opcode::Hello.code())
        })
        .await;
        let refusal = Frame {
            request_id,
            body: Body::Error(WireError {
                opcode,
                status: StatusCode::ServerBusy.into(),
                message: BUSY_CONNECTIONS,
            }),
        };
        let mut bytes = Vec::new();
        encode_frame(&refusal, &mut bytes).expect("a short error frame always encodes");
        let write = async {
            let _ = socket.write_all(&bytes).await;
            let _ = socket.close().await;
        };
        let timeout = self.runtime.sleep(REFUSAL_WAIT);
        futures_lite::future::or(write, timeout).await;
    }

    /// Serves one connection until the peer closes it, the protocol requires closing it, or the
    /// socket fails. Admits it whatever the connection limit; [`BinaryServer::accept`] checks it.
    pub async fn serve_connection<S>(self: Rc<Self>, socket: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (mut reader, writer) = futures_lite::io::split(socket);
        let connection = Rc::new(Connection {
            server: self,
            outbox: Rc::new(Outbox::default()),
            subscriptions: RefCell::new(HashMap::new()),
            ingest: RefCell::new(None),
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
    /// The ingest credit ledger, from a version 3 hello on; `None` before the hello and on
    /// older versions, which have no ingest credit.
    ingest: RefCell<Option<IngestCredit>>,
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
    /// A Read to run once the budget holds its answer.
    Read(PendingRead),
}

/// What a PutBatch holds from its header on: its share of the budget and of the ingest credit.
#[derive(Debug, Default)]
pub(super) struct AdmittedPut {
    /// Given back when dropped, after the answer.
    pub(super) permit: Option<BudgetPermit>,
    /// Given back with an IngestCredit push after the answer (version 3 and later).
    pub(super) credit_bytes: Option<u32>,
}

/// The outcome of admitting a PutBatch from its header.
enum Admit {
    Granted(AdmittedPut),
    /// Answered `ServerBusy`; its payload is to be skipped.
    Busy,
    /// The client overspent its credit; the connection is closing.
    Close,
}

/// The message of a request refused for the memory budget.
const BUSY_MEMORY: &str =
    "Sluice is at its memory budget for requests in flight; retry with backoff.";

/// The message of a connection refused at the connection limit.
const BUSY_CONNECTIONS: &str = "Sluice is at its connection limit; retry with backoff.";

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
        // What the PutBatch at the front of the decoder was granted from its header.
        let mut admitted: Option<AdmittedPut> = None;
        loop {
            loop {
                if admitted.is_none()
                    && matches!(handshake, Handshake::Ready)
                    && let Some(header) = decoder.peek_header()
                    && header.opcode == Opcode::PutBatch.code()
                    && header.flags == 0
                {
                    match self.admit_put_batch(&header).await {
                        Admit::Granted(granted) => admitted = Some(granted),
                        Admit::Busy => {
                            decoder.skip_frame();
                            continue;
                        }
                        Admit::Close => return,
                    }
                }
                let next = match decoder.next_frame_shared() {
                    Ok(Some((frame, bytes))) => {
                        self.on_frame(frame, &bytes, &mut handshake, &mut admitted)
                    }
                    Ok(None) => break,
                    Err(error) => {
                        // A PutBatch whose payload is bad is answered here: its credit and
                        // budget go back at once.
                        if let Some(put) = admitted.take() {
                            self.respond_error_from(&error, &handshake);
                            self.finish_put(put);
                            continue;
                        }
                        self.on_decode_error(&error, &handshake)
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Close => return,
                    Next::Read(read) => self.admit_read(read).await,
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

    /// Charges a PutBatch, from its header alone, against the connection's ingest credit and
    /// then the core's budget, waiting for the budget at most the queue deadline.
    async fn admit_put_batch(&self, header: &FrameHeader) -> Admit {
        let request_id = header.request_id;
        let credit_bytes = match self.ingest.borrow_mut().as_mut() {
            None => None,
            Some(ledger) => match ledger.spend(header.frame_bytes) {
                Ok(()) => Some(header.frame_bytes),
                Err(error) => {
                    tracing::info!(%error, "A binary client overspent its ingest credit; closing the connection.");
                    self.respond_error(
                        request_id,
                        Opcode::PutBatch.code(),
                        StatusCode::IngestCreditExceeded,
                        &error.to_string(),
                    );
                    return Admit::Close;
                }
            },
        };
        let permit = match &self.server.config.admission {
            None => None,
            Some(admission) => {
                let charge = request_charge(u64::from(header.frame_bytes));
                let deadline = self.server.runtime.sleep(admission.queue_timeout);
                match admission.admit(charge, deadline).await {
                    Some(permit) => Some(permit),
                    None => {
                        self.respond_error(
                            request_id,
                            Opcode::PutBatch.code(),
                            StatusCode::ServerBusy,
                            BUSY_MEMORY,
                        );
                        self.finish_put(AdmittedPut {
                            permit: None,
                            credit_bytes,
                        });
                        return Admit::Busy;
                    }
                }
            }
        };
        Admit::Granted(AdmittedPut {
            permit,
            credit_bytes,
        })
    }

    /// Gives back what a PutBatch held, after its answer: the budget, then the ingest credit,
    /// with an IngestCredit push.
    pub(super) fn finish_put(&self, put: AdmittedPut) {
        drop(put.permit);
        let Some(bytes) = put.credit_bytes else {
            return;
        };
        self.ingest
            .borrow_mut()
            .as_mut()
            .expect("credit is spent only on a connection that has a ledger")
            .give_back(bytes)
            .expect("the server gives back only what a PutBatch spent");
        self.respond(0, Body::IngestCredit(WireIngestCredit { bytes }));
    }

    /// Waits for the budget of a Read's answer (the read loop reads nothing meanwhile), then
    /// runs it; past the queue deadline it is answered `ServerBusy`.
    async fn admit_read(self: &Rc<Self>, read: PendingRead) {
        let permit = match &self.server.config.admission {
            None => None,
            Some(admission) => {
                let deadline = self.server.runtime.sleep(admission.queue_timeout);
                match admission.admit(read.charge(), deadline).await {
                    Some(permit) => Some(permit),
                    None => {
                        self.respond_error(
                            read.request_id(),
                            Opcode::Read.code(),
                            StatusCode::ServerBusy,
                            BUSY_MEMORY,
                        );
                        return;
                    }
                }
            }
        };
        self.spawn(move |c| async move { c.read_records(read, permit).await });
    }

    /// Answers a skipped frame after the handshake (its request id and opcode are known).
    fn respond_error_from(&self, error: &DecodeError, handshake: &Handshake) {
        debug_assert!(matches!(handshake, Handshake::Ready));
        if let (Some(request_id), Some(opcode)) = (error.request_id(), error.opcode()) {
            self.respond_error(request_id, opcode, error.status(), &error.to_string());
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

    /// `bytes` is the whole frame, which `frame`'s fields borrow from.
    fn on_frame(
        self: &Rc<Self>,
        frame: Frame<'_>,
        bytes: &Bytes,
        handshake: &mut Handshake,
        admitted: &mut Option<AdmittedPut>,
    ) -> Next {
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
            Body::PutBatch(batch) => {
                let put = admitted
                    .take()
                    .expect("a PutBatch is admitted from its header before it is decoded");
                self.on_put_batch(request_id, &batch, bytes, put);
            }
            Body::Read(read) => return Next::Read(PendingRead::new(request_id, &read)),
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
