"""Service accounts and API keys over SQL.

A key reads ``dgk_<key_id>_<secret>``; only SHA-256 of the whole key is
stored. Authentication looks the key up by its id and compares hashes in
constant time, on every request, so a revocation takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from decisiongraph.core.errors import ConflictError, InvalidArgumentError, NotFoundError
from decisiongraph.store.sql_backend import SqlBackend

KEY_PREFIX = "dgk"
_INSERT_KEY = (
    "INSERT INTO dg_api_key (key_id, account_id, key_hash, created_at) VALUES (?, ?, ?, ?)"
)
SCOPES = ("events:write", "events:read", "admin", "workflows:write", "workflows:read")


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    account_id: str
    name: str
    tenants: tuple[str, ...]
    scopes: tuple[str, ...]
    created_at: str
    disabled_at: str | None
    key_ids: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "name": self.name,
            "tenants": list(self.tenants),
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "disabled_at": self.disabled_at,
            "active_key_ids": list(self.key_ids),
        }


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _new_key() -> tuple[str, str]:
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


class SqlAccounts(SqlBackend):
    """Accounts, keys, and authentication by key."""

    def create_account(
        self, name: str, tenants: list[str], scopes: list[str]
    ) -> tuple[ServiceAccount, str]:
        """A new account and its first key (shown once, never stored)."""
        if not name.strip():
            raise InvalidArgumentError("An account needs a name")
        if not tenants or any(not t.strip() for t in tenants):
            raise InvalidArgumentError("An account needs at least one tenant")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InvalidArgumentError(f"Unknown or missing scopes {unknown}; known: {SCOPES}")
        account_id = f"acct_{secrets.token_hex(8)}"
        key_id, key = _new_key()
        now = self._now()
        with self._write() as cur:
            exists = self._x(
                cur, "SELECT 1 FROM dg_service_account WHERE name = ?", (name,)
            ).fetchone()
            if exists:
                raise ConflictError(f"An account named '{name}' exists already")
            self._x(
                cur,
                "INSERT INTO dg_service_account (account_id, name, tenants_json, scopes_json, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    account_id,
                    name,
                    json.dumps(sorted(set(tenants))),
                    json.dumps(sorted(set(scopes))),
                    now,
                ),
            )
            self._x(
                cur,
                _INSERT_KEY,
                (key_id, account_id, _hash(key), now),
            )
        return self.get_account(name), key

    def get_account(self, name_or_id: str) -> ServiceAccount:
        with self._read() as cur:
            row = self._x(
                cur,
                "SELECT account_id, name, tenants_json, scopes_json, created_at, disabled_at "
                "FROM dg_service_account WHERE name = ? OR account_id = ?",
                (name_or_id, name_or_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"No account '{name_or_id}'")
            keys = self._x(
                cur,
                "SELECT key_id FROM dg_api_key WHERE account_id = ? AND revoked_at IS NULL "
                "ORDER BY created_at, key_id",
                (row[0],),
            ).fetchall()
        return ServiceAccount(
            row[0],
            row[1],
            tuple(json.loads(row[2])),
            tuple(json.loads(row[3])),
            row[4],
            row[5],
            tuple(k[0] for k in keys),
        )

    def list_accounts(self) -> list[ServiceAccount]:
        with self._read() as cur:
            names = [
                r[0] for r in self._x(cur, "SELECT name FROM dg_service_account ORDER BY name")
            ]
        return [self.get_account(name) for name in names]

    def add_key(self, name_or_id: str) -> str:
        """Another key for the account; earlier keys keep working (rotation)."""
        account = self.get_account(name_or_id)
        key_id, key = _new_key()
        with self._write() as cur:
            self._x(
                cur,
                _INSERT_KEY,
                (key_id, account.account_id, _hash(key), self._now()),
            )
        return key

    def revoke_key(self, key_id: str) -> None:
        with self._write() as cur:
            changed = self._x(
                cur,
                "UPDATE dg_api_key SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (self._now(), key_id),
            ).rowcount
        if not changed:
            raise NotFoundError(f"No active key '{key_id}'")

    def disable_account(self, name_or_id: str) -> None:
        account = self.get_account(name_or_id)
        with self._write() as cur:
            self._x(
                cur,
                "UPDATE dg_service_account SET disabled_at = ? WHERE account_id = ?",
                (self._now(), account.account_id),
            )

    def authenticate(self, key: str) -> ServiceAccount | None:
        """The active account holding ``key``, or None."""
        parts = key.split("_", 2)  # the secret itself may hold underscores
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            return None
        with self._read() as cur:
            row = self._x(
                cur,
                "SELECT k.key_hash, a.name FROM dg_api_key k JOIN dg_service_account a "
                "ON a.account_id = k.account_id WHERE k.key_id = ? AND k.revoked_at IS NULL "
                "AND a.disabled_at IS NULL",
                (parts[1],),
            ).fetchone()
        if row is None or not hmac.compare_digest(str(row[0]), _hash(key)):
            return None
        return self.get_account(str(row[1]))
