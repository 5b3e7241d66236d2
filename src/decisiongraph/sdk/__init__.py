"""The Python SDK for agents: an HTTP client with the library's helpers."""

from __future__ import annotations

from decisiongraph.sdk.async_client import AsyncClient
from decisiongraph.sdk.client import Client
from decisiongraph.sdk.retry import RetryPolicy

__all__ = ["AsyncClient", "Client", "RetryPolicy"]
