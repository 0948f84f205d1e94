"""Every admin route answers 401 to anonymous callers and 403 to users; the OpenAPI document covers every route."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from database.accounts import DEV_ADMIN, DEV_USER
from gateway.openapi import DOCUMENT
from tests.gateway.conftest import bearer, login

# The gateway app here runs over the suite's real PostgreSQL and Redis.
pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


def admin_routes(app: web.Application) -> list[tuple[str, str]]:
    routes = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1/admin/") and route.method != "HEAD":
            routes.append((route.method, path))
    return routes


def concrete(path: str) -> str:
    return (
        path.replace("{name}", "external-api")
        .replace("{identifier}", "user:1")
        .replace("{id}", "2")
        .replace("{backend}", "b1")
        .replace("{action}", "drain")
    )


async def test_every_admin_route_refuses_anonymous_and_users(gateway: Client) -> None:
    routes = admin_routes(gateway.app)
    assert len(routes) >= 10
    user = bearer(await login(gateway, DEV_USER))
    for method, path in routes:
        anonymous = await gateway.request(method, concrete(path), json={})
        assert anonymous.status == 401, (method, path)
        assert anonymous.content_type == "application/problem+json"
        as_user = await gateway.request(method, concrete(path), json={}, headers=user)
        assert as_user.status == 403, (method, path)


async def test_admin_reads_rate_limit_state(gateway: Client) -> None:
    admin = bearer(await login(gateway, DEV_ADMIN))
    for _ in range(3):
        await gateway.get("/api/v1/me", headers=admin)
    state = await (await gateway.get(f"/api/v1/admin/rate-limits/{DEV_ADMIN.email}", headers=admin)).json()
    assert state["key"] == "user:1"
    assert state["tier"] == "enterprise"
    assert state["used"] == 4  # three calls to /me and this one
    by_address = await gateway.get("/api/v1/admin/rate-limits/ip:127.0.0.1", headers=admin)
    assert (await by_address.json())["tier"] == "anonymous"
    assert (await gateway.get("/api/v1/admin/rate-limits/nobody@example.com", headers=admin)).status == 404


async def test_openapi_documents_every_route_and_is_valid(gateway: Client) -> None:
    response = await gateway.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {
        (route.method, route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert served - documented == set(), "routes missing from /openapi.json"
    assert documented - served == set(), "documented routes that do not exist"
    assert document == DOCUMENT


@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_probes_skip_auth_and_limits(gateway: Client, path: str) -> None:
    response = await gateway.get(path, headers={"Authorization": "Bearer garbage"})
    assert response.status == 200
    assert "X-RateLimit-Limit" not in response.headers
