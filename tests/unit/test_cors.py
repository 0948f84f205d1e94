"""CORS and caching headers at the edge: settings, the policies, and the edge middleware on a small app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from apiserver.cache.two_level import CacheConfig
from gateway.caching import CachePolicy
from gateway.cors import EXPOSED_HEADERS, GUARD_WINDOW, PREFLIGHT_LIMIT, Cors, CorsPolicy
from gateway.edge import edge_middleware
from gateway.ratelimit.local import LocalRateLimiter
from gateway.settings import CorsSettings, GatewaySettings, HttpCacheSettings
from gateway.stats import GatewayStats
from shared.context import request_middleware
from shared.errors import Problem
from shared.metrics import Metrics
from shared.settings import Env, SettingsError
from tests.support.clock import ManualClock

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
PAGE = "https://app.example.com"
OTHER = "https://evil.example.net"


def cors_settings(**env: str) -> CorsSettings:
    return CorsSettings.from_env(Env(env))


# -- settings ----------------------------------------------------------------------------------------------------


def test_cors_is_off_by_default_and_origins_are_normalised() -> None:
    assert cors_settings().allow_origins == ()
    listed = cors_settings(CORS_ALLOW_ORIGINS="HTTPS://App.Example.com:443/, http://127.0.0.1:8000, https://a.io:8443")
    assert listed.allow_origins == (PAGE, "http://127.0.0.1:8000", "https://a.io:8443")
    assert cors_settings(CORS_ALLOW_ORIGINS="*").any_origin


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CORS_ALLOW_ORIGINS": "app.example.com"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "https://app.example.com/path"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "https://*.example.com"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "null"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "ftp://files.example.com"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "*, https://app.example.com"}, "CORS_ALLOW_ORIGINS"),
        ({"CORS_ALLOW_ORIGINS": "*", "CORS_ALLOW_CREDENTIALS": "true"}, "CORS_ALLOW_CREDENTIALS"),
        ({"CORS_ALLOW_CREDENTIALS": "yes"}, "CORS_ALLOW_CREDENTIALS"),
        ({"CORS_ALLOW_METHODS": "GET,TRACE"}, "CORS_ALLOW_METHODS"),
        ({"CORS_ALLOW_HEADERS": "Authorization, X Bad"}, "CORS_ALLOW_HEADERS"),
        ({"CORS_ALLOW_HEADERS": "*"}, "CORS_ALLOW_HEADERS"),
        ({"CORS_MAX_AGE": "-1"}, "CORS_MAX_AGE"),
        ({"CORS_MAX_AGE": "86401"}, "CORS_MAX_AGE"),
    ],
)
def test_bad_cors_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        cors_settings(**env)


def test_credentials_need_listed_origins() -> None:
    settings = cors_settings(CORS_ALLOW_ORIGINS=PAGE, CORS_ALLOW_CREDENTIALS="true")
    assert settings.allow_credentials
    headers = CorsPolicy(settings).response_headers(PAGE)
    assert headers is not None
    assert headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize(
    "name",
    ["HTTP_CACHE_MAX_AGE", "HTTP_CACHE_S_MAXAGE", "HTTP_CACHE_STALE_WHILE_REVALIDATE", "HTTP_CACHE_STALE_IF_ERROR"],
)
def test_cache_lifetimes_are_bounded(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        HttpCacheSettings.from_env(Env({name: "-1"}))
    with pytest.raises(SettingsError, match=name):
        HttpCacheSettings.from_env(Env({name: "999999999"}))


def test_cache_defaults_follow_the_apiserver_cache_ttls() -> None:
    """One fact, two processes: the HTTP lifetimes are derived from the apiserver cache's default TTLs."""
    cache, http = CacheConfig(), HttpCacheSettings.from_env(Env({}))
    assert http.s_maxage == cache.list_ttl
    assert http.s_maxage + http.stale_while_revalidate == cache.fresh_ttl
    assert http.stale_if_error == cache.stale_ttl
    assert http.max_age == cache.negative_ttl


def test_gateway_settings_carry_cors_and_cache() -> None:
    env = {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "CORS_ALLOW_ORIGINS": "*"}
    settings = GatewaySettings.from_env(env)
    assert settings.cors.any_origin
    assert settings.http_cache == HttpCacheSettings()


# -- policies ----------------------------------------------------------------------------------------------------


def test_listed_origins_get_their_own_configured_value_and_others_nothing() -> None:
    policy = CorsPolicy(cors_settings(CORS_ALLOW_ORIGINS=PAGE))
    assert policy.varies_by_origin
    headers = policy.response_headers(PAGE)
    assert headers is not None
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert "Access-Control-Allow-Credentials" not in headers
    assert headers["Access-Control-Expose-Headers"] == ", ".join(EXPOSED_HEADERS)
    for origin in (OTHER, PAGE + ".evil.net", PAGE.upper(), "null", "", None):
        assert policy.response_headers(origin) is None, origin


def test_any_origin_is_one_constant_answer() -> None:
    policy = CorsPolicy(cors_settings(CORS_ALLOW_ORIGINS="*"))
    assert not policy.varies_by_origin
    for origin in (PAGE, OTHER, None):
        headers = policy.response_headers(origin)
        assert headers is not None
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in headers


def test_exposed_headers_name_what_browser_code_needs() -> None:
    for name in ("X-RateLimit-Remaining", "RateLimit", "RateLimit-Policy", "ETag", "X-Request-ID", "Location"):
        assert name in EXPOSED_HEADERS


def test_preflight_answers_check_method_and_every_header() -> None:
    policy = CorsPolicy(cors_settings(CORS_ALLOW_ORIGINS=PAGE, CORS_MAX_AGE="120"))
    answer = policy.preflight_headers(PAGE, "PATCH", "authorization, content-type,if-match")
    assert answer is not None
    assert answer["Access-Control-Allow-Origin"] == PAGE
    assert answer["Access-Control-Max-Age"] == "120"
    assert "Authorization" in answer["Access-Control-Allow-Headers"]
    assert "PATCH" in answer["Access-Control-Allow-Methods"]
    assert policy.preflight_headers(PAGE, "GET", None) is not None
    assert policy.preflight_headers(OTHER, "GET", None) is None
    assert policy.preflight_headers(PAGE, "TRACE", None) is None
    assert policy.preflight_headers(PAGE, "GET", "authorization, x-secret") is None


def test_cache_policy_by_route_caller_and_status() -> None:
    policy = CachePolicy(HttpCacheSettings(max_age=5, s_maxage=30, stale_while_revalidate=30, stale_if_error=600))
    public = policy.headers(True, 200, True)
    assert public["Cache-Control"] == "public, max-age=5, s-maxage=30, stale-while-revalidate=30, stale-if-error=600"
    assert public["Vary"] == "Accept-Encoding, Authorization, X-API-Key"
    assert policy.headers(True, 304, True) is public
    private = policy.headers(True, 200, False)
    assert private["Cache-Control"] == "private, max-age=5"
    assert private["Vary"] == public["Vary"]
    for status in (201, 204, 400, 404, 412, 429, 500, 502, 503):
        assert policy.headers(True, status, True) == {"Cache-Control": "no-store"}
    assert policy.headers(False, 200, True) == {"Cache-Control": "no-store"}
    with_origin = CachePolicy(HttpCacheSettings(), vary_origin=True)
    assert with_origin.headers(True, 200, True)["Vary"].endswith(", Origin")


# -- the edge on a small app -------------------------------------------------------------------------------------


def edge_app(cors: Cors, *, max_in_flight: int = 10) -> web.Application:
    metrics = Metrics("test")
    edge = edge_middleware(
        max_body=1024, max_in_flight=max_in_flight, stats=GatewayStats(metrics), exempt={"/health"}, cors=cors
    )
    app = web.Application(middlewares=[request_middleware(metrics=metrics), edge])

    async def resource(request: web.Request) -> web.Response:
        if request.match_info["id"] == "0":
            raise Problem(404, "Not Found", "No resource with id 0.")
        if request.match_info["id"] == "bug":
            raise RuntimeError("internals")
        return web.json_response({"id": 1}, headers={"Cache-Control": "public, max-age=5"})

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"me": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/api/v1/resources/{id}", resource)
    app.router.add_post("/api/v1/resources/{id}", resource)
    app.router.add_get("/api/v1/me", me)
    app.router.add_get("/health", health)
    app.router.add_get("/dashboard/x", me)
    return app


def preflight(origin: str = PAGE, method: str = "GET", headers: str | None = "authorization") -> dict[str, str]:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        request["Access-Control-Request-Headers"] = headers
    return request


def cors_of(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower().startswith("access-control-")}


async def test_preflight_is_answered_at_the_edge(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS=PAGE))))
    response = await client.options("/api/v1/resources/1", headers=preflight(method="PATCH"))
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]

    for refused in (preflight(origin=OTHER), preflight(method="TRACE"), preflight(headers="x-not-listed")):
        response = await client.options("/api/v1/resources/1", headers=refused)
        assert response.status == 403
        assert response.content_type == "application/problem+json"
        assert cors_of(response.headers) == {}
        assert response.headers["Cache-Control"] == "no-store"


async def test_options_that_is_not_a_preflight_goes_to_the_router(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS=PAGE))))
    response = await client.options("/api/v1/resources/1", headers={"Origin": PAGE})
    assert response.status == 405
    assert response.headers["Access-Control-Allow-Origin"] == PAGE  # an allowed page may read the error
    assert response.headers["Cache-Control"] == "no-store"


async def test_preflights_outside_the_api_get_nothing(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS="*"))))
    for path in ("/health", "/dashboard/x"):
        response = await client.options(path, headers=preflight())
        assert response.status == 405, path
        assert cors_of(response.headers) == {}, path
        get = await client.get(path, headers={"Origin": PAGE})
        assert cors_of(get.headers) == {}, path


async def test_preflight_guard_is_per_address_and_in_process(aiohttp_client: ClientFactory) -> None:
    clock = ManualClock()
    guard = LocalRateLimiter(GUARD_WINDOW, clock=clock)
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS=PAGE), guard=guard)))
    for _ in range(PREFLIGHT_LIMIT):
        await guard.hit("127.0.0.1", PREFLIGHT_LIMIT)
    refused = await client.options("/api/v1/resources/1", headers=preflight())
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["Cache-Control"] == "no-store"
    assert cors_of(refused.headers) == {}
    other_address = await client.options(
        "/api/v1/resources/1", headers={**preflight(), "X-Forwarded-For": "198.51.100.7"}
    )
    assert other_address.status == 429  # the peer counts: X-Forwarded-For only from TRUSTED_PROXIES
    clock.advance(GUARD_WINDOW.window + 1)
    again = await client.options("/api/v1/resources/1", headers=preflight())
    assert again.status == 204


async def test_allowed_origins_read_answers_and_errors(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS=PAGE))))
    ok = await client.get("/api/v1/resources/1", headers={"Origin": PAGE})
    assert ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert ok.headers["Cache-Control"] == "public, max-age=5"  # a handler's own policy is kept
    for path, status in (("/api/v1/resources/0", 404), ("/api/v1/nothing", 404), ("/api/v1/resources/bug", 500)):
        error = await client.get(path, headers={"Origin": PAGE})
        assert error.status == status, path
        assert error.content_type == "application/problem+json"
        assert error.headers["Access-Control-Allow-Origin"] == PAGE, path
        assert error.headers["Cache-Control"] == "no-store", path
    too_big = await client.post(
        "/api/v1/resources/1", data=b"{}" * 1000, headers={"Origin": PAGE, "Content-Type": "application/json"}
    )
    assert too_big.status == 413
    assert too_big.headers["Access-Control-Allow-Origin"] == PAGE
    assert too_big.headers["Cache-Control"] == "no-store"
    other = await client.get("/api/v1/resources/1", headers={"Origin": OTHER})
    assert other.status == 200
    assert cors_of(other.headers) == {}  # never a reflected origin


async def test_gateway_answers_without_a_policy_are_not_stored(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings())))
    me = await client.get("/api/v1/me")
    assert me.headers["Cache-Control"] == "no-store"
    assert cors_of(me.headers) == {}  # CORS off: nothing at all
    preflight_off = await client.options("/api/v1/me", headers=preflight())
    assert preflight_off.status == 405
    dashboard = await client.get("/dashboard/x")
    assert "Cache-Control" not in dashboard.headers  # the dashboard sets its own


async def test_shedding_503_is_not_stored(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(edge_app(Cors(cors_settings(CORS_ALLOW_ORIGINS="*")), max_in_flight=0))
    response = await client.get("/api/v1/resources/1", headers={"Origin": PAGE})
    assert response.status == 503
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
