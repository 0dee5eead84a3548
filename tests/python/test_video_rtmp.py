"""RTMP ingest on Sluice: `sluice serve --rtmp-addr ADDR` listens for RTMP publishers; a real ffmpeg
pushes an H.264 + AAC clip (`ffmpeg -re -i clip.mp4 -c copy -f flv rtmp://ADDR/live/STREAM`) into
an existing Kinesis video stream, and the fragments are read back with boto3's
`kinesis-video-archived-media` and `kinesis-video-media` clients and decoded with ffmpeg.

What these guard against: fragments cut anywhere but at keyframes, or numbered, timed or stored
differently from PutMedia's (ListFragments, GetMedia, GetMediaForFragmentList and HLS must serve
them unchanged); frames lost, reordered or altered between the publisher and storage, including
B-frames, whose presentation times come from FLV's composition offsets (every check ends in
decoded-frame MD5s equal to the source clip's); a publish into a stream that does not exist, or
in a codec Sluice does not store, that is accepted, crashes the listener or never reaches
/metrics; and a server killed in the middle of a push that loses or damages what it had stored.

Why the frame checksums are exact: ffmpeg copies the H.264 bitstream (`-c copy`), so the access
units Sluice stores are the clip's, and the clip starts on an IDR picture. What is not compared
byte for byte: the AAC track; it is checked to be there and to decode.

ffmpeg (with libx264 and its FLV/RTMP muxer) is required: scripts/test installs it; these tests
fail, never skip, without it.
"""

import pathlib
import socket
import subprocess
import time
import uuid

import pytest

from conftest import SluiceProcess
from video_support import (
    check_fragment_a_second, check_ingested_media, client, create_stream, frame_md5s, free_port,
    HLS_INPUT_FLAGS, IngestedStream, make_source_clip, metric, read_streaming, single_mkv,
    source_frame_md5s, split_mkv, tool, wait_until, write, x264_flags,
)

CLIP_SECONDS = 4
CLIP_FPS = 25
WAIT_S = 90


def make_clip(path: pathlib.Path, seconds: int) -> pathlib.Path:
    """What the encoder sends: H.264 with an IDR every second and two B-frames between references
    (so presentation order differs from decode order), plus AAC audio."""
    return make_source_clip(path, seconds, x264_flags(b_frames=2))


def push(clip: pathlib.Path, url: str, log: pathlib.Path) -> subprocess.Popen:
    """ffmpeg publishing `clip` at its own pace (-re) to `url`, copying its streams."""
    with open(log, "wb") as stderr:
        return subprocess.Popen(
            [tool("ffmpeg"), "-hide_banner", "-loglevel", "info", "-nostdin", "-re", "-i", str(clip),
             "-c", "copy", "-f", "flv", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )


class Listening(IngestedStream):
    """One Sluice listening for RTMP on a free port, with one video stream created."""

    def __init__(self, tmp: pathlib.Path, data: "pathlib.Path | None" = None, port: "int | None" = None,
                 name: "str | None" = None):
        self.tmp = tmp
        self.port = port or free_port()
        self.name = name or f"rtmp-{uuid.uuid4().hex[:10]}"
        self.test_start_s = time.time()
        self.sluice = SluiceProcess(data or tmp / "data", ["--rtmp-addr", f"127.0.0.1:{self.port}"])
        self.kvs = client("kinesisvideo", self.sluice.endpoint)
        if name is None:
            create_stream(self.kvs, self.name)
        self.archived = client("kinesis-video-archived-media", self.endpoint("LIST_FRAGMENTS"))
        self.media = client("kinesis-video-media", self.endpoint("GET_MEDIA"))

    def url(self, stream_key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{stream_key}"

    def fragment_list_mkv(self, fragments: "list[dict]", path: pathlib.Path) -> str:
        """The fragments read back with GetMediaForFragmentList, as one MKV file."""
        archived = client("kinesis-video-archived-media", self.endpoint("GET_MEDIA_FOR_FRAGMENT_LIST"))
        response = archived.get_media_for_fragment_list(
            StreamName=self.name, Fragments=[f["FragmentNumber"] for f in fragments])
        return write(path, single_mkv(split_mkv(read_streaming(response["Payload"]))))


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rtmp")
    setup = Listening(tmp)
    try:
        setup.clip = make_clip(tmp / "encoder.mp4", CLIP_SECONDS)
        # A port probe (a health check connecting and closing without a byte) is no error:
        # test_metrics_count_the_publish_and_its_fragments finds none counted.
        socket.create_connection(("127.0.0.1", setup.port), timeout=5).close()
        publisher = push(setup.clip, setup.url(setup.name), tmp / "ffmpeg-push.log")
        assert publisher.wait(timeout=WAIT_S) == 0, (tmp / "ffmpeg-push.log").read_text(errors="replace")
        setup.pushed = wait_until(
            lambda: (lambda all_: all_ if len(all_) >= CLIP_SECONDS else None)(setup.fragments()),
            f"{CLIP_SECONDS} fragments", sluice=setup.sluice)
        yield setup
    finally:
        setup.sluice.kill()


@pytest.fixture(scope="module")
def source_md5s(pushed):
    return source_frame_md5s(pushed.clip, CLIP_SECONDS * CLIP_FPS)


def test_list_fragments_shows_one_fragment_per_keyframe_with_increasing_numbers_and_times(pushed):
    # The last fragment lasts its 25 pictures too, although B-frames arrive out of presentation
    # order (the fragmenter must not take the gap between reference pictures for a frame's).
    check_fragment_a_second(pushed.pushed, CLIP_SECONDS, pushed.test_start_s)
    # -re: the encoder sent the clip in real time, so fragments arrived about a second apart.
    server = [f["ServerTimestamp"].timestamp() for f in pushed.pushed]
    assert server[-1] - server[0] > 2, server


def test_get_media_earliest_decodes_to_every_frame_the_encoder_sent(pushed, source_md5s, tmp_path):
    chunks = pushed.get_media_earliest()
    # The clip's first frame is an IDR, so at most one AAC frame can precede it.
    check_ingested_media(chunks, pushed.pushed, tmp_path / "encoder-from-sluice.mkv", source_md5s,
                         audio_frames_min=186)


def test_get_media_for_fragment_list_and_hls_serve_the_same_frames(pushed, source_md5s, tmp_path):
    whole = pushed.fragment_list_mkv(pushed.pushed, tmp_path / "fragment-list.mkv")
    assert frame_md5s(whole) == source_md5s
    url = pushed.hls_on_demand_url(pushed.pushed[0]["ProducerTimestamp"].timestamp(), CLIP_SECONDS)
    assert frame_md5s(url, HLS_INPUT_FLAGS) == source_md5s


def test_metrics_count_the_publish_and_its_fragments(pushed):
    text = pushed.metrics()
    assert metric(text, "video_rtmp_sessions_total") == 1
    assert metric(text, "video_rtmp_fragments_total") == CLIP_SECONDS
    assert metric(text, "video_rtmp_fragment_bytes_total") == sum(f["FragmentSizeInBytes"] for f in pushed.pushed)
    # ffmpeg unpublished cleanly and the probe sent nothing: no error is counted, nothing is
    # connected.
    assert metric(text, "video_rtmp_connected") == 0
    for error_type in ("stream", "connect", "unsupported", "media", "storage"):
        assert metric(text, "video_rtmp_errors_total", error_type=error_type) == 0, (error_type, text)
    assert "RTMP publisher connected; storing fragments." in pushed.sluice.stderr()


def test_a_publish_to_a_stream_that_does_not_exist_is_refused_and_counted(pushed, tmp_path):
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    publisher = push(pushed.clip, pushed.url(missing), tmp_path / "ffmpeg-missing.log")
    code = publisher.wait(timeout=WAIT_S)
    assert code != 0, (tmp_path / "ffmpeg-missing.log").read_text(errors="replace")
    wait_until(lambda: metric(pushed.metrics(), "video_rtmp_errors_total", error_type="stream") == 1,
               "the refused publish counted", sluice=pushed.sluice)
    stderr = pushed.sluice.stderr()
    assert "RTMP connection refused." in stderr and missing in stderr, stderr[-3000:]
    assert metric(pushed.metrics(), "video_rtmp_sessions_total") == 1
    # The refused key never became a stream, and the listener still serves the existing one.
    kvs_streams = [s["StreamName"] for s in pushed.kvs.list_streams()["StreamInfoList"]]
    assert missing not in kvs_streams, kvs_streams
    assert pushed.fragments() == pushed.pushed


def test_a_codec_other_than_h264_is_refused_without_harming_the_listener(pushed, tmp_path):
    """FLV's Sorenson H.263 (what `-c:v flv1` writes) stands for every video codec Sluice does
    not store (H.265 in legacy FLV and enhanced RTMP are refused by the same check: see the unit
    tests of rtmp/flv.rs; this ffmpeg cannot put H.265 in FLV)."""
    clip = make_source_clip(tmp_path / "h263.flv", 2, ["-c:v", "flv1", "-g", str(CLIP_FPS)])
    before = len(pushed.fragments())
    publisher = push(clip, pushed.url(pushed.name), tmp_path / "ffmpeg-h263.log")
    publisher.wait(timeout=WAIT_S)
    wait_until(lambda: metric(pushed.metrics(), "video_rtmp_errors_total", error_type="unsupported") == 1,
               "the unsupported codec counted", sluice=pushed.sluice)
    assert "Sorenson H.263" in pushed.sluice.stderr()
    assert len(pushed.fragments()) == before
    assert metric(pushed.metrics(), "video_rtmp_connected") == 0
    # The stream is free again: another publish is taken.
    again = push(pushed.clip, pushed.url(pushed.name), tmp_path / "ffmpeg-again.log")
    assert again.wait(timeout=WAIT_S) == 0, (tmp_path / "ffmpeg-again.log").read_text(errors="replace")
    after = wait_until(
        lambda: (lambda all_: all_ if len(all_) >= before + CLIP_SECONDS else None)(pushed.fragments()),
        "the second publish's fragments", sluice=pushed.sluice)
    # The second publish starts where the first ended, never before.
    first_end = pushed.pushed[-1]["ProducerTimestamp"].timestamp() + 1.0
    assert after[before]["ProducerTimestamp"].timestamp() >= first_end - 0.001, (pushed.pushed[-1], after[before])
    assert metric(pushed.metrics(), "video_rtmp_sessions_total") == 3


def test_a_server_killed_during_a_push_keeps_every_fragment_it_listed(tmp_path):
    """Sluice dies (SIGKILL, as a crash or a host going down would) while ffmpeg is pushing: the
    publisher sees its connection end and exits with an error instead of hanging, and after a
    restart on the same data directory every fragment listed before the kill is there and decodes
    to the clip's frames from its start."""
    first = Listening(tmp_path)
    clip = make_clip(tmp_path / "long.mp4", 12)
    source = frame_md5s(str(clip))
    publisher = push(clip, first.url(first.name), tmp_path / "ffmpeg-killed.log")
    try:
        listed = wait_until(lambda: (lambda all_: all_ if len(all_) >= 3 else None)(first.fragments()),
                            "three fragments while pushing", sluice=first.sluice)
        first.sluice.kill()
        code = publisher.wait(timeout=60)
        assert code != 0, "ffmpeg finished a push to a dead server"
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.wait(timeout=10)
        first.sluice.kill()
    again = Listening(tmp_path, data=tmp_path / "data", port=first.port, name=first.name)
    try:
        again.test_start_s = first.test_start_s
        kept = again.fragments()
        assert kept[:len(listed)] == listed, (listed, kept)
        whole = again.fragment_list_mkv(kept, tmp_path / "kept.mkv")
        decoded = frame_md5s(whole)
        assert len(decoded) >= len(listed) * CLIP_FPS, len(decoded)
        assert decoded == source[:len(decoded)]
    finally:
        again.sluice.kill()
