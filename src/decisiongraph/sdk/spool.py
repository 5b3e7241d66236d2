"""A durable local spool: events wait here (a SQLite file) until delivered.

Appends are written before the call returns, so they survive a server
outage and a restart of the agent; a background sender delivers them in
order and deletes them only after the server has stored them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class Spool:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "tenant TEXT, body TEXT NOT NULL)"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY, tenant TEXT, "
            "body TEXT NOT NULL, error TEXT NOT NULL)"
        )

    def put(self, tenant: str | None, envelope: dict[str, Any]) -> None:
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._conn.execute("INSERT INTO spool (tenant, body) VALUES (?, ?)", (tenant, body))

    def peek(self, limit: int) -> list[tuple[int, str | None, dict[str, Any]]]:
        """The oldest events, all of the first one's tenant (one request)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, tenant, body FROM spool ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        if not rows:
            return []
        tenant = rows[0][1]
        out = []
        for row_id, row_tenant, body in rows:
            if row_tenant != tenant:
                break
            out.append((int(row_id), row_tenant, json.loads(body)))
        return out

    def remove(self, ids: list[int]) -> None:
        with self._lock:
            self._conn.executemany("DELETE FROM spool WHERE id = ?", [(i,) for i in ids])

    def reject(self, ids: list[int], error: str) -> None:
        """Move events the server refused for good out of the way (kept for inspection)."""
        with self._lock:
            self._conn.execute("BEGIN")
            for row_id in ids:
                self._conn.execute(
                    "INSERT INTO rejected (id, tenant, body, error) "
                    "SELECT id, tenant, body, ? FROM spool WHERE id = ?",
                    (error, row_id),
                )
                self._conn.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            self._conn.execute("COMMIT")

    def pending(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def rejected(self) -> list[tuple[dict[str, Any], str]]:
        with self._lock:
            rows = self._conn.execute("SELECT body, error FROM rejected ORDER BY id").fetchall()
        return [(json.loads(body), error) for body, error in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
