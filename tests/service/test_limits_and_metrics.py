"""Rate limits (per process and shared through Redis) and /metrics."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.service.conftest import Server, start_server

REDIS = ("127.0.0.1", 6379)


def redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


def hit_until_limited(client: httpx.Client, tries: int = 50) -> httpx.Response:
    for _ in range(tries):
        response = client.get("/api/v1/projections")
        if response.status_code == 429:
            return response
    raise AssertionError("never rate limited")


def test_rate_limit_answers_429_with_retry_after(tmp_path: object) -> None:
    server = start_server(str(tmp_path / "rl.db"), env={"DG_RATE_READ": "2"})  # type: ignore[operator]
    try:
        with server.client("reader") as reader:
            first = reader.get("/api/v1/projections")
            assert first.headers["RateLimit-Limit"] == "4"  # the burst: twice the rate
            assert first.headers["RateLimit-Remaining"] == "3"
            assert 1 <= int(first.headers["RateLimit-Reset"]) <= 2
            limited = hit_until_limited(reader)
            assert limited.json()["error"]["code"] == "DG_ERR_RATE_LIMITED"
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.headers["RateLimit-Remaining"] == "0"
            assert limited.headers["RateLimit-Limit"] == "4"
            # Unauthenticated answers and unlimited routes draw on no bucket.
            assert "RateLimit-Limit" not in httpx.get(f"{server.url}/healthz").headers
            anonymous = httpx.get(f"{server.url}/api/v1/projections")
            assert anonymous.status_code == 401 and "RateLimit-Limit" not in anonymous.headers
        with server.client("writer") as other_account:  # buckets are per account
            assert other_account.get("/api/v1/projections").status_code == 200
    finally:
        server.process.terminate()
        server.process.wait(30)


@pytest.mark.skipif(not redis_up(), reason="Redis is not running at 127.0.0.1:6379")
def test_redis_buckets_are_shared_between_processes(tmp_path: object) -> None:
    # Both databases hold an account named "reader": one bucket in Redis.
    env = {"DG_RATE_READ": "1", "DG_REDIS_URL": "redis://127.0.0.1:6379/15"}
    first = start_server(str(tmp_path / "a.db"), env=env)  # type: ignore[operator]
    second = start_server(str(tmp_path / "b.db"), env=env)  # type: ignore[operator]
    try:
        with first.client("reader") as a, second.client("reader") as b:
            answers = [a.get("/api/v1/projections") for _ in range(2)]
            answers += [b.get("/api/v1/projections") for _ in range(2)]
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(429) >= 2  # burst 2 drawn from one shared bucket
        # The quota comes from the shared bucket too, whichever process answers.
        assert all(answer.headers["RateLimit-Limit"] == "2" for answer in answers)
        assert all(
            answer.headers["RateLimit-Remaining"] == "0"
            for answer in answers
            if answer.status_code == 429
        )
    finally:
        for server in (first, second):
            server.process.terminate()
            server.process.wait(30)


def test_metrics(server: Server) -> None:
    with server.client() as client:
        client.get("/api/v1/projections")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'dg_http_requests_total{method="GET",route="/api/v1/projections",status="200"}' in text
    assert "dg_http_request_duration_seconds_bucket" in text
    assert "dg_projection_lag_events" in text
    assert "dgk_" not in text and "Bearer" not in text


def test_metrics_can_require_a_token(tmp_path: object) -> None:
    server = start_server(str(tmp_path / "m.db"), env={"DG_METRICS_TOKEN": "s3cret"})  # type: ignore[operator]
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = httpx.get(f"{server.url}/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "DG_ERR_UNAUTHENTICATED"
            assert "dg_http_requests_total" not in refused.text
        allowed = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and "dg_http_requests_total" in allowed.text
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes stay open
    finally:
        server.process.terminate()
        server.process.wait(30)
