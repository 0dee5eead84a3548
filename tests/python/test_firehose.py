"""Amazon Data Firehose on Sluice, driven by boto3's `firehose` client and the `aws firehose` CLI,
delivering into a real S3-compatible server (s3s-fs) that the tests start.

What these guard against: an API that boto3 or the CLI cannot use unchanged (shapes, errors,
paging, optimistic concurrency); objects whose keys, compression framing or contents differ from
what Firehose writes (records concatenated as they are, `YYYY/MM/dd/HH/` and
`<name>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><ext>`); and delivery that gives up on a destination
that is down for a while.
"""

import gzip
import io
import json
import re
import subprocess
import time
import uuid
import zipfile

import cramjam
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT_ID, REGION, aws_cli_env, sluice_bin
from firehose_support import (
    UUID, S3sFs, default_key_pattern, firehose_client, list_keys, start_sluice, wait_active,
    wait_failure_description, wait_for_keys,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


@pytest.fixture(scope="module")
def s3s(tmp_path_factory):
    base = tmp_path_factory.mktemp("s3s")
    server = S3sFs(base / "root", base / "s3s-fs.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(s3s, tmp_path_factory):
    base = tmp_path_factory.mktemp("sluice-firehose")
    process = start_sluice(base / "data", s3s)
    yield process
    process.kill()


@pytest.fixture(scope="module")
def firehose(server):
    return firehose_client(server.endpoint)


@pytest.fixture(scope="module")
def s3(s3s):
    return s3s.client()


@pytest.fixture
def name(request):
    return f"fh-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def bucket(s3):
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    error = info.value.response["Error"]
    return error["Code"], error.get("Message", "")


def s3_config(bucket, **extra):
    config = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"}
    config.update(extra)
    return config


def test_delivery_stream_lifecycle_create_describe_list_update_tag_encrypt_delete(firehose, name, bucket):
    arn = firehose.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration=s3_config(bucket),
        Tags=[{"Key": "team", "Value": "data"}],
    )["DeliveryStreamARN"]
    assert arn == f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}"

    description = wait_active(firehose, name)
    assert description["DeliveryStreamName"] == name
    assert description["DeliveryStreamType"] == "DirectPut"
    assert description["VersionId"] == "1"
    assert description["HasMoreDestinations"] is False
    assert description["DeliveryStreamEncryptionConfiguration"]["Status"] == "DISABLED"
    [destination] = description["Destinations"]
    assert destination["DestinationId"] == "destinationId-000000000001"
    extended = destination["ExtendedS3DestinationDescription"]
    assert extended["BucketARN"] == f"arn:aws:s3:::{bucket}"
    assert extended["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    assert extended["CompressionFormat"] == "UNCOMPRESSED"
    # Paging past the only destination.
    paged = firehose.describe_delivery_stream(
        DeliveryStreamName=name, ExclusiveStartDestinationId="destinationId-000000000001")
    assert paged["DeliveryStreamDescription"]["Destinations"] == []

    # Listing: type filter, exclusive start, limit and HasMore.
    second = name + "-2"
    firehose.create_delivery_stream(DeliveryStreamName=second, S3DestinationConfiguration=s3_config(bucket))
    listed = firehose.list_delivery_streams(Limit=10000)
    assert name in listed["DeliveryStreamNames"] and second in listed["DeliveryStreamNames"]
    direct = firehose.list_delivery_streams(DeliveryStreamType="DirectPut", Limit=10000)["DeliveryStreamNames"]
    assert name in direct
    assert name not in firehose.list_delivery_streams(
        DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"]
    page = firehose.list_delivery_streams(Limit=1, ExclusiveStartDeliveryStreamName=name)
    assert page["DeliveryStreamNames"] == [second]
    everything = firehose.list_delivery_streams(Limit=10000)["DeliveryStreamNames"]
    assert everything == sorted(everything)
    assert firehose.list_delivery_streams(Limit=1)["HasMoreDeliveryStreams"] is True

    # UpdateDestination with optimistic concurrency.
    code, message = error_of(
        firehose.update_destination, DeliveryStreamName=name, CurrentDeliveryStreamVersionId="7",
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP"})
    assert code == "ConcurrentModificationException", message
    firehose.update_destination(
        DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1",
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"CompressionFormat": "GZIP", "Prefix": "logs/",
                                     "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 0}})
    updated = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert updated["VersionId"] == "2"
    assert "LastUpdateTimestamp" in updated
    extended = updated["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert extended["CompressionFormat"] == "GZIP"
    assert extended["Prefix"] == "logs/"
    assert extended["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 0}
    code, _ = error_of(
        firehose.update_destination, DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1",
        DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "x/"})
    assert code == "ConcurrentModificationException"
    code, _ = error_of(
        firehose.update_destination, DeliveryStreamName=name, CurrentDeliveryStreamVersionId="2",
        DestinationId="destinationId-000000000009", ExtendedS3DestinationUpdate={"Prefix": "x/"})
    assert code == "InvalidArgumentException"

    # Tags.
    firehose.tag_delivery_stream(DeliveryStreamName=name, Tags=[{"Key": "env", "Value": "test"}])
    tags = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)
    assert tags["Tags"] == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}]
    assert tags["HasMoreTags"] is False
    limited = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, Limit=1)
    assert limited["Tags"] == [{"Key": "env", "Value": "test"}] and limited["HasMoreTags"] is True
    after = firehose.list_tags_for_delivery_stream(DeliveryStreamName=name, ExclusiveStartTagKey="env")
    assert after["Tags"] == [{"Key": "team", "Value": "data"}]
    firehose.untag_delivery_stream(DeliveryStreamName=name, TagKeys=["team"])
    assert firehose.list_tags_for_delivery_stream(DeliveryStreamName=name)["Tags"] == [{"Key": "env", "Value": "test"}]
    code, _ = error_of(firehose.tag_delivery_stream, DeliveryStreamName=name,
                       Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert code == "LimitExceededException"

    # Server-side encryption flag.
    firehose.start_delivery_stream_encryption(
        DeliveryStreamName=name, DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
    encryption = firehose.describe_delivery_stream(
        DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamEncryptionConfiguration"]
    assert encryption == {"KeyType": "AWS_OWNED_CMK", "Status": "ENABLED"}
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b"x"})["Encrypted"] is True
    code, _ = error_of(
        firehose.start_delivery_stream_encryption, DeliveryStreamName=name,
        DeliveryStreamEncryptionConfigurationInput={"KeyType": "CUSTOMER_MANAGED_CMK"})
    assert code == "InvalidArgumentException"
    firehose.stop_delivery_stream_encryption(DeliveryStreamName=name)
    assert firehose.describe_delivery_stream(DeliveryStreamName=name)[
        "DeliveryStreamDescription"]["DeliveryStreamEncryptionConfiguration"] == {"Status": "DISABLED"}

    firehose.delete_delivery_stream(DeliveryStreamName=name)
    firehose.delete_delivery_stream(DeliveryStreamName=second)
    code, message = error_of(firehose.describe_delivery_stream, DeliveryStreamName=name)
    assert code == "ResourceNotFoundException"
    assert message == f"Firehose {name} under account {ACCOUNT_ID} not found."
    assert name not in firehose.list_delivery_streams(Limit=10000)["DeliveryStreamNames"]


def test_bad_requests_get_aws_errors_and_the_server_stays_up(firehose, server, name, bucket):
    firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=s3_config(bucket))
    code, _ = error_of(firehose.create_delivery_stream, DeliveryStreamName=name,
                       ExtendedS3DestinationConfiguration=s3_config(bucket))
    assert code == "ResourceInUseException"

    code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName="bad name!",
                             ExtendedS3DestinationConfiguration=s3_config(bucket))
    assert code == "ValidationException"
    assert "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+" in message

    for hints, member in [({"SizeInMBs": 129, "IntervalInSeconds": 60}, "sizeInMBs"),
                          ({"SizeInMBs": 5, "IntervalInSeconds": 901}, "intervalInSeconds")]:
        code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-h",
                                 ExtendedS3DestinationConfiguration=s3_config(bucket, BufferingHints=hints))
        assert code == "ValidationException", message
        assert f"extendedS3DestinationConfiguration.bufferingHints.{member}" in message

    bad_prefixes = [
        ("!{timestamp:yyyy", "e/!{firehose:error-output-type}/"),        # not closed
        ("!{timestamp:QQQ}/", "e/!{firehose:error-output-type}/"),       # unknown pattern letter
        ("!{nope:x}/", "e/!{firehose:error-output-type}/"),              # unknown namespace
        ("!{firehose:error-output-type}/", "e/!{firehose:error-output-type}/"),  # only in the error prefix
        ("!{timestamp:yyyy}/", None),                                     # expressions need an error prefix
        ("!{timestamp:yyyy}/", "e/!{timestamp:yyyy}/"),                   # which needs the error type
    ]
    for prefix, error_prefix in bad_prefixes:
        config = s3_config(bucket, Prefix=prefix)
        if error_prefix is not None:
            config["ErrorOutputPrefix"] = error_prefix
        code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-p",
                                 ExtendedS3DestinationConfiguration=config)
        assert code == "InvalidArgumentException", (prefix, error_prefix, code, message)

    code, _ = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-n")
    assert code == "InvalidArgumentException"
    code, _ = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-b",
                       ExtendedS3DestinationConfiguration=s3_config("x", BucketARN="not-an-arn"))
    assert code == "ValidationException"
    code, _ = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-t",
                       ExtendedS3DestinationConfiguration=s3_config(
                           bucket, ProcessingConfiguration={"Enabled": True, "Processors": []}))
    assert code == "InvalidArgumentException"

    missing = "does-not-exist-" + uuid.uuid4().hex[:6]
    for call, kwargs in [
        (firehose.describe_delivery_stream, {}),
        (firehose.delete_delivery_stream, {}),
        (firehose.put_record, {"Record": {"Data": b"x"}}),
        (firehose.put_record_batch, {"Records": [{"Data": b"x"}]}),
        (firehose.list_tags_for_delivery_stream, {}),
    ]:
        code, message = error_of(call, DeliveryStreamName=missing, **kwargs)
        assert code == "ResourceNotFoundException", (call, code, message)

    wait_active(firehose, name)
    code, message = error_of(firehose.put_record_batch, DeliveryStreamName=name,
                             Records=[{"Data": b"x"}] * 501)
    assert code == "ValidationException", message
    code, message = error_of(firehose.put_record, DeliveryStreamName=name,
                             Record={"Data": b"x" * 1_024_001})
    assert code == "ValidationException", message
    # 5 records of 1,000,000 bytes are over the 4 MiB of a batch.
    code, message = error_of(firehose.put_record_batch, DeliveryStreamName=name,
                             Records=[{"Data": b"y" * 1_000_000}] * 5)
    assert code == "InvalidArgumentException", message
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b"x" * 1_024_000})["RecordId"]

    # The internal stream that holds the records is not one of the user's Kinesis streams.
    kinesis = server_kinesis(server)
    assert not [s for s in kinesis.list_streams()["StreamNames"] if name in s]
    firehose.delete_delivery_stream(DeliveryStreamName=name)
    assert firehose.list_delivery_streams()["DeliveryStreamNames"] is not None


def server_kinesis(server):
    import boto3
    from botocore.config import Config
    from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY
    return boto3.client("kinesis", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
                        config=Config(retries={"max_attempts": 1}))


def decompress(format_name: str, body: bytes) -> bytes:
    if format_name == "UNCOMPRESSED":
        return body
    if format_name == "GZIP":
        return gzip.decompress(body)
    if format_name == "ZIP":
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            [entry] = archive.namelist()
            return archive.read(entry)
    if format_name == "Snappy":
        # The Snappy framing format starts with its stream identifier chunk.
        assert body[:10] == b"\xff\x06\x00\x00sNaPpY"
        return bytes(cramjam.snappy.decompress(body))
    if format_name == "HADOOP_SNAPPY":
        out = bytearray()
        while body:
            raw, packed = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            block = bytes(cramjam.snappy.decompress_raw(body[8:8 + packed]))
            assert len(block) == raw
            out += block
            body = body[8 + packed:]
        return bytes(out)
    if format_name == "ZSTD":
        assert body[:4] == b"\x28\xb5\x2f\xfd"
        return bytes(cramjam.zstd.decompress(body))
    raise AssertionError(format_name)


EXTENSIONS = {"UNCOMPRESSED": "", "GZIP": ".gz", "ZIP": ".zip", "Snappy": ".snappy",
              "HADOOP_SNAPPY": ".hsnappy", "ZSTD": ".zst"}


@pytest.mark.parametrize("compression", list(EXTENSIONS))
def test_put_record_batch_lands_in_s3_with_aws_keys_compression_and_bytes(firehose, s3, name, bucket, compression):
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, CompressionFormat=compression, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}),
    )
    wait_active(firehose, name)
    # Binary records of several sizes; Firehose adds no delimiter between them.
    records = [bytes([i % 256]) * (i * 37 % 3000) + f"|record-{i}\n".encode() for i in range(300)]
    out = firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])
    assert out["FailedPutCount"] == 0
    assert len(out["RequestResponses"]) == len(records)
    assert all(r["RecordId"] for r in out["RequestResponses"])
    assert len({r["RecordId"] for r in out["RequestResponses"]}) == len(records)
    started = time.gmtime()

    [key] = wait_for_keys(s3, bucket, "", lambda keys: len(keys) >= 1)
    match = default_key_pattern(name, 1, EXTENSIONS[compression]).match(key)
    assert match, key
    year, month, day, hour = (int(g) for g in match.groups()[:4])
    assert (year, month, day) == (started.tm_year, started.tm_mon, started.tm_mday) or hour in (23, 0)
    assert match.group(1, 2, 3, 4) == match.group(5, 6, 7, 8)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert decompress(compression, body) == b"".join(records)
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_custom_prefix_with_timestamp_and_random_string_expressions(firehose, s3, name, bucket):
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, Prefix="data/year=!{timestamp:yyyy}/day=!{timestamp:yyyy-MM-dd}/!{firehose:random-string}/",
            ErrorOutputPrefix="errors/!{firehose:error-output-type}/!{timestamp:yyyy}/",
            BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}),
    )
    wait_active(firehose, name)
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b'{"a":1}\n'})
    [key] = wait_for_keys(s3, bucket, "data/", lambda keys: len(keys) >= 1)
    pattern = re.compile(
        rf"^data/year=(\d{{4}})/day=(\d{{4}})-\d{{2}}-\d{{2}}/[a-z0-9]{{11}}/{re.escape(name)}-1-"
        rf"(\d{{4}})-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-\d{{2}}-[0-9a-f-]{{36}}$")
    match = pattern.match(key)
    assert match, key
    assert match.group(1) == match.group(2) == match.group(3)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"a":1}\n'
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_buffering_by_size_and_interval(firehose, s3, name, bucket):
    """1 MiB / 2 s hints: 3 MiB in one batch is cut into objects of about 1 MiB, and a small
    record waits for the interval instead of going out at once."""
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 2}),
    )
    wait_active(firehose, name)
    records = [bytes([65 + i % 26]) * 100_000 for i in range(30)]
    for start in range(0, len(records), 10):
        assert firehose.put_record_batch(
            DeliveryStreamName=name, Records=[{"Data": r} for r in records[start:start + 10]])["FailedPutCount"] == 0
    keys = wait_for_keys(s3, bucket, "", lambda keys: sum(
        s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys) >= 3_000_000, timeout_s=30)
    assert len(keys) >= 3, keys
    bodies = [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]
    assert sorted(bodies, key=len)[-1].__len__() <= 1024 * 1024 + 100_000
    assert sorted(b"".join(bodies)) == sorted(b"".join(records))

    before = set(keys)
    put_at = time.monotonic()
    firehose.put_record(DeliveryStreamName=name, Record={"Data": b"late\n"})
    time.sleep(0.8)
    assert set(list_keys(s3, bucket)) == before, "a small record went out before the 2 s interval"
    wait_for_keys(s3, bucket, "", lambda keys: len(set(keys) - before) == 1, timeout_s=15)
    assert time.monotonic() - put_at >= 1.5
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_aws_cli_firehose_round_trip(aws_cli, server, s3, name, bucket, tmp_path):
    def aws(*args):
        command = [aws_cli, "firehose", *args, "--endpoint-url", server.endpoint, "--region", REGION,
                   "--output", "json"]
        result = subprocess.run(command, env=aws_cli_env(), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"aws firehose {' '.join(args)} failed:\n{result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else {}

    config = tmp_path / "s3.json"
    config.write_text(json.dumps(s3_config(bucket, CompressionFormat="GZIP",
                                           BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})))
    out = aws("create-delivery-stream", "--delivery-stream-name", name,
              "--extended-s3-destination-configuration", f"file://{config}")
    assert out["DeliveryStreamARN"].endswith(f":deliverystream/{name}")
    deadline = time.monotonic() + 20
    while aws("describe-delivery-stream", "--delivery-stream-name", name)[
            "DeliveryStreamDescription"]["DeliveryStreamStatus"] != "ACTIVE":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert name in aws("list-delivery-streams", "--limit", "10000")["DeliveryStreamNames"]
    # The CLI v1 sends a blob given as text as the text's UTF-8 bytes.
    record_id = aws("put-record", "--delivery-stream-name", name, "--record", "Data=hello-from-the-cli")["RecordId"]
    assert record_id
    [key] = wait_for_keys(s3, bucket, "", lambda keys: len(keys) >= 1)
    assert key.endswith(".gz")
    assert gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == b"hello-from-the-cli"
    aws("delete-delivery-stream", "--delivery-stream-name", name)
    result = subprocess.run(
        [aws_cli, "firehose", "describe-delivery-stream", "--delivery-stream-name", name,
         "--endpoint-url", server.endpoint, "--region", REGION],
        env=aws_cli_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "ResourceNotFoundException" in result.stderr


def kpl_aggregate(records, partition_key="pk"):
    """A KPL aggregated record (magic, protobuf AggregatedRecord, MD5), built by hand."""
    import hashlib

    def varint(n):
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    def field(number, value):
        return varint(number << 3 | 2) + varint(len(value)) + value

    body = field(1, partition_key.encode())
    for record in records:
        body += field(3, varint(1 << 3) + varint(0) + field(3, record))
    return b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()


def test_kinesis_stream_as_source_starts_at_its_delivery_start_timestamp_and_deaggregates_kpl(
        firehose, server, s3, name, bucket):
    """Firehose "starts reading data from the LATEST position" of a Kinesis source (developer
    guide), and describes that instant as Source.KinesisStreamSourceDescription's
    DeliveryStartTimestamp. Guards against delivering the stream's history (records written
    before the delivery stream existed), against skipping records written after it, and against
    KPL aggregates delivered without being split into their user records."""
    kinesis = server_kinesis(server)
    source = name + "-src"
    kinesis.create_stream(StreamName=source, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=source, WaiterConfig={"Delay": 0.2})
    history = [f"history-{i}\n".encode() for i in range(20)]
    for i, record in enumerate(history):
        kinesis.put_record(StreamName=source, Data=record, PartitionKey=f"k{i}")
    source_arn = kinesis.describe_stream_summary(StreamName=source)["StreamDescriptionSummary"]["StreamARN"]

    code, _ = error_of(
        firehose.create_delivery_stream, DeliveryStreamName=name + "-x", DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn + "-missing", "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_config(bucket))
    assert code == "InvalidArgumentException"
    before_create = time.time()
    firehose.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}),
    )
    after_create = time.time()
    description = wait_active(firehose, name)
    assert description["DeliveryStreamType"] == "KinesisStreamAsSource"
    source_description = description["Source"]["KinesisStreamSourceDescription"]
    assert source_description["KinesisStreamARN"] == source_arn
    assert source_description["RoleARN"] == ROLE
    start = source_description["DeliveryStartTimestamp"].timestamp()
    assert before_create - 0.001 <= start <= after_create + 0.001, (before_create, start, after_create)
    code, message = error_of(firehose.put_record, DeliveryStreamName=name, Record={"Data": b"x"})
    assert code == "InvalidArgumentException", message
    assert name in firehose.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"]

    later = [f"later-{i}\n".encode() for i in range(10)]
    for i, record in enumerate(later):
        kinesis.put_record(StreamName=source, Data=record, PartitionKey=f"l{i}")
    user_records = [f"user-{i}\n".encode() for i in range(5)]
    kinesis.put_record(StreamName=source, Data=kpl_aggregate(user_records), PartitionKey="agg")
    expected = sorted(later + user_records)

    def delivered():
        out = []
        for key in list_keys(s3, bucket):
            assert default_key_pattern(name, 1, "").match(key), key
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            out.extend(line + b"\n" for line in body.split(b"\n") if line)
        return sorted(out)

    deadline = time.monotonic() + 30
    while delivered() != expected:
        assert time.monotonic() < deadline, f"delivered {delivered()} != {expected}"
        time.sleep(0.2)
    # Reading on for a moment still finds no history: it was never read, not merely late.
    time.sleep(2)
    assert delivered() == expected
    firehose.delete_delivery_stream(DeliveryStreamName=name)
    # The user's stream is not the delivery stream's to delete.
    assert kinesis.describe_stream_summary(StreamName=source)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    kinesis.delete_stream(StreamName=source)


def dynamic_config(bucket, query, prefix, **extra):
    config = s3_config(
        bucket, Prefix=prefix, ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 0},
        DynamicPartitioningConfiguration={"Enabled": True, "RetryOptions": {"DurationInSeconds": 60}},
        ProcessingConfiguration={"Enabled": True, "Processors": [
            {"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": query},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]},
            {"Type": "AppendDelimiterToRecord", "Parameters": []}]})
    config.update(extra)
    return config


def test_dynamic_partitioning_with_jq_writes_one_object_per_partition(firehose, s3, name, bucket):
    query = "{customer: .customer, day: .ts[0:10]}"
    prefix = "by/customer=!{partitionKeyFromQuery:customer}/day=!{partitionKeyFromQuery:day}/"
    code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-bad",
                             ExtendedS3DestinationConfiguration=dynamic_config(bucket, "{customer: .customer", prefix))
    assert code == "InvalidArgumentException" and "MetadataExtractionQuery" in message, message
    code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-nokey",
                             ExtendedS3DestinationConfiguration=dynamic_config(bucket, query, "plain/"))
    assert code == "InvalidArgumentException", message

    firehose.create_delivery_stream(DeliveryStreamName=name,
                                    ExtendedS3DestinationConfiguration=dynamic_config(bucket, query, prefix))
    description = wait_active(firehose, name)
    extended = description["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert extended["DynamicPartitioningConfiguration"] == {"Enabled": True, "RetryOptions": {"DurationInSeconds": 60}}
    assert extended["ProcessingConfiguration"]["Processors"][0]["Type"] == "MetadataExtraction"
    code, _ = error_of(firehose.update_destination, DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1",
                       DestinationId="destinationId-000000000001",
                       ExtendedS3DestinationUpdate={"DynamicPartitioningConfiguration": {"Enabled": False}})
    assert code == "InvalidArgumentException"

    records = [
        b'{"customer":"a","ts":"2024-05-01T10:00:00Z","n":1}',
        b'{"customer":"b","ts":"2024-05-01T11:00:00Z","n":2}',
        b'{"customer":"a","ts":"2024-05-02T09:00:00Z","n":3}',
        b'{"customer":"a","ts":"2024-05-01T12:00:00Z","n":4}',
        b'not json',
        b'{"ts":"2024-05-01T12:00:00Z"}',
    ]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    keys = wait_for_keys(s3, bucket, "", lambda keys: len(keys) >= 4)
    by_partition = {}
    for key in keys:
        if key.startswith("errors/"):
            continue
        match = re.match(rf"^by/customer=(\w+)/day=([\d-]+)/{re.escape(name)}-1-\d{{4}}(?:-\d{{2}}){{5}}-{UUID}$", key)
        assert match, key
        by_partition[match.groups()] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert by_partition == {
        ("a", "2024-05-01"): records[0] + b"\n" + records[3] + b"\n",
        ("b", "2024-05-01"): records[1] + b"\n",
        ("a", "2024-05-02"): records[2] + b"\n",
    }
    [error_key] = [k for k in keys if k.startswith("errors/")]
    assert error_key.startswith("errors/partitioning-failed/"), error_key
    lines = [json.loads(l) for l in s3.get_object(Bucket=bucket, Key=error_key)["Body"].read().splitlines()]
    import base64
    assert sorted(base64.b64decode(l["rawData"]) for l in lines) == sorted(records[4:])
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_objects_over_16_mib_go_up_as_multipart_uploads(firehose, s3, bucket):
    # A short name: s3s-fs names a multipart upload's files after the whole key, and longer keys
    # pass the file system's 255-byte limit there.
    name = f"mp-{uuid.uuid4().hex[:6]}"
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, BufferingHints={"SizeInMBs": 17, "IntervalInSeconds": 900}),
    )
    wait_active(firehose, name)
    # 18 records of about 1 MB: the 18th brings the buffer past 17 MiB, so they go out as one
    # object of about 18 MB whatever the timing.
    records = []
    for batch in range(5):
        chunk = [bytes([65 + batch]) * 999_990 + f"|{batch}-{i}\n".encode() for i in range(4 if batch < 4 else 2)]
        assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in chunk])["FailedPutCount"] == 0
        records.extend(chunk)
    keys = wait_for_keys(s3, bucket, "", lambda keys: sum(
        s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys) >= sum(map(len, records)), timeout_s=60)
    heads = {k: s3.head_object(Bucket=bucket, Key=k) for k in keys}
    large = [k for k, h in heads.items() if h["ContentLength"] > 16 * 1024 * 1024]
    assert large, {k: h["ContentLength"] for k, h in heads.items()}
    # S3 marks a multipart object's ETag with its part count.
    assert all(re.search(r"-\d+\"?$", heads[k]["ETag"]) for k in large), {k: heads[k]["ETag"] for k in large}
    body = b"".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)
    assert sorted(body.split(b"\n")[:-1]) == sorted(r[:-1] for r in records)
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_json_records_are_converted_to_parquet_by_a_local_table_schema(firehose, server, s3, name, bucket):
    """DataFormatConversionConfiguration: the schema comes from the table file that stands in for
    Glue (<data-dir>/firehose/tables/<db>/<table>.json); the object is read back by pyarrow."""
    import io as io_module

    import pyarrow.parquet as pq

    table_dir = server.data_dir / "firehose" / "tables" / "analytics"
    table_dir.mkdir(parents=True, exist_ok=True)
    (table_dir / "clicks.json").write_text(json.dumps({"columns": [
        {"name": "id", "type": "bigint"}, {"name": "page", "type": "string"},
        {"name": "ms", "type": "double"}, {"name": "ok", "type": "boolean"}]}))
    conversion = {
        "Enabled": True,
        "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "analytics", "TableName": "clicks",
                                "Region": REGION},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
    }
    code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-gz",
                             ExtendedS3DestinationConfiguration=s3_config(
                                 bucket, CompressionFormat="GZIP", DataFormatConversionConfiguration=conversion))
    assert code == "InvalidArgumentException", message
    missing = dict(conversion, SchemaConfiguration=dict(conversion["SchemaConfiguration"], TableName="nope"))
    code, message = error_of(firehose.create_delivery_stream, DeliveryStreamName=name + "-nt",
                             ExtendedS3DestinationConfiguration=s3_config(
                                 bucket, DataFormatConversionConfiguration=missing))
    assert code == "InvalidArgumentException" and "nope" in message, message

    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration=s3_config(
            bucket, DataFormatConversionConfiguration=conversion,
            BufferingHints={"SizeInMBs": 64, "IntervalInSeconds": 0}))
    extended = wait_active(firehose, name)["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert extended["DataFormatConversionConfiguration"]["SchemaConfiguration"]["TableName"] == "clicks"
    records = [b'{"id":1,"page":"/a","ms":1.5,"ok":true}\n', b'{"ID":2,"Page":"/b"}\n',
               b'{"id":"not a number"}\n', b'{"id":3,"page":"/c","ms":3,"ok":false}']
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    keys = wait_for_keys(s3, bucket, "", lambda keys: len(keys) >= 2)
    [data_key] = [k for k in keys if k.endswith(".parquet")]
    assert default_key_pattern(name, 1, ".parquet").match(data_key), data_key
    table = pq.read_table(io_module.BytesIO(s3.get_object(Bucket=bucket, Key=data_key)["Body"].read()))
    assert table.column_names == ["id", "page", "ms", "ok"]
    assert table.to_pylist() == [
        {"id": 1, "page": "/a", "ms": 1.5, "ok": True},
        {"id": 2, "page": "/b", "ms": None, "ok": None},
        {"id": 3, "page": "/c", "ms": 3.0, "ok": False},
    ]
    [error_key] = [k for k in keys if not k.endswith(".parquet")]
    assert error_key.startswith("format-conversion-failed/"), error_key
    [line] = [json.loads(l) for l in s3.get_object(Bucket=bucket, Key=error_key)["Body"].read().splitlines()]
    import base64
    assert base64.b64decode(line["rawData"]) == records[2]
    firehose.delete_delivery_stream(DeliveryStreamName=name)



def test_a_deleted_source_stream_shows_in_failure_description_until_it_is_readable_again(
        firehose, server, name, bucket):
    """Firehose retries GetRecords on a Kinesis source indefinitely (troubleshooting guide) and the
    delivery stream stays ACTIVE. Guards against a source that cannot be read going unseen: the
    read error is the stream's FailureDescription until a read succeeds again."""
    kinesis = server_kinesis(server)
    source = name + "-src"
    kinesis.create_stream(StreamName=source, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=source, WaiterConfig={"Delay": 0.2})
    source_arn = kinesis.describe_stream_summary(StreamName=source)["StreamDescriptionSummary"]["StreamARN"]
    firehose.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=s3_config(bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0}))
    assert "FailureDescription" not in wait_active(firehose, name)
    kinesis.delete_stream(StreamName=source)
    description = wait_failure_description(firehose, name)
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
    assert description["FailureDescription"]["Details"].startswith("Kinesis.GetRecordsFailed: "), description
    assert source in description["FailureDescription"]["Details"]

    kinesis.create_stream(StreamName=source, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=source, WaiterConfig={"Delay": 0.2})
    assert wait_failure_description(firehose, name, shown=False)["DeliveryStreamStatus"] == "ACTIVE"
    firehose.delete_delivery_stream(DeliveryStreamName=name)
    kinesis.delete_stream(StreamName=source)


def test_a_delivery_stream_named_in_the_config_file_delivers_to_its_own_s3_endpoint(s3s, tmp_path):
    """`[firehose_s3."NAME"]` gives one delivery stream its own endpoint and keys; the others
    keep the environment's. Two real s3s-fs servers with different keys: each object must be in
    the server its delivery stream was configured for, and only there."""
    other = S3sFs(tmp_path / "other-root", tmp_path / "other-s3s.log",
                  access_key="AKIDOTHERS3", secret_key="other-s3-secret")
    config = tmp_path / "sluice.toml"
    config.write_text(
        '[firehose_s3."to-other"]\n'
        f'endpoint_url = "{other.endpoint}"\n'
        f'access_key_id = "{other.access_key}"\n'
        f'secret_access_key = "{other.secret_key}"\n'
        'region = "eu-west-1"\n'
    )
    process = start_sluice(tmp_path / "data", s3s, extra_args=["--config", str(config)])
    try:
        firehose = firehose_client(process.endpoint)
        default_s3, other_s3 = s3s.client(), other.client()
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        # The same bucket name on both servers, so a wrong endpoint would succeed silently.
        default_s3.create_bucket(Bucket=bucket)
        other_s3.create_bucket(Bucket=bucket)
        hints = {"SizeInMBs": 1, "IntervalInSeconds": 0}
        for stream in ("to-other", "to-default"):
            firehose.create_delivery_stream(
                DeliveryStreamName=stream,
                ExtendedS3DestinationConfiguration=s3_config(
                    bucket, Prefix=f"{stream}/", BufferingHints=hints))
        for stream in ("to-other", "to-default"):
            wait_active(firehose, stream)
            firehose.put_record_batch(DeliveryStreamName=stream, Records=[
                {"Data": f"{stream}-{i}\n".encode()} for i in range(20)])

        def contents(s3, prefix):
            def lines(keys):
                body = b"".join(s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys)
                return body.decode().split()
            return lines(wait_for_keys(s3, bucket, prefix, lambda keys: len(lines(keys)) >= 20))

        assert sorted(contents(other_s3, "to-other/")) == sorted(f"to-other-{i}" for i in range(20))
        assert sorted(contents(default_s3, "to-default/")) == sorted(f"to-default-{i}" for i in range(20))
        # Neither stream wrote anything into the other server.
        time.sleep(1.5)
        assert list_keys(default_s3, bucket, "to-other/") == []
        assert list_keys(other_s3, bucket, "to-default/") == []
    finally:
        process.kill()
        other.stop()


def test_a_bad_firehose_s3_table_in_the_config_file_stops_the_server_with_a_clear_message(tmp_path):
    config = tmp_path / "sluice.toml"
    config.write_text('[firehose_s3."x"]\naccess_key_id = "only-the-key"\n')
    run = subprocess.run(
        [str(sluice_bin()), "serve", "--config", str(config), "--data-dir", str(tmp_path / "d"),
         "--http-addr", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "access_key_id and secret_access_key must be given together" in run.stderr


CBOR = "application/x-amz-cbor-1.1"


def cbor_call(endpoint, operation, body):
    """A Firehose request in CBOR 1.1 (the Java SDK's Kinesis conventions), encoded by cbor2 and
    signed by botocore's own SigV4 signer; returns (status, content type, decoded body)."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    import cbor2
    import urllib3

    from conftest import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    request = botocore.awsrequest.AWSRequest(
        method="POST", url=endpoint + "/", data=cbor2.dumps(body),
        headers={"Content-Type": CBOR, "X-Amz-Target": f"Firehose_20150804.{operation}"})
    botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "firehose", REGION,
    ).add_auth(request)
    prepared = request.prepare()
    response = urllib3.PoolManager().request(
        "POST", prepared.url, body=prepared.body, headers=dict(prepared.headers))
    # Keep tag 1 raw: its value is epoch milliseconds, not RFC 8949's seconds.
    decoded = cbor2.loads(response.data, semantic_decoders={1: lambda v, _i: cbor2.CBORTag(1, v)}) \
        if response.data else None
    return response.status, response.headers.get("Content-Type"), decoded


def test_the_firehose_api_speaks_cbor_with_binary_records_and_millisecond_timestamps(server, s3, name, bucket):
    import cbor2

    before_ms = int(time.time() * 1000)
    status, content_type, created = cbor_call(server.endpoint, "CreateDeliveryStream", {
        "DeliveryStreamName": name, "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": s3_config(
            bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 0})})
    assert (status, content_type) == (200, CBOR), created
    assert created["DeliveryStreamARN"].endswith(f":deliverystream/{name}")
    deadline = time.monotonic() + 20
    while True:
        status, _, described = cbor_call(server.endpoint, "DescribeDeliveryStream", {"DeliveryStreamName": name})
        assert status == 200, described
        description = described["DeliveryStreamDescription"]
        if description["DeliveryStreamStatus"] == "ACTIVE":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    created_at = description["CreateTimestamp"]
    assert isinstance(created_at, cbor2.CBORTag) and created_at.tag == 1
    assert before_ms - 1000 <= created_at.value <= int(time.time() * 1000) + 1000
    # Records are byte strings, every byte value included.
    one = bytes(range(256))
    batch = [bytes([i]) * (i + 1) for i in range(10)]
    status, _, put = cbor_call(server.endpoint, "PutRecord", {"DeliveryStreamName": name, "Record": {"Data": one}})
    assert status == 200 and put["RecordId"], put
    status, _, put = cbor_call(server.endpoint, "PutRecordBatch", {
        "DeliveryStreamName": name, "Records": [{"Data": d} for d in batch]})
    assert status == 200 and put["FailedPutCount"] == 0 and len(put["RequestResponses"]) == 10, put
    expected = one + b"".join(batch)

    def bodies(keys):
        return [s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys]
    keys = wait_for_keys(s3, bucket, "", lambda keys: sum(map(len, bodies(keys))) >= len(expected))
    # Objects written in the same second have no order by name: some order of them holds the
    # records exactly as sent.
    import itertools
    assert any(b"".join(p) == expected for p in itertools.permutations(bodies(keys))), bodies(keys)
    # Errors come back in CBOR too, with AWS's type.
    status, content_type, error = cbor_call(server.endpoint, "DescribeDeliveryStream", {"DeliveryStreamName": "nope"})
    assert (status, content_type) == (400, CBOR)
    assert error["__type"] == "ResourceNotFoundException" and error["message"]
    status, _, error = cbor_call(server.endpoint, "PutRecord", {"DeliveryStreamName": name, "Record": {"Data": "not bytes"}})
    assert status == 400, error
