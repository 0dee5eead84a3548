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

import datetime
import pathlib
import re
import socket
import subprocess
import time
import uuid

import pytest

from conftest import SluiceProcess
from video_support import (
    HLS_INPUT_FLAGS, client, create_stream, frame_md5s, http_get, read_streaming, single_mkv, split_mkv,
    tool, write,
)

CLIP_SECONDS = 4
CLIP_FPS = 25
RTSP_SERVER = pathlib.Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
WAIT_S = 90


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def make_camera_clip(path: pathlib.Path) -> pathlib.Path:
    """What the camera films: H.264 320x240 at 25 fps with an IDR every second (so one fragment a
    second) and no B-frames, as cameras encode, plus AAC audio; a plain (not live) MKV file."""
    subprocess.run([
        tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={CLIP_FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(CLIP_SECONDS),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", str(CLIP_FPS), "-keyint_min", str(CLIP_FPS), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k",
        str(path),
    ], check=True, timeout=120)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def metric(text: str, name: str, **labels) -> float:
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(rendered)}\}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{rendered}}} is not in /metrics:\n{text[-3000:]}"
    return float(match.group(1))


def wait_until(predicate, what: str, timeout_s: float = WAIT_S, sluice: "SluiceProcess | None" = None):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            stderr = sluice.stderr()[-6000:] if sluice is not None else ""
            raise AssertionError(f"{what} did not happen in {timeout_s} s\n{stderr}")
        time.sleep(0.2)


class Pulled:
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

    def endpoint(self, api_name: str) -> str:
        return self.kvs.get_data_endpoint(StreamName=self.name, APIName=api_name)["DataEndpoint"]

    def fragments(self) -> "list[dict]":
        """Every fragment, sorted by producer timestamp."""
        fragments, kwargs = [], {"StreamName": self.name, "FragmentSelector": {
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": utc(self.test_start_s - 60),
                               "EndTimestamp": utc(time.time() + 60)}}}
        while True:
            page = self.archived.list_fragments(**kwargs)
            fragments += page["Fragments"]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        return sorted(fragments, key=lambda f: f["ProducerTimestamp"])

    def metrics(self) -> str:
        status, _, body = http_get(self.sluice.endpoint.rstrip("/") + "/metrics")
        assert status == 200, body
        return body.decode()

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
    md5s = frame_md5s(str(pulled.clip))
    assert len(md5s) == CLIP_SECONDS * CLIP_FPS
    return md5s


def test_list_fragments_shows_one_fragment_per_keyframe_with_increasing_numbers_and_times(pulled):
    fragments = pulled.first_session
    assert len(fragments) == CLIP_SECONDS, fragments
    numbers = [int(f["FragmentNumber"]) for f in fragments]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    producer = [f["ProducerTimestamp"].timestamp() for f in fragments]
    server = [f["ServerTimestamp"].timestamp() for f in fragments]
    # One fragment per second of the camera's timeline (an IDR every 25 frames at 25 fps), each
    # starting where the previous one ended.
    assert [f["FragmentLengthInMilliseconds"] for f in fragments] == [1000] * CLIP_SECONDS, fragments
    for earlier, later in zip(producer, producer[1:]):
        assert abs(later - earlier - 1.0) < 0.002, producer
    # Producer timestamps are the server's clock when the camera's first frame arrived, plus the
    # camera's own timeline; server timestamps are when each fragment's first frame arrived.
    assert pulled.test_start_s - 1 < producer[0] < time.time(), producer
    assert server == sorted(server), server
    assert all(pulled.test_start_s - 1 < s < time.time() for s in server), server
    assert all(f["FragmentSizeInBytes"] > 0 for f in fragments), fragments


def test_get_media_earliest_decodes_to_every_frame_the_camera_sent(pulled, source_md5s, tmp_path):
    response = pulled.media.get_media(StreamName=pulled.name, StartSelector={"StartSelectorType": "EARLIEST"})
    assert response["ContentType"] == "video/webm", response["ContentType"]
    chunks = split_mkv(read_streaming(response["Payload"]))
    numbers = [chunk.tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for chunk in chunks]
    assert numbers == [f["FragmentNumber"] for f in pulled.first_session], numbers
    for chunk, fragment in zip(chunks, pulled.first_session):
        assert len(chunk.clusters) == 1, chunk.tags
        producer = float(chunk.tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"])
        assert abs(producer - fragment["ProducerTimestamp"].timestamp()) < 0.0015, (chunk.tags, fragment)
        # The Cluster's Timecode is the producer timestamp (ms), as a KVS producer writes it.
        assert chunk.timecodes[0] == round(producer * 1000), (chunk.timecodes, producer)
        # The header declares H.264 on track 1 (CodecPrivate: the camera's avcC) and AAC on 2.
        assert b"V_MPEG4/ISO/AVC" in chunk.header and b"A_AAC" in chunk.header
    whole = write(tmp_path / "camera-from-sluice.mkv", single_mkv(chunks))
    assert frame_md5s(whole) == source_md5s
    audio = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "a:0",
         "-show_entries", "stream=codec_name,sample_rate,nb_read_frames", "-of", "csv=p=0", whole],
        capture_output=True, text=True, timeout=120)
    assert audio.returncode == 0, audio.stderr
    codec, sample_rate, frames = audio.stdout.strip().split(",")
    assert (codec, sample_rate) == ("aac", "48000"), audio.stdout
    # 4 s of 48 kHz AAC is 187.5 frames of 1024 samples; a few before the first keyframe are gone.
    assert 150 <= int(frames) <= 190, audio.stdout


def test_hls_on_demand_plays_the_camera_with_the_source_frames(pulled, source_md5s):
    archived = client("kinesis-video-archived-media", pulled.endpoint("GET_HLS_STREAMING_SESSION_URL"))
    first = pulled.first_session[0]["ProducerTimestamp"].timestamp()
    url = archived.get_hls_streaming_session_url(
        StreamName=pulled.name, PlaybackMode="ON_DEMAND", ContainerFormat="FRAGMENTED_MP4",
        HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {
            "StartTimestamp": utc(first - 0.5), "EndTimestamp": utc(first + CLIP_SECONDS - 0.5)}},
    )["HLSStreamingSessionURL"]
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
