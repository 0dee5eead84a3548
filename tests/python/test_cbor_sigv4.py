"""The CBOR 1.1 protocol as the Java SDK speaks it, cross-checked with independent tools: request
bodies encoded and responses decoded by `cbor2`, requests signed by botocore's own SigV4 signer.

Blobs travel as CBOR byte strings and timestamps as tag 1 around integer epoch milliseconds
(shared/reference/kds.md §1.2).
"""

import time

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import cbor2
import pytest
import urllib3

from conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY

CBOR = "application/x-amz-cbor-1.1"
HTTP = urllib3.PoolManager()
# cbor2 reads tag 1 as RFC 8949 epoch seconds; Kinesis sends milliseconds, so keep the raw tag.
RAW_TAG_1 = {1: lambda value, _immutable: cbor2.CBORTag(1, value)}


def loads(data):
    return cbor2.loads(data, semantic_decoders=RAW_TAG_1)


def call(endpoint, operation, body):
    """Signs a CBOR request with botocore's SigV4 signer, sends it, returns (status, headers, body)."""
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=cbor2.dumps(body),
        headers={"Content-Type": CBOR, "X-Amz-Target": f"Kinesis_20131202.{operation}"},
    )
    credentials = botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    botocore.auth.SigV4Auth(credentials, "kinesis", REGION).add_auth(request)
    prepared = request.prepare()
    response = HTTP.request("POST", prepared.url, body=prepared.body, headers=dict(prepared.headers))
    return response.status, response.headers, response.data


def ok(endpoint, operation, body):
    status, headers, data = call(endpoint, operation, body)
    assert status == 200, loads(data) if data else status
    if not data:
        return None
    assert headers["Content-Type"] == CBOR
    return loads(data)


@pytest.fixture
def cbor_stream(endpoint, stream_name):
    assert ok(endpoint, "CreateStream", {"StreamName": stream_name, "ShardCount": 1}) is None
    deadline = time.monotonic() + 20
    while True:
        summary = ok(endpoint, "DescribeStreamSummary", {"StreamName": stream_name})
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return stream_name
        assert time.monotonic() < deadline, summary
        time.sleep(0.02)


def test_binary_data_and_millisecond_timestamps_round_trip(endpoint, cbor_stream):
    data = bytes(range(256))
    before_ms = int(time.time() * 1000)
    put = ok(endpoint, "PutRecord", {"StreamName": cbor_stream, "Data": data, "PartitionKey": "pk"})
    assert put["ShardId"] == "shardId-000000000000"
    assert isinstance(put["SequenceNumber"], str) and len(put["SequenceNumber"]) == 56
    after_ms = int(time.time() * 1000)

    iterator = ok(
        endpoint,
        "GetShardIterator",
        {
            "StreamName": cbor_stream,
            "ShardId": "shardId-000000000000",
            "ShardIteratorType": "AT_TIMESTAMP",
            "Timestamp": cbor2.CBORTag(1, before_ms - 1),
        },
    )["ShardIterator"]
    records = ok(endpoint, "GetRecords", {"ShardIterator": iterator})["Records"]
    assert len(records) == 1
    record = records[0]
    assert record["Data"] == data, "Data is a byte string"
    assert record["SequenceNumber"] == put["SequenceNumber"]
    stamp = record["ApproximateArrivalTimestamp"]
    assert isinstance(stamp, cbor2.CBORTag) and stamp.tag == 1
    assert isinstance(stamp.value, int), "integer epoch milliseconds"
    assert before_ms - 1000 <= stamp.value <= after_ms + 1000


def test_errors_are_cbor_maps_with_the_json_protocols_texts(endpoint):
    status, headers, data = call(endpoint, "PutRecord", {"StreamName": "s", "Data": b"\x01"})
    assert status == 400
    assert headers["Content-Type"] == CBOR
    assert loads(data) == {
        "__type": "ValidationException",
        "message": "1 validation error detected: Value null at 'partitionKey' "
        "failed to satisfy constraint: Member must not be null",
    }
