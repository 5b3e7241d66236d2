"""Typed errors from the server's error envelope (same codes as the library)."""

from __future__ import annotations

from typing import Any

import httpx

from decisiongraph.core.errors import (
    EVENT_SEQUENCE_INVALID,
    IDEMPOTENCY_CONFLICT,
    DecisionGraphError,
    StorageError,
    error_for_code,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

#: Refusals a stale remembered trace position causes (another writer
#: appended): the default key names the position, so either can come back.
STALE_POSITION_CODES = frozenset({EVENT_SEQUENCE_INVALID, IDEMPOTENCY_CONFLICT})

#: Transport failures that prove the request never reached the server: safe
#: to retry even for a call that must not run twice.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def unavailable(exc: httpx.TransportError) -> DecisionGraphError:
    """The typed error for a server that could not be reached or did not answer.

    Agents catch ``DecisionGraphError`` (``code`` DG_ERR_STORAGE, as the
    embedded library reports a database it cannot reach), not httpx's
    exception tree; the original stays chained as ``__cause__``.
    """
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    error = StorageError(
        f"DecisionGraph service unavailable ({what}): {type(exc).__name__}: {exc}",
        details={"transport_error": type(exc).__name__},
    )
    return error


def error_from_response(response: httpx.Response) -> DecisionGraphError:
    """The typed error a failed response describes, with its request id."""
    try:
        body: Any = response.json()
        error = body["error"]
        code, message, details = error["code"], error["message"], error.get("details") or {}
        request_id = error.get("request_id") or response.headers.get("x-request-id")
    except (ValueError, KeyError, TypeError):
        code, message, details = "DG_ERR_STORAGE", f"HTTP {response.status_code}", {}
        request_id = response.headers.get("x-request-id")
    exc = error_for_code(code, message, details)
    exc.request_id = request_id
    exc.status = response.status_code
    return exc
