"""Admin views of accounts and of any identity's rate-limit state; tier and role changes."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from gateway.http import BIGINT_MAX, invalid, json_response, path_id, query_int
from gateway.keys import LIMITER, PRINCIPAL, REFRESH, SETTINGS, USERS
from shared.authz import require_admin
from shared.bodies import read_json_object
from shared.errors import Problem
from shared.identity import ACCOUNT_ROLES, ACCOUNT_TIERS, Tier, one_of

PAGE_MAX = 100


async def list_users(request: web.Request) -> web.Response:
    require_admin(request[PRINCIPAL].identity)
    after = query_int(request.query, "after", default=0, low=0, high=BIGINT_MAX)
    limit = query_int(request.query, "limit", default=50, low=1, high=PAGE_MAX)
    users = await request.app[USERS].page(after=after, limit=limit)
    next_after = users[-1].id if len(users) == limit else None
    return json_response({"data": [user.public() for user in users], "next_after": next_after})


async def update_user(request: web.Request) -> web.Response:
    """Change role, tier or disabled. New claims reach access tokens at the next refresh (≤ ACCESS_TOKEN_TTL);
    disabling revokes every refresh token at once. An admin cannot demote or disable their own account (403):
    another admin must, so the last admin can never lock everyone out."""
    admin = require_admin(request[PRINCIPAL].identity)
    user_id = path_id(request)
    body = await read_json_object(request, max_body=4096)
    unknown = sorted(set(body) - {"role", "tier", "disabled"})
    if unknown:
        raise invalid(unknown[0], "is not a field you can change")
    # A field that is present must hold a value: null is not "leave unchanged" (the document says so too).
    role, tier, disabled = body.get("role"), body.get("tier"), body.get("disabled")
    if "role" in body and not one_of(role, ACCOUNT_ROLES):
        raise invalid("role", f"must be one of {', '.join(sorted(ACCOUNT_ROLES))}")
    if "tier" in body and not one_of(tier, ACCOUNT_TIERS):
        raise invalid("tier", f"must be one of {', '.join(sorted(ACCOUNT_TIERS))}")
    if "disabled" in body and not isinstance(disabled, bool):
        raise invalid("disabled", "must be true or false")
    if user_id == admin.user_id and (disabled is True or ("role" in body and role != "admin")):
        raise Problem(
            403,
            "Forbidden",
            "An admin cannot remove their own admin role or disable their own account; ask another admin.",
            type_="self-lockout",
        )
    user = await request.app[USERS].update(user_id, role=role, tier=tier, disabled=disabled)
    if user is None:
        raise Problem(404, "Not Found", f"No user with id {user_id}.")
    if disabled:
        await request.app[REFRESH].revoke_user(user_id)
    return json_response(user.public())


async def rate_limit_state(request: web.Request) -> web.Response:
    """``{identifier}`` is ``user:<id>``, a bare user id, an email, ``ip:<address>`` or a bare address."""
    require_admin(request[PRINCIPAL].identity)
    key, tier = await _resolve(request, request.match_info["identifier"])
    settings = request.app[SETTINGS].rate_limits
    limit = settings.limits[tier]
    decision = await request.app[LIMITER].peek(key, limit)
    return json_response(
        {
            "identifier": request.match_info["identifier"],
            "key": key,
            "tier": tier,
            "limit": limit,
            "used": limit - decision.remaining,
            "remaining": decision.remaining,
            "reset_seconds": round(decision.reset, 3),
            "window_seconds": settings.window,
            "limited": not decision.allowed,
        }
    )


async def _resolve(request: web.Request, identifier: str) -> tuple[str, Tier]:
    kind, _, value = identifier.partition(":")
    if kind == "ip" or _is_address(identifier):
        address = value if kind == "ip" else identifier
        if not _is_address(address):  # names no client, as an unknown email names no user
            raise Problem(404, "Not Found", "No such address: ip: must be followed by an IPv4 or IPv6 address.")
        return f"ip:{ipaddress.ip_address(address)}", "anonymous"
    users = request.app[USERS]
    if kind == "user" or identifier.isdigit():
        raw = value if kind == "user" else identifier
        user = await users.by_id(int(raw)) if raw.isdigit() and len(raw) < 19 else None
    else:
        user = await users.by_email(identifier)
    if user is None:
        raise Problem(404, "Not Found", "No such user.")
    return f"user:{user.id}", user.tier


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def add_account_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/users", list_users)
    app.router.add_patch("/api/v1/admin/users/{id}", update_user)
    app.router.add_get("/api/v1/admin/rate-limits/{identifier}", rate_limit_state)
