"""Tracing across real processes: gateway, balancer and apiserver export to a real OTLP/HTTP receiver.

The receiver (started by the fixture) accepts ``POST /v1/traces`` and decodes each body as OTLP's
``ExportTraceServiceRequest``. The stack samples no new trace (``OTEL_TRACES_SAMPLER_ARG=0``) and trusts the
test as a proxy (``TRUSTED_PROXIES``), so the traceparent each request is sent with decides: one sampled request
must come back as one trace whose spans join across the three processes; an unsampled one exports nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from database.accounts import DEV_ADMIN
from database.seed import seed
from tests.support.polling import wait_until
from tests.support.stack import UNLIMITED, Stack, running_stack

pytestmark = pytest.mark.e2e

CLIENT_SPAN_ID = "b7ad6b7169203331"
SAMPLED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED_TRACE = "0af7651916cd43dd8448eb211c80319c"
NEW_TRACE_PROBE = "new-trace-probe"


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    kind: int  # OTLP's enum: 2 server, 3 client
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class OtlpReceiver(ThreadingHTTPServer):
    """Collects every span exported to it (its own thread: it answers even while the test blocks its loop)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.spans: list[ExportedSpan] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def collected(self) -> list[ExportedSpan]:
        with self.lock:
            return list(self.spans)


class _ExportHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.server.lock:
            self.server.spans.extend(_decoded(request))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reports what matters."""


def _decoded(request: ExportTraceServiceRequest) -> Iterator[ExportedSpan]:
    for resource_spans in request.resource_spans:
        resource = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = {item.key: _value(item.value) for item in span.attributes}
                yield ExportedSpan(
                    resource["service.name"],
                    span.name,
                    span.kind,
                    span.trace_id.hex(),
                    span.span_id.hex(),
                    span.parent_span_id.hex(),
                    attributes,
                )


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _traced_stack(tmp_path: Path, database_url: str, redis_url: str, receiver: OtlpReceiver) -> Iterator[Stack]:
    """One apiserver, the balancer and the gateway exporting to ``receiver``; only a sampled traceparent from the
    test (a trusted proxy) starts a trace."""
    tracing = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        apiservers=1,
        apiserver_env=tracing,
        balancer_env=tracing,
        rate_limits=UNLIMITED,
        TRUSTED_PROXIES="127.0.0.1/32",
        **tracing,
    ) as stack:
        yield stack


async def _get(http: aiohttp.ClientSession, url: str, traceparent: str | None) -> str:
    headers = {"traceparent": traceparent} if traceparent else {"X-Request-ID": NEW_TRACE_PROBE}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200, await response.text()
        return response.headers["X-Request-ID"]


def _one(spans: list[ExportedSpan], service: str, kind: int, name: str | None = None) -> ExportedSpan:
    found = [s for s in spans if s.service == service and s.kind == kind and name in (None, s.name)]
    assert len(found) == 1, f"{service} {kind} {name}: {found}"
    return found[0]


async def test_one_request_is_one_trace_across_three_processes_and_unsampled_ones_export_nothing(
    tmp_path: Path, database_url: str, redis_url: str, receiver: OtlpReceiver
) -> None:
    await seed(database_url, resources=3)
    with _traced_stack(tmp_path, database_url, redis_url, receiver) as stack:
        async with aiohttp.ClientSession() as http:
            url = f"{stack.gateway}/api/v1/resources"
            # First the requests that must leave nothing, then the sampled one: once its spans are in from all
            # three processes, each process has exported everything it had queued before it.
            await _get(http, f"{url}/1", f"00-{UNSAMPLED_TRACE}-{CLIENT_SPAN_ID}-00")
            await _get(http, f"{url}/1", None)
            request_id = await _get(http, f"{url}/2", f"00-{SAMPLED_TRACE}-{CLIENT_SPAN_ID}-01")

            async def all_three_exported() -> bool:
                servers = {s.service for s in receiver.collected() if s.trace_id == SAMPLED_TRACE and s.kind == 2}
                return servers == {"gateway", "balancer", "apiserver"}

            await wait_until(all_three_exported, within=15)

    spans = receiver.collected()
    assert {s.trace_id for s in spans} == {SAMPLED_TRACE}, "only the sampled request was exported"
    gateway = _one(spans, "gateway", 2)
    gateway_call = _one(spans, "gateway", 3, "GET")
    balancer = _one(spans, "balancer", 2)
    balancer_call = _one(spans, "balancer", 3, "GET")
    apiserver = _one(spans, "apiserver", 2)
    # The chain of parents: our client's span → gateway → its call → balancer → its call → apiserver.
    assert gateway.parent_id == CLIENT_SPAN_ID
    assert gateway_call.parent_id == gateway.span_id
    assert balancer.parent_id == gateway_call.span_id
    assert balancer_call.parent_id == balancer.span_id
    assert apiserver.parent_id == balancer_call.span_id
    # The work inside each hop is under its server span.
    assert _one(spans, "gateway", 3, "EVALSHA ratelimit").parent_id == gateway.span_id
    by_name = {s.name: s for s in spans if s.service == "apiserver"}
    # The first read of resource 2 anywhere: every level is asked, PostgreSQL answers, L2 is filled.
    for level in ("cache L1", "cache L2"):
        assert by_name[level].parent_id == apiserver.span_id
        assert by_name[level].attributes["cache.hit"] is False
    assert by_name["cache PostgreSQL"].parent_id == apiserver.span_id
    assert by_name["cache L2 put"].parent_id == apiserver.span_id
    assert by_name["SELECT resources"].parent_id == by_name["cache PostgreSQL"].span_id
    assert by_name["SELECT resources"].attributes["db.system.name"] == "postgresql"
    # HTTP semantic conventions and our request id, the same on every hop.
    assert gateway.name == "GET /api/v1/resources/{id}"
    assert apiserver.attributes["http.route"] == "/api/v1/resources/{id}"
    for server in (gateway, balancer, apiserver):
        assert server.attributes["http.request.method"] == "GET"
        assert server.attributes["url.path"] == "/api/v1/resources/2"
        assert server.attributes["http.response.status_code"] == 200
        assert server.attributes["request_id"] == request_id
    assert balancer_call.attributes["server.port"] == stack.apiservers[0].port


ADMIN_TRACE = "5cf92f3577b34da6a3ce929d0e0e4737"
LOGIN_TRACE = "6df92f3577b34da6a3ce929d0e0e4738"
WRITE_TRACE = "7ef92f3577b34da6a3ce929d0e0e4739"


def _sampled(trace_id: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{CLIENT_SPAN_ID}-01"}


async def test_queries_beyond_the_resources_and_the_admin_calls_are_spans_of_their_request(
    tmp_path: Path, database_url: str, redis_url: str, receiver: OtlpReceiver
) -> None:
    """Every PostgreSQL query of a request is a span (the gateway's accounts, the apiserver's idempotency keys),
    and the admin API's calls to the balancer and apiservers carry the trace on."""
    await seed(database_url, resources=3)
    with _traced_stack(tmp_path, database_url, redis_url, receiver) as stack:
        async with aiohttp.ClientSession() as http:
            login_url = f"{stack.gateway}/api/v1/auth/login"
            async with http.post(login_url, json=DEV_ADMIN.login, headers=_sampled(LOGIN_TRACE)) as response:
                assert response.status == 200, await response.text()
                auth = {"Authorization": f"Bearer {(await response.json())['token']}"}
            body = {"name": "traced", "type": "seed", "data": {}}
            headers = {**auth, **_sampled(WRITE_TRACE), "Idempotency-Key": "5b0c7a7e-3f1d-4d58-9d8c-2b7f1e0c9a11"}
            async with http.post(f"{stack.gateway}/api/v1/resources", json=body, headers=headers) as response:
                assert response.status == 201, await response.text()
            headers = {**auth, **_sampled(ADMIN_TRACE)}
            async with http.get(f"{stack.gateway}/api/v1/admin/cache", headers=headers) as response:
                assert response.status == 200, await response.text()

            def servers(trace_id: str) -> set[str]:
                return {s.service for s in receiver.collected() if s.trace_id == trace_id and s.kind == 2}

            async def all_exported() -> bool:
                return (
                    servers(LOGIN_TRACE) == {"gateway"}
                    and servers(WRITE_TRACE) == {"gateway", "balancer", "apiserver"}
                    and servers(ADMIN_TRACE) == {"gateway", "balancer", "apiserver"}
                )

            await wait_until(all_exported, within=15)

    spans = receiver.collected()
    login = [s for s in spans if s.trace_id == LOGIN_TRACE]
    gateway = _one(login, "gateway", 2)
    lookup = _one(login, "gateway", 3, "SELECT users")
    assert lookup.parent_id == gateway.span_id
    assert lookup.attributes["db.system.name"] == "postgresql"
    assert "$1" in lookup.attributes["db.query.text"], "the statement with placeholders"
    assert DEV_ADMIN.login["email"] not in str(lookup.attributes), "never the values"
    assert _one(login, "gateway", 3, "INSERT refresh_tokens").parent_id == gateway.span_id

    write = [s for s in spans if s.trace_id == WRITE_TRACE]
    apiserver = _one(write, "apiserver", 2)
    for name in ("SELECT idempotency_keys", "INSERT idempotency_keys", "INSERT resources"):
        assert _one(write, "apiserver", 3, name).parent_id == apiserver.span_id, name

    admin = [s for s in spans if s.trace_id == ADMIN_TRACE]
    gateway = _one(admin, "gateway", 2)
    calls = {s.span_id: s for s in admin if s.service == "gateway" and s.kind == 3 and s.name == "GET"}
    assert len(calls) == 2, "GET /lb/status, then GET /internal/cache on the one apiserver"
    for service in ("balancer", "apiserver"):
        server = _one(admin, service, 2)
        call = calls[server.parent_id]
        assert call.parent_id == gateway.span_id
        assert call.attributes["http.response.status_code"] == 200
        assert call.attributes["url.full"].endswith(server.attributes["url.path"])
