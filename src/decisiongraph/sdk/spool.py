"""A durable local spool: events wait here (a SQLite file) until delivered.

Rows are the envelopes' JSON text, in append order (``AUTOINCREMENT`` ids
are never reused, so an id is a position). Written in WAL mode with
``synchronous=NORMAL``: a committed batch survives the agent process being
killed; only an operating-system crash or power loss can take the last
commits with it (no fsync per commit, which would cap ingestion at the
disk's flush rate).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

#: (row id, tenant, envelope JSON)
SpoolRow = tuple[int, str | None, str]


class Spool:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "tenant TEXT, body TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS refused (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "spool_id INTEGER, tenant TEXT, body TEXT NOT NULL, error TEXT NOT NULL)"
        )
        # Positions of refused events: the trace's later events, numbered
        # after them by the client, are sent moved down past them.
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS gaps (tenant TEXT, trace_id TEXT NOT NULL, "
            "trace_seq INTEGER NOT NULL)"
        )

    def write(self, rows: Iterable[tuple[str | None, str]]) -> list[int]:
        """Append ``(tenant, body)`` rows in one transaction; their ids, in order.

        ``rows`` may be a generator: it is consumed inside the transaction.
        """
        ids: list[int] = []
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for tenant, body in rows:
                    cur.execute("INSERT INTO spool (tenant, body) VALUES (?, ?)", (tenant, body))
                    ids.append(int(cur.lastrowid or 0))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def last_id(self) -> int:
        """The highest id handed out so far (0 for a new spool)."""
        with self._lock:
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'")
            found = row.fetchone()
        return 0 if found is None else int(found[0])

    def next_positions(self, tenant: str | None) -> dict[str, int]:
        """Next trace_seq of each trace with events still waiting here.

        A new agent process continuing a trace begun by an earlier one must
        number after what that one spooled, which the server has not seen.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT json_extract(body, '$.trace_id'), MAX(json_extract(body, '$.trace_seq')) "
                "FROM spool WHERE tenant IS ? GROUP BY 1",
                (tenant,),
            ).fetchall()
        return {str(trace): int(seq) + 1 for trace, seq in rows if trace is not None}

    def peek(self, limit: int) -> list[SpoolRow]:
        """The oldest rows, all of the first one's tenant (one request)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, tenant, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        if not rows:
            return []
        tenant = rows[0][1]
        out: list[SpoolRow] = []
        for row_id, row_tenant, body in rows:
            if row_tenant != tenant:
                break
            out.append((int(row_id), row_tenant, body))
        return out

    def remove_through(self, last_id: int) -> None:
        """Drop every row up to ``last_id`` (they were delivered, in order)."""
        with self._lock:
            self._conn.execute("DELETE FROM spool WHERE id <= ?", (last_id,))

    def reject(self, row_id: int, error: str, gap: tuple[str, int] | None) -> None:
        """Move a row the server refused for good out of the way (kept for
        inspection), recording the position it leaves free (``gap``: trace id,
        trace_seq) in the same transaction, so a resend after a crash numbers
        the trace's later events exactly as before."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if gap is not None:
                    self._conn.execute(
                        "INSERT INTO gaps (tenant, trace_id, trace_seq) "
                        "SELECT tenant, ?, ? FROM spool WHERE id = ?",
                        (gap[0], gap[1], row_id),
                    )
                self._conn.execute(
                    "INSERT INTO refused (spool_id, tenant, body, error) "
                    "SELECT id, tenant, body, ? FROM spool WHERE id = ?",
                    (error, row_id),
                )
                self._conn.execute("DELETE FROM spool WHERE id = ?", (row_id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record_rejected(
        self, tenant: str | None, body: str, error: str, gap: tuple[str, int]
    ) -> None:
        """An event that never reached the spool (it could not be serialized)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT INTO refused (tenant, body, error) VALUES (?, ?, ?)", (tenant, body, error)
            )
            self._conn.execute(
                "INSERT INTO gaps (tenant, trace_id, trace_seq) VALUES (?, ?, ?)",
                (tenant, gap[0], gap[1]),
            )
            self._conn.execute("COMMIT")

    def load_gaps(self, tenant: str | None) -> dict[str, list[int]]:
        """The gaps still in force, per trace (oldest first).

        Gaps of traces with nothing left in the spool are dropped first: a
        new client numbers such a trace from the server's own position, in
        which the refused events never took a place.
        """
        with self._lock:
            self._conn.execute(
                "DELETE FROM gaps WHERE NOT EXISTS (SELECT 1 FROM spool WHERE "
                "spool.tenant IS gaps.tenant AND "
                "json_extract(spool.body, '$.trace_id') = gaps.trace_id)"
            )
            rows = self._conn.execute(
                "SELECT trace_id, trace_seq FROM gaps WHERE tenant IS ? ORDER BY trace_seq",
                (tenant,),
            ).fetchall()
        found: dict[str, list[int]] = {}
        for trace_id, trace_seq in rows:
            found.setdefault(str(trace_id), []).append(int(trace_seq))
        return found

    def pending(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def rejected(self) -> list[tuple[str, str]]:
        """``(envelope JSON, error)`` of every refused event, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT body, error FROM refused ORDER BY seq").fetchall()
        return [(str(body), str(error)) for body, error in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
