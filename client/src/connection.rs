//! One TCP connection to a server: the handshake, a writer task that coalesces queued frames
//! into few writes, and a reader task that matches responses to requests by request id (so
//! requests pipeline and may be answered out of order) and routes pushed records to their
//! subscription.
//!
//! When the connection ends, every request still waiting fails with `ConnectionLost` (or
//! `Protocol` if the server broke the protocol) and every subscription ends with the same
//! error; [`Connection::is_closed`] then tells the endpoint to reconnect for the next request.
//!
//! Ingest credit (version 3): a PutBatch waits, before it is queued, until the connection's
//! credit holds its frame bytes ([`IngestWindow`]); IngestCredit pushes give them back. The
//! wait is FIFO, so a large batch is not starved by small ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sluice_core::sequence_number::SequenceNumber;
use sluice_protocols::binary::auth as binary_auth;
use sluice_protocols::binary::limits::{FRAME_BYTES_MAX, MAGIC, PROTOCOL_VERSIONS};
use sluice_protocols::binary::{
    Body, Frame, FrameDecoder, WireAuth, WireClientHello, WireRecords, WireSequenceNumber,
    WireServerHello, WireStatus, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::client::ClientConfig;
use crate::error::ClientError;
use crate::types::{
    Credentials, Record, Records, ServerInfo, Shard, ShardMap, ShardMapEntry, StreamDescription,
};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 256 * 1024;
/// The writer stops coalescing queued frames into one write past this many bytes.
const WRITE_COALESCE_BYTES_MAX: usize = 1024 * 1024;
/// At most this many frames go out in one vectored write (Linux takes up to 1,024 slices).
const WRITE_COALESCE_FRAMES_MAX: usize = 256;

/// An owned answer to one request.
#[derive(Debug)]
pub(crate) enum Reply {
    Pong,
    CreateStreamOk,
    DescribeStream(StreamDescription),
    ListStreams {
        stream_names: Vec<String>,
        has_more_streams: bool,
    },
    ShardMap(ShardMap),
    PutBatch(Vec<Result<SequenceNumber, WireStatus>>),
    Read(Records),
    SubscribeOk,
    UnsubscribeOk,
}

/// What a subscription's receiver gets.
#[derive(Debug)]
pub(crate) enum SubscriptionItem {
    Records(Records),
    /// The last item; `Ok` when the shard was closed and fully delivered.
    Ended(Result<(), ClientError>),
}

type ReplySender = oneshot::Sender<Result<Reply, ClientError>>;

#[derive(Clone, Debug)]
enum CloseReason {
    Lost,
    Protocol(String),
}

#[derive(Default)]
struct Shared {
    closed: Option<CloseReason>,
    pending: HashMap<u64, ReplySender>,
    subscriptions: HashMap<u64, mpsc::UnboundedSender<SubscriptionItem>>,
}

struct State {
    addr: SocketAddr,
    shared: Mutex<Shared>,
    /// `Some` on a connection of version 3 or later.
    ingest: Option<IngestWindow>,
}

/// The client's side of the ingest credit ledger (`sluice_protocols::binary::credit`): the
/// semaphore's permits are the bytes the client may still send. It spends before a PutBatch is
/// queued and gets bytes back only from IngestCredit pushes, so its balance is never above the
/// server's.
pub(crate) struct IngestWindow {
    available: tokio::sync::Semaphore,
    window_bytes: u32,
}

impl IngestWindow {
    pub(crate) fn new(window_bytes: u32) -> Self {
        Self {
            available: tokio::sync::Semaphore::new(window_bytes as usize),
            window_bytes,
        }
    }

    /// Waits until `frame_bytes` fit the balance and spends them. `None` once the connection
    /// closed.
    pub(crate) async fn spend(&self, frame_bytes: u32) -> Option<()> {
        assert!(frame_bytes <= self.window_bytes);
        let permit = self.available.acquire_many(frame_bytes).await.ok()?;
        permit.forget();
        Some(())
    }

    /// Takes back bytes the server gave back; an error when that lifts the balance above the
    /// window, which only a server breaking the protocol does.
    pub(crate) fn give_back(&self, bytes: u32) -> Result<(), String> {
        // Only the reader gives back and spenders only lower the balance, so the check holds
        // when the permits are added.
        let balance = self.available.available_permits() as u64;
        if balance + u64::from(bytes) > u64::from(self.window_bytes) {
            return Err(format!(
                "the server gave back {bytes} bytes of ingest credit, lifting the balance of {balance} above the window of {}",
                self.window_bytes
            ));
        }
        self.available.add_permits(bytes as usize);
        Ok(())
    }

    fn close(&self) {
        self.available.close();
    }

    #[cfg(test)]
    fn balance(&self) -> usize {
        self.available.available_permits()
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves only maps of senders behind, which stay valid.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, reason: &CloseReason) -> ClientError {
        match reason {
            CloseReason::Lost => ClientError::ConnectionLost { addr: self.addr },
            CloseReason::Protocol(reason) => ClientError::Protocol {
                addr: self.addr,
                reason: reason.clone(),
            },
        }
    }

    /// Marks the connection closed and fails everything waiting on it.
    fn close(&self, reason: CloseReason) {
        let (pending, subscriptions) = {
            let mut shared = self.lock();
            if shared.closed.is_none() {
                shared.closed = Some(reason.clone());
            }
            (
                std::mem::take(&mut shared.pending),
                std::mem::take(&mut shared.subscriptions),
            )
        };
        if let Some(ingest) = &self.ingest {
            ingest.close();
        }
        for (_, sender) in pending {
            let _ = sender.send(Err(self.error(&reason)));
        }
        for (_, sender) in subscriptions {
            let _ = sender.send(SubscriptionItem::Ended(Err(self.error(&reason))));
        }
    }
}

/// A live (or recently live) connection. Dropping the last handle closes the socket.
pub(crate) struct Connection {
    state: Arc<State>,
    server: ServerInfo,
    next_request_id: AtomicU64,
    outbound: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
    writer: AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.state.close(CloseReason::Lost);
    }
}

/// A request sent and awaiting its answer.
pub(crate) struct PendingReply {
    state: Arc<State>,
    request_id: u64,
    receiver: oneshot::Receiver<Result<Reply, ClientError>>,
}

impl PendingReply {
    pub(crate) async fn wait(self, timeout: Option<Duration>) -> Result<Reply, ClientError> {
        let addr = self.state.addr;
        let received = match timeout {
            None => self.receiver.await,
            Some(timeout) => match tokio::time::timeout(timeout, self.receiver).await {
                Ok(received) => received,
                Err(_) => {
                    self.state.lock().pending.remove(&self.request_id);
                    return Err(ClientError::Timeout { timeout });
                }
            },
        };
        received.unwrap_or(Err(ClientError::ConnectionLost { addr }))
    }
}

impl Connection {
    /// Connects, says hello, and starts the reader and writer tasks.
    pub(crate) async fn open(
        addr: SocketAddr,
        config: &ClientConfig,
    ) -> Result<Arc<Connection>, ClientError> {
        let connect_timeout = config.connect_timeout;
        let credentials = config.credentials.as_ref();
        let connect = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect { addr, source })?;
            // Frames are coalesced by the writer task, so Nagle's delay would only add latency.
            stream
                .set_nodelay(true)
                .map_err(|source| ClientError::Connect { addr, source })?;
            let (mut read, mut write) = stream.into_split();
            let (server, decoder) = handshake(addr, credentials, &mut read, &mut write).await?;
            Ok::<_, ClientError>((read, write, server, decoder))
        };
        let (read, write, server, decoder) = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| ClientError::Connect {
                addr,
                source: std::io::ErrorKind::TimedOut.into(),
            })??;
        let state = Arc::new(State {
            addr,
            shared: Mutex::new(Shared::default()),
            ingest: server.ingest_credit_bytes.map(IngestWindow::new),
        });
        let (outbound, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(write, queue, state.clone()));
        let reader = tokio::spawn(read_loop(
            read,
            decoder,
            state.clone(),
            writer.abort_handle(),
        ));
        Ok(Arc::new(Connection {
            state,
            server,
            next_request_id: AtomicU64::new(1),
            outbound,
            reader: reader.abort_handle(),
            writer: writer.abort_handle(),
        }))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    pub(crate) fn server(&self) -> &ServerInfo {
        &self.server
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    fn request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Encodes the frame `make` builds for a fresh request id, registers for its answer, and
    /// queues it for writing.
    pub(crate) fn start<'a>(
        &self,
        make: impl FnOnce(u64) -> Frame<'a>,
    ) -> Result<PendingReply, ClientError> {
        self.start_inner(make, false).map(|(pending, _)| pending)
    }

    /// Like [`Connection::start`] for a PutBatch: on a connection with ingest credit it first
    /// waits until the credit holds the frame, so the server is never sent more than it
    /// granted.
    pub(crate) async fn start_put<'a>(
        &self,
        make: impl FnOnce(u64) -> Frame<'a>,
    ) -> Result<PendingReply, ClientError> {
        let request_id = self.request_id();
        let mut bytes = Vec::new();
        encode_frame(&make(request_id), &mut bytes)?;
        if let Some(ingest) = &self.state.ingest {
            let frame_bytes = u32::try_from(bytes.len()).expect("a frame fits u32");
            if ingest.spend(frame_bytes).await.is_none() {
                let reason = self
                    .state
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or(CloseReason::Lost);
                return Err(self.state.error(&reason));
            }
        }
        self.queue(request_id, bytes, false)
            .map(|(pending, _)| pending)
    }

    /// Like [`Connection::start`] for a Subscribe: the subscription is registered before the
    /// frame leaves, so no pushed record can arrive before its receiver exists.
    pub(crate) fn start_subscription<'a>(
        &self,
        make: impl FnOnce(u64) -> Frame<'a>,
    ) -> Result<(PendingReply, u64, mpsc::UnboundedReceiver<SubscriptionItem>), ClientError> {
        let (pending, receiver) = self.start_inner(make, true)?;
        let receiver = receiver.expect("a subscription registers a receiver");
        let subscription_id = pending.request_id;
        Ok((pending, subscription_id, receiver))
    }

    fn start_inner<'a>(
        &self,
        make: impl FnOnce(u64) -> Frame<'a>,
        subscribe: bool,
    ) -> Result<
        (
            PendingReply,
            Option<mpsc::UnboundedReceiver<SubscriptionItem>>,
        ),
        ClientError,
    > {
        let request_id = self.request_id();
        let mut bytes = Vec::new();
        encode_frame(&make(request_id), &mut bytes)?;
        self.queue(request_id, bytes, subscribe)
    }

    /// Registers for the answer to `request_id` (and its pushes, for a Subscribe) and queues
    /// its encoded frame.
    fn queue(
        &self,
        request_id: u64,
        bytes: Vec<u8>,
        subscribe: bool,
    ) -> Result<
        (
            PendingReply,
            Option<mpsc::UnboundedReceiver<SubscriptionItem>>,
        ),
        ClientError,
    > {
        let (sender, receiver) = oneshot::channel();
        let subscription = {
            let mut shared = self.state.lock();
            if let Some(reason) = &shared.closed {
                return Err(self.state.error(reason));
            }
            shared.pending.insert(request_id, sender);
            subscribe.then(|| {
                let (items, receiver) = mpsc::unbounded_channel();
                shared.subscriptions.insert(request_id, items);
                receiver
            })
        };
        if self.outbound.send(bytes).is_err() {
            let mut shared = self.state.lock();
            shared.pending.remove(&request_id);
            shared.subscriptions.remove(&request_id);
            return Err(ClientError::ConnectionLost { addr: self.addr() });
        }
        Ok((
            PendingReply {
                state: self.state.clone(),
                request_id,
                receiver,
            },
            subscription,
        ))
    }

    /// Queues a frame that gets no answer (Credit).
    pub(crate) fn send_oneway(&self, frame: &Frame<'_>) -> Result<(), ClientError> {
        let mut bytes = Vec::new();
        encode_frame(frame, &mut bytes)?;
        self.outbound
            .send(bytes)
            .map_err(|_| ClientError::ConnectionLost { addr: self.addr() })
    }

    /// Forgets a subscription locally: later pushes for it are dropped.
    pub(crate) fn forget_subscription(&self, subscription_id: u64) {
        self.state.lock().subscriptions.remove(&subscription_id);
    }
}

/// Says hello and, when the server's challenge asks for it (or the client has credentials),
/// authenticates. Returns what the server said and the decoder holding any bytes that followed
/// the handshake's last answer.
async fn handshake(
    addr: SocketAddr,
    credentials: Option<&Credentials>,
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
) -> Result<(ServerInfo, FrameDecoder), ClientError> {
    let handshake_error = |reason: String| ClientError::Handshake { addr, reason };
    let mut bytes = Vec::new();
    let hello = Frame {
        request_id: 0,
        body: Body::Hello(WireClientHello {
            magic: MAGIC,
            versions: PROTOCOL_VERSIONS.to_vec(),
        }),
    };
    encode_frame(&hello, &mut bytes)?;
    write
        .write_all(&bytes)
        .await
        .map_err(|e| handshake_error(format!("sending hello: {e}")))?;
    let mut decoder = FrameDecoder::new();
    let server = match next_handshake_answer(addr, read, &mut decoder).await? {
        HandshakeAnswer::Hello(server) => server,
        HandshakeAnswer::AuthOk => {
            return Err(handshake_error(
                "expected a hello, got an auth answer".into(),
            ));
        }
        HandshakeAnswer::Unexpected(opcode_and_flags) => {
            return Err(handshake_error(format!(
                "expected a hello, got {opcode_and_flags:?}"
            )));
        }
    };
    if !PROTOCOL_VERSIONS.contains(&server.version) {
        return Err(handshake_error(format!(
            "server chose version {} which we did not offer",
            server.version
        )));
    }
    if let Some(window_bytes) = server.ingest_credit_bytes
        && (window_bytes as usize) < FRAME_BYTES_MAX
    {
        return Err(handshake_error(format!(
            "the server granted {window_bytes} bytes of ingest credit, less than the largest frame"
        )));
    }
    let info = ServerInfo {
        version: server.version,
        core_count: server.core_count,
        core_id: server.core_id,
        core_ports: server.core_ports,
        ingest_credit_bytes: server.ingest_credit_bytes,
    };
    // Version 1 has no challenge and its servers verify nothing; a key is then unused.
    let Some(challenge) = server.challenge else {
        return Ok((info, decoder));
    };
    let Some(credentials) = credentials else {
        if challenge.auth_required {
            return Err(handshake_error(
                "the server verifies credentials and none are configured (set ClientConfig::credentials)".into(),
            ));
        }
        return Ok((info, decoder));
    };
    let signature = binary_auth::sign(
        &credentials.secret_access_key,
        server.version,
        &challenge.server_nonce,
        &credentials.access_key_id,
    );
    let auth = Frame {
        request_id: 0,
        body: Body::Auth(WireAuth {
            access_key_id: &credentials.access_key_id,
            signature,
        }),
    };
    bytes.clear();
    encode_frame(&auth, &mut bytes)?;
    write
        .write_all(&bytes)
        .await
        .map_err(|e| handshake_error(format!("sending auth: {e}")))?;
    match next_handshake_answer(addr, read, &mut decoder).await? {
        HandshakeAnswer::AuthOk => Ok((info, decoder)),
        HandshakeAnswer::Hello(_) => Err(handshake_error("a second hello".into())),
        HandshakeAnswer::Unexpected(opcode_and_flags) => Err(handshake_error(format!(
            "expected an answer to the auth, got {opcode_and_flags:?}"
        ))),
    }
}

/// An answer during the handshake, owned so that it outlives the decoder's buffer.
enum HandshakeAnswer {
    Hello(WireServerHello),
    AuthOk,
    /// Any other frame: its opcode and flags.
    Unexpected((u16, u16)),
}

/// The next answer of the handshake. An error answer fails the handshake with its status.
async fn next_handshake_answer(
    addr: SocketAddr,
    read: &mut OwnedReadHalf,
    decoder: &mut FrameDecoder,
) -> Result<HandshakeAnswer, ClientError> {
    let handshake_error = |reason: String| ClientError::Handshake { addr, reason };
    let mut chunk = vec![0u8; 4096];
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                return match frame.body {
                    Body::HelloOk(server) => Ok(HandshakeAnswer::Hello(server)),
                    Body::AuthOk => Ok(HandshakeAnswer::AuthOk),
                    Body::Error(error) => Err(ClientError::HandshakeRefused {
                        addr,
                        status: error.status,
                        message: error.message.to_owned(),
                    }),
                    other => Ok(HandshakeAnswer::Unexpected(other.opcode_and_flags())),
                };
            }
            Ok(None) => {}
            Err(error) => return Err(handshake_error(error.to_string())),
        }
        let n = read
            .read(&mut chunk)
            .await
            .map_err(|e| handshake_error(format!("reading the handshake: {e}")))?;
        if n == 0 {
            return Err(handshake_error(
                "server closed the connection during the handshake".into(),
            ));
        }
        decoder.push(&chunk[..n]);
    }
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    state: Arc<State>,
) {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while let Some(first) = queue.recv().await {
        frames.clear();
        let mut bytes = first.len();
        frames.push(first);
        // Everything queued meanwhile goes out in the same system call: pipelined requests
        // cost one per burst rather than one per frame. The write is vectored, so a burst is
        // not copied into one buffer first (that copy was ~10 % of the load generator's core
        // with 500 KB frames).
        while bytes < WRITE_COALESCE_BYTES_MAX && frames.len() < WRITE_COALESCE_FRAMES_MAX {
            match queue.try_recv() {
                Ok(more) => {
                    bytes += more.len();
                    frames.push(more);
                }
                Err(_) => break,
            }
        }
        if let Err(error) = write_all_vectored(&mut write, &frames).await {
            tracing::debug!(addr = %state.addr, %error, "Write failed; closing the connection.");
            state.close(CloseReason::Lost);
            return;
        }
    }
}

/// Writes every byte of `frames`, in order, in as few vectored writes as the socket takes.
async fn write_all_vectored(write: &mut OwnedWriteHalf, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        frames.iter().map(|f| std::io::IoSlice::new(f)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let written = write.write_vectored(rest).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, written);
    }
    Ok(())
}

async fn read_loop(
    mut read: OwnedReadHalf,
    mut decoder: FrameDecoder,
    state: Arc<State>,
    writer: AbortHandle,
) {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let reason = 'connection: loop {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(reason) = dispatch(&state, frame) {
                        break 'connection CloseReason::Protocol(reason);
                    }
                }
                Ok(None) => break,
                Err(error) => break 'connection CloseReason::Protocol(error.to_string()),
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) => break CloseReason::Lost,
            Ok(n) => decoder.push(&chunk[..n]),
            Err(error) => {
                tracing::debug!(addr = %state.addr, %error, "Read failed; closing the connection.");
                break CloseReason::Lost;
            }
        }
    };
    writer.abort();
    state.close(reason);
}

/// Hands one decoded frame to whoever waits for it. An error is a protocol violation that ends
/// the connection.
fn dispatch(state: &State, frame: Frame<'_>) -> Result<(), String> {
    let request_id = frame.request_id;
    let reply = match frame.body {
        Body::RecordsEvent(records) => {
            let records = owned_records(&records)?;
            let mut shared = state.lock();
            if let Some(items) = shared.subscriptions.get(&request_id)
                && items.send(SubscriptionItem::Records(records)).is_err()
            {
                shared.subscriptions.remove(&request_id);
            }
            return Ok(());
        }
        Body::SubscriptionEnded(ended) => {
            let result = if ended.status.is_ok() {
                Ok(())
            } else {
                Err(ClientError::Server {
                    status: ended.status,
                    message: ended.message.to_owned(),
                })
            };
            if let Some(items) = state.lock().subscriptions.remove(&request_id) {
                let _ = items.send(SubscriptionItem::Ended(result));
            }
            return Ok(());
        }
        Body::IngestCredit(credit) => {
            return match &state.ingest {
                Some(ingest) => ingest.give_back(credit.bytes),
                None => Err("an IngestCredit on a connection without ingest credit".into()),
            };
        }
        Body::Error(error) => {
            // A refused Subscribe opens no subscription.
            state.lock().subscriptions.remove(&request_id);
            Err(ClientError::Server {
                status: error.status,
                message: error.message.to_owned(),
            })
        }
        Body::Pong => Ok(Reply::Pong),
        Body::CreateStreamOk => Ok(Reply::CreateStreamOk),
        Body::DescribeStreamOk(d) => {
            let shards = d
                .shards
                .iter()
                .map(|s| {
                    Ok(Shard {
                        shard_index: s.shard_index,
                        parent_shard_index: s.parent_shard_index,
                        adjacent_parent_shard_index: s.adjacent_parent_shard_index,
                        hash_range: s.hash_range.try_into().map_err(|e| format!("{e}"))?,
                        core_id: s.core_id,
                        starting_sequence_number: sequence_number(s.starting_sequence_number)?,
                        ending_sequence_number: s
                            .ending_sequence_number
                            .map(sequence_number)
                            .transpose()?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Reply::DescribeStream(StreamDescription {
                stream_name: d.stream_name.to_owned(),
                stream_status: d.stream_status.into(),
                stream_mode: d.stream_mode.into(),
                retention_period_hours: d.retention_period_hours,
                stream_creation_timestamp_ms: d.stream_creation_timestamp_ms,
                shards,
            }))
        }
        Body::ListStreamsOk(l) => Ok(Reply::ListStreams {
            stream_names: l.stream_names.iter().map(|s| (*s).to_owned()).collect(),
            has_more_streams: l.has_more_streams,
        }),
        Body::GetShardMapOk(m) => {
            let shards = m
                .shards
                .iter()
                .map(|e| {
                    Ok(ShardMapEntry {
                        shard_index: e.shard_index,
                        hash_range: e.hash_range.try_into().map_err(|e| format!("{e}"))?,
                        core_id: e.core_id,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Reply::ShardMap(ShardMap::new(shards)))
        }
        Body::PutBatchOk(r) => Ok(Reply::PutBatch(
            r.records
                .iter()
                .map(|r| match r {
                    Ok(s) => sequence_number(*s).map(Ok),
                    Err(status) => Ok(Err(*status)),
                })
                .collect::<Result<_, String>>()?,
        )),
        Body::ReadOk(records) => Ok(Reply::Read(owned_records(&records)?)),
        Body::SubscribeOk => Ok(Reply::SubscribeOk),
        Body::UnsubscribeOk => Ok(Reply::UnsubscribeOk),
        Body::HelloOk(_) => return Err("a second hello".into()),
        Body::AuthOk => return Err("an auth answer after the handshake".into()),
        other => {
            return Err(format!(
                "a request frame {:?} from the server",
                other.opcode_and_flags()
            ));
        }
    };
    if let Some(sender) = state.lock().pending.remove(&request_id) {
        // The requester may have timed out or gone away; its answer is then dropped.
        let _ = sender.send(reply);
    }
    Ok(())
}

fn sequence_number(wire: WireSequenceNumber) -> Result<SequenceNumber, String> {
    SequenceNumber::try_from(wire).map_err(|e| e.to_string())
}

fn owned_records(batch: &WireRecords<'_>) -> Result<Records, String> {
    let records = batch
        .records
        .iter()
        .map(|r| {
            Ok(Record {
                sequence_number: sequence_number(batch.sequence_number(r))?,
                approximate_arrival_timestamp_ms: r.approximate_arrival_timestamp_ms,
                partition_key: r.partition_key.to_owned(),
                data: r.data.to_vec(),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Records {
        shard_index: batch.shard_index,
        records,
        next_position: batch.next_position,
        millis_behind_latest: batch.millis_behind_latest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u32 = FRAME_BYTES_MAX as u32;

    #[tokio::test]
    async fn a_put_waits_until_the_credit_given_back_holds_its_frame() {
        let window = Arc::new(IngestWindow::new(WINDOW));
        window.spend(WINDOW - 100).await.expect("fits");
        let waiting = tokio::spawn({
            let window = window.clone();
            async move { window.spend(200).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "200 bytes do not fit a balance of 100"
        );
        window.give_back(100).expect("spent before");
        let spent = waiting.await.expect("the task ran");
        assert_eq!(spent, Some(()));
        assert_eq!(window.balance(), 0);
    }

    #[tokio::test]
    async fn giving_back_more_than_was_spent_is_a_protocol_violation() {
        let window = IngestWindow::new(WINDOW);
        assert!(window.give_back(1).is_err());
        window.spend(10).await.expect("fits");
        assert!(window.give_back(11).is_err());
        window.give_back(10).expect("what was spent");
        assert_eq!(window.balance(), WINDOW as usize);
    }

    #[tokio::test]
    async fn a_closed_connection_fails_the_puts_waiting_for_credit() {
        let window = Arc::new(IngestWindow::new(WINDOW));
        window.spend(WINDOW).await.expect("fits");
        let waiting = tokio::spawn({
            let window = window.clone();
            async move { window.spend(1).await }
        });
        tokio::task::yield_now().await;
        window.close();
        assert_eq!(waiting.await.expect("the task ran"), None);
    }
}
