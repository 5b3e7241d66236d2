"""``decisiongraph serve``: the app under uvicorn, with JSON access logs."""

from __future__ import annotations

import logging
import os

import uvicorn
from fastapi import FastAPI

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.service.app import create_app
from decisiongraph.service.settings import Settings
from decisiongraph.store.postgres import is_postgres_url


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
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
        )
        return
    base = settings or Settings(db=db, workers=workers)
    app = create_app(base)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
