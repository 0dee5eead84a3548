"""Kinesis Video Streams on Sluice: PutMedia streams per core with their ack latency, HLS fragment
serving throughput, and the delay of LIVE HLS. Prints one JSON document (scripts/perf.sh turns it
into the "Video" section of docs/PERFORMANCE.md).

The clip is made once with ffmpeg: H.264 testsrc2 at 25 fps, a keyframe every second, 2 Mbit/s
(`-b:v 2M -maxrate 2M -bufsize 2M`), a live MKV with one Cluster (so one fragment) per second.
Sluice runs with `--cores 1`, pinned with taskset to SERVER_CPU; this process pins itself to
CLIENT_CPU. Every phase starts a fresh server on a fresh data directory.

1. PutMedia streams: for each N of VIDEO_STREAMS, N PutMedia sessions each send the clip paced at
   real time (a Cluster goes out when its last frame would have been filmed), their starts spread
   over one second. The sender is this file's own HTTP/1.1 client on a raw socket with a chunked
   body, so it knows when the last byte of each Cluster went into the socket; the RECEIVED and
   PERSISTED latencies are the arrival of those acks minus that instant. A level is sustained
   when no ERROR ack came, every fragment was PERSISTED, PERSISTED p99 stayed within one fragment
   (1 s) and no Cluster left more than 200 ms after its due time (a late send means the socket
   pushed back). Levels stop after the first one that is not sustained.
2. HLS serving: the clip is ingested unpaced into one stream; an ON_DEMAND HLS session lists its
   fragments, and VIDEO_SERVE_CLIENTS threads, each on one keep-alive connection, fetch
   getMP4MediaFragment.mp4 round-robin for VIDEO_SERVE_SECONDS.
3. LIVE HLS delay: one paced session of VIDEO_G2G_FRAGMENTS fragments while a LIVE HLS session's
   video media playlist is polled every 100 ms; each fragment's delay is the time from the last
   byte of its Cluster leaving the producer to the end of the first fetch of its
   getMP4MediaFragment.mp4 once listed. No display is involved.

Usage: SLUICE_BIN=target/release/sluice python3 perf/video/measure.py [OUT.json]
Knobs (environment): VIDEO_STREAMS=1,4,16,64,256,512,1024  VIDEO_CLIP_SECONDS=20  VIDEO_RESOLUTION=1280x720
VIDEO_SERVE_SECONDS=10  VIDEO_SERVE_CLIENTS=8  VIDEO_G2G_FRAGMENTS=20  VIDEO_SCRATCH=/var/tmp
SERVER_CPU=0  CLIENT_CPU=1  VIDEO_CLIP (an existing clip made by this script)
"""

import datetime
import http.client
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import boto3
from botocore.config import Config

SLUICE_BIN = os.environ.get("SLUICE_BIN", "target/release/sluice")
STREAM_COUNTS = [int(x) for x in os.environ.get("VIDEO_STREAMS", "1,4,16,64,256,512,1024").split(",") if x.strip()]
CLIP_SECONDS = int(os.environ.get("VIDEO_CLIP_SECONDS", "20"))
RESOLUTION = os.environ.get("VIDEO_RESOLUTION", "1280x720")
SERVE_SECONDS = float(os.environ.get("VIDEO_SERVE_SECONDS", "10"))
SERVE_CLIENTS = int(os.environ.get("VIDEO_SERVE_CLIENTS", "8"))
G2G_FRAGMENTS = int(os.environ.get("VIDEO_G2G_FRAGMENTS", "20"))
SCRATCH = os.environ.get("VIDEO_SCRATCH", "/var/tmp")
SERVER_CPU = int(os.environ.get("SERVER_CPU", "0"))
CLIENT_CPU = int(os.environ.get("CLIENT_CPU", "1"))
FPS = 25
BITRATE = "2M"
FRAGMENT_MS = 1000
POLL_S = 0.1
# A Cluster sent later than this after its due time means the socket pushed back.
SEND_LATE_MS_MAX = 200
REGION = "us-east-1"
# Any well-formed SigV4 Authorization is accepted on loopback by a server without credentials.
AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/kinesisvideo/aws4_request, "
                 "SignedHeaders=host;x-amz-date, Signature=00")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"[video/measure.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(xs, q):
    """Nearest-rank percentile; None for no samples."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * len(xs) + 0.5)) - 1))]


def ms(x):
    return None if x is None else round(x * 1000, 1)


def cpu_seconds(pid="self"):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


# --- the clip -----------------------------------------------------------------------------------

def clip_command(path):
    width, height = RESOLUTION.split("x")
    return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={FPS}", "-t", str(CLIP_SECONDS),
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
            "-b:v", BITRATE, "-maxrate", BITRATE, "-bufsize", BITRATE,
            # 1.1 s, not 1 s: ffmpeg opens a Cluster at any packet once the limit has passed, and at a
            # keyframe before that; the size limit keeps a 2 Mbit/s second in one Cluster.
            "-f", "matroska", "-live", "1", "-cluster_time_limit", "1100", "-cluster_size_limit", "8000000",
            str(path)]


def read_varint(data, at, keep_marker):
    first = data[at]
    assert first != 0, f"invalid EBML varint at byte {at}"
    length = 9 - first.bit_length()
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    all_ones = value == (1 << (8 - length)) - 1 and not keep_marker
    for b in data[at + 1:at + length]:
        value = (value << 8) | b
        all_ones = all_ones and b == 0xFF
    return value, length, all_ones


def element_head(data, at):
    """(id, size or None when unknown, header length) of the EBML element at `at`."""
    element_id, id_len, _ = read_varint(data, at, keep_marker=True)
    size, size_len, unknown = read_varint(data, at + id_len, keep_marker=False)
    return element_id, None if unknown else size, id_len + size_len


class Clip:
    """The clip split into what precedes the first Cluster and the Clusters with their Timecodes.
    ffmpeg writes a live MKV with an unknown-size Segment and known-size Clusters."""

    def __init__(self, path):
        data = path.read_bytes()
        element_id, size, head = element_head(data, 0)
        assert element_id == 0x1A45DFA3, "no EBML header"
        at = head + size
        element_id, _, head = element_head(data, at)
        assert element_id == 0x18538067, "no Segment"
        at += head
        self.header, self.clusters, self.timecodes = None, [], []
        while at < len(data):
            element_id, size, head = element_head(data, at)
            assert size is not None, f"element {element_id:#x} at byte {at} has an unknown size"
            if element_id == 0x1F43B675:
                if self.header is None:
                    self.header = data[:at]
                child_at = at + head
                while True:  # ffmpeg may put a CRC-32 element before the Timecode
                    child_id, child_size, child_head = element_head(data, child_at)
                    if child_id == 0xE7:
                        break
                    child_at += child_head + child_size
                    assert child_at < at + head + size, f"the Cluster at byte {at} has no Timecode"
                body = data[child_at + child_head:child_at + child_head + child_size]
                self.timecodes.append(int.from_bytes(body, "big"))
                self.clusters.append(data[at:at + head + size])
            at += head + size
        assert self.timecodes == [i * FRAGMENT_MS for i in range(len(self.timecodes))], self.timecodes
        self.bytes = len(data)
        self.mbit_per_s = sum(len(c) for c in self.clusters) * 8 / 1e6 / (len(self.clusters) * FRAGMENT_MS / 1000)


# --- the server ---------------------------------------------------------------------------------

def server_args(data_dir):
    return [SLUICE_BIN, "serve", "--cores", "1", "--pin-cores", "false", "--data-dir", data_dir,
            "--http-addr", "127.0.0.1:0", "--binary-addr", "off", "--create-delay-ms", "0",
            "--delete-delay-ms", "0", "--update-delay-ms", "0", "--shard-limit", "10000"]


class Server:
    def __init__(self, name, log_dir):
        self.data_dir = tempfile.mkdtemp(prefix=f"sluice-video-{name}-", dir=SCRATCH)
        self.args = server_args(self.data_dir)
        self.log = open(pathlib.Path(log_dir) / f"sluice-video-{name}.log", "wb")
        self.proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *self.args], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        # The server picks a free port and names it on its first line of output.
        deadline = time.monotonic() + 30
        log_path = pathlib.Path(log_dir) / f"sluice-video-{name}.log"
        while True:
            found = re.search(rb"serving Kinesis on http://127\.0\.0\.1:(\d+)", log_path.read_bytes())
            if found:
                self.port = int(found.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sluice did not start (exit status {self.proc.returncode}); see {log_path}")
            time.sleep(0.05)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.kvs = client("kinesisvideo", self.endpoint)

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def create_stream(self, name):
        self.kvs.create_stream(StreamName=name, DataRetentionInHours=24, MediaType="video/h264")
        deadline = time.monotonic() + 30
        while self.kvs.describe_stream(StreamName=name)["StreamInfo"]["Status"] != "ACTIVE":
            assert time.monotonic() < deadline, f"{name} did not become ACTIVE"
            time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="a",
                        aws_secret_access_key="b",
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=60))


# --- PutMedia -----------------------------------------------------------------------------------

class PutMediaSession:
    """One PutMedia request on its own socket: a sender thread writes the chunked body Cluster by
    Cluster, a reader thread decodes the chunked response into acks and stamps each on arrival."""

    def __init__(self, port, stream, clip, start_at, paced=True, producer_start_s=None):
        self.port = port
        self.stream, self.clip, self.start_at, self.paced = stream, clip, start_at, paced
        self.producer_start_s = producer_start_s
        self.sent_at = {}  # FragmentTimecode -> monotonic time the Cluster's last byte was written
        self.late_s = []
        self.acks = []  # (monotonic arrival, ack)
        self.bytes_sent = 0
        self.status = None
        self.error = None
        self.persisted = threading.Condition()
        self.threads = [threading.Thread(target=self._guard, args=(self._send,), daemon=True),
                        threading.Thread(target=self._guard, args=(self._read,), daemon=True)]
        self.sock = None

    def start(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for t in self.threads:
            t.start()

    def join(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if self.sock is not None:
            self.sock.close()

    def _guard(self, body):
        try:
            body()
        except Exception as error:  # noqa: BLE001 - reported per session in the JSON
            self.error = self.error or f"{type(error).__name__}: {error}"
        finally:
            with self.persisted:
                self.persisted.notify_all()

    def _send(self):
        while time.monotonic() < self.start_at:
            time.sleep(self.start_at - time.monotonic())
        start_s = self.producer_start_s if self.producer_start_s is not None else time.time()
        head = (f"POST /putMedia HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"X-Amz-Date: {datetime.datetime.now(datetime.timezone.utc):%Y%m%dT%H%M%SZ}\r\n"
                f"Authorization: {AUTHORIZATION}\r\nx-amzn-stream-name: {self.stream}\r\n"
                f"x-amzn-fragment-timecode-type: RELATIVE\r\nx-amzn-producer-start-timestamp: {start_s:.3f}\r\n"
                "x-amzn-fragment-acknowledgment-required: 1\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n").encode()
        self.sock.sendall(head + b"%x\r\n" % len(self.clip.header) + self.clip.header + b"\r\n")
        started = time.monotonic()
        for i, cluster in enumerate(self.clip.clusters):
            timecode = self.clip.timecodes[i]
            if self.paced:
                # A Cluster goes out once its last frame would have been filmed.
                due = started + (timecode + FRAGMENT_MS) / 1000
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                self.late_s.append(max(0.0, time.monotonic() - due))
            self.sock.sendall(b"%x\r\n" % len(cluster) + cluster + b"\r\n")
            self.sent_at[timecode] = time.monotonic()
            self.bytes_sent += len(cluster)
        self.sock.sendall(b"0\r\n\r\n")

    def _read(self):
        rfile = self.sock.makefile("rb")
        status_line = rfile.readline()
        self.status = int(status_line.split()[1])
        chunked = False
        length = None
        while True:
            line = rfile.readline()
            assert line, "the response ended within its headers"
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name.strip().lower() == "content-length":
                length = int(value)
        pending = b""
        while True:
            if chunked:
                size = int(rfile.readline().split(b";")[0], 16)
                data = rfile.read(size) if size else b""
                rfile.readline()
            else:
                data = rfile.read1(65536) if length is None else rfile.read(length)
                size = len(data)
            now = time.monotonic()
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                line = line.strip()
                if line.startswith(b"{"):
                    self.acks.append((now, json.loads(line)))
                    with self.persisted:
                        self.persisted.notify_all()
            if size == 0 or (not chunked and length is not None):
                break
        if pending.strip().startswith(b"{"):
            self.acks.append((time.monotonic(), json.loads(pending)))

    def latencies(self, event_type):
        out = []
        for arrived, ack in self.acks:
            if ack.get("EventType") == event_type and ack.get("FragmentTimecode") in self.sent_at:
                out.append(max(0.0, arrived - self.sent_at[ack["FragmentTimecode"]]))
        return out

    def fragment_numbers(self):
        """FragmentTimecode -> FragmentNumber of every PERSISTED fragment."""
        return {a["FragmentTimecode"]: a["FragmentNumber"] for _, a in self.acks if a.get("EventType") == "PERSISTED"}

    def errors(self):
        return [a for _, a in self.acks if a.get("EventType") == "ERROR"]

    def wait_persisted(self, count, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self.persisted:
            while len(self.fragment_numbers()) < count and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.persisted.wait(remaining)
        return len(self.fragment_numbers()) >= count


def put_media_level(n, clip, log_dir):
    server = Server(f"putmedia-{n}", log_dir)
    try:
        names = [f"perf-{n}-{i}" for i in range(n)]
        for name in names:
            server.create_stream(name)
        base = time.monotonic() + 1.0
        sessions = [PutMediaSession(server.port, name, clip, base + i / n) for i, name in enumerate(names)]
        for s in sessions:
            s.start()
        server_cpu0, client_cpu0, wall0 = server.cpu_seconds(), cpu_seconds(), time.monotonic()
        for s in sessions:
            s.join(timeout_s=max(60.0, base + 1 + len(clip.clusters) * 3 - time.monotonic()))
        wall = time.monotonic() - wall0
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu0, cpu_seconds() - client_cpu0
    finally:
        server.stop()
    received = [x for s in sessions for x in s.latencies("RECEIVED")]
    persisted = [x for s in sessions for x in s.latencies("PERSISTED")]
    late = [x for s in sessions for x in s.late_s]
    errors = [e for s in sessions for e in s.errors()]
    failures = [s.error for s in sessions if s.error] + [f"HTTP {s.status}" for s in sessions if s.status != 200]
    fragments = n * len(clip.clusters)
    persisted_all = sum(len(s.fragment_numbers()) for s in sessions)
    sustained = (not errors and not failures and persisted_all == fragments
                 and percentile(persisted, 99) is not None and percentile(persisted, 99) * 1000 <= FRAGMENT_MS
                 and (percentile(late, 99) or 0) * 1000 <= SEND_LATE_MS_MAX)
    result = {
        "streams": n, "sustained": sustained, "fragments": fragments, "fragments_persisted": persisted_all,
        "error_acks": len(errors), "failures": failures[:5],
        # Each session's rate over its own sending time, summed: the starts are spread over 1 s.
        "mbit_per_s": round(sum(s.bytes_sent * 8 / 1e6 / (max(s.sent_at.values()) - s.start_at)
                                for s in sessions if s.sent_at), 1),
        "received_ms_p50": ms(percentile(received, 50)), "received_ms_p99": ms(percentile(received, 99)),
        "persisted_ms_p50": ms(percentile(persisted, 50)), "persisted_ms_p99": ms(percentile(persisted, 99)),
        "persisted_ms_max": ms(max(persisted) if persisted else None),
        "send_late_ms_p99": ms(percentile(late, 99)), "send_late_ms_max": ms(max(late) if late else None),
        "server_cpu_pct": round(100 * server_cpu / wall, 1), "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "seconds": round(wall, 1),
    }
    log(f"PutMedia x{n}: {json.dumps(result)}")
    return result


# --- HLS ----------------------------------------------------------------------------------------

def http_get(url, timeout_s=30):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def video_media_playlist(master_url):
    status, body = http_get(master_url)
    assert status == 200, body[:500]
    variants = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    assert variants, body
    return urllib.parse.urljoin(master_url, variants[0])


def segment_urls(media_url, text):
    return [urllib.parse.urljoin(media_url, line) for line in text.splitlines()
            if "getMP4MediaFragment.mp4" in line and not line.startswith("#")]


def ingest_unpaced(server, name, clip):
    server.create_stream(name)
    # Timestamps in the past: the whole clip ends a few seconds before now.
    session = PutMediaSession(server.port, name, clip, time.monotonic(), paced=False,
                              producer_start_s=round(time.time() - len(clip.clusters) - 5, 3))
    session.start()
    assert session.wait_persisted(len(clip.clusters), 120), (session.error, session.acks[-3:])
    session.join(30)
    return session


def hls_serving(clip, log_dir):
    server = Server("hls-serving", log_dir)
    try:
        session = ingest_unpaced(server, "perf-hls", clip)
        start_s = session.producer_start_s
        archived = client("kinesis-video-archived-media", server.endpoint)
        master = archived.get_hls_streaming_session_url(
            StreamName="perf-hls", PlaybackMode="ON_DEMAND", ContainerFormat="FRAGMENTED_MP4",
            HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": {
                "StartTimestamp": datetime.datetime.fromtimestamp(start_s - 1, tz=datetime.timezone.utc),
                "EndTimestamp": datetime.datetime.fromtimestamp(start_s + 3600, tz=datetime.timezone.utc)}},
        )["HLSStreamingSessionURL"]
        media_url = video_media_playlist(master)
        status, body = http_get(media_url)
        assert status == 200, body[:500]
        urls = segment_urls(media_url, body.decode())
        assert len(urls) == len(clip.clusters), (len(urls), body[:1000])
        counts = [[0, 0, []] for _ in range(SERVE_CLIENTS)]  # fragments, bytes, seconds per fetch
        failures = []
        stop_at = [0.0]

        def fetch(worker):
            parts = urllib.parse.urlsplit(urls[0])
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            i = worker
            mine = counts[worker]
            try:
                while time.monotonic() < stop_at[0]:
                    target = urllib.parse.urlsplit(urls[i % len(urls)])
                    t0 = time.monotonic()
                    conn.request("GET", f"{target.path}?{target.query}")
                    response = conn.getresponse()
                    data = response.read()
                    if response.status != 200:
                        failures.append(f"HTTP {response.status}")
                        return
                    mine[0] += 1
                    mine[1] += len(data)
                    mine[2].append(time.monotonic() - t0)
                    i += 1
            except Exception as error:  # noqa: BLE001 - reported in the JSON
                failures.append(f"{type(error).__name__}: {error}")
            finally:
                conn.close()

        threads = [threading.Thread(target=fetch, args=(w,), daemon=True) for w in range(SERVE_CLIENTS)]
        server_cpu0, client_cpu0, t0 = server.cpu_seconds(), cpu_seconds(), time.monotonic()
        stop_at[0] = t0 + SERVE_SECONDS
        for t in threads:
            t.start()
        for t in threads:
            t.join(SERVE_SECONDS + 60)
        wall = time.monotonic() - t0
        server_cpu, client_cpu = server.cpu_seconds() - server_cpu0, cpu_seconds() - client_cpu0
    finally:
        server.stop()
    fragments = sum(c[0] for c in counts)
    fetch_s = [x for c in counts for x in c[2]]
    result = {
        "clients": SERVE_CLIENTS, "seconds": round(wall, 2), "distinct_fragments": len(urls),
        "fragment_bytes_mean": round(sum(c[1] for c in counts) / max(1, fragments)),
        "fragments": fragments, "fragments_per_s": round(fragments / wall, 1),
        "mb_per_s": round(sum(c[1] for c in counts) / 1e6 / wall, 1),
        "fetch_ms_p50": ms(percentile(fetch_s, 50)), "fetch_ms_p99": ms(percentile(fetch_s, 99)),
        "server_cpu_pct": round(100 * server_cpu / wall, 1), "client_cpu_pct": round(100 * client_cpu / wall, 1),
        "failures": failures[:5],
    }
    log(f"HLS serving: {json.dumps(result)}")
    return result


def live_hls_delay(clip, log_dir):
    fragments = min(G2G_FRAGMENTS, len(clip.clusters))
    server = Server("hls-live", log_dir)
    try:
        server.create_stream("perf-live")
        part = Clip.__new__(Clip)
        part.header, part.clusters, part.timecodes = clip.header, clip.clusters[:fragments], clip.timecodes[:fragments]
        session = PutMediaSession(server.port, "perf-live", part, time.monotonic())
        session.start()
        assert session.wait_persisted(1, 30), (session.error, session.acks)
        archived = client("kinesis-video-archived-media", server.endpoint)
        master = archived.get_hls_streaming_session_url(
            StreamName="perf-live", PlaybackMode="LIVE", ContainerFormat="FRAGMENTED_MP4")["HLSStreamingSessionURL"]
        media_url = video_media_playlist(master)
        parts = urllib.parse.urlsplit(media_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        listed, fetched, skipped = {}, {}, set()
        polls, first_poll = 0, True
        tick = time.monotonic()
        deadline = tick + fragments * FRAGMENT_MS / 1000 + 30
        while len(fetched) + len(skipped) < fragments and time.monotonic() < deadline:
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            text = response.read().decode()
            polls += 1
            now = time.monotonic()
            for url in segment_urls(media_url, text):
                number = re.search(r"FragmentNumber=(\d+)", url).group(1)
                if number in listed or number in skipped:
                    continue
                if first_poll:
                    # Listed before polling began: its delay would be the polling start, not the server's.
                    skipped.add(number)
                    continue
                listed[number] = now
                target = urllib.parse.urlsplit(url)
                conn.request("GET", f"{target.path}?{target.query}")
                response = conn.getresponse()
                body = response.read()
                assert response.status == 200, body[:500]
                fetched[number] = time.monotonic()
            first_poll = False
            tick += POLL_S
            time.sleep(max(0.0, tick - time.monotonic()))
        conn.close()
        session.join(30)
    finally:
        server.stop()
    number_to_timecode = {v: k for k, v in session.fragment_numbers().items()}
    listed_s = [listed[n] - session.sent_at[number_to_timecode[n]] for n in listed if n in number_to_timecode]
    fetched_s = [fetched[n] - session.sent_at[number_to_timecode[n]] for n in fetched if n in number_to_timecode]
    persisted = session.latencies("PERSISTED")
    result = {
        "fragments_sent": fragments, "fragments_measured": len(fetched_s), "fragments_skipped": len(skipped),
        "poll_ms": POLL_S * 1000, "polls": polls, "fragment_ms": FRAGMENT_MS,
        "listed_ms_p50": ms(percentile(listed_s, 50)), "listed_ms_p99": ms(percentile(listed_s, 99)),
        "fetched_ms_p50": ms(percentile(fetched_s, 50)), "fetched_ms_p99": ms(percentile(fetched_s, 99)),
        "persisted_ms_p50": ms(percentile(persisted, 50)),
        # What 1 s fragments cost before any server delay: the first frame of a fragment waits for
        # the whole fragment to be filmed, the average frame for half of it.
        "fragment_floor_first_frame_ms": FRAGMENT_MS, "fragment_floor_mean_frame_ms": FRAGMENT_MS / 2,
    }
    log(f"LIVE HLS: {json.dumps(result)}")
    return result


def main():
    os.sched_setaffinity(0, {CLIENT_CPU})
    out_path = sys.argv[1] if len(sys.argv) > 1 else None
    log_dir = pathlib.Path(out_path).parent if out_path else pathlib.Path(tempfile.gettempdir())
    clip_path = pathlib.Path(os.environ.get("VIDEO_CLIP") or log_dir / f"clip-{RESOLUTION}-{CLIP_SECONDS}s.mkv")
    if not clip_path.exists():
        log(f"encoding the clip {clip_path}")
        subprocess.run(clip_command(clip_path), check=True, timeout=600)
    clip = Clip(clip_path)
    levels = []
    for n in STREAM_COUNTS:
        levels.append(put_media_level(n, clip, log_dir))
        if not levels[-1]["sustained"]:
            break
    sustained = [lv["streams"] for lv in levels if lv["sustained"]]
    doc = {
        "settings": {"streams": STREAM_COUNTS, "clip_seconds": CLIP_SECONDS, "serve_seconds": SERVE_SECONDS,
                     "serve_clients": SERVE_CLIENTS, "g2g_fragments": G2G_FRAGMENTS, "server_cpu": SERVER_CPU,
                     "client_cpu": CLIENT_CPU, "send_late_ms_max": SEND_LATE_MS_MAX},
        "server_command": " ".join(["taskset", "-c", str(SERVER_CPU), "target/release/sluice",
                                    *server_args("$SCRATCH/sluice-video-data")[1:]]),
        "clip": {"resolution": RESOLUTION, "fps": FPS, "seconds": len(clip.clusters), "bitrate": BITRATE,
                 "mbit_per_s": round(clip.mbit_per_s, 2), "bytes": clip.bytes,
                 "cluster_bytes_mean": round(sum(map(len, clip.clusters)) / len(clip.clusters)),
                 "command": " ".join(clip_command(pathlib.Path("clip.mkv")))},
        "put_media": levels,
        "streams_sustained_max": max(sustained) if sustained else 0,
        "streams_cap_reached": len(levels) == len(STREAM_COUNTS) and bool(levels) and levels[-1]["sustained"],
        "hls_serving": hls_serving(clip, log_dir),
        "live_hls": live_hls_delay(clip, log_dir),
    }
    text = json.dumps(doc, indent=2)
    if out_path:
        pathlib.Path(out_path).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
