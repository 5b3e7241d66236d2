"""Projection digests (spec 9), computed by streaming rows into SHA-256.

Rows must arrive sorted by their id in code-point order; stores guarantee
that with byte-order collations, so a digest never needs the whole
projection in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from decisiongraph.core.canonical_json import json_d_data
from decisiongraph.core.hashing import DIGEST_PREFIX, sha256_text


class _DigestRow(Protocol):
    def digest_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Digests:
    context_graph: str
    trace_summary: str
    precedent_index: str
    full_projection: str

    def as_dict(self) -> dict[str, str]:
        return {
            "context_graph": self.context_graph,
            "trace_summary": self.trace_summary,
            "precedent_index": self.precedent_index,
            "full_projection": self.full_projection,
        }


def _feed_array(hasher: Any, rows: Iterable[_DigestRow]) -> None:
    hasher.update(b"[")
    first = True
    for row in rows:
        if not first:
            hasher.update(b",")
        first = False
        hasher.update(json_d_data(row.digest_dict()).encode("ascii"))
    hasher.update(b"]")


def context_graph_digest(nodes: Iterable[_DigestRow], edges: Iterable[_DigestRow]) -> str:
    """Hash of ``{"edges":[...],"nodes":[...]}``; edges are consumed first."""
    hasher = hashlib.sha256()
    hasher.update(b'{"edges":')
    _feed_array(hasher, edges)
    hasher.update(b',"nodes":')
    _feed_array(hasher, nodes)
    hasher.update(b"}")
    return DIGEST_PREFIX + hasher.hexdigest()


def array_digest(rows: Iterable[_DigestRow]) -> str:
    """Hash of the JSON-D array of the rows (trace summary, precedent index)."""
    hasher = hashlib.sha256()
    _feed_array(hasher, rows)
    return DIGEST_PREFIX + hasher.hexdigest()


def full_projection_digest(context_graph: str, trace_summary: str, precedent_index: str) -> str:
    return sha256_text(f"{context_graph}:{trace_summary}:{precedent_index}")


def combine(context_graph: str, trace_summary: str, precedent_index: str) -> Digests:
    return Digests(
        context_graph,
        trace_summary,
        precedent_index,
        full_projection_digest(context_graph, trace_summary, precedent_index),
    )


EMPTY_DIGESTS = combine(
    context_graph_digest([], []),
    array_digest([]),
    array_digest([]),
)
