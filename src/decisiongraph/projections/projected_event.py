"""What the projection folds read of an event, and its lightest carrier.

The folds read eight fields of an event: where it stands in the log and in
its trace, what it is, when it happened, who acted, and its payload. Any
:class:`~decisiongraph.core.envelope.StoredEvent` has them (the inline
projection of an append passes those), but a catch-up that reads the log
back need not decode the other eleven columns nor build a nineteen-field
frozen dataclass per row: :class:`ReplayedEvent` holds just the eight, and
reading a batch that way takes half the time.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from decisiongraph.core.refs import ActorRef


class ProjectedEvent(Protocol):
    """The fields of an event that projections depend on."""

    @property
    def log_seq(self) -> int: ...

    @property
    def event_id(self) -> str: ...

    @property
    def trace_id(self) -> str: ...

    @property
    def trace_seq(self) -> int: ...

    @property
    def event_type(self) -> str: ...

    @property
    def occurred_at(self) -> str: ...

    @property
    def actor(self) -> ActorRef: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class ReplayedEvent(NamedTuple):
    """An event as a catch-up reads it back from the log."""

    log_seq: int
    event_id: str
    trace_id: str
    trace_seq: int
    event_type: str
    occurred_at: str
    actor: ActorRef
    payload: dict[str, Any]
