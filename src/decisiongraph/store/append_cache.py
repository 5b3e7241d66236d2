"""What a single-connection store remembers between its own appends.

An append must know the tenant's log head, the last event of each touched
trace and, to project inline, whether the projections were current. Reading
them back costs more SQL statements than the insert itself, yet the store
that wrote them last already knows them. This cache holds what the store's
own committed appends left behind; it is valid only while no other
connection has committed (the backend checks, e.g. SQLite's
``PRAGMA data_version``) and is emptied by every other kind of write.

Entries are staged during a transaction and kept only once it commits, so a
rolled-back append leaves nothing behind. Lookups see what is staged: a
transaction holding several appends (group commit) plans each on top of the
ones before it, and an append rolled back to its savepoint drops its stage.
"""

from __future__ import annotations

from collections import OrderedDict

from decisiongraph.store.append_plan import TraceHead

MAX_TRACES = 20_000


class AppendCache:
    """Log heads, trace heads and current-projection marks, per tenant."""

    def __init__(self, max_traces: int = MAX_TRACES) -> None:
        self._max_traces = max_traces
        self.version: int | None = None
        self._log_heads: dict[str, tuple[int, str]] = {}
        self._traces: OrderedDict[tuple[str, str], TraceHead] = OrderedDict()
        self._projected: dict[str, int] = {}
        self._staged: list[tuple[str, int, str, dict[str, TraceHead], bool]] = []

    def clear(self) -> None:
        self._log_heads.clear()
        self._traces.clear()
        self._projected.clear()
        self._staged.clear()

    def validate(self, version: int) -> None:
        """Forget everything if another connection committed since last seen."""
        if version != self.version:
            self.clear()
            self.version = version

    # -- lookups -------------------------------------------------------------
    def log_head(self, tenant_id: str) -> tuple[int, str] | None:
        for tenant, last_log_seq, chain_hash, _, _ in reversed(self._staged):
            if tenant == tenant_id:
                return (last_log_seq, chain_hash)
        return self._log_heads.get(tenant_id)

    def trace_head(self, tenant_id: str, trace_id: str) -> TraceHead | None:
        for tenant, _, _, heads, _ in reversed(self._staged):
            if tenant == tenant_id and trace_id in heads:
                return heads[trace_id]
        return self._traces.get((tenant_id, trace_id))

    def projections_current(self, tenant_id: str, log_seq: int) -> bool:
        """Whether every projection of the tenant is known to stand at ``log_seq``."""
        for tenant, last_log_seq, _, _, projected in reversed(self._staged):
            if tenant == tenant_id:
                return projected and last_log_seq == log_seq
        return self._projected.get(tenant_id) == log_seq

    # -- updates ---------------------------------------------------------------
    def stage(
        self,
        tenant_id: str,
        last_log_seq: int,
        chain_hash: str,
        trace_heads: dict[str, TraceHead],
        projected: bool,
    ) -> None:
        """Record what an append in progress will have written once it commits."""
        self._staged.append((tenant_id, last_log_seq, chain_hash, trace_heads, projected))

    def note_log_head(self, tenant_id: str, head: tuple[int, str]) -> None:
        """A head read under the write lock (it stays true until the next write)."""
        self._log_heads[tenant_id] = head

    def commit(self) -> None:
        for tenant_id, last_log_seq, chain_hash, trace_heads, projected in self._staged:
            self._log_heads[tenant_id] = (last_log_seq, chain_hash)
            for trace_id, head in trace_heads.items():
                key = (tenant_id, trace_id)
                self._traces[key] = head
                self._traces.move_to_end(key)
            if projected:
                self._projected[tenant_id] = last_log_seq
            else:
                self._projected.pop(tenant_id, None)
        self._staged.clear()
        while len(self._traces) > self._max_traces:
            self._traces.popitem(last=False)

    def rollback(self) -> None:
        self._staged.clear()

    def mark(self) -> int:
        """A point to roll the stage back to (taken with a savepoint)."""
        return len(self._staged)

    def rollback_to(self, mark: int) -> None:
        del self._staged[mark:]
