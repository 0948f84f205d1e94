"""docker-compose.yml on a real engine: it builds, comes up healthy, serves the README walkthrough, scales.

Every test runs on one shared development stack (``stack``); the scale test leaves it at three apiservers, which the
chaos scenarios (test_stack_chaos.py, run next) use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import docker
import pytest

from database.accounts import DEV_ADMIN
from tests.compose.gateway import bearer, get_json, wait_for_instances
from tests.compose.project import APP_IMAGE, GATEWAY, Project, Stacks

pytestmark = [pytest.mark.compose, pytest.mark.e2e, pytest.mark.timeout(900)]
SERVICES = ("postgres", "redis", "apiserver", "balancer", "gateway")
ONE_SHOT = ("migrate", "seed")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client:
        yield client


def test_up_build_wait_brings_every_service_up_healthy(stack: Project, engine: docker.DockerClient) -> None:
    """`docker compose up --build --wait` exited 0 (the fixture), with the one-shot services completed."""
    for service in SERVICES:
        (container,) = stack.containers(engine, service)
        assert container.attrs["State"]["Health"]["Status"] == "healthy", service
    for service in ONE_SHOT:
        (container,) = stack.containers(engine, service)
        assert (container.status, container.attrs["State"]["ExitCode"]) == ("exited", 0), stack.logs(service)
    image = stack.containers(engine, "gateway")[0].image
    assert image is not None
    assert APP_IMAGE in image.tags


async def test_the_readme_walkthrough_through_8080(stack: Project, http: aiohttp.ClientSession) -> None:
    admin = await bearer(http, DEV_ADMIN.login)
    me = await get_json(http, "/api/v1/me", admin)
    assert me["email"] == DEV_ADMIN.email
    articles = await get_json(http, "/api/v1/resources?type=article&limit=5")
    assert len(articles["items"]) == 5
    assert {item["type"] for item in articles["items"]} == {"article"}
    async with http.get(GATEWAY + "/api/v1/resources/1") as response:
        assert response.status == 200
        for header in ("ETag", "X-Cache", "X-Served-By", "X-RateLimit-Limit", "RateLimit"):
            assert header in response.headers, header
    body = {"name": "My thing", "type": "note", "data": {"k": 1}}
    async with http.post(GATEWAY + "/api/v1/resources", json=body, headers=admin) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    assert (await get_json(http, f"/api/v1/resources/{created['id']}"))["name"] == "My thing"
    assert (await get_json(http, "/api/v1/status"))["instanceId"].startswith("apiserver-")
    async with http.post(GATEWAY + "/api/v1/keys", json={"name": "ci"}, headers=admin) as response:
        assert response.status == 201, await response.text()
        key = (await response.json())["key"]
    assert (await get_json(http, "/api/v1/me", {"X-API-Key": key}))["email"] == DEV_ADMIN.email
    await get_json(http, "/api/v1/admin/dashboard", admin)
    await get_json(http, "/api/v1/admin/circuit-breakers", admin)
    async with http.post(GATEWAY + "/api/v1/admin/cache/clear", headers=admin) as response:
        assert response.status == 200, await response.text()
    assert "/api/v1/resources" in (await get_json(http, "/openapi.json"))["paths"]
    async with http.get(GATEWAY + "/dashboard/") as response:
        assert response.status == 200, "the image serves the dashboard it built"
        assert response.content_type == "text/html"


async def test_scale_apiserver_to_3_reaches_3_distinct_instances(
    stack: Project, stacks: Stacks, engine: docker.DockerClient, http: aiohttp.ClientSession
) -> None:
    """The balancer finds new replicas through DNS (dns+http://apiserver:3001): no restart, no configuration."""
    stacks.run(f"{stack.name}: up --wait --scale apiserver=3", stack, "up", "--wait", "--scale", "apiserver=3")
    containers = stack.containers(engine, "apiserver")
    assert len(containers) == 3
    admin = await bearer(http, DEV_ADMIN.login)
    seen, waited = await wait_for_instances(http, admin, 3)
    assert waited is not None, f"only {sorted(seen)} answered through the gateway"
    stacks.timings["3 apiservers answering through the gateway"] = waited
    hostnames = {container.attrs["Config"]["Hostname"] for container in containers}
    assert {instance.split("-")[1] for instance in seen} == hostnames
