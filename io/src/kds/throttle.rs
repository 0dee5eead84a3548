//! Optional provisioned-throughput limits per shard (`--throughput-limits true`).
//!
//! Each shard has four token buckets, each holding at most one second of its rate:
//! - write bytes, at 1 MiB/s;
//! - write records, at 1 000/s;
//! - read bytes, at 2 MiB/s;
//! - GetRecords calls, at 5/s.
//!
//! The buckets live on the core that owns the shard, so they need no locking and see every write
//! and read of the shard.
//!
//! Writes are admitted record by record, in request order. A record is admitted only when both
//! write buckets hold enough tokens for it, and the first record refused ends the admitted prefix.
//! Ordering is kept this way: a record never lands after a later record of the same request.
//!
//! Reads are different, because a GetRecords call does not know its size until it has read. A call
//! is refused when no call token is left, or when earlier reads have overdrawn the byte bucket. The
//! bytes it returns are charged afterwards and may drive the byte bucket negative. This is how AWS
//! describes the read limit: one large read makes the next calls wait.

use std::time::Instant;

/// Write rate per shard in bytes per second (partition key plus data).
pub const WRITE_BYTES_PER_S: f64 = 1024.0 * 1024.0;
/// Write rate per shard in records per second.
pub const WRITE_RECORDS_PER_S: f64 = 1000.0;
/// Read rate per shard in bytes per second.
pub const READ_BYTES_PER_S: f64 = 2.0 * 1024.0 * 1024.0;
/// GetRecords calls per shard per second.
pub const READ_CALLS_PER_S: f64 = 5.0;

/// One token bucket: `rate` tokens per second, holding at most one second's worth.
#[derive(Clone, Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
    }
}

/// The four buckets of one shard.
#[derive(Clone, Debug)]
pub struct ShardThrottle {
    write_bytes: Bucket,
    write_records: Bucket,
    read_bytes: Bucket,
    read_calls: Bucket,
}

impl ShardThrottle {
    /// A shard with full buckets: a new or idle shard may burst one second's worth at once.
    pub fn new(now: Instant) -> Self {
        Self {
            write_bytes: Bucket::full(WRITE_BYTES_PER_S, now),
            write_records: Bucket::full(WRITE_RECORDS_PER_S, now),
            read_bytes: Bucket::full(READ_BYTES_PER_S, now),
            read_calls: Bucket::full(READ_CALLS_PER_S, now),
        }
    }

    /// Admits the longest prefix of records (given by their sizes in bytes) that the write
    /// buckets allow, takes its tokens, and returns its length.
    pub fn admit_writes(&mut self, sizes: impl IntoIterator<Item = usize>, now: Instant) -> usize {
        self.write_bytes.refill(now);
        self.write_records.refill(now);
        let mut admitted = 0;
        for size in sizes {
            // Precision: record sizes are at most a few MiB, exact in an f64.
            let bytes = size as f64;
            if self.write_records.tokens < 1.0 || self.write_bytes.tokens < bytes {
                break;
            }
            self.write_records.tokens -= 1.0;
            self.write_bytes.tokens -= bytes;
            admitted += 1;
        }
        admitted
    }

    /// Whether one more GetRecords call may run now; takes its call token when it may.
    pub fn admit_read_call(&mut self, now: Instant) -> bool {
        self.read_calls.refill(now);
        self.read_bytes.refill(now);
        if self.read_calls.tokens < 1.0 || self.read_bytes.tokens <= 0.0 {
            return false;
        }
        self.read_calls.tokens -= 1.0;
        true
    }

    /// Charges the bytes a GetRecords call returned. The bucket may go negative; later calls
    /// are refused until it has refilled above zero.
    pub fn charge_read_bytes(&mut self, bytes: usize, now: Instant) {
        self.read_bytes.refill(now);
        self.read_bytes.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_beyond_a_thousand_records_admits_only_the_first_thousand() {
        let now = Instant::now();
        let mut shard = ShardThrottle::new(now);
        assert_eq!(shard.admit_writes(std::iter::repeat_n(10, 600), now), 600);
        assert_eq!(shard.admit_writes(std::iter::repeat_n(10, 600), now), 400);
        assert_eq!(shard.admit_writes([10], now), 0);
    }

    #[test]
    fn write_tokens_come_back_at_the_rate_and_no_faster() {
        let start = Instant::now();
        let mut shard = ShardThrottle::new(start);
        assert_eq!(
            shard.admit_writes(std::iter::repeat_n(1, 1000), start),
            1000
        );
        let later = start + Duration::from_millis(100);
        assert_eq!(shard.admit_writes(std::iter::repeat_n(1, 1000), later), 100);
        // An idle shard holds at most one second's worth, however long it idled.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            shard.admit_writes(std::iter::repeat_n(1, 5000), much_later),
            1000
        );
    }

    #[test]
    fn the_byte_limit_refuses_the_record_that_would_exceed_a_mebibyte() {
        let now = Instant::now();
        let mut shard = ShardThrottle::new(now);
        let half = 512 * 1024;
        assert_eq!(shard.admit_writes([half, half, 1], now), 2);
    }

    #[test]
    fn a_sixth_get_records_call_within_a_second_is_refused() {
        let now = Instant::now();
        let mut shard = ShardThrottle::new(now);
        for _ in 0..5 {
            assert!(shard.admit_read_call(now));
        }
        assert!(!shard.admit_read_call(now));
        assert!(shard.admit_read_call(now + Duration::from_millis(200)));
    }

    #[test]
    fn a_read_that_overdraws_the_byte_bucket_makes_the_next_call_wait() {
        let now = Instant::now();
        let mut shard = ShardThrottle::new(now);
        assert!(shard.admit_read_call(now));
        shard.charge_read_bytes(4 * 1024 * 1024, now);
        // Overdrawn by 2 MiB: a second at 2 MiB/s is needed before the bucket is positive again.
        assert!(!shard.admit_read_call(now + Duration::from_millis(900)));
        assert!(shard.admit_read_call(now + Duration::from_millis(1100)));
    }
}
