"""Wake-ups for idle workers: in-process signals and PostgreSQL LISTEN.

Notifications can be lost (a dropped connection, NOTIFY disabled), so they
only shorten waits; workers still poll on a timer and never depend on them.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from decisiongraph.store.postgres import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Wakeup:
    """A generation counter with a condition: ``wait`` returns on any ``wake``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def wake(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        """Block until a wake after generation ``seen``, or ``timeout`` seconds."""
        with self._cond:
            if self._generation == seen:
                self._cond.wait(timeout)


class PostgresListener(threading.Thread):
    """Relays ``NOTIFY dg_events`` to a :class:`Wakeup`, reconnecting on errors."""

    def __init__(self, url: str, wakeup: Wakeup, stop: threading.Event) -> None:
        super().__init__(name="dg-listen", daemon=True)
        self._url = url
        self._wakeup = wakeup
        self._halt = stop

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    while not self._halt.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wakeup.wake()
            except psycopg.Error as exc:
                log.warning("notification listener lost its connection: %s", exc)
                self._halt.wait(1.0)
