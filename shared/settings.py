"""Environment parsing shared by every process.

Each process owns a frozen settings dataclass built once at start by ``from_env(environ)``. The helpers here
turn one variable into one typed value, and every failure raises :class:`SettingsError` naming the variable
and the bad value, so ``__main__`` can stop the process with one clear line.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Environment = Literal["development", "production"]

# Development-only defaults. Production refuses to start with any of them (see ``CommonSettings.check``).
DEV_INTERNAL_SECRET = "dev-internal-secret-not-for-production-0000"  # noqa: S105 - refused in production
DEV_JWT_SECRET = "dev-jwt-secret-not-for-production-000000000000"  # noqa: S105 - refused in production
_DEV_SECRETS = frozenset({DEV_INTERNAL_SECRET, DEV_JWT_SECRET})
MIN_SECRET_BYTES = 32


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


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and number < minimum:
        raise SettingsError(f"{name}={number!r}: must be at least {minimum}")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name}={number!r}: must be at most {maximum}")


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

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, service: str) -> CommonSettings:
        env = Env(environ)
        environment = env.choice("ENVIRONMENT", "development", ("development", "production"))
        settings = cls(
            environment=environment,  # type: ignore[arg-type]  # narrowed by choice()
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            instance_id=env.text("INSTANCE_ID", f"{service}-{socket.gethostname()}-{os.getpid()}"),
            host=env.text("HOST", "127.0.0.1"),
            internal_secret=env.text("INTERNAL_SECRET", DEV_INTERNAL_SECRET),
            trusted_proxies=env.networks("TRUSTED_PROXIES"),
            redis_url=env.optional_str("REDIS_URL"),
            database_url=env.optional_str("DATABASE_URL"),
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
