"""The resources API: list, read, create, replace, patch and delete, read through the two-level cache.

Reads serve the cached JSON bytes as they are (an L1 hit touches neither Redis nor PostgreSQL). Writes
commit to PostgreSQL first and then call ``write_through`` so every replica forgets the old value.
``ETag`` is the resource version: ``If-None-Match`` gives 304, ``If-Match`` makes updates conditional (412 on a
stale version), so concurrent writers never silently overwrite each other.
A list page's ``ETag`` is a hash of its JSON, computed once when the page is loaded into the cache (it is the
cache entry's version), so ``If-None-Match`` gives 304 on lists too. Not the list generation: that Redis counter
does not move while Redis is down (writes still commit) and starts again from 0 when Redis loses its data, so a
tag made from it could call a changed page unchanged; equal bytes give an equal tag on every replica.
Writes sent with ``Idempotency-Key`` run through :mod:`apiserver.idempotency`: a repeat answers the stored response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import orjson
from aiohttp import hdrs, web

from apiserver.cache.two_level import Lookup
from apiserver.http import (
    GZIP_MIN_BYTES,
    JSON,
    etag_for,
    expected_version,
    identity_of,
    json_response,
    none_match,
    unavailable,
)
from apiserver.idempotency import IdempotencyGuard, Replayed, StoredResponse, guard_for
from apiserver.keys import CACHE, REPOSITORY, SETTINGS
from apiserver.repository import (
    DatabaseUnavailable,
    Forbidden,
    NotFound,
    VersionConflict,
    record_dict,
    to_json,
)
from apiserver.validation import encode_cursor, parse_id, parse_list_query, validate_resource
from shared.authz import require_user
from shared.bodies import read_json_object
from shared.errors import Problem

_X_CACHE = {"l1": "HIT-L1", "l2": "HIT-L2", "db": "MISS", "stale": "STALE"}


def content_version(payload: bytes) -> int:
    """A list page's version for the cache and its ETag: 48 bits of BLAKE2b, never 0 (0 is a page cached before
    pages had versions; it gets no ETag). 48 bits stay exact in the Lua number the cache's fill script compares."""
    return int.from_bytes(hashlib.blake2b(payload, digest_size=6).digest()) or 1


def _not_found(resource_id: int) -> Problem:
    return Problem(404, "Not Found", f"No resource with id {resource_id}.")


async def _lookup_resource(request: web.Request, resource_id: int) -> Lookup:
    repository = request.app[REPOSITORY]

    async def load() -> tuple[int, bytes]:
        record = await repository.get(resource_id)
        return (0, b"") if record is None else (record["version"], to_json(record))

    try:
        return await request.app[CACHE].load(f"res:{resource_id}", load)
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable and this resource is not cached.") from None


async def get_resource(request: web.Request) -> web.StreamResponse:
    resource_id = parse_id(request.match_info["id"])
    entry = request.app[CACHE].peek_l1(f"res:{resource_id}")
    source = "l1"
    if entry is None:
        lookup = await _lookup_resource(request, resource_id)
        entry, source = lookup.entry, lookup.source
    if entry.absent:
        raise _not_found(resource_id)
    etag = entry.etag
    headers = [("ETag", etag), ("X-Cache", _X_CACHE[source])]
    if source == "stale":
        headers.append(("Cache-Status", "scalable-api; fwd=stale; detail=stale-if-error"))
    if none_match(request, etag):
        return web.Response(status=304, headers=headers)
    return json_response(request, entry.payload, headers=headers)


async def list_resources(request: web.Request) -> web.StreamResponse:
    query = parse_list_query(request.query)
    repository = request.app[REPOSITORY]

    async def load() -> tuple[int, bytes]:
        records = await repository.list(
            type_=query.type, owner=query.owner, after_id=query.after_id, limit=query.limit + 1
        )
        page = records[: query.limit]
        has_more = len(records) > query.limit
        body = {
            "items": [record_dict(record) for record in page],
            "next_cursor": encode_cursor(page[-1]["id"]) if has_more else None,
            "limit": query.limit,
        }
        payload = orjson.dumps(body)
        return content_version(payload), payload

    cache = request.app[CACHE]
    try:
        lookup = await cache.get(cache.list_key(query.cache_key()), load)
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable and this page is not cached.") from None
    entry = lookup.entry
    headers = [("X-Cache", _X_CACHE[lookup.source])]
    if entry.version:
        headers.append(("ETag", entry.etag))
        if none_match(request, entry.etag):
            return web.Response(status=304, headers=headers)
    return json_response(request, entry.payload, headers=headers)


async def _read_body(request: web.Request, *, partial: bool) -> dict[str, Any]:
    body = await read_json_object(request, max_body=request.app[SETTINGS].max_body_bytes)
    return validate_resource(body, partial=partial)


async def _announce(request: web.Request, resource_id: int, version: int, payload: bytes, lsn: int) -> None:
    cache = request.app[CACHE]
    await cache.write_through(f"res:{resource_id}", cache.entry_for_write(version, payload), lsn=lsn)


T = TypeVar("T")


def _guard(
    request: web.Request, owner_id: int, body: dict[str, Any] | None, render: Callable[[T], StoredResponse]
) -> IdempotencyGuard[T] | None:
    return guard_for(request, owner_id, body=body, ttl=request.app[SETTINGS].idempotency_ttl, render=render)


def _send(request: web.Request, stored: StoredResponse, *, replayed: bool = False) -> web.StreamResponse:
    response = stored.to_response(replayed=replayed)
    if len(stored.body) >= GZIP_MIN_BYTES and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _created(record: asyncpg.Record) -> StoredResponse:
    headers = (
        (hdrs.CONTENT_TYPE, JSON),
        (hdrs.ETAG, etag_for(record["version"])),
        (hdrs.LOCATION, f"/api/v1/resources/{record['id']}"),
    )
    return StoredResponse(201, headers, to_json(record))


def _updated(record: asyncpg.Record) -> StoredResponse:
    return StoredResponse(200, ((hdrs.CONTENT_TYPE, JSON), (hdrs.ETAG, etag_for(record["version"]))), to_json(record))


def _deleted(version: int) -> StoredResponse:
    return StoredResponse(204)


async def create_resource(request: web.Request) -> web.StreamResponse:
    identity = require_user(identity_of(request))
    fields = await _read_body(request, partial=False)
    assert identity.user_id is not None  # require_user guarantees it
    guard = _guard(request, identity.user_id, fields, _created)
    try:
        record, lsn = await request.app[REPOSITORY].create(fields, identity.user_id, guard=guard)
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable; nothing was written.") from None
    except Replayed as replay:
        return _send(request, replay.response, replayed=True)
    stored = _created(record)
    await _announce(request, record["id"], record["version"], stored.body, lsn)
    return _send(request, stored)


async def _update(request: web.Request, *, partial: bool) -> web.StreamResponse:
    identity = require_user(identity_of(request))
    resource_id = parse_id(request.match_info["id"])
    fields = await _read_body(request, partial=partial)
    if not partial:
        fields.setdefault("data", {})
    assert identity.user_id is not None
    guard = _guard(request, identity.user_id, fields, _updated)
    try:
        record, lsn = await request.app[REPOSITORY].update(
            resource_id,
            fields,
            actor=identity.user_id,
            admin=identity.is_admin,
            expected_version=expected_version(request),
            guard=guard,
        )
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable; nothing was written.") from None
    except Replayed as replay:
        return _send(request, replay.response, replayed=True)
    except NotFound:
        raise _not_found(resource_id) from None
    except Forbidden:
        raise Problem(403, "Forbidden", "Only the owner or an admin may change this resource.") from None
    except VersionConflict as conflict:
        raise _stale_version(conflict) from None
    stored = _updated(record)
    await _announce(request, resource_id, record["version"], stored.body, lsn)
    return _send(request, stored)


def _stale_version(conflict: VersionConflict) -> Problem:
    return Problem(
        412,
        "Precondition Failed",
        f"The resource changed; its current version is {conflict.current_version}. Re-read it and retry.",
        type_="stale-version",
        headers={"ETag": etag_for(conflict.current_version)},
    )


async def replace_resource(request: web.Request) -> web.StreamResponse:
    return await _update(request, partial=False)


async def patch_resource(request: web.Request) -> web.StreamResponse:
    return await _update(request, partial=True)


async def delete_resource(request: web.Request) -> web.StreamResponse:
    identity = require_user(identity_of(request))
    resource_id = parse_id(request.match_info["id"])
    assert identity.user_id is not None
    guard = _guard(request, identity.user_id, None, _deleted)
    try:
        version, lsn = await request.app[REPOSITORY].delete(
            resource_id,
            actor=identity.user_id,
            admin=identity.is_admin,
            expected_version=expected_version(request),
            guard=guard,
        )
    except DatabaseUnavailable:
        raise unavailable("The database is unavailable; nothing was deleted.") from None
    except Replayed as replay:
        return _send(request, replay.response, replayed=True)
    except NotFound:
        raise _not_found(resource_id) from None
    except Forbidden:
        raise Problem(403, "Forbidden", "Only the owner or an admin may delete this resource.") from None
    except VersionConflict as conflict:
        raise _stale_version(conflict) from None
    await _announce(request, resource_id, version + 1, b"", lsn)
    return _send(request, _deleted(version))


def add_resource_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/resources", list_resources)
    app.router.add_post("/api/v1/resources", create_resource)
    app.router.add_get("/api/v1/resources/{id}", get_resource)
    app.router.add_put("/api/v1/resources/{id}", replace_resource)
    app.router.add_patch("/api/v1/resources/{id}", patch_resource)
    app.router.add_delete("/api/v1/resources/{id}", delete_resource)
