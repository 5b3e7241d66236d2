"""The live event stream (Server-Sent Events), resumable by log_seq.

Each event is sent as ``id: <log_seq>`` so a client that reconnects with
``Last-Event-ID`` resumes right after the last event it saw: the stream is
read from the log, never from memory, so nothing is missed. Appends through
this process wake streams at once; appends through other processes arrive
by PostgreSQL NOTIFY; a timer covers lost notifications. Changes of a
projection's status (healthy, catching_up, failed, ...) are sent as
``projection_status`` events.

A stream lives far longer than a request, so the key that opened it is
checked again: after every batch is read and before it is sent (an event
appended after a revocation is never delivered), and every
``KEY_RECHECK_SECONDS`` while idle. A revoked key, a disabled account, or a
key that lost the tenant or the scope ends the stream with a
``stream_closed`` event; the client's reconnect then gets 401/403/404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from decisiongraph.core.errors import InvalidArgumentError
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.wakeup import PostgresListener, Wakeup
from decisiongraph.service.auth import bearer_key
from decisiongraph.service.models import INT64_MAX, event_json
from decisiongraph.service.routing import needs

STREAM_BATCH = 500
STREAM_SCOPE = "events:read"
# How long an idle stream may go without checking its key again.
KEY_RECHECK_SECONDS = 5.0


class AppendSignal(Wakeup):
    """Wakes asyncio stream handlers from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        super().wake()
        self._loop.call_soon_threadsafe(self._fire)

    def on_append(self, tenant_id: str, last_log_seq: int) -> None:
        self.wake()

    def _fire(self) -> None:
        fired, self._event = self._event, asyncio.Event()
        fired.set()

    async def wait_async(self, timeout: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def start_signal(app: FastAPI, postgres_url: str | None) -> tuple[AppendSignal, threading.Event]:
    signal = AppendSignal(asyncio.get_running_loop())
    for store in app.state.pool.all_stores():
        store.add_append_listener(signal.on_append)
    stop = threading.Event()
    if postgres_url is not None:
        PostgresListener(postgres_url, signal, stop).start()
    return signal, stop


def check_position(position: int, head: int, tenant_id: str) -> None:
    """A stream resumes from a position the log has reached, like a replay:
    one past the head names an event nobody has sent, and waiting for it
    silently would hide the client's mistake (a wrong tenant or database)."""
    if position > head:
        raise InvalidArgumentError(
            f"Resume position {position} is beyond the head of tenant {tenant_id}'s log ({head})",
            details={"position": position, "head": head},
        )


def resume_position(header: str | None) -> int | None:
    """The ``Last-Event-ID`` a reconnecting client sends: a log_seq we sent."""
    if header is None or header.strip() == "":
        return None
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > INT64_MAX:
        raise InvalidArgumentError(
            "Last-Event-ID must be the id (a log_seq) of an event this stream sent",
            details={"last_event_id": header[:100]},
        )
    return int(text)


_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    "description": "Resume after this log_seq (sent by EventSource on reconnect)",
}


def register(app: FastAPI, heartbeat: float) -> None:
    extra = needs("events:read")
    extra["parameters"] = [*extra["parameters"], _LAST_EVENT_ID]

    @app.get(
        "/api/v1/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
        summary="Live stream of the tenant's events (resume with Last-Event-ID)",
        openapi_extra=extra,
    )
    async def stream(
        request: Request, after: int | None = Query(default=None, ge=0, le=INT64_MAX)
    ) -> StreamingResponse:
        tenant = request.state.principal.tenant_id
        key = bearer_key(request)
        pool = request.app.state.pool
        resume = resume_position(request.headers.get("last-event-id"))
        if resume is None:
            resume = after

        def head() -> int:
            with pool.store() as store:
                last: int = store.get_last_log_seq(tenant)
                return last

        position = await run_in_threadpool(head)
        if resume is not None:
            check_position(resume, position, tenant)
            position = resume

        def still_allowed(store: Any) -> bool:
            account = store.authenticate(key)
            return (
                account is not None and tenant in account.tenants and STREAM_SCOPE in account.scopes
            )

        def fetch(since: int, recheck: bool) -> tuple[list[Any], bool]:
            """The next batch, and whether the key may still read it.

            The key is checked after the read, so any event in the batch was
            committed before the check: none appended after a revocation
            gets through."""
            with pool.store() as store:
                events: list[Any] = store.list_events(
                    tenant, since_log_seq=since, limit=STREAM_BATCH
                )
                allowed = still_allowed(store) if events or recheck else True
                return events, allowed

        def statuses() -> dict[str, str]:
            with pool.store() as store:
                return {s.projection: s.status for s in projection_statuses(store, tenant)}

        async def lines() -> AsyncIterator[str]:
            nonlocal position
            signal: AppendSignal = request.app.state.signal
            yield f"retry: 1000\n: resuming after {position}\n\n"
            idle = 0.0
            known: dict[str, str] = {}
            check_status = True
            checked = time.monotonic()
            while not await request.is_disconnected():
                if check_status:  # on connect and whenever the stream went idle
                    current = await run_in_threadpool(statuses)
                    changed = {n: st for n, st in current.items() if known.get(n) != st}
                    if changed:
                        known = current
                        # No id: status news never moves the client's Last-Event-ID.
                        payload = json.dumps(changed, sort_keys=True)
                        yield f"event: projection_status\ndata: {payload}\n\n"
                    check_status = False
                recheck = time.monotonic() - checked >= KEY_RECHECK_SECONDS
                batch, allowed = await run_in_threadpool(fetch, position, recheck)
                if batch or recheck:
                    checked = time.monotonic()
                if not allowed:
                    reason = json.dumps({"reason": "the key may no longer read this stream"})
                    yield f"event: stream_closed\ndata: {reason}\n\n"
                    return
                for event in batch:
                    data = json.dumps(event_json(event), sort_keys=True, ensure_ascii=False)
                    yield f"id: {event.log_seq}\nevent: {event.event_type}\ndata: {data}\n\n"
                    position = event.log_seq
                if batch:
                    idle = 0.0
                    continue
                await signal.wait_async(1.0)
                check_status = True
                idle += 1.0
                if idle >= heartbeat:
                    idle = 0.0
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            lines(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
