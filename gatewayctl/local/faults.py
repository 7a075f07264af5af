"""Fault injection and request counting for the emulators, controlled at run time over HTTP.

A fault applies to one target (a Bedrock region, a Vertex region): either to the next `count`
requests or, with count null, until cleared. Kinds:

- `error`: answer with `status` (and the provider's error type for it, or `error_type`);
  `throttle` is `error` with status 429.
- `timeout`: hang before answering (until the client goes away, or `hang_seconds`).
- `midstream`: stream `after_events` events, then a stream error (`error_type`, e.g.
  modelStreamErrorException); for non-streaming requests it acts like a 500.
- `stall`: stream `after_events` events, then send nothing more for `hang_seconds` and close
  the stream unfinished (a stalled upstream); for non-streaming requests it acts like `timeout`.
- `disconnect`: close the connection without an answer (reset): the client sees a connection error.
- `latency`: add `latency_ms` before answering; it stacks with the other kinds.

Control API (on the emulator's control port, JSON):
  GET    /_emulator/faults                  all active faults
  POST   /_emulator/faults/{target}         add one: {"kind": "throttle", "count": 2}
  DELETE /_emulator/faults[/{target}]       clear all, or one target's
  GET    /_emulator/requests                counts per target, and the recent requests
  DELETE /_emulator/requests                reset counts
Every request that reaches a target is counted, faulted or not: "never an upstream call" is a
count of zero.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

KINDS = ("error", "throttle", "timeout", "midstream", "stall", "disconnect", "latency")
STREAM_KINDS = ("midstream", "stall")  # faults that act inside a stream


@dataclass
class Fault:
    kind: str
    count: int | None = None  # None: until cleared
    status: int | None = None
    error_type: str | None = None
    after_events: int = 2
    latency_ms: int = 0
    hang_seconds: float = 300.0
    id: int = 0

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Fault:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        count = data.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer or null (until cleared)")
        status = data.get("status")
        if kind == "throttle":
            kind, status = "error", 429
        if kind == "error" and not isinstance(status, int):
            raise ValueError("an error fault needs an integer status")
        return cls(
            kind=kind,
            count=count,
            status=status,
            error_type=data.get("error_type"),
            after_events=int(data.get("after_events", 2)),
            latency_ms=int(data.get("latency_ms", 0)),
            hang_seconds=float(data.get("hang_seconds", 300.0)),
        )


@dataclass
class Decision:
    """What to do with one request: delay it, then maybe fail it."""

    latency_ms: int = 0
    fault: Fault | None = None


@dataclass
class FaultBoard:
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=50))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add(self, target: str, fault: Fault) -> Fault:
        with self._lock:
            fault.id = next(self._ids)
            self.faults.setdefault(target, []).append(fault)
        return fault

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self.faults.clear()
            else:
                self.faults.pop(target, None)

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.recent.clear()

    def record(self, target: str, operation: str, summary: dict[str, Any]) -> Decision:
        """Count a request and decide its fate; consumes one use of the first failing fault."""
        with self._lock:
            per_target = self.counts.setdefault(target, {"total": 0})
            per_target["total"] += 1
            per_target[operation] = per_target.get(operation, 0) + 1
            self.recent.append({"target": target, "operation": operation, **summary})
            decision = Decision()
            active = self.faults.get(target, [])
            for fault in list(active):
                if fault.kind == "latency":
                    decision.latency_ms += fault.latency_ms
                elif decision.fault is None:
                    decision.fault = fault
                    decision.latency_ms += fault.latency_ms
                else:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        active.remove(fault)
            return decision

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": {t: dict(c) for t, c in self.counts.items()},
                "recent": list(self.recent),
            }

    def faults_snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {t: [asdict(f) for f in fs] for t, fs in self.faults.items() if fs}

    def control_routes(self) -> list[Route]:
        async def list_faults(request: Request) -> JSONResponse:
            return JSONResponse(self.faults_snapshot())

        async def add_fault(request: Request) -> JSONResponse:
            try:
                fault = Fault.parse(await request.json())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(asdict(self.add(request.path_params["target"], fault)), status_code=201)

        async def clear_faults(request: Request) -> JSONResponse:
            self.clear(request.path_params.get("target"))
            return JSONResponse(self.faults_snapshot())

        async def requests(request: Request) -> JSONResponse:
            if request.method == "DELETE":
                self.reset_counts()
            return JSONResponse(self.snapshot())

        return [
            Route("/_emulator/faults", list_faults, methods=["GET"]),
            Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
            Route("/_emulator/faults/{target}", add_fault, methods=["POST"]),
            Route("/_emulator/faults/{target}", clear_faults, methods=["DELETE"]),
            Route("/_emulator/requests", requests, methods=["GET", "DELETE"]),
        ]


def with_connection(app: Any) -> Any:
    """The emulator's ASGI app, with each request's connection (uvicorn's transport, which `send` is bound to)
    in its scope, so that a `disconnect` fault can drop it."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT] = getattr(getattr(send, "__self__", None), "transport", None)
        await app(scope, receive, send)

    return asgi


TRANSPORT = "emulator.transport"


async def drop(request: Request) -> None:
    """A `disconnect` fault: reset the connection, no answer; returns once the server has seen it go (whatever
    the caller answers then is not sent)."""
    transport = request.scope.get(TRANSPORT)
    if transport is None:
        raise RuntimeError("a disconnect fault needs the app served through faults.with_connection under uvicorn")
    transport.abort()
    await hang(request, 10.0)


async def hang(request: Request, seconds: float) -> None:
    """A `timeout` fault: answer nothing until the client gives up (or `seconds` pass)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


def json_or_none(raw: bytes) -> Any:
    """The body as JSON for the recent-requests log; None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def stream_fault(decision: Decision) -> Fault | None:
    """The fault to apply inside a stream, if this request got one."""
    fault = decision.fault
    return fault if fault is not None and fault.kind in STREAM_KINDS else None
