"""A real ``decisiongraph serve`` on loopback, with a key per scope set."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from decisiongraph.runtime.process import open_runtime_store
from decisiongraph.store.postgres import is_postgres_url
from tests.conftest import GOLDEN_SCENARIOS
from tests.runtime.support import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    db: str
    keys: dict[str, str]
    process: subprocess.Popen[bytes]

    def client(self, key: str | None = "writer", tenant: str | None = None) -> httpx.Client:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        if tenant is not None:
            headers["X-Tenant-ID"] = tenant
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_server(
    db: str, *extra: str, env: dict[str, str] | None = None, ready_path: str = "/readyz"
) -> Server:
    """A server with the usual accounts, once ``ready_path`` answers 200
    (``/healthz`` for a server expected never to be ready)."""
    store = open_runtime_store(db)
    keys: dict[str, str] = {}
    if store.list_accounts():  # a second server on the same database: reuse nothing
        store.close()
        raise RuntimeError("start_server creates its accounts; use a fresh database")
    for name, tenants, scopes in (
        ("writer", ["default"], ["events:write", "events:read"]),
        ("reader", ["default"], ["events:read"]),
        ("other", ["other"], ["events:write", "events:read"]),
        ("multi", ["default", "other"], ["events:read"]),
        ("golden", GOLDEN_SCENARIOS, ["events:write", "events:read"]),
        ("operator", ["default"], ["events:read", "admin"]),
        ("operator_writer", ["default"], ["events:read", "events:write", "admin"]),
    ):
        _, keys[name] = store.create_account(name, tenants, scopes)
    store.close()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "serve", "--db", db, "--port", str(port), *extra],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("server did not become ready")
        time.sleep(0.05)
    return Server(url, db, keys, process)


@contextmanager
def serving(db: str) -> Iterator[Server]:
    """A server on ``db`` in its backend's usual shape, stopped afterwards.

    SQLite is embedded (workers inside the API process); PostgreSQL has its
    workers in a process of their own, as in production. For tests that
    prepare the database before the server starts (``server`` starts on an
    empty one).
    """
    worker = None
    running = start_server(db)
    if is_postgres_url(db):
        worker = subprocess.Popen(
            [sys.executable, "-m", "decisiongraph", "worker", db, "--poll-interval", "0.2"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        yield running
    finally:
        for process in (running.process, worker):
            if process is not None:
                process.terminate()
                process.wait(30)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Server]:
    if request.param == "sqlite":
        db = str(tmp_path / "api.db")  # type: ignore[operator]
    else:
        db = request.getfixturevalue("pg_url")
    with serving(db) as running:
        yield running
