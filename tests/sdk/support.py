"""Helpers for the SDK tests: stop a real server and bring it back on its port."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from tests.runtime.support import ROOT
from tests.service.conftest import Server


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def restart(server: Server, db: str | None = None) -> subprocess.Popen[bytes]:
    """A new ``serve`` on the server's database and port, once it is ready."""
    port = server.url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db or server.db, "--port", port],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None, "server exited"
        assert time.monotonic() < deadline, "server did not come back"
        time.sleep(0.05)
