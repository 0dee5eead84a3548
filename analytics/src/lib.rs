//! analytics: Kinesis Data Analytics for SQL. Owns the KDA SQL dialect (parse), the compiled
//! plans over Arrow columnar batches (filters, projections, scalar functions; tumbling, stagger
//! and sliding windows; stream joins; joins with reference tables; TOP_K/COUNT_DISTINCT;
//! RANDOM_CUT_FOREST, RANDOM_CUT_FOREST_WITH_EXPLANATION and HOTSPOTS), in-application streams and pumps, the application catalog and its API
//! (`KinesisAnalytics_20150814.*`), the runner that reads an application's input through the
//! narrow storage face and writes its outputs back through it, the window snapshots that carry
//! stagger windows over a restart (files beside the catalog), and the reading of reference data
//! objects from S3-compatible storage.
//!
//! Must not touch segments, executors' internals or the Kinesis control plane: every record goes
//! through `sluice_core::storage::{RecordLog, CheckpointLog}`.
#![deny(unsafe_code)]

pub mod batch;
pub mod dialect;
pub mod expr;
pub mod hotspots;
pub mod input;
pub mod items;
pub mod join;
mod json_row;
pub mod lambda;
pub mod metrics;
mod nesting;
pub mod output;
pub mod peers;
pub mod pipeline;
pub mod plan;
pub mod program;
pub mod rcf;
pub mod reference;
pub mod row_function;
pub mod run_file;
pub mod s3;
pub mod schema_wire;
pub mod snapshot;
pub mod snapshot_store;
pub mod types;
pub mod value;
pub mod watermark;
pub mod window;

pub mod api;
pub mod runner;
pub mod sliding;

#[cfg(test)]
mod tests;
