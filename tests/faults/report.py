"""The fault matrix: one JSON line per scenario, and a table of this session's rows."""

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_MATRIX = Path("/tmp/customer-worker-fault-matrix.jsonl")
COLUMNS = (
    "fault",
    "events_sent",
    "distinct_events",
    "customers",
    "mismatched_customers",
    "lost",
    "double_counted",
    "dlq",
    "expected_dlq",
    "seconds",
)

#: Rows recorded in this session, for the terminal summary.
SESSION_ROWS: list[dict[str, Any]] = []


def matrix_path() -> Path:
    """`CW_FAULT_MATRIX` if set, else a file in /tmp (never in the repository)."""
    return Path(os.environ.get("CW_FAULT_MATRIX") or DEFAULT_MATRIX)


def record(row: dict[str, Any]) -> None:
    """Append a scenario's row to the matrix file and to this session's rows."""
    SESSION_ROWS.append(row)
    path = matrix_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(row, sort_keys=True) + "\n")


def summary(row: dict[str, Any]) -> str:
    """One line per scenario."""
    return "fault-matrix: " + " ".join(f"{name}={row.get(name)}" for name in COLUMNS)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The rows as an aligned text table."""
    cells = [list(COLUMNS)] + [[str(row.get(name, "")) for name in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
