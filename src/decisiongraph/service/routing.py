"""Routes that authenticate first, and the OpenAPI description of that.

A route names the scope it needs (``openapi_extra=needs(scope)``); its
handler then authenticates the caller before FastAPI reads, parses or
validates anything else of the request. A caller without a valid key gets
401 and learns nothing about the route's parameters; one without the scope
gets 403 before the body is looked at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from decisiongraph.core.canonical_json import loads
from decisiongraph.service.auth import Principal

SCOPE_KEY = "x-required-scope"
BEARER = "bearerAuth"
# On every answer to an authenticated request (see service.ratelimit).
RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {
        "description": "Requests of this route class the caller may make at once (the burst)",
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Remaining": {
        "description": "Requests of this route class the caller may still make at once",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the caller's bucket for this route class is full",
        "schema": {"type": "integer", "minimum": 0},
    },
}

Authenticate = Callable[[Request, str], Principal]


def needs(scope: str) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that needs ``scope``: the scope
    itself, the bearer key, and the optional tenant header."""
    return {
        SCOPE_KEY: scope,
        "security": [{BEARER: []}],
        "parameters": [
            {
                "name": "X-Tenant-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The tenant to act for; optional when the key has one tenant",
            }
        ],
    }


def _declare_rate_limit_headers(schema: dict[str, Any]) -> None:
    refs = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or SCOPE_KEY not in operation:
                continue
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2") or status == "429":
                    response.setdefault("headers", {}).update(refs)


class StrictJSONRequest(Request):
    """A request whose JSON body must be JSON text: NaN and Infinity, which
    Python's parser (and so FastAPI's) accepts, are malformed JSON here as
    they are on ``POST /events``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = loads(body, strict=True)
            except json.JSONDecodeError:
                raise
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                text = body.decode("utf-8", "replace")
                raise json.JSONDecodeError(str(exc), text, 0) from exc
        return self._json


def authenticated_routes(authenticate: Authenticate) -> type[APIRoute]:
    """A route class whose scoped routes authenticate before anything else.

    The principal is left in ``request.state.principal`` for the handler.
    """

    class AuthenticatedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            scope = (self.openapi_extra or {}).get(SCOPE_KEY)
            if scope is None:
                return handler

            async def authenticated(request: Request) -> Response:
                request = StrictJSONRequest(request.scope, request.receive)
                request.state.principal = await run_in_threadpool(authenticate, request, scope)
                return await handler(request)

            return authenticated

    return AuthenticatedRoute


def literal_suffix_route(base: type[APIRoute], suffix: bytes) -> type[APIRoute]:
    """``base`` matching only when the raw (still percent-encoded) path ends
    in ``suffix``.

    Routing sees the decoded path, where ``/traces/a%2Fevents`` (the summary
    of trace ``a/events``) looks like ``/traces/a/events`` (the events of
    trace ``a``). The raw path still tells them apart; a server that gives
    no raw path falls back to the decoded one.
    """

    class LiteralSuffixRoute(base):  # type: ignore[valid-type,misc]
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            match, child = super().matches(scope)
            raw = scope.get("raw_path")
            literal = not isinstance(raw, bytes) or raw.split(b"?", 1)[0].endswith(suffix)
            if match is not Match.NONE and not literal:
                return Match.NONE, {}
            return match, child

    return LiteralSuffixRoute


def secured_openapi(
    app: FastAPI, schemas: dict[str, Any] | None = None
) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the bearer-key security scheme declared, the
    rate-limit headers on the answers of authenticated routes, and
    ``schemas`` (models routes refer to by hand) among the components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(schemas or {})
            components.setdefault("securitySchemes", {})[BEARER] = {
                "type": "http",
                "scheme": "bearer",
                "description": "A service-account API key (decisiongraph accounts create)",
            }
            components["headers"] = RATE_LIMIT_HEADERS
            _declare_rate_limit_headers(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
