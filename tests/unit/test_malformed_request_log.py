"""A refused request head is one rate-limited warning line, never a traceback; the server's own errors keep theirs."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadStatusLine

from shared.logging import MalformedRequestFilter
from tests.support.clock import ManualClock


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s", ("203.0.113.9",),
        (type(exc), exc, None),
    )  # fmt: skip


def test_malformed_heads_become_one_warning_a_second_with_a_count() -> None:
    clock = ManualClock()
    guard = MalformedRequestFilter(every=1.0, clock=clock)
    first = _record(BadStatusLine("GARBAGE"))
    assert guard.filter(first)
    assert (first.levelno, first.exc_info) == (logging.WARNING, None)
    assert first.getMessage().startswith("malformed_request peer=203.0.113.9 status=400")
    assert not any(guard.filter(_record(BadStatusLine("x"))) for _ in range(50))
    clock.advance(1.0)
    later = _record(BadStatusLine("y"))
    assert guard.filter(later)
    assert later.getMessage().endswith("suppressed_since_last=50")


def test_server_errors_keep_their_traceback() -> None:
    guard = MalformedRequestFilter(clock=ManualClock())
    record = _record(RuntimeError("a bug"))
    assert guard.filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
