"""Typed errors from the server's error envelope (same codes as the library)."""

from __future__ import annotations

from typing import Any

import httpx

from decisiongraph.core.errors import DecisionGraphError, error_for_code

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


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
