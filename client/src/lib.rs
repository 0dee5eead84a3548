//! sluice-client: a Tokio client for Sluice's binary protocol (`docs/binary-protocol.md`).
//! Owns connections, the handshake, request pipelining, reconnects with backoff, the batching
//! [`Producer`], push [`Subscription`]s with credit-based flow control, and shard-aware routing.
//! It must not hold protocol logic of its own: every byte is encoded and decoded by
//! `sluice_protocols::binary`, and domain values are `sluice_core`'s.
//!
//! # Connecting and managing streams
//!
//! ```no_run
//! # async fn example() -> Result<(), sluice_client::ClientError> {
//! use sluice_client::Client;
//!
//! let client = Client::connect("127.0.0.1:4568").await?;
//! client.create_stream("orders", 4).await?;
//! let description = client.describe_stream("orders").await?;
//! for shard in &description.shards {
//!     println!("{} on core {}: {:?}", shard.shard_id(), shard.core_id, shard.hash_range);
//! }
//! println!("{:?}", client.list_streams().await?);
//! # Ok(()) }
//! ```
//!
//! # Putting a batch
//!
//! Requests pipeline: many may be in flight on one connection and answers are matched by
//! request id. Each record of a batch succeeds or fails on its own.
//!
//! ```no_run
//! # async fn example(client: sluice_client::Client) -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{PutRecord, Route};
//!
//! let records = [
//!     PutRecord::new("customer-1", b"first"),
//!     PutRecord { route: Route::ShardIndex(2), partition_key: "", data: b"to shard 2" },
//! ];
//! for result in client.put_batch("orders", &records).await? {
//!     match result {
//!         Ok(sequence_number) => println!("stored as {sequence_number}"),
//!         Err(status) => println!("refused: {status}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Producing with batching and linger
//!
//! ```no_run
//! # async fn example(client: sluice_client::Client) -> Result<(), sluice_client::ClientError> {
//! use std::time::Duration;
//! use sluice_client::ProducerConfig;
//!
//! let producer = client.producer("orders", ProducerConfig {
//!     batch_records_max: 500,
//!     linger: Duration::from_millis(2),
//!     ..ProducerConfig::default()
//! });
//! // `send` queues at once; awaiting gives the sequence number when the batch is acknowledged.
//! let pending: Vec<_> = (0..1000).map(|i| producer.send(format!("key-{i}"), vec![0u8; 100])).collect();
//! for sent in pending {
//!     let sequence_number = sent.await?;
//!     assert_eq!(sequence_number.to_string().len(), 56);
//! }
//! producer.flush().await?;
//! # Ok(()) }
//! ```
//!
//! # Reading and subscribing
//!
//! ```no_run
//! # async fn example(client: sluice_client::Client) -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{ReadLimits, StartPosition};
//!
//! let page = client.read("orders", 0, StartPosition::TrimHorizon, ReadLimits::default()).await?;
//! for record in &page.records {
//!     println!("{} {:?}", record.sequence_number, record.data);
//! }
//!
//! // Records are pushed as they commit; credits are granted back as events are taken.
//! let mut subscription = client.subscribe("orders", 0, StartPosition::Latest).await?;
//! while let Some(event) = subscription.next().await {
//!     let event = event?;
//!     println!("{} records, {} ms behind", event.records.len(), event.millis_behind_latest);
//! }
//! # Ok(()) }
//! ```
//!
//! # Shard-aware mode
//!
//! With [`ClientConfig::shard_aware`], the client fetches each stream's shard map, hashes every
//! record's partition key with MD5 as Kinesis does, and sends each core's records straight to
//! that core's own port, so no request crosses cores inside the server. A core whose port
//! cannot be reached falls back to the shared port, where the server forwards.
//!
//! ```no_run
//! # async fn example() -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{Client, ClientConfig};
//!
//! let config = ClientConfig { shard_aware: true, ..ClientConfig::default() };
//! let client = Client::connect_with("127.0.0.1:4568", config).await?;
//! let map = client.shard_map("orders").await?;
//! println!("key 'a' lives on core {:?}", map.shard_for_partition_key("a").map(|s| s.core_id));
//! # Ok(()) }
//! ```
//!
//! # Authentication
//!
//! A server started with credentials (`--credentials ID:SECRET`) serves a connection only after
//! it proves it holds one of them. Set [`ClientConfig::credentials`] and every connection the
//! client opens, reconnects and per-core connections included, answers the server's challenge
//! with an HMAC-SHA256 made with the secret; the secret itself is never sent. A server without
//! credentials (on loopback) needs none and accepts any.
//!
//! ```no_run
//! # async fn example() -> Result<(), sluice_client::ClientError> {
//! use sluice_client::{Client, ClientConfig, Credentials};
//!
//! let config = ClientConfig {
//!     credentials: Some(Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG")),
//!     ..ClientConfig::default()
//! };
//! let _client = Client::connect_with("10.0.0.7:4568", config).await?;
//! # Ok(()) }
//! ```
//!
//! # Connection loss
//!
//! When a connection drops, requests in flight fail with [`ClientError::ConnectionLost`] (their
//! outcome is unknown) and subscriptions end with it. The next request reconnects, retrying
//! with exponential backoff (`reconnect_backoff_initial` doubling up to `reconnect_backoff_max`,
//! `reconnect_attempts_max` attempts) before failing with [`ClientError::Reconnect`].

#![forbid(unsafe_code)]

mod client;
mod connection;
mod endpoint;
mod error;
mod producer;
mod subscription;
mod types;

pub use client::{Client, ClientConfig};
pub use error::ClientError;
pub use producer::{Producer, ProducerConfig, SendFuture};
pub use sluice_core::sequence_number::SequenceNumber;
pub use sluice_protocols::binary::{StatusCode, WireStatus};
pub use subscription::Subscription;
pub use types::{
    Credentials, PutRecord, ReadLimits, Record, Records, Route, ServerInfo, Shard, ShardMap,
    ShardMapEntry, StartPosition, StreamDescription,
};
