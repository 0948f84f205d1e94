"""structlog configuration: JSON lines in production, readable console lines in development.

Every line carries ``service`` and ``instance`` (bound once here) and ``request_id`` (bound per request by the
request-context middleware through contextvars, so it reaches every log call made while serving it).

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

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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


def configure_logging(*, service: str, instance: str, level: str = "info", json: bool = False) -> None:
    numeric = _LEVELS[level]
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
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
        level=max(numeric, logging.WARNING), stream=sys.stdout, format="%(levelname)s %(name)s %(message)s"
    )
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
