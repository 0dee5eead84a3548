//! One fragment's frames, demuxed from its MKV cluster, with absolute times.

use std::io::Cursor;

use matroska_demuxer::{Frame as MkvFrame, MatroskaFile};

use super::tracks::{Codec, MediaTrack, MediaTracks};
use super::{RemuxError, StoredFragment};

/// One coded frame (an access unit: length-prefixed NAL units, or one raw AAC frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Presentation time, epoch nanoseconds.
    pub pts_ns: u64,
    /// Decode time, epoch nanoseconds (the presentation times sorted, see the module doc).
    pub dts_ns: u64,
    /// Until the next frame's decode time; the last frame's is estimated.
    pub duration_ns: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// The frames of one track within a fragment, in decode order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFrames {
    pub track_number: u64,
    pub frames: Vec<Frame>,
}

/// The frames of one fragment, one entry per track of the stream (possibly with no frames).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentFrames {
    /// Where the fragment starts: its producer timestamp, epoch nanoseconds.
    pub start_ns: u64,
    pub tracks: Vec<TrackFrames>,
}

impl FragmentFrames {
    /// The frames of one track (empty when the fragment carries none).
    pub fn track(&self, track_number: u64) -> &[Frame] {
        self.tracks
            .iter()
            .find(|track| track.track_number == track_number)
            .map_or(&[], |track| track.frames.as_slice())
    }

    /// The fragment's duration: from its start to the end of its last frame on any track.
    pub fn duration_ns(&self) -> u64 {
        self.tracks
            .iter()
            .filter_map(|track| track.frames.last())
            .map(|last| (last.dts_ns + last.duration_ns).saturating_sub(self.start_ns))
            .max()
            .unwrap_or(0)
    }
}

/// The duration given to the last frame of a track when nothing else tells it: 1/30 s of video
/// or 1024 AAC samples.
fn fallback_duration_ns(track: &MediaTrack) -> u64 {
    match track.codec {
        Codec::H264(_) | Codec::H265(_) => 1_000_000_000 / 30,
        Codec::Aac(_) => 1024 * 1_000_000_000 / u64::from(track.sample_rate.max(1)),
    }
}

/// Demuxes a stored fragment into per-track frames with absolute times.
///
/// The cluster Timecode lands on `producer_ms`; every frame keeps its offset from it. Decode
/// times are the sorted presentation times, durations the gaps between decode times. The last
/// frame of a track lasts its BlockDuration if the producer wrote one, else the track's average
/// frame gap, else its DefaultDuration, else a codec fallback (the next fragment, which would
/// tell, is not at hand).
pub fn fragment_frames(
    tracks: &MediaTracks,
    fragment: StoredFragment<'_>,
) -> Result<FragmentFrames, RemuxError> {
    let mut bytes = Vec::with_capacity(fragment.header.len() + fragment.cluster.len());
    bytes.extend_from_slice(fragment.header);
    bytes.extend_from_slice(fragment.cluster);
    let unreadable = |error: matroska_demuxer::DemuxError| RemuxError::MkvUnreadable {
        reason: error.to_string(),
    };
    let mut mkv = MatroskaFile::open(Cursor::new(bytes)).map_err(unreadable)?;
    let cluster_timecode = cluster_timecode(fragment.cluster)?;
    let scale_ns = tracks.timecode_scale_ns;
    let start_ns =
        fragment
            .producer_ms
            .checked_mul(1_000_000)
            .ok_or_else(|| RemuxError::MkvUnreadable {
                reason: format!(
                    "producer timestamp {} ms out of range",
                    fragment.producer_ms
                ),
            })?;

    struct Raw {
        pts_ns: u64,
        keyframe: bool,
        declared_duration_ns: Option<u64>,
        data: Vec<u8>,
    }
    let mut raw: Vec<Vec<Raw>> = tracks.tracks.iter().map(|_| Vec::new()).collect();
    let mut frame = MkvFrame::default();
    while mkv.next_frame(&mut frame).map_err(unreadable)? {
        let index = tracks
            .tracks
            .iter()
            .position(|track| track.track_number == frame.track)
            .ok_or_else(|| RemuxError::InvalidFrame {
                track_number: frame.track,
                reason: "a block for a track the header does not declare".to_owned(),
            })?;
        let track = &tracks.tracks[index];
        let offset_ticks = i128::from(frame.timestamp) - i128::from(cluster_timecode);
        let pts_ns = i128::from(start_ns) + offset_ticks * i128::from(scale_ns);
        let pts_ns = u64::try_from(pts_ns).map_err(|_| RemuxError::InvalidFrame {
            track_number: track.track_number,
            reason: format!("timestamp {} before the epoch", frame.timestamp),
        })?;
        let keyframe = match track.nal_length_size() {
            Some(length_size) => {
                let nal_types = nal_unit_types(&frame.data, length_size).ok_or_else(|| {
                    RemuxError::InvalidFrame {
                        track_number: track.track_number,
                        reason: format!(
                            "not {length_size}-byte length-prefixed NAL units as CodecPrivate declares"
                        ),
                    }
                })?;
                // SimpleBlocks carry the keyframe flag; BlockGroups leave it to the bitstream.
                frame
                    .is_keyframe
                    .unwrap_or_else(|| is_random_access(&track.codec, &nal_types))
            }
            None => true,
        };
        raw[index].push(Raw {
            pts_ns,
            keyframe,
            declared_duration_ns: frame.duration.map(|ticks| ticks.saturating_mul(scale_ns)),
            data: std::mem::take(&mut frame.data),
        });
        frame.duration = None;
    }

    let mut out = Vec::with_capacity(tracks.tracks.len());
    for (track, raw) in tracks.tracks.iter().zip(raw) {
        let mut decode_times: Vec<u64> = raw.iter().map(|frame| frame.pts_ns).collect();
        decode_times.sort_unstable();
        let gaps = decode_times.len().saturating_sub(1) as u64;
        let average_ns = match (decode_times.first(), decode_times.last()) {
            (Some(first), Some(last)) if gaps > 0 => Some((last - first) / gaps),
            _ => None,
        };
        let last_index = raw.len().saturating_sub(1);
        let frames = raw
            .into_iter()
            .enumerate()
            .map(|(index, frame)| {
                let dts_ns = decode_times[index];
                let duration_ns = match decode_times.get(index + 1) {
                    Some(next) => next - dts_ns,
                    None => {
                        debug_assert_eq!(index, last_index);
                        frame
                            .declared_duration_ns
                            .filter(|duration| *duration > 0)
                            .or(average_ns.filter(|average| *average > 0))
                            .or(track.default_duration_ns)
                            .unwrap_or_else(|| fallback_duration_ns(track))
                    }
                };
                Frame {
                    pts_ns: frame.pts_ns,
                    dts_ns,
                    duration_ns,
                    keyframe: frame.keyframe,
                    data: frame.data,
                }
            })
            .collect();
        out.push(TrackFrames {
            track_number: track.track_number,
            frames,
        });
    }
    Ok(FragmentFrames {
        start_ns,
        tracks: out,
    })
}

/// The Timecode (0xE7) of a Cluster element, which precedes its blocks (after an optional
/// CRC-32). Read here because the demuxer reports frame times only with it already added.
fn cluster_timecode(cluster: &[u8]) -> Result<u64, RemuxError> {
    let unreadable = |reason: &str| RemuxError::MkvUnreadable {
        reason: format!("cluster: {reason}"),
    };
    let (id, rest) = read_vint(cluster, false).ok_or_else(|| unreadable("no element ID"))?;
    if id != 0x1F43_B675 {
        return Err(unreadable("does not start with a Cluster element"));
    }
    let (_size, mut rest) = read_vint(rest, true).ok_or_else(|| unreadable("no size"))?;
    while !rest.is_empty() {
        let (id, after_id) = read_vint(rest, false).ok_or_else(|| unreadable("child ID"))?;
        let (size, body) = read_vint(after_id, true).ok_or_else(|| unreadable("child size"))?;
        let size = usize::try_from(size).map_err(|_| unreadable("child size"))?;
        let value = body
            .get(..size)
            .ok_or_else(|| unreadable("child overruns"))?;
        if id == 0xE7 {
            if size > 8 {
                return Err(unreadable("Timecode over 8 bytes"));
            }
            return Ok(value
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte)));
        }
        rest = &body[size..];
    }
    Err(unreadable("no Timecode"))
}

/// An EBML variable-length integer; `strip_marker` for sizes (IDs keep their marker bit).
/// Returns `u64::MAX` for the all-ones (unknown) size.
fn read_vint(bytes: &[u8], strip_marker: bool) -> Option<(u64, &[u8])> {
    let first = *bytes.first()?;
    let length = first.leading_zeros() as usize + 1;
    if length > 8 || bytes.len() < length {
        return None;
    }
    let mut value = if strip_marker {
        u64::from(first) & ((0x80u64 >> (length - 1)) - 1)
    } else {
        u64::from(first)
    };
    for byte in &bytes[1..length] {
        value = (value << 8) | u64::from(*byte);
    }
    if strip_marker && value == (1u64 << (7 * length)) - 1 {
        value = u64::MAX;
    }
    Some((value, &bytes[length..]))
}

/// The NAL unit header bytes of a length-prefixed access unit, or None if the prefixes do not
/// tile the frame exactly.
fn nal_unit_types(data: &[u8], length_size: usize) -> Option<Vec<u8>> {
    if !(1..=4).contains(&length_size) {
        return None;
    }
    let mut types = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let prefix = rest.get(..length_size)?;
        let length = prefix
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        let nal = rest.get(length_size..length_size + length)?;
        types.push(*nal.first()?);
        rest = &rest[length_size + length..];
    }
    (!types.is_empty()).then_some(types)
}

/// Whether an access unit is a random access point: an IDR slice (H.264) or an IRAP picture
/// (H.265, NAL types 16 to 23).
fn is_random_access(codec: &Codec, nal_headers: &[u8]) -> bool {
    nal_headers.iter().any(|header| match codec {
        Codec::H264(_) => {
            matches!(
                h264_reader::nal::NalHeader::new(*header).map(|header| header.nal_unit_type()),
                Ok(h264_reader::nal::UnitType::SliceLayerWithoutPartitioningIdr)
            )
        }
        Codec::H265(_) => (16..=23).contains(&((header >> 1) & 0x3F)),
        Codec::Aac(_) => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_vint_reads_sizes_ids_and_the_unknown_size() {
        assert_eq!(read_vint(&[0x81], true), Some((1, &[][..])));
        assert_eq!(read_vint(&[0x40, 0x02], true), Some((2, &[][..])));
        assert_eq!(
            read_vint(&[0x1F, 0x43, 0xB6, 0x75], false),
            Some((0x1F43_B675, &[][..]))
        );
        assert_eq!(
            read_vint(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], true).map(|v| v.0),
            Some(u64::MAX)
        );
        assert_eq!(read_vint(&[0x00], true), None);
        assert_eq!(read_vint(&[0x40], true), None);
    }

    #[test]
    fn cluster_timecode_reads_the_first_timecode_child() {
        let cluster = [0x1F, 0x43, 0xB6, 0x75, 0x84, 0xE7, 0x82, 0x03, 0xE8];
        assert_eq!(cluster_timecode(&cluster).ok(), Some(1000));
        let not_cluster = [0x1A, 0x45, 0xDF, 0xA3, 0x80];
        assert!(cluster_timecode(&not_cluster).is_err());
    }

    #[test]
    fn nal_unit_types_rejects_annex_b_and_overruns() {
        assert_eq!(
            nal_unit_types(&[0, 0, 0, 2, 0x65, 0x88], 4),
            Some(vec![0x65])
        );
        assert_eq!(nal_unit_types(&[0, 0, 0, 1, 0x65, 0x88], 4), None);
        assert_eq!(nal_unit_types(&[0, 0, 0, 9, 0x65], 4), None);
        assert_eq!(nal_unit_types(&[], 4), None);
    }
}
