//! Opening the log: listing the segment files, scanning their blocks in order to rebuild every
//! shard's [`ShardIndex`], finding the end of the log, and telling a torn tail (dropped) from
//! corruption of acknowledged records (refused).
//!
//! Invariants:
//! - A segment is named after the sequence number of its first block, and a segment continues
//!   the log only if its name is the block sequence number the previous segment ended before.
//! - Recovery accepts only an unbroken chain: each block must carry the next block sequence
//!   number and the CRC of the block before it (the oldest block's predecessor may have been
//!   deleted by retention), pass its own CRC, and belong to this log.
//! - The first block that breaks the chain ends the chain. If the log continues in a later
//!   segment, the bytes after the break are a tail the writer abandoned when it rolled over.
//!   Otherwise they are the tail of the log, and only the last commit can have been in flight
//!   there (the committer runs one commit at a time), so the bytes after the break may hold
//!   nothing but that commit's blocks: all with one commit time, numbered after the break,
//!   within [`commit_extent_max`] bytes of it. Such a tail is torn: it was never acknowledged,
//!   and recovery zeroes it so that no block of it can be mistaken for data later. Any other
//!   valid block after the break is acknowledged data behind a hole: opening fails with
//!   [`OpenLogError::Corrupt`] and nothing is changed, until an operator truncates with
//!   [`RecoveryMode::Repair`].
//! - Beyond the end of the log a segment holds only zeros, or the blocks of the one commit
//!   that was in flight: recovery zeroes every torn tail it drops.
//! - Segments after the end of the log are removed if they hold no valid block; if they do,
//!   earlier data is corrupt and opening fails with [`OpenLogError::DataAfterLogEnd`].
//! - Every chunk of a shard starts at the position where the shard's previous chunk ended, and
//!   arrival times never go backwards; anything else fails with
//!   [`OpenLogError::PositionMismatch`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};

use super::block::{self, BLOCK_ALIGN, HeaderProblem};
use super::block_cache::BlockCache;
use super::error::{Corruption, CorruptionEvidence, PositionRange, ShardDamage};
use super::shard_index::{ChunkRef, ShardIndex};
use super::{
    BLOCK_BYTES_TARGET, LogConfig, LogStats, OpenLogError, Segment, ShardKey, State,
    open_segment_file, segment_path, sync_dir,
};

/// Recovery reads segments in windows of this many bytes.
const RECOVERY_WINDOW_BYTES: usize = 1 << 20;

/// Recovery zeroes a dropped tail with writes of at most this many bytes.
const ZERO_WRITE_BYTES: u64 = 1 << 20;
/// The most bytes of records one append can carry: a PutRecords request (5 MiB of data and
/// partition keys) plus the per-record overhead the committer's estimate adds.
const APPEND_BYTES_MAX: usize = sluice_core::limits::PUT_RECORDS_BYTES_MAX + (1 << 20);

const _: () = assert!(RECOVERY_WINDOW_BYTES.is_multiple_of(BLOCK_ALIGN));
const _: () = assert!((ZERO_WRITE_BYTES as usize).is_multiple_of(BLOCK_ALIGN));

/// What recovery may change on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecoveryMode {
    /// [`super::Log::open`]: drop (zero) a torn tail and remove empty leftover segments;
    /// refuse to open on corruption.
    Open,
    /// Check only: change nothing, report the torn tail and leftover segments.
    Verify,
    /// As `Open`, but truncate the log at a corruption, dropping every block after the hole.
    Repair,
}

/// A torn last commit at the end of the log: never acknowledged, dropped on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment_id: u64,
    /// Where the tail starts; the log continues here.
    pub offset: u64,
    /// Bytes from `offset` to the end of the last page of the tail that is not all zeros.
    pub bytes: u64,
}

/// A corruption that [`RecoveryMode::Repair`] truncated the log at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub segment_id: u64,
    pub path: PathBuf,
    pub offset: u64,
    /// What the truncation dropped.
    pub corruption: Corruption,
}

/// What recovery found besides the state of the log.
#[derive(Debug, Default)]
pub(super) struct RecoveryReport {
    /// Blocks accepted into the chain.
    pub blocks: u64,
    pub torn_tail: Option<TornTail>,
    pub truncated: Option<Truncation>,
    /// Empty segments after the end of the log (removed unless verifying).
    pub leftover_segments: Vec<u64>,
}

/// An upper bound on the bytes one group commit occupies in its segment. The committer takes
/// up to `commit_bytes_max` of appends, or one bigger append; the chunk and block headers and
/// the rkyv layout stay within twice the committer's estimate, and each block adds at most
/// 4 KiB of padding (blocks are cut at `min(commit_bytes_max, BLOCK_BYTES_TARGET)`, with one
/// more for each switch of encryption key, at most one per append).
pub(super) fn commit_extent_max(commit_bytes_max: usize) -> u64 {
    let batch = commit_bytes_max.max(APPEND_BYTES_MAX) as u64;
    let block_target = commit_bytes_max.clamp(1, BLOCK_BYTES_TARGET) as u64;
    let blocks = batch / block_target + batch / 64 + 2;
    batch
        .saturating_mul(2)
        .saturating_add(blocks.saturating_mul(BLOCK_ALIGN as u64))
}

fn is_einval(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

/// Where the chain of blocks must continue.
struct ChainCursor {
    expected_block_seq: u64,
    /// `None` before the first block of the oldest segment, whose predecessor may have been
    /// deleted by retention.
    prev_crc: Option<u32>,
    /// The commit time of the last accepted block.
    arrival_ms: Option<u64>,
    /// Blocks accepted so far.
    blocks: u64,
}

/// How a segment scan ended.
struct ScanEnd {
    offset: u64,
    /// Bytes at `offset` that look written but are not a valid next block.
    torn_bytes: u64,
}

/// Makes `window` hold at least `len` bytes at `offset` (fewer only at the end of the file).
async fn fill_window(
    file: &DmaFile,
    segment_id: u64,
    window: &mut Option<(u64, ReadResult)>,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), OpenLogError> {
    if let Some((start, read)) = window
        && *start <= offset
        && offset + len as u64 <= *start + read.len() as u64
    {
        return Ok(());
    }
    let want = (len.max(RECOVERY_WINDOW_BYTES) as u64).min(size - offset);
    let want = usize::try_from(want).expect("a recovery window fits usize");
    let read =
        file.read_at_aligned(offset, want)
            .await
            .map_err(|error| OpenLogError::ReadSegment {
                segment_id,
                offset,
                source: error.into(),
            })?;
    *window = Some((offset, read));
    Ok(())
}

fn window_slice(window: &Option<(u64, ReadResult)>, offset: u64) -> &[u8] {
    match window {
        Some((start, read)) => &read[(offset - start) as usize..],
        None => &[],
    }
}

struct Interner(HashMap<String, Rc<str>>);

impl Interner {
    fn get(&mut self, name: &str) -> Rc<str> {
        if let Some(rc) = self.0.get(name) {
            return rc.clone();
        }
        let rc: Rc<str> = Rc::from(name);
        self.0.insert(name.to_owned(), rc.clone());
        rc
    }
}

async fn scan_segment(
    state: &mut State,
    file: &DmaFile,
    segment_id: u64,
    size: u64,
    cursor: &mut ChainCursor,
    arrivals: &mut HashMap<ShardKey, u64>,
    names: &mut Interner,
) -> Result<ScanEnd, OpenLogError> {
    let mut window = None;
    let mut offset = 0u64;
    loop {
        if offset + (BLOCK_ALIGN as u64) > size {
            return Ok(ScanEnd {
                offset,
                torn_bytes: 0,
            });
        }
        fill_window(file, segment_id, &mut window, offset, BLOCK_ALIGN, size).await?;
        let header = match block::parse_header(window_slice(&window, offset)) {
            Ok(header) => header,
            Err(HeaderProblem::Zeroed) => {
                return Ok(ScanEnd {
                    offset,
                    torn_bytes: 0,
                });
            }
            Err(_) => {
                return Ok(ScanEnd {
                    offset,
                    torn_bytes: BLOCK_ALIGN as u64,
                });
            }
        };
        if header.log_id != state.config.log_id {
            return Err(OpenLogError::ForeignSegment {
                segment_id,
                stored: header.log_id,
                expected: state.config.log_id,
            });
        }
        let padded = header.padded_len() as u64;
        let torn = ScanEnd {
            offset,
            torn_bytes: padded.min(size - offset),
        };
        let chained = header.block_seq == cursor.expected_block_seq
            && cursor.prev_crc.is_none_or(|prev| prev == header.prev_crc);
        if !chained || padded > size - offset {
            return Ok(torn);
        }
        fill_window(
            file,
            segment_id,
            &mut window,
            offset,
            header.padded_len(),
            size,
        )
        .await?;
        let bytes = window_slice(&window, offset);
        if bytes.len() < header.block_len() {
            return Ok(torn);
        }
        let raw = &bytes[..header.block_len()];
        let computed = block::block_crc(raw);
        if computed != header.crc {
            tracing::debug!(
                segment_id,
                segment_offset = offset,
                stored = header.crc,
                computed,
                "Block CRC mismatch."
            );
            return Ok(torn);
        }
        let Ok(chunks) = block::parse_chunks(raw, &header) else {
            tracing::warn!(
                segment_id,
                segment_offset = offset,
                "Block passed its CRC but its chunks are malformed; treating it as the end of the log."
            );
            return Ok(torn);
        };
        for (chunk_offset, chunk) in chunks {
            let shard = ShardKey {
                stream_name: names.get(chunk.stream_name),
                stream_created_ms: chunk.stream_created_ms,
                shard_index: chunk.shard_index,
            };
            let index = state
                .shards
                .entry(shard.clone())
                .or_insert_with(|| ShardIndex::starting_at(chunk.first_position));
            if chunk.first_position != index.next_position
                || index
                    .last_arrival_ms
                    .is_some_and(|last| chunk.arrival_ms < last)
            {
                return Err(OpenLogError::PositionMismatch {
                    segment_id,
                    offset,
                    stream_name: chunk.stream_name.to_owned(),
                    shard_index: chunk.shard_index,
                    stored: chunk.first_position,
                    expected: index.next_position,
                });
            }
            index.push(ChunkRef {
                first_position: chunk.first_position,
                record_count: chunk.record_count,
                arrival_ms: chunk.arrival_ms,
                segment_id,
                block_offset: offset,
                chunk_offset: u32::try_from(chunk_offset).expect("a chunk offset fits u32"),
                chunk_len: u32::try_from(chunk.chunk_len).expect("a chunk fits u32 bytes"),
            });
            arrivals
                .entry(shard)
                .and_modify(|max| *max = (*max).max(chunk.arrival_ms))
                .or_insert(chunk.arrival_ms);
            state.last_arrival_ms = state.last_arrival_ms.max(chunk.arrival_ms);
        }
        cursor.expected_block_seq += 1;
        cursor.prev_crc = Some(header.crc);
        cursor.arrival_ms = Some(header.arrival_ms);
        cursor.blocks += 1;
        offset += padded;
    }
}

/// Whether a segment found after the end of the log holds a valid first block. If it does,
/// earlier data must be corrupt and the operator decides; if not, it is a segment the writer
/// created but never completed a write to.
async fn leftover_holds_valid_block(
    config: &LogConfig,
    segment_id: u64,
) -> Result<bool, OpenLogError> {
    let file = match open_segment_file(&config.dir, segment_id, false).await {
        Ok(file) => file,
        Err((path, source)) => return Err(OpenLogError::OpenSegment { path, source }),
    };
    let size = file
        .file_size()
        .await
        .map_err(|error| OpenLogError::ReadSegment {
            segment_id,
            offset: 0,
            source: error.into(),
        })?;
    let size = size - size % BLOCK_ALIGN as u64;
    let mut window = None;
    let mut valid = false;
    if size > 0 {
        fill_window(&file, segment_id, &mut window, 0, BLOCK_ALIGN, size).await?;
        if let Ok(header) = block::parse_header(window_slice(&window, 0))
            && header.padded_len() as u64 <= size
        {
            fill_window(&file, segment_id, &mut window, 0, header.padded_len(), size).await?;
            let bytes = window_slice(&window, 0);
            valid = bytes.len() >= header.block_len()
                && block::block_crc(&bytes[..header.block_len()]) == header.crc;
        }
    }
    drop(window);
    let _ = file.close().await;
    Ok(valid)
}

/// A valid block of this log found after the end of the chain.
struct FoundBlock {
    offset: u64,
    padded: u64,
    block_seq: u64,
    arrival_ms: u64,
}

/// Everything valid (and everything not zero) after the end of the chain in its segment.
struct TailScan {
    found: Vec<FoundBlock>,
    /// Per shard (stream name, creation time, shard index), the positions its chunks in the
    /// found blocks hold.
    shards: BTreeMap<(String, u64, u32), PositionRange>,
    records: u64,
    /// End of the last 4 KiB page at or after the end of the chain that is not all zeros (the
    /// end of the chain itself if there is none).
    nonzero_end: u64,
}

/// Reads the segment from `from` to its end, 4 KiB page by page, and collects every valid
/// block of this log it finds (header, CRC and chunk layout checked, the chain not). A valid
/// block is skipped whole, so a page inside it is never taken for a block header.
async fn scan_tail(
    file: &DmaFile,
    segment_id: u64,
    log_id: u32,
    from: u64,
    size: u64,
) -> Result<TailScan, OpenLogError> {
    let page = BLOCK_ALIGN as u64;
    let mut scan = TailScan {
        found: Vec::new(),
        shards: BTreeMap::new(),
        records: 0,
        nonzero_end: from,
    };
    let mut window = None;
    let mut offset = from;
    while offset + page <= size {
        fill_window(file, segment_id, &mut window, offset, BLOCK_ALIGN, size).await?;
        let bytes = &window_slice(&window, offset)[..BLOCK_ALIGN];
        if bytes.iter().all(|b| *b == 0) {
            offset += page;
            continue;
        }
        let header = block::parse_header(bytes)
            .ok()
            .filter(|h| h.log_id == log_id && h.padded_len() as u64 <= size - offset);
        if let Some(header) = header {
            fill_window(
                file,
                segment_id,
                &mut window,
                offset,
                header.padded_len(),
                size,
            )
            .await?;
            let bytes = window_slice(&window, offset);
            let raw = &bytes[..header.block_len().min(bytes.len())];
            if raw.len() == header.block_len()
                && block::block_crc(raw) == header.crc
                && let Ok(chunks) = block::parse_chunks(raw, &header)
            {
                for (_, chunk) in chunks {
                    let end = chunk.first_position + u64::from(chunk.record_count);
                    scan.records += u64::from(chunk.record_count);
                    scan.shards
                        .entry((
                            chunk.stream_name.to_owned(),
                            chunk.stream_created_ms,
                            chunk.shard_index,
                        ))
                        .and_modify(|range| {
                            range.starting = range.starting.min(chunk.first_position);
                            range.ending = range.ending.max(end);
                        })
                        .or_insert(PositionRange {
                            starting: chunk.first_position,
                            ending: end,
                        });
                }
                let padded = header.padded_len() as u64;
                scan.found.push(FoundBlock {
                    offset,
                    padded,
                    block_seq: header.block_seq,
                    arrival_ms: header.arrival_ms,
                });
                offset += padded;
                scan.nonzero_end = offset;
                continue;
            }
        }
        offset += page;
        scan.nonzero_end = offset;
    }
    Ok(scan)
}

/// Why the valid blocks after the end of the chain at `hole` cannot all be the torn last
/// commit, or `None` if they can. The last commit's blocks are numbered from the first block
/// after the last accepted one, one after another, each at least 4 KiB long; they share one
/// commit time, no earlier than that of the last accepted block; and they all lie within
/// `extent_max` bytes of the hole (the commit began at or before it).
fn corruption_evidence(
    scan: &TailScan,
    hole: u64,
    cursor: &ChainCursor,
    extent_max: u64,
) -> Option<CorruptionEvidence> {
    let first = scan.found.first()?;
    let mut last_seq = cursor.expected_block_seq;
    for found in &scan.found {
        assert!(found.offset >= hole, "the tail scan starts at the hole");
        if found.offset + found.padded > hole.saturating_add(extent_max) {
            return Some(CorruptionEvidence::BeyondLastCommit {
                block_offset: found.offset,
            });
        }
        let room = (found.offset - hole) / BLOCK_ALIGN as u64;
        let fits = found.block_seq > last_seq
            && found.block_seq - cursor.expected_block_seq <= room
            && cursor
                .arrival_ms
                .is_none_or(|last| found.arrival_ms >= last);
        if !fits {
            return Some(CorruptionEvidence::OutOfSequence {
                block_offset: found.offset,
                block_seq: found.block_seq,
            });
        }
        if found.arrival_ms != first.arrival_ms {
            return Some(CorruptionEvidence::SeveralCommits {
                arrival_ms_first: first.arrival_ms,
                arrival_ms_later: found.arrival_ms,
            });
        }
        last_seq = found.block_seq;
    }
    None
}

/// The report of a hole at `hole` followed by the valid blocks in `scan`.
fn corruption_report(
    state: &State,
    scan: &TailScan,
    hole: u64,
    expected_block_seq: u64,
    evidence: CorruptionEvidence,
) -> Corruption {
    let first = scan
        .found
        .first()
        .expect("a corruption has valid blocks after the hole");
    let last = scan
        .found
        .last()
        .expect("a corruption has valid blocks after the hole");
    let shards = scan
        .shards
        .iter()
        .map(
            |((stream_name, stream_created_ms, shard_index), after_hole)| {
                let key = ShardKey {
                    stream_name: Rc::from(stream_name.as_str()),
                    stream_created_ms: *stream_created_ms,
                    shard_index: *shard_index,
                };
                let before = state.shards.get(&key).map_or(0, |s| s.next_position);
                ShardDamage {
                    stream_name: stream_name.clone(),
                    stream_created_ms: *stream_created_ms,
                    shard_index: *shard_index,
                    missing: PositionRange {
                        starting: before,
                        ending: after_hole.starting.max(before),
                    },
                    after_hole: *after_hole,
                }
            },
        )
        .collect();
    Corruption {
        expected_block_seq,
        next_valid_block_seq: first.block_seq,
        hole_bytes: first.offset - hole,
        blocks_after_hole: scan.found.len() as u64,
        records_after_hole: scan.records,
        bytes_after_hole: last.offset + last.padded - first.offset,
        shards,
        evidence,
    }
}

/// Overwrites `from..to` of a segment with zeros and syncs it, so that no block of a dropped
/// tail can be read as data again.
async fn zero_range(
    file: &DmaFile,
    segment_id: u64,
    from: u64,
    to: u64,
) -> Result<(), OpenLogError> {
    assert!(
        from.is_multiple_of(BLOCK_ALIGN as u64),
        "zeroing starts 4 KiB-aligned"
    );
    assert!(
        to.is_multiple_of(BLOCK_ALIGN as u64),
        "zeroing ends 4 KiB-aligned"
    );
    let write_error = |offset: u64, source: std::io::Error| OpenLogError::WriteSegment {
        segment_id,
        offset,
        source,
    };
    let mut offset = from;
    while offset < to {
        let len = (to - offset).min(ZERO_WRITE_BYTES);
        let len = usize::try_from(len).expect("a zeroing write fits usize");
        let mut buffer = file.alloc_dma_buffer(len);
        buffer.as_bytes_mut().fill(0);
        let written = file
            .write_rc_at(Rc::new(buffer), offset)
            .await
            .map_err(|error| write_error(offset, error.into()))?;
        if written != len {
            return Err(write_error(
                offset,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("wrote {written} of {len} bytes"),
                ),
            ));
        }
        offset += len as u64;
    }
    file.fdatasync()
        .await
        .map_err(|error| write_error(from, error.into()))?;
    Ok(())
}

fn open_error(
    config: &LogConfig,
    path: PathBuf,
    source: std::io::Error,
    create: bool,
) -> OpenLogError {
    if is_einval(&source) {
        OpenLogError::DirectIoUnsupported {
            dir: config.dir.clone(),
            source,
        }
    } else if create {
        OpenLogError::CreateSegment { path, source }
    } else {
        OpenLogError::OpenSegment { path, source }
    }
}

/// Makes glommio's polled-I/O probe give the right answer for the device holding `dir`.
///
/// glommio decides once per device and executor thread whether reads may go through the
/// polled (IOPOLL) ring, by reading the first file that thread opens with `DmaFile`. If that
/// file is empty the probe read succeeds without touching the device and answers "yes" even on
/// devices without poll queues (virtio disks, for one); from then on every read on that thread
/// fails with EOPNOTSUPP. Opening a file that holds real data first makes the probe issue a
/// real read. [`Log::open`] calls this; call it yourself before opening any other `DmaFile` on
/// the same executor if that file may be empty.
pub async fn probe_direct_io(dir: &Path) -> Result<(), OpenLogError> {
    let dir_error = |source| OpenLogError::Directory {
        dir: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    let path = dir.join(".direct-io-probe");
    std::fs::write(&path, [0xA5u8; BLOCK_ALIGN]).map_err(dir_error)?;
    let opened = OpenOptions::new().read(true).dma_open(&path).await;
    let _ = std::fs::remove_file(&path);
    match opened {
        Ok(file) => {
            let _ = file.close().await;
            Ok(())
        }
        Err(error) => {
            let source: std::io::Error = error.into();
            if is_einval(&source) {
                Err(OpenLogError::DirectIoUnsupported {
                    dir: dir.to_owned(),
                    source,
                })
            } else {
                Err(OpenLogError::OpenSegment { path, source })
            }
        }
    }
}

/// The ids of the segment files in `dir`, oldest first.
pub(super) fn segment_ids(dir: &Path) -> Result<Vec<u64>, OpenLogError> {
    let dir_error = |source| OpenLogError::Directory {
        dir: dir.to_owned(),
        source,
    };
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(id) = stem.parse::<u64>() {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

pub(super) async fn recover(
    config: LogConfig,
    mode: RecoveryMode,
) -> Result<(State, RecoveryReport), OpenLogError> {
    probe_direct_io(&config.dir).await?;
    let ids = segment_ids(&config.dir)?;
    let mut report = RecoveryReport::default();

    let health = std::sync::Arc::new(super::LogHealth::new(config.log_id));
    let mut state = State {
        config,
        shards: HashMap::new(),
        segments: BTreeMap::new(),
        active_segment_id: 1,
        write_offset: 0,
        next_block_seq: 1,
        prev_crc: 0,
        last_arrival_ms: 0,
        poisoned: None,
        health,
        cache: BlockCache::default(),
        stats: LogStats::default(),
        waiters: HashMap::new(),
    };

    if ids.is_empty() {
        assert_ne!(
            mode,
            RecoveryMode::Verify,
            "verifying never creates a segment"
        );
        let file = open_segment_file(&state.config.dir, 1, true)
            .await
            .map_err(|(path, source)| open_error(&state.config, path, source, true))?;
        let size = state.config.segment_bytes;
        file.pre_allocate(size, false)
            .await
            .map_err(|error| OpenLogError::CreateSegment {
                path: segment_path(&state.config.dir, 1),
                source: error.into(),
            })?;
        sync_dir(&state.config.dir)
            .await
            .map_err(dir_error_owned(&state.config.dir))?;
        state.segments.insert(
            1,
            Segment {
                file: Rc::new(file),
                size,
                shard_arrival_max: HashMap::new(),
            },
        );
        let segments_now = 1;
        crate::metrics::segments_changed(state.stats.segment_count, segments_now);
        state.stats.segment_count = segments_now;
        return Ok((state, report));
    }

    let mut cursor = ChainCursor {
        expected_block_seq: ids[0],
        prev_crc: None,
        arrival_ms: None,
        blocks: 0,
    };
    let mut names = Interner(HashMap::new());
    let mut ended = false;
    for (i, &segment_id) in ids.iter().enumerate() {
        if ended {
            report.leftover_segments.push(segment_id);
            continue;
        }
        assert_eq!(
            segment_id, cursor.expected_block_seq,
            "a segment that continues the log is named after its first block"
        );
        let file = open_segment_file(&state.config.dir, segment_id, false)
            .await
            .map_err(|(path, source)| open_error(&state.config, path, source, false))?;
        let size = file
            .file_size()
            .await
            .map_err(|error| OpenLogError::ReadSegment {
                segment_id,
                offset: 0,
                source: error.into(),
            })?;
        let size = size - size % BLOCK_ALIGN as u64;
        let mut arrivals = HashMap::new();
        let end = scan_segment(
            &mut state,
            &file,
            segment_id,
            size,
            &mut cursor,
            &mut arrivals,
            &mut names,
        )
        .await?;
        assert!(end.offset <= size, "a scan ends within its segment");
        assert!(
            end.offset.is_multiple_of(BLOCK_ALIGN as u64),
            "a scan ends on a block boundary"
        );
        assert!(
            end.torn_bytes <= size - end.offset,
            "a torn tail lies within its segment"
        );
        state.segments.insert(
            segment_id,
            Segment {
                file: Rc::new(file),
                size,
                shard_arrival_max: arrivals,
            },
        );
        let continues = ids.get(i + 1) == Some(&cursor.expected_block_seq);
        if continues {
            if end.torn_bytes > 0 {
                tracing::debug!(
                    segment_id,
                    segment_offset = end.offset,
                    "Skipping a tail the writer abandoned when it rolled over."
                );
            }
            continue;
        }
        ended = true;
        state.active_segment_id = segment_id;
        state.write_offset = end.offset;
    }
    report.blocks = cursor.blocks;

    // A later segment with a valid block means the chain broke before acknowledged data. This
    // is checked before anything is changed on disk.
    for &segment_id in &report.leftover_segments {
        if leftover_holds_valid_block(&state.config, segment_id).await? {
            return Err(OpenLogError::DataAfterLogEnd {
                segment_id,
                expected_block_seq: cursor.expected_block_seq,
            });
        }
    }

    let segment_id = state.active_segment_id;
    let hole = state.write_offset;
    let (file, size) = {
        let active = state.active();
        (active.file.clone(), active.size)
    };
    let scan = scan_tail(&file, segment_id, state.config.log_id, hole, size).await?;
    assert!(
        scan.nonzero_end >= hole,
        "the tail lies after the end of the chain"
    );
    assert!(scan.nonzero_end <= size, "the tail lies within its segment");
    let extent_max = commit_extent_max(state.config.commit_bytes_max);
    let drop_to = match corruption_evidence(&scan, hole, &cursor, extent_max) {
        None => {
            if scan.nonzero_end > hole {
                report.torn_tail = Some(TornTail {
                    segment_id,
                    offset: hole,
                    bytes: scan.nonzero_end - hole,
                });
            }
            scan.nonzero_end
        }
        Some(evidence) => {
            let corruption =
                corruption_report(&state, &scan, hole, cursor.expected_block_seq, evidence);
            let path = segment_path(&state.config.dir, segment_id);
            if mode != RecoveryMode::Repair {
                return Err(OpenLogError::Corrupt {
                    segment_id,
                    path,
                    offset: hole,
                    report: Box::new(corruption),
                });
            }
            tracing::error!(
                segment_id,
                segment_offset = hole,
                blocks_dropped = corruption.blocks_after_hole,
                records_dropped = corruption.records_after_hole,
                "Truncated the log at a corruption, as the operator asked; every record after it is dropped."
            );
            report.truncated = Some(Truncation {
                segment_id,
                path,
                offset: hole,
                corruption,
            });
            scan.nonzero_end
        }
    };
    if mode != RecoveryMode::Verify {
        if drop_to > hole {
            zero_range(&file, segment_id, hole, drop_to).await?;
        }
        if let Some(torn) = report.torn_tail {
            tracing::warn!(
                segment_id,
                segment_offset = torn.offset,
                bytes_dropped = torn.bytes,
                "Dropped a torn tail at the end of the log; it was never acknowledged."
            );
        }
        for &leftover in &report.leftover_segments {
            let path = segment_path(&state.config.dir, leftover);
            std::fs::remove_file(&path)
                .map_err(|source| OpenLogError::RemoveSegment { path, source })?;
            tracing::warn!(
                segment_id = leftover,
                "Removed a segment after the end of the log that holds no valid block."
            );
        }
    }

    state.next_block_seq = cursor.expected_block_seq;
    state.prev_crc = cursor.prev_crc.unwrap_or(0);
    assert!(
        state.segments.contains_key(&state.active_segment_id),
        "the log ends in a segment that recovery opened"
    );
    assert!(
        state.write_offset <= state.active().size,
        "the tail position lies within the active segment"
    );
    assert!(
        state.next_block_seq >= state.active_segment_id,
        "the active segment holds no block numbered past the end of the log"
    );
    let segments_now = state.segments.len();
    crate::metrics::segments_changed(state.stats.segment_count, segments_now);
    state.stats.segment_count = segments_now;
    for index in state.shards.values_mut() {
        index.assigned_next = index.next_position;
    }
    tracing::info!(
        log_id = state.config.log_id,
        segments = state.segments.len(),
        shards = state.shards.len(),
        next_block_seq = state.next_block_seq,
        "Recovered the log."
    );
    Ok((state, report))
}

fn dir_error_owned(dir: &Path) -> impl Fn(std::io::Error) -> OpenLogError + '_ {
    move |source| OpenLogError::Directory {
        dir: dir.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{AppendRecord, CheckMode, Durability, Log, check};
    use super::*;

    #[test]
    fn a_format_version_1_block_still_opens_and_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let a = shard("old", 0);
            let batch = records(5, 40, 9);
            {
                let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                    .await
                    .expect("log opens");
                log.append(&a, batch.clone()).await.expect("append");
            }
            // Version 1 differs from version 3 only in the chunk flags, which were reserved
            // zeros: relabel the one block as version 1, as an old binary wrote it.
            let file = segment_files(&path).remove(0);
            let mut bytes = std::fs::read(&file).expect("read segment");
            assert_eq!(block_offsets(&file), vec![0], "one block");
            bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
            let len = block::parse_header(&bytes)
                .expect("version 1 parses")
                .block_len();
            let crc = block::block_crc(&bytes[..len]);
            bytes[36..40].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&file, &bytes).expect("write segment");
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(read_all(&log, &a, 0).await, expected(&[batch]));
        });
    }

    /// A crash mid-write leaves the newest block torn. Recovery must drop exactly that block,
    /// keep every earlier one, and let the next commit continue at the right positions.
    fn torn_tail_recovers(damage: impl FnOnce(&Path, usize) + 'static) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let s = shard("torn", 0);
            let batches = [records(4, 50, 1), records(3, 2000, 2), records(5, 3000, 3)];
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            for batch in &batches {
                log.append(&s, batch.clone()).await.expect("append");
            }
            drop(log);
            let files = segment_files(&path);
            assert_eq!(files.len(), 1);
            let offsets = block_offsets(&files[0]);
            assert_eq!(offsets.len(), 3);
            damage(&files[0], offsets[2]);

            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(log.tip(&s).next_position, 7, "the torn block is gone");
            assert_eq!(read_all(&log, &s, 0).await, expected(&batches[..2]));
            let again = records(2, 10, 4);
            assert_eq!(
                log.append(&s, again.clone())
                    .await
                    .expect("append")
                    .first_position,
                7
            );
            drop(log);
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            let all = expected(&[batches[0].clone(), batches[1].clone(), again]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            assert_eq!(
                log.append(&s, records(1, 1, 5))
                    .await
                    .expect("append")
                    .first_position,
                9
            );
        });
    }

    #[test]
    fn recovery_drops_a_corrupted_last_block_and_keeps_the_earlier_ones() {
        torn_tail_recovers(|file, offset| {
            let mut bytes = std::fs::read(file).expect("read segment");
            bytes[offset + 5000] ^= 0xFF;
            std::fs::write(file, bytes).expect("write segment");
        });
    }

    #[test]
    fn recovery_drops_a_last_block_truncated_mid_way() {
        torn_tail_recovers(|file, offset| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .expect("open segment");
            f.set_len((offset + 6000) as u64).expect("truncate");
        });
    }

    /// Writes five commits into one segment, each at a distinct commit time, and returns the
    /// log directory, the batches and the offsets of their blocks.
    fn five_acknowledged_commits(path: &Path) -> (Vec<Vec<AppendRecord>>, Vec<usize>) {
        let path = path.to_owned();
        let batches = vec![
            records(4, 50, 1),
            records(3, 2000, 2),
            records(5, 2500, 3),
            records(2, 100, 4),
            records(6, 10, 5),
        ];
        let written = batches.clone();
        let file = run(async move {
            let s = shard("mid", 0);
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            for batch in &written {
                log.append(&s, batch.clone()).await.expect("append");
                // Distinct commit times: blocks of different commits then carry different ones.
                glommio::timer::sleep(std::time::Duration::from_millis(3)).await;
            }
            segment_files(&path).remove(0)
        });
        let offsets = block_offsets(&file);
        assert_eq!(offsets.len(), 5, "one block per commit");
        (batches, offsets)
    }

    /// Damage in the middle of the newest segment, with acknowledged blocks after it, used to
    /// be taken for a torn tail: recovery cut the log there and the next commit overwrote every
    /// acknowledged record after the hole. Recovery must refuse instead, say exactly where the
    /// hole is and what lies after it, and leave the segment untouched.
    fn middle_damage_is_refused(damage: impl FnOnce(&mut [u8], usize)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        let (batches, offsets) = five_acknowledged_commits(&path);
        let file = segment_files(&path).remove(0);
        let mut bytes = std::fs::read(&file).expect("read segment");
        damage(&mut bytes, offsets[1]);
        std::fs::write(&file, &bytes).expect("write segment");

        let open_path = path.clone();
        let error = run(async move {
            Log::open(config(&open_path, 1 << 20, Durability::Fsync))
                .await
                .expect_err("recovery refuses")
        });
        let OpenLogError::Corrupt {
            segment_id,
            path: segment,
            offset,
            report,
        } = &error
        else {
            panic!("expected Corrupt, got {error}");
        };
        assert_eq!(*segment_id, 1);
        assert_eq!(segment, &file);
        assert_eq!(*offset, offsets[1] as u64);
        assert_eq!(report.expected_block_seq, 2);
        assert_eq!(report.next_valid_block_seq, 3);
        assert_eq!(report.hole_bytes, (offsets[2] - offsets[1]) as u64);
        assert_eq!(report.blocks_after_hole, 3);
        assert_eq!(report.records_after_hole, 5 + 2 + 6);
        assert!(
            matches!(report.evidence, CorruptionEvidence::SeveralCommits { .. }),
            "{:?}",
            report.evidence
        );
        assert_eq!(
            report.shards,
            vec![ShardDamage {
                stream_name: "mid".to_owned(),
                stream_created_ms: 1_700_000_000_000,
                shard_index: 0,
                missing: PositionRange {
                    starting: 4,
                    ending: 7
                },
                after_hole: PositionRange {
                    starting: 7,
                    ending: 20
                },
            }]
        );
        let message = error.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("offset {}", offsets[1])),
            "{message}"
        );
        assert_eq!(
            std::fs::read(&file).expect("read segment"),
            bytes,
            "a refused start changes no byte of the segment"
        );

        // Verifying reports the same and changes nothing either.
        let verify_path = path.clone();
        let verified = run(async move {
            check(
                config(&verify_path, 1 << 20, Durability::Fsync),
                CheckMode::Verify,
            )
            .await
        });
        assert!(
            matches!(verified, Err(OpenLogError::Corrupt { offset, .. }) if offset == offsets[1] as u64)
        );
        assert_eq!(std::fs::read(&file).expect("read segment"), bytes);

        // The operator's repair truncates at the hole and says what it dropped; the log then
        // opens and continues after the last record before the hole.
        let repair_path = path.clone();
        let repaired = run(async move {
            check(
                config(&repair_path, 1 << 20, Durability::Fsync),
                CheckMode::Repair,
            )
            .await
            .expect("repair succeeds")
        });
        let truncated = repaired.truncated.expect("the repair truncated");
        assert_eq!(truncated.offset, offsets[1] as u64);
        assert_eq!(truncated.corruption.records_after_hole, 13);
        assert_eq!(
            repaired.shards[0].stored,
            PositionRange {
                starting: 0,
                ending: 4
            }
        );
        let first = batches[0].clone();
        run(async move {
            let s = shard("mid", 0);
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens after the repair");
            assert_eq!(read_all(&log, &s, 0).await, expected(&[first]));
            let appended = log.append(&s, records(1, 1, 9)).await.expect("append");
            assert_eq!(appended.first_position, 4);
        });
    }

    #[test]
    fn recovery_refuses_a_flipped_byte_in_a_block_followed_by_acknowledged_blocks() {
        middle_damage_is_refused(|bytes, offset| bytes[offset + 1000] ^= 0xFF);
    }

    #[test]
    fn recovery_refuses_a_zeroed_block_followed_by_acknowledged_blocks() {
        middle_damage_is_refused(|bytes, offset| bytes[offset..offset + 4096].fill(0));
    }

    #[test]
    fn recovery_refuses_a_damaged_block_header_followed_by_acknowledged_blocks() {
        middle_damage_is_refused(|bytes, offset| bytes[offset + 17] ^= 0x40);
    }

    /// The last commit's blocks are written concurrently, so a crash can leave its first block
    /// torn and its later blocks complete. That commit was never acknowledged: it is a torn
    /// tail, dropped and zeroed, not a corruption.
    #[test]
    fn a_torn_last_commit_whose_later_blocks_landed_is_still_a_torn_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let s = shard("multi", 0);
            let first = records(3, 100, 1);
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            log.append(&s, first.clone()).await.expect("append");
            log.append(&s, records(40, 1000, 2)).await.expect("append");
            drop(log);
            let file = segment_files(&path).remove(0);
            let offsets = block_offsets(&file);
            assert!(offsets.len() >= 4, "the big commit took several blocks");
            let mut bytes = std::fs::read(&file).expect("read segment");
            bytes[offsets[1] + 2000] ^= 0xFF;
            std::fs::write(&file, &bytes).expect("write segment");

            let verified = check(config(&path, 1 << 20, Durability::Fsync), CheckMode::Verify)
                .await
                .expect("a torn tail alone is clean");
            let torn = verified.torn_tail.expect("the torn tail is reported");
            assert_eq!(torn.offset, offsets[1] as u64);
            assert_eq!(verified.blocks, 1);

            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(log.tip(&s).next_position, 3, "the torn commit is gone");
            assert_eq!(read_all(&log, &s, 0).await, expected(&[first]));
            drop(log);
            assert_eq!(
                block_offsets(&file),
                vec![0],
                "the dropped commit's complete blocks were zeroed"
            );
        });
    }

    /// A valid block further from the end of the chain than one commit can reach cannot be
    /// part of a torn last commit, even with a single commit time.
    #[test]
    fn a_valid_block_beyond_the_reach_of_one_commit_is_corruption() {
        let scan = TailScan {
            found: vec![FoundBlock {
                offset: 4096 + commit_extent_max(16 << 10),
                padded: 4096,
                block_seq: 9,
                arrival_ms: 5,
            }],
            shards: BTreeMap::new(),
            records: 0,
            nonzero_end: 0,
        };
        let cursor = ChainCursor {
            expected_block_seq: 2,
            prev_crc: Some(1),
            arrival_ms: Some(5),
            blocks: 1,
        };
        let evidence = corruption_evidence(&scan, 4096, &cursor, commit_extent_max(16 << 10));
        assert!(
            matches!(evidence, Some(CorruptionEvidence::BeyondLastCommit { .. })),
            "{evidence:?}"
        );
    }

    #[test]
    fn a_later_segment_with_valid_blocks_after_a_broken_chain_is_an_error_not_silent_loss() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let s = shard("s", 0);
            let log = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect("log opens");
            for i in 0..12 {
                log.append(&s, records(2, 3000, i)).await.expect("append");
            }
            drop(log);
            let files = segment_files(&path);
            assert!(files.len() >= 3);
            let mut bytes = std::fs::read(&files[0]).expect("read");
            bytes[100] ^= 1;
            std::fs::write(&files[0], bytes).expect("write");
            let error = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect_err("refuses");
            assert!(
                matches!(error, OpenLogError::DataAfterLogEnd { .. }),
                "{error}"
            );
        });
    }
}
