"""The authentication API: login, refresh, logout, ``/me`` and the caller's API keys.

Login verifies with argon2id in a worker thread (the event loop keeps serving), verifies against a dummy hash
when the email is unknown or disabled (same work, same timing, no account enumeration), and counts failures
per account and per client address (429 with ``Retry-After`` past the limit).
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from gateway.auth.apikeys import MAX_KEYS_PER_USER, TooManyKeys
from gateway.auth.middleware import signed_in, unauthorized
from gateway.auth.refresh import InvalidRefresh, RefreshReused
from gateway.auth.revocation import revoke_access_tokens
from gateway.auth.users import User
from gateway.http import json_response, only_fields, path_id, text_field
from gateway.keys import API_KEYS, PRINCIPAL, REFRESH, STATS, THROTTLE, TOKENS, USERS
from shared.bodies import read_json_object
from shared.errors import Problem
from shared.keys import REDIS
from shared.passwords import dummy_hash, hash_password, needs_rehash, verify_password

AUTH_BODY_MAX = 16 * 1024
_log = structlog.get_logger("gateway.auth")


def _session(request: web.Request, user: User, refresh_token: str, family_id: str) -> web.Response:
    token, claims = request.app[TOKENS].issue(user_id=user.id, role=user.role, tier=user.tier, family_id=family_id)
    body = {
        "token": token,
        "token_type": "Bearer",
        "expires_in": claims.expires_at - int(request.app[TOKENS].now()),
        "refresh_token": refresh_token,
        "user": user.public(),
    }
    return json_response(body, headers={"Cache-Control": "no-store"})


async def _check_password(request: web.Request, email: str, password: str) -> User:
    users, throttle = request.app[USERS], request.app[THROTTLE]
    address = request[PRINCIPAL].client_address
    wait = await throttle.blocked_for(email, address)
    if wait is not None:
        raise Problem(
            429,
            "Too Many Requests",
            "Too many failed sign-ins; try again later.",
            type_="login-throttled",
            headers={"Retry-After": str(wait)},
        )
    user = await users.by_email(email)
    usable = user is not None and not user.disabled
    stored = user.password_hash if user is not None and usable else dummy_hash()
    matches = await asyncio.to_thread(verify_password, stored, password)
    if not (matches and usable and user is not None):
        await throttle.failed(email, address)
        request.app[STATS].login("failed")
        raise unauthorized("Invalid email or password.", error=None)
    await throttle.succeeded(email)
    if needs_rehash(user.password_hash):
        await users.set_password_hash(user.id, await asyncio.to_thread(hash_password, password))
    return user


async def login(request: web.Request) -> web.Response:
    body = only_fields(await read_json_object(request, max_body=AUTH_BODY_MAX), "email", "password")
    email = text_field(body, "email", max_length=320)
    password = text_field(body, "password", max_length=1024)
    user = await _check_password(request, email.strip(), password)
    refresh_token, family_id = await request.app[REFRESH].issue(user.id)
    request.app[STATS].login("succeeded")
    _log.info("login", user_id=user.id)
    return _session(request, user, refresh_token, family_id)


async def refresh(request: web.Request) -> web.Response:
    body = only_fields(await read_json_object(request, max_body=AUTH_BODY_MAX), "refresh_token")
    token = text_field(body, "refresh_token", max_length=256)
    try:
        rotation = await request.app[REFRESH].rotate(token)
    except RefreshReused as reuse:
        _log.warning("refresh_token_reused", family_id=reuse.family_id)
        await _block_family(request, reuse.family_id, reuse.user_id)
        raise unauthorized("The refresh token was already used; every session of that login is now revoked.") from None
    except InvalidRefresh:
        raise unauthorized("The refresh token is invalid, expired or revoked.") from None
    return _session(request, rotation.user, rotation.token, rotation.family_id)


async def _block_family(request: web.Request, family_id: str, user_id: int) -> None:
    try:
        await revoke_access_tokens(
            request.app[REDIS], user_id=user_id, family_id=family_id, access_ttl=request.app[TOKENS].ttl
        )
    except (RedisError, OSError) as exc:
        _log.warning("family_access_revocation_failed", family_id=family_id, error=type(exc).__name__)


async def logout(request: web.Request) -> web.Response:
    """Revoke the caller's refresh family (durably) and its access tokens (until they expire)."""
    principal = signed_in(request)
    family_id = principal.family_id
    if request.body_exists:
        body = only_fields(await read_json_object(request, max_body=AUTH_BODY_MAX), "refresh_token")
        token = text_field(body, "refresh_token", max_length=256)
        family_id = family_id or await request.app[REFRESH].family_of(token, principal.identity.user_id or 0)
    if family_id is not None:
        await request.app[REFRESH].revoke_family(family_id)
    try:
        await revoke_access_tokens(
            request.app[REDIS],
            user_id=principal.identity.user_id or 0,
            token_id=principal.token_id,
            token_expires_at=principal.expires_at,
            family_id=family_id,
            access_ttl=request.app[TOKENS].ttl,
        )
    except (RedisError, OSError):
        raise Problem(
            503,
            "Service Unavailable",
            "The session's refresh token is revoked, but its access token could not be; retry the logout.",
            type_="logout-incomplete",
            headers={"Retry-After": "1"},
        ) from None
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    principal = signed_in(request)
    user = await request.app[USERS].by_id(principal.identity.user_id or 0)
    if user is None or user.disabled:
        raise unauthorized("The account no longer exists or is disabled.")
    return json_response({**user.public(), "auth_method": principal.identity.method})


def _require_token_session(request: web.Request) -> int:
    """Key management needs a signed-in session: a leaked API key must not be able to mint more keys."""
    principal = signed_in(request)
    if principal.identity.method != "jwt":
        raise Problem(403, "Forbidden", "Manage API keys with a signed-in session, not with an API key.")
    return principal.identity.user_id or 0


async def create_key(request: web.Request) -> web.Response:
    user_id = _require_token_session(request)
    body = only_fields(await read_json_object(request, max_body=AUTH_BODY_MAX), "name")
    name = text_field(body, "name", max_length=100)
    try:
        key, info = await request.app[API_KEYS].create(user_id, name.strip())
    except TooManyKeys:
        raise Problem(409, "Conflict", f"At most {MAX_KEYS_PER_USER} active keys per account.") from None
    return json_response({**info.public(), "key": key}, status=201, headers={"Cache-Control": "no-store"})


async def list_keys(request: web.Request) -> web.Response:
    user_id = _require_token_session(request)
    keys = await request.app[API_KEYS].list(user_id)
    return json_response({"data": [key.public() for key in keys]})


async def delete_key(request: web.Request) -> web.Response:
    user_id = _require_token_session(request)
    if not await request.app[API_KEYS].revoke(user_id, path_id(request)):
        raise Problem(404, "Not Found", "No such API key.")
    return web.Response(status=204)


def add_auth_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/login", login)
    app.router.add_post("/api/v1/auth/refresh", refresh)
    app.router.add_post("/api/v1/auth/logout", logout)
    app.router.add_get("/api/v1/me", me)
    app.router.add_get("/api/v1/keys", list_keys)
    app.router.add_post("/api/v1/keys", create_key)
    app.router.add_delete("/api/v1/keys/{id}", delete_key)
