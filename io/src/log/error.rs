//! The errors of the per-core log: one enum per operation (opening, appending, reading,
//! retention), each `#[non_exhaustive]` with structured fields.
//!
//! [`AppendError`] is `Clone` because one failed group commit fails every append in it; an
//! append error that says the log is poisoned stays true for the life of the [`super::Log`].
//! [`AppendError::DiskFull`] is the one write failure that does not poison: nothing of the
//! failed commit reached the disk, so the next commit simply tries again.

use std::path::PathBuf;
use std::sync::Arc;

use super::block;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenLogError {
    #[error("invalid log configuration: {reason}")]
    InvalidConfig { reason: String },
    #[error("cannot create or list log directory {dir}")]
    Directory {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the filesystem holding {dir} rejects O_DIRECT (EINVAL); put the data dir on a filesystem \
         that supports direct I/O, such as ext4 or xfs"
    )]
    DirectIoUnsupported {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open segment {path}")]
    OpenSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create segment {path}")]
    CreateSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read segment {segment_id} at offset {offset}")]
    ReadSegment {
        segment_id: u64,
        offset: u64,
        source: std::io::Error,
    },
    #[error("cannot write segment {segment_id} at offset {offset} while dropping its tail")]
    WriteSegment {
        segment_id: u64,
        offset: u64,
        source: std::io::Error,
    },
    #[error("cannot sync segment {segment_id}, the end of the log, after opening it")]
    SyncSegment {
        segment_id: u64,
        source: std::io::Error,
    },
    #[error("cannot remove empty segment {path} found after the end of the log")]
    RemoveSegment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "segment {} is corrupt at offset {offset}: {} valid block(s) holding {} record(s) \
         follow {} damaged byte(s), so this is not a torn write; nothing was truncated and an \
         operator must decide",
        path.display(),
        report.blocks_after_hole,
        report.records_after_hole,
        report.hole_bytes
    )]
    Corrupt {
        segment_id: u64,
        path: PathBuf,
        /// Where the damage starts: the offset of the first block that is not valid.
        offset: u64,
        report: Box<Corruption>,
    },
    #[error("segment {segment_id} belongs to log {stored}, not to log {expected}")]
    ForeignSegment {
        segment_id: u64,
        stored: u32,
        expected: u32,
    },
    #[error(
        "segment {segment_id} offset {offset}: shard {stream_name}/{shard_index} chunk starts at \
         position {stored}, expected {expected}"
    )]
    PositionMismatch {
        segment_id: u64,
        offset: u64,
        stream_name: String,
        shard_index: u32,
        stored: u64,
        expected: u64,
    },
}

/// Records `starting..ending` of one shard (`ending` excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionRange {
    pub starting: u64,
    pub ending: u64,
}

/// What a hole in the middle of the log costs one shard that has records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDamage {
    pub stream_name: String,
    pub stream_created_ms: u64,
    pub shard_index: u32,
    /// Positions that were in the damaged bytes: from the shard's next position before the
    /// hole (0 for a shard not seen before it) to its first position after it. Empty if the
    /// shard lost nothing there.
    pub missing: PositionRange,
    /// Positions stored intact after the hole; truncating the log at the hole drops them too.
    pub after_hole: PositionRange,
}

/// Why the bytes after the end of the chain cannot be the torn commits that were in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionEvidence {
    /// A valid block lies further from the hole than the commits in flight can reach.
    BeyondLastCommit { block_offset: u64 },
    /// Valid blocks after the hole carry different commit times, so they come from several
    /// commits, and every commit but the last was acknowledged.
    SeveralCommits {
        arrival_ms_first: u64,
        arrival_ms_later: u64,
    },
    /// A valid block after the hole was written after a completed `fdatasync` had covered the
    /// hole (its header's `synced_below` is past the block expected there): the hole is damage
    /// to durable, acknowledged data, not a torn write.
    WrittenAfterSync {
        block_offset: u64,
        synced_below: u64,
    },
    /// More valid blocks after the hole carry distinct commit times than commits can be in
    /// flight at once.
    TooManyCommits { commits: u64 },
    /// A valid block after the hole is older than the last block before it, or its number
    /// does not fit the blocks that could lie in between.
    OutOfSequence { block_offset: u64, block_seq: u64 },
    /// The hole is in an older segment: segment `segment_id`, started after it, holds valid
    /// blocks, and a segment is only started once every commit before it is acknowledged.
    LaterSegment { segment_id: u64 },
}

/// The precise report of a hole in the middle of the log: damaged bytes followed by valid
/// blocks that a torn write of the commits in flight cannot explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The block number the chain expected at the hole.
    pub expected_block_seq: u64,
    /// The block number of the first valid block after the hole.
    pub next_valid_block_seq: u64,
    /// Bytes from the hole to the first valid block after it.
    pub hole_bytes: u64,
    /// Valid blocks, records and bytes (up to the end of the last valid block) after the hole.
    pub blocks_after_hole: u64,
    pub records_after_hole: u64,
    pub bytes_after_hole: u64,
    /// Every shard with a chunk after the hole, in (stream, created, shard) order. A shard with
    /// no chunk after the hole may also have lost records from its tip; which ones cannot be
    /// told from the segment.
    pub shards: Vec<ShardDamage>,
    pub evidence: CorruptionEvidence,
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("log poisoned by an earlier failed write or sync of segment {segment_id}")]
    Poisoned { segment_id: u64 },
    #[error("writing segment {segment_id} at offset {offset} failed; log poisoned")]
    WriteFailed {
        segment_id: u64,
        offset: u64,
        source: Arc<std::io::Error>,
    },
    #[error("syncing segment {segment_id} failed; log poisoned")]
    FsyncFailed {
        segment_id: u64,
        source: Arc<std::io::Error>,
    },
    /// The file system is out of space (ENOSPC or EDQUOT) while preallocating segment
    /// `segment_id` or writing to it, and no byte of the commit reached the disk. Not
    /// poisoned: the commit's positions are handed out again and the next commit retries, so
    /// the log resumes by itself once space is freed.
    #[error("the disk holding segment {segment_id} is full; nothing of this append was stored")]
    DiskFull {
        segment_id: u64,
        source: Arc<std::io::Error>,
    },
    #[error("cannot create or grow segment {segment_id}")]
    CreateSegment {
        segment_id: u64,
        source: Arc<std::io::Error>,
    },
    #[error("the log's committer has stopped")]
    Closed,
    #[error("cannot get the data key {key_id} to encrypt with: {reason}")]
    Key { key_id: String, reason: String },
}

impl AppendError {
    /// Whether the append may succeed if tried again as it is: the disk was full, and nothing
    /// about the log itself is wrong.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::DiskFull { .. })
    }
}

/// Whether an I/O error says the file system is out of space (or the user out of quota).
/// glommio keeps the error kind but not always the raw errno, so both are checked.
pub(crate) fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// An error and all its sources on one line, so a poisoned log's health and a start-up failure
/// name the root cause.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A write or sync of the log failed earlier: what the disk holds is unknown, so the log
    /// serves nothing until a restart runs recovery on it (redb's rule).
    #[error("log poisoned by an earlier failed write or sync of segment {segment_id}")]
    Poisoned { segment_id: u64 },
    #[error("reading segment {segment_id} at offset {offset} failed")]
    Io {
        segment_id: u64,
        offset: u64,
        source: std::io::Error,
    },
    #[error("short read of segment {segment_id} at offset {offset}: {got} of {expected} bytes")]
    ShortRead {
        segment_id: u64,
        offset: u64,
        expected: usize,
        got: usize,
    },
    #[error(
        "chunk in segment {segment_id} at offset {offset} is corrupt: stored crc {stored:#010x}, \
         computed {computed:#010x}"
    )]
    ChunkCorrupt {
        segment_id: u64,
        offset: u64,
        stored: u32,
        computed: u32,
    },
    #[error("chunk in segment {segment_id} at offset {offset} does not match the index")]
    ChunkMismatch { segment_id: u64, offset: u64 },
    #[error("chunk in segment {segment_id} at offset {offset} holds an invalid archive: {reason}")]
    ArchiveInvalid {
        segment_id: u64,
        offset: u64,
        reason: String,
    },
    #[error(
        "encrypted chunk in segment {segment_id} at offset {offset} (shard {stream_name}/\
         {shard_index}) cannot be decrypted: {problem}"
    )]
    Decrypt {
        segment_id: u64,
        offset: u64,
        stream_name: String,
        shard_index: u32,
        problem: block::DecryptProblem,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    #[error("writing a position marker before deleting segments failed")]
    Marker { source: AppendError },
    #[error("removing segment {segment_id} failed")]
    RemoveSegment {
        segment_id: u64,
        source: std::io::Error,
    },
    #[error("syncing the log directory after removing segments failed")]
    SyncDir { source: std::io::Error },
}
