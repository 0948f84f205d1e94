"""Raw HTTP/1.1 over a socket, for requests no well-behaved client library will send."""

from __future__ import annotations

import asyncio
import re

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


async def exchange(port: int, raw: bytes, *, wait: float = 2.0) -> bytes:
    """Send ``raw`` to 127.0.0.1:``port`` and return everything answered until the peer closes or ``wait`` s pass."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        received = b""
        try:
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    received += chunk
        except TimeoutError:
            pass
        return received
    except ConnectionError:
        return b""
    finally:
        writer.close()


def statuses(answer: bytes) -> list[int]:
    """Every status line in ``answer`` (more than one means the connection carried more than one response)."""
    return [int(code) for code in _STATUS.findall(answer)]
