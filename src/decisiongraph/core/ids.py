"""Identifier helpers (spec 3.5): random UUID4 ids, no namespace UUIDs."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A fresh lowercase UUID4 string."""
    return str(uuid.uuid4())


def is_valid_uuid(text: str) -> bool:
    """True when the standard UUID parser accepts ``text``."""
    try:
        uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
