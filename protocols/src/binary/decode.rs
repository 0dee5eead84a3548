//! Frame decoding. [`decode_frame`] is the single entry point: it reads one frame from the front
//! of a buffer, borrowing strings and record data from it, and never panics on any input (the
//! fuzz target calls it directly). [`FrameDecoder`] buffers bytes as a socket delivers them.
//!
//! Errors come in two severities. A bad header (a length below the header size or above
//! [`FRAME_BYTES_MAX`]) leaves the byte stream without a known frame boundary, so the connection
//! must be closed. A bad payload spoils only its own frame: the length is trusted, the frame is
//! skipped, and the peer can be answered by request id.

use bytes::{Buf, Bytes, BytesMut};

use crate::binary::encode::shard_presence;
use crate::binary::frame::*;
use crate::binary::limits::{
    AUTH_VERSION_MIN, FRAME_BYTES_MAX, HEADER_BYTES, HELLO_PORTS_MAX, HELLO_VERSIONS_MAX,
    INGEST_CREDIT_VERSION_MIN, PUT_BATCH_RECORDS_MAX, READ_RECORDS_MAX,
};
use crate::binary::status::{StatusCode, WireStatus};

/// What is wrong with a frame's payload.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("payload ends inside {field}")]
    Truncated { field: &'static str },
    #[error("{bytes} bytes follow the payload")]
    TrailingBytes { bytes: usize },
    #[error("{field} is not UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field} has unknown tag {tag}")]
    UnknownTag { field: &'static str, tag: u8 },
    #[error("{field} has {count} items; at most {max} are allowed")]
    TooMany {
        field: &'static str,
        count: u64,
        max: u64,
    },
    #[error("the hello does not open with the protocol magic")]
    BadMagic,
    #[error("flags {flags:#06x} are not valid for this opcode")]
    BadFlags { flags: u16 },
    /// Every frame has exactly one encoding: a field marked absent must be sent as zeros.
    #[error("{field} is marked absent but not zero")]
    NonZeroAbsent { field: &'static str },
}

/// Why bytes are not a frame.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fatal: the stream has no frame boundary any more.
    #[error("frame length {frame_bytes} is below the {HEADER_BYTES}-byte header")]
    FrameTooShort { frame_bytes: u32 },
    /// Fatal: the stream has no frame boundary any more.
    #[error("frame length {frame_bytes} exceeds the limit of {max} bytes")]
    FrameTooLarge { frame_bytes: u32, max: usize },
    /// The frame was skipped; answer it by request id.
    #[error("unknown opcode {opcode:#06x} in request {request_id}")]
    UnknownOperation {
        request_id: u64,
        opcode: u16,
        flags: u16,
    },
    /// The frame was skipped; answer it by request id.
    #[error("bad frame (request {request_id}, opcode {opcode:#06x}): {reason}")]
    BadFrame {
        request_id: u64,
        opcode: u16,
        reason: BodyError,
    },
}

impl DecodeError {
    /// Whether the connection must be closed because frame boundaries are lost.
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::FrameTooShort { .. } | Self::FrameTooLarge { .. }
        )
    }

    /// The request id of the spoiled frame, when its header could be read.
    pub const fn request_id(&self) -> Option<u64> {
        match self {
            Self::UnknownOperation { request_id, .. } | Self::BadFrame { request_id, .. } => {
                Some(*request_id)
            }
            Self::FrameTooShort { .. } | Self::FrameTooLarge { .. } => None,
        }
    }

    /// The raw opcode of the spoiled frame, when its header could be read.
    pub const fn opcode(&self) -> Option<u16> {
        match self {
            Self::UnknownOperation { opcode, .. } | Self::BadFrame { opcode, .. } => Some(*opcode),
            Self::FrameTooShort { .. } | Self::FrameTooLarge { .. } => None,
        }
    }

    /// The status code to answer with.
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::FrameTooShort { .. } | Self::BadFrame { .. } => StatusCode::BadFrame,
            Self::FrameTooLarge { .. } => StatusCode::FrameTooLarge,
            Self::UnknownOperation { .. } => StatusCode::UnknownOperation,
        }
    }
}

/// Reads the 16-byte header at the front of `buf`, if that many bytes are there. The length is
/// not checked here.
pub fn decode_header(buf: &[u8]) -> Option<FrameHeader> {
    let header: &[u8; HEADER_BYTES] = buf.get(..HEADER_BYTES)?.try_into().ok()?;
    let [l0, l1, l2, l3, o0, o1, f0, f1, r @ ..] = *header;
    Some(FrameHeader {
        frame_bytes: u32::from_le_bytes([l0, l1, l2, l3]),
        opcode: u16::from_le_bytes([o0, o1]),
        flags: u16::from_le_bytes([f0, f1]),
        request_id: u64::from_le_bytes(r),
    })
}

/// Decodes the frame at the front of `buf`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((frame, n)))` means the frame took the first `n` bytes. After a non-fatal error the
/// frame's bytes are `header.frame_bytes` long and may be skipped (see [`DecodeError::is_fatal`]).
/// Never panics.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(header) = decode_header(buf) else {
        return Ok(None);
    };
    let frame_bytes = check_length(header.frame_bytes)?;
    let Some(frame) = buf.get(..frame_bytes) else {
        return Ok(None);
    };
    let body = decode_body(&header, &frame[HEADER_BYTES..])?;
    Ok(Some((
        Frame {
            request_id: header.request_id,
            body,
        },
        frame_bytes,
    )))
}

fn check_length(frame_bytes: u32) -> Result<usize, DecodeError> {
    let len = frame_bytes as usize;
    if len < HEADER_BYTES {
        return Err(DecodeError::FrameTooShort { frame_bytes });
    }
    if len > FRAME_BYTES_MAX {
        return Err(DecodeError::FrameTooLarge {
            frame_bytes,
            max: FRAME_BYTES_MAX,
        });
    }
    Ok(len)
}

fn decode_body<'a>(header: &FrameHeader, payload: &'a [u8]) -> Result<Body<'a>, DecodeError> {
    use flags::{ERROR, PUSH, RESPONSE};
    let bad = |reason| DecodeError::BadFrame {
        request_id: header.request_id,
        opcode: header.opcode,
        reason,
    };
    if header.flags & !flags::KNOWN != 0 {
        return Err(bad(BodyError::BadFlags {
            flags: header.flags,
        }));
    }
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    // An error response is decoded whatever its opcode, so that a client can read the answer to
    // an operation it sent and the server did not know.
    if header.flags == RESPONSE | ERROR {
        let status = WireStatus(r.u16("status").map_err(bad)?);
        let message = r.str("error message").map_err(bad)?;
        r.finish().map_err(bad)?;
        return Ok(Body::Error(WireError {
            opcode: header.opcode,
            status,
            message,
        }));
    }
    let Some(opcode) = Opcode::from_code(header.opcode) else {
        return Err(DecodeError::UnknownOperation {
            request_id: header.request_id,
            opcode: header.opcode,
            flags: header.flags,
        });
    };
    let body = match (opcode, header.flags) {
        (Opcode::Hello, 0) => decode_client_hello(&mut r),
        (Opcode::Hello, RESPONSE) => decode_server_hello(&mut r),
        (Opcode::Ping, 0) => Ok(Body::Ping),
        (Opcode::Ping, RESPONSE) => Ok(Body::Pong),
        (Opcode::Auth, 0) => decode_auth(&mut r),
        (Opcode::Auth, RESPONSE) => Ok(Body::AuthOk),
        (Opcode::CreateStream, 0) => decode_create_stream(&mut r),
        (Opcode::CreateStream, RESPONSE) => Ok(Body::CreateStreamOk),
        (Opcode::DescribeStream, 0) => r
            .str("stream name")
            .map(|stream_name| Body::DescribeStream(WireStreamName { stream_name })),
        (Opcode::DescribeStream, RESPONSE) => decode_stream_description(&mut r),
        (Opcode::ListStreams, 0) => decode_list_streams(&mut r),
        (Opcode::ListStreams, RESPONSE) => decode_stream_list(&mut r),
        (Opcode::GetShardMap, 0) => r
            .str("stream name")
            .map(|stream_name| Body::GetShardMap(WireStreamName { stream_name })),
        (Opcode::GetShardMap, RESPONSE) => decode_shard_map(&mut r),
        (Opcode::PutBatch, 0) => decode_put_batch(&mut r),
        (Opcode::PutBatch, RESPONSE) => decode_put_batch_result(&mut r),
        (Opcode::IngestCredit, PUSH) => r
            .u32("ingest credit bytes")
            .map(|bytes| Body::IngestCredit(WireIngestCredit { bytes })),
        (Opcode::Read, 0) => decode_read(&mut r),
        (Opcode::Read, RESPONSE) => decode_records(&mut r).map(Body::ReadOk),
        (Opcode::Subscribe, 0) => decode_subscribe(&mut r),
        (Opcode::Subscribe, RESPONSE) => Ok(Body::SubscribeOk),
        (Opcode::Credit, 0) => decode_credit(&mut r),
        (Opcode::Unsubscribe, 0) => r
            .u64("subscription id")
            .map(|subscription_id| Body::Unsubscribe(WireUnsubscribe { subscription_id })),
        (Opcode::Unsubscribe, RESPONSE) => Ok(Body::UnsubscribeOk),
        (Opcode::RecordsEvent, PUSH) => decode_records(&mut r).map(Body::RecordsEvent),
        (Opcode::SubscriptionEnded, PUSH) => decode_subscription_ended(&mut r),
        (_, flags) => Err(BodyError::BadFlags { flags }),
    }
    .map_err(bad)?;
    r.finish().map_err(bad)?;
    Ok(body)
}

fn decode_create_stream<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::CreateStream(WireCreateStream {
        stream_name: r.str("stream name")?,
        shard_count: r.u32("shard count")?,
    }))
}

fn decode_list_streams<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let start = r.str("exclusive start stream name")?;
    Ok(Body::ListStreams(WireListStreams {
        exclusive_start_stream_name: (!start.is_empty()).then_some(start),
        limit: r.u32("limit")?,
    }))
}

fn decode_read<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::Read(WireRead {
        stream_name: r.str("stream name")?,
        shard_index: r.u32("shard index")?,
        start: r.start()?,
        records_max: r.u32("records max")?,
        bytes_max: r.u32("bytes max")?,
    }))
}

fn decode_subscribe<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::Subscribe(WireSubscribe {
        stream_name: r.str("stream name")?,
        shard_index: r.u32("shard index")?,
        start: r.start()?,
        credits: r.u32("credits")?,
    }))
}

fn decode_credit<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::Credit(WireCredit {
        subscription_id: r.u64("subscription id")?,
        credits: r.u32("credits")?,
    }))
}

fn decode_subscription_ended<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::SubscriptionEnded(WireSubscriptionEnded {
        status: WireStatus(r.u16("status")?),
        message: r.str("error message")?,
    }))
}

fn decode_client_hello<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let magic: [u8; 4] = r.array("magic")?;
    if magic != crate::binary::limits::MAGIC {
        return Err(BodyError::BadMagic);
    }
    let count = usize::from(r.u8("version count")?);
    r.check_count("versions", count as u64, HELLO_VERSIONS_MAX as u64, 2)?;
    let versions = (0..count)
        .map(|_| r.u16("version"))
        .collect::<Result<_, _>>()?;
    Ok(Body::Hello(WireClientHello { magic, versions }))
}

fn decode_server_hello<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let version = r.u16("version")?;
    let core_count = r.u16("core count")?;
    let core_id = r.u16("core id")?;
    let count = r.u16("port count")?;
    r.check_count("core ports", u64::from(count), HELLO_PORTS_MAX as u64, 2)?;
    let core_ports = (0..count)
        .map(|_| r.u16("port"))
        .collect::<Result<_, _>>()?;
    // The version decides the layout: version 1 ends here, later versions add the challenge.
    let challenge = if version >= AUTH_VERSION_MIN {
        Some(WireAuthChallenge {
            auth_required: r.bool("auth required")?,
            server_nonce: r.array("server nonce")?,
        })
    } else {
        None
    };
    // Version 3 adds the ingest credit.
    let ingest_credit_bytes = if version >= INGEST_CREDIT_VERSION_MIN {
        Some(r.u32("ingest credit bytes")?)
    } else {
        None
    };
    Ok(Body::HelloOk(WireServerHello {
        version,
        core_count,
        core_id,
        core_ports,
        challenge,
        ingest_credit_bytes,
    }))
}

fn decode_auth<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    Ok(Body::Auth(WireAuth {
        access_key_id: r.str("access key id")?,
        signature: r.array("signature")?,
    }))
}

/// Bytes of one shard entry in a DescribeStream response.
const SHARD_BYTES: usize = 4 + 1 + 4 + 4 + 32 + 2 + 28 + 28;
/// Bytes of one shard map entry.
const SHARD_MAP_ENTRY_BYTES: usize = 4 + 32 + 2;

fn decode_stream_description<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let stream_name = r.str("stream name")?;
    let stream_status = match r.u8("stream status")? {
        0 => WireStreamStatus::Creating,
        1 => WireStreamStatus::Deleting,
        2 => WireStreamStatus::Active,
        3 => WireStreamStatus::Updating,
        tag => {
            return Err(BodyError::UnknownTag {
                field: "stream status",
                tag,
            });
        }
    };
    let stream_mode = match r.u8("stream mode")? {
        0 => WireStreamMode::Provisioned,
        1 => WireStreamMode::OnDemand,
        tag => {
            return Err(BodyError::UnknownTag {
                field: "stream mode",
                tag,
            });
        }
    };
    let retention_period_hours = r.u32("retention period")?;
    let stream_creation_timestamp_ms = r.u64("creation timestamp")?;
    let count = r.u32("shard count")?;
    r.check_count("shards", u64::from(count), u64::MAX, SHARD_BYTES)?;
    let mut shards = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let shard_index = r.u32("shard index")?;
        let presence = r.u8("shard presence bits")?;
        if presence & !shard_presence::KNOWN != 0 {
            return Err(BodyError::UnknownTag {
                field: "shard presence bits",
                tag: presence,
            });
        }
        let parent = r.u32("parent shard index")?;
        let adjacent = r.u32("adjacent parent shard index")?;
        let hash_range = r.hash_range()?;
        let core_id = r.u16("core id")?;
        let starting_sequence_number = r.sequence_number()?;
        let ending = r.sequence_number()?;
        shards.push(WireShard {
            shard_index,
            parent_shard_index: present(
                presence,
                shard_presence::PARENT,
                parent,
                0,
                "parent shard index",
            )?,
            adjacent_parent_shard_index: present(
                presence,
                shard_presence::ADJACENT_PARENT,
                adjacent,
                0,
                "adjacent parent shard index",
            )?,
            hash_range,
            core_id,
            starting_sequence_number,
            ending_sequence_number: present(
                presence,
                shard_presence::ENDING_SEQUENCE_NUMBER,
                ending,
                ZERO_SEQUENCE_NUMBER,
                "ending sequence number",
            )?,
        });
    }
    Ok(Body::DescribeStreamOk(WireStreamDescription {
        stream_name,
        stream_status,
        stream_mode,
        retention_period_hours,
        stream_creation_timestamp_ms,
        shards,
    }))
}

use crate::binary::encode::ZERO_SEQUENCE_NUMBER;

/// `Some(value)` when `bit` is set in `presence`; otherwise the value must be `zero`.
fn present<T: PartialEq>(
    presence: u8,
    bit: u8,
    value: T,
    zero: T,
    field: &'static str,
) -> Result<Option<T>, BodyError> {
    if presence & bit != 0 {
        Ok(Some(value))
    } else if value == zero {
        Ok(None)
    } else {
        Err(BodyError::NonZeroAbsent { field })
    }
}

fn decode_stream_list<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let has_more_streams = r.bool("has more streams")?;
    let count = r.u32("stream name count")?;
    r.check_count("stream names", u64::from(count), u64::MAX, 2)?;
    let stream_names = (0..count)
        .map(|_| r.str("stream name"))
        .collect::<Result<_, _>>()?;
    Ok(Body::ListStreamsOk(WireStreamList {
        stream_names,
        has_more_streams,
    }))
}

fn decode_shard_map<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let count = r.u32("shard map entry count")?;
    r.check_count(
        "shard map entries",
        u64::from(count),
        u64::MAX,
        SHARD_MAP_ENTRY_BYTES,
    )?;
    let mut shards = Vec::with_capacity(count as usize);
    for _ in 0..count {
        shards.push(WireShardMapEntry {
            shard_index: r.u32("shard index")?,
            hash_range: r.hash_range()?,
            core_id: r.u16("core id")?,
        });
    }
    Ok(Body::GetShardMapOk(WireShardMap { shards }))
}

fn decode_put_batch<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let stream_name = r.str("stream name")?;
    let count = r.u32("record count")?;
    // The smallest record is a route tag, an empty key and empty data: 1 + 2 + 4 bytes.
    r.check_count(
        "put batch records",
        u64::from(count),
        PUT_BATCH_RECORDS_MAX as u64,
        7,
    )?;
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let route = match r.u8("route")? {
            0 => WireRoute::PartitionKey,
            1 => WireRoute::ExplicitHashKey(r.u128("explicit hash key")?),
            2 => WireRoute::ShardIndex(r.u32("shard index")?),
            tag => {
                return Err(BodyError::UnknownTag {
                    field: "route",
                    tag,
                });
            }
        };
        records.push(WirePutRecord {
            route,
            partition_key: r.str("partition key")?,
            data: r.data()?,
        });
    }
    Ok(Body::PutBatch(WirePutBatch {
        stream_name,
        records,
    }))
}

fn decode_put_batch_result<'a>(r: &mut Reader<'a>) -> Result<Body<'a>, BodyError> {
    let count = r.u32("result count")?;
    r.check_count(
        "put batch results",
        u64::from(count),
        PUT_BATCH_RECORDS_MAX as u64,
        2,
    )?;
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let status = WireStatus(r.u16("status")?);
        records.push(if status.is_ok() {
            Ok(r.sequence_number()?)
        } else {
            Err(status)
        });
    }
    Ok(Body::PutBatchOk(WirePutBatchResult { records }))
}

fn decode_records<'a>(r: &mut Reader<'a>) -> Result<WireRecords<'a>, BodyError> {
    let shard_created_s = r.u64("shard creation time")?;
    let shard_index = r.u32("shard index")?;
    let has_next = r.bool("has next position")?;
    let next = r.u64("next position")?;
    let millis_behind_latest = r.u64("millis behind latest")?;
    let count = r.u32("record count")?;
    // The smallest record is three u64s, an empty key and empty data: 24 + 2 + 4 bytes.
    r.check_count("records", u64::from(count), u64::from(READ_RECORDS_MAX), 30)?;
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        records.push(WireRecord {
            position: r.u64("position")?,
            arrival_s: r.u64("arrival seconds")?,
            approximate_arrival_timestamp_ms: r.u64("arrival timestamp")?,
            partition_key: r.str("partition key")?,
            data: r.data()?,
        });
    }
    Ok(WireRecords {
        shard_created_s,
        shard_index,
        records,
        next_position: present(u8::from(has_next), 1, next, 0, "next position")?,
        millis_behind_latest,
    })
}

/// A bounds-checked little-endian cursor over one payload.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BodyError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(BodyError::Truncated { field })?;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or(BodyError::Truncated { field })?;
        self.at = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BodyError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| BodyError::Truncated { field })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, BodyError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(BodyError::UnknownTag { field, tag }),
        }
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, BodyError> {
        self.array(field).map(u16::from_le_bytes)
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, BodyError> {
        self.array(field).map(u32::from_le_bytes)
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, BodyError> {
        self.array(field).map(u64::from_le_bytes)
    }
    fn u128(&mut self, field: &'static str) -> Result<u128, BodyError> {
        self.array(field).map(u128::from_le_bytes)
    }

    fn str(&mut self, field: &'static str) -> Result<&'a str, BodyError> {
        let len = usize::from(self.u16(field)?);
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| BodyError::InvalidUtf8 { field })
    }

    fn data(&mut self) -> Result<&'a [u8], BodyError> {
        let len = self.u32("record data length")? as usize;
        self.take(len, "record data")
    }

    /// Refuses a count above `max` or one whose items, at `item_bytes_min` each, cannot fit in
    /// the rest of the payload, so a forged count cannot make the decoder allocate.
    fn check_count(
        &self,
        field: &'static str,
        count: u64,
        max: u64,
        item_bytes_min: usize,
    ) -> Result<(), BodyError> {
        let fit = (self.remaining() / item_bytes_min.max(1)) as u64;
        if count > max {
            return Err(BodyError::TooMany { field, count, max });
        }
        if count > fit {
            return Err(BodyError::Truncated { field });
        }
        Ok(())
    }

    fn hash_range(&mut self) -> Result<WireHashRange, BodyError> {
        Ok(WireHashRange {
            starting: self.u128("starting hash key")?,
            ending: self.u128("ending hash key")?,
        })
    }

    fn sequence_number(&mut self) -> Result<WireSequenceNumber, BodyError> {
        Ok(WireSequenceNumber {
            shard_created_s: self.u64("sequence number")?,
            shard_index: self.u32("sequence number")?,
            position: self.u64("sequence number")?,
            arrival_s: self.u64("sequence number")?,
        })
    }

    fn start(&mut self) -> Result<WireStartPosition, BodyError> {
        Ok(match self.u8("start position")? {
            0 => WireStartPosition::TrimHorizon,
            1 => WireStartPosition::Latest,
            2 => WireStartPosition::AtTimestamp {
                timestamp_ms: self.u64("timestamp")?,
            },
            3 => WireStartPosition::AtSequenceNumber(self.sequence_number()?),
            4 => WireStartPosition::AfterSequenceNumber(self.sequence_number()?),
            5 => WireStartPosition::AtPosition(self.u64("position")?),
            tag => {
                return Err(BodyError::UnknownTag {
                    field: "start position",
                    tag,
                });
            }
        })
    }

    fn finish(&self) -> Result<(), BodyError> {
        match self.remaining() {
            0 => Ok(()),
            bytes => Err(BodyError::TrailingBytes { bytes }),
        }
    }
}

/// Reassembles frames from bytes as they arrive.
///
/// `push` appends what the socket delivered; `next_frame` returns each complete frame in turn,
/// borrowing from the decoder until the next call. After a fatal error every later call returns
/// the same error: the connection is to be closed.
///
/// Each complete frame is split off the buffer as its own shared [`Bytes`]
/// ([`FrameDecoder::next_frame_shared`]), so a server can keep slices of a frame (a put's
/// records) without copying them; the buffer's allocation is reused once no frame holds it.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes received and not yet handed out as frames.
    buf: BytesMut,
    /// Bytes of a skipped frame that have not arrived yet; they are dropped as they come.
    skipping: usize,
    fatal: Option<DecodeError>,
    /// The frame `next_frame` returned last; its body borrows from it.
    current: Bytes,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        let skipped = self.skipping.min(bytes.len());
        self.skipping -= skipped;
        self.buf.extend_from_slice(&bytes[skipped..]);
    }

    /// The header of the next frame once its 16 bytes have arrived, if its length is sound. A
    /// server reads it to decide whether to take in the frame's payload at all (admission).
    pub fn peek_header(&self) -> Option<FrameHeader> {
        if self.fatal.is_some() || self.skipping > 0 {
            return None;
        }
        let header = decode_header(&self.buf)?;
        check_length(header.frame_bytes).ok()?;
        Some(header)
    }

    /// Discards the next frame, whose header [`FrameDecoder::peek_header`] returned, without
    /// waiting for its payload: the part that has not arrived yet is dropped as it comes, so a
    /// refused frame never occupies memory.
    ///
    /// # Panics
    /// When no header is available: the caller skips only a frame it has peeked.
    pub fn skip_frame(&mut self) {
        let header = self
            .peek_header()
            .expect("a frame is skipped only after its header was peeked");
        let frame_bytes = header.frame_bytes as usize;
        let skipped_now = frame_bytes.min(self.buf.len());
        self.buf.advance(skipped_now);
        self.skipping = frame_bytes - skipped_now;
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. A frame with a bad payload
    /// is consumed and reported; decoding then continues with the frame after it.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        Ok(self.next_frame_shared()?.map(|(frame, _)| frame))
    }

    /// [`FrameDecoder::next_frame`], with the whole frame (header included) as shared bytes
    /// that the frame's borrowed fields are slices of ([`Bytes::slice_ref`] turns them into
    /// owned bytes without a copy).
    pub fn next_frame_shared(&mut self) -> Result<Option<(Frame<'_>, Bytes)>, DecodeError> {
        if let Some(error) = &self.fatal {
            return Err(error.clone());
        }
        let Some(header) = decode_header(&self.buf) else {
            return Ok(None);
        };
        let frame_bytes = match check_length(header.frame_bytes) {
            Ok(n) => n,
            Err(error) => {
                self.fatal = Some(error.clone());
                return Err(error);
            }
        };
        if self.buf.len() < frame_bytes {
            // Reserve once for the whole frame rather than growing with each read.
            self.buf.reserve(frame_bytes - self.buf.len());
            return Ok(None);
        }
        self.current = self.buf.split_to(frame_bytes).freeze();
        let body = decode_body(&header, &self.current[HEADER_BYTES..])?;
        Ok(Some((
            Frame {
                request_id: header.request_id,
                body,
            },
            self.current.clone(),
        )))
    }
}
