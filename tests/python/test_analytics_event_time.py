"""Event-time windows (`WINDOWED BY EVENT TIME`, ours, not KDA's) end to end: boto3
`kinesisanalytics` creates the application on Sluice, boto3 `kinesis` feeds out-of-order
records, and the server is killed with SIGKILL in the middle of open windows.

Guards against: windows that close by arrival time instead of by watermark, out-of-order rows
within the allowed lateness counted in the wrong window, too-late rows silently dropped instead of
sent to error_stream, and a restart that loses the watermark (reopening and emitting a window a
second time) or an open window's rows. The expectation is computed here, in plain Python, from
the documented semantics and the records sent, never from an earlier output of the engine.
"""

import datetime
import json
import pathlib
import random
import shutil
import tempfile
import time

from conftest import SluiceProcess
from test_analytics import ROLE, client, make_stream, put, read_all, start, stream_arn, wait_status

WIDTH_MS, DELAY_MS, LATENESS_MS = 10_000, 2_000, 3_000

PROGRAM = f"""
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("w" TIMESTAMP, "sym" VARCHAR(8), "n" BIGINT, "q" BIGINT);
CREATE OR REPLACE PUMP "EVENT_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM STEP("SOURCE_SQL_STREAM_001"."evt" BY INTERVAL '{WIDTH_MS // 1000}' SECOND), "sym", COUNT(*), SUM("qty")
  FROM "SOURCE_SQL_STREAM_001"
  GROUP BY "sym", STEP("SOURCE_SQL_STREAM_001"."evt" BY INTERVAL '{WIDTH_MS // 1000}' SECOND)
  WINDOWED BY EVENT TIME ("evt") WATERMARK INTERVAL '{DELAY_MS // 1000}' SECOND
    ALLOWED LATENESS INTERVAL '{LATENESS_MS // 1000}' SECOND;
"""

SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
        {"Name": "evt", "Mapping": "$.t", "SqlType": "TIMESTAMP"},
        {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"},
    ],
}


def records(n, seed):
    """Event times that advance 400 ms a record with jitter, every 13th one far behind."""
    rng = random.Random(seed)
    base = 1_700_000_000_000
    out = []
    for i in range(n):
        t = base + i * 400 + rng.randint(-6_000, 1_000)
        if i % 13 == 12:
            t -= 25_000
        out.append({"sym": rng.choice(["A", "B", "C"]), "t": t, "qty": rng.randint(1, 9)})
    out[40]["t"] = None
    return out


def expected(rows):
    """The documented semantics, row by row: (closed windows as (start, sym, n, q), late rows)."""
    windows, emitted, late = {}, [], 0
    max_event = None
    for row in rows:
        t = row["t"]
        if t is None:
            late += 1
            continue
        start = t // WIDTH_MS * WIDTH_MS
        watermark = None if max_event is None else max_event - DELAY_MS
        if watermark is not None and start + WIDTH_MS + LATENESS_MS <= watermark:
            late += 1
            continue
        group = windows.setdefault(start, {}).setdefault(row["sym"], [0, 0])
        group[0] += 1
        group[1] += row["qty"]
        max_event = t if max_event is None else max(max_event, t)
        watermark = max_event - DELAY_MS
        for s in sorted(windows):
            if s + WIDTH_MS + LATENESS_MS <= watermark:
                emitted.extend((s, sym, n, q) for sym, (n, q) in windows.pop(s).items())
    return emitted, late


def ms(text):
    return round(datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
                 .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def test_event_time_windows_survive_kill_9_with_late_rows_in_error_stream():
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-et-"))
    data_dir = base / "data"
    server = SluiceProcess(data_dir)
    try:
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        for name in ("src", "dst", "err"):
            make_stream(kinesis, name)
        kda.create_application(
            ApplicationName="event-time",
            ApplicationCode=PROGRAM,
            Inputs=[{
                "NamePrefix": "SOURCE_SQL_STREAM",
                "KinesisStreamsInput": {"ResourceARN": stream_arn("src"), "RoleARN": ROLE},
                "InputSchema": SCHEMA,
            }],
            Outputs=[
                {"Name": "DESTINATION_SQL_STREAM",
                 "KinesisStreamsOutput": {"ResourceARN": stream_arn("dst"), "RoleARN": ROLE},
                 "DestinationSchema": {"RecordFormatType": "JSON"}},
                {"Name": "error_stream",
                 "KinesisStreamsOutput": {"ResourceARN": stream_arn("err"), "RoleARN": ROLE},
                 "DestinationSchema": {"RecordFormatType": "JSON"}},
            ],
        )
        start(kda, "event-time")
        data = records(150, seed=10)
        put(kinesis, "src", data[:70])
        # Let the application read, emit and commit; windows stay open (no newer events).
        time.sleep(2.0)
        server.proc.kill()
        server.proc.wait(timeout=30)
        server = SluiceProcess(data_dir)
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        wait_status(kda, "event-time", "RUNNING")
        put(kinesis, "src", data[70:])

        windows, late = expected(data)
        assert late >= 5 and len(windows) >= 15
        got = read_all(kinesis, "dst", len(windows), timeout_s=30.0, settle_s=3.0)
        rows = [json.loads(r["Data"]) for r in got]
        actual = sorted((ms(r["w"]), r["sym"], r["n"], r["q"]) for r in rows)
        assert actual == sorted(windows)

        errors = [json.loads(r["Data"]) for r in read_all(kinesis, "err", late, timeout_s=30.0, settle_s=1.0)]
        assert len(errors) == late
        messages = sorted(e["MESSAGE"].split(":")[0] for e in errors)
        assert messages.count("late row") == late - 1
        assert all(e["PUMP_NAME"] == "EVENT_PUMP" for e in errors)
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)
