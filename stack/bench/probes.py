"""What the benchmark measures around each run: CPU seconds and RSS per process (from /proc), Redis commands
(INFO total_commands_processed) and PostgreSQL queries (the apiservers' own ``db_queries_total``, exact and
immediate, unlike pg_stat_database which backends flush at most once a second)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; everything after the last ')' is space separated.
    return raw[raw.rindex(")") + 2 :].split()


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a worker parent and its workers, which run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, ()))
    return found


@dataclass(frozen=True, slots=True)
class ProcessSample:
    cpu_seconds: float
    rss_bytes: int


def sample(pids: list[int]) -> ProcessSample:
    cpu, rss = 0.0, 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
        rss += int(fields[21]) * _PAGE
    return ProcessSample(cpu, rss)


def sample_postgres(postmaster: int) -> ProcessSample:
    """PostgreSQL as a whole: the postmaster and every backend below it (each calls ``setsid()``, so the process
    group holds the postmaster alone).

    CPU also counts the backends that exited and were reaped (their CPU moved into the postmaster's cutime and
    cstime), so a backend ending between two samples neither vanishes nor makes the difference negative. Memory is
    the sum of PSS: every backend maps the shared buffers, and summing their RSS would count those once each.
    """
    pids = with_descendants(postmaster)
    fields = _stat_fields(postmaster)
    reaped = 0.0 if fields is None else (int(fields[13]) + int(fields[14])) / _TICKS  # cutime + cstime
    return ProcessSample(sample(pids).cpu_seconds + reaped, sum(_pss_bytes(pid) for pid in pids))


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


async def redis_commands(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("stats")
        return int(info["total_commands_processed"])
    finally:
        await client.aclose()


async def metric_total(urls: list[str], name: str) -> float:
    """The sum of a counter over every series and every process (``/metrics`` text format)."""
    total = 0.0
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(url + "/metrics") as response:
                for line in (await response.text()).splitlines():
                    if line.startswith(name) and not line.startswith(name + "_created"):
                        total += float(line.rsplit(" ", 1)[1])
    return total
