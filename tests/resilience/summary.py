"""Turn ``reports/**/*.json`` into the README's "Failure behaviour" Markdown table.

python -m tests.resilience.summary [reports-dir]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.resilience.report import REPORTS_DIR

HEADER = (
    "| scenario | guarantee | requests | failed | statuses | p50 / p99 ms | recovery s |\n"
    "|---|---|---:|---:|---|---:|---:|"
)


def _cell(value: object) -> str:
    return "-" if value is None else str(value).replace("|", "\\|")


def row(report: dict[str, Any]) -> str:
    statuses = ", ".join(f"{status}: {count}" for status, count in report["statuses"].items())
    latency = report["latency_ms"]
    cells = [
        report["title"],
        report["guarantee"],
        report["sent"],
        report["failed"],
        statuses,
        f"{_cell(latency['p50'])} / {_cell(latency['p99'])}" if latency["p99"] else None,
        report["recovery_s"],
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def load_reports(directory: Path) -> list[dict[str, Any]]:
    reports = [json.loads(path.read_text()) for path in sorted(directory.glob("**/*.json"))]
    return sorted(reports, key=lambda report: (report["suite"], report["scenario"]))


def table(directory: Path = REPORTS_DIR) -> str:
    reports = load_reports(directory)
    lines = ["### Failure behaviour", "", HEADER, *(row(report) for report in reports)]
    lines += ["", "`failed` counts what the guarantee forbids (e.g. 5xx where none is allowed); figures are from"]
    lines += ["`tests/resilience` and `tests/security` on one 2-core machine, every process on 127.0.0.1."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else REPORTS_DIR
    print(table(directory))


if __name__ == "__main__":
    main()
