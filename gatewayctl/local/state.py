"""The running stack's state file (stack.json): written by the stack's process, read by every command.

It holds the demo passwords and the machine client's secret, so it is written with mode 600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gatewayctl.output import CommandError


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2, sort_keys=True)
    tmp.chmod(0o600)  # an existing .tmp keeps its mode through os.open
    tmp.replace(path)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state, or None when no stack wrote one; a damaged file is a clear error."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON ({exc}); remove it after checking no stack runs") from None
