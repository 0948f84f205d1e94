"""Spans under a request's SERVER span: what the code outside :mod:`shared.tracing` uses to record its work.

:mod:`shared.tracing` decides once per request whether it is sampled and, when it is, makes the SERVER span the
*active* one here. Everything else asks :func:`active` (one ContextVar read) and, when the request is not
sampled, creates nothing::

    child_span(name)   with-block: a child span, itself active while the block runs (limiter, cache levels)
    postgres_span(sql) with-block: a CLIENT span for one query (database semantic conventions)
    start_child(name)  a child span the caller ends (an upstream call that outlives the block that starts it)
    start_http_call    start_child for an HTTP call, with its semantic-convention attributes
    untraced()         with-block: nothing recorded, the trace passed on as not sampled (a long stream's ticks)
    client_answered / client_failed   an HTTP CLIENT span's outcome (4xx count as errors for a client)

The traced query helpers every PostgreSQL caller uses are in :mod:`shared.queries`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import TracebackType

from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_OPERATION_NAME,
    DB_QUERY_TEXT,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.util.types import Attributes

from shared.logging import log_span_id, log_traceparent

__all__ = [
    "SAMPLED_DIGITS",
    "Active",
    "Tokens",
    "activate",
    "active",
    "child_span",
    "client_answered",
    "client_failed",
    "deactivate",
    "flagged",
    "postgres_span",
    "start_child",
    "start_http_call",
    "traceparent_of",
    "untraced",
]

SAMPLED_DIGITS = frozenset("13579bdf")  # a traceparent's flags' low hex digit when the sampled bit is set
_SQL_TARGET = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+([A-Za-z_][A-Za-z0-9_.]*)", re.IGNORECASE)

# The recording span of the running request (or of the child span it is in) and the tracer that made it; None
# when the request is not sampled or outside any request. Every child span asks this first. Log lines get the
# traceparent passed on (so the trace id is logged whether or not the request is sampled) and the span id through
# shared.logging's ContextVars.
Active = tuple[Span, Tracer]
_active: ContextVar[Active | None] = ContextVar("tracing_active", default=None)


def active() -> Active | None:
    """The recording span of the running request and its tracer; None when unsampled (the cheap check)."""
    return _active.get()


def traceparent_of(span: Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


Tokens = tuple[Token[Active | None], Token[str | None]]


def activate(span: Span, tracer: Tracer) -> Tokens:
    """``span`` is the one running now: child spans go under it, log lines name it."""
    return _active.set((span, tracer)), log_span_id.set(f"{span.get_span_context().span_id:016x}")


def deactivate(tokens: Tokens) -> None:
    _active.reset(tokens[0])
    log_span_id.reset(tokens[1])


class _Child:
    """A child span of the active one, active itself while the block runs; an exception marks it failed."""

    __slots__ = ("_attributes", "_kind", "_name", "_parent", "_started")

    def __init__(self, parent: Active, name: str, kind: SpanKind, attributes: Attributes) -> None:
        self._parent = parent
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._started: tuple[Span, Tokens] | None = None

    def __enter__(self) -> Span:
        span, tracer = self._parent
        child = tracer.start_span(
            self._name, context=set_span_in_context(span), kind=self._kind, attributes=self._attributes
        )
        self._started = child, activate(child, tracer)
        return child

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._started is not None, "exited before entered"
        span, tokens = self._started
        if kind is not None:
            span.set_attribute(ERROR_TYPE, kind.__qualname__)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        deactivate(tokens)


class _NoSpan:
    """What :func:`child_span` gives an unsampled request: a context manager that does nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        return None


_NO_SPAN = _NoSpan()


def child_span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None) -> _Child | _NoSpan:
    """``with child_span(...) as span:`` a span under the active one (``span`` is None when unsampled)."""
    parent = _active.get()
    if parent is None:
        return _NO_SPAN
    return _Child(parent, name, kind, attributes)


def start_child(name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes = None) -> Span | None:
    """A span under the active one that outlives the block that starts it (the caller ends it); None unsampled."""
    parent = _active.get()
    if parent is None:
        return None
    span, tracer = parent
    return tracer.start_span(name, context=set_span_in_context(span), kind=kind, attributes=attributes)


def postgres_span(sql: str) -> _Child | _NoSpan:
    """``with postgres_span(sql):`` around one query: a CLIENT span by the database semantic conventions.

    The statement is recorded as written (placeholders, never the values).
    """
    if _active.get() is None:
        return _NO_SPAN
    name, attributes = _described(sql)
    return child_span(name, kind=SpanKind.CLIENT, attributes=attributes)


@functools.lru_cache(maxsize=512)
def _described(sql: str) -> tuple[str, dict[str, str]]:
    """A statement's span name (``SELECT resources``) and attributes; statements are few, so cached."""
    operation = sql.split(None, 1)[0].upper() if sql.strip() else "QUERY"
    attributes = {DB_SYSTEM_NAME: "postgresql", DB_OPERATION_NAME: operation, DB_QUERY_TEXT: sql}
    target = _SQL_TARGET.search(sql)
    if target is None:
        return operation, attributes
    attributes[DB_COLLECTION_NAME] = target.group(1)
    return f"{operation} {target.group(1)}", attributes


def flagged(traceparent: str, sampled: bool) -> str:
    """``traceparent`` with its sampled flag set to ``sampled`` (the other flag bits kept)."""
    if (traceparent[54] in SAMPLED_DIGITS) == sampled:
        return traceparent
    flags = int(traceparent[53:55], 16)
    return f"{traceparent[:53]}{flags | 1 if sampled else flags & 0xFE:02x}"


def start_http_call(method: str, url: str, host: str | None, port: int | None) -> Span | None:
    """A CLIENT span for one HTTP/1.1 call under the active span (HTTP semantic conventions: ``url.full``
    without the query string, which may carry personal data); None when the request is not sampled."""
    if _active.get() is None:
        return None
    attributes: dict[str, str | int] = {
        HTTP_REQUEST_METHOD: method,
        URL_FULL: url.partition("?")[0],
        NETWORK_PROTOCOL_VERSION: "1.1",
    }
    if host is not None:
        attributes[SERVER_ADDRESS] = host
    if port is not None:
        attributes[SERVER_PORT] = port
    return start_child(method, kind=SpanKind.CLIENT, attributes=attributes)


def client_answered(span: Span, status: int) -> None:
    """An HTTP CLIENT span's response status; a client span's error includes 4xx."""
    span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    if status >= 400:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))


def client_failed(span: Span, error_type: str) -> None:
    """An HTTP CLIENT span that got no response: marked failed and ended."""
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR))
    span.end()


@contextmanager
def untraced() -> Iterator[None]:
    """Within the block nothing is recorded and calls pass the request's trace on with its sampled flag cleared.

    For work a long-lived request repeats (the admin stream's snapshot every second): its trace keeps the first
    round and the request's own span, not a span per round for hours. Log lines keep the trace id.
    """
    traceparent = log_traceparent.get()
    unsampled = None if traceparent is None else flagged(traceparent, sampled=False)
    tokens = _active.set(None), log_traceparent.set(unsampled)
    try:
        yield
    finally:
        _active.reset(tokens[0])
        log_traceparent.reset(tokens[1])
