"""Tracing: the OTEL_* settings, the per-request sampling decision, the server span and child spans, log ids."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode

from shared.context import request_middleware
from shared.keys import TRACEPARENT
from shared.logging import TraceIdFilter, add_trace_ids, log_traceparent, trace_ids
from shared.metrics import Metrics
from shared.settings import SettingsError
from shared.spans import child_span, postgres_span, untraced
from shared.tracing import Tracing, TracingSettings

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"
ALWAYS = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
NEVER = {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


# -- settings --------------------------------------------------------------------------------------------------


def test_defaults_are_off_without_an_exporter_and_parent_based_one_percent() -> None:
    settings = TracingSettings.from_env({})
    assert (settings.enabled, settings.parent_based, settings.ratio) == (False, True, 0.01)
    endpoint = TracingSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"})
    assert (endpoint.exporters, endpoint.ratio) == (("otlp",), 0.01)


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ("otlp",)),
    ],
)
def test_exporters_follow_the_standard_variables(environ: Mapping[str, str], exporters: tuple[str, ...]) -> None:
    assert TracingSettings.from_env(environ).exporters == exporters


@pytest.mark.parametrize(
    ("environ", "parent_based", "ratio"),
    [
        ({"OTEL_TRACES_SAMPLER_ARG": "0.25"}, True, 0.25),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, False, 1.0),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, False, 0.01),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, False, 1.0),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, True, 0.0),
    ],
)
def test_samplers_by_their_standard_names(environ: Mapping[str, str], parent_based: bool, ratio: float) -> None:
    settings = TracingSettings.from_env(environ)
    assert (settings.parent_based, settings.ratio) == (parent_based, ratio)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "often"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_a_bad_value_names_its_variable(environ: Mapping[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        TracingSettings.from_env(environ)


# -- one process's requests ------------------------------------------------------------------------------------


def _traced_app(
    environ: Mapping[str, str], *, trusted: Networks | None = None
) -> tuple[web.Application, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    tracing = Tracing(
        "test",
        "test-1",
        trusted_callers=trusted,
        environ=environ,
        span_processor=SimpleSpanProcessor(exported),
    )
    app = web.Application(middlewares=[request_middleware(metrics=Metrics("test"), tracing=tracing)])
    app.cleanup_ctx.append(tracing.context)

    async def item(request: web.Request) -> web.Response:
        with child_span("work", attributes={"step": 1}) as span:
            trace_id, span_id = trace_ids()
            inner = None if span is None else f"{span.get_span_context().span_id:016x}"
            event = add_trace_ids(None, "info", {})
        status = 503 if request.match_info["name"] == "down" else 200
        body = {"trace": request[TRACEPARENT], "log": [trace_id, span_id], "inner": inner, "event": event}
        return web.json_response(body, status=status)

    async def health(request: web.Request) -> web.Response:
        with postgres_span("SELECT version FROM resources WHERE id = $1"), postgres_span("SELECT 1"):
            return web.json_response({"trace": request[TRACEPARENT]})

    async def quiet(request: web.Request) -> web.Response:
        with untraced(), child_span("each round") as inside:
            passed_on, (trace_id, _) = log_traceparent.get(), trace_ids()
        with child_span("after"):
            pass
        return web.json_response({"inside": inside, "passed_on": passed_on, "trace_id": trace_id})

    app.router.add_get("/items/{name}", item)
    app.router.add_get("/health", health)
    app.router.add_get("/quiet", quiet)
    return app, exported


def _by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


async def test_a_new_trace_records_a_server_span_and_its_child(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app(ALWAYS)
    client = await aiohttp_client(app)
    response = await client.get("/items/a", headers={"X-Request-ID": "req-1", "User-Agent": "probe/1"})
    body: dict[str, Any] = await response.json()
    spans = _by_name(exported.get_finished_spans())
    server, work = spans["GET /items/{name}"], spans["work"]
    context = server.context
    assert context is not None
    assert work.parent is not None
    assert work.context is not None
    assert server.kind is SpanKind.SERVER
    assert server.parent is None
    assert dict(server.attributes or {}) | {"network.peer.port": 0} == {
        "http.request.method": "GET",
        "http.route": "/items/{name}",
        "url.path": "/items/a",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": client.port,
        "network.peer.address": "127.0.0.1",
        "network.peer.port": 0,
        "network.protocol.version": "1.1",
        "user_agent.original": "probe/1",
        "request_id": "req-1",
        "http.response.status_code": 200,
    }
    assert server.resource.attributes["service.name"] == "test"
    assert server.resource.attributes["service.instance.id"] == "test-1"
    # The traceparent passed on names this hop's server span; the child is its child; log lines name both.
    trace_id, server_id = _hex(context.trace_id, 32), _hex(context.span_id, 16)
    assert body["trace"] == f"00-{trace_id}-{server_id}-{int(context.trace_flags):02x}"
    assert context.trace_flags.sampled
    assert work.parent.span_id == context.span_id
    assert work.context.trace_id == context.trace_id
    assert body["log"] == [trace_id, body["inner"]] == [trace_id, _hex(work.context.span_id, 16)]
    assert body["event"] == {"trace_id": trace_id, "span_id": body["inner"]}


async def test_a_sampled_caller_is_the_parent_and_5xx_marks_the_span_failed(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app(ALWAYS)
    client = await aiohttp_client(app)
    response = await client.get("/items/down", headers={"traceparent": SAMPLED})
    assert response.status == 503
    server = _by_name(exported.get_finished_spans())["GET /items/{name}"]
    assert server.parent is not None
    assert server.context is not None
    assert (_hex(server.context.trace_id, 32), _hex(server.parent.span_id, 16)) == (TRACE_ID, PARENT_ID)
    assert server.parent.is_remote
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "503"


async def test_an_unsampled_caller_gets_no_span_and_its_traceparent_passes_on(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app(ALWAYS)
    client = await aiohttp_client(app)
    body = await (await client.get("/items/a", headers={"traceparent": UNSAMPLED})).json()
    assert exported.get_finished_spans() == ()
    # Unsampled: the trace id is still logged, there is no span id, and nothing downstream changes.
    assert body == {"trace": UNSAMPLED, "log": [TRACE_ID, None], "inner": None, "event": {"trace_id": TRACE_ID}}


async def test_tracing_off_records_nothing_and_new_traces_say_unsampled(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app({"OTEL_SDK_DISABLED": "true", **ALWAYS})
    client = await aiohttp_client(app)
    body = await (await client.get("/items/a")).json()
    assert body["trace"].endswith("-00")
    # A caller's sampled flag is passed on by a process that does not trace (the next one may).
    assert (await (await client.get("/items/a", headers={"traceparent": SAMPLED})).json())["trace"] == SAMPLED
    assert exported.get_finished_spans() == ()


async def test_the_edge_decides_for_untrusted_callers_and_keeps_their_trace_id(aiohttp_client: ClientFactory) -> None:
    untrusted, exported = _traced_app(NEVER, trusted=())
    client = await aiohttp_client(untrusted)
    body = await (await client.get("/items/a", headers={"traceparent": SAMPLED})).json()
    assert exported.get_finished_spans() == ()
    assert body["trace"] == UNSAMPLED  # the flag cleared: nothing downstream records it either

    proxy, exported = _traced_app(NEVER, trusted=[ipaddress.ip_network("127.0.0.0/8")])
    client = await aiohttp_client(proxy)
    body = await (await client.get("/items/a", headers={"traceparent": SAMPLED})).json()
    server = _by_name(exported.get_finished_spans())["GET /items/{name}"]
    assert server.parent is not None
    assert server.context is not None
    assert server.parent.span_id == int(PARENT_ID, 16)
    assert body["trace"] == f"00-{TRACE_ID}-{_hex(server.context.span_id, 16)}-01"


async def test_the_ratio_decides_new_traces_by_their_trace_id(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app({"OTEL_TRACES_SAMPLER_ARG": "0.25"})
    client = await aiohttp_client(app)
    bound = TraceIdRatioBased.get_bound_for_rate(0.25)
    sampled = 0
    for _ in range(400):
        trace = (await (await client.get("/items/a")).json())["trace"]
        is_sampled = int(trace[-2:], 16) & 1 == 1
        assert is_sampled == (int(trace[19:35], 16) < bound)  # TraceIdRatioBased's rule
        sampled += is_sampled
    assert 50 <= sampled <= 150
    assert len([s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]) == sampled


async def test_probes_start_no_trace_but_join_a_sampled_one(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app(ALWAYS)
    client = await aiohttp_client(app)
    assert (await (await client.get("/health")).json())["trace"].endswith("-00")
    assert exported.get_finished_spans() == ()
    await client.get("/health", headers={"traceparent": SAMPLED})
    spans = _by_name(exported.get_finished_spans())
    query, plain = spans["SELECT resources"], spans["SELECT"]
    server_context, query_context = spans["GET /health"].context, query.context
    assert server_context is not None
    assert query_context is not None
    assert query.kind is SpanKind.CLIENT
    assert query.parent is not None
    assert plain.parent is not None
    # Nested blocks nest: the second query ran inside the first one's block.
    assert (query.parent.span_id, plain.parent.span_id) == (server_context.span_id, query_context.span_id)
    assert dict(query.attributes or {}) == {
        "db.system.name": "postgresql",
        "db.operation.name": "SELECT",
        "db.collection.name": "resources",
        "db.query.text": "SELECT version FROM resources WHERE id = $1",  # placeholders, never the values
    }


# -- helpers ---------------------------------------------------------------------------------------------------


async def test_untraced_work_records_nothing_and_passes_the_trace_on_unsampled(aiohttp_client: ClientFactory) -> None:
    app, exported = _traced_app(ALWAYS)
    client = await aiohttp_client(app)
    body: dict[str, Any] = await (await client.get("/quiet")).json()
    spans = _by_name(exported.get_finished_spans())
    assert set(spans) == {"GET /quiet", "after"}, "no span inside the block; recording resumes after it"
    server = spans["GET /quiet"].context
    assert server is not None
    assert body["inside"] is None
    assert body["trace_id"] == _hex(server.trace_id, 32), "log lines keep the trace id"
    flags = int(server.trace_flags) & 0xFE
    assert body["passed_on"] == f"00-{_hex(server.trace_id, 32)}-{_hex(server.span_id, 16)}-{flags:02x}"


def test_outside_a_sampled_request_child_spans_cost_nothing() -> None:
    with child_span("nothing") as span, postgres_span("SELECT 1") as query:
        assert (span, query) == (None, None)
    assert trace_ids() == (None, None)
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}


def test_standard_library_lines_carry_the_trace_id_only_inside_a_request() -> None:
    record = logging.LogRecord("lib", logging.WARNING, __file__, 1, "message", None, None)
    assert TraceIdFilter().filter(record)
    assert getattr(record, "trace", None) == ""
