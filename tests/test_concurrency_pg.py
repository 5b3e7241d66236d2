"""Many OS processes appending to one PostgreSQL database at once.

Writers are separate processes (``spawn``), each with its own connection, so
the only thing serializing them is the database: the tenant's head-row lock.
A tailing reader polls ``list_events(since_log_seq=last_seen)`` meanwhile;
it must see every log_seq exactly once and in order, which fails if a later
log_seq ever commits (becomes visible) before an earlier one.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import DecisionGraphError
from decisiongraph.core.refs import ActorRef, SourceRef
from decisiongraph.store import EventStore, open_store

pytestmark = pytest.mark.postgres

SPAWN = multiprocessing.get_context("spawn")
TENANT = "concurrent-ü"
WRITERS = 4
EVENTS_PER_WRITER = 300
DEADLINE_SECONDS = 90.0

MIDDLE = ("EntityObserved", "PolicyEvaluated", "PrecedentCited", "ActionCommitted")


# ---------------------------------------------------------------------------
# workload (module level: spawned processes import it by name)
# ---------------------------------------------------------------------------


def _payload(event_type: str, writer: int, trace_no: int, rng: random.Random) -> dict[str, Any]:
    customer = {"entity_type": "customer", "entity_id": f"c{rng.randrange(5)}"}  # shared
    if event_type == "TraceStarted":
        return {
            "workflow": "race",
            "title": f"writer {writer} #{trace_no}",
            "primary_entity": customer,
        }
    if event_type == "EntityObserved":
        return {"entity": customer, "role": "related", "facts": []}
    if event_type == "PolicyEvaluated":
        policy = {"policy_id": f"policy-{rng.randrange(3)}", "policy_version": "1"}
        return {"policy": policy, "inputs": [], "decision": "allow"}
    if event_type == "PrecedentCited":  # other writers' traces: maybe not started yet
        other = (writer + 1 + rng.randrange(WRITERS - 1)) % WRITERS
        return {"cited_trace_id": f"w{other}-t{rng.randrange(40)}", "reason": "similar"}
    if event_type == "ActionCommitted":  # never proposed
        return {"action_id": f"action-{rng.randrange(6)}", "status": "success"}
    return {"outcome": rng.choice(["success", "failure"])}


def writer_envelopes(writer: int, count: int) -> list[EventEnvelope]:
    """``count`` events of one writer: its own traces, in order, some finished."""
    rng = random.Random(1000 + writer)
    source = SourceRef(f"producer-{writer}", "loadgen")
    actor = ActorRef("agent", f"writer-{writer}")
    envelopes: list[EventEnvelope] = []
    trace_no = 0
    while len(envelopes) < count:
        trace_id = f"w{writer}-t{trace_no}"
        length = min(rng.randint(2, 12), count - len(envelopes))
        types = ["TraceStarted"] + [rng.choice(MIDDLE) for _ in range(length - 1)]
        if length > 2 and rng.random() < 0.6:
            types[-1] = "TraceFinished"
        for seq, event_type in enumerate(types):
            envelopes.append(
                EventEnvelope(
                    event_id=f"{trace_id}-e{seq}",
                    trace_id=trace_id,
                    trace_seq=seq,
                    event_type=event_type,
                    occurred_at=f"2026-01-01T00:{writer:02d}:{seq:02d}Z",
                    source=source,
                    actor=actor,
                    idempotency_key=f"{trace_id}:{seq}",
                    payload=_payload(event_type, writer, trace_no, rng),
                )
            )
        trace_no += 1
    return envelopes


def run_writer(url: str, writer: int, count: int, barrier: Any, results: Any) -> None:
    """Append this writer's events in single appends and batches; report what was stored."""
    try:
        store = open_store(url)
        try:
            envelopes = writer_envelopes(writer, count)
            rng = random.Random(writer)
            project = writer % 2 == 0  # half the writers also project inline
            stored: list[tuple[int, str, str, int]] = []
            barrier.wait(timeout=60)
            index = 0
            while index < len(envelopes):
                size = 1 if rng.random() < 0.5 else rng.randint(2, 8)
                batch = envelopes[index : index + size]
                for event in store.append(TENANT, batch, project=project):
                    assert not event.repeated
                    stored.append((event.log_seq, event.event_id, event.trace_id, event.trace_seq))
                index += size
            results.put(("ok", writer, stored))
        finally:
            store.close()
    except BaseException:
        results.put(("error", writer, traceback.format_exc()))


RACE_TRACE = "race-trace"
RACE_MODES = ("same-key", "different-keys", "same-key-other-payload")


def race_envelope(racer: int, round_no: int, rounds: int) -> tuple[str, EventEnvelope]:
    """Round r: every racer appends trace_seq r of one trace; returns (mode, envelope)."""
    mode = RACE_MODES[round_no % len(RACE_MODES)]
    if round_no == 0:
        event_type = "TraceStarted"
        payload: dict[str, Any] = {
            "workflow": "race",
            "title": "one trace, many writers",
            "primary_entity": {"entity_type": "customer", "entity_id": "c0"},
        }
    elif round_no == rounds - 1:
        event_type, payload = "TraceFinished", {"outcome": "success"}
    else:
        event_type = "EntityObserved"
        entity = {"entity_type": "customer", "entity_id": f"c{round_no}"}
        payload = {"entity": entity, "role": "related", "facts": []}
    if mode == "same-key-other-payload":
        payload = {**payload, "racer": racer}
    key = f"round-{round_no}" if mode != "different-keys" else f"round-{round_no}-racer-{racer}"
    return mode, EventEnvelope(
        event_id=f"round-{round_no}-racer-{racer}",  # not compared for idempotency
        trace_id=RACE_TRACE,
        trace_seq=round_no,
        event_type=event_type,
        occurred_at=f"2026-01-01T00:00:{round_no:02d}Z",
        source=SourceRef("racing-producer", "loadgen"),
        actor=ActorRef("agent", "racer"),
        idempotency_key=key,
        payload=payload,
    )


def run_racer(url: str, tenant: str, racer: int, rounds: int, barrier: Any, results: Any) -> None:
    try:
        store = open_store(url)
        try:
            outcomes: list[tuple[Any, ...]] = []
            for round_no in range(rounds + 1):  # the extra round appends after the finish
                if round_no < rounds:
                    _, envelope = race_envelope(racer, round_no, rounds)
                else:
                    late = f"late-{racer}"
                    envelope = replace(
                        race_envelope(racer, 1, rounds)[1],
                        trace_seq=rounds,
                        event_id=late,
                        idempotency_key=late,
                    )
                barrier.wait(timeout=30)
                try:
                    stored = store.append(tenant, [envelope], project=round_no % 2 == 0)
                    event = stored[0]
                    outcomes.append(("ok", event.log_seq, event.repeated, event.event_id))
                except DecisionGraphError as exc:
                    outcomes.append(("error", exc.code, str(exc)))
            results.put(("ok", racer, outcomes))
        finally:
            store.close()
    except BaseException:
        results.put(("error", racer, traceback.format_exc()))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def collect(processes: list[Any], results: Any, deadline: float) -> dict[int, Any]:
    """Every process's report, or fail with what went wrong; processes are reaped."""
    reports: dict[int, Any] = {}
    try:
        while len(reports) < len(processes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out waiting for workers; got {sorted(reports)}")
            try:
                status, who, body = results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    pytest.fail(
                        f"worker died without reporting: exit codes {[p.exitcode for p in dead]}"
                    )
                continue
            if status != "ok":
                pytest.fail(f"worker {who} failed:\n{body}")
            reports[who] = body
    finally:
        for process in processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    return reports


def rebuilt_digests_match(store: EventStore, tenant: str) -> None:
    store.project_pending(tenant)
    assert store.projection_cursor(tenant) == store.get_last_log_seq(tenant)
    incremental = store.digests(tenant)
    rows = (list(store.iter_nodes(tenant)), list(store.iter_edges(tenant)))
    store.reset_projections(tenant)
    store.project_pending(tenant, batch_size=97)
    assert store.digests(tenant) == incremental
    assert (list(store.iter_nodes(tenant)), list(store.iter_edges(tenant))) == rows


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[EventStore]:
    opened = open_store(pg_url)  # migrates before any worker starts
    try:
        yield opened
    finally:
        opened.close()


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------


def test_concurrent_writers_and_tailing_reader(pg_url: str, pg_store: EventStore) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    total = WRITERS * EVENTS_PER_WRITER
    results = SPAWN.Queue()
    barrier = SPAWN.Barrier(WRITERS + 1)
    writers_done = threading.Event()
    seen: list[int] = []
    pages_before_done = 0
    reader_error: list[BaseException] = []

    def tail() -> None:
        nonlocal pages_before_done
        reader = open_store(pg_url)
        try:
            last = 0
            while time.monotonic() < deadline:
                finished = writers_done.is_set()  # read before polling
                page = reader.list_events(TENANT, since_log_seq=last, limit=53)
                seen.extend(event.log_seq for event in page)
                if page:
                    last = page[-1].log_seq
                    if not finished:
                        pages_before_done += 1
                elif finished:
                    return
                else:
                    time.sleep(0.002)
        except BaseException as exc:
            reader_error.append(exc)
        finally:
            reader.close()

    projected: list[int] = []

    def project() -> None:
        """A projector racing the writers' inline projection, in small batches."""
        projector = open_store(pg_url)
        try:
            while not writers_done.is_set() and time.monotonic() < deadline:
                projected.append(projector.project_pending(TENANT, batch_size=25))
                time.sleep(0.005)
        except BaseException as exc:
            reader_error.append(exc)
        finally:
            projector.close()

    processes = [
        SPAWN.Process(target=run_writer, args=(pg_url, writer, EVENTS_PER_WRITER, barrier, results))
        for writer in range(WRITERS)
    ]
    for process in processes:
        process.start()
    threads = [threading.Thread(target=fn, daemon=True) for fn in (tail, project)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)  # all writers connected: go
    try:
        reports = collect(processes, results, deadline)
    finally:
        writers_done.set()
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "reader/projector overran"
    assert not reader_error, reader_error
    assert projected  # the projector ran alongside (how much it found is up to timing)

    # The log: exactly 1..N, and N is what the writers wrote.
    written = [row for rows in reports.values() for row in rows]
    assert len(written) == total
    assert sorted(row[0] for row in written) == list(range(1, total + 1))
    log = pg_store.list_events(TENANT)
    assert [event.log_seq for event in log] == list(range(1, total + 1))
    assert {(e.log_seq, e.event_id) for e in log} == {(row[0], row[1]) for row in written}
    stats = pg_store.log_stats(TENANT)
    assert (stats.event_count, stats.last_log_seq) == (total, total)
    assert pg_store.get_last_log_seq(TENANT) == total

    # Each writer's appends got increasing log_seqs; each trace is in trace_seq order.
    for rows in reports.values():
        assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    by_trace: dict[str, list[int]] = defaultdict(list)
    for event in log:
        by_trace[event.trace_id].append(event.trace_seq)
    assert all(seqs == list(range(len(seqs))) for seqs in by_trace.values())

    # The writers really overlapped: the first EVENTS_PER_WRITER log entries (as
    # many as one writer writes) come from several writers.
    assert len({event.source.producer_id for event in log[:EVENTS_PER_WRITER]}) > 1

    # The tailing reader saw every log_seq once, in order, while writes were going on.
    assert seen == list(range(1, total + 1))
    assert pages_before_done >= 2

    assert pg_store.verify_chain(TENANT) is None
    rebuilt_digests_match(pg_store, TENANT)


@pytest.mark.parametrize("racers", [2, 4])
def test_racing_on_one_trace_and_one_idempotency_key(
    pg_url: str, pg_store: EventStore, racers: int
) -> None:
    rounds = 45
    tenant = f"race-{racers}"
    results = SPAWN.Queue()
    barrier = SPAWN.Barrier(racers)
    processes = [
        SPAWN.Process(target=run_racer, args=(pg_url, tenant, racer, rounds, barrier, results))
        for racer in range(racers)
    ]
    for process in processes:
        process.start()
    reports = collect(processes, results, time.monotonic() + DEADLINE_SECONDS)

    for round_no in range(rounds):
        mode, _ = race_envelope(0, round_no, rounds)
        outcomes = [reports[racer][round_no] for racer in range(racers)]
        winners = [o for o in outcomes if o[0] == "ok" and not o[2]]
        losers = [o for o in outcomes if o not in winners]
        assert len(winners) == 1, (round_no, mode, outcomes)
        # One event per round and no gaps: round r's event is log_seq r + 1.
        assert winners[0][1] == round_no + 1, (round_no, outcomes)
        for loser in losers:
            if mode == "same-key":
                # The retry returns the stored event (whoever's event_id won).
                assert loser[:3] == ("ok", round_no + 1, True), (round_no, loser)
                assert loser[3] == winners[0][3]
            elif mode == "different-keys":
                assert loser[:2] == ("error", "DG_ERR_EVENT_SEQUENCE_INVALID"), (round_no, loser)
            else:
                assert loser[:2] == ("error", "DG_ERR_IDEMPOTENCY_CONFLICT"), (round_no, loser)
    # After the TraceFinished every racer is refused alike.
    late = [reports[racer][rounds] for racer in range(racers)]
    assert all(o[:2] == ("error", "DG_ERR_CONFLICT") for o in late), late

    log = pg_store.list_events(tenant)
    assert [event.log_seq for event in log] == list(range(1, rounds + 1))
    assert [event.trace_seq for event in log] == list(range(rounds))
    assert log[-1].event_type == "TraceFinished"
    assert pg_store.get_last_log_seq(tenant) == rounds
    assert pg_store.verify_chain(tenant) is None
    rebuilt_digests_match(pg_store, tenant)
