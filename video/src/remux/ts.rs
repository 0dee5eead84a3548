//! MPEG-2 transport stream (ISO/IEC 13818-1) for `getTSFragment.ts`: one KVS fragment, every
//! track muxed into one program.
//!
//! Layout of a segment, in 188-byte packets:
//!
//! - one PAT (PID 0) naming program 1 at [`PMT_PID`], then one PMT listing the video track
//!   (stream type 0x1B H.264 or 0x24 H.265) on [`VIDEO_PID`] and the AAC track (0x0F, ADTS) on
//!   [`AUDIO_PID`]; the PCR is carried on the video PID, or on the audio PID of an audio-only
//!   stream. HLS requires every segment to open with PAT and PMT, and these are the only ones.
//! - PES packets in decode-time order across tracks (video first on ties). A video PES is one
//!   access unit in Annex B: an access unit delimiter, then, before a keyframe, the parameter
//!   sets of the CodecPrivate (VPS/SPS/PPS or SPS/PPS), then the frame's NAL units with
//!   4-byte start codes (AUDs already in the frame are dropped). Its first TS packet has an
//!   adaptation field with the PCR and, on keyframes, random_access_indicator. An audio PES
//!   holds up to [`AUDIO_FRAMES_PER_PES_MAX`] consecutive AAC frames, each behind a 7-byte
//!   ADTS header built from the AudioSpecificConfig.
//! - the last packet of each PES is padded with adaptation-field stuffing.
//!
//! Timing: PTS are the frames' absolute presentation times (see [`super`]) at 90 kHz, wrapped
//! to 33 bits, so consecutive fragments continue each other exactly as their fMP4 segments do.
//! Our decode times are the sorted presentation times, which put a B-frame's DTS after its
//! PTS; fMP4 says that with a negative composition offset, but TS requires PTS >= DTS. So a
//! video DTS is written [`VIDEO_DTS_SHIFT_TICKS`] earlier, a constant so that DTS stays
//! continuous across fragments, and is capped at the PTS should a stream reorder by more.
//! Audio carries its PTS alone. The PCR runs [`PCR_LEAD_TICKS`] behind the DTS of the PES
//! that carries it, so every access unit arrives before it is due, and it rises across
//! fragment boundaries as the DTS does.
//!
//! Continuity counters: a fragment is requested on its own, by number, so the counters of the
//! fragment a player read before are unknown. [`TsContinuity::restart`] starts every PID at 0
//! and sets discontinuity_indicator on its first packet, which allows the jump (§2.4.3.5);
//! a caller holding the previous segment's [`TsContinuity`] passes it on instead and gets a
//! seamless stream.
//!
//! Crates: TS packets, PAT/PMT sections (with their CRC), PES headers and adaptation fields
//! are encoded by `mpeg2ts` (sile; no dependencies, maintained through 0.6); this module only
//! cuts PES packets into TS packets and builds the elementary streams. The muxers on
//! crates.io do not fit: `xmpegts` depends on the deprecated `failure`, `mpeg-ts-core` calls
//! itself early development, `mpeg-ts` (fishloa) frames packets and PSI only, and
//! `libmpegts`'s `Multiplexer` schedules PAT/PMT/PCR itself and keeps its continuity counters
//! private, where a fragment served on its own must set the discontinuity indicator (above).

use mp4_atom::esds::DecoderSpecific;
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{Bytes, Pat, Pes, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};

use super::frames::{FragmentFrames, Frame};
use super::tracks::{Codec, MediaTrack, MediaTracks};
use super::{RemuxError, ns_to_ticks};

/// The PID of the one program's PMT.
pub const PMT_PID: u16 = 0x1000;
/// The PID of the video track (MKV track 1).
pub const VIDEO_PID: u16 = 0x100;
/// The PID of the AAC track (MKV track 2, or track 1 of an audio-only stream).
pub const AUDIO_PID: u16 = 0x101;
/// The program number in PAT and PMT.
const PROGRAM_NUMBER: u16 = 1;
/// How far the PCR runs behind the DTS of the PES that carries it: 100 ms.
pub const PCR_LEAD_TICKS: u64 = 9_000;
/// How much earlier than our decode time a video DTS is written: 300 ms, more than the
/// reorder delay of B-frame pyramids at common frame rates.
pub const VIDEO_DTS_SHIFT_TICKS: u64 = 27_000;
/// AAC frames bundled into one PES (about 100 ms at 48 kHz), to bound per-frame overhead.
pub const AUDIO_FRAMES_PER_PES_MAX: usize = 5;
/// PTS, DTS and the PCR base are 33-bit counts of 90 kHz ticks.
const TIMESTAMP_MODULUS: u64 = 1 << 33;
/// The TS packet payload size: 188 bytes less the 4-byte header.
const PACKET_PAYLOAD_BYTES: usize = TsPacket::SIZE - 4;
/// The PES header before the optional fields: start code, stream_id, PES_packet_length.
const PES_FIXED_HEADER_BYTES: usize = 6;
/// The optional PES header without PTS/DTS: two flag bytes and PES_header_data_length.
const PES_FLAGS_BYTES: usize = 3;
/// One PTS or DTS field.
const PES_TIMESTAMP_BYTES: usize = 5;
/// An adaptation field with flags only (length and flag bytes), and the PCR it may add.
const ADAPTATION_FLAGS_BYTES: usize = 2;
const ADAPTATION_PCR_BYTES: usize = 6;
/// The ADTS header without CRC (protection_absent = 1).
const ADTS_HEADER_BYTES: usize = 7;
/// The largest ADTS frame: frame_length is 13 bits.
const ADTS_FRAME_BYTES_MAX: usize = (1 << 13) - 1;

const _: () = assert!(PACKET_PAYLOAD_BYTES == Bytes::MAX_SIZE);
const _: () = assert!(AUDIO_FRAMES_PER_PES_MAX * ADTS_FRAME_BYTES_MAX < u16::MAX as usize);

/// The continuity counters of the four PIDs, carried from one segment to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsContinuity {
    pat: u8,
    pmt: u8,
    video: u8,
    audio: u8,
    /// Whether the first packet of each PID must say discontinuity_indicator.
    restart: bool,
}

impl TsContinuity {
    /// For a segment served on its own: counters from 0, each PID's first packet marked as a
    /// discontinuity so that a player coming from another segment accepts the jump.
    pub const fn restart() -> Self {
        Self {
            pat: 0,
            pmt: 0,
            video: 0,
            audio: 0,
            restart: true,
        }
    }
}

/// One PID's writer state within a segment.
struct PidState {
    pid: Pid,
    counter: ContinuityCounter,
    /// Set until this PID's first packet in the segment is written.
    discontinuity: bool,
}

impl PidState {
    fn new(pid: u16, counter: u8, discontinuity: bool) -> Self {
        Self {
            pid: Pid::new(pid).expect("our PIDs are under 0x1FFF"),
            counter: ContinuityCounter::from_u8(counter).expect("a stored counter is 4 bits"),
            discontinuity,
        }
    }

    /// Writes one packet with this PID's next counter. An adaptation field is added for the
    /// discontinuity flag when this is the PID's first packet in a restarted stream.
    fn write(
        &mut self,
        out: &mut Vec<u8>,
        adaptation_field: Option<AdaptationField>,
        payload: TsPayload,
    ) {
        let adaptation_field = if self.discontinuity {
            let mut field = adaptation_field.unwrap_or_else(empty_adaptation_field);
            field.discontinuity_indicator = true;
            Some(field)
        } else {
            adaptation_field
        };
        self.discontinuity = false;
        let packet = TsPacket {
            header: TsHeader {
                transport_error_indicator: false,
                transport_priority: false,
                pid: self.pid,
                transport_scrambling_control: TransportScramblingControl::NotScrambled,
                continuity_counter: self.counter,
            },
            adaptation_field,
            payload: Some(payload),
        };
        let before = out.len();
        TsPacketWriter::new(&mut *out)
            .write_ts_packet(&packet)
            .expect("a packet sized within 188 bytes encodes");
        assert_eq!(out.len() - before, TsPacket::SIZE);
        // Every packet written here carries a payload, so each advances the counter.
        self.counter.increment();
    }
}

fn empty_adaptation_field() -> AdaptationField {
    AdaptationField {
        discontinuity_indicator: false,
        random_access_indicator: false,
        es_priority_indicator: false,
        pcr: None,
        opcr: None,
        splice_countdown: None,
        transport_private_data: Vec::new(),
        extension: None,
    }
}

/// The adaptation field's size in the packet (length byte included), as the writer lays it out.
fn adaptation_field_bytes(field: Option<&AdaptationField>) -> usize {
    field.map_or(0, |field| {
        ADAPTATION_FLAGS_BYTES
            + if field.pcr.is_some() {
                ADAPTATION_PCR_BYTES
            } else {
                0
            }
    })
}

/// One elementary stream of the program.
struct Stream<'a> {
    track: &'a MediaTrack,
    frames: &'a [Frame],
    state: PidState,
    stream_type: StreamType,
    stream_id: StreamId,
}

/// The transport stream of one fragment: all tracks of `frames`, muxed.
///
/// `continuity` gives the counters to start from and receives those to continue with; pass
/// [`TsContinuity::restart`] for a segment served on its own.
pub fn ts_segment(
    tracks: &MediaTracks,
    frames: &FragmentFrames,
    continuity: &mut TsContinuity,
) -> Result<Vec<u8>, RemuxError> {
    let restart = continuity.restart;
    let mut streams: Vec<Stream<'_>> = Vec::with_capacity(tracks.tracks.len());
    for track in &tracks.tracks {
        let (pid, counter, stream_type, stream_id) = match &track.codec {
            Codec::H264(_) => (VIDEO_PID, continuity.video, StreamType::H264, 0xE0),
            Codec::H265(_) => (VIDEO_PID, continuity.video, StreamType::H265, 0xE0),
            Codec::Aac(config) => {
                adts_header(track, config, 0)?;
                (AUDIO_PID, continuity.audio, StreamType::AdtsAac, 0xC0)
            }
        };
        streams.push(Stream {
            track,
            frames: frames.track(track.track_number),
            state: PidState::new(pid, counter, restart),
            stream_type,
            stream_id: StreamId::new(stream_id),
        });
    }
    if streams.iter().all(|stream| stream.frames.is_empty()) {
        return Err(RemuxError::NoFrames);
    }
    // The track layout is checked: at most one video and one audio track.
    assert!(streams.len() <= 2);
    let pcr_index = streams
        .iter()
        .position(|stream| stream.track.is_video())
        .unwrap_or(0);

    let mut out = Vec::new();
    let mut pat = PidState::new(Pid::PAT, continuity.pat, restart);
    let mut pmt = PidState::new(PMT_PID, continuity.pmt, restart);
    write_program_tables(&mut out, &mut pat, &mut pmt, &streams, pcr_index);

    // Merge the tracks by decode time; each stream's frames are already in decode order.
    let mut next = vec![0usize; streams.len()];
    loop {
        let chosen = (0..streams.len())
            .filter(|&index| next[index] < streams[index].frames.len())
            .min_by_key(|&index| {
                let stream = &streams[index];
                (stream.frames[next[index]].dts_ns, !stream.track.is_video())
            });
        let Some(index) = chosen else { break };
        let track = streams[index].track;
        let with_pcr = index == pcr_index;
        let frames = streams[index].frames;
        if let Codec::Aac(config) = &track.codec {
            // Bundle this frame with the audio frames that come before the next video frame.
            let other_next_dts = streams_next_dts(&streams, &next, index);
            let first = next[index];
            let mut last = first + 1;
            while last < frames.len()
                && last - first < AUDIO_FRAMES_PER_PES_MAX
                && other_next_dts.is_none_or(|dts| frames[last].dts_ns < dts)
            {
                last += 1;
            }
            next[index] = last;
            let mut data = Vec::new();
            for frame in &frames[first..last] {
                data.extend_from_slice(&adts_header(track, config, frame.data.len())?);
                data.extend_from_slice(&frame.data);
            }
            write_pes(
                &mut out,
                &mut streams[index],
                &frames[first],
                true,
                with_pcr,
                &data,
            );
        } else {
            let frame = &frames[next[index]];
            next[index] += 1;
            let data = annex_b_access_unit(track, frame)?;
            write_pes(
                &mut out,
                &mut streams[index],
                frame,
                frame.keyframe,
                with_pcr,
                &data,
            );
        }
    }

    let counter_of = |pid: u16| {
        streams
            .iter()
            .find(|stream| stream.state.pid.as_u16() == pid)
            .map(|stream| stream.state.counter.as_u8())
    };
    *continuity = TsContinuity {
        pat: pat.counter.as_u8(),
        pmt: pmt.counter.as_u8(),
        video: counter_of(VIDEO_PID).unwrap_or(continuity.video),
        audio: counter_of(AUDIO_PID).unwrap_or(continuity.audio),
        restart: false,
    };
    assert_eq!(out.len() % TsPacket::SIZE, 0);
    Ok(out)
}

/// The decode time of the next frame of any stream but `except`.
fn streams_next_dts(streams: &[Stream<'_>], next: &[usize], except: usize) -> Option<u64> {
    (0..streams.len())
        .filter(|&index| index != except)
        .filter_map(|index| streams[index].frames.get(next[index]))
        .map(|frame| frame.dts_ns)
        .min()
}

fn write_program_tables(
    out: &mut Vec<u8>,
    pat: &mut PidState,
    pmt: &mut PidState,
    streams: &[Stream<'_>],
    pcr_index: usize,
) {
    let pmt_pid = pmt.pid;
    pat.write(
        out,
        None,
        TsPayload::Pat(Pat {
            transport_stream_id: 1,
            version_number: VersionNumber::new(),
            table: vec![ProgramAssociation {
                program_num: PROGRAM_NUMBER,
                program_map_pid: pmt_pid,
            }],
        }),
    );
    pmt.write(
        out,
        None,
        TsPayload::Pmt(Pmt {
            program_num: PROGRAM_NUMBER,
            pcr_pid: Some(streams[pcr_index].state.pid),
            version_number: VersionNumber::new(),
            program_info: Vec::new(),
            es_info: streams
                .iter()
                .map(|stream| EsInfo {
                    stream_type: stream.stream_type,
                    elementary_pid: stream.state.pid,
                    descriptors: Vec::new(),
                })
                .collect(),
        }),
    );
}

/// A 90 kHz time in ticks, wrapped to 33 bits.
fn timestamp(ticks: u64) -> Timestamp {
    Timestamp::new(ticks % TIMESTAMP_MODULUS).expect("wrapped to 33 bits")
}

/// The PTS and DTS of a PES starting with `frame`, in 90 kHz ticks before the 33-bit wrap.
fn pes_times(frame: &Frame, video: bool) -> (u64, u64) {
    let pts = ns_to_ticks(frame.pts_ns, super::VIDEO_TIMESCALE);
    if !video {
        return (pts, pts);
    }
    let dts =
        ns_to_ticks(frame.dts_ns, super::VIDEO_TIMESCALE).saturating_sub(VIDEO_DTS_SHIFT_TICKS);
    (pts, dts.min(pts))
}

/// Writes one PES packet holding `data`, timed by `frame`, cut into TS packets.
fn write_pes(
    out: &mut Vec<u8>,
    stream: &mut Stream<'_>,
    frame: &Frame,
    random_access: bool,
    with_pcr: bool,
    data: &[u8],
) {
    let (pts_ticks, dts_ticks) = pes_times(frame, stream.track.is_video());
    assert!(dts_ticks <= pts_ticks);
    let pts = timestamp(pts_ticks);
    let dts = timestamp(dts_ticks);
    let header = PesHeader {
        stream_id: stream.stream_id,
        priority: false,
        data_alignment_indicator: true,
        copyright: false,
        original_or_copy: false,
        pts: Some(pts),
        dts: (dts != pts).then_some(dts),
        escr: None,
    };
    let optional_bytes =
        PES_FLAGS_BYTES + PES_TIMESTAMP_BYTES * (1 + usize::from(header.dts.is_some()));
    // PES_packet_length counts the bytes after it; 0 ("unbounded") is allowed for video only.
    let pes_packet_len = u16::try_from(optional_bytes + data.len()).unwrap_or_else(|_| {
        assert!(stream.track.is_video(), "audio PES packets are bounded");
        0
    });

    let mut first_field = empty_adaptation_field();
    first_field.random_access_indicator = random_access;
    if with_pcr {
        let base = (dts_ticks + TIMESTAMP_MODULUS - PCR_LEAD_TICKS) % TIMESTAMP_MODULUS;
        first_field.pcr =
            Some(ClockReference::new(base * 300).expect("a 33-bit base times 300 fits"));
    }
    let first_field =
        (first_field.random_access_indicator || first_field.pcr.is_some()).then_some(first_field);
    let mut first_room = PACKET_PAYLOAD_BYTES
        - PES_FIXED_HEADER_BYTES
        - optional_bytes
        - adaptation_field_bytes(first_field.as_ref());
    if stream.state.discontinuity && first_field.is_none() {
        first_room -= ADAPTATION_FLAGS_BYTES;
    }
    let (head, mut rest) = data.split_at(first_room.min(data.len()));
    stream.state.write(
        out,
        first_field,
        TsPayload::PesStart(Pes {
            header,
            pes_packet_len,
            data: Bytes::new(head).expect("cut to the room left in the packet"),
        }),
    );
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(PACKET_PAYLOAD_BYTES.min(rest.len()));
        stream.state.write(
            out,
            None,
            TsPayload::PesContinuation(Bytes::new(chunk).expect("at most 184 bytes")),
        );
        rest = after;
    }
}

/// A video frame as an Annex B access unit: AUD, parameter sets before a keyframe, its NALs.
fn annex_b_access_unit(track: &MediaTrack, frame: &Frame) -> Result<Vec<u8>, RemuxError> {
    const START_CODE: [u8; 4] = [0, 0, 0, 1];
    let invalid = |reason: String| RemuxError::InvalidFrame {
        track_number: track.track_number,
        reason,
    };
    let length_size = track
        .nal_length_size()
        .expect("annex_b_access_unit is called for video tracks");
    if !(1..=4).contains(&length_size) {
        return Err(invalid(format!("NAL length size {length_size}")));
    }
    let mut out = Vec::with_capacity(frame.data.len() + 64);
    let parameter_sets: Vec<&[u8]> = match &track.codec {
        Codec::H264(avcc) => {
            // nal_unit_type 9 (AUD), primary_pic_type 7 (any slice type) and the stop bit.
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(&[0x09, 0xF0]);
            avcc.sequence_parameter_sets
                .iter()
                .chain(&avcc.picture_parameter_sets)
                .map(Vec::as_slice)
                .collect()
        }
        Codec::H265(hvcc) => {
            // nal_unit_type 35 (AUD), nuh_temporal_id_plus1 1, pic_type 2 (any) and stop bit.
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(&[0x46, 0x01, 0x50]);
            hvcc.arrays
                .iter()
                .flat_map(|array| array.nalus.iter().map(Vec::as_slice))
                .collect()
        }
        Codec::Aac(_) => unreachable!("annex_b_access_unit is called for video tracks"),
    };
    if frame.keyframe {
        for nal in parameter_sets {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
    }
    let mut rest = frame.data.as_slice();
    while !rest.is_empty() {
        let prefix = rest
            .get(..length_size)
            .ok_or_else(|| invalid("a truncated NAL length prefix".to_owned()))?;
        let length = prefix
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        let nal = rest
            .get(length_size..length_size + length)
            .ok_or_else(|| invalid("a NAL unit overruns its frame".to_owned()))?;
        rest = &rest[length_size + length..];
        let is_delimiter = match (&track.codec, nal.first()) {
            (Codec::H264(_), Some(header)) => header & 0x1F == 9,
            (Codec::H265(_), Some(header)) => (header >> 1) & 0x3F == 35,
            _ => false,
        };
        if !nal.is_empty() && !is_delimiter {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
        }
    }
    Ok(out)
}

/// The 7-byte ADTS header (ISO/IEC 13818-7 §6.2, no CRC) of a raw AAC frame of
/// `payload_bytes`. ADTS can carry object types 1 to 4 with an indexed sampling frequency and
/// a channel configuration; anything else is refused as a codec TS cannot carry.
fn adts_header(
    track: &MediaTrack,
    config: &DecoderSpecific,
    payload_bytes: usize,
) -> Result<[u8; ADTS_HEADER_BYTES], RemuxError> {
    if !(1..=4).contains(&config.profile) || config.freq_index > 12 || config.chan_conf == 0 {
        return Err(RemuxError::UnsupportedCodec {
            track_number: track.track_number,
            codec_id: format!(
                "A_AAC (object type {}, frequency index {}, channel configuration {}; ADTS in MPEG-TS cannot carry it)",
                config.profile, config.freq_index, config.chan_conf
            ),
        });
    }
    let frame_length = ADTS_HEADER_BYTES + payload_bytes;
    if frame_length > ADTS_FRAME_BYTES_MAX {
        return Err(RemuxError::InvalidFrame {
            track_number: track.track_number,
            reason: format!("an AAC frame of {payload_bytes} bytes does not fit ADTS"),
        });
    }
    let length = u16::try_from(frame_length).expect("checked under 2^13");
    let profile = config.profile - 1;
    let channels = config.chan_conf & 0x7;
    Ok([
        0xFF,
        // syncword end, MPEG-4, layer 0, protection_absent.
        0xF1,
        (profile << 6) | (config.freq_index << 2) | (channels >> 2),
        ((channels & 0x3) << 6) | ((length >> 11) as u8 & 0x3),
        ((length >> 3) & 0xFF) as u8,
        (((length & 0x7) as u8) << 5) | 0x1F,
        // buffer fullness 0x7FF (variable rate), one raw data block.
        0xFC,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_header_encodes_aac_lc_44100_stereo() {
        let track = MediaTrack {
            track_number: 2,
            codec: Codec::Aac(DecoderSpecific::default()),
            codec_private: vec![0x12, 0x10],
            width: 0,
            height: 0,
            sample_rate: 44_100,
            channels: 2,
            codec_string: "mp4a.40.2".to_owned(),
            timescale: 44_100,
            default_duration_ns: None,
        };
        let config = DecoderSpecific {
            profile: 2,
            freq_index: 4,
            chan_conf: 2,
            ..DecoderSpecific::default()
        };
        // 7 + 371 = 378 bytes; the header ffmpeg's ADTS muxer writes for the same frame.
        assert_eq!(
            adts_header(&track, &config, 371).ok(),
            Some([0xFF, 0xF1, 0x50, 0x80, 0x2F, 0x5F, 0xFC])
        );
        let he_aac = DecoderSpecific {
            profile: 5,
            ..config.clone()
        };
        assert!(matches!(
            adts_header(&track, &he_aac, 371),
            Err(RemuxError::UnsupportedCodec { .. })
        ));
        assert!(matches!(
            adts_header(&track, &config, 8185),
            Err(RemuxError::InvalidFrame { .. })
        ));
    }
}
