"""Canonical JSON and hashing (spec 6, 3.2) and the digest constants of spec 9."""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decisiongraph.core.canonical_json import (
    compiled,
    json_d,
    json_d_data,
    json_p,
    json_p_data,
    json_p_plain,
    loads,
)
from decisiongraph.core.hashing import payload_hash, sha256_text
from decisiongraph.core.validation import _SAFETY, _first_float, validate_envelope
from decisiongraph.projections.digests import (
    EMPTY_DIGESTS,
    array_digest,
    combine,
    context_graph_digest,
    full_projection_digest,
)
from decisiongraph.projections.rows import EdgeRow, NodeRow, PrecedentRow, TraceSummaryRow
from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.contract.helpers import envelope

DEALDESK_STARTED = {
    "primary_entity": {
        "entity_id": "sf:opp:789",
        "entity_type": "opportunity",
        "system": "salesforce",
    },
    "title": "Healthcare customer discount approval",
    "workflow": "deal_approval",
}
MIXED = {"b": "café 😀", "a": [1, True, None, 'x\ny"z\u0001']}
EMPTY_ARRAY = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
EMPTY_GRAPH = "sha256:57501e5c6808b3e14852a4ea21dc7873abf9409032a06f9b740c973e83f62cf7"
EMPTY_FULL = "sha256:841804c04c283692e5a12d6303d274a8c10f5430b19c7cb7f2587e9297d37dde"


def test_spec_vectors() -> None:
    assert json_p(DEALDESK_STARTED) == (
        '{"primary_entity":{"entity_id":"sf:opp:789","entity_type":"opportunity",'
        '"system":"salesforce"},"title":"Healthcare customer discount approval",'
        '"workflow":"deal_approval"}'
    )
    assert payload_hash(DEALDESK_STARTED) == (
        "sha256:05bdd600ea34428f6df95fa5c35f06fae382a84da0269a7d65968d88ff8de642"
    )
    assert json_p(MIXED) == '{"a":[1,true,null,"x\\ny\\"z\\u0001"],"b":"café 😀"}'
    assert payload_hash(MIXED) == (
        "sha256:515c9c26cb2c9fd0a140ef7728fdebccaca3619b785bb20489cba68cad88604f"
    )
    assert json_d(MIXED) == '{"a":[1,true,null,"x\\ny\\"z\\u0001"],"b":"caf\\u00e9 \\ud83d\\ude00"}'
    assert payload_hash({}) == (
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )


def test_validation_hashes_the_payload_like_the_spec() -> None:
    """The stored payload_hash is the JSON-P hash, for the vectors and the goldens."""
    validated = validate_envelope(envelope("t", 0, "TraceStarted", payload=DEALDESK_STARTED))
    assert validated.payload_hash == payload_hash(DEALDESK_STARTED)
    mixed = validate_envelope(
        envelope("t", 0, "TraceStarted", payload={**DEALDESK_STARTED, **MIXED})
    )
    assert mixed.payload_hash == sha256_text(json_p({**DEALDESK_STARTED, **MIXED}))


def test_keys_sort_by_code_point_not_utf16() -> None:
    # U+FF61 sorts before U+1F600 by code point; UTF-16 order would swap them.
    value = {"\U0001f600": 1, "\uff61": 2, "Z": 3, "a": 4, "": 5, "é": 6, "_": 7, "-": 8}
    assert json_p(value) == '{"":5,"-":8,"Z":3,"_":7,"a":4,"é":6,"｡":2,"😀":1}'
    assert json_d(value) == (
        '{"":5,"-":8,"Z":3,"_":7,"a":4,"\\u00e9":6,"\\uff61":2,"\\ud83d\\ude00":1}'
    )
    nested = {"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": 0}
    assert json_p(nested) == '{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}'


@pytest.mark.parametrize(
    ("text", "p_form", "d_form"),
    [
        ("\b\f\n\r\t", "\\b\\f\\n\\r\\t", "\\b\\f\\n\\r\\t"),
        ("\x00\x01\x1b\x1f", "\\u0000\\u0001\\u001b\\u001f", "\\u0000\\u0001\\u001b\\u001f"),
        ('"\\/', '\\"\\\\/', '\\"\\\\/'),  # "/" is never escaped
        ("\x7f", "\x7f", "\\u007f"),
        ("\u2028\u2029", "\u2028\u2029", "\\u2028\\u2029"),
        ("ÄÖÜ€", "ÄÖÜ€", "\\u00c4\\u00d6\\u00dc\\u20ac"),
        ("𝄞", "𝄞", "\\ud834\\udd1e"),
        (" ~", " ~", " ~"),
    ],
)
def test_string_escapes(text: str, p_form: str, d_form: str) -> None:
    assert json_p(text) == f'"{p_form}"'
    assert json_d(text) == f'"{d_form}"'
    assert json_d(text).isascii()
    assert json.loads(json_p(text)) == json.loads(json_d(text)) == text


def test_numbers_literals_and_arrays() -> None:
    value: dict[str, Any] = {
        "big": 2**100,
        "neg": -(2**64),
        "zero": 0,
        "t": True,
        "f": False,
        "n": None,
        "tuple": (1, "a"),
        "empty": [],
        "obj": {},
    }
    assert json_p(value) == (
        '{"big":1267650600228229401496703205376,"empty":[],"f":false,"n":null,'
        '"neg":-18446744073709551616,"obj":{},"t":true,"tuple":[1,"a"],"zero":0}'
    )
    assert json_p([3, 1, 2]) == "[3,1,2]"  # arrays keep their order
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            json_p({"x": bad})
        with pytest.raises(ValueError):
            json_d({"x": bad})


def test_payload_hash_is_sha256_of_utf8_json_p() -> None:
    for value in (MIXED, DEALDESK_STARTED, {"😀": ["\u2028"]}, {}):
        expected = hashlib.sha256(json_p(value).encode("utf-8")).hexdigest()
        assert payload_hash(value) == "sha256:" + expected
        assert len(payload_hash(value)) == 71


def test_empty_state_digests() -> None:
    assert sha256_text('{"edges":[],"nodes":[]}') == EMPTY_GRAPH
    assert sha256_text("[]") == EMPTY_ARRAY
    assert EMPTY_DIGESTS.as_dict() == {
        "context_graph": EMPTY_GRAPH,
        "trace_summary": EMPTY_ARRAY,
        "precedent_index": EMPTY_ARRAY,
        "full_projection": EMPTY_FULL,
    }
    assert context_graph_digest([], []) == EMPTY_GRAPH
    assert array_digest([]) == EMPTY_ARRAY
    joined = f"{EMPTY_GRAPH}:{EMPTY_ARRAY}:{EMPTY_ARRAY}"
    assert len(joined) == 215
    assert full_projection_digest(EMPTY_GRAPH, EMPTY_ARRAY, EMPTY_ARRAY) == EMPTY_FULL
    assert sha256_text(joined) == EMPTY_FULL


@pytest.mark.parametrize("scenario", GOLDEN_SCENARIOS)
def test_full_projection_digest_combines_the_golden_digests(scenario: str) -> None:
    _, expected = load_golden(scenario)
    combined = combine(
        expected["context_graph"], expected["trace_summary"], expected["precedent_index"]
    )
    assert combined.as_dict() == expected


def test_row_digests_follow_the_spec_layout() -> None:
    node = NodeRow("trace:é", "trace", "é", 1, "2026-01-01T00:00:00Z")
    edge = EdgeRow("e:1", "trace_observed_input", "trace:é", "input:x", "é", 2, "now")
    graph_text = (
        '{"edges":[{"attrs":{},"created_at":"now","edge_id":"e:1",'
        '"edge_type":"trace_observed_input","from_node_id":"trace:\\u00e9","log_seq":2,'
        '"to_node_id":"input:x","trace_id":"\\u00e9"}],'
        '"nodes":[{"attrs":{},"created_at":"2026-01-01T00:00:00Z","log_seq":1,'
        '"node_id":"trace:\\u00e9","node_type":"trace","trace_id":"\\u00e9"}]}'
    )
    assert context_graph_digest([node], [edge]) == sha256_text(graph_text)
    summary = TraceSummaryRow("t", "w", "x", None, None, None, "s", None, 1, 3)
    summary_text = (
        '[{"event_count":1,"finished_at":null,"last_log_seq":3,"outcome":null,'
        '"primary_entity_id":null,"primary_entity_type":null,"started_at":"s",'
        '"title":"x","trace_id":"t","workflow":"w"}]'
    )
    assert array_digest([summary]) == sha256_text(summary_text)
    row = PrecedentRow("e1", 4, "t", "p", "1", None, "a", None, "b")
    row_text = (
        '[{"exception_id":null,"log_seq":4,"policy_id":"p","policy_version":"1",'
        '"primary_entity_id":"b","primary_entity_system":null,"primary_entity_type":"a",'
        '"source_event_id":"e1","trace_id":"t"}]'
    )
    assert array_digest([row]) == sha256_text(row_text)
    assert array_digest([row, row]) == sha256_text(f"[{row_text[1:-1]},{row_text[1:-1]}]")


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_compiled_encoders_write_exactly_what_the_stdlib_writes(value: Any) -> None:
    for options in (
        {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":")},
        {"ensure_ascii": True, "sort_keys": True, "separators": (",", ":"), "allow_nan": False},
        {"ensure_ascii": False, "separators": (",", ":")},
    ):
        encoder = json.JSONEncoder(**options)  # type: ignore[arg-type]
        assert compiled(encoder)(value) == encoder.encode(value)


def test_compiled_encoder_recovers_after_a_failure() -> None:
    encode = compiled(json.JSONEncoder(sort_keys=True))
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        encode({"b": loop})
    box: dict[str, Any] = {"a": [1, 2], "z": object()}
    with pytest.raises(TypeError):
        encode(box)  # fails while ``box`` is open: its marker is left behind
    del box["z"]
    # Stale markers must not make the same, now valid, value look circular.
    assert encode(box) == '{"a": [1, 2]}'
    assert encode({"b": loop["self"] is loop}) == '{"b": true}'


# Float-free JSON data as stores and projections hold it: every code point but
# lone surrogates (which are not storable), integers of any size.
_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 3) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_DATA)
def test_data_encoders_write_exactly_what_the_spec_encoders_write(value: Any) -> None:
    assert json_p_data(value) == json_p(value)
    assert json_d_data(value) == json_d(value)


@given(_DATA)
def test_loads_reads_back_exactly_what_the_stdlib_reads(value: Any) -> None:
    for text in (json_p(value), json_d(value), json.dumps(value)):
        decoded = loads(text)
        assert decoded == json.loads(text)
        assert json_p(decoded) == json_p(json.loads(text))  # ints stay ints, not floats
        assert loads(text.encode("utf-8")) == decoded


class _Level(enum.IntEnum):
    HIGH = 3


def test_data_encoders_hand_what_orjson_cannot_write_alike_to_the_stdlib() -> None:
    awkward: dict[str, Any] = {
        "huge": 2**70,
        "tiny": -(2**64),
        "enum": _Level.HIGH,
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "lone": "\ud800x",
        "del": "\x7f",
    }
    assert json_p_data(awkward) == json_p(awkward)
    assert json_d_data(awkward) == json_d(awkward)
    assert json_d_data(awkward).isascii()


def test_loads_keeps_big_integers_and_accepts_what_the_stdlib_accepts() -> None:
    assert loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    assert loads("[-18446744073709551616]") == [-(2**64)]
    assert loads('"\\ud800"') == "\ud800"  # a lone surrogate escape
    nan = loads("[NaN]")[0]
    assert nan != nan
    for bad in ("", "{", '{"a":1} x', b"\xff"):
        with pytest.raises(ValueError):
            loads(bad)


class _Text(str):
    pass


# Anything a caller may put in a payload: floats of every kind, integers of
# any size, lone surrogates, NUL, tuples, subclasses, odd keys and types.
_PAYLOADS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
    | st.floats()
    | st.text(st.characters(blacklist_categories=()))
    | st.sampled_from([_Level.HIGH, _Text("sub"), b"bytes", object(), "\x00"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(st.integers() | st.booleans() | st.none(), inner, min_size=1, max_size=2)
        | st.builds(lambda items: OrderedDict(items), st.lists(st.tuples(st.text(), inner)))
    ),
    max_leaves=20,
)


@given(_PAYLOADS)
def test_the_plain_payload_path_writes_what_the_checked_path_writes(value: Any) -> None:
    """Whatever ``json_p_plain`` encodes, the checked path (the stdlib encoder
    with NaN allowed, then the float search) accepts as float-free and writes
    identically; whatever it declines, the checked path handles as before."""
    plain = json_p_plain(value)
    if plain is None:
        return
    assert plain == json_p(value)
    assert plain == _SAFETY(value)
    assert _first_float(value, plain) is None


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=25,
)


@given(_PLAIN)
def test_plain_payloads_take_the_fast_path_and_it_writes_json_p(value: Any) -> None:
    assert json_p_plain(value) == json_p(value)


def test_the_plain_payload_path_declines_what_it_cannot_vouch_for() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    declined = [
        {"x": 1.0},
        {"x": float("nan")},
        {"x": (1, 2)},
        {"x": 2**64},
        {"x": "\ud800"},
        {1: "x"},
        {_Text("k"): 1},
        {"x": [{"y": {"z": None}}, uuid.UUID(int=7)]},
        {"x": _Level.HIGH},
        {"x": _Text("a")},
        OrderedDict(x=1),
        loop,
    ]
    for value in declined:
        assert json_p_plain(value) is None, value
    assert json_p_plain({"b": [1, True, None, "\x00é"], "a": -(2**63)}) == (
        '{"a":-9223372036854775808,"b":[1,true,null,"\\u0000é"]}'
    )
