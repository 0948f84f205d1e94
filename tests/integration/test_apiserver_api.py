"""The resources API over real PostgreSQL and Redis: every route, every bad-input class, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from apiserver.keys import CACHE
from database.seed import seed
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis
from tests.integration.apiserver_support import (
    ADMIN,
    OTHER,
    USER,
    add_other_user,
    as_,
    assert_problem,
    create_app,
    settings_for,
    wait_subscribed,
)

pytestmark = pytest.mark.integration
Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def api(aiohttp_client: ClientFactory, database_url: str, redis_url: str) -> Client:
    await seed(database_url, resources=50)
    await add_other_user(database_url)
    client = await aiohttp_client(create_app(settings_for(database_url, redis_url)))
    await wait_subscribed(client.app)
    return client


async def test_get_reads_through_the_cache(api: Client) -> None:
    first = await api.get("/api/v1/resources/1")
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["ETag"] == '"1"'
    body = await first.json()
    assert body["id"] == 1
    assert set(body) == {"id", "name", "type", "data", "owner_id", "version", "created_at", "updated_at"}
    second = await api.get("/api/v1/resources/1")
    assert second.headers["X-Cache"] == "HIT-L1"
    assert await second.json() == body
    not_modified = await api.get("/api/v1/resources/1", headers={"If-None-Match": '"1"'})
    assert not_modified.status == 304


async def test_missing_and_malformed_ids_are_404(api: Client) -> None:
    await assert_problem(await api.get("/api/v1/resources/999999"), 404, "999999")
    await assert_problem(await api.get("/api/v1/resources/abc"), 404)
    await assert_problem(await api.get("/api/v1/resources/99999999999999999999999"), 404)


async def test_pagination_walks_every_item_once(api: Client) -> None:
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
        response = await api.get("/api/v1/resources", params=params)
        assert response.status == 200
        page = await response.json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 51))


async def test_list_filters(api: Client) -> None:
    owned = await (await api.get("/api/v1/resources", params={"owner": "2", "limit": "100"})).json()
    assert owned["items"]
    assert {item["owner_id"] for item in owned["items"]} == {2}
    typed = await (await api.get("/api/v1/resources", params={"type": "note", "limit": "100"})).json()
    assert {item["type"] for item in typed["items"]} <= {"note"}


@pytest.mark.parametrize(
    "params",
    [{"limit": "101"}, {"limit": "-1"}, {"cursor": "garbage!"}, {"sort": "name"}, {"owner": "x"}, {"type": "A B"}],
)
async def test_bad_list_queries_are_400(api: Client, params: dict[str, str]) -> None:
    await assert_problem(await api.get("/api/v1/resources", params=params), 400)


async def test_create_requires_a_verified_identity(api: Client) -> None:
    body = {"name": "Mine", "type": "note"}
    await assert_problem(await api.post("/api/v1/resources", json=body), 401)
    forged = as_(ADMIN, secret="not-the-internal-secret-at-all-xxxxxxxxxx")
    await assert_problem(await api.post("/api/v1/resources", json=body, headers=forged), 401)
    created = await api.post("/api/v1/resources", json=body, headers=as_(USER))
    assert created.status == 201
    resource = await created.json()
    assert resource["owner_id"] == USER.user_id
    assert created.headers["Location"] == f"/api/v1/resources/{resource['id']}"
    assert created.headers["ETag"] == '"1"'


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b'{"name": "x", "type": "note", "extra": 1}', "application/json", 422),
        (b'{"name": 1, "type": "note"}', "application/json", 422),
        (b'{"name": "x", "type": "note"}', "text/plain", 415),
        (
            b'{"name": "x", "type": "note", "data": {"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 41 + b"}",
            "application/json",
            422,
        ),
        (b'{"name": "\\ud800", "type": "note"}', "application/json", 422),  # I-JSON: a lone surrogate names its field
        (b'{"name": "x", "type": "note", "data": {"n": 1e999999}}', "application/json", 400),
    ],
)
async def test_bad_bodies_are_precise_4xx(api: Client, raw: bytes, content_type: str, status: int) -> None:
    response = await api.post("/api/v1/resources", data=raw, headers={**as_(USER), "Content-Type": content_type})
    await assert_problem(response, status)


async def test_oversize_body_is_413(api: Client) -> None:
    raw = b'{"name": "x", "type": "note", "data": {"k": "' + b"v" * 300_000 + b'"}}'
    response = await api.post("/api/v1/resources", data=raw, headers={**as_(USER), "Content-Type": "application/json"})
    await assert_problem(response, 413)


async def test_update_rules(api: Client) -> None:
    mine = await (await api.post("/api/v1/resources", json={"name": "A", "type": "note"}, headers=as_(USER))).json()
    url = f"/api/v1/resources/{mine['id']}"
    await assert_problem(await api.put(url, json={"name": "B", "type": "note"}, headers=as_(OTHER)), 403)
    await assert_problem(await api.put(url, json={"name": "B", "type": "note"}), 401)
    replaced = await api.put(url, json={"name": "B", "type": "note", "data": {"k": 1}}, headers=as_(USER))
    assert replaced.status == 200
    assert replaced.headers["ETag"] == '"2"'
    stale = await api.patch(url, json={"name": "C"}, headers={**as_(USER), "If-Match": '"1"'})
    problem = await assert_problem(stale, 412, "current version is 2")
    assert str(problem["type"]).endswith("stale-version")
    assert stale.headers["ETag"] == '"2"'
    patched = await api.patch(url, json={"name": "C"}, headers={**as_(USER), "If-Match": '"2"'})
    assert (await patched.json())["data"] == {"k": 1}
    by_admin = await api.patch(url, json={"data": {}}, headers=as_(ADMIN))
    assert (await by_admin.json())["version"] == 4
    await assert_problem(await api.patch("/api/v1/resources/999999", json={"name": "x"}, headers=as_(USER)), 404)
    fresh = await api.get(url)
    assert (await fresh.json())["version"] == 4


async def test_concurrent_conditional_updates_never_overwrite_each_other(api: Client) -> None:
    mine = await (await api.post("/api/v1/resources", json={"name": "A", "type": "note"}, headers=as_(USER))).json()
    url = f"/api/v1/resources/{mine['id']}"
    headers = {**as_(USER), "If-Match": '"1"'}
    responses = await asyncio.gather(
        *(api.patch(url, json={"name": f"writer {index}"}, headers=headers) for index in range(10))
    )
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] + [412] * 9


async def test_delete_rules_and_cached_copies_disappear(api: Client) -> None:
    mine = await (await api.post("/api/v1/resources", json={"name": "A", "type": "note"}, headers=as_(USER))).json()
    url = f"/api/v1/resources/{mine['id']}"
    assert (await api.get(url)).status == 200
    assert (await api.get(url)).headers["X-Cache"] == "HIT-L1"
    await assert_problem(await api.delete(url, headers=as_(OTHER)), 403)
    deleted = await api.delete(url, headers=as_(USER))
    assert deleted.status == 204
    await assert_problem(await api.get(url), 404)
    await assert_problem(await api.delete(url, headers=as_(USER)), 404)


async def test_a_write_shows_up_in_cached_lists(api: Client) -> None:
    params = {"type": "gadget", "limit": "100"}
    assert (await (await api.get("/api/v1/resources", params=params)).json())["items"] == []
    assert (await api.get("/api/v1/resources", params=params)).headers["X-Cache"] == "HIT-L1"
    await api.post("/api/v1/resources", json={"name": "G", "type": "gadget"}, headers=as_(USER))
    listed = await (await api.get("/api/v1/resources", params=params)).json()
    assert [item["name"] for item in listed["items"]] == ["G"]


async def test_large_bodies_are_gzipped_when_asked(api: Client) -> None:
    response = await api.get("/api/v1/resources", params={"limit": "100"}, headers={"Accept-Encoding": "gzip"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert len((await response.json())["items"]) == 50


async def test_status_health_ready_metrics(api: Client) -> None:
    status = await (await api.get("/api/v1/status")).json()
    assert status["instanceId"] == "apiserver-test"
    assert status["uptime"] >= 0
    assert (await api.get("/health")).status == 200
    ready = await (await api.get("/ready")).json()
    assert ready["checks"] == {"postgres": "ok", "redis": "ok"}
    await api.get("/api/v1/resources/3")
    metrics = await (await api.get("/metrics")).text()
    assert 'route="/api/v1/resources/{id}"' in metrics
    assert 'cache_requests_total{level="l1",result="miss"}' in metrics


async def test_request_id_is_echoed_only_when_sane(api: Client) -> None:
    kept = await api.get("/api/v1/status", headers={"X-Request-ID": "abc-123.X_y"})
    assert kept.headers["X-Request-ID"] == "abc-123.X_y"
    replaced = await api.get("/api/v1/status", headers={"X-Request-ID": "bad id\twith spaces"})
    assert replaced.headers["X-Request-ID"] != "bad id\twith spaces"
    problem = await assert_problem(await api.get("/api/v1/resources/0", headers={"X-Request-ID": "trace-1"}), 404)
    assert problem["request_id"] == "trace-1"


async def test_unknown_routes_and_methods_are_problems(api: Client) -> None:
    await assert_problem(await api.get("/api/v1/nothing"), 404)
    response = await api.request("TRACE", "/api/v1/resources")
    await assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_internal_endpoints_are_admin_only(api: Client) -> None:
    for method, path in [
        ("GET", "/internal/breakers"),
        ("POST", "/internal/breakers/external-api/reset"),
        ("GET", "/internal/cache"),
        ("POST", "/internal/cache/clear"),
    ]:
        await assert_problem(await api.request(method, path), 401)
        await assert_problem(await api.request(method, path, headers=as_(USER)), 403)
        assert (await api.request(method, path, headers=as_(ADMIN))).status == 200


async def test_cache_clear_touches_only_the_cache_namespace(api: Client, redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set("rl:{user:2}", b"41")
        await client.set("auth:refresh:abc", b"family")
        await api.get("/api/v1/resources/5")
        assert await client.exists("cache:res:5")
        cleared = await (await api.post("/internal/cache/clear", headers=as_(ADMIN))).json()
        assert cleared["redis_keys_deleted"] >= 1
        assert not await client.exists("cache:res:5")
        assert await client.get("rl:{user:2}") == b"41"
        assert await client.get("auth:refresh:abc") == b"family"
        assert len(api.app[CACHE].l1) == 0
    finally:
        await client.aclose()


async def test_ready_is_503_only_when_both_dependencies_are_gone(
    aiohttp_client: ClientFactory, own_postgres: EmbeddedPostgres, own_redis: EmbeddedRedis
) -> None:
    client = await aiohttp_client(create_app(settings_for(own_postgres.url, own_redis.url)))
    await wait_subscribed(client.app)
    assert (await (await client.get("/ready")).json())["status"] == "ready"
    await asyncio.to_thread(own_redis.kill)
    degraded = await client.get("/ready")
    assert degraded.status == 200
    assert (await degraded.json())["status"] == "degraded"
    await asyncio.to_thread(own_postgres.kill)
    gone = await assert_problem(await client.get("/ready"), 503, "postgres")
    failing = gone["failing"]
    assert isinstance(failing, dict)
    assert set(failing) == {"postgres", "redis"}


async def test_each_l1_miss_is_counted_once(api: Client) -> None:
    def l1_misses(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith('cache_requests_total{level="l1",result="miss"}'))
        return float(line.rsplit(" ", 1)[1])

    before = l1_misses(await (await api.get("/metrics")).text())
    assert (await api.get("/api/v1/resources/11")).headers["X-Cache"] == "MISS"
    after = l1_misses(await (await api.get("/metrics")).text())
    assert after - before == 1
