"""Balancer settings, parsed once from the environment.

``BALANCER_BACKENDS`` is a comma-separated list of backend URLs, each optionally weighted with a ``;weight=N``
suffix: ``http://10.0.0.5:3001;weight=2,http://10.0.0.6:3001``. An entry written ``dns+http://name:port`` is a
DNS name instead: every address it resolves to is a backend, and the set is re-resolved every
``BALANCER_DNS_INTERVAL`` seconds (see :mod:`balancer.discovery`). Static and ``dns+`` entries mix freely.
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
        host = url.host or ""
        return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


@dataclass(frozen=True, slots=True)
class DnsTarget:
    """A ``dns+http(s)://host:port`` entry: one backend per address ``host`` resolves to."""

    scheme: str
    host: str
    port: int
    weight: float = 1.0

    @property
    def name(self) -> str:
        return f"dns+{self.scheme}://{self.host}:{self.port}"

    def spec(self, address: str) -> BackendSpec:
        host = f"[{address}]" if ":" in address else address
        return BackendSpec(url=f"{self.scheme}://{host}:{self.port}", weight=self.weight)


def _weight(name: str, item: str, option: str) -> float:
    if not option:
        return 1.0
    key, _, value = option.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if key.strip() != "weight" or not 0 < weight <= 1000:
        raise SettingsError(f"{name}: {item!r}: expected URL;weight=N with 0 < N <= 1000")
    return weight


def parse_dns_target(name: str, item: str) -> DnsTarget:
    url, _, option = item.partition(";")
    weight = _weight(name, item, option)
    parsed = URL(url.strip())
    scheme = parsed.scheme.removeprefix("dns+")
    if scheme not in ("http", "https") or not parsed.host or parsed.path not in ("", "/"):
        raise SettingsError(f"{name}: {item!r} is not a dns+http(s)://host:port entry")
    return DnsTarget(
        scheme=scheme, host=parsed.host, port=parsed.port or (443 if scheme == "https" else 80), weight=weight
    )


def parse_backends(name: str, items: tuple[str, ...]) -> tuple[tuple[BackendSpec, ...], tuple[DnsTarget, ...]]:
    """Split ``items`` into static backends and DNS targets (either may be empty, not both)."""
    static = tuple(parse_backend(name, item) for item in items if not item.lower().startswith("dns+"))
    targets = tuple(parse_dns_target(name, item) for item in items if item.lower().startswith("dns+"))
    if not static and not targets:
        raise SettingsError(f"{name}: required (comma-separated backend URLs or dns+http://name:port entries)")
    if len({backend.id for backend in static}) != len(static):
        raise SettingsError(f"{name}: a backend is listed twice")
    if len({target.name for target in targets}) != len(targets):
        raise SettingsError(f"{name}: a dns+ entry is listed twice")
    return static, targets


def parse_backend(name: str, item: str) -> BackendSpec:
    url, _, option = item.partition(";")
    weight = _weight(name, item, option)
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SettingsError(f"{name}: {item!r} is not an http(s) URL")
    return BackendSpec(url=str(parsed).rstrip("/"), weight=weight)


@dataclass(frozen=True, slots=True)
class BalancerSettings:
    common: CommonSettings
    port: int
    backends: tuple[BackendSpec, ...]
    dns_targets: tuple[DnsTarget, ...]
    dns_interval: float
    algorithm: str
    health_path: str
    health_interval: float
    health_timeout: float
    health_rise: int
    health_fall: int
    startup_grace: float
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
        backends, targets = parse_backends("BALANCER_BACKENDS", env.items("BALANCER_BACKENDS"))
        interval = env.number("BALANCER_HEALTH_INTERVAL", 2.0, minimum=0.05, maximum=3600)
        return cls(
            common=common,
            port=port if port is not None else env.integer("PORT", 3000, minimum=1, maximum=65535),
            backends=backends,
            dns_targets=targets,
            dns_interval=env.number("BALANCER_DNS_INTERVAL", 5.0, minimum=0.01, maximum=3600),
            algorithm=env.choice("BALANCER_ALGORITHM", "p2c", ALGORITHMS),
            health_path=env.text("BALANCER_HEALTH_PATH", "/ready"),
            health_interval=interval,
            health_timeout=env.number("BALANCER_HEALTH_TIMEOUT", min(1.0, interval), minimum=0.01, maximum=60),
            health_rise=env.integer("BALANCER_HEALTH_RISE", 2, minimum=1, maximum=100),
            health_fall=env.integer("BALANCER_HEALTH_FALL", 3, minimum=1, maximum=100),
            startup_grace=env.number("BALANCER_STARTUP_GRACE", 30.0, minimum=0.0, maximum=3600),
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
