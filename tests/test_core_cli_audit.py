"""Fixes from an audit of the core, the store and the CLI.

An append whose projection fails after the commit still reports the stored
events; files that ``export`` writes import again (raw U+2028 and
U+0085 inside strings), a byte order mark is ignored, repeated keys and
over-long integers are refused with their position; ``None`` as an
idempotency key means the default key, ``""`` is refused; identifiers are
bounded alike on every backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from decisiongraph import ActorRef, DecisionGraph, EntityRef, SourceRef
from decisiongraph.core.envelope import envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.validation import MAX_ID_BYTES
from decisiongraph.projections import batch
from decisiongraph.store import EventStore
from tests.conftest import GOLDEN_DIR
from tests.test_cli import dg

SOURCE = SourceRef("producer", "system")
ACTOR = ActorRef("agent", "bot")


def started(trace_id: str, **payload: Any) -> dict[str, Any]:
    return {
        "event_id": f"{trace_id}-0",
        "trace_id": trace_id,
        "trace_seq": 0,
        "event_type": "TraceStarted",
        "occurred_at": "2025-01-01T00:00:00Z",
        "source": {"producer_id": "p", "system": "s"},
        "actor": {"actor_type": "agent", "actor_id": "a"},
        "idempotency_key": f"{trace_id}:start",
        "payload": {
            "workflow": "w",
            "title": "t",
            "primary_entity": {"entity_type": "x", "entity_id": "y"},
            **payload,
        },
    }


def test_an_append_whose_projection_fails_after_the_commit_reports_what_was_stored(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A projection that cannot apply the event (here a bug in a fold; on
    # PostgreSQL also an identifier too long to index): the append commits
    # without it, and its caller must hear that the event was stored.
    real = batch.summary_write

    def buggy(event: Any) -> Any:
        if event.trace_id == "doomed":
            raise ValueError("fold bug")
        return real(event)

    monkeypatch.setattr(batch, "summary_write", buggy)
    with DecisionGraph(backend_url) as graph:
        trace = graph.start_trace("w", "t", EntityRef("x", "y"), SOURCE, ACTOR, trace_id="doomed")
        (stored,) = graph.get_trace_events(trace)
        assert stored.trace_id == "doomed"
        health = graph.get_projection_health()  # behind, for a worker to retry
        assert (health.is_stale, health.pending_events) == (True, 1)


def test_what_export_writes_imports_again(tmp_path: Path) -> None:
    first, second = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    source = tmp_path / "odd.json"
    source.write_text(json.dumps([started("t1", note="a\u2028b\u0085c\u2029d")]), "utf-8")
    assert dg("import", first, str(source)).returncode == 0
    exported = tmp_path / "out.jsonl"
    assert dg("export", first, str(exported)).returncode == 0
    assert "\u2028" in exported.read_text("utf-8")  # raw, as JSON allows
    done = dg("import", second, str(exported))
    assert done.returncode == 0, done.stderr
    digests = [json.loads(dg("replay", db, "--json").stdout) for db in (first, second)]
    assert digests[0] == digests[1]


@pytest.mark.parametrize("name", ["golden.json", "lines.jsonl"])
def test_a_byte_order_mark_is_ignored(tmp_path: Path, name: str) -> None:
    golden = (GOLDEN_DIR / "support" / "events.json").read_text("utf-8")
    events = json.loads(golden)["events"]
    text = golden if name.endswith(".json") else "\n".join(json.dumps(e) for e in events)
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    done = dg("import", str(tmp_path / "bom.db"), str(path))
    assert done.returncode == 0, done.stderr
    assert f"{len(events)}" in done.stdout


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ('{"workflow": "approve", "workflow": "reject"}', "duplicate key 'workflow'"),
        ('{"n": ' + "9" * 5000 + "}", "Exceeds the limit"),
    ],
)
def test_ambiguous_or_unreadable_json_is_refused_with_its_position(
    tmp_path: Path, document: str, expected: str
) -> None:
    good = json.dumps(started("t0"))
    bad = json.dumps(started("t1")).replace('{"workflow": "w"', document[:-1] + ', "w2": "w"', 1)
    path = tmp_path / "events.jsonl"
    path.write_text(good + "\n" + bad + "\n", "utf-8")
    done = dg("import", str(tmp_path / "x.db"), str(path))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith("Error: DG_ERR_INVALID_ARGUMENT: line 2: malformed JSON: ")
    assert expected in lines[0]
    assert "nothing was imported" in lines[-1]
    assert "Traceback" not in done.stderr


def test_none_as_an_idempotency_key_means_the_default_and_empty_is_refused() -> None:
    with DecisionGraph(":memory:") as graph:
        trace = graph.start_trace(
            "w", "t", EntityRef("x", "y"), SOURCE, ACTOR, trace_id="t1", idempotency_key=None
        )
        again = graph.start_trace(
            "w", "t", EntityRef("x", "y"), SOURCE, ACTOR, trace_id="t1", idempotency_key=None
        )
        assert again == trace  # a retry, as without the argument
        graph.finish_trace(trace, "success", SOURCE, ACTOR, idempotency_key=None)
        graph.finish_trace(trace, "success", SOURCE, ACTOR, idempotency_key=None)
        keys = [event.idempotency_key for event in graph.get_trace_events(trace)]
        assert keys == ["start:t1", "finish:t1"]
        other = graph.start_trace("w", "t", EntityRef("x", "y"), SOURCE, ACTOR)
        with pytest.raises(DecisionGraphError) as refused:
            graph.append_event(
                other,
                "PrecedentCited",
                {"cited_trace_id": "t1", "reason": "r"},
                SOURCE,
                ACTOR,
                idempotency_key="",
            )
        assert refused.value.code == "DG_ERR_INVALID_ARGUMENT"


LONG = "é" * (MAX_ID_BYTES // 2 + 1)  # 514 bytes in 257 characters
JUST = "a" * MAX_ID_BYTES


@pytest.mark.parametrize(
    ("field", "place"),
    [
        ("event_id", lambda e, v: e.update(event_id=v)),
        ("trace_id", lambda e, v: e.update(trace_id=v)),
        ("source.producer_id", lambda e, v: e["source"].update(producer_id=v)),
        ("actor.actor_id", lambda e, v: e["actor"].update(actor_id=v)),
        (
            "payload.primary_entity.entity_id",
            lambda e, v: e["payload"]["primary_entity"].update(entity_id=v),
        ),
    ],
)
def test_identifiers_are_bounded_alike_on_every_backend(
    store: EventStore, field: str, place: Any
) -> None:
    # PostgreSQL cannot index a long key (the limit depends on how it
    # compresses) where SQLite can: both refuse past MAX_ID_BYTES, both keep
    # what is within it.
    refused_event = started("t-long")
    place(refused_event, LONG)
    with pytest.raises(DecisionGraphError) as refused:
        store.append("default", [envelope_from_dict(refused_event)])
    assert refused.value.code == "DG_ERR_INVALID_ARGUMENT"
    assert field in refused.value.message
    assert store.get_last_log_seq("default") == 0
    kept_event = started("t-just")
    place(kept_event, JUST)
    (stored,) = store.append("default", [envelope_from_dict(kept_event)], project=True)
    assert stored.log_seq == 1
    assert store.projection_cursors("default")["context_graph"] == 1
