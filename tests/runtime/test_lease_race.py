"""Three worker processes race for the leases of one tenant (PostgreSQL).

Exactly-once rests on the projection lock, the lease only divides the work;
so the checks are: every cursor reaches the head, live equals a rebuild,
a lease changes hands only after it expired (sampled throughout), and a
killed owner's lease is taken over and its projections catch up.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from decisiongraph.projections.rows import CONTEXT_GRAPH, PROJECTION_NAMES
from decisiongraph.runtime.rebuild import compare_with_rebuild
from decisiongraph.store.sql_runtime import Lease
from tests.runtime.support import (
    T,
    WorkerProcess,
    Writer,
    assert_exactly_once,
    caught_up,
    open_sql,
    owner_pid,
    progress,
    seeded,
    wait_until,
)

TTL = 1.5
WORKER = ("--batch-size", "50", "--lease-ttl", str(TTL), "--poll-interval", "0.1")
#: Slack between the sampler's clock and the database's, and query latency.
TOLERANCE = 0.3

Sample = tuple[float, dict[str, Lease]]


class LeaseSampler(threading.Thread):
    """Reads ``leases(T)`` over and over from its own connection."""

    def __init__(self, url: str) -> None:
        super().__init__(name="lease-sampler", daemon=True)
        self._url = url
        self.samples: list[Sample] = []
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        store = open_sql(self._url)
        try:
            while not self.halt.is_set():
                leases = store.leases(T)
                self.samples.append((time.monotonic(), leases))
                self.halt.wait(0.01)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            store.close()

    def stop(self) -> None:
        self.halt.set()
        if self.ident is not None:
            self.join(10)


def hand_overs_before_expiry(samples: list[Sample]) -> list[str]:
    """Owner changes seen earlier than the previous owner's lease could expire."""
    problems = []
    last: dict[str, tuple[float, Lease]] = {}
    for at, leases in samples:
        for name, lease in leases.items():
            previous = last.get(name)
            if previous is not None and previous[1].owner != lease.owner:
                seen_at, old = previous
                if at - seen_at < old.expires_in - TOLERANCE:
                    problems.append(
                        f"{name}: {old.owner} -> {lease.owner} after {at - seen_at:.3f}s, "
                        f"but the old lease had {old.expires_in:.3f}s left"
                    )
            last[name] = (at, lease)
    return problems


def test_three_workers_race_then_one_is_killed_and_its_leases_move(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_sql(pg_url)
    events = seeded(150, seed=12)  # about 1,500 events
    half = len(events) // 2
    store.append(T, events[:100])
    sampler = LeaseSampler(pg_url)
    workers: list[WorkerProcess] = []
    writer = Writer(lambda: open_sql(pg_url), events[100:half], batch=25, pace=0.005)
    late_writer = Writer(lambda: open_sql(pg_url), events[half:], batch=50)

    def logs() -> str:
        return progress(store, T) + "\n" + "\n".join(w.log() for w in workers)

    try:
        workers.extend(WorkerProcess(pg_url, tmp_path, *WORKER) for _ in range(3))
        pids = {worker.pid for worker in workers}
        sampler.start()
        writer.start()  # appends while the three race
        wait_until(lambda: writer.done or bool(writer.errors), 60, "the writer")
        assert writer.errors == []
        wait_until(lambda: caught_up(store, T), 60, "the racing workers to catch up", logs)
        assert store.get_last_log_seq(T) == half
        assert set(store.projection_cursors(T).values()) == {half}
        assert all(w.popen.poll() is None for w in workers), logs()
        leases = store.leases(T)
        assert set(leases) == set(PROJECTION_NAMES)
        assert {owner_pid(lease.owner) for lease in leases.values()} <= pids
        assert all(lease.expires_in > 0 for lease in leases.values())
        assert compare_with_rebuild(store, T).match

        victim_owner = leases[CONTEXT_GRAPH].owner
        victim = next(w for w in workers if w.pid == owner_pid(victim_owner))
        survivors = pids - {victim.pid}
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        late_writer.start()  # appends made after the kill

        def victim_gone() -> bool:
            now = store.leases(T)
            return set(now) == set(PROJECTION_NAMES) and all(
                owner_pid(lease.owner) in survivors for lease in now.values()
            )

        # Lease TTL 1.5 s: a survivor takes each of the victim's leases soon after.
        wait_until(victim_gone, TTL + 5, "a survivor to take the dead worker's leases", logs)
        wait_until(lambda: late_writer.done or bool(late_writer.errors), 60, "the late writer")
        assert late_writer.errors == []
        wait_until(lambda: caught_up(store, T), 60, "catch-up after take-over", logs)
        assert store.get_last_log_seq(T) == len(events)
    finally:
        writer.stop()
        late_writer.stop()
        sampler.stop()
        for worker in workers:
            worker.kill()
    assert sampler.errors == []
    assert len(sampler.samples) > 50
    # Every sampled lease belonged to one of our workers, one owner at a time,
    # and changed hands only once the previous owner's lease had run out.
    owners = {lease.owner for _, leases in sampler.samples for lease in leases.values()}
    assert {owner_pid(owner) for owner in owners} <= pids
    assert hand_overs_before_expiry(sampler.samples) == []
    assert any(
        leases.get(CONTEXT_GRAPH) is not None and leases[CONTEXT_GRAPH].owner == victim_owner
        for _, leases in sampler.samples
    )
    assert_exactly_once(store, T)
    store.close()
