"""The ``scaling`` scenario: does the apiserver scale with workers? One worker pinned to one CPU against two
workers on both CPUs, the same cached-GET Zipf load from wrk.

    1 worker:   apiserver `taskset -c 0`, wrk `taskset -c 1`   (the apiserver has exactly one core)
    2 workers:  apiserver and wrk on both cores                (wrk now competes with the two workers)

On a 2-core machine wrk's own CPU is taken from the two workers in the second run, so the ratio understates what
two workers do with two free cores; CPU per request (the parent and its workers, from /proc) shows whether a
worker costs more per request than a lone process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stack.bench.probes import sample, with_descendants
from stack.bench.session import sweep
from stack.bench.wrk import run_wrk
from stack.rolling import http_call
from stack.services.ports import free_port

TARGET_RATIO = 1.8
_RUNS = ((1, "0", "1"), (2, "0,1", None))  # workers, apiserver CPUs, wrk CPUs


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the scaling apiserver exited with {process.returncode}")
        if http_call("GET", f"http://127.0.0.1:{port}/ready", {}, timeout=1).status == 200:
            return
        time.sleep(0.1)
    raise RuntimeError("the scaling apiserver did not become ready")


def _one_run(
    env: dict[str, str], workers: int, cpus: str, wrk_cpus: str | None, options: Any, log: Path
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = ["taskset", "-c", cpus, sys.executable, "-m", "apiserver", "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env={**env, "WORKERS": str(workers)}, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(port, process)
        for _ in range(workers):  # connections spread over the workers: read every id once per worker's L1
            asyncio.run(sweep(url, options.resources))
        args = [str(options.resources), "1.0", "0"]
        run_wrk(url, script="zipf.lua", args=args, connections=options.connections, threads=options.threads,
                seconds=options.warmup, cpus=wrk_cpus)  # fmt: skip
        pids = with_descendants(process.pid)
        before = sample(pids).cpu_seconds
        result = run_wrk(url, script="zipf.lua", args=args, connections=options.connections,
                         threads=options.threads, seconds=options.duration, cpus=wrk_cpus)  # fmt: skip
        cpu = sample(with_descendants(process.pid)).cpu_seconds - before
    finally:
        process.terminate()
        process.wait(30)
    return {
        "workers": workers,
        "apiserver_cpus": cpus,
        "wrk_cpus": wrk_cpus or "0,1",
        "rps": round(result.rps, 1),
        "p99_ms": round(result.latency_ms["p99"], 3),
        "failed": sum(result.errors.values()),
        "cpu_ms_per_request": round(1000 * cpu / max(result.requests, 1), 4),
    }


def measure_scaling(env: dict[str, str], options: Any, log_dir: Path) -> dict[str, Any]:
    """Both runs against the bench's PostgreSQL and Redis (``env`` is the bench apiserver's environment)."""
    if (os.cpu_count() or 1) < 2:
        return {"scenario": "scaling", "skipped": "needs 2 CPUs"}
    runs = [_one_run(env, workers, cpus, wrk_cpus, options, log_dir / f"scaling-{workers}.log")
            for workers, cpus, wrk_cpus in _RUNS]  # fmt: skip
    ratio = runs[1]["rps"] / runs[0]["rps"] if runs[0]["rps"] else 0.0
    return {
        "scenario": "scaling",
        "description": "apiserver direct, 1 worker on 1 CPU vs 2 workers on 2 CPUs",
        "runs": runs,
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
    }
