"""The Kinesis Video Streams control plane on Sluice, driven by boto3's `kinesisvideo` client and
the `aws kinesisvideo` CLI against the real server.

What these guard against: a control plane that boto3 or the CLI cannot use unchanged (rest-json
paths, shapes, timestamps, paging tokens), errors that botocore reports under another code
(it reads `x-amzn-ErrorType`, then the body), an update that a stale `CurrentVersion` gets
through, retention changes that do not add up, tags that differ between the stream and the
resource APIs, and a stream whose ARN still answers after it was deleted. Inputs that botocore
itself refuses (a missing required member, a number under its `min`) never reach the server, so
the error cases here use values botocore lets through and the model forbids (patterns, `max`).
"""

import json
import subprocess
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY_ID, ACCOUNT_ID, REGION, SECRET_ACCESS_KEY, aws_cli_env

INTERNAL_PREFIX = "__sluice_video__"
API_NAMES = [
    "PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES",
]


@pytest.fixture(scope="module")
def kvs(endpoint):
    return boto3.client(
        "kinesisvideo", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


@pytest.fixture
def name(request):
    """A video stream name unique to this test (also a prefix no other test's streams share)."""
    return f"kvs-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def describe(kvs, **ref):
    return kvs.describe_stream(**ref)["StreamInfo"]


def wait_active(kvs, name, timeout_s=20):
    """The stream's info once ACTIVE (CreateStream is asynchronous, as on AWS)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = describe(kvs, StreamName=name)
        if info["Status"] == "ACTIVE":
            return info
        assert info["Status"] == "CREATING", info
        assert time.monotonic() < deadline, f"{name} did not become ACTIVE in {timeout_s} s"
        time.sleep(0.05)


def test_create_describe_update_and_delete_a_stream(kvs, name):
    arn = kvs.create_stream(StreamName=name, DeviceName="camera-1", MediaType="video/h264",
                            DataRetentionInHours=24, Tags={"team": "vision"})["StreamARN"]
    prefix = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{name}/"
    assert arn.startswith(prefix) and arn[len(prefix):].isdigit(), arn

    info = wait_active(kvs, name)
    assert info["StreamName"] == name
    assert info["StreamARN"] == arn
    assert info["DeviceName"] == "camera-1"
    assert info["MediaType"] == "video/h264"
    assert info["DataRetentionInHours"] == 24
    assert info["KmsKeyId"]
    assert info["Version"].isalnum()
    # rest-json sends CreationTime as epoch seconds; botocore makes a datetime of it.
    assert info["CreationTime"].year >= 2024
    assert describe(kvs, StreamARN=arn)["StreamName"] == name

    version = info["Version"]
    assert error_of(kvs.update_stream, StreamName=name, CurrentVersion="0stale0",
                    MediaType="video/h265") == ("VersionMismatchException", 400)
    kvs.update_stream(StreamARN=arn, CurrentVersion=version, MediaType="video/h265")
    updated = describe(kvs, StreamName=name)
    assert updated["MediaType"] == "video/h265"
    assert updated["DeviceName"] == "camera-1"
    assert updated["Version"] != version
    # The version just replaced is stale now.
    assert error_of(kvs.update_stream, StreamName=name, CurrentVersion=version,
                    DeviceName="camera-2")[0] == "VersionMismatchException"

    assert error_of(kvs.create_stream, StreamName=name)[0] == "ResourceInUseException"

    assert error_of(kvs.delete_stream, StreamARN=arn,
                    CurrentVersion="0stale0") == ("VersionMismatchException", 400)
    kvs.delete_stream(StreamARN=arn, CurrentVersion=updated["Version"])
    assert error_of(kvs.describe_stream, StreamName=name) == ("ResourceNotFoundException", 404)
    assert error_of(kvs.delete_stream, StreamARN=arn) == ("ResourceNotFoundException", 404)

    # A stream created again under the same name is a new stream: the old ARN names nothing.
    new_arn = kvs.create_stream(StreamName=name)["StreamARN"]
    assert new_arn != arn
    assert error_of(kvs.describe_stream, StreamARN=arn) == ("ResourceNotFoundException", 404)
    assert describe(kvs, StreamARN=new_arn)["DataRetentionInHours"] == 0
    kvs.delete_stream(StreamARN=new_arn)


def test_list_streams_filters_by_prefix_and_pages(kvs, name):
    names = [f"{name}-{i}" for i in range(5)]
    for stream in names:
        kvs.create_stream(StreamName=stream)
    condition = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": name}

    first = kvs.list_streams(MaxResults=2, StreamNameCondition=condition)
    assert [s["StreamName"] for s in first["StreamInfoList"]] == names[:2]
    seen = [s["StreamName"] for s in first["StreamInfoList"]]
    token = first["NextToken"]
    while token:
        page = kvs.list_streams(MaxResults=2, StreamNameCondition=condition, NextToken=token)
        assert len(page["StreamInfoList"]) <= 2
        seen += [s["StreamName"] for s in page["StreamInfoList"]]
        token = page.get("NextToken")
    assert seen == names

    paginated = [s["StreamName"]
                 for page in kvs.get_paginator("list_streams").paginate(
                     StreamNameCondition=condition, PaginationConfig={"PageSize": 3})
                 for s in page["StreamInfoList"]]
    assert paginated == names

    everything = [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]
    assert set(names) <= set(everything)
    for info in kvs.list_streams(StreamNameCondition=condition)["StreamInfoList"]:
        assert info["StreamARN"].startswith(f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{info['StreamName']}/")
        assert info["Status"] in ("CREATING", "ACTIVE")

    assert error_of(kvs.list_streams, MaxResults=10001) == ("InvalidArgumentException", 400)
    assert error_of(kvs.list_streams, StreamNameCondition={
        "ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "not valid!"}) == ("InvalidArgumentException", 400)
    for stream in names:
        kvs.delete_stream(StreamARN=describe(kvs, StreamName=stream)["StreamARN"])


def test_data_retention_increases_and_decreases_by_the_change_with_version_checks(kvs, name):
    kvs.create_stream(StreamName=name)
    version = wait_active(kvs, name)["Version"]
    kvs.update_data_retention(StreamName=name, CurrentVersion=version,
                              Operation="INCREASE_DATA_RETENTION", DataRetentionChangeInHours=48)
    info = describe(kvs, StreamName=name)
    assert info["DataRetentionInHours"] == 48
    assert info["Version"] != version

    assert error_of(kvs.update_data_retention, StreamName=name, CurrentVersion=version,
                    Operation="DECREASE_DATA_RETENTION",
                    DataRetentionChangeInHours=1) == ("VersionMismatchException", 400)
    kvs.update_data_retention(StreamARN=info["StreamARN"], CurrentVersion=info["Version"],
                              Operation="DECREASE_DATA_RETENTION", DataRetentionChangeInHours=47)
    info = describe(kvs, StreamName=name)
    assert info["DataRetentionInHours"] == 1
    # Retention cannot go below zero.
    assert error_of(kvs.update_data_retention, StreamName=name, CurrentVersion=info["Version"],
                    Operation="DECREASE_DATA_RETENTION",
                    DataRetentionChangeInHours=2) == ("InvalidArgumentException", 400)
    kvs.update_data_retention(StreamName=name, CurrentVersion=info["Version"],
                              Operation="DECREASE_DATA_RETENTION", DataRetentionChangeInHours=1)
    assert describe(kvs, StreamName=name)["DataRetentionInHours"] == 0
    kvs.delete_stream(StreamARN=info["StreamARN"])


def test_tags_through_the_stream_and_the_resource_apis(kvs, name):
    arn = kvs.create_stream(StreamName=name, Tags={"a": "1"})["StreamARN"]
    wait_active(kvs, name)
    kvs.tag_stream(StreamName=name, Tags={"b": "2", "c": "3"})
    kvs.tag_resource(ResourceARN=arn, Tags=[{"Key": "d", "Value": "4"}, {"Key": "a", "Value": "one"}])
    expected = {"a": "one", "b": "2", "c": "3", "d": "4"}
    assert kvs.list_tags_for_stream(StreamName=name)["Tags"] == expected
    assert kvs.list_tags_for_stream(StreamARN=arn)["Tags"] == expected
    assert kvs.list_tags_for_resource(ResourceARN=arn)["Tags"] == expected

    kvs.untag_stream(StreamARN=arn, TagKeyList=["b"])
    kvs.untag_resource(ResourceARN=arn, TagKeyList=["c", "missing"])
    assert kvs.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"a": "one", "d": "4"}

    too_many = {f"k{i}": "v" for i in range(49)}
    assert error_of(kvs.tag_stream, StreamName=name,
                    Tags=too_many) == ("TagsPerResourceExceededLimitException", 400)
    assert error_of(kvs.tag_stream, StreamName=name,
                    Tags={"bad*key": "v"}) == ("InvalidArgumentException", 400)
    missing = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT_ID}:stream/{name}-none/1"
    assert error_of(kvs.list_tags_for_resource, ResourceARN=missing) == ("ResourceNotFoundException", 404)
    assert error_of(kvs.tag_stream, StreamName=f"{name}-none",
                    Tags={"x": "y"}) == ("ResourceNotFoundException", 404)
    kvs.delete_stream(StreamARN=arn)


def test_get_data_endpoint_answers_a_url_for_every_api_name(kvs, name):
    arn = kvs.create_stream(StreamName=name, DataRetentionInHours=1)["StreamARN"]
    for api_name in API_NAMES:
        endpoint = kvs.get_data_endpoint(StreamName=name, APIName=api_name)["DataEndpoint"]
        assert endpoint.startswith(("http://", "https://")), endpoint
        assert kvs.get_data_endpoint(StreamARN=arn, APIName=api_name)["DataEndpoint"] == endpoint
    assert error_of(kvs.get_data_endpoint, StreamName=f"{name}-none",
                    APIName="GET_MEDIA") == ("ResourceNotFoundException", 404)
    # Neither a name nor an ARN.
    assert error_of(kvs.get_data_endpoint, APIName="GET_MEDIA") == ("InvalidArgumentException", 400)
    kvs.delete_stream(StreamARN=arn)


def test_storage_configuration_round_trips_under_version_checks(kvs, name):
    arn = kvs.create_stream(StreamName=name)["StreamARN"]
    described = kvs.describe_stream_storage_configuration(StreamName=name)
    assert described["StreamARN"] == arn
    assert described["StreamStorageConfiguration"] == {"DefaultStorageTier": "HOT"}
    version = wait_active(kvs, name)["Version"]
    assert error_of(kvs.update_stream_storage_configuration, StreamName=name, CurrentVersion="0stale0",
                    StreamStorageConfiguration={"DefaultStorageTier": "WARM"}) == ("VersionMismatchException", 400)
    kvs.update_stream_storage_configuration(StreamName=name, CurrentVersion=version,
                                            StreamStorageConfiguration={"DefaultStorageTier": "WARM"})
    assert kvs.describe_stream_storage_configuration(StreamARN=arn)[
        "StreamStorageConfiguration"] == {"DefaultStorageTier": "WARM"}
    kvs.delete_stream(StreamARN=arn)


def test_model_constraints_the_server_enforces_come_back_as_invalid_argument(kvs, name):
    for kwargs in (
        {"StreamName": "has space"},
        {"StreamName": "x" * 257},
        {"StreamName": name, "MediaType": "h264"},
        {"StreamName": name, "DeviceName": "bad/device"},
        {"StreamName": name, "Tags": {"bad*key": "v"}},
    ):
        assert error_of(kvs.create_stream, **kwargs) == ("InvalidArgumentException", 400), kwargs
    assert error_of(kvs.describe_stream, StreamName=name) == ("ResourceNotFoundException", 404)
    assert error_of(kvs.describe_stream, StreamARN="arn:aws:kinesis:us-east-1:000000000000:stream/x") == (
        "InvalidArgumentException", 400)


def test_streams_named_dot_and_dot_dot_and_of_256_characters(kvs, name):
    long_name = (name + "-" + "x" * 256)[:256]
    for stream in (".", "..", long_name):
        arn = kvs.create_stream(StreamName=stream)["StreamARN"]
        assert describe(kvs, StreamName=stream)["StreamARN"] == arn
        kvs.delete_stream(StreamARN=arn)
        assert error_of(kvs.describe_stream, StreamName=stream)[0] == "ResourceNotFoundException"


def test_internal_streams_stay_hidden_from_kinesis_list_streams(kvs, kinesis, name):
    arn = kvs.create_stream(StreamName=name)["StreamARN"]
    listed = kinesis.list_streams(Limit=10000)["StreamNames"]
    assert not [s for s in listed if s.startswith(INTERNAL_PREFIX)], listed
    kvs.delete_stream(StreamARN=arn)


def test_aws_cli_kinesisvideo_round_trip(aws_cli, endpoint, kvs, name):
    def aws(*args, ok=True):
        command = [aws_cli, "kinesisvideo", *args, "--endpoint-url", endpoint, "--region", REGION,
                   "--output", "json"]
        result = subprocess.run(command, env=aws_cli_env(), capture_output=True, text=True, timeout=120)
        if not ok:
            assert result.returncode != 0, result.stdout
            return result.stderr
        assert result.returncode == 0, f"aws kinesisvideo {' '.join(args)} failed:\n{result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else {}

    arn = aws("create-stream", "--stream-name", name, "--data-retention-in-hours", "2",
              "--media-type", "video/h264")["StreamARN"]
    info = wait_active(kvs, name)
    assert info["StreamARN"] == arn
    assert info["DataRetentionInHours"] == 2
    listed = aws("list-streams", "--stream-name-condition",
                 f"ComparisonOperator=BEGINS_WITH,ComparisonValue={name}")["StreamInfoList"]
    assert [s["StreamName"] for s in listed] == [name]
    endpoint_url = aws("get-data-endpoint", "--stream-name", name, "--api-name", "PUT_MEDIA")["DataEndpoint"]
    assert endpoint_url.startswith(("http://", "https://"))
    aws("update-data-retention", "--stream-name", name, "--current-version", info["Version"],
        "--operation", "INCREASE_DATA_RETENTION", "--data-retention-change-in-hours", "10")
    assert aws("describe-stream", "--stream-arn", arn)["StreamInfo"]["DataRetentionInHours"] == 12
    aws("tag-stream", "--stream-name", name, "--tags", "env=test")
    assert aws("list-tags-for-stream", "--stream-name", name)["Tags"] == {"env": "test"}
    stderr = aws("update-stream", "--stream-name", name, "--current-version", "0stale0",
                 "--device-name", "d", ok=False)
    assert "VersionMismatchException" in stderr
    aws("delete-stream", "--stream-arn", arn)
    assert "ResourceNotFoundException" in aws("describe-stream", "--stream-name", name, ok=False)
