"""The typed helpers of spec 11.2-11.3, shared by every client.

The payload shapes are hash-relevant (optional record fields are present as
``null``; optional top-level members only when given), so they are built in
one place: the embedded ``DecisionGraph`` and the remote SDK client both
inherit them and only supply ``append_event``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from decisiongraph.core import event_types as et
from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.core.ids import new_id
from decisiongraph.core.pii import FORBIDDEN_PATTERNS, find_forbidden
from decisiongraph.core.refs import ActorRef, SourceRef, as_dict

SourceLike = SourceRef | Mapping[str, Any]
ActorLike = ActorRef | Mapping[str, Any]

log = logging.getLogger("decisiongraph")

# A forbidden pattern and the rest of its word (the value after ``token=``
# is the secret, not the marker); a key block and all that follows it.
_FORBIDDEN_RE = re.compile(
    "(?:" + "|".join(re.escape(p) for p in FORBIDDEN_PATTERNS) + r")\S*", re.IGNORECASE
)
_KEY_BLOCK_RE = re.compile(r"-----BEGIN.*", re.IGNORECASE | re.DOTALL)


def default_idempotency_key(event_type: str, trace_id: str, trace_seq: int) -> str:
    """Spec 5.1's default key of an event with no key of its own."""
    return f"{event_type}:{trace_id}:{trace_seq}"


def require_text(value: Any, name: str) -> str:
    """``value`` if it is a string, else INVALID_ARGUMENT.

    Embedded and remote must refuse a wrong type the same way: remotely an
    int would otherwise fail inside URL quoting (``TypeError``) while the
    embedded query simply found nothing (``NotFound``).
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{name} must be a string, not {type(value).__name__}", details={"field": name}
        )
    return value


def failure_summary(exc: BaseException) -> str:
    """The summary a failed ``trace()`` block records: safe for the PII guard.

    The caller's error text is not ours to vet (``connect failed: token=...``);
    were the guard to refuse the summary, the trace would stay open and the
    caller would see a ``PiiPolicyViolationError`` instead of their own
    error. Each forbidden pattern is blanked out with the rest of its word
    (``token=abc123`` becomes ``[redacted]``: the value is the secret), a
    key block with everything after it; if anything still trips the guard
    (a pattern formed across a redaction) only the type name is kept.
    """
    text = _KEY_BLOCK_RE.sub("[redacted]", f"{type(exc).__name__}: {exc}")
    summary = _FORBIDDEN_RE.sub("[redacted]", text)[:500]
    return summary if find_forbidden(summary) is None else type(exc).__name__


def _record_fields(value: Any, name: str, required: Sequence[str]) -> Mapping[str, Any]:
    """``value`` as a mapping holding ``required``; anything else is a
    caller's mistake, refused with the stable code rather than surfacing as
    a ``KeyError`` or ``AttributeError`` from inside a helper."""
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"{name} must be a record or a mapping, not {type(value).__name__}",
            details={"field": name},
        )
    missing = [key for key in required if key not in value]
    if missing:
        raise InvalidArgumentError(
            f"{name} is missing {', '.join(missing)}", details={"field": name}
        )
    return value


def source_ref(value: SourceLike) -> SourceRef:
    if isinstance(value, SourceRef):
        return value
    fields = _record_fields(value, "source", ("producer_id", "system"))
    return SourceRef(fields["producer_id"], fields["system"], fields.get("subsystem"))


def actor_ref(value: ActorLike) -> ActorRef:
    if isinstance(value, ActorRef):
        return value
    fields = _record_fields(value, "actor", ("actor_type", "actor_id"))
    return ActorRef(fields["actor_type"], fields["actor_id"])


R = TypeVar("R")


class EventHelpers(Generic[R]):
    """``start_trace`` ... ``commit_action`` on top of ``append_event``.

    ``R`` is what an append returns: a ``StoredEvent`` embedded, the
    server's answer remotely.
    """

    #: Makes event and trace ids; replace it for reproducible ids (tests,
    #: simulations): the same calls then give the same events and digests.
    new_id: Callable[[], str] = staticmethod(new_id)

    def build_envelope(
        self,
        trace_id: str,
        trace_seq: int,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        occurred_at: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_event_id: str | None = None,
        schema_version: int = 1,
        tags: Sequence[str] | None = None,
    ) -> EventEnvelope:
        """The envelope of spec 11.2 defaults: a fresh event id and the
        ``"{event_type}:{trace_id}:{trace_seq}"`` idempotency key."""
        if isinstance(tags, str):  # a str is a Sequence[str]: "urgent" is not 6 tags
            raise InvalidArgumentError("tags must be a list of strings, not a string")
        return EventEnvelope(
            event_id=self.new_id(),
            trace_id=trace_id,
            trace_seq=trace_seq,
            event_type=event_type,
            occurred_at=occurred_at,
            source=source_ref(source),
            actor=actor_ref(actor),
            # None takes the default; anything else, "" included, is the
            # caller's key and is validated as given (spec 5, step 1).
            idempotency_key=(
                default_idempotency_key(event_type, trace_id, trace_seq)
                if idempotency_key is None
                else idempotency_key
            ),
            payload=payload,
            correlation_id=correlation_id,
            causation_event_id=causation_event_id,
            schema_version=schema_version,
            tags=tuple(tags or ()),
        )

    def append_event(
        self,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_event_id: str | None = None,
        schema_version: int = 1,
        tags: Sequence[str] | None = None,
        occurred_at: str | None = None,
    ) -> R:
        raise NotImplementedError

    def start_trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        **options: Any,
    ) -> str:
        trace_id, _ = self._start_trace(
            workflow, title, primary_entity, source, actor, context, trace_id, **options
        )
        return trace_id

    def _start_trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        **options: Any,
    ) -> tuple[str, R]:
        """The TraceStarted append, and the new trace's id."""
        trace_id = trace_id or self.new_id()
        entity = _record_fields(as_dict(primary_entity), "primary_entity", ())
        payload: dict[str, Any] = {
            "workflow": workflow,
            "title": title,
            "primary_entity": {
                "entity_type": entity.get("entity_type"),
                "entity_id": entity.get("entity_id"),
                "system": entity.get("system"),
            },
        }
        if context:
            payload["context"] = dict(context)
        if options.get("idempotency_key") is None:  # absent or None: the default
            options["idempotency_key"] = f"start:{trace_id}"
        return trace_id, self.append_event(
            trace_id, et.TRACE_STARTED, payload, source, actor, **options
        )

    def finish_trace(
        self,
        trace_id: str,
        outcome: str,
        source: SourceLike,
        actor: ActorLike,
        summary: str | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {"outcome": outcome}
        if summary:
            payload["summary"] = summary
        if options.get("idempotency_key") is None:  # absent or None: the default
            options["idempotency_key"] = f"finish:{trace_id}"
        return self.append_event(trace_id, et.TRACE_FINISHED, payload, source, actor, **options)

    def observe_input(
        self,
        trace_id: str,
        input_id: str,
        input_source: Any,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> R:
        payload = {"input_id": input_id, "source": as_dict(input_source), "facts": as_dict(facts)}
        return self.append_event(trace_id, et.INPUT_OBSERVED, payload, source, actor, **options)

    def observe_entity(
        self,
        trace_id: str,
        entity: Any,
        role: str,
        facts: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> R:
        payload = {"entity": as_dict(entity), "role": role, "facts": as_dict(facts)}
        return self.append_event(trace_id, et.ENTITY_OBSERVED, payload, source, actor, **options)

    def evaluate_policy(
        self,
        trace_id: str,
        policy: Any,
        inputs: Sequence[Any],
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        violations: Sequence[Any] | None = None,
        explanation: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {
            "policy": as_dict(policy),
            "inputs": as_dict(list(inputs)),
            "decision": decision,
        }
        if violations:
            payload["violations"] = as_dict(list(violations))
        if explanation:
            payload["explanation"] = dict(explanation)
        return self.append_event(trace_id, et.POLICY_EVALUATED, payload, source, actor, **options)

    def request_exception(
        self,
        trace_id: str,
        exception_id: str,
        policy: Any,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {
            "exception_id": exception_id,
            "policy": as_dict(policy),
            "reason": reason,
        }
        if evidence:
            payload["evidence"] = as_dict(list(evidence))
        return self.append_event(
            trace_id, et.EXCEPTION_REQUESTED, payload, source, actor, **options
        )

    def record_approval(
        self,
        trace_id: str,
        approval_id: str,
        subject: Any,
        approver: Any,
        decision: str,
        source: SourceLike,
        actor: ActorLike,
        reason: str | None = None,
        evidence: Sequence[Any] | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {
            "approval_id": approval_id,
            "subject": as_dict(subject),
            "approver": as_dict(approver),
            "decision": decision,
        }
        if reason is not None:
            payload["reason"] = reason
        if evidence:
            payload["evidence"] = as_dict(list(evidence))
        return self.append_event(trace_id, et.APPROVAL_RECORDED, payload, source, actor, **options)

    def cite_precedent(
        self,
        trace_id: str,
        cited_trace_id: str,
        reason: str,
        source: SourceLike,
        actor: ActorLike,
        similarity_score: str | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {"cited_trace_id": cited_trace_id, "reason": reason}
        if similarity_score is not None:
            payload["similarity_score"] = similarity_score
        return self.append_event(trace_id, et.PRECEDENT_CITED, payload, source, actor, **options)

    def propose_action(
        self,
        trace_id: str,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        source: SourceLike,
        actor: ActorLike,
        **options: Any,
    ) -> R:
        payload = {
            "action_id": action_id,
            "action_type": action_type,
            "target_entity": as_dict(target_entity),
            "target_system": target_system,
            "changes": as_dict(list(changes)),
        }
        return self.append_event(trace_id, et.ACTION_PROPOSED, payload, source, actor, **options)

    def commit_action(
        self,
        trace_id: str,
        action_id: str,
        status: str,
        source: SourceLike,
        actor: ActorLike,
        external_reference: str | None = None,
        error: str | None = None,
        **options: Any,
    ) -> R:
        payload: dict[str, Any] = {"action_id": action_id, "status": status}
        if external_reference is not None:
            payload["external_reference"] = external_reference
        if error is not None:
            payload["error"] = error
        return self.append_event(trace_id, et.ACTION_COMMITTED, payload, source, actor, **options)

    def trace(
        self,
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None = None,
        trace_id: str | None = None,
    ) -> TraceScope[R]:
        """``with dg.trace(...) as t:`` records one decision as one trace.

        Leaving the block finishes the trace with ``success``; an exception
        finishes it with ``failure`` and a summary of the error, then
        propagates.
        """
        return TraceScope(self, workflow, title, primary_entity, source, actor, context, trace_id)


def note_finish_failure(exc: BaseException, trace_id: str, finishing: Exception) -> None:
    """Record on the caller's exception (and in the log) that the trace could
    not be finished; the caller's exception is what propagates."""
    message = f"decisiongraph: trace {trace_id} could not be finished: {finishing}"
    exc.add_note(message)
    log.warning("%s", message)


class TraceScope(Generic[R]):
    """One open trace: the helpers without the trace id, source and actor."""

    def __init__(
        self,
        client: EventHelpers[R],
        workflow: str,
        title: str,
        primary_entity: Any,
        source: SourceLike,
        actor: ActorLike,
        context: Mapping[str, str] | None,
        trace_id: str | None,
    ) -> None:
        self._client = client
        self._start = (workflow, title, primary_entity, context, trace_id)
        self.source = source
        self.actor = actor
        self.trace_id = ""
        self.outcome: str | None = None
        #: Set once ``finish`` was called, so leaving the block does not
        #: finish the trace a second time (that would be refused).
        self.finished = False

    def __enter__(self) -> TraceScope[R]:
        workflow, title, entity, context, trace_id = self._start
        self.trace_id = self._client.start_trace(
            workflow, title, entity, self.source, self.actor, context=context, trace_id=trace_id
        )
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.finished:
            return
        if exc is None:
            self.finish(self.outcome or "success")
            return
        try:
            self.finish("failure", summary=failure_summary(exc))
        except Exception as finishing:  # never mask the caller's own exception
            note_finish_failure(exc, self.trace_id, finishing)

    def finish(self, outcome: str, summary: str | None = None) -> R:
        """Finish the trace now (the block's exit then leaves it alone)."""
        result = self._client.finish_trace(self.trace_id, outcome, self.source, self.actor, summary)
        self.finished = True
        return result

    def _call(self, name: str, *args: Any, **options: Any) -> R:
        method = getattr(self._client, name)
        result: R = method(self.trace_id, *args, self.source, self.actor, **options)
        return result

    def observe_input(self, input_id: str, input_source: Any, facts: Sequence[Any], **o: Any) -> R:
        return self._call("observe_input", input_id, input_source, facts, **o)

    def observe_entity(self, entity: Any, role: str, facts: Sequence[Any], **o: Any) -> R:
        return self._call("observe_entity", entity, role, facts, **o)

    def evaluate_policy(self, policy: Any, inputs: Sequence[Any], decision: str, **o: Any) -> R:
        return self._call("evaluate_policy", policy, inputs, decision, **o)

    def request_exception(self, exception_id: str, policy: Any, reason: str, **o: Any) -> R:
        return self._call("request_exception", exception_id, policy, reason, **o)

    def record_approval(
        self, approval_id: str, subject: Any, approver: Any, decision: str, **o: Any
    ) -> R:
        return self._call("record_approval", approval_id, subject, approver, decision, **o)

    def cite_precedent(self, cited_trace_id: str, reason: str, **o: Any) -> R:
        return self._call("cite_precedent", cited_trace_id, reason, **o)

    def propose_action(
        self,
        action_id: str,
        action_type: str,
        target_entity: Any,
        target_system: str,
        changes: Sequence[Any],
        **o: Any,
    ) -> R:
        return self._call(
            "propose_action", action_id, action_type, target_entity, target_system, changes, **o
        )

    def commit_action(self, action_id: str, status: str, **o: Any) -> R:
        return self._call("commit_action", action_id, status, **o)
