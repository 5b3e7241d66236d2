"""ASGI middleware of the API: request ids, metrics, logs, body limits, NUL.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which runs every
request's downstream app in a task of its own behind memory streams: a cost
paid on every append, and one that gets in the way of streamed responses.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from decisiongraph.core.errors import INVALID_ARGUMENT
from decisiongraph.service.errors import INTERNAL, PAYLOAD_TOO_LARGE, error_response
from decisiongraph.service.metrics import Metrics

log = logging.getLogger("decisiongraph.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_REQUEST_ID_HEADER = b"x-request-id"


class BodyLimit:
    """Refuse bodies over the limit before anything parses them (413).

    A declared Content-Length over the limit is refused at once; a body of
    unknown length is read up to the limit (bounded memory) and then either
    refused or handed on intact.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            Request(scope), PAYLOAD_TOO_LARGE, f"Body exceeds {self.limit} bytes"
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class HeadAsGet:
    """Answer ``HEAD`` on every ``GET`` route (RFC 9110 asks servers to).

    The route sees a ``GET``; the server, which still knows the request was
    a ``HEAD``, sends the headers without the body. Not for the event
    stream, which would never end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "HEAD"
            and not scope["path"].endswith("/stream")
        ):
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class RefuseNul:
    """Refuse a NUL character in the path or the query string (400).

    No backend stores one (PostgreSQL text cannot hold it), so an id or a
    filter holding one can match nothing; saying so beats a driver error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                response = error_response(
                    Request(scope), INVALID_ARGUMENT, "The path or query must not contain NUL"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestContext:
    """A request id on every response (the caller's ``X-Request-ID`` when it
    is well formed), the caller's rate-limit quota when a route drew on it,
    request counts and latencies by route template, one JSON access-log line
    per request, and a bare 500 for an unexpected bug.

    Latency is measured to the start of the response, so a long-lived event
    stream counts as the time it took to open.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = ""
        for name, value in scope.get("headers") or ():
            if name == _REQUEST_ID_HEADER:
                supplied = value.decode("latin-1")
                break
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        elapsed: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = int(message["status"])
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers") or ())
                if not any(name.lower() == _REQUEST_ID_HEADER for name, _ in headers):
                    headers.append((_REQUEST_ID_HEADER, request_id.encode("latin-1")))
                quota = state.get("quota")
                if quota is not None:
                    headers.extend(quota.headers())
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # an unexpected bug: log it, leak nothing
            log.error(
                json.dumps(
                    {
                        "request_id": request_id,
                        "level": "error",
                        "message": "unhandled error",
                        "method": scope["method"],
                        "path": scope["path"],
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(),
                    }
                )
            )
            if elapsed is not None:  # the response has begun: nothing more to send
                raise
            response = error_response(Request(scope), INTERNAL, "Internal error")
            await response(scope, receive, send_with_id)
        finally:
            if elapsed is None:  # nothing was sent
                elapsed = time.perf_counter() - started
            self._record(scope, state, status, elapsed)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, elapsed: float) -> None:
        method = scope["method"]
        # The template without converters ("{trace_id}", not "{trace_id:path}"):
        # the label the OpenAPI document and dashboards use.
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", "unmatched")
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template).observe(elapsed)
        log.info(
            json.dumps(
                {
                    "request_id": state.get("request_id"),
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "tenant": state.get("tenant"),
                    "account": state.get("account"),
                }
            )
        )
