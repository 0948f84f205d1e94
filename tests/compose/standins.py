"""The base images the Dockerfile and the Compose files name: official when they can be pulled, else stand-ins.

An offline substitute for the test suite, not what users run. Where no image registry is reachable (CI here), each
missing official image is replaced by a local image under the same name, built from Debian's packages:

    debootstrap --variant=minbase bookworm ─► docker import ─► scalable-api-standin/debian-rootfs:bookworm
        ─► base.Dockerfile (+ Debian's ca-certificates and the CA bundle the host's pip trusts)
        ─► scalable-api-standin/debian:bookworm
            ─► python.Dockerfile    as python:3.11-slim-bookworm   Debian's python3 3.11, venv, pip
            ─► node.Dockerfile      as node:20-bookworm-slim       the host's Node.js 20 (bookworm's is 18)
            ─► postgres.Dockerfile  as postgres:16-bookworm        Debian's PostgreSQL 15 (bookworm has no 16)
            ─► redis.Dockerfile     as redis:7-bookworm            Debian's redis-server 7.0

Each step is skipped when an image of its name already exists, so only the first run pays for it (and an official
image pulled by the user is never replaced). Stand-ins carry the label ``org.scalable-api.standin``. The Dockerfile
itself is used unchanged: the CA certificate reaches pip and npm through the stand-ins' own trust stores.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import yaml
from docker.errors import APIError, BuildError, ImageNotFound

__all__ = [
    "BASE",
    "LABEL",
    "ROOTFS",
    "Provision",
    "StandinUnavailable",
    "ensure_images",
    "official_images",
]

ROOT = Path(__file__).resolve().parents[2]
RECIPES_DIR = Path(__file__).resolve().parent / "standins"
LABEL = "org.scalable-api.standin"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
ROOTFS = f"scalable-api-standin/debian-rootfs:{DEBIAN_SUITE}"
BASE = f"scalable-api-standin/debian:{DEBIAN_SUITE}"
RECIPES = {"python": "python.Dockerfile", "node": "node.Dockerfile", "postgres": "postgres.Dockerfile"}
RECIPES["redis"] = "redis.Dockerfile"
DEBIAN_PYTHON = "3.11"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.dev.yml")


class StandinUnavailable(Exception):
    """A stand-in cannot be built on this host; the message says what is missing."""


@dataclass(frozen=True)
class Provision:
    """How one image came to be there: ``present``, ``pulled`` or ``stand-in`` (built here), and how long it took."""

    image: str
    how: str
    seconds: float


# --- which images --------------------------------------------------------------------------------------------------


def official_images(root: Path = ROOT) -> list[str]:
    """Every base image of the Dockerfile's stages and every image a default-profile Compose service runs."""
    images: list[str] = []
    stages: set[str] = set()
    for line in (root / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            if words[1] not in stages:
                images.append(words[1])
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
    for name in COMPOSE_FILES:
        services: dict[str, dict[str, Any]] = yaml.safe_load((root / name).read_text())["services"]
        images += [s["image"] for s in services.values() if "build" not in s and not s.get("profiles")]
    return list(dict.fromkeys(images))


def split(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    return repository, tag


# --- obtaining them ------------------------------------------------------------------------------------------------


def _exists(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def _pulled(client: docker.DockerClient, image: str) -> bool:
    repository, tag = split(image)
    try:
        client.images.pull(repository, tag)
    except APIError:
        return False
    return True


def ensure_images(client: docker.DockerClient, images: Iterable[str]) -> list[Provision]:
    """Make every image exist: kept when present, else pulled, else its stand-in is built."""
    provisions = []
    for image in images:
        started = time.monotonic()
        if _exists(client, image):
            how = "present"
        elif _pulled(client, image):
            how = "pulled"
        else:
            build_standin(client, image)
            how = "stand-in"
        provisions.append(Provision(image, how, round(time.monotonic() - started, 1)))
    return provisions


def build_standin(client: docker.DockerClient, image: str) -> None:
    repository, tag = split(image)
    recipe = RECIPES.get(repository)
    if recipe is None:
        raise StandinUnavailable(f"{image} cannot be pulled and has no stand-in recipe in {RECIPES_DIR}")
    if DEBIAN_SUITE not in tag:
        raise StandinUnavailable(f"{image} cannot be pulled and its stand-in is Debian {DEBIAN_SUITE}, not {tag}")
    if repository == "python" and not tag.startswith(DEBIAN_PYTHON + "-"):
        raise StandinUnavailable(f"{image} cannot be pulled and Debian {DEBIAN_SUITE}'s python3 is {DEBIAN_PYTHON}")
    ensure_base(client)
    with tempfile.TemporaryDirectory(prefix="standin-") as scratch:
        context = Path(scratch)
        shutil.copy(RECIPES_DIR / recipe, context / recipe)
        for script in RECIPES_DIR.glob(f"{repository}-*.sh"):
            shutil.copy(script, context / script.name)
        if repository == "node":
            _copy_host_node(context, major=tag.split("-")[0])
        _build(client, context, recipe, image, {"BASE": BASE})


def ensure_base(client: docker.DockerClient) -> None:
    """The Debian base every stand-in starts from: debootstrapped and imported once, then cached by name."""
    if _exists(client, BASE):
        return
    if not _exists(client, ROOTFS):
        _import_rootfs(client)
    with tempfile.TemporaryDirectory(prefix="standin-base-") as scratch:
        context = Path(scratch)
        shutil.copy(RECIPES_DIR / "base.Dockerfile", context / "base.Dockerfile")
        shutil.copy(host_ca_bundle(), context / "host-trust.crt")
        _build(client, context, "base.Dockerfile", BASE, {"ROOTFS": ROOTFS})


def _import_rootfs(client: docker.DockerClient) -> None:
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin")
    if debootstrap is None or os.geteuid() != 0:
        raise StandinUnavailable("no registry answers and building stand-ins needs root and debootstrap (make docker)")
    with tempfile.TemporaryDirectory(prefix="standin-rootfs-") as scratch:
        rootfs, archive = Path(scratch) / "rootfs", Path(scratch) / "rootfs.tar"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise StandinUnavailable(f"debootstrap failed: {(result.stdout + result.stderr)[-600:]}")
        subprocess.run(
            ["tar", "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*.deb", "-cf", str(archive), "."],
            check=True,
            timeout=300,
        )
        repository, tag = split(ROOTFS)
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag)


def host_ca_bundle() -> Path:
    """The CA bundle the host's pip and TLS clients trust (PIP_CERT, SSL_CERT_FILE, ... or OpenSSL's default)."""
    paths = ssl.get_default_verify_paths()
    candidates = [os.environ.get(name) for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    candidates += [paths.cafile, paths.openssl_cafile]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise StandinUnavailable("no CA bundle found on this host for the stand-ins' trust store")


def _copy_host_node(context: Path, *, major: str) -> None:
    found = shutil.which("node")
    if found is None:
        raise StandinUnavailable(f"the node:{major} stand-in copies the host's Node.js {major}, and none is installed")
    node = Path(found).resolve()
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=True, timeout=30).stdout
    if not re.fullmatch(rf"v{major}\.\d+\.\d+", version.strip()):
        raise StandinUnavailable(f"the node:{major} stand-in copies the host's Node.js, which is {version.strip()}")
    shutil.copy(node, context / "node")
    modules = node.parent.parent / "lib" / "node_modules"
    for package in ("npm", "corepack"):
        if (modules / package).is_dir():
            shutil.copytree(modules / package, context / "node_modules" / package, symlinks=True)


def _build(client: docker.DockerClient, context: Path, dockerfile: str, tag: str, buildargs: dict[str, str]) -> None:
    try:
        client.images.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs=buildargs,
            labels={LABEL: f"offline stand-in built by tests/compose from {dockerfile}"},
            rm=True,
            forcerm=True,
            pull=False,
        )
    except BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-1500:]
        raise RuntimeError(f"building the stand-in {tag} failed: {exc.msg}\n{tail}") from None
