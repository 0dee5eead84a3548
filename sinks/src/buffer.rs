//! The delivery buffer of one source shard: records concatenated as they are (Firehose adds no
//! delimiter), the arrival time of the oldest, and where reading continues once they are
//! delivered.
//!
//! A buffer is flushed when its data reaches the size hint or when its oldest record has waited
//! the interval hint, whichever comes first; an interval of 0 flushes whatever one read brought.
//! The interval runs from the oldest record's arrival (not from when it was read), so records
//! redelivered after a restart that are already older than the interval go out at once.

use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// The buffering hints of a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hints {
    pub size_mib: u32,
    pub interval_s: u32,
}

impl Hints {
    pub fn size_bytes(self) -> usize {
        self.size_mib as usize * MIB
    }
}

#[derive(Debug, Default)]
pub struct Buffer {
    data: Vec<u8>,
    records: usize,
    /// Where each record ends in `data`, and when it arrived (for per-record destinations and
    /// error records).
    ends: Vec<usize>,
    arrivals: Vec<u64>,
    /// Each record's source position and its index among the user records of that source
    /// record (KPL aggregation): a stable id across redeliveries.
    sources: Vec<(u64, u32)>,
    /// User records taken by parts whose source record has not ended yet.
    pending_parts: u32,
    oldest_arrival_ms: Option<u64>,
    /// The position after the last record taken in.
    next_position: Option<u64>,
}

impl Buffer {
    pub fn push(&mut self, arrival_ms: u64, data: &[u8], position: u64) {
        if let Some(next) = self.next_position {
            assert!(position >= next);
        }
        self.take(arrival_ms, data);
        self.sources.push((position, 0));
        self.next_position = Some(position + 1);
    }

    /// Takes in one user record of a source record that carries several (KPL aggregation);
    /// [`Buffer::end_record`] then moves past the source record.
    pub fn push_part(&mut self, arrival_ms: u64, data: &[u8]) {
        self.take(arrival_ms, data);
        self.pending_parts += 1;
    }

    fn take(&mut self, arrival_ms: u64, data: &[u8]) {
        self.data.extend_from_slice(data);
        self.records += 1;
        self.ends.push(self.data.len());
        self.arrivals.push(arrival_ms);
        self.oldest_arrival_ms = Some(
            self.oldest_arrival_ms
                .map_or(arrival_ms, |o| o.min(arrival_ms)),
        );
    }

    /// Each record's data and arrival time, in order.
    pub fn each_record(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .zip(self.arrivals.iter().copied())
            .map(|((start, end), arrival)| (&self.data[start..end], arrival))
    }

    /// Moves past the source record at `position` whose user records were pushed by parts.
    pub fn end_record(&mut self, position: u64) {
        if let Some(next) = self.next_position {
            assert!(position >= next);
        }
        for sub in 0..self.pending_parts {
            self.sources.push((position, sub));
        }
        self.pending_parts = 0;
        self.next_position = Some(position + 1);
    }

    /// Each record's source position and sub-index, in order.
    pub fn sources(&self) -> &[(u64, u32)] {
        assert_eq!(self.pending_parts, 0);
        &self.sources
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn records(&self) -> usize {
        self.records
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn oldest_arrival_ms(&self) -> Option<u64> {
        self.oldest_arrival_ms
    }

    pub fn next_position(&self) -> Option<u64> {
        self.next_position
    }

    /// How many more bytes fit before the size hint is reached.
    pub fn room(&self, hints: Hints) -> usize {
        hints.size_bytes().saturating_sub(self.data.len())
    }

    /// Whether the buffer must be delivered now.
    pub fn is_due(&self, hints: Hints, now_ms: u64) -> bool {
        match self.oldest_arrival_ms {
            None => false,
            Some(oldest) => {
                self.data.len() >= hints.size_bytes()
                    || now_ms >= oldest.saturating_add(u64::from(hints.interval_s) * 1000)
            }
        }
    }

    /// How long until the interval hint makes the buffer due (`None` while it is empty).
    pub fn time_left(&self, hints: Hints, now_ms: u64) -> Option<Duration> {
        let oldest = self.oldest_arrival_ms?;
        let due = oldest.saturating_add(u64::from(hints.interval_s) * 1000);
        Some(Duration::from_millis(due.saturating_sub(now_ms)))
    }

    /// Empties the buffer after a delivery; reading continues where it did.
    pub fn clear(&mut self) {
        self.data.clear();
        self.records = 0;
        self.ends.clear();
        self.arrivals.clear();
        self.sources.clear();
        self.oldest_arrival_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINTS: Hints = Hints {
        size_mib: 1,
        interval_s: 60,
    };

    #[test]
    fn records_are_concatenated_without_delimiters() {
        let mut buffer = Buffer::default();
        buffer.push(1_000, b"ab", 0);
        buffer.push(2_000, b"c\n", 1);
        assert_eq!(buffer.data(), b"abc\n");
        assert_eq!(buffer.records(), 2);
        assert_eq!(buffer.next_position(), Some(2));
        assert_eq!(buffer.oldest_arrival_ms(), Some(1_000));
        let records: Vec<(&[u8], u64)> = buffer.each_record().collect();
        assert_eq!(records, vec![(&b"ab"[..], 1_000), (&b"c\n"[..], 2_000)]);
        buffer.push_part(3_000, b"x");
        buffer.push_part(3_000, b"y");
        buffer.end_record(5);
        assert_eq!(buffer.sources(), &[(0, 0), (1, 0), (5, 0), (5, 1)]);
    }

    #[test]
    fn an_empty_buffer_is_never_due() {
        let buffer = Buffer::default();
        assert!(!buffer.is_due(HINTS, u64::MAX));
        assert_eq!(buffer.time_left(HINTS, 0), None);
    }

    #[test]
    fn the_interval_runs_from_the_oldest_arrival() {
        let mut buffer = Buffer::default();
        buffer.push(10_000, b"x", 0);
        assert!(!buffer.is_due(HINTS, 69_999));
        assert_eq!(
            buffer.time_left(HINTS, 40_000),
            Some(Duration::from_secs(30))
        );
        assert!(buffer.is_due(HINTS, 70_000));
    }

    #[test]
    fn the_size_hint_makes_a_buffer_due_before_its_interval() {
        let mut buffer = Buffer::default();
        buffer.push(0, &vec![0u8; 1024 * 1024 - 1], 0);
        assert!(!buffer.is_due(HINTS, 0));
        assert_eq!(buffer.room(HINTS), 1);
        buffer.push(0, b"z", 1);
        assert!(buffer.is_due(HINTS, 0));
        assert_eq!(buffer.room(HINTS), 0);
    }

    #[test]
    fn an_interval_of_zero_delivers_at_once_and_clear_keeps_the_position() {
        let zero = Hints {
            size_mib: 128,
            interval_s: 0,
        };
        let mut buffer = Buffer::default();
        buffer.push(5, b"x", 7);
        assert!(buffer.is_due(zero, 5));
        buffer.clear();
        assert!(buffer.is_empty());
        assert_eq!(buffer.next_position(), Some(8));
    }
}
