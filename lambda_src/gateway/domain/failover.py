"""The upstream chain and its failover policy (docs/ARCHITECTURE.md, Failover).

For a residency the chain is: the Bedrock regions in settings order, then Vertex when the residency has
a Vertex region. Every try is recorded in `exchange.attempts`. The gateway's loop owns the time budget
(SDK retries are off): each try gets what is left of `upstream_timeout_seconds`.

- NEXT (429 throttling, model not ready, 500, 503, 529, connection error, timeout): next upstream,
  and the failure counts on that upstream's breaker.
- RETRY (424 model error, a stream that fails before its first event): once more on the same
  upstream, then the next.
- CLIENT (400 validation, service quota exceeded): no failover; the caller's error is passed on.
- MISCONFIG (403 access denied, 404 resource not found): not retried; alarm metric; next upstream.

403/404 are the deployment's fault (model access not granted, wrong profile id in one region), not the
caller's, so the caller is served elsewhere if possible and the alarm tells the operator.
Errors after the first byte reached the client are not failed over: the route ends the stream with an
Anthropic `error` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.domain import betas
from gateway.domain.breaker import Breakers, breaker_key
from gateway.domain.errors import ApiError, NotFoundError, OverloadedError, UpstreamError
from gateway.domain.ports import Metrics, Upstream
from gateway.models.catalog import CatalogEntry
from gateway.models.exchange import Attempt, Exchange

NEXT, RETRY, CLIENT, MISCONFIG = "next", "retry", "client", "misconfig"
# Output pace below which a non-streaming try is presumed stuck (Claude models produce tens of tokens/s).
SLOWEST_TOKENS_PER_SECOND = 10.0

T = TypeVar("T")


class UpstreamFailure(Exception):
    """An upstream answer that is not a success, classified for the failover loop."""

    def __init__(
        self,
        kind: str,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str = "",
        possibly_billed: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code or error_type
        # The upstream had the request and may have run it (and billed it) without answering us.
        self.possibly_billed = possibly_billed


def timed_out(message: str, *, possibly_billed: bool = True) -> UpstreamFailure:
    """A try that ran out of time: the region may be stuck, so the next one is tried. It had the
    request (unless the connection was never made), so it may still run and bill it."""
    return UpstreamFailure(NEXT, 504, "api_error", message, code="Timeout", possibly_billed=possibly_billed)


def possibly_billed(failure: UpstreamFailure) -> UpstreamFailure:
    """The same failure, marked: it came after the upstream accepted the request."""
    failure.possibly_billed = True
    return failure


@dataclass
class OpenedStream:
    upstream: Upstream
    first: tuple[str, bytes]
    rest: AsyncIterator[tuple[str, bytes]]


class FailoverChain:
    def __init__(
        self,
        upstreams: Mapping[str, Sequence[Upstream]],
        breakers: Breakers,
        metrics: Metrics,
        *,
        timeout_seconds: float,
        first_event_timeout_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = upstreams
        self.breakers = breakers
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds
        # A stream's first event (message_start) comes within seconds of a healthy upstream; waiting
        # longer than this for it would spend the whole budget on one stuck region.
        self.first_event_timeout_seconds = first_event_timeout_seconds
        self.clock = clock

    def all_upstreams(self) -> list[Upstream]:
        seen: dict[int, Upstream] = {}
        for chain in self.upstreams.values():
            for up in chain:
                seen.setdefault(id(up), up)
        return list(seen.values())

    def candidates(self, entry: CatalogEntry, residency: str) -> list[tuple[Upstream, str]]:
        chain = [
            (up, mid) for up in self.upstreams.get(residency, ()) if (mid := up.model_id(entry, residency))
        ]
        if not chain:
            # Policy should have refused this already; answer as for a model that does not exist here.
            raise NotFoundError(f"model {entry.alias} is not available in data residency {residency!r}")
        self.breakers.maybe_refresh(breaker_key(up.provider, up.region, mid) for up, mid in chain)
        open_skipped = [c for c in chain if self.breakers.allows(breaker_key(c[0].provider, c[0].region, c[1]))]
        # Every breaker open: try them all anyway rather than refuse; one may have recovered.
        return open_skipped or chain

    async def invoke(
        self,
        exchange: Exchange,
        entry: CatalogEntry,
        residency: str,
        body: dict[str, Any],
        beta: tuple[str, ...],
    ) -> tuple[Upstream, bytes]:
        # A whole response comes back only when it is finished, so a stuck region is told from a long
        # answer by time alone: every try but the last gets what max_tokens could need at a slow pace.
        max_tokens = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else 4096
        patience = self.first_event_timeout_seconds + max_tokens / SLOWEST_TOKENS_PER_SECOND

        async def call(
            up: Upstream, model_id: str, remaining: float, last: bool, flags: tuple[str, ...]
        ) -> tuple[Upstream, bytes]:
            timeout = remaining if last else min(remaining, patience)
            return up, await up.invoke(model_id, body, beta=flags, timeout=timeout)

        return await self._run(exchange, entry, residency, beta, call)

    async def open_stream(
        self,
        exchange: Exchange,
        entry: CatalogEntry,
        residency: str,
        body: dict[str, Any],
        beta: tuple[str, ...],
    ) -> OpenedStream:
        """Open a stream and read its first event; failover is possible until then, never after."""

        async def call(
            up: Upstream, model_id: str, remaining: float, last: bool, flags: tuple[str, ...]
        ) -> OpenedStream:
            events = up.stream(model_id, body, beta=flags, timeout=remaining)
            try:
                wait = min(remaining, self.first_event_timeout_seconds)
                first = await asyncio.wait_for(events.__anext__(), wait)
            except TimeoutError:
                await aclose_quietly(events)
                raise timed_out("no first event in time") from None
            except StopAsyncIteration:
                raise UpstreamFailure(
                    RETRY, 502, "api_error", "upstream stream ended before any event"
                ) from None
            except BaseException:
                await aclose_quietly(events)
                raise
            return OpenedStream(up, first, events)

        return await self._run(exchange, entry, residency, beta, call)

    async def _run(
        self,
        exchange: Exchange,
        entry: CatalogEntry,
        residency: str,
        beta: tuple[str, ...],
        call: Callable[[Upstream, str, float, bool, tuple[str, ...]], Awaitable[T]],
    ) -> T:
        deadline = self.clock() + self.timeout_seconds
        last: UpstreamFailure | None = None
        candidates = self.candidates(entry, residency)
        for position, (up, model_id) in enumerate(candidates):
            key = breaker_key(up.provider, up.region, model_id)
            # Flags this upstream does not accept are dropped for it (and reported), never a 400.
            flags, exchange.dropped_betas = betas.split(up.wire, beta, entry.alias)
            retried = False
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise OverloadedError("the upstream time budget ran out")
                try:
                    result = await call(up, model_id, remaining, position + 1 == len(candidates), flags)
                except UpstreamFailure as failure:
                    exchange.attempts.append(
                        Attempt(
                            up.provider,  # type: ignore[arg-type]
                            up.region,
                            model_id,
                            error=failure.code,
                            status=failure.status,
                            possibly_billed=failure.possibly_billed,
                        )
                    )
                    self.metrics.count("UpstreamErrors", provider=up.provider, region=up.region)
                    if failure.kind == CLIENT:
                        raise UpstreamError(failure.status, failure.error_type, failure.message) from None
                    if failure.kind == RETRY and not retried:
                        retried = True
                        continue
                    if failure.kind == MISCONFIG:
                        self.metrics.count("UpstreamMisconfigured", provider=up.provider, region=up.region)
                    else:
                        self.breakers.record_failure(key)
                    last = failure
                    if position + 1 < len(candidates):
                        self.metrics.count("Failovers")
                    break
                else:
                    self.breakers.record_success(key)
                    served = Attempt(up.provider, up.region, model_id)  # type: ignore[arg-type]
                    exchange.attempts.append(served)
                    exchange.served_by = served
                    return result
        assert last is not None
        if last.kind == MISCONFIG:
            raise ApiError("no upstream could serve the request (upstream access is misconfigured)")
        raise OverloadedError(f"every upstream failed; last: {last.code} ({last.status})")


async def aclose_quietly(events: AsyncIterator[Any]) -> None:
    """Close an upstream stream; a failure to close must not mask the error that made us close it."""
    close = getattr(events, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
