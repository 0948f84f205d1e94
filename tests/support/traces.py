"""Assertions on recorded spans shared by the tracing tests."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan


def assert_called_within(server: ReadableSpan, call: ReadableSpan, sent: str | None) -> None:
    """``call`` is a child of ``server``, and ``sent`` (the traceparent the callee got) names ``call``."""
    assert server.context is not None
    assert call.context is not None
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    context = call.context
    assert sent == f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
