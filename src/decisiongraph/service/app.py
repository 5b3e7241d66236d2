"""The ASGI application: routes, auth, tenancy, the error envelope, request ids.

Built with FastAPI so the OpenAPI schema at ``/openapi.json`` comes from the
same models the handlers return.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from decisiongraph.core.canonical_json import loads
from decisiongraph.core.envelope import EventEnvelope, StoredEvent, envelopes_from
from decisiongraph.core.errors import (
    DecisionGraphError,
    InvalidArgumentError,
    ProjectionOutOfDateError,
)
from decisiongraph.query import events as event_queries
from decisiongraph.query.graph import (
    GraphEdgeCursor,
    GraphFilter,
    get_context_subgraph,
    list_node_edges,
)
from decisiongraph.query.health import get_projection_health
from decisiongraph.query.limits import reading_as_of
from decisiongraph.query.precedents import PrecedentQuery, find_precedents
from decisiongraph.query.traces import get_trace_summary
from decisiongraph.runtime.health import projection_statuses
from decisiongraph.runtime.supervisor import Supervisor
from decisiongraph.runtime.wait import wait_for_position
from decisiongraph.service import admin_routes, stream
from decisiongraph.service import models as m
from decisiongraph.service.auth import (
    Principal,
    bearer_key,
    bearer_token,
    choose_tenant,
    require_scope,
)
from decisiongraph.service.errors import (
    ERROR_RESPONSES,
    MALFORMED_JSON,
    PAYLOAD_TOO_LARGE,
    UNAUTHENTICATED,
    ServiceError,
    domain_error_handler,
    error_response,
    http_error_handler,
    is_json_media,
    validation_error_handler,
)
from decisiongraph.service.metrics import Metrics
from decisiongraph.service.middleware import BodyLimit, HeadAsGet, RefuseNul, RequestContext
from decisiongraph.service.models import INT64_MAX
from decisiongraph.service.pool import StorePool
from decisiongraph.service.ratelimit import RateLimited, RateLimiter
from decisiongraph.service.routing import (
    authenticated_routes,
    literal_suffix_route,
    needs,
    secured_openapi,
)
from decisiongraph.service.settings import Settings
from decisiongraph.store.migrations import migration_files
from decisiongraph.store.postgres import is_postgres_url


def envelopes_of_body(raw: bytes, max_events: int) -> list[EventEnvelope]:
    """The envelopes of a ``POST /events`` body: one envelope, or a batch."""
    try:
        document = loads(raw, strict=True)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(f"Malformed JSON: {exc}", code=MALFORMED_JSON) from exc
    except RecursionError:
        raise ServiceError("Malformed JSON: nested too deeply", code=MALFORMED_JSON) from None
    if isinstance(document, dict) and "events" in document and "event_id" not in document:
        items = document["events"]
        if not isinstance(items, list) or not items:
            raise InvalidArgumentError("'events' must be a non-empty array")
        if len(items) > max_events:
            raise ServiceError(f"At most {max_events} events per request", code=PAYLOAD_TOO_LARGE)
    elif isinstance(document, dict):
        items = [document]
    else:  # a bare array is the usual slip: say what a batch looks like
        raise InvalidArgumentError(
            'The body must be one event envelope (a JSON object) or {"events": [...]}',
            details={"body_type": type(document).__name__},
        )
    return envelopes_from(items)


def waiting_for_projections(
    store: Any, tenant: str, work: Callable[[Any, str], Any], wait: float
) -> Any:
    """``work(store, tenant)``; a projection-backed read that finds its
    projections behind waits up to ``wait`` seconds for them to reach the
    head it saw, then reads as of that head.

    Projections trail the log by a few milliseconds while appends go on
    (workers apply them after the commit); only a projection truly behind
    still gets the 503. Cursors are polled every 2 ms: the poll's
    granularity is what the wait adds to the read.
    """
    try:
        return work(store, tenant)
    except ProjectionOutOfDateError as stale:
        head = int(stale.details["event_log_last_seq"])
        names = stale.details["projections"]
        if wait <= 0 or not wait_for_position(
            store, tenant, head, timeout=wait, projections=names, poll=0.002
        ):
            raise
    with reading_as_of(head):
        return work(store, tenant)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # One SQLite connection serializes every write, so the cheapest way to
    # keep projections current is the embedded library's: project in the
    # append's own transaction when they were current. Anything else (a
    # backlog, a failed projection) is the workers' business, never the
    # request's. PostgreSQL appends leave projection to the workers, which
    # may run on other machines.
    project_on_append = not is_postgres_url(settings.db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = StorePool(
            settings.db,
            settings.store_pool_size,
            wait=settings.store_wait,
            lock_timeout=settings.lock_timeout,
        )
        app.state.pool = pool
        app.state.signal, signal_stop = stream.start_signal(
            app, settings.db if pool.postgres else None
        )
        supervisor = None
        if settings.workers if settings.workers is not None else not pool.postgres:
            shared = pool.primary
            supervisor = Supervisor((lambda: shared), shared_store=True).start()
        try:
            yield
        finally:
            signal_stop.set()
            if supervisor is not None:
                supervisor.stop()
            pool.close()

    app = FastAPI(
        title="DecisionGraph",
        version="0.1.0",
        description="Record decisions as append-only events; investigate them.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    metrics = Metrics(lambda: getattr(app.state, "pool", None))
    limiter = RateLimiter()
    app.add_exception_handler(DecisionGraphError, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)

    # Innermost first: HEAD is served by the GET routes; strings no backend
    # can store are refused before any route sees them; a body over the
    # limit before anything reads it; and the request context, outermost,
    # gives even those answers a request id, a metric and an access-log line.
    app.add_middleware(HeadAsGet)
    app.add_middleware(RefuseNul)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestContext, metrics=metrics)

    def principal(request: Request, scope: str) -> Principal:
        key = bearer_key(request)
        with request.app.state.pool.store() as store:
            account = store.authenticate(key)
        if account is None:
            raise ServiceError("Unknown or revoked API key", code=UNAUTHENTICATED)
        tenant = choose_tenant(account, request.headers.get("x-tenant-id"))
        require_scope(account, scope)
        route_class = (
            "admin" if scope == "admin" else "write" if scope.endswith(":write") else "read"
        )
        try:  # the quota's headers go on the answer (see RequestContext)
            request.state.quota = limiter.check(account.name, route_class)
        except RateLimited as refused:
            request.state.quota = refused.quota
            raise
        request.state.tenant = tenant
        request.state.account = account.name
        return Principal(account, tenant)

    # Every route that names a scope authenticates before anything else
    # about the request is looked at: a caller without a valid key learns
    # nothing, not even which parameters were wrong.
    app.router.route_class = authenticated_routes(principal)
    app.openapi = secured_openapi(app, m.request_body_schemas())  # type: ignore[method-assign]

    async def call(request: Request, work: Callable[[Any, str], Any]) -> Any:
        tenant = request.state.principal.tenant_id

        def run() -> Any:
            with request.app.state.pool.store() as store:
                return waiting_for_projections(store, tenant, work, settings.read_wait)

        return await run_in_threadpool(run)

    # -- writes ------------------------------------------------------------
    @app.post(
        "/api/v1/events",
        response_model=m.AppendResponse,
        openapi_extra={
            **needs("events:write"),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/EnvelopeIn"},
                                {"$ref": "#/components/schemas/BatchIn"},
                            ]
                        }
                    }
                },
            },
        },
        summary="Append one event, or up to 1,000 in one transaction",
    )
    async def post_events(request: Request) -> Response:
        who: Principal = request.state.principal
        content_type = request.headers.get("content-type", "")
        if not is_json_media(content_type):  # as the admin routes, for one rule
            raise InvalidArgumentError(
                "The body must be JSON sent with Content-Type: application/json",
                details={"content_type": content_type[:100] or None},
            )
        # Announced once authenticated (which takes the SQLite connection): a
        # concurrent SQLite writer may now wait for this append to commit it
        # with its own (see store.group_commit).
        arrival = request.app.state.pool.primary.expect_append()
        try:
            raw = await request.body()

            def append(store: Any, tenant: str) -> tuple[bytes, int]:
                # Everything up to the encoded answer happens here, on the
                # worker thread: the event loop, which every request passes
                # through, neither encodes the answer nor frees the batch.
                with store.arriving(arrival):
                    envelopes = envelopes_of_body(raw, settings.max_batch_events)
                    stored: list[StoredEvent] = store.append(
                        tenant, envelopes, project=project_on_append, catch_up=False
                    )
                fresh = sum(1 for event in stored if not event.repeated)
                return m.AppendResponse.encode(stored), fresh

            body, fresh = await call(request, append)
        finally:
            arrival.settle()
        if fresh:
            metrics.appended.labels(who.tenant_id).inc(fresh)
        return Response(body, media_type="application/json")

    # -- reads ---------------------------------------------------------------
    # Trace ids may hold "/" (and be "." or ".."): the id is one path
    # segment, percent-encoded ("a/b" is "a%2Fb", ".." is "%2E%2E"). The
    # server decodes the path before routing, so the events route is told
    # apart on the raw path: it ends in a literal "/events" (an id ending in
    # "/events" is sent as "...%2Fevents" and stays a summary). Unencoded
    # slashes still work for every id that does not end in "/events".
    async def get_trace_events(
        request: Request,
        trace_id: str,
        since_trace_seq: int | None = Query(default=None, ge=0, le=INT64_MAX),
        limit: int | None = Query(default=None, ge=1, le=10_000),
    ) -> m.TraceEventsResponse:
        events = await call(
            request,
            lambda store, tenant: event_queries.get_trace_events(
                store, tenant, trace_id, since_trace_seq, limit
            ),
        )
        return m.TraceEventsResponse(events=[m.EventOut.of(event) for event in events])

    app.router.add_api_route(
        "/api/v1/traces/{trace_id:path}/events",
        get_trace_events,
        methods=["GET"],
        response_model=m.TraceEventsResponse,
        openapi_extra=needs("events:read"),
        route_class_override=literal_suffix_route(app.router.route_class, b"/events"),
    )

    @app.get(
        "/api/v1/traces/{trace_id:path}",
        response_model=m.TraceSummaryOut,
        openapi_extra=needs("events:read"),
    )
    async def get_trace(request: Request, trace_id: str) -> m.TraceSummaryOut:
        summary = await call(
            request, lambda store, tenant: get_trace_summary(store, tenant, trace_id)
        )
        return m.TraceSummaryOut.model_validate(summary, from_attributes=True)

    @app.get(
        "/api/v1/graph/subgraph",
        response_model=m.SubgraphResponse,
        openapi_extra=needs("events:read"),
    )
    async def subgraph(
        request: Request,
        node_type: str,
        node_id: str,
        max_depth: int = Query(default=1, ge=0, le=10),
        edge_types: Annotated[list[str] | None, Query()] = None,
        node_types: Annotated[list[str] | None, Query()] = None,
        max_nodes: int = Query(default=100, ge=1, le=10_000),
        max_edges: int = Query(default=500, ge=1, le=10_000),
    ) -> m.SubgraphResponse:
        graph_filter = GraphFilter(
            tuple(edge_types) if edge_types else None,
            tuple(node_types) if node_types else None,
            max_depth,
            max_nodes,
            max_edges,
        )
        result = await call(
            request,
            lambda store, tenant: get_context_subgraph(
                store, tenant, node_type, node_id, max_depth, graph_filter
            ),
        )
        return m.SubgraphResponse(
            center=result.center,
            nodes=[m.NodeOut.model_validate(n._asdict()) for n in result.nodes],
            edges=[m.EdgeOut.model_validate(e._asdict()) for e in result.edges],
            truncated=result.truncated,
        )

    @app.get(
        "/api/v1/graph/edges", response_model=m.EdgePageResponse, openapi_extra=needs("events:read")
    )
    async def edges(
        request: Request,
        node: str,
        direction: str = Query(default="both", pattern="^(outgoing|incoming|both)$"),
        cursor: str | None = None,
        limit: int = Query(default=100, ge=1, le=10_000),
    ) -> m.EdgePageResponse:
        after = None
        if cursor:
            after = GraphEdgeCursor.from_text(cursor)
        page = await call(
            request,
            lambda store, tenant: list_node_edges(store, tenant, node, direction, after, limit),
        )
        next_cursor = None if page.next_cursor is None else page.next_cursor.as_text()
        return m.EdgePageResponse(
            edges=[m.EdgeOut.model_validate(e._asdict()) for e in page.edges],
            next_cursor=next_cursor,
        )

    @app.get(
        "/api/v1/precedents",
        response_model=m.PrecedentsResponse,
        openapi_extra=needs("events:read"),
    )
    async def precedents(
        request: Request,
        policy_id: str | None = None,
        policy_version: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str | None = None,
        limit: int = Query(default=100, ge=1, le=10_000),
    ) -> m.PrecedentsResponse:
        query = PrecedentQuery(policy_id, policy_version, entity_type, entity_id, outcome, limit)
        hits = await call(request, lambda store, tenant: find_precedents(store, tenant, query))
        return m.PrecedentsResponse(
            precedents=[m.PrecedentOut.model_validate(h, from_attributes=True) for h in hits]
        )

    @app.get(
        "/api/v1/projections",
        response_model=m.ProjectionsResponse,
        openapi_extra=needs("events:read"),
    )
    async def projections(request: Request, include_digests: bool = False) -> m.ProjectionsResponse:
        def work(store: Any, tenant: str) -> m.ProjectionsResponse:
            statuses = projection_statuses(store, tenant)
            digests = store.digests(tenant).as_dict() if include_digests else None
            return m.ProjectionsResponse(
                tenant_id=tenant,
                projections=[m.ProjectionOut.model_validate(s.as_dict()) for s in statuses],
                digests=None if digests is None else m.DigestsOut(**digests),
            )

        result: m.ProjectionsResponse = await call(request, work)
        return result

    @app.get(
        "/api/v1/projections/health", response_model=m.HealthOut, openapi_extra=needs("events:read")
    )
    async def projection_health(request: Request, include_digests: bool = False) -> m.HealthOut:
        """Event and trace counts, the log head and the lowest cursor (spec 10.6)."""

        def work(store: Any, tenant: str) -> m.HealthOut:
            health = get_projection_health(store, tenant, include_digests)
            return m.HealthOut.model_validate({**health.as_dict(), "tenant_id": tenant})

        result: m.HealthOut = await call(request, work)
        return result

    admin_routes.register(app, call)
    stream.register(app, settings.stream_heartbeat)

    # -- operations ----------------------------------------------------------
    @app.get("/healthz", response_model=m.Status)
    async def healthz() -> m.Status:
        return m.Status(status="ok")

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus(request: Request) -> Response:
        if settings.metrics_token is not None:
            supplied = (bearer_token(request) or "").encode("utf-8", "surrogateescape")
            expected = settings.metrics_token.encode("utf-8")
            if not hmac.compare_digest(supplied, expected):
                return error_response(
                    request, UNAUTHENTICATED, "/metrics needs the bearer token of DG_METRICS_TOKEN"
                )
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/readyz", response_model=m.Status)
    async def readyz(request: Request) -> Response:
        backend = "postgres" if request.app.state.pool.postgres else "sqlite"
        expected = {version for version, _, _ in migration_files(backend)}

        def check() -> bool:
            with request.app.state.pool.store() as store:
                applied: set[int] = store.applied_migrations()
            # Every authenticated request draws from the limiter: while its
            # Redis is unreachable they all get 503, so the process is not ready.
            return expected <= applied and limiter.ready()

        try:
            ready = await run_in_threadpool(check)
        except Exception:
            ready = False
        if not ready:
            return error_response(request, "DG_ERR_STORAGE", "Not ready")
        return Response(m.Status(status="ready").model_dump_json(), media_type="application/json")

    return app
