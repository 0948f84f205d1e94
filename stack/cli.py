"""``scalable-api``: one command for every process and operation.

Process subcommands (``apiserver``, ``balancer``, ``gateway``) replace this process with ``python -m <package>``,
so the CLI never imports a process package and each process starts exactly as it does in a container.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

PROCESSES = {
    "apiserver": "the resources API server (default port 3001)",
    "balancer": "the health-checking load balancer (default port 3000)",
    "gateway": "the public gateway: auth, rate limits, admin API (default port 8080)",
}


def _exec_process(package: str, args: Sequence[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", package, *args])  # noqa: S606 - our own interpreter and module


def _require_database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("scalable-api: DATABASE_URL is not set (or use `scalable-api up`, which starts PostgreSQL)")
    return url


def _migrate(_: argparse.Namespace) -> None:
    from database.migrate import run_migrations

    applied = asyncio.run(run_migrations(_require_database_url()))
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is up to date"))


def _seed(args: argparse.Namespace) -> None:
    from database.seed import seed

    result = asyncio.run(seed(_require_database_url(), resources=args.resources, only_if_empty=not args.force))
    print(f"users created: {result.users_created}, resources created: {result.resources_created}")


def _up(args: argparse.Namespace) -> None:
    from stack.supervisor import StackOptions, run_stack

    options = StackOptions(
        apiservers=args.apiservers,
        apiserver_port=args.apiserver_port,
        balancer_port=args.balancer_port,
        gateway_port=args.gateway_port,
        data_dir=args.data_dir,
        resources=args.resources,
        pg_port=args.pg_port,
        redis_port=args.redis_port,
        workers=args.workers,
    )
    raise SystemExit(run_stack(options))


def _restart_apiservers(args: argparse.Namespace) -> None:
    from stack.rolling import RestartFailed, signal_up

    try:
        pid = signal_up(args.data_dir)
    except RestartFailed as exc:
        raise SystemExit(f"scalable-api restart-apiservers: {exc}") from None
    print(f"asked `scalable-api up` (pid {pid}) to restart the apiservers one by one; it reports progress")


def _bench(args: argparse.Namespace) -> None:
    from pathlib import Path

    from stack.bench.runner import BenchOptions, run_bench
    from stack.bench.wrk import WrkMissing

    options = BenchOptions(
        quick=args.quick,
        duration=args.duration,
        connections=args.connections,
        resources=args.resources,
        apiservers=args.apiservers,
        scenarios=tuple(args.scenarios.split(",")) if args.scenarios else None,
        output=Path(args.output),
    )
    try:
        raise SystemExit(run_bench(options))
    except WrkMissing as exc:
        raise SystemExit(f"scalable-api bench: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    from shared.runner import workers_option  # here, so `scalable-api gateway` execs without importing aiohttp

    parser = argparse.ArgumentParser(prog="scalable-api", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in PROCESSES.items():
        process = commands.add_parser(name, help=help_text, add_help=False)
        process.set_defaults(process=name)

    migrate = commands.add_parser("migrate", help="apply database migrations (DATABASE_URL); safe to run concurrently")
    migrate.set_defaults(func=_migrate)

    seed = commands.add_parser("seed", help="load the development accounts and sample resources (DATABASE_URL)")
    seed.add_argument("--resources", type=int, default=1000, help="sample resources to create (default 1000)")
    seed.add_argument("--force", action="store_true", help="add resources even when some already exist")
    seed.set_defaults(func=_seed)

    up = commands.add_parser("up", help="start PostgreSQL, Redis and the whole stack locally")
    up.add_argument("--apiservers", type=int, default=3, help="API server replicas (default 3)")
    up.add_argument("--apiserver-port", type=int, default=3001, help="first API server port (default 3001)")
    up.add_argument("--balancer-port", type=int, default=3000)
    up.add_argument("--gateway-port", type=int, default=8080)
    up.add_argument("--data-dir", default=".data", help="where embedded PostgreSQL/Redis keep data (default .data)")
    up.add_argument("--resources", type=int, default=1000, help="sample resources seeded on first start")
    up.add_argument("--pg-port", type=int, default=54329, help="embedded PostgreSQL port (default 54329)")
    up.add_argument("--redis-port", type=int, default=63790, help="embedded Redis port (default 63790)")
    up.add_argument(
        "--workers",
        type=workers_option,
        default="1",
        metavar="N|auto",
        help="worker processes per gateway, balancer and apiserver (default 1; auto: one per core)",
    )
    up.set_defaults(func=_up)

    restart = commands.add_parser(
        "restart-apiservers", help="rolling restart of the apiservers of a running `up` (sends it SIGHUP)"
    )
    restart.add_argument("--data-dir", default=".data", help="the data dir the `up` was started with (default .data)")
    restart.set_defaults(func=_restart_apiservers)

    bench = commands.add_parser("bench", help="start a private stack and measure it with wrk")
    bench.add_argument(
        "--quick", action="store_true", help="a short run (about 90 s): 5 s per scenario, 20,000 resources"
    )
    bench.add_argument("--duration", type=float, default=20.0, help="seconds per scenario (default 20)")
    bench.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    bench.add_argument("--resources", type=int, default=100_000, help="resources seeded (default 100000)")
    bench.add_argument("--apiservers", type=int, default=1, help="apiserver replicas (default 1)")
    bench.add_argument("--scenarios", default="", help="comma-separated subset, e.g. direct,balancer")
    bench.add_argument("--output", default="bench/results.json", help="where to write the JSON results")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PROCESSES:
        _exec_process(argv[0], argv[1:])
        return
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
