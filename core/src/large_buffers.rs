//! A small pool of large byte buffers, for the few buffers of many MiB a read answer needs: the
//! records of a read ([`crate::storage::ReadBatch`]) and the frame that carries them.
//!
//! Why not leave it to the allocator: jemalloc, as this server configures it (a background
//! thread that gives freed pages back within about a second), hands each new 10 MB buffer
//! pages that the kernel must fault in and zero again. On a cold read of shards stored
//! together that cost about half of the server's core (measured 2026-12-07: ~560,000 page
//! faults for 1 GB read, 362–414 MB/s; without them 617–835 MB/s; DECISIONS gap 5), and no
//! jemalloc setting short of never giving memory back removed it.
//!
//! Invariants:
//! - Only buffers of at least [`POOLED_BYTES_MIN`] and at most [`POOLED_BYTES_MAX`] of capacity
//!   are kept, at most [`POOL_BYTES_MAX`] bytes of them in all, each empty.
//! - A kept buffer not taken again within [`IDLE`] is freed at the next call that touches the
//!   pool, so memory taken in a burst goes back to the allocator once reads stop.
//! - The pool is shared by every thread (a buffer made on a shard core is often dropped on the
//!   core of the connection that answers), behind one mutex taken once per large buffer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buffers below this are left to the allocator's own caches.
pub const POOLED_BYTES_MIN: usize = 1 << 20;
/// A read answer is at most one 16 MiB frame; bigger buffers are not kept.
pub const POOLED_BYTES_MAX: usize = 20 << 20;
/// Capacity the pool keeps in all.
pub const POOL_BYTES_MAX: usize = 64 << 20;
/// How long a kept buffer may wait to be taken again.
pub const IDLE: Duration = Duration::from_secs(1);

struct Kept {
    buffer: Vec<u8>,
    since: Instant,
}

static POOL: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Kept>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn drop_idle(kept: &mut Vec<Kept>, now: Instant) {
    kept.retain(|k| now.duration_since(k.since) < IDLE);
}

/// An empty buffer with room for at least `bytes`: a kept one if one is big enough, else a
/// new one. Below [`POOLED_BYTES_MIN`] always a new one.
pub fn take(bytes: usize) -> Vec<u8> {
    if bytes < POOLED_BYTES_MIN {
        return Vec::with_capacity(bytes);
    }
    let now = Instant::now();
    let found = {
        let mut kept = pool();
        drop_idle(&mut kept, now);
        kept.iter()
            .position(|k| k.buffer.capacity() >= bytes)
            .map(|at| kept.swap_remove(at).buffer)
    };
    found.unwrap_or_else(|| Vec::with_capacity(bytes))
}

/// Gives `buffer` back to be taken again, if it is one the pool keeps and there is room.
pub fn give_back(mut buffer: Vec<u8>) {
    let capacity = buffer.capacity();
    if !(POOLED_BYTES_MIN..=POOLED_BYTES_MAX).contains(&capacity) {
        return;
    }
    buffer.clear();
    let now = Instant::now();
    let mut kept = pool();
    drop_idle(&mut kept, now);
    let held: usize = kept.iter().map(|k| k.buffer.capacity()).sum();
    if held + capacity <= POOL_BYTES_MAX {
        kept.push(Kept { buffer, since: now });
    }
}

/// Capacity kept in the pool now (idle buffers included until the next call frees them).
pub fn kept_bytes() -> usize {
    pool().iter().map(|k| k.buffer.capacity()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide; tests that use it run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn a_large_buffer_given_back_is_taken_again_and_small_or_huge_ones_are_not_kept() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        pool().clear();
        let mut buffer = take(4 << 20);
        buffer.extend_from_slice(&[1; 100]);
        let at = buffer.as_ptr();
        give_back(buffer);
        let again = take(3 << 20);
        assert_eq!(again.as_ptr(), at, "the kept buffer comes back");
        assert!(again.is_empty() && again.capacity() >= 4 << 20);
        // Too small to be worth keeping, too big to be an answer's: not kept.
        give_back(Vec::with_capacity(POOLED_BYTES_MIN / 2));
        give_back(Vec::with_capacity(POOLED_BYTES_MAX * 2));
        assert_eq!(kept_bytes(), 0);
        // A buffer too small for what is asked stays in the pool.
        give_back(again);
        let bigger = take(8 << 20);
        assert!(bigger.capacity() >= 8 << 20);
        assert_eq!(kept_bytes(), 4 << 20);
        pool().clear();
    }

    #[test]
    fn a_large_read_batch_hands_its_buffer_to_the_next_one() {
        use crate::storage::{ReadBatch, ShardOrigin};
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        pool().clear();
        let origin = ShardOrigin {
            shard_index: 0,
            created_s: 1,
        };
        let mut first = ReadBatch::new(origin, 1, 2 << 20);
        first.push(0, 1, "k", &[5; 100]);
        drop(first);
        assert!(
            kept_bytes() >= 2 << 20,
            "a dropped batch gives its buffer back"
        );
        let second = ReadBatch::new(origin, 1, 2 << 20);
        assert_eq!(kept_bytes(), 0, "the next batch takes it");
        assert_eq!(second.payload_bytes(), 0, "empty");
        drop(second);
        pool().clear();
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound_and_frees_what_waits_too_long() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        pool().clear();
        for _ in 0..(POOL_BYTES_MAX / (16 << 20)) + 3 {
            give_back(Vec::with_capacity(16 << 20));
        }
        assert_eq!(kept_bytes(), POOL_BYTES_MAX);
        // Age every kept buffer past IDLE: the next call frees them.
        for kept in pool().iter_mut() {
            kept.since -= IDLE;
        }
        let _ = take(2 << 20);
        assert_eq!(kept_bytes(), 0);
    }
}
