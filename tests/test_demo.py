"""The README's first command: ``scripts/demo`` seeds the embedded SQLite
default and starts the product (the HTTP API) with a key to try it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.service.conftest import ROOT, free_port


def test_demo_seeds_and_serves(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    env = {
        **os.environ,
        "DG_DEMO_DB": str(tmp_path / "demo.db"),
        "DG_DEMO_PORT": str(port),
        "DG_DEMO_TRACES": "20",
    }
    with log.open("w") as out:
        demo = subprocess.Popen(
            ["bash", "scripts/demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            text = log.read_text()
            key = re.search(r"API key:\s+(dgk_\S+)", text)
            if key:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            assert demo.poll() is None, text
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        assert re.search(r"tenant default: OK, \d+ events", text), text  # the chain verified
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        traces = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/traces", params={"limit": 3}, headers=headers
        )
        assert traces.status_code == 200
        assert len(traces.json()["traces"]) == 3
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
