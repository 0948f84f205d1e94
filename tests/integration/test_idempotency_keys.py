"""Idempotency-Key on resource writes, over real PostgreSQL and Redis: replay, reuse, concurrency, scope, expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from apiserver.idempotency import sweep_expired
from apiserver.keys import SETTINGS
from database.seed import seed
from gateway.openapi import DOCUMENT
from shared.keys import PG_POOL
from shared.settings import SettingsError
from tests.integration.apiserver_support import (
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
BODY = {"name": "Keyed", "type": "note", "data": {"n": 1}}


@pytest.fixture
async def api(aiohttp_client: ClientFactory, database_url: str, redis_url: str) -> Client:
    await seed(database_url, resources=5)
    await add_other_user(database_url)
    await _sql(database_url, "TRUNCATE idempotency_keys")  # the shared reset does not know this table
    client = await aiohttp_client(create_app(settings_for(database_url, redis_url)))
    await wait_subscribed(client.app)
    return client


async def _sql(database_url: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


def _keyed(identity: object = USER, key: str | None = None) -> dict[str, str]:
    return {**as_(USER if identity is USER else OTHER), "Idempotency-Key": key or str(uuid.uuid4())}


async def _count(database_url: str, name: str) -> int:
    return int(str(await _sql(database_url, "SELECT count(*) FROM resources WHERE name = $1", name)))


async def _same_answer(first: ClientResponse, second: ClientResponse) -> None:
    assert second.status == first.status
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    for name in ("Content-Type", "ETag", "Location"):
        assert second.headers.get(name) == first.headers.get(name)
    assert await second.read() == await first.read()


async def test_same_key_and_body_creates_once_and_replays(api: Client, database_url: str) -> None:
    headers = _keyed()
    first = await api.post("/api/v1/resources", json=BODY, headers=headers)
    assert first.status == 201, await first.text()
    second = await api.post("/api/v1/resources", json=BODY, headers=headers)
    await _same_answer(first, second)
    assert await _count(database_url, "Keyed") == 1


async def test_same_key_with_another_body_is_422(api: Client, database_url: str) -> None:
    headers = _keyed()
    assert (await api.post("/api/v1/resources", json=BODY, headers=headers)).status == 201
    other = {**BODY, "name": "Different"}
    await assert_problem(await api.post("/api/v1/resources", json=other, headers=headers), 422, "another request")
    # Another path with the same key is another request too.
    await assert_problem(await api.put("/api/v1/resources/1", json=BODY, headers=headers), 422)
    assert await _count(database_url, "Different") == 0


async def test_concurrent_duplicates_write_once(api: Client, database_url: str) -> None:
    headers = _keyed()
    answers = await asyncio.gather(*(api.post("/api/v1/resources", json=BODY, headers=headers) for _ in range(2)))
    statuses = sorted(answer.status for answer in answers)
    assert statuses in ([201, 201], [201, 409]), statuses
    if statuses == [201, 409]:
        await assert_problem(next(a for a in answers if a.status == 409), 409, "still being processed")
    else:
        assert sum(answer.headers.get("Idempotent-Replayed") == "true" for answer in answers) == 1
    assert await _count(database_url, "Keyed") == 1
    retry = await api.post("/api/v1/resources", json=BODY, headers=headers)
    assert retry.status == 201
    assert retry.headers["Idempotent-Replayed"] == "true"


async def test_keys_are_scoped_per_caller(api: Client, database_url: str) -> None:
    key = str(uuid.uuid4())
    mine = await api.post("/api/v1/resources", json=BODY, headers=_keyed(USER, key))
    theirs = await api.post("/api/v1/resources", json=BODY, headers=_keyed(OTHER, key))
    assert mine.status == theirs.status == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await mine.json())["owner_id"] == USER.user_id
    assert (await theirs.json())["owner_id"] == OTHER.user_id
    assert await _count(database_url, "Keyed") == 2


async def test_patch_and_delete_with_a_key_apply_once(api: Client, database_url: str) -> None:
    created = await (await api.post("/api/v1/resources", json=BODY, headers=as_(USER))).json()
    path = f"/api/v1/resources/{created['id']}"
    patch = _keyed()
    first = await api.patch(path, json={"name": "Patched"}, headers=patch)
    assert first.status == 200
    second = await api.patch(path, json={"name": "Patched"}, headers=patch)
    await _same_answer(first, second)
    assert (await second.json())["version"] == 2
    assert await _sql(database_url, "SELECT version FROM resources WHERE id = $1", created["id"]) == 2

    delete = _keyed()
    gone = await api.delete(path, headers=delete)
    assert gone.status == 204
    again = await api.delete(path, headers=delete)
    assert again.status == 204  # not 404: the first answer, replayed
    assert again.headers["Idempotent-Replayed"] == "true"
    await assert_problem(await api.delete(path, headers=_keyed()), 404)  # a new key runs again


async def test_a_refused_write_stores_no_key(api: Client, database_url: str) -> None:
    created = await (await api.post("/api/v1/resources", json=BODY, headers=as_(USER))).json()
    path = f"/api/v1/resources/{created['id']}"
    headers = _keyed()
    await assert_problem(await api.patch("/api/v1/resources/999999", json={"name": "x"}, headers=headers), 404)
    await assert_problem(await api.patch(path, json={"name": "x"}, headers={**headers, "If-Match": '"9"'}), 412)
    await assert_problem(await api.patch(path, json={"name": ""}, headers=headers), 422)
    assert await _sql(database_url, "SELECT count(*) FROM idempotency_keys") == 0
    retried = await api.patch(path, json={"name": "x"}, headers=headers)
    assert retried.status == 200
    assert "Idempotent-Replayed" not in retried.headers


async def test_an_expired_key_is_ignored_and_swept(api: Client, database_url: str) -> None:
    headers = _keyed()
    assert (await api.post("/api/v1/resources", json=BODY, headers=headers)).status == 201
    await _sql(database_url, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    again = await api.post("/api/v1/resources", json=BODY, headers=headers)
    assert again.status == 201
    assert "Idempotent-Replayed" not in again.headers
    assert await _count(database_url, "Keyed") == 2
    await _sql(database_url, "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    assert (await api.post("/api/v1/resources", json=BODY, headers=_keyed())).status == 201  # a fresh key stays
    assert await sweep_expired(api.app[PG_POOL], api.app[SETTINGS].idempotency_ttl, batch=1) == 1
    assert await _sql(database_url, "SELECT count(*) FROM idempotency_keys") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_invalid_keys_are_400(api: Client, database_url: str, key: str) -> None:
    headers = {**as_(USER), "Idempotency-Key": key}
    raw = key.encode("utf-8") if not key.isascii() else None
    if raw is not None:
        # aiohttp's client refuses non-ASCII header values; send the bytes as latin-1 the server decodes.
        headers["Idempotency-Key"] = raw.decode("latin-1")
    await assert_problem(await api.post("/api/v1/resources", json=BODY, headers=headers), 400, "Idempotency-Key")
    assert await _count(database_url, "Keyed") == 0


async def test_anonymous_keyed_writes_are_refused(api: Client) -> None:
    await assert_problem(await api.post("/api/v1/resources", json=BODY, headers={"Idempotency-Key": "k"}), 401)


def test_the_ttl_setting_is_parsed_and_checked(database_url: str, redis_url: str) -> None:
    assert settings_for(database_url, redis_url).idempotency_ttl == 86_400.0
    assert settings_for(database_url, redis_url, IDEMPOTENCY_TTL="60").idempotency_ttl == 60.0
    with pytest.raises(SettingsError, match="IDEMPOTENCY_TTL"):
        settings_for(database_url, redis_url, IDEMPOTENCY_TTL="soon")


def test_the_openapi_document_describes_keyed_writes() -> None:
    served = orjson.loads(orjson.dumps(DOCUMENT))
    assert served["components"]["parameters"]["IdempotencyKey"]["in"] == "header"
    for path, method in [
        ("/api/v1/resources", "post"),
        ("/api/v1/resources/{id}", "put"),
        ("/api/v1/resources/{id}", "patch"),
        ("/api/v1/resources/{id}", "delete"),
    ]:
        operation = served["paths"][path][method]
        assert "Idempotency-Key" in operation["description"]
        assert "in flight" in operation["responses"]["409"]["description"]
        assert "Idempotency-Key" in operation["responses"]["422"]["description"]


async def test_a_key_in_flight_is_409_and_free_again_after(api: Client, database_url: str) -> None:
    key = str(uuid.uuid4())
    holder = await asyncpg.connect(database_url)  # plays the first request, its transaction still open
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::bigint::text || ':' || $2, 0))", USER.user_id, key
        )
        busy = await api.post("/api/v1/resources", json=BODY, headers=_keyed(USER, key))
        await assert_problem(busy, 409, "still being processed")
        assert busy.headers["Retry-After"] == "1"
        theirs = await api.post("/api/v1/resources", json=BODY, headers=_keyed(OTHER, key))
        assert theirs.status == 201  # another caller's key of the same text is not held
        await transaction.rollback()  # the first request failed: nothing was stored
    finally:
        await holder.close()
    retried = await api.post("/api/v1/resources", json=BODY, headers=_keyed(USER, key))
    assert retried.status == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert await _count(database_url, "Keyed") == 2
