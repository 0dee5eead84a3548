"""A real player on Sluice's own page: Debian's Chromium, driven by playwright-core
(tests/browser/play.mjs), opens `/video/<stream>`, whose hls.js (served by Sluice from
`--hls-js`) plays the stream LIVE while a producer ingests it at real-time pace.

What this guards against: HLS that ffmpeg accepts but a browser's Media Source Extensions refuse
(codec strings, init segments, timestamps that do not continue), a live playlist the player
stalls on, and a page or script route that is missing. Node, Chromium and the npm packages are
installed by scripts/test; a missing one fails the test instead of skipping it.
"""

import json
import shutil
import subprocess
import uuid

from conftest import REPO, SluiceProcess
from video_support import PutMedia, check_ack_sequence, client, create_stream, env_without_proxy, persisted

BROWSER_DIR = REPO / "tests" / "browser"
HLS_JS = BROWSER_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
CHROMIUM = "/usr/bin/chromium"


def test_chromium_plays_a_live_stream_from_the_video_page(tmp_path):
    node = shutil.which("node")
    assert node, "node is not on PATH (scripts/test needs Node 20)"
    assert HLS_JS.is_file(), f"{HLS_JS} is missing: run `npm ci` in {BROWSER_DIR} (scripts/test does)"
    assert (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), f"playwright-core is missing in {BROWSER_DIR}"
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)"

    server = SluiceProcess(tmp_path / "data", extra_args=["--hls-js", str(HLS_JS)])
    put = None
    try:
        kvs = client("kinesisvideo", server.endpoint)
        name = f"browser-{uuid.uuid4().hex[:10]}"
        data_endpoint = create_stream(kvs, name)
        # Long enough for the player to start on the live edge and play 3 s past it.
        put = PutMedia(data_endpoint, name, live_seconds=20)
        put.wait_for(lambda acks: len(persisted(acks)) >= 2)

        script = server.endpoint.rstrip("/") + "/video/hls.min.js"
        served = subprocess.run(["curl", "-sS", "-o", str(tmp_path / "hls.min.js"), "-w", "%{http_code}", script],
                                capture_output=True, text=True, timeout=30, env=env_without_proxy())
        assert served.stdout == "200", served
        assert (tmp_path / "hls.min.js").read_bytes() == HLS_JS.read_bytes()

        page = f"{server.endpoint.rstrip('/')}/video/{name}"
        played = subprocess.run(
            [node, str(BROWSER_DIR / "play.mjs"), page, "--min-seconds", "3", "--width", "320", "--timeout-ms", "30000"],
            capture_output=True, text=True, timeout=90, env={**env_without_proxy(), "CHROMIUM": CHROMIUM},
        )
        lines = played.stdout.strip().splitlines()
        assert lines, f"play.mjs printed nothing; stderr:\n{played.stderr[-4000:]}"
        result = json.loads(lines[-1])
        assert played.returncode == 0 and result["ok"], f"{result}\nstderr:\n{played.stderr[-4000:]}\nsluice:\n{server.stderr()[-4000:]}"
        assert result["videoWidth"] == 320 and result["videoHeight"] == 240, result
        assert result["currentTime"] > 3, result

        ingest = put.finish(timeout_s=60)
        assert ingest.status == 200, ingest
        check_ack_sequence(ingest.acks)
    finally:
        if put is not None:
            put.kill()
        server.kill()
