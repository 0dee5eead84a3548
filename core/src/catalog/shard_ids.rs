//! Shard ids as AWS reads and prints them: leniently when a client names a shard, and with a
//! negative index when a sequence number encodes one past 2^31 − 1.

use crate::shard_id::format_shard_id;

/// The largest shard index AWS accepts in a shard id (a signed 32-bit integer).
const SHARD_INDEX_PARSE_MAX: u64 = i32::MAX as u64;

/// Reads a shard id as AWS does: whatever follows the first `-` (or the whole text when there is
/// no `-` or nothing follows it) must be decimal digits naming an index up to 2^31 − 1. So
/// `shardId-000000000001`, `shardId-1`, `1` and `anything-1` all name shard 1.
pub fn parse_shard_id_like_aws(text: &str) -> Option<u32> {
    let digits = match text.split('-').nth(1) {
        Some(after_hyphen) if !after_hyphen.is_empty() => after_hyphen,
        _ => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 10 {
        return None;
    }
    let index = if significant.is_empty() {
        0
    } else {
        significant.parse::<u64>().ok()?
    };
    if index > SHARD_INDEX_PARSE_MAX {
        return None;
    }
    u32::try_from(index).ok()
}

/// A shard id as AWS prints the index a sequence number encodes: indexes with the top bit set
/// read as negative 32-bit integers (`shardId--02147483648`).
pub fn shard_id_as_encoded(shard_index: u32) -> String {
    match i32::try_from(shard_index) {
        Ok(_) => format_shard_id(shard_index),
        Err(_) => {
            let magnitude = (1u64 << 32) - u64::from(shard_index);
            format!("shardId--{magnitude:011}")
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_parse_as_leniently_as_aws() {
        assert_eq!(parse_shard_id_like_aws("shardId-000000000001"), Some(1));
        assert_eq!(parse_shard_id_like_aws("shard-0"), Some(0));
        assert_eq!(
            parse_shard_id_like_aws("-00002147483647"),
            Some(2_147_483_647)
        );
        assert_eq!(parse_shard_id_like_aws("7"), Some(7));
        assert_eq!(parse_shard_id_like_aws("2147483648"), None);
        assert_eq!(parse_shard_id_like_aws("2.14E4"), None);
        assert_eq!(parse_shard_id_like_aws("a-b-1"), None);
        assert_eq!(parse_shard_id_like_aws("shardId-"), None);
    }
}
