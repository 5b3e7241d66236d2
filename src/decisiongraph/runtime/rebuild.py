"""Rebuilds and replays: online rebuild, digests at a past position, and
live-versus-rebuilt comparison.

Replays and comparisons run on a private SQLite replica in a temporary
directory: the live store is only read, and memory stays bounded whatever
the size of the log. Both honour operators' audited skips, through one
path (:func:`_rebuild_on_replica`).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.core.operator_records import DeadLetter
from decisiongraph.projections.digests import Digests, array_digest
from decisiongraph.projections.rows import (
    CONTEXT_GRAPH,
    POLICY_EVAL_INDEX,
    PRECEDENT_INDEX,
    PROJECTION_NAMES,
    TRACE_SUMMARY,
)
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


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replay found, and the audited skips it honoured to find it.

    The skips travel with the digests because a replay that passed over an
    event is not a plain replay of the log: whoever reads the digests should
    see which events they leave out, and why they equal the live ones.
    """

    digests: Digests
    #: The position replayed to (the head at the time when none was asked).
    to_log_seq: int
    #: Events passed over by audited operator skips, per projection (sorted).
    skipped: dict[str, tuple[int, ...]] = field(default_factory=dict)


def replay_log(store: SqlEventStore, tenant_id: str, to_log_seq: int | None = None) -> Replay:
    """The projections as they were at ``to_log_seq`` (default: now).

    Each projection passes over the events an operator told it to skip (an
    audited ``dead-letters skip``), as the live one did, so a replay at the
    head equals the live digests, and a skipped event that no projection can
    apply (a tampered payload, the usual reason to skip) does not make every
    replay fail. Skips of events after the position change nothing there.
    Without skips this is a pure replay of the log.
    """
    check_replay_position(store, tenant_id, to_log_seq)
    with _replica(store, tenant_id, to_log_seq) as replica:
        # The rows loaded are the position (the log may grow meanwhile). Skips
        # are read after them: a skip is final and only names a stored event,
        # so every skip of a loaded event that exists by now is seen.
        position = replica.get_last_log_seq(tenant_id)
        digests, skipped = _rebuild_on_replica(
            replica,
            tenant_id,
            dict.fromkeys(PROJECTION_NAMES, position),
            store.dead_letters(tenant_id, status="skipped"),
        )
    return Replay(digests, position, skipped)


def replay_digests(store: SqlEventStore, tenant_id: str, to_log_seq: int | None = None) -> Digests:
    """Digests of the projections as they were at ``to_log_seq`` (default:
    now), honouring audited skips: :func:`replay_log` without the skip list."""
    return replay_log(store, tenant_id, to_log_seq).digests


def _rebuild_on_replica(
    replica: SQLiteEventStore,
    tenant_id: str,
    positions: Mapping[str, int],
    letters: Iterable[DeadLetter],
) -> tuple[Digests, dict[str, tuple[int, ...]]]:
    """Project the replica's copy of the log, each projection up to its own
    position, passing over the skips in effect there; returns the digests and
    those skips per projection.

    The one path replays and comparisons share, so that a replay at the head
    and a comparison's rebuild treat an operator's skip alike. Only skips at
    or before a projection's position are in effect: a later one names an
    event that projection has not reached. Projections standing at the same
    position share one pass over the log (the projector still applies skips
    per projection).
    """
    in_effect = [
        letter
        for letter in letters
        if letter.status == "skipped" and letter.log_seq <= positions.get(letter.projection_name, 0)
    ]
    replica.copy_skips(in_effect)
    by_position: dict[int, list[str]] = {}
    for name, seq in positions.items():
        by_position.setdefault(seq, []).append(name)
    for seq, names in sorted(by_position.items()):
        replica.project_pending(
            tenant_id, batch_size=REPLICA_BATCH, until_log_seq=seq, projections=names
        )
    skipped: dict[str, set[int]] = {}
    for letter in in_effect:
        skipped.setdefault(letter.projection_name, set()).add(letter.log_seq)
    return replica.digests(tenant_id), {
        name: tuple(sorted(seqs)) for name, seqs in sorted(skipped.items())
    }


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
    """Live digests against a fresh rebuild at the same positions (and the
    policy-evaluation index, which no digest covers, by its rows).

    The live cursors, digests and operator skips are read in one snapshot,
    so workers and appends may go on meanwhile; each projection is then
    rebuilt from the log up to its own cursor, skipping what the live one
    was told to skip, and the two compared like with like.
    """
    live = store.live_snapshot(tenant_id)
    positions = live.cursors
    with _replica(store, tenant_id, max(positions.values(), default=0)) as replica:
        rebuilt, skipped = _rebuild_on_replica(replica, tenant_id, positions, live.skipped)
        # No spec digest covers the policy-evaluation index; it is compared
        # all the same, by a digest of its rows made the same way.
        rebuilt_policy = array_digest(replica.iter_policy_rows(tenant_id))
    first = None
    for name, live_digest, rebuilt_digest in (
        (CONTEXT_GRAPH, live.digests.context_graph, rebuilt.context_graph),
        (TRACE_SUMMARY, live.digests.trace_summary, rebuilt.trace_summary),
        (PRECEDENT_INDEX, live.digests.precedent_index, rebuilt.precedent_index),
        (POLICY_EVAL_INDEX, live.policy_index, rebuilt_policy),
    ):
        if live_digest != rebuilt_digest:
            first = name
            break
    return DigestComparison(first is None, first, live.digests, rebuilt, positions, skipped)
