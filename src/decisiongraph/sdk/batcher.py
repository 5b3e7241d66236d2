"""Buffered delivery: the agent hands envelopes over, two threads do the rest.

The agent's thread only puts the envelope it built on an in-memory queue
(a few microseconds). Behind it:

* the **spool thread** takes everything queued, serializes it and commits it
  to the spool in one SQLite transaction per batch;
* the **sender thread** posts the oldest spooled events to the server in
  batches (one request, one server transaction each), over one keep-alive
  connection, and deletes them from the spool once the server has stored
  them. Connection errors, 5xx and 429 are retried with backoff and jitter,
  for as long as it takes; the idempotency keys make a resend harmless.

When is an appended event safe?

* **In memory** when ``append`` returns: lost if the process dies before the
  spool thread commits it. The spool thread starts on the first queued
  event at once, so this window is normally well under a millisecond; it
  grows only while the agent outpaces the disk.
* **Durable on the agent's side** once the spool transaction holding it
  commits: it survives the agent being killed and is delivered by the next
  client opened on the same spool file. ``wait_spooled()`` returns when
  everything appended before the call is there.
* **Stored by the server** once delivered: ``flush()`` returns when
  everything appended before the call is stored (or refused for good).

``close()`` (and interpreter exit, via ``atexit``) flushes for up to
``close_timeout`` seconds, then commits whatever is still queued to the
spool, so a clean exit never loses an event even when the server is down.

Order: events leave in append order, one batch in flight at a time, so
a trace's events reach the server in trace_seq order.

A refused event takes no position: the client numbered the trace's later
events after it, so the sender moves them down past it (and their default
idempotency keys, which name the position, with them). The refused
positions are kept in the spool (``gaps``) in the same transaction that
sets the event aside, so a resend after a crash is numbered as before and
stays a no-op on the server.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from typing import Any

import httpx

from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import INVALID_ARGUMENT, DecisionGraphError
from decisiongraph.core.helpers import default_idempotency_key
from decisiongraph.sdk.errors import RETRYABLE_STATUSES, error_from_response
from decisiongraph.sdk.retry import RetryPolicy
from decisiongraph.sdk.spool import Spool, SpoolRow

log = logging.getLogger("decisiongraph.sdk")

#: Posts ``(tenant, [envelope JSON, ...])`` as one batch; raises on failure.
Deliver = Callable[[str | None, list[str]], None]

#: Statuses that say "not now" rather than "never": keep the events, try later.
_HOLD_STATUSES = frozenset({401, 403}) | RETRYABLE_STATUSES


class _Marker:
    """A point in the queue: set once everything before it is spooled / delivered."""

    __slots__ = ("deliver", "done", "target")

    def __init__(self, deliver: bool) -> None:
        self.deliver = deliver
        self.done = threading.Event()
        self.target = 0


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Where buffered delivery stands: ``stalled`` while the server cannot be
    reached or refuses to take events now (``last_error`` says why)."""

    pending: int
    stalled: bool
    last_error: str | None


_STOP = object()
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def post_batch(http: httpx.Client) -> Deliver:
    """A ``Deliver`` over ``http``: the spooled JSON is sent as it is, never re-encoded."""

    def deliver(tenant: str | None, bodies: list[str]) -> None:
        content = ('{"events":[' + ",".join(bodies) + "]}").encode("utf-8")
        headers = {"content-type": "application/json"}
        if tenant is not None:
            headers["X-Tenant-ID"] = tenant
        response = http.post("/api/v1/events", content=content, headers=headers)
        if response.status_code >= 400:
            raise error_from_response(response)

    return deliver


class Batcher:
    def __init__(
        self,
        spool: Spool,
        deliver: Deliver,
        tenant: str | None,
        *,
        retry: RetryPolicy,
        max_batch: int = 1000,
        flush_interval: float = 0.2,
        close_timeout: float = 5.0,
        spool_batch: int = 2000,
    ) -> None:
        if not 1 <= max_batch <= 1000:
            raise ValueError("max_batch must be between 1 and 1000 (the server's limit)")
        self._spool = spool
        self._deliver = deliver
        self._tenant = tenant  # of every event put (a client serves one tenant)
        self._retry = retry
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._close_timeout = close_timeout
        self._spool_batch = spool_batch
        self._queue: SimpleQueue[object] = SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._waiters_lock = threading.Lock()
        self._waiters: list[_Marker] = []
        self._last_spooled = spool.last_id()
        self._closed = False
        #: One line per event the server refused for good (kept in the spool's
        #: ``refused`` table) and per delivery stall (auth, conflicts).
        self.delivery_errors: list[str] = []
        self._stalled = False
        self._last_error: str | None = None
        #: Refused positions per trace (client numbering), see the module docstring.
        self._gaps: dict[str, list[int]] = spool.load_gaps(tenant)
        self._spooler = threading.Thread(target=self._spool_loop, name="dg-sdk-spool", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="dg-sdk-sender", daemon=True)
        self._spooler.start()
        self._sender.start()
        atexit.register(self.close)

    # -- the agent's side ---------------------------------------------------
    def spooled_positions(self) -> dict[str, int]:
        """Next trace_seq of the traces whose events wait in the spool."""
        return self._spool.next_positions(self._tenant)

    def put(self, envelope: EventEnvelope) -> None:
        """Hand an envelope over; returns at once (see the module docstring)."""
        if self._closed:
            raise RuntimeError("The client is closed")
        self._queue.put(envelope)

    def wait_spooled(self, timeout: float | None = None) -> bool:
        """True once everything put before this call is committed to the spool."""
        return self._wait(_Marker(deliver=False), timeout)

    def flush(self, timeout: float | None = None) -> bool:
        """True once everything put before this call is stored by the server
        (or refused for good); False if ``timeout`` seconds pass first."""
        return self._wait(_Marker(deliver=True), timeout)

    def _wait(self, marker: _Marker, timeout: float | None) -> bool:
        if self._closed:
            return self._spool_is_empty() if marker.deliver else True
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def _spool_is_empty(self) -> bool:
        return self._spool.pending() == 0

    def pending(self) -> int:
        """Events not yet stored by the server (queued or spooled)."""
        return self._queue.qsize() + self._spool.pending()

    def status(self) -> DeliveryStatus:
        """Whether delivery is stalled and why (the server down, a revoked key):
        otherwise a stall shows only as ``pending()`` not going down."""
        return DeliveryStatus(self.pending(), self._stalled, self._last_error)

    def close(self) -> None:
        """Deliver for up to ``close_timeout`` seconds, then spool the rest and stop."""
        if self._closed:
            return
        atexit.unregister(self.close)
        self.flush(self._close_timeout)
        self._closed = True
        self._queue.put(_STOP)
        self._spooler.join()  # everything queued is now in the spool
        self._stopping.set()
        self._wake.set()
        self._sender.join(self._close_timeout + 30)
        self._spool.close()

    # -- the spool thread -------------------------------------------------------
    def _spool_loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self._spool_batch:
                try:
                    items.append(self._queue.get_nowait())
                except Empty:
                    break
            if self._spool_items(items):
                return

    def _spool_items(self, items: list[object]) -> bool:
        """Commit ``items``' envelopes; place markers; True at the stop sentinel.

        Each envelope is serialized just before its INSERT (which releases
        the GIL), never all of them up front: the agent's thread is never
        kept waiting for more than one envelope's encoding.
        """
        # (rows written before the marker, marker)
        markers: list[tuple[int, _Marker]] = []
        refused: list[tuple[str, str, tuple[str, int]]] = []
        stop = False
        written: list[tuple[str | None, str]] = []

        def rows() -> Iterator[tuple[str | None, str]]:
            nonlocal stop
            for item in items:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Marker):
                    markers.append((len(written), item))
                elif isinstance(item, EventEnvelope):
                    try:
                        body = _dumps(item.to_dict())
                    except (TypeError, ValueError) as exc:
                        # The gap is known before any later event is committed
                        # (and so before the sender can see one).
                        self._add_gap(item.trace_id, item.trace_seq)
                        message = (
                            f"{INVALID_ARGUMENT}: event {item.event_id} "
                            f"(trace {item.trace_id}, {item.event_type}) refused: "
                            f"not JSON-serializable: {exc}"
                        )
                        refused.append((repr(item), message, (item.trace_id, item.trace_seq)))
                        continue
                    written.append((self._tenant, body))
                    yield written[-1]

        ids = self._write(rows(), written)
        for body, message, gap in refused:
            self._spool.record_rejected(self._tenant, body, message, gap)
            self.delivery_errors.append(message)
        if ids:
            self._last_spooled = ids[-1]
            self._wake.set()
        first_before = self._last_spooled if not ids else ids[0] - 1
        for position, marker in markers:
            marker.target = ids[position - 1] if position else first_before
            if marker.deliver:
                with self._waiters_lock:
                    self._waiters.append(marker)
                self._wake.set()
            else:
                marker.done.set()
        return stop

    def _write(
        self, rows: Iterator[tuple[str | None, str]], written: list[tuple[str | None, str]]
    ) -> list[int]:
        """Commit ``rows`` (``written`` collects them as they are made)."""
        attempt = 0
        while True:  # a full or locked disk: hold the events in memory and retry
            attempt += 1
            try:
                return self._spool.write(rows)
            except Exception as exc:  # sqlite3.Error, OSError
                log.warning("spool write failed (attempt %d): %s", attempt, exc)
                if attempt == 1:
                    self.delivery_errors.append(f"spool write failed: {exc}")
                threading.Event().wait(self._retry.delay(min(attempt, 8)))
                for _ in rows:  # make every remaining row, then retry them all
                    pass
                rows = iter(list(written))

    # -- the sender thread -------------------------------------------------------
    def _send_loop(self) -> None:
        attempt = 0
        while True:
            self._wake.clear()
            with self._waiters_lock:
                waiting = list(self._waiters)
            rows = self._spool.peek(self._max_batch)
            self._release(waiting, rows[0][0] if rows else None)
            if self._stopping.is_set():
                return  # closing: whatever is left stays spooled for the next client
            if not rows:
                self._wake.wait(self._flush_interval)
                continue
            delay = self._send(rows)
            if delay is None:
                attempt = 0
                continue
            attempt += 1
            pause = delay if delay > 0 else self._retry.delay(min(attempt, 10))
            self._stopping.wait(pause)

    def _release(self, waiting: list[_Marker], oldest: int | None) -> None:
        done = [m for m in waiting if oldest is None or m.target < oldest]
        if not done:
            return
        with self._waiters_lock:
            for marker in done:
                self._waiters.remove(marker)
        for marker in done:
            marker.done.set()

    def _add_gap(self, trace_id: str, trace_seq: int) -> None:
        gaps = self._gaps.setdefault(trace_id, [])
        gaps.append(trace_seq)
        gaps.sort()

    def _moved(self, body: str) -> str:
        """``body`` renumbered past its trace's refused positions (as is if none)."""
        doc: dict[str, Any] = json.loads(body)
        gaps = self._gaps.get(str(doc.get("trace_id")))
        if not gaps:
            return body
        seq = int(doc["trace_seq"])
        moved = seq - sum(1 for gap in gaps if gap < seq)
        if moved == seq:
            return body
        trace_id, event_type = doc["trace_id"], doc["event_type"]
        if doc.get("idempotency_key") == default_idempotency_key(event_type, trace_id, seq):
            doc["idempotency_key"] = default_idempotency_key(event_type, trace_id, moved)
        doc["trace_seq"] = moved
        return _dumps(doc)

    def _stall(self, message: str) -> None:
        self._stalled = True
        self._last_error = message

    def _send(self, rows: list[SpoolRow]) -> float | None:
        """Deliver ``rows``; None when done with them, else seconds to wait (0: backoff)."""
        tenant = rows[0][1]
        bodies = [body for _, _, body in rows]
        if self._gaps:
            bodies = [self._moved(body) for body in bodies]
        try:
            self._deliver(tenant, bodies)
        except httpx.TransportError as exc:
            log.info("server unreachable, %d events wait in the spool: %s", len(rows), exc)
            self._stall(f"server unreachable: {type(exc).__name__}: {exc}")
            return 0.0
        except DecisionGraphError as exc:
            if exc.status is None or exc.status in _HOLD_STATUSES:
                self._stall(f"delivery stalled: {exc}")
                if exc.status not in RETRYABLE_STATUSES:
                    message = f"delivery stalled: {exc}"
                    if not self.delivery_errors or self.delivery_errors[-1] != message:
                        self.delivery_errors.append(message)
                    return self._retry.cap
                return 0.0
            if len(rows) > 1:
                return self._send_one_by_one(rows)
            self._refuse(rows[0], bodies[0], exc)
            return None
        self._stalled, self._last_error = False, None
        self._spool.remove_through(rows[-1][0])
        return None

    def _refuse(self, row: SpoolRow, sent: str, exc: DecisionGraphError) -> None:
        """Set a refused event aside for good; its position goes to the next event.

        One line in ``delivery_errors`` names the event, its trace and the
        code once (``str(exc)`` already starts with the code).
        """
        doc: dict[str, Any] = json.loads(sent)
        trace_id = str(doc.get("trace_id"))
        message = (
            f"{exc.code}: event {doc.get('event_id')} (trace {trace_id}, "
            f"{doc.get('event_type')} at trace_seq {doc.get('trace_seq')}) refused: "
            f"{exc.message}"
        )
        # The gap is kept in the client's numbering: that of the spooled row.
        spooled_seq = int(json.loads(row[2])["trace_seq"])
        self._spool.reject(row[0], message, (trace_id, spooled_seq))
        self._add_gap(trace_id, spooled_seq)
        self.delivery_errors.append(message)

    def _send_one_by_one(self, rows: list[SpoolRow]) -> float | None:
        """A batch was refused: isolate the bad events, deliver the others in order."""
        for row in rows:
            delay = self._send([row])
            if delay is not None:
                return delay  # stalled part-way: the rest stay spooled, in order
        return None


def auth_headers(api_key: str, tenant: str | None) -> dict[str, str]:
    """The headers every request of a client carries."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if tenant is not None:
        headers["X-Tenant-ID"] = tenant
    return headers


def open_buffered(
    url: str,
    headers: dict[str, str],
    tenant: str | None,
    *,
    timeout: float,
    transport: httpx.BaseTransport | None,
    spool_path: str | None,
    retry: RetryPolicy,
    max_batch: int,
    flush_interval: float,
    close_timeout: float,
) -> tuple[httpx.Client, Batcher]:
    """The sender's own connection and the batcher of a buffered client
    (the same for the sync and the async client: delivery runs on threads)."""
    sender = httpx.Client(
        base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
    )
    batcher = Batcher(
        Spool(spool_path or ":memory:"),
        post_batch(sender),
        tenant,
        retry=retry,
        max_batch=max_batch,
        flush_interval=flush_interval,
        close_timeout=close_timeout,
    )
    return sender, batcher
