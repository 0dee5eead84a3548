//! Cutting a source's frames into KVS fragments, as the KVS producer SDK does: a fragment starts
//! at a video keyframe (an IDR picture) and holds every frame, video and audio, that arrives
//! until the next one.
//!
//! Times are session milliseconds (presentation times: RTSP's since PLAY, RTMP's FLV timestamp plus
//! its composition offset); the caller maps them
//! to producer timestamps. Pure: no clock (the server time of a fragment's start is passed in),
//! no I/O.
//!
//! Invariants:
//! - Every fragment's first frame is a video keyframe, except one cut by a limit (below): frames
//!   before the session's first keyframe are dropped, as no decoder could start on them.
//! - A fragment is also cut when its next frame would make it longer than
//!   [`FragmenterLimits::duration_ms_max`] or larger than [`FragmenterLimits::bytes_max`] — the
//!   limits PutMedia refuses a fragment over (ErrorId 4002 and 4001). A source whose keyframe
//!   interval is longer than that gets fragments that start on a predicted picture; its GOP must
//!   be shortened (KVS asks the same of producers).
//! - Every frame's offset from its fragment's start fits a Matroska block's signed 16 bits:
//!   offsets run from `-REORDER_MS_MAX` to `duration_ms_max`, and a frame further back (an audio
//!   clock that jumped) is dropped.

/// How far before its fragment's start a frame may lie and still be kept: audio captured just
/// before a keyframe can arrive after it (each RTP stream is its own flow; an RTMP publisher
/// interleaves its tracks by decode time, not presentation time).
pub const REORDER_MS_MAX: i64 = 1_000;

const _: () = assert!(REORDER_MS_MAX < i16::MAX as i64);

/// Which track a frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// One coded frame as a session delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub track: TrackKind,
    /// Presentation time, session milliseconds.
    pub time_ms: i64,
    /// A video IDR picture (every audio frame is one too, but only video starts fragments).
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// A finished fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// In arrival order (video in decode order).
    pub frames: Vec<Frame>,
    /// The time of its first frame (the keyframe), session milliseconds; frames may lie up to
    /// [`REORDER_MS_MAX`] before it.
    pub start_ms: i64,
    /// Until the next fragment's start, or for the last fragment of a session until the end of
    /// its last frame (estimated from the frame rate).
    pub duration_ms: u64,
    /// When its first frame arrived, epoch milliseconds (the fragment's server timestamp).
    pub server_ms: u64,
}

impl Fragment {
    /// The offset of `frame` from the fragment's start, as a Matroska block stores it.
    pub fn offset_ms(&self, frame: &Frame) -> i16 {
        i16::try_from(frame.time_ms - self.start_ms)
            .expect("the fragmenter keeps every offset within a block's 16 bits")
    }

    /// The frames' bytes.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.frames.iter().map(|f| f.data.len()).sum()
    }
}

/// When a fragment is cut although no keyframe came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmenterLimits {
    pub duration_ms_max: u64,
    pub bytes_max: u64,
}

impl FragmenterLimits {
    /// PutMedia's limits (`media::PutMediaLimits::default`).
    pub fn put_media() -> Self {
        let put_media = crate::media::PutMediaLimits::default();
        Self {
            duration_ms_max: put_media.fragment_duration_ms_max,
            bytes_max: put_media.fragment_bytes_max,
        }
    }
}

/// What [`Fragmenter::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Added to the open fragment (or it started one).
    Added,
    /// Dropped: before the session's first keyframe, or too far back in time.
    Dropped,
    /// The open fragment is finished; the frame started the next one.
    Cut(Fragment),
}

#[derive(Debug)]
struct Open {
    frames: Vec<Frame>,
    start_ms: i64,
    bytes: u64,
    server_ms: u64,
    has_video: bool,
}

/// One session's fragmenter.
#[derive(Debug)]
pub struct Fragmenter {
    limits: FragmenterLimits,
    open: Option<Open>,
    /// The last video frame's time and the gap before it (the frame duration estimate).
    last_video_ms: Option<i64>,
    video_gap_ms: i64,
}

impl Fragmenter {
    pub fn new(limits: FragmenterLimits) -> Self {
        assert!(limits.duration_ms_max > 0);
        assert!(limits.duration_ms_max < i16::MAX as u64);
        assert!(limits.bytes_max > 0);
        Self {
            limits,
            open: None,
            last_video_ms: None,
            video_gap_ms: 0,
        }
    }

    /// Whether a fragment is open (the session's first keyframe has come).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the next frame, which arrived at `now_ms` (epoch milliseconds).
    pub fn push(&mut self, frame: Frame, now_ms: u64) -> Pushed {
        let video_keyframe = frame.track == TrackKind::Video && frame.keyframe;
        let Some(open) = &self.open else {
            if !video_keyframe {
                return Pushed::Dropped;
            }
            self.note_video(&frame);
            self.open = Some(Self::start(frame, now_ms));
            return Pushed::Added;
        };
        let offset_ms = frame.time_ms - open.start_ms;
        if offset_ms < -REORDER_MS_MAX {
            return Pushed::Dropped;
        }
        let too_long = offset_ms >= self.limits.duration_ms_max as i64;
        let too_large = open.bytes + frame.data.len() as u64 > self.limits.bytes_max;
        let cut = (video_keyframe && open.has_video) || too_long || too_large;
        if frame.track == TrackKind::Video {
            self.note_video(&frame);
        }
        if cut {
            let end_ms = frame.time_ms;
            let next = Self::start(frame, now_ms);
            let finished = self.open.replace(next).expect("a fragment is open");
            return Pushed::Cut(Self::close(finished, end_ms));
        }
        let open = self.open.as_mut().expect("a fragment is open");
        open.bytes += frame.data.len() as u64;
        open.has_video |= frame.track == TrackKind::Video;
        open.frames.push(frame);
        Pushed::Added
    }

    /// The session ended: the open fragment, if any, ends after its last frame. A video frame
    /// lasts the fragment's mean frame interval (its pictures' time span over their count less
    /// one), which holds whatever order B-frames arrive in; a fragment of one picture uses the
    /// last gap seen between pictures.
    pub fn finish(&mut self) -> Option<Fragment> {
        let open = self.open.take()?;
        let video_times = || {
            open.frames
                .iter()
                .filter(|f| f.track == TrackKind::Video)
                .map(|f| f.time_ms)
        };
        let pictures = video_times().count() as i64;
        let last_any = open.frames.iter().map(|f| f.time_ms).max();
        let end_ms = match (video_times().min(), video_times().max(), last_any) {
            (Some(first), Some(last), Some(any)) => {
                let interval = if pictures > 1 {
                    (last - first) / (pictures - 1)
                } else {
                    self.video_gap_ms
                };
                (last + interval).max(any)
            }
            (_, _, Some(any)) => any,
            _ => open.start_ms,
        };
        Some(Self::close(open, end_ms))
    }

    fn note_video(&mut self, frame: &Frame) {
        if let Some(last) = self.last_video_ms
            && frame.time_ms > last
        {
            self.video_gap_ms = frame.time_ms - last;
        }
        self.last_video_ms = Some(
            self.last_video_ms
                .map_or(frame.time_ms, |last| last.max(frame.time_ms)),
        );
    }

    fn start(frame: Frame, now_ms: u64) -> Open {
        Open {
            start_ms: frame.time_ms,
            bytes: frame.data.len() as u64,
            server_ms: now_ms,
            has_video: frame.track == TrackKind::Video,
            frames: vec![frame],
        }
    }

    fn close(open: Open, end_ms: i64) -> Fragment {
        assert!(!open.frames.is_empty());
        Fragment {
            duration_ms: u64::try_from(end_ms - open.start_ms).unwrap_or(0),
            start_ms: open.start_ms,
            server_ms: open.server_ms,
            frames: open.frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(time_ms: i64, keyframe: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            time_ms,
            keyframe,
            data: vec![0; 10],
        }
    }

    fn audio(time_ms: i64) -> Frame {
        Frame {
            track: TrackKind::Audio,
            time_ms,
            keyframe: true,
            data: vec![0; 3],
        }
    }

    fn limits() -> FragmenterLimits {
        FragmenterLimits {
            duration_ms_max: 10_000,
            bytes_max: 1_000,
        }
    }

    /// Pushes `frames` (arriving at 1000 + their time) and returns the finished fragments,
    /// the last one from `finish`.
    fn cut(fragmenter: &mut Fragmenter, frames: Vec<Frame>) -> (Vec<Fragment>, usize) {
        let mut out = Vec::new();
        let mut dropped = 0;
        for frame in frames {
            let now = 1_000 + frame.time_ms as u64;
            match fragmenter.push(frame, now) {
                Pushed::Added => {}
                Pushed::Dropped => dropped += 1,
                Pushed::Cut(fragment) => out.push(fragment),
            }
        }
        out.extend(fragmenter.finish());
        (out, dropped)
    }

    #[test]
    fn fragments_start_at_each_video_keyframe_and_hold_the_audio_that_arrives_between() {
        let mut fragmenter = Fragmenter::new(limits());
        let frames = vec![
            video(0, true),
            audio(5),
            video(40, false),
            audio(26),
            video(80, true),
            // Audio captured just before the keyframe, arriving after it.
            audio(70),
            video(120, false),
        ];
        let (fragments, dropped) = cut(&mut fragmenter, frames);
        assert_eq!(dropped, 0);
        assert_eq!(fragments.len(), 2);
        let [first, second] = fragments.as_slice() else {
            panic!("two fragments")
        };
        assert_eq!((first.start_ms, first.duration_ms), (0, 80));
        assert_eq!(first.server_ms, 1_000);
        assert_eq!(first.frames.len(), 4);
        assert!(first.frames[0].keyframe);
        assert_eq!((second.start_ms, second.duration_ms), (80, 80));
        assert_eq!(second.server_ms, 1_080);
        let offsets: Vec<i16> = second.frames.iter().map(|f| second.offset_ms(f)).collect();
        assert_eq!(offsets, [0, -10, 40]);
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let mut fragmenter = Fragmenter::new(limits());
        let (fragments, dropped) = cut(
            &mut fragmenter,
            vec![
                video(0, false),
                audio(10),
                video(40, true),
                video(80, false),
            ],
        );
        assert_eq!(dropped, 2);
        let [only] = fragments.as_slice() else {
            panic!("one fragment")
        };
        assert_eq!(only.start_ms, 40);
        // The last fragment of a session lasts until its last frame ends.
        assert_eq!(only.duration_ms, 80);
        assert_eq!(fragmenter.finish(), None);
    }

    #[test]
    fn the_last_fragment_of_a_session_with_b_frames_lasts_its_pictures() {
        let mut fragmenter = Fragmenter::new(limits());
        // Decode order I P B B P B B P: presentation times 0, 120, 40, 80, 240, 160, 200, 280.
        let frames = [0, 120, 40, 80, 240, 160, 200, 280]
            .into_iter()
            .enumerate()
            .map(|(i, time_ms)| video(time_ms, i == 0))
            .collect();
        let (fragments, dropped) = cut(&mut fragmenter, frames);
        assert_eq!(dropped, 0);
        let [only] = fragments.as_slice() else {
            panic!("one fragment")
        };
        assert_eq!(only.duration_ms, 320);
    }

    #[test]
    fn a_gop_longer_than_the_duration_limit_is_cut_at_the_limit() {
        let mut fragmenter = Fragmenter::new(FragmenterLimits {
            bytes_max: 1 << 20,
            ..limits()
        });
        let frames: Vec<Frame> = (0..300).map(|i| video(i * 40, i == 0)).collect();
        let (fragments, _) = cut(&mut fragmenter, frames);
        assert_eq!(fragments.len(), 2);
        assert_eq!(fragments[0].duration_ms, 10_000);
        assert_eq!(fragments[0].frames.len(), 250);
        assert!(!fragments[1].frames[0].keyframe);
        assert!(fragments.iter().all(|f| f.duration_ms <= 10_000));
    }

    #[test]
    fn a_fragment_is_cut_before_it_grows_past_the_byte_limit() {
        let mut fragmenter = Fragmenter::new(limits());
        let frames: Vec<Frame> = (0..250).map(|i| video(i * 40, i == 0)).collect();
        let (fragments, _) = cut(&mut fragmenter, frames);
        assert!(fragments.iter().all(|f| f.bytes() <= 1_000));
        assert_eq!(fragments.iter().map(|f| f.frames.len()).sum::<usize>(), 250);
    }

    #[test]
    fn a_frame_far_before_its_fragment_is_dropped_so_offsets_fit_sixteen_bits() {
        let mut fragmenter = Fragmenter::new(limits());
        let (fragments, dropped) = cut(
            &mut fragmenter,
            vec![video(50_000, true), audio(50_000 - 1_001), audio(49_500)],
        );
        assert_eq!(dropped, 1);
        assert_eq!(fragments[0].frames.len(), 2);
        assert_eq!(fragments[0].offset_ms(&fragments[0].frames[1]), -500);
    }
}
