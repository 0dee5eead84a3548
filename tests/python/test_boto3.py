"""The Kinesis round trip through boto3, exactly as an application would use it against AWS."""

import datetime
import hashlib
import os
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT_ID, REGION

HASH_KEY_MAX = 2**128 - 1


def even_ranges(n):
    width = 2**128 // n
    return [(i * width, HASH_KEY_MAX if i == n - 1 else (i + 1) * width - 1) for i in range(n)]


def shard_for(partition_key, n):
    hash_key = int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")
    for index, (start, end) in enumerate(even_ranges(n)):
        if start <= hash_key <= end:
            return f"shardId-{index:012d}"
    raise AssertionError("even ranges cover the hash key space")


def wait_active(kinesis, name):
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def read_shard(kinesis, name, shard_id, iterator_type="TRIM_HORIZON", **extra):
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId=shard_id, ShardIteratorType=iterator_type, **extra
    )["ShardIterator"]
    records = []
    for _ in range(1000):
        out = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        records.extend(out["Records"])
        iterator = out["NextShardIterator"]
        if not out["Records"] and out.get("MillisBehindLatest") == 0:
            return records
    raise AssertionError("GetRecords never caught up")


def error_of(excinfo):
    error = excinfo.value.response["Error"]
    return error["Code"], error.get("Message", "")


def test_round_trip_create_describe_put_get_list_tag_delete(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    wait_active(kinesis, stream_name)

    description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert description["StreamName"] == stream_name
    assert description["StreamARN"] == f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{stream_name}"
    assert description["StreamStatus"] == "ACTIVE"
    assert description["RetentionPeriodHours"] == 24
    assert description["HasMoreShards"] is False
    shards = description["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001"]
    assert shards[0]["HashKeyRange"] == {
        "StartingHashKey": "0",
        "EndingHashKey": "170141183460469231731687303715884105727",
    }
    assert shards[1]["HashKeyRange"] == {
        "StartingHashKey": "170141183460469231731687303715884105728",
        "EndingHashKey": str(HASH_KEY_MAX),
    }

    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2

    written = {}
    single = os.urandom(1000)
    out = kinesis.put_record(StreamName=stream_name, Data=single, PartitionKey="single")
    assert out["ShardId"] == shard_for("single", 2)
    assert len(out["SequenceNumber"]) == 56 and out["SequenceNumber"].isdigit()
    written[out["SequenceNumber"]] = (out["ShardId"], "single", single)

    entries = [{"Data": os.urandom(i * 37 % 500 + 1), "PartitionKey": f"key-{i}"} for i in range(50)]
    entries.append({"Data": b"explicit", "PartitionKey": "x", "ExplicitHashKey": str(HASH_KEY_MAX)})
    out = kinesis.put_records(StreamName=stream_name, Records=entries)
    assert out["FailedRecordCount"] == 0
    assert len(out["Records"]) == len(entries)
    for entry, result in zip(entries, out["Records"]):
        expected_shard = "shardId-000000000001" if "ExplicitHashKey" in entry else shard_for(entry["PartitionKey"], 2)
        assert result["ShardId"] == expected_shard
        written[result["SequenceNumber"]] = (result["ShardId"], entry["PartitionKey"], entry["Data"])

    read = {}
    for shard in shards:
        records = read_shard(kinesis, stream_name, shard["ShardId"])
        sequence_numbers = [int(r["SequenceNumber"]) for r in records]
        assert sequence_numbers == sorted(sequence_numbers), "records come back in order"
        for record in records:
            read[record["SequenceNumber"]] = (shard["ShardId"], record["PartitionKey"], record["Data"])
            assert isinstance(record["ApproximateArrivalTimestamp"], datetime.datetime)
    assert read == written, "every record comes back byte for byte, on its shard, with its key"

    names = kinesis.list_streams()["StreamNames"]
    assert stream_name in names

    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"team": "storage", "env": "test"})
    tags = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert {t["Key"]: t["Value"] for t in tags["Tags"]} == {"team": "storage", "env": "test"}
    assert tags["HasMoreTags"] is False
    kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["team"])
    tags = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert {t["Key"]: t["Value"] for t in tags["Tags"]} == {"env": "test"}

    kinesis.delete_stream(StreamName=stream_name)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    with pytest.raises(ClientError) as excinfo:
        kinesis.describe_stream(StreamName=stream_name)
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Stream {stream_name} under account {ACCOUNT_ID} not found.",
    )
    assert isinstance(excinfo.value, kinesis.exceptions.ResourceNotFoundException)


def test_iterator_types_and_get_records_limit(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    wait_active(kinesis, stream_name)
    shard = "shardId-000000000000"
    sequence_numbers = []
    for i in range(6):
        if i == 3:
            time.sleep(0.05)
        out = kinesis.put_record(StreamName=stream_name, Data=f"r{i}".encode(), PartitionKey="k")
        sequence_numbers.append(out["SequenceNumber"])

    data = lambda records: [r["Data"].decode() for r in records]  # noqa: E731
    everything = read_shard(kinesis, stream_name, shard)
    assert data(everything) == [f"r{i}" for i in range(6)]
    assert data(read_shard(kinesis, stream_name, shard, "AT_SEQUENCE_NUMBER",
                           StartingSequenceNumber=sequence_numbers[2])) == ["r2", "r3", "r4", "r5"]
    assert data(read_shard(kinesis, stream_name, shard, "AFTER_SEQUENCE_NUMBER",
                           StartingSequenceNumber=sequence_numbers[2])) == ["r3", "r4", "r5"]
    at = everything[3]["ApproximateArrivalTimestamp"]
    assert data(read_shard(kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=at)) == ["r3", "r4", "r5"]
    assert read_shard(kinesis, stream_name, shard, "LATEST") == []

    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = kinesis.get_records(ShardIterator=iterator, Limit=4)
    assert data(out["Records"]) == ["r0", "r1", "r2", "r3"]
    out = kinesis.get_records(ShardIterator=out["NextShardIterator"], Limit=4)
    assert data(out["Records"]) == ["r4", "r5"]
    out = kinesis.get_records(ShardIterator=out["NextShardIterator"], Limit=4)
    assert out["Records"] == []
    assert out["MillisBehindLatest"] == 0
    assert out["NextShardIterator"], "an open shard always has a next iterator"
    kinesis.delete_stream(StreamName=stream_name)


def test_missing_stream_is_resource_not_found(kinesis):
    with pytest.raises(ClientError) as excinfo:
        kinesis.put_record(StreamName="py-no-such-stream", Data=b"x", PartitionKey="k")
    assert error_of(excinfo) == (
        "ResourceNotFoundException",
        f"Stream py-no-such-stream under account {ACCOUNT_ID} not found.",
    )
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.describe_stream_summary(StreamName="py-no-such-stream")
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.get_shard_iterator(StreamName="py-no-such-stream", ShardId="shardId-000000000000",
                                   ShardIteratorType="TRIM_HORIZON")


def test_garbage_iterator_is_invalid_argument(kinesis):
    with pytest.raises(ClientError) as excinfo:
        kinesis.get_records(ShardIterator="this-is-not-an-iterator")
    assert error_of(excinfo) == ("InvalidArgumentException", "Invalid ShardIterator.")


def test_validation_errors_for_bad_records(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    wait_active(kinesis, stream_name)
    with pytest.raises(ClientError) as excinfo:
        kinesis.put_records(
            StreamName=stream_name, Records=[{"Data": b"x", "PartitionKey": "k"}] * 501
        )
    code, message = error_of(excinfo)
    assert code == "ValidationException"
    assert "Member must have length less than or equal to 500" in message
    with pytest.raises(ClientError) as excinfo:
        kinesis.put_record(StreamName=stream_name, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128))
    code, message = error_of(excinfo)
    assert code == "InvalidArgumentException"
    assert message == (
        "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. "
        f"Specified value was {2**128}"
    )
    kinesis.delete_stream(StreamName=stream_name)
