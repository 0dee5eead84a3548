"""Stagger windows (`WINDOWED BY STAGGER`) across a kill -9 of the server, end to end: boto3
`kinesisanalytics` creates the application on Sluice, boto3 `kinesis` feeds records in timed
bursts, and the server is killed with SIGKILL while windows are open, right after a key's window
closed that had rows later than an open window's start.

Guards against: a restart that emits a stagger window a second time as a partial window (a replay
from the oldest open window re-reads rows of windows already emitted), loses an open window's
rows, or opens a key's later windows at other rows than an uninterrupted run; for a stagger pump
fed by a filtering pump and for one over the input itself. The expectation is computed here, in
plain Python, from the documented semantics and the arrival times GetRecords reports for the
records, never from an earlier output of the engine.
"""

import json
import pathlib
import shutil
import tempfile
import time

from conftest import SluiceProcess
from test_analytics import (ROLE, client, make_stream, metric_values, put, read_all, start, stream_arn,
                            wait_status)

SYM_RANGE_MS, QTY_RANGE_MS = 10_000, 4_000

PROGRAM = f"""
CREATE OR REPLACE STREAM "KEPT" ("sym" VARCHAR(8), "i" INTEGER);
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (
  "sym" VARCHAR(8), "n" BIGINT, "lo" INTEGER, "hi" INTEGER, "total" BIGINT);
CREATE OR REPLACE STREAM "BY_QTY" ("qty" INTEGER, "n" BIGINT, "lo" INTEGER, "hi" INTEGER, "total" BIGINT);
CREATE OR REPLACE PUMP "KEEP_PUMP" AS INSERT INTO "KEPT"
  SELECT STREAM "sym", "i" FROM "SOURCE_SQL_STREAM_001" WHERE "qty" < 9;
CREATE OR REPLACE PUMP "SYM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM "sym", COUNT(*), MIN("i"), MAX("i"), SUM("i") FROM "KEPT"
  WINDOWED BY STAGGER (PARTITION BY "sym" RANGE INTERVAL '{SYM_RANGE_MS // 1000}' SECOND);
CREATE OR REPLACE PUMP "QTY_PUMP" AS INSERT INTO "BY_QTY"
  SELECT STREAM "qty", COUNT(*), MIN("i"), MAX("i"), SUM("i") FROM "SOURCE_SQL_STREAM_001"
  WINDOWED BY STAGGER (PARTITION BY "qty" RANGE INTERVAL '{QTY_RANGE_MS // 1000}' SECOND);
"""

SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "sym", "Mapping": "$.sym", "SqlType": "VARCHAR(8)"},
        {"Name": "i", "Mapping": "$.i", "SqlType": "INTEGER"},
        {"Name": "qty", "Mapping": "$.qty", "SqlType": "INTEGER"},
    ],
}

# Bursts of keys and the pause after each (s). With 10-second windows per sym: B and C open in
# the first burst, A three seconds later; B takes rows after A opened; the fourth burst closes B
# and C while A stays open. The server is killed there. qty 9 rows are filtered out before the
# sym windows (but are a key of the qty windows).
BEFORE_KILL = [("BBBC", 3.0), ("AABB", 3.0), ("AADBB", 5.0), ("C", 0.0)]
AFTER_KILL = [("ABBDC", 3.0), ("BAD", 0.0)]


def burst(keys, first_i):
    return [{"sym": k, "i": first_i + n, "qty": 9 if (first_i + n) % 7 == 3 else (first_i + n) % 4 + 1}
            for n, k in enumerate(keys)]


def stagger(rows, range_ms, close_all=True):
    """Stagger windows over `rows` ((rowtime, key, i) in arrival order), as documented: a key's
    window opens at its first row and closes `range_ms` later, before any row at or past its end
    is taken; windows come out in closing order (end, then opening order). With `close_all`
    every window closes in the end (the engine closes idle ones by the clock); without, only
    those a later row closed. Returns (key, n, lo, hi, total) rows."""
    open_windows, out, seq = {}, [], 0

    def close_until(t):
        for key, w in sorted(open_windows.items(), key=lambda kv: (kv[1]["end"], kv[1]["seq"])):
            if w["end"] <= t:
                out.append((key, len(w["is"]), min(w["is"]), max(w["is"]), sum(w["is"])))
                del open_windows[key]

    for t, key, i in rows:
        close_until(t)
        if key not in open_windows:
            seq += 1
            open_windows[key] = {"end": t + range_ms, "seq": seq, "is": []}
        open_windows[key]["is"].append(i)
    if close_all:
        close_until(float("inf"))
    return out


def arrivals(kinesis, count):
    """(ROWTIME, record) of the input's records: ROWTIME is the arrival time, made
    non-decreasing."""
    rowtime, out = 0, []
    for r in read_all(kinesis, "src", count):
        rowtime = max(rowtime, round(r["ApproximateArrivalTimestamp"].timestamp() * 1000))
        out.append((rowtime, json.loads(r["Data"])))
    return out


def test_stagger_windows_survive_kill_9_without_repeating_or_moving_a_window():
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-stagger-"))
    data_dir = base / "data"
    server = SluiceProcess(data_dir)
    try:
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        for name in ("src", "dst", "qty"):
            make_stream(kinesis, name)
        kda.create_application(
            ApplicationName="stagger",
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
                {"Name": "BY_QTY",
                 "KinesisStreamsOutput": {"ResourceARN": stream_arn("qty"), "RoleARN": ROLE},
                 "DestinationSchema": {"RecordFormatType": "JSON"}},
            ],
        )
        start(kda, "stagger")
        sent = []
        for keys, pause in BEFORE_KILL:
            sent += burst(keys, len(sent) + 1)
            put(kinesis, "src", sent[-len(keys):])
            time.sleep(pause)

        # The last burst closed B's and C's first windows, B's with rows later than A's start,
        # while A's window stays open: the case a replay from A's start got wrong.
        stored = arrivals(kinesis, len(sent))
        kept = [(t, d["sym"], d["i"]) for t, d in stored if d["qty"] < 9]
        closed = stagger(kept, SYM_RANGE_MS, close_all=False)
        assert [w[0] for w in closed] == ["B", "C"], closed
        a_opened = min(t for t, sym, _ in kept if sym == "A")
        assert max(t for t, sym, _ in kept if sym == "B") >= a_opened
        assert a_opened + SYM_RANGE_MS > stored[-1][0], "A's window is open at the kill"
        rows = [json.loads(r["Data"]) for r in read_all(kinesis, "dst", len(closed), timeout_s=10.0)]
        assert [(r["sym"], r["n"], r["lo"], r["hi"], r["total"]) for r in rows] == closed
        # Let the runner commit the checkpoint after those rows, then kill it mid-window.
        time.sleep(1.0)
        server.proc.kill()
        server.proc.wait(timeout=30)

        server = SluiceProcess(data_dir)
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        wait_status(kda, "stagger", "RUNNING")
        for keys, pause in AFTER_KILL:
            sent += burst(keys, len(sent) + 1)
            put(kinesis, "src", sent[-len(keys):])
            time.sleep(pause)

        stored = arrivals(kinesis, len(sent))
        assert [d for _, d in stored] == sent
        by_sym = stagger([(t, d["sym"], d["i"]) for t, d in stored if d["qty"] < 9], SYM_RANGE_MS)
        by_qty = stagger([(t, d["qty"], d["i"]) for t, d in stored], QTY_RANGE_MS)
        # How many windows there are depends on how long the restart took (A's and D's first
        # windows take the rows after the kill only if it was quick), so the floors are the counts
        # any timing gives: B, C closed before the kill; A, D open at it; C's and B's next windows.
        # The five qty keys each open at least one window. The model, fed the arrival times, says
        # which windows exist; the assertions below check the output against it.
        assert len(by_sym) >= 6 and len(by_qty) >= 5, (by_sym, by_qty)
        # Every window closes within its range and the 1 s grace after the last record.
        rows = [json.loads(r["Data"]) for r in
                read_all(kinesis, "dst", len(by_sym), timeout_s=40.0, settle_s=3.0)]
        assert [(r["sym"], r["n"], r["lo"], r["hi"], r["total"]) for r in rows] == by_sym
        rows = [json.loads(r["Data"]) for r in
                read_all(kinesis, "qty", len(by_qty), timeout_s=20.0, settle_s=2.0)]
        assert [(r["qty"], r["n"], r["lo"], r["hi"], r["total"]) for r in rows] == by_qty
        metrics = metric_values(server.endpoint)
        assert metrics["analytics_snapshots_written_total"] >= 1
        assert metrics["analytics_snapshot_write_failures_total"] == 0
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)
