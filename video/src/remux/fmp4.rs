//! Fragmented MP4 (ISO/IEC 14496-12 §8.8) for `getMP4InitFragment.mp4` and
//! `getMP4MediaFragment.mp4`.
//!
//! An init segment is `ftyp` + `moov` with empty sample tables and one `trex` per track. A media
//! segment is one `moof` (`mfhd`, then per track a `traf` with `tfhd` (default-base-is-moof),
//! `tfdt` (version 1, the first frame's absolute decode time) and one `trun` with per-sample
//! duration, size, flags and signed composition offset) followed by one `mdat` holding the
//! tracks' frames in `traf` order. MP4 track IDs are the MKV track numbers, so a player that
//! gets the init of track 2 and the media of track 2 finds the same ID in both.

use mp4_atom::{
    Audio, Avc1, Codec as SampleEntry, Dinf, Dref, Encode, Esds, FixedPoint, Ftyp, Hdlr, Hvc1,
    Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd,
    Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

use mp4_atom::esds::{DecoderConfig, EsDescriptor};

use super::frames::{FragmentFrames, Frame};
use super::tracks::{Codec, MediaTrack, MediaTracks};
use super::{RemuxError, ns_to_ticks};

/// `sample_flags` of a sync sample: sample_depends_on = 2 (depends on no other sample).
pub(super) const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1, sample_is_non_sync_sample.
pub(super) const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// The movie timescale (`mvhd`, `tkhd` durations): milliseconds.
pub(super) const MOVIE_TIMESCALE: u32 = 1000;

/// The initialization segment (`ftyp` + `moov`) of one track, or of all tracks for `None`.
///
/// KVS's HLS and DASH serve one init per track (`TrackNumber`), which is what the playlists in
/// [`super::playlist`] point at; `None` gives a muxed init for players that want one file.
pub fn init_segment(tracks: &MediaTracks, track: Option<u64>) -> Result<Vec<u8>, RemuxError> {
    let selected = tracks.select(track)?;
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"iso5".into(), b"mp41".into()],
    };
    let moov = Moov {
        mvhd: movie_header(&selected, 0),
        mvex: Some(Mvex {
            mehd: None,
            trex: selected
                .iter()
                .map(|track| Trex {
                    track_id: track_id(track),
                    default_sample_description_index: 1,
                    default_sample_duration: 0,
                    default_sample_size: 0,
                    default_sample_flags: 0,
                })
                .collect(),
        }),
        trak: selected
            .iter()
            .map(|track| {
                track_box(
                    track,
                    TrackDurations::default(),
                    Stbl {
                        stco: Some(Stco::default()),
                        ..Stbl::default()
                    },
                )
            })
            .collect(),
        ..Moov::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out).expect("ftyp encodes");
    moov.encode(&mut out)
        .expect("moov from checked tracks encodes");
    Ok(out)
}

/// One media segment (`moof` + `mdat`) holding one fragment's frames of one track, or of every
/// track for `None` (tracks without frames in this fragment are left out).
///
/// `sequence_number` goes to `mfhd`; HLS and DASH players ignore it beyond requiring it to
/// increase, so callers pass the fragment's position in the playlist.
pub fn media_segment(
    tracks: &MediaTracks,
    frames: &FragmentFrames,
    sequence_number: u32,
    track: Option<u64>,
) -> Result<Vec<u8>, RemuxError> {
    let selected: Vec<(&MediaTrack, &[Frame])> = tracks
        .select(track)?
        .into_iter()
        .map(|track| (track, frames.track(track.track_number)))
        .filter(|(_, frames)| !frames.is_empty())
        .collect();
    if selected.is_empty() {
        return Err(RemuxError::NoFrames);
    }

    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: selected
            .iter()
            .map(|(track, frames)| track_fragment(track, frames))
            .collect(),
    };
    // The data offsets depend on the moof's size, which does not depend on their values.
    let mut sized = Vec::new();
    moof.encode(&mut sized)
        .expect("moof from checked frames encodes");
    let mdat_header_bytes = 8;
    let mut data_offset = sized.len() + mdat_header_bytes;
    let mut data = Vec::new();
    for ((_, frames), traf) in selected.iter().zip(&mut moof.traf) {
        let offset = i32::try_from(data_offset).map_err(|_| RemuxError::InvalidFrame {
            track_number: u64::from(traf.tfhd.track_id),
            reason: "a fragment over 2 GiB".to_owned(),
        })?;
        traf.trun[0].data_offset = Some(offset);
        for frame in *frames {
            data.extend_from_slice(&frame.data);
            data_offset += frame.data.len();
        }
    }
    let mut out = Vec::with_capacity(sized.len() + mdat_header_bytes + data.len());
    moof.encode(&mut out)
        .expect("moof from checked frames encodes");
    assert_eq!(out.len(), sized.len());
    Mdat { data }
        .encode(&mut out)
        .expect("mdat under 4 GiB encodes");
    Ok(out)
}

fn track_fragment(track: &MediaTrack, frames: &[Frame]) -> Traf {
    let timescale = track.timescale;
    let entries = frames
        .iter()
        .map(|frame| {
            let timing = SampleTiming::of(frame, timescale);
            TrunEntry {
                duration: Some(timing.duration),
                size: Some(sample_size(frame)),
                flags: Some(if frame.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }),
                cts: Some(timing.composition_offset),
            }
        })
        .collect();
    Traf {
        tfhd: Tfhd {
            track_id: track_id(track),
            base_data_offset: None,
            sample_description_index: None,
            default_sample_duration: None,
            default_sample_size: None,
            default_sample_flags: None,
            duration_is_empty: false,
            default_base_is_moof: true,
        },
        tfdt: Some(Tfdt {
            base_media_decode_time: ns_to_ticks(frames[0].dts_ns, timescale),
        }),
        trun: vec![Trun {
            data_offset: Some(0),
            samples: TrunSamples::Explicit(entries),
        }],
        ..Traf::default()
    }
}

/// A frame's times in its track's timescale. Each instant is rounded from absolute time, so the
/// durations of consecutive frames (and fragments) add up without drift.
pub(super) struct SampleTiming {
    pub duration: u32,
    pub composition_offset: i64,
}

impl SampleTiming {
    pub(super) fn of(frame: &Frame, timescale: u32) -> Self {
        let decode = ns_to_ticks(frame.dts_ns, timescale);
        let end = ns_to_ticks(frame.dts_ns + frame.duration_ns, timescale);
        let presentation = ns_to_ticks(frame.pts_ns, timescale);
        Self {
            duration: u32::try_from(end - decode).expect("a frame lasts under 2^32 ticks"),
            composition_offset: i64::try_from(i128::from(presentation) - i128::from(decode))
                .expect("pts - dts fits i64"),
        }
    }
}

pub(super) fn sample_size(frame: &Frame) -> u32 {
    u32::try_from(frame.data.len()).expect("a frame is under 4 GiB (a fragment is)")
}

pub(super) fn track_id(track: &MediaTrack) -> u32 {
    u32::try_from(track.track_number).expect("track layout checked: track numbers are 1 or 2")
}

pub(super) fn movie_header(tracks: &[&MediaTrack], duration: u64) -> Mvhd {
    Mvhd {
        timescale: MOVIE_TIMESCALE,
        duration,
        rate: 1.into(),
        volume: 1.into(),
        next_track_id: tracks
            .iter()
            .map(|track| track_id(track))
            .max()
            .unwrap_or(0)
            + 1,
        ..Mvhd::default()
    }
}

/// A track's duration in the movie timescale (`tkhd`) and in its own (`mdhd`).
#[derive(Clone, Copy, Default)]
pub(super) struct TrackDurations {
    pub movie: u64,
    pub media: u64,
}

/// A `trak` for `track` around the sample table `stbl` (whose `stsd` is filled in here).
pub(super) fn track_box(track: &MediaTrack, durations: TrackDurations, stbl: Stbl) -> Trak {
    let video = track.is_video();
    let dimension = |pixels: u32| FixedPoint::new(u16::try_from(pixels).unwrap_or(u16::MAX), 0);
    Trak {
        tkhd: Tkhd {
            track_id: track_id(track),
            duration: durations.movie,
            enabled: true,
            in_movie: true,
            alternate_group: u16::from(!video),
            volume: if video { 0.into() } else { 1.into() },
            width: if video {
                dimension(track.width)
            } else {
                0.into()
            },
            height: if video {
                dimension(track.height)
            } else {
                0.into()
            },
            ..Tkhd::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale,
                duration: durations.media,
                language: "und".to_owned(),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler: if video {
                    b"vide".into()
                } else {
                    b"soun".into()
                },
                name: if video {
                    "VideoHandler"
                } else {
                    "SoundHandler"
                }
                .to_owned(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![Url::default().into()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![sample_entry(track)],
                    },
                    ..stbl
                },
                ..Minf::default()
            },
        },
        ..Trak::default()
    }
}

/// The `stsd` entry, carrying the producer's CodecPrivate unchanged (parsed, then re-encoded).
fn sample_entry(track: &MediaTrack) -> SampleEntry {
    let visual = || Visual {
        data_reference_index: 1,
        width: u16::try_from(track.width).unwrap_or(u16::MAX),
        height: u16::try_from(track.height).unwrap_or(u16::MAX),
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    };
    match &track.codec {
        Codec::H264(avcc) => Avc1 {
            visual: visual(),
            avcc: avcc.clone(),
            ..Avc1::default()
        }
        .into(),
        Codec::H265(hvcc) => Hvc1 {
            visual: visual(),
            hvcc: hvcc.clone(),
            ..Hvc1::default()
        }
        .into(),
        Codec::Aac(config) => Mp4a {
            audio: Audio {
                data_reference_index: 1,
                channel_count: track.channels,
                sample_size: 16,
                // 16.16 fixed point; rates above 65535 Hz write 0 and decoders use the ASC.
                sample_rate: FixedPoint::new(u16::try_from(track.sample_rate).unwrap_or(0), 0),
            },
            esds: Esds {
                es_desc: EsDescriptor {
                    es_id: u16::try_from(track.track_number).unwrap_or(0),
                    dec_config: DecoderConfig {
                        // ISO/IEC 14496-1 objectTypeIndication 0x40: MPEG-4 Audio; streamType 5.
                        object_type_indication: 0x40,
                        stream_type: 5,
                        up_stream: 0,
                        dec_specific: Some(config.clone()),
                        ..DecoderConfig::default()
                    },
                    ..EsDescriptor::default()
                },
            },
            btrt: None,
            taic: None,
        }
        .into(),
    }
}
