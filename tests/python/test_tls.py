"""TLS on the HTTP listener with Python clients: a self-signed certificate made with openssl (as
docs/tls.md shows), a server started with --tls-cert/--tls-key, and boto3 and the aws CLI
trusting that certificate explicitly. An untrusting client must be refused."""

import json
import os
import queue
import shutil
import subprocess
import threading
import time

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import (
    ACCESS_KEY_ID, READY_PREFIX, READY_TIMEOUT_S, REGION, SECRET_ACCESS_KEY, aws_cli_env,
    parse_ready_line, sluice_bin,
)

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("SLUICE_ENDPOINT")), reason="starts its own TLS server; an external endpoint has its own TLS setup"
)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sluice-tls")
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=sluice", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    stderr = open(base / "stderr.log", "wb")
    proc = subprocess.Popen(
        [str(sluice_bin()), "serve", "--data-dir", str(base / "data"), "--http-addr", "127.0.0.1:0",
         "--binary-addr", "off", "--cores", "1", "--pin-cores", "false", "--create-delay-ms", "0",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"sluice exited before it was ready: {(base / 'stderr.log').read_text()}"
            if line.startswith(READY_PREFIX):
                endpoint = parse_ready_line(line)
                break
        assert endpoint.startswith("https://127.0.0.1:"), endpoint
        yield endpoint, cert
    finally:
        proc.kill()
        proc.wait(timeout=30)
        stderr.close()


def client(endpoint, verify):
    return boto3.client(
        "kinesis", endpoint_url=endpoint, region_name=REGION, verify=verify,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def test_boto3_trusting_the_certificate_creates_puts_and_gets_over_https(tls_server):
    endpoint, cert = tls_server
    kinesis = client(endpoint, str(cert))
    kinesis.create_stream(StreamName="tls-py", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="tls-py", WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    put = kinesis.put_record(StreamName="tls-py", Data=b"over https", PartitionKey="pk")
    iterator = kinesis.get_shard_iterator(
        StreamName="tls-py", ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert [r["Data"] for r in records] == [b"over https"]
    assert records[0]["SequenceNumber"] == put["SequenceNumber"]


def test_boto3_without_the_certificate_is_refused_by_verification(tls_server):
    endpoint, _ = tls_server
    with pytest.raises(botocore.exceptions.SSLError):
        client(endpoint, True).list_streams()


def test_the_aws_cli_with_ca_bundle_lists_streams(tls_server):
    endpoint, cert = tls_server
    aws = shutil.which("aws")
    assert aws is not None, "the `aws` CLI is not on PATH (scripts/test installs it into .venv)"
    out = subprocess.run(
        [aws, "kinesis", "list-streams", "--endpoint-url", endpoint, "--ca-bundle", str(cert), "--output", "json"],
        env=aws_cli_env(), check=True, capture_output=True, text=True, timeout=60,
    )
    assert "StreamNames" in json.loads(out.stdout)
