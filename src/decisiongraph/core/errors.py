"""One exception root with stable codes.

Every failure a caller can act on is a :class:`DecisionGraphError` carrying one
of the nine ``DG_ERR_*`` codes of the specification. Layers above (HTTP, CLI,
SDK) map the *code* to their own vocabulary in one place; messages are for
humans and may change, codes may not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

INVALID_ARGUMENT: Final = "DG_ERR_INVALID_ARGUMENT"
SCHEMA_VIOLATION: Final = "DG_ERR_SCHEMA_VIOLATION"
PII_POLICY_VIOLATION: Final = "DG_ERR_PII_POLICY_VIOLATION"
IDEMPOTENCY_CONFLICT: Final = "DG_ERR_IDEMPOTENCY_CONFLICT"
EVENT_SEQUENCE_INVALID: Final = "DG_ERR_EVENT_SEQUENCE_INVALID"
CONFLICT: Final = "DG_ERR_CONFLICT"
NOT_FOUND: Final = "DG_ERR_NOT_FOUND"
PROJECTION_OUT_OF_DATE: Final = "DG_ERR_PROJECTION_OUT_OF_DATE"
STORAGE: Final = "DG_ERR_STORAGE"
#: Not one of the specification's nine: what no domain rule explains (a bug,
#: such as a projection step raising a plain Python exception). Recorded on
#: dead letters so that an operator can tell a defect from bad data; the
#: HTTP layer answers it with 500.
INTERNAL: Final = "DG_ERR_INTERNAL"

#: ``details["reason"]`` of the DG_ERR_STORAGE an append gets for an event
#: id that is already stored (the spec's code for it, §7.4): unlike the
#: database being unavailable, retrying it can never succeed.
DUPLICATE_EVENT_ID: Final = "duplicate_event_id"

ALL_ERROR_CODES: Final = (
    INVALID_ARGUMENT,
    SCHEMA_VIOLATION,
    PII_POLICY_VIOLATION,
    IDEMPOTENCY_CONFLICT,
    EVENT_SEQUENCE_INVALID,
    CONFLICT,
    NOT_FOUND,
    PROJECTION_OUT_OF_DATE,
    STORAGE,
)


class DecisionGraphError(Exception):
    """Root of every domain error; ``code`` is the stable contract."""

    default_code: ClassVar[str] = STORAGE
    #: Set on errors decoded from an HTTP response (the server's request id).
    request_id: str | None = None
    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def with_details(self, **extra: Any) -> DecisionGraphError:
        """Return the same error enriched with context (e.g. batch position)."""
        self.details.update(extra)
        return self


class InvalidArgumentError(DecisionGraphError):
    default_code = INVALID_ARGUMENT


class SchemaViolationError(DecisionGraphError):
    default_code = SCHEMA_VIOLATION


class PiiPolicyViolationError(DecisionGraphError):
    default_code = PII_POLICY_VIOLATION


class IdempotencyConflictError(DecisionGraphError):
    default_code = IDEMPOTENCY_CONFLICT


class EventSequenceInvalidError(DecisionGraphError):
    default_code = EVENT_SEQUENCE_INVALID


class ConflictError(DecisionGraphError):
    default_code = CONFLICT


class NotFoundError(DecisionGraphError):
    default_code = NOT_FOUND


class ProjectionOutOfDateError(DecisionGraphError):
    default_code = PROJECTION_OUT_OF_DATE


class StorageError(DecisionGraphError):
    default_code = STORAGE


_BY_CODE: Final[dict[str, type[DecisionGraphError]]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgumentError,
        SchemaViolationError,
        PiiPolicyViolationError,
        IdempotencyConflictError,
        EventSequenceInvalidError,
        ConflictError,
        NotFoundError,
        ProjectionOutOfDateError,
        StorageError,
    )
}


def describe_failure(exc: BaseException, unexplained: str = INTERNAL) -> tuple[str, str]:
    """(code, message) of any failure: a domain error's own, else
    ``unexplained`` (by default ``INTERNAL``: a bug has no better code) and
    the exception's type and text."""
    if isinstance(exc, DecisionGraphError):
        return exc.code, exc.message
    return unexplained, f"{type(exc).__name__}: {exc}"


def error_for_code(
    code: str, message: str, details: Mapping[str, Any] | None = None
) -> DecisionGraphError:
    """Rebuild a typed error from a code (used by clients decoding envelopes)."""
    cls = _BY_CODE.get(code, DecisionGraphError)
    return cls(message, code=code, details=details)
