//! The frame header, the opcodes, and the `Wire*` type of every payload. Field order in each
//! struct is the order on the wire; `docs/binary-protocol.md` gives the bytes.
//!
//! A frame is `length u32 | opcode u16 | flags u16 | request_id u64 | payload`. Which payload
//! follows is decided by the opcode and the `RESPONSE`, `ERROR` and `PUSH` flags together; see
//! [`Body`]. Strings and record data borrow from the decoded buffer.

use crate::binary::status::WireStatus;

/// The operation a frame belongs to. A response carries the opcode of its request.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    Hello = 0x0001,
    Ping = 0x0002,
    Auth = 0x0003,
    CreateStream = 0x0010,
    DescribeStream = 0x0011,
    ListStreams = 0x0012,
    GetShardMap = 0x0013,
    PutBatch = 0x0020,
    IngestCredit = 0x0021,
    Read = 0x0030,
    Subscribe = 0x0040,
    Credit = 0x0041,
    Unsubscribe = 0x0042,
    RecordsEvent = 0x0043,
    SubscriptionEnded = 0x0044,
}

impl Opcode {
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The Kinesis actions a request with this opcode stands for, as a resource policy names
    /// them (without `kinesis:`). A request is refused when its stream's policy denies any of
    /// them, so that no binary request does what the policy forbids over HTTP: a PutBatch is a
    /// PutRecords (and, one record at a time, a PutRecord); a Read needs what an HTTP reader
    /// needs (GetShardIterator and GetRecords); a Subscribe delivers what those deliver, pushed as
    /// SubscribeToShard pushes it; GetShardMap lists shards. ListStreams names no resource and,
    /// as over HTTP, is never checked; neither are the protocol's own frames.
    pub const fn kinesis_actions(self) -> &'static [&'static str] {
        match self {
            Self::CreateStream => &["CreateStream"],
            Self::DescribeStream => &["DescribeStream"],
            Self::GetShardMap => &["ListShards"],
            Self::PutBatch => &["PutRecords", "PutRecord"],
            Self::Read => &["GetShardIterator", "GetRecords"],
            Self::Subscribe => &["SubscribeToShard", "GetShardIterator", "GetRecords"],
            Self::ListStreams
            | Self::Hello
            | Self::Ping
            | Self::Auth
            | Self::Credit
            | Self::IngestCredit
            | Self::Unsubscribe
            | Self::RecordsEvent
            | Self::SubscriptionEnded => &[],
        }
    }

    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0x0001 => Self::Hello,
            0x0002 => Self::Ping,
            0x0003 => Self::Auth,
            0x0010 => Self::CreateStream,
            0x0011 => Self::DescribeStream,
            0x0012 => Self::ListStreams,
            0x0013 => Self::GetShardMap,
            0x0020 => Self::PutBatch,
            0x0021 => Self::IngestCredit,
            0x0030 => Self::Read,
            0x0040 => Self::Subscribe,
            0x0041 => Self::Credit,
            0x0042 => Self::Unsubscribe,
            0x0043 => Self::RecordsEvent,
            0x0044 => Self::SubscriptionEnded,
            _ => return None,
        })
    }
}

/// Header flag bits. Bits not named here are reserved, sent as zero, and refused when set.
pub mod flags {
    /// The frame answers the request with the same request id.
    pub const RESPONSE: u16 = 1 << 0;
    /// The response is an error (only with `RESPONSE`): the payload is a [`super::WireError`].
    pub const ERROR: u16 = 1 << 1;
    /// A server-initiated frame: of a subscription (the request id is the subscription id), or
    /// an IngestCredit (request id 0).
    pub const PUSH: u16 = 1 << 2;
    pub const KNOWN: u16 = RESPONSE | ERROR | PUSH;
}

/// The fixed 16-byte header of every frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of the whole frame, header included.
    pub frame_bytes: u32,
    /// The raw opcode; it may be one this codec does not know.
    pub opcode: u16,
    pub flags: u16,
    pub request_id: u64,
}

/// One decoded (or to-be-encoded) frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Chosen by the client, echoed in the response. A subscription is named by the request id
    /// of the Subscribe that opened it, and its pushes carry that id.
    pub request_id: u64,
    pub body: Body<'a>,
}

/// The payload of a frame, one variant per (opcode, direction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    // Requests, client to server (flags 0).
    Hello(WireClientHello),
    Ping,
    /// Version 2 and later: proves the client holds a secret access key (see [`WireAuth`]).
    Auth(WireAuth<'a>),
    CreateStream(WireCreateStream<'a>),
    DescribeStream(WireStreamName<'a>),
    ListStreams(WireListStreams<'a>),
    GetShardMap(WireStreamName<'a>),
    PutBatch(WirePutBatch<'a>),
    Read(WireRead<'a>),
    Subscribe(WireSubscribe<'a>),
    /// Never answered, so its request id is not used (send 0); the payload names the
    /// subscription.
    Credit(WireCredit),
    /// Answered by `UnsubscribeOk`. The frame's request id is its own; the payload names the
    /// subscription.
    Unsubscribe(WireUnsubscribe),

    // Responses, server to client (flag RESPONSE).
    HelloOk(WireServerHello),
    Pong,
    AuthOk,
    CreateStreamOk,
    DescribeStreamOk(WireStreamDescription<'a>),
    ListStreamsOk(WireStreamList<'a>),
    GetShardMapOk(WireShardMap),
    PutBatchOk(WirePutBatchResult),
    ReadOk(WireRecords<'a>),
    SubscribeOk,
    UnsubscribeOk,
    /// Flags RESPONSE | ERROR, with the opcode of the request it answers.
    Error(WireError<'a>),

    // Pushes, server to client (flag PUSH); the request id is the subscription id.
    RecordsEvent(WireRecords<'a>),
    SubscriptionEnded(WireSubscriptionEnded<'a>),
    /// Version 3 and later: gives PutBatch bytes back to the connection's ingest credit. Not
    /// tied to a subscription or a request; its request id is 0.
    IngestCredit(WireIngestCredit),
}

impl Body<'_> {
    /// The opcode and flags this body is sent with.
    pub const fn opcode_and_flags(&self) -> (u16, u16) {
        use flags::{ERROR, PUSH, RESPONSE};
        let (opcode, flags) = match self {
            Body::Hello(_) => (Opcode::Hello, 0),
            Body::Ping => (Opcode::Ping, 0),
            Body::Auth(_) => (Opcode::Auth, 0),
            Body::CreateStream(_) => (Opcode::CreateStream, 0),
            Body::DescribeStream(_) => (Opcode::DescribeStream, 0),
            Body::ListStreams(_) => (Opcode::ListStreams, 0),
            Body::GetShardMap(_) => (Opcode::GetShardMap, 0),
            Body::PutBatch(_) => (Opcode::PutBatch, 0),
            Body::Read(_) => (Opcode::Read, 0),
            Body::Subscribe(_) => (Opcode::Subscribe, 0),
            Body::Credit(_) => (Opcode::Credit, 0),
            Body::Unsubscribe(_) => (Opcode::Unsubscribe, 0),
            Body::HelloOk(_) => (Opcode::Hello, RESPONSE),
            Body::Pong => (Opcode::Ping, RESPONSE),
            Body::AuthOk => (Opcode::Auth, RESPONSE),
            Body::CreateStreamOk => (Opcode::CreateStream, RESPONSE),
            Body::DescribeStreamOk(_) => (Opcode::DescribeStream, RESPONSE),
            Body::ListStreamsOk(_) => (Opcode::ListStreams, RESPONSE),
            Body::GetShardMapOk(_) => (Opcode::GetShardMap, RESPONSE),
            Body::PutBatchOk(_) => (Opcode::PutBatch, RESPONSE),
            Body::ReadOk(_) => (Opcode::Read, RESPONSE),
            Body::SubscribeOk => (Opcode::Subscribe, RESPONSE),
            Body::UnsubscribeOk => (Opcode::Unsubscribe, RESPONSE),
            // The error keeps the raw opcode so that an unknown operation can be answered.
            Body::Error(e) => return (e.opcode, RESPONSE | ERROR),
            Body::RecordsEvent(_) => (Opcode::RecordsEvent, PUSH),
            Body::SubscriptionEnded(_) => (Opcode::SubscriptionEnded, PUSH),
            Body::IngestCredit(_) => (Opcode::IngestCredit, PUSH),
        };
        (opcode.code(), flags)
    }
}

/// The client's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireClientHello {
    /// Must be [`crate::binary::limits::MAGIC`]; anything else is a `BadFrame`.
    pub magic: [u8; 4],
    /// Versions the client speaks, any order, 1..=`HELLO_VERSIONS_MAX` of them.
    pub versions: Vec<u16>,
}

impl WireClientHello {
    /// The version a server speaking `supported` should choose: the highest both sides speak.
    /// `None` is answered with `UnsupportedVersion`, after which the server closes the
    /// connection.
    pub fn choose_version(&self, supported: &[u16]) -> Option<u16> {
        self.versions
            .iter()
            .copied()
            .filter(|v| supported.contains(v))
            .max()
    }
}

/// The server's answer to a hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireServerHello {
    /// The highest version both sides speak.
    pub version: u16,
    pub core_count: u16,
    /// The core that accepted this connection.
    pub core_id: u16,
    /// `core_ports[i]` is the port on which core `i` alone accepts connections, on the same
    /// address the client connected to; 0 means the core has no port of its own.
    pub core_ports: Vec<u16>,
    /// The authentication challenge: `None` in a version 1 hello, which has no such fields, and
    /// `Some` in every later version. The encoder refuses any other pairing.
    pub challenge: Option<WireAuthChallenge>,
    /// The connection's initial ingest credit in PutBatch frame bytes: `None` before version 3,
    /// which has no such field, and `Some` from version 3 on. The encoder refuses any other
    /// pairing.
    pub ingest_credit_bytes: Option<u32>,
}

/// The part of a server hello (version 2 and later) that a client answers with [`WireAuth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireAuthChallenge {
    /// The server verifies credentials: every request before a successful Auth is refused with
    /// `AuthenticationRequired`. When `false`, Auth is optional and any signature is accepted.
    pub auth_required: bool,
    /// Fresh random bytes for this connection; the client signs them, so a signature seen on
    /// one connection is worthless on any other.
    pub server_nonce: [u8; crate::binary::limits::SERVER_NONCE_BYTES],
}

/// The client's proof that it holds the secret access key of `access_key_id`, without sending
/// the secret: an HMAC-SHA256 over the connection's challenge (`binary::auth` builds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireAuth<'a> {
    pub access_key_id: &'a str,
    pub signature: [u8; crate::binary::limits::AUTH_SIGNATURE_BYTES],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireStreamName<'a> {
    pub stream_name: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireCreateStream<'a> {
    pub stream_name: &'a str,
    pub shard_count: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireListStreams<'a> {
    /// Empty on the wire means none.
    pub exclusive_start_stream_name: Option<&'a str>,
    /// 0 means the server's default page size.
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireStreamList<'a> {
    pub stream_names: Vec<&'a str>,
    pub has_more_streams: bool,
}

/// An inclusive hash key range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireHashRange {
    pub starting: u128,
    pub ending: u128,
}

/// A sequence number as its fields: 28 bytes on the wire instead of 56 decimal digits. The
/// decimal form is `sluice_core::SequenceNumber`'s `Display`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireSequenceNumber {
    pub shard_created_s: u64,
    pub shard_index: u32,
    pub position: u64,
    pub arrival_s: u64,
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireStreamStatus {
    Creating = 0,
    Deleting = 1,
    Active = 2,
    Updating = 3,
}

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireStreamMode {
    Provisioned = 0,
    OnDemand = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireShard {
    pub shard_index: u32,
    pub parent_shard_index: Option<u32>,
    pub adjacent_parent_shard_index: Option<u32>,
    pub hash_range: WireHashRange,
    /// The core that owns the shard.
    pub core_id: u16,
    pub starting_sequence_number: WireSequenceNumber,
    /// Present once the shard is closed.
    pub ending_sequence_number: Option<WireSequenceNumber>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireStreamDescription<'a> {
    pub stream_name: &'a str,
    pub stream_status: WireStreamStatus,
    pub stream_mode: WireStreamMode,
    pub retention_period_hours: u32,
    pub stream_creation_timestamp_ms: u64,
    /// Every shard, open and closed, in shard index order.
    pub shards: Vec<WireShard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireShardMapEntry {
    pub shard_index: u32,
    pub hash_range: WireHashRange,
    pub core_id: u16,
}

/// The open shards of a stream and their owning cores, for client-side routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireShardMap {
    pub shards: Vec<WireShardMapEntry>,
}

/// How the server picks a record's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireRoute {
    /// MD5 of the partition key, as Kinesis does.
    PartitionKey,
    ExplicitHashKey(u128),
    /// Straight to an open shard by index.
    ShardIndex(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WirePutRecord<'a> {
    pub route: WireRoute,
    /// Required (1..=256 characters) with `WireRoute::PartitionKey`; may be empty otherwise,
    /// and readers then see an empty partition key.
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePutBatch<'a> {
    pub stream_name: &'a str,
    pub records: Vec<WirePutRecord<'a>>,
}

/// Per record, in request order: its sequence number (which names its shard) or why it failed.
/// A failure is never `WireStatus::OK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WirePutBatchResult {
    pub records: Vec<Result<WireSequenceNumber, WireStatus>>,
}

/// Where a Read or Subscribe starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireStartPosition {
    TrimHorizon,
    Latest,
    AtTimestamp {
        timestamp_ms: u64,
    },
    AtSequenceNumber(WireSequenceNumber),
    AfterSequenceNumber(WireSequenceNumber),
    /// At a record index in the shard, as a previous response's `next_position` gives it.
    AtPosition(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireRead<'a> {
    pub stream_name: &'a str,
    pub shard_index: u32,
    pub start: WireStartPosition,
    /// 1..=`READ_RECORDS_MAX`.
    pub records_max: u32,
    /// Partition key plus data bytes, 1..=`READ_BYTES_MAX`; at least one record is returned
    /// even if it alone is larger.
    pub bytes_max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireSubscribe<'a> {
    pub stream_name: &'a str,
    pub shard_index: u32,
    pub start: WireStartPosition,
    /// Records the server may push before the client grants more (one credit = one record).
    pub credits: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireCredit {
    pub subscription_id: u64,
    /// Added to the subscription's balance.
    pub credits: u32,
}

/// PutBatch bytes given back to the connection's ingest credit (version 3 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireIngestCredit {
    /// Frame bytes, headers included, of PutBatch requests the server has finished with.
    pub bytes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireUnsubscribe {
    pub subscription_id: u64,
}

/// One record read back. Its sequence number is
/// `(batch.shard_created_s, batch.shard_index, position, arrival_s)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireRecord<'a> {
    pub position: u64,
    /// The seconds field of the record's sequence number.
    pub arrival_s: u64,
    pub approximate_arrival_timestamp_ms: u64,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// Records of one shard: a Read response or a subscription's RecordsEvent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRecords<'a> {
    pub shard_created_s: u64,
    pub shard_index: u32,
    pub records: Vec<WireRecord<'a>>,
    /// Where to continue; `None` once a closed shard has been read to its end.
    pub next_position: Option<u64>,
    pub millis_behind_latest: u64,
}

impl WireRecords<'_> {
    /// The full sequence number of `record`, which belongs to this batch.
    pub const fn sequence_number(&self, record: &WireRecord<'_>) -> WireSequenceNumber {
        WireSequenceNumber {
            shard_created_s: self.shard_created_s,
            shard_index: self.shard_index,
            position: record.position,
            arrival_s: record.arrival_s,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError<'a> {
    /// The raw opcode of the request this answers.
    pub opcode: u16,
    pub status: WireStatus,
    pub message: &'a str,
}

/// The last frame of a subscription. `WireStatus::OK` means the shard was closed and every
/// record has been delivered; any other status is the error that ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireSubscriptionEnded<'a> {
    pub status: WireStatus,
    pub message: &'a str,
}
