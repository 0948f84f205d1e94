"""The public API's caching and CORS headers through the real stack, and a real shared cache in front of it.

    client ──► nginx proxy_cache (a CDN stand-in: no proxy_cache_valid, no ignored headers, so only the gateway's
               Cache-Control and Vary decide what it keeps) ──► gateway ──► balancer ──► apiserver

The header tests need only the stack; the shared-cache test skips, saying so, without nginx (``make nginx``
installs Debian's as root, like ``make chromium``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from database.accounts import DEV_ADMIN, DEV_USER
from database.seed import seed
from stack.services.ports import free_port, port_answers
from tests.support.metrics import metric_sum
from tests.support.polling import wait_until
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

PAGE = "http://page.example:8000"
S_MAXAGE = 2
PUBLIC = f"public, max-age=0, s-maxage={S_MAXAGE}, stale-while-revalidate=0, stale-if-error=60"
PRIVATE = "private, max-age=0"
VARY = "Accept-Encoding, Authorization, X-API-Key, Origin"  # Origin: CORS lists origins here
FREE_LIMIT = 5


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, redis_url: str) -> AsyncIterator[Stack]:
    await seed(database_url, resources=5)
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        apiservers=1,
        RATE_LIMIT_ANONYMOUS="1000",
        RATE_LIMIT_FREE=str(FREE_LIMIT),
        CORS_ALLOW_ORIGINS=PAGE,
        HTTP_CACHE_MAX_AGE="0",  # so a shared cache's hit proves it read s-maxage
        HTTP_CACHE_S_MAXAGE=str(S_MAXAGE),
        HTTP_CACHE_STALE_WHILE_REVALIDATE="0",
        HTTP_CACHE_STALE_IF_ERROR="60",
    ) as running:
        async with aiohttp.ClientSession() as http:

            async def routable() -> bool:
                try:
                    async with http.get(running.gateway + "/api/v1/resources/1") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(routable, within=15)
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> aiohttp.ClientResponse:
    async with http.request(method, url, headers=headers or {}) as response:
        await response.read()
        return response


async def test_anonymous_reads_are_public_and_everything_else_is_not(stack: Stack, http: aiohttp.ClientSession) -> None:
    base = stack.gateway + "/api/v1"
    admin = await stack.bearer(http, DEV_ADMIN.login)
    async with http.post(base + "/keys", json={"name": "caching"}, headers=admin) as created:
        assert created.status == 201, await created.text()
        api_key = {"X-API-Key": (await created.json())["key"]}

    for path in ("/resources/1", "/resources?limit=2"):
        for method in ("GET", "HEAD"):
            public = await _get(http, base + path, method=method)
            assert public.status == 200
            assert (public.headers["Cache-Control"], public.headers["Vary"]) == (PUBLIC, VARY), (method, path)
            assert public.headers["ETag"].startswith('"')
            assert "X-RateLimit-Remaining" in public.headers  # per caller; see gateway.caching for why it stays
            for credentials in (admin, api_key):
                private = await _get(http, base + path, credentials, method=method)
                assert private.status == 200
                assert (private.headers["Cache-Control"], private.headers["Vary"]) == (PRIVATE, VARY)

    for method, path, status in (
        ("GET", "/resources/999999", 404),
        ("GET", "/resources?limit=0", 400),
        ("GET", "/status", 200),
        ("GET", "/me", 200),
        ("GET", "/nothing-here", 404),
        ("DELETE", "/resources/1", 401),
    ):
        answer = await _get(http, base + path, admin if path == "/me" else None, method=method)
        assert answer.status == status, (path, await answer.text())
        assert answer.headers["Cache-Control"] == "no-store", path
    async with http.post(base + "/resources", json={"name": "n", "type": "t"}, headers=admin) as write:
        assert write.status == 201
        assert write.headers["Cache-Control"] == "no-store"


async def test_429_is_never_cacheable_and_an_allowed_page_can_read_it(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    user = await stack.bearer(http, DEV_USER.login)
    statuses = []
    for _ in range(FREE_LIMIT + 1):
        answer = await _get(http, stack.gateway + "/api/v1/resources/1", {**user, "Origin": PAGE})
        statuses.append(answer.status)
    assert statuses == [200] * FREE_LIMIT + [429]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"]


async def test_conditional_requests_on_resources_and_lists(stack: Stack, http: aiohttp.ClientSession) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    base = stack.gateway + "/api/v1/resources"
    for path in ("/1", "?limit=2"):
        first = await _get(http, base + path)
        etag = first.headers["ETag"]
        for method in ("GET", "HEAD"):
            for credentials in ({}, admin):
                again = await _get(http, base + path, {"If-None-Match": etag, **credentials}, method=method)
                assert again.status == 304, (path, method)
                assert again.headers["ETag"] == etag
                assert again.headers["Vary"] == VARY
                assert again.headers["Cache-Control"] == (PRIVATE if credentials else PUBLIC)

    page = await _get(http, base + "?limit=2")
    async with http.patch(base + "/1", json={"name": "renamed"}, headers=admin) as patched:
        assert patched.status == 200
    changed = await _get(http, base + "?limit=2", {"If-None-Match": page.headers["ETag"]})
    assert changed.status == 200, "the page holds resource 1, which changed"
    assert changed.headers["ETag"] != page.headers["ETag"]

    # The tag is the page's content: a write elsewhere (a new list generation) leaves an unchanged page's tag.
    notes = await _get(http, base + "?type=no-such-type")
    await stack.create(http, admin, 1, type_="other")
    unchanged = await _get(http, base + "?type=no-such-type", {"If-None-Match": notes.headers["ETag"]})
    assert unchanged.status == 304


async def test_preflights_are_answered_at_the_edge_for_free(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = stack.gateway + "/api/v1/resources"
    before = int((await _get(http, url + "/1")).headers["X-RateLimit-Remaining"])
    preflight = {
        "Origin": PAGE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
    }
    for _ in range(20):
        answer = await _get(http, url, preflight, method="OPTIONS")
        assert answer.status == 204
        assert answer.headers["Access-Control-Allow-Origin"] == PAGE
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
        assert int(answer.headers["Access-Control-Max-Age"]) > 0
    after = int((await _get(http, url + "/1")).headers["X-RateLimit-Remaining"])
    assert after == before - 1, "20 preflights spent none of the anonymous budget"
    assert await metric_sum(http, stack.balancer.url, "http_requests_total", method="OPTIONS") == 0

    refused = await _get(http, url, {**preflight, "Origin": "http://elsewhere.example"}, method="OPTIONS")
    assert refused.status == 403
    assert not [name for name in refused.headers if name.lower().startswith("access-control-")]
    plain = await _get(http, url + "/1", {"Origin": "http://elsewhere.example"})
    assert plain.status == 200
    assert "Access-Control-Allow-Origin" not in plain.headers


# -- a real shared cache in front of the gateway ----------------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid @ROOT@/nginx.pid;
error_log @ROOT@/error.log warn;
events { worker_connections 256; }
http {
    access_log @ROOT@/access.log;
    client_body_temp_path @ROOT@/client_body;
    proxy_temp_path @ROOT@/proxy;
    fastcgi_temp_path @ROOT@/fastcgi;
    uwsgi_temp_path @ROOT@/uwsgi;
    scgi_temp_path @ROOT@/scgi;
    proxy_cache_path @ROOT@/cache levels=1:2 keys_zone=api:1m max_size=16m inactive=10m use_temp_path=off;
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass @UPSTREAM@;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache api;
            proxy_cache_revalidate on;
            add_header X-Shared-Cache $upstream_cache_status always;
        }
    }
}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        pytest.skip("nginx is missing: `make nginx` (root + apt-get) installs Debian's nginx for the shared-cache test")
    return found


@contextmanager
def shared_cache(root: Path, upstream: str) -> Iterator[str]:
    """nginx with proxy_cache on a free port in front of ``upstream``; its URL."""
    binary = nginx_binary()
    root.mkdir()
    port = free_port()
    config = root / "nginx.conf"
    text = NGINX_CONF.replace("@ROOT@", str(root)).replace("@PORT@", str(port)).replace("@UPSTREAM@", upstream)
    config.write_text(text)
    with (root / "output.log").open("wb") as output:
        process = subprocess.Popen(
            [binary, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not port_answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (root / "error.log").read_text(errors="replace") if (root / "error.log").exists() else ""
                pytest.fail(f"nginx did not start: {(root / 'output.log').read_text(errors='replace')} {log}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_shared_cache_is_driven_by_the_gateway_headers(
    stack: Stack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    route = "/api/v1/resources/{id}"
    with shared_cache(tmp_path / "nginx", stack.gateway) as cdn:
        url = cdn + "/api/v1/resources/1"
        first = await _get(http, url, {"X-Request-ID": "first"})
        assert (first.status, first.headers["X-Shared-Cache"]) == (200, "MISS")
        served = await metric_sum(http, stack.gateway, "http_requests_total", route=route)
        second = await _get(http, url, {"X-Request-ID": "second"})
        assert second.headers["X-Shared-Cache"] == "HIT", "public + s-maxage: the second anonymous read is a hit"
        assert second.headers["X-Request-ID"] == "first"  # the stored copy, not a new answer
        assert await metric_sum(http, stack.gateway, "http_requests_total", route=route) == served, (
            "the hit never reached the gateway"
        )

        admin = await stack.bearer(http, DEV_ADMIN.login)
        async with http.post(stack.gateway + "/api/v1/keys", json={"name": "cdn"}, headers=admin) as created:
            api_key = {"X-API-Key": (await created.json())["key"]}
        for credentials in (admin, admin, api_key, api_key):
            signed_in = await _get(http, url, {**credentials, "X-Request-ID": "signed-in"})
            assert signed_in.status == 200
            assert signed_in.headers["X-Shared-Cache"] != "HIT", "a signed-in read is never served from the cache"
            assert signed_in.headers["X-Request-ID"] == "signed-in"
            assert signed_in.headers["Cache-Control"] == PRIVATE
        assert await metric_sum(http, stack.gateway, "http_requests_total", route=route) == served + 4

        # A write through the cache purges nothing; the copy lives at most s-maxage.
        async with http.patch(url, json={"name": "written"}, headers=admin) as patched:
            assert patched.status == 200
        written_at = time.monotonic()

        async def visible() -> bool:
            async with http.get(url) as response:
                return response.status == 200 and (await response.json())["name"] == "written"

        await wait_until(visible, within=S_MAXAGE + 3, interval=0.1)
        assert time.monotonic() - written_at <= S_MAXAGE + 1.0
        again = await _get(http, url)
        assert again.headers["X-Shared-Cache"] == "HIT"  # cached again once refetched

        for path in ("/api/v1/resources/999999", "/api/v1/status"):
            for _ in range(2):
                uncached = await _get(http, cdn + path)
                assert uncached.headers["X-Shared-Cache"] != "HIT", path
