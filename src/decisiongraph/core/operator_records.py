"""What operators act on: dead letters and the audit log of their actions.

Plain records, shared by the stores that keep them, the library and the
HTTP clients that return them, so every side hands out the same types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
