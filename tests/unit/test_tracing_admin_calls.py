"""The admin API's calls to the balancer and apiservers carry the admin request's trace on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.admin.upstream import AdminClient, UpstreamError
from shared.context import request_middleware
from shared.identity import Identity
from shared.metrics import Metrics
from shared.tracing import Tracing
from stack.services.ports import free_port
from tests.support.traces import assert_called_within

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ADMIN = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def _echo(request: web.Request) -> web.Response:
    status = 404 if request.path == "/missing" else 200
    return web.json_response({"traceparent": request.headers.get("traceparent")}, status=status)


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> str:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _echo)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


def _admin_app(target: str, environ: Mapping[str, str]) -> tuple[web.Application, InMemorySpanExporter]:
    """A stand-in admin route that calls ``target`` with the gateway's AdminClient."""
    exported = InMemorySpanExporter()
    tracing = Tracing("gateway", "gateway-1", environ=environ, span_processor=SimpleSpanProcessor(exported))
    app = web.Application(middlewares=[request_middleware(metrics=Metrics("gateway"), tracing=tracing)])
    app.cleanup_ctx.append(tracing.context)

    async def route(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session:
            admin = AdminClient(session, None, balancer_url=target, apiserver_urls=(), secret="s" * 32)  # type: ignore[arg-type]
            try:
                answer: Any = await admin.balancer(ADMIN, "GET", request.query["path"])
            except UpstreamError as error:
                return web.json_response({"error": error.detail}, status=502)
        return web.json_response(answer)

    app.router.add_get("/admin", route)
    return app, exported


async def test_a_sampled_admin_call_is_a_client_span_that_the_callee_sees_as_parent(
    aiohttp_client: ClientFactory, upstream: str
) -> None:
    app, exported = _admin_app(upstream, {"OTEL_TRACES_SAMPLER": "always_on"})
    client = await aiohttp_client(app)
    seen = (await (await client.get("/admin", params={"path": "/lb/status"})).json())["traceparent"]
    spans = {span.kind: span for span in exported.get_finished_spans()}
    server, call = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert_called_within(server, call, seen)
    attributes = dict(call.attributes or {})
    assert attributes["url.full"] == f"{upstream}/lb/status"
    assert attributes["http.response.status_code"] == 200
    assert attributes["server.port"] == int(upstream.rsplit(":", 1)[1])


async def test_an_unsampled_admin_call_passes_the_trace_on_without_a_span(
    aiohttp_client: ClientFactory, upstream: str
) -> None:
    app, exported = _admin_app(upstream, {"OTEL_TRACES_SAMPLER": "parentbased_always_on"})
    client = await aiohttp_client(app)
    answer = await client.get("/admin", params={"path": "/lb/status"}, headers={"traceparent": UNSAMPLED})
    assert (await answer.json())["traceparent"] == UNSAMPLED
    assert exported.get_finished_spans() == ()


async def test_a_refused_or_unanswered_admin_call_is_a_failed_client_span(
    aiohttp_client: ClientFactory, upstream: str
) -> None:
    app, exported = _admin_app(upstream, {"OTEL_TRACES_SAMPLER": "always_on"})
    client = await aiohttp_client(app)
    assert (await client.get("/admin", params={"path": "/missing"})).status == 502
    (call,) = [span for span in exported.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "404"

    app, exported = _admin_app(f"http://127.0.0.1:{free_port()}", {"OTEL_TRACES_SAMPLER": "always_on"})
    client = await aiohttp_client(app)
    assert (await client.get("/admin", params={"path": "/lb/status"})).status == 502
    (call,) = [span for span in exported.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "ClientConnectorError"
    assert call.end_time is not None
