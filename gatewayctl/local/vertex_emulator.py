"""A Vertex AI emulator for Claude: rawPredict and streamRawPredict, plus Google's STS token exchange.

- POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict answers the
  Anthropic Messages API JSON; :streamRawPredict answers SSE exactly as the Anthropic API streams
  (event: <type> / data: <json>, with a ping after message_start). Bodies must carry
  anthropic_version vertex-2023-10-16 and max_tokens, and no `model` (it is in the URL); wrong-typed
  fields and refused beta flags are 400s (rules.py, with sources).
- POST /v1/token is https://sts.googleapis.com/v1/token: it takes the AWS-signed GetCallerIdentity
  request that google.auth.aws builds as a subject token (Workload Identity Federation with AWS as
  the identity provider), checks its shape (SigV4 Authorization header, the audience as
  x-goog-cloud-target-resource), and mints an opaque access token. rawPredict demands one of the
  tokens it minted as `Authorization: Bearer` (401 UNAUTHENTICATED otherwise).
- Faults and request counts per Vertex region (the {r} of the URL), controlled like the Bedrock
  emulator's (see faults.py).
- GET /v1/publishers/anthropic/models/{m} is Model Garden's publisher-model get (what `gatewayctl models
  check` asks): the PublisherModel of a catalog model with a Vertex id (the id without its `@version`
  names it too), 404 NOT_FOUND otherwise, with the same bearer token. The region is in the real host
  name only, so the emulator answers alike for every region; `POST /_emulator/catalog {"hide_model": m}`
  makes it answer 404 for one model (`DELETE /_emulator/catalog` clears that).

`vertex_wif_config(url, project)` builds the external-account JSON that points google.auth at this
emulator. google.auth.aws reads the AWS keys from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
(/AWS_SESSION_TOKEN) and the region from AWS_REGION or AWS_DEFAULT_REGION, so with those set it
never calls the EC2 metadata server; the regional_cred_verification_url is only signed into the
subject token, never called.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import urllib.parse
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gatewayctl.local import rules
from gatewayctl.local.faults import Decision, Fault, FaultBoard, drop, hang, json_or_none, stream_fault, with_connection
from gatewayctl.local.replies import catalog_entry, known_model, make_reply, sse_events

VERTEX_VERSION = "vertex-2023-10-16"
SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
WIF_POOL = "claude-gateway"
WIF_PROVIDER = "aws"

_GOOGLE_STATUS = {
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    413: "request_too_large",
    500: "api_error",
    529: "overloaded_error",
}


def wif_audience(project_number: str) -> str:
    return (
        f"//iam.googleapis.com/projects/{project_number}/locations/global/"
        f"workloadIdentityPools/{WIF_POOL}/providers/{WIF_PROVIDER}"
    )


def vertex_wif_config(
    emulator_url: str, project: str, *, project_number: str = "123456789012"
) -> dict[str, Any]:
    """An external-account config (as `gcloud iam workload-identity-pools create-cred-config --aws`
    writes it) whose token_url is the emulator's STS, with no service account impersonation."""
    return {
        "type": "external_account",
        "audience": wif_audience(project_number),
        "subject_token_type": SUBJECT_TOKEN_TYPE,
        "token_url": f"{emulator_url.rstrip('/')}/v1/token",
        "credential_source": {
            "environment_id": "aws1",
            "regional_cred_verification_url": (
                "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
            ),
        },
        "universe_domain": "googleapis.com",
        "quota_project_id": project,
    }


def google_error(status: int, message: str) -> Response:
    return JSONResponse(
        {"error": {"code": status, "message": message, "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}},
        status_code=status,
    )


def anthropic_error(status: int, message: str, error_type: str | None = None) -> Response:
    error_type = error_type or _ANTHROPIC_TYPES.get(status, "api_error")
    return JSONResponse(
        {"type": "error", "error": {"type": error_type, "message": message}},
        status_code=status,
        headers={"request-id": "req_vrtx_" + uuid.uuid4().hex[:20]},
    )


def fault_response(fault: Fault) -> Response:
    status = fault.status or 500
    if status in _GOOGLE_STATUS:
        return google_error(status, f"Injected fault: HTTP {status}")
    return anthropic_error(status, f"Injected fault: HTTP {status}", fault.error_type)


class VertexEmulator:
    def __init__(self, board: FaultBoard | None = None, *, token_ttl_seconds: int = 3600) -> None:
        self.board = board or FaultBoard()
        self.token_ttl_seconds = token_ttl_seconds
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self._lock = threading.Lock()
        self.exchanges = 0
        base = "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model_op}"
        self.hidden_models: set[str] = set()
        self.app = with_connection(
            Starlette(
                routes=[
                    Route("/v1/token", self.token, methods=["POST"]),
                    Route(base, self.predict, methods=["POST"]),
                    Route("/v1/publishers/anthropic/models/{model}", self.publisher_model, methods=["GET"]),
                    Route("/_emulator/catalog", self.catalog_switches, methods=["GET", "POST", "DELETE"]),
                    *self.board.control_routes(),
                ]
            )
        )

    def mint(self) -> tuple[str, int]:
        token = "ya29.emu-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl_seconds
            self.exchanges += 1
        return token, self.token_ttl_seconds

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.time()

    async def token(self, request: Request) -> Response:
        form = urllib.parse.parse_qs((await request.body()).decode())
        field = {k: v[0] for k, v in form.items()}
        if field.get("grant_type") != TOKEN_EXCHANGE_GRANT:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if field.get("subject_token_type") != SUBJECT_TOKEN_TYPE:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "bad subject_token_type"}, 400
            )
        audience = field.get("audience", "")
        try:
            signed = json.loads(urllib.parse.unquote(field.get("subject_token", "")))
            headers = {h["key"].lower(): h["value"] for h in signed["headers"]}
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "malformed subject token"}, 400
            )
        authorization = headers.get("authorization", "")
        if (
            not authorization.startswith("AWS4-HMAC-SHA256 ")
            or "/sts/aws4_request" not in authorization
            or "Action=GetCallerIdentity" not in signed.get("url", "")
            or headers.get("x-goog-cloud-target-resource") != audience
            or not audience.startswith("//iam.googleapis.com/")
        ):
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "The subject token is not a signed AWS request",
                },
                400,
            )
        token, ttl = self.mint()
        return JSONResponse(
            {
                "access_token": token,
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": ttl,
            }
        )

    async def publisher_model(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or not self.token_valid(bearer[7:].strip()):
            return google_error(401, "Request had invalid authentication credentials.")
        model = request.path_params["model"]
        entry = catalog_entry(model)
        if entry is None or not entry.vertex_model_id or model in self.hidden_models:
            return google_error(404, f"Publisher Model `publishers/anthropic/models/{model}` not found.")
        base, _, version = entry.vertex_model_id.partition("@")
        return JSONResponse(
            {
                "name": f"publishers/anthropic/models/{base}",
                "versionId": version or "001",
                "openSourceCategory": "PROPRIETARY",
                "launchStage": "GA",
            }
        )

    async def catalog_switches(self, request: Request) -> Response:
        if request.method == "POST":
            change = await request.json()
            if not isinstance(change, dict) or not isinstance(change.get("hide_model"), str):
                return JSONResponse({"error": 'expected {"hide_model": "<model id>"}'}, status_code=400)
            self.hidden_models.add(change["hide_model"])
        elif request.method == "DELETE":
            self.hidden_models.clear()
        return JSONResponse({"hidden_models": sorted(self.hidden_models)})

    async def predict(self, request: Request) -> Response:
        model, _, operation = request.path_params["model_op"].rpartition(":")
        if operation not in ("rawPredict", "streamRawPredict"):
            return google_error(404, f"Unknown operation {operation!r}")
        region = request.path_params["region"]
        bearer = request.headers.get("authorization", "")
        if not bearer.startswith("Bearer ") or not self.token_valid(bearer[7:].strip()):
            return google_error(401, "Request had invalid authentication credentials.")
        raw = await request.body()
        decision = self.board.record(
            region,
            operation,
            {
                "model_id": model,
                "project": request.path_params["project"],
                "bytes": len(raw),
                "body": json_or_none(raw),
            },
        )
        failure = await _apply(request, decision, streaming=operation == "streamRawPredict")
        if failure is not None:
            return failure
        body, error = _validate(raw, model, request.headers)
        if error is not None:
            return error
        reply = make_reply(body, len(raw), model)
        if operation == "rawPredict":
            return JSONResponse(reply.message(), headers={"request-id": "req_vrtx_" + uuid.uuid4().hex[:20]})
        return StreamingResponse(
            sse_events(reply, stream_fault(decision)),
            media_type="text/event-stream",
            headers={"request-id": "req_vrtx_" + uuid.uuid4().hex[:20], "cache-control": "no-cache"},
        )


async def _apply(request: Request, decision: Decision, *, streaming: bool) -> Response | None:
    if decision.latency_ms:
        await asyncio.sleep(decision.latency_ms / 1000)
    fault = decision.fault
    if fault is None:
        return None
    if fault.kind == "disconnect":
        await drop(request)
        return anthropic_error(500, "Injected fault: disconnected")  # not sent: the connection is gone
    if fault.kind == "timeout" or (fault.kind == "stall" and not streaming):
        await hang(request, fault.hang_seconds)
        return google_error(504, "Deadline exceeded")
    if fault.kind == "error":
        return fault_response(fault)
    if fault.kind == "midstream" and not streaming:
        return anthropic_error(500, "Injected fault: internal error")
    return None


def _validate(raw: bytes, model: str, headers: Any) -> tuple[dict[str, Any], Response | None]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}, anthropic_error(400, "The request body is not valid JSON.")
    if not isinstance(body, dict):
        return {}, anthropic_error(400, "The request body must be a JSON object.")
    if "model" in body:
        return body, anthropic_error(400, "model: Extra inputs are not permitted")
    for key in ("anthropic_version", "max_tokens", "messages"):
        if key not in body:
            return body, anthropic_error(400, f"{key}: Field required")
    # vertex-2023-10-16 is the documented value (https://platform.claude.com/docs/ko/build-with-claude/claude-on-vertex-ai);
    # whether Vertex refuses SDK 2.14's default 2026-10-21 is unverified: the emulator refuses it.
    if body["anthropic_version"] != VERTEX_VERSION:
        return body, anthropic_error(400, f"anthropic_version: must be {VERTEX_VERSION!r}")
    if isinstance(body["max_tokens"], bool) or not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return body, anthropic_error(400, "max_tokens: must be a positive integer")
    wrong = rules.wrong_field(body, style="anthropic")
    if wrong is not None:
        return body, anthropic_error(400, wrong)
    if not known_model(model):
        return body, google_error(404, f"Publisher Model `{model}` not found.")
    # The SDK sends betas as the anthropic-beta header, the gateway as the body's anthropic_beta: both count.
    flags = [*rules.beta_list(headers.get("anthropic-beta")), *(body.get("anthropic_beta") or [])]
    flag = rules.refused_beta("vertex", flags, model)
    if flag is not None:
        # The Claude API's words (https://docs.anthropic.com/en/api/beta-headers); Vertex's are unverified.
        return body, anthropic_error(400, f"Unsupported beta header: {flag}")
    return body, None
