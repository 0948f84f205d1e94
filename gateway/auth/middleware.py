"""Who is calling: every request gets a :class:`Principal` before rate limiting and routing.

``Authorization: Bearer <jwt>`` or ``X-API-Key: <key>`` authenticate; a credential that is present but bad is
a 401 right here (a client that sent one expects to be recognised; silently downgrading it to anonymous
would hide the error). No credential means anonymous, limited per client address, where the address is the
peer unless the peer is a trusted proxy (``shared.netaddr``): a client cannot pick its own limit key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.auth.apikeys import ApiKeys
from gateway.auth.principal import Principal, anonymous
from gateway.auth.token_cache import TokenVerifier
from gateway.auth.tokens import InvalidToken
from gateway.keys import PRINCIPAL
from shared.authz import require_user
from shared.errors import Problem
from shared.identity import Identity
from shared.netaddr import IPNetwork, client_address

API_KEY_HEADER = "X-API-Key"


def unauthorized(detail: str, *, error: str | None = "invalid_token") -> Problem:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def bearer_token(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("The Authorization header must be 'Bearer <token>'.")
    if not token.isascii():  # a JWT is base64url; bytes that are not UTF-8 arrive here as lone surrogates
        raise unauthorized("The access token is invalid or expired.")
    return token.strip()


def authentication_middleware(
    *,
    tokens: TokenVerifier,
    api_keys: Callable[[], ApiKeys],
    trusted_proxies: Sequence[IPNetwork],
    exempt: Collection[str] = (),
) -> Middleware:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in exempt:
            return await handler(request)
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted_proxies)
        request[PRINCIPAL] = await principal_of(request, address, tokens, api_keys)
        return await handler(request)

    return authenticate


async def principal_of(
    request: web.Request, address: str, tokens: TokenVerifier, api_keys: Callable[[], ApiKeys]
) -> Principal:
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        try:
            claims = tokens.verify(token)
        except InvalidToken:
            raise unauthorized("The access token is invalid or expired.") from None
        identity = Identity(user_id=claims.user_id, role=claims.role, tier=claims.tier, method="jwt")
        return Principal(
            identity=identity,
            client_address=address,
            token_id=claims.token_id,
            family_id=claims.family_id,
            expires_at=claims.expires_at,
        )
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        # Keys are ASCII; anything else (bytes that are not UTF-8 arrive as lone surrogates) matches no key.
        owner = await api_keys().authenticate(key.strip()) if key.isascii() else None
        if owner is None:
            raise unauthorized("The API key is invalid or revoked.")
        identity = Identity(user_id=owner.user_id, role=owner.role, tier=owner.tier, method="api_key")
        return Principal(identity=identity, client_address=address, key_id=owner.key_id)
    return anonymous(address)


def signed_in(request: web.Request) -> Principal:
    """The caller's principal when it is signed in (JWT or API key), else the shared 401 (:mod:`shared.authz`)."""
    principal = request[PRINCIPAL]
    require_user(principal.identity)
    return principal
