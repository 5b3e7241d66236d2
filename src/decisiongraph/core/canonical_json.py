"""The two canonical JSON dialects of the specification (section 6).

Both are exactly CPython's encoder with sorted keys and compact separators:
JSON-P keeps non-ASCII raw (payload hashes), JSON-D escapes it (digests).
``sort_keys`` in CPython compares ``str`` objects by code point, which is the
ordering the spec demands (not RFC 8785's UTF-16 order).
"""

from __future__ import annotations

import json
import json.encoder
import threading
from collections.abc import Callable
from typing import Any

Encode = Callable[[Any], str]


def compiled(encoder: json.JSONEncoder) -> Encode:
    """``encoder.encode`` without its per-call set-up.

    ``JSONEncoder.encode`` builds a fresh C encoder on every call, which costs
    about as much as encoding a small payload; this builds one per thread,
    with the very arguments ``encode`` would pass, so the output is identical.
    Circular structures are still refused: the circularity markers are
    per thread and cleared whenever an encoding fails part-way. Without the
    C accelerator it is ``encoder.encode`` itself.
    """
    make: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:  # pragma: no cover - CPython has it
        return encoder.encode
    base = (
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring
    )
    local = threading.local()

    def build() -> tuple[Callable[[Any, int], Any], dict[int, Any] | None]:
        markers: dict[int, Any] | None = {} if encoder.check_circular else None
        c_encoder = make(
            markers,
            encoder.default,
            base,
            encoder.indent,
            encoder.key_separator,
            encoder.item_separator,
            encoder.sort_keys,
            encoder.skipkeys,
            encoder.allow_nan,
        )
        local.parts = (c_encoder, markers)
        return c_encoder, markers

    def encode(value: Any) -> str:
        if isinstance(value, str):
            return base(value)
        parts = getattr(local, "parts", None)
        c_encoder, markers = parts if parts is not None else build()
        try:
            return "".join(c_encoder(value, 0))
        except BaseException:
            if markers is not None:
                markers.clear()
            raise

    return encode


_P = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
_D = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=False)
_STORAGE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, allow_nan=False)
_TAGS = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_encode_p = compiled(_P)
_encode_d = compiled(_D)


def json_p(value: Any) -> str:
    """Payload dialect: sorted keys, no whitespace, non-ASCII raw."""
    return _encode_p(value)


def json_d(value: Any) -> str:
    """Digest dialect: like :func:`json_p` but pure ASCII (``\\uXXXX`` escapes)."""
    return _encode_d(value)


def storage_payload_json(payload: Any) -> str:
    """The ``payload_json`` column: sorted keys, default ``", "``/``": "`` separators."""
    return _STORAGE.encode(payload)


def storage_tags_json(tags: Any) -> str:
    """The ``tags_json`` column: the tags in given order, default separators."""
    return _TAGS.encode(list(tags))
