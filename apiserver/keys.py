"""Typed app keys of the API server."""

from __future__ import annotations

from aiohttp import web

from apiserver.cache.two_level import TwoLevelCache
from apiserver.external import FlakyDependency
from apiserver.repository import ResourceRepository
from apiserver.settings import ApiServerSettings
from shared.breaker import AsyncCircuitBreaker

SETTINGS = web.AppKey("settings", ApiServerSettings)
CACHE = web.AppKey("cache", TwoLevelCache)
REPOSITORY = web.AppKey("repository", ResourceRepository)
BREAKERS = web.AppKey("breakers", dict[str, AsyncCircuitBreaker])
EXTERNAL = web.AppKey("external", FlakyDependency)
STARTED_AT = web.AppKey("started_at", float)
