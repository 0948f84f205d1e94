"""Tracing with OpenTelemetry: one server span per hop, joined across hops by W3C ``traceparent``.

Configured by the standard ``OTEL_*`` variables; the SDK (``TracerProvider``, ``BatchSpanProcessor``, the
OTLP/HTTP exporter) records and exports. What is ours is the per-request decision, because the hot path is
budgeted (a cached GET costs ~0.1-0.2 ms of CPU per hop) and the SDK's own path costs several µs even for a
span it drops (parent context, sampler call, non-recording span). So the decision is made once per request, by
:meth:`Tracing.begin` in the request middleware, from the ``traceparent`` text itself::

    traceparent from a trusted caller ─► parent-based: its sampled flag decides (traceidratio: its trace id)
    traceparent from an untrusted one ─► our own draw at the ratio; the caller's trace id is kept
    none, or malformed ───────────────► a new trace; its trace id decides (TraceIdRatioBased's rule);
                                         probes (/health, /ready, /metrics) never start one
        │ not sampled: no span at all. The traceparent passed on is the incoming one unchanged (its flag
        │              cleared if an untrusted caller had set it), or a new one flagged 00
        ▼ sampled: a SERVER span (HTTP semantic conventions + request_id); the traceparent passed on names it
    child spans (limiter, cache levels, queries, upstream calls) ─► shared.spans: one ContextVar read when the
                                                                     request is not sampled, nothing created

Edge policy: the gateway is the edge. A client's sampled flag is not honoured there unless the caller is one of
``TRUSTED_PROXIES``: anyone could otherwise make every request traced (CPU and collector storage on demand),
and a trace id chosen by the client could be picked to always fall under the ratio, so for untrusted callers
the decision is a fresh random draw. The client's trace id is kept (the contract: traceparent is passed through,
and a client can find its request in our traces). The balancer and apiservers are reached only through the
gateway and trust their caller.

Switches: tracing is on when an exporter is configured: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``) or an
OTLP endpoint variable. Unlike the SDK's default (OTLP to localhost:4318) a process with neither exports
nothing: a stack without a collector would otherwise log a failed export every few seconds.
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` switch it off. ``OTEL_TRACES_SAMPLER`` takes the
standard names (default ``parentbased_traceidratio``) and ``OTEL_TRACES_SAMPLER_ARG`` the ratio (default 0.01).
``service.name`` is the process's unless ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``) says otherwise.
Each process, each worker included, builds its provider at start-up (a worker is a fresh interpreter, see
:mod:`shared.workers`) and flushes it on shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import random
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, TraceIdRatioBased
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PEER_PORT,
    NETWORK_PROTOCOL_VERSION,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    set_span_in_context,
)

from shared.keys import REQUEST_ID
from shared.logging import log_traceparent
from shared.metrics import UNMATCHED_ROUTE, route_template
from shared.settings import SettingsError
from shared.spans import SAMPLED_DIGITS, Tokens, activate, deactivate, flagged, traceparent_of

__all__ = [
    "REQUEST_ID_ATTRIBUTE",
    "ServerSpan",
    "Tracing",
    "TracingSettings",
]

REQUEST_ID_ATTRIBUTE = "request_id"  # the log field's name: one query string finds a request in logs and traces
DEFAULT_RATIO = 0.01
SAMPLERS = frozenset(
    {"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
     "parentbased_traceidratio"}
)  # fmt: skip
EXPORTERS = frozenset({"otlp", "console"})
TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_LOW_64 = (1 << 64) - 1
PROBES = frozenset({"/health", "/ready", "/metrics"})  # polled every few seconds: a trace of each would be noise
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_EMPTY = Context()
_log = structlog.get_logger("shared.tracing")

# Ids correlate; they guard nothing (see shared.context): the fast PRNG, not the OS's source.
_ids = random.Random()


@dataclass(frozen=True, slots=True)
class TracingSettings:
    exporters: tuple[str, ...]  # empty: tracing off
    parent_based: bool = True
    ratio: float = DEFAULT_RATIO
    switched_off: bool = False  # by OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none, not merely left unconfigured

    @property
    def enabled(self) -> bool:
        return bool(self.exporters)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TracingSettings:
        """The standard variables (see the module docstring); a bad value raises SettingsError naming it."""
        parent_based, ratio = _sampler(environ)
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls((), parent_based, ratio, switched_off=True)
        for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
            protocol = environ.get(name, "").strip()
            if protocol and protocol != "http/protobuf":
                raise SettingsError(f"{name}={protocol!r}: only http/protobuf is supported")
        named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if not named:
            endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            return cls(("otlp",) if endpoint else (), parent_based, ratio)
        exporters = tuple(dict.fromkeys(part.strip() for part in named.split(",") if part.strip()))
        if exporters == ("none",):
            return cls((), parent_based, ratio, switched_off=True)
        unknown = [part for part in exporters if part not in EXPORTERS]
        if unknown:
            raise SettingsError(f"OTEL_TRACES_EXPORTER={named!r}: expected otlp, console or none")
        return cls(exporters, parent_based, ratio)


def _sampler(environ: Mapping[str, str]) -> tuple[bool, float]:
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_traceidratio"
    if name not in SAMPLERS:
        raise SettingsError(f"OTEL_TRACES_SAMPLER={name!r}: expected one of {', '.join(sorted(SAMPLERS))}")
    parent_based = name.startswith("parentbased_")
    if name.endswith("always_on"):
        return parent_based, 1.0
    if name.endswith("always_off"):
        return parent_based, 0.0
    raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not raw:
        return parent_based, DEFAULT_RATIO
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={raw!r}: expected a ratio from 0 to 1")
    return parent_based, ratio


class _PresetTraceIds(RandomIdGenerator):
    """The SDK's ids, except that a new trace takes the trace id the sampling decision was made on."""

    def __init__(self) -> None:
        self.preset = 0

    def generate_trace_id(self) -> int:
        trace_id, self.preset = self.preset, 0
        return trace_id or super().generate_trace_id()


class Tracing:
    """One process's tracing: its provider (built at start-up by :meth:`context`) and the per-request decision.

    ``trusted_callers``: None for an internal hop (every caller's traceparent is honoured); at the edge, the
    networks whose sampled flag is (``TRUSTED_PROXIES``; empty: nobody's). ``span_processor`` replaces the one
    the environment would build (tests record in memory).
    """

    def __init__(
        self,
        service: str,
        instance: str,
        *,
        trusted_callers: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] | None = None,
        environ: Mapping[str, str] | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.settings = TracingSettings(())
        self._trusted = None if trusted_callers is None else tuple(trusted_callers)
        self._environ = os.environ if environ is None else environ
        self._processor = span_processor
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        self._ids = _PresetTraceIds()
        self._parent_based = True
        self._bound = 0  # a root is sampled when its trace id's low 64 bits are below this (0: never)

    @property
    def recording(self) -> bool:
        return self._tracer is not None

    def start(self) -> None:
        """Read the settings and build the provider; raises SettingsError on a bad variable."""
        settings = TracingSettings.from_env(self._environ)
        self.settings = settings
        self._parent_based = settings.parent_based
        if settings.switched_off or (not settings.enabled and self._processor is None):
            return
        resource = Resource.create({SERVICE_NAME: self.service, SERVICE_INSTANCE_ID: self.instance}).merge(
            OTELResourceDetector().detect()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over ours
        )
        # Every decision is ours (begin / child_span): the SDK records whatever it is asked to.
        provider = TracerProvider(sampler=ALWAYS_ON, resource=resource, id_generator=self._ids, shutdown_on_exit=False)
        for processor in [self._processor] if self._processor is not None else _processors(settings):
            provider.add_span_processor(processor)
        self._provider = provider
        self._tracer = provider.get_tracer("scalable-api")
        self._bound = TraceIdRatioBased.get_bound_for_rate(settings.ratio)

    async def stop(self) -> None:
        """Export what is still queued, then stop the exporter's thread."""
        provider, self._provider, self._tracer, self._bound = self._provider, None, None, 0
        if provider is not None:
            await asyncio.to_thread(provider.shutdown)

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """The provider as a cleanup context: built at start-up, flushed and shut down at the end."""
        self.start()
        _log.info(
            "tracing",
            exporters="off" if not self.recording else ",".join(self.settings.exporters) or "injected",
            parent_based=self.settings.parent_based,
            ratio=self.settings.ratio,
        )
        try:
            yield
        finally:
            await self.stop()

    # -- the per-request decision ------------------------------------------------------------------------------

    def begin(self, request: web.Request, incoming: str | None) -> tuple[str, ServerSpan | None]:
        """The traceparent to pass on and, when this request is sampled here, its running server span."""
        if incoming is not None and TRACEPARENT.fullmatch(incoming):
            trusted = self._trusted is None or _peer_trusted(request.remote, self._trusted)
            if trusted and self._parent_based:  # the common case: passed on exactly as it came
                sampled, traceparent = incoming[54] in SAMPLED_DIGITS, incoming
            else:
                if trusted:
                    sampled = int(incoming[19:35], 16) < self._bound
                else:
                    sampled = self._bound > 0 and _ids.getrandbits(64) < self._bound
                traceparent = flagged(incoming, sampled)
            if not sampled or self._tracer is None:
                log_traceparent.set(traceparent)
                return traceparent, None
            parent = SpanContext(
                int(incoming[3:35], 16), int(incoming[36:52], 16), is_remote=True, trace_flags=TraceFlags(1)
            )
            return self._serve(request, set_span_in_context(NonRecordingSpan(parent)))
        trace_id = _ids.getrandbits(128) or 1
        if (trace_id & _LOW_64) >= self._bound or self._tracer is None or request.raw_path in PROBES:
            traceparent = f"00-{trace_id:032x}-{_ids.getrandbits(64) or 1:016x}-00"
            log_traceparent.set(traceparent)
            return traceparent, None
        self._ids.preset = trace_id
        return self._serve(request, _EMPTY)

    def _serve(self, request: web.Request, parent: Context) -> tuple[str, ServerSpan]:
        assert self._tracer is not None
        route = route_template(request)
        method = request.method
        name = method if route == UNMATCHED_ROUTE else f"{method} {route}"
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=_server_attributes(request, route)
        )
        traceparent = traceparent_of(span)
        log_traceparent.set(traceparent)
        return traceparent, ServerSpan(span, activate(span, self._tracer))


def _processors(settings: TracingSettings) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    for name in settings.exporters:
        exporter: SpanExporter
        if name == "otlp":
            # Imported here: the exporter brings requests and protobuf, which a process with tracing off never needs.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, compression)
        else:
            exporter = ConsoleSpanExporter()
        processors.append(BatchSpanProcessor(exporter))  # OTEL_BSP_* (delay, queue and batch sizes)
    return processors


class ServerSpan:
    """A sampled request's SERVER span while its handler runs; :meth:`finish` records the status and ends it."""

    __slots__ = ("_tokens", "span")

    def __init__(self, span: Span, tokens: Tokens) -> None:
        self.span = span
        self._tokens = tokens

    def finish(self, status: int) -> None:
        span = self.span
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
        if status >= 500:  # a server span's error (4xx are the client's)
            span.set_attribute(ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        deactivate(self._tokens)


def _server_attributes(request: web.Request, route: str) -> dict[str, str | int]:
    method = request.method
    attributes: dict[str, str | int] = {
        HTTP_REQUEST_METHOD: method if method in _KNOWN_METHODS else "_OTHER",
        URL_PATH: request.rel_url.raw_path,  # never the query: it is the client's and may carry personal data
        URL_SCHEME: request.scheme,
        NETWORK_PROTOCOL_VERSION: f"{request.version.major}.{request.version.minor}",
        REQUEST_ID_ATTRIBUTE: request.get(REQUEST_ID, ""),
    }
    if method not in _KNOWN_METHODS:
        attributes[HTTP_REQUEST_METHOD_ORIGINAL] = method
    if route != UNMATCHED_ROUTE:
        attributes[HTTP_ROUTE] = route
    host, _, port = request.host.rpartition(":") if not request.host.endswith("]") else ("", "", "")
    if host and port.isdigit():
        attributes[SERVER_ADDRESS], attributes[SERVER_PORT] = host.strip("[]"), int(port)
    elif request.host:
        attributes[SERVER_ADDRESS] = request.host.strip("[]")
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        attributes[NETWORK_PEER_ADDRESS], attributes[NETWORK_PEER_PORT] = str(peer[0]), int(peer[1])
    agent = request.headers.get("User-Agent")
    if agent:
        attributes[USER_AGENT_ORIGINAL] = agent
    return attributes


@functools.lru_cache(maxsize=1024)
def _peer_trusted(peer: str | None, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in trusted)
