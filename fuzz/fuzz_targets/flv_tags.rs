//! RTMP ingest's FLV tag readers (`sluice_video::rtmp::flv`): whatever the bytes, they never
//! panic, and what they accept agrees with a reference model written from the FLV 10.1 layout
//! (Annex E) byte by byte: an AVC frame is the bytes after the 5-byte header, keyed by FrameType
//! 1, with the signed 24-bit composition offset; an AAC frame or config is the bytes after the
//! 2-byte header. Every AudioSpecificConfig accepted names a sampling frequency and 1 to 8
//! channels, and every avcC accepted gives a non-empty picture.
//!
//! Input layout: the first byte chooses the reader (video, audio, AudioSpecificConfig, avcC),
//! the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_video::rtmp::flv::{self, AudioTag, VideoTag};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    match choice % 4 {
        0 => {
            if let Ok(VideoTag::AvcFrame {
                keyframe,
                composition_ms,
                data,
            }) = flv::video_tag(body)
            {
                assert_eq!(body[0] & 0x0F, 7, "only CodecID 7 is AVC");
                assert_eq!(body[1], 1, "AVCPacketType 1 holds NAL units");
                assert_eq!(keyframe, body[0] >> 4 == 1);
                let raw = (u32::from(body[2]) << 16) | (u32::from(body[3]) << 8) | u32::from(body[4]);
                let signed = if raw & 0x80_0000 != 0 {
                    raw as i32 - 0x100_0000
                } else {
                    raw as i32
                };
                assert_eq!(composition_ms, signed);
                assert_eq!(data, &body[5..]);
                assert!(!data.is_empty());
            }
        }
        1 => match flv::audio_tag(body) {
            Ok(AudioTag::AacConfig(config)) => {
                assert_eq!(body[0] >> 4, 10, "only SoundFormat 10 is AAC");
                assert_eq!(body[1], 0);
                assert_eq!(config, &body[2..]);
            }
            Ok(AudioTag::AacFrame(frame)) => {
                assert_eq!(body[0] >> 4, 10, "only SoundFormat 10 is AAC");
                assert_ne!(body[1], 0);
                assert_eq!(frame, &body[2..]);
            }
            Ok(AudioTag::Unsupported(_)) => assert_ne!(body[0] >> 4, 10),
            Err(_) => {}
        },
        2 => {
            if let Ok(track) = flv::audio_track(body) {
                assert!(track.sample_rate > 0);
                assert!((1..=8).contains(&track.channels));
                assert_eq!(track.audio_specific_config, body);
            }
        }
        _ => {
            if let Ok(track) = flv::video_track(body) {
                assert!(track.width > 0 && track.height > 0);
                assert_eq!(track.avcc, body);
            }
        }
    }
});
