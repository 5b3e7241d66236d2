"""Value objects (spec 2) and what the typed helpers do with wrong ones.

``Change`` follows the spec's ``Change(path, old_value, new_value)``; a record
of the wrong type handed to a helper is ``DG_ERR_INVALID_ARGUMENT`` with
nothing stored, never a raw ``AttributeError`` or ``KeyError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from decisiongraph import DecisionGraph
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import (
    ActorRef,
    Change,
    EntityRef,
    EvidenceRef,
    Fact,
    SourceObjectRef,
    SourceRef,
    Value,
)

SOURCE = SourceRef("agent", "crm")
ACTOR = ActorRef("agent", "bot")
ACCOUNT = EntityRef("account", "acme")


@pytest.fixture
def dg() -> Iterator[DecisionGraph]:
    with DecisionGraph(":memory:") as graph:
        yield graph


def test_change_fields_are_the_spec_s_in_order_without_defaults() -> None:
    assert [f.name for f in dataclasses.fields(Change)] == ["path", "old_value", "new_value"]
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(Change))
    change = Change("limits.discount", Value("int", "10"), Value("int", "12"))
    assert change.to_dict() == {
        "path": "limits.discount",
        "old_value": {"type": "int", "value": "10"},
        "new_value": {"type": "int", "value": "12"},
    }


def test_propose_action_with_a_new_path_stores_old_value_null(dg: DecisionGraph) -> None:
    trace = dg.start_trace("w", "t", ACCOUNT, SOURCE, ACTOR)
    stored = dg.propose_action(
        trace, "a1", "set", ACCOUNT, "crm", [Change("p", None, Value("int", "1"))], SOURCE, ACTOR
    )
    assert stored.payload["changes"] == [
        {"path": "p", "old_value": None, "new_value": {"type": "int", "value": "1"}}
    ]


def _wrong_calls(trace: str) -> dict[str, Callable[[DecisionGraph], Any]]:
    old_order = Change("p", Value("int", "1"), None)  # type: ignore[arg-type]
    return {
        "change in the old argument order": lambda g: g.propose_action(
            trace, "a1", "set", ACCOUNT, "crm", [old_order], SOURCE, ACTOR
        ),
        "change old_value a string": lambda g: g.propose_action(
            trace, "a1", "set", ACCOUNT, "crm", [Change("p", "1", Value("int", "2"))],  # type: ignore[arg-type]
            SOURCE, ACTOR,
        ),
        "fact value a string": lambda g: g.observe_entity(
            trace, ACCOUNT, "primary", [Fact("tier", "gold")], SOURCE, ACTOR  # type: ignore[arg-type]
        ),
        "evidence source a dict": lambda g: g.request_exception(
            trace, "x1", {"policy_id": "p", "policy_version": "1"}, "why", SOURCE, ACTOR,
            evidence=[EvidenceRef({"system": "s"}, "loc")],  # type: ignore[arg-type]
        ),
        "source a string": lambda g: g.finish_trace(trace, "success", "agent", ACTOR),  # type: ignore[arg-type]
        "actor missing a key": lambda g: g.finish_trace(
            trace, "success", SOURCE, {"actor_type": "agent"}
        ),
        "primary entity a string": lambda g: g.start_trace("w", "t", "acme", SOURCE, ACTOR),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_wrong_calls("")))
def test_wrong_record_types_are_invalid_argument_and_store_nothing(
    dg: DecisionGraph, case: str
) -> None:
    trace = dg.start_trace("w", "t", ACCOUNT, SOURCE, ACTOR)
    before = dg.get_projection_health().event_count
    with pytest.raises(DecisionGraphError) as caught:
        _wrong_calls(trace)[case](dg)
    assert caught.value.code == "DG_ERR_INVALID_ARGUMENT", caught.value
    assert dg.get_projection_health().event_count == before


def test_records_still_nest_as_the_spec_shapes() -> None:
    source = SourceObjectRef("crm", "ticket", "T-1")
    assert EvidenceRef(source, "p. 2").to_dict()["source"] == {
        "system": "crm",
        "object_type": "ticket",
        "object_id": "T-1",
        "locator": None,
    }
    assert Fact("tier", Value("string", "gold")).to_dict() == {
        "key": "tier",
        "value": {"type": "string", "value": "gold"},
        "as_of": None,
    }
