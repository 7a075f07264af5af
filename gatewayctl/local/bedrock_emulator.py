"""A Bedrock Runtime emulator on loopback: its two ways to Claude, with the same faults for both.

- InvokeModel and InvokeModelWithResponseStream (`/model/{id}/invoke[-with-response-stream]`): the wire
  protocol botocore's bedrock-runtime client expects: JSON errors with x-amzn-ErrorType, and for
  streams the binary event-stream with `chunk` events whose payload is {"bytes": base64(one Anthropic
  streaming event)} and modelled exceptions as `:message-type exception` events.
- The Messages-API endpoint (`POST /anthropic/v1/messages`, as on bedrock-runtime): `model` in the
  body, `anthropic-version` and `anthropic-beta` headers, SSE streams, errors in the Anthropic shape
  `{"type":"error","error":{...}}` (what Bedrock answers there, per
  https://github.com/anthropics/claude-code/issues/49648).

One emulator serves several regions, one listening port per region (the region is the port the
request came in on), so "one endpoint per region" needs no DNS tricks. Requests must carry a SigV4
Authorization header scoped to this region and service `bedrock` (403 otherwise); the Messages-API
endpoint also takes a Bedrock API key as a bearer token (AWS's Messages API page lists both). What
each API refuses with a 400, and the source of each rule, is in rules.py and docs/local-stack.md.
Unknown fields are ignored. Faults come from the FaultBoard (see faults.py), one target per region,
for both APIs. The control plane's model listings (ListFoundationModels, ListInferenceProfiles) are served
on the same region ports by bedrock_control_plane.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatewayctl.local import eventstream, rules
from gatewayctl.local.bedrock_control_plane import ControlPlane
from gatewayctl.local.faults import Decision, Fault, FaultBoard, drop, hang, json_or_none, stream_fault, with_connection
from gatewayctl.local.replies import Reply, catalog_entry, known_model, make_reply, sse_events

BEDROCK_VERSION = rules.BEDROCK_VERSION

# HTTP status -> Bedrock's exception name (botocore maps it to the modelled error).
ERROR_NAMES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
ERROR_MESSAGES = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "InternalServerException": "The server encountered an internal error.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
    "ModelErrorException": "The model returned an error.",
    "ModelNotReadyException": "Model is not ready to serve inference requests.",
    "ServiceQuotaExceededException": "Your request exceeded the service quota.",
}


class BedrockError(Exception):
    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name, self.message = status, name, message

    def response(self) -> Response:
        return JSONResponse(
            {"message": self.message},
            status_code=self.status,
            headers={
                "x-amzn-ErrorType": f"{self.name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "x-amzn-RequestId": str(uuid.uuid4()),
            },
        )


def fault_error(fault: Fault) -> BedrockError:
    status = fault.status or 500
    name = fault.error_type or ERROR_NAMES.get(status, "InternalServerException")
    return BedrockError(status, name, ERROR_MESSAGES.get(name, f"Injected fault: HTTP {status}"))


def check_sigv4(request: Request, region: str, *, bearer_ok: bool = False) -> None:
    auth = request.headers.get("authorization", "")
    if bearer_ok and auth.startswith("Bearer ") and auth[7:].strip():
        return  # a Bedrock API key (the emulator takes any)
    if not auth:
        raise BedrockError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    if not auth.startswith("AWS4-HMAC-SHA256 ") or "Credential=" not in auth:
        raise BedrockError(403, "IncompleteSignatureException", "Authorization header requires SigV4.")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
    if len(scope) != 5 or scope[2] != region or scope[3] != "bedrock":
        raise BedrockError(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to {region} and service 'bedrock'; got {'/'.join(scope[1:])}",
        )


def validate_body(raw: bytes, model_id: str) -> dict[str, Any]:
    """InvokeModel's body rules (rules.py has the sources); the first broken one is a ValidationException."""

    def invalid(detail: str) -> BedrockError:
        return BedrockError(
            400,
            "ValidationException",
            f"Malformed input request: {detail}, please reformat your input and try again.",
        )

    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("#: expected a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("#: expected type: JSONObject")
    # The model is the path's {modelId} and the operation chooses streaming: the SDK removes both from
    # the body (anthropic lib/bedrock/_client.py); whether Bedrock refuses them is unverified.
    for key in ("model", "stream"):
        if key in body:
            raise invalid(f"#: extraneous key [{key}] is not permitted")
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            raise invalid(f"#: required key [{key}] not found")
    version = body["anthropic_version"]
    if version != BEDROCK_VERSION and not (version == rules.SDK_VERSION and not rules.ARN_VERSIONED.search(model_id)):
        raise BedrockError(400, "ValidationException", "invalid anthropic version")
    wrong = rules.wrong_field(body, style="bedrock")
    if wrong is not None:
        raise invalid(wrong)
    entry = catalog_entry(model_id)
    if entry is None:
        raise BedrockError(400, "ValidationException", "The provided model identifier is invalid.")
    if entry.bedrock_api == "messages":
        # Anthropic documents InvokeModel for "Opus 4.6 and earlier" (claude-on-amazon-bedrock-legacy.md);
        # a base id of such a model is refused on-demand (https://qiita.com/k5ki/items/7c4f4567043482bb4521).
        raise BedrockError(
            400,
            "ValidationException",
            f"Invocation of model ID {model_id} with InvokeModel isn't supported. "
            "Use the Messages API (/anthropic/v1/messages) for this model.",
        )
    flag = rules.refused_beta("bedrock-invoke", body.get("anthropic_beta") or [], model_id)
    if flag is not None:
        raise BedrockError(400, "ValidationException", "invalid beta flag")
    return body


class MessagesError(Exception):
    """An answer of the Messages-API endpoint, in the Anthropic error shape."""

    # HTTP status -> Anthropic error type. Bedrock's own mapping of throttling, access and availability
    # errors on this endpoint is unverified: these are the Claude API's types for each status.
    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        408: "timeout_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.error_type = error_type or self.TYPES.get(status, "api_error")

    def response(self) -> Response:
        return JSONResponse(
            {"type": "error", "error": {"type": self.error_type, "message": self.message}},
            status_code=self.status,
            headers={"x-amzn-RequestId": str(uuid.uuid4())},
        )


def validate_messages(raw: bytes, headers: Any) -> tuple[dict[str, Any], str]:
    """The Messages-API endpoint's rules (rules.py has the sources): (body, model id) or MessagesError."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise MessagesError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise MessagesError(400, "The request body must be a JSON object.")
    version = headers.get("anthropic-version")
    if not version:
        raise MessagesError(400, "anthropic-version: header is required")
    if version not in rules.MESSAGES_VERSIONS:
        raise MessagesError(400, f"anthropic-version: {version!r} is not a supported API version")
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise MessagesError(400, "model: Field required")
    if rules.ARN_VERSIONED.search(model_id):
        # ARN-versioned ids belong to the InvokeModel/Converse integration (claude-on-amazon-bedrock-legacy.md).
        raise MessagesError(
            400, f"model: {model_id} is an ARN-versioned model id; this endpoint serves the Messages-API models"
        )
    for key in ("max_tokens", "messages"):
        if key not in body:
            raise MessagesError(400, f"{key}: Field required")
    wrong = rules.wrong_field(body, style="anthropic")
    if wrong is not None:
        raise MessagesError(400, wrong)
    if not known_model(model_id):
        raise MessagesError(404, f"model: {model_id}")
    if rules.refused_beta("bedrock-messages", rules.beta_list(headers.get("anthropic-beta")), model_id):
        raise MessagesError(400, "invalid beta flag")
    return body, model_id


def messages_fault_error(fault: Fault) -> MessagesError:
    status = fault.status or 500
    return MessagesError(status, f"Injected fault: HTTP {status}", fault.error_type)


class BedrockEmulator:
    """The ASGI app plus its fault board; `regions_by_port` is filled in as sockets are bound."""

    def __init__(self, board: FaultBoard | None = None) -> None:
        self.board = board or FaultBoard()
        self.regions_by_port: dict[int, str] = {}
        self.control_plane = ControlPlane(self.region_of, check_sigv4, BedrockError)
        routes = [
            Route("/model/{model_id:path}/invoke", self.invoke, methods=["POST"]),
            Route("/model/{model_id:path}/invoke-with-response-stream", self.invoke_stream, methods=["POST"]),
            Route("/anthropic/v1/messages", self.messages, methods=["POST"]),
            *self.control_plane.routes(),
            *self.board.control_routes(),
        ]
        self.app = with_connection(Starlette(routes=routes))

    def region_of(self, request: Request) -> str:
        port = request.scope["server"][1]
        try:
            return self.regions_by_port[port]
        except KeyError:
            raise BedrockError(404, "UnknownOperationException", f"port {port} serves no region") from None

    async def _prepare(self, request: Request, operation: str) -> tuple[str, Reply, Decision]:
        region = self.region_of(request)
        check_sigv4(request, region)
        raw = await request.body()
        model_id = request.path_params["model_id"]
        decision = self.board.record(
            region, operation, {"model_id": model_id, "bytes": len(raw), "body": json_or_none(raw)}
        )
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        fault = decision.fault
        if fault and fault.kind == "disconnect":
            await drop(request)
            raise fault_error(Fault(kind="error", status=500))  # not sent: the connection is gone
        if fault and (fault.kind == "timeout" or (fault.kind == "stall" and operation == "invoke")):
            await hang(request, fault.hang_seconds)
        if fault and (fault.kind == "error" or (fault.kind == "midstream" and operation == "invoke")):
            raise fault_error(fault if fault.kind == "error" else Fault(kind="error", status=500))
        body = validate_body(raw, model_id)
        return region, make_reply(body, len(raw), model_id), decision

    async def invoke(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            _, reply, _ = await self._prepare(request, "invoke")
        except BedrockError as exc:
            return exc.response()
        return JSONResponse(
            reply.message(),
            headers={
                "x-amzn-RequestId": str(uuid.uuid4()),
                "X-Amzn-Bedrock-Input-Token-Count": str(reply.input_tokens),
                "X-Amzn-Bedrock-Output-Token-Count": str(reply.output_tokens),
                "X-Amzn-Bedrock-Invocation-Latency": str(int((time.monotonic() - started) * 1000)),
            },
        )

    async def invoke_stream(self, request: Request) -> Response:
        started = time.monotonic()
        try:
            _, reply, decision = await self._prepare(request, "invoke_stream")
        except BedrockError as exc:
            return exc.response()
        return StreamingResponse(
            _stream(reply, stream_fault(decision), started),
            media_type="application/vnd.amazon.eventstream",
            headers={
                "x-amzn-RequestId": str(uuid.uuid4()),
                "X-Amzn-Bedrock-Content-Type": "application/json",
            },
        )


    async def messages(self, request: Request) -> Response:
        """POST /anthropic/v1/messages: a whole message, or SSE when the body says `stream: true`."""
        try:
            region = self.region_of(request)
            check_sigv4(request, region, bearer_ok=True)
        except BedrockError as exc:
            return MessagesError(exc.status, exc.message, "permission_error").response()
        raw = await request.body()
        loose = json_or_none(raw)
        streaming = isinstance(loose, dict) and loose.get("stream") is True
        model = loose.get("model") if isinstance(loose, dict) else None
        operation = "messages_stream" if streaming else "messages"
        summary = {
            "model_id": model,
            "bytes": len(raw),
            "body": loose,
            "headers": {k: request.headers[k] for k in ("anthropic-version", "anthropic-beta") if k in request.headers},
        }
        decision = self.board.record(region, operation, summary)
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        fault = decision.fault
        try:
            if fault and fault.kind == "disconnect":
                await drop(request)
                raise messages_fault_error(Fault(kind="error", status=500))  # not sent: the connection is gone
            if fault and (fault.kind == "timeout" or (fault.kind == "stall" and not streaming)):
                await hang(request, fault.hang_seconds)
            if fault and (fault.kind == "error" or (fault.kind == "midstream" and not streaming)):
                raise messages_fault_error(fault if fault.kind == "error" else Fault(kind="error", status=500))
            body, model_id = validate_messages(raw, request.headers)
        except MessagesError as exc:
            return exc.response()
        reply = make_reply({k: v for k, v in body.items() if k != "model"}, len(raw), model_id)
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        if not streaming:
            return JSONResponse(reply.message(), headers=headers)
        return StreamingResponse(
            sse_events(reply, stream_fault(decision)),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )


async def _stream(reply: Reply, fault: Fault | None, started: float) -> AsyncIterator[bytes]:
    events = reply.events()
    first_byte_ms = int((time.monotonic() - started) * 1000)
    for n, event in enumerate(events):
        if fault is not None and n >= fault.after_events and fault.kind == "stall":
            await asyncio.sleep(fault.hang_seconds)
            return
        if fault is not None and n >= fault.after_events:
            name = fault.error_type or "modelStreamErrorException"
            extra = (
                {"originalStatusCode": 500, "originalMessage": "injected"}
                if name == "modelStreamErrorException"
                else {}
            )
            yield eventstream.exception_event(name, f"Injected mid-stream {name} after {n} events", **extra)
            return
        if event["type"] == "message_stop":
            event = {
                **event,
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": reply.input_tokens,
                    "outputTokenCount": reply.output_tokens,
                    "invocationLatency": int((time.monotonic() - started) * 1000),
                    "firstByteLatency": first_byte_ms,
                },
            }
        yield eventstream.chunk_event(event)
        await asyncio.sleep(0)
