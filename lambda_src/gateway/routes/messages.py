"""POST /v1/messages and POST /v1/messages/count_tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.domain.failover import aclose_quietly
from gateway.domain.pipeline import MessagesPipeline
from gateway.domain.request import parse_beta_header
from gateway.models.exchange import Exchange
from gateway.routes import caller_identity, new_exchange, read_body

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always reports its end, even when the client left before the first byte.

    However the response ends (done, client gone, cancelled), the relay is closed now, so its own
    clean-up (settlement, outcome record) runs at once rather than whenever the generator is collected,
    and then `on_done` runs once, which cleans up a relay that never started. Both run before the
    response ends: the relay awaits its clean-up before its last frame is followed by the end.
    """

    def __init__(self, *args: Any, on_done: Callable[[], Awaitable[None]] | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_done = on_done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await aclose_quietly(self.body_iterator)
                finally:
                    on_done, self.on_done = self.on_done, None
                    if on_done is not None:
                        await on_done()


class FinishingResponse(Response):
    """A whole JSON reply whose response ends only after `on_done` (settlement and outcome record).

    The complete body goes out first, with its content-length, so the client has its answer at once;
    the empty last chunk that ends the response follows `on_done`. In Lambda the environment may
    freeze once the response ends, which would lose work left running after it.
    """

    def __init__(self, *args: Any, on_done: Callable[[], Awaitable[None]] | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_done = on_done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.body, "more_body": True})
        finally:
            on_done, self.on_done = self.on_done, None
            if on_done is not None:
                with anyio.CancelScope(shield=True):
                    await on_done()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _pipeline(request: Request) -> MessagesPipeline:
    return request.app.state.pipeline


async def _begin(request: Request, *, calls_model: bool) -> tuple[MessagesPipeline, Exchange, bytes]:
    """The pipeline, a new exchange with the caller's identity, and the body (a bad body is answered)."""
    pipeline = _pipeline(request)
    exchange = new_exchange(request)
    # Without an identity there is no one to audit: the 401 is the authorizer's answer.
    exchange.identity = caller_identity(request.scope)
    try:
        return pipeline, exchange, await read_body(request, pipeline.max_body_bytes)
    except Exception as exc:
        answer = pipeline.reject if calls_model else pipeline.refuse
        raise await answer(exchange, exc) from None


async def create_message(request: Request) -> Response:
    pipeline, exchange, raw = await _begin(request, calls_model=True)
    reply = await pipeline.messages(exchange, raw, parse_beta_header(request.headers.get("anthropic-beta")))
    if reply.stream is not None:
        return RelayResponse(
            reply.stream,
            on_done=reply.on_done,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **reply.headers},
        )
    return FinishingResponse(
        reply.body, on_done=reply.on_done, media_type="application/json", headers=reply.headers
    )


async def count_tokens(request: Request) -> Response:
    pipeline, exchange, raw = await _begin(request, calls_model=False)
    reply = await pipeline.count_tokens(exchange, raw)
    return Response(reply.body, media_type="application/json", headers=reply.headers)
