"""The OpenSearch destination against a `_bulk` endpoint run by the test (no OpenSearch installs
here): documents land in rotated indexes with ids that stay the same when a document is retried,
and documents the cluster keeps refusing (or records that are not JSON) go to the S3 backup as
`AmazonOpenSearchService-failed` error records.
"""

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ACCOUNT_ID
from firehose_support import (
    S3sFs, firehose_client, list_keys, start_sluice, wait_active, wait_failure_description,
)

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


class Bulk:
    """`POST /_bulk`: a document with "flaky" fails with 429 the first time it is seen, one with
    "reject" always fails with a mapping error, the rest are indexed."""

    def __init__(self):
        self.actions = []
        self.indexed = {}
        self.seen = set()
        self.lock = threading.Lock()
        bulk = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                assert self.path == "/_bulk", self.path
                assert self.headers["Content-Type"] == "application/x-ndjson"
                lines = self.rfile.read(int(self.headers["Content-Length"])).decode().splitlines()
                items = []
                with bulk.lock:
                    for action_line, document_line in zip(lines[0::2], lines[1::2]):
                        action = json.loads(action_line)["index"]
                        document = json.loads(document_line)
                        bulk.actions.append(action)
                        key = (action["_index"], action["_id"])
                        if document.get("reject"):
                            items.append({"index": {"status": 400, "error": {
                                "type": "mapper_parsing_exception", "reason": "failed to parse field"}}})
                        elif document.get("flaky") and key not in bulk.seen:
                            bulk.seen.add(key)
                            items.append({"index": {"status": 429, "error": {
                                "type": "es_rejected_execution_exception", "reason": "queue full"}}})
                        else:
                            bulk.indexed[key] = document
                            items.append({"index": {"status": 201, "_id": action["_id"]}})
                answer = json.dumps({"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items),
                                     "items": items}).encode()
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
    base = tmp_path_factory.mktemp("opensearch")
    bulk = Bulk()
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s)
    yield server, s3s, bulk
    server.kill()
    s3s.stop()
    bulk.http.shutdown()


def test_documents_are_bulk_indexed_with_stable_ids_and_refused_ones_are_backed_up(setup):
    server, s3s, bulk = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    bucket = f"os-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"os-{uuid.uuid4().hex[:8]}"
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        AmazonopensearchserviceDestinationConfiguration={
            "RoleARN": ROLE, "ClusterEndpoint": bulk.url, "IndexName": "events",
            "IndexRotationPeriod": "OneDay",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0},
            "RetryOptions": {"DurationInSeconds": 2},
            "S3BackupMode": "FailedDocumentsOnly",
            "S3Configuration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}"},
        })
    description = wait_active(firehose, name)
    os_description = description["Destinations"][0]["AmazonopensearchserviceDestinationDescription"]
    assert os_description["IndexName"] == "events"
    assert os_description["DocumentIdOptions"] == {"DefaultDocumentIdFormat": "FIREHOSE_DEFAULT"}

    records = [b'{"n":1}\n', b'{"n":2,"flaky":true}\n', b'{"n":3,"reject":true}\n', b"not json\n", b'{"n":4}']
    put_at = time.gmtime()
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    deadline = time.monotonic() + 30
    while not list_keys(s3, bucket):
        assert time.monotonic() < deadline, "no error records were backed up"
        time.sleep(0.2)
    index = time.strftime("events-%Y-%m-%d", put_at)
    with bulk.lock:
        indexed = {key: doc for key, doc in bulk.indexed.items()}
        actions = list(bulk.actions)
    assert sorted(doc["n"] for doc in indexed.values()) == [1, 2, 4]
    assert all(key[0] == index for key in indexed), indexed
    flaky_ids = [a["_id"] for a in actions if (a["_index"], a["_id"]) in indexed and indexed[(a["_index"], a["_id"])]["n"] == 2]
    assert len(flaky_ids) == 2 and flaky_ids[0] == flaky_ids[1], "a retried document keeps its id"
    assert len({key[1] for key in indexed}) == 3

    [key] = list_keys(s3, bucket)
    assert key.startswith("AmazonOpenSearchService-failed/"), key
    lines = [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    by_data = {base64.b64decode(line["rawData"]): line for line in lines}
    assert set(by_data) == {records[2], records[3]}
    assert by_data[records[2]]["errorCode"] == "OS.mapper_parsing_exception"
    assert by_data[records[2]]["osIndexName"] == index
    assert by_data[records[2]]["attemptsMade"] >= 2
    assert by_data[records[3]]["errorCode"] == "OS.MalformedDocument"
    # The cluster's refusal is the stream's FailureDescription (a record that is not JSON never
    # reached the cluster and is not), until a _bulk request indexes everything it carries.
    description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["FailureDescription"] == {
        "Type": "UNKNOWN_ERROR", "Details": "OS.mapper_parsing_exception: failed to parse field"}
    assert firehose.put_record(DeliveryStreamName=name, Record={"Data": b'{"n":5}'})["RecordId"]
    assert wait_failure_description(firehose, name, shown=False)["DeliveryStreamStatus"] == "ACTIVE"
    with bulk.lock:
        assert 5 in [doc["n"] for doc in bulk.indexed.values()]
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_a_domain_arn_without_an_endpoint_is_refused(setup):
    server, _, _ = setup
    firehose = firehose_client(server.endpoint)
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as info:
        firehose.create_delivery_stream(
            DeliveryStreamName=f"os-arn-{uuid.uuid4().hex[:6]}",
            AmazonopensearchserviceDestinationConfiguration={
                "RoleARN": ROLE, "DomainARN": f"arn:aws:es:us-east-1:{ACCOUNT_ID}:domain/d", "IndexName": "i",
                "S3Configuration": {"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::b"}})
    assert info.value.response["Error"]["Code"] == "InvalidArgumentException"
