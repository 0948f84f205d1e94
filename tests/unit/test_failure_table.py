"""The README's failure table is generated from the suites' JSON reports and replaced between its markers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.resilience.summary import BEGIN, END, main, replace_table, table


def _report(directory: Path, scenario: str, failed: int) -> None:
    report = {
        "suite": "resilience",
        "scenario": scenario,
        "title": f"title of {scenario}",
        "guarantee": "a | piped guarantee",
        "sent": 10,
        "failed": failed,
        "statuses": {"200": 9, "503": 1},
        "latency_ms": {"p50": 1.5, "p99": 9.0},
        "recovery_s": None,
        "extra": {},
    }
    (directory / "resilience").mkdir(exist_ok=True)
    (directory / "resilience" / f"{scenario}.json").write_text(json.dumps(report))


def test_every_report_is_a_row_in_scenario_order(tmp_path: Path) -> None:
    _report(tmp_path, "b_second", 1)
    _report(tmp_path, "a_first", 0)
    lines = table(tmp_path).splitlines()
    rows = [line for line in lines if line.startswith("| title of")]
    assert rows == [
        "| title of a_first | a \\| piped guarantee | 10 | 0 | 200: 9, 503: 1 | 1.5 / 9.0 | - |",
        "| title of b_second | a \\| piped guarantee | 10 | 1 | 200: 9, 503: 1 | 1.5 / 9.0 | - |",
    ]


def test_write_replaces_only_the_text_between_the_markers(tmp_path: Path) -> None:
    _report(tmp_path, "only", 0)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n## Failure behaviour\n\n{BEGIN}\nold table\n{END}\n\nAfter.\n")
    main(["--write", str(readme), str(tmp_path)])
    written = readme.read_text()
    assert "old table" not in written
    assert written.startswith("# Title\n\n## Failure behaviour\n\n" + BEGIN + "\n| scenario |")
    assert written.endswith(END + "\n\nAfter.\n")
    assert "| title of only |" in written


def test_a_document_without_markers_is_refused() -> None:
    with pytest.raises(SystemExit, match="markers"):
        replace_table("no markers here", "table")
