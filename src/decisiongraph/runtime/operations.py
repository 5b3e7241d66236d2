"""Operator actions with their guard rails, shared by the library and the API.

Each action needs a reason and is written to the audit log before it runs;
destructive ones (skipping an event, rebuilding a projection) also need a
typed confirmation. The HTTP admin routes and ``DecisionGraph`` call these,
so an action means the same thing whichever way it is taken.

``context`` is what the caller knows about who asked (the API passes its
request id and the API key's id, never the key) and is kept in the entry's
``details`` with the action's own position, so an entry can be tied to the
request and the state it acted on. The audit log is append-only, so an
outcome known only afterwards (a rebuild's final cursor) is a second entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisiongraph.core.errors import DecisionGraphError, InvalidArgumentError
from decisiongraph.core.operator_records import DeadLetter
from decisiongraph.projections.rows import check_projection_names
from decisiongraph.runtime.rebuild import Replay, check_replay_position, rebuild_online, replay_log
from decisiongraph.store.sql_base import SqlEventStore

SKIP_CONFIRMATION = "skip"
#: The entry a rebuild adds after its ``projection.rebuild`` one: done, or
#: failed (with the error's code and message).
REBUILD_DONE = "projection.rebuild.done"
REBUILD_FAILED = "projection.rebuild.failed"


def _require_reason(reason: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgumentError("A reason is required", details={"field": "reason"})


def retry_dead_letter(
    store: SqlEventStore,
    tenant_id: str,
    letter_id: int,
    *,
    actor: str,
    reason: str,
    context: Mapping[str, Any] | None = None,
) -> DeadLetter:
    """Let the projection try the event again (after a fix); audited."""
    _require_reason(reason)
    return store.resolve_dead_letter(
        tenant_id, letter_id, action="retry", actor=actor, reason=reason, details=context
    )


def skip_dead_letter(
    store: SqlEventStore,
    tenant_id: str,
    letter_id: int,
    *,
    actor: str,
    reason: str,
    confirm: str,
    context: Mapping[str, Any] | None = None,
) -> DeadLetter:
    """Let the projection pass over the event for good; needs ``confirm='skip'``."""
    _require_reason(reason)
    if confirm != SKIP_CONFIRMATION:
        raise InvalidArgumentError(
            "Skipping an event needs confirm='skip'", details={"field": "confirm"}
        )
    return store.resolve_dead_letter(
        tenant_id, letter_id, action="skip", actor=actor, reason=reason, details=context
    )


def replay(
    store: SqlEventStore,
    tenant_id: str,
    *,
    actor: str,
    reason: str,
    to_log_seq: int | None = None,
    context: Mapping[str, Any] | None = None,
) -> Replay:
    """Digests of the projections as of ``to_log_seq`` (default: now), from a
    fresh replay beside the live tables (which it leaves alone); audited.

    The replay honours the audited skips in effect, as the live projections
    do, and returns them with the digests so the caller can show them.
    """
    _require_reason(reason)
    check_replay_position(store, tenant_id, to_log_seq)  # refused calls are not audited
    store.record_audit(
        tenant_id,
        actor=actor,
        action="projection.replay",
        target=f"log_seq<={to_log_seq}" if to_log_seq is not None else "head",
        reason=reason,
        details={
            **(context or {}),
            "to_log_seq": to_log_seq,
            "head": store.get_last_log_seq(tenant_id),
        },
    )
    return replay_log(store, tenant_id, to_log_seq)


def rebuild(
    store: SqlEventStore,
    tenant_id: str,
    projection: str,
    *,
    actor: str,
    reason: str,
    confirm: str,
    context: Mapping[str, Any] | None = None,
) -> int:
    """Rebuild one projection online (reads keep being served); ``confirm``
    must repeat the projection's name. Returns the cursor after the swap."""
    _require_reason(reason)
    check_projection_names([projection])
    if confirm != projection:
        raise InvalidArgumentError(
            "Rebuilding needs confirm set to the projection's name", details={"field": "confirm"}
        )
    store.record_audit(
        tenant_id,
        actor=actor,
        action="projection.rebuild",
        target=projection,
        reason=reason,
        details={
            **(context or {}),
            "projection": projection,
            "head": store.get_last_log_seq(tenant_id),
        },
    )
    try:
        cursor = rebuild_online(store, tenant_id, projection, owner=actor)
    except DecisionGraphError as refused:
        # The request stands in the trail; so does why it came to nothing
        # (another rebuild running, a payload that no longer matches).
        store.record_audit(
            tenant_id,
            actor=actor,
            action=REBUILD_FAILED,
            target=projection,
            reason=reason,
            details={
                **(context or {}),
                "projection": projection,
                "code": refused.code,
                "message": refused.message,
            },
        )
        raise
    store.record_audit(
        tenant_id,
        actor=actor,
        action=REBUILD_DONE,
        target=projection,
        reason=reason,
        details={**(context or {}), "projection": projection, "cursor": cursor},
    )
    return cursor
