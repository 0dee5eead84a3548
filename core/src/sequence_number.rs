//! Sequence numbers: 56-digit decimal strings laid out like AWS's, so that clients and test
//! suites that inspect them (kinesalite's asserts the layout) accept ours.
//!
//! As hex the number has 47 nibbles:
//!
//! ```text
//! 2 | shard creation, epoch s (9) | shard index & 0xf (1) | position (16) | 00 | arrival, epoch s (9) | shard index (8) | 2
//! ```
//!
//! `position` is the record's index within its shard (0, 1, 2, …), so a sequence number resolves
//! to a place in the shard's log in O(1), and numbers grow strictly within a shard. The starting
//! number of shard k exceeds shard k−1's by 2^144 + 16. A closed shard's ending number uses
//! position `0x7fff_ffff_ffff_ffff`.

use std::fmt;

/// Positions at or above this are reserved for the ending number of a closed shard.
pub const POSITION_MAX: u64 = 0x7fff_ffff_ffff_ffff;
const SECONDS_MAX: u64 = (1 << 36) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SequenceNumber {
    pub shard_created_s: u64,
    pub shard_index: u32,
    pub position: u64,
    pub arrival_s: u64,
}

/// The reasons a decimal string is not one of our sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseSequenceNumberError {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("not a sequence number issued by this service")]
    Foreign,
}

/// A 192-bit unsigned integer as three big-endian u64 limbs; just enough arithmetic for decimal
/// conversion. (No maintained crate offers a small fixed 192-bit integer with decimal I/O that
/// would be lighter than these few lines.)
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct U192([u64; 3]);

impl U192 {
    fn push_nibbles(&mut self, value: u64, nibbles: u32) {
        for i in (0..nibbles).rev() {
            let nibble = (value >> (i * 4)) & 0xf;
            let [a, b, c] = self.0;
            self.0 = [
                (a << 4) | (b >> 60),
                (b << 4) | (c >> 60),
                (c << 4) | nibble,
            ];
        }
    }

    fn take_nibbles(&mut self, nibbles: u32) -> u64 {
        let mut out = 0u64;
        for _ in 0..nibbles {
            let [a, b, c] = self.0;
            out = (out << 4) | (a >> 60);
            self.0 = [(a << 4) | (b >> 60), (b << 4) | (c >> 60), c << 4];
        }
        out
    }

    fn div_rem(&mut self, divisor: u64) -> u64 {
        let mut rem: u128 = 0;
        for limb in &mut self.0 {
            let cur = (rem << 64) | u128::from(*limb);
            *limb = (cur / u128::from(divisor)) as u64;
            rem = cur % u128::from(divisor);
        }
        rem as u64
    }

    fn mul_add(&mut self, mul: u64, add: u64) -> bool {
        let mut carry = u128::from(add);
        for limb in self.0.iter_mut().rev() {
            let cur = u128::from(*limb) * u128::from(mul) + carry;
            *limb = cur as u64;
            carry = cur >> 64;
        }
        carry == 0
    }

    fn is_zero(&self) -> bool {
        self.0 == [0, 0, 0]
    }
}

impl SequenceNumber {
    pub fn new(shard_created_s: u64, shard_index: u32, position: u64, arrival_s: u64) -> Self {
        assert!(position <= POSITION_MAX);
        Self {
            shard_created_s,
            shard_index,
            position,
            arrival_s,
        }
    }

    fn to_u192(self) -> U192 {
        let mut v = U192::default();
        v.push_nibbles(2, 1);
        v.push_nibbles(self.shard_created_s.min(SECONDS_MAX), 9);
        v.push_nibbles(u64::from(self.shard_index & 0xf), 1);
        v.push_nibbles(self.position, 16);
        v.push_nibbles(0, 2);
        v.push_nibbles(self.arrival_s.min(SECONDS_MAX), 9);
        v.push_nibbles(u64::from(self.shard_index), 8);
        v.push_nibbles(2, 1);
        v
    }

    /// Parses a decimal sequence number. `NotDecimal` for text that is not a plain decimal,
    /// `Foreign` for a number that does not have our layout.
    pub fn parse(text: &str) -> Result<Self, ParseSequenceNumberError> {
        Self::parse_layout(text, &[2])
    }

    /// Like [`Self::parse`], but also accepts the version-1 layout (trailing nibble 1) that AWS
    /// still takes as a PutRecord `SequenceNumberForOrdering`.
    pub fn parse_any_version(text: &str) -> Result<Self, ParseSequenceNumberError> {
        Self::parse_layout(text, &[1, 2])
    }

    fn parse_layout(text: &str, versions: &[u64]) -> Result<Self, ParseSequenceNumberError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSequenceNumberError::NotDecimal);
        }
        let mut v = U192::default();
        for b in text.bytes() {
            if !v.mul_add(10, u64::from(b - b'0')) {
                return Err(ParseSequenceNumberError::Foreign);
            }
        }
        if v.take_nibbles(1) != 0 || v.take_nibbles(1) != 2 {
            return Err(ParseSequenceNumberError::Foreign);
        }
        let shard_created_s = v.take_nibbles(9);
        let index_low = v.take_nibbles(1);
        let position = v.take_nibbles(16);
        let zero = v.take_nibbles(2);
        let arrival_s = v.take_nibbles(9);
        let shard_index = v.take_nibbles(8);
        let tail = v.take_nibbles(1);
        if zero != 0
            || !versions.contains(&tail)
            || index_low != shard_index & 0xf
            || position > POSITION_MAX
        {
            return Err(ParseSequenceNumberError::Foreign);
        }
        Ok(Self {
            shard_created_s,
            shard_index: u32::try_from(shard_index)
                .map_err(|_| ParseSequenceNumberError::Foreign)?,
            position,
            arrival_s,
        })
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CHUNK: u64 = 10_000_000_000_000_000_000;
        let mut v = self.to_u192();
        let mut chunks = [0u64; 4];
        let mut n = 0;
        while !v.is_zero() {
            chunks[n] = v.div_rem(CHUNK);
            n += 1;
        }
        // At most 192 bits: 58 digits. Written into one buffer and handed to the formatter
        // once; each 19-digit chunk after the first is zero-padded.
        let mut digits = [b'0'; 64];
        let mut len = 0;
        let mut buffer = itoa::Buffer::new();
        let first = buffer.format(chunks[n - 1]).as_bytes();
        digits[..first.len()].copy_from_slice(first);
        len += first.len();
        for chunk in chunks[..n - 1].iter().rev() {
            let text = buffer.format(*chunk).as_bytes();
            digits[len + 19 - text.len()..len + 19].copy_from_slice(text);
            len += 19;
        }
        f.write_str(std::str::from_utf8(&digits[..len]).expect("ASCII digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequence_numbers_have_56_digits() {
        let s = SequenceNumber::new(1_700_000_000, 0, 0, 1_700_000_000).to_string();
        assert_eq!(s.len(), 56, "{s}");
        let s = SequenceNumber::new(1_700_000_000, 3, POSITION_MAX, 1_800_000_000).to_string();
        assert_eq!(s.len(), 56, "{s}");
    }

    #[test]
    fn adjacent_shard_start_numbers_differ_by_two_to_the_144_plus_16() {
        let a = SequenceNumber::new(1_700_000_000, 1, 0, 1_700_000_000).to_string();
        let b = SequenceNumber::new(1_700_000_000, 2, 0, 1_700_000_000).to_string();
        let (a, b) = (
            a.parse::<f64>().unwrap_or(0.0),
            b.parse::<f64>().unwrap_or(0.0),
        );
        let diff = b - a;
        let expected = 22300745198530623141535718272648361505980432f64;
        assert!((diff - expected).abs() / expected < 1e-9, "{diff}");
    }

    #[test]
    fn the_version_1_layout_is_accepted_only_where_asked_for() {
        // The all-zero number ends in nibble 2 (version 2); version 1 differs only in that last
        // nibble, so it is the same decimal minus one (its last digit is 4, never 0).
        let mut text = SequenceNumber::new(0, 0, 0, 0).to_string();
        let last = text.pop().expect("a digit");
        assert_eq!(last, '4');
        text.push('3');
        assert_eq!(
            SequenceNumber::parse(&text),
            Err(ParseSequenceNumberError::Foreign)
        );
        assert_eq!(
            SequenceNumber::parse_any_version(&text),
            Ok(SequenceNumber::new(0, 0, 0, 0))
        );
    }

    #[test]
    fn foreign_numbers_are_refused() {
        assert_eq!(
            SequenceNumber::parse("1"),
            Err(ParseSequenceNumberError::Foreign)
        );
        assert_eq!(
            SequenceNumber::parse("12a"),
            Err(ParseSequenceNumberError::NotDecimal)
        );
        assert_eq!(
            SequenceNumber::parse(&"9".repeat(129)),
            Err(ParseSequenceNumberError::Foreign)
        );
    }

    proptest! {
        #[test]
        fn round_trip(created in 0u64..(1 << 36), index in any::<u32>(), position in 0..=POSITION_MAX, arrival in 0u64..(1 << 36)) {
            let s = SequenceNumber::new(created, index, position, arrival);
            prop_assert_eq!(SequenceNumber::parse(&s.to_string()), Ok(s));
        }

        #[test]
        fn numbers_grow_with_position_within_a_shard(created in 0u64..(1 << 36), index in any::<u32>(), p in 0..POSITION_MAX, a1 in 0u64..(1 << 36), a2 in 0u64..(1 << 36)) {
            let x = SequenceNumber::new(created, index, p, a1).to_string();
            let y = SequenceNumber::new(created, index, p + 1, a2).to_string();
            prop_assert_eq!(x.len(), y.len());
            prop_assert!(x < y);
        }
    }
}
