"""A Bedrock Runtime emulator: InvokeModel and InvokeModelWithResponseStream on loopback.

Speaks the wire protocol botocore's bedrock-runtime client expects: JSON errors with
x-amzn-ErrorType, and for streams the binary event-stream with `chunk` events whose payload is
{"bytes": base64(one Anthropic streaming event)} and modelled exceptions as `:message-type
exception` events. One emulator serves several regions, one listening port per region (the
region is the port the request came in on), so "one endpoint per region" needs no DNS tricks.

Bedrock's checks that the gateway relies on are reproduced: a SigV4 Authorization header scoped
to this region and service `bedrock` (403 otherwise); a body with `anthropic_version`
(bedrock-2023-05-31), `max_tokens` and `messages` and no `model` field (400 ValidationException,
with Bedrock's messages). Unknown fields are ignored. Faults come from the FaultBoard
(see faults.py), one target per region.
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

from gatewayctl.local import eventstream
from gatewayctl.local.faults import Decision, Fault, FaultBoard, hang, json_or_none, stream_fault
from gatewayctl.local.replies import Reply, known_model, make_reply

BEDROCK_VERSION = "bedrock-2023-05-31"

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


def check_sigv4(request: Request, region: str) -> None:
    auth = request.headers.get("authorization", "")
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
    if "model" in body:
        raise invalid("#: extraneous key [model] is not permitted")
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            raise invalid(f"#: required key [{key}] not found")
    if body["anthropic_version"] != BEDROCK_VERSION:
        raise BedrockError(400, "ValidationException", "invalid anthropic version")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise invalid("#/max_tokens: expected minimum: 1")
    if not isinstance(body["messages"], list) or not body["messages"]:
        raise invalid("#/messages: expected minimum item count: 1")
    if not known_model(model_id):
        raise BedrockError(400, "ValidationException", "The provided model identifier is invalid.")
    return body


class BedrockEmulator:
    """The ASGI app plus its fault board; `regions_by_port` is filled in as sockets are bound."""

    def __init__(self, board: FaultBoard | None = None) -> None:
        self.board = board or FaultBoard()
        self.regions_by_port: dict[int, str] = {}
        routes = [
            Route("/model/{model_id:path}/invoke", self.invoke, methods=["POST"]),
            Route("/model/{model_id:path}/invoke-with-response-stream", self.invoke_stream, methods=["POST"]),
            *self.board.control_routes(),
        ]
        self.app = Starlette(routes=routes)

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
