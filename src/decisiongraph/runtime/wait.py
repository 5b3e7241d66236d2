"""Read-your-writes: wait until projections reach a log position."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.projections.rows import PROJECTION_NAMES, check_projection_names
from decisiongraph.store.protocol import EventStore


def check_wait_args(log_seq: int, timeout: float) -> None:
    """Refuse a position or a timeout a wait could not honour.

    A ``nan`` timeout never compares past its deadline (the wait would never
    return) and an infinite one is a hang by request; a log_seq that is not
    a whole number (``'5'``, None) would fail deep in a comparison with a
    raw TypeError, and a bool or a negative one is a caller's bug that would
    otherwise "succeed" at once. The SDK's waits share this check, so the
    embedded library and the HTTP client refuse the same calls alike.
    """
    if isinstance(log_seq, bool) or not isinstance(log_seq, int) or log_seq < 0:
        raise InvalidArgumentError(
            f"log_seq must be an integer of at least 0, not {log_seq!r}",
            details={"field": "log_seq"},
        )
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout < 0
    ):
        raise InvalidArgumentError(
            f"timeout must be a finite number of seconds of at least 0, not {timeout!r}",
            details={"field": "timeout"},
        )


def wait_for_position(
    store: EventStore,
    tenant_id: str,
    log_seq: int,
    *,
    timeout: float = 10.0,
    projections: Sequence[str] = PROJECTION_NAMES,
    poll: float = 0.01,
) -> bool:
    """True once every named projection has applied ``log_seq``; False on timeout.

    An unknown projection name, a log_seq that is not an integer of at least
    0, or a timeout that is not a finite number of at least 0 is refused at
    once (``DG_ERR_INVALID_ARGUMENT``) rather than waited on.
    """
    check_wait_args(log_seq, timeout)
    names = check_projection_names(projections)
    deadline = time.monotonic() + timeout
    while True:
        cursors = store.projection_cursors(tenant_id)
        if all(cursors[name] >= log_seq for name in names):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(poll, remaining))
