"""The live stream: across two API processes, and resumable with Last-Event-ID."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.conftest import load_golden
from tests.runtime.support import ROOT
from tests.service.conftest import Server, free_port, start_server


@contextmanager
def listen(
    server: Server, key: str, last_event_id: str | None = None
) -> Iterator[queue.Queue[dict]]:  # type: ignore[type-arg]
    """Read the SSE stream in a thread; parsed events arrive on the queue."""
    received: queue.Queue[dict] = queue.Queue()  # type: ignore[type-arg]
    statuses_seen: list[str] = []
    headers = {"Authorization": f"Bearer {server.keys[key]}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    stop = threading.Event()
    ready = threading.Event()

    def run() -> None:
        with (
            httpx.Client(base_url=server.url, headers=headers, timeout=None) as client,
            client.stream("GET", "/api/v1/stream") as response,
        ):
            ready.set()
            event: dict = {}  # type: ignore[type-arg]
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: projection_status"):
                    statuses_seen.append(line)
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and "id" in event:
                    received.put(event)
                    event = {}

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "stream did not open"
    try:
        yield received
    finally:
        stop.set()
        assert statuses_seen, "the stream sends projection status on connect"


def take(received: queue.Queue[dict], count: int, timeout: float = 20.0) -> list[dict]:  # type: ignore[type-arg]
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"got {len(out)} of {count} events"
        out.append(received.get(timeout=remaining))
    return out


def test_event_posted_to_one_process_reaches_a_stream_on_another(pg_url: str) -> None:
    first = start_server(pg_url, "--no-workers")
    port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", pg_url, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    second = Server(f"http://127.0.0.1:{port}", pg_url, first.keys, other)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{second.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
        events, _ = load_golden("dealdesk")
        with listen(second, "writer") as received:
            with first.client() as writer:
                assert writer.post("/api/v1/events", json={"events": events[:4]}).status_code == 200
            got = take(received, 4)
            assert [e["id"] for e in got] == [1, 2, 3, 4]
            assert got[0]["data"]["event_id"] == events[0]["event_id"]
        # Reconnect where we left off: the events posted meanwhile all arrive, once, in order.
        with first.client() as writer:
            assert writer.post("/api/v1/events", json={"events": events[4:]}).status_code == 200
        with listen(second, "writer", last_event_id="4") as received:
            got = take(received, len(events) - 4)
            assert [e["id"] for e in got] == list(range(5, len(events) + 1))
            with pytest.raises(queue.Empty):  # and nothing more
                received.get(timeout=0.5)
    finally:
        for process in (first.process, other):
            process.terminate()
            process.wait(30)
