"""Typed app keys of the balancer."""

from __future__ import annotations

from aiohttp import web

from balancer.discovery import Discovery
from balancer.forwarding import Balancer
from balancer.health import HealthChecker
from balancer.settings import BalancerSettings
from balancer.siblings import Siblings

SETTINGS = web.AppKey("settings", BalancerSettings)
BALANCER = web.AppKey("balancer", Balancer)
HEALTH = web.AppKey("health_checker", HealthChecker)
DISCOVERY = web.AppKey("discovery", Discovery)
SIBLINGS = web.AppKey("siblings", Siblings)
