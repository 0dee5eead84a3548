//! Shard iterators: opaque base64 tokens that name a stream incarnation, a shard and a
//! position, and expire 300 s after they were issued.
//!
//! Decoded layout (little-endian): 8-byte prefix `00 00 00 00 00 00 00 01`, issued_ms u64,
//! stream_created_ms u64, shard_index u32, position u64, stream name length u8, stream name,
//! CRC32C of all preceding bytes (u32), then zero padding so that the decoded length is 152 plus a
//! multiple of 16 (the shape AWS's iterators have). The CRC only detects damaged or made-up
//! tokens; iterators are not secrets.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub const SHARD_ITERATOR_TTL_MS: u64 = 300_000;
const PREFIX: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];
const DECODED_MIN: usize = 152;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardIterator {
    pub issued_ms: u64,
    /// Distinguishes a stream from a later one of the same name.
    pub stream_created_ms: u64,
    pub stream_name: String,
    pub shard_index: u32,
    /// The position of the next record to read.
    pub position: u64,
}

impl ShardIterator {
    pub fn encode(&self) -> String {
        assert!(self.stream_name.len() <= 255);
        let mut out = Vec::with_capacity(DECODED_MIN + 128);
        out.extend_from_slice(&PREFIX);
        out.extend_from_slice(&self.issued_ms.to_le_bytes());
        out.extend_from_slice(&self.stream_created_ms.to_le_bytes());
        out.extend_from_slice(&self.shard_index.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.push(self.stream_name.len() as u8);
        out.extend_from_slice(self.stream_name.as_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let padded = if out.len() <= DECODED_MIN {
            DECODED_MIN
        } else {
            DECODED_MIN + (out.len() - DECODED_MIN).div_ceil(16) * 16
        };
        out.resize(padded, 0);
        STANDARD.encode(out)
    }

    /// `None` for anything that is not an iterator we issued.
    pub fn decode(token: &str) -> Option<Self> {
        let bytes = STANDARD.decode(token).ok()?;
        if bytes.len() < DECODED_MIN || !(bytes.len() - DECODED_MIN).is_multiple_of(16) {
            return None;
        }
        if bytes[..8] != PREFIX {
            return None;
        }
        let u64_at = |at: usize| -> u64 {
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8-byte slice"))
        };
        let issued_ms = u64_at(8);
        let stream_created_ms = u64_at(16);
        let shard_index = u32::from_le_bytes(bytes[24..28].try_into().expect("4-byte slice"));
        let position = u64_at(28);
        let name_len = usize::from(bytes[36]);
        let name_end = 37 + name_len;
        let crc_end = name_end + 4;
        if crc_end > bytes.len() {
            return None;
        }
        let stored = u32::from_le_bytes(bytes[name_end..crc_end].try_into().expect("4-byte slice"));
        if crc32c::crc32c(&bytes[..name_end]) != stored {
            return None;
        }
        if bytes[crc_end..].iter().any(|&b| b != 0) {
            return None;
        }
        let stream_name = std::str::from_utf8(&bytes[37..name_end]).ok()?.to_owned();
        Some(Self {
            issued_ms,
            stream_created_ms,
            stream_name,
            shard_index,
            position,
        })
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms > self.issued_ms.saturating_add(SHARD_ITERATOR_TTL_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tampered_iterators_are_refused() {
        let it = ShardIterator {
            issued_ms: 1,
            stream_created_ms: 2,
            stream_name: "s".into(),
            shard_index: 3,
            position: 4,
        };
        let token = it.encode();
        assert_eq!(ShardIterator::decode(&token), Some(it));
        let mut bytes = STANDARD.decode(&token).unwrap_or_default();
        bytes[30] ^= 1;
        assert_eq!(ShardIterator::decode(&STANDARD.encode(&bytes)), None);
        assert_eq!(ShardIterator::decode("garbage"), None);
    }

    #[test]
    fn iterators_expire_after_five_minutes() {
        let it = ShardIterator {
            issued_ms: 1000,
            stream_created_ms: 0,
            stream_name: "s".into(),
            shard_index: 0,
            position: 0,
        };
        assert!(!it.is_expired(1000 + SHARD_ITERATOR_TTL_MS));
        assert!(it.is_expired(1001 + SHARD_ITERATOR_TTL_MS));
    }

    proptest! {
        #[test]
        fn round_trip_and_shape(issued in any::<u64>(), created in any::<u64>(), name in "[a-zA-Z0-9_.-]{1,128}", index in any::<u32>(), position in any::<u64>()) {
            let it = ShardIterator { issued_ms: issued, stream_created_ms: created, stream_name: name, shard_index: index, position };
            let token = it.encode();
            prop_assert!(token.len() <= 512);
            let decoded_len = STANDARD.decode(&token).map(|b| b.len()).unwrap_or(0);
            prop_assert!(decoded_len >= 152 && (decoded_len - 152).is_multiple_of(16));
            prop_assert_eq!(ShardIterator::decode(&token), Some(it));
        }
    }
}
