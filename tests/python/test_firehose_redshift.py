"""The Redshift destination on a real PostgreSQL (Debian's, started by the test): buffers are
staged in S3 and loaded with COPY (JSON 'auto' and CSV copy options), and a COPY that keeps
failing past RetryOptions leaves a manifest of the staged object under errors/manifests/.
"""

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import ACCOUNT_ID
from firehose_support import S3sFs, firehose_client, free_port, list_keys, start_sluice, wait_active

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/firehose"


class Postgres:
    """A throwaway PostgreSQL on 127.0.0.1 with a `test` database (trust authentication)."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: scripts/test installs it with apt-get (postgresql)")
        self.bin = bins[-1]
        # Under /tmp itself: the postgres user must reach the directory.
        self.dir = tempfile.mkdtemp(prefix="sluice-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._as_postgres([f"{self.bin}/initdb", "-D", self.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--no-instructions"])
        self._as_postgres([f"{self.bin}/pg_ctl", "-D", self.dir, "-l", f"{self.dir}/log", "-w", "-o",
                           f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start"])
        self.sql("CREATE DATABASE test", database="postgres")

    def _as_postgres(self, command):
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60)

    def sql(self, statement, database="test"):
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-At", "-F", "|",
             "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [line.split("|") for line in result.stdout.splitlines()]

    def stop(self):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.dir, "-m", "fast", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("redshift")
    postgres = Postgres()
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s)
    yield server, s3s, postgres
    server.kill()
    s3s.stop()
    postgres.stop()


def redshift_config(postgres, bucket, table, columns, options, **extra):
    config = {
        "RoleARN": ROLE,
        "ClusterJDBCURL": f"jdbc:redshift://127.0.0.1:{postgres.port}/test",
        "CopyCommand": {"DataTableName": table, "DataTableColumns": columns, "CopyOptions": options},
        "Username": "postgres",
        "Password": "not-checked",
        "S3Configuration": {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}", "Prefix": "staging/",
                            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 0}},
    }
    config.update(extra)
    return config


def wait_rows(postgres, query, count, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while len(rows := postgres.sql(query)) < count:
        assert time.monotonic() < deadline, f"only {rows}"
        time.sleep(0.2)
    return rows


def test_json_records_are_staged_in_s3_and_copied_into_postgresql(setup):
    server, s3s, postgres = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    postgres.sql("CREATE TABLE public.events (id int, name text, score double precision)")
    bucket = f"stage-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"rs-{uuid.uuid4().hex[:8]}"
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        RedshiftDestinationConfiguration=redshift_config(postgres, bucket, "public.events", "id,name,score", "JSON 'auto'"))
    description = wait_active(firehose, name)
    redshift = description["Destinations"][0]["RedshiftDestinationDescription"]
    assert redshift["CopyCommand"] == {"DataTableName": "public.events", "DataTableColumns": "id,name,score",
                                       "CopyOptions": "JSON 'auto'"}
    assert "Password" not in redshift
    records = [json.dumps({"id": i, "name": f"n,{i}\"q", "score": i / 2}).encode() + b"\n" for i in range(10)]
    assert firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])["FailedPutCount"] == 0
    rows = wait_rows(postgres, "SELECT id, name, score FROM public.events ORDER BY id", 10)
    assert rows == [[str(i), f"n,{i}\"q", str(i / 2) if i % 2 else str(i // 2)] for i in range(10)]
    [staged] = list_keys(s3, bucket, "staging/")
    assert s3.get_object(Bucket=bucket, Key=staged)["Body"].read() == b"".join(records)
    firehose.delete_delivery_stream(DeliveryStreamName=name)


def test_csv_records_are_copied_and_a_copy_that_keeps_failing_leaves_a_manifest(setup):
    server, s3s, postgres = setup
    firehose, s3 = firehose_client(server.endpoint), s3s.client()
    postgres.sql("CREATE TABLE plain (a text, b int)")
    bucket = f"csv-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"rs-csv-{uuid.uuid4().hex[:8]}"
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        RedshiftDestinationConfiguration=redshift_config(postgres, bucket, "plain", "a,b", "CSV"))
    wait_active(firehose, name)
    firehose.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x,1\n"}, {"Data": b"\"y,z\",2\n"}])
    assert wait_rows(postgres, "SELECT a, b FROM plain ORDER BY b", 2) == [["x", "1"], ["y,z", "2"]]
    firehose.delete_delivery_stream(DeliveryStreamName=name)

    failing = f"rs-fail-{uuid.uuid4().hex[:8]}"
    firehose.create_delivery_stream(
        DeliveryStreamName=failing,
        RedshiftDestinationConfiguration=redshift_config(
            postgres, bucket, "no_such_table", "a", "CSV", RetryOptions={"DurationInSeconds": 1}))
    wait_active(firehose, failing)
    firehose.put_record(DeliveryStreamName=failing, Record={"Data": b"lost?\n"})
    deadline = time.monotonic() + 30
    while not (manifests := list_keys(s3, bucket, "staging/errors/manifests/")):
        assert time.monotonic() < deadline, list_keys(s3, bucket)
        time.sleep(0.2)
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifests[0])["Body"].read())
    [entry] = manifest["entries"]
    assert entry["mandatory"] is True
    staged_key = entry["url"].removeprefix(f"s3://{bucket}/")
    assert s3.get_object(Bucket=bucket, Key=staged_key)["Body"].read() == b"lost?\n"
    # The refused COPY is the stream's FailureDescription; the stream stays ACTIVE.
    description = firehose.describe_delivery_stream(DeliveryStreamName=failing)["DeliveryStreamDescription"]
    assert description["DeliveryStreamStatus"] == "ACTIVE"
    assert description["FailureDescription"]["Type"] == "UNKNOWN_ERROR"
    details = description["FailureDescription"]["Details"]
    assert details.startswith("Redshift.DataLoadFailed: COPY failed"), details
    assert "no_such_table" in details, details
    firehose.delete_delivery_stream(DeliveryStreamName=failing)
