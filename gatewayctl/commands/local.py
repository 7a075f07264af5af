"""gatewayctl local up|down|status: the whole gateway on this machine, no AWS account needed.

`up` starts one process (gatewayctl/local/serve.py) in its own process group: the moto server,
the resources, the Bedrock emulator (one port per region), the Vertex emulator, the gateway app
behind the local Cognito authorizer, and the audit pump. It writes .local/stack.json (what every
other command reads with --target local) and prints how to call the stack.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gatewayctl.local import processes
from gatewayctl.output import CommandError, emit
from gatewayctl.target import LOCAL_STATE

DEFAULT_PORTS = {"gateway": 8700, "moto": 8701, "bedrock_control": 8702, "vertex": 8703, "bedrock_base": 8710}
DEFAULT_BEDROCK_REGIONS = {"us": ["us-east-1", "us-west-2"], "eu": ["eu-west-1", "eu-central-1"]}


def register(sub: Any) -> None:
    group = sub.add_parser("local", help="the local stack: up, down, status").add_subparsers(
        dest="local_command", metavar="ACTION", required=True
    )
    up = group.add_parser("up", help="start the local stack (Ctrl-C stops it, unless --detach)")
    up.add_argument(
        "--detach", action="store_true", help="return once the stack is up; `local down` stops it"
    )
    for name, port in DEFAULT_PORTS.items():
        flag = "--" + name.replace("_", "-") + "-port"
        up.add_argument(
            flag,
            type=int,
            default=port,
            dest=f"{name}_port",
            help=f"default {port}" + (" (region i listens on this + i)" if name == "bedrock_base" else ""),
        )
    up.add_argument("--region", default="us-east-1", help="the gateway's own AWS region (emulated)")
    up.add_argument(
        "--bedrock-regions",
        default=json.dumps(DEFAULT_BEDROCK_REGIONS),
        help="JSON: residency -> Bedrock regions in failover order",
    )
    up.add_argument("--no-vertex", action="store_true", help="no Vertex emulator (no Vertex fallback)")
    up.add_argument("--no-demo", action="store_true", help="do not seed the demo tenants and people")
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the stack")
    up.set_defaults(func=_up)
    group.add_parser("down", help="stop the local stack; nothing is left running").set_defaults(func=_down)
    group.add_parser("status", help="is the local stack up, and does every part answer").set_defaults(
        func=_status
    )


def _read_state(path: Path = LOCAL_STATE) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CommandError(
            f"{path} is not valid JSON ({exc}); remove it after checking no stack runs"
        ) from None


def _up(args: Any) -> int:
    state = _read_state()
    if state and state.get("pid") and processes.alive(int(state["pid"])):
        raise CommandError(
            f"a local stack is already running (pid {state['pid']}); `gatewayctl local down` first"
        )
    try:
        bedrock_regions = json.loads(args.bedrock_regions)
    except ValueError as exc:
        raise CommandError(f"--bedrock-regions is not valid JSON: {exc}") from None
    regions = sorted({r for rs in bedrock_regions.values() for r in rs})
    ports = {name: getattr(args, f"{name}_port") for name in DEFAULT_PORTS}
    checks = [
        (ports["gateway"], "gateway"),
        (ports["moto"], "moto server"),
        (ports["bedrock_control"], "Bedrock emulator control"),
    ]
    checks += [(ports["bedrock_base"] + i, f"Bedrock emulator {r}") for i, r in enumerate(regions)]
    if not args.no_vertex:
        checks.append((ports["vertex"], "Vertex emulator"))
    for port, what in checks:
        processes.ensure_port_free(port, what)
    LOCAL_STATE.unlink(missing_ok=True)
    command = [
        "-m",
        "gatewayctl.local.serve",
        "--state",
        str(LOCAL_STATE),
        "--ports",
        json.dumps(ports),
        "--region",
        args.region,
        "--bedrock-regions",
        json.dumps(bedrock_regions),
    ]
    command += ["--no-vertex"] * args.no_vertex + ["--no-demo"] * args.no_demo
    child = processes.spawn("stack", command, env={}, log_dir=LOCAL_STATE.parent / "logs")
    try:
        state = _wait_for_state(child, args.timeout)
        if getattr(args, "json", False):
            emit(args, state)
        else:
            print(how_to_call(state))
        if args.detach:
            return 0
        print("\nCtrl-C stops the stack.", flush=True)
        while processes.alive(child.pid):
            time.sleep(0.5)
        print(f"the stack exited; its log:\n{processes.tail(child.log)}")
        return 1
    except KeyboardInterrupt:  # also during start-up: never leave the stack behind
        processes.stop(child.pid)
        LOCAL_STATE.unlink(missing_ok=True)
        print("local stack stopped")
        return 0


def _wait_for_state(child: processes.Child, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not processes.alive(child.pid):
            raise CommandError(
                f"the local stack exited during start-up; its log:\n{processes.tail(child.log)}"
            )
        state = _read_state()
        if state and state.get("pid") == child.pid:
            return state
        time.sleep(0.2)
    processes.stop(child.pid)
    raise CommandError(
        f"the local stack was not up within {timeout:.0f}s; its log:\n{processes.tail(child.log)}"
    )


def how_to_call(state: dict[str, Any]) -> str:
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
            f"    {u['username']}  password {u['password']}  ({u['tenant_id']}, {','.join(u['roles'])})"
            for u in users
        ]
        first = users[0]
        lines += [
            "",
            "Call it:",
            f"  gatewayctl login --username {first['username']}   # password above; caches a token",
            "  gatewayctl chat 'Hello'",
            "  # or, from Python:",
            f"  anthropic.Anthropic(base_url='{state['endpoint']}', auth_token=$(gatewayctl token))",
            f"  # Claude Code: ANTHROPIC_BASE_URL={state['endpoint']} and apiKeyHelper = `gatewayctl token`",
        ]
    lines.append(f"State: {LOCAL_STATE}; logs: {state.get('log_dir')}; stop with `gatewayctl local down`.")
    return "\n".join(lines)


def _down(args: Any) -> int:
    state = _read_state()
    if state is None:
        print("no local stack is running")
        return 0
    for key in ("pump_pid", "pid"):  # the pump first: it is in the same group, but may have been restarted
        pid = state.get(key)
        if pid and processes.alive(int(pid)):
            processes.stop(int(pid))
    LOCAL_STATE.unlink(missing_ok=True)
    print("local stack stopped")
    return 0


def _status(args: Any) -> int:
    state = _read_state()
    if state is None:
        emit(args, {"running": False, "state": str(LOCAL_STATE)})
        return 1
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
    rows = [
        {"part": name, "url": url, "answers": running and _answers(url + path)} for name, url, path in parts
    ]
    pump_pid = state.get("pump_pid")
    rows.append(
        {
            "part": "audit pump",
            "url": f"pid {pump_pid}" if pump_pid else "-",
            "answers": bool(pump_pid) and running and processes.alive(int(pump_pid)),
        }
    )
    healthy = running and all(r["answers"] for r in rows if r["part"] != "audit pump" or pump_pid)
    if getattr(args, "json", False):
        emit(args, {"running": running, "healthy": healthy, "pid": state.get("pid"), "parts": rows})
    else:
        print(
            f"local stack {'up' if running else 'NOT running'} (pid {state.get('pid')}), "
            f"{'all parts answer' if healthy else 'some parts do not answer'}"
        )
        emit(args, rows, columns=("part", "url", "answers"))
    return 0 if healthy else 1


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if not with 200
    except OSError:
        return False
