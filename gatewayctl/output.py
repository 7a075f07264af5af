"""How gatewayctl reports: readable tables by default, JSON with --json, errors as CommandError."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any


class CommandError(Exception):
    """A clear, expected failure: printed as one line, exit code non-zero, nothing written."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def emit(args: Any, data: Any, *, columns: Sequence[str] | None = None) -> None:
    """Print `data` (a mapping or a list of mappings) as JSON or as a table."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, default=str, sort_keys=True)
        sys.stdout.write("\n")
        return
    rows = [data] if isinstance(data, Mapping) else list(data)
    print(table(rows, columns))


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    rows = list(rows)
    if not rows:
        return "(none)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def number(value: float | int) -> str:
    """A number in fixed-point notation with every significant decimal (5.1e-05 -> 0.000051)."""
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
