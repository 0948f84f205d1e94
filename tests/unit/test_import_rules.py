"""The layering of the packages, checked on the source of every one of them.

    stack/                     operations: may import everything below; no product package imports it
      │
    gateway/ balancer/ apiserver/   the processes: import shared and database, never each other
      │
    shared/  database/         the run-time library and the database: import no process package and nothing of
                               stack; shared.upstream (the proxy client) is for the gateway and the balancer only

Every import is absolute. Tests may import anything. A top-level package that is not listed here fails the test,
so a new package has to be placed in the picture before it can land.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = frozenset({"gateway", "balancer", "apiserver"})
LIBRARIES = frozenset({"shared", "database"})
OPERATIONS = "stack"
CHECKED = frozenset(PROCESSES | LIBRARIES | {OPERATIONS, "tests"})
# module prefix -> the packages allowed to import it (besides itself, stack and tests)
RESTRICTED = {"shared.upstream": frozenset({"gateway", "balancer"})}


def _top_level_packages() -> set[str]:
    return {path.parent.name for path in ROOT.glob("*/__init__.py")}


def _sources() -> list[Path]:
    return sorted(path for package in CHECKED for path in (ROOT / package).rglob("*.py"))


def _imports(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """(line, module imported, relative level) for every import statement."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def _violation(importer: str, module: str) -> str | None:
    """Why `importer` (a dotted module name) may not import `module`, or None when it may."""
    owner = importer.partition(".")[0]
    imported = module.partition(".")[0]
    if owner in PROCESSES and imported in PROCESSES - {owner}:
        return f"process package {owner} imports {imported}"
    if owner in LIBRARIES and imported in PROCESSES:
        return f"{owner} imports process package {imported}"
    if owner in PROCESSES | LIBRARIES and imported == OPERATIONS:
        return f"{owner} imports the operations package {OPERATIONS}"
    for prefix, allowed in RESTRICTED.items():
        inside = module == prefix or module.startswith(prefix + ".")
        its_own = importer.startswith(prefix + ".")
        if inside and not its_own and owner in PROCESSES | LIBRARIES and owner not in allowed:
            return f"{owner} imports {prefix}, which only {', '.join(sorted(allowed))} may use"
    return None


def _violations(path: Path) -> list[str]:
    relative = path.relative_to(ROOT)
    importer = ".".join(relative.with_suffix("").parts)
    found: list[str] = []
    for line, module, level in _imports(ast.parse(path.read_text(), filename=str(path))):
        problem = "relative import" if level else _violation(importer, module)
        if problem:
            found.append(f"{relative.as_posix()}:{line}: {problem}")
    return found


def test_every_top_level_package_is_placed_in_the_layering() -> None:
    assert _top_level_packages() == CHECKED


def test_the_checked_packages_have_sources() -> None:
    files = _sources()
    for package in CHECKED:
        assert any(path.relative_to(ROOT).parts[0] == package for path in files), f"no sources under {package}/"


def test_layering_and_absolute_imports_hold_everywhere() -> None:
    violations = [violation for path in _sources() for violation in _violations(path)]
    assert violations == []


@pytest.mark.parametrize(
    ("relative_path", "source", "expected"),
    [
        ("apiserver/x.py", "from gateway.auth import login\n", "process package apiserver imports gateway"),
        ("balancer/x.py", "import apiserver.app\n", "process package balancer imports apiserver"),
        ("shared/x.py", "from balancer import pool\n", "shared imports process package balancer"),
        ("database/x.py", "import gateway.settings\n", "database imports process package gateway"),
        (
            "gateway/x.py",
            "from stack.services.ports import free_port\n",
            "gateway imports the operations package stack",
        ),
        ("shared/x.py", "import stack.cli\n", "shared imports the operations package stack"),
        ("database/x.py", "from stack import supervisor\n", "database imports the operations package stack"),
        (
            "apiserver/x.py",
            "from shared.upstream import Upstream\n",
            "apiserver imports shared.upstream, which only balancer, gateway may use",
        ),
        (
            "database/x.py",
            "import shared.upstream.parser\n",
            "database imports shared.upstream, which only balancer, gateway may use",
        ),
        (
            "shared/settings.py",
            "from shared.upstream import Upstream\n",
            "shared imports shared.upstream, which only balancer, gateway may use",
        ),
        ("shared/x.py", "from . import settings\n", "relative import"),
        ("gateway/x.py", "from .proxy import forward\n", "relative import"),
        ("stack/x.py", "from .services import ports\n", "relative import"),
        ("tests/x.py", "from .support import clock\n", "relative import"),
    ],
)
def test_the_checker_catches_each_kind_of_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative_path: str, source: str, expected: str
) -> None:
    target = tmp_path / relative_path
    target.parent.mkdir(parents=True)
    target.write_text(source)
    monkeypatch.setattr(__name__ + ".ROOT", tmp_path)
    assert [violation.split(": ", 1)[1] for violation in _violations(target)] == [expected]


@pytest.mark.parametrize(
    ("relative_path", "source"),
    [
        ("stack/cli.py", "from database.seed import seed\nimport gateway.app\nfrom apiserver import app\n"),
        ("gateway/proxying.py", "from shared.upstream import Upstream\nfrom database.accounts import DEV_ACCOUNTS\n"),
        ("balancer/pool.py", "import shared.upstream.pool\nimport shared.settings\n"),
        ("shared/upstream/relay.py", "from shared.upstream.pool import Upstream\n"),
        ("apiserver/app.py", "import shared.settings\nfrom shared_upstream_like import x\n"),
        ("tests/test_x.py", "from stack.services.ports import free_port\nimport gateway.app\nimport apiserver\n"),
    ],
)
def test_allowed_imports_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative_path: str, source: str) -> None:
    target = tmp_path / relative_path
    target.parent.mkdir(parents=True)
    target.write_text(source)
    monkeypatch.setattr(__name__ + ".ROOT", tmp_path)
    assert _violations(target) == []
