//! remux: stored KVS fragments (MKV) turned into what the playback APIs serve.
//!
//! A stored fragment is the producer's MKV header (EBML header, a Segment of unknown size, Info
//! and Tracks, exactly as sent) plus one Cluster of known size ([`StoredFragment`]). From it:
//!
//! - [`MediaTracks::parse`] reads the tracks HLS, DASH and GetClip accept: H.264
//!   (`V_MPEG4/ISO/AVC`, CodecPrivate = avcC) or H.265 (`V_MPEGH/ISO/HEVC`, hvcC) on track 1,
//!   optional AAC (`A_AAC`, CodecPrivate = AudioSpecificConfig) on track 2, or AAC alone on
//!   track 1.
//! - [`fragment_frames`] demuxes the cluster into per-track frames with absolute timestamps.
//! - [`init_segment`] and [`media_segment`] write fragmented MP4 (`ftyp`+`moov`, `moof`+`mdat`)
//!   for `getMP4InitFragment.mp4` and `getMP4MediaFragment.mp4`.
//! - [`ts_segment`] writes one MPEG-TS segment of all tracks for `getTSFragment.ts`
//!   (HLS sessions with ContainerFormat MPEG_TS).
//! - [`clip_mp4`] writes one ordinary MP4 (sample tables in `moov`, `moov` before `mdat`) for
//!   GetClip.
//! - [`playlist`] prints the HLS playlists and the DASH manifest that point at those resources.
//!
//! MKV is demuxed by `matroska-demuxer` and MP4 boxes are written with `mp4-atom`; this module
//! only decides timing and layout. `muxide` was considered and not used: its fragmented muxer
//! keeps `baseMediaDecodeTime` and the `mfhd` sequence number as internal running state starting
//! at zero (a media fragment here is requested on its own, by number), and it rebuilds avcC from
//! one SPS and PPS, hvcC with a fixed 8-bit 4:2:0 layout and the esds from the AAC profile,
//! where we must carry the producer's CodecPrivate through unchanged.
//!
//! Timing. Matroska block timestamps are presentation times (cluster Timecode plus the block's
//! signed offset, in Info's TimecodeScale). A frame's absolute time is the fragment's producer
//! timestamp plus its offset from the cluster Timecode, so consecutive fragments of one stream
//! continue each other whatever timecode type (ABSOLUTE or RELATIVE) the producer used. Decode
//! times are the presentation times sorted (frames are stored in decode order), so B-frames get
//! signed composition offsets (`trun` and `ctts` version 1) and the first frame's decode time
//! equals the fragment start. Video is written at a 90 kHz timescale and AAC at its sample rate.
//!
//! Assumptions about the media: frames are length-prefixed NAL units as avcC/hvcC declare
//! (checked); every fragment starts with a keyframe on the video track (KVS's fragmentation
//! rule, not checked here); CodecPrivate does not change within what one init segment serves.

mod clip;
mod fmp4;
mod frames;
pub mod playlist;
mod tracks;
mod ts;

pub use clip::clip_mp4;
pub use fmp4::{init_segment, media_segment};
pub use frames::{FragmentFrames, Frame, TrackFrames, fragment_frames};
pub(crate) use tracks::parse_avcc;
pub use tracks::{Codec, MediaTrack, MediaTracks};
pub use ts::{TsContinuity, ts_segment};

/// One stored fragment as the readers find it.
#[derive(Clone, Copy, Debug)]
pub struct StoredFragment<'a> {
    /// The producer's MKV header: EBML header, Segment start, Info and Tracks.
    pub header: &'a [u8],
    /// One complete Cluster element of known size.
    pub cluster: &'a [u8],
    /// The fragment's producer timestamp, epoch milliseconds: where its cluster Timecode lands.
    pub producer_ms: u64,
}

/// Why a fragment could not be remuxed.
///
/// One enum serves every remux operation because they fail for the same reasons, and each
/// reason maps to one KVS archived-media error ([`RemuxError::kvs_error_type`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemuxError {
    /// The header or cluster is not MKV that the demuxer can read.
    #[error("the fragment's MKV is unreadable: {reason}")]
    MkvUnreadable { reason: String },
    /// A track's codec is not one HLS, DASH and GetClip play.
    #[error("track {track_number} has codec {codec_id}, which playback does not support")]
    UnsupportedCodec { track_number: u64, codec_id: String },
    /// The tracks are not laid out as KVS playback requires (video on track 1, AAC on 2).
    #[error("unsupported track layout: {reason}")]
    UnsupportedTrackLayout { reason: String },
    /// A track has no CodecPrivate element.
    #[error("track {track_number} has no CodecPrivate")]
    MissingCodecPrivate { track_number: u64 },
    /// A track's CodecPrivate is not a valid avcC, hvcC or AudioSpecificConfig.
    #[error("track {track_number} has invalid CodecPrivate: {reason}")]
    InvalidCodecPrivate { track_number: u64, reason: String },
    /// A frame is not what its track's CodecPrivate declares (or belongs to no track).
    #[error("track {track_number} has an invalid frame: {reason}")]
    InvalidFrame { track_number: u64, reason: String },
    /// The caller asked for a track the stream does not have.
    #[error("the stream has no track {track_number}")]
    NoSuchTrack { track_number: u64 },
    /// There is nothing to write (no frames, or no fragments for a clip).
    #[error("no frames to write")]
    NoFrames,
}

impl RemuxError {
    /// The KVS archived-media `__type` (without the `Exception` suffix) this error answers.
    ///
    /// UnsupportedStreamMediaType: a codec or track layout playback does not support.
    /// MissingCodecPrivateData: no CodecPrivate. InvalidCodecPrivateData: CodecPrivate that
    /// does not parse. InvalidMediaFrame: unreadable MKV or frames that contradict their
    /// CodecPrivate. A missing track is the caller's InvalidArgument; no frames is
    /// ResourceNotFound (AWS's answer when a range holds no fragments).
    pub const fn kvs_error_type(&self) -> &'static str {
        match self {
            Self::UnsupportedCodec { .. } | Self::UnsupportedTrackLayout { .. } => {
                "UnsupportedStreamMediaType"
            }
            Self::MissingCodecPrivate { .. } => "MissingCodecPrivateData",
            Self::InvalidCodecPrivate { .. } => "InvalidCodecPrivateData",
            Self::MkvUnreadable { .. } | Self::InvalidFrame { .. } => "InvalidMediaFrame",
            Self::NoSuchTrack { .. } => "InvalidArgument",
            Self::NoFrames => "ResourceNotFound",
        }
    }
}

/// The timescale of video tracks in the MP4 we write (the MPEG-TS clock, exact for ms input).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Nanoseconds to `timescale` ticks, rounded to nearest. Deterministic in the absolute time, so
/// two fragments rounding their own frames agree on where one ends and the next begins.
fn ns_to_ticks(ns: u64, timescale: u32) -> u64 {
    assert!(timescale <= 1_000_000_000);
    let ticks = (u128::from(ns) * u128::from(timescale) + 500_000_000) / 1_000_000_000;
    u64::try_from(ticks).expect("ticks <= ns because timescale <= 1e9")
}
