"""Versioned schema migrations, one folder per backend (``NNNN_name.sql``)."""

from __future__ import annotations

from importlib import resources


def migration_files(backend: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration of ``backend``, in order."""
    folder = resources.files(__package__).joinpath(backend)
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append((int(version), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found)
