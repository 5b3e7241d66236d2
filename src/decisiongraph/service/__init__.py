"""The HTTP service: a multi-tenant API over the event store and projections."""

from __future__ import annotations

from decisiongraph.service.app import create_app
from decisiongraph.service.server import run_server
from decisiongraph.service.settings import Settings

__all__ = ["Settings", "create_app", "run_server"]
