"""Forged, expired or incomplete access tokens are all 401; a correct one works."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from database.accounts import DEV_USER
from shared.settings import DEV_JWT_SECRET

# The gateway app here runs over the suite's real PostgreSQL and Redis.
pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "scalable-api",
        "aud": "scalable-api",
        "sub": "1",
        "iat": now,
        "exp": now + 300,
        "jti": "token-id-1234567",
        "role": "admin",
        "tier": "enterprise",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _unsigned(payload: dict[str, Any]) -> str:
    return jwt.encode(payload, key=None, algorithm="none")  # type: ignore[arg-type]


FORGERIES: dict[str, Callable[[], str]] = {
    "alg none": lambda: _unsigned(claims()),
    "wrong algorithm (HS512 with the right secret)": lambda: _hmac_token("HS512", hashlib.sha512),
    "wrong algorithm (RS256)": lambda: jwt.encode(claims(), _rsa_pem(), algorithm="RS256"),
    "bad signature": lambda: jwt.encode(claims(), "another-secret-that-is-long-enough-000000", algorithm="HS256"),
    "tampered payload": lambda: _tamper(jwt.encode(claims(role="user"), DEV_JWT_SECRET, algorithm="HS256")),
    "expired": lambda: jwt.encode(claims(iat=1_000, exp=2_000), DEV_JWT_SECRET, algorithm="HS256"),
    "wrong audience": lambda: jwt.encode(claims(aud="someone-else"), DEV_JWT_SECRET, algorithm="HS256"),
    "wrong issuer": lambda: jwt.encode(claims(iss="evil"), DEV_JWT_SECRET, algorithm="HS256"),
    "missing exp": lambda: jwt.encode(claims(exp=None), DEV_JWT_SECRET, algorithm="HS256"),
    "missing jti": lambda: jwt.encode(claims(jti=None), DEV_JWT_SECRET, algorithm="HS256"),
    "missing sub": lambda: jwt.encode(claims(sub=None), DEV_JWT_SECRET, algorithm="HS256"),
    "missing role": lambda: jwt.encode(claims(role=None), DEV_JWT_SECRET, algorithm="HS256"),
    "unknown role": lambda: jwt.encode(claims(role="root"), DEV_JWT_SECRET, algorithm="HS256"),
    "not a jwt": lambda: "definitely.not.ajwt",
}


def _hmac_token(alg: str, digest: Any) -> str:
    """Signed by hand: PyJWT (rightly) refuses a 46-byte key for HS512, an attacker's tooling does not."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(DEV_JWT_SECRET.encode(), signing_input, digest).digest())
    return (signing_input + b"." + signature).decode()


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(jwt.utils.base64url_decode(payload).replace(b'"user"', b'"admin"'))
    return f"{header}.{forged.decode()}.{signature}"


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_bad_tokens_are_refused(gateway: Client, forgery: str) -> None:
    token = FORGERIES[forgery]()
    response = await gateway.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert "Bearer" in response.headers["WWW-Authenticate"]
    # A forged admin token reaches no admin route either.
    admin = await gateway.get("/api/v1/admin/dashboard", headers={"Authorization": f"Bearer {token}"})
    assert admin.status == 401


async def test_a_correct_token_is_accepted(gateway: Client) -> None:
    token = jwt.encode(claims(sub="2", role="user", tier="free"), DEV_JWT_SECRET, algorithm="HS256")
    response = await gateway.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert (await response.json())["email"] == DEV_USER.email


async def test_malformed_authorization_header_is_refused(gateway: Client) -> None:
    response = await gateway.get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status == 401
