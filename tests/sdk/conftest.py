"""The SDK tests use the service tests' real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.service.conftest import server

__all__ = ["server"]
