//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), write side only:
//! SubscribeToShard is the one Kinesis operation that streams, and only the server writes
//! frames.
//!
//! One message, all integers big-endian:
//!
//! ```text
//! total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32
//! ```
//!
//! `total_length` counts the whole message (12-byte prelude, headers, payload, 4-byte CRC).
//! `prelude_crc` is CRC-32 (IEEE) of the first 8 bytes; `message_crc` is CRC-32 of everything
//! before it, `prelude_crc` included. A header is `name_len u8 | name | value_type u8 | value`;
//! Kinesis uses only type 7 (string: `len u16 | UTF-8`). The tests decode our frames with
//! aws-smithy-eventstream's decoder, the one the Rust SDK itself uses.

/// Header value type 7: a UTF-8 string with a u16 length.
const HEADER_TYPE_STRING: u8 = 7;
const PRELUDE_BYTES: usize = 12;
const CRC_BYTES: usize = 4;

/// Appends one message with string-valued `headers` and `payload` to `out`.
///
/// Panics if a header name is empty or longer than 255 bytes, a value is longer than 65535
/// bytes, or the message exceeds 4 GiB: callers pass fixed Kinesis header names and values and
/// payloads bounded far below that, so any of these is a bug.
pub fn write_message(out: &mut Vec<u8>, headers: &[(&str, &str)], payload: &[u8]) {
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total_len = PRELUDE_BYTES + headers_len + payload.len() + CRC_BYTES;
    let total = u32::try_from(total_len).expect("event-stream messages are far below 4 GiB");
    let headers_u32 = u32::try_from(headers_len).expect("event-stream headers are small");

    let start = out.len();
    out.reserve(total_len);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&headers_u32.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (name, value) in headers {
        let name_len = u8::try_from(name.len()).expect("header names fit 255 bytes");
        assert!(name_len > 0, "header names are not empty");
        let value_len = u16::try_from(value.len()).expect("header values fit 65535 bytes");
        out.push(name_len);
        out.extend_from_slice(name.as_bytes());
        out.push(HEADER_TYPE_STRING);
        out.extend_from_slice(&value_len.to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&message_crc.to_be_bytes());
    assert_eq!(
        out.len() - start,
        total_len,
        "the length prefix matches the message"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_initial_response_with_three_headers_and_an_empty_object_is_104_bytes() {
        let mut out = Vec::new();
        write_message(
            &mut out,
            &[
                (":message-type", "event"),
                (":event-type", "initial-response"),
                (":content-type", "application/json"),
            ],
            b"{}",
        );
        assert_eq!(out.len(), 104);
        assert_eq!(&out[0..4], &104u32.to_be_bytes());
        assert_eq!(
            &out[8..12],
            &crc32fast::hash(&out[0..8]).to_be_bytes(),
            "prelude CRC"
        );
        let n = out.len();
        assert_eq!(&out[n - 4..], &crc32fast::hash(&out[..n - 4]).to_be_bytes());
        assert_eq!(&out[n - 6..n - 4], b"{}");
    }

    #[test]
    fn the_sdk_decoder_reads_our_frames_back() {
        use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
        let mut out = Vec::new();
        write_message(&mut out, &[(":message-type", "event")], b"first");
        write_message(
            &mut out,
            &[(":message-type", "exception"), (":exception-type", "X")],
            &[0u8; 300],
        );
        let mut decoder = MessageFrameDecoder::new();
        let mut buffer = bytes::Bytes::from(out);
        let mut messages = Vec::new();
        while let DecodedFrame::Complete(message) =
            decoder.decode_frame(&mut buffer).expect("valid frame")
        {
            messages.push(message);
        }
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].payload().as_ref(), b"first");
        let header = |m: &aws_smithy_types::event_stream::Message, name: &str| {
            m.headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
        };
        assert_eq!(
            header(&messages[0], ":message-type").as_deref(),
            Some("event")
        );
        assert_eq!(
            header(&messages[1], ":exception-type").as_deref(),
            Some("X")
        );
        assert_eq!(messages[1].payload().len(), 300);
    }
}
