"""Fixtures of the Compose suite: an engine, the images, and one stack shared by the tests that can share it.

    engine    a Docker engine found or started (tests.compose.engine) once the tests are selected; where neither
              is possible the ``compose`` tests are deselected and the run says why in one line at the end
    images    the official base images, or their offline stand-ins (tests.compose.standins), then the app image
              built once by ``docker compose build``: every project below reuses it
    stacks    at most one Compose project up at a time, all taken down with their volumes at the end
    stack     the development stack of docker-compose.yml, up and healthy; tests share it (and may scale it)

Each step's time is printed in the terminal summary and written to ``reports/compose/timings.txt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import docker
import pytest

from tests.compose.engine import EngineUnavailable, connect
from tests.compose.project import APP_IMAGE, ROOT, Project, Stacks
from tests.compose.standins import StandinUnavailable, ensure_images, official_images
from tests.resilience.report import REPORTS_DIR

DEVELOPMENT = Project("scalable-api-test")
_STACKS = Stacks()
_TIMINGS_FILE = REPORTS_DIR / "compose" / "timings.txt"
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class _Engine:
    client: docker.DockerClient | None = None
    unavailable: str | None = None


_ENGINE = _Engine()


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected what they deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With no engine to be had, the compose tests are deselected and one line says why (not one per test)."""
    selected = [item for item in items if item.get_closest_marker("compose") is not None]
    if not selected:
        return
    try:
        _ENGINE.client = connect()
    except EngineUnavailable as exc:
        _ENGINE.unavailable = f"the Compose tests were skipped ({len(selected)} deselected): {exc}"
        items[:] = [item for item in items if item.get_closest_marker("compose") is None]
        config.hook.pytest_deselected(items=selected)


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    client = _ENGINE.client
    if client is None:
        pytest.skip(_ENGINE.unavailable or "Compose suite: only tests marked compose get an engine")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def images(engine: docker.DockerClient) -> docker.DockerClient:
    """Every base image present (official or stand-in) and the app image built once."""
    try:
        provisions = ensure_images(engine, official_images(ROOT))
    except StandinUnavailable as exc:
        pytest.skip(f"Compose suite: {exc}")
    for provision in provisions:
        _STACKS.timings[f"image {provision.image}: {provision.how}"] = provision.seconds
    _STACKS.run(f"app image: docker compose build ({APP_IMAGE})", DEVELOPMENT, "build")
    prune_untagged_app_images(engine)
    return engine


def prune_untagged_app_images(client: docker.DockerClient) -> None:
    """Each of the five services that build the one image tags it in turn, and a rebuild untags the last one: those
    untagged copies of this image go (nothing else of the developer's does)."""
    client.images.prune(filters={"dangling": True, "label": "org.opencontainers.image.title=scalable-api"})


@pytest.fixture(scope="package")
def stacks(images: docker.DockerClient) -> Iterator[Stacks]:
    """The suite's Compose projects, shared by its tests and torn down when the package's last test is done (not
    at the end of the whole session: the rest of the suite must not run beside an idle stack)."""
    try:
        yield _STACKS
    finally:
        _STACKS.close()
        prune_untagged_app_images(images)
    left = leftovers(images)
    assert not left, f"the Compose suite left these behind: {left}"


def leftovers(client: docker.DockerClient) -> list[str]:
    """Containers and volumes of the suite's projects (``scalable-api-test*``) that still exist."""
    found = [f"container {c.name}" for c in client.containers.list(all=True, filters={"label": PROJECT_LABEL})]
    found += [f"volume {v.name}" for v in client.volumes.list(filters={"label": PROJECT_LABEL})]
    return [item for item in found if item.split()[1].startswith(DEVELOPMENT.name)]


@pytest.fixture
def stack(stacks: Stacks) -> Project:
    """The development stack (ENVIRONMENT=development, seeded), up and healthy; shared across tests."""
    return stacks.bring_up(DEVELOPMENT)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _ENGINE.unavailable is not None:
        terminalreporter.write_line(f"note: {_ENGINE.unavailable}", yellow=True)
    if not _STACKS.timings:
        return
    lines = [f"{seconds:8.1f} s  {step}" for step, seconds in _STACKS.timings.items()]
    terminalreporter.write_sep("-", "Compose suite: seconds per step")
    for line in lines:
        terminalreporter.write_line(line)
    _TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    _TIMINGS_FILE.write_text("\n".join(lines) + "\n")
