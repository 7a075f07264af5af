"""Where gatewayctl keeps things on this machine, whatever the working directory.

- The local stack's state: `GATEWAY_LOCAL_DIR` when set; else the stack `local up` last started,
  named by a pointer file in the user's config dir; else the checkout's `.local/` (gatewayctl's own
  checkout, found from this file), or the user's state dir when gatewayctl is not run from one.
- The user's cloud sign-ins: the config dir, `$XDG_CONFIG_HOME/claude-gateway` (~/.config/claude-gateway).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

APP = "claude-gateway"
POINTER = "local-stack.json"  # {"state": "<absolute path of the running stack's stack.json>"}


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP


def checkout() -> Path | None:
    """The source checkout this gatewayctl runs from (an editable install), if it is one."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "stacks").is_dir() else None


def local_home() -> Path:
    """Where `local up` keeps a new stack's state (and logs, and the local token)."""
    explicit = os.environ.get("GATEWAY_LOCAL_DIR")
    if explicit:
        return Path(explicit)
    root = checkout()
    if root is not None:
        return root / ".local"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / APP


def local_state() -> Path:
    """The state file of the local stack that commands act on."""
    if os.environ.get("GATEWAY_LOCAL_DIR"):
        return local_home() / "stack.json"
    pointed = pointed_state()
    if pointed is not None and pointed.exists():
        return pointed
    return local_home() / "stack.json"


def pointed_state() -> Path | None:
    try:
        return Path(json.loads((config_dir() / POINTER).read_text())["state"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def point_to(state: Path) -> None:
    """Name `state` as the running local stack's, for gatewayctl run from anywhere."""
    path = config_dir() / POINTER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": str(state.resolve())}))
    tmp.replace(path)


def unpoint(state: Path) -> None:
    """Remove the pointer if it names `state` (a pointer to another stack stays)."""
    pointed = pointed_state()
    if pointed is not None and pointed == state.resolve():
        (config_dir() / POINTER).unlink(missing_ok=True)
