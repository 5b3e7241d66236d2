"""Token buckets per (account, route class): write, read, admin.

In-process by default; with ``DG_REDIS_URL`` the buckets live in Redis (one
atomic Lua script per check), so every API process draws from the same
bucket. Over the limit: 429 with ``Retry-After``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from decisiongraph.service.errors import RATE_LIMITED, ServiceError

CLASSES = ("write", "read", "admin")


@dataclass(frozen=True, slots=True)
class Rates:
    """Requests per second per class; the burst is twice the rate."""

    write: float = field(default_factory=lambda: float(os.environ.get("DG_RATE_WRITE", "200")))
    read: float = field(default_factory=lambda: float(os.environ.get("DG_RATE_READ", "500")))
    admin: float = field(default_factory=lambda: float(os.environ.get("DG_RATE_ADMIN", "10")))

    def of(self, route_class: str) -> float:
        rate: float = getattr(self, route_class)
        return rate


class Buckets(Protocol):
    def take(self, key: str, rate: float, burst: float) -> float:
        """0 when a token was taken, else seconds until one is available."""
        ...


class LocalBuckets:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, burst: float) -> float:
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._state.get(key, (burst, now))
            tokens = min(burst, tokens + (now - stamp) * rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / rate


_LUA = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or ARGV[2])
local stamp = tonumber(redis.call('HGET', KEYS[1], 's') or ARGV[3])
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tokens, 's', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RedisBuckets:
    def __init__(self, url: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url)
        self._script = self._redis.register_script(_LUA)

    def take(self, key: str, rate: float, burst: float) -> float:
        now = self._redis.time()
        seconds = float(now[0]) + float(now[1]) / 1e6
        return float(self._script(keys=[f"dg:rl:{key}"], args=[rate, burst, seconds]))


class RateLimiter:
    def __init__(self, rates: Rates | None = None, buckets: Buckets | None = None) -> None:
        self.rates = rates or Rates()
        url = os.environ.get("DG_REDIS_URL")
        self.buckets: Buckets = buckets or (RedisBuckets(url) if url else LocalBuckets())

    def check(self, account: str, route_class: str) -> None:
        rate = self.rates.of(route_class)
        if rate <= 0:
            return
        wait = self.buckets.take(f"{account}:{route_class}", rate, max(2 * rate, 1.0))
        if wait > 0:
            raise ServiceError(
                f"Rate limit for {route_class} requests exceeded",
                code=RATE_LIMITED,
                details={"retry_after": max(1, math.ceil(wait)), "class": route_class},
            )
