"""Tamper evidence of the event log, attacked behind the store's back.

The attacker has direct database access: raw ``sqlite3`` / ``psycopg``
connections, never the store. The append-only triggers stop a careless
``UPDATE``/``DELETE``; a real attacker drops them first. Whatever was
changed, ``verify_chain`` must name the *first* log_seq that no longer
checks out, for the tampered tenant only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from decisiongraph.core.envelope import EventEnvelope, envelope_from_dict
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.store import EventStore, open_store
from decisiongraph.store.chain import ChainProblem
from tests.conftest import GOLDEN_SCENARIOS, load_golden

TENANT_A = "tenant-a"
TENANT_B = "tenant-b-ß😀"


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def extra_traces() -> list[EventEnvelope]:
    """Two small traces with non-ASCII content, the second citing the first."""
    source = SourceRef("tamper-producer", "crm", "emea")
    actor = ActorRef("agent", "bot-ø")

    def env(trace: str, seq: int, event_type: str, payload: dict[str, Any]) -> EventEnvelope:
        return EventEnvelope(
            event_id=f"{trace}-e{seq}",
            trace_id=trace,
            trace_seq=seq,
            event_type=event_type,
            occurred_at=f"2026-02-0{seq + 1}T10:00:00Z",
            source=source,
            actor=actor,
            idempotency_key=f"{event_type}:{trace}:{seq}",
            payload=payload,
            tags=("zürich", "😀"),
        )

    one, two = "trace-ü-1", "trace-😀-2"
    customer = {"entity_type": "customer", "entity_id": "Zürich AG", "system": "crm"}
    return [
        env(
            one,
            0,
            "TraceStarted",
            {"workflow": "w", "title": "Café 😀", "primary_entity": customer},
        ),
        env(two, 0, "TraceStarted", {"workflow": "w", "title": "zwei", "primary_entity": customer}),
        env(one, 1, "EntityObserved", {"entity": customer, "role": "primary", "facts": []}),
        env(
            one,
            2,
            "PolicyEvaluated",
            {"policy": {"policy_id": "p-ü", "policy_version": "1"}, "inputs": [], "decision": "ok"},
        ),
        env(two, 1, "PrecedentCited", {"cited_trace_id": one, "reason": "ähnlich", "n": 10**30}),
        env(one, 3, "TraceFinished", {"outcome": "success"}),
        env(two, 2, "ActionCommitted", {"action_id": "a-1", "status": "success"}),
    ]


def all_envelopes() -> list[EventEnvelope]:
    envelopes: list[EventEnvelope] = []
    for scenario in GOLDEN_SCENARIOS:
        events, _ = load_golden(scenario)
        envelopes += [envelope_from_dict(event) for event in events]
    return envelopes + extra_traces()


@pytest.fixture
def filled(store: EventStore) -> tuple[EventStore, int]:
    """The store with the same history in two tenants; returns (store, events per tenant)."""
    envelopes = all_envelopes()
    for tenant in (TENANT_A, TENANT_B):
        stored = store.append(tenant, envelopes, project=True)
        assert [event.log_seq for event in stored] == list(range(1, len(envelopes) + 1))
    assert len(envelopes) > 20
    return store, len(envelopes)


# ---------------------------------------------------------------------------
# the attacker
# ---------------------------------------------------------------------------


class RawDatabase:
    """A direct connection to the store's database, bypassing the store."""

    def __init__(self, url: str) -> None:
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.conn: Any
        if self.postgres:
            self.conn = psycopg.connect(url, autocommit=True)
        else:
            self.conn = sqlite3.connect(url, isolation_level=None)

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.execute(sql, params).fetchone()

    def drop_append_only_guards(self) -> None:
        if self.postgres:
            self.execute("DROP TRIGGER dg_event_log_append_only ON dg_event_log")
        else:
            self.execute("DROP TRIGGER dg_event_log_no_update")
            self.execute("DROP TRIGGER dg_event_log_no_delete")

    def row_count(self, tenant: str) -> int:
        return int(self.one("SELECT COUNT(*) FROM dg_event_log WHERE tenant_id = ?", (tenant,))[0])


@pytest.fixture
def raw(backend_url: str) -> Iterator[RawDatabase]:
    db = RawDatabase(backend_url)
    try:
        yield db
    finally:
        db.close()


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _where(tenant: str, seq: int) -> tuple[str, tuple[Any, ...]]:
    return "WHERE tenant_id = ? AND log_seq = ?", (tenant, seq)


def set_column(db: RawDatabase, tenant: str, seq: int, column: str, value: Any) -> None:
    where, params = _where(tenant, seq)
    cur = db.execute(f"UPDATE dg_event_log SET {column} = ? {where}", (value, *params))
    assert cur.rowcount == 1


def get_column(db: RawDatabase, tenant: str, seq: int, column: str) -> Any:
    where, params = _where(tenant, seq)
    return db.one(f"SELECT {column} FROM dg_event_log {where}", params)[0]


def edited_payload(db: RawDatabase, tenant: str, seq: int) -> str:
    payload = json.loads(get_column(db, tenant, seq, "payload_json"))
    payload["tampered"] = "yes, quietly"
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Each attack edits tenant A (n events) and returns the first log_seq that must be reported.
Attack = Callable[[RawDatabase, str, int], int]


def edit_payload(position: Callable[[int], int]) -> Attack:
    def attack(db: RawDatabase, tenant: str, n: int) -> int:
        seq = position(n)
        set_column(db, tenant, seq, "payload_json", edited_payload(db, tenant, seq))
        return seq

    return attack


def edit_payload_and_its_hash(db: RawDatabase, tenant: str, n: int) -> int:
    """A careful attacker keeps payload_hash consistent; the chain still breaks."""
    seq = n // 2
    text = edited_payload(db, tenant, seq)
    set_column(db, tenant, seq, "payload_json", text)
    set_column(db, tenant, seq, "payload_hash", _sha(text))
    return seq


def corrupt_payload_json(db: RawDatabase, tenant: str, n: int) -> int:
    seq = n - 3
    set_column(db, tenant, seq, "payload_json", '{"workflow": ')
    return seq


def edit_text_column(column: str, seq_of: Callable[[int], int]) -> Attack:
    def attack(db: RawDatabase, tenant: str, n: int) -> int:
        seq = seq_of(n)
        set_column(db, tenant, seq, column, get_column(db, tenant, seq, column) + "x")
        return seq

    return attack


def edit_tags(db: RawDatabase, tenant: str, n: int) -> int:
    seq = n - 5
    set_column(db, tenant, seq, "tags_json", '["injected"]')
    return seq


def edit_trace_seq(db: RawDatabase, tenant: str, n: int) -> int:
    seq = 7
    set_column(db, tenant, seq, "trace_seq", get_column(db, tenant, seq, "trace_seq") + 100)
    return seq


def delete_rows(seqs_of: Callable[[int], list[int]], first_bad: Callable[[int], int]) -> Attack:
    def attack(db: RawDatabase, tenant: str, n: int) -> int:
        for seq in seqs_of(n):
            where, params = _where(tenant, seq)
            assert db.execute(f"DELETE FROM dg_event_log {where}", params).rowcount == 1
        return first_bad(n)

    return attack


def swap_rows(db: RawDatabase, tenant: str, n: int) -> int:
    """Reorder history: rows i and j trade places (their log_seq values swap)."""
    i, j = 4, n - 4
    for old, new in ((i, -1), (j, i), (-1, j)):
        set_column(db, tenant, old, "log_seq", new)
    return i


def edit_chain_hash(seq_of: Callable[[int], int]) -> Attack:
    def attack(db: RawDatabase, tenant: str, n: int) -> int:
        seq = seq_of(n)
        set_column(db, tenant, seq, "chain_hash", _sha("forged"))
        return seq

    return attack


def edit_head_hash(db: RawDatabase, tenant: str, n: int) -> int:
    db.execute("UPDATE dg_log_head SET chain_hash = ? WHERE tenant_id = ?", (_sha("x"), tenant))
    return n


def delete_head_row(db: RawDatabase, tenant: str, n: int) -> int:
    assert db.execute("DELETE FROM dg_log_head WHERE tenant_id = ?", (tenant,)).rowcount == 1
    return n


def inflate_head_count(db: RawDatabase, tenant: str, n: int) -> int:
    db.execute("UPDATE dg_log_head SET last_log_seq = ? WHERE tenant_id = ?", (n + 5, tenant))
    return n + 1


def forge_appended_row(db: RawDatabase, tenant: str, n: int) -> int:
    """A row slipped in after the last one (copied and relabelled, fake link)."""
    columns = [
        "tenant_id", "log_seq", "event_id", "trace_id", "trace_seq", "event_type",
        "occurred_at", "recorded_at", "producer_id", "system", "subsystem", "actor_type",
        "actor_id", "correlation_id", "causation_event_id", "idempotency_key",
        "schema_version", "payload_json", "payload_hash", "tags_json", "chain_hash",
    ]  # fmt: skip
    where, params = _where(tenant, n)
    row = list(db.one(f"SELECT {', '.join(columns)} FROM dg_event_log {where}", params))
    row[1] = n + 1
    row[2] = "forged-event"
    row[3] = "forged-trace"
    row[15] = "forged-key"
    row[20] = _sha("forged link")
    marks = ", ".join("?" for _ in columns)
    db.execute(f"INSERT INTO dg_event_log ({', '.join(columns)}) VALUES ({marks})", tuple(row))
    return n + 1


ATTACKS: dict[str, Attack] = {
    "payload_json-first-row": edit_payload(lambda n: 1),
    "payload_json-middle-row": edit_payload(lambda n: n // 2),
    "payload_json-last-row": edit_payload(lambda n: n),
    "payload_json-and-payload_hash": edit_payload_and_its_hash,
    "payload_json-not-json": corrupt_payload_json,
    "occurred_at": edit_text_column("occurred_at", lambda n: n // 3),
    "trace_id": edit_text_column("trace_id", lambda n: 11),
    "recorded_at": edit_text_column("recorded_at", lambda n: 2),
    "idempotency_key": edit_text_column("idempotency_key", lambda n: n - 1),
    "event_type": edit_text_column("event_type", lambda n: 5),
    "tags_json": edit_tags,
    "trace_seq": edit_trace_seq,
    "delete-first-row": delete_rows(lambda n: [1], lambda n: 1),
    "delete-middle-row": delete_rows(lambda n: [n // 2], lambda n: n // 2),
    "delete-two-middle-rows": delete_rows(lambda n: [9, 15], lambda n: 9),
    "delete-last-row": delete_rows(lambda n: [n], lambda n: n),
    "delete-last-three-rows": delete_rows(lambda n: [n - 2, n - 1, n], lambda n: n - 2),
    "swap-two-rows": swap_rows,
    "chain_hash-middle-row": edit_chain_hash(lambda n: n // 2),
    "chain_hash-first-row": edit_chain_hash(lambda n: 1),
    "chain_hash-last-row": edit_chain_hash(lambda n: n),
    "head-chain-hash": edit_head_hash,
    "head-row-deleted": delete_head_row,
    "head-count-inflated": inflate_head_count,
    "forged-row-after-the-last": forge_appended_row,
}


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


def test_untampered_store_verifies(filled: tuple[EventStore, int]) -> None:
    store, n = filled
    assert store.verify_chain(TENANT_A) is None
    assert store.verify_chain(TENANT_B) is None
    assert store.verify_chain("tenant-never-used") is None
    assert store.get_last_log_seq(TENANT_A) == n


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_tampering_names_the_first_bad_log_seq(
    filled: tuple[EventStore, int], raw: RawDatabase, attack: str
) -> None:
    store, n = filled
    raw.drop_append_only_guards()
    first_bad = ATTACKS[attack](raw, TENANT_A, n)

    problem = store.verify_chain(TENANT_A)
    assert isinstance(problem, ChainProblem)
    assert (problem.tenant_id, problem.log_seq) == (TENANT_A, first_bad), problem.reason
    assert problem.reason
    assert store.verify_chain(TENANT_B) is None  # the other tenant is untouched

    # A freshly opened store (another process, say) reports the same; on SQLite
    # also a read-only one, as an auditor would open it.
    modes = [False] if raw.postgres else [False, True]
    for read_only in modes:
        again = open_store(store.url, read_only=read_only)
        try:
            assert again.verify_chain(TENANT_A) == problem
            assert again.verify_chain(TENANT_B) is None
        finally:
            again.close()


@pytest.mark.parametrize("attack", ["payload_json-middle-row", "occurred_at", "delete-last-row"])
def test_later_appends_do_not_heal_tampering(
    filled: tuple[EventStore, int], raw: RawDatabase, attack: str
) -> None:
    store, n = filled
    raw.drop_append_only_guards()
    first_bad = ATTACKS[attack](raw, TENANT_A, n)
    trace = "after-tamper"
    store.append(
        TENANT_A,
        [
            EventEnvelope(
                event_id="after-1",
                trace_id=trace,
                trace_seq=0,
                event_type="TraceStarted",
                occurred_at="2026-03-01T00:00:00Z",
                source=SourceRef("p", "s"),
                actor=ActorRef("person", "x"),
                idempotency_key="after-1",
                payload={
                    "workflow": "w",
                    "title": "t",
                    "primary_entity": {"entity_type": "e", "entity_id": "1"},
                },
            )
        ],
    )
    assert store.get_last_log_seq(TENANT_A) == n + 1
    problem = store.verify_chain(TENANT_A)
    assert problem is not None and problem.log_seq == first_bad
    assert store.verify_chain(TENANT_B) is None


def test_projection_rebuild_rejects_an_edited_payload(
    filled: tuple[EventStore, int], raw: RawDatabase
) -> None:
    """Spec 8.3 step 1: the projector re-hashes stored payloads."""
    store, n = filled
    raw.drop_append_only_guards()
    ATTACKS["payload_json-middle-row"](raw, TENANT_A, n)
    store.reset_projections(TENANT_A)
    with pytest.raises(DecisionGraphError) as caught:
        store.project_pending(TENANT_A, batch_size=1)
    assert caught.value.code == "DG_ERR_CONFLICT"
    assert store.projection_cursor(TENANT_A) == n // 2 - 1
    # Tenant B projects (and rebuilds) as before.
    before = store.digests(TENANT_B)
    store.reset_projections(TENANT_B)
    assert store.project_pending(TENANT_B) == n
    assert store.digests(TENANT_B) == before


def test_append_only_triggers_block_update_and_delete(
    filled: tuple[EventStore, int], raw: RawDatabase
) -> None:
    store, n = filled
    error = psycopg.Error if raw.postgres else sqlite3.Error
    statements = [
        (
            "UPDATE dg_event_log SET occurred_at = 'x' WHERE tenant_id = ? AND log_seq = 3",
            (TENANT_A,),
        ),
        ("UPDATE dg_event_log SET payload_json = '{}' WHERE tenant_id = ?", (TENANT_A,)),
        ("DELETE FROM dg_event_log WHERE tenant_id = ? AND log_seq = ?", (TENANT_A, n)),
        ("DELETE FROM dg_event_log WHERE tenant_id = ?", (TENANT_B,)),
        ("DELETE FROM dg_event_log", ()),
    ]
    for sql, params in statements:
        with pytest.raises(error, match="append_only"):
            raw.execute(sql, params)
    assert raw.row_count(TENANT_A) == n
    assert raw.row_count(TENANT_B) == n
    assert get_column(raw, TENANT_A, 3, "occurred_at") != "x"
    assert store.verify_chain(TENANT_A) is None
    assert store.verify_chain(TENANT_B) is None


def test_truncate_bypasses_row_triggers_but_not_verification(
    filled: tuple[EventStore, int], raw: RawDatabase
) -> None:
    """Emptying the log (TRUNCATE on PostgreSQL fires no row trigger) is still caught."""
    store, _ = filled
    if raw.postgres:
        raw.execute("TRUNCATE dg_event_log")
    else:
        raw.drop_append_only_guards()
        raw.execute("DELETE FROM dg_event_log")
    assert raw.row_count(TENANT_A) == 0
    for tenant in (TENANT_A, TENANT_B):
        problem = store.verify_chain(tenant)
        assert problem is not None
        assert (problem.tenant_id, problem.log_seq) == (tenant, 1)
