"""The Compose suite's own setup, checked without an engine: when it skips, and what it would stand in for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compose import engine
from tests.compose.standins import RECIPES, RECIPES_DIR, official_images, split


def test_an_engine_named_by_docker_host_that_does_not_answer_is_never_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The developer pointed at that engine: starting a local dockerd instead would test something else."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    monkeypatch.setattr(engine, "start_dockerd", lambda: pytest.fail("dockerd must not be started"))
    with pytest.raises(engine.EngineUnavailable, match="DOCKER_HOST=unix://"):
        engine.connect()


def test_without_an_engine_or_root_the_reason_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(engine, "DEFAULT_SOCKET", f"unix://{tmp_path / 'nothing.sock'}")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(engine.EngineUnavailable) as unavailable:
        engine.connect()
    assert str(unavailable.value) == "no Docker engine answers to this user, and starting dockerd needs root"


def test_every_base_image_the_stack_runs_has_a_stand_in_recipe() -> None:
    images = official_images()
    assert {split(image)[0] for image in images} == {"node", "python", "postgres", "redis"}
    for image in images:
        assert (RECIPES_DIR / RECIPES[split(image)[0]]).is_file(), image
        assert "bookworm" in image, f"{image}: the stand-ins are Debian bookworm"
