"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.domain.gateway import Gateway
from gateway.domain.request import parse_beta_header
from gateway.domain.request_end import RequestEnd
from gateway.routes import read_body, serve
from gateway.routes.responses import SSE_HEADERS, FinishingResponse, RelayResponse


async def create_message(request: Request) -> Response:
    async def work(gateway: Gateway, end: RequestEnd) -> Response:
        raw = await read_body(request, gateway.max_body_bytes)
        reply = await gateway.messages(end, raw, parse_beta_header(request.headers.get("anthropic-beta")))
        if reply.stream is not None:
            headers = {**SSE_HEADERS, **reply.headers}
            return RelayResponse(reply.stream, on_done=end.finish, media_type="text/event-stream", headers=headers)
        return FinishingResponse(reply.body, on_done=end.finish, media_type="application/json", headers=reply.headers)

    return await serve(request, work, calls_model=True)


async def count_tokens(request: Request) -> Response:
    async def work(gateway: Gateway, end: RequestEnd) -> Response:
        reply = await gateway.count_tokens(end, await read_body(request, gateway.max_body_bytes))
        return Response(reply.body, media_type="application/json", headers=reply.headers)

    return await serve(request, work, calls_model=False)
