"""A streaming replica of an embedded PostgreSQL, for development and the read-replica tests.

``pg_basebackup -R`` copies the primary over its local socket (trusted for the server's own OS account) and
writes ``standby.signal`` plus ``primary_conninfo``; the copy then starts as a hot standby that replays the
primary's WAL. The result is an ordinary :class:`EmbeddedPostgres` on its own port and data directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from stack.services.postgres import EmbeddedPostgres, find_pg_bin, make_parents, pg_run_as
from stack.services.process import EmbeddedServerError


def create_streaming_replica(primary: EmbeddedPostgres, data_dir: Path, port: int) -> EmbeddedPostgres:
    """Base-backup ``primary`` into ``data_dir`` as a standby listening on ``port`` (not started yet)."""
    if not primary.is_running():
        raise EmbeddedServerError("the primary must be running to take a base backup")
    run_as = pg_run_as()
    data_dir = Path(data_dir).absolute()
    make_parents(data_dir, run_as)
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(mode=0o700)
    kwargs: dict[str, Any] = {"cwd": "/"}
    if run_as:
        os.chown(data_dir, run_as.uid, run_as.gid)
        kwargs.update(run_as.popen_kwargs())
    command = [
        str(find_pg_bin() / "pg_basebackup"),
        "--host", str(primary.socket_dir),
        "--port", str(primary.port),
        "--username", "postgres",
        "--pgdata", str(data_dir),
        "--write-recovery-conf",
        "--wal-method=stream",
        "--checkpoint=fast",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=120, check=False, **kwargs)
    if result.returncode != 0:
        raise EmbeddedServerError(f"pg_basebackup failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return EmbeddedPostgres(
        data_dir, port, host=primary.host, database=primary.database, user=primary.user, password=primary.password
    )
