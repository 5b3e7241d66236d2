"""One interface for both worlds: checked by mypy, and picked by ``connect``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from decisiongraph import Client, DecisionGraph, DecisionGraphAPI, connect
from decisiongraph.core.errors import InvalidArgumentError
from tests.runtime.support import ROOT

CONFORMANCE = ROOT / "tests" / "sdk" / "typing_conformance.py"

DRIFTED = """
from typing import Any
from decisiongraph import Client, DecisionGraphAPI


class Drifted(Client):
    def get_trace_summary(self, trace_id: str) -> dict[str, Any]:  # type: ignore[override]
        return {}


def remote(client: Drifted) -> DecisionGraphAPI:
    return client


class Partial:
    def close(self) -> None: ...


def partial(p: Partial) -> DecisionGraphAPI:
    return p
"""


def mypy(*paths: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *paths],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_embedded_and_remote_clients_satisfy_the_protocol_statically(tmp_path: Path) -> None:
    done = mypy(str(CONFORMANCE))
    assert done.returncode == 0, done.stdout + done.stderr
    # The check has teeth: a drifted result type and a missing method are caught.
    drifted = tmp_path / "drifted.py"
    drifted.write_text(DRIFTED, "utf-8")
    failed = mypy(str(drifted))
    assert failed.returncode == 1
    assert 'Incompatible return value type (got "Drifted", expected "DecisionGraphAPI")' in (
        failed.stdout
    )
    assert 'got "Partial", expected "DecisionGraphAPI"' in failed.stdout
    assert "get_trace_summary" in failed.stdout


def test_connect_picks_the_embedded_library_or_the_remote_client(tmp_path: Path) -> None:
    embedded: DecisionGraphAPI = connect(str(tmp_path / "local.db"))
    assert isinstance(embedded, DecisionGraph)
    embedded.close()
    remote = connect("http://127.0.0.1:9", api_key="dgk_unused", tenant="other")
    assert isinstance(remote, Client) and remote.tenant == "other"
    remote.close()
    with pytest.raises(InvalidArgumentError, match="api_key"):
        connect("https://example.invalid")
