"""Environment parsing shared by every process.

Each process owns a frozen settings dataclass built once at start by ``from_env(environ)``. The helpers here
turn one variable into one typed value, and every failure raises :class:`SettingsError` naming the variable
and the bad value, so ``__main__`` can stop the process with one clear line.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Environment = Literal["development", "production"]

# Development-only defaults. Production refuses to start with any of them (see ``CommonSettings.check``).
DEV_INTERNAL_SECRET = "dev-internal-secret-not-for-production-0000"  # noqa: S105 - refused in production
DEV_JWT_SECRET = "dev-jwt-secret-not-for-production-000000000000"  # noqa: S105 - refused in production
_DEV_SECRETS = frozenset({DEV_INTERNAL_SECRET, DEV_JWT_SECRET})
MIN_SECRET_BYTES = 32
MAX_WORKERS = 256
WORKERS_AUTO = "auto"
CONNECTIONS_AUTO = "auto"


class SettingsError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


class Env:
    """Typed, validating reads from an environment mapping."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional_str(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: expected an integer") from None
        _check_range(name, number, minimum, maximum)
        return number

    def number(self, name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: expected a number") from None
        _check_range(name, number, minimum, maximum)
        return number

    def workers(self, name: str, default: int = 1) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            return parse_workers(value)
        except ValueError as exc:
            raise SettingsError(f"{name}={value!r}: {exc}") from None

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise SettingsError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value

    def items(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def networks(self, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for item in self.items(name):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR") from None
        return tuple(networks)


def available_cpus() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (as Python 3.13's
    ``os.process_cpu_count`` does), else every core of the machine; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)  # pragma: no cover - platforms without CPU affinity (macOS)


def parse_workers(value: str, *, cpus: Callable[[], int] = available_cpus) -> int:
    """``auto`` (one per available core) or a whole number from 1 to :data:`MAX_WORKERS`; ``ValueError`` saying
    what was expected (the caller names the variable or option)."""
    text = value.strip().lower()
    if text == WORKERS_AUTO:
        return min(cpus(), MAX_WORKERS)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
        raise ValueError(f"expected a number of workers from 1 to {MAX_WORKERS}, or {WORKERS_AUTO}")
    return int(text)


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise SettingsError(f"{name}={number!r}: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name}={number!r}: must be at most {maximum}")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a client may take to send a request head, and how many connections it may hold (enforced by
    :mod:`shared.connections`, per worker process).

    ``max_connections`` None means ``auto``: derived when serving from the open-file limit; 0 means no cap, as does
    a ``max_connections_per_address`` of 0. Only the gateway faces clients, so only its caps are on by default: the
    balancer's and apiservers' clients are the tier in front, whose pools (``UPSTREAM_CONNECTIONS``,
    ``BALANCER_MAX_CONNECTIONS``) bound them and share one address per host. Every tier has the head timeout:
    the tier in front writes a whole head at once, so only a broken or hostile peer ever meets it.
    """

    header_timeout: float = 10.0
    max_connections: int | None = 0
    max_connections_per_address: int = 0

    @classmethod
    def from_env(cls, env: Env, *, service: str) -> ConnectionLimits:
        edge = service == "gateway"
        return cls(
            header_timeout=env.number("HEADER_TIMEOUT", 10.0, minimum=0.1, maximum=3600.0),
            max_connections=_connection_cap(env, "MAX_CONNECTIONS", None if edge else 0),
            max_connections_per_address=env.integer(
                "MAX_CONNECTIONS_PER_ADDRESS", 256 if edge else 0, minimum=0, maximum=1_000_000
            ),
        )


def _connection_cap(env: Env, name: str, default: int | None) -> int | None:
    """``auto`` (None) or a whole number of connections, 0 for no cap."""
    value = env.raw(name)
    if value is None:
        return default
    if value.lower() == CONNECTIONS_AUTO:
        return None
    if not (value.isascii() and value.isdigit()):
        raise SettingsError(f"{name}={value!r}: expected a number of connections (0: no cap) or {CONNECTIONS_AUTO}")
    return env.integer(name, 0, minimum=0, maximum=1_000_000)


@dataclass(frozen=True, slots=True)
class CommonSettings:
    """What every process reads: who it is, how it logs, and the secrets shared across the suite."""

    environment: Environment
    log_level: str
    instance_id: str
    host: str
    internal_secret: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    redis_url: str | None
    database_url: str | None
    # WORKERS: processes serving the port (see shared.workers). The parent passes WORKER_INDEX and
    # WORKER_RUNTIME_DIR to each worker it starts; with one worker there is no parent and both stay unset.
    workers: int = 1
    worker_index: int | None = None
    runtime_dir: str | None = None
    # HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS: this process's own listening port.
    connections: ConnectionLimits = ConnectionLimits()

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def supervises_workers(self) -> bool:
        """True in the parent of several workers: it serves nothing itself, it starts and watches them."""
        return self.workers > 1 and self.worker_index is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, service: str) -> CommonSettings:
        env = Env(environ)
        environment = env.choice("ENVIRONMENT", "development", ("development", "production"))
        workers = env.workers("WORKERS")
        index = env.integer("WORKER_INDEX", -1, minimum=0, maximum=workers - 1)
        instance_id = env.text("INSTANCE_ID", f"{service}-{socket.gethostname()}-{os.getpid()}")
        settings = cls(
            environment=environment,  # type: ignore[arg-type]  # narrowed by choice()
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            # Each worker names itself: logs, heartbeats and /api/v1/status tell the workers apart.
            instance_id=instance_id if index < 0 else f"{instance_id}-w{index}",
            host=env.text("HOST", "127.0.0.1"),
            internal_secret=env.text("INTERNAL_SECRET", DEV_INTERNAL_SECRET),
            trusted_proxies=env.networks("TRUSTED_PROXIES"),
            redis_url=env.optional_str("REDIS_URL"),
            database_url=env.optional_str("DATABASE_URL"),
            workers=workers,
            worker_index=None if index < 0 else index,
            runtime_dir=env.optional_str("WORKER_RUNTIME_DIR"),
            connections=ConnectionLimits.from_env(env, service=service),
        )
        settings.check_secret("INTERNAL_SECRET", settings.internal_secret)
        return settings

    def required_stores(self) -> tuple[str, str]:
        """``(DATABASE_URL, REDIS_URL)`` for a process that cannot run without both."""
        if self.database_url is None:
            raise SettingsError("DATABASE_URL: required (postgresql://user:password@host:port/database)")
        if self.redis_url is None:
            raise SettingsError("REDIS_URL: required (redis://host:port/0 or redis+sentinel://host:port/service)")
        return self.database_url, self.redis_url

    def check_secret(self, name: str, value: str) -> None:
        """Production never runs on a development default or a short secret."""
        if not self.production:
            return
        if value in _DEV_SECRETS:
            raise SettingsError(f"{name}: the development default is refused when ENVIRONMENT=production")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(f"{name}: must be at least {MIN_SECRET_BYTES} bytes when ENVIRONMENT=production")
