"""The tamper-evident hash chain over each tenant's log.

``chain_hash(n) = sha256(chain_hash(n-1) + "\\n" + JSON-P(content(n)))``, where
content is the list of every stored column in ``CHAIN_FIELDS`` order except
the payload itself (represented by its hash) and the chain hash. Editing,
deleting or reordering a row breaks the chain at that row; the tenant's head
row pins the last link, so truncating the tail is caught too. The chain adds
to the spec; it changes no digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from decisiongraph.core.canonical_json import json_p_data, loads
from decisiongraph.core.hashing import GENESIS_CHAIN_HASH, sha256_text
from decisiongraph.store.columns import CHAIN_FIELDS


def link_hash(previous: str, content: Sequence[Any]) -> str:
    """The chain hash of one row (values in ``CHAIN_FIELDS`` order)."""
    return sha256_text(previous + "\n" + json_p_data(content))


@dataclass(frozen=True, slots=True)
class ChainProblem:
    tenant_id: str
    log_seq: int
    reason: str


def verify_rows(
    tenant_id: str,
    rows: Iterable[dict[str, Any]],
    head: tuple[int, str] | None,
) -> ChainProblem | None:
    """Recompute a tenant's chain; return the first problem found, if any.

    ``rows`` are raw stored rows in log_seq order (with ``payload_json`` and
    ``chain_hash``); ``head`` is the stored (last_log_seq, chain_hash) pin.
    """
    previous = GENESIS_CHAIN_HASH
    expected_seq = 1
    for row in rows:
        seq = int(row["log_seq"])
        if seq != expected_seq:
            return ChainProblem(tenant_id, expected_seq, f"log_seq {expected_seq} is missing")
        try:
            payload = loads(row["payload_json"])
        except ValueError:
            return ChainProblem(tenant_id, seq, "payload_json is not valid JSON")
        if sha256_text(json_p_data(payload)) != row["payload_hash"]:
            return ChainProblem(tenant_id, seq, "payload does not match payload_hash")
        content = [row[name] for name in CHAIN_FIELDS]
        computed = link_hash(previous, content)
        if computed != row["chain_hash"]:
            return ChainProblem(tenant_id, seq, "chain hash mismatch (row edited or moved)")
        previous = computed
        expected_seq += 1
    last = expected_seq - 1
    if head is None:
        if last:
            return ChainProblem(tenant_id, last, "log head record is missing")
        return None
    head_seq, head_hash = head
    if head_seq != last:
        return ChainProblem(
            tenant_id, last + 1, f"log head says {head_seq} events, found {last} (rows removed)"
        )
    if head_hash != previous:
        return ChainProblem(tenant_id, last, "log head chain hash does not match the last row")
    return None
