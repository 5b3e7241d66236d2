"""Prometheus metrics: requests, latencies, appends, projection lag.

Labels carry route templates (never raw paths), methods, statuses and
tenant/projection names: nothing secret, no configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from decisiongraph.runtime.health import projection_statuses


class LagCollector(Collector):
    """Projection lag per tenant and projection, read at scrape time."""

    def __init__(self, pool: Callable[[], Any]) -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        events = GaugeMetricFamily(
            "dg_projection_lag_events", "Events not yet applied", labels=["tenant", "projection"]
        )
        seconds = GaugeMetricFamily(
            "dg_projection_lag_seconds",
            "Age of the oldest unapplied event",
            labels=["tenant", "projection"],
        )
        pool = self._pool()
        if pool is not None:
            with pool.store() as store:
                for tenant in store.tenants():
                    for status in projection_statuses(store, tenant):
                        labels = [tenant, status.projection]
                        events.add_metric(labels, status.lag_events)
                        seconds.add_metric(labels, status.lag_seconds)
        yield events
        yield seconds


class Metrics:
    def __init__(self, pool: Callable[[], Any]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dg_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dg_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.appended = Counter(
            "dg_events_appended", "Events stored (not repeats)", ["tenant"], registry=self.registry
        )
        self._lag = LagCollector(pool)
        self.registry.register(self._lag)

    def render(self) -> bytes:
        """The exposition text; with several API processes (``serve
        --processes``, which sets ``PROMETHEUS_MULTIPROC_DIR``), the counts
        of all of them, whichever one the scrape reached."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        combined.register(self._lag)
        return generate_latest(combined)
