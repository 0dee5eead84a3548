//! io: the storage runtime. Owns the executors and their CPU placement (shard cores that own
//! logs, service cores that own none), cross-core routing, segment files (io_uring, O_DIRECT),
//! indexes, recovery, retention, the persistence thread for the catalog and consumer
//! checkpoints, and [`storage::StorageHandle`], the implementation of the narrow storage face
//! that every service reads and writes through. The Kinesis Data Streams service on top of it
//! lives in [`kds`]. Must not touch HTTP, JSON on the wire, CBOR or SigV4. Its public API shows
//! no glommio type, so the runtime could be swapped.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod catalog_store;
pub mod engine;
pub mod kds;
pub mod keystore;
pub mod log;
pub mod metrics;
mod persist;
pub mod service;
pub mod storage;
