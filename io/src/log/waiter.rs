//! Readers waiting for a shard's tip to move: [`super::Log::wait_for_records`] registers a
//! [`WaitSlot`], and the committer wakes every slot of a shard right after a commit touching
//! that shard became visible, so tailing readers never poll.
//!
//! Invariants:
//! - The log holds waiters only as `Weak` pointers: a waiter that gave up (timed out, was
//!   cancelled) costs a dead pointer, pruned when the next waiter of its shard registers.
//! - Waking removes a shard's whole list; a woken waiter whose position is still not reached
//!   registers again on its next poll.
//! - Wakers are called only after the log's state is released, so a woken task never finds
//!   the state borrowed.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use super::{ShardKey, State, tip_of};

/// Where a waiting reader leaves its waker.
#[derive(Default)]
pub(super) struct WaitSlot {
    waker: RefCell<Option<Waker>>,
}

impl WaitSlot {
    pub(super) fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// Takes the waiters of `shards` out of `state`; the caller wakes them once it has released
/// the state, so a woken task never finds the state borrowed.
pub(super) fn take_waiters<'s>(
    state: &mut State,
    shards: impl IntoIterator<Item = &'s ShardKey>,
) -> Vec<Rc<WaitSlot>> {
    if state.waiters.is_empty() {
        return Vec::new();
    }
    let mut woken = Vec::new();
    for shard in shards {
        if let Some(slots) = state.waiters.remove(shard) {
            woken.extend(slots.iter().filter_map(Weak::upgrade));
        }
    }
    woken
}

/// The future of [`Log::wait_for_records`].
pub(super) struct WaitForRecords {
    pub(super) state: Rc<RefCell<State>>,
    pub(super) shard: ShardKey,
    pub(super) position: u64,
    /// Registered with the log after the first `Pending`.
    pub(super) slot: Option<Rc<WaitSlot>>,
}

impl Future for WaitForRecords {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.state.borrow_mut();
        if tip_of(state.shards.get(&this.shard)).next_position > this.position {
            return Poll::Ready(());
        }
        let slot = this.slot.get_or_insert_with(Rc::default);
        *slot.waker.borrow_mut() = Some(cx.waker().clone());
        // (Re-)register: the committer removes a shard's list when it wakes it, so a waiter
        // that was woken but found its position still not reached must enter the new list.
        let slots = state.waiters.entry(this.shard.clone()).or_default();
        slots.retain(|weak| weak.strong_count() > 0);
        if !slots
            .iter()
            .any(|weak| std::ptr::eq(weak.as_ptr(), Rc::as_ptr(slot)))
        {
            slots.push(Rc::downgrade(slot));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Durability, Log};
    use std::rc::Rc;

    #[test]
    fn a_waiter_wakes_after_the_commit_that_passes_its_position_and_not_before() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_owned();
        run(async move {
            let log = Log::open(config(&path, 1 << 20, Durability::Fsync))
                .await
                .expect("log opens");
            let a = shard("orders", 0);
            let b = shard("orders", 1);
            log.append(&a, records(2, 10, 1)).await.expect("append");
            // Positions already stored resolve at once.
            log.wait_for_records(&a, 1).await;

            let woke = Rc::new(std::cell::Cell::new(false));
            let waiter = {
                let woke = woke.clone();
                let wait = log.wait_for_records(&a, 2);
                glommio::spawn_local(async move {
                    wait.await;
                    woke.set(true);
                })
            };
            // A commit of another shard, and time passing, do not wake it.
            log.append(&b, records(1, 10, 2)).await.expect("append");
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!woke.get(), "no record at position 2 exists yet");

            log.append(&a, records(1, 10, 3)).await.expect("append");
            // Only a hang guard: the wake comes from the commit, however slow the machine.
            glommio::timer::timeout(std::time::Duration::from_secs(60), async {
                waiter.await;
                Ok(())
            })
            .await
            .expect("the commit wakes the waiter");
            assert!(woke.get());
            assert_eq!(log.tip(&a).next_position, 3);
            // Dropped waiters leave no live registration behind.
            drop(log.wait_for_records(&a, 10));
            let live: usize = log
                .state
                .borrow()
                .waiters
                .values()
                .flatten()
                .filter(|w| w.strong_count() > 0)
                .count();
            assert_eq!(live, 0);
        });
    }
}
