"""``connect``: the right client for a target, so agent code never changes.

A SQLite path or ``postgresql://`` URL opens the embedded library; an
``http(s)://`` URL opens the SDK client. Both offer the same helpers,
``trace()`` included.
"""

from __future__ import annotations

from typing import Any

from decisiongraph.facade import DecisionGraph
from decisiongraph.sdk.client import Client


def connect(target: str, **options: Any) -> DecisionGraph | Client:
    if target.startswith(("http://", "https://")):
        api_key = options.pop("api_key", None)
        if not api_key:
            raise ValueError("An http(s) target needs api_key=...")
        return Client(target, api_key, **options)
    return DecisionGraph(target, **options)
