"""SubscribeToShard through boto3's own event-stream parser (HTTP/1.1, chunked body).

Guards against: a stream boto3 refuses (no `initial-response` first, bad CRCs), records that are
not pushed as they commit, and records altered on the way.
"""

import queue
import threading
import time

from conftest import ACCOUNT_ID, REGION


def create_active(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}"


def register_active_consumer(kinesis, stream_arn, name):
    arn = kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["Consumer"]["ConsumerARN"]
    deadline = time.monotonic() + 20
    while kinesis.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] != "ACTIVE":
        assert time.monotonic() < deadline, "the consumer never became ACTIVE"
        time.sleep(0.1)
    return arn


def test_boto3_subscription_receives_records_put_after_subscribing(kinesis, stream_name):
    stream_arn = create_active(kinesis, stream_name)
    consumer_arn = register_active_consumer(kinesis, stream_arn, "boto3-reader")

    response = kinesis.subscribe_to_shard(
        ConsumerARN=consumer_arn,
        ShardId="shardId-000000000000",
        StartingPosition={"Type": "LATEST"},
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    events = queue.Queue()

    def read():
        try:
            for event in response["EventStream"]:
                events.put(event)
        except Exception as error:  # surfaced to the test through the queue
            events.put(error)

    threading.Thread(target=read, daemon=True).start()

    payloads = [bytes([i, 0, 255]) + b"boto3" for i in range(5)]
    put_at = time.monotonic()
    put = kinesis.put_records(
        StreamName=stream_name,
        Records=[{"Data": p, "PartitionKey": f"pk{i}"} for i, p in enumerate(payloads)],
    )
    assert put["FailedRecordCount"] == 0

    received = []
    continuation = None
    deadline = time.monotonic() + 15
    while len(received) < len(payloads):
        item = events.get(timeout=max(0.1, deadline - time.monotonic()))
        assert not isinstance(item, Exception), repr(item)
        event = item["SubscribeToShardEvent"]
        received.extend(event["Records"])
        continuation = event["ContinuationSequenceNumber"]
        assert event["MillisBehindLatest"] >= 0
    latency = time.monotonic() - put_at
    assert latency < 1.0, f"records were pushed after {latency:.3f} s"

    assert [r["Data"] for r in received] == payloads
    assert [r["PartitionKey"] for r in received] == [f"pk{i}" for i in range(5)]
    assert [r["SequenceNumber"] for r in received] == [r["SequenceNumber"] for r in put["Records"]]
    assert continuation == put["Records"][-1]["SequenceNumber"]
    response["EventStream"].close()
