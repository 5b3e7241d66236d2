"""DecisionGraph: an append-only, tamper-evident log of decisions.

The public API is what ``__all__`` lists; everything else is internal.
"""

from __future__ import annotations

from decisiongraph.api_protocol import (
    AppendResult,
    AsyncDecisionGraphAPI,
    AsyncTraceHandle,
    DecisionGraphAPI,
    SpooledEvent,
    TraceHandle,
)
from decisiongraph.connect import connect
from decisiongraph.core.envelope import DEFAULT_TENANT, EventEnvelope, StoredEvent
from decisiongraph.core.errors import ALL_ERROR_CODES, DecisionGraphError
from decisiongraph.core.event_types import (
    ACTION_COMMITTED as EVENT_TYPE_ACTION_COMMITTED,
)
from decisiongraph.core.event_types import (
    ACTION_PROPOSED as EVENT_TYPE_ACTION_PROPOSED,
)
from decisiongraph.core.event_types import (
    ALL_EVENT_TYPES,
)
from decisiongraph.core.event_types import (
    APPROVAL_RECORDED as EVENT_TYPE_APPROVAL_RECORDED,
)
from decisiongraph.core.event_types import (
    ENTITY_OBSERVED as EVENT_TYPE_ENTITY_OBSERVED,
)
from decisiongraph.core.event_types import (
    EXCEPTION_REQUESTED as EVENT_TYPE_EXCEPTION_REQUESTED,
)
from decisiongraph.core.event_types import (
    INPUT_OBSERVED as EVENT_TYPE_INPUT_OBSERVED,
)
from decisiongraph.core.event_types import (
    POLICY_EVALUATED as EVENT_TYPE_POLICY_EVALUATED,
)
from decisiongraph.core.event_types import (
    PRECEDENT_CITED as EVENT_TYPE_PRECEDENT_CITED,
)
from decisiongraph.core.event_types import (
    TRACE_FINISHED as EVENT_TYPE_TRACE_FINISHED,
)
from decisiongraph.core.event_types import (
    TRACE_STARTED as EVENT_TYPE_TRACE_STARTED,
)
from decisiongraph.core.refs import (
    ActorRef,
    ApprovalSubject,
    Change,
    EntityRef,
    EvidenceRef,
    Fact,
    PolicyRef,
    SourceObjectRef,
    SourceRef,
    Value,
    Violation,
)
from decisiongraph.facade import DecisionGraph
from decisiongraph.projections.digests import Digests
from decisiongraph.sdk.async_client import AsyncClient
from decisiongraph.sdk.client import Client

__version__ = "0.1.0"

__all__ = [
    "ALL_ERROR_CODES",
    "ALL_EVENT_TYPES",
    "DEFAULT_TENANT",
    "EVENT_TYPE_ACTION_COMMITTED",
    "EVENT_TYPE_ACTION_PROPOSED",
    "EVENT_TYPE_APPROVAL_RECORDED",
    "EVENT_TYPE_ENTITY_OBSERVED",
    "EVENT_TYPE_EXCEPTION_REQUESTED",
    "EVENT_TYPE_INPUT_OBSERVED",
    "EVENT_TYPE_POLICY_EVALUATED",
    "EVENT_TYPE_PRECEDENT_CITED",
    "EVENT_TYPE_TRACE_FINISHED",
    "EVENT_TYPE_TRACE_STARTED",
    "ActorRef",
    "AppendResult",
    "ApprovalSubject",
    "AsyncClient",
    "AsyncDecisionGraphAPI",
    "AsyncTraceHandle",
    "Change",
    "Client",
    "DecisionGraph",
    "DecisionGraphAPI",
    "DecisionGraphError",
    "Digests",
    "EntityRef",
    "EventEnvelope",
    "EvidenceRef",
    "Fact",
    "PolicyRef",
    "SourceObjectRef",
    "SourceRef",
    "SpooledEvent",
    "StoredEvent",
    "TraceHandle",
    "Value",
    "Violation",
    "__version__",
    "connect",
]
