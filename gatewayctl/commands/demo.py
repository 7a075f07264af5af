"""gatewayctl demo: the local stack, seeded, then six things the gateway does (gatewayctl/demo.py).

Starts the local stack as `gatewayctl local up --detach` does (or uses the one already running),
runs the demo, and stops the stack it started unless --keep. Exit code 0 only when every step
showed what it should.
"""

from __future__ import annotations

import contextlib
import io
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

from gatewayctl.output import CommandError

PORT_NAMES = ("gateway", "moto", "bedrock_control", "vertex", "bedrock_base")


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="start the local stack and show what the gateway does (streaming, refusals, quota, "
        "failover, audit, GDPR); exits non-zero if any step does not show it",
    )
    demo.add_argument("--keep", action="store_true", help="leave the local stack running afterwards")
    demo.add_argument(
        "--free-ports",
        action="store_true",
        help="start the stack on free ports (any) instead of the `local up` defaults",
    )
    for name in PORT_NAMES:
        flag = "--" + name.replace("_", "-") + "-port"
        demo.add_argument(flag, type=int, default=None, dest=f"{name}_port", help="as for `local up`")
    demo.set_defaults(func=_demo)


def _demo(args: Any) -> int:
    from gatewayctl import demo as demo_module
    from gatewayctl.local import processes
    from gatewayctl.target import LOCAL_STATE, load_local

    out = demo_module.Out()
    started: dict[str, Any] = {}  # the state of the stack this demo started (and stops)
    running = _running_pid(LOCAL_STATE, processes)
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated demo still stops its stack (finally)
    try:
        if running:
            out.line(
                f"Using the local stack already running (pid {running}); it stays up afterwards.", indent=0
            )
        else:
            with out.waiting("Starting the local stack (moto, emulators, the gateway, the audit pump)"):
                started = _local_up(_port_flags(args))
        target = load_local(LOCAL_STATE)
        out.line(f"gateway: {target.local['endpoint']}   (state: {LOCAL_STATE})", indent=0)
        ok = demo_module.Demo(target, out=out, export_dir=LOCAL_STATE.parent).run()
    finally:
        if started and not args.keep:
            with out.waiting("Stopping the local stack"):
                _local_down()
            out.line(
                f"local stack (pid {started['pid']}, audit pump pid {started.get('pump_pid')}) stopped; "
                "nothing is left running",
                indent=0,
            )
        elif started:
            out.line(
                "The stack keeps running (--keep): `gatewayctl local status`, `gatewayctl local down`.",
                indent=0,
            )
    out.line(f"demo took {time.monotonic() - began:.0f}s", indent=0)
    return 0 if ok else 1


def _running_pid(state_path: Any, processes: Any) -> int | None:
    import json

    try:
        pid = json.loads(state_path.read_text()).get("pid")
    except (OSError, ValueError):
        return None
    return int(pid) if pid and processes.alive(int(pid)) else None


def _port_flags(args: Any) -> list[str]:
    ports = {name: getattr(args, f"{name}_port") for name in PORT_NAMES}
    if args.free_ports:
        base = free_port_run(10)  # gateway, moto, control, vertex, then one per Bedrock region
        chosen = dict(zip(PORT_NAMES, (base, base + 1, base + 2, base + 3, base + 4), strict=True))
        ports = {name: ports[name] or chosen[name] for name in PORT_NAMES}
    return [
        x
        for name, port in ports.items()
        if port is not None
        for x in ("--" + name.replace("_", "-") + "-port", str(port))
    ]


def free_port_run(n: int, host: str = "127.0.0.1") -> int:
    """A base port with n consecutive ports free after it (the Bedrock regions take consecutive ports)."""
    low, high = _outside_ephemeral_range()
    for _ in range(100):
        base = random.randint(low, high - n)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise CommandError("found no run of free ports for the local stack")


def _outside_ephemeral_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range: there, no outgoing connection of another process
    can take a port of the run between our check and the stack's bind."""
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default
    return 10000, max(first - 1, 10100)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _local_up(flags: list[str]) -> dict[str, Any]:
    """`gatewayctl local up --detach FLAGS`, the same code; returns the stack's state."""
    from gatewayctl.cli import build_parser
    from gatewayctl.target import LOCAL_STATE, load_local

    args = build_parser().parse_args(["local", "up", "--detach", *flags])
    with contextlib.redirect_stdout(io.StringIO()):  # its how-to-call text; the demo shows what it does
        code = args.func(args)
    if code != 0 or not LOCAL_STATE.exists():  # `local up` stops a stack interrupted while starting
        raise CommandError(f"`gatewayctl local up` did not leave a stack running (exit {code})")
    return load_local().local


def _local_down() -> None:
    from gatewayctl.cli import build_parser

    args = build_parser().parse_args(["local", "down"])
    with contextlib.redirect_stdout(io.StringIO()):
        args.func(args)
