"""A fault proxy between the gateway and the moto server, for AWS's JSON protocol (DynamoDB, Kinesis).

The gateway's DynamoDB and Kinesis clients are pointed at it; everything else talks to moto directly.
It reads each HTTP/1.1 request, names it by its `X-Amz-Target` (`DynamoDB_20120810.TransactWriteItems`,
`Kinesis_20131202.PutRecord`), and applies the first matching rule, else forwards it. Faults happen on
the wire, so they reach whatever client the gateway uses (botocore's retries included) as AWS's would:

- `lose`: forward (the write commits), then drop the connection without an answer;
- `late`: forward (the write commits), then hold the answer until the client gives up (its read timeout);
- `timeout`: send nothing on and answer nothing, until the client gives up;
- `throttle`: answer the service's throttling error, not forwarded;
- `error`: answer a 500 (InternalServerError, InternalFailure), not forwarded;
- `blackhole`: Kinesis PutRecord answered as accepted, and dropped.

A rule applies to the next `count` matching requests (None: until cleared); `match(body)` narrows it by
the request's JSON (say, only the outcome records of one tenant). Tests use it in process:
`proxy.add(Rule("DynamoDB", "TransactWriteItems", "lose", count=1))`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

KINDS = ("lose", "late", "timeout", "throttle", "error", "blackhole")
THROTTLING = {
    "DynamoDB": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
    "Kinesis": "ProvisionedThroughputExceededException",
}
INTERNAL = {"DynamoDB": "com.amazonaws.dynamodb.v20120810#InternalServerError", "Kinesis": "InternalFailure"}
HANG_SECONDS = 60.0  # a `timeout` or `late` waits at most this long for the client to give up


@dataclass
class Rule:
    service: str  # "DynamoDB" or "Kinesis": the X-Amz-Target's prefix before "_"
    operation: str | tuple[str, ...] | None  # "TransactWriteItems", ("UpdateItem", "PutItem"); None: any
    kind: str
    count: int | None = 1
    match: Callable[[dict[str, Any]], bool] | None = None
    applied: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")


@dataclass
class Seen:
    service: str
    operation: str
    body: dict[str, Any]
    fault: str | None


@dataclass
class FaultProxy:
    upstream: str  # the moto server
    host: str = "127.0.0.1"
    rules: list[Rule] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)  # (service, operation) -> requests seen
    log: list[Seen] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    # -- control ------------------------------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.calls.clear()
            self.log.clear()

    def _decide(self, service: str, operation: str, body: dict[str, Any]) -> Rule | None:
        with self._lock:
            self.calls[(service, operation)] += 1
            for rule in self.rules:
                if rule.service != service or not _names(rule.operation, operation):
                    continue
                if rule.match is not None and not rule.match(body):
                    continue
                rule.applied += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self.rules.remove(rule)
                self.log.append(Seen(service, operation, body, rule.kind))
                return rule
            self.log.append(Seen(service, operation, body, None))
            return None

    # -- start and stop -----------------------------------------------------------------------------

    def start(self) -> str:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._client = httpx.AsyncClient(base_url=self.upstream, timeout=30)
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, 0))
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://{self.host}:{port}"
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="aws-fault-proxy", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self.url

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in self._connections.values():  # the gateway's kept-alive connections end
                writer.transport.abort()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            await self._client.aclose()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()
        self._loop = None

    # -- the wire -----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                target = headers.get("x-amz-target", "")
                service, _, operation = target.partition(".")
                service = service.split("_")[0]
                try:
                    parsed = json.loads(body) if body else {}
                except ValueError:
                    parsed = {}
                rule = self._decide(service, operation, parsed) if target else None
                kind = rule.kind if rule else None
                if kind == "timeout":
                    await _until_closed(reader)
                    return
                if kind in ("throttle", "error"):
                    code = (THROTTLING if kind == "throttle" else INTERNAL)[service]
                    status = 400 if kind == "throttle" else 500
                    await _answer(writer, status, {"__type": code, "message": f"Injected fault: {kind}"})
                    continue
                if kind == "blackhole":
                    await _answer(writer, 200, {"ShardId": "shardId-000000000000", "SequenceNumber": "9" * 56})
                    continue
                response = await self._client.request(method, path, headers=_forwardable(headers), content=body)
                if kind == "lose":
                    writer.transport.abort()  # committed, and the answer never arrives
                    return
                if kind == "late":
                    await _until_closed(reader)  # committed, and the answer comes after the client gave up
                    return
                await _answer(writer, response.status_code, response.content, response.headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.pop(task, None)
            if not writer.is_closing():
                writer.close()


def _names(wanted: str | tuple[str, ...] | None, operation: str) -> bool:
    return wanted is None or operation == wanted or (isinstance(wanted, tuple) and operation in wanted)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def _forwardable(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in ("content-length", "connection", "transfer-encoding")}


async def _answer(writer: asyncio.StreamWriter, status: int, body: Any, headers: Any = None) -> None:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers = {"content-type": "application/x-amz-json-1.0"}
    lines = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}"]
    for name, value in (headers or {}).items():
        if name.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
            lines.append(f"{name}: {value}")
    lines += [f"content-length: {len(body)}", "connection: keep-alive", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1") + body)
    await writer.drain()


async def _until_closed(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(TimeoutError, ConnectionError):
        await asyncio.wait_for(reader.read(), HANG_SECONDS)


def put_record_data(body: dict[str, Any]) -> dict[str, Any]:
    """The audit record a Kinesis PutRecord carries ({} if it is not one): for `Rule.match`."""
    try:
        return json.loads(base64.b64decode(body.get("Data", "")))
    except ValueError:
        return {}
