//! The base64 of blob members (`Data`) as AWS accepts it, with AWS's texts for what it refuses.

use sluice_core::KinesisError;

use super::body::serialization;

/// Standard padded base64 as AWS accepts it. The fast path is base64-simd; the texts of the
/// failures (AWS's, typo included) come from a slow second look that only runs on bad input.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, KinesisError> {
    if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(text)
        && last_quantum_is_canonical(text.as_bytes())
    {
        return Ok(bytes);
    }
    Err(base64_error(text))
}

/// A padded final quantum must leave the unused low bits of its last data character zero
/// (`+/+=` is refused), as AWS's decoder requires.
fn last_quantum_is_canonical(text: &[u8]) -> bool {
    let value = |c: u8| -> u8 {
        match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    match text {
        [.., c, b'=', b'='] => value(*c) & 0x0f == 0,
        [.., c, b'='] => value(*c) & 0x03 == 0,
        _ => true,
    }
}

fn base64_error(text: &str) -> KinesisError {
    let prefix = format!("'{text}' can not be converted to a Blob: ");
    if !text.len().is_multiple_of(4) {
        return serialization(format!(
            "{prefix}Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            text.chars().count()
        ));
    }
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let bad_char = !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=');
        let pad_then_data = b == b'=' && bytes.get(i + 1).is_some_and(|&n| n != b'=');
        if bad_char || pad_then_data {
            let c = text[i..]
                .chars()
                .next()
                .expect("index is on a character boundary");
            return serialization(format!("{prefix}Invalid Base64 character: '{c}'"));
        }
    }
    serialization(format!(
        "{prefix}Invalid last non-pad Base64 character dectected"
    ))
}
