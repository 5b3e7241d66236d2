"""A helper thread that prepares the next batch of a long catch-up while the
writer commits the current one.

A SQLite commit (writing the dirty pages to the WAL) is the longest stretch
in which the writer holds no GIL; the next batch's read, decode and fold
need nothing that commit changes. The helper therefore works only when asked
(just before a commit) and hands back one result per request: it never runs
while the writer inserts rows, which drop and retake the GIL row by row and
would crawl against a busy thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """``prepare(after)`` on a helper thread, one request at a time."""

    def __init__(self, prepare: Callable[[int], T]) -> None:
        self._prepare = prepare
        self._requests: queue.Queue[int | None] = queue.Queue()
        self._results: queue.Queue[Callable[[], T]] = queue.Queue()
        self._pending = False
        self._thread = threading.Thread(target=self._run, name="dg-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (after := self._requests.get()) is not None:
            try:
                value = self._prepare(after)
            except BaseException as exc:  # handed to the writer, which raises it
                self._results.put(_raising(exc))
            else:
                self._results.put(_returning(value))

    def request(self, after: int) -> None:
        """Start preparing what follows ``after`` (the writer is about to commit)."""
        self._pending = True
        self._requests.put(after)

    def take(self) -> T:
        """The requested result, waiting for it; the helper's error is raised here."""
        self._pending = False
        return self._results.get()()

    def close(self) -> None:
        """Stop the helper (after any request in progress) and wait for it."""
        if self._pending:
            self._results.get()
            self._pending = False
        self._requests.put(None)
        self._thread.join()


def _returning(value: T) -> Callable[[], T]:
    return lambda: value


def _raising(error: BaseException) -> Callable[[], NoReturn]:
    def fail() -> NoReturn:
        raise error

    return fail
