//! [`Client`]: the operations of the binary protocol over a reconnecting connection, with
//! optional shard-aware routing straight to the core that owns each shard.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sluice_core::hash_key::partition_key_hashes;
use sluice_core::sequence_number::SequenceNumber;
use sluice_protocols::binary::{
    Body, Frame, WireCreateStream, WireListStreams, WirePutBatch, WirePutRecord, WireRead,
    WireRoute, WireStatus, WireStreamName, WireSubscribe,
};
use tokio::net::ToSocketAddrs;

use crate::connection::{Connection, PendingReply, Reply};
use crate::endpoint::Endpoint;
use crate::error::ClientError;
use crate::producer::{Producer, ProducerConfig};
use crate::subscription::Subscription;
use crate::types::{
    Credentials, PutRecord, ReadLimits, Records, Route, ServerInfo, ShardMap, StartPosition,
    StreamDescription,
};

/// How a [`Client`] connects, retries and routes.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Bound on TCP connect plus handshake.
    pub connect_timeout: Duration,
    /// Bound on waiting for one answer; `None` waits for ever.
    pub request_timeout: Option<Duration>,
    /// The wait after the first failed reconnect; it doubles up to `reconnect_backoff_max`.
    pub reconnect_backoff_initial: Duration,
    pub reconnect_backoff_max: Duration,
    /// Connect attempts (the first is immediate) before a request fails with `Reconnect`.
    pub reconnect_attempts_max: u32,
    /// Send each record batch, read and subscription to the port of the core that owns the
    /// shard, using the stream's shard map. Without it everything goes to the shared port and
    /// the server forwards across cores.
    pub shard_aware: bool,
    /// Records a subscription may have delivered but not yet consumed (its credit window).
    pub subscription_credits: u32,
    /// The access key every connection authenticates with. Required by a server started with
    /// credentials; a server without any accepts it or its absence alike.
    pub credentials: Option<Credentials>,
    /// Retries of a PutBatch or Read the server answered `ServerBusy` (it is at its memory
    /// budget; nothing was done, so a retry is always safe), backing off from
    /// `busy_backoff_initial`, doubling up to `busy_backoff_max`. The last refusal is returned.
    pub busy_retries_max: u32,
    pub busy_backoff_initial: Duration,
    pub busy_backoff_max: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
            reconnect_backoff_initial: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(5),
            reconnect_attempts_max: 8,
            shard_aware: false,
            subscription_credits: 1000,
            credentials: None,
            busy_retries_max: 10,
            busy_backoff_initial: Duration::from_millis(20),
            busy_backoff_max: Duration::from_secs(2),
        }
    }
}

/// A handle to one server. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: Arc<ClientConfig>,
    shared: Endpoint,
    server: Mutex<ServerInfo>,
    cores: Mutex<HashMap<u16, Arc<Endpoint>>>,
    shard_maps: Mutex<HashMap<String, Arc<ShardMap>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // These maps hold plain values that a panic cannot leave half-updated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.shared.addr())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Client {
    /// Connects with the default configuration and completes the handshake. The first connect
    /// is tried once; reconnects later back off.
    pub async fn connect(
        addr: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<Client, ClientError> {
        Self::connect_with(addr, ClientConfig::default()).await
    }

    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Debug,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let shown = format!("{addr:?}");
        let resolved = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| ClientError::Resolve {
                addr: shown.clone(),
                source: Some(source),
            })?
            .next()
            .ok_or(ClientError::Resolve {
                addr: shown,
                source: None,
            })?;
        let connection = Connection::open(resolved, &config).await?;
        let server = connection.server().clone();
        let config = Arc::new(config);
        Ok(Client {
            inner: Arc::new(ClientInner {
                shared: Endpoint::new(resolved, config.clone(), Some(connection)),
                config,
                server: Mutex::new(server),
                cores: Mutex::new(HashMap::new()),
                shard_maps: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The address of the shared port.
    pub fn addr(&self) -> SocketAddr {
        self.inner.shared.addr()
    }

    /// What the server said in its latest hello on the shared port.
    pub fn server_info(&self) -> ServerInfo {
        lock(&self.inner.server).clone()
    }

    async fn shared_connection(&self) -> Result<Arc<Connection>, ClientError> {
        let connection = self.inner.shared.connection().await?;
        let mut server = lock(&self.inner.server);
        if *server != *connection.server() {
            *server = connection.server().clone();
        }
        Ok(connection)
    }

    /// The connection to core `core_id`'s own port, or the shared connection when the core has
    /// no port, is the shared connection's core, or cannot be reached.
    async fn core_connection(&self, core_id: u16) -> Result<Arc<Connection>, ClientError> {
        let shared = self.shared_connection().await?;
        let server = shared.server();
        let port = server
            .core_ports
            .get(usize::from(core_id))
            .copied()
            .unwrap_or(0);
        if core_id == server.core_id || port == 0 {
            return Ok(shared);
        }
        let addr = SocketAddr::new(shared.addr().ip(), port);
        let endpoint = {
            let mut cores = lock(&self.inner.cores);
            let endpoint = cores
                .entry(core_id)
                .or_insert_with(|| Arc::new(Endpoint::new(addr, self.inner.config.clone(), None)));
            // A restarted server may have moved the core to another port.
            if endpoint.addr() != addr {
                *endpoint = Arc::new(Endpoint::new(addr, self.inner.config.clone(), None));
            }
            endpoint.clone()
        };
        match endpoint.connection_once().await {
            Ok(connection) => Ok(connection),
            Err(error) => {
                tracing::debug!(core_id, %error, "Core port unreachable; using the shared port.");
                Ok(shared)
            }
        }
    }

    /// The connection for requests about `shard_index` of `stream_name`.
    async fn shard_connection(
        &self,
        stream_name: &str,
        shard_index: u32,
    ) -> Result<Arc<Connection>, ClientError> {
        if !self.inner.config.shard_aware {
            return self.shared_connection().await;
        }
        let map = self.shard_map(stream_name).await?;
        match map.shard_by_index(shard_index) {
            Some(entry) => self.core_connection(entry.core_id).await,
            None => self.shared_connection().await,
        }
    }

    async fn wait(&self, pending: PendingReply) -> Result<Reply, ClientError> {
        pending.wait(self.inner.config.request_timeout).await
    }

    fn unexpected(&self, reply: Reply) -> ClientError {
        ClientError::Protocol {
            addr: self.addr(),
            reason: format!("unexpected answer {reply:?}"),
        }
    }

    /// Sends a request on the shared connection and waits for its answer.
    async fn call<'a>(&self, make: impl FnOnce(u64) -> Frame<'a>) -> Result<Reply, ClientError> {
        let connection = self.shared_connection().await?;
        let pending = connection.start(make)?;
        self.wait(pending).await
    }

    /// One round trip; returns its duration.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let started = Instant::now();
        match self
            .call(|request_id| Frame {
                request_id,
                body: Body::Ping,
            })
            .await?
        {
            Reply::Pong => Ok(started.elapsed()),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn create_stream(
        &self,
        stream_name: &str,
        shard_count: u32,
    ) -> Result<(), ClientError> {
        let body = Body::CreateStream(WireCreateStream {
            stream_name,
            shard_count,
        });
        match self.call(|request_id| Frame { request_id, body }).await? {
            Reply::CreateStreamOk => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    pub async fn describe_stream(
        &self,
        stream_name: &str,
    ) -> Result<StreamDescription, ClientError> {
        let body = Body::DescribeStream(WireStreamName { stream_name });
        match self.call(|request_id| Frame { request_id, body }).await? {
            Reply::DescribeStream(description) => Ok(description),
            other => Err(self.unexpected(other)),
        }
    }

    /// Every stream name, fetching as many pages as the server needs.
    pub async fn list_streams(&self) -> Result<Vec<String>, ClientError> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let start = names.last().cloned();
            let body = Body::ListStreams(WireListStreams {
                exclusive_start_stream_name: start.as_deref(),
                limit: 0,
            });
            match self.call(|request_id| Frame { request_id, body }).await? {
                Reply::ListStreams {
                    stream_names,
                    has_more_streams,
                } => {
                    let progressed = !stream_names.is_empty();
                    names.extend(stream_names);
                    if !has_more_streams || !progressed {
                        return Ok(names);
                    }
                }
                other => return Err(self.unexpected(other)),
            }
        }
    }

    /// The stream's shard map, fetched once and cached; see [`Client::refresh_shard_map`].
    pub async fn shard_map(&self, stream_name: &str) -> Result<Arc<ShardMap>, ClientError> {
        if let Some(map) = lock(&self.inner.shard_maps).get(stream_name) {
            return Ok(map.clone());
        }
        self.refresh_shard_map(stream_name).await
    }

    /// Fetches the stream's shard map again (after a reshard, or when routing looks stale).
    pub async fn refresh_shard_map(&self, stream_name: &str) -> Result<Arc<ShardMap>, ClientError> {
        let body = Body::GetShardMap(WireStreamName { stream_name });
        match self.call(|request_id| Frame { request_id, body }).await? {
            Reply::ShardMap(map) => {
                let map = Arc::new(map);
                lock(&self.inner.shard_maps).insert(stream_name.to_owned(), map.clone());
                Ok(map)
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Puts records into one stream in one round trip (one frame per owning core in shard-aware
    /// mode). The result has one entry per record, in order: its sequence number, or the status
    /// that refused it. The whole call fails only when the request as a whole does (unknown
    /// stream, lost connection, …).
    pub async fn put_batch(
        &self,
        stream_name: &str,
        records: &[PutRecord<'_>],
    ) -> Result<Vec<Result<SequenceNumber, WireStatus>>, ClientError> {
        let (groups, hash_keys): (Vec<CoreGroup>, Vec<Option<u128>>) =
            if self.inner.config.shard_aware && !records.is_empty() {
                self.group_by_core(stream_name, records).await?
            } else {
                let all = (0..records.len()).collect();
                let hash_keys = hash_keys_to_send(records);
                (vec![(self.shared_connection().await?, all)], hash_keys)
            };
        let wire = |indexes: &mut dyn Iterator<Item = usize>| -> Vec<WirePutRecord<'_>> {
            indexes
                .map(|i| WirePutRecord {
                    route: match hash_keys.get(i).copied().flatten() {
                        Some(hash_key) => WireRoute::ExplicitHashKey(hash_key),
                        None => records[i].route.into(),
                    },
                    partition_key: records[i].partition_key,
                    data: records[i].data,
                })
                .collect()
        };
        let mut results: Vec<Option<Result<SequenceNumber, WireStatus>>> =
            vec![None; records.len()];
        let mut backoff = self.busy_backoff();
        let mut todo = groups;
        while !todo.is_empty() {
            // Every group's frame is queued before any answer is awaited, so the cores work in
            // parallel.
            let mut pending = Vec::with_capacity(todo.len());
            for (connection, indexes) in todo {
                let body = Body::PutBatch(WirePutBatch {
                    stream_name,
                    records: wire(&mut indexes.iter().copied()),
                });
                let reply = connection
                    .start_put(|request_id| Frame { request_id, body })
                    .await?;
                pending.push((connection, reply, indexes));
            }
            // Groups the server was too busy to take; nothing of them was stored.
            let mut busy = Vec::new();
            for (connection, reply, indexes) in pending {
                match self.wait(reply).await {
                    Ok(Reply::PutBatch(answers)) if answers.len() == indexes.len() => {
                        for (i, answer) in indexes.into_iter().zip(answers) {
                            results[i] = Some(answer);
                        }
                    }
                    Ok(other) => return Err(self.unexpected(other)),
                    Err(error) if error.is_busy() && backoff.retries_left() => {
                        busy.push((connection, indexes));
                    }
                    Err(error) => return Err(error),
                }
            }
            if !busy.is_empty() {
                backoff.wait().await;
            }
            todo = busy;
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every record belongs to exactly one group"))
            .collect())
    }

    /// Groups records by the core owning their shard. Also returns the hash key each record is
    /// sent with ([`hash_keys_to_send`]), which picked its shard.
    async fn group_by_core(
        &self,
        stream_name: &str,
        records: &[PutRecord<'_>],
    ) -> Result<(Vec<CoreGroup>, Vec<Option<u128>>), ClientError> {
        let map = self.shard_map(stream_name).await?;
        let mut by_core: HashMap<Option<u16>, Vec<usize>> = HashMap::new();
        let hash_keys = hash_keys_to_send(records);
        for (i, (record, &hash_key)) in records.iter().zip(&hash_keys).enumerate() {
            let shard = match hash_key {
                Some(hash_key) => map.shard_for_hash_key(hash_key),
                None => map.shard_for(record.route, record.partition_key),
            };
            by_core.entry(shard.map(|s| s.core_id)).or_default().push(i);
        }
        let mut groups = Vec::with_capacity(by_core.len());
        for (core, indexes) in by_core {
            let connection = match core {
                Some(core_id) => self.core_connection(core_id).await?,
                // Not in the map (stale map or a bad shard index): the server decides.
                None => self.shared_connection().await?,
            };
            groups.push((connection, indexes));
        }
        Ok((groups, hash_keys))
    }

    /// Reads up to `limits` records of one shard from `start`.
    pub async fn read(
        &self,
        stream_name: &str,
        shard_index: u32,
        start: StartPosition,
        limits: ReadLimits,
    ) -> Result<Records, ClientError> {
        let mut backoff = self.busy_backoff();
        loop {
            let connection = self.shard_connection(stream_name, shard_index).await?;
            let body = Body::Read(WireRead {
                stream_name,
                shard_index,
                start: start.into(),
                records_max: limits.records_max,
                bytes_max: limits.bytes_max,
            });
            let pending = connection.start(|request_id| Frame { request_id, body })?;
            match self.wait(pending).await {
                Ok(Reply::Read(records)) => return Ok(records),
                Ok(other) => return Err(self.unexpected(other)),
                Err(error) if error.is_busy() && backoff.retries_left() => backoff.wait().await,
                Err(error) => return Err(error),
            }
        }
    }

    fn busy_backoff(&self) -> BusyBackoff {
        let config = &self.inner.config;
        BusyBackoff {
            retries_left: config.busy_retries_max,
            delay: config.busy_backoff_initial,
            delay_max: config.busy_backoff_max,
        }
    }

    /// Opens a push subscription on one shard with the configured credit window.
    pub async fn subscribe(
        &self,
        stream_name: &str,
        shard_index: u32,
        start: StartPosition,
    ) -> Result<Subscription, ClientError> {
        self.subscribe_with_credits(
            stream_name,
            shard_index,
            start,
            self.inner.config.subscription_credits,
        )
        .await
    }

    /// Opens a push subscription that may hold up to `credits` undelivered records.
    pub async fn subscribe_with_credits(
        &self,
        stream_name: &str,
        shard_index: u32,
        start: StartPosition,
        credits: u32,
    ) -> Result<Subscription, ClientError> {
        let credits = credits.clamp(
            1,
            sluice_protocols::binary::limits::SUBSCRIPTION_CREDITS_MAX,
        );
        let connection = self.shard_connection(stream_name, shard_index).await?;
        let body = Body::Subscribe(WireSubscribe {
            stream_name,
            shard_index,
            start: start.into(),
            credits,
        });
        let (pending, subscription_id, items) =
            connection.start_subscription(|request_id| Frame { request_id, body })?;
        match self.wait(pending).await {
            Ok(Reply::SubscribeOk) => Ok(Subscription::new(
                connection,
                subscription_id,
                items,
                credits,
                self.inner.config.request_timeout,
            )),
            Ok(other) => {
                connection.forget_subscription(subscription_id);
                Err(self.unexpected(other))
            }
            Err(error) => {
                connection.forget_subscription(subscription_id);
                Err(error)
            }
        }
    }

    /// A batching producer for one stream. Must be called inside a Tokio runtime.
    pub fn producer(&self, stream_name: impl Into<String>, config: ProducerConfig) -> Producer {
        Producer::spawn(self.clone(), stream_name.into(), config)
    }
}

/// The retries left for one request the server answered `ServerBusy`, and the next wait.
struct BusyBackoff {
    retries_left: u32,
    delay: Duration,
    delay_max: Duration,
}

impl BusyBackoff {
    fn retries_left(&self) -> bool {
        self.retries_left > 0
    }

    /// Spends one retry and waits before it.
    async fn wait(&mut self) {
        assert!(self.retries_left > 0);
        self.retries_left -= 1;
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(self.delay_max);
    }
}

/// The connection to one core and the indexes of the records of a batch it takes.
type CoreGroup = (Arc<Connection>, Vec<usize>);

/// The hash key each record of a batch is sent with. A record routed by a valid partition key
/// goes with the key's MD5, which routes it to exactly the shard the server would pick, so that
/// the server does not hash it (MD5 was the largest single cost of binary ingest on the server's
/// core; producers are many, the appliance's cores few). A record with an invalid key goes out
/// as it is, for the server to refuse with the same error as over HTTP. The keys are hashed
/// together in SIMD lanes ([`partition_key_hashes`]: about a ninth of MD5's cost one key at a
/// time, which took 7 % of the load generator's core at 1 KB records).
fn hash_keys_to_send(records: &[PutRecord<'_>]) -> Vec<Option<u128>> {
    let sends: Vec<bool> = records.iter().map(sends_hash_key).collect();
    let keyed: Vec<&str> = records
        .iter()
        .zip(&sends)
        .filter(|(_, sends)| **sends)
        .map(|(record, _)| record.partition_key)
        .collect();
    let mut hashes = partition_key_hashes(&keyed).into_iter();
    sends
        .into_iter()
        .map(|sends| if sends { hashes.next() } else { None })
        .collect()
}

fn sends_hash_key(record: &PutRecord<'_>) -> bool {
    record.route == Route::PartitionKey
        && sluice_core::api::check_partition_key(0, record.partition_key, true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::hash_key::partition_key_hash;

    #[test]
    fn records_with_a_valid_partition_key_are_sent_with_its_md5_and_others_as_they_are() {
        let long = "k".repeat(257);
        let explicit = PutRecord {
            route: Route::ExplicitHashKey(7),
            partition_key: "user-17",
            data: b"x",
        };
        let batch = [
            PutRecord::new("user-17", b"x"),
            PutRecord::new("", b"x"),
            PutRecord::new(&long, b"x"),
            explicit,
            PutRecord::new("user-18", b"y"),
        ];
        assert_eq!(
            hash_keys_to_send(&batch),
            [
                Some(partition_key_hash("user-17")),
                None,
                None,
                None,
                Some(partition_key_hash("user-18")),
            ]
        );
    }
}
