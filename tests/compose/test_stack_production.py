"""docker-compose.yml in production mode: real secrets, and no development logins, ever.

    ENVIRONMENT=production, seed left on  ─► the seed refuses, naming ENVIRONMENT; `up --wait` fails at the seed,
                                             the gateway never starts and no development account exists
    ENVIRONMENT=production, --scale seed=0 ─► up and healthy; the development logins are refused (401)

Before the seed refused, the first case created the development accounts and the gateway then crash-looped on them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import aiohttp
import docker
import pytest

from database.accounts import DEV_ACCOUNTS
from tests.compose.gateway import get_json
from tests.compose.project import GATEWAY, Project, Stacks, run_in

pytestmark = [pytest.mark.compose, pytest.mark.e2e, pytest.mark.timeout(900)]
PRODUCTION = Project(
    "scalable-api-test-prod",
    env={
        "ENVIRONMENT": "production",
        "INTERNAL_SECRET": secrets.token_urlsafe(48),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
    },
)


def development_accounts(engine: docker.DockerClient) -> int:
    """How many development accounts the production database holds."""
    (postgres,) = PRODUCTION.containers(engine, "postgres")
    emails = ", ".join(f"'{account.email}'" for account in DEV_ACCOUNTS)
    query = f"SELECT count(*) FROM users WHERE lower(email) IN ({emails})"  # noqa: S608 - constants of ours
    return int(run_in(postgres, "psql", "-U", "app", "-d", "scalable_api", "-tAc", query))


def test_production_with_the_seed_left_on_stops_at_the_seed_naming_the_variable(
    stacks: Stacks, engine: docker.DockerClient
) -> None:
    stacks.switch_to(PRODUCTION)
    result = stacks.run("production, seed left on: up --wait (refused)", PRODUCTION, "up", "--wait", check=False)
    assert result.returncode != 0, "up --wait succeeded although the seed must refuse"
    (seed,) = PRODUCTION.containers(engine, "seed")
    assert seed.attrs["State"]["ExitCode"] == 1
    output = PRODUCTION.logs("seed").strip()
    assert len(output.splitlines()) == 1, f"one clear line, not a traceback: {output}"
    assert "ENVIRONMENT=production" in output
    assert "--scale seed=0" in output
    assert all(gateway.status != "running" for gateway in PRODUCTION.containers(engine, "gateway"))
    assert development_accounts(engine) == 0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as client:
        yield client


async def test_production_without_the_seed_comes_up_and_refuses_the_development_logins(
    stacks: Stacks, engine: docker.DockerClient, http: aiohttp.ClientSession
) -> None:
    stacks.switch_to(PRODUCTION)
    stacks.run("production, --scale seed=0: up --wait", PRODUCTION, "up", "--wait", "--scale", "seed=0")
    for service in ("apiserver", "balancer", "gateway"):
        (container,) = PRODUCTION.containers(engine, service)
        assert container.attrs["State"]["Health"]["Status"] == "healthy", service
        environment = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert environment["ENVIRONMENT"] == "production"
    assert (await get_json(http, "/api/v1/status"))["instanceId"].startswith("apiserver-")
    for account in DEV_ACCOUNTS:
        async with http.post(GATEWAY + "/api/v1/auth/login", json=account.login) as response:
            assert response.status == 401, f"{account.email}: {response.status} {await response.text()}"
    assert development_accounts(engine) == 0
