//! The Kinesis Data Streams service, on the storage runtime: the `KinesisApi` implementation
//! (control plane on the catalog, data plane on the engine's write and read paths), enhanced
//! fan-out delivery on the narrow storage face, and per-shard throughput limits.

mod api;
pub mod efo;
pub mod throttle;
