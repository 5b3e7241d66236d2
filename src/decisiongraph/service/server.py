"""``decisiongraph serve``: the app under uvicorn, with JSON access logs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from decisiongraph.core.errors import InvalidArgumentError, NotFoundError
from decisiongraph.service.app import create_app
from decisiongraph.service.ratelimit import Rates, RedisBuckets
from decisiongraph.service.settings import Settings
from decisiongraph.store import open_store
from decisiongraph.store.postgres import is_postgres_url


class NoDelayH11Protocol(H11Protocol):
    """HTTP/1.1 with Nagle's algorithm off on every connection.

    With several processes uvicorn hands each one a listening socket bound
    without ``IPPROTO_TCP``, and asyncio then leaves ``TCP_NODELAY`` off on
    the accepted sockets: every keep-alive response waits ~40 ms for the
    client's delayed ACK (uvicorn issue #3149). Setting it here is harmless
    where it was already set.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def app_from_environment() -> FastAPI:
    """The app of one of several API processes (settings come from ``DG_*``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return create_app(Settings(workers=False))


def check_environment() -> None:
    """Parse every numeric ``DG_*`` setting once, before anything starts.

    The API processes read them again when they build their app; checking
    here, in the process the operator started, turns a malformed value into
    one ``DG_ERR_INVALID_ARGUMENT`` line rather than a traceback (or, with
    several processes, a crash loop of children).
    """
    Settings()
    Rates()
    redis_url = os.environ.get("DG_REDIS_URL")
    if redis_url:
        try:
            RedisBuckets(redis_url)
        except ValueError as exc:
            raise InvalidArgumentError(f"DG_REDIS_URL is not a Redis URL: {exc}") from None


def check_database(db: str) -> None:
    """Open the database once before serving: one that cannot be reached
    (or a file that is not a database) stops ``serve`` with one line, not
    with a server that starts and dies in its lifespan."""
    open_store(db).close()


def describe_database(db: str) -> str:
    """The database for the startup line: a PostgreSQL URL without its
    credentials (startup lines end up in shared logs), a SQLite path as given."""
    if is_postgres_url(db):
        parts = urlsplit(db)
        where = parts.hostname or "local socket"
        if parts.port:
            where += f":{parts.port}"
        return f"PostgreSQL {where}{parts.path or '/'}"
    return f"SQLite {db}"


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen before anything is announced.

    A busy port is then a clean error instead of uvicorn's log line after
    our banner; the socket is made with ``IPPROTO_TCP`` (see
    :class:`NoDelayH11Protocol`) and is inheritable, so API processes can
    share it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidArgumentError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]  # the real one when --port 0 asked for any
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _AnnouncingServer(uvicorn.Server):
    """Prints the startup line once the app has started and the socket is
    served, so that whoever reads it (an operator, the demo, a test) can
    connect at once."""

    def __init__(self, config: uvicorn.Config, line: str) -> None:
        super().__init__(config)
        self._line = line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(self._line, flush=True)


def run_server(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    workers: bool | None = None,
    settings: Settings | None = None,
    processes: int = 1,
) -> None:
    """Serve until interrupted; SQLite runs the projection workers in-process.

    With ``processes`` > 1 (PostgreSQL only) uvicorn runs that many API
    processes on one socket; they are stateless, so this is the one-machine
    form of running API processes on many machines. Projection workers then
    run as ``decisiongraph worker`` processes.

    One line on stdout says where it listens, on which database (and
    whether that SQLite file was just created: serving a mistyped path
    would otherwise look like an empty product) and where the projection
    workers run.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if processes < 1:
        raise InvalidArgumentError("processes must be at least 1")
    if not 0 <= port <= 65535:
        raise InvalidArgumentError(f"--port must be 0 to 65535, not {port}")
    check_environment()
    postgres = is_postgres_url(db)
    if processes > 1:
        if not postgres:
            raise InvalidArgumentError(
                "Several API processes need PostgreSQL; SQLite is served by one process"
            )
        if workers:
            raise InvalidArgumentError(
                "With several API processes run projection workers as `decisiongraph worker`"
            )
    in_process = workers if workers is not None else not postgres
    database = describe_database(db)
    if not postgres:
        path = Path(db)
        if not path.exists():
            if not path.parent.is_dir():
                raise NotFoundError(f"directory '{path.parent}' of database '{db}' not found")
            database += " (created new database)"
        elif not path.is_file():
            raise InvalidArgumentError(f"'{db}' is not a file")
    check_database(db)
    where = (
        "projection workers in-process"
        if in_process
        else "projection workers not in this process (run `decisiongraph worker`)"
    )
    if processes > 1:
        os.environ["DG_DB"] = db
        config = uvicorn.Config(
            "decisiongraph.service.server:app_from_environment",
            factory=True,
            workers=processes,
            http=NoDelayH11Protocol,
            log_level="warning",
            access_log=False,
        )
        sock = _listen(host, port)
        print(
            f"DecisionGraph API listening on {_url(host, sock)}; {database}; "
            f"{processes} API processes; {where}",
            flush=True,
        )
        # The API processes count requests in files here, so that a scrape
        # of /metrics, whichever process answers it, reports all of them.
        metrics_dir = tempfile.mkdtemp(prefix="dg-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            Multiprocess(config, sockets=[sock]).run()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return
    base = settings or Settings(db=db, workers=workers)
    sock = _listen(host, port)
    try:
        app = create_app(base)
        config = uvicorn.Config(app, http=NoDelayH11Protocol, log_level="warning", access_log=False)
        line = f"DecisionGraph API listening on {_url(host, sock)}; {database}; {where}"
        server = _AnnouncingServer(config, line)
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        sys.exit(1)
