"""Several API processes on one port over one PostgreSQL database
(``serve --processes N``), and the refusal of that shape on SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import GOLDEN_SCENARIOS, load_golden
from tests.service.conftest import ROOT, start_server
from tests.service.test_api import wait_for_digests


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(part) for part in text.split()]


def test_processes_share_the_port_and_the_database(pg_url: str) -> None:
    running = start_server(pg_url, "--processes", "2")
    worker = subprocess.Popen(
        [sys.executable, "-m", "decisiongraph", "worker", pg_url, "--poll-interval", "0.2"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # uvicorn's supervisor runs one child per API process.
        assert len(_children(running.process.pid)) >= 2
        for scenario in GOLDEN_SCENARIOS:
            events, expected = load_golden(scenario)
            # One short connection per event, so both processes take some.
            for event in events:
                with running.client("golden", tenant=scenario) as one:
                    response = one.post("/api/v1/events", json=event)
                    assert response.status_code == 200, response.text
            with running.client("golden", tenant=scenario) as client:
                assert wait_for_digests(client, expected) == expected
        # Whichever process answers the scrape, it counts every process's posts.
        posted = sum(len(load_golden(scenario)[0]) for scenario in GOLDEN_SCENARIOS)
        for _ in range(3):  # separate connections: likely different processes
            text = httpx.get(f"{running.url}/metrics", timeout=10).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("dg_http_requests_total{")
                and 'method="POST"' in line
                and 'route="/api/v1/events"' in line
                and 'status="200"' in line
            )
            assert counted == posted
    finally:
        for process in (running.process, worker):
            process.terminate()
            process.wait(30)


def test_sqlite_refuses_several_processes(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "decisiongraph",
            "serve",
            "--db",
            str(tmp_path / "one.db"),
            "--processes",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "need PostgreSQL" in result.stderr
