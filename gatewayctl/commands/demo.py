"""gatewayctl demo: the local stack, seeded, then six things the gateway does (gatewayctl/demo/).

Starts the local stack as `gatewayctl local up --detach` does (or uses the one already running),
runs the demo, and stops the stack it started unless --keep. Exit code 0 only when every step
showed what it should.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from gatewayctl.commands.local import port_options, ports_of


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="start the local stack and show what the gateway does (streaming, refusals, quota, "
        "failover, audit, GDPR); exits non-zero if any step does not show it",
    )
    demo.add_argument("--keep", action="store_true", help="leave the local stack running afterwards")
    port_options(demo)
    demo.set_defaults(func=_demo)


def _demo(args: Any) -> int:
    from gatewayctl import paths
    from gatewayctl.demo import Demo, Out
    from gatewayctl.local import lifecycle
    from gatewayctl.target import LOCAL_STATE, load_local

    out = Out()
    started: dict[str, Any] = {}  # the state of the stack this demo started (and stops)
    running = lifecycle.running_pid(LOCAL_STATE)
    state_path = LOCAL_STATE if running else paths.local_home() / "stack.json"
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated demo still stops its stack (finally)
    ok = False
    try:
        if running:
            out.line(f"Using the local stack already running (pid {running}); it stays up afterwards.", indent=0)
        else:
            with out.waiting("Starting the local stack (moto, emulators, the gateway, the audit pump)"):
                _, started = lifecycle.start(state_path, ports=ports_of(args))
        target = load_local(state_path)
        out.line(f"gateway: {target.local['endpoint']}   (state: {state_path})", indent=0)
        ok = Demo(target, out=out, export_dir=state_path.parent).run()
    finally:
        if started and not args.keep:
            with out.waiting("Stopping the local stack"):
                lifecycle.stop(state_path)
            out.line(
                f"local stack (pid {started['pid']}, audit pump pid {started.get('pump_pid')}) stopped; "
                "nothing is left running",
                indent=0,
            )
        elif started:
            out.line("The stack keeps running (--keep): `gatewayctl local status`, `gatewayctl local down`.", indent=0)
    out.line(f"demo took {time.monotonic() - began:.0f}s", indent=0)
    return 0 if ok else 1


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
