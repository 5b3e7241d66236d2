"""The quicker ``__init__`` of the per-event dataclasses builds exactly what
the dataclass's own would: same fields, defaults, keywords, errors and
immutability; classes it cannot serve are refused at decoration."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from decisiongraph.core.envelope import EventEnvelope, StoredEvent
from decisiongraph.core.fast_init import fast_frozen_init
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.core.validation import ValidatedEvent

SOURCE = SourceRef("agent_1", "crm")
ACTOR = ActorRef("agent", "bot")


@dataclass(frozen=True, slots=True)
class Reference:
    """A twin of a decorated class, built by the dataclass's own __init__."""

    a: int
    b: str = "b"
    c: Any = None


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Fast:
    """The same fields, built by the quicker __init__."""

    a: int
    b: str = "b"
    c: Any = None


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, "x"), {}), ((1,), {"c": [2]}), ((), {"a": 1, "b": "y", "c": 3})],
)
def test_it_builds_what_the_dataclass_builds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    fast, reference = Fast(*args, **kwargs), Reference(*args, **kwargs)
    assert dataclasses.astuple(fast) == dataclasses.astuple(reference)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"), [((), {}), ((1, "x", None, 4), {}), ((1,), {"d": 1}), ((1,), {"a": 2})]
)
def test_it_refuses_what_the_dataclass_refuses(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError):
        Reference(*args, **kwargs)
    with pytest.raises(TypeError):
        Fast(*args, **kwargs)


def test_the_event_classes_keep_defaults_and_stay_frozen() -> None:
    stored = StoredEvent(
        "default",
        1,
        "e1",
        "t1",
        0,
        "TraceStarted",
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:01Z",
        SOURCE,
        ACTOR,
        "k1",
        {"workflow": "w"},
        "sha256:00",
    )
    assert (stored.correlation_id, stored.schema_version, stored.tags) == (None, 1, ())
    assert (stored.chain_hash, stored.repeated) == ("", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.log_seq = 2  # type: ignore[misc]
    again = dataclasses.replace(stored, repeated=True)
    assert again.repeated and again == stored  # `repeated` is not compared
    envelope = EventEnvelope(
        event_id="e1",
        trace_id="t1",
        trace_seq=0,
        event_type="TraceStarted",
        occurred_at="2026-01-01T00:00:00Z",
        source=SOURCE,
        actor=ACTOR,
        idempotency_key="k1",
        payload={},
    )
    assert (envelope.correlation_id, envelope.schema_version, envelope.tags) == (None, 1, ())
    validated = ValidatedEvent(envelope, "{}", "sha256:00", "[]")
    assert validated.envelope is envelope
    assert SourceRef("p", "s").subsystem is None
    assert hash(SourceRef("p", "s")) == hash(SourceRef("p", "s"))


def test_classes_it_cannot_serve_are_refused() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        a: int

    for cls in (Mutable, Unslotted, Factory, PostInit, KeywordOnly):
        with pytest.raises(TypeError):
            fast_frozen_init(cls)
