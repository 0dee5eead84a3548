"""The HTTP endpoint destination, against an endpoint server run by the test: it fails and then
recovers (retries carry the same request id), it checks the exact X-Amz-Firehose-* headers and
the JSON body, and an endpoint that never recovers sends the records to the S3 backup as
`http-endpoint-failed` error records.
"""

import base64
import gzip
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ACCOUNT_ID, REGION
from firehose_support import (
    S3sFs, firehose_client, list_keys, start_sluice, wait_active, wait_failure_description,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


class Endpoint:
    """An HTTP endpoint that answers the first `failures` requests with 500, then 200."""

    def __init__(self):
        self.requests = []
        self.failures = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with endpoint.lock:
                    # Header names are case-insensitive; kept lowercase here.
                    endpoint.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    fail = endpoint.failures > 0
                    if fail:
                        endpoint.failures -= 1
                raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                request_id = json.loads(raw)["requestId"]
                if fail:
                    answer = json.dumps({"requestId": request_id, "timestamp": int(time.time() * 1000),
                                         "errorMessage": "not now"}).encode()
                    self.send_response(500)
                else:
                    answer = json.dumps({"requestId": request_id, "timestamp": int(time.time() * 1000)}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("http-endpoint")
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s)
    endpoint = Endpoint()
    yield server, s3s, endpoint
    endpoint.stop()
    server.kill()
    s3s.stop()


def http_config(url, bucket, **extra):
    config = {
        "EndpointConfiguration": {"Url": url, "Name": "test-endpoint", "AccessKey": "secret-key-123"},
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
        "RequestConfiguration": {"ContentEncoding": "GZIP",
                                 "CommonAttributes": [{"AttributeName": "env", "AttributeValue": "test"}]},
        "RetryOptions": {"DurationInSeconds": 60},
        "S3BackupMode": "FailedDataOnly",
        "RoleARN": ROLE,
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"},
    }
    config.update(extra)
    return config


def test_http_endpoint_gets_aws_headers_and_body_and_retries_with_the_same_request_id(setup):
    server, s3s, endpoint = setup
    firehose = firehose_client(server.endpoint)
    bucket = f"backup-{uuid.uuid4().hex[:8]}"
    s3s.client().create_bucket(Bucket=bucket)
    name = f"http-{uuid.uuid4().hex[:8]}"
    arn = firehose.create_delivery_stream(
        DeliveryStreamName=name, HttpEndpointDestinationConfiguration=http_config(endpoint.url, bucket),
    )["DeliveryStreamARN"]
    description = wait_active(firehose, name)
    http = description["Destinations"][0]["HttpEndpointDestinationDescription"]
    assert http["EndpointConfiguration"] == {"Url": endpoint.url, "Name": "test-endpoint"}
    assert http["RequestConfiguration"]["ContentEncoding"] == "GZIP"
    assert http["RetryOptions"] == {"DurationInSeconds": 60}
    assert http["S3BackupMode"] == "FailedDataOnly"
    assert http["S3DestinationDescription"]["BucketARN"] == f"arn:aws:s3:::{bucket}"

    with endpoint.lock:
        endpoint.requests.clear()
        endpoint.failures = 2
    records = [f"event-{i}".encode() for i in range(20)] + [bytes(range(256))]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0

    deadline = time.monotonic() + 30
    while True:
        with endpoint.lock:
            requests = list(endpoint.requests)
        if len(requests) >= 3:
            break
        assert time.monotonic() < deadline, f"only {len(requests)} requests arrived"
        time.sleep(0.1)
    time.sleep(0.5)
    with endpoint.lock:
        requests = list(endpoint.requests)
    assert len(requests) == 3, "two failures, then one success, and nothing more"
    ids = {headers["x-amz-firehose-request-id"] for headers, _ in requests}
    assert len(ids) == 1, "retries of one request keep its request id"
    for headers, body in requests:
        assert headers["x-amz-firehose-protocol-version"] == "1.0"
        assert headers["x-amz-firehose-source-arn"] == arn
        assert headers["x-amz-firehose-access-key"] == "secret-key-123"
        assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"env": "test"}}
        assert headers["content-type"] == "application/json"
        assert headers["content-encoding"] == "gzip"
        document = json.loads(gzip.decompress(body))
        assert document["requestId"] == headers["x-amz-firehose-request-id"]
        assert isinstance(document["timestamp"], int)
        assert [base64.b64decode(r["data"]) for r in document["records"]] == records
    # Delivered: nothing was backed up.
    assert list_keys(s3s.client(), bucket) == []
    # The endpoint has answered; Sluice counts the delivery a moment later: wait for it.
    deadline = time.monotonic() + 30
    while True:
        metrics = urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=10).read().decode()
        counted = f'sinks_firehose_delivery_to_http_endpoint_success_total{{delivery_stream="{name}"}} 1'
        if counted in metrics.splitlines():
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.1)

    def series(metric):
        prefix = f'{metric}{{delivery_stream="{name}"}} '
        [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
        return float(line[len(prefix):])

    assert series("sinks_firehose_delivery_to_http_endpoint_records_total") == len(records)
    assert series("sinks_firehose_delivery_to_http_endpoint_success_total") == 1
    assert series("sinks_firehose_delivery_to_http_endpoint_failures_total") == 2
    assert series("sinks_firehose_delivery_to_s3_records_total") == 0
    assert "Firehose DeliveryToHttpEndpoint.DataFreshness" in metrics
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def failing_delivery_stream(setup, retry_duration_s):
    """An ACTIVE delivery stream to the endpoint with a fresh backup bucket, the endpoint set to
    answer 500 from now on; (firehose, s3, bucket, name)."""
    server, s3s, endpoint = setup
    firehose = firehose_client(server.endpoint)
    s3 = s3s.client()
    bucket = f"failed-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"http-fail-{uuid.uuid4().hex[:8]}"
    config = http_config(endpoint.url, bucket, RetryOptions={"DurationInSeconds": retry_duration_s})
    config["RequestConfiguration"] = {"ContentEncoding": "NONE"}
    firehose.create_delivery_stream(DeliveryStreamName=name, HttpEndpointDestinationConfiguration=config)
    assert "FailureDescription" not in wait_active(firehose, name)
    with endpoint.lock:
        endpoint.requests.clear()
        endpoint.failures = 1_000_000
    return firehose, s3, bucket, name


def test_an_endpoint_that_never_recovers_sends_error_records_to_the_s3_backup(setup):
    _, _, endpoint = setup
    firehose, s3, bucket, name = failing_delivery_stream(setup, retry_duration_s=2)
    records = [f"lost-{i}\n".encode() for i in range(5)]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    deadline = time.monotonic() + 30
    while not list_keys(s3, bucket):
        assert time.monotonic() < deadline, "no error records reached the backup bucket"
        time.sleep(0.2)
    with endpoint.lock:
        endpoint.failures = 0
        attempts = len(endpoint.requests)
    assert attempts >= 2, "failures within the retry duration are retried"
    [key] = list_keys(s3, bucket)
    assert key.startswith("http-endpoint-failed/"), key
    lines = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    assert [base64.b64decode(line["rawData"]) for line in lines] == records
    for line in lines:
        assert line["errorCode"].startswith("HttpEndpoint.")
        assert line["errorMessage"] == "not now"
        assert line["attemptsMade"] == attempts
        assert line["attemptEndingTimestamp"] >= line["arrivalTimestamp"]
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_an_endpoint_answering_500_shows_in_failure_description_until_it_recovers(setup):
    """While an HTTP endpoint answers 500, its request is retried for RetryOptions' duration. The
    delivery stream stays ACTIVE and DescribeDeliveryStream shows the latest failed attempt (the
    endpoint's errorMessage) as FailureDescription from the first failed attempt on, not only
    once the retries are exhausted; when the endpoint answers 200 again the records arrive, none
    goes to the backup, and the FailureDescription is gone."""
    _, _, endpoint = setup
    firehose, s3, bucket, name = failing_delivery_stream(setup, retry_duration_s=300)
    records = [f"held-{i}".encode() for i in range(7)]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    description = wait_failure_description(firehose, name)
    with endpoint.lock:
        failed_requests = len(endpoint.requests)
        endpoint.failures = 0
    assert failed_requests >= 1
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["FailureDescription"] == {
        "Type": "UNKNOWN_ERROR", "Details": "HttpEndpoint.ResponseErrorStatus: not now"}

    deadline = time.monotonic() + 60
    while True:
        with endpoint.lock:
            delivered = [json.loads(body) for _, body in endpoint.requests[failed_requests:]]
        description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        if delivered and "FailureDescription" not in description:
            break
        assert time.monotonic() < deadline, f"the endpoint recovered but {description} after {len(delivered)} requests"
        time.sleep(0.2)
    assert [base64.b64decode(r["data"]) for r in delivered[-1]["records"]] == records
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert list_keys(s3, bucket) == [], "nothing was backed up: the request was delivered"
    firehose.delete_delivery_stream(DeliveryStreamName=name)
