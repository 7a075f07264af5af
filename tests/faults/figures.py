"""The fault suite's figures, added up over the workers of its latest run: `python -m tests.faults.figures`.

Each worker that ran fault tests writes bench/results/faults-<worker>.json when it ends (tests/faults/conftest.py),
tagged with the run's id; this reads the files of the newest run, prints one row per fault class (docs/faults.md
explains each column) and writes the sum to bench/results/faults.json.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
COLUMNS = (
    ("tests", "tests"),
    ("requests", "requests"),
    ("answered_5xx", "5xx"),
    ("left_before_answer", "left before an answer"),
    ("outcome_records_lost", "outcomes lost"),
    ("request_records_lost", "requests lost"),
    ("records_black_holed", "black-holed (found by verify)"),
    ("dead_lettered", "to the DLQ"),
    ("duplicates", "duplicates"),
    ("kept_reservations", "kept whole"),
    ("dangling_reservations", "dangling"),
    ("counter_mismatches", "counter mismatches"),
)


def latest(results: Path = RESULTS) -> dict[str, Any]:
    """{"run", "workers", "classes": {class: {figure: n}}, "total": {figure: n}} for the newest run."""
    files = sorted(results.glob("faults-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"no fault suite figures in {results}: run `pytest tests/faults` first")
    found = [json.loads(p.read_text()) for p in files]
    run = found[-1]["run"]
    classes: dict[str, Counter[str]] = {}
    workers = []
    for figures in found:
        if figures.get("run") != run:
            continue
        workers.append(figures["worker"])
        for name, values in figures["classes"].items():
            classes.setdefault(name, Counter()).update(values)
    total: Counter[str] = Counter()
    for values in classes.values():
        total.update(values)
    return {
        "run": run,
        "workers": sorted(workers),
        "classes": {name: dict(values) for name, values in sorted(classes.items())},
        "total": dict(total),
    }


def table(figures: dict[str, Any]) -> str:
    rows = [
        "| fault class | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for name, values in [*figures["classes"].items(), ("all", figures["total"])]:
        cells = [str(values.get(key, 0)) for key, _ in COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    figures = latest()
    (RESULTS / "faults.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"fault suite run {figures['run']} (workers: {', '.join(figures['workers'])})\n")
    print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
