"""Analytics applications spread over the service cores: a server with two service cores runs
two applications, one on each, placed by a stable hash of the application's name (CRC-32C,
computed here independently), and both give the rows a plain-Python filter gives.

Guards against: every application running on service core 0 whatever the core count, a
supervisor that runs (or finishes the stop of) an application placed on another core, and a
placement that moves an application to another core across a restart.
"""

import json
import pathlib
import shutil
import tempfile
import time

from conftest import SluiceProcess
from test_analytics import (FILTER_PROGRAM, ROLE, client, create_app, make_stream, put, read_all, start,
                            trades, unique, wait_status)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def placement(name: str, cores: int) -> int:
    return crc32c(name.encode()) % cores


def running_by_core(endpoint):
    import urllib.request
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    prefix = 'analytics_applications_running_by_service_core{service_core="'
    return {int(line[len(prefix):].split('"')[0]): float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


def wait_running_by_core(endpoint, expected, timeout_s=20.0):
    """The per-core gauge once it equals `expected`: an application found RUNNING in the catalog
    after a restart is counted once its core's supervisor has started it again."""
    deadline = time.monotonic() + timeout_s
    while (got := running_by_core(endpoint)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_applications_run_on_the_service_core_their_name_places_them_on():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    # One application name for each of the two cores.
    names = {}
    i = 0
    while len(names) < 2:
        name = f"app-{i}"
        names.setdefault(placement(name, 2), name)
        i += 1
    base = pathlib.Path(tempfile.mkdtemp(prefix="sluice-kda-cores-"))
    server = SluiceProcess(base / "data", ["--service-cores", "2"])
    try:
        kinesis, kda = client("kinesis", server.endpoint), client("kinesisanalytics", server.endpoint)
        source = unique("src")
        make_stream(kinesis, source)
        destinations = {}
        for core, name in names.items():
            destinations[core] = unique(f"dst{core}")
            make_stream(kinesis, destinations[core])
            create_app(kda, name, FILTER_PROGRAM, source, destinations[core])
            start(kda, name)
        assert running_by_core(server.endpoint) == {0: 1.0, 1: 1.0}

        sent = trades(300, seed=7)
        put(kinesis, source, sent)
        expected = [{"sym": t["sym"], "notional": t["px"] * t["qty"]} for t in sent if t["px"] * t["qty"] > 10000]
        assert expected
        for core, destination in destinations.items():
            rows = [json.loads(r["Data"]) for r in read_all(kinesis, destination, len(expected), settle_s=0.5)]
            assert [r["sym"] for r in rows] == [e["sym"] for e in expected], core
            for got, want in zip(rows, expected):
                assert abs(got["notional"] - want["notional"]) < 1e-6 * want["notional"]

        # A stop is finished by the application's own core; the other keeps running.
        kda.stop_application(ApplicationName=names[1])
        wait_status(kda, names[1], "READY")
        assert running_by_core(server.endpoint) == {0: 1.0, 1: 0.0}
        assert wait_status(kda, names[0], "RUNNING")

        # After a restart the running application comes back on the same core.
        server.kill()
        server = SluiceProcess(base / "data", ["--service-cores", "2"])
        kda = client("kinesisanalytics", server.endpoint)
        assert wait_status(kda, names[0], "RUNNING")
        assert wait_running_by_core(server.endpoint, {0: 1.0, 1: 0.0}) == {0: 1.0, 1: 0.0}
        assert kda.describe_application(ApplicationName=names[1])["ApplicationDetail"]["ApplicationStatus"] == "READY"
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)
