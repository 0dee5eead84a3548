"""kill -9 during Firehose delivery: after a restart every acknowledged record reaches the bucket
at least once, and delivery stream definitions are back as they were.

The failure this guards against: a PutRecordBatch acknowledged before its records were durable,
or a delivery checkpoint advanced before S3 confirmed the object, either of which loses records
when the process dies between the two. Duplicates are allowed (at-least-once) and reported.
"""

import gzip
import urllib.request
import time
import uuid

import boto3

from conftest import ACCESS_KEY_ID, ACCOUNT_ID, REGION, SECRET_ACCESS_KEY
from firehose_support import (
    S3sFs, firehose_client, list_keys, start_sluice, wait_active, wait_failure_description,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


def delivered_records(s3, bucket):
    records = []
    for key in list_keys(s3, bucket):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        records.extend(line for line in body.split(b"\n") if line)
    return records


def start_with_bucket(tmp_path, bucket_prefix):
    """s3s-fs, a Sluice delivering to it, and a fresh bucket: (s3s, data_dir, server, s3, bucket)."""
    s3s = S3sFs(tmp_path / "s3root", tmp_path / "s3s-fs.log")
    data_dir = tmp_path / "data"
    server = start_sluice(data_dir, s3s)
    s3 = s3s.client()
    bucket = f"{bucket_prefix}-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    return s3s, data_dir, server, s3, bucket


def test_kill_9_mid_delivery_loses_no_acknowledged_record(tmp_path):
    s3s, data_dir, server, s3, bucket = start_with_bucket(tmp_path, "crash")
    restarted = None
    try:
        firehose = firehose_client(server.endpoint)
        name = f"crash-{uuid.uuid4().hex[:8]}"
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            },
        )
        wait_active(firehose, name)
        firehose.update_destination(
            DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1",
            DestinationId="destinationId-000000000001",
            ExtendedS3DestinationUpdate={"Prefix": "crash/"})

        # Write until deliveries are under way, then keep writing a little and kill -9 right
        # after an acknowledgement, with records still buffered.
        acknowledged = []
        batch_index = 0
        deadline = time.monotonic() + 60
        seen_delivery_at = None
        while True:
            batch = [f"rec-{batch_index:05d}-{i:03d}-{'x' * 200}".encode() + b"\n" for i in range(100)]
            out = firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in batch])
            assert out["FailedPutCount"] == 0
            acknowledged.extend(r.rstrip(b"\n") for r in batch)
            batch_index += 1
            if seen_delivery_at is None and batch_index % 5 == 0 and list_keys(s3, bucket):
                seen_delivery_at = batch_index
            if seen_delivery_at is not None and batch_index >= seen_delivery_at + 10:
                break
            assert time.monotonic() < deadline, "no object was delivered within 60 s"
        server.kill()
        delivered_before = len(delivered_records(s3, bucket))
        assert delivered_before < len(acknowledged), "everything was delivered before the kill; nothing was tested"

        restarted = start_sluice(data_dir, s3s)
        firehose = firehose_client(restarted.endpoint)
        description = wait_active(firehose, name)
        assert description["VersionId"] == "2"
        assert description["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "crash/"

        wanted = set(acknowledged)
        deadline = time.monotonic() + 60
        while True:
            delivered = delivered_records(s3, bucket)
            missing = wanted - set(delivered)
            if not missing:
                break
            assert time.monotonic() < deadline, f"{len(missing)} acknowledged records never arrived"
            time.sleep(0.25)
        duplicates = len(delivered) - len(set(delivered))
        assert set(delivered) <= wanted, "the bucket holds records nobody wrote"
        assert all(key.startswith("crash/") for key in list_keys(s3, bucket))
        print(f"\nkill -9 mid-delivery: {len(acknowledged)} records acknowledged, {delivered_before} delivered "
              f"before the kill, all delivered after the restart with {duplicates} duplicates")
    finally:
        if restarted is not None:
            restarted.kill()
        if server.proc.poll() is None:
            server.kill()
        s3s.stop()


def test_delivery_retries_while_s3_is_down_and_delivers_once_it_is_back(tmp_path):
    """The destination fails (its server is gone) and recovers on the same address: delivery
    retries with backoff meanwhile and loses nothing, DescribeDeliveryStream shows the failure as
    FailureDescription while it lasts, and the FailureDescription is gone once S3 took the object."""
    s3s = S3sFs(tmp_path / "s3root", tmp_path / "s3s-fs.log")
    server = start_sluice(tmp_path / "data", s3s)
    try:
        s3 = s3s.client()
        bucket = f"retry-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        firehose = firehose_client(server.endpoint)
        name = f"retry-{uuid.uuid4().hex[:8]}"
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "CompressionFormat": "GZIP",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            },
        )
        assert "FailureDescription" not in wait_active(firehose, name)
        s3s.stop()
        records = [f"retry-{i}\n".encode() for i in range(50)]
        assert firehose.put_record_batch(
            DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
        acknowledged_at = time.monotonic()
        # From the first failed attempt on, DescribeDeliveryStream shows it, and the delivery
        # stream stays ACTIVE (AWS keeps it ACTIVE while deliveries fail).
        description = wait_failure_description(firehose, name)
        assert description["DeliveryStreamStatus"] == "ACTIVE"
        assert description["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
        assert description["FailureDescription"]["Details"].startswith("S3.ServiceUnavailable: "), description
        time.sleep(max(0.0, 2.5 - (time.monotonic() - acknowledged_at)))
        s3s = S3sFs(tmp_path / "s3root", tmp_path / "s3s-fs.log", port=s3s.port)
        s3 = s3s.client()
        deadline = time.monotonic() + 60
        while not list_keys(s3, bucket):
            assert time.monotonic() < deadline, "nothing was delivered after S3 came back"
            time.sleep(0.2)
        keys = list_keys(s3, bucket)
        body = b"".join(gzip.decompress(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys)
        assert body == b"".join(records)
        # The object is visible in s3s-fs a moment before Sluice has read S3's answer and
        # counted the delivery: wait for the count.
        deadline = time.monotonic() + 30
        while True:
            metrics = urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=10).read().decode()
            counted = f'sinks_firehose_delivery_to_s3_records_total{{delivery_stream="{name}"}} {len(records)}'
            if counted in metrics.splitlines():
                break
            assert time.monotonic() < deadline, metrics
            time.sleep(0.1)
        failures = [line for line in metrics.splitlines()
                    if line.startswith(f'sinks_firehose_delivery_to_s3_failures_total{{delivery_stream="{name}"}}')]
        assert failures and float(failures[0].split()[-1]) >= 1, metrics
        delivered = [line for line in metrics.splitlines()
                     if line.startswith(f'sinks_firehose_delivery_to_s3_records_total{{delivery_stream="{name}"}}')]
        assert delivered and float(delivered[0].split()[-1]) == len(records), metrics

        def series(metric):
            prefix = f'{metric}{{delivery_stream="{name}"}} '
            [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
            return float(line[len(prefix):])

        assert series("sinks_firehose_incoming_records_total") == len(records)
        assert series("sinks_firehose_incoming_bytes_total") == sum(len(r) for r in records)
        assert series("sinks_firehose_incoming_put_requests_total") == 1
        assert series("sinks_firehose_delivery_to_s3_success_total") == 1
        # The records waited out the outage: the object was at least 2.5 s stale when written.
        assert series("sinks_firehose_delivery_to_s3_data_freshness_seconds") >= 2.5
        assert "Firehose DeliveryToS3.DataFreshness" in metrics and "Firehose IncomingRecords" in metrics
        # Delivered again: the FailureDescription is gone.
        description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        assert "FailureDescription" not in description, description
        assert description["DeliveryStreamStatus"] == "ACTIVE"
    finally:
        server.kill()
        s3s.stop()


def test_a_kinesis_source_restarted_before_its_first_checkpoint_still_delivers_from_its_start(tmp_path):
    """A KinesisStreamAsSource delivery stream reads from its DeliveryStartTimestamp, not from
    whatever LATEST is when its reader (re)starts. The failure this guards against: records
    written after CreateDeliveryStream, not yet delivered (S3 is down, so no checkpoint exists)
    when the process is killed, and skipped after the restart because the new reader began at
    the stream's tip. Records written before the delivery stream existed stay undelivered. While
    S3 is down, DescribeDeliveryStream shows the S3 error and keeps the stream ACTIVE."""
    s3s, data_dir, server, s3, bucket = start_with_bucket(tmp_path, "kstart")
    restarted = None
    try:
        kinesis = boto3.client("kinesis", endpoint_url=server.endpoint, region_name=REGION,
                               aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
        source = f"kstart-src-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=source, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=source, WaiterConfig={"Delay": 0.2})
        kinesis.put_records(StreamName=source, Records=[
            {"Data": f"history-{i}\n".encode(), "PartitionKey": "p"} for i in range(10)])
        source_arn = kinesis.describe_stream_summary(StreamName=source)["StreamDescriptionSummary"]["StreamARN"]
        firehose = firehose_client(server.endpoint)
        name = f"kstart-{uuid.uuid4().hex[:8]}"
        firehose.create_delivery_stream(
            DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": ROLE},
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            },
        )
        start = wait_active(firehose, name)["Source"]["KinesisStreamSourceDescription"]["DeliveryStartTimestamp"]
        s3s.stop()
        fresh = [f"fresh-{i}\n".encode() for i in range(20)]
        kinesis.put_records(StreamName=source, Records=[{"Data": r, "PartitionKey": "p"} for r in fresh])
        description = wait_failure_description(firehose, name)
        assert description["DeliveryStreamStatus"] == "ACTIVE"
        assert description["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
        assert description["FailureDescription"]["Details"].startswith("S3."), description
        server.kill()

        s3s = S3sFs(tmp_path / "s3root", tmp_path / "s3s-fs.log", port=s3s.port)
        s3 = s3s.client()
        restarted = start_sluice(data_dir, s3s)
        firehose = firehose_client(restarted.endpoint)
        description = wait_active(firehose, name)
        assert description["Source"]["KinesisStreamSourceDescription"]["DeliveryStartTimestamp"] == start
        deadline = time.monotonic() + 60
        while sorted(delivered_records(s3, bucket)) != sorted(r.rstrip(b"\n") for r in fresh):
            assert time.monotonic() < deadline, f"delivered after the restart: {delivered_records(s3, bucket)}"
            time.sleep(0.2)
        assert "FailureDescription" not in firehose.describe_delivery_stream(
            DeliveryStreamName=name)["DeliveryStreamDescription"]
    finally:
        if restarted is not None:
            restarted.kill()
        server.kill()
        s3s.stop()


def test_firehose_calls_are_sigv4_verified_with_the_firehose_signing_name(tmp_path):
    """With credentials configured, a Firehose call must be signed with them, for the service
    `firehose`: a wrong secret and a signature scoped to `kinesis` are refused, as AWS does."""
    import boto3
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import http.client
    import json as json_module
    from urllib.parse import urlparse

    from botocore.config import Config
    from botocore.exceptions import ClientError

    from conftest import REGION

    s3s = S3sFs(tmp_path / "s3root", tmp_path / "s3s-fs.log")
    server = start_sluice(tmp_path / "data", s3s, extra_args=["--credentials", "AKIDFIREHOSE:firehose-secret"])
    try:
        def client(secret):
            return boto3.client("firehose", endpoint_url=server.endpoint, region_name=REGION,
                                aws_access_key_id="AKIDFIREHOSE", aws_secret_access_key=secret,
                                config=Config(retries={"max_attempts": 1}))

        assert client("firehose-secret").list_delivery_streams()["DeliveryStreamNames"] == []
        try:
            client("wrong-secret").list_delivery_streams()
            raise AssertionError("a wrong secret was accepted")
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidSignatureException"

        request = botocore.awsrequest.AWSRequest(
            method="POST", url=server.endpoint + "/", data=b"{}",
            headers={"Content-Type": "application/x-amz-json-1.1",
                     "X-Amz-Target": "Firehose_20150804.ListDeliveryStreams"})
        botocore.auth.SigV4Auth(botocore.credentials.Credentials("AKIDFIREHOSE", "firehose-secret"),
                                "kinesis", REGION).add_auth(request)
        prepared = request.prepare()
        target = urlparse(server.endpoint)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        connection.request("POST", "/", body=prepared.body, headers=dict(prepared.headers))
        response = connection.getresponse()
        body = json_module.loads(response.read())
        assert response.status == 400
        assert body["__type"] == "InvalidSignatureException", body
        assert "Credential should be scoped to correct service: 'firehose'" in body["message"], body
    finally:
        server.kill()
        s3s.stop()
