"""The two canonical JSON dialects of the specification (section 6).

Both are exactly CPython's encoder with sorted keys and compact separators:
JSON-P keeps non-ASCII raw (payload hashes), JSON-D escapes it (digests).
``sort_keys`` in CPython compares ``str`` objects by code point, which is the
ordering the spec demands (not RFC 8785's UTF-16 order).
"""

from __future__ import annotations

import json
from typing import Any

_P = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
_D = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
_STORAGE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False)
_TAGS = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def json_p(value: Any) -> str:
    """Payload dialect: sorted keys, no whitespace, non-ASCII raw."""
    return _P.encode(value)


def json_d(value: Any) -> str:
    """Digest dialect: like :func:`json_p` but pure ASCII (``\\uXXXX`` escapes)."""
    return _D.encode(value)


def storage_payload_json(payload: Any) -> str:
    """The ``payload_json`` column: sorted keys, default ``", "``/``": "`` separators."""
    return _STORAGE.encode(payload)


def storage_tags_json(tags: Any) -> str:
    """The ``tags_json`` column: the tags in given order, default separators."""
    return _TAGS.encode(list(tags))
