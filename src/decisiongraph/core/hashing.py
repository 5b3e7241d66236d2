"""SHA-256 helpers producing the spec's ``sha256:<hex>`` strings."""

from __future__ import annotations

import hashlib
from typing import Any

from decisiongraph.core.canonical_json import json_p

DIGEST_PREFIX = "sha256:"
GENESIS_CHAIN_HASH = DIGEST_PREFIX + "0" * 64


def sha256_text(text: str) -> str:
    """``sha256:`` + hex of the UTF-8 bytes of ``text``."""
    return DIGEST_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_hash(payload: Any) -> str:
    """Hash of the JSON-P form of a payload (spec 6.2)."""
    return sha256_text(json_p(payload))
