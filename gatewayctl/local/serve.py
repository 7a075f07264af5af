"""The local stack's process: `python -m gatewayctl.local.serve --state .local/stack.json [options]`.

Started by `gatewayctl local up` in its own process group. It starts the LocalStack (every server
in this one process), seeds the demo tenants and people, starts the audit pump as its child (same
process group), writes the state file, and runs until SIGTERM/SIGINT; then it stops everything
and removes the state file. `gatewayctl local down` is one SIGTERM to the group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from gatewayctl.local.stack import LocalStack, StackOptions, StackPorts
from gatewayctl.local.state import write_state
from gatewayctl.output import CommandError


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatewayctl.local.serve")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--ports", default="{}", help="JSON of StackPorts fields")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bedrock-regions", default=None, help="JSON residency -> [regions]")
    parser.add_argument("--no-vertex", action="store_true")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-pump", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    options = StackOptions(
        region=args.region, ports=StackPorts(**json.loads(args.ports)), log_level="warning"
    )
    if args.bedrock_regions:
        options.bedrock_regions = {k: tuple(v) for k, v in json.loads(args.bedrock_regions).items()}
    if args.no_vertex:
        options.vertex_project = None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(options)
    log_dir = args.state.parent / "logs"
    try:
        stack.start()
        if not args.no_demo:
            stack.seed_demo()
        pump = None if args.no_pump else stack.start_pump(log_dir)
        state = {
            **stack.state(),
            "pid": os.getpid(),
            "log_dir": str(log_dir),
            "pump_pid": pump.pid if pump else None,
        }
        write_state(args.state, state)
        print(f"local stack up: {stack.endpoint}", flush=True)
        while not stop.wait(1.0):
            if pump is not None and pump.poll() is not None:
                print(f"audit pump exited with {pump.returncode}; see {log_dir / 'pump.log'}", flush=True)
                pump = None
    except CommandError as exc:
        print(f"gatewayctl: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    finally:
        stack.stop()
        try:
            if json.loads(args.state.read_text()).get("pid") == os.getpid():
                args.state.unlink()
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
