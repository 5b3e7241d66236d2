"""Token buckets per (account, route class): write, read, admin.

In-process by default; with ``DG_REDIS_URL`` the buckets live in Redis (one
atomic Lua script per check), so every API process draws from the same
bucket. Over the limit: 429 with ``Retry-After``. Every answer to an
authenticated request says what is left (``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset``, as in the IETF draft), so a
client can pace itself instead of discovering the limit by a 429.

When Redis cannot be reached the limiter fails closed: the request gets 503
``DG_ERR_STORAGE`` with ``Retry-After`` (and ``/readyz`` says not ready, so
a load balancer drains the process). Failing open would let every process
run unlimited for as long as Redis is down, which is exactly when a shared
limit matters most; a 503 is honest and clients already retry it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from decisiongraph.core.errors import STORAGE
from decisiongraph.service.errors import RATE_LIMITED, ServiceError
from decisiongraph.service.settings import env_float

CLASSES = ("write", "read", "admin")


@dataclass(frozen=True, slots=True)
class Rates:
    """Requests per second per class; the burst is twice the rate."""

    write: float = field(
        default_factory=lambda: env_float("DG_RATE_WRITE", 200.0, "requests/s", allow_zero=True)
    )
    read: float = field(
        default_factory=lambda: env_float("DG_RATE_READ", 500.0, "requests/s", allow_zero=True)
    )
    admin: float = field(
        default_factory=lambda: env_float("DG_RATE_ADMIN", 10.0, "requests/s", allow_zero=True)
    )

    def of(self, route_class: str) -> float:
        rate: float = getattr(self, route_class)
        return rate


@dataclass(frozen=True, slots=True)
class Quota:
    """One bucket after a request drew from it."""

    limit: int  # the burst: requests that may be made at once
    remaining: int  # whole tokens left
    reset: int  # seconds until the bucket is full again
    retry_after: int  # 0 when the request may go ahead, else seconds to wait

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset).encode()),
        ]


class RateLimited(ServiceError):
    """429 ``DG_ERR_RATE_LIMITED``, with the bucket that refused."""

    def __init__(self, route_class: str, quota: Quota) -> None:
        super().__init__(
            f"Rate limit for {route_class} requests exceeded",
            code=RATE_LIMITED,
            details={"retry_after": quota.retry_after, "class": route_class},
        )
        self.quota = quota


class Buckets(Protocol):
    def take(self, key: str, rate: float, burst: float) -> tuple[float, float]:
        """(0, tokens left) when a token was taken, else (seconds until one
        is available, tokens there are)."""
        ...

    def ready(self) -> bool:
        """Whether the buckets can be drawn from now (for ``/readyz``)."""
        ...


class LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, burst: float) -> tuple[float, float]:
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._state.get(key, (burst, now))
            tokens = min(burst, tokens + (now - stamp) * rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0, tokens - 1
            self._state[key] = (tokens, now)
            return (1 - tokens) / rate, tokens

    def ready(self) -> bool:
        return True


_LUA = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or ARGV[2])
local stamp = tonumber(redis.call('HGET', KEYS[1], 's') or ARGV[3])
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tokens, 's', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {tostring(wait), tostring(tokens)}
"""


# A limiter check sits in front of every request: a Redis that does not
# answer must fail the request quickly, not hold a worker thread for good.
REDIS_TIMEOUT_SECONDS = 2.0


class RedisUnavailable(ServiceError):
    """Redis could not be asked: the request is refused with 503 (fail closed)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            "The rate limiter's store (Redis) is unavailable",
            code=STORAGE,
            details={"retry_after": 1, "cause": type(cause).__name__},
        )


class RedisBuckets:
    def __init__(self, url: str) -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._redis: Any = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._script = self._redis.register_script(_LUA)

    def take(self, key: str, rate: float, burst: float) -> tuple[float, float]:
        try:
            now = self._redis.time()
            seconds = float(now[0]) + float(now[1]) / 1e6
            wait, tokens = self._script(keys=[f"dg:rl:{key}"], args=[rate, burst, seconds])
            return float(wait), float(tokens)
        except self._errors as exc:
            raise RedisUnavailable(exc) from exc

    def ready(self) -> bool:
        try:
            return bool(self._redis.ping())
        except self._errors:
            return False


class RateLimiter:
    def __init__(self, rates: Rates | None = None, buckets: Buckets | None = None) -> None:
        self.rates = rates or Rates()
        url = os.environ.get("DG_REDIS_URL")
        self.buckets: Buckets = buckets or (RedisBuckets(url) if url else LocalBuckets())

    def ready(self) -> bool:
        return self.buckets.ready()

    def take(self, account: str, route_class: str) -> Quota | None:
        """Draw one request from the account's bucket for the class (None:
        that class is unlimited). A quota with ``retry_after`` refuses it."""
        rate = self.rates.of(route_class)
        if rate <= 0:
            return None
        burst = max(2 * rate, 1.0)
        wait, tokens = self.buckets.take(f"{account}:{route_class}", rate, burst)
        return Quota(
            limit=math.floor(burst),
            remaining=max(0, math.floor(tokens)),
            reset=math.ceil(max(0.0, burst - tokens) / rate),
            retry_after=max(1, math.ceil(wait)) if wait > 0 else 0,
        )

    def check(self, account: str, route_class: str) -> Quota | None:
        """:meth:`take`, raising :class:`RateLimited` when refused."""
        quota = self.take(account, route_class)
        if quota is not None and quota.retry_after:
            raise RateLimited(route_class, quota)
        return quota
