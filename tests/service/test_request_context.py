"""Request ids, access logs, metrics and the last-resort 500, over real HTTP.

The app runs in this process under uvicorn on loopback, so that a route that
fails unexpectedly can be added and the access log read from ``caplog``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from decisiongraph.service.app import create_app
from decisiongraph.service.settings import Settings
from tests.service.conftest import free_port


@pytest.fixture()
def url(tmp_path: Path) -> Iterator[str]:
    app = create_app(Settings(db=str(tmp_path / "context.db"), workers=False))

    def boom() -> None:
        raise RuntimeError("secret detail of a bug")

    app.add_api_route("/boom", boom)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert thread.is_alive(), "server stopped while starting"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, count: int) -> list[dict[str, object]]:
        """The access log's JSON lines (one per request, with its status), once
        there are ``count`` (a request is logged just after its response has
        been sent; an unhandled error's own line comes before it)."""
        deadline = time.monotonic() + 10
        while True:
            found = [
                line
                for line in (
                    json.loads(r.getMessage()) for r in self.records if r.getMessage()[:1] == "{"
                )
                if "status" in line
            ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


@pytest.fixture()
def access_log() -> Iterator[Records]:
    """The access logger's records, whatever other tests did to logging."""
    logger = logging.getLogger("decisiongraph.access")
    handler = Records()
    saved = (logger.level, logger.disabled)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.disabled = saved[1]


def test_an_unexpected_bug_is_a_bare_500_with_the_request_id(url: str, access_log: Records) -> None:
    response = httpx.get(f"{url}/boom", headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "DG_ERR_INTERNAL"
    assert error["request_id"] == "trace-me-1"
    assert "secret detail" not in response.text
    assert response.headers.get_list("X-Request-ID") == ["trace-me-1"]
    access = access_log.lines(1)
    assert {"request_id": "trace-me-1", "status": 500, "path": "/boom"}.items() <= access[
        -1
    ].items()
    # The bug itself is logged, as one JSON line carrying the request id.
    errors = [json.loads(r.getMessage()) for r in access_log.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "trace-me-1" and errors[0]["path"] == "/boom"
    assert "secret detail" in errors[0]["error"] and "RuntimeError" in errors[0]["traceback"]


def test_request_ids_are_echoed_when_well_formed_and_made_otherwise(url: str) -> None:
    echoed = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert echoed.headers.get_list("X-Request-ID") == ["abc.DEF_1-2"]
    for bad in ("has space", "x" * 65, "semi;colon"):
        made = httpx.get(f"{url}/healthz", headers={"X-Request-ID": bad})
        (request_id,) = made.headers.get_list("X-Request-ID")
        assert len(request_id) == 32 and int(request_id, 16) >= 0
    plain = httpx.get(f"{url}/healthz")
    assert len(plain.headers["X-Request-ID"]) == 32


def test_every_request_is_logged_as_json_and_counted_by_route_template(
    url: str, access_log: Records
) -> None:
    missing = httpx.get(f"{url}/api/v1/traces/some-trace")  # no key: 401
    httpx.get(f"{url}/nowhere")
    assert missing.status_code == 401
    lines = access_log.lines(2)
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/api/v1/traces/some-trace", 401),
        ("/nowhere", 404),
    ]
    assert lines[0]["request_id"] == missing.headers["X-Request-ID"]
    assert all(line["duration_ms"] >= 0 for line in lines)
    metrics = httpx.get(f"{url}/metrics").text
    assert (
        'dg_http_requests_total{method="GET",route="/api/v1/traces/{trace_id}",status="401"} 1.0'
        in metrics
    )
    assert 'route="unmatched",status="404"' in metrics
    assert "some-trace" not in metrics  # templates, never raw paths
