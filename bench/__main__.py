"""Run the benchmarks: `python -m bench` runs them all, `python -m bench NAME [args]` runs one.

Each benchmark is a module bench/<name>.py with `main(argv: list[str]) -> int` that prints its
figures (ratios measured side by side in one run) and writes them to bench/results/<name>.json.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

# Run only when named: litellm installs a third-party proxy from PyPI on its first run.
ON_REQUEST = ("litellm",)


def names() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    selected = argv[:1] or [name for name in names() if name not in ON_REQUEST]
    status = 0
    for name in selected:
        if name not in names():
            print(f"bench: no benchmark {name!r}; known: {', '.join(names())}", file=sys.stderr)
            return 2
        print(f"== bench {name}", flush=True)
        status |= importlib.import_module(f"bench.{name}").main(argv[1:] if argv else [])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
