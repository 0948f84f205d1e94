"""Property-based attack on the gateway's public contract: schemathesis, every check and every phase, against the
served ``/openapi.json`` of a real stack, signed in as an ordinary user and then as an admin.

    examples   the document's own examples
    coverage   boundary and invalid values of every parameter and body (positive and negative)
    fuzzing    FUZZ_EXAMPLES generated cases per operation (default 80), positive and negative
    stateful   sequences over the document's links and the ones schemathesis infers (create, then read, update,
               delete the created resource; create, then revoke a key; list accounts, then change one)

Every check runs (``checks.enabled``: no 5xx, status codes, content types, headers and bodies as documented,
schema-valid requests accepted, schema-invalid ones refused, auth enforced, no use after delete, no object of one
user readable by another, every response within MAX_RESPONSE_TIME). The run passes only with no failure and no
error. ``make test`` runs it with a fixed seed; ``make fuzz`` with FUZZ_SEED=random and more examples, printing
the seed so a failure can be replayed with ``FUZZ_SEED=<seed> make fuzz``.

Schemathesis runs as its own process (``python -m schemathesis.cli``) with a configuration written here; how it
signs in and why it sends fresh Idempotency-Keys is in :mod:`tests.security.schemathesis_hooks`. The admin run
leaves out the operations nobody signs in for (sign-in, refresh, probes, the dashboard's files): the user run
covered them and their answers do not depend on who asks. What the admin run changes in accounts (tiers, roles,
disabled flags of other accounts) is put back afterwards, for the other tests on this package's stack.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from database.accounts import DEV_ADMIN, DEV_USER, DevAccount
from tests.resilience.report import Sample, record
from tests.security.conftest import OTHER_LOGIN
from tests.support.servers import run_sync
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "80"))
FIXED_SEED = 20_260_613
SEED = random.SystemRandom().getrandbits(32) if os.environ.get("FUZZ_SEED") == "random" else None
MAX_RESPONSE_TIME = 10.0
# About 0.2 s per generated case on two cores (sign-in cases verify an argon2 hash): generous, so only a hang fails.
RUN_TIMEOUT = 300 + EXAMPLES * 6
STREAM = "/api/v1/admin/stream"  # an endless event stream: its 403 for users is checked by the authorization matrix
NOBODY_SIGNS_IN = ("/api/v1/auth/login", "/api/v1/auth/refresh", "/health", "/ready", "/metrics", "/dashboard")
PHASES = ("examples", "coverage", "fuzzing", "stateful")
# Warnings that mean the run tested less than it says: a pattern the generator cannot read, a reference it cannot
# resolve, rate limiting. ("validation_mismatch" is left out: it counts the 412s a random If-Match rightly gets.)
NO_WARNINGS = ("unsupported_regex", "unresolvable_reference", "rate_limited")


def seed() -> int:
    if SEED is not None:
        return SEED
    return int(os.environ.get("FUZZ_SEED") or FIXED_SEED)


def config(base_url: str) -> str:
    """schemathesis.toml for one run: every check and phase, positive and negative cases."""
    return f"""
base-url = "{base_url}"
hooks = "tests.security.schemathesis_hooks"
seed = {seed()}
# One worker: with two, hypothesis describing a filter from two threads at once trips CPython 3.11's
# "AST constructor recursion depth mismatch" now and then (an error in the tool, not in the API).
workers = 1
request-timeout = {MAX_RESPONSE_TIME * 2}

[cache]
enabled = false

[generation]
mode = "all"
max-examples = {EXAMPLES}
database = "none"

[checks]
enabled = true
max_response_time = {MAX_RESPONSE_TIME}

# 412 joins the default list: like 404 and 409 it answers the state of the resource (an If-Match naming another
# version), not the shape of the request, so a schema-valid If-Match may rightly get it.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]

[phases.stateful]
enabled = true
"""


def run_schemathesis(stack: Stack, account: DevAccount, tmp_path: Path, *exclude: str) -> tuple[dict[str, Any], str]:
    """One schemathesis run signed in as ``account``: its JSON report and its console output."""
    config_file, report_file = tmp_path / "schemathesis.toml", tmp_path / "report.json"
    config_file.write_text(config(stack.gateway))
    excluded = ["--exclude-path-regex", f"^({'|'.join((STREAM, *exclude))})"]  # the option's last use wins
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "FUZZ_BASE_URL": stack.gateway,
        "FUZZ_EMAIL": account.email,
        "FUZZ_PASSWORD": account.password,
    }
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_file), "--no-color", "run"]
    command += [stack.gateway + "/openapi.json", *excluded, "--report", "json", "--report-json-path", str(report_file)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    output = done.stdout + done.stderr
    (tmp_path / "schemathesis.log").write_text(output)
    assert report_file.exists(), f"schemathesis wrote no report (exit {done.returncode}):\n{output[-5000:]}"
    report: dict[str, Any] = json.loads(report_file.read_text())
    return report, output


def gateway_statuses(stack: Stack) -> Counter[int]:
    """Responses the gateway has sent so far, by status (its http_requests_total)."""
    with urllib.request.urlopen(stack.gateway + "/metrics", timeout=10) as response:  # noqa: S310 - our own stack
        text = response.read().decode()
    counts: Counter[int] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                counts[int(sample.labels["status"])] += int(sample.value)
    return counts


async def restore_accounts(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        for email, role, tier in [
            (DEV_ADMIN.email, DEV_ADMIN.role, DEV_ADMIN.tier),
            (DEV_USER.email, DEV_USER.role, DEV_USER.tier),
            (OTHER_LOGIN["email"], "user", "free"),
        ]:
            await connection.execute(
                "UPDATE users SET role = $2, tier = $3, disabled = false WHERE email = $1", email, role, tier
            )
    finally:
        await connection.close()


@pytest.fixture
def accounts_restored(stack: Stack) -> Iterator[None]:
    try:
        yield
    finally:
        run_sync(restore_accounts(stack.database_url))


@pytest.mark.timeout(RUN_TIMEOUT + 60)
@pytest.mark.parametrize(
    ("account", "exclude"), [(DEV_USER, ()), (DEV_ADMIN, NOBODY_SIGNS_IN)], ids=["as-user", "as-admin"]
)
def test_every_operation_conforms_under_every_check(
    stack: Stack, account: DevAccount, exclude: tuple[str, ...], tmp_path: Path, accounts_restored: None
) -> None:
    started, before = time.monotonic(), gateway_statuses(stack)
    report, output = run_schemathesis(stack, account, tmp_path, *exclude)
    seconds = round(time.monotonic() - started, 1)
    answered = gateway_statuses(stack) - before
    replay = f"seed {seed()}: replay with FUZZ_SEED={seed()} FUZZ_EXAMPLES={EXAMPLES} make fuzz"
    print(f"schemathesis as {account.role}: {report['test_cases']['generated']} cases in {seconds} s, {replay}")
    phases = report["phases"] or {}
    record(
        "security",
        f"schemathesis-{account.role}",
        title=f"schemathesis as {account.role}: every check and phase, {EXAMPLES} examples per operation",
        guarantee="no 5xx; every response conforms to the document; valid requests accepted, invalid refused",
        samples=[Sample("fuzz", status, 0.0, 0.0) for status, count in answered.items() for _ in range(count)],
        failed=len(report["failures"]) + len(report["errors"]),
        extra={"seed": seed(), "seconds": seconds, "test_cases": report["test_cases"], "phases": phases},
    )
    details = re.search(r"^=+ (FAILURES|ERRORS) =+$", output, re.MULTILINE)
    verdict = f"{replay}\n{output[details.start() if details else 0 :][:30000]}"
    assert report["failures"] == [], verdict
    assert {status: count for status, count in answered.items() if status >= 500} == {}, verdict
    assert report["errors"] == [], verdict
    assert report["exit_code"] == 0, verdict
    assert report["operations"]["tested"] == report["operations"]["selected"], verdict
    assert {phase: phases.get(phase, {}).get("status") for phase in PHASES} == dict.fromkeys(PHASES, "success"), verdict
    assert {name: report["warnings"].get(name) for name in NO_WARNINGS} == {name: [] for name in NO_WARNINGS}, verdict
