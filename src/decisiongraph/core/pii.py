"""The PII / secret guard (spec 5.2), including its case-insensitive quirk.

Matching is a lower-cased substring test, so ordinary words such as
``risk-score`` (``sk-``) or ``Asia/Tokyo`` (``asia``) are rejected. That quirk
is frozen semantics: the oracle rejects them, so do we.
"""

from __future__ import annotations

from typing import Any, Final

from decisiongraph.core.errors import PiiPolicyViolationError

FORBIDDEN_PATTERNS: Final = tuple(
    sorted(
        (
            "Bearer ",
            "xoxb-",
            "xoxp-",
            "xoxa-",
            "xoxr-",
            "sk-",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "-----BEGIN",
            "-----BEGIN PRIVATE KEY",
            "-----BEGIN RSA PRIVATE KEY",
            "-----BEGIN EC PRIVATE KEY",
            "-----BEGIN OPENSSH PRIVATE KEY",
            "AKIA",
            "ASIA",
            "api_key=",
            "apikey=",
            "api-key:",
            "password=",
            "passwd=",
            "secret=",
            "token=",
        )
    )
)
_LOWERED: Final = tuple((pattern, pattern.lower()) for pattern in FORBIDDEN_PATTERNS)


# Substrings of which every lowered pattern contains at least one: a text
# holding none of them holds no pattern, which settles the common case in a
# handful of scans instead of one per pattern.
_SIEVE: Final = ("-----begin", "akia", "asia", "bearer ", "api-key:", "=", "gh", "sk-", "xox")
assert all(any(part in low for part in _SIEVE) for _, low in _LOWERED)


def find_forbidden(text: str) -> str | None:
    """The first forbidden pattern (in code-point order) found in ``text``."""
    lowered = text.lower()
    for part in _SIEVE:
        if part in lowered:
            break
    else:
        return None
    for original, low in _LOWERED:
        if low in lowered:
            return original
    return None


def _walk(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        hit = find_forbidden(value)
        return (hit, path) if hit is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _walk(item, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _walk(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def check_no_secrets(scope: dict[str, Any]) -> None:
    """Raise when any string value in ``scope`` holds a forbidden pattern.

    The walk is depth-first in insertion order, so the error names the first
    offending path as the spec orders them.
    """
    found = _walk(scope, "$")
    if found is not None:
        pattern, path = found
        raise PiiPolicyViolationError(
            f"Forbidden content '{pattern}' found at '{path}'",
            details={"pattern": pattern, "path": path},
        )
