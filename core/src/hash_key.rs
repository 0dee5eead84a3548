//! The 128-bit hash key space, hash ranges, and the partition-key → hash-key function.
//!
//! A record's hash key is `MD5(UTF-8 bytes of PartitionKey)` read as a big-endian `u128`, or the
//! client's `ExplicitHashKey`. It goes to the open shard whose inclusive range holds that key.

use md5::{Digest, Md5};

/// An inclusive range of hash keys, `[starting, ending]`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct HashRange {
    pub starting: u128,
    pub ending: u128,
}

impl HashRange {
    pub const ALL: HashRange = HashRange {
        starting: 0,
        ending: u128::MAX,
    };

    pub fn new(starting: u128, ending: u128) -> Self {
        assert!(starting <= ending);
        Self { starting, ending }
    }

    pub const fn contains(&self, hash_key: u128) -> bool {
        self.starting <= hash_key && hash_key <= self.ending
    }

    /// AWS's even initial split: shard `i` of `n` starts at `i * floor(2^128 / n)`, and the last
    /// shard ends at `2^128 - 1`.
    pub fn even_split(shard_count: u32) -> Vec<HashRange> {
        assert!(shard_count >= 1);
        let n = u128::from(shard_count);
        // floor(2^128 / n) computed without 2^128: (u128::MAX / n) is floor((2^128-1)/n), which
        // equals floor(2^128/n) unless n divides 2^128 (a power of two), where it is one less.
        let width = if n.is_power_of_two() {
            if n == 1 {
                0
            } else {
                1u128 << (128 - n.trailing_zeros())
            }
        } else {
            u128::MAX / n
        };
        (0..n)
            .map(|i| {
                let starting = if n == 1 { 0 } else { i * width };
                let ending = if i + 1 == n {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                };
                HashRange { starting, ending }
            })
            .collect()
    }
}

/// The hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian u128.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    let digest = Md5::digest(partition_key.as_bytes());
    u128::from_be_bytes(digest.into())
}

/// [`partition_key_hash`] of many keys at once, hashed in SIMD lanes side by side (a
/// PutRecords' keys: up to 500). Same results as one by one.
pub fn partition_key_hashes(partition_keys: &[&str]) -> Vec<u128> {
    let inputs: Vec<&[u8]> = partition_keys.iter().map(|k| k.as_bytes()).collect();
    let mut digests = vec![[0u8; 16]; inputs.len()];
    md5_many::md5_many(&inputs, &mut digests);
    digests.into_iter().map(u128::from_be_bytes).collect()
}

/// Why a decimal hash key was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseHashKeyError {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("outside [0, 2^128-1]")]
    OutOfRange,
}

/// Parses a decimal hash key (`ExplicitHashKey`, `NewStartingHashKey`, `StartingHashKey`).
pub fn parse_hash_key(text: &str) -> Result<u128, ParseHashKeyError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseHashKeyError::NotDecimal);
    }
    text.parse::<u128>()
        .map_err(|_| ParseHashKeyError::OutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_key_hash_matches_aws_test_vectors() {
        assert_eq!(
            partition_key_hash("a"),
            16955237001963240173058271559858726497
        );
        assert_eq!(
            partition_key_hash(""),
            281949768489412648962353822266799178366
        );
    }

    #[test]
    fn even_split_of_two_and_three_matches_aws_boundaries() {
        let two = HashRange::even_split(2);
        assert_eq!(two[0].ending, 170141183460469231731687303715884105727);
        assert_eq!(two[1].starting, 170141183460469231731687303715884105728);
        assert_eq!(two[1].ending, u128::MAX);
        let three = HashRange::even_split(3);
        assert_eq!(three[0].ending, 113427455640312821154458202477256070484);
        assert_eq!(three[2].ending, u128::MAX);
    }

    #[test]
    fn even_split_of_one_covers_everything() {
        assert_eq!(HashRange::even_split(1), vec![HashRange::ALL]);
    }

    #[test]
    fn parse_hash_key_rejects_values_past_two_to_the_128() {
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Ok(u128::MAX)
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            Err(ParseHashKeyError::OutOfRange)
        );
        assert_eq!(parse_hash_key("-1"), Err(ParseHashKeyError::NotDecimal));
        assert_eq!(parse_hash_key(""), Err(ParseHashKeyError::NotDecimal));
    }

    proptest::proptest! {
        #[test]
        fn batched_hashes_equal_md5_one_by_one(
            keys in proptest::collection::vec("\\PC{1,256}", 0..40),
        ) {
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let one_by_one: Vec<u128> = refs.iter().map(|k| partition_key_hash(k)).collect();
            proptest::prop_assert_eq!(partition_key_hashes(&refs), one_by_one);
        }
    }

    #[test]
    fn batched_hashes_match_md5_at_every_padding_boundary() {
        // Lengths around the 55/56/64-byte edges where MD5's padding needs a second block.
        let keys: Vec<String> = (0..200).map(|n| "k".repeat(n + 1)).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let one_by_one: Vec<u128> = refs.iter().map(|k| partition_key_hash(k)).collect();
        assert_eq!(partition_key_hashes(&refs), one_by_one);
        assert_eq!(
            partition_key_hashes(&["a"]),
            vec![0x0cc175b9c0f1b6a831c399e269772661]
        );
    }

    proptest::proptest! {
        #[test]
        fn even_split_is_contiguous_and_complete(n in 1u32..2000) {
            let ranges = HashRange::even_split(n);
            proptest::prop_assert_eq!(ranges.len(), n as usize);
            proptest::prop_assert_eq!(ranges[0].starting, 0);
            proptest::prop_assert_eq!(ranges[ranges.len() - 1].ending, u128::MAX);
            for pair in ranges.windows(2) {
                proptest::prop_assert!(pair[0].starting <= pair[0].ending);
                proptest::prop_assert_eq!(pair[0].ending + 1, pair[1].starting);
            }
        }
    }
}
