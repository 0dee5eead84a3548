//! The incremental MKV (EBML) reader behind PutMedia: bytes go in as they arrive, and out come
//! the stream's header (EBML header, Segment start, Info and Tracks, as the producer sent them)
//! and one event per Cluster — its start as soon as its Timecode is known, then the whole Cluster.
//!
//! Written here rather than taken from webm-iterable: that crate is a blocking iterator over
//! `Read`, and a PutMedia body arrives as async chunks that must never be buffered whole. This
//! reader only frames elements (ID and size varints) and reads the few fields ingest checks
//! (TimecodeScale, track numbers and codecs, cluster Timecode, block track numbers and
//! timecodes). Decoding frames is the remuxer's job.
//!
//! Invariants:
//! - Memory is bounded: at most one Cluster (capped by [`MkvReader::new`]'s limit) plus one
//!   element header is held.
//! - A Cluster of unknown size ends at the next top-level element; the Cluster handed out is
//!   re-framed with its known size, so a stored fragment is a self-describing element.

use std::collections::BTreeSet;

pub const ID_EBML: u32 = 0x1A45_DFA3;
pub const ID_SEGMENT: u32 = 0x1853_8067;
pub const ID_SEEK_HEAD: u32 = 0x114D_9B74;
pub const ID_INFO: u32 = 0x1549_A966;
pub const ID_TRACKS: u32 = 0x1654_AE6B;
pub const ID_CLUSTER: u32 = 0x1F43_B675;
pub const ID_CUES: u32 = 0x1C53_BB6B;
pub const ID_TAGS: u32 = 0x1254_C367;
pub const ID_CHAPTERS: u32 = 0x1043_A770;
pub const ID_ATTACHMENTS: u32 = 0x1941_A469;
pub const ID_VOID: u32 = 0xEC;
pub const ID_CRC32: u32 = 0xBF;
pub const ID_TIMECODE_SCALE: u32 = 0x2A_D7B1;
pub const ID_TRACK_ENTRY: u32 = 0xAE;
pub const ID_TRACK_NUMBER: u32 = 0xD7;
pub const ID_CODEC_ID: u32 = 0x86;
pub const ID_TIMECODE: u32 = 0xE7;
pub const ID_SIMPLE_BLOCK: u32 = 0xA3;
pub const ID_BLOCK_GROUP: u32 = 0xA0;
pub const ID_BLOCK: u32 = 0xA1;
pub const ID_BLOCK_DURATION: u32 = 0x9B;
pub const ID_TAG: u32 = 0x7373;
pub const ID_TARGETS: u32 = 0x63C0;
pub const ID_SIMPLE_TAG: u32 = 0x67C8;
pub const ID_TAG_NAME: u32 = 0x45A3;
pub const ID_TAG_STRING: u32 = 0x4487;

/// The all-ones size of 8 bytes: "unknown size".
pub const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// The Segment children that end a Cluster of unknown size.
fn is_segment_child(id: u32) -> bool {
    matches!(
        id,
        ID_SEEK_HEAD
            | ID_INFO
            | ID_TRACKS
            | ID_CLUSTER
            | ID_CUES
            | ID_TAGS
            | ID_CHAPTERS
            | ID_ATTACHMENTS
    )
}

/// Why a body is not an MKV stream ingest can take; PutMedia answers ErrorId 4006 (invalid MKV
/// data) unless a variant says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MkvError {
    #[error("the stream does not start with an EBML header")]
    NotEbml,
    #[error("an element ID at byte {offset} is not a valid EBML varint")]
    BadId { offset: u64 },
    #[error("an element size at byte {offset} is not a valid EBML varint")]
    BadSize { offset: u64 },
    #[error("element {id:#x} at byte {offset} is not allowed there")]
    Unexpected { id: u32, offset: u64 },
    #[error("a cluster arrived before the Tracks element")]
    ClusterBeforeTracks,
    #[error("the Tracks element declares no track")]
    NoTracks,
    #[error("the Tracks element declares {count} tracks; at most 3 are allowed")]
    TooManyTracks { count: usize },
    #[error("an element of {size} bytes is larger than the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("a block is too short or names no track")]
    BadBlock,
    #[error("the stream ended inside an element")]
    Truncated,
}

impl MkvError {
    /// The PutMedia ErrorId of this problem.
    pub fn error_id(&self) -> u32 {
        match self {
            Self::TooManyTracks { .. } => 4012,
            Self::TooLarge { .. } => 4001,
            _ => 4006,
        }
    }
}

/// One track the header declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub number: u64,
    pub codec_id: String,
}

/// The stream's header as the producer sent it, and what ingest needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// EBML header, a Segment start of unknown size, Info and Tracks: the prefix of every chunk
    /// GetMedia sends back.
    pub bytes: Vec<u8>,
    pub timecode_scale_ns: u64,
    pub tracks: Vec<Track>,
}

/// A complete Cluster and what its blocks say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The Cluster element, with its size known.
    pub bytes: Vec<u8>,
    /// The Cluster's Timecode, in TimecodeScale units.
    pub timecode: u64,
    /// The earliest and latest block time, in TimecodeScale units (absolute).
    pub first_block: i64,
    pub last_block: i64,
    /// The typical gap between blocks of one track (an estimate of the last frame's duration).
    pub frame_gap: i64,
    /// The tracks that had at least one block.
    pub tracks_seen: BTreeSet<u64>,
}

/// What [`MkvReader::push`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MkvEvent {
    Header(Header),
    /// A Cluster began; its Timecode (TimecodeScale units) is known.
    ClusterStarted {
        timecode: u64,
    },
    Cluster(Cluster),
}

/// Reads an EBML varint at the start of `bytes`: `Ok(None)` when more bytes are needed.
/// Returns (value without the marker for sizes / with it for IDs, length, all ones).
fn varint(
    bytes: &[u8],
    keep_marker: bool,
    max_len: usize,
) -> Result<Option<(u64, usize, bool)>, ()> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > max_len {
        return Err(());
    }
    if bytes.len() < len {
        return Ok(None);
    }
    let mut value = u64::from(first);
    if !keep_marker {
        value &= (1u64 << (8 - len)) - 1;
    }
    let mut all_ones = (u64::from(first) & ((1u64 << (8 - len)) - 1)) == (1u64 << (8 - len)) - 1;
    for &b in &bytes[1..len] {
        value = (value << 8) | u64::from(b);
        all_ones &= b == 0xFF;
    }
    Ok(Some((value, len, all_ones)))
}

/// An element header: its ID, its size (`None` when unknown) and its length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ElementHead {
    id: u32,
    size: Option<u64>,
    len: usize,
}

fn element_head(bytes: &[u8], offset: u64) -> Result<Option<ElementHead>, MkvError> {
    let Some((id, id_len, _)) = varint(bytes, true, 4).map_err(|()| MkvError::BadId { offset })?
    else {
        return Ok(None);
    };
    let Some((size, size_len, unknown)) =
        varint(&bytes[id_len..], false, 8).map_err(|()| MkvError::BadSize {
            offset: offset + id_len as u64,
        })?
    else {
        return Ok(None);
    };
    Ok(Some(ElementHead {
        id: u32::try_from(id).map_err(|_| MkvError::BadId { offset })?,
        size: (!unknown).then_some(size),
        len: id_len + size_len,
    }))
}

/// Reads the children of a complete element body, calling `f(id, body)` for each.
fn for_each_child(
    mut body: &[u8],
    mut f: impl FnMut(u32, &[u8]) -> Result<(), MkvError>,
) -> Result<(), MkvError> {
    while !body.is_empty() {
        let head = element_head(body, 0)?.ok_or(MkvError::BadSize { offset: 0 })?;
        let size = head.size.ok_or(MkvError::BadSize { offset: 0 })?;
        let end = head
            .len
            .checked_add(usize::try_from(size).map_err(|_| MkvError::BadSize { offset: 0 })?)
            .filter(|&end| end <= body.len())
            .ok_or(MkvError::BadSize { offset: 0 })?;
        f(head.id, &body[head.len..end])?;
        body = &body[end..];
    }
    Ok(())
}

fn uint(body: &[u8]) -> u64 {
    body.iter()
        .take(8)
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Writes an EBML size varint of 8 bytes.
pub fn size_8(size: u64) -> [u8; 8] {
    let mut out = size.to_be_bytes();
    out[0] = 0x01;
    out
}

/// Writes an element ID (IDs keep their marker bits, so their bytes are the value's).
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// Writes an element with an 8-byte size.
pub fn write_element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    write_id(out, id);
    out.extend_from_slice(&size_8(body.len() as u64));
    out.extend_from_slice(body);
}

/// The block header: track number, relative timecode. `None` when malformed.
fn block_head(block: &[u8]) -> Option<(u64, i16)> {
    let (track, len, _) = varint(block, false, 8).ok()??;
    let tc = block.get(len..len + 2)?;
    Some((track, i16::from_be_bytes([tc[0], tc[1]])))
}

/// Parses the complete Info and Tracks bodies.
fn parse_tracks(body: &[u8]) -> Result<Vec<Track>, MkvError> {
    let mut tracks = Vec::new();
    for_each_child(body, |id, entry| {
        if id == ID_TRACK_ENTRY {
            let mut number = None;
            let mut codec_id = String::new();
            for_each_child(entry, |id, value| {
                match id {
                    ID_TRACK_NUMBER => number = Some(uint(value)),
                    ID_CODEC_ID => {
                        codec_id = String::from_utf8_lossy(value)
                            .trim_end_matches('\0')
                            .to_owned();
                    }
                    _ => {}
                }
                Ok(())
            })?;
            let number = number.filter(|&n| n > 0).ok_or(MkvError::NoTracks)?;
            tracks.push(Track { number, codec_id });
        }
        Ok(())
    })?;
    if tracks.is_empty() {
        return Err(MkvError::NoTracks);
    }
    if tracks.len() > 3 {
        return Err(MkvError::TooManyTracks {
            count: tracks.len(),
        });
    }
    Ok(tracks)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting the EBML header.
    Start,
    /// Inside a Segment (of unknown size or with `end` as the absolute end offset), expecting
    /// its children.
    Segment { end: Option<u64> },
}

/// The cluster being read; its header is at the start of the buffer (a cluster is consumed only
/// when complete).
#[derive(Debug)]
struct OpenCluster {
    /// The length of its element header.
    head_len: usize,
    /// Its end relative to its start, when its size is known.
    end: Option<u64>,
    /// Whether its start was announced.
    started_sent: bool,
    /// How far the children of an unknown-size cluster have been walked (relative).
    scan_at: usize,
}

/// The push reader. Feed it with [`MkvReader::push`] and read the events it returns.
#[derive(Debug)]
pub struct MkvReader {
    /// Bytes not consumed yet; `buffer[0]` is at absolute offset `buffer_offset`.
    buffer: Vec<u8>,
    buffer_offset: u64,
    state: State,
    /// The header being collected (EBML header + Segment start + Info + Tracks).
    header_bytes: Vec<u8>,
    timecode_scale_ns: u64,
    tracks: Option<Vec<Track>>,
    header_sent: bool,
    cluster: Option<OpenCluster>,
    cluster_bytes_max: u64,
    /// Bytes of a skipped element still to come.
    skip: u64,
}

impl MkvReader {
    /// A reader that refuses any Cluster over `cluster_bytes_max` bytes (ErrorId 4001).
    pub fn new(cluster_bytes_max: u64) -> Self {
        Self {
            buffer: Vec::new(),
            buffer_offset: 0,
            state: State::Start,
            header_bytes: Vec::new(),
            timecode_scale_ns: 1_000_000,
            tracks: None,
            header_sent: false,
            cluster: None,
            cluster_bytes_max,
            skip: 0,
        }
    }

    /// The header read so far, once the Tracks element has been read.
    pub fn tracks(&self) -> Option<&[Track]> {
        self.tracks.as_deref()
    }

    /// Bytes held while waiting for the rest of an element.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the reader is between elements (nothing partial is held).
    pub fn at_boundary(&self) -> bool {
        self.buffer.is_empty() && self.cluster.is_none() && self.skip == 0
    }

    /// Takes `bytes` and returns what they completed. After an error the reader is unusable.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<MkvEvent>, MkvError> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while self.step(&mut events)? {}
        Ok(events)
    }

    /// The body ended: a Cluster of unknown size still open ends here. Fails when the body
    /// stopped inside an element.
    pub fn finish(&mut self) -> Result<Vec<MkvEvent>, MkvError> {
        let mut events = Vec::new();
        if let Some(cluster) = &self.cluster
            && cluster.end.is_none()
            && cluster.started_sent
            && cluster.scan_at == self.buffer.len()
        {
            let len = self.buffer.len();
            self.complete_cluster(len, &mut events)?;
        }
        if !self.buffer.is_empty() || self.cluster.is_some() || self.skip > 0 {
            return Err(MkvError::Truncated);
        }
        Ok(events)
    }

    /// Drops `n` bytes from the front of the buffer.
    fn consume(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.buffer_offset += n as u64;
    }

    /// Makes one step of progress if the buffered bytes allow it; `false` when more bytes are
    /// needed.
    fn step(&mut self, events: &mut Vec<MkvEvent>) -> Result<bool, MkvError> {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(self.buffer.len());
            if n == 0 {
                return Ok(false);
            }
            self.consume(n);
            self.skip -= n as u64;
            return Ok(true);
        }
        if self.cluster.is_some() {
            return self.step_cluster(events);
        }
        let offset = self.buffer_offset;
        let Some(head) = element_head(&self.buffer, offset)? else {
            return Ok(false);
        };
        match self.state {
            State::Start => {
                if head.id != ID_EBML {
                    return Err(MkvError::NotEbml);
                }
                let size = head.size.ok_or(MkvError::BadSize { offset })?;
                let total = head.len as u64 + size;
                if total > 4096 {
                    return Err(MkvError::TooLarge {
                        size: total,
                        limit: 4096,
                    });
                }
                let total = total as usize;
                // The Segment's head must follow the EBML header.
                let Some(segment) = element_head(
                    &self.buffer[total.min(self.buffer.len())..],
                    offset + total as u64,
                )?
                else {
                    return Ok(false);
                };
                if segment.id != ID_SEGMENT {
                    return Err(MkvError::Unexpected {
                        id: segment.id,
                        offset: offset + total as u64,
                    });
                }
                self.header_bytes.clear();
                self.header_bytes.extend_from_slice(&self.buffer[..total]);
                write_id(&mut self.header_bytes, ID_SEGMENT);
                self.header_bytes.extend_from_slice(&UNKNOWN_SIZE_8);
                let body_start = offset + (total + segment.len) as u64;
                self.state = State::Segment {
                    end: segment.size.map(|size| body_start + size),
                };
                self.tracks = None;
                self.header_sent = false;
                self.timecode_scale_ns = 1_000_000;
                self.consume(total + segment.len);
                Ok(true)
            }
            State::Segment { end } => {
                if end.is_some_and(|end| offset >= end) || head.id == ID_EBML {
                    // The Segment ended (a new EBML header starts a new one: a producer that
                    // restarted its encoder sends a new header on the same connection).
                    self.state = State::Start;
                    return Ok(true);
                }
                match head.id {
                    ID_CLUSTER => {
                        if self.tracks.is_none() {
                            return Err(MkvError::ClusterBeforeTracks);
                        }
                        if let Some(size) = head.size
                            && size > self.cluster_bytes_max
                        {
                            return Err(MkvError::TooLarge {
                                size,
                                limit: self.cluster_bytes_max,
                            });
                        }
                        self.cluster = Some(OpenCluster {
                            head_len: head.len,
                            end: head.size.map(|size| head.len as u64 + size),
                            started_sent: false,
                            scan_at: head.len,
                        });
                        Ok(true)
                    }
                    ID_INFO | ID_TRACKS => {
                        let size = head.size.ok_or(MkvError::BadSize { offset })?;
                        let total = head.len as u64 + size;
                        let limit = self.cluster_bytes_max.min(1 << 20);
                        if total > limit {
                            return Err(MkvError::TooLarge { size: total, limit });
                        }
                        let total = total as usize;
                        if self.buffer.len() < total {
                            return Ok(false);
                        }
                        let body = &self.buffer[head.len..total];
                        if head.id == ID_INFO {
                            let mut scale = self.timecode_scale_ns;
                            for_each_child(body, |id, value| {
                                if id == ID_TIMECODE_SCALE {
                                    scale = uint(value).max(1);
                                }
                                Ok(())
                            })?;
                            self.timecode_scale_ns = scale;
                        } else {
                            if self.header_sent {
                                // Tracks sent again mid-stream.
                                return Err(MkvError::Unexpected {
                                    id: head.id,
                                    offset,
                                });
                            }
                            self.tracks = Some(parse_tracks(body)?);
                        }
                        if !self.header_sent {
                            self.header_bytes.extend_from_slice(&self.buffer[..total]);
                        }
                        self.consume(total);
                        if head.id == ID_TRACKS {
                            self.header_sent = true;
                            events.push(MkvEvent::Header(Header {
                                bytes: self.header_bytes.clone(),
                                timecode_scale_ns: self.timecode_scale_ns,
                                tracks: self.tracks.clone().unwrap_or_default(),
                            }));
                        }
                        Ok(true)
                    }
                    _ => {
                        // Anything else at this level (SeekHead, Cues, Tags, Void, CRC, …) is
                        // skipped as it arrives, never held; an unknown size is only allowed
                        // for a Cluster.
                        let size = head.size.ok_or(MkvError::Unexpected {
                            id: head.id,
                            offset,
                        })?;
                        self.consume(head.len);
                        self.skip = size;
                        Ok(true)
                    }
                }
            }
        }
    }

    /// Progress inside the open cluster, whose header starts the buffer: announces it once its
    /// Timecode is read, then waits for the whole of a known-size Cluster, or walks the children
    /// of an unknown-size one until the next Segment child.
    fn step_cluster(&mut self, events: &mut Vec<MkvEvent>) -> Result<bool, MkvError> {
        let Some(cluster) = &mut self.cluster else {
            return Ok(false);
        };
        let start = self.buffer_offset;
        if self.buffer.len() as u64 > self.cluster_bytes_max + 16 {
            return Err(MkvError::TooLarge {
                size: self.buffer.len() as u64,
                limit: self.cluster_bytes_max,
            });
        }
        if !cluster.started_sent {
            // The Timecode is the Cluster's first child in every muxer we know; wait for it.
            let mut at = cluster.head_len;
            let Some(mut child) = element_head(&self.buffer[at..], start + at as u64)? else {
                return Ok(false);
            };
            // A CRC-32 or Void may come first (ffmpeg writes a CRC-32 into every cluster).
            while matches!(child.id, ID_CRC32 | ID_VOID) {
                let size = child.size.ok_or(MkvError::BadSize {
                    offset: start + at as u64,
                })?;
                let next = at as u64 + child.len as u64 + size;
                if next > 1 << 20 || (self.buffer.len() as u64) < next {
                    return Ok(false);
                }
                at = next as usize;
                let Some(following) = element_head(&self.buffer[at..], start + at as u64)? else {
                    return Ok(false);
                };
                child = following;
            }
            if child.id != ID_TIMECODE {
                return Err(MkvError::Unexpected {
                    id: child.id,
                    offset: start + at as u64,
                });
            }
            let size = child.size.ok_or(MkvError::BadSize {
                offset: start + at as u64,
            })?;
            if size > 8 {
                return Err(MkvError::BadSize {
                    offset: start + at as u64,
                });
            }
            let value_end = at + child.len + size as usize;
            if self.buffer.len() < value_end {
                return Ok(false);
            }
            let timecode = uint(&self.buffer[at + child.len..value_end]);
            cluster.started_sent = true;
            events.push(MkvEvent::ClusterStarted { timecode });
            return Ok(true);
        }
        let complete_len = match cluster.end {
            Some(end) => {
                if (self.buffer.len() as u64) < end {
                    return Ok(false);
                }
                end as usize
            }
            None => loop {
                // Walk complete children; stop at a Segment child or an EBML header.
                let at = cluster.scan_at;
                let Some(child) = element_head(&self.buffer[at..], start + at as u64)? else {
                    return Ok(false);
                };
                if is_segment_child(child.id) || child.id == ID_EBML {
                    break at;
                }
                let size = child.size.ok_or(MkvError::BadSize {
                    offset: start + at as u64,
                })?;
                let next = at as u64 + child.len as u64 + size;
                if next > self.cluster_bytes_max + 16 {
                    return Err(MkvError::TooLarge {
                        size: next,
                        limit: self.cluster_bytes_max,
                    });
                }
                if (self.buffer.len() as u64) < next {
                    return Ok(false);
                }
                cluster.scan_at = next as usize;
            },
        };
        self.complete_cluster(complete_len, events)?;
        Ok(true)
    }

    /// Hands out the open cluster, which is the buffer's first `len` bytes.
    fn complete_cluster(&mut self, len: usize, events: &mut Vec<MkvEvent>) -> Result<(), MkvError> {
        let Some(cluster) = self.cluster.take() else {
            return Ok(());
        };
        let read = self.read_cluster(&self.buffer[cluster.head_len..len])?;
        self.consume(len);
        events.push(MkvEvent::Cluster(read));
        Ok(())
    }

    /// Reads a complete Cluster body and re-frames it with its known size.
    fn read_cluster(&self, body: &[u8]) -> Result<Cluster, MkvError> {
        let mut timecode = 0u64;
        let mut times: Vec<(u64, i64)> = Vec::new();
        for_each_child(body, |id, value| {
            match id {
                ID_TIMECODE => timecode = uint(value),
                ID_SIMPLE_BLOCK => {
                    let (track, rel) = block_head(value).ok_or(MkvError::BadBlock)?;
                    times.push((track, i64::from(rel)));
                }
                ID_BLOCK_GROUP => {
                    for_each_child(value, |id, value| {
                        if id == ID_BLOCK {
                            let (track, rel) = block_head(value).ok_or(MkvError::BadBlock)?;
                            times.push((track, i64::from(rel)));
                        }
                        Ok(())
                    })?;
                }
                _ => {}
            }
            Ok(())
        })?;
        let base = i64::try_from(timecode).unwrap_or(i64::MAX);
        let first_block = times.iter().map(|t| base + t.1).min().unwrap_or(base);
        let last_block = times.iter().map(|t| base + t.1).max().unwrap_or(base);
        // The typical gap: the median positive step between consecutive blocks of a track.
        let mut gaps = Vec::new();
        let tracks_seen: BTreeSet<u64> = times.iter().map(|t| t.0).collect();
        for &track in &tracks_seen {
            let mut ts: Vec<i64> = times.iter().filter(|t| t.0 == track).map(|t| t.1).collect();
            ts.sort_unstable();
            gaps.extend(ts.windows(2).map(|w| w[1] - w[0]).filter(|&g| g > 0));
        }
        gaps.sort_unstable();
        let frame_gap = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
        let mut bytes = Vec::with_capacity(body.len() + 12);
        write_element(&mut bytes, ID_CLUSTER, body);
        Ok(Cluster {
            bytes,
            timecode,
            first_block,
            last_block,
            frame_gap,
            tracks_seen,
        })
    }
}

/// A `Tags` element holding one SimpleTag per `(name, value)` pair (each in its own Tag, as KVS
/// writes them).
pub fn tags_element(tags: &[(&str, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in tags {
        let mut simple = Vec::new();
        write_element(&mut simple, ID_TAG_NAME, name.as_bytes());
        write_element(&mut simple, ID_TAG_STRING, value.as_bytes());
        let mut tag = Vec::new();
        write_element(&mut tag, ID_TARGETS, &[]);
        write_element(&mut tag, ID_SIMPLE_TAG, &simple);
        write_element(&mut body, ID_TAG, &tag);
    }
    let mut out = Vec::new();
    write_element(&mut out, ID_TAGS, &body);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny MKV: EBML header, unknown-size Segment, Info, Tracks with `tracks`, and clusters
    /// (timecode, blocks as (track, relative time)), each of unknown size when `unknown`.
    pub(crate) fn sample(
        tracks: &[u64],
        clusters: &[(u64, Vec<(u64, i16)>)],
        unknown: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ebml = Vec::new();
        write_element(&mut ebml, 0x4282, b"matroska");
        write_element(&mut out, ID_EBML, &ebml);
        write_id(&mut out, ID_SEGMENT);
        out.extend_from_slice(&UNKNOWN_SIZE_8);
        let mut info = Vec::new();
        write_element(&mut info, ID_TIMECODE_SCALE, &1_000_000u32.to_be_bytes());
        write_element(&mut out, ID_INFO, &info);
        let mut entries = Vec::new();
        for &n in tracks {
            let mut entry = Vec::new();
            write_element(&mut entry, ID_TRACK_NUMBER, &[n as u8]);
            write_element(&mut entry, ID_CODEC_ID, b"V_MPEG4/ISO/AVC");
            write_element(&mut entries, ID_TRACK_ENTRY, &entry);
        }
        write_element(&mut out, ID_TRACKS, &entries);
        for (timecode, blocks) in clusters {
            let mut body = Vec::new();
            write_element(&mut body, ID_TIMECODE, &timecode.to_be_bytes());
            for &(track, rel) in blocks {
                let mut block = vec![0x80 | track as u8];
                block.extend_from_slice(&rel.to_be_bytes());
                block.push(0x80);
                block.extend_from_slice(&[1, 2, 3, 4]);
                write_element(&mut body, ID_SIMPLE_BLOCK, &block);
            }
            if unknown {
                write_id(&mut out, ID_CLUSTER);
                out.extend_from_slice(&UNKNOWN_SIZE_8);
                out.extend_from_slice(&body);
            } else {
                write_element(&mut out, ID_CLUSTER, &body);
            }
        }
        out
    }

    fn read_all(bytes: &[u8], step: usize) -> Result<Vec<MkvEvent>, MkvError> {
        let mut reader = MkvReader::new(50 << 20);
        let mut events = Vec::new();
        for chunk in bytes.chunks(step) {
            events.extend(reader.push(chunk)?);
        }
        // End of body: an unknown-size cluster still open ends with the stream.
        events.extend(reader.finish()?);
        Ok(events)
    }

    #[test]
    fn clusters_come_out_whole_whatever_the_chunking_and_size_encoding() {
        let clusters = vec![
            (0u64, vec![(1u64, 0i16), (1, 40), (2, 10)]),
            (1000, vec![(1, 0), (2, 5), (1, 40)]),
        ];
        for unknown in [false, true] {
            let bytes = sample(&[1, 2], &clusters, unknown);
            for step in [1, 3, 7, 64, bytes.len()] {
                let events = read_all(&bytes, step).expect("valid");
                let kinds: Vec<&str> = events
                    .iter()
                    .map(|e| match e {
                        MkvEvent::Header(_) => "H",
                        MkvEvent::ClusterStarted { .. } => "S",
                        MkvEvent::Cluster(_) => "C",
                    })
                    .collect();
                assert_eq!(
                    kinds,
                    ["H", "S", "C", "S", "C"],
                    "step {step} unknown {unknown}"
                );
                let MkvEvent::Cluster(second) = &events[4] else {
                    panic!("cluster")
                };
                assert_eq!(second.timecode, 1000);
                assert_eq!((second.first_block, second.last_block), (1000, 1040));
                assert_eq!(second.frame_gap, 40);
                assert_eq!(second.tracks_seen.len(), 2);
                // The stored cluster is a complete element of known size.
                let head = element_head(&second.bytes, 0).expect("ok").expect("head");
                assert_eq!(head.id, ID_CLUSTER);
                assert_eq!(
                    head.len as u64 + head.size.expect("known"),
                    second.bytes.len() as u64
                );
            }
        }
    }

    /// A live MKV from ffmpeg (H.264 + AAC, 1 s clusters, CRC-32 elements, unknown sizes) reads
    /// whole at any chunking. ffmpeg is required: the test fails without it.
    #[test]
    fn ffmpeg_live_matroska_reads_as_one_fragment_per_cluster() {
        let dir = std::env::temp_dir().join(format!("sluice-mkv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("live.mkv");
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=25",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                "3",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-pix_fmt",
                "yuv420p",
            ])
            .args([
                "-c:a",
                "aac",
                "-f",
                "matroska",
                "-live",
                "1",
                "-cluster_time_limit",
                "1000",
            ])
            .arg(&path)
            .status()
            .expect("ffmpeg runs (install it: apt-get install ffmpeg)");
        assert!(status.success());
        let bytes = std::fs::read(&path).expect("readable");
        std::fs::remove_dir_all(&dir).expect("cleaned up");
        for step in [1000, 4096, 65536] {
            let events = read_all(&bytes, step).expect("valid");
            let clusters: Vec<&Cluster> = events
                .iter()
                .filter_map(|e| match e {
                    MkvEvent::Cluster(c) => Some(c),
                    _ => None,
                })
                .collect();
            assert!(
                (3..=4).contains(&clusters.len()),
                "{} clusters",
                clusters.len()
            );
            // ffmpeg ends with a cluster of the audio left after the last video frame.
            let (last, full) = clusters.split_last().expect("clusters");
            assert!(full.iter().all(|c| c.tracks_seen.len() == 2));
            assert!(!last.tracks_seen.is_empty());
            let MkvEvent::Header(header) = &events[0] else {
                panic!("the header comes first")
            };
            assert_eq!(header.tracks.len(), 2);
            assert_eq!(header.tracks[0].codec_id, "V_MPEG4/ISO/AVC");
        }
    }

    #[test]
    fn garbage_and_early_clusters_are_refused() {
        assert_eq!(read_all(b"hello world, not mkv", 4), Err(MkvError::NotEbml));
        let mut bytes = sample(&[1], &[], false);
        // A cluster before Tracks: build a stream whose Tracks is replaced by a cluster.
        let cut = bytes
            .windows(4)
            .position(|w| w == [0x16, 0x54, 0xAE, 0x6B])
            .expect("tracks");
        bytes.truncate(cut);
        write_element(&mut bytes, ID_CLUSTER, &[0xE7, 0x81, 0x00]);
        assert_eq!(read_all(&bytes, 5), Err(MkvError::ClusterBeforeTracks));
        let four = sample(&[1, 2, 3, 4], &[], false);
        assert_eq!(
            read_all(&four, 100).map(|_| ()).map_err(|e| e.error_id()),
            Err(4012)
        );
    }

    #[test]
    fn an_oversized_cluster_is_refused_before_it_is_held() {
        let bytes = sample(&[1], &[(0, vec![(1, 0); 100])], true);
        let mut reader = MkvReader::new(200);
        let error = bytes
            .chunks(16)
            .find_map(|chunk| reader.push(chunk).err())
            .expect("refused");
        assert_eq!(error.error_id(), 4001);
        assert!(reader.buffered() < 400);
    }
}
