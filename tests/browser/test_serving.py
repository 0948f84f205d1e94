"""How the gateway serves the built dashboard at /dashboard/: caching, client-route fallback, the
Content-Security-Policy, path safety, and a clear 503 when the dashboard was never built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.dashboard import CONTENT_SECURITY_POLICY
from gateway.settings import GatewaySettings

# The gateway app here runs over the suite's real PostgreSQL and Redis.
pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script type="module" src="/dashboard/assets/app-1a2b.js">')
    (root / "assets" / "app-1a2b.js").write_text("console.log('dashboard')")
    (tmp_path / "secret.txt").write_text("outside the dashboard")
    return root


async def gateway_for(aiohttp_client: ClientFactory, database_url: str, redis_url: str, dashboard_dir: Path) -> Client:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "warning",
        "DASHBOARD_DIR": str(dashboard_dir),
    }
    return await aiohttp_client(create_app(GatewaySettings.from_env(env)))


async def test_serves_index_assets_and_client_routes(
    aiohttp_client: ClientFactory, database_url: str, redis_url: str, dist: Path
) -> None:
    client = await gateway_for(aiohttp_client, database_url, redis_url, dist)
    redirect = await client.get("/dashboard", allow_redirects=False)
    assert redirect.status == 308
    assert redirect.headers["Location"] == "/dashboard/"

    for path in ("/dashboard/", "/dashboard/backends/b1"):
        index = await client.get(path)
        assert index.status == 200, path
        assert index.content_type == "text/html"
        assert index.headers["Cache-Control"] == "no-cache"
        assert index.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert index.headers["X-Content-Type-Options"] == "nosniff"
        assert "app-1a2b.js" in await index.text()

    asset = await client.get("/dashboard/assets/app-1a2b.js")
    assert asset.status == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.content_type

    missing = await client.get("/dashboard/assets/gone-9z.js")
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"
    escaped = await client.get("/dashboard/%2e%2e/secret.txt")
    assert escaped.status in {400, 404}
    assert "outside the dashboard" not in await escaped.text()


async def test_unbuilt_dashboard_says_how_to_build_it(
    aiohttp_client: ClientFactory, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    client = await gateway_for(aiohttp_client, database_url, redis_url, tmp_path / "not-built")
    response = await client.get("/dashboard/")
    assert response.status == 503
    assert response.content_type == "application/problem+json"
    assert "make frontend" in (await response.json())["detail"]
    assert (await client.get("/health")).status == 200


async def test_an_overlong_path_segment_is_a_404_not_a_500(
    aiohttp_client: ClientFactory, database_url: str, redis_url: str, dist: Path
) -> None:
    """schemathesis found it: a 300-byte segment made the file-system lookup raise ENAMETOOLONG."""
    client = await gateway_for(aiohttp_client, database_url, redis_url, dist)
    for path in ("/dashboard/" + "a" * 300 + ".js", "/dashboard/" + "é" * 200):
        response = await client.get(path)
        assert response.status in (200, 404), path  # a client route falls back to index.html
        assert response.status != 500
