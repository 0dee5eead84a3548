//! Remux golden tests against real media: ffmpeg encodes a clip into live-style MKV (unknown
//! Segment size, 1 s clusters), a small EBML walker splits it the way PutMedia stores it
//! (producer header of EBML + Segment start + Info + Tracks, then one cluster per fragment), and
//! every fragment goes through `sluice_video::remux`. ffmpeg then decodes our output and the
//! decoded picture hashes must equal the source's, frame for frame.
//!
//! These guard against the remuxer silently corrupting media: wrong sample sizes or data
//! offsets, lost or reordered frames, broken codec configuration, timestamps that make players
//! drop or repeat frames, and fragments that do not continue each other. They need ffmpeg and
//! ffprobe on PATH and fail (never skip) without them.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_video::remux::playlist::{
    DashManifestOptions, DiscontinuityMode, HlsContainer, MasterPlaylistOptions,
    MediaPlaylistOptions, PlaybackMode, PlaylistFragment, TimestampSource, dash_manifest,
    hls_master_playlist, hls_media_playlist,
};
use sluice_video::remux::{
    FragmentFrames, MediaTracks, RemuxError, StoredFragment, TsContinuity, clip_mp4,
    fragment_frames, init_segment, media_segment, ts_segment,
};

/// Where the simulated producer started: fragments land at this epoch time plus their cluster
/// Timecode (RELATIVE timecodes).
const PRODUCER_START_MS: u64 = 1_765_000_000_000;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-remux-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn run(program: &str, args: &[&str]) -> String {
    run_in(&std::env::temp_dir(), program, args)
}

fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "{program} must be installed for the remux tests (apt-get install ffmpeg): {error}"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Encodes `seconds` of test pattern and/or tone into live-style MKV with 1 s clusters.
fn encode(dir: &Path, video: Option<&str>, audio: bool, seconds: u32) -> PathBuf {
    let out = dir.join("source.mkv");
    let seconds = seconds.to_string();
    let mut args: Vec<&str> = vec!["-v", "error", "-y"];
    if video.is_some() {
        args.extend(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"]);
    }
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend(["-t", &seconds]);
    match video {
        // B-frames on, so decode and presentation order differ.
        Some("libx264") => args.extend([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-keyint_min",
            "25",
            "-sc_threshold",
            "0",
            "-bf",
            "2",
        ]),
        Some("libx265") => args.extend([
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-x265-params",
            "keyint=25:min-keyint=25:scenecut=0:log-level=error",
        ]),
        Some(other) => panic!("no recipe for {other}"),
        None => {}
    }
    if audio {
        args.extend(["-c:a", "aac", "-b:a", "64k"]);
    }
    args.extend([
        "-f",
        "matroska",
        "-live",
        "1",
        "-cluster_time_limit",
        "1000",
    ]);
    args.push(path_str(&out));
    run("ffmpeg", &args);
    out
}

/// An EBML element: its ID, where it and its body start, and its body size (None: unknown).
struct Element {
    id: u32,
    start: usize,
    body: usize,
    size: Option<usize>,
}

fn read_element(bytes: &[u8], start: usize) -> Element {
    let vint = |at: usize, strip: bool| -> (u64, usize) {
        let first = bytes[at];
        let length = first.leading_zeros() as usize + 1;
        assert!(length <= 8, "EBML vint at {at}");
        let marker_free = u64::from(first) & ((0x80u64 >> (length - 1)) - 1);
        let mut value = if strip { marker_free } else { u64::from(first) };
        let mut unknown = strip && marker_free == (0x80u64 >> (length - 1)) - 1;
        for byte in &bytes[at + 1..at + length] {
            value = (value << 8) | u64::from(*byte);
            unknown &= *byte == 0xFF;
        }
        (if unknown { u64::MAX } else { value }, length)
    };
    let (id, id_length) = vint(start, false);
    let (size, size_length) = vint(start + id_length, true);
    Element {
        id: u32::try_from(id).expect("IDs fit u32"),
        start,
        body: start + id_length + size_length,
        size: (size != u64::MAX).then(|| usize::try_from(size).expect("size fits usize")),
    }
}

fn read_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte))
}

/// What PutMedia stores for a stream: the producer header and each fragment's cluster with its
/// producer timestamp.
struct Stored {
    header: Vec<u8>,
    clusters: Vec<(Vec<u8>, u64)>,
}

/// Splits an MKV file into the producer header (EBML + Segment start + Info + Tracks; SeekHead,
/// Void and Tags are dropped, as a KVS producer sends none) and its clusters.
fn split(mkv: &[u8]) -> Stored {
    let ebml = read_element(mkv, 0);
    assert_eq!(ebml.id, 0x1A45_DFA3);
    let segment = read_element(mkv, ebml.body + ebml.size.expect("EBML header has a size"));
    assert_eq!(segment.id, 0x1853_8067);
    let mut header = mkv[..segment.start].to_vec();
    // Segment ID and an unknown (8-byte all-ones) size, as a live producer writes it.
    header.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    let mut clusters = Vec::new();
    let mut at = segment.body;
    let mut timecode_scale_ns = 1_000_000u64;
    while at < mkv.len() {
        let element = read_element(mkv, at);
        let size = element
            .size
            .expect("top-level elements of ffmpeg's output have sizes");
        let end = element.body + size;
        match element.id {
            0x1549_A966 => {
                let mut child_at = element.body;
                while child_at < end {
                    let child = read_element(mkv, child_at);
                    let child_end = child.body + child.size.expect("sized");
                    if child.id == 0x2A_D7B1 {
                        timecode_scale_ns = read_uint(&mkv[child.body..child_end]);
                    }
                    child_at = child_end;
                }
                header.extend_from_slice(&mkv[at..end]);
            }
            0x1654_AE6B => header.extend_from_slice(&mkv[at..end]),
            0x1F43_B675 => {
                // The Timecode, after ffmpeg's CRC-32 (0xBF) child.
                let mut timecode = read_element(mkv, element.body);
                while timecode.id != 0xE7 {
                    timecode = read_element(mkv, timecode.body + timecode.size.expect("sized"));
                }
                let ticks =
                    read_uint(&mkv[timecode.body..timecode.body + timecode.size.expect("sized")]);
                let producer_ms = PRODUCER_START_MS + ticks * timecode_scale_ns / 1_000_000;
                clusters.push((mkv[at..end].to_vec(), producer_ms));
            }
            _ => {}
        }
        at = end;
    }
    assert!(clusters.len() >= 3, "the clip spans several fragments");
    Stored { header, clusters }
}

/// The producer header alone, up to the first cluster.
fn header_only(mkv: &[u8]) -> Vec<u8> {
    let first_cluster = mkv
        .windows(4)
        .position(|window| window == [0x1F, 0x43, 0xB6, 0x75])
        .expect("a cluster");
    mkv[..first_cluster].to_vec()
}

struct Remuxed {
    tracks: MediaTracks,
    fragments: Vec<FragmentFrames>,
}

fn remux(stored: &Stored) -> Remuxed {
    let tracks = MediaTracks::parse(&stored.header).expect("tracks parse");
    let fragments = stored
        .clusters
        .iter()
        .map(|(cluster, producer_ms)| {
            fragment_frames(
                &tracks,
                StoredFragment {
                    header: &stored.header,
                    cluster,
                    producer_ms: *producer_ms,
                },
            )
            .expect("fragment demuxes")
        })
        .collect();
    Remuxed { tracks, fragments }
}

/// The per-frame MD5s ffmpeg decodes from `input` for stream `map`.
fn frame_hashes(input: &[&str], map: &str) -> Vec<String> {
    frame_hashes_in(&std::env::temp_dir(), input, map)
}

/// [`frame_hashes`] with ffmpeg started in `dir` (its DASH reader resolves relative segment
/// URLs containing a query string only against a relative manifest path).
fn frame_hashes_in(dir: &Path, input: &[&str], map: &str) -> Vec<String> {
    let mut args = vec!["-v", "error"];
    args.extend_from_slice(input);
    args.extend(["-map", map, "-f", "framemd5", "-"]);
    run_in(dir, "ffmpeg", &args)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            line.rsplit(',')
                .next()
                .expect("md5 column")
                .trim()
                .to_owned()
        })
        .collect()
}

fn source_hashes(source: &Path, map: &str) -> Vec<String> {
    frame_hashes(&["-i", path_str(source)], map)
}

/// Init plus every media segment of one track (`None`: all tracks muxed), as one fMP4 file.
fn write_fmp4(dir: &Path, remuxed: &Remuxed, track: Option<u64>) -> PathBuf {
    let mut file = init_segment(&remuxed.tracks, track).expect("init");
    for (index, fragment) in remuxed.fragments.iter().enumerate() {
        let sequence = u32::try_from(index + 1).expect("few fragments");
        file.extend(media_segment(&remuxed.tracks, fragment, sequence, track).expect("segment"));
    }
    let path = dir.join(format!("track-{track:?}.mp4"));
    std::fs::write(&path, file).expect("write");
    path
}

fn assert_audio_close(source: &[String], remuxed: &[String]) {
    assert!(
        remuxed.len().abs_diff(source.len()) <= 1,
        "audio frames: source {} remuxed {}",
        source.len(),
        remuxed.len()
    );
}

fn playlist_entries(remuxed: &Remuxed) -> Vec<PlaylistFragment> {
    remuxed
        .fragments
        .iter()
        .enumerate()
        .map(|(index, fragment)| PlaylistFragment {
            fragment_number: format!("9134385233318161580092652298301528419479559{index:04}"),
            producer_ms: fragment.start_ns / 1_000_000,
            server_ms: fragment.start_ns / 1_000_000 + 250,
            duration_ms: fragment.duration_ns().div_ceil(1_000_000),
        })
        .collect()
}

const TOKEN: &str = "session-1";

/// Writes the master and media playlists, the DASH manifest and every resource they name,
/// under the names their relative URIs give, so ffmpeg reads the session as a player would.
fn write_session(dir: &Path, remuxed: &Remuxed) {
    let entries = playlist_entries(remuxed);
    let master = hls_master_playlist(
        &remuxed.tracks,
        &MasterPlaylistOptions {
            session_token: TOKEN,
            container: HlsContainer::FragmentedMp4,
            bandwidth_bps: 500_000,
        },
    );
    std::fs::write(dir.join("getHLSMasterPlaylist.m3u8"), master).expect("write");
    for track in &remuxed.tracks.tracks {
        let number = track.track_number;
        let playlist = hls_media_playlist(
            &entries,
            &MediaPlaylistOptions {
                session_token: TOKEN,
                container: HlsContainer::FragmentedMp4,
                track_number: number,
                playback_mode: PlaybackMode::OnDemand,
                timestamp_source: TimestampSource::ProducerTimestamp,
                discontinuity_mode: DiscontinuityMode::Never,
                display_fragment_timestamp: true,
                media_sequence: 0,
            },
        );
        let name = format!("getHLSMediaPlaylist.m3u8?SessionToken={TOKEN}&TrackNumber={number}");
        std::fs::write(dir.join(name), playlist).expect("write");
        let name = format!("getMP4InitFragment.mp4?SessionToken={TOKEN}&TrackNumber={number}");
        let init = init_segment(&remuxed.tracks, Some(number)).expect("init");
        std::fs::write(dir.join(name), init).expect("write");
        for (index, (fragment, entry)) in remuxed.fragments.iter().zip(&entries).enumerate() {
            let sequence = u32::try_from(index + 1).expect("few fragments");
            let name = format!(
                "getMP4MediaFragment.mp4?FragmentNumber={}&SessionToken={TOKEN}&TrackNumber={number}",
                entry.fragment_number
            );
            let segment =
                media_segment(&remuxed.tracks, fragment, sequence, Some(number)).expect("segment");
            std::fs::write(dir.join(name), segment).expect("write");
        }
    }
    let dash = dash_manifest(
        &remuxed.tracks,
        &entries,
        &DashManifestOptions {
            session_token: TOKEN,
            playback_mode: PlaybackMode::OnDemand,
            timestamp_source: TimestampSource::ProducerTimestamp,
            bandwidth_bps: 500_000,
            display_fragment_number: false,
            display_fragment_timestamp: false,
            now_ms: 0,
        },
    );
    std::fs::write(dir.join("getDASHManifest.mpd"), dash).expect("write");
}

fn probe(path: &Path, entries: &str) -> String {
    run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            entries,
            "-of",
            "default=nw=1",
            path_str(path),
        ],
    )
}

#[test]
fn h264_and_aac_remux_to_fmp4_with_identical_pictures_and_all_audio() {
    let dir = scratch_dir("h264-aac");
    let source = encode(&dir, Some("libx264"), true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let video = remuxed.tracks.video().expect("video track");
    assert_eq!(
        (video.track_number, video.width, video.height),
        (1, 320, 240)
    );
    assert!(
        video.codec_string.starts_with("avc1.64"),
        "{}",
        video.codec_string
    );
    let audio = remuxed.tracks.audio().expect("audio track");
    assert_eq!(
        (audio.track_number, audio.codec_string.as_str()),
        (2, "mp4a.40.2")
    );

    let pictures = source_hashes(&source, "0:v");
    assert_eq!(pictures.len(), 100);
    let video_file = write_fmp4(&dir, &remuxed, Some(1));
    assert_eq!(
        frame_hashes(&["-i", path_str(&video_file)], "0:v"),
        pictures
    );

    let sound = source_hashes(&source, "0:a");
    let audio_file = write_fmp4(&dir, &remuxed, Some(2));
    assert_audio_close(&sound, &frame_hashes(&["-i", path_str(&audio_file)], "0:a"));

    // The muxed form (both tracks in one init, one segment per fragment) decodes the same.
    let muxed = write_fmp4(&dir, &remuxed, None);
    assert_eq!(frame_hashes(&["-i", path_str(&muxed)], "0:v"), pictures);
    assert_audio_close(&sound, &frame_hashes(&["-i", path_str(&muxed)], "0:a"));
}

#[test]
fn hls_and_dash_sessions_play_through_ffmpeg_with_identical_pictures() {
    let dir = scratch_dir("hls");
    let source = encode(&dir, Some("libx264"), true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    write_session(&dir, &remuxed);
    let master = dir.join("getHLSMasterPlaylist.m3u8");
    // ffmpeg's HLS reader only opens segment names with known extensions unless told otherwise
    // (over HTTP the query string would not count; on files it is part of the name).
    let hls = [
        "-allowed_extensions",
        "ALL",
        "-allowed_segment_extensions",
        "ALL",
        "-extension_picky",
        "0",
        "-i",
        path_str(&master),
    ];
    let pictures = source_hashes(&source, "0:v");
    let sound = source_hashes(&source, "0:a");
    assert_eq!(frame_hashes(&hls, "0:v"), pictures);
    assert_audio_close(&sound, &frame_hashes(&hls, "0:a"));

    let dash = ["-allowed_extensions", "ALL", "-i", "getDASHManifest.mpd"];
    assert_eq!(frame_hashes_in(&dir, &dash, "0:v"), pictures);
    assert_audio_close(&sound, &frame_hashes_in(&dir, &dash, "0:a"));
}

#[test]
fn h265_video_only_remuxes_with_identical_pictures() {
    let dir = scratch_dir("h265");
    let source = encode(&dir, Some("libx265"), false, 3);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    assert_eq!(remuxed.tracks.tracks.len(), 1);
    let video = remuxed.tracks.video().expect("video");
    assert!(
        video.codec_string.starts_with("hvc1.1."),
        "{}",
        video.codec_string
    );
    assert_eq!((video.width, video.height), (320, 240));
    let pictures = source_hashes(&source, "0:v");
    assert_eq!(pictures.len(), 75);
    let video_file = write_fmp4(&dir, &remuxed, Some(1));
    assert_eq!(
        frame_hashes(&["-i", path_str(&video_file)], "0:v"),
        pictures
    );
}

#[test]
fn audio_only_stream_puts_aac_on_track_1_and_decodes() {
    let dir = scratch_dir("aac");
    let source = encode(&dir, None, true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    assert_eq!(remuxed.tracks.tracks.len(), 1);
    let audio = remuxed.tracks.audio().expect("audio");
    assert_eq!(
        (audio.track_number, audio.sample_rate, audio.channels),
        (1, 48_000, 1)
    );
    let sound = source_hashes(&source, "0:a");
    assert!(sound.len() > 180, "4 s of 48 kHz AAC is ~188 frames");
    let audio_file = write_fmp4(&dir, &remuxed, Some(1));
    assert_audio_close(&sound, &frame_hashes(&["-i", path_str(&audio_file)], "0:a"));
}

#[test]
fn get_clip_is_an_ordinary_mp4_with_every_frame_and_the_right_duration() {
    let dir = scratch_dir("clip");
    let source = encode(&dir, Some("libx264"), true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let clip = clip_mp4(&remuxed.tracks, &remuxed.fragments).expect("clip");
    let clip_path = dir.join("clip.mp4");
    std::fs::write(&clip_path, &clip).expect("write");

    // Non-fragmented: ftyp, moov, mdat at top level and nothing else.
    let mut at = 0;
    let mut boxes = Vec::new();
    while at + 8 <= clip.len() {
        let size = u32::from_be_bytes(clip[at..at + 4].try_into().expect("4 bytes")) as usize;
        boxes.push(String::from_utf8_lossy(&clip[at + 4..at + 8]).into_owned());
        assert!(size >= 8);
        at += size;
    }
    assert_eq!(boxes, ["ftyp", "moov", "mdat"]);

    let streams = probe(&clip_path, "stream=codec_name,nb_read_frames");
    assert!(
        streams.contains("codec_name=h264\nnb_read_frames=100"),
        "{streams}"
    );
    assert!(streams.contains("codec_name=aac"), "{streams}");
    let format = probe(&clip_path, "format=duration");
    let seconds: f64 = format
        .trim()
        .trim_start_matches("duration=")
        .parse()
        .expect("duration");
    assert!((3.95..=4.1).contains(&seconds), "duration {seconds}");
    let clip_input = ["-i", path_str(&clip_path)];
    assert_eq!(
        frame_hashes(&clip_input, "0:v"),
        source_hashes(&source, "0:v")
    );
    assert_audio_close(
        &source_hashes(&source, "0:a"),
        &frame_hashes(&clip_input, "0:a"),
    );
}

#[test]
fn unsupported_codecs_and_bad_codec_private_map_to_kvs_errors() {
    let dir = scratch_dir("errors");
    let vp9 = dir.join("vp9.mkv");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=5",
            "-t",
            "1",
            "-c:v",
            "libvpx-vp9",
            "-f",
            "matroska",
            "-live",
            "1",
            path_str(&vp9),
        ],
    );
    let error = MediaTracks::parse(&header_only(&std::fs::read(&vp9).expect("read")))
        .expect_err("VP9 is not playable");
    assert!(
        matches!(
            error,
            RemuxError::UnsupportedCodec {
                track_number: 1,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.kvs_error_type(), "UnsupportedStreamMediaType");

    let source = encode(&dir, Some("libx264"), false, 1);
    let header = header_only(&std::fs::read(&source).expect("read"));
    let codec_private = header
        .windows(2)
        .position(|pair| pair == [0x63, 0xA2])
        .expect("CodecPrivate in the header");

    // CodecPrivate renamed to an ID the demuxer does not know: the track has none.
    let mut missing = header.clone();
    missing[codec_private..codec_private + 2].copy_from_slice(&[0x63, 0xA3]);
    let error = MediaTracks::parse(&missing).expect_err("no CodecPrivate");
    assert_eq!(error.kvs_error_type(), "MissingCodecPrivateData", "{error}");

    // The SPS inside the avcC zeroed: it no longer parses.
    let mut invalid = header.clone();
    let element = read_element(&invalid, codec_private);
    let end = element.body + element.size.expect("sized");
    invalid[element.body + 8..end].fill(0);
    let error = MediaTracks::parse(&invalid).expect_err("bad avcC");
    assert_eq!(error.kvs_error_type(), "InvalidCodecPrivateData", "{error}");
}

/// Guards the timing of independently requested media fragments: each `tfdt` must come from the
/// producer timestamp (epoch time, not zero), and each fragment must start where the previous
/// one ended, or players stall or skip at every fragment boundary.
#[test]
fn media_fragments_start_at_their_producer_time_and_continue_each_other() {
    use mp4_atom::{Decode, Moof, TrunSamples};

    let dir = scratch_dir("timing");
    let source = encode(&dir, Some("libx264"), true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    for track in [1u64, 2] {
        let timescale = u64::from(remuxed.tracks.track(track).expect("track").timescale);
        let mut previous_end: Option<u64> = None;
        for (index, fragment) in remuxed.fragments.iter().enumerate() {
            let sequence = u32::try_from(index + 1).expect("few fragments");
            let segment =
                media_segment(&remuxed.tracks, fragment, sequence, Some(track)).expect("segment");
            let moof = Moof::decode(&mut segment.as_slice()).expect("moof decodes");
            assert_eq!(moof.mfhd.sequence_number, sequence);
            let [traf] = moof.traf.as_slice() else {
                panic!("one traf per single-track segment")
            };
            assert_eq!(u64::from(traf.tfhd.track_id), track);
            let start = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
            assert!(
                start >= PRODUCER_START_MS * timescale / 1000,
                "epoch-based tfdt"
            );
            let TrunSamples::Explicit(samples) = &traf.trun[0].samples else {
                panic!("per-sample trun")
            };
            let duration: u64 = samples
                .iter()
                .map(|sample| u64::from(sample.duration.expect("duration")))
                .sum();
            if let Some(end) = previous_end {
                // Only the estimated duration of the previous fragment's last frame may be off,
                // and by at most one AAC frame (1024 samples) or a rounding tick of video.
                let tolerance = if track == 1 { 1 } else { 1024 };
                assert!(
                    start.abs_diff(end) <= tolerance,
                    "track {track} fragment {index}: starts at {start}, previous ended at {end}"
                );
            }
            previous_end = Some(start + duration);
        }
    }
}

/// Writes an MPEG_TS session: the master playlist (one variant), the media playlist (no
/// TrackNumber) and one `getTSFragment.ts` per fragment, each muxed on its own with restarted
/// continuity counters as the service serves them. Returns the master playlist's path.
fn write_ts_session(dir: &Path, remuxed: &Remuxed) -> PathBuf {
    let entries = playlist_entries(remuxed);
    let master = hls_master_playlist(
        &remuxed.tracks,
        &MasterPlaylistOptions {
            session_token: TOKEN,
            container: HlsContainer::MpegTs,
            bandwidth_bps: 500_000,
        },
    );
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 1, "{master}");
    assert!(!master.contains("EXT-X-MEDIA:"), "{master}");
    let master_path = dir.join("getHLSMasterPlaylist.m3u8");
    std::fs::write(&master_path, master).expect("write");
    let playlist = hls_media_playlist(
        &entries,
        &MediaPlaylistOptions {
            session_token: TOKEN,
            container: HlsContainer::MpegTs,
            track_number: 1,
            playback_mode: PlaybackMode::OnDemand,
            timestamp_source: TimestampSource::ProducerTimestamp,
            discontinuity_mode: DiscontinuityMode::Never,
            display_fragment_timestamp: true,
            media_sequence: 0,
        },
    );
    assert!(!playlist.contains("EXT-X-MAP"), "{playlist}");
    let name = format!("getHLSMediaPlaylist.m3u8?SessionToken={TOKEN}");
    std::fs::write(dir.join(name), playlist).expect("write");
    for (fragment, entry) in remuxed.fragments.iter().zip(&entries) {
        let segment = ts_segment(&remuxed.tracks, fragment, &mut TsContinuity::restart())
            .expect("ts segment");
        assert_eq!(segment.len() % 188, 0);
        let name = format!(
            "getTSFragment.ts?FragmentNumber={}&SessionToken={TOKEN}",
            entry.fragment_number
        );
        std::fs::write(dir.join(name), segment).expect("write");
    }
    master_path
}

/// The ffmpeg options that open a session written to files (see the fMP4 session test).
fn hls_input(master: &Path) -> [&str; 8] {
    [
        "-allowed_extensions",
        "ALL",
        "-allowed_segment_extensions",
        "ALL",
        "-extension_picky",
        "0",
        "-i",
        path_str(master),
    ]
}

/// Guards getTSFragment.ts: PES packetisation, Annex B conversion with parameter sets before
/// keyframes, ADTS headers, and timestamps that continue across independently muxed fragments.
/// Any lost byte, misplaced parameter set or timestamp jump changes a decoded picture's hash or
/// drops a frame.
#[test]
fn hls_mpeg_ts_session_plays_through_ffmpeg_with_identical_pictures_and_all_audio() {
    let dir = scratch_dir("hls-ts");
    let source = encode(&dir, Some("libx264"), true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let master = write_ts_session(&dir, &remuxed);
    let hls = hls_input(&master);
    let pictures = source_hashes(&source, "0:v");
    assert_eq!(pictures.len(), 100);
    assert_eq!(frame_hashes(&hls, "0:v"), pictures);
    assert_audio_close(&source_hashes(&source, "0:a"), &frame_hashes(&hls, "0:a"));
}

#[test]
fn h265_and_audio_only_mpeg_ts_sessions_decode_like_their_sources() {
    let dir = scratch_dir("hls-ts-h265");
    let source = encode(&dir, Some("libx265"), false, 3);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let master = write_ts_session(&dir, &remuxed);
    let pictures = source_hashes(&source, "0:v");
    assert_eq!(pictures.len(), 75);
    assert_eq!(frame_hashes(&hls_input(&master), "0:v"), pictures);

    let dir = scratch_dir("hls-ts-aac");
    let source = encode(&dir, None, true, 4);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let master = write_ts_session(&dir, &remuxed);
    assert_audio_close(
        &source_hashes(&source, "0:a"),
        &frame_hashes(&hls_input(&master), "0:a"),
    );
}

/// Guards the TS timing and continuity rules: each segment opens with PAT and PMT, its first
/// video PES carries the producer time (90 kHz, 33-bit wrap) and a PCR behind it, and chained
/// continuity counters never jump while restarted ones announce the jump.
#[test]
fn ts_segments_carry_producer_time_and_consistent_continuity_counters() {
    use mpeg2ts::ts::{ReadTsPacket, TsPacketReader, TsPayload};

    let dir = scratch_dir("ts-timing");
    let source = encode(&dir, Some("libx264"), true, 3);
    let remuxed = remux(&split(&std::fs::read(&source).expect("read")));
    let mut chained = TsContinuity::restart();
    let mut last_counter: std::collections::HashMap<u16, u8> = std::collections::HashMap::new();
    for (index, fragment) in remuxed.fragments.iter().enumerate() {
        let segment = ts_segment(&remuxed.tracks, fragment, &mut chained).expect("segment");
        let mut reader = TsPacketReader::new(segment.as_slice());
        let mut first_video_pts = None;
        let mut first_pcr = None;
        let mut packets = 0;
        while let Some(packet) = reader.read_ts_packet().expect("packet parses") {
            let pid = packet.header.pid.as_u16();
            let counter = packet.header.continuity_counter.as_u8();
            let discontinuity = packet
                .adaptation_field
                .as_ref()
                .is_some_and(|field| field.discontinuity_indicator);
            match last_counter.get(&pid) {
                Some(last) => {
                    assert_eq!(counter, (last + 1) % 16, "pid {pid:#x} in segment {index}");
                    assert!(!discontinuity, "only a restart announces a jump");
                }
                None => assert!(discontinuity, "the first packet of a restart says so"),
            }
            last_counter.insert(pid, counter);
            if let Some(TsPayload::PesStart(pes)) = &packet.payload {
                let pts = pes.header.pts.expect("every PES has a PTS").as_u64();
                let dts = pes.header.dts.map_or(pts, |dts| dts.as_u64());
                let ahead = (pts + (1 << 33) - dts) % (1 << 33);
                assert!(
                    ahead < 1 << 32,
                    "PTS {pts} before DTS {dts} in segment {index}"
                );
            }
            match (packets, &packet.payload) {
                (0, Some(TsPayload::Pat(_))) | (1, Some(TsPayload::Pmt(_))) => {}
                (0 | 1, other) => panic!("segment {index} opens with {other:?}"),
                (_, Some(TsPayload::PesStart(pes)))
                    if pid == 0x100 && first_video_pts.is_none() =>
                {
                    first_video_pts = pes.header.pts.map(|pts| pts.as_u64());
                    first_pcr = packet
                        .adaptation_field
                        .as_ref()
                        .and_then(|field| field.pcr)
                        .map(|pcr| pcr.as_u64());
                }
                _ => {}
            }
            packets += 1;
        }
        let first = &fragment.track(1)[0];
        let expected = (first.pts_ns * 9 / 100_000) % (1 << 33);
        assert_eq!(first_video_pts, Some(expected), "segment {index}");
        // The DTS is written 300 ms early (B-frames) and the PCR runs 100 ms behind it.
        let dts = (first.dts_ns * 9 / 100_000 - 27_000).min(first.pts_ns * 9 / 100_000);
        assert_eq!(
            first_pcr,
            Some(((dts - 9_000) % (1 << 33)) * 300),
            "segment {index}"
        );
    }
}
