"""DNS discovery: ``dns+http://name:port`` backends follow an injected resolver, against backends on real sockets.

The fake resolver answers the way DNS does for a headless Service: several addresses, one port. The backends
therefore listen on the same port on different loopback addresses (127.0.0.2, 127.0.0.3, ...). Health checks
run every hour here, so each test drives them by hand (``check_once``) and decides exactly when a backend has
passed; discovery rounds are driven with ``refresh`` except in the test proving the loop re-resolves by itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from balancer.app import create_app
from balancer.backend import Backend
from balancer.discovery import Discovery, SystemResolver
from balancer.keys import BALANCER, DISCOVERY, HEALTH
from balancer.settings import BalancerSettings
from shared.settings import SettingsError
from stack.services.ports import free_port
from tests.balancer.backend_app import create_backend
from tests.balancer.conftest import settings_for, state
from tests.support.polling import wait_until

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
NAME = "apiserver-headless"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


class FakeResolver:
    """Answers from ``answers``; raises ``error`` instead when it is set."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.error: OSError | None = None
        self.calls = 0

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.answers.get(host, []))


@pytest.fixture
async def same_port_backends() -> AsyncIterator[dict[str, TestServer]]:
    """One backend per address in ``ADDRESSES``, all on one port (what a headless Service looks like)."""
    for _ in range(20):
        port = free_port(ADDRESSES[0])
        servers = {address: TestServer(create_backend(address), host=address, port=port) for address in ADDRESSES}
        started: list[TestServer] = []
        try:
            for server in servers.values():
                await server.start_server()
                started.append(server)
        except OSError:  # the port was taken on another address meanwhile: try another
            for server in started:
                await server.close()
            continue
        yield servers
        for server in servers.values():
            await server.close()
        return
    pytest.fail("no port free on every loopback address")


def port_of(servers: dict[str, TestServer]) -> int:
    port = next(iter(servers.values())).port
    assert port is not None
    return port


async def discovery_client(
    aiohttp_client: ClientFactory, servers: dict[str, TestServer], resolver: FakeResolver, **env: str
) -> Client:
    settings = settings_for([f"dns+http://{NAME}:{port_of(servers)}"], BALANCER_DNS_INTERVAL="3600", **env)
    return await aiohttp_client(create_app(settings, resolver=resolver))


def discovery(client: Client) -> Discovery:
    return client.app[DISCOVERY]


def pooled(client: Client, address: str, servers: dict[str, TestServer]) -> Backend | None:
    return client.app[BALANCER].pool.get(f"{address}:{port_of(servers)}")


async def wait_first_check(client: Client, address: str, servers: dict[str, TestServer]) -> Backend:
    """The backend for ``address`` once it is in the pool and its health loop's first check has run."""

    async def checked() -> bool:
        backend = pooled(client, address, servers)
        return backend is not None and backend.health.checked

    await wait_until(checked, within=5)
    backend = pooled(client, address, servers)
    assert backend is not None
    return backend


async def admit(client: Client, address: str, servers: dict[str, TestServer]) -> Backend:
    backend = await wait_first_check(client, address, servers)
    while not backend.health.up:
        await client.app[HEALTH].check_once(backend)
    return backend


async def served_by(client: Client, times: int) -> list[str]:
    names = []
    for _ in range(times):
        async with client.get("/api/v1/things") as response:
            assert response.status == 200, await response.text()
            names.append(str((await response.json())["instance"]))
    return names


async def lb_status(client: Client) -> dict[str, Any]:
    async with client.get("/lb/status") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


def listed(status: dict[str, Any], address: str, servers: dict[str, TestServer]) -> dict[str, Any] | None:
    wanted = f"{address}:{port_of(servers)}"
    return next((item for item in status["backends"] if item["id"] == wanted), None)


async def test_an_added_address_gets_traffic_only_after_passing_health_checks(
    aiohttp_client: ClientFactory, same_port_backends: dict[str, TestServer]
) -> None:
    servers = same_port_backends
    first, second = ADDRESSES[0], ADDRESSES[1]
    resolver = FakeResolver()
    resolver.answers[NAME] = [first]
    # No start-up grace: a failing newcomer would otherwise be re-checked every 0.1 s by its own health loop,
    # racing the checks this test makes by hand.
    client = await discovery_client(aiohttp_client, servers, resolver, BALANCER_STARTUP_GRACE="0")

    backend = await wait_first_check(client, first, servers)
    assert not backend.health.up, "one passing check is not enough (rise is 2)"
    async with client.get("/api/v1/things") as response:
        assert response.status == 503
    assert state(servers[first])["requests"] == 0
    entry = listed(await lb_status(client), first, servers)
    assert entry is not None
    assert (entry["healthy"], entry["in_rotation"]) == (False, False)

    await admit(client, first, servers)
    assert set(await served_by(client, 5)) == {first}

    state(servers[second])["ready_status"] = 503  # a new pod that is not ready yet
    resolver.answers[NAME] = [first, second]
    await discovery(client).refresh()
    newcomer = await wait_first_check(client, second, servers)
    for _ in range(3):
        await client.app[HEALTH].check_once(newcomer)
    assert set(await served_by(client, 30)) == {first}
    assert state(servers[second])["requests"] == 0, "a failing newcomer must get no traffic"

    state(servers[second])["ready_status"] = 200
    await client.app[HEALTH].check_once(newcomer)
    assert (newcomer.health.up, newcomer.health.passes) == (False, 1), "rise is 2"
    await client.app[HEALTH].check_once(newcomer)
    assert (newcomer.health.up, newcomer.health.passes) == (True, 2)
    assert set(await served_by(client, 30)) == {first, second}


async def test_a_removed_address_drains_its_in_flight_request_then_leaves(
    aiohttp_client: ClientFactory, same_port_backends: dict[str, TestServer]
) -> None:
    servers = same_port_backends
    keep, leave = ADDRESSES[0], ADDRESSES[1]
    resolver = FakeResolver()
    resolver.answers[NAME] = [keep, leave]
    client = await discovery_client(aiohttp_client, servers, resolver)
    await admit(client, keep, servers)
    leaving = await admit(client, leave, servers)

    state(servers[leave])["delay"] = 1.0
    in_flight = await request_in_flight_at(client, leaving)
    resolver.answers[NAME] = [keep]
    await discovery(client).refresh()

    entry = listed(await lb_status(client), leave, servers)
    assert entry is not None, "a draining backend stays listed until its requests finish"
    assert (entry["draining"], entry["removing"], entry["in_flight"]) == (True, True, 1)
    before = state(servers[leave])["requests"]
    assert set(await served_by(client, 30)) == {keep}
    assert state(servers[leave])["requests"] == before, "no new request may reach a removed address"

    status, instance = await in_flight
    assert (status, instance) == (200, leave), "the in-flight request completes"

    async def gone() -> bool:
        return listed(await lb_status(client), leave, servers) is None

    await wait_until(gone, within=5)
    async with client.get("/metrics") as response:
        assert f'backend="{leave}:' not in await response.text()


async def request_in_flight_at(client: Client, backend: Backend) -> asyncio.Task[tuple[int, str]]:
    """Send requests until one is in flight at ``backend`` (the picker decides where each goes)."""

    async def fetch() -> tuple[int, str]:
        async with client.get("/slow") as response:
            return response.status, str((await response.json())["instance"])

    for _ in range(50):
        task = asyncio.create_task(fetch())

        async def settled(task: asyncio.Task[tuple[int, str]] = task) -> bool:
            return task.done() or backend.in_flight > 0

        await wait_until(settled, within=5)
        if backend.in_flight > 0:
            return task
        await task
    pytest.fail("no request reached the backend")


async def test_resolver_failure_keeps_the_last_known_set(
    aiohttp_client: ClientFactory, same_port_backends: dict[str, TestServer]
) -> None:
    servers = same_port_backends
    first, second = ADDRESSES[0], ADDRESSES[1]
    resolver = FakeResolver()
    resolver.answers[NAME] = [first]
    client = await discovery_client(aiohttp_client, servers, resolver)
    await admit(client, first, servers)

    resolver.error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    await discovery(client).refresh()
    resolver.error = None
    resolver.answers[NAME] = []  # an empty answer is no better than none
    await discovery(client).refresh()

    assert set(await served_by(client, 5)) == {first}
    target = (await lb_status(client))["discovery"]["targets"][0]
    assert target["addresses"] == [first]
    assert target["errors"] == 2
    assert "resolved to no address" in target["last_error"]
    async with client.get("/metrics") as response:
        metrics = await response.text()
    name = f"dns+http://{NAME}:{port_of(servers)}"
    assert f'lb_dns_resolutions_total{{result="error",target="{name}"}} 2.0' in metrics

    resolver.answers[NAME] = [second]  # DNS is back with a different set: followed at once
    await discovery(client).refresh()
    await admit(client, second, servers)

    async def only_second() -> bool:
        return pooled(client, first, servers) is None

    await wait_until(only_second, within=5)
    assert set(await served_by(client, 5)) == {second}
    assert (await lb_status(client))["discovery"]["targets"][0]["last_error"] is None


async def test_the_loop_re_resolves_on_its_own_and_leaves_static_backends_alone(
    aiohttp_client: ClientFactory, same_port_backends: dict[str, TestServer]
) -> None:
    servers = same_port_backends
    static, found = ADDRESSES[0], ADDRESSES[2]
    port = port_of(servers)
    resolver = FakeResolver()
    resolver.answers[NAME] = [static]  # also listed statically: it stays static, and healthy from the start
    settings = settings_for([f"http://{static}:{port}", f"dns+http://{NAME}:{port}"], BALANCER_DNS_INTERVAL="0.02")
    client = await aiohttp_client(create_app(settings, resolver=resolver))

    resolver.answers[NAME] = [found]

    async def discovered() -> bool:
        return pooled(client, found, servers) is not None

    await wait_until(discovered, within=5)
    calls = resolver.calls

    async def resolved_again() -> bool:
        return resolver.calls >= calls + 3

    await wait_until(resolved_again, within=5)
    backend = pooled(client, static, servers)
    assert backend is not None
    assert (backend.health.up, backend.draining) == (True, False)
    assert set(await served_by(client, 5)) == {static}


def test_settings_mix_static_and_dns_entries() -> None:
    settings = BalancerSettings.from_env(
        {"BALANCER_BACKENDS": "http://10.0.0.5:3001;weight=2, dns+http://apiserver-headless:3001;weight=3"}
    )
    assert [backend.id for backend in settings.backends] == ["10.0.0.5:3001"]
    (target,) = settings.dns_targets
    assert (target.host, target.port, target.weight, settings.dns_interval) == ("apiserver-headless", 3001, 3.0, 5.0)
    assert target.spec("fd00::7").id == "[fd00::7]:3001"
    only_dns = BalancerSettings.from_env(
        {"BALANCER_BACKENDS": "dns+https://api.internal", "BALANCER_DNS_INTERVAL": "1.5"}
    )
    assert (only_dns.backends, only_dns.dns_targets[0].port, only_dns.dns_interval) == ((), 443, 1.5)
    for bad in ("dns+ftp://x:1", "dns+http://:3001", "dns+http://x:1/path", "dns+http://x:1,dns+http://x:1"):
        with pytest.raises(SettingsError, match="BALANCER_BACKENDS"):
            BalancerSettings.from_env({"BALANCER_BACKENDS": bad})
    with pytest.raises(SettingsError, match="BALANCER_DNS_INTERVAL"):
        BalancerSettings.from_env({"BALANCER_BACKENDS": "dns+http://x:1", "BALANCER_DNS_INTERVAL": "0"})


async def test_the_system_resolver_resolves_through_the_os() -> None:
    assert "127.0.0.1" in await SystemResolver().resolve("localhost", 3001)
    with pytest.raises(socket.gaierror):
        await SystemResolver().resolve("no-such-host.invalid", 3001)
