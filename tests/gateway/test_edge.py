"""What the edge forwards and refuses: client address, identity header, path tricks, bodies, shedding."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from database.accounts import DEV_ADMIN, DEV_USER
from shared.identity import IDENTITY_HEADER, verify_identity
from shared.settings import DEV_INTERNAL_SECRET
from tests.gateway.conftest import GatewayFactory, bearer, login

# The gateway app here runs over the suite's real PostgreSQL and Redis.
pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


async def test_forged_forwarded_for_from_untrusted_client_changes_nothing(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(RATE_LIMIT_ANONYMOUS="3")
    remaining = []
    for forged in ("1.2.3.4", "5.6.7.8", "9.9.9.9, 10.0.0.1"):
        response = await client.get("/api/v1/status", headers={"X-Forwarded-For": forged})
        assert response.status == 200
        remaining.append(response.headers["X-RateLimit-Remaining"])
        seen = await response.json()
        assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"  # the peer, never the client's claim
    assert remaining == ["2", "1", "0"]
    limited = await client.get("/api/v1/status", headers={"X-Forwarded-For": "203.0.113.9"})
    assert limited.status == 429
    assert limited.content_type == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Policy"] == '"anonymous";q=3;w=60'


async def test_forwarded_for_counts_from_trusted_proxies(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(RATE_LIMIT_ANONYMOUS="1", TRUSTED_PROXIES="127.0.0.1/32")
    first = await client.get("/api/v1/status", headers={"X-Forwarded-For": "198.51.100.1"})
    second = await client.get("/api/v1/status", headers={"X-Forwarded-For": "198.51.100.2"})
    assert first.status == second.status == 200
    assert (await second.json())["headers"]["X-Forwarded-For"] == "198.51.100.2"
    again = await client.get("/api/v1/status", headers={"X-Forwarded-For": "198.51.100.1"})
    assert again.status == 429


async def test_client_identity_header_is_replaced_by_a_signed_one(gateway: Client) -> None:
    forged = "v1.1.admin.enterprise.jwt.9999999999.deadbeef"
    anonymous = await (await gateway.get("/api/v1/status", headers={IDENTITY_HEADER: forged})).json()
    identity = verify_identity(anonymous["headers"][IDENTITY_HEADER], DEV_INTERNAL_SECRET)
    assert identity.user_id is None
    assert identity.role == "anonymous"

    session = await login(gateway, DEV_USER)
    seen = await (await gateway.get("/api/v1/status", headers={**bearer(session), IDENTITY_HEADER: forged})).json()
    identity = verify_identity(seen["headers"][IDENTITY_HEADER], DEV_INTERNAL_SECRET)
    assert (identity.user_id, identity.role, identity.tier, identity.method) == (2, "user", "free", "jwt")
    assert "Authorization" not in seen["headers"]  # credentials stay at the edge


async def test_proxied_responses_carry_rate_limit_and_request_id(gateway: Client) -> None:
    response = await gateway.get("/api/v1/resources?limit=5", headers={"X-Request-ID": "abc-123"})
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert response.headers["RateLimit"].startswith('"anonymous";r=99;t=')
    seen = await response.json()
    assert seen["path"] == "/api/v1/resources?limit=5"
    assert seen["headers"]["X-Request-ID"] == "abc-123"
    assert seen["headers"]["traceparent"].startswith("00-")


async def test_bodies_are_forwarded(gateway: Client) -> None:
    session = await login(gateway, DEV_ADMIN)
    response = await gateway.post("/api/v1/resources", json={"name": "n", "type": "t"}, headers=bearer(session))
    seen = await response.json()
    assert seen["method"] == "POST"
    assert seen["body"] == '{"name": "n", "type": "t"}'


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/../internal/cache",
        "/api/v1/resources/..%2f..%2finternal%2fcache",
        "/api/v1/resources/%2e%2e/x",
        "/api/v1//resources",
        "/api/v1/resources/1%00",
        "/api/v1/resources/.",
    ],
)
async def test_non_canonical_paths_are_refused(gateway: Client, path: str) -> None:
    head = await raw_request(gateway, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith("HTTP/1.1 400")
    assert "application/problem+json" in head


async def raw_request(client: Client, text: str) -> str:
    """Send bytes exactly as written (HTTP clients normalise paths before sending, attackers do not)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(text.encode())
        await writer.drain()
        return (await reader.read(65536)).decode(errors="replace")
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("path", ["/internal/cache", "/internal/breakers", "/lb/status", "/api/v1/unknown"])
async def test_internal_paths_are_never_proxied(gateway: Client, path: str) -> None:
    session = await login(gateway, DEV_ADMIN)
    for method in ("GET", "POST"):
        response = await gateway.request(method, path, headers=bearer(session))
        assert response.status in (404, 405)
        assert response.content_type == "application/problem+json"


async def test_body_limits_and_types(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(MAX_BODY_BYTES="2048")
    session = await login(client, DEV_ADMIN)
    big = await client.post(
        "/api/v1/resources",
        data=b"{" + b" " * 5000 + b"}",
        headers={**bearer(session), "Content-Type": "application/json"},
    )
    assert big.status == 413
    xml = await client.post("/api/v1/resources", data=b"<a/>", headers={**bearer(session), "Content-Type": "text/xml"})
    assert xml.status == 415


async def test_oversized_headers_are_refused(gateway: Client) -> None:
    response = await gateway.get("/api/v1/status", headers={"X-Big": "a" * 20_000})
    assert response.status in (400, 431)


async def test_overload_is_shed_with_503(make_gateway: GatewayFactory, echo_upstream: object) -> None:
    client = await make_gateway(MAX_IN_FLIGHT="2")
    session = await login(client, DEV_ADMIN)
    headers = {**bearer(session)}
    # Three admin streams held open: the third exceeds the in-flight budget.
    first = await client.get("/api/v1/admin/stream?max_events=100", headers=headers)
    second = await client.get("/api/v1/admin/stream?max_events=100", headers=headers)
    third = await client.get("/api/v1/status", headers=headers)
    assert third.status == 503
    assert third.headers["Retry-After"] == "1"
    first.close()
    second.close()
    health = await client.get("/health")
    assert health.status == 200

    async def recovered() -> bool:
        return (await client.get("/api/v1/status", headers=headers)).status == 200

    for _ in range(100):
        if await recovered():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("in-flight requests were never released")


async def test_upstream_down_is_a_503_problem(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(BALANCER_URL="http://127.0.0.1:9")
    response = await client.get("/api/v1/status")
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert "Retry-After" in response.headers


async def test_metrics_are_served_to_private_networks_only(make_gateway: GatewayFactory) -> None:
    """/metrics shares the public port: a client whose address (behind a trusted proxy) is public gets 404."""
    client = await make_gateway(TRUSTED_PROXIES="127.0.0.1/32")
    assert (await client.get("/metrics")).status == 200  # Prometheus on loopback or a private network
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "10.2.3.4"})).status == 200
    public = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert public.status == 404
    assert public.content_type == "application/problem+json"


async def test_a_forged_forwarded_for_cannot_hide_a_public_client_from_the_metrics_guard(
    make_gateway: GatewayFactory,
) -> None:
    client = await make_gateway(TRUSTED_PROXIES="127.0.0.1/32", METRICS_ALLOW="198.51.100.0/24")
    # The peer (127.0.0.1) is trusted, so the client is the right-most untrusted entry: 203.0.113.9, not the
    # allowed address a client prepended.
    forged = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert forged.status == 404
    allowed = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert allowed.status == 200
