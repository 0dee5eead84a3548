"""Kinesis Video Streams media on Sluice: PutMedia from curl (fed by ffmpeg clips), read back with
boto3's `kinesis-video-media` and `kinesis-video-archived-media` clients, ffmpeg and ffprobe.

What these guard against: acks that come out of order, late or with numbers that go backwards; a
fragment stored with bytes other than the producer's (every check ends in decoded-frame MD5s
equal to the source clip's, not just "it parsed"); start selectors off by one fragment
(FRAGMENT_NUMBER and CONTINUATION_TOKEN start *after* the named fragment); service tags that
botocore-era parsers cannot find; HLS and GetClip output ffmpeg cannot open or that decodes to
other pictures; a LIVE playlist that does not move; error codes that differ from AWS's; and a
PERSISTED ack that a kill -9 takes back.

One stream is ingested at real-time pace once per module and shared by the read tests. A
GetMedia payload ends 5 s after the newest fragment, so every GetMedia call here takes 5 s or more.
"""

import datetime
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import SluiceProcess
from video_support import (
    CLIP_FPS, HLS_INPUT_FLAGS, ID_SIMPLE_BLOCK, Chunk, PutMedia, check_ack_sequence, children,
    chunk_frame_md5s, client, create_stream, element_head, ffprobe, fragment_acks, frame_md5s, http_get,
    make_clip, persisted, put_clip, read_streaming, read_varint, single_mkv, split_mkv, write,
)

CLIP_SECONDS = 5
TIMESTAMP_TAG = re.compile(r"^\d{10}\.\d{3}$")


def utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def cluster_body(cluster: bytes) -> bytes:
    """A Cluster's children, whatever its size encoding (the server re-frames unknown sizes)."""
    _, size, head = element_head(cluster, 0)
    return cluster[head:] if size is None else cluster[head:head + size]


def video_blocks(cluster: bytes, video_track: int = 1) -> int:
    count = 0
    for element_id, start, _ in children(cluster, element_head(cluster, 0)[2]):
        if element_id == ID_SIMPLE_BLOCK and read_varint(cluster, start, keep_marker=False)[0] == video_track:
            count += 1
    return count


class Ingested:
    """The shared stream: its name, the source clip split into Clusters, the acks and the
    fragments in ingest order."""

    def __init__(self, kvs, name, clip, source, put, result, fragments, producer_start_s):
        self.kvs = kvs
        self.name = name
        self.clip = clip
        self.source = source
        self.put = put
        self.result = result
        self.fragments = fragments
        self.numbers = [f["FragmentNumber"] for f in fragments]
        self.producer_start_s = producer_start_s

    def endpoint(self, api_name: str) -> str:
        return self.kvs.get_data_endpoint(StreamName=self.name, APIName=api_name)["DataEndpoint"]

    def producer_time(self, index: int) -> float:
        return self.producer_start_s + self.source.timecodes[index] / 1000


@pytest.fixture(scope="module")
def kvs(endpoint):
    return client("kinesisvideo", endpoint)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("video") / "clip.mkv", CLIP_SECONDS)


@pytest.fixture(scope="module")
def source_md5s(clip):
    md5s = frame_md5s(str(clip))
    assert len(md5s) == CLIP_SECONDS * CLIP_FPS
    return md5s


@pytest.fixture(scope="module")
def ingested(kvs, clip):
    name = f"media-{uuid.uuid4().hex[:10]}"
    data_endpoint = create_stream(kvs, name)
    [source] = split_mkv(clip.read_bytes())
    assert len(source.clusters) == CLIP_SECONDS, source.timecodes
    # A whole second in the past, on a millisecond, so producer timestamps are exact.
    producer_start_s = round(time.time() - 1, 3)
    put = PutMedia(data_endpoint, name, clip=clip, paced=True, producer_start_s=producer_start_s)
    try:
        result = put.finish()
    finally:
        put.kill()
    assert result.status == 200, result
    fragments = check_ack_sequence(result.acks, timecodes=source.timecodes)
    return Ingested(kvs, name, clip, source, put, result, fragments, producer_start_s)


@pytest.fixture(scope="module")
def media(ingested):
    return client("kinesis-video-media", ingested.endpoint("GET_MEDIA"))


@pytest.fixture(scope="module")
def archived(ingested):
    return client("kinesis-video-archived-media", ingested.endpoint("LIST_FRAGMENTS"))


def get_media(media, name, **selector):
    response = media.get_media(StreamName=name, StartSelector=selector)
    assert response["ContentType"] == "video/webm", response["ContentType"]
    return read_streaming(response["Payload"])


@pytest.fixture(scope="module")
def earliest(media, ingested):
    """The EARLIEST GetMedia payload, read once, and its chunks."""
    started = time.monotonic()
    payload = get_media(media, ingested.name, StartSelectorType="EARLIEST")
    elapsed = time.monotonic() - started
    return payload, split_mkv(payload), elapsed


def chunk_numbers(chunks):
    return [chunk.tags["AWS_KINESISVIDEO_FRAGMENT_NUMBER"] for chunk in chunks]


def test_put_media_acks_each_fragment_buffering_received_persisted_as_it_arrives(ingested):
    # check_ack_sequence (in the fixture) already holds every fragment to BUFFERING, RECEIVED,
    # PERSISTED with one number and the Cluster's Timecode, and numbers to strictly increase.
    assert len(ingested.fragments) == CLIP_SECONDS
    assert [f["FragmentTimecode"] for f in ingested.fragments] == ingested.source.timecodes
    # Acks stream while the body is still being sent: the first PERSISTED came before the last
    # Cluster left the producer (which sends one Cluster per second).
    acks = ingested.result.acks
    first_persisted = next(i for i, a in enumerate(acks) if a.get("EventType") == "PERSISTED")
    assert ingested.put.sent_at_ack[first_persisted] < len(ingested.source.clusters), ingested.put.sent_at_ack


def test_get_media_earliest_returns_every_fragment_with_its_tags_and_the_producers_frames(
        ingested, earliest, source_md5s, tmp_path):
    payload, chunks, elapsed = earliest
    assert chunk_numbers(chunks) == ingested.numbers
    for i, chunk in enumerate(chunks):
        assert len(chunk.clusters) == 1, f"chunk {i} holds {len(chunk.clusters)} Clusters"
        assert cluster_body(chunk.clusters[0]) == cluster_body(ingested.source.clusters[i])
        assert chunk.timecodes[0] == ingested.source.timecodes[i]
        tags = chunk.tags
        for tag in ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"):
            assert TIMESTAMP_TAG.match(tags[tag]), (tag, tags[tag])
        assert abs(float(tags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]) - ingested.producer_time(i)) < 0.0015, tags
        server_s = float(tags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"])
        assert ingested.producer_start_s - 5 < server_s < time.time(), tags
        assert tags["AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"].isdigit(), tags
        assert tags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"], tags
    server_times = [float(c.tags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"]) for c in chunks]
    assert server_times == sorted(server_times)
    # The payload ends 5 s after the newest fragment, not at once and not never.
    assert elapsed >= 4.5, elapsed
    # Every chunk is a whole MKV document; ffmpeg reads the concatenation and decodes exactly the
    # source's pictures.
    assert frame_md5s(write(tmp_path / "earliest.mkv", payload)) == source_md5s


def test_get_media_fragment_number_and_continuation_token_start_after_the_named_fragment(media, ingested, earliest):
    numbers = ingested.numbers
    payload = get_media(media, ingested.name, StartSelectorType="FRAGMENT_NUMBER", AfterFragmentNumber=numbers[1])
    assert chunk_numbers(split_mkv(payload)) == numbers[2:]

    token = earliest[1][2].tags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]
    payload = get_media(media, ingested.name, StartSelectorType="CONTINUATION_TOKEN", ContinuationToken=token)
    assert chunk_numbers(split_mkv(payload)) == numbers[3:]


def test_get_media_now_starts_at_the_newest_fragment(media, ingested):
    payload = get_media(media, ingested.name, StartSelectorType="NOW")
    assert chunk_numbers(split_mkv(payload)) == ingested.numbers[-1:]


def test_get_media_timestamps_start_at_the_fragment_holding_the_time(media, ingested, earliest):
    numbers = ingested.numbers
    # Half a second into fragment 2, on the producer's clock.
    payload = get_media(media, ingested.name, StartSelectorType="PRODUCER_TIMESTAMP",
                        StartTimestamp=utc(ingested.producer_time(2) + 0.5))
    assert chunk_numbers(split_mkv(payload)) == numbers[2:]
    # A fifth of a second after fragment 3 began arriving, on the server's clock.
    server_s = float(earliest[1][3].tags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"])
    payload = get_media(media, ingested.name, StartSelectorType="SERVER_TIMESTAMP", StartTimestamp=utc(server_s + 0.2))
    assert chunk_numbers(split_mkv(payload)) == numbers[3:]


def test_get_media_for_fragment_list_returns_chunks_in_the_requested_order(ingested, tmp_path, source_md5s):
    archived = client("kinesis-video-archived-media", ingested.endpoint("GET_MEDIA_FOR_FRAGMENT_LIST"))
    order = [3, 0, 2]
    response = archived.get_media_for_fragment_list(
        StreamName=ingested.name, Fragments=[ingested.numbers[i] for i in order])
    payload = read_streaming(response["Payload"])
    chunks = split_mkv(payload)
    assert chunk_numbers(chunks) == [ingested.numbers[i] for i in order]
    for i, chunk in zip(order, chunks):
        assert [cluster_body(c) for c in chunk.clusters] == [cluster_body(ingested.source.clusters[i])]
        assert TIMESTAMP_TAG.match(chunk.tags["AWS_KINESISVIDEO_SERVER_SIDE_TIMESTAMP"]), chunk.tags
        producer = chunk.tags["AWS_KINESISVIDEO_PRODUCER_SIDE_TIMESTAMP"]
        assert TIMESTAMP_TAG.match(producer), chunk.tags
        assert abs(float(producer) - ingested.producer_time(i)) < 0.0015
    per_fragment = CLIP_FPS
    expected = [md5 for i in order for md5 in source_md5s[i * per_fragment:(i + 1) * per_fragment]]
    assert chunk_frame_md5s(chunks, tmp_path) == expected


def list_all(archived, name, selector, max_results=None):
    kwargs = {"StreamName": name, "FragmentSelector": selector}
    if max_results:
        kwargs["MaxResults"] = max_results
    fragments, pages = [], 0
    while True:
        # ListFragments allows 5 calls a second per stream, on AWS as here.
        time.sleep(0.2)
        page = archived.list_fragments(**kwargs)
        pages += 1
        if max_results:
            assert len(page["Fragments"]) <= max_results, page
        fragments += page["Fragments"]
        token = page.get("NextToken")
        if not token:
            return fragments, pages
        kwargs["NextToken"] = token
        assert pages < 100, "ListFragments never stops paging"


def test_list_fragments_by_producer_and_server_time_with_ranges_and_paging(archived, ingested):
    numbers = ingested.numbers
    start = ingested.producer_start_s
    everything = {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                  "TimestampRange": {"StartTimestamp": utc(start - 60), "EndTimestamp": utc(start + 60)}}
    fragments, _ = list_all(archived, ingested.name, everything)
    by_number = {f["FragmentNumber"]: f for f in fragments}
    assert len(by_number) == len(fragments) == len(numbers)
    assert set(by_number) == set(numbers)
    for i, number in enumerate(numbers):
        fragment = by_number[number]
        assert abs(fragment["ProducerTimestamp"].timestamp() - ingested.producer_time(i)) < 0.0015, fragment
        assert fragment["FragmentSizeInBytes"] >= len(cluster_body(ingested.source.clusters[i])), fragment
        assert 900 <= fragment["FragmentLengthInMilliseconds"] <= 1100, fragment
    server = [by_number[n]["ServerTimestamp"].timestamp() for n in numbers]
    assert server == sorted(server)

    def within(selector_type, low, high, starts):
        """Fragments that start in [low, high] must be listed; fragments that start after `high`
        must not (one that began before `low` and overlaps it may go either way)."""
        listed, _ = list_all(archived, ingested.name, {
            "FragmentSelectorType": selector_type,
            "TimestampRange": {"StartTimestamp": utc(low), "EndTimestamp": utc(high)}})
        listed = {f["FragmentNumber"] for f in listed}
        must = {n for n, s in zip(numbers, starts) if low <= s <= high}
        must_not = {n for n, s in zip(numbers, starts) if s > high or s + 1.2 < low}
        assert must and must <= listed, (selector_type, must, listed)
        assert not (listed & must_not), (selector_type, listed & must_not)

    producer = [ingested.producer_time(i) for i in range(len(numbers))]
    within("PRODUCER_TIMESTAMP", producer[1] + 0.5, producer[3] + 0.5, producer)
    within("SERVER_TIMESTAMP", server[1] + 0.5, server[3] + 0.5, server)

    paged, pages = list_all(archived, ingested.name, everything, max_results=2)
    assert pages >= 3, pages
    assert sorted(f["FragmentNumber"] for f in paged) == sorted(numbers)


def hls_session(ingested, **kwargs):
    archived = client("kinesis-video-archived-media", ingested.endpoint("GET_HLS_STREAMING_SESSION_URL"))
    kwargs.setdefault("ContainerFormat", "FRAGMENTED_MP4")
    url = archived.get_hls_streaming_session_url(StreamName=ingested.name, **kwargs)["HLSStreamingSessionURL"]
    prefix = ingested.endpoint("GET_HLS_STREAMING_SESSION_URL").rstrip("/") + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken="
    assert url.startswith(prefix), url
    return url


def playlist_uris(text: str) -> "list[str]":
    """Media playlist URIs of a master playlist: the variant lines and EXT-X-MEDIA URIs."""
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    uris += re.findall(r'#EXT-X-MEDIA:.*URI="([^"]+)"', text)
    return uris


def resolve(base: str, relative: str) -> str:
    from urllib.parse import urljoin
    return urljoin(base, relative)


def video_playlist(master_url: str) -> str:
    status, _, body = http_get(master_url)
    assert status == 200, body
    master = body.decode()
    assert master.startswith("#EXTM3U"), master
    assert "#EXT-X-STREAM-INF" in master, master
    variants = [line for line in master.splitlines() if line and not line.startswith("#")]
    assert len(variants) == 1 and "getHLSMediaPlaylist.m3u8" in variants[0], master
    return resolve(master_url, variants[0])


def test_hls_on_demand_decodes_to_the_source_frames(ingested, source_md5s):
    start = ingested.producer_start_s
    url = hls_session(ingested, PlaybackMode="ON_DEMAND", HLSFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": utc(start - 1), "EndTimestamp": utc(start + 60)}})
    status, _, body = http_get(url)
    master = body.decode()
    # The audio track is an EXT-X-MEDIA rendition with its own playlist.
    assert re.search(r'#EXT-X-MEDIA:.*TYPE=AUDIO.*URI="[^"]*getHLSMediaPlaylist\.m3u8', master), master
    status, _, body = http_get(video_playlist(url))
    assert status == 200, body
    playlist = body.decode()
    assert "#EXT-X-ENDLIST" in playlist, playlist
    assert "#EXT-X-MAP:URI=" in playlist and "getMP4InitFragment.mp4" in playlist, playlist
    segments = [line for line in playlist.splitlines() if "getMP4MediaFragment.mp4" in line and not line.startswith("#")]
    assert len(segments) == len(ingested.numbers), playlist
    assert all(f"FragmentNumber={n}" in s for n, s in zip(ingested.numbers, segments)), playlist
    assert frame_md5s(url, HLS_INPUT_FLAGS) == source_md5s


def test_hls_mpeg_ts_on_demand_decodes_to_the_source_frames(ingested, source_md5s):
    """ContainerFormat MPEG_TS: one variant muxing every track, a media playlist of
    getTSFragment.ts segments without EXT-X-MAP, served as video/mp2t. Guards the TS muxer and
    the session plumbing end to end: a lost byte, a missing parameter set or a timestamp jump
    between independently muxed fragments changes or drops a decoded frame."""
    start = ingested.producer_start_s
    url = hls_session(ingested, ContainerFormat="MPEG_TS", PlaybackMode="ON_DEMAND", HLSFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": utc(start - 1), "EndTimestamp": utc(start + 60)}})
    status, _, body = http_get(url)
    assert status == 200, body
    master = body.decode()
    assert "#EXT-X-MEDIA:" not in master, master
    status, _, body = http_get(video_playlist(url))
    assert status == 200, body
    playlist = body.decode()
    assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-MAP" not in playlist, playlist
    segments = [line for line in playlist.splitlines() if line.startswith("getTSFragment.ts?")]
    assert len(segments) == len(ingested.numbers), playlist
    assert all(f"FragmentNumber={n}" in s for n, s in zip(ingested.numbers, segments)), playlist
    status, headers, body = http_get(resolve(url, segments[0]))
    assert status == 200, body
    assert {k.lower(): v for k, v in headers.items()}.get("content-type") == "video/mp2t", headers
    assert len(body) % 188 == 0 and body[0] == 0x47 and body[188] == 0x47
    assert frame_md5s(url, HLS_INPUT_FLAGS) == source_md5s


def test_hls_live_playlist_advances_while_ingest_runs_and_dash_answers(kvs, clip):
    name = f"live-{uuid.uuid4().hex[:10]}"
    data_endpoint = create_stream(kvs, name)
    put = PutMedia(data_endpoint, name, live_seconds=8)
    try:
        put.wait_for(lambda acks: len(persisted(acks)) >= 2)
        archived = client("kinesis-video-archived-media", data_endpoint)
        url = archived.get_hls_streaming_session_url(
            StreamName=name, PlaybackMode="LIVE", ContainerFormat="FRAGMENTED_MP4",
            MaxMediaPlaylistFragmentResults=3)["HLSStreamingSessionURL"]
        assert url.startswith(data_endpoint.rstrip("/") + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken="), url
        media_url = video_playlist(url)

        def snapshot():
            status, _, body = http_get(media_url)
            assert status == 200, body
            text = body.decode()
            assert "#EXT-X-ENDLIST" not in text, text
            sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
            segments = [line for line in text.splitlines() if "getMP4MediaFragment.mp4" in line]
            assert 1 <= len(segments) <= 3, text
            return sequence, segments[-1], text

        first = snapshot()
        seen = len(persisted(put.wait_for(lambda acks: True)))
        put.wait_for(lambda acks: len(persisted(acks)) >= seen + 2, timeout_s=20)
        second = snapshot()
        assert second[0] > first[0] or second[1] != first[1], (first[2], second[2])
        assert second[0] >= first[0]

        dash = archived.get_dash_streaming_session_url(StreamName=name, PlaybackMode="LIVE")["DASHStreamingSessionURL"]
        assert dash.startswith(data_endpoint.rstrip("/") + "/dash/v1/getDASHManifest.mpd?SessionToken="), dash
        status, _, body = http_get(dash)
        assert status == 200 and b"<MPD" in body, body[:2000]
        result = put.finish()
    finally:
        put.kill()
    assert result.status == 200, result
    check_ack_sequence(result.acks)


def test_get_clip_is_a_plain_mp4_with_the_frames_of_the_range(ingested, source_md5s, tmp_path):
    archived = client("kinesis-video-archived-media", ingested.endpoint("GET_CLIP"))
    # Exactly fragments 1 to 3: from the first's start to just before the fourth's.
    low = ingested.producer_time(1)
    high = ingested.producer_time(4) - 0.001
    response = archived.get_clip(StreamName=ingested.name, ClipFragmentSelector={
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": utc(low), "EndTimestamp": utc(high)}})
    assert response["ContentType"] == "video/mp4", response["ContentType"]
    data = read_streaming(response["Payload"])
    boxes, at = [], 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        boxes.append(data[at + 4:at + 8].decode(errors="replace"))
        assert size >= 8, (boxes, size)
        at += size
    assert at == len(data), boxes
    assert boxes[0] == "ftyp" and "moov" in boxes and "mdat" in boxes and "moof" not in boxes, boxes
    path = write(tmp_path / "clip.mp4", data)
    probe = ffprobe(path)
    [stream] = probe["streams"]
    expected_frames = sum(video_blocks(ingested.source.clusters[i]) for i in (1, 2, 3))
    assert expected_frames == 3 * CLIP_FPS
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (320, 240), probe
    assert int(stream["nb_read_frames"]) == expected_frames, probe
    assert abs(float(probe["format"]["duration"]) - 3.0) < 0.2, probe
    assert frame_md5s(path) == source_md5s[CLIP_FPS:4 * CLIP_FPS]


def test_put_media_answers_error_4006_to_a_body_that_is_not_mkv(kvs):
    name = f"garbage-{uuid.uuid4().hex[:10]}"
    data_endpoint = create_stream(kvs, name)
    result = put_clip(data_endpoint, name, None, body=b"this is not matroska\n" * 200)
    assert result.status == 200, result
    acks = fragment_acks(result.acks)
    assert len(acks) == 1 and acks[0]["EventType"] == "ERROR" and acks[0]["ErrorId"] == 4006, result.acks


def test_put_media_to_a_missing_stream_is_404_resource_not_found(endpoint, clip):
    # GetDataEndpoint answers the server's own URL for every API, and needs a stream to exist.
    result = put_clip(endpoint, f"missing-{uuid.uuid4().hex[:10]}", clip)
    assert result.status == 404, result
    assert "ResourceNotFoundException" in result.body, result.body


def test_hls_list_fragments_and_get_clip_on_a_stream_without_retention_are_no_data_retention(kvs):
    name = f"noretain-{uuid.uuid4().hex[:10]}"
    data_endpoint = create_stream(kvs, name, retention_hours=0)
    archived = client("kinesis-video-archived-media", data_endpoint)
    now = time.time()
    selector = {"StartTimestamp": utc(now - 60), "EndTimestamp": utc(now)}
    calls = [
        lambda: archived.get_hls_streaming_session_url(StreamName=name, PlaybackMode="LIVE"),
        lambda: archived.list_fragments(StreamName=name, FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": selector}),
        lambda: archived.get_clip(StreamName=name, ClipFragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": selector}),
    ]
    for call in calls:
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "NoDataRetentionException", info.value.response


def test_kill_9_during_ingest_loses_no_persisted_fragment(tmp_path, clip):
    """kill -9 while PutMedia is mid-stream, then a restart on the same data directory: every
    fragment acknowledged PERSISTED is listed and readable with the producer's frames.

    The failure this guards against: PERSISTED sent before the fragment (or its index entry) is
    durable, so a crash between the two takes back a fragment the producer already dropped from
    its buffer."""
    data_dir = tmp_path / "data"
    server = SluiceProcess(data_dir)
    restarted = None
    put = None
    try:
        kvs = client("kinesisvideo", server.endpoint)
        name = f"crash-{uuid.uuid4().hex[:10]}"
        data_endpoint = create_stream(kvs, name)
        producer_start_s = round(time.time() - 1, 3)
        put = PutMedia(data_endpoint, name, clip=clip, paced=True, producer_start_s=producer_start_s)
        put.wait_for(lambda acks: len(persisted(acks)) >= 3)
        server.kill()
        put.kill()
        with put._lock:
            acks = list(put.acks)
        saved = persisted(acks)
        assert len(saved) >= 3
        timecode_of = {a["FragmentNumber"]: a["FragmentTimecode"] for a in acks if "FragmentNumber" in a}

        restarted = SluiceProcess(data_dir)
        kvs = client("kinesisvideo", restarted.endpoint)
        archived = client("kinesis-video-archived-media",
                          kvs.get_data_endpoint(StreamName=name, APIName="LIST_FRAGMENTS")["DataEndpoint"])
        listed, _ = list_all(archived, name, {
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": utc(producer_start_s - 60), "EndTimestamp": utc(producer_start_s + 60)}})
        listed = {f["FragmentNumber"] for f in listed}
        assert set(saved) <= listed, (saved, listed)

        [source] = split_mkv(clip.read_bytes())
        response = archived.get_media_for_fragment_list(StreamName=name, Fragments=saved)
        payload = read_streaming(response["Payload"])
        chunks = split_mkv(payload)
        assert chunk_numbers(chunks) == saved
        indexes = [source.timecodes.index(timecode_of[n]) for n in saved]
        for i, chunk in zip(indexes, chunks):
            assert [cluster_body(c) for c in chunk.clusters] == [cluster_body(source.clusters[i])]
        expected = frame_md5s(write(tmp_path / "expected.mkv", single_mkv([Chunk(
            header=source.header, clusters=[source.clusters[i] for i in indexes])])))
        assert frame_md5s(write(tmp_path / "after.mkv", payload)) == expected
        print(f"\nkill -9 mid-PutMedia: {len(saved)} fragments PERSISTED before the kill, all back after the restart")
    finally:
        if put is not None:
            put.kill()
        if restarted is not None:
            restarted.kill()
        if server.proc.poll() is None:
            server.kill()
