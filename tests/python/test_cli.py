"""The Kinesis round trip through the `aws` CLI (v1, from PyPI), as an operator would type it."""

import base64
import json
import os
import subprocess

import pytest

from conftest import ACCOUNT_ID, REGION, aws_cli_env


@pytest.fixture
def aws(aws_cli, endpoint):
    def run(*args, expect_failure=False):
        command = [aws_cli, "kinesis", *args, "--endpoint-url", endpoint, "--region", REGION, "--output", "json"]
        result = subprocess.run(command, env=aws_cli_env(), capture_output=True, text=True, timeout=120)
        if expect_failure:
            assert result.returncode != 0, f"{args} was expected to fail but printed {result.stdout!r}"
            return result.stderr
        assert result.returncode == 0, f"aws kinesis {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else {}

    return run


def test_cli_round_trip(aws, stream_name, tmp_path):
    aws("create-stream", "--stream-name", stream_name, "--shard-count", "2")
    aws("wait", "stream-exists", "--stream-name", stream_name)

    description = aws("describe-stream", "--stream-name", stream_name)["StreamDescription"]
    assert description["StreamStatus"] == "ACTIVE"
    assert description["StreamARN"] == f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{stream_name}"
    assert len(description["Shards"]) == 2
    assert description["Shards"][0]["HashKeyRange"]["EndingHashKey"] == "170141183460469231731687303715884105727"

    summary = aws("describe-stream-summary", "--stream-name", stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2

    # fileb:// sends the file's raw bytes, whatever the CLI's blob text conventions are.
    payload = bytes(range(256)) * 3
    data_file = tmp_path / "record.bin"
    data_file.write_bytes(payload)
    out = aws("put-record", "--stream-name", stream_name, "--partition-key", "cli-key",
              "--explicit-hash-key", "0", "--data", f"fileb://{data_file}")
    assert out["ShardId"] == "shardId-000000000000"
    first_sequence_number = out["SequenceNumber"]
    assert len(first_sequence_number) == 56

    batch = tmp_path / "records.json"
    # In JSON input the CLI v1 sends a blob's text as its UTF-8 bytes.
    batch.write_text(json.dumps([
        {"Data": f"batch-{i}", "PartitionKey": f"k{i}", "ExplicitHashKey": "0"} for i in range(5)
    ]))
    out = aws("put-records", "--stream-name", stream_name, "--records", f"file://{batch}")
    assert out["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in out["Records"]] == ["shardId-000000000000"] * 5

    iterator = aws("get-shard-iterator", "--stream-name", stream_name, "--shard-id", "shardId-000000000000",
                   "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    records = []
    for _ in range(100):
        out = aws("get-records", "--shard-iterator", iterator)
        records.extend(out["Records"])
        iterator = out["NextShardIterator"]
        if not out["Records"]:
            break
    data = [base64.b64decode(r["Data"]) for r in records]
    assert data == [payload] + [f"batch-{i}".encode() for i in range(5)], "bytes come back exactly"
    assert records[0]["SequenceNumber"] == first_sequence_number
    assert records[0]["PartitionKey"] == "cli-key"

    iterator = aws("get-shard-iterator", "--stream-name", stream_name, "--shard-id", "shardId-000000000000",
                   "--shard-iterator-type", "AFTER_SEQUENCE_NUMBER",
                   "--starting-sequence-number", first_sequence_number)["ShardIterator"]
    out = aws("get-records", "--shard-iterator", iterator, "--limit", "2")
    assert [base64.b64decode(r["Data"]) for r in out["Records"]] == [b"batch-0", b"batch-1"]

    listed = aws("list-streams")
    assert stream_name in listed["StreamNames"]
    shards = aws("list-shards", "--stream-name", stream_name)["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]

    aws("add-tags-to-stream", "--stream-name", stream_name, "--tags", "team=storage,env=ci")
    tags = aws("list-tags-for-stream", "--stream-name", stream_name)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "storage", "env": "ci"}
    aws("remove-tags-from-stream", "--stream-name", stream_name, "--tag-keys", "env")
    tags = aws("list-tags-for-stream", "--stream-name", stream_name)["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "storage"}

    aws("increase-stream-retention-period", "--stream-name", stream_name, "--retention-period-hours", "48")
    summary = aws("describe-stream-summary", "--stream-name", stream_name)["StreamDescriptionSummary"]
    assert summary["RetentionPeriodHours"] == 48

    aws("delete-stream", "--stream-name", stream_name)
    aws("wait", "stream-not-exists", "--stream-name", stream_name)
    stderr = aws("describe-stream", "--stream-name", stream_name, expect_failure=True)
    assert "ResourceNotFoundException" in stderr
    assert f"Stream {stream_name} under account {ACCOUNT_ID} not found." in stderr


def test_cli_reports_resource_not_found_for_a_missing_stream(aws, tmp_path):
    stderr = aws("describe-stream-summary", "--stream-name", "cli-no-such-stream", expect_failure=True)
    assert "ResourceNotFoundException" in stderr
    assert f"Stream cli-no-such-stream under account {ACCOUNT_ID} not found." in stderr
    data_file = tmp_path / "x.bin"
    data_file.write_bytes(b"x")
    stderr = aws("put-record", "--stream-name", "cli-no-such-stream", "--partition-key", "k",
                 "--data", f"fileb://{data_file}", expect_failure=True)
    assert "ResourceNotFoundException" in stderr


def test_cli_reports_invalid_argument_for_a_garbage_iterator(aws):
    stderr = aws("get-records", "--shard-iterator", "garbage-iterator", expect_failure=True)
    assert "InvalidArgumentException" in stderr
    assert "Invalid ShardIterator." in stderr
