"""Which tests may start servers, and the guard that holds every test to it.

``integration`` tests use real PostgreSQL and Redis started by fixtures; ``e2e`` tests start real suite processes
(and the servers behind them). Every other test runs with no server at all, so
``pytest -m "not integration and not e2e"`` needs nothing but the virtualenv. Two checks enforce it:

    before a test's fixtures are set up   it requests a server fixture (SERVER_FIXTURES, directly or through
                                          another fixture) ─► it must be marked integration or e2e
    while a test is set up, run, torn down  every subprocess it starts is audited (the ``subprocess.Popen``
                                          audit event): a server binary (postgres, redis-server, ...) needs
                                          integration or e2e, a suite process (``python -m gateway`` ...) e2e

A test that breaks the rule fails, naming the marker it lacks, before the server starts; in-process aiohttp test
servers (``aiohttp_client``) are not servers in this sense.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SERVER_FIXTURES", "SpawnGuard", "markers_to_start", "missing_server_marker"]

INTEGRATION_OR_E2E = frozenset({"integration", "e2e"})
E2E = frozenset({"e2e"})
SERVER_FIXTURES = frozenset({"postgres_server", "redis_server", "own_postgres", "own_redis", "redis_cluster"})
_SERVER_BINARIES = frozenset(
    {"postgres", "postmaster", "initdb", "pg_ctl", "pg_basebackup"}
    | {f"{name}-{role}" for name in ("redis", "valkey") for role in ("server", "sentinel")}
)
_SUITE_MODULES = ("gateway", "balancer", "apiserver", "stack", "tests.balancer.backend_app")


def _markers(item: pytest.Item) -> frozenset[str]:
    return frozenset(mark.name for mark in item.iter_markers())


def missing_server_marker(item: pytest.Item) -> str | None:
    """Why ``item`` may not have the server fixtures it requests, or None when it may."""
    used = sorted(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if used and not _markers(item) & INTEGRATION_OR_E2E:
        return f"{item.nodeid} uses {', '.join(used)} but is marked neither integration nor e2e"
    return None


def _argv(args: Any) -> list[str]:
    if isinstance(args, str | bytes | os.PathLike):
        return [os.fsdecode(args)]
    return [os.fsdecode(arg) for arg in args]


def markers_to_start(argv: Sequence[str]) -> frozenset[str]:
    """The markers a test needs to start ``argv``: none for a tool, integration/e2e for a server binary, e2e for
    a suite process."""
    if not argv:
        return frozenset()
    if Path(argv[0]).name in _SERVER_BINARIES:
        return INTEGRATION_OR_E2E
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        if any(module == name or module.startswith(name + ".") for name in _SUITE_MODULES):
            return E2E
    return frozenset()


@dataclass
class _Running:
    nodeid: str
    markers: frozenset[str]


class SpawnGuard:
    """Audits the subprocesses of the test that is running (``enter``/``leave`` bracket each test)."""

    def __init__(self) -> None:
        self._running: _Running | None = None
        self._installed = False

    def install(self) -> None:
        # Audit hooks cannot be removed; outside a test (``leave``) the hook lets everything through.
        if not self._installed:
            sys.addaudithook(self._audit)
            self._installed = True

    def enter(self, item: pytest.Item) -> None:
        self._running = _Running(item.nodeid, _markers(item))

    def leave(self) -> None:
        self._running = None

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "subprocess.Popen" or self._running is None:
            return
        argv = _argv(args[1]) if args[1] is not None else _argv([args[0]])
        needed = markers_to_start(argv)
        if needed and not needed & self._running.markers:
            wanted = " or ".join(sorted(needed))
            raise RuntimeError(f"{self._running.nodeid} is not marked {wanted} but starts a server: {argv[:4]}")
