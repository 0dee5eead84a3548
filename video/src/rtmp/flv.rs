//! The bodies of FLV video and audio tags, as RTMP carries them in its video (type 9) and audio
//! (type 8) messages: the few fields ingest needs, read in place. Pure: no I/O.
//!
//! Video tag body (FLV 10.1, Annex E.4.3.1), legacy form:
//! - byte 0: FrameType (high 4 bits: 1 keyframe, 2 inter frame, 5 video info/command frame) and
//!   CodecID (low 4 bits: 7 AVC; 2 Sorenson H.263, 3 screen video, 4 VP6, 5 VP6 with alpha,
//!   6 screen video 2; 12 is HEVC in the legacy extension some encoders use).
//! - AVC only, bytes 1..5: AVCPacketType (0 sequence header, 1 NAL units, 2 end of sequence) and
//!   CompositionTime, a signed 24-bit big-endian offset in ms from the message's decode time to
//!   the frame's presentation time.
//! - then for a sequence header the AVCDecoderConfigurationRecord (avcC), for NAL units the
//!   access unit as length-prefixed NAL units (the length size the avcC declares).
//!
//! Enhanced RTMP (v1/v2) sets the high bit of byte 0 (IsExHeader), puts a PacketType in the low
//! 4 bits and a FourCC (`hvc1`, `av01`, `vp09`, `avc1`) in bytes 1..5. Only H.264 is ingested,
//! so an enhanced header is refused by name, even for `avc1` (which no encoder sends instead
//! of the legacy form).
//!
//! Audio tag body (Annex E.4.2.1): byte 0 is SoundFormat (high 4 bits: 10 AAC; 2 MP3, 11 Speex,
//! 7/8 G.711 and others), rate, size and type (ignored for AAC: the AudioSpecificConfig says);
//! for AAC byte 1 is AACPacketType (0 AudioSpecificConfig, 1 a raw AAC frame), then the bytes.
//!
//! Written here rather than taken from a crate: rml_rtmp hands over tag bodies without parsing
//! them, and what is read is these few header bytes (an FLV crate would bring a file demuxer
//! for them).

use crate::ingest::muxer::{AudioTrack, VideoTrack};

/// FLV's CodecID of AVC (H.264).
const CODEC_AVC: u8 = 7;
/// FLV's SoundFormat of AAC.
const SOUND_AAC: u8 = 10;
/// FrameType of a keyframe, and of a video info/command frame (no picture).
const FRAME_KEY: u8 = 1;
const FRAME_COMMAND: u8 = 5;

/// What a video tag body holds.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// An AVC sequence header: the avcC record.
    AvcConfig(&'a [u8]),
    /// An H.264 access unit in AVCC form.
    AvcFrame {
        keyframe: bool,
        /// Presentation time minus decode time, ms.
        composition_ms: i32,
        data: &'a [u8],
    },
    /// Nothing to store: an end of sequence, a command frame, an empty access unit.
    Skip,
}

/// What an audio tag body holds.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// An AAC sequence header: the AudioSpecificConfig.
    AacConfig(&'a [u8]),
    /// One raw AAC frame.
    AacFrame(&'a [u8]),
    /// Audio in a format Sluice does not store (its name).
    Unsupported(&'static str),
}

/// Why a tag body cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    #[error("the video is {codec}; only H.264 (FLV CodecID 7) is ingested")]
    UnsupportedVideo { codec: String },
    #[error("a {kind} tag of {length} bytes is shorter than its header")]
    Truncated { kind: &'static str, length: usize },
    #[error("the AVC sequence header is not a usable avcC: {reason}")]
    BadAvcConfig { reason: String },
    #[error("the AAC AudioSpecificConfig is not usable: {reason}")]
    BadAacConfig { reason: String },
}

/// Reads a video tag body.
pub fn video_tag(body: &[u8]) -> Result<VideoTag<'_>, FlvError> {
    let truncated = || FlvError::Truncated {
        kind: "video",
        length: body.len(),
    };
    let &first = body.first().ok_or_else(truncated)?;
    if first & 0x80 != 0 {
        let fourcc = body.get(1..5).ok_or_else(truncated)?;
        return Err(FlvError::UnsupportedVideo {
            codec: format!(
                "enhanced RTMP {:?}",
                String::from_utf8_lossy(fourcc).into_owned()
            ),
        });
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0F;
    if frame_type == FRAME_COMMAND {
        return Ok(VideoTag::Skip);
    }
    if codec_id != CODEC_AVC {
        let codec = match codec_id {
            2 => "Sorenson H.263",
            3 => "screen video",
            4 => "On2 VP6",
            5 => "On2 VP6 with alpha",
            6 => "screen video 2",
            12 => "H.265 (legacy FLV CodecID 12)",
            _ => "an unknown codec",
        };
        return Err(FlvError::UnsupportedVideo {
            codec: format!("{codec} (CodecID {codec_id})"),
        });
    }
    let header = body.get(1..5).ok_or_else(truncated)?;
    let data = &body[5..];
    // A signed 24-bit integer: sign-extended through the top byte of an i32.
    let composition_ms = i32::from_be_bytes([header[1], header[2], header[3], 0]) >> 8;
    match header[0] {
        0 => Ok(VideoTag::AvcConfig(data)),
        1 if !data.is_empty() => Ok(VideoTag::AvcFrame {
            keyframe: frame_type == FRAME_KEY,
            composition_ms,
            data,
        }),
        _ => Ok(VideoTag::Skip),
    }
}

/// Reads an audio tag body.
pub fn audio_tag(body: &[u8]) -> Result<AudioTag<'_>, FlvError> {
    let truncated = || FlvError::Truncated {
        kind: "audio",
        length: body.len(),
    };
    let &first = body.first().ok_or_else(truncated)?;
    let format = first >> 4;
    if format != SOUND_AAC {
        return Ok(AudioTag::Unsupported(match format {
            0 | 3 => "linear PCM",
            1 => "ADPCM",
            2 | 14 => "MP3",
            4..=6 => "Nellymoser",
            7 => "G.711 A-law",
            8 => "G.711 mu-law",
            11 => "Speex",
            _ => "an unknown audio format",
        }));
    }
    let &packet_type = body.get(1).ok_or_else(truncated)?;
    let data = &body[2..];
    Ok(match packet_type {
        0 => AudioTag::AacConfig(data),
        _ => AudioTag::AacFrame(data),
    })
}

/// The H.264 track an AVC sequence header describes.
pub fn video_track(avcc: &[u8]) -> Result<VideoTrack, FlvError> {
    let (_, width, height) =
        crate::remux::parse_avcc(avcc).map_err(|reason| FlvError::BadAvcConfig { reason })?;
    if width == 0 || height == 0 {
        return Err(FlvError::BadAvcConfig {
            reason: format!("its SPS describes a {width}x{height} picture"),
        });
    }
    Ok(VideoTrack {
        avcc: avcc.to_vec(),
        width,
        height,
    })
}

/// The sampling frequencies an AudioSpecificConfig's 4-bit index names (ISO/IEC 14496-3,
/// 1.6.3.4); 13 and 14 are reserved, 15 means an explicit 24-bit frequency follows.
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The AAC track an AudioSpecificConfig describes: its sampling frequency and channel count
/// (ISO/IEC 14496-3, 1.6.2.1: audioObjectType, samplingFrequencyIndex, channelConfiguration).
pub fn audio_track(config: &[u8]) -> Result<AudioTrack, FlvError> {
    let bad = |reason: &str| FlvError::BadAacConfig {
        reason: reason.to_owned(),
    };
    let mut bits = Bits {
        bytes: config,
        at: 0,
    };
    let mut object_type = bits.read(5).ok_or_else(|| bad("too short"))?;
    if object_type == 31 {
        object_type = 32 + bits.read(6).ok_or_else(|| bad("too short"))?;
    }
    if object_type == 0 {
        return Err(bad("audio object type 0"));
    }
    let index = bits.read(4).ok_or_else(|| bad("too short"))?;
    let sample_rate = match index {
        15 => bits.read(24).ok_or_else(|| bad("too short"))?,
        _ => *SAMPLING_FREQUENCIES
            .get(index as usize)
            .ok_or_else(|| bad("a reserved sampling frequency index"))?,
    };
    // The track's MP4 timescale is its sampling frequency: 0 would divide by zero in remux.
    if sample_rate == 0 {
        return Err(bad("an explicit sampling frequency of 0 Hz"));
    }
    let channels = match bits.read(4).ok_or_else(|| bad("too short"))? {
        // 0: defined in-band by a program config element; stereo is what encoders mean by it
        // in practice, and the decoder reads the real layout from the stream.
        0 | 2 => 2,
        7 => 8,
        layout @ 1..=6 => layout as u16,
        _ => return Err(bad("a reserved channel configuration")),
    };
    Ok(AudioTrack {
        audio_specific_config: config.to_vec(),
        sample_rate,
        channels,
    })
}

/// A big-endian bit reader over a byte slice.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    /// The next `count` (at most 32) bits, or `None` past the end.
    fn read(&mut self, count: usize) -> Option<u32> {
        assert!(count <= 32);
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.bytes.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::muxer::tests::avcc;

    #[test]
    fn an_avc_sequence_header_gives_the_avcc_and_the_picture_size() {
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend_from_slice(&avcc());
        let VideoTag::AvcConfig(config) = video_tag(&body).expect("valid") else {
            panic!("a sequence header");
        };
        assert_eq!(config, avcc().as_slice());
        let track = video_track(config).expect("usable");
        assert_eq!((track.width, track.height), (320, 240));
        assert_eq!(track.avcc, avcc());
    }

    #[test]
    fn avc_frames_carry_their_keyframe_flag_and_signed_composition_offset() {
        let nal = [0, 0, 0, 2, 0x65, 0x88];
        let mut key = vec![0x17, 1, 0x00, 0x00, 0x50];
        key.extend_from_slice(&nal);
        assert_eq!(
            video_tag(&key),
            Ok(VideoTag::AvcFrame {
                keyframe: true,
                composition_ms: 80,
                data: &nal,
            })
        );
        // -40 ms as a signed 24-bit integer.
        let mut inter = vec![0x27, 1, 0xFF, 0xFF, 0xD8];
        inter.extend_from_slice(&nal);
        assert_eq!(
            video_tag(&inter),
            Ok(VideoTag::AvcFrame {
                keyframe: false,
                composition_ms: -40,
                data: &nal,
            })
        );
        assert_eq!(video_tag(&[0x17, 2, 0, 0, 0]), Ok(VideoTag::Skip));
        assert_eq!(video_tag(&[0x57, 0]), Ok(VideoTag::Skip));
        assert_eq!(video_tag(&[0x17, 1, 0, 0, 0]), Ok(VideoTag::Skip));
    }

    #[test]
    fn other_video_codecs_and_enhanced_rtmp_are_refused_by_name() {
        let refused = |body: &[u8]| match video_tag(body) {
            Err(FlvError::UnsupportedVideo { codec }) => codec,
            other => panic!("refused, not {other:?}"),
        };
        assert!(refused(&[0x1C, 0, 0, 0, 0]).starts_with("H.265"));
        assert!(refused(&[0x12, 0]).starts_with("Sorenson H.263"));
        assert_eq!(
            refused(&[0x90, b'h', b'v', b'c', b'1']),
            "enhanced RTMP \"hvc1\""
        );
        assert!(matches!(
            video_tag(&[0x17, 1]),
            Err(FlvError::Truncated { kind: "video", .. })
        ));
        assert!(matches!(video_tag(&[]), Err(FlvError::Truncated { .. })));
        assert!(matches!(
            video_track(&[1, 2, 3]),
            Err(FlvError::BadAvcConfig { .. })
        ));
        // An avcC whose SPS is empty (h264-reader would panic on it).
        assert!(matches!(
            video_track(&[1, 1, 1, 0xAA, 0, 1, 0, 0, 0]),
            Err(FlvError::BadAvcConfig { .. })
        ));
    }

    #[test]
    fn aac_tags_give_the_config_and_raw_frames_and_other_formats_are_named() {
        assert_eq!(
            audio_tag(&[0xAF, 0, 0x11, 0x90]),
            Ok(AudioTag::AacConfig(&[0x11, 0x90]))
        );
        assert_eq!(
            audio_tag(&[0xAF, 1, 0x21, 0x10]),
            Ok(AudioTag::AacFrame(&[0x21, 0x10]))
        );
        assert_eq!(audio_tag(&[0x2F, 0xFF]), Ok(AudioTag::Unsupported("MP3")));
        assert_eq!(audio_tag(&[0x72]), Ok(AudioTag::Unsupported("G.711 A-law")));
        assert!(matches!(
            audio_tag(&[0xAF]),
            Err(FlvError::Truncated { .. })
        ));
    }

    #[test]
    fn an_audio_specific_config_gives_the_rate_and_channels() {
        // AAC-LC (2), index 3 (48 kHz), mono: 00010 0011 0001 000.
        let lc = audio_track(&[0x11, 0x88]).expect("usable");
        assert_eq!((lc.sample_rate, lc.channels), (48_000, 1));
        assert_eq!(lc.audio_specific_config, [0x11, 0x88]);
        // AAC-LC, 44.1 kHz (index 4), stereo: 00010 0100 0010 000.
        let stereo = audio_track(&[0x12, 0x10]).expect("usable");
        assert_eq!((stereo.sample_rate, stereo.channels), (44_100, 2));
        // An explicit frequency (index 15) of 1000 Hz, mono.
        let explicit = [0x17, 0x80, 0x01, 0xF4, 0x08];
        let track = audio_track(&explicit).expect("usable");
        assert_eq!((track.sample_rate, track.channels), (1_000, 1));
        // Escaped object type 31 + 6 bits (e.g. 32 + 10 = 42, USAC), 48 kHz, stereo.
        let escaped = [0xF9, 0x46, 0x40];
        let track = audio_track(&escaped).expect("usable");
        assert_eq!((track.sample_rate, track.channels), (48_000, 2));
        assert!(audio_track(&[0x00, 0x00]).is_err());
        assert!(audio_track(&[0x16, 0x88]).is_err(), "index 13 is reserved");
        assert!(audio_track(&[0x11]).is_err());
        // An explicit frequency of 0 Hz: 00010 1111 then 24 zero bits, mono.
        assert!(audio_track(&[0x17, 0x80, 0x00, 0x00, 0x08]).is_err());
    }
}
