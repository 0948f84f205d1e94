"""The guard on servers: a test that is not marked integration/e2e cannot start one (tests/support/markers.py).

This module is itself unmarked, so what it tries to start is refused by the guard before any process exists.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace
from typing import cast

import pytest

from tests.support.markers import markers_to_start, missing_server_marker


def test_an_unmarked_test_cannot_start_a_server_binary() -> None:
    with pytest.raises(RuntimeError, match="is not marked e2e or integration but starts a server"):
        subprocess.run(["redis-server", "--version"], check=False)


def test_an_unmarked_test_cannot_start_a_suite_process() -> None:
    with pytest.raises(RuntimeError, match="is not marked e2e but starts a server"):
        subprocess.run([sys.executable, "-m", "gateway", "--help"], check=False)


def test_tools_still_run() -> None:
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


@pytest.mark.parametrize(
    ("argv", "needed"),
    [
        (["postgres", "-D", "/data"], {"integration", "e2e"}),
        (["/usr/lib/postgresql/16/bin/initdb", "-D", "/data"], {"integration", "e2e"}),
        (["valkey-server", "--port", "1"], {"integration", "e2e"}),
        (["redis-sentinel", "sentinel.conf"], {"integration", "e2e"}),
        ([sys.executable, "-m", "balancer", "--port", "1"], {"e2e"}),
        ([sys.executable, "-m", "stack.cli", "up"], {"e2e"}),
        ([sys.executable, "-m", "tests.balancer.backend_app", "--port", "1"], {"e2e"}),
        ([sys.executable, "-m", "gatewayish"], set()),
        (["hadolint", "Dockerfile"], set()),
        ([], set()),
    ],
)
def test_what_each_command_needs(argv: list[str], needed: set[str]) -> None:
    assert markers_to_start(argv) == needed


def _item(nodeid: str, fixtures: list[str], markers: list[str]) -> pytest.Item:
    marks = [SimpleNamespace(name=name) for name in markers]
    return cast(pytest.Item, SimpleNamespace(nodeid=nodeid, fixturenames=fixtures, iter_markers=lambda: iter(marks)))


def test_server_fixtures_need_a_marker() -> None:
    unmarked = _item("t.py::a", ["tmp_path", "database_url", "postgres_server"], ["parametrize"])
    assert missing_server_marker(unmarked) == "t.py::a uses postgres_server but is marked neither integration nor e2e"
    assert missing_server_marker(_item("t.py::b", ["redis_server"], ["integration"])) is None
    assert missing_server_marker(_item("t.py::c", ["own_postgres"], ["e2e"])) is None
    assert missing_server_marker(_item("t.py::d", ["aiohttp_client", "clock"], [])) is None
