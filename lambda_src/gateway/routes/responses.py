"""Responses whose end waits for the request's end (settlement and the outcome record).

The client gets its bytes first; the response ENDS only after `on_done`: in Lambda the environment
may freeze once the response ends, which would lose work left running after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse

from gateway.domain.failover import aclose_quietly

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always reports its end, even when the client left before the first byte.

    However the response ends (done, client gone, cancelled), the relay is closed now, so its own
    clean-up runs at once rather than whenever the generator is collected, and then `on_done` runs
    once, which cleans up a relay that never started.
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
    """A whole JSON reply whose response ends only after `on_done`: the complete body goes out first,
    with its content-length, and the empty last chunk that ends the response follows `on_done`."""

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
