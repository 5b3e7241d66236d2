"""The one table from error codes to HTTP statuses, and the error envelope.

Every error leaves the service as
``{"error": {"code", "message", "details", "request_id"}}``.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from decisiongraph.core import errors as core

UNAUTHENTICATED: Final = "DG_ERR_UNAUTHENTICATED"
FORBIDDEN: Final = "DG_ERR_FORBIDDEN"
PAYLOAD_TOO_LARGE: Final = "DG_ERR_PAYLOAD_TOO_LARGE"
RATE_LIMITED: Final = "DG_ERR_RATE_LIMITED"
MALFORMED_JSON: Final = "DG_ERR_MALFORMED_JSON"
METHOD_NOT_ALLOWED: Final = "DG_ERR_METHOD_NOT_ALLOWED"
INTERNAL: Final = core.INTERNAL

STATUS_BY_CODE: Final[dict[str, int]] = {
    core.INVALID_ARGUMENT: 400,
    MALFORMED_JSON: 400,
    UNAUTHENTICATED: 401,
    FORBIDDEN: 403,
    core.NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    core.IDEMPOTENCY_CONFLICT: 409,
    core.EVENT_SEQUENCE_INVALID: 409,
    core.CONFLICT: 409,
    PAYLOAD_TOO_LARGE: 413,
    core.SCHEMA_VIOLATION: 422,
    core.PII_POLICY_VIOLATION: 422,
    RATE_LIMITED: 429,
    INTERNAL: 500,
    core.PROJECTION_OUT_OF_DATE: 503,
    core.STORAGE: 503,
}


def status_of(code: str, details: dict[str, Any] | None = None) -> int:
    """The HTTP status of an error: the table's, except that an event id
    already stored (DG_ERR_STORAGE by the spec) is a permanent 409, not the
    503 of an unavailable database that clients retry."""
    if code == core.STORAGE and (details or {}).get("reason") == core.DUPLICATE_EVENT_ID:
        return 409
    return STATUS_BY_CODE.get(code, 500)


class ServiceError(core.DecisionGraphError):
    """An error of the HTTP layer (auth, limits, malformed requests)."""


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def error_response(
    request: Request, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    status = status_of(code, details)
    headers = {"X-Request-ID": request_id}
    if status == 503:
        headers["Retry-After"] = "1"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 429:
        headers["Retry-After"] = str((details or {}).get("retry_after", 1))
    body = ErrorEnvelope(
        error=ErrorBody(code=code, message=message, details=details or {}, request_id=request_id)
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, core.DecisionGraphError)
    return error_response(request, exc.code, exc.message, exc.details)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Routing's own answers (no such route, wrong method) in the envelope too."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        response = error_response(
            request, METHOD_NOT_ALLOWED, f"Method {request.method} is not allowed here"
        )
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if exc.status_code == 404:
        return error_response(request, core.NOT_FOUND, f"No such resource: {request.url.path}")
    return error_response(
        request, INTERNAL if exc.status_code >= 500 else core.INVALID_ARGUMENT, str(exc.detail)
    )


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return error_response(request, MALFORMED_JSON, "Malformed JSON body")
    content_type = request.headers.get("content-type", "")
    if not is_json_media(content_type) and _body_not_read(exc):
        # FastAPI parses a body as JSON only when its Content-Type says so
        # (strictly: a missing one does not count, which keeps browsers'
        # "simple" cross-site requests out); anything else (curl -d sends a
        # form type) reached the model as raw bytes. Name the real problem.
        return error_response(
            request,
            core.INVALID_ARGUMENT,
            "The body must be JSON sent with Content-Type: application/json",
            {"content_type": content_type[:100] or None},
        )
    problems = [
        {"location": ".".join(str(p) for p in err.get("loc", ())), "problem": str(err.get("msg"))}
        for err in exc.errors()
    ]
    return error_response(
        request, core.INVALID_ARGUMENT, "The request is not valid", {"problems": problems}
    )


def is_json_media(content_type: str) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``+json``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _body_not_read(exc: RequestValidationError) -> bool:
    """Whether the body as a whole was refused (it never became an object)."""
    return any(tuple(err.get("loc", ())) == ("body",) for err in exc.errors())


ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in (
        (400, "Invalid argument or malformed JSON"),
        (401, "Missing or unknown API key"),
        (403, "The key lacks the scope"),
        (404, "Not found (or not this key's tenant)"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Schema or PII policy violation"),
        (429, "Rate limited; see Retry-After"),
        (500, "Internal error (logged with the request id)"),
        (503, "Projection out of date, or storage unavailable"),
    )
}
