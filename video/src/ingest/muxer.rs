//! The MKV a KVS producer would send, written from an ingest source's frames (RTSP or RTMP): the
//! stream header
//! (EBML header, a Segment of unknown size, Info, Tracks) and one Cluster per fragment.
//!
//! Layout, as the KVS producer SDK writes it and as `remux::MediaTracks` reads it:
//! - EBML header: EBMLVersion 1, EBMLReadVersion 1, EBMLMaxIDLength 4, EBMLMaxSizeLength 8,
//!   DocType `matroska`, DocTypeVersion 2, DocTypeReadVersion 2.
//! - Segment of unknown size (the 8-byte all-ones size, like every live producer).
//! - Info: TimecodeScale [`TIMECODE_SCALE_NS`] (1 ms), SegmentUID, MuxingApp, WritingApp.
//! - Tracks: track 1 is H.264 video (`V_MPEG4/ISO/AVC`, CodecPrivate = the avcC record,
//!   PixelWidth/PixelHeight); track 2, when the source sends audio, is AAC (`A_AAC`,
//!   CodecPrivate = AudioSpecificConfig, SamplingFrequency, Channels).
//! - Cluster of known size: Timecode (absolute producer time in ms), then one SimpleBlock per
//!   frame in arrival order (video in decode order), each with its signed 16-bit offset from the
//!   Timecode and the keyframe flag (every AAC frame is a keyframe).
//!
//! Written with the EBML helpers of `mkv` rather than a crate: webm-iterable's writer is the
//! maintained one, but it wants every element as a tag of its Matroska schema enum pushed
//! through a `Write`, for the eighteen fixed elements below; a stored fragment must also be
//! byte-compatible with what `mkv::MkvReader` hands PutMedia (a Cluster of known size with
//! 8-byte sizes), which these helpers already write. The tests read the output back with the
//! PutMedia reader and the remuxer's demuxer (matroska-demuxer).

use crate::mkv::{
    ID_CLUSTER, ID_CODEC_ID, ID_EBML, ID_INFO, ID_SEGMENT, ID_SIMPLE_BLOCK, ID_TIMECODE,
    ID_TIMECODE_SCALE, ID_TRACK_ENTRY, ID_TRACK_NUMBER, ID_TRACKS, UNKNOWN_SIZE_8, write_element,
    write_id,
};

const ID_EBML_VERSION: u32 = 0x4286;
const ID_EBML_READ_VERSION: u32 = 0x42F7;
const ID_EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const ID_EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const ID_DOC_TYPE: u32 = 0x4282;
const ID_DOC_TYPE_VERSION: u32 = 0x4287;
const ID_DOC_TYPE_READ_VERSION: u32 = 0x4285;
const ID_SEGMENT_UID: u32 = 0x73A4;
const ID_MUXING_APP: u32 = 0x4D80;
const ID_WRITING_APP: u32 = 0x5741;
const ID_TRACK_UID: u32 = 0x73C5;
const ID_TRACK_TYPE: u32 = 0x83;
const ID_FLAG_LACING: u32 = 0x9C;
const ID_CODEC_PRIVATE: u32 = 0x63A2;
const ID_NAME: u32 = 0x536E;
const ID_VIDEO: u32 = 0xE0;
const ID_PIXEL_WIDTH: u32 = 0xB0;
const ID_PIXEL_HEIGHT: u32 = 0xBA;
const ID_AUDIO: u32 = 0xE1;
const ID_SAMPLING_FREQUENCY: u32 = 0xB5;
const ID_CHANNELS: u32 = 0x9F;

/// Info's TimecodeScale: block and cluster times are milliseconds, as KVS producers write them.
pub const TIMECODE_SCALE_NS: u64 = 1_000_000;

/// The TrackNumber of the video track (KVS playback wants video on track 1).
pub const VIDEO_TRACK: u64 = 1;
/// The TrackNumber of the AAC track, when there is one.
pub const AUDIO_TRACK: u64 = 2;

/// SimpleBlock flags: the keyframe bit.
const FLAG_KEYFRAME: u8 = 0x80;

/// The H.264 track as the source describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoTrack {
    /// The AVCDecoderConfigurationRecord (avcC) built from the camera's SPS and PPS; frames are
    /// NAL units with 4-byte length prefixes, as it declares.
    pub avcc: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// The AAC track as the source describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// The AudioSpecificConfig (the SDP's `config=`, or FLV's AAC sequence header); frames are raw
    /// AAC access units.
    pub audio_specific_config: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u16,
}

/// The tracks of one fragment's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracks {
    pub video: VideoTrack,
    pub audio: Option<AudioTrack>,
}

/// One frame of a cluster: its track, its offset from the cluster Timecode (ms) and its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    pub track_number: u64,
    pub offset_ms: i16,
    pub keyframe: bool,
    pub data: &'a [u8],
}

/// An unsigned integer element body: big-endian, without leading zero bytes (at least one byte).
fn uint_body(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    bytes[skip..].to_vec()
}

fn write_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    write_element(out, id, &uint_body(value));
}

/// A UID derived from what the header describes, so one camera configuration always gets the
/// same SegmentUID (UIDs must only be non-zero and are not compared across streams by KVS).
fn uid(tracks: &Tracks, salt: u64) -> u64 {
    use md5::{Digest as _, Md5};
    let mut hash = Md5::new();
    hash.update(salt.to_be_bytes());
    hash.update(&tracks.video.avcc);
    if let Some(audio) = &tracks.audio {
        hash.update(&audio.audio_specific_config);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first).max(1)
}

/// The stream header every fragment of a session starts with: EBML header, the start of a
/// Segment of unknown size, Info and Tracks (what `mkv::Header::bytes` holds for PutMedia).
pub fn header(tracks: &Tracks) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut ebml = Vec::new();
    write_uint(&mut ebml, ID_EBML_VERSION, 1);
    write_uint(&mut ebml, ID_EBML_READ_VERSION, 1);
    write_uint(&mut ebml, ID_EBML_MAX_ID_LENGTH, 4);
    write_uint(&mut ebml, ID_EBML_MAX_SIZE_LENGTH, 8);
    write_element(&mut ebml, ID_DOC_TYPE, b"matroska");
    write_uint(&mut ebml, ID_DOC_TYPE_VERSION, 2);
    write_uint(&mut ebml, ID_DOC_TYPE_READ_VERSION, 2);
    write_element(&mut out, ID_EBML, &ebml);

    write_id(&mut out, ID_SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE_8);

    let mut info = Vec::new();
    write_uint(&mut info, ID_TIMECODE_SCALE, TIMECODE_SCALE_NS);
    let mut segment_uid = uid(tracks, 1).to_be_bytes().to_vec();
    segment_uid.extend_from_slice(&uid(tracks, 2).to_be_bytes());
    write_element(&mut info, ID_SEGMENT_UID, &segment_uid);
    write_element(&mut info, ID_MUXING_APP, b"sluice");
    write_element(&mut info, ID_WRITING_APP, b"sluice");
    write_element(&mut out, ID_INFO, &info);

    let mut entries = Vec::new();
    let mut video = Vec::new();
    write_uint(&mut video, ID_TRACK_NUMBER, VIDEO_TRACK);
    write_uint(&mut video, ID_TRACK_UID, VIDEO_TRACK);
    write_uint(&mut video, ID_TRACK_TYPE, 1);
    write_uint(&mut video, ID_FLAG_LACING, 0);
    write_element(&mut video, ID_NAME, b"video");
    write_element(&mut video, ID_CODEC_ID, b"V_MPEG4/ISO/AVC");
    write_element(&mut video, ID_CODEC_PRIVATE, &tracks.video.avcc);
    let mut picture = Vec::new();
    write_uint(&mut picture, ID_PIXEL_WIDTH, u64::from(tracks.video.width));
    write_uint(
        &mut picture,
        ID_PIXEL_HEIGHT,
        u64::from(tracks.video.height),
    );
    write_element(&mut video, ID_VIDEO, &picture);
    write_element(&mut entries, ID_TRACK_ENTRY, &video);
    if let Some(track) = &tracks.audio {
        let mut audio = Vec::new();
        write_uint(&mut audio, ID_TRACK_NUMBER, AUDIO_TRACK);
        write_uint(&mut audio, ID_TRACK_UID, AUDIO_TRACK);
        write_uint(&mut audio, ID_TRACK_TYPE, 2);
        write_uint(&mut audio, ID_FLAG_LACING, 0);
        write_element(&mut audio, ID_NAME, b"audio");
        write_element(&mut audio, ID_CODEC_ID, b"A_AAC");
        write_element(&mut audio, ID_CODEC_PRIVATE, &track.audio_specific_config);
        let mut sound = Vec::new();
        write_element(
            &mut sound,
            ID_SAMPLING_FREQUENCY,
            &f64::from(track.sample_rate).to_be_bytes(),
        );
        write_uint(&mut sound, ID_CHANNELS, u64::from(track.channels));
        write_element(&mut audio, ID_AUDIO, &sound);
        write_element(&mut entries, ID_TRACK_ENTRY, &audio);
    }
    write_element(&mut out, ID_TRACKS, &entries);
    out
}

/// One Cluster of known size: `timecode_ms` (absolute producer time) and `blocks` in order.
pub fn cluster<'a>(timecode_ms: u64, blocks: impl IntoIterator<Item = Block<'a>>) -> Vec<u8> {
    let mut body = Vec::new();
    write_uint(&mut body, ID_TIMECODE, timecode_ms);
    for block in blocks {
        assert!(
            (1..=126).contains(&block.track_number),
            "track numbers fit a one-byte varint"
        );
        let mut simple = Vec::with_capacity(4 + block.data.len());
        simple.push(0x80 | block.track_number as u8);
        simple.extend_from_slice(&block.offset_ms.to_be_bytes());
        simple.push(if block.keyframe { FLAG_KEYFRAME } else { 0 });
        simple.extend_from_slice(block.data);
        write_element(&mut body, ID_SIMPLE_BLOCK, &simple);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    write_element(&mut out, ID_CLUSTER, &body);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mkv::{MkvEvent, MkvReader};
    use crate::remux::{Codec, MediaTracks, StoredFragment, fragment_frames};

    /// The SPS and PPS x264 writes for ffmpeg's `testsrc=size=320x240` with `-preset ultrafast
    /// -tune zerolatency` (Constrained Baseline, level 1.3).
    pub(crate) const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
        0x00, 0x00, 0x0c, 0xa3, 0xc5, 0x0a, 0xa8,
    ];
    pub(crate) const PPS: &[u8] = &[0x68, 0xce, 0x0f, 0xc8];

    /// An avcC record holding one SPS and one PPS, 4-byte NAL lengths.
    pub(crate) fn avcc() -> Vec<u8> {
        let mut out = vec![1, SPS[1], SPS[2], SPS[3], 0xFF, 0xE1];
        out.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
        out.extend_from_slice(SPS);
        out.push(1);
        out.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        out.extend_from_slice(PPS);
        out
    }

    pub(crate) fn tracks(audio: bool) -> Tracks {
        Tracks {
            video: VideoTrack {
                avcc: avcc(),
                width: 320,
                height: 240,
            },
            // AAC-LC, 48 kHz, mono.
            audio: audio.then(|| AudioTrack {
                audio_specific_config: vec![0x11, 0x88],
                sample_rate: 48_000,
                channels: 1,
            }),
        }
    }

    /// A length-prefixed NAL unit (an IDR slice when `key`, a non-IDR slice otherwise).
    fn nal(key: bool, fill: u8) -> Vec<u8> {
        let body = [if key { 0x65 } else { 0x41 }, 0x88, fill, fill, fill];
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn the_header_and_clusters_read_back_through_putmedias_reader_and_the_remuxer() {
        let header = header(&tracks(true));
        let video: Vec<Vec<u8>> = (0..3u8).map(|i| nal(i == 0, i)).collect();
        let audio = vec![0x21u8, 0x10, 0x04];
        let blocks = vec![
            Block {
                track_number: VIDEO_TRACK,
                offset_ms: 0,
                keyframe: true,
                data: &video[0],
            },
            Block {
                track_number: AUDIO_TRACK,
                offset_ms: 5,
                keyframe: true,
                data: &audio,
            },
            Block {
                track_number: VIDEO_TRACK,
                offset_ms: 40,
                keyframe: false,
                data: &video[1],
            },
            Block {
                track_number: VIDEO_TRACK,
                offset_ms: 80,
                keyframe: false,
                data: &video[2],
            },
        ];
        let cluster = cluster(1_700_000_000_123, blocks.clone());

        // PutMedia's reader takes it as one header and one fragment with the same bytes.
        let mut reader = MkvReader::new(50 << 20);
        let mut bytes = header.clone();
        bytes.extend_from_slice(&cluster);
        let events = reader.push(&bytes).expect("valid MKV");
        let [
            MkvEvent::Header(read_header),
            MkvEvent::ClusterStarted { timecode },
            MkvEvent::Cluster(read_cluster),
        ] = events.as_slice()
        else {
            panic!("one header and one cluster: {events:?}");
        };
        assert_eq!(read_header.bytes, header);
        assert_eq!(read_header.timecode_scale_ns, TIMECODE_SCALE_NS);
        let codecs: Vec<&str> = read_header
            .tracks
            .iter()
            .map(|t| t.codec_id.as_str())
            .collect();
        assert_eq!(codecs, ["V_MPEG4/ISO/AVC", "A_AAC"]);
        assert_eq!(*timecode, 1_700_000_000_123);
        assert_eq!(read_cluster.bytes, cluster);
        assert_eq!(read_cluster.first_block, 1_700_000_000_123);
        assert_eq!(read_cluster.last_block, 1_700_000_000_203);
        assert_eq!(read_cluster.tracks_seen.len(), 2);

        // The remuxer's demuxer reads the tracks and gives back every frame's bytes and time.
        let media = MediaTracks::parse(&header).expect("playable tracks");
        let video_track = media.video().expect("video");
        assert!(matches!(video_track.codec, Codec::H264(_)));
        assert_eq!((video_track.width, video_track.height), (320, 240));
        assert_eq!(video_track.codec_string, "avc1.42c00d");
        let audio_track = media.audio().expect("audio");
        assert_eq!((audio_track.sample_rate, audio_track.channels), (48_000, 1));
        let frames = fragment_frames(
            &media,
            StoredFragment {
                header: &header,
                cluster: &cluster,
                producer_ms: 1_700_000_000_123,
            },
        )
        .expect("frames");
        let video_frames = frames.track(VIDEO_TRACK);
        assert_eq!(video_frames.len(), 3);
        for (frame, (data, offset)) in video_frames.iter().zip(video.iter().zip([0u64, 40, 80])) {
            assert_eq!(&frame.data, data);
            assert_eq!(frame.pts_ns, (1_700_000_000_123 + offset) * 1_000_000);
        }
        assert!(video_frames[0].keyframe);
        assert!(!video_frames[1].keyframe);
        assert_eq!(frames.track(AUDIO_TRACK).len(), 1);
        assert_eq!(frames.track(AUDIO_TRACK)[0].data, audio);
    }

    #[test]
    fn a_video_only_header_declares_one_track() {
        let media = MediaTracks::parse(&header(&tracks(false))).expect("playable");
        assert_eq!(media.tracks.len(), 1);
        assert!(media.audio().is_none());
    }

    #[test]
    fn unsigned_integers_are_written_in_their_fewest_bytes() {
        assert_eq!(uint_body(0), vec![0]);
        assert_eq!(uint_body(1), vec![1]);
        assert_eq!(uint_body(0x1_0000), vec![1, 0, 0]);
        assert_eq!(uint_body(u64::MAX), vec![0xFF; 8]);
    }
}
