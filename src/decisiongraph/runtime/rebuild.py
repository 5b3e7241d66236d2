"""Rebuilds and replays: online rebuild, digests at a past position, and
live-versus-rebuilt comparison.

Replays and comparisons run on a private SQLite replica in a temporary
directory: the live store is only read, and memory stays bounded whatever
the size of the log.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.digests import Digests
from decisiongraph.projections.rows import CONTEXT_GRAPH, PRECEDENT_INDEX, TRACE_SUMMARY
from decisiongraph.store.postgres import PostgresEventStore, is_postgres_url
from decisiongraph.store.sql_base import SqlEventStore
from decisiongraph.store.sql_runtime import REBUILD_CLAIM_TTL
from decisiongraph.store.sqlite import SQLiteEventStore

REPLICA_BATCH = 5000


def rebuild_online(
    store: SqlEventStore,
    tenant_id: str,
    projection: str,
    *,
    owner: str,
    batch_size: int = REPLICA_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild ``projection`` into shadow tables, then swap it in atomically.

    Reads keep being served from the live tables throughout, and the live
    worker keeps them current; health shows ``rebuilding``. Returns the live
    cursor after the swap.
    """
    store.begin_rebuild(tenant_id, projection, owner)
    stop = threading.Event()

    def beat() -> None:
        # Its own connection: the store's is busy for as long as a step runs.
        own = store if store.url == ":memory:" else _same_database(store)
        try:
            while not stop.wait(REBUILD_CLAIM_TTL / 3):
                own.beat_rebuild(tenant_id, projection, owner)
        finally:
            if own is not store:
                own.close()

    heart = threading.Thread(target=beat, name="dg-rebuild-heartbeat", daemon=True)
    heart.start()
    try:
        while store.rebuild_step(tenant_id, projection, batch_size):
            if on_progress is not None:
                on_progress(
                    store.shadow_cursor(tenant_id, projection), store.get_last_log_seq(tenant_id)
                )
        return store.swap_rebuild(tenant_id, projection)
    finally:
        stop.set()
        heart.join()
        store.end_rebuild(tenant_id, projection, owner)


def _same_database(store: SqlEventStore) -> SqlEventStore:
    if is_postgres_url(store.url):
        return PostgresEventStore(store.url)
    return SQLiteEventStore(store.url)


@contextmanager
def _replica(store: SqlEventStore, tenant_id: str, until: int | None) -> Iterator[SQLiteEventStore]:
    with tempfile.TemporaryDirectory(prefix="dg-replica-") as folder:
        replica = SQLiteEventStore(Path(folder) / "replica.db", scratch=True)
        try:
            replica.drop_append_indexes()
            replica.load_raw_rows(tenant_id, store.iter_raw_rows(tenant_id, until))
            yield replica
        finally:
            replica.close()


def check_replay_position(store: SqlEventStore, tenant_id: str, to_log_seq: int | None) -> None:
    """A replay stops at a position the log has: 0 (nothing yet) to its head.

    A position past the head is refused rather than read as the head: the
    caller asked about a state the log has not been in.
    """
    if to_log_seq is None:
        return
    if isinstance(to_log_seq, bool) or not isinstance(to_log_seq, int) or to_log_seq < 0:
        raise InvalidArgumentError(
            f"to_log_seq must be a log_seq >= 0, not {to_log_seq!r}",
            details={"field": "to_log_seq"},
        )
    head = store.get_last_log_seq(tenant_id)
    if to_log_seq > head:
        raise InvalidArgumentError(
            f"to_log_seq {to_log_seq} is beyond the head of tenant {tenant_id}'s log ({head})",
            details={"field": "to_log_seq", "head": head},
        )


def replay_digests(store: SqlEventStore, tenant_id: str, to_log_seq: int | None = None) -> Digests:
    """Digests of the projections as they were at ``to_log_seq`` (default: now).

    A pure replay of the log: operator skips are not applied (see
    :func:`compare_with_rebuild` for the live projections' like).
    """
    check_replay_position(store, tenant_id, to_log_seq)
    with _replica(store, tenant_id, to_log_seq) as replica:
        replica.project_pending(tenant_id, batch_size=REPLICA_BATCH)
        return replica.digests(tenant_id)


@dataclass(frozen=True, slots=True)
class DigestComparison:
    match: bool
    first_difference: str | None
    live: Digests
    rebuilt: Digests
    positions: dict[str, int]
    #: Events passed over by audited operator skips, per projection; the
    #: rebuild passed over them too.
    skipped: dict[str, tuple[int, ...]] = field(default_factory=dict)


def compare_with_rebuild(store: SqlEventStore, tenant_id: str) -> DigestComparison:
    """Live digests against a fresh rebuild at the same positions.

    The live cursors, digests and operator skips are read in one snapshot,
    so workers and appends may go on meanwhile; each projection is then
    rebuilt from the log up to its own cursor, skipping what the live one
    was told to skip, and the two compared like with like.
    """
    live = store.live_snapshot(tenant_id)
    positions = live.cursors
    with _replica(store, tenant_id, max(positions.values(), default=0)) as replica:
        replica.copy_skips(live.skipped)
        for name, seq in positions.items():
            replica.project_pending(
                tenant_id, batch_size=REPLICA_BATCH, until_log_seq=seq, projections=[name]
            )
        rebuilt = replica.digests(tenant_id)
    first = None
    for name, attribute in (
        (CONTEXT_GRAPH, "context_graph"),
        (TRACE_SUMMARY, "trace_summary"),
        (PRECEDENT_INDEX, "precedent_index"),
    ):
        if getattr(live.digests, attribute) != getattr(rebuilt, attribute):
            first = name
            break
    skipped: dict[str, tuple[int, ...]] = {}
    for letter in live.skipped:
        if letter.log_seq <= positions.get(letter.projection_name, 0):
            skipped.setdefault(letter.projection_name, ())
            skipped[letter.projection_name] += (letter.log_seq,)
    return DigestComparison(first is None, first, live.digests, rebuilt, positions, skipped)
