"""Helpers for the runtime tests: seeded events, worker processes, a background
writer and deadline waits (never a bare sleep standing in for a condition)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.runtime.rebuild import compare_with_rebuild, replay_digests
from decisiongraph.seed import generate_events
from decisiongraph.store import open_store
from decisiongraph.store.sql_base import SqlEventStore

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().with_name("worker_main.py")
T = "default"


def seeded(traces: int, seed: int = 1) -> list[EventEnvelope]:
    """``traces`` complete seeded traces (about ten events each), in log order."""
    return [envelope_from_dict(raw) for raw in generate_events(traces, seed)]


def trace_boundary(events: Sequence[EventEnvelope], traces: int) -> int:
    """Index just after the first ``traces`` traces (seeded traces are contiguous)."""
    starts = [i for i, event in enumerate(events) if event.trace_seq == 0]
    return starts[traces] if traces < len(starts) else len(events)


def wait_until(
    condition: Callable[[], bool],
    timeout: float = 30.0,
    what: str = "",
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}{extra}"
            )
        time.sleep(0.02)


def stays_false(condition: Callable[[], bool], seconds: float) -> bool:
    """True when ``condition`` stays false for ``seconds`` (a negative control)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return False
        time.sleep(0.02)
    return not condition()


def caught_up(store: SqlEventStore, tenant: str = T) -> bool:
    head = store.get_last_log_seq(tenant)
    return head > 0 and all(seq >= head for seq in store.projection_cursors(tenant).values())


def progress(store: SqlEventStore, tenant: str = T) -> str:
    return f"head={store.get_last_log_seq(tenant)} cursors={store.projection_cursors(tenant)}"


def open_sql(url: str) -> SqlEventStore:
    """``open_store`` (as a client would), typed as the SQL store it is."""
    store = open_store(url)
    assert isinstance(store, SqlEventStore)
    return store


def assert_exactly_once(store: SqlEventStore, tenant: str = T) -> None:
    """Every event applied once: live equals a rebuild at the same positions and
    a full replay; a trace summary counts its TraceStarted and TraceFinished
    only, so an event applied twice would show as 3."""
    comparison = compare_with_rebuild(store, tenant)
    assert comparison.match, f"live differs from a rebuild in {comparison.first_difference}"
    assert store.digests(tenant) == replay_digests(store, tenant)
    counts = {row.event_count for row in store.iter_summaries(tenant)}
    assert counts and counts <= {1, 2}, f"summary event counts {sorted(counts)}"


def owner_pid(owner: str) -> int:
    """Owners are ``host:pid:random``."""
    return int(owner.split(":")[-2])


class WorkerProcess:
    """A real worker process started through ``worker_main.py``."""

    def __init__(self, url: str, log_dir: Path, *args: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, str(LAUNCHER), url, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text("utf-8", errors="replace")[-4000:]

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap; safe to call twice."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        try:
            self.popen.wait(10)
        finally:
            self._log.close()


class Writer(threading.Thread):
    """Appends ``events`` in batches from its own store, without projecting.

    ``pause`` (set by default: running) lets a test hold the writer; errors
    are kept in ``errors`` for the test to assert on.
    """

    def __init__(
        self,
        open_writer: Callable[[], SqlEventStore],
        events: Sequence[EventEnvelope],
        batch: int = 50,
        tenant: str = T,
        pace: float = 0.0,
        close_store: bool = True,
    ) -> None:
        super().__init__(name="test-writer", daemon=True)
        self._open = open_writer
        self._events = events
        self._batch = batch
        self._tenant = tenant
        self._pace = pace
        self._close = close_store
        self.running = threading.Event()
        self.running.set()
        self.halt = threading.Event()
        self.appended = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        store = self._open()
        try:
            for start in range(0, len(self._events), self._batch):
                while not self.running.wait(0.05):
                    if self.halt.is_set():
                        return
                if self.halt.is_set():
                    return
                store.append(self._tenant, self._events[start : start + self._batch])
                self.appended = min(start + self._batch, len(self._events))
                if self._pace:
                    self.halt.wait(self._pace)  # load shaping, not a wait for a condition
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            if self._close:
                store.close()

    @property
    def done(self) -> bool:
        return self.appended == len(self._events)

    def stop(self) -> None:
        """Stop and join (idempotent; a writer never started is a no-op)."""
        self.halt.set()
        self.running.set()
        if self.ident is None:
            return
        self.join(30)
        assert not self.is_alive(), "writer did not stop"
