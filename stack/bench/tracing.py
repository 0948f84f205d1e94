"""The ``tracing`` scenario: what tracing costs the chain. The same cached-GET Zipf load (anonymous, through the
gateway) on two chains that differ only in tracing::

    off       OTEL_SDK_DISABLED=true
    default   OTLP to a local sink, every other OTEL_* unset: parent-based, new traces sampled at 1 %

Both chains (gateway, balancer, one apiserver each) run side by side on the bench's PostgreSQL and Redis, are
warmed alike, and are measured in alternation, ``ROUNDS`` times, the order swapped each round, so a drift of the
machine hits both. Each mode's figure is its best run (highest req/s, lowest CPU per request): other load on the
machine only ever makes a run worse, so the best runs are the fairest pair on a shared machine. The sink is a
plain HTTP server in this process that answers every export with 200 and counts it (its CPU is not the chain's).
Reported: req/s and CPU ms per request of each chain (every run in ``runs``), and the cost of ``default`` in
percent of ``off``, both for throughput and for the chain's CPU per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stack.bench.probes import sample
from stack.bench.session import sweep
from stack.bench.wrk import run_wrk
from stack.services.ports import free_port
from stack.supervisor import Child, StackOptions, plan_children, wait_healthy

MODES: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "default": {},  # plus the sink's endpoint
}
ROUNDS = 3


class _Sink(ThreadingHTTPServer):
    """Accepts OTLP/HTTP exports and counts them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.exports = 0
        self.bytes = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(size)
        self.server.exports += 1
        self.server.bytes += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _chain(
    mode: str, env: Mapping[str, str], database_url: str, redis_url: str, sink: str, log_dir: Path
) -> list[Child]:
    apiserver, balancer, gateway = free_port(), free_port(), free_port()
    options = StackOptions(apiservers=1, apiserver_port=apiserver, balancer_port=balancer, gateway_port=gateway)
    children = plan_children(options, database_url, redis_url)
    tracing = {**MODES[mode], **({"OTEL_EXPORTER_OTLP_ENDPOINT": sink} if mode == "default" else {})}
    for child in children:
        # The operator's own OTEL_* settings would make the two chains something else than off and default.
        child.env = {key: value for key, value in child.env.items() if not key.startswith("OTEL_")}
        child.env.update({**env, **tracing})
        child.log_path = log_dir / f"tracing-{mode}-{child.name}.log"
    return children


def _run(children: list[Child], options: Any, args: list[str]) -> dict[str, Any]:
    gateway = next(child for child in children if child.name == "gateway")
    pids = {child.name.split("-")[0]: [child.process.pid] for child in children if child.process is not None}
    before = {name: sample(p).cpu_seconds for name, p in pids.items()}
    result = run_wrk(
        f"http://127.0.0.1:{gateway.port}",
        script="zipf.lua",
        args=args,
        connections=options.connections,
        threads=options.threads,
        seconds=options.duration,
    )
    requests = max(result.requests, 1)
    cpu = {name: round(1000 * (sample(p).cpu_seconds - before[name]) / requests, 4) for name, p in pids.items()}
    return {"rps": round(result.rps, 1), "failed": sum(result.errors.values()), "cpu_ms_per_request": cpu}


def measure_tracing(
    env: Mapping[str, str],
    options: Any,
    database_url: str,
    redis_url: str,
    log_dir: Path,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``env``: the bench's settings for every process (rate limits, cache sizes, log level)."""
    sink = _Sink()
    thread = threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    chains = {mode: _chain(mode, env, database_url, redis_url, sink.url, log_dir) for mode in MODES}
    try:
        for children in chains.values():
            for child in children:
                child.start()
            wait_healthy(children)
        for mode, children in chains.items():
            apiserver = next(child for child in children if child.name.startswith("apiserver"))
            say(f"warming up the '{mode}' chain: reading all {options.resources} ids once")
            asyncio.run(sweep(f"http://127.0.0.1:{apiserver.port}", options.resources))
        args = [str(options.resources), "1.0", "0"]
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for round_ in range(ROUNDS):
            for mode in list(MODES)[:: 1 if round_ % 2 == 0 else -1]:
                say(f"round {round_ + 1}: tracing {mode}")
                runs[mode].append(_run(chains[mode], options, args))
    finally:
        for children in chains.values():
            for child in reversed(children):
                child.stop()
        sink.shutdown()
        sink.server_close()
        thread.join()
    return _summary(runs, sink)


def _summary(runs: dict[str, list[dict[str, Any]]], sink: _Sink) -> dict[str, Any]:
    rps = {mode: max(run["rps"] for run in results) for mode, results in runs.items()}
    cpu = {
        mode: round(min(sum(run["cpu_ms_per_request"].values()) for run in results), 4)
        for mode, results in runs.items()
    }
    return {
        "scenario": "tracing",
        "description": "cached GET, Zipf ids, anonymous full chain: tracing off vs the default 1 % ratio",
        "runs": runs,
        "rps": rps,
        "chain_cpu_ms_per_request": cpu,
        "cost_pct": round(100 * (rps["off"] - rps["default"]) / rps["off"], 2) if rps["off"] else None,
        "cpu_cost_pct": round(100 * (cpu["default"] - cpu["off"]) / cpu["off"], 2) if cpu["off"] else None,
        "failed": sum(run["failed"] for results in runs.values() for run in results),
        "exports": sink.exports,
        "export_bytes": sink.bytes,
    }


def print_tracing(row: dict[str, Any]) -> None:
    rps, cpu = row["rps"], row["chain_cpu_ms_per_request"]
    print(
        f"tracing: chain {rps['off']:,.0f} req/s off, {rps['default']:,.0f} req/s at the default 1 % ratio "
        f"(cost {row['cost_pct']} %); chain CPU {cpu['off']:.3f} → {cpu['default']:.3f} ms/request "
        f"(cost {row['cpu_cost_pct']} %); {row['exports']} exports, {row['export_bytes']:,} bytes"
    )
