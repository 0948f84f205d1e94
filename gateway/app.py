"""The gateway application factory (no I/O here: connections open in cleanup contexts at start-up).

Request path, outermost first::

    request context (X-Request-ID, traceparent) ─► metrics ─► problem+json errors
      ─► edge hygiene (canonical path, JSON bodies, size, in-flight shedding; CORS preflights answered here)
      ─► authentication (JWT | API key | anonymous by client address)
      ─► rate limit (one Redis round trip: decide, count, revocation check)
      ─► gateway handlers (auth, keys, admin, docs) | proxy allow-list ─► balancer

``/health``, ``/ready`` and ``/metrics`` skip authentication and rate limiting: probes must never be refused.
CORS preflights (``gateway.cors``) never reach authentication or the API's limits: a per-address guard in the
edge bounds them.
The dashboard's static files (``/dashboard/...``) skip the API's rate limits and guard themselves (see
``gateway.dashboard``); its API calls are limited like any other.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from database.accounts import DEV_ACCOUNTS
from gateway.admin.accounts import add_account_routes
from gateway.admin.routes import add_admin_routes, gateway_snapshot
from gateway.admin.stream import add_stream_route
from gateway.admin.upstream import AdminClient
from gateway.auth.apikeys import ApiKeys
from gateway.auth.middleware import authentication_middleware
from gateway.auth.refresh import RefreshTokens
from gateway.auth.routes import add_auth_routes
from gateway.auth.throttle import LoginThrottle
from gateway.auth.token_cache import VerifiedTokenCache
from gateway.auth.tokens import AccessTokens
from gateway.auth.users import UserRepository
from gateway.cors import Cors
from gateway.dashboard import RATE_LIMIT_EXEMPT_PATHS, RATE_LIMIT_EXEMPT_PREFIXES, add_dashboard_routes
from gateway.edge import edge_middleware
from gateway.fleet import fleet_heartbeat
from gateway.keys import ADMIN, API_KEYS, LIMITER, REFRESH, SETTINGS, STATS, THROTTLE, TOKENS, UPSTREAM, USERS
from gateway.openapi import add_openapi_route
from gateway.proxying import add_proxy_routes
from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.failover import FailoverRateLimiter
from gateway.ratelimit.local import LocalRateLimiter
from gateway.ratelimit.middleware import rate_limit_middleware
from gateway.ratelimit.redis import RedisRateLimiter
from gateway.settings import GatewaySettings
from gateway.stats import GatewayStats
from shared.context import request_middleware
from shared.health import add_health_routes
from shared.keys import INSTANCE_ID, METRICS, PG_POOL, REDIS, SERVICE, RedisClient
from shared.metrics import Metrics
from shared.netaddr import client_address
from shared.passwords import verify_password
from shared.resources import make_redis, pg_context
from shared.settings import SettingsError
from shared.shutdown import closing
from shared.tracing import Tracing
from shared.upstream import Upstream

PROBES = frozenset({"/health", "/ready", "/metrics"})
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


async def close_redis(app: web.Application) -> AsyncIterator[None]:
    yield
    await closing("rate limiter", app[LIMITER].close)  # its pipelined connection first, then the client's pool
    await closing("redis client", app[REDIS].aclose)


async def close_upstream(app: web.Application) -> AsyncIterator[None]:
    yield
    await closing("balancer connections", app[UPSTREAM].close)


def stores_context(settings: GatewaySettings) -> CleanupContext:
    async def stores(app: web.Application) -> AsyncIterator[None]:
        pool = app[PG_POOL]
        users = UserRepository(pool)
        app[USERS] = users
        app[REFRESH] = RefreshTokens(pool, ttl=settings.refresh_ttl)
        if settings.common.production:
            await refuse_seeded_passwords(users)
        session = aiohttp.ClientSession(auto_decompress=True)
        app[ADMIN] = AdminClient(
            session,
            app[REDIS],
            balancer_url=settings.balancer_url,
            apiserver_urls=settings.apiserver_urls,
            secret=settings.common.internal_secret,
        )
        try:
            yield
        finally:
            with suppress(Exception):
                await app[API_KEYS].close()
            await session.close()

    return stores


async def refuse_seeded_passwords(users: UserRepository) -> None:
    """Production never runs with the documented development logins still working."""
    for account in DEV_ACCOUNTS:
        user = await users.by_email(account.email)
        if user is not None and verify_password(user.password_hash, account.password):
            raise SettingsError(f"{account.email} still has its development password; change it before production")


def build_limiter(settings: GatewaySettings, redis: RedisClient, metrics: Metrics) -> FailoverRateLimiter:
    config = WindowConfig(window=settings.rate_limits.window, buckets=settings.rate_limits.buckets)
    return FailoverRateLimiter(
        RedisRateLimiter(
            redis,
            config,
            on_round_trip=Counter(
                "ratelimit_redis_round_trips", "Redis round trips made by the rate limiter.", registry=metrics.registry
            ).inc,
        ),
        LocalRateLimiter(config),
        fail_open=settings.rate_limits.fail_open,
        registry=metrics.registry,
    )


def middlewares(
    settings: GatewaySettings,
    app: web.Application,
    metrics: Metrics,
    stats: GatewayStats,
    tokens: AccessTokens,
    tracing: Tracing,
) -> list[Middleware]:
    return [
        # request id, traceparent and server span, metrics and problem+json in one layer
        request_middleware(metrics=metrics, tracing=tracing),
        edge_middleware(  # also answers CORS preflights and sets the CORS and no-store headers (gateway.cors)
            max_body=settings.max_body_bytes,
            max_in_flight=settings.max_in_flight,
            stats=stats,
            exempt=PROBES,
            cors=Cors(settings.cors, trusted_proxies=settings.common.trusted_proxies),
        ),
        authentication_middleware(
            tokens=VerifiedTokenCache(tokens),
            api_keys=lambda: app[API_KEYS],
            trusted_proxies=settings.common.trusted_proxies,
            exempt=PROBES,
        ),
        rate_limit_middleware(
            limiter=app[LIMITER],
            tiers=settings.rate_limits.limits,
            stats=stats,
            exempt=PROBES | RATE_LIMIT_EXEMPT_PATHS,
            exempt_prefixes=RATE_LIMIT_EXEMPT_PREFIXES,
        ),
    ]


def create_app(settings: GatewaySettings, *, clock: Callable[[], float] = time.time) -> web.Application:
    metrics = Metrics("gateway")
    stats = GatewayStats(metrics)
    redis = make_redis(settings.redis_url)
    tokens = AccessTokens(settings.jwt, clock=clock)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        handler_args={
            "max_line_size": settings.max_header_bytes,
            "max_field_size": settings.max_header_bytes,
            "max_headers": 64,
        },
    )
    app[SETTINGS], app[METRICS], app[STATS], app[SERVICE] = settings, metrics, stats, "gateway"
    app[INSTANCE_ID] = settings.common.instance_id
    app[REDIS], app[TOKENS] = redis, tokens
    app[LIMITER] = build_limiter(settings, redis, metrics)
    # The edge: a client's sampled flag counts only from TRUSTED_PROXIES (see shared.tracing).
    tracing = Tracing("gateway", settings.common.instance_id, trusted_callers=settings.common.trusted_proxies)
    app.middlewares.extend(middlewares(settings, app, metrics, stats, tokens, tracing))
    app[THROTTLE] = LoginThrottle(
        redis,
        max_per_account=settings.login_max_failures_account,
        max_per_address=settings.login_max_failures_address,
        window=settings.login_failure_window,
    )
    app[API_KEYS] = ApiKeys(lambda: app[PG_POOL], redis, cache_ttl=settings.api_key_cache_ttl)
    app[UPSTREAM] = Upstream(
        settings.balancer_url,
        max_connections=settings.upstream_connections,
        connect_timeout=1.0,
        timeout=settings.upstream_timeout,
        max_age=settings.upstream_max_age,  # re-spread over the balancer pods behind one Service address
    )
    app.cleanup_ctx.extend(
        [
            tracing.context,  # first in, last out: spans of the last requests are flushed after everything closed
            close_redis,
            close_upstream,
            pg_context(settings.database_url, max_size=settings.pg_pool_size),
            stores_context(settings),
            fleet_heartbeat(gateway_snapshot),  # this gateway's figures to Redis, once a second
        ]
    )
    _add_routes(app, metrics)
    return app


def _add_routes(app: web.Application, metrics: Metrics) -> None:
    async def check_postgres() -> None:
        await app[USERS].ping()

    async def check_redis() -> None:
        await app[REDIS].ping()

    settings = app[SETTINGS]

    def metrics_visible_to(request: web.Request) -> bool:
        client = client_address(request.remote, request.headers.get("X-Forwarded-For"), settings.common.trusted_proxies)
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in settings.metrics_allow if address.version == network.version)

    # The gateway serves without Redis (local limits) and, for tokens and anonymous callers, without
    # PostgreSQL; only both down makes it unready (failing readiness on a shared dependency would pull every
    # replica out of the load balancer at once).
    add_health_routes(
        app,
        metrics,
        {"postgres": check_postgres, "redis": check_redis},
        serves_without=lambda failing: len(failing) < 2,
        metrics_visible_to=metrics_visible_to,
    )
    add_openapi_route(app)
    add_auth_routes(app)
    add_admin_routes(app)
    add_account_routes(app)
    add_stream_route(app)
    add_dashboard_routes(app)
    add_proxy_routes(app)
