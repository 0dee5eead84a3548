"""Kinesis Data Analytics for SQL end to end: boto3 `kinesisanalytics` creates and starts
applications on Sluice, boto3 `kinesis` feeds their input stream and reads their output stream,
and every result is compared with the same query run by DuckDB over the same records (with the
arrival times Sluice reports for them), never with an earlier output of the engine.

Guards against: a program that parses but computes the wrong rows, windows that are cut at the
wrong boundaries or never close, malformed records stopping an application, and API answers
that differ from KDA's (error types, versions, statuses).
"""

import datetime
import json
import os
import pathlib
import random
import tempfile
import shutil
import time
import uuid

import boto3
import duckdb
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY_ID, ACCOUNT_ID, REGION, SECRET_ACCESS_KEY, SluiceProcess

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/kda"

SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
        {"Name": "px", "Mapping": "$.px", "SqlType": "DOUBLE"},
        {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"},
    ],
}

FILTER_PROGRAM = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "notional" DOUBLE);
CREATE OR REPLACE PUMP "BIG_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "px" * "qty" FROM "SOURCE_SQL_STREAM_001" WHERE "px" * "qty" > 10000;
"""

WINDOW_PROGRAM = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  "window_start" TIMESTAMP, "sym" VARCHAR(8), "n" BIGINT, "total_qty" BIGINT, "hi" DOUBLE);
CREATE OR REPLACE PUMP "COUNT_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '2' SECOND), "sym",
         COUNT(*), SUM("qty"), MAX("px")
  FROM "SOURCE_SQL_STREAM_001"
  GROUP BY "sym", STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '2' SECOND);
"""


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


@pytest.fixture(scope="module")
def kda(endpoint):
    return client("kinesisanalytics", endpoint)


def stream_arn(name):
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{name}"


def make_stream(kinesis, name, shards=1):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def trades(n, seed):
    rng = random.Random(seed)
    syms = ["AMZN", "IBM", "MSFT", "ORCL"]
    return [
        {"sym": rng.choice(syms), "px": round(rng.uniform(1, 500), 2), "qty": rng.randint(1, 100)}
        for _ in range(n)
    ]


def put(kinesis, stream, records):
    for start in range(0, len(records), 100):
        chunk = records[start:start + 100]
        reply = kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": r if isinstance(r, bytes) else json.dumps(r).encode(), "PartitionKey": str(i)}
                     for i, r in enumerate(chunk)],
        )
        assert reply["FailedRecordCount"] == 0


def read_all(kinesis, stream, expected_at_least, timeout_s=30.0, settle_s=0.0):
    """Every record of shard 0 of `stream` once at least `expected_at_least` are there."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = []
    deadline = time.monotonic() + timeout_s
    settled_at = None
    while time.monotonic() < deadline:
        reply = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        records.extend(reply["Records"])
        iterator = reply["NextShardIterator"]
        if len(records) >= expected_at_least:
            if settled_at is None:
                settled_at = time.monotonic()
            if time.monotonic() - settled_at >= settle_s:
                return records
        if not reply["Records"]:
            time.sleep(0.2)
    raise AssertionError(f"{stream}: {len(records)} records after {timeout_s} s, expected {expected_at_least}")


def wait_status(kda, name, status, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
        if detail["ApplicationStatus"] == status:
            return detail
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {status}: {detail['ApplicationStatus']}")


def create_app(kda, name, code, source, destination, error_destination=None, schema=SCHEMA):
    """Creates application `name` reading `source` and writing DESTINATION_SQL_STREAM to
    `destination` (and error_stream to `error_destination`); `code` None creates it without
    ApplicationCode, which KDA allows: the code is added with UpdateApplication."""
    outputs = [{
        "Name": "DESTINATION_SQL_STREAM",
        "KinesisStreamsOutput": {"ResourceARN": stream_arn(destination), "RoleARN": ROLE},
        "DestinationSchema": {"RecordFormatType": "JSON"},
    }]
    if error_destination:
        outputs.append({
            "Name": "error_stream",
            "KinesisStreamsOutput": {"ResourceARN": stream_arn(error_destination), "RoleARN": ROLE},
            "DestinationSchema": {"RecordFormatType": "JSON"},
        })
    code = {} if code is None else {"ApplicationCode": code}
    return kda.create_application(
        ApplicationName=name,
        **code,
        Inputs=[{
            "NamePrefix": "SOURCE_SQL_STREAM",
            "KinesisStreamsInput": {"ResourceARN": stream_arn(source), "RoleARN": ROLE},
            "InputSchema": schema,
        }],
        Outputs=outputs,
    )


def start(kda, name, position="TRIM_HORIZON", status="RUNNING"):
    """Starts application `name` and waits until it is `status`: RUNNING, or READY again for
    one that cannot start (its reference data cannot be loaded)."""
    detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
    input_id = detail["InputDescriptions"][0]["InputId"]
    kda.start_application(
        ApplicationName=name,
        InputConfigurations=[{"Id": input_id, "InputStartingPositionConfiguration": {"InputStartingPosition": position}}],
    )
    return wait_status(kda, name, status)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_filter_program_output_equals_duckdb_over_the_same_records(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("filter")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    summary = create_app(kda, app, FILTER_PROGRAM, source, destination)["ApplicationSummary"]
    assert summary == {
        "ApplicationName": app,
        "ApplicationARN": f"arn:aws:kinesisanalytics:{REGION}:{ACCOUNT_ID}:application/{app}",
        "ApplicationStatus": "READY",
    }
    detail = start(kda, app)
    assert detail["InputDescriptions"][0]["InAppStreamNames"] == ["SOURCE_SQL_STREAM_001"]

    data = trades(300, seed=1)
    put(kinesis, source, data)

    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, sym VARCHAR, px DOUBLE, qty INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(i, r["sym"], r["px"], r["qty"]) for i, r in enumerate(data)])
    expected = con.execute("SELECT sym, px * qty FROM t WHERE px * qty > 10000 ORDER BY i").fetchall()
    assert 0 < len(expected) < len(data)

    got = read_all(kinesis, destination, len(expected), settle_s=1.0)
    rows = [json.loads(r["Data"]) for r in got]
    assert [(r["sym"], r["notional"]) for r in rows] == [(s, pytest.approx(v)) for s, v in expected]

    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_tumbling_window_counts_equal_duckdb_over_arrival_time_windows(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("window")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    create_app(kda, app, WINDOW_PROGRAM, source, destination)
    start(kda, app)

    data = trades(240, seed=2)
    # Four bursts 0.9 s apart spread the records over at least two 2-second windows.
    for burst in range(4):
        put(kinesis, source, data[burst * 60:(burst + 1) * 60])
        time.sleep(0.9)

    # ROWTIME is each record's arrival time in the source stream: read it back as Sluice stored it.
    stored = read_all(kinesis, source, len(data))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (arrival_ms BIGINT, sym VARCHAR, px DOUBLE, qty INTEGER)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [
            (round(r["ApproximateArrivalTimestamp"].timestamp() * 1000), d["sym"], d["px"], d["qty"])
            for r in stored
            for d in [json.loads(r["Data"])]
        ],
    )
    expected = con.execute(
        """SELECT (arrival_ms // 2000) * 2000 AS w, sym, count(*), sum(qty), max(px)
           FROM t GROUP BY w, sym ORDER BY w, sym"""
    ).fetchall()
    windows = {w for w, *_ in expected}
    assert len(windows) >= 2

    # The last window closes once the wall clock is past its end (plus the grace second).
    got = read_all(kinesis, destination, len(expected), timeout_s=30.0, settle_s=1.5)
    rows = [json.loads(r["Data"]) for r in got]

    def ms(text):
        return round(datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
                     .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)

    actual = sorted((ms(r["window_start"]), r["sym"], r["n"], r["total_qty"], r["hi"]) for r in rows)
    assert actual == [(w, s, n, q, pytest.approx(h)) for w, s, n, q, h in expected]
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_malformed_records_go_to_error_stream_and_the_application_keeps_running(kinesis, kda):
    source, destination, errors, app = unique("kda-in"), unique("kda-out"), unique("kda-err"), unique("errors")
    for s in (source, destination, errors):
        make_stream(kinesis, s)
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "qty" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM UPPER("sym"), "qty" FROM "SOURCE_SQL_STREAM_001";"""
    create_app(kda, app, code, source, destination, error_destination=errors)
    start(kda, app)
    put(kinesis, source, [b'{"sym":"a","px":1,"qty":1}', b"not json at all", b'{"sym":"b","px":1,"qty":"many"}',
                          b'{"sym":"c","px":2,"qty":3}'])
    out = [json.loads(r["Data"]) for r in read_all(kinesis, destination, 2, settle_s=0.5)]
    assert out == [{"sym": "A", "qty": 1}, {"sym": "C", "qty": 3}]
    err = [json.loads(r["Data"]) for r in read_all(kinesis, errors, 2, settle_s=0.5)]
    assert [e["ERROR_NAME"] for e in err] == ["Invalid_JSON", "Coercion_error"]
    assert bytes.fromhex(err[0]["DATA_ROW"]) == b"not json at all"
    assert set(err[0]) == {"ERROR_TIME", "ERROR_LEVEL", "ERROR_NAME", "MESSAGE", "DATA_ROWTIME", "DATA_ROW", "PUMP_NAME"}
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationStatus"] == "RUNNING"
    metrics = metric_values(kda.meta.endpoint_url)
    assert metrics["analytics_error_rows_total"] >= 2
    assert metrics["analytics_records_read_total"] >= 4
    assert metrics["analytics_rows_written_total"] >= 4
    assert metrics["analytics_applications_running"] >= 1
    # The application's own series (KDA's per-application CloudWatch metrics), exact: this
    # application read 4 records, sent 2 to error_stream and wrote 2 + 2 rows.
    label = f'{{application="{app}"}}'
    assert metrics[f"analytics_application_records_read_total{label}"] == 4
    assert metrics[f"analytics_application_record_bytes_read_total{label}"] == 26 + 15 + 31 + 26
    assert metrics[f"analytics_application_error_rows_total{label}"] == 2
    assert metrics[f"analytics_application_rows_written_total{label}"] == 4
    assert metrics[f"analytics_application_millis_behind_latest{label}"] >= 0
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")
    created = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["CreateTimestamp"]
    kda.delete_application(ApplicationName=app, CreateTimestamp=created)
    after = metric_values(kda.meta.endpoint_url)
    assert not [name for name in after if label in name], "a deleted application's series are gone"


def metric_values(endpoint):
    import urllib.request
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("analytics_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def error_of(call):
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]


def test_api_lifecycle_versions_tags_and_errors_match_kda(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("api")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)

    bad = 'CREATE OR REPLACE STREAM "S" ("a" INTEGER);\nCREATE PUMP "P" AS INSERT INTO "S"\n  SELECT STREAM "a" FROM "SOURCE_SQL_STREAM_001" WHERE;'
    error = error_of(lambda: create_app(kda, app, bad, source, destination))
    assert error["Code"] == "CodeValidationException"
    assert "line 3, column" in error["Message"], error["Message"]

    create_app(kda, app, FILTER_PROGRAM, source, destination)
    error = error_of(lambda: create_app(kda, app, FILTER_PROGRAM, source, destination))
    assert error["Code"] == "ResourceInUseException"
    assert error_of(lambda: kda.describe_application(ApplicationName="no-such-app"))["Code"] == "ResourceNotFoundException"

    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == 1
    assert detail["ApplicationCode"] == FILTER_PROGRAM
    assert detail["InputDescriptions"][0]["InputSchema"] == SCHEMA
    assert detail["OutputDescriptions"][0]["KinesisStreamsOutputDescription"]["ResourceARN"] == stream_arn(destination)
    assert app in [s["ApplicationName"] for s in kda.list_applications(Limit=50)["ApplicationSummaries"]]

    stale = error_of(lambda: kda.update_application(
        ApplicationName=app, CurrentApplicationVersionId=7, ApplicationUpdate={"ApplicationCodeUpdate": FILTER_PROGRAM}))
    assert stale["Code"] == "ConcurrentModificationException"
    bad_update = error_of(lambda: kda.update_application(
        ApplicationName=app, CurrentApplicationVersionId=1, ApplicationUpdate={"ApplicationCodeUpdate": "SELEC 1"}))
    assert bad_update["Code"] == "CodeValidationException"
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=1,
                           ApplicationUpdate={"ApplicationCodeUpdate": FILTER_PROGRAM.replace("10000", "5")})
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"] == 2

    kda.add_application_output(ApplicationName=app, CurrentApplicationVersionId=2, Output={
        "Name": "error_stream",
        "KinesisStreamsOutput": {"ResourceARN": stream_arn(destination), "RoleARN": ROLE},
        "DestinationSchema": {"RecordFormatType": "CSV"},
    })
    outputs = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["OutputDescriptions"]
    assert [o["Name"] for o in outputs] == ["DESTINATION_SQL_STREAM", "error_stream"]
    kda.delete_application_output(ApplicationName=app, CurrentApplicationVersionId=3, OutputId=outputs[1]["OutputId"])
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"] == 4

    arn = detail["ApplicationARN"]
    kda.tag_resource(ResourceARN=arn, Tags=[{"Key": "team", "Value": "quant"}, {"Key": "env", "Value": "dev"}])
    kda.untag_resource(ResourceARN=arn, TagKeys=["env"])
    assert kda.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "quant"}]

    input_id = detail["InputDescriptions"][0]["InputId"]
    bad_start = error_of(lambda: kda.start_application(ApplicationName=app, InputConfigurations=[
        {"Id": "9.9", "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}]))
    assert bad_start["Code"] == "InvalidArgumentException"
    kda.start_application(ApplicationName=app, InputConfigurations=[
        {"Id": input_id, "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}])
    assert error_of(lambda: kda.start_application(ApplicationName=app, InputConfigurations=[
        {"Id": input_id, "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}]))["Code"] == "ResourceInUseException"
    wait_status(kda, app, "RUNNING")
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")

    created = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["CreateTimestamp"]
    wrong = error_of(lambda: kda.delete_application(ApplicationName=app, CreateTimestamp=created - datetime.timedelta(seconds=5)))
    assert wrong["Code"] == "InvalidArgumentException"
    kda.delete_application(ApplicationName=app, CreateTimestamp=created)
    assert error_of(lambda: kda.describe_application(ApplicationName=app))["Code"] == "ResourceNotFoundException"


def test_discover_input_schema_infers_json_and_csv_columns(kinesis, kda):
    json_stream, csv_stream = unique("kda-json"), unique("kda-csv")
    make_stream(kinesis, json_stream)
    make_stream(kinesis, csv_stream)
    put(kinesis, json_stream, [{"ticker": "AMZN", "price": 12.5, "volume": 3, "ok": True},
                               {"ticker": "IBMX", "price": 7, "volume": 4000000000, "ok": False}])
    put(kinesis, csv_stream, [b"AMZN,12.5,3", b"IBM,7,4"])
    reply = kda.discover_input_schema(
        ResourceARN=stream_arn(json_stream), RoleARN=ROLE,
        InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    schema = reply["InputSchema"]
    assert schema["RecordFormat"]["RecordFormatType"] == "JSON"
    assert [(c["Name"], c["Mapping"], c["SqlType"]) for c in schema["RecordColumns"]] == [
        ("ticker", "$.ticker", "VARCHAR(4)"), ("price", "$.price", "DOUBLE"),
        ("volume", "$.volume", "BIGINT"), ("ok", "$.ok", "BOOLEAN")]
    assert len(reply["RawInputRecords"]) == 2
    reply = kda.discover_input_schema(
        ResourceARN=stream_arn(csv_stream), RoleARN=ROLE,
        InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"})
    assert reply["InputSchema"]["RecordFormat"]["RecordFormatType"] == "CSV"
    assert [(c["Name"], c["SqlType"]) for c in reply["InputSchema"]["RecordColumns"]] == [
        ("COL_1", "VARCHAR(4)"), ("COL_2", "DOUBLE"), ("COL_3", "INTEGER")]
    assert reply["ParsedInputRecords"] == [["AMZN", "12.5", "3"], ["IBM", "7", "4"]]
    empty = unique("kda-empty")
    make_stream(kinesis, empty)
    error = error_of(lambda: kda.discover_input_schema(
        ResourceARN=stream_arn(empty), RoleARN=ROLE,
        InputStartingPositionConfiguration={"InputStartingPosition": "TRIM_HORIZON"}))
    assert error["Code"] == "UnableToDetectSchemaException"


def test_a_running_application_survives_a_server_kill_and_resumes_from_its_checkpoint():
    """kill -9 of the server: the application is RUNNING again after the restart, continues from
    its checkpoint (LAST_STOPPED_POINT semantics), and each record's row reaches the output once."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-"))
    data_dir = base / "data"
    server = SluiceProcess(data_dir)
    try:
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        make_stream(kinesis, "src")
        make_stream(kinesis, "dst")
        code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "qty" INTEGER);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "qty" FROM "SOURCE_SQL_STREAM_001";"""
        create_app(kda, "durable", code, "src", "dst")
        start(kda, "durable")
        first = [{"sym": "A", "px": 1.0, "qty": i} for i in range(50)]
        put(kinesis, "src", first)
        read_all(kinesis, "dst", 50, settle_s=1.0)
        server.proc.kill()
        server.proc.wait(timeout=30)
        server = SluiceProcess(data_dir)
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        wait_status(kda, "durable", "RUNNING")
        second = [{"sym": "B", "px": 1.0, "qty": i} for i in range(50, 80)]
        put(kinesis, "src", second)
        rows = [json.loads(r["Data"]) for r in read_all(kinesis, "dst", 80, settle_s=1.5)]
        assert [(r["sym"], r["qty"]) for r in rows] == [(d["sym"], d["qty"]) for d in first + second]
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_sql_run_subcommand_runs_a_program_over_a_file(tmp_path):
    """`sluice sql run` (no server): row i has ROWTIME i * --step-ms; hand-derived expectation."""
    from conftest import sluice_bin
    import subprocess

    (tmp_path / "app.sql").write_text(WINDOW_PROGRAM)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    lines = [{"sym": "A", "px": 1.0, "qty": 1}, {"sym": "B", "px": 2.0, "qty": 2},
             {"sym": "A", "px": 3.0, "qty": 3}, {"sym": "A", "px": 4.0, "qty": 4}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    run = subprocess.run(
        [str(sluice_bin()), "sql", "run", str(tmp_path / "app.sql"), "--input", str(tmp_path / "in.jsonl"),
         "--schema", str(tmp_path / "schema.json"), "--name-prefix", "SOURCE_SQL_STREAM", "--step-ms", "1500"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    # Row times 0, 1.5, 3, 4.5 s: window [0,2) holds A(1) and B(2); [2,4) holds A(3); [4,6) A(4).
    assert [json.loads(l) for l in run.stdout.splitlines()] == [
        {"window_start": "1970-01-01 00:00:00.000", "sym": "A", "n": 1, "total_qty": 1, "hi": 1.0},
        {"window_start": "1970-01-01 00:00:00.000", "sym": "B", "n": 1, "total_qty": 2, "hi": 2.0},
        {"window_start": "1970-01-01 00:00:02.000", "sym": "A", "n": 1, "total_qty": 3, "hi": 3.0},
        {"window_start": "1970-01-01 00:00:04.000", "sym": "A", "n": 1, "total_qty": 4, "hi": 4.0},
    ]
    (tmp_path / "bad.sql").write_text('CREATE STREAM "S" ("a" INTEGER);\nCREATE PUMP "P" AS INSERT INTO "S" SELECT STREAM "zz" FROM "SOURCE_SQL_STREAM_001";')
    run = subprocess.run(
        [str(sluice_bin()), "sql", "run", str(tmp_path / "bad.sql"), "--input", str(tmp_path / "in.jsonl"),
         "--schema", str(tmp_path / "schema.json")],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "CodeValidationException" in run.stderr and "line 2, column 50" in run.stderr, run.stderr


def test_kill_9_in_the_middle_of_a_window_neither_loses_nor_double_counts_it():
    """kill -9 while a tumbling window is open: after the restart the application rebuilds the
    open window from its checkpoint (the first record of that window), so the output equals an
    uninterrupted run's, computed by DuckDB from the records' arrival times."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-"))
    data_dir = base / "data"
    server = SluiceProcess(data_dir)
    try:
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        make_stream(kinesis, "src")
        make_stream(kinesis, "dst")
        create_app(kda, "windowed", WINDOW_PROGRAM, "src", "dst")
        start(kda, "windowed")
        data = trades(90, seed=3)
        put(kinesis, "src", data[:30])
        time.sleep(3.5)
        put(kinesis, "src", data[30:60])
        time.sleep(0.3)
        server.proc.kill()
        server.proc.wait(timeout=30)
        server = SluiceProcess(data_dir)
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        wait_status(kda, "windowed", "RUNNING")
        put(kinesis, "src", data[60:])

        stored = read_all(kinesis, "src", len(data))
        con = duckdb.connect()
        con.execute("CREATE TABLE t (arrival_ms BIGINT, sym VARCHAR, px DOUBLE, qty INTEGER)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [
            (round(r["ApproximateArrivalTimestamp"].timestamp() * 1000), d["sym"], d["px"], d["qty"])
            for r in stored for d in [json.loads(r["Data"])]])
        expected = con.execute(
            """SELECT (arrival_ms // 2000) * 2000 AS w, sym, count(*), sum(qty), max(px)
               FROM t GROUP BY w, sym ORDER BY w, sym""").fetchall()
        got = read_all(kinesis, "dst", len(expected), timeout_s=30.0, settle_s=3.0)
        rows = [json.loads(r["Data"]) for r in got]

        def ms(text):
            return round(datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
                         .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)

        actual = sorted((ms(r["window_start"]), r["sym"], r["n"], r["total_qty"], r["hi"]) for r in rows)
        assert actual == [(w, s, n, q, pytest.approx(h)) for w, s, n, q, h in expected]
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_sliding_rows_window_equals_duckdb_window_function(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("sliding")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "vol" BIGINT, "n" INTEGER, "avg_px" DOUBLE);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", SUM("qty") OVER W, COUNT(*) OVER W, AVG("px") OVER W
  FROM "SOURCE_SQL_STREAM_001"
  WINDOW W AS (PARTITION BY "sym" ROWS 3 PRECEDING);"""
    create_app(kda, app, code, source, destination)
    start(kda, app)
    data = trades(150, seed=4)
    put(kinesis, source, data)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, sym VARCHAR, px DOUBLE, qty INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(i, r["sym"], r["px"], r["qty"]) for i, r in enumerate(data)])
    expected = con.execute(
        """SELECT sym,
                  sum(qty) OVER w, count(*) OVER w, avg(px) OVER w
           FROM t WINDOW w AS (PARTITION BY sym ORDER BY i ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
           ORDER BY i""").fetchall()
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(data), settle_s=1.0)]
    assert [(r["sym"], r["vol"], r["n"], r["avg_px"]) for r in rows] == [
        (s, v, n, pytest.approx(a)) for s, v, n, a in expected]
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_top_k_items_tumbling_equals_duckdb_over_arrival_time_windows(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("topk")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("ITEM" VARCHAR(8), "ITEM_COUNT" BIGINT);
CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(
    CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 'sym', 2, 2));"""
    create_app(kda, app, code, source, destination)
    start(kda, app)
    rng = random.Random(5)
    # Skewed so that the top two are clear most of the time; ties are ranked by value.
    data = [{"sym": rng.choices(["AMZN", "IBM", "MSFT", "ORCL"], weights=[8, 4, 2, 1])[0], "px": 1.0, "qty": 1}
            for _ in range(160)]
    for burst in range(2):
        put(kinesis, source, data[burst * 80:(burst + 1) * 80])
        time.sleep(1.2)
    stored = read_all(kinesis, source, len(data))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (arrival_ms BIGINT, sym VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [
        (round(r["ApproximateArrivalTimestamp"].timestamp() * 1000), json.loads(r["Data"])["sym"]) for r in stored])
    expected = con.execute(
        """WITH counts AS (SELECT (arrival_ms // 2000) * 2000 AS w, sym, count(*) AS n FROM t GROUP BY w, sym)
           SELECT w, sym, n FROM (
             SELECT w, sym, n, row_number() OVER (PARTITION BY w ORDER BY n DESC, sym) AS rank FROM counts)
           WHERE rank <= 2 ORDER BY w, n DESC, sym""").fetchall()
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(expected), settle_s=2.0)]
    assert [(r["ITEM"], r["ITEM_COUNT"]) for r in rows] == [(s, n) for _, s, n in expected]
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_stream_join_equals_duckdb_interval_join_over_arrival_times(kinesis, kda):
    """Orders (qty >= 50) joined with the trades (qty < 50) of the same symbol that arrived in
    the 2 seconds up to each order, both split from one input stream by pumps."""
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("join")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    code = """CREATE OR REPLACE STREAM "ORDERS" ("sym" VARCHAR(8), "qty" INTEGER);
CREATE OR REPLACE STREAM "TRADES" ("sym" VARCHAR(8), "qty" INTEGER);
CREATE OR REPLACE PUMP "P_ORDERS" AS INSERT INTO "ORDERS" SELECT STREAM "sym", "qty" FROM "SOURCE_SQL_STREAM_001" WHERE "qty" >= 50;
CREATE OR REPLACE PUMP "P_TRADES" AS INSERT INTO "TRADES" SELECT STREAM "sym", "qty" FROM "SOURCE_SQL_STREAM_001" WHERE "qty" < 50;
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "order_qty" INTEGER, "trade_qty" INTEGER);
CREATE OR REPLACE PUMP "P_JOIN" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM o."sym", o."qty", t."qty"
  FROM "ORDERS" AS o JOIN "TRADES" OVER (RANGE INTERVAL '2' SECOND PRECEDING) AS t
  ON o."sym" = t."sym";"""
    create_app(kda, app, code, source, destination)
    start(kda, app)
    data = trades(60, seed=6)
    for burst in range(4):
        put(kinesis, source, data[burst * 15:(burst + 1) * 15])
        time.sleep(0.8)
    stored = read_all(kinesis, source, len(data))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, arrival_ms BIGINT, sym VARCHAR, qty INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [
        (i, round(r["ApproximateArrivalTimestamp"].timestamp() * 1000), d["sym"], d["qty"])
        for i, r in enumerate(stored) for d in [json.loads(r["Data"])]])
    expected = con.execute(
        """SELECT o.sym, o.qty, tr.qty FROM t AS o JOIN t AS tr
             ON o.sym = tr.sym AND tr.arrival_ms BETWEEN o.arrival_ms - 2000 AND o.arrival_ms
           WHERE o.qty >= 50 AND tr.qty < 50 ORDER BY o.i, tr.i""").fetchall()
    assert len(expected) > 0
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(expected), settle_s=2.0)]
    assert [(r["sym"], r["order_qty"], r["trade_qty"]) for r in rows] == expected
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_input_parallelism_deals_shards_over_numbered_in_application_streams(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("parallel")
    make_stream(kinesis, source, shards=2)
    make_stream(kinesis, destination)
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "qty" INTEGER, "lane" INTEGER);
CREATE OR REPLACE PUMP "P1" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "qty", 1 FROM "SOURCE_SQL_STREAM_001" WHERE "qty" > 20;
CREATE OR REPLACE PUMP "P2" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", "qty", 2 FROM "SOURCE_SQL_STREAM_002" WHERE "qty" > 20;"""
    kda.create_application(
        ApplicationName=app, ApplicationCode=code,
        Inputs=[{"NamePrefix": "SOURCE_SQL_STREAM",
                 "KinesisStreamsInput": {"ResourceARN": stream_arn(source), "RoleARN": ROLE},
                 "InputParallelism": {"Count": 2}, "InputSchema": SCHEMA}],
        Outputs=[{"Name": "DESTINATION_SQL_STREAM",
                  "KinesisStreamsOutput": {"ResourceARN": stream_arn(destination), "RoleARN": ROLE},
                  "DestinationSchema": {"RecordFormatType": "JSON"}}])
    detail = start(kda, app)
    assert detail["InputDescriptions"][0]["InAppStreamNames"] == ["SOURCE_SQL_STREAM_001", "SOURCE_SQL_STREAM_002"]
    data = trades(120, seed=7)
    put(kinesis, source, data)
    expected = sorted((d["sym"], d["qty"]) for d in data if d["qty"] > 20)
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(expected), settle_s=1.0)]
    assert sorted((r["sym"], r["qty"]) for r in rows) == expected
    assert {r["lane"] for r in rows} == {1, 2}, "each shard feeds its own in-application stream"
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_add_application_input_then_start_reads_the_added_stream(kinesis, kda):
    source, destination, app = unique("kda-in"), unique("kda-out"), unique("addin")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    kda.create_application(ApplicationName=app, ApplicationCode=FILTER_PROGRAM)
    assert error_of(lambda: kda.start_application(ApplicationName=app, InputConfigurations=[
        {"Id": "1.1", "InputStartingPositionConfiguration": {"InputStartingPosition": "NOW"}}]))["Code"] == \
        "InvalidApplicationConfigurationException"
    kda.add_application_input(ApplicationName=app, CurrentApplicationVersionId=1, Input={
        "NamePrefix": "SOURCE_SQL_STREAM",
        "KinesisStreamsInput": {"ResourceARN": stream_arn(source), "RoleARN": ROLE},
        "InputSchema": SCHEMA})
    kda.add_application_output(ApplicationName=app, CurrentApplicationVersionId=2, Output={
        "Name": "DESTINATION_SQL_STREAM",
        "KinesisStreamsOutput": {"ResourceARN": stream_arn(destination), "RoleARN": ROLE},
        "DestinationSchema": {"RecordFormatType": "CSV"}})
    second = error_of(lambda: kda.add_application_input(ApplicationName=app, CurrentApplicationVersionId=3, Input={
        "NamePrefix": "OTHER", "KinesisStreamsInput": {"ResourceARN": stream_arn(source), "RoleARN": ROLE},
        "InputSchema": SCHEMA}))
    assert second["Code"] == "InvalidArgumentException"
    detail = start(kda, app, position="TRIM_HORIZON")
    assert detail["ApplicationVersionId"] == 3
    assert detail["InputDescriptions"][0]["InputStartingPositionConfiguration"] == {"InputStartingPosition": "TRIM_HORIZON"}
    put(kinesis, source, [{"sym": "X", "px": 200.0, "qty": 100}, {"sym": "Y", "px": 1.0, "qty": 1}])
    rows = [r["Data"] for r in read_all(kinesis, destination, 1, settle_s=1.0)]
    assert rows == [b"X,20000.0"]
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def json_schema(columns):
    """A JSON InputSchema whose columns, (name, SQL type), map the record's members of the same name."""
    return {
        "RecordFormat": SCHEMA["RecordFormat"],
        "RecordEncoding": "UTF-8",
        "RecordColumns": [{"Name": n, "Mapping": f"$.{n}", "SqlType": t} for n, t in columns],
    }


HOTSPOTS_SCHEMA = json_schema([("x", "DOUBLE"), ("y", "DOUBLE"), ("is_hot", "VARCHAR(4)")])


def dbscan_hotspots(points, radius, minimum):
    """Hotspots of `points` recomputed from scratch: core points have `minimum` points (themselves
    included) within `radius`; connected core points and every point within reach of them form a
    hotspot; density is its points over its box, each side at least `radius`."""
    near = [[j for j, q in enumerate(points) if j != i and (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 <= radius ** 2]
            for i, p in enumerate(points)]
    core = [len(n) + 1 >= minimum for n in near]
    group = {}
    for i in range(len(points)):
        if not core[i] or i in group:
            continue
        group[i] = i
        todo = [i]
        while todo:
            for j in near[todo.pop()]:
                if core[j] and j not in group:
                    group[j] = i
                    todo.append(j)
    hotspots = []
    for root in sorted(set(group.values())):
        cores = [i for i, g in group.items() if g == root]
        members = set(cores) | {j for i in cores for j in near[i]}
        xs = [points[m][0] for m in members]
        ys = [points[m][1] for m in members]
        size = max(max(xs) - min(xs), radius) * max(max(ys) - min(ys), radius)
        hotspots.append({"density": len(members) / size, "minValues": [min(xs), min(ys)],
                         "maxValues": [max(xs), max(ys)]})
    return sorted(hotspots, key=lambda h: -h["density"])


def source_and_destination(kinesis):
    """Two new streams: an application's input and its output."""
    source, destination = unique("kda-in"), unique("kda-out")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    return source, destination


def test_hotspots_of_kda_s_example_equal_a_from_scratch_dbscan_of_the_window(kinesis, kda):
    (source, destination), app = source_and_destination(kinesis), unique("hotspots")
    # The program of KDA's hotspots example, unchanged.
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
    "x" DOUBLE,
    "y" DOUBLE,
    "is_hot" VARCHAR(4),
    HOTSPOTS_RESULT VARCHAR(10000)
);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
    INSERT INTO "DESTINATION_SQL_STREAM"
    SELECT "x", "y", "is_hot", "HOTSPOTS_RESULT"
    FROM TABLE (
        HOTSPOTS(
            CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"),
            1000,
            0.2,
            17)
    );"""
    # Parameters outside KDA's ranges fail CreateApplication, pointing at the argument.
    bad = code.replace("1000,", "99,")
    line = bad[:bad.index("99,")].count("\n") + 1
    column = bad.index("99,") - bad.rindex("\n", 0, bad.index("99,"))
    error = error_of(lambda: create_app(kda, app, bad, source, destination, schema=HOTSPOTS_SCHEMA))
    assert error["Code"] == "CodeValidationException"
    assert f"line {line}, column {column}" in error["Message"], error["Message"]
    assert "windowSize must be a whole number from 100 to 1000" in error["Message"], error["Message"]
    create_app(kda, app, code, source, destination, schema=HOTSPOTS_SCHEMA)
    start(kda, app)
    rng = random.Random(9)
    data = []
    for _ in range(1200):
        if rng.random() < 0.2:
            data.append({"x": 2.0 + rng.random(), "y": 5.0 + rng.random(), "is_hot": "Y"})
        else:
            data.append({"x": rng.random() * 10, "y": rng.random() * 10, "is_hot": "N"})
    put(kinesis, source, data)
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(data), timeout_s=60.0)]
    assert [(r["x"], r["y"], r["is_hot"]) for r in rows] == [
        (pytest.approx(d["x"]), pytest.approx(d["y"]), d["is_hot"]) for d in data]
    for last in (len(data) - 1, 1050):
        got = json.loads(rows[last]["HOTSPOTS_RESULT"])["hotspots"]
        # The values as the application read them (its JSON parsing may round the last digit).
        window = [(r["x"], r["y"]) for r in rows[last - 999:last + 1]]
        expected = dbscan_hotspots(window, 0.2, 17)
        assert len(got) == len(expected) == 1, (got, expected)
        for g, e in zip(got, expected):
            assert g["minValues"] == e["minValues"] and g["maxValues"] == e["maxValues"]
            assert g["density"] == pytest.approx(e["density"])
        # The planted unit square at (2, 5) is the hotspot.
        assert 1.8 < got[0]["minValues"][0] < 2.2 and 2.8 < got[0]["maxValues"][0] < 3.2, got
        assert 4.8 < got[0]["minValues"][1] < 5.2 and 5.8 < got[0]["maxValues"][1] < 6.2, got
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")
    # And UpdateApplication.
    version = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationVersionId"]
    error = error_of(lambda: kda.update_application(
        ApplicationName=app, CurrentApplicationVersionId=version,
        ApplicationUpdate={"ApplicationCodeUpdate": code.replace("17)", "1001)")}))
    assert error["Code"] == "CodeValidationException"
    assert "minimumNumberOfPointsInAHotspot must be a whole number from 2 to 1000" in error["Message"], error


BLOOD_PRESSURE_SCHEMA = json_schema(
    [("Systolic", "INTEGER"), ("Diastolic", "INTEGER"), ("BloodPressureLevel", "VARCHAR(20)")])


def test_random_cut_forest_with_explanation_names_the_column_and_direction_of_planted_anomalies(kinesis, kda):
    (source, destination), app = source_and_destination(kinesis), unique("rcfx")
    # The first pump of KDA's blood pressure example, writing to the output directly.
    code = """CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
        "Systolic"                  INTEGER,
        "Diastolic"                 INTEGER,
        "BloodPressureLevel"        varchar(20),
        "ANOMALY_SCORE"             DOUBLE,
        "ANOMALY_EXPLANATION"       varchar(512));
CREATE OR REPLACE PUMP "STREAM_PUMP" AS
   INSERT INTO "DESTINATION_SQL_STREAM"
      SELECT STREAM "Systolic", "Diastolic", "BloodPressureLevel", ANOMALY_SCORE, ANOMALY_EXPLANATION
      FROM TABLE(RANDOM_CUT_FOREST_WITH_EXPLANATION(
              CURSOR(SELECT STREAM * FROM "SOURCE_SQL_STREAM_001"), 100, 256, 100000, 1, true));"""
    create_app(kda, app, code, source, destination, schema=BLOOD_PRESSURE_SCHEMA)
    start(kda, app)
    rng = random.Random(10)
    data = [{"Systolic": rng.randint(100, 120), "Diastolic": rng.randint(65, 80), "BloodPressureLevel": "NORMAL"}
            for _ in range(700)]
    # (row, column, direction): the other column stays normal.
    planted = [(400, "Diastolic", "HIGH"), (500, "Systolic", "LOW"), (600, "Systolic", "HIGH")]
    data[400]["Diastolic"], data[400]["BloodPressureLevel"] = 125, "HIGH"
    data[500]["Systolic"], data[500]["BloodPressureLevel"] = 70, "LOW"
    data[600]["Systolic"], data[600]["BloodPressureLevel"] = 170, "HIGH"
    put(kinesis, source, data)
    rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(data), timeout_s=60.0)]
    assert [(r["Systolic"], r["Diastolic"]) for r in rows] == [(d["Systolic"], d["Diastolic"]) for d in data]
    explanations = [json.loads(r["ANOMALY_EXPLANATION"]) for r in rows]
    # KDA: 0, LOW and strength 0 for the first subSampleSize rows while the model learns.
    for r, e in zip(rows[:256], explanations[:256]):
        assert r["ANOMALY_SCORE"] == 0
        assert e == {c: {"DIRECTION": "LOW", "STRENGTH": "0.0000", "ATTRIBUTION_SCORE": "0.0000"}
                     for c in ("Systolic", "Diastolic")}
    normal = [r["ANOMALY_SCORE"] for i, r in enumerate(rows) if i >= 256 and i not in (400, 500, 600)]
    for i, column, direction in planted:
        score, e = rows[i]["ANOMALY_SCORE"], explanations[i]
        assert score > 1.5 * max(normal), (i, score, max(normal))
        other = "Systolic" if column == "Diastolic" else "Diastolic"
        mine, theirs = float(e[column]["ATTRIBUTION_SCORE"]), float(e[other]["ATTRIBUTION_SCORE"])
        assert mine > 3 * theirs, (i, e)
        assert mine + theirs == pytest.approx(score, abs=2e-4), (i, e, score)
        assert e[column]["DIRECTION"] == direction, (i, e)
    for r, e in zip(rows[256:], explanations[256:]):
        total = sum(float(e[c]["ATTRIBUTION_SCORE"]) for c in ("Systolic", "Diastolic"))
        assert total == pytest.approx(r["ANOMALY_SCORE"], abs=2e-4)
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")
