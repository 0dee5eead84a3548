//! GetClip's MP4: one ordinary (non-fragmented) file, `ftyp`, `moov` with full sample tables,
//! then one `mdat` (progressive download and seeking need `moov` first).
//!
//! Samples are stored one chunk per fragment and track, interleaved in fragment order. Times
//! start at zero at the earliest frame of the clip. Between fragments a frame lasts until the
//! next fragment's first frame, so the estimate for a fragment's last frame is only used at the
//! end of the clip.

use mp4_atom::{
    Co64, Ctts, CttsEntry, Encode, Ftyp, Mdat, Moov, Stbl, Stco, Stsc, StscEntry, Stss, Stsz,
    StszSamples, Stts, SttsEntry,
};

use super::fmp4::{MOVIE_TIMESCALE, TrackDurations, movie_header, sample_size, track_box};
use super::frames::{FragmentFrames, Frame};
use super::tracks::MediaTracks;
use super::{RemuxError, ns_to_ticks};

/// Writes the fragments, in order, as one MP4 with every track of `tracks`.
pub fn clip_mp4(tracks: &MediaTracks, fragments: &[FragmentFrames]) -> Result<Vec<u8>, RemuxError> {
    let origin_ns = fragments
        .iter()
        .flat_map(|fragment| &fragment.tracks)
        .flat_map(|track| &track.frames)
        .map(|frame| frame.dts_ns.min(frame.pts_ns))
        .min()
        .ok_or(RemuxError::NoFrames)?;

    struct Chunk {
        track_index: usize,
        first_sample: usize,
        samples: usize,
    }
    struct Table {
        decode: Vec<u64>,
        end: u64,
        composition: Vec<i64>,
        sizes: Vec<u32>,
        sync: Vec<u32>,
    }
    let mut tables: Vec<Table> = tracks
        .tracks
        .iter()
        .map(|_| Table {
            decode: Vec::new(),
            end: 0,
            composition: Vec::new(),
            sizes: Vec::new(),
            sync: Vec::new(),
        })
        .collect();
    let mut chunks = Vec::new();
    let mut data = Vec::new();
    for fragment in fragments {
        for (track_index, track) in tracks.tracks.iter().enumerate() {
            let frames = fragment.track(track.track_number);
            if frames.is_empty() {
                continue;
            }
            let table = &mut tables[track_index];
            let ticks = |ns: u64| ns_to_ticks(ns - origin_ns, track.timescale);
            chunks.push(Chunk {
                track_index,
                first_sample: table.sizes.len(),
                samples: frames.len(),
            });
            for frame in frames {
                let decode = ticks(frame.dts_ns);
                if table.decode.last().is_some_and(|last| decode < *last) {
                    return Err(overlap(track.track_number, frame));
                }
                table.decode.push(decode);
                table.end = ticks(frame.dts_ns + frame.duration_ns).max(decode);
                table.composition.push(
                    i64::try_from(i128::from(ticks(frame.pts_ns)) - i128::from(decode))
                        .expect("pts - dts fits i64"),
                );
                table.sizes.push(sample_size(frame));
                if frame.keyframe {
                    table.sync.push(sample_number(table.sizes.len()));
                }
                data.extend_from_slice(&frame.data);
            }
        }
    }

    let ftyp = Ftyp {
        major_brand: b"isom".into(),
        minor_version: 512,
        compatible_brands: vec![
            b"isom".into(),
            b"iso2".into(),
            b"avc1".into(),
            b"mp41".into(),
        ],
    };
    let large = data.len() > u32::MAX as usize / 2;
    let build_moov = |chunk_offsets: &[u64]| -> Moov {
        let mut movie_duration = 0;
        let mut traks = Vec::new();
        for (track_index, track) in tracks.tracks.iter().enumerate() {
            let table = &tables[track_index];
            if table.sizes.is_empty() {
                continue;
            }
            let media = table.end - table.decode[0];
            let movie = media * u64::from(MOVIE_TIMESCALE) / u64::from(track.timescale);
            movie_duration = movie_duration.max(movie);
            let offsets: Vec<u64> = chunks
                .iter()
                .zip(chunk_offsets)
                .filter(|(chunk, _)| chunk.track_index == track_index)
                .map(|(_, offset)| *offset)
                .collect();
            let mut stsc: Vec<StscEntry> = Vec::new();
            for (number, chunk) in chunks
                .iter()
                .filter(|chunk| chunk.track_index == track_index)
                .enumerate()
            {
                debug_assert!(chunk.first_sample < table.sizes.len());
                let samples_per_chunk = u32::try_from(chunk.samples).expect("samples fit u32");
                if stsc.last().map(|entry| entry.samples_per_chunk) != Some(samples_per_chunk) {
                    stsc.push(StscEntry {
                        first_chunk: sample_number(number + 1),
                        samples_per_chunk,
                        sample_description_index: 1,
                    });
                }
            }
            let deltas =
                table
                    .decode
                    .windows(2)
                    .map(|pair| pair[1] - pair[0])
                    .chain(std::iter::once(
                        table.end - table.decode[table.decode.len() - 1],
                    ));
            let stbl = Stbl {
                stts: Stts {
                    entries: run_lengths(deltas.map(|delta| {
                        u32::try_from(delta).expect("a frame lasts under 2^32 ticks")
                    }))
                    .map(|(sample_count, sample_delta)| SttsEntry {
                        sample_count,
                        sample_delta,
                    })
                    .collect(),
                },
                ctts: table
                    .composition
                    .iter()
                    .any(|offset| *offset != 0)
                    .then(|| Ctts {
                        entries: run_lengths(table.composition.iter().copied())
                            .map(|(sample_count, sample_offset)| CttsEntry {
                                sample_count,
                                sample_offset,
                            })
                            .collect(),
                    }),
                stss: track.is_video().then(|| Stss {
                    entries: table.sync.clone(),
                }),
                stsc: Stsc { entries: stsc },
                stsz: Stsz {
                    samples: StszSamples::Different {
                        sizes: table.sizes.clone(),
                    },
                },
                stco: (!large).then(|| Stco {
                    entries: offsets
                        .iter()
                        .map(|offset| u32::try_from(*offset).expect("small clip offsets fit u32"))
                        .collect(),
                }),
                co64: large.then(|| Co64 {
                    entries: offsets.clone(),
                }),
                ..Stbl::default()
            };
            traks.push(track_box(track, TrackDurations { movie, media }, stbl));
        }
        let selected: Vec<_> = tracks.tracks.iter().collect();
        Moov {
            mvhd: movie_header(&selected, movie_duration),
            trak: traks,
            ..Moov::default()
        }
    };

    // Chunk offsets depend on the moov's size, which does not depend on their values.
    let relative: Vec<u64> = {
        let mut position = 0u64;
        let mut offsets = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            offsets.push(position);
            let table = &tables[chunk.track_index];
            position += table.sizes[chunk.first_sample..chunk.first_sample + chunk.samples]
                .iter()
                .map(|size| u64::from(*size))
                .sum::<u64>();
        }
        offsets
    };
    let mut head = Vec::new();
    ftyp.encode(&mut head).expect("ftyp encodes");
    build_moov(&relative)
        .encode(&mut head)
        .expect("moov encodes");
    let mdat_header_bytes = if data.len() + 8 > u32::MAX as usize {
        16
    } else {
        8
    };
    let base = (head.len() + mdat_header_bytes) as u64;
    let absolute: Vec<u64> = relative.iter().map(|offset| offset + base).collect();
    let mut out = Vec::with_capacity(head.len() + mdat_header_bytes + data.len());
    ftyp.encode(&mut out).expect("ftyp encodes");
    build_moov(&absolute)
        .encode(&mut out)
        .expect("moov encodes");
    assert_eq!(out.len(), head.len());
    Mdat { data }.encode(&mut out).expect("mdat encodes");
    Ok(out)
}

fn overlap(track_number: u64, frame: &Frame) -> RemuxError {
    RemuxError::InvalidFrame {
        track_number,
        reason: format!(
            "decode time {} ns goes back in time (overlapping fragments in one clip)",
            frame.dts_ns
        ),
    }
}

/// A 1-based sample or chunk number.
fn sample_number(count: usize) -> u32 {
    u32::try_from(count).expect("a clip holds under 2^32 samples")
}

/// Consecutive equal values as (count, value).
fn run_lengths<T: PartialEq + Copy>(
    values: impl Iterator<Item = T>,
) -> impl Iterator<Item = (u32, T)> {
    let mut runs: Vec<(u32, T)> = Vec::new();
    for value in values {
        match runs.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => runs.push((1, value)),
        }
    }
    runs.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lengths_groups_consecutive_equal_values() {
        let runs: Vec<_> = run_lengths([3, 3, 3, 4, 3].into_iter()).collect();
        assert_eq!(runs, vec![(3, 3), (1, 4), (1, 3)]);
        assert_eq!(run_lengths(std::iter::empty::<u32>()).count(), 0);
    }
}
