"""A flood of malformed request heads against a real process leaves a few warning lines and no traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stack.services.ports import free_port
from tests.support.processes import start_process, start_test_backend, suite_env

pytestmark = pytest.mark.e2e


async def _send(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    answer = await reader.read(-1)
    writer.close()
    return answer


async def test_malformed_heads_log_a_rate_limited_warning_without_traceback(tmp_path: Path) -> None:
    backend = start_test_backend(tmp_path)
    balancer = start_process("balancer", free_port(), tmp_path, suite_env(BALANCER_BACKENDS=backend.url))
    try:
        heads = [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"]
        answers = [await _send(balancer.port, heads[n % len(heads)]) for n in range(60)]
        assert all(answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request") for answer in answers)
        log = balancer.output(tail=None)
        assert "Traceback" not in log
        warnings = [line for line in log.splitlines() if "malformed_request" in line]
        assert 1 <= len(warnings) <= 5  # one a second at most, however many arrive
    finally:
        balancer.stop()
        backend.stop()
