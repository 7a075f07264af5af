"""Amazon Bedrock as an upstream: InvokeModel and InvokeModelWithResponseStream on botocore.

Raw passthrough: the caller's body goes out with `model` and `stream` removed and `anthropic_version`
set to bedrock-2023-05-31 (anthropic-beta values become `anthropic_beta`); the response body comes back
unchanged, and each stream chunk's `bytes` is one Anthropic event, re-emitted as is. SDK retries are
off: the failover loop owns retries and the time budget. botocore is blocking, so calls run on a
dedicated thread pool (the default executor has only cpu+4 threads) and stream events cross to the
event loop through a queue, one by one, so nothing is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
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

    async def stream(
        self, model_id: str, body: dict[str, Any], *, beta: tuple[str, ...], timeout: float
    ) -> AsyncIterator[tuple[str, bytes]]:
        payload = bedrock_body(body, beta)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        state: dict[str, Any] = {"stop": False, "stream": None}

        def put(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            accepted = False
            try:
                response = self.client.invoke_model_with_response_stream(
                    modelId=model_id, body=payload, contentType="application/json", accept="application/json"
                )
                accepted = True
                state["stream"] = response["body"]
                for event in response["body"]:
                    if state["stop"]:
                        break
                    chunk = event.get("chunk")
                    if chunk is not None:
                        put(("event", chunk["bytes"]))
                put(("end", None))
            except Exception as exc:
                failure = classify(exc)
                put(("error", possibly_billed(failure) if accepted else failure))
            finally:
                _close(state.get("stream"))

        loop.run_in_executor(EXECUTOR, pump)
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    kind, value = await asyncio.wait_for(queue.get(), max(remaining, 0.001))
                except TimeoutError:
                    raise timed_out("the Bedrock stream timed out") from None
                if kind == "event":
                    yield event_type(value), value
                elif kind == "end":
                    return
                else:
                    raise value
        finally:
            # The consumer stopped (done, failed over, or the client went away): stop the pump thread.
            state["stop"] = True
            _close(state.get("stream"))


def _close(stream: Any) -> None:
    if stream is not None:
        # close() alone does not wake the pump thread blocked reading a silent upstream: it would hold
        # the connection (and a thread) until the read timeout. Shutting the socket's read side does
        # (urllib3 2.3+ HTTPResponse.shutdown).
        with contextlib.suppress(Exception):
            stream._raw_stream.shutdown()
        with contextlib.suppress(Exception):  # best effort; the connection is discarded anyway
            stream.close()
