"""``python -m balancer [--port N]``: parse settings, configure logging, serve (SIGTERM drains within the grace)."""

from __future__ import annotations

import argparse

from balancer.app import create_app
from balancer.settings import BalancerSettings
from shared.runner import load_settings, serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="scalable-api balancer", description="The health-checking load balancer.")
    parser.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 3000)")
    args = parser.parse_args()
    settings = load_settings(lambda environ: BalancerSettings.from_env(environ, port=args.port))
    app = create_app(settings)
    serve(app, settings.common, service="balancer", port=settings.port, shutdown_timeout=settings.shutdown_grace)


if __name__ == "__main__":
    main()
