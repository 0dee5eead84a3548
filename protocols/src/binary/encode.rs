//! Frame encoding. Every encoder appends to a caller's `Vec<u8>` so that a connection can reuse
//! one output buffer, and leaves the buffer as it found it when it fails.

use sluice_core::api::RecordView;

use crate::binary::frame::*;
use crate::binary::limits::{
    AUTH_VERSION_MIN, FRAME_BYTES_MAX, HEADER_BYTES, HELLO_PORTS_MAX, HELLO_VERSIONS_MAX,
    INGEST_CREDIT_VERSION_MIN, PUT_BATCH_RECORDS_MAX, READ_RECORDS_MAX, RECORD_DATA_BYTES_MAX,
    STRING_BYTES_MAX,
};

/// Why a frame could not be encoded. Each is a caller's mistake the wire cannot express.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {bytes} bytes; the wire allows at most {max}")]
    TooLong {
        field: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("{field} has {count} items; the wire allows at most {max}")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("the frame would be {frame_bytes} bytes; the limit is {max}")]
    FrameTooLarge { frame_bytes: usize, max: usize },
    /// A version 1 server hello has no challenge, and every later one has one.
    #[error("a server hello of version {version} must {} an authentication challenge", if *version < AUTH_VERSION_MIN { "not carry" } else { "carry" })]
    HelloChallengeMismatch { version: u16 },
    /// A server hello before version 3 has no ingest credit, and every later one has one.
    #[error("a server hello of version {version} must {} an ingest credit", if *version < INGEST_CREDIT_VERSION_MIN { "not carry" } else { "carry" })]
    HelloIngestCreditMismatch { version: u16 },
}

/// Appends `frame` to `out`. On error `out` is unchanged.
pub fn encode_frame(frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    // A put's records are most of its frame: room for all of them up front, so a 500 KB batch
    // is one allocation rather than a doubling (and a copy) per power of two.
    out.reserve(HEADER_BYTES + body_bytes_hint(&frame.body).min(FRAME_BYTES_MAX));
    let (opcode, flags) = frame.body.opcode_and_flags();
    write_header_placeholder(out, opcode, flags, frame.request_id);
    let result = encode_body(&frame.body, out).and_then(|()| patch_frame_length(out, start));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// What [`encode_body`] will write for a put (exactly, when every field fits); 0 for the
/// other bodies, whose encoders grow the buffer as they go.
fn body_bytes_hint(body: &Body<'_>) -> usize {
    match body {
        Body::PutBatch(p) => {
            2 + p.stream_name.len()
                + 4
                + p.records
                    .iter()
                    .map(|r| {
                        let route = match r.route {
                            WireRoute::PartitionKey => 1,
                            WireRoute::ExplicitHashKey(_) => 1 + 16,
                            WireRoute::ShardIndex(_) => 1 + 4,
                        };
                        route + 2 + r.partition_key.len() + 4 + r.data.len()
                    })
                    .sum::<usize>()
        }
        _ => 0,
    }
}

fn write_header_placeholder(out: &mut Vec<u8>, opcode: u16, flags: u16, request_id: u64) {
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&opcode.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
}

fn patch_frame_length(out: &mut [u8], start: usize) -> Result<(), EncodeError> {
    let frame_bytes = out.len() - start;
    if frame_bytes > FRAME_BYTES_MAX {
        return Err(EncodeError::FrameTooLarge {
            frame_bytes,
            max: FRAME_BYTES_MAX,
        });
    }
    let length = u32::try_from(frame_bytes).expect("FRAME_BYTES_MAX fits u32");
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}
fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::TooLong {
        field,
        bytes: s.len(),
        max: STRING_BYTES_MAX,
    })?;
    put_u16(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_data(out: &mut Vec<u8>, data: &[u8]) -> Result<(), EncodeError> {
    if data.len() > RECORD_DATA_BYTES_MAX {
        return Err(EncodeError::TooLong {
            field: "record data",
            bytes: data.len(),
            max: RECORD_DATA_BYTES_MAX,
        });
    }
    put_u32(
        out,
        u32::try_from(data.len()).expect("RECORD_DATA_BYTES_MAX fits u32"),
    );
    out.extend_from_slice(data);
    Ok(())
}

/// Checks `count` against `max` and writes it as the given width.
fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), EncodeError> {
    if count > max {
        return Err(EncodeError::TooMany { field, count, max });
    }
    Ok(())
}

fn put_count_u32(
    out: &mut Vec<u8>,
    field: &'static str,
    count: usize,
    max: usize,
) -> Result<(), EncodeError> {
    check_count(field, count, max)?;
    let count = u32::try_from(count).map_err(|_| EncodeError::TooMany { field, count, max })?;
    put_u32(out, count);
    Ok(())
}

fn put_hash_range(out: &mut Vec<u8>, range: &WireHashRange) {
    put_u128(out, range.starting);
    put_u128(out, range.ending);
}

fn put_sequence_number(out: &mut Vec<u8>, s: &WireSequenceNumber) {
    put_u64(out, s.shard_created_s);
    put_u32(out, s.shard_index);
    put_u64(out, s.position);
    put_u64(out, s.arrival_s);
}

fn put_start(out: &mut Vec<u8>, start: &WireStartPosition) {
    match start {
        WireStartPosition::TrimHorizon => put_u8(out, 0),
        WireStartPosition::Latest => put_u8(out, 1),
        WireStartPosition::AtTimestamp { timestamp_ms } => {
            put_u8(out, 2);
            put_u64(out, *timestamp_ms);
        }
        WireStartPosition::AtSequenceNumber(s) => {
            put_u8(out, 3);
            put_sequence_number(out, s);
        }
        WireStartPosition::AfterSequenceNumber(s) => {
            put_u8(out, 4);
            put_sequence_number(out, s);
        }
        WireStartPosition::AtPosition(position) => {
            put_u8(out, 5);
            put_u64(out, *position);
        }
    }
}

/// Presence bits of a shard entry in a DescribeStream response.
pub(crate) mod shard_presence {
    pub const PARENT: u8 = 1 << 0;
    pub const ADJACENT_PARENT: u8 = 1 << 1;
    pub const ENDING_SEQUENCE_NUMBER: u8 = 1 << 2;
    pub const KNOWN: u8 = PARENT | ADJACENT_PARENT | ENDING_SEQUENCE_NUMBER;
}

/// What an absent sequence number is sent as.
pub(crate) const ZERO_SEQUENCE_NUMBER: WireSequenceNumber = WireSequenceNumber {
    shard_created_s: 0,
    shard_index: 0,
    position: 0,
    arrival_s: 0,
};

fn put_shard(out: &mut Vec<u8>, shard: &WireShard) {
    let mut presence = 0;
    if shard.parent_shard_index.is_some() {
        presence |= shard_presence::PARENT;
    }
    if shard.adjacent_parent_shard_index.is_some() {
        presence |= shard_presence::ADJACENT_PARENT;
    }
    if shard.ending_sequence_number.is_some() {
        presence |= shard_presence::ENDING_SEQUENCE_NUMBER;
    }
    put_u32(out, shard.shard_index);
    put_u8(out, presence);
    put_u32(out, shard.parent_shard_index.unwrap_or(0));
    put_u32(out, shard.adjacent_parent_shard_index.unwrap_or(0));
    put_hash_range(out, &shard.hash_range);
    put_u16(out, shard.core_id);
    put_sequence_number(out, &shard.starting_sequence_number);
    put_sequence_number(
        out,
        &shard.ending_sequence_number.unwrap_or(ZERO_SEQUENCE_NUMBER),
    );
}

fn encode_body(body: &Body<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match body {
        Body::Hello(hello) => {
            out.extend_from_slice(&hello.magic);
            check_count("hello versions", hello.versions.len(), HELLO_VERSIONS_MAX)?;
            put_u8(
                out,
                u8::try_from(hello.versions.len()).expect("HELLO_VERSIONS_MAX fits u8"),
            );
            for v in &hello.versions {
                put_u16(out, *v);
            }
        }
        Body::HelloOk(hello) => {
            put_u16(out, hello.version);
            put_u16(out, hello.core_count);
            put_u16(out, hello.core_id);
            check_count("core ports", hello.core_ports.len(), HELLO_PORTS_MAX)?;
            put_u16(
                out,
                u16::try_from(hello.core_ports.len()).expect("HELLO_PORTS_MAX fits u16"),
            );
            for port in &hello.core_ports {
                put_u16(out, *port);
            }
            match (hello.version >= AUTH_VERSION_MIN, &hello.challenge) {
                (false, None) => {}
                (true, Some(challenge)) => {
                    put_u8(out, u8::from(challenge.auth_required));
                    out.extend_from_slice(&challenge.server_nonce);
                }
                _ => {
                    return Err(EncodeError::HelloChallengeMismatch {
                        version: hello.version,
                    });
                }
            }
            match (
                hello.version >= INGEST_CREDIT_VERSION_MIN,
                hello.ingest_credit_bytes,
            ) {
                (false, None) => {}
                (true, Some(bytes)) => put_u32(out, bytes),
                _ => {
                    return Err(EncodeError::HelloIngestCreditMismatch {
                        version: hello.version,
                    });
                }
            }
        }
        Body::Auth(auth) => {
            put_str(out, "access key id", auth.access_key_id)?;
            out.extend_from_slice(&auth.signature);
        }
        Body::Ping
        | Body::Pong
        | Body::AuthOk
        | Body::CreateStreamOk
        | Body::SubscribeOk
        | Body::UnsubscribeOk => {}
        Body::CreateStream(c) => {
            put_str(out, "stream name", c.stream_name)?;
            put_u32(out, c.shard_count);
        }
        Body::DescribeStream(n) | Body::GetShardMap(n) => {
            put_str(out, "stream name", n.stream_name)?
        }
        Body::DescribeStreamOk(d) => {
            put_str(out, "stream name", d.stream_name)?;
            put_u8(out, d.stream_status as u8);
            put_u8(out, d.stream_mode as u8);
            put_u32(out, d.retention_period_hours);
            put_u64(out, d.stream_creation_timestamp_ms);
            put_count_u32(out, "shards", d.shards.len(), FRAME_BYTES_MAX)?;
            for shard in &d.shards {
                put_shard(out, shard);
            }
        }
        Body::ListStreams(l) => {
            put_str(
                out,
                "exclusive start stream name",
                l.exclusive_start_stream_name.unwrap_or(""),
            )?;
            put_u32(out, l.limit);
        }
        Body::ListStreamsOk(l) => {
            put_u8(out, u8::from(l.has_more_streams));
            put_count_u32(out, "stream names", l.stream_names.len(), FRAME_BYTES_MAX)?;
            for name in &l.stream_names {
                put_str(out, "stream name", name)?;
            }
        }
        Body::GetShardMapOk(m) => {
            put_count_u32(out, "shard map entries", m.shards.len(), FRAME_BYTES_MAX)?;
            for entry in &m.shards {
                put_u32(out, entry.shard_index);
                put_hash_range(out, &entry.hash_range);
                put_u16(out, entry.core_id);
            }
        }
        Body::PutBatch(p) => {
            put_str(out, "stream name", p.stream_name)?;
            put_count_u32(
                out,
                "put batch records",
                p.records.len(),
                PUT_BATCH_RECORDS_MAX,
            )?;
            for record in &p.records {
                match record.route {
                    WireRoute::PartitionKey => put_u8(out, 0),
                    WireRoute::ExplicitHashKey(key) => {
                        put_u8(out, 1);
                        put_u128(out, key);
                    }
                    WireRoute::ShardIndex(index) => {
                        put_u8(out, 2);
                        put_u32(out, index);
                    }
                }
                put_str(out, "partition key", record.partition_key)?;
                put_data(out, record.data)?;
            }
        }
        Body::PutBatchOk(r) => {
            put_count_u32(
                out,
                "put batch results",
                r.records.len(),
                PUT_BATCH_RECORDS_MAX,
            )?;
            for result in &r.records {
                match result {
                    Ok(sequence_number) => {
                        put_u16(out, 0);
                        put_sequence_number(out, sequence_number);
                    }
                    Err(status) => {
                        // A failure must not read as success; the server maps a zero to a fault.
                        assert!(
                            !status.is_ok(),
                            "a failed put result carries a non-zero status"
                        );
                        put_u16(out, status.0);
                    }
                }
            }
        }
        Body::Read(r) => {
            put_str(out, "stream name", r.stream_name)?;
            put_u32(out, r.shard_index);
            put_start(out, &r.start);
            put_u32(out, r.records_max);
            put_u32(out, r.bytes_max);
        }
        Body::Subscribe(s) => {
            put_str(out, "stream name", s.stream_name)?;
            put_u32(out, s.shard_index);
            put_start(out, &s.start);
            put_u32(out, s.credits);
        }
        Body::Credit(c) => {
            put_u64(out, c.subscription_id);
            put_u32(out, c.credits);
        }
        Body::Unsubscribe(u) => put_u64(out, u.subscription_id),
        Body::IngestCredit(c) => put_u32(out, c.bytes),
        Body::ReadOk(records) | Body::RecordsEvent(records) => {
            check_count("records", records.records.len(), READ_RECORDS_MAX as usize)?;
            put_records_prefix(out, records.shard_created_s, records.shard_index);
            let count_at = out.len() - 4;
            patch_records_trailer(
                out,
                count_at,
                records.next_position,
                records.millis_behind_latest,
            );
            for r in &records.records {
                put_record(
                    out,
                    r.position,
                    r.arrival_s,
                    r.approximate_arrival_timestamp_ms,
                    r.partition_key,
                    r.data,
                )?;
            }
            let count = u32::try_from(records.records.len()).expect("READ_RECORDS_MAX fits u32");
            out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        }
        Body::Error(e) => {
            put_u16(out, e.status.0);
            put_str(out, "error message", e.message)?;
        }
        Body::SubscriptionEnded(e) => {
            put_u16(out, e.status.0);
            put_str(out, "error message", e.message)?;
        }
    }
    Ok(())
}

/// Bytes of a records payload before its first record.
const RECORDS_PREFIX_BYTES: usize = 8 + 4 + 1 + 8 + 8 + 4;

/// Writes the fixed fields of a records payload with a zero continuation and count; the count
/// is the last four bytes.
fn put_records_prefix(out: &mut Vec<u8>, shard_created_s: u64, shard_index: u32) {
    put_u64(out, shard_created_s);
    put_u32(out, shard_index);
    put_u8(out, 0);
    put_u64(out, 0);
    put_u64(out, 0);
    put_u32(out, 0);
}

/// Fills in `has_next`, `next_position` and `millis_behind_latest`, which sit just before the
/// record count at `count_at`.
fn patch_records_trailer(
    out: &mut [u8],
    count_at: usize,
    next_position: Option<u64>,
    millis_behind_latest: u64,
) {
    let at = count_at - (1 + 8 + 8);
    out[at] = u8::from(next_position.is_some());
    out[at + 1..at + 9].copy_from_slice(&next_position.unwrap_or(0).to_le_bytes());
    out[at + 9..at + 17].copy_from_slice(&millis_behind_latest.to_le_bytes());
}

fn put_record(
    out: &mut Vec<u8>,
    position: u64,
    arrival_s: u64,
    arrival_ms: u64,
    partition_key: &str,
    data: &[u8],
) -> Result<(), EncodeError> {
    let start = out.len();
    put_u64(out, position);
    put_u64(out, arrival_s);
    put_u64(out, arrival_ms);
    let result = put_str(out, "partition key", partition_key).and_then(|()| put_data(out, data));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The bytes one record adds to a records payload.
pub const fn record_wire_bytes(partition_key_bytes: usize, data_bytes: usize) -> usize {
    8 + 8 + 8 + 2 + partition_key_bytes + 4 + data_bytes
}

/// Streams records into a Read response or a RecordsEvent without collecting them first, so a
/// server can encode straight out of its read buffers (`RecordBatch::for_each_record`).
///
/// The frame is complete only after [`RecordsWriter::finish`]; a writer dropped before that
/// removes its partial frame from the buffer.
pub struct RecordsWriter<'o> {
    out: &'o mut Vec<u8>,
    frame_start: usize,
    count_at: usize,
    shard_index: u32,
    count: u32,
    payload_bytes: usize,
    finished: bool,
}

impl<'o> RecordsWriter<'o> {
    /// Starts a Read response to request `request_id`.
    pub fn read_response(
        out: &'o mut Vec<u8>,
        request_id: u64,
        shard_created_s: u64,
        shard_index: u32,
    ) -> Self {
        Self::begin(
            out,
            Opcode::Read,
            flags::RESPONSE,
            request_id,
            shard_created_s,
            shard_index,
        )
    }

    /// Starts a RecordsEvent push of subscription `subscription_id`.
    pub fn records_event(
        out: &'o mut Vec<u8>,
        subscription_id: u64,
        shard_created_s: u64,
        shard_index: u32,
    ) -> Self {
        Self::begin(
            out,
            Opcode::RecordsEvent,
            flags::PUSH,
            subscription_id,
            shard_created_s,
            shard_index,
        )
    }

    fn begin(
        out: &'o mut Vec<u8>,
        opcode: Opcode,
        flags: u16,
        request_id: u64,
        shard_created_s: u64,
        shard_index: u32,
    ) -> Self {
        let frame_start = out.len();
        write_header_placeholder(out, opcode.code(), flags, request_id);
        put_records_prefix(out, shard_created_s, shard_index);
        let count_at = out.len() - 4;
        assert_eq!(
            count_at + 4 - frame_start,
            HEADER_BYTES + RECORDS_PREFIX_BYTES
        );
        Self {
            out,
            frame_start,
            count_at,
            shard_index,
            count: 0,
            payload_bytes: 0,
            finished: false,
        }
    }

    /// Makes room for `records` more records of `payload_bytes` partition key plus data bytes
    /// in all, capped at what one frame may hold, so that a large answer is encoded into one
    /// allocation instead of a buffer that doubles (and copies itself) as it grows.
    ///
    /// A buffer that must grow by a large answer is swapped for one of
    /// [`sluice_core::large_buffers`] (what it holds is copied over), whose pages are already
    /// mapped.
    pub fn reserve(&mut self, records: usize, payload_bytes: usize) {
        let wanted = records * record_wire_bytes(0, 0) + payload_bytes;
        let room = FRAME_BYTES_MAX.saturating_sub(self.out.len() - self.frame_start);
        let wanted = wanted.min(room);
        if self.out.capacity() - self.out.len() < wanted {
            let mut bigger = sluice_core::large_buffers::take(self.out.len() + wanted);
            bigger.extend_from_slice(self.out);
            sluice_core::large_buffers::give_back(std::mem::replace(self.out, bigger));
        }
    }

    /// Where the buffer lives and how much it can hold, to see that it did not move.
    #[cfg(test)]
    pub(super) fn buffer(&self) -> (*const u8, usize) {
        (self.out.as_ptr(), self.out.capacity())
    }

    /// Records written so far.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Partition key plus data bytes written so far, to compare with a Read's `bytes_max`.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Whether one more record of these sizes still fits the frame and record limits.
    pub fn fits(&self, partition_key_bytes: usize, data_bytes: usize) -> bool {
        let frame_bytes =
            self.out.len() - self.frame_start + record_wire_bytes(partition_key_bytes, data_bytes);
        self.count < READ_RECORDS_MAX && frame_bytes <= FRAME_BYTES_MAX
    }

    /// Appends one record. Fails, writing nothing, when the record would break a limit; the
    /// caller then finishes this frame and carries the record in the next one.
    pub fn push(
        &mut self,
        position: u64,
        arrival_s: u64,
        approximate_arrival_timestamp_ms: u64,
        partition_key: &str,
        data: &[u8],
    ) -> Result<(), EncodeError> {
        if self.count >= READ_RECORDS_MAX {
            return Err(EncodeError::TooMany {
                field: "records",
                count: self.count as usize + 1,
                max: READ_RECORDS_MAX as usize,
            });
        }
        let frame_bytes =
            self.out.len() - self.frame_start + record_wire_bytes(partition_key.len(), data.len());
        if frame_bytes > FRAME_BYTES_MAX {
            return Err(EncodeError::FrameTooLarge {
                frame_bytes,
                max: FRAME_BYTES_MAX,
            });
        }
        put_record(
            self.out,
            position,
            arrival_s,
            approximate_arrival_timestamp_ms,
            partition_key,
            data,
        )?;
        self.count += 1;
        self.payload_bytes += partition_key.len() + data.len();
        Ok(())
    }

    /// Appends a record as the engine's read path hands it out.
    pub fn push_view(&mut self, record: &RecordView<'_>) -> Result<(), EncodeError> {
        assert_eq!(
            record.sequence_number.shard_index, self.shard_index,
            "a records frame carries the records of one shard"
        );
        self.push(
            record.sequence_number.position,
            record.sequence_number.arrival_s,
            record.approximate_arrival_timestamp_ms,
            record.partition_key,
            record.data,
        )
    }

    /// Completes the frame with where to continue and how far behind the tip it is.
    pub fn finish(mut self, next_position: Option<u64>, millis_behind_latest: u64) {
        patch_records_trailer(self.out, self.count_at, next_position, millis_behind_latest);
        let count_at = self.count_at;
        self.out[count_at..count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        patch_frame_length(self.out, self.frame_start)
            .expect("push keeps the frame within FRAME_BYTES_MAX");
        self.finished = true;
    }
}

impl Drop for RecordsWriter<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate(self.frame_start);
        }
    }
}
