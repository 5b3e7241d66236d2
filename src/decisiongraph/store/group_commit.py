"""Group commit: concurrent appends on one connection share a transaction.

A SQLite database has a single writer, and for small appends most of a
write's cost is its commit: every page the append dirtied (a leaf of each
random-keyed index) goes to the write-ahead log. Appends that arrive while
another is being written wait in a queue; whoever next holds the connection
writes every queued append in one transaction, each under its own savepoint
so that each still succeeds or fails alone, and commits once. Nobody waits
longer than they would have for the lock anyway.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from decisiongraph.core.validation import ValidatedEvent
from decisiongraph.store.append_plan import AppendPlan

# A group stops growing once it holds this many events (a bound on how long
# the connection is held and on the transaction's size).
MAX_GROUP_EVENTS = 5000

# How long a writer holding the connection waits for appends on their way
# (see Arrivals), so that they share its commit. Never longer: a lone append
# never waits at all.
LINGER_SECONDS = 0.002


@dataclass(eq=False, slots=True)
class QueuedAppend:
    """One caller's append, waiting for (or done by) a group transaction."""

    tenant_id: str
    items: Sequence[ValidatedEvent]
    recorded_at: str
    project: bool
    done: bool = False
    result: tuple[AppendPlan, bool] | None = None
    error: BaseException | None = None

    def outcome(self) -> tuple[AppendPlan, bool]:
        """The append's plan and whether it projected inline, or its error."""
        if self.error is not None:
            raise self.error
        if self.result is None:  # pragma: no cover - a group always settles its members
            raise RuntimeError("append left unsettled")
        return self.result


def take_group(queue: deque[QueuedAppend]) -> list[QueuedAppend]:
    """The oldest queued appends, at least one, up to ``MAX_GROUP_EVENTS``."""
    group = [queue.popleft()]
    size = len(group[0].items)
    while queue and size + len(queue[0].items) <= MAX_GROUP_EVENTS:
        member = queue.popleft()
        group.append(member)
        size += len(member.items)
    return group


class Arrival:
    """One append on its way to the queue (settled once it is queued)."""

    __slots__ = ("_arrivals",)

    def __init__(self, arrivals: Arrivals | None) -> None:
        self._arrivals = arrivals  # None once settled (or for NO_ARRIVAL)

    def settle(self) -> None:
        arrivals, self._arrivals = self._arrivals, None
        if arrivals is not None:
            arrivals.leave()


class Arrivals:
    """Appends on their way (a request being read, parsed, validated) but
    not yet queued.

    Commits dominate small appends, so a writer does better to wait the
    moment it takes for a concurrent caller to arrive and to write both in
    one transaction, than to commit alone and make the other commit again
    right after. The wait is bounded by ``LINGER_SECONDS``, and an append
    with nobody else on the way never waits.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._count = 0

    def arrive(self) -> Arrival:
        with self._changed:
            self._count += 1
        return Arrival(self)

    def leave(self) -> None:
        with self._changed:
            self._count -= 1
            if self._count == 0:
                self._changed.notify_all()

    @property
    def on_the_way(self) -> int:
        return self._count

    def wait_until_queued(self) -> None:
        """Return once no append is on its way, or after ``LINGER_SECONDS``."""
        if self._count == 0:  # the usual case, without taking the lock
            return
        with self._changed:
            self._changed.wait_for(lambda: self._count == 0, LINGER_SECONDS)


NO_ARRIVAL = Arrival(None)
