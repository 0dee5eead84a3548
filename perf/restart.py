#!/usr/bin/env python3
"""Times a restart after kill -9, for scripts/perf.sh, over the Kinesis HTTP API (stdlib only).

  perf/restart.py markers ENDPOINT STREAM MARKERS.json
      Puts one record per open shard, routed by ExplicitHashKey to the shard's starting hash
      key, after the stream has been filled: each becomes the last record of its shard, and is
      acknowledged only once durable. Writes {shard id: sequence number} to MARKERS.json.

  perf/restart.py wait ENDPOINT STREAM MARKERS.json T0_NS RESULT.json
      Run right after the server was restarted at T0_NS (nanoseconds since the Unix epoch, the
      same clock as time.time_ns()). Polls until /health answers 200, until a PutRecord is
      acknowledged, and then, shard by shard, until GetRecords AT_SEQUENCE_NUMBER returns the
      shard's marker: the seconds from T0_NS to each are written to RESULT.json.

Every poll retries after 2 ms, so the times are good to a few milliseconds. Traffic goes to the
given endpoint only (127.0.0.1 in scripts/perf.sh); a server without --credentials accepts
unsigned requests on loopback.
"""

import base64
import http.client
import json
import os
import sys
import time
import urllib.parse

POLL_S = 0.002
GIVE_UP_S = 1800


class Kinesis:
    def __init__(self, endpoint):
        url = urllib.parse.urlparse(endpoint)
        self.host, self.port = url.hostname, url.port or 80
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return self.conn

    def raw(self, method, path, body=None, headers=None):
        """(status, body bytes); a connection error closes the connection and is raised."""
        try:
            c = self._connection()
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            raise

    def call(self, operation, payload):
        status, body = self.raw("POST", "/", json.dumps(payload).encode(), {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{operation}",
            # A placeholder signature, as sluice-perf sends: accepted on loopback by a server
            # without credentials, which still requires a well-formed header.
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDPERF/20260101/us-east-1/kinesis/aws4_request, "
                             "SignedHeaders=host;x-amz-date, Signature=0000",
            "X-Amz-Date": "20260101T000000Z",
        })
        return status, (json.loads(body) if body else {})


def open_shards(k, stream):
    shards, token = [], None
    while True:
        status, out = k.call("ListShards", {"NextToken": token} if token else {"StreamName": stream})
        if status != 200:
            sys.exit(f"ListShards answered {status}: {out}")
        shards += [s for s in out["Shards"] if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
        token = out.get("NextToken")
        if not token:
            return shards


def markers(endpoint, stream, path):
    k = Kinesis(endpoint)
    found = {}
    for s in open_shards(k, stream):
        status, out = k.call("PutRecord", {
            "StreamName": stream, "PartitionKey": "restart-marker",
            "ExplicitHashKey": s["HashKeyRange"]["StartingHashKey"],
            "Data": base64.b64encode(f"restart-marker {s['ShardId']}".encode()).decode(),
        })
        if status != 200 or out.get("ShardId") != s["ShardId"]:
            sys.exit(f"marker PutRecord for {s['ShardId']} answered {status}: {out}")
        found[s["ShardId"]] = out["SequenceNumber"]
    with open(path, "w") as f:
        json.dump(found, f)
    print(f"{len(found)} markers written")


def poll(what, t0_ns, attempt):
    """Retries attempt() until it returns True; seconds since t0_ns when it did."""
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            if attempt():
                return (time.time_ns() - t0_ns) / 1e9
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what} after {GIVE_UP_S} s")
        time.sleep(POLL_S)


def wait(endpoint, stream, markers_path, t0_ns, result_path):
    k = Kinesis(endpoint)
    with open(markers_path) as f:
        expected = json.load(f)
    health_s = poll("/health", t0_ns, lambda: k.raw("GET", "/health")[0] == 200)

    def put():
        status, _ = k.call("PutRecord", {"StreamName": stream, "PartitionKey": os.urandom(8).hex(),
                                         "Data": base64.b64encode(b"after restart").decode()})
        return status == 200

    write_s = poll("an acknowledged PutRecord", t0_ns, put)
    readable = {}
    for shard_id, sequence_number in expected.items():
        def read():
            status, it = k.call("GetShardIterator", {
                "StreamName": stream, "ShardId": shard_id,
                "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": sequence_number})
            if status != 200:
                return False
            status, page = k.call("GetRecords", {"ShardIterator": it["ShardIterator"], "Limit": 1})
            records = page.get("Records") or []
            return status == 200 and bool(records) and records[0]["SequenceNumber"] == sequence_number

        readable[shard_id] = poll(f"the last record of {shard_id}", t0_ns, read)
    result = {
        "health_s": health_s,
        "first_write_s": write_s,
        "all_readable_s": max(readable.values()) if readable else None,
        "shards": len(readable),
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "markers":
        markers(*sys.argv[2:5])
    elif len(sys.argv) == 7 and sys.argv[1] == "wait":
        wait(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        sys.exit(__doc__)
