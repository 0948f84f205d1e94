"""The balancer app in-process against controllable backends on real sockets; breaker time is injected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from balancer.app import create_app
from balancer.forwarding import _Tried
from balancer.keys import BALANCER, HEALTH
from balancer.settings import BalancerSettings
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from tests.balancer.conftest import backend_id, counts, settings_for, state, url_of
from tests.support.clock import ManualClock
from tests.support.polling import wait_until

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]
ADMIN = {IDENTITY_HEADER: sign_identity(Identity(1, "admin", "enterprise", "jwt"), DEV_INTERNAL_SECRET)}
USER = {IDENTITY_HEADER: sign_identity(Identity(2, "user", "free", "jwt"), DEV_INTERNAL_SECRET)}


async def balancer_client(
    aiohttp_client: ClientFactory, settings: BalancerSettings, clock: ManualClock | None = None
) -> Client:
    app = create_app(settings, clock=clock or time.monotonic)
    return await aiohttp_client(app)


def breaker_state(client: Client, server: TestServer) -> str:
    backend = client.app[BALANCER].pool.get(backend_id(server))
    assert backend is not None
    return backend.breaker.state


async def get_ok(client: Client, times: int) -> None:
    for _ in range(times):
        async with client.get("/api/v1/things") as response:
            assert response.status == 200


async def test_a_500ing_backend_is_ejected_and_readmitted_by_exactly_one_trial(
    aiohttp_client: ClientFactory, backends: list[TestServer], clock: ManualClock
) -> None:
    sick = backends[0]
    settings = settings_for([url_of(s) for s in backends], BALANCER_BREAKER_FAILURES="3")
    client = await balancer_client(aiohttp_client, settings, clock)
    state(sick)["status"] = 500
    for _ in range(60):
        async with client.get("/api/v1/things") as response:
            await response.read()
    assert breaker_state(client, sick) == "open"
    assert state(sick)["requests"] == 3, "ejected after exactly fail_max consecutive 500s"

    state(sick)["status"] = 200
    state(sick)["delay"] = 0.3  # the trial is slow, so concurrent requests could pile onto it if allowed
    clock.advance(5.0)
    await asyncio.gather(*(get_ok(client, 1) for _ in range(10)))
    assert state(sick)["requests"] == 4, "exactly one half-open trial"
    assert breaker_state(client, sick) == "closed"

    state(sick)["delay"] = 0.0
    await get_ok(client, 30)
    assert int(str(state(sick)["requests"])) >= 8, "back in rotation"


async def test_gets_are_retried_elsewhere_on_503_but_posts_are_not(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    settings = settings_for([url_of(s) for s in backends], BALANCER_ALGORITHM="round_robin")
    client = await balancer_client(aiohttp_client, settings)
    state(backends[0])["status"] = 503
    await get_ok(client, 6)
    assert client.app[BALANCER].metrics.retries._value.get() >= 2

    async with client.post("/api/v1/things", json={"a": 1}) as response:
        assert response.status in (200, 503)
    posts = sum(int(str(state(server)["posts"])) for server in backends)
    assert posts == 1


@pytest.fixture
async def dropper() -> AsyncIterator[tuple[str, list[int]]]:
    """A backend that reads a request and closes the connection without answering."""
    seen = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /ready "):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            seen[0] += 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    server.close()
    await server.wait_closed()


async def test_a_reset_is_retried_for_get_and_never_replayed_for_post(
    aiohttp_client: ClientFactory, backends: list[TestServer], dropper: tuple[str, list[int]]
) -> None:
    url, seen = dropper
    settings = settings_for([url, url_of(backends[1])], BALANCER_ALGORITHM="round_robin")
    client = await balancer_client(aiohttp_client, settings)
    async with client.get("/api/v1/things") as response:
        assert response.status == 200
    assert seen[0] == 1
    for _ in range(2):
        async with client.post("/api/v1/things", data=b"payload") as response:
            if response.status != 200:
                assert response.status == 502
                assert response.content_type == "application/problem+json"
    assert seen[0] == 2, "the POST reached the dropping backend once"
    assert state(backends[1])["posts"] == 1, "and was not replayed on the healthy one"


async def test_a_slow_backend_yields_504(aiohttp_client: ClientFactory, backends: list[TestServer]) -> None:
    state(backends[0])["delay"] = 2.0
    client = await balancer_client(aiohttp_client, settings_for([url_of(backends[0])], BALANCER_TIMEOUT="0.3"))
    started = time.monotonic()
    async with client.get("/api/v1/slow") as response:
        body = await response.json(content_type=None)
    assert response.status == 504
    assert response.content_type == "application/problem+json"
    assert body["status"] == 504
    assert body["request_id"]
    assert time.monotonic() - started < 1.5


async def test_hop_by_hop_headers_do_not_pass_and_forwarding_headers_do(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    client = await balancer_client(aiohttp_client, settings_for([url_of(backends[0])]))
    sent = {
        "Connection": "keep-alive, X-Private",
        "X-Private": "secret",
        "TE": "trailers",
        "Proxy-Authorization": "Basic abc",
        "X-Request-ID": "req-123",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "X-Kept": "yes",
    }
    async with client.get(URL("/api/v1/echo/a%2Fb?x=1", encoded=True), headers=sent) as response:
        echo = await response.json()
        assert "X-Backend-Secret" not in response.headers
        assert "Keep-Alive" not in response.headers
        assert response.headers["X-Served-By"] == backend_id(backends[0])
        assert response.headers["X-Request-ID"] == "req-123"
    seen = {name.lower(): value for name, value in echo["headers"].items()}
    for name in ("x-private", "te", "proxy-authorization", "keep-alive"):
        assert name not in seen
    assert seen["x-kept"] == "yes"
    assert seen["x-request-id"] == "req-123"
    assert seen["traceparent"] == sent["traceparent"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert echo["path"] == "/api/v1/echo/a%2Fb?x=1"


async def test_no_healthy_backend_is_a_503_with_retry_after(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    client = await balancer_client(aiohttp_client, settings_for([url_of(s) for s in backends[:2]]))
    for server in backends[:2]:
        state(server)["ready_status"] = 503
    for backend in client.app[BALANCER].pool.backends:
        await client.app[HEALTH].check_once(backend)
    async with client.get("/api/v1/things") as response:
        assert response.status == 503
        assert response.headers["Retry-After"].isdigit()
        assert (await response.json(content_type=None))["type"].endswith("no-backend")
    async with client.get("/ready") as response:
        assert response.status == 503


async def test_drain_waits_for_in_flight_requests_and_enable_restores(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    server = backends[0]
    client = await balancer_client(aiohttp_client, settings_for([url_of(server)]))
    path = f"/lb/backends/{backend_id(server)}"
    async with client.post(path + "/drain") as response:
        assert response.status == 401
    async with client.post(path + "/drain", headers=USER) as response:
        assert response.status == 403

    state(server)["delay"] = 0.5
    in_flight = asyncio.ensure_future(get_ok(client, 1))
    backend = client.app[BALANCER].pool.backends[0]

    async def busy() -> bool:
        return backend.in_flight == 1

    await wait_until(busy, within=5)
    async with client.post(path + "/drain", headers=ADMIN) as response:
        body = await response.json()
    assert response.status == 200
    assert body["drained"] is True
    assert in_flight.done(), "the drain answered only after the in-flight request finished"
    await in_flight
    async with client.get("/api/v1/things") as response:
        assert response.status == 503
    async with client.get("/lb/status") as response:
        status = await response.json()
    assert status["backends"][0]["draining"] is True

    async with client.post(path + "/enable", headers=ADMIN) as response:
        assert response.status == 200
    state(server)["delay"] = 0.0
    await get_ok(client, 1)


async def test_excess_load_is_shed_fast(aiohttp_client: ClientFactory, backends: list[TestServer]) -> None:
    state(backends[0])["delay"] = 0.5
    settings = settings_for([url_of(backends[0])], BALANCER_MAX_IN_FLIGHT="1")
    client = await balancer_client(aiohttp_client, settings)
    first = asyncio.ensure_future(get_ok(client, 1))

    async def busy() -> bool:
        return client.app[BALANCER].in_flight == 1

    await wait_until(busy, within=5)
    async with client.get("/api/v1/things") as response:
        assert response.status == 503
        assert (await response.json(content_type=None))["type"].endswith("overloaded")
    await first
    async with client.get("/metrics") as response:
        assert "lb_shed_requests_total 1.0" in await response.text()


async def test_breaker_reset_needs_admin_and_closes_the_breaker(
    aiohttp_client: ClientFactory, backends: list[TestServer], clock: ManualClock
) -> None:
    client = await balancer_client(aiohttp_client, settings_for([url_of(backends[0])]), clock)
    backend = client.app[BALANCER].pool.backends[0]
    backend.breaker.force_open()
    path = f"/lb/breakers/{backend.breaker.name}/reset"
    async with client.post(path) as response:
        assert response.status == 401
    async with client.post(path, headers=ADMIN) as response:
        assert response.status == 200
        assert (await response.json())["state"] == "closed"
    async with client.get("/metrics") as response:
        text = await response.text()
    assert f'lb_backend_up{{backend="{backend.id}"}} 1.0' in text
    assert "circuit_breaker_state" in text


async def test_sequential_requests_split_evenly(aiohttp_client: ClientFactory, backends: list[TestServer]) -> None:
    client = await balancer_client(aiohttp_client, settings_for([url_of(s) for s in backends]))
    await get_ok(client, 300)
    assert all(90 <= count <= 110 for count in counts(backends).values()), counts(backends)


async def test_requests_that_never_reached_a_dead_backend_are_rerouted_without_spending_the_budget(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    """A backend that just died refuses connections while the balancer still thinks it is up; every request
    that picks it must succeed elsewhere, even when more are re-routed at once than the budget allows replays."""
    victim, survivor = backends[0], backends[1]
    settings = settings_for(
        [url_of(victim), url_of(survivor)], BALANCER_ALGORITHM="round_robin", BALANCER_BREAKER_FAILURES="50"
    )
    client = await balancer_client(aiohttp_client, settings)
    balancer = client.app[BALANCER]
    await wait_until(lambda: _true(all(backend.health.up for backend in balancer.pool.backends)), within=10)
    await victim.close()  # like kill -9: connections refused from now on, health checks have not noticed yet
    state(survivor)["delay"] = 0.2  # re-routed requests stay in flight together

    async def fetch() -> int:
        async with client.get("/api/v1/things") as response:
            await response.read()
            return response.status

    statuses = await asyncio.gather(*(fetch() for _ in range(16)))
    assert statuses == [200] * 16
    assert balancer.budget.retries == 0, "every token taken was given back"


async def test_an_exhausted_budget_still_reroutes_requests_that_were_never_sent(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    """The budget bounds replays (load a sick fleet may already have worked on); a request refused at connect
    reached no one, so re-routing it costs nothing and must not turn into a 502 when the budget is spent."""
    client = await balancer_client(aiohttp_client, settings_for([url_of(s) for s in backends]))
    balancer = client.app[BALANCER]
    await wait_until(lambda: _true(all(backend.health.up for backend in balancer.pool.backends)), within=10)
    while balancer.budget.try_acquire():  # spend the whole budget, as concurrent replays would
        pass
    first = balancer.pool.backends[0].id
    assert not balancer._may_retry(_Tried({first}), replay=True)
    assert balancer._may_retry(_Tried({first}), replay=False)


async def _true(value: bool) -> bool:
    return value


async def test_every_breaker_open_at_once_is_panic_routed_not_a_total_outage(
    aiohttp_client: ClientFactory, backends: list[TestServer]
) -> None:
    """A shared dependency down makes every replica answer 503 to writes, which opens their breakers. Once most
    are open the balancer must keep routing across the health-passing backends (they still serve cached reads)."""
    settings = settings_for([url_of(s) for s in backends], BALANCER_BREAKER_FAILURES="3")
    client = await balancer_client(aiohttp_client, settings, ManualClock())
    balancer = client.app[BALANCER]
    await wait_until(lambda: _true(all(backend.health.up for backend in balancer.pool.backends)), within=10)
    for server in backends:
        state(server)["status"] = 503
    for _ in range(20):
        async with client.post("/api/v1/things", data=b"x") as response:
            await response.read()
    ejected = [server for server in backends if breaker_state(client, server) == "open"]
    # Once most of the fleet is ejected the balancer panics instead of piling everything on the last one.
    assert len(ejected) == 2
    assert balancer.metrics.panic._value.get() >= 1

    for server in backends:
        state(server)["status"] = 200  # e.g. cached reads still work while writes would fail
    served_by = set()
    for _ in range(12):
        async with client.get("/api/v1/things") as response:
            assert response.status == 200, await response.text()
            served_by.add(response.headers["X-Served-By"])
    assert {backend_id(server) for server in ejected} <= served_by, "panic routing spreads over every healthy one"
    assert all(breaker_state(client, server) == "open" for server in ejected), "panic calls do not close breakers"
