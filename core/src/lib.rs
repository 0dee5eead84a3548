//! core: the Kinesis domain model. Owns streams, shards, hash ranges, partition-key routing,
//! sequence numbers, shard iterators, limits, validation, the catalog state machine and the
//! error kinds. Must not touch files, sockets, executors or clocks: time is passed in as
//! milliseconds since the Unix epoch.

#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod consumer;
pub mod control;
pub mod error;
pub mod hash_key;
pub mod limits;
pub mod next_token;
pub mod policy;
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
