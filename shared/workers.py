"""Several workers on one port: the parent that starts, watches and stops them, and what a worker needs of it.

With ``WORKERS=N`` (or ``--workers N``; ``auto`` is one per core) above 1, ``python -m <package>`` serves nothing
itself: it validates its settings once, then becomes the parent of N workers::

    parent  python -m gateway --workers 4           <tmp>/scalable-api-gateway-XXXX/{metrics,run}  (mode 0700)
      ├─► python -m gateway --port P   WORKERS=4 WORKER_INDEX=0..3 INSTANCE_ID=<id> (the worker is <id>-w<i>)
      │                                PROMETHEUS_MULTIPROC_DIR=<tmp>/metrics  WORKER_RUNTIME_DIR=<tmp>/run
      │   every worker binds P with SO_REUSEPORT and runs its own event loop; the kernel spreads connections
      ├── a worker exits unexpectedly ─► logged; its live gauges marked dead; started again after a back-off
      │                                  (0.5 s doubling to 30 s, back to 0.5 s once a worker has run 30 s)
      ├── a worker exits with 2 (a configuration error) ─► the others are stopped and the parent exits 2
      └── SIGTERM or SIGINT ─► one SIGTERM to every worker (each drains in flight requests: aiohttp's graceful
                               shutdown), wait for all of them, remove the directory, exit 0

Why re-execute rather than fork or multiprocessing: a worker is exactly the single-process program (a fresh
interpreter and event loop; prometheus_client reads ``PROMETHEUS_MULTIPROC_DIR`` at import), the parent imports
no app and holds no socket, and nothing built in the parent leaks into a worker. Workers never start workers:
``WORKER_INDEX`` makes them serve. They run in a session of their own so a terminal's Ctrl-C reaches only the
parent, which forwards exactly one SIGTERM (one is what starts the drain); on Linux a worker
also gets SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a parent killed outright leaves no worker
holding the port. Why by hand rather than gunicorn or supervisord: :func:`shared.runner.serve` (aiohttp's
runner behind the connection guard of :mod:`shared.connections`) stays the server unchanged, and the per-tier
directory (merged metrics, the balancer's sibling sockets) is the parent's job anyway; the loop itself is small.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
from prometheus_client.multiprocess import mark_process_dead

from shared.metrics import MULTIPROCESS_DIR_VARIABLE
from shared.settings import CommonSettings

__all__ = ["WorkerPool", "end_with_parent", "worker_socket", "worker_sockets"]

CONFIGURATION_ERROR = 2  # the exit status of shared.runner.load_settings: restarting cannot help
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 30.0  # a worker that ran this long was healthy: its next failure starts the back-off afresh
STOP_MARGIN = 15.0  # beyond the workers' own shutdown timeout before a straggler is killed
POLL_INTERVAL = 0.1
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_PID_VARIABLE = "WORKER_PARENT_PID"  # process plumbing between parent and worker, not configuration
_log = structlog.get_logger("shared.workers")


def worker_socket(runtime_dir: str, service: str, index: int) -> Path:
    """Where worker ``index`` of ``service`` listens for its siblings (only the balancer does, for drains)."""
    return Path(runtime_dir) / f"{service}-w{index}.sock"


def worker_sockets(common: CommonSettings, service: str) -> tuple[Path | None, tuple[Path, ...]]:
    """This worker's own socket and its siblings' sockets; ``(None, ())`` when it is not one of several workers."""
    if common.runtime_dir is None or common.worker_index is None:
        return None, ()
    own = worker_socket(common.runtime_dir, service, common.worker_index)
    others = tuple(
        worker_socket(common.runtime_dir, service, index)
        for index in range(common.workers)
        if index != common.worker_index
    )
    return own, others


def end_with_parent(environ: Mapping[str, str]) -> None:
    """In a worker: be sent SIGTERM when the parent dies (Linux; elsewhere the parent's own stop is relied on)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The parent died before prctl took effect: nobody would supervise or stop this worker. (Compared with the
    # pid the parent gave, not with 1: in a container without an init the parent itself is pid 1.)
    if str(os.getppid()) != environ.get(PARENT_PID_VARIABLE, str(os.getppid())):
        raise SystemExit(1)


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    next_start: float = 0.0


class WorkerPool:
    """The parent of ``common.workers`` copies of ``python -m <package> --port <port>``."""

    def __init__(
        self, package: str, *, port: int, common: CommonSettings, shutdown_timeout: float, service: str
    ) -> None:
        self.package = package
        self.port = port
        self.common = common
        self.shutdown_timeout = shutdown_timeout
        self.service = service
        self.slots = [_Slot(index) for index in range(common.workers)]
        self._stop_signal: int | None = None
        self._root: Path | None = None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a worker's configuration error (2); the directory is always removed."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self._root = Path(tempfile.mkdtemp(prefix=f"scalable-api-{self.service}-"))
        try:
            for name in ("metrics", "run"):
                (self._root / name).mkdir(mode=0o700)
            _log.info("workers_starting", workers=len(self.slots), port=self.port, directory=str(self._root))
            status = self._supervise()
            self._stop_all()
            return status
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _supervise(self) -> int:
        while self._stop_signal is None:
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is not None and self._reap(slot, slot.process):
                    _log.error("worker_configuration_error", worker=slot.index)
                    return CONFIGURATION_ERROR
                if slot.process is None and time.monotonic() >= slot.next_start:
                    self._spawn(slot)
            time.sleep(POLL_INTERVAL)
        _log.info("workers_stopping", signal=signal.Signals(self._stop_signal).name)
        return 0

    def _spawn(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(
            [sys.executable, "-m", self.package, "--port", str(self.port)],
            env=self._environment(slot.index),
            start_new_session=True,  # Ctrl-C reaches the parent only; it forwards one SIGTERM
        )
        slot.started_at = time.monotonic()
        _log.info("worker_started", worker=slot.index, pid=slot.process.pid)

    def _reap(self, slot: _Slot, process: subprocess.Popen[bytes]) -> bool:
        """Note a worker's exit and plan its restart; True when it was a configuration error."""
        pid, status = process.pid, process.returncode
        slot.process = None
        mark_process_dead(pid, str(self._directory("metrics")))  # type: ignore[no-untyped-call]  # unannotated upstream
        if status == CONFIGURATION_ERROR:
            return True
        now = time.monotonic()
        slot.failures = 1 if now - slot.started_at >= HEALTHY_RUN else slot.failures + 1
        delay = min(FIRST_BACKOFF * 2 ** (slot.failures - 1), MAX_BACKOFF)
        slot.next_start = now + delay
        how = f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"
        _log.warning("worker_exited", worker=slot.index, pid=pid, exit=how, restart_in=delay)
        return False

    def _directory(self, name: str) -> Path:
        if self._root is None:
            raise RuntimeError("the worker directory exists only while the pool runs")
        return self._root / name

    def _environment(self, index: int) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key.lower() != MULTIPROCESS_DIR_VARIABLE.lower()}
        env.update(
            {
                "WORKERS": str(len(self.slots)),
                "WORKER_INDEX": str(index),
                # The parent's id (from INSTANCE_ID or its default); each worker appends -w<index>.
                "INSTANCE_ID": self.common.instance_id,
                MULTIPROCESS_DIR_VARIABLE: str(self._directory("metrics")),
                "WORKER_RUNTIME_DIR": str(self._directory("run")),
                PARENT_PID_VARIABLE: str(os.getpid()),
            }
        )
        return env

    def _stop_all(self) -> None:
        """SIGTERM every worker once and wait for them to drain; kill any that outlive the deadline."""
        running = [slot.process for slot in self.slots if slot.process is not None and slot.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_timeout + STOP_MARGIN
        for process in running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                _log.error("worker_killed", pid=process.pid, after=self.shutdown_timeout + STOP_MARGIN)
                process.kill()
                process.wait()
        _log.info("workers_stopped", workers=len(running))
