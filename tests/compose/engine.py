"""Find a Docker engine for the Compose suite, or start one, or say in one line why neither is possible.

    an engine answers (DOCKER_HOST or the default socket) ─────────────────────────► use it
    none answers, no DOCKER_HOST, we are root, ``dockerd`` installed ─► start it ──► use it (left running)
    otherwise ─────────────────────────────────────────────► EngineUnavailable(one line) ─► the suite skips

``make docker`` (a prerequisite of ``make pytest``) installs Debian's ``docker.io`` and ``debootstrap`` as root when
they are missing; this module never installs anything. A ``dockerd`` started here outlives the test run on
purpose: the next run finds it answering and reuses its image cache, which is what keeps a warm run short.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import docker
from docker.errors import DockerException

__all__ = ["DOCKERD_LOG", "EngineUnavailable", "connect", "start_dockerd"]

DOCKERD_LOG = Path(os.environ.get("DOCKERD_LOG", "/var/log/dockerd.log"))
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
_START_WITHIN = 60.0
_API_TIMEOUT = 300  # seconds per API call: image builds and imports stream for minutes


class EngineUnavailable(Exception):
    """No engine answers and none can be started here; the message is the one line the suite skips with."""


def _unix_socket_refuses() -> bool:
    """True when the engine's address is a Unix socket that nothing accepts on.

    Checked with a socket of our own first: docker-py leaks the socket of a refused Unix connection, and the
    ResourceWarning would fail whichever test happens to run when it is collected.
    """
    host = os.environ.get("DOCKER_HOST", DEFAULT_SOCKET)
    if not host.startswith("unix://"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return True
    return False


def _answering() -> docker.DockerClient | None:
    if _unix_socket_refuses():
        return None
    try:
        client = docker.from_env(timeout=_API_TIMEOUT)
    except DockerException:
        return None
    try:
        client.ping()
    except DockerException:
        client.close()
        return None
    return client


def start_dockerd(log: Path = DOCKERD_LOG) -> None:
    """Start ``dockerd`` in its own session, detached from the test process, logging to ``log``."""
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and dockerd is not installed: run `make docker` as root")
    log.parent.mkdir(parents=True, exist_ok=True)
    # `sh -c '... &'` returns at once and leaves dockerd to init: the engine is meant to outlive this process.
    subprocess.run(
        ["sh", "-c", 'exec "$0" >>"$1" 2>&1 </dev/null &', dockerd, str(log)],
        check=True,
        start_new_session=True,
        timeout=10,
    )


def connect() -> docker.DockerClient:
    """A client of an answering engine, starting ``dockerd`` first when none answers and we may."""
    client = _answering()
    if client is not None:
        return client
    if os.environ.get("DOCKER_HOST"):
        raise EngineUnavailable(f"no Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers to this user, and starting dockerd needs root")
    start_dockerd()
    deadline = time.monotonic() + _START_WITHIN
    while time.monotonic() < deadline:
        client = _answering()
        if client is not None:
            return client
        time.sleep(0.5)
    raise EngineUnavailable(f"dockerd was started but did not answer within {_START_WITHIN:g} s (see {DOCKERD_LOG})")
