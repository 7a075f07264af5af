"""HTTP only: read the request (claims, body), call the domain, render. `serve` is the one path of every
gateway route: a RequestEnd per request, the caller's identity, the work, and every error answered in
the Anthropic shape by that RequestEnd (which audits it and releases what it holds).

The caller's identity comes from the API Gateway request context that the Lambda Web Adapter passes as
JSON in `x-amzn-request-context` (the local authorizer builds the same header): the Cognito authorizer's
claims are at ["authorizer"]["claims"], the request id at ["requestId"], the source IP at
["identity"]["sourceIp"].
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway.domain.errors import AuthenticationError, ClientGoneError, RequestTooLargeError
from gateway.domain.gateway import Gateway
from gateway.domain.request_end import RequestEnd
from gateway.models.exchange import CallerIdentity, RequestMeta
from gateway.routes.responses import FinishingResponse

CONTEXT_HEADER = "x-amzn-request-context"


def request_context(scope: dict[str, Any]) -> dict[str, Any]:
    """The parsed request context (cached in the scope); {} when absent or unreadable."""
    state = scope.setdefault("state", {})
    if "gateway_context" not in state:
        # The Lambda Web Adapter replaces any client-sent copy of this header (HeaderMap::insert) and the
        # local authorizer strips it; more than one copy means something upstream is wrong: trust none.
        values = [value for name, value in scope.get("headers", ()) if name == b"x-amzn-request-context"]
        try:
            context = json.loads(values[0]) if len(values) == 1 else {}
        except ValueError:
            context = {}
        state["gateway_context"] = context if isinstance(context, dict) else {}
    return state["gateway_context"]


def request_id(scope: dict[str, Any]) -> str:
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        rid = request_context(scope).get("requestId")
        state["request_id"] = rid if isinstance(rid, str) and rid else str(uuid.uuid4())
    return state["request_id"]


def caller_identity(scope: dict[str, Any]) -> CallerIdentity:
    authorizer = request_context(scope).get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    if not isinstance(claims, dict) or not claims.get("sub"):
        # API Gateway's authorizer rejects these first; the app fails closed all the same.
        raise AuthenticationError("missing or invalid authorizer claims")
    claims = {str(k): str(v) for k, v in claims.items()}
    client_id = claims.get("client_id") or claims.get("aud") or ""
    # Client-credentials tokens have sub == client id and no username: a machine caller.
    machine = bool(client_id) and claims["sub"] == client_id
    return CallerIdentity(
        principal_id=client_id if machine else claims["sub"],
        kind="client" if machine else "user",
        client_id=client_id,
        scopes=frozenset(claims.get("scope", "").split()),
        claims=claims,
    )


def request_meta(request: Request) -> RequestMeta:
    identity = request_context(request.scope).get("identity")
    source_ip = identity.get("sourceIp", "") if isinstance(identity, dict) else ""
    if not source_ip and request.client:
        source_ip = request.client.host
    return RequestMeta(
        request_id=request_id(request.scope),
        source_ip=str(source_ip),
        user_agent=request.headers.get("user-agent", ""),
    )


async def serve(
    request: Request,
    work: Callable[[Gateway, RequestEnd], Awaitable[Response]],
    *,
    calls_model: bool,
) -> Response:
    gateway: Gateway = request.app.state.gateway
    end = gateway.begin(request_meta(request), calls_model=calls_model)
    try:
        # Without an identity there is no one to audit: the 401 is the authorizer's answer.
        end.exchange.identity = caller_identity(request.scope)
        await gateway.resolve(end)
        return await work(gateway, end)
    except Exception as exc:
        error = end.failed(exc)
        # Like a whole reply: status and body first, then the record and release, then the end.
        return FinishingResponse(
            error.body_bytes(),
            status_code=error.status,
            headers={k.lower(): str(v) for k, v in error.headers.items()},
            media_type="application/json",
            on_done=end.finish if end.records else None,
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGoneError("the client left while sending the request body") from None
    return b"".join(chunks)
