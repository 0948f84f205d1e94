"""Settings: typed values, and one clear error naming the variable for anything wrong."""

from __future__ import annotations

import pytest

from apiserver.settings import ApiServerSettings
from gateway.settings import GatewaySettings
from shared.settings import DEV_INTERNAL_SECRET, CommonSettings, SettingsError

BASE = {"DATABASE_URL": "postgresql://a:b@localhost/db", "REDIS_URL": "redis://localhost/0"}


def test_defaults_for_development() -> None:
    settings = ApiServerSettings.from_env(BASE)
    assert settings.port == 3001
    assert settings.common.environment == "development"
    assert settings.common.internal_secret == DEV_INTERNAL_SECRET


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PORT", "http", "PORT='http': expected an integer"),
        ("PORT", "70000", "PORT=70000: must be at most 65535"),
        ("CACHE_TTL", "-1", "CACHE_TTL=-1.0: must be at least 0.1"),
        ("ENVIRONMENT", "prod", "ENVIRONMENT='prod': expected one of development, production"),
        ("TRUSTED_PROXIES", "10.0.0.0/8,nonsense", "TRUSTED_PROXIES: 'nonsense' is not an IP address or CIDR"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ApiServerSettings.from_env({**BASE, name: value})


def test_missing_database_url_is_named() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        ApiServerSettings.from_env({"REDIS_URL": "redis://x"})


def test_production_refuses_default_and_short_secrets() -> None:
    with pytest.raises(SettingsError, match="INTERNAL_SECRET: the development default is refused"):
        CommonSettings.from_env({"ENVIRONMENT": "production"}, service="x")
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        CommonSettings.from_env({"ENVIRONMENT": "production", "INTERNAL_SECRET": "short"}, service="x")
    ok = CommonSettings.from_env({"ENVIRONMENT": "production", "INTERNAL_SECRET": "k" * 32}, service="x")
    assert ok.production


def test_the_gateway_retires_balancer_connections_after_a_minute_unless_told_otherwise() -> None:
    assert GatewaySettings.from_env(BASE).upstream_max_age == 60.0
    assert GatewaySettings.from_env({**BASE, "UPSTREAM_MAX_CONNECTION_AGE": "0"}).upstream_max_age == 0.0
    with pytest.raises(SettingsError, match="UPSTREAM_MAX_CONNECTION_AGE"):
        GatewaySettings.from_env({**BASE, "UPSTREAM_MAX_CONNECTION_AGE": "-5"})
