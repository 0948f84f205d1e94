"""Upstream calls in a sampled request are CLIENT spans, and the traceparent sent names them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from shared.context import request_middleware
from shared.metrics import Metrics
from shared.tracing import Tracing
from shared.upstream import Upstream, UpstreamFailure, outgoing_headers, proxy_request
from stack.services.ports import free_port
from tests.support.traces import assert_called_within

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def _echo_traceparent(request: web.Request) -> web.Response:
    return web.json_response({"traceparent": request.headers.get("traceparent")})


@pytest.fixture
async def backend(aiohttp_server: ServerFactory) -> str:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _echo_traceparent)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def _proxy_app(origin: str, environ: Mapping[str, str]) -> tuple[web.Application, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    tracing = Tracing("proxy", "proxy-1", environ=environ, span_processor=SimpleSpanProcessor(exported))
    upstream = Upstream(origin, connect_timeout=0.5, timeout=2.0)
    app = web.Application(middlewares=[request_middleware(metrics=Metrics("proxy"), tracing=tracing)])
    app.cleanup_ctx.append(tracing.context)

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = outgoing_headers(request, forwarded_for="127.0.0.1")
        try:
            return await proxy_request(request, upstream, headers=headers)
        except UpstreamFailure:
            return web.Response(status=503)

    async def close(app: web.Application) -> None:
        await upstream.close()

    app.router.add_get("/p", forward)
    app.on_cleanup.append(close)
    return app, exported


def _kinds(spans: tuple[ReadableSpan, ...]) -> dict[SpanKind, ReadableSpan]:
    return {span.kind: span for span in spans}


async def test_a_sampled_call_is_a_client_span_and_the_next_hop_sees_it_as_parent(
    aiohttp_client: ClientFactory, backend: str
) -> None:
    app, exported = _proxy_app(backend, {"OTEL_TRACES_SAMPLER": "always_on"})
    client = await aiohttp_client(app)
    seen = (await (await client.get("/p?email=someone@example.com")).json())["traceparent"]
    spans = _kinds(exported.get_finished_spans())
    server, call = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert_called_within(server, call, seen)
    assert call.name == "GET"
    attributes = dict(call.attributes or {})
    port = int(backend.rsplit(":", 1)[1])
    assert attributes == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"{backend}/p",  # never the query string
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    assert call.end_time is not None
    assert server.end_time is not None
    assert call.end_time <= server.end_time


async def test_an_unsampled_call_passes_the_traceparent_on_unchanged(
    aiohttp_client: ClientFactory, backend: str
) -> None:
    app, exported = _proxy_app(backend, {"OTEL_TRACES_SAMPLER": "parentbased_always_on"})
    client = await aiohttp_client(app)
    seen = (await (await client.get("/p", headers={"traceparent": UNSAMPLED})).json())["traceparent"]
    assert seen == UNSAMPLED
    assert exported.get_finished_spans() == ()


async def test_a_failed_call_is_a_failed_client_span(aiohttp_client: ClientFactory) -> None:
    app, exported = _proxy_app(f"http://127.0.0.1:{free_port()}", {"OTEL_TRACES_SAMPLER": "always_on"})
    client = await aiohttp_client(app)
    assert (await client.get("/p")).status == 503
    call = _kinds(exported.get_finished_spans())[SpanKind.CLIENT]
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "connect"
