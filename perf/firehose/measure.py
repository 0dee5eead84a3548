"""Firehose DirectPut → S3 throughput and data freshness, measured end to end.

Starts s3s-fs and a Sluice (SLUICE_BIN, a release build for meaningful numbers), creates one
delivery stream per compression format (5 MiB / 1 s buffering hints), and has producer threads
(boto3) send PutRecordBatch calls of 500 JSON records of about 1 KiB for a fixed time. Each
record carries its send time; once every acknowledged record is in the bucket, each record's
freshness is the time its object was written (the object file's mtime in s3s-fs's directory)
minus its send time. Prints acknowledged records/s and MB/s, delivered MB/s (first send to last
object), freshness p50/p99, and the objects written.

Usage: SLUICE_BIN=target/release/sluice .venv/bin/python perf/firehose/measure.py [seconds]
"""

import gzip
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

import cramjam

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "python"))
from conftest import ACCOUNT_ID  # noqa: E402
from firehose_support import S3sFs, firehose_client, start_sluice, wait_active  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 15
PRODUCERS = 4
BATCH = 500
PAD = "x" * 960


def run(format_name, base, s3s, server):
    firehose = firehose_client(server.endpoint)
    bucket = f"perf-{format_name.lower()}"
    s3s.client().create_bucket(Bucket=bucket)
    name = f"perf-{format_name.lower()}"
    firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": f"arn:aws:iam::{ACCOUNT_ID}:role/r", "BucketARN": f"arn:aws:s3:::{bucket}",
        "CompressionFormat": format_name, "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 1}})
    wait_active(firehose, name)
    sent = []
    lock = threading.Lock()
    start = time.time()

    def produce(worker):
        client = firehose_client(server.endpoint)
        n = 0
        mine = 0
        while time.time() - start < SECONDS:
            now = time.time()
            records = [json.dumps({"w": worker, "n": n + i, "t": now, "p": PAD}).encode() + b"\n" for i in range(BATCH)]
            out = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in records])
            assert out["FailedPutCount"] == 0
            n += BATCH
            mine += sum(len(r) for r in records)
        with lock:
            sent.append((n, mine))

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked_s = time.time() - start
    records_total = sum(n for n, _ in sent)
    bytes_total = sum(b for _, b in sent)
    root = pathlib.Path(s3s.root) / bucket
    deadline = time.time() + 120
    while True:
        files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
        seen, fresh, last_mtime = 0, [], 0.0
        for path in files:
            body = path.read_bytes()
            raw = {"GZIP": gzip.decompress, "ZSTD": lambda b: bytes(cramjam.zstd.decompress(b))}[format_name](body)
            mtime = path.stat().st_mtime
            last_mtime = max(last_mtime, mtime)
            for line in raw.splitlines():
                seen += 1
                fresh.append(mtime - json.loads(line)["t"])
        if seen >= records_total or time.time() > deadline:
            break
        time.sleep(0.5)
    fresh.sort()
    print(f"{format_name}: {records_total} records ({bytes_total / 1e6:.1f} MB) acknowledged in {acked_s:.1f} s: "
          f"{records_total / acked_s:,.0f} records/s, {bytes_total / 1e6 / acked_s:.1f} MB/s; "
          f"delivered {seen} records in {len(files)} objects, {bytes_total / 1e6 / (last_mtime - start):.1f} MB/s "
          f"first send to last object; freshness p50 {statistics.median(fresh):.2f} s, "
          f"p99 {fresh[int(len(fresh) * 0.99)]:.2f} s")


def main():
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-firehose-perf-"))
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s)
    try:
        for format_name in ("GZIP", "ZSTD"):
            run(format_name, base, s3s, server)
    finally:
        server.kill()
        s3s.stop()


if __name__ == "__main__":
    os.environ.setdefault("SLUICE_BIN", "target/release/sluice")
    main()
