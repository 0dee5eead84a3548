//! What lies after the end of the chain in the newest segment, and whether it may be dropped.
//!
//! When the chain of blocks ends and the log does not continue in a later segment, only the
//! commits in flight can have been torn there: at most [`COMMITS_IN_FLIGHT_MAX`] group commits
//! are written but not yet covered by a completed `fdatasync`. So the bytes after the break may
//! hold nothing but those commits' blocks: numbered after the break, commit times never going
//! backwards, within [`commit_extent_max`] bytes of it per commit, and none planned after a
//! sync that covered the break (each block header's `synced_below` says what was durable when
//! it was planned). Such a tail is a [`TornTail`]: never acknowledged, and dropped on open. Any
//! other valid block after the break is acknowledged data behind a hole: opening fails with
//! [`OpenLogError::Corrupt`], whose [`Corruption`] report names the hole, what lies after it and
//! which shards lost which positions, until an operator truncates with
//! [`RecoveryMode::Repair`] (a [`Truncation`]).
//!
//! This module only reads and decides; [`super::recovery`] zeroes what is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::DmaFile;

use super::block::{self, BLOCK_ALIGN};
use super::error::{Corruption, CorruptionEvidence, PositionRange, ShardDamage};
use super::recovery::{ChainCursor, RecoveryMode, fill_window, window_slice};
use super::{
    BLOCK_BYTES_TARGET, COMMITS_IN_FLIGHT_MAX, OpenLogError, ShardKey, State, segment_path,
};

/// The most bytes of records one append can carry: a PutRecords request (5 MiB of data and
/// partition keys) plus the per-record overhead the committer's estimate adds.
const APPEND_BYTES_MAX: usize = sluice_core::limits::PUT_RECORDS_BYTES_MAX + (1 << 20);

/// The torn commits in flight at the end of the log: never acknowledged, dropped on open.
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

/// A valid block of this log found after the end of the chain.
struct FoundBlock {
    offset: u64,
    padded: u64,
    block_seq: u64,
    arrival_ms: u64,
    /// From the header; 0 (no claim) in blocks older than format version 4.
    synced_below: u64,
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
                    synced_below: header.synced_below,
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

/// Why the valid blocks after the end of the chain at `hole` cannot all be the torn tail of
/// the commits that were in flight, or `None` if they can. Up to [`COMMITS_IN_FLIGHT_MAX`]
/// commits may be written but not yet synced; their blocks are numbered from the first block
/// after the last accepted one, one after another, each at least 4 KiB long; their commit
/// times never go backwards; they lie within `extent_max` bytes of the hole per commit (the
/// first of them began at or before it); and none of them was planned after a sync that
/// covered the block expected at the hole (`synced_below`). Blocks from before format version
/// 4 claim nothing about syncs; they were written one commit at a time, so all of them must
/// carry one commit time.
fn corruption_evidence(
    scan: &TailScan,
    hole: u64,
    cursor: &ChainCursor,
    extent_max: u64,
) -> Option<CorruptionEvidence> {
    let first = scan.found.first()?;
    let reach = extent_max.saturating_mul(COMMITS_IN_FLIGHT_MAX as u64);
    let mut last_seq = cursor.expected_block_seq;
    let mut last_arrival = cursor.arrival_ms;
    let mut commits = 0u64;
    for found in &scan.found {
        assert!(found.offset >= hole, "the tail scan starts at the hole");
        if found.offset + found.padded > hole.saturating_add(reach) {
            return Some(CorruptionEvidence::BeyondLastCommit {
                block_offset: found.offset,
            });
        }
        if found.synced_below > cursor.expected_block_seq {
            return Some(CorruptionEvidence::WrittenAfterSync {
                block_offset: found.offset,
                synced_below: found.synced_below,
            });
        }
        let room = (found.offset - hole) / BLOCK_ALIGN as u64;
        let fits = found.block_seq > last_seq
            && found.block_seq - cursor.expected_block_seq <= room
            && last_arrival.is_none_or(|last| found.arrival_ms >= last);
        if !fits {
            return Some(CorruptionEvidence::OutOfSequence {
                block_offset: found.offset,
                block_seq: found.block_seq,
            });
        }
        if found.synced_below == 0 && found.arrival_ms != first.arrival_ms {
            return Some(CorruptionEvidence::SeveralCommits {
                arrival_ms_first: first.arrival_ms,
                arrival_ms_later: found.arrival_ms,
            });
        }
        if commits == 0 || last_arrival.is_some_and(|last| found.arrival_ms > last) {
            commits += 1;
            if commits > COMMITS_IN_FLIGHT_MAX as u64 {
                return Some(CorruptionEvidence::TooManyCommits { commits });
            }
        }
        last_seq = found.block_seq;
        last_arrival = Some(found.arrival_ms);
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

/// What recovery does with the bytes after the end of the chain in the active segment.
pub(super) struct TailVerdict {
    pub torn_tail: Option<TornTail>,
    pub truncated: Option<Truncation>,
    /// Recovery zeroes the segment from the end of the chain up to here (unless verifying).
    pub drop_to: u64,
}

/// Scans the active segment after the end of the chain (`state.write_offset`) and decides
/// whether what lies there is the torn commits in flight or acknowledged data behind a hole. A
/// corruption is [`OpenLogError::Corrupt`] unless `mode` is [`RecoveryMode::Repair`], which
/// truncates the log there instead. Changes nothing on disk.
pub(super) async fn examine_tail(
    state: &State,
    cursor: &ChainCursor,
    mode: RecoveryMode,
) -> Result<TailVerdict, OpenLogError> {
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
    let mut verdict = TailVerdict {
        torn_tail: None,
        truncated: None,
        drop_to: scan.nonzero_end,
    };
    match corruption_evidence(&scan, hole, cursor, extent_max) {
        None => {
            if scan.nonzero_end > hole {
                verdict.torn_tail = Some(TornTail {
                    segment_id,
                    offset: hole,
                    bytes: scan.nonzero_end - hole,
                });
            }
        }
        Some(evidence) => {
            let corruption =
                corruption_report(state, &scan, hole, cursor.expected_block_seq, evidence);
            verdict.truncated = Some(refuse_or_truncate(state, corruption, mode)?);
        }
    }
    Ok(verdict)
}

/// The chain ended inside segment `state.active_segment_id`, which is not the newest: the
/// segments in `later` (numbered after it) hold valid blocks of this log. They were written
/// after the hole, and a segment is only started once every commit of the one before it is
/// synced and acknowledged, so the hole is damage to acknowledged data, not a torn write.
/// Reports everything after the hole (the rest of its segment and every later segment) as
/// [`OpenLogError::Corrupt`], or with [`RecoveryMode::Repair`] answers the [`Truncation`] that
/// drops it all; the caller zeroes the rest of the segment and removes the later ones. Changes
/// nothing on disk.
pub(super) async fn examine_later_segments(
    state: &State,
    cursor: &ChainCursor,
    later: &[u64],
    mode: RecoveryMode,
) -> Result<(Truncation, u64), OpenLogError> {
    let segment_id = state.active_segment_id;
    let hole = state.write_offset;
    let log_id = state.config.log_id;
    let (file, size) = {
        let active = state.active();
        (active.file.clone(), active.size)
    };
    let mut scan = scan_tail(&file, segment_id, log_id, hole, size).await?;
    let drop_to = scan.nonzero_end;
    // Bytes from the hole to the first valid block after it, and from each segment's first
    // valid block to the end of its last one.
    let mut hole_bytes = scan.found.first().map(|first| first.offset - hole);
    let mut bytes_after_hole = span_of(&scan.found);
    for &later_id in later {
        let file = super::recovery::open_later_segment(&state.config, later_id).await?;
        let later_size = super::recovery::scanned_size(&file, later_id).await?;
        let later_scan = scan_tail(&file, later_id, log_id, 0, later_size).await;
        let _ = file.close().await;
        let later_scan = later_scan?;
        hole_bytes.get_or_insert(size - hole);
        bytes_after_hole += span_of(&later_scan.found);
        scan.records += later_scan.records;
        for (shard, range) in later_scan.shards {
            scan.shards
                .entry(shard)
                .and_modify(|r| {
                    r.starting = r.starting.min(range.starting);
                    r.ending = r.ending.max(range.ending);
                })
                .or_insert(range);
        }
        scan.found.extend(later_scan.found);
    }
    let evidence = CorruptionEvidence::LaterSegment {
        segment_id: *later
            .first()
            .expect("damage behind later segments has at least one of them"),
    };
    let mut corruption = corruption_report(state, &scan, hole, cursor.expected_block_seq, evidence);
    corruption.hole_bytes = hole_bytes.expect("a later segment or this one has a valid block");
    corruption.bytes_after_hole = bytes_after_hole;
    Ok((refuse_or_truncate(state, corruption, mode)?, drop_to))
}

/// A corruption at the end of the chain (`state.write_offset` of the active segment):
/// [`OpenLogError::Corrupt`], or with [`RecoveryMode::Repair`] the [`Truncation`] that drops
/// everything it lists.
fn refuse_or_truncate(
    state: &State,
    corruption: Corruption,
    mode: RecoveryMode,
) -> Result<Truncation, OpenLogError> {
    let segment_id = state.active_segment_id;
    let hole = state.write_offset;
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
        evidence = ?corruption.evidence,
        "Truncated the log at a corruption, as the operator asked; every record after it (and every later segment) is dropped."
    );
    Ok(Truncation {
        segment_id,
        path,
        offset: hole,
        corruption,
    })
}

/// Bytes from the first of `found` (blocks of one segment, in order) to the end of the last.
fn span_of(found: &[FoundBlock]) -> u64 {
    match (found.first(), found.last()) {
        (Some(first), Some(last)) => last.offset + last.padded - first.offset,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_support::*;
    use super::super::{AppendRecord, CheckMode, Durability, Log, check};
    use super::*;

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
        // Block 3 was planned after the sync that acknowledged block 2, and says so.
        assert!(
            matches!(
                report.evidence,
                CorruptionEvidence::WrittenAfterSync { block_offset, synced_below }
                    if block_offset == offsets[2] as u64 && synced_below == 3
            ),
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

    fn found(offset: u64, block_seq: u64, arrival_ms: u64, synced_below: u64) -> FoundBlock {
        FoundBlock {
            offset,
            padded: 4096,
            block_seq,
            arrival_ms,
            synced_below,
        }
    }

    fn tail(found: Vec<FoundBlock>) -> TailScan {
        TailScan {
            found,
            shards: BTreeMap::new(),
            records: 0,
            nonzero_end: 0,
        }
    }

    /// The chain ends at 4096 where block 2 was expected, after block 1 of commit time 5.
    fn cursor_at_block_2() -> ChainCursor {
        ChainCursor {
            expected_block_seq: 2,
            prev_crc: Some(1),
            arrival_ms: Some(5),
            blocks: 1,
            blocks_in_segment: 1,
        }
    }

    /// Two commits in flight, neither synced: the first torn, the second landed whole. Both
    /// were planned while block 1 was the last durable one, so this is a torn tail.
    #[test]
    fn the_landed_blocks_of_every_commit_in_flight_are_a_torn_tail() {
        let scan = tail(vec![found(8192, 3, 6, 2), found(12288, 4, 7, 2)]);
        let extent = commit_extent_max(16 << 10);
        assert_eq!(
            corruption_evidence(&scan, 4096, &cursor_at_block_2(), extent),
            None
        );
    }

    /// A block planned after a sync had covered the block expected at the hole proves that the
    /// hole was durable, acknowledged data.
    #[test]
    fn a_block_planned_after_the_hole_was_synced_is_corruption() {
        let scan = tail(vec![found(8192, 3, 6, 3)]);
        let extent = commit_extent_max(16 << 10);
        assert_eq!(
            corruption_evidence(&scan, 4096, &cursor_at_block_2(), extent),
            Some(CorruptionEvidence::WrittenAfterSync {
                block_offset: 8192,
                synced_below: 3
            })
        );
    }

    /// More commit times after the hole than commits can be in flight: at least one of them
    /// was acknowledged.
    #[test]
    fn more_commits_after_the_hole_than_can_be_in_flight_is_corruption() {
        let times = (0..=COMMITS_IN_FLIGHT_MAX as u64).map(|i| 6 + i);
        let blocks = times
            .enumerate()
            .map(|(i, t)| found(8192 + 4096 * i as u64, 3 + i as u64, t, 2))
            .collect();
        let extent = commit_extent_max(16 << 10);
        assert_eq!(
            corruption_evidence(&tail(blocks), 4096, &cursor_at_block_2(), extent),
            Some(CorruptionEvidence::TooManyCommits {
                commits: COMMITS_IN_FLIGHT_MAX as u64 + 1
            })
        );
    }

    /// Blocks from before format version 4 claim nothing about syncs, and were written one
    /// commit at a time: two commit times after the hole are corruption, as they always were.
    #[test]
    fn blocks_of_older_formats_after_the_hole_must_share_one_commit_time() {
        let scan = tail(vec![found(8192, 3, 6, 0), found(12288, 4, 7, 0)]);
        let extent = commit_extent_max(16 << 10);
        assert_eq!(
            corruption_evidence(&scan, 4096, &cursor_at_block_2(), extent),
            Some(CorruptionEvidence::SeveralCommits {
                arrival_ms_first: 6,
                arrival_ms_later: 7
            })
        );
    }

    /// A valid block further from the end of the chain than the commits in flight can reach
    /// cannot be part of a torn tail, even with a single commit time.
    #[test]
    fn a_valid_block_beyond_the_reach_of_the_commits_in_flight_is_corruption() {
        let scan = TailScan {
            found: vec![FoundBlock {
                offset: 4096 + commit_extent_max(16 << 10) * COMMITS_IN_FLIGHT_MAX as u64,
                padded: 4096,
                block_seq: 9,
                arrival_ms: 5,
                synced_below: 1,
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
            blocks_in_segment: 1,
        };
        let evidence = corruption_evidence(&scan, 4096, &cursor, commit_extent_max(16 << 10));
        assert!(
            matches!(evidence, Some(CorruptionEvidence::BeyondLastCommit { .. })),
            "{evidence:?}"
        );
    }
}
