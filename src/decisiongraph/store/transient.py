"""Which failures are the database's, not the event's.

A projection worker counts a failure against the event it was applying and
dead-letters the event after a few attempts. A lock timeout, a lost
connection, a serialization failure or SQLite's "database is locked" says
nothing about the event: it passes, and the event then applies. Such
failures are retried for as long as they last and never dead-letter
anything. They are recognised by the driver's exception type, on the error
itself or on the chain it was translated from (``raise StorageError(...)
from exc``), never by message text.
"""

from __future__ import annotations

import sqlite3
from typing import Final

import psycopg
from psycopg import errors as pg_errors

#: Raised by the database's state rather than by the statement or its data.
#: psycopg's OperationalError covers lock and statement timeouts
#: (LockNotAvailable, QueryCanceled), SerializationFailure, DeadlockDetected,
#: lost connections, shutdowns and exhausted resources; sqlite3's covers a
#: busy or locked database and I/O errors (and a missing table, which is no
#: event's fault either: retrying until the schema is back is what helps).
TRANSIENT_DRIVER_ERRORS: Final = (psycopg.OperationalError, sqlite3.OperationalError)

#: OperationalErrors a statement's own data can cause (a value too large for
#: an index row, too many parameters): retrying would never end, so they
#: count against the event like any other failure.
DATA_CAUSED_DRIVER_ERRORS: Final = (pg_errors.ProgramLimitExceeded,)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an error it was raised from) is the database's
    passing trouble rather than a problem with what was being written."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DATA_CAUSED_DRIVER_ERRORS):
            return False
        if isinstance(current, TRANSIENT_DRIVER_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False
