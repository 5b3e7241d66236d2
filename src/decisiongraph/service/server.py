"""``decisiongraph serve``: the app under uvicorn, with JSON access logs."""

from __future__ import annotations

import logging

import uvicorn

from decisiongraph.service.app import create_app
from decisiongraph.service.settings import Settings


def run_server(
    db: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    workers: bool | None = None,
    settings: Settings | None = None,
) -> None:
    """Serve until interrupted; SQLite runs the projection workers in-process."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = settings or Settings(db=db, workers=workers)
    app = create_app(base)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
