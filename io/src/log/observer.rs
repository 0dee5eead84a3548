//! A test-only window onto the log's durability-relevant I/O: every completed block write to a
//! segment file, every `fdatasync` of a segment (its start and its completion), every segment
//! file the committer creates and every `fsync` of the log directory that makes such a file's
//! name durable. A crash model (`power_loss`) uses these events to know, at any moment, which
//! bytes a power loss would keep.
//!
//! The hook exists only in test builds and with the `fault-injection` feature; otherwise
//! neither the trait nor the calls are compiled, so production pays nothing.
//!
//! Guarantees the events give an observer:
//! - `WriteCompleted` is reported after the write returned all its bytes and before the
//!   `SyncStarted` of the `fdatasync` that the commit relies on, so "completed before the sync
//!   started" is exactly "reported before `SyncStarted`". The blocks of one commit are written
//!   concurrently and reported in block order once all have been awaited.
//! - `SyncCompleted` is reported only when the sync succeeded, before any append of its commit
//!   is acknowledged.
//! - `FileCreated` is reported after the file exists, and `DirSyncCompleted` after the
//!   directory `fsync` that followed it returned.
//! - Recovery's own file operations (the first segment of a new log, removing leftover
//!   segments) are not reported: an observer sees the log as it stands when
//!   [`Log::open`](super::Log::open) returns.

use std::path::Path;

use super::FaultOp;

/// One durability-relevant I/O step of the log.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum IoEvent<'a> {
    /// A write of `bytes` at `segment_offset` of the segment file at `path` completed.
    WriteCompleted {
        path: &'a Path,
        segment_offset: u64,
        bytes: &'a [u8],
    },
    /// An `fdatasync` of the segment file at `path` is about to be issued.
    SyncStarted { path: &'a Path },
    /// That `fdatasync` returned success.
    SyncCompleted { path: &'a Path },
    /// The committer created the segment file at `path` (preallocation follows).
    FileCreated { path: &'a Path },
    /// An `fsync` of the directory `dir` is about to be issued.
    DirSyncStarted { dir: &'a Path },
    /// That `fsync` returned success.
    DirSyncCompleted { dir: &'a Path },
}

/// Receives the log's [`IoEvent`]s, on the log's own executor, in the order they happen.
///
/// `observe` has no default body: an observer that ignores events has no reason to exist.
pub trait IoObserver: std::fmt::Debug {
    fn observe(&self, event: IoEvent<'_>);
}

/// Failures to inject into the log's write path, for tests: each armed fault makes the next
/// matching operation fail with the given OS error instead of reaching the disk. `Send + Sync`
/// so that an engine test can arm it from outside the log's executor.
#[derive(Debug, Default)]
pub struct FaultPlan {
    armed: std::sync::Mutex<Vec<(FaultOp, i32)>>,
}

impl FaultPlan {
    /// Makes the next `op` fail with `raw_os_error` (`libc::EIO`, `libc::ENOSPC`, ...).
    pub fn fail_next(&self, op: FaultOp, raw_os_error: i32) {
        self.armed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((op, raw_os_error));
    }

    /// Takes the fault armed for `op`, if any.
    pub(super) fn take(&self, op: FaultOp) -> Option<std::io::Error> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        let at = armed.iter().position(|(o, _)| *o == op)?;
        let (_, errno) = armed.remove(at);
        Some(std::io::Error::from_raw_os_error(errno))
    }
}
