//! Where an application's window snapshots ([`crate::snapshot`]) are kept, and the order of
//! writes that ties a snapshot to the input positions committed with it.
//!
//! One file per generation, `<data-dir>/analytics/snapshots/<application>+<input id>+<N>.snapshot`
//! (`+` is not allowed in either name, so names cannot collide), and one marker: a
//! [`CheckpointLog`] entry under the consumer `<input consumer>/snapshot` on the input's first
//! shard, holding the generation to restore.
//!
//! A checkpoint with snapshotted pumps runs, each step durable before the next:
//! 1. write generation N (temporary file, fsync, rename, fsync of the directory);
//! 2. commit the marker N;
//! 3. remove generation N − 1;
//! 4. commit the input positions, none past generation N's cut (the runner's part).
//!
//! A restart restores the generation the marker names, and only it. Invariant: **the committed
//! positions are at or below that snapshot's cut**, so every record the runner reads again
//! below the cut is one the snapshot holds, and every record at or past it one it does not.
//! Why it holds at every crash point: before step 2 the marker still names N − 1, whose file is
//! kept until step 3, and the positions are still those committed after N − 1; between steps 2
//! and 4 the marker names N and the positions are N − 1's, at or below N − 1's cut, which is at
//! or below N's (a cut never goes back). A failed step 1 or 2 keeps the old marker and cut, and
//! the positions stay at or below that cut ([`SnapshotStore::commit`]'s answer bounds them).
//! The marker is in the positions' stream incarnation: a recreated input stream has neither.
//!
//! Cost: a snapshot's size is its open windows' (at most `GROUPS_MAX` groups a pump). While
//! the last one written was at most [`SNAPSHOT_EVERY_ROUND_BYTES_MAX`], one is written with
//! every checkpoint; larger ones at most every [`SNAPSHOT_INTERVAL_MS`] (and when the
//! application stops), the positions meanwhile staying at the last one's cut, so a restart
//! reads more again instead.

use std::path::PathBuf;

use sluice_core::storage::{CheckpointError, CheckpointKey, CheckpointLog};

use crate::metrics::Metric;
use crate::pipeline::{Pipeline, RestorePumpError};
use crate::snapshot::{DecodeSnapshotError, ShardCut, SnapshotBody, decode, encode};

/// A snapshot up to this size is written with every checkpoint.
pub const SNAPSHOT_EVERY_ROUND_BYTES_MAX: usize = 1 << 20;
/// How often a larger snapshot is written.
pub const SNAPSHOT_INTERVAL_MS: i64 = 10_000;
/// The name of the thread that writes and removes snapshot files.
const FILE_THREAD: &str = "analytics-snapshot";

/// Why the snapshot the marker names could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreSnapshotError {
    #[error("the snapshot marker cannot be read: {source}")]
    Marker { source: CheckpointError },
    #[error("the marker names generation {generation}, but {path} cannot be read: {source}")]
    Read {
        generation: u64,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Decode {
        path: PathBuf,
        source: DecodeSnapshotError,
    },
}

/// What a restore gave the runner.
#[derive(Debug)]
pub struct Restored {
    pub generation: u64,
    pub cut: Vec<ShardCut>,
    pub last_rowtime_ms: i64,
    /// Pumps of the snapshot that were not restored (the program changed); they start empty.
    pub not_restored: Vec<RestorePumpError>,
}

/// The last snapshot written, for the throttle.
#[derive(Clone, Copy, Debug)]
struct LastWrite {
    at_ms: i64,
    bytes: usize,
}

/// The snapshots of one application input (see the module doc).
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    file_prefix: String,
    marker: CheckpointKey,
    application_create_ms: u64,
    /// The generation the marker names.
    durable_generation: Option<u64>,
    /// The cut of this run's durable snapshot (restored or written), which positions may not
    /// pass; empty before the first one.
    durable_cut: Vec<ShardCut>,
    last_write: Option<LastWrite>,
    /// Failed writes in a row, for rate-limiting their warning.
    failures: u64,
}

impl SnapshotStore {
    /// The store of input `input_id` of application `application` (created at
    /// `application_create_ms`), whose marker is `marker`.
    pub fn new(
        dir: PathBuf,
        application: &str,
        input_id: &str,
        application_create_ms: u64,
        marker: CheckpointKey,
    ) -> Self {
        SnapshotStore {
            dir,
            file_prefix: format!("{application}+{input_id}+"),
            marker,
            application_create_ms,
            durable_generation: None,
            durable_cut: Vec::new(),
            last_write: None,
            failures: 0,
        }
    }

    fn path(&self, generation: u64) -> PathBuf {
        self.dir
            .join(format!("{}{generation}.snapshot", self.file_prefix))
    }

    /// Warns of a failed write: the first of a run of failures and every 100th after it (the
    /// runner tries again with every checkpoint).
    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        Metric::SnapshotWriteFailuresTotal.add(1);
        if self.failures.is_multiple_of(100) {
            tracing::warn!(%error, failures = self.failures + 1, "{what} failed; the input positions stay at the previous window snapshot's cut.");
        }
        self.failures += 1;
    }

    /// Reads the marker and, when `restore`, restores the snapshot it names into `pipeline`
    /// (which has seen no record). `Ok(None)`: there is none to restore, or it belongs to an
    /// earlier application of the same name.
    pub async fn open<R: CheckpointLog>(
        &mut self,
        storage: &R,
        pipeline: &mut Pipeline,
        restore: bool,
    ) -> Result<Option<Restored>, RestoreSnapshotError> {
        let marker = storage
            .load_checkpoint(&self.marker)
            .await
            .map_err(|source| RestoreSnapshotError::Marker { source })?;
        self.durable_generation = marker;
        let Some(generation) = marker.filter(|_| restore) else {
            return Ok(None);
        };
        let path = self.path(generation);
        let read = path.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(read))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| RestoreSnapshotError::Read {
                generation,
                path: path.clone(),
                source,
            })?;
        let body = decode(&bytes, generation)
            .map_err(|source| RestoreSnapshotError::Decode { path, source })?;
        if body.application_create_ms != self.application_create_ms {
            return Ok(None);
        }
        let not_restored = body
            .pumps
            .into_iter()
            .filter_map(|pump| pipeline.restore_pump(pump).err())
            .collect();
        self.durable_cut.clone_from(&body.cut);
        Ok(Some(Restored {
            generation,
            cut: body.cut,
            last_rowtime_ms: body.last_rowtime_ms,
            not_restored,
        }))
    }

    /// Takes a snapshot of `pipeline` at `cut` (with the runner's `last_rowtime_ms`) and makes
    /// it the one to restore, unless the throttle (see the module doc) defers it; `force` writes
    /// regardless. Answers the cut of the snapshot a restart would restore now: the input
    /// positions committed next must be at or below it (a shard it lacks gets none committed).
    pub async fn commit<R: CheckpointLog>(
        &mut self,
        storage: &R,
        pipeline: &Pipeline,
        cut: Vec<ShardCut>,
        last_rowtime_ms: i64,
        now_ms: i64,
        force: bool,
    ) -> &[ShardCut] {
        let due = force
            || self.last_write.is_none_or(|w| {
                w.bytes <= SNAPSHOT_EVERY_ROUND_BYTES_MAX
                    || now_ms - w.at_ms >= SNAPSHOT_INTERVAL_MS
            });
        if due {
            self.write(storage, pipeline, cut, last_rowtime_ms, now_ms)
                .await;
        }
        &self.durable_cut
    }

    async fn write<R: CheckpointLog>(
        &mut self,
        storage: &R,
        pipeline: &Pipeline,
        cut: Vec<ShardCut>,
        last_rowtime_ms: i64,
        now_ms: i64,
    ) {
        let mut cut = cut;
        for old in &self.durable_cut {
            match cut.iter().find(|c| c.shard_index == old.shard_index) {
                // The runner's cut starts at the restored one and only grows.
                Some(new) => assert!(
                    new.position >= old.position,
                    "a cut never goes back: shard {} from {} to {}",
                    old.shard_index,
                    old.position,
                    new.position
                ),
                // A shard no longer read: the state still holds its records below the cut.
                None => cut.push(*old),
            }
        }
        cut.sort_by_key(|c| c.shard_index);
        let generation = self.durable_generation.map_or(1, |g| g + 1);
        let body = SnapshotBody {
            application_create_ms: self.application_create_ms,
            cut,
            last_rowtime_ms,
            pumps: pipeline.snapshot_pumps(),
        };
        let bytes = encode(generation, &body);
        let len = bytes.len();
        self.last_write = Some(LastWrite {
            at_ms: now_ms,
            bytes: len,
        });
        let path = self.path(generation);
        if let Err(error) = sluice_durable::replace(FILE_THREAD, path, bytes).await {
            self.failed("Writing a window snapshot", &error);
            return;
        }
        if let Err(error) = storage.commit_checkpoint(&self.marker, generation).await {
            self.failed("Committing the window snapshot marker", &error);
            return;
        }
        self.failures = 0;
        Metric::SnapshotsWrittenTotal.add(1);
        Metric::SnapshotBytesWrittenTotal.add(len as u64);
        let previous = self.durable_generation.replace(generation);
        self.durable_cut = body.cut;
        if let Some(previous) = previous
            && let Err(error) = sluice_durable::remove(FILE_THREAD, self.path(previous)).await
        {
            tracing::warn!(%error, "Removing an old window snapshot failed.");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use sluice_core::storage::ShardAddress;

    use super::*;

    /// Checkpoints in memory; `fail_commits` makes commits fail (a crash before them).
    #[derive(Clone, Default)]
    struct Checkpoints {
        stored: Arc<Mutex<HashMap<String, u64>>>,
        fail_commits: Arc<Mutex<bool>>,
    }

    impl CheckpointLog for Checkpoints {
        async fn load_checkpoint(
            &self,
            key: &CheckpointKey,
        ) -> Result<Option<u64>, CheckpointError> {
            Ok(self
                .stored
                .lock()
                .expect("unpoisoned")
                .get(&key.consumer)
                .copied())
        }

        async fn commit_checkpoint(
            &self,
            key: &CheckpointKey,
            position: u64,
        ) -> Result<(), CheckpointError> {
            if *self.fail_commits.lock().expect("unpoisoned") {
                return Err(CheckpointError::Unavailable);
            }
            self.stored
                .lock()
                .expect("unpoisoned")
                .insert(key.consumer.clone(), position);
            Ok(())
        }
    }

    const SQL: &str = r#"
        CREATE OR REPLACE STREAM "OUT" ("sym" VARCHAR(8), "n" BIGINT);
        CREATE OR REPLACE PUMP "S" AS INSERT INTO "OUT"
          SELECT STREAM "sym", COUNT(*) FROM "SRC_001"
          WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '10' SECOND);"#;

    fn pipeline() -> Pipeline {
        let schema = r#"{
          "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
          "RecordColumns": [{"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"}]
        }"#;
        let program = crate::program::parse_program(SQL).expect("parses");
        let wire: crate::schema_wire::WireSourceSchema =
            serde_json::from_str(schema).expect("a schema");
        let input = crate::pipeline::PipelineInput {
            stream: "SRC_001".into(),
            schema: wire.to_domain().expect("a schema"),
        };
        Pipeline::compile(&program, &[input]).expect("compiles")
    }

    fn add(pipeline: &mut Pipeline, sym: &str, t: i64) {
        let data = format!(r#"{{"sym":"{sym}"}}"#);
        let mut out = crate::pipeline::Emissions::default();
        pipeline.ingest(0, &[(data.as_bytes(), t)], t, &mut out);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sluice-analytics-snapshots-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn store(dir: &std::path::Path) -> SnapshotStore {
        let marker = CheckpointKey {
            consumer: "kinesisanalytics/app/1.1/snapshot".into(),
            shard: ShardAddress::new("src".to_owned(), 0),
        };
        SnapshotStore::new(dir.to_owned(), "app", "1.1", 42, marker)
    }

    fn cut(position: u64) -> Vec<ShardCut> {
        vec![ShardCut {
            shard_index: 0,
            position,
        }]
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    /// Guards against a snapshot that is not the one the positions belong to: a crash after a
    /// snapshot file is written but before its marker commits must restore the previous
    /// snapshot (kept on disk), and its cut must bound the positions.
    #[test]
    fn a_crash_before_the_marker_commits_restores_the_previous_snapshot() {
        let dir = temp_dir("crash");
        let checkpoints = Checkpoints::default();
        let mut first = pipeline();
        let mut snapshots = store(&dir);
        block_on(async {
            assert!(
                snapshots
                    .open(&checkpoints, &mut first, true)
                    .await
                    .expect("opens")
                    .is_none()
            );
            add(&mut first, "A", 1_000);
            let durable = snapshots
                .commit(&checkpoints, &first, cut(1), 1_000, 0, false)
                .await;
            assert_eq!(durable, cut(1));
            add(&mut first, "A", 2_000);
            add(&mut first, "B", 3_000);
            *checkpoints.fail_commits.lock().expect("unpoisoned") = true;
            let durable = snapshots
                .commit(&checkpoints, &first, cut(3), 3_000, 1, false)
                .await;
            assert_eq!(
                durable,
                cut(1),
                "positions may not pass the snapshot a restart restores"
            );
        });
        assert!(
            dir.join("app+1.1+1.snapshot").exists(),
            "kept until marker 2 commits"
        );
        assert!(dir.join("app+1.1+2.snapshot").exists());

        let mut second = pipeline();
        let restored = block_on(store(&dir).open(&checkpoints, &mut second, true))
            .expect("restores")
            .expect("a snapshot");
        assert_eq!(restored.generation, 1);
        assert_eq!(restored.cut, cut(1));
        assert!(restored.not_restored.is_empty());
        // Generation 1 holds A's window with one row, no B.
        let pumps = second.snapshot_pumps();
        let mut expected = pipeline();
        add(&mut expected, "A", 1_000);
        assert_eq!(pumps, expected.snapshot_pumps());
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }

    #[test]
    fn a_committed_snapshot_replaces_the_previous_file_and_is_restored() {
        let dir = temp_dir("commit");
        let checkpoints = Checkpoints::default();
        let mut first = pipeline();
        let mut snapshots = store(&dir);
        block_on(async {
            snapshots
                .open(&checkpoints, &mut first, true)
                .await
                .expect("opens");
            add(&mut first, "A", 1_000);
            snapshots
                .commit(&checkpoints, &first, cut(1), 1_000, 0, false)
                .await;
            add(&mut first, "B", 2_000);
            snapshots
                .commit(&checkpoints, &first, cut(2), 2_000, 1, false)
                .await;
        });
        assert!(!dir.join("app+1.1+1.snapshot").exists());
        let mut second = pipeline();
        let restored = block_on(store(&dir).open(&checkpoints, &mut second, true))
            .expect("restores")
            .expect("a snapshot");
        assert_eq!((restored.generation, restored.last_rowtime_ms), (2, 2_000));
        assert_eq!(second.snapshot_pumps(), first.snapshot_pumps());
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }

    #[test]
    fn a_corrupt_snapshot_is_reported_and_not_restored() {
        let dir = temp_dir("corrupt");
        let checkpoints = Checkpoints::default();
        let mut first = pipeline();
        block_on(async {
            let mut snapshots = store(&dir);
            snapshots
                .open(&checkpoints, &mut first, true)
                .await
                .expect("opens");
            add(&mut first, "A", 1_000);
            snapshots
                .commit(&checkpoints, &first, cut(1), 1_000, 0, false)
                .await;
        });
        let path = dir.join("app+1.1+1.snapshot");
        let mut bytes = std::fs::read(&path).expect("written");
        let last = bytes.len() - 10;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).expect("rewritten");
        let mut second = pipeline();
        let error = block_on(store(&dir).open(&checkpoints, &mut second, true))
            .expect_err("a corrupt snapshot is refused");
        assert!(
            matches!(
                error,
                RestoreSnapshotError::Decode {
                    source: DecodeSnapshotError::Corrupt { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(
            second.snapshot_pumps(),
            pipeline().snapshot_pumps(),
            "nothing restored"
        );
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }

    #[test]
    fn large_snapshots_are_throttled_and_hold_the_positions_back_meanwhile() {
        let dir = temp_dir("throttle");
        let checkpoints = Checkpoints::default();
        let mut first = pipeline();
        let mut snapshots = store(&dir);
        block_on(async {
            snapshots
                .open(&checkpoints, &mut first, true)
                .await
                .expect("opens");
            add(&mut first, "A", 1_000);
            snapshots
                .commit(&checkpoints, &first, cut(1), 1_000, 0, false)
                .await;
            // As if the last snapshot had been large.
            snapshots.last_write = Some(LastWrite {
                at_ms: 0,
                bytes: SNAPSHOT_EVERY_ROUND_BYTES_MAX + 1,
            });
            add(&mut first, "B", 2_000);
            let durable = snapshots
                .commit(&checkpoints, &first, cut(2), 2_000, 5, false)
                .await;
            assert_eq!(durable, cut(1), "deferred");
            let durable = snapshots
                .commit(
                    &checkpoints,
                    &first,
                    cut(2),
                    2_000,
                    SNAPSHOT_INTERVAL_MS,
                    false,
                )
                .await;
            assert_eq!(durable, cut(2), "written once the interval passed");
            let durable = snapshots
                .commit(&checkpoints, &first, cut(3), 2_000, 6, true)
                .await;
            assert_eq!(durable, cut(3), "a forced snapshot is written at once");
        });
        std::fs::remove_dir_all(dir).expect("cleaned up");
    }
}
