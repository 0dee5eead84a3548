"""Kinesis Data Analytics SQL throughput on one core, beside DuckDB and a bare JSON parse.

Writes RECORDS JSON lines (the stock-ticker rows of KDA's own examples, about 100 B each) to a
file, then runs two queries over them, each RUNS times, alternating engines:
  - filter + projection: the rows of one sector above a price, two columns kept;
  - tumbling-window aggregate: per ticker and 60 s window, COUNT, AVG, MIN, MAX of the price.
Sluice runs the KDA program with `sluice sql run --measure` (one thread, records already in
memory, output rows counted but not written), which also times a bare serde_json parse of the
same records on the same thread: the input decoder's own parser, the floor the program cannot
beat. DuckDB (threads=1) runs the same query with read_json over the same file into a temporary
table. Both are pinned to the same CPU (taskset). Row counts of the two engines must agree, or
the measurement stops.

ROWTIME: record i has ROWTIME i * STEP_MS in Sluice; DuckDB groups by the record's own `t`
field, which holds the same value.

Usage: SLUICE_BIN=target/release/sluice .venv/bin/python perf/analytics/measure.py OUT.json
Knobs: RECORDS=2000000 RUNS=3 CPU=0
"""

import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

RECORDS = int(os.environ.get("RECORDS", "2000000"))
RUNS = int(os.environ.get("RUNS", "3"))
CPU = os.environ.get("CPU", "0")
STEP_MS = 1
SECTORS = ["TECHNOLOGY", "ENERGY", "RETAIL", "FINANCIAL", "HEALTHCARE"]

SCHEMA = {
    "RecordFormat": {"RecordFormatType": "JSON",
                     "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "TICKER_SYMBOL", "Mapping": "$.ticker_symbol", "SqlType": "VARCHAR(4)"},
        {"Name": "SECTOR", "Mapping": "$.sector", "SqlType": "VARCHAR(16)"},
        {"Name": "CHANGE", "Mapping": "$.change", "SqlType": "REAL"},
        {"Name": "PRICE", "Mapping": "$.price", "SqlType": "REAL"},
        {"Name": "T", "Mapping": "$.t", "SqlType": "BIGINT"},
    ],
}
# KDA folds unquoted identifiers to upper case, so the columns are named in upper case (as in
# KDA's own stock-ticker examples) and the programs below use them unquoted.

QUERIES = {
    "filter_projection": {
        "sql": """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), price REAL);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM ticker_symbol, price FROM "SOURCE_SQL_STREAM_001"
  WHERE sector = 'TECHNOLOGY' AND price > 50;
""",
        "duckdb": "SELECT ticker_symbol, price FROM src WHERE sector = 'TECHNOLOGY' AND price > 50",
    },
    "tumbling_aggregate": {
        "sql": """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), n BIGINT,
  avg_price DOUBLE, min_price REAL, max_price REAL);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
  SELECT STREAM ticker_symbol, COUNT(*), AVG(price), MIN(price), MAX(price)
  FROM "SOURCE_SQL_STREAM_001"
  GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '60' SECOND);
""",
        "duckdb": "SELECT ticker_symbol, t // 60000 AS w, count(*), avg(price), min(price), max(price) "
                  "FROM src GROUP BY ticker_symbol, w",
    },
}


def write_records(path: pathlib.Path) -> int:
    rng = random.Random(7)
    tickers = ["".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.choice([3, 4])))
               for _ in range(200)]
    sector_of = {t: rng.choice(SECTORS) for t in tickers}
    size = 0
    with open(path, "w") as f:
        for i in range(RECORDS):
            ticker = rng.choice(tickers)
            line = json.dumps({"ticker_symbol": ticker, "sector": sector_of[ticker],
                               "change": round(rng.uniform(-5, 5), 2),
                               "price": round(rng.uniform(1, 200), 2), "t": i * STEP_MS},
                              separators=(",", ":")) + "\n"
            f.write(line)
            size += len(line) - 1
    return size


def run_sluice(sluice: str, program: pathlib.Path, schema: pathlib.Path, records: pathlib.Path) -> dict:
    out = subprocess.run(
        ["taskset", "-c", CPU, sluice, "sql", "run", str(program), "--input", str(records),
         "--schema", str(schema), "--step-ms", str(STEP_MS), "--output", "DESTINATION_SQL_STREAM",
         "--measure"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


DUCKDB_SCRIPT = r"""
import json, sys, time
import duckdb
path, query = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = 1")
columns = "{'ticker_symbol': 'VARCHAR', 'sector': 'VARCHAR', 'change': 'FLOAT', 'price': 'FLOAT', 't': 'BIGINT'}"
src = f"read_json('{path}', format = 'newline_delimited', columns = {columns})"
started = time.perf_counter()
con.execute(f"CREATE TEMP TABLE out AS WITH src AS (SELECT * FROM {src}) {query}")
seconds = time.perf_counter() - started
rows = con.execute("SELECT count(*) FROM out").fetchone()[0]
print(json.dumps({"seconds": seconds, "rows_out": rows, "version": duckdb.__version__}))
"""


def run_duckdb(records: pathlib.Path, query: str) -> dict:
    out = subprocess.run(["taskset", "-c", CPU, sys.executable, "-c", DUCKDB_SCRIPT, str(records), query],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    out_path = pathlib.Path(sys.argv[1])
    sluice = os.environ.get("SLUICE_BIN", "target/release/sluice")
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-analytics-perf-"))
    records = base / "records.jsonl"
    size = write_records(records)
    schema = base / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    result = {"records": RECORDS, "bytes": size, "runs": RUNS, "cpu": CPU, "queries": {}}
    for name, query in QUERIES.items():
        program = base / f"{name}.sql"
        program.write_text(query["sql"])
        runs = []
        for run in range(RUNS):
            order = ["sluice", "duckdb"] if run % 2 == 0 else ["duckdb", "sluice"]
            row = {}
            for engine in order:
                if engine == "sluice":
                    row["sluice"] = run_sluice(sluice, program, schema, records)
                else:
                    row["duckdb"] = run_duckdb(records, query["duckdb"])
            if row["sluice"]["rows_out"] != row["duckdb"]["rows_out"]:
                sys.exit(f"{name}: Sluice wrote {row['sluice']['rows_out']} rows, DuckDB "
                         f"{row['duckdb']['rows_out']}: the two queries do not agree")
            runs.append(row)
            print(f"{name} run {run + 1}: sluice {row['sluice']['program_seconds']:.3f} s "
                  f"(parse alone {row['sluice']['parse_seconds']:.3f} s), duckdb "
                  f"{row['duckdb']['seconds']:.3f} s, {row['sluice']['rows_out']} rows", flush=True)
        result["queries"][name] = {"sql": query["sql"].strip(), "duckdb": query["duckdb"], "runs": runs}
        result["duckdb_version"] = runs[0]["duckdb"]["version"]
    out_path.write_text(json.dumps(result, indent=1))
    records.unlink()


if __name__ == "__main__":
    main()
