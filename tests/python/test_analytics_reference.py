"""Kinesis Data Analytics reference data end to end: boto3 puts a reference object into a real
S3-compatible server (s3s-fs), `kinesisanalytics` adds it to an application as a reference data
source, the application joins its input stream with the in-application table, and every
result is compared with the same join run by DuckDB over the same records and the same object.

Guards against: a join that drops, duplicates or mismatches rows; a LEFT JOIN that loses the
stream rows with no table row; a reference object that does not parse stopping the application
or vanishing without a trace in `error_stream`; a running application that keeps its old table
after UpdateApplication; reference objects that cannot be read (missing, over the size bound)
leaving an application that looks RUNNING; DescribeApplication shapes and errors that differ
from KDA's (botocore's kinesisanalytics 2015-08-14 model).
"""

import csv
import io
import json
import pathlib
import shutil
import tempfile
import time

import duckdb
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT_ID, REGION
from firehose_support import S3sFs, start_sluice
from test_analytics import ROLE, client, create_app, make_stream, put, read_all, start, trades, unique, wait_status

BUCKET = "kda-reference"
REFERENCE_BYTES_MAX = 64 * 1024

COMPANIES_SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "CSV",
        "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "ticker", "SqlType": "VARCHAR(8)"},
        {"Name": "company", "SqlType": "VARCHAR(32)"},
        {"Name": "min_qty", "SqlType": "INTEGER"},
    ],
}

# ORCL is not in the table (a LEFT JOIN miss); IBM has two rows (the join fans out).
COMPANIES = [("AMZN", "Amazon", 10), ("IBM", "IBM Corp", 1), ("IBM", "Big Blue", 50), ("MSFT", "Microsoft", 30)]

JOIN_PROGRAM = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("sym" VARCHAR(8), "company" VARCHAR(32), "qty" INTEGER);
CREATE OR REPLACE PUMP "ENRICH" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM s."sym", c."company", s."qty"
  FROM "SOURCE_SQL_STREAM_001" AS s LEFT JOIN "companies" AS c
    ON s."sym" = c."ticker" AND s."qty" >= c."min_qty";
"""


@pytest.fixture(scope="module")
def env():
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-ref-"))
    s3 = S3sFs(base / "s3", base / "s3s-fs.log")
    server = None
    try:
        server = start_sluice(base / "data", s3,
                              extra_args=["--analytics-reference-bytes-max", str(REFERENCE_BYTES_MAX)])
        s3_client = s3.client()
        s3_client.create_bucket(Bucket=BUCKET)
        yield {
            "s3": s3_client,
            "kinesis": client("kinesis", server.endpoint),
            "kda": client("kinesisanalytics", server.endpoint),
        }
    finally:
        if server is not None:
            server.kill()
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)


def csv_object(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def reference_source(key, schema=COMPANIES_SCHEMA, table="companies"):
    return {
        "TableName": table,
        "S3ReferenceDataSource": {"BucketARN": f"arn:aws:s3:::{BUCKET}", "FileKey": key, "ReferenceRoleARN": ROLE},
        "ReferenceSchema": schema,
    }


def add_reference(kda, name, source):
    version = kda.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationVersionId"]
    kda.add_application_reference_data_source(
        ApplicationName=name, CurrentApplicationVersionId=version, ReferenceDataSource=source)


def error_of(call):
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["Error"]


def duckdb_join(data, companies):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, sym VARCHAR, qty INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, r["sym"], r["qty"]) for i, r in enumerate(data)])
    con.execute("CREATE TABLE c (line INTEGER, ticker VARCHAR, company VARCHAR, min_qty INTEGER)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?, ?)", [(n, *row) for n, row in enumerate(companies)])
    return con.execute(
        """SELECT t.sym, c.company, t.qty FROM t LEFT JOIN c ON t.sym = c.ticker AND t.qty >= c.min_qty
           ORDER BY t.i, c.line"""
    ).fetchall()


def test_a_left_join_with_an_s3_reference_table_equals_duckdb_and_describe_has_kda_shapes(env):
    s3, kinesis, kda = env["s3"], env["kinesis"], env["kda"]
    key = "reference/companies.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=csv_object(COMPANIES))
    source, destination, app = unique("ref-in"), unique("ref-out"), unique("ref-join")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)

    # The code names a table the application does not have yet: CodeValidationException.
    error = error_of(lambda: create_app(kda, app, JOIN_PROGRAM, source, destination))
    assert error["Code"] == "CodeValidationException", error
    create_app(kda, app, None, source, destination)
    add_reference(kda, app, reference_source(key))
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=2,
                           ApplicationUpdate={"ApplicationCodeUpdate": JOIN_PROGRAM})

    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ApplicationVersionId"] == 3
    [reference] = detail["ReferenceDataSourceDescriptions"]
    assert reference == {
        "ReferenceId": reference["ReferenceId"],
        "TableName": "companies",
        "S3ReferenceDataSourceDescription": {
            "BucketARN": f"arn:aws:s3:::{BUCKET}", "FileKey": key, "ReferenceRoleARN": ROLE,
        },
        "ReferenceSchema": COMPANIES_SCHEMA,
    }
    ids = [detail["InputDescriptions"][0]["InputId"], detail["OutputDescriptions"][0]["OutputId"],
           reference["ReferenceId"]]
    assert len(set(ids)) == 3 and all(i.startswith("1.") for i in ids), ids

    start(kda, app)
    data = trades(200, seed=7)
    put(kinesis, source, data)
    expected = duckdb_join(data, COMPANIES)
    assert any(company is None for _, company, _ in expected)
    assert len(expected) > len(data)
    got = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(expected), settle_s=1.0)]
    assert [(r["sym"], r["company"], r["qty"]) for r in got] == expected

    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


def test_reference_api_validation_and_errors_follow_kda(env):
    kinesis, kda = env["kinesis"], env["kda"]
    source, destination, app = unique("ref-in"), unique("ref-out"), unique("ref-api")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    create_app(kda, app, None, source, destination)
    add_reference(kda, app, reference_source("a.csv"))

    second = error_of(lambda: add_reference(kda, app, reference_source("b.csv", table="other")))
    assert second["Code"] == "InvalidArgumentException"
    stale = error_of(lambda: kda.add_application_reference_data_source(
        ApplicationName=app, CurrentApplicationVersionId=1, ReferenceDataSource=reference_source("b.csv")))
    assert stale["Code"] == "ConcurrentModificationException"
    missing = error_of(lambda: kda.add_application_reference_data_source(
        ApplicationName="no-such-app", CurrentApplicationVersionId=1, ReferenceDataSource=reference_source("b.csv")))
    assert missing["Code"] == "ResourceNotFoundException"

    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    reference_id = detail["ReferenceDataSourceDescriptions"][0]["ReferenceId"]
    bad_bucket = error_of(lambda: kda.update_application(
        ApplicationName=app, CurrentApplicationVersionId=2, ApplicationUpdate={"ReferenceDataSourceUpdates": [
            {"ReferenceId": reference_id, "S3ReferenceDataSourceUpdate": {"BucketARNUpdate": "arn:aws:s3:::"}}]}))
    assert bad_bucket["Code"] == "InvalidArgumentException"
    unknown = error_of(lambda: kda.update_application(
        ApplicationName=app, CurrentApplicationVersionId=2, ApplicationUpdate={"ReferenceDataSourceUpdates": [
            {"ReferenceId": "9.9", "TableNameUpdate": "x"}]}))
    assert unknown["Code"] == "ResourceNotFoundException"
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=2, ApplicationUpdate={
        "ReferenceDataSourceUpdates": [{"ReferenceId": reference_id, "TableNameUpdate": "firms",
                                        "S3ReferenceDataSourceUpdate": {"FileKeyUpdate": "c.csv"}}]})
    [reference] = kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ReferenceDataSourceDescriptions"]
    assert (reference["TableName"], reference["S3ReferenceDataSourceDescription"]["FileKey"]) == ("firms", "c.csv")

    gone = error_of(lambda: kda.delete_application_reference_data_source(
        ApplicationName=app, CurrentApplicationVersionId=3, ReferenceId="9.9"))
    assert gone["Code"] == "ResourceNotFoundException"
    kda.delete_application_reference_data_source(ApplicationName=app, CurrentApplicationVersionId=3,
                                                 ReferenceId=reference_id)
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ReferenceDataSourceDescriptions"] == []
    assert detail["ApplicationVersionId"] == 4


def test_a_reference_object_that_does_not_parse_sends_its_records_to_error_stream_and_updates_reload(env):
    s3, kinesis, kda = env["s3"], env["kinesis"], env["kda"]
    schema = {
        "RecordFormat": {"RecordFormatType": "JSON",
                         "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
        "RecordEncoding": "UTF-8",
        "RecordColumns": [
            {"Name": "ticker", "Mapping": "$.t", "SqlType": "VARCHAR(8)"},
            {"Name": "company", "Mapping": "$.name", "SqlType": "VARCHAR(32)"},
            {"Name": "min_qty", "Mapping": "$.min", "SqlType": "INTEGER"},
        ],
    }
    s3.put_object(Bucket=BUCKET, Key="bad.json", Body=b'{"t":"AMZN","name":"Amazon","min":1}\n'
                                                       b'{"t":"IBM","name":"IBM Corp","min":"one"}\n'
                                                       b"this is not JSON\n")
    source, destination, errors, app = unique("ref-in"), unique("ref-out"), unique("ref-err"), unique("ref-bad")
    for stream in (source, destination, errors):
        make_stream(kinesis, stream)
    create_app(kda, app, None, source, destination, error_destination=errors)
    add_reference(kda, app, reference_source("bad.json", schema=schema))
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=2,
                           ApplicationUpdate={"ApplicationCodeUpdate": JOIN_PROGRAM})
    start(kda, app)
    put(kinesis, source, [{"sym": "AMZN", "px": 1.0, "qty": 5}, {"sym": "IBM", "px": 1.0, "qty": 5}])
    got = [json.loads(r["Data"]) for r in read_all(kinesis, destination, 2, settle_s=0.5)]
    # IBM's table row did not parse, so the LEFT JOIN finds nothing for it.
    assert got == [{"sym": "AMZN", "company": "Amazon", "qty": 5}, {"sym": "IBM", "company": None, "qty": 5}]
    err = [json.loads(r["Data"]) for r in read_all(kinesis, errors, 2, settle_s=0.5)]
    assert [e["ERROR_NAME"] for e in err] == ["Coercion_error", "Invalid_JSON"]
    assert err[0]["MESSAGE"].startswith('Reference table "companies", line 2:'), err[0]
    assert bytes.fromhex(err[1]["DATA_ROW"]) == b"this is not JSON"
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationStatus"] == "RUNNING"

    # UpdateApplication of the running application loads the table again, from the new object.
    s3.put_object(Bucket=BUCKET, Key="good.json", Body=b'{"t":"IBM","name":"IBM Corp","min":1}\n')
    reference_id = kda.describe_application(
        ApplicationName=app)["ApplicationDetail"]["ReferenceDataSourceDescriptions"][0]["ReferenceId"]
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=3, ApplicationUpdate={
        "ReferenceDataSourceUpdates": [{"ReferenceId": reference_id,
                                        "S3ReferenceDataSourceUpdate": {"FileKeyUpdate": "good.json"}}]})
    # As on AWS, the application is UPDATING until the new version runs, and takes no other
    # change meanwhile.
    assert kda.describe_application(ApplicationName=app)["ApplicationDetail"]["ApplicationStatus"] == "UPDATING"
    with pytest.raises(kda.exceptions.ResourceInUseException):
        kda.update_application(ApplicationName=app, CurrentApplicationVersionId=4, ApplicationUpdate={
            "ReferenceDataSourceUpdates": [{"ReferenceId": reference_id,
                                            "S3ReferenceDataSourceUpdate": {"FileKeyUpdate": "good.json"}}]})
    assert wait_status(kda, app, "RUNNING")["ApplicationVersionId"] == 4
    # The update takes effect when the runner sees the new version; probe until a row shows it.
    seen = 2
    deadline = time.monotonic() + 20
    while True:
        put(kinesis, source, [{"sym": "IBM", "px": 1.0, "qty": 7}])
        rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, seen + 1)]
        seen = len(rows)
        if rows[-1] == {"sym": "IBM", "company": "IBM Corp", "qty": 7}:
            break
        assert rows[-1] == {"sym": "IBM", "company": None, "qty": 7}
        assert time.monotonic() < deadline, "the running application never loaded the new object"
        time.sleep(0.3)
    kda.stop_application(ApplicationName=app)
    wait_status(kda, app, "READY")


@pytest.mark.parametrize("case", ["missing", "too large"])
def test_a_reference_object_that_cannot_be_loaded_returns_the_application_to_ready(env, case):
    s3, kinesis, kda = env["s3"], env["kinesis"], env["kda"]
    key = f"{case.replace(' ', '-')}.csv"
    if case == "too large":
        rows = [(f"T{i}", "x" * 40, i) for i in range(REFERENCE_BYTES_MAX // 40)]
        body = csv_object(rows)
        assert len(body) > REFERENCE_BYTES_MAX
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    source, destination, app = unique("ref-in"), unique("ref-out"), unique("ref-fail")
    make_stream(kinesis, source)
    make_stream(kinesis, destination)
    create_app(kda, app, None, source, destination)
    add_reference(kda, app, reference_source(key))
    kda.update_application(ApplicationName=app, CurrentApplicationVersionId=2,
                           ApplicationUpdate={"ApplicationCodeUpdate": JOIN_PROGRAM})
    start(kda, app, status="READY")


def test_discover_input_schema_reads_the_first_lines_of_an_s3_object(env):
    """DiscoverInputSchema with S3Configuration (what the console uses for reference data):
    the object's lines are sampled, and the schema matches what the same records give from a
    stream. A missing object or a bad bucket ARN is a clear error, not a hang."""
    s3, kda = env["s3"], env["kda"]
    s3.put_object(Bucket=BUCKET, Key="discover/companies.csv", Body=csv_object(COMPANIES))
    lines = [json.dumps({"ticker": t, "company": c, "min_qty": q}) for t, c, q in COMPANIES]
    s3.put_object(Bucket=BUCKET, Key="discover/companies.json", Body=("\n".join(lines) + "\n").encode())
    bucket_arn = f"arn:aws:s3:::{BUCKET}"

    reply = kda.discover_input_schema(S3Configuration={
        "RoleARN": ROLE, "BucketARN": bucket_arn, "FileKey": "discover/companies.csv"})
    schema = reply["InputSchema"]
    assert schema["RecordFormat"]["RecordFormatType"] == "CSV"
    assert [(c["Name"], c["SqlType"]) for c in schema["RecordColumns"]] == [
        ("COL_1", "VARCHAR(4)"), ("COL_2", "VARCHAR(16)"), ("COL_3", "INTEGER")]
    assert reply["ParsedInputRecords"] == [[t, c, str(q)] for t, c, q in COMPANIES]
    assert reply["RawInputRecords"] == [f"{t},{c},{q}" for t, c, q in COMPANIES]

    reply = kda.discover_input_schema(S3Configuration={
        "RoleARN": ROLE, "BucketARN": bucket_arn, "FileKey": "discover/companies.json"})
    schema = reply["InputSchema"]
    assert schema["RecordFormat"]["RecordFormatType"] == "JSON"
    assert [(c["Name"], c["Mapping"], c["SqlType"]) for c in schema["RecordColumns"]] == [
        ("ticker", "$.ticker", "VARCHAR(4)"), ("company", "$.company", "VARCHAR(16)"),
        ("min_qty", "$.min_qty", "INTEGER")]
    assert reply["RawInputRecords"] == lines

    # The discovered schema is one an application accepts as its reference data schema.
    app = unique("kda-discovered")
    kda.create_application(ApplicationName=app)
    kda.add_application_reference_data_source(
        ApplicationName=app, CurrentApplicationVersionId=1,
        ReferenceDataSource={
            "TableName": "companies",
            "S3ReferenceDataSource": {"BucketARN": bucket_arn, "FileKey": "discover/companies.json",
                                      "ReferenceRoleARN": ROLE},
            "ReferenceSchema": schema})
    described = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert described["ReferenceDataSourceDescriptions"][0]["ReferenceSchema"]["RecordColumns"] == schema["RecordColumns"]

    missing = error_of(lambda: kda.discover_input_schema(S3Configuration={
        "RoleARN": ROLE, "BucketARN": bucket_arn, "FileKey": "discover/nothing-here.csv"}))
    assert missing["Code"] == "InvalidArgumentException"
    assert "nothing-here.csv" in missing["Message"]
    bad_arn = error_of(lambda: kda.discover_input_schema(S3Configuration={
        "RoleARN": ROLE, "BucketARN": "not-an-arn", "FileKey": "discover/companies.csv"}))
    assert bad_arn["Code"] == "InvalidArgumentException"
    s3.put_object(Bucket=BUCKET, Key="discover/empty.csv", Body=b"\n\n")
    empty = error_of(lambda: kda.discover_input_schema(S3Configuration={
        "RoleARN": ROLE, "BucketARN": bucket_arn, "FileKey": "discover/empty.csv"}))
    assert empty["Code"] == "UnableToDetectSchemaException"
