"""Comparing live digests with a rebuild while appends and workers go on.

The live cursors and digests are read in one snapshot, so a worker that
commits a batch in the middle of the reading changes nothing the comparison
sees; each projection is rebuilt to exactly its cursor. Both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from decisiongraph.projections.rows import TRACE_SUMMARY
from decisiongraph.runtime.rebuild import DigestComparison, compare_with_rebuild
from decisiongraph.runtime.supervisor import Supervisor, SupervisorConfig
from decisiongraph.store import sql_projector
from tests.runtime.support import (
    T,
    Writer,
    assert_exactly_once,
    caught_up,
    open_sql,
    progress,
    seeded,
    trace_boundary,
    wait_until,
)
from tests.test_cli import dg


def test_compare_matches_while_appends_and_workers_keep_moving(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = seeded(160, seed=71)
    split = trace_boundary(events, 40)
    probe, mover = open_sql(backend_url), open_sql(backend_url)
    probe.append(T, events[:split])
    writer = Writer(lambda: open_sql(backend_url), events[split:], batch=10, pace=0.01)
    supervisor = Supervisor(
        lambda: open_sql(backend_url),
        SupervisorConfig(tenants=[T], poll_interval=0.05, batch_size=20),
    ).start()
    real_digest = sql_projector.array_digest

    def digest_while_a_worker_commits(rows: Iterable[Any]) -> str:
        """Hold the digest until a worker has committed another batch: the
        interleaving a comparison on a live system must survive."""
        seen = mover.projection_cursors(T)[TRACE_SUMMARY]
        wait_until(
            lambda: writer.done or mover.projection_cursors(T)[TRACE_SUMMARY] > seen,
            30,
            "a worker to commit a batch",
            lambda: progress(mover, T),
        )
        return real_digest(rows)

    comparisons: list[DigestComparison] = []
    try:
        wait_until(lambda: caught_up(mover, T), 30, "the first catch-up")
        writer.start()
        with monkeypatch.context() as patch:
            patch.setattr(sql_projector, "array_digest", digest_while_a_worker_commits)
            for _ in range(3):
                comparisons.append(compare_with_rebuild(probe, T))
        during = dg("compare", backend_url)  # the command, under the same load
        writer_done_before_cli = writer.done
        wait_until(lambda: writer.done or bool(writer.errors), 60, "the writer to finish")
        writer.stop()
        assert writer.errors == []
        wait_until(
            lambda: caught_up(mover, T), 60, "the final catch-up", lambda: progress(mover, T)
        )
    finally:
        writer.stop()
        supervisor.stop()
    head = probe.get_last_log_seq(T)
    assert head == len(events)
    for comparison in comparisons:
        assert comparison.match, comparison.first_difference
        assert comparison.skipped == {}
    # They compared live states, short of the head, not a paused system.
    assert comparisons[0].positions[TRACE_SUMMARY] < head
    assert during.returncode == 0, (during.stdout, during.stderr, writer_done_before_cli)
    assert during.stdout.strip() == "match"
    assert_exactly_once(probe, T)
    probe.close()
    mover.close()
