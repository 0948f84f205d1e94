"""Running an app: uvloop when available, no per-request access log on the hot path, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog
from aiohttp import web

from shared.logging import configure_logging
from shared.settings import CommonSettings, SettingsError

_log = structlog.get_logger("shared.runner")
T = TypeVar("T")


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop run on asyncio's loop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def load_settings(build: Callable[[Mapping[str, str] | None], T]) -> T:
    """Build settings or stop the process with one clear line naming the variable."""
    try:
        return build(None)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(
    app: web.Application, common: CommonSettings, *, service: str, port: int, shutdown_timeout: float = 10.0
) -> None:
    configure_logging(service=service, instance=common.instance_id, level=common.log_level, json=common.production)
    install_uvloop()
    _log.info("listening", host=common.host, port=port, environment=common.environment)
    web.run_app(
        app,
        host=common.host,
        port=port,
        access_log=None,
        print=None,
        reuse_port=True,
        shutdown_timeout=shutdown_timeout,
        handle_signals=True,
    )
