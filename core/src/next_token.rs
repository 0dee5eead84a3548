//! Pagination tokens for ListStreams and ListShards: opaque base64 strings that say where the
//! next page starts and expire `limits::NEXT_TOKEN_TTL_MS` after they were issued.
//!
//! Decoded layout (little-endian):
//!
//! ```text
//! magic "SNT" (3) | kind u8 (1 = ListStreams, 2 = ListShards) | issued_ms u64 | body | CRC32C u32
//!
//! ListStreams body: last stream name (u16 length + UTF-8)
//! ListShards body:  stream name (u16 length + UTF-8) | stream_created_ms u64 |
//!                   last shard index u32 | filter tag u8 | filter value
//!   filter tag: 0 none · 1 AFTER_SHARD_ID (u16 length + UTF-8 shard id) · 2 AT_TRIM_HORIZON ·
//!               3 FROM_TRIM_HORIZON · 4 AT_LATEST · 5 AT_TIMESTAMP (u64 ms) · 6 FROM_TIMESTAMP (u64 ms)
//! ```
//!
//! The CRC covers every byte before it. It only tells a damaged or made-up token from one we
//! issued; tokens are not secrets, since they reveal nothing a caller could not list anyway.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::api::ShardFilter;
use crate::limits::NEXT_TOKEN_TTL_MS;

const MAGIC: [u8; 3] = *b"SNT";
const KIND_LIST_STREAMS: u8 = 1;
const KIND_LIST_SHARDS: u8 = 2;

/// Why a NextToken was refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NextTokenError {
    #[error("the token was not issued by this service or was damaged")]
    Malformed,
    #[error("the token is older than {NEXT_TOKEN_TTL_MS} ms")]
    Expired,
}

/// Where the next ListStreams page starts: after `last_stream_name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListStreamsToken {
    pub issued_ms: u64,
    pub last_stream_name: String,
}

/// Where the next ListShards page starts: after shard `last_shard_index` of the stream
/// incarnation `stream_created_ms`, still applying the first call's filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListShardsToken {
    pub issued_ms: u64,
    pub stream_name: String,
    pub stream_created_ms: u64,
    pub last_shard_index: u32,
    pub shard_filter: Option<ShardFilter>,
}

impl ListStreamsToken {
    pub fn encode(&self) -> String {
        let mut out = header(KIND_LIST_STREAMS, self.issued_ms);
        put_str(&mut out, &self.last_stream_name);
        seal(out)
    }

    /// Decodes `token` and refuses it once it is older than the TTL at `now_ms`.
    pub fn decode(token: &str, now_ms: u64) -> Result<Self, NextTokenError> {
        let (issued_ms, mut reader) = open(token, KIND_LIST_STREAMS)?;
        let last_stream_name = reader.str().ok_or(NextTokenError::Malformed)?;
        reader.finish()?;
        check_age(issued_ms, now_ms)?;
        Ok(Self {
            issued_ms,
            last_stream_name,
        })
    }
}

impl ListShardsToken {
    pub fn encode(&self) -> String {
        let mut out = header(KIND_LIST_SHARDS, self.issued_ms);
        put_str(&mut out, &self.stream_name);
        out.extend_from_slice(&self.stream_created_ms.to_le_bytes());
        out.extend_from_slice(&self.last_shard_index.to_le_bytes());
        match &self.shard_filter {
            None => out.push(0),
            Some(ShardFilter::AfterShardId(shard_id)) => {
                out.push(1);
                put_str(&mut out, shard_id);
            }
            Some(ShardFilter::AtTrimHorizon) => out.push(2),
            Some(ShardFilter::FromTrimHorizon) => out.push(3),
            Some(ShardFilter::AtLatest) => out.push(4),
            Some(ShardFilter::AtTimestamp(ms)) => {
                out.push(5);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Some(ShardFilter::FromTimestamp(ms)) => {
                out.push(6);
                out.extend_from_slice(&ms.to_le_bytes());
            }
        }
        seal(out)
    }

    /// Decodes `token` and refuses it once it is older than the TTL at `now_ms`.
    pub fn decode(token: &str, now_ms: u64) -> Result<Self, NextTokenError> {
        let (issued_ms, mut reader) = open(token, KIND_LIST_SHARDS)?;
        let malformed = NextTokenError::Malformed;
        let stream_name = reader.str().ok_or(malformed)?;
        let stream_created_ms = reader.u64().ok_or(malformed)?;
        let last_shard_index = reader.u32().ok_or(malformed)?;
        let shard_filter = match reader.u8().ok_or(malformed)? {
            0 => None,
            1 => Some(ShardFilter::AfterShardId(reader.str().ok_or(malformed)?)),
            2 => Some(ShardFilter::AtTrimHorizon),
            3 => Some(ShardFilter::FromTrimHorizon),
            4 => Some(ShardFilter::AtLatest),
            5 => Some(ShardFilter::AtTimestamp(reader.u64().ok_or(malformed)?)),
            6 => Some(ShardFilter::FromTimestamp(reader.u64().ok_or(malformed)?)),
            _ => return Err(malformed),
        };
        reader.finish()?;
        check_age(issued_ms, now_ms)?;
        Ok(Self {
            issued_ms,
            stream_name,
            stream_created_ms,
            last_shard_index,
            shard_filter,
        })
    }
}

fn header(kind: u8, issued_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(kind);
    out.extend_from_slice(&issued_ms.to_le_bytes());
    out
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    // Stream names and shard ids are at most 128 characters; the wire layer enforces that long
    // before a token is built, so a longer string here is a bug.
    let len = u16::try_from(text.len()).expect("token strings are shorter than 64 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn seal(mut out: Vec<u8>) -> String {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    STANDARD.encode(out)
}

/// Checks base64, magic, kind and CRC, and returns the issue time and a reader over the body.
fn open(token: &str, kind: u8) -> Result<(u64, Reader), NextTokenError> {
    let bytes = STANDARD
        .decode(token)
        .map_err(|_| NextTokenError::Malformed)?;
    if bytes.len() < MAGIC.len() + 1 + 8 + 4 {
        return Err(NextTokenError::Malformed);
    }
    let (sealed, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(crc.try_into().expect("split_at left four CRC bytes"));
    if crc32c::crc32c(sealed) != stored {
        return Err(NextTokenError::Malformed);
    }
    if sealed[..MAGIC.len()] != MAGIC || sealed[MAGIC.len()] != kind {
        return Err(NextTokenError::Malformed);
    }
    let mut reader = Reader {
        bytes: sealed.to_vec(),
        at: MAGIC.len() + 1,
    };
    let issued_ms = reader.u64().ok_or(NextTokenError::Malformed)?;
    Ok((issued_ms, reader))
}

fn check_age(issued_ms: u64, now_ms: u64) -> Result<(), NextTokenError> {
    if now_ms > issued_ms.saturating_add(NEXT_TOKEN_TTL_MS) {
        return Err(NextTokenError::Expired);
    }
    Ok(())
}

struct Reader {
    bytes: Vec<u8>,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("took four bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("took eight bytes")))
    }

    fn str(&mut self) -> Option<String> {
        let len = self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
        let bytes = self.take(usize::from(len))?;
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    /// Trailing bytes mean the token is not one we built.
    fn finish(&self) -> Result<(), NextTokenError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(NextTokenError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_streams_tokens_expire_after_the_ttl() {
        let token = ListStreamsToken {
            issued_ms: 1_000,
            last_stream_name: "a".into(),
        }
        .encode();
        assert!(ListStreamsToken::decode(&token, 1_000 + NEXT_TOKEN_TTL_MS).is_ok());
        assert_eq!(
            ListStreamsToken::decode(&token, 1_001 + NEXT_TOKEN_TTL_MS),
            Err(NextTokenError::Expired)
        );
    }

    #[test]
    fn tokens_of_one_kind_are_refused_as_the_other() {
        let token = ListStreamsToken {
            issued_ms: 5,
            last_stream_name: "a".into(),
        }
        .encode();
        assert_eq!(
            ListShardsToken::decode(&token, 5),
            Err(NextTokenError::Malformed)
        );
    }

    #[test]
    fn damaged_tokens_are_malformed() {
        let token = ListStreamsToken {
            issued_ms: 5,
            last_stream_name: "abc".into(),
        }
        .encode();
        let mut bytes = STANDARD.decode(&token).unwrap_or_default();
        bytes[13] ^= 0x20;
        assert_eq!(
            ListStreamsToken::decode(&STANDARD.encode(&bytes), 5),
            Err(NextTokenError::Malformed)
        );
        assert_eq!(
            ListStreamsToken::decode("not base64!", 5),
            Err(NextTokenError::Malformed)
        );
        assert_eq!(
            ListStreamsToken::decode("", 5),
            Err(NextTokenError::Malformed)
        );
    }

    fn any_filter() -> impl Strategy<Value = Option<ShardFilter>> {
        prop_oneof![
            Just(None),
            "[a-zA-Z0-9-]{0,40}".prop_map(|s| Some(ShardFilter::AfterShardId(s))),
            Just(Some(ShardFilter::AtTrimHorizon)),
            Just(Some(ShardFilter::FromTrimHorizon)),
            Just(Some(ShardFilter::AtLatest)),
            any::<u64>().prop_map(|t| Some(ShardFilter::AtTimestamp(t))),
            any::<u64>().prop_map(|t| Some(ShardFilter::FromTimestamp(t))),
        ]
    }

    proptest! {
        #[test]
        fn list_shards_tokens_round_trip(issued in 0u64..1 << 60, name in "[a-zA-Z0-9_.-]{1,128}", created in any::<u64>(), last in any::<u32>(), filter in any_filter()) {
            let token = ListShardsToken { issued_ms: issued, stream_name: name, stream_created_ms: created, last_shard_index: last, shard_filter: filter };
            prop_assert_eq!(ListShardsToken::decode(&token.encode(), issued), Ok(token));
        }

        #[test]
        fn list_streams_tokens_round_trip(issued in 0u64..1 << 60, name in "[a-zA-Z0-9_.-]{1,128}") {
            let token = ListStreamsToken { issued_ms: issued, last_stream_name: name };
            prop_assert_eq!(ListStreamsToken::decode(&token.encode(), issued + 1), Ok(token));
        }
    }
}
