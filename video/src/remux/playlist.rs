//! The text behind the HLS and DASH session URLs: the HLS master playlist
//! (`getHLSMasterPlaylist.m3u8`), the HLS media playlist (`getHLSMediaPlaylist.m3u8`) and the
//! DASH manifest (`getDASHManifest.mpd`). Pure functions: fragments and options in, text out.
//!
//! Every URI is relative to the session URL and carries the session token, as KVS's do:
//! `getMP4InitFragment.mp4?SessionToken=…&TrackNumber=…` and
//! `getMP4MediaFragment.mp4?FragmentNumber=…&SessionToken=…&TrackNumber=…`. The token must be
//! URL-safe (ours are); it is asserted, since a token that is not is a bug of the issuer.
//!
//! Layout for fragmented MP4: one media playlist (and one DASH AdaptationSet) per track, each
//! with its own init segment. With video and audio, the master playlist declares the audio
//! track as an `EXT-X-MEDIA` rendition of the video variant (hls.js and Safari play that; a
//! second `EXT-X-STREAM-INF` for audio alone would be a separate, audio-only variant).
//!
//! Layout for MPEG-TS ([`HlsContainer::MpegTs`]): every track is muxed into each
//! `getTSFragment.ts?FragmentNumber=…&SessionToken=…`, so the master playlist has one variant
//! for all tracks and the one media playlist (no `TrackNumber`) has no `EXT-X-MAP` and only
//! tags of `#EXT-X-VERSION:3`, which older TS-only players require.

use std::fmt::Write as _;

use super::tracks::{MediaTrack, MediaTracks};

/// A fragment as a playlist lists it (from the fragment index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaylistFragment {
    pub fragment_number: String,
    pub producer_ms: u64,
    pub server_ms: u64,
    pub duration_ms: u64,
}

/// HLSFragmentSelector / DASHFragmentSelector FragmentSelectorType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampSource {
    ProducerTimestamp,
    ServerTimestamp,
}

/// PlaybackMode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaybackMode {
    Live,
    LiveReplay,
    OnDemand,
}

/// HLS DiscontinuityMode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscontinuityMode {
    /// `#EXT-X-DISCONTINUITY` before every fragment but the first.
    Always,
    Never,
    /// Before a fragment that starts more than [`DISCONTINUITY_GAP_MS`] away from where the
    /// previous one ended (a gap or an overlap).
    OnDiscontinuity,
}

/// The gap or overlap beyond which ON_DISCONTINUITY marks a discontinuity.
pub const DISCONTINUITY_GAP_MS: u64 = 50;

/// ContainerFormat of an HLS session: what the media playlists' segments are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlsContainer {
    /// FRAGMENTED_MP4: per-track `getMP4MediaFragment.mp4` behind a `getMP4InitFragment.mp4`.
    FragmentedMp4,
    /// MPEG_TS: `getTSFragment.ts` with every track muxed in.
    MpegTs,
}

/// What the master playlist needs besides the tracks.
#[derive(Clone, Copy, Debug)]
pub struct MasterPlaylistOptions<'a> {
    pub session_token: &'a str,
    pub container: HlsContainer,
    /// Peak bit rate of the variant (all tracks), for BANDWIDTH.
    pub bandwidth_bps: u64,
}

/// What a media playlist needs besides its fragments.
#[derive(Clone, Copy, Debug)]
pub struct MediaPlaylistOptions<'a> {
    pub session_token: &'a str,
    pub container: HlsContainer,
    /// The track listed; the MPEG-TS playlist lists every track's segments and ignores it.
    pub track_number: u64,
    pub playback_mode: PlaybackMode,
    pub timestamp_source: TimestampSource,
    pub discontinuity_mode: DiscontinuityMode,
    /// DisplayFragmentTimestamp=ALWAYS: `#EXT-X-PROGRAM-DATE-TIME` on every fragment.
    pub display_fragment_timestamp: bool,
    /// `#EXT-X-MEDIA-SEQUENCE`: the position of the first listed fragment in the session.
    pub media_sequence: u64,
}

/// What the DASH manifest needs besides the tracks and fragments.
#[derive(Clone, Copy, Debug)]
pub struct DashManifestOptions<'a> {
    pub session_token: &'a str,
    pub playback_mode: PlaybackMode,
    pub timestamp_source: TimestampSource,
    /// Peak bit rate of each track's representation, for `bandwidth`.
    pub bandwidth_bps: u64,
    /// DisplayFragmentNumber=ALWAYS: the fragment number is written as an XML comment before
    /// its SegmentURL (the MPD schema has no attribute for it).
    pub display_fragment_number: bool,
    /// DisplayFragmentTimestamp=ALWAYS: the same for the fragment's timestamp (ISO 8601).
    pub display_fragment_timestamp: bool,
    /// For LIVE: when the manifest is generated, epoch milliseconds (`publishTime`).
    pub now_ms: u64,
}

fn assert_url_safe(token: &str) {
    assert!(
        token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
        "session tokens are URL-safe"
    );
}

fn init_uri(session_token: &str, track_number: u64) -> String {
    format!("getMP4InitFragment.mp4?SessionToken={session_token}&TrackNumber={track_number}")
}

fn media_uri(fragment_number: &str, session_token: &str, track_number: u64) -> String {
    format!(
        "getMP4MediaFragment.mp4?FragmentNumber={fragment_number}&SessionToken={session_token}&TrackNumber={track_number}"
    )
}

fn ts_uri(fragment_number: &str, session_token: &str) -> String {
    format!("getTSFragment.ts?FragmentNumber={fragment_number}&SessionToken={session_token}")
}

fn media_playlist_uri(session_token: &str, track_number: u64) -> String {
    format!("getHLSMediaPlaylist.m3u8?SessionToken={session_token}&TrackNumber={track_number}")
}

fn ts_media_playlist_uri(session_token: &str) -> String {
    format!("getHLSMediaPlaylist.m3u8?SessionToken={session_token}")
}

/// `getHLSMasterPlaylist.m3u8`.
pub fn hls_master_playlist(tracks: &MediaTracks, options: &MasterPlaylistOptions<'_>) -> String {
    assert_url_safe(options.session_token);
    let token = options.session_token;
    let codecs: Vec<&str> = tracks
        .tracks
        .iter()
        .map(|track| track.codec_string.as_str())
        .collect();
    let codecs = codecs.join(",");
    if options.container == HlsContainer::MpegTs {
        let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
        let resolution = tracks.video().map_or(String::new(), |video| {
            format!(",RESOLUTION={}x{}", video.width, video.height)
        });
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={}{resolution},CODECS=\"{codecs}\"",
            options.bandwidth_bps
        );
        let _ = writeln!(out, "{}", ts_media_playlist_uri(token));
        return out;
    }
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    match (tracks.video(), tracks.audio()) {
        (Some(video), audio) => {
            if let Some(audio) = audio {
                let _ = writeln!(
                    out,
                    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Track {number}\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{uri}\"",
                    number = audio.track_number,
                    uri = media_playlist_uri(token, audio.track_number),
                );
            }
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={width}x{height},CODECS=\"{codecs}\"{audio_group}",
                bandwidth = options.bandwidth_bps,
                width = video.width,
                height = video.height,
                audio_group = if audio.is_some() {
                    ",AUDIO=\"audio\""
                } else {
                    ""
                },
            );
            let _ = writeln!(out, "{}", media_playlist_uri(token, video.track_number));
        }
        (None, Some(audio)) => {
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{codecs}\"",
                options.bandwidth_bps
            );
            let _ = writeln!(out, "{}", media_playlist_uri(token, audio.track_number));
        }
        (None, None) => {}
    }
    out
}

fn fragment_start_ms(fragment: &PlaylistFragment, source: TimestampSource) -> u64 {
    match source {
        TimestampSource::ProducerTimestamp => fragment.producer_ms,
        TimestampSource::ServerTimestamp => fragment.server_ms,
    }
}

/// `getHLSMediaPlaylist.m3u8` for one track. `fragments` are in playback order.
pub fn hls_media_playlist(
    fragments: &[PlaylistFragment],
    options: &MediaPlaylistOptions<'_>,
) -> String {
    assert_url_safe(options.session_token);
    let token = options.session_token;
    let track_number = options.track_number;
    let target_duration_s = fragments
        .iter()
        .map(|fragment| fragment.duration_ms.div_ceil(1000))
        .max()
        .unwrap_or(1)
        .max(1);
    let ts = options.container == HlsContainer::MpegTs;
    let mut out = String::from(if ts {
        "#EXTM3U\n#EXT-X-VERSION:3\n"
    } else {
        "#EXTM3U\n#EXT-X-VERSION:7\n"
    });
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target_duration_s}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", options.media_sequence);
    if options.playback_mode == PlaybackMode::OnDemand {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    if !ts {
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_uri(token, track_number));
    }
    let mut previous_end_ms: Option<u64> = None;
    for fragment in fragments {
        let start_ms = fragment_start_ms(fragment, options.timestamp_source);
        let discontinuity = match (options.discontinuity_mode, previous_end_ms) {
            (_, None) | (DiscontinuityMode::Never, _) => false,
            (DiscontinuityMode::Always, Some(_)) => true,
            (DiscontinuityMode::OnDiscontinuity, Some(end_ms)) => {
                start_ms.abs_diff(end_ms) > DISCONTINUITY_GAP_MS
            }
        };
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if options.display_fragment_timestamp {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601_ms(start_ms));
        }
        let _ = writeln!(
            out,
            "#EXTINF:{}.{:03},",
            fragment.duration_ms / 1000,
            fragment.duration_ms % 1000
        );
        let uri = if ts {
            ts_uri(&fragment.fragment_number, token)
        } else {
            media_uri(&fragment.fragment_number, token, track_number)
        };
        let _ = writeln!(out, "{uri}");
        previous_end_ms = Some(start_ms + fragment.duration_ms);
    }
    if options.playback_mode == PlaybackMode::OnDemand {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// `getDASHManifest.mpd`: one AdaptationSet per track, each a SegmentList with a
/// SegmentTimeline (timescale 1 ms, on the chosen timestamps) over the same MP4 resources as
/// HLS. Static with a duration for ON_DEMAND; dynamic, refreshed every second, otherwise.
pub fn dash_manifest(
    tracks: &MediaTracks,
    fragments: &[PlaylistFragment],
    options: &DashManifestOptions<'_>,
) -> String {
    assert_url_safe(options.session_token);
    let source = options.timestamp_source;
    let first_ms = fragments
        .first()
        .map_or(0, |fragment| fragment_start_ms(fragment, source));
    let end_ms = fragments
        .iter()
        .map(|fragment| fragment_start_ms(fragment, source) + fragment.duration_ms)
        .max()
        .unwrap_or(first_ms);
    let max_duration_ms = fragments
        .iter()
        .map(|fragment| fragment.duration_ms)
        .max()
        .unwrap_or(1000);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        out,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" minBufferTime=\"{}\" maxSegmentDuration=\"{}\"",
        duration(max_duration_ms),
        duration(max_duration_ms)
    );
    if options.playback_mode == PlaybackMode::OnDemand {
        let _ = writeln!(
            out,
            " type=\"static\" mediaPresentationDuration=\"{}\">",
            duration(end_ms - first_ms)
        );
    } else {
        let _ = writeln!(
            out,
            " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"PT1S\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\">",
            iso8601_ms(first_ms),
            iso8601_ms(options.now_ms),
            duration((end_ms - first_ms).max(max_duration_ms)),
            duration(3 * max_duration_ms),
        );
    }
    out.push_str("  <Period id=\"0\" start=\"PT0S\">\n");
    for track in &tracks.tracks {
        adaptation_set(&mut out, track, fragments, options, first_ms);
    }
    out.push_str("  </Period>\n</MPD>\n");
    out
}

fn adaptation_set(
    out: &mut String,
    track: &MediaTrack,
    fragments: &[PlaylistFragment],
    options: &DashManifestOptions<'_>,
    first_ms: u64,
) {
    let token = options.session_token;
    let number = track.track_number;
    let (content_type, dimensions) = if track.is_video() {
        (
            "video",
            format!(" width=\"{}\" height=\"{}\"", track.width, track.height),
        )
    } else {
        (
            "audio",
            format!(" audioSamplingRate=\"{}\"", track.sample_rate),
        )
    };
    let _ = writeln!(
        out,
        "    <AdaptationSet id=\"{number}\" contentType=\"{content_type}\" mimeType=\"{content_type}/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">"
    );
    let _ = writeln!(
        out,
        "      <Representation id=\"{number}\" codecs=\"{codecs}\" bandwidth=\"{bandwidth}\"{dimensions}>",
        codecs = track.codec_string,
        bandwidth = options.bandwidth_bps,
    );
    let _ = writeln!(
        out,
        "        <SegmentList timescale=\"1000\" presentationTimeOffset=\"{first_ms}\">"
    );
    let _ = writeln!(
        out,
        "          <Initialization sourceURL=\"{}\"/>",
        xml_escape(&init_uri(token, number))
    );
    out.push_str("          <SegmentTimeline>\n");
    for fragment in fragments {
        let _ = writeln!(
            out,
            "            <S t=\"{}\" d=\"{}\"/>",
            fragment_start_ms(fragment, options.timestamp_source),
            fragment.duration_ms
        );
    }
    out.push_str("          </SegmentTimeline>\n");
    for fragment in fragments {
        if options.display_fragment_number {
            let _ = writeln!(
                out,
                "          <!-- FragmentNumber {} -->",
                fragment.fragment_number
            );
        }
        if options.display_fragment_timestamp {
            let _ = writeln!(
                out,
                "          <!-- FragmentTimestamp {} -->",
                iso8601_ms(fragment_start_ms(fragment, options.timestamp_source))
            );
        }
        let _ = writeln!(
            out,
            "          <SegmentURL media=\"{}\"/>",
            xml_escape(&media_uri(&fragment.fragment_number, token, number))
        );
    }
    out.push_str("        </SegmentList>\n      </Representation>\n    </AdaptationSet>\n");
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// An xs:duration in seconds with millisecond precision: `PT12.345S`.
fn duration(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

/// Epoch milliseconds as ISO 8601 UTC with milliseconds: `2026-12-07T01:56:56.123Z`.
fn iso8601_ms(epoch_ms: u64) -> String {
    let seconds = epoch_ms / 1000;
    let second_of_day = seconds % 86_400;
    let date = sluice_core::time_format::civil_from_days(seconds / 86_400);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year,
        date.month,
        date.day,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        epoch_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragments() -> Vec<PlaylistFragment> {
        vec![
            PlaylistFragment {
                fragment_number: "91343852333181615800926522983015284194795592259".to_owned(),
                producer_ms: 1_700_000_000_000,
                server_ms: 1_700_000_000_300,
                duration_ms: 2000,
            },
            PlaylistFragment {
                fragment_number: "91343852333181615800926522983015284194795592260".to_owned(),
                producer_ms: 1_700_000_002_000,
                server_ms: 1_700_000_002_400,
                duration_ms: 1960,
            },
            PlaylistFragment {
                fragment_number: "91343852333181615800926522983015284194795592261".to_owned(),
                producer_ms: 1_700_000_005_000,
                server_ms: 1_700_000_005_300,
                duration_ms: 2500,
            },
        ]
    }

    fn options(mode: DiscontinuityMode) -> MediaPlaylistOptions<'static> {
        MediaPlaylistOptions {
            session_token: "tok-1",
            container: HlsContainer::FragmentedMp4,
            track_number: 1,
            playback_mode: PlaybackMode::OnDemand,
            timestamp_source: TimestampSource::ProducerTimestamp,
            discontinuity_mode: mode,
            display_fragment_timestamp: true,
            media_sequence: 7,
        }
    }

    #[test]
    fn iso8601_ms_formats_epoch_milliseconds_in_utc() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn on_demand_media_playlist_lists_every_fragment_and_ends() {
        let text = hls_media_playlist(&fragments(), &options(DiscontinuityMode::Never));
        let expected = "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?SessionToken=tok-1&TrackNumber=1\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
#EXTINF:2.000,
getMP4MediaFragment.mp4?FragmentNumber=91343852333181615800926522983015284194795592259&SessionToken=tok-1&TrackNumber=1
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z
#EXTINF:1.960,
getMP4MediaFragment.mp4?FragmentNumber=91343852333181615800926522983015284194795592260&SessionToken=tok-1&TrackNumber=1
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:25.000Z
#EXTINF:2.500,
getMP4MediaFragment.mp4?FragmentNumber=91343852333181615800926522983015284194795592261&SessionToken=tok-1&TrackNumber=1
#EXT-X-ENDLIST
";
        assert_eq!(text, expected);
    }

    #[test]
    fn on_discontinuity_marks_only_gaps_over_50_ms() {
        let text = hls_media_playlist(&fragments(), &options(DiscontinuityMode::OnDiscontinuity));
        // 2000 -> 2000 is continuous; 3960 -> 5000 is a 1040 ms gap.
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
        let gap = text
            .find("#EXT-X-DISCONTINUITY")
            .expect("one discontinuity");
        assert!(text[gap..].contains("592261"));
        assert!(!text[gap..].contains("592260"));
        let always = hls_media_playlist(&fragments(), &options(DiscontinuityMode::Always));
        assert_eq!(always.matches("#EXT-X-DISCONTINUITY\n").count(), 2);
    }

    #[test]
    fn live_media_playlist_has_no_endlist() {
        let mut live = options(DiscontinuityMode::Never);
        live.playback_mode = PlaybackMode::Live;
        live.display_fragment_timestamp = false;
        let text = hls_media_playlist(&fragments(), &live);
        assert!(!text.contains("ENDLIST"));
        assert!(!text.contains("PLAYLIST-TYPE"));
        assert!(!text.contains("PROGRAM-DATE-TIME"));
    }

    #[test]
    fn mpeg_ts_media_playlist_lists_ts_fragments_without_a_map() {
        let mut ts = options(DiscontinuityMode::Never);
        ts.container = HlsContainer::MpegTs;
        ts.display_fragment_timestamp = false;
        let text = hls_media_playlist(&fragments(), &ts);
        let expected = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXTINF:2.000,
getTSFragment.ts?FragmentNumber=91343852333181615800926522983015284194795592259&SessionToken=tok-1
#EXTINF:1.960,
getTSFragment.ts?FragmentNumber=91343852333181615800926522983015284194795592260&SessionToken=tok-1
#EXTINF:2.500,
getTSFragment.ts?FragmentNumber=91343852333181615800926522983015284194795592261&SessionToken=tok-1
#EXT-X-ENDLIST
";
        assert_eq!(text, expected);
    }

    #[test]
    #[should_panic(expected = "URL-safe")]
    fn a_session_token_with_reserved_characters_is_a_bug() {
        let mut bad = options(DiscontinuityMode::Never);
        bad.session_token = "a&b";
        hls_media_playlist(&fragments(), &bad);
    }
}
