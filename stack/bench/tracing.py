"""The ``tracing`` scenario: what tracing costs the chain. The same cached-GET Zipf load (anonymous, through the
gateway) on three chains that differ only in tracing::

    off       OTEL_SDK_DISABLED=true
    default   OTLP to a local sink, every other OTEL_* unset: parent-based, new traces sampled at 1 %
    always    the same with OTEL_TRACES_SAMPLER_ARG=1.0: every request sampled (what one sampled request costs)

The three chains (gateway, balancer, one apiserver each) run side by side on the bench's PostgreSQL and Redis, are
warmed alike, and are measured one after another, ``ROUNDS`` times, the order rotated each round so a drift of
the machine does not always hit the same chain. Every figure is the median over the rounds, and every cost is
paired with the ``off`` run of its own round.

Two costs are reported for the default ratio. The *measured* one compares the ``default`` and ``off`` runs
directly; it is a difference of ~1-2 % read from runs whose throughput moves ±10-20 % from one 5-20 s run to the
next on a shared machine (the three rounds of one full run gave 0.9, 27.2 and 3.4 %). The *implied* one is what
the budget holds: an ``always`` request is a sampled request, so ``always`` minus ``off`` is the extra CPU of one
sampled chain request (a +150-190 % difference, far above the noise), and the default samples 1 % of the
requests: implied cost = 1 % x that extra / the ``off`` CPU.

Reported: req/s and CPU ms per request of each chain (every run in ``runs``), both costs, and the extra CPU of a
sampled request. Each traced chain exports to its own sink, a plain HTTP server in this process that answers
every export with 200 and counts it (its CPU is not the chain's).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared.tracing import DEFAULT_RATIO
from stack.bench.probes import sample
from stack.bench.session import sweep
from stack.bench.wrk import run_wrk
from stack.services.ports import free_port
from stack.supervisor import Child, StackOptions, plan_children, wait_healthy

MODES: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "default": {},  # plus its sink's endpoint
    "always": {"OTEL_TRACES_SAMPLER_ARG": "1.0"},  # plus its sink's endpoint
}
# Every chain is laid out on the CPUs alike: left to the scheduler, each chain's processes settled where they
# happened to start, and one chain could stay ~15 % faster than another for a whole bench (measured: "default"
# faster than "off" in all three rounds of one run, slower in all three of another).
# The gateway (the heaviest) and wrk on the first CPU this process may use, balancer and apiserver on the second.
_ALLOWED = sorted(os.sched_getaffinity(0))
FIRST, SECOND = str(_ALLOWED[0]), str(_ALLOWED[1 if len(_ALLOWED) > 1 else 0])
CPUS = {"gateway": FIRST, "balancer": SECOND, "apiserver": SECOND}
WRK_CPUS = FIRST
ROUNDS = 3
# The warm-up reads reach the apiserver directly and, in the always chain, are traced: what they queued goes out
# within the batch processor's delay (OTEL_BSP_SCHEDULE_DELAY, 5 s by default) before the sink's counts are read.
SETTLE_SECONDS = 6.0


class _Sink(ThreadingHTTPServer):
    """Accepts OTLP/HTTP exports and counts them and their spans (a span the chain dropped is missing here)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.exports = 0
        self.bytes = 0
        self.spans = 0
        self.lock = threading.Lock()  # a threading server: one handler thread per export

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def counts(self) -> Exported:
        with self.lock:
            return Exported(self.exports, self.bytes, self.spans)


class _SinkHandler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        body = ExportTraceServiceRequest.FromString(self.rfile.read(size))
        spans = sum(len(scope.spans) for resource in body.resource_spans for scope in resource.scope_spans)
        with self.server.lock:
            self.server.exports += 1
            self.server.bytes += size
            self.server.spans += spans
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def _chain(
    mode: str, env: Mapping[str, str], database_url: str, redis_url: str, sink: str | None, log_dir: Path
) -> list[Child]:
    apiserver, balancer, gateway = free_port(), free_port(), free_port()
    options = StackOptions(apiservers=1, apiserver_port=apiserver, balancer_port=balancer, gateway_port=gateway)
    children = plan_children(options, database_url, redis_url)
    tracing = {**MODES[mode], **({"OTEL_EXPORTER_OTLP_ENDPOINT": sink} if sink is not None else {})}
    for child in children:
        # The operator's own OTEL_* settings would make the chains something else than off, default and always.
        child.env = {key: value for key, value in child.env.items() if not key.startswith("OTEL_")}
        child.env.update({**env, **tracing})
        child.log_path = log_dir / f"tracing-{mode}-{child.name}.log"
        child.cpus = CPUS[child.name.split("-")[0]]
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
        cpus=WRK_CPUS,
    )
    requests = max(result.requests, 1)
    cpu = {name: round(1000 * (sample(p).cpu_seconds - before[name]) / requests, 4) for name, p in pids.items()}
    rps = round(result.rps, 1)
    return {"requests": result.requests, "rps": rps, "failed": result.failed, "cpu_ms_per_request": cpu}


def measure_tracing(
    env: Mapping[str, str],
    options: Any,
    database_url: str,
    redis_url: str,
    log_dir: Path,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``env``: the bench's settings for every process (rate limits, cache sizes, log level)."""
    sinks = {mode: _Sink() for mode in MODES if mode != "off"}
    threads = [
        threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        for sink in sinks.values()
    ]
    for thread in threads:
        thread.start()
    chains = {
        mode: _chain(mode, env, database_url, redis_url, sinks[mode].url if mode in sinks else None, log_dir)
        for mode in MODES
    }
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
        time.sleep(SETTLE_SECONDS)
        warm_up = {mode: sink.counts() for mode, sink in sinks.items()}
        rounds: list[dict[str, dict[str, Any]]] = []
        for round_ in range(ROUNDS):
            order = list(MODES)[round_ % len(MODES) :] + list(MODES)[: round_ % len(MODES)]
            rounds.append({})
            for mode in order:
                say(f"round {round_ + 1} of {ROUNDS}: tracing {mode}")
                rounds[-1][mode] = _run(chains[mode], options, args)
    finally:
        for children in chains.values():
            for child in reversed(children):
                child.stop()
        for sink in sinks.values():
            sink.shutdown()
            sink.server_close()
        for thread in threads:
            thread.join()
    # Stopping flushed every process's queue: what each traced chain exported for the rounds' requests.
    exported = {mode: sink.counts() - warm_up[mode] for mode, sink in sinks.items()}
    return summarize(rounds, exported)


@dataclass(frozen=True, slots=True)
class Exported:
    exports: int
    bytes: int
    spans: int

    def __sub__(self, earlier: Exported) -> Exported:
        return Exported(self.exports - earlier.exports, self.bytes - earlier.bytes, self.spans - earlier.spans)


def summarize(rounds: list[dict[str, dict[str, Any]]], exported: Mapping[str, Exported]) -> dict[str, Any]:
    """Medians over the rounds; every cost is paired with the ``off`` run of its own round.

    A round whose ``off`` run served nothing (a chain that died) is left out; with none left the row says so and
    the budget reads "not measured". The implied cost prices sampled requests only: the unsampled path (99 % of
    requests) is the same code with tracing off, so the chain scenarios' CPU budgets hold it.
    """

    def chain_cpu(run: dict[str, Any]) -> float:
        return float(sum(run["cpu_ms_per_request"].values()))

    rounds = [runs for runs in rounds if runs["off"]["rps"] > 0 and chain_cpu(runs["off"]) > 0]
    if not rounds:
        return {"scenario": "tracing", "skipped": "the 'off' chain served no request in any round"}
    chains = [{mode: chain_cpu(runs[mode]) for mode in MODES} for runs in rounds]  # CPU ms/request, per round
    extra = [chain["always"] - chain["off"] for chain in chains]  # what one sampled request adds
    rps = {mode: round(statistics.median(runs[mode]["rps"] for runs in rounds), 1) for mode in MODES}
    cpu = {mode: round(statistics.median(chain[mode] for chain in chains), 4) for mode in MODES}
    costs = [100 * (1 - runs["default"]["rps"] / runs["off"]["rps"]) for runs in rounds]
    cpu_cost = round(statistics.median(100 * (chain["default"] / chain["off"] - 1) for chain in chains), 2)
    sampled = round(statistics.median(extra), 4)
    implied = round(
        statistics.median(100 * DEFAULT_RATIO * more / chain["off"] for more, chain in zip(extra, chains, strict=True)),
        2,
    )
    return {
        "scenario": "tracing",
        "description": "cached GET, Zipf ids, anonymous full chain: tracing off, at the default 1 % ratio and always",
        "runs": {mode: [runs[mode] for runs in rounds] for mode in MODES},
        "rps": rps,
        "chain_cpu_ms_per_request": cpu,
        "cost_pct": round(statistics.median(costs), 2),
        "cost_pct_rounds": [round(cost, 2) for cost in costs],
        "cpu_cost_pct": cpu_cost,
        "sampled_request_extra_cpu_ms": sampled,
        "implied_cost_pct": implied,
        "failed": sum(run["failed"] for runs in rounds for run in runs.values()),
        "exports": {mode: sent.exports for mode, sent in exported.items()},
        "export_bytes": {mode: sent.bytes for mode, sent in exported.items()},
        # spans per request of the always chain: every span of a sampled request reached the collector
        "spans_per_request": {
            mode: round(sent.spans / max(sum(runs[mode]["requests"] for runs in rounds), 1), 3)
            for mode, sent in exported.items()
        },
    }


def print_tracing(row: dict[str, Any]) -> None:
    if "skipped" in row:
        print(f"tracing: skipped ({row['skipped']})")
        return
    rps, cpu = row["rps"], row["chain_cpu_ms_per_request"]
    print(
        f"tracing (medians of {ROUNDS} rounds): {rps['off']:,.0f} req/s off, {rps['default']:,.0f} at the default "
        f"1 % ratio (measured cost {row['cost_pct']} %, rounds {row['cost_pct_rounds']}), {rps['always']:,.0f} always; "
        f"chain CPU {cpu['off']:.3f} → {cpu['default']:.3f} ms/request (cost {row['cpu_cost_pct']} %); "
        f"a sampled request costs {row['sampled_request_extra_cpu_ms']:.3f} ms more CPU, "
        f"so 1 % implies {row['implied_cost_pct']} %; exports {row['exports']}, bytes {row['export_bytes']}, "
        f"spans per request {row['spans_per_request']}"
    )
