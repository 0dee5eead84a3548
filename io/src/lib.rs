//! io: the storage engine. Owns executors and CPU placement, shard ownership, cross-core
//! routing, segment files (io_uring, O_DIRECT), indexes, recovery, retention and catalog
//! persistence. Must not touch HTTP, JSON on the wire, CBOR or SigV4. Its public API shows no
//! glommio type, so the runtime could be swapped.

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
