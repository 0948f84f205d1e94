"""Running an app: uvloop when available, no per-request access log on the hot path, graceful SIGTERM.

:func:`run` is what every ``__main__`` calls: with one worker (the default) it serves in this process; with
several (``WORKERS`` / ``--workers``) this process becomes their parent (:mod:`shared.workers`) and each worker,
started again as ``python -m <package>``, comes back here and serves.

:func:`serve` is ``web.run_app``'s life cycle with one change: the TCP port is served through
:class:`shared.connections.ConnectionGuard` (the request-head deadline and the connection caps), which
``run_app`` has no hook for. So the app runs on an ``AppRunner``: set up (startup and cleanup contexts), listen,
wait for SIGTERM or SIGINT, stop listening, close idle connections, let requests in flight finish within
``shutdown_timeout``, clean up. A second signal during the drain changes nothing: the drain is bounded anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import structlog
from aiohttp import web

from shared.connections import ConnectionGuard, connection_cap, open_file_limit
from shared.keys import METRICS
from shared.logging import configure_logging
from shared.settings import CommonSettings, SettingsError, parse_workers
from shared.workers import WorkerPool, end_with_parent

_log = structlog.get_logger("shared.runner")
T = TypeVar("T")
KEEPALIVE_TIMEOUT = 75.0  # seconds an idle keep-alive connection is kept: web.run_app's default, as before


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop run on asyncio's loop
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def workers_option(value: str) -> str:
    """argparse ``type`` for ``--workers``: checked here, so a bad value names the option; passed on as text."""
    try:
        parse_workers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=workers_option,
        default=None,
        metavar="N|auto",
        help="processes serving the port, each with its own event loop (default $WORKERS or 1; auto: one per core)",
    )


def process_environ(args: argparse.Namespace) -> Mapping[str, str]:
    """The environment the settings are read from: ours, with ``--workers`` standing in for ``WORKERS``."""
    if args.workers is None:
        return os.environ
    return {**os.environ, "WORKERS": args.workers}


def load_settings(build: Callable[[Mapping[str, str] | None], T], environ: Mapping[str, str] | None = None) -> T:
    """Build settings or stop the process with one clear line naming the variable."""
    try:
        return build(environ)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(
    build: Callable[[], web.Application],
    common: CommonSettings,
    *,
    service: str,
    package: str,
    port: int,
    shutdown_timeout: float = 10.0,
    sibling_socket: Path | None = None,
) -> None:
    """Serve ``build()`` here, or be the parent of ``common.workers`` workers that each do."""
    if common.supervises_workers:
        configure_logging(service=service, instance=common.instance_id, level=common.log_level, json=common.production)
        pool = WorkerPool(package, port=port, common=common, shutdown_timeout=shutdown_timeout, service=service)
        raise SystemExit(pool.run())
    if common.worker_index is not None:
        end_with_parent(os.environ)
    serve(build(), common, service=service, port=port, shutdown_timeout=shutdown_timeout, unix_path=sibling_socket)


def serve(
    app: web.Application,
    common: CommonSettings,
    *,
    service: str,
    port: int,
    shutdown_timeout: float = 10.0,
    unix_path: Path | None = None,
) -> None:
    """``unix_path``: also listen there (a worker's socket for its siblings, see :mod:`shared.workers`)."""
    configure_logging(service=service, instance=common.instance_id, level=common.log_level, json=common.production)
    install_uvloop()
    limits = common.connections
    open_files = open_file_limit()
    max_total = connection_cap(limits, open_files)
    _log.info(
        "listening",
        host=common.host,
        port=port,
        environment=common.environment,
        worker=common.worker_index,
        header_timeout=limits.header_timeout,
        max_connections=max_total or None,
        max_connections_per_address=limits.max_connections_per_address or None,
        open_files=open_files,
    )
    serving = _serve(
        app,
        common,
        service=service,
        port=port,
        max_total=max_total,
        shutdown_timeout=shutdown_timeout,
        unix_path=unix_path,
    )
    try:
        asyncio.run(serving)
    except SettingsError as exc:  # found at start (the gateway's seeded-password check): one line, exit 2
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _serve(
    app: web.Application,
    common: CommonSettings,
    *,
    service: str,
    port: int,
    max_total: int,
    shutdown_timeout: float,
    unix_path: Path | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    listeners: list[asyncio.Server] = []
    try:
        if runner.server is None:
            raise RuntimeError("AppRunner.setup() made no server")
        guard = ConnectionGuard(
            runner.server,
            common.connections,
            max_total=max_total,
            trusted=common.trusted_proxies,
            metrics=app.get(METRICS),
            service=service,
        )
        listeners.append(await guard.listen(common.host, port))
        if unix_path is not None:
            await web.UnixSite(runner, str(unix_path)).start()
        await stop.wait()
    finally:
        for listener in listeners:
            listener.close()
        await runner.cleanup()
