"""``Client``: DecisionGraph over HTTP for agents.

The same typed helpers as the embedded ``DecisionGraph`` (they come from
``core.helpers``), trace_seq kept per trace, retries with backoff on
connection errors, 5xx and 429 (honouring Retry-After) with unchanged
idempotency keys, and an optional buffered mode: appends go to a durable
SQLite spool and a background sender delivers them in order, exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from decisiongraph.core.clock import now_timestamp
from decisiongraph.core.envelope import EventEnvelope
from decisiongraph.core.errors import DecisionGraphError, NotFoundError
from decisiongraph.core.event_types import TRACE_STARTED
from decisiongraph.core.helpers import ActorLike, EventHelpers, SourceLike
from decisiongraph.sdk.errors import RETRYABLE_STATUSES, error_from_response
from decisiongraph.sdk.retry import RetryPolicy
from decisiongraph.sdk.spool import Spool

Receipt = dict[str, Any]


class Client(EventHelpers[Receipt]):
    """A DecisionGraph server, seen by one agent (thread-safe)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        tenant: str | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        buffered: bool = False,
        spool_path: str | None = None,
        max_batch: int = 100,
        flush_interval: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        if tenant is not None:
            headers["X-Tenant-ID"] = tenant
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.tenant = tenant
        self._retry = retry or RetryPolicy()
        self._seq_lock = threading.Lock()
        self._next_seq: dict[str, int] = {}
        self._trace_locks: dict[str, threading.Lock] = {}
        self._max_batch = max_batch
        self._flush_interval = flush_interval
        self._spool: Spool | None = None
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.delivery_errors: list[str] = []
        if buffered:
            self._spool = Spool(spool_path or ":memory:")
            self._sender = threading.Thread(
                target=self._send_loop, name="dg-sdk-sender", daemon=True
            )
            self._sender.start()

    # -- plumbing ------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One call, retried on connection errors, 5xx and 429."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    method,
                    path,
                    params={k: v for k, v in (params or {}).items() if v is not None},
                    content=None if body is None else json.dumps(body).encode("utf-8"),
                    headers={"content-type": "application/json"} if body is not None else None,
                )
            except httpx.TransportError:
                if attempt >= self._retry.attempts:
                    raise
                time.sleep(self._retry.delay(attempt))
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRYABLE_STATUSES and attempt < self._retry.attempts:
                time.sleep(self._retry.delay(attempt, response.headers.get("retry-after")))
                continue
            raise error_from_response(response)

    def close(self) -> None:
        """Stop the sender (after delivering what it can) and close the connection."""
        if self._sender is not None:
            self.flush(timeout=5.0, raise_on_timeout=False)
            self._stop.set()
            self._wake.set()
            self._sender.join(10)
        if self._spool is not None:
            self._spool.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- appends ---------------------------------------------------------------
    def append_events(
        self, envelopes: Sequence[EventEnvelope | Mapping[str, Any]]
    ) -> list[Receipt]:
        """Append fully specified envelopes in one transaction (≤ 1,000)."""
        items = [e.to_dict() if isinstance(e, EventEnvelope) else dict(e) for e in envelopes]
        response = self._request("POST", "/api/v1/events", body={"events": items})
        stored: list[Receipt] = response.json()["events"]
        return stored

    def _trace_seq(self, trace_id: str, event_type: str) -> int:
        with self._seq_lock:
            known = self._next_seq.get(trace_id)
        if known is None:
            known = 0 if event_type == TRACE_STARTED else self._server_next_seq(trace_id)
        with self._seq_lock:
            seq = max(known, self._next_seq.get(trace_id, 0))
            self._next_seq[trace_id] = seq + 1
        return seq

    def _server_next_seq(self, trace_id: str) -> int:
        try:
            events = self.get_trace_events(trace_id)
        except NotFoundError:
            return 0
        return int(events[-1]["trace_seq"]) + 1

    def append_event(
        self,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        causation_event_id: str | None = None,
        schema_version: int = 1,
        tags: Sequence[str] | None = None,
        occurred_at: str | None = None,
    ) -> Receipt:
        """Append one event at the trace's next position.

        Buffered clients return at once with ``{"status": "spooled", ...}``;
        the event is on disk and will be delivered in order.
        """
        with self._trace_lock(trace_id):  # positions are used in the order handed out
            return self._append_in_order(
                trace_id,
                event_type,
                payload,
                source,
                actor,
                idempotency_key,
                correlation_id,
                causation_event_id,
                schema_version,
                tags,
                occurred_at,
            )

    def _trace_lock(self, trace_id: str) -> threading.Lock:
        with self._seq_lock:
            lock = self._trace_locks.get(trace_id)
            if lock is None:
                lock = self._trace_locks[trace_id] = threading.Lock()
            return lock

    def _append_in_order(
        self,
        trace_id: str,
        event_type: str,
        payload: dict[str, Any],
        source: SourceLike,
        actor: ActorLike,
        idempotency_key: str | None,
        correlation_id: str | None,
        causation_event_id: str | None,
        schema_version: int,
        tags: Sequence[str] | None,
        occurred_at: str | None,
    ) -> Receipt:
        trace_seq = self._trace_seq(trace_id, event_type)
        envelope = self.build_envelope(
            trace_id,
            trace_seq,
            event_type,
            payload,
            source,
            actor,
            occurred_at or now_timestamp(),
            idempotency_key,
            correlation_id,
            causation_event_id,
            schema_version,
            tags,
        ).to_dict()
        if self._spool is not None:
            self._spool.put(self.tenant, envelope)
            self._wake.set()
            return {
                "status": "spooled",
                "event_id": envelope["event_id"],
                "trace_id": trace_id,
                "trace_seq": trace_seq,
            }
        try:
            return self.append_events([envelope])[0]
        except DecisionGraphError:
            with self._seq_lock:  # the position was not used
                if self._next_seq.get(trace_id) == trace_seq + 1:
                    self._next_seq[trace_id] = trace_seq
            raise

    # -- the buffered sender -------------------------------------------------------
    def _send_loop(self) -> None:
        assert self._spool is not None
        spool = self._spool
        while not self._stop.is_set():
            batch = spool.peek(self._max_batch)
            if not batch:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                continue
            ids = [row_id for row_id, _, _ in batch]
            try:
                self.append_events([body for _, _, body in batch])
            except DecisionGraphError as exc:
                if exc.status is not None and exc.status not in RETRYABLE_STATUSES:
                    spool.reject(ids, str(exc))  # refused for good: keep, don't block
                    self.delivery_errors.append(str(exc))
                    continue
                self._stop.wait(self._retry.cap)
                continue
            except httpx.TransportError:
                self._stop.wait(self._retry.cap)  # server away: keep the spool, try later
                continue
            spool.remove(ids)

    def flush(self, timeout: float | None = None, *, raise_on_timeout: bool = True) -> bool:
        """Wait until every spooled event is delivered (or rejected)."""
        if self._spool is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._spool.pending():
            self._wake.set()
            if deadline is not None and time.monotonic() > deadline:
                if raise_on_timeout:
                    raise TimeoutError(f"{self._spool.pending()} events still spooled")
                return False
            time.sleep(0.01)
        return True

    def pending(self) -> int:
        return 0 if self._spool is None else self._spool.pending()

    # -- reads -------------------------------------------------------------------
    def get_trace(self, trace_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/api/v1/traces/{trace_id}").json()
        return result

    def get_trace_events(self, trace_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self._request(
            "GET", f"/api/v1/traces/{trace_id}/events"
        ).json()["events"]
        return events

    def iter_traces(self, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching trace, following cursor pages."""
        cursor = None
        while True:
            page = self._request(
                "GET", "/api/v1/traces", params={**filters, "limit": page_size, "cursor": cursor}
            ).json()
            yield from page["traces"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def get_context_subgraph(
        self, node_type: str, node_id: str, max_depth: int = 1
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET",
            "/api/v1/graph/subgraph",
            params={"node_type": node_type, "node_id": node_id, "max_depth": max_depth},
        ).json()
        return result

    def find_precedents(self, **query: Any) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self._request(
            "GET", "/api/v1/precedents", params=query
        ).json()["precedents"]
        return hits

    def get_projection_health(self, include_digests: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET",
            "/api/v1/projections",
            params={"include_digests": "true" if include_digests else None},
        ).json()
        return result

    def wait_for(self, log_seq: int, timeout: float = 10.0) -> bool:
        """True once every projection has applied ``log_seq``."""
        deadline = time.monotonic() + timeout
        while True:
            health = self.get_projection_health()
            if all(p["cursor"] >= log_seq for p in health["projections"]):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def stream(self, after: int | None = None) -> Iterator[dict[str, Any]]:
        """New events as they are stored; reconnects with Last-Event-ID, forever."""
        last = after
        attempt = 0
        while True:
            headers = {} if last is None else {"Last-Event-ID": str(last)}
            try:
                with self._http.stream(
                    "GET", "/api/v1/stream", headers=headers, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise error_from_response(response)
                    attempt = 0
                    data: str | None = None
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            data = line[6:]
                        elif line.startswith("id: "):
                            last = int(line[4:])
                        elif line == "" and data is not None:
                            event = json.loads(data)
                            data = None
                            if "log_seq" in event:
                                last = int(event["log_seq"])
                                yield event
            except httpx.TransportError:
                attempt += 1
                time.sleep(self._retry.delay(min(attempt, 6)))
