"""Helpers for the Kinesis Video Streams media tests: test clips made with ffmpeg, a minimal EBML
walker (enough to split a clip into its header and Clusters and to read the service's Tags), a
PutMedia client (`curl --aws-sigv4`, which signs a streamed body with the empty-payload hash, as
KVS producers do) and frame hashes.

No SDK has PutMedia (botocore's `kinesis-video-media` has only GetMedia), so the ingest side is
curl fed by a file paced cluster by cluster or by a live ffmpeg encoder. Every tool here is
required: a missing ffmpeg, ffprobe or curl fails the test loudly (scripts/test installs them).
"""

import datetime
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

ID_EBML = 0x1A45DFA3
ID_SEGMENT = 0x18538067
ID_INFO = 0x1549A966
ID_TRACKS = 0x1654AE6B
ID_CLUSTER = 0x1F43B675
ID_TAGS = 0x1254C367
ID_TAG = 0x7373
ID_SIMPLE_TAG = 0x67C8
ID_TAG_NAME = 0x45A3
ID_TAG_STRING = 0x4487
ID_TIMECODE = 0xE7
ID_SIMPLE_BLOCK = 0xA3
ID_BLOCK_GROUP = 0xA0
# The Segment children that end a Cluster of unknown size.
SEGMENT_CHILDREN = {0x114D9B74, ID_INFO, ID_TRACKS, ID_CLUSTER, 0x1C53BB6B, ID_TAGS, 0x1043A770, 0x1941A469}

CLIP_FPS = 25
CLIP_WIDTH = 320
CLIP_HEIGHT = 240

# ffmpeg's hls demuxer refuses URLs whose path does not end in a known extension; Sluice's HLS
# resources end in a query string (`getMP4MediaFragment.mp4?FragmentNumber=…`).
HLS_INPUT_FLAGS = ["-allowed_extensions", "ALL", "-allowed_segment_extensions", "ALL", "-extension_picky", "0"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not on PATH (scripts/test installs it with apt); these tests never skip")
    return path


def client(service: str, endpoint_url: str):
    return boto3.client(
        service, endpoint_url=endpoint_url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


def create_stream(kvs, name: str, retention_hours: int = 24, timeout_s: float = 20) -> str:
    """Creates a stream, waits until it is ACTIVE and returns its data endpoint."""
    kvs.create_stream(StreamName=name, DataRetentionInHours=retention_hours, MediaType="video/h264,audio/aac")
    deadline = time.monotonic() + timeout_s
    while kvs.describe_stream(StreamName=name)["StreamInfo"]["Status"] != "ACTIVE":
        assert time.monotonic() < deadline, f"{name} did not become ACTIVE in {timeout_s} s"
        time.sleep(0.05)
    return kvs.get_data_endpoint(StreamName=name, APIName="PUT_MEDIA")["DataEndpoint"]


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def list_all_fragments(archived, name: str, start_s: float) -> "list[dict]":
    """Every fragment of `name` whose producer time is after `start_s` - 60, sorted by producer
    timestamp (ListFragments pages through them)."""
    fragments, kwargs = [], {"StreamName": name, "FragmentSelector": {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": utc(start_s - 60), "EndTimestamp": utc(time.time() + 60)}}}
    while True:
        page = archived.list_fragments(**kwargs)
        fragments += page["Fragments"]
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return sorted(fragments, key=lambda f: f["ProducerTimestamp"])


def metric(text: str, name: str, **labels) -> float:
    """The value of one series of a /metrics text (no labels: the unlabelled series)."""
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    selector = re.escape("{" + rendered + "}") if labels else ""
    match = re.search(rf"^{re.escape(name)}{selector} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{rendered}}} is not in /metrics:\n{text[-3000:]}"
    return float(match.group(1))


def wait_until(predicate, what: str, timeout_s: float = 90, sluice=None):
    """Polls `predicate` until it returns something true, and returns that; fails after
    `timeout_s` with the server's stderr tail when `sluice` (a SluiceProcess) is given."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            stderr = sluice.stderr()[-6000:] if sluice is not None else ""
            raise AssertionError(f"{what} did not happen in {timeout_s} s\n{stderr}")
        time.sleep(0.2)


class IngestedStream:
    """What the RTSP and RTMP ingest tests read a stream through; a subclass sets `sluice` (a
    SluiceProcess), `kvs` (its kinesisvideo client), `name`, `archived` and `media` (its
    kinesis-video-archived-media and kinesis-video-media clients) and `test_start_s`."""

    def endpoint(self, api_name: str) -> str:
        return self.kvs.get_data_endpoint(StreamName=self.name, APIName=api_name)["DataEndpoint"]

    def fragments(self) -> "list[dict]":
        """Every fragment, sorted by producer timestamp."""
        return list_all_fragments(self.archived, self.name, self.test_start_s)

    def get_media_earliest(self) -> "list[Chunk]":
        """GetMedia from the first fragment to the live end (`media`: a kinesis-video-media
        client), split into its chunks."""
        response = self.media.get_media(StreamName=self.name, StartSelector={"StartSelectorType": "EARLIEST"})
        assert response["ContentType"] == "video/webm", response["ContentType"]
        return split_mkv(read_streaming(response["Payload"]))

    def hls_on_demand_url(self, first_s: float, seconds: float) -> str:
        """An ON_DEMAND fMP4 HLS session over the fragments whose producer time lies within
        `seconds` from about `first_s` (half a second of slack on either end)."""
        archived = client("kinesis-video-archived-media", self.endpoint("GET_HLS_STREAMING_SESSION_URL"))
        return archived.get_hls_streaming_session_url(
            StreamName=self.name, PlaybackMode="ON_DEMAND", ContainerFormat="FRAGMENTED_MP4",
            HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {
                "StartTimestamp": utc(first_s - 0.5), "EndTimestamp": utc(first_s + seconds - 0.5)}},
        )["HLSStreamingSessionURL"]

    def metrics(self) -> str:
        status, _, body = http_get(self.sluice.endpoint.rstrip("/") + "/metrics")
        assert status == 200, body
        return body.decode()


def source_frame_md5s(clip: pathlib.Path, frames: int) -> "list[str]":
    """The decoded frame MD5s of a source clip, which must hold `frames` frames."""
    md5s = frame_md5s(str(clip))
    assert len(md5s) == frames, len(md5s)
    return md5s


def check_fragment_a_second(fragments: "list[dict]", count: int, start_s: float):
    """ListFragments' view of `count` seconds of ingested (RTSP or RTMP) media with an IDR every
    second: one fragment per second of the source's timeline, each starting where the previous
    one ended, with increasing unique numbers; producer timestamps from the server's clock at the
    first frame (after `start_s`) plus the source's timeline; server timestamps in arrival order."""
    assert len(fragments) == count, fragments
    numbers = [int(f["FragmentNumber"]) for f in fragments]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert [f["FragmentLengthInMilliseconds"] for f in fragments] == [1000] * count, fragments
    producer = [f["ProducerTimestamp"].timestamp() for f in fragments]
    for earlier, later in zip(producer, producer[1:]):
        assert abs(later - earlier - 1.0) < 0.002, producer
    assert start_s - 1 < producer[0] < time.time(), producer
    server = [f["ServerTimestamp"].timestamp() for f in fragments]
    assert server == sorted(server), server
    assert all(start_s - 1 < s < time.time() for s in server), server
    assert all(f["FragmentSizeInBytes"] > 0 for f in fragments), fragments


def check_ingested_media(chunks: "list[Chunk]", fragments: "list[dict]", path: pathlib.Path,
                         source_md5s: "list[str]", audio_frames_min: int):
    """GetMedia's `chunks` of ingested (RTSP or RTMP) fragments: one per listed fragment, in order,
    tagged with its number and producer time, with the Cluster Timecode at that time and a header
    declaring H.264 and AAC; together they decode to `source_md5s`, and their 48 kHz AAC track to
    between `audio_frames_min` and 190 frames (4 s)."""
    numbers = [chunk.tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for chunk in chunks]
    assert numbers == [f["FragmentNumber"] for f in fragments], numbers
    for chunk, fragment in zip(chunks, fragments):
        assert len(chunk.clusters) == 1, chunk.tags
        producer = float(chunk.tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"])
        assert abs(producer - fragment["ProducerTimestamp"].timestamp()) < 0.0015, (chunk.tags, fragment)
        # The Cluster's Timecode is the producer timestamp (ms), as a KVS producer writes it.
        assert chunk.timecodes[0] == round(producer * 1000), (chunk.timecodes, producer)
        # The header declares H.264 on track 1 (CodecPrivate: the source's avcC) and AAC on 2.
        assert b"V_MPEG4/ISO/AVC" in chunk.header and b"A_AAC" in chunk.header
    whole = write(path, single_mkv(chunks))
    assert frame_md5s(whole) == source_md5s
    audio = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "a:0",
         "-show_entries", "stream=codec_name,sample_rate,nb_read_frames", "-of", "csv=p=0", whole],
        capture_output=True, text=True, timeout=120)
    assert audio.returncode == 0, audio.stderr
    codec, sample_rate, frames = audio.stdout.strip().split(",")
    assert (codec, sample_rate) == ("aac", "48000"), audio.stdout
    # 4 s of 48 kHz AAC is 187.5 frames of 1024 samples; those before the first keyframe are gone.
    assert audio_frames_min <= int(frames) <= 190, audio.stdout


# --- Test media --------------------------------------------------------------------------------

def clip_command(seconds: float, output: str, realtime: bool = False) -> "list[str]":
    """ffmpeg writing a PutMedia-like MKV: H.264 320x240 at 25 fps with a keyframe every 25
    frames, AAC audio, an unknown-size Segment and one Cluster per second (so one fragment per
    second). `realtime` paces the encoder at wall-clock speed (`-re`), like a camera.

    The Cluster time limit is 1.1 s, not 1 s: ffmpeg starts a Cluster at a video keyframe once
    the Cluster holds 4 KB, and at *any* packet once the time limit is passed. With 1000 ms an
    audio packet just before the keyframe opens the Cluster, the keyframe lands in the previous
    one and the last fragment is audio only."""
    return [
        tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        *(["-re"] if realtime else []),
        "-f", "lavfi", "-i", f"testsrc=size={CLIP_WIDTH}x{CLIP_HEIGHT}:rate={CLIP_FPS}",
        *(["-re"] if realtime else []),
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", str(CLIP_FPS), "-keyint_min", str(CLIP_FPS), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "64k",
        "-f", "matroska", "-live", "1", "-cluster_time_limit", "1100",
        output,
    ]


def make_source_clip(path: pathlib.Path, seconds: int, video_flags: "list[str]") -> pathlib.Path:
    """What a camera or encoder sends to ingest: testsrc 320x240 at 25 fps encoded with
    `video_flags`, plus a 440 Hz tone as AAC at 48 kHz, `seconds` long, in the container `path`
    names."""
    subprocess.run([
        tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "lavfi", "-i", f"testsrc=size={CLIP_WIDTH}x{CLIP_HEIGHT}:rate={CLIP_FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), *video_flags, "-c:a", "aac", "-b:a", "64k", str(path),
    ], check=True, timeout=120)
    return path


def x264_flags(b_frames: int) -> "list[str]":
    """libx264 with an IDR every second (so one fragment a second) and `b_frames` B-frames
    between references (0: presentation order is decode order, as cameras encode)."""
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-bf", str(b_frames),
            *(["-tune", "zerolatency"] if b_frames == 0 else []),
            "-g", str(CLIP_FPS), "-keyint_min", str(CLIP_FPS), "-sc_threshold", "0"]


def make_clip(path: pathlib.Path, seconds: float = 5) -> pathlib.Path:
    subprocess.run(clip_command(seconds, str(path)), check=True, timeout=120)
    return path


def frame_md5s(source: str, input_flags: "list[str] | None" = None) -> "list[str]":
    """The MD5 of every decoded video frame of `source` (a file or a URL), in order."""
    result = subprocess.run(
        [tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-nostdin", *(input_flags or []),
         "-i", source, "-map", "0:v", "-f", "framemd5", "-"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"ffmpeg could not decode {source}:\n{result.stderr[-4000:]}"
    return [line.rsplit(",", 1)[1].strip() for line in result.stdout.splitlines()
            if line and not line.startswith("#")]


def ffprobe(source: str, input_flags: "list[str] | None" = None) -> dict:
    """ffprobe's view of the first video stream and the format, with the frames counted."""
    result = subprocess.run(
        [tool("ffprobe"), "-v", "error", *(input_flags or []), "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height,nb_read_frames:format=format_name,duration",
         "-of", "json", source],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, f"ffprobe could not read {source}:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


# --- EBML --------------------------------------------------------------------------------------

def read_varint(data: bytes, at: int, keep_marker: bool) -> "tuple[int, int, bool]":
    """(value, length, all value bits set) of the EBML varint at `at`."""
    first = data[at]
    assert first != 0, f"invalid EBML varint at byte {at}"
    length = 8 - first.bit_length() + 1
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    all_ones = (first & ((1 << (8 - length)) - 1)) == (1 << (8 - length)) - 1
    for b in data[at + 1:at + length]:
        value = (value << 8) | b
        all_ones = all_ones and b == 0xFF
    assert at + length <= len(data), f"EBML varint at byte {at} runs past the end"
    return value, length, all_ones


def element_head(data: bytes, at: int) -> "tuple[int, int | None, int]":
    """(id, size or None when unknown, header length) of the element at `at`."""
    element_id, id_len, _ = read_varint(data, at, keep_marker=True)
    size, size_len, unknown = read_varint(data, at + id_len, keep_marker=False)
    return element_id, None if unknown else size, id_len + size_len


def children(data: bytes, start: int = 0, end: "int | None" = None):
    """(id, body start, body end) of each element in data[start:end] with a known size."""
    end = len(data) if end is None else end
    at = start
    while at < end:
        element_id, size, head = element_head(data, at)
        assert size is not None, f"element {element_id:#x} at byte {at} has an unknown size"
        yield element_id, at + head, at + head + size
        at += head + size


def uint(body: bytes) -> int:
    return int.from_bytes(body, "big") if body else 0


@dataclass
class Chunk:
    """One EBML document's worth of an MKV stream: what precedes the first Cluster (EBML header,
    Segment start, Info, Tracks, any Tags) and the Clusters with their Timecodes."""
    header: bytes
    tags: "dict[str, str]" = field(default_factory=dict)
    clusters: "list[bytes]" = field(default_factory=list)
    timecodes: "list[int]" = field(default_factory=list)


def split_mkv(data: bytes) -> "list[Chunk]":
    """Splits concatenated MKV documents (a GetMedia payload, or one producer file) into chunks.
    Segments and Clusters of unknown size end at the next Segment child or EBML header."""
    chunks: "list[Chunk]" = []
    at = 0
    while at < len(data):
        ebml_at = at
        element_id, size, head = element_head(data, at)
        assert element_id == ID_EBML, f"expected an EBML header at byte {at}, found {element_id:#x}"
        at += head + size
        element_id, segment_size, head = element_head(data, at)
        assert element_id == ID_SEGMENT, f"expected a Segment at byte {at}, found {element_id:#x}"
        at += head
        segment_end = len(data) if segment_size is None else at + segment_size
        chunk = Chunk(header=b"")
        header_end = None
        while at < segment_end:
            element_id, size, head = element_head(data, at)
            if element_id == ID_EBML:
                break
            if element_id == ID_CLUSTER:
                if header_end is None:
                    header_end = at
                body_start = at + head
                if size is None:
                    end = body_start
                    while end < segment_end:
                        child_id, child_size, child_head = element_head(data, end)
                        if child_id in SEGMENT_CHILDREN or child_id == ID_EBML:
                            break
                        assert child_size is not None
                        end += child_head + child_size
                else:
                    end = body_start + size
                timecode = None
                for child_id, child_start, child_end in children(data, body_start, end):
                    if child_id == ID_TIMECODE:
                        timecode = uint(data[child_start:child_end])
                assert timecode is not None, f"the Cluster at byte {at} has no Timecode"
                chunk.clusters.append(data[at:end])
                chunk.timecodes.append(timecode)
                at = end
                continue
            assert size is not None, f"element {element_id:#x} at byte {at} has an unknown size"
            if element_id == ID_TAGS:
                chunk.tags.update(read_tags(data[at + head:at + head + size]))
            at += head + size
        chunk.header = data[ebml_at:header_end if header_end is not None else at]
        chunks.append(chunk)
    return chunks


def read_tags(body: bytes) -> "dict[str, str]":
    """Name → string value of every SimpleTag in a Tags body."""
    tags = {}
    for tag_id, tag_start, tag_end in children(body):
        if tag_id != ID_TAG:
            continue
        for simple_id, simple_start, simple_end in children(body, tag_start, tag_end):
            if simple_id != ID_SIMPLE_TAG:
                continue
            name = value = None
            for child_id, child_start, child_end in children(body, simple_start, simple_end):
                if child_id == ID_TAG_NAME:
                    name = body[child_start:child_end].decode().rstrip("\0")
                elif child_id == ID_TAG_STRING:
                    value = body[child_start:child_end].decode().rstrip("\0")
            if name is not None:
                tags[name] = value
    return tags


def single_mkv(chunks: "list[Chunk]") -> bytes:
    """One MKV document: the first chunk's header followed by every chunk's Clusters. ffmpeg's
    matroska demuxer stops at a second EBML header, so a GetMedia payload is decoded this way."""
    assert chunks, "no chunk"
    return chunks[0].header + b"".join(cluster for chunk in chunks for cluster in chunk.clusters)


def chunk_frame_md5s(chunks: "list[Chunk]", directory: pathlib.Path) -> "list[str]":
    """The video frame MD5s of each chunk decoded on its own, concatenated. Chunks out of time
    order (GetMediaForFragmentList in a chosen order) cannot go through one ffmpeg run: it drops
    frames whose timestamps go backwards."""
    md5s = []
    for i, chunk in enumerate(chunks):
        path = directory / f"chunk-{i}.mkv"
        path.write_bytes(single_mkv([chunk]))
        md5s += frame_md5s(str(path))
    return md5s


# --- PutMedia ----------------------------------------------------------------------------------

@dataclass
class PutMediaResult:
    status: int
    acks: "list[dict]"
    body: str
    stderr: str


class PutMedia:
    """A PutMedia request made by curl (`-T -`: a chunked body signed with the empty-payload hash),
    fed from a thread: a file paced Cluster by Cluster, a file at full speed, or a live encoder.
    `acks` grows as the ack lines arrive (curl -N writes the response body as it streams)."""

    def __init__(self, endpoint: str, stream_name: str, *, clip: "pathlib.Path | None" = None,
                 body: "bytes | None" = None, live_seconds: "float | None" = None, paced: bool = True,
                 timecode_type: str = "RELATIVE", producer_start_s: "float | None" = None):
        assert sum(x is not None for x in (clip, body, live_seconds)) == 1
        self.producer_start_s = time.time() if producer_start_s is None else producer_start_s
        self.acks: "list[dict]" = []
        self.raw_lines: "list[str]" = []
        self.sent_clusters = 0
        # For each entry of `acks`: how many Clusters had been sent when it arrived.
        self.sent_at_ack: "list[int]" = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.curl = subprocess.Popen(
            [tool("curl"), "-sS", "-N", "-X", "POST", "-T", "-",
             "--aws-sigv4", f"aws:amz:{REGION}:kinesisvideo", "--user", f"{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}",
             "-H", f"x-amzn-stream-name: {stream_name}",
             "-H", f"x-amzn-fragment-timecode-type: {timecode_type}",
             "-H", f"x-amzn-producer-start-timestamp: {self.producer_start_s:.3f}",
             "-H", "x-amzn-fragment-acknowledgment-required: 1",
             "-H", "Content-Type: application/json",
             "-w", "\n%{http_code}\n",
             f"{endpoint.rstrip('/')}/putMedia"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.encoder = None
        if live_seconds is not None:
            self.encoder = subprocess.Popen(clip_command(live_seconds, "pipe:1", realtime=True),
                                            stdout=self.curl.stdin, stdin=subprocess.DEVNULL)
            # curl's stdin belongs to the encoder now; curl sees the end when the encoder exits.
            self.curl.stdin.close()
            self._feeder = None
        else:
            data = body if body is not None else clip.read_bytes()
            self._feeder = threading.Thread(target=self._feed, args=(data, paced and clip is not None), daemon=True)
            self._feeder.start()
        self._stderr_lines: "list[bytes]" = []
        threading.Thread(target=lambda: self._stderr_lines.extend(self.curl.stderr), daemon=True).start()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _feed(self, data: bytes, paced: bool):
        try:
            if not paced:
                self.curl.stdin.write(data)
            else:
                # Real-time pace: a Cluster goes out once its last frame would have been filmed,
                # i.e. when the next Cluster begins.
                [chunk] = split_mkv(data)
                self.curl.stdin.write(chunk.header)
                self.curl.stdin.flush()
                start = time.monotonic()
                for i, cluster in enumerate(chunk.clusters):
                    due = (chunk.timecodes[i + 1] if i + 1 < len(chunk.timecodes) else chunk.timecodes[i] + 1000) / 1000
                    time.sleep(max(0.0, start + due - time.monotonic()))
                    self.curl.stdin.write(cluster)
                    self.curl.stdin.flush()
                    self.sent_clusters += 1
            self.curl.stdin.close()
        except (BrokenPipeError, ValueError):
            pass

    def _read(self):
        for raw in self.curl.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            with self._arrived:
                self.raw_lines.append(line)
                if line.startswith("{"):
                    self.sent_at_ack.append(self.sent_clusters)
                    try:
                        self.acks.append(json.loads(line))
                    except ValueError:
                        self.acks.append({"unparseable": line})
                self._arrived.notify_all()

    def wait_for(self, predicate, timeout_s: float = 30) -> "list[dict]":
        """Waits until `predicate(acks)` holds; returns a copy of the acks."""
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while not predicate(self.acks):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"acks so far: {self.acks}; curl stderr: {self.stderr()}"
                self._arrived.wait(remaining)
            return list(self.acks)

    def stderr(self) -> str:
        return b"".join(self._stderr_lines).decode(errors="replace")

    def finish(self, timeout_s: float = 60) -> PutMediaResult:
        """Waits for the body to end and the response to end; the HTTP status is curl's `-w`."""
        if self.encoder is not None:
            self.encoder.wait(timeout=timeout_s)
        if self._feeder is not None:
            self._feeder.join(timeout_s)
        self.curl.wait(timeout=timeout_s)
        self._reader.join(10)
        with self._lock:
            lines = list(self.raw_lines)
            acks = list(self.acks)
        assert lines and lines[-1].isdigit(), f"curl wrote no status line: {lines}; stderr: {self.stderr()}"
        status = int(lines[-1])
        return PutMediaResult(status=status, acks=acks, body="\n".join(lines[:-1]), stderr=self.stderr())

    def kill(self):
        for proc in (self.encoder, self.curl):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def fragment_acks(acks: "list[dict]") -> "list[dict]":
    """The acks other than IDLE (which may appear whenever no data arrived for 3 s)."""
    return [a for a in acks if a.get("EventType") != "IDLE"]


def persisted(acks: "list[dict]") -> "list[str]":
    return [a["FragmentNumber"] for a in acks if a.get("EventType") == "PERSISTED"]


def check_ack_sequence(acks: "list[dict]", timecodes: "list[int] | None" = None) -> "list[dict]":
    """Asserts the per-fragment ack order (BUFFERING, RECEIVED, PERSISTED, same number and
    timecode), strictly increasing fragment numbers and no ERROR; returns one dict per fragment
    with its number and timecode, in ingest order."""
    fragments: "dict[str, list[dict]]" = {}
    order: "list[str]" = []
    for ack in fragment_acks(acks):
        assert set(ack) <= {"EventType", "FragmentTimecode", "FragmentNumber", "ErrorId"}, ack
        assert ack["EventType"] in ("BUFFERING", "RECEIVED", "PERSISTED"), f"unexpected ack {ack} in {acks}"
        number = ack["FragmentNumber"]
        assert isinstance(number, str) and number.isdigit(), ack
        assert isinstance(ack["FragmentTimecode"], int), ack
        if number not in fragments:
            assert ack["EventType"] == "BUFFERING", f"fragment {number} did not start with BUFFERING: {acks}"
            if order:
                assert int(number) > int(order[-1]), f"fragment numbers do not increase: {order[-1]} then {number}"
            order.append(number)
            fragments[number] = []
        fragments[number].append(ack)
    result = []
    for number in order:
        events = fragments[number]
        assert [a["EventType"] for a in events] == ["BUFFERING", "RECEIVED", "PERSISTED"], (number, events)
        assert len({a["FragmentTimecode"] for a in events}) == 1, events
        result.append({"FragmentNumber": number, "FragmentTimecode": events[0]["FragmentTimecode"]})
    if timecodes is not None:
        assert [f["FragmentTimecode"] for f in result] == timecodes, (result, timecodes)
    return result


def put_clip(endpoint: str, stream_name: str, clip: pathlib.Path, paced: bool = False, **kwargs) -> PutMediaResult:
    put = PutMedia(endpoint, stream_name, clip=clip, paced=paced, **kwargs)
    try:
        return put.finish()
    finally:
        put.kill()


def read_streaming(body, timeout_s: float = 60) -> bytes:
    """Reads a botocore StreamingBody to its end."""
    deadline = time.monotonic() + timeout_s
    parts = []
    while True:
        part = body.read(65536)
        if not part:
            return b"".join(parts)
        parts.append(part)
        assert time.monotonic() < deadline, f"the payload did not end in {timeout_s} s"


def write(path: pathlib.Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def http_get(url: str, timeout_s: float = 30) -> "tuple[int, dict, bytes]":
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def env_without_proxy() -> dict:
    env = dict(os.environ)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env
