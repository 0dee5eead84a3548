"""Kinesis Data Analytics for SQL inputs and outputs beyond Kinesis streams, end to end: boto3
`kinesisanalytics`, `firehose` and `kinesis` clients against the real server, a real S3 server
(s3s-fs) behind Firehose, and Lambda functions served by an HTTP server in the test (Lambda's
Invoke API path at AWS_ENDPOINT_URL_LAMBDA).

Guards against: rows written to a delivery stream that never reach its destination or arrive
changed; an output function whose failed invocation or DeliveryFailed answer loses rows; a
Firehose input that reads nothing; a pre-processing function whose Ok data is not what the
schema parses, whose Dropped records still arrive, or whose failures vanish instead of reaching
error_stream; CloudWatch logging options, pre-processing and new outputs that are not stored,
versioned, described or kept over a restart; and bad ARNs accepted where AWS refuses them.
Every expectation is computed here from the records the test wrote.
"""

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY_ID, ACCOUNT_ID, REGION, SECRET_ACCESS_KEY
from firehose_support import (
    S3sFs, firehose_client, list_keys, start_sluice, wait_active,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/kda"
LOG_STREAM = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:kda:log-stream:errors"

SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
        {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"},
    ],
}

PASS_PROGRAM = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "qty" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "qty" FROM "SOURCE_SQL_STREAM_001";
"""

FILTER_PROGRAM = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "twice" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "qty" * 2 FROM "SOURCE_SQL_STREAM_001" WHERE "qty" > 50;
"""


def function_arn(name):
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def kinesis_arn(name):
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}"


def firehose_arn(name):
    return f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/{name}"


class FunctionServer:
    """Lambda's Invoke API for the test's functions:
    - `flaky-<tag>` (output): its first invocation fails (HTTP 500), its second answers
      DeliveryFailed for its first record and Ok for the rest, later ones Ok for everything;
      `delivered[tag]` holds the data of every record answered Ok.
    - `down-<tag>` (output): fails (HTTP 500) while `down[tag]` is true, then answers Ok for
      every record; `delivered[tag]` holds the data of every record answered Ok.
    - `pre` (pre-processing): `sym` DROP is Dropped, FAIL is ProcessingFailed, BAD comes back
      Ok with data that is not base64; anything else comes back Ok with `sym` lower-cased and
      `qty` plus 1000.
    """

    def __init__(self):
        self.events = []
        self.delivered = {}
        self.invocations = {}
        self.down = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = self.path.split("/")[3]
                with server.lock:
                    server.events.append((name, event))
                    n = server.invocations[name] = server.invocations.get(name, 0) + 1
                status, answer = 200, None
                if name.startswith("flaky-"):
                    tag = name[len("flaky-"):]
                    if n == 1:
                        status, answer = 500, {"errorMessage": "down"}
                    else:
                        out = []
                        for i, record in enumerate(event["records"]):
                            if n == 2 and i == 0:
                                out.append({"recordId": record["recordId"], "result": "DeliveryFailed"})
                            else:
                                out.append({"recordId": record["recordId"], "result": "Ok"})
                                with server.lock:
                                    server.delivered.setdefault(tag, []).append(
                                        base64.b64decode(record["data"]))
                        answer = {"records": out}
                elif name.startswith("down-"):
                    tag = name[len("down-"):]
                    if server.down.get(tag, False):
                        status, answer = 500, {"errorMessage": "down"}
                    else:
                        with server.lock:
                            server.delivered.setdefault(tag, []).extend(
                                base64.b64decode(r["data"]) for r in event["records"])
                        answer = {"records": [{"recordId": r["recordId"], "result": "Ok"}
                                              for r in event["records"]]}
                else:
                    assert name == "pre", name
                    out = []
                    for record in event["records"]:
                        row = json.loads(base64.b64decode(record["data"]))
                        if row["sym"] == "DROP":
                            out.append({"recordId": record["recordId"], "result": "Dropped"})
                        elif row["sym"] == "FAIL":
                            out.append({"recordId": record["recordId"], "result": "ProcessingFailed",
                                        "data": record["data"]})
                        elif row["sym"] == "BAD":
                            out.append({"recordId": record["recordId"], "result": "Ok", "data": "***"})
                        else:
                            new = {"sym": row["sym"].lower(), "qty": row["qty"] + 1000}
                            out.append({"recordId": record["recordId"], "result": "Ok",
                                        "data": base64.b64encode(json.dumps(new).encode()).decode()})
                    answer = {"records": out}
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


def client(service, endpoint):
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("analytics-io")
    functions = FunctionServer()
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    env = {"AWS_ENDPOINT_URL_LAMBDA": functions.url}
    server = start_sluice(base / "data", s3s, env)
    yield {"server": server, "s3s": s3s, "functions": functions, "env": env, "base": base}
    server.kill()
    s3s.stop()
    functions.http.shutdown()


@pytest.fixture
def clients(setup):
    endpoint = setup["server"].endpoint
    return (client("kinesisanalytics", endpoint), client("kinesis", endpoint),
            firehose_client(endpoint), setup["s3s"].client())


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_stream(kinesis, name):
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def make_delivery_stream(firehose, s3, name):
    bucket = unique("kda-bucket")
    s3.create_bucket(Bucket=bucket)
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
        })
    wait_active(firehose, name)
    return bucket


def rows_of(n, seed):
    import random
    rng = random.Random(seed)
    return [{"sym": rng.choice(["AMZN", "IBM", "MSFT"]), "qty": rng.randint(1, 100)} for _ in range(n)]


def put(kinesis, stream, records):
    reply = kinesis.put_records(
        StreamName=stream,
        Records=[{"Data": json.dumps(r).encode(), "PartitionKey": f"pk-{i}"} for i, r in enumerate(records)],
    )
    assert reply["FailedRecordCount"] == 0


def read_stream(kinesis, stream, expected, timeout_s=30.0):
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected:
        assert time.monotonic() < deadline, f"{stream}: {len(records)} records, expected {expected}"
        reply = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        records.extend(json.loads(r["Data"]) for r in reply["Records"])
        iterator = reply["NextShardIterator"]
        if not reply["Records"]:
            time.sleep(0.2)
    return records


def wait_status(kda, name, status, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
        if detail["ApplicationStatus"] == status:
            return detail
        assert time.monotonic() < deadline, f"{name} did not reach {status}: {detail['ApplicationStatus']}"
        time.sleep(0.1)


def start(kda, name):
    detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
    kda.start_application(ApplicationName=name, InputConfigurations=[{
        "Id": detail["InputDescriptions"][0]["InputId"],
        "InputStartingPositionConfiguration": {"InputStartingPosition": "TRIM_HORIZON"}}])
    return wait_status(kda, name, "RUNNING")


def stop(kda, name):
    kda.stop_application(ApplicationName=name)
    wait_status(kda, name, "READY")


def concatenated_json(blob):
    """The JSON documents of an object holding records back to back, as Firehose writes them."""
    decoder, text, at, out = json.JSONDecoder(), blob.decode(), 0, []
    while at < len(text):
        value, at = decoder.raw_decode(text, at)
        out.append(value)
    return out


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def stream_application(kda, kinesis, source, app, program, output):
    """A new stream `source` and application `app` running `program` over it, whose
    DESTINATION_SQL_STREAM goes to `output` (an Outputs member without its Name)."""
    make_stream(kinesis, source)
    kda.create_application(
        ApplicationName=app, ApplicationCode=program,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                 "KinesisStreamsInput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE},
                 "InputSchema": SCHEMA}],
        Outputs=[{"Name": "DESTINATION_SQL_STREAM", **output}])


def test_rows_written_to_a_delivery_stream_reach_its_s3_bucket_as_put_records_would(clients):
    kda, kinesis, firehose, s3 = clients
    source, delivery, app = unique("io-src"), unique("io-ds"), unique("io-fh-out")
    bucket = make_delivery_stream(firehose, s3, delivery)
    stream_application(kda, kinesis, source, app, FILTER_PROGRAM, {
        "KinesisFirehoseOutput": {"ResourceARN": firehose_arn(delivery), "RoleARN": ROLE},
        "DestinationSchema": {"RecordFormatType": "JSON"}})
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["OutputDescriptions"][0]["KinesisFirehoseOutputDescription"] == {
        "ResourceARN": firehose_arn(delivery), "RoleARN": ROLE}
    start(kda, app)
    data = rows_of(200, seed=3)
    put(kinesis, source, data)
    expected = sorted((r["sym"], r["qty"] * 2) for r in data if r["qty"] > 50)

    deadline = time.monotonic() + 40
    while True:
        got = []
        for key in list_keys(s3, bucket):
            got.extend(concatenated_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        if len(got) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted((r["sym"], r["twice"]) for r in got) == expected
    assert all(list(r) == ["sym", "twice"] for r in got)
    stop(kda, app)


def lambda_output_application(kda, kinesis, source, app, function):
    """A new stream `source` and application `app` passing its rows, as CSV, to `function`."""
    stream_application(kda, kinesis, source, app, PASS_PROGRAM, {
        "LambdaOutput": {"ResourceARN": function_arn(function), "RoleARN": ROLE},
        "DestinationSchema": {"RecordFormatType": "CSV"}})


def test_a_lambda_output_gets_the_rows_of_a_failed_invocation_and_of_delivery_failures_again(clients, setup):
    kda, kinesis, _, _ = clients
    functions = setup["functions"]
    source, app, tag = unique("io-src"), unique("io-lambda-out"), uuid.uuid4().hex[:8]
    lambda_output_application(kda, kinesis, source, app, f"flaky-{tag}")
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["OutputDescriptions"][0]["LambdaOutputDescription"] == {
        "ResourceARN": function_arn(f"flaky-{tag}"), "RoleARN": ROLE}
    start(kda, app)
    data = rows_of(40, seed=4)
    put(kinesis, source, data)
    expected = sorted(f"{r['sym']},{r['qty']}".encode() for r in data)

    deadline = time.monotonic() + 30
    while len(functions.delivered.get(tag, [])) < len(expected):
        assert time.monotonic() < deadline, functions.delivered.get(tag)
        time.sleep(0.1)
    # Every row was answered Ok exactly once: none was lost to the failures, none sent again
    # after it was delivered.
    time.sleep(0.5)
    assert sorted(functions.delivered[tag]) == expected
    events = [e for name, e in functions.events if name == f"flaky-{tag}"]
    first, second = events[0], events[1]
    assert first["applicationArn"] == detail["ApplicationARN"] and first["invocationId"]
    assert all(r["lambdaDeliveryRecordMetadata"]["retryHint"] == 0 for r in first["records"])
    # The failed invocation's records come again, with the retry hint raised.
    assert [r["data"] for r in second["records"]][:len(first["records"])] == [r["data"] for r in first["records"]]
    assert all(r["lambdaDeliveryRecordMetadata"]["retryHint"] == 1 for r in second["records"][:len(first["records"])])
    # The record the second invocation answered DeliveryFailed for is sent again.
    refused = second["records"][0]
    later = [r for e in events[2:] for r in e["records"] if r["data"] == refused["data"]]
    assert later and later[0]["lambdaDeliveryRecordMetadata"]["retryHint"] == 2
    stop(kda, app)


def test_rows_an_output_never_took_before_a_stop_are_delivered_after_a_restart_from_the_last_stopped_point(
        clients, setup):
    """A stop while an output keeps failing must not checkpoint past the rows it never took."""
    kda, kinesis, _, _ = clients
    functions = setup["functions"]
    source, app, tag = unique("io-src"), unique("io-stop"), uuid.uuid4().hex[:8]
    functions.down[tag] = True
    lambda_output_application(kda, kinesis, source, app, f"down-{tag}")
    start(kda, app)
    data = rows_of(30, seed=9)
    put(kinesis, source, data)
    expected = sorted(f"{r['sym']},{r['qty']}".encode() for r in data)
    deadline = time.monotonic() + 30
    while functions.invocations.get(f"down-{tag}", 0) < 2:
        assert time.monotonic() < deadline, "the output function was never retried"
        time.sleep(0.1)
    stop(kda, app)
    assert functions.delivered.get(tag, []) == []
    functions.down[tag] = False
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    kda.start_application(ApplicationName=app, InputConfigurations=[{
        "Id": detail["InputDescriptions"][0]["InputId"],
        "InputStartingPositionConfiguration": {"InputStartingPosition": "LAST_STOPPED_POINT"}}])
    wait_status(kda, app, "RUNNING")
    deadline = time.monotonic() + 30
    while len(functions.delivered.get(tag, [])) < len(expected):
        assert time.monotonic() < deadline, f"rows lost across the stop: {functions.delivered.get(tag)}"
        time.sleep(0.1)
    assert sorted(functions.delivered[tag]) == expected
    stop(kda, app)


def test_a_firehose_input_reads_the_records_put_into_the_delivery_stream(clients):
    kda, kinesis, firehose, s3 = clients
    delivery, destination, app = unique("io-ds-in"), unique("io-out"), unique("io-fh-in")
    make_delivery_stream(firehose, s3, delivery)
    make_stream(kinesis, destination)
    data = rows_of(60, seed=5)
    # Written before the application starts: TRIM_HORIZON must still find them.
    reply = firehose.put_record_batch(DeliveryStreamName=delivery,
                                      Records=[{"Data": json.dumps(r).encode()} for r in data])
    assert reply["FailedPutCount"] == 0
    kda.create_application(
        ApplicationName=app, ApplicationCode=FILTER_PROGRAM,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                 "KinesisFirehoseInput": {"ResourceARN": firehose_arn(delivery), "RoleARN": ROLE},
                 "InputSchema": SCHEMA}],
        Outputs=[{"Name": "DESTINATION_SQL_STREAM",
                  "KinesisStreamsOutput": {"ResourceARN": kinesis_arn(destination), "RoleARN": ROLE},
                  "DestinationSchema": {"RecordFormatType": "JSON"}}])
    detail = start(kda, app)
    assert detail["InputDescriptions"][0]["KinesisFirehoseInputDescription"] == {
        "ResourceARN": firehose_arn(delivery), "RoleARN": ROLE}
    more = rows_of(30, seed=6)
    firehose.put_record_batch(DeliveryStreamName=delivery,
                              Records=[{"Data": json.dumps(r).encode()} for r in more])
    expected = sorted((r["sym"], r["qty"] * 2) for r in data + more if r["qty"] > 50)
    got = read_stream(kinesis, destination, len(expected))
    assert sorted((r["sym"], r["twice"]) for r in got) == expected
    stop(kda, app)


def test_a_preprocessing_lambda_rewrites_drops_and_fails_records(clients, setup):
    kda, kinesis, _, _ = clients
    functions = setup["functions"]
    source, destination, errors, app = unique("io-src"), unique("io-out"), unique("io-err"), unique("io-pre")
    for stream in (source, destination, errors):
        make_stream(kinesis, stream)
    kda.create_application(
        ApplicationName=app, ApplicationCode=PASS_PROGRAM,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                 "KinesisStreamsInput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE},
                 "InputSchema": SCHEMA}],
        Outputs=[{"Name": "DESTINATION_SQL_STREAM",
                  "KinesisStreamsOutput": {"ResourceARN": kinesis_arn(destination), "RoleARN": ROLE},
                  "DestinationSchema": {"RecordFormatType": "JSON"}},
                 {"Name": "error_stream",
                  "KinesisStreamsOutput": {"ResourceARN": kinesis_arn(errors), "RoleARN": ROLE},
                  "DestinationSchema": {"RecordFormatType": "JSON"}}])
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    input_id, version = detail["InputDescriptions"][0]["InputId"], detail["ApplicationVersionId"]
    processing = {"InputLambdaProcessor": {"ResourceARN": function_arn("pre"), "RoleARN": ROLE}}
    kda.add_application_input_processing_configuration(
        ApplicationName=app, CurrentApplicationVersionId=version, InputId=input_id,
        InputProcessingConfiguration=processing)
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == version + 1
    assert detail["InputDescriptions"][0]["InputProcessingConfigurationDescription"] == {
        "InputLambdaProcessorDescription": {"ResourceARN": function_arn("pre"), "RoleARN": ROLE}}
    start(kda, app)

    data = rows_of(30, seed=7) + [{"sym": "DROP", "qty": 1}, {"sym": "FAIL", "qty": 2},
                                  {"sym": "BAD", "qty": 3}, {"sym": "FAIL", "qty": 4}]
    put(kinesis, source, data)
    plain = [r for r in data if r["sym"] not in ("DROP", "FAIL", "BAD")]
    expected = sorted((r["sym"].lower(), r["qty"] + 1000) for r in plain)
    got = read_stream(kinesis, destination, len(expected))
    assert sorted((r["sym"], r["qty"]) for r in got) == expected
    error_rows = read_stream(kinesis, errors, 3)
    by_name = sorted((r["ERROR_NAME"], bytes.fromhex(r["DATA_ROW"])) for r in error_rows)
    raw = {json.dumps(r).encode() for r in data}
    assert [name for name, _ in by_name] == ["Lambda_Malformed_Response", "Lambda_Processing_Failed",
                                             "Lambda_Processing_Failed"]
    assert {json.loads(d)["sym"] for _, d in by_name} == {"BAD", "FAIL"}
    assert all(d in raw for _, d in by_name)
    assert all(r["ERROR_LEVEL"] == "ERROR" and r["MESSAGE"] for r in error_rows)

    event = [e for name, e in functions.events if name == "pre" and e["applicationArn"] == detail["ApplicationARN"]][0]
    assert event["streamArn"] == kinesis_arn(source)
    metadata = event["records"][0]["kinesisStreamRecordMetadata"]
    assert metadata["shardId"] == "shardId-000000000000" and metadata["partitionKey"] == "pk-0"
    assert metadata["sequenceNumber"] and isinstance(metadata["approximateArrivalTimestamp"], int)
    stop(kda, app)

    # Deleting the configuration bumps the version and the description no longer shows it.
    version = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"]
    kda.delete_application_input_processing_configuration(
        ApplicationName=app, CurrentApplicationVersionId=version, InputId=input_id)
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == version + 1
    assert "InputProcessingConfigurationDescription" not in detail["InputDescriptions"][0]
    with pytest.raises(ClientError) as e:
        kda.delete_application_input_processing_configuration(
            ApplicationName=app, CurrentApplicationVersionId=version + 1, InputId=input_id)
    assert error_code(e) == "ResourceNotFoundException"


def test_cloudwatch_options_preprocessing_and_outputs_are_versioned_and_survive_a_restart(setup, tmp_path):
    s3s, env = setup["s3s"], setup["env"]
    data_dir = tmp_path / "data"
    server = start_sluice(data_dir, s3s, env)
    try:
        kda, kinesis = client("kinesisanalytics", server.endpoint), client("kinesis", server.endpoint)
        firehose, s3 = firehose_client(server.endpoint), s3s.client()
        delivery, source, app = unique("io-ds"), unique("io-src"), unique("io-cw")
        make_delivery_stream(firehose, s3, delivery)
        make_stream(kinesis, source)
        kda.create_application(
            ApplicationName=app, ApplicationCode=PASS_PROGRAM,
            Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                     "KinesisStreamsInput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE},
                     "InputProcessingConfiguration": {"InputLambdaProcessor": {
                         "ResourceARN": function_arn("pre"), "RoleARN": ROLE}},
                     "InputSchema": SCHEMA}],
            Outputs=[{"Name": "DESTINATION_SQL_STREAM",
                      "KinesisFirehoseOutput": {"ResourceARN": firehose_arn(delivery), "RoleARN": ROLE},
                      "DestinationSchema": {"RecordFormatType": "JSON"}}],
            CloudWatchLoggingOptions=[{"LogStreamARN": LOG_STREAM, "RoleARN": ROLE}])
        detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
        assert detail["ApplicationVersionId"] == 1
        [option] = detail["CloudWatchLoggingOptionDescriptions"]
        assert option["LogStreamARN"] == LOG_STREAM and option["RoleARN"] == ROLE
        assert option["CloudWatchLoggingOptionId"]

        other = LOG_STREAM.replace(":errors", ":more")
        kda.add_application_cloud_watch_logging_option(
            ApplicationName=app, CurrentApplicationVersionId=1,
            CloudWatchLoggingOption={"LogStreamARN": other, "RoleARN": ROLE})
        with pytest.raises(ClientError) as e:
            kda.add_application_cloud_watch_logging_option(
                ApplicationName=app, CurrentApplicationVersionId=2,
                CloudWatchLoggingOption={"LogStreamARN": "arn:aws:logs:us-east-1:1:nope", "RoleARN": ROLE})
        assert error_code(e) == "InvalidArgumentException"
        with pytest.raises(ClientError) as e:
            kda.add_application_cloud_watch_logging_option(
                ApplicationName=app, CurrentApplicationVersionId=1,
                CloudWatchLoggingOption={"LogStreamARN": other, "RoleARN": ROLE})
        assert error_code(e) == "ConcurrentModificationException"
        options = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["CloudWatchLoggingOptionDescriptions"]
        second = [o for o in options if o["LogStreamARN"] == other][0]["CloudWatchLoggingOptionId"]
        renamed = LOG_STREAM.replace(":errors", ":renamed")
        kda.update_application(
            ApplicationName=app, CurrentApplicationVersionId=2,
            ApplicationUpdate={"CloudWatchLoggingOptionUpdates": [
                {"CloudWatchLoggingOptionId": option["CloudWatchLoggingOptionId"], "LogStreamARNUpdate": renamed}]})
        kda.delete_application_cloud_watch_logging_option(
            ApplicationName=app, CurrentApplicationVersionId=3, CloudWatchLoggingOptionId=second)
        with pytest.raises(ClientError) as e:
            kda.delete_application_cloud_watch_logging_option(
                ApplicationName=app, CurrentApplicationVersionId=4, CloudWatchLoggingOptionId=second)
        assert error_code(e) == "ResourceNotFoundException"
        before = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
        assert before["ApplicationVersionId"] == 4
        assert before["CloudWatchLoggingOptionDescriptions"] == [{
            "CloudWatchLoggingOptionId": option["CloudWatchLoggingOptionId"],
            "LogStreamARN": renamed, "RoleARN": ROLE}]
        assert before["InputDescriptions"][0]["InputProcessingConfigurationDescription"] == {
            "InputLambdaProcessorDescription": {"ResourceARN": function_arn("pre"), "RoleARN": ROLE}}
    finally:
        server.kill()
    server = start_sluice(data_dir, s3s, env)
    try:
        kda = client("kinesisanalytics", server.endpoint)
        after = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
        assert after == before
    finally:
        server.kill()


def test_bad_arns_and_destinations_get_aws_errors(clients):
    kda, kinesis, firehose, s3 = clients
    source, app = unique("io-src"), unique("io-bad")
    make_stream(kinesis, source)
    kda.create_application(
        ApplicationName=app, ApplicationCode=PASS_PROGRAM,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                 "KinesisStreamsInput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE},
                 "InputSchema": SCHEMA}])
    # A delivery stream with a Kinesis stream as its source takes no PutRecord, so no output.
    fed_by_stream = unique("io-ds-ks")
    bucket = unique("kda-bucket")
    s3.create_bucket(Bucket=bucket)
    firehose.create_delivery_stream(
        DeliveryStreamName=fed_by_stream, DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": kinesis_arn(source), "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"})
    wait_active(firehose, fed_by_stream)

    def add(output):
        output = {"Name": "DESTINATION_SQL_STREAM", "DestinationSchema": {"RecordFormatType": "JSON"}, **output}
        version = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"]
        with pytest.raises(ClientError) as e:
            kda.add_application_output(ApplicationName=app, CurrentApplicationVersionId=version, Output=output)
        return error_code(e), e.value.response["Error"]["Message"]

    for output in (
        {"KinesisFirehoseOutput": {"ResourceARN": firehose_arn(unique("missing")), "RoleARN": ROLE}},
        {"KinesisFirehoseOutput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE}},
        {"KinesisFirehoseOutput": {"ResourceARN": firehose_arn(fed_by_stream), "RoleARN": ROLE}},
        {"KinesisFirehoseOutput": {"ResourceARN": firehose_arn(fed_by_stream), "RoleARN": "not-a-role"}},
        {"LambdaOutput": {"ResourceARN": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:x", "RoleARN": ROLE}},
        {"KinesisStreamsOutput": {"ResourceARN": firehose_arn(fed_by_stream), "RoleARN": ROLE}},
    ):
        code, message = add(output)
        assert code == "InvalidArgumentException", (output, message)

    version = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"]
    input_id = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["InputDescriptions"][0]["InputId"]
    with pytest.raises(ClientError) as e:
        kda.add_application_input_processing_configuration(
            ApplicationName=app, CurrentApplicationVersionId=version, InputId=input_id,
            InputProcessingConfiguration={"InputLambdaProcessor": {
                "ResourceARN": kinesis_arn(source), "RoleARN": ROLE}})
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kda.add_application_input_processing_configuration(
            ApplicationName=app, CurrentApplicationVersionId=version, InputId="9.9",
            InputProcessingConfiguration={"InputLambdaProcessor": {
                "ResourceARN": function_arn("pre"), "RoleARN": ROLE}})
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        kda.create_application(
            ApplicationName=unique("io-bad-in"),
            Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                     "KinesisFirehoseInput": {"ResourceARN": kinesis_arn(source), "RoleARN": ROLE},
                     "InputSchema": SCHEMA}])
    assert error_code(e) == "InvalidArgumentException"
    # Nothing refused changed the application.
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"] == version
