"""The layering rules from ARCHITECTURE.md, checked on the source: a process package never imports another,
``shared`` imports no process package, and every import is absolute."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = frozenset({"gateway", "balancer", "apiserver"})
CHECKED = ("gateway", "balancer", "apiserver", "shared", "database")


def _sources() -> list[Path]:
    return sorted(path for package in CHECKED for path in (ROOT / package).rglob("*.py"))


def _imports(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """(line, top-level package imported, relative level) for every import statement."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0], 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, (node.module or "").partition(".")[0], node.level


def _violations(path: Path) -> list[str]:
    owner = path.relative_to(ROOT).parts[0]
    where = path.relative_to(ROOT).as_posix()
    found: list[str] = []
    for line, imported, level in _imports(ast.parse(path.read_text(), filename=str(path))):
        if level:
            found.append(f"{where}:{line}: relative import")
        elif owner in PROCESSES and imported in PROCESSES - {owner}:
            found.append(f"{where}:{line}: process package {owner} imports {imported}")
        elif owner in {"shared", "database"} and imported in PROCESSES:
            found.append(f"{where}:{line}: {owner} imports process package {imported}")
    return found


def test_the_checked_packages_have_sources() -> None:
    files = _sources()
    for package in ("apiserver", "shared", "database"):
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
        ("shared/x.py", "from . import settings\n", "relative import"),
        ("gateway/x.py", "from .proxy import forward\n", "relative import"),
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


def test_allowed_imports_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "shared" / "cli.py"
    target.parent.mkdir(parents=True)
    target.write_text("from database.seed import seed\nimport shared.settings\nfrom apiserver_like import x\n")
    monkeypatch.setattr(__name__ + ".ROOT", tmp_path)
    assert _violations(target) == []
