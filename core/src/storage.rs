//! The narrow storage face: the only way a service (Firehose sinks, SQL applications, video,
//! enhanced fan-out, the binary protocol's reads) reaches the records of a stream.
//!
//! Three capabilities, each a trait so that a service can be written and tested against any
//! implementation:
//! - [`RecordLog::append`]: store records in one shard; the answer comes once they are as
//!   durable as the server's durability setting promises.
//! - [`RecordLog::read`]: read a shard from a [`ReadStart`], optionally waiting for the next
//!   commit when nothing is there yet. The owning core resolves the start and reads in one
//!   round trip, whichever core the caller runs on.
//! - [`CheckpointLog`]: a named consumer's position per shard, committed with the same
//!   durability as records, so a service that advances its checkpoint only after delivery is
//!   at-least-once across crashes.
//!
//! The types here carry no executor type and no wire wording: errors are structured enums that
//! each front end words in its own protocol. Implementations must be `Clone + Send + Sync` so a
//! handle can move to any executor of the process (a glommio service core or a tokio runtime);
//! their futures are `Send` for the same reason.
//!
//! Invariants every implementation keeps:
//! - Positions of one shard are dense and strictly increasing: an append of `n` records gets
//!   `first_position..first_position + n`, and no other append interleaves with them.
//! - A read never returns a record that an append has not acknowledged under the durability
//!   setting in force, and returns records in position order.
//! - A committed checkpoint is never lost once `commit` returned `Ok`, and a later `load`
//!   returns the last committed position for that key (or `None` after its stream was deleted
//!   and created again: a checkpoint names one incarnation of a stream).

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use crate::api::{RecordBatch, RecordView};
use crate::hash_key::HashRange;
use crate::sequence_number::SequenceNumber;

/// One shard of a stream, by name and index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardAddress {
    pub stream_name: String,
    pub shard_index: u32,
}

impl ShardAddress {
    pub fn new(stream_name: impl Into<String>, shard_index: u32) -> Self {
        Self {
            stream_name: stream_name.into(),
            shard_index,
        }
    }
}

/// A record to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Which shard a record belongs to, as its sequence numbers spell it: the shard's index and
/// its creation second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShardOrigin {
    pub shard_index: u32,
    pub created_s: u64,
}

/// Where one record sits in its shard and when it arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordStamp {
    pub position: u64,
    pub arrival_ms: u64,
}

impl ShardOrigin {
    /// The sequence number of the record `stamp` of this shard: its arrival second, but never
    /// one before the shard's creation second, so numbers grow along a shard's lineage (a
    /// record that reaches a child within the second its parents closed is numbered as if it
    /// arrived the second after, when the child was created).
    pub fn sequence_number(&self, stamp: RecordStamp) -> SequenceNumber {
        SequenceNumber::new(
            self.created_s,
            self.shard_index,
            stamp.position,
            (stamp.arrival_ms / 1000).max(self.created_s),
        )
    }
}

/// Where an append landed: records got positions `positions` in order, all with the same
/// arrival time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub origin: ShardOrigin,
    pub positions: Range<u64>,
    pub arrival_ms: u64,
}

impl Appended {
    /// The sequence number of the record at `position`.
    pub fn sequence_number(&self, position: u64) -> SequenceNumber {
        assert!(self.positions.contains(&position));
        self.origin.sequence_number(RecordStamp {
            position,
            arrival_ms: self.arrival_ms,
        })
    }
}

/// Where a read starts. The first five are GetShardIterator's iterator types and resolve the
/// same way (a sequence number must belong to the shard, a timestamp may not be in the future);
/// `AtPosition` is a record position as a previous read's `next_position` gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStart {
    TrimHorizon,
    Latest,
    AtTimestamp { timestamp_ms: u64 },
    AtSequenceNumber(SequenceNumber),
    AfterSequenceNumber(SequenceNumber),
    AtPosition(u64),
}

/// How much one read may return: at most `records_max` records and about `bytes_max` data
/// bytes (always at least one record when one is there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    pub records_max: usize,
    pub bytes_max: usize,
}

/// One record of a [`ReadBatch`], as ranges into the batch's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StoredRecord {
    position: u64,
    arrival_ms: u64,
    partition_key: Range<usize>,
    data: Range<usize>,
}

/// Records read from one shard, copied into one buffer so the batch can cross threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    origin: Option<ShardOrigin>,
    records: Vec<StoredRecord>,
    buffer: Vec<u8>,
    /// The position the read actually started at (after a retention clamp).
    pub start_position: u64,
    /// Where the next read continues; `None` once a closed shard has been read to its end.
    pub next_position: Option<u64>,
    /// How far the last record read is behind the shard's newest record (0 at the tip).
    pub millis_behind_latest: u64,
    /// The shard's next free position and newest arrival when the read ran.
    pub tip_position: u64,
    pub tip_arrival_ms: Option<u64>,
}

impl ReadBatch {
    /// An empty batch of the shard `origin`, with room for `records` records of `bytes` bytes.
    pub fn new(origin: ShardOrigin, records: usize, bytes: usize) -> Self {
        Self {
            origin: Some(origin),
            records: Vec::with_capacity(records),
            buffer: crate::large_buffers::take(bytes),
            start_position: 0,
            next_position: None,
            millis_behind_latest: 0,
            tip_position: 0,
            tip_arrival_ms: None,
        }
    }

    /// Adds the record at `position`. Positions must be pushed in strictly increasing order.
    pub fn push(&mut self, position: u64, arrival_ms: u64, partition_key: &str, data: &[u8]) {
        if let Some(last) = self.records.last() {
            assert!(position > last.position);
        }
        let key_start = self.buffer.len();
        self.buffer.extend_from_slice(partition_key.as_bytes());
        let data_start = self.buffer.len();
        self.buffer.extend_from_slice(data);
        self.records.push(StoredRecord {
            position,
            arrival_ms,
            partition_key: key_start..data_start,
            data: data_start..self.buffer.len(),
        });
    }

    /// The shard the records come from.
    pub fn origin(&self) -> ShardOrigin {
        self.origin
            .expect("a batch is made by ReadBatch::new with its shard")
    }

    /// The position of the last record, if any.
    pub fn last_position(&self) -> Option<u64> {
        self.records.last().map(|r| r.position)
    }

    /// The arrival time of the last record, if any.
    pub fn last_arrival_ms(&self) -> Option<u64> {
        self.records.last().map(|r| r.arrival_ms)
    }

    /// Partition key plus data bytes of every record.
    pub fn payload_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Data bytes of every record (partition keys excluded).
    pub fn data_bytes(&self) -> usize {
        self.records.iter().map(|r| r.data.len()).sum()
    }

    /// Each record's position with its view, in order.
    pub fn for_each_positioned(&self, f: &mut dyn FnMut(u64, RecordView<'_>)) {
        let Some(origin) = self.origin else { return };
        for record in &self.records {
            // A partition key went in as a `&str`, so its bytes are UTF-8.
            let partition_key = std::str::from_utf8(&self.buffer[record.partition_key.clone()])
                .expect("partition keys are stored from &str");
            f(
                record.position,
                RecordView {
                    sequence_number: origin.sequence_number(RecordStamp {
                        position: record.position,
                        arrival_ms: record.arrival_ms,
                    }),
                    approximate_arrival_timestamp_ms: record.arrival_ms,
                    partition_key,
                    data: &self.buffer[record.data.clone()],
                },
            );
        }
    }
}

impl Drop for ReadBatch {
    /// A large buffer goes back to [`crate::large_buffers`] for the next read.
    fn drop(&mut self) {
        crate::large_buffers::give_back(std::mem::take(&mut self.buffer));
    }
}

impl RecordBatch for ReadBatch {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn for_each_record(&self, f: &mut dyn FnMut(RecordView<'_>)) {
        self.for_each_positioned(&mut |_, view| f(view));
    }
}

/// One shard of a stream as a reader or writer needs it for routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardPlacement {
    pub shard_index: u32,
    pub hash_range: HashRange,
    /// The shard core whose executor appends to and reads the shard.
    pub core_id: usize,
    /// Open shards take writes; closed ones (resharded) are only read.
    pub open: bool,
}

/// Why an append did not happen. Nothing of the append was stored in any of these cases.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_name} does not exist or is not writable")]
    StreamNotWritable { stream_name: String },
    #[error("shard {} of stream {} does not exist", shard.shard_index, shard.stream_name)]
    ShardNotFound { shard: ShardAddress },
    /// Record `index` has an empty or over-long partition key (1 to 256 characters), or its
    /// partition key and data together exceed the stream's record size limit.
    #[error(
        "record {index} is invalid: {bytes} bytes (at most {bytes_max}) or a partition key outside 1 to 256 characters"
    )]
    InvalidRecord {
        index: usize,
        bytes: usize,
        bytes_max: usize,
    },
    /// A reshard closed the shard: append to its children.
    #[error("shard {} of stream {} is closed", shard.shard_index, shard.stream_name)]
    ShardClosed { shard: ShardAddress },
    /// The shard's throughput limits refused the records.
    #[error("shard {} of stream {} is over its write throughput", shard.shard_index, shard.stream_name)]
    Throttled { shard: ShardAddress },
    #[error("append to shard {} of stream {} failed: {reason}", shard.shard_index, shard.stream_name)]
    Storage { shard: ShardAddress, reason: String },
    /// The owning core is not running (the server is shutting down).
    #[error("the shard core is not running")]
    Unavailable,
}

/// Why a read returned no batch.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("stream {stream_name} does not exist or is not readable")]
    StreamNotFound { stream_name: String },
    #[error("shard {} of stream {} does not exist", shard.shard_index, shard.stream_name)]
    ShardNotFound { shard: ShardAddress },
    /// The start names a sequence number of another shard, a timestamp in the future, or is
    /// malformed; `detail` says which.
    #[error("invalid read start for shard {} of stream {}: {detail}", shard.shard_index, shard.stream_name)]
    InvalidStart { shard: ShardAddress, detail: String },
    /// The shard's read limits refused the call.
    #[error("shard {} of stream {} is over its read throughput", shard.shard_index, shard.stream_name)]
    Throttled { shard: ShardAddress },
    #[error("read of shard {} of stream {} failed: {reason}", shard.shard_index, shard.stream_name)]
    Storage { shard: ShardAddress, reason: String },
    #[error("the shard core is not running")]
    Unavailable,
}

/// A named consumer's position in one shard.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointKey {
    /// The consumer's name: a delivery stream, an application, a video writer.
    pub consumer: String,
    pub shard: ShardAddress,
}

/// Why a checkpoint was not committed or loaded.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("stream {stream_name} does not exist")]
    StreamNotFound { stream_name: String },
    #[error("checkpoint storage failed: {reason}")]
    Storage { reason: String },
    #[error("the checkpoint store is not running")]
    Unavailable,
}

/// Append and read records of a stream's shards. See the module doc for the invariants.
///
/// No method has a default: each is the storage engine's own work, and a default that, say,
/// read without waiting would silently break a caller that relies on the wait.
pub trait RecordLog: Clone + Send + Sync + 'static {
    /// The shards of `stream_name` (open and closed, in index order) with their owning cores.
    fn shards(&self, stream_name: &str) -> Result<Vec<ShardPlacement>, ReadError>;

    /// Appends `records` to the open shard `shard`, in order.
    fn append(
        &self,
        shard: &ShardAddress,
        records: Vec<NewRecord>,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send;

    /// Reads `shard` from `start`. With `wait`, when no record exists at the start yet, the
    /// owning core waits for the commit that stores one, or until `wait` passes (then the batch
    /// is empty); nothing polls. Records past the stream's retention are skipped.
    fn read(
        &self,
        shard: &ShardAddress,
        start: ReadStart,
        limits: ReadLimits,
        wait: Option<Duration>,
    ) -> impl Future<Output = Result<ReadBatch, ReadError>> + Send;
}

/// Durable consumer checkpoints. See the module doc for the invariants.
pub trait CheckpointLog: Clone + Send + Sync + 'static {
    /// The last committed position of `key` in the stream's current incarnation, if any.
    fn load_checkpoint(
        &self,
        key: &CheckpointKey,
    ) -> impl Future<Output = Result<Option<u64>, CheckpointError>> + Send;

    /// Commits `position` (the next position the consumer will read) for `key`; durable when
    /// this returns `Ok`.
    fn commit_checkpoint(
        &self,
        key: &CheckpointKey,
        position: u64,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_batch_serves_records_with_their_sequence_numbers() {
        let origin = ShardOrigin {
            shard_index: 3,
            created_s: 1_700_000_000,
        };
        let mut batch = ReadBatch::new(origin, 2, 16);
        batch.push(7, 1_700_000_001_500, "a", b"one");
        batch.push(8, 1_700_000_002_000, "bc", b"two!");
        let mut seen = Vec::new();
        batch.for_each_positioned(&mut |position, view| {
            seen.push((
                position,
                view.sequence_number,
                view.partition_key.to_owned(),
                view.data.to_vec(),
            ));
        });
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, 7);
        assert_eq!(
            seen[0].1,
            SequenceNumber::new(1_700_000_000, 3, 7, 1_700_000_001)
        );
        assert_eq!(seen[1].2, "bc");
        assert_eq!(seen[1].3, b"two!");
        assert_eq!(batch.data_bytes(), 7);
        assert_eq!(batch.last_position(), Some(8));
    }

    #[test]
    #[should_panic]
    fn read_batch_refuses_positions_out_of_order() {
        let origin = ShardOrigin {
            shard_index: 0,
            created_s: 0,
        };
        let mut batch = ReadBatch::new(origin, 2, 0);
        batch.push(5, 0, "k", b"");
        batch.push(5, 0, "k", b"");
    }

    #[test]
    fn a_record_never_carries_an_arrival_second_before_its_shard_was_created() {
        let origin = ShardOrigin {
            shard_index: 1,
            created_s: 100,
        };
        let early = origin.sequence_number(RecordStamp {
            position: 0,
            arrival_ms: 99_000,
        });
        assert_eq!(early, SequenceNumber::new(100, 1, 0, 100));
        let appended = Appended {
            origin,
            positions: 4..6,
            arrival_ms: 150_000,
        };
        assert_eq!(
            appended.sequence_number(5),
            SequenceNumber::new(100, 1, 5, 150)
        );
    }
}
