"""gatewayctl local up|down|status: the whole gateway on this machine, no AWS account needed.

`up` starts one process in its own process group (gatewayctl/local/lifecycle.py): the moto server,
the resources, the Bedrock and Vertex emulators, the gateway behind the local Cognito authorizer,
and the audit pump. It writes stack.json (what every other command reads with --target local) and
prints how to call the stack.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gatewayctl.options import port as port_type
from gatewayctl.options import positive_seconds
from gatewayctl.output import CommandError, emit

DEFAULT_PORTS = {"gateway": 8700, "moto": 8701, "bedrock_control": 8702, "vertex": 8703, "bedrock_base": 8710}


def register(sub: Any) -> None:
    group = sub.add_parser("local", help="the local stack: up, down, status").add_subparsers(
        dest="local_command", metavar="ACTION", required=True
    )
    up = group.add_parser("up", help="start the local stack (Ctrl-C stops it, unless --detach)")
    up.add_argument("--detach", action="store_true", help="return once the stack is up; `local down` stops it")
    port_options(up)
    up.add_argument("--region", default="us-east-1", help="the gateway's own AWS region (emulated)")
    up.add_argument(
        "--bedrock-regions",
        default=None,
        help="JSON: residency -> Bedrock regions in failover order; default "
        '\'{"us": ["us-east-1", "us-west-2"], "eu": ["eu-west-1", "eu-central-1"]}\'',
    )
    up.add_argument("--no-vertex", action="store_true", help="no Vertex emulator (no Vertex fallback)")
    up.add_argument("--no-demo", action="store_true", help="do not seed the demo tenants and people")
    up.add_argument("--timeout", type=positive_seconds, default=90.0, help="seconds to wait for the stack")
    up.set_defaults(func=_up)
    group.add_parser("down", help="stop the local stack; nothing is left running").set_defaults(func=_down)
    group.add_parser("status", help="is the local stack up, and does every part answer").set_defaults(func=_status)


def port_options(parser: Any) -> None:
    """The port flags of `local up` (and `demo`): each defaults to DEFAULT_PORTS, or with --free-ports
    to a run of free ports."""
    parser.add_argument(
        "--free-ports", action="store_true", help="free ports (any) for the ports not given, not the defaults"
    )
    for name, port in DEFAULT_PORTS.items():
        flag = "--" + name.replace("_", "-") + "-port"
        parser.add_argument(
            flag,
            type=port_type,
            default=None,
            dest=f"{name}_port",
            help=f"default {port}" + (" (region i listens on this + i)" if name == "bedrock_base" else ""),
        )


def ports_of(args: Any) -> dict[str, int]:
    """The ports given on the command line; the others from DEFAULT_PORTS, or free ones with --free-ports."""
    chosen = dict(DEFAULT_PORTS)
    if args.free_ports:
        from gatewayctl.local.processes import free_port_run

        base = free_port_run(10)  # gateway, moto, control, vertex, then one per Bedrock region
        chosen = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    return {name: getattr(args, f"{name}_port") or chosen[name] for name in DEFAULT_PORTS}


def _up(args: Any) -> int:
    from gatewayctl import paths
    from gatewayctl.local import lifecycle, processes

    state_path = paths.local_home() / "stack.json"
    try:
        bedrock_regions = json.loads(args.bedrock_regions) if args.bedrock_regions else None
    except ValueError as exc:
        raise CommandError(f"--bedrock-regions is not valid JSON: {exc}") from None
    try:
        child, state = lifecycle.start(
            state_path,
            ports=ports_of(args),
            region=args.region,
            bedrock_regions=bedrock_regions,
            vertex=not args.no_vertex,
            demo=not args.no_demo,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:  # `start` has stopped what it started
        print("local stack stopped")
        return 0
    if getattr(args, "json", False):
        emit(args, state)
    else:
        print(lifecycle.how_to_call(state, state_path))
    if args.detach:
        return 0
    try:
        print("\nCtrl-C stops the stack.", flush=True)
        while processes.alive(child.pid):
            time.sleep(0.5)
    except KeyboardInterrupt:
        processes.stop(child.pid)
        lifecycle.forget(state_path)
        print("local stack stopped")
        return 0
    print(f"the stack exited; its log:\n{processes.tail(child.log)}")
    return 1


def _down(args: Any) -> int:
    from gatewayctl.local import lifecycle
    from gatewayctl.target import LOCAL_STATE

    print("local stack stopped" if lifecycle.stop(LOCAL_STATE) else "no local stack is running")
    return 0


def _status(args: Any) -> int:
    from gatewayctl.local import lifecycle
    from gatewayctl.local.state import read_state
    from gatewayctl.target import LOCAL_STATE

    state = read_state(LOCAL_STATE)
    if state is None:
        emit(args, {"running": False, "state": str(LOCAL_STATE)})
        return 1
    report = lifecycle.status(state)
    if getattr(args, "json", False):
        emit(args, report)
    else:
        print(
            f"local stack {'up' if report['running'] else 'NOT running'} (pid {report['pid']}), "
            f"{'all parts answer' if report['healthy'] else 'some parts do not answer'}"
        )
        emit(args, report["parts"], columns=("part", "url", "answers"))
    return 0 if report["healthy"] else 1
