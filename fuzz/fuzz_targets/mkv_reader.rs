//! The PutMedia MKV reader (`sluice_video::mkv::MkvReader`): whatever the bytes and however they
//! are split into pushes, it never panics, the memory it holds (`buffered()`) stays within the
//! Cluster limit it was given plus a few KB, and the chunking changes nothing. The reference
//! model is the reader itself fed the whole body in one push: the events and the outcome of a
//! body fed in random-sized pushes must equal it.
//!
//! Input layout: 2 bytes of Cluster limit (0..=16383 bytes, so it is often smaller than the
//! body and the refusal paths run), 4 bytes seeding the push sizes, then the body. Run with
//! `-max_len=65536` (as `scripts/fuzz` should): under the default 4096 no input is longer than
//! the slack and the memory bound cannot fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_video::mkv::{MkvError, MkvEvent, MkvReader};

/// What the reader may hold beyond one Cluster: an element header and the EBML header, which
/// the reader caps at 4096 bytes.
const BUFFERED_SLACK_BYTES: u64 = 8 * 1024;

/// The events and the outcome of one way of feeding the body.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<MkvEvent>,
    error: Option<MkvError>,
}

fn feed(body: &[u8], limit: u64, mut seed: u32, whole: bool) -> Outcome {
    let mut reader = MkvReader::new(limit);
    let mut events = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let take = if whole {
            rest.len()
        } else {
            // xorshift32: push sizes from 1 byte to 1 KiB, mostly small.
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let size = if seed % 4 == 0 { seed % 1024 } else { seed % 16 };
            (size as usize).clamp(1, rest.len())
        };
        let (piece, after) = rest.split_at(take);
        rest = after;
        match reader.push(piece) {
            Ok(mut more) => events.append(&mut more),
            Err(error) => return Outcome { events, error: Some(error) },
        }
        let buffered = reader.buffered() as u64;
        assert!(
            buffered <= limit + BUFFERED_SLACK_BYTES,
            "the reader holds {buffered} bytes with a {limit}-byte Cluster limit"
        );
    }
    match reader.finish() {
        Ok(mut more) => events.append(&mut more),
        Err(error) => return Outcome { events, error: Some(error) },
    }
    assert!(reader.at_boundary(), "a finished reader holds nothing");
    Outcome { events, error: None }
}

fuzz_target!(|data: &[u8]| {
    let Some((prefix, body)) = data.split_first_chunk::<6>() else {
        return;
    };
    let limit = u64::from(u16::from_le_bytes([prefix[0], prefix[1]]) % 16384);
    let seed = u32::from_le_bytes([prefix[2], prefix[3], prefix[4], prefix[5]]) | 1;

    let chunked = feed(body, limit, seed, false);
    let whole = feed(body, limit, seed, true);
    // Errors carry offsets and sizes that may legitimately differ with the push sizes, and a
    // failed push returns none of the events it found, so events are compared only on success.
    if chunked.error.is_none() && whole.error.is_none() {
        assert_eq!(chunked.events, whole.events, "the push sizes changed the events");
    }
    assert_eq!(
        chunked.error.is_some(),
        whole.error.is_some(),
        "the push sizes changed the outcome: chunked {:?}, whole {:?}",
        chunked.error,
        whole.error
    );
});
