"""Balancer settings, parsed once from the environment.

``BALANCER_BACKENDS`` is a comma-separated list of backend URLs, each optionally weighted with a ``;weight=N``
suffix: ``http://10.0.0.5:3001;weight=2,http://10.0.0.6:3001``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from shared.settings import CommonSettings, Env, SettingsError

ALGORITHMS = ("p2c", "round_robin", "least_connections")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    url: str
    weight: float = 1.0

    @property
    def id(self) -> str:
        """A stable, readable id: ``host:port`` (the same process keeps it across restarts)."""
        url = URL(self.url)
        return f"{url.host}:{url.port}"


def parse_backend(name: str, item: str) -> BackendSpec:
    url, _, option = item.partition(";")
    weight = 1.0
    if option:
        key, _, value = option.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if key.strip() != "weight" or not 0 < weight <= 1000:
            raise SettingsError(f"{name}: {item!r}: expected URL;weight=N with 0 < N <= 1000")
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SettingsError(f"{name}: {item!r} is not an http(s) URL")
    return BackendSpec(url=str(parsed).rstrip("/"), weight=weight)


@dataclass(frozen=True, slots=True)
class BalancerSettings:
    common: CommonSettings
    port: int
    backends: tuple[BackendSpec, ...]
    algorithm: str
    health_path: str
    health_interval: float
    health_timeout: float
    health_rise: int
    health_fall: int
    breaker_failures: int
    breaker_reset: float
    breaker_max_reset: float
    timeout: float
    connect_timeout: float
    max_retries: int
    retry_budget: float
    retry_min_concurrency: int
    retry_body_limit: int
    max_in_flight: int
    max_connections: int
    shutdown_grace: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, port: int | None = None) -> BalancerSettings:
        env = Env(environ)
        common = CommonSettings.from_env(environ, service="balancer")
        backends = tuple(parse_backend("BALANCER_BACKENDS", item) for item in env.items("BALANCER_BACKENDS"))
        if not backends:
            raise SettingsError("BALANCER_BACKENDS: required (comma-separated backend URLs)")
        if len({backend.id for backend in backends}) != len(backends):
            raise SettingsError("BALANCER_BACKENDS: a backend is listed twice")
        interval = env.number("BALANCER_HEALTH_INTERVAL", 2.0, minimum=0.05, maximum=3600)
        return cls(
            common=common,
            port=port if port is not None else env.integer("PORT", 3000, minimum=1, maximum=65535),
            backends=backends,
            algorithm=env.choice("BALANCER_ALGORITHM", "p2c", ALGORITHMS),
            health_path=env.text("BALANCER_HEALTH_PATH", "/ready"),
            health_interval=interval,
            health_timeout=env.number("BALANCER_HEALTH_TIMEOUT", min(1.0, interval), minimum=0.01, maximum=60),
            health_rise=env.integer("BALANCER_HEALTH_RISE", 2, minimum=1, maximum=100),
            health_fall=env.integer("BALANCER_HEALTH_FALL", 3, minimum=1, maximum=100),
            breaker_failures=env.integer("BALANCER_BREAKER_FAILURES", 5, minimum=1, maximum=1000),
            breaker_reset=env.number("BALANCER_BREAKER_RESET", 5.0, minimum=0.01, maximum=3600),
            breaker_max_reset=env.number("BALANCER_BREAKER_MAX_RESET", 60.0, minimum=0.01, maximum=86400),
            timeout=env.number("BALANCER_TIMEOUT", 10.0, minimum=0.01, maximum=3600),
            connect_timeout=env.number("BALANCER_CONNECT_TIMEOUT", 1.0, minimum=0.01, maximum=60),
            max_retries=env.integer("BALANCER_MAX_RETRIES", 2, minimum=0, maximum=2),
            retry_budget=env.number("BALANCER_RETRY_BUDGET", 0.2, minimum=0.0, maximum=1.0),
            retry_min_concurrency=env.integer("BALANCER_RETRY_MIN_CONCURRENCY", 3, minimum=0),
            retry_body_limit=env.integer("BALANCER_RETRY_BODY_LIMIT", 64 * 1024, minimum=0, maximum=16 * 1024**2),
            max_in_flight=env.integer("BALANCER_MAX_IN_FLIGHT", 1000, minimum=1),
            max_connections=env.integer("BALANCER_MAX_CONNECTIONS", 100, minimum=1, maximum=10_000),
            shutdown_grace=env.number("BALANCER_SHUTDOWN_GRACE", 10.0, minimum=0.0, maximum=3600),
        )
