"""A poisoned log for the dead-letter tests: an event whose stored payload
no longer matches its hash, behind the store's back, and the steps and looks
those tests share. The ``poisoned`` fixture is in ``conftest.py``."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from decisiongraph.projections.rows import TRACE_SUMMARY
from decisiongraph.runtime.backoff import Backoff
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.worker import ProjectionWorker
from decisiongraph.store.postgres import is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from tests.runtime.support import T

P = TRACE_SUMMARY
POISON = 37  # an InputObserved in the middle of the trace started at log_seq 33
TRACE_START = 33
TRACE_FINISH = 45
TINY = Backoff(base=0.001, cap=0.005)


def raw_sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Behind the store's back, as a tamperer or a bad migration would."""
    if is_postgres_url(url):
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def set_payload(url: str, log_seq: int, payload_json: str) -> None:
    raw_sql(
        url,
        "UPDATE dg_event_log SET payload_json = ? WHERE tenant_id = ? AND log_seq = ?",
        (payload_json, T, log_seq),
    )


@dataclass
class Poisoned:
    url: str
    store: SqlEventStore
    original_payload: str
    event_id: str
    trace_ids: list[str]  # by log_seq - 1

    def worker(self, backoff: Backoff = TINY) -> ProjectionWorker:
        return ProjectionWorker(
            self.store, T, P, "test-owner", batch_size=10, max_attempts=3, backoff=backoff
        )


def step_until(worker: ProjectionWorker, done: Callable[[], bool], timeout: float = 20.0) -> int:
    """Step the worker until ``done``; returns how many steps it took."""
    deadline = time.monotonic() + timeout
    steps = 0
    while not done():
        assert time.monotonic() < deadline, "the worker did not get there in time"
        worker.step()
        steps += 1
        time.sleep(0.002)
    return steps


def status_of(store: SqlEventStore, projection: str = P) -> Any:
    return {s.projection: s for s in projection_statuses(store, T)}[projection]
