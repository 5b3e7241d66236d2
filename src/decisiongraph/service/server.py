"""``decisiongraph serve``: the app under uvicorn, with JSON access logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.service.app import create_app
from decisiongraph.service.settings import Settings
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
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if processes < 1:
        raise InvalidArgumentError("processes must be at least 1")
    if processes > 1:
        if not is_postgres_url(db):
            raise InvalidArgumentError(
                "Several API processes need PostgreSQL; SQLite is served by one process"
            )
        if workers:
            raise InvalidArgumentError(
                "With several API processes run projection workers as `decisiongraph worker`"
            )
        os.environ["DG_DB"] = db
        uvicorn.run(
            "decisiongraph.service.server:app_from_environment",
            factory=True,
            workers=processes,
            http=NoDelayH11Protocol,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
        return
    base = settings or Settings(db=db, workers=workers)
    app = create_app(base)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
