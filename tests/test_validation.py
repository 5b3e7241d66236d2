"""Every validation rule of spec section 5, in order, with its code (no database).

The rules are restated here from the spec (required fields, the 25 forbidden
patterns) rather than read from the product's tables, so a wrong table fails.
That a rejected event leaves no trace in a store is checked per backend in
``tests/contract/test_append.py``.
"""

from __future__ import annotations

import decimal
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decisiongraph.core.envelope import (
    EventEnvelope,
    _checked_envelope,
    _well_formed,
    envelope_from_dict,
)
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.helpers import EventHelpers
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.core.validation import MAX_PAYLOAD_DEPTH, validate_envelope
from tests.contract.helpers import PAYLOADS, envelope, payload_of

INVALID = "DG_ERR_INVALID_ARGUMENT"
SCHEMA = "DG_ERR_SCHEMA_VIOLATION"
PII = "DG_ERR_PII_POLICY_VIOLATION"

BASE = envelope("t1", 0, "TraceStarted")


def error(env: Any) -> DecisionGraphError:
    with pytest.raises(DecisionGraphError) as caught:
        validate_envelope(env)
    return caught.value


def code(env: Any) -> str:
    return error(env).code


def with_payload(**extra: Any) -> EventEnvelope:
    """BASE with extra payload keys (added after the required ones)."""
    return replace(BASE, payload=payload_of("TraceStarted", **extra))


def of_type(event_type: str, payload: Any) -> EventEnvelope:
    seq = 0 if event_type == "TraceStarted" else 1
    return replace(envelope("t1", seq, event_type), payload=payload)


# -- step 1: the idempotency key ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("", False),
        ("\x00", False),
        ("a\x00b", False),
        ("a" * 200, True),
        ("a" * 201, False),
        ("é" * 100, True),  # 100 characters, exactly 200 bytes
        ("é" * 100 + "x", False),  # 101 characters, 201 bytes
        ("é" * 150, False),  # 150 characters but 300 bytes: bytes are counted
        ("😀" * 50, True),
        ("😀" * 50 + "a", False),
        ("€" * 66 + "ab", True),  # 198 + 2 bytes
        (" ", True),  # whitespace-only keys are allowed
        ("\t \n", True),
    ],
)
def test_idempotency_key_rules(key: str, ok: bool) -> None:
    env = replace(BASE, idempotency_key=key)
    if ok:
        assert validate_envelope(env).envelope is env
    else:
        assert code(env) == INVALID


def test_idempotency_key_must_be_a_string() -> None:
    for key in (None, 7, b"key"):
        assert code(replace(BASE, idempotency_key=key)) == INVALID


# -- step 2: JSON safety -------------------------------------------------------------


def _circular_dict() -> dict[str, Any]:
    payload: dict[str, Any] = payload_of("TraceStarted")
    payload["self"] = payload
    return payload


def _circular_list() -> dict[str, Any]:
    items: list[Any] = [1]
    items.append(items)
    return payload_of("TraceStarted", items=items)


@pytest.mark.parametrize(
    "payload",
    [
        payload_of("TraceStarted", extra={1, 2}),
        payload_of("TraceStarted", extra=frozenset()),
        payload_of("TraceStarted", extra=b"bytes"),
        payload_of("TraceStarted", extra=bytearray(b"x")),
        payload_of("TraceStarted", extra=object()),
        payload_of("TraceStarted", extra=lambda: None),
        payload_of("TraceStarted", extra=decimal.Decimal("1.5")),
        payload_of("TraceStarted", extra=1j),
        payload_of("TraceStarted", deep={"list": [1, {"x": {3}}]}),
        _circular_dict(),
        _circular_list(),
    ],
    ids=["set", "frozenset", "bytes", "bytearray", "object", "function", "Decimal", "complex",
         "nested set", "circular dict", "circular list"],
)  # fmt: skip
def test_payload_must_be_json_serializable(payload: dict[str, Any]) -> None:
    assert code(replace(BASE, payload=payload)) == INVALID


@pytest.mark.parametrize(
    "payload",
    [
        {**PAYLOADS["TraceStarted"], 1: "int key"},
        {**PAYLOADS["TraceStarted"], "nested": {2: "x"}},
        {**PAYLOADS["TraceStarted"], "in_list": [{None: "x"}]},
        {**PAYLOADS["TraceStarted"], True: "x"},
        {**PAYLOADS["TraceStarted"], 1.5: "x"},
        {**PAYLOADS["TraceStarted"], (1, 2): "x"},
        {1: "only int keys"},
    ],
)
def test_non_string_keys_are_refused(payload: dict[Any, Any]) -> None:
    # Spec 6.5 leaves the code open (INVALID_ARGUMENT or SCHEMA_VIOLATION).
    assert code(replace(BASE, payload=payload)) in (INVALID, SCHEMA)


# -- step 3: payload shape -------------------------------------------------------------


@pytest.mark.parametrize(
    "event_type", ["TraceStartd", "tracestarted", "", "WorkflowReviewRequested", "Trace Started"]
)
def test_unknown_event_type(event_type: str) -> None:
    err = error(replace(BASE, event_type=event_type))
    assert err.code == SCHEMA
    # Checked before the payload's shape.
    err = error(replace(BASE, event_type=event_type, payload=["not", "an", "object"]))
    assert err.code == SCHEMA and "unknown" in err.message.lower()


@pytest.mark.parametrize("payload", [["a"], "text", None, 5, ("tuple",), True])
def test_payload_must_be_an_object(payload: Any) -> None:
    for event_type in PAYLOADS:
        assert code(of_type(event_type, payload)) == SCHEMA, event_type


# The runtime-enforced table of spec section 4, restated.
REQUIRED: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "TraceStarted": [
        ("workflow", "str", ()),
        ("title", "str", ()),
        ("primary_entity", "obj", ("entity_type", "entity_id")),
    ],
    "InputObserved": [
        ("input_id", "str", ()),
        ("source", "obj", ("system", "object_type", "object_id")),
        ("facts", "list", ()),
    ],
    "EntityObserved": [
        ("entity", "obj", ("entity_type", "entity_id")),
        ("role", "str", ()),
        ("facts", "list", ()),
    ],
    "PolicyEvaluated": [
        ("policy", "obj", ("policy_id", "policy_version")),
        ("inputs", "list", ()),
        ("decision", "str", ()),
    ],
    "ExceptionRequested": [
        ("exception_id", "str", ()),
        ("policy", "obj", ("policy_id", "policy_version")),
        ("reason", "str", ()),
    ],
    "ApprovalRecorded": [
        ("approval_id", "str", ()),
        ("subject", "obj", ("subject_type", "subject_id")),
        ("approver", "obj", ("actor_type", "actor_id")),
        ("decision", "str", ()),
    ],
    "PrecedentCited": [("cited_trace_id", "str", ()), ("reason", "str", ())],
    "ActionProposed": [
        ("action_id", "str", ()),
        ("action_type", "str", ()),
        ("target_entity", "obj", ("entity_type", "entity_id")),
        ("target_system", "str", ()),
        ("changes", "list", ()),
    ],
    "ActionCommitted": [("action_id", "str", ()), ("status", "str", ())],
    "TraceFinished": [("outcome", "str", ())],
}
MISSING = object()
BAD_VALUES = {
    "str": ["", 7, None, ["x"], {"a": "b"}, True],
    "obj": ["x", [], None, 7, ("entity_type", "entity_id")],
    "list": [{}, "x", None, 5, (), True],
}


def _required_cases() -> list[tuple[str, str, Any]]:
    cases: list[tuple[str, str, Any]] = []
    for event_type, rules in REQUIRED.items():
        for key, kind, nested in rules:
            cases.append((event_type, key, MISSING))
            cases.extend((event_type, key, value) for value in BAD_VALUES[kind])
            for inner in nested:
                for value in (MISSING, "", 5, None, ["x"]):
                    cases.append((event_type, f"{key}.{inner}", value))
    return cases


@pytest.mark.parametrize(("event_type", "field", "value"), _required_cases())
def test_each_required_field(event_type: str, field: str, value: Any) -> None:
    payload = payload_of(event_type)
    outer, _, inner = field.partition(".")
    target = payload[outer] if inner else payload
    name = inner or outer
    if value is MISSING:
        del target[name]
    else:
        target[name] = value
    err = error(of_type(event_type, payload))
    assert err.code == SCHEMA
    assert name in err.message


@pytest.mark.parametrize("event_type", list(REQUIRED))
def test_first_failing_rule_wins_in_table_order(event_type: str) -> None:
    rules = REQUIRED[event_type]
    assert rules[0][0] in error(of_type(event_type, {})).message
    if len(rules) > 1:
        payload = payload_of(event_type)
        for key, _, _ in rules[1:]:
            del payload[key]
        assert rules[1][0] in error(of_type(event_type, payload)).message


def test_what_the_schema_does_not_check() -> None:
    """Whitespace-only strings, any enum value, optional and extra keys pass."""
    relaxed = {
        "TraceStarted": payload_of("TraceStarted", workflow=" ", title="\t", context=5),
        "EntityObserved": payload_of("EntityObserved", role="bystander"),
        "PolicyEvaluated": payload_of("PolicyEvaluated", decision="maybe", violations="x"),
        "ApprovalRecorded": payload_of(
            "ApprovalRecorded",
            decision="perhaps",
            reason=7,
            subject={"subject_type": "anything", "subject_id": "x", "exception_id": None},
            approver={"actor_type": "robot", "actor_id": "r2"},
        ),
        "PrecedentCited": payload_of("PrecedentCited", similarity_score="0.9"),
        "ActionCommitted": payload_of("ActionCommitted", status="partial", error=None),
        "TraceFinished": {"outcome": "approved", "summary": ["free"]},
        "InputObserved": payload_of(
            "InputObserved",
            facts=[1, "not a fact"],
            source={**PAYLOADS["InputObserved"]["source"], "locator": 1},
        ),
    }
    for event_type, payload in relaxed.items():
        validated = validate_envelope(of_type(event_type, payload))
        assert validated.payload_hash.startswith("sha256:")


# -- step 4: the PII / secret guard -------------------------------------------------------

PATTERNS = [
    "Bearer ", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "sk-", "ghp_", "gho_", "ghu_", "ghs_",
    "ghr_", "-----BEGIN", "-----BEGIN PRIVATE KEY", "-----BEGIN RSA PRIVATE KEY",
    "-----BEGIN EC PRIVATE KEY", "-----BEGIN OPENSSH PRIVATE KEY", "AKIA", "ASIA",
    "api_key=", "apikey=", "api-key:", "password=", "passwd=", "secret=", "token=",
]  # fmt: skip


def _first_in_code_point_order(text: str) -> str:
    return min(p for p in PATTERNS if p.lower() in text.lower())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_pattern_case_insensitively(pattern: str) -> None:
    for variant in (pattern, pattern.lower(), pattern.upper(), pattern.swapcase()):
        text = f"prefix {variant} suffix"
        err = error(with_payload(note=text))
        assert err.code == PII, variant
        expected = _first_in_code_point_order(text)
        assert err.message == f"Forbidden content '{expected}' found at '$.payload.note'"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("risk-score", "sk-"),  # frozen quirk: ordinary words are caught
        ("Asia/Tokyo", "ASIA"),
        ("Caucasian", "ASIA"),
        ("Slovakia", "AKIA"),
        ("desk-1", "sk-"),
        ("task-7", "sk-"),
        ("xoxb-1 and AKIA", "AKIA"),  # the first pattern in code-point order is named
        ("token= then sk-", "sk-"),
        ("-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN"),
        ("ghp_x Bearer y", "Bearer "),
        ("api_key= api-key:", "api-key:"),
        ("PASSWORD=hunter2", "password="),
    ],
)
def test_quirks_and_the_named_pattern(text: str, named: str) -> None:
    err = error(with_payload(note=text))
    assert err.code == PII
    assert f"'{named}'" in err.message and "'$.payload.note'" in err.message


def test_near_misses_pass() -> None:
    for text in ("bearer", "Bearer\tx", "sk_", "risk_score", "Asi a", "token =", "api key:"):
        validate_envelope(with_payload(note=text))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"payload": payload_of("TraceStarted", note="Bearer abc")}, "$.payload.note"),
        (
            {"payload": payload_of("TraceStarted", deep={"list": ["ok", 3, "x ghp_123"]})},
            "$.payload.deep.list[2]",
        ),
        ({"payload": payload_of("TraceStarted", title="risk-score")}, "$.payload.title"),
        (
            {
                "payload": payload_of(
                    "TraceStarted",
                    primary_entity={"entity_type": "city", "entity_id": "Asia/Tokyo"},
                )
            },
            "$.payload.primary_entity.entity_id",
        ),
        ({"tags": ("fine", "password=1")}, "$.tags[1]"),
        ({"actor": ActorRef("agent", "sk-live")}, "$.actor.actor_id"),
        ({"actor": ActorRef("AKIA", "x")}, "$.actor.actor_type"),
        ({"source": SourceRef("ghs_p", "s")}, "$.source.producer_id"),
        ({"source": SourceRef("p", "secret=1")}, "$.source.system"),
        ({"source": SourceRef("p", "s", "token=abc")}, "$.source.subsystem"),
        ({"correlation_id": "apikey=zzz"}, "$.correlation_id"),
        ({"causation_event_id": "xoxp-1"}, "$.causation_event_id"),
        ({"idempotency_key": "k-----BEGIN RSA PRIVATE KEY"}, "$.idempotency_key"),
    ],
)
def test_pii_paths(change: dict[str, Any], path: str) -> None:
    err = error(replace(BASE, **change))
    assert err.code == PII
    assert err.message.endswith(f"found at '{path}'")


def test_pii_walk_order() -> None:
    """Depth-first: payload (insertion order), tags, actor, source, ids, key."""
    payload = payload_of("TraceStarted", zeta="sk-1", alpha="token=2")
    everywhere = replace(
        BASE,
        payload=payload,
        tags=("ghp_1",),
        actor=ActorRef("agent", "AKIA"),
        source=SourceRef("p", "secret=x"),
        correlation_id="xoxb-1",
        causation_event_id="xoxp-1",
        idempotency_key="passwd=1",
    )
    order = ["$.payload.zeta", "$.tags[0]", "$.actor.actor_id", "$.source.system",
             "$.correlation_id", "$.causation_event_id", "$.idempotency_key"]  # fmt: skip
    env = everywhere
    for path in order:
        assert error(env).message.endswith(f"'{path}'"), path
        env = {
            "$.payload.zeta": lambda e: replace(e, payload=payload_of("TraceStarted")),
            "$.tags[0]": lambda e: replace(e, tags=()),
            "$.actor.actor_id": lambda e: replace(e, actor=ActorRef("agent", "a")),
            "$.source.system": lambda e: replace(e, source=SourceRef("p", "s")),
            "$.correlation_id": lambda e: replace(e, correlation_id=None),
            "$.causation_event_id": lambda e: replace(e, causation_event_id=None),
            "$.idempotency_key": lambda e: replace(e, idempotency_key="k"),
        }[path](env)
    validate_envelope(env)


def test_unscanned_places_pass() -> None:
    """Keys, non-strings, event_id, trace_id and occurred_at are not scanned."""
    env = replace(
        BASE,
        payload={**payload_of("TraceStarted"), "token=": "value", "n": 7, "b": True, "z": None},
        event_id="sk-event",
        trace_id="Asia/Tokyo",
        occurred_at="token=now",
        schema_version=3,
    )
    validate_envelope(env)


# -- step 5: floats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.5, 1e300, 2.0, float("nan"), float("inf"), -float("inf")],
)
def test_floats_are_refused_anywhere(value: float) -> None:
    for where in ({"x": value}, {"x": [1, value]}, {"x": [[{"y": [value]}]]}, {"x": (value,)}):
        assert code(with_payload(**where)) == SCHEMA, where


def test_ints_and_bools_of_any_size_pass() -> None:
    validated = validate_envelope(
        with_payload(big=2**200, small=-(2**200), zero=0, flags=[True, False], text="1.5e3 NaN")
    )
    assert validated.payload_hash.startswith("sha256:")


# -- order of the steps ----------------------------------------------------------------------


def test_rule_order() -> None:
    key = {"idempotency_key": ""}
    # 1 before everything
    assert code(replace(BASE, event_type="Nope", **key)) == INVALID
    assert code(replace(BASE, payload={"note": "token=", "f": 1.5}, **key)) == INVALID
    long_secret = "token=" + "x" * 300
    assert code(replace(BASE, idempotency_key=long_secret)) == INVALID
    # 2 before 3: a non-serializable value in an invalid payload
    assert code(replace(BASE, payload={"x": {1, 2}})) == INVALID
    # 3 before 4 and 5
    assert code(replace(BASE, payload={"note": "password=1"})) == SCHEMA
    assert code(replace(BASE, payload={"note": "password=1"}, tags=("sk-",))) == SCHEMA
    schema_first = error(replace(BASE, payload={"workflow": "w", "ratio": 0.5}))
    assert schema_first.code == SCHEMA and "title" in schema_first.message
    # 4 before 5, wherever the float and the secret are
    assert code(with_payload(ratio=0.5, secret="password=1")) == PII
    assert (
        code(replace(BASE, payload={"r": 0.5, **payload_of("TraceStarted")}, tags=("sk-",))) == PII
    )
    # NaN passes step 2 (it is not a JSON-safety failure) and fails at step 5
    assert code(with_payload(n=float("nan"))) == SCHEMA
    assert code(with_payload(n=float("nan"), s="ghp_")) == PII


# -- envelope structure --------------------------------------------------------------------


def test_structurally_broken_envelopes() -> None:
    """Wrong Python types in an envelope are INVALID_ARGUMENT, not a crash."""
    broken = [
        {"trace_seq": True},
        {"trace_seq": "1"},
        {"trace_seq": 1.0},
        {"trace_seq": None},
        {"trace_seq": 2**63},
        {"schema_version": "1"},
        {"schema_version": False},
        {"event_id": None},
        {"trace_id": 5},
        {"occurred_at": None},
        {"event_type": None},
        {"tags": ("ok", 1)},
        {"tags": [None]},
        {"source": SourceRef("p", None)},  # type: ignore[arg-type]
        {"source": SourceRef("p", "s", 5)},  # type: ignore[arg-type]
        {"actor": ActorRef("agent", None)},  # type: ignore[arg-type]
        {"correlation_id": 5},
        {"causation_event_id": ["x"]},
        {"trace_id": "nul\x00"},
        {"actor": ActorRef("agent", "\ud800")},
        {"payload": payload_of("TraceStarted", title="a\x00b")},
        {"payload": payload_of("TraceStarted", **{"k\x00": "v"})},
        {"payload": payload_of("TraceStarted", title="\udfff")},
        # wrong container types (fixed: previously a crash or a silent split)
        {"tags": "urgent"},
        {"tags": None},
        {"source": {"producer_id": "p", "system": "s"}},
        {"actor": None},
    ]
    for change in broken:
        assert code(replace(BASE, **change)) == INVALID, change


def test_helpers_refuse_a_string_as_tags() -> None:
    helpers: EventHelpers[object] = EventHelpers()
    built = helpers.build_envelope(
        "t1", 0, "TraceStarted", {}, SourceRef("p", "s"), ActorRef("a", "b"), "now", tags=["x"]
    )
    assert built.tags == ("x",)
    with pytest.raises(DecisionGraphError) as caught:
        helpers.build_envelope(
            "t1", 0, "TraceStarted", {}, SourceRef("p", "s"), ActorRef("a", "b"), "now", tags="x y"
        )
    assert caught.value.code == INVALID


@pytest.mark.parametrize(
    "change",
    [
        {"trace_seq": True},
        {"trace_seq": False},
        {"trace_seq": "1"},
        {"trace_seq": -1},
        {"trace_seq": 1.0},
        {"trace_seq": None},
        {"schema_version": True},
        {"schema_version": "1"},
        {"schema_version": 1.0},
        {"schema_version": None},
        {"tags": "x"},
        {"tags": [1]},
        {"tags": [None]},
        {"tags": {"a": 1}},
        {"source": "x"},
        {"source": None},
        {"source": {}},
        {"source": {"producer_id": "p"}},
        {"source": {"producer_id": 1, "system": "s"}},
        {"source": {"producer_id": "p", "system": "s", "subsystem": 5}},
        {"actor": "x"},
        {"actor": {"actor_type": "a"}},
        {"actor": {"actor_type": "a", "actor_id": 5}},
        {"event_id": None},
        {"event_id": 5},
        {"trace_id": None},
        {"event_type": 1},
        {"occurred_at": None},
        {"idempotency_key": None},
        {"correlation_id": 5},
        {"causation_event_id": []},
    ],
)
def test_envelope_from_dict_structure_errors(change: dict[str, Any]) -> None:
    data = BASE.to_dict()
    data.update(change)
    with pytest.raises(DecisionGraphError) as caught:
        envelope_from_dict(data)
    assert caught.value.code == INVALID


@pytest.mark.parametrize(
    "key",
    ["event_id", "trace_id", "trace_seq", "event_type", "occurred_at", "source", "actor",
     "idempotency_key", "payload"],
)  # fmt: skip
def test_envelope_from_dict_missing_fields(key: str) -> None:
    data = BASE.to_dict()
    del data[key]
    with pytest.raises(DecisionGraphError) as caught:
        envelope_from_dict(data)
    assert caught.value.code == INVALID


def test_envelope_from_dict_defaults_and_non_objects() -> None:
    full = replace(BASE, tags=("a", "b"), correlation_id="c", schema_version=4)
    assert envelope_from_dict(full.to_dict()) == full
    minimal = BASE.to_dict()
    for optional in ("correlation_id", "causation_event_id", "schema_version", "tags"):
        del minimal[optional]
    del minimal["source"]["subsystem"]
    built = envelope_from_dict(minimal)
    assert (built.tags, built.schema_version, built.correlation_id) == ((), 1, None)
    assert built.source.subsystem is None
    assert envelope_from_dict({**BASE.to_dict(), "tags": None}).tags == ()
    for not_an_object in (None, [], "envelope", 5):
        with pytest.raises(DecisionGraphError) as caught:
            envelope_from_dict(not_an_object)
        assert caught.value.code == INVALID
    # The payload's shape is left to validation, which runs in spec order.
    odd = envelope_from_dict({**BASE.to_dict(), "payload": ["x"]})
    assert code(odd) == SCHEMA


_FIELD_VALUES = st.sampled_from(
    [None, "", "x", 0, 3, -1, True, 2.5, [], ["a"], ["a", 1], {}, {"k": "v"}, ("t",)]
)
_FIELDS = st.sampled_from(
    ["event_id", "trace_id", "trace_seq", "event_type", "occurred_at", "idempotency_key",
     "correlation_id", "causation_event_id", "schema_version", "tags", "payload",
     "source", "actor", "source.producer_id", "source.system", "source.subsystem",
     "actor.actor_type", "actor.actor_id"]
)  # fmt: skip


@given(st.lists(st.tuples(_FIELDS, _FIELD_VALUES | st.just(...)), max_size=3))
def test_the_fast_envelope_path_agrees_with_the_checked_one(
    changes: list[tuple[str, Any]],
) -> None:
    """Whatever the fast path builds, the checked path builds too; whatever it
    declines, the checked path builds or refuses on its own."""
    data = BASE.to_dict()
    for field, value in changes:
        parent, _, key = field.rpartition(".")
        target = data[parent] if parent and isinstance(data.get(parent), dict) else data
        if value is ...:
            target.pop(key or field, None)
        else:
            target[key or field] = value
    fast = _well_formed(data)
    try:
        checked = _checked_envelope(data)
    except DecisionGraphError as exc:
        assert fast is None
        assert exc.code == INVALID
        return
    assert fast is None or fast == checked


def _nested(depth: int, leaf: Any = 1, container: type = dict) -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value} if container is dict else [value]
    return value


@pytest.mark.parametrize("container", [dict, list])
def test_payload_nesting_is_bounded(container: type) -> None:
    # The payload object is one level; its "deep" value adds the rest.
    deepest = with_payload(deep=_nested(MAX_PAYLOAD_DEPTH - 1, container=container))
    validate_envelope(deepest)
    too_deep = with_payload(deep=_nested(MAX_PAYLOAD_DEPTH, container=container))
    refused = error(too_deep)
    assert refused.code == "DG_ERR_INVALID_ARGUMENT"
    assert "nested deeper" in refused.message
    # The checked path (a payload that is not plain data) bounds it too.
    with_tuple = with_payload(deep=_nested(MAX_PAYLOAD_DEPTH, leaf=(1,), container=container))
    assert "nested deeper" in error(with_tuple).message
