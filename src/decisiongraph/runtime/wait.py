"""Read-your-writes: wait until projections reach a log position."""

from __future__ import annotations

import time
from collections.abc import Sequence

from decisiongraph.projections.rows import PROJECTION_NAMES, check_projection_names
from decisiongraph.store.protocol import EventStore


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

    An unknown projection name is refused at once (``DG_ERR_INVALID_ARGUMENT``)
    rather than waited on.
    """
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
