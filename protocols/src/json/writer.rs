//! A minimal JSON writer over a preallocated `Vec<u8>`. Responses have fixed shapes, so writing
//! them directly beats building serde structs first (measured in `benches/protocols_json.rs`).
//! Callers emit separators themselves; this module only knows how to write scalars correctly.

use std::io::Write as _;

/// Appends `s` as a JSON string literal, escaping quotes, backslashes and control characters.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                // Control characters without a short form use the \u00XX form.
                let _ = write!(out, "\\u{:04x}", b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `"key":` (keys are our own ASCII member names and need no escaping).
pub fn write_key(out: &mut Vec<u8>, key: &str) {
    debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

pub fn write_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub fn write_u128(out: &mut Vec<u8>, v: u128) {
    let _ = write!(out, "{v}");
}

pub fn write_bool(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(if v { b"true" } else { b"false" });
}

/// A timestamp as JSON 1.1 sends it: epoch seconds with a millisecond fraction,
/// `1704164645.678`.
pub fn write_timestamp_ms(out: &mut Vec<u8>, ms: u64) {
    write_u64(out, ms / 1000);
    let frac = ms % 1000;
    out.push(b'.');
    out.push(b'0' + (frac / 100) as u8);
    out.push(b'0' + (frac / 10 % 10) as u8);
    out.push(b'0' + (frac % 10) as u8);
}

/// Appends `data` as a base64 JSON string.
pub fn write_base64(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'"');
    base64_simd::STANDARD.encode_append(data, out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("writer emits UTF-8")
    }

    #[test]
    fn strings_are_escaped_so_serde_json_reads_them_back() {
        for input in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\n tab\t cr\r",
            "\u{1}\u{1f}",
            "ünï©ødé 🎉",
            "",
        ] {
            let text = s(|o| write_str(o, input));
            let back: String = serde_json::from_str(&text).expect("valid JSON string");
            assert_eq!(back, input, "{text}");
        }
    }

    #[test]
    fn timestamps_have_a_three_digit_millisecond_fraction() {
        assert_eq!(
            s(|o| write_timestamp_ms(o, 1_704_164_645_678)),
            "1704164645.678"
        );
        assert_eq!(
            s(|o| write_timestamp_ms(o, 1_704_164_645_007)),
            "1704164645.007"
        );
        assert_eq!(s(|o| write_timestamp_ms(o, 0)), "0.000");
    }

    #[test]
    fn integers_and_base64_are_written_plainly() {
        assert_eq!(s(|o| write_u64(o, 0)), "0");
        assert_eq!(s(|o| write_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| write_u128(o, u128::MAX)), u128::MAX.to_string());
        assert_eq!(s(|o| write_base64(o, b"\x00\x01hello")), "\"AAFoZWxsbw==\"");
    }
}
