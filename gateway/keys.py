"""Typed app and request keys of the gateway, all declared here."""

from __future__ import annotations

from aiohttp import web

from gateway.admin.upstream import AdminClient
from gateway.auth.apikeys import ApiKeys
from gateway.auth.principal import Principal
from gateway.auth.refresh import RefreshTokens
from gateway.auth.throttle import LoginThrottle
from gateway.auth.tokens import AccessTokens
from gateway.auth.users import UserRepository
from gateway.ratelimit.failover import FailoverRateLimiter
from gateway.settings import GatewaySettings
from gateway.stats import GatewayStats
from shared.upstream import Upstream

SETTINGS = web.AppKey("gateway_settings", GatewaySettings)
TOKENS = web.AppKey("access_tokens", AccessTokens)
API_KEYS = web.AppKey("api_keys", ApiKeys)
USERS = web.AppKey("users", UserRepository)
REFRESH = web.AppKey("refresh_tokens", RefreshTokens)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
LIMITER = web.AppKey("rate_limiter", FailoverRateLimiter)
STATS = web.AppKey("gateway_stats", GatewayStats)
UPSTREAM = web.AppKey("upstream", Upstream)
ADMIN = web.AppKey("admin_client", AdminClient)

PRINCIPAL = web.RequestKey("principal", Principal)
RATE_HEADERS = web.RequestKey("rate_limit_headers", dict[str, str])
