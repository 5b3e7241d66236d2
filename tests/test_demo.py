"""The README's first command: ``scripts/demo`` seeds the embedded SQLite
default and starts the product (the HTTP API) with a key to try it.

The demo's output is read line by line from a pipe: its banner must come
only once the server answers, so the test connects right after reading it
(no polling), and a busy port must give a hint rather than the banner.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.service.conftest import ROOT, free_port


@contextmanager
def _demo(tmp_path: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "DG_DEMO_DB": str(tmp_path / "demo.db"),
        "DG_DEMO_PORT": str(port),
        "DG_DEMO_TRACES": "20",
    }
    demo = subprocess.Popen(
        ["bash", "scripts/demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield demo
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
        assert demo.stdout is not None
        demo.stdout.close()


def test_demo_seeds_and_serves(tmp_path: Path) -> None:
    port = free_port()
    with _demo(tmp_path, port) as demo:
        assert demo.stdout is not None
        seen: list[str] = []
        key = None
        for line in demo.stdout:
            seen.append(line)
            if match := re.search(r"API key:\s+(dgk_\S+)", line):
                key = match.group(1)
                break
        text = "".join(seen)
        assert key is not None, text
        assert re.search(r"tenant default: OK, \d+ events", text), text  # the chain verified
        assert f"DecisionGraph API listening on http://127.0.0.1:{port}" in text
        # The banner came after the server was ready: it answers at once.
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200
        headers = {"Authorization": f"Bearer {key}"}
        traces = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/traces", params={"limit": 3}, headers=headers
        )
        assert traces.status_code == 200
        assert len(traces.json()["traces"]) == 3


def test_demo_on_a_busy_port_says_so_without_a_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with _demo(tmp_path, port) as demo:
            output, _ = demo.communicate(timeout=240)
            assert demo.returncode == 1, output
    assert "is serving" not in output and "API key" not in output
    assert f"port {port} on 127.0.0.1 is already in use" in output
    assert "DG_DEMO_PORT=" in output
