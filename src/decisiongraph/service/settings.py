"""Service settings, from arguments or ``DG_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = field(default_factory=lambda: os.environ.get("DG_DB", "decisiongraph.db"))
    #: Run projection workers inside the API process. None: yes for SQLite,
    #: no for PostgreSQL (run ``decisiongraph worker`` processes there).
    workers: bool | None = None
    max_body_bytes: int = field(default_factory=lambda: _env_int("DG_MAX_BODY_BYTES", 5_000_000))
    max_batch_events: int = 1000
    store_pool_size: int = field(default_factory=lambda: _env_int("DG_STORE_POOL", 4))
    #: Seconds between keep-alive comments on an idle event stream.
    stream_heartbeat: float = field(
        default_factory=lambda: float(os.environ.get("DG_STREAM_HEARTBEAT", "15"))
    )
