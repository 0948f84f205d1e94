"""JWT attacks against the running gateway that ``tests/gateway/test_jwt_attacks.py`` does not cover:
algorithm confusion against an RS256 gateway (HS256 signed with its public key), ``kid``/``jku``/``jwk`` header
tricks, claims tampered under the original signature, and replay of access and refresh tokens after logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from database.accounts import DEV_USER
from shared.settings import DEV_JWT_SECRET
from stack.services.ports import free_port
from tests.resilience.report import Sample, record
from tests.security.conftest import NO_LOGIN_LIMITS
from tests.support.processes import SuiteProcess, start_process, suite_env
from tests.support.stack import UNLIMITED, Stack

pytestmark = pytest.mark.e2e


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """HS256 signed by hand with any key (PyJWT refuses PEM keys as HMAC secrets; an attacker's tool does not)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "scalable-api", "aud": "scalable-api", "sub": "1", "iat": now, "exp": now + 300}
    return {**base, "jti": "attack-token-0001", "role": "admin", "tier": "enterprise", **overrides}


def unsigned(alg: str, payload: str) -> str:
    return f"{b64(json.dumps({'alg': alg}).encode())}.{payload}."


def retampered(token: str, **changes: Any) -> str:
    """``token`` with claims changed but its original signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64(json.dumps({**decoded, **changes}).encode())}.{signature}"


@pytest.fixture(scope="module")
def rsa_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SuiteProcess, bytes]]:
    """A second gateway on the same stack that signs access tokens with RS256."""
    tmp: Path = tmp_path_factory.mktemp("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp / "private.pem").write_bytes(private)
    (tmp / "public.pem").write_bytes(public)
    env = suite_env(
        DATABASE_URL=stack.database_url,
        REDIS_URL=stack.redis_url,
        BALANCER_URL=stack.balancer.url,
        JWT_ALGORITHM="RS256",
        JWT_PRIVATE_KEY_FILE=str(tmp / "private.pem"),
        JWT_PUBLIC_KEY_FILE=str(tmp / "public.pem"),
        INSTANCE_ID="gateway-rsa",
        **NO_LOGIN_LIMITS,
        **UNLIMITED,
    )
    process = start_process("gateway", free_port(), tmp, env)
    try:
        yield process, public
    finally:
        process.stop()


async def _me(http: aiohttp.ClientSession, base: str, token: str) -> int:
    async with http.get(base + "/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as response:
        await response.read()
        return response.status


async def test_forged_headers_and_tampered_claims_are_refused(
    stack: Stack, rsa_gateway: tuple[SuiteProcess, bytes], http: aiohttp.ClientSession
) -> None:
    rsa_process, public_pem = rsa_gateway
    async with http.post(rsa_process.url + "/api/v1/auth/login", json=DEV_USER.login) as response:
        assert response.status == 200
        rsa_token = (await response.json())["token"]
    session = await stack.login(http, DEV_USER.login)
    hs_token = session["token"]
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    secret = DEV_JWT_SECRET.encode()
    on_rsa = {
        "HS256 signed with the RS256 public key": hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), public_pem),
        "HS256 with the public key, stripped of newlines": hand_signed(
            {"alg": "HS256"}, claims(), public_pem.replace(b"\n", b"")
        ),
        "embedded attacker jwk": jwt.encode(claims(), attacker, algorithm="RS256", headers={"jwk": attacker_jwk}),
        "jku to an attacker's key set": jwt.encode(
            claims(), attacker, algorithm="RS256", headers={"jku": "http://127.0.0.1:9/keys.json"}
        ),
        "RS256 token with sub changed": retampered(rsa_token, sub="1", role="admin", tier="enterprise"),
    }
    on_hs = {
        "kid path traversal to /dev/null, empty key": hand_signed(
            {"alg": "HS256", "kid": "../../../../../../dev/null"}, claims(), b""
        ),
        "kid SQL injection": hand_signed({"alg": "HS256", "kid": "x' UNION SELECT 'k' --"}, claims(), b"k"),
        "kid naming a file, keyed with its name": hand_signed(
            {"alg": "HS256", "kid": "/proc/self/environ"}, claims(), b"/proc/self/environ"
        ),
        "alg 'None' (capitalised)": unsigned("None", b64(json.dumps(claims()).encode())),
        "alg 'nOnE' over a real token's claims": unsigned("nOnE", hs_token.split(".")[1]),
        "sub changed to another user": retampered(hs_token, sub="1"),
        "tier raised to enterprise": retampered(hs_token, tier="enterprise"),
        "exp extended by a year": retampered(hs_token, exp=int(time.time()) + 365 * 86400),
        "signature of another token": ".".join([*retampered(hs_token, jti="other-token-0002").split(".")[:2], "x"]),
        "empty signature": ".".join([*hs_token.split(".")[:2], ""]),
        "unknown crit extension, right secret": hand_signed({"alg": "HS256", "crit": ["bogus"]}, claims(), secret),
    }
    results = {name: await _me(http, rsa_process.url, token) for name, token in on_rsa.items()}
    results |= {name: await _me(http, stack.gateway, token) for name, token in on_hs.items()}
    accepted = {name: status for name, status in results.items() if status != 401}
    record(
        "security",
        "jwt_attacks",
        title=f"JWT attacks: {len(results)} forged or tampered tokens",
        guarantee="every forgery is a 401",
        samples=[Sample(name, status, 0.0, 0.0) for name, status in results.items()],
        failed=len(accepted),
        extra={"accepted": accepted},
    )
    assert accepted == {}
    assert await _me(http, rsa_process.url, rsa_token) == 200
    assert await _me(http, stack.gateway, hs_token) == 200


async def test_tokens_replayed_after_logout_are_refused(stack: Stack, http: aiohttp.ClientSession) -> None:
    first = await stack.login(http, DEV_USER.login)
    auth = {"Authorization": f"Bearer {first['token']}"}
    async with http.post(stack.gateway + "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}) as r:
        assert r.status == 200
        rotated = await r.json()
    # Reusing the rotated-away refresh token revokes the whole family: both access tokens stop working.
    async with http.post(stack.gateway + "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}) as r:
        assert r.status == 401
    assert await _me(http, stack.gateway, rotated["token"]) == 401
    assert await _me(http, stack.gateway, first["token"]) == 401

    session = await stack.login(http, DEV_USER.login)
    auth = {"Authorization": f"Bearer {session['token']}"}
    assert await _me(http, stack.gateway, session["token"]) == 200
    async with http.post(stack.gateway + "/api/v1/auth/logout", headers=auth) as response:
        assert response.status == 204
    replays = {
        "access token": await _me(http, stack.gateway, session["token"]),
        "write with the access token": 0,
        "refresh token": 0,
    }
    async with http.post(
        stack.gateway + "/api/v1/resources", json={"name": "after logout", "type": "x"}, headers=auth
    ) as response:
        replays["write with the access token"] = response.status
    async with http.post(stack.gateway + "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}) as r:
        replays["refresh token"] = r.status
    assert replays == dict.fromkeys(replays, 401)
