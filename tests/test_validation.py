"""Every validation rule of spec section 5, in order, with its code."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from decisiongraph.core.canonical_json import json_d, json_p
from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.event_types import PAYLOAD_RULES
from decisiongraph.core.hashing import payload_hash
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.core.validation import validate_envelope
from decisiongraph.projections.digests import EMPTY_DIGESTS
from decisiongraph.store import EventStore
from tests.contract.helpers import PAYLOADS, envelope

BASE = envelope("t1", 0, "TraceStarted")


def code_of(env: Any) -> str:
    with pytest.raises(DecisionGraphError) as caught:
        validate_envelope(env)
    return caught.value.code


@pytest.mark.parametrize(
    ("key", "ok"),
    [("", False), ("a\x00b", False), ("é" * 100, True), ("é" * 100 + "x", False), (" ", True)],
)
def test_idempotency_key_rules(key: str, ok: bool) -> None:
    env = replace(BASE, idempotency_key=key)
    if ok:
        validate_envelope(env)
    else:
        assert code_of(env) == "DG_ERR_INVALID_ARGUMENT"


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), {1: "int key"}, {"a": {2: "x"}}])
def test_payload_must_be_plain_json(bad: Any) -> None:
    payload = {**PAYLOADS["TraceStarted"], "extra": bad}
    assert code_of(replace(BASE, payload=payload)) == "DG_ERR_INVALID_ARGUMENT"


def test_circular_payload_is_refused() -> None:
    payload: dict[str, Any] = dict(PAYLOADS["TraceStarted"])
    payload["self"] = payload
    assert code_of(replace(BASE, payload=payload)) == "DG_ERR_INVALID_ARGUMENT"


def test_unknown_type_and_non_object_payload() -> None:
    assert code_of(replace(BASE, event_type="TraceStartd")) == "DG_ERR_SCHEMA_VIOLATION"
    assert code_of(replace(BASE, payload=["not", "an", "object"])) == "DG_ERR_SCHEMA_VIOLATION"  # type: ignore[arg-type]


def _required_cases() -> list[tuple[str, str, Any]]:
    cases = []
    for event_type, rules in PAYLOAD_RULES.items():
        for key, kind, nested in rules:
            cases.append((event_type, key, None))  # missing
            cases.append((event_type, key, 7))  # wrong type
            if kind == "str":
                cases.append((event_type, key, ""))
            for inner in nested:
                cases.append((event_type, f"{key}.{inner}", ""))
    return cases


@pytest.mark.parametrize(("event_type", "field", "value"), _required_cases())
def test_each_required_field(event_type: str, field: str, value: Any) -> None:
    payload = json.loads(json.dumps(PAYLOADS[event_type]))
    outer, _, inner = field.partition(".")
    target = payload[outer] if inner else payload
    name = inner or outer
    if value is None:
        del target[name]
    else:
        target[name] = value
    seq = 0 if event_type == "TraceStarted" else 1
    env = envelope("t1", seq, event_type, payload=payload)
    with pytest.raises(DecisionGraphError) as caught:
        validate_envelope(env)
    assert caught.value.code == "DG_ERR_SCHEMA_VIOLATION"
    assert name in caught.value.message


@pytest.mark.parametrize(
    ("where", "value", "path"),
    [
        ("payload", {"note": "Bearer abc"}, "$.payload.note"),
        ("payload", {"deep": {"list": ["ok", "x ghp_123"]}}, "$.payload.deep.list[1]"),
        ("payload", {"tz": "Asia/Tokyo"}, "$.payload.tz"),  # the frozen quirk
        ("payload", {"metric": "RISK-SCORE"}, "$.payload.metric"),
        ("tags", ("fine", "password=1"), "$.tags[1]"),
        ("actor", ActorRef("agent", "sk-live"), "$.actor.actor_id"),
        ("source", SourceRef("p", "s", "token=abc"), "$.source.subsystem"),
        ("correlation_id", "apikey=zzz", "$.correlation_id"),
        ("idempotency_key", "k-----BEGIN RSA PRIVATE KEY", "$.idempotency_key"),
    ],
)
def test_pii_guard(where: str, value: Any, path: str) -> None:
    if where == "payload":
        env = replace(BASE, payload={**PAYLOADS["TraceStarted"], **value})
    else:
        env = replace(BASE, **{where: value})
    with pytest.raises(DecisionGraphError) as caught:
        validate_envelope(env)
    assert caught.value.code == "DG_ERR_PII_POLICY_VIOLATION"
    assert f"at '{path}'" in caught.value.message


def test_pii_keys_and_unscanned_fields_pass() -> None:
    payload = {**PAYLOADS["TraceStarted"], "token=": "value"}
    validate_envelope(replace(BASE, payload=payload, event_id="sk-1", trace_id="sk-2"))


@pytest.mark.parametrize("number", [0.0, 1.5, float("nan"), float("inf"), -float("inf")])
def test_floats_are_refused(number: float) -> None:
    payload = {**PAYLOADS["TraceStarted"], "values": [1, {"x": number}]}
    assert code_of(replace(BASE, payload=payload)) == "DG_ERR_SCHEMA_VIOLATION"


def test_rule_order() -> None:
    both = {**PAYLOADS["TraceStarted"], "secret": "password=1", "ratio": 0.5}
    assert (
        code_of(replace(BASE, payload=both)) == "DG_ERR_PII_POLICY_VIOLATION"
    )  # PII before floats
    schema_and_pii = {"note": "password=1"}
    assert code_of(replace(BASE, payload=schema_and_pii)) == "DG_ERR_SCHEMA_VIOLATION"
    assert code_of(replace(BASE, payload={1: "x"}, idempotency_key="")) == "DG_ERR_INVALID_ARGUMENT"  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "change",
    [
        {"trace_seq": True},
        {"trace_seq": "1"},
        {"trace_seq": -1},
        {"tags": "x"},
        {"tags": [1]},
        {"source": "x"},
        {"actor": {"actor_type": "a"}},
        {"event_id": None},
        {"schema_version": 1.0},
    ],
)
def test_envelope_structure_errors(change: dict[str, Any]) -> None:
    data = BASE.to_dict()
    data.update(change)
    with pytest.raises(DecisionGraphError) as caught:
        envelope_from_dict(data)
    assert caught.value.code == "DG_ERR_INVALID_ARGUMENT"
    missing = BASE.to_dict()
    del missing["payload"]
    with pytest.raises(DecisionGraphError):
        envelope_from_dict(missing)


@pytest.mark.parametrize(
    "change",
    [
        {"idempotency_key": ""},
        {"payload": {"workflow": "w"}},
        {"payload": {**PAYLOADS["TraceStarted"], "k": "xoxb-1"}},
        {"payload": {**PAYLOADS["TraceStarted"], "f": 1.0}},
        {"trace_id": "nul\x00"},
        {"payload": {**PAYLOADS["TraceStarted"], "n": "a\x00"}},
    ],
)
def test_rejected_events_store_nothing(store: EventStore, change: dict[str, Any]) -> None:
    with pytest.raises(DecisionGraphError):
        store.append("v", [replace(BASE, **change)])
    assert store.get_last_log_seq("v") == 0
    assert store.list_events("v") == []
    assert store.tenants() == []


def test_canonical_json_vectors() -> None:
    deal = {
        "primary_entity": {
            "entity_id": "sf:opp:789",
            "entity_type": "opportunity",
            "system": "salesforce",
        },
        "title": "Healthcare customer discount approval",
        "workflow": "deal_approval",
    }
    assert (
        payload_hash(deal)
        == "sha256:05bdd600ea34428f6df95fa5c35f06fae382a84da0269a7d65968d88ff8de642"
    )
    mixed = {"b": "café 😀", "a": [1, True, None, 'x\ny"z\u0001']}
    assert json_p(mixed) == '{"a":[1,true,null,"x\\ny\\"z\\u0001"],"b":"café 😀"}'
    assert (
        payload_hash(mixed)
        == "sha256:515c9c26cb2c9fd0a140ef7728fdebccaca3619b785bb20489cba68cad88604f"
    )
    assert json_d(mixed) == '{"a":[1,true,null,"x\\ny\\"z\\u0001"],"b":"caf\\u00e9 \\ud83d\\ude00"}'
    assert (
        payload_hash({})
        == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    assert json_p({"\U0001f600": 1, "\uff61": 2}).index("\uff61") < json_p(
        {"\U0001f600": 1, "\uff61": 2}
    ).index("\U0001f600")
    empty_array = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
    assert EMPTY_DIGESTS.as_dict() == {
        "context_graph": "sha256:57501e5c6808b3e14852a4ea21dc7873abf9409032a06f9b740c973e83f62cf7",
        "trace_summary": empty_array,
        "precedent_index": empty_array,
        "full_projection": "sha256:"
        "841804c04c283692e5a12d6303d274a8c10f5430b19c7cb7f2587e9297d37dde",
    }
