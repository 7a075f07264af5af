"""Amazon Bedrock as an upstream: InvokeModel and InvokeModelWithResponseStream on botocore.

Raw passthrough: the caller's body goes out with `model` and `stream` removed and `anthropic_version`
set to bedrock-2023-05-31 (anthropic-beta values become `anthropic_beta`); the response body comes back
unchanged, and each stream chunk's `bytes` is one Anthropic event, re-emitted as is. SDK retries are
off: the failover loop owns retries and the time budget. botocore is blocking, so calls run on a
dedicated thread pool (the default executor has only cpu+4 threads) and stream events cross to the
event loop as they arrive, in batches of what arrived together (BedrockEvents), so nothing is held back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.adapters import aws
from gateway.domain.catalog import CatalogEntry
from gateway.domain.errors import ERROR_TYPE_BY_STATUS
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY, UpstreamFailure, possibly_billed, timed_out
from gateway.domain.sse import event_type
from gateway.settings import Settings

BEDROCK_VERSION = "bedrock-2023-05-31"
EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="upstream")

# Bedrock's exception names (stream events use a lower-case first letter) -> (failover kind, status).
_ERRORS = {
    "ThrottlingException": (NEXT, 429),
    "ModelNotReadyException": (NEXT, 429),
    "ServiceUnavailableException": (NEXT, 503),
    "InternalServerException": (NEXT, 500),
    "ModelTimeoutException": (NEXT, 408),
    "ModelErrorException": (RETRY, 424),
    "ModelStreamErrorException": (RETRY, 424),
    "ValidationException": (CLIENT, 400),
    "ServiceQuotaExceededException": (CLIENT, 400),
    "AccessDeniedException": (MISCONFIG, 403),
    "ResourceNotFoundException": (MISCONFIG, 404),
}


def bedrock_body(body: dict[str, Any], beta: tuple[str, ...]) -> bytes:
    out = {k: v for k, v in body.items() if k not in ("model", "stream")}
    out["anthropic_version"] = BEDROCK_VERSION
    if beta:
        existing = out.get("anthropic_beta") if isinstance(out.get("anthropic_beta"), list) else []
        out["anthropic_beta"] = [*existing, *(b for b in beta if b not in existing)]
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


def classify(exc: BaseException) -> UpstreamFailure:
    """Map a botocore exception to the failover loop's terms."""
    from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

    if isinstance(exc, UpstreamFailure):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        code = code[:1].upper() + code[1:]
        message = str(error.get("Message") or exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        kind, default_status = _ERRORS.get(code, (None, None))
        status = int(status or default_status or 500)
        if kind is None:
            kind = CLIENT if 400 <= status < 500 and status not in (408, 429) else NEXT
        error_type = "overloaded_error" if status == 529 else ERROR_TYPE_BY_STATUS.get(status, "api_error")
        return UpstreamFailure(kind, status, error_type, message, code=code or f"HTTP{status}")
    if isinstance(exc, BotoCoreError):
        # Connection refused/reset, read/connect timeouts: the region is unreachable for now. A read
        # timeout came after the request was sent: Bedrock may still run it.
        return UpstreamFailure(
            NEXT,
            502,
            "api_error",
            str(exc),
            code=type(exc).__name__,
            possibly_billed=isinstance(exc, ReadTimeoutError),
        )
    return UpstreamFailure(NEXT, 502, "api_error", repr(exc), code=type(exc).__name__)


class BedrockUpstream:
    provider = "bedrock"
    wire = "bedrock-invoke"

    def __init__(self, settings: Settings, region: str, *, client: Any = None) -> None:
        self.region = region
        self.endpoint_url = settings.bedrock_endpoints.get(region)
        self.read_timeout = min(settings.upstream_timeout_seconds, 900.0)
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = aws.client(
                        "bedrock-runtime",
                        self.region,
                        endpoint_url=self.endpoint_url,
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=self.read_timeout,
                        tcp_keepalive=True,
                    )
        return self._client

    def warm(self) -> None:
        """Build the client now (at startup, in a thread) rather than on the first request."""
        _ = self.client

    def model_id(self, entry: CatalogEntry, residency: str) -> str | None:
        # Models without an ARN-versioned id are served by the Messages-API endpoint (messages_api.py).
        if entry.bedrock_api != "invoke":
            return None
        return entry.bedrock_profiles.get(residency)

    async def invoke(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> bytes:
        payload = bedrock_body(body, beta)
        loop = asyncio.get_running_loop()
        try:
            call = loop.run_in_executor(EXECUTOR, self._invoke, model_id, payload)
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            # The thread goes on with the call: Bedrock may answer (and bill) after we stopped waiting.
            raise timed_out("Bedrock did not answer in time") from None

    def _invoke(self, model_id: str, payload: bytes) -> bytes:
        try:
            response = self.client.invoke_model(
                modelId=model_id, body=payload, contentType="application/json", accept="application/json"
            )
            return response["body"].read()
        except Exception as exc:
            raise classify(exc) from None

    def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> BedrockEvents:
        return BedrockEvents(self, model_id, bedrock_body(body, beta), timeout)


class BedrockEvents:
    """The events of one InvokeModelWithResponseStream, as an async iterator.

    A pump thread reads the blocking botocore stream and hands events to the event loop in batches: one
    wake-up of the loop for whatever arrived while it was busy, not one per event. `ready()` says how
    many events are in hand, so the relay can send them in one write (the first event still goes at once).
    The call starts on the first `__anext__`; `aclose()` stops the pump.
    """

    def __init__(self, upstream: BedrockUpstream, model_id: str, payload: bytes, timeout: float) -> None:
        self._upstream = upstream
        self._model_id = model_id
        self._payload = payload
        self._timeout = timeout
        self._items: deque[tuple[str, Any]] = deque()  # the loop's: ("event", (type, data)), then "end"/"error"
        self._pending: list[tuple[str, Any]] = []  # the pump's, under the lock, until the loop takes them
        self._lock = threading.Lock()
        self._scheduled = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadline = 0.0
        self._stop = False
        self._done = False
        self._body: Any = None

    def __aiter__(self) -> BedrockEvents:
        return self

    def ready(self) -> int:
        """Events in hand: `__anext__` returns that many without waiting."""
        n = len(self._items)
        return n - 1 if n and self._items[-1][0] != "event" else n

    async def __anext__(self) -> tuple[str, bytes]:
        if self._done:
            raise StopAsyncIteration
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._deadline = self._loop.time() + self._timeout
            self._loop.run_in_executor(EXECUTOR, self._pump)
        if not self._items:
            await self._wait()
        kind, value = self._items.popleft()
        if kind == "event":
            return value
        self._finish()
        if kind == "end":
            raise StopAsyncIteration
        raise value

    async def aclose(self) -> None:
        # The consumer stopped (done, failed over, or the client went away): stop the pump thread.
        self._finish()

    async def _wait(self) -> None:
        assert self._loop is not None
        self._waiter = self._loop.create_future()
        try:
            async with asyncio.timeout_at(self._deadline):
                await self._waiter
        except TimeoutError:
            self._finish()
            raise timed_out("the Bedrock stream timed out") from None
        finally:
            self._waiter = None

    def _finish(self) -> None:
        self._done = True
        self._stop = True
        _close(self._body)

    # -- the pump thread ---------------------------------------------------------------------------

    def _pump(self) -> None:
        accepted = False
        try:
            response = self._upstream.client.invoke_model_with_response_stream(
                modelId=self._model_id, body=self._payload, contentType="application/json", accept="application/json"
            )
            accepted = True
            self._body = response["body"]
            for batch in _event_batches(self._body):
                if self._stop:
                    break
                self._put(batch)
            self._put([("end", None)])
        except Exception as exc:
            failure = classify(exc)
            self._put([("error", possibly_billed(failure) if accepted else failure)])
        finally:
            _close(self._body)

    def _put(self, items: list[tuple[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(items)
            if self._scheduled:  # the loop has not taken the last ones yet: they go together
                return
            self._scheduled = True
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed (shutdown): nobody is waiting
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
            self._scheduled = False
        self._items.extend(items)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


_OPERATION = "InvokeModelWithResponseStream"


def _event_batches(body: Any) -> Iterator[list[tuple[str, Any]]]:
    """The chunks' Anthropic events, one list per read from the connection.

    The connection's bytes go through botocore's own event-stream decoder (EventStreamBuffer: framing
    and both CRCs) but not its shape parser, which costs more CPU per event than the rest of the relay;
    an exception message raises botocore's EventStreamError with its code and message, as botocore's
    EventStream would. Any other iterable of events (tests' fakes) is read as botocore's events are."""
    from botocore.eventstream import EventStreamBuffer

    raw = getattr(body, "_raw_stream", None)
    if raw is None:
        for event in body:
            chunk = event.get("chunk")
            if chunk is not None:
                yield [("event", (event_type(chunk["bytes"]), chunk["bytes"]))]
        return
    decoder = EventStreamBuffer()
    for data in raw.stream():
        decoder.add_data(data)
        batch: list[tuple[str, Any]] = []
        for message in decoder:
            headers = message.headers
            kind = headers.get(":message-type")
            if kind == "event":
                if headers.get(":event-type") == "chunk":
                    chunk = base64.b64decode(json.loads(message.payload)["bytes"])
                    batch.append(("event", (event_type(chunk), chunk)))
                continue
            if batch:  # what came before the failure is relayed first
                yield batch
            raise _stream_error(kind, headers, message.payload)
        if batch:
            yield batch


def _stream_error(kind: Any, headers: dict[str, str], payload: bytes) -> Exception:
    from botocore.exceptions import EventStreamError

    if kind == "exception":
        code = headers.get(":exception-type", "")
        try:
            parsed = json.loads(payload) if payload else {}
        except ValueError:
            parsed = {}
        message = str(parsed.get("message") or parsed.get("Message") or "") if isinstance(parsed, dict) else ""
    else:  # "error"
        code, message = headers.get(":error-code", ""), headers.get(":error-message", "")
    return EventStreamError({"Error": {"Code": code, "Message": message}}, _OPERATION)


def _close(stream: Any) -> None:
    if stream is not None:
        # close() alone does not wake the pump thread blocked reading a silent upstream: it would hold
        # the connection (and a thread) until the read timeout. Shutting the socket's read side does
        # (urllib3 2.3+ HTTPResponse.shutdown).
        with contextlib.suppress(Exception):
            stream._raw_stream.shutdown()
        with contextlib.suppress(Exception):  # best effort; the connection is discarded anyway
            stream.close()
