"""What operators act on: dead letters and the audit log of their actions.

Plain records, shared by the stores that keep them, the library and the
HTTP clients that return them, so every side hands out the same types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from decisiongraph.core.errors import InvalidArgumentError

#: A dead letter's life: ``open`` (holds its projection), ``retry`` (an
#: operator asked for another try), ``resolved`` (applied after all) or
#: ``skipped`` (passed over by an audited decision).
DEAD_LETTER_STATUSES: Final = ("open", "retry", "resolved", "skipped")


def check_dead_letter_status(status: str | None) -> None:
    """An unknown status is a typo, not a filter that matches nothing."""
    if status is not None and status not in DEAD_LETTER_STATUSES:
        raise InvalidArgumentError(
            f"Unknown dead-letter status {status!r}; valid: {', '.join(DEAD_LETTER_STATUSES)}",
            details={"status": status, "valid": list(DEAD_LETTER_STATUSES)},
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    tenant_id: str
    projection_name: str
    log_seq: int
    event_id: str
    error_code: str
    message: str
    attempts: int
    first_seen_at: str
    last_seen_at: str
    status: str  # open | retry | skipped | resolved
    resolved_at: str | None
    resolution: str | None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    tenant_id: str
    at: str
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any]
