"""Gateway settings, parsed once from the environment into a frozen dataclass.

Every variable is read here and nowhere else. A bad value stops the process with one line naming the variable
(:class:`~shared.settings.SettingsError`); production refuses development secrets and short HMAC keys.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.identity import Tier
from shared.netaddr import IPNetwork
from shared.settings import DEV_JWT_SECRET, CommonSettings, Env, SettingsError

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
# Requests per RATE_LIMIT_WINDOW, overridden by RATE_LIMIT_<TIER>; one entry per Tier (tests/unit/test_vocabulary.py).
DEFAULT_TIER_LIMITS: Mapping[Tier, int] = {"anonymous": 100, "free": 1_000, "pro": 10_000, "enterprise": 100_000}
# The built admin dashboard when DASHBOARD_DIR is unset: <repo>/frontend/dist beside this package.
DEFAULT_DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "frontend" / "dist"


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """How access tokens are signed and checked. ``signing_key`` is the HMAC secret or a PEM private key."""

    algorithm: str
    signing_key: str
    verifying_key: str
    issuer: str
    audience: str
    access_ttl: int

    @classmethod
    def from_env(cls, env: Env, common: CommonSettings) -> JwtSettings:
        algorithm = env.choice("JWT_ALGORITHM", "HS256", HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS)
        if algorithm in HMAC_ALGORITHMS:
            secret = env.text("JWT_SECRET", DEV_JWT_SECRET)
            common.check_secret("JWT_SECRET", secret)
            minimum = int(algorithm[2:]) // 8  # RFC 7518 3.2: a key at least as long as the hash output
            if len(secret.encode()) < minimum:
                raise SettingsError(f"JWT_SECRET: must be at least {minimum} bytes for {algorithm}")
            signing, verifying = secret, secret
        else:
            signing = _read_pem(env, "JWT_PRIVATE_KEY_FILE")
            verifying = _read_pem(env, "JWT_PUBLIC_KEY_FILE")
        return cls(
            algorithm=algorithm,
            signing_key=signing,
            verifying_key=verifying,
            issuer=env.text("JWT_ISSUER", "scalable-api"),
            audience=env.text("JWT_AUDIENCE", "scalable-api"),
            access_ttl=env.integer("ACCESS_TOKEN_TTL", 900, minimum=10, maximum=86_400),
        )


def _read_pem(env: Env, name: str) -> str:
    path = env.raw(name)
    if path is None:
        raise SettingsError(f"{name}: required when JWT_ALGORITHM is asymmetric")
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(f"{name}={path!r}: cannot read ({exc.strerror})") from None


# Who may read the gateway's /metrics (the client address, computed with TRUSTED_PROXIES): loopback and private
# ranges, where Prometheus runs; the public internet gets 404.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Per-tier limits over one sliding window; ``fail_open`` picks what happens while Redis is unreachable."""

    limits: Mapping[Tier, int]
    window: float
    buckets: int
    fail_open: bool

    @classmethod
    def from_env(cls, env: Env) -> RateLimitSettings:
        limits = {
            tier: env.integer(f"RATE_LIMIT_{tier.upper()}", default, minimum=1)
            for tier, default in DEFAULT_TIER_LIMITS.items()
        }
        return cls(
            limits=limits,
            window=env.number("RATE_LIMIT_WINDOW", 60.0, minimum=1.0, maximum=86_400.0),
            buckets=env.integer("RATE_LIMIT_BUCKETS", 60, minimum=1, maximum=600),
            fail_open=env.choice("RATE_LIMIT_ON_REDIS_FAILURE", "open", ("open", "closed")) == "open",
        )


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    common: CommonSettings
    database_url: str
    redis_url: str
    balancer_url: str
    apiserver_urls: tuple[str, ...]
    port: int
    jwt: JwtSettings
    rate_limits: RateLimitSettings
    refresh_ttl: int
    api_key_cache_ttl: float
    login_max_failures_account: int
    login_max_failures_address: int
    login_failure_window: int
    max_body_bytes: int
    max_header_bytes: int
    max_in_flight: int
    client_timeout: float
    upstream_timeout: float
    upstream_connections: int
    pg_pool_size: int
    stream_interval: float
    dashboard_dir: Path
    metrics_allow: tuple[IPNetwork, ...]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, port: int | None = None) -> GatewaySettings:
        env = Env(environ)
        common = CommonSettings.from_env(environ, service="gateway")
        database_url, redis_url = common.required_stores()
        return cls(
            common=common,
            database_url=database_url,
            redis_url=redis_url,
            balancer_url=_url(env, "BALANCER_URL", "http://127.0.0.1:3000"),
            apiserver_urls=tuple(url.rstrip("/") for url in env.items("APISERVER_URLS")),
            port=port if port is not None else env.integer("PORT", 8080, minimum=1, maximum=65535),
            jwt=JwtSettings.from_env(env, common),
            rate_limits=RateLimitSettings.from_env(env),
            refresh_ttl=env.integer("REFRESH_TOKEN_TTL", 30 * 86_400, minimum=60),
            api_key_cache_ttl=env.number("API_KEY_CACHE_TTL", 1.0, minimum=0.0, maximum=1.0),
            login_max_failures_account=env.integer("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5, minimum=1),
            login_max_failures_address=env.integer("LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1),
            login_failure_window=env.integer("LOGIN_FAILURE_WINDOW", 900, minimum=1),
            max_body_bytes=env.integer("MAX_BODY_BYTES", 256 * 1024, minimum=1024),
            max_header_bytes=env.integer("MAX_HEADER_BYTES", 8190, minimum=1024, maximum=65536),
            max_in_flight=env.integer("MAX_IN_FLIGHT", 1024, minimum=1),
            client_timeout=env.number("CLIENT_TIMEOUT", 15.0, minimum=0.5),
            upstream_timeout=env.number("UPSTREAM_TIMEOUT", 30.0, minimum=0.1),
            upstream_connections=env.integer("UPSTREAM_CONNECTIONS", 256, minimum=1),
            pg_pool_size=env.integer("PG_POOL_SIZE", 10, minimum=1, maximum=500),
            stream_interval=env.number("ADMIN_STREAM_INTERVAL", 1.0, minimum=0.05),
            dashboard_dir=Path(env.text("DASHBOARD_DIR", str(DEFAULT_DASHBOARD_DIR))),
            metrics_allow=env.networks("METRICS_ALLOW") or PRIVATE_NETWORKS,
        )


def _url(env: Env, name: str, default: str) -> str:
    value = env.text(name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r}: expected an http:// or https:// URL")
    return value
