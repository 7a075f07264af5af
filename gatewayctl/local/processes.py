"""Child processes of the local stack: start them in their own process group, wait until they
answer, and stop them so that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gatewayctl.output import CommandError


def ensure_port_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers use it: a port in TIME_WAIT after `local down` is free to them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise CommandError(
                f"port {port} ({what}) is already in use on {host}; stop what uses it "
                f"or choose another port (see `gatewayctl local up --help`)"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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


@dataclass
class Child:
    name: str
    pid: int
    log: str


def spawn(name: str, args: list[str], *, env: Mapping[str, str], log_dir: Path) -> Child:
    """Start `python <args>` in a new session (its own process group), output to a log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name=name, pid=proc.pid, log=str(log_path))


def wait_http(url: str, child: Child, *, timeout: float = 30.0, expect_any_status: bool = True) -> None:
    """Wait until `url` answers over HTTP (any status when expect_any_status), or fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(child.pid):
            raise CommandError(f"{child.name} exited during start-up; its log:\n{tail(child.log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            if expect_any_status:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise CommandError(
        f"{child.name} did not answer at {url} within {timeout:.0f}s; its log:\n{tail(child.log)}"
    )


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False  # our own child, now reaped
    except ChildProcessError:
        pass  # not our child (started by another gatewayctl): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is still there after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie group leader still "exists" until reaped; treat zombies as gone.
    stat = Path(f"/proc/{pgid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return _other_members(pgid)
    return True


def _other_members(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pgid:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
