"""Service settings, from arguments or ``DG_*`` environment variables.

Every numeric variable is parsed by :func:`env_int` / :func:`env_float`,
which refuse a malformed value with ``DG_ERR_INVALID_ARGUMENT`` naming the
variable: a typo in a deployment's environment must stop ``serve`` with one
clear line, not a traceback from deep inside a dataclass factory.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from decisiongraph.core.errors import InvalidArgumentError

#: Every environment variable the product reads, with what it sets; the
#: README's table and ``serve --help`` are written from the same list.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("DG_DB", "database of `serve` when --db is not given (default decisiongraph.db)"),
    ("DG_REDIS_URL", "Redis URL: rate-limit buckets shared by every API process"),
    ("DG_RATE_WRITE", "write requests/s per account (default 200; 0 = no limit)"),
    ("DG_RATE_READ", "read requests/s per account (default 500; 0 = no limit)"),
    ("DG_RATE_ADMIN", "admin requests/s per account (default 10; 0 = no limit)"),
    ("DG_MAX_BODY_BYTES", "largest request body in bytes (default 5000000)"),
    ("DG_STORE_POOL", "database connections per API process (default 4)"),
    ("DG_STORE_WAIT", "seconds a request waits for a free connection before 503 (default 10)"),
    (
        "DG_LOCK_TIMEOUT",
        "PostgreSQL: seconds a request waits for a database lock before 503 (default 10)",
    ),
    (
        "DG_READ_WAIT",
        "seconds a projection-backed read waits for projections to catch up before 503 "
        "(default 1; 0 = no wait)",
    ),
    ("DG_STREAM_HEARTBEAT", "seconds between keep-alives on an idle event stream (default 15)"),
    (
        "DG_NOTIFY",
        "0/false/off/no turns PostgreSQL LISTEN/NOTIFY wake-ups off (workers only poll); "
        "1/true/on/yes or unset leaves them on; any other value is refused",
    ),
    ("DG_METRICS_TOKEN", "when set, /metrics needs `Authorization: Bearer <token>`"),
)


def env_int(name: str, default: int, unit: str, *, minimum: int = 1) -> int:
    """``name`` as an integer of at least ``minimum`` (``unit`` names it in errors)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise InvalidArgumentError(
            f"{name} must be an integer number of {unit}, not {value!r}"
        ) from None
    if parsed < minimum:
        raise InvalidArgumentError(f"{name} must be at least {minimum} {unit}, not {value!r}")
    return parsed


def env_float(name: str, default: float, unit: str, *, allow_zero: bool = False) -> float:
    """``name`` as a finite positive number (zero too when ``allow_zero``)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed) or parsed < 0 or (parsed == 0 and not allow_zero):
        least = "zero or more" if allow_zero else "more than zero"
        raise InvalidArgumentError(f"{name} must be a number of {unit} ({least}), not {value!r}")
    return parsed


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = field(default_factory=lambda: os.environ.get("DG_DB", "decisiongraph.db"))
    #: Run projection workers inside the API process. None: yes for SQLite,
    #: no for PostgreSQL (run ``decisiongraph worker`` processes there).
    workers: bool | None = None
    max_body_bytes: int = field(
        default_factory=lambda: env_int("DG_MAX_BODY_BYTES", 5_000_000, "bytes")
    )
    max_batch_events: int = 1000
    store_pool_size: int = field(default_factory=lambda: env_int("DG_STORE_POOL", 4, "connections"))
    #: Seconds a request waits for a free PostgreSQL connection, then 503.
    store_wait: float = field(default_factory=lambda: env_float("DG_STORE_WAIT", 10.0, "seconds"))
    #: Seconds a request's statement waits for a PostgreSQL lock, then 503:
    #: one stuck transaction must not hold every request (and /readyz).
    lock_timeout: float = field(
        default_factory=lambda: env_float("DG_LOCK_TIMEOUT", 10.0, "seconds")
    )
    #: Seconds a projection-backed read waits for the projections it uses to
    #: reach the head it saw, before 503 DG_ERR_PROJECTION_OUT_OF_DATE.
    read_wait: float = field(
        default_factory=lambda: env_float("DG_READ_WAIT", 1.0, "seconds", allow_zero=True)
    )
    #: Seconds between keep-alive comments on an idle event stream.
    stream_heartbeat: float = field(
        default_factory=lambda: env_float("DG_STREAM_HEARTBEAT", 15.0, "seconds")
    )
    #: A bearer token /metrics asks for (tenant names are in its labels);
    #: None leaves it open, as Prometheus scrapers usually expect.
    metrics_token: str | None = field(
        default_factory=lambda: os.environ.get("DG_METRICS_TOKEN", "").strip() or None
    )
