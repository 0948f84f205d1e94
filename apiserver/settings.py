"""API server settings, parsed once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import CommonSettings, Env


@dataclass(frozen=True, slots=True)
class ApiServerSettings:
    common: CommonSettings
    database_url: str
    replica_urls: tuple[str, ...]
    replica_poll_interval: float
    redis_url: str
    port: int
    pg_pool_size: int
    l1_max_entries: int
    cache_ttl: float
    cache_negative_ttl: float
    cache_list_ttl: float
    cache_stale_ttl: float
    external_failure_rate: float
    external_latency_ms: float
    external_breaker_fail_max: int
    external_breaker_reset: float
    heartbeat_interval: float
    max_body_bytes: int
    # Seconds an Idempotency-Key's stored response is kept (and a repeat replayed): 24 h, as Stripe.
    idempotency_ttl: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, port: int | None = None) -> ApiServerSettings:
        env = Env(environ)
        common = CommonSettings.from_env(environ, service="apiserver")
        database_url, redis_url = common.required_stores()
        return cls(
            common=common,
            database_url=database_url,
            replica_urls=env.items("DATABASE_REPLICA_URLS"),
            replica_poll_interval=env.number("REPLICA_POLL_INTERVAL", 0.1, minimum=0.01, maximum=10.0),
            redis_url=redis_url,
            port=port if port is not None else env.integer("PORT", 3001, minimum=1, maximum=65535),
            pg_pool_size=env.integer("PG_POOL_SIZE", 10, minimum=1, maximum=500),
            l1_max_entries=env.integer("CACHE_L1_MAX_ENTRIES", 10_000, minimum=0),
            cache_ttl=env.number("CACHE_TTL", 60.0, minimum=0.1),
            cache_negative_ttl=env.number("CACHE_NEGATIVE_TTL", 5.0, minimum=0.1),
            cache_list_ttl=env.number("CACHE_LIST_TTL", 30.0, minimum=0.1),
            cache_stale_ttl=env.number("CACHE_STALE_TTL", 600.0, minimum=1.0),
            external_failure_rate=env.number("EXTERNAL_FAILURE_RATE", 0.2, minimum=0.0, maximum=1.0),
            external_latency_ms=env.number("EXTERNAL_LATENCY_MS", 20.0, minimum=0.0, maximum=60_000.0),
            external_breaker_fail_max=env.integer("EXTERNAL_BREAKER_FAIL_MAX", 5, minimum=1),
            external_breaker_reset=env.number("EXTERNAL_BREAKER_RESET", 10.0, minimum=0.01),
            heartbeat_interval=env.number("HEARTBEAT_INTERVAL", 2.0, minimum=0.1),
            max_body_bytes=env.integer("MAX_BODY_BYTES", 256 * 1024, minimum=1024),
            idempotency_ttl=env.number("IDEMPOTENCY_TTL", 86_400.0, minimum=1.0, maximum=30 * 86_400.0),
        )
