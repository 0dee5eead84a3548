"""Helpers of the Firehose end-to-end tests: a real S3-compatible server (s3s-fs, installed by
scripts/test) started per test module, and a Sluice started with the standard S3 environment
(AWS_ENDPOINT_URL_S3, keys, region) pointing at it.

A missing s3s-fs binary fails loudly: these tests never skip.
"""

import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time

import boto3
from botocore.config import Config

from conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SluiceProcess

S3_ACCESS_KEY = "AKIDS3SFSTEST"
S3_SECRET_KEY = "s3s-fs-test-secret"
# The object key AWS gives with no custom prefix: YYYY/MM/dd/HH/<name>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid><ext>.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def default_key_pattern(name: str, version: int, extension: str) -> "re.Pattern[str]":
    return re.compile(
        rf"^(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/{re.escape(name)}-{version}-"
        rf"(\d{{4}})-(\d{{2}})-(\d{{2}})-(\d{{2}})-\d{{2}}-\d{{2}}-{UUID}{re.escape(extension)}$"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3sFs:
    """s3s-fs on a free loopback port, storing objects as files under `root`."""

    def __init__(self, root: pathlib.Path, log: pathlib.Path, port: "int | None" = None,
                 access_key: str = S3_ACCESS_KEY, secret_key: str = S3_SECRET_KEY):
        binary = shutil.which("s3s-fs")
        if binary is None:
            raise RuntimeError(
                "s3s-fs is not on PATH: scripts/test installs it with "
                "`cargo install s3s-fs@0.14.1 --locked --features binary`"
            )
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key, self.secret_key = access_key, secret_key
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(self.port),
             "--access-key", access_key, "--secret-key", secret_key, str(root)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"s3s-fs did not start; see {log}")
            time.sleep(0.02)

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._log.close()


def start_sluice(data_dir: pathlib.Path, s3: S3sFs, extra_env: "dict | None" = None,
                 extra_args: "list | None" = None) -> SluiceProcess:
    """A Sluice whose Firehose delivers to `s3`, configured the standard way (environment)."""
    env = {
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": REGION,
        # No instance-metadata probing for credentials or region on a machine without it.
        "AWS_EC2_METADATA_DISABLED": "true",
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return SluiceProcess(data_dir, extra_args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def firehose_client(endpoint: str):
    return boto3.client(
        "firehose", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


def wait_active(firehose, name: str, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        if description["DeliveryStreamStatus"] == "ACTIVE":
            return description
        assert description["DeliveryStreamStatus"] == "CREATING", description
        assert time.monotonic() < deadline, f"{name} did not become ACTIVE in {timeout_s} s"
        time.sleep(0.05)


def wait_failure_description(firehose, name: str, shown: bool = True, timeout_s: float = 60) -> dict:
    """Polls DescribeDeliveryStream until it shows a FailureDescription (with `shown=False`: until
    it no longer does); the description."""
    deadline = time.monotonic() + timeout_s
    while True:
        description = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        if ("FailureDescription" in description) == shown:
            return description
        assert time.monotonic() < deadline, f"FailureDescription shown is not {shown} after {timeout_s} s: {description}"
        time.sleep(0.1)


def list_keys(s3, bucket: str, prefix: str = "") -> list:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def wait_for_keys(s3, bucket: str, prefix: str, predicate, timeout_s: float = 30) -> list:
    """Polls the bucket until `predicate(keys)` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        keys = list_keys(s3, bucket, prefix)
        if predicate(keys):
            return keys
        assert time.monotonic() < deadline, f"objects under {bucket}/{prefix} never satisfied the check: {keys}"
        time.sleep(0.1)
