//! What a log's write path tells the rest of the process about its disk: whether the log is
//! poisoned (and by what), whether its last commit met a full disk, and how many writes failed,
//! by kind. The log lives on one executor, but `/health` and `/metrics` are rendered on
//! whichever core took the request, so this is the one piece of log state that is `Sync`.
//!
//! Invariants:
//! - Only the log's committer writes it; everyone else only reads.
//! - `poisoned` is set once and never cleared: a poisoned log stays poisoned until the process
//!   restarts and recovery runs on the segments again.
//! - `disk_full` is set by a commit that failed for lack of space and cleared by the next
//!   commit that succeeds, so it shows the state of the disk as of the last attempt.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Why a log is poisoned: the failed operation, the segment and the OS error, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poisoning {
    pub segment_id: u64,
    pub reason: String,
}

/// The kinds of failed segment writes a log counts (the `error_type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteErrorKind {
    /// ENOSPC or EDQUOT: retried by the next commit.
    DiskFull,
    /// Any other failure of a write or `fdatasync`: the log is poisoned.
    Io,
}

impl WriteErrorKind {
    pub const ALL: [Self; 2] = [Self::DiskFull, Self::Io];

    pub const fn label(self) -> &'static str {
        match self {
            Self::DiskFull => "disk_full",
            Self::Io => "io",
        }
    }
}

/// The health of one log; see the module docs. Shared as `Arc<LogHealth>`.
#[derive(Debug)]
pub struct LogHealth {
    log_id: u32,
    poisoned: Mutex<Option<Poisoning>>,
    disk_full: AtomicBool,
    disk_full_errors: AtomicU64,
    io_errors: AtomicU64,
}

impl LogHealth {
    pub(super) fn new(log_id: u32) -> Self {
        Self {
            log_id,
            poisoned: Mutex::new(None),
            disk_full: AtomicBool::new(false),
            disk_full_errors: AtomicU64::new(0),
            io_errors: AtomicU64::new(0),
        }
    }

    pub fn log_id(&self) -> u32 {
        self.log_id
    }

    /// Why the log is poisoned, if it is.
    pub fn poisoned(&self) -> Option<Poisoning> {
        // The lock is only held to copy a value in or out, so it cannot be poisoned by a panic
        // half-way through a change (and with panic=abort there is no unwinding anyway).
        self.poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the last commit attempt failed because the disk was full.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Failed segment writes (or syncs, or preallocations) of this kind since the log opened.
    pub fn write_errors(&self, kind: WriteErrorKind) -> u64 {
        match kind {
            WriteErrorKind::DiskFull => self.disk_full_errors.load(Ordering::Relaxed),
            WriteErrorKind::Io => self.io_errors.load(Ordering::Relaxed),
        }
    }

    pub(super) fn record_disk_full(&self) {
        self.disk_full.store(true, Ordering::Relaxed);
        self.disk_full_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn record_commit(&self) {
        self.disk_full.store(false, Ordering::Relaxed);
    }

    pub(super) fn record_poisoned(&self, poisoning: Poisoning) {
        self.io_errors.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        assert!(slot.is_none(), "a log is poisoned once");
        *slot = Some(poisoning);
    }
}
