"""Start, stop and check the local stack as `gatewayctl local up|down|status` and the demo do.

`start` checks every port first (a taken port is a one-line error naming it), then starts one
process (gatewayctl/local/serve.py) in its own process group and waits until it has written the
state file; `stop` signals that group (and the pump), so nothing is left running.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gatewayctl import paths
from gatewayctl.local import processes
from gatewayctl.local.state import read_state
from gatewayctl.output import CommandError

DEFAULT_BEDROCK_REGIONS = {"us": ["us-east-1", "us-west-2"], "eu": ["eu-west-1", "eu-central-1"]}


def running_pid(state_path: Path) -> int | None:
    """The pid of the stack that wrote `state_path`, if it still runs."""
    try:
        state = read_state(state_path)
    except CommandError:
        return None
    pid = (state or {}).get("pid")
    return int(pid) if pid and processes.alive(int(pid)) else None


def start(
    state_path: Path,
    *,
    ports: Mapping[str, int],
    region: str = "us-east-1",
    bedrock_regions: Mapping[str, list[str]] | None = None,
    vertex: bool = True,
    demo: bool = True,
    timeout: float = 90.0,
) -> tuple[processes.Child, dict[str, Any]]:
    """Start the stack's process and wait for its state; returns the process and the state."""
    running = running_pid(state_path)
    if running:
        raise CommandError(f"a local stack is already running (pid {running}); `gatewayctl local down` first")
    bedrock_regions = dict(bedrock_regions or DEFAULT_BEDROCK_REGIONS)
    regions = sorted({r for rs in bedrock_regions.values() for r in rs})
    checks = [
        (ports["gateway"], "gateway"),
        (ports["moto"], "moto server"),
        (ports["bedrock_control"], "Bedrock emulator control"),
    ]
    checks += [(ports["bedrock_base"] + i, f"Bedrock emulator {r}") for i, r in enumerate(regions)]
    if vertex:
        checks.append((ports["vertex"], "Vertex emulator"))
    for port, what in checks:
        processes.ensure_port_free(port, what)
    state_path.unlink(missing_ok=True)
    command = [
        "-m",
        "gatewayctl.local.serve",
        "--state",
        str(state_path),
        "--ports",
        json.dumps(dict(ports)),
        "--region",
        region,
        "--bedrock-regions",
        json.dumps(bedrock_regions),
    ]
    command += ["--no-vertex"] * (not vertex) + ["--no-demo"] * (not demo)
    child = processes.spawn("stack", command, env={}, log_dir=state_path.parent / "logs")
    try:
        state = wait_for_state(child, state_path, timeout)
    except BaseException:  # also Ctrl-C during start-up: never leave the stack behind
        processes.stop(child.pid)
        forget(state_path)
        raise
    paths.point_to(state_path)  # gatewayctl finds this stack from any directory now
    return child, state


def wait_for_state(child: processes.Child, state_path: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(child.pid):
            raise CommandError(f"the local stack exited during start-up; its log:\n{processes.tail(child.log)}")
        state = read_state(state_path)
        if state and state.get("pid") == child.pid:
            return state
        time.sleep(0.2)
    raise CommandError(f"the local stack was not up within {timeout:.0f}s; its log:\n{processes.tail(child.log)}")


def stop(state_path: Path) -> bool:
    """Stop the stack that wrote `state_path` (and its pump); False when none was running."""
    state = read_state(state_path)
    if state is None:
        return False
    for key in ("pump_pid", "pid"):  # the pump first: it is in the same group, but may have been restarted
        pid = state.get(key)
        if pid and processes.alive(int(pid)):
            processes.stop(int(pid))
    forget(state_path)
    return True


def forget(state_path: Path) -> None:
    """The stack is gone: remove its state file, and the pointer to it."""
    state_path.unlink(missing_ok=True)
    paths.unpoint(state_path)


def status(state: Mapping[str, Any]) -> dict[str, Any]:
    """Is the stack's process alive, and does every part answer over HTTP?"""
    running = bool(state.get("pid")) and processes.alive(int(state["pid"]))
    probe = "/_emulator/faults"
    parts = [
        ("gateway", state["endpoint"], "/healthz"),
        ("moto", state["moto_endpoint"], "/moto-api/"),
        ("bedrock control", state["bedrock"]["control_url"], probe),
    ]
    parts += [(f"bedrock {r}", url, probe) for r, url in state["bedrock"]["endpoints"].items()]
    if state.get("vertex"):
        parts.append(("vertex", state["vertex"]["endpoint"], probe))
    rows = [{"part": name, "url": url, "answers": running and answers(url + path)} for name, url, path in parts]
    pump_pid = state.get("pump_pid")
    rows.append(
        {
            "part": "audit pump",
            "url": f"pid {pump_pid}" if pump_pid else "-",
            "answers": bool(pump_pid) and running and processes.alive(int(pump_pid)),
        }
    )
    healthy = running and all(r["answers"] for r in rows if r["part"] != "audit pump" or pump_pid)
    return {"running": running, "healthy": healthy, "pid": state.get("pid"), "parts": rows}


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except OSError:
        return False


def how_to_call(state: Mapping[str, Any], state_path: Path) -> str:
    cognito = state["cognito"]
    lines = [
        f"local stack up: {state['endpoint']}",
        f"  moto (AWS APIs):   {state['moto_endpoint']}",
        f"  user pool:         {cognito['user_pool_id']} (people client {cognito['people_client_id']})",
        "  Bedrock emulator:  " + ", ".join(f"{r} {u}" for r, u in state["bedrock"]["endpoints"].items()),
        f"  fault control:     {state['bedrock']['control_url']}/_emulator/faults",
    ]
    if state.get("vertex"):
        lines.append(f"  Vertex emulator:   {state['vertex']['endpoint']}")
    users = state.get("demo", {}).get("users", [])
    if users:
        lines.append("  demo people (tenant, roles):")
        lines += [
            f"    {u['username']}  password {u['password']}  ({u['tenant_id']}, {','.join(u['roles'])})" for u in users
        ]
        first, command = users[0], gatewayctl_command()
        lines += [
            "",
            "Call it:",
            f"  {command} login --username {first['username']}   # password above; caches a token",
            f"  {command} chat 'Hello'",
            "  # or, from Python:",
            f"  anthropic.Anthropic(base_url='{state['endpoint']}', auth_token=$({command} token))",
            f"  # Claude Code: ANTHROPIC_BASE_URL={state['endpoint']} and, in its settings,",
            f'  #   "apiKeyHelper": "{command} token"',
        ]
    lines.append(f"State: {state_path}; logs: {state.get('log_dir')}; stop with `gatewayctl local down`.")
    return "\n".join(lines)


def gatewayctl_command() -> str:
    """The absolute path of this gatewayctl: what works as a command from any directory."""
    script = Path(sys.executable).with_name("gatewayctl")
    return str(script) if script.exists() else "gatewayctl"
