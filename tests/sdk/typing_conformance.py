"""Static check, run through mypy by test_protocol.py: both worlds are one API.

Never imported at run time; each assignment fails type checking if a class
drifts from the protocol (a missing method, a different signature, a
different result type).
"""

from __future__ import annotations

from decisiongraph import (
    AsyncClient,
    AsyncDecisionGraphAPI,
    Client,
    DecisionGraph,
    DecisionGraphAPI,
    connect,
)
from decisiongraph.api_protocol import AsyncTraceHandle, TraceHandle
from decisiongraph.core.envelope import StoredEvent
from decisiongraph.core.helpers import TraceScope
from decisiongraph.sdk.async_client import AsyncTraceScope


def embedded(dg: DecisionGraph) -> DecisionGraphAPI:
    return dg


def remote(client: Client) -> DecisionGraphAPI:
    return client


def remote_async(client: AsyncClient) -> AsyncDecisionGraphAPI:
    return client


def scope(t: TraceScope[StoredEvent]) -> TraceHandle:
    return t


def async_scope(t: AsyncTraceScope) -> AsyncTraceHandle:
    return t


def picked(target: str) -> DecisionGraphAPI:
    return connect(target)
