//! The tracks of a stream as playback sees them, read from the producer's MKV header.

use std::io::Cursor;

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{BitReader, decode_nal};
use matroska_demuxer::{MatroskaFile, TrackEntry};
use mp4_atom::esds::DecoderSpecific;
use mp4_atom::{Atom, Avcc, Decode, Hvcc};

use super::RemuxError;

/// A track's codec, with its CodecPrivate parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `V_MPEG4/ISO/AVC`; CodecPrivate is an avcC record.
    H264(Avcc),
    /// `V_MPEGH/ISO/HEVC`; CodecPrivate is an hvcC record.
    H265(Hvcc),
    /// `A_AAC`; CodecPrivate is an AudioSpecificConfig.
    Aac(DecoderSpecific),
}

/// One track HLS, DASH and GetClip can play.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaTrack {
    /// The MKV TrackNumber (also the `TrackNumber` of the playback URLs).
    pub track_number: u64,
    pub codec: Codec,
    /// The CodecPrivate bytes exactly as the producer sent them.
    pub codec_private: Vec<u8>,
    /// Video only: the coded picture size (from the SPS for H.264, the MKV header for H.265).
    pub width: u32,
    pub height: u32,
    /// Audio only: the sampling frequency (Hz) and channel count from the MKV header.
    pub sample_rate: u32,
    pub channels: u16,
    /// RFC 6381 codec string: `avc1.64001f`, `hvc1.1.6.L93.B0`, `mp4a.40.2`.
    pub codec_string: String,
    /// The MP4 media timescale: [`super::VIDEO_TIMESCALE`] for video, the sample rate for AAC.
    pub timescale: u32,
    /// The MKV DefaultDuration, nanoseconds, when the producer declared one.
    pub default_duration_ns: Option<u64>,
}

impl MediaTrack {
    pub const fn is_video(&self) -> bool {
        matches!(self.codec, Codec::H264(_) | Codec::H265(_))
    }

    /// The byte length of the NAL unit length prefix in this track's frames (video only).
    pub(crate) fn nal_length_size(&self) -> Option<usize> {
        match &self.codec {
            Codec::H264(avcc) => Some(usize::from(avcc.length_size)),
            Codec::H265(hvcc) => Some(usize::from(hvcc.length_size_minus_one) + 1),
            Codec::Aac(_) => None,
        }
    }
}

/// The playable tracks of a stream, in track-number order.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaTracks {
    pub tracks: Vec<MediaTrack>,
    /// Info's TimecodeScale: nanoseconds per MKV timestamp tick.
    pub timecode_scale_ns: u64,
}

/// The one Cluster element of size zero: appended to a lone header so that the demuxer, which
/// insists on finding a first cluster, opens it.
const EMPTY_CLUSTER: [u8; 5] = [0x1F, 0x43, 0xB6, 0x75, 0x80];

impl MediaTracks {
    /// Reads the tracks from the producer's MKV header (EBML, Segment start, Info, Tracks).
    pub fn parse(header: &[u8]) -> Result<Self, RemuxError> {
        let mut bytes = Vec::with_capacity(header.len() + EMPTY_CLUSTER.len());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&EMPTY_CLUSTER);
        let mkv =
            MatroskaFile::open(Cursor::new(bytes)).map_err(|error| RemuxError::MkvUnreadable {
                reason: error.to_string(),
            })?;
        Self::from_mkv(&mkv)
    }

    pub(crate) fn from_mkv<R: std::io::Read + std::io::Seek>(
        mkv: &MatroskaFile<R>,
    ) -> Result<Self, RemuxError> {
        let timecode_scale_ns = mkv.info().timestamp_scale().get();
        let tracks = mkv
            .tracks()
            .iter()
            .map(parse_track)
            .collect::<Result<Vec<_>, _>>()?;
        check_layout(&tracks)?;
        Ok(Self {
            tracks,
            timecode_scale_ns,
        })
    }

    /// The track with this MKV TrackNumber.
    pub fn track(&self, track_number: u64) -> Result<&MediaTrack, RemuxError> {
        self.tracks
            .iter()
            .find(|track| track.track_number == track_number)
            .ok_or(RemuxError::NoSuchTrack { track_number })
    }

    /// The video track, if any (always track 1).
    pub fn video(&self) -> Option<&MediaTrack> {
        self.tracks.iter().find(|track| track.is_video())
    }

    /// The AAC track, if any (track 2, or track 1 of an audio-only stream).
    pub fn audio(&self) -> Option<&MediaTrack> {
        self.tracks.iter().find(|track| !track.is_video())
    }

    /// The tracks `track` selects: one track, or all of them for `None`.
    pub(crate) fn select(&self, track: Option<u64>) -> Result<Vec<&MediaTrack>, RemuxError> {
        match track {
            Some(track_number) => Ok(vec![self.track(track_number)?]),
            None => Ok(self.tracks.iter().collect()),
        }
    }
}

/// KVS playback: video on track 1, optional AAC on track 2; audio-only puts AAC on track 1.
fn check_layout(tracks: &[MediaTrack]) -> Result<(), RemuxError> {
    let layout_ok = match tracks {
        [only] => only.track_number == 1,
        [video, audio] => {
            video.track_number == 1
                && video.is_video()
                && audio.track_number == 2
                && !audio.is_video()
        }
        _ => false,
    };
    if layout_ok {
        Ok(())
    } else {
        let numbers: Vec<u64> = tracks.iter().map(|track| track.track_number).collect();
        Err(RemuxError::UnsupportedTrackLayout {
            reason: format!(
                "tracks {numbers:?}; expected video on 1 with optional AAC on 2, or AAC on 1"
            ),
        })
    }
}

fn parse_track(entry: &TrackEntry) -> Result<MediaTrack, RemuxError> {
    let track_number = entry.track_number().get();
    let codec_id = entry.codec_id();
    if !matches!(codec_id, "V_MPEG4/ISO/AVC" | "V_MPEGH/ISO/HEVC" | "A_AAC") {
        return Err(RemuxError::UnsupportedCodec {
            track_number,
            codec_id: codec_id.to_owned(),
        });
    }
    let codec_private = entry
        .codec_private()
        .filter(|bytes| !bytes.is_empty())
        .ok_or(RemuxError::MissingCodecPrivate { track_number })?
        .to_vec();
    let invalid = |reason: String| RemuxError::InvalidCodecPrivate {
        track_number,
        reason,
    };
    let default_duration_ns = entry.default_duration().map(|duration| duration.get());
    // Each arm below sets `codec`, `codec_string` and the fields of its kind (video or audio).
    let mut track = MediaTrack {
        track_number,
        codec: Codec::Aac(DecoderSpecific::default()),
        codec_private: codec_private.clone(),
        width: 0,
        height: 0,
        sample_rate: 0,
        channels: 0,
        codec_string: String::new(),
        timescale: super::VIDEO_TIMESCALE,
        default_duration_ns,
    };
    match codec_id {
        "V_MPEG4/ISO/AVC" => {
            let (avcc, width, height) = parse_avcc(&codec_private).map_err(invalid)?;
            track.codec_string = format!(
                "avc1.{:02x}{:02x}{:02x}",
                avcc.avc_profile_indication, avcc.profile_compatibility, avcc.avc_level_indication
            );
            track.width = width;
            track.height = height;
            track.codec = Codec::H264(avcc);
        }
        "V_MPEGH/ISO/HEVC" => {
            let hvcc = Hvcc::decode_body(&mut codec_private.as_slice())
                .map_err(|error| invalid(format!("hvcC: {error}")))?;
            let video = entry
                .video()
                .ok_or_else(|| invalid("an HEVC track without a Video element".to_owned()))?;
            track.width = u32::try_from(video.pixel_width().get())
                .map_err(|_| invalid("PixelWidth over u32".to_owned()))?;
            track.height = u32::try_from(video.pixel_height().get())
                .map_err(|_| invalid("PixelHeight over u32".to_owned()))?;
            track.codec_string = hevc_codec_string(&hvcc);
            track.codec = Codec::H265(hvcc);
        }
        _ => {
            let config = DecoderSpecific::decode(&mut codec_private.as_slice())
                .map_err(|error| invalid(format!("AudioSpecificConfig: {error}")))?;
            if config.profile == 0 {
                return Err(invalid("AudioSpecificConfig has object type 0".to_owned()));
            }
            let audio = entry
                .audio()
                .ok_or_else(|| invalid("an AAC track without an Audio element".to_owned()))?;
            // Sampling frequencies are whole numbers of Hz for every AAC rate.
            let sample_rate = audio.sampling_frequency().round();
            if !(1.0..=f64::from(u32::MAX)).contains(&sample_rate) {
                return Err(invalid(format!("SamplingFrequency {sample_rate}")));
            }
            track.sample_rate = sample_rate as u32;
            track.channels = u16::try_from(audio.channels().get())
                .map_err(|_| invalid("Channels over u16".to_owned()))?;
            track.timescale = track.sample_rate;
            track.codec_string = format!("mp4a.40.{}", config.profile);
            track.codec = Codec::Aac(config);
        }
    }
    Ok(track)
}

/// An avcC record (AVCDecoderConfigurationRecord), with the coded picture size (width, height)
/// its first SPS gives; the error says what is wrong with it.
pub(crate) fn parse_avcc(bytes: &[u8]) -> Result<(Avcc, u32, u32), String> {
    let avcc = Avcc::decode_body(&mut &*bytes).map_err(|error| format!("avcC: {error}"))?;
    let sps_nal = avcc
        .sequence_parameter_sets
        .first()
        .ok_or_else(|| "avcC holds no SPS".to_owned())?;
    // h264-reader's `decode_nal` underflows on a NAL unit under 2 bytes (found by the flv_tags
    // fuzz target); an SPS holds at least its NAL header, profile, constraints and level.
    if sps_nal.len() < 4 {
        return Err(format!("its SPS is {} bytes long", sps_nal.len()));
    }
    let rbsp = decode_nal(sps_nal).map_err(|error| format!("SPS: {error}"))?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp))
        .map_err(|error| format!("SPS: {error:?}"))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|error| format!("SPS dimensions: {error:?}"))?;
    Ok((avcc, width, height))
}

/// ISO/IEC 14496-15 Annex E: `hvc1.<space><profile>.<compat reversed>.<tier><level>.<constraints>`.
fn hevc_codec_string(hvcc: &Hvcc) -> String {
    let space = match hvcc.general_profile_space {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let compatibility = u32::from_be_bytes(hvcc.general_profile_compatibility_flags).reverse_bits();
    let tier = if hvcc.general_tier_flag { 'H' } else { 'L' };
    let mut codec = format!(
        "hvc1.{space}{}.{compatibility:X}.{tier}{}",
        hvcc.general_profile_idc, hvcc.general_level_idc
    );
    let constraints = &hvcc.general_constraint_indicator_flags;
    let kept = constraints
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |last| last + 1);
    for byte in &constraints[..kept] {
        codec.push_str(&format!(".{byte:X}"));
    }
    codec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hevc_codec_string_follows_iso_14496_15_annex_e() {
        let mut hvcc = Hvcc::new();
        hvcc.general_profile_idc = 1;
        hvcc.general_profile_compatibility_flags = [0x60, 0, 0, 0];
        hvcc.general_level_idc = 93;
        hvcc.general_constraint_indicator_flags = [0xB0, 0, 0, 0, 0, 0];
        assert_eq!(hevc_codec_string(&hvcc), "hvc1.1.6.L93.B0");
    }
}
