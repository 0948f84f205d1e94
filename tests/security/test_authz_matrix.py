"""Every route x {anonymous, user, another user, admin, revoked API key, expired token} → the expected status,
and nothing of one user is visible to or changeable by another."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from database.accounts import DEV_USER
from tests.resilience.report import Sample, record
from tests.security.conftest import PRINCIPALS, Principals, principals
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

# Expected status per principal, in PRINCIPALS order: anonymous, user, other, admin, revoked key, expired token.
# "{mine}" is a fresh resource of `user` made for each call; "{key}" a fresh API key of `user`.
PUBLIC = (200, 200, 200, 200, 401, 401)
SIGNED_IN = (401, 200, 200, 200, 401, 401)
ADMIN_ONLY = (401, 403, 403, 200, 401, 401)
# A bad credential is refused before routing, so hidden routes are a 401 for those callers.
HIDDEN = (404, 404, 404, 404, 401, 401)
MATRIX: list[tuple[str, str, Any, tuple[int, ...]]] = [
    ("GET", "/api/v1/status", None, PUBLIC),
    ("GET", "/api/v1/external", None, PUBLIC),
    ("GET", "/api/v1/resources", None, PUBLIC),
    ("GET", "/api/v1/resources/{mine}", None, PUBLIC),
    ("POST", "/api/v1/resources", {"name": "m", "type": "matrix"}, (401, 201, 201, 201, 401, 401)),
    ("PUT", "/api/v1/resources/{mine}", {"name": "x", "type": "matrix"}, (401, 200, 403, 200, 401, 401)),
    ("PATCH", "/api/v1/resources/{mine}", {"name": "x"}, (401, 200, 403, 200, 401, 401)),
    ("DELETE", "/api/v1/resources/{mine}", None, (401, 204, 403, 204, 401, 401)),
    ("GET", "/api/v1/me", None, SIGNED_IN),
    ("GET", "/api/v1/keys", None, SIGNED_IN),
    ("POST", "/api/v1/keys", {"name": "matrix"}, (401, 201, 201, 201, 401, 401)),
    # Keys belong to their owner: another user and even the admin get a 404 for `user`'s key.
    ("DELETE", "/api/v1/keys/{key}", None, (401, 204, 404, 404, 401, 401)),
    ("GET", "/api/v1/admin/dashboard", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/stream?max_events=1", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/circuit-breakers", None, ADMIN_ONLY),
    ("POST", "/api/v1/admin/circuit-breakers/external-api/reset", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/cache", None, ADMIN_ONLY),
    ("POST", "/api/v1/admin/cache/clear", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/rate-limits/user:2", None, ADMIN_ONLY),
    ("GET", "/api/v1/admin/users", None, ADMIN_ONLY),
    ("PATCH", "/api/v1/admin/users/3", {"tier": "free"}, ADMIN_ONLY),
    ("POST", "/api/v1/admin/backends/no-such-backend/drain", None, (401, 403, 403, 404, 401, 401)),
    ("GET", "/lb/status", None, HIDDEN),
    ("POST", "/lb/backends/x/drain", None, HIDDEN),
    ("GET", "/internal/breakers", None, HIDDEN),
    ("POST", "/internal/cache/clear", None, HIDDEN),
]


async def _call(
    http: aiohttp.ClientSession, stack: Stack, method: str, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.request(method, stack.gateway + path, json=body, headers=headers) as response:
        raw = await response.read()
        parsed = await response.json(content_type=None) if raw and "json" in response.content_type else raw
        return response.status, parsed


async def _fresh(http: aiohttp.ClientSession, stack: Stack, who: Principals, path: str) -> str:
    if "{mine}" in path:
        _, created = await _call(http, stack, "POST", "/api/v1/resources", {"name": "mine", "type": "own"}, who.user)
        path = path.replace("{mine}", str(created["id"]))
    if "{key}" in path:
        _, key = await _call(http, stack, "POST", "/api/v1/keys", {"name": "mine"}, who.user)
        path = path.replace("{key}", str(key["id"]))
    return path


async def test_every_route_for_every_kind_of_caller(stack: Stack, http: aiohttp.ClientSession) -> None:
    who = await principals(http, stack)
    samples: list[Sample] = []
    wrong: list[str] = []
    for method, template, body, expected in MATRIX:
        for name, want in zip(PRINCIPALS, expected, strict=True):
            path = await _fresh(http, stack, who, template)
            status, _ = await _call(http, stack, method, path, body, getattr(who, name))
            samples.append(Sample(f"{method} {template}", status, 0.0, 0.0))
            if status != want:
                wrong.append(f"{method} {template} as {name}: {status}, expected {want}")
    record(
        "security",
        "authorization_matrix",
        title=f"Authorization matrix: {len(MATRIX)} routes x {len(PRINCIPALS)} callers",
        guarantee="every (route, caller) answers the expected status",
        samples=samples,
        failed=len(wrong),
        extra={"mismatches": wrong},
    )
    assert wrong == []


async def test_no_user_sees_or_changes_another_users_data(stack: Stack, http: aiohttp.ClientSession) -> None:
    who = await principals(http, stack)
    _, mine = await _call(http, stack, "POST", "/api/v1/resources", {"name": "private", "type": "iso"}, who.user)
    _, key = await _call(http, stack, "POST", "/api/v1/keys", {"name": "users key"}, who.user)
    path = f"/api/v1/resources/{mine['id']}"

    attempts = [
        await _call(http, stack, "PUT", path, {"name": "stolen", "type": "iso"}, who.other),
        await _call(http, stack, "PATCH", path, {"data": {"owned": "by other"}}, who.other),
        await _call(http, stack, "DELETE", path, None, who.other),
        await _call(http, stack, "DELETE", f"/api/v1/keys/{key['id']}", None, who.other),
    ]
    assert [status for status, _ in attempts] == [403, 403, 403, 404]
    _, after = await _call(http, stack, "GET", path, None, who.user)
    assert (after["name"], after["data"], after["version"]) == ("private", {}, mine["version"])

    _, other_keys = await _call(http, stack, "GET", "/api/v1/keys", None, who.other)
    _, user_keys = await _call(http, stack, "GET", "/api/v1/keys", None, who.user)
    assert key["id"] in [k["id"] for k in user_keys["data"]]
    assert key["id"] not in [k["id"] for k in other_keys["data"]]
    assert all("key" not in k for k in user_keys["data"]), "a listing must never show a key again"
    _, me = await _call(http, stack, "GET", "/api/v1/me", None, who.other)
    assert me["email"] == "other@example.com"
    # The user's key still works, so the other user's DELETE really did nothing.
    status, me = await _call(http, stack, "GET", "/api/v1/me", None, {"X-API-Key": key["key"]})
    assert (status, me["email"]) == (200, DEV_USER.email)
