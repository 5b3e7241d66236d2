"""The Python SDK for agents: HTTP clients with the library's helpers and result types."""

from __future__ import annotations

from decisiongraph.query.traces import TracePage
from decisiongraph.sdk.async_client import AsyncClient
from decisiongraph.sdk.batcher import DeliveryStatus
from decisiongraph.sdk.client import Client
from decisiongraph.sdk.results import AppendResult, SpooledEvent
from decisiongraph.sdk.retry import RetryPolicy

__all__ = [
    "AppendResult",
    "AsyncClient",
    "Client",
    "DeliveryStatus",
    "RetryPolicy",
    "SpooledEvent",
    "TracePage",
]
