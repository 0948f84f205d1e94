"""HEAD works on every GET route, through every hop: GET's status and headers, no body; conditional HEAD is 304."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from database.seed import seed
from tests.resilience.report import Sample, record
from tests.support.polling import wait_until
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SAME_HEADERS = ("Content-Length", "ETag", "Content-Type", "Cache-Control")
GATEWAY_HEADERS = ("X-Ratelimit-Remaining", "X-Request-Id")


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Stack]:
    await seed(database_url, resources=5)
    with running_stack(tmp_path, database_url, redis_url, apiservers=1) as running:

        async def routable() -> bool:
            status, _ = _fields((await _raw(running.gateway, "GET", "/api/v1/status"))[0])
            return status == 200

        await wait_until(routable, within=15)
        yield running


async def _raw(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """One request on a fresh socket, read to the end: the exact head and whatever bytes follow it."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    raw = await reader.read(-1)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.decode(), body


def _fields(head: str) -> tuple[int, dict[str, str]]:
    status_line, *lines = head.split("\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields[name.strip().title()] = value.strip()
    return int(status_line.split()[1]), fields


async def test_head_on_every_hop_mirrors_get_without_a_body(stack: Stack) -> None:
    hops = {"gateway": stack.gateway, "balancer": stack.balancer.url, "apiserver": stack.apiservers[0].url}
    samples: list[Sample] = []
    mismatches: list[tuple[str, str, str]] = []
    for hop, url in hops.items():
        for path in ("/api/v1/resources/1", "/api/v1/resources?limit=2", "/api/v1/status"):
            get_head, get_body = await _raw(url, "GET", path)
            began = time.monotonic()
            head_head, head_body = await _raw(url, "HEAD", path)
            get_status, get_fields = _fields(get_head)
            head_status, head_fields = _fields(head_head)
            samples.append(Sample(f"HEAD {hop} {path}", head_status, time.monotonic() - began, began))
            if get_status != 200 or head_status != get_status:
                mismatches.append((hop, path, f"GET {get_status}, HEAD {head_status}"))
            if head_body or not get_body:
                mismatches.append((hop, path, f"HEAD body {len(head_body)} bytes, GET body {len(get_body)} bytes"))
            if path == "/api/v1/resources/1" and "Etag" not in head_fields:
                mismatches.append((hop, path, "no ETag"))
            for name in SAME_HEADERS:
                if name == "Content-Length" and path == "/api/v1/status":
                    continue  # the uptime in the body changes between the two requests
                if head_fields.get(name) != get_fields.get(name):
                    mismatches.append((hop, path, f"{name}: {head_fields.get(name)} vs {get_fields.get(name)}"))
            if hop == "gateway":
                mismatches += [(hop, path, f"no {name}") for name in GATEWAY_HEADERS if name not in head_fields]

    head, _ = await _raw(stack.gateway, "GET", "/api/v1/resources/1")
    etag = _fields(head)[1]["Etag"]
    began = time.monotonic()
    conditional, body = await _raw(stack.gateway, "HEAD", "/api/v1/resources/1", {"If-None-Match": etag})
    samples.append(Sample("conditional HEAD", _fields(conditional)[0], time.monotonic() - began, began))
    if samples[-1].status != 304 or body:
        mismatches.append(
            ("gateway", "/api/v1/resources/1", f"conditional HEAD {samples[-1].status}, {len(body)} bytes")
        )
    record(
        "resilience",
        "head",
        title="HEAD on every GET route at the gateway, balancer and apiserver",
        guarantee="GET's status and headers (Content-Length, ETag, cache, rate-limit), no body; If-None-Match → 304",
        samples=samples,
        failed=len(mismatches),
        extra={"mismatches": mismatches},
    )
    assert mismatches == []
