"""Kinesis Video Streams' per-stream limits on Sluice, as AWS enforces them: PutMedia from curl,
the readers from boto3, against servers with AWS's limits, with a short PutMedia connection
duration, and with every limit off.

What these guard against: a second concurrent PutMedia or a fourth GetMedia reader let in where
AWS answers ConnectionLimitExceededException (or answered with another error shape or status);
a connection slot that is never given back, locking a stream out after its producer left; a
PutMedia session that outlives its connection duration instead of ending with ErrorId 4003; a
burst of calls beyond the rate that is served instead of refused with
ClientLimitExceededException; and the off-switch leaving some limit on.

No assertion here is a wall-clock deadline: rate tests bound how many calls may be admitted by
the time that actually passed, however slow the machine is.
"""

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import SluiceProcess
from video_support import PutMedia, check_ack_sequence, client, create_stream, fragment_acks, make_clip, put_clip

CLIP_SECONDS = 4


def serve(tmp_path_factory, name, extra_args):
    return SluiceProcess(tmp_path_factory.mktemp(name) / "data", extra_args)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("limits-clip") / "clip.mkv", CLIP_SECONDS)


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A server with AWS's limits."""
    server = serve(tmp_path_factory, "aws", [])
    yield server.endpoint
    server.kill()


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """A server whose PutMedia connections last 2.5 s."""
    server = serve(tmp_path_factory, "short", ["--video-limit", "put_media_connection_duration_ms=2500"])
    yield server.endpoint
    server.kill()


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory):
    server = serve(tmp_path_factory, "unlimited", ["--video-limits", "false"])
    yield server.endpoint
    server.kill()


def new_stream(endpoint, prefix, retention_hours=24):
    kvs = client("kinesisvideo", endpoint)
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    return name, create_stream(kvs, name, retention_hours=retention_hours)


def error_of(result):
    """The JSON error of a refused PutMedia (curl printed it before the status line)."""
    return json.loads(result.body.strip().splitlines()[0])


def started(acks):
    return any(a.get("EventType") == "BUFFERING" for a in acks)


def test_a_second_concurrent_put_media_is_connection_limit_exceeded_until_the_first_ends(aws, clip):
    name, data_endpoint = new_stream(aws, "two-producers")
    first = PutMedia(data_endpoint, name, clip=clip, paced=True)
    try:
        first.wait_for(started)
        second = put_clip(data_endpoint, name, clip)
        assert second.status == 400, second
        error = error_of(second)
        assert error["__type"] == "ConnectionLimitExceededException", error
        assert error["message"], error
        result = first.finish()
    finally:
        first.kill()
    # The first producer was not disturbed by the refused one.
    assert result.status == 200, result
    check_ack_sequence(result.acks)
    # Its connection ended, so the stream takes a producer again.
    again = put_clip(data_endpoint, name, clip)
    assert again.status == 200, again
    assert len(check_ack_sequence(again.acks)) == CLIP_SECONDS


def test_a_fourth_get_media_reader_is_connection_limit_exceeded(aws):
    name, data_endpoint = new_stream(aws, "readers")
    media = client("kinesis-video-media", data_endpoint)
    # Three readers tail the (empty) stream: each holds its connection open waiting for data.
    readers = [media.get_media(StreamName=name, StartSelector={"StartSelectorType": "NOW"}) for _ in range(3)]
    try:
        with pytest.raises(ClientError) as info:
            media.get_media(StreamName=name, StartSelector={"StartSelectorType": "NOW"})
        response = info.value.response
        assert response["Error"]["Code"] == "ConnectionLimitExceededException", response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, response
        assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ConnectionLimitExceededException"
    finally:
        for reader in readers:
            reader["Payload"].close()
    # The readers' places come back once their answers end (a GetMedia with no new fragment
    # ends after 5 s); a new reader is then let in. Polled at 2 calls a second, under the rate.
    for _ in range(60):
        try:
            media.get_media(StreamName=name, StartSelector={"StartSelectorType": "NOW"})["Payload"].close()
            break
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ConnectionLimitExceededException", error.response
            time.sleep(0.5)
    else:
        pytest.fail("the readers' connections were never given back")


def burst(call, count):
    """Makes `count` calls as fast as they go; returns (admitted, refused, seconds taken).
    A call the limit lets through fails on its own terms (no fragments), which counts as
    admitted."""
    admitted = refused = 0
    started_at = time.monotonic()
    for _ in range(count):
        try:
            call()
            admitted += 1
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code == "ClientLimitExceededException":
                assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400, error.response
                refused += 1
            else:
                assert code == "ResourceNotFoundException", error.response
                admitted += 1
    return admitted, refused, time.monotonic() - started_at


def archived_calls(endpoint, name):
    archived = client("kinesis-video-archived-media", endpoint)
    now = time.time()
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": now - 60, "EndTimestamp": now}}
    return {
        "ListFragments": lambda: archived.list_fragments(StreamName=name, FragmentSelector=selector),
        "GetClip": lambda: archived.get_clip(StreamName=name, ClipFragmentSelector=selector),
        "GetHLSStreamingSessionURL": lambda: archived.get_hls_streaming_session_url(
            StreamName=name, PlaybackMode="LIVE"),
    }


@pytest.mark.parametrize("operation, burst_max, per_second", [
    ("ListFragments", 5, 5), ("GetClip", 1, 1), ("GetHLSStreamingSessionURL", 5, 1),
])
def test_a_burst_beyond_the_rate_is_client_limit_exceeded(aws, operation, burst_max, per_second):
    name, data_endpoint = new_stream(aws, "burst")
    call = archived_calls(data_endpoint, name)[operation]
    count = burst_max + 15
    admitted, refused, seconds = burst(call, count)
    assert refused >= 1, (operation, admitted, seconds)
    # Never more than the burst plus what the rate refilled while the calls ran.
    assert admitted <= burst_max + per_second * seconds + 1, (operation, admitted, seconds)
    assert admitted >= burst_max, (operation, admitted, refused)


def test_put_media_ends_with_error_4003_once_the_connection_duration_passes(short, clip):
    name, data_endpoint = new_stream(short, "duration")
    put = PutMedia(data_endpoint, name, clip=clip, paced=True)
    try:
        result = put.finish()
    finally:
        put.kill()
    assert result.status == 200, result
    acks = fragment_acks(result.acks)
    errors = [a for a in acks if a["EventType"] == "ERROR"]
    assert [(e["ErrorId"], e["ErrorCode"]) for e in errors] == [(4003, "MAX_CONNECTION_DURATION_REACHED")], acks
    # The error is the session's last word: nothing is acknowledged after it.
    assert acks[-1] == errors[0], acks
    # Fragments that ended before the deadline were stored; the session did not run to the end
    # of the 4-second clip.
    persisted = [a for a in acks if a["EventType"] == "PERSISTED"]
    assert 1 <= len(persisted) < CLIP_SECONDS, acks
    if "FragmentNumber" in errors[0]:
        assert errors[0]["FragmentNumber"] not in {a["FragmentNumber"] for a in persisted}, acks
    # The ended session gave its connection back.
    again = put_clip(data_endpoint, name, clip)
    assert again.status == 200, again


def test_with_limits_off_no_limit_applies(unlimited, clip):
    name, data_endpoint = new_stream(unlimited, "unlimited")
    # Two producers at once, both stored.
    first = PutMedia(data_endpoint, name, clip=clip, paced=True)
    try:
        first.wait_for(started)
        second = put_clip(data_endpoint, name, clip)
        result = first.finish()
    finally:
        first.kill()
    assert second.status == 200, second
    assert len(check_ack_sequence(second.acks)) == CLIP_SECONDS
    assert result.status == 200, result
    assert len(check_ack_sequence(result.acks)) == CLIP_SECONDS
    # Four readers at once.
    media = client("kinesis-video-media", data_endpoint)
    readers = [media.get_media(StreamName=name, StartSelector={"StartSelectorType": "NOW"}) for _ in range(4)]
    for reader in readers:
        reader["Payload"].close()
    # Bursts far beyond every rate (on a stream of its own, so no call has fragments to remux).
    empty, empty_endpoint = new_stream(unlimited, "unlimited-burst")
    for operation, call in archived_calls(empty_endpoint, empty).items():
        admitted, refused, _ = burst(call, 12)
        assert (admitted, refused) == (12, 0), operation
