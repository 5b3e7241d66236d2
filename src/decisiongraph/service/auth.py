"""Bearer-key authentication, scopes and tenant selection.

The key is checked against the database on every request, so revoking a
key or disabling an account takes effect on the next request. A key used for
a tenant it does not hold gets 404: the tenant's resources do not exist for
that key, and nothing about them is revealed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from decisiongraph.core.errors import NotFoundError
from decisiongraph.service.errors import FORBIDDEN, UNAUTHENTICATED, ServiceError
from decisiongraph.store.sql_accounts import ServiceAccount


@dataclass(frozen=True, slots=True)
class Principal:
    account: ServiceAccount
    tenant_id: str


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (the scheme in any
    case, RFC 9110), or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_key(request: Request) -> str:
    key = bearer_token(request)
    if key is None:
        raise ServiceError("Missing bearer API key", code=UNAUTHENTICATED)
    return key


def key_id_of(key: str) -> str | None:
    """The public id part of a key (``dgk_<key_id>_<secret>``): safe to log
    and to audit, and what ``accounts revoke`` takes."""
    parts = key.split("_", 2)
    return parts[1] if len(parts) == 3 else None


def choose_tenant(account: ServiceAccount, requested: str | None) -> str:
    if requested is None or requested == "":
        if len(account.tenants) == 1:
            return account.tenants[0]
        raise ServiceError(
            "This key serves several tenants; name one in X-Tenant-ID",
            code="DG_ERR_INVALID_ARGUMENT",
        )
    if requested not in account.tenants:
        raise NotFoundError(f"Tenant '{requested}' not found")
    return requested


def require_scope(account: ServiceAccount, scope: str) -> None:
    if scope not in account.scopes:
        raise ServiceError(f"This key lacks the '{scope}' scope", code=FORBIDDEN)
