"""Amazon Bedrock as an upstream: InvokeModel and InvokeModelWithResponseStream on botocore.

Raw passthrough: the caller's body goes out with `model` and `stream` removed and `anthropic_version`
set to bedrock-2023-05-31 (anthropic-beta values become `anthropic_beta`); the response body comes back
unchanged, and each stream chunk's `bytes` is one Anthropic event, re-emitted as is. SDK retries are
off: the failover loop owns retries and the time budget. Calls are awaited on the event loop
(aws_loop.call: botocore builds, signs and parses, no thread hop), and a stream's events are decoded as
its bytes arrive, in batches of what arrived together (BedrockEvents), so nothing is held back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.adapters import aws
from gateway.adapters.aws_loop import call
from gateway.domain.catalog import CatalogEntry
from gateway.domain.errors import ERROR_TYPE_BY_STATUS
from gateway.domain.failover import CLIENT, MISCONFIG, NEXT, RETRY, UpstreamFailure, possibly_billed, timed_out
from gateway.domain.sse import event_type
from gateway.settings import Settings

BEDROCK_VERSION = "bedrock-2023-05-31"
# Reads of a stream that botocore's own HTTP session answered (a proxy is configured), or a fake's: they block.
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
        try:
            async with asyncio.timeout(timeout):
                response = await call(
                    self.client,
                    "invoke_model",
                    modelId=model_id,
                    body=payload,
                    contentType="application/json",
                    accept="application/json",
                )
                return response["body"].read()
        except TimeoutError:
            # The request was sent: Bedrock may answer (and bill) after we stopped waiting.
            raise timed_out("Bedrock did not answer in time") from None
        except Exception as exc:
            raise classify(exc) from None

    def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> BedrockEvents:
        return BedrockEvents(self, model_id, bedrock_body(body, beta), timeout)


class BedrockEvents:
    """The events of one InvokeModelWithResponseStream, as an async iterator.

    The call starts on the first `__anext__`; each read of the answer's body is decoded at once, and its
    events are in hand together: `ready()` says how many, so the relay can send them in one write (the
    first event still goes at once). An exception message in the stream is raised after the events that
    came before it. The whole stream has `timeout` from its start; `aclose()` closes the connection.
    """

    def __init__(self, upstream: BedrockUpstream, model_id: str, payload: bytes, timeout: float) -> None:
        self._upstream = upstream
        self._model_id = model_id
        self._payload = payload
        self._timeout = timeout
        self._items: deque[tuple[str, bytes]] = deque()
        self._error: Exception | None = None  # raised once the events before it are taken
        self._ended = False
        self._deadline: float | None = None
        self._body: Any = None
        self._reads: AsyncIterator[list[tuple[str, bytes]]] | None = None

    def __aiter__(self) -> BedrockEvents:
        return self

    def ready(self) -> int:
        """Events in hand: `__anext__` returns that many without waiting."""
        return len(self._items)

    async def __anext__(self) -> tuple[str, bytes]:
        while not self._items:
            if self._error is not None:
                error, self._error = self._error, None
                self._finish()
                raise error
            if self._ended:
                raise StopAsyncIteration
            await self._read()
        return self._items.popleft()

    async def aclose(self) -> None:
        # The consumer stopped (done, failed over, or the client went away): close the connection.
        self._finish()

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout
        accepted = self._reads is not None
        try:
            async with asyncio.timeout_at(self._deadline):
                if self._reads is None:
                    response = await call(
                        self._upstream.client,
                        "invoke_model_with_response_stream",
                        modelId=self._model_id,
                        body=self._payload,
                        contentType="application/json",
                        accept="application/json",
                    )
                    self._body = response["body"]
                    self._reads = _event_batches(self._body)
                    accepted = True
                batch = await anext(self._reads, None)
        except TimeoutError:
            self._finish()
            raise timed_out("the Bedrock stream timed out") from None
        except _EventsThenError as failed:
            self._items.extend(failed.events)
            self._error = self._failure(failed.error, accepted)
            return
        except Exception as exc:
            self._finish()
            raise self._failure(exc, accepted) from None
        if batch is None:
            self._ended = True
            self._finish()
        else:
            self._items.extend(batch)

    @staticmethod
    def _failure(exc: BaseException, accepted: bool) -> UpstreamFailure:
        failure = classify(exc)
        return possibly_billed(failure) if accepted else failure

    def _finish(self) -> None:
        self._ended = True
        body, self._body = self._body, None
        _close(body)


class _EventsThenError(Exception):
    """A read whose events came before a failure: the events are relayed first, then the failure."""

    def __init__(self, events: list[tuple[str, bytes]], error: Exception) -> None:
        super().__init__(repr(error))
        self.events = events
        self.error = error


_OPERATION = "InvokeModelWithResponseStream"


async def _event_batches(body: Any) -> AsyncIterator[list[tuple[str, bytes]]]:
    """The chunks' Anthropic events, one list per read from the connection.

    The connection's bytes go through botocore's own event-stream decoder (EventStreamBuffer: framing
    and both CRCs) but not its shape parser, which costs more CPU per event than the rest of the relay;
    an exception message raises botocore's EventStreamError with its code and message, as botocore's
    EventStream would (after the events before it, as _EventsThenError). Any other iterable of events
    (tests' fakes) is read as botocore's events are."""
    from botocore.eventstream import EventStreamBuffer

    raw = getattr(body, "_raw_stream", None)
    if raw is None:
        async for event in _blocking(iter(body)):
            chunk = event.get("chunk")
            if chunk is not None:
                yield [(event_type(chunk["bytes"]), chunk["bytes"])]
        return
    decoder = EventStreamBuffer()
    reads = raw if hasattr(raw, "__aiter__") else _blocking(iter(raw.stream()))
    async for data in reads:
        yield decode(decoder, data)


def decode(decoder: Any, data: bytes) -> list[tuple[str, bytes]]:
    """The events `data` completes (with what `decoder` holds from before); an exception message raises
    botocore's EventStreamError, inside _EventsThenError when events came before it."""
    decoder.add_data(data)
    batch: list[tuple[str, bytes]] = []
    for message in decoder:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            if headers.get(":event-type") == "chunk":
                chunk = base64.b64decode(json.loads(message.payload)["bytes"])
                batch.append((event_type(chunk), chunk))
            continue
        error = _stream_error(kind, headers, message.payload)
        if batch:  # what came before the failure is relayed first
            raise _EventsThenError(batch, error)
        raise error
    return batch


async def _blocking(items: Iterator[Any]) -> AsyncIterator[Any]:
    """A blocking iterator's items, each read on a thread (botocore's own HTTP session's answer, a fake)."""
    loop = asyncio.get_running_loop()
    end = object()
    while (item := await loop.run_in_executor(EXECUTOR, next, items, end)) is not end:
        yield item


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
        raw = getattr(stream, "_raw_stream", None)
        # close() alone does not wake a thread blocked reading a silent upstream through botocore's own
        # session: it would hold the connection (and a thread) until the read timeout. Shutting the
        # socket's read side does (urllib3 2.3+ HTTPResponse.shutdown). The loop's own stream just closes.
        with contextlib.suppress(Exception):
            raw.shutdown()
        with contextlib.suppress(Exception):  # best effort; the connection is discarded anyway
            stream.close()
