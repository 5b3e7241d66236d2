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

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from decisiongraph.core.validation import ValidatedEvent
from decisiongraph.store.append_plan import AppendPlan

# A group stops growing once it holds this many events (a bound on how long
# the connection is held and on the transaction's size).
MAX_GROUP_EVENTS = 5000


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
