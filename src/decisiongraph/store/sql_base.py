"""The backend-neutral SQL event store, assembled from its parts.

``sql_log`` (appends, log reads, chain verification) and ``sql_projector``
(catch-up, rebuild, digests, on top of ``sql_projection_reads``, what queries
read) share the seams of ``sql_backend``; a backend subclasses this class and
fills those seams in.
"""

from __future__ import annotations

from decisiongraph.store.sql_log import SqlLog
from decisiongraph.store.sql_projector import SqlProjector


class SqlEventStore(SqlLog, SqlProjector):
    """Implementation of :class:`~decisiongraph.store.protocol.EventStore` over DB-API."""
