"""Fixtures for the Python end-to-end tests: one `sluice serve` per test session.

The server binary is taken from $SLUICE_BIN (default: target/debug/sluice under the repository
root). A missing binary fails the whole run loudly instead of skipping tests, so a broken build
can never look like a green run. The server gets a free loopback port (--http-addr 127.0.0.1:0,
read back from its ready line) and a temporary data directory, and is killed at session end.

Set SLUICE_ENDPOINT to run the same tests against an already running Kinesis endpoint instead
(for example a reference emulator); then no binary is started.
"""

import os
import pathlib
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config

REPO = pathlib.Path(__file__).resolve().parents[2]
READY_PREFIX = "sluice: serving Kinesis on "
READY_TIMEOUT_S = 30
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
ACCESS_KEY_ID = "AKIDSLUICETEST"
SECRET_ACCESS_KEY = "sluice-test-secret"

# Loopback traffic must never go through a proxy the machine may configure.
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["no_proxy"] = "127.0.0.1,localhost"


def sluice_bin() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("SLUICE_BIN", "target/debug/sluice"))
    if not path.is_absolute():
        path = REPO / path
    return path


def pytest_sessionstart(session):
    if os.environ.get("SLUICE_ENDPOINT"):
        return
    path = sluice_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise pytest.UsageError(
            f"SLUICE_BIN={path} does not exist or is not executable: build it with `cargo build` "
            "(these tests never skip for a missing binary)"
        )


def parse_ready_line(line: str) -> str:
    assert line.startswith(READY_PREFIX), line
    url = line[len(READY_PREFIX):].split()[0].rstrip(",);")
    assert url.startswith(("http://", "https://")), f"ready line does not name an http(s):// address: {line!r}"
    return url


class SluiceProcess:
    def __init__(self, data_dir: pathlib.Path, extra_args: "list[str] | None" = None,
                 http_addr: str = "127.0.0.1:0"):
        self.data_dir = data_dir
        self.stderr_path = data_dir.parent / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        args = [
            str(sluice_bin()), "serve",
            "--data-dir", str(data_dir),
            "--http-addr", http_addr,
            "--cores", "1",
            "--pin-cores", "false",
            "--create-delay-ms", "0",
            "--delete-delay-ms", "0",
            "--update-delay-ms", "0",
            *(extra_args or []),
        ]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        lines: "queue.Queue[str | None]" = queue.Queue()

        def pump():
            # Keep draining stdout for the server's whole life so it never blocks on a full pipe.
            for line in self.proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(f"sluice printed no ready line in {READY_TIMEOUT_S} s; stderr:\n{self.stderr()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                raise RuntimeError(
                    f"sluice exited with {self.proc.returncode} before it was ready; stderr:\n{self.stderr()}"
                )
            if line.startswith(READY_PREFIX):
                self.endpoint = parse_ready_line(line)
                return

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-20000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._stderr.close()


@pytest.fixture(scope="session")
def endpoint():
    external = os.environ.get("SLUICE_ENDPOINT")
    if external:
        yield external
        return
    base = tempfile.mkdtemp(prefix="sluice-pytest-")
    server = SluiceProcess(pathlib.Path(base) / "data")
    try:
        yield server.endpoint
    finally:
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def kinesis(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        # No retries: every server error reaches the test.
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60),
    )


@pytest.fixture
def stream_name(request):
    """A stream name unique to this test."""
    return f"py-{request.node.name[:60].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


def aws_cli_env() -> dict:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    return env


@pytest.fixture(scope="session")
def aws_cli():
    path = shutil.which("aws")
    if path is None:
        raise RuntimeError("the `aws` CLI is not on PATH (scripts/test installs it into .venv)")
    return path
