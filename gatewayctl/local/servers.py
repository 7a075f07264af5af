"""Serve an ASGI app from a thread on sockets bound beforehand (so the ports are known and free).

The local stack and the test harness run every HTTP part in one process this way: binding first
(port 0 = ephemeral) removes the race between "pick a free port" and "listen on it".
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from gatewayctl.output import CommandError


def bind(port: int = 0, host: str = "127.0.0.1", *, what: str = "server") -> socket.socket:
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when proto is TCP;
    # without it uvicorn's separate header/body writes meet delayed ACKs (~40 ms per response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise CommandError(
            f"port {port} ({what}) is already in use on {host}; stop what uses it "
            f"or choose another port (see `gatewayctl local up --help`)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


class ThreadedServer:
    """uvicorn.Server in a daemon thread with its own event loop."""

    def __init__(
        self, app: Any, sockets: list[socket.socket], *, name: str, log_level: str = "warning"
    ) -> None:
        self.name = name
        self.sockets = sockets
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
            # API Gateway sets the source IP from the connection; uvicorn would otherwise take a client's
            # own X-Forwarded-For from loopback and the audit trail would record what the client chose.
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{name}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=self.sockets))
        except BaseException as exc:  # noqa: BLE001 - surfaced by start()
            self.error = exc

    def start(self, timeout: float = 20.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise CommandError(f"{self.name} failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise CommandError(f"{self.name} did not start within {timeout:.0f}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)
        for sock in self.sockets:
            sock.close()
