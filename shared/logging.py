"""structlog configuration: JSON lines in production, readable console lines in development.

Every line carries ``service`` and ``instance`` (bound once here) and ``request_id`` (bound per request by the
request-context middleware through contextvars, so it reaches every log call made while serving it).
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
