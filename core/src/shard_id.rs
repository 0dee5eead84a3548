//! Shard ids: `shardId-` followed by the 12-digit zero-padded shard index. Indexes only grow
//! over a stream's life; children of a reshard take the next free ones.

/// `shardId-000000000007` for index 7.
pub fn format_shard_id(shard_index: u32) -> String {
    format!("shardId-{shard_index:012}")
}

/// Reads a shard id leniently, as AWS does: `shardId-000000000001`, `shardId-1` and `1` all name
/// shard 1. Returns `None` for anything else.
pub fn parse_shard_id(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("shardId-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_round_trip_and_accept_short_forms() {
        assert_eq!(format_shard_id(0), "shardId-000000000000");
        assert_eq!(parse_shard_id("shardId-000000000012"), Some(12));
        assert_eq!(parse_shard_id("shardId-5"), Some(5));
        assert_eq!(parse_shard_id("7"), Some(7));
        assert_eq!(parse_shard_id("shardId-"), None);
        assert_eq!(parse_shard_id("shard-1"), None);
        assert_eq!(parse_shard_id("shardId-99999999999"), None);
    }
}
