//! `sluice verify`: checks every log of a data directory offline with the recovery scan
//! (`sluice_io::log::check`) and prints, per log, its segments, blocks, records per shard, a
//! torn tail and any corruption. With `--repair` it truncates a corrupt log at the damage after
//! listing what that drops. Exit code 0 when every log is clean, 1 otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sluice_core::shard_id::format_shard_id;
use sluice_io::engine::{LogOfDataDir, StartError, check_data_dir};
use sluice_io::log::{CheckMode, Corruption, CorruptionEvidence, LogCheck, OpenLogError};

use crate::config::VerifyArgs;

pub const DATA_DIR_DEFAULT: &str = "./sluice-data";

/// Runs the command and returns the process exit code.
pub fn run(args: &VerifyArgs) -> i32 {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DATA_DIR_DEFAULT));
    if !data_dir.join("log").is_dir() {
        eprintln!(
            "error: {} holds no logs (no log/ directory); is it a Sluice data directory?",
            data_dir.display()
        );
        return 1;
    }
    let mode = if args.repair {
        CheckMode::Repair
    } else {
        CheckMode::Verify
    };
    let logs = match check_data_dir(&data_dir, mode) {
        Ok(logs) => logs,
        Err(error) => {
            eprintln!("error: {error}");
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    for log in &logs {
        if !print_log(&mut out, log, &data_dir) {
            bad += 1;
        }
    }
    let verdict = if bad == 0 { "clean" } else { "NOT clean" };
    let _ = writeln!(
        out,
        "verify: {} log(s) in {}, {bad} with problems: {verdict}",
        logs.len(),
        data_dir.display()
    );
    let _ = out.flush();
    i32::from(bad > 0)
}

/// Prints one log's findings; returns whether the log is clean.
fn print_log(out: &mut impl std::io::Write, log: &LogOfDataDir, data_dir: &Path) -> bool {
    let dir = log.dir.display();
    match &log.check {
        Ok(check) => {
            print_check(out, log.log_id, &dir.to_string(), check);
            true
        }
        Err(OpenLogError::Corrupt {
            segment_id,
            path,
            offset,
            report,
        }) => {
            let _ = writeln!(
                out,
                "log {} ({dir}): CORRUPT: segment {segment_id} ({}) at offset {offset}",
                log.log_id,
                path.display()
            );
            print_corruption(out, report, "after the hole");
            let later = match report.evidence {
                CorruptionEvidence::LaterSegment { .. } => ", removing every later segment,",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  nothing was changed; `sluice verify --data-dir {} --repair` truncates the log \
                 at offset {offset}{later} and drops everything listed above",
                data_dir.display()
            );
            false
        }
        Err(error) => {
            let _ = writeln!(out, "log {} ({dir}): ERROR: {error}", log.log_id);
            false
        }
    }
}

fn print_check(out: &mut impl std::io::Write, log_id: u32, dir: &str, check: &LogCheck) {
    let records: u64 = check
        .shards
        .iter()
        .map(|s| s.stored.ending - s.stored.starting)
        .sum();
    let _ = writeln!(
        out,
        "log {log_id} ({dir}): {} segment(s), {} block(s), {} shard(s), {records} record(s)",
        check.segments,
        check.blocks,
        check.shards.len()
    );
    for shard in &check.shards {
        let _ = writeln!(
            out,
            "  {}/{} (created {}): {} record(s), positions {}..{}",
            shard.stream_name,
            format_shard_id(shard.shard_index),
            shard.stream_created_ms,
            shard.stored.ending - shard.stored.starting,
            shard.stored.starting,
            shard.stored.ending
        );
    }
    if let Some(torn) = check.torn_tail {
        let _ = writeln!(
            out,
            "  torn tail: segment {} at offset {}, {} byte(s); never acknowledged, dropped on the \
             next start",
            torn.segment_id, torn.offset, torn.bytes
        );
    }
    // After a repair of damage in an older segment, the segments after it went with it.
    let cut_later = check.truncated.as_ref().is_some_and(|t| {
        matches!(
            t.corruption.evidence,
            CorruptionEvidence::LaterSegment { .. }
        )
    });
    for segment_id in &check.leftover_segments {
        let _ = if cut_later {
            writeln!(
                out,
                "  segment {segment_id} after the corruption: removed by the repair"
            )
        } else {
            writeln!(
                out,
                "  empty segment {segment_id} after the end of the log; removed on the next start"
            )
        };
    }
    if let Some(truncated) = &check.truncated {
        let _ = writeln!(
            out,
            "  REPAIRED: truncated segment {} ({}) at offset {}; dropped:",
            truncated.segment_id,
            truncated.path.display(),
            truncated.offset
        );
        print_corruption(out, &truncated.corruption, "dropped after the hole");
    }
}

fn print_corruption(out: &mut impl std::io::Write, report: &Corruption, after: &str) {
    let _ = writeln!(
        out,
        "  hole: {} byte(s) where block {} was expected; next valid block {}; evidence: {:?}",
        report.hole_bytes, report.expected_block_seq, report.next_valid_block_seq, report.evidence
    );
    let _ = writeln!(
        out,
        "  {after}: {} block(s), {} record(s), {} byte(s)",
        report.blocks_after_hole, report.records_after_hole, report.bytes_after_hole
    );
    for shard in &report.shards {
        let _ = writeln!(
            out,
            "  {}/{} (created {}): positions {}..{} lost in the hole, {}..{} {after}",
            shard.stream_name,
            format_shard_id(shard.shard_index),
            shard.stream_created_ms,
            shard.missing.starting,
            shard.missing.ending,
            shard.after_hole.starting,
            shard.after_hole.ending
        );
    }
}

/// What to do after a failed start, when the failure was a corrupt log.
pub fn hint(error: &anyhow::Error, data_dir: Option<&Path>) -> String {
    match error.downcast_ref::<StartError>() {
        Some(StartError::LogCorrupt { .. }) => {
            let dir = data_dir.map_or("DIR".to_owned(), |d| d.display().to_string());
            format!(
                "; run `sluice verify --data-dir {dir}` for the full report, then either restore \
                 the data directory from a copy or run `sluice verify --data-dir {dir} --repair` \
                 to truncate the log there, dropping the records it lists"
            )
        }
        _ => String::new(),
    }
}
