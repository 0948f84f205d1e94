"""structlog configuration: JSON lines in production, readable console lines in development.

Every line carries ``service`` and ``instance`` (bound once here) and ``request_id`` (bound per request by the
request-context middleware through contextvars, so it reaches every log call made while serving it). A line
logged while serving a request also carries its ``trace_id`` (whether or not the request is sampled) and, when
it is sampled, the ``span_id`` of the span it was logged in (:func:`add_trace_ids`). :mod:`shared.tracing` sets
them in two ContextVars here (one ``set`` per request; the id is cut out of the traceparent only when a line is
written). Library lines, through the standard library, end with `` trace_id=...`` the same way.

aiohttp logs every request head its parser refuses as an ERROR with a full traceback, so any client could flood
the logs with malformed requests. :class:`MalformedRequestFilter` turns those into one warning line without a
traceback, at most one a second per process, each naming how many were left out since the last; errors of the
server itself keep their tracebacks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Set by shared.tracing and shared.spans: the traceparent the request being served passes on, and (sampled only)
# the id of the span running now. Here rather than there so that logging never imports the tracing SDK.
log_traceparent: ContextVar[str | None] = ContextVar("log_traceparent", default=None)
log_span_id: ContextVar[str | None] = ContextVar("log_span_id", default=None)


def trace_ids() -> tuple[str | None, str | None]:
    """The trace id of the request being served (sampled or not) and, when sampled, the id of its running span."""
    traceparent = log_traceparent.get()
    if traceparent is None:
        return None, None
    return traceparent[3:35], log_span_id.get()


class MalformedRequestFilter(logging.Filter):
    """On ``aiohttp.server``: a refused request head becomes one rate-limited warning line (see the docstring)."""

    def __init__(self, *, every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every = every
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self._every
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed_request peer=%s status=%s error=%r suppressed_since_last=%d"
        record.args = (peer, error.code, error.message, self.suppressed)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        self.suppressed = 0
        return True


def add_trace_ids(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` (and ``span_id`` when sampled) of the request being served."""
    trace_id, span_id = trace_ids()
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
        if span_id is not None:
            event.setdefault("span_id", span_id)
    return event


class TraceIdFilter(logging.Filter):
    """On the standard library's handler: ``record.trace`` is `` trace_id=<id>`` inside a request, else empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id, _ = trace_ids()
        record.trace = "" if trace_id is None else f" trace_id={trace_id}"
        return True


def configure_logging(*, service: str, instance: str, level: str = "info", json: bool = False) -> None:
    numeric = _LEVELS[level]
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        logger_factory: structlog.typing.WrappedLogger = structlog.BytesLoggerFactory(sys.stdout.buffer)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        logger_factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=[*shared_processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service, instance=instance)
    # Libraries log through the standard library: keep their warnings, in the same stream.
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=sys.stdout, format="%(levelname)s %(name)s %(message)s%(trace)s"
    )
    for handler in logging.getLogger().handlers:  # basicConfig's own, or whatever was there before it
        if not any(isinstance(f, TraceIdFilter) for f in handler.filters):
            handler.addFilter(TraceIdFilter())
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
