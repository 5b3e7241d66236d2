"""The backend-neutral SQL event store, assembled from its parts.

``sql_log`` (appends, log reads, chain verification), ``sql_projector``
(catch-up, digests, on top of ``sql_projection_reads``, what queries read),
``sql_runtime`` (leases, dead letters, audit, online rebuilds) and
``sql_accounts`` (service accounts and API keys) share the seams of
``sql_backend``; a backend subclasses this class and fills them in.
"""

from __future__ import annotations

from decisiongraph.store.sql_accounts import SqlAccounts
from decisiongraph.store.sql_log import SqlLog
from decisiongraph.store.sql_runtime import SqlRuntime


class SqlEventStore(SqlLog, SqlRuntime, SqlAccounts):
    """Implementation of :class:`~decisiongraph.store.protocol.EventStore` over DB-API."""
