//! sinks: Amazon Data Firehose on Sluice. Owns the Firehose API (control plane and DirectPut,
//! `api`), delivery stream definitions and their persistence (`registry`, `store`), and
//! delivery: buffering, compression, the S3 key grammar, the S3 destination and at-least-once
//! checkpoints (`delivery`), with the latest error of each delivery stage that is failing
//! (`failure`, shown by DescribeDeliveryStream).
//!
//! It reaches records only through the narrow storage face (`sluice_core::storage`): a DirectPut
//! delivery stream's records are appended to an internal Kinesis stream
//! (`sluice_core::internal_stream`) and read back from it, and a KinesisStreamAsSource one reads
//! the user's stream. It must not touch segments, executors' internals or shard ownership; the
//! server binary wires it to the HTTP front end (shard cores) and to a service core (tokio).

#![forbid(unsafe_code)]

pub mod api;
pub mod buffer;
pub mod compression;
pub mod delivery;
pub mod error;
pub mod failure;
pub mod format;
pub mod http_delivery;
pub mod http_endpoint;
pub mod kpl;
pub mod metrics;
pub mod model;
pub mod opensearch;
pub mod partition;
pub mod prefix;
pub mod redshift;
pub mod registry;
pub mod s3;
pub mod store;
pub mod transform;
mod wire;

pub use api::{Firehose, is_firehose_target};
pub use registry::Registry;
