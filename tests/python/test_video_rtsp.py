"""RTSP ingest on Sluice: `sluice serve --rtsp-source STREAM=rtsp://...` pulls a real RTSP server
(GStreamer's gst-rtsp-server, tests/python/rtsp_server.py, serving an H.264 + AAC clip made by
ffmpeg) into a Kinesis video stream; the fragments are read back with boto3's
`kinesis-video-archived-media` and `kinesis-video-media` clients, and decoded with ffmpeg.

What these guard against: fragments cut anywhere but at keyframes, or numbered, timed or stored
differently from PutMedia's (ListFragments, GetMedia and HLS must serve them unchanged); frames
lost, reordered or altered between the camera and storage (every check ends in decoded-frame MD5s
equal to the source clip's); a source that gives up when the camera goes away instead of
reconnecting; and errors that never reach /metrics.

Why the frame checksums are exact: the server gives every client its own pipeline that plays the
file from its first frame (an IDR) to its end over RTP interleaved in the RTSP TCP connection, so
nothing is lost or skipped, and the H.264 bitstream is passed through (depacketized, not
re-encoded). The camera "goes away" at the end of the clip (`--exit-at-eos`), which also ends the
last fragment at a known place. What is not compared byte for byte: the AAC track (its first
frames before the first video keyframe are dropped, as a KVS producer drops them); it is checked
to be there and to decode.

The server needs Debian's python3-gi and gir1.2-gst-rtsp-server-1.0 (scripts/test installs them);
these tests fail, never skip, without them.
"""

import pathlib
import re
import subprocess
import time
import uuid

import pytest

from conftest import SluiceProcess
from video_support import (
    check_fragment_a_second, check_ingested_media, client, create_stream, frame_md5s, free_port,
    HLS_INPUT_FLAGS, http_get, IngestedStream, make_source_clip, metric, read_streaming, single_mkv,
    source_frame_md5s, split_mkv, wait_until, write, x264_flags,
)

CLIP_SECONDS = 4
CLIP_FPS = 25
RTSP_SERVER = pathlib.Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
WAIT_S = 90


def make_camera_clip(path: pathlib.Path) -> pathlib.Path:
    """What the camera films: H.264 with an IDR every second and no B-frames, as cameras encode,
    plus AAC audio; a plain (not live) MKV file."""
    return make_source_clip(path, CLIP_SECONDS, x264_flags(b_frames=0))


class RtspServer:
    """tests/python/rtsp_server.py serving `clip` on `port`, until killed or (with
    `exit_at_eos`) until its first client has been sent the whole clip."""

    def __init__(self, clip: pathlib.Path, port: int, log: pathlib.Path, exit_at_eos: bool = True):
        if not pathlib.Path(SYSTEM_PYTHON).exists():
            raise RuntimeError(f"{SYSTEM_PYTHON} is missing (scripts/test installs python3-gi for it)")
        self.log = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), "--file", str(clip), "--port", str(port),
             *(["--exit-at-eos"] if exit_at_eos else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("rtsp-server: rtsp://"):
            self.kill()
            raise RuntimeError(
                f"the RTSP server did not start (scripts/test installs gir1.2-gst-rtsp-server-1.0 and "
                f"python3-gi): {line!r}\n{log.read_text(errors='replace')}")
        self.url = line.split(" ", 1)[1]

    def wait_exit(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


class Pulled(IngestedStream):
    """The shared setup: one Sluice pulling one camera into one stream."""

    def __init__(self, tmp: pathlib.Path):
        self.tmp = tmp
        self.clip = make_camera_clip(tmp / "camera.mkv")
        self.port = free_port()
        self.name = f"rtsp-{uuid.uuid4().hex[:10]}"
        self.test_start_s = time.time()
        # The camera is up first; the stream is created after Sluice started, so the source also
        # waits for its stream.
        self.camera = RtspServer(self.clip, self.port, tmp / "camera-1.log")
        self.sluice = SluiceProcess(tmp / "data", [
            "--rtsp-source", f"{self.name}=rtsp://127.0.0.1:{self.port}/clip"])
        self.kvs = client("kinesisvideo", self.sluice.endpoint)
        create_stream(self.kvs, self.name)
        self.archived = client("kinesis-video-archived-media", self.endpoint("LIST_FRAGMENTS"))
        self.media = client("kinesis-video-media", self.endpoint("GET_MEDIA"))

    def close(self):
        self.camera.kill()
        self.sluice.kill()


@pytest.fixture(scope="module")
def pulled(tmp_path_factory):
    setup = Pulled(tmp_path_factory.mktemp("rtsp"))
    try:
        # The camera plays the clip once and goes away; by then every fragment is stored.
        setup.camera.wait_exit(timeout_s=WAIT_S)
        wait_until(lambda: len(setup.fragments()) >= CLIP_SECONDS, f"{CLIP_SECONDS} fragments",
                   sluice=setup.sluice)
        setup.first_session = setup.fragments()
        yield setup
    finally:
        setup.close()


@pytest.fixture(scope="module")
def source_md5s(pulled):
    return source_frame_md5s(pulled.clip, CLIP_SECONDS * CLIP_FPS)


def test_list_fragments_shows_one_fragment_per_keyframe_with_increasing_numbers_and_times(pulled):
    # An IDR every 25 frames at 25 fps: one fragment a second of the camera's timeline.
    check_fragment_a_second(pulled.first_session, CLIP_SECONDS, pulled.test_start_s)


def test_get_media_earliest_decodes_to_every_frame_the_camera_sent(pulled, source_md5s, tmp_path):
    chunks = pulled.get_media_earliest()
    # A few AAC frames before the first keyframe are dropped, as a KVS producer drops them.
    check_ingested_media(chunks, pulled.first_session, tmp_path / "camera-from-sluice.mkv", source_md5s,
                         audio_frames_min=150)


def test_hls_on_demand_plays_the_camera_with_the_source_frames(pulled, source_md5s):
    url = pulled.hls_on_demand_url(pulled.first_session[0]["ProducerTimestamp"].timestamp(), CLIP_SECONDS)
    status, _, body = http_get(url)
    assert status == 200, body
    assert re.search(r"#EXT-X-MEDIA:.*TYPE=AUDIO", body.decode()), body
    assert frame_md5s(url, HLS_INPUT_FLAGS) == source_md5s


def test_metrics_count_the_session_and_its_fragments_and_the_failed_reconnects(pulled):
    name = pulled.name
    text = pulled.metrics()
    assert metric(text, "video_rtsp_fragments_total", stream=name) >= CLIP_SECONDS
    assert metric(text, "video_rtsp_fragment_bytes_total", stream=name) == sum(
        f["FragmentSizeInBytes"] for f in pulled.first_session)
    assert metric(text, "video_rtsp_sessions_total", stream=name) == 1
    # The camera is gone: the source keeps trying, and each refused connection is counted.
    wait_until(lambda: metric(pulled.metrics(), "video_rtsp_errors_total", stream=name, error_type="connect") >= 1,
               "a counted connection failure", sluice=pulled.sluice)
    assert metric(pulled.metrics(), "video_rtsp_connected", stream=name) == 0
    assert "RTSP ingest failed; retrying with backoff." in pulled.sluice.stderr()


def test_the_source_reconnects_when_the_camera_comes_back(pulled, source_md5s, tmp_path):
    """The camera restarts on the same address: Sluice connects again by itself (backoff at most
    30 s), stores the new session's fragments after the old ones (numbers and producer times go
    on increasing), and they hold the camera's frames again."""
    before = pulled.first_session
    camera = RtspServer(pulled.clip, pulled.port, pulled.tmp / "camera-2.log")
    pulled.camera = camera
    camera.wait_exit(timeout_s=WAIT_S)
    after = wait_until(
        lambda: (lambda all_: all_ if len(all_) >= 2 * CLIP_SECONDS else None)(pulled.fragments()),
        "the second session's fragments", sluice=pulled.sluice)
    assert after[:CLIP_SECONDS] == before
    second = after[CLIP_SECONDS:]
    assert len(second) == CLIP_SECONDS, second
    end_of_first = before[-1]["ProducerTimestamp"].timestamp() + before[-1]["FragmentLengthInMilliseconds"] / 1000
    assert second[0]["ProducerTimestamp"].timestamp() >= end_of_first - 0.001, (before[-1], second[0])
    numbers = [int(f["FragmentNumber"]) for f in after]
    assert numbers == sorted(numbers), numbers
    assert metric(pulled.metrics(), "video_rtsp_sessions_total", stream=pulled.name) == 2

    archived = client("kinesis-video-archived-media", pulled.endpoint("GET_MEDIA_FOR_FRAGMENT_LIST"))
    response = archived.get_media_for_fragment_list(
        StreamName=pulled.name, Fragments=[f["FragmentNumber"] for f in second])
    chunks = split_mkv(read_streaming(response["Payload"]))
    assert frame_md5s(write(tmp_path / "second-session.mkv", single_mkv(chunks))) == source_md5s
