"""Helpers for runtime tests: seeded events, worker processes, deadline waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.seed import generate_events
from decisiongraph.store.sql_base import SqlEventStore

ROOT = Path(__file__).resolve().parents[2]


def seeded(traces: int, seed: int = 1) -> list[EventEnvelope]:
    return [envelope_from_dict(raw) for raw in generate_events(traces, seed)]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def caught_up(store: SqlEventStore, tenant: str) -> bool:
    head = store.get_last_log_seq(tenant)
    return head > 0 and all(seq >= head for seq in store.projection_cursors(tenant).values())


def start_worker(url: str, *extra: str) -> subprocess.Popen[bytes]:
    """A real ``decisiongraph worker`` process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "worker", url, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
