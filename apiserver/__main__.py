"""``python -m apiserver [--port N] [--workers N|auto]``: parse settings, configure logging, serve."""

from __future__ import annotations

import argparse

from apiserver.app import create_app
from apiserver.settings import ApiServerSettings
from shared.runner import add_worker_options, load_settings, process_environ, run


def main() -> None:
    parser = argparse.ArgumentParser(prog="scalable-api apiserver", description="The resources API server.")
    parser.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 3001)")
    add_worker_options(parser)
    args = parser.parse_args()
    settings = load_settings(lambda environ: ApiServerSettings.from_env(environ, port=args.port), process_environ(args))
    run(lambda: create_app(settings), settings.common, service="apiserver", package="apiserver", port=settings.port)


if __name__ == "__main__":
    main()
