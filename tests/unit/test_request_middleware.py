"""The request middleware every process puts first: request id and trace context, metrics, problem+json."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.context import request_middleware
from shared.errors import Problem
from shared.keys import REQUEST_ID, TRACEPARENT
from shared.metrics import Metrics

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _app() -> tuple[web.Application, Metrics]:
    metrics = Metrics("test")
    app = web.Application(middlewares=[request_middleware(metrics=metrics)])

    async def item(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "problem":
            raise Problem(409, "Conflict", "Taken.", headers={"Retry-After": "3"})
        if name == "http":
            raise web.HTTPTooManyRequests(headers={"Retry-After": "5"})
        if name == "bug":
            raise RuntimeError("secret internals")
        return web.json_response({"id": request[REQUEST_ID], "trace": request[TRACEPARENT]})

    app.router.add_get("/items/{name}", item)
    return app, metrics


def _count(metrics: Metrics, route: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "http_requests_total", {"service": "test", "method": "GET", "route": route, "status": status}
    )
    return value or 0.0


async def test_ids_traces_problems_and_metrics_of_every_outcome(aiohttp_client: ClientFactory) -> None:
    app, metrics = _app()
    client = await aiohttp_client(app)

    ok = await client.get("/items/ok", headers={"X-Request-ID": "abc-123", "traceparent": TRACE})
    assert ok.status == 200
    assert ok.headers["X-Request-ID"] == "abc-123"
    assert await ok.json() == {"id": "abc-123", "trace": TRACE}

    bad_id = await client.get("/items/ok", headers={"X-Request-ID": "no spaces allowed"})
    generated = bad_id.headers["X-Request-ID"]
    assert len(generated) == 32
    assert (await bad_id.json())["id"] == generated

    problem = await client.get("/items/problem", headers={"X-Request-ID": "p-1"})
    assert (problem.status, problem.headers["Content-Type"]) == (409, "application/problem+json")
    assert (problem.headers["X-Request-ID"], problem.headers["Retry-After"]) == ("p-1", "3")
    assert (await problem.json())["request_id"] == "p-1"

    limited = await client.get("/items/http")
    assert (limited.status, limited.headers["Retry-After"]) == (429, "5")
    assert (await limited.json())["title"] == "Too Many Requests"

    bug = await client.get("/items/bug")
    body = await bug.json()
    assert bug.status == 500
    assert "secret" not in str(body)
    assert body["request_id"] == bug.headers["X-Request-ID"]

    missing = await client.get("/nowhere")
    assert missing.status == 404
    assert missing.headers["Content-Type"] == "application/problem+json"

    route = "/items/{name}"
    counted = [_count(metrics, route, s) for s in ("200", "409", "429", "500")]
    assert counted == [2.0, 1.0, 1.0, 1.0]
    assert _count(metrics, "unmatched", "404") == 1.0
