"""``scalable-api bench``: start a private stack, seed it, warm it up, drive each scenario with wrk, and report.

For every scenario it records req/s, latency percentiles and errors (from wrk), CPU seconds per request and
RSS for every process (from /proc), Redis commands per request (INFO) and PostgreSQL queries per request (the
apiservers' ``db_queries_total``). RSS is sampled every second; the drift over the second half of a run shows
whether memory is stable. Results go to a table on stdout and to ``bench/results.json``. The ``limiter``,
``scaling`` and ``tracing`` scenarios measure on their own (:mod:`stack.bench.limiter`, :mod:`stack.bench.scaling`,
:mod:`stack.bench.tracing`).

The stack uses fresh embedded PostgreSQL and Redis in a temporary directory, so runs are comparable and
nothing of a developer's ``.data/`` is touched. Rate limits are raised for the throughput scenarios (they
measure the hot path, not the limiter's verdict); the ``rate_limited`` scenario uses a free-tier caller.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack.bench.budgets import print_budgets
from stack.bench.limiter import measure_limiter
from stack.bench.probes import ProcessSample, metric_total, redis_commands, sample, sample_postgres
from stack.bench.scaling import measure_scaling
from stack.bench.scenarios import Scenario, select
from stack.bench.session import Credentials, clear_cache, obtain_credentials, sweep
from stack.bench.tracing import measure_tracing, print_tracing
from stack.bench.wrk import WrkResult, ensure_wrk, run_wrk
from stack.supervisor import Child, StackOptions, plan_children, prepare_database, wait_healthy

UNLIMITED = str(10**9)
LIMITER_SCENARIO = "limiter"
LIMITER_IDENTITIES = 10_000
SCALING_SCENARIO = "scaling"
TRACING_SCENARIO = "tracing"


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    duration: float = 20.0
    warmup: float = 10.0
    connections: int = 64
    threads: int = 2
    resources: int = 100_000
    apiservers: int = 1
    scenarios: tuple[str, ...] | None = None
    output: Path = Path("bench/results.json")


@dataclass
class Stack:
    children: list[Child]
    database_url: str
    redis_url: str
    data_pids: dict[str, int]  # "postgres" -> the postmaster, "redis" -> pid

    def url(self, target: str) -> str:
        child = next(child for child in self.children if child.name.startswith(target))
        return f"http://127.0.0.1:{child.port}"

    def apiserver_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{c.port}" for c in self.children if c.name.startswith("apiserver")]

    def samples(self) -> dict[str, ProcessSample]:
        """CPU and memory of every process now (PostgreSQL: the postmaster, its backends and reaped ones)."""
        found = {child.name: sample([child.process.pid]) for child in self.children if child.process is not None}
        if "postgres" in self.data_pids:
            found["postgres"] = sample_postgres(self.data_pids["postgres"])
        if "redis" in self.data_pids:
            found["redis"] = sample([self.data_pids["redis"]])
        return found


class RssSampler(threading.Thread):
    """Samples RSS of every process once a second while a scenario runs."""

    def __init__(self, take: Callable[[], dict[str, ProcessSample]]) -> None:
        super().__init__(daemon=True)
        self.take = take
        self.samples: dict[str, list[int]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(1.0):
            for name, taken in self.take().items():
                self.samples.setdefault(name, []).append(taken.rss_bytes)

    def stop(self) -> dict[str, float]:
        """Drift in % over the second half: (max - min) / mean of the later samples."""
        self._halt.set()
        self.join()
        drift = {}
        for name, values in self.samples.items():
            later = values[len(values) // 2 :]
            if len(later) >= 2:
                drift[name] = round(100 * (max(later) - min(later)) / (sum(later) / len(later)), 2)
        return drift


def _start_stack(options: BenchOptions, stack: ExitStack, root: Path) -> Stack:
    from stack.services.ports import free_port
    from stack.services.postgres import EmbeddedPostgres
    from stack.services.redis import EmbeddedRedis

    postgres = stack.enter_context(EmbeddedPostgres(root / "postgres", free_port()))
    redis = stack.enter_context(EmbeddedRedis(root / "redis", free_port()))
    prepare_database(postgres.url, options.resources)
    stack_options = StackOptions(
        apiservers=options.apiservers, apiserver_port=free_port(), balancer_port=free_port(), gateway_port=free_port()
    )
    children = plan_children(stack_options, postgres.url, redis.url)
    for index, child in enumerate(children):
        if child.name.startswith("apiserver"):
            child.port = free_port() if index else stack_options.apiserver_port
            child.args[-1] = str(child.port)
        child.env.update(bench_env(options))
        child.log_path = root / f"{child.name}.log"
    _fix_backends(children)
    for child in children:
        child.start()
    stack.callback(_stop_all, children)
    wait_healthy(children)
    pids = {"postgres": postgres.pid or 0, "redis": redis.pid or 0}
    return Stack(children, postgres.url, redis.url, {name: pid for name, pid in pids.items() if pid})


def bench_env(options: BenchOptions) -> dict[str, str]:
    """What every process of the bench runs with, on top of the stack's defaults."""
    return {
        "LOG_LEVEL": "warning",
        # A read-heavy API sizes its L1 to the hot table (100,000 rows is ~50 MB of entries); writes
        # invalidate explicitly, so a long freshness TTL is safe. With the 10,000-entry default, Zipf(1)
        # over 100,000 ids caps the L1 hit ratio near 81 %.
        "CACHE_L1_MAX_ENTRIES": str(max(options.resources, 10_000)),
        "CACHE_TTL": "900",
        "RATE_LIMIT_ANONYMOUS": UNLIMITED,
        "RATE_LIMIT_ENTERPRISE": UNLIMITED,
        "RATE_LIMIT_PRO": UNLIMITED,
    }


def _stop_all(children: list[Child]) -> None:
    for child in reversed(children):
        child.stop()


def _fix_backends(children: list[Child]) -> None:
    """Point the balancer at the apiservers' (free) ports."""
    backends = ",".join(f"http://127.0.0.1:{c.port}" for c in children if c.name.startswith("apiserver"))
    for child in children:
        if child.name == "balancer":
            child.env["BALANCER_BACKENDS"] = backends
        if child.name == "gateway":
            balancer = next((c for c in children if c.name == "balancer"), None)
            if balancer is not None:
                child.env["BALANCER_URL"] = f"http://127.0.0.1:{balancer.port}"


def _wrk_args(scenario: Scenario, resources: int, credentials: Credentials) -> list[str]:
    header = credentials.header_for(scenario.auth)
    args = [str(resources), str(scenario.exponent), str(scenario.write_percent)]
    return args + list(header) if header else args


async def _counters(stack: Stack) -> tuple[int, float, float, float, float]:
    urls = stack.apiserver_urls()
    clients = [*urls, stack.url("gateway")] if any(c.name == "gateway" for c in stack.children) else urls
    return (
        await redis_commands(stack.redis_url),
        await metric_total(urls, "db_queries_total"),
        await metric_total(urls, 'cache_requests_total{level="l1",result="hit"}'),
        await metric_total(urls, 'cache_requests_total{level="l1",result="miss"}'),
        # Round trips as the clients count them (the server-side figure also counts commands run inside Lua).
        await metric_total(clients, "cache_redis_commands_total")
        + await metric_total(clients, "ratelimit_redis_round_trips_total"),
    )


def _measure(stack: Stack, scenario: Scenario, options: BenchOptions, credentials: Credentials) -> dict[str, Any]:
    if scenario.prepare == "clear_cache":
        asyncio.run(clear_cache(stack.apiserver_urls()[0]))
    before_cpu = stack.samples()
    before = asyncio.run(_counters(stack))
    sampler = RssSampler(stack.samples)
    sampler.start()
    result = run_wrk(
        stack.url(scenario.target),
        script="zipf.lua",
        args=_wrk_args(scenario, options.resources, credentials),
        connections=options.connections,
        threads=options.threads,
        seconds=options.duration,
    )
    drift = sampler.stop()
    after = asyncio.run(_counters(stack))
    # Listed again: PostgreSQL starts a backend per new pooled connection, and those count from zero.
    after_cpu = stack.samples()
    return _summarise(scenario, result, before_cpu, after_cpu, before, after, drift)


def _summarise(
    scenario: Scenario,
    result: WrkResult,
    before_cpu: dict[str, ProcessSample],
    after_cpu: dict[str, ProcessSample],
    before: tuple[int, float, float, float, float],
    after: tuple[int, float, float, float, float],
    drift: dict[str, float],
) -> dict[str, Any]:
    requests = max(result.requests, 1)
    hits, misses = after[2] - before[2], after[3] - before[3]
    errors = dict(result.errors)
    if scenario.expect_status_errors:
        errors.pop("status")
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "latency_ms": {key: round(value, 3) for key, value in result.latency_ms.items()},
        "errors": errors,
        "failed": sum(errors.values()),
        "non_2xx": result.errors["status"],
        "cpu_ms_per_request": {
            name: round(1000 * (after_cpu[name].cpu_seconds - before_cpu[name].cpu_seconds) / requests, 4)
            for name in after_cpu
        },
        "rss_mb": {name: round(value.rss_bytes / 2**20, 1) for name, value in after_cpu.items()},
        "rss_drift_pct_second_half": drift,
        "redis_commands_per_request": round((after[0] - before[0]) / requests, 3),
        "redis_round_trips_per_request": round((after[4] - before[4]) / requests, 3),
        "pg_queries_per_request": round((after[1] - before[1]) / requests, 4),
        "l1_hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'scenario':<16}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'failed':>8}"
    header += f"{'redis rt/req':>13}{'pg/req':>8}{'L1 hit':>8}  cpu ms/req by process"
    print(header)
    for row in rows:
        latency = row["latency_ms"]
        ratio = "-" if row["l1_hit_ratio"] is None else f"{row['l1_hit_ratio']:.3f}"
        cpu = ", ".join(f"{name} {value:.3f}" for name, value in row["cpu_ms_per_request"].items() if value > 0.0005)
        print(
            f"{row['scenario']:<16}{row['rps']:>9.0f}{latency['p50']:>9.2f}{latency['p90']:>9.2f}"
            f"{latency['p99']:>9.2f}{latency['max']:>9.1f}{row['failed']:>8}{row['redis_round_trips_per_request']:>13.3f}"
            f"{row['pg_queries_per_request']:>8.4f}{ratio:>8}  {cpu}"
        )


def _warm_up(stack: Stack, options: BenchOptions, credentials: Credentials) -> None:
    """Read every id once on every apiserver (L1 and Redis start with the whole table), then a short Zipf run."""
    for url in stack.apiserver_urls():
        print(f"[bench] warming up {url}: reading all {options.resources} ids once", flush=True)
        failures = asyncio.run(sweep(url, options.resources))
        if failures:
            raise RuntimeError(f"warm-up: {failures} reads failed on {url}")
    zipf = Scenario("warm-up", "Zipf", "apiserver")
    run_wrk(stack.apiserver_urls()[0], script="zipf.lua", args=_wrk_args(zipf, options.resources, credentials),
            connections=options.connections, threads=options.threads, seconds=options.warmup)  # fmt: skip


def run_bench(options: BenchOptions) -> int:
    ensure_wrk()
    if options.quick:
        options = BenchOptions(**{**options.__dict__, "duration": 5.0, "warmup": 3.0, "resources": 20_000})
    scenarios = select(options.scenarios)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scalable-api-bench-") as root, ExitStack() as stack:
        Path(root).chmod(0o755)
        print(f"[bench] starting the stack ({options.resources} resources)", flush=True)
        running = _start_stack(options, stack, Path(root))
        credentials = asyncio.run(obtain_credentials(running.url("gateway")))
        _warm_up(running, options, credentials)
        for scenario in scenarios:
            print(f"[bench] {scenario.name}: {scenario.description}", flush=True)
            rows.append(_measure(running, scenario, options, credentials))
            time.sleep(1.0)  # let the tiers settle between scenarios
        limiter = None
        if options.scenarios is None or LIMITER_SCENARIO in options.scenarios:
            print(f"[bench] {LIMITER_SCENARIO}: {LIMITER_IDENTITIES:,} identities, one Redis", flush=True)
            limiter = measure_limiter(
                running.redis_url, running.data_pids["redis"], identities=LIMITER_IDENTITIES, seconds=options.duration
            )
        scaling = None
        if options.scenarios is None or SCALING_SCENARIO in options.scenarios:
            print(f"[bench] {SCALING_SCENARIO}: apiserver, 1 worker on 1 CPU vs 2 workers on 2 CPUs", flush=True)
            apiserver = next(child for child in running.children if child.name.startswith("apiserver"))
            scaling = measure_scaling(apiserver.env, options, Path(root))
        tracing = None
        if options.scenarios is None or TRACING_SCENARIO in options.scenarios:
            print(f"[bench] {TRACING_SCENARIO}: tracing off, at the default 1 % ratio and always", flush=True)
            tracing = measure_tracing(
                bench_env(options),
                options,
                running.database_url,
                running.redis_url,
                Path(root),
                say=lambda line: print(f"[bench] {TRACING_SCENARIO}: {line}", flush=True),
            )
    print_table(rows)
    if limiter is not None:
        print_limiter(limiter)
        rows.append(limiter)
    if scaling is not None:
        print_scaling(scaling)
        rows.append(scaling)
    if tracing is not None:
        print_tracing(tracing)
        rows.append(tracing)
    budgets = print_budgets(rows)
    _write_results(options, rows, budgets)
    return 0


def print_scaling(row: dict[str, Any]) -> None:
    if "skipped" in row:
        print(f"scaling: skipped ({row['skipped']})")
        return
    one, two = row["runs"]
    print(
        f"scaling: apiserver 1 worker on 1 CPU {one['rps']:,.0f} req/s ({one['cpu_ms_per_request']:.3f} ms CPU/req), "
        f"2 workers on 2 CPUs {two['rps']:,.0f} req/s ({two['cpu_ms_per_request']:.3f} ms CPU/req): "
        f"{row['ratio']:.2f}x (target {row['target_ratio']}x; wrk shares the 2 CPUs in the second run)"
    )


def print_limiter(row: dict[str, Any]) -> None:
    print(
        f"limiter: {row['decisions_per_second']:,.0f} decisions/s driven from one process, Redis CPU "
        f"{row['redis_cpu_ms_per_decision'] * 1000:.1f} µs/decision (one Redis core: "
        f"{row['redis_core_capacity_per_second'] or 0:,} decisions/s), {row['refused']:,} refused"
    )


def _write_results(options: BenchOptions, rows: list[dict[str, Any]], budgets: list[dict[str, Any]]) -> None:
    options.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.__dict__.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": rows,
        "budgets": budgets,
    }
    options.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"[bench] results written to {options.output}", flush=True)
