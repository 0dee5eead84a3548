"""The Lambda-contract transform, invoked over HTTP (Lambda's Invoke API path on the server named
by AWS_ENDPOINT_URL_LAMBDA) against a function server run by the test: it rewrites, drops and
fails records, and a function that keeps failing turns its records into `processing-failed`
error records in the bucket.
"""

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ACCOUNT_ID, REGION
from firehose_support import (
    S3sFs, default_key_pattern, firehose_client, list_keys, start_sluice, wait_active,
    wait_failure_description,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


class FunctionServer:
    """Lambda's Invoke API for two functions: `shout` (Ok upper-cased, Dropped for `drop…`,
    ProcessingFailed for `fail…`) and `broken` (always an error)."""

    def __init__(self):
        self.events = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.events.append((self.path, event))
                if self.path == "/2015-03-31/functions/broken/invocations":
                    answer = json.dumps({"errorMessage": "boom", "errorType": "Error"}).encode()
                    self.send_response(200)
                    self.send_header("X-Amz-Function-Error", "Unhandled")
                elif self.path == "/2015-03-31/functions/keyed/invocations":
                    answer = json.dumps({"records": [
                        {"recordId": r["recordId"], "result": "Ok", "data": r["data"],
                         "metadata": {"partitionKeys": {"first": base64.b64decode(r["data"])[:1].decode()}}}
                        for r in event["records"]]}).encode()
                    self.send_response(200)
                else:
                    assert self.path == "/2015-03-31/functions/shout/invocations", self.path
                    out = []
                    for record in event["records"]:
                        data = base64.b64decode(record["data"])
                        if data.startswith(b"drop"):
                            out.append({"recordId": record["recordId"], "result": "Dropped"})
                        elif data.startswith(b"fail"):
                            out.append({"recordId": record["recordId"], "result": "ProcessingFailed",
                                        "data": record["data"]})
                        else:
                            out.append({"recordId": record["recordId"], "result": "Ok",
                                        "data": base64.b64encode(data.upper() + b"\n").decode()})
                    answer = json.dumps({"records": out}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("transform")
    functions = FunctionServer()
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s, {"AWS_ENDPOINT_URL_LAMBDA": functions.url})
    yield server, s3s, functions
    server.kill()
    s3s.stop()
    functions.http.shutdown()


def processing(function, retries="1"):
    return {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
        {"ParameterName": "LambdaArn", "ParameterValue": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}"},
        {"ParameterName": "NumberOfRetries", "ParameterValue": retries},
    ]}]}


def wait_keys(s3, bucket, count):
    deadline = time.monotonic() + 30
    while len(keys := list_keys(s3, bucket)) < count:
        assert time.monotonic() < deadline, f"only {keys}"
        time.sleep(0.1)
    return keys


def test_a_transform_rewrites_drops_and_fails_records_by_the_lambda_contract(setup):
    server, s3s, functions = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    bucket = f"tr-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"tr-{uuid.uuid4().hex[:8]}"
    arn = firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "ProcessingConfiguration": processing("shout"),
        })["DeliveryStreamARN"]
    description = wait_active(firehose, name)
    described = description["Destinations"][0]["ExtendedS3DestinationDescription"]["ProcessingConfiguration"]
    assert described == processing("shout")

    records = [b"alpha", b"drop me", b"beta", b"fail this", b"gamma"]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    keys = wait_keys(s3, bucket, 2)
    [failed_key] = [k for k in keys if k.startswith("processing-failed/")]
    [ok_key] = [k for k in keys if not k.startswith("processing-failed/")]
    assert default_key_pattern(name, 1, "").match(ok_key), ok_key
    assert s3.get_object(Bucket=bucket, Key=ok_key)["Body"].read() == b"ALPHA\nBETA\nGAMMA\n"
    [line] = [json.loads(l) for l in s3.get_object(Bucket=bucket, Key=failed_key)["Body"].read().splitlines()]
    assert base64.b64decode(line["rawData"]) == b"fail this"
    assert line["errorCode"] == "Lambda.ProcessingFailed"
    assert line["lambdaArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:shout"
    # A record the function itself failed is the data's fault: the stream shows no failure.
    assert "FailureDescription" not in firehose.describe_delivery_stream(
        DeliveryStreamName=name)["DeliveryStreamDescription"]

    path, event = [e for e in functions.events if e[1]["deliveryStreamArn"] == arn][0]
    assert event["region"] == REGION and event["invocationId"]
    assert [base64.b64decode(r["data"]) for r in event["records"]] == records
    assert all(isinstance(r["approximateArrivalTimestamp"], int) for r in event["records"])
    assert len({r["recordId"] for r in event["records"]}) == len(records)
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_a_function_that_keeps_failing_turns_records_into_processing_failed_error_records(setup):
    server, s3s, functions = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    bucket = f"trf-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"trf-{uuid.uuid4().hex[:8]}"
    arn = firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "ProcessingConfiguration": processing("broken", retries="1"),
        })["DeliveryStreamARN"]
    wait_active(firehose, name)
    records = [b"one", b"two"]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    [key] = wait_keys(s3, bucket, 1)
    assert key.startswith("processing-failed/"), key
    lines = [json.loads(l) for l in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    assert [base64.b64decode(l["rawData"]) for l in lines] == records
    assert all(l["errorCode"] == "Lambda.FunctionError" and l["attemptsMade"] == 2 for l in lines)
    assert len([e for e in functions.events if e[1]["deliveryStreamArn"] == arn]) == 2, "1 try + NumberOfRetries 1"
    # A function that cannot be invoked by the contract shows as the stream's FailureDescription
    # (the stream stays ACTIVE) until an invocation works again.
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
    assert description["FailureDescription"]["Details"].startswith("Lambda.FunctionError: "), description
    firehose.update_destination(
        DeliveryStreamName=name, CurrentDeliveryStreamVersionId=description["VersionId"],
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"ProcessingConfiguration": processing("shout")})
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b"three"})["RecordId"]
    wait_keys(s3, bucket, 2)
    assert wait_failure_description(firehose, name, shown=False)["DeliveryStreamStatus"] == "ACTIVE"
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_dynamic_partitioning_by_the_keys_a_lambda_returns(setup):
    server, s3s, _ = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    bucket = f"lk-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"lk-{uuid.uuid4().hex[:8]}"
    config = processing("keyed")
    config["Processors"].append({"Type": "AppendDelimiterToRecord", "Parameters": []})
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "lk/!{partitionKeyFromLambda:first}/",
            "ErrorOutputPrefix": "err/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 0},
            "DynamicPartitioningConfiguration": {"Enabled": True},
            "ProcessingConfiguration": config,
        })
    wait_active(firehose, name)
    records = [b"apple", b"banana", b"avocado"]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    keys = wait_keys(s3, bucket, 2)
    bodies = {k.split("/")[1]: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    assert bodies == {"a": b"apple\navocado\n", "b": b"banana\n"}, keys
    firehose.delete_delivery_stream(DeliveryStreamName=name)
