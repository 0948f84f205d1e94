"""Local TCP ports for the launchers and the tests: pick a free one, tell whether one answers."""

from __future__ import annotations

import contextlib
import socket

__all__ = ["free_port", "port_answers"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the OS picks it, so parallel callers rarely collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False
