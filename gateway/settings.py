"""Gateway settings, parsed once from the environment into a frozen dataclass.

Every variable is read here and nowhere else. A bad value stops the process with one line naming the variable
(:class:`~shared.settings.SettingsError`); production refuses development secrets and short HMAC keys.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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


# Cross-origin calls (gateway.cors): what a page on another origin may send.
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-API-Key",
    "X-Request-ID",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "traceparent",
    "tracestate",
)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")  # an RFC 9110 token


def _origin(value: str) -> str:
    """``scheme://host[:port]`` as a browser serialises it in ``Origin`` (lower case, no default port)."""
    if value == "*":
        return value
    problem = f"CORS_ALLOW_ORIGINS: {value!r} is not an origin (expected * or http(s)://host[:port], no path)"
    try:
        parts = urlsplit(value.lower())
        port = parts.port
    except ValueError:
        raise SettingsError(problem) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not value.isascii()
        or "*" in value
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise SettingsError(problem)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default_port else "")


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Cross-origin calls (``gateway.cors``): off when ``allow_origins`` is empty, any page when it is ``("*",)``."""

    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    allow_credentials: bool
    max_age: int

    @property
    def any_origin(self) -> bool:
        return self.allow_origins == ("*",)

    @classmethod
    def from_env(cls, env: Env) -> CorsSettings:
        origins = tuple(dict.fromkeys(_origin(item) for item in env.items("CORS_ALLOW_ORIGINS")))
        if "*" in origins and len(origins) > 1:
            raise SettingsError("CORS_ALLOW_ORIGINS: * cannot be combined with listed origins")
        methods = env.items("CORS_ALLOW_METHODS", DEFAULT_CORS_METHODS)
        for method in methods:
            if method not in CORS_METHODS:
                raise SettingsError(f"CORS_ALLOW_METHODS: {method!r} is not one of {', '.join(CORS_METHODS)}")
        headers = env.items("CORS_ALLOW_HEADERS", DEFAULT_CORS_HEADERS)
        for header in headers:
            if not _HEADER_NAME.fullmatch(header) or header == "*":
                raise SettingsError(f"CORS_ALLOW_HEADERS: {header!r} is not a header name (and * is not allowed)")
        credentials = env.choice("CORS_ALLOW_CREDENTIALS", "false", ("true", "false")) == "true"
        if credentials and origins == ("*",):
            # Browsers refuse `*` with credentials; reflecting the caller's Origin instead would hand every site
            # the user's cookies. Credentials need the origins listed.
            raise SettingsError("CORS_ALLOW_CREDENTIALS=true: not allowed with CORS_ALLOW_ORIGINS=*; list the origins")
        return cls(
            allow_origins=origins,
            allow_methods=tuple(dict.fromkeys(methods)),
            allow_headers=tuple(dict.fromkeys(headers)),
            allow_credentials=credentials,
            max_age=env.integer("CORS_MAX_AGE", 600, minimum=0, maximum=86_400),
        )


@dataclass(frozen=True, slots=True)
class HttpCacheSettings:
    """How long browsers (``max_age``) and shared caches (``s_maxage``) may reuse an anonymous read
    (``gateway.caching``). The defaults follow the apiserver cache's own TTLs (``CacheConfig``): a CDN holds a
    list no longer than the apiserver would without invalidation (CACHE_LIST_TTL 30 s), s-maxage plus
    stale-while-revalidate is a resource's CACHE_TTL (60 s), stale-if-error is CACHE_STALE_TTL (600 s), and a
    browser, which nothing can purge, keeps a copy CACHE_NEGATIVE_TTL (5 s)."""

    max_age: int = 5
    s_maxage: int = 30
    stale_while_revalidate: int = 30
    stale_if_error: int = 600

    @classmethod
    def from_env(cls, env: Env) -> HttpCacheSettings:
        default = cls()
        return cls(
            max_age=env.integer("HTTP_CACHE_MAX_AGE", default.max_age, minimum=0, maximum=86_400),
            s_maxage=env.integer("HTTP_CACHE_S_MAXAGE", default.s_maxage, minimum=0, maximum=86_400),
            stale_while_revalidate=env.integer(
                "HTTP_CACHE_STALE_WHILE_REVALIDATE", default.stale_while_revalidate, minimum=0, maximum=86_400
            ),
            stale_if_error=env.integer("HTTP_CACHE_STALE_IF_ERROR", default.stale_if_error, minimum=0, maximum=604_800),
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
    upstream_max_age: float  # 0: a balancer connection lives as long as it stays fit
    pg_pool_size: int
    stream_interval: float
    dashboard_dir: Path
    metrics_allow: tuple[IPNetwork, ...]
    cors: CorsSettings
    http_cache: HttpCacheSettings

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
            upstream_max_age=env.number("UPSTREAM_MAX_CONNECTION_AGE", 60.0, minimum=0.0),
            pg_pool_size=env.integer("PG_POOL_SIZE", 10, minimum=1, maximum=500),
            stream_interval=env.number("ADMIN_STREAM_INTERVAL", 1.0, minimum=0.05),
            dashboard_dir=Path(env.text("DASHBOARD_DIR", str(DEFAULT_DASHBOARD_DIR))),
            metrics_allow=env.networks("METRICS_ALLOW") or PRIVATE_NETWORKS,
            cors=CorsSettings.from_env(env),
            http_cache=HttpCacheSettings.from_env(env),
        )


def _url(env: Env, name: str, default: str) -> str:
    value = env.text(name, default).rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={value!r}: expected an http:// or https:// URL")
    return value
