"""The stream relay: upstream events out to the client as SSE frames, then the request's end.

Failover is over once the first event is read (failover.open_stream); an error after that ends the
stream with an Anthropic `error` event. However the relay ends (done, upstream failed, client gone,
cancelled) it tells the RequestEnd what was seen and finishes the request before the response ends.
If the client left before the relay ever started, the RequestEnd's `before_finish` cleans up instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import anyio

from gateway.domain import pricing
from gateway.domain.failover import OpenedStream, UpstreamFailure, aclose_quietly, timed_out
from gateway.domain.request_end import RequestEnd
from gateway.domain.sse import StreamTracker, error_frame, frame
from gateway.observability import log

# Events that arrived together go out in one write, up to this many (the client still sees each as it came).
MAX_EVENTS_PER_WRITE = 256


def _none() -> int:
    return 0


class Relay:
    def __init__(self, end: RequestEnd, opened: OpenedStream, *, idle_timeout_seconds: float) -> None:
        self.end = end
        self.opened = opened
        self.idle_timeout_seconds = idle_timeout_seconds
        self.started = False
        end.before_finish = self._unsent

    async def frames(self) -> AsyncIterator[bytes]:
        if self.end.finished:  # the request ended before the relay started (client gone)
            return
        self.started = True
        self.end.before_finish = None
        tracker = StreamTracker()
        self.end.streaming()
        rest = self.opened.rest
        # Upstreams that know how many events they hold (Bedrock's) let the relay send those in one write.
        ready: Callable[[], int] = getattr(rest, "ready", None) or _none
        try:
            event, data = self.opened.first
            framed = frame(event, data)
            tracker.observe(event, data, framed)
            self.end.exchange.first_byte_at = time.time()
            yield framed  # the first event alone, at once
            while True:
                if ready():
                    event, data = await rest.__anext__()
                else:
                    try:
                        # Anthropic streams send pings; a silence this long is a stuck upstream, not a slow one.
                        async with asyncio.timeout(self.idle_timeout_seconds):
                            event, data = await rest.__anext__()
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise timed_out("the upstream stream stalled") from None
                framed = frame(event, data)
                tracker.observe(event, data, framed)
                if not ready():
                    yield framed
                    continue
                frames = [framed]
                while ready() and len(frames) < MAX_EVENTS_PER_WRITE:
                    event, data = await rest.__anext__()  # in hand: returns without waiting
                    framed = frame(event, data)
                    tracker.observe(event, data, framed)
                    frames.append(framed)
                yield b"".join(frames)
            if not tracker.completed:
                raise UpstreamFailure("next", 502, "api_error", "the upstream stream ended before message_stop")
        except Exception as exc:  # after the first byte no failover: end with an Anthropic error event
            error_type = getattr(exc, "error_type", "api_error")
            message = getattr(exc, "message", None) or "upstream error during streaming"
            self.end.stream_error(error_type)
            yield error_frame(error_type, message)
        finally:
            # Shielded: with ASGI 2.3 Starlette cancels the relay when the client leaves, and a
            # cancelled scope would cancel every await of this clean-up in turn.
            with anyio.CancelScope(shield=True):
                await self._done(tracker, sent=True)
                await self.end.finish()

    async def _unsent(self) -> None:
        """The client got nothing, but the upstream did start: its first event tells the input billed."""
        self.end.client_gone()
        tracker = StreamTracker()
        try:
            tracker.observe(*self.opened.first, b"")
        except Exception:
            log.warning("the unsent first event could not be read")
        await self._done(tracker, sent=False)

    async def _done(self, tracker: StreamTracker, *, sent: bool) -> None:
        end = self.end
        exchange = end.exchange
        try:
            await aclose_quietly(self.opened.rest)
            if sent:
                exchange.response_sha256 = tracker.sha256()
            provider = self.opened.upstream.provider
            end.served(provider, tracker.usage())
            if exchange.error_type or not tracker.completed:
                request, decision = exchange.request, exchange.decision
                assert request is not None and decision is not None
                upper = tracker.upper_bound(request.max_tokens, request.body)
                region = self.opened.upstream.region
                bound = None if upper is None else (upper, pricing.cost(end.catalog, decision, provider, upper, region))
                end.cut_short(exchange.error_type, bound)
        except Exception:  # the client has had what it had; the record and settlement still follow
            end.accounting_failed()
