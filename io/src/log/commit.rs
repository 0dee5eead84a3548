//! The write path of the log: appends queue up as [`Pending`] entries, and one committer task
//! per log turns whatever is queued (up to `LogConfig::commit_bytes_max`) into one group
//! commit: assign positions, serialize each shard's records into a chunk, encode the chunks
//! into chained blocks, write the blocks (concurrently when there are several), `fdatasync`
//! once under [`Durability::Fsync`], then index the chunks, cache the blocks, wake waiting
//! readers and acknowledge every append of the commit.
//!
//! Invariants:
//! - Commits run one after another on the committer task, and only the committer moves
//!   `write_offset`, `next_block_seq`, `prev_crc` and the active segment.
//! - All blocks of one commit go into the active segment, back to back from `write_offset`;
//!   every block starts at a 4 KiB-aligned offset and is a multiple of 4 KiB long.
//! - Positions are assigned (`ShardIndex::assigned_next`) when the commit is planned and become
//!   visible (`ShardIndex::next_position`) only once its blocks are written (and synced). If no
//!   room can be made for a commit its positions are handed out again; if a write or sync
//!   fails the log is poisoned and nothing of the commit becomes visible.
//!
//! Planning the blocks of a commit and encoding them lives in [`plan`].

mod plan;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;

use super::error::{error_chain, is_disk_full};
use super::segment_index::{self, IndexFile};
use super::waiter::take_waiters;
use super::{
    AppendError, AppendRecord, Appended, Durability, Segment, ShardKey, ShardMap, State,
    open_segment_file, sync_dir,
};
use crate::keystore::DataKey;
use plan::{SerializedBlock, encode_blocks, plan_commit, serialize_block};

/// Reports an [`IoEvent`](super::IoEvent) to the log's observer, if it has one. Expands to
/// nothing outside test and `fault-injection` builds, so the event (and the path it names) is
/// never even built in production.
macro_rules! observe {
    ($state:expr, $event:expr) => {
        #[cfg(any(test, feature = "fault-injection"))]
        {
            let observer = $state.borrow().config.observer.clone();
            if let Some(observer) = observer {
                observer.observe($event);
            }
        }
    };
}

/// The failure a test armed for this operation of the write path, if any (see
/// [`FaultPlan`](super::FaultPlan)). Always `None` outside test and `fault-injection` builds.
fn injected_fault(state: &Rc<RefCell<State>>, op: FaultOp) -> Option<std::io::Error> {
    #[cfg(any(test, feature = "fault-injection"))]
    {
        let faults = state.borrow().config.faults.clone();
        faults.and_then(|faults| faults.take(op))
    }
    #[cfg(not(any(test, feature = "fault-injection")))]
    {
        let _ = (state, op);
        None
    }
}

/// An operation of the write path that a [`FaultPlan`](super::FaultPlan) can make fail. It is
/// defined in every build so the call sites need no `cfg`; only test and `fault-injection`
/// builds export it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// The block writes of one commit (they fail together, before any reaches the disk).
    Write,
    /// The `fdatasync` of a segment after a commit's writes.
    Sync,
    /// The preallocation of a new or growing segment.
    Preallocate,
}

/// One queued append waiting for the committer: records for one or more shards (or, with
/// `marker`, retention markers), committed together and answered together.
pub(super) struct Pending {
    parts: Vec<Part>,
    marker: bool,
    bytes: usize,
    /// One `Appended` per part, in order (markers get none).
    done: oneshot::Sender<Result<Vec<Appended>, AppendError>>,
}

/// The records of one shard in a [`Pending`] append.
pub(super) struct Part {
    pub(super) shard: ShardKey,
    /// Never empty, except in a marker.
    pub(super) records: Vec<AppendRecord>,
    /// Encrypt these records under this key; `None` stores them in the clear.
    pub(super) key: Option<Arc<DataKey>>,
}

fn record_bytes(record: &AppendRecord) -> usize {
    // Archived overhead of one record: two relative pointers with lengths, plus alignment.
    record.partition_key.len() + record.data.len() + 24
}

/// Queues an append of `parts` (or, with `marker`, an empty position marker per part) for the
/// committer and waits for the commit holding it: one message and one answer however many
/// shards the parts touch.
pub(super) async fn enqueue(
    queue: &async_channel::Sender<Pending>,
    parts: Vec<Part>,
    marker: bool,
) -> Result<Vec<Appended>, AppendError> {
    let bytes = parts
        .iter()
        .map(|part| {
            part.records.iter().map(record_bytes).sum::<usize>() + part.shard.stream_name.len() + 64
        })
        .sum();
    let (done, completion) = oneshot::channel();
    queue
        .try_send(Pending {
            parts,
            marker,
            bytes,
            done,
        })
        .map_err(|_| AppendError::Closed)?;
    completion.await.map_err(|_| AppendError::Closed)?
}

/// Takes appends off the queue and commits them in groups until every sender is gone.
///
/// Under [`Durability::Fsync`] the committer only writes: each written commit goes to a
/// syncer task, which runs one `fdatasync` for every commit written before it started and
/// then acknowledges them in order. So the next commit's planning, encoding and writes overlap
/// the previous one's sync, and a sync covers whatever was written while the one before ran.
/// At most `commits_in_flight` commits are written but not yet acknowledged; that bounds what
/// a power cut can tear (see [`super::damage`]) and the memory held by written blocks.
pub(super) async fn run_committer(
    state: Rc<RefCell<State>>,
    queue: async_channel::Receiver<Pending>,
) {
    let (durability, in_flight) = {
        let state = state.borrow();
        (state.config.durability, state.config.commits_in_flight)
    };
    let permits = Rc::new(glommio::sync::Semaphore::new(in_flight as u64));
    let pipeline = Pipeline {
        permits: permits.clone(),
        in_flight: in_flight as u64,
        syncer: match durability {
            Durability::Fsync => {
                let (sender, receiver) = async_channel::unbounded();
                glommio::spawn_local(run_syncer(state.clone(), receiver, permits)).detach();
                Some(sender)
            }
            Durability::Write => None,
        },
    };
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(pending) => pending,
            None => match queue.recv().await {
                Ok(pending) => pending,
                Err(_) => return,
            },
        };
        // A permit is taken before the batch is gathered, so appends that arrive while every
        // commit slot is busy join this batch instead of waiting for a later one.
        pipeline.acquire(1).await;
        let cap = state.borrow().config.commit_bytes_max;
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while bytes < cap {
            match queue.try_recv() {
                Ok(pending) => {
                    if bytes + pending.bytes > cap {
                        carry = Some(pending);
                        break;
                    }
                    bytes += pending.bytes;
                    batch.push(pending);
                }
                Err(_) => break,
            }
        }
        commit(&state, &pipeline, batch).await;
    }
}

/// The commit slots of a log and the way to its syncer.
struct Pipeline {
    /// One permit per commit written (or being written) but not yet acknowledged.
    permits: Rc<glommio::sync::Semaphore>,
    in_flight: u64,
    /// The syncer, under `Durability::Fsync`.
    syncer: Option<async_channel::Sender<Written>>,
}

impl Pipeline {
    async fn acquire(&self, units: u64) {
        // The semaphore is never closed, so acquiring only waits.
        if let Err(error) = self.permits.acquire(units).await {
            unreachable!("the commit semaphore is never closed: {error}");
        }
    }

    /// Waits until every commit but the caller's own is acknowledged (or failed). The caller
    /// holds one permit.
    async fn drain_others(&self) {
        let others = self.in_flight - 1;
        if others > 0 {
            self.acquire(others).await;
            self.permits.signal(others);
        }
    }

    fn release(&self) {
        self.permits.signal(1);
    }
}

/// A commit whose blocks are written, waiting for its sync and acknowledgement.
struct Written {
    batch: Vec<Pending>,
    results: Vec<Vec<Appended>>,
    encoded: Vec<plan::EncodedBlock>,
    segment_id: u64,
    file: Rc<glommio::io::DmaFile>,
}

/// Syncs written commits and acknowledges them, in the order they were written. One sync
/// covers every commit that was written before it started; commits written while it runs
/// wait for the next one.
async fn run_syncer(
    state_rc: Rc<RefCell<State>>,
    written: async_channel::Receiver<Written>,
    permits: Rc<glommio::sync::Semaphore>,
) {
    // Each `Written` holds one of the committer's permits; it goes back once the commit is
    // acknowledged or failed.
    while let Ok(first) = written.recv().await {
        let mut round = vec![first];
        while let Ok(more) = written.try_recv() {
            round.push(more);
        }
        let held = round.len() as u64;
        let outcome = sync_round(&state_rc, &round).await;
        match outcome {
            Ok(()) => {
                {
                    let mut state = state_rc.borrow_mut();
                    state.stats.fsyncs += 1;
                    if let Some(last) = round.iter().rev().find_map(|c| c.encoded.last()) {
                        state.synced_below = state.synced_below.max(last.block_seq + 1);
                    }
                }
                for commit in round {
                    publish(&state_rc, commit);
                }
            }
            Err(error) => {
                for commit in round {
                    fail_all(commit.batch, &error);
                }
            }
        }
        permits.signal(held);
    }
}

/// One `fdatasync` covering every commit of `round` (all in one segment: the committer waits
/// for every commit in flight before it rolls over). A failed sync poisons the log.
async fn sync_round(state_rc: &Rc<RefCell<State>>, round: &[Written]) -> Result<(), AppendError> {
    let last = round
        .last()
        .expect("a sync round holds at least one commit");
    let segment_id = last.segment_id;
    assert!(
        round.iter().all(|commit| commit.segment_id == segment_id),
        "the commits of one sync round share their segment"
    );
    if let Some(segment_id) = state_rc.borrow().poisoned {
        return Err(AppendError::Poisoned { segment_id });
    }
    #[cfg(any(test, feature = "fault-injection"))]
    let path = super::segment_path(&state_rc.borrow().config.dir, segment_id);
    observe!(state_rc, super::IoEvent::SyncStarted { path: &path });
    let fsync_started = std::time::Instant::now();
    let synced = match injected_fault(state_rc, FaultOp::Sync) {
        Some(error) => Err(error),
        None => last.file.fdatasync().await.map_err(std::io::Error::from),
    };
    crate::metrics::observe_fsync(fsync_started.elapsed());
    match synced {
        Ok(()) => {
            observe!(state_rc, super::IoEvent::SyncCompleted { path: &path });
            Ok(())
        }
        // Even ENOSPC poisons here: after a failed fdatasync the kernel may have dropped the
        // error along with the dirty state, so a later sync could succeed without the data
        // ever reaching the disk (PostgreSQL's "fsyncgate").
        Err(error) => {
            let error = AppendError::FsyncFailed {
                segment_id,
                source: Arc::new(error),
            };
            poison(state_rc, segment_id, &error);
            Err(error)
        }
    }
}
fn fail_all(batch: Vec<Pending>, error: &AppendError) {
    for pending in batch {
        // A dropped receiver means the caller stopped waiting; nothing to tell it.
        let _ = pending.done.send(Err(error.clone()));
    }
}

/// The error for a failed creation, preallocation or directory sync of segment `segment_id`:
/// [`AppendError::DiskFull`] when the file system is out of space, which the next commit
/// retries.
fn segment_error(segment_id: u64, error: std::io::Error) -> AppendError {
    if is_disk_full(&error) {
        AppendError::DiskFull {
            segment_id,
            source: Arc::new(error),
        }
    } else {
        AppendError::CreateSegment {
            segment_id,
            source: Arc::new(error),
        }
    }
}

async fn pre_allocate(
    state_rc: &Rc<RefCell<State>>,
    file: &glommio::io::DmaFile,
    size: u64,
) -> std::io::Result<()> {
    if let Some(error) = injected_fault(state_rc, FaultOp::Preallocate) {
        return Err(error);
    }
    file.pre_allocate(size, false).await.map_err(Into::into)
}

/// Makes room for `total` bytes of blocks in the active segment, growing an empty active
/// segment or rolling over to a new one. A failure changes nothing the log relies on: a new
/// segment that could not be preallocated or made durable is removed again, so the next
/// commit can create it afresh.
async fn ensure_space(state_rc: &Rc<RefCell<State>>, total: u64) -> Result<(), AppendError> {
    let (segment_id, offset, size, file, dir, segment_bytes, next_block_seq) = {
        let state = state_rc.borrow();
        let active = state.active();
        (
            state.active_segment_id,
            state.write_offset,
            active.size,
            active.file.clone(),
            state.config.dir.clone(),
            state.config.segment_bytes,
            state.next_block_seq,
        )
    };
    if offset + total <= size {
        return Ok(());
    }
    if offset == 0 {
        // Nothing is written to the active segment yet, so it can simply grow to hold a commit
        // bigger than `segment_bytes`.
        pre_allocate(state_rc, &file, total)
            .await
            .map_err(|error| segment_error(segment_id, error))?;
        let mut state = state_rc.borrow_mut();
        let active_id = state.active_segment_id;
        if let Some(active) = state.segments.get_mut(&active_id) {
            active.size = total;
        }
        return Ok(());
    }
    let new_id = next_block_seq;
    let new_size = segment_bytes.max(total);
    let path = super::segment_path(&dir, new_id);
    let file = match open_segment_file(&dir, new_id, true).await {
        Ok(file) => file,
        Err((_, error)) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            // Only an earlier rollover that failed half-way leaves a file at the next block's
            // name (recovery removes every segment after the end of the log), and it holds
            // nothing: nothing is written to a segment before it becomes the active one.
            std::fs::remove_file(&path).map_err(|error| segment_error(new_id, error))?;
            open_segment_file(&dir, new_id, true)
                .await
                .map_err(|(_, error)| segment_error(new_id, error))?
        }
        Err((_, error)) => return Err(segment_error(new_id, error)),
    };
    observe!(state_rc, super::IoEvent::FileCreated { path: &path });
    let prepared: std::io::Result<()> = async {
        pre_allocate(state_rc, &file, new_size).await?;
        // The new segment's name must be durable before any commit in it is acknowledged.
        observe!(state_rc, super::IoEvent::DirSyncStarted { dir: &dir });
        sync_dir(&dir).await?;
        observe!(state_rc, super::IoEvent::DirSyncCompleted { dir: &dir });
        Ok(())
    }
    .await;
    if let Err(error) = prepared {
        // On a full disk the file holds only the blocks it got before space ran out; removing
        // it gives them back. If removal fails too, the next attempt removes it first.
        let _ = file.close().await;
        if let Err(remove_error) = std::fs::remove_file(&path) {
            tracing::warn!(
                segment_id = new_id,
                %remove_error,
                "Could not remove a segment whose preparation failed."
            );
        }
        return Err(segment_error(new_id, error));
    }
    tracing::debug!(
        segment_id = new_id,
        segment_bytes = new_size,
        "Rolled over to a new segment."
    );
    // The segment left behind is indexed only once all of it is durable (under
    // `Durability::Write` its last commits may not be), so its index never describes blocks a
    // power cut could take away.
    let sealed_durable = {
        #[cfg(any(test, feature = "fault-injection"))]
        let path = super::segment_path(&dir, segment_id);
        observe!(state_rc, super::IoEvent::SyncStarted { path: &path });
        let sealed_file = state_rc.borrow().active().file.clone();
        match sealed_file.fdatasync().await {
            Ok(()) => {
                observe!(state_rc, super::IoEvent::SyncCompleted { path: &path });
                true
            }
            Err(error) => {
                tracing::warn!(segment_id, %error, "Could not sync a sealed segment; it is not indexed.");
                false
            }
        }
    };
    let mut state = state_rc.borrow_mut();
    state.segments.insert(
        new_id,
        Segment {
            file: Rc::new(file),
            size: new_size,
            shard_arrival_max: ShardMap::default(),
        },
    );
    // The segment left behind is sealed: index it, so that opening the log need not scan it.
    let sealed = std::mem::take(&mut state.ledger);
    // A log under a power-loss model writes no index: the model cannot follow a file written
    // by another thread, and drops every index at a cut anyway.
    #[cfg(any(test, feature = "fault-injection"))]
    let sealed_durable = sealed_durable && state.config.observer.is_none();
    if sealed.blocks > 0 && sealed_durable {
        let index = IndexFile::from_ledger(
            state.config.log_id,
            state.active_segment_id,
            sealed,
            state.prev_crc,
            state.last_arrival_ms,
        );
        segment_index::write_in_background(state.config.dir.clone(), index);
    }
    if sealed_durable {
        // The sync of the sealed segment covered every block written so far.
        state.synced_below = state.next_block_seq;
    }
    state.active_segment_id = new_id;
    state.write_offset = 0;
    let segments_now = state.segments.len();
    crate::metrics::segments_changed(state.stats.segment_count, segments_now);
    state.stats.segment_count = segments_now;
    Ok(())
}

/// Marks the log poisoned after a failed write or sync of `segment_id`: from now on every
/// append and read fails, and `/health` and `/metrics` say why.
fn poison(state_rc: &Rc<RefCell<State>>, segment_id: u64, error: &AppendError) {
    let mut state = state_rc.borrow_mut();
    if state.poisoned.is_some() {
        // A commit in flight failed after another one poisoned the log: the first cause stays.
        return;
    }
    state.poisoned = Some(segment_id);
    state.stats.poisoned = true;
    state.health.record_poisoned(super::Poisoning {
        segment_id,
        reason: error_chain(error),
    });
    tracing::error!(
        log_id = state.config.log_id,
        segment_id,
        %error,
        "Segment write or sync failed; log poisoned. Restart the server to recover it."
    );
}

/// Nothing of `batch` reached the disk: hands its positions out again, notes a full disk in the
/// log's health, and fails its appends with `error`.
fn give_back(state_rc: &Rc<RefCell<State>>, batch: Vec<Pending>, error: &AppendError) {
    let mut state = state_rc.borrow_mut();
    for part in batch.iter().flat_map(|pending| &pending.parts) {
        if let Some(index) = state.shards.get_mut(&part.shard) {
            index.assigned_next = index.next_position;
        }
    }
    if matches!(error, AppendError::DiskFull { .. }) {
        // Warn once when the disk fills up, not once per failed commit.
        if !state.health.disk_full() {
            tracing::warn!(
                log_id = state.config.log_id,
                %error,
                "Disk full; appends fail until space is freed, then resume."
            );
        }
        state.health.record_disk_full();
    } else {
        tracing::warn!(%error, "Could not make room for a commit; its appends failed.");
    }
    drop(state);
    fail_all(batch, error);
}

/// Plans, encodes and writes one group commit, then hands it to the syncer (or, under
/// `Durability::Write`, acknowledges it at once). Holds one of the pipeline's permits, which
/// goes back when the commit is acknowledged or failed.
async fn commit(state_rc: &Rc<RefCell<State>>, pipeline: &Pipeline, mut batch: Vec<Pending>) {
    let poisoned = state_rc.borrow().poisoned;
    if let Some(segment_id) = poisoned {
        fail_all(batch, &AppendError::Poisoned { segment_id });
        pipeline.release();
        return;
    }
    let (plans, results, arrival_ms) = plan_commit(&mut state_rc.borrow_mut(), &mut batch);
    let blocks: Vec<SerializedBlock> = plans
        .into_iter()
        .filter(|plan| !plan.is_empty())
        .map(serialize_block)
        .collect();
    let total: u64 = blocks.iter().map(|b| b.padded_len as u64).sum();
    let needs_room = {
        let state = state_rc.borrow();
        state.write_offset + total > state.active().size
    };
    if needs_room {
        // A rollover syncs and indexes the segment it leaves: every commit in it must be
        // synced and acknowledged first, and no other sync of it may be running.
        pipeline.drain_others().await;
    }
    if let Err(error) = ensure_space(state_rc, total).await {
        pipeline.drain_others().await;
        give_back(state_rc, batch, &error);
        pipeline.release();
        return;
    }
    let (segment_id, file) = {
        let state = state_rc.borrow();
        (state.active_segment_id, state.active().file.clone())
    };
    let encoded = encode_blocks(&state_rc.borrow(), blocks, arrival_ms);
    #[cfg(any(test, feature = "fault-injection"))]
    let path = super::segment_path(&state_rc.borrow().config.dir, segment_id);

    // What happened to each block write: `Ok` when it wrote every byte.
    let mut outcomes: Vec<Result<(), std::io::Error>> = Vec::with_capacity(encoded.len());
    let check = |expected: usize, written: glommio::Result<usize, ()>| match written {
        Ok(n) if n == expected => Ok(()),
        Ok(n) => Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("wrote {n} of {expected} bytes"),
        )),
        Err(error) => Err(error.into()),
    };
    if let Some(error) = injected_fault(state_rc, FaultOp::Write) {
        // An injected failure stands for writes the kernel refused before any byte moved.
        let kind = error.kind();
        outcomes.push(Err(error));
        outcomes.extend(
            encoded
                .iter()
                .skip(1)
                .map(|_| Err(std::io::Error::from(kind))),
        );
    } else if let [only] = encoded.as_slice() {
        let written = file.write_rc_at(only.buffer.clone(), only.offset).await;
        outcomes.push(check(only.buffer.len(), written));
    } else {
        // Several blocks go out as concurrent writes; every one is awaited, even after a
        // failure, so no buffer is released while the kernel may still read it.
        let tasks: Vec<_> = encoded
            .iter()
            .map(|block| {
                let file = file.clone();
                let buffer = block.buffer.clone();
                let offset = block.offset;
                glommio::spawn_local(async move { file.write_rc_at(buffer, offset).await })
            })
            .collect();
        for (task, block) in tasks.into_iter().zip(&encoded) {
            outcomes.push(check(block.buffer.len(), task.await));
        }
    }
    assert_eq!(outcomes.len(), encoded.len(), "one outcome per block write");
    let mut failure: Option<AppendError> = None;
    if let Some(at) = outcomes.iter().position(Result::is_err) {
        // A write that fails with ENOSPC wrote nothing (a partial write returns its byte
        // count, not an error), so when every write of the commit failed that way the disk
        // holds none of it and the next commit may write the same offset again. If any write
        // landed, stale blocks lie past the write offset: that is a poisoning failure.
        let nothing_landed = outcomes
            .iter()
            .all(|outcome| outcome.as_ref().is_err_and(is_disk_full));
        let offset = encoded[at].offset;
        let error = outcomes
            .swap_remove(at)
            .expect_err("the position of a failed write");
        failure = Some(if nothing_landed {
            AppendError::DiskFull {
                segment_id,
                source: Arc::new(error),
            }
        } else {
            AppendError::WriteFailed {
                segment_id,
                offset,
                source: Arc::new(error),
            }
        });
    }
    #[cfg(any(test, feature = "fault-injection"))]
    if failure.is_none() {
        for block in &encoded {
            observe!(
                state_rc,
                super::IoEvent::WriteCompleted {
                    path: &path,
                    segment_offset: block.offset,
                    bytes: block.buffer.as_bytes(),
                }
            );
        }
    }
    match failure {
        Some(error @ AppendError::DiskFull { .. }) => {
            // Positions are handed out again from the last acknowledged commit, so every
            // commit before this one must be acknowledged first.
            pipeline.drain_others().await;
            give_back(state_rc, batch, &error);
            pipeline.release();
            return;
        }
        Some(error) => {
            poison(state_rc, segment_id, &error);
            fail_all(batch, &error);
            pipeline.release();
            return;
        }
        None => {}
    }
    record_written(state_rc, &encoded, segment_id, arrival_ms);
    let written = Written {
        batch,
        results,
        encoded,
        segment_id,
        file,
    };
    match &pipeline.syncer {
        Some(syncer) => {
            if syncer.try_send(written).is_err() {
                unreachable!("the syncer lives as long as the committer");
            }
        }
        None => {
            publish(state_rc, written);
            pipeline.release();
        }
    }
}

/// Moves the end of the log past a commit whose blocks are written: the next commit is
/// planned after it. Nothing becomes visible to readers until [`publish`].
fn record_written(
    state_rc: &Rc<RefCell<State>>,
    encoded: &[plan::EncodedBlock],
    segment_id: u64,
    arrival_ms: u64,
) {
    let mut guard = state_rc.borrow_mut();
    let state = &mut *guard;
    assert_eq!(
        state.active_segment_id, segment_id,
        "only the committer rolls the log over"
    );
    if let Some(first) = encoded.first() {
        assert_eq!(
            first.offset, state.write_offset,
            "a commit continues where the previous one ended"
        );
        assert_eq!(
            first.block_seq, state.next_block_seq,
            "a commit continues the block sequence"
        );
    }
    let segment = state
        .segments
        .get_mut(&segment_id)
        .expect("the segment being written stays open");
    let mut bytes_written = 0;
    if state.ledger.blocks == 0 {
        state.ledger.first_prev_crc = Some(state.prev_crc);
    }
    state.ledger.blocks += encoded.len() as u64;
    for block in encoded {
        for (shard, chunk) in &block.chunks {
            state.ledger.chunks.push((shard.clone(), *chunk));
            segment
                .shard_arrival_max
                .entry(shard.clone())
                .and_modify(|max| *max = (*max).max(chunk.arrival_ms))
                .or_insert(chunk.arrival_ms);
        }
        bytes_written += block.buffer.len() as u64;
        // Cached now, read only once the index points at it (after `publish`).
        state
            .cache
            .insert((segment_id, block.offset), block.buffer.clone());
    }
    if let Some(last) = encoded.last() {
        state.write_offset = last.offset + last.buffer.len() as u64;
        state.next_block_seq = last.block_seq + 1;
        state.prev_crc = last.crc;
    }
    assert!(
        state.write_offset <= state.active().size,
        "a commit ends within its segment"
    );
    state.last_arrival_ms = arrival_ms;
    state.stats.blocks += encoded.len() as u64;
    state.stats.bytes_written += bytes_written;
}

/// Makes a written (and, under `Durability::Fsync`, synced) commit visible: indexes its
/// chunks, wakes tailing readers and acknowledges its appends. Commits are published in the
/// order they were written.
fn publish(state_rc: &Rc<RefCell<State>>, commit: Written) {
    let Written {
        batch,
        results,
        encoded,
        ..
    } = commit;
    let woken = {
        let mut guard = state_rc.borrow_mut();
        let state = &mut *guard;
        if state.health.disk_full() {
            tracing::info!(
                log_id = state.config.log_id,
                "Disk space is back; commits resumed."
            );
        }
        state.health.record_commit();
        for block in &encoded {
            for (shard, chunk) in &block.chunks {
                // A shard dropped while its commit was in flight is not indexed again.
                if let Some(index) = state.shards.get_mut(shard) {
                    index.push(*chunk);
                }
            }
        }
        state.stats.commits += 1;
        state.stats.appends += results.iter().map(Vec::len).sum::<usize>() as u64;
        let committed_records = encoded
            .iter()
            .flat_map(|b| b.chunks.iter())
            .map(|(_, c)| u64::from(c.record_count))
            .sum::<u64>();
        state.stats.records += committed_records;
        crate::metrics::observe_group_commit(committed_records as usize);
        take_waiters(
            state,
            encoded
                .iter()
                .flat_map(|b| b.chunks.iter())
                .map(|(shard, _)| shard),
        )
    };
    // The new positions are indexed (and durable), so tailing readers may read them now.
    for slot in &woken {
        slot.wake();
    }
    for (pending, result) in batch.into_iter().zip(results) {
        // A dropped receiver means the caller stopped waiting; the records are committed anyway.
        let _ = pending.done.send(Ok(result));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{COMMIT_BYTES_MAX_DEFAULT, Log, ReadError, ShardTip, WriteErrorKind};
    use super::*;

    fn both_modes_round_trip(durability: Durability) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, durability))
                .await
                .expect("log opens");
            let a = shard("orders", 0);
            let b = shard("orders", 1);
            let batches = [records(3, 10, 1), records(5, 300, 2)];
            let first = log.append(&a, batches[0].clone()).await.expect("append");
            let second = log.append(&a, batches[1].clone()).await.expect("append");
            log.append(&b, records(2, 5, 9)).await.expect("append");
            assert_eq!(first.first_position, 0);
            assert_eq!(second.first_position, 3);
            assert!(second.arrival_ms >= first.arrival_ms);
            assert_eq!(
                log.tip(&a),
                ShardTip {
                    next_position: 8,
                    last_arrival_ms: Some(second.arrival_ms)
                }
            );
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
            assert_eq!(
                read_all(&log, &a, 4).await,
                expected(&batches)[4..].to_vec()
            );
            assert!(
                log.read(&a, 8, 10, 100).await.expect("read").is_empty(),
                "reads past the tip are empty"
            );
            let stats = log.stats();
            assert_eq!(stats.commits, 3);
            match durability {
                Durability::Fsync => assert_eq!(stats.fsyncs, 3),
                Durability::Write => assert_eq!(stats.fsyncs, 0),
            }
            drop(log);
            let log = Log::open(config(&path, 1 << 20, durability))
                .await
                .expect("log reopens");
            assert_eq!(log.tip(&a).next_position, 8);
            assert_eq!(read_all(&log, &a, 0).await, expected(&batches));
        });
    }

    #[test]
    fn appends_read_back_in_order_under_fsync_durability() {
        both_modes_round_trip(Durability::Fsync);
    }

    #[test]
    fn appends_read_back_in_order_under_write_durability() {
        both_modes_round_trip(Durability::Write);
    }

    #[test]
    fn a_batch_append_over_many_shards_is_one_commit_answered_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let mut config = config(&path, 64 << 20, Durability::Fsync);
            config.commit_bytes_max = COMMIT_BYTES_MAX_DEFAULT;
            let log = Log::open(config).await.expect("log opens");
            let first = shard("wide", 7);
            log.append(&first, records(3, 50, 1)).await.expect("append");
            let before = log.stats();
            // Shard 7 already holds three records; shard 3 gets nothing, so it is answered
            // its tip and commits nothing.
            let appends: Vec<(ShardKey, Vec<AppendRecord>)> = (0..1000u32)
                .map(|i| {
                    let count = match i {
                        3 => 0,
                        7 => 2,
                        _ => 1,
                    };
                    (shard("wide", i), records(count, 100, u64::from(i)))
                })
                .collect();
            let answers = log.append_batch(appends).await.expect("batch append");
            assert_eq!(answers.len(), 1000);
            let after = log.stats();
            assert_eq!(after.commits - before.commits, 1, "one group commit");
            assert_eq!(
                after.appends - before.appends,
                999,
                "one append per shard with records"
            );
            for (i, answer) in answers.iter().enumerate() {
                let expected_first = if i == 7 { 3 } else { 0 };
                assert_eq!(answer.first_position, expected_first, "shard {i}");
            }
            assert!(
                answers
                    .iter()
                    .enumerate()
                    .all(|(i, a)| i == 3 || a.arrival_ms == answers[0].arrival_ms),
                "the records of one commit share its arrival time"
            );
            assert_eq!(log.tip(&shard("wide", 3)).next_position, 0);
            assert_eq!(
                read_all(&log, &shard("wide", 7), 0).await,
                expected(&[records(3, 50, 1), records(2, 100, 7)])
            );
            assert_eq!(
                read_all(&log, &shard("wide", 999), 0).await,
                expected(&[records(1, 100, 999)])
            );
        });
    }

    #[test]
    fn a_thousand_concurrent_appends_to_a_thousand_shards_share_few_fsyncs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let mut config = config(&path, 64 << 20, Durability::Fsync);
            config.commit_bytes_max = COMMIT_BYTES_MAX_DEFAULT;
            let log = Log::open(config).await.expect("log opens");
            let tasks: Vec<_> = (0..1000u32)
                .map(|i| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let key = shard("many", i);
                        log.append(&key, records(1, 100, u64::from(i))).await
                    })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.expect("append").first_position, 0);
            }
            let stats = log.stats();
            assert_eq!(stats.appends, 1000);
            assert!(stats.fsyncs >= 1);
            assert!(
                stats.fsyncs <= 20,
                "1,000 appends took {} fsyncs",
                stats.fsyncs
            );
            for i in [0u32, 499, 999] {
                let key = shard("many", i);
                assert_eq!(
                    read_all(&log, &key, 0).await,
                    expected(&[records(1, 100, u64::from(i))])
                );
            }
        });
    }

    #[test]
    fn an_append_bigger_than_a_commit_spans_several_blocks_written_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 64 << 10, Durability::Fsync))
                .await
                .expect("log opens");
            let s = shard("big", 0);
            log.append(&s, records(1, 10, 0)).await.expect("append");
            let big = records(200, 1000, 7);
            assert_eq!(
                log.append(&s, big.clone())
                    .await
                    .expect("append")
                    .first_position,
                1
            );
            let stats = log.stats();
            assert!(
                stats.blocks >= 14,
                "200 KB at 16 KiB per block took {} blocks",
                stats.blocks
            );
            assert_eq!(stats.fsyncs, 2);
            assert_eq!(
                stats.segment_count, 2,
                "the commit rolled over to a bigger segment"
            );
            let all = expected(&[records(1, 10, 0), big]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            drop(log);
            let log = Log::open(config(&path, 64 << 10, Durability::Fsync))
                .await
                .expect("log reopens");
            assert_eq!(read_all(&log, &s, 0).await, all);
        });
    }

    /// Counts block writes that completed while an `fdatasync` of their segment was running,
    /// and how many syncs ran.
    #[derive(Debug, Default)]
    struct OverlapCounter {
        syncing: std::cell::Cell<bool>,
        writes_during_sync: std::cell::Cell<u64>,
        syncs: std::cell::Cell<u64>,
    }

    impl super::super::IoObserver for OverlapCounter {
        fn observe(&self, event: super::super::IoEvent<'_>) {
            match event {
                super::super::IoEvent::SyncStarted { .. } => {
                    assert!(!self.syncing.get(), "one sync of a segment at a time");
                    self.syncing.set(true);
                    self.syncs.set(self.syncs.get() + 1);
                }
                super::super::IoEvent::SyncCompleted { .. } => self.syncing.set(false),
                super::super::IoEvent::WriteCompleted { .. } if self.syncing.get() => {
                    self.writes_during_sync
                        .set(self.writes_during_sync.get() + 1);
                }
                _ => {}
            }
        }
    }

    /// Appends from 64 concurrent producers, each waiting for its acknowledgement before the
    /// next append; returns the observer's counts and the log's fsync count.
    fn pipelined_run(commits_in_flight: usize) -> (u64, u64, u64) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let counter = Rc::new(OverlapCounter::default());
            let mut config = config(&path, 8 << 20, Durability::Fsync);
            config.commits_in_flight = commits_in_flight;
            config.observer = Some(counter.clone());
            let log = Log::open(config).await.expect("log opens");
            let producers: Vec<_> = (0..64u32)
                .map(|p| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        let key = shard("pipe", p % 8);
                        for round in 0..20u64 {
                            log.append(&key, records(5, 200, u64::from(p) * 100 + round))
                                .await
                                .expect("append");
                        }
                    })
                })
                .collect();
            for producer in producers {
                producer.await;
            }
            for p in 0..8u32 {
                let key = shard("pipe", p);
                assert_eq!(log.tip(&key).next_position, 8 * 20 * 5);
            }
            (
                counter.writes_during_sync.get(),
                counter.syncs.get(),
                log.stats().fsyncs,
            )
        })
    }

    /// Guards the point of pipelining: with two commits in flight the next commit's blocks
    /// are written while the previous commit's sync runs, and with one they never are.
    #[test]
    fn with_two_commits_in_flight_the_next_commit_is_written_during_the_previous_sync() {
        let (overlapped, syncs, fsyncs) = pipelined_run(2);
        assert!(
            overlapped > 0,
            "no block was written during a sync ({syncs} syncs)"
        );
        assert_eq!(syncs, fsyncs, "every sync round is counted once");
        let (overlapped, syncs, _) = pipelined_run(1);
        assert_eq!(
            overlapped, 0,
            "one commit in flight wrote during a sync ({syncs} syncs)"
        );
    }

    /// Guards against acknowledging a commit that was written while the previous commit's
    /// sync failed: neither may be acknowledged, and neither becomes visible.
    #[test]
    fn a_failed_sync_fails_every_commit_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let (config, faults) = with_faults(&path, 1 << 20);
            let log = Log::open(config).await.expect("log opens");
            let keys: Vec<_> = (0..32u32).map(|i| shard("inflight", i)).collect();
            faults.fail_next(FaultOp::Sync, libc::EIO);
            let tasks: Vec<_> = keys
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, key)| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        log.append(&key, records(3, 500, i as u64)).await
                    })
                })
                .collect();
            for task in tasks {
                let error = task.await.expect_err("nothing is acknowledged");
                assert!(
                    matches!(
                        error,
                        AppendError::FsyncFailed { .. } | AppendError::Poisoned { .. }
                    ),
                    "{error}"
                );
            }
            for key in &keys {
                assert_eq!(log.tip(key).next_position, 0, "nothing became visible");
            }
            assert!(log.health().poisoned().is_some());
        });
    }

    fn segment_files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("log directory lists")
            .map(|entry| {
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".seg"))
            .collect();
        names.sort();
        names
    }

    fn with_faults(
        path: &std::path::Path,
        segment_bytes: u64,
    ) -> (super::super::LogConfig, Arc<super::super::FaultPlan>) {
        let faults = Arc::new(super::super::FaultPlan::default());
        let mut config = config(path, segment_bytes, Durability::Fsync);
        config.faults = Some(faults.clone());
        (config, faults)
    }

    /// Guards against a full disk at rollover wedging the log: the new segment's file was
    /// created before its preallocation failed, so every later rollover met EEXIST and the log
    /// never resumed. A failed preallocation must fail the commit's appends with `DiskFull`,
    /// leave no file behind, not poison the log, and let the next append roll over.
    #[test]
    fn a_full_disk_at_rollover_fails_the_commit_and_the_next_append_rolls_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let (config, faults) = with_faults(&path, 64 << 10);
            let log = Log::open(config).await.expect("log opens");
            let s = shard("full", 0);
            let first = records(40, 1000, 1);
            log.append(&s, first.clone()).await.expect("append");
            let before = segment_files(&path);
            faults.fail_next(FaultOp::Preallocate, libc::ENOSPC);
            let error = log
                .append(&s, records(40, 1000, 2))
                .await
                .expect_err("no room for the commit");
            assert!(matches!(error, AppendError::DiskFull { .. }), "{error}");
            assert!(error.is_retryable());
            assert!(log.health().disk_full());
            assert_eq!(log.health().write_errors(WriteErrorKind::DiskFull), 1);
            assert_eq!(log.health().poisoned(), None);
            assert_eq!(
                segment_files(&path),
                before,
                "the half-made segment is gone"
            );
            assert_eq!(log.tip(&s).next_position, 40);
            assert_eq!(
                read_all(&log, &s, 0).await,
                expected(std::slice::from_ref(&first))
            );
            let second = records(40, 1000, 3);
            let appended = log.append(&s, second.clone()).await.expect("resumes");
            assert_eq!(
                appended.first_position, 40,
                "the refused positions are reused"
            );
            assert!(!log.health().disk_full());
            assert_eq!(log.stats().segment_count, 2);
            let all = expected(&[first, second]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            drop(log);
            let log = Log::open(config_of(&path)).await.expect("log reopens");
            assert_eq!(read_all(&log, &s, 0).await, all);
        });
    }

    fn config_of(path: &std::path::Path) -> super::super::LogConfig {
        config(path, 64 << 10, Durability::Fsync)
    }

    /// Guards against a write refused with ENOSPC poisoning the log for good, or its records
    /// becoming visible: such a write stored nothing, so its appends fail with `DiskFull`,
    /// readers never see the records, and the next commit writes the same offset again.
    #[test]
    fn a_write_refused_for_lack_of_space_stores_nothing_and_the_next_commit_retries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let (config, faults) = with_faults(&path, 64 << 10);
            let log = Log::open(config).await.expect("log opens");
            let s = shard("enospc", 0);
            let first = records(3, 10, 1);
            log.append(&s, first.clone()).await.expect("append");
            faults.fail_next(FaultOp::Write, libc::ENOSPC);
            let error = log
                .append(&s, records(2, 10, 2))
                .await
                .expect_err("the write is refused");
            assert!(matches!(error, AppendError::DiskFull { .. }), "{error}");
            assert_eq!(log.tip(&s).next_position, 3, "nothing became visible");
            assert_eq!(
                read_all(&log, &s, 0).await,
                expected(std::slice::from_ref(&first))
            );
            let third = records(4, 10, 3);
            assert_eq!(
                log.append(&s, third.clone())
                    .await
                    .expect("resumes")
                    .first_position,
                3
            );
            let all = expected(&[first, third]);
            assert_eq!(read_all(&log, &s, 0).await, all);
            drop(log);
            let log = Log::open(config_of(&path)).await.expect("log reopens");
            assert_eq!(
                read_all(&log, &s, 0).await,
                all,
                "the refused records never return"
            );
        });
    }

    /// Guards against carrying on after an I/O error: once a write failed with EIO the disk's
    /// state is unknown (redb's rule), so the log must refuse appends and reads, say why in its
    /// health, and after a restart serve every acknowledged record.
    #[test]
    fn a_write_that_fails_with_eio_poisons_the_log_for_appends_and_reads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let (config, faults) = with_faults(&path, 64 << 10);
            let log = Log::open(config).await.expect("log opens");
            let s = shard("eio", 0);
            let batch = records(3, 10, 1);
            log.append(&s, batch.clone()).await.expect("append");
            faults.fail_next(FaultOp::Write, libc::EIO);
            let error = log
                .append(&s, records(1, 1, 2))
                .await
                .expect_err("the write fails");
            assert!(matches!(error, AppendError::WriteFailed { .. }), "{error}");
            assert!(!error.is_retryable());
            let error = log
                .append(&s, records(1, 1, 3))
                .await
                .expect_err("poisoned log refuses");
            assert!(
                matches!(error, AppendError::Poisoned { segment_id: 1 }),
                "{error}"
            );
            let error = log
                .read(&s, 0, 10, 1 << 20)
                .await
                .expect_err("reads refused");
            assert!(
                matches!(error, ReadError::Poisoned { segment_id: 1 }),
                "{error}"
            );
            let poisoning = log.health().poisoned().expect("health says poisoned");
            assert_eq!(poisoning.segment_id, 1);
            assert!(
                poisoning.reason.contains("writing segment 1"),
                "{poisoning:?}"
            );
            assert_eq!(log.health().write_errors(WriteErrorKind::Io), 1);
            assert!(log.stats().poisoned);
            drop(log);
            let log = Log::open(config_of(&path)).await.expect("log reopens");
            assert_eq!(read_all(&log, &s, 0).await, expected(&[batch]));
        });
    }

    /// Guards against retrying a failed `fdatasync`: the kernel may drop the error with the
    /// dirty pages, so a second sync could succeed without the data on disk. A failed sync
    /// poisons the log even when it reports ENOSPC, and its appends are not acknowledged.
    #[test]
    fn a_failed_fdatasync_poisons_the_log_even_when_it_reports_a_full_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let (config, faults) = with_faults(&path, 64 << 10);
            let log = Log::open(config).await.expect("log opens");
            let s = shard("sync", 0);
            log.append(&s, records(2, 10, 1)).await.expect("append");
            faults.fail_next(FaultOp::Sync, libc::ENOSPC);
            let error = log
                .append(&s, records(1, 1, 2))
                .await
                .expect_err("the sync fails");
            assert!(matches!(error, AppendError::FsyncFailed { .. }), "{error}");
            assert_eq!(
                log.tip(&s).next_position,
                2,
                "the commit never became visible"
            );
            assert!(log.health().poisoned().is_some());
            assert!(!log.health().disk_full());
            let error = log
                .append(&s, records(1, 1, 3))
                .await
                .expect_err("poisoned log refuses");
            assert!(matches!(error, AppendError::Poisoned { .. }), "{error}");
        });
    }
}
