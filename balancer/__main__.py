"""``python -m balancer [--port N] [--workers N|auto]``: parse settings, configure logging, serve (SIGTERM drains
within the grace). With several workers each also listens on its socket in the parent's runtime directory, where
its siblings relay drains and enables (:mod:`balancer.siblings`)."""

from __future__ import annotations

import argparse

from balancer.app import create_app
from balancer.settings import BalancerSettings
from shared.runner import add_worker_options, load_settings, process_environ, run
from shared.workers import worker_sockets


def main() -> None:
    parser = argparse.ArgumentParser(prog="scalable-api balancer", description="The health-checking load balancer.")
    parser.add_argument("--port", type=int, default=None, help="listen port (default $PORT or 3000)")
    add_worker_options(parser)
    args = parser.parse_args()
    settings = load_settings(lambda environ: BalancerSettings.from_env(environ, port=args.port), process_environ(args))
    own_socket, _ = worker_sockets(settings.common, "balancer")
    run(
        lambda: create_app(settings),
        settings.common,
        service="balancer",
        package="balancer",
        port=settings.port,
        shutdown_timeout=settings.shutdown_grace,
        sibling_socket=own_socket,
    )


if __name__ == "__main__":
    main()
