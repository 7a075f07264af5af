"""The messages pipeline: the request path of DESIGN.md section 1, steps 1 to 7, over the ports.

identity (from the route) -> parse -> catalog -> tenancy.resolve -> tenancy.authorize ->
gather(quota.reserve, audit.record_request) -> failover chain -> reply (whole or streamed) ->
gather(quota.settle / quota.release, audit.record_outcome), for every request that got an identity,
whatever happened (even when the gateway's own accounting of the reply fails). That last step runs
after the client has its bytes but before the response ends (in Lambda the environment may freeze
once it ends): see finish_before_end.

Settlement fails closed: a reservation is released only when no upstream served anything and no try
may have been billed; a stream cut short settles to exact input + max_tokens when message_start
reported the input (and the request has no server tools); a served request whose usage is otherwise
unknown keeps its whole reservation.
Policy and quota refusals are `denied` records, on every route. Nothing here knows HTTP or boto.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from gateway import observability
from gateway.domain.background import Background
from gateway.domain.catalog import Catalog, CatalogEntry
from gateway.domain.errors import (
    ApiError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from gateway.domain.failover import FailoverChain, OpenedStream, UpstreamFailure, aclose_quietly, timed_out
from gateway.domain.ports import AuditSink, Quota, Reservation, Tenancy
from gateway.domain.request import parse_messages_request
from gateway.domain.sse import StreamTracker, error_frame, frame, usage_from_message
from gateway.models.exchange import Exchange, MessagesRequest, PolicyDecision, Principal, Usage
from gateway.observability import log


@dataclass
class Reply:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # a whole JSON response
    stream: AsyncIterator[bytes] | None = None  # SSE frames
    # The route awaits it once, after the client has every byte and BEFORE the response ends (in
    # Lambda the environment may freeze once it ends, and settlement + outcome record must not be lost).
    # Whole reply: account for it (hash, usage), settle and write the outcome. Stream: if the client
    # went away before the stream started, the relay's own clean-up never ran; this does it (close
    # the upstream, keep the reservation, write the outcome); otherwise nothing.
    on_done: Callable[[], Awaitable[None]] | None = None


class MessagesPipeline:
    def __init__(
        self,
        *,
        catalog: Catalog,
        tenancy: Tenancy,
        quota: Quota,
        audit: AuditSink,
        chain: FailoverChain,
        background: Background,
        max_body_bytes: int,
        stream_idle_timeout_seconds: float = 120.0,
        finish_cap_seconds: float = 10.0,
        metrics: Any = None,
    ) -> None:
        self.catalog = catalog
        self.tenancy = tenancy
        self.quota = quota
        self.audit = audit
        self.chain = chain
        self.background = background
        self.max_body_bytes = max_body_bytes
        self.stream_idle_timeout_seconds = stream_idle_timeout_seconds
        self.finish_cap_seconds = finish_cap_seconds
        self.metrics = metrics

    # -- POST /v1/messages ------------------------------------------------------------------------

    async def messages(self, exchange: Exchange, raw: bytes, beta: tuple[str, ...]) -> Reply:
        """Serve one request; on error raise a GatewayError whose headers carry the rate-limit headers."""
        reservation: Reservation | None = None  # set only once the failover chain is entered
        try:
            request = parse_messages_request(raw, max_body_bytes=self.max_body_bytes, beta=beta)
            exchange.request = request
            entry = self._entry(request)
            principal, decision = await self._authorize(exchange, request)
            reservation = await self._reserve_and_audit(exchange, principal, decision, request)
            if request.stream:
                opened = await self.chain.open_stream(
                    exchange, entry, decision.residency, decision.body, beta
                )
                started: list[bool] = []
                return Reply(
                    self.quota.headers(reservation),
                    stream=self._relay(exchange, opened, reservation, started),
                    on_done=lambda: self._unsent(exchange, opened, reservation, started),
                )
            upstream, body = await self.chain.invoke(exchange, entry, decision.residency, decision.body, beta)
        except Exception as exc:
            raise await self.reject(exchange, exc, reservation) from (
                None if isinstance(exc, GatewayError) else exc
            )
        except BaseException:  # cancelled (client gone, shutdown): still one outcome, and no lost reservation
            await self._cancelled(exchange, reservation)
            raise
        exchange.first_byte_at = time.time()

        async def account_and_finish() -> None:
            # After the client has the body: the hash and the usage parse are not on its path. A model
            # was called: whatever goes wrong here, the reservation is settled (or kept) and the
            # outcome written.
            try:
                exchange.response_sha256 = hashlib.sha256(body).hexdigest()
                usage = usage_from_message(_json_or_none(body))
                self._served(exchange, entry, decision.residency, upstream.provider, usage)
            except Exception:
                self._accounting_failed(exchange)
            await self.finish_before_end(exchange, reservation)

        return Reply(self.quota.headers(reservation), body=body, on_done=account_and_finish)

    async def _cancelled(self, exchange: Exchange, reservation: Reservation | None) -> None:
        """Record a request cancelled before its reply. Before the failover chain (`reservation` None)
        there is nothing to settle: _reserve_and_audit released what it reserved. In the chain an
        upstream may be running the current try: with possibly-billed earlier tries the settlement is
        (their count + 1) reservations' worth (_settle), else the reservation is kept whole."""
        if exchange.identity is None:
            return
        exchange.status = 499
        exchange.outcome = "error"
        exchange.error_type = "cancelled"
        if not any(attempt.possibly_billed for attempt in exchange.attempts):
            reservation = None  # kept whole
        with anyio.CancelScope(shield=True):
            await self.finish_before_end(exchange, reservation)

    # -- POST /v1/messages/count_tokens -----------------------------------------------------------

    async def count_tokens(self, exchange: Exchange, raw: bytes) -> Reply:
        """An estimate from the body. No model is called, so nothing is metered; refusals are audited."""
        try:
            request = parse_messages_request(
                raw, max_body_bytes=self.max_body_bytes, require_max_tokens=False
            )
            exchange.request = request
            self._entry(request)
            await self._authorize(exchange, request)
        except Exception as exc:
            raise await self.refuse(exchange, exc) from (None if isinstance(exc, GatewayError) else exc)
        body = json.dumps({"input_tokens": request.estimated_input_tokens}).encode()
        return Reply(self.principal_headers(exchange.principal), body=body)

    # -- steps ------------------------------------------------------------------------------------

    def _entry(self, request: MessagesRequest) -> CatalogEntry:
        entry = self.catalog.resolve(request.model)
        if entry is None:
            raise NotFoundError(f"model: {request.model}")
        cap = entry.max_output_tokens
        if cap is not None and request.max_tokens > cap:
            raise InvalidRequestError(
                f"max_tokens: {request.max_tokens} > {cap}, which is the maximum allowed number of "
                f"output tokens for {entry.alias}"
            )
        return entry

    async def _authorize(
        self, exchange: Exchange, request: MessagesRequest
    ) -> tuple[Principal, PolicyDecision]:
        assert exchange.identity is not None, "the route sets the identity before the pipeline runs"
        principal = await self.tenancy.resolve(exchange.identity)
        exchange.principal = principal
        decision = await self.tenancy.authorize(principal, request)
        exchange.decision = decision
        return principal, decision

    async def _reserve_and_audit(
        self, exchange: Exchange, principal: Principal, decision: PolicyDecision, request: MessagesRequest
    ) -> Reservation:
        # One DynamoDB transaction and one Kinesis put, concurrently: the only work before the model.
        # Shielded: cancelled meanwhile, the reservation may still commit; wait for it and release it,
        # so no committed reservation is left without an owner.
        both = asyncio.ensure_future(
            asyncio.gather(
                self.quota.reserve(principal, decision, request),
                self.audit.record_request(exchange),
                return_exceptions=True,
            )
        )
        try:
            reserved, audited = await asyncio.shield(both)
        except BaseException:
            with anyio.CancelScope(shield=True):
                reserved, _ = await both
                if not isinstance(reserved, BaseException):
                    await self._release(reserved)
            raise
        if isinstance(reserved, BaseException):
            refused = isinstance(reserved, RateLimitError) and reserved.policy_refusal
            exchange.quota_decision = "refused" if refused else "error"
            raise reserved
        exchange.quota_decision = "granted"
        if isinstance(audited, BaseException):
            await self._release(reserved)
            log.error("audit request record failed; refusing the request", exc_info=audited)
            raise ServiceUnavailableError(
                "the audit trail is unavailable; the request was not sent to a model"
            )
        return reserved

    def _served(
        self, exchange: Exchange, entry: CatalogEntry, residency: str, provider: str, usage: Usage | None
    ) -> None:
        """`usage` None: the reply reported none the gateway can read (settlement keeps the reservation)."""
        exchange.status = 200
        exchange.outcome = "response"
        exchange.usage = usage
        exchange.cost_usd = None
        if usage is not None:
            exchange.cost_usd = self._cost(entry, residency, provider, usage)

    def _cost(self, entry: CatalogEntry, residency: str, provider: str, usage: Usage) -> float:
        return entry.cost_usd(
            residency,
            provider,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens,
            cache_write_tokens=usage.cache_creation_input_tokens,
            geo_uplift=self.catalog.geo_uplift,
        )

    def _accounting_failed(self, exchange: Exchange) -> None:
        """The reply went (or goes) out but the gateway could not account for it: an `error` outcome
        with unknown usage, so settlement keeps the whole reservation."""
        log.exception("accounting of a served reply failed")
        exchange.status = 200
        exchange.outcome = "error"
        exchange.error_type = "accounting_error"
        exchange.usage = None
        exchange.cost_usd = None

    async def _unsent(
        self, exchange: Exchange, opened: OpenedStream, reservation: Reservation, started: list[bool]
    ) -> None:
        if started:
            return
        started.append(True)
        exchange.error_type = "client_disconnected"
        # The client got nothing, but the upstream did start: its first event tells the input billed.
        tracker = StreamTracker()
        try:
            tracker.observe(*opened.first, b"")
        except Exception:
            log.warning("the unsent first event could not be read")
        with anyio.CancelScope(shield=True):
            await self._relay_done(exchange, opened, reservation, tracker, sent=False)

    async def _relay(
        self, exchange: Exchange, opened: OpenedStream, reservation: Reservation, started: list[bool]
    ) -> AsyncIterator[bytes]:
        if started:  # _unsent already cleaned up
            return
        started.append(True)
        tracker = StreamTracker()
        exchange.status = 200
        try:
            event, data = opened.first
            framed = frame(event, data)
            tracker.observe(event, data, framed)
            exchange.first_byte_at = time.time()
            yield framed
            while True:
                try:
                    # Anthropic streams send pings; a silence this long is a stuck upstream, not a slow one.
                    async with asyncio.timeout(self.stream_idle_timeout_seconds):
                        event, data = await opened.rest.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise timed_out("the upstream stream stalled") from None
                framed = frame(event, data)
                tracker.observe(event, data, framed)
                yield framed
            if not tracker.completed:
                raise UpstreamFailure(
                    "next", 502, "api_error", "the upstream stream ended before message_stop"
                )
        except Exception as exc:  # after the first byte no failover: end with an Anthropic error event
            error_type = getattr(exc, "error_type", "api_error")
            message = getattr(exc, "message", None) or "upstream error during streaming"
            exchange.error_type = error_type
            yield error_frame(error_type, message)
        finally:
            # Shielded: with ASGI 2.3 Starlette cancels the relay when the client leaves, and a
            # cancelled scope would cancel every await of this clean-up in turn.
            with anyio.CancelScope(shield=True):
                await self._relay_done(exchange, opened, reservation, tracker)

    async def _relay_done(
        self,
        exchange: Exchange,
        opened: OpenedStream,
        reservation: Reservation,
        tracker: StreamTracker,
        *,
        sent: bool = True,
    ) -> None:
        decision = exchange.decision
        request = exchange.request
        assert decision is not None and request is not None
        bound: tuple[Usage, float] | None = None
        try:
            await aclose_quietly(opened.rest)
            if sent:
                exchange.response_sha256 = tracker.sha256()
            provider = opened.upstream.provider
            self._served(exchange, decision.entry, decision.residency, provider, tracker.usage())
            if exchange.error_type or not tracker.completed:
                # Cut short: the usage seen so far is not final. Settle to a bound at or above the true
                # usage (exact input from message_start, output at most max_tokens), or keep it all.
                exchange.outcome = "error"
                exchange.error_type = exchange.error_type or "client_disconnected"
                upper = tracker.upper_bound(request.max_tokens, request.body)
                if upper is not None:
                    bound = upper, self._cost(decision.entry, decision.residency, provider, upper)
        except Exception:  # the client has had what it had; the record and settlement still follow
            self._accounting_failed(exchange)
            bound = None
        # The client already has message_stop (or the error event); the response ends after this.
        await self.finish_before_end(exchange, reservation, bound)

    async def reject(
        self, exchange: Exchange, exc: BaseException, reservation: Reservation | None = None
    ) -> GatewayError:
        """Record a failed request (outcome, release + audit) and return the error to raise.

        Answered like a whole reply: the error handler sends status and body first, then awaits
        `error.on_done` (release + outcome record, see finish_before_end) before the response ends."""
        error = self._recorded(exchange, exc)
        limits = self.quota.headers(reservation) if reservation is not None else None
        error.headers = {**(limits or self.principal_headers(exchange.principal)), **error.headers}
        if exchange.identity is not None:
            error.on_done = lambda: self.finish_before_end(exchange, reservation)
        elif reservation is not None:
            error.on_done = lambda: self._release(reservation)
        return error

    async def refuse(self, exchange: Exchange, exc: BaseException) -> GatewayError:
        """A failed request that calls no model (count_tokens, /v1/models, /v1/usage): a policy refusal
        gets its `denied` record after the answer went out, before the response ends (`on_done`);
        bad input and failures are only answered."""
        error = self._recorded(exchange, exc)
        error.headers = {**self.principal_headers(exchange.principal), **error.headers}
        if exchange.outcome == "denied" and exchange.identity is not None:
            error.on_done = lambda: self.finish_before_end(exchange, None)
        return error

    async def finish_before_end(
        self, exchange: Exchange, reservation: Reservation | None, bound: tuple[Usage, float] | None = None
    ) -> None:
        """Run _finish and wait for it, cancellation-proof, so the response ends only after it.

        In Lambda the execution environment may be frozen as soon as the response ends: a task left
        running then (settlement, the outcome record) may never complete. The task is held by
        `background` (drainable at shutdown) and runs on if the waiter is cancelled anyway.
        Normally tens of milliseconds; bounded by the adapters (DynamoDB and Kinesis timeouts, the
        outcome record's budget before the dead-letter queue) and here by a cap: past
        `finish_cap_seconds` the response ends and the task is left to the background set.
        """
        task = self.background.spawn(self._finish(exchange, reservation, bound))
        with anyio.CancelScope(shield=True):
            done, _ = await asyncio.wait({task}, timeout=self.finish_cap_seconds)
        if not done:
            log.warning(
                "settlement and outcome record still running after %.1f s; the response ends without them",
                self.finish_cap_seconds,
            )
            if self.metrics is not None:
                try:
                    self.metrics.count("FinishOverrun")
                except Exception:
                    log.exception("metric failed")

    def _recorded(self, exchange: Exchange, exc: BaseException) -> GatewayError:
        error = exc if isinstance(exc, GatewayError) else ApiError("internal error")
        if not isinstance(exc, GatewayError):
            log.error("request failed", exc_info=exc)
        exchange.status = error.status
        exchange.error_type = error.error_type
        # Refusals by tenancy policy or quota are "denied"; bad input, upstream and gateway failures "error".
        exchange.outcome = "denied" if error.policy_refusal else "error"
        return error

    def principal_headers(self, principal: Principal | None) -> dict[str, str]:
        """Rate-limit headers for a response without a reservation; none before a principal is known."""
        if principal is None:
            return {}
        try:
            return self.quota.headers_for(principal)
        except Exception:  # advisory headers must never turn an answer into a 500
            log.exception("rate-limit headers failed")
            return {}

    async def _release(self, reservation: Reservation) -> None:
        try:
            await self.quota.release(reservation)
        except Exception:
            log.exception("quota release failed")

    async def _finish(
        self, exchange: Exchange, reservation: Reservation | None, bound: tuple[Usage, float] | None = None
    ) -> None:
        """Settle, keep or release the reservation, and write the outcome record, concurrently (the
        retries of one never hold up the other). Runs once the client has its reply.

        Nothing served (no upstream answered): release. Served with final, readable usage: settle to it.
        Served and cut short with the input known (`bound`: exact input from message_start, output at
        max_tokens; none when the request has server tools, whose results add input after
        message_start): settle to that bound, which is at or above the true usage whatever the
        estimate was.
        Served otherwise (no or zero usage, accounting failed): keep the whole reservation, request
        included; the counters stay above the true usage, never below.
        """
        exchange.finished_at = time.time()
        try:
            _log_exchange(exchange)
        except Exception:  # a log line must never cost the settlement or the record
            log.exception("request log line failed")
        await asyncio.gather(self._settle(exchange, reservation, bound), self._record_outcome(exchange))

    async def _settle(
        self, exchange: Exchange, reservation: Reservation | None, bound: tuple[Usage, float] | None
    ) -> None:
        try:
            if reservation is None:
                return
            usage = exchange.usage
            charge: tuple[Usage, float] | None = None  # what the served reply cost, when known
            if (
                exchange.served_by is not None
                and exchange.outcome == "response"
                and usage is not None
                and (usage.input_tokens or usage.output_tokens)
            ):
                charge = usage, exchange.cost_usd or 0.0
            elif exchange.served_by is not None:
                charge = bound
            # Tries that timed out or failed after the upstream accepted them may still be billed:
            # each adds what a reservation covers, so the counters never end below the true usage.
            billed = sum(1 for attempt in exchange.attempts if attempt.possibly_billed)
            if billed:
                # A try's input was the whole prompt: caches are per region, so what one try read from
                # or wrote to its cache, another paid as input.
                floor = 0
                if charge is not None:
                    counted = charge[0]
                    floor = counted.input_tokens + counted.cache_read_input_tokens + counted.cache_creation_input_tokens
                # One more for a try whose usage is unknown: served without it, or cancelled in flight.
                in_flight = exchange.served_by is not None or exchange.error_type == "cancelled"
                unknown = int(charge is None and in_flight)
                extra = self._reservation_equivalent(exchange, floor, billed + unknown)
                charge = extra if charge is None else _plus(charge, extra)
            if charge is not None:
                await self.quota.settle(reservation, *charge)
            elif exchange.served_by is None:
                await self.quota.release(reservation)
            else:
                log.warning("served without final usage; the quota reservation stands as charged")
        except Exception:
            log.exception("quota settlement failed")

    def _reservation_equivalent(self, exchange: Exchange, input_floor: int, times: int) -> tuple[Usage, float]:
        """`times` reservations' worth (estimated input, at least `input_floor`, plus max_tokens), priced as
        the reservation is: on the dearest upstream."""
        request, decision = exchange.request, exchange.decision
        assert request is not None and decision is not None
        one = Usage(max(request.estimated_input_tokens, input_floor), request.max_tokens, 0, 0)
        cost = self._cost(decision.entry, decision.residency, "bedrock", one)
        return Usage(one.input_tokens * times, one.output_tokens * times, 0, 0), cost * times

    async def _record_outcome(self, exchange: Exchange) -> None:
        try:
            await self.audit.record_outcome(exchange)
        except Exception:  # the port says it never raises; make sure of it
            log.exception("audit outcome record failed")


def _log_exchange(exchange: Exchange) -> None:
    served = exchange.served_by
    observability.info(
        "request finished",
        outcome=exchange.outcome,
        status=exchange.status,
        error_type=exchange.error_type,
        tenant_id=exchange.principal.tenant_id if exchange.principal else None,
        model=exchange.request.model if exchange.request else None,
        served_by=f"{served.provider}/{served.region}" if served else None,
        attempts=len(exchange.attempts),
        latency_ms=round(((exchange.finished_at or time.time()) - exchange.started_at) * 1000, 1),
        first_byte_ms=round((exchange.first_byte_at - exchange.started_at) * 1000, 1)
        if exchange.first_byte_at
        else None,
        input_tokens=exchange.usage.input_tokens if exchange.usage else None,
        output_tokens=exchange.usage.output_tokens if exchange.usage else None,
    )


def _plus(a: tuple[Usage, float], b: tuple[Usage, float]) -> tuple[Usage, float]:
    return (
        Usage(
            a[0].input_tokens + b[0].input_tokens,
            a[0].output_tokens + b[0].output_tokens,
            a[0].cache_read_input_tokens + b[0].cache_read_input_tokens,
            a[0].cache_creation_input_tokens + b[0].cache_creation_input_tokens,
        ),
        a[1] + b[1],
    )


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
