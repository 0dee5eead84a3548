//! The Kinesis Data Streams service, on the storage runtime: the `KinesisApi` implementation
//! (control plane on the catalog, data plane on the engine's write and read paths, and the
//! counters of enhanced fan-out delivery, which itself runs in `protocols` on the narrow storage
//! face) and per-shard throughput limits.

mod api;
pub mod throttle;
