"""``python -m gateway [--port N] [--workers N|auto]``: parse settings, configure logging, serve."""

from __future__ import annotations

import argparse

from gateway.app import create_app
from gateway.settings import GatewaySettings
from shared.runner import add_worker_options, load_settings, process_environ, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="scalable-api gateway", description="The public gateway.")
    parser.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 8080)")
    add_worker_options(parser)
    args = parser.parse_args()
    settings = load_settings(lambda environ: GatewaySettings.from_env(environ, port=args.port), process_environ(args))
    run(lambda: create_app(settings), settings.common, service="gateway", package="gateway", port=settings.port)


if __name__ == "__main__":
    main()
