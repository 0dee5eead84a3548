//! Opening the log: listing the segment files, scanning their blocks in order to rebuild every
//! shard's [`ShardIndex`], finding the end of the log, dropping a torn tail and removing empty
//! leftover segments. Whether the bytes after the end of the log are a torn tail or corruption
//! of acknowledged records is decided in [`super::damage`].
//!
//! Invariants:
//! - A segment is named after the sequence number of its first block, and a segment continues
//!   the log only if its name is the block sequence number the previous segment ended before.
//! - Recovery accepts only an unbroken chain: each block must carry the next block sequence
//!   number and the CRC of the block before it (the oldest block's predecessor may have been
//!   deleted by retention), pass its own CRC, and belong to this log.
//! - The first block that breaks the chain ends the chain. If the log continues in a later
//!   segment, the bytes after the break are a tail the writer abandoned when it rolled over.
//!   Otherwise they are the tail of the log: the torn commits in flight, which recovery zeroes
//!   so that no block of them can be mistaken for data later, or acknowledged data behind a hole,
//!   which fails opening with [`OpenLogError::Corrupt`] and changes nothing, until an operator
//!   truncates with [`RecoveryMode::Repair`].
//! - Beyond the end of the log a segment holds only zeros, or the blocks of the one commit
//!   that was in flight: recovery zeroes every torn tail it drops.
//! - Segments after the end of the log are removed if they hold no valid block; if they do,
//!   earlier data is corrupt and opening fails with [`OpenLogError::Corrupt`] (evidence
//!   `LaterSegment`), until [`RecoveryMode::Repair`] truncates at the hole and removes them.
//! - Every chunk of a shard starts at the position where the shard's previous chunk ended, and
//!   arrival times never go backwards; anything else fails with
//!   [`OpenLogError::PositionMismatch`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};

use super::block::{self, BLOCK_ALIGN, HeaderProblem};
use super::block_cache::BlockCache;
use super::damage::{self, TornTail, Truncation};
use super::segment_index::{self, Ledger};
use super::shard_index::{ChunkRef, ShardIndex};
use super::{
    LogConfig, LogStats, OpenLogError, Segment, ShardKey, ShardMap, State, open_segment_file,
    segment_path, sync_dir,
};

/// Recovery reads segments in windows of this many bytes.
const RECOVERY_WINDOW_BYTES: usize = 1 << 20;

/// Recovery zeroes a dropped tail with writes of at most this many bytes.
const ZERO_WRITE_BYTES: u64 = 1 << 20;

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

/// What recovery found besides the state of the log.
#[derive(Debug, Default)]
pub(super) struct RecoveryReport {
    /// Blocks accepted into the chain.
    pub blocks: u64,
    /// Sealed segments loaded from their index instead of being scanned.
    pub indexed_segments: u64,
    pub torn_tail: Option<TornTail>,
    pub truncated: Option<Truncation>,
    /// Empty segments after the end of the log (removed unless verifying).
    pub leftover_segments: Vec<u64>,
}

fn is_einval(error: &std::io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

/// Where the chain of blocks must continue.
pub(super) struct ChainCursor {
    pub expected_block_seq: u64,
    /// `None` before the first block of the oldest segment, whose predecessor may have been
    /// deleted by retention.
    pub prev_crc: Option<u32>,
    /// The commit time of the last accepted block.
    pub arrival_ms: Option<u64>,
    /// Blocks accepted so far.
    pub blocks: u64,
    /// Blocks accepted so far in the segment being scanned.
    pub blocks_in_segment: u64,
}

/// How a segment scan ended.
struct ScanEnd {
    offset: u64,
    /// Bytes at `offset` that look written but are not a valid next block.
    torn_bytes: u64,
}

/// Makes `window` hold at least `len` bytes at `offset` (fewer only at the end of the file).
pub(super) async fn fill_window(
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

pub(super) fn window_slice(window: &Option<(u64, ReadResult)>, offset: u64) -> &[u8] {
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

/// What a scan found in one segment besides the shards' indexes.
#[derive(Default)]
struct Found {
    /// The newest arrival time of each shard in the segment.
    arrivals: ShardMap<u64>,
    /// Its chain and chunks, kept as the active segment's ledger if it is the newest.
    ledger: Ledger,
}

async fn scan_segment(
    state: &mut State,
    file: &DmaFile,
    segment_id: u64,
    size: u64,
    cursor: &mut ChainCursor,
    names: &mut Interner,
    found: &mut Found,
) -> Result<ScanEnd, OpenLogError> {
    let mut window = None;
    cursor.blocks_in_segment = 0;
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
        if cursor.blocks_in_segment == 0 {
            found.ledger.first_prev_crc = Some(header.prev_crc);
        }
        for (chunk_offset, chunk) in chunks {
            let shard = ShardKey {
                stream_name: names.get(chunk.stream_name),
                stream_created_ms: chunk.stream_created_ms,
                shard_index: chunk.shard_index,
            };
            let chunk = ChunkRef {
                first_position: chunk.first_position,
                record_count: chunk.record_count,
                arrival_ms: chunk.arrival_ms,
                segment_id,
                block_offset: offset,
                chunk_offset: u32::try_from(chunk_offset).expect("a chunk offset fits u32"),
                chunk_len: u32::try_from(chunk.chunk_len).expect("a chunk fits u32 bytes"),
            };
            accept_chunk(state, shard.clone(), chunk, &mut found.arrivals)?;
            found.ledger.chunks.push((shard, chunk));
        }
        found.ledger.blocks += 1;
        cursor.blocks_in_segment += 1;
        cursor.expected_block_seq += 1;
        cursor.prev_crc = Some(header.crc);
        cursor.arrival_ms = Some(header.arrival_ms);
        cursor.blocks += 1;
        offset += padded;
    }
}

/// Adds one chunk found in the chain (by a scan or from an index) to its shard's index, with
/// the checks every chunk passes: it starts where its shard's previous chunk ended, and its
/// arrival time does not go back.
fn accept_chunk(
    state: &mut State,
    shard: ShardKey,
    chunk: ChunkRef,
    arrivals: &mut ShardMap<u64>,
) -> Result<(), OpenLogError> {
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
            segment_id: chunk.segment_id,
            offset: chunk.block_offset,
            stream_name: shard.stream_name.to_string(),
            shard_index: shard.shard_index,
            stored: chunk.first_position,
            expected: index.next_position,
        });
    }
    index.push(chunk);
    arrivals
        .entry(shard)
        .and_modify(|max| *max = (*max).max(chunk.arrival_ms))
        .or_insert(chunk.arrival_ms);
    state.last_arrival_ms = state.last_arrival_ms.max(chunk.arrival_ms);
    Ok(())
}

/// Loads a sealed segment from its index instead of scanning it, if it has a valid index that
/// continues the chain at `cursor` and ends where the next segment, `next_id`, begins. `false`
/// (nothing changed) when the segment must be scanned.
fn load_indexed(
    state: &mut State,
    segment_id: u64,
    next_id: u64,
    cursor: &mut ChainCursor,
    arrivals: &mut ShardMap<u64>,
    names: &mut Interner,
) -> Result<bool, OpenLogError> {
    let Some(index) = segment_index::load(&state.config.dir, state.config.log_id, segment_id)
    else {
        return Ok(false);
    };
    let links = cursor
        .prev_crc
        .is_none_or(|prev| prev == index.first_prev_crc)
        && segment_id.checked_add(index.blocks) == Some(next_id)
        && index
            .chunks
            .iter()
            .all(|c| (c.stream as usize) < index.stream_names.len());
    if !links {
        tracing::warn!(
            segment_id,
            "A sealed segment's index does not fit the log; scanning the segment instead."
        );
        return Ok(false);
    }
    let streams: Vec<Rc<str>> = index.stream_names.iter().map(|n| names.get(n)).collect();
    for chunk in &index.chunks {
        let shard = ShardKey {
            stream_name: streams[chunk.stream as usize].clone(),
            stream_created_ms: chunk.stream_created_ms,
            shard_index: chunk.shard_index,
        };
        let chunk = ChunkRef {
            first_position: chunk.first_position,
            record_count: chunk.record_count,
            arrival_ms: chunk.arrival_ms,
            segment_id,
            block_offset: chunk.block_offset,
            chunk_offset: chunk.chunk_offset,
            chunk_len: chunk.chunk_len,
        };
        accept_chunk(state, shard, chunk, arrivals)?;
    }
    cursor.expected_block_seq = next_id;
    cursor.prev_crc = Some(index.last_crc);
    cursor.arrival_ms = Some(index.last_arrival_ms);
    cursor.blocks += index.blocks;
    Ok(true)
}

/// The bytes of a segment file that recovery scans: its size rounded down to whole 4 KiB
/// pages. Every block is whole pages, so a trailing partial page (a file cut mid-page) holds
/// no block.
pub(super) async fn scanned_size(file: &DmaFile, segment_id: u64) -> Result<u64, OpenLogError> {
    let size = file
        .file_size()
        .await
        .map_err(|error| OpenLogError::ReadSegment {
            segment_id,
            offset: 0,
            source: error.into(),
        })?;
    Ok(size - size % BLOCK_ALIGN as u64)
}

/// Whether a segment found after the end of the log holds a valid first block. If it does,
/// earlier data must be corrupt and the operator decides; if not, it is a segment the writer
/// created but never completed a write to.
async fn leftover_holds_valid_block(
    config: &LogConfig,
    segment_id: u64,
) -> Result<bool, OpenLogError> {
    let file = open_later_segment(config, segment_id).await?;
    let size = scanned_size(&file, segment_id).await?;
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

/// Opens a segment found after the end of the log, read only.
pub(super) async fn open_later_segment(
    config: &LogConfig,
    segment_id: u64,
) -> Result<DmaFile, OpenLogError> {
    open_segment_file(&config.dir, segment_id, false)
        .await
        .map_err(|(path, source)| OpenLogError::OpenSegment { path, source })
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
        shards: ShardMap::default(),
        segments: BTreeMap::new(),
        active_segment_id: 1,
        write_offset: 0,
        next_block_seq: 1,
        prev_crc: 0,
        last_arrival_ms: 0,
        synced_below: 0,
        poisoned: None,
        health,
        cache: BlockCache::default(),
        ledger: Ledger::default(),
        stats: LogStats::default(),
        waiters: ShardMap::default(),
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
                shard_arrival_max: ShardMap::default(),
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
        blocks_in_segment: 0,
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
        let size = scanned_size(&file, segment_id).await?;
        let mut arrivals = ShardMap::default();
        // A sealed segment (one that a later segment continues) with a valid index is loaded
        // from it; the newest segment, and every segment when verifying or repairing, is
        // scanned.
        if mode == RecoveryMode::Open
            && let Some(&next_id) = ids.get(i + 1)
            && load_indexed(
                &mut state,
                segment_id,
                next_id,
                &mut cursor,
                &mut arrivals,
                &mut names,
            )?
        {
            report.indexed_segments += 1;
            state.segments.insert(
                segment_id,
                Segment {
                    file: Rc::new(file),
                    size,
                    shard_arrival_max: arrivals,
                },
            );
            continue;
        }
        let mut found = Found::default();
        let end = scan_segment(
            &mut state,
            &file,
            segment_id,
            size,
            &mut cursor,
            &mut names,
            &mut found,
        )
        .await?;
        let Found { arrivals, ledger } = found;
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
        state.ledger = ledger;
    }
    report.blocks = cursor.blocks;

    // A later segment with a valid block means the chain broke before acknowledged data. This
    // is checked before anything is changed on disk.
    let mut later = Vec::new();
    for &segment_id in &report.leftover_segments {
        if leftover_holds_valid_block(&state.config, segment_id).await? {
            later.push(segment_id);
        }
    }
    let tail = if later.is_empty() {
        damage::examine_tail(&state, &cursor, mode).await?
    } else {
        let (truncation, drop_to) =
            damage::examine_later_segments(&state, &cursor, &later, mode).await?;
        damage::TailVerdict {
            torn_tail: None,
            truncated: Some(truncation),
            drop_to,
        }
    };
    report.torn_tail = tail.torn_tail;
    report.truncated = tail.truncated;
    if mode != RecoveryMode::Verify {
        let segment_id = state.active_segment_id;
        let hole = state.write_offset;
        if tail.drop_to > hole {
            let file = state.active().file.clone();
            zero_range(&file, segment_id, hole, tail.drop_to).await?;
        }
        if let Some(torn) = report.torn_tail {
            tracing::warn!(
                segment_id,
                segment_offset = torn.offset,
                bytes_dropped = torn.bytes,
                "Dropped a torn tail at the end of the log; it was never acknowledged."
            );
        }
        if report.truncated.is_some() {
            // The truncated segment is the active one again; an index written when it was
            // sealed describes blocks that are gone, and must not be loaded when it is sealed
            // anew with the same number of blocks.
            segment_index::remove(&state.config.dir, state.active_segment_id);
        }
        for &leftover in &report.leftover_segments {
            segment_index::remove(&state.config.dir, leftover);
            let path = segment_path(&state.config.dir, leftover);
            std::fs::remove_file(&path)
                .map_err(|source| OpenLogError::RemoveSegment { path, source })?;
            if later.contains(&leftover) {
                tracing::warn!(
                    segment_id = leftover,
                    "Removed a segment after the corruption, as the operator asked."
                );
            } else {
                tracing::warn!(
                    segment_id = leftover,
                    "Removed a segment after the end of the log that holds no valid block."
                );
            }
        }
        if !report.leftover_segments.is_empty() || report.truncated.is_some() {
            // Removed for good before the log writes again: a later segment that came back
            // after a power cut would stand after the end of the log once more, and a stale
            // index could be loaded.
            sync_dir(&state.config.dir)
                .await
                .map_err(dir_error_owned(&state.config.dir))?;
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
    use super::super::error::CorruptionEvidence;
    use super::super::test_support::*;
    use super::super::{CheckMode, Durability, Log, check};
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
            // The sealed segments' indexes are written in the background.
            let indexes: Vec<_> = files[..files.len() - 1]
                .iter()
                .map(|f| f.with_extension("idx"))
                .collect();
            for _ in 0..500 {
                if indexes.iter().all(|i| i.exists()) {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(indexes.iter().all(|i| i.exists()), "indexes written");
            let mut bytes = std::fs::read(&files[0]).expect("read");
            bytes[100] ^= 1;
            std::fs::write(&files[0], bytes).expect("write");

            // With its index, the damaged sealed segment is not scanned at open, and nothing
            // is ever written to it again; reading the damaged block fails loudly.
            let log = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect("opens from the indexes");
            let read = log.read(&s, 0, 10, 1 << 20).await;
            assert!(read.is_err(), "the damaged block is not served");
            drop(log);
            // Verification scans every block and finds it, with what lies after the hole:
            // the rest of its segment and every later one.
            let checked = check(
                config(&path, 16 << 10, Durability::Write),
                CheckMode::Verify,
            )
            .await
            .expect_err("verification finds the damage");
            let OpenLogError::Corrupt {
                segment_id,
                offset,
                report,
                ..
            } = checked
            else {
                panic!("expected a corruption report, got {checked}");
            };
            let first = segment_ids(&path).expect("segments")[0];
            assert_eq!(
                (segment_id, offset),
                (first, 0),
                "the hole is the first block"
            );
            assert_eq!(
                report.evidence,
                CorruptionEvidence::LaterSegment {
                    segment_id: segment_ids(&path).expect("segments")[1]
                }
            );
            assert_eq!(report.shards.len(), 1);
            let damage = &report.shards[0];
            assert_eq!(
                (damage.missing.starting, damage.missing.ending),
                (0, 2),
                "the damaged block held the first append"
            );
            assert_eq!(
                (damage.after_hole.starting, damage.after_hole.ending),
                (2, 24),
                "every later append lies after the hole"
            );
            assert_eq!(report.records_after_hole, 22);

            // Without the indexes the scan finds the hole and refuses to open.
            for index in &indexes {
                std::fs::remove_file(index).expect("remove the index");
            }
            let error = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect_err("refuses");
            assert!(matches!(error, OpenLogError::Corrupt { .. }), "{error}");
            assert_eq!(
                segment_files(&path).len(),
                files.len(),
                "nothing was removed"
            );

            // The operator repairs: the log is cut at the hole, the later segments go, and
            // the log opens and takes writes again from the first lost position.
            let repaired = check(
                config(&path, 16 << 10, Durability::Write),
                CheckMode::Repair,
            )
            .await
            .expect("repair truncates");
            let truncated = repaired.truncated.expect("a truncation is reported");
            assert_eq!((truncated.segment_id, truncated.offset), (first, 0));
            assert_eq!(truncated.corruption, *report);
            assert_eq!(
                segment_files(&path).len(),
                1,
                "the later segments are removed"
            );
            let log = Log::open(config(&path, 16 << 10, Durability::Write))
                .await
                .expect("opens after the repair");
            assert_eq!(log.tip(&s).next_position, 0);
            let appended = log.append(&s, records(1, 10, 99)).await.expect("append");
            assert_eq!(appended.first_position, 0);
            assert_eq!(read_all(&log, &s, 0).await, expected(&[records(1, 10, 99)]));
        });
    }
}
