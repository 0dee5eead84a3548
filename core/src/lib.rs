//! core: the Kinesis domain model. Owns streams, shards, hash ranges and partition-key routing,
//! sequence numbers, shard iterators and NextTokens, limits, validation, the error kinds, the
//! Kinesis operations as domain calls ([`KinesisApi`], SubscribeToShard included) and the catalog
//! state machine: stream lifecycle, tags, retention, resharding, enhanced fan-out consumers,
//! stream and account settings and resource policies.
//!
//! Must not touch files, sockets, executors, clocks or randomness: time is passed in as
//! milliseconds since the Unix epoch, and new shards are placed by a callback. Storage and
//! executors belong to `io`; wire formats (JSON, CBOR, SigV4, event streams, the binary protocol)
//! belong to `protocols`.

#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod consumer;
pub mod control;
pub mod error;
pub mod hash_key;
pub mod internal_stream;
pub mod large_buffers;
pub mod limits;
pub mod next_token;
pub mod policy;
pub mod prometheus;
pub mod reshard;
pub mod resource;
pub mod sequence_number;
pub mod shard_id;
pub mod shard_iterator;
pub mod storage;
pub mod subscribe;
pub mod tag_rules;
pub mod time_format;

pub use api::KinesisApi;
pub use error::{ErrorKind, KinesisError};
pub use hash_key::HashRange;
pub use sequence_number::SequenceNumber;
