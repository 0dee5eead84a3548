//! The Sluice binary protocol, specified byte by byte in `docs/binary-protocol.md`: a pure codec
//! for framed, little-endian TCP, and the server's connection handler. Nothing here opens a
//! socket or picks an executor: the server binary accepts connections and hands them to
//! [`server::BinaryServer`], and the `sluice-client` crate carries the client's bytes.
//!
//! - [`frame`] holds the frame header, the opcodes and the `Wire*` types of every payload. They
//!   are kept apart from `sluice_core`'s domain types; [`convert`] maps between the two.
//! - [`encode`] writes frames, including [`RecordsWriter`], which streams records straight from a
//!   read buffer into a response without building an intermediate list.
//! - [`decode`] reads frames. [`decode_frame`] is the single entry point (and the fuzz target's);
//!   [`FrameDecoder`] takes bytes as they arrive from a socket. Decoding never panics and borrows
//!   strings and record data from the input.
//! - [`credit`] is the ingest credit ledger of version 3, kept by the server and the client alike.
//! - [`auth`] computes and checks the HMAC-SHA256 a client authenticates with (version 2).
//! - [`status`] is the stable numeric status code table.
//! - [`limits`] names every bound of the protocol in one place.
//! - [`server`] is the connection handler: handshake, dispatch to the Kinesis API and the
//!   storage face, outbox and subscriptions, generic over the socket and the executor.

pub mod auth;
pub mod convert;
pub mod credit;
pub mod decode;
pub mod encode;
pub mod frame;
pub mod limits;
pub mod server;
pub mod status;

#[cfg(test)]
mod tests;

pub use credit::{IngestCredit, IngestCreditError};
pub use decode::{BodyError, DecodeError, FrameDecoder, decode_frame};
pub use encode::{EncodeError, RecordsWriter, encode_frame};
pub use frame::*;
pub use status::{StatusCode, WireStatus};
