"""How many worker processes each deployment runs (``WORKERS``): one per container unless the operator asks.

Compose defaults to 1 (every container of one host taking every core would oversubscribe it) and passes an
operator's ``WORKERS`` through; Kubernetes runs one worker per pod, a core at most, and scales pods with the HPAs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import parse_workers
from tests.deploy.test_artifacts import APP_COMPONENTS, OVERLAYS, by_kind, compose_model, rendered


def test_compose_runs_one_worker_per_container_unless_asked(tmp_path: Path) -> None:
    defaults = compose_model(tmp_path, "docker-compose.yml")["services"]
    asked = compose_model(tmp_path, "docker-compose.yml", env={"WORKERS": "auto"})["services"]
    for name in APP_COMPONENTS:
        assert defaults[name]["environment"]["WORKERS"] == "1", name
        assert asked[name]["environment"]["WORKERS"] == "auto", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_runs_one_worker_per_pod_and_scales_pods(overlay: str) -> None:
    docs = rendered(overlay)
    config = by_kind(docs, "ConfigMap")["scalable-api-config"]["data"]
    assert parse_workers(config["WORKERS"]) == 1
    for name, deployment in by_kind(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "WORKERS" not in {item["name"] for item in container.get("env", [])}, f"{name} overrides WORKERS"
