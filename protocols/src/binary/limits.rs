//! Every bound of the binary protocol, named in one place. The decoder enforces them on input,
//! the encoder on output, so neither side can make the other allocate without bound.

/// The four bytes a client hello opens with.
pub const MAGIC: [u8; 4] = *b"SLCE";

/// The protocol versions this codec speaks, oldest first. Version 2 added authentication
/// (the server hello's challenge and the Auth request); version 3 added ingest credit (the
/// server hello's `ingest_credit_bytes` and the IngestCredit push). Version 1 is still served
/// to clients that offer nothing newer, but only by a server that verifies no credentials;
/// versions 1 and 2 are served without ingest credit.
pub const PROTOCOL_VERSIONS: &[u16] = &[1, 2, 3];

/// The first version whose server hello carries an authentication challenge.
pub const AUTH_VERSION_MIN: u16 = 2;

/// The first version with ingest credit: the server hello grants PutBatch bytes, the server
/// gives them back with IngestCredit pushes, and a client that sends more is refused.
pub const INGEST_CREDIT_VERSION_MIN: u16 = 3;

/// The ingest credit a server grants each connection, in PutBatch frame bytes (headers
/// included). It is a window of bytes in flight: a client at full speed is slowed by it only
/// when its bandwidth times the time a PutBatch takes to be answered exceeds it. 32 MiB is two
/// largest frames, so one may be in flight while the next is sent, and at 10 Gbit/s it covers
/// 25 ms per round trip, several group commits. Memory is bounded by the per-core budget
/// (`crate::admission`), not by this window.
pub const INGEST_CREDIT_BYTES: u32 = 32 * 1024 * 1024;

/// Bytes of the random nonce in a server hello's challenge.
pub const SERVER_NONCE_BYTES: usize = 32;

/// Bytes of an Auth request's signature: one HMAC-SHA256 output.
pub const AUTH_SIGNATURE_BYTES: usize = 32;

/// The bytes of the frame header: length (u32), opcode (u16), flags (u16), request id (u64).
pub const HEADER_BYTES: usize = 16;

/// The largest frame, header included. A PutBatch of the Kinesis 5 MiB maximum fits with room to
/// spare, and a Read response is capped by [`READ_BYTES_MAX`] below this.
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Records in one PutBatch frame.
pub const PUT_BATCH_RECORDS_MAX: usize = 10_000;

/// Records in one Read response or RecordsEvent frame: the Kinesis GetRecords limit itself.
pub const READ_RECORDS_MAX: u32 = sluice_core::limits::GET_RECORDS_LIMIT_MAX;

/// Partition key and data bytes in one Read response. Together with the per-record overhead of
/// at most [`READ_RECORDS_MAX`] records it keeps a response below [`FRAME_BYTES_MAX`].
pub const READ_BYTES_MAX: u32 = 8 * 1024 * 1024;

/// Credits one subscription may hold at once (a Subscribe's initial credits plus every Credit
/// frame not yet consumed).
pub const SUBSCRIPTION_CREDITS_MAX: u32 = 1_000_000;

/// Protocol versions a client hello may offer.
pub const HELLO_VERSIONS_MAX: usize = 16;

/// Per-core ports a server hello may list (one per core).
pub const HELLO_PORTS_MAX: usize = 1024;

/// Bytes in any length-prefixed string (stream names, partition keys, messages): the `u16`
/// length prefix.
pub const STRING_BYTES_MAX: usize = u16::MAX as usize;

/// Bytes of one record's data. The Kinesis record limit is 1 MiB for key plus data; the wire
/// allows the frame to carry it, and the server applies `sluice_core::limits`.
pub const RECORD_DATA_BYTES_MAX: usize = FRAME_BYTES_MAX - HEADER_BYTES;

const _: () = assert!(HEADER_BYTES == 4 + 2 + 2 + 8);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!((READ_BYTES_MAX as usize) < FRAME_BYTES_MAX);
// Any valid frame fits a connection's whole window, so a lone PutBatch never waits for ever.
const _: () = assert!(INGEST_CREDIT_BYTES as usize >= FRAME_BYTES_MAX);
