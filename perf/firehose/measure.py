"""Firehose DirectPut → S3: sustained throughput, data freshness, and the limits beside them.

Starts s3s-fs (pinned to CPU 1) and a Sluice (SLUICE_BIN, a release build; pinned to CPU 0, one
shard core and its service core, which compresses and delivers). For each of GZIP and ZSTD:

- live: PRODUCERS boto3 threads in this process (CPU 1) send PutRecordBatch calls of 500 JSON
  records of about 1 KiB for SECONDS s into a delivery stream with 5 MiB / 1 s buffering hints.
  Each record carries its send time; once every acknowledged record is in the bucket, a record's
  freshness is its object's write time (the file's mtime in s3s-fs's directory) minus its send
  time. Reported: acknowledged records/s and MB/s, freshness p50/p99.
- backlog: the same producers fill a delivery stream with BACKLOG_MB of records while s3s-fs
  is stopped (delivery fails and retries, nothing is lost), then s3s-fs starts again on the
  same port and directory. The drain rate is the data of every object after the first divided by the time
  from the first object to the last: delivery with work always waiting, which the producers
  alone cannot show (they are slower than delivery).
- limits, measured in the same run on the same CPUs: the compressor alone on CPU 0
  (`sluice-perf compress`, the function delivery calls, 5 MiB objects of the same records), and
  s3s-fs's PUT rate for objects of the size the backlog phase wrote, one at a time from CPU 0
  through the S3 client delivery uses (`sluice-perf s3-put`; delivery sends one object at a
  time per shard).

Usage: SLUICE_BIN=target/release/sluice SLUICE_PERF_BIN=target/release/sluice-perf \
       .venv/bin/python perf/firehose/measure.py OUT.json
Knobs: FIREHOSE_SECONDS=15 FIREHOSE_BACKLOG_MB=100 FIREHOSE_LIMIT_SECONDS=5 FIREHOSE_PRODUCERS=3
"""

import base64
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import cramjam
import gzip

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "python"))
from conftest import ACCOUNT_ID  # noqa: E402
from firehose_support import S3sFs, firehose_client, start_sluice, wait_active  # noqa: E402

SECONDS = float(os.environ.get("FIREHOSE_SECONDS", "15"))
BACKLOG_MB = float(os.environ.get("FIREHOSE_BACKLOG_MB", "100"))
LIMIT_SECONDS = float(os.environ.get("FIREHOSE_LIMIT_SECONDS", "5"))
PRODUCERS = int(os.environ.get("FIREHOSE_PRODUCERS", "3"))
BATCH = 500
DECOMPRESS = {"GZIP": gzip.decompress, "ZSTD": lambda b: bytes(cramjam.zstd.decompress(b))}


def record_tails(count=16384):
    """Record bodies after the varying head: request-log-like JSON, about 1 KiB, that
    compresses roughly as real logs do (repeated keys and words, a random token)."""
    rng = random.Random(3)
    words = ["GET", "POST", "/api/v1/items", "/api/v1/orders", "/static/app.js", "Mozilla/5.0",
             "(X11; Linux x86_64)", "AppleWebKit/537.36", "Chrome/131.0", "Safari/537.36",
             "eu-west-1", "us-east-1", "cache-miss", "cache-hit", "200", "404", "503"]
    tails = []
    for _ in range(count):
        fields = {
            "user": f"user-{rng.randrange(100000)}",
            "path": f"/api/v1/items/{rng.randrange(10**6)}",
            "status": rng.choice([200, 200, 200, 404, 503]),
            "bytes": rng.randrange(100, 100000),
            "agent": " ".join(rng.choice(words) for _ in range(12)),
            "token": base64.b64encode(rng.randbytes(96)).decode(),
        }
        text = json.dumps(fields, separators=(",", ":"))[1:-1]
        pad = " ".join(rng.choice(words) for _ in range(120))[: max(0, 960 - len(text))]
        tails.append(text + f',"note":"{pad}"}}')
    return tails


TAILS = record_tails()


def make_record(now, worker, n):
    """One record: its send time first (freshness reads it back), a random request id that no
    other record shares, then a tail. Each worker starts at its own place in the pool, so no
    two workers send the same tails together: an object (about 5,000 records) holds no tail
    twice, and a compressor with a long window (ZSTD) finds no whole repeated records."""
    rid = base64.b64encode(os.urandom(18)).decode()
    tail = TAILS[(n + worker * 5003) % len(TAILS)]
    return f'{{"t":{now:.6f},"w":{worker},"n":{n},"rid":"{rid}",' + tail + "\n"


def produce(endpoint, name, stop, sent, lock, worker):
    """Sends batches until `stop()`; appends (records, bytes) to `sent`."""
    client = firehose_client(endpoint)
    n = records = size = 0
    while not stop(records, size):
        now = time.time()
        batch = []
        for i in range(BATCH):
            batch.append(make_record(now, worker, n + i).encode())
        out = client.put_record_batch(DeliveryStreamName=name, Records=[{"Data": r} for r in batch])
        assert out["FailedPutCount"] == 0, out
        n += BATCH
        records += BATCH
        size += sum(len(r) for r in batch)
    with lock:
        sent.append((records, size))


def run_producers(endpoint, name, stop):
    sent, lock = [], threading.Lock()
    threads = [threading.Thread(target=produce, args=(endpoint, name, stop, sent, lock, w))
               for w in range(PRODUCERS)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return start, time.time() - start, sum(r for r, _ in sent), sum(b for _, b in sent)


def objects_of(root, format_name, records_total, deadline_s=180):
    """Waits until the bucket's objects hold `records_total` records; returns
    [(mtime, compressed bytes, [send times])] sorted by mtime."""
    deadline = time.time() + deadline_s
    while True:
        objects, seen = [], 0
        for path in (p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            raw = DECOMPRESS[format_name](path.read_bytes())
            times = [float(line[5:line.index(b",")]) for line in raw.splitlines()]
            seen += len(times)
            objects.append((path.stat().st_mtime, path.stat().st_size, len(raw), times))
        if seen >= records_total:
            return sorted(objects)
        if time.time() > deadline:
            sys.exit(f"only {seen} of {records_total} acknowledged records were delivered in {deadline_s} s")
        time.sleep(0.5)


def create(firehose, name, bucket, format_name):
    firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration={
        "RoleARN": f"arn:aws:iam::{ACCOUNT_ID}:role/r", "BucketARN": f"arn:aws:s3:::{bucket}",
        "CompressionFormat": format_name, "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 1}})
    wait_active(firehose, name)


def live(format_name, s3s, server):
    firehose = firehose_client(server.endpoint)
    name = bucket = f"live-{format_name.lower()}"
    s3s.client().create_bucket(Bucket=bucket)
    create(firehose, name, bucket, format_name)
    t0 = time.time()
    start, seconds, records, size = run_producers(server.endpoint, name,
                                                  lambda r, b: time.time() - t0 >= SECONDS)
    objects = objects_of(pathlib.Path(s3s.root) / bucket, format_name, records)
    fresh = sorted(mtime - t for mtime, _, _, times in objects for t in times)
    return {"records": records, "bytes": size, "seconds": seconds,
            "records_per_s": records / seconds, "mb_per_s": size / 1e6 / seconds,
            "objects": len(objects),
            "freshness_p50_s": statistics.median(fresh),
            "freshness_p99_s": fresh[min(len(fresh) - 1, int(len(fresh) * 0.99))]}


def backlog(format_name, s3s, server):
    """Fills a delivery stream while s3s-fs is down (delivery retries), then starts s3s-fs
    again on the same port and directory; returns the result and the new s3s-fs."""
    firehose = firehose_client(server.endpoint)
    name = bucket = f"backlog-{format_name.lower()}"
    s3s.client().create_bucket(Bucket=bucket)
    create(firehose, name, bucket, format_name)
    root, port = s3s.root, s3s.port
    s3s.stop()
    per_producer = BACKLOG_MB * 1e6 / PRODUCERS
    _, seconds, records, size = run_producers(server.endpoint, name,
                                              lambda r, b: b >= per_producer)
    s3s = S3sFs(root, root.parent / f"s3s-fs-{format_name.lower()}.log", port=port)
    pin(s3s.proc.pid, 1)
    objects = objects_of(pathlib.Path(root) / bucket, format_name, records)
    first, last = objects[0][0], objects[-1][0]
    after_first = sum(raw for _, _, raw, _ in objects[1:])
    return {"records": records, "bytes": size, "fill_seconds": seconds, "objects": len(objects),
            "object_bytes_mean": statistics.mean(c for _, c, _, _ in objects),
            "drain_seconds": last - first,
            "drain_mb_per_s": after_first / 1e6 / (last - first) if last > first else None}, s3s


def compressor_limit(format_name, sample):
    out = subprocess.run(
        ["taskset", "-c", "0", os.environ.get("SLUICE_PERF_BIN", "target/release/sluice-perf"),
         "compress", "--format", format_name, "--input", str(sample), "--seconds", str(LIMIT_SECONDS)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def s3_put_limit(s3s, bucket, object_bytes):
    """PUTs of `object_bytes` random bytes, one at a time from CPU 0, through the S3 client
    delivery uses (`sluice-perf s3-put`)."""
    s3s.client().create_bucket(Bucket=bucket)
    out = subprocess.run(
        ["taskset", "-c", "0", os.environ.get("SLUICE_PERF_BIN", "target/release/sluice-perf"),
         "s3-put", "--endpoint", s3s.endpoint, "--access-key-id", s3s.access_key,
         "--secret-access-key", s3s.secret_key, "--bucket", bucket,
         "--object-bytes", str(int(object_bytes)), "--seconds", str(LIMIT_SECONDS)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=True, capture_output=True)


def main():
    out_path = pathlib.Path(sys.argv[1])
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-firehose-perf-"))
    os.environ.setdefault("SLUICE_BIN", "target/release/sluice")
    sample = base / "sample.jsonl"
    # The compressor's sample is made as the producers make records: batches of BATCH from each
    # worker in turn.
    sample.write_text("".join(make_record(time.time(), w, k * BATCH + i)
                              for k in range(6000 // (BATCH * PRODUCERS) + 1)
                              for w in range(PRODUCERS) for i in range(BATCH)))
    s3s = S3sFs(base / "s3root", base / "s3s-fs.log")
    server = start_sluice(base / "data", s3s)
    pin(s3s.proc.pid, 1)
    pin(server.proc.pid, 0)
    os.sched_setaffinity(0, {1})
    result = {"producers": PRODUCERS, "batch": BATCH, "seconds": SECONDS, "backlog_mb": BACKLOG_MB,
              "record_bytes_mean": sample.stat().st_size / sample.read_text().count("\n"), "formats": {}}
    try:
        for format_name in ("GZIP", "ZSTD"):
            row = {"live": live(format_name, s3s, server)}
            row["backlog"], s3s = backlog(format_name, s3s, server)
            row["compressor"] = compressor_limit(format_name, sample)
            row["s3_put"] = s3_put_limit(s3s, f"put-limit-{format_name.lower()}",
                                         row["backlog"]["object_bytes_mean"])
            result["formats"][format_name] = row
            print(format_name, json.dumps(row), flush=True)
    finally:
        server.kill()
        s3s.stop()
    out_path.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
