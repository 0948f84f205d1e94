"""Driving wrk: build the scenario script, run it, parse the one JSON line the report hook prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_LUA = resources.files("stack.bench").joinpath("lua")


class WrkMissing(RuntimeError):
    pass


def ensure_wrk() -> str:
    """wrk from PATH; as root on Debian/Ubuntu, install it with apt-get; otherwise say how to get it."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("[bench] wrk not found; installing it with apt-get", flush=True)
        apt = shutil.which("apt-get") or "apt-get"
        subprocess.run([apt, "update", "-qq"], check=False, capture_output=True)
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing(
        "the benchmark drives load with wrk: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)"
    )


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def script_text(name: str) -> str:
    return _LUA.joinpath(name).read_text() + _LUA.joinpath("report.lua").read_text()


def run_wrk(
    url: str,
    *,
    script: str,
    args: list[str],
    connections: int,
    threads: int,
    seconds: float,
    cpus: str | None = None,
) -> WrkResult:
    """Drive ``url`` with wrk and ``script``; ``cpus`` pins wrk to those CPUs (``taskset -c``)."""
    binary = ensure_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script_text(script))
        path = Path(handle.name)
    try:
        command = ["taskset", "-c", cpus] if cpus else []
        command += [binary, f"-t{threads}", f"-c{connections}", f"-d{max(int(seconds), 1)}s", "--timeout", "5s"]
        command += ["-s", str(path), url, "--", *args]
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    finally:
        path.unlink(missing_ok=True)
    for line in completed.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line.removeprefix("WRKJSON "))
            latency = {key: value / 1000 for key, value in data["latency_us"].items()}
            return WrkResult(data["requests"], data["duration_us"] / 1e6, data["errors"], latency)
    raise RuntimeError(f"wrk printed no result (exit {completed.returncode}): {completed.stderr[-500:]}")
