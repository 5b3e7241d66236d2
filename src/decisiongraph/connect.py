"""``connect``: the right client for a target, so agent code never changes.

A SQLite path or ``postgresql://`` URL opens the embedded library; an
``http(s)://`` URL opens the SDK client. Both are a ``DecisionGraphAPI``
(the return statements below are where mypy checks that they conform).
"""

from __future__ import annotations

from typing import Any

from decisiongraph.api_protocol import DecisionGraphAPI
from decisiongraph.facade import DecisionGraph
from decisiongraph.sdk.client import Client


def connect(target: str, **options: Any) -> DecisionGraphAPI:
    """``DecisionGraph(target, **options)``, or ``Client(target, api_key, **options)``
    for an http(s) URL (``api_key=`` required; ``tenant=``, ``buffered=`` ...)."""
    if target.startswith(("http://", "https://")):
        api_key = options.pop("api_key", None)
        if not api_key:
            raise ValueError("An http(s) target needs api_key=...")
        remote: DecisionGraphAPI = Client(target, api_key, **options)
        return remote
    embedded: DecisionGraphAPI = DecisionGraph(target, **options)
    return embedded
