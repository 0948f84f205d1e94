"""``python -m apiserver [--port N]``: parse settings, configure logging, serve."""

from __future__ import annotations

import argparse

from apiserver.app import create_app
from apiserver.settings import ApiServerSettings
from shared.runner import load_settings, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="scalable-api apiserver", description="The resources API server.")
    parser.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 3001)")
    args = parser.parse_args()
    settings = load_settings(lambda environ: ApiServerSettings.from_env(environ, port=args.port))
    serve(create_app(settings), settings.common, service="apiserver", port=settings.port)


if __name__ == "__main__":
    main()
