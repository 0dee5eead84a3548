//! The Sluice binary protocol: a pure codec for framed, little-endian TCP, specified byte by byte
//! in `docs/binary-protocol.md`. Nothing here touches sockets or executors; the server and the
//! `sluice-client` crate carry the bytes.
//!
//! - [`frame`] holds the frame header, the opcodes and the `Wire*` types of every payload. They
//!   are kept apart from `sluice_core`'s domain types; [`convert`] maps between the two.
//! - [`encode`] writes frames, including [`RecordsWriter`], which streams records straight from a
//!   read buffer into a response without building an intermediate list.
//! - [`decode`] reads frames. [`decode_frame`] is the single entry point (and the fuzz target's);
//!   [`FrameDecoder`] takes bytes as they arrive from a socket. Decoding never panics and borrows
//!   strings and record data from the input.
//! - [`auth`] computes and checks the HMAC-SHA256 a client authenticates with (version 2).
//! - [`status`] is the stable numeric status code table.
//! - [`limits`] names every bound of the protocol in one place.

pub mod auth;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod frame;
pub mod limits;
pub mod status;

#[cfg(test)]
mod tests;

pub use decode::{BodyError, DecodeError, FrameDecoder, decode_frame};
pub use encode::{EncodeError, RecordsWriter, encode_frame};
pub use frame::*;
pub use status::{StatusCode, WireStatus};
