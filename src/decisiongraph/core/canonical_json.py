"""The two canonical JSON dialects of the specification (section 6).

Both are exactly CPython's encoder with sorted keys and compact separators:
JSON-P keeps non-ASCII raw (payload hashes), JSON-D escapes it (digests).
``sort_keys`` in CPython compares ``str`` objects by code point, which is the
ordering the spec demands (not RFC 8785's UTF-16 order).

:func:`json_p` and :func:`json_d` accept any Python value the way the stdlib
does. The ``*_data`` variants are for values already known to be float-free
JSON data (validated payloads, rows read back from a store, projection rows):
they write the same text through orjson, about four times faster, and fall
back to the stdlib for what orjson cannot write identically (integers beyond
64 bits, subclasses of the JSON types). :func:`loads` is the matching decoder.
"""

from __future__ import annotations

import json
import json.encoder
import re
import threading
from collections.abc import Callable
from typing import Any

import orjson

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
_encode_p = compiled(_P)
_encode_d = compiled(_D)


def json_p(value: Any) -> str:
    """Payload dialect: sorted keys, no whitespace, non-ASCII raw."""
    return _encode_p(value)


def json_d(value: Any) -> str:
    """Digest dialect: like :func:`json_p` but pure ASCII (``\\uXXXX`` escapes)."""
    return _encode_d(value)


# Subclasses (IntEnum, OrderedDict, ...) go to ``default``, which is absent,
# so orjson raises and the stdlib writes them exactly as it always has.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# What ``ensure_ascii`` escapes beyond orjson's output: DEL and non-ASCII,
# which in JSON text only ever occur inside strings.
_NOT_PRINTABLE_ASCII = re.compile("[\x7f-\U0010ffff]")
# Integer tokens orjson would decode as floats (beyond 64 bits) are runs of
# 19 or more digits; a run inside a string only sends the text down the
# stdlib path. Mapping digits to "1" and the rest to " " and then searching
# for nineteen "1"s is ten times quicker than a regular expression.
_DIGIT_MAP = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"1" * 19


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"


def json_p_data(value: Any) -> str:
    """:func:`json_p` of float-free JSON data, identical output, faster."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: a big integer or a subclass
        return _encode_p(value)


# More containers than any payload holds: a cycle, or not worth the walk.
_PLAIN_CONTAINERS_MAX = 100_000
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def json_p_plain(value: Any) -> str | None:
    """:func:`json_p` of *plain* data, or None when ``value`` is not plain.

    Plain: built only of exact ``dict`` (with ``str`` keys), ``list``,
    ``str``, ``int`` within 64 bits, ``bool`` and ``None``. For such data
    orjson writes exactly the stdlib's text in a fraction of the time.
    Anything else (floats, tuples, subclasses, UUIDs and enums, which orjson
    would write but the stdlib refuses, big integers, lone surrogates,
    cycles) gets None, and the caller takes the checked path that says
    precisely what is wrong. Keys are left to orjson, which refuses any
    that is not a string.
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return _plain_dumps(value) if kind in _PLAIN_SCALARS else None
    stack = [value]
    containers = 0
    while stack:
        item = stack.pop()
        containers += 1
        if containers > _PLAIN_CONTAINERS_MAX:
            return None
        for child in item.values() if type(item) is dict else item:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append(child)
            elif kind not in _PLAIN_SCALARS:
                return None
    return _plain_dumps(value)


def _plain_dumps(value: Any) -> str | None:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # a big integer, a lone surrogate, a non-str key
        return None


def json_d_data(value: Any) -> str:
    """:func:`json_d` of float-free JSON data, identical output, faster."""
    text = json_p_data(value)
    if text.isascii() and "\x7f" not in text:
        return text
    return _NOT_PRINTABLE_ASCII.sub(_escape, text)


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (RFC 8259 has no NaN or Infinity)")


_STRICT = json.JSONDecoder(parse_constant=_not_json)


def loads(text: str | bytes, *, strict: bool = False) -> Any:
    """``json.loads``, through orjson when that gives the very same value.

    orjson turns integers beyond 64 bits into floats and refuses NaN literals
    and lone surrogate escapes; such texts take the stdlib path. ``strict``
    refuses NaN and Infinity, which the stdlib (and so the spec's library
    calls) accept but JSON text does not: what arrives over the wire must
    be JSON.
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_RUN in raw.translate(_DIGIT_MAP):
        return _stdlib_loads(text, strict)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _stdlib_loads(text, strict)


def _stdlib_loads(text: str | bytes, strict: bool) -> Any:
    if not strict:
        return json.loads(text)
    return _STRICT.decode(text if isinstance(text, str) else text.decode("utf-8"))
