//! The in-memory model, [`crate::model`], under the path the crate's tests name it by.
//! `kinesis/cbor_tests.rs` includes this file with `#[path]`, so it stays a file.

pub use crate::model::*;
